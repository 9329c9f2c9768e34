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
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "config/settings.h"
#include "core/session.h"
#include "protocols/common/shard_mail.h"
#include "protocols/smtp/smtp_server.h"

namespace rp::smtp {

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

private:
    mail::ShardMail& mail_;
    SessionDriver& driver_;
    SmtpServerConfig server_config_;
    config::SmtpTimeouts timeouts_;
    std::string kind_;
    std::string busy_reply_;
    std::string per_ip_reply_;
};

}  // namespace rp::smtp
