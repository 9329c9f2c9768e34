// protocols/auth/auth_pool.h: password verification off the core threads, and the
// per-client-address failure throttle.
//
// Owns: HashPool owns a few helper threads and a bounded job queue; AuthThrottle owns a
//   fixed table of hashed per-address failure counters shared by all shards.
// Core: submit() is called on a core thread; it takes the pool's mutex for the push only
//   (no hashing, no I/O under it; a cold path like Shard::post_external). `done` runs on the
//   helper thread: it must hand the result back to the session's shard (post_external), as
//   auth_service.h does. AuthThrottle is lock-free (atomics) and may be used from any shard.
// Invariants: at most queue_max jobs wait; a full queue is Status::full (the protocol
//   answers "454 4.7.0 try again later"), never growth.
#pragma once

#include <sys/socket.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/result.h"

namespace rp::auth {

class HashPool {
public:
    HashPool(unsigned threads, unsigned queue_max);
    ~HashPool();  // Finishes queued jobs, joins the threads.
    HashPool(const HashPool&) = delete;
    HashPool& operator=(const HashPool&) = delete;

    // Verifies `password` against `stored` on a helper thread, then calls done(match) there.
    // An empty `stored` (unknown user) verifies against a dummy hash, so the answer takes as
    // long as for a real user, and is false.
    [[nodiscard]] Status submit(std::string stored, std::string password,
                                std::function<void(bool)> done);
    unsigned queued() const;

private:
    struct Job {
        std::string stored;
        std::string password;
        std::function<void(bool)> done;
    };
    void run();

    unsigned queue_max_;
    mutable std::mutex mutex_;
    std::condition_variable cv_;
    std::deque<Job> jobs_;
    bool stopping_ = false;
    std::string dummy_;
    std::vector<std::thread> threads_;
};

struct ThrottleOptions {
    unsigned failures_max = 10;          // Per address per window; then refused.
    std::uint64_t window_s = 900;
    std::uint64_t delay_base_ms = 1000;  // Failure n waits base * 2^(n-1), up to delay_max_ms.
    std::uint64_t delay_max_ms = 8000;
};

class AuthThrottle {
public:
    explicit AuthThrottle(const ThrottleOptions& options);
    static std::uint64_t key_of(const sockaddr_storage& address);

    // Failures counted for `key` in the current window.
    unsigned failures(std::uint64_t key, std::uint64_t now_s) const;
    bool blocked(std::uint64_t key, std::uint64_t now_s) const {
        return failures(key, now_s) >= options_.failures_max;
    }
    // Counts one failure; returns how long to wait before answering it.
    std::uint64_t record_failure(std::uint64_t key, std::uint64_t now_s);
    const ThrottleOptions& options() const { return options_; }

private:
    static constexpr unsigned slot_count = 1u << 14;
    // Each slot: window start (seconds, high 32 bits) | count (low 32 bits).
    ThrottleOptions options_;
    std::unique_ptr<std::atomic<std::uint64_t>[]> slots_;
};

}  // namespace rp::auth
