// protocols/smtp/smtp_server.h: the SMTP server state machine (RFC 5321 reception).
//
// Owns: the protocol state of one SMTP connection: line framing, the current envelope, the
//   DATA/BDAT decoder and the pending reply bytes.
// Core: one session driver on one core; nothing here is shared or locked.
// Invariants: no I/O, no clock, no allocation beyond bounded buffers (line <= line_bytes_max,
//   pending output <= output_bytes_high + one reply, recipients <= recipients_max). Replies
//   are produced strictly in command order, so PIPELINING (RFC 2920) needs nothing from the
//   driver but "send what is pending when feed() returns". Only CRLF.CRLF ends DATA.
// Errors: peer misbehaviour becomes an ordinary reply (500/501/503/...) and a counter; host
//   failures arrive as Status values and become replies through protocols/common/reply_table.
//
// How a session driver uses it:
//
//   SmtpServer server(config, host, session);   // `config` and `host` outlive `server`.
//   server.greet();                              // or server.refuse(Status::full)
//   send(server.take_output(...)).
//   on receive(bytes):                           // `pending` = unconsumed input kept by driver
//       pending += bytes (or feed the receive buffer directly when nothing is pending)
//       loop:
//           n = server.feed(pending); pending.drop_front(n);
//           server.take_output(send_buffer); send it (if not empty).
//           if server.wants_close(): flush the output, then close.          stop
//           if server.paused(): keep `pending`; stop reading.               stop
//           if server.output_blocked(): wait for the send to finish, loop.
//           if pending empty: re-arm recv.                                  stop
//       (feed() returns early ONLY in these three states; otherwise it consumes everything.)
//   after host.message_end(): the host commits, then calls server.message_done(status);
//       if server.paused() was set, the driver now feeds the kept input again (same loop).
//   timer for server.timeout_kind() expires: server.on_timeout(); flush; close.
//   peer closed / reset / TLS failure: server.connection_lost(); destroy after the host is
//       done with any message it was given message_end() for.
//   shard shutting down: server.begin_shutdown(); keep running the loop (bounded by a timer
//       that calls on_timeout()).
//
// Body bytes: host.message_data() receives spans that point INTO the span given to feed()
// (zero copy), except for the Received: header (server-owned memory, always the first piece)
// and a lone "\r" that a buffer boundary held back (a static constant). They are valid only
// during the call. Bare LF and bare CR in the body are kept as they are, never end the message
// and never start a line for dot-unstuffing (see protocols/common/data_decoder.h); the count
// of bare line ends is given to the host at message_end() so that relaying can normalise.
// Body lines have no length limit (only the message size is enforced); BDAT chunks are taken
// byte-exact, without dot-unstuffing (RFC 3030).
//
// Peer misbehaviour, in short: unknown command 500 5.5.2; bad arguments 501 5.5.4 (addresses
// 501 5.1.7 / 5.1.3, unknown parameters 555 5.5.4); wrong order 503 5.5.1; a command line over
// line_bytes_max 500 5.5.2 and the session goes on; a command ended by a bare LF 500 5.5.2
// (never executed); after errors_max such errors 421 4.7.0 and close; a BDAT whose size does
// not parse 501 and close (its chunk cannot be skipped). STARTTLS: 454 4.7.0 unless
// session.tls_available.
//
// AUTH (RFC 4954; SASL PLAIN RFC 4616, LOGIN, and SCRAM-SHA-256 RFC 5802/7677): offered in EHLO only when auth_available
// and (TLS is active or auth_plaintext); otherwise AUTH is 538 5.7.11. 503 5.5.1 without EHLO,
// in a transaction or once authenticated; 504 5.5.4 unknown mechanism; 501 5.5.2 bad base64 or
// a malformed response; 501 5.7.0 when the client cancels with "*". Valid credentials go to
// host.auth_begin() (asynchronous: the server pauses until auth_done()): 235 2.7.0, 535 5.7.8,
// 454 4.7.0, or 421 4.7.0 and close (too many failures from this client). With
// config.auth_required, MAIL before AUTH is 530 5.7.0; with config.sender_login_match, a MAIL
// FROM other than the authenticated address (or <>) is 553 5.7.1.
// SCRAM-SHA-256: the server checks the proof itself against host.auth_scram_keys() (an unknown
// user gets a fake salt and fails at the end); host.auth_begin() then sees the verdict
// (request.verified), so failures are throttled like PLAIN. On success the server signature
// goes out as a 334 challenge (RFC 4954 4: no data in 235); the client's empty line gets 235.
//
// Destroy the server only when wants_close() is true or after connection_lost() (the
// destructor asserts that no message is open).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/limits.h"
#include "core/result.h"
#include "protocols/auth/scram.h"
#include "protocols/common/data_decoder.h"
#include "protocols/common/line_reader.h"
#include "protocols/smtp/smtp_address.h"
#include "protocols/smtp/smtp_command.h"

