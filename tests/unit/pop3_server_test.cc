// tests/unit/pop3_server_test.cc: the POP3 state machine (protocols/pop3/pop3_server.h) with
// a fake host: commands, byte-exact dot-stuffed RETR, TOP, DELE/RSET/QUIT (UPDATE only on
// QUIT), AUTH PLAIN, refusals, bad input, bounded listings, trickled input.
#include <gtest/gtest.h>

#include <random>

#include "tests/unit/pop3_test_harness.h"

namespace rp::pop3::testing {
namespace {

struct Session {
    Pop3ServerConfig config = test_config();
    FakeHost host;
    Pop3SessionInfo info;

    Transcript run(std::string_view input, std::size_t chunk = 0) {
        Pop3Server server(config, host, info);
        return drive(server, host, input, chunk);
    }
};

// The body of the multi-line reply that starts at `from` in `output`, dot-unstuffed the way
// a CRLF client reads it; `from` moves past the terminating ".\r\n".
std::string read_multiline(const std::string& output, std::size_t& from) {
    const std::size_t first = output.find("\r\n", from);
    EXPECT_NE(first, std::string::npos);
    std::size_t at = first + 2;
    std::string body;
    for (;;) {
        const std::size_t end = output.find("\r\n", at);
        if (end == std::string::npos) {
            ADD_FAILURE() << "unterminated multi-line reply";
            return body;
        }
        std::string_view line(output.data() + at, end - at);
        if (line == ".") {
            from = end + 2;
            return body;
        }
        if (!line.empty() && line[0] == '.') line.remove_prefix(1);
        body.append(line);
        body.append("\r\n");
        at = end + 2;
    }
}

const char* const kMessage1 =
    "Subject: one\r\n\r\n.\r\n..\r\n...leading dots\r\n. a dot\r\ncaf\xc3\xa9 \xff\xfe 8-bit\r\nend.\r\n";
const char* const kMessage2 = "Subject: two\r\nX: y\r\n\r\nline 1\r\nline 2\r\nline 3\r\n";

// Proves a whole session: greeting, USER/PASS, STAT, LIST, UIDL, RETR (byte-exact after
// unstuffing, with leading dots and 8-bit bytes), QUIT without deletions asks the host to
// release the maildrop (an UPDATE with no UIDs) before its +OK.
TEST(Pop3Server, RetrIsByteExactAfterUnstuffing) {
    Session s;
    s.host.messages = {kMessage1, kMessage2};
    auto t = s.run("USER demo\r\nPASS demo\r\nSTAT\r\nLIST\r\nUIDL\r\nRETR 1\r\nRETR 2\r\nQUIT\r\n");
    EXPECT_TRUE(t.closed);
    const std::string& o = t.output;
    EXPECT_EQ(o.rfind("+OK mail.example.test POP3 server ready\r\n", 0), 0u) << o;
    const std::size_t sizes = std::string(kMessage1).size() + std::string(kMessage2).size();
    EXPECT_NE(o.find("+OK 2 " + std::to_string(sizes) + "\r\n"), std::string::npos) << o;
    EXPECT_NE(o.find("\r\n1 " + std::to_string(std::string(kMessage1).size()) + "\r\n"),
              std::string::npos);
    EXPECT_NE(o.find("\r\n1 1700000000.1\r\n2 1700000000.11\r\n.\r\n"), std::string::npos) << o;
    std::size_t at = o.find("+OK " + std::to_string(std::string(kMessage1).size()) + " octets");
    ASSERT_NE(at, std::string::npos) << o;
    EXPECT_EQ(read_multiline(o, at), kMessage1);
    EXPECT_EQ(read_multiline(o, at), kMessage2);
    EXPECT_NE(o.find("\r\n..\r\n...\r\n....leading dots\r\n.. a dot\r\n"), std::string::npos);
    EXPECT_TRUE(s.host.updated.empty());
    EXPECT_EQ(s.host.events.back(), "update 0");
    EXPECT_NE(o.find("\r\n+OK mail.example.test POP3 server signing off\r\n"), std::string::npos);
}

// Proves the same session gives the same bytes whatever the input chunking (one byte at a
// time included) and with a host that answers later.
TEST(Pop3Server, TrickleAndAsyncGiveTheSameTranscript) {
    const std::string input =
        "CAPA\r\nUSER demo\r\nPASS demo\r\nLIST\r\nTOP 2 1\r\nRETR 1\r\nDELE 1\r\nUIDL\r\n"
        "QUIT\r\n";
    Session whole;
    whole.host.messages = {kMessage1, kMessage2};
    const Transcript reference = whole.run(input);
    for (bool async : {false, true}) {
        for (std::size_t chunk : {1u, 2u, 5u, 13u, 0u}) {
            Session s;
            s.host.async = async;
            s.host.messages = {kMessage1, kMessage2};
            const Transcript t = s.run(input, chunk);
            EXPECT_EQ(t.output, reference.output) << "chunk " << chunk << " async " << async;
            EXPECT_EQ(t.closed, reference.closed);
            EXPECT_EQ(s.host.updated, std::vector<std::uint32_t>{1});
        }
    }
}

// Proves DELE marks only, RSET unmarks, a deleted message is gone from STAT/LIST/RETR, and
// QUIT hands exactly the marked UIDs to the host, answering +OK once it reports success.
TEST(Pop3Server, DeleteTakesEffectAtQuitOnly) {
    Session s;
    s.host.messages = {"a\r\n", "bb\r\n", "ccc\r\n"};
    auto t = s.run("USER demo\r\nPASS demo\r\nDELE 2\r\nDELE 2\r\nRETR 2\r\nSTAT\r\nRSET\r\n"
                   "STAT\r\nDELE 1\r\nDELE 3\r\nLIST\r\nQUIT\r\n");
    const std::string& o = t.output;
    EXPECT_NE(o.find("+OK Message 2 deleted\r\n-ERR No such message\r\n-ERR No such message\r\n"
                     "+OK 2 8\r\n"),
              std::string::npos)
        << o;
    EXPECT_NE(o.find("+OK maildrop has 3 messages (12 octets)\r\n+OK 3 12\r\n"), std::string::npos);
    EXPECT_NE(o.find("+OK maildrop has 1 messages (4 octets)\r\n2 4\r\n.\r\n"), std::string::npos)
        << o;
    EXPECT_EQ(s.host.updated, (std::vector<std::uint32_t>{1, 21}));
    EXPECT_NE(o.find("signing off (2 messages deleted)"), std::string::npos);
    EXPECT_TRUE(t.closed);
}

// Proves that a dropped connection, a timeout and a failed UPDATE delete nothing silently:
// no update without QUIT, and a failed one is reported as -ERR.
TEST(Pop3Server, NoUpdateWithoutQuitAndFailedUpdateIsReported) {
    {
        Session s;
        s.host.messages = {"a\r\n"};
        Pop3Server server(s.config, s.host, s.info);
        drive(server, s.host, "USER demo\r\nPASS demo\r\nDELE 1\r\n", 0);
        server.connection_lost();
        EXPECT_TRUE(s.host.updated.empty());
    }
    {
        Session s;
        s.host.messages = {"a\r\n"};
        Pop3Server server(s.config, s.host, s.info);
        drive(server, s.host, "USER demo\r\nPASS demo\r\nDELE 1\r\n", 0);
        server.on_timeout();
        std::string out;
        server.take_output(out);
        EXPECT_TRUE(out.empty()) << out;  // RFC 1939 3: autologout says nothing.
        EXPECT_TRUE(server.wants_close());
        EXPECT_TRUE(s.host.updated.empty());
    }
    {
        Session s;
        s.host.messages = {"a\r\n"};
        s.host.update_status = Status::io;
        auto t = s.run("USER demo\r\nPASS demo\r\nDELE 1\r\nQUIT\r\n");
        EXPECT_NE(t.output.find("-ERR [SYS/TEMP] Some deleted messages not removed\r\n"),
                  std::string::npos);
        EXPECT_TRUE(t.closed);
    }
}

// Proves authentication replies: bad password [AUTH] and the session goes on; a locked
// maildrop [IN-USE]; PASS without USER; commands before login; a password with spaces.
TEST(Pop3Server, LoginFailures) {
    Session s;
    auto t = s.run("PASS x\r\nSTAT\r\nUSER demo\r\nPASS wrong\r\nUSER spacey\r\nPASS pass word\r\n"
                   "STAT\r\nQUIT\r\n");
    EXPECT_NE(t.output.find("-ERR USER first\r\n-ERR Not authenticated\r\n"), std::string::npos);
    EXPECT_NE(t.output.find("-ERR [AUTH] Authentication failed\r\n"), std::string::npos);
    EXPECT_NE(t.output.find("+OK maildrop has 0 messages (0 octets)\r\n+OK 0 0\r\n"),
              std::string::npos)
        << t.output;
    // QUIT in TRANSACTION asks the host to release the maildrop (an UPDATE with no UIDs).
    EXPECT_EQ(s.host.events,
              (std::vector<std::string>{"login demo", "login spacey", "update 0"}));
    EXPECT_EQ(s.run("").closed, false);

    Session busy;
    busy.host.login_status = Status::busy;
    t = busy.run("USER demo\r\nPASS demo\r\nQUIT\r\n");
    EXPECT_NE(t.output.find("-ERR [IN-USE] Mailbox in use by another session\r\n"),
              std::string::npos);
}

// Proves AUTH PLAIN (RFC 5034): initial response, continuation, "=" empty, "*" cancel, bad
// base64, a foreign authzid, and the bare AUTH mechanism list.
TEST(Pop3Server, AuthPlain) {
    Session s;
    // base64("\0demo\0demo") = AGRlbW8AZGVtbw==
    auto t = s.run("AUTH\r\nAUTH PLAIN\r\n*\r\nAUTH PLAIN !!!!\r\nAUTH CRAM-MD5\r\n"
                   "AUTH PLAIN =\r\nAUTH PLAIN\r\nAGRlbW8AZGVtbw==\r\nSTAT\r\nQUIT\r\n");
    const std::string& o = t.output;
    EXPECT_NE(o.find("+OK\r\nPLAIN\r\n.\r\n+ \r\n-ERR Authentication cancelled\r\n"
                     "-ERR Invalid base64 in AUTH PLAIN\r\n"
                     "-ERR Unsupported authentication mechanism\r\n"
                     "-ERR Malformed AUTH PLAIN response\r\n+ \r\n+OK maildrop"),
              std::string::npos)
        << o;
    Session other;
    // base64("bob\0demo\0demo"): authzid differs from authcid.
    t = other.run("AUTH PLAIN Ym9iAGRlbW8AZGVtbw==\r\n");
    EXPECT_NE(t.output.find("-ERR [AUTH] Authentication failed"), std::string::npos);
    EXPECT_TRUE(other.host.events.empty());
}

// Proves TOP sends the header, the blank line and exactly n body lines (0 included).
TEST(Pop3Server, Top) {
    Session s;
    s.host.messages = {kMessage2, "NoBody: x\r\n"};
    auto t = s.run("USER demo\r\nPASS demo\r\nTOP 1 0\r\nTOP 1 2\r\nTOP 1 99\r\nTOP 2 5\r\n"
                   "TOP 1\r\nTOP 1 x\r\n");
    std::size_t at = t.output.find("+OK Top of message follows");
    EXPECT_EQ(read_multiline(t.output, at), "Subject: two\r\nX: y\r\n\r\n");
    EXPECT_EQ(read_multiline(t.output, at), "Subject: two\r\nX: y\r\n\r\nline 1\r\nline 2\r\n");
    EXPECT_EQ(read_multiline(t.output, at), kMessage2);
    EXPECT_EQ(read_multiline(t.output, at), "NoBody: x\r\n");
    EXPECT_NE(t.output.find("-ERR Syntax: TOP msg n\r\n-ERR Syntax: TOP msg n\r\n"),
              std::string::npos);
}

// Proves a message that does not end with CRLF still ends with CRLF "." CRLF, and a bare LF
// starts a line for dot-stuffing.
TEST(Pop3Server, UnterminatedMessageAndBareLf) {
    Session s;
    s.host.messages = {"no newline", "a\n.b\r\n"};
    auto t = s.run("USER demo\r\nPASS demo\r\nRETR 1\r\nRETR 2\r\n");
    EXPECT_NE(t.output.find("+OK 10 octets\r\nno newline\r\n.\r\n"), std::string::npos);
    EXPECT_NE(t.output.find("+OK 6 octets\r\na\n..b\r\n.\r\n"), std::string::npos) << t.output;
}

// Proves read failures: before any byte, -ERR and the session goes on; after "+OK" and part
// of the message, the session closes with no terminating dot (never a truncated "whole").
TEST(Pop3Server, ReadFailures) {
    Session s;
    s.host.messages = {kMessage2};
    s.host.read_status = Status::corrupt;
    auto t = s.run("USER demo\r\nPASS demo\r\nRETR 1\r\nNOOP\r\n");
    EXPECT_NE(t.output.find("-ERR [SYS/PERM] Message damaged"), std::string::npos);
    EXPECT_NE(t.output.find("\r\n+OK\r\n"), std::string::npos);
    Session mid;
    mid.host.messages = {kMessage2};
    mid.host.read_status = Status::io;
    mid.host.read_fails_midway = true;
    t = mid.run("USER demo\r\nPASS demo\r\nRETR 1\r\nNOOP\r\n");
    EXPECT_TRUE(t.closed);
    EXPECT_EQ(t.output.substr(t.output.size() - 7), "Subject") << t.output;
}

// Proves an overlong line (RFC 2449: 255 octets; ours 512) gets -ERR and the session goes
// on; garbage gets -ERR; too many errors close the session.
TEST(Pop3Server, OverlongLinesAndGarbage) {
    Session s;
    const std::string line(100 * 1024, 'A');
    auto t = s.run(line + "\r\nNOOP\r\n\xff\xfe\x01\r\n\r\nXYZZY\r\nUSER demo\r\nPASS demo\r\nSTAT\r\n");
    EXPECT_NE(t.output.find("-ERR Line too long\r\n+OK\r\n-ERR Unknown command\r\n"
                            "-ERR Unknown command\r\n-ERR Unknown command\r\n+OK Send"),
              std::string::npos)
        << t.output;
    EXPECT_FALSE(t.closed);
    Session many;
    std::string junk;
    for (int i = 0; i < 30; ++i) junk += "JUNK\r\n";
    t = many.run(junk);
    EXPECT_TRUE(t.closed);
    EXPECT_NE(t.output.find("-ERR Too many errors, closing\r\n"), std::string::npos);
}

// Proves LIST on a big maildrop is produced in bounded slices (pump) and is complete.
TEST(Pop3Server, BigListingIsBounded) {
    Session s;
    s.host.messages.assign(20000, "x\r\n");
    Pop3Server server(s.config, s.host, s.info);
    s.host.server = &server;
    server.greet();
    std::string out;
    server.take_output(out);
    (void)server.feed(as_bytes("USER demo\r\nPASS demo\r\n"));
    out.clear();
    server.take_output(out);
    const std::size_t used = server.feed(as_bytes("UIDL\r\nNOOP\r\n"));
    EXPECT_EQ(used, 6u);  // Stopped after UIDL: its output is blocked.
    std::string all;
    int rounds = 0;
    while (server.listing() && rounds++ < 10000) {
        std::string part;
        server.take_output(part);
        EXPECT_LE(part.size(), s.config.output_bytes_high + 64);
        all += part;
        server.pump();
    }
    server.take_output(all);
    EXPECT_NE(all.find("\r\n20000 1700000000.199991\r\n.\r\n"), std::string::npos);
    (void)server.feed(as_bytes("NOOP\r\n"));
}

// Proves CAPA lists what the state allows (USER/SASL only before login, STLS only when
// available) and STLS pauses for the handshake, forgetting a USER given before it.
TEST(Pop3Server, CapaAndStls) {
    Session s;
    s.info.tls_available = true;
    s.info.auth_allowed = false;
    auto t = s.run("CAPA\r\nUSER demo\r\nSTLS\r\n");
    EXPECT_NE(t.output.find("STLS\r\n"), std::string::npos);
    EXPECT_EQ(t.output.find("SASL PLAIN"), std::string::npos);
    EXPECT_NE(t.output.find("-ERR [AUTH] Authentication requires TLS"), std::string::npos);
    EXPECT_NE(t.output.find("+OK Begin TLS negotiation\r\n"), std::string::npos);

    Pop3Server server(s.config, s.host, s.info);
    s.host.server = &server;
    server.greet();
    (void)server.feed(as_bytes("STLS\r\n"));
    EXPECT_TRUE(server.waiting_for_tls());
    EXPECT_TRUE(server.paused());
    server.tls_started();
    std::string out;
    server.take_output(out);
    out.clear();
    (void)server.feed(as_bytes("CAPA\r\nSTLS\r\nUSER demo\r\nPASS demo\r\nCAPA\r\n"));
    server.take_output(out);
    EXPECT_EQ(out.find("STLS\r\n"), std::string::npos);
    EXPECT_NE(out.find("SASL PLAIN"), std::string::npos);
    EXPECT_NE(out.find("-ERR Command not permitted when TLS active"), std::string::npos);
    EXPECT_NE(out.find("+OK maildrop"), std::string::npos) << out;
}

// Proves the RFC 2449 response codes of login failures: a client address over its failure
// limit (permission) gets [AUTH] and the connection closes, with no later command run; a busy
// password checker (full) and a store error get [SYS/TEMP] and the session goes on.
TEST(Pop3Server, LoginResponseCodes) {
    Session throttled;
    throttled.host.login_status = Status::permission;
    auto t = throttled.run("USER demo\r\nPASS demo\r\nSTAT\r\n");
    EXPECT_NE(t.output.find("-ERR [AUTH] Too many failed logins from your address, try again "
                            "later\r\n"),
              std::string::npos)
        << t.output;
    EXPECT_EQ(t.output.find("Not authenticated"), std::string::npos) << t.output;
    EXPECT_TRUE(t.closed);

    for (Status status : {Status::full, Status::io}) {
        Session busy;
        busy.host.login_status = status;
        t = busy.run("USER demo\r\nPASS demo\r\nNOOP\r\n");
        EXPECT_NE(t.output.find("-ERR [SYS/TEMP] "), std::string::npos) << t.output;
        EXPECT_NE(t.output.find("\r\n+OK\r\n"), std::string::npos) << t.output;
        EXPECT_FALSE(t.closed);
    }
}

// Proves input cut short runs nothing: a command or an AUTH PLAIN response without its line
// end is not executed when the connection drops, whatever the chunking.
TEST(Pop3Server, TruncatedInputRunsNothing) {
    for (std::size_t chunk : {0u, 1u, 3u}) {
        Session s;
        auto t = s.run("USER demo\r\nPASS demo", chunk);
        EXPECT_TRUE(s.host.events.empty()) << chunk;
        EXPECT_EQ(t.output.find("maildrop"), std::string::npos);
        Session plain;
        t = plain.run("AUTH PLAIN\r\nAGRlbW8AZGVtbw==", chunk);
        EXPECT_NE(t.output.find("+ \r\n"), std::string::npos);
        EXPECT_TRUE(plain.host.events.empty()) << chunk;
    }
}

// Proves STLS consumes exactly its own line (the driver discards what follows, RFC 2595 4),
// is refused without a certificate, and no login is possible before TLS when plaintext is
// not allowed (USER, PASS, AUTH PLAIN with an initial response, and the "=" form).
TEST(Pop3Server, StlsStopsAtItsLineAndPlaintextIsRefused) {
    Session s;
    s.info.tls_available = true;
    s.info.auth_allowed = false;
    Pop3Server server(s.config, s.host, s.info);
    s.host.server = &server;
    server.greet();
    const std::string_view input = "STLS\r\nUSER demo\r\nPASS demo\r\n";
    EXPECT_EQ(server.feed(as_bytes(input)), 6u);
    EXPECT_TRUE(server.waiting_for_tls());
    EXPECT_TRUE(s.host.events.empty());

    Session refused;
    refused.info.auth_allowed = false;
    auto t = refused.run("STLS\r\nUSER demo\r\nPASS demo\r\nAUTH PLAIN AGRlbW8AZGVtbw==\r\n"
                         "AUTH PLAIN =\r\nCAPA\r\n");
    EXPECT_NE(t.output.find("-ERR STLS not available\r\n"), std::string::npos);
    std::size_t count = 0;
    for (std::size_t at = 0; (at = t.output.find("-ERR [AUTH] Authentication requires TLS", at)) !=
                             std::string::npos;
         ++at) {
        ++count;
    }
    EXPECT_EQ(count, 4u) << t.output;
    EXPECT_EQ(t.output.find("SASL"), std::string::npos);
    EXPECT_EQ(t.output.find("\r\nUSER\r\n"), std::string::npos);
    EXPECT_TRUE(refused.host.events.empty());
}

// Proves shutdown: an idle session closes at once; one mid-RETR finishes the message first.
TEST(Pop3Server, Shutdown) {
    Session s;
    s.host.messages = {kMessage2};
    s.host.async = true;
    Pop3Server server(s.config, s.host, s.info);
    drive(server, s.host, "USER demo\r\nPASS demo\r\nRETR 1\r\n", 0);
    // drive() ran the pending read; start another and shut down while it is pending.
    (void)server.feed(as_bytes("RETR 1\r\n"));
    EXPECT_TRUE(server.paused());
    server.begin_shutdown();
    EXPECT_FALSE(server.wants_close());
    auto f = std::move(s.host.pending.front());
    s.host.pending.pop_front();
    f();
    EXPECT_TRUE(server.wants_close());
    std::string out;
    server.take_output(out);
    EXPECT_NE(out.find("line 3\r\n.\r\n-ERR [SYS/TEMP] Server shutting down\r\n"),
              std::string::npos)
        << out;
}

// Proves random input never breaks an invariant (the fuzz target's check, seeded here).
TEST(Pop3Server, RandomInputIsSafe) {
    std::mt19937 rng(7);
    const char* words[] = {"USER demo\r\n", "PASS demo\r\n", "RETR 1\r\n", "TOP 1 1\r\n",
                           "DELE 1\r\n",    "LIST\r\n",      "UIDL 1\r\n", "RSET\r\n",
                           "\r\n",          "AUTH PLAIN\r\n", "\xff",       "QUIT\r\n"};
    for (int round = 0; round < 300; ++round) {
        std::string input;
        for (int i = 0; i < 20; ++i) input += words[rng() % 12];
        Session s;
        s.host.async = (round & 1) != 0;
        s.host.messages = {kMessage1, kMessage2};
        (void)s.run(input, 1 + rng() % 9);
    }
}

TEST(Pop3Base64, Decode) {
    std::string out;
    EXPECT_TRUE(base64_decode("", out));
    EXPECT_EQ(out, "");
    EXPECT_TRUE(base64_decode("AGRlbW8AZGVtbw==", out));
    EXPECT_EQ(out, std::string("\0demo\0demo", 10));
    EXPECT_TRUE(base64_decode("YWJj", out));
    EXPECT_EQ(out, "abc");
    EXPECT_TRUE(base64_decode("YWI=", out));
    EXPECT_EQ(out, "ab");
    EXPECT_FALSE(base64_decode("YWI", out));
    EXPECT_FALSE(base64_decode("Y=I=", out));
    EXPECT_FALSE(base64_decode("====", out));
    EXPECT_FALSE(base64_decode("YW J", out));
}

}  // namespace
}  // namespace rp::pop3::testing
