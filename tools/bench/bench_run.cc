// tools/bench/bench_run.cc: target resolution, signals, progress and CPU time.
#include "tools/bench/bench_run.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstring>

#include "tools/bench/bench_loop.h"

namespace rp::bench {
namespace {

std::atomic<int> interrupts{0};

void on_interrupt(int) { interrupts.fetch_add(1, std::memory_order_relaxed); }

}  // namespace

Result<Target> resolve_target(const std::string& host, std::uint16_t port) {
    Target target;
    auto* v4 = reinterpret_cast<sockaddr_in*>(&target.address);
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&target.address);
    if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        target.address_bytes = sizeof(sockaddr_in);
        target.text = host + ":" + std::to_string(port);
        return target;
    }
    if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(port);
        target.address_bytes = sizeof(sockaddr_in6);
        target.text = "[" + host + "]:" + std::to_string(port);
        return target;
    }
    // A name: resolved once here, before any load starts.
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    if (getaddrinfo(host.c_str(), nullptr, &hints, &found) != 0 || found == nullptr) {
        return Status::not_found;
    }
    std::memcpy(&target.address, found->ai_addr, found->ai_addrlen);
    target.address_bytes = found->ai_addrlen;
    freeaddrinfo(found);
    if (target.address.ss_family == AF_INET) v4->sin_port = htons(port);
    else v6->sin6_port = htons(port);
    target.text = host + ":" + std::to_string(port);
    return target;
}

void install_interrupt_handler() {
    struct sigaction action{};
    action.sa_handler = on_interrupt;
    sigemptyset(&action.sa_mask);
    sigaction(SIGINT, &action, nullptr);
    sigaction(SIGTERM, &action, nullptr);
    signal(SIGPIPE, SIG_IGN);
}

int interrupt_count() { return interrupts.load(std::memory_order_relaxed); }

void raise_open_file_limit() {
    rlimit limit{};
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        setrlimit(RLIMIT_NOFILE, &limit);
    }
}

double process_cpu_seconds() {
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    auto seconds = [](const timeval& tv) {
        return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6;
    };
    return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

Progress::Progress(const CommonOptions& options, std::string unit) : unit_(std::move(unit)) {
    tty_ = isatty(STDERR_FILENO) == 1;
    enabled_ = !options.quiet && (options.progress || tty_);
    start_ns_ = now_ns();
    last_ns_ = start_ns_;
}

void Progress::maybe_print(std::uint64_t now, std::uint64_t completed, std::uint64_t errors) {
    // Short runs print nothing: the first line comes after two seconds.
    if (!enabled_ || now - last_ns_ < 1'000'000'000u || now - start_ns_ < 2'000'000'000u) return;
    const double interval_s = static_cast<double>(now - last_ns_) / 1e9;
    const double rate = static_cast<double>(completed - last_completed_) / interval_s;
    std::fprintf(stderr, "%s[%7.1fs] %llu %s  %.0f/s now  %llu errors%s",
                 tty_ ? "\r" : "", static_cast<double>(now - start_ns_) / 1e9,
                 static_cast<unsigned long long>(completed), unit_.c_str(), rate,
                 static_cast<unsigned long long>(errors), tty_ ? "\033[K" : "\n");
    std::fflush(stderr);
    printed_ = true;
    last_ns_ = now;
    last_completed_ = completed;
}

void Progress::finish() {
    if (printed_ && tty_) std::fputs("\n", stderr);
}

}  // namespace rp::bench
