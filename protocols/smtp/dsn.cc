// protocols/smtp/dsn.cc: RFC 3464 bounce messages.
#include "protocols/smtp/dsn.h"

#include <ctime>

#include "core/assert.h"

namespace rp::smtp {

namespace {

bool digit(char c) { return c >= '0' && c <= '9'; }

// Text safe for a header field: no CR/LF or other control bytes, bounded.
std::string header_safe(std::string_view text, std::size_t bytes_max = 900) {
    std::string out;
    for (const char c : text) {
        if (out.size() >= bytes_max) break;
        const auto u = static_cast<unsigned char>(c);
        out.push_back(u < 32 || u == 127 ? ' ' : c);
    }
    return out;
}

// Header bytes with every line end made CRLF, so the quoted part is valid.
std::string crlf(std::string_view text) {
    std::string out;
    out.reserve(text.size() + 64);
    for (std::size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        if (c == '\r') {
            out += "\r\n";
            if (i + 1 < text.size() && text[i + 1] == '\n') ++i;
        } else if (c == '\n') {
            out += "\r\n";
        } else {
            out.push_back(c);
        }
    }
    if (!out.empty() && out.back() != '\n') out += "\r\n";
    return out;
}

}  // namespace

bool dsn_wanted(std::string_view sender) { return !sender.empty(); }

std::string dsn_status_of(std::string_view reply) {
    // "550 5.1.1 text": the enhanced code follows the reply code (RFC 3463).
    const std::size_t space = reply.find(' ');
    if (space != std::string_view::npos) {
        const std::string_view rest = reply.substr(space + 1);
        std::size_t i = 0;
        if (i < rest.size() && (rest[i] == '2' || rest[i] == '4' || rest[i] == '5') &&
            i + 1 < rest.size() && rest[i + 1] == '.') {
            std::size_t j = 2;
            int dots = 1;
            while (j < rest.size() && j < 12 && (digit(rest[j]) || rest[j] == '.')) {
                if (rest[j] == '.') ++dots;
                ++j;
            }
            if (dots == 2 && digit(rest[j - 1]) && (j == rest.size() || rest[j] == ' ')) return std::string(rest.substr(0, j));
        }
    }
    if (!reply.empty() && reply[0] == '4') return "4.0.0";
    return "5.0.0";
}

std::string_view dsn_original_header(std::string_view message) {
    std::size_t at = 0;
    while (at < message.size() && at < dsn_headers_bytes_max) {
        const std::size_t eol = message.find('\n', at);
        if (eol == std::string_view::npos) return message.substr(0, std::min(message.size(), dsn_headers_bytes_max));
        const std::string_view line = message.substr(at, eol - at);
        if (line.empty() || line == "\r") return message.substr(0, at);
        if (eol + 1 > dsn_headers_bytes_max) return message.substr(0, at);
        at = eol + 1;
    }
    return message.substr(0, at);
}

std::string dsn_date(std::int64_t unix_seconds) {
    const std::time_t t = static_cast<std::time_t>(unix_seconds);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buffer[64];
    const std::size_t n = std::strftime(buffer, sizeof buffer, "%a, %d %b %Y %H:%M:%S +0000", &tm);
    return std::string(buffer, n);
}

std::string dsn_build(const DsnInput& input) {
    RP_ASSERT(dsn_wanted(input.sender));
    RP_ASSERT(!input.recipients.empty());
    const std::string boundary = "=_ringpost_" + header_safe(input.boundary_seed, 64);
    const std::string host = header_safe(input.reporting_mta, 255);
    std::string out;
    out += "From: Mail Delivery System <MAILER-DAEMON@" + host + ">\r\n";
    out += "To: <" + header_safe(input.sender, 512) + ">\r\n";
    out += "Subject: Undelivered Mail Returned to Sender\r\n";
    out += "Date: " + dsn_date(input.now_unix) + "\r\n";
    out += "Message-ID: <" + header_safe(input.boundary_seed, 64) + ".dsn@" + host + ">\r\n";
    out += "Auto-Submitted: auto-replied\r\n";  // RFC 3834 5.
    out += "MIME-Version: 1.0\r\n";
    out += "Content-Type: multipart/report; report-type=delivery-status;\r\n";
    out += "\tboundary=\"" + boundary + "\"\r\n";
    out += "\r\n";
    out += "This is a MIME-encapsulated message.\r\n\r\n";

    // Part 1: for people.
    out += "--" + boundary + "\r\n";
    out += "Content-Description: Notification\r\n";
    out += "Content-Type: text/plain; charset=us-ascii\r\n\r\n";
    out += "This is the mail system at host " + host + ".\r\n\r\n";
    out += "I'm sorry to have to inform you that your message could not\r\n";
    out += "be delivered to one or more recipients.\r\n\r\n";
    for (const auto& r : input.recipients) {
        out += "<" + header_safe(r.address, 512) + ">: ";
        if (!r.remote_mta.empty()) out += "host " + header_safe(r.remote_mta, 255) + " said: ";
        out += header_safe(r.reply) + "\r\n";
    }
    out += "\r\n";

    // Part 2: for machines (RFC 3464 2.2, 2.3).
    out += "--" + boundary + "\r\n";
    out += "Content-Description: Delivery report\r\n";
    out += "Content-Type: message/delivery-status\r\n\r\n";
    out += "Reporting-MTA: dns; " + host + "\r\n";
    if (!input.queue_id.empty()) out += "X-Ringpost-Queue-ID: " + header_safe(input.queue_id, 64) + "\r\n";
    if (input.arrival_unix > 0) out += "Arrival-Date: " + dsn_date(input.arrival_unix) + "\r\n";
    for (const auto& r : input.recipients) {
        out += "\r\n";
        out += "Final-Recipient: rfc822; " + header_safe(r.address, 512) + "\r\n";
        out += "Action: failed\r\n";
        out += "Status: " + dsn_status_of(r.reply) + "\r\n";
        if (!r.remote_mta.empty()) out += "Remote-MTA: dns; " + header_safe(r.remote_mta, 255) + "\r\n";
        out += "Diagnostic-Code: smtp; " + header_safe(r.reply) + "\r\n";
        out += "Last-Attempt-Date: " + dsn_date(input.now_unix) + "\r\n";
    }
    out += "\r\n";

    // Part 3: the original header.
    out += "--" + boundary + "\r\n";
    out += "Content-Description: Undelivered Message Headers\r\n";
    out += "Content-Type: text/rfc822-headers\r\n\r\n";
    out += crlf(dsn_original_header(input.original));
    out += "\r\n--" + boundary + "--\r\n";
    return out;
}

}  // namespace rp::smtp
