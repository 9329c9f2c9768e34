// protocols/common/reply_table.h: the only place where a Status becomes a wire reply.
//
// SMTP replies are returned as "<code> <enhanced code> <text>" without CRLF; the caller adds
// CRLF (and, for 421, the host name after the codes). IMAP and POP3 tables join here later.
#pragma once

#include <string_view>

#include "core/result.h"

namespace rp::protocols {

// A reply split after its codes so that a host name can be inserted: "421 4.7.0" + "Error...".
struct SmtpReplyParts {
    std::string_view codes;
    std::string_view text;
};

// The reply to a failed host operation inside a transaction (MAIL check, message_begin,
// message_done): no_space -> 452 4.3.1, too_big -> 552 5.3.4, refused/permission ->
// 550 5.7.1, anything else -> 451 4.3.0. `status` must not be ok.
std::string_view smtp_reply_for(Status status);

// Why a connection is refused or closed by us (421): full -> 4.7.0 too many connections,
// timeout -> 4.4.2 timeout exceeded, cancelled -> 4.3.2 shutting down, other -> 4.3.2.
SmtpReplyParts smtp_close_reply_for(Status status);

// POP3 (RFC 2449 8 response codes): the text after "-ERR " for a failed host operation or a
// refusal: refused/permission/not_found -> [AUTH], busy -> [IN-USE], quarantined/corrupt ->
// [SYS/PERM], anything else -> [SYS/TEMP]. `status` must not be ok.
std::string_view pop3_reply_for(Status status);

// The text of a tagged IMAP "NO" for a failed host operation: a RFC 5530 response code and a
// sentence, e.g. "[NONEXISTENT] Mailbox does not exist". `status` must not be ok.
std::string_view imap_reply_for(Status status);

}  // namespace rp::protocols
