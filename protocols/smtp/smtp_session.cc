#include "protocols/smtp/smtp_session.h"

#include <algorithm>
#include <string_view>

#include <netinet/in.h>

#include "core/limits.h"
#include "core/log.h"
#include "core/shard.h"

namespace rp::smtp {
namespace {

constexpr std::size_t body_flush_bytes = 1u << 20;      // Copied pieces go over per 1 MiB.
constexpr std::uint64_t data_rearm_bytes = 64u << 10;   // DATA progress that re-arms the timer.

std::string_view as_text(std::span<const std::byte> bytes) {
    return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

bool is_loopback(const sockaddr_storage& peer) {
    if (peer.ss_family == AF_INET) {
        const auto* v4 = reinterpret_cast<const sockaddr_in*>(&peer);
        return (ntohl(v4->sin_addr.s_addr) >> 24) == 127;
    }
    if (peer.ss_family == AF_INET6) {
        const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&peer);
        if (IN6_IS_ADDR_LOOPBACK(&v6->sin6_addr)) return true;
        return IN6_IS_ADDR_V4MAPPED(&v6->sin6_addr) && v6->sin6_addr.s6_addr[12] == 127;
    }
    return false;
}

class SmtpSession;

// A receive buffer lent to the log: body bytes are written from it (zero copy), and it goes
// back to its ring once every write that carries some of them has completed (or failed).
// References: one per body_append that uses it, plus one for the session while it is still
// collecting pieces from it.
struct BufferHold final : storage::BufferRelease {
    BufferRef buffer;
    unsigned references = 1;

    void buffer_released(Status /*status*/) override { unref(); }
    void unref() {
        RP_ASSERT(references > 0);
        if (--references == 0) delete this;
    }
};

// The message a session is receiving. It lives until the store has answered for it, even
// when the connection is gone by then (the session detaches itself).
struct MessageJob final : storage::DurableDone {
    SmtpSession* session = nullptr;
    storage::BodyWriterId writer = 0;
    std::uint64_t message_id = 0;
    std::string body;                 // Received since the last hand-over to the store.
    Status failed = Status::ok;       // A store error met while receiving.
    std::string sender;
    std::vector<mail::AcceptRecipient> recipients;
    std::uint64_t size = 0;

    void durable(Status status) override;
};

class SmtpSession final : public ProtocolSession, public SmtpHost {
public:
    explicit SmtpSession(SmtpFactory& factory) : factory_(factory) {}
    ~SmtpSession() override = default;

    // ---- ProtocolSession ----
    void on_open(const SessionInfo& info, SessionOutput& out) override {
        handle_ = info.handle;
        client_address_ = std::string(info.peer_text);
        trusted_ = factory_.mail().directory().trusted(info.peer);
        throttle_key_ = auth::AuthThrottle::key_of(info.peer);
        SmtpSessionInfo session;
        session.client_address = client_address_;
        session.tls_active = info.tls_active;
        session.tls_available = info.tls_available;
        session.auth_available = factory_.auth().pool != nullptr;
        session.auth_plaintext = factory_.auth().plaintext_loopback && is_loopback(info.peer);
        server_.emplace(factory_.server_config(), *this, session);
        server_->greet();
        flush(out);
        arm(out, SmtpTimeoutKind::command);
    }

    std::size_t on_bytes(std::span<const std::byte> bytes, BufferRef* source,
                         SessionOutput& out) override {
        // Body pieces that point into `bytes` are written from `source` itself (see
        // message_data); the rest of the input is copied as usual.
        if (hold_unused_ != nullptr) hold_unused_->unref();
        hold_unused_ = nullptr;
        input_ = bytes;
        source_ = source;
        const std::size_t consumed = run(bytes, out);
        append_pending();
        input_ = {};
        source_ = nullptr;
        if (hold_ != nullptr) {
            // A store error left the hold unused: keep its bytes valid until the driver has
            // staged what we did not consume (it copies from them after this returns).
            if (hold_->references == 1) {
                if (hold_unused_ != nullptr) hold_unused_->unref();
                hold_unused_ = hold_;
            } else {
                hold_->unref();
            }
            hold_ = nullptr;
        }
        return consumed;
    }

