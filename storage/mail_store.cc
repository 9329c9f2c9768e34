#include "storage/mail_store.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#include "storage/store_jobs.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace rp::storage {

namespace {

constexpr std::string_view default_mailboxes[][1] = {{"INBOX"}, {"Sent"}, {"Drafts"}, {"Trash"}, {"Junk"}};
constexpr std::uint32_t default_special_use[] = {special_none, special_sent, special_drafts,
                                                 special_trash, special_junk};

bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        const auto ca = static_cast<unsigned char>(a[i]);
        const auto cb = static_cast<unsigned char>(b[i]);
        if (std::tolower(ca) != std::tolower(cb)) return false;
    }
    return true;
}

// RFC 3501 5.1: INBOX is case-insensitive; every other name is taken as given.
std::string mailbox_name(std::string_view name) {
    if (iequals(name, "INBOX")) return "INBOX";
    return std::string(name);
}

bool mailbox_name_ok(std::string_view name) {
    if (name.empty() || name.size() > limits::mailbox_name_bytes_max) return false;
    return name.find('\0') == std::string_view::npos;
}

template <typename T>
std::string encoded(const T& value) {
    std::string out;
    encode(out, value);
    return out;
}

// Whether any byte is >= 0x80: 64 bytes per step with SSE2 (x86-64's baseline), words
// elsewhere. A byte loop, which -O2 does not vectorize, cost 3.5 us per 4 KiB: more than the
// rest of an append.
bool has_high_bit(const char* at, std::size_t count) {
    std::size_t i = 0;
#if defined(__SSE2__)
    for (; i + 64 <= count; i += 64) {
        const auto* p = reinterpret_cast<const __m128i*>(at + i);
        const __m128i any = _mm_or_si128(_mm_or_si128(_mm_loadu_si128(p), _mm_loadu_si128(p + 1)),
                                         _mm_or_si128(_mm_loadu_si128(p + 2), _mm_loadu_si128(p + 3)));
        if (_mm_movemask_epi8(any) != 0) return true;
    }
#endif
    for (; i + 8 <= count; i += 8) {
        std::uint64_t w;
        std::memcpy(&w, at + i, sizeof w);
        if ((w & 0x8080808080808080ull) != 0) return true;
    }
    for (; i < count; ++i) {
        if (static_cast<unsigned char>(at[i]) >= 0x80) return true;
    }
    return false;
}

}  // namespace

struct MailStore::Writer {
    std::uint32_t generation = 0;
    bool used = false;
    std::uint64_t body_id = 0;
    std::uint64_t bytes = 0;
    std::vector<Extent> extents;
    // What body_finish() records as BodyTrait bits: the bytes are followed as they come.
    bool line_start = true;  // The next byte starts a line.
    bool dot_line = false;   // A line started with ".".
    bool eight_bit = false;  // A byte >= 0x80 was seen.
    char tail[2] = {0, 0};   // The last two bytes.

    // Follows the next `count` bytes of the body: one memchr per line, and nothing but the tail
    // once a dot line was seen.
    void scan(const char* at, std::size_t count) {
        if (count == 0) return;
        tail[0] = count >= 2 ? at[count - 2] : tail[1];
        tail[1] = at[count - 1];
        const char* end = at + count;
        if (!eight_bit) eight_bit = has_high_bit(at, count);
        while (!dot_line && at < end) {
            if (line_start && *at == '.') {
                dot_line = true;
                break;
            }
            const void* lf = std::memchr(at, '\n', static_cast<std::size_t>(end - at));
            line_start = lf != nullptr;
            at = lf == nullptr ? end : static_cast<const char*>(lf) + 1;
        }
    }
};

MailStore::MailStore(Io& io, Clock& clock, StoreOptions options)
    : io_(io), clock_(clock), options_(std::move(options)), index_(options_.shard) {}

MailStore::~MailStore() {
    log_.reset();
    if (dir_fd_ >= 0) ::close(dir_fd_);
}

Status MailStore::writable() const {
    if (options_.read_only) return Status::permission;
    return failed();
}

// ---- durability and transactions ----

Status MailStore::flush(FlushDone* done) {
    if (Status s = failed(); s != Status::ok) return s;
    RP_ASSERT(!txn_explicit_);
    const Status s = log_->flush(*this);
    if (s == Status::ok) flush_dones_.push_back(done);
    return s;
}

void MailStore::flush_done(Status status) {
    // The log completes batches in flush order.
    RP_ASSERT(!flush_dones_.empty());
    FlushDone* done = flush_dones_.front();
    flush_dones_.pop_front();
    const Lsn durable = log_->durable();
    std::deque<std::pair<Lsn, DurableDone*>> ready;
    if (status == Status::ok) {
        while (!waiters_.empty() && waiters_.front().first <= durable) {
            ready.push_back(waiters_.front());
            waiters_.pop_front();
        }
    } else {
        ready.swap(waiters_);  // Every staged transaction fails with the batch.
    }
    for (auto& [lsn, waiter] : ready) waiter->durable(status);
    if (done) done->flush_done(status);
}

void MailStore::txn_begin() {
    RP_ASSERT(!txn_explicit_);
    RP_ASSERT(txn_records_.empty());
    txn_explicit_ = true;
}

