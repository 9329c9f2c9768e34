// tools/bench/bench_access_run.cc: the POP3 and IMAP client sessions of ringpost-bench.
#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "core/assert.h"
#include "tools/bench/bench_access.h"
#include "tools/bench/bench_histogram.h"
#include "tools/bench/bench_loop.h"
#include "tools/bench/bench_report.h"
#include "tools/bench/bench_run.h"

namespace rp::bench {
namespace {

enum class Step : unsigned { connect, tls, greeting, login, list, retr, fetch, flags, quit, session, count };

constexpr const char* pop3_names[] = {"connect", "tls",   "greeting", "login", "list",
                                     "retr",    "fetch", "flags",    "quit",  "session"};
constexpr const char* imap_names[] = {"connect", "tls",   "greeting", "login",  "select",
                                      "retr",    "fetch", "flags",    "logout", "session"};
constexpr const char* pop3_descriptions[] = {
    "connect() until the TCP connection is up",
    "TLS handshake (implicit TLS or after STLS)",
    "connected (or TLS up) until the +OK greeting",
    "USER sent until the +OK to PASS",
    "STAT sent until the end of the LIST reply",
    "RETR sent until the message's last line",
    "",
    "",
    "QUIT sent until its +OK (DELEs are committed here)",
    "connected until the +OK to QUIT: one whole round",
};
constexpr const char* imap_descriptions[] = {
    "connect() until the TCP connection is up",
    "TLS handshake (implicit TLS or after STARTTLS)",
    "connected (or TLS up) until the * OK greeting",
    "LOGIN sent until its tagged OK",
    "SELECT sent until its tagged OK",
    "",
    "FETCH BODY.PEEK[] of one chunk sent until its tagged OK",
    "UID FETCH 1:* FLAGS sent until its tagged OK",
    "LOGOUT sent until its tagged OK",
    "connected until the tagged OK to LOGOUT: one whole round",
};

struct Shared {
    explicit Shared(const AccessOptions& run_options) : options(run_options) {}
    const AccessOptions& options;
    std::uint64_t start_ns = 0;
    std::uint64_t deadline_ns = 0;
    std::atomic<std::uint64_t> errors{0};
    std::atomic<std::uint64_t> logged_in{0};   // Sessions holding (--idle).
    std::atomic<bool> stop{false};
    std::atomic<bool> hard_stop{false};
    std::atomic<bool> stop_reason_set{false};
    std::string stop_reason;

    void request_stop(std::string reason) {
        if (!stop_reason_set.exchange(true)) stop_reason = std::move(reason);
        stop.store(true, std::memory_order_relaxed);
    }
};

struct Stats {
    std::array<Histogram, static_cast<unsigned>(Step::count)> steps;
    std::map<std::string, std::uint64_t> errors;
    std::uint64_t messages = 0;
    std::uint64_t bytes = 0;
    std::uint64_t rounds = 0;
    std::uint64_t rounds_failed = 0;
    std::uint64_t connections = 0;
    std::uint64_t mailbox_messages = 0;  // The last STAT / EXISTS seen.
    std::uint64_t last_completion_ns = 0;
    std::atomic<std::uint64_t> messages_live{0};
};

enum class Phase : std::uint8_t {
    idle, connecting, tls, greeting, starttls, login, list, work, flags, holding, quit, done,
};

const char* phase_name(Phase phase) {
    switch (phase) {
        case Phase::idle: return "idle";
        case Phase::connecting: return "connect";
        case Phase::tls: return "tls";
        case Phase::greeting: return "greeting";
        case Phase::starttls: return "starttls";
        case Phase::login: return "login";
        case Phase::list: return "list";
        case Phase::work: return "retrieve";
        case Phase::flags: return "flags";
        case Phase::holding: return "idle";
        case Phase::quit: return "quit";
        case Phase::done: return "done";
    }
    return "?";
}

// What a POP3 reply in flight answers.
enum class Pop3Expect : std::uint8_t { user, pass, stat, list, retr, dele, quit, stls };

struct Session {
    Phase phase = Phase::idle;
    unsigned number = 0;  // Over all threads: picks the user with --user-spread.
    Pop3ReplyReader pop3;
    ImapResponseReader imap;
    std::uint64_t rounds = 0;
    bool tls_done = false;
    bool greeted = false;
    bool in_round = false;
    std::string out;           // The command text being sent (must live until on_sent).
    std::string queued;        // Commands to send once the current send completes.
    bool sending = false;
    std::uint64_t step_start_ns = 0;
    std::uint64_t connected_ns = 0;
    // POP3.
    std::deque<std::pair<Pop3Expect, std::uint64_t>> expect;  // Reply kind, start time.
    std::uint64_t message_count = 0;
    std::uint64_t next_retr = 0;  // The next message number to RETR (1-based).
    std::uint64_t retr_done = 0;
    // IMAP.
    std::uint64_t tag = 0;
    std::string wanted_tag;
    std::uint64_t fetch_next = 0;  // The next message of the chunked FETCH (1-based).
    std::uint64_t fetch_end = 0;   // The last message of the FETCH in flight.
};

class AccessThread final : public LoopHandler {
public:
    AccessThread(Shared& shared, const Target& target, unsigned first_number, unsigned count)
        : shared_(shared), options_(shared.options), loop_(target.address, target.address_bytes, *this),
          sessions_(count) {
        for (unsigned i = 0; i < count; i++) sessions_[i].number = first_number + i;
    }

