// tests/unit/pop3_golden_test.cc: golden POP3 transcripts (tests/golden/pop3/<name>.in/.ref).
//
// Each .in is the client's byte stream; every line ends with LF, which stands for CRLF on
// the wire. Escapes: \r, \n, \xHH, \\, and a backslash at the end of a line means "no CRLF".
// Directives (lines starting with "@@ "):
//   @@ message TEXT            adds a message to the maildrop (TEXT escaped; \r\n inside)
//   @@ host login_status=NAME | read_status=NAME | update_status=NAME | midway
//   @@ fill N C TEXT           one line: TEXT followed by N times C
// The .ref holds the server's output ("S: " per CRLF line, bare CR/LF and other bytes
// escaped), then "H: updated <uids>" and "H: closed yes|no". RP_GOLDEN_UPDATE=1 rewrites.
// Every transcript runs whole, one byte at a time, in chunks of 3, and with an asynchronous
// host: all must give the same .ref.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "tests/unit/pop3_test_harness.h"
#include "tests/unit/golden_util.h"

namespace rp::pop3::testing {
namespace {

namespace fs = std::filesystem;

using rp::testing::golden::hex_value;
using rp::testing::golden::read_file;

bool unescape(std::string_view line, std::string& out) {
    for (std::size_t i = 0; i < line.size(); ++i) {
        if (line[i] != '\\') {
            out.push_back(line[i]);
            continue;
        }
        if (i + 1 == line.size()) return false;
        const char e = line[++i];
        if (e == 'r') {
            out.push_back('\r');
        } else if (e == 'n') {
            out.push_back('\n');
        } else if (e == 'x' && i + 2 < line.size() && hex_value(line[i + 1]) >= 0 &&
                   hex_value(line[i + 2]) >= 0) {
            out.push_back(static_cast<char>(hex_value(line[i + 1]) * 16 + hex_value(line[i + 2])));
            i += 2;
        } else {
            out.push_back(e);
        }
    }
    return true;
}

Status status_named(const std::string& name) {
    if (name == "io") return Status::io;
    if (name == "busy") return Status::busy;
    if (name == "corrupt") return Status::corrupt;
    if (name == "quarantined") return Status::quarantined;
    if (name == "refused") return Status::refused;
    ADD_FAILURE() << "unknown status " << name;
    return Status::io;
}

struct Golden {
    std::string input;
    FakeHost host;
};

void parse(const std::string& text, Golden& g) {
    std::istringstream lines(text);
    std::string line;
    while (std::getline(lines, line)) {
        if (line.rfind("@@ ", 0) == 0) {
            std::istringstream words(line.substr(3));
            std::string kind;
            words >> kind;
            if (kind == "message") {
                std::string rest;
                std::getline(words, rest);
                std::string body;
                (void)unescape(rest.substr(1), body);
                g.host.messages.push_back(body);
            } else if (kind == "host") {
                std::string setting;
                while (words >> setting) {
                    const std::size_t eq = setting.find('=');
                    const std::string key = setting.substr(0, eq);
                    const std::string value = eq == std::string::npos ? "" : setting.substr(eq + 1);
                    if (key == "login_status") g.host.login_status = status_named(value);
                    else if (key == "read_status") g.host.read_status = status_named(value);
                    else if (key == "update_status") g.host.update_status = status_named(value);
                    else if (key == "midway") g.host.read_fails_midway = true;
                    else ADD_FAILURE() << "unknown setting " << key;
                }
            } else if (kind == "fill") {
                std::size_t count = 0;
                char c = 0;
                words >> count >> c;
                std::string rest;
                std::getline(words, rest);
                if (!rest.empty()) rest.erase(0, 1);
                g.input += rest + std::string(count, c) + "\r\n";
            } else {
                ADD_FAILURE() << "unknown directive " << line;
            }
            continue;
        }
        std::string bytes;
        const bool crlf = unescape(line, bytes);
        g.input += bytes;
        if (crlf) g.input += "\r\n";
    }
}

std::string render(const Transcript& t, const FakeHost& host) {
    std::string out;
    std::size_t at = 0;
    while (at < t.output.size()) {
        std::size_t end = t.output.find("\r\n", at);
        const bool complete = end != std::string::npos;
        if (!complete) end = t.output.size();
        out += "S: ";
        for (std::size_t i = at; i < end; ++i) {
            const auto c = static_cast<unsigned char>(t.output[i]);
            if (c == '\\') {
                out += "\\\\";
            } else if (c >= 0x20 && c < 0x7f) {
                out.push_back(static_cast<char>(c));
            } else {
                char hex[8];
                std::snprintf(hex, sizeof hex, "\\x%02x", c);
                out += hex;
            }
        }
        out += complete ? "\n" : "\\\n";
        at = complete ? end + 2 : end;
    }
    out += "H: updated";
    for (std::uint32_t uid : host.updated) out += " " + std::to_string(uid);
    out += "\nH: closed ";
    out += t.closed ? "yes\n" : "no\n";
    return out;
}

std::string run_golden(const std::string& text, std::size_t chunk, bool async) {
    Golden g;
    parse(text, g);
    g.host.async = async;
    Pop3ServerConfig config = test_config();
    Pop3SessionInfo info;
    Pop3Server server(config, g.host, info);
    const Transcript t = drive(server, g.host, g.input, chunk);
    return render(t, g.host);
}

TEST(Pop3Golden, Transcripts) {
    const fs::path dir = RP_GOLDEN_DIR_POP3;
    const bool update = std::getenv("RP_GOLDEN_UPDATE") != nullptr;
    std::size_t count = 0;
    for (const auto& entry : fs::directory_iterator(dir)) {
        if (entry.path().extension() != ".in") continue;
        ++count;
        const std::string text = read_file(entry.path());
        const std::string got = run_golden(text, 0, false);
        fs::path ref = entry.path();
        ref.replace_extension(".ref");
        if (update) {
            std::ofstream(ref, std::ios::binary) << got;
        } else {
            EXPECT_EQ(got, read_file(ref)) << entry.path();
        }
        EXPECT_EQ(run_golden(text, 1, false), got) << entry.path() << " one byte at a time";
        EXPECT_EQ(run_golden(text, 3, true), got) << entry.path() << " chunks of 3, async";
        EXPECT_EQ(run_golden(text, 0, true), got) << entry.path() << " async";
    }
    EXPECT_GE(count, 6u);
}

}  // namespace
}  // namespace rp::pop3::testing