Result<Lsn> MailStore::txn_commit(DurableDone* done) {
    RP_ASSERT(txn_explicit_ || !txn_records_.empty());
    txn_explicit_ = false;
    if (txn_records_.empty()) {
        // Nothing written: durable with the last commit. `done` runs only if that is pending.
        if (done && !is_durable(last_commit_lsn_)) waiters_.emplace_back(last_commit_lsn_, done);
        return last_commit_lsn_;
    }
    const std::uint64_t txn = next_txn_id_++;
    const Log::Mark mark = log_->mark();
    Status failure = Status::ok;
    for (const TxnRecord& r : txn_records_) {
        auto at = log_->append(r.type, txn, r.scope, as_bytes(r.payload));
        if (!at) {
            failure = at.status();
            break;
        }
    }
    if (failure == Status::ok) {
        const std::string commit = encoded(Commit{static_cast<std::uint32_t>(txn_records_.size())});
        auto at = log_->append(RecordType::commit, txn, 0, as_bytes(commit));
        if (!at) failure = at.status();
    }
    txn_records_.clear();
    txn_bytes_ = 0;
    if (failure != Status::ok) {
        // The index already holds the changes: the store no longer matches what it can write.
        log_->rollback(mark);
        failed_ = failure;
        txn_appended_.clear();
        return failure;
    }
    const Lsn end = log_->tail();
    for (auto [mailbox_id, uid] : txn_appended_) {
        Mailbox* box = index_.mailbox(mailbox_id);
        Message* m = box ? box->find(uid) : nullptr;
        if (m) m->visible_lsn = end;
    }
    txn_appended_.clear();
    last_commit_lsn_ = end;
    if (done) waiters_.emplace_back(end, done);
    return end;
}

Status MailStore::op_begin(std::size_t payload_bytes) {
    if (Status s = writable(); s != Status::ok) return s;
    // Refuse before changing the index, so that the commit cannot run out of staging room.
    const std::uint64_t need = log_->staged_bytes() + txn_bytes_ + payload_bytes + 64 * 1024;
    if (need > limits::store_staging_bytes_max) return Status::full;
    return Status::ok;
}

Status MailStore::stage(RecordType type, std::uint64_t scope, std::string payload) {
    const Status s = index_.apply(type, as_bytes(payload), lsn_invisible);
    RP_ASSERT(s == Status::ok);
    txn_bytes_ += record_bytes(static_cast<std::uint32_t>(payload.size()));
    txn_records_.push_back({type, scope, std::move(payload)});
    return Status::ok;
}

Status MailStore::op_end() {
    if (txn_explicit_) return Status::ok;
    DurableDone* done = next_done_;
    next_done_ = nullptr;
    auto end = txn_commit(done);
    return end ? Status::ok : end.status();
}

// Runs `body` inside the open transaction, or inside one of its own.
#define RP_STORE_TXN(body_status)                  \
    do {                                           \
        const bool own_txn = !txn_explicit_;       \
        txn_explicit_ = true;                      \
        const Status txn_status_ = (body_status);  \
        if (own_txn) {                             \
            txn_explicit_ = false;                 \
            if (txn_records_.empty()) {            \
                next_done_ = nullptr;              \
                return txn_status_;                \
            }                                      \
            const Status end_ = op_end();          \
            if (txn_status_ != Status::ok) return txn_status_; \
            return end_;                           \
        }                                          \
        return txn_status_;                        \
    } while (0)

// ---- bodies ----

MailStore::Writer* MailStore::writer(BodyWriterId id) {
    const auto slot = static_cast<std::uint32_t>(id >> 32);
    if (slot >= writers_.size()) return nullptr;
    Writer* w = writers_[slot].get();
    return w->used && w->generation == static_cast<std::uint32_t>(id) ? w : nullptr;
}

Result<BodyWriterId> MailStore::body_begin() {
    if (Status s = writable(); s != Status::ok) return s;
    std::uint32_t slot;
    if (!writers_free_.empty()) {
        slot = writers_free_.back();
        writers_free_.pop_back();
    } else {
        if (writers_.size() >= limits::body_writers_max) return Status::full;
        slot = static_cast<std::uint32_t>(writers_.size());
        writers_.push_back(std::make_unique<Writer>());
    }
    Writer& w = *writers_[slot];
    w = Writer{};
    w.used = true;
    w.generation = writer_generation_++;
    w.body_id = index_.next_body_id++;
    return (static_cast<BodyWriterId>(slot) << 32) | w.generation;
}

namespace {

// Splits `parts` into chunks of at most `chunk_max` bytes.
std::vector<std::vector<iovec>> split_chunks(const iovec* parts, unsigned count, std::uint64_t chunk_max) {
    std::vector<std::vector<iovec>> chunks(1);
    std::uint64_t in_chunk = 0;
    for (unsigned i = 0; i < count; ++i) {
        auto* base = static_cast<char*>(parts[i].iov_base);
        std::size_t left = parts[i].iov_len;
        while (left > 0) {
            if (in_chunk == chunk_max) {
                chunks.emplace_back();
                in_chunk = 0;
            }
            const std::size_t take = std::min<std::uint64_t>(left, chunk_max - in_chunk);
            chunks.back().push_back({base, take});
            base += take;
            left -= take;
            in_chunk += take;
        }
    }
    return chunks;
}

}  // namespace

