// protocols/pop3/pop3_server.h: the POP3 server state machine (RFC 1939, RFC 2449 CAPA and
// response codes, RFC 2595 STLS, RFC 5034 AUTH PLAIN).
//
// Owns: the protocol state of one POP3 connection: line framing, the maildrop listing (UID
//   and size of each message, the deletion marks), the dot-stuffing of a message being sent,
//   and the pending reply bytes.
// Core: one session driver on one core; nothing here is shared or locked.
// Invariants: no I/O, no clock. Output is bounded: feed() stops while output_blocked(), and
//   multi-line listings (LIST, UIDL) are produced in slices (pump() continues them); message
//   bytes come from the host in pieces the host sizes. Replies follow command order, so
//   PIPELINING (RFC 2449 6.6) needs nothing from the driver. Deletions take effect only at
//   QUIT in the TRANSACTION state (UPDATE, RFC 1939 6), reported by the host as durable.
// Errors: peer misbehaviour gets "-ERR ..." and a counter, and the session goes on (a line
//   over line_bytes_max too); after errors_max of them "-ERR Too many errors" and close.
//   Host failures arrive as Status values and become replies via reply_table.
//
// How a session driver uses it:
//   Pop3Server server(config, host, info);  server.greet();  send take_output().
//   on receive: n = server.feed(bytes); send the output; keep bytes[n:] while
//     paused() (host work pending), output_blocked() (call pump() when the send queue
//     drains, then feed the kept bytes again) or wants_close() (flush, close).
//   host.login() -> later server.login_done(status, maildrop).
//   host.message_read(i) -> server.message_data(piece)... then server.message_end(status);
//     message_data() returns false once it needs no more (TOP); keep pieces small (16 KiB)
//     and wait while output_blocked().
//   host.update(uids) -> server.update_done(status) once the expunge is durable and the
//     maildrop released (QUIT in TRANSACTION, also with no uids).
//   STLS answered: waiting_for_tls(); discard kept input (RFC 2595 4), handshake, then
//     tls_started() or connection_lost().
//   timer (idle_timeout_ms, re-armed after each answered command): on_timeout() closes
//     without a reply and without UPDATE (RFC 1939 3: autologout).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/limits.h"
#include "core/result.h"
#include "protocols/common/line_reader.h"

namespace rp::pop3 {

struct Pop3ServerConfig {
    std::string hostname = "localhost";
    std::uint32_t line_bytes_max = limits::pop3_line_bytes_max;  // 255 <= x <= the limit.
    std::uint32_t output_bytes_high = 16384;  // feed() and pump() stop above this.
    std::uint32_t errors_max = 20;            // Protocol errors before closing.
};

struct Pop3SessionInfo {
    bool tls_active = false;     // Implicit TLS (995) or after STLS.
    bool tls_available = false;  // STLS may be offered.
    bool auth_allowed = true;    // USER/PASS/AUTH accepted without TLS (loopback, config).
};

struct Pop3Message {
    std::uint32_t uid = 0;
    std::uint64_t size = 0;
};

// What login_done() gives the server: the maildrop as opened (and locked) by the host.
struct Pop3Maildrop {
    std::uint32_t uidvalidity = 0;
    std::vector<Pop3Message> messages;  // In UID order; message number = index + 1.
};

// Implemented by the session. Called from inside feed() (or pump()); the answers may come
// from inside the call (a synchronous host) or later.
class Pop3Host {
public:
    virtual ~Pop3Host() = default;
    // PASS or AUTH PLAIN: check the credentials and open and lock the maildrop. Answer with
    // login_done(): ok, refused (bad credentials), busy (in use), permission (too many
    // failures from this address: the server closes), other (temporary).
    virtual void login(std::string_view user, std::string_view password) = 0;
    // RETR or TOP of message number index + 1: answer with message_data() pieces, then
    // message_end().
    virtual void message_read(std::uint32_t index) = 0;
    // QUIT in the TRANSACTION state: expunge `uids` (maybe none) durably and release the
    // maildrop, then update_done() (the +OK waits for it: RFC 1939 6).
    virtual void update(std::span<const std::uint32_t> uids) = 0;
};

struct Pop3Counters {
    std::uint32_t syntax_errors = 0;
    std::uint32_t long_lines = 0;
    std::uint32_t auth_failures = 0;
    std::uint32_t messages_sent = 0;
    std::uint32_t messages_deleted = 0;
};

class Pop3Server {
public:
    Pop3Server(const Pop3ServerConfig& config, Pop3Host& host, const Pop3SessionInfo& info);
    Pop3Server(const Pop3Server&) = delete;
    Pop3Server& operator=(const Pop3Server&) = delete;

