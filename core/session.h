// core/session.h: the session driver: one connection's I/O around a pure protocol.
//
// Owns (per shard): the listening sockets given to listen(), a fixed pool of sessions
//   (Connection records plus a slot for each ProtocolSession object), and a fixed arena of
//   chunks (limits::session_chunk_bytes) that hold each session's send queue and its input
//   staging (bytes a protocol did not consume yet).
// Core: the shard's thread only; async completions (a store batch made durable) find their
//   session again with find(handle) on the same core.
// How a protocol plugs in: implement ProtocolSession (bytes in, writes and actions out via
//   SessionOutput, no I/O) and a ProtocolFactory, and register the factory for a listener
//   kind ("mx", "submission", "pop3", ...) before start().
// Invariants: at most one send per session in flight; a session's queued output is bounded
//   (reading stops above limits::session_output_high_bytes; past
//   session_output_chunks_max chunks it is closed); every session always has a timer armed
//   (the protocol's state timeout, or the flush deadline once it is closing).
// Errors: socket errors close the session with a Status passed to on_close().
// TLS: a listener kind registered with implicit_tls runs the handshake first (the protocol
//   is created and opened once it is done); any protocol may call start_tls() (STARTTLS,
//   STLS). Either way the protocol only ever sees plaintext: the driver decrypts received
//   records into the staging chunk and encrypts writes into the send queue (core/tls.h).
//   A handshake has its own timeout (SessionDriverOptions::tls_handshake_timeout_ms).
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/buffer_pool.h"
#include "core/reactor.h"

