#include "core/sync_io.h"

#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include <cerrno>

namespace rp {

void SyncIo::writev(int fd, const iovec* iov, unsigned iov_count, std::uint64_t offset,
                    IoCompletion& done) {
    ssize_t n;
    do {
        n = ::pwritev(fd, iov, static_cast<int>(iov_count), static_cast<off_t>(offset));
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        pending_.push_back({&done, status_from_errno(errno), 0});
    } else {
        pending_.push_back({&done, Status::ok, static_cast<std::uint32_t>(n)});
    }
}

void SyncIo::read(int fd, void* buf, std::uint32_t bytes, std::uint64_t offset,
                  IoCompletion& done) {
    ssize_t n;
    do {
        n = ::pread(fd, buf, bytes, static_cast<off_t>(offset));
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        pending_.push_back({&done, status_from_errno(errno), 0});
    } else {
        pending_.push_back({&done, Status::ok, static_cast<std::uint32_t>(n)});
    }
}

void SyncIo::fdatasync(int fd, IoCompletion& done) {
    const int rc = ::fdatasync(fd);
    pending_.push_back({&done, rc == 0 ? Status::ok : status_from_errno(errno), 0});
}

void SyncIo::fsync(int fd, IoCompletion& done) {
    const int rc = ::fsync(fd);
    pending_.push_back({&done, rc == 0 ? Status::ok : status_from_errno(errno), 0});
}

void SyncIo::openat(int dir_fd, const char* path, int flags, unsigned mode, IoCompletion& done) {
    const int fd = ::openat(dir_fd, path, flags, static_cast<mode_t>(mode));
    pending_.push_back({&done, fd >= 0 ? Status::ok : status_from_errno(errno),
                        fd >= 0 ? static_cast<std::uint32_t>(fd) : 0});
}

void SyncIo::renameat(int old_dir_fd, const char* old_path, int new_dir_fd, const char* new_path,
                      IoCompletion& done) {
    const int rc = ::renameat(old_dir_fd, old_path, new_dir_fd, new_path);
    pending_.push_back({&done, rc == 0 ? Status::ok : status_from_errno(errno), 0});
}

void SyncIo::unlinkat(int dir_fd, const char* path, IoCompletion& done) {
    const int rc = ::unlinkat(dir_fd, path, 0);
    pending_.push_back({&done, rc == 0 ? Status::ok : status_from_errno(errno), 0});
}

void SyncIo::fallocate(int fd, int mode, std::uint64_t offset, std::uint64_t bytes,
                       IoCompletion& done) {
    const int rc = ::fallocate(fd, mode, static_cast<off_t>(offset), static_cast<off_t>(bytes));
    pending_.push_back({&done, rc == 0 ? Status::ok : status_from_errno(errno), 0});
}

std::size_t SyncIo::run_pending() {
    std::size_t count = 0;
    while (!pending_.empty()) {
        const Pending p = pending_.front();
        pending_.pop_front();
        p.done->io_done(p.status, p.bytes);
        ++count;
    }
    return count;
}

}  // namespace rp
