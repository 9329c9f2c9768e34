// tools/bench/bench_smtp.cc: the SMTP client sessions of ringpost-bench and their run.
#include "tools/bench/bench_smtp.h"

#include <atomic>
#include <cctype>
#include <condition_variable>
#include <mutex>
#include <cstdio>
#include <ctime>
#include <map>
#include <memory>
#include <thread>
#include <vector>

#include "core/assert.h"
#include "tools/bench/bench_histogram.h"
#include "tools/bench/bench_loop.h"
#include "tools/bench/bench_report.h"
#include "tools/bench/bench_run.h"
#include "tools/bench/bench_text.h"

namespace rp::bench {

// ---- replies ----

Status SmtpReplyReader::feed(std::string_view bytes) {
    if (start_ > 0 && start_ * 2 >= buffer_.size()) {
        buffer_.erase(0, start_);
        start_ = 0;
    }
    buffer_.append(bytes);
    // bounds: buffer_ holds at most one unfinished reply plus one receive buffer.
    if (buffer_.size() - start_ > reply_bytes_max) return Status::too_big;
    return Status::ok;
}

void SmtpReplyReader::reset() {
    buffer_.clear();
    start_ = 0;
}

namespace {

bool keyword_is(std::string_view text, std::string_view keyword) {
    if (text.size() < keyword.size()) return false;
    for (std::size_t i = 0; i < keyword.size(); i++) {
        if (std::toupper(static_cast<unsigned char>(text[i])) != keyword[i]) return false;
    }
    return text.size() == keyword.size() || text[keyword.size()] == ' ';
}

}  // namespace

Result<SmtpReply> SmtpReplyReader::next() {
    SmtpReply reply;
    std::size_t line_start = start_;
    while (true) {
        const std::size_t newline = buffer_.find('\n', line_start);
        if (newline == std::string::npos) return Status::again;
        std::string_view line(buffer_.data() + line_start, newline - line_start);
        if (line.ends_with('\r')) line.remove_suffix(1);
        if (line.size() < 3 || !std::isdigit(static_cast<unsigned char>(line[0])) ||
            !std::isdigit(static_cast<unsigned char>(line[1])) ||
            !std::isdigit(static_cast<unsigned char>(line[2]))) {
            return Status::invalid;
        }
        reply.code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
        if (line.size() > 4 && keyword_is(line.substr(4), "PIPELINING")) reply.pipelining = true;
        line_start = newline + 1;
        if (line.size() == 3 || line[3] != '-') break;
    }
    start_ = line_start;
    return reply;
}

std::string smtp_expand_address(std::string_view pattern, std::uint64_t number) {
    const auto at = pattern.find("%d");
    if (at == std::string_view::npos) return std::string(pattern);
    return std::string(pattern.substr(0, at)) + std::to_string(number) +
           std::string(pattern.substr(at + 2));
}

std::string make_filler(std::size_t bytes) {
    // 78-byte lines: 76 characters and CRLF, as RFC 5322 2.1.1 recommends. No line starts
    // with '.', so nothing needs dot-stuffing (RFC 5321 4.5.2).
    std::string filler;
    filler.reserve(bytes + 80);
    std::uint64_t line_number = 0;
    while (filler.size() < bytes) {
        char line[80];
        std::snprintf(line, sizeof(line), "line %08llu ",
                      static_cast<unsigned long long>(line_number++));
        std::string text(line);
        for (char c = 'a'; text.size() < 76; c = c == 'z' ? 'a' : static_cast<char>(c + 1)) {
            text += c;
        }
        filler += text + "\r\n";
    }
    filler.resize(bytes);
    return filler;
}

namespace {

// ---- state shared by all threads of one run ----

struct SmtpShared {
    explicit SmtpShared(const SmtpOptions& run_options) : options(run_options) {}
    const SmtpOptions& options;
    std::string filler;
    std::string date;  // RFC 5322 3.3, the same for every message of the run.
    std::uint64_t start_ns = 0;
    std::uint64_t deadline_ns = 0;   // 0: no time bound.
    std::atomic<std::uint64_t> next_message{0};
    std::atomic<std::uint64_t> errors{0};
    std::atomic<bool> stop{false};
    std::atomic<bool> hard_stop{false};
    std::string stop_reason;  // Written once, by whoever sets stop with a reason.
    std::atomic<bool> stop_reason_set{false};
    std::atomic<std::uint64_t>* accept_ns = nullptr;  // relay: per message number, or null.

