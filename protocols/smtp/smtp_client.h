// protocols/smtp/smtp_client.h: the SMTP client state machine (RFC 5321 sending).
//
// Owns: the protocol state of one outbound connection: reply framing, the server's
//   extensions, the transaction in progress and the bytes to send.
// Core: one delivery on one core; no I/O, no clock (like SmtpServer).
// Flow: greeting -> EHLO (HELO when EHLO is refused) -> [STARTTLS when offered and enabled:
//   the host runs the handshake and calls tls_started(), then EHLO again] -> ready.
//   send(message) runs one transaction: [RSET when the last one did not finish] MAIL FROM
//   (SIZE=, BODY=8BITMIME when offered), RCPT TO per recipient, DATA, the dot-stuffed body
//   (given whole, or streamed by the host in pieces: body_chunk(), body_end()).
//   With PIPELINING (RFC 2920) MAIL, the RCPTs and DATA go in one write. Then ready again
//   for the next message on the same connection, or quit().
// Results: one reply per recipient: the RCPT reply when it was refused, else the reply that
//   ended the transaction for it (MAIL refused, DATA refused, or the final reply after the
//   body). 2xx delivered, 4xx defer, 5xx bounce. A message larger than the server's SIZE is
//   not sent: every recipient gets "552 5.3.4"; nor is an 8-bit message (eight_bit) to a
//   server without 8BITMIME: "554 5.6.3" (RFC 6152 3: return it; we do not convert).
//   BODY=8BITMIME is declared only for 8-bit messages.
// Timeouts (RFC 5321 4.5.3.2): timeout_ms() names how long the host waits for the reply it
//   expects now; on expiry it calls on_timeout(). Either that, a lost connection or a
//   malformed reply ends the session: pending recipients get a 4xx and closed() is true.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace rp::smtp {

struct SmtpClientTimeouts {  // RFC 5321 4.5.3.2.
    std::uint64_t greeting_ms = 5 * 60'000;
    std::uint64_t command_ms = 5 * 60'000;    // EHLO, MAIL, RCPT, RSET, QUIT, STARTTLS.
    std::uint64_t data_init_ms = 2 * 60'000;
    std::uint64_t data_block_ms = 3 * 60'000;  // For the host: each block of the body sent.
    std::uint64_t data_end_ms = 10 * 60'000;
};

struct SmtpClientConfig {
    std::string helo_name = "localhost";
    bool starttls = false;  // Ask for STARTTLS when offered (the host must do the handshake).
    bool require_tls = false;  // No STARTTLS offered or accepted: end the session (421 4.7.4).
    SmtpClientTimeouts timeouts;
};

struct SmtpReply {
    std::uint16_t code = 0;
    std::string text;  // All lines joined by "; ", without the codes: "5.1.1 User unknown".
    bool positive() const { return code >= 200 && code < 400; }
    bool transient() const { return code >= 400 && code < 500; }
    bool permanent() const { return code >= 500; }
    std::string line() const { return std::to_string(code) + " " + text; }
};

struct SmtpClientMessage {
    std::string sender;                    // "" for the null sender <>.
    std::vector<std::string> recipients;   // At least one.
    std::shared_ptr<const std::string> body;  // As stored: header + body, CRLF or bare LF.
    // With body == nullptr the host streams the body: after DATA's 354 wants_body() is
    // true; it calls body_chunk() with pieces as it reads them and body_end() after the
    // last. body_bytes is then the size for SIZE=.
    std::uint64_t body_bytes = 0;
    bool eight_bit = false;                // The body has bytes >= 0x80.
};

struct SmtpExtensions {
    bool esmtp = false, pipelining = false, eight_bit_mime = false, starttls = false;
    bool smtputf8 = false;
    bool size = false;           // SIZE offered (RFC 1870).
    std::uint64_t size_max = 0;  // 0: no limit announced.
};

