// storage/mailbox_index.h: the in-memory index of one shard's store.
//
// Owns: accounts, mailboxes (UID -> body ref, flags, modseq), bodies (id -> extents and local
//   reference count), the spool, and the idempotent-delivery table.
// Core: the owning shard only. Other cores ask the owner (cross-core message) and get values.
// Invariants: every change comes from apply() of one record, live or at recovery, so the
//   index after replay equals the index before the crash for every committed transaction.
//   UIDs in a mailbox are strictly increasing; uidnext > every UID; highest_modseq >= every
//   message's modseq.
// Errors: apply() returns Status::corrupt when a record contradicts the index, which only
//   damaged input can cause; the live path asserts it never happens.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "storage/record.h"

namespace rp::storage {

inline constexpr Lsn lsn_invisible = ~Lsn{0};

struct Message {
    std::uint32_t uid = 0;
    std::uint32_t flags = 0;
    Keywords keywords{};
    std::uint64_t modseq = 0;
    std::int64_t internal_date = 0;
    std::uint64_t size = 0;
    BodyRef body;
    Lsn visible_lsn = 0;  // Readers see the message once the durable watermark passes this.
};

struct Mailbox {
    std::uint64_t id = 0;
    std::uint64_t account_id = 0;
    std::string name;
    std::uint32_t special_use = 0;
    std::uint32_t uidvalidity = 0;
    std::uint32_t uidnext = 1;
    std::uint64_t highest_modseq = 1;
    bool quarantined = false;
    std::vector<Message> messages;  // Sorted by UID.

    const Message* find(std::uint32_t uid) const;
    Message* find(std::uint32_t uid);
};

struct Account {
    std::uint64_t id = 0;
    std::string name;
    std::int64_t created = 0;
    std::map<std::string, std::uint64_t> mailboxes;  // Name -> mailbox id.
    std::vector<std::string> keywords;               // Index -> keyword name.
    std::set<std::string> subscriptions;             // IMAP SUBSCRIBE, sorted.
};

struct Body {
    std::uint64_t bytes = 0;
    std::vector<Extent> extents;
    std::uint32_t local_refs = 0;   // Messages and spool entries of this shard.
    std::uint64_t dead_epoch = 0;   // The GC epoch in which local_refs last became 0.
    bool corrupt = false;
    std::uint8_t traits = 0;        // BodyTrait bits (kept when compaction moves the body).
};

struct Delivery {
    std::uint64_t mailbox_id = 0;
    std::uint32_t uid = 0;
    std::int64_t at = 0;
};

// A recipient that is still to be tried, ordered by due time (then entry, recipient).
struct SpoolDueKey {
    std::int64_t next_attempt = 0;
    std::uint64_t spool_id = 0;
    std::uint32_t rcpt_index = 0;
    auto operator<=>(const SpoolDueKey&) const = default;
};

struct MailboxIndex {
    explicit MailboxIndex(std::uint16_t shard_id) : shard(shard_id) {}

    // Applies one committed record; `lsn` is the end of its transaction's commit record.
    Status apply(RecordType type, std::span<const std::byte> payload, Lsn lsn);

    const Account* account(std::string_view name) const;
    Mailbox* mailbox(std::uint64_t id);
    const Mailbox* mailbox(std::uint64_t id) const;
    Mailbox* mailbox(const Account& account, std::string_view name);
    static std::string delivery_key(const DeliveryKey& key);
    void body_ref(const BodyRef& ref, int delta);
    // Adds (or removes) the entry's non-final recipients to spool_due_index.
    void spool_due_track(const SpoolEntry& entry, bool add);
    std::uint64_t live_body_bytes() const;

    std::uint16_t shard;
    std::unordered_map<std::string, std::uint64_t> account_ids;  // Name -> id.
    std::unordered_map<std::uint64_t, Account> accounts;
    std::unordered_map<std::uint64_t, Mailbox> mailboxes;
    std::unordered_map<std::uint64_t, Body> bodies;
    std::map<std::uint64_t, SpoolEntry> spool;
    // Every pending or deferred recipient of `spool`, so spool_due() reads only due ones.
    std::set<SpoolDueKey> spool_due_index;
    std::unordered_map<std::string, Delivery> deliveries;
    std::map<std::uint32_t, std::uint64_t> segment_live_bytes;  // Body bytes per segment.

    std::uint64_t next_account_id = 1;
    std::uint64_t next_mailbox_id = 1;
    std::uint64_t next_body_id = 1;
    std::uint64_t next_spool_seq = 1;
    std::uint32_t last_uidvalidity = 0;
    std::uint64_t gc_epoch = 1;

private:
    Status apply_body(RecordType type, std::span<const std::byte> payload);
    Status apply_mailbox(RecordType type, std::span<const std::byte> payload, Lsn lsn);
    Status apply_messages(RecordType type, std::span<const std::byte> payload, Lsn lsn);
    Status apply_spool(RecordType type, std::span<const std::byte> payload);
    void extents_live(const std::vector<Extent>& extents, bool add);
    Status mailbox_drop(Mailbox& box);
};

}  // namespace rp::storage
