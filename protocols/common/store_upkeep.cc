#include "protocols/common/store_upkeep.h"

#include <algorithm>
#include <memory>
#include <unordered_set>

#include "core/log.h"

namespace rp::mail {

namespace {

constexpr std::uint64_t ns_per_ms = 1'000'000;

}  // namespace

// One shard's answer to a GC round: created by the origin, filled by the asked shard,
// handed back to the origin.
struct StoreUpkeep::Gather {
    MailCluster* cluster = nullptr;
    StoreUpkeep* origin = nullptr;   // Used only on the origin shard's thread.
    unsigned origin_shard = 0;
    std::uint64_t round = 0;
    bool answered = false;           // The asked shard had a store to ask.
    std::vector<std::uint64_t> refs;
};

std::uint64_t log_bytes_between(storage::Lsn from, storage::Lsn to, std::uint32_t segment_bytes) {
    if (to <= from) return 0;
    const std::uint32_t from_segment = storage::lsn_segment(from);
    const std::uint32_t to_segment = storage::lsn_segment(to);
    if (from_segment == to_segment) return storage::lsn_offset(to) - storage::lsn_offset(from);
    // bounds: offsets are below segment_bytes; segment ids are 32-bit, so the product of
    // a segment count and a 32-bit size fits in 64 bits.
    const std::uint64_t first = segment_bytes > storage::lsn_offset(from)
                                    ? segment_bytes - storage::lsn_offset(from)
                                    : 0;
    const std::uint64_t middle = std::uint64_t{to_segment - from_segment - 1} * segment_bytes;
    return first + middle + storage::lsn_offset(to);
}

bool snapshot_due(const StoreUpkeepOptions& options, std::uint64_t grown,
                  std::uint64_t snapshot_bytes, bool wanted, bool quiet) {
    // bounds: snapshot_bytes is a file's size (< 2^40 in practice); 16x stays far below 2^64.
    const std::uint64_t soft = std::max(options.snapshot_log_bytes, 4 * snapshot_bytes);
    const std::uint64_t hard = std::max({options.snapshot_log_bytes_max, soft, 16 * snapshot_bytes});
    if (grown >= hard) return true;
    return quiet && (wanted || grown >= soft);
}

StoreUpkeep::StoreUpkeep(ShardMail& mail, MailCluster& cluster, const StoreUpkeepOptions& options)
    : mail_(mail), cluster_(cluster), options_(options) {
    RP_ASSERT(options_.interval_ms > 0);
    RP_ASSERT(options_.compact_step_bytes > 0);
    Reactor& reactor = mail_.shard().reactor();
    next_gc_ns_ = reactor.now_ns() + options_.gc_interval_ms * ns_per_ms;
    reactor.add_tick(*this);
    reactor.timer_arm(*this, options_.interval_ms * ns_per_ms);
}

StoreUpkeep::~StoreUpkeep() {
    Reactor& reactor = mail_.shard().reactor();
    if (Timer::armed()) reactor.timer_cancel(*this);
    reactor.remove_tick(*this);
    // A snapshot or compaction read still in flight would complete into freed memory; the
    // shard waits for idle() before it stops, so this holds unless the grace time ran out.
    RP_ASSERT(!compacting_);
    if (stats_.snapshots + stats_.gc_rounds + stats_.compact_steps > 0) {
        log::info("shard {}: store upkeep: {} snapshots ({} failed), {} gc rounds ({} abandoned, "
                  "{} bodies dropped), {} compaction steps ({} bytes moved), {} segments retired",
                  mail_.shard_index(), stats_.snapshots, stats_.snapshot_failures, stats_.gc_rounds,
                  stats_.gc_rounds_abandoned, stats_.bodies_dropped, stats_.compact_steps,
                  stats_.compact_bytes, stats_.segments_retired);
    }
}

bool StoreUpkeep::idle() const { return !compacting_ && !mail_.store().io_busy(); }

void StoreUpkeep::on_timer() {
    mail_.shard().reactor().timer_arm(*this, options_.interval_ms * ns_per_ms);
    step(true);
}

void StoreUpkeep::on_tick() { step(false); }

void StoreUpkeep::step(bool timer) {
    storage::MailStore& store = mail_.store();
    if (store.failed() != Status::ok || mail_.shard().stopping()) return;
    const std::uint64_t now = mail_.shard().reactor().now_ns();
    if (store.durable_lsn() != seen_durable_) {
        seen_durable_ = store.durable_lsn();
        active_ns_ = now;
    }

    // Compaction: one bounded step at a time, and only once the last step's relocated bytes
    // have mostly gone out, so the staging (and the next flush) stays small.
    if (timer) compact_more_ = true;
    if (compact_more_ && !compacting_ && !store.in_txn() &&
        store.staged_bytes() < options_.compact_step_bytes) {
        if (!store.compact_needed()) {
            compact_more_ = false;
            if (compacted_) {
                compacted_ = false;
                snapshots_wanted_ = 2;  // Retire the segments compaction emptied.
            }
        } else {
            const Status s = store.compact_step(options_.compact_step_bytes, *this);
            if (s == Status::ok) {
                compacting_ = true;
            } else {
                compact_more_ = false;
                if (s != Status::again && s != Status::busy && !compact_failed_logged_) {
                    compact_failed_logged_ = true;
                    log::warn("shard {}: compaction step failed: {}", mail_.shard_index(),
                              status_name(s));
                }
            }
        }
    }

    // Garbage collection of bodies across shards.
    if (gc_round_ != 0 && now - gc_started_ns_ > options_.gc_round_timeout_ms * ns_per_ms) {
        ++stats_.gc_rounds_abandoned;
        gc_round_ = 0;  // Late answers are dropped.
        next_gc_ns_ = now + options_.gc_interval_ms * ns_per_ms;
    }
    if (timer && gc_round_ == 0 && now >= next_gc_ns_) gc_start(now);

    // Snapshots: when the log grew enough, or to retire segments freed by GC and compaction.
    if (store.snapshot_running() || store.flushing() || store.staged_bytes() != 0 ||
        store.in_txn() || compacting_) {
        return;
    }
    if (timer) stats_.segments_retired += store.retire_segments();
    const std::uint64_t grown =
        log_bytes_between(store.snapshot_lsn(), store.durable_lsn(), store.log().segment_bytes());
    if (grown == 0 && store.snapshot_lsn() != 0 && snapshots_wanted_ == 0) return;
    const bool quiet = now - active_ns_ >= options_.snapshot_quiet_ms * ns_per_ms;
    if (!snapshot_due(options_, grown, store.snapshot_bytes(), snapshots_wanted_ > 0, quiet)) return;
    const Status s = store.snapshot(*this);
    if (s != Status::ok && s != Status::busy) {
        ++stats_.snapshot_failures;
        snapshots_wanted_ = 0;
        if (!snapshot_failed_logged_) {
            snapshot_failed_logged_ = true;
            log::warn("shard {}: snapshot failed: {}", mail_.shard_index(), status_name(s));
        }
    }
}

void StoreUpkeep::snapshot_done(Status status) {
    if (status != Status::ok) {
        ++stats_.snapshot_failures;
        snapshots_wanted_ = 0;  // Tried again once the log grows or space is freed again.
        if (!snapshot_failed_logged_) {
            snapshot_failed_logged_ = true;
            log::warn("shard {}: snapshot failed: {}", mail_.shard_index(), status_name(status));
        }
        return;
    }
    ++stats_.snapshots;
    if (snapshots_wanted_ > 0) --snapshots_wanted_;
    // The snapshot retired what it could; count it from the store's segment count next time.
    log::debug("shard {}: snapshot written", mail_.shard_index());
}

void StoreUpkeep::compact_done(Status status, std::uint64_t relocated_bytes) {
    RP_ASSERT(compacting_);
    compacting_ = false;
    ++stats_.compact_steps;
    if (status != Status::ok) {
        compact_more_ = false;
        if (!compact_failed_logged_) {
            compact_failed_logged_ = true;
            log::warn("shard {}: compaction step failed: {}", mail_.shard_index(), status_name(status));
        }
        return;
    }
    stats_.compact_bytes += relocated_bytes;
    // Nothing moved (the bodies went away meanwhile): wait for the timer.
    compact_more_ = relocated_bytes > 0;
    compacted_ = compacted_ || relocated_bytes > 0;
}

// ---- garbage collection ----

void StoreUpkeep::gc_start(std::uint64_t now) {
    RP_ASSERT(gc_round_ == 0);
    storage::MailStore& store = mail_.store();
    if (store.in_txn()) return;
    gc_round_ = ++gc_round_seq_;
    gc_epoch_ = store.gc_begin();
    gc_started_ns_ = now;
    gc_refs_.clear();
    gc_waiting_ = 0;
    next_gc_ns_ = now + options_.gc_interval_ms * ns_per_ms;
    Shard& shard = mail_.shard();
    for (unsigned to = 0; to < shard.shard_count(); ++to) {
        if (to == shard.index()) continue;
        auto gather = std::make_unique<Gather>();
        gather->cluster = &cluster_;
        gather->origin = this;
        gather->origin_shard = shard.index();
        gather->round = gc_round_;
        CrossMessage message;
        message.handler = &StoreUpkeep::on_gather;
        message.discard = &StoreUpkeep::on_discard;
        message.pointer = gather.get();
        if (shard.post(to, message) != Status::ok) {
            // A full queue: give this round up, the timeout or the next interval retries.
            ++stats_.gc_rounds_abandoned;
            gc_round_ = 0;
            return;
        }
        (void)gather.release();  // The receiver owns it now.
        ++gc_waiting_;
    }
    if (gc_waiting_ == 0) gc_finish();
}

// On the asked shard: fill in its references and send the answer back.
void StoreUpkeep::on_gather(Shard& to, const CrossMessage& message) {
    std::unique_ptr<Gather> gather(static_cast<Gather*>(message.pointer));
    ShardMail* mail = gather->cluster->get(to.index());
    if (mail != nullptr) {
        gather->refs = mail->store().foreign_refs(static_cast<std::uint16_t>(gather->origin_shard));
        gather->answered = true;
    }
    CrossMessage answer;
    answer.handler = &StoreUpkeep::on_gathered;
    answer.discard = &StoreUpkeep::on_discard;
    answer.pointer = gather.get();
    // A full queue drops the answer; the origin abandons the round after its timeout.
    if (to.post(gather->origin_shard, answer) == Status::ok) (void)gather.release();
}

// On the origin shard.
void StoreUpkeep::on_gathered(Shard&, const CrossMessage& message) {
    std::unique_ptr<Gather> gather(static_cast<Gather*>(message.pointer));
    gather->origin->gc_gathered(gather.get());
}

void StoreUpkeep::on_discard(const CrossMessage& message) { delete static_cast<Gather*>(message.pointer); }

void StoreUpkeep::gc_gathered(Gather* gather) {
    if (gather->round != gc_round_ || gc_round_ == 0) return;  // An abandoned round.
    if (!gather->answered) {
        ++stats_.gc_rounds_abandoned;
        gc_round_ = 0;
        return;
    }
    gc_refs_.insert(gc_refs_.end(), gather->refs.begin(), gather->refs.end());
    RP_ASSERT(gc_waiting_ > 0);
    if (--gc_waiting_ == 0) gc_finish();
}

void StoreUpkeep::gc_finish() {
    RP_ASSERT(gc_round_ != 0);
    RP_ASSERT(gc_waiting_ == 0);
    gc_round_ = 0;
    storage::MailStore& store = mail_.store();
    if (store.failed() != Status::ok || store.in_txn()) return;
    const std::unordered_set<std::uint64_t> live(gc_refs_.begin(), gc_refs_.end());
    gc_refs_.clear();
    gc_refs_.shrink_to_fit();
    ++stats_.gc_rounds;
    auto dropped = store.gc_finish(gc_epoch_, live);
    if (!dropped) {
        log::warn("shard {}: body gc failed: {}", mail_.shard_index(), status_name(dropped.status()));
        return;
    }
    if (*dropped > 0) {
        stats_.bodies_dropped += *dropped;
        compact_more_ = true;
        snapshots_wanted_ = 2;
        log::debug("shard {}: gc dropped {} bodies", mail_.shard_index(), *dropped);
    }
}

}  // namespace rp::mail
