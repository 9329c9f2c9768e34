#include "core/checksum.h"

#include <array>
#include <cstring>

#if defined(__x86_64__)
#include <cpuid.h>
#include <nmmintrin.h>
#endif

namespace rp {
namespace {

constexpr std::uint32_t crc32c_poly_reflected = 0x82F63B78u;

constexpr std::array<std::uint32_t, 256> make_table() {
    std::array<std::uint32_t, 256> table{};
    for (std::uint32_t i = 0; i < 256; ++i) {
        std::uint32_t crc = i;
        for (int bit = 0; bit < 8; ++bit) {
            crc = (crc >> 1) ^ ((crc & 1u) ? crc32c_poly_reflected : 0u);
        }
        table[i] = crc;
    }
    return table;
}

constexpr auto crc_table = make_table();

std::uint32_t crc32c_table(std::uint32_t crc, const unsigned char* p, std::size_t bytes) {
    for (std::size_t i = 0; i < bytes; ++i) {
        crc = crc_table[(crc ^ p[i]) & 0xFFu] ^ (crc >> 8);
    }
    return crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) std::uint32_t crc32c_sse42(std::uint32_t crc,
                                                             const unsigned char* p,
                                                             std::size_t bytes) {
    std::uint64_t crc64 = crc;
    while (bytes >= 8) {
        std::uint64_t word;
        std::memcpy(&word, p, 8);
        crc64 = _mm_crc32_u64(crc64, word);
        p += 8;
        bytes -= 8;
    }
    auto crc32 = static_cast<std::uint32_t>(crc64);
    while (bytes > 0) {
        crc32 = _mm_crc32_u8(crc32, *p);
        ++p;
        --bytes;
    }
    return crc32;
}

bool cpu_has_sse42() {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    if (__get_cpuid(1, &eax, &ebx, &ecx, &edx) == 0) return false;
    return (ecx & bit_SSE4_2) != 0;
}

const bool use_sse42 = cpu_has_sse42();
#endif

}  // namespace

std::uint32_t crc32c_extend(std::uint32_t crc, const void* data, std::size_t bytes) noexcept {
    const auto* p = static_cast<const unsigned char*>(data);
    crc = ~crc;
#if defined(__x86_64__)
    if (use_sse42) return ~crc32c_sse42(crc, p, bytes);
#endif
    return ~crc32c_table(crc, p, bytes);
}

}  // namespace rp
