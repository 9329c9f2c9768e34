// core/io_uring.h: UringIo, the Io of a shard: file I/O through the shard's ring.
//
// Owns: a fixed pool of in-flight operation records (limits::io_ops_in_flight_max), so a
//   submission allocates nothing.
// Core: the reactor's thread only. `done` runs from the reactor's dispatch, never inside
//   the submitting call.
// Contract: callers keep at most limits::io_ops_in_flight_max operations in flight (the
//   storage batches bound this); more is a bug and asserts.
// Errors: a negative cqe->res becomes a Status here and only here (status_from_errno).
#pragma once

#include <memory>

#include "core/io.h"
#include "core/reactor.h"

namespace rp {

class UringIo final : public Io {
public:
    explicit UringIo(Reactor& reactor);
    ~UringIo() override;

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

    unsigned in_flight() const { return in_flight_; }

    // Maps one CQE result to (status, bytes): the single errno -> Status point for sockets
    // too (the session driver calls it).
    static Status status_of(int res) { return res < 0 ? status_from_errno(-res) : Status::ok; }

private:
    struct alignas(8) Op final : CqeHandler {
        void on_cqe(const io_uring_cqe& cqe, unsigned tag) override;
        UringIo* owner = nullptr;
        IoCompletion* done = nullptr;
        Op* next_free = nullptr;
    };
    io_uring_sqe* start(IoCompletion& done, Op** op);
    void finish(Op& op, int res);

    Reactor& reactor_;
    std::unique_ptr<Op[]> ops_;
    Op* free_ = nullptr;
    unsigned in_flight_ = 0;
};

}  // namespace rp