Status MailStore::body_append(BodyWriterId id, const iovec* parts, unsigned part_count,
                              BufferRelease& release) {
    if (Status s = writable(); s != Status::ok) return s;
    Writer* w = writer(id);
    if (!w) return Status::invalid;
    const auto chunks = split_chunks(parts, part_count, log_->chunk_bytes_max());
    if (w->extents.size() + chunks.size() > limits::body_extents_max) return Status::too_big;
    const Log::Mark mark = log_->mark();
    std::vector<Extent> added;
    for (const auto& chunk : chunks) {
        if (chunk.empty()) continue;
        auto extent = log_->append_chunk(scope_make(ScopeKind::body, w->body_id), chunk.data(),
                                         static_cast<unsigned>(chunk.size()), true);
        if (!extent) {
            log_->rollback(mark);
            return extent.status();
        }
        added.push_back(*extent);
    }
    if (added.empty()) return Status::ok;  // Nothing kept: the caller still owns its memory.
    log_->attach_release(release);
    for (unsigned i = 0; i < part_count; ++i) {
        w->scan(static_cast<const char*>(parts[i].iov_base), parts[i].iov_len);
    }
    for (const auto& e : added) {
        w->extents.push_back(e);
        w->bytes += e.bytes;
    }
    return Status::ok;
}

Status MailStore::body_append_copy(BodyWriterId id, std::span<const std::byte> bytes) {
    if (Status s = writable(); s != Status::ok) return s;
    Writer* w = writer(id);
    if (!w) return Status::invalid;
    if (bytes.empty()) return Status::ok;
    const iovec part{const_cast<std::byte*>(bytes.data()), bytes.size()};
    const auto chunks = split_chunks(&part, 1, log_->chunk_bytes_max());
    if (w->extents.size() + chunks.size() > limits::body_extents_max) return Status::too_big;
    const Log::Mark mark = log_->mark();
    std::vector<Extent> added;
    for (const auto& chunk : chunks) {
        auto extent = log_->append_chunk(scope_make(ScopeKind::body, w->body_id), chunk.data(),
                                         static_cast<unsigned>(chunk.size()), false);
        if (!extent) {
            log_->rollback(mark);
            return extent.status();
        }
        added.push_back(*extent);
    }
    for (const auto& e : added) {
        w->extents.push_back(e);
        w->bytes += e.bytes;
    }
    w->scan(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    return Status::ok;
}

Result<BodyRef> MailStore::body_finish(BodyWriterId id) {
    Writer* w = writer(id);
    if (!w) return Status::invalid;
    BodyDefine def{w->body_id, w->bytes, w->extents};
    if (!w->dot_line && w->bytes >= 2 && w->tail[0] == '\r' && w->tail[1] == '\n') {
        def.traits = body_dot_free;
    }
    if (!w->eight_bit) def.traits |= body_7bit;
    std::string payload = encoded(def);
    if (Status s = op_begin(payload.size()); s != Status::ok) return s;
    const BodyRef ref{options_.shard, w->body_id};
    stage(RecordType::body_define, scope_make(ScopeKind::body, w->body_id), std::move(payload));
    body_abort(id);
    if (Status s = op_end(); s != Status::ok) return s;
    return ref;
}

void MailStore::body_abort(BodyWriterId id) {
    Writer* w = writer(id);
    if (!w) return;
    w->used = false;
    w->extents.clear();
    writers_free_.push_back(static_cast<std::uint32_t>(id >> 32));
}

Result<BodyRef> MailStore::body_put(std::span<const std::byte> bytes) {
    auto w = body_begin();
    if (!w) return w.status();
    if (Status s = body_append_copy(*w, bytes); s != Status::ok) {
        body_abort(*w);
        return s;
    }
    return body_finish(*w);
}

std::uint32_t MailStore::min_open_segment() const {
    std::uint32_t min = ~0u;
    for (const auto& w : writers_) {
        if (w->used && !w->extents.empty()) min = std::min(min, w->extents.front().segment_id);
    }
    return min;
}

Result<BodyHandle> MailStore::body_open(BodyRef ref) const {
    if (ref.shard != options_.shard || ref.empty()) return Status::invalid;
    auto it = index_.bodies.find(ref.id);
    if (it == index_.bodies.end()) return Status::not_found;
    if (it->second.corrupt) return Status::corrupt;
    BodyHandle handle;
    handle.ref = ref;
    handle.bytes = it->second.bytes;
    handle.traits = it->second.traits;
    const Lsn durable = log_->durable();
    for (const Extent& e : it->second.extents) {
        if (lsn_make(e.segment_id, e.offset + record_bytes(e.bytes)) > durable) return Status::again;
        SegmentPin pin = log_->segment(e.segment_id);
        if (!pin) return Status::corrupt;
        handle.pieces.push_back({std::move(pin), e});
    }
    return handle;
}

Result<std::span<const std::byte>> extent_verify(const Extent& extent, std::span<const std::byte> record) {
    auto header = record_header_decode(record);
    if (!header) return Status::corrupt;
    if (header->type != static_cast<std::uint16_t>(RecordType::body_chunk) ||
        header->payload_bytes != extent.bytes) {
        return Status::corrupt;
    }
    auto payload = record.subspan(record_header_bytes, extent.bytes);
    if (!record_payload_ok(*header, payload)) return Status::corrupt;
    return payload;
}

Status body_read_blocking(const BodyHandle& handle, std::span<std::byte> out) {
    if (out.size() != handle.bytes) return Status::invalid;
    std::vector<std::byte> record;
    std::size_t at = 0;
    for (const auto& piece : handle.pieces) {
        const std::uint32_t want = record_header_bytes + piece.extent.bytes;
        record.resize(want);
        std::size_t got = 0;
        while (got < want) {
            const ssize_t n = ::pread(piece.fd(), record.data() + got, want - got,
                                      static_cast<off_t>(piece.extent.offset + got));
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) return status_from_errno(errno);
            if (n == 0) return Status::truncated;
            got += static_cast<std::size_t>(n);
        }
        auto payload = extent_verify(piece.extent, record);
        if (!payload) return payload.status();
        if (at + payload->size() > out.size()) return Status::corrupt;
        std::memcpy(out.data() + at, payload->data(), payload->size());
        at += payload->size();
    }
    return at == out.size() ? Status::ok : Status::corrupt;
}

