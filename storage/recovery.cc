// storage/recovery.cc: MailStore::open. Loads the newest intact snapshot, replays the log
// after it, truncates a torn tail, and quarantines what damage in the middle touches.
//
// Start-up code: it uses plain blocking system calls (DESIGN.md allows it at start-up).
//
// Torn tail or damage in the middle? At the first bad record X, recovery looks further on for
// an intact record whose durable hint lies beyond X. Such a record was written after a
// successful fdatasync covering X, so X was durable and is damaged: report it, skip it,
// quarantine what it touches. Without such a record nothing from X on was ever acknowledged:
// it is a torn tail and is cut off (read-only opens just stop there).
#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <unordered_set>

#include "storage/index_snapshot.h"
#include "storage/mail_store.h"
#include "storage/store_jobs.h"

namespace rp::storage {

namespace {

struct Mapped {
    std::uint32_t id = 0;
    SegmentPin pin;
    const std::byte* data = nullptr;
    std::size_t bytes = 0;
    std::uint32_t end = 0;  // Where its records end (0: not scanned to the end).
    Mapped() = default;
    Mapped(const Mapped&) = delete;
    Mapped& operator=(const Mapped&) = delete;
    Mapped(Mapped&& o) noexcept
        : id(o.id), pin(std::move(o.pin)), data(o.data), bytes(o.bytes), end(o.end) {
        o.data = nullptr;
    }
    ~Mapped() {
        if (data) ::munmap(const_cast<std::byte*>(data), bytes);
    }
    std::span<const std::byte> span() const { return {data, data ? bytes : 0}; }
};

Result<std::vector<std::byte>> read_file(int dir_fd, const char* name) {
    const int fd = ::openat(dir_fd, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return status_from_errno(errno);
    std::vector<std::byte> out;
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
        ::close(fd);
        return Status::io;
    }
    out.resize(static_cast<std::size_t>(st.st_size));
    std::size_t got = 0;
    while (got < out.size()) {
        const ssize_t n = ::pread(fd, out.data() + got, out.size() - got, static_cast<off_t>(got));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        got += static_cast<std::size_t>(n);
    }
    ::close(fd);
    out.resize(got);
    return out;
}

}  // namespace

struct MailStore::Recovery {
    explicit Recovery(MailStore& owner) : store(owner) {}
    MailStore& store;
    std::vector<Mapped> segs;  // Sorted by id.
    Lsn tail = 0;
    bool torn = false;
    std::size_t torn_index = 0;
    std::uint64_t max_txn = 0;
    struct Pending {
        std::uint64_t txn = 0;
        bool tainted = false;
        std::vector<ScanItem> records;
    } pending;
    struct Range {
        std::uint32_t segment, from, to;
    };
    std::vector<Range> bad_ranges;

    void damage(std::uint32_t seg, std::uint32_t off, Status err, std::uint64_t scope, std::string what) {
        store.report_.damage.push_back({seg, off, err, scope, std::move(what)});
        quarantine(scope);
    }

    void quarantine(std::uint64_t scope) {
        MailboxIndex& index = store.index_;
        switch (scope_kind(scope)) {
            case ScopeKind::mailbox:
                if (Mailbox* box = index.mailbox(scope_id(scope))) box->quarantined = true;
                break;
            case ScopeKind::account: {
                auto it = index.accounts.find(scope_id(scope));
                if (it == index.accounts.end()) break;
                for (const auto& [name, id] : it->second.mailboxes) {
                    if (Mailbox* box = index.mailbox(id)) box->quarantined = true;
                }
                break;
            }
            case ScopeKind::body: {
                auto it = index.bodies.find(scope_id(scope));
                if (it != index.bodies.end()) it->second.corrupt = true;
                break;
            }
            default: break;
        }
    }

    // Is there an intact record after position (i, from) whose hint proves `bad` durable?
    bool proven_durable(std::size_t i, std::uint32_t from, Lsn bad) const {
        for (; i < segs.size(); ++i, from = segment_header_bytes) {
            SegmentScanner scan(segs[i].span(), from);
            while (scan.resync(scan.position())) {
                ScanItem item = scan.next();
                if (item.kind != ScanItem::Kind::record) break;
                if (item.header.durable_hint > bad) return true;
            }
        }
        return false;
    }

