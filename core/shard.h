// core/shard.h: shards (one pinned thread per core, each with its own ring, buffers,
// sessions and listeners) and the Engine that starts and stops them.
//
// Owns: Engine owns the shards, the cross-core queues and the per-IP limiter; a Shard owns
//   its Reactor, BufferPool, UringIo, SessionDriver, its listening sockets, and whatever the
//   setup callback handed it with own().
// Core: a Shard's members are used only on its thread, except post_external() and the
//   stop request (any thread) and post() (other shards).
// Lifecycle: Engine::create binds every listener (one SO_REUSEPORT socket per shard and
//   listener; "address in use" is reported here, before any thread starts), starts the
//   threads, runs `setup` on each shard's thread (register protocols and tick hooks, open
//   the store), and returns once all are serving or one failed. request_stop(): each
//   shard stops accepting, calls on_drain on its sessions, waits up to shutdown_grace_ms
//   for them and for its tick hooks to become idle (the store synced), closes what is
//   left, and its thread ends.
#pragma once

#include <sys/socket.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/buffer_pool.h"
#include "core/cross_core.h"
#include "core/io_uring.h"
#include "core/reactor.h"
#include "core/session.h"

namespace rp {

struct ListenerSpec {
    std::string kind;    // A protocol kind registered by the setup callback ("mx", ...).
    std::string text;    // As configured, for messages: "127.0.0.1:2525".
    sockaddr_storage address{};
    socklen_t address_bytes = 0;
};

struct EngineOptions {
    unsigned cores = 1;           // Shard count; 0 = one per online CPU we may run on.
    bool pin_cores = true;
    unsigned ring_entries = 1024;
    unsigned recv_buffer_count = 1024;
    std::uint32_t recv_buffer_bytes = 16384;
    unsigned sessions_per_shard = 1024;
    unsigned chunk_count = 0;     // Send/staging chunks per shard; 0 = 2 * sessions + 64.
    unsigned connections_per_ip = 0;
    std::uint64_t shutdown_grace_ms = 10'000;
    int listen_backlog = 4096;
    std::vector<ListenerSpec> listeners;
};

// Something a setup callback wants kept alive for the shard's life, destroyed on the
// shard's thread after its loop ends (in reverse order of own()).
class ShardLocal {
public:
    virtual ~ShardLocal() = default;
};

class Engine;

class Shard {
public:
    unsigned index() const { return index_; }
    unsigned shard_count() const;
    Reactor& reactor() { return *reactor_; }
    BufferPool& buffers() { return *buffers_; }
    UringIo& io() { return *io_; }
    SessionDriver& sessions() { return *sessions_; }
    bool stopping() const { return draining_; }

    // Queues `message` for shard `to` (not this one). Status::full when its queue is full:
    // backpressure, retry later or refuse. The receiver runs message.handler on its thread.
    [[nodiscard]] Status post(unsigned to, CrossMessage message);
    // Any thread: runs `work` on this shard's thread soon. A cold path (a mutex): for
    // reloads, start-up and helper threads, not for per-message traffic.
    void post_external(std::function<void(Shard&)> work);
    void own(std::unique_ptr<ShardLocal> object);
    // Runs when this shard starts draining (before sessions get on_drain).
    void on_stop(std::function<void(Shard&)> callback);

    Shard(Engine& engine, unsigned index, int cpu);
    ~Shard();
    Shard(const Shard&) = delete;
    Shard& operator=(const Shard&) = delete;

private:
    friend class Engine;
    class CrossWake final : public CqeHandler {
    public:
        explicit CrossWake(Shard& shard) : shard_(shard) {}
        void on_cqe(const io_uring_cqe& cqe, unsigned tag) override;
        Shard& shard_;
    };

    void thread_main();
    Status start_on_thread();
    void loop();
    unsigned drain_incoming();  // Returns how many messages ran.
    void run_external();
    void send_wakes();
    void begin_drain();

    Engine& engine_;
    unsigned index_;
    int cpu_;
    std::thread thread_;
    std::unique_ptr<Reactor> reactor_;
    std::unique_ptr<BufferPool> buffers_;
    std::unique_ptr<UringIo> io_;
    std::unique_ptr<SessionDriver> sessions_;
    std::vector<std::unique_ptr<ShardLocal>> owned_;
    std::vector<std::function<void(Shard&)>> stop_callbacks_;
    std::vector<std::pair<int, std::string>> listener_fds_;  // fd, kind; handed over at start.
    std::atomic<int> ring_fd_{-1};
    std::unique_ptr<CrossWake> cross_wake_;
    std::vector<bool> wake_pending_;
    bool draining_ = false;
    std::uint64_t drain_deadline_ns_ = 0;
    bool forced_ = false;
    std::mutex external_mutex_;
    std::vector<std::function<void(Shard&)>> external_;
};

using ShardSetup = std::function<Status(Shard&)>;

class Engine {
public:
    // On failure, `error` holds one line for the operator ("bind 127.0.0.1:25: address in
    // use"). `setup` runs on every shard's thread; its failure fails create().
    [[nodiscard]] static Result<std::unique_ptr<Engine>> create(const EngineOptions& options,
                                                                ShardSetup setup,
                                                                std::string* error);
    ~Engine();
    Engine(const Engine&) = delete;
    Engine& operator=(const Engine&) = delete;

    unsigned shard_count() const { return static_cast<unsigned>(shards_.size()); }
    Shard& shard(unsigned index) { return *shards_[index]; }
    const EngineOptions& options() const { return options_; }
    IpLimiter& ip_limiter() { return ip_limiter_; }
    CrossCore& cross_core() { return *cross_core_; }

    // Any thread (not a signal handler): begin the graceful stop.
    void request_stop();
    // Blocks until every shard thread has ended.
    void wait();
    // Runs `work` on every shard's thread (cold path: reloads).
    void run_on_all(const std::function<void(Shard&)>& work);

private:
    friend class Shard;
    Engine() = default;
    void shard_ready(Status status, const std::string& error);

    EngineOptions options_;
    ShardSetup setup_;
    std::vector<std::unique_ptr<Shard>> shards_;
    std::unique_ptr<CrossCore> cross_core_;
    IpLimiter ip_limiter_;
    std::atomic<bool> stop_requested_{false};
    std::mutex start_mutex_;
    std::condition_variable start_cv_;
    unsigned ready_count_ = 0;
    Status start_status_ = Status::ok;
    std::string start_error_;
    bool go_ = false;
    bool joined_ = false;
};

// Parses "127.0.0.1:25", "[::1]:25" or "*:25" (all IPv4 addresses) into `spec`.
[[nodiscard]] Status listener_address_parse(std::string_view text, ListenerSpec& spec);
// The CPUs this process may run on, in order.
std::vector<int> online_cpus();

}  // namespace rp
