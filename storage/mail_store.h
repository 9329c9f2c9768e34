// storage/mail_store.h: one shard's mail store, the only storage API protocols see.
//
// Owns: the shard folder (<data>/shard-N/): its log segments, snapshots and the index.
// Core: one writer, the owning shard. Body bytes below durable_lsn() may be read by any thread
//   through a BodyHandle obtained from the owner (cross-core message for other shards).
//
// Writing. Every mutating call applies to the index at once and stages its records; nothing
// reaches the disk until flush(). The shard's commit tick calls flush(), which issues one
// writev and one fdatasync through Io for everything staged (group commit); when it
// completes, every transaction it covered is durable and each DurableDone passed to the
// calls runs (or poll is_durable(lsn) with the Lsn the call returned). Reply 250/OK only then.
// Up to StoreOptions::batches_inflight_max flushes are in flight (the next batch is written
// while the previous one syncs; they complete in order); appends keep staging meanwhile.
//
// Transactions. txn_begin() ... txn_commit() makes several operations atomic on disk (for
// example the body, the spool envelope and the deliveries of one message). Outside them each
// call is its own transaction. An operation that fails changes nothing; a transaction keeps
// the operations that succeeded.
//
// Bodies. body_begin() opens a writer; body_append() takes the caller's memory as iovecs (zero
// copy: the memory must stay valid until `release` runs, after the write of the batch that
// carries it completed) and body_append_copy() copies. Each call becomes one chunk record,
// so pass everything received since the last commit tick in one call: a message received
// within one tick is one extent, a single (file, offset, length) a socket can sendfile. A big
// body grows over several ticks and flushes as several extents; memory stays bounded by what
// the caller holds between ticks. body_finish() defines the body inside the transaction.
//
// Cross-shard delivery. Body ids are per store; BodyRef carries the shard id. deliver() on the
// shard owning the mailbox records a message whose body lives in another shard's store. The
// sending shard keeps a local reference (its spool entry) until every delivery is durable, so
// the body cannot die in between. Compaction relocates bodies without changing their ids.
//
// Garbage collection of bodies. A body dies when no local message or spool entry references
// it AND no other shard does. Other shards' references are supplied by the caller:
//   epoch = store.gc_begin();                       // on the owning shard
//   refs  = union over shards S of S.foreign_refs(owner shard)  // gathered after gc_begin
//   store.gc_finish(epoch, refs);                   // drops bodies dead before `epoch`
// A body whose last local reference went away after gc_begin() survives this round, so a
// delivery racing with the gathering is safe.
//
// Errors. Operating errors come back as Status. A failed write or fdatasync poisons the store
// (failed() != ok): staged work fails with that status, reads keep working, and the owner must
// reopen the store (recovery trusts only the disk). A mailbox holding a damaged record is
// quarantined: its operations return Status::quarantined; everything else serves.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "core/clock.h"
#include "core/io.h"
#include "storage/log.h"
#include "storage/mailbox_index.h"

