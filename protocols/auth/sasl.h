// protocols/auth/sasl.h: SASL PLAIN (RFC 4616) and LOGIN message parsing, and strict
// base64 (RFC 4648 4) as SMTP AUTH (RFC 4954), IMAP AUTHENTICATE and POP3 AUTH carry it.
//
// Owns: nothing; pure functions over caller buffers. No I/O, no allocation beyond `out`.
// Invariants: decoded credentials never exceed sasl_field_bytes_max per field; a NUL is
//   allowed only as the PLAIN separator.
// Errors: malformed input is Status::invalid (the protocol answers 501 5.5.2 / BAD); it is
//   peer misbehaviour, never an assertion.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "core/result.h"

namespace rp::auth {

inline constexpr std::size_t sasl_field_bytes_max = 255;        // RFC 4616 2: 255 octets.
inline constexpr std::size_t sasl_response_bytes_max = 3 * 256;  // Decoded PLAIN at most.

// Decodes `text` (padded base64, no whitespace) into `out` (replaced). "=" decodes to empty
// (RFC 4954 4: an empty initial response). Status::invalid for anything else malformed,
// Status::too_big above sasl_response_bytes_max decoded bytes.
[[nodiscard]] Status base64_decode(std::string_view text, std::string& out);
void base64_encode(std::string_view bytes, std::string& out);

struct SaslPlain {
    std::string_view authzid;   // Empty: act as authcid.
    std::string_view authcid;   // The user name (an address for ringpost).
    std::string_view password;
};

// RFC 4616 2: [authzid] NUL authcid NUL passwd. Views point into `message`.
[[nodiscard]] Result<SaslPlain> sasl_plain_parse(std::string_view message);

// A LOGIN field (user name or password) after base64: 1..255 bytes, no NUL.
[[nodiscard]] Status sasl_login_field_check(std::string_view field);

// The LOGIN prompts, base64 of "Username:" and "Password:".
inline constexpr std::string_view sasl_login_user_prompt = "VXNlcm5hbWU6";
inline constexpr std::string_view sasl_login_password_prompt = "UGFzc3dvcmQ6";

}  // namespace rp::auth
