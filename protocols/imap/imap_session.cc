// protocols/imap/imap_session.cc: see imap_session.h.
#include "protocols/imap/imap_session.h"

#include <arpa/inet.h>

#include <algorithm>
#include <optional>
#include <unordered_map>
#include <vector>

#include "core/limits.h"
#include "core/log.h"

namespace rp::imap {
namespace {

constexpr std::size_t stream_slice_bytes = 16384;  // Literal bytes written per step.
constexpr std::uint64_t tag_list = 1;
constexpr std::uint64_t tag_status = 2;
constexpr std::uint64_t tag_mailbox_op = 3;
constexpr std::uint64_t tag_select = 4;
constexpr std::uint64_t tag_load = 5;
constexpr std::uint64_t tag_stream = 6;
constexpr std::uint64_t tag_store = 7;
constexpr std::uint64_t tag_copy = 8;
constexpr std::uint64_t tag_expunge_read = 9;
constexpr std::uint64_t tag_expunge = 10;
constexpr std::uint64_t tag_append_check = 11;
constexpr std::uint64_t tag_append = 12;


storage::FlagMode flag_mode(StoreMode mode) {
    switch (mode) {
        case StoreMode::add: return storage::FlagMode::add;
        case StoreMode::remove: return storage::FlagMode::remove;
        case StoreMode::replace: break;
    }
    return storage::FlagMode::replace;
}

mail::MessageEntry* entry_find(std::vector<mail::MessageEntry>& list, std::uint32_t uid) {
    auto it = std::lower_bound(list.begin(), list.end(), uid,
                               [](const mail::MessageEntry& m, std::uint32_t u) { return m.uid < u; });
    return it != list.end() && it->uid == uid ? &*it : nullptr;
}

class ImapSession;

// Routes the pieces of one of the session's two BodyReaders back to it.
class ReaderSink final : public mail::BodyReaderDone {
public:
    ReaderSink(ImapSession& session, bool stream) : session_(session), stream_(stream) {}
    void body_piece(Status status, std::span<const std::byte> bytes, bool last) override;

private:
    ImapSession& session_;
    bool stream_;
};

class ImapSession final : public ProtocolSession,
                          public ImapHost,
                          public mail::AccessHandler,
                          public pop3::PasswordCheckDone,
                          public mail::BodySpliceDone {
public:
    explicit ImapSession(ImapFactory& factory)
        : factory_(factory), load_sink_(*this, false), stream_sink_(*this, true), splicer_(*this) {}
    ~ImapSession() override {
        RP_ASSERT(load_reader_ == nullptr);
        RP_ASSERT(stream_reader_ == nullptr);
        RP_ASSERT(!splicer_.active());  // file_sent() runs before on_close().
    }

    // ---- ProtocolSession ----
    void on_open(const SessionInfo& info, SessionOutput& out) override {
        handle_ = info.handle;
        client_address_ = std::string(info.peer_text);
        ImapSessionInfo session;
        session.tls_active = info.tls_active;
        session.tls_available = info.tls_available && !info.tls_active;
        session.plaintext_auth_allowed = factory_.passwords().plaintext_allowed(info.peer);
        client_key_ = auth::AuthThrottle::key_of(info.peer);
        server_.emplace(factory_.server_config(), *this, session);
        client_.emplace(factory_.access(), *this);
        server_->greet();
        pump(out);
        arm(out);
    }

    std::size_t on_bytes(std::span<const std::byte> bytes, BufferRef* /*source*/,
                         SessionOutput& out) override {
        return run(bytes, out);
    }

    void on_timeout(SessionOutput& out) override {
        if (server_->host_busy() && !streaming_) {
            arm(out);  // Waiting on the store, not on the client.
            return;
        }
        log::info("shard {}: imap {} {}: idle timeout", shard(), client_address_, account_);
        server_->on_timeout();
        pump(out);
        out.close_after_flush();
    }

    void on_drain(SessionOutput& out) override {
        server_->begin_shutdown();
        pump(out);
        if (server_->wants_close()) out.close_after_flush();
    }

    void on_output_drained(SessionOutput& out) override {
        arm(out);  // The client is reading: progress.
        if (splicer_.active()) return;  // The literal is on its way; splice_done() goes on.
        if (streaming_) {
            stream_write(out);
            if (streaming_) return;
        }
        settle(out);
    }

    void on_tls_started(SessionOutput& out) override {
        tls_starting_ = false;
        server_->tls_started();
        pump(out);
        arm(out);
    }

    void on_close(Status /*reason*/) override {
        if (server_) server_->connection_lost();
        if (checking_) factory_.passwords().cancel(*this);
        checking_ = false;
        if (load_reader_ != nullptr) load_reader_->cancel();
        load_reader_ = nullptr;
        if (stream_reader_ != nullptr) stream_reader_->cancel();
        stream_reader_ = nullptr;
        client_.reset();  // Drops replies in flight; releases the watches.
        server_.reset();
    }

    // ---- ImapHost ----
    void login(std::string_view user, std::string_view password) override {
        // An unknown user goes through the checker too (a dummy hash, the throttle), so it
        // is refused exactly like a wrong password.
        const smtp::Account* account = factory_.access().mail().directory().find_account(user);
        account_ = account != nullptr ? account->address : std::string(user);
        checking_ = true;
        factory_.passwords().check(mail::LoginAttempt{user, password, account, client_key_},
                                   *this);
    }

    void list(bool with_status) override {
        mail::AccessRequest request;
        request.op = mail::AccessOp::list;
        request.account = account_;
        request.counts = with_status;
        if (Status s = client_->submit(std::move(request), tag_list); s != Status::ok) {
            server_->list_done(s, {});
        }
    }

    void status(std::string_view mailbox) override {
        mail::AccessRequest request;
        request.op = mail::AccessOp::status;
        request.account = account_;
        request.mailbox = std::string(mailbox);
        request.counts = true;
        if (Status s = client_->submit(std::move(request), tag_status); s != Status::ok) {
            server_->status_done(s, {});
        }
    }

    void mailbox_op(MailboxOp op, std::string_view name, std::string_view new_name) override {
        mail::AccessRequest request;
        request.account = account_;
        request.mailbox = std::string(name);
        switch (op) {
            case MailboxOp::create: request.op = mail::AccessOp::create; break;
            case MailboxOp::delete_: request.op = mail::AccessOp::remove; break;
            case MailboxOp::rename:
                request.op = mail::AccessOp::rename;
                request.target = std::string(new_name);
                break;
            case MailboxOp::subscribe: request.op = mail::AccessOp::subscribe; break;
            case MailboxOp::unsubscribe: request.op = mail::AccessOp::unsubscribe; break;
        }
        if (Status s = client_->submit(std::move(request), tag_mailbox_op); s != Status::ok) {
            server_->mailbox_op_done(s);
        }
    }

    void select(std::string_view mailbox, bool read_only) override {
        mailbox_close();  // The server closes the previous one first; be sure of it.
        select_read_only_ = read_only;
        select_name_ = std::string(mailbox);
        // The selected mailbox is always watched, and only while it is selected.
        if (Status s = submit_open(mailbox, true, tag_select); s != Status::ok) {
            server_->select_done(s, {});
        }
    }

    // Drops the view and its watch; memory goes back to what an idle session needs.
    void mailbox_close() override {
        if (selected_id_ != 0 && client_) client_->unwatch(selected_id_);
        selected_id_ = 0;
        std::vector<mail::MessageEntry>().swap(messages_);
        std::string().swap(selected_name_);
        drop_cache();
    }

    void fetch(const ImapFetchRequest& request) override {
        fetch_uids_.assign(request.uids.begin(), request.uids.end());
        fetch_index_ = 0;
        fetch_needs_ = request.needs;
        fetch_next();
    }

    void store(std::span<const std::uint32_t> uids, StoreMode mode, std::uint32_t flags,
               std::span<const std::string> keywords) override {
        mail::AccessRequest request;
        request.op = mail::AccessOp::flags_set;
        request.account = account_;
        request.mailbox = selected_name_;
        request.uids.assign(uids.begin(), uids.end());
        request.mode = flag_mode(mode);
        request.flags = flags & flag_bits_all;
        request.keywords.assign(keywords.begin(), keywords.end());
        if (Status s = client_->submit(std::move(request), tag_store); s != Status::ok) {
            server_->store_done(s, {});
        }
    }

    void copy(std::span<const std::uint32_t> uids, std::string_view mailbox, bool move) override {
        mail::AccessRequest request;
        request.op = move ? mail::AccessOp::move : mail::AccessOp::copy;
        request.account = account_;
        request.mailbox = selected_name_;
        request.target = std::string(mailbox);
        request.uids.assign(uids.begin(), uids.end());
        if (Status s = client_->submit(std::move(request), tag_copy); s != Status::ok) {
            server_->copy_done(s, 0, {});
        }
    }

    // The flags we hold may be stale (another session's STORE): read them fresh first.
    void expunge(std::span<const std::uint32_t> uids) override {
        expunge_filter_.assign(uids.begin(), uids.end());
        if (Status s = submit_open(selected_name_, false, tag_expunge_read); s != Status::ok) {
            server_->expunge_done(s, {});
        }
    }

    void append_begin(const ImapAppendRequest& request) override {
        append_mailbox_ = std::string(request.mailbox);
        append_flags_ = request.flags & flag_bits_all;
        append_keywords_.assign(request.keywords.begin(), request.keywords.end());
        append_date_ = request.internal_date;
        append_bytes_.clear();
        if (request.bytes > factory_.server_config().append_bytes_max) {
            server_->append_ready(Status::too_big);
            return;
        }
        append_bytes_.reserve(request.bytes);
        mail::AccessRequest check;
        check.op = mail::AccessOp::status;
        check.account = account_;
        check.mailbox = append_mailbox_;
        if (Status s = client_->submit(std::move(check), tag_append_check); s != Status::ok) {
            server_->append_ready(s);
        }
    }

    void append_data(std::span<const std::byte> bytes) override {
        // bounds: the server stops the literal at the size append_begin() accepted.
        append_bytes_.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    }

    void append_end() override {
        mail::AccessRequest request;
        request.op = mail::AccessOp::append;
        request.account = account_;
        request.mailbox = append_mailbox_;
        request.flags = append_flags_;
        request.keywords = std::move(append_keywords_);
        append_keywords_.clear();
        request.internal_date = append_date_;
        request.bytes = std::move(append_bytes_);
        append_bytes_.clear();
        if (Status s = client_->submit(std::move(request), tag_append); s != Status::ok) {
            server_->append_done(s, 0, 0);
        }
    }

    void append_abort() override {
        std::string().swap(append_bytes_);
        append_keywords_.clear();
    }

    // ---- PasswordCheckDone ----
    void password_checked(Status status) override {
        RP_ASSERT(checking_);
        checking_ = false;
        if (status != Status::ok) {
            log::info("shard {}: imap {}: login failed for {} ({})", shard(), client_address_,
                      account_, status_name(status));
            // permission (this address is over its failure limit) is refused like a wrong
            // password; full (the hash pool is busy) answers [UNAVAILABLE], try later.
            server_->login_done(status == Status::full ? Status::full : Status::refused);
        } else {
            log::info("shard {}: imap {}: {} logged in", shard(), client_address_, account_);
            server_->login_done(Status::ok);
        }
        after_host();
    }

    // ---- AccessHandler ----
    void access_done(std::uint64_t tag, mail::AccessOp /*op*/, mail::AccessReply& reply) override {
        switch (tag) {
            case tag_list: listed(reply); break;
            case tag_status: status_read(reply); break;
            case tag_mailbox_op: server_->mailbox_op_done(reply.status); break;
            case tag_select: selected(reply); break;
            case tag_load: load_opened(reply); break;
            case tag_stream: stream_opened(reply); break;
            case tag_store: stored(reply); break;
            case tag_copy:
                server_->copy_done(reply.status, reply.uidvalidity, reply.uid_map);
                break;
            case tag_expunge_read: expunge_read(reply); break;
            case tag_expunge: expunged(reply); break;
            case tag_append_check: server_->append_ready(reply.status); break;
            case tag_append:
                server_->append_done(reply.status, reply.uidvalidity, reply.uid);
                break;
            default:
                RP_ASSERT(false);  // Every tag we submit is listed above.
                break;
        }
        after_host();
    }

    // Events carry the change itself: the view follows without reading the mailbox again.
    // Echoes of what this session already knows are harmless (see ImapHost::select).
    void mailbox_changed(const mail::MailboxEvent& event) override {
        if (!server_ || selected_id_ == 0 || event.mailbox_id != selected_id_) return;
        keywords_learn(event.keyword_names);
        switch (event.kind) {
            case mail::MailboxEvent::Kind::expunge:
                for (std::uint32_t uid : event.uids) {
                    server_->mailbox_expunged(uid);
                    auto it = std::lower_bound(
                        messages_.begin(), messages_.end(), uid,
                        [](const mail::MessageEntry& m, std::uint32_t u) { return m.uid < u; });
                    if (it != messages_.end() && it->uid == uid) messages_.erase(it);
                }
                break;
            case mail::MailboxEvent::Kind::exists:
                for (const mail::MessageEntry& m : event.messages) {
                    if (m.uid <= uid_high_) continue;  // Known already.
                    messages_.push_back(m);  // bounds: the mailbox's size.
                    uid_high_ = m.uid;
                    server_->mailbox_exists(m.uid);
                }
                break;
            case mail::MailboxEvent::Kind::flags:
                for (const mail::MessageEntry& m : event.messages) {
                    mail::MessageEntry* entry = entry_find(messages_, m.uid);
                    if (entry == nullptr) continue;  // Expunged meanwhile.
                    entry->flags = m.flags;
                    entry->keywords = m.keywords;
                    entry->modseq = m.modseq;
                    keyword_views(m.keywords, views_);
                    server_->mailbox_flags({m.uid, m.flags & flag_bits_all, views_, m.modseq});
                }
                break;
        }
        after_host();
    }

    // ---- the two body readers ----
    void reader_piece(bool stream, Status status, std::span<const std::byte> bytes, bool last) {
        if (stream) {
            stream_piece(status, bytes, last);
        } else {
            load_piece(status, bytes, last);
        }
    }

private:
    unsigned shard() const { return factory_.access().shard_index(); }

    SessionOutput* output() {
        SessionOutput* out = factory_.driver().find(handle_);
        RP_ASSERT(out != nullptr);  // Async answers stop when the session closes.
        return out;
    }

    Status submit_open(std::string_view mailbox, bool watch, std::uint64_t tag) {
        mail::AccessRequest request;
        request.op = mail::AccessOp::open;
        request.account = account_;
        request.mailbox = std::string(mailbox);
        request.watch = watch;
        return client_->submit(std::move(request), tag);
    }

    // RFC 3501 5.1: INBOX is case-insensitive; the store keeps it as "INBOX".
    static bool subscribed(const std::vector<std::string>& names, std::string_view name) {
        return std::binary_search(names.begin(), names.end(), name,
                                  [](std::string_view a, std::string_view b) { return a < b; });
    }

    static ImapMailboxStatus status_of(const storage::MailboxInfo& info,
                                       const mail::MailboxCounts& counts) {
        ImapMailboxStatus s;
        s.messages = info.message_count;
        s.uidnext = info.uidnext;
        s.uidvalidity = info.uidvalidity;
        s.highest_modseq = info.highest_modseq;
        s.unseen = counts.unseen;
        s.deleted = counts.deleted;
        s.size = counts.size;
        return s;
    }

    void listed(mail::AccessReply& reply) {
        std::vector<ImapMailboxEntry> entries;
        entries.reserve(reply.mailboxes.size());
        for (std::size_t i = 0; i < reply.mailboxes.size(); ++i) {
            const storage::MailboxInfo& info = reply.mailboxes[i];
            ImapMailboxEntry e;
            e.name = info.name;
            e.special_use = info.special_use;
            e.subscribed = subscribed(reply.subscriptions, info.name);
            e.status = status_of(info, i < reply.mailbox_counts.size() ? reply.mailbox_counts[i]
                                                                       : mail::MailboxCounts{});
            entries.push_back(e);
        }
        server_->list_done(reply.status, entries);
    }

    void status_read(mail::AccessReply& reply) {
        Status status = reply.status;
        if (status == Status::ok && reply.info.quarantined) status = Status::quarantined;
        server_->status_done(status, status == Status::ok ? status_of(reply.info, reply.counts)
                                                          : ImapMailboxStatus{});
    }

    // Keyword names of the account: indexes only ever grow, so the longest list is newest.
    void keywords_learn(const std::vector<std::string>& names) {
        if (names.size() > keyword_names_.size()) keyword_names_ = names;
    }

    // Appends the names of the keywords set in `keywords` to `out` (cleared first).
    void keyword_views(const storage::Keywords& keywords, std::vector<std::string_view>& out) const {
        out.clear();
        for (std::size_t word = 0; word < keywords.size(); ++word) {
            std::uint64_t bits = keywords[word];
            while (bits != 0) {
                const auto bit = static_cast<std::size_t>(__builtin_ctzll(bits));
                bits &= bits - 1;
                const std::size_t index = word * 64 + bit;  // bounds: < keywords_per_account_max.
                if (index < keyword_names_.size()) out.push_back(keyword_names_[index]);
            }
        }
    }

    void drop_cache() {
        cache_valid_ = false;
        std::string().swap(cache_bytes_);
        cache_mime_ = MimeMessage{};
    }

    void selected(mail::AccessReply& reply) {
        if (reply.status != Status::ok) {
            server_->select_done(reply.status, {});
            return;
        }
        mail::MailboxSnapshot& snap = reply.snapshot;
        selected_id_ = snap.mailbox_id;
        selected_name_ = std::move(select_name_);
        std::string().swap(select_name_);
        messages_ = std::move(snap.messages);
        keywords_learn(snap.keyword_names);
        std::vector<std::string_view> keywords(keyword_names_.begin(), keyword_names_.end());
        std::vector<std::uint32_t> uids;
        uids.reserve(messages_.size());
        ImapSelectInfo info;
        for (const mail::MessageEntry& m : messages_) {
            uids.push_back(m.uid);
            if (info.first_unseen_uid == 0 && (m.flags & flag_seen) == 0) {
                info.first_unseen_uid = m.uid;
            }
        }
        uid_high_ = uids.empty() ? 0 : uids.back();
        info.uidvalidity = snap.uidvalidity;
        info.uidnext = snap.uidnext;
        info.highest_modseq = snap.highest_modseq;
        info.uids = uids;
        info.keywords = keywords;
        info.read_only = select_read_only_;
        server_->select_done(Status::ok, info);
    }

    // ---- FETCH ----

    // Answers the request's messages in order; loads a body when the request needs its bytes
    // or MIME structure and it is not the cached one.
    void fetch_next() {
        while (fetch_index_ < fetch_uids_.size()) {
            const mail::MessageEntry* entry = entry_find(messages_, fetch_uids_[fetch_index_]);
            if (entry == nullptr) {
                ++fetch_index_;  // Expunged meanwhile: skipped.
                continue;
            }
            if (fetch_needs_ != 0 && !(cache_valid_ && cache_uid_ == entry->uid &&
                                       cache_mailbox_ == selected_id_)) {
                load_start(*entry);
                return;
            }
            emit(*entry);
            ++fetch_index_;
        }
        server_->fetch_done(Status::ok);
    }

    void emit(const mail::MessageEntry& entry) {
        ImapMessageData data;
        data.uid = entry.uid;
        data.flags = entry.flags & flag_bits_all;
        data.internal_date = entry.internal_date;
        data.size = entry.size;
        data.modseq = entry.modseq;
        data.body_token = entry.uid;
        keyword_views(entry.keywords, views_);
        data.keywords = views_;
        if (fetch_needs_ != 0) {
            data.size = cache_bytes_.size();
            data.mime = &cache_mime_;
            data.bytes = std::as_bytes(std::span<const char>(cache_bytes_));
        }
        stream_bodies_[entry.uid] = {entry.body, data.size};
        server_->fetch_message(data);
    }

    void load_start(const mail::MessageEntry& entry) {
        cache_valid_ = false;
        cache_bytes_.clear();
        cache_uid_ = entry.uid;
        cache_mailbox_ = selected_id_;
        if (entry.size > factory_.server_config().append_bytes_max) {
            server_->fetch_done(Status::too_big);
            return;
        }
        mail::AccessRequest request;
        request.op = mail::AccessOp::body_open;
        request.body = entry.body;
        if (Status s = client_->submit(std::move(request), tag_load); s != Status::ok) {
            server_->fetch_done(s);
        }
    }

    void load_opened(mail::AccessReply& reply) {
        if (reply.status != Status::ok) {
            server_->fetch_done(reply.status);
            return;
        }
        if (reply.body.pieces.empty()) {
            load_finish();
            return;
        }
        cache_bytes_.reserve(reply.body.bytes);
        load_reader_ = mail::BodyReader::start(factory_.access().mail().shard().io(),
                                               std::move(reply.body), load_sink_);
    }

    void load_piece(Status status, std::span<const std::byte> bytes, bool last) {
        if (status != Status::ok) {
            log::error("shard {}: imap {}: message unreadable: {}", shard(), account_,
                       status_name(status));
            load_reader_->cancel();
            load_reader_ = nullptr;
            server_->fetch_done(status);
            after_host();
            return;
        }
        cache_bytes_.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
        if (!last) {
            load_reader_->next();
            return;
        }
        load_reader_->cancel();
        load_reader_ = nullptr;
        load_finish();
        after_host();
    }

    void load_finish() {
        cache_mime_ = mime_parse(cache_bytes_);
        cache_valid_ = true;
        fetch_next();
    }

    // ---- streamed literals ----

    void stream_start(const ImapStreamPiece& piece) {
        RP_ASSERT(!streaming_);
        streaming_ = true;
        stream_ = piece;
        stream_position_ = 0;
        stream_chunk_ = {};
        auto it = stream_bodies_.find(static_cast<std::uint32_t>(piece.body_token));
        RP_ASSERT(it != stream_bodies_.end());  // emit() recorded every token it handed out.
        mail::AccessRequest request;
        request.op = mail::AccessOp::body_open;
        request.body = it->second.body;
        stream_reading_ = true;  // Until stream_opened().
        if (Status s = client_->submit(std::move(request), tag_stream); s != Status::ok) {
            stream_failed(s);
        }
    }

    void stream_opened(mail::AccessReply& reply) {
        stream_reading_ = false;
        if (reply.status != Status::ok || reply.body.pieces.empty()) {
            stream_failed(reply.status);
            return;
        }
        // On a plaintext connection the range goes from the segment to the socket; under TLS
        // (or with no pipe free) it is read, verified and copied.
        if (stream_.bytes >= factory_.splice_bytes_min() &&
            stream_.offset + stream_.bytes <= reply.body.bytes &&
            splicer_.start(*output(), reply.body, stream_.offset, stream_.bytes,
                           factory_.access().stats())) {
            return;
        }
        ++factory_.access().stats().bodies_copied;
        stream_reading_ = true;
        stream_reader_ = mail::BodyReader::start(factory_.access().mail().shard().io(),
                                                 std::move(reply.body), stream_sink_);
    }

    // ---- BodySpliceDone ----
    void splice_done(Status status) override {
        if (status == Status::ok) {
            stream_.bytes = 0;
            stream_end();
            after_host();
            return;
        }
        if (status == Status::again) {
            // A later extent was refused: read and copy the rest of the range.
            storage::BodyHandle rest =
                splicer_.rest(stream_position_, stream_.offset, stream_.bytes);
            ++factory_.access().stats().bodies_copied;
            stream_reading_ = true;
            stream_reader_ = mail::BodyReader::start(factory_.access().mail().shard().io(),
                                                     std::move(rest), stream_sink_);
            return;
        }
        // The session is closing: on_close() follows; its output is not to be touched.
        streaming_ = false;
    }

    void stream_piece(Status status, std::span<const std::byte> bytes, bool last) {
        stream_reading_ = false;
        if (status != Status::ok) {
            stream_failed(status);
            after_host();
            return;
        }
        factory_.access().stats().bytes_copied += bytes.size();
        // Keep only the part of this extent inside the wanted range.
        const std::uint64_t begin = stream_position_;
        stream_position_ += bytes.size();  // bounds: at most the body's size.
        const std::uint64_t want_begin = stream_.offset;
        const std::uint64_t want_end = stream_.offset + stream_.bytes;
        const std::uint64_t from = std::max(begin, want_begin);
        const std::uint64_t to = std::min(stream_position_, want_end);
        stream_chunk_ = from < to ? bytes.subspan(from - begin, to - from)
                                  : std::span<const std::byte>{};
        stream_last_ = last;
        SessionOutput* out = output();
        stream_write(*out);
        if (!streaming_) settle(*out);
    }

    // Writes the current extent's slice while the send queue has room.
    void stream_write(SessionOutput& out) {
        RP_ASSERT(streaming_);
        // The body is being opened or its next extent read: the send queue drained
        // meanwhile (the text before the literal, or the last slice that pushed it over the
        // mark once more); stream_opened() / stream_piece() go on from there.
        if (stream_reading_) return;
        while (!stream_chunk_.empty()) {
            if (out.output_queued_bytes() >= limits::session_output_high_bytes) return;
            const std::size_t n = std::min(stream_chunk_.size(), stream_slice_bytes);
            out.write(stream_chunk_.first(n));
            stream_chunk_ = stream_chunk_.subspan(n);
            stream_.bytes -= n;
            stream_.offset += n;
        }
        if (stream_.bytes == 0) {
            stream_end();
            return;
        }
        if (stream_last_ || stream_reader_ == nullptr) {
            stream_failed(Status::truncated);
            return;
        }
        stream_reading_ = true;
        stream_reader_->next();
    }

    // The literal's length is on the wire already: pad it so the client stays in step, then
    // say why (a FETCH cannot take back what it sent).
    void stream_failed(Status status) {
        log::error("shard {}: imap {}: message unreadable while sending it: {}", shard(),
                   account_, status_name(status));
        SessionOutput* out = output();
        const std::string pad(static_cast<std::size_t>(std::min<std::uint64_t>(stream_.bytes, 1u << 20)), ' ');
        std::uint64_t left = stream_.bytes;
        while (left > 0) {
            const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(left, pad.size()));
            out->write(std::string_view(pad.data(), n));
            left -= n;
        }
        stream_.bytes = 0;
        stream_end();
    }

