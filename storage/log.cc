#include "storage/log.h"

#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/limits.h"

namespace rp::storage {

namespace {
constexpr unsigned iov_per_write_max = IOV_MAX;
constexpr std::uint64_t bytes_per_write_max = 1u << 30;
const std::byte zeros[8] = {};
// The source of pre-write zeros: one block, repeated in the iovecs.
constexpr std::size_t zero_block_bytes = 64 * 1024;
alignas(4096) const std::byte zero_block[zero_block_bytes] = {};
constexpr std::uint32_t prewrite_align = 4096;
constexpr std::uint32_t seal_bytes = record_bytes(8);
}  // namespace

SegmentFile::~SegmentFile() {
    close_sync_fds();
    if (fd >= 0) ::close(fd);
}

void SegmentFile::close_sync_fds() {
    for (int f : sync_fds) ::close(f);
    sync_fds.clear();
}

struct Log::WriteOp final : IoCompletion {
    Log* log = nullptr;
    Batch* batch = nullptr;  // Or nullptr for a pre-write.
    int fd = -1;
    std::vector<iovec> iov;
    std::size_t first = 0;
    std::uint64_t offset = 0;
    std::uint64_t remaining = 0;

    void submit() {
        const auto count = static_cast<unsigned>(iov.size() - first);
        log->io_.writev(fd, iov.data() + first, count, offset, *this);
    }
    void io_done(Status status, std::uint32_t bytes) override {
        if (status != Status::ok || (bytes == 0 && remaining > 0) || bytes > remaining) {
            finished(status != Status::ok ? status : Status::io);
            return;
        }
        // A short write: skip what was written and submit the rest.
        remaining -= bytes;
        offset += bytes;
        std::size_t left = bytes;
        while (left > 0) {
            iovec& v = iov[first];
            if (left >= v.iov_len) {
                left -= v.iov_len;
                ++first;
            } else {
                v.iov_base = static_cast<char*>(v.iov_base) + left;
                v.iov_len -= left;
                left = 0;
            }
        }
        if (remaining == 0) {
            finished(Status::ok);
        } else {
            submit();
        }
    }
    void finished(Status status) {
        if (batch) {
            log->write_finished(*batch, status);
        } else {
            log->prewrite_finished(status);
        }
    }
};

struct Log::SyncOp final : IoCompletion {
    Log* log = nullptr;
    Batch* batch = nullptr;  // Or nullptr for a pre-write.
    void io_done(Status status, std::uint32_t) override {
        if (batch) {
            log->sync_finished(*batch, status);
        } else {
            log->prewrite_finished(status);
        }
    }
};

// Zeros written ahead of the tail, then fdatasync: a later batch's fdatasync overwrites
// blocks that exist, with no size or extent change to commit. Holds a pin on the segment.
struct Log::PrewriteOp {
    SegmentPin segment;
    std::uint32_t from = 0, to = 0;
    WriteOp write;
    SyncOp sync;
    bool syncing = false;
};

// Creates the next segment's file: openat, then fallocate (KEEP_SIZE, so an unused spare is
// an empty file, which recovery removes like a segment whose header never reached the disk).
// Then opens the extra descriptions its syncs will use (without them the segment gets one
// batch in flight at a time and no pre-write).
struct Log::SpareOp final : IoCompletion {
    Log* log = nullptr;
    std::string name;
    std::uint32_t id = 0;
    int fd = -1;
    std::vector<int> sync_fds;
    bool opened = false;
    bool allocated = false;
    bool done = false;
    void io_done(Status status, std::uint32_t bytes) override {
        if (!opened && status == Status::ok) {
            opened = true;
            fd = static_cast<int>(bytes);
            log->io_.fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, log->options_.segment_bytes, *this);
            return;
        }
        if (opened && !allocated) {
            allocated = true;  // A failed fallocate still leaves a usable file (writes allocate).
        } else if (opened && status == Status::ok) {
            sync_fds.push_back(static_cast<int>(bytes));
        } else if (opened) {
            // A failed extra open: none of them (the segment then syncs one batch at a time).
            for (int f : sync_fds) ::close(f);
            sync_fds.clear();
            finish();
            return;
        }
        if (opened && sync_fds.size() < log->sync_fds_wanted()) {
            log->io_.openat(log->dir_fd_, name.c_str(), O_RDWR | O_CLOEXEC, 0, *this);
            return;
        }
        finish();
    }
    void finish() {
        done = true;
        log->complete_ready();
    }
};

