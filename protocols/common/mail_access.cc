// protocols/common/mail_access.cc: see mail_access.h.
#include "protocols/common/mail_access.h"

#include <algorithm>

#include "core/log.h"

namespace rp::mail {

namespace {

constexpr std::uint32_t cross_request = 1;  // Client shard -> owner: run a request.
constexpr std::uint32_t cross_reply = 2;    // Owner -> client shard: the reply.
constexpr std::uint32_t cross_event = 3;    // Owner -> watcher's shard: a MailboxEvent.
// Releases carry no heap object (pointer = the AccessCluster, args = mailbox id and token or
// client), so one left in a queue when a shard stops leaks nothing.
constexpr std::uint32_t cross_unlock = 4;
constexpr std::uint32_t cross_unwatch = 5;

bool mutation(AccessOp op) {
    switch (op) {
        case AccessOp::flags_set:
        case AccessOp::expunge:
        case AccessOp::append:
        case AccessOp::copy:
        case AccessOp::move:
        case AccessOp::create:
        case AccessOp::rename:
        case AccessOp::remove:
        case AccessOp::subscribe:
        case AccessOp::unsubscribe:
        case AccessOp::release:
            return true;
        default:
            return false;
    }
}

MessageEntry entry_of(const storage::Message& m) {
    MessageEntry e;
    e.uid = m.uid;
    e.flags = m.flags;
    e.size = m.size;
    e.internal_date = m.internal_date;
    e.modseq = m.modseq;
    e.body = m.body;
    e.keywords = m.keywords;
    return e;
}

bool has_keywords(const storage::Keywords& keywords) {
    return std::any_of(keywords.begin(), keywords.end(), [](std::uint64_t w) { return w != 0; });
}

MailboxCounts counts_of(const storage::Mailbox& box, storage::Lsn durable) {
    MailboxCounts c;
    for (const storage::Message& m : box.messages) {
        if (m.visible_lsn > durable) continue;
        if ((m.flags & storage::flag_seen) == 0) ++c.unseen;
        if ((m.flags & storage::flag_deleted) != 0) ++c.deleted;
        c.size += m.size;  // bounds: a sum of stored sizes, far below 2^64.
    }
    return c;
}

// The account's keyword names (empty when it has none or is unknown).
std::vector<std::string> keyword_names_of(const storage::MailboxIndex& index,
                                          std::string_view account) {
    const storage::Account* a = index.account(account);
    return a == nullptr ? std::vector<std::string>{} : a->keywords;
}

}  // namespace

// One request and, later, its reply. Travels by pointer; whoever holds it owns it. While the
// owner's store makes a mutation durable, the store's waiter list holds it.
struct AccessJob final : storage::DurableDone {
    AccessCluster* cluster = nullptr;
    AccessRequest request;
    AccessReply reply;
    unsigned origin = 0;             // The client's shard.
    unsigned owner = 0;              // Where the request runs.
    std::uint64_t client = 0;        // 0: no reply wanted (unlock, unwatch).
    std::uint64_t tag = 0;
    std::uint64_t token = 0;         // open: the lock granted; unlock: the lock to release.
    std::uint64_t mailbox_id = 0;    // open, unlock, unwatch.
    bool replied = false;            // Executed: now travelling home.
    MailAccess* executor = nullptr;  // While waiting for durability.

