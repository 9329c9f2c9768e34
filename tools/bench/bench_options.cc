// tools/bench/bench_options.cc: parsing of ringpost-bench's command line.
#include "tools/bench/bench_options.h"

#include <charconv>
#include <cmath>

#include "tools/bench/bench_access.h"

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
    if (name == "--tls") return out.tls = TlsMode::implicit, Status::ok;
    if (name == "--starttls") return out.tls = TlsMode::starttls, Status::ok;
    if (name == "--groups") {
        auto text = reader.value(name, error);
        if (!text) return text.status();
        out.tls_groups.clear();
        std::string_view rest = *text;
        while (!rest.empty()) {
            const std::size_t comma = std::min(rest.find(','), rest.size());
            if (comma == 0 || comma > 32) {
                error = "option --groups: group names separated by commas expected";
                return Status::invalid;
            }
            out.tls_groups.emplace_back(rest.substr(0, comma));
            rest.remove_prefix(std::min(comma + 1, rest.size()));
        }
        if (out.tls_groups.empty() || out.tls_groups.size() > 8) {
            error = "option --groups: one to eight group names expected";
            return Status::invalid;
        }
        return Status::ok;
    }
    if (name == "--tls-ca" || name == "--sni" || name == "--user" || name == "--auth-user" ||
        name == "--password" || name == "--auth-pass") {
        auto text = reader.value(name, error);
        if (!text) return text.status();
        if (text->size() > 4096 || text->find_first_of("\r\n") != text->npos) {
            error = "option " + std::string(name) + ": a value without line breaks expected";
            return Status::invalid;
        }
        if (name == "--tls-ca") out.tls_ca_file = std::string(*text);
        else if (name == "--sni") out.server_name = std::string(*text);
        else if (name == "--user" || name == "--auth-user") out.user = std::string(*text);
        else out.password = std::string(*text);
        return Status::ok;
    }
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
    if (name == "--auth") {
        auto text = reader.value(name, error);
        if (!text) return text.status();
        if (*text == "PLAIN" || *text == "plain") return out.auth = AuthMechanism::plain, Status::ok;
        if (*text == "LOGIN" || *text == "login") return out.auth = AuthMechanism::login, Status::ok;
        error = "option --auth: expected PLAIN or LOGIN, got '" + std::string(*text) + "'";
        return Status::invalid;
    }
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

Status parse_access_option(std::string_view name, ArgReader& reader, AccessOptions& out,
                           std::string& error) {
    const bool pop3 = out.protocol == AccessProtocol::pop3;
    if (name == "--dele" && pop3) return out.dele = true, Status::ok;
    if (name == "--no-body" && !pop3) return out.fetch_body = false, Status::ok;
    if (name == "--no-flags" && !pop3) return out.fetch_flags = false, Status::ok;
    const bool known = name == "--user-spread" || name == "--rounds" || name == "--idle" ||
                       name == "--hold" || (pop3 && name == "--window") ||
                       (!pop3 && (name == "--chunk" || name == "--mailbox"));
    if (!known) {
        error = "unknown option '" + std::string(name) + "' (see ringpost-bench " +
                (pop3 ? "pop3" : "imap") + " --help)";
        return Status::invalid;
    }
    auto text = reader.value(name, error);
    if (!text) return text.status();
    if (name == "--user-spread") return set_small(name, *text, 1, 1u << 30, out.user_spread, error);
    if (name == "--rounds") return set_uint(name, *text, 1, UINT64_MAX / 2, out.round_count, error);
    if (name == "--idle") return set_small(name, *text, 1, 1u << 20, out.idle_count, error);
    if (name == "--window") return set_small(name, *text, 1, 4096, out.window, error);
    if (name == "--chunk") return set_small(name, *text, 0, 1u << 30, out.chunk, error);
    if (name == "--mailbox") {
        if (text->empty() || text->size() > 200 || text->find_first_of("\r\n\"\\") != text->npos) {
            error = "option --mailbox: a mailbox name without quotes or line breaks expected";
            return Status::invalid;
        }
        return out.mailbox = std::string(*text), Status::ok;
    }
    auto seconds = parse_duration_s(*text);  // --hold
    if (!seconds) {
        error = "option --hold: expected a duration like 10s";
        return Status::invalid;
    }
    out.hold_s = *seconds;
    return Status::ok;
}

}  // namespace

Status parse_access_options(std::span<const char* const> args, AccessOptions& out,
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
        if (status == Status::not_found) status = parse_access_option(arg, reader, out, error);
        if (status != Status::ok) return status;
    }
    CommonOptions& common = out.common;
    const bool pop3 = out.protocol == AccessProtocol::pop3;
    if (common.port == 0) {
        if (common.tls == TlsMode::implicit) common.port = pop3 ? 2995 : 2993;
        else common.port = pop3 ? 2110 : 2143;
    }
    if (common.user.empty()) common.user = "demo@example.test";
    if (common.password.empty()) common.password = "demo";
    if (out.idle_count > 0) common.session_count = out.idle_count;
    if (common.thread_count > common.session_count) common.thread_count = common.session_count;
    if (common.user.find_first_of("\"\\ ") != std::string::npos ||
        common.password.find_first_of("\"\\") != std::string::npos) {
        error = "--user and --password may not contain quotes, backslashes or (user) spaces";
        return Status::invalid;
    }
    return Status::ok;
}