struct Log::Batch {
    std::vector<std::byte> staging;
    std::vector<Piece> pieces;
    std::vector<BufferRelease*> releases;
    Lsn end = 0;
    std::uint32_t segment = 0;  // The one segment it writes when it may share the disk, else 0.
    bool dir_sync = false;
    std::vector<std::unique_ptr<WriteOp>> writes;
    std::vector<std::unique_ptr<SyncOp>> syncs;
    std::vector<int> sync_fds;
    unsigned outstanding = 0;
    Status status = Status::ok;
    FlushDone* done = nullptr;
    std::unique_ptr<SpareOp> spare;
    bool chain_done = false;  // Writes and syncs finished (status holds the result).
};

Log::Log(Io& io, Clock& clock, LogOptions options, int dir_fd)
    : io_(io), clock_(clock), options_(std::move(options)), dir_fd_(dir_fd) {
    RP_ASSERT(options_.segment_bytes >= limits::segment_bytes_min);
    RP_ASSERT(options_.segment_bytes <= limits::segment_bytes_max - 1);
    RP_ASSERT(options_.batches_inflight_max >= 1);
    RP_ASSERT(options_.batches_inflight_max <= limits::store_batches_inflight_max);
}

Log::~Log() {
    // Batches may still be in flight after a simulated crash dropped their completions.
    if (spare_fd_ >= 0) ::close(spare_fd_);  // Its empty file is removed at the next open.
    for (int f : spare_sync_fds_) ::close(f);
}

void Log::adopt(std::map<std::uint32_t, SegmentPin> segments, Lsn tail, std::uint32_t next_segment_id) {
    RP_ASSERT(segments_.empty());
    segments_ = std::move(segments);
    tail_segment_ = lsn_segment(tail);
    tail_offset_ = lsn_offset(tail);
    next_segment_id_ = std::max(next_segment_id, tail_segment_ + 1);
    if (tail_segment_ != 0) RP_ASSERT(segments_.count(tail_segment_) == 1);
    if (tail_segment_ != 0) open_sync_fds_blocking(*segments_[tail_segment_]);  // Start-up.
    durable_.store(tail, std::memory_order_release);
}

unsigned Log::sync_fds_wanted() const {
    RP_ASSERT(options_.batches_inflight_max >= 1);
    return options_.batches_inflight_max - 1 + (options_.prewrite_bytes > 0 ? 1u : 0u);
}

// Blocking: start-up, or a rotation that already took the blocking path. Without all of them
// the segment runs one batch at a time and is not pre-written.
void Log::open_sync_fds_blocking(SegmentFile& segment) {
    if (options_.dir.empty()) return;
    const std::string name = segment_file_name(segment.id);
    while (segment.sync_fds.size() < sync_fds_wanted()) {
        const int f = ::openat(dir_fd_, name.c_str(), O_RDWR | O_CLOEXEC);
        if (f < 0) {
            segment.close_sync_fds();
            return;
        }
        segment.sync_fds.push_back(f);
    }
}

// Former tail segments keep their extra descriptions until nothing in flight can use them.
void Log::close_stale_sync_fds() {
    if (!inflight_.empty()) return;
    for (auto it = stale_sync_.begin(); it != stale_sync_.end();) {
        SegmentFile& seg = **it;
        if (seg.id == tail_segment_) {
            it = stale_sync_.erase(it);  // Tail again after a rollback: keep them.
        } else if (prewrite_ && prewrite_->segment.get() == &seg) {
            ++it;
        } else {
            seg.close_sync_fds();
            it = stale_sync_.erase(it);
        }
    }
}

