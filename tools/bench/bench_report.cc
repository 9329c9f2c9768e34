// tools/bench/bench_report.cc: text and JSON renderings of a RunReport.
#include "tools/bench/bench_report.h"

#include <cstdarg>
#include <cstdio>

namespace rp::bench {
namespace {

constexpr double percentiles[] = {50, 90, 99, 99.9};
constexpr const char* percentile_keys[] = {"p50", "p90", "p99", "p99_9"};

__attribute__((format(printf, 1, 2))) std::string format(const char* pattern, ...) {
    char line[512];
    va_list args;
    va_start(args, pattern);
    const int bytes = std::vsnprintf(line, sizeof(line), pattern, args);
    va_end(args);
    if (bytes < 0) return {};
    // bounds: vsnprintf wrote at most sizeof(line) - 1 characters.
    const auto kept = static_cast<std::size_t>(bytes) < sizeof(line)
                          ? static_cast<std::size_t>(bytes)
                          : sizeof(line) - 1;
    return std::string(line, kept);
}

double ms(std::uint64_t ns) { return static_cast<double>(ns) / 1e6; }

}  // namespace

std::uint64_t RunReport::error_count() const {
    std::uint64_t total = 0;
    for (const auto& [name, count] : errors) total += count;
    return total;
}

std::string json_escape(std::string_view text) {
    std::string out;
    out.reserve(text.size() + 2);
    for (const char c : text) {
        switch (c) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            case '\t': out += "\\t"; break;
            default:
                if (static_cast<unsigned char>(c) < 0x20) {
                    out += format("\\u%04x", static_cast<unsigned>(c));
                } else {
                    out += c;
                }
        }
    }
    return out;
}

std::string format_text(const RunReport& report) {
    std::string out = "ringpost-bench " + report.protocol + " -> " + report.target + "\n";
    std::string settings;
    for (const auto& [key, value] : report.settings) {
        settings += (settings.empty() ? "" : ", ") + key + " " + value;
    }
    out += "  " + settings + "\n";
    out += format("%s: %llu attempted, %llu accepted, %llu failed in %.3f s\n",
                  report.unit.c_str(), static_cast<unsigned long long>(report.attempted),
                  static_cast<unsigned long long>(report.completed),
                  static_cast<unsigned long long>(report.failed), report.elapsed_s);
    out += format("throughput: %.1f %s/s, %.2f MB/s; client CPU %.2f s (%.1f us per %s)\n",
                  report.per_second(), report.unit.c_str(), report.mb_per_second(),
                  report.client_cpu_s,
                  report.completed ? report.client_cpu_s * 1e6 / report.completed : 0.0,
                  report.unit.substr(0, report.unit.size() - 1).c_str());
    for (const auto& [name, count] : report.counters) {
        out += format("%s: %llu  ", name.c_str(), static_cast<unsigned long long>(count));
    }
    if (!report.counters.empty()) out += "\n";
    out += format("%-10s %9s %9s %9s %9s %9s %9s %9s\n", "latency ms", "count", "mean", "p50",
                  "p90", "p99", "p99.9", "max");
    // The table leaves out steps this run never took (tls without --tls...); JSON keeps them.
    for (const StepReport& step : report.steps) {
        const Histogram& h = step.latency_ns;
        if (h.count() == 0) continue;
        out += format("%-10s %9llu %9.3f %9.3f %9.3f %9.3f %9.3f %9.3f\n", step.name.c_str(),
                      static_cast<unsigned long long>(h.count()), h.mean() / 1e6,
                      ms(h.percentile(50)), ms(h.percentile(90)), ms(h.percentile(99)),
                      ms(h.percentile(99.9)), ms(h.max()));
    }
    for (const StepReport& step : report.steps) {
        if (step.latency_ns.count() == 0) continue;
        out += "  " + step.name + ": " + step.description + "\n";
    }
    if (report.errors.empty()) {
        out += "errors: none\n";
    } else {
        out += "errors:";
        for (const auto& [name, count] : report.errors) {
            out += format(" %s: %llu;", name.c_str(), static_cast<unsigned long long>(count));
        }
        out.back() = '\n';
    }
    if (!report.stop_reason.empty()) out += "stopped early: " + report.stop_reason + "\n";
    return out;
}

std::string format_json(const RunReport& report) {
    std::string out = "{\"protocol\":\"" + json_escape(report.protocol) + "\",\"target\":\"" +
                      json_escape(report.target) + "\",\"settings\":{";
    bool first = true;
    for (const auto& [key, value] : report.settings) {
        out += (first ? "\"" : ",\"") + json_escape(key) + "\":\"" + json_escape(value) + "\"";
        first = false;
    }
    out += format("},\"unit\":\"%s\",\"elapsed_s\":%.6f,\"attempted\":%llu,\"completed\":%llu,"
                  "\"failed\":%llu,\"payload_bytes\":%llu,\"per_second\":%.3f,"
                  "\"mb_per_second\":%.4f,\"client_cpu_s\":%.4f,\"error_count\":%llu",
                  json_escape(report.unit).c_str(), report.elapsed_s,
                  static_cast<unsigned long long>(report.attempted),
                  static_cast<unsigned long long>(report.completed),
                  static_cast<unsigned long long>(report.failed),
                  static_cast<unsigned long long>(report.payload_bytes), report.per_second(),
                  report.mb_per_second(), report.client_cpu_s,
                  static_cast<unsigned long long>(report.error_count()));
    out += ",\"counters\":{";
    first = true;
    for (const auto& [name, count] : report.counters) {
        out += format("%s\"%s\":%llu", first ? "" : ",", json_escape(name).c_str(),
                      static_cast<unsigned long long>(count));
        first = false;
    }
    out += "},\"latency_ms\":{";
    first = true;
    for (const StepReport& step : report.steps) {
        const Histogram& h = step.latency_ns;
        out += format("%s\"%s\":{\"count\":%llu,\"min\":%.6f,\"mean\":%.6f", first ? "" : ",",
                      json_escape(step.name).c_str(), static_cast<unsigned long long>(h.count()),
                      ms(h.min()), h.mean() / 1e6);
        for (std::size_t i = 0; i < std::size(percentiles); i++) {
            out += format(",\"%s\":%.6f", percentile_keys[i], ms(h.percentile(percentiles[i])));
        }
        out += format(",\"max\":%.6f}", ms(h.max()));
        first = false;
    }
    out += "},\"errors\":{";
    first = true;
    for (const auto& [name, count] : report.errors) {
        out += format("%s\"%s\":%llu", first ? "" : ",", json_escape(name).c_str(),
                      static_cast<unsigned long long>(count));
        first = false;
    }
    out += "},\"stop_reason\":\"" + json_escape(report.stop_reason) + "\"}\n";
    return out;
}

}  // namespace rp::bench