namespace rp {

namespace tls {
class TlsContext;
}

// Names a session across async work; stale once the session closes (generation changes).
struct SessionHandle {
    std::uint32_t slot = 0xffffffffu;
    std::uint32_t generation = 0;
    bool operator==(const SessionHandle&) const = default;
};

struct SessionInfo {
    sockaddr_storage peer{};
    socklen_t peer_bytes = 0;
    std::string_view peer_text;       // "192.0.2.1" or "2001:db8::1"; borrowed for the call.
    std::string_view listener_kind;   // As registered; borrowed for the call.
    SessionHandle handle;
    unsigned shard_index = 0;
    bool tls_active = false;          // Implicit TLS: the handshake is done before on_open.
    bool tls_available = false;       // start_tls() would work (a certificate is loaded).
};

// Told when the byte range of a SessionOutput::send_file() has been sent (ok), or will not be
// (the session failed or closed: another status). Runs on the shard's thread, never inside
// another protocol callback; the protocol may write or send_file again from it.
class FileSendDone {
public:
    virtual void file_sent(Status status) = 0;

protected:
    ~FileSendDone() = default;
};

// What a protocol may do to its connection. Implemented by the driver; a protocol unit test
// can implement it with a recorder. Every call is cheap and never re-enters the protocol:
// effects (sends, feeding held input, closing) happen after the current callback returns.
class SessionOutput {
public:
    // Queues bytes for sending (copied). Past the hard cap the session closes (Status::full).
    virtual void write(std::span<const std::byte> bytes) = 0;
    void write(std::string_view text) {
        write(std::span<const std::byte>(reinterpret_cast<const std::byte*>(text.data()),
                                         text.size()));
    }
    // Sends what is queued, then closes. Input after this is discarded. Bounded by
    // limits::session_close_flush_ms if the peer does not read.
    virtual void close_after_flush() = 0;
    // Stops calling on_bytes until resume_reading(); input that arrives meanwhile is held
    // (a few buffers), then the driver stops receiving (TCP backpressure).
    virtual void pause_reading() = 0;
    // Feeds held input again (after the current callback, never inside this call).
    virtual void resume_reading() = 0;
    // (Re)arms the timeout of the current state: on_timeout runs `ms` from now. Received
    // bytes do not re-arm it, so a client trickling bytes cannot hold a session forever:
    // the protocol re-arms when it completes a command.
    virtual void set_timeout_ms(std::uint64_t ms) = 0;
    virtual SessionHandle handle() const = 0;
    // Bytes queued and not yet sent (a protocol may stop producing output above a level).
    virtual std::size_t output_queued_bytes() const = 0;
    // STARTTLS: once the current callback returns, every input byte received so far is
    // DISCARDED (RFC 3207 5: nothing pipelined in plaintext may be executed), output written
    // before the call goes out in plaintext, and a server handshake starts; reading resumes
    // (a pause is lifted). on_tls_started() follows, or the session closes (Status::tls,
    // Status::timeout). False (and nothing happens) without a certificate or when TLS is
    // already active.
    virtual bool start_tls() { return false; }
    virtual bool tls_active() const { return false; }
    // Zero-copy send of `bytes` bytes of file `fd` from `offset` (a store segment, below its
    // durable watermark): after the output queued so far, the kernel moves them from the page
    // cache to the socket (IORING_OP_SPLICE file -> pipe -> socket, a pipe from the shard's
    // pool), so they never pass through user space. Output written after this call goes out
    // after the range, and output_queued_bytes() counts the range until it is sent. `fd` must
    // stay open and the bytes unchanged until done.file_sent() runs (hold the BodyHandle).
    // False, with nothing queued, when the bytes must be copied anyway: TLS is active (or
    // starting), a range is queued already (one at a time), or the shard's pipes are all in
    // use. Then write() them as before.
    virtual bool send_file(int /*fd*/, std::uint64_t /*offset*/, std::uint64_t /*bytes*/,
                           FileSendDone& /*done*/) {
        return false;
    }

protected:
    ~SessionOutput() = default;
};

class ProtocolSession {
public:
    virtual ~ProtocolSession() = default;
    // First call: write the greeting. The driver has armed the factory's first timeout.
    virtual void on_open(const SessionInfo& info, SessionOutput& out) = 0;
    // Offers received bytes; returns how many were consumed (<= bytes.size()). Unconsumed
    // bytes are offered again, with more appended, once more arrive (or after a resume).
    // A protocol must consume something once it holds limits::session_chunk_bytes
    // unconsumed (a too-long line is consumed and refused, not kept), or the driver closes
    // the session. `source` is the provided buffer holding `bytes` (null when they were
    // copied into staging); a protocol may move it out to keep the bytes without a copy
    // (e.g. hand them to a store write; the buffer returns to the ring when that BufferRef
    // is released). Bytes it did not consume are then copied to staging by the driver.
    virtual std::size_t on_bytes(std::span<const std::byte> bytes, BufferRef* source,
                                 SessionOutput& out) = 0;
    // The state timeout expired. Write a reply and close_after_flush(), or set a new
    // timeout to extend; doing neither closes the session after the flush.
    virtual void on_timeout(SessionOutput& out) = 0;
    // The send queue fell below limits::session_output_high_bytes after reaching it: a
    // protocol streaming a large reply (FETCH, RETR) writes its next part here. Output is
    // bounded (past limits::session_output_chunks_max chunks the session closes), so large
    // replies must be streamed this way rather than written at once.
    virtual void on_output_drained(SessionOutput& /*out*/) {}
    // The STARTTLS handshake finished: the protocol resets its state (RFC 3207 4.2) and
    // sets its timeout (the driver armed the factory's open timeout).
    virtual void on_tls_started(SessionOutput& /*out*/) {}
    // The shard is shutting down: finish what is in flight, or close now. Default: close.
    virtual void on_drain(SessionOutput& out) { out.close_after_flush(); }
    // The last call; the connection is gone. `reason` is ok for an orderly close.
    virtual void on_close(Status reason) = 0;
};

class ProtocolFactory {
public:
    virtual ~ProtocolFactory() = default;
    // Size and alignment of the objects create() builds; the pool reserves one slot each.
    virtual std::size_t session_bytes() const = 0;
    virtual std::size_t session_align() const { return alignof(std::max_align_t); }
    // Builds a session in `storage` (placement new); the driver destroys it after on_close.
    virtual ProtocolSession* create(void* storage) = 0;
    // Sent, then the connection closed, when the session pool is full ("421 4.3.2 ...").
    // The bytes must live as long as the factory.
    virtual std::string_view busy_reply() const = 0;
    // Sent when the client address has too many connections ("421 4.7.0 ...").
    virtual std::string_view per_ip_reply() const = 0;
    // The first state's timeout (until the protocol sets its own).
    virtual std::uint64_t open_timeout_ms() const = 0;
};

// Counts connections per client address across all shards. Hashed counters: two addresses
// that share a slot share a limit (stricter, never looser). Lock-free; shared by shards.
class IpLimiter {
public:
    IpLimiter();
    static std::uint64_t key_of(const sockaddr_storage& address);
    // False (and nothing counted) when `key` already has `limit` connections.
    bool acquire(std::uint64_t key, unsigned limit);
    void release(std::uint64_t key);
    unsigned count(std::uint64_t key) const;

private:
    std::unique_ptr<std::atomic<std::uint32_t>[]> slots_;
};

struct SessionDriverOptions {
    unsigned sessions_max = 1024;
    unsigned chunk_count = 2048;        // Send-queue and staging chunks for the whole shard.
    unsigned connections_per_ip = 0;    // 0: no limit.
    unsigned shard_index = 0;
    std::uint64_t tls_handshake_timeout_ms = 30'000;
};

struct SessionStats {
    std::uint64_t accepted = 0;
    std::uint64_t refused_busy = 0;
    std::uint64_t refused_per_ip = 0;
    std::uint64_t timed_out = 0;
    std::uint64_t closed = 0;
    std::uint64_t recv_starved = 0;     // ENOBUFS: multishot recv ended for lack of buffers.
    std::uint64_t tls_handshakes = 0;
    std::uint64_t tls_failures = 0;     // Handshake or record errors (not timeouts).
    std::uint64_t file_sends = 0;       // send_file() ranges accepted.
    std::uint64_t file_bytes = 0;       // Bytes spliced from files to sockets.
    std::uint64_t file_send_refused = 0;  // send_file() answered false (TLS, no pipe).
};

class Connection;

class SessionDriver final : public TickHook, public CqeHandler {
public:
    SessionDriver(Reactor& reactor, BufferPool& buffers, IpLimiter& ip_limiter,
                  const SessionDriverOptions& options);
    ~SessionDriver();
    SessionDriver(const SessionDriver&) = delete;
    SessionDriver& operator=(const SessionDriver&) = delete;