    void stream_end() {
        streaming_ = false;
        stream_reading_ = false;
        stream_chunk_ = {};
        if (stream_reader_ != nullptr) stream_reader_->cancel();
        stream_reader_ = nullptr;
    }

    // ---- STORE, EXPUNGE ----

    // The reply carries the new flags and keywords of every message changed.
    void stored(mail::AccessReply& reply) {
        if (reply.status != Status::ok) {
            server_->store_done(reply.status, {});
            return;
        }
        keywords_learn(reply.changed.keyword_names);
        const std::vector<mail::MessageEntry>& changed = reply.changed.messages;
        // All keyword views first (one vector, no reallocation after), then the spans.
        std::vector<std::string_view> views;
        std::vector<std::pair<std::size_t, std::size_t>> ranges;
        ranges.reserve(changed.size());
        for (const mail::MessageEntry& m : changed) {
            keyword_views(m.keywords, views_);
            ranges.emplace_back(views.size(), views_.size());
            views.insert(views.end(), views_.begin(), views_.end());
        }
        std::vector<ImapFlagUpdate> updates;
        updates.reserve(changed.size());
        for (std::size_t i = 0; i < changed.size(); ++i) {
            const mail::MessageEntry& m = changed[i];
            mail::MessageEntry* entry = entry_find(messages_, m.uid);
            if (entry == nullptr) continue;
            entry->flags = m.flags;
            entry->keywords = m.keywords;
            entry->modseq = m.modseq;
            const std::span<const std::string_view> kw(views.data() + ranges[i].first,
                                                       ranges[i].second);
            updates.push_back({m.uid, m.flags & flag_bits_all, kw, m.modseq});
        }
        server_->store_done(Status::ok, updates);
    }

