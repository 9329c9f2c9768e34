// tests/fuzz/fuzz_imap_mime.cc: MIME parsing of arbitrary messages.
//
// Invariants: never crash or trip an RP_ASSERT; every part's header and body ranges lie inside
// the message; part count and depth stay bounded; every section that resolves gives a range
// inside the message; BODYSTRUCTURE/ENVELOPE text has balanced parentheses outside strings
// and literals; HEADER.FIELDS output ends with the blank line.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "protocols/imap/imap_mime.h"

namespace {

void check(bool ok) {
    if (!ok) std::abort();
}

// Checks parentheses balance, skipping quoted strings and {n}\r\n literals.
void check_balanced(std::string_view s) {
    long depth = 0;
    for (std::size_t i = 0; i < s.size(); ++i) {
        const char c = s[i];
        if (c == '"') {
            for (++i; i < s.size() && s[i] != '"'; ++i) {
                if (s[i] == '\\') ++i;
            }
            check(i < s.size());
        } else if (c == '{') {
            std::size_t n = 0;
            for (++i; i < s.size() && s[i] >= '0' && s[i] <= '9'; ++i) n = n * 10 + static_cast<std::size_t>(s[i] - '0');
            check(i + 2 < s.size() + 1 && s.substr(i, 3) == "}\r\n");
            i += 2 + n;
        } else if (c == '(') {
            ++depth;
        } else if (c == ')') {
            --depth;
            check(depth >= 0);
        }
    }
    check(depth == 0);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view msg(reinterpret_cast<const char*>(data), size);
    const rp::imap::MimeMessage mime = rp::imap::mime_parse(msg);
    check(!mime.parts.empty());
    check(mime.parts.size() <= rp::imap::mime_parts_max + 1);
    for (const rp::imap::MimePart& p : mime.parts) {
        check(p.header.offset + p.header.bytes <= size);
        check(p.body.offset + p.body.bytes <= size);
        check(p.header.offset + p.header.bytes == p.body.offset);
    }
    std::string out;
    rp::imap::mime_append_body(out, mime, true);
    check_balanced(out);
    out.clear();
    rp::imap::mime_append_body(out, mime, false);
    check_balanced(out);
    out.clear();
    rp::imap::mime_append_envelope(out, mime.parts[0].envelope);
    check_balanced(out);
    // Sections 1, 1.1, 1.2, 2, 2.1 with every text specifier.
    const std::uint32_t paths[][2] = {{1, 0}, {1, 1}, {1, 2}, {2, 0}, {2, 1}, {3, 0}};
    for (const auto& path : paths) {
        for (int t = 0; t <= 5; ++t) {
            rp::imap::Section s;
            s.part.push_back(path[0]);
            if (path[1]) s.part.push_back(path[1]);
            s.text = static_cast<rp::imap::SectionText>(t);
            s.fields = {"SUBJECT", "FROM"};
            rp::imap::MimeRange r;
            if (rp::imap::mime_section_range(mime, s, r)) check(r.offset + r.bytes <= size);
            if (t == 2 || t == 3) {
                const std::string f = rp::imap::mime_header_fields(msg, mime, s);
                check(f.empty() || f.size() >= 2);
            }
            const rp::imap::MimePart* p = rp::imap::mime_resolve(mime, s.part);
            if (p != nullptr) {
                std::string decoded;
                (void)rp::imap::mime_decode(msg.substr(p->body.offset, p->body.bytes), p->encoding, decoded);
            }
        }
    }
    std::int64_t days = 0;
    (void)rp::imap::mime_date_days(msg.substr(0, 64), days);
    return 0;
}