    Status init(std::string* error) {
        const Status status = loop_.init(static_cast<unsigned>(sessions_.size()));
        if (status != Status::ok || options_.common.tls == TlsMode::none) return status;
        return loop_.enable_tls(options_.common.tls_ca_file, options_.common.tls_groups, error);
    }
    Stats& stats() { return stats_; }

    void run() {
        for (unsigned i = 0; i < sessions_.size(); i++) start_session(loop_.connection(i));
        loop_.run();
    }

    void on_connected(Connection& conn) override {
        Session& s = session(conn);
        const std::uint64_t now = now_ns();
        record(Step::connect, now - s.step_start_ns);
        stats_.connections++;
        s.connected_ns = now;
        s.step_start_ns = now;
        conn.deadline_ns = now + timeout_ns();
        if (options_.common.tls == TlsMode::implicit) {
            s.phase = Phase::tls;
            return loop_.start_tls(conn, options_.common.server_name);
        }
        s.phase = Phase::greeting;
    }

    void on_tls_ready(Connection& conn) override {
        Session& s = session(conn);
        const std::uint64_t now = now_ns();
        record(Step::tls, now - s.step_start_ns);
        s.tls_done = true;
        s.step_start_ns = now;
        conn.deadline_ns = now + timeout_ns();
        if (!s.greeted) {
            s.phase = Phase::greeting;
            return;
        }
        begin_login(conn, s);
    }

    void on_received(Connection& conn, std::string_view bytes) override {
        Session& s = session(conn);
        conn.deadline_ns = s.phase == Phase::holding ? 0 : now_ns() + timeout_ns();
        if (pop3()) {
            if (s.pop3.feed(bytes) != Status::ok) return protocol_error(conn, "reply too long");
            while (loop_.open(conn) && !conn.closing && s.phase != Phase::idle) {
                const bool multiline = !s.expect.empty() && (s.expect.front().first == Pop3Expect::list ||
                                                             s.expect.front().first == Pop3Expect::retr);
                auto reply = s.pop3.next(multiline);
                if (reply.status() == Status::again) break;
                if (!reply) return protocol_error(conn, "malformed reply");
                on_pop3_reply(conn, s, *reply);
            }
        } else {
            if (s.imap.feed(bytes) != Status::ok) return protocol_error(conn, "response too long");
            while (loop_.open(conn) && !conn.closing && s.phase != Phase::idle) {
                auto response = s.imap.next();
                if (response.status() == Status::again) break;
                if (!response) return protocol_error(conn, "malformed response");
                on_imap_response(conn, s, *response);
            }
        }
    }

