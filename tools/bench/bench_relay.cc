// tools/bench/bench_relay.cc: the relay sink and the end-to-end relay run of ringpost-bench.
#include "tools/bench/bench_relay.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "core/assert.h"
#include "tools/bench/bench_histogram.h"
#include "tools/bench/bench_loop.h"
#include "tools/bench/bench_report.h"
#include "tools/bench/bench_run.h"
#include "tools/bench/bench_smtp.h"

namespace rp::bench {

std::int64_t relay_message_number(std::string_view header) {
    constexpr std::string_view key = "Subject: ringpost-bench message ";
    const std::size_t at = header.find(key);
    if (at == std::string_view::npos) return -1;
    const char* begin = header.data() + at + key.size();
    std::uint64_t value = 0;
    const auto [end, ec] = std::from_chars(begin, header.data() + header.size(), value);
    if (ec != std::errc{} || end == begin || value > (1ull << 62)) return -1;
    return static_cast<std::int64_t>(value);
}

namespace {

// A minimal SMTP server: accepts every envelope and message, and records when each of the
// bench's messages arrived. One thread, poll(), non-blocking sockets.
class Sink {
public:
    Sink(std::atomic<std::uint64_t>* accept_ns, std::uint64_t message_count)
        : accept_ns_(accept_ns), message_count_(message_count), seen_(message_count, 0) {}
    ~Sink() {
        stop();
        for (auto& c : connections_) ::close(c.fd);
        if (listen_fd_ >= 0) ::close(listen_fd_);
    }

    Status listen(const std::string& host, std::uint16_t port, std::string& error) {
        sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_port = htons(port);
        if (inet_pton(AF_INET, host.c_str(), &address.sin_addr) != 1) {
            error = "--sink: an IPv4 address expected";
            return Status::invalid;
        }
        listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        const int one = 1;
        ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
            ::listen(listen_fd_, 1024) != 0) {
            error = "--sink " + host + ":" + std::to_string(port) + ": " + std::strerror(errno);
            return Status::io;
        }
        return Status::ok;
    }

    void start() {
        thread_ = std::thread([this] { run(); });
    }
    void stop() {
        stopping_.store(true);
        if (thread_.joinable()) thread_.join();
    }

    std::uint64_t delivered() const { return delivered_.load(); }
    std::uint64_t last_ns() const { return last_ns_.load(); }
    // Read after stop().
    const Histogram& latency() const { return latency_; }
    std::uint64_t duplicates() const { return duplicates_; }
    std::uint64_t foreign() const { return foreign_; }
    std::uint64_t connections() const { return connection_count_; }

private:
    struct Conn {
        int fd = -1;
        std::string in;
        std::size_t scan = 0;  // Data: where the terminator search resumes.
        bool data = false;
        bool quit = false;
    };

    void run() {
        std::vector<pollfd> fds;
        while (!stopping_.load()) {
            fds.clear();
            fds.push_back({listen_fd_, POLLIN, 0});
            for (auto& c : connections_) fds.push_back({c.fd, POLLIN, 0});
            const int ready = ::poll(fds.data(), fds.size(), 50);
            if (ready <= 0) continue;
            if (fds[0].revents & POLLIN) accept_all();
            for (std::size_t i = 1; i < fds.size(); i++) {
                if (fds[i].revents == 0) continue;
                Conn& c = connections_[i - 1];
                if (!receive(c)) {
                    ::close(c.fd);
                    c.fd = -1;
                }
            }
            std::erase_if(connections_, [](const Conn& c) { return c.fd < 0; });
        }
    }

    void accept_all() {
        while (true) {
            const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
            if (fd < 0) return;
            connection_count_++;
            connections_.push_back(Conn{fd, {}, 0, false, false});
            reply(connections_.back(), "220 sink.bench ESMTP ringpost-bench sink\r\n");
        }
    }

    static void reply(Conn& c, std::string_view text) {
        // The socket is blocking for writes: replies are small and the peer reads them.
        while (!text.empty()) {
            const ssize_t sent = ::send(c.fd, text.data(), text.size(), MSG_NOSIGNAL);
            if (sent <= 0) return;
            text.remove_prefix(static_cast<std::size_t>(sent));
        }
    }