// ---- accounts and mailboxes ----

std::uint32_t MailStore::next_uidvalidity() {
    const auto now = static_cast<std::uint32_t>(std::max<std::int64_t>(1, clock_.wall_seconds()));
    return std::max(index_.last_uidvalidity + 1, now);
}

Status MailStore::account_create(std::string_view account) {
    if (account.empty() || account.size() > limits::address_bytes_max) return Status::invalid;
    if (index_.account(account)) return Status::exists;
    if (index_.accounts.size() >= limits::accounts_per_shard_max) return Status::full;
    if (Status s = op_begin(4096); s != Status::ok) return s;
    const std::uint64_t account_id = index_.next_account_id;
    RP_STORE_TXN(([&] {
        stage(RecordType::account_create, scope_make(ScopeKind::account, account_id),
              encoded(AccountCreate{account_id, std::string(account), clock_.wall_seconds()}));
        for (std::size_t i = 0; i < std::size(default_mailboxes); ++i) {
            const std::uint64_t id = index_.next_mailbox_id;
            stage(RecordType::mailbox_create, scope_make(ScopeKind::mailbox, id),
                  encoded(MailboxCreate{account_id, id, std::string(default_mailboxes[i][0]),
                                        default_special_use[i], next_uidvalidity()}));
            // Subscribed from the start, so that clients showing only subscribed folders
            // (LSUB, LIST (SUBSCRIBED)) find INBOX and the special-use folders.
            stage(RecordType::subscription_set, scope_make(ScopeKind::account, account_id),
                  encoded(SubscriptionSet{account_id, std::string(default_mailboxes[i][0]), true}));
        }
        return Status::ok;
    }()));
}

bool MailStore::account_exists(std::string_view account) const { return index_.account(account) != nullptr; }

std::vector<std::string> MailStore::account_list() const {
    std::vector<std::string> out;
    for (const auto& [name, id] : index_.account_ids) out.push_back(name);
    std::sort(out.begin(), out.end());
    return out;
}

namespace {
MailboxInfo info_of(const Mailbox& box, Lsn durable) {
    MailboxInfo info{box.id, box.name, box.special_use, box.uidvalidity, box.uidnext,
                     box.highest_modseq, 0, box.quarantined};
    for (const auto& m : box.messages) info.message_count += m.visible_lsn <= durable ? 1 : 0;
    return info;
}
}  // namespace

Result<std::vector<MailboxInfo>> MailStore::mailbox_list(std::string_view account) const {
    const Account* a = index_.account(account);
    if (!a) return Status::not_found;
    std::vector<MailboxInfo> out;
    for (const auto& [name, id] : a->mailboxes) {
        const Mailbox* box = index_.mailbox(id);
        if (box) out.push_back(info_of(*box, log_->durable()));
    }
    return out;
}

Result<const Mailbox*> MailStore::resolve_const(std::string_view account, std::string_view mailbox) const {
    const Account* a = index_.account(account);
    if (!a) return Status::not_found;
    auto it = a->mailboxes.find(mailbox_name(mailbox));
    if (it == a->mailboxes.end()) return Status::not_found;
    const Mailbox* box = index_.mailbox(it->second);
    if (!box) return Status::not_found;
    if (box->quarantined) return Status::quarantined;
    return box;
}

Status MailStore::resolve(std::string_view account, std::string_view mailbox, Mailbox*& box) {
    auto found = resolve_const(account, mailbox);
    if (!found) return found.status();
    box = const_cast<Mailbox*>(*found);
    return Status::ok;
}

Result<MailboxInfo> MailStore::mailbox_status(std::string_view account, std::string_view mailbox) const {
    const Account* a = index_.account(account);
    if (!a) return Status::not_found;
    auto it = a->mailboxes.find(mailbox_name(mailbox));
    if (it == a->mailboxes.end()) return Status::not_found;
    const Mailbox* box = index_.mailbox(it->second);
    if (!box) return Status::not_found;
    return info_of(*box, log_->durable());
}

Result<std::uint64_t> MailStore::mailbox_create(std::string_view account, std::string_view mailbox,
                                                std::uint32_t special_use) {
    if (!mailbox_name_ok(mailbox) || (special_use & ~special_use_all) != 0) return Status::invalid;
    const Account* a = index_.account(account);
    if (!a) return Status::not_found;
    const std::string name = mailbox_name(mailbox);
    if (a->mailboxes.count(name)) return Status::exists;
    if (a->mailboxes.size() >= limits::mailboxes_per_account_max) return Status::full;
    if (Status s = op_begin(name.size() + 64); s != Status::ok) return s;
    const std::uint64_t id = index_.next_mailbox_id;
    stage(RecordType::mailbox_create, scope_make(ScopeKind::mailbox, id),
          encoded(MailboxCreate{a->id, id, name, special_use, next_uidvalidity()}));
    if (Status s = op_end(); s != Status::ok) return s;
    return id;
}

Status MailStore::mailbox_rename(std::string_view account, std::string_view from, std::string_view to) {
    if (!mailbox_name_ok(to)) return Status::invalid;
    Mailbox* box = nullptr;
    if (Status s = resolve(account, from, box); s != Status::ok) return s;
    if (mailbox_name(to) == "INBOX") return Status::invalid;
    const Account& a = index_.accounts.at(box->account_id);
    if (a.mailboxes.count(mailbox_name(to))) return Status::exists;
    if (box->name == "INBOX") return inbox_rename(*box, mailbox_name(to));
    if (Status s = op_begin(to.size() + 64); s != Status::ok) return s;
    stage(RecordType::mailbox_rename, scope_make(ScopeKind::mailbox, box->id),
          encoded(MailboxRename{box->id, mailbox_name(to)}));
    return op_end();
}

