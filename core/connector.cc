// core/connector.cc: outbound TCP over io_uring.
#include "core/connector.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include <cerrno>

#include "core/io.h"

namespace rp {

namespace {
constexpr unsigned tag_connect = 0, tag_send = 1, tag_recv = 2, tag_cancel = 3, tag_nop = 4;
}  // namespace

OutboundConnection::OutboundConnection(Reactor& reactor, OutboundHandler& handler)
    : reactor_(reactor), handler_(handler), recv_buffer_(new char[recv_buffer_bytes]) {}

OutboundConnection::~OutboundConnection() {
    // Destroyed with operations in flight only when the reactor no longer dispatches (the
    // shard's loop ended); the socket must still be closed.
    if (fd_ >= 0) ::close(fd_);
}

Status OutboundConnection::connect(const sockaddr_storage& address, socklen_t address_bytes) {
    RP_ASSERT(idle());
    fd_ = ::socket(address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd_ < 0) return status_from_errno(errno);
    // Request/reply protocols: without TCP_NODELAY a short write after a long one (the
    // end of DATA after the body) waits for the peer's delayed ACK, 40 ms per message.
    const int one = 1;
    (void)::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    connected_ = false;
    closing_ = false;
    close_reason_ = Status::ok;
    sending_.clear();
    queue_.clear();
    sent_ = 0;
    // The kernel reads the address when it consumes the SQE, after this call returns.
    address_ = address;
    io_uring_sqe* sqe = reactor_.sqe();
    io_uring_prep_connect(sqe, fd_, reinterpret_cast<const sockaddr*>(&address_), address_bytes);
    io_uring_sqe_set_data64(sqe, Reactor::user_data(this, tag_connect));
    ++ops_;
    return Status::ok;
}

void OutboundConnection::send(std::string bytes) {
    if (closing_ || fd_ < 0) return;
    queue_ += bytes;
    if (connected_ && !send_in_flight_) send_more();
}

void OutboundConnection::send_more() {
    RP_ASSERT(!send_in_flight_);
    if (sent_ == sending_.size()) {
        if (queue_.empty()) return;
        sending_ = std::move(queue_);
        queue_.clear();
        sent_ = 0;
    }
    io_uring_sqe* sqe = reactor_.sqe();
    // bounds: sent_ < sending_.size(), so the length is positive.
    io_uring_prep_send(sqe, fd_, sending_.data() + sent_, sending_.size() - sent_, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, Reactor::user_data(this, tag_send));
    ++ops_;
    send_in_flight_ = true;
}

void OutboundConnection::arm_recv() {
    io_uring_sqe* sqe = reactor_.sqe();
    io_uring_prep_recv(sqe, fd_, recv_buffer_.get(), recv_buffer_bytes, 0);
    io_uring_sqe_set_data64(sqe, Reactor::user_data(this, tag_recv));
    ++ops_;
}

void OutboundConnection::close(Status reason) {
    if (closing_ || fd_ < 0) return;
    closing_ = true;
    close_reason_ = reason;
    io_uring_sqe* sqe = reactor_.sqe();
    if (ops_ > 0) {
        io_uring_prep_cancel_fd(sqe, fd_, IORING_ASYNC_CANCEL_ALL);
        io_uring_sqe_set_data64(sqe, Reactor::user_data(this, tag_cancel));
    } else {
        io_uring_prep_nop(sqe);  // on_closed is always asynchronous.
        io_uring_sqe_set_data64(sqe, Reactor::user_data(this, tag_nop));
    }
    ++ops_;
}

void OutboundConnection::on_cqe(const io_uring_cqe& cqe, unsigned tag) {
    RP_ASSERT(ops_ > 0);
    --ops_;
    const Status status = cqe.res < 0 ? status_from_errno(-cqe.res) : Status::ok;
    if (tag == tag_send) send_in_flight_ = false;
    if (closing_) {
        settle();
        return;
    }
    switch (tag) {
        case tag_connect:
            if (status != Status::ok) {
                closing_ = true;
                close_reason_ = status;
                handler_.on_connected(status);
                break;
            }
            connected_ = true;
            arm_recv();
            handler_.on_connected(Status::ok);
            if (!closing_ && !send_in_flight_) send_more();
            break;
        case tag_send:
            if (status != Status::ok) {
                close(status);
                break;
            }
            sent_ += static_cast<std::size_t>(cqe.res);  // bounds: res <= bytes asked.
            if (sent_ < sending_.size() || !queue_.empty()) {
                send_more();
            } else {
                handler_.on_sent();
            }
            break;
        case tag_recv:
            if (status != Status::ok || cqe.res == 0) {
                close(status != Status::ok ? status : Status::closed);
                break;
            }
            handler_.on_received(std::string_view(recv_buffer_.get(), static_cast<std::size_t>(cqe.res)));
            if (!closing_) arm_recv();
            break;
        default:
            break;
    }
    settle();
}

// Once closing and nothing is in flight: close the socket and tell the handler (last).
void OutboundConnection::settle() {
    if (!closing_ || ops_ > 0 || fd_ < 0) return;
    ::close(fd_);
    fd_ = -1;
    connected_ = false;
    handler_.on_closed(close_reason_);
}

}  // namespace rp