    void on_timeout(SessionOutput& out) override {
        if (auth_delayed_) {
            // The failure delay is over: answer the AUTH now.
            auth_delayed_ = false;
            finish_auth(out, auth_outcome_);
            return;
        }
        server_->on_timeout();
        flush(out);
        out.close_after_flush();
    }

    void on_drain(SessionOutput& out) override {
        server_->begin_shutdown();
        flush(out);
        if (server_->wants_close()) out.close_after_flush();
    }

    void on_output_drained(SessionOutput& out) override {
        if (output_paused_ && out.output_queued_bytes() < limits::session_output_high_bytes) {
            output_paused_ = false;
            if (!server_->paused()) out.resume_reading();
        }
    }

    void on_tls_started(SessionOutput& out) override {
        server_->tls_started();
        arm(out, server_->timeout_kind());
        out.resume_reading();
    }

    void on_close(Status /*reason*/) override {
        if (hold_unused_ != nullptr) hold_unused_->unref();
        hold_unused_ = nullptr;
        if (auth_ticket_ != 0) factory_.auth_ticket_drop(auth_ticket_);
        auth_ticket_ = 0;
        if (server_) server_->connection_lost();
        if (job_ != nullptr) job_->session = nullptr;  // The store still answers for it.
        job_ = nullptr;
        server_.reset();
    }

    // ---- SmtpHost ----
    RcptVerdict rcpt_verdict(const SmtpEnvelope& envelope,
                             const SmtpAddress& recipient) override {
        // Never an open relay: only trusted networks and authenticated clients may relay.
        const bool relay_allowed = trusted_ || !envelope.auth_user.empty();
        const RcptVerdict verdict = factory_.mail().directory().route(recipient, relay_allowed);
        if (verdict == RcptVerdict::no_such_user || verdict == RcptVerdict::relay_denied) {
            log::info("shard {}: refused RCPT <{}> from {}: {}", factory_.mail().shard_index(),
                      recipient.text(), client_address_,
                      verdict == RcptVerdict::no_such_user ? "550 5.1.1 user unknown"
                                                           : "554 5.7.1 relay access denied");
        }
        return verdict;
    }

    Result<QueueId> message_begin(const SmtpEnvelope& envelope) override {
        mail::ShardMail& mail = factory_.mail();
        if (Status s = mail.store().failed(); s != Status::ok) return s;
        auto writer = mail.store().body_begin();
        if (!writer) return writer.status();
        auto job = std::make_unique<MessageJob>();
        job->session = this;
        job->writer = *writer;
        job->message_id = mail.next_message_id();
        job->sender = std::string(envelope.sender->text());
        for (const SmtpRecipient& r : envelope.recipients) {
            mail::AcceptRecipient recipient;
            recipient.address = std::string(r.address.text());
            recipient.account = r.verdict == RcptVerdict::accept_local
                                    ? mail.directory().find(r.address)
                                    : nullptr;
            job->recipients.push_back(std::move(recipient));
        }
        job_ = job.release();
        return QueueId::from(mail::ShardMail::queue_id_text(job_->message_id));
    }

    void message_data(std::span<const std::byte> piece) override {
        RP_ASSERT(job_ != nullptr);
        data_since_arm_ += piece.size();
        if (job_->failed != Status::ok || piece.empty()) return;
        if (source_ != nullptr && piece.data() >= input_.data() &&
            piece.data() + piece.size() <= input_.data() + input_.size()) {
            // Inside the receive buffer: borrow it (first piece), write from it later.
            if (!job_->body.empty()) hand_over_body();  // Order: copied bytes go first.
            if (hold_ == nullptr) {
                hold_ = new BufferHold();
                hold_->buffer = std::move(*source_);
                ++factory_.body_stats().buffers_held;
            }
            if (!pending_.empty() && static_cast<const std::byte*>(pending_.back().iov_base) +
                                             pending_.back().iov_len == piece.data()) {
                pending_.back().iov_len += piece.size();  // Adjacent: one piece.
            } else {
                pending_.push_back({const_cast<std::byte*>(piece.data()), piece.size()});
            }
            return;
        }
        append_pending();
        job_->body.append(as_text(piece));
        if (job_->body.size() >= body_flush_bytes) hand_over_body();
    }