// RFC 3501 6.3.5: renaming INBOX moves all its messages to a new mailbox of that name and
// leaves INBOX in place, empty (same UIDVALIDITY, its UIDs are not reused). One transaction:
// the create, the appends and the expunges are durable together or not at all.
Status MailStore::inbox_rename(Mailbox& inbox, const std::string& to) {
    RP_ASSERT(inbox.name == "INBOX");
    RP_ASSERT(to != "INBOX");
    Account& a = index_.accounts.at(inbox.account_id);
    if (a.mailboxes.size() >= limits::mailboxes_per_account_max) return Status::full;
    // bounds: messages_per_mailbox_max * 90 fits in 64 bits.
    if (Status s = op_begin(inbox.messages.size() * 90 + to.size() + 4096); s != Status::ok) return s;
    const std::uint64_t id = index_.next_mailbox_id;
    RP_STORE_TXN(([&] {
        stage(RecordType::mailbox_create, scope_make(ScopeKind::mailbox, id),
              encoded(MailboxCreate{a.id, id, to, special_none, next_uidvalidity()}));
        Mailbox* moved_to = index_.mailbox(id);
        RP_ASSERT(moved_to != nullptr);
        std::vector<std::uint32_t> uids;
        uids.reserve(inbox.messages.size());
        for (const Message& m : inbox.messages) uids.push_back(m.uid);
        if (!uids.empty()) {
            (void)copy_into(inbox, uids, *moved_to);
            stage_expunges(inbox, uids);
        }
        RP_ASSERT(inbox.messages.empty());
        return Status::ok;
    }()));
}

Status MailStore::mailbox_delete(std::string_view account, std::string_view mailbox) {
    const Account* a = index_.account(account);
    if (!a) return Status::not_found;
    auto it = a->mailboxes.find(mailbox_name(mailbox));
    if (it == a->mailboxes.end()) return Status::not_found;
    if (it->first == "INBOX") return Status::invalid;  // RFC 3501 6.3.4.
    if (Status s = op_begin(64); s != Status::ok) return s;
    const std::uint64_t id = it->second;
    stage(RecordType::mailbox_delete, scope_make(ScopeKind::mailbox, id), encoded(IdOnly{id}));
    return op_end();
}

Status MailStore::mailbox_repair(std::string_view account, std::string_view mailbox) {
    const Account* a = index_.account(account);
    if (!a) return Status::not_found;
    auto it = a->mailboxes.find(mailbox_name(mailbox));
    if (it == a->mailboxes.end()) return Status::not_found;
    if (Status s = op_begin(64); s != Status::ok) return s;
    stage(RecordType::mailbox_repair, scope_make(ScopeKind::mailbox, it->second),
          encoded(IdOnly{it->second}));
    return op_end();
}

Status MailStore::mailbox_subscribe(std::string_view account, std::string_view mailbox,
                                    bool subscribed) {
    if (!mailbox_name_ok(mailbox)) return Status::invalid;
    const Account* a = index_.account(account);
    if (!a) return Status::not_found;
    const std::string name = mailbox_name(mailbox);
    if (subscribed && !a->subscriptions.count(name) &&
        a->subscriptions.size() >= limits::mailboxes_per_account_max) {
        return Status::full;
    }
    if (Status s = op_begin(name.size() + 64); s != Status::ok) return s;
    stage(RecordType::subscription_set, scope_make(ScopeKind::account, a->id),
          encoded(SubscriptionSet{a->id, name, subscribed}));
    return op_end();
}

std::vector<std::string> MailStore::subscriptions(std::string_view account) const {
    const Account* a = index_.account(account);
    if (!a) return {};
    return {a->subscriptions.begin(), a->subscriptions.end()};
}

// ---- messages ----

Result<std::uint32_t> MailStore::keyword_bits(Account& account, const std::vector<std::string>& names,
                                              Keywords& out, bool define) {
    out = Keywords{};
    std::uint32_t defined = 0;
    for (const std::string& name : names) {
        if (name.empty() || name.size() > limits::mailbox_name_bytes_max) return Status::invalid;
        auto it = std::find(account.keywords.begin(), account.keywords.end(), name);
        std::size_t index = static_cast<std::size_t>(it - account.keywords.begin());
        if (it == account.keywords.end()) {
            if (!define) continue;
            if (account.keywords.size() >= limits::keywords_per_account_max) return Status::full;
            index = account.keywords.size();
            stage(RecordType::keyword_define, scope_make(ScopeKind::account, account.id),
                  encoded(KeywordDefine{account.id, static_cast<std::uint32_t>(index), name}));
            ++defined;
        }
        out[index / 64] |= 1ull << (index % 64);
    }
    return defined;
}

Result<std::uint32_t> MailStore::message_append(std::string_view account, std::string_view mailbox,
                                                const AppendArgs& args) {
    return deliver(account, mailbox, DeliveryKey{}, args);
}