namespace rp::storage {

struct StoreOptions {
    std::string dir;  // The shard's folder, e.g. <data>/shard-0; created when missing.
    std::uint16_t shard = 0;
    std::uint32_t segment_bytes = limits::segment_bytes_default;
    bool read_only = false;  // Tools while the daemon runs: no truncation, no writes.
    // Group commit: batches written and syncing at once ([store] batches_inflight).
    unsigned batches_inflight_max = 2;
    // Keep the tail segment written (zeros, synced) this far ahead of the tail, so that
    // commits overwrite existing blocks ([store] prewrite_bytes; 0: off).
    std::uint32_t prewrite_bytes = 16u << 20;
    // Sealed segments whose live body bytes are below this share of their size get compacted.
    double compact_live_ratio_max = 0.8;
    // Idempotent-delivery keys older than this are forgotten at snapshot time.
    std::int64_t delivery_key_retention_s = 14 * 24 * 3600;
    // Tests only: runs in open() just before each listed segment file is opened (to remove
    // or replace files the way the daemon's upkeep does beside a read-only open).
    std::function<void()> open_race_hook;
};

// One piece of damage found at open.
struct Damage {
    std::uint32_t segment_id = 0;
    std::uint32_t offset = 0;
    Status error = Status::corrupt;
    std::uint64_t scope = 0;  // scope_make(...) or 0 when unknown.
    std::string what;
};

struct OpenReport {
    bool snapshot_loaded = false;
    Lsn snapshot_lsn = 0;
    std::uint64_t records_replayed = 0;
    std::uint64_t bytes_replayed = 0;
    std::uint64_t torn_bytes = 0;          // Cut from the tail.
    std::uint64_t txns_discarded = 0;      // Uncommitted at the crash.
    std::vector<Damage> damage;            // Reported once, here.
    std::vector<std::uint64_t> quarantined_mailboxes;
};

class DurableDone {
public:
    virtual void durable(Status status) = 0;

protected:
    ~DurableDone() = default;
};

class SnapshotDone {
public:
    virtual void snapshot_done(Status status) = 0;

protected:
    ~SnapshotDone() = default;
};

class CompactDone {
public:
    // `relocated_bytes` were staged (flush them); 0 with ok means nothing left to move.
    virtual void compact_done(Status status, std::uint64_t relocated_bytes) = 0;

protected:
    ~CompactDone() = default;
};

struct MailboxInfo {
    std::uint64_t id = 0;
    std::string name;
    std::uint32_t special_use = 0;
    std::uint32_t uidvalidity = 0;
    std::uint32_t uidnext = 0;
    std::uint64_t highest_modseq = 0;
    std::uint32_t message_count = 0;  // Visible (durable) messages.
    bool quarantined = false;
};

// A body pinned for reading: its segments cannot be retired while the handle lives. Movable
// across threads; each extent is (fd, file offset of the bytes, length).
struct BodyHandle {
    struct Piece {
        SegmentPin segment;
        Extent extent;
        int fd() const { return segment->fd; }
        std::uint64_t data_offset() const { return std::uint64_t{extent.offset} + record_header_bytes; }
    };
    BodyRef ref;
    std::uint64_t bytes = 0;
    std::uint8_t traits = 0;  // BodyTrait bits.
    std::vector<Piece> pieces;
};

// Reads and verifies one extent: `record` holds the bytes at [extent.offset,
// extent.offset + record_bytes(extent.bytes)); returns the body bytes inside it, or
// Status::corrupt. For callers that read through their own Io.
[[nodiscard]] Result<std::span<const std::byte>> extent_verify(const Extent& extent,
                                                             std::span<const std::byte> record);
// Blocking read of a whole body into `out` (exactly handle.bytes long), verifying every chunk.
// For tools, tests and helper threads, never a core thread.
[[nodiscard]] Status body_read_blocking(const BodyHandle& handle, std::span<std::byte> out);

using BodyWriterId = std::uint64_t;

struct SpoolDue {
    std::uint64_t spool_id = 0;
    std::uint32_t rcpt_index = 0;
};

struct StoreStats {
    std::uint32_t segment_count = 0;
    std::uint64_t segment_bytes = 0;      // On disk, all segments.
    std::uint64_t live_body_bytes = 0;    // Record bytes of live bodies.
    std::uint64_t snapshot_bytes = 0;
    std::uint64_t accounts = 0, mailboxes = 0, messages = 0, bodies = 0, spool_entries = 0;
    std::uint32_t pinned_segments = 0;
    Lsn durable_lsn = 0, snapshot_lsn = 0;
};

class MailStore final : FlushDone {
public:
    [[nodiscard]] static Result<std::unique_ptr<MailStore>> open(Io& io, Clock& clock,
                                                               StoreOptions options);
    ~MailStore();
    MailStore(const MailStore&) = delete;
    MailStore& operator=(const MailStore&) = delete;

    const OpenReport& open_report() const { return report_; }
    std::uint16_t shard() const { return options_.shard; }

