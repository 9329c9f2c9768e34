// protocols/smtp/smtp_address.cc: see smtp_address.h.
#include "protocols/smtp/smtp_address.h"

#include <arpa/inet.h>

#include <cstring>

#include "core/assert.h"

namespace rp::smtp {

namespace {

bool is_alpha(unsigned char c) { return (c | 0x20) >= 'a' && (c | 0x20) <= 'z'; }
bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

// RFC 5322 atext.
bool is_atext(unsigned char c) {
    if (is_alpha(c) || is_digit(c)) return true;
    return c != 0 && std::strchr("!#$%&'*+-/=?^_`{|}~", c) != nullptr;
}

// RFC 5321 qtextSMTP: %d32-33 / %d35-91 / %d93-126.
bool is_qtext(unsigned char c) { return c >= 32 && c <= 126 && c != '"' && c != '\\'; }

// Length of the well-formed UTF-8 sequence at s[i] (a byte >= 0x80), or 0 (RFC 3629:
// no overlongs, no surrogates, nothing above U+10FFFF).
std::size_t utf8_length(std::string_view s, std::size_t i) {
    const auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[i + k]); };
    const unsigned char c = b(0);
    std::size_t n = 0;
    unsigned char lo = 0x80;
    unsigned char hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else {
        return 0;
    }
    // bounds: i < s.size(), so s.size() - i >= 1.
    if (s.size() - i < n) return 0;
    if (b(1) < lo || b(1) > hi) return 0;
    for (std::size_t k = 2; k < n; ++k) {
        if (b(k) < 0x80 || b(k) > 0xBF) return 0;
    }
    return n;
}

// RFC 5321 Dot-string (atext, or UTF-8 when allowed, in dot-separated atoms) at s[i...];
// returns the end index, or i when there is none. Sets `utf8` when non-ASCII was seen.
std::size_t scan_dot_string(std::string_view s, std::size_t i, bool allow_utf8, bool& utf8) {
    const std::size_t begin = i;
    bool atom_empty = true;
    while (i < s.size()) {
        const auto c = static_cast<unsigned char>(s[i]);
        if (c == '.') {
            if (atom_empty) return begin;  // Leading or double dot.
            atom_empty = true;
            ++i;
        } else if (c >= 0x80) {
            const std::size_t n = allow_utf8 ? utf8_length(s, i) : 0;
            if (n == 0) return begin;
            utf8 = true;
            atom_empty = false;
            i += n;
        } else if (is_atext(c)) {
            atom_empty = false;
            ++i;
        } else {
            break;
        }
    }
    if (atom_empty) return begin;  // Empty, or a trailing dot.
    return i;
}

bool is_dot_string(std::string_view s) {
    bool utf8 = false;
    return !s.empty() && scan_dot_string(s, 0, true, utf8) == s.size();
}

// RFC 5321 Domain (sub-domain *("." sub-domain)), U-labels when allowed, at s[i...].
// Returns the end index, or i when there is none.
std::size_t scan_domain(std::string_view s, std::size_t i, bool allow_utf8, bool& utf8) {
    const std::size_t begin = i;
    while (true) {
        const std::size_t label = i;
        bool last_hyphen = false;
        while (i < s.size()) {
            const auto c = static_cast<unsigned char>(s[i]);
            if (is_alpha(c) || is_digit(c)) {
                last_hyphen = false;
                ++i;
            } else if (c == '-' && i > label) {
                last_hyphen = true;
                ++i;
            } else if (c >= 0x80 && allow_utf8) {
                const std::size_t n = utf8_length(s, i);
                if (n == 0) return begin;
                utf8 = true;
                last_hyphen = false;
                i += n;
            } else {
                break;
            }
        }
        if (i == label || last_hyphen || i - label > 63) return begin;
        if (i < s.size() && s[i] == '.' && i + 1 < s.size() && s[i + 1] != '.' &&
            s[i + 1] != '>') {
            ++i;
            continue;
        }
        return i;
    }
}

// RFC 5321 4.1.3 address-literal contents (between the brackets).
bool valid_address_literal(std::string_view inner) {
    if (inner.empty() || inner.size() > 64) return false;
    char text[65];
    inner.copy(text, inner.size());
    text[inner.size()] = '\0';
    unsigned char addr[16];
    if (inner.size() > 5 && (inner.substr(0, 5) == "IPv6:" || inner.substr(0, 5) == "ipv6:")) {
        return inet_pton(AF_INET6, text + 5, addr) == 1;
    }
    if (is_digit(static_cast<unsigned char>(inner[0]))) {
        return inet_pton(AF_INET, text, addr) == 1;
    }
    // General-address-literal: Standardized-tag ":" 1*dcontent.
    const std::size_t colon = inner.find(':');
    if (colon == 0 || colon == std::string_view::npos || colon + 1 == inner.size()) return false;
    for (std::size_t k = 0; k < colon; ++k) {
        const auto c = static_cast<unsigned char>(inner[k]);
        if (!is_alpha(c) && !is_digit(c) && c != '-') return false;
    }
    for (std::size_t k = colon + 1; k < inner.size(); ++k) {
        const auto c = static_cast<unsigned char>(inner[k]);
        if (c < 33 || c > 126 || c == '[' || c == '\\' || c == ']') return false;
    }
    return true;
}

// Domain or "[" address-literal "]" at s[i...]; returns the end index or i.
std::size_t scan_domain_or_literal(std::string_view s, std::size_t i, bool allow_utf8,
                                   bool& utf8) {
    if (i < s.size() && s[i] == '[') {
        const std::size_t close = s.find(']', i);
        if (close == std::string_view::npos) return i;
        if (!valid_address_literal(s.substr(i + 1, close - i - 1))) return i;
        return close + 1;
    }
    return scan_domain(s, i, allow_utf8, utf8);
}