Result<std::uint32_t> MailStore::deliver(std::string_view account, std::string_view mailbox,
                                         const DeliveryKey& key, const AppendArgs& args) {
    if (!key.empty()) {
        auto seen = index_.deliveries.find(MailboxIndex::delivery_key(key));
        if (seen != index_.deliveries.end()) {
            if (next_done_ && !txn_explicit_) {
                DurableDone* done = next_done_;
                next_done_ = nullptr;
                if (!is_durable(last_commit_lsn_)) waiters_.emplace_back(last_commit_lsn_, done);
            }
            return seen->second.uid;
        }
    }
    Mailbox* box = nullptr;
    if (Status s = resolve(account, mailbox, box); s != Status::ok) return s;
    if ((args.flags & ~flags_all) != 0 || key.rcpt.size() > limits::address_bytes_max) {
        return Status::invalid;
    }
    if (box->messages.size() >= limits::messages_per_mailbox_max) return Status::full;
    if (args.body.shard == options_.shard) {
        auto body = index_.bodies.find(args.body.id);
        if (args.body.empty() || body == index_.bodies.end()) return Status::not_found;
    }
    if (Status s = op_begin(4096 + args.keywords.size() * 64); s != Status::ok) return s;
    Account& acct = index_.accounts.at(box->account_id);
    std::uint32_t uid = 0;
    auto run = [&]() -> Status {
        MessageEntry entry;
        if (auto k = keyword_bits(acct, args.keywords, entry.keywords, true); !k) return k.status();
        uid = box->uidnext;
        entry.uid = uid;
        entry.flags = args.flags;
        entry.internal_date = args.internal_date;
        entry.size = args.size;
        entry.body = args.body;
        MessageAppend rec{box->id, box->highest_modseq + 1, key, {entry}};
        stage(RecordType::message_append, scope_make(ScopeKind::mailbox, box->id), encoded(rec));
        txn_appended_.emplace_back(box->id, uid);
        return Status::ok;
    };
    const bool own_txn = !txn_explicit_;
    txn_explicit_ = true;
    const Status s = run();
    if (own_txn) {
        txn_explicit_ = false;
        if (!txn_records_.empty()) {
            if (Status e = op_end(); e != Status::ok) return e;
        }
    }
    if (s != Status::ok) return s;
    return uid;
}

Result<std::uint64_t> MailStore::flags_set(std::string_view account, std::string_view mailbox,
                                           std::span<const std::uint32_t> uids, FlagMode mode,
                                           std::uint32_t flags,
                                           const std::vector<std::string>& keywords) {
    if ((flags & ~flags_all) != 0) return Status::invalid;
    Mailbox* box = nullptr;
    if (Status s = resolve(account, mailbox, box); s != Status::ok) return s;
    if (Status s = op_begin(uids.size() * 4 + 4096); s != Status::ok) return s;
    Account& acct = index_.accounts.at(box->account_id);
    std::uint64_t modseq = box->highest_modseq;
    auto run = [&]() -> Status {
        Keywords kw{};
        // Removing a keyword nobody has needs no definition.
        if (auto k = keyword_bits(acct, keywords, kw, mode != FlagMode::remove); !k) return k.status();
        FlagsSet rec{box->id, 0, mode, flags, kw, {}};
        auto emit = [&] {
            rec.modseq = box->highest_modseq + 1;
            stage(RecordType::flags_set, scope_make(ScopeKind::mailbox, box->id), encoded(rec));
            modseq = rec.modseq;
            rec.uids.clear();
        };
        for (std::uint32_t uid : uids) {
            const Message* m = box->find(uid);
            if (!m) continue;
            Message after = *m;
            for (std::size_t i = 0; i < kw.size(); ++i) {
                if (mode == FlagMode::add) after.keywords[i] |= kw[i];
                if (mode == FlagMode::remove) after.keywords[i] &= ~kw[i];
                if (mode == FlagMode::replace) after.keywords[i] = kw[i];
            }
            if (mode == FlagMode::add) after.flags |= flags;
            if (mode == FlagMode::remove) after.flags &= ~flags;
            if (mode == FlagMode::replace) after.flags = flags;
            if (after.flags == m->flags && after.keywords == m->keywords) continue;
            if (!rec.uids.empty() && rec.uids.back() >= uid) {
                emit();  // Keep each record's UIDs unique; the caller's set may repeat.
            }
            rec.uids.push_back(uid);
            if (rec.uids.size() == limits::uids_per_record_max) emit();
        }
        if (!rec.uids.empty()) emit();
        return Status::ok;
    };
    const bool own_txn = !txn_explicit_;
    txn_explicit_ = true;
    const Status s = run();
    if (own_txn) {
        txn_explicit_ = false;
        if (!txn_records_.empty()) {
            if (Status e = op_end(); e != Status::ok) return e;
        } else {
            next_done_ = nullptr;
        }
    }
    if (s != Status::ok) return s;
    return modseq;
}

Result<MailStore::UidMap> MailStore::copy_into(Mailbox& from, std::span<const std::uint32_t> uids,
                                               Mailbox& to) {
    UidMap map;
    MessageAppend rec{to.id, 0, {}, {}};
    auto emit = [&] {
        rec.modseq = to.highest_modseq + 1;
        for (const auto& m : rec.messages) txn_appended_.emplace_back(to.id, m.uid);
        stage(RecordType::message_append, scope_make(ScopeKind::mailbox, to.id), encoded(rec));
        rec.messages.clear();
    };
    std::uint32_t next = to.uidnext;
    std::vector<std::uint32_t> sorted(uids.begin(), uids.end());
    std::sort(sorted.begin(), sorted.end());
    sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());
    for (std::uint32_t uid : sorted) {
        const Message* m = from.find(uid);
        if (!m) continue;
        rec.messages.push_back({next, m->flags, m->keywords, m->internal_date, m->size, m->body});
        map.emplace_back(uid, next);
        ++next;
        if (rec.messages.size() == limits::uids_per_record_max) emit();
    }
    if (!rec.messages.empty()) emit();
    return map;
}