namespace rp::smtp {

// Settings shared by all sessions of a listener. Must outlive every SmtpServer using it.
struct SmtpServerConfig {
    std::string hostname = "localhost";          // Our FQDN: greeting, EHLO, Received, 421.
    std::uint64_t message_bytes_max = 10u << 20;  // SIZE advertised and enforced (> 0).
    std::uint32_t recipients_max = 1000;         // Per transaction; 452 4.5.3 past it.
    std::uint32_t line_bytes_max = limits::smtp_line_bytes_max;  // 512 <= x <= the limit.
    std::uint32_t output_bytes_high = 16384;     // feed() stops while more is pending.
    std::uint32_t errors_max = 20;               // Protocol errors before 421 4.7.0 + close.
    bool auth_required = false;                  // Submission: MAIL needs AUTH (530 5.7.0).
    bool sender_login_match = false;             // MAIL FROM must be the AUTH user (553 5.7.1).
};

// What the driver knows about this connection. Copied by the constructor.
struct SmtpSessionInfo {
    std::string_view client_address;  // Text form, "192.0.2.7" or "IPv6:2001:db8::7".
    std::string_view client_name;     // Verified reverse name, or empty ("unknown").
    bool tls_active = false;          // Implicit TLS (port 465), or after STARTTLS.
    bool tls_available = false;       // STARTTLS may be offered (a certificate is loaded).
    bool auth_available = false;      // AUTH may be offered (an account database exists).
    bool auth_plaintext = false;      // AUTH allowed without TLS (loopback tests).
};

// Credentials from a SASL exchange, for SmtpHost::auth_begin. Views valid during the call.
struct SmtpAuthRequest {
    std::string_view mechanism;  // "PLAIN", "LOGIN" or "SCRAM-SHA-256".
    std::string_view authzid;    // PLAIN only; empty or equal to user.
    std::string_view user;
    std::string_view password;   // Empty for SCRAM.
    bool verified = false;       // SCRAM: the proof matched the stored keys.
};

enum class SmtpAuthOutcome : std::uint8_t {
    success,      // 235 2.7.0 Authentication successful
    bad,          // 535 5.7.8 Authentication credentials invalid
    temporary,    // 454 4.7.0 Temporary authentication failure
    throttled,    // 421 4.7.0 too many authentication failures; close
};

enum class RcptVerdict : std::uint8_t {
    accept_local,   // 250 2.1.5 Ok; a mailbox on this server.
    accept_relay,   // 250 2.1.5 Ok; to be relayed (trusted or authenticated client).
    no_such_user,   // 550 5.1.1 <a>: Recipient address rejected: User unknown
    relay_denied,   // 554 5.7.1 <a>: Relay access denied
    temporary,      // 451 4.3.0 <a>: Temporary lookup failure
    storage_full,   // 452 4.3.1 Insufficient system storage
};

struct SmtpRecipient {
    SmtpAddress address;
    RcptVerdict verdict = RcptVerdict::accept_local;  // accept_local or accept_relay.
};

// The envelope of the current transaction. Views valid during the host call only.
struct SmtpEnvelope {
    std::string_view helo;             // Argument of the last HELO/EHLO.
    std::string_view client_address;
    bool esmtp = false;                // EHLO (not HELO) was used.
    bool tls = false;
    bool smtputf8 = false;             // MAIL FROM ... SMTPUTF8
    SmtpBodyType body = SmtpBodyType::seven_bit;
    std::uint64_t declared_bytes = 0;  // MAIL FROM ... SIZE=n, 0 if absent.
    const SmtpAddress* sender = nullptr;  // Never null inside a host call; may be null sender.
    std::span<const SmtpRecipient> recipients;  // Accepted ones, in RCPT order.
    std::string_view auth_user;        // The authenticated address, or empty.
};

// Assigned by the host in message_begin(); printed in Received: and "queued as".
struct QueueId {
    static constexpr std::size_t bytes_max = 32;
    char text[bytes_max] = {};
    std::uint8_t bytes = 0;