    void finish_txn(Lsn commit_end, const ScanItem& commit) {
        Commit c;
        const bool counted = decode(commit.payload, c) && c.record_count == pending.records.size();
        if (!counted || pending.tainted) {
            // Part of the transaction was lost: apply none of it. The damage itself was
            // reported where it was found; a count mismatch alone is reported here.
            for (const auto& r : pending.records) quarantine(r.header.scope);
            if (!pending.tainted) {
                damage(lsn_segment(commit_end), commit.offset, Status::corrupt, 0,
                       "transaction incomplete: record count mismatch");
            }
        } else {
            for (const auto& r : pending.records) {
                const auto type = static_cast<RecordType>(r.header.type);
                if (store.index_.apply(type, r.payload, commit_end) != Status::ok) {
                    damage(lsn_segment(commit_end), r.offset, Status::corrupt, r.header.scope,
                           std::string(record_type_name(type)) + " contradicts the index");
                }
                ++store.report_.records_replayed;
            }
        }
        pending = {};
    }

    void record(std::uint32_t seg, const ScanItem& item) {
        const auto type = static_cast<RecordType>(item.header.type);
        store.report_.bytes_replayed += item.next - item.offset;
        if (type == RecordType::body_chunk || type == RecordType::segment_seal) {
            ++store.report_.records_replayed;
            return;
        }
        if (item.header.txn == 0 || item.header.type >= static_cast<std::uint16_t>(RecordType::snap_state)) {
            damage(seg, item.offset, Status::corrupt, item.header.scope, "record outside a transaction");
            return;
        }
        max_txn = std::max(max_txn, item.header.txn);
        if (pending.txn != item.header.txn) {
            if (pending.txn != 0) ++store.report_.txns_discarded;  // Never committed.
            pending = {};
            pending.txn = item.header.txn;
        }
        if (type == RecordType::commit) {
            finish_txn(lsn_make(seg, item.next), item);
        } else {
            pending.records.push_back(item);
        }
    }

    // Replays segment i from `offset`. False when a torn tail ends the log here.
    bool replay_segment(std::size_t i, std::uint32_t offset) {
        const std::uint32_t seg = segs[i].id;
        SegmentScanner scan(segs[i].span(), offset);
        bool sealed = false;
        for (;;) {
            ScanItem item = scan.next();
            if (item.kind == ScanItem::Kind::end) {
                // A last record may end inside its padding: the tail is the padded end.
                // Zeros after it (a pre-written segment) are not part of the log.
                tail = lsn_make(seg, align8(scan.position()));
                segs[i].end = lsn_offset(tail);
                if (sealed || i + 1 == segs.size()) return true;
                // A full segment without its seal lost its tail: later segments hold nothing
                // durable unless a later record proves it.
                if (!proven_durable(i + 1, segment_header_bytes, tail)) {
                    torn = true;
                    torn_index = i;
                    for (std::size_t j = i + 1; j < segs.size(); ++j) store.report_.torn_bytes += segs[j].bytes;
                    return false;
                }
                damage(seg, scan.position(), Status::truncated, 0, "segment ends without its seal");
                return true;
            }
            if (item.kind == ScanItem::Kind::record) {
                sealed = item.header.type == static_cast<std::uint16_t>(RecordType::segment_seal);
                record(seg, item);
                continue;
            }
            const Lsn bad = lsn_make(seg, item.offset);
            const std::uint32_t resume = item.header_ok ? item.next : item.offset + 8;
            if (!proven_durable(i, resume, bad)) {
                torn = true;
                torn_index = i;
                tail = bad;
                store.report_.torn_bytes += scan.size() - item.offset;
                for (std::size_t j = i + 1; j < segs.size(); ++j) store.report_.torn_bytes += segs[j].bytes;
                return false;
            }
            pending.tainted = pending.txn != 0;
            if (item.header_ok) {
                damage(seg, item.offset, item.error, item.header.scope, "record checksum mismatch");
                bad_ranges.push_back({seg, item.offset, item.next});
            } else {
                scan.resync(resume);
                damage(seg, item.offset, item.error, 0, "unreadable bytes up to offset " +
                                                            std::to_string(scan.position()));
                bad_ranges.push_back({seg, item.offset, scan.position()});
            }
        }
    }