    bool receive(Conn& c) {
        char buffer[65536];
        const ssize_t got = ::recv(c.fd, buffer, sizeof(buffer), MSG_DONTWAIT);
        if (got == 0) return false;
        if (got < 0) return errno == EAGAIN || errno == EINTR;
        c.in.append(buffer, static_cast<std::size_t>(got));
        std::size_t at = 0;
        while (!c.quit) {
            if (c.data) {
                // RFC 5321 4.1.1.4: the data ends with CRLF "." CRLF (or "." CRLF at once).
                std::size_t end = std::string::npos;
                if (c.in.compare(at, 3, ".\r\n") == 0) {
                    end = at;
                } else {
                    const std::size_t found = c.in.find("\r\n.\r\n", std::max(at, c.scan));
                    if (found != std::string::npos) end = found + 2;
                }
                if (end == std::string::npos) {
                    c.scan = c.in.size() >= 4 ? std::max(at, c.in.size() - 4) : at;
                    break;
                }
                message(std::string_view(c.in).substr(at, std::min<std::size_t>(end - at, 4096)));
                at = end + 3;
                c.data = false;
                reply(c, "250 2.0.0 ok\r\n");
                continue;
            }
            const std::size_t eol = c.in.find('\n', at);
            if (eol == std::string::npos) break;
            std::string_view line(c.in.data() + at, eol - at);
            at = eol + 1;
            command(c, line);
        }
        c.in.erase(0, at);
        c.scan = c.scan >= at ? c.scan - at : 0;
        return !c.quit;
    }

    void command(Conn& c, std::string_view line) {
        auto verb = [&](std::string_view word) {
            if (line.size() < word.size()) return false;
            for (std::size_t i = 0; i < word.size(); i++) {
                if (std::toupper(static_cast<unsigned char>(line[i])) != word[i]) return false;
            }
            return true;
        };
        if (verb("EHLO")) return reply(c, "250-sink.bench\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 0\r\n");
        if (verb("HELO") || verb("MAIL") || verb("RCPT") || verb("RSET") || verb("NOOP")) {
            return reply(c, "250 2.0.0 ok\r\n");
        }
        if (verb("DATA")) {
            c.data = true;
            c.scan = 0;
            return reply(c, "354 go ahead\r\n");
        }
        if (verb("QUIT")) {
            reply(c, "221 2.0.0 bye\r\n");
            c.quit = true;
            return;
        }
        reply(c, "502 5.5.1 not here\r\n");
    }

    void message(std::string_view head) {
        const std::uint64_t now = now_ns();
        const std::int64_t number = relay_message_number(head);
        if (number < 0 || static_cast<std::uint64_t>(number) >= message_count_) {
            foreign_++;
            return;
        }
        if (seen_[static_cast<std::size_t>(number)]++ > 0) {
            duplicates_++;
            return;
        }
        const std::uint64_t accepted = accept_ns_[number].load(std::memory_order_acquire);
        // The sink may see a message before the client reads the daemon's 250 (the relay is
        // that fast, or the client is slow): then the latency is 0, not negative.
        latency_.record(accepted != 0 && now > accepted ? now - accepted : 0);
        last_ns_.store(now);
        delivered_.fetch_add(1);
    }

    std::atomic<std::uint64_t>* accept_ns_;
    std::uint64_t message_count_;
    std::vector<std::uint8_t> seen_;
    int listen_fd_ = -1;
    std::vector<Conn> connections_;
    std::thread thread_;
    std::atomic<bool> stopping_{false};
    std::atomic<std::uint64_t> delivered_{0};
    std::atomic<std::uint64_t> last_ns_{0};
    Histogram latency_;
    std::uint64_t duplicates_ = 0;
    std::uint64_t foreign_ = 0;
    std::uint64_t connection_count_ = 0;
};

}  // namespace

