// protocols/smtp/smtp_session.h: SMTP reception on the engine: the SmtpServer state machine
// driven by the session driver, with the shard's store as its host.
//
// Owns: SmtpFactory owns the listener's SmtpServerConfig; each SmtpSession owns its
//   SmtpServer and the message it is receiving (a MessageJob, which outlives the session
//   when the connection drops while the store commits).
// Core: the shard's thread only.
// Durability: the session answers "250 2.0.0 Ok: queued as <id>" only from the store's
//   DurableDone, after the group commit that holds the message's body, its INBOX deliveries
//   and its spool entry has been fdatasynced.
// Timeouts (RFC 5321 4.5.3.2): a command line re-arms idle_ms when it is answered; inside
//   DATA, every 64 KiB of progress re-arms data_block_ms; while the store commits,
//   data_end_ms. Received bytes alone re-arm nothing, so a trickling client times out.
// STARTTLS: the driver's start_tls() (input pipelined after the command is discarded there).
// AUTH: credentials go to the HashPool (helper threads); the answer comes back to this
//   shard with Shard::post_external and finds the session by a per-factory ticket (a session
//   that closed meanwhile is simply not found). A failure is answered after the throttle's
//   growing delay (the session's one timer), and a client address over its failure limit
//   gets 421 4.7.0.
// Submission (kinds "submission" and "smtps"): MAIL needs AUTH, and with
//   auth.sender_login_match MAIL FROM must be the authenticated address. An authenticated
//   client may relay to any domain; on "mx" only trusted networks may.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <unordered_map>

#include "config/settings.h"
#include "core/session.h"
#include "protocols/auth/account_db.h"
#include "protocols/auth/auth_pool.h"
#include "protocols/common/shard_mail.h"
#include "protocols/smtp/smtp_server.h"

namespace rp::smtp {

// What AUTH needs; the pool and throttle are process-wide (they outlive the shards), the
// account table is per shard and replaced on SIGHUP.
struct AuthContext {
    auth::HashPool* pool = nullptr;          // Null: AUTH is not offered.
    auth::AuthThrottle* throttle = nullptr;
    std::shared_ptr<const auth::AccountDb> accounts;
    bool plaintext_loopback = false;
};

class SmtpFactory final : public ProtocolFactory {
public:
    // `kind` is the listener kind ("mx"). `settings` must outlive the factory.
    SmtpFactory(mail::ShardMail& mail, SessionDriver& driver, const config::Settings& settings,
                std::string kind);

    std::size_t session_bytes() const override;
    std::size_t session_align() const override;
    ProtocolSession* create(void* storage) override;
    std::string_view busy_reply() const override { return busy_reply_; }
    std::string_view per_ip_reply() const override { return per_ip_reply_; }
    std::uint64_t open_timeout_ms() const override { return timeouts_.idle_ms; }

    mail::ShardMail& mail() { return mail_; }
    SessionDriver& driver() { return driver_; }
    const SmtpServerConfig& server_config() const { return server_config_; }
    const config::SmtpTimeouts& timeouts() const { return timeouts_; }
    const std::string& kind() const { return kind_; }

    // AUTH: set before start, and on SIGHUP (new account table) on the shard's thread.
    void set_auth(AuthContext context) { auth_ = std::move(context); }
    const AuthContext& auth() const { return auth_; }
    // Pending password checks: ticket -> session (type-erased; see smtp_session.cc).
    std::uint64_t auth_ticket_add(void* session);
    void* auth_ticket_take(std::uint64_t ticket);
    void auth_ticket_drop(std::uint64_t ticket);

    // DATA/BDAT body bytes: written to the log straight from receive buffers (zero copy), or
    // copied (bytes that passed through staging or TLS, the Received: header, a CR the
    // decoder held back at a buffer boundary).
    struct BodyStats {
        std::uint64_t zero_copy_bytes = 0;
        std::uint64_t copied_bytes = 0;
        std::uint64_t buffers_held = 0;  // Receive buffers lent to the log.
    };
    BodyStats& body_stats() { return body_stats_; }
    ~SmtpFactory() override;

private:
    BodyStats body_stats_;
    mail::ShardMail& mail_;
    unsigned shard_index_;  // Kept: the ShardMail may be gone when the factory is destroyed.
    SessionDriver& driver_;
    SmtpServerConfig server_config_;
    config::SmtpTimeouts timeouts_;
    std::string kind_;
    std::string busy_reply_;
    std::string per_ip_reply_;
    AuthContext auth_;
    std::unordered_map<std::uint64_t, void*> auth_pending_;
    std::uint64_t auth_next_ticket_ = 1;
};

}  // namespace rp::smtp
