#include "core/session.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <new>

#include "core/io_uring.h"
#include "core/limits.h"
#include "core/log.h"
#include "core/tls.h"

namespace rp {
namespace {

constexpr std::uint32_t no_chunk = 0xffffffffu;
constexpr unsigned held_capacity = limits::session_held_buffers_max;
// Stop receiving once this many buffers wait for a paused session: CQEs already on their
// way may still fill the rest.
constexpr unsigned held_stop_count = held_capacity / 4;
constexpr std::uint64_t ns_per_ms = 1'000'000;
constexpr unsigned refusal_kind = 1;
constexpr std::uint64_t accept_retry_ns = 100 * ns_per_ms;

enum Tag : unsigned { tag_recv = 0, tag_send = 1, tag_cancel = 2, tag_splice_in = 3, tag_splice_out = 4 };

std::string peer_text_of(const sockaddr_storage& peer) {
    char text[INET6_ADDRSTRLEN] = {};
    if (peer.ss_family == AF_INET) {
        const auto* v4 = reinterpret_cast<const sockaddr_in*>(&peer);
        inet_ntop(AF_INET, &v4->sin_addr, text, sizeof(text));
    } else if (peer.ss_family == AF_INET6) {
        const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&peer);
        inet_ntop(AF_INET6, &v6->sin6_addr, text, sizeof(text));
    } else {
        return "unknown";
    }
    return text;
}

}  // namespace

// ---- IpLimiter ----

IpLimiter::IpLimiter() : slots_(new std::atomic<std::uint32_t>[limits::ip_limiter_slots]) {
    for (unsigned i = 0; i < limits::ip_limiter_slots; ++i) slots_[i].store(0);
}

std::uint64_t IpLimiter::key_of(const sockaddr_storage& address) {
    // FNV-1a over the address bytes; IPv4-mapped IPv6 counts as the IPv4 address.
    const unsigned char* bytes = nullptr;
    std::size_t count = 0;
    if (address.ss_family == AF_INET) {
        bytes = reinterpret_cast<const unsigned char*>(
            &reinterpret_cast<const sockaddr_in*>(&address)->sin_addr);
        count = 4;
    } else if (address.ss_family == AF_INET6) {
        const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&address);
        bytes = v6->sin6_addr.s6_addr;
        count = 16;
        if (IN6_IS_ADDR_V4MAPPED(&v6->sin6_addr)) {
            bytes += 12;
            count = 4;
        }
    }
    std::uint64_t hash = 1469598103934665603ull;
    for (std::size_t i = 0; i < count; ++i) {
        hash ^= bytes[i];
        hash *= 1099511628211ull;
    }
    return hash;
}

bool IpLimiter::acquire(std::uint64_t key, unsigned limit) {
    auto& slot = slots_[key & (limits::ip_limiter_slots - 1)];
    std::uint32_t before = slot.fetch_add(1, std::memory_order_relaxed);
    if (limit != 0 && before >= limit) {
        slot.fetch_sub(1, std::memory_order_relaxed);
        return false;
    }
    return true;
}

void IpLimiter::release(std::uint64_t key) {
    auto& slot = slots_[key & (limits::ip_limiter_slots - 1)];
    std::uint32_t before = slot.fetch_sub(1, std::memory_order_relaxed);
    RP_ASSERT(before > 0);
}

unsigned IpLimiter::count(std::uint64_t key) const {
    return slots_[key & (limits::ip_limiter_slots - 1)].load(std::memory_order_relaxed);
}

// ---- Listener ----

class alignas(8) SessionDriver::Listener final : public CqeHandler, public Timer {
public:
    Listener(SessionDriver& driver, int fd, ProtocolFactory& factory, std::string_view kind,
             bool implicit_tls)
        : driver_(driver), fd_(fd), factory_(factory), kind_(kind), implicit_tls_(implicit_tls) {}
    ~Listener() {
        if (fd_ >= 0) close(fd_);
    }

    void arm() {
        io_uring_sqe* sqe = driver_.reactor_.sqe();
        io_uring_prep_multishot_accept(sqe, fd_, nullptr, nullptr, SOCK_CLOEXEC);
        io_uring_sqe_set_data64(sqe, Reactor::user_data(this, tag_recv));
        armed_ = true;
    }
    void stop() {
        if (stopping_) return;
        stopping_ = true;
        driver_.reactor_.timer_cancel(*this);
        if (armed_) {
            io_uring_sqe* sqe = driver_.reactor_.sqe();
            io_uring_prep_cancel64(sqe, Reactor::user_data(this, tag_recv), 0);
            io_uring_sqe_set_data64(sqe, 0);
        } else {
            close_fd();
        }
    }
    bool closed() const { return fd_ < 0; }
    ProtocolFactory& factory() { return factory_; }
    std::string_view kind() const { return kind_; }
    bool implicit_tls() const { return implicit_tls_; }

    void on_cqe(const io_uring_cqe& cqe, unsigned /*tag*/) override {
        if ((cqe.flags & IORING_CQE_F_MORE) == 0) armed_ = false;
        if (cqe.res >= 0) {
            driver_.accepted(cqe.res, *this);
        } else if (cqe.res != -ECANCELED) {
            // EMFILE, ENFILE, ENOMEM: the kernel keeps the connection queued; retry soon.
            log::warn("shard {}: accept on {} listener: {}", driver_.options_.shard_index,
                      kind_, status_name(UringIo::status_of(cqe.res)));
        }
        if (armed_) return;
        if (stopping_) {
            close_fd();
        } else if (cqe.res >= 0) {
            arm();
        } else {
            driver_.reactor_.timer_arm(*this, accept_retry_ns);
        }
    }
    void on_timer() override {
        if (!stopping_ && !armed_) arm();
    }

private:
    void close_fd() {
        if (fd_ >= 0) close(fd_);
        fd_ = -1;
    }

    SessionDriver& driver_;
    int fd_;
    ProtocolFactory& factory_;
    std::string kind_;
    bool implicit_tls_ = false;
    bool armed_ = false;
    bool stopping_ = false;
};

// ---- Connection ----

