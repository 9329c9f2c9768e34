// tools/bench/bench_loop.cc: the io_uring loop of a bench thread.
#include "tools/bench/bench_loop.h"

#include <netinet/tcp.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <ctime>

#include "core/assert.h"

namespace rp::bench {
namespace {

constexpr unsigned op_bits = 4;

std::uint64_t pack(unsigned index, std::uint64_t op) {
    return (static_cast<std::uint64_t>(index) << op_bits) | op;
}

}  // namespace

std::uint64_t now_ns() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000u +
           static_cast<std::uint64_t>(ts.tv_nsec);
}

std::string errno_label(std::string_view step, int error) {
    std::string label(step);
    switch (error) {
        case ECONNREFUSED: return label + " refused";
        case ECONNRESET: return label + " reset";
        case ECONNABORTED: return label + " aborted";
        case ETIMEDOUT: return label + " timed out";
        case EPIPE: return label + " broken pipe";
        case ENETUNREACH: return label + " network unreachable";
        case EHOSTUNREACH: return label + " host unreachable";
        case EADDRNOTAVAIL: return label + " no local address (ephemeral ports exhausted?)";
        case EMFILE: return label + " too many open files";
        case ECANCELED: return label + " cancelled";
        default: return label + " errno " + std::to_string(error);
    }
}

ClientLoop::ClientLoop(const sockaddr_storage& target, socklen_t target_bytes,
                       LoopHandler& handler)
    : target_(target), target_bytes_(target_bytes), handler_(handler) {}

ClientLoop::~ClientLoop() {
    for (auto& conn : connections_) {
        if (conn->fd >= 0) ::close(conn->fd);
    }
    if (ring_ready_) io_uring_queue_exit(&ring_);
}

Status ClientLoop::init(unsigned connection_count) {
    RP_ASSERT(!ring_ready_);
    RP_ASSERT(connection_count > 0);
    // Each connection has at most a connect or recv, a send and a cancel in flight.
    unsigned entries = 64;
    while (entries < connection_count * 3 + 8 && entries < 4096) entries *= 2;
    io_uring_params params{};
    params.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    params.flags |= IORING_SETUP_CQSIZE;
    params.cq_entries = entries * 4;
    int res = io_uring_queue_init_params(entries, &ring_, &params);
    if (res == -EINVAL) {  // An older kernel: no DEFER_TASKRUN.
        params = io_uring_params{};
        params.flags = IORING_SETUP_CQSIZE;
        params.cq_entries = entries * 4;
        res = io_uring_queue_init_params(entries, &ring_, &params);
    }
    if (res < 0) return Status::unsupported;
    ring_ready_ = true;
    connections_.reserve(connection_count);
    for (unsigned i = 0; i < connection_count; i++) {
        connections_.push_back(std::make_unique<Connection>());
        connections_.back()->index = i;
    }
    return Status::ok;
}

io_uring_sqe* ClientLoop::sqe() {
    io_uring_sqe* entry = io_uring_get_sqe(&ring_);
    if (entry == nullptr) {
        io_uring_submit(&ring_);
        entry = io_uring_get_sqe(&ring_);
    }
    RP_ASSERT(entry != nullptr);  // A submit empties the submission queue.
    return entry;
}

void ClientLoop::connect(Connection& conn) {
    RP_ASSERT(conn.fd < 0);
    RP_ASSERT(conn.in_flight == 0);
    conn.generation++;
    conn.closing = false;
    conn.cancel_sent = false;
    conn.recv_armed = false;
    conn.send_busy = false;
    conn.wire_busy = false;
    conn.plain_waiting = false;
    conn.tls.reset();
    conn.wake_ns = 0;
    const int fd = ::socket(target_.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        handler_.on_error(conn, errno_label("socket", errno));
        handler_.on_closed(conn);
        return;
    }
    // Commands are small and each waits for its reply: Nagle would only add delay.
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    conn.fd = fd;
    open_count_++;
    io_uring_sqe* entry = sqe();
    io_uring_prep_connect(entry, fd, reinterpret_cast<const sockaddr*>(&target_), target_bytes_);
    io_uring_sqe_set_data64(entry, pack(conn.index, static_cast<std::uint64_t>(Op::connect)));
    conn.in_flight++;
}