    void on_sent(Connection& conn) override {
        Session& s = session(conn);
        s.sending = false;
        if (!s.queued.empty() && loop_.open(conn) && !conn.closing) {
            s.out.swap(s.queued);
            s.queued.clear();
            s.sending = true;
            const iovec part{s.out.data(), s.out.size()};
            loop_.send(conn, std::span<const iovec>(&part, 1));
        }
    }

    void on_error(Connection& conn, std::string_view what) override {
        count_error(std::string(what));
        fail_round(session(conn));
    }

    void on_closed(Connection& conn) override {
        Session& s = session(conn);
        const bool planned = s.phase == Phase::quit && !s.in_round;
        if (s.phase == Phase::holding) shared_.logged_in.fetch_sub(1);
        s.pop3.reset();
        s.imap.reset();
        s.expect.clear();
        s.queued.clear();
        s.sending = false;
        if (s.phase == Phase::done || no_more_work(s)) return finish_session(s);
        if (planned) return start_session(conn);
        s.phase = Phase::idle;
        conn.wake_ns = now_ns() + options_.common.reconnect_delay_ms * 1'000'000ull + 1;
    }

    void on_wake(Connection& conn) override {
        if (no_more_work(session(conn))) return finish_session(session(conn));
        start_session(conn);
    }

    void on_tick(std::uint64_t now) override {
        if (interrupt_count() >= 1) shared_.request_stop("interrupted");
        if (interrupt_count() >= 2) shared_.hard_stop.store(true, std::memory_order_relaxed);
        if (shared_.deadline_ns != 0 && now >= shared_.deadline_ns) {
            shared_.stop.store(true, std::memory_order_relaxed);
            // A server that stops answering cannot hold the run past duration + timeout.
            if (now >= shared_.deadline_ns + timeout_ns()) {
                shared_.hard_stop.store(true, std::memory_order_relaxed);
            }
        }
        const bool hard = shared_.hard_stop.load(std::memory_order_relaxed);
        const bool stop = shared_.stop.load(std::memory_order_relaxed);
        for (unsigned i = 0; i < sessions_.size(); i++) {
            Connection& conn = loop_.connection(i);
            Session& s = sessions_[i];
            if (hard && loop_.open(conn)) {
                fail_round(s);
                finish_session(s);
                loop_.close(conn);
            } else if (stop && s.phase == Phase::holding && loop_.open(conn)) {
                shared_.logged_in.fetch_sub(1);
                send_logout(conn, s);
            } else if (!loop_.open(conn) && s.phase == Phase::idle && no_more_work(s)) {
                finish_session(s);
            }
        }
    }

private:
    bool pop3() const { return options_.protocol == AccessProtocol::pop3; }
    Session& session(Connection& conn) { return sessions_[conn.index]; }
    std::uint64_t timeout_ns() const { return options_.common.timeout_ms * 1'000'000ull; }
    void record(Step step, std::uint64_t ns) { stats_.steps[static_cast<unsigned>(step)].record(ns); }

    bool no_more_work(const Session& s) const {
        if (shared_.stop.load(std::memory_order_relaxed)) return true;
        if (options_.idle_count == 0 && s.rounds >= options_.round_count) return true;
        return shared_.deadline_ns != 0 && now_ns() >= shared_.deadline_ns;
    }

    void count_error(const std::string& key) {
        stats_.errors[key]++;
        const std::uint64_t errors = shared_.errors.fetch_add(1, std::memory_order_relaxed) + 1;
        const std::uint64_t max = options_.common.error_count_max;
        if (max != 0 && errors >= max) {
            shared_.request_stop("more than " + std::to_string(max) + " errors (--max-errors)");
        }
    }

    void fail_round(Session& s) {
        if (!s.in_round) return;
        s.in_round = false;
        stats_.rounds_failed++;
    }

