// core/connector.h: one outbound TCP connection on the shard's ring (the relay's SMTP client).
//
// Owns: the socket, a receive buffer and the send queue of one connection we opened.
// Core: the shard's thread only; every connect, send and receive is an SQE on the reactor.
// Lifecycle: connect() -> on_connected(status) -> receives (on_received) and sends until
//   close(reason), a receive error or the peer's EOF -> on_closed(reason), always
//   asynchronous and exactly once per successful connect(). After on_closed the object may
//   be destroyed (not inside the callback) or connect() again.
// Invariants: at most one send and one receive in flight; the send queue holds what send()
//   was given until the kernel took it; nothing is freed while the kernel owns it.
// Errors: a negative CQE becomes a Status in UringIo::status_of (core/io_uring.h).
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "core/reactor.h"

namespace rp {

class OutboundHandler {
public:
    virtual void on_connected(Status status) = 0;
    virtual void on_received(std::string_view bytes) = 0;
    // Everything given to send() so far was written.
    virtual void on_sent() {}
    virtual void on_closed(Status reason) = 0;

protected:
    ~OutboundHandler() = default;
};

class OutboundConnection final : public CqeHandler {
public:
    static constexpr std::size_t recv_buffer_bytes = 16384;

    OutboundConnection(Reactor& reactor, OutboundHandler& handler);
    ~OutboundConnection() override;
    OutboundConnection(const OutboundConnection&) = delete;
    OutboundConnection& operator=(const OutboundConnection&) = delete;

    // Starts a non-blocking connect. A Status other than ok (no socket) means nothing
    // started and no callback will come.
    [[nodiscard]] Status connect(const sockaddr_storage& address, socklen_t address_bytes);
    // Queues bytes (moved); they are sent in order.
    void send(std::string bytes);
    // Cancels what is in flight and closes; on_closed(reason) follows (once).
    void close(Status reason);

    bool connected() const { return connected_; }
    bool idle() const { return fd_ < 0 && ops_ == 0; }
    std::size_t queued_bytes() const { return sending_.size() - sent_ + queue_.size(); }

    void on_cqe(const io_uring_cqe& cqe, unsigned tag) override;

private:
    void arm_recv();
    void send_more();
    void settle();

    Reactor& reactor_;
    OutboundHandler& handler_;
    int fd_ = -1;
    unsigned ops_ = 0;
    bool connected_ = false;
    bool closing_ = false;
    bool send_in_flight_ = false;
    Status close_reason_ = Status::ok;
    sockaddr_storage address_{};  // Read by the kernel at submission of the connect.
    std::string sending_;   // Owned by the kernel while a send is in flight.
    std::size_t sent_ = 0;
    std::string queue_;
    std::unique_ptr<char[]> recv_buffer_;
};

}  // namespace rp
