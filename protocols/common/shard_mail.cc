#include "protocols/common/shard_mail.h"

#include <fcntl.h>
#include <unistd.h>

#include <time.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "core/log.h"

namespace rp::mail {

namespace {

constexpr std::uint32_t cross_deliver = 1;  // Origin -> owner: deliver into INBOX.
constexpr std::uint32_t cross_ack = 2;      // Owner -> origin: the delivery is durable.
// Message ids: the shard in the top 8 bits, then the wall clock in units of 2^-24 s (about
// 60 ns; fits in 56 bits until 2106). Each id takes the next unit, or the current time when
// that is later, so ids only grow and stay behind the clock while fewer than 16 million are
// made per second: a restart, however soon, starts above every id issued before it. (Ids
// restarted from the wall-clock second once reused ids after a quick restart, and delivery
// keys then dropped new mail as duplicates.)
constexpr unsigned id_shard_shift = 56;
constexpr std::uint64_t id_low_mask = (std::uint64_t{1} << id_shard_shift) - 1;
constexpr unsigned id_units_per_second_log2 = 24;

// Read from the real-time clock itself: Clock offers whole seconds only.
std::uint64_t id_clock_units() {
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    const auto seconds = static_cast<std::uint64_t>(ts.tv_sec);
    const auto fraction = (static_cast<std::uint64_t>(ts.tv_nsec) << id_units_per_second_log2) /
                          1'000'000'000u;
    return ((seconds << id_units_per_second_log2) | fraction) & id_low_mask;
}

}  // namespace

// One cross-shard delivery. Travels by pointer in a CrossMessage: whoever holds it owns it.
struct ShardMail::Delivery {
    MailCluster* cluster = nullptr;
    std::string account;
    storage::BodyRef body;
    std::uint64_t body_bytes = 0;
    std::int64_t internal_date = 0;
    std::uint64_t spool_id = 0;
    std::uint32_t rcpt_index = 0;
    unsigned origin = 0;
    Status result = Status::ok;
};

// Runs when an accept transaction is durable: tells the caller, then posts the deliveries
// to the shards that own their mailboxes (the body is durable now, so they may refer to it).
struct ShardMail::AcceptedWait final : storage::DurableDone {
    ShardMail& mail;
    storage::DurableDone& caller;
    std::vector<std::pair<unsigned, std::unique_ptr<Delivery>>> posts;
    std::vector<std::string> local_accounts;  // Delivered here, for the observer.
    std::uint64_t remote_spool_id = 0;        // The spool entry has remote recipients.

    AcceptedWait(ShardMail& m, storage::DurableDone& c) : mail(m), caller(c) {}
    void durable(Status status) override {
        caller.durable(status);
        if (status == Status::ok) {
            for (auto& [to, delivery] : posts) mail.post_or_queue(to, std::move(delivery), false);
            if (mail.observer_ != nullptr) {
                for (const auto& account : local_accounts) mail.observer_->delivered(account, "INBOX");
            }
            if (remote_spool_id != 0 && mail.spool_observer_ != nullptr) {
                mail.spool_observer_->spooled(remote_spool_id);
            }
        }
        delete this;
    }
};

// On the owner shard: runs when a delivery is durable, then answers the origin.
struct ShardMail::DeliveredWait final : storage::DurableDone {
    ShardMail& mail;
    std::unique_ptr<Delivery> delivery;

