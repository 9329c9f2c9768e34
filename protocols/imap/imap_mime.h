// protocols/imap/imap_mime.h: MIME structure of one message, for ENVELOPE, BODYSTRUCTURE and
// BODY[section] (RFC 3501 6.4.5, 7.4.2; RFC 2045/2046/5322).
//
// Owns: the parsed structure (offsets into the message plus the few header values IMAP
//   reports). It keeps no pointer into the message: the host parses a message once (at
//   delivery or at its first FETCH that needs it) and caches the MimeMessage.
// Invariants: every range lies inside the parsed message; parts[0] is the message itself;
//   nesting is bounded (mime_depth_max, mime_parts_max), deeper structure is treated as an
//   opaque leaf. Malformed input (no blank line, missing or unterminated boundaries, bad
//   header lines, bare LF line ends) never fails: it yields the structure a tolerant reader
//   would see.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "protocols/imap/imap_parser.h"

namespace rp::imap {

inline constexpr unsigned mime_depth_max = 32;
inline constexpr unsigned mime_parts_max = 1024;

struct MimeRange {
    std::uint64_t offset = 0;
    std::uint64_t bytes = 0;
};

struct MimeAddress {
    std::string name, adl, mailbox, host;  // Group start: mailbox = group name, host empty.
    bool group_start = false;
    bool group_end = false;
};

struct MimeEnvelope {
    std::string date, subject, in_reply_to, message_id;
    bool has_date = false, has_subject = false, has_in_reply_to = false, has_message_id = false;
    std::vector<MimeAddress> from, sender, reply_to, to, cc, bcc;
};

struct MimePart {
    MimeRange header;  // The header block, with its terminating blank line.
    MimeRange body;
    std::string type = "TEXT";  // Upper-cased.
    std::string subtype = "PLAIN";
    std::vector<std::pair<std::string, std::string>> params;  // Names upper-cased.
    std::string id, description, encoding = "7BIT", md5, location;
    bool has_id = false, has_description = false, has_md5 = false, has_location = false;
    std::string disposition;
    std::vector<std::pair<std::string, std::string>> disposition_params;
    std::vector<std::string> languages;
    std::uint64_t body_lines = 0;
    std::vector<std::uint32_t> children;  // Multipart: its parts (indexes into parts).
    std::uint32_t message = 0;            // message/rfc822: the encapsulated message's index.
    bool is_message = false;              // parts[0] or an encapsulated message (has envelope).
    MimeEnvelope envelope;                // When is_message.

    bool multipart() const { return type == "MULTIPART"; }
    bool rfc822() const { return type == "MESSAGE" && (subtype == "RFC822" || subtype == "GLOBAL"); }
};

struct MimeMessage {
    std::vector<MimePart> parts;
    std::uint64_t bytes = 0;
    std::uint32_t malformed_count = 0;  // Repairs made while parsing (for metrics and tests).
};

// Parses `message`. Never fails.
MimeMessage mime_parse(std::string_view message);

// RFC 3501 6.4.5: the part a section's part numbers name, or nullptr when it does not exist.
const MimePart* mime_resolve(const MimeMessage& mime, std::span<const std::uint32_t> part);

// The bytes BODY[section] returns, as a range of the message, for every section except
// HEADER.FIELDS[.NOT] (see mime_header_fields). False when the section does not exist.
bool mime_section_range(const MimeMessage& mime, const Section& section, MimeRange& out);

// BODY[...HEADER.FIELDS (..)] and .NOT: the selected header lines (folding kept) followed by
// the blank line. `message` is the whole message.
std::string mime_header_fields(std::string_view message, const MimeMessage& mime,
                               const Section& section);

// Appends ENVELOPE / BODY / BODYSTRUCTURE data items (the parenthesized value).
void mime_append_envelope(std::string& out, const MimeEnvelope& envelope);
void mime_append_body(std::string& out, const MimeMessage& mime, bool extensible);

// The decoded content of a part (RFC 3516 BINARY): base64 and quoted-printable decoded,
// other encodings as they are. False for an unknown encoding.
bool mime_decode(std::string_view encoded, std::string_view encoding, std::string& out);

// RFC 5322 date-time (tolerant) -> days since 1970-01-01 of the date as written, ignoring the
// time and zone (RFC 3501 SENTBEFORE etc.).
bool mime_date_days(std::string_view text, std::int64_t& days);

// The unfolded value of the first header field `name` (case-insensitive) in `header`.
bool mime_header_value(std::string_view header, std::string_view name, std::string& out);

}  // namespace rp::imap
