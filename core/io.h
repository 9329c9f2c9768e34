// core/io.h: the Io interface, how storage and tools do file I/O without blocking a core.
//
// Three implementations: UringIo (core/io_uring.h, the shard's ring: the only real one on a
// core thread), SyncIo (core/sync_io.h, blocking, for tools, start-up and tests) and SimIo
// (tests/sim, injected torn writes, EIO, ENOSPC, lost fsync and crashes).
//
// Sockets are not here: the reactor drives them with multishot accept/recv and provided
// buffers, which a generic interface would hide; protocols are pure state machines, so they
// are tested without sockets.
//
// Ownership: every buffer and iovec array passed in belongs to the kernel (or the
// implementation) until `done` runs. `done` runs on the submitting thread, never inside the
// submitting call.
#pragma once

#include <sys/uio.h>

#include <cstdint>

#include "core/result.h"

namespace rp {

class IoCompletion {
public:
    // `bytes` is the count transferred for reads and writes (it may be short), 0 otherwise.
    virtual void io_done(Status status, std::uint32_t bytes) = 0;

protected:
    ~IoCompletion() = default;
};

class Io {
public:
    virtual ~Io() = default;

    virtual void writev(int fd, const iovec* iov, unsigned iov_count, std::uint64_t offset,
                        IoCompletion& done) = 0;
    virtual void read(int fd, void* buf, std::uint32_t bytes, std::uint64_t offset,
                      IoCompletion& done) = 0;
    virtual void fdatasync(int fd, IoCompletion& done) = 0;
    // Full fsync, for directories after a create or rename.
    virtual void fsync(int fd, IoCompletion& done) = 0;

    // Metadata operations, so that creating, renaming and removing files does not block a
    // core either (io_uring OPENAT, RENAMEAT, UNLINKAT, FALLOCATE). Paths must stay valid
    // until `done` runs. openat: `bytes` is the new descriptor (O_CLOEXEC is the caller's).
    virtual void openat(int dir_fd, const char* path, int flags, unsigned mode,
                        IoCompletion& done) = 0;
    virtual void renameat(int old_dir_fd, const char* old_path, int new_dir_fd,
                          const char* new_path, IoCompletion& done) = 0;
    virtual void unlinkat(int dir_fd, const char* path, IoCompletion& done) = 0;
    // `mode` as fallocate(2): 0 allocates and extends the size, FALLOC_FL_KEEP_SIZE does not.
    virtual void fallocate(int fd, int mode, std::uint64_t offset, std::uint64_t bytes,
                           IoCompletion& done) = 0;
};

// The only errno -> Status mapping (core/io_errno.cc). `err` is a positive errno.
Status status_from_errno(int err) noexcept;

}  // namespace rp