std::uint32_t Log::chunk_bytes_max() const {
    // bounds: segment_bytes >= 1 MiB, far above the headers subtracted here.
    const std::uint32_t room =
        options_.segment_bytes - segment_header_bytes - record_header_bytes - 8 - seal_bytes;
    return std::min(room, limits::body_chunk_bytes_max);
}

SegmentPin Log::segment(std::uint32_t id) const {
    auto it = segments_.find(id);
    return it == segments_.end() ? nullptr : it->second;
}

Status Log::rotate() {
    const std::uint32_t id = next_segment_id_;
    int fd = -1;
    std::vector<int> sync_fds;
    bool blocking = false;
    if (spare_fd_ >= 0 && spare_id_ == id) {
        fd = spare_fd_;
        spare_fd_ = -1;
        sync_fds.swap(spare_sync_fds_);
    } else {
        if (spare_fd_ >= 0) ::close(spare_fd_);  // For another id (after a rollback).
        for (int f : spare_sync_fds_) ::close(f);
        spare_sync_fds_.clear();
        spare_fd_ = -1;
        blocking = true;
        // No spare ready: a blocking create, counted (a new store's first segment, or a
        // segment filled faster than one openat).
        ++blocking_creates_;
        const std::string path = options_.dir + "/" + segment_file_name(id);
        fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
        if (fd < 0 && errno == EEXIST) {
            // The spare being created for this id (or a leftover one): empty, so take it.
            fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
            struct stat st {};
            if (fd >= 0 && (::fstat(fd, &st) != 0 || st.st_size != 0)) {
                ::close(fd);
                return Status::exists;
            }
        }
        if (fd < 0) return status_from_errno(errno);
    }
    ++next_segment_id_;
    if (tail_segment_ != 0) {
        // Seal the full segment: without this record at its end, recovery treats the segment's
        // tail as lost and everything after it as never durable (a batch spanning a rotation
        // may reach one file and not the other).
        std::string payload;
        encode(payload, IdOnly{id});
        RecordHeader h;
        h.type = static_cast<std::uint16_t>(RecordType::segment_seal);
        h.payload_bytes = static_cast<std::uint32_t>(payload.size());
        h.durable_hint = durable();
        record_seal(h, as_bytes(payload));
        stage_copy(&h, sizeof h);
        stage_copy(payload.data(), payload.size());
        stage_padding(h.payload_bytes);
        RP_ASSERT(tail_offset_ <= options_.segment_bytes);
        segments_[tail_segment_]->bytes = tail_offset_;
        stale_sync_.push_back(segments_[tail_segment_]);
    }
    segments_[id] = std::make_shared<SegmentFile>(id, fd);
    segments_[id]->sync_fds = std::move(sync_fds);
    if (blocking) open_sync_fds_blocking(*segments_[id]);
    tail_segment_ = id;
    tail_offset_ = 0;
    const SegmentHeader header = segment_header_make(options_.shard, id, clock_.wall_seconds());
    stage_copy(&header, sizeof header);
    created_segment_ = true;
    return Status::ok;
}

Status Log::reserve(std::uint32_t bytes) {
    if (tail_segment_ == 0) {
        if (Status s = rotate(); s != Status::ok) return s;
    }
    // Room is kept for the seal record that ends every full segment.
    // bounds: tail_offset_ < segment_bytes < 2^32 - 1 and bytes <= 64 MiB + 56, in 64 bits.
    const std::uint64_t need = std::uint64_t{bytes} + seal_bytes;
    if (tail_offset_ + need > options_.segment_bytes) {
        if (tail_offset_ == segment_header_bytes) return Status::too_big;
        if (Status s = rotate(); s != Status::ok) return s;
        if (tail_offset_ + need > options_.segment_bytes) return Status::too_big;
    }
    return Status::ok;
}

