#include "core/log.h"

#include <spdlog/async.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>

#include <string>

namespace rp::log {
namespace {

constexpr std::size_t queue_lines = 8192;

spdlog::level::level_enum to_spdlog(Level level) {
    switch (level) {
        case Level::debug: return spdlog::level::debug;
        case Level::info: return spdlog::level::info;
        case Level::warn: return spdlog::level::warn;
        case Level::error: return spdlog::level::err;
    }
    return spdlog::level::info;
}

}  // namespace

Result<Level> level_from_name(std::string_view name) {
    if (name == "debug") return Level::debug;
    if (name == "info") return Level::info;
    if (name == "warn") return Level::warn;
    if (name == "error") return Level::error;
    return Status::invalid;
}

std::string_view level_name(Level level) {
    switch (level) {
        case Level::debug: return "debug";
        case Level::info: return "info";
        case Level::warn: return "warn";
        case Level::error: return "error";
    }
    return "info";
}

Status init(std::string_view target, Level level) {
    spdlog::init_thread_pool(queue_lines, 1);
    std::shared_ptr<spdlog::sinks::sink> sink;
    if (target == "stderr" || target.empty()) {
        sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
    } else {
        // spdlog reports a file it cannot open by throwing; start-up code is the only
        // place this runs, and we turn it into a Status here.
        try {
            sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(std::string(target));
        } catch (const std::exception&) {
            return Status::io;
        }
    }
    auto logger = std::make_shared<spdlog::async_logger>(
        "ringpost", sink, spdlog::thread_pool(), spdlog::async_overflow_policy::overrun_oldest);
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %l %v");
    logger->set_level(to_spdlog(level));
    logger->flush_on(spdlog::level::warn);
    spdlog::set_default_logger(logger);
    spdlog::flush_every(std::chrono::seconds(1));
    return Status::ok;
}

void set_level(Level level) {
    if (auto* logger = spdlog::default_logger_raw()) logger->set_level(to_spdlog(level));
}

void shutdown() {
    // spdlog::shutdown() drops the default logger; a second call finds none.
    if (spdlog::default_logger_raw() == nullptr) return;
    spdlog::default_logger_raw()->flush();
    spdlog::shutdown();
}

}  // namespace rp::log
