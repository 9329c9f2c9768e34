// tests/fuzz/fuzz_smtp_command.cc: the SMTP command and path parsers on arbitrary lines.
//
// Invariants: never crash; views point into the input; an accepted MAIL/RCPT address is
// printable (no control bytes, no CR/LF) and within the RFC 5321 length limits; a parsed
// address re-parses to itself.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "protocols/smtp/smtp_command.h"

namespace {

void check(bool ok) {
    if (!ok) std::abort();
}

bool inside(std::string_view part, std::string_view whole) {
    return part.empty() ||
           (part.data() >= whole.data() && part.data() + part.size() <= whole.data() + whole.size());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view line(reinterpret_cast<const char*>(data), size);
    const rp::smtp::SmtpCommand c = rp::smtp::parse_command(line);
    check(inside(c.argument, line));
    check(inside(c.bad_param, line));
    if (c.syntax == rp::smtp::SmtpSyntax::ok &&
        (c.verb == rp::smtp::SmtpVerb::mail || c.verb == rp::smtp::SmtpVerb::rcpt)) {
        const std::string_view text = c.address.text();
        check(text.size() + 2 <= rp::smtp::path_bytes_max);
        for (const char ch : text) {
            const auto u = static_cast<unsigned char>(ch);
            check(u >= 32 && u != 127);
        }
        check(c.address.is_null() || !c.address.local_part().empty());
        if (!c.address.is_null()) {
            rp::smtp::SmtpAddress again;
            rp::smtp::PathOptions options;
            options.allow_postmaster = true;
            const std::string path = "<" + std::string(text) + ">";
            const rp::smtp::PathParse p = rp::smtp::parse_path(path, options, again);
            check(p.error == rp::smtp::AddressError::ok);
            check(again.text() == text);
        }
    }
    if (c.verb == rp::smtp::SmtpVerb::bdat && c.syntax == rp::smtp::SmtpSyntax::ok) {
        check(c.chunk_bytes < UINT64_MAX);
    }
    return 0;
}