class alignas(8) Connection final : public SessionOutput,
                                    public CqeHandler,
                                    public Timer,
                                    public Deferred,
                                    public tls::TlsSink {
public:
    enum class State : std::uint8_t { free, open, dying };

    void init(SessionDriver& driver, std::uint32_t slot) {
        driver_ = &driver;
        slot_ = slot;
    }
    State state() const { return state_; }
    std::uint32_t generation() const { return generation_; }

    void open(int fd, const sockaddr_storage& peer, socklen_t peer_bytes, std::uint64_t ip_key,
              SessionDriver::Listener& listener);
    void drain();
    void close_now(Status reason);

    // SessionOutput.
    void write(std::span<const std::byte> bytes) override;
    void close_after_flush() override;
    void pause_reading() override { paused_ = true; }
    void resume_reading() override;
    void set_timeout_ms(std::uint64_t ms) override;
    SessionHandle handle() const override { return {slot_, generation_}; }
    std::size_t output_queued_bytes() const override { return queued_bytes(); }
    bool start_tls() override;
    bool send_file(int fd, std::uint64_t offset, std::uint64_t bytes,
                   FileSendDone& done) override;
    bool tls_active() const override { return tls_ != nullptr; }
    // TlsSink: ciphertext into the send queue.
    bool tls_send(std::span<const std::byte> bytes) override {
        raw_write(bytes);
        return fail_ == Status::ok;
    }

    // CqeHandler, Timer, Deferred.
    void on_cqe(const io_uring_cqe& cqe, unsigned tag) override;
    void on_timer() override;
    void on_deferred() override;

    void rearm_after_starve();
    bool starved() const { return starved_; }
    void mark_starved() { starved_ = true; }

private:
    struct Held {
        BufferRef buffer;
        std::uint32_t offset = 0;
        bool offered = false;
    };
    // The send_file range queued (done != null): chunk bytes ahead of it go first, then the
    // range moves file -> pipe -> socket, one splice in flight at a time (in send_in_flight_).
    struct FileSend {
        FileSendDone* done = nullptr;
        // Our own duplicate of the caller's descriptor: a splice still in flight when the
        // session closes (and the caller drops its pin on the file) reads through it, never
        // through a number the shard may have reused meanwhile. Closed when no splice uses it.
        int fd = -1;
        std::uint64_t offset = 0;
        std::uint64_t left = 0;       // Not yet in the pipe.
        std::uint32_t in_pipe = 0;    // In the pipe, not yet sent.
        std::size_t before = 0;       // Chunk bytes queued ahead of the range.
        bool splice_in_flight = false;
        SessionDriver::Pipe pipe;
    };

    std::size_t queued_bytes() const {
        // bounds: a file range is at most what a segment holds (< 2^32).
        return out_bytes_ + (file_.done != nullptr ? file_.left + file_.in_pipe : 0);
    }
    bool can_feed() const {
        return state_ == State::open && !closing_ && !paused_ && fail_ == Status::ok &&
               !tls_pending_ && queued_bytes() < limits::session_output_high_bytes;
    }
    void file_step();
    void on_splice(const io_uring_cqe& cqe, bool in);
    void file_finish(Status status);
    void file_fd_close();
    void output_progress(bool was_blocked);
    void open_protocol();
    void raw_write(std::span<const std::byte> bytes);
    void begin_tls();
    bool feed_tls_one();
    bool tls_handshake_step();
    void tls_handshake_done();
    void held_advance(std::size_t count);
    void arm_recv();
    void stop_recv();
    void on_recv(const io_uring_cqe& cqe);
    void on_send(const io_uring_cqe& cqe);
    void feed();
    bool feed_one();
    void offer_staging();
    void held_pop();
    void flush();
    void fail(Status status);
    void release_buffers();
    void maybe_finalize();

    SessionDriver* driver_ = nullptr;
    ProtocolSession* proto_ = nullptr;
    int fd_ = -1;
    std::uint32_t slot_ = 0;
    std::uint32_t generation_ = 0;
    std::uint64_t ip_key_ = 0;
    bool ip_counted_ = false;
    State state_ = State::free;
    Status fail_ = Status::ok;          // A failure found inside a protocol callback.
    bool in_callback_ = false;
    bool closing_ = false;              // close_after_flush() was called.
    bool paused_ = false;
    bool reoffer_ = false;              // Staging must be offered again (after a resume).
    bool eof_ = false;
    bool recv_armed_ = false;
    bool recv_stopped_ = false;         // Cancelled for backpressure.
    bool starved_ = false;
    bool send_in_flight_ = false;
    bool timeout_set_ = false;
    std::uint8_t cancels_in_flight_ = 0;
    Held held_[held_capacity];
    std::uint8_t held_head_ = 0;
    std::uint8_t held_count_ = 0;
    std::uint32_t staging_ = no_chunk;
    std::uint32_t staging_bytes_ = 0;
    std::uint32_t out_head_ = no_chunk;  // Chunks linked by chunk_next_; head is sent first.
    std::uint32_t out_tail_ = no_chunk;
    std::uint32_t out_head_begin_ = 0;   // Sent bytes of the head chunk.
    std::uint32_t out_tail_end_ = 0;     // Filled bytes of the tail chunk.
    std::uint32_t out_chunk_count_ = 0;
    std::size_t out_bytes_ = 0;
    // TLS.
    SessionDriver::Listener* listener_ = nullptr;
    sockaddr_storage peer_{};
    socklen_t peer_bytes_ = 0;
    FileSend file_;
    std::unique_ptr<tls::TlsStream> tls_;
    std::string tls_early_output_;      // Written while the handshake runs (sent after it).
    bool tls_pending_ = false;          // start_tls() called; begins after the callback.
};

namespace {

// Marks a protocol callback, so that nothing inside it destroys the protocol object.
class CallbackScope {
public:
    explicit CallbackScope(bool& flag) : flag_(flag) {
        RP_ASSERT(!flag_);
        flag_ = true;
    }
    ~CallbackScope() { flag_ = false; }
    CallbackScope(const CallbackScope&) = delete;
    CallbackScope& operator=(const CallbackScope&) = delete;

private:
    bool& flag_;
};

}  // namespace

void Connection::open(int fd, const sockaddr_storage& peer, socklen_t peer_bytes,
                      std::uint64_t ip_key, SessionDriver::Listener& listener) {
    RP_ASSERT(state_ == State::free);
    RP_ASSERT(fd >= 0);
    fd_ = fd;
    ++generation_;
    ip_key_ = ip_key;
    ip_counted_ = true;
    state_ = State::open;
    fail_ = Status::ok;
    // starved_ is not reset: it means "listed in the driver's starved list", and an entry
    // left by the previous session of this slot is still there.
    closing_ = paused_ = reoffer_ = eof_ = recv_stopped_ = timeout_set_ = false;
    tls_pending_ = false;
    RP_ASSERT(tls_ == nullptr);
    listener_ = &listener;
    peer_ = peer;
    peer_bytes_ = peer_bytes;
    arm_recv();
    if (listener.implicit_tls()) {
        // The protocol starts once the handshake is done (tls_handshake_done).
        if (driver_->tls_context_ != nullptr) {
            tls_ = tls::TlsStream::server(driver_->tls_context_, *this, listener_->kind());
        }
        if (tls_ == nullptr) {
            fail(Status::tls);
        } else {
            driver_->reactor_.timer_arm(*this, driver_->options_.tls_handshake_timeout_ms * ns_per_ms);
        }
        driver_->reactor_.defer(*this);
        return;
    }
    open_protocol();
}

