// tests/sim/storage_crash_test.cc: kill -9 at random moments loses nothing reported durable.
//
// Proves: a child process (storage_crash_child) appends and syncs in a loop and reports each
// durable message number on a pipe; this test SIGKILLs it at a random moment, reopens the
// store and checks every reported number is present with its exact bytes, that every message
// present reads back intact (nothing damaged is served) and that no damage is reported.
// At least 50 rounds, seeded; the seed is printed and --seed=N replays.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <set>
#include <string>

#include "core/clock.h"
#include "core/sync_io.h"
#include "tests/sim/store_harness.h"

using namespace rp;
using namespace rp::storage;

std::string crash_body(std::uint64_t id) {
    const std::size_t size = 100 + (id * 7919) % 30000;
    std::string s(size, '\0');
    for (std::size_t i = 0; i < size; ++i) s[i] = static_cast<char>((id * 131 + i * 17) & 0xff);
    return s;
}

static std::uint64_t seed = 0;

#define CHECK(cond, ...)                                                                          \
    do {                                                                                          \
        if (!(cond)) {                                                                            \
            std::fprintf(stderr, "FAIL (seed=%llu): ", static_cast<unsigned long long>(seed));    \
            std::fprintf(stderr, __VA_ARGS__);                                                    \
            std::fprintf(stderr, "\n");                                                           \
            std::exit(1);                                                                         \
        }                                                                                         \
    } while (0)

static std::uint64_t now_ms() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<std::uint64_t>(ts.tv_sec) * 1000 + static_cast<std::uint64_t>(ts.tv_nsec) / 1000000;
}

int main(int argc, char** argv) {
    seed = static_cast<std::uint64_t>(time(nullptr));
    int rounds = 50;
    std::string child = std::string(argv[0]);
    child = child.substr(0, child.rfind('/') + 1) + "storage_crash_child";
    for (int i = 1; i < argc; ++i) {
        if (std::strncmp(argv[i], "--seed=", 7) == 0) seed = std::strtoull(argv[i] + 7, nullptr, 10);
        if (std::strncmp(argv[i], "--rounds=", 9) == 0) rounds = std::atoi(argv[i] + 9);
        if (std::strncmp(argv[i], "--child=", 8) == 0) child = argv[i] + 8;
    }
    std::printf("storage_crash_test: seed=%llu rounds=%d\n", static_cast<unsigned long long>(seed), rounds);
    std::fflush(stdout);
    std::mt19937_64 rng(seed);
    test::TempDir dir;
    const std::string path = dir.shard(0);
    std::set<std::int64_t> durable;
    std::uint64_t verified = 0;
    for (int round = 0; round < rounds; ++round) {
        int fds[2];
        CHECK(::pipe(fds) == 0, "pipe");
        const pid_t pid = ::fork();
        CHECK(pid >= 0, "fork");
        if (pid == 0) {
            ::dup2(fds[1], 1);
            ::close(fds[0]);
            ::close(fds[1]);
            ::execl(child.c_str(), child.c_str(), path.c_str(), static_cast<char*>(nullptr));
            ::_exit(127);
        }
        ::close(fds[1]);
        // Let it run 5..60 ms past its first report, reading what it reports.
        const std::uint64_t run_ms = 5 + rng() % 55;
        std::uint64_t deadline = 0;
        std::string pending;
        char buf[4096];
        for (;;) {
            pollfd p{fds[0], POLLIN, 0};
            const std::uint64_t t = now_ms();
            if (deadline && t >= deadline) break;
            const int wait = deadline ? static_cast<int>(deadline - t) : 2000;
            if (::poll(&p, 1, wait) <= 0) {
                CHECK(deadline != 0, "child reported nothing within 2 s");
                break;
            }
            const ssize_t n = ::read(fds[0], buf, sizeof buf);
            if (n <= 0) break;
            pending.append(buf, static_cast<std::size_t>(n));
            if (!deadline) deadline = now_ms() + run_ms;
        }
        ::kill(pid, SIGKILL);
        // Whatever was written before the kill was durable when written.
        ssize_t n;
        while ((n = ::read(fds[0], buf, sizeof buf)) > 0) pending.append(buf, static_cast<std::size_t>(n));
        ::close(fds[0]);
        int status = 0;
        ::waitpid(pid, &status, 0);
        CHECK(WIFSIGNALED(status), "child exited by itself: status %d", status);
        std::size_t at = 0, nl;
        while ((nl = pending.find('\n', at)) != std::string::npos) {
            durable.insert(std::strtoll(pending.c_str() + at, nullptr, 10));
            at = nl + 1;
        }
        SyncIo io;
        auto opened = MailStore::open(io, RealClock::instance(), test::options_for(path, 0, 1u << 20));
        CHECK(opened, "reopen: %s", std::string(status_name(opened.status())).c_str());
        MailStore& store = **opened;
        CHECK(store.open_report().damage.empty(), "damage reported: %s",
              store.open_report().damage.front().what.c_str());
        auto msgs = store.messages("crash@x", "INBOX");
        CHECK(msgs, "INBOX: %s", std::string(status_name(msgs.status())).c_str());
        std::set<std::int64_t> present;
        for (const auto& m : *msgs) {
            const std::string got = test::body_string(store, m.body);
            CHECK(got == crash_body(static_cast<std::uint64_t>(m.internal_date)), "message %lld damaged",
                  static_cast<long long>(m.internal_date));
            present.insert(m.internal_date);
            ++verified;
        }
        for (std::int64_t id : durable) CHECK(present.count(id), "durable message %lld lost", static_cast<long long>(id));
    }
    std::printf("storage_crash_test: ok, %zu durable messages, %llu verified reads\n", durable.size(),
                static_cast<unsigned long long>(verified));
    return 0;
}