    void durable(Status status) override {
        std::unique_ptr<AccessJob> self(this);
        executor->after_durable(std::move(self), status);
    }
};

struct EventJob {
    AccessCluster* cluster = nullptr;
    std::uint64_t client = 0;
    MailboxEvent event;
};

// ---- AccessClient ----

AccessClient::AccessClient(MailAccess& access, AccessHandler& handler)
    : access_(access), handler_(handler) {
    id_ = access_.client_add(*this);
}

AccessClient::~AccessClient() {
    for (const Held& h : locks_) {
        access_.release(h.owner, AccessOp::unlock, h.mailbox_id, h.token, id_);
    }
    for (const Held& h : watches_) {
        access_.release(h.owner, AccessOp::unwatch, h.mailbox_id, 0, id_);
    }
    access_.client_remove(*this);
}

Status AccessClient::submit(AccessRequest request, std::uint64_t tag) {
    return access_.submit(*this, std::move(request), tag);
}

void AccessClient::unwatch(std::uint64_t mailbox_id) {
    for (std::size_t i = 0; i < watches_.size(); ++i) {
        if (watches_[i].mailbox_id != mailbox_id) continue;
        access_.release(watches_[i].owner, AccessOp::unwatch, mailbox_id, 0, id_);
        watches_.erase(watches_.begin() + static_cast<std::ptrdiff_t>(i));
        return;
    }
}

Status AccessClient::release(std::uint64_t mailbox_id, std::string account, std::string mailbox,
                             std::vector<std::uint32_t> uids, std::uint64_t tag) {
    for (std::size_t i = 0; i < locks_.size(); ++i) {
        if (locks_[i].mailbox_id != mailbox_id) continue;
        AccessRequest request;
        request.op = AccessOp::release;
        request.account = std::move(account);
        request.mailbox = std::move(mailbox);
        request.uids = std::move(uids);
        const Held lock = locks_[i];
        const Status s = access_.submit(*this, std::move(request), tag, &lock);
        // Once sent, the owner releases the lock whatever becomes of this client.
        if (s == Status::ok) locks_.erase(locks_.begin() + static_cast<std::ptrdiff_t>(i));
        return s;
    }
    return Status::not_found;
}

void AccessClient::unlock(std::uint64_t mailbox_id) {
    for (std::size_t i = 0; i < locks_.size(); ++i) {
        if (locks_[i].mailbox_id != mailbox_id) continue;
        access_.release(locks_[i].owner, AccessOp::unlock, mailbox_id, locks_[i].token, id_);
        locks_.erase(locks_.begin() + static_cast<std::ptrdiff_t>(i));
        return;
    }
}

// ---- MailAccess: the client side ----

MailAccess::MailAccess(ShardMail& mail, AccessCluster& cluster) : mail_(mail), cluster_(cluster) {
    RP_ASSERT(cluster.shard_count() == mail.shard().shard_count());
    cluster_.set(shard_index(), this);
    mail_.set_observer(this);
    mail_.shard().reactor().add_tick(*this);
}

MailAccess::~MailAccess() {
    if (stats_.bodies_spliced + stats_.bodies_copied > 0) {
        // Tests read this line to tell which path the bytes took.
        log::info("shard {}: mail access: {} bodies spliced ({} bytes), {} bodies copied ({} "
                  "bytes)",
                  shard_index(), stats_.bodies_spliced, stats_.bytes_spliced,
                  stats_.bodies_copied, stats_.bytes_copied);
    }
    mail_.shard().reactor().remove_tick(*this);
    mail_.set_observer(nullptr);
    cluster_.set(shard_index(), nullptr);
    // Messages still queued for other shards are dropped with their shard; clients are gone.
    for (const CrossMessage& m : backlog_) on_discard(m);
}

std::size_t MailAccess::watchers() const {
    std::size_t count = 0;
    for (const auto& [id, list] : watchers_) count += list.watchers.size();
    return count;
}

std::uint64_t MailAccess::client_add(AccessClient& client) {
    const std::uint64_t id = next_client_id_++;
    clients_.emplace(id, &client);
    return id;
}

void MailAccess::client_remove(AccessClient& client) {
    const std::size_t erased = clients_.erase(client.id_);
    RP_ASSERT(erased == 1);
}

Status MailAccess::submit(AccessClient& client, AccessRequest request, std::uint64_t tag,
                          const AccessClient::Held* lock) {
    RP_ASSERT(request.op != AccessOp::unlock);
    RP_ASSERT(request.op != AccessOp::unwatch);
    RP_ASSERT((request.op == AccessOp::release) == (lock != nullptr));
    if (client.in_flight_ >= access_in_flight_max) return Status::full;
    unsigned owner = 0;
    if (request.op == AccessOp::body_open) {
        if (request.body.empty() || request.body.shard >= cluster_.shard_count()) {
            return Status::invalid;
        }
        owner = request.body.shard;
    } else {
        const smtp::Account* account = mail_.directory().find_account(request.account);
        if (account == nullptr) return Status::not_found;
        request.account = account->address;
        owner = account->owner_shard;
    }
    if (owner != shard_index() && backlog_.size() >= access_backlog_requests_max) {
        ++stats_.requests_refused_backlog;
        return Status::full;  // Backpressure: the owner is not keeping up.
    }
    auto job = std::make_unique<AccessJob>();
    job->cluster = &cluster_;
    job->request = std::move(request);
    job->origin = shard_index();
    job->owner = owner;
    job->client = client.id_;
    job->tag = tag;
    if (lock != nullptr) {
        // The lock lives where the account's mailboxes do.
        RP_ASSERT(lock->owner == owner);
        job->token = lock->token;
        job->mailbox_id = lock->mailbox_id;
    }
    ++client.in_flight_;
    if (owner == shard_index()) {
        ++stats_.requests_local;
        local_jobs_.push_back(std::move(job));
        mail_.shard().reactor().defer(*this);
    } else {
        ++stats_.requests_remote;
        route(owner, cross_request, job.release());
    }
    return Status::ok;
}

void MailAccess::release(unsigned owner, AccessOp op, std::uint64_t mailbox_id,
                         std::uint64_t token, std::uint64_t client) {
    RP_ASSERT(op == AccessOp::unlock || op == AccessOp::unwatch);
    // Locks and watchers live in memory only: when the daemon stops they vanish with it, and
    // the owner may have stopped reading its queue already (the message would never be
    // freed).
    if (mail_.shard().stopping()) return;
    if (owner == shard_index()) {
        AccessJob job;
        job.request.op = op;
        job.origin = shard_index();
        job.owner = owner;
        job.client = client;
        job.token = token;
        job.mailbox_id = mailbox_id;
        execute_release(job);  // No reply: nothing re-enters the caller.
        return;
    }
    CrossMessage message;
    message.handler = &MailAccess::on_cross;
    message.kind = op == AccessOp::unlock ? cross_unlock : cross_unwatch;
    message.pointer = &cluster_;
    message.args[0] = mailbox_id;
    message.args[1] = op == AccessOp::unlock ? token : client;
    message.args[2] = owner;
    post_or_queue(message);
}

void MailAccess::route(unsigned to, std::uint32_t kind, void* pointer) {
    RP_ASSERT(to != shard_index());
    CrossMessage message;
    message.handler = &MailAccess::on_cross;
    message.kind = kind;
    message.pointer = pointer;
    message.args[0] = reinterpret_cast<std::uintptr_t>(&cluster_);
    message.args[2] = to;
    message.discard = &MailAccess::on_discard;
    post_or_queue(message);
}

// A message left in a queue when its receiver stopped: free what it owns.
void MailAccess::on_discard(const CrossMessage& message) {
    if (message.kind == cross_event) {
        delete static_cast<EventJob*>(message.pointer);
    } else if (message.kind == cross_request || message.kind == cross_reply) {
        delete static_cast<AccessJob*>(message.pointer);
    }
}

void MailAccess::post_or_queue(const CrossMessage& message) {
    const auto to = static_cast<unsigned>(message.args[2]);
    if (backlog_.empty() && mail_.shard().post(to, message) == Status::ok) return;
    ++stats_.post_retries;
    if (message.kind == cross_event && backlog_.size() >= access_backlog_max) {
        // The watcher's shard has not read its queue for a long while: its session misses
        // this change (it sees it at its next SELECT) rather than this shard growing.
        if (stats_.events_dropped++ % 1024 == 0) {
            log::warn("shard {}: mail access: backlog full, {} mailbox events dropped",
                      shard_index(), stats_.events_dropped);
        }
        on_discard(message);
        return;
    }
    backlog_.push_back(message);  // Order kept: later posts wait behind this one.
}

void MailAccess::on_tick() {
    while (!backlog_.empty()) {
        const CrossMessage& next = backlog_.front();
        if (mail_.shard().post(static_cast<unsigned>(next.args[2]), next) != Status::ok) break;
        backlog_.pop_front();
    }
}

void MailAccess::on_cross(Shard& to, const CrossMessage& message) {
    if (message.kind == cross_unlock || message.kind == cross_unwatch) {
        MailAccess* self = static_cast<AccessCluster*>(message.pointer)->get(to.index());
        if (self == nullptr) return;
        AccessJob job;
        job.request.op = message.kind == cross_unlock ? AccessOp::unlock : AccessOp::unwatch;
        job.origin = message.from;
        job.owner = to.index();
        job.mailbox_id = message.args[0];
        job.token = message.kind == cross_unlock ? message.args[1] : 0;
        job.client = message.kind == cross_unwatch ? message.args[1] : 0;
        self->execute_release(job);
        return;
    }
    auto* cluster = reinterpret_cast<AccessCluster*>(static_cast<std::uintptr_t>(message.args[0]));
    MailAccess* self = cluster->get(to.index());
    if (message.kind == cross_event) {
        std::unique_ptr<EventJob> event(static_cast<EventJob*>(message.pointer));
        if (self != nullptr) self->event_arrived(std::move(event));
        return;
    }
    std::unique_ptr<AccessJob> job(static_cast<AccessJob*>(message.pointer));
    if (self == nullptr) {
        // This shard is shutting down. A request is answered, so that its session does not
        // wait for the drain deadline; a reply is dropped with its session's shard.
        if (message.kind != cross_request) return;
        job->reply.status = Status::cancelled;
        job->replied = true;
        CrossMessage back = message;
        back.kind = cross_reply;
        back.args[2] = job->origin;
        back.pointer = job.get();
        if (to.post(job->origin, back) == Status::ok) (void)job.release();
        return;
    }
    if (message.kind == cross_request) {
        self->execute(std::move(job));
    } else {
        self->reply_arrived(std::move(job));
    }
}

void MailAccess::on_deferred() {
    // Only what is queued now: work queued meanwhile runs in the next round.
    std::size_t jobs = local_jobs_.size();
    std::size_t events = local_events_.size();
    while (jobs-- > 0) {
        std::unique_ptr<AccessJob> job = std::move(local_jobs_.front());
        local_jobs_.pop_front();
        if (job->replied) {
            reply_arrived(std::move(job));
        } else {
            execute(std::move(job));
        }
    }
    while (events-- > 0) {
        std::unique_ptr<EventJob> event = std::move(local_events_.front());
        local_events_.pop_front();
        event_arrived(std::move(event));
    }
    if (!local_jobs_.empty() || !local_events_.empty()) mail_.shard().reactor().defer(*this);
}

void MailAccess::reply_arrived(std::unique_ptr<AccessJob> job) {
    RP_ASSERT(job->replied);
    RP_ASSERT(job->origin == shard_index());
    auto it = clients_.find(job->client);
    const bool granted = job->request.op == AccessOp::open && job->reply.status == Status::ok;
    if (it == clients_.end()) {
        // The session closed meanwhile: give back what the reply granted it.
        ++stats_.replies_orphaned;
        if (granted && job->token != 0) {
            release(job->owner, AccessOp::unlock, job->mailbox_id, job->token, job->client);
        }
        if (granted && job->request.watch) {
            release(job->owner, AccessOp::unwatch, job->mailbox_id, 0, job->client);
        }
        return;
    }
    AccessClient& client = *it->second;
    RP_ASSERT(client.in_flight_ > 0);
    --client.in_flight_;
    if (granted && job->token != 0) {
        client.locks_.push_back({job->owner, job->mailbox_id, job->token});
    }
    if (granted && job->request.watch) {
        client.watches_.push_back({job->owner, job->mailbox_id, 0});
    }
    client.handler_.access_done(job->tag, job->request.op, job->reply);
}

void MailAccess::event_arrived(std::unique_ptr<EventJob> event) {
    auto it = clients_.find(event->client);
    if (it == clients_.end()) return;  // Closed; its unwatch is on the way.
    it->second->handler_.mailbox_changed(event->event);
}

// ---- MailAccess: the owner side ----

std::uint64_t MailAccess::mailbox_id(std::string_view account, std::string_view mailbox) const {
    const storage::MailboxIndex& index = mail_.store().index();
    const storage::Account* a = index.account(account);
    if (a == nullptr) return 0;
    auto it = a->mailboxes.find(std::string(mailbox));
    return it == a->mailboxes.end() ? 0 : it->second;
}

void MailAccess::execute(std::unique_ptr<AccessJob> job) {
    RP_ASSERT(job->owner == shard_index());
    RP_ASSERT(!job->replied);
    storage::MailStore& store = mail_.store();
    AccessRequest& r = job->request;
    AccessReply& reply = job->reply;
    if (r.op == AccessOp::release && r.uids.empty()) {
        reply.status = Status::ok;  // Nothing to expunge; finished() unlocks.
        finished(std::move(job));
        return;
    }
    switch (r.op) {
        case AccessOp::unlock:
        case AccessOp::unwatch:
            execute_release(*job);
            return;  // No reply.
        case AccessOp::open:
            execute_open(*job);
            break;
        case AccessOp::status: {
            auto info = store.mailbox_status(r.account, r.mailbox);
            reply.status = info.status();
            if (!info) break;
            reply.info = std::move(info.value());
            const storage::Mailbox* box = store.index().mailbox(reply.info.id);
            if (r.counts && box != nullptr) reply.counts = counts_of(*box, store.durable_lsn());
            break;
        }
        case AccessOp::list: {
            auto list = store.mailbox_list(r.account);
            reply.status = list.status();
            if (!list) break;
            reply.mailboxes = std::move(list.value());
            reply.subscriptions = store.subscriptions(r.account);
            if (!r.counts) break;
            reply.mailbox_counts.reserve(reply.mailboxes.size());
            for (const storage::MailboxInfo& info : reply.mailboxes) {
                const storage::Mailbox* box = store.index().mailbox(info.id);
                reply.mailbox_counts.push_back(
                    box != nullptr ? counts_of(*box, store.durable_lsn()) : MailboxCounts{});
            }
            break;
        }
        case AccessOp::body_open: {
            auto body = store.body_open(r.body);
            reply.status = body.status();
            if (body) reply.body = std::move(body.value());
            break;
        }
        default: {
            RP_ASSERT(mutation(r.op));
            job->executor = this;
            AccessJob* raw = job.release();
            if (execute_mutation(*raw)) {
                // The store owns it until durable(). A request that came by cross-core
                // message runs after this iteration's tick: keep the loop from sleeping
                // so that the next tick's group commit flushes it at once.
                mail_.shard().reactor().defer(*this);
                return;
            }
            job.reset(raw);
            break;
        }
    }
    finished(std::move(job));
}

void MailAccess::execute_open(AccessJob& job) {
    storage::MailStore& store = mail_.store();
    const AccessRequest& r = job.request;
    auto info = store.mailbox_status(r.account, r.mailbox);
    if (!info) {
        job.reply.status = info.status();
        return;
    }
    if (info->quarantined) {
        job.reply.status = Status::quarantined;
        return;
    }
    const std::uint64_t id = info->id;
    if (r.exclusive && locks_.contains(id)) {
        job.reply.status = Status::busy;
        return;
    }
    auto it = watchers_.find(id);
    if (r.watch && it != watchers_.end() &&
        it->second.watchers.size() >= watchers_per_mailbox_max) {
        job.reply.status = Status::full;
        return;
    }
    const storage::Mailbox* box = store.index().mailbox(id);
    RP_ASSERT(box != nullptr);  // mailbox_status() just found it.
    const storage::Lsn durable = store.durable_lsn();
    MailboxSnapshot& snap = job.reply.snapshot;
    snap.mailbox_id = id;
    snap.uidvalidity = info->uidvalidity;
    snap.uidnext = info->uidnext;
    snap.highest_modseq = info->highest_modseq;
    snap.messages.reserve(box->messages.size());
    for (const storage::Message& m : box->messages) {
        if (m.visible_lsn <= durable) snap.messages.push_back(entry_of(m));
    }
    snap.keyword_names = keyword_names_of(store.index(), r.account);
    job.mailbox_id = id;
    if (r.exclusive) {
        job.token = next_token_++;
        locks_.emplace(id, Lock{job.token, job.origin, job.client});
    }
    if (r.watch) {
        if (it == watchers_.end()) {
            // The first watcher: everything it sees now counts as told.
            it = watchers_.emplace(id, WatchList{}).first;
            it->second.uid_told = snap.messages.empty() ? 0 : snap.messages.back().uid;
        }
        it->second.watchers.push_back({job.origin, job.client});
    }
    job.reply.status = Status::ok;
}

void MailAccess::unlock_token(std::uint64_t mailbox_id, std::uint64_t token) {
    auto it = locks_.find(mailbox_id);
    if (it != locks_.end() && it->second.token == token) locks_.erase(it);
}

void MailAccess::execute_release(AccessJob& job) {
    RP_ASSERT(job.owner == shard_index());
    if (job.request.op == AccessOp::unlock) {
        unlock_token(job.mailbox_id, job.token);
        return;
    }
    auto it = watchers_.find(job.mailbox_id);
    if (it == watchers_.end()) return;
    std::vector<Watcher>& list = it->second.watchers;
    for (std::size_t i = 0; i < list.size(); ++i) {
        if (list[i].shard == job.origin && list[i].client == job.client) {
            list.erase(list.begin() + static_cast<std::ptrdiff_t>(i));
            break;
        }
    }
    if (list.empty()) watchers_.erase(it);
}

bool MailAccess::execute_mutation(AccessJob& job) {
    storage::MailStore& store = mail_.store();
    const AccessRequest& r = job.request;
    AccessReply& reply = job.reply;
    if (Status s = store.failed(); s != Status::ok) {
        reply.status = s;
        return false;
    }
    if (r.op == AccessOp::expunge || r.op == AccessOp::move || r.op == AccessOp::release) {
        // The event names only UIDs that existed.
        std::vector<std::uint32_t> present;
        for (std::uint32_t uid : r.uids) {
            if (store.message(r.account, r.mailbox, uid)) present.push_back(uid);
        }
        job.request.uids = std::move(present);
    }
    store.txn_begin();
    Status status = Status::ok;
    switch (r.op) {
        case AccessOp::flags_set: {
            auto m = store.flags_set(r.account, r.mailbox, r.uids, r.mode, r.flags, r.keywords);
            status = m.status();
            if (!m) break;
            reply.modseq = *m;
            // The new values, for the caller and the watchers (read now: the index holds
            // them already; they become visible to others only after durability).
            const std::uint64_t id = mailbox_id(r.account, r.mailbox);
            const storage::Mailbox* box = store.index().mailbox(id);
            if (box == nullptr) break;
            bool keywords = false;
            reply.changed.messages.reserve(r.uids.size());
            for (std::uint32_t uid : r.uids) {
                const storage::Message* message = box->find(uid);
                if (message == nullptr) continue;
                reply.changed.messages.push_back(entry_of(*message));
                keywords = keywords || has_keywords(message->keywords);
            }
            if (keywords) reply.changed.keyword_names = keyword_names_of(store.index(), r.account);
            break;
        }
        case AccessOp::expunge:
        case AccessOp::release: {
            auto m = store.expunge(r.account, r.mailbox, r.uids);
            status = m.status();
            if (m) reply.modseq = *m;
            break;
        }
        case AccessOp::append: {
            const std::span<const std::byte> bytes(
                reinterpret_cast<const std::byte*>(r.bytes.data()), r.bytes.size());
            auto body = store.body_put(bytes);
            status = body.status();
            if (!body) break;
            storage::MailStore::AppendArgs args;
            args.body = *body;
            args.size = r.bytes.size();
            args.flags = r.flags;
            args.keywords = r.keywords;
            args.internal_date = r.internal_date != 0
                                     ? r.internal_date
                                     : mail_.shard().reactor().clock().wall_seconds();
            auto uid = store.message_append(r.account, r.mailbox, args);
            status = uid.status();
            if (uid) reply.uid = *uid;
            break;
        }
        case AccessOp::copy:
        case AccessOp::move: {
            auto map = r.op == AccessOp::copy
                           ? store.message_copy(r.account, r.mailbox, r.uids, r.target)
                           : store.message_move(r.account, r.mailbox, r.uids, r.target);
            status = map.status();
            if (map) reply.uid_map = std::move(map.value());
            break;
        }
        case AccessOp::create: {
            auto id = store.mailbox_create(r.account, r.mailbox, r.special_use);
            status = id.status();
            break;
        }
        case AccessOp::rename:
            status = store.mailbox_rename(r.account, r.mailbox, r.target);
            break;
        case AccessOp::remove:
            status = store.mailbox_delete(r.account, r.mailbox);
            break;
        case AccessOp::subscribe:
        case AccessOp::unsubscribe:
            status = store.mailbox_subscribe(r.account, r.mailbox, r.op == AccessOp::subscribe);
            break;
        default:
            RP_ASSERT(false);
    }
    if (r.op == AccessOp::append && status == Status::ok) {
        auto info = store.mailbox_status(r.account, r.mailbox);
        if (info) reply.uidvalidity = info->uidvalidity;
    } else if ((r.op == AccessOp::copy || r.op == AccessOp::move) && status == Status::ok) {
        auto info = store.mailbox_status(r.account, r.target);
        if (info) reply.uidvalidity = info->uidvalidity;
    }
    if (status != Status::ok) {
        // Operations that succeeded inside the transaction are kept (none did here but the
        // body of a failed append, which GC collects).
        if (store.in_txn()) (void)store.txn_commit(nullptr);
        reply.status = status;
        return false;
    }
    auto lsn = store.txn_commit(&job);
    if (!lsn) {
        reply.status = lsn.status();
        return false;
    }
    // A commit that wrote nothing is durable with the previous one: the store runs `done`
    // only while that one is pending.
    if (store.is_durable(*lsn)) {
        reply.status = Status::ok;
        return false;
    }
    return true;
}

void MailAccess::after_durable(std::unique_ptr<AccessJob> job, Status status) {
    job->reply.status = status;
    job->executor = nullptr;
    if (status == Status::ok) {
        const AccessRequest& r = job->request;
        MailboxEvent event;
        event.account = r.account;
        event.mailbox = r.mailbox;
        event.mailbox_id = mailbox_id(r.account, r.mailbox);
        switch (r.op) {
            case AccessOp::flags_set:
                notify_flags(*job);
                break;
            case AccessOp::expunge:
            case AccessOp::move:
            case AccessOp::release:
                if (!r.uids.empty()) {
                    event.kind = MailboxEvent::Kind::expunge;
                    event.uids = r.uids;
                    event.modseq = job->reply.modseq;
                    notify(std::move(event));
                }
                if (r.op == AccessOp::move) notify_exists(r.account, r.target);
                break;
            case AccessOp::append:
                notify_exists(r.account, r.mailbox);
                break;
            case AccessOp::copy:
                notify_exists(r.account, r.target);
                break;
            default:
                break;
        }
    }
    finished(std::move(job));
}

void MailAccess::finished(std::unique_ptr<AccessJob> job) {
    RP_ASSERT(job->owner == shard_index());
    // POP3 UPDATE: the lock goes before the reply does, whatever the expunge's outcome.
    if (job->request.op == AccessOp::release) unlock_token(job->mailbox_id, job->token);
    job->replied = true;
    if (job->origin == shard_index()) {
        local_jobs_.push_back(std::move(job));
        mail_.shard().reactor().defer(*this);
        return;
    }
    const unsigned origin = job->origin;
    route(origin, cross_reply, job.release());
}

void MailAccess::delivered(const std::string& account, std::string_view mailbox) {
    notify_exists(account, mailbox);
}

// Tells the watchers about every visible message above the UID they were last told about:
// one event per change, or fewer when changes came together (never a message left out).
void MailAccess::notify_exists(std::string_view account, std::string_view mailbox) {
    const std::uint64_t id = mailbox_id(account, mailbox);
    auto watched = watchers_.find(id);
    if (id == 0 || watched == watchers_.end()) return;
    const storage::MailStore& store = mail_.store();
    const storage::Mailbox* box = store.index().mailbox(id);
    auto info = store.mailbox_status(account, mailbox);
    if (box == nullptr || !info) return;
    MailboxEvent event;
    event.kind = MailboxEvent::Kind::exists;
    event.mailbox_id = id;
    event.account = std::string(account);
    event.mailbox = std::string(mailbox);
    event.uidnext = info->uidnext;
    event.message_count = info->message_count;
    event.modseq = info->highest_modseq;
    const storage::Lsn durable = store.durable_lsn();
    std::uint32_t& told = watched->second.uid_told;
    auto from = std::upper_bound(box->messages.begin(), box->messages.end(), told,
                                 [](std::uint32_t u, const storage::Message& m) { return u < m.uid; });
    bool keywords = false;
    for (auto m = from; m != box->messages.end(); ++m) {
        // Messages still waiting for durability are told when their own commit is durable;
        // UIDs are told in order, so the first invisible one ends this event.
        if (m->visible_lsn > durable) break;
        event.messages.push_back(entry_of(*m));
        keywords = keywords || has_keywords(m->keywords);
    }
    if (event.messages.empty()) return;
    told = event.messages.back().uid;
    if (keywords) event.keyword_names = keyword_names_of(store.index(), account);
    notify(std::move(event));
}

void MailAccess::notify_flags(const AccessJob& job) {
    const AccessRequest& r = job.request;
    MailboxEvent event;
    event.kind = MailboxEvent::Kind::flags;
    event.account = r.account;
    event.mailbox = r.mailbox;
    event.mailbox_id = mailbox_id(r.account, r.mailbox);
    event.modseq = job.reply.modseq;
    if (!watchers_.contains(event.mailbox_id)) return;
    event.messages = job.reply.changed.messages;
    event.keyword_names = job.reply.changed.keyword_names;
    event.uids.reserve(event.messages.size());
    for (const MessageEntry& m : event.messages) event.uids.push_back(m.uid);
    notify(std::move(event));
}

void MailAccess::notify(MailboxEvent event) {
    auto it = watchers_.find(event.mailbox_id);
    if (it == watchers_.end()) return;
    const std::vector<Watcher>& list = it->second.watchers;
    for (std::size_t i = 0; i < list.size(); ++i) {
        const Watcher& w = list[i];
        auto job = std::make_unique<EventJob>();
        job->cluster = &cluster_;
        job->client = w.client;
        // The last watcher takes the event itself.
        job->event = i + 1 == list.size() ? std::move(event) : event;
        ++stats_.events_sent;
        if (w.shard == shard_index()) {
            local_events_.push_back(std::move(job));
            mail_.shard().reactor().defer(*this);
        } else {
            route(w.shard, cross_event, job.release());
        }
    }
}

// ---- BodyReader ----

BodyReader::BodyReader(Io& io, storage::BodyHandle handle, BodyReaderDone& done)
    : io_(io), handle_(std::move(handle)), done_(&done) {}

BodyReader* BodyReader::start(Io& io, storage::BodyHandle handle, BodyReaderDone& done) {
    RP_ASSERT(!handle.pieces.empty());
    auto* reader = new BodyReader(io, std::move(handle), done);
    reader->next();
    return reader;
}

void BodyReader::next() {
    RP_ASSERT(!reading_);
    RP_ASSERT(!cancelled_);
    RP_ASSERT(piece_index_ < handle_.pieces.size());
    const storage::Extent& extent = handle_.pieces[piece_index_].extent;
    record_.resize(storage::record_bytes(extent.bytes));
    record_filled_ = 0;
    reading_ = true;
    read_more();
}

void BodyReader::read_more() {
    const storage::Extent& extent = handle_.pieces[piece_index_].extent;
    // bounds: record_filled_ < record_.size() <= record_bytes(chunk max), well below 2^32.
    const auto left = static_cast<std::uint32_t>(record_.size() - record_filled_);
    io_.read(handle_.pieces[piece_index_].fd(), record_.data() + record_filled_, left,
             std::uint64_t{extent.offset} + record_filled_, *this);
}

void BodyReader::io_done(Status status, std::uint32_t bytes) {
    RP_ASSERT(reading_);
    if (cancelled_) {
        delete this;
        return;
    }
    if (status == Status::ok && bytes == 0) status = Status::truncated;  // EOF inside a record.
    if (status != Status::ok) {
        reading_ = false;
        done_->body_piece(status, {}, true);
        return;
    }
    record_filled_ += bytes;
    if (record_filled_ < record_.size()) {
        read_more();
        return;
    }
    reading_ = false;
    const storage::Extent& extent = handle_.pieces[piece_index_].extent;
    auto payload = storage::extent_verify(extent, record_);
    if (!payload) {
        log::error("body {}:{}: chunk in segment {} at offset {} fails its checksum",
                   handle_.ref.shard, handle_.ref.id, extent.segment_id, extent.offset);
        done_->body_piece(payload.status(), {}, true);
        return;
    }
    ++piece_index_;
    done_->body_piece(Status::ok, *payload, piece_index_ == handle_.pieces.size());
}

void BodyReader::cancel() {
    RP_ASSERT(!cancelled_);
    if (reading_) {
        cancelled_ = true;  // The kernel still owns record_: free it at the completion.
        return;
    }
    delete this;
}

// ---- BodySplicer ----

bool BodySplicer::start(SessionOutput& out, storage::BodyHandle& handle, std::uint64_t offset,
                        std::uint64_t bytes, MailAccessStats& stats) {
    RP_ASSERT(out_ == nullptr);
    RP_ASSERT(bytes > 0);
    RP_ASSERT(offset + bytes <= handle.bytes);  // bounds: both below the body's size.
    if (out.tls_active()) return false;
    out_ = &out;
    stats_ = &stats;
    handle_ = std::move(handle);
    piece_index_ = 0;
    piece_position_ = 0;
    offset_ = offset;
    bytes_ = bytes;
    queued_ = 0;
    // Skip the extents before the range.
    while (piece_index_ < handle_.pieces.size() &&
           piece_position_ + handle_.pieces[piece_index_].extent.bytes <= offset_) {
        piece_position_ += handle_.pieces[piece_index_].extent.bytes;
        ++piece_index_;
    }
    if (!send_piece()) {
        handle = std::move(handle_);
        handle_ = {};
        out_ = nullptr;
        return false;
    }
    ++stats_->bodies_spliced;
    return true;
}

bool BodySplicer::send_piece() {
    RP_ASSERT(piece_index_ < handle_.pieces.size());
    RP_ASSERT(bytes_ > 0);
    const storage::BodyHandle::Piece& piece = handle_.pieces[piece_index_];
    RP_ASSERT(offset_ >= piece_position_);
    const std::uint64_t skip = offset_ - piece_position_;
    RP_ASSERT(skip < piece.extent.bytes);
    const std::uint64_t n = std::min<std::uint64_t>(piece.extent.bytes - skip, bytes_);
    if (!out_->send_file(piece.fd(), piece.data_offset() + skip, n, *this)) return false;
    queued_ = n;
    return true;
}

void BodySplicer::file_sent(Status status) {
    RP_ASSERT(out_ != nullptr);
    if (status != Status::ok) {
        // The session is closing. The splice in flight, if any, holds its own reference to
        // the file; the pins go now.
        out_ = nullptr;
        handle_ = {};
        done_.splice_done(status);
        return;
    }
    stats_->bytes_spliced += queued_;
    offset_ += queued_;  // bounds: queued_ <= bytes_, and offset_ + bytes_ <= the body size.
    bytes_ -= queued_;
    queued_ = 0;
    if (bytes_ == 0) {
        out_ = nullptr;
        handle_ = {};
        done_.splice_done(Status::ok);
        return;
    }
    piece_position_ += handle_.pieces[piece_index_].extent.bytes;
    ++piece_index_;
    if (!send_piece()) {
        out_ = nullptr;
        done_.splice_done(Status::again);
    }
}

storage::BodyHandle BodySplicer::rest(std::uint64_t& position, std::uint64_t& offset,
                                      std::uint64_t& bytes) {
    RP_ASSERT(out_ == nullptr);
    RP_ASSERT(bytes_ > 0);
    storage::BodyHandle rest = std::move(handle_);
    handle_ = {};
    rest.pieces.erase(rest.pieces.begin(),
                      rest.pieces.begin() + static_cast<std::ptrdiff_t>(piece_index_));
    position = piece_position_;
    offset = offset_;
    bytes = bytes_;
    return rest;
}

}  // namespace rp::mail
