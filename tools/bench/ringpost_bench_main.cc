// tools/bench/ringpost_bench_main.cc: `ringpost-bench SUBCOMMAND [OPTIONS]`.
#include <cstdio>
#include <span>
#include <string>
#include <string_view>

#include "tools/bench/bench_access.h"
#include "tools/bench/bench_options.h"
#include "tools/bench/bench_relay.h"
#include "tools/bench/bench_smtp.h"

namespace {

bool wants_help(std::span<const char* const> args) {
    for (const char* arg : args) {
        const std::string_view text(arg);
        if (text == "--help" || text == "-h") return true;
    }
    return false;
}

}  // namespace

int main(int argc, char** argv) {
    using namespace rp::bench;
    if (argc < 2) {
        std::fputs(main_usage().data(), stderr);
        return 2;
    }
    const std::string_view command(argv[1]);
    const std::span<const char* const> args(argv + 2, static_cast<std::size_t>(argc - 2));
    if (command == "--help" || command == "-h" || command == "help") {
        std::fputs(main_usage().data(), stdout);
        return 0;
    }
    if (command == "smtp") {
        if (wants_help(args)) {
            std::fputs(smtp_usage().data(), stdout);
            return 0;
        }
        SmtpOptions options;
        std::string error;
        if (parse_smtp_options(args, options, error) != rp::Status::ok) {
            std::fprintf(stderr, "ringpost-bench smtp: %s\n", error.c_str());
            return 2;
        }
        return run_smtp(options);
    }
    if (command == "pop3" || command == "imap") {
        AccessOptions options;
        options.protocol = command == "pop3" ? AccessProtocol::pop3 : AccessProtocol::imap;
        if (wants_help(args)) {
            std::fputs(access_usage(options.protocol).c_str(), stdout);
            return 0;
        }
        std::string error;
        if (parse_access_options(args, options, error) != rp::Status::ok) {
            std::fprintf(stderr, "ringpost-bench %s: %s\n", argv[1], error.c_str());
            return 2;
        }
        return run_access(options);
    }
    if (command == "relay") {
        if (wants_help(args)) {
            std::fputs(relay_usage().c_str(), stdout);
            return 0;
        }
        RelayOptions options;
        std::string error;
        if (parse_relay_options(args, options, error) != rp::Status::ok) {
            std::fprintf(stderr, "ringpost-bench relay: %s\n", error.c_str());
            return 2;
        }
        return run_relay(options);
    }
    std::fprintf(stderr, "ringpost-bench: unknown subcommand '%s'\n%s", argv[1],
                 main_usage().data());
    return 2;
}