    void finish_session(Session& s) {
        if (s.phase != Phase::done) {
            s.phase = Phase::done;
            done_count_++;
        }
        RP_ASSERT(done_count_ <= sessions_.size());
        if (done_count_ == sessions_.size()) loop_.stop();
    }

    void start_session(Connection& conn) {
        Session& s = session(conn);
        if (no_more_work(s)) return finish_session(s);
        s.phase = Phase::connecting;
        s.tls_done = false;
        s.greeted = false;
        s.in_round = true;
        s.sending = false;
        s.queued.clear();
        s.expect.clear();
        s.pop3.reset();
        s.imap.reset();
        s.tag = 0;
        s.step_start_ns = now_ns();
        conn.deadline_ns = s.step_start_ns + timeout_ns();
        loop_.connect(conn);
    }

    // Sends `text` now, or after the send in flight.
    void send(Connection& conn, Session& s, std::string_view text) {
        if (!loop_.open(conn) || conn.closing) return;
        if (s.sending) {
            s.queued.append(text);
            return;
        }
        s.out.assign(text);
        s.sending = true;
        const iovec part{s.out.data(), s.out.size()};
        loop_.send(conn, std::span<const iovec>(&part, 1));
    }

    void protocol_error(Connection& conn, const char* what) {
        count_error(what);
        fail_round(session(conn));
        loop_.close(conn);
    }

    // A refusal: count it under "<reply> <step>", then log out politely.
    void refused(Connection& conn, Session& s, std::string_view reply, const char* step) {
        std::string key(reply.substr(0, reply.find(' ')));
        count_error(key + " " + step);
        fail_round(s);
        send_logout(conn, s);
    }

    std::string user_name(const Session& s) const {
        const std::string& pattern = options_.common.user;
        const auto at = pattern.find("%d");
        if (at == std::string::npos) return pattern;
        return pattern.substr(0, at) + std::to_string(s.number % options_.user_spread) +
               pattern.substr(at + 2);
    }

    void round_done(Connection& conn, Session& s) {
        const std::uint64_t now = now_ns();
        if (s.in_round) {
            record(Step::session, now - s.connected_ns);
            stats_.rounds++;
        }
        s.in_round = false;
        s.rounds++;
        stats_.last_completion_ns = now;
        loop_.close(conn);
    }

    void begin_login(Connection& conn, Session& s);
    void send_logout(Connection& conn, Session& s);
    void on_pop3_reply(Connection& conn, Session& s, const Pop3Reply& reply);
    void pop3_fill_window(Connection& conn, Session& s);
    void on_imap_response(Connection& conn, Session& s, const ImapResponse& response);
    void imap_command(Connection& conn, Session& s, const std::string& text);
    void imap_after_select(Connection& conn, Session& s);
    void imap_next_fetch(Connection& conn, Session& s);
    void hold(Connection& conn, Session& s);

