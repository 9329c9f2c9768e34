#include <cerrno>

#include "core/io.h"

namespace rp {

Status status_from_errno(int err) noexcept {
    switch (err) {
        case 0: return Status::ok;
        case ENOSPC:
        case EDQUOT: return Status::no_space;
        case EAGAIN:
        case ENOBUFS: return Status::again;
        case ENOENT: return Status::not_found;
        case EEXIST: return Status::exists;
        case EACCES:
        case EPERM: return Status::permission;
        case ECONNRESET:
        case EPIPE:
        case ENOTCONN:
        case ESHUTDOWN: return Status::closed;
        case ECONNREFUSED: return Status::refused;
        case ETIMEDOUT:
        case ETIME: return Status::timeout;
        case ECANCELED: return Status::cancelled;
        case EINVAL:
        case EBADF: return Status::invalid;
        case EFBIG:
        case EMSGSIZE: return Status::too_big;
        case EBUSY:
        case EADDRINUSE: return Status::busy;
        default: return Status::io;
    }
}

}  // namespace rp