void Log::stage_copy(const void* data, std::size_t bytes) {
    const std::size_t at = staging_.size();
    staging_.resize(at + bytes);
    std::memcpy(staging_.data() + at, data, bytes);
    Piece* last = pieces_.empty() ? nullptr : &pieces_.back();
    if (last && last->external == nullptr && last->segment_id == tail_segment_ &&
        last->staging_offset + last->bytes == at) {
        last->bytes += bytes;
    } else {
        pieces_.push_back({tail_segment_, nullptr, at, bytes});
    }
    tail_offset_ += static_cast<std::uint32_t>(bytes);
    staged_bytes_ += bytes;
}

void Log::stage_external(const void* data, std::size_t bytes) {
    pieces_.push_back({tail_segment_, data, 0, bytes});
    tail_offset_ += static_cast<std::uint32_t>(bytes);
}

void Log::stage_padding(std::uint32_t payload_bytes) {
    const std::uint32_t pad = record_bytes(payload_bytes) - record_header_bytes - payload_bytes;
    if (pad > 0) stage_copy(zeros, pad);
}

Result<Lsn> Log::append(RecordType type, std::uint64_t txn, std::uint64_t scope,
                        std::span<const std::byte> payload) {
    if (failed_ != Status::ok) return failed_;
    if (payload.size() > limits::record_payload_bytes_max) return Status::too_big;
    const auto payload_bytes = static_cast<std::uint32_t>(payload.size());
    const std::uint32_t bytes = record_bytes(payload_bytes);
    if (staged_bytes_ + bytes > limits::store_staging_bytes_max) return Status::full;
    if (Status s = reserve(bytes); s != Status::ok) return s;
    RecordHeader h;
    h.type = static_cast<std::uint16_t>(type);
    h.payload_bytes = payload_bytes;
    h.txn = txn;
    h.scope = scope;
    h.durable_hint = durable();
    record_seal(h, payload);
    const Lsn at = tail();
    stage_copy(&h, sizeof h);
    if (!payload.empty()) stage_copy(payload.data(), payload.size());
    stage_padding(payload_bytes);
    RP_ASSERT(tail_offset_ % limits::record_alignment == 0);
    return at;
}

Result<Extent> Log::append_chunk(std::uint64_t scope, const iovec* parts, unsigned part_count,
                                 bool zero_copy) {
    if (failed_ != Status::ok) return failed_;
    std::uint64_t total = 0;
    for (unsigned i = 0; i < part_count; ++i) total += parts[i].iov_len;
    if (total > chunk_bytes_max()) return Status::too_big;
    const auto payload_bytes = static_cast<std::uint32_t>(total);
    const std::uint32_t bytes = record_bytes(payload_bytes);
    const std::uint64_t copied = zero_copy ? record_header_bytes + 8 : bytes;
    if (staged_bytes_ + copied > limits::store_staging_bytes_max) return Status::full;
    if (pieces_.size() + part_count + 3 > limits::store_iovecs_per_batch_max) return Status::full;
    if (Status s = reserve(bytes); s != Status::ok) return s;
    RecordHeader h;
    h.type = static_cast<std::uint16_t>(RecordType::body_chunk);
    h.payload_bytes = payload_bytes;
    h.scope = scope;
    h.durable_hint = durable();
    record_seal(h, parts, part_count);
    const Extent extent{tail_segment_, tail_offset_, payload_bytes};
    stage_copy(&h, sizeof h);
    for (unsigned i = 0; i < part_count; ++i) {
        if (parts[i].iov_len == 0) continue;
        if (zero_copy) {
            stage_external(parts[i].iov_base, parts[i].iov_len);
        } else {
            stage_copy(parts[i].iov_base, parts[i].iov_len);
        }
    }
    stage_padding(payload_bytes);
    return extent;
}

Log::Mark Log::mark() const {
    return {pieces_.size(), staging_.size(), releases_.size(), staged_bytes_, tail_segment_,
            tail_offset_, next_segment_id_, created_segment_};
}

