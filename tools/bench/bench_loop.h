// tools/bench/bench_loop.h: one bench thread's io_uring loop and its client connections.
//
// Owns: the ring, a fixed array of connection slots (one socket each, created by connect()),
//   and a periodic tick that enforces per-connection deadlines.
// Core: one ClientLoop per bench thread; nothing in it is shared with other threads.
// Invariants: a connection has at most one recv and one send in flight; its socket is closed
//   only after every operation on it has completed, so a completion never names a reused slot.
// Errors: kernel errors arrive at the handler as `on_error(conn, what)` with a short label
//   ("connect refused", "reset", "closed", "timeout"); the handler decides what to do.
//
// The protocol side (SMTP, POP3, IMAP, the relay sink) implements LoopHandler. TLS sits between
// recv/send and the handler (start_tls() on a connection): the handler then sees plain bytes
// and the loop encrypted ones, so neither side changes shape. A TLS connection's send()
// encrypts at once and reports on_sent when the last of its ciphertext has left.
#pragma once

#include <liburing.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"
#include "tools/bench/bench_tls.h"

namespace rp::bench {

std::uint64_t now_ns();

struct Connection {
    static constexpr unsigned iov_max = 4;
    static constexpr std::size_t rx_bytes = 8192;

    unsigned index = 0;
    int fd = -1;
    std::uint32_t generation = 0;  // Bumped by each connect(), so callbacks can tell reuse.
    unsigned in_flight = 0;    // Operations submitted and not yet completed.
    bool recv_armed = false;
    bool send_busy = false;    // The handler's send() has not reported on_sent yet.
    bool wire_busy = false;    // A sendmsg is in flight.
    bool wire_plain = false;   // ... and it carries the handler's plain bytes (no TLS).
    bool plain_waiting = false;  // TLS: on_sent is due once the ciphertext has left.
    bool closing = false;
    bool cancel_sent = false;
    std::uint64_t deadline_ns = 0;  // 0: none. Past it, the handler gets on_error("timeout").
    std::uint64_t wake_ns = 0;      // 0: none. Past it, the handler gets on_wake().
    std::array<iovec, iov_max> iov{};
    unsigned iov_count = 0;
    unsigned iov_first = 0;
    msghdr msg{};
    std::unique_ptr<ClientTls> tls;  // Null: plain TCP.
    std::string tls_wire;            // Ciphertext in flight.
    std::array<char, rx_bytes> rx{};
};

class ClientLoop;

class LoopHandler {
public:
    virtual ~LoopHandler() = default;
    virtual void on_connected(Connection& conn) = 0;
    virtual void on_received(Connection& conn, std::string_view bytes) = 0;
    virtual void on_sent(Connection& conn) = 0;
    // The connection failed (connect error, reset, peer closed, timeout). The loop has started
    // closing it; on_closed follows.
    virtual void on_error(Connection& conn, std::string_view what) = 0;
    virtual void on_closed(Connection& conn) = 0;
    virtual void on_wake(Connection& conn) = 0;
    // start_tls() finished its handshake; send() now encrypts.
    virtual void on_tls_ready(Connection& conn) { (void)conn; }
    // Called about every tick_ms with the current time, after deadlines are checked.
    virtual void on_tick(std::uint64_t now) = 0;
};

class ClientLoop {
public:
    static constexpr std::uint64_t tick_ns = 50'000'000;

    ClientLoop(const sockaddr_storage& target, socklen_t target_bytes, LoopHandler& handler);
    ~ClientLoop();
    ClientLoop(const ClientLoop&) = delete;
    ClientLoop& operator=(const ClientLoop&) = delete;

    // Sets up the ring for `connection_count` slots. Status::unsupported without io_uring.
    [[nodiscard]] Status init(unsigned connection_count);

    Connection& connection(unsigned index) { return *connections_[index]; }
    unsigned connection_count() const { return static_cast<unsigned>(connections_.size()); }

    // Opens a socket and connects it; on_connected or on_error follows.
    void connect(Connection& conn);
    // Sends every byte of `parts` (which must stay valid until on_sent), then on_sent.
    void send(Connection& conn, std::span<const iovec> parts);
    // Client TLS for this loop's connections: `ca_file` empty means no verification;
    // `groups` are the key exchange groups offered (rp::tls::groups_parse names).
    [[nodiscard]] Status enable_tls(const std::string& ca_file,
                                    const std::vector<std::string>& groups, std::string* error);
    // Starts a TLS handshake on an open connection (implicit TLS right after on_connected, or
    // after a STARTTLS reply); on_tls_ready or on_error("tls handshake ...") follows.
    void start_tls(Connection& conn, std::string_view server_name);
    // Closes the connection once its operations complete; on_closed follows. Idempotent.
    void close(Connection& conn);

    // Runs until stop() was called and every connection is closed.
    void run();
    void stop() { stopping_ = true; }
    bool open(const Connection& conn) const { return conn.fd >= 0; }

private:
    enum class Op : std::uint64_t { connect = 1, send = 2, recv = 3, cancel = 4, tick = 5 };

    io_uring_sqe* sqe();
    void arm_recv(Connection& conn);
    void arm_tick();
    void submit_send(Connection& conn);
    void flush_tls(Connection& conn);
    void receive_tls(Connection& conn, std::string_view cipher);
    void complete(io_uring_cqe* cqe);
    void complete_send(Connection& conn, int res);
    void complete_recv(Connection& conn, int res);
    void fail(Connection& conn, std::string_view what);
    void maybe_release(Connection& conn);
    void check_deadlines(std::uint64_t now);

    io_uring ring_{};
    bool ring_ready_ = false;
    sockaddr_storage target_{};
    socklen_t target_bytes_ = 0;
    LoopHandler& handler_;
    std::unique_ptr<ClientTlsContext> tls_context_;
    std::vector<std::unique_ptr<Connection>> connections_;
    __kernel_timespec tick_spec_{};
    bool tick_armed_ = false;
    bool stopping_ = false;
    unsigned open_count_ = 0;
    std::uint64_t last_tick_ns_ = 0;
};

// "connect refused" and friends: a short, stable label for an errno, used as an error key.
std::string errno_label(std::string_view step, int error);

}  // namespace rp::bench