    void expunge_read(mail::AccessReply& reply) {
        if (reply.status != Status::ok) {
            server_->expunge_done(reply.status, {});
            return;
        }
        expunge_uids_.clear();
        for (const mail::MessageEntry& m : reply.snapshot.messages) {
            if ((m.flags & flag_deleted) == 0) continue;
            if (!expunge_filter_.empty() &&
                !std::binary_search(expunge_filter_.begin(), expunge_filter_.end(), m.uid)) {
                continue;
            }
            expunge_uids_.push_back(m.uid);
        }
        if (expunge_uids_.empty()) {
            server_->expunge_done(Status::ok, {});
            return;
        }
        mail::AccessRequest request;
        request.op = mail::AccessOp::expunge;
        request.account = account_;
        request.mailbox = selected_name_;
        request.uids = expunge_uids_;
        if (Status s = client_->submit(std::move(request), tag_expunge); s != Status::ok) {
            server_->expunge_done(s, {});
        }
    }

    void expunged(mail::AccessReply& reply) {
        if (reply.status == Status::ok) {
            std::erase_if(messages_, [&](const mail::MessageEntry& m) {
                return std::binary_search(expunge_uids_.begin(), expunge_uids_.end(), m.uid);
            });
        }
        server_->expunge_done(reply.status, reply.status == Status::ok
                                                ? std::span<const std::uint32_t>(expunge_uids_)
                                                : std::span<const std::uint32_t>{});
    }

