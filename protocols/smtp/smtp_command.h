// protocols/smtp/smtp_command.h: one SMTP command line -> SmtpCommand (RFC 5321 4.1.1).
//
// Pure function, no state. Verbs are case-insensitive. Arguments are validated here as far as
// syntax goes (paths, MAIL parameters SIZE= BODY= SMTPUTF8, BDAT size and LAST); sequence and
// policy (503, 552, 553 5.6.7 without SMTPUTF8) are the server's business.
#pragma once

#include <cstdint>
#include <string_view>

#include "protocols/smtp/smtp_address.h"

namespace rp::smtp {

enum class SmtpVerb : std::uint8_t {
    unknown,
    helo,
    ehlo,
    mail,
    rcpt,
    data,
    bdat,
    rset,
    noop,
    quit,
    vrfy,
    expn,
    help,
    starttls,
    auth,
};

enum class SmtpSyntax : std::uint8_t {
    ok,
    unknown_command,    // 500 5.5.2 Error: command not recognized
    bad_syntax,         // 501 5.5.4 Syntax: <usage of the verb>
    bad_address,        // 501 5.1.7 (MAIL) / 501 5.1.3 (RCPT)
    unsupported_param,  // 555 5.5.4 Unsupported option: <bad_param>
    bad_param_value,    // 501 5.5.4 Bad parameter value: <bad_param>
};

enum class SmtpBodyType : std::uint8_t { seven_bit, eight_bit_mime };

struct SmtpCommand {
    SmtpVerb verb = SmtpVerb::unknown;
    SmtpSyntax syntax = SmtpSyntax::unknown_command;
    std::string_view argument;   // After the verb and its space(s); HELO/EHLO/VRFY/HELP/AUTH.
    std::string_view bad_param;  // For unsupported_param / bad_param_value.

    // MAIL / RCPT.
    SmtpAddress address;
    AddressError address_error = AddressError::ok;
    bool has_size = false;
    std::uint64_t size = 0;      // SIZE=n (saturates at UINT64_MAX).
    bool has_body = false;
    SmtpBodyType body = SmtpBodyType::seven_bit;
    bool smtputf8 = false;

    // BDAT.
    std::uint64_t chunk_bytes = 0;
    bool last = false;
};

// `line` is one command line without its CRLF. Views in the result point into `line`.
SmtpCommand parse_command(std::string_view line);

std::string_view verb_name(SmtpVerb verb);

}  // namespace rp::smtp