    DeliveredWait(ShardMail& m, std::unique_ptr<Delivery> d) : mail(m), delivery(std::move(d)) {}
    void durable(Status status) override {
        delivery->result = status;
        if (status == Status::ok) ++mail.stats_.delivered_cross;
        if (status == Status::ok && mail.observer_ != nullptr) {
            mail.observer_->delivered(delivery->account, "INBOX");
        }
        const unsigned origin = delivery->origin;
        if (origin == mail.shard_index()) {
            mail.delivered_ack(std::move(delivery));
        } else {
            mail.post_or_queue(origin, std::move(delivery), true);
        }
        delete this;
    }
};

namespace {

// Commits the open transaction and makes sure `done` runs exactly once: the store runs it
// only when the commit is not durable yet (an idempotent re-delivery writes nothing).
Status commit_notify(storage::MailStore& store, storage::DurableDone& done) {
    auto lsn = store.txn_commit(&done);
    if (!lsn) return lsn.status();
    if (store.is_durable(*lsn)) done.durable(Status::ok);
    return Status::ok;
}

}  // namespace

ShardMail::ShardMail(Shard& shard, MailCluster& cluster,
                     std::shared_ptr<const smtp::Directory> directory)
    : shard_(shard), cluster_(cluster), directory_(std::move(directory)) {}

ShardMail::~ShardMail() {
    if (Timer::armed()) shard_.reactor().timer_cancel(*this);
    shard_.reactor().remove_tick(*this);
    cluster_.set(shard_.index(), nullptr);
}

Status ShardMail::check_layout(const std::string& data_dir, unsigned shard_count,
                               std::string* error) {
    const std::string path = data_dir + "/layout";
    std::ifstream in(path);
    if (in) {
        std::string word;
        unsigned count = 0;
        in >> word >> count;
        if (word != "shards" || count == 0) {
            *error = path + ": unreadable layout (expected \"shards N\")";
            return Status::corrupt;
        }
        if (count != shard_count) {
            *error = data_dir + " was made with " + std::to_string(count) +
                     " shards; set server.cores = " + std::to_string(count) +
                     " (accounts are spread over shards by hash)";
            return Status::invalid;
        }
        return Status::ok;
    }
    const std::string tmp = path + ".tmp";
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0) {
        *error = "cannot write " + tmp;
        return status_from_errno(errno);
    }
    const std::string text = "shards " + std::to_string(shard_count) + "\n";
    const bool written = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) &&
                         ::fsync(fd) == 0;
    ::close(fd);
    if (!written || ::rename(tmp.c_str(), path.c_str()) != 0) {
        *error = "cannot write " + path;
        return Status::io;
    }
    return Status::ok;
}

Result<std::unique_ptr<ShardMail>> ShardMail::open(Shard& shard, MailCluster& cluster,
                                                   std::shared_ptr<const smtp::Directory> directory,
                                                   const std::string& data_dir,
                                                   std::string* error,
                                                   const storage::StoreOptions& store_options) {
    std::unique_ptr<ShardMail> mail(new ShardMail(shard, cluster, std::move(directory)));
    storage::StoreOptions options = store_options;
    options.dir = data_dir + "/shard-" + std::to_string(shard.index());
    options.shard = static_cast<std::uint16_t>(shard.index());
    auto store = storage::MailStore::open(shard.io(), shard.reactor().clock(), options);
    if (!store) {
        *error = "cannot open store " + options.dir + ": " + std::string(status_name(store.status()));
        return store.status();
    }
    mail->store_ = std::move(store.value());
    const auto& report = mail->store_->open_report();
    log::info("shard {}: store {} opened: {} records replayed, {} torn bytes cut, {} uncommitted "
              "transactions discarded, {} damaged records",
              shard.index(), options.dir, report.records_replayed, report.torn_bytes,
              report.txns_discarded, report.damage.size());
    for (const auto& damage : report.damage) {
        log::error("shard {}: damaged record in segment {} at offset {}: {} ({})", shard.index(),
                   damage.segment_id, damage.offset, damage.what, status_name(damage.error));
    }
    if (Status s = mail->accounts_create(*mail->directory_, false); s != Status::ok) {
        *error = "cannot create accounts: " + std::string(status_name(s));
        return s;
    }
    // Never below an id this store still holds, even if the clock stepped back.
    std::uint64_t low = 0;
    for (const auto& [id, entry] : mail->store_->spool_all()) {
        if ((id >> id_shard_shift) == shard.index()) low = std::max(low, (id & id_low_mask) + 1);
    }
    mail->next_id_low_ = low;
    cluster.set(shard.index(), mail.get());
    shard.reactor().add_tick(*mail);
    ShardMail* self = mail.get();
    shard.on_stop([self](Shard&) { self->log_commit_stats(); });
    // Accounts created above are staged: make them durable now rather than at the first
    // tick, which only runs once some event wakes the loop.
    mail->on_tick();
    return mail;
}

// The accounts of `directory` that this shard owns get their mailboxes (INBOX, Sent, ...).
Status ShardMail::accounts_create(const smtp::Directory& directory, bool announce) {
    Status first_failure = Status::ok;
    for (const smtp::Account& account : directory.accounts()) {
        if (account.owner_shard != shard_.index()) continue;
        if (store_->account_exists(account.address)) continue;
        const Status s = store_->account_create(account.address);
        if (s == Status::ok) {
            if (announce) log::info("shard {}: account {} created", shard_.index(), account.address);
        } else {
            log::error("shard {}: cannot create account {}: {}", shard_.index(), account.address,
                       status_name(s));
            if (first_failure == Status::ok) first_failure = s;
        }
    }
    return first_failure;
}

