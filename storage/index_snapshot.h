// storage/index_snapshot.h: the index written as one file, so recovery replays only the log
// after it.
//
// Format: a segment header with segment id 0, then records in the log's record format
// (checksummed, typed): snap_state (log position and counters), snap_account, snap_mailbox
// (one or more per mailbox, messages in slices), snap_bodies, snap_spool, snap_deliveries, and
// snap_end with the record count. A snapshot missing snap_end, or with any damaged record, is
// rejected as a whole.
//
// Writing is atomic: snapshot.tmp, fsync, rename the current one to snapshot.prev, rename
// tmp to snapshot, fsync the folder. Two are kept so that one damaged snapshot still leaves a
// way to open; segments are retired only below both.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "core/result.h"
#include "storage/mailbox_index.h"

namespace rp::storage {

inline constexpr const char* snapshot_file = "snapshot";
inline constexpr const char* snapshot_prev_file = "snapshot.prev";
inline constexpr const char* snapshot_tmp_file = "snapshot.tmp";

struct SnapshotMeta {
    Lsn lsn = 0;                  // The log is replayed from here.
    std::uint64_t next_txn_id = 1;
    std::int64_t written_at = 0;
};

// Serialises `index` as of log position meta.lsn. Drops delivery keys older than
// `delivery_keys_since` (Unix seconds).
std::string snapshot_encode(const MailboxIndex& index, const SnapshotMeta& meta,
                            std::int64_t delivery_keys_since);
// Rebuilds `index` (which must be empty) from snapshot bytes; Status::corrupt on any damage.
[[nodiscard]] Status snapshot_decode(std::span<const std::byte> bytes, MailboxIndex& index,
                                     SnapshotMeta& meta);

}  // namespace rp::storage