    static QueueId from(std::string_view s);  // Asserts 1 <= size <= bytes_max, printable.
    std::string_view view() const { return {text, bytes}; }
};

struct SmtpMessageInfo {
    std::uint64_t body_bytes = 0;         // Bytes given to message_data(), Received: included.
    std::uint64_t bare_line_end_count = 0;  // Bare LF or bare CR seen in a DATA body.
    bool chunked = false;                 // Came by BDAT (no dot-unstuffing applied).
};

// Implemented by the session driver / shard. Called synchronously from inside feed() (and
// from on_timeout(), connection_lost(), message_done()). Must not destroy the server or call
// feed() re-entrantly.
class SmtpHost {
public:
    virtual ~SmtpHost() = default;

    // MAIL FROM was accepted syntactically. Status::ok -> 250; anything else becomes a reply
    // via reply_table (no_space -> 452 4.3.1, full/again/busy -> 451 4.3.0, refused ->
    // 550 5.7.1). Default: accept.
    virtual Status mail_check(const SmtpEnvelope& envelope);

    // RCPT TO: an in-memory lookup (local domains, users, trusted/authenticated client).
    // `envelope.recipients` holds the recipients accepted so far. A recipient without a
    // domain is only possible as "postmaster" (RFC 5321 4.1.1.3); the host must accept it.
    virtual RcptVerdict rcpt_verdict(const SmtpEnvelope& envelope,
                                     const SmtpAddress& recipient) = 0;

    // DATA (before 354) or the first BDAT: start a message. A Status becomes the reply
    // instead of 354 (no_space -> 452 4.3.1, other -> 451 4.3.0); for BDAT the chunk is still
    // consumed and discarded.
    virtual Result<QueueId> message_begin(const SmtpEnvelope& envelope) = 0;

    // A piece of the message, in order. The first piece is the Received: header. Valid only
    // during the call (usually points into the buffer given to feed()).
    virtual void message_data(std::span<const std::byte> piece) = 0;

    // The whole message has been given. The server is paused until message_done(), which the
    // host may also call from inside this callback (a synchronous host).
    virtual void message_end(const SmtpMessageInfo& info) = 0;

    // The message begun by message_begin() will not end: RSET, QUIT, size exceeded,
    // timeout, connection lost, BDAT failure. Not called after message_end().
    virtual void message_abort() = 0;

    // Unix time, used for the Received: date.
    virtual std::int64_t now_unix_seconds() = 0;

