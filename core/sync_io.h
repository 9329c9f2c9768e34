// core/sync_io.h: a blocking Io for tools, start-up and tests.
//
// Each call does its I/O at once with the plain system call and queues the completion;
// run_pending() delivers queued completions in order. Never used on a core thread once the
// reactor runs.
#pragma once

#include <deque>

#include "core/io.h"

namespace rp {

class SyncIo final : public Io {
public:
    void writev(int fd, const iovec* iov, unsigned iov_count, std::uint64_t offset,
                IoCompletion& done) override;
    void read(int fd, void* buf, std::uint32_t bytes, std::uint64_t offset,
              IoCompletion& done) override;
    void fdatasync(int fd, IoCompletion& done) override;
    void fsync(int fd, IoCompletion& done) override;
    void openat(int dir_fd, const char* path, int flags, unsigned mode,
                IoCompletion& done) override;
    void renameat(int old_dir_fd, const char* old_path, int new_dir_fd, const char* new_path,
                  IoCompletion& done) override;
    void unlinkat(int dir_fd, const char* path, IoCompletion& done) override;
    void fallocate(int fd, int mode, std::uint64_t offset, std::uint64_t bytes,
                   IoCompletion& done) override;

    // Delivers every queued completion, including ones queued by the callbacks it runs.
    // Returns how many ran.
    std::size_t run_pending();
    bool idle() const { return pending_.empty(); }

private:
    struct Pending {
        IoCompletion* done;
        Status status;
        std::uint32_t bytes;
    };
    std::deque<Pending> pending_;
};

}  // namespace rp
