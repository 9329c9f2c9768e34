// tests/fuzz/fuzz_sasl.cc: base64 and SASL PLAIN/LOGIN parsing never crash, and what
// decodes re-encodes to the same text (canonical base64 only).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/assert.h"
#include "protocols/auth/sasl.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view input(reinterpret_cast<const char*>(data), size);
    std::string decoded, encoded;
    if (rp::auth::base64_decode(input, decoded) == rp::Status::ok) {
        RP_ASSERT(decoded.size() <= rp::auth::sasl_response_bytes_max);
        if (input != "=") {
            rp::auth::base64_encode(decoded, encoded);
            RP_ASSERT(encoded == input);
        }
        auto plain = rp::auth::sasl_plain_parse(decoded);
        if (plain) {
            RP_ASSERT(!plain->authcid.empty());
            RP_ASSERT(!plain->password.empty());
            RP_ASSERT(plain->authcid.size() <= rp::auth::sasl_field_bytes_max);
        }
        (void)rp::auth::sasl_login_field_check(decoded);
    }
    (void)rp::auth::sasl_plain_parse(input);
    return 0;
}
