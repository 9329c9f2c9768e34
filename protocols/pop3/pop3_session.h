// protocols/pop3/pop3_session.h: POP3 on the engine: the Pop3Server state machine driven by
// the session driver, with mail_access (protocols/common/mail_access.h) as its host.
//
// Owns: Pop3Factory owns the listener's Pop3ServerConfig and, unless given one, a
//   PlaintextPasswords checker; each session owns its Pop3Server, its AccessClient (the
//   maildrop lock, released when the session closes) and the BodyReader of a RETR/TOP.
// Core: the shard's thread only. The maildrop may belong to another shard (and a body to a
//   third one): mail_access carries the requests; the session reads body bytes itself with
//   its shard's Io below the owner's durable watermark, verifying each chunk.
// TLS: STLS (RFC 2595) through the driver's start_tls() (input pipelined after STLS is
//   discarded), implicit TLS on kind "pop3s". Plaintext logins before TLS only where the
//   checker allows them (auth.plaintext_loopback); otherwise "-ERR [AUTH] ... STLS first".
// Flow: USER/PASS or AUTH PLAIN -> PasswordChecker (async) -> open INBOX exclusively (a
//   second session gets -ERR [IN-USE]) -> TRANSACTION on a snapshot. RETR of a body the
//   store marked dot-free (storage::body_dot_free: no line starts with ".", ends with CRLF)
//   on a plaintext connection: "+OK", the stored bytes spliced from the segment file to the
//   socket (mail::BodySplicer, no copy through user space), ".". Otherwise (TOP, dot lines,
//   TLS) RETR streams the stored bytes, dot-stuffed, in 16 KiB slices while the send queue
//   is below limits::session_output_high_bytes, continuing from on_output_drained. QUIT
//   expunges the deletions (if any) and releases the maildrop on its owner shard
//   (AccessClient::release); the +OK waits for both (durable expunge, lock gone), so a
//   client that logs in again at once is not told [IN-USE]. A dropped connection deletes
//   nothing (its lock goes asynchronously with the session).
// Timeouts: [pop3] idle_timeout_ms, re-armed after each answered command and whenever
//   queued output drains (a slow reader of a large message is making progress).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "config/settings.h"
#include "core/session.h"
#include "protocols/common/login_checker.h"
#include "protocols/common/mail_access.h"
#include "protocols/pop3/pop3_server.h"

namespace rp::pop3 {

// The checker interface is shared with IMAP (protocols/common/login_checker.h).
using PasswordCheckDone = mail::PasswordCheckDone;
using PasswordChecker = mail::PasswordChecker;
using PlaintextPasswords = mail::PlaintextPasswords;

class Pop3Factory final : public ProtocolFactory {
public:
    // `kind` is the listener kind ("pop3"). `settings` must outlive the factory; `passwords`
    // too when given (null: plaintext from the config).
    Pop3Factory(mail::MailAccess& access, SessionDriver& driver, const config::Settings& settings,
                std::string kind, PasswordChecker* passwords = nullptr);

    std::size_t session_bytes() const override;
    std::size_t session_align() const override;
    ProtocolSession* create(void* storage) override;
    std::string_view busy_reply() const override { return busy_reply_; }
    std::string_view per_ip_reply() const override { return per_ip_reply_; }
    std::uint64_t open_timeout_ms() const override { return idle_timeout_ms_; }

    mail::MailAccess& access() { return access_; }
    SessionDriver& driver() { return driver_; }
    PasswordChecker& passwords() { return *passwords_; }
    const Pop3ServerConfig& server_config() const { return server_config_; }
    std::uint64_t idle_timeout_ms() const { return idle_timeout_ms_; }
    std::uint64_t splice_bytes_min() const { return splice_bytes_min_; }
    const std::string& kind() const { return kind_; }

private:
    mail::MailAccess& access_;
    SessionDriver& driver_;
    std::unique_ptr<PlaintextPasswords> plaintext_;
    PasswordChecker* passwords_;
    Pop3ServerConfig server_config_;
    std::uint64_t idle_timeout_ms_;
    std::uint64_t splice_bytes_min_;
    std::string kind_;
    std::string busy_reply_;
    std::string per_ip_reply_;
};

}  // namespace rp::pop3