// RFC 5321 A-d-l ":" (a source route, ignored). Returns the index after ':' or i.
std::size_t scan_source_route(std::string_view s, std::size_t i) {
    const std::size_t begin = i;
    bool utf8 = false;
    while (true) {
        if (i >= s.size() || s[i] != '@') return begin;
        const std::size_t end = scan_domain_or_literal(s, i + 1, false, utf8);
        if (end == i + 1) return begin;
        i = end;
        if (i < s.size() && s[i] == ',') {
            ++i;
            continue;
        }
        if (i < s.size() && s[i] == ':') return i + 1;
        return begin;
    }
}

// Quoted-string at s[i] == '"'; appends the unquoted content to `out`. Returns the index
// after the closing quote, or i.
std::size_t scan_quoted(std::string_view s, std::size_t i, bool allow_utf8, bool& utf8,
                        std::string& out) {
    const std::size_t begin = i;
    ++i;
    while (i < s.size()) {
        const auto c = static_cast<unsigned char>(s[i]);
        if (c == '"') return i + 1;
        if (c == '\\') {
            if (i + 1 >= s.size()) return begin;
            const auto q = static_cast<unsigned char>(s[i + 1]);
            if (q < 32 || q > 126) return begin;  // RFC 5321 quoted-pairSMTP.
            out.push_back(static_cast<char>(q));
            i += 2;
        } else if (c >= 0x80) {
            const std::size_t n = allow_utf8 ? utf8_length(s, i) : 0;
            if (n == 0) return begin;
            utf8 = true;
            out.append(s.substr(i, n));
            i += n;
        } else if (is_qtext(c)) {
            out.push_back(static_cast<char>(c));
            ++i;
        } else {
            return begin;
        }
    }
    return begin;
}

bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t k = 0; k < a.size(); ++k) {
        if ((a[k] | 0x20) != (b[k] | 0x20)) return false;
    }
    return true;
}

}  // namespace

SmtpAddress SmtpAddress::make(std::string_view local_part, std::string_view domain, bool utf8) {
    RP_ASSERT(!local_part.empty());
    RP_ASSERT(local_part.size() + domain.size() + 1 <= path_bytes_max);
    SmtpAddress a;
    a.text_.reserve(local_part.size() + 1 + domain.size());
    a.text_.append(local_part);
    a.at_ = local_part.size();
    if (!domain.empty()) {
        a.text_.push_back('@');
        const bool literal = domain.front() == '[';  // Kept as sent: "[IPv6:...]".
        for (const char c : domain) {
            const bool upper = c >= 'A' && c <= 'Z' && !literal;
            a.text_.push_back(upper ? static_cast<char>(c | 0x20) : c);
        }
    }
    a.utf8_ = utf8;
    return a;
}

PathParse parse_path(std::string_view s, const PathOptions& options, SmtpAddress& out) {
    PathParse r;
    if (s.empty() || s[0] != '<') return r;
    if (options.allow_null && s.size() >= 2 && s[1] == '>') {
        out = SmtpAddress();
        return PathParse{AddressError::ok, 2};
    }
    std::size_t i = scan_source_route(s, 1);  // RFC 5321 C: the route is ignored.
    bool utf8 = false;
    std::string local;
    std::size_t local_end = i;
    if (i < s.size() && s[i] == '"') {
        local_end = scan_quoted(s, i, options.allow_utf8, utf8, local);
        if (local_end == i) return r;
        if (local.empty()) return r;
        if (!is_dot_string(local)) {
            // Keep it quoted, re-escaped in the minimal form.
            std::string quoted = "\"";
            for (const char c : local) {
                if (c == '"' || c == '\\') quoted.push_back('\\');
                quoted.push_back(c);
            }
            quoted.push_back('"');
            local.swap(quoted);
        }
    } else {
        local_end = scan_dot_string(s, i, options.allow_utf8, utf8);
        if (local_end == i) return r;
        local.assign(s.substr(i, local_end - i));
    }
    if (local.size() > local_part_bytes_max + 2) {
        r.error = AddressError::too_long;
        return r;
    }
    i = local_end;
    if (i < s.size() && s[i] == '>' && options.allow_postmaster && iequals(local, "postmaster")) {
        out = SmtpAddress::make(local, {}, false);
        return PathParse{AddressError::ok, i + 1};
    }
    if (i >= s.size() || s[i] != '@') return r;
    const std::size_t domain_begin = i + 1;
    const std::size_t domain_end = scan_domain_or_literal(s, domain_begin, options.allow_utf8, utf8);
    if (domain_end == domain_begin) return r;
    if (domain_end >= s.size() || s[domain_end] != '>') return r;
    const std::string_view domain = s.substr(domain_begin, domain_end - domain_begin);
    // RFC 5321 4.5.3.1: local part 64, domain 255, path 256 octets (with the brackets).
    if (local.size() > local_part_bytes_max || domain.size() > domain_bytes_max ||
        local.size() + 1 + domain.size() + 2 > path_bytes_max) {
        r.error = AddressError::too_long;
        return r;
    }
    out = SmtpAddress::make(local, domain, utf8);
    return PathParse{AddressError::ok, domain_end + 1};
}

bool valid_domain(std::string_view domain, bool allow_utf8) {
    if (domain.empty() || domain.size() > domain_bytes_max) return false;
    bool utf8 = false;
    return scan_domain_or_literal(domain, 0, allow_utf8, utf8) == domain.size();
}

}  // namespace rp::smtp