    // AUTH credentials were received. Status::ok: verification started, and the host calls
    // SmtpServer::auth_done() later (never from inside this call). Anything else: answered
    // 454 4.7.0 now (Status::refused: 421 4.7.0 and close, the client is throttled).
    // Default: Status::unsupported.
    virtual Status auth_begin(const SmtpAuthRequest& request);
    // The user's SCRAM-SHA-256 keys (RFC 5803 text), or empty (no such user or no keys).
    // An in-memory lookup. Default: empty.
    virtual std::string auth_scram_keys(std::string_view user);
};

// Which RFC 5321 4.5.3.2 timer the driver should have armed right now.
enum class SmtpTimeoutKind : std::uint8_t {
    command,  // Waiting for a command line (4.5.3.2.7, 5 min).
    data,     // Inside a DATA body or a BDAT chunk (waiting for the next data block, 3 min+).
    none,     // Paused on the host (message_done / TLS handshake): the host owns the timing.
};

// Peer-misbehaviour counters, for metrics.
struct SmtpCounters {
    std::uint32_t syntax_errors = 0;    // 500/501/555
    std::uint32_t sequence_errors = 0;  // 503
    std::uint32_t long_lines = 0;       // 500 5.5.2 line too long
    std::uint32_t bare_lf_commands = 0;
    std::uint32_t messages_accepted = 0;
    std::uint32_t recipients_rejected = 0;
};

class SmtpServer {
public:
    SmtpServer(const SmtpServerConfig& config, SmtpHost& host, const SmtpSessionInfo& session);
    ~SmtpServer();
    SmtpServer(const SmtpServer&) = delete;
    SmtpServer& operator=(const SmtpServer&) = delete;

    // Queue the greeting "220 <host> ESMTP ringpost". Call once, first.
    void greet();
    // Instead of greet(): refuse the connection with 421 and close (Status::full -> too many
    // connections 421 4.7.0, anything else -> 421 4.3.2 service not available).
    void refuse(Status reason);

    // Consume input bytes; returns how many were consumed. Stops early only when paused(),
    // wants_close() or output_blocked() becomes true; the driver keeps the rest and feeds it
    // again later (the server keeps no pointer into `input` after returning).
    [[nodiscard]] std::size_t feed(std::span<const std::byte> input);

    // Pending reply bytes. Appends them to `out` (swapping buffers when `out` is empty, so
    // capacity circulates and steady state allocates nothing) and clears them here.
    void take_output(std::string& out);
    bool has_output() const { return !output_.empty(); }
    std::size_t output_bytes() const { return output_.size(); }
    bool output_blocked() const { return output_.size() >= config_.output_bytes_high; }

    bool wants_close() const { return state_ == State::closed; }
    bool paused() const {
        return state_ == State::wait_message_done || state_ == State::wait_tls ||
               state_ == State::wait_auth;
    }
    SmtpTimeoutKind timeout_kind() const;

    // The host's answer to message_end(): ok -> "250 2.0.0 Ok: queued as <id>"; else
    // no_space -> 452 4.3.1, too_big -> 552 5.3.4, other -> 451 4.3.0. Clears the pause.
    // Ignored (no output) after connection_lost().
    void message_done(Status status);

    // STARTTLS was answered 220 (paused, waiting_for_tls() true): the driver must DISCARD any
    // input it kept (RFC 3207 5: no plaintext command injection), run the handshake, then
    // call tls_started() (state reset, EHLO required again) or connection_lost().
    bool waiting_for_tls() const { return state_ == State::wait_tls; }
    void tls_started();

    // The host's answer to auth_begin(). Clears the pause. Ignored after connection_lost().
    void auth_done(SmtpAuthOutcome outcome);
    bool waiting_for_auth() const { return state_ == State::wait_auth; }
    std::string_view auth_user() const { return auth_user_; }

    // Timer expired: 421 4.4.2 <host> Error: timeout exceeded; aborts a message; closes.
    void on_timeout();
    // The shard is stopping: close now with 421 4.3.2 when no transaction is open; otherwise
    // let the transaction finish and answer the next command with 421 4.3.2.
    void begin_shutdown();
    // The peer is gone: aborts an open message; no more output.
    void connection_lost();

    const SmtpCounters& counters() const { return counters_; }

private:
    enum class State : std::uint8_t {
        fresh,               // Before greet().
        command,             // Reading command lines.
        data,                // Inside a DATA body.
        bdat,                // Inside a BDAT chunk.
        wait_message_done,   // message_end() called, waiting for message_done().
        wait_tls,            // 220 to STARTTLS sent, waiting for tls_started().
        wait_auth,           // Credentials given to auth_begin(), waiting for auth_done().
        closed,
    };

