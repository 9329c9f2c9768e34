// tools/bench/bench_options.h: the command line of ringpost-bench.
//
// Owns: the parsed options of one run. Parsing is pure (no I/O), so tests can drive it.
// Errors: parse_* return Status::invalid and set `error` to one line naming the option.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"

namespace rp::bench {

enum class TlsMode : std::uint8_t {
    none,
    starttls,  // SMTP STARTTLS, POP3 STLS, IMAP STARTTLS after the greeting.
    implicit,  // TLS from the first byte (smtps 465, pop3s 995, imaps 993).
};

enum class AuthMechanism : std::uint8_t { none, plain, login };

// Options every subcommand shares: where to connect, how much load, and for how long.
struct CommonOptions {
    std::string host = "127.0.0.1";
    std::uint16_t port = 0;            // 0: the subcommand's default.
    unsigned thread_count = 1;
    unsigned session_count = 1;        // Concurrent connections, over all threads.
    std::uint64_t message_count = 0;   // Operations to attempt in total; 0: bounded by time.
    double duration_s = 0;             // 0: bounded by message_count.
    std::uint32_t timeout_ms = 30'000;  // Per reply; a silent server never hangs the run.
    std::uint32_t reconnect_delay_ms = 100;
    std::uint64_t error_count_max = 1000;  // The run stops past this many errors.
    std::uint64_t seed = 1;
    bool json = false;
    bool progress = false;             // Also when stderr is not a TTY.
    bool quiet = false;                // No progress line at all.
    TlsMode tls = TlsMode::none;
    std::string tls_ca_file;           // Empty: no certificate verification.
    std::string server_name;           // SNI; empty: none.
    // Key exchange groups offered, preferred first; the key share is for the first. X25519
    // first, as real mail clients (NSS, OpenSSL, Apple) offer it; --groups P-256 forces P-256.
    std::vector<std::string> tls_groups = {"X25519", "P-256", "P-384"};
    std::string user;                  // Login name (SMTP AUTH, POP3 USER, IMAP LOGIN).
    std::string password;
};

// A message size: fixed (low == high) or uniform in [low, high].
struct SizeRange {
    std::uint64_t low = 4096;
    std::uint64_t high = 4096;
};

struct SmtpOptions {
    CommonOptions common;
    SizeRange size;
    unsigned recipient_count = 1;
    unsigned messages_per_session = 0;  // 0: keep the session for as long as there is work.
    bool pipelining = false;            // RFC 2920, used only when the server offers it.
    std::string from = "bench@bench.test";
    std::string to = "demo@example.test";  // May contain %d: a number in [0, to_spread).
    unsigned to_spread = 1000;
    std::string ehlo_name = "bench.test";
    AuthMechanism auth = AuthMechanism::none;  // RFC 4954, after EHLO (and STARTTLS).
};

// "4096", "4k", "1M", "1k-100k" (k = 1024). Ranges need low <= high, and sizes are > 0.
[[nodiscard]] Result<SizeRange> parse_size_range(std::string_view text);
// "30", "2.5s", "500ms", "2m".
[[nodiscard]] Result<double> parse_duration_s(std::string_view text);

// Parses the arguments after the subcommand name. On Status::invalid, `error` says why.
[[nodiscard]] Status parse_smtp_options(std::span<const char* const> args, SmtpOptions& out,
                                        std::string& error);

// The part of a usage text that describes the TLS and login options.
std::string_view tls_usage();
std::string_view smtp_usage();
std::string_view main_usage();

}  // namespace rp::bench
