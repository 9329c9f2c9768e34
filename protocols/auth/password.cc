// protocols/auth/password.cc: see password.h.
#include "protocols/auth/password.h"

#include <argon2.h>
#include <sys/random.h>

#include <cerrno>
#include <vector>

namespace rp::auth {
namespace {

constexpr std::size_t salt_bytes = 16;
constexpr std::size_t hash_bytes = 32;

bool fill_random(unsigned char* out, std::size_t bytes) {
    std::size_t done = 0;
    while (done < bytes) {
        ssize_t n = getrandom(out + done, bytes - done, 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            return false;
        }
        done += static_cast<std::size_t>(n);
    }
    return true;
}

bool equal_constant_time(std::string_view a, std::string_view b) {
    unsigned char diff = a.size() == b.size() ? 0 : 1;
    std::size_t count = a.size() < b.size() ? a.size() : b.size();
    for (std::size_t i = 0; i < count; ++i) {
        diff |= static_cast<unsigned char>(a[i] ^ b[i]);
    }
    return diff == 0;
}

}  // namespace

Result<std::string> password_hash(std::string_view password, const HashCost& cost) {
    unsigned char salt[salt_bytes];
    if (!fill_random(salt, salt_bytes)) return Status::io;
    std::size_t encoded_bytes =
        argon2_encodedlen(cost.passes, cost.memory_kib, cost.lanes, salt_bytes, hash_bytes,
                          Argon2_id);
    std::vector<char> encoded(encoded_bytes + 1);
    int r = argon2id_hash_encoded(cost.passes, cost.memory_kib, cost.lanes, password.data(),
                                  password.size(), salt, salt_bytes, hash_bytes, encoded.data(),
                                  encoded.size());
    if (r != ARGON2_OK) return Status::invalid;
    return std::string(encoded.data());
}

bool password_stored_valid(std::string_view stored) {
    if (stored.substr(0, plain_prefix.size()) == plain_prefix) {
        return stored.size() > plain_prefix.size();
    }
    return stored.substr(0, 10) == "$argon2id$" && stored.find('\n') == std::string_view::npos &&
           stored.size() < 512;
}

bool password_verify(std::string_view stored, std::string_view password) {
    if (stored.substr(0, plain_prefix.size()) == plain_prefix) {
        return equal_constant_time(stored.substr(plain_prefix.size()), password);
    }
    if (!password_stored_valid(stored)) return false;
    std::string encoded(stored);  // argon2 wants a NUL-terminated string.
    return argon2id_verify(encoded.c_str(), password.data(), password.size()) == ARGON2_OK;
}

}  // namespace rp::auth
