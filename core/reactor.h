// core/reactor.h: the per-core event loop over one io_uring.
//
// Owns: the ring (SINGLE_ISSUER | DEFER_TASKRUN when the kernel takes them), the timer heap,
//   the deferred-work list, the tick hooks and an eventfd other threads use to wake it.
// Core: everything here runs on the thread that created the reactor, except wake().
// One iteration: submit pending SQEs and wait (until the nearest timer, or not at all when
//   work is deferred); reap every CQE and dispatch it; fire expired timers; run deferred
//   work; run tick hooks (which may queue writes and fsyncs: the next submit sends them).
// user_data: a CqeHandler pointer (8-byte aligned) with a 3-bit tag in the low bits, so a
//   completion dispatches with no lookup and no allocation. Tag 7 is reserved for
//   pointer-less operations (see user_data_fd_op).
#pragma once

#include <liburing.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "core/clock.h"
#include "core/result.h"

namespace rp {

class CqeHandler {
public:
    // `tag` is the value passed to Reactor::user_data(); cqe is valid only during the call.
    virtual void on_cqe(const io_uring_cqe& cqe, unsigned tag) = 0;

protected:
    virtual ~CqeHandler() = default;
};

// A one-shot timer, embedded in its owner. Re-arming moves the deadline.
class Timer {
public:
    virtual void on_timer() = 0;
    bool armed() const { return heap_index_ != not_armed; }
    std::uint64_t deadline_ns() const { return deadline_ns_; }

protected:
    Timer() = default;
    virtual ~Timer() = default;
    Timer(const Timer&) = delete;
    Timer& operator=(const Timer&) = delete;

private:
    friend class Reactor;
    static constexpr std::uint32_t not_armed = 0xffffffffu;
    std::uint64_t deadline_ns_ = 0;
    std::uint32_t heap_index_ = not_armed;
};

// Work to run once, after the current dispatch, before the next submit.
class Deferred {
public:
    virtual void on_deferred() = 0;
    bool queued() const { return queued_; }

protected:
    Deferred() = default;
    virtual ~Deferred() = default;

private:
    friend class Reactor;
    Deferred* next_ = nullptr;
    bool queued_ = false;
};

// Runs once per loop iteration, after reaping. The storage group commit hangs off this.
class TickHook {
public:
    virtual void on_tick() = 0;
    // False while the hook has work in flight (unsynced data): shutdown waits for it.
    virtual bool idle() const { return true; }

protected:
    virtual ~TickHook() = default;
};

struct ReactorOptions {
    unsigned ring_entries = 1024;
    unsigned timers_max = 4096;  // Capacity of the timer heap: one per session plus extras.
    Clock* clock = nullptr;      // Defaults to RealClock::instance().
};

class Reactor {
public:
    static constexpr unsigned tag_fd_op = 7;

    // Creates the ring on the calling thread, which becomes the only one that may use it.
    [[nodiscard]] static Result<std::unique_ptr<Reactor>> create(const ReactorOptions& options);
    ~Reactor();
    Reactor(const Reactor&) = delete;
    Reactor& operator=(const Reactor&) = delete;

    io_uring* ring() { return &ring_; }
    int ring_fd() const { return ring_.ring_fd; }
    unsigned setup_flags() const { return setup_flags_; }
    Clock& clock() { return *clock_; }
    std::uint64_t now_ns() const { return clock_->monotonic_ns(); }

    // Never null: submits to make room when the SQ is full.
    io_uring_sqe* sqe();
    static std::uint64_t user_data(CqeHandler* handler, unsigned tag) {
        auto bits = reinterpret_cast<std::uintptr_t>(handler);
        RP_ASSERT((bits & 7u) == 0);
        RP_ASSERT(tag < tag_fd_op);
        return bits | tag;
    }
    // For operations owned by no object (a refusal reply being sent): the fd rides along.
    static std::uint64_t user_data_fd_op(int fd, unsigned kind) {
        RP_ASSERT(fd >= 0);
        RP_ASSERT(kind < 256);
        return (static_cast<std::uint64_t>(fd) << 16) | (std::uint64_t{kind} << 8) | tag_fd_op;
    }
    // Receives completions tagged with user_data_fd_op (one per reactor; the shard).
    void set_fd_op_handler(CqeHandler* handler) { fd_op_handler_ = handler; }

    void timer_arm(Timer& timer, std::uint64_t delay_ns);
    void timer_cancel(Timer& timer);
    unsigned timers_armed() const { return static_cast<unsigned>(heap_.size()); }

    void defer(Deferred& work);
    void add_tick(TickHook& hook);
    void remove_tick(TickHook& hook);
    bool ticks_idle() const;

    // Runs one iteration; waits at most `wait_ns_max` (0: do not wait).
    void run_once(std::uint64_t wait_ns_max);
    // Thread-safe: wakes the loop from any thread (signals, other threads).
    void wake();
    // Set when wake() was called; cleared by take_woken().
    bool take_woken() { return woken_.exchange(false, std::memory_order_acquire); }

    std::uint64_t iterations() const { return iterations_; }

private:
    class WakeReader final : public CqeHandler {
    public:
        explicit WakeReader(Reactor& reactor) : reactor_(reactor) {}
        void on_cqe(const io_uring_cqe& cqe, unsigned tag) override;
        void arm();
        Reactor& reactor_;
        std::uint64_t value_ = 0;
    };

    Reactor() = default;
    void dispatch(const io_uring_cqe& cqe);
    void fire_timers();
    void run_deferred();
    void heap_swap(std::uint32_t a, std::uint32_t b);
    void heap_up(std::uint32_t index);
    void heap_down(std::uint32_t index);
    void heap_remove(std::uint32_t index);

    io_uring ring_{};
    bool ring_ready_ = false;
    unsigned setup_flags_ = 0;
    Clock* clock_ = nullptr;
    CqeHandler* fd_op_handler_ = nullptr;
    std::vector<Timer*> heap_;
    std::size_t timers_max_ = 0;
    Deferred* deferred_head_ = nullptr;
    Deferred* deferred_tail_ = nullptr;
    std::vector<TickHook*> ticks_;
    int wake_fd_ = -1;
    std::unique_ptr<WakeReader> wake_reader_;
    std::atomic<bool> woken_{false};
    std::uint64_t iterations_ = 0;
};

}  // namespace rp
