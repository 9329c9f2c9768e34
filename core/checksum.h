// core/checksum.h: CRC32C (Castagnoli), the checksum of every record on disk.
//
// Uses the SSE4.2 crc32 instruction when the CPU has it, a table otherwise; both give the
// same value. crc32c_extend() continues a running checksum over several pieces.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace rp {

std::uint32_t crc32c_extend(std::uint32_t crc, const void* data, std::size_t bytes) noexcept;

inline std::uint32_t crc32c(const void* data, std::size_t bytes) noexcept {
    return crc32c_extend(0, data, bytes);
}

inline std::uint32_t crc32c(std::span<const std::byte> bytes) noexcept {
    return crc32c_extend(0, bytes.data(), bytes.size());
}

}  // namespace rp
