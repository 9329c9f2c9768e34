// protocols/common/shard_mail.h: one shard's mail service: its store, its group commit, and
// the hand-over of accepted messages to the mailboxes that own their recipients.
//
// Owns: the shard's MailStore (<data>/shard-N), the commit tick, the cross-shard delivery
//   backlog, the message-id counter.
// Core: the shard's thread only. Deliveries to mailboxes owned by another shard travel as
//   cross-core messages (MailCluster finds the ShardMail of each shard).
// Flow of an accepted message (DESIGN.md "One message, end to end"):
//   accept(): one store transaction holds the body, the deliveries to mailboxes this shard
//   owns (idempotent keys: message id + account), and a spool entry for every other
//   recipient (other shards' mailboxes: pending; remote domains: pending for the relay).
//   The commit tick flushes it (one writev + one fdatasync for everything staged); then the
//   caller's DurableDone runs (the SMTP session answers 250) and the cross-shard deliveries
//   are posted. The owner shard delivers, and once that is durable the spool marks the
//   recipient delivered. At start-up, pending local recipients in the spool are re-driven;
//   delivery keys make that idempotent.
// Errors: a store whose write or sync failed is poisoned: accept() answers its Status
//   (451 4.3.0 through the reply table) until the daemon restarts and recovery runs.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/shard.h"
#include "protocols/smtp/routing.h"
#include "storage/mail_store.h"

namespace rp::mail {

class ShardMail;

// The ShardMail of every shard, for cross-shard hand-over.
using MailCluster = ShardSlots<ShardMail>;

// Told after every durable delivery into a mailbox this shard owns (SMTP accept, cross-shard
// delivery, re-drive): mail_access.h wakes the mailbox's watchers (IMAP IDLE) with it.
class DeliveryObserver {
public:
    virtual void delivered(const std::string& account, std::string_view mailbox) = 0;

protected:
    ~DeliveryObserver() = default;
};

// Told when an accepted message with remote recipients is durable in the spool: the relay
// starts its delivery at once instead of at its next scan.
class SpoolObserver {
public:
    virtual void spooled(std::uint64_t spool_id) = 0;

protected:
    ~SpoolObserver() = default;
};

struct AcceptRecipient {
    std::string address;             // As given in RCPT TO (an account address when local).
    const smtp::Account* account;    // Null for a remote recipient (relay).
};

struct AcceptArgs {
    std::uint64_t message_id = 0;    // From next_message_id().
    storage::BodyRef body;
    std::uint64_t body_bytes = 0;
    std::string sender;              // Empty for the null sender.
    std::string client;              // "helo=<...> addr=<...>" for the spool and the log.
    std::vector<AcceptRecipient> recipients;
};

// Group commit ([engine] commit_window_us, commit_batch_max; [store] batches_inflight). A
// batch is flushed at once while the log has a free slot (up to batches_inflight batches
// write and sync side by side, storage/log.h); with every slot busy the next batch stages,
// and an early flush (batch_max commits, or its oldest commit waited window_ns) is refused
// as busy, so the batch goes out the moment a slot frees.
struct CommitPolicy {
    std::uint64_t window_ns = 1'000'000;
    unsigned batch_max = 256;
};

enum class CommitAction { idle, flush, wait };

struct CommitDecision {
    CommitAction action = CommitAction::idle;
    std::uint64_t deadline_ns = 0;  // For wait: when to decide again.
};

// Pure: what the commit tick does now. `staged_commits` counts transactions staged since the
// last flush began; `oldest_ns` is when the first of them was staged; `staged_bytes` also
// counts work that is not a commit (spool updates), which flushes like one.
CommitDecision commit_decide(const CommitPolicy& policy, std::uint64_t now_ns, bool flushing,
                             std::uint64_t staged_bytes, unsigned staged_commits,
                             std::uint64_t oldest_ns);

struct ShardMailStats {
    std::uint64_t accepted = 0;
    std::uint64_t delivered_local = 0;
    std::uint64_t delivered_cross = 0;
    std::uint64_t flushes = 0;
    std::uint64_t post_retries = 0;
    // Group commit: commits per flush and flush durations (submit to durable), so the
    // operator sees what bounds the durable reply latency.
    std::uint64_t flushed_commits = 0;
    std::uint64_t flush_commits_max = 0;
    std::uint64_t flush_ns_total = 0;
    std::uint64_t flush_ns_max = 0;
    static constexpr unsigned flush_ns_buckets = 16;  // [2^k, 2^(k+1)) x 64 us.
    std::uint64_t flush_ns_histogram[flush_ns_buckets] = {};
    std::uint64_t early_flush_refused = 0;  // The log had a batch in flight already.
};

class ShardMail final : public ShardLocal, public TickHook, storage::FlushDone, Timer {
public:
    // Opens (and recovers) this shard's store, creates the accounts it owns, registers the
    // commit tick. On failure `error` holds one line.
    [[nodiscard]] static Result<std::unique_ptr<ShardMail>> open(
        Shard& shard, MailCluster& cluster, std::shared_ptr<const smtp::Directory> directory,
        const std::string& data_dir, std::string* error,
        const storage::StoreOptions& store_options = {});
    ~ShardMail() override;

