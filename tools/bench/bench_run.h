// tools/bench/bench_run.h: what every subcommand's run shares: the target address, Ctrl-C,
// the progress line and the process's CPU time.
#pragma once

#include <sys/socket.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>

#include "core/result.h"
#include "tools/bench/bench_options.h"

namespace rp::bench {

struct Target {
    sockaddr_storage address{};
    socklen_t address_bytes = 0;
    std::string text;  // "127.0.0.1:2525", "[::1]:2525"
};

// Resolves the host once, at start-up (the run itself never blocks on DNS).
[[nodiscard]] Result<Target> resolve_target(const std::string& host, std::uint16_t port);

// The first SIGINT or SIGTERM asks the run to finish what is in flight; the second one stops it
// at once. Threads poll interrupt_count() on their tick.
void install_interrupt_handler();
int interrupt_count();

// Raises the soft limit on open files to the hard one: every session is a socket.
void raise_open_file_limit();

// User plus system CPU seconds of this process so far.
double process_cpu_seconds();

// Prints "[  3.0s] 4012 msgs  1337/s now  0 errors" about once a second to stderr, on a TTY
// (rewriting one line) or when forced (one line each). `sample` returns completed and errors.
class Progress {
public:
    Progress(const CommonOptions& options, std::string unit);
    void maybe_print(std::uint64_t now, std::uint64_t completed, std::uint64_t errors);
    void finish();

private:
    bool enabled_ = false;
    bool tty_ = false;
    bool printed_ = false;
    std::string unit_;
    std::uint64_t start_ns_ = 0;
    std::uint64_t last_ns_ = 0;
    std::uint64_t last_completed_ = 0;
};

}  // namespace rp::bench
