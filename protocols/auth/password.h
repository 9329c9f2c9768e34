// protocols/auth/password.h: password hashes (argon2id, RFC 9106) and their verification.
//
// Owns: nothing. CPU- and memory-heavy by design: call these only on a helper thread
//   (protocols/auth/auth_pool.h) or in a tool, never on a core thread.
// Formats of a stored credential:
//   "$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>"  argon2id, PHC string format;
//   "{plain}secret"                                  a plaintext demo password from the
//                                                    config ([[user]] password = ...).
// Errors: a malformed stored credential never verifies (and is not an assertion).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/result.h"

namespace rp::auth {

struct HashCost {
    std::uint32_t memory_kib = 19456;  // RFC 9106 / OWASP: 19 MiB, 2 passes, 1 lane.
    std::uint32_t passes = 2;
    std::uint32_t lanes = 1;
};

inline constexpr std::string_view plain_prefix = "{plain}";

// A new argon2id hash with a random 16-byte salt (getrandom).
[[nodiscard]] Result<std::string> password_hash(std::string_view password,
                                                const HashCost& cost = {});
// True when `password` matches `stored` (constant time for plaintext).
bool password_verify(std::string_view stored, std::string_view password);
// True for the formats above (syntax only).
bool password_stored_valid(std::string_view stored);

}  // namespace rp::auth
