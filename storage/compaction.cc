// storage/compaction.cc: online snapshots, body relocation and segment retirement.
//
// Compaction moves live bodies out of mostly-dead sealed segments in bounded steps
// (compact_step reads at most a budget of bytes through Io, then stages them at the tail as
// new chunks plus a body_move record), so appends are never stalled for long. A segment is
// retired (unlinked) only when it holds no live body, both kept snapshots cover it (its index
// records are no longer needed), no open body writer has chunks in it, and no reader pins it.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <deque>

#include "storage/index_snapshot.h"
#include "storage/mail_store.h"
#include "storage/store_jobs.h"

namespace rp::storage {

// ---- snapshots ----

Status MailStore::snapshot(SnapshotDone& done) {
    if (Status s = writable(); s != Status::ok) return s;
    if (snapshot_ || txn_explicit_ || log_->flushing() || log_->staged_bytes() != 0) return Status::busy;
    RP_ASSERT(log_->tail() == log_->durable() || log_->segments().empty());
    SnapshotMeta meta{log_->durable(), next_txn_id_, clock_.wall_seconds()};
    auto job = std::make_unique<SnapshotJob>();
    job->store = this;
    job->done = &done;
    job->lsn = meta.lsn;
    job->bytes = snapshot_encode(index_, meta, meta.written_at - options_.delivery_key_retention_s);
    snapshot_ = std::move(job);
    io_.openat(dir_fd_, snapshot_tmp_file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640, *snapshot_);
    return Status::ok;
}

void MailStore::snapshot_finished(Status status) {
    std::unique_ptr<SnapshotJob> job = std::move(snapshot_);
    if (status == Status::ok) {
        snapshot_prev_lsn_ = snapshot_lsn_;
        snapshot_lsn_ = job->lsn;
        snapshot_bytes_ = job->bytes.size();
        retire_segments();
    }
    SnapshotDone* done = job->done;
    job.reset();
    done->snapshot_done(status);
}

std::size_t MailStore::retire_segments() {
    if (options_.read_only) return 0;
    // Both snapshots must cover a segment: if the newest is damaged, the older still opens.
    const std::uint32_t covered = lsn_segment(std::min(snapshot_lsn_, snapshot_prev_lsn_));
    const std::uint32_t open_min = min_open_segment();
    std::vector<std::uint32_t> ids;
    for (const auto& [id, seg] : log_->segments()) {
        if (id >= covered || id >= open_min || id == log_->tail_segment()) break;
        auto live = index_.segment_live_bytes.find(id);
        if (live != index_.segment_live_bytes.end() && live->second != 0) continue;
        ids.push_back(id);
    }
    std::size_t count = 0;
    std::deque<std::string> names;
    for (std::uint32_t id : ids) {
        if (log_->retire(id) == Status::ok) {
            index_.segment_live_bytes.erase(id);
            names.push_back(segment_file_name(id));
            ++count;
        }
    }
    if (names.empty()) return 0;
    if (retire_) {
        // One in flight: queue behind it.
        for (auto& name : names) retire_->names.push_back(std::move(name));
        return count;
    }
    retire_ = std::make_unique<RetireJob>();
    retire_->store = this;
    retire_->names = std::move(names);
    retire_->submit();
    return count;
}

// ---- compaction ----

namespace {

struct Candidate {
    std::uint32_t id = 0;
    double live_ratio = 1.0;
};

}  // namespace

bool MailStore::compact_needed() const {
    for (const auto& [id, seg] : log_->segments()) {
        if (id == log_->tail_segment() || seg->bytes <= segment_header_bytes) continue;
        auto live = index_.segment_live_bytes.find(id);
        const std::uint64_t bytes = live == index_.segment_live_bytes.end() ? 0 : live->second;
        if (bytes == 0) continue;  // Retirement handles it.
        if (static_cast<double>(bytes) < options_.compact_live_ratio_max * (seg->bytes - segment_header_bytes)) {
            return true;
        }
    }
    return false;
}

Status MailStore::compact_step(std::uint64_t budget_bytes, CompactDone& done) {
    if (Status s = writable(); s != Status::ok) return s;
    if (compact_ || txn_explicit_) return Status::busy;
    Candidate best;
    for (const auto& [id, seg] : log_->segments()) {
        if (id == log_->tail_segment() || seg->bytes <= segment_header_bytes) continue;
        auto live = index_.segment_live_bytes.find(id);
        const std::uint64_t bytes = live == index_.segment_live_bytes.end() ? 0 : live->second;
        if (bytes == 0) continue;
        const double ratio = static_cast<double>(bytes) / (seg->bytes - segment_header_bytes);
        if (ratio < options_.compact_live_ratio_max && ratio < best.live_ratio) best = {id, ratio};
    }
    if (best.id == 0) return Status::again;
    auto job = std::make_unique<CompactJob>();
    job->store = this;
    job->done = &done;
    std::uint64_t taken = 0;
    for (const auto& [body_id, body] : index_.bodies) {
        if (taken >= budget_bytes) break;
        if (body.corrupt) continue;
        const bool here = std::any_of(body.extents.begin(), body.extents.end(),
                                      [&](const Extent& e) { return e.segment_id == best.id; });
        if (!here) continue;
        // Only bytes below the durable watermark may be read: a body relocated by the last
        // step may still be in flight (its extents change when staged). Reading it early used
        // to come back short (past the end of the file); in a pre-written segment it reads as
        // zeros and would be taken for damage.
        const bool written = std::all_of(body.extents.begin(), body.extents.end(), [&](const Extent& e) {
            return lsn_make(e.segment_id, e.offset + record_bytes(e.bytes)) <= log_->durable();
        });
        if (!written) continue;
        CompactJob::Item item{body_id, body.extents, {}};
        for (const Extent& e : body.extents) {
            auto read = std::make_unique<CompactJob::Read>();
            read->job = job.get();
            read->extent = e;
            read->pin = log_->segment(e.segment_id);
            if (!read->pin) return Status::corrupt;
            read->record.resize(record_header_bytes + e.bytes);
            item.reads.push_back(std::move(read));
        }
        taken += body.bytes;
        job->items.push_back(std::move(item));
    }
    if (job->items.empty()) return Status::again;
    for (auto& item : job->items) job->outstanding += static_cast<unsigned>(item.reads.size());
    RP_ASSERT(job->outstanding > 0);  // Every item has an extent in the victim segment.
    compact_ = std::move(job);
    for (auto& item : compact_->items) {
        for (auto& read : item.reads) {
            io_.read(read->pin->fd, read->record.data(), static_cast<std::uint32_t>(read->record.size()),
                     read->extent.offset, *read);
        }
    }
    return Status::ok;
}

void MailStore::compact_finished(Status, std::uint64_t) {
    std::unique_ptr<CompactJob> job = std::move(compact_);
    std::uint64_t moved = 0;
    Status result = writable();
    for (auto& item : job->items) {
        if (result != Status::ok) break;
        auto it = index_.bodies.find(item.body_id);
        // Dropped or moved while we read: nothing to do for this one.
        if (it == index_.bodies.end() || it->second.extents != item.extents) continue;
        std::string bytes;
        bool ok = true;
        for (auto& read : item.reads) {
            auto payload = read->status == Status::ok ? extent_verify(read->extent, read->record)
                                                      : Result<std::span<const std::byte>>(read->status);
            if (!payload) {
                ok = false;
                if (payload.status() == Status::corrupt) it->second.corrupt = true;
                break;
            }
            bytes.append(reinterpret_cast<const char*>(payload->data()), payload->size());
        }
        if (!ok) continue;
        if (op_begin(bytes.size() + 4096) != Status::ok) break;
        BodyDefine def{item.body_id, it->second.bytes, {}};
        const iovec part{bytes.data(), bytes.size()};
        const Log::Mark mark = log_->mark();
        Status s = Status::ok;
        for (std::uint64_t at = 0; at < bytes.size() && s == Status::ok;) {
            const std::uint64_t n = std::min<std::uint64_t>(log_->chunk_bytes_max(), bytes.size() - at);
            const iovec piece{static_cast<char*>(part.iov_base) + at, n};
            auto e = log_->append_chunk(scope_make(ScopeKind::body, item.body_id), &piece, 1, false);
            if (!e) s = e.status();
            if (e) def.extents.push_back(*e);
            at += n;
        }
        if (s != Status::ok) {
            log_->rollback(mark);
            result = s;
            break;
        }
        stage(RecordType::body_move, scope_make(ScopeKind::body, item.body_id), [&] {
            std::string out;
            encode(out, def);
            return out;
        }());
        if (Status e = op_end(); e != Status::ok) {
            result = e;
            break;
        }
        moved += bytes.size();
    }
    CompactDone* done = job->done;
    job.reset();
    done->compact_done(result, moved);
}

}  // namespace rp::storage
