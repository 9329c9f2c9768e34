// tools/bench/bench_options.cc: parsing of ringpost-bench's command line.
#include "tools/bench/bench_options.h"

#include <charconv>
#include <cmath>

namespace rp::bench {
namespace {

Result<std::uint64_t> parse_u64(std::string_view text) {
    std::uint64_t value = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc{} || end != text.data() + text.size() || text.empty()) {
        return Status::invalid;
    }
    return value;
}

Result<std::uint64_t> parse_bytes(std::string_view text) {
    std::uint64_t scale = 1;
    if (!text.empty()) {
        switch (text.back()) {
            case 'k': case 'K': scale = 1024; break;
            case 'm': case 'M': scale = 1024 * 1024; break;
            case 'b': case 'B': scale = 1; break;
            default: scale = 0; break;
        }
        if (scale != 0) text.remove_suffix(1);
        if (scale == 0) scale = 1;
    }
    auto value = parse_u64(text);
    if (!value) return value.status();
    if (*value == 0 || *value > (std::uint64_t{1} << 40) / scale) return Status::invalid;
    return *value * scale;  // bounds: checked against 2^40 above.
}

// Fetches the value of `--name value` or `--name=value`.
struct ArgReader {
    std::span<const char* const> args;
    std::size_t index = 0;
    std::string_view inline_value;
    bool has_inline = false;

    Result<std::string_view> value(std::string_view name, std::string& error) {
        if (has_inline) return inline_value;
        if (index + 1 >= args.size()) {
            error = "option " + std::string(name) + " needs a value";
            return Status::invalid;
        }
        index++;
        return std::string_view(args[index]);
    }
};

Status set_uint(std::string_view name, std::string_view text, std::uint64_t low,
                std::uint64_t high, std::uint64_t& out, std::string& error) {
    auto value = parse_u64(text);
    if (!value || *value < low || *value > high) {
        error = "option " + std::string(name) + ": expected a number in [" + std::to_string(low) +
                ", " + std::to_string(high) + "], got '" + std::string(text) + "'";
        return Status::invalid;
    }
    out = *value;
    return Status::ok;
}

template <typename T>
Status set_small(std::string_view name, std::string_view text, std::uint64_t low,
                 std::uint64_t high, T& out, std::string& error) {
    std::uint64_t value = 0;
    const Status status = set_uint(name, text, low, high, value, error);
    if (status == Status::ok) out = static_cast<T>(value);
    return status;
}

// Options shared by every subcommand. Returns Status::not_found for an option it does not
// know, so the subcommand can try its own.
Status parse_common(std::string_view name, ArgReader& reader, CommonOptions& out,
                    std::string& error) {
    if (name == "--json") return out.json = true, Status::ok;
    if (name == "--progress") return out.progress = true, Status::ok;
    if (name == "--quiet") return out.quiet = true, Status::ok;
    const bool known = name == "--host" || name == "--port" || name == "--threads" ||
                       name == "--sessions" || name == "--messages" || name == "--duration" ||
                       name == "--timeout" || name == "--reconnect-delay" ||
                       name == "--max-errors" || name == "--seed";
    if (!known) return Status::not_found;
    auto text = reader.value(name, error);
    if (!text) return text.status();
    if (name == "--host") return out.host = std::string(*text), Status::ok;
    if (name == "--port") return set_small(name, *text, 1, 65535, out.port, error);
    if (name == "--threads") return set_small(name, *text, 1, 256, out.thread_count, error);
    if (name == "--sessions") return set_small(name, *text, 1, 1u << 20, out.session_count, error);
    if (name == "--messages") return set_uint(name, *text, 1, UINT64_MAX / 2, out.message_count, error);
    if (name == "--max-errors") return set_uint(name, *text, 0, UINT64_MAX / 2, out.error_count_max, error);
    if (name == "--seed") return set_uint(name, *text, 0, UINT64_MAX, out.seed, error);
    if (name == "--timeout" || name == "--reconnect-delay") {
        auto seconds = parse_duration_s(*text);
        if (!seconds || *seconds > 3600) {
            error = "option " + std::string(name) + ": expected a duration like 30s or 500ms";
            return Status::invalid;
        }
        const auto ms = static_cast<std::uint32_t>(std::llround(*seconds * 1000));
        if (name == "--timeout") out.timeout_ms = ms < 1 ? 1 : ms;
        else out.reconnect_delay_ms = ms;
        return Status::ok;
    }
    auto seconds = parse_duration_s(*text);  // --duration
    if (!seconds || *seconds <= 0) {
        error = "option --duration: expected a duration like 10s, 500ms or 2m";
        return Status::invalid;
    }
    out.duration_s = *seconds;
    return Status::ok;
}

Status parse_smtp_option(std::string_view name, ArgReader& reader, SmtpOptions& out,
                         std::string& error) {
    if (name == "--pipelining") return out.pipelining = true, Status::ok;
    if (name == "--no-pipelining") return out.pipelining = false, Status::ok;
    const bool known = name == "--size" || name == "--rcpts" || name == "--per-session" ||
                       name == "--from" || name == "--to" || name == "--to-spread" ||
                       name == "--ehlo";
    if (!known) {
        error = "unknown option '" + std::string(name) + "' (see ringpost-bench smtp --help)";
        return Status::invalid;
    }
    auto text = reader.value(name, error);
    if (!text) return text.status();
    if (name == "--size") {
        auto range = parse_size_range(*text);
        if (!range) {
            error = "option --size: expected BYTES or LOW-HIGH (k and M suffixes), got '" +
                    std::string(*text) + "'";
            return Status::invalid;
        }
        out.size = *range;
        return Status::ok;
    }
    if (name == "--rcpts") return set_small(name, *text, 1, 100000, out.recipient_count, error);
    if (name == "--per-session") {
        return set_small(name, *text, 0, UINT32_MAX, out.messages_per_session, error);
    }
    if (name == "--to-spread") return set_small(name, *text, 1, 1u << 30, out.to_spread, error);
    std::string& target = name == "--from" ? out.from : name == "--to" ? out.to : out.ehlo_name;
    if (text->empty() || text->size() > 256 || text->find_first_of("\r\n <>") != text->npos) {
        error = "option " + std::string(name) + ": expected an address or name without spaces";
        return Status::invalid;
    }
    target = std::string(*text);
    return Status::ok;
}

}  // namespace