void Connection::open_protocol() {
    RP_ASSERT(proto_ == nullptr);
    RP_ASSERT(state_ == State::open);
    proto_ = listener_->factory().create(driver_->slot_memory(slot_));
    RP_ASSERT(proto_ != nullptr);
    driver_->reactor_.timer_arm(*this, listener_->factory().open_timeout_ms() * ns_per_ms);
    std::string text = peer_text_of(peer_);
    SessionInfo info;
    info.peer = peer_;
    info.peer_bytes = peer_bytes_;
    info.peer_text = text;
    info.listener_kind = listener_->kind();
    info.handle = handle();
    info.shard_index = driver_->options_.shard_index;
    info.tls_active = tls_ != nullptr;
    info.tls_available = tls_ == nullptr && driver_->tls_context_ != nullptr;
    {
        CallbackScope scope(in_callback_);
        proto_->on_open(info, *this);
    }
    driver_->reactor_.defer(*this);
}

bool Connection::start_tls() {
    if (state_ != State::open || closing_ || tls_ != nullptr || tls_pending_) return false;
    if (driver_->tls_context_ == nullptr) return false;
    tls_pending_ = true;
    driver_->reactor_.defer(*this);
    return true;
}

// STARTTLS takes effect: drop every plaintext byte received so far and start the handshake.
void Connection::begin_tls() {
    RP_ASSERT(tls_pending_);
    RP_ASSERT(tls_ == nullptr);
    tls_pending_ = false;
    while (held_count_ > 0) held_pop();
    if (staging_ != no_chunk) driver_->chunk_give(staging_);
    staging_ = no_chunk;
    staging_bytes_ = 0;
    reoffer_ = false;
    paused_ = false;
    if (driver_->tls_context_ != nullptr) {
        tls_ = tls::TlsStream::server(driver_->tls_context_, *this, listener_->kind());
    }
    if (tls_ == nullptr) {
        fail(Status::tls);
        return;
    }
    driver_->reactor_.timer_arm(*this, driver_->options_.tls_handshake_timeout_ms * ns_per_ms);
    timeout_set_ = true;
    if (recv_stopped_) {
        recv_stopped_ = false;
        if (!recv_armed_ && !eof_ && !starved_) arm_recv();
    }
}

