// tests/unit/imap_golden_test.cc: golden IMAP transcripts (tests/golden/imap/<name>.in/.ref).
//
// Each .in is the client's byte stream; every line ends with LF, which stands for CRLF on the
// wire. A backslash at the very end of a line means "no CRLF here"; "\\r", "\\n" and "\\xHH"
// give exact bytes. Lines starting with "@@ " are directives:
//   @@ config append_bytes_max=N | command_bytes_max=N | errors_max=N | login_requires_tls=0|1
//             | fetch_batch_count=N | output_bytes_high=N
//   @@ session tls_available | tls_active
//   @@ deliver BOX plain|multipart|forward   another session delivers a message (at this point)
//   @@ expunge UID                           another session expunges a message
//   @@ flags UID N                           another session sets the system flags to N
//   @@ tls                                   the client waits for the STARTTLS reply here
//   @@ fill N C TEXT                         one line: TEXT with {fill} replaced by N times C
// Events run after everything before them was consumed and answered. The .ref holds the
// server's output ("S: " per CRLF line; bytes after the last CRLF as "S~ ") and "X: closed"
// when the server closed. Set RP_GOLDEN_UPDATE=1 to rewrite the .ref files.
//
// Every transcript runs whole with a synchronous host, one byte at a time, and in 7-byte
// chunks with an asynchronous host: all runs must give the same transcript.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "tests/unit/imap_test_harness.h"
#include "tests/unit/golden_util.h"

