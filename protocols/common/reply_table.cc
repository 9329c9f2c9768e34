// protocols/common/reply_table.cc: see reply_table.h.
#include "protocols/common/reply_table.h"

#include "core/assert.h"

namespace rp::protocols {

std::string_view smtp_reply_for(Status status) {
    RP_ASSERT(status != Status::ok);
    switch (status) {
        case Status::no_space:
            return "452 4.3.1 Insufficient system storage";
        case Status::too_big:
            return "552 5.3.4 Error: message file too big";
        case Status::refused:
        case Status::permission:
            return "550 5.7.1 Error: access denied";
        case Status::full:
        case Status::busy:
        case Status::again:
            return "451 4.3.0 Error: server busy, try again later";
        default:
            return "451 4.3.0 Error: local error in processing";
    }
}

SmtpReplyParts smtp_close_reply_for(Status status) {
    switch (status) {
        case Status::full:
            return {"421 4.7.0", "Error: too many connections"};
        case Status::timeout:
            return {"421 4.4.2", "Error: timeout exceeded"};
        case Status::refused:
            return {"421 4.7.0", "Error: too many errors"};
        case Status::cancelled:
            return {"421 4.3.2", "Service shutting down, closing transmission channel"};
        default:
            return {"421 4.3.2", "Service not available, closing transmission channel"};
    }
}

std::string_view pop3_reply_for(Status status) {
    RP_ASSERT(status != Status::ok);
    switch (status) {
        case Status::refused:
        case Status::permission:
        case Status::not_found:
            return "[AUTH] Authentication failed";
        case Status::busy:
            return "[IN-USE] Mailbox in use by another session";
        case Status::quarantined:
            return "[SYS/PERM] Mailbox damaged, contact the administrator";
        case Status::corrupt:
            return "[SYS/PERM] Message damaged, contact the administrator";
        case Status::cancelled:
            return "[SYS/TEMP] Server shutting down";
        case Status::full:
            return "[SYS/TEMP] Too many connections, try again later";
        default:
            return "[SYS/TEMP] Temporary failure, try again later";
    }
}

std::string_view imap_reply_for(Status status) {
    RP_ASSERT(status != Status::ok);
    switch (status) {
        case Status::not_found: return "[NONEXISTENT] Mailbox does not exist";
        case Status::exists: return "[ALREADYEXISTS] Mailbox already exists";
        case Status::no_space: return "[OVERQUOTA] Insufficient storage";
        case Status::too_big: return "[TOOBIG] Message too big";
        case Status::refused:
        case Status::permission: return "[NOPERM] Permission denied";
        case Status::invalid: return "[CANNOT] Invalid name or argument";
        case Status::busy: return "[INUSE] Mailbox in use, try again later";
        case Status::quarantined:
        case Status::corrupt: return "[CORRUPTION] Mailbox damaged, contact the administrator";
        case Status::unsupported: return "[CANNOT] Operation not supported";
        case Status::cancelled: return "[UNAVAILABLE] Server shutting down";
        default: return "[UNAVAILABLE] Temporary failure, try again later";
    }
}

}  // namespace rp::protocols