    void message_end(const SmtpMessageInfo& info) override {
        RP_ASSERT(job_ != nullptr);
        mail::ShardMail& mail = factory_.mail();
        job_->size = info.body_bytes;
        append_pending();
        if (job_->failed == Status::ok && !job_->body.empty()) hand_over_body();
        Status status = job_->failed;
        Result<storage::BodyRef> body = Status::invalid;
        if (status == Status::ok) {
            body = mail.store().body_finish(job_->writer);
            status = body.status();
        } else {
            mail.store().body_abort(job_->writer);
        }
        if (status == Status::ok) {
            mail::AcceptArgs args;
            args.message_id = job_->message_id;
            args.body = *body;
            args.body_bytes = info.body_bytes;
            args.sender = job_->sender;
            args.client = "addr=" + client_address_;
            args.recipients = job_->recipients;
            status = mail.accept(args, *job_);
        }
        if (status != Status::ok) {
            log::error("shard {}: {}: not accepted from {}: store: {}", mail.shard_index(),
                       mail::ShardMail::queue_id_text(job_->message_id), client_address_,
                       status_name(status));
            delete job_;
            job_ = nullptr;
            server_->message_done(status);  // Synchronous: the server stays in the loop.
        }
    }

    void message_abort() override {
        pending_.clear();
        if (job_ == nullptr) return;
        factory_.mail().store().body_abort(job_->writer);
        delete job_;
        job_ = nullptr;
    }

    std::int64_t now_unix_seconds() override {
        return factory_.mail().shard().reactor().clock().wall_seconds();
    }

    Status auth_begin(const SmtpAuthRequest& request) override {
        const AuthContext& context = factory_.auth();
        RP_ASSERT(context.pool != nullptr);
        RP_ASSERT(auth_ticket_ == 0);
        if (context.throttle->blocked(throttle_key_, now_seconds())) {
            log::info("shard {}: AUTH from {} refused: too many failures",
                      factory_.mail().shard_index(), client_address_);
            return Status::refused;
        }
        const std::string* stored =
            context.accounts != nullptr ? context.accounts->find(request.user) : nullptr;
        auth_user_.assign(request.user);
        auth_ticket_ = factory_.auth_ticket_add(this);
        Shard* shard = &factory_.mail().shard();
        SmtpFactory* factory = &factory_;
        const std::uint64_t ticket = auth_ticket_;
        // Runs on a helper thread; the result goes back to this shard's thread.
        auto done = [shard, factory, ticket](bool match) {
            shard->post_external([factory, ticket, match](Shard&) {
                void* session = factory->auth_ticket_take(ticket);
                if (session != nullptr) static_cast<SmtpSession*>(session)->auth_verified(match);
            });
        };
        if (request.mechanism == rp::auth::scram_mechanism) {
            // The server checked the proof (HMACs, no hash pool): post the verdict, so it
            // takes the same throttled path as a password check.
            done(request.verified);
            return Status::ok;
        }
        Status status = context.pool->submit(stored != nullptr ? *stored : std::string(),
                                             std::string(request.password), std::move(done));
        if (status != Status::ok) {
            factory_.auth_ticket_drop(auth_ticket_);
            auth_ticket_ = 0;
            return Status::full;  // 454 4.7.0: the pool is busy.
        }
        return Status::ok;
    }

    std::string auth_scram_keys(std::string_view user) override {
        const AuthContext& context = factory_.auth();
        const std::string* keys =
            context.accounts != nullptr ? context.accounts->find_scram(user) : nullptr;
        return keys != nullptr ? *keys : std::string();
    }

    // The helper thread's answer, on this shard's thread.
    void auth_verified(bool match) {
        auth_ticket_ = 0;
        SessionOutput* out = factory_.driver().find(handle_);
        RP_ASSERT(out != nullptr);  // An open session always finds itself.
        if (match) {
            log::info("shard {}: AUTH {} from {}: ok", factory_.mail().shard_index(), auth_user_,
                      client_address_);
            finish_auth(*out, SmtpAuthOutcome::success);
            return;
        }
        const AuthContext& context = factory_.auth();
        const std::uint64_t now = now_seconds();
        const std::uint64_t delay_ms = context.throttle->record_failure(throttle_key_, now);
        auth_outcome_ = context.throttle->blocked(throttle_key_, now) ? SmtpAuthOutcome::throttled
                                                                      : SmtpAuthOutcome::bad;
        log::info("shard {}: AUTH {} from {}: failed ({} failures)",
                  factory_.mail().shard_index(), auth_user_, client_address_,
                  context.throttle->failures(throttle_key_, now));
        if (delay_ms == 0) {
            finish_auth(*out, auth_outcome_);
            return;
        }
        auth_delayed_ = true;
        out->set_timeout_ms(delay_ms);
    }