std::string access_usage(AccessProtocol protocol) {
    const bool pop3 = protocol == AccessProtocol::pop3;
    std::string text = pop3 ? "usage: ringpost-bench pop3 [OPTIONS]\n"
                              "Each session logs in (USER/PASS), sends STAT and LIST, RETRs every\n"
                              "message (optionally DELE), and QUITs; --rounds times.\n"
                            : "usage: ringpost-bench imap [OPTIONS]\n"
                              "Each session logs in (LOGIN), SELECTs the mailbox, FETCHes every\n"
                              "BODY.PEEK[], runs UID FETCH 1:* FLAGS and LOGs OUT; --rounds times.\n";
    text += pop3 ? "  --port N             [2110; 2995 with --tls]\n"
                 : "  --port N             [2143; 2993 with --tls]\n";
    text += "  --host ADDR          [127.0.0.1]\n"
            "  --threads N          client threads, each with its own io_uring [1]\n"
            "  --sessions N         concurrent connections [1]\n"
            "  --rounds N           logins per session [1]\n"
            "  --duration T         start no new round after T\n"
            "  --timeout T          longest wait for any reply [30s]\n"
            "  --max-errors N       [1000]\n"
            "  --user-spread N      --user with %d: session i logs in as i % N [1]\n"
            "  --idle N             N sessions log in (and SELECT) and stay logged in for --hold\n"
            "  --hold T             [10s] (the line 'idle: N sessions logged in' goes to stderr)\n";
    text += pop3 ? "  --window N           RETR commands in flight (pipelining) [1]\n"
                   "  --dele               DELE each message after its RETR (then QUIT commits)\n"
                 : "  --chunk N            messages per FETCH command; 0 = 1:* at once [0]\n"
                   "  --no-body            skip FETCH BODY.PEEK[]\n"
                   "  --no-flags           skip UID FETCH 1:* FLAGS\n"
                   "  --mailbox NAME       [INBOX]\n";
    text += tls_usage();
    text += "  --json, --progress, --quiet as for smtp\n"
            "Exit status: 0 if no error was counted, 1 otherwise, 2 usage.\n";
    return text;
}

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
    if (out.auth != AuthMechanism::none && common.user.empty()) {
        error = "option --auth needs --user and --password";
        return Status::invalid;
    }
    if (common.port == 0) {
        // The demo ports: smtps, submission (STARTTLS or AUTH), or the MX port.
        if (common.tls == TlsMode::implicit) common.port = 2465;
        else if (common.tls == TlsMode::starttls || out.auth != AuthMechanism::none) common.port = 2587;
        else common.port = 2525;
    }
    if (common.message_count == 0 && common.duration_s == 0) common.message_count = 1000;
    if (common.thread_count > common.session_count) common.thread_count = common.session_count;
    return Status::ok;
}

std::string_view main_usage() {
    return "usage: ringpost-bench SUBCOMMAND [OPTIONS]\n"
           "  smtp    send mail over SMTP and measure accept throughput and latency\n"
           "  pop3    log in, list and retrieve every message (RETR), measure msgs/s\n"
           "  imap    log in, SELECT, FETCH every body and the flags; --idle N holds sessions\n"
           "  relay   smtp through the daemon to this tool's own sink: accept-to-delivered\n"
           "ringpost-bench SUBCOMMAND --help lists its options.\n";
}

std::string_view tls_usage() {
    return "TLS and login:\n"
           "  --starttls           upgrade to TLS after the greeting (STLS / STARTTLS)\n"
           "  --tls                implicit TLS from the first byte (995 / 993 style)\n"
           "  --tls-ca FILE        verify the server's certificate against FILE [no verification]\n"
           "  --sni NAME           server name to send in the TLS handshake [none]\n"
           "  --groups LIST        key exchange groups, key share for the first\n"
           "                       [X25519,P-256,P-384; P-256 forces P-256]\n"
           "  --user U             login name [demo@example.test]\n"
           "  --password P         [demo]\n";
}

std::string_view smtp_usage() {
    return "usage: ringpost-bench smtp [OPTIONS]\n"
           "Where and how much (every run is bounded by count, time and --max-errors):\n"
           "  --host ADDR          server address (IPv4 or IPv6 literal) [127.0.0.1]\n"
           "  --port N             [2525; 2587 with --starttls or --auth; 2465 with --tls]\n"
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
           "  --auth PLAIN|LOGIN   authenticate (RFC 4954) with --user and --password\n"
           "TLS and login:\n"
           "  --starttls           STARTTLS after EHLO (then EHLO again)\n"
           "  --tls                implicit TLS from the first byte (port 465 style)\n"
           "  --tls-ca FILE        verify the server's certificate against FILE [no verification]\n"
           "  --sni NAME           server name to send in the TLS handshake [none]\n"
           "  --groups LIST        key exchange groups, key share for the first\n"
           "                       [X25519,P-256,P-384; P-256 forces P-256]\n"
           "  --user U, --auth-user U, --password P, --auth-pass P\n"
           "Output:\n"
           "  --json               one JSON object on stdout instead of the table\n"
           "  --progress           a progress line every second on stderr, even if not a TTY\n"
           "  --quiet              no progress line\n"
           "Exit status: 0 if every message was accepted, 1 if any error was counted, 2 usage.\n";
}

}  // namespace rp::bench