Status parse_relay_options(std::span<const char* const> args, RelayOptions& out,
                           std::string& error) {
    // --sink and --drain-timeout are the relay's own; everything else is an smtp option.
    std::vector<const char*> rest;
    for (std::size_t i = 0; i < args.size(); i++) {
        std::string_view arg = args[i];
        std::string_view value;
        const bool sink = arg.starts_with("--sink");
        const bool drain = arg.starts_with("--drain-timeout");
        if (!sink && !drain) {
            rest.push_back(args[i]);
            continue;
        }
        if (const auto eq = arg.find('='); eq != arg.npos) {
            value = arg.substr(eq + 1);
        } else if (i + 1 < args.size()) {
            value = args[++i];
        } else {
            error = "option " + std::string(arg) + " needs a value";
            return Status::invalid;
        }
        if (drain) {
            auto seconds = parse_duration_s(value);
            if (!seconds) {
                error = "option --drain-timeout: expected a duration like 60s";
                return Status::invalid;
            }
            out.drain_timeout_s = *seconds;
            continue;
        }
        const auto colon = value.rfind(':');
        std::uint64_t port = 0;
        const char* port_end = value.data() + value.size();
        if (colon == value.npos ||
            std::from_chars(value.data() + colon + 1, port_end, port).ptr != port_end || port == 0 ||
            port > 65535) {
            error = "option --sink: expected ADDR:PORT, got '" + std::string(value) + "'";
            return Status::invalid;
        }
        out.sink_host = std::string(value.substr(0, colon));
        out.sink_port = static_cast<std::uint16_t>(port);
    }
    if (parse_smtp_options(rest, out.smtp, error) != Status::ok) return Status::invalid;
    if (out.sink_port == 0) {
        error = "option --sink ADDR:PORT is required (the MX the daemon relays to)";
        return Status::invalid;
    }
    if (out.smtp.common.message_count == 0) {
        error = "relay needs --messages (each message's accept time is kept)";
        return Status::invalid;
    }
    return Status::ok;
}

std::string relay_usage() {
    return "usage: ringpost-bench relay --sink ADDR:PORT [SMTP OPTIONS]\n"
           "Sends mail through the daemon (as `ringpost-bench smtp`) to recipients whose MX is\n"
           "this tool's own SMTP sink on ADDR:PORT, and measures accept-to-delivered latency\n"
           "and end-to-end throughput. The daemon must relay for this client (trusted network\n"
           "or --auth) and resolve the recipients' MX to ADDR (e.g. dnsmasq on loopback).\n"
           "  --sink ADDR:PORT     where the sink listens (IPv4) [required]\n"
           "  --drain-timeout T    wait this long after the last accept for deliveries [60s]\n"
           "  --messages N         required (default 1000)\n"
           "Every smtp option applies (see ringpost-bench smtp --help).\n";
}

int run_relay(const RelayOptions& options) {
    const std::uint64_t count = options.smtp.common.message_count;
    RP_ASSERT(count > 0);
    auto accept_ns = std::make_unique<std::atomic<std::uint64_t>[]>(count);
    for (std::uint64_t i = 0; i < count; i++) accept_ns[i].store(0);
    Sink sink(accept_ns.get(), count);
    std::string error;
    if (sink.listen(options.sink_host, options.sink_port, error) != Status::ok) {
        std::fprintf(stderr, "ringpost-bench relay: %s\n", error.c_str());
        return 2;
    }
    sink.start();
    const std::uint64_t start_ns = now_ns();
    RunReport report;
    const int code = smtp_load(options.smtp, accept_ns.get(), report);
    if (code != 0 && code != 1) return code;
    // Wait for the relay to deliver what it accepted, bounded by --drain-timeout.
    const std::uint64_t drain_end = now_ns() + static_cast<std::uint64_t>(options.drain_timeout_s * 1e9);
    while (sink.delivered() < report.completed && now_ns() < drain_end && interrupt_count() == 0) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    sink.stop();
    const std::uint64_t accepted = report.completed;
    const std::uint64_t delivered = sink.delivered();
    report.protocol = "relay";
    report.settings.push_back({"sink", options.sink_host + ":" + std::to_string(options.sink_port)});
    report.attempted = accepted;
    report.completed = delivered;
    if (delivered > 0) report.elapsed_s = static_cast<double>(sink.last_ns() - start_ns) / 1e9;
    report.payload_bytes = accepted > 0 ? report.payload_bytes / accepted * delivered : 0;
    report.steps.push_back({"delivered", "the daemon's 250 until the message's final dot reached the sink",
                            sink.latency()});
    report.counters.push_back({"accepted", accepted});
    report.counters.push_back({"sink_connections", sink.connections()});
    if (delivered < accepted) report.errors["not delivered"] += accepted - delivered;
    if (sink.duplicates() > 0) report.errors["duplicate delivery"] += sink.duplicates();
    if (sink.foreign() > 0) report.counters.push_back({"foreign_messages", sink.foreign()});
    const std::string text = options.smtp.common.json ? format_json(report) : format_text(report);
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
    const bool clean = report.error_count() == 0 && report.failed == 0 && report.stop_reason.empty();
    return clean ? 0 : 1;
}

}  // namespace rp::bench
