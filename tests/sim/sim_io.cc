#include "tests/sim/sim_io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <stdio.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

namespace rp::sim {

bool SimIo::chance(double p) {
    if (p <= 0) return false;
    return std::uniform_real_distribution<double>(0, 1)(rng_) < p;
}

SimIo::FileKey SimIo::file_of(int fd) {
    struct stat st {};
    if (::fstat(fd, &st) != 0) return {~0ull, static_cast<std::uint64_t>(fd)};
    return {static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino)};
}

void SimIo::apply(const Cached& w, std::size_t bytes) {
    const int fd = w.fd;
    std::size_t done = 0;
    while (done < bytes) {
        const ssize_t n = ::pwrite(fd, w.bytes.data() + done, bytes - done,
                                   static_cast<off_t>(w.offset + done));
        if (n <= 0) return;
        done += static_cast<std::size_t>(n);
    }
}

void SimIo::writev(int fd, const iovec* iov, unsigned iov_count, std::uint64_t offset,
                   IoCompletion& done) {
    // The kernel may read the caller's buffers at any time until the completion: copy now.
    Cached w{fd, offset, {}};
    for (unsigned i = 0; i < iov_count; ++i) {
        const auto* p = static_cast<const std::byte*>(iov[i].iov_base);
        w.bytes.insert(w.bytes.end(), p, p + iov[i].iov_len);
    }
    ++writes;
    Status status = Status::ok;
    std::size_t keep = w.bytes.size();
    const bool fail_now = faults.eio_write_at != 0 && --faults.eio_write_at == 0;
    if (fail_now || chance(faults.eio_write)) {
        status = Status::io;
    } else if (chance(faults.enospc_write)) {
        status = Status::no_space;
    } else if (w.bytes.size() > 1 && chance(faults.short_write)) {
        keep = 1 + rng_() % (w.bytes.size() - 1);
    }
    if (status != Status::ok) {
        ++faults_injected;
        keep = w.bytes.empty() ? 0 : rng_() % w.bytes.size();
    } else if (keep != w.bytes.size()) {
        ++faults_injected;
    }
    w.bytes.resize(keep);
    const auto n = static_cast<std::uint32_t>(keep);
    if (keep > 0) cache_[file_of(fd)].push_back(std::move(w));
    pending_.push_back([&done, status, n] { done.io_done(status, status == Status::ok ? n : 0); });
}

void SimIo::read(int fd, void* buf, std::uint32_t bytes, std::uint64_t offset, IoCompletion& done) {
    ssize_t n = ::pread(fd, buf, bytes, static_cast<off_t>(offset));
    std::uint32_t got = n > 0 ? static_cast<std::uint32_t>(n) : 0;
    // Overlay cached writes, in order.
    for (const Cached& w : cache_[file_of(fd)]) {
        const std::uint64_t from = std::max(offset, w.offset);
        const std::uint64_t to = std::min(offset + bytes, w.offset + w.bytes.size());
        if (from >= to) continue;
        std::memcpy(static_cast<std::byte*>(buf) + (from - offset), w.bytes.data() + (from - w.offset),
                    to - from);
        got = std::max<std::uint32_t>(got, static_cast<std::uint32_t>(to - offset));
    }
    pending_.push_back([&done, got] { done.io_done(Status::ok, got); });
}

void SimIo::fdatasync(int fd, IoCompletion& done) {
    ++syncs;
    Status status = Status::ok;
    const FileKey file = file_of(fd);
    auto& list = cache_[file];
    std::uint64_t& seen = fd_errors_seen_[{fd, file}];
    std::uint64_t& errors = file_errors_[file];
    const bool fail_now = faults.eio_sync_at != 0 && --faults.eio_sync_at == 0;
    if (fail_now || chance(faults.eio_sync)) {
        ++faults_injected;
        status = Status::io;
        // Some pages made it, the rest are dropped and marked clean.
        for (const Cached& w : list) {
            if (rng_() % 2) apply(w, (rng_() % (w.bytes.size() + 1)) & ~std::size_t{511});
        }
        ++errors;
    } else {
        for (const Cached& w : list) apply(w, w.bytes.size());
        ::fdatasync(fd);
        if (seen < errors) status = Status::io;  // An earlier failure, through another fd.
    }
    seen = errors;
    list.clear();
    pending_.push_back([&done, status] { done.io_done(status, 0); });
}

void SimIo::openat(int dir_fd, const char* path, int flags, unsigned mode, IoCompletion& done) {
    if (chance(faults.eio_meta)) {
        ++faults_injected;
        pending_.push_back([&done] { done.io_done(Status::io, 0); });
        return;
    }
    const int fd = ::openat(dir_fd, path, flags, static_cast<mode_t>(mode));
    const Status status = fd >= 0 ? Status::ok : status_from_errno(errno);
    pending_.push_back([&done, status, fd] { done.io_done(status, fd >= 0 ? static_cast<std::uint32_t>(fd) : 0); });
}

void SimIo::renameat(int old_dir_fd, const char* old_path, int new_dir_fd, const char* new_path,
                     IoCompletion& done) {
    Status status = Status::io;
    if (chance(faults.eio_meta)) {
        ++faults_injected;
    } else {
        status = ::renameat(old_dir_fd, old_path, new_dir_fd, new_path) == 0 ? Status::ok
                                                                              : status_from_errno(errno);
    }
    pending_.push_back([&done, status] { done.io_done(status, 0); });
}

void SimIo::unlinkat(int dir_fd, const char* path, IoCompletion& done) {
    Status status = Status::io;
    if (chance(faults.eio_meta)) {
        ++faults_injected;
    } else {
        status = ::unlinkat(dir_fd, path, 0) == 0 ? Status::ok : status_from_errno(errno);
    }
    pending_.push_back([&done, status] { done.io_done(status, 0); });
}

void SimIo::fallocate(int fd, int mode, std::uint64_t offset, std::uint64_t bytes, IoCompletion& done) {
    Status status = Status::io;
    if (chance(faults.eio_meta)) {
        ++faults_injected;
    } else {
        status = ::fallocate(fd, mode, static_cast<off_t>(offset), static_cast<off_t>(bytes)) == 0
                     ? Status::ok
                     : status_from_errno(errno);
    }
    pending_.push_back([&done, status] { done.io_done(status, 0); });
}

std::size_t SimIo::run_pending() {
    std::size_t count = 0;
    while (!pending_.empty()) {
        auto f = std::move(pending_.front());
        pending_.pop_front();
        f();
        ++count;
    }
    return count;
}

std::size_t SimIo::run_pending_reversed() {
    std::size_t count = 0;
    while (!pending_.empty()) {
        auto f = std::move(pending_.back());
        pending_.pop_back();
        f();
        ++count;
    }
    return count;
}

void SimIo::crash() {
    for (auto& [file, list] : cache_) {
        for (const Cached& w : list) {
            switch (rng_() % 3) {
                case 0: apply(w, w.bytes.size()); break;
                case 1: apply(w, (rng_() % (w.bytes.size() + 1)) & ~std::size_t{511}); break;
                default: break;
            }
        }
    }
    cache_.clear();
    pending_.clear();
    file_errors_.clear();
    fd_errors_seen_.clear();
}

void SimIo::settle() {
    for (auto& [file, list] : cache_) {
        for (const Cached& w : list) apply(w, w.bytes.size());
    }
    cache_.clear();
    file_errors_.clear();
    fd_errors_seen_.clear();
}

}  // namespace rp::sim