    void request_stop(std::string reason) {
        if (!stop_reason_set.exchange(true)) stop_reason = std::move(reason);
        stop.store(true, std::memory_order_relaxed);
    }
};

enum class Step : unsigned { connect, tls, greeting, ehlo, auth, envelope, accept, message, count };

constexpr const char* step_names[] = {"connect", "tls",      "greeting", "ehlo",
                                      "auth",    "envelope", "accept",   "message"};
constexpr const char* step_descriptions[] = {
    "connect() until the TCP connection is up",
    "TLS handshake: ClientHello until the handshake is done (implicit TLS or STARTTLS)",
    "connected until the 220 greeting",
    "EHLO sent until its 250 (the first EHLO of a connection)",
    "AUTH sent until its 235 (all round trips of the mechanism)",
    "MAIL sent until the 354 to DATA (MAIL, RCPT, DATA in one write with pipelining)",
    "final dot sent until the 250 that accepts the message",
    "MAIL sent until the 250 that accepts the message",
};

struct SmtpThreadStats {
    std::array<Histogram, static_cast<unsigned>(Step::count)> steps;
    std::map<std::string, std::uint64_t> errors;
    std::uint64_t attempted = 0;
    std::uint64_t failed = 0;
    std::uint64_t payload_bytes = 0;
    std::uint64_t connections = 0;
    std::uint64_t quits = 0;
    std::uint64_t last_completion_ns = 0;
    std::atomic<std::uint64_t> accepted_live{0};  // Read by the progress line.
    std::uint64_t accepted = 0;
};

enum class Phase : std::uint8_t {
    idle,        // No connection; connects at start or on wake.
    connecting,
    greeting,
    ehlo,
    helo,
    starttls,    // STARTTLS sent, waiting for its 220.
    tls,         // TLS handshake in progress.
    auth,        // AUTH (and LOGIN's responses) sent, waiting for 334 or 235.
    envelope,    // MAIL, RCPT..., DATA sent (all at once, or one per reply).
    body,        // Message and final dot sent or being sent.
    rset,
    quit,
    done,        // Never connects again.
};

const char* phase_name(Phase phase) {
    switch (phase) {
        case Phase::idle: return "idle";
        case Phase::connecting: return "connect";
        case Phase::greeting: return "greeting";
        case Phase::ehlo: return "ehlo";
        case Phase::helo: return "helo";
        case Phase::starttls: return "starttls";
        case Phase::tls: return "tls";
        case Phase::auth: return "auth";
        case Phase::envelope: return "envelope";
        case Phase::body: return "data-end";
        case Phase::rset: return "rset";
        case Phase::quit: return "quit";
        case Phase::done: return "done";
    }
    return "?";
}

struct SmtpSession {
    Phase phase = Phase::idle;
    SmtpReplyReader reader;
    bool pipelining = false;  // Requested and offered by this server.
    bool refused = false;     // The greeting or EHLO was refused: reconnect after a delay.
    bool tls_done = false;    // This connection is encrypted.
    bool greeted = false;     // The 220 greeting arrived (STARTTLS comes after it).
    bool ehlo_recorded = false;
    bool authenticated = false;
    unsigned auth_round = 0;  // AUTH LOGIN: 0 command sent, 1 user sent, 2 password sent.
    unsigned messages_on_connection = 0;
    bool in_message = false;  // A claimed message whose outcome is not counted yet.
    bool message_failed = false;
    // The envelope of the current message: its command lines, and the replies seen.
    std::string commands;
    std::vector<std::uint32_t> line_ends;
    unsigned lines_sent = 0;
    unsigned replies_seen = 0;
    unsigned recipients_accepted = 0;
    bool mail_accepted = false;
    // The message itself.
    std::string header;
    std::size_t filler_bytes = 0;
    std::string_view terminator;
    std::array<iovec, 3> body_iov{};
    bool body_sending = false;
    std::uint64_t step_start_ns = 0;
    std::uint64_t message_start_ns = 0;
    std::uint64_t dot_sent_ns = 0;
    std::uint64_t number = 0;  // The message's number in the run (its Subject carries it).
};

class SmtpThread final : public LoopHandler {
public:
    SmtpThread(SmtpShared& shared, const Target& target, unsigned thread_index,
               unsigned session_count)
        : shared_(shared),
          options_(shared.options),
          loop_(target.address, target.address_bytes, *this),
          sessions_(session_count),
          random_state_(shared.options.common.seed * 0x9E3779B97F4A7C15ull + thread_index) {}