    Status replay(Lsn start) {
        std::size_t i = 0;
        while (i < segs.size() && segs[i].id < lsn_segment(start)) ++i;
        if (start != 0 && (i == segs.size() || segs[i].id != lsn_segment(start))) {
            store.report_.damage.push_back({lsn_segment(start), lsn_offset(start), Status::not_found,
                                            0, "segment of the snapshot position is missing"});
            return Status::corrupt;
        }
        if (start == 0 && !segs.empty() && segs.front().id != 1) {
            store.report_.damage.push_back({segs.front().id, 0, Status::not_found, 0,
                                            "no snapshot and the first segments are gone"});
            return Status::corrupt;
        }
        std::uint32_t offset = start == 0 ? segment_header_bytes : lsn_offset(start);
        for (; i < segs.size(); ++i, offset = segment_header_bytes) {
            auto header = segment_header_decode(segs[i].span());
            if (!header || header->segment_id != segs[i].id || header->shard != store.options_.shard) {
                // The header goes out with the segment's first batch. Unless a later record
                // proves that batch was synced, the segment never held anything acknowledged.
                if (!proven_durable(i, segment_header_bytes, lsn_make(segs[i].id, 0))) {
                    torn = true;
                    torn_index = i;
                    tail = lsn_make(segs[i].id, 0);
                    store.report_.torn_bytes += segs[i].bytes;
                    for (std::size_t j = i + 1; j < segs.size(); ++j) store.report_.torn_bytes += segs[j].bytes;
                    break;
                }
                if (header) {
                    // An intact header naming another segment or shard: not ours to replay.
                    damage(segs[i].id, 0, Status::corrupt, 0,
                           "segment header of another segment or shard: segment skipped");
                    continue;
                }
                // The header is damaged but every record carries its own checksums: replay
                // them, so only what a damaged record touches is quarantined.
                damage(segs[i].id, 0, header.status(), 0,
                       "segment header damaged: records checked one by one");
            }
            if (!replay_segment(i, offset)) break;
        }
        if (pending.txn != 0) ++store.report_.txns_discarded;
        // Bodies whose chunks lie in damaged bytes, and the mailboxes holding them.
        for (auto& [id, body] : store.index_.bodies) {
            for (const auto& e : body.extents) {
                for (const auto& r : bad_ranges) {
                    if (e.segment_id == r.segment && e.offset < r.to && e.offset + record_bytes(e.bytes) > r.from) {
                        body.corrupt = true;
                    }
                }
            }
        }
        for (auto& [id, box] : store.index_.mailboxes) {
            for (const auto& m : box.messages) {
                if (m.body.shard != store.options_.shard) continue;
                auto it = store.index_.bodies.find(m.body.id);
                if (it != store.index_.bodies.end() && it->second.corrupt) box.quarantined = true;
            }
        }
        return Status::ok;
    }
};

namespace {

// What a snapshot file is right now (inode, size, change time), to see whether the daemon's
// upkeep replaced it while a read-only open was reading.
std::string snapshot_identity(int dir_fd) {
    std::string out;
    for (const char* name : {snapshot_file, snapshot_prev_file}) {
        struct stat st {};
        if (::fstatat(dir_fd, name, &st, 0) != 0) {
            out += "-;";
            continue;
        }
        out += std::to_string(st.st_ino) + ":" + std::to_string(st.st_size) + ":" +
               std::to_string(st.st_ctim.tv_sec) + "." + std::to_string(st.st_ctim.tv_nsec) + ";";
    }
    return out;
}

}  // namespace

Result<std::unique_ptr<MailStore>> MailStore::open(Io& io, Clock& clock, StoreOptions options) {
    if (!options.read_only) return open_attempt(io, clock, options);
    // A read-only open (a tool beside the running daemon) can race the daemon's upkeep: a
    // snapshot replaced, a segment retired between listing and opening it. Such an attempt
    // ends with Status::again, and the open starts over, a bounded number of times.
    Status last = Status::again;
    for (unsigned attempt = 0; attempt < limits::store_read_only_open_attempts; ++attempt) {
        if (attempt > 0) ::usleep(5'000u * attempt);  // Tools only: never on a core thread.
        auto store = open_attempt(io, clock, options);
        if (store || store.status() != Status::again) return store;
        last = store.status();
    }
    return last;
}

Result<std::unique_ptr<MailStore>> MailStore::open_attempt(Io& io, Clock& clock,
                                                           const StoreOptions& options) {
    // segment_bytes is 32 bits, so it is below segment_bytes_max (2^32) by its type.
    static_assert(sizeof(options.segment_bytes) == 4 && limits::segment_bytes_max == 1ull << 32);
    if (options.segment_bytes < limits::segment_bytes_min || options.segment_bytes == 0xffffffffu) {
        return Status::invalid;
    }
    if (!options.read_only && ::mkdir(options.dir.c_str(), 0750) != 0 && errno != EEXIST) {
        return status_from_errno(errno);
    }
    std::unique_ptr<MailStore> store(new MailStore(io, clock, options));
    store->dir_fd_ = ::open(options.dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (store->dir_fd_ < 0) return status_from_errno(errno);
    const int dir_fd = store->dir_fd_;
    const std::string identity = options.read_only ? snapshot_identity(dir_fd) : std::string();
    // A segment (or snapshot) that vanished under a read-only open was retired by the daemon:
    // try again from the start.
    const auto vanished = [&](int error) {
        return options.read_only && error == ENOENT ? Status::again : status_from_errno(error);
    };

    // The newest intact snapshot; the other one only tells how far segments may go.
    SnapshotMeta meta;
    for (const char* name : {snapshot_file, snapshot_prev_file}) {
        auto bytes = read_file(dir_fd, name);
        if (!bytes) continue;
        MailboxIndex loaded(options.shard);
        SnapshotMeta m;
        if (snapshot_decode(*bytes, loaded, m) != Status::ok) {
            store->report_.damage.push_back({0, 0, Status::corrupt, 0, std::string(name) + " damaged"});
            continue;
        }
        if (!store->report_.snapshot_loaded) {
            store->index_ = std::move(loaded);
            meta = m;
            store->report_.snapshot_loaded = true;
            store->report_.snapshot_lsn = m.lsn;
            store->snapshot_lsn_ = m.lsn;
            store->snapshot_bytes_ = bytes->size();
        } else {
            store->snapshot_prev_lsn_ = m.lsn;
        }
    }

    Recovery rec(*store);
    std::map<std::uint32_t, SegmentPin> pins;
    if (DIR* d = ::fdopendir(::dup(dir_fd))) {
        while (dirent* e = ::readdir(d)) {
            std::uint32_t id = 0;
            if (!segment_file_parse(e->d_name, id)) continue;
            if (options.open_race_hook) options.open_race_hook();
            const int fd = ::openat(dir_fd, e->d_name, (options.read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
            if (fd < 0) {
                const int error = errno;
                ::closedir(d);
                return vanished(error);
            }
            pins[id] = std::make_shared<SegmentFile>(id, fd);
        }
        ::closedir(d);
    }
    for (auto& [id, pin] : pins) {
        struct stat st {};
        if (::fstat(pin->fd, &st) != 0) return status_from_errno(errno);
        Mapped m;
        m.id = id;
        m.pin = pin;
        m.bytes = static_cast<std::size_t>(std::min<off_t>(st.st_size, 0xffffffffu));
        pin->bytes = static_cast<std::uint32_t>(m.bytes);
        if (m.bytes > 0 && id >= lsn_segment(meta.lsn)) {
            void* p = ::mmap(nullptr, m.bytes, PROT_READ, MAP_PRIVATE, pin->fd, 0);
            if (p == MAP_FAILED) return status_from_errno(errno);
            ::madvise(p, m.bytes, MADV_SEQUENTIAL);
            m.data = static_cast<const std::byte*>(p);
        }
        rec.segs.push_back(std::move(m));
    }
    if (Status s = rec.replay(meta.lsn); s != Status::ok) {
        // Missing segments for the snapshot read: in a read-only open, the snapshot was
        // probably replaced and the segments before it retired meanwhile.
        if (options.read_only && identity != snapshot_identity(dir_fd)) return Status::again;
        return s;
    }
    if (options.read_only && identity != snapshot_identity(dir_fd)) return Status::again;
    store->next_txn_id_ = std::max(meta.next_txn_id, rec.max_txn + 1);
    if (rec.segs.empty()) rec.tail = 0;

    // Cut the torn tail; segments after it never held anything acknowledged.
    std::uint32_t next_id = pins.empty() ? std::max<std::uint32_t>(1, lsn_segment(meta.lsn) + 1)
                                         : pins.rbegin()->first + 1;
    if (rec.torn && !options.read_only) {
        for (std::size_t j = rec.torn_index + 1; j < rec.segs.size(); ++j) {
            const std::uint32_t id = rec.segs[j].id;
            pins.erase(id);
            ::unlinkat(dir_fd, segment_file_name(id).c_str(), 0);
        }
        SegmentPin& last = pins.at(lsn_segment(rec.tail));
        if (lsn_offset(rec.tail) < segment_header_bytes) {
            // Not even a header: remove the file and let the log start a fresh segment.
            ::unlinkat(dir_fd, segment_file_name(last->id).c_str(), 0);
            pins.erase(last->id);
            rec.tail = 0;
        } else if (rec.segs[rec.torn_index].end == lsn_offset(rec.tail) && last->bytes > lsn_offset(rec.tail)) {
            // This segment's records ended cleanly before pre-written zeros (what was torn
            // came after it, e.g. an unused spare): keep the zeros for the next appends.
            last->written = last->bytes;
            last->bytes = lsn_offset(rec.tail);
        } else if (::ftruncate(last->fd, lsn_offset(rec.tail)) != 0 || ::fsync(last->fd) != 0) {
            return status_from_errno(errno);
        } else {
            last->bytes = lsn_offset(rec.tail);
        }
        ::fsync(dir_fd);
    } else if (!options.read_only && rec.tail != 0 && pins.count(lsn_segment(rec.tail))) {
        // Padding cut short at the end: complete it so appends stay aligned.
        SegmentPin& last = pins.at(lsn_segment(rec.tail));
        if (last->bytes > lsn_offset(rec.tail)) {
            // Zeros pre-written past the tail (the scan ended there, not torn): keep them,
            // the next appends overwrite them.
            last->written = last->bytes;
            last->bytes = lsn_offset(rec.tail);
        } else if (last->bytes != lsn_offset(rec.tail)) {
            if (::ftruncate(last->fd, lsn_offset(rec.tail)) != 0 || ::fsync(last->fd) != 0) {
                return status_from_errno(errno);
            }
            last->bytes = lsn_offset(rec.tail);
        }
    }
    for (const Mapped& m : rec.segs) {
        // A sealed segment's size is where its records end, not its pre-written file size.
        if (m.end != 0 && m.end < m.pin->bytes && m.id != lsn_segment(rec.tail)) m.pin->bytes = m.end;
    }
    rec.segs.clear();  // Unmap.
    if (rec.tail != 0 && !pins.count(lsn_segment(rec.tail))) rec.tail = 0;
    if (rec.tail == 0 && !pins.empty()) {
        const auto& last = *pins.rbegin();
        rec.tail = lsn_make(last.first, last.second->bytes);
    }
    for (auto& [id, box] : store->index_.mailboxes) {
        if (box.quarantined) store->report_.quarantined_mailboxes.push_back(id);
    }

    LogOptions log_options{options.dir, options.shard, options.segment_bytes,
                           options.read_only ? 1u : options.batches_inflight_max,
                           options.read_only ? 0u : options.prewrite_bytes};
    store->log_ = std::make_unique<Log>(io, clock, log_options, dir_fd);
    store->log_->adopt(std::move(pins), rec.tail, next_id);
    if (!store->log_->segments().empty()) {
        // A sealed segment's size is its tail; the live tail continues in the last one.
        store->last_commit_lsn_ = rec.tail;
    }
    return store;
}

}  // namespace rp::storage
