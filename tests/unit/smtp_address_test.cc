// tests/unit/smtp_address_test.cc: RFC 5321 path parsing (protocols/smtp/smtp_address).
#include "protocols/smtp/smtp_address.h"

#include <gtest/gtest.h>

#include <string>

namespace rp::smtp {
namespace {

struct Parsed {
    AddressError error;
    std::string text;
    std::size_t consumed;
    bool utf8;
};

Parsed parse(std::string_view s, PathOptions o = {}) {
    SmtpAddress a;
    const PathParse p = parse_path(s, o, a);
    return {p.error, std::string(a.text()), p.consumed, a.utf8()};
}

// Proves: ordinary mailboxes parse; the domain is lowercased, the local part is not.
TEST(SmtpAddress, Plain) {
    const Parsed p = parse("<John.Doe+tag@Mail.Example.COM> SIZE=1");
    EXPECT_EQ(p.error, AddressError::ok);
    EXPECT_EQ(p.text, "John.Doe+tag@mail.example.com");
    EXPECT_EQ(p.consumed, 31u);
    SmtpAddress a;
    (void)parse_path("<a@b.example>", {}, a);
    EXPECT_EQ(a.local_part(), "a");
    EXPECT_EQ(a.domain(), "b.example");
}

// Proves: the null path and <postmaster> are accepted only where allowed.
TEST(SmtpAddress, NullAndPostmaster) {
    EXPECT_EQ(parse("<>").error, AddressError::syntax);
    PathOptions mail;
    mail.allow_null = true;
    const Parsed n = parse("<>", mail);
    EXPECT_EQ(n.error, AddressError::ok);
    EXPECT_EQ(n.text, "");
    EXPECT_EQ(parse("<postmaster>").error, AddressError::syntax);
    PathOptions rcpt;
    rcpt.allow_postmaster = true;
    EXPECT_EQ(parse("<PostMaster>", rcpt).text, "PostMaster");
    EXPECT_EQ(parse("<someone>", rcpt).error, AddressError::syntax);
}

// Proves: quoted local parts are decoded; needless quotes are dropped; needed ones kept.
TEST(SmtpAddress, QuotedLocalPart) {
    EXPECT_EQ(parse("<\"demo\"@example.test>").text, "demo@example.test");
    EXPECT_EQ(parse("<\"a b\"@example.test>").text, "\"a b\"@example.test");
    EXPECT_EQ(parse("<\"a\\\"b\"@example.test>").text, "\"a\\\"b\"@example.test");
    EXPECT_EQ(parse("<\"a\\b\"@example.test>").text, "ab@example.test");
    EXPECT_EQ(parse("<\"\"@example.test>").error, AddressError::syntax);
    EXPECT_EQ(parse("<\"open@example.test>").error, AddressError::syntax);
    EXPECT_EQ(parse("<\"a\rb\"@example.test>").error, AddressError::syntax);
}

// Proves: source routes are accepted and ignored (RFC 5321 C); literals are validated.
TEST(SmtpAddress, RoutesAndLiterals) {
    EXPECT_EQ(parse("<@a.example,@b.example:u@c.example>").text, "u@c.example");
    EXPECT_EQ(parse("<@a.example:u@c.example>").text, "u@c.example");
    EXPECT_EQ(parse("<@:u@c.example>").error, AddressError::syntax);
    EXPECT_EQ(parse("<u@[192.0.2.1]>").text, "u@[192.0.2.1]");
    EXPECT_EQ(parse("<u@[IPv6:2001:db8::1]>").text, "u@[IPv6:2001:db8::1]");
    EXPECT_EQ(parse("<u@[300.0.0.1]>").error, AddressError::syntax);
    EXPECT_EQ(parse("<u@[IPv6:zz::1]>").error, AddressError::syntax);
    EXPECT_EQ(parse("<u@[x-tag:stuff]>").error, AddressError::ok);
}

// Proves: malformed paths are refused.
TEST(SmtpAddress, Malformed) {
    for (const char* bad : {"", "<", "u@x", "<u@x", "<u@@x>", "<.u@x>", "<u.@x>", "<u..v@x>",
                            "<u@x..y>", "<u@-x>", "<u@x->", "<u@x.>", "<u @x>", "<u@x y>",
                            "<@x>", "<u@>", "<u>", "<u@x\x01>", "<u@x_y>"}) {
        EXPECT_NE(parse(bad).error, AddressError::ok) << bad;
    }
}

// Proves: the RFC 5321 4.5.3.1 limits: local part 64, domain label 63, path 256.
TEST(SmtpAddress, LengthLimits) {
    const std::string l64(64, 'a');
    EXPECT_EQ(parse("<" + l64 + "@x.example>").error, AddressError::ok);
    EXPECT_EQ(parse("<" + l64 + "a@x.example>").error, AddressError::too_long);
    const std::string label63(63, 'b');
    EXPECT_EQ(parse("<u@" + label63 + ".example>").error, AddressError::ok);
    EXPECT_EQ(parse("<u@" + label63 + "b.example>").error, AddressError::syntax);
    std::string domain = label63 + "." + label63 + "." + label63 + ".";
    domain += std::string(250 - domain.size(), 'c');  // 250 octets.
    EXPECT_EQ(parse("<u@" + domain + ">").error, AddressError::ok);
    EXPECT_EQ(parse("<" + std::string(10, 'u') + "@" + domain + ">").error,
              AddressError::too_long);
}

// Proves: UTF-8 (RFC 6531) is accepted when well formed and allowed, and reported.
TEST(SmtpAddress, Utf8) {
    const Parsed p = parse("<caf\xc3\xa9@b\xc3\xbc" "cher.example>");
    EXPECT_EQ(p.error, AddressError::ok);
    EXPECT_TRUE(p.utf8);
    EXPECT_FALSE(parse("<a@b.example>").utf8);
    PathOptions ascii;
    ascii.allow_utf8 = false;
    EXPECT_EQ(parse("<caf\xc3\xa9@x.example>", ascii).error, AddressError::syntax);
    for (const char* bad : {"<a\xc3@x>", "<a\xc0\xaf@x>", "<a\xed\xa0\x80@x>",
                            "<a\xf5\x80\x80\x80@x>", "<a\xff@x>"}) {
        EXPECT_EQ(parse(bad).error, AddressError::syntax) << bad;
    }
}

// Proves: valid_domain accepts names and literals and refuses garbage.
TEST(SmtpAddress, ValidDomain) {
    EXPECT_TRUE(valid_domain("mail.example.test", false));
    EXPECT_TRUE(valid_domain("[192.0.2.1]", false));
    EXPECT_FALSE(valid_domain("bad..name", false));
    EXPECT_FALSE(valid_domain("", false));
    EXPECT_FALSE(valid_domain("b\xc3\xbc.example", false));
    EXPECT_TRUE(valid_domain("b\xc3\xbc.example", true));
}

}  // namespace
}  // namespace rp::smtp