void Log::rollback(const Mark& m) {
    RP_ASSERT(pieces_.size() >= m.pieces);
    pieces_.resize(m.pieces);
    staging_.resize(m.staging);
    releases_.resize(m.releases);
    staged_bytes_ = m.staged_bytes;
    for (std::uint32_t id = m.next_segment_id; id < next_segment_id_; ++id) {
        segments_.erase(id);
        const std::string path = options_.dir + "/" + segment_file_name(id);
        ::unlink(path.c_str());
    }
    next_segment_id_ = m.next_segment_id;
    tail_segment_ = m.tail_segment;
    tail_offset_ = m.tail_offset;
    created_segment_ = m.created_segment;
    if (tail_segment_ != 0) segments_[tail_segment_]->bytes = tail_offset_;
}

Status Log::flush(FlushDone& done) {
    if (failed_ != Status::ok) return failed_;
    if (inflight_.size() >= options_.batches_inflight_max) return Status::busy;
    if (pieces_.empty()) return Status::again;
    const std::uint32_t prewrite_reach =
        !prewrite_ ? 0 : prewrite_->segment->id == tail_segment_ ? tail_offset_ : prewrite_->segment->bytes;
    if (prewrite_ && prewrite_reach > prewrite_->from) {
        // The batch would overlap the zeros being written: it goes when they are synced.
        ++prewrite_waits_;
        return Status::busy;
    }
    // Batches run side by side only within the tail segment, each syncing through its own
    // description; a batch that seals a segment, creates one, or finds no descriptions runs
    // alone (through the main descriptors).
    const SegmentFile& tail_file = *segments_[tail_segment_];
    const bool shared = pieces_.front().segment_id == tail_segment_ && !created_segment_ &&
                        tail_file.sync_fds.size() == sync_fds_wanted();
    for (const auto& other : inflight_) {
        if (!shared || other->segment != tail_segment_) return Status::busy;
        // After a failure nothing more goes out; the log is poisoned when it completes.
        if (other->status != Status::ok) return Status::busy;
    }
    auto owned = std::make_unique<Batch>();
    Batch* b = owned.get();
    b->segment = shared ? tail_segment_ : 0;
    // bounds: the slot is below batches_inflight_max; in-flight batches are consecutive in
    // flush order, so at most that many, and they all have distinct slots.
    const auto slot = static_cast<unsigned>(flush_seq_++ % options_.batches_inflight_max);
    b->staging.swap(staging_);
    b->pieces.swap(pieces_);
    b->releases.swap(releases_);
    b->end = tail();
    b->dir_sync = created_segment_;
    b->done = &done;
    created_segment_ = false;
    staged_bytes_ = 0;
    segments_[tail_segment_]->bytes = tail_offset_;
    RP_ASSERT(inflight_.empty() || inflight_.back()->end <= b->end);

    // One writev per segment touched; a new one only past IOV_MAX or 1 GiB. Each segment's
    // pieces are contiguous in the file because staging only appends at the tail.
    std::uint64_t file_offset = 0;
    std::uint32_t segment_id = 0;
    for (const Piece& p : b->pieces) {
        WriteOp* op = b->writes.empty() ? nullptr : b->writes.back().get();
        if (!op || p.segment_id != segment_id || op->iov.size() >= iov_per_write_max ||
            op->remaining + p.bytes > bytes_per_write_max) {
            if (p.segment_id != segment_id) {
                // The first piece of a segment starts at its tail before this batch.
                file_offset = segments_[p.segment_id]->bytes;
                std::uint64_t seg_bytes = 0;
                for (const Piece& q : b->pieces) {
                    if (q.segment_id == p.segment_id) seg_bytes += q.bytes;
                }
                file_offset -= seg_bytes;
                segment_id = p.segment_id;
                const SegmentFile& file = *segments_[segment_id];
                b->sync_fds.push_back(shared && slot > 0 ? file.sync_fds[slot - 1] : file.fd);
            }
            auto fresh = std::make_unique<WriteOp>();
            fresh->log = this;
            fresh->batch = b;
            fresh->fd = segments_[segment_id]->fd;
            fresh->offset = file_offset;
            op = fresh.get();
            b->writes.push_back(std::move(fresh));
        }
        void* base = p.external ? const_cast<void*>(p.external) : b->staging.data() + p.staging_offset;
        op->iov.push_back({base, p.bytes});
        op->remaining += p.bytes;
        file_offset += p.bytes;
    }
    b->outstanding = static_cast<unsigned>(b->writes.size());
    if (spare_fd_ < 0 && spare_tried_id_ != next_segment_id_ && !options_.dir.empty()) {
        // Once per segment id: a failure falls back to a blocking create at rotation.
        spare_tried_id_ = next_segment_id_;
        b->spare = std::make_unique<SpareOp>();
        b->spare->log = this;
        b->spare->id = next_segment_id_;
        b->spare->name = segment_file_name(next_segment_id_);
    }
    std::uint64_t batch_bytes = 0;  // Copied and zero-copy pieces alike (for the pre-write).
    for (const auto& op : b->writes) batch_bytes += op->remaining;
    inflight_.push_back(std::move(owned));
    for (auto& op : b->writes) op->submit();
    if (SpareOp* spare = b->spare.get()) {
        io_.openat(dir_fd_, spare->name.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0640, *spare);
    }
    // A bandwidth-bound load (batches a quarter of the pre-write or bigger) gains nothing from
    // zeros written ahead: they would only double its disk writes.
    if (options_.prewrite_bytes > 0 && batch_bytes < options_.prewrite_bytes / 4) prewrite_start();
    return Status::ok;
}