    Status init(std::string* error) {
        const Status status = loop_.init(static_cast<unsigned>(sessions_.size()));
        if (status != Status::ok || options_.common.tls == TlsMode::none) return status;
        return loop_.enable_tls(options_.common.tls_ca_file, options_.common.tls_groups, error);
    }
    SmtpThreadStats& stats() { return stats_; }

    void run() {
        for (unsigned i = 0; i < sessions_.size(); i++) start_session(loop_.connection(i));
        loop_.run();
    }

    // ---- LoopHandler ----

    void on_connected(Connection& conn) override {
        SmtpSession& s = session(conn);
        const std::uint64_t now = now_ns();
        record(Step::connect, now - s.step_start_ns);
        stats_.connections++;
        s.step_start_ns = now;
        conn.deadline_ns = now + timeout_ns();
        if (options_.common.tls == TlsMode::implicit) {
            s.phase = Phase::tls;
            return loop_.start_tls(conn, options_.common.server_name);
        }
        s.phase = Phase::greeting;
    }

    void on_tls_ready(Connection& conn) override {
        SmtpSession& s = session(conn);
        const std::uint64_t now = now_ns();
        record(Step::tls, now - s.step_start_ns);
        s.tls_done = true;
        s.step_start_ns = now;
        conn.deadline_ns = now + timeout_ns();
        if (!s.greeted) {
            s.phase = Phase::greeting;  // Implicit TLS: the greeting comes encrypted.
            return;
        }
        // RFC 3207 4.2: the client must discard what it knew and send EHLO again.
        s.phase = Phase::ehlo;
        s.commands = "EHLO " + options_.ehlo_name + "\r\n";
        send_text(conn, s.commands);
    }

    void on_received(Connection& conn, std::string_view bytes) override {
        SmtpSession& s = session(conn);
        if (s.reader.feed(bytes) != Status::ok) return protocol_error(conn, "reply too long");
        while (loop_.open(conn) && !conn.closing) {
            auto reply = s.reader.next();
            if (reply.status() == Status::again) break;
            if (!reply) return protocol_error(conn, "malformed reply");
            on_reply(conn, *reply);
        }
    }

    void on_sent(Connection& conn) override {
        SmtpSession& s = session(conn);
        // Commands need nothing here: the next one goes after the reply. The body's
        // completion is when the final dot left, where the accept latency starts.
        if (s.phase == Phase::body && s.body_sending) {
            s.body_sending = false;
            s.dot_sent_ns = now_ns();
        }
    }

    void on_error(Connection& conn, std::string_view what) override {
        count_error(std::string(what));
        SmtpSession& s = session(conn);
        fail_message(s);
    }

    void on_closed(Connection& conn) override {
        SmtpSession& s = session(conn);
        // A session refused at its greeting or EHLO waits like one that failed.
        const bool planned = (s.phase == Phase::quit && !s.refused) || s.phase == Phase::done;
        s.reader.reset();
        if (s.phase == Phase::done || no_more_work()) {
            finish_session(s);
        } else if (planned) {
            start_session(conn);  // --per-session: a fresh connection for the next messages.
        } else {
            s.phase = Phase::idle;
            conn.wake_ns = now_ns() + options_.common.reconnect_delay_ms * 1'000'000ull;
            if (conn.wake_ns == now_ns()) conn.wake_ns++;
        }
    }

    void on_wake(Connection& conn) override {
        if (no_more_work()) return finish_session(session(conn));
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
        for (unsigned i = 0; i < sessions_.size(); i++) {
            Connection& conn = loop_.connection(i);
            SmtpSession& s = sessions_[i];
            if (hard && loop_.open(conn)) {
                fail_message(s);
                finish_session(s);
                loop_.close(conn);
            } else if (!loop_.open(conn) && s.phase == Phase::idle && no_more_work()) {
                finish_session(s);
            }
        }
    }

private:
    SmtpSession& session(Connection& conn) { return sessions_[conn.index]; }
    std::uint64_t timeout_ns() const { return options_.common.timeout_ms * 1'000'000ull; }

    bool no_more_work() const {
        if (shared_.stop.load(std::memory_order_relaxed)) return true;
        const std::uint64_t total = options_.common.message_count;
        if (total != 0 && shared_.next_message.load(std::memory_order_relaxed) >= total) return true;
        return shared_.deadline_ns != 0 && now_ns() >= shared_.deadline_ns;
    }