// RFC 5321 4.5.2 dot-stuffing on the fly, over pieces split anywhere: doubles a leading dot
// on every line, turns bare LF and bare CR into CRLF (2.3.8); finish() ends the data with
// CRLF "." CRLF.
class SmtpBodyEncoder {
public:
    void encode(std::string_view bytes, std::string& out);
    void finish(std::string& out);

private:
    bool line_start_ = true;
    bool after_cr_ = false;  // The last byte was CR (written as CRLF): skip a following LF.
};

class SmtpClient {
public:
    explicit SmtpClient(const SmtpClientConfig& config);

    // Bytes from the server; consumes all of them (partial lines are kept, bounded).
    void feed(std::string_view bytes);
    // Moves out what should be sent now.
    std::string take_output();

    bool ready() const { return state_ == State::ready; }
    bool closed() const { return state_ == State::closed; }
    bool wants_tls() const { return state_ == State::tls_handshake; }
    bool tls_active() const { return tls_active_; }
    // The reply that ended the session before it became ready (greeting or HELO refused),
    // or the synthesized reply of a timeout / lost connection / protocol error.
    const SmtpReply& session_reply() const { return session_reply_; }
    const SmtpExtensions& extensions() const { return ext_; }

    // Starts a transaction. Precondition: ready().
    void send(SmtpClientMessage message);
    // The per-recipient replies of the transaction that just ended, once.
    std::optional<std::vector<SmtpReply>> take_result();
    bool transaction_running() const { return state_ == State::transaction; }
    // The last transaction did not end cleanly: the next one starts with RSET.
    bool needs_rset() const { return need_rset_; }
    // Streaming (message.body == nullptr): the server said 354 and waits for the body.
    bool wants_body() const { return state_ == State::transaction && streaming_; }
    // Dot-stuffs `bytes` into the output (RFC 5321 4.5.2); the host sends take_output().
    void body_chunk(std::string_view bytes);
    // Ends the body (CRLF . CRLF); the final reply is due.
    void body_end();

    // QUIT (when ready) and close after the reply; otherwise just closes.
    void quit();
    void tls_started();
    void tls_failed();
    void on_timeout();
    void connection_lost();
    // How long to wait for the next reply now; 0 when not waiting for one.
    std::uint64_t timeout_ms() const;

    std::uint32_t transactions() const { return transactions_; }

private:
    enum class State : std::uint8_t { greeting, ehlo, helo, starttls, tls_handshake, ready, transaction, quitting, closed };
    enum class Expect : std::uint8_t { rset, mail, rcpt, data, data_end, dot_only };

    void line_received(std::string_view line);
    void reply_received(const SmtpReply& reply);
    void transaction_reply(const SmtpReply& reply);
    void after_ehlo(const SmtpReply& reply);
    void parse_extension(std::string_view line);
    void emit(std::string_view command);
    void send_body();
    void send_next_unsent();
    void end_transaction();
    void fail_session(std::uint16_t code, std::string text);

    const SmtpClientConfig& config_;
    State state_ = State::greeting;
    bool tls_active_ = false;
    bool need_rset_ = false;
    SmtpExtensions ext_;
    SmtpReply session_reply_;
    std::string in_;          // A partial line.
    std::vector<std::string> lines_;  // The current multi-line reply's texts.
    std::uint16_t reply_code_ = 0;
    std::string out_;

    // The transaction.
    SmtpClientMessage message_;
    std::deque<std::pair<Expect, std::uint32_t>> expected_;  // Replies still due (rcpt index).
    std::deque<std::string> unsent_;   // Commands waiting for replies (no PIPELINING).
    std::vector<SmtpReply> results_;
    std::vector<bool> rcpt_ok_;
    bool mail_ok_ = false;
    bool aborted_ = false;     // MAIL or DATA refused: later replies are ignored.
    bool streaming_ = false;   // 354 came; the host feeds the body.
    SmtpBodyEncoder encoder_;
    std::optional<std::vector<SmtpReply>> done_;
    std::uint32_t transactions_ = 0;
};

// RFC 5321 4.5.2: doubles a leading dot on every line; turns bare LF and bare CR into CRLF
// (2.3.8); ends with CRLF "." CRLF. Appends to `out`.
void smtp_body_encode(std::string_view body, std::string& out);

}  // namespace rp::smtp