    // Before start(). `factory` must outlive the driver. `implicit_tls`: every connection
    // starts with a TLS handshake (smtps, pop3s, imaps); needs a TLS context.
    [[nodiscard]] Status register_protocol(std::string_view kind, ProtocolFactory& factory,
                                           bool implicit_tls = false);
    bool has_protocol(std::string_view kind) const;
    // Allocates the pool (slot size: the largest registered session).
    [[nodiscard]] Status start();
    // Takes a bound, listening, non-blocking socket and accepts on it (multishot).
    [[nodiscard]] Status listen(int fd, std::string_view kind);

    // The session behind `handle`, or null if it has closed since (async completions).
    SessionOutput* find(SessionHandle handle);

    // Shutdown: stop accepting and call on_drain for every session.
    void drain();
    // Closes every session now (after the drain grace), with `reason`.
    void close_all(Status reason);
    // No session open, no refusal or accept in flight.
    bool quiescent() const;
    unsigned open_count() const { return open_count_; }
    unsigned sessions_max() const { return options_.sessions_max; }
    const SessionStats& stats() const { return stats_; }
    void set_connections_per_ip(unsigned limit) { options_.connections_per_ip = limit; }
    // The certificates for new handshakes (start-up and SIGHUP); sessions keep the context
    // they started with. Null: no TLS (start_tls() is refused, implicit TLS closes).
    void set_tls_context(std::shared_ptr<const tls::TlsContext> context);
    void set_tls_handshake_timeout_ms(std::uint64_t ms) { options_.tls_handshake_timeout_ms = ms; }
    const std::shared_ptr<const tls::TlsContext>& tls_context() const { return tls_context_; }

    // TickHook: re-arms receives starved by ENOBUFS once buffers are back.
    void on_tick() override;
    // CqeHandler for refusal sends (Reactor::tag_fd_op).
    void on_cqe(const io_uring_cqe& cqe, unsigned tag) override;

private:
    friend class Connection;
    struct Protocol {
        std::string kind;
        ProtocolFactory* factory;
        bool implicit_tls;
    };
    class Listener;

    void accepted(int fd, Listener& listener);
    void refuse(int fd, std::string_view reply);
    void release_slot(std::uint32_t slot);
    void* slot_memory(std::uint32_t slot);
    void starve(Connection& connection);
    // Pipes for send_file (at most limits::session_pipes_max, made on first use).
    struct Pipe {
        int read_fd = -1;
        int write_fd = -1;
        std::uint32_t bytes = 0;  // Capacity.
    };
    bool pipe_take(Pipe& pipe);
    void pipe_give(const Pipe& pipe, bool empty);
    // Chunk arena.
    std::uint32_t chunk_take();
    void chunk_give(std::uint32_t chunk);
    std::byte* chunk_data(std::uint32_t chunk);

    Reactor& reactor_;
    BufferPool& buffers_;
    IpLimiter& ip_limiter_;
    SessionDriverOptions options_;
    std::vector<Protocol> protocols_;
    std::shared_ptr<const tls::TlsContext> tls_context_;
    std::vector<std::unique_ptr<Listener>> listeners_;
    std::unique_ptr<Connection[]> connections_;
    std::vector<std::uint32_t> free_slots_;
    std::byte* slots_ = nullptr;
    std::size_t slot_bytes_ = 0;
    std::size_t slots_mapped_bytes_ = 0;
    std::byte* chunks_ = nullptr;
    std::size_t chunks_mapped_bytes_ = 0;
    std::vector<std::uint32_t> chunk_next_;
    std::uint32_t chunk_free_ = 0xffffffffu;
    unsigned chunks_free_count_ = 0;
    std::vector<std::uint32_t> starved_;
    std::vector<Pipe> pipes_free_;
    unsigned pipes_made_ = 0;
    unsigned open_count_ = 0;
    unsigned refusals_in_flight_ = 0;
    bool started_ = false;
    bool draining_ = false;
    SessionStats stats_;
};

}  // namespace rp