    // ---- driving the server ----

    void arm(SessionOutput& out) {
        switch (server_->timeout_kind()) {
            case ImapTimeoutKind::login: out.set_timeout_ms(ImapFactory::login_timeout_ms); break;
            default: out.set_timeout_ms(factory_.idle_timeout_ms()); break;
        }
    }

    // Moves the server's output to the send queue, starting a streamed literal when one
    // comes up (the text after it waits until it is sent).
    void pump(SessionOutput& out) {
        while (!streaming_ && server_->has_output()) {
            if (server_->has_stream()) {
                stream_start(server_->take_stream());
                continue;
            }
            text_.clear();
            server_->take_output(text_);
            if (!text_.empty()) out.write(text_);
        }
        if (!streaming_ && !server_->has_output() && !server_->host_busy() && load_reader_ == nullptr) {
            release_idle();
        }
    }

    // Nothing is in flight: give back what only a command in progress needs, so that an
    // idle session costs its slot and little else.
    void release_idle() {
        constexpr std::size_t keep_bytes = 4096;
        if (stream_bodies_.bucket_count() > 16) {
            std::unordered_map<std::uint32_t, StreamBody>().swap(stream_bodies_);
        } else {
            stream_bodies_.clear();  // Every literal handed out is sent.
        }
        if (text_.capacity() > keep_bytes) std::string().swap(text_);
        if (fetch_uids_.capacity() * sizeof(std::uint32_t) > keep_bytes) {
            std::vector<std::uint32_t>().swap(fetch_uids_);
        }
        if (expunge_uids_.capacity() * sizeof(std::uint32_t) > keep_bytes) {
            std::vector<std::uint32_t>().swap(expunge_uids_);
            std::vector<std::uint32_t>().swap(expunge_filter_);
        }
        // A big cached message is not worth its memory between commands.
        if (cache_bytes_.capacity() > 16 * keep_bytes) drop_cache();
    }

