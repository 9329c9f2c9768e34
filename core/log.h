// core/log.h: logging that never blocks a shard.
//
// Owns: one process-wide asynchronous logger (spdlog, a bounded queue and one writer thread).
// Core: any thread may log. A full queue drops the oldest line (overrun_oldest) rather than
//   block a core thread; dropped lines are counted by spdlog.
// Errors: init() returns Status::invalid for a bad level and Status::io for a log file that
//   cannot be opened.
#pragma once

#include <spdlog/spdlog.h>

#include <string_view>

#include "core/result.h"

namespace rp::log {

enum class Level : std::uint8_t { debug, info, warn, error };

// Parses "debug", "info", "warn" or "error".
[[nodiscard]] Result<Level> level_from_name(std::string_view name);
std::string_view level_name(Level level);

// `target` is "stderr" or a file path (appended to). Call once at start-up, before shards
// run; until then lines go synchronously to stderr.
[[nodiscard]] Status init(std::string_view target, Level level);
void set_level(Level level);
// Flushes the queue and stops the writer thread. Safe to call twice.
void shutdown();

template <typename... Args>
void debug(spdlog::format_string_t<Args...> format, Args&&... args) {
    spdlog::debug(format, std::forward<Args>(args)...);
}
template <typename... Args>
void info(spdlog::format_string_t<Args...> format, Args&&... args) {
    spdlog::info(format, std::forward<Args>(args)...);
}
template <typename... Args>
void warn(spdlog::format_string_t<Args...> format, Args&&... args) {
    spdlog::warn(format, std::forward<Args>(args)...);
}
template <typename... Args>
void error(spdlog::format_string_t<Args...> format, Args&&... args) {
    spdlog::error(format, std::forward<Args>(args)...);
}

}  // namespace rp::log
