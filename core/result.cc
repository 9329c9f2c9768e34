#include "core/result.h"

namespace rp {

std::string_view status_name(Status status) noexcept {
    switch (status) {
        case Status::ok: return "ok";
        case Status::corrupt: return "corrupt";
        case Status::truncated: return "truncated";
        case Status::invalid: return "invalid";
        case Status::unsupported: return "unsupported";
        case Status::not_found: return "not_found";
        case Status::exists: return "exists";
        case Status::no_space: return "no_space";
        case Status::too_big: return "too_big";
        case Status::full: return "full";
        case Status::busy: return "busy";
        case Status::again: return "again";
        case Status::io: return "io";
        case Status::closed: return "closed";
        case Status::timeout: return "timeout";
        case Status::refused: return "refused";
        case Status::permission: return "permission";
        case Status::quarantined: return "quarantined";
        case Status::cancelled: return "cancelled";
        case Status::tls: return "tls";
    }
    return "unknown";
}

}  // namespace rp