    // Sends, lets a FETCH waiting for the output go on, then reads again when nothing holds
    // the session back.
    void settle(SessionOutput& out) {
        for (;;) {
            pump(out);
            if (server_->wants_close()) {
                if (!streaming_) out.close_after_flush();
                return;
            }
            if (streaming_ || out.output_queued_bytes() >= limits::session_output_high_bytes) {
                return;  // on_output_drained() comes back here.
            }
            // Ends: each round answers one more batch of a FETCH/SEARCH, or nothing.
            server_->on_output_drained();
            if (!server_->has_output()) break;
        }
        if (server_->waiting_for_tls()) {
            if (!tls_starting_) tls_starting_ = out.start_tls();
            return;
        }
        if (!server_->paused() && !streaming_) out.resume_reading();
    }

    // After an asynchronous answer or event.
    void after_host() {
        if (!server_) return;
        SessionOutput* out = output();
        settle(*out);
        arm(*out);
    }

    std::size_t run(std::span<const std::byte> bytes, SessionOutput& out) {
        std::size_t consumed = 0;
        for (;;) {
            if (streaming_ || out.output_queued_bytes() >= limits::session_output_high_bytes) {
                out.pause_reading();
                return consumed;
            }
            consumed += server_->feed(bytes.subspan(consumed));
            const bool answered = server_->has_output();
            settle(out);
            if (server_->wants_close()) return bytes.size();
            if (server_->waiting_for_tls()) return bytes.size();  // RFC 3501 6.2.1: discarded.
            if (answered) arm(out);
            if (server_->paused() || streaming_) {
                out.pause_reading();
                return consumed;
            }
            if (consumed == bytes.size()) return consumed;
        }
    }

