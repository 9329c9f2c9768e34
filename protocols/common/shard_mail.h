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

// The ShardMail of every shard, for cross-shard hand-over. Each slot is written once by its
// own shard during set-up and read by handlers running on that same shard.
class MailCluster {
public:
    explicit MailCluster(unsigned shard_count) : slots_(shard_count) {}
    void set(unsigned shard, ShardMail* mail) { slots_[shard].store(mail, std::memory_order_release); }
    ShardMail* get(unsigned shard) const { return slots_[shard].load(std::memory_order_acquire); }
    unsigned shard_count() const { return static_cast<unsigned>(slots_.size()); }

private:
    std::vector<std::atomic<ShardMail*>> slots_;
};

// Told after every durable delivery into a mailbox this shard owns (SMTP accept, cross-shard
// delivery, re-drive): mail_access.h wakes the mailbox's watchers (IMAP IDLE) with it.
class DeliveryObserver {
public:
    virtual void delivered(const std::string& account, std::string_view mailbox) = 0;

protected:
    ~DeliveryObserver() = default;
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

struct ShardMailStats {
    std::uint64_t accepted = 0;
    std::uint64_t delivered_local = 0;
    std::uint64_t delivered_cross = 0;
    std::uint64_t flushes = 0;
    std::uint64_t post_retries = 0;
};

class ShardMail final : public ShardLocal, public TickHook {
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
    // One observer at most (null: none). It must outlive its registration.
    void set_observer(DeliveryObserver* observer) { observer_ = observer; }

private:
    struct Delivery;       // One cross-shard delivery in flight (owned by the message).
    struct AcceptedWait;   // Waits for an accept transaction, then posts deliveries.
    struct DeliveredWait;  // On the owner: waits for the delivery, then answers.

    ShardMail(Shard& shard, MailCluster& cluster, std::shared_ptr<const smtp::Directory> directory);
    void post_or_queue(unsigned to, std::unique_ptr<Delivery> delivery, bool answer);
    void deliver_here(std::unique_ptr<Delivery> delivery);
    void delivered_ack(std::unique_ptr<Delivery> delivery);
    void redrive();
    static void on_cross(Shard& to, const CrossMessage& message);

    Shard& shard_;
    MailCluster& cluster_;
    std::shared_ptr<const smtp::Directory> directory_;
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
};

}  // namespace rp::mail