    // ---- durability ----
    // Status::again when nothing is staged, busy while no flush slot is free (call again from
    // `done` or the next tick); both leave `done` uncalled.
    [[nodiscard]] Status flush(FlushDone* done = nullptr);
    Lsn durable_lsn() const { return log_->durable(); }
    bool is_durable(Lsn lsn) const { return lsn <= log_->durable(); }
    Status failed() const { return log_->failed() != Status::ok ? log_->failed() : failed_; }
    // Batches (or a segment pre-write) in flight.
    bool flushing() const { return log_->flushing(); }
    // flush() would be refused now for want of a slot (a batch may still be refused busy
    // when it must run alone, e.g. across a segment rotation).
    bool flush_slots_full() const { return log_->flush_slots_full(); }
    std::uint64_t staged_bytes() const { return log_->staged_bytes(); }
    // The Lsn that makes the last committed transaction durable.
    Lsn last_commit_lsn() const { return last_commit_lsn_; }

    // ---- transactions ----
    void txn_begin();
    // Stages the commit; `done` runs once it is durable. Returns the Lsn to poll.
    [[nodiscard]] Result<Lsn> txn_commit(DurableDone* done = nullptr);
    bool in_txn() const { return txn_explicit_; }
    // For one-operation transactions: the DurableDone for the next mutating call.
    void on_durable(DurableDone* done) { next_done_ = done; }

    // ---- bodies ----
    [[nodiscard]] Result<BodyWriterId> body_begin();
    [[nodiscard]] Status body_append(BodyWriterId writer, const iovec* parts, unsigned part_count,
                                     BufferRelease& release);
    [[nodiscard]] Status body_append_copy(BodyWriterId writer, std::span<const std::byte> bytes);
    [[nodiscard]] Result<BodyRef> body_finish(BodyWriterId writer);
    void body_abort(BodyWriterId writer);
    // begin + append_copy + finish, for small bodies.
    [[nodiscard]] Result<BodyRef> body_put(std::span<const std::byte> bytes);
    // Pins a local body for reading. Status::not_found, corrupt (damaged at open), or
    // again when it is not durable yet.
    [[nodiscard]] Result<BodyHandle> body_open(BodyRef ref) const;

    // ---- accounts and mailboxes ----
    // Creates the account with INBOX, Sent, Drafts, Trash and Junk (special-use flags), all
    // five subscribed.
    [[nodiscard]] Status account_create(std::string_view account);
    bool account_exists(std::string_view account) const;
    std::vector<std::string> account_list() const;
    [[nodiscard]] Result<std::vector<MailboxInfo>> mailbox_list(std::string_view account) const;
    [[nodiscard]] Result<MailboxInfo> mailbox_status(std::string_view account,
                                                     std::string_view mailbox) const;
    [[nodiscard]] Result<std::uint64_t> mailbox_create(std::string_view account,
                                                       std::string_view mailbox,
                                                       std::uint32_t special_use = 0);
    // Renaming INBOX moves its messages into a new mailbox `to` and leaves INBOX empty
    // (RFC 3501 6.3.5). invalid (bad name, or to INBOX), exists, not_found, quarantined.
    [[nodiscard]] Status mailbox_rename(std::string_view account, std::string_view from,
                                        std::string_view to);
    [[nodiscard]] Status mailbox_delete(std::string_view account, std::string_view mailbox);
    // IMAP SUBSCRIBE / UNSUBSCRIBE (RFC 3501 6.3.6, 6.3.7). Durable like the other mailbox
    // operations. Any valid name may be subscribed, whether or not the mailbox exists, and a
    // subscription outlives DELETE and RENAME of its mailbox. Unsubscribing a name that is not
    // subscribed is ok (the record is still written, so `on_durable` callers get their callback).
    // invalid (bad name), not_found (no account), full (mailboxes_per_account_max names).
    [[nodiscard]] Status mailbox_subscribe(std::string_view account, std::string_view mailbox,
                                           bool subscribed);
    // Subscribed names, sorted (INBOX in any case is stored as "INBOX").
    std::vector<std::string> subscriptions(std::string_view account) const;
    // An operator accepts a quarantined mailbox as it is (ringpost store repair).
    [[nodiscard]] Status mailbox_repair(std::string_view account, std::string_view mailbox);