    // Implementation details; see smtp_server.cc.
    std::size_t feed_command(std::span<const std::byte> input);
    std::size_t feed_data(std::span<const std::byte> input);
    std::size_t feed_bdat(std::span<const std::byte> input);
    void handle_line(std::string_view line);
    void handle_command(const SmtpCommand& command);
    void do_helo(const SmtpCommand& command);
    void do_mail(const SmtpCommand& command);
    void do_rcpt(const SmtpCommand& command);
    void do_data(const SmtpCommand& command);
    void do_bdat(const SmtpCommand& command);
    void do_starttls(const SmtpCommand& command);
    void do_auth(const SmtpCommand& command);
    void auth_continue(std::string_view line);
    void auth_plain(std::string_view response);
    void auth_submit(std::string_view mechanism, std::string_view authzid, std::string_view user,
                     std::string_view password);
    void auth_reset();
    void scram_first(std::string_view response);
    void scram_final(std::string_view response);
    bool check_ready_for_data();
    Status begin_message();
    void emit_received_header();
    void end_data();
    void end_bdat_chunk();
    void finish_message(bool chunked);
    void reset_transaction();
    void abort_message();
    void sequence_error(std::string_view line);
    void param_error(const SmtpCommand& command, std::string_view bad_address);
    void protocol_error();
    void reply(std::string_view line);
    void reply_with_host(std::string_view codes, std::string_view text);
    void close_with_status(Status reason);
    SmtpEnvelope envelope() const;

    const SmtpServerConfig& config_;
    SmtpHost& host_;
    State state_ = State::fresh;
    std::string output_;
    rp::protocols::LineReader line_reader_;
    rp::protocols::DataDecoder data_decoder_;

    // Session.
    std::string client_address_;
    std::string client_name_;
    std::string helo_;
    bool esmtp_ = false;
    bool tls_active_ = false;
    bool tls_available_ = false;
    bool auth_available_ = false;
    bool auth_plaintext_ = false;
    enum class AuthStep : std::uint8_t {
        none, plain, login_user, login_password, scram_first, scram_final, scram_ack
    };
    AuthStep auth_step_ = AuthStep::none;
    std::string auth_user_;        // Authenticated address.
    std::string auth_scratch_;     // Decoded SASL bytes (wiped after use).
    std::string auth_login_name_;  // LOGIN: the user name, until the password comes.
    std::string auth_pending_user_;
    // A SCRAM exchange in progress (only then allocated: sessions live in fixed slots).
    std::unique_ptr<rp::auth::ScramServer> scram_;
    bool shutting_down_ = false;
    std::uint32_t error_count_ = 0;

    // Transaction.
    bool have_sender_ = false;
    SmtpAddress sender_;
    bool smtputf8_ = false;
    SmtpBodyType body_type_ = SmtpBodyType::seven_bit;
    std::uint64_t declared_bytes_ = 0;
    std::vector<SmtpRecipient> recipients_;
    std::uint32_t rcpt_attempt_count_ = 0;
    bool message_open_ = false;    // message_begin() succeeded, not yet ended or aborted.
    bool message_failed_ = false;  // Too big: consume to the end of data, then 552.
    bool too_big_ = false;
    bool bdat_used_ = false;       // This transaction's message comes by BDAT.
    bool bdat_last_ = false;
    bool bdat_reset_ = false;      // Reset the transaction after this chunk (begin failed).
    std::string_view bdat_error_;  // Reply for the current chunk instead of 250 (static).
    std::uint64_t bdat_remaining_ = 0;
    std::uint64_t bdat_chunk_bytes_ = 0;
    std::uint64_t message_bytes_ = 0;  // Client bytes of the current message (after unstuffing).
    QueueId queue_id_;
    std::string received_;

    SmtpCounters counters_;
};

}  // namespace rp::smtp
