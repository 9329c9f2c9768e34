#include "storage/log.h"

#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace rp::storage {

namespace {
constexpr unsigned iov_per_write_max = IOV_MAX;
constexpr std::uint64_t bytes_per_write_max = 1u << 30;
const std::byte zeros[8] = {};
constexpr std::uint32_t seal_bytes = record_bytes(8);
}  // namespace

SegmentFile::~SegmentFile() {
    if (fd >= 0) ::close(fd);
}

struct Log::WriteOp final : IoCompletion {
    Log* log = nullptr;
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
            log->write_finished(status != Status::ok ? status : Status::io);
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
            log->write_finished(Status::ok);
        } else {
            submit();
        }
    }
};

struct Log::SyncOp final : IoCompletion {
    Log* log = nullptr;
    void io_done(Status status, std::uint32_t) override { log->sync_finished(status); }
};

// Creates the next segment's file: openat, then fallocate (KEEP_SIZE, so an unused spare is
// an empty file, which recovery removes like a segment whose header never reached the disk).
struct Log::SpareOp final : IoCompletion {
    Log* log = nullptr;
    std::string name;
    std::uint32_t id = 0;
    int fd = -1;
    bool opened = false;
    bool done = false;
    void io_done(Status status, std::uint32_t bytes) override {
        if (!opened && status == Status::ok) {
            opened = true;
            fd = static_cast<int>(bytes);
            log->io_.fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, log->options_.segment_bytes, *this);
            return;
        }
        // A failed fallocate still leaves a usable file (the writes allocate).
        done = true;
        log->spare_finished();
    }
};

struct Log::Batch {
    std::vector<std::byte> staging;
    std::vector<Piece> pieces;
    std::vector<BufferRelease*> releases;
    Lsn end = 0;
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
}

Log::~Log() {
    if (spare_fd_ >= 0) ::close(spare_fd_);  // Its empty file is removed at the next open.
}

void Log::adopt(std::map<std::uint32_t, SegmentPin> segments, Lsn tail, std::uint32_t next_segment_id) {
    RP_ASSERT(segments_.empty());
    segments_ = std::move(segments);
    tail_segment_ = lsn_segment(tail);
    tail_offset_ = lsn_offset(tail);
    next_segment_id_ = std::max(next_segment_id, tail_segment_ + 1);
    if (tail_segment_ != 0) RP_ASSERT(segments_.count(tail_segment_) == 1);
    durable_.store(tail, std::memory_order_release);
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
    if (spare_fd_ >= 0 && spare_id_ == id) {
        fd = spare_fd_;
        spare_fd_ = -1;
    } else {
        if (spare_fd_ >= 0) ::close(spare_fd_);  // For another id (after a rollback).
        spare_fd_ = -1;
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
    }
    segments_[id] = std::make_shared<SegmentFile>(id, fd);
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
    if (inflight_) return Status::busy;
    if (pieces_.empty()) return Status::again;
    auto b = std::make_unique<Batch>();
    b->staging.swap(staging_);
    b->pieces.swap(pieces_);
    b->releases.swap(releases_);
    b->end = tail();
    b->dir_sync = created_segment_;
    b->done = &done;
    created_segment_ = false;
    staged_bytes_ = 0;
    segments_[tail_segment_]->bytes = tail_offset_;

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
                b->sync_fds.push_back(segments_[segment_id]->fd);
            }
            auto fresh = std::make_unique<WriteOp>();
            fresh->log = this;
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
    inflight_ = std::move(b);
    for (auto& op : inflight_->writes) op->submit();
    if (SpareOp* spare = inflight_->spare.get()) {
        io_.openat(dir_fd_, spare->name.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0640, *spare);
    }
    return Status::ok;
}

void Log::write_finished(Status status) {
    Batch& b = *inflight_;
    if (status != Status::ok && b.status == Status::ok) b.status = status;
    RP_ASSERT(b.outstanding > 0);
    if (--b.outstanding > 0) return;
    release_all(b.releases, b.status);
    if (b.status != Status::ok) {
        batch_finished(b.status);
        return;
    }
    for (std::size_t i = 0; i < b.sync_fds.size(); ++i) {
        b.syncs.push_back(std::make_unique<SyncOp>());
        b.syncs.back()->log = this;
    }
    if (b.dir_sync) {
        b.syncs.push_back(std::make_unique<SyncOp>());
        b.syncs.back()->log = this;
    }
    b.outstanding = static_cast<unsigned>(b.syncs.size());
    for (std::size_t i = 0; i < b.sync_fds.size(); ++i) io_.fdatasync(b.sync_fds[i], *b.syncs[i]);
    if (b.dir_sync) io_.fsync(dir_fd_, *b.syncs.back());
}

void Log::sync_finished(Status status) {
    Batch& b = *inflight_;
    if (status != Status::ok && b.status == Status::ok) b.status = status;
    RP_ASSERT(b.outstanding > 0);
    if (--b.outstanding > 0) return;
    batch_finished(b.status);
}

void Log::batch_finished(Status status) {
    Batch& b = *inflight_;
    b.status = status;
    b.chain_done = true;
    if (b.spare && !b.spare->done) return;  // Completes with the spare's creation.
    batch_complete();
}

void Log::spare_finished() {
    Batch& b = *inflight_;
    RP_ASSERT(b.spare && b.spare->done);
    if (b.chain_done) batch_complete();
}

void Log::batch_complete() {
    RP_ASSERT(inflight_->chain_done);
    const Status status = inflight_->status;
    if (SpareOp* spare = inflight_->spare.get(); spare && spare->fd >= 0) {
        if (spare_fd_ < 0 && spare->id == next_segment_id_) {
            spare_fd_ = spare->fd;
            spare_id_ = spare->id;
        } else {
            ::close(spare->fd);  // Rotation already created that segment the blocking way.
        }
    }
    FlushDone* done = inflight_->done;
    if (status == Status::ok) {
        RP_ASSERT(inflight_->end >= durable());
        durable_.store(inflight_->end, std::memory_order_release);
    } else {
        // After a failed write or fdatasync the page cache no longer tells what is on disk
        // (fsyncgate): stop writing; recovery at reopen decides from the disk alone.
        failed_ = status;
        release_all(releases_, status);
    }
    inflight_.reset();
    done->flush_done(status);
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