    // The store answered for the message this session is waiting on.
    void committed(MessageJob& job, Status status) {
        RP_ASSERT(&job == job_);
        job_ = nullptr;
        if (status == Status::ok) {
            std::string to;
            for (const auto& r : job.recipients) {
                if (!to.empty()) to += ',';
                to += '<' + r.address + '>';
            }
            log::info("shard {}: {}: accepted from=<{}> to={} size={} client={}",
                      factory_.mail().shard_index(), mail::ShardMail::queue_id_text(job.message_id),
                      job.sender, to, job.size, client_address_);
        } else {
            log::error("shard {}: {}: commit failed: {}", factory_.mail().shard_index(),
                       mail::ShardMail::queue_id_text(job.message_id), status_name(status));
        }
        server_->message_done(status);
        SessionOutput* out = factory_.driver().find(handle_);
        RP_ASSERT(out != nullptr);  // An open session always finds itself.
        flush(*out);
        if (server_->wants_close()) {
            out->close_after_flush();
            return;
        }
        arm(*out, server_->timeout_kind());
        if (!output_paused_) out->resume_reading();
    }

private:
    std::uint64_t now_seconds() {
        return static_cast<std::uint64_t>(factory_.mail().shard().reactor().clock().wall_seconds());
    }

    void finish_auth(SessionOutput& out, SmtpAuthOutcome outcome) {
        server_->auth_done(outcome);
        flush(out);
        if (server_->wants_close()) {
            out.close_after_flush();
            return;
        }
        arm(out, server_->timeout_kind());
        if (!output_paused_) out.resume_reading();
    }

    // Feeds input until it is used up or the server stops early (see smtp_server.h).
    std::size_t run(std::span<const std::byte> bytes, SessionOutput& out) {
        std::size_t consumed = 0;
        for (;;) {
            const SmtpTimeoutKind before = server_->timeout_kind();
            consumed += server_->feed(bytes.subspan(consumed));
            const bool answered = server_->has_output();
            flush(out);
            if (server_->wants_close()) {
                out.close_after_flush();
                return bytes.size();
            }
            if (server_->waiting_for_tls()) {
                // RFC 3207 5: whatever followed STARTTLS in this input is dropped here, and
                // the driver drops what it holds once the 220 is queued.
                if (!out.start_tls()) out.close_after_flush();
                return bytes.size();
            }
            const SmtpTimeoutKind after = server_->timeout_kind();
            if (answered || after != before || data_since_arm_ >= data_rearm_bytes) {
                arm(out, after);
            }
            if (server_->paused()) {
                out.pause_reading();
                return consumed;
            }
            if (out.output_queued_bytes() >= limits::session_output_high_bytes) {
                output_paused_ = true;
                out.pause_reading();
                return consumed;
            }
            if (consumed == bytes.size()) return consumed;
        }
    }

    void flush(SessionOutput& out) {
        if (!server_->has_output()) return;
        server_->take_output(output_);
        out.write(output_);
        output_.clear();
    }

    void arm(SessionOutput& out, SmtpTimeoutKind kind) {
        const config::SmtpTimeouts& t = factory_.timeouts();
        data_since_arm_ = 0;
        switch (kind) {
            case SmtpTimeoutKind::command: out.set_timeout_ms(t.idle_ms); break;
            case SmtpTimeoutKind::data: out.set_timeout_ms(t.data_block_ms); break;
            case SmtpTimeoutKind::none: out.set_timeout_ms(t.data_end_ms); break;
        }
    }

    void hand_over_body() {
        const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(job_->body.data()),
                                               job_->body.size());
        Status s = factory_.mail().store().body_append_copy(job_->writer, bytes);
        if (s != Status::ok) job_->failed = s;
        factory_.body_stats().copied_bytes += bytes.size();
        job_->body.clear();
    }

