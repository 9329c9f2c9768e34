// tools/bench/bench_access.h: `ringpost-bench pop3` and `ringpost-bench imap`, mailbox access
// load (login, list, retrieve every message, log out), and `--idle N` sessions held open.
//
// An independent client like bench_smtp: it shares no protocol code with the server.
//
// Owns: per thread, one ClientLoop and the POP3 or IMAP state of each of its sessions.
// Steps measured (POP3): connect, tls, greeting, login (USER sent -> +OK to PASS), list (STAT
//   sent -> end of LIST), retr (RETR sent -> its last line), quit, session (connected -> +OK
//   to QUIT). (IMAP): connect, tls, greeting, login, select, fetch (one FETCH command ->
//   its tagged OK), flags (UID FETCH 1:* FLAGS -> tagged OK), logout, session.
// Throughput counts messages retrieved (or, with --idle, sessions logged in); bytes are the
//   message octets (POP3: the data lines without the stuffing dots and the terminator;
//   IMAP: the literal octets).
// Errors: every unexpected response is counted under "<response> <step>" ("-ERR login",
//   "NO select"); a connection failure under its label.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/result.h"
#include "tools/bench/bench_options.h"

namespace rp::bench {

struct Pop3Reply {
    bool ok = false;                // +OK (else -ERR).
    std::string line;               // The status line without CRLF (at most 512 bytes kept).
    std::uint64_t body_bytes = 0;   // Multi-line: the data lines, with CRLF, without stuffing.
    std::uint64_t line_count = 0;   // Multi-line: data lines.
};

// Splits a byte stream into POP3 replies (RFC 1939 3). The caller says whether the next reply
// is multi-line (a +OK to RETR, LIST, UIDL); -ERR is always one line. Pure, for trickle tests.
class Pop3ReplyReader {
public:
    static constexpr std::size_t reply_bytes_max = 256u << 20;
    [[nodiscard]] Status feed(std::string_view bytes);
    // Status::again when more bytes are needed, Status::invalid when a status line is neither
    // +OK nor -ERR.
    [[nodiscard]] Result<Pop3Reply> next(bool multiline);
    void reset();

private:
    std::string buffer_;
    std::size_t start_ = 0;  // The first byte of the reply being read.
    std::size_t scan_ = 0;   // Multi-line: where the search for the terminator resumes.
};

struct ImapResponse {
    enum class Kind : std::uint8_t { tagged, untagged, continuation };
    Kind kind = Kind::untagged;
    std::string tag;                 // Tagged: the tag.
    std::string word;                // Tagged: OK/NO/BAD; untagged: "OK", "EXISTS", "FETCH"...
    std::uint64_t number = 0;        // Untagged "* 12 FETCH": 12; 0 if none.
    std::uint64_t literal_bytes = 0;
    unsigned literal_count = 0;
};

// Splits a byte stream into IMAP responses (RFC 9051 2.2.2, 4.3): lines, where a line that
// ends in a literal "{n}" continues after n octets. Pure, for trickle tests.
class ImapResponseReader {
public:
    static constexpr std::size_t response_bytes_max = 256u << 20;
    [[nodiscard]] Status feed(std::string_view bytes);
    // Status::again when more bytes are needed; Status::invalid for a malformed first line.
    [[nodiscard]] Result<ImapResponse> next();
    void reset();

private:
    std::string buffer_;
    std::size_t start_ = 0;         // The first byte of the response being read.
    std::size_t cursor_ = 0;        // Where reading resumes (after whole lines and literals).
    std::uint64_t literal_left_ = 0;
    std::uint64_t literal_bytes_ = 0;
    unsigned literal_count_ = 0;
};

enum class AccessProtocol : std::uint8_t { pop3, imap };

struct AccessOptions {
    AccessProtocol protocol = AccessProtocol::pop3;
    CommonOptions common;
    unsigned user_spread = 1;       // --user with %d: session i logs in as i % user_spread.
    std::uint64_t round_count = 1;  // Logins per session (each retrieves the whole mailbox).
    unsigned window = 1;            // POP3: RETR commands in flight.
    bool dele = false;              // POP3: DELE every message after its RETR.
    unsigned chunk = 0;             // IMAP: messages per FETCH; 0: 1:* at once.
    bool fetch_body = true;         // IMAP: FETCH BODY.PEEK[].
    bool fetch_flags = true;        // IMAP: UID FETCH 1:* FLAGS.
    unsigned idle_count = 0;        // --idle N: N sessions log in and stay.
    double hold_s = 10;             // --idle: how long to hold once all are logged in.
    std::string mailbox = "INBOX";
};

// Parses the arguments after "pop3" or "imap" (`out.protocol` set by the caller).
[[nodiscard]] Status parse_access_options(std::span<const char* const> args, AccessOptions& out,
                                          std::string& error);
std::string access_usage(AccessProtocol protocol);

// Runs the benchmark, prints the report and returns the exit status.
int run_access(const AccessOptions& options);

}  // namespace rp::bench