Result<MailStore::UidMap> MailStore::message_copy(std::string_view account, std::string_view from,
                                                  std::span<const std::uint32_t> uids,
                                                  std::string_view to) {
    Mailbox* src = nullptr;
    Mailbox* dst = nullptr;
    if (Status s = resolve(account, from, src); s != Status::ok) return s;
    if (Status s = resolve(account, to, dst); s != Status::ok) return s;
    if (dst->messages.size() + uids.size() > limits::messages_per_mailbox_max) return Status::full;
    if (Status s = op_begin(uids.size() * 80 + 4096); s != Status::ok) return s;
    UidMap map;
    const bool own_txn = !txn_explicit_;
    txn_explicit_ = true;
    if (src != dst) {
        auto r = copy_into(*src, uids, *dst);
        map = std::move(*r);
    } else {
        // Copying into the same mailbox: snapshot the source first, appends move the vector.
        Mailbox copy = *src;
        auto r = copy_into(copy, uids, *dst);
        map = std::move(*r);
    }
    if (own_txn) {
        txn_explicit_ = false;
        if (!txn_records_.empty()) {
            if (Status e = op_end(); e != Status::ok) return e;
        }
    }
    return map;
}

Result<MailStore::UidMap> MailStore::message_move(std::string_view account, std::string_view from,
                                                  std::span<const std::uint32_t> uids,
                                                  std::string_view to) {
    Mailbox* src = nullptr;
    Mailbox* dst = nullptr;
    if (Status s = resolve(account, from, src); s != Status::ok) return s;
    if (Status s = resolve(account, to, dst); s != Status::ok) return s;
    if (src == dst) return Status::invalid;
    if (dst->messages.size() + uids.size() > limits::messages_per_mailbox_max) return Status::full;
    if (Status s = op_begin(uids.size() * 90 + 4096); s != Status::ok) return s;
    const bool own_txn = !txn_explicit_;
    txn_explicit_ = true;
    // RFC 6851: copy and expunge in one transaction, so a crash never leaves both or neither.
    auto map = copy_into(*src, uids, *dst);
    std::vector<std::uint32_t> moved;
    for (auto [old_uid, new_uid] : *map) moved.push_back(old_uid);
    stage_expunges(*src, moved);
    if (own_txn) {
        txn_explicit_ = false;
        if (!txn_records_.empty()) {
            if (Status e = op_end(); e != Status::ok) return e;
        }
    }
    return map;
}

// Stages expunge records for `uids` (present in `box`), at most uids_per_record_max a record,
// each with the mailbox's next modseq.
void MailStore::stage_expunges(Mailbox& box, const std::vector<std::uint32_t>& uids) {
    Expunge rec{box.id, 0, {}};
    for (std::size_t i = 0; i < uids.size(); i += limits::uids_per_record_max) {
        const std::size_t n = std::min<std::size_t>(limits::uids_per_record_max, uids.size() - i);
        rec.uids.assign(uids.begin() + static_cast<long>(i), uids.begin() + static_cast<long>(i + n));
        rec.modseq = box.highest_modseq + 1;
        stage(RecordType::expunge, scope_make(ScopeKind::mailbox, box.id), encoded(rec));
    }
}

Result<std::uint64_t> MailStore::expunge(std::string_view account, std::string_view mailbox,
                                         std::span<const std::uint32_t> uids) {
    Mailbox* box = nullptr;
    if (Status s = resolve(account, mailbox, box); s != Status::ok) return s;
    if (Status s = op_begin(uids.size() * 4 + 4096); s != Status::ok) return s;
    std::vector<std::uint32_t> present;
    for (std::uint32_t uid : uids) {
        if (box->find(uid)) present.push_back(uid);
    }
    std::sort(present.begin(), present.end());
    present.erase(std::unique(present.begin(), present.end()), present.end());
    const bool own_txn = !txn_explicit_;
    txn_explicit_ = true;
    stage_expunges(*box, present);
    if (own_txn) {
        txn_explicit_ = false;
        if (!txn_records_.empty()) {
            if (Status e = op_end(); e != Status::ok) return e;
        } else {
            next_done_ = nullptr;
        }
    }
    return box->highest_modseq;
}

Result<std::vector<Message>> MailStore::messages(std::string_view account, std::string_view mailbox) const {
    auto box = resolve_const(account, mailbox);
    if (!box) return box.status();
    std::vector<Message> out;
    out.reserve((*box)->messages.size());
    for (const auto& m : (*box)->messages) {
        if (visible(m)) out.push_back(m);
    }
    return out;
}

Result<Message> MailStore::message(std::string_view account, std::string_view mailbox,
                                   std::uint32_t uid) const {
    auto box = resolve_const(account, mailbox);
    if (!box) return box.status();
    const Message* m = (*box)->find(uid);
    if (!m || !visible(*m)) return Status::not_found;
    return *m;
}

std::vector<std::string> MailStore::keyword_names(std::string_view account, const Keywords& keywords) const {
    std::vector<std::string> out;
    const Account* a = index_.account(account);
    if (!a) return out;
    for (std::size_t i = 0; i < a->keywords.size(); ++i) {
        if (keywords[i / 64] & (1ull << (i % 64))) out.push_back(a->keywords[i]);
    }
    return out;
}

// ---- spool ----