    // Writes the pieces collected from the current receive buffer, zero copy: the log
    // writes them from the buffer, which the hold returns to its ring afterwards.
    void append_pending() {
        if (pending_.empty()) return;
        RP_ASSERT(hold_ != nullptr);
        RP_ASSERT(job_ != nullptr);
        if (job_->failed == Status::ok) {
            std::uint64_t bytes = 0;
            for (const iovec& v : pending_) bytes += v.iov_len;
            ++hold_->references;  // The log's, released after the write.
            const Status s = factory_.mail().store().body_append(
                job_->writer, pending_.data(), static_cast<unsigned>(pending_.size()), *hold_);
            if (s == Status::ok) {
                factory_.body_stats().zero_copy_bytes += bytes;
            } else {
                --hold_->references;  // Nothing kept: the release will not run.
                job_->failed = s;
            }
        }
        pending_.clear();
    }

    SmtpFactory& factory_;
    std::optional<SmtpServer> server_;
    SessionHandle handle_;
    std::string client_address_;
    std::string output_;
    MessageJob* job_ = nullptr;
    // Zero-copy DATA, valid during on_bytes only: the input, the buffer holding it, the hold
    // that borrowed that buffer, and the body pieces in it not yet handed to the store.
    std::span<const std::byte> input_;
    BufferRef* source_ = nullptr;
    BufferHold* hold_ = nullptr;
    BufferHold* hold_unused_ = nullptr;  // See on_bytes.
    std::vector<iovec> pending_;
    std::uint64_t data_since_arm_ = 0;
    bool trusted_ = false;
    bool output_paused_ = false;
    std::uint64_t throttle_key_ = 0;
    std::uint64_t auth_ticket_ = 0;      // A password check in flight.
    std::string auth_user_;              // The user of the AUTH in flight (for the log).
    bool auth_delayed_ = false;          // A failed AUTH waits for its delay.
    SmtpAuthOutcome auth_outcome_ = SmtpAuthOutcome::bad;
};

void MessageJob::durable(Status status) {
    if (session != nullptr) session->committed(*this, status);
    delete this;
}

}  // namespace

SmtpFactory::SmtpFactory(mail::ShardMail& mail, SessionDriver& driver,
                         const config::Settings& settings, std::string kind)
    : mail_(mail),
      shard_index_(mail.shard_index()),
      driver_(driver),
      timeouts_(settings.smtp.timeouts),
      kind_(std::move(kind)) {
    server_config_.hostname = settings.server.hostname;
    server_config_.message_bytes_max = settings.smtp.message_bytes_max;
    server_config_.recipients_max = settings.smtp.recipients_max;
    server_config_.line_bytes_max =
        std::clamp<std::uint32_t>(settings.smtp.line_bytes_max, 512, limits::smtp_line_bytes_max);
    // Submission (RFC 6409): every message is from an authenticated user.
    if (kind_ == "submission" || kind_ == "smtps") {
        server_config_.auth_required = true;
        server_config_.sender_login_match = settings.auth.sender_login_match;
    }
    busy_reply_ = "421 4.3.2 " + settings.server.hostname + " Service not available, too busy\r\n";
    per_ip_reply_ = "421 4.7.0 " + settings.server.hostname +
                    " Error: too many connections from your address\r\n";
}

SmtpFactory::~SmtpFactory() {
    if (body_stats_.buffers_held == 0 && body_stats_.copied_bytes == 0) return;
    log::info("shard {}: {}: body bytes zero-copy {} from {} receive buffers, copied {}",
              shard_index_, kind_, body_stats_.zero_copy_bytes, body_stats_.buffers_held,
              body_stats_.copied_bytes);
}

std::size_t SmtpFactory::session_bytes() const { return sizeof(SmtpSession); }
std::size_t SmtpFactory::session_align() const { return alignof(SmtpSession); }
ProtocolSession* SmtpFactory::create(void* storage) { return new (storage) SmtpSession(*this); }

std::uint64_t SmtpFactory::auth_ticket_add(void* session) {
    RP_ASSERT(session != nullptr);
    const std::uint64_t ticket = auth_next_ticket_++;
    auth_pending_.emplace(ticket, session);
    return ticket;
}

void* SmtpFactory::auth_ticket_take(std::uint64_t ticket) {
    auto it = auth_pending_.find(ticket);
    if (it == auth_pending_.end()) return nullptr;
    void* session = it->second;
    auth_pending_.erase(it);
    return session;
}

void SmtpFactory::auth_ticket_drop(std::uint64_t ticket) { auth_pending_.erase(ticket); }

}  // namespace rp::smtp