void ClientLoop::arm_recv(Connection& conn) {
    RP_ASSERT(!conn.recv_armed);
    RP_ASSERT(conn.fd >= 0);
    io_uring_sqe* entry = sqe();
    io_uring_prep_recv(entry, conn.fd, conn.rx.data(), conn.rx.size(), 0);
    io_uring_sqe_set_data64(entry, pack(conn.index, static_cast<std::uint64_t>(Op::recv)));
    conn.recv_armed = true;
    conn.in_flight++;
}

void ClientLoop::send(Connection& conn, std::span<const iovec> parts) {
    RP_ASSERT(!conn.send_busy);
    RP_ASSERT(parts.size() <= Connection::iov_max);
    if (conn.fd < 0 || conn.closing) return;
    if (conn.tls) {
        RP_ASSERT(conn.tls->established());
        for (const iovec& part : parts) {
            const std::string_view plain(static_cast<const char*>(part.iov_base), part.iov_len);
            if (conn.tls->write(plain) != Status::ok) return fail(conn, "tls write");
        }
        conn.send_busy = true;
        conn.plain_waiting = true;
        return flush_tls(conn);
    }
    RP_ASSERT(!conn.wire_busy);
    conn.iov_count = 0;
    for (const iovec& part : parts) {
        if (part.iov_len > 0) conn.iov[conn.iov_count++] = part;
    }
    conn.iov_first = 0;
    if (conn.iov_count == 0) {
        handler_.on_sent(conn);
        return;
    }
    conn.send_busy = true;
    conn.wire_busy = true;
    conn.wire_plain = true;
    submit_send(conn);
}

// Sends the ciphertext wolfSSL produced, one sendmsg at a time; more may pile up meanwhile.
void ClientLoop::flush_tls(Connection& conn) {
    RP_ASSERT(conn.tls != nullptr);
    if (conn.wire_busy || conn.fd < 0 || conn.closing) return;
    std::string& pending = conn.tls->pending_output();
    if (pending.empty()) {
        if (conn.plain_waiting) {
            conn.plain_waiting = false;
            conn.send_busy = false;
            handler_.on_sent(conn);
        }
        return;
    }
    conn.tls_wire.swap(pending);
    pending.clear();
    conn.iov[0] = iovec{conn.tls_wire.data(), conn.tls_wire.size()};
    conn.iov_count = 1;
    conn.iov_first = 0;
    conn.wire_busy = true;
    conn.wire_plain = false;
    submit_send(conn);
}

Status ClientLoop::enable_tls(const std::string& ca_file, const std::vector<std::string>& groups,
                              std::string* error) {
    tls_context_ = ClientTlsContext::create(ca_file, groups, error);
    return tls_context_ ? Status::ok : Status::tls;
}

void ClientLoop::start_tls(Connection& conn, std::string_view server_name) {
    RP_ASSERT(tls_context_ != nullptr);
    RP_ASSERT(conn.tls == nullptr);
    if (conn.fd < 0 || conn.closing) return;
    conn.tls = ClientTls::create(*tls_context_, server_name);
    if (!conn.tls) return fail(conn, "tls out of memory");
    if (conn.tls->handshake() == ClientTls::Step::failed) return fail(conn, "tls handshake");
    flush_tls(conn);
}

