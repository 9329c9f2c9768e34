// tests/unit/auth_scram_test.cc: protocols/auth/scram.h against RFC 7677's example exchange,
// plus malformed and wrong input.
#include <gtest/gtest.h>

#include <string>

#include "protocols/auth/sasl.h"
#include "protocols/auth/scram.h"

namespace rp::auth {
namespace {

std::string unb64(std::string_view text) {
    std::string out;
    EXPECT_EQ(base64_decode(text, out), Status::ok);
    return out;
}

// RFC 7677 3: user "user", password "pencil".
constexpr std::string_view rfc_client_first = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
constexpr std::string_view rfc_server_nonce = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
constexpr std::string_view rfc_salt = "W22ZaJ0SNY7soEsUEjb6gQ==";
constexpr std::string_view rfc_client_final =
    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";

ScramCredential rfc_credential() {
    auto credential = scram_credential_derive("pencil", unb64(rfc_salt), 4096);
    EXPECT_TRUE(credential.ok());
    return *credential;
}

// Proves the server side reproduces RFC 7677's exchange byte for byte, including the
// server signature, from a credential that holds no password.
TEST(AuthScram, Rfc7677Exchange) {
    ScramCredential credential = rfc_credential();
    ScramServer server;
    ASSERT_EQ(server.client_first(rfc_client_first), Status::ok);
    EXPECT_EQ(server.user(), "user");
    EXPECT_EQ(server.server_first(&credential, rfc_server_nonce),
              "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
              "s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096");
    bool verified = false;
    ASSERT_EQ(server.client_final(rfc_client_final, &verified), Status::ok);
    EXPECT_TRUE(verified);
    EXPECT_EQ(server.server_final(), "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
}

// Proves the stored form (RFC 5803) round-trips and malformed stored text is refused.
TEST(AuthScram, CredentialFormatRoundTrip) {
    ScramCredential credential = rfc_credential();
    std::string text = scram_credential_format(credential);
    EXPECT_EQ(text.rfind("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$", 0), 0u) << text;
    auto parsed = scram_credential_parse(text);
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(parsed->iterations, 4096u);
    EXPECT_EQ(parsed->salt, credential.salt);
    EXPECT_EQ(parsed->stored_key, credential.stored_key);
    EXPECT_EQ(parsed->server_key, credential.server_key);
    for (std::string_view bad : {"", "SCRAM-SHA-256", "SCRAM-SHA-1$4096:c2FsdA==$YQ==:YQ==",
                                 "SCRAM-SHA-256$0:c2FsdA==$YQ==:YQ==",
                                 "SCRAM-SHA-256$x:c2FsdA==$YQ==:YQ==",
                                 "SCRAM-SHA-256$4096:c2FsdA==$YQ==:YQ=="}) {
        EXPECT_FALSE(scram_credential_parse(bad).ok()) << bad;
    }
    auto made = scram_credential_make("pencil", 4096);
    ASSERT_TRUE(made.ok());
    EXPECT_EQ(made->salt.size(), 16u);
    EXPECT_NE(made->stored_key, credential.stored_key);  // Another salt.
}

// Proves a wrong password, an unknown user (fake salt, stable per user) and a tampered
// nonce or channel binding all fail; malformed messages are Status::invalid.
TEST(AuthScram, WrongAndMalformed) {
    ScramCredential credential = rfc_credential();
    auto wrong = scram_credential_derive("pencil2", unb64(rfc_salt), 4096);
    ASSERT_TRUE(wrong.ok());
    {
        ScramServer server;
        ASSERT_EQ(server.client_first(rfc_client_first), Status::ok);
        server.server_first(&*wrong, rfc_server_nonce);
        bool verified = true;
        ASSERT_EQ(server.client_final(rfc_client_final, &verified), Status::ok);
        EXPECT_FALSE(verified);
    }
    std::string fake_salt;
    for (int round = 0; round < 2; ++round) {
        ScramServer server;
        ASSERT_EQ(server.client_first("n,,n=nobody,r=abc"), Status::ok);
        std::string first = server.server_first(nullptr);
        std::string salt = first.substr(first.find(",s="));
        if (round == 1) {
            EXPECT_EQ(salt, fake_salt);  // The same salt each time.
        }
        fake_salt = salt;
    }
    for (std::string_view bad :
         {"", "p=tls-unique,,n=user,r=abc", "n,,r=abc", "n,,n=user", "n,,n=,r=abc",
          "n,,n=us=er,r=abc", "x,,n=user,r=abc", "n,a=other,n=user,r=abc",
          "n,,m=ext,n=user,r=abc", "n,,n=user,r="}) {
        ScramServer server;
        EXPECT_EQ(server.client_first(bad), Status::invalid) << bad;
    }
    ScramServer escaped;
    ASSERT_EQ(escaped.client_first("y,a=a=2Cb=3D,n=a=2Cb=3D,r=abc"), Status::ok);
    EXPECT_EQ(escaped.user(), "a,b=");
    for (std::string_view bad :
         {std::string_view("c=biws,r=rOprNGfwEbeRWgbNEkqO,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="),
          std::string_view("c=eSws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                           "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="),
          std::string_view("c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"),
          std::string_view("c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=!!")}) {
        ScramServer server;
        ASSERT_EQ(server.client_first(rfc_client_first), Status::ok);
        server.server_first(&credential, rfc_server_nonce);
        bool verified = true;
        EXPECT_EQ(server.client_final(bad, &verified), Status::invalid) << bad;
        EXPECT_FALSE(verified);
    }
}

}  // namespace
}  // namespace rp::auth