void Log::write_finished(Batch& b, Status status) {
    if (status != Status::ok && b.status == Status::ok) b.status = status;
    RP_ASSERT(b.outstanding > 0);
    if (--b.outstanding > 0) return;
    release_all(b.releases, b.status);
    if (b.status != Status::ok) {
        batch_finished(b, b.status);
        return;
    }
    // Submitted only now, so that each fdatasync covers every write of its batch.
    for (std::size_t i = 0; i < b.sync_fds.size(); ++i) {
        b.syncs.push_back(std::make_unique<SyncOp>());
        b.syncs.back()->log = this;
        b.syncs.back()->batch = &b;
    }
    if (b.dir_sync) {
        b.syncs.push_back(std::make_unique<SyncOp>());
        b.syncs.back()->log = this;
        b.syncs.back()->batch = &b;
    }
    b.outstanding = static_cast<unsigned>(b.syncs.size());
    for (std::size_t i = 0; i < b.sync_fds.size(); ++i) io_.fdatasync(b.sync_fds[i], *b.syncs[i]);
    if (b.dir_sync) io_.fsync(dir_fd_, *b.syncs.back());
}

void Log::sync_finished(Batch& b, Status status) {
    if (status != Status::ok && b.status == Status::ok) b.status = status;
    RP_ASSERT(b.outstanding > 0);
    if (--b.outstanding > 0) return;
    batch_finished(b, b.status);
}

void Log::batch_finished(Batch& b, Status status) {
    b.status = status;
    b.chain_done = true;
    complete_ready();
}