void Connection::arm_recv() {
    RP_ASSERT(!recv_armed_);
    RP_ASSERT(fd_ >= 0);
    io_uring_sqe* sqe = driver_->reactor_.sqe();
    io_uring_prep_recv_multishot(sqe, fd_, nullptr, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = driver_->buffers_.group_id();
    io_uring_sqe_set_data64(sqe, Reactor::user_data(this, tag_recv));
    recv_armed_ = true;
}

void Connection::stop_recv() {
    if (recv_stopped_) return;
    recv_stopped_ = true;
    if (!recv_armed_) return;
    io_uring_sqe* sqe = driver_->reactor_.sqe();
    io_uring_prep_cancel64(sqe, Reactor::user_data(this, tag_recv), 0);
    io_uring_sqe_set_data64(sqe, Reactor::user_data(this, tag_cancel));
    ++cancels_in_flight_;
}

void Connection::on_cqe(const io_uring_cqe& cqe, unsigned tag) {
    switch (tag) {
        case tag_recv: on_recv(cqe); break;
        case tag_send: on_send(cqe); break;
        case tag_splice_in: on_splice(cqe, true); break;
        case tag_splice_out: on_splice(cqe, false); break;
        case tag_cancel:
            RP_ASSERT(cancels_in_flight_ > 0);
            --cancels_in_flight_;
            break;
        default: RP_ASSERT(false);
    }
    maybe_finalize();
}

void Connection::on_recv(const io_uring_cqe& cqe) {
    RP_ASSERT(recv_armed_);
    if ((cqe.flags & IORING_CQE_F_MORE) == 0) recv_armed_ = false;
    BufferRef buffer;
    if ((cqe.flags & IORING_CQE_F_BUFFER) != 0 && cqe.res > 0) {
        buffer = driver_->buffers_.take(cqe);
    }
    if (state_ != State::open) return;  // Dying: the buffer goes straight back.
    if (cqe.res > 0) {
        if (closing_) return;  // Input after close_after_flush() is discarded.
        if (held_count_ == held_capacity) {
            // More arrived after we stopped receiving than we can hold.
            fail(Status::full);
        } else {
            Held& slot = held_[(held_head_ + held_count_) % held_capacity];
            slot.buffer = std::move(buffer);
            slot.offset = 0;
            slot.offered = false;
            ++held_count_;
            feed();
        }
    } else if (cqe.res == 0) {
        eof_ = true;
        feed();
    } else if (cqe.res == -ENOBUFS) {
        // Backpressure: every receive buffer is taken. Re-armed by the driver's tick.
        if (!recv_armed_) driver_->starve(*this);
    } else if (cqe.res != -ECANCELED) {
        fail(UringIo::status_of(cqe.res));
    }
    if (state_ == State::open && !recv_armed_ && !recv_stopped_ && !eof_ && !starved_ &&
        !closing_ && fail_ == Status::ok) {
        arm_recv();  // The kernel ended the multishot for its own reasons.
    }
    if (fail_ != Status::ok) driver_->reactor_.defer(*this);
}

void Connection::held_pop() {
    RP_ASSERT(held_count_ > 0);
    held_[held_head_].buffer.reset();
    held_head_ = static_cast<std::uint8_t>((held_head_ + 1) % held_capacity);
    --held_count_;
}

void Connection::feed() {
    if (in_callback_) {
        // resume_reading() or a write from inside the protocol: feed after it returns.
        driver_->reactor_.defer(*this);
        return;
    }
    if (tls_ != nullptr) {
        while (can_feed() && feed_tls_one()) {
        }
    } else {
        while (can_feed() && feed_one()) {
        }
    }
    reoffer_ = false;
    if (state_ != State::open) return;
    if (!can_feed() && held_count_ >= held_stop_count && !closing_) stop_recv();
    if (can_feed() && recv_stopped_ && held_count_ == 0) {
        recv_stopped_ = false;
        if (!recv_armed_ && !eof_ && !starved_) arm_recv();
    }
    if (can_feed() && eof_ && held_count_ == 0) {
        // The peer finished sending and everything it sent was offered: close after our
        // replies are out.
        close_after_flush();
    }
    if (fail_ != Status::ok || closing_) driver_->reactor_.defer(*this);
}

// Offers the next input; false when there is nothing new to offer.
bool Connection::feed_one() {
    if (held_count_ == 0) {
        if (!reoffer_ || staging_bytes_ == 0) return false;
        reoffer_ = false;
        offer_staging();
        return true;
    }
    Held& held = held_[held_head_];
    if (staging_bytes_ == 0 && !held.offered) {
        auto bytes = held.buffer.bytes().subspan(held.offset);
        std::size_t consumed = 0;
        {
            CallbackScope scope(in_callback_);
            consumed = proto_->on_bytes(bytes, &held.buffer, *this);
        }
        RP_ASSERT(consumed <= bytes.size());
        if (!held.buffer) {
            // The protocol kept the buffer (zero copy). Its unconsumed tail is still valid
            // memory (the protocol's BufferRef holds it and nothing ran since): stage it.
            auto rest = bytes.subspan(consumed);
            held_pop();
            if (rest.empty()) return true;
            RP_ASSERT(staging_ == no_chunk);
            if (rest.size() > limits::session_chunk_bytes) {
                fail(Status::too_big);
                return false;
            }
            staging_ = driver_->chunk_take();
            if (staging_ == no_chunk) {
                fail(Status::full);
                return false;
            }
            std::memcpy(driver_->chunk_data(staging_), rest.data(), rest.size());
            staging_bytes_ = static_cast<std::uint32_t>(rest.size());
            return true;
        }
        held.offset += static_cast<std::uint32_t>(consumed);  // bounds: <= buffer size.
        if (held.offset == held.buffer.size()) {
            held_pop();
            return true;
        }
        // The rest waits for more bytes in staging; when the protocol paused, it stays
        // held and goes through staging after the resume.
        held.offered = true;
        std::uint32_t rest_bytes = held.buffer.size() - held.offset;
        if (!can_feed() || rest_bytes > limits::session_chunk_bytes) return true;
        staging_ = driver_->chunk_take();
        if (staging_ == no_chunk) {
            fail(Status::full);
            return false;
        }
        std::memcpy(driver_->chunk_data(staging_), held.buffer.bytes().data() + held.offset,
                    rest_bytes);
        staging_bytes_ = rest_bytes;
        held_pop();
        return true;
    }
    // Staging path: append what fits of the next held buffer, then offer the whole.
    if (staging_ == no_chunk) {
        staging_ = driver_->chunk_take();
        if (staging_ == no_chunk) {
            fail(Status::full);
            return false;
        }
    }
    auto rest = held.buffer.bytes().subspan(held.offset);
    std::uint32_t space = limits::session_chunk_bytes - staging_bytes_;
    auto count = static_cast<std::uint32_t>(std::min<std::size_t>(space, rest.size()));
    std::memcpy(driver_->chunk_data(staging_) + staging_bytes_, rest.data(), count);
    staging_bytes_ += count;  // bounds: count <= space.
    held.offset += count;
    if (held.offset == held.buffer.size()) held_pop();
    offer_staging();
    return fail_ == Status::ok;
}

// Consumes `count` bytes of the head held buffer (ciphertext given to wolfSSL).
void Connection::held_advance(std::size_t count) {
    RP_ASSERT(held_count_ > 0);
    Held& held = held_[held_head_];
    RP_ASSERT(count <= held.buffer.size() - held.offset);
    held.offset += static_cast<std::uint32_t>(count);  // bounds: checked just above.
    if (held.offset == held.buffer.size()) held_pop();
}

// TLS: runs the handshake, or decrypts the next records into staging and offers them.
// False when nothing more can be done until more ciphertext arrives.
bool Connection::feed_tls_one() {
    RP_ASSERT(tls_ != nullptr);
    if (!tls_->established()) return tls_handshake_step();
    if (reoffer_ && staging_bytes_ > 0) {
        reoffer_ = false;
        offer_staging();
        return fail_ == Status::ok;
    }
    if (staging_ == no_chunk) {
        staging_ = driver_->chunk_take();
        if (staging_ == no_chunk) {
            fail(Status::full);
            return false;
        }
    }
    std::uint32_t space = limits::session_chunk_bytes - staging_bytes_;
    if (space == 0) {
        offer_staging();
        return fail_ == Status::ok && staging_bytes_ < limits::session_chunk_bytes;
    }
    std::span<const std::byte> input;
    if (held_count_ > 0) {
        const Held& held = held_[held_head_];
        input = held.buffer.bytes().subspan(held.offset);
    }
    tls_->set_input(input);
    auto result = tls_->read({driver_->chunk_data(staging_) + staging_bytes_, space});
    std::size_t consumed = tls_->input_consumed();
    if (consumed > 0) held_advance(consumed);
    switch (result.step) {
        case tls::TlsStream::Step::done:
            RP_ASSERT(result.bytes <= space);
            staging_bytes_ += static_cast<std::uint32_t>(result.bytes);  // bounds: <= space.
            offer_staging();
            return fail_ == Status::ok;
        case tls::TlsStream::Step::want_input:
            if (staging_bytes_ == 0) {
                driver_->chunk_give(staging_);
                staging_ = no_chunk;
            }
            return consumed > 0 && held_count_ > 0;
        case tls::TlsStream::Step::closed:
            // close_notify: what follows is not ours to read.
            while (held_count_ > 0) held_pop();
            eof_ = true;
            return false;
        case tls::TlsStream::Step::failed:
            ++driver_->stats_.tls_failures;
            log::info("shard {}: TLS record error from {}: {}", driver_->options_.shard_index,
                      peer_text_of(peer_), tls_->last_error());
            fail(Status::tls);
            return false;
    }
    return false;
}

bool Connection::tls_handshake_step() {
    if (held_count_ == 0) return false;
    const Held& held = held_[held_head_];
    tls_->set_input(held.buffer.bytes().subspan(held.offset));
    tls::TlsStream::Step step = tls_->handshake();
    std::size_t consumed = tls_->input_consumed();
    if (consumed > 0) held_advance(consumed);
    switch (step) {
        case tls::TlsStream::Step::done:
            tls_handshake_done();
            return fail_ == Status::ok;
        case tls::TlsStream::Step::want_input:
            return consumed > 0;
        case tls::TlsStream::Step::closed:
        case tls::TlsStream::Step::failed:
            break;
    }
    // Garbage instead of a ClientHello, no common cipher, an alert: close (no reply to send
    // in plaintext; wolfSSL may have queued an alert).
    ++driver_->stats_.tls_failures;
    log::info("shard {}: TLS handshake with {} failed: {}", driver_->options_.shard_index,
              peer_text_of(peer_), tls_->last_error());
    while (held_count_ > 0) held_pop();
    close_after_flush();
    return false;
}

void Connection::tls_handshake_done() {
    ++driver_->stats_.tls_handshakes;
    log::debug("shard {}: TLS {} {} with {}{}", driver_->options_.shard_index, tls_->version(),
               tls_->cipher(), peer_text_of(peer_), tls_->resumed() ? " (resumed)" : "");
    if (!tls_early_output_.empty()) {
        std::string early = std::move(tls_early_output_);
        tls_early_output_.clear();
        write({reinterpret_cast<const std::byte*>(early.data()), early.size()});
    }
    if (proto_ == nullptr) {
        open_protocol();  // Implicit TLS: the protocol starts now (greeting encrypted).
        return;
    }
    driver_->reactor_.timer_arm(*this, listener_->factory().open_timeout_ms() * ns_per_ms);
    timeout_set_ = true;
    {
        CallbackScope scope(in_callback_);
        proto_->on_tls_started(*this);
    }
    driver_->reactor_.defer(*this);
}

void Connection::offer_staging() {
    RP_ASSERT(staging_ != no_chunk);
    RP_ASSERT(staging_bytes_ > 0);
    std::byte* data = driver_->chunk_data(staging_);
    std::size_t consumed = 0;
    {
        CallbackScope scope(in_callback_);
        consumed = proto_->on_bytes({data, staging_bytes_}, nullptr, *this);
    }
    RP_ASSERT(consumed <= staging_bytes_);
    if (consumed == 0 && staging_bytes_ == limits::session_chunk_bytes && !paused_ &&
        !closing_) {
        // The protocol holds a full chunk without progress; it broke the on_bytes rule
        // for this peer's input. Close this session rather than wait forever.
        log::warn("shard {}: session made no progress on {} staged bytes; closing",
                  driver_->options_.shard_index, staging_bytes_);
        fail(Status::too_big);
        return;
    }
    staging_bytes_ -= static_cast<std::uint32_t>(consumed);
    if (staging_bytes_ == 0) {
        driver_->chunk_give(staging_);
        staging_ = no_chunk;
    } else if (consumed > 0) {
        std::memmove(data, data + consumed, staging_bytes_);
    }
}

void Connection::write(std::span<const std::byte> bytes) {
    if (state_ != State::open || fail_ != Status::ok) return;
    if (tls_ == nullptr) {
        raw_write(bytes);
        return;
    }
    if (!tls_->established()) {
        // Only a protocol that writes after start_tls() gets here; bounded like staging.
        if (tls_early_output_.size() + bytes.size() > limits::session_chunk_bytes) {
            fail(Status::full);
        } else {
            tls_early_output_.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
        }
        return;
    }
    if (tls_->write(bytes) != Status::ok) fail(Status::full);
    driver_->reactor_.defer(*this);
}

void Connection::raw_write(std::span<const std::byte> bytes) {
    if (state_ != State::open || fail_ != Status::ok) return;
    while (!bytes.empty()) {
        if (out_tail_ == no_chunk || out_tail_end_ == limits::session_chunk_bytes) {
            std::uint32_t chunk = no_chunk;
            if (out_chunk_count_ < limits::session_output_chunks_max) {
                chunk = driver_->chunk_take();
            }
            if (chunk == no_chunk) {
                fail(Status::full);
                break;
            }
            if (out_tail_ == no_chunk) {
                out_head_ = chunk;
                out_head_begin_ = 0;
            } else {
                driver_->chunk_next_[out_tail_] = chunk;
            }
            out_tail_ = chunk;
            out_tail_end_ = 0;
            ++out_chunk_count_;
        }
        std::uint32_t space = limits::session_chunk_bytes - out_tail_end_;
        auto count = static_cast<std::uint32_t>(std::min<std::size_t>(space, bytes.size()));
        std::memcpy(driver_->chunk_data(out_tail_) + out_tail_end_, bytes.data(), count);
        out_tail_end_ += count;  // bounds: count <= space.
        out_bytes_ += count;
        bytes = bytes.subspan(count);
    }
    driver_->reactor_.defer(*this);
}

void Connection::flush() {
    if (send_in_flight_ || state_ != State::open) return;
    if (file_.done != nullptr && file_.before == 0) {
        file_step();
        return;
    }
    if (out_bytes_ == 0) return;
    RP_ASSERT(out_head_ != no_chunk);
    std::uint32_t end = out_head_ == out_tail_ ? out_tail_end_ : limits::session_chunk_bytes;
    RP_ASSERT(end > out_head_begin_);
    std::uint32_t length = end - out_head_begin_;
    // Bytes written after send_file() wait for the range.
    if (file_.done != nullptr) length = static_cast<std::uint32_t>(std::min<std::size_t>(length, file_.before));
    io_uring_sqe* sqe = driver_->reactor_.sqe();
    io_uring_prep_send(sqe, fd_, driver_->chunk_data(out_head_) + out_head_begin_, length,
                       MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, Reactor::user_data(this, tag_send));
    send_in_flight_ = true;
}

void Connection::on_send(const io_uring_cqe& cqe) {
    RP_ASSERT(send_in_flight_);
    send_in_flight_ = false;
    if (state_ != State::open) {
        // Dying: the head chunk was kept for the kernel until now.
        if (out_head_ != no_chunk) driver_->chunk_give(out_head_);
        out_head_ = out_tail_ = no_chunk;
        return;
    }
    if (cqe.res < 0) {
        fail(UringIo::status_of(cqe.res));
        driver_->reactor_.defer(*this);
        return;
    }
    bool was_blocked = queued_bytes() >= limits::session_output_high_bytes;
    auto sent = static_cast<std::uint32_t>(cqe.res);
    out_head_begin_ += sent;  // bounds: the kernel sent at most what we offered.
    out_bytes_ -= sent;
    if (file_.done != nullptr) {
        RP_ASSERT(sent <= file_.before);  // flush() offered no more than that.
        file_.before -= sent;
    }
    std::uint32_t end = out_head_ == out_tail_ ? out_tail_end_ : limits::session_chunk_bytes;
    RP_ASSERT(out_head_begin_ <= end);
    if (out_head_begin_ == end) {
        std::uint32_t next = driver_->chunk_next_[out_head_];
        bool last = out_head_ == out_tail_;
        driver_->chunk_give(out_head_);
        --out_chunk_count_;
        out_head_begin_ = 0;
        if (last) {
            out_head_ = out_tail_ = no_chunk;
            out_tail_end_ = 0;
        } else {
            out_head_ = next;
        }
    }
    output_progress(was_blocked);
}

// After a send or splice completed: tell a protocol that was held back by a full queue.
void Connection::output_progress(bool was_blocked) {
    if (was_blocked && queued_bytes() < limits::session_output_high_bytes) {
        {
            CallbackScope scope(in_callback_);
            proto_->on_output_drained(*this);
        }
        reoffer_ = true;
        feed();
    }
    driver_->reactor_.defer(*this);
}

bool Connection::send_file(int fd, std::uint64_t offset, std::uint64_t bytes,
                           FileSendDone& done) {
    RP_ASSERT(fd >= 0);
    RP_ASSERT(bytes > 0);
    if (state_ != State::open || closing_ || fail_ != Status::ok) return false;
    // Under TLS the bytes must be encrypted in user space: the caller copies them.
    if (tls_ != nullptr || tls_pending_ || file_.done != nullptr ||
        !driver_->pipe_take(file_.pipe)) {
        ++driver_->stats_.file_send_refused;
        return false;
    }
    // One short system call per range (ranges are large: splice_bytes_min).
    const int own = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (own < 0) {
        driver_->pipe_give(file_.pipe, true);
        ++driver_->stats_.file_send_refused;
        return false;
    }
    file_.done = &done;
    file_.fd = own;
    file_.offset = offset;
    file_.left = bytes;
    file_.in_pipe = 0;
    file_.before = out_bytes_;
    file_.splice_in_flight = false;
    ++driver_->stats_.file_sends;
    driver_->reactor_.defer(*this);
    return true;
}

// Starts the next splice of the range: drain the pipe into the socket, else refill it.
void Connection::file_step() {
    RP_ASSERT(file_.done != nullptr);
    RP_ASSERT(!send_in_flight_);
    io_uring_sqe* sqe = driver_->reactor_.sqe();
    if (file_.in_pipe > 0) {
        io_uring_prep_splice(sqe, file_.pipe.read_fd, -1, fd_, -1, file_.in_pipe, 0);
        io_uring_sqe_set_data64(sqe, Reactor::user_data(this, tag_splice_out));
    } else {
        RP_ASSERT(file_.left > 0);
        const auto length =
            static_cast<unsigned>(std::min<std::uint64_t>(file_.left, file_.pipe.bytes));
        io_uring_prep_splice(sqe, file_.fd, static_cast<std::int64_t>(file_.offset),
                             file_.pipe.write_fd, -1, length, 0);
        io_uring_sqe_set_data64(sqe, Reactor::user_data(this, tag_splice_in));
    }
    send_in_flight_ = true;
    file_.splice_in_flight = true;
}

void Connection::on_splice(const io_uring_cqe& cqe, bool in) {
    RP_ASSERT(send_in_flight_);
    RP_ASSERT(file_.splice_in_flight);
    send_in_flight_ = false;
    file_.splice_in_flight = false;
    if (state_ != State::open) {
        // Dying: file_sent already ran in close_now; the pipe may hold bytes: close it.
        driver_->pipe_give(file_.pipe, false);
        file_fd_close();
        if (out_head_ != no_chunk) driver_->chunk_give(out_head_);
        out_head_ = out_tail_ = no_chunk;
        return;
    }
    if (cqe.res <= 0) {
        // 0 from the file: it is shorter than the range (a bug upstream or a damaged store).
        fail(cqe.res < 0 ? UringIo::status_of(cqe.res) : Status::io);
        driver_->reactor_.defer(*this);
        return;
    }
    const bool was_blocked = queued_bytes() >= limits::session_output_high_bytes;
    const auto moved = static_cast<std::uint32_t>(cqe.res);
    if (in) {
        RP_ASSERT(moved <= file_.left);
        file_.left -= moved;
        file_.offset += moved;
        file_.in_pipe += moved;  // bounds: at most the pipe's capacity.
    } else {
        RP_ASSERT(moved <= file_.in_pipe);
        file_.in_pipe -= moved;
        driver_->stats_.file_bytes += moved;
    }
    if (file_.left == 0 && file_.in_pipe == 0) file_finish(Status::ok);
    output_progress(was_blocked);
}

// The range is sent (ok) or abandoned: return the pipe and tell the protocol.
void Connection::file_finish(Status status) {
    RP_ASSERT(file_.done != nullptr);
    FileSendDone* done = file_.done;
    file_.done = nullptr;
    // A splice in flight still uses the pipe: on_splice closes it when it completes.
    if (!file_.splice_in_flight) {
        driver_->pipe_give(file_.pipe, file_.in_pipe == 0);
        file_fd_close();
    }
    file_.left = 0;
    file_.in_pipe = 0;
    CallbackScope scope(in_callback_);
    done->file_sent(status);
}

void Connection::file_fd_close() {
    if (file_.fd >= 0) (void)::close(file_.fd);
    file_.fd = -1;
}

void Connection::on_deferred() {
    if (state_ != State::open) return;
    if (tls_pending_ && fail_ == Status::ok) {
        begin_tls();
        reoffer_ = true;
    }
    if (fail_ != Status::ok) {
        close_now(fail_);
        return;
    }
    if (reoffer_) feed();
    if (state_ != State::open) return;
    if (fail_ != Status::ok) {
        close_now(fail_);
        return;
    }
    flush();
    if (closing_ && queued_bytes() == 0 && !send_in_flight_) close_now(Status::ok);
}

void Connection::close_after_flush() {
    if (closing_ || state_ != State::open) return;
    if (tls_ != nullptr && fail_ == Status::ok) tls_->shutdown();  // close_notify.
    closing_ = true;
    // Held input stays until close_now(): the protocol may be reading one of these buffers
    // right now (close_after_flush from inside on_bytes).
    driver_->reactor_.timer_arm(*this, limits::session_close_flush_ms * ns_per_ms);
    timeout_set_ = true;
    driver_->reactor_.defer(*this);
}

void Connection::resume_reading() {
    if (state_ != State::open) return;
    paused_ = false;
    reoffer_ = true;
    driver_->reactor_.defer(*this);
}

void Connection::set_timeout_ms(std::uint64_t ms) {
    if (state_ != State::open || closing_) return;
    driver_->reactor_.timer_arm(*this, ms * ns_per_ms);
    timeout_set_ = true;
}

void Connection::on_timer() {
    if (state_ != State::open) return;
    if (closing_) {
        close_now(Status::timeout);  // The peer does not read our last replies.
        return;
    }
    ++driver_->stats_.timed_out;
    timeout_set_ = false;
    if (proto_ == nullptr || (tls_ != nullptr && !tls_->established())) {
        close_now(Status::timeout);  // The TLS handshake stalled.
        return;
    }
    {
        CallbackScope scope(in_callback_);
        proto_->on_timeout(*this);
    }
    if (state_ == State::open && !closing_ && !timeout_set_) close_after_flush();
    driver_->reactor_.defer(*this);
}

void Connection::drain() {
    if (state_ != State::open || closing_) return;
    if (proto_ == nullptr) {
        close_after_flush();  // Still in the implicit TLS handshake.
        return;
    }
    {
        CallbackScope scope(in_callback_);
        proto_->on_drain(*this);
    }
    driver_->reactor_.defer(*this);
}

void Connection::fail(Status status) {
    RP_ASSERT(status != Status::ok);
    if (fail_ == Status::ok) fail_ = status;
}

void Connection::close_now(Status reason) {
    RP_ASSERT(!in_callback_);
    if (state_ != State::open) return;
    state_ = State::dying;
    driver_->reactor_.timer_cancel(*this);
    if (file_.done != nullptr) file_finish(reason != Status::ok ? reason : Status::cancelled);
    if (proto_ != nullptr) {
        proto_->on_close(reason);
        proto_->~ProtocolSession();
        proto_ = nullptr;
    }
    tls_.reset();
    tls_early_output_.clear();
    tls_early_output_.shrink_to_fit();
    tls_pending_ = false;
    release_buffers();
    if (ip_counted_) {
        driver_->ip_limiter_.release(ip_key_);
        ip_counted_ = false;
    }
    ++driver_->stats_.closed;
    --driver_->open_count_;
    if (recv_armed_ || send_in_flight_) {
        io_uring_sqe* sqe = driver_->reactor_.sqe();
        io_uring_prep_cancel_fd(sqe, fd_, IORING_ASYNC_CANCEL_ALL);
        io_uring_sqe_set_data64(sqe, Reactor::user_data(this, tag_cancel));
        ++cancels_in_flight_;
    }
    maybe_finalize();
}

void Connection::release_buffers() {
    while (held_count_ > 0) held_pop();
    if (staging_ != no_chunk) driver_->chunk_give(staging_);
    staging_ = no_chunk;
    staging_bytes_ = 0;
    // The head chunk stays while a send is in flight: the kernel reads it until the CQE.
    std::uint32_t chunk = out_head_;
    if (send_in_flight_ && chunk != no_chunk) chunk = driver_->chunk_next_[chunk];
    while (chunk != no_chunk) {
        bool last = chunk == out_tail_;
        std::uint32_t next = driver_->chunk_next_[chunk];
        driver_->chunk_give(chunk);
        if (last) break;
        chunk = next;
    }
    if (!send_in_flight_) out_head_ = no_chunk;
    out_tail_ = send_in_flight_ ? out_head_ : no_chunk;
    out_tail_end_ = 0;
    out_chunk_count_ = 0;
    out_bytes_ = 0;
}

void Connection::maybe_finalize() {
    if (state_ != State::dying) return;
    if (recv_armed_ || send_in_flight_ || cancels_in_flight_ > 0) return;
    RP_ASSERT(out_head_ == no_chunk);
    // close() on a socket without SO_LINGER does not block.
    close(fd_);
    fd_ = -1;
    state_ = State::free;
    driver_->release_slot(slot_);
}

void Connection::rearm_after_starve() {
    starved_ = false;
    if (state_ == State::open && !recv_armed_ && !recv_stopped_ && !eof_ && !closing_) {
        arm_recv();
    }
}

// ---- SessionDriver ----

bool SessionDriver::pipe_take(Pipe& pipe) {
    if (!pipes_free_.empty()) {
        pipe = pipes_free_.back();
        pipes_free_.pop_back();
        return true;
    }
    if (pipes_made_ >= limits::session_pipes_max) return false;
    int fds[2];
    // A short system call on the core thread, once per pipe of the bounded pool.
    if (pipe2(fds, O_CLOEXEC) != 0) return false;
    // A bigger pipe moves a whole store extent per splice pair (fewer ring round trips); the
    // kernel may refuse (fs.pipe-max-size, the user's pipe quota): the default then serves.
    (void)fcntl(fds[0], F_SETPIPE_SZ, static_cast<int>(limits::session_pipe_bytes));
    const int capacity = fcntl(fds[0], F_GETPIPE_SZ);
    pipe.read_fd = fds[0];
    pipe.write_fd = fds[1];
    pipe.bytes = capacity > 0 ? static_cast<std::uint32_t>(capacity) : 4096;
    ++pipes_made_;
    return true;
}

// An empty pipe goes back to the pool; one that may hold bytes of an abandoned range is
// closed (its bytes must never reach another session).
void SessionDriver::pipe_give(const Pipe& pipe, bool empty) {
    RP_ASSERT(pipe.read_fd >= 0);
    if (empty) {
        pipes_free_.push_back(pipe);
        return;
    }
    close(pipe.read_fd);
    close(pipe.write_fd);
    RP_ASSERT(pipes_made_ > 0);
    --pipes_made_;
}

SessionDriver::SessionDriver(Reactor& reactor, BufferPool& buffers, IpLimiter& ip_limiter,
                             const SessionDriverOptions& options)
    : reactor_(reactor), buffers_(buffers), ip_limiter_(ip_limiter), options_(options) {
    RP_ASSERT(options.sessions_max > 0);
    RP_ASSERT(options.sessions_max <= limits::sessions_per_shard_max);
}

SessionDriver::~SessionDriver() {
    if (started_) {
        reactor_.remove_tick(*this);
        for (unsigned i = 0; i < options_.sessions_max; ++i) {
            RP_ASSERT(connections_[i].state() == Connection::State::free);
        }
    }
    for (const Pipe& pipe : pipes_free_) {
        close(pipe.read_fd);
        close(pipe.write_fd);
    }
    if (slots_ != nullptr) munmap(slots_, slots_mapped_bytes_);
    if (chunks_ != nullptr) munmap(chunks_, chunks_mapped_bytes_);
}

Status SessionDriver::register_protocol(std::string_view kind, ProtocolFactory& factory,
                                        bool implicit_tls) {
    RP_ASSERT(!started_);
    if (has_protocol(kind)) return Status::exists;
    protocols_.push_back({std::string(kind), &factory, implicit_tls});
    return Status::ok;
}

void SessionDriver::set_tls_context(std::shared_ptr<const tls::TlsContext> context) {
    tls_context_ = std::move(context);
}

bool SessionDriver::has_protocol(std::string_view kind) const {
    for (const Protocol& protocol : protocols_) {
        if (protocol.kind == kind) return true;
    }
    return false;
}

Status SessionDriver::start() {
    RP_ASSERT(!started_);
    std::size_t bytes = 64;
    std::size_t align = 16;
    for (const Protocol& protocol : protocols_) {
        bytes = std::max(bytes, protocol.factory->session_bytes());
        align = std::max(align, protocol.factory->session_align());
    }
    if (align > 4096) return Status::invalid;
    slot_bytes_ = (bytes + align - 1) / align * align;
    // bounds: sessions_max <= 2^20; a slot above 1 GiB would be a bug in a factory.
    RP_ASSERT(slot_bytes_ < (std::size_t{1} << 30));
    slots_mapped_bytes_ = slot_bytes_ * options_.sessions_max;
    // MAP_NORESERVE: slots cost memory only once a session has used them.
    void* slots = mmap(nullptr, slots_mapped_bytes_, PROT_READ | PROT_WRITE,
                       MAP_ANONYMOUS | MAP_PRIVATE | MAP_NORESERVE, -1, 0);
    if (slots == MAP_FAILED) return Status::no_space;
    slots_ = static_cast<std::byte*>(slots);
    chunks_mapped_bytes_ = std::size_t{options_.chunk_count} * limits::session_chunk_bytes;
    void* chunks = mmap(nullptr, chunks_mapped_bytes_, PROT_READ | PROT_WRITE,
                        MAP_ANONYMOUS | MAP_PRIVATE | MAP_NORESERVE, -1, 0);
    if (chunks == MAP_FAILED) return Status::no_space;
    chunks_ = static_cast<std::byte*>(chunks);
    chunk_next_.assign(options_.chunk_count, no_chunk);
    // Free list in order, so the chunks used first (and touched) are reused first.
    for (std::uint32_t i = options_.chunk_count; i-- > 0;) chunk_give(i);
    connections_ = std::make_unique<Connection[]>(options_.sessions_max);
    free_slots_.reserve(options_.sessions_max);
    for (std::uint32_t i = options_.sessions_max; i-- > 0;) {
        connections_[i].init(*this, i);
        free_slots_.push_back(i);
    }
    starved_.reserve(options_.sessions_max);
    reactor_.add_tick(*this);
    reactor_.set_fd_op_handler(this);
    started_ = true;
    return Status::ok;
}

Status SessionDriver::listen(int fd, std::string_view kind) {
    RP_ASSERT(started_);
    RP_ASSERT(fd >= 0);
    if (listeners_.size() >= limits::listeners_max) return Status::full;
    for (const Protocol& protocol : protocols_) {
        if (protocol.kind == kind) {
            listeners_.push_back(std::make_unique<Listener>(*this, fd, *protocol.factory, kind,
                                                            protocol.implicit_tls));
            if (draining_) {
                listeners_.back()->stop();
            } else {
                listeners_.back()->arm();
            }
            return Status::ok;
        }
    }
    return Status::not_found;
}

SessionOutput* SessionDriver::find(SessionHandle handle) {
    if (!started_ || handle.slot >= options_.sessions_max) return nullptr;
    Connection& connection = connections_[handle.slot];
    if (connection.state() != Connection::State::open) return nullptr;
    if (connection.generation() != handle.generation) return nullptr;
    return &connection;
}

void SessionDriver::accepted(int fd, Listener& listener) {
    sockaddr_storage peer{};
    socklen_t peer_bytes = sizeof(peer);
    if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &peer_bytes) != 0) {
        close(fd);  // Reset before we looked: nothing to serve.
        return;
    }
    int one = 1;
    // Replies are small and latency-bound; Nagle would hold pipelined replies back.
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (draining_ || free_slots_.empty()) {
        ++stats_.refused_busy;
        refuse(fd, listener.factory().busy_reply());
        return;
    }
    std::uint64_t key = IpLimiter::key_of(peer);
    if (!ip_limiter_.acquire(key, options_.connections_per_ip)) {
        ++stats_.refused_per_ip;
        log::info("shard {}: refused {} on {}: too many connections from this address",
                  options_.shard_index, peer_text_of(peer), listener.kind());
        refuse(fd, listener.factory().per_ip_reply());
        return;
    }
    std::uint32_t slot = free_slots_.back();
    free_slots_.pop_back();
    ++open_count_;
    ++stats_.accepted;
    connections_[slot].open(fd, peer, peer_bytes, key, listener);
}