Status ShardMail::directory_update(std::shared_ptr<const smtp::Directory> next) {
    RP_ASSERT(next != nullptr);
    RP_ASSERT(next->shard_count() == directory_->shard_count());
    const Status status = accounts_create(*next, true);
    directories_retired_.push_back(std::move(directory_));
    directory_ = std::move(next);
    return status;
}

// One line per shard at stop: what bounded the durable-reply latency (flush time) and how
// well commits were batched.
void ShardMail::log_commit_stats() const {
    if (stats_.flushes == 0) return;
    std::string histogram;
    for (unsigned k = 0; k < stats_.flush_ns_buckets; ++k) {
        if (stats_.flush_ns_histogram[k] == 0) continue;
        histogram += " <" + std::to_string((64u << (k + 1)) / 1000.0).substr(0, 5) + "ms:" +
                     std::to_string(stats_.flush_ns_histogram[k]);
    }
    log::info("shard {}: group commit: {} flushes, {} commits (max {} per flush), flush mean {} "
              "us, max {} us;{}",
              shard_index(), stats_.flushes, stats_.flushed_commits, stats_.flush_commits_max,
              stats_.flush_ns_total / stats_.flushes / 1000, stats_.flush_ns_max / 1000,
              histogram);
}

std::uint64_t ShardMail::next_message_id() {
    const std::uint64_t low = std::max(next_id_low_, id_clock_units());
    next_id_low_ = low + 1;
    RP_ASSERT(shard_.index() < (1u << (64 - id_shard_shift)));
    return (std::uint64_t{shard_.index()} << id_shard_shift) | (low & id_low_mask);
}

std::string ShardMail::queue_id_text(std::uint64_t message_id) {
    char text[24];
    std::snprintf(text, sizeof text, "%014" PRIX64, message_id);
    return text;
}

Status ShardMail::accept(const AcceptArgs& args, storage::DurableDone& done) {
    RP_ASSERT(!args.recipients.empty());
    RP_ASSERT(!args.body.empty());
    auto* wait = new AcceptedWait(*this, done);
    storage::SpoolEntry spool;
    spool.id = args.message_id;
    spool.sender = args.sender;
    spool.body = args.body;
    spool.body_bytes = args.body_bytes;
    spool.arrival = shard_.reactor().clock().wall_seconds();
    spool.client = args.client;

    store_->txn_begin();
    Status failure = Status::ok;
    bool remote = false;
    for (const AcceptRecipient& r : args.recipients) {
        remote = remote || r.account == nullptr;
        if (r.account != nullptr && r.account->owner_shard == shard_index()) {
            storage::MailStore::AppendArgs append;
            append.body = args.body;
            append.size = args.body_bytes;
            append.internal_date = spool.arrival;
            const storage::DeliveryKey key{args.message_id, r.account->address};
            auto uid = store_->deliver(r.account->address, "INBOX", key, append);
            if (!uid) {
                failure = uid.status();
                break;
            }
            ++stats_.delivered_local;
            wait->local_accounts.push_back(r.account->address);
            continue;
        }
        storage::SpoolRecipient sr;
        sr.address = r.account != nullptr ? r.account->address : r.address;
        sr.next_attempt = spool.arrival;
        if (r.account != nullptr) {
            auto delivery = std::make_unique<Delivery>();
            delivery->account = r.account->address;
            delivery->body = args.body;
            delivery->body_bytes = args.body_bytes;
            delivery->internal_date = spool.arrival;
            delivery->spool_id = args.message_id;
            delivery->rcpt_index = static_cast<std::uint32_t>(spool.recipients.size());
            delivery->origin = shard_index();
            delivery->cluster = &cluster_;
            wait->posts.emplace_back(r.account->owner_shard, std::move(delivery));
        }
        spool.recipients.push_back(std::move(sr));
    }
    if (failure == Status::ok && !spool.recipients.empty()) {
        auto id = store_->spool_add(std::move(spool));
        if (!id) failure = id.status();
        if (id && remote) wait->remote_spool_id = *id;
    }
    if (failure == Status::ok) failure = commit_notify(*store_, *wait);
    if (failure == Status::ok) commit_staged();
    if (failure != Status::ok) {
        // The store keeps the operations that succeeded inside an open transaction; commit
        // nothing more and report. A poisoned store fails everything after this too.
        if (store_->in_txn()) (void)store_->txn_commit(nullptr);
        delete wait;
        return failure;
    }
    ++stats_.accepted;
    return Status::ok;
}

