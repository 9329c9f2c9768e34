// storage/store_jobs.h: the asynchronous jobs of MailStore (private to storage/).
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include "storage/index_snapshot.h"
#include "storage/mail_store.h"

namespace rp::storage {

struct MailStore::SnapshotJob final : IoCompletion {
    enum class Step { write, sync_file, sync_dir } step = Step::write;
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
        if (status != Status::ok) {
            store->snapshot_finished(status);
            return;
        }
        switch (step) {
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
            case Step::sync_file: {
                // Blocking metadata calls (Io has no rename): short, and once per snapshot.
                const int dir = store->dir_fd_;
                ::renameat(dir, snapshot_file, dir, snapshot_prev_file);
                if (::renameat(dir, snapshot_tmp_file, dir, snapshot_file) != 0) {
                    store->snapshot_finished(status_from_errno(errno));
                    return;
                }
                step = Step::sync_dir;
                store->io_.fsync(dir, *this);
                return;
            }
            case Step::sync_dir: store->snapshot_finished(Status::ok); return;
        }
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
