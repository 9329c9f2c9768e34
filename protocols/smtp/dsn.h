// protocols/smtp/dsn.h: RFC 3464 delivery status notifications (bounces).
//
// Owns: nothing; pure functions that build the bytes of a bounce message.
// Rules: a DSN goes to the envelope sender with the null sender (RFC 5321 4.5.5), so it
//   can never cause another bounce; never bounce a message whose sender is null
//   (dsn_wanted). The report quotes the original header (text/rfc822-headers), bounded by
//   dsn_headers_bytes_max, never the whole body.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace rp::smtp {

inline constexpr std::size_t dsn_headers_bytes_max = 64 * 1024;

struct DsnRecipient {
    std::string address;
    std::string remote_mta;  // The host that answered, or "" when none did.
    std::string reply;       // "550 5.1.1 User unknown" (code, enhanced status, text).
};

struct DsnInput {
    std::string reporting_mta;     // Our hostname.
    std::string sender;            // The envelope sender: the DSN's recipient. Not empty.
    std::string queue_id;
    std::int64_t arrival_unix = 0;
    std::int64_t now_unix = 0;
    std::string boundary_seed;     // Unique per bounce (e.g. queue id + time).
    std::vector<DsnRecipient> recipients;
    std::string_view original;     // The original message (only its header is quoted).
};

// False for the null sender: bounces are never bounced.
bool dsn_wanted(std::string_view sender);
// The enhanced status code of a reply ("5.1.1"), or a default from its class (5.0.0/4.0.0).
std::string dsn_status_of(std::string_view reply);
// The original header: bytes up to the first empty line (bounded, whole lines only).
std::string_view dsn_original_header(std::string_view message);
// The complete message (header and multipart/report body), CRLF line ends.
std::string dsn_build(const DsnInput& input);
// RFC 5322 date-time, "Sun, 22 Nov 2026 04:05:06 +0000".
std::string dsn_date(std::int64_t unix_seconds);

}  // namespace rp::smtp
