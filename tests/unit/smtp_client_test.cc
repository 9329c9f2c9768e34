// tests/unit/smtp_client_test.cc: the SMTP client state machine, scripted server replies.
#include <gtest/gtest.h>

#include "protocols/smtp/smtp_client.h"

namespace rp::smtp {
namespace {

const char* ehlo_full = "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-8BITMIME\r\n250 STARTTLS\r\n";

SmtpClientMessage message(std::vector<std::string> rcpts, std::string body = "Subject: x\r\n\r\nhi\r\n") {
    SmtpClientMessage m;
    m.sender = "a@example.test";
    m.recipients = std::move(rcpts);
    m.body = std::make_shared<const std::string>(std::move(body));
    return m;
}

struct Fixture {
    SmtpClientConfig config;
    SmtpClient client{config};
    Fixture() { config.helo_name = "mail.example.test"; }
    std::string open(const char* ehlo) {
        client.feed("220 mx.test ESMTP\r\n");
        std::string out = client.take_output();
        client.feed(ehlo);
        out += client.take_output();
        return out;
    }
};

// Greeting, EHLO, pipelined MAIL/RCPT/DATA, dot-stuffed body, per-recipient results.
TEST(SmtpClient, PipelinedTransaction) {
    Fixture f;
    EXPECT_EQ(f.open(ehlo_full), "EHLO mail.example.test\r\n");
    ASSERT_TRUE(f.client.ready());
    EXPECT_TRUE(f.client.extensions().pipelining);
    EXPECT_EQ(f.client.extensions().size_max, 1000u);
    auto m = message({"x@d.test", "y@d.test"}, "A\r\n.dot\r\n");
    m.eight_bit = true;
    f.client.send(m);
    EXPECT_EQ(f.client.take_output(),
              "MAIL FROM:<a@example.test> SIZE=9 BODY=8BITMIME\r\nRCPT TO:<x@d.test>\r\n"
              "RCPT TO:<y@d.test>\r\nDATA\r\n");
    EXPECT_EQ(f.client.timeout_ms(), f.config.timeouts.command_ms);
    f.client.feed("250 ok\r\n250 ok\r\n550 5.1.1 no\r\n354 go\r\n");
    EXPECT_EQ(f.client.take_output(), "A\r\n..dot\r\n.\r\n");
    EXPECT_EQ(f.client.timeout_ms(), f.config.timeouts.data_end_ms);
    f.client.feed("250 2.0.0 queued\r\n");
    auto r = f.client.take_result();
    ASSERT_TRUE(r.has_value());
    ASSERT_EQ(r->size(), 2u);
    EXPECT_EQ((*r)[0].code, 250);
    EXPECT_EQ((*r)[1].line(), "550 5.1.1 no");
    EXPECT_TRUE(f.client.ready());
    // The next message reuses the connection without RSET.
    f.client.send(message({"z@d.test"}));
    EXPECT_EQ(f.client.take_output().rfind("MAIL FROM:", 0), 0u);
}

// Without PIPELINING: one command per reply; a refused MAIL ends the transaction and the
// next one starts with RSET.
TEST(SmtpClient, Lockstep) {
    Fixture f;
    f.open("250 mx.test\r\n");
    ASSERT_TRUE(f.client.ready());
    f.client.send(message({"x@d.test", "y@d.test"}));
    EXPECT_EQ(f.client.take_output(), "MAIL FROM:<a@example.test>\r\n");
    f.client.feed("250 ok\r\n");
    EXPECT_EQ(f.client.take_output(), "RCPT TO:<x@d.test>\r\n");
    f.client.feed("250 ok\r\n");
    EXPECT_EQ(f.client.take_output(), "RCPT TO:<y@d.test>\r\n");
    f.client.feed("451 4.3.0 later\r\n");
    EXPECT_EQ(f.client.take_output(), "DATA\r\n");
    f.client.feed("354 go\r\n");
    f.client.take_output();
    f.client.feed("250 ok\r\n");
    auto r = f.client.take_result();
    ASSERT_TRUE(r);
    EXPECT_EQ((*r)[0].code, 250);
    EXPECT_EQ((*r)[1].code, 451);

    f.client.send(message({"x@d.test"}));
    f.client.take_output();
    f.client.feed("553 5.7.1 sender refused\r\n");
    r = f.client.take_result();
    ASSERT_TRUE(r);
    EXPECT_EQ((*r)[0].code, 553);
    f.client.send(message({"x@d.test"}));
    EXPECT_EQ(f.client.take_output(), "RSET\r\n");
    f.client.feed("250 ok\r\n");
    EXPECT_EQ(f.client.take_output(), "MAIL FROM:<a@example.test>\r\n");
}

// All recipients refused: no DATA without pipelining; with pipelining a 354 gets a lone dot.
TEST(SmtpClient, NoRecipientAccepted) {
    Fixture f;
    f.open(ehlo_full);
    f.client.send(message({"x@d.test"}));
    f.client.take_output();
    f.client.feed("250 ok\r\n550 5.1.1 no\r\n354 go\r\n");
    EXPECT_EQ(f.client.take_output(), ".\r\n");
    f.client.feed("554 no valid recipients\r\n");
    auto r = f.client.take_result();
    ASSERT_TRUE(r);
    EXPECT_EQ((*r)[0].code, 550);
}

// EHLO refused: HELO; a message above SIZE is never sent (552 for each recipient).
TEST(SmtpClient, HeloFallbackAndSize) {
    Fixture f;
    EXPECT_EQ(f.open("502 5.5.1 no EHLO\r\n"), "EHLO mail.example.test\r\nHELO mail.example.test\r\n");
    f.client.feed("250 hi\r\n");
    ASSERT_TRUE(f.client.ready());
    EXPECT_FALSE(f.client.extensions().pipelining);

    Fixture g;
    g.open(ehlo_full);
    g.client.send(message({"x@d.test"}, std::string(2000, 'a')));
    EXPECT_EQ(g.client.take_output(), "");
    auto r = g.client.take_result();
    ASSERT_TRUE(r);
    EXPECT_EQ((*r)[0].code, 552);
    EXPECT_TRUE(g.client.ready());
}

// RFC 6152: BODY=8BITMIME only for an 8-bit message; an 8-bit message to a server without
// 8BITMIME (here after HELO, and after an EHLO without it) is not sent: 554 5.6.3 for each
// recipient, and the connection stays usable for 7-bit mail.
TEST(SmtpClient, EightBitMime) {
    Fixture f;
    f.open(ehlo_full);
    f.client.send(message({"x@d.test"}));
    EXPECT_EQ(f.client.take_output(), "MAIL FROM:<a@example.test> SIZE=18\r\nRCPT TO:<x@d.test>\r\nDATA\r\n");

    Fixture g;
    g.open("250-mx.test\r\n250 PIPELINING\r\n");
    auto m = message({"x@d.test", "y@d.test"}, "caf\xc3\xa9\r\n");
    m.eight_bit = true;
    g.client.send(m);
    EXPECT_EQ(g.client.take_output(), "");
    auto r = g.client.take_result();
    ASSERT_TRUE(r);
    ASSERT_EQ(r->size(), 2u);
    EXPECT_EQ((*r)[0].code, 554);
    EXPECT_EQ((*r)[1].text.rfind("5.6.3 ", 0), 0u);
    ASSERT_TRUE(g.client.ready());
    g.client.send(message({"x@d.test"}));
    EXPECT_EQ(g.client.take_output(), "MAIL FROM:<a@example.test>\r\nRCPT TO:<x@d.test>\r\nDATA\r\n");

    Fixture h;
    h.open("502 5.5.1 no EHLO\r\n");
    h.client.feed("250 hi\r\n");
    h.client.send(m);
    r = h.client.take_result();
    ASSERT_TRUE(r);
    EXPECT_EQ((*r)[0].code, 554);
}

// STARTTLS when offered and enabled: the host does the handshake, then EHLO again.
TEST(SmtpClient, StartTls) {
    Fixture f;
    f.config.starttls = true;
    EXPECT_EQ(f.open(ehlo_full), "EHLO mail.example.test\r\nSTARTTLS\r\n");
    f.client.feed("220 go ahead\r\n");
    EXPECT_TRUE(f.client.wants_tls());
    f.client.tls_started();
    EXPECT_EQ(f.client.take_output(), "EHLO mail.example.test\r\n");
    f.client.feed("250 mx.test\r\n");
    EXPECT_TRUE(f.client.ready());
    EXPECT_TRUE(f.client.tls_active());
}

// Proves the streamed body: with no body in the message, the host feeds pieces after 354
// (split anywhere, even between CR and LF or before a leading dot) and ends it; the wire
// bytes equal the whole-body encoding, SIZE comes from body_bytes, and the data-block
// timeout applies while the body streams.
TEST(SmtpClient, StreamedBody) {
    Fixture f;
    f.open(ehlo_full);
    SmtpClientMessage m = message({"x@d.test"});
    m.body = nullptr;
    m.body_bytes = 9;
    f.client.send(m);
    EXPECT_EQ(f.client.take_output(), "MAIL FROM:<a@example.test> SIZE=9\r\nRCPT TO:<x@d.test>\r\nDATA\r\n");
    EXPECT_FALSE(f.client.wants_body());
    f.client.feed("250 ok\r\n250 ok\r\n354 go\r\n");
    ASSERT_TRUE(f.client.wants_body());
    EXPECT_EQ(f.client.timeout_ms(), f.config.timeouts.data_block_ms);
    f.client.body_chunk("A\r");
    f.client.body_chunk("\n");
    f.client.body_chunk(".do");
    f.client.body_chunk("t");
    f.client.body_end();
    EXPECT_FALSE(f.client.wants_body());
    EXPECT_EQ(f.client.take_output(), "A\r\n..dot\r\n.\r\n");
    EXPECT_EQ(f.client.timeout_ms(), f.config.timeouts.data_end_ms);
    f.client.feed("250 2.0.0 queued\r\n");
    auto r = f.client.take_result();
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ((*r)[0].code, 250);
}

// Proves the on-the-fly encoder equals the whole-body encoding for every split of bodies
// with bare CR, bare LF, CRLF, leading dots and no final line end (a trickle test).
TEST(SmtpClient, BodyEncoderSplitAnywhere) {
    const std::vector<std::string> bodies = {
        ".a\r\n.\r\n..b\nc\rd\r\r\n.e", "\r\n\r\n.", "x", "", ".\n.\r.", "abc\r"};
    for (const std::string& body : bodies) {
        std::string whole;
        smtp_body_encode(body, whole);
        for (std::size_t a = 0; a <= body.size(); ++a) {
            for (std::size_t b = a; b <= body.size(); ++b) {
                SmtpBodyEncoder encoder;
                std::string out;
                encoder.encode(std::string_view(body).substr(0, a), out);
                encoder.encode(std::string_view(body).substr(a, b - a), out);
                encoder.encode(std::string_view(body).substr(b), out);
                encoder.finish(out);
                EXPECT_EQ(out, whole) << "body " << body.size() << " split " << a << "," << b;
            }
        }
    }
    std::string out;
    smtp_body_encode(".a\r\n.\r\n..b\nc\rd\r\r\n.e", out);
    EXPECT_EQ(out, "..a\r\n..\r\n...b\r\nc\r\nd\r\n\r\n..e\r\n.\r\n");
}

// With TLS required (relay.tls = "verify"): no STARTTLS offered, or STARTTLS refused, ends
// the session with 421 4.7.4 (the mail waits) and never goes on in clear; the handshake is
// under the command timeout.
TEST(SmtpClient, RequiredTls) {
    {
        Fixture f;
        f.config.starttls = true;
        f.config.require_tls = true;
        EXPECT_EQ(f.open("250-mx.test\r\n250 PIPELINING\r\n"), "EHLO mail.example.test\r\nQUIT\r\n");
        EXPECT_TRUE(f.client.closed());
        EXPECT_EQ(f.client.session_reply().line(), "421 4.7.4 STARTTLS is required but not offered");
    }
    {
        Fixture f;
        f.config.starttls = true;
        f.config.require_tls = true;
        f.open(ehlo_full);
        f.client.feed("454 4.7.0 not now\r\n");
        EXPECT_TRUE(f.client.closed());
        EXPECT_EQ(f.client.session_reply().code, 421);
    }
    {
        Fixture f;
        f.config.starttls = true;
        f.open(ehlo_full);
        f.client.feed("220 go ahead\r\n");
        EXPECT_TRUE(f.client.wants_tls());
        EXPECT_EQ(f.client.timeout_ms(), f.config.timeouts.command_ms);
        f.client.tls_failed();
        EXPECT_TRUE(f.client.closed());
    }
}

// A refused greeting, a timeout, a lost connection and garbage end the session; pending
// recipients get 4xx.
TEST(SmtpClient, SessionFailures) {
    {
        Fixture f;
        f.client.feed("554 go away\r\n");
        EXPECT_TRUE(f.client.closed());
        EXPECT_EQ(f.client.session_reply().code, 554);
    }
    {
        Fixture f;
        f.open(ehlo_full);
        f.client.send(message({"x@d.test"}));
        f.client.on_timeout();
        EXPECT_TRUE(f.client.closed());
        auto r = f.client.take_result();
        ASSERT_TRUE(r);
        EXPECT_EQ((*r)[0].code, 421);
        EXPECT_EQ(f.client.timeout_ms(), 0u);
    }
    {
        Fixture f;
        f.open(ehlo_full);
        f.client.send(message({"x@d.test"}));
        f.client.feed("250 ok\r\n250 ok\r\n354 go\r\n");
        f.client.connection_lost();
        auto r = f.client.take_result();
        ASSERT_TRUE(r);
        EXPECT_TRUE((*r)[0].transient());
    }
    for (const char* garbage : {"hello\r\n", "2\r\n", "250-a\r\n251 b\r\n", "999 x\r\n"}) {
        Fixture f;
        f.client.feed(garbage);
        EXPECT_TRUE(f.client.closed()) << garbage;
    }
    Fixture f;
    f.client.feed(std::string(5000, 'x'));
    EXPECT_TRUE(f.client.closed());
}

// Trickle: replies fed one byte at a time give the same result as whole.
TEST(SmtpClient, Trickle) {
    Fixture f;
    const std::string script = std::string("220 mx\r\n") + ehlo_full;
    for (char c : script) f.client.feed(std::string_view(&c, 1));
    ASSERT_TRUE(f.client.ready());
    f.client.send(message({"x@d.test"}));
    for (char c : std::string("250 a\r\n250 b\r\n354 c\r\n250-multi\r\n250 line\r\n")) {
        EXPECT_FALSE(f.client.take_result().has_value());
        f.client.feed(std::string_view(&c, 1));
    }
    auto r = f.client.take_result();
    ASSERT_TRUE(r);
    EXPECT_EQ((*r)[0].text, "multi; line");
}

// QUIT from ready, closed after 221.
TEST(SmtpClient, Quit) {
    Fixture f;
    f.open(ehlo_full);
    f.client.quit();
    EXPECT_EQ(f.client.take_output(), "QUIT\r\n");
    f.client.feed("221 bye\r\n");
    EXPECT_TRUE(f.client.closed());
}

// Body encoding: leading dots doubled, bare LF/CR to CRLF, final CRLF added.
TEST(SmtpClient, BodyEncode) {
    std::string out;
    smtp_body_encode(".a\n..b\rc\r\n.", out);
    EXPECT_EQ(out, "..a\r\n...b\r\nc\r\n..\r\n.\r\n");
    out.clear();
    smtp_body_encode("", out);
    EXPECT_EQ(out, ".\r\n");
}

}  // namespace
}  // namespace rp::smtp
