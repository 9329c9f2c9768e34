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
inline constexpr unsigned ring_entries_min = 64;
inline constexpr unsigned recv_buffer_count_min = 16;
inline constexpr std::uint32_t recv_buffer_bytes_min = 512;
inline constexpr std::uint32_t session_chunk_bytes = 16384;  // Send queue and input staging.
inline constexpr unsigned session_held_buffers_max = 8;      // Received while paused.
inline constexpr unsigned session_output_chunks_max = 64;    // Hard cap: 1 MiB queued output.
inline constexpr unsigned session_pipes_max = 64;            // send_file pipes per shard.
inline constexpr unsigned session_pipe_bytes = 1u << 20;       // Asked of each such pipe.
inline constexpr std::uint32_t session_output_high_bytes = 64 * 1024;  // Stop reading above.
inline constexpr std::uint64_t session_close_flush_ms = 10'000;  // Flush before a forced close.
inline constexpr unsigned refusals_in_flight_max = 256;      // Busy/limit replies being sent.
inline constexpr unsigned io_ops_in_flight_max = 4096;       // File I/O per shard (UringIo).
inline constexpr unsigned timers_extra_per_shard = 256;      // Beyond one per session.
inline constexpr unsigned listeners_max = 64;
inline constexpr unsigned connections_per_ip_max = 1u << 20;
inline constexpr unsigned ip_limiter_slots = 1u << 16;       // Hashed per-IP counters.

// ---- storage ----
inline constexpr std::uint64_t segment_bytes_max = 1ull << 32;     // Offsets fit in 32 bits.
inline constexpr std::uint32_t record_payload_bytes_max = 64u << 20;
inline constexpr std::uint32_t record_alignment = 8;
inline constexpr unsigned mailboxes_per_account_max = 4096;
inline constexpr unsigned keywords_per_account_max = 256;
inline constexpr std::uint32_t mailbox_name_bytes_max = 1024;
inline constexpr std::uint32_t address_bytes_max = 512;            // RFC 5321 4.5.3.1.3 path: 256.
inline constexpr std::uint32_t segment_bytes_min = 1u << 20;       // Configurable size, lower bound.
inline constexpr std::uint32_t segment_bytes_default = 256u << 20;
inline constexpr std::uint32_t record_header_bytes = 48;
inline constexpr std::uint32_t segment_header_bytes = 64;
inline constexpr std::uint64_t store_staging_bytes_max = 256ull << 20;  // Copied bytes per batch.
inline constexpr unsigned store_read_only_open_attempts = 20;       // A tool racing store upkeep.
inline constexpr unsigned store_batches_inflight_max = 8;           // Group-commit batches at once.
inline constexpr unsigned store_iovecs_per_batch_max = 65536;       // Zero-copy pieces per batch.
inline constexpr unsigned body_writers_max = 65536;                 // Open bodies per shard.
inline constexpr std::uint32_t body_extents_max = 65536;
inline constexpr std::uint32_t body_chunk_bytes_max = 8u << 20;     // One chunk record's payload.
inline constexpr std::uint32_t messages_per_mailbox_max = 1u << 24;
inline constexpr std::uint32_t accounts_per_shard_max = 1u << 22;
inline constexpr std::uint32_t recipients_per_spool_entry_max = 100000;
inline constexpr std::uint32_t reply_bytes_max = 4096;
inline constexpr std::uint32_t uids_per_record_max = 1u << 16;      // Bigger sets span records.

// ---- protocols ----
inline constexpr std::uint32_t smtp_line_bytes_max = 4096;         // RFC 5321 4.5.3.1.4: 512 min.
inline constexpr std::uint32_t smtp_recipients_max = 100000;
inline constexpr std::uint32_t imap_line_bytes_max = 65536;
inline constexpr std::uint32_t pop3_line_bytes_max = 512;          // RFC 2449: 255 octets.

static_assert(record_alignment == 8);
static_assert(record_payload_bytes_max < segment_bytes_max);
static_assert(std::uint64_t{uids_per_record_max} * 64 < record_payload_bytes_max);
static_assert(body_chunk_bytes_max < record_payload_bytes_max);
static_assert(segment_bytes_default <= segment_bytes_max);
static_assert(segment_header_bytes % record_alignment == 0);
static_assert(record_header_bytes % record_alignment == 0);
static_assert((recv_buffer_count_max & (recv_buffer_count_max - 1)) == 0);
static_assert(recv_buffer_count_max <= 32768);  // Buffer ids are 16 bits; ring fits 2^15.
static_assert((cross_core_queue_entries & (cross_core_queue_entries - 1)) == 0);
static_assert((ip_limiter_slots & (ip_limiter_slots - 1)) == 0);
static_assert(session_output_high_bytes < session_output_chunks_max * session_chunk_bytes);
static_assert(smtp_line_bytes_max <= session_chunk_bytes);  // A whole line fits in staging.

}  // namespace rp::limits