void SessionDriver::refuse(int fd, std::string_view reply) {
    if (refusals_in_flight_ >= limits::refusals_in_flight_max || reply.empty()) {
        close(fd);
        return;
    }
    ++refusals_in_flight_;
    io_uring_sqe* sqe = reactor_.sqe();
    io_uring_prep_send(sqe, fd, reply.data(), reply.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    io_uring_sqe_set_data64(sqe, Reactor::user_data_fd_op(fd, refusal_kind));
}

void SessionDriver::on_cqe(const io_uring_cqe& cqe, unsigned tag) {
    RP_ASSERT(tag == Reactor::tag_fd_op);
    unsigned kind = static_cast<unsigned>((cqe.user_data >> 8) & 0xffu);
    RP_ASSERT(kind == refusal_kind);
    int fd = static_cast<int>(cqe.user_data >> 16);
    RP_ASSERT(refusals_in_flight_ > 0);
    --refusals_in_flight_;
    close(fd);
}

void SessionDriver::release_slot(std::uint32_t slot) {
    RP_ASSERT(slot < options_.sessions_max);
    RP_ASSERT(free_slots_.size() < options_.sessions_max);
    free_slots_.push_back(slot);
}

void* SessionDriver::slot_memory(std::uint32_t slot) {
    RP_ASSERT(slot < options_.sessions_max);
    return slots_ + slot_bytes_ * slot;  // bounds: slot < sessions_max, mapped above.
}

void SessionDriver::starve(Connection& connection) {
    if (connection.starved()) return;
    connection.mark_starved();
    ++stats_.recv_starved;
    RP_ASSERT(starved_.size() < options_.sessions_max);
    starved_.push_back(static_cast<std::uint32_t>(&connection - connections_.get()));
}

void SessionDriver::on_tick() {
    // Re-arm starved receives while buffers are free; each re-armed receive may take one
    // at once, so re-arm no more than there are.
    std::size_t index = 0;
    while (index < starved_.size() && buffers_.available() > index) ++index;
    for (std::size_t i = 0; i < index; ++i) connections_[starved_[i]].rearm_after_starve();
    starved_.erase(starved_.begin(), starved_.begin() + static_cast<std::ptrdiff_t>(index));
}

void SessionDriver::drain() {
    draining_ = true;
    for (auto& listener : listeners_) listener->stop();
    if (!started_) return;
    for (unsigned i = 0; i < options_.sessions_max; ++i) connections_[i].drain();
}

void SessionDriver::close_all(Status reason) {
    if (!started_) return;
    for (unsigned i = 0; i < options_.sessions_max; ++i) connections_[i].close_now(reason);
}

bool SessionDriver::quiescent() const {
    if (open_count_ > 0 || refusals_in_flight_ > 0) return false;
    for (const auto& listener : listeners_) {
        if (!listener->closed()) return false;
    }
    if (!started_) return true;
    for (unsigned i = 0; i < options_.sessions_max; ++i) {
        if (connections_[i].state() != Connection::State::free) return false;
    }
    return true;
}

std::uint32_t SessionDriver::chunk_take() {
    if (chunk_free_ == no_chunk) return no_chunk;
    std::uint32_t chunk = chunk_free_;
    chunk_free_ = chunk_next_[chunk];
    chunk_next_[chunk] = no_chunk;
    --chunks_free_count_;
    return chunk;
}

void SessionDriver::chunk_give(std::uint32_t chunk) {
    RP_ASSERT(chunk < options_.chunk_count);
    chunk_next_[chunk] = chunk_free_;
    chunk_free_ = chunk;
    ++chunks_free_count_;
}

std::byte* SessionDriver::chunk_data(std::uint32_t chunk) {
    RP_ASSERT(chunk < options_.chunk_count);
    return chunks_ + std::size_t{chunk} * limits::session_chunk_bytes;
}

}  // namespace rp