    // ---- messages ----
    struct AppendArgs {
        BodyRef body;
        std::uint64_t size = 0;
        std::uint32_t flags = 0;
        std::vector<std::string> keywords;
        std::int64_t internal_date = 0;
    };
    [[nodiscard]] Result<std::uint32_t> message_append(std::string_view account,
                                                       std::string_view mailbox,
                                                       const AppendArgs& args);
    // Idempotent local delivery: the same key twice returns the first UID and writes nothing.
    [[nodiscard]] Result<std::uint32_t> deliver(std::string_view account, std::string_view mailbox,
                                                const DeliveryKey& key, const AppendArgs& args);
    // Returns the new modseq. UIDs that do not exist are skipped (RFC 3501 6.4.6).
    [[nodiscard]] Result<std::uint64_t> flags_set(std::string_view account, std::string_view mailbox,
                                                  std::span<const std::uint32_t> uids, FlagMode mode,
                                                  std::uint32_t flags,
                                                  const std::vector<std::string>& keywords = {});
    // Returns (source UID, new UID) pairs (RFC 4315 COPYUID).
    using UidMap = std::vector<std::pair<std::uint32_t, std::uint32_t>>;
    [[nodiscard]] Result<UidMap> message_copy(std::string_view account, std::string_view from,
                                              std::span<const std::uint32_t> uids,
                                              std::string_view to);
    [[nodiscard]] Result<UidMap> message_move(std::string_view account, std::string_view from,
                                              std::span<const std::uint32_t> uids,
                                              std::string_view to);
    // Removes the given UIDs; returns the new modseq.
    [[nodiscard]] Result<std::uint64_t> expunge(std::string_view account, std::string_view mailbox,
                                                std::span<const std::uint32_t> uids);
    // Visible (durable) messages, sorted by UID.
    [[nodiscard]] Result<std::vector<Message>> messages(std::string_view account,
                                                        std::string_view mailbox) const;
    [[nodiscard]] Result<Message> message(std::string_view account, std::string_view mailbox,
                                          std::uint32_t uid) const;
    std::vector<std::string> keyword_names(std::string_view account, const Keywords& keywords) const;

    // ---- spool ----
    // Assigns entry.id when 0 (shard in the top 16 bits). Counts a local body reference.
    [[nodiscard]] Result<std::uint64_t> spool_add(SpoolEntry entry);
    [[nodiscard]] Status spool_update(std::uint64_t spool_id, std::uint32_t rcpt_index,
                                      RcptState state, std::int64_t next_attempt,
                                      std::uint32_t attempts, std::string_view reply);
    // Status::busy while a recipient is not final.
    [[nodiscard]] Status spool_remove(std::uint64_t spool_id);
    const SpoolEntry* spool_get(std::uint64_t spool_id) const;
    // Pending or deferred recipients with next_attempt <= now, the longest due first (then by
    // spool id and recipient). Reads only the due ones (an ordered index), not the spool.
    std::vector<SpoolDue> spool_due(std::int64_t now, std::size_t count_max) const;
    const std::map<std::uint64_t, SpoolEntry>& spool_all() const { return index_.spool; }

    // ---- garbage collection, compaction, snapshots ----
    std::uint64_t gc_begin();
    // Body ids of `owner_shard` that this store's messages and spool reference.
    std::vector<std::uint64_t> foreign_refs(std::uint16_t owner_shard) const;
    // Stages a body_drop for bodies dead before `epoch` and absent from `foreign_live`.
    [[nodiscard]] Result<std::size_t> gc_finish(std::uint64_t epoch,
                                                const std::unordered_set<std::uint64_t>& foreign_live);
    // True when a sealed segment is worth compacting.
    bool compact_needed() const;
    // Reads up to `budget_bytes` of live bodies out of the emptiest candidate segment through
    // Io, verifies them and stages them at the tail (body_move). `done` runs when staged;
    // flush afterwards. Appends keep working meanwhile. busy when a step is running.
    [[nodiscard]] Status compact_step(std::uint64_t budget_bytes, CompactDone& done);
    // Writes the index atomically (tmp, fsync, rename, fsync folder) through Io, then retires
    // segments that hold no live body, are covered by both kept snapshots and are not pinned.
    // Needs nothing staged and no flush in flight (else busy).
    [[nodiscard]] Status snapshot(SnapshotDone& done);
    bool snapshot_running() const { return snapshot_ != nullptr; }
    // The log position of the newest snapshot (0: none yet).
    Lsn snapshot_lsn() const { return snapshot_lsn_; }
    std::uint64_t snapshot_bytes() const { return snapshot_bytes_; }  // The newest snapshot's.
    // Retires what can be retired now (pins released since): forgets the segments at once and
    // removes their files through Io (a RetireJob). Returns how many.
    std::size_t retire_segments();
    // True while a snapshot, compaction read or segment removal is in flight through Io: the
    // store must not be destroyed then (the shard waits for its tick hooks to be idle).
    bool io_busy() const { return snapshot_ || compact_ || retire_; }
    std::uint64_t retire_failures() const { return retire_failures_; }

