// tests/unit/auth_smtp_test.cc: SMTP AUTH, STARTTLS state and the submission policy in the
// pure SmtpServer state machine (protocols/smtp/smtp_server.h).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "protocols/auth/sasl.h"
#include "protocols/auth/scram.h"
#include "protocols/smtp/smtp_server.h"

namespace rp::smtp {
namespace {

std::span<const std::byte> bytes(std::string_view text) {
    return std::as_bytes(std::span(text.data(), text.size()));
}

struct Host final : SmtpHost {
    std::vector<std::string> users, passwords;
    Status begin_status = Status::ok;
    RcptVerdict rcpt_verdict(const SmtpEnvelope& envelope, const SmtpAddress&) override {
        return envelope.auth_user.empty() ? RcptVerdict::relay_denied : RcptVerdict::accept_relay;
    }
    Result<QueueId> message_begin(const SmtpEnvelope&) override { return QueueId::from("Q1"); }
    void message_data(std::span<const std::byte> piece) override {
        body.append(reinterpret_cast<const char*>(piece.data()), piece.size());
    }
    void message_end(const SmtpMessageInfo&) override { ended = true; }
    void message_abort() override {}
    std::int64_t now_unix_seconds() override { return 1700000000; }
    Status auth_begin(const SmtpAuthRequest& request) override {
        users.emplace_back(request.user);
        passwords.emplace_back(request.password);
        mechanisms.emplace_back(request.mechanism);
        verified.push_back(request.verified);
        return begin_status;
    }
    std::string auth_scram_keys(std::string_view user) override {
        return user == "user" ? scram_keys : std::string();
    }
    std::vector<std::string> mechanisms;
    std::vector<bool> verified;
    std::string scram_keys;
    std::string body;
    bool ended = false;
};

struct Fixture {
    SmtpServerConfig config;
    SmtpSessionInfo session;
    Host host;
    std::unique_ptr<SmtpServer> server;
    explicit Fixture(bool tls = true, bool submission = true) {
        config.hostname = "mail.example.test";
        config.auth_required = submission;
        config.sender_login_match = submission;
        session.client_address = "127.0.0.1";
        session.tls_active = tls;
        session.tls_available = !tls;
        session.auth_available = true;
        server = std::make_unique<SmtpServer>(config, host, session);
        server->greet();
        out();
    }
    ~Fixture() {
        if (!server->wants_close()) server->connection_lost();
    }
    std::string out() {
        std::string text;
        server->take_output(text);
        return text;
    }
    std::string send(std::string_view text) {
        std::size_t used = server->feed(bytes(text));
        EXPECT_EQ(used, text.size());
        return out();
    }
};

std::string plain(std::string_view user, std::string_view password) {
    std::string message;
    message.push_back('\0');
    message.append(user);
    message.push_back('\0');
    message.append(password);
    std::string encoded;
    auth::base64_encode(message, encoded);
    return encoded;
}

// Proves AUTH is advertised only over TLS, and AUTH before TLS is 538 5.7.11.
TEST(SmtpAuth, OnlyAfterTls) {
    Fixture f(false);
    std::string ehlo = f.send("EHLO c\r\n");
    EXPECT_EQ(ehlo.find("AUTH"), std::string::npos);
    EXPECT_NE(ehlo.find("STARTTLS"), std::string::npos);
    EXPECT_EQ(f.send("AUTH PLAIN " + plain("demo@example.test", "demo") + "\r\n").substr(0, 10),
              "538 5.7.11");
    EXPECT_TRUE(f.host.users.empty());
    EXPECT_EQ(f.send("STARTTLS\r\n").substr(0, 3), "220");
    EXPECT_TRUE(f.server->waiting_for_tls());
    f.server->tls_started();
    EXPECT_NE(f.send("EHLO c\r\n").find("250-AUTH PLAIN LOGIN SCRAM-SHA-256\r\n"), std::string::npos);
}

// Proves AUTH PLAIN with an initial response goes to the host, pauses, and 235 follows;
// then MAIL from the own address works and relay is allowed; Received says ESMTPSA.
TEST(SmtpAuth, PlainSuccessAndSubmission) {
    Fixture f;
    f.send("EHLO c\r\n");
    EXPECT_EQ(f.send("MAIL FROM:<demo@example.test>\r\n").substr(0, 9), "530 5.7.0");
    EXPECT_EQ(f.send("AUTH PLAIN " + plain("demo@example.test", "pw") + "\r\n"), "");
    EXPECT_TRUE(f.server->paused());
    ASSERT_EQ(f.host.users.size(), 1u);
    EXPECT_EQ(f.host.users[0], "demo@example.test");
    EXPECT_EQ(f.host.passwords[0], "pw");
    f.server->auth_done(SmtpAuthOutcome::success);
    EXPECT_EQ(f.out().substr(0, 9), "235 2.7.0");
    EXPECT_EQ(f.server->auth_user(), "demo@example.test");
    EXPECT_EQ(f.send("AUTH PLAIN " + plain("x", "y") + "\r\n").substr(0, 3), "503");
    std::string r = f.send("MAIL FROM:<Other@example.test>\r\n");
    EXPECT_EQ(r.substr(0, 9), "553 5.7.1") << r;
    EXPECT_EQ(f.send("MAIL FROM:<DEMO@example.test>\r\n").substr(0, 3), "250");
    EXPECT_EQ(f.send("RCPT TO:<x@remote.test>\r\n").substr(0, 3), "250");
    EXPECT_EQ(f.send("DATA\r\n").substr(0, 3), "354");
    f.send("Subject: s\r\n\r\nb\r\n.\r\n");
    EXPECT_TRUE(f.host.ended);
    EXPECT_NE(f.host.body.find("with ESMTPSA id Q1"), std::string::npos) << f.host.body;
    f.server->message_done(Status::ok);
}

// Proves AUTH LOGIN prompts, one byte at a time (trickle), then a failure is 535 5.7.8.
TEST(SmtpAuth, LoginTrickleAndFailure) {
    Fixture f;
    f.send("EHLO c\r\n");
    std::string user, password;
    auth::base64_encode("demo@example.test", user);
    auth::base64_encode("wrong", password);
    std::string input = "AUTH LOGIN\r\n";
    std::string output;
    for (char c : input) output += f.send(std::string(1, c));
    EXPECT_EQ(output, "334 VXNlcm5hbWU6\r\n");
    output.clear();
    for (char c : user + "\r\n") output += f.send(std::string(1, c));
    EXPECT_EQ(output, "334 UGFzc3dvcmQ6\r\n");
    for (char c : password + "\r\n") EXPECT_EQ(f.send(std::string(1, c)), "");
    ASSERT_EQ(f.host.passwords.size(), 1u);
    EXPECT_EQ(f.host.passwords[0], "wrong");
    f.server->auth_done(SmtpAuthOutcome::bad);
    EXPECT_EQ(f.out().substr(0, 9), "535 5.7.8");
    EXPECT_TRUE(f.server->auth_user().empty());
}

// Proves bad base64, malformed PLAIN, "*" cancel, unknown mechanism and throttled replies.
TEST(SmtpAuth, GarbageAndCancel) {
    Fixture f;
    f.send("EHLO c\r\n");
    EXPECT_EQ(f.send("AUTH PLAIN not*base64\r\n").substr(0, 9), "501 5.5.2");
    EXPECT_EQ(f.send("AUTH PLAIN Zm9v\r\n").substr(0, 9), "501 5.5.2");  // "foo": no NULs.
    EXPECT_EQ(f.send("AUTH PLAIN\r\n"), "334 \r\n");
    EXPECT_EQ(f.send("*\r\n").substr(0, 9), "501 5.7.0");
    EXPECT_EQ(f.send("AUTH CRAM-MD5\r\n").substr(0, 9), "504 5.5.4");
    EXPECT_EQ(f.send("AUTH LOGIN\r\n").substr(0, 3), "334");
    EXPECT_EQ(f.send("!!!!\r\n").substr(0, 9), "501 5.5.2");
    EXPECT_EQ(f.send("AUTH PLAIN " + std::string(900, 'A') + "\r\n").substr(0, 3), "501");
    EXPECT_TRUE(f.host.users.empty());
    f.host.begin_status = Status::full;
    EXPECT_EQ(f.send("AUTH PLAIN " + plain("a@b", "c") + "\r\n").substr(0, 9), "454 4.7.0");
    f.host.begin_status = Status::refused;
    EXPECT_EQ(f.send("AUTH PLAIN " + plain("a@b", "c") + "\r\n").substr(0, 9),
              "421 4.7.0");
    EXPECT_TRUE(f.server->wants_close());
}

// Proves an authzid other than the user is refused without asking the host.
TEST(SmtpAuth, ForeignAuthzidRefused) {
    Fixture f;
    f.send("EHLO c\r\n");
    std::string message = std::string("admin@x") + '\0' + "demo@example.test" + '\0' + "pw";
    std::string encoded;
    auth::base64_encode(message, encoded);
    EXPECT_EQ(f.send("AUTH PLAIN " + encoded + "\r\n").substr(0, 3), "535");
    EXPECT_TRUE(f.host.users.empty());
}

// Proves the mx policy: without auth_required, MAIL works unauthenticated; relay is the host's.
TEST(SmtpAuth, MxNeedsNoAuth) {
    Fixture f(true, false);
    f.send("EHLO c\r\n");
    EXPECT_EQ(f.send("MAIL FROM:<x@remote.test>\r\n").substr(0, 3), "250");
    EXPECT_EQ(f.send("RCPT TO:<y@elsewhere.test>\r\n").substr(0, 3), "554");
}

std::string b64(std::string_view text) {
    std::string out;
    auth::base64_encode(text, out);
    return out;
}

// Proves the SCRAM-SHA-256 exchange in SMTP: the 334 challenge carries the client nonce,
// the stored salt and count; a wrong proof reaches the host as not verified (the host's
// verdict: 535); an unknown user gets a challenge too; a proof for another nonce is 501.
TEST(SmtpAuth, ScramExchange) {
    Fixture f;
    auto keys = auth::scram_credential_derive("pencil", "salt-bytes", 4096);
    ASSERT_TRUE(keys.ok());
    f.host.scram_keys = auth::scram_credential_format(*keys);
    f.send("EHLO c\r\n");
    std::string challenge = f.send("AUTH SCRAM-SHA-256 " + b64("n,,n=user,r=abc") + "\r\n");
    ASSERT_EQ(challenge.substr(0, 4), "334 ");
    std::string decoded;
    ASSERT_EQ(auth::base64_decode(challenge.substr(4, challenge.size() - 6), decoded), Status::ok);
    EXPECT_EQ(decoded.rfind("r=abc", 0), 0u);
    EXPECT_NE(decoded.find(",s=" + b64("salt-bytes") + ",i=4096"), std::string::npos) << decoded;
    std::string nonce = decoded.substr(2, decoded.find(',') - 2);
    std::string final = "c=biws,r=" + nonce + ",p=" + b64(std::string(32, 'x'));
    EXPECT_EQ(f.send(b64(final) + "\r\n"), "");  // Waiting for the host.
    ASSERT_EQ(f.host.mechanisms.size(), 1u);
    EXPECT_EQ(f.host.mechanisms[0], "SCRAM-SHA-256");
    EXPECT_EQ(f.host.users[0], "user");
    EXPECT_FALSE(f.host.verified[0]);
    f.server->auth_done(SmtpAuthOutcome::bad);
    EXPECT_EQ(f.out().substr(0, 9), "535 5.7.8");
    challenge = f.send("AUTH SCRAM-SHA-256 " + b64("n,,n=nobody,r=xyz") + "\r\n");
    EXPECT_EQ(challenge.substr(0, 4), "334 ");
    EXPECT_EQ(f.send(b64("c=biws,r=other,p=" + b64(std::string(32, 'x'))) + "\r\n").substr(0, 9),
              "501 5.5.2");
    EXPECT_EQ(f.send("AUTH SCRAM-SHA-256 " + b64("p=tls-unique,,n=user,r=a") + "\r\n").substr(0, 9),
              "501 5.5.2");
    EXPECT_EQ(f.send("NOOP\r\n").substr(0, 3), "250");
}

}  // namespace
}  // namespace rp::smtp
