// Reactor and UringIo: timers, deferred work, tick hooks, cross-thread wake, file I/O.
#include "core/reactor.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "core/io_uring.h"
#include "engine_test_util.h"

namespace rp {
namespace {

std::unique_ptr<Reactor> make_reactor(Clock* clock = nullptr) {
    test::require_io_uring();
    ReactorOptions options;
    options.ring_entries = 64;
    options.timers_max = 16;
    options.clock = clock;
    auto reactor = Reactor::create(options);
    EXPECT_TRUE(reactor.ok());
    return std::move(reactor.value());
}

class RecordingTimer final : public Timer {
public:
    RecordingTimer(std::vector<int>& log, int id) : log_(log), id_(id) {}
    void on_timer() override { log_.push_back(id_); }

private:
    std::vector<int>& log_;
    int id_;
};

// Proves timers fire in deadline order, cancelled timers never fire, and re-arming moves
// the deadline (a simulated clock makes this independent of machine speed).
TEST(Reactor, TimersFireInDeadlineOrder) {
    SimClock clock;
    auto reactor = make_reactor(&clock);
    std::vector<int> log;
    RecordingTimer a(log, 1), b(log, 2), c(log, 3), d(log, 4);
    reactor->timer_arm(a, 300);
    reactor->timer_arm(b, 100);
    reactor->timer_arm(c, 200);
    reactor->timer_arm(d, 50);
    reactor->timer_cancel(c);
    reactor->timer_arm(d, 400);  // Moved after a.
    EXPECT_EQ(reactor->timers_armed(), 3u);
    clock.advance_ns(150);
    reactor->run_once(0);
    EXPECT_EQ(log, std::vector<int>({2}));
    clock.advance_ns(1000);
    reactor->run_once(0);
    EXPECT_EQ(log, std::vector<int>({2, 1, 4}));
    EXPECT_FALSE(a.armed());
    EXPECT_FALSE(c.armed());
    EXPECT_EQ(reactor->timers_armed(), 0u);
}

// Proves the loop sleeps only until the nearest timer (a real 20 ms timer ends a 10 s wait).
TEST(Reactor, WaitEndsAtTheNearestTimer) {
    auto reactor = make_reactor();
    std::vector<int> log;
    RecordingTimer a(log, 1);
    reactor->timer_arm(a, 20'000'000);
    for (int i = 0; i < 100 && log.empty(); ++i) reactor->run_once(10'000'000'000ull);
    EXPECT_EQ(log, std::vector<int>({1}));
}

class CountingTick final : public TickHook {
public:
    void on_tick() override { ++count; }
    bool idle() const override { return busy == false; }
    int count = 0;
    bool busy = false;
};

class FlagDeferred final : public Deferred {
public:
    void on_deferred() override { ++runs; }
    int runs = 0;
};

// Proves deferred work runs once per defer() and tick hooks run every iteration.
TEST(Reactor, DeferredAndTicks) {
    auto reactor = make_reactor();
    CountingTick tick;
    FlagDeferred work;
    reactor->add_tick(tick);
    reactor->defer(work);
    reactor->defer(work);  // Already queued: still one run.
    reactor->run_once(0);
    EXPECT_EQ(work.runs, 1);
    EXPECT_EQ(tick.count, 1);
    reactor->run_once(0);
    EXPECT_EQ(work.runs, 1);
    EXPECT_EQ(tick.count, 2);
    EXPECT_TRUE(reactor->ticks_idle());
    tick.busy = true;
    EXPECT_FALSE(reactor->ticks_idle());
    reactor->remove_tick(tick);
}

// Proves wake() from another thread ends a long wait.
TEST(Reactor, WakeFromAnotherThread) {
    auto reactor = make_reactor();
    std::thread waker([&] { reactor->wake(); });
    bool woken = false;
    for (int i = 0; i < 100 && !woken; ++i) {
        reactor->run_once(10'000'000'000ull);
        woken = reactor->take_woken();
    }
    waker.join();
    EXPECT_TRUE(woken);
}

class Done final : public IoCompletion {
public:
    void io_done(Status s, std::uint32_t b) override {
        status = s;
        bytes = b;
        ++calls;
    }
    Status status = Status::ok;
    std::uint32_t bytes = 0;
    int calls = 0;
};

void run_until(Reactor& reactor, const Done& done) {
    for (int i = 0; i < 1000 && done.calls == 0; ++i) reactor.run_once(1'000'000'000ull);
}

// Proves UringIo writes, syncs and reads a file through the ring, and maps a negative
// cqe->res to a Status (EBADF -> invalid).
TEST(UringIo, WriteSyncReadAndErrors) {
    auto reactor = make_reactor();
    UringIo io(*reactor);
    char path[] = "/tmp/rp_uring_io_XXXXXX";
    int fd = mkstemp(path);
    ASSERT_GE(fd, 0);
    unlink(path);
    std::string text = "durable bytes";
    iovec iov{text.data(), text.size()};
    Done wrote;
    io.writev(fd, &iov, 1, 0, wrote);
    EXPECT_EQ(wrote.calls, 0);  // Never inside the submitting call.
    run_until(*reactor, wrote);
    EXPECT_EQ(wrote.status, Status::ok);
    EXPECT_EQ(wrote.bytes, text.size());
    Done synced;
    io.fdatasync(fd, synced);
    run_until(*reactor, synced);
    EXPECT_EQ(synced.status, Status::ok);
    char back[32] = {};
    Done read;
    io.read(fd, back, sizeof(back), 0, read);
    run_until(*reactor, read);
    EXPECT_EQ(read.status, Status::ok);
    EXPECT_EQ(std::string(back, read.bytes), text);
    close(fd);
    Done bad;
    io.read(fd, back, sizeof(back), 0, bad);
    run_until(*reactor, bad);
    EXPECT_EQ(bad.status, Status::invalid);
    EXPECT_EQ(io.in_flight(), 0u);
}

}  // namespace
}  // namespace rp
