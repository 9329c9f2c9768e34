// tests/unit/imap_server_test.cc: ImapServer behaviour the golden transcripts do not pin:
// streamed bodies, output bounds, batching, timeouts, shutdown, lost connections, limits.
#include <gtest/gtest.h>

#include <string>

#include "tests/unit/imap_test_harness.h"

namespace rp::imap::testing {
namespace {

struct Session {
    explicit Session(ImapServerConfig c = test_config(), bool async = false) : config(std::move(c)) {
        host.async = async;
        server = std::make_unique<ImapServer>(config, host, ImapSessionInfo{});
        host.server = server.get();
        server->greet();
        run("");
    }
    ~Session() {
        if (!server->wants_close()) server->connection_lost();
    }
    std::string run(std::string_view input, std::size_t chunk = 0) {
        DriveResult r;
        drive_more(*server, host, input, chunk, r, pending);
        EXPECT_FALSE(r.stuck);
        return r.output;
    }
    ImapServerConfig config;
    FakeImapHost host;
    std::unique_ptr<ImapServer> server;
    std::string pending;
};

// Proves BODY[] bytes are not copied into the output: the literal header is text and the
// message is a stream piece naming the body, its offset and length.
TEST(ImapServer, BodyIsStreamedNotCopied) {
    Session s;
    s.run("a LOGIN demo demo\r\nb SELECT INBOX\r\n");
    ASSERT_FALSE(s.server->feed(as_bytes("c FETCH 2 BODY.PEEK[2]\r\n")) == 0);
    std::string text;
    s.server->take_output(text);
    EXPECT_EQ(text, "* 2 FETCH (BODY[2] {8}\r\n");
    ASSERT_TRUE(s.server->has_stream());
    const ImapStreamPiece piece = s.server->take_stream();
    EXPECT_EQ(piece.bytes, 8u);
    EXPECT_EQ(s.host.body_bytes(piece), "AAECAwQ=");
    text.clear();
    s.server->take_output(text);
    EXPECT_EQ(text, ")\r\nc OK FETCH completed\r\n");
    EXPECT_FALSE(s.server->has_output());
}

// Proves FETCH 1:* over a big mailbox asks the host in batches and stops producing while the
// output is above the high-water mark, so memory stays bounded; all messages still come.
TEST(ImapServer, FetchIsBatchedAndBounded) {
    ImapServerConfig c = test_config();
    c.fetch_batch_count = 100;
    c.output_bytes_high = 4096;
    Session s(c);
    for (int i = 0; i < 3000; ++i) s.host.add("INBOX", sample_plain, 1700000000 + i, 0);
    s.run("a LOGIN demo demo\r\nb SELECT INBOX\r\n");
    const std::size_t n = s.server->feed(as_bytes("c FETCH 1:* (UID FLAGS)\r\n"));
    EXPECT_GT(n, 0u);
    EXPECT_TRUE(s.server->paused());
    EXPECT_LT(s.server->output_bytes(), c.output_bytes_high + 100u * 64u);
    std::string all;
    std::size_t max_bytes = 0;
    while (s.server->has_output()) {
        max_bytes = std::max(max_bytes, s.server->output_bytes());
        std::string text;
        s.server->take_output(text);
        all += text;
        s.server->on_output_drained();
    }
    EXPECT_LT(max_bytes, c.output_bytes_high + 100u * 64u);
    EXPECT_EQ(s.host.fetch_calls, 31u);  // 3003 messages / 100.
    EXPECT_NE(all.find("* 3003 FETCH (UID 3003 FLAGS ())"), std::string::npos);
    EXPECT_NE(all.find("c OK FETCH completed"), std::string::npos);
    EXPECT_FALSE(s.server->paused());
}

// Proves the same with an asynchronous host (completions arrive later).
TEST(ImapServer, FetchBatchesAsync) {
    ImapServerConfig c = test_config();
    c.fetch_batch_count = 7;
    Session s(c, true);
    for (int i = 0; i < 50; ++i) s.host.add("INBOX", sample_plain, 1700000000, 0);
    const std::string out = s.run("a LOGIN demo demo\r\nb SELECT INBOX\r\nc UID FETCH 1:* FLAGS\r\nd NOOP\r\n");
    EXPECT_NE(out.find("* 53 FETCH (UID 53 FLAGS ())\r\nc OK UID FETCH completed\r\nd OK NOOP"),
              std::string::npos);
}

// Proves that after errors_max BADs the server says BYE and closes.
TEST(ImapServer, TooManyErrors) {
    ImapServerConfig c = test_config();
    c.errors_max = 3;
    Session s(c);
    const std::string out = s.run("a FOO\r\nb FOO\r\nc FOO\r\nd NOOP\r\n");
    EXPECT_NE(out.find("* BYE Too many invalid commands"), std::string::npos);
    EXPECT_EQ(out.find("d OK"), std::string::npos);
    EXPECT_TRUE(s.server->wants_close());
}

// Proves the timer kinds per state and that a timeout closes with BYE.
TEST(ImapServer, Timeouts) {
    Session s;
    EXPECT_EQ(s.server->timeout_kind(), ImapTimeoutKind::login);
    s.run("a LOGIN demo demo\r\n");
    EXPECT_EQ(s.server->timeout_kind(), ImapTimeoutKind::autologout);
    s.run("b SELECT INBOX\r\nc IDLE\r\n");
    EXPECT_EQ(s.server->timeout_kind(), ImapTimeoutKind::idle);
    s.server->on_timeout();
    std::string text;
    s.server->take_output(text);
    EXPECT_EQ(text, "* BYE Autologout; idle for too long\r\n");
    EXPECT_TRUE(s.server->wants_close());
    EXPECT_EQ(s.host.calls.back(), "close");  // The mailbox view was released.
}

// Proves a paused server (host op outstanding) asks for no timer.
TEST(ImapServer, NoTimerWhileHostWorks) {
    Session s(test_config(), true);
    (void)s.server->feed(as_bytes("a LOGIN demo demo\r\n"));
    EXPECT_TRUE(s.server->paused());
    EXPECT_EQ(s.server->timeout_kind(), ImapTimeoutKind::none);
    s.host.run_one();
    EXPECT_FALSE(s.server->paused());
}

// Proves a lost connection in the middle of an APPEND aborts it at the host, and that a late
// completion after connection_lost() is ignored.
TEST(ImapServer, LostDuringAppend) {
    Session s(test_config(), true);
    s.run("a LOGIN demo demo\r\nb APPEND INBOX {100}\r\n0123");
    EXPECT_TRUE(s.host.append_open);
    s.server->connection_lost();
    EXPECT_EQ(s.host.calls.back(), "append_abort");
    Session t(test_config(), true);
    (void)t.server->feed(as_bytes("a LOGIN demo demo\r\n"));
    t.server->connection_lost();
    t.host.run_one();  // login_done after the loss: no output, no crash.
    EXPECT_FALSE(t.server->has_output());
}

// Proves shutdown: idle sessions get BYE at once; a running command finishes first.
TEST(ImapServer, Shutdown) {
    Session s;
    s.run("a LOGIN demo demo\r\n");
    s.server->begin_shutdown();
    EXPECT_TRUE(s.server->wants_close());
    Session t(test_config(), true);
    (void)t.server->feed(as_bytes("a LOGIN demo demo\r\n"));
    t.server->begin_shutdown();
    EXPECT_FALSE(t.server->wants_close());
    const std::string out = t.run("");
    EXPECT_NE(out.find("a OK"), std::string::npos);
    EXPECT_NE(out.find("* BYE [UNAVAILABLE] Server shutting down"), std::string::npos);
}

// Proves the pending-change queue is bounded: past the limit the session ends with BYE
// instead of growing.
TEST(ImapServer, PendingChangesBounded) {
    ImapServerConfig c = test_config();
    c.pending_changes_max = 10;
    Session s(c);
    s.run("a LOGIN demo demo\r\nb SELECT INBOX\r\n");
    for (int i = 0; i < 20; ++i) s.host.deliver("INBOX", sample_plain);
    const std::string out = s.run("c NOOP\r\n");
    EXPECT_NE(out.find("* BYE [UNAVAILABLE] Too many mailbox changes"), std::string::npos);
}

// Proves sequence numbers stay consistent: an expunge by another session is not told during
// FETCH/STORE/SEARCH, and the client's numbers keep meaning the same messages until then.
TEST(ImapServer, NoExpungeDuringFetch) {
    Session s;
    s.run("a LOGIN demo demo\r\nb SELECT INBOX\r\n");
    s.host.other_expunge(1);
    std::string out = s.run("c FETCH 2 UID\r\nd STORE 3 +FLAGS (\\Flagged)\r\ne SEARCH ALL\r\n");
    EXPECT_EQ(out.find("EXPUNGE"), std::string::npos);
    EXPECT_NE(out.find("* 2 FETCH (UID 2)"), std::string::npos);
    EXPECT_NE(out.find("* 3 FETCH (FLAGS (\\Flagged))"), std::string::npos);
    out = s.run("f NOOP\r\n");
    EXPECT_EQ(out, "* 1 EXPUNGE\r\nf OK NOOP completed\r\n");
    EXPECT_EQ(s.server->view_count(), 2u);
}

// Proves a 1 GB synchronizing literal is refused without reading it and the session goes on;
// a 1 GB non-synchronizing one ends the session (RFC 7888 4).
TEST(ImapServer, HugeLiterals) {
    Session s;
    std::string out = s.run("a LOGIN demo demo\r\nb APPEND INBOX {1073741824}\r\nc NOOP\r\n");
    EXPECT_NE(out.find("b NO [TOOBIG]"), std::string::npos);
    EXPECT_NE(out.find("c OK NOOP"), std::string::npos);
    out = s.run("d LOGIN {1073741824+}\r\n");
    EXPECT_NE(out.find("* BYE"), std::string::npos);
    EXPECT_TRUE(s.server->wants_close());
}

// Proves STARTTLS discards nothing itself but resets framing; after tls_started() the
// capability list changes and LOGIN is allowed.
TEST(ImapServer, StartTls) {
    ImapServerConfig c = test_config();
    c.login_requires_tls = true;
    FakeImapHost host;
    ImapSessionInfo info;
    info.tls_available = true;
    ImapServer server(c, host, info);
    host.server = &server;
    server.greet();
    (void)server.feed(as_bytes("a STARTTLS\r\n"));
    EXPECT_TRUE(server.waiting_for_tls());
    EXPECT_TRUE(server.paused());
    server.tls_started();
    std::string text;
    server.take_output(text);
    EXPECT_NE(text.find("LOGINDISABLED"), std::string::npos);
    EXPECT_NE(text.find("a OK Begin TLS"), std::string::npos);
    text.clear();
    (void)server.feed(as_bytes("b CAPABILITY\r\nc LOGIN demo demo\r\n"));
    server.take_output(text);
    EXPECT_EQ(text.find("STARTTLS"), std::string::npos);
    EXPECT_NE(text.find("AUTH=PLAIN"), std::string::npos);
    EXPECT_NE(text.find("c OK"), std::string::npos);
    server.connection_lost();
}

// Proves a failed host call does not leak into the next command: SEARCH and FETCH over an
// empty mailbox (no host call at all) answer OK after a STATUS that failed.
TEST(ImapServer, FailedHostStatusDoesNotLeak) {
    Session s;
    const std::string out = s.run(
        "a LOGIN demo demo\r\nb SELECT Sent\r\nc STATUS Nowhere (MESSAGES)\r\n"
        "e SEARCH ALL\r\nf UID FETCH 1:* FLAGS\r\n");
    EXPECT_NE(out.find("c NO [NONEXISTENT]"), std::string::npos);
    EXPECT_NE(out.find("* SEARCH\r\ne OK SEARCH completed"), std::string::npos);
    EXPECT_NE(out.find("f OK UID FETCH completed"), std::string::npos);
}

// Counts APPEND data pieces that point into the driver's input buffer.
class ZeroCopyHost : public FakeImapHost {
public:
    const char* input_begin = nullptr;
    const char* input_end = nullptr;
    std::size_t pieces_inside = 0;
    std::size_t pieces = 0;
    void append_data(std::span<const std::byte> bytes) override {
        const char* p = reinterpret_cast<const char*>(bytes.data());
        ++pieces;
        if (p >= input_begin && p + bytes.size() <= input_end) ++pieces_inside;
        FakeImapHost::append_data(bytes);
    }
};

// Proves APPEND streams the message to the host as views into the input (zero copy), in
// pieces as they arrive, and never holds the message in the server.
TEST(ImapServer, AppendStreamsZeroCopy) {
    ImapServerConfig c = test_config();
    ZeroCopyHost host;
    ImapServer server(c, host, ImapSessionInfo{});
    host.server = &server;
    server.greet();
    const std::string login = "a LOGIN demo demo\r\n";
    ASSERT_EQ(server.feed(as_bytes(login)), login.size());
    const std::string body(100000, 'm');
    const std::string head = "b APPEND INBOX {100000+}\r\n";
    const std::string first = head + body.substr(0, 60000);
    host.input_begin = first.data();
    host.input_end = first.data() + first.size();
    ASSERT_EQ(server.feed(as_bytes(first)), first.size());
    const std::string second = body.substr(60000) + "\r\n";
    host.input_begin = second.data();
    host.input_end = second.data() + second.size();
    ASSERT_EQ(server.feed(as_bytes(second)), second.size());
    EXPECT_EQ(host.pieces, 2u);
    EXPECT_EQ(host.pieces_inside, 2u);
    EXPECT_EQ(host.boxes["INBOX"].messages.back().bytes->size(), 100000u);
    std::string text;
    while (server.has_output()) server.take_output(text);
    EXPECT_NE(text.find("b OK [APPENDUID 1700000000 4] APPEND completed"), std::string::npos);
    server.connection_lost();
}

}  // namespace
}  // namespace rp::imap::testing
