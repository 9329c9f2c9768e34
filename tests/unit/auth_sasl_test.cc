// tests/unit/auth_sasl_test.cc: base64 and SASL PLAIN/LOGIN parsing (protocols/auth/sasl.h).
#include <gtest/gtest.h>

#include <string>

#include "protocols/auth/sasl.h"

namespace rp::auth {
namespace {

// Proves base64 round-trips every length 0..64 and the RFC 4648 test vectors decode.
TEST(Base64, RoundTripAndVectors) {
    std::string text, back;
    for (int n = 1; n <= 64; ++n) {
        std::string bytes;
        for (int i = 0; i < n; ++i) bytes.push_back(static_cast<char>(i * 37 + n));
        base64_encode(bytes, text);
        ASSERT_EQ(base64_decode(text, back), Status::ok) << n;
        EXPECT_EQ(back, bytes);
    }
    ASSERT_EQ(base64_decode("Zm9vYmFy", back), Status::ok);
    EXPECT_EQ(back, "foobar");
    ASSERT_EQ(base64_decode("Zm9vYg==", back), Status::ok);
    EXPECT_EQ(back, "foob");
    ASSERT_EQ(base64_decode("=", back), Status::ok);  // RFC 4954: empty response.
    EXPECT_EQ(back, "");
}

// Proves garbage, truncated and non-canonical base64 are refused, never crash.
TEST(Base64, Garbage) {
    std::string out;
    for (const char* bad : {"", "Zm9", "Zm9v!", "Zm=v", "=Zm9", "Zm9vY===", "Zh==", "Zm9=",
                            "Zm9v YmFy", "Zm9vYg==Zm9v", "\xff\xff\xff\xff"}) {
        EXPECT_NE(base64_decode(bad, out), Status::ok) << bad;
    }
    std::string overlong(4000, 'A');
    EXPECT_EQ(base64_decode(overlong, out), Status::too_big);
}

// Proves PLAIN parses authzid/authcid/password and refuses malformed messages.
TEST(SaslPlain, Parse) {
    using namespace std::string_literals;
    const std::string message = "\0demo@example.test\0secret"s;  // Views point into it.
    auto plain = sasl_plain_parse(message);
    ASSERT_TRUE(plain.ok());
    EXPECT_EQ(plain->authzid, "");
    EXPECT_EQ(plain->authcid, "demo@example.test");
    EXPECT_EQ(plain->password, "secret");
    const std::string with_authzid = "admin\0demo\0pw"s;
    plain = sasl_plain_parse(with_authzid);
    ASSERT_TRUE(plain.ok());
    EXPECT_EQ(plain->authzid, "admin");
    for (std::string bad : {"no nul"s, "\0only-one"s, "\0\0pw"s, "\0user\0"s, "a\0b\0c\0d"s,
                            "\0"s + std::string(256, 'u') + "\0pw"s}) {
        EXPECT_FALSE(sasl_plain_parse(bad).ok()) << bad.size();
    }
}

// Proves LOGIN fields: 1..255 bytes without NUL.
TEST(SaslLogin, FieldCheck) {
    using namespace std::string_literals;
    EXPECT_EQ(sasl_login_field_check("demo"), Status::ok);
    EXPECT_NE(sasl_login_field_check(""), Status::ok);
    EXPECT_NE(sasl_login_field_check("a\0b"s), Status::ok);
    EXPECT_NE(sasl_login_field_check(std::string(256, 'x')), Status::ok);
    std::string prompt;
    ASSERT_EQ(base64_decode(sasl_login_user_prompt, prompt), Status::ok);
    EXPECT_EQ(prompt, "Username:");
    ASSERT_EQ(base64_decode(sasl_login_password_prompt, prompt), Status::ok);
    EXPECT_EQ(prompt, "Password:");
}

}  // namespace
}  // namespace rp::auth
