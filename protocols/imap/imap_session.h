// protocols/imap/imap_session.h: IMAP on the engine: the ImapServer state machine driven by the
// session driver, with mail_access (protocols/common/mail_access.h) as its host.
//
// Owns: ImapFactory owns the listener's ImapServerConfig and, unless given one, a
//   PlaintextPasswords checker; each session owns its ImapServer, its AccessClient (its
//   watches, released when the session closes), the BodyReaders of a literal being streamed
//   and of a body being loaded, one cached message (bytes and MIME structure) and the bytes of
//   an APPEND in progress (bounded by ImapServerConfig::append_bytes_max).
// Core: the shard's thread only. Mailboxes and bodies may live on other shards: mail_access
//   carries the requests; the session reads body bytes itself with its shard's Io.
// Flow: LOGIN/AUTHENTICATE -> PasswordChecker (the same one as POP3). SELECT opens a snapshot
//   and watches the mailbox until it is closed; MailboxEvents carry the new messages, the new
//   flags and keywords and the expunged UIDs, and become EXISTS/EXPUNGE/FETCH without reading
//   the mailbox again. Keywords are stored per account (mail_access keyword_names).
//   FETCH literals ("BODY[]", sections, partial ranges) on a plaintext connection are
//   spliced from the store's segment files to the socket (mail::BodySplicer: no copy
//   through user space, the segments pinned until sent); under TLS they are read, verified
//   and written in 16 KiB slices while the send queue is below
//   limits::session_output_high_bytes. ENVELOPE/BODYSTRUCTURE and header fields load the
//   whole body and run mime_parse (one message cached per session).
// Memory: an idle session holds no view, no cached message and no APPEND bytes; closing
//   the selected mailbox gives its view back.
// Timeouts: not authenticated: 60 s; otherwise [imap] idle_timeout_ms (also in IDLE).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "config/settings.h"
#include "core/session.h"
#include "protocols/common/mail_access.h"
#include "protocols/imap/imap_server.h"
#include "protocols/pop3/pop3_session.h"

namespace rp::imap {

class ImapFactory final : public ProtocolFactory {
public:
    // `kind` is the listener kind ("imap", "imaps"). `settings` must outlive the factory;
    // `passwords` too when given (null: plaintext from the config).
    ImapFactory(mail::MailAccess& access, SessionDriver& driver, const config::Settings& settings,
                std::string kind, pop3::PasswordChecker* passwords = nullptr);

    std::size_t session_bytes() const override;
    std::size_t session_align() const override;
    ProtocolSession* create(void* storage) override;
    std::string_view busy_reply() const override { return busy_reply_; }
    std::string_view per_ip_reply() const override { return per_ip_reply_; }
    std::uint64_t open_timeout_ms() const override { return login_timeout_ms; }

    mail::MailAccess& access() { return access_; }
    SessionDriver& driver() { return driver_; }
    pop3::PasswordChecker& passwords() { return *passwords_; }
    const ImapServerConfig& server_config() const { return server_config_; }
    std::uint64_t idle_timeout_ms() const { return idle_timeout_ms_; }
    std::uint64_t splice_bytes_min() const { return splice_bytes_min_; }
    const std::string& kind() const { return kind_; }

    static constexpr std::uint64_t login_timeout_ms = 60'000;

private:
    mail::MailAccess& access_;
    SessionDriver& driver_;
    std::unique_ptr<pop3::PlaintextPasswords> plaintext_;
    pop3::PasswordChecker* passwords_;
    ImapServerConfig server_config_;
    std::uint64_t idle_timeout_ms_;
    std::uint64_t splice_bytes_min_;
    std::string kind_;
    std::string busy_reply_;
    std::string per_ip_reply_;
};

}  // namespace rp::imap
