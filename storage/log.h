// storage/log.h: one shard's append-only log: segments, rotation, group commit, durable
// watermark.
//
// Owns: the segment files (shared with readers through SegmentPin), the staged batch, the
//   batches in flight and the pre-write of the tail segment.
// Core: only the owning shard stages and flushes. Any thread may read bytes below durable()
//   through a SegmentPin it got from the owner.
// Invariants: records are 8-byte aligned and staged at the tail; at most
//   `batches_inflight_max` batches are in flight (the next batch's writes go out while the
//   previous fdatasync runs); each batch's fdatasync is submitted after its own writes
//   completed, so it covers them; batches complete in order, and durable() only grows, to a
//   batch's end, once that batch and every batch before it were written and synced;
//   zero-copy pieces are released exactly once, after their write completed or failed.
// Pre-write: with `prewrite_bytes`, the tail segment's file is kept written (zeros, synced)
//   ahead of the tail, off the commit path, so that a batch's fdatasync overwrites blocks
//   that already exist and has no file size or extent change to commit. The zeros are never
//   mistaken for records (a scanner sees zeros up to the end of the file as the end). The
//   zero write never overlaps a batch: a flush that would reach into a pre-write in flight
//   waits for it (busy).
// Errors: a failed write or sync poisons the log (failed() != ok): the batch, every batch
//   after it (even one whose own sync succeeded) and everything staged fail with that status, and the owner must reopen the store (recovery
//   then trusts only what is on disk). A record larger than a segment is Status::too_big; a
//   staging area at its cap is Status::full (flush first).
#pragma once

#include <sys/uio.h>

#include <atomic>
#include <deque>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/clock.h"
#include "core/io.h"
#include "storage/record.h"
#include "storage/segment.h"

namespace rp::storage {

// One segment file. Readers hold it through std::shared_ptr (a pin): the file is unlinked
// only when the owner's reference is the last one, and the descriptor closes with the last pin.
struct SegmentFile {
    SegmentFile(std::uint32_t segment_id, int file_fd) : id(segment_id), fd(file_fd) {}
    ~SegmentFile();
    SegmentFile(const SegmentFile&) = delete;
    SegmentFile& operator=(const SegmentFile&) = delete;
    std::uint32_t id;
    int fd;
    std::uint32_t bytes = 0;  // The tail (owner thread only).
    // The file is written and synced up to here (pre-written zeros, or records; owner only).
    std::uint32_t written = 0;
    // More open file descriptions of this file (the tail segment only; owner thread only):
    // the fdatasyncs of concurrent batches and of the pre-write each use their own. A
    // write-back error is reported once per open file description (errseq), so two syncs
    // running at once through one description could see it in only one of them; through
    // distinct descriptions each sync sees every error since its own previous sync.
    std::vector<int> sync_fds;
    void close_sync_fds();
};
using SegmentPin = std::shared_ptr<SegmentFile>;

// Told when the bytes of a zero-copy piece may be reused: after the write that carried them
// completed (status ok) or failed (status != ok).
class BufferRelease {
public:
    virtual void buffer_released(Status status) = 0;

protected:
    ~BufferRelease() = default;
};

class FlushDone {
public:
    virtual void flush_done(Status status) = 0;

protected:
    ~FlushDone() = default;
};

struct LogOptions {
    std::string dir;
    std::uint16_t shard = 0;
    std::uint32_t segment_bytes = limits::segment_bytes_default;
    // Batches written and syncing at once (1: the next batch waits for the previous sync).
    unsigned batches_inflight_max = 2;
    // How far ahead of the tail the tail segment is kept pre-written (0: off).
    std::uint32_t prewrite_bytes = 0;
};

class Log {
public:
    Log(Io& io, Clock& clock, LogOptions options, int dir_fd);
    ~Log();
    Log(const Log&) = delete;
    Log& operator=(const Log&) = delete;

    // Takes the segments recovery found; appends continue at `tail` (in the last segment).
    // With no segments, the first append creates segment 1 (or `next_segment_id`).
    void adopt(std::map<std::uint32_t, SegmentPin> segments, Lsn tail, std::uint32_t next_segment_id);

    // Stages a record whose payload is copied. Returns the record's start position.
    [[nodiscard]] Result<Lsn> append(RecordType type, std::uint64_t txn, std::uint64_t scope,
                                     std::span<const std::byte> payload);
    // Stages a body chunk. With `zero_copy`, the pieces are written from the caller's memory,
    // which must stay valid until a release attached with attach_release() runs; otherwise
    // they are copied.
    [[nodiscard]] Result<Extent> append_chunk(std::uint64_t scope, const iovec* parts,
                                              unsigned part_count, bool zero_copy);
    // `release` runs once the write of the batch now being staged completed or failed.
    void attach_release(BufferRelease& release) { releases_.push_back(&release); }