    StoreStats stats() const;
    const MailboxIndex& index() const { return index_; }
    Log& log() { return *log_; }

private:
    struct Writer;
    struct SnapshotJob;
    struct CompactJob;
    struct RetireJob;
    struct Recovery;
    struct TxnRecord {
        RecordType type;
        std::uint64_t scope;
        std::string payload;
    };

    MailStore(Io& io, Clock& clock, StoreOptions options);
    // One open; a read-only one that raced the daemon's upkeep returns Status::again.
    [[nodiscard]] static Result<std::unique_ptr<MailStore>> open_attempt(Io& io, Clock& clock,
                                                                       const StoreOptions& options);
    void flush_done(Status status) override;
    Status writable() const;
    // Applies `payload` to the index and adds it to the open transaction (auto-committed
    // outside txn_begin). Asserts the index accepts it: callers validated first.
    Status stage(RecordType type, std::uint64_t scope, std::string payload);
    void stage_expunges(Mailbox& box, const std::vector<std::uint32_t>& uids);
    Status op_begin(std::size_t payload_bytes);
    Status op_end();
    Result<std::uint32_t> keyword_bits(Account& account, const std::vector<std::string>& names,
                                       Keywords& out, bool define);
    Status resolve(std::string_view account, std::string_view mailbox, Mailbox*& box);
    Result<const Mailbox*> resolve_const(std::string_view account, std::string_view mailbox) const;
    Result<UidMap> copy_into(Mailbox& from, std::span<const std::uint32_t> uids, Mailbox& to);
    Status inbox_rename(Mailbox& inbox, const std::string& to);
    std::uint32_t next_uidvalidity();
    Writer* writer(BodyWriterId id);
    std::uint32_t min_open_segment() const;
    void snapshot_finished(Status status);
    void compact_finished(Status status, std::uint64_t bytes);
    bool visible(const Message& m) const { return m.visible_lsn <= log_->durable(); }

    Io& io_;
    Clock& clock_;
    StoreOptions options_;
    int dir_fd_ = -1;
    std::unique_ptr<Log> log_;
    MailboxIndex index_;
    OpenReport report_;
    Status failed_ = Status::ok;

    bool txn_explicit_ = false;
    std::uint64_t next_txn_id_ = 1;
    std::vector<TxnRecord> txn_records_;
    std::uint64_t txn_bytes_ = 0;
    std::vector<std::pair<std::uint64_t, std::uint32_t>> txn_appended_;
    DurableDone* next_done_ = nullptr;
    Lsn last_commit_lsn_ = 0;
    std::deque<std::pair<Lsn, DurableDone*>> waiters_;
    std::deque<FlushDone*> flush_dones_;  // One per batch in flight, oldest first.

    std::vector<std::unique_ptr<Writer>> writers_;
    std::vector<std::uint32_t> writers_free_;
    std::uint32_t writer_generation_ = 1;

    std::unique_ptr<SnapshotJob> snapshot_;
    std::unique_ptr<CompactJob> compact_;
    std::unique_ptr<RetireJob> retire_;
    std::uint64_t retire_failures_ = 0;
    Lsn snapshot_lsn_ = 0;       // The newest snapshot.
    Lsn snapshot_prev_lsn_ = 0;  // The one before; segments below both may go.
    std::uint64_t snapshot_bytes_ = 0;
};

}  // namespace rp::storage