Result<std::uint64_t> MailStore::spool_add(SpoolEntry entry) {
    if (entry.recipients.empty() || entry.recipients.size() > limits::recipients_per_spool_entry_max ||
        entry.sender.size() > limits::address_bytes_max || entry.client.size() > limits::reply_bytes_max) {
        return Status::invalid;
    }
    for (const auto& rc : entry.recipients) {
        if (rc.address.empty() || rc.address.size() > limits::address_bytes_max ||
            rc.reply.size() > limits::reply_bytes_max) {
            return Status::invalid;
        }
    }
    if (entry.body.shard == options_.shard && !index_.bodies.count(entry.body.id)) return Status::not_found;
    if (entry.id == 0) {
        entry.id = (static_cast<std::uint64_t>(options_.shard) << 48) | index_.next_spool_seq;
    } else if (index_.spool.count(entry.id)) {
        return Status::exists;
    }
    std::string payload = encoded(SpoolAdd{entry});
    if (Status s = op_begin(payload.size()); s != Status::ok) return s;
    const std::uint64_t id = entry.id;
    stage(RecordType::spool_add, scope_make(ScopeKind::spool, id), std::move(payload));
    if (Status s = op_end(); s != Status::ok) return s;
    return id;
}

Status MailStore::spool_update(std::uint64_t spool_id, std::uint32_t rcpt_index, RcptState state,
                               std::int64_t next_attempt, std::uint32_t attempts, std::string_view reply) {
    auto it = index_.spool.find(spool_id);
    if (it == index_.spool.end()) return Status::not_found;
    if (rcpt_index >= it->second.recipients.size() || reply.size() > limits::reply_bytes_max ||
        state > RcptState::failed) {
        return Status::invalid;
    }
    if (Status s = op_begin(reply.size() + 64); s != Status::ok) return s;
    stage(RecordType::spool_update, scope_make(ScopeKind::spool, spool_id),
          encoded(SpoolUpdate{spool_id, rcpt_index, state, next_attempt, attempts, std::string(reply)}));
    return op_end();
}

Status MailStore::spool_remove(std::uint64_t spool_id) {
    auto it = index_.spool.find(spool_id);
    if (it == index_.spool.end()) return Status::not_found;
    for (const auto& rc : it->second.recipients) {
        if (!rcpt_state_final(rc.state)) return Status::busy;
    }
    if (Status s = op_begin(64); s != Status::ok) return s;
    stage(RecordType::spool_remove, scope_make(ScopeKind::spool, spool_id), encoded(IdOnly{spool_id}));
    return op_end();
}

const SpoolEntry* MailStore::spool_get(std::uint64_t spool_id) const {
    auto it = index_.spool.find(spool_id);
    return it == index_.spool.end() ? nullptr : &it->second;
}

std::vector<SpoolDue> MailStore::spool_due(std::int64_t now, std::size_t count_max) const {
    // Reads only the due recipients: the relay scans often and the spool may be large.
    std::vector<SpoolDue> out;
    for (const SpoolDueKey& key : index_.spool_due_index) {
        if (key.next_attempt > now || out.size() == count_max) break;
        RP_ASSERT_DEBUG(!rcpt_state_final(index_.spool.at(key.spool_id).recipients[key.rcpt_index].state));
        out.push_back({key.spool_id, key.rcpt_index});
    }
    return out;
}

// ---- garbage collection ----

std::uint64_t MailStore::gc_begin() { return ++index_.gc_epoch; }

std::vector<std::uint64_t> MailStore::foreign_refs(std::uint16_t owner_shard) const {
    std::vector<std::uint64_t> out;
    if (owner_shard == options_.shard) return out;
    for (const auto& [id, box] : index_.mailboxes) {
        for (const auto& m : box.messages) {
            if (m.body.shard == owner_shard && !m.body.empty()) out.push_back(m.body.id);
        }
    }
    for (const auto& [id, entry] : index_.spool) {
        if (entry.body.shard == owner_shard && !entry.body.empty()) out.push_back(entry.body.id);
    }
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
    return out;
}

Result<std::size_t> MailStore::gc_finish(std::uint64_t epoch,
                                         const std::unordered_set<std::uint64_t>& foreign_live) {
    IdList drop;
    for (const auto& [id, body] : index_.bodies) {
        if (body.local_refs == 0 && body.dead_epoch < epoch && !foreign_live.count(id)) {
            drop.ids.push_back(id);
        }
    }
    if (drop.ids.empty()) return std::size_t{0};
    std::sort(drop.ids.begin(), drop.ids.end());
    if (Status s = op_begin(drop.ids.size() * 8 + 64); s != Status::ok) return s;
    const std::size_t count = drop.ids.size();
    stage(RecordType::body_drop, 0, encoded(drop));
    if (Status s = op_end(); s != Status::ok) return s;
    return count;
}

StoreStats MailStore::stats() const {
    StoreStats st;
    for (const auto& [id, seg] : log_->segments()) {
        ++st.segment_count;
        st.segment_bytes += id == log_->tail_segment() ? lsn_offset(log_->tail()) : seg->bytes;
        if (seg.use_count() > 1) ++st.pinned_segments;
    }
    st.live_body_bytes = index_.live_body_bytes();
    st.snapshot_bytes = snapshot_bytes_;
    st.accounts = index_.accounts.size();
    st.mailboxes = index_.mailboxes.size();
    for (const auto& [id, box] : index_.mailboxes) st.messages += box.messages.size();
    st.bodies = index_.bodies.size();
    st.spool_entries = index_.spool.size();
    st.durable_lsn = log_->durable();
    st.snapshot_lsn = snapshot_lsn_;
    return st;
}

}  // namespace rp::storage