    Shared& shared_;
    const AccessOptions& options_;
    ClientLoop loop_;
    std::vector<Session> sessions_;
    std::size_t done_count_ = 0;
    Stats stats_;
};

void AccessThread::begin_login(Connection& conn, Session& s) {
    const std::uint64_t now = now_ns();
    s.phase = Phase::login;
    s.step_start_ns = now;
    if (pop3()) {
        // RFC 1939 7: USER and PASS; both go in one write (RFC 2449 PIPELINING is not
        // needed: the server reads them in order).
        s.expect.push_back({Pop3Expect::user, now});
        s.expect.push_back({Pop3Expect::pass, now});
        send(conn, s, "USER " + user_name(s) + "\r\nPASS " + options_.common.password + "\r\n");
        return;
    }
    imap_command(conn, s, "LOGIN \"" + user_name(s) + "\" \"" + options_.common.password + "\"");
}

void AccessThread::send_logout(Connection& conn, Session& s) {
    s.phase = Phase::quit;
    s.step_start_ns = now_ns();
    conn.deadline_ns = s.step_start_ns + timeout_ns();
    if (pop3()) {
        s.expect.push_back({Pop3Expect::quit, s.step_start_ns});
        return send(conn, s, "QUIT\r\n");
    }
    imap_command(conn, s, "LOGOUT");
}

void AccessThread::hold(Connection& conn, Session& s) {
    s.phase = Phase::holding;
    conn.deadline_ns = 0;
    shared_.logged_in.fetch_add(1);
    stats_.messages++;  // With --idle, throughput counts sessions logged in.
    stats_.messages_live.store(stats_.messages, std::memory_order_relaxed);
    if (shared_.stop.load()) {
        shared_.logged_in.fetch_sub(1);
        send_logout(conn, s);
    }
}

// ---- POP3 ----

void AccessThread::on_pop3_reply(Connection& conn, Session& s, const Pop3Reply& reply) {
    const std::uint64_t now = now_ns();
    if (s.phase == Phase::greeting) {
        if (!reply.ok) return refused(conn, s, reply.line, "greeting");
        record(Step::greeting, now - s.step_start_ns);
        s.greeted = true;
        if (options_.common.tls == TlsMode::starttls && !s.tls_done) {
            s.phase = Phase::starttls;
            s.expect.push_back({Pop3Expect::stls, now});
            return send(conn, s, "STLS\r\n");  // RFC 2595 4.
        }
        return begin_login(conn, s);
    }
    if (s.expect.empty()) return protocol_error(conn, "reply out of turn");
    const auto [kind, started] = s.expect.front();
    s.expect.pop_front();
    switch (kind) {
        case Pop3Expect::stls:
            if (!reply.ok) return refused(conn, s, reply.line, "stls");
            s.phase = Phase::tls;
            s.step_start_ns = now;
            return loop_.start_tls(conn, options_.common.server_name);
        case Pop3Expect::user:
            if (!reply.ok) {
                s.expect.pop_front();  // PASS went with USER; its -ERR follows.
                s.expect.push_front({Pop3Expect::dele, now});
                return refused(conn, s, reply.line, "user");
            }
            return;
        case Pop3Expect::pass:
            if (!reply.ok) return refused(conn, s, reply.line, "login");
            record(Step::login, now - started);
            if (options_.idle_count > 0) return hold(conn, s);
            s.phase = Phase::list;
            s.step_start_ns = now;
            s.expect.push_back({Pop3Expect::stat, now});
            s.expect.push_back({Pop3Expect::list, now});
            return send(conn, s, "STAT\r\nLIST\r\n");
        case Pop3Expect::stat: {
            if (!reply.ok) return refused(conn, s, reply.line, "stat");
            unsigned long long count = 0;
            if (std::sscanf(reply.line.c_str(), "+OK %llu", &count) != 1) {
                return protocol_error(conn, "STAT reply without a count");
            }
            s.message_count = count;
            stats_.mailbox_messages = count;
            return;
        }
        case Pop3Expect::list:
            if (!reply.ok) return refused(conn, s, reply.line, "list");
            if (reply.line_count != s.message_count) count_error("LIST count differs from STAT");
            record(Step::list, now - started);
            s.phase = Phase::work;
            s.next_retr = 1;
            s.retr_done = 0;
            return pop3_fill_window(conn, s);
        case Pop3Expect::retr:
            if (!reply.ok) {
                count_error("-ERR retr");
            } else {
                record(Step::retr, now - started);
                stats_.messages++;
                stats_.bytes += reply.body_bytes;
                stats_.messages_live.store(stats_.messages, std::memory_order_relaxed);
            }
            s.retr_done++;
            return pop3_fill_window(conn, s);
        case Pop3Expect::dele:
            if (s.phase != Phase::work) return;  // The PASS reply after a refused USER.
            if (!reply.ok) count_error("-ERR dele");
            return pop3_fill_window(conn, s);
        case Pop3Expect::quit:
            if (!reply.ok) count_error("-ERR quit");
            else record(Step::quit, now - started);
            return round_done(conn, s);
    }
}

void AccessThread::pop3_fill_window(Connection& conn, Session& s) {
    std::string commands;
    const std::uint64_t now = now_ns();
    unsigned in_flight = 0;
    for (const auto& [kind, started] : s.expect) in_flight += kind == Pop3Expect::retr;
    while (in_flight < options_.window && s.next_retr <= s.message_count) {
        commands += "RETR " + std::to_string(s.next_retr) + "\r\n";
        s.expect.push_back({Pop3Expect::retr, now});
        if (options_.dele) {
            commands += "DELE " + std::to_string(s.next_retr) + "\r\n";
            s.expect.push_back({Pop3Expect::dele, now});
        }
        s.next_retr++;
        in_flight++;
    }
    if (!commands.empty()) return send(conn, s, commands);
    if (s.retr_done >= s.message_count && s.expect.empty()) send_logout(conn, s);
}

// ---- IMAP ----

void AccessThread::imap_command(Connection& conn, Session& s, const std::string& text) {
    s.wanted_tag = "a" + std::to_string(++s.tag);
    s.step_start_ns = now_ns();
    send(conn, s, s.wanted_tag + " " + text + "\r\n");
}

void AccessThread::on_imap_response(Connection& conn, Session& s, const ImapResponse& response) {
    const std::uint64_t now = now_ns();
    if (s.phase == Phase::greeting) {
        if (response.kind != ImapResponse::Kind::untagged || response.word != "OK") {
            return refused(conn, s, response.word, "greeting");
        }
        record(Step::greeting, now - s.step_start_ns);
        s.greeted = true;
        if (options_.common.tls == TlsMode::starttls && !s.tls_done) {
            s.phase = Phase::starttls;
            return imap_command(conn, s, "STARTTLS");  // RFC 9051 6.2.1.
        }
        return begin_login(conn, s);
    }
    if (response.kind == ImapResponse::Kind::untagged) {
        if (response.word == "EXISTS") {
            s.message_count = response.number;
            stats_.mailbox_messages = response.number;
        } else if (response.word == "FETCH" && s.phase == Phase::work && response.literal_count > 0) {
            stats_.messages++;
            stats_.bytes += response.literal_bytes;
            stats_.messages_live.store(stats_.messages, std::memory_order_relaxed);
        } else if (response.word == "BYE" && s.phase != Phase::quit) {
            count_error("BYE " + std::string(phase_name(s.phase)));
        }
        return;
    }
    if (response.kind == ImapResponse::Kind::continuation) {
        return protocol_error(conn, "unexpected continuation");
    }
    if (response.tag != s.wanted_tag) return protocol_error(conn, "unknown tag");
    const bool ok = response.word == "OK";
    const std::uint64_t took = now - s.step_start_ns;
    switch (s.phase) {
        case Phase::starttls:
            if (!ok) return refused(conn, s, response.word, "starttls");
            s.phase = Phase::tls;
            s.step_start_ns = now;
            return loop_.start_tls(conn, options_.common.server_name);
        case Phase::login:
            if (!ok) return refused(conn, s, response.word, "login");
            record(Step::login, took);
            s.phase = Phase::list;
            s.message_count = 0;
            return imap_command(conn, s, "SELECT \"" + options_.mailbox + "\"");
        case Phase::list:
            if (!ok) return refused(conn, s, response.word, "select");
            record(Step::list, took);
            if (options_.idle_count > 0) return hold(conn, s);
            return imap_after_select(conn, s);
        case Phase::work:
            if (!ok) return refused(conn, s, response.word, "fetch");
            record(Step::fetch, took);
            return imap_next_fetch(conn, s);
        case Phase::flags:
            if (!ok) return refused(conn, s, response.word, "flags");
            record(Step::flags, took);
            return send_logout(conn, s);
        case Phase::quit:
            if (!ok) count_error(response.word + " logout");
            else record(Step::quit, took);
            return round_done(conn, s);
        default:
            return protocol_error(conn, "tagged reply out of turn");
    }
}

void AccessThread::imap_after_select(Connection& conn, Session& s) {
    s.phase = Phase::work;
    s.fetch_next = 1;
    imap_next_fetch(conn, s);
}

void AccessThread::imap_next_fetch(Connection& conn, Session& s) {
    if (options_.fetch_body && s.fetch_next <= s.message_count) {
        const std::uint64_t chunk = options_.chunk == 0 ? s.message_count : options_.chunk;
        s.fetch_end = std::min(s.message_count, s.fetch_next + chunk - 1);
        const std::string range = options_.chunk == 0 ? "1:*"
                                  : std::to_string(s.fetch_next) + ":" + std::to_string(s.fetch_end);
        s.fetch_next = s.fetch_end + 1;
        return imap_command(conn, s, "FETCH " + range + " BODY.PEEK[]");
    }
    if (options_.fetch_flags && s.phase == Phase::work && s.message_count > 0) {
        s.phase = Phase::flags;
        return imap_command(conn, s, "UID FETCH 1:* FLAGS");
    }
    send_logout(conn, s);
}

// ---- the run ----

std::string seconds_text(double seconds) {
    char text[32];
    std::snprintf(text, sizeof(text), "%g", seconds);
    return text;
}

RunReport make_report(const AccessOptions& options, const Target& target, Shared& shared,
                      std::vector<std::unique_ptr<AccessThread>>& threads, double cpu_s,
                      std::uint64_t end_ns) {
    const bool pop3 = options.protocol == AccessProtocol::pop3;
    const CommonOptions& common = options.common;
    RunReport report;
    report.protocol = pop3 ? "pop3" : "imap";
    report.target = target.text;
    report.unit = options.idle_count > 0 ? "sessions" : "msgs";
    report.settings = {
        {"threads", std::to_string(common.thread_count)},
        {"sessions", std::to_string(common.session_count)},
        {"rounds", options.idle_count > 0 ? "-" : std::to_string(options.round_count)},
        {"duration_s", common.duration_s > 0 ? seconds_text(common.duration_s) : "-"},
        {"tls", common.tls == TlsMode::implicit ? "implicit" : common.tls == TlsMode::starttls ? "starttls" : "no"},
        {"idle", std::to_string(options.idle_count)},
    };
    if (pop3) {
        report.settings.push_back({"window", std::to_string(options.window)});
        report.settings.push_back({"dele", options.dele ? "yes" : "no"});
    } else {
        report.settings.push_back({"chunk", std::to_string(options.chunk)});
    }
    std::uint64_t last_ns = 0;
    std::uint64_t connections = 0;
    std::uint64_t rounds = 0;
    std::uint64_t mailbox = 0;
    std::vector<unsigned> wanted;
    for (unsigned i = 0; i < static_cast<unsigned>(Step::count); i++) {
        const char* description = pop3 ? pop3_descriptions[i] : imap_descriptions[i];
        if (description[0] != '\0') wanted.push_back(i);
    }
    for (const unsigned i : wanted) {
        report.steps.push_back({pop3 ? pop3_names[i] : imap_names[i],
                                pop3 ? pop3_descriptions[i] : imap_descriptions[i], {}});
    }
    for (auto& thread : threads) {
        Stats& stats = thread->stats();
        report.completed += stats.messages;
        report.payload_bytes += stats.bytes;
        report.failed += stats.rounds_failed;
        connections += stats.connections;
        rounds += stats.rounds;
        mailbox = std::max(mailbox, stats.mailbox_messages);
        last_ns = std::max(last_ns, stats.last_completion_ns);
        for (std::size_t k = 0; k < wanted.size(); k++) report.steps[k].latency_ns.merge(stats.steps[wanted[k]]);
        for (const auto& [key, count] : stats.errors) report.errors[key] += count;
    }
    report.attempted = report.completed;
    if (last_ns == 0 || options.idle_count > 0) last_ns = end_ns;
    report.elapsed_s = static_cast<double>(last_ns - shared.start_ns) / 1e9;
    report.counters = {{"connections", connections}, {"rounds", rounds}, {"mailbox_messages", mailbox}};
    report.client_cpu_s = cpu_s;
    if (shared.stop_reason_set.load() && shared.stop_reason != "idle hold over") {
        report.stop_reason = shared.stop_reason;
    }
    return report;
}

}  // namespace

int run_access(const AccessOptions& options) {
    const CommonOptions& common = options.common;
    auto target = resolve_target(common.host, common.port);
    if (!target) {
        std::fprintf(stderr, "ringpost-bench: cannot resolve host '%s'\n", common.host.c_str());
        return 2;
    }
    Shared shared(options);
    install_interrupt_handler();
    raise_open_file_limit();
    std::vector<std::unique_ptr<AccessThread>> threads;
    unsigned first = 0;
    for (unsigned t = 0; t < common.thread_count; t++) {
        const unsigned count = common.session_count / common.thread_count +
                               (t < common.session_count % common.thread_count ? 1 : 0);
        threads.push_back(std::make_unique<AccessThread>(shared, *target, first, count));
        first += count;
    }
    std::atomic<bool> no_uring{false};
    std::mutex mutex;
    std::string init_error;
    const double cpu_start = process_cpu_seconds();
    shared.start_ns = now_ns();
    if (common.duration_s > 0) {
        shared.deadline_ns = shared.start_ns + static_cast<std::uint64_t>(common.duration_s * 1e9);
    }
    std::condition_variable running_changed;
    unsigned running = common.thread_count;
    std::vector<std::thread> workers;
    for (auto& thread : threads) {
        workers.emplace_back([&, worker = thread.get()] {
            std::string error;
            const Status status = worker->init(&error);
            if (status == Status::unsupported) {
                no_uring.store(true);
                shared.request_stop("io_uring is not available");
            } else if (status != Status::ok) {
                const std::lock_guard lock(mutex);
                init_error = error;
                shared.request_stop("TLS set-up failed: " + error);
            } else {
                worker->run();
            }
            const std::lock_guard lock(mutex);
            running--;
            running_changed.notify_all();
        });
    }
    Progress progress(common, options.idle_count > 0 ? "sessions" : "msgs");
    std::uint64_t all_in_ns = 0;
    while (true) {
        {
            std::unique_lock lock(mutex);
            running_changed.wait_for(lock, std::chrono::milliseconds(100), [&] { return running == 0; });
            if (running == 0) break;
        }
        std::uint64_t done = 0;
        for (auto& thread : threads) done += thread->stats().messages_live.load();
        const std::uint64_t now = now_ns();
        progress.maybe_print(now, done, shared.errors.load());
        if (options.idle_count > 0 && all_in_ns == 0 && shared.logged_in.load() >= options.idle_count) {
            all_in_ns = now;
            std::fprintf(stderr, "idle: %u sessions logged in\n", options.idle_count);
            std::fflush(stderr);
        }
        if (all_in_ns != 0 && now - all_in_ns >= static_cast<std::uint64_t>(options.hold_s * 1e9)) {
            shared.request_stop("idle hold over");
        }
    }
    for (auto& worker : workers) worker.join();
    progress.finish();
    if (no_uring.load()) {
        std::fprintf(stderr, "ringpost-bench: io_uring is not available here\n");
        return 77;
    }
    if (!init_error.empty()) {
        std::fprintf(stderr, "ringpost-bench: %s\n", init_error.c_str());
        return 2;
    }
    const RunReport report = make_report(options, *target, shared, threads,
                                         process_cpu_seconds() - cpu_start, now_ns());
    const std::string text = common.json ? format_json(report) : format_text(report);
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
    bool clean = report.error_count() == 0 && report.failed == 0 && report.stop_reason.empty();
    if (options.idle_count > 0 && all_in_ns == 0) clean = false;
    return clean ? 0 : 1;
}

}  // namespace rp::bench
