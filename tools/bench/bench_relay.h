// tools/bench/bench_relay.h: `ringpost-bench relay`, end-to-end relay load: the SMTP load of
// `ringpost-bench smtp` goes to the daemon, whose recipients' MX points at a sink that this
// tool runs itself, so it sees both ends: accept (the daemon's 250) and delivery (the final
// dot at the sink).
//
// Owns: one sink thread (poll() over non-blocking sockets: the sink is the measuring
//   instrument, not the system under test) and the accept times of every message.
// Steps measured: accept, message (as for smtp), delivered (the daemon's 250 until the
//   message's final dot reached the sink), and throughput end to end (first connect until the
//   last delivery).
// Errors: the SMTP load's, plus "not delivered" for each accepted message the sink did not
//   see within --drain-timeout, and "duplicate delivery".
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "core/result.h"
#include "tools/bench/bench_options.h"

namespace rp::bench {

struct RelayOptions {
    SmtpOptions smtp;
    std::string sink_host = "127.0.0.2";
    std::uint16_t sink_port = 0;       // Required.
    double drain_timeout_s = 60;
};

// The message number in "Subject: ringpost-bench message N" within `header`, or -1.
std::int64_t relay_message_number(std::string_view header);

[[nodiscard]] Status parse_relay_options(std::span<const char* const> args, RelayOptions& out,
                                         std::string& error);
std::string relay_usage();
int run_relay(const RelayOptions& options);

}  // namespace rp::bench
