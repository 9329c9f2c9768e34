// tools/bench/bench_report.h: the result of a run, as a table for people or JSON for machines.
//
// Owns: copies of the merged histograms and counters; formatting is pure.
// Units: latencies are recorded in nanoseconds and printed in milliseconds.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "tools/bench/bench_histogram.h"

namespace rp::bench {

struct StepReport {
    std::string name;         // "connect", "accept", ...
    std::string description;  // One line for the table's legend.
    Histogram latency_ns;
};

struct RunReport {
    std::string protocol;  // "smtp"
    std::string target;    // "127.0.0.1:2525"
    std::vector<std::pair<std::string, std::string>> settings;  // In print order.
    double elapsed_s = 0;          // First connect to the last completed operation.
    std::string unit = "msgs";     // What throughput counts.
    std::uint64_t attempted = 0;
    std::uint64_t completed = 0;   // Accepted messages (or operations) only.
    std::uint64_t failed = 0;
    std::uint64_t payload_bytes = 0;  // Of completed operations.
    std::vector<std::pair<std::string, std::uint64_t>> counters;  // sessions, reconnects...
    std::vector<StepReport> steps;
    std::map<std::string, std::uint64_t> errors;  // "451", "connect refused", "timeout"...
    double client_cpu_s = 0;       // User + system CPU of this process.
    std::string stop_reason;       // Empty when the run ended as planned.

    double per_second() const { return elapsed_s > 0 ? completed / elapsed_s : 0; }
    double mb_per_second() const {
        return elapsed_s > 0 ? payload_bytes / elapsed_s / 1e6 : 0;
    }
    std::uint64_t error_count() const;
};

std::string format_text(const RunReport& report);
std::string format_json(const RunReport& report);
std::string json_escape(std::string_view text);

}  // namespace rp::bench
