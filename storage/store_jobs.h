// storage/store_jobs.h: the asynchronous jobs of MailStore (private to storage/).
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <deque>
#include <string>

#include "storage/index_snapshot.h"
#include "storage/mail_store.h"

namespace rp::storage {

// Writes a snapshot, every file system call through Io: open snapshot.tmp, write, fsync,
// rename snapshot -> snapshot.prev (absent at first), rename snapshot.tmp -> snapshot, fsync
// the folder.
struct MailStore::SnapshotJob final : IoCompletion {
    enum class Step { open, write, sync_file, rename_prev, rename_tmp, sync_dir } step = Step::open;
    MailStore* store = nullptr;
    SnapshotDone* done = nullptr;
    std::string bytes;
    std::size_t written = 0;
    iovec iov{};
    int fd = -1;
    Lsn lsn = 0;

    ~SnapshotJob() {
        if (fd >= 0) ::close(fd);
    }
    void submit_write() {
        iov = {bytes.data() + written, bytes.size() - written};
        store->io_.writev(fd, &iov, 1, written, *this);
    }
    void io_done(Status status, std::uint32_t n) override {
        // The first snapshot has no previous one to keep.
        if (step == Step::rename_prev && status == Status::not_found) status = Status::ok;
        if (status != Status::ok) {
            store->snapshot_finished(status);
            return;
        }
        const int dir = store->dir_fd_;
        switch (step) {
            case Step::open:
                fd = static_cast<int>(n);
                step = Step::write;
                submit_write();
                return;
            case Step::write:
                if (n == 0) {
                    store->snapshot_finished(Status::io);
                    return;
                }
                written += n;
                if (written < bytes.size()) {
                    submit_write();
                    return;
                }
                step = Step::sync_file;
                store->io_.fsync(fd, *this);
                return;
            case Step::sync_file:
                step = Step::rename_prev;
                store->io_.renameat(dir, snapshot_file, dir, snapshot_prev_file, *this);
                return;
            case Step::rename_prev:
                step = Step::rename_tmp;
                store->io_.renameat(dir, snapshot_tmp_file, dir, snapshot_file, *this);
                return;
            case Step::rename_tmp:
                step = Step::sync_dir;
                store->io_.fsync(dir, *this);
                return;
            case Step::sync_dir: store->snapshot_finished(Status::ok); return;
        }
    }
};

// Removes retired segment files one at a time through Io.
struct MailStore::RetireJob final : IoCompletion {
    MailStore* store = nullptr;
    std::deque<std::string> names;
    void submit() { store->io_.unlinkat(store->dir_fd_, names.front().c_str(), *this); }
    void io_done(Status status, std::uint32_t) override {
        // A file that stays (EIO) holds nothing the index needs; the next open sees it below
        // the snapshot and it is retired again.
        if (status != Status::ok && status != Status::not_found) ++store->retire_failures_;
        names.pop_front();
        if (!names.empty()) {
            submit();
            return;
        }
        store->retire_.reset();  // Destroys this job: nothing may follow.
    }
};

struct MailStore::CompactJob {
    struct Read final : IoCompletion {
        CompactJob* job = nullptr;
        Extent extent;
        SegmentPin pin;
        std::vector<std::byte> record;
        Status status = Status::ok;
        void io_done(Status s, std::uint32_t n) override {
            status = s != Status::ok ? s : (n == record.size() ? Status::ok : Status::truncated);
            job->read_done();
        }
    };
    struct Item {
        std::uint64_t body_id;
        std::vector<Extent> extents;
        std::vector<std::unique_ptr<Read>> reads;
    };
    MailStore* store = nullptr;
    CompactDone* done = nullptr;
    std::vector<Item> items;
    unsigned outstanding = 0;

    void read_done() {
        RP_ASSERT(outstanding > 0);
        if (--outstanding == 0) store->compact_finished(Status::ok, 0);
    }
};

}  // namespace rp::storage
