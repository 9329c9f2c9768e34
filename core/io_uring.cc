#include "core/io_uring.h"

#include "core/limits.h"

namespace rp {

UringIo::UringIo(Reactor& reactor) : reactor_(reactor) {
    ops_ = std::make_unique<Op[]>(limits::io_ops_in_flight_max);
    for (unsigned i = 0; i < limits::io_ops_in_flight_max; ++i) {
        ops_[i].owner = this;
        ops_[i].next_free = free_;
        free_ = &ops_[i];
    }
}

UringIo::~UringIo() {
    // Records in flight belong to the kernel; destroying them now would be a use after free.
    RP_ASSERT(in_flight_ == 0);
}

io_uring_sqe* UringIo::start(IoCompletion& done, Op** op) {
    RP_ASSERT(free_ != nullptr);  // See the contract in the header.
    Op* taken = free_;
    free_ = taken->next_free;
    taken->next_free = nullptr;
    taken->done = &done;
    ++in_flight_;
    *op = taken;
    io_uring_sqe* sqe = reactor_.sqe();
    io_uring_sqe_set_data64(sqe, Reactor::user_data(taken, 0));
    return sqe;
}

void UringIo::writev(int fd, const iovec* iov, unsigned iov_count, std::uint64_t offset,
                     IoCompletion& done) {
    RP_ASSERT(iov_count > 0);
    Op* op = nullptr;
    io_uring_sqe* sqe = start(done, &op);
    io_uring_prep_writev(sqe, fd, iov, iov_count, offset);
    io_uring_sqe_set_data64(sqe, Reactor::user_data(op, 0));
}

void UringIo::read(int fd, void* buf, std::uint32_t bytes, std::uint64_t offset,
                   IoCompletion& done) {
    Op* op = nullptr;
    io_uring_sqe* sqe = start(done, &op);
    io_uring_prep_read(sqe, fd, buf, bytes, offset);
    io_uring_sqe_set_data64(sqe, Reactor::user_data(op, 0));
}

void UringIo::fdatasync(int fd, IoCompletion& done) {
    Op* op = nullptr;
    io_uring_sqe* sqe = start(done, &op);
    io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
    io_uring_sqe_set_data64(sqe, Reactor::user_data(op, 0));
}

void UringIo::fsync(int fd, IoCompletion& done) {
    Op* op = nullptr;
    io_uring_sqe* sqe = start(done, &op);
    io_uring_prep_fsync(sqe, fd, 0);
    io_uring_sqe_set_data64(sqe, Reactor::user_data(op, 0));
}

void UringIo::openat(int dir_fd, const char* path, int flags, unsigned mode, IoCompletion& done) {
    Op* op = nullptr;
    io_uring_sqe* sqe = start(done, &op);
    io_uring_prep_openat(sqe, dir_fd, path, flags, static_cast<mode_t>(mode));
    io_uring_sqe_set_data64(sqe, Reactor::user_data(op, 0));
}

void UringIo::renameat(int old_dir_fd, const char* old_path, int new_dir_fd, const char* new_path,
                       IoCompletion& done) {
    Op* op = nullptr;
    io_uring_sqe* sqe = start(done, &op);
    io_uring_prep_renameat(sqe, old_dir_fd, old_path, new_dir_fd, new_path, 0);
    io_uring_sqe_set_data64(sqe, Reactor::user_data(op, 0));
}

void UringIo::unlinkat(int dir_fd, const char* path, IoCompletion& done) {
    Op* op = nullptr;
    io_uring_sqe* sqe = start(done, &op);
    io_uring_prep_unlinkat(sqe, dir_fd, path, 0);
    io_uring_sqe_set_data64(sqe, Reactor::user_data(op, 0));
}

void UringIo::fallocate(int fd, int mode, std::uint64_t offset, std::uint64_t bytes,
                        IoCompletion& done) {
    Op* op = nullptr;
    io_uring_sqe* sqe = start(done, &op);
    io_uring_prep_fallocate(sqe, fd, mode, static_cast<off_t>(offset), static_cast<off_t>(bytes));
    io_uring_sqe_set_data64(sqe, Reactor::user_data(op, 0));
}

void UringIo::Op::on_cqe(const io_uring_cqe& cqe, unsigned /*tag*/) { owner->finish(*this, cqe.res); }

void UringIo::finish(Op& op, int res) {
    RP_ASSERT(in_flight_ > 0);
    IoCompletion* done = op.done;
    RP_ASSERT(done != nullptr);
    op.done = nullptr;
    op.next_free = free_;
    free_ = &op;
    --in_flight_;
    Status status = status_of(res);
    std::uint32_t bytes = res > 0 ? static_cast<std::uint32_t>(res) : 0;
    done->io_done(status, bytes);
}

}  // namespace rp