void ClientLoop::submit_send(Connection& conn) {
    RP_ASSERT(conn.iov_first < conn.iov_count);
    conn.msg = msghdr{};
    conn.msg.msg_iov = &conn.iov[conn.iov_first];
    conn.msg.msg_iovlen = conn.iov_count - conn.iov_first;
    io_uring_sqe* entry = sqe();
    io_uring_prep_sendmsg(entry, conn.fd, &conn.msg, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(entry, pack(conn.index, static_cast<std::uint64_t>(Op::send)));
    conn.in_flight++;
}

void ClientLoop::close(Connection& conn) {
    if (conn.fd < 0 || conn.closing) return;
    conn.closing = true;
    conn.deadline_ns = 0;
    if (conn.in_flight > 0 && !conn.cancel_sent) {
        io_uring_sqe* entry = sqe();
        io_uring_prep_cancel_fd(entry, conn.fd, IORING_ASYNC_CANCEL_ALL);
        io_uring_sqe_set_data64(entry, pack(conn.index, static_cast<std::uint64_t>(Op::cancel)));
        conn.cancel_sent = true;
    }
    maybe_release(conn);
}

void ClientLoop::maybe_release(Connection& conn) {
    if (!conn.closing || conn.in_flight > 0) return;
    RP_ASSERT(conn.fd >= 0);
    ::close(conn.fd);
    conn.fd = -1;
    conn.closing = false;
    conn.recv_armed = false;
    conn.send_busy = false;
    conn.wire_busy = false;
    conn.plain_waiting = false;
    conn.tls.reset();
    conn.tls_wire.clear();
    RP_ASSERT(open_count_ > 0);
    open_count_--;
    handler_.on_closed(conn);
}

void ClientLoop::fail(Connection& conn, std::string_view what) {
    if (conn.closing || conn.fd < 0) return;
    handler_.on_error(conn, what);
    close(conn);
}

void ClientLoop::complete(io_uring_cqe* cqe) {
    const std::uint64_t data = io_uring_cqe_get_data64(cqe);
    const auto op = static_cast<Op>(data & ((1u << op_bits) - 1));
    const auto index = static_cast<unsigned>(data >> op_bits);
    if (op == Op::tick) {
        tick_armed_ = false;
        return;
    }
    if (op == Op::cancel) return;
    RP_ASSERT(index < connections_.size());
    Connection& conn = *connections_[index];
    RP_ASSERT(conn.in_flight > 0);
    conn.in_flight--;
    if (op == Op::recv) conn.recv_armed = false;
    if (conn.closing) {
        maybe_release(conn);
        return;
    }
    if (op == Op::connect) {
        if (cqe->res < 0) return fail(conn, errno_label("connect", -cqe->res));
        arm_recv(conn);
        handler_.on_connected(conn);
    } else if (op == Op::send) {
        complete_send(conn, cqe->res);
    } else {
        complete_recv(conn, cqe->res);
    }
}

void ClientLoop::complete_send(Connection& conn, int res) {
    if (res < 0) return fail(conn, errno_label("send", -res));
    auto sent = static_cast<std::size_t>(res);
    while (sent > 0 && conn.iov_first < conn.iov_count) {
        iovec& part = conn.iov[conn.iov_first];
        if (sent < part.iov_len) {
            part.iov_base = static_cast<char*>(part.iov_base) + sent;
            part.iov_len -= sent;
            sent = 0;
        } else {
            sent -= part.iov_len;
            conn.iov_first++;
        }
    }
    if (conn.iov_first < conn.iov_count) return submit_send(conn);  // A short send.
    conn.wire_busy = false;
    if (conn.wire_plain) {
        conn.wire_plain = false;
        conn.send_busy = false;
        const std::uint32_t generation = conn.generation;
        handler_.on_sent(conn);
        if (conn.generation != generation) return;
    }
    // A STARTTLS handshake may have begun while the plain command was still in flight.
    if (conn.tls) flush_tls(conn);
}

void ClientLoop::complete_recv(Connection& conn, int res) {
    if (res < 0) return fail(conn, errno_label("recv", -res));
    if (res == 0) return fail(conn, "closed by server");
    const std::uint32_t generation = conn.generation;
    const std::string_view bytes(conn.rx.data(), static_cast<std::size_t>(res));
    if (conn.tls) {
        receive_tls(conn, bytes);
    } else {
        handler_.on_received(conn, bytes);
    }
    // The handler may have closed (and even reopened) the connection.
    if (conn.generation == generation && conn.fd >= 0 && !conn.closing && !conn.recv_armed) {
        arm_recv(conn);
    }
}

// Ciphertext in: finish the handshake, then hand every decrypted byte to the handler.
void ClientLoop::receive_tls(Connection& conn, std::string_view cipher) {
    const std::uint32_t generation = conn.generation;
    ClientTls& tls = *conn.tls;
    tls.feed(cipher);
    if (!tls.established()) {
        const ClientTls::Step step = tls.handshake();
        flush_tls(conn);
        if (step == ClientTls::Step::failed) return fail(conn, "tls handshake");
        if (step != ClientTls::Step::done) return;
        handler_.on_tls_ready(conn);
        if (conn.generation != generation || conn.fd < 0 || conn.closing) return;
    }
    std::array<char, 16384> plain;
    while (conn.generation == generation && conn.fd >= 0 && !conn.closing && conn.tls) {
        const ClientTls::ReadResult got = conn.tls->read(plain.data(), plain.size());
        if (got.step == ClientTls::Step::want_input) break;
        if (got.step == ClientTls::Step::closed) return fail(conn, "closed by server");
        if (got.step == ClientTls::Step::failed) return fail(conn, "tls read");
        handler_.on_received(conn, std::string_view(plain.data(), got.bytes));
    }
    // Reading may answer the server (alerts, key updates).
    if (conn.generation == generation && conn.tls) flush_tls(conn);
}

void ClientLoop::check_deadlines(std::uint64_t now) {
    for (auto& slot : connections_) {
        Connection& conn = *slot;
        if (conn.deadline_ns != 0 && now >= conn.deadline_ns && conn.fd >= 0) {
            conn.deadline_ns = 0;
            fail(conn, "timeout");
        }
        if (conn.wake_ns != 0 && now >= conn.wake_ns && conn.fd < 0) {
            conn.wake_ns = 0;
            handler_.on_wake(conn);
        }
    }
}

void ClientLoop::arm_tick() {
    RP_ASSERT(!tick_armed_);
    tick_spec_.tv_sec = 0;
    tick_spec_.tv_nsec = static_cast<long long>(tick_ns);
    io_uring_sqe* entry = sqe();
    io_uring_prep_timeout(entry, &tick_spec_, 0, 0);
    io_uring_sqe_set_data64(entry, pack(0, static_cast<std::uint64_t>(Op::tick)));
    tick_armed_ = true;
}

void ClientLoop::run() {
    RP_ASSERT(ring_ready_);
    last_tick_ns_ = now_ns();
    while (!(stopping_ && open_count_ == 0)) {
        if (!tick_armed_) arm_tick();
        const int res = io_uring_submit_and_wait(&ring_, 1);
        if (res < 0 && res != -EINTR && res != -EAGAIN && res != -EBUSY && res != -ETIME) {
            std::fprintf(stderr, "ringpost-bench: io_uring_submit_and_wait: %d\n", res);
            RP_ASSERT(false);
        }
        unsigned head = 0;
        unsigned seen = 0;
        io_uring_cqe* cqe = nullptr;
        io_uring_for_each_cqe(&ring_, head, cqe) {
            complete(cqe);
            seen++;
        }
        io_uring_cq_advance(&ring_, seen);
        const std::uint64_t now = now_ns();
        if (now - last_tick_ns_ >= tick_ns) {
            last_tick_ns_ = now;
            check_deadlines(now);
            handler_.on_tick(now);
        }
    }
}

}  // namespace rp::bench