    void record(Step step, std::uint64_t ns) { stats_.steps[static_cast<unsigned>(step)].record(ns); }

    void count_error(const std::string& key) {
        stats_.errors[key]++;
        const std::uint64_t errors = shared_.errors.fetch_add(1, std::memory_order_relaxed) + 1;
        const std::uint64_t max = options_.common.error_count_max;
        if (max != 0 && errors >= max) {
            shared_.request_stop("more than " + std::to_string(max) + " errors (--max-errors)");
        }
    }

    // The session never connects again; the loop stops once every session is done.
    void finish_session(SmtpSession& s) {
        if (s.phase != Phase::done) {
            s.phase = Phase::done;
            done_count_++;
        }
        RP_ASSERT(done_count_ <= sessions_.size());
        if (done_count_ == sessions_.size()) loop_.stop();
    }

    void start_session(Connection& conn) {
        SmtpSession& s = session(conn);
        if (no_more_work()) return finish_session(s);
        s.phase = Phase::connecting;
        s.refused = false;
        s.tls_done = false;
        s.greeted = false;
        s.ehlo_recorded = false;
        s.authenticated = false;
        s.auth_round = 0;
        s.messages_on_connection = 0;
        s.pipelining = false;
        s.reader.reset();
        s.step_start_ns = now_ns();
        conn.deadline_ns = s.step_start_ns + timeout_ns();
        loop_.connect(conn);
    }

    void send_text(Connection& conn, std::string_view text) {
        const iovec part{const_cast<char*>(text.data()), text.size()};
        loop_.send(conn, std::span<const iovec>(&part, 1));
    }

    void protocol_error(Connection& conn, const char* what) {
        count_error(what);
        fail_message(session(conn));
        loop_.close(conn);
    }

    // Counts a claimed message as failed, once.
    void fail_message(SmtpSession& s) {
        if (!s.in_message) return;
        s.in_message = false;
        stats_.failed++;
    }

    void reply_error(Connection& conn, int code, const char* step) {
        (void)conn;
        count_error(std::to_string(code) + " " + step);
    }

    void on_reply(Connection& conn, const SmtpReply& reply);
    void on_envelope_reply(Connection& conn, SmtpSession& s, const SmtpReply& reply);
    void on_body_reply(Connection& conn, SmtpSession& s, const SmtpReply& reply);
    void next_message(Connection& conn);
    void build_envelope(SmtpSession& s, std::uint64_t number);
    void send_next_envelope_line(Connection& conn, SmtpSession& s);
    void send_body(Connection& conn, SmtpSession& s);
    void send_quit(Connection& conn);
    void send_rset(Connection& conn);
    void after_ehlo(Connection& conn, SmtpSession& s);
    void on_auth_reply(Connection& conn, SmtpSession& s, const SmtpReply& reply);
    std::uint64_t draw_size();

