// tools/bench/bench_smtp.h: `ringpost-bench smtp`, an SMTP load generator.
//
// An independent client: it shares no protocol code with the server it measures, so a bug
// in ringpost's SMTP code cannot hide itself in the numbers.
//
// Owns: per thread, one ClientLoop and the SMTP state of each of its sessions.
// Steps measured: connect, greeting (connected -> 220), ehlo, envelope (MAIL sent -> 354,
//   MAIL/RCPT/DATA together with --pipelining), accept (final dot sent -> 250: the accept
//   latency of the targets) and message (MAIL sent -> 250).
// Errors: every reply other than the expected one is counted under "<code> <step>"; a
//   connection failure under its label. 421, timeouts and resets close the session, which
//   reconnects after --reconnect-delay while the run has work left.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/result.h"
#include "tools/bench/bench_options.h"

namespace rp::bench {

struct SmtpReply {
    int code = 0;
    bool pipelining = false;  // One of the lines (an EHLO keyword) is PIPELINING.
};

// Splits a byte stream into SMTP replies (RFC 5321 4.2: "xyz-text" lines continue a
// reply, "xyz text" or "xyz" ends it). Pure, so tests can feed it one byte at a time.
class SmtpReplyReader {
public:
    static constexpr std::size_t reply_bytes_max = 64 * 1024;

    // Status::too_big when an unfinished reply grows past reply_bytes_max.
    [[nodiscard]] Status feed(std::string_view bytes);
    // The next complete reply; Status::again when more bytes are needed; Status::invalid when
    // a line does not start with three digits.
    [[nodiscard]] Result<SmtpReply> next();
    void reset();

private:
    std::string buffer_;
    std::size_t start_ = 0;  // The first byte not yet consumed.
};

// `pattern` with its first "%d" replaced by `number` ("u%d@x.test" -> "u42@x.test").
std::string smtp_expand_address(std::string_view pattern, std::uint64_t number);
// `bytes` of 78-byte CRLF lines, none starting with a dot. A message is its headers and a
// prefix of this, so that it is `--size` bytes long; threads share one read-only copy.
std::string make_filler(std::size_t bytes);

// Runs the benchmark, prints the report and returns the exit status.
int run_smtp(const SmtpOptions& options);

struct RunReport;
// Runs the load and fills `report` (printing nothing but the progress line); returns 0 (clean),
// 1 (errors), 2 (usage) or 77 (no io_uring). With `accept_ns` (an array of --messages
// entries), each accepted message's monotonic time is stored at its number.
int smtp_load(const SmtpOptions& options, std::atomic<std::uint64_t>* accept_ns,
              RunReport& report);

}  // namespace rp::bench