// Completes finished batches in flush order: a batch is durable only once every batch before
// it is, so a later batch that finished first waits for the earlier ones.
void Log::complete_ready() {
    while (!inflight_.empty()) {
        Batch& b = *inflight_.front();
        if (!b.chain_done) return;
        if (b.spare && !b.spare->done) return;  // Completes with the spare's creation.
        std::unique_ptr<Batch> owned = std::move(inflight_.front());
        inflight_.pop_front();
        if (SpareOp* spare = b.spare.get(); spare && spare->fd >= 0) {
            if (spare_fd_ < 0 && spare->id == next_segment_id_) {
                spare_fd_ = spare->fd;
                spare_id_ = spare->id;
                spare_sync_fds_.swap(spare->sync_fds);
            } else {
                ::close(spare->fd);  // Rotation already created that segment the blocking way.
                for (int f : spare->sync_fds) ::close(f);
            }
        }
        // An earlier batch or a pre-write failed: nothing after it may be called durable
        // (recovery may cut the log at the earlier damage), whatever this batch's own status.
        Status status = b.status;
        if (status == Status::ok && failed_ != Status::ok) status = failed_;
        if (status == Status::ok) {
            RP_ASSERT(b.end >= durable());
            durable_.store(b.end, std::memory_order_release);
        } else {
            poison(status);
        }
        close_stale_sync_fds();
        b.done->flush_done(status);
    }
}

// After a failed write or fdatasync the page cache no longer tells what is on disk
// (fsyncgate): stop writing; recovery at reopen decides from the disk alone.
void Log::poison(Status status) {
    RP_ASSERT(status != Status::ok);
    if (failed_ == Status::ok) failed_ = status;
    release_all(releases_, status);
}

void Log::prewrite_start() {
    RP_ASSERT(options_.prewrite_bytes > 0);
    if (prewrite_ || prewrite_failures_ > 0 || failed_ != Status::ok || tail_segment_ == 0) return;
    const SegmentPin& seg = segments_[tail_segment_];
    if (seg->sync_fds.size() != sync_fds_wanted()) return;  // No description of its own.
    // Start past everything staged (in flight or not), so that no batch in flight overlaps.
    // bounds: offsets are below segment_bytes < 2^32; sums are computed in 64 bits.
    if (seg->written >= std::uint64_t{tail_offset_} + options_.prewrite_bytes / 2) return;
    std::uint64_t from = std::max<std::uint64_t>(seg->written, tail_offset_);
    from = (from + prewrite_align - 1) / prewrite_align * prewrite_align;
    const std::uint64_t to = std::min<std::uint64_t>(from + options_.prewrite_bytes, options_.segment_bytes);
    if (from >= to) return;
    prewrite_ = std::make_unique<PrewriteOp>();
    PrewriteOp& op = *prewrite_;
    op.segment = seg;
    op.from = static_cast<std::uint32_t>(from);
    op.to = static_cast<std::uint32_t>(to);
    op.write.log = this;
    op.write.fd = seg->fd;  // Any description writes the file; the sync needs its own.
    op.write.offset = from;
    op.write.remaining = to - from;
    for (std::uint64_t at = from; at < to; at += zero_block_bytes) {
        const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(zero_block_bytes, to - at));
        op.write.iov.push_back({const_cast<std::byte*>(zero_block), n});
    }
    op.sync.log = this;
    ++prewrites_;
    op.write.submit();
}

void Log::prewrite_finished(Status status) {
    RP_ASSERT(prewrite_ != nullptr);
    PrewriteOp& op = *prewrite_;
    if (status == Status::ok && !op.syncing) {
        op.syncing = true;
        io_.fdatasync(op.segment->sync_fds.back(), op.sync);
        return;
    }
    if (status == Status::ok) {
        op.segment->written = std::max(op.segment->written, op.to);
    } else {
        // Zeros only: no record was in these pages. The batches' own syncs (through their own
        // descriptions) still see any write-back error of the file. Stop pre-writing.
        ++prewrite_failures_;
    }
    prewrite_.reset();
    close_stale_sync_fds();
}

void Log::release_all(std::vector<BufferRelease*>& releases, Status status) {
    std::vector<BufferRelease*> list;
    list.swap(releases);
    for (BufferRelease* r : list) r->buffer_released(status);
}

Status Log::retire(std::uint32_t id) {
    RP_ASSERT(id != tail_segment_);
    auto it = segments_.find(id);
    if (it == segments_.end()) return Status::not_found;
    if (it->second.use_count() > 1) return Status::busy;
    segments_.erase(it);
    return Status::ok;
}

}  // namespace rp::storage
