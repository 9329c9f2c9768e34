// tests/unit/dsn_test.cc: RFC 3464 bounce construction.
#include <gtest/gtest.h>

#include "protocols/smtp/dsn.h"

namespace rp::smtp {
namespace {

// A DSN has the multipart/report structure, the remote reply, the status and the original
// header (not the body).
TEST(Dsn, Builds) {
    DsnInput in;
    in.reporting_mta = "mail.example.test";
    in.sender = "demo@example.test";
    in.queue_id = "ABC";
    in.arrival_unix = 1'700'000'000;
    in.now_unix = 1'700'000'100;
    in.boundary_seed = "ABC.1";
    in.recipients.push_back({"x@remote.test", "mx.remote.test", "550 5.1.1 User unknown"});
    const std::string original = "Subject: hello\nFrom: demo@example.test\n\nsecret body\n";
    in.original = original;
    const std::string dsn = dsn_build(in);
    EXPECT_NE(dsn.find("Content-Type: multipart/report; report-type=delivery-status;"), std::string::npos);
    EXPECT_NE(dsn.find("To: <demo@example.test>"), std::string::npos);
    EXPECT_NE(dsn.find("Final-Recipient: rfc822; x@remote.test"), std::string::npos);
    EXPECT_NE(dsn.find("Status: 5.1.1"), std::string::npos);
    EXPECT_NE(dsn.find("Diagnostic-Code: smtp; 550 5.1.1 User unknown"), std::string::npos);
    EXPECT_NE(dsn.find("Remote-MTA: dns; mx.remote.test"), std::string::npos);
    EXPECT_NE(dsn.find("Content-Type: text/rfc822-headers"), std::string::npos);
    EXPECT_NE(dsn.find("Subject: hello\r\nFrom: demo@example.test\r\n"), std::string::npos);
    EXPECT_EQ(dsn.find("secret body"), std::string::npos);
    EXPECT_NE(dsn.find("--=_ringpost_ABC.1--"), std::string::npos);
    // Every line ends in CRLF.
    for (std::size_t i = 0; i < dsn.size(); ++i) {
        if (dsn[i] == '\n') {
            EXPECT_TRUE(i > 0 && dsn[i - 1] == '\r') << i;
        }
    }
}

// Null senders are never bounced; status codes come from the reply or its class.
TEST(Dsn, Rules) {
    EXPECT_FALSE(dsn_wanted(""));
    EXPECT_TRUE(dsn_wanted("a@b"));
    EXPECT_EQ(dsn_status_of("550 5.1.1 User unknown"), "5.1.1");
    EXPECT_EQ(dsn_status_of("552 5.3.4 too big"), "5.3.4");
    EXPECT_EQ(dsn_status_of("550 User unknown"), "5.0.0");
    EXPECT_EQ(dsn_status_of("451 try later"), "4.0.0");
    EXPECT_EQ(dsn_status_of("554 5.4.6x"), "5.0.0");
    EXPECT_EQ(dsn_status_of(""), "5.0.0");
}

// The quoted header stops at the blank line, is bounded, and injection in replies is
// neutralised (no CR/LF in header fields).
TEST(Dsn, HeaderBoundsAndInjection) {
    EXPECT_EQ(dsn_original_header("A: b\r\n\r\nbody"), "A: b\r\n");
    EXPECT_EQ(dsn_original_header("no header end"), "no header end");
    const std::string huge(dsn_headers_bytes_max * 2, 'x');
    EXPECT_LE(dsn_original_header(huge).size(), dsn_headers_bytes_max);
    DsnInput in;
    in.reporting_mta = "m";
    in.sender = "s@x";
    in.recipients.push_back({"r@x", "", "550 bad\r\nInjected: yes"});
    const std::string dsn = dsn_build(in);
    EXPECT_EQ(dsn.find("\r\nInjected: yes"), std::string::npos);
}

}  // namespace
}  // namespace rp::smtp