namespace rp::imap::testing {
namespace {

namespace fs = std::filesystem;

using rp::testing::golden::hex_value;
using rp::testing::golden::read_file;

bool unescape_line(std::string_view line, std::string& out) {
    for (std::size_t i = 0; i < line.size(); ++i) {
        if (line[i] != '\\') {
            out.push_back(line[i]);
            continue;
        }
        if (i + 1 == line.size()) return false;
        const char e = line[++i];
        if (e == 'r') out.push_back('\r');
        else if (e == 'n') out.push_back('\n');
        else if (e == 'x' && i + 2 < line.size() && hex_value(line[i + 1]) >= 0 && hex_value(line[i + 2]) >= 0) {
            out.push_back(static_cast<char>(hex_value(line[i + 1]) * 16 + hex_value(line[i + 2])));
            i += 2;
        } else {
            out.push_back('\\');
            out.push_back(e);
        }
    }
    return true;
}

struct Segment {
    std::string bytes;
    std::string event;  // Empty: bytes.
};

struct Golden {
    std::vector<Segment> segments;
    ImapServerConfig config = test_config();
    ImapSessionInfo session;
};

void apply_directive(std::string_view d, Golden& g) {
    std::istringstream words{std::string(d)};
    std::string kind;
    words >> kind;
    if (kind == "config" || kind == "session") {
        std::string setting;
        while (words >> setting) {
            const std::size_t eq = setting.find('=');
            const std::string key = setting.substr(0, eq);
            const std::string value = eq == std::string::npos ? "" : setting.substr(eq + 1);
            if (key == "append_bytes_max") g.config.append_bytes_max = std::stoull(value);
            else if (key == "command_bytes_max") g.config.command_bytes_max = static_cast<std::uint32_t>(std::stoul(value));
            else if (key == "errors_max") g.config.errors_max = static_cast<std::uint32_t>(std::stoul(value));
            else if (key == "fetch_batch_count") g.config.fetch_batch_count = static_cast<std::uint32_t>(std::stoul(value));
            else if (key == "output_bytes_high") g.config.output_bytes_high = static_cast<std::uint32_t>(std::stoul(value));
            else if (key == "login_requires_tls") g.config.login_requires_tls = value == "1";
            else if (key == "tls_available") g.session.tls_available = true;
            else if (key == "tls_active") g.session.tls_active = true;
            else ADD_FAILURE() << "unknown setting " << key;
        }
    } else if (kind == "deliver" || kind == "expunge" || kind == "flags" || kind == "tls") {
        g.segments.push_back(Segment{{}, std::string(d)});
        g.segments.push_back(Segment{});
    } else if (kind == "fill") {
        std::size_t count = 0;
        char c = 'x';
        std::string text;
        words >> count >> c;
        std::getline(words, text);
        if (!text.empty() && text[0] == ' ') text.erase(0, 1);
        const std::size_t at = text.find("{fill}");
        if (at == std::string::npos) text += std::string(count, c);
        else text.replace(at, 6, std::string(count, c));
        g.segments.back().bytes += text + "\r\n";
    } else {
        ADD_FAILURE() << "unknown directive " << d;
    }
}

Golden parse_golden(const std::string& text) {
    Golden g;
    g.segments.push_back(Segment{});
    std::size_t pos = 0;
    while (pos < text.size()) {
        std::size_t end = text.find('\n', pos);
        if (end == std::string::npos) end = text.size();
        const std::string_view line(text.data() + pos, end - pos);
        pos = end + 1;
        if (line.substr(0, 3) == "@@ ") {
            apply_directive(line.substr(3), g);
            continue;
        }
        std::string& bytes = g.segments.back().bytes;
        if (unescape_line(line, bytes)) bytes += "\r\n";
    }
    return g;
}

void run_event(FakeImapHost& host, const std::string& event) {
    std::istringstream words(event);
    std::string kind;
    words >> kind;
    if (kind == "deliver") {
        std::string box, sample;
        words >> box >> sample;
        host.deliver(box, sample == "multipart" ? sample_multipart
                          : sample == "forward" ? sample_forward : sample_plain);
    } else if (kind == "expunge") {
        std::uint32_t uid = 0;
        words >> uid;
        host.other_expunge(uid);
    } else if (kind == "flags") {
        std::uint32_t uid = 0, flags = 0;
        words >> uid >> flags;
        host.other_flags(uid, flags);
    }
}

std::string render(const DriveResult& r) {
    std::string out;
    std::size_t pos = 0;
    while (pos < r.output.size()) {
        const std::size_t end = r.output.find("\r\n", pos);
        if (end == std::string::npos) {
            out += "S~ " + r.output.substr(pos) + "\n";
            break;
        }
        out += "S: " + r.output.substr(pos, end - pos) + "\n";
        pos = end + 2;
    }
    if (r.stuck) out += "X: stuck\n";
    if (r.closed) out += "X: closed\n";
    return out;
}

std::string run(const Golden& g, std::size_t chunk, bool async) {
    FakeImapHost host;
    host.async = async;
    ImapServer server(g.config, host, g.session);
    host.server = &server;
    server.greet();
    DriveResult r;
    std::string pending;
    for (const Segment& s : g.segments) {
        if (!s.event.empty()) {
            run_event(host, s.event);
        }
        drive_more(server, host, s.bytes, chunk, r, pending);
        if (r.closed || r.stuck) break;
    }
    if (!server.wants_close()) server.connection_lost();
    return render(r);
}

class ImapGolden : public ::testing::TestWithParam<std::string> {};

// Proves each transcript's replies byte for byte, and that framing (whole, 1 byte, 7 bytes)
// and host timing (synchronous or queued completions) never change them.
TEST_P(ImapGolden, Transcript) {
    const fs::path dir = RP_GOLDEN_DIR;
    const Golden g = parse_golden(read_file(dir / (GetParam() + ".in")));
    const std::string whole = run(g, 0, false);
    const fs::path ref = dir / (GetParam() + ".ref");
    if (std::getenv("RP_GOLDEN_UPDATE") != nullptr) {
        std::ofstream(ref, std::ios::binary) << whole;
    }
    EXPECT_EQ(whole, read_file(ref));
    EXPECT_EQ(run(g, 1, false), whole) << "one byte at a time";
    EXPECT_EQ(run(g, 7, true), whole) << "7-byte chunks, asynchronous host";
    EXPECT_EQ(run(g, 1, true), whole) << "one byte at a time, asynchronous host";
}

std::vector<std::string> golden_names() {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(RP_GOLDEN_DIR)) {
        if (e.path().extension() == ".in") names.push_back(e.path().stem().string());
    }
    std::sort(names.begin(), names.end());
    return names;
}

INSTANTIATE_TEST_SUITE_P(All, ImapGolden, ::testing::ValuesIn(golden_names()),
                         [](const auto& param_info) { return param_info.param; });

}  // namespace
}  // namespace rp::imap::testing