    // All-or-nothing staging: rollback() drops what was staged after mark(), including
    // segments created since (they are empty files: their header was only staged).
    struct Mark {
        std::size_t pieces, staging, releases;
        std::uint64_t staged_bytes;
        std::uint32_t tail_segment, tail_offset, next_segment_id;
        bool created_segment;
    };
    Mark mark() const;
    void rollback(const Mark& mark);

    // Writes everything staged with one writev per segment touched (split only past IOV_MAX)
    // and one fdatasync each; `done` runs when durable or failed, in flush order. Status::again
    // when nothing is staged, busy while batches_inflight_max batches are in flight or the
    // batch would reach into a pre-write in flight (both: `done` is not called).
    [[nodiscard]] Status flush(FlushDone& done);

    Lsn tail() const { return lsn_make(tail_segment_, tail_offset_); }
    Lsn durable() const { return durable_.load(std::memory_order_acquire); }
    Lsn staged_end() const { return tail(); }
    Status failed() const { return failed_; }
    // Batches (or a pre-write) in flight.
    bool flushing() const { return !inflight_.empty() || prewrite_ != nullptr; }
    // A flush now would find no free slot (busy).
    bool flush_slots_full() const { return inflight_.size() >= options_.batches_inflight_max; }
    std::uint64_t prewrites() const { return prewrites_; }
    std::uint64_t prewrite_waits() const { return prewrite_waits_; }
    std::uint64_t staged_bytes() const { return staged_bytes_; }
    std::uint32_t segment_bytes() const { return options_.segment_bytes; }
    // The largest chunk payload that fits in one record of a fresh segment.
    std::uint32_t chunk_bytes_max() const;

    SegmentPin segment(std::uint32_t id) const;
    const std::map<std::uint32_t, SegmentPin>& segments() const { return segments_; }
    std::uint32_t tail_segment() const { return tail_segment_; }
    // Forgets a sealed segment when no reader pins it (Status::busy when pinned); the caller
    // removes the file (through Io: MailStore::retire_segments).
    [[nodiscard]] Status retire(std::uint32_t id);
    // Segment files created with a blocking open() because no spare was ready (the first
    // segment of a new store, or a segment filled before the spare's openat completed).
    std::uint64_t blocking_creates() const { return blocking_creates_; }

private:
    struct Piece {
        std::uint32_t segment_id;
        const void* external;   // Caller memory, or nullptr for staging bytes.
        std::size_t staging_offset;
        std::size_t bytes;
    };
    struct Batch;
    struct WriteOp;
    struct SyncOp;
    struct SpareOp;
    struct PrewriteOp;
    friend struct WriteOp;
    friend struct SyncOp;
    friend struct SpareOp;
    friend struct PrewriteOp;

    Status reserve(std::uint32_t record_bytes);
    // Extra descriptions a tail segment needs: one per further batch slot, one for pre-write.
    unsigned sync_fds_wanted() const;
    void open_sync_fds_blocking(SegmentFile& segment);
    void close_stale_sync_fds();
    Status rotate();
    void stage_copy(const void* data, std::size_t bytes);
    void stage_external(const void* data, std::size_t bytes);
    void stage_padding(std::uint32_t payload_bytes);
    void write_finished(Batch& batch, Status status);
    void sync_finished(Batch& batch, Status status);
    void batch_finished(Batch& batch, Status status);
    void complete_ready();
    void prewrite_start();
    void prewrite_finished(Status status);
    void poison(Status status);
    void release_all(std::vector<BufferRelease*>& releases, Status status);

    Io& io_;
    Clock& clock_;
    LogOptions options_;
    int dir_fd_;
    std::map<std::uint32_t, SegmentPin> segments_;
    std::uint32_t tail_segment_ = 0;
    std::uint32_t tail_offset_ = 0;
    std::uint32_t next_segment_id_ = 1;
    std::atomic<Lsn> durable_{0};
    Status failed_ = Status::ok;

    // The staged batch.
    std::vector<std::byte> staging_;
    std::vector<Piece> pieces_;
    std::vector<BufferRelease*> releases_;
    std::uint64_t staged_bytes_ = 0;
    bool created_segment_ = false;

    std::deque<std::unique_ptr<Batch>> inflight_;  // Oldest first.
    std::unique_ptr<PrewriteOp> prewrite_;
    std::uint64_t flush_seq_ = 0;
    std::vector<SegmentPin> stale_sync_;  // Former tails whose sync_fds close when idle.
    std::vector<int> spare_sync_fds_;
    std::uint64_t prewrites_ = 0;
    std::uint64_t prewrite_waits_ = 0;
    std::uint64_t prewrite_failures_ = 0;

    // The next segment's file, created ahead of time through Io (openat + fallocate with
    // KEEP_SIZE) alongside a flush, so that rotation does not block on the file system.
    int spare_fd_ = -1;
    std::uint32_t spare_id_ = 0;
    std::uint32_t spare_tried_id_ = 0;
    std::uint64_t blocking_creates_ = 0;
};

}  // namespace rp::storage