void ShardMail::post_or_queue(unsigned to, std::unique_ptr<Delivery> delivery, bool answer) {
    if (!backlog_.empty()) {
        backlog_.push_back({to, answer, std::move(delivery)});
        return;
    }
    CrossMessage message;
    message.handler = &ShardMail::on_cross;
    message.discard = &ShardMail::on_discard;
    message.kind = answer ? cross_ack : cross_deliver;
    message.pointer = delivery.get();
    if (shard_.post(to, message) == Status::ok) {
        (void)delivery.release();  // The receiver owns it now.
        return;
    }
    ++stats_.post_retries;
    backlog_.push_back({to, answer, std::move(delivery)});
}

// The owner had stopped before it could take the delivery: the spool re-drives it at the
// next start, so only the memory goes.
void ShardMail::on_discard(const CrossMessage& message) {
    delete static_cast<Delivery*>(message.pointer);
}

void ShardMail::on_cross(Shard& to, const CrossMessage& message) {
    std::unique_ptr<Delivery> delivery(static_cast<Delivery*>(message.pointer));
    ShardMail* self = delivery->cluster->get(to.index());
    if (self == nullptr) return;  // Shutting down: the spool re-drives it at the next start.
    if (message.kind == cross_deliver) {
        self->deliver_here(std::move(delivery));
    } else {
        self->delivered_ack(std::move(delivery));
    }
}

void ShardMail::deliver_here(std::unique_ptr<Delivery> delivery) {
    storage::MailStore::AppendArgs append;
    append.body = delivery->body;
    append.size = delivery->body_bytes;
    append.internal_date = delivery->internal_date;
    const storage::DeliveryKey key{delivery->spool_id, delivery->account};
    const std::string account = delivery->account;
    // After a SIGHUP the origin may know a new account before this shard has reloaded: the
    // owner is a hash of the name, so the account is ours; make it now.
    if (!store_->account_exists(account) &&
        smtp::Directory::owner_of(account, directory_->shard_count()) == shard_index()) {
        if (store_->account_create(account) == Status::ok) {
            log::info("shard {}: account {} created for a delivery", shard_index(), account);
        }
    }
    auto* wait = new DeliveredWait(*this, std::move(delivery));
    store_->txn_begin();
    auto uid = store_->deliver(account, "INBOX", key, append);
    Status status = uid.ok() ? commit_notify(*store_, *wait) : uid.status();
    if (status == Status::ok) commit_staged();
    if (!uid.ok()) {
        if (store_->in_txn()) (void)store_->txn_commit(nullptr);
        log::error("shard {}: delivery of {} to {} failed: {}; retried at the next start",
                   shard_index(), queue_id_text(wait->delivery->spool_id), account,
                   status_name(status));
        wait->durable(status);
    } else if (status != Status::ok) {
        wait->durable(status);
    }
}

void ShardMail::delivered_ack(std::unique_ptr<Delivery> delivery) {
    if (delivery->result != Status::ok) return;  // Stays pending: re-driven at the next start.
    const storage::SpoolEntry* entry = store_->spool_get(delivery->spool_id);
    if (entry == nullptr || delivery->rcpt_index >= entry->recipients.size()) return;
    const std::uint32_t attempts = entry->recipients[delivery->rcpt_index].attempts + 1;
    Status s = store_->spool_update(delivery->spool_id, delivery->rcpt_index,
                                    storage::RcptState::delivered, 0, attempts,
                                    "250 2.0.0 delivered to INBOX");
    if (s != Status::ok) {
        log::error("shard {}: spool update of {} failed: {}", shard_index(),
                   queue_id_text(delivery->spool_id), status_name(s));
        return;
    }
    entry = store_->spool_get(delivery->spool_id);
    bool all_final = true;
    for (const auto& r : entry->recipients) all_final = all_final && storage::rcpt_state_final(r.state);
    if (all_final) (void)store_->spool_remove(delivery->spool_id);
}

// Pending recipients of local mailboxes left in the spool by a crash (or a stop) are
// delivered again; delivery keys make a second delivery of the same message a no-op.
void ShardMail::redrive() {
    std::vector<std::pair<unsigned, std::unique_ptr<Delivery>>> work;
    for (const auto& [id, entry] : store_->spool_all()) {
        for (std::uint32_t i = 0; i < entry.recipients.size(); ++i) {
            const auto& r = entry.recipients[i];
            if (r.state != storage::RcptState::pending) continue;
            const smtp::Account* account = directory_->find_account(r.address);
            if (account == nullptr) continue;  // A remote recipient: the relay's.
            auto delivery = std::make_unique<Delivery>();
            delivery->cluster = &cluster_;
            delivery->account = account->address;
            delivery->body = entry.body;
            delivery->body_bytes = entry.body_bytes;
            delivery->internal_date = entry.arrival;
            delivery->spool_id = id;
            delivery->rcpt_index = i;
            delivery->origin = shard_index();
            work.emplace_back(account->owner_shard, std::move(delivery));
        }
    }
    if (!work.empty()) {
        log::info("shard {}: re-driving {} pending local deliveries", shard_index(), work.size());
    }
    for (auto& [to, delivery] : work) {
        if (to == shard_index()) {
            deliver_here(std::move(delivery));
        } else {
            post_or_queue(to, std::move(delivery), false);
        }
    }
}

