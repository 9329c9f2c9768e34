// protocols/smtp/smtp_address.h: RFC 5321 4.1.2 paths and mailboxes (+ RFC 6531 UTF-8).
//
// Accepts: "<" [source route ":"] Local-part "@" (Domain / address-literal) ">", the null
//   path "<>" (when allowed), and "<postmaster>" (when allowed, RFC 5321 4.1.1.3). Source
//   routes are parsed and ignored (RFC 5321 C). Local parts are Dot-string or Quoted-string;
//   a quoted local part that needs no quotes is stored unquoted ("demo"@x == demo@x).
//   Non-ASCII (well-formed UTF-8 only) is accepted in the local part and domain when the
//   caller allows it; the parse reports it so that the server can answer 553 5.6.7 without
//   SMTPUTF8.
// Limits (RFC 5321 4.5.3.1): local part 64 octets, domain 255, path 256.
// Invariants: text() never contains CR, LF, NUL, space outside quotes, '<' or '>'.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace rp::smtp {

inline constexpr std::size_t local_part_bytes_max = 64;
inline constexpr std::size_t domain_bytes_max = 255;
inline constexpr std::size_t path_bytes_max = 256;

class SmtpAddress {
public:
    SmtpAddress() = default;

    bool is_null() const { return text_.empty(); }   // "<>"
    std::string_view text() const { return text_; }  // "local@domain", "postmaster" or "".
    std::string_view local_part() const { return std::string_view(text_).substr(0, at_); }
    // Lowercased for ASCII letters; U-labels as sent. Empty for "<postmaster>" and "<>".
    std::string_view domain() const {
        return at_ < text_.size() ? std::string_view(text_).substr(at_ + 1) : std::string_view();
    }
    bool utf8() const { return utf8_; }  // Has a non-ASCII byte.

    // Builds an address from already-validated parts (tests, the parser).
    static SmtpAddress make(std::string_view local_part, std::string_view domain, bool utf8);

private:
    std::string text_;
    std::size_t at_ = 0;  // Index of '@', or text_.size() when there is no domain.
    bool utf8_ = false;
};

enum class AddressError : std::uint8_t {
    ok,
    syntax,    // 501 5.1.7 (sender) / 501 5.1.3 (recipient)
    too_long,  // Same replies; a separate counter.
};

struct PathOptions {
    bool allow_null = false;        // "<>" (MAIL FROM).
    bool allow_postmaster = false;  // "<postmaster>" without domain (RCPT TO).
    bool allow_utf8 = true;         // Non-ASCII octets (RFC 6531).
};

struct PathParse {
    AddressError error = AddressError::syntax;
    std::size_t consumed = 0;  // Up to and including '>' when ok.
};

// Parses a path at the start of `input` (which must start with '<').
PathParse parse_path(std::string_view input, const PathOptions& options, SmtpAddress& out);

// True when `domain` is a syntactically valid RFC 5321 Domain or address-literal (used for
// HELO/EHLO checks and tests). `allow_utf8` admits U-labels.
bool valid_domain(std::string_view domain, bool allow_utf8);

}  // namespace rp::smtp
