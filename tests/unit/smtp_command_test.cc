// tests/unit/smtp_command_test.cc: SMTP command line parsing (protocols/smtp/smtp_command).
#include "protocols/smtp/smtp_command.h"

#include <gtest/gtest.h>

namespace rp::smtp {
namespace {

// Proves: verbs are recognised case-insensitively; unknown words are unknown.
TEST(SmtpCommand, Verbs) {
    EXPECT_EQ(parse_command("EHLO x").verb, SmtpVerb::ehlo);
    EXPECT_EQ(parse_command("ehlo x").verb, SmtpVerb::ehlo);
    EXPECT_EQ(parse_command("StartTLS").verb, SmtpVerb::starttls);
    EXPECT_EQ(parse_command("QUIT").syntax, SmtpSyntax::ok);
    EXPECT_EQ(parse_command("QUITX").verb, SmtpVerb::unknown);
    EXPECT_EQ(parse_command("").verb, SmtpVerb::unknown);
    EXPECT_EQ(parse_command(" NOOP").verb, SmtpVerb::unknown);
    EXPECT_EQ(parse_command("NOOP anything at all").syntax, SmtpSyntax::ok);
    EXPECT_EQ(verb_name(SmtpVerb::bdat), "BDAT");
}

// Proves: arguments are required or forbidden per verb.
TEST(SmtpCommand, Arguments) {
    EXPECT_EQ(parse_command("EHLO").syntax, SmtpSyntax::bad_syntax);
    EXPECT_EQ(parse_command("HELO   ").syntax, SmtpSyntax::bad_syntax);
    EXPECT_EQ(parse_command("EHLO  host.example ").argument, "host.example");
    EXPECT_EQ(parse_command("DATA x").syntax, SmtpSyntax::bad_syntax);
    EXPECT_EQ(parse_command("RSET x").syntax, SmtpSyntax::bad_syntax);
    EXPECT_EQ(parse_command("VRFY").syntax, SmtpSyntax::bad_syntax);
    EXPECT_EQ(parse_command("DATA ").syntax, SmtpSyntax::ok);
}

// Proves: control bytes make a known command a syntax error; 8-bit only inside paths.
TEST(SmtpCommand, ControlAndEightBit) {
    EXPECT_EQ(parse_command(std::string_view("NOOP \0", 6)).syntax, SmtpSyntax::bad_syntax);
    EXPECT_EQ(parse_command("NOOP \r").syntax, SmtpSyntax::bad_syntax);
    EXPECT_EQ(parse_command("EHLO caf\xc3\xa9").syntax, SmtpSyntax::bad_syntax);
    EXPECT_EQ(parse_command("MAIL FROM:<caf\xc3\xa9@x.example> SMTPUTF8").syntax, SmtpSyntax::ok);
}

// Proves: MAIL FROM with SIZE, BODY and SMTPUTF8 parameters.
TEST(SmtpCommand, MailParameters) {
    const SmtpCommand c =
        parse_command("MAIL FROM:<a@b.example> size=1234 BODY=8bitmime SMTPUTF8");
    EXPECT_EQ(c.verb, SmtpVerb::mail);
    ASSERT_EQ(c.syntax, SmtpSyntax::ok);
    EXPECT_EQ(c.address.text(), "a@b.example");
    EXPECT_TRUE(c.has_size);
    EXPECT_EQ(c.size, 1234u);
    EXPECT_EQ(c.body, SmtpBodyType::eight_bit_mime);
    EXPECT_TRUE(c.smtputf8);
    EXPECT_EQ(parse_command("MAIL FROM:<> ").syntax, SmtpSyntax::ok);
    EXPECT_EQ(parse_command("MAIL FROM: <a@b.example>").syntax, SmtpSyntax::ok);
    EXPECT_EQ(parse_command("MAIL FROM:<a@b.example> SIZE=99999999999999999999999").size,
              UINT64_MAX);
}

// Proves: bad MAIL/RCPT forms map to the right syntax kind (501 vs 555).
TEST(SmtpCommand, MailRcptErrors) {
    EXPECT_EQ(parse_command("MAIL FROM:a@b").syntax, SmtpSyntax::bad_syntax);
    EXPECT_EQ(parse_command("MAIL TO:<a@b>").syntax, SmtpSyntax::bad_syntax);
    EXPECT_EQ(parse_command("MAIL FROM:<a@@b>").syntax, SmtpSyntax::bad_address);
    EXPECT_EQ(parse_command("MAIL FROM:<a@b>x").syntax, SmtpSyntax::bad_syntax);
    const SmtpCommand u = parse_command("MAIL FROM:<a@b> FOO=1");
    EXPECT_EQ(u.syntax, SmtpSyntax::unsupported_param);
    EXPECT_EQ(u.bad_param, "FOO");
    EXPECT_EQ(parse_command("MAIL FROM:<a@b> SIZE=x").syntax, SmtpSyntax::bad_param_value);
    EXPECT_EQ(parse_command("MAIL FROM:<a@b> SIZE=1 SIZE=2").syntax, SmtpSyntax::bad_param_value);
    EXPECT_EQ(parse_command("MAIL FROM:<a@b> BODY=BINARYMIME").syntax,
              SmtpSyntax::unsupported_param);
    EXPECT_EQ(parse_command("MAIL FROM:<a@b> =x").syntax, SmtpSyntax::bad_syntax);
    EXPECT_EQ(parse_command("RCPT TO:<a@b> NOTIFY=NEVER").syntax, SmtpSyntax::unsupported_param);
    EXPECT_EQ(parse_command("RCPT TO:<>").syntax, SmtpSyntax::bad_address);
    EXPECT_EQ(parse_command("RCPT TO:<postmaster>").syntax, SmtpSyntax::ok);
}

// Proves: BDAT sizes and LAST.
TEST(SmtpCommand, Bdat) {
    const SmtpCommand c = parse_command("BDAT 1000 LAST");
    EXPECT_EQ(c.syntax, SmtpSyntax::ok);
    EXPECT_EQ(c.chunk_bytes, 1000u);
    EXPECT_TRUE(c.last);
    EXPECT_FALSE(parse_command("BDAT 0").last);
    EXPECT_EQ(parse_command("BDAT").syntax, SmtpSyntax::bad_syntax);
    EXPECT_EQ(parse_command("BDAT -1").syntax, SmtpSyntax::bad_syntax);
    EXPECT_EQ(parse_command("BDAT 5 FIRST").syntax, SmtpSyntax::bad_syntax);
    EXPECT_EQ(parse_command("BDAT 99999999999999999999999").syntax, SmtpSyntax::bad_syntax);
}

}  // namespace
}  // namespace rp::smtp
