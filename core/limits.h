// core/limits.h: every fixed capacity of ringpost, in one place.
//
// A full pool, queue or table is backpressure (stop reading, 421/451/NO), never growth.
// Values an operator may tune live in config/settings.h and are checked against the hard
// bounds here. Add a module's limits under its heading, with a static_assert for each
// relation the code relies on.
#pragma once

#include <cstddef>
#include <cstdint>

namespace rp::limits {

// ---- core ----
inline constexpr unsigned shard_count_max = 256;
inline constexpr unsigned ring_entries_max = 32768;
inline constexpr unsigned recv_buffer_count_max = 32768;     // Per shard, a power of two.
inline constexpr std::uint32_t recv_buffer_bytes_max = 1u << 20;
inline constexpr unsigned sessions_per_shard_max = 1u << 20;
inline constexpr unsigned cross_core_queue_entries = 4096;   // Per ordered pair of shards.

// ---- storage ----
inline constexpr std::uint64_t segment_bytes_max = 1ull << 32;     // Offsets fit in 32 bits.
inline constexpr std::uint32_t record_payload_bytes_max = 64u << 20;
inline constexpr std::uint32_t record_alignment = 8;
inline constexpr unsigned mailboxes_per_account_max = 4096;
inline constexpr unsigned keywords_per_account_max = 256;
inline constexpr std::uint32_t mailbox_name_bytes_max = 1024;
inline constexpr std::uint32_t address_bytes_max = 512;            // RFC 5321 4.5.3.1.3 path: 256.

// ---- protocols ----
inline constexpr std::uint32_t smtp_line_bytes_max = 4096;         // RFC 5321 4.5.3.1.4: 512 min.
inline constexpr std::uint32_t smtp_recipients_max = 100000;
inline constexpr std::uint32_t imap_line_bytes_max = 65536;
inline constexpr std::uint32_t pop3_line_bytes_max = 512;          // RFC 2449: 255 octets.

static_assert(record_alignment == 8);
static_assert(record_payload_bytes_max < segment_bytes_max);
static_assert((recv_buffer_count_max & (recv_buffer_count_max - 1)) == 0);

}  // namespace rp::limits
