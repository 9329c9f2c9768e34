// protocols/smtp/smtp_command.cc: see smtp_command.h.
#include "protocols/smtp/smtp_command.h"

#include <array>
#include <cstdint>
#include <limits>

namespace rp::smtp {

namespace {

struct VerbEntry {
    std::string_view name;
    SmtpVerb verb;
};

constexpr std::array<VerbEntry, 14> verb_table = {{
    {"HELO", SmtpVerb::helo},
    {"EHLO", SmtpVerb::ehlo},
    {"MAIL", SmtpVerb::mail},
    {"RCPT", SmtpVerb::rcpt},
    {"DATA", SmtpVerb::data},
    {"BDAT", SmtpVerb::bdat},
    {"RSET", SmtpVerb::rset},
    {"NOOP", SmtpVerb::noop},
    {"QUIT", SmtpVerb::quit},
    {"VRFY", SmtpVerb::vrfy},
    {"EXPN", SmtpVerb::expn},
    {"HELP", SmtpVerb::help},
    {"STARTTLS", SmtpVerb::starttls},
    {"AUTH", SmtpVerb::auth},
}};

char upper(char c) { return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 32) : c; }

bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t k = 0; k < a.size(); ++k) {
        if (upper(a[k]) != upper(b[k])) return false;
    }
    return true;
}

bool iprefix(std::string_view s, std::string_view prefix) {
    return s.size() >= prefix.size() && iequals(s.substr(0, prefix.size()), prefix);
}

bool is_alnum(char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

std::string_view trim_spaces(std::string_view s) {
    while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
    while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
    return s;
}

// Decimal digits -> value, saturating at UINT64_MAX. False when not all digits or empty.
bool parse_decimal(std::string_view s, std::uint64_t& value, bool& overflow) {
    if (s.empty()) return false;
    value = 0;
    overflow = false;
    for (const char c : s) {
        if (c < '0' || c > '9') return false;
        const auto digit = static_cast<std::uint64_t>(c - '0');
        // bounds: checked before the multiply so that value * 10 + digit cannot wrap.
        if (value > (std::numeric_limits<std::uint64_t>::max() - digit) / 10) {
            overflow = true;
            value = std::numeric_limits<std::uint64_t>::max();
        } else if (!overflow) {
            value = value * 10 + digit;
        }
    }
    return true;
}

// RFC 5321 4.1.2 esmtp-keyword ["=" esmtp-value].
bool valid_param(std::string_view keyword, std::string_view value, bool has_value) {
    if (keyword.empty() || !is_alnum(keyword[0])) return false;
    for (const char c : keyword) {
        if (!is_alnum(c) && c != '-') return false;
    }
    if (!has_value) return true;
    if (value.empty()) return false;
    for (const char c : value) {
        const auto u = static_cast<unsigned char>(c);
        if (u < 33 || u > 126 || u == '=') return false;
    }
    return true;
}

// MAIL FROM parameters (RFC 1870 SIZE, RFC 6152 BODY, RFC 6531 SMTPUTF8).
void parse_mail_params(std::string_view rest, SmtpCommand& c) {
    while (true) {
        rest = trim_spaces(rest);
        if (rest.empty()) return;
        const std::size_t space = rest.find(' ');
        const std::string_view param = rest.substr(0, space);
        rest = space == std::string_view::npos ? std::string_view() : rest.substr(space);
        const std::size_t eq = param.find('=');
        const bool has_value = eq != std::string_view::npos;
        const std::string_view keyword = param.substr(0, eq);
        const std::string_view value = has_value ? param.substr(eq + 1) : std::string_view();
        if (!valid_param(keyword, value, has_value)) {
            c.syntax = SmtpSyntax::bad_syntax;
            return;
        }
        c.bad_param = keyword;
        if (iequals(keyword, "SIZE")) {
            bool overflow = false;
            if (!has_value || c.has_size || !parse_decimal(value, c.size, overflow)) {
                c.syntax = SmtpSyntax::bad_param_value;
                return;
            }
            c.has_size = true;
        } else if (iequals(keyword, "BODY")) {
            if (!has_value || c.has_body) {
                c.syntax = SmtpSyntax::bad_param_value;
                return;
            }
            if (iequals(value, "7BIT")) {
                c.body = SmtpBodyType::seven_bit;
            } else if (iequals(value, "8BITMIME")) {
                c.body = SmtpBodyType::eight_bit_mime;
            } else {
                c.bad_param = param;  // BINARYMIME is not offered (no RFC 3030 BINARYMIME).
                c.syntax = SmtpSyntax::unsupported_param;
                return;
            }
            c.has_body = true;
        } else if (iequals(keyword, "SMTPUTF8")) {
            if (has_value || c.smtputf8) {
                c.syntax = SmtpSyntax::bad_param_value;
                return;
            }
            c.smtputf8 = true;
        } else {
            c.syntax = SmtpSyntax::unsupported_param;
            return;
        }
        c.bad_param = {};
    }
}

// "FROM:" / "TO:" then an optional space (a common client habit), a path and parameters.
void parse_mail_rcpt(std::string_view arg, SmtpCommand& c) {
    const bool mail = c.verb == SmtpVerb::mail;
    const std::string_view prefix = mail ? "FROM:" : "TO:";
    if (!iprefix(arg, prefix)) {
        c.syntax = SmtpSyntax::bad_syntax;
        return;
    }
    arg.remove_prefix(prefix.size());
    while (!arg.empty() && arg.front() == ' ') arg.remove_prefix(1);
    if (arg.empty() || arg.front() != '<') {
        c.syntax = SmtpSyntax::bad_syntax;
        return;
    }
    PathOptions options;
    options.allow_null = mail;
    options.allow_postmaster = !mail;
    options.allow_utf8 = true;
    const PathParse path = parse_path(arg, options, c.address);
    if (path.error != AddressError::ok) {
        c.syntax = SmtpSyntax::bad_address;
        c.address_error = path.error;
        return;
    }
    const std::string_view rest = arg.substr(path.consumed);
    if (!rest.empty() && rest.front() != ' ') {
        c.syntax = SmtpSyntax::bad_syntax;
        return;
    }
    c.syntax = SmtpSyntax::ok;
    if (mail) {
        parse_mail_params(rest, c);
    } else if (!trim_spaces(rest).empty()) {
        // No RCPT parameters are offered (no DSN): RFC 5321 4.1.1.11 -> 555.
        const std::string_view params = trim_spaces(rest);
        const std::string_view param = params.substr(0, params.find(' '));
        const std::string_view keyword = param.substr(0, param.find('='));
        const bool has_value = param.find('=') != std::string_view::npos;
        const std::string_view value = has_value ? param.substr(param.find('=') + 1) : "";
        c.syntax = valid_param(keyword, value, has_value) ? SmtpSyntax::unsupported_param
                                                          : SmtpSyntax::bad_syntax;
        c.bad_param = c.syntax == SmtpSyntax::unsupported_param ? keyword : std::string_view();
    }
}

void parse_bdat(std::string_view arg, SmtpCommand& c) {
    arg = trim_spaces(arg);
    const std::size_t space = arg.find(' ');
    const std::string_view size = arg.substr(0, space);
    std::string_view rest = space == std::string_view::npos ? "" : trim_spaces(arg.substr(space));
    bool overflow = false;
    if (!parse_decimal(size, c.chunk_bytes, overflow) || overflow) {
        c.syntax = SmtpSyntax::bad_syntax;
        return;
    }
    if (!rest.empty()) {
        if (!iequals(rest, "LAST")) {
            c.syntax = SmtpSyntax::bad_syntax;
            return;
        }
        c.last = true;
    }
    c.syntax = SmtpSyntax::ok;
}

}  // namespace

