#include "storage/mailbox_index.h"

#include <algorithm>
#include <unordered_set>

namespace rp::storage {

const Message* Mailbox::find(std::uint32_t uid) const {
    auto it = std::lower_bound(messages.begin(), messages.end(), uid,
                               [](const Message& m, std::uint32_t u) { return m.uid < u; });
    return it != messages.end() && it->uid == uid ? &*it : nullptr;
}

Message* Mailbox::find(std::uint32_t uid) {
    return const_cast<Message*>(static_cast<const Mailbox*>(this)->find(uid));
}

const Account* MailboxIndex::account(std::string_view name) const {
    auto it = account_ids.find(std::string(name));
    if (it == account_ids.end()) return nullptr;
    auto a = accounts.find(it->second);
    return a == accounts.end() ? nullptr : &a->second;
}

Mailbox* MailboxIndex::mailbox(std::uint64_t id) {
    auto it = mailboxes.find(id);
    return it == mailboxes.end() ? nullptr : &it->second;
}

const Mailbox* MailboxIndex::mailbox(std::uint64_t id) const {
    auto it = mailboxes.find(id);
    return it == mailboxes.end() ? nullptr : &it->second;
}

Mailbox* MailboxIndex::mailbox(const Account& acct, std::string_view name) {
    auto it = acct.mailboxes.find(std::string(name));
    return it == acct.mailboxes.end() ? nullptr : mailbox(it->second);
}

std::string MailboxIndex::delivery_key(const DeliveryKey& key) {
    return std::to_string(key.spool_id) + '\n' + key.rcpt;
}

void MailboxIndex::body_ref(const BodyRef& ref, int delta) {
    if (ref.empty() || ref.shard != shard) return;
    auto it = bodies.find(ref.id);
    if (it == bodies.end()) return;
    Body& body = it->second;
    if (delta > 0) {
        ++body.local_refs;
    } else if (body.local_refs > 0) {
        --body.local_refs;
        if (body.local_refs == 0) body.dead_epoch = gc_epoch;
    }
}

void MailboxIndex::spool_due_track(const SpoolEntry& entry, bool add) {
    for (std::uint32_t i = 0; i < entry.recipients.size(); ++i) {
        const SpoolRecipient& rc = entry.recipients[i];
        if (rcpt_state_final(rc.state)) continue;
        const SpoolDueKey key{rc.next_attempt, entry.id, i};
        if (add) {
            spool_due_index.insert(key);
        } else {
            spool_due_index.erase(key);
        }
    }
}

std::uint64_t MailboxIndex::live_body_bytes() const {
    std::uint64_t total = 0;
    for (const auto& [seg, bytes] : segment_live_bytes) total += bytes;
    return total;
}

void MailboxIndex::extents_live(const std::vector<Extent>& extents, bool add) {
    for (const auto& e : extents) {
        auto& live = segment_live_bytes[e.segment_id];
        // bounds: record_bytes() of a chunk is at most 64 MiB + 56.
        const std::uint64_t bytes = record_bytes(e.bytes);
        if (add) {
            live += bytes;
        } else {
            RP_ASSERT(live >= bytes);
            live -= bytes;
        }
    }
}

Status MailboxIndex::apply(RecordType type, std::span<const std::byte> payload, Lsn lsn) {
    switch (type) {
        case RecordType::body_define:
        case RecordType::body_move:
        case RecordType::body_drop: return apply_body(type, payload);
        case RecordType::account_create:
        case RecordType::mailbox_create:
        case RecordType::mailbox_rename:
        case RecordType::mailbox_delete:
        case RecordType::keyword_define:
        case RecordType::subscription_set:
        case RecordType::mailbox_repair: return apply_mailbox(type, payload, lsn);
        case RecordType::message_append:
        case RecordType::flags_set:
        case RecordType::expunge: return apply_messages(type, payload, lsn);
        case RecordType::spool_add:
        case RecordType::spool_update:
        case RecordType::spool_remove: return apply_spool(type, payload);
        default: return Status::corrupt;
    }
}

Status MailboxIndex::apply_body(RecordType type, std::span<const std::byte> payload) {
    if (type == RecordType::body_drop) {
        IdList drop;
        if (!decode(payload, drop)) return Status::corrupt;
        for (auto id : drop.ids) {
            auto it = bodies.find(id);
            if (it == bodies.end() || it->second.local_refs != 0) return Status::corrupt;
            extents_live(it->second.extents, false);
            bodies.erase(it);
        }
        return Status::ok;
    }
    BodyDefine def;
    if (!decode(payload, def)) return Status::corrupt;
    auto it = bodies.find(def.body_id);
    if (type == RecordType::body_define) {
        if (it != bodies.end()) return Status::corrupt;
        Body& body = bodies[def.body_id];
        body.bytes = def.bytes;
        body.extents = std::move(def.extents);
        body.traits = def.traits;
        body.dead_epoch = gc_epoch;
        extents_live(body.extents, true);
        next_body_id = std::max(next_body_id, def.body_id + 1);
        return Status::ok;
    }
    if (it == bodies.end() || it->second.bytes != def.bytes) return Status::corrupt;
    extents_live(it->second.extents, false);
    it->second.extents = std::move(def.extents);
    it->second.corrupt = false;
    extents_live(it->second.extents, true);
    return Status::ok;
}

Status MailboxIndex::mailbox_drop(Mailbox& box) {
    for (const auto& m : box.messages) body_ref(m.body, -1);
    auto acct = accounts.find(box.account_id);
    if (acct != accounts.end()) acct->second.mailboxes.erase(box.name);
    mailboxes.erase(box.id);
    return Status::ok;
}

Status MailboxIndex::apply_mailbox(RecordType type, std::span<const std::byte> payload, Lsn) {
    switch (type) {
        case RecordType::account_create: {
            AccountCreate v;
            if (!decode(payload, v)) return Status::corrupt;
            if (accounts.count(v.account_id) || account_ids.count(v.name)) return Status::corrupt;
            Account& a = accounts[v.account_id];
            a.id = v.account_id;
            a.name = v.name;
            a.created = v.created;
            account_ids[v.name] = v.account_id;
            next_account_id = std::max(next_account_id, v.account_id + 1);
            return Status::ok;
        }
        case RecordType::mailbox_create: {
            MailboxCreate v;
            if (!decode(payload, v)) return Status::corrupt;
            auto acct = accounts.find(v.account_id);
            if (acct == accounts.end() || mailboxes.count(v.mailbox_id) ||
                acct->second.mailboxes.count(v.name)) {
                return Status::corrupt;
            }
            Mailbox& box = mailboxes[v.mailbox_id];
            box.id = v.mailbox_id;
            box.account_id = v.account_id;
            box.name = v.name;
            box.special_use = v.special_use;
            box.uidvalidity = v.uidvalidity;
            acct->second.mailboxes[v.name] = v.mailbox_id;
            next_mailbox_id = std::max(next_mailbox_id, v.mailbox_id + 1);
            last_uidvalidity = std::max(last_uidvalidity, v.uidvalidity);
            return Status::ok;
        }
        case RecordType::mailbox_rename: {
            MailboxRename v;
            if (!decode(payload, v)) return Status::corrupt;
            Mailbox* box = mailbox(v.mailbox_id);
            if (!box) return Status::corrupt;
            auto acct = accounts.find(box->account_id);
            if (acct == accounts.end() || acct->second.mailboxes.count(v.name)) return Status::corrupt;
            acct->second.mailboxes.erase(box->name);
            acct->second.mailboxes[v.name] = box->id;
            box->name = v.name;
            return Status::ok;
        }
        case RecordType::mailbox_delete: {
            IdOnly v;
            if (!decode(payload, v)) return Status::corrupt;
            Mailbox* box = mailbox(v.id);
            if (!box) return Status::corrupt;
            return mailbox_drop(*box);
        }
        case RecordType::mailbox_repair: {
            IdOnly v;
            if (!decode(payload, v)) return Status::corrupt;
            Mailbox* box = mailbox(v.id);
            if (!box) return Status::corrupt;
            box->quarantined = false;
            return Status::ok;
        }
        case RecordType::keyword_define: {
            KeywordDefine v;
            if (!decode(payload, v)) return Status::corrupt;
            auto acct = accounts.find(v.account_id);
            if (acct == accounts.end() || v.index != acct->second.keywords.size()) return Status::corrupt;
            acct->second.keywords.push_back(v.name);
            return Status::ok;
        }
        case RecordType::subscription_set: {
            SubscriptionSet v;
            if (!decode(payload, v)) return Status::corrupt;
            auto acct = accounts.find(v.account_id);
            if (acct == accounts.end()) return Status::corrupt;
            auto& subs = acct->second.subscriptions;
            if (!v.subscribed) {
                subs.erase(v.name);
                return Status::ok;
            }
            if (subs.size() >= limits::mailboxes_per_account_max && !subs.count(v.name)) {
                return Status::corrupt;
            }
            subs.insert(v.name);
            return Status::ok;
        }
        default: return Status::corrupt;
    }
}

Status MailboxIndex::apply_messages(RecordType type, std::span<const std::byte> payload, Lsn lsn) {
    if (type == RecordType::message_append) {
        MessageAppend v;
        if (!decode(payload, v)) return Status::corrupt;
        Mailbox* box = mailbox(v.mailbox_id);
        if (!box || v.modseq <= box->highest_modseq) return Status::corrupt;
        if (box->messages.size() + v.messages.size() > limits::messages_per_mailbox_max) {
            return Status::corrupt;
        }
        for (const auto& m : v.messages) {
            if (m.uid < box->uidnext) return Status::corrupt;
            if (m.body.shard == shard && !m.body.empty() && !bodies.count(m.body.id)) {
                return Status::corrupt;
            }
        }
        for (const auto& m : v.messages) {
            box->messages.push_back({m.uid, m.flags, m.keywords, v.modseq, m.internal_date, m.size,
                                     m.body, lsn});
            box->uidnext = m.uid + 1;
            body_ref(m.body, +1);
        }
        box->highest_modseq = v.modseq;
        if (!v.key.empty() && !v.messages.empty()) {
            deliveries[delivery_key(v.key)] = {box->id, v.messages.front().uid,
                                               v.messages.front().internal_date};
        }
        return Status::ok;
    }
    if (type == RecordType::flags_set) {
        FlagsSet v;
        if (!decode(payload, v)) return Status::corrupt;
        Mailbox* box = mailbox(v.mailbox_id);
        if (!box || v.modseq <= box->highest_modseq) return Status::corrupt;
        for (auto uid : v.uids) {
            Message* m = box->find(uid);
            if (!m) return Status::corrupt;
            for (std::size_t i = 0; i < m->keywords.size(); ++i) {
                auto& word = m->keywords[i];
                if (v.mode == FlagMode::add) word |= v.keywords[i];
                if (v.mode == FlagMode::remove) word &= ~v.keywords[i];
                if (v.mode == FlagMode::replace) word = v.keywords[i];
            }
            if (v.mode == FlagMode::add) m->flags |= v.flags;
            if (v.mode == FlagMode::remove) m->flags &= ~v.flags;
            if (v.mode == FlagMode::replace) m->flags = v.flags;
            m->modseq = v.modseq;
        }
        box->highest_modseq = v.modseq;
        return Status::ok;
    }
    Expunge v;
    if (!decode(payload, v)) return Status::corrupt;
    Mailbox* box = mailbox(v.mailbox_id);
    if (!box || v.modseq <= box->highest_modseq) return Status::corrupt;
    std::unordered_set<std::uint32_t> gone(v.uids.begin(), v.uids.end());
    for (auto uid : v.uids) {
        if (!box->find(uid)) return Status::corrupt;
    }
    auto keep = std::remove_if(box->messages.begin(), box->messages.end(), [&](const Message& m) {
        if (!gone.count(m.uid)) return false;
        body_ref(m.body, -1);
        return true;
    });
    box->messages.erase(keep, box->messages.end());
    box->highest_modseq = v.modseq;
    return Status::ok;
}

Status MailboxIndex::apply_spool(RecordType type, std::span<const std::byte> payload) {
    if (type == RecordType::spool_add) {
        SpoolAdd v;
        if (!decode(payload, v)) return Status::corrupt;
        if (spool.count(v.entry.id)) return Status::corrupt;
        if (v.entry.body.shard == shard && !v.entry.body.empty() && !bodies.count(v.entry.body.id)) {
            return Status::corrupt;
        }
        body_ref(v.entry.body, +1);
        next_spool_seq = std::max<std::uint64_t>(next_spool_seq, (v.entry.id & 0xffffffffffffull) + 1);
        spool_due_track(v.entry, true);
        spool[v.entry.id] = std::move(v.entry);
        return Status::ok;
    }
    if (type == RecordType::spool_update) {
        SpoolUpdate v;
        if (!decode(payload, v)) return Status::corrupt;
        auto it = spool.find(v.spool_id);
        if (it == spool.end() || v.rcpt_index >= it->second.recipients.size()) return Status::corrupt;
        SpoolRecipient& rc = it->second.recipients[v.rcpt_index];
        if (!rcpt_state_final(rc.state)) spool_due_index.erase({rc.next_attempt, v.spool_id, v.rcpt_index});
        if (!rcpt_state_final(v.state)) spool_due_index.insert({v.next_attempt, v.spool_id, v.rcpt_index});
        rc.state = v.state;
        rc.next_attempt = v.next_attempt;
        rc.attempts = v.attempts;
        rc.reply = std::move(v.reply);
        return Status::ok;
    }
    IdOnly v;
    if (!decode(payload, v)) return Status::corrupt;
    auto it = spool.find(v.id);
    if (it == spool.end()) return Status::corrupt;
    body_ref(it->second.body, -1);
    spool_due_track(it->second, false);
    spool.erase(it);
    return Status::ok;
}

}  // namespace rp::storage