    // Checks (or writes, for a new folder) <data>/layout: the shard count the data was made
    // with. Accounts are spread over shards by hash, so the count cannot change under data.
    [[nodiscard]] static Status check_layout(const std::string& data_dir, unsigned shard_count,
                                             std::string* error);

    storage::MailStore& store() { return *store_; }
    Shard& shard() { return shard_; }
    const smtp::Directory& directory() const { return *directory_; }
    // SIGHUP: creates the accounts of `next` this shard owns (staged; the commit tick makes
    // them durable), then serves `next`. The previous directory stays alive for the shard's
    // life: messages in flight hold Account pointers into it. Status of the first account
    // that could not be created (the others are still added).
    [[nodiscard]] Status directory_update(std::shared_ptr<const smtp::Directory> next);
    unsigned shard_index() const { return shard_.index(); }

    // Unique across shards and restarts, increasing: shard in the top 8 bits, then the wall
    // clock in 2^-24 s units (see shard_mail.cc).
    std::uint64_t next_message_id();
    static std::string queue_id_text(std::uint64_t message_id);

    // Stages the transaction described above; `done` runs once it is durable (or failed).
    // On a returned error nothing was staged and `done` will not run.
    [[nodiscard]] Status accept(const AcceptArgs& args, storage::DurableDone& done);

    // TickHook: group commit, and retries of cross-shard posts that met a full queue.
    void on_tick() override;
    bool idle() const override;

    const ShardMailStats& stats() const { return stats_; }
    // From [engine] at start and on SIGHUP.
    void set_commit_policy(const CommitPolicy& policy) { policy_ = policy; }
    const CommitPolicy& commit_policy() const { return policy_; }
    void log_commit_stats() const;
    // One observer at most (null: none). It must outlive its registration.
    void set_observer(DeliveryObserver* observer) { observer_ = observer; }
    void set_spool_observer(SpoolObserver* observer) { spool_observer_ = observer; }

private:
    struct Delivery;       // One cross-shard delivery in flight (owned by the message).
    struct AcceptedWait;   // Waits for an accept transaction, then posts deliveries.
    struct DeliveredWait;  // On the owner: waits for the delivery, then answers.

    ShardMail(Shard& shard, MailCluster& cluster, std::shared_ptr<const smtp::Directory> directory);
    void post_or_queue(unsigned to, std::unique_ptr<Delivery> delivery, bool answer);
    void deliver_here(std::unique_ptr<Delivery> delivery);
    void delivered_ack(std::unique_ptr<Delivery> delivery);
    void redrive();
    // `announce`: log each new account (a reload; not the thousands of a first start).
    Status accounts_create(const smtp::Directory& directory, bool announce);
    static void on_cross(Shard& to, const CrossMessage& message);
    static void on_discard(const CrossMessage& message);
    void commit_staged();
    void flush_start();
    void flush_done(Status status) override;  // storage::FlushDone.
    void on_timer() override;                 // Timer: an early-flush deadline.

    Shard& shard_;
    MailCluster& cluster_;
    std::shared_ptr<const smtp::Directory> directory_;
    std::vector<std::shared_ptr<const smtp::Directory>> directories_retired_;  // One per reload.
    std::unique_ptr<storage::MailStore> store_;
    std::uint64_t next_id_low_ = 0;
    bool redrive_pending_ = true;
    struct Backlog {
        unsigned to;
        bool answer;
        std::unique_ptr<Delivery> delivery;
    };
    std::deque<Backlog> backlog_;
    ShardMailStats stats_;
    DeliveryObserver* observer_ = nullptr;
    SpoolObserver* spool_observer_ = nullptr;
    CommitPolicy policy_;
    unsigned staged_commits_ = 0;       // Since the last flush began.
    std::uint64_t oldest_staged_ns_ = 0;
    std::deque<std::uint64_t> flush_starts_ns_;  // One per flush in flight, oldest first.
};

}  // namespace rp::mail