std::string_view verb_name(SmtpVerb verb) {
    for (const VerbEntry& e : verb_table) {
        if (e.verb == verb) return e.name;
    }
    return "UNKNOWN";
}

SmtpCommand parse_command(std::string_view line) {
    SmtpCommand c;
    const std::size_t space = line.find(' ');
    const std::string_view word = line.substr(0, space);
    for (const VerbEntry& e : verb_table) {
        if (iequals(word, e.name)) {
            c.verb = e.verb;
            break;
        }
    }
    if (c.verb == SmtpVerb::unknown) return c;  // 500 5.5.2
    // Control bytes never belong in a command (and must never be echoed in a reply).
    // Non-ASCII is allowed only inside MAIL/RCPT paths (RFC 6531), checked by the parser.
    for (const char ch : line) {
        const auto u = static_cast<unsigned char>(ch);
        const bool bad = u < 32 || u == 127 ||
                         (u >= 128 && c.verb != SmtpVerb::mail && c.verb != SmtpVerb::rcpt);
        if (bad) {
            c.syntax = SmtpSyntax::bad_syntax;
            return c;
        }
    }
    const std::string_view arg =
        space == std::string_view::npos ? std::string_view() : trim_spaces(line.substr(space));
    c.argument = arg;
    c.syntax = SmtpSyntax::ok;
    switch (c.verb) {
        case SmtpVerb::helo:
        case SmtpVerb::ehlo:
        case SmtpVerb::vrfy:
        case SmtpVerb::expn:
        case SmtpVerb::auth:
            if (arg.empty()) c.syntax = SmtpSyntax::bad_syntax;
            break;
        case SmtpVerb::mail:
        case SmtpVerb::rcpt:
            parse_mail_rcpt(space == std::string_view::npos ? "" : line.substr(space + 1), c);
            break;
        case SmtpVerb::data:
        case SmtpVerb::rset:
        case SmtpVerb::quit:
        case SmtpVerb::starttls:
            if (!arg.empty()) c.syntax = SmtpSyntax::bad_syntax;
            break;
        case SmtpVerb::bdat:
            parse_bdat(arg, c);
            break;
        case SmtpVerb::noop:
        case SmtpVerb::help:
        case SmtpVerb::unknown:
            break;
    }
    return c;
}

}  // namespace rp::smtp
