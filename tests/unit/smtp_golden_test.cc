// tests/unit/smtp_golden_test.cc: golden SMTP transcripts (tests/golden/smtp/<name>.in/.ref).
//
// Each .in is the client's byte stream. In the file every line ends with LF, which stands for
// CRLF on the wire; escapes give exact bytes: \r (bare CR), \n (bare LF), \0, \xHH, \\, and a
// backslash at the very end of a line means "no CRLF here". Lines starting with "@@ " are
// directives for the runner:
//   @@ config message_bytes_max=N | recipients_max=N | line_bytes_max=N | errors_max=N
//   @@ host relay_allowed | done_status=NAME | begin_status=NAME | mail_status=NAME
//   @@ repeat N TEXT     N lines of TEXT with {i} replaced by 1..N
//   @@ fill N C TEXT     one line: TEXT with {fill} (or its end) replaced by N times C
// The .ref holds the server's replies ("S: ", CRLF stripped), then for each message the host
// saw, its envelope, outcome and exact body ("H: | " per CRLF line, other bytes escaped),
// then whether the server closed. Set RP_GOLDEN_UPDATE=1 to rewrite the .ref files.
//
// Every transcript is run whole, one byte at a time, in several chunk sizes, and with a host
// that answers message_end() later (asynchronously): all runs must give the same transcript.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "tests/unit/smtp_test_harness.h"
#include "tests/unit/golden_util.h"

namespace rp::smtp::testing {
namespace {

namespace fs = std::filesystem;

using rp::testing::golden::hex_value;
using rp::testing::golden::read_file;

// One .in line -> wire bytes (without the line ending). Returns false if it ends with '\'.
bool unescape_line(std::string_view line, std::string& out) {
    for (std::size_t i = 0; i < line.size(); ++i) {
        if (line[i] != '\\') {
            out.push_back(line[i]);
            continue;
        }
        if (i + 1 == line.size()) return false;  // "\" at the end: no CRLF.
        const char e = line[++i];
        if (e == 'r') {
            out.push_back('\r');
        } else if (e == 'n') {
            out.push_back('\n');
        } else if (e == '0') {
            out.push_back('\0');
        } else if (e == 'x' && i + 2 < line.size() + 0 && hex_value(line[i + 1]) >= 0 &&
                   hex_value(line[i + 2]) >= 0) {
            out.push_back(static_cast<char>(hex_value(line[i + 1]) * 16 + hex_value(line[i + 2])));
            i += 2;
        } else {
            out.push_back(e);  // "\\" and anything else: the character itself.
        }
    }
    return true;
}

Status status_named(std::string_view name) {
    if (name == "no_space") return Status::no_space;
    if (name == "too_big") return Status::too_big;
    if (name == "io") return Status::io;
    if (name == "full") return Status::full;
    if (name == "refused") return Status::refused;
    if (name == "ok") return Status::ok;
    ADD_FAILURE() << "unknown status " << name;
    return Status::io;
}

struct Golden {
    std::string input;
    SmtpServerConfig config = test_config();
    FakeHost host_settings;
};

void apply_directive(std::string_view d, Golden& g) {
    std::istringstream words{std::string(d)};
    std::string kind;
    words >> kind;
    if (kind == "config" || kind == "host") {
        std::string setting;
        while (words >> setting) {
            const std::size_t eq = setting.find('=');
            const std::string key = setting.substr(0, eq);
            const std::string value = eq == std::string::npos ? "" : setting.substr(eq + 1);
            if (key == "message_bytes_max") g.config.message_bytes_max = std::stoull(value);
            else if (key == "recipients_max") g.config.recipients_max = std::stoul(value);
            else if (key == "line_bytes_max") g.config.line_bytes_max = std::stoul(value);
            else if (key == "errors_max") g.config.errors_max = std::stoul(value);
            else if (key == "relay_allowed") g.host_settings.relay_allowed = true;
            else if (key == "done_status") g.host_settings.done_status = status_named(value);
            else if (key == "begin_status") g.host_settings.begin_status = status_named(value);
            else if (key == "mail_status") g.host_settings.mail_status = status_named(value);
            else ADD_FAILURE() << "unknown setting " << key;
        }
    } else if (kind == "repeat") {
        int count = 0;
        words >> count;
        std::string text;
        std::getline(words, text);
        text.erase(0, text.find_first_not_of(' '));
        for (int i = 1; i <= count; ++i) {
            std::string line = text;
            const std::size_t at = line.find("{i}");
            if (at != std::string::npos) line.replace(at, 3, std::to_string(i));
            g.input += line + "\r\n";
        }
    } else if (kind == "fill") {
        std::size_t count = 0;
        char c = 'x';
        std::string prefix;
        words >> count >> c;
        std::getline(words, prefix);
        if (!prefix.empty() && prefix[0] == ' ') prefix.erase(0, 1);
        const std::size_t at = prefix.find("{fill}");
        if (at == std::string::npos) {
            g.input += prefix + std::string(count, c) + "\r\n";
        } else {
            g.input += prefix.replace(at, 6, std::string(count, c)) + "\r\n";
        }
    } else {
        ADD_FAILURE() << "unknown directive " << d;
    }
}

Golden parse_golden(const std::string& text) {
    Golden g;
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
        if (unescape_line(line, g.input)) g.input += "\r\n";
    }
    return g;
}

std::string escape(std::string_view bytes) {
    std::string out;
    for (const char c : bytes) {
        const auto u = static_cast<unsigned char>(c);
        if (c == '\\') {
            out += "\\\\";
        } else if (u >= 32 && u < 127) {
            out.push_back(c);
        } else {
            char hex[8];
            std::snprintf(hex, sizeof(hex), "\\x%02X", u);
            out += c == '\r' ? "\\r" : c == '\n' ? "\\n" : hex;
        }
    }
    return out;
}

// Replies must be CRLF-terminated lines "ddd" + " " or "-" + text without CR or LF.
void append_replies(std::string_view output, std::string& t) {
    std::size_t pos = 0;
    while (pos < output.size()) {
        const std::size_t end = output.find("\r\n", pos);
        ASSERT_NE(end, std::string_view::npos) << "reply without CRLF";
        const std::string_view line = output.substr(pos, end - pos);
        EXPECT_EQ(line.find_first_of("\r\n"), std::string_view::npos);
        EXPECT_GE(line.size(), 4u);
        t += "S: " + escape(line) + "\n";
        pos = end + 2;
    }
}

void append_body(std::string_view body, std::string& t) {
    std::size_t pos = 0;
    while (pos < body.size()) {
        std::size_t end = body.find("\r\n", pos);
        const bool complete = end != std::string_view::npos;
        if (!complete) end = body.size();
        t += "H: | " + escape(body.substr(pos, end - pos)) + (complete ? "" : "<no CRLF>") + "\n";
        pos = complete ? end + 2 : end;
    }
}

std::string run_golden(const Golden& g, std::size_t chunk_bytes, bool async) {
    FakeHost host;
    host.relay_allowed = g.host_settings.relay_allowed;
    host.done_status = g.host_settings.done_status;
    host.begin_status = g.host_settings.begin_status;
    host.mail_status = g.host_settings.mail_status;
    host.synchronous_done = !async;
    SmtpServer server(g.config, host, test_session());
    host.server = &server;
    const DriveResult r = drive(server, host, g.input, chunk_bytes);
    std::string t;
    append_replies(r.output, t);
    for (const std::string& e : host.events) t += "H: " + e + "\n";
    for (const FakeMessage& m : host.messages) {
        t += "H: message " + m.queue_id + " from=<" + m.sender + "> to=";
        if (m.recipients.size() <= 5) {
            for (std::size_t k = 0; k < m.recipients.size(); ++k) {
                t += (k ? ",<" : "<") + m.recipients[k] + ">";
            }
        } else {
            t += "<" + m.recipients.front() + ">..<" + m.recipients.back() + "> (" +
                 std::to_string(m.recipients.size()) + ")";
        }
        t += m.ended ? " ended" : m.aborted ? " aborted" : " open";
        t += "\n";
        if (m.ended) append_body(m.body, t);
    }
    t += r.closed ? "X: closed\n" : "X: open (input ended)\n";
    return t;
}

std::vector<std::string> golden_names() {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(RP_GOLDEN_DIR)) {
        if (e.path().extension() == ".in") names.push_back(e.path().stem().string());
    }
    std::sort(names.begin(), names.end());
    return names;
}

