// tools/bench/bench_text.h: small text helpers the bench's protocol clients share.
#pragma once

#include <string>
#include <string_view>

namespace rp::bench {

// RFC 4648 section 4 base64, with padding (SASL PLAIN and LOGIN responses).
std::string base64_encode(std::string_view bytes);

}  // namespace rp::bench