void ShardMail::on_tick() {
    if (redrive_pending_) {
        redrive_pending_ = false;
        redrive();
    }
    while (!backlog_.empty()) {
        Backlog& next = backlog_.front();
        CrossMessage message;
        message.handler = &ShardMail::on_cross;
        message.discard = &ShardMail::on_discard;
        message.kind = next.answer ? cross_ack : cross_deliver;
        message.pointer = next.delivery.get();
        if (shard_.post(next.to, message) != Status::ok) break;  // Still full: next tick.
        (void)next.delivery.release();
        backlog_.pop_front();
    }
    // Group commit: everything staged since the last flush goes in one writev + fdatasync.
    // While a flush is in flight new work keeps staging, so batches grow with the load.
    if (store_->failed() != Status::ok) return;
    const std::uint64_t now = shard_.reactor().now_ns();
    const CommitDecision decision =
        commit_decide(policy_, now, store_->flush_slots_full(), store_->staged_bytes(), staged_commits_,
                      oldest_staged_ns_);
    if (decision.action == CommitAction::flush) {
        flush_start();
    } else if (decision.action == CommitAction::wait) {
        shard_.reactor().timer_arm(*this, decision.deadline_ns - now);
    }
}

CommitDecision commit_decide(const CommitPolicy& policy, std::uint64_t now_ns, bool flushing,
                             std::uint64_t staged_bytes, unsigned staged_commits,
                             std::uint64_t oldest_ns) {
    RP_ASSERT(policy.batch_max > 0);
    if (staged_bytes == 0) return {};
    if (!flushing) return {CommitAction::flush, 0};
    if (staged_commits == 0) return {};  // No reply waits on it: it goes with the next batch.
    if (staged_commits >= policy.batch_max) return {CommitAction::flush, 0};
    RP_ASSERT(oldest_ns <= now_ns);
    // bounds: oldest_ns <= now_ns (asserted) and the window is at most 1 s (config_parse).
    const std::uint64_t deadline = oldest_ns + policy.window_ns;
    if (deadline <= now_ns) return {CommitAction::flush, 0};
    return {CommitAction::wait, deadline};
}

// A transaction whose caller waits for durability was staged.
void ShardMail::commit_staged() {
    if (staged_commits_ == 0) oldest_staged_ns_ = shard_.reactor().now_ns();
    ++staged_commits_;
}

void ShardMail::flush_start() {
    const Status s = store_->flush(this);
    if (s == Status::busy) {
        // Every slot in flight (or a batch that must run alone, or a pre-write in its way):
        // it goes when one is done.
        ++stats_.early_flush_refused;
        return;
    }
    if (s != Status::ok) {
        if (s != Status::again) {
            log::error("shard {}: store flush failed: {}", shard_index(), status_name(s));
        }
        return;
    }
    ++stats_.flushes;
    stats_.flushed_commits += staged_commits_;
    stats_.flush_commits_max = std::max<std::uint64_t>(stats_.flush_commits_max, staged_commits_);
    staged_commits_ = 0;
    flush_starts_ns_.push_back(shard_.reactor().now_ns());
    if (Timer::armed()) shard_.reactor().timer_cancel(*this);
}

void ShardMail::flush_done(Status /*status*/) {
    RP_ASSERT(!flush_starts_ns_.empty());  // The store completes flushes in order.
    const std::uint64_t ns = shard_.reactor().now_ns() - flush_starts_ns_.front();
    flush_starts_ns_.pop_front();
    stats_.flush_ns_total += ns;
    stats_.flush_ns_max = std::max(stats_.flush_ns_max, ns);
    unsigned bucket = 0;
    for (std::uint64_t units = ns / 64'000; units > 1 && bucket + 1 < stats_.flush_ns_buckets;
         units >>= 1) {
        ++bucket;
    }
    ++stats_.flush_ns_histogram[bucket];
}

void ShardMail::on_timer() { on_tick(); }

bool ShardMail::idle() const {
    return backlog_.empty() && !store_->flushing() &&
           (store_->staged_bytes() == 0 || store_->failed() != Status::ok);
}

}  // namespace rp::mail
