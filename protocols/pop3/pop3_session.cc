// protocols/pop3/pop3_session.cc: see pop3_session.h.
#include "protocols/pop3/pop3_session.h"

#include <algorithm>
#include <optional>
#include <vector>

#include "core/limits.h"
#include "core/log.h"
#include "protocols/smtp/routing.h"

namespace rp::pop3 {
namespace {

constexpr std::size_t retr_slice_bytes = 16384;  // Body bytes handed to the server per step.
constexpr std::uint64_t tag_login = 1;
constexpr std::uint64_t tag_body = 2;
constexpr std::uint64_t tag_update = 3;

class Pop3Session final : public ProtocolSession,
                          public Pop3Host,
                          public mail::AccessHandler,
                          public PasswordCheckDone,
                          public mail::BodyReaderDone,
                          public mail::BodySpliceDone {
public:
    explicit Pop3Session(Pop3Factory& factory) : factory_(factory), splicer_(*this) {}
    ~Pop3Session() override {
        RP_ASSERT(reader_ == nullptr);
        RP_ASSERT(!splicer_.active());  // file_sent() runs before on_close().
    }

    // ---- ProtocolSession ----
    void on_open(const SessionInfo& info, SessionOutput& out) override {
        handle_ = info.handle;
        client_address_ = std::string(info.peer_text);
        throttle_key_ = auth::AuthThrottle::key_of(info.peer);
        Pop3SessionInfo session;
        session.tls_active = info.tls_active;
        session.tls_available = info.tls_available && !info.tls_active;
        session.auth_allowed = factory_.passwords().plaintext_allowed(info.peer);
        server_.emplace(factory_.server_config(), *this, session);
        client_.emplace(factory_.access(), *this);
        server_->greet();
        flush(out);
        out.set_timeout_ms(factory_.idle_timeout_ms());
    }

    std::size_t on_bytes(std::span<const std::byte> bytes, BufferRef* /*source*/,
                         SessionOutput& out) override {
        return run(bytes, out);
    }

    void on_timeout(SessionOutput& out) override {
        log::info("shard {}: pop3 {} {}: idle timeout", factory_.access().shard_index(),
                  client_address_, account_);
        server_->on_timeout();
        out.close_after_flush();
    }

    void on_drain(SessionOutput& out) override {
        server_->begin_shutdown();
        flush(out);
        if (server_->wants_close()) out.close_after_flush();
    }

    void on_output_drained(SessionOutput& out) override {
        out.set_timeout_ms(factory_.idle_timeout_ms());  // The client is reading: progress.
        if (streaming_) {
            stream(out);
            return;
        }
        if (!output_paused_) return;
        output_paused_ = false;
        (void)run({}, out);  // Continues a listing.
        if (!output_paused_ && !server_->paused() && !server_->wants_close()) out.resume_reading();
    }

    void on_tls_started(SessionOutput& out) override {
        tls_starting_ = false;
        server_->tls_started();
        out.set_timeout_ms(factory_.idle_timeout_ms());
        out.resume_reading();
    }

    void on_close(Status /*reason*/) override {
        if (server_) server_->connection_lost();
        if (checking_) factory_.passwords().cancel(*this);
        checking_ = false;
        if (reader_ != nullptr) reader_->cancel();
        reader_ = nullptr;
        client_.reset();  // Releases the maildrop lock on its owner.
        server_.reset();
    }

    // ---- Pop3Host ----
    void login(std::string_view user, std::string_view password) override {
        // Unknown users go through the checker too: the same delay, the same answer.
        const smtp::Account* account = factory_.access().mail().directory().find_account(user);
        account_ = account != nullptr ? account->address : smtp::ascii_lower(user);
        checking_ = true;
        mail::LoginAttempt attempt;
        attempt.user = user;
        attempt.password = password;
        attempt.account = account;
        attempt.client_key = throttle_key_;
        factory_.passwords().check(attempt, *this);
    }

    void message_read(std::uint32_t index) override {
        RP_ASSERT(index < messages_.size());
        mail::AccessRequest request;
        request.op = mail::AccessOp::body_open;
        request.body = messages_[index].body;
        Status s = client_->submit(std::move(request), tag_body);
        if (s != Status::ok) server_->message_end(s);
    }

    // QUIT: the deletions (if any) and the maildrop's unlock, both done on the owner before
    // the +OK, so that a client logging in again right after it is not told [IN-USE].
    void update(std::span<const std::uint32_t> uids) override {
        Status s = client_->release(mailbox_id_, account_, "INBOX",
                                    std::vector<std::uint32_t>(uids.begin(), uids.end()),
                                    tag_update);
        // With nothing to delete a failure to send is no failure of the QUIT: the lock goes
        // with the session (asynchronously).
        if (s != Status::ok) server_->update_done(uids.empty() ? Status::ok : s);
    }

    // ---- PasswordCheckDone ----
    void password_checked(Status status) override {
        RP_ASSERT(checking_);
        checking_ = false;
        if (status != Status::ok) {
            log::info("shard {}: pop3 {}: login failed for {}: {}", shard(), client_address_,
                      account_, status_name(status));
            server_->login_done(status, nullptr);
            after_host();
            return;
        }
        mail::AccessRequest request;
        request.op = mail::AccessOp::open;
        request.account = account_;
        request.mailbox = "INBOX";
        request.exclusive = true;  // RFC 1939 8: one session per maildrop.
        Status s = client_->submit(std::move(request), tag_login);
        if (s != Status::ok) {
            server_->login_done(s, nullptr);
            after_host();
        }
    }

    // ---- AccessHandler ----
    void access_done(std::uint64_t tag, mail::AccessOp /*op*/, mail::AccessReply& reply) override {
        if (tag == tag_login) {
            opened(reply);
        } else if (tag == tag_body) {
            body_opened(reply);
        } else {
            RP_ASSERT(tag == tag_update);
            if (reply.status == Status::ok && server_->deleted_count() == 0) {
                // Nothing deleted: only the maildrop was released.
            } else if (reply.status == Status::ok) {
                log::info("shard {}: pop3 {} {}: {} messages deleted", shard(), client_address_,
                          account_, server_->deleted_count());
            } else {
                log::error("shard {}: pop3 {}: expunge failed: {}", shard(), account_,
                           status_name(reply.status));
            }
            server_->update_done(reply.status);
            after_host();
        }
    }

    // ---- BodyReaderDone ----
    void body_piece(Status status, std::span<const std::byte> bytes, bool last) override {
        if (status != Status::ok) {
            log::error("shard {}: pop3 {}: message unreadable: {}", shard(), account_,
                       status_name(status));
            end_message(status);
            return;
        }
        factory_.access().stats().bytes_copied += bytes.size();
        piece_ = bytes;
        piece_last_ = last;
        streaming_ = true;
        SessionOutput* out = output();
        stream(*out);
    }

private:
    unsigned shard() const { return factory_.access().shard_index(); }

    SessionOutput* output() {
        SessionOutput* out = factory_.driver().find(handle_);
        RP_ASSERT(out != nullptr);  // Async answers stop when the session closes.
        return out;
    }

    void opened(mail::AccessReply& reply) {
        if (reply.status != Status::ok) {
            log::info("shard {}: pop3 {}: {} not opened: {}", shard(), client_address_, account_,
                      status_name(reply.status));
            server_->login_done(reply.status, nullptr);
            after_host();
            return;
        }
        mailbox_id_ = reply.snapshot.mailbox_id;
        messages_ = std::move(reply.snapshot.messages);
        Pop3Maildrop maildrop;
        maildrop.uidvalidity = reply.snapshot.uidvalidity;
        maildrop.messages.reserve(messages_.size());
        for (const mail::MessageEntry& m : messages_) maildrop.messages.push_back({m.uid, m.size});
        log::info("shard {}: pop3 {}: {} logged in, {} messages", shard(), client_address_,
                  account_, messages_.size());
        server_->login_done(Status::ok, &maildrop);
        after_host();
    }

    void body_opened(mail::AccessReply& reply) {
        if (reply.status != Status::ok) {
            end_message(reply.status);
            return;
        }
        if (reply.body.pieces.empty()) {
            end_message(Status::ok);  // An empty message.
            return;
        }
        if (splice_start(reply.body)) return;
        ++factory_.access().stats().bodies_copied;
        reader_ = mail::BodyReader::start(factory_.access().mail().shard().io(),
                                          std::move(reply.body), *this);
    }

    // RETR of a body that needs no dot-stuffing (the store noted it at delivery) on a
    // plaintext connection: "+OK", the stored bytes spliced from the segment, ".". False when
    // the bytes must be copied (TOP, dot lines, TLS, no pipe free).
    bool splice_start(storage::BodyHandle& body) {
        if (server_->sending_top() || (body.traits & storage::body_dot_free) == 0) return false;
        if (body.bytes < factory_.splice_bytes_min()) return false;  // Copying costs less.
        SessionOutput* out = output();
        if (out->tls_active()) return false;
        // The status line goes first; if the splice is refused the copy path goes on after it
        // (a dot-free body comes out of the dot-stuffing unchanged).
        (void)server_->message_data({});
        flush(*out);
        return splicer_.start(*out, body, 0, body.bytes, factory_.access().stats());
    }

    // ---- BodySpliceDone ----
    void splice_done(Status status) override {
        if (status == Status::ok) {
            end_message(Status::ok);  // Adds the final ".".
            return;
        }
        if (status == Status::again) {
            // A later extent was refused: copy the rest (it starts at a line boundary or
            // not; no line of this body starts with "." either way).
            std::uint64_t position = 0;
            std::uint64_t offset = 0;
            std::uint64_t bytes = 0;
            storage::BodyHandle rest = splicer_.rest(position, offset, bytes);
            ++factory_.access().stats().bodies_copied;
            reader_ = mail::BodyReader::start(factory_.access().mail().shard().io(),
                                              std::move(rest), *this);
            return;
        }
        // The session is closing: on_close() follows.
    }

    // Hands the current piece to the server in slices while the send queue has room.
    void stream(SessionOutput& out) {
        RP_ASSERT(streaming_);
        while (!piece_.empty()) {
            if (out.output_queued_bytes() >= limits::session_output_high_bytes) return;
            const std::size_t n = std::min(piece_.size(), retr_slice_bytes);
            const bool more = server_->message_data(piece_.first(n));
            piece_ = piece_.subspan(n);
            flush(out);
            if (!more) {
                end_message(Status::ok);  // TOP has its lines.
                return;
            }
        }
        if (piece_last_) {
            end_message(Status::ok);
            return;
        }
        streaming_ = false;
        reader_->next();
    }

    void end_message(Status status) {
        streaming_ = false;
        piece_ = {};
        if (reader_ != nullptr) reader_->cancel();
        reader_ = nullptr;
        server_->message_end(status);
        after_host();
    }

    // After an asynchronous answer: send, then go on reading (the driver feeds held input).
    void after_host() {
        SessionOutput* out = output();
        flush(*out);
        if (server_->wants_close()) {
            out->close_after_flush();
            return;
        }
        out->set_timeout_ms(factory_.idle_timeout_ms());
        if (!server_->paused() && !output_paused_) out->resume_reading();
    }

    std::size_t run(std::span<const std::byte> bytes, SessionOutput& out) {
        std::size_t consumed = 0;
        for (;;) {
            consumed += server_->feed(bytes.subspan(consumed));
            const bool answered = server_->has_output();
            flush(out);
            if (server_->wants_close()) {
                out.close_after_flush();
                return bytes.size();
            }
            if (server_->waiting_for_tls()) {
                // RFC 2595 4: whatever followed STLS in this input is dropped here, and the
                // driver drops what it holds once the +OK is queued.
                if (!tls_starting_) tls_starting_ = out.start_tls();
                if (!tls_starting_) out.close_after_flush();
                return bytes.size();
            }
            if (answered) out.set_timeout_ms(factory_.idle_timeout_ms());
            if (server_->paused()) {
                out.pause_reading();
                return consumed;
            }
            if (out.output_queued_bytes() >= limits::session_output_high_bytes) {
                output_paused_ = true;
                out.pause_reading();
                return consumed;
            }
            if (consumed == bytes.size() && !server_->listing()) return consumed;
        }
    }

    void flush(SessionOutput& out) {
        if (!server_->has_output()) return;
        server_->take_output(output_);
        out.write(output_);
        output_.clear();
    }

    Pop3Factory& factory_;
    std::optional<Pop3Server> server_;
    std::optional<mail::AccessClient> client_;
    SessionHandle handle_;
    std::string client_address_;
    std::string account_;
    std::string output_;
    std::uint64_t mailbox_id_ = 0;
    std::vector<mail::MessageEntry> messages_;
    mail::BodyReader* reader_ = nullptr;
    mail::BodySplicer splicer_;
    std::span<const std::byte> piece_;
    bool piece_last_ = false;
    bool streaming_ = false;
    bool checking_ = false;
    bool output_paused_ = false;
    bool tls_starting_ = false;
    std::uint64_t throttle_key_ = 0;
};

}  // namespace

Pop3Factory::Pop3Factory(mail::MailAccess& access, SessionDriver& driver,
                         const config::Settings& settings, std::string kind,
                         PasswordChecker* passwords)
    : access_(access),
      driver_(driver),
      passwords_(passwords),
      idle_timeout_ms_(settings.pop3.idle_timeout_ms),
      splice_bytes_min_(settings.pop3.splice_bytes_min),
      kind_(std::move(kind)) {
    if (passwords_ == nullptr) {
        plaintext_ = std::make_unique<PlaintextPasswords>(access.mail().shard().reactor());
        passwords_ = plaintext_.get();
    }
    server_config_.hostname = settings.server.hostname;
    busy_reply_ = "-ERR [SYS/TEMP] " + settings.server.hostname + " too busy, try again later\r\n";
    per_ip_reply_ = "-ERR [SYS/TEMP] Too many connections from your address\r\n";
}

std::size_t Pop3Factory::session_bytes() const { return sizeof(Pop3Session); }
std::size_t Pop3Factory::session_align() const { return alignof(Pop3Session); }
ProtocolSession* Pop3Factory::create(void* storage) { return new (storage) Pop3Session(*this); }

}  // namespace rp::pop3
