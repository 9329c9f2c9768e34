// tests/unit/imap_mime_test.cc: MIME structure, sections, ENVELOPE/BODYSTRUCTURE, malformed
// messages.
#include <gtest/gtest.h>

#include <string>

#include "protocols/imap/imap_mime.h"
#include "tests/unit/imap_test_harness.h"

namespace rp::imap {
namespace {

std::string section_bytes(std::string_view msg, const MimeMessage& mime, Section s) {
    MimeRange r;
    if (!mime_section_range(mime, s, r)) return "<none>";
    EXPECT_LE(r.offset + r.bytes, msg.size());
    return std::string(msg.substr(r.offset, r.bytes));
}

Section sec(std::vector<std::uint32_t> part, SectionText text = SectionText::none) {
    Section s;
    s.part = std::move(part);
    s.text = text;
    return s;
}

// Proves a multipart message splits at its boundaries, without the CRLF before a delimiter,
// and that part numbers, MIME headers and HEADER/TEXT resolve as RFC 3501 6.4.5 says.
TEST(ImapMime, MultipartSections) {
    const std::string_view msg = testing::sample_multipart;
    const MimeMessage mime = mime_parse(msg);
    EXPECT_EQ(mime.malformed_count, 0u);
    ASSERT_EQ(mime.parts[0].children.size(), 2u);
    EXPECT_EQ(section_bytes(msg, mime, sec({1})), "See the attachment.");
    EXPECT_EQ(section_bytes(msg, mime, sec({2})), "AAECAwQ=");
    EXPECT_EQ(section_bytes(msg, mime, sec({2}, SectionText::mime)).substr(0, 13), "Content-Type:");
    EXPECT_EQ(section_bytes(msg, mime, sec({3})), "<none>");
    EXPECT_EQ(section_bytes(msg, mime, sec({1, 1})), "<none>");
    EXPECT_EQ(section_bytes(msg, mime, sec({}, SectionText::text)).substr(0, 9), "Preamble.");
    const std::string header = section_bytes(msg, mime, sec({}, SectionText::header));
    EXPECT_EQ(header.substr(header.size() - 4), "\r\n\r\n");
    std::string decoded;
    ASSERT_TRUE(mime_decode("AAECAwQ=", "base64", decoded));
    EXPECT_EQ(decoded, std::string("\0\1\2\3\4", 5));
}

// Proves message/rfc822 nesting: 1 is the whole inner message, 1.HEADER / 1.TEXT its parts,
// 1.1 its (single-part) body; and a non-multipart message has part 1 = its body.
TEST(ImapMime, NestedMessage) {
    const std::string_view msg = testing::sample_forward;
    const MimeMessage mime = mime_parse(msg);
    EXPECT_EQ(section_bytes(msg, mime, sec({1}, SectionText::header)),
              "From: Alice Example <alice@example.test>\r\nSubject: Hello\r\n\r\n");
    EXPECT_EQ(section_bytes(msg, mime, sec({1}, SectionText::text)), "Hello, world.\r\n");
    EXPECT_EQ(section_bytes(msg, mime, sec({1, 1})), "Hello, world.\r\n");
    const MimeMessage plain = mime_parse(testing::sample_plain);
    EXPECT_EQ(section_bytes(testing::sample_plain, plain, sec({1})), "Hello, world.\r\nSecond line.\r\n");
    EXPECT_EQ(section_bytes(testing::sample_plain, plain, sec({2})), "<none>");
}

// Proves BODYSTRUCTURE and ENVELOPE text for a nested message (pinned bytes).
TEST(ImapMime, BodystructureAndEnvelope) {
    const MimeMessage mime = mime_parse(testing::sample_forward);
    std::string out;
    mime_append_body(out, mime, false);
    EXPECT_EQ(out,
              "(\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7BIT\" 75 (NIL \"Hello\" ((\"Alice Example\" NIL "
              "\"alice\" \"example.test\")) ((\"Alice Example\" NIL \"alice\" \"example.test\")) "
              "((\"Alice Example\" NIL \"alice\" \"example.test\")) NIL NIL NIL NIL NIL) (\"TEXT\" "
              "\"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 15 1) 4)");
    out.clear();
    mime_append_envelope(out, mime.parts[0].envelope);
    EXPECT_EQ(out.substr(0, 54), "(\"Thu, 16 Nov 2023 10:00:00 -0500\" \"Fwd: Hello\" ((NIL ");
}

// Proves HEADER.FIELDS keeps folded lines and the order of the message.
TEST(ImapMime, HeaderFields) {
    const std::string msg = "Subject: a\r\n b\r\nX-A: 1\r\nFrom: f\r\nx-a: 2\r\n\r\nbody";
    const MimeMessage mime = mime_parse(msg);
    Section s = sec({}, SectionText::header_fields);
    s.fields = {"X-A", "SUBJECT"};
    EXPECT_EQ(mime_header_fields(msg, mime, s), "Subject: a\r\n b\r\nX-A: 1\r\nx-a: 2\r\n\r\n");
    s.text = SectionText::header_fields_not;
    EXPECT_EQ(mime_header_fields(msg, mime, s), "From: f\r\n\r\n");
}

// Proves malformed messages parse without failing: no blank line, no boundary parameter,
// a missing close delimiter, a boundary never seen, bare LF line ends, a bad Content-Type,
// deep nesting.
TEST(ImapMime, Malformed) {
    EXPECT_EQ(mime_parse("Subject: only a header").parts.size(), 1u);
    EXPECT_GT(mime_parse("Subject: only a header").malformed_count, 0u);
    const MimeMessage no_boundary = mime_parse("Content-Type: multipart/mixed\r\n\r\nbody\r\n");
    EXPECT_EQ(no_boundary.parts[0].type, "TEXT");
    const std::string unclosed = "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\none\r\n--b\r\n\r\ntwo";
    const MimeMessage u = mime_parse(unclosed);
    ASSERT_EQ(u.parts[0].children.size(), 2u);
    EXPECT_EQ(section_bytes(unclosed, u, sec({2})), "two");
    const std::string lf = "Content-Type: multipart/alternative; boundary=\"q\"\n\n--q\nContent-Type: text/html\n\n<p>\n--q--\n";
    const MimeMessage l = mime_parse(lf);
    ASSERT_EQ(l.parts[0].children.size(), 1u);
    EXPECT_EQ(l.parts[l.parts[0].children[0]].subtype, "HTML");
    EXPECT_EQ(section_bytes(lf, l, sec({1})), "<p>");
    EXPECT_GT(mime_parse("Content-Type: ???\r\n\r\nx").malformed_count, 0u);
    std::string deep;
    for (int i = 0; i < 200; ++i) deep += "Content-Type: message/rfc822\r\n\r\n";
    const MimeMessage d = mime_parse(deep);
    EXPECT_LE(d.parts.size(), mime_depth_max + 2);
    std::string out;
    mime_append_body(out, d, true);
    EXPECT_FALSE(out.empty());
    std::string wide = "Content-Type: multipart/mixed; boundary=b\r\n\r\n";
    for (int i = 0; i < 3000; ++i) wide += "--b\r\n\r\nx\r\n";
    EXPECT_LE(mime_parse(wide).parts.size(), mime_parts_max + 1);
}

// Proves tolerant RFC 5322 date parsing for SENT* searches.
TEST(ImapMime, Dates) {
    std::int64_t d = 0;
    ASSERT_TRUE(mime_date_days("Tue, 14 Nov 2023 22:13:20 +0000", d));
    EXPECT_EQ(d, days_from_civil(2023, 11, 14));
    ASSERT_TRUE(mime_date_days("1 jan 99 00:00 GMT", d));
    EXPECT_EQ(d, days_from_civil(1999, 1, 1));
    EXPECT_FALSE(mime_date_days("yesterday", d));
}

}  // namespace
}  // namespace rp::imap
