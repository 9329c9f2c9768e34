// Config parsing and checks: good files, errors that name file, line and key, unknown keys,
// bad types, cross-field checks, relative paths and reload diffs.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "config/config_check.h"
#include "config/config_parse.h"

namespace rp::config {
namespace {

Result<Settings> parse(const std::string& text, std::string* error) {
    return parse_text(text, "test.toml", error);
}

// Proves the shipped demo config parses with the DESIGN.md demo defaults.
TEST(Config, DemoFile) {
    std::string error;
    auto settings = parse_file(RP_SOURCE_DIR "/config/demo.toml", &error);
    ASSERT_TRUE(settings.ok()) << error;
    EXPECT_EQ(settings->server.hostname, "mail.example.test");
    ASSERT_EQ(settings->domains.size(), 1u);
    EXPECT_EQ(settings->domains[0].name, "example.test");
    ASSERT_EQ(settings->users.size(), 1u);
    EXPECT_EQ(settings->users[0].address, "demo@example.test");
    EXPECT_EQ(settings->users[0].password, "demo");
    ASSERT_EQ(settings->smtp.listeners.size(), 3u);
    EXPECT_EQ(settings->smtp.listeners[0].address, "127.0.0.1:2525");
    EXPECT_EQ(settings->smtp.listeners[0].kind, "mx");
    EXPECT_EQ(settings->pop3.listeners.size(), 2u);
    EXPECT_EQ(settings->imap.listeners.size(), 2u);
    EXPECT_EQ(settings->dns.resolvers, std::vector<std::string>({"127.0.0.1:5353"}));
    auto expected_dir = (std::filesystem::current_path() / ".demo/data").lexically_normal();
    EXPECT_EQ(settings->server.data_dir, expected_dir.string());
}

// Proves the documented production config parses, with production ports.
TEST(Config, ProductionFile) {
    std::string error;
    auto settings = parse_file(RP_SOURCE_DIR "/config/ringpost.toml", &error);
    ASSERT_TRUE(settings.ok()) << error;
    EXPECT_EQ(settings->smtp.listeners[0].address, "*:25");
    EXPECT_EQ(settings->imap.listeners[1].address, "*:993");
}

// Proves an empty file gives the defaults (RFC 5321 4.5.3.2 timeouts among them).
TEST(Config, Defaults) {
    std::string error;
    auto settings = parse("", &error);
    ASSERT_TRUE(settings.ok()) << error;
    EXPECT_EQ(settings->smtp.timeouts.greeting_ms, 300'000u);
    EXPECT_EQ(settings->smtp.timeouts.data_init_ms, 120'000u);
    EXPECT_EQ(settings->smtp.timeouts.data_block_ms, 180'000u);
    EXPECT_EQ(settings->smtp.timeouts.data_end_ms, 600'000u);
    EXPECT_EQ(settings->engine.recv_buffer_count, 1024u);
    EXPECT_TRUE(std::filesystem::path(settings->server.data_dir).is_absolute());
}

// Proves an unknown key is an error naming the file, its line and the full key.
TEST(Config, UnknownKey) {
    std::string error;
    auto settings = parse("[server]\nhostname = \"a.test\"\n\n[engine]\nring_entrys = 64\n", &error);
    EXPECT_EQ(settings.status(), Status::invalid);
    EXPECT_EQ(error, "test.toml:5: engine.ring_entrys: unknown key");
    error.clear();
    EXPECT_FALSE(parse("[servr]\n", &error).ok());
    EXPECT_EQ(error, "test.toml:1: servr: unknown key");
    error.clear();
    EXPECT_FALSE(parse("[[smtp.listener]]\naddress = \"127.0.0.1:25\"\nkind = \"mx\"\nport = 1\n",
                       &error).ok());
    EXPECT_EQ(error, "test.toml:4: smtp.listener.port: unknown key");
}

// Proves a value of the wrong type or range names its line and key.
TEST(Config, BadTypes) {
    std::string error;
    EXPECT_FALSE(parse("[engine]\nring_entries = \"many\"\n", &error).ok());
    EXPECT_EQ(error, "test.toml:2: engine.ring_entries: expected an integer");
    error.clear();
    EXPECT_FALSE(parse("[server]\n\npin_cores = 1\n", &error).ok());
    EXPECT_EQ(error, "test.toml:3: server.pin_cores: expected true or false");
    error.clear();
    EXPECT_FALSE(parse("[engine]\nring_entries = 8\n", &error).ok());
    EXPECT_EQ(error, "test.toml:2: engine.ring_entries: must be between 64 and 32768, not 8");
    error.clear();
    EXPECT_FALSE(parse("server = 3\n", &error).ok());
    EXPECT_EQ(error, "test.toml:1: server: expected a table");
}

// Proves a TOML syntax error names its line.
TEST(Config, SyntaxError) {
    std::string error;
    EXPECT_FALSE(parse("[server]\nhostname = \"unterminated\n", &error).ok());
    EXPECT_EQ(error.rfind("test.toml:2: syntax:", 0), 0u) << error;
}

// Proves a missing file is reported with its path and the system's reason.
TEST(Config, MissingFile) {
    std::string error;
    auto settings = parse_file("/nonexistent/ringpost.toml", &error);
    EXPECT_EQ(settings.status(), Status::not_found);
    EXPECT_EQ(error, "/nonexistent/ringpost.toml: cannot read: No such file or directory");
}

// Proves the cross-field checks: listener kinds and addresses, duplicates, TLS files,
// users in configured domains, powers of two, networks.
TEST(Config, CrossFieldChecks) {
    struct Case {
        const char* text;
        const char* error;
    };
    const Case cases[] = {
        {"[[smtp.listener]]\naddress = \"127.0.0.1:25\"\nkind = \"pop3\"\n",
         "test.toml:1: smtp.listener.kind: \"pop3\" is not one of mx|submission|smtps"},
        {"[[smtp.listener]]\naddress = \"localhost:25\"\nkind = \"mx\"\n",
         "test.toml:1: smtp.listener.address: \"localhost:25\" is not host:port (an IP address)"},
        {"[[smtp.listener]]\naddress = \"127.0.0.1:25\"\nkind = \"mx\"\n"
         "[[imap.listener]]\naddress = \"127.0.0.1:25\"\nkind = \"imap\"\n",
         "test.toml:4: imap.listener.address: 127.0.0.1:25 is used by another listener"},
        {"[[smtp.listener]]\naddress = \"127.0.0.1:465\"\nkind = \"smtps\"\n",
         "test.toml:1: tls.cert_file: a TLS listener needs tls.cert_file and tls.key_file (or "
         "tls.self_signed)"},
        {"[[domain]]\nname = \"a.test\"\n[[user]]\naddress = \"u@b.test\"\npassword = \"p\"\n",
         "test.toml:3: user.address: u@b.test: its domain is not a [[domain]]"},
        {"[engine]\nrecv_buffer_count = 100\n",
         "test.toml: engine.recv_buffer_count: must be a power of two"},
        {"[smtp]\ntrusted_networks = [\"10.0.0.0/33\"]\n",
         "test.toml: smtp.trusted_networks: \"10.0.0.0/33\" is not a network"},
        {"[server]\nlog_level = \"loud\"\n",
         "test.toml: server.log_level: must be debug, info, warn or error"},
        {"[tls]\ngroups = [\"X25519\", \"P-257\"]\n",
         "test.toml: tls.groups: unknown group \"P-257\" (X25519, P-256, P-384 or P-521)"},
        {"[tls]\ngroups = []\n", "test.toml: tls.groups: must name at least one group"},
    };
    for (const Case& c : cases) {
        std::string error;
        EXPECT_FALSE(parse(c.text, &error).ok()) << c.text;
        EXPECT_EQ(error, c.error);
    }
}

// Proves CIDR parsing accepts addresses and prefixes of both families.
TEST(Config, Cidr) {
    EXPECT_TRUE(cidr_valid("127.0.0.1"));
    EXPECT_TRUE(cidr_valid("10.0.0.0/8"));
    EXPECT_TRUE(cidr_valid("2001:db8::/32"));
    EXPECT_FALSE(cidr_valid("10.0.0.0/"));
    EXPECT_FALSE(cidr_valid("2001:db8::/129"));
    EXPECT_FALSE(cidr_valid("example.test"));
}

// Proves a reload diff lists changed keys, says which need a restart, and hides passwords.
TEST(Config, ReloadDiff) {
    std::string error;
    auto before = parse("[[domain]]\nname = \"a.test\"\n[[user]]\naddress = \"u@a.test\"\n"
                        "password = \"one\"\n", &error);
    auto after = parse("[engine]\nsessions_per_shard = 10\n[smtp]\nrecipients_max = 5\n"
                       "[[domain]]\nname = \"a.test\"\n[[user]]\naddress = \"u@a.test\"\n"
                       "password = \"two\"\n", &error);
    ASSERT_TRUE(before.ok() && after.ok()) << error;
    auto changes = settings_diff(*before, *after);
    ASSERT_EQ(changes.size(), 3u);
    EXPECT_EQ(changes[0].key, "engine.sessions_per_shard");
    EXPECT_FALSE(changes[0].reloadable);
    EXPECT_EQ(changes[1].key, "smtp.recipients_max");
    EXPECT_TRUE(changes[1].reloadable);
    EXPECT_EQ(changes[2].key, "user.password u@a.test");
    EXPECT_EQ(changes[2].after.find("two"), std::string::npos);
}

}  // namespace
}  // namespace rp::config