    // "+OK <hostname> POP3 server ready". Call once, first.
    void greet();
    // Instead of greet(): "-ERR [SYS/TEMP] ..." and close (pool full, shutting down).
    void refuse(Status reason);

    // Consumes input; returns how many bytes. Stops early only when paused(),
    // output_blocked() or wants_close().
    [[nodiscard]] std::size_t feed(std::span<const std::byte> input);
    // Continues a multi-line listing after output_blocked() cleared.
    void pump();

    void take_output(std::string& out);
    bool has_output() const { return !output_.empty(); }
    bool output_blocked() const { return output_.size() >= config_.output_bytes_high; }
    bool wants_close() const { return state_ == State::closed; }
    bool paused() const {
        return state_ == State::wait_login || state_ == State::wait_message ||
               state_ == State::wait_update || state_ == State::wait_tls;
    }
    bool in_transaction() const { return state_ == State::transaction; }
    // The message being read is for TOP (not RETR).
    bool sending_top() const { return top_; }
    // A LIST/UIDL listing is still being produced: call pump() (or feed()) again once the
    // output has been sent.
    bool listing() const { return listing_ != 0; }

    // The host's answers.
    void login_done(Status status, const Pop3Maildrop* maildrop);
    // Returns false once the reply needs no more bytes (TOP reached its line count).
    bool message_data(std::span<const std::byte> piece);
    void message_end(Status status);
    void update_done(Status status);

    bool waiting_for_tls() const { return state_ == State::wait_tls; }
    void tls_started();

    // Autologout: closes without a reply and without UPDATE.
    void on_timeout();
    // The shard is stopping: answer "-ERR [SYS/TEMP] shutting down" and close as soon as
    // no host answer is pending (deletions are not applied: UPDATE only on QUIT).
    void begin_shutdown();
    void connection_lost();

    const Pop3Counters& counters() const { return counters_; }
    std::uint32_t deleted_count() const { return deleted_count_; }

private:
    enum class State : std::uint8_t {
        fresh,
        authorization,
        auth_plain,      // "+ " sent, waiting for the SASL PLAIN response line.
        wait_login,
        transaction,
        wait_message,    // RETR/TOP streaming.
        wait_update,
        wait_tls,
        closed,
    };

    void handle_line(std::string_view line);
    void authorization_command(std::string_view verb, std::string_view args);
    void transaction_command(std::string_view verb, std::string_view args);
    void do_capa();
    void do_auth(std::string_view args);
    void auth_plain_response(std::string_view line);
    void do_list(std::string_view args, bool uidl);
    void do_retr(std::string_view args, bool top);
    void do_quit();
    void start_login(std::string_view user, std::string_view password);
    // The message number in `arg`, or -1 after answering -ERR.
    long message_arg(std::string_view arg);
    void list_line(std::size_t index, bool uidl);
    void stuff(std::span<const std::byte> piece);
    bool stuff_top(std::span<const std::byte> piece);
    void error(std::string_view line);
    void reply(std::string_view line);
    void close_shutdown();
    std::string maildrop_summary() const;

    const Pop3ServerConfig& config_;
    Pop3Host& host_;
    State state_ = State::fresh;
    std::string output_;
    rp::protocols::LineReader line_reader_;
    bool tls_active_;
    bool tls_available_;
    bool auth_allowed_;
    bool shutting_down_ = false;
    std::uint32_t error_count_ = 0;
    std::string user_;  // USER given, PASS expected.

    // The maildrop (TRANSACTION).
    std::uint32_t uidvalidity_ = 0;
    std::vector<Pop3Message> messages_;
    std::vector<bool> deleted_;
    std::uint32_t deleted_count_ = 0;
    std::vector<std::uint32_t> update_uids_;

    // A LIST/UIDL listing in progress: 1 = LIST, 2 = UIDL; listing_index_ = next message.
    int listing_ = 0;
    std::size_t listing_index_ = 0;

    // The message being sent.
    bool top_ = false;
    bool message_started_ = false;  // "+OK" sent.
    bool line_start_ = true;
    bool in_header_ = true;
    bool top_done_ = false;
    std::uint32_t line_bytes_ = 0;  // Bytes of the current line so far (TOP).
    bool last_cr_ = false;
    std::uint64_t top_lines_left_ = 0;
    std::uint64_t message_size_ = 0;

    Pop3Counters counters_;
};

// RFC 4648 base64, strict (padding required, no whitespace). False on bad input.
bool base64_decode(std::string_view text, std::string& out);

}  // namespace rp::pop3