    SmtpShared& shared_;
    const SmtpOptions& options_;
    ClientLoop loop_;
    std::vector<SmtpSession> sessions_;
    std::size_t done_count_ = 0;
    std::uint64_t random_state_;
    SmtpThreadStats stats_;
};

void SmtpThread::on_reply(Connection& conn, const SmtpReply& reply) {
    SmtpSession& s = session(conn);
    const std::uint64_t now = now_ns();
    conn.deadline_ns = now + timeout_ns();
    if (reply.code == 421) {
        // RFC 5321 3.8: the server is closing the channel. Reconnect after the delay.
        count_error(std::string("421 ") + phase_name(s.phase));
        fail_message(s);
        s.phase = Phase::idle;
        return loop_.close(conn);
    }
    switch (s.phase) {
        case Phase::greeting:
            if (reply.code != 220) {
                reply_error(conn, reply.code, "greeting");
                s.refused = true;
                return send_quit(conn);
            }
            record(Step::greeting, now - s.step_start_ns);
            s.greeted = true;
            s.phase = Phase::ehlo;
            s.step_start_ns = now;
            s.commands = "EHLO " + options_.ehlo_name + "\r\n";
            return send_text(conn, s.commands);
        case Phase::ehlo:
        case Phase::helo:
            if (reply.code == 250) {
                if (!s.ehlo_recorded) record(Step::ehlo, now - s.step_start_ns);
                s.ehlo_recorded = true;
                s.pipelining = s.phase == Phase::ehlo && reply.pipelining && options_.pipelining;
                return after_ehlo(conn, s);
            }
            if (s.phase == Phase::ehlo && (reply.code == 500 || reply.code == 502)) {
                s.phase = Phase::helo;  // RFC 5321 3.2: an old server; fall back to HELO.
                s.commands = "HELO " + options_.ehlo_name + "\r\n";
                return send_text(conn, s.commands);
            }
            reply_error(conn, reply.code, s.phase == Phase::ehlo ? "ehlo" : "helo");
            s.refused = true;
            return send_quit(conn);
        case Phase::starttls:
            if (reply.code != 220) {
                reply_error(conn, reply.code, "starttls");
                s.refused = true;
                return send_quit(conn);
            }
            s.phase = Phase::tls;
            s.step_start_ns = now;
            return loop_.start_tls(conn, options_.common.server_name);
        case Phase::auth:
            return on_auth_reply(conn, s, reply);
        case Phase::tls:
            return protocol_error(conn, "reply during the TLS handshake");
        case Phase::envelope:
            return on_envelope_reply(conn, s, reply);
        case Phase::body:
            return on_body_reply(conn, s, reply);
        case Phase::rset:
            if (reply.code != 250) reply_error(conn, reply.code, "rset");
            return next_message(conn);
        case Phase::quit:
            if (reply.code != 221) reply_error(conn, reply.code, "quit");
            stats_.quits++;
            return loop_.close(conn);
        case Phase::idle:
        case Phase::connecting:
        case Phase::done:
            return protocol_error(conn, "reply out of turn");
    }
}

// After a 250 to EHLO: STARTTLS, then AUTH, then mail.
void SmtpThread::after_ehlo(Connection& conn, SmtpSession& s) {
    const std::uint64_t now = now_ns();
    if (options_.common.tls == TlsMode::starttls && !s.tls_done) {
        s.phase = Phase::starttls;
        s.step_start_ns = now;
        s.commands = "STARTTLS\r\n";
        return send_text(conn, s.commands);
    }
    if (options_.auth != AuthMechanism::none && !s.authenticated) {
        s.phase = Phase::auth;
        s.auth_round = 0;
        s.step_start_ns = now;
        const CommonOptions& common = options_.common;
        if (options_.auth == AuthMechanism::plain) {
            // RFC 4616: authzid NUL authcid NUL password, as the initial response.
            std::string response;
            response += '\0';
            response += common.user;
            response += '\0';
            response += common.password;
            s.commands = "AUTH PLAIN " + base64_encode(response) + "\r\n";
        } else {
            s.commands = "AUTH LOGIN\r\n";
        }
        return send_text(conn, s.commands);
    }
    next_message(conn);
}

void SmtpThread::on_auth_reply(Connection& conn, SmtpSession& s, const SmtpReply& reply) {
    const std::uint64_t now = now_ns();
    if (reply.code == 235) {
        record(Step::auth, now - s.step_start_ns);
        s.authenticated = true;
        return next_message(conn);
    }
    // AUTH LOGIN: 334 asks for the user name, then for the password.
    if (reply.code == 334 && options_.auth == AuthMechanism::login && s.auth_round < 2) {
        s.auth_round++;
        const std::string& value = s.auth_round == 1 ? options_.common.user : options_.common.password;
        s.commands = base64_encode(value) + "\r\n";
        return send_text(conn, s.commands);
    }
    reply_error(conn, reply.code, "auth");
    s.refused = true;
    send_quit(conn);
}

void SmtpThread::on_envelope_reply(Connection& conn, SmtpSession& s, const SmtpReply& reply) {
    const unsigned index = s.replies_seen++;
    const unsigned data_index = static_cast<unsigned>(s.line_ends.size()) - 1;
    if (index == 0) {
        s.mail_accepted = reply.code / 100 == 2;
        if (!s.mail_accepted) reply_error(conn, reply.code, "mail");
    } else if (index < data_index) {
        if (reply.code / 100 == 2) {
            s.recipients_accepted++;
        } else if (s.mail_accepted) {
            reply_error(conn, reply.code, "rcpt");
        }
    } else {
        RP_ASSERT(index == data_index);
        if (reply.code == 354) {
            record(Step::envelope, now_ns() - s.message_start_ns);
            return send_body(conn, s);
        }
        if (s.mail_accepted && s.recipients_accepted > 0) reply_error(conn, reply.code, "data");
        fail_message(s);
        return send_rset(conn);
    }
    if (!loop_.open(conn) || conn.closing) return;
    if (s.pipelining) return;  // Every command is out; wait for the rest of the replies.
    // One command at a time: stop early when the transaction cannot succeed.
    if (!s.mail_accepted || (index + 1 == data_index && s.recipients_accepted == 0)) {
        fail_message(s);
        return send_rset(conn);
    }
    send_next_envelope_line(conn, s);
}

void SmtpThread::on_body_reply(Connection& conn, SmtpSession& s, const SmtpReply& reply) {
    const std::uint64_t now = now_ns();
    if (s.message_failed || reply.code != 250) {
        if (!s.message_failed) reply_error(conn, reply.code, "data-end");
        fail_message(s);
    } else if (s.in_message) {
        // The final reply can only follow the final dot, but its completion may be reaped
        // in the same batch as the send's: then the accept latency is below our resolution.
        const std::uint64_t dot_ns = s.body_sending || s.dot_sent_ns == 0 ? now : s.dot_sent_ns;
        record(Step::accept, now - dot_ns);
        record(Step::message, now - s.message_start_ns);
        s.in_message = false;
        if (shared_.accept_ns != nullptr && s.number < options_.common.message_count) {
            shared_.accept_ns[s.number].store(now, std::memory_order_release);
        }
        stats_.accepted++;
        stats_.accepted_live.store(stats_.accepted, std::memory_order_relaxed);
        stats_.payload_bytes += s.header.size() + s.filler_bytes;
        stats_.last_completion_ns = now;
    }
    s.messages_on_connection++;
    next_message(conn);
}

void SmtpThread::next_message(Connection& conn) {
    SmtpSession& s = session(conn);
    RP_ASSERT(!s.in_message);
    const unsigned per_session = options_.messages_per_session;
    if (per_session != 0 && s.messages_on_connection >= per_session) return send_quit(conn);
    if (shared_.stop.load(std::memory_order_relaxed)) return send_quit(conn);
    if (shared_.deadline_ns != 0 && now_ns() >= shared_.deadline_ns) return send_quit(conn);
    const std::uint64_t number = shared_.next_message.fetch_add(1, std::memory_order_relaxed);
    if (options_.common.message_count != 0 && number >= options_.common.message_count) {
        return send_quit(conn);
    }
    stats_.attempted++;
    s.number = number;
    s.in_message = true;
    s.message_failed = false;
    build_envelope(s, number);
    s.phase = Phase::envelope;
    s.message_start_ns = now_ns();
    if (s.pipelining) {
        // RFC 2920 3.1: MAIL, RCPT and DATA may go in one group; DATA ends the group.
        s.lines_sent = static_cast<unsigned>(s.line_ends.size());
        return send_text(conn, s.commands);
    }
    send_next_envelope_line(conn, s);
}

void SmtpThread::build_envelope(SmtpSession& s, std::uint64_t number) {
    s.commands.clear();
    s.line_ends.clear();
    s.lines_sent = 0;
    s.replies_seen = 0;
    s.recipients_accepted = 0;
    s.mail_accepted = false;
    s.commands += "MAIL FROM:<" + options_.from + ">\r\n";
    s.line_ends.push_back(static_cast<std::uint32_t>(s.commands.size()));
    const unsigned count = options_.recipient_count;
    std::string first_recipient;
    for (unsigned r = 0; r < count; r++) {
        // bounds: number < 2^63 and count <= 100000, so the product fits after the modulo.
        const std::uint64_t user = (number % options_.to_spread * count + r) % options_.to_spread;
        std::string address = smtp_expand_address(options_.to, user);
        s.commands += "RCPT TO:<" + address + ">\r\n";
        s.line_ends.push_back(static_cast<std::uint32_t>(s.commands.size()));
        if (r == 0) first_recipient = std::move(address);
    }
    s.commands += "DATA\r\n";
    s.line_ends.push_back(static_cast<std::uint32_t>(s.commands.size()));

    s.header = "From: <" + options_.from + ">\r\nTo: <" + first_recipient +
               ">\r\nSubject: ringpost-bench message " + std::to_string(number) +
               "\r\nDate: " + shared_.date + "\r\nMessage-ID: <" + std::to_string(number) + "." +
               std::to_string(shared_.start_ns) + "@" + options_.ehlo_name + ">\r\n\r\n";
    const std::uint64_t size = draw_size();
    s.filler_bytes = size > s.header.size() ? size - s.header.size() : 0;
    RP_ASSERT(s.filler_bytes <= shared_.filler.size());
    // Never end on a lone CR: the terminator's CRLF would make it a bare CR.
    if (s.filler_bytes > 0 && shared_.filler[s.filler_bytes - 1] == '\r') s.filler_bytes--;
    const bool ends_in_crlf = s.filler_bytes == 0 || shared_.filler[s.filler_bytes - 1] == '\n';
    s.terminator = ends_in_crlf ? std::string_view(".\r\n") : std::string_view("\r\n.\r\n");
}

void SmtpThread::send_next_envelope_line(Connection& conn, SmtpSession& s) {
    RP_ASSERT(s.lines_sent < s.line_ends.size());
    const std::uint32_t begin = s.lines_sent == 0 ? 0 : s.line_ends[s.lines_sent - 1];
    const std::uint32_t end = s.line_ends[s.lines_sent];
    s.lines_sent++;
    send_text(conn, std::string_view(s.commands).substr(begin, end - begin));
}

void SmtpThread::send_body(Connection& conn, SmtpSession& s) {
    s.phase = Phase::body;
    // A failed envelope that still got 354 (a pipelined group) ends the data at once.
    s.message_failed = !s.mail_accepted || s.recipients_accepted == 0;
    if (s.message_failed) {
        fail_message(s);
        send_text(conn, ".\r\n");
        return;
    }
    s.body_iov[0] = {s.header.data(), s.header.size()};
    s.body_iov[1] = {const_cast<char*>(shared_.filler.data()), s.filler_bytes};
    s.body_iov[2] = {const_cast<char*>(s.terminator.data()), s.terminator.size()};
    s.body_sending = true;
    s.dot_sent_ns = 0;
    loop_.send(conn, s.body_iov);
}

void SmtpThread::send_quit(Connection& conn) {
    SmtpSession& s = session(conn);
    s.phase = Phase::quit;
    send_text(conn, "QUIT\r\n");
}

void SmtpThread::send_rset(Connection& conn) {
    SmtpSession& s = session(conn);
    if (!loop_.open(conn) || conn.closing) return;
    s.phase = Phase::rset;
    send_text(conn, "RSET\r\n");
}

std::uint64_t SmtpThread::draw_size() {
    const SizeRange& range = options_.size;
    if (range.low == range.high) return range.low;
    // splitmix64: a fast, seeded sequence; each thread has its own.
    std::uint64_t z = (random_state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return range.low + z % (range.high - range.low + 1);
}

std::string rfc5322_date() {
    const std::time_t now = std::time(nullptr);
    std::tm utc{};
    gmtime_r(&now, &utc);
    char text[64];
    const std::size_t bytes = std::strftime(text, sizeof(text), "%a, %d %b %Y %H:%M:%S +0000", &utc);
    return std::string(text, bytes);
}

std::string seconds_text(double seconds) {
    char text[32];
    std::snprintf(text, sizeof(text), "%g", seconds);
    return text;
}

std::string size_text(const SizeRange& range) {
    if (range.low == range.high) return std::to_string(range.low);
    return std::to_string(range.low) + "-" + std::to_string(range.high);
}

RunReport make_report(const SmtpOptions& options, const Target& target, SmtpShared& shared,
                      std::vector<std::unique_ptr<SmtpThread>>& threads, double cpu_s,
                      std::uint64_t end_ns) {
    RunReport report;
    report.protocol = "smtp";
    report.target = target.text;
    const CommonOptions& common = options.common;
    report.settings = {
        {"threads", std::to_string(common.thread_count)},
        {"sessions", std::to_string(common.session_count)},
        {"messages", common.message_count ? std::to_string(common.message_count) : "-"},
        {"duration_s", common.duration_s > 0 ? seconds_text(common.duration_s) : "-"},
        {"size", size_text(options.size)},
        {"rcpts", std::to_string(options.recipient_count)},
        {"per_session", std::to_string(options.messages_per_session)},
        {"pipelining", options.pipelining ? "yes" : "no"},
        {"tls", common.tls == TlsMode::implicit   ? "implicit"
                : common.tls == TlsMode::starttls ? "starttls"
                                                   : "no"},
        {"auth", options.auth == AuthMechanism::plain   ? "PLAIN"
                 : options.auth == AuthMechanism::login ? "LOGIN"
                                                         : "no"},
    };
    std::uint64_t last_ns = 0;
    std::uint64_t connections = 0;
    std::uint64_t quits = 0;
    report.steps.resize(static_cast<unsigned>(Step::count));
    for (unsigned i = 0; i < report.steps.size(); i++) {
        report.steps[i].name = step_names[i];
        report.steps[i].description = step_descriptions[i];
    }
    for (auto& thread : threads) {
        SmtpThreadStats& stats = thread->stats();
        report.attempted += stats.attempted;
        report.completed += stats.accepted;
        report.failed += stats.failed;
        report.payload_bytes += stats.payload_bytes;
        connections += stats.connections;
        quits += stats.quits;
        if (stats.last_completion_ns > last_ns) last_ns = stats.last_completion_ns;
        for (unsigned i = 0; i < report.steps.size(); i++) {
            report.steps[i].latency_ns.merge(stats.steps[i]);
        }
        for (const auto& [key, count] : stats.errors) report.errors[key] += count;
    }
    if (last_ns == 0) last_ns = end_ns;
    report.elapsed_s = static_cast<double>(last_ns - shared.start_ns) / 1e9;
    report.counters = {{"connections", connections}, {"quits", quits}};
    report.client_cpu_s = cpu_s;
    if (shared.stop_reason_set.load()) report.stop_reason = shared.stop_reason;
    return report;
}

}  // namespace

int run_smtp(const SmtpOptions& options) {
    RunReport report;
    const int code = smtp_load(options, nullptr, report);
    if (code != 0 && code != 1) return code;
    const std::string text = options.common.json ? format_json(report) : format_text(report);
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
    return code;
}

int smtp_load(const SmtpOptions& options, std::atomic<std::uint64_t>* accept_ns,
              RunReport& report_out) {
    const CommonOptions& common = options.common;
    auto target = resolve_target(common.host, common.port);
    if (!target) {
        std::fprintf(stderr, "ringpost-bench: cannot resolve host '%s'\n", common.host.c_str());
        return 2;
    }
    SmtpShared shared(options);
    shared.accept_ns = accept_ns;
    shared.filler = make_filler(options.size.high + 2);
    shared.date = rfc5322_date();
    install_interrupt_handler();
    raise_open_file_limit();

    std::vector<std::unique_ptr<SmtpThread>> threads;
    for (unsigned t = 0; t < common.thread_count; t++) {
        // Spread sessions evenly; the first threads take the remainder.
        const unsigned count = common.session_count / common.thread_count +
                               (t < common.session_count % common.thread_count ? 1 : 0);
        threads.push_back(std::make_unique<SmtpThread>(shared, *target, t, count));
    }
    // IORING_SETUP_SINGLE_ISSUER: each ring is created by the thread that submits to it.
    std::atomic<bool> no_uring{false};
    std::mutex init_error_mutex;
    std::string init_error;
    const double cpu_start = process_cpu_seconds();
    shared.start_ns = now_ns();
    if (common.duration_s > 0) {
        shared.deadline_ns = shared.start_ns + static_cast<std::uint64_t>(common.duration_s * 1e9);
    }
    // The main thread prints progress and wakes as soon as the last worker ends, so the
    // run's wall time has no polling slack in it.
    std::mutex running_mutex;
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
                const std::lock_guard lock(init_error_mutex);
                init_error = error;
                shared.request_stop("TLS set-up failed: " + error);
            } else {
                worker->run();
            }
            const std::lock_guard lock(running_mutex);
            running--;
            running_changed.notify_all();
        });
    }
    Progress progress(common, "msgs");
    while (true) {
        {
            std::unique_lock lock(running_mutex);
            running_changed.wait_for(lock, std::chrono::milliseconds(200),
                                     [&] { return running == 0; });
            if (running == 0) break;
        }
        std::uint64_t accepted = 0;
        for (auto& thread : threads) accepted += thread->stats().accepted_live.load();
        progress.maybe_print(now_ns(), accepted, shared.errors.load());
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
    report_out = make_report(options, *target, shared, threads, process_cpu_seconds() - cpu_start,
                             now_ns());
    const RunReport& report = report_out;
    const bool clean = report.error_count() == 0 && report.failed == 0 &&
                       report.stop_reason.empty();
    return clean ? 0 : 1;
}

}  // namespace rp::bench