    struct StreamBody {
        storage::BodyRef body;
        std::uint64_t size;
    };

    ImapFactory& factory_;
    ReaderSink load_sink_;
    ReaderSink stream_sink_;
    std::optional<ImapServer> server_;
    std::optional<mail::AccessClient> client_;
    SessionHandle handle_;
    std::string client_address_;
    std::string account_;
    std::uint64_t client_key_ = 0;  // The throttle's key for the client's address.
    std::string text_;
    bool checking_ = false;
    bool tls_starting_ = false;
    // The selected mailbox.
    std::uint64_t selected_id_ = 0;
    std::string selected_name_;
    std::vector<mail::MessageEntry> messages_;
    std::uint32_t uid_high_ = 0;
    std::string select_name_;
    bool select_read_only_ = false;
    std::vector<std::string> keyword_names_;  // The account's keywords, by index.
    std::vector<std::string_view> views_;     // Scratch: one message's keyword names.
    // FETCH.
    std::vector<std::uint32_t> fetch_uids_;
    std::size_t fetch_index_ = 0;
    std::uint32_t fetch_needs_ = 0;
    mail::BodyReader* load_reader_ = nullptr;
    bool cache_valid_ = false;
    std::uint32_t cache_uid_ = 0;
    std::uint64_t cache_mailbox_ = 0;
    std::string cache_bytes_;
    MimeMessage cache_mime_;
    std::unordered_map<std::uint32_t, StreamBody> stream_bodies_;
    // The literal being streamed.
    bool streaming_ = false;
    ImapStreamPiece stream_;
    std::uint64_t stream_position_ = 0;
    std::span<const std::byte> stream_chunk_;
    bool stream_last_ = false;
    mail::BodyReader* stream_reader_ = nullptr;
    bool stream_reading_ = false;  // The body_open or a read of stream_reader_ is in flight.
    mail::BodySplicer splicer_;
    // EXPUNGE, APPEND.
    std::vector<std::uint32_t> expunge_filter_;
    std::vector<std::uint32_t> expunge_uids_;
    std::string append_mailbox_;
    std::uint32_t append_flags_ = 0;
    std::vector<std::string> append_keywords_;
    std::int64_t append_date_ = 0;
    std::string append_bytes_;
};

void ReaderSink::body_piece(Status status, std::span<const std::byte> bytes, bool last) {
    session_.reader_piece(stream_, status, bytes, last);
}

}  // namespace

ImapFactory::ImapFactory(mail::MailAccess& access, SessionDriver& driver,
                         const config::Settings& settings, std::string kind,
                         pop3::PasswordChecker* passwords)
    : access_(access),
      driver_(driver),
      passwords_(passwords),
      idle_timeout_ms_(settings.imap.idle_timeout_ms),
      splice_bytes_min_(settings.imap.splice_bytes_min),
      kind_(std::move(kind)) {
    if (passwords_ == nullptr) {
        plaintext_ = std::make_unique<pop3::PlaintextPasswords>(access.mail().shard().reactor());
        passwords_ = plaintext_.get();
    }
    server_config_.hostname = settings.server.hostname;
    busy_reply_ = "* BYE [UNAVAILABLE] " + settings.server.hostname +
                  " too busy, try again later\r\n";
    per_ip_reply_ = "* BYE [UNAVAILABLE] Too many connections from your address\r\n";
}

std::size_t ImapFactory::session_bytes() const { return sizeof(ImapSession); }
std::size_t ImapFactory::session_align() const { return alignof(ImapSession); }
ProtocolSession* ImapFactory::create(void* storage) { return new (storage) ImapSession(*this); }

}  // namespace rp::imap