class SmtpGolden : public ::testing::TestWithParam<std::string> {};

// Proves: the transcript matches its .ref, and does not depend on how input is split into
// reads (whole, 1 byte, odd chunk sizes) nor on whether the host answers synchronously.
TEST_P(SmtpGolden, MatchesReferenceInEverySplit) {
    const fs::path dir = RP_GOLDEN_DIR;
    const Golden g = parse_golden(read_file(dir / (GetParam() + ".in")));
    const std::string whole = run_golden(g, 0, false);
    const fs::path ref = dir / (GetParam() + ".ref");
    if (std::getenv("RP_GOLDEN_UPDATE") != nullptr) {
        std::ofstream(ref, std::ios::binary) << whole;
    }
    ASSERT_TRUE(fs::exists(ref)) << ref;
    EXPECT_EQ(whole, read_file(ref)) << "transcript differs from " << ref;
    for (const std::size_t chunk : {1u, 2u, 3u, 7u, 64u, 1000u}) {
        EXPECT_EQ(run_golden(g, chunk, false), whole) << "chunk " << chunk;
    }
    EXPECT_EQ(run_golden(g, 0, true), whole) << "asynchronous host";
    EXPECT_EQ(run_golden(g, 1, true), whole) << "asynchronous host, 1-byte reads";
}

INSTANTIATE_TEST_SUITE_P(Transcripts, SmtpGolden, ::testing::ValuesIn(golden_names()),
                         [](const auto& param_info) { return param_info.param; });

}  // namespace
}  // namespace rp::smtp::testing