Result<SizeRange> parse_size_range(std::string_view text) {
    const auto dash = text.find('-');
    auto low = parse_bytes(text.substr(0, dash));
    if (!low) return low.status();
    SizeRange range{*low, *low};
    if (dash != text.npos) {
        auto high = parse_bytes(text.substr(dash + 1));
        if (!high || *high < *low) return Status::invalid;
        range.high = *high;
    }
    return range;
}

Result<double> parse_duration_s(std::string_view text) {
    double scale = 1;
    if (text.ends_with("ms")) {
        scale = 0.001;
        text.remove_suffix(2);
    } else if (text.ends_with("s")) {
        text.remove_suffix(1);
    } else if (text.ends_with("m")) {
        scale = 60;
        text.remove_suffix(1);
    }
    double value = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc{} || end != text.data() + text.size() || text.empty()) {
        return Status::invalid;
    }
    if (!(value >= 0) || value > 1e7) return Status::invalid;
    return value * scale;
}

Status parse_smtp_options(std::span<const char* const> args, SmtpOptions& out,
                          std::string& error) {
    ArgReader reader{args, 0, {}, false};
    for (reader.index = 0; reader.index < args.size(); reader.index++) {
        std::string_view arg = args[reader.index];
        reader.has_inline = false;
        if (const auto eq = arg.find('='); arg.starts_with("--") && eq != arg.npos) {
            reader.inline_value = arg.substr(eq + 1);
            reader.has_inline = true;
            arg = arg.substr(0, eq);
        }
        Status status = parse_common(arg, reader, out.common, error);
        if (status == Status::not_found) status = parse_smtp_option(arg, reader, out, error);
        if (status != Status::ok) return status;
    }
    CommonOptions& common = out.common;
    if (common.port == 0) common.port = 2525;
    if (common.message_count == 0 && common.duration_s == 0) common.message_count = 1000;
    if (common.thread_count > common.session_count) common.thread_count = common.session_count;
    return Status::ok;
}

std::string_view main_usage() {
    return "usage: ringpost-bench SUBCOMMAND [OPTIONS]\n"
           "  smtp    send mail over SMTP and measure accept throughput and latency\n"
           "  (pop3, imap and relay come later)\n"
           "ringpost-bench SUBCOMMAND --help lists its options.\n";
}

std::string_view smtp_usage() {
    return "usage: ringpost-bench smtp [OPTIONS]\n"
           "Where and how much (every run is bounded by count, time and --max-errors):\n"
           "  --host ADDR          server address (IPv4 or IPv6 literal) [127.0.0.1]\n"
           "  --port N             [2525]\n"
           "  --threads N          client threads, each with its own io_uring [1]\n"
           "  --sessions N         concurrent SMTP connections over all threads [1]\n"
           "  --messages N         messages to attempt in total [1000 unless --duration]\n"
           "  --duration T         stop starting messages after T (10s, 500ms, 2m)\n"
           "  --per-session N      QUIT and reconnect after N messages; 0 = never [0]\n"
           "  --timeout T          longest wait for any reply or connect [30s]\n"
           "  --reconnect-delay T  wait after a failed connection before the next [100ms]\n"
           "  --max-errors N       stop the run past N errors; 0 = never [1000]\n"
           "The messages:\n"
           "  --size B|LOW-HIGH    message bytes with headers, fixed or uniform (4k, 1k-100k) [4096]\n"
           "  --rcpts N            recipients per message [1]\n"
           "  --from ADDR          envelope sender [bench@bench.test]\n"
           "  --to ADDR            recipient; %d becomes a number below --to-spread [demo@example.test]\n"
           "  --to-spread N        [1000]\n"
           "  --ehlo NAME          [bench.test]\n"
           "  --pipelining         send MAIL, RCPT and DATA together if the server offers PIPELINING\n"
           "  --seed N             sizes are drawn from this seed [1]\n"
           "Output:\n"
           "  --json               one JSON object on stdout instead of the table\n"
           "  --progress           a progress line every second on stderr, even if not a TTY\n"
           "  --quiet              no progress line\n"
           "Exit status: 0 if every message was accepted, 1 if any error was counted, 2 usage.\n";
}

}  // namespace rp::bench
