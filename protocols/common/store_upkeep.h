// protocols/common/store_upkeep.h: the daemon's store maintenance, one per shard: snapshots,
// body garbage collection across shards, and compaction in small steps.
//
// Owns: nothing of the store; it drives the shard's MailStore (through its ShardMail) from a
//   timer and the shard's tick, and the GC rounds it started (cross-core gathers).
// Core: the shard's thread only. A GC round asks every other shard, by cross-core message,
//   for the body ids of this shard that it references (MailStore::foreign_refs); the
//   request object travels there and back and is freed by whoever holds it last (the
//   origin, or the discard hook at shutdown).
// What it does, each `interval_ms` and on every tick while there is work:
//   - compaction: compact_step(compact_step_bytes) while compact_needed(), one step at a
//     time and only once the previous step's relocations were mostly flushed, so appends
//     never wait behind a big relocation;
//   - GC: every gc_interval_ms, gc_begin(), gather foreign_refs from every shard, gc_finish();
//     a round that does not complete within gc_round_timeout_ms (a full queue, a stopping
//     shard) is abandoned and tried again next time;
//   - snapshots: when the log grew by snapshot_log_bytes since the last snapshot, and twice
//     after compaction or GC freed space (segments are retired only below both kept
//     snapshots), whenever nothing is staged or in flight. A snapshot encodes the whole index
//     on the shard's thread (about 0.4 us per message: 40 ms for 100,000), which stalls every
//     session of the shard, so it waits for a quiet moment (no commit for snapshot_quiet_ms)
//     unless the log grew past the hard mark; and a big index is re-encoded only after the
//     log grew by a few times its size (snapshot_due()).
// Errors: a failed snapshot or compaction step is logged (once per kind) and retried at the
//   next interval; a poisoned store is left alone (ShardMail reports it).
#pragma once

#include <cstdint>
#include <vector>

#include "core/shard.h"
#include "protocols/common/shard_mail.h"

namespace rp::mail {

struct StoreUpkeepOptions {
    std::uint64_t interval_ms = 1000;
    std::uint64_t snapshot_log_bytes = 64ull << 20;      // The soft mark.
    std::uint64_t snapshot_log_bytes_max = 512ull << 20; // The hard mark: no waiting for quiet.
    std::uint64_t snapshot_quiet_ms = 200;               // No commit for this long is quiet.
    std::uint64_t gc_interval_ms = 60'000;
    std::uint64_t gc_round_timeout_ms = 10'000;
    std::uint64_t compact_step_bytes = 1ull << 20;
};

struct StoreUpkeepStats {
    std::uint64_t snapshots = 0;
    std::uint64_t snapshot_failures = 0;
    std::uint64_t gc_rounds = 0;
    std::uint64_t gc_rounds_abandoned = 0;
    std::uint64_t bodies_dropped = 0;
    std::uint64_t compact_steps = 0;
    std::uint64_t compact_bytes = 0;
    std::uint64_t segments_retired = 0;
};

// Bytes of log between two positions, counting whole segments of `segment_bytes` between
// them (segment ids are consecutive). Pure, for the snapshot threshold.
std::uint64_t log_bytes_between(storage::Lsn from, storage::Lsn to, std::uint32_t segment_bytes);

// Whether to write a snapshot now, the log having grown by `grown` bytes since the last one
// (of `snapshot_bytes`). The soft mark is snapshot_log_bytes, or 4x the last snapshot when
// that is bigger (the cost of a snapshot then stays a small share of the log written); past
// it, or when `wanted` (space was freed), a snapshot waits until the shard is `quiet`. Past
// the hard mark, snapshot_log_bytes_max or 16x the last snapshot, it goes at once (replay at
// start-up stays bounded). Pure.
bool snapshot_due(const StoreUpkeepOptions& options, std::uint64_t grown,
                  std::uint64_t snapshot_bytes, bool wanted, bool quiet);

class StoreUpkeep final : public ShardLocal,
                          public TickHook,
                          Timer,
                          storage::SnapshotDone,
                          storage::CompactDone {
public:
    // Registers the tick and arms the timer; `mail` outlives this object (own() it after
    // the ShardMail's owner).
    StoreUpkeep(ShardMail& mail, MailCluster& cluster, const StoreUpkeepOptions& options);
    ~StoreUpkeep() override;
    StoreUpkeep(const StoreUpkeep&) = delete;
    StoreUpkeep& operator=(const StoreUpkeep&) = delete;

    void on_tick() override;
    bool idle() const override;
    const StoreUpkeepStats& stats() const { return stats_; }

private:
    struct Gather;

    void on_timer() override;
    void step(bool timer);
    void gc_start(std::uint64_t now_ns);
    void gc_gathered(Gather* gather);
    void gc_finish();
    void snapshot_done(Status status) override;
    void compact_done(Status status, std::uint64_t relocated_bytes) override;
    static void on_gather(Shard& to, const CrossMessage& message);
    static void on_gathered(Shard& to, const CrossMessage& message);
    static void on_discard(const CrossMessage& message);

    ShardMail& mail_;
    MailCluster& cluster_;
    StoreUpkeepOptions options_;
    StoreUpkeepStats stats_;
    bool compacting_ = false;
    bool compact_more_ = true;        // Look for compaction work at the next step.
    bool compacted_ = false;          // Bytes moved since compaction last ran out of work.
    unsigned snapshots_wanted_ = 0;   // Space was freed: snapshots needed to retire segments.
    storage::Lsn seen_durable_ = 0;   // The durable watermark at the last step,
    std::uint64_t active_ns_ = 0;     // and when it last moved.
    bool snapshot_failed_logged_ = false;
    bool compact_failed_logged_ = false;
    std::uint64_t next_gc_ns_ = 0;
    // The GC round in flight (round id 0: none).
    std::uint64_t gc_round_ = 0;
    std::uint64_t gc_round_seq_ = 0;
    std::uint64_t gc_epoch_ = 0;
    std::uint64_t gc_started_ns_ = 0;
    unsigned gc_waiting_ = 0;
    std::vector<std::uint64_t> gc_refs_;
};

}  // namespace rp::mail
