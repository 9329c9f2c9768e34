#include "storage/index_snapshot.h"

#include <algorithm>
#include <cstring>

#include "storage/segment.h"

namespace rp::storage {

namespace {

constexpr std::size_t slice_count = 50000;  // Items per record, far below the payload cap.

// Records are written in place: open() leaves room for the header, the payload is encoded
// straight after it, close() seals the header over it and pads. (Encoding into a separate
// payload string and appending it copied every byte twice more.)
std::size_t record_open(std::string& out) {
    const std::size_t at = out.size();
    out.append(record_header_bytes, '\0');
    return at;
}

void record_close(std::string& out, std::size_t at, RecordType type, std::uint32_t& count) {
    RecordHeader h;
    h.type = static_cast<std::uint16_t>(type);
    // bounds: every payload is below record_payload_bytes_max (slices of slice_count items).
    h.payload_bytes = static_cast<std::uint32_t>(out.size() - at - record_header_bytes);
    record_seal(h, std::span<const std::byte>(
                       reinterpret_cast<const std::byte*>(out.data() + at + record_header_bytes),
                       h.payload_bytes));
    static_assert(sizeof h == record_header_bytes);
    std::memcpy(out.data() + at, &h, sizeof h);
    out.append(record_bytes(h.payload_bytes) - record_header_bytes - h.payload_bytes, '\0');
    ++count;
}

void encode_mailbox_head(ByteWriter& w, const Mailbox& box) {
    w.u64(box.id);
    w.u64(box.account_id);
    w.str(box.name);
    w.u32(box.special_use);
    w.u32(box.uidvalidity);
    w.u32(box.uidnext);
    w.u64(box.highest_modseq);
    w.u8(box.quarantined ? 1 : 0);
}

}  // namespace

std::string snapshot_encode(const MailboxIndex& index, const SnapshotMeta& meta,
                            std::int64_t delivery_keys_since) {
    std::string out;
    {
        // Reserved once from the index's size (a guess on the high side: growing the string
        // copies it and faults in fresh pages each time).
        std::size_t messages = 0;
        for (const auto& [id, box] : index.mailboxes) messages += box.messages.size() + 1;
        out.reserve((1u << 16) + 96 * messages + 64 * index.bodies.size() +
                    96 * index.deliveries.size() + 256 * (index.accounts.size() + index.spool.size()));
    }
    const SegmentHeader file_header = segment_header_make(index.shard, 0, meta.written_at);
    out.append(reinterpret_cast<const char*>(&file_header), sizeof file_header);
    std::uint32_t count = 0;
    ByteWriter w(out);
    {
        const std::size_t at = record_open(out);
        w.u64(meta.lsn);
        w.u64(meta.next_txn_id);
        w.i64(meta.written_at);
        w.u64(index.next_account_id);
        w.u64(index.next_mailbox_id);
        w.u64(index.next_body_id);
        w.u64(index.next_spool_seq);
        w.u32(index.last_uidvalidity);
        record_close(out, at, RecordType::snap_state, count);
    }
    for (const auto& [id, a] : index.accounts) {
        const std::size_t at = record_open(out);
        w.u64(a.id);
        w.str(a.name);
        w.i64(a.created);
        w.u32(static_cast<std::uint32_t>(a.keywords.size()));
        for (const auto& k : a.keywords) w.str(k);
        w.u32(static_cast<std::uint32_t>(a.subscriptions.size()));
        for (const auto& name : a.subscriptions) w.str(name);
        record_close(out, at, RecordType::snap_account, count);
    }
    for (const auto& [id, box] : index.mailboxes) {
        std::size_t from = 0;
        do {
            const std::size_t n = std::min(slice_count, box.messages.size() - from);
            const std::size_t at = record_open(out);
            encode_mailbox_head(w, box);
            w.u32(static_cast<std::uint32_t>(n));
            for (std::size_t i = from; i < from + n; ++i) {
                const Message& m = box.messages[i];
                encode_message(w, {m.uid, m.flags, m.keywords, m.internal_date, m.size, m.body});
                w.u64(m.modseq);
            }
            record_close(out, at, RecordType::snap_mailbox, count);
            from += n;
        } while (from < box.messages.size());
    }
    std::vector<const std::pair<const std::uint64_t, Body>*> bodies;
    bodies.reserve(index.bodies.size());
    for (const auto& entry : index.bodies) bodies.push_back(&entry);
    for (std::size_t from = 0; from < bodies.size(); from += slice_count) {
        const std::size_t n = std::min(slice_count, bodies.size() - from);
        const std::size_t at = record_open(out);
        w.u32(static_cast<std::uint32_t>(n));
        for (std::size_t i = from; i < from + n; ++i) {
            w.u64(bodies[i]->first);
            w.u64(bodies[i]->second.bytes);
            // Bit 0: corrupt; the bits above: the body's traits (0 in older snapshots).
            w.u8(static_cast<std::uint8_t>((bodies[i]->second.corrupt ? 1 : 0) |
                                           (bodies[i]->second.traits << 1)));
            encode_extents(w, bodies[i]->second.extents);
        }
        record_close(out, at, RecordType::snap_bodies, count);
    }
    for (const auto& [id, entry] : index.spool) {
        const std::size_t at = record_open(out);
        encode_spool_entry(w, entry);
        record_close(out, at, RecordType::snap_spool, count);
    }
    std::vector<const std::pair<const std::string, Delivery>*> keys;
    keys.reserve(index.deliveries.size());
    for (const auto& entry : index.deliveries) {
        if (entry.second.at >= delivery_keys_since) keys.push_back(&entry);
    }
    for (std::size_t from = 0; from < keys.size(); from += slice_count) {
        const std::size_t n = std::min(slice_count, keys.size() - from);
        const std::size_t at = record_open(out);
        w.u32(static_cast<std::uint32_t>(n));
        for (std::size_t i = from; i < from + n; ++i) {
            w.str(keys[i]->first);
            w.u64(keys[i]->second.mailbox_id);
            w.u32(keys[i]->second.uid);
            w.i64(keys[i]->second.at);
        }
        record_close(out, at, RecordType::snap_deliveries, count);
    }
    const std::size_t at = record_open(out);
    w.u32(count);
    record_close(out, at, RecordType::snap_end, count);
    return out;
}

namespace {

Status decode_one(RecordType type, std::span<const std::byte> payload, MailboxIndex& index,
                  SnapshotMeta& meta) {
    ByteReader r(payload);
    switch (type) {
        case RecordType::snap_state: {
            meta.lsn = r.u64();
            meta.next_txn_id = r.u64();
            meta.written_at = r.i64();
            index.next_account_id = r.u64();
            index.next_mailbox_id = r.u64();
            index.next_body_id = r.u64();
            index.next_spool_seq = r.u64();
            index.last_uidvalidity = r.u32();
            break;
        }
        case RecordType::snap_account: {
            Account a;
            a.id = r.u64();
            r.str(a.name, limits::address_bytes_max);
            a.created = r.i64();
            std::uint32_t n = 0;
            if (!r.count(n, limits::keywords_per_account_max, 4)) return Status::corrupt;
            a.keywords.resize(n);
            for (auto& k : a.keywords) r.str(k, limits::mailbox_name_bytes_max);
            // Snapshots written before subscriptions existed end here.
            if (r.ok() && r.remaining() > 0) {
                std::uint32_t subs = 0;
                if (!r.count(subs, limits::mailboxes_per_account_max, 5)) return Status::corrupt;
                for (std::uint32_t i = 0; i < subs; ++i) {
                    std::string name;
                    if (!r.str(name, limits::mailbox_name_bytes_max) || name.empty()) {
                        return Status::corrupt;
                    }
                    a.subscriptions.insert(std::move(name));
                }
            }
            if (!r.done() || index.accounts.count(a.id) || index.account_ids.count(a.name)) {
                return Status::corrupt;
            }
            index.account_ids[a.name] = a.id;
            index.accounts[a.id] = std::move(a);
            return Status::ok;
        }
        case RecordType::snap_mailbox: {
            Mailbox head;
            head.id = r.u64();
            head.account_id = r.u64();
            r.str(head.name, limits::mailbox_name_bytes_max);
            head.special_use = r.u32();
            head.uidvalidity = r.u32();
            head.uidnext = r.u32();
            head.highest_modseq = r.u64();
            head.quarantined = r.u8() != 0;
            auto acct = index.accounts.find(head.account_id);
            if (!r.ok() || acct == index.accounts.end()) return Status::corrupt;
            auto [it, fresh] = index.mailboxes.try_emplace(head.id);
            Mailbox& box = it->second;
            if (fresh) {
                if (acct->second.mailboxes.count(head.name)) return Status::corrupt;
                box = std::move(head);
                acct->second.mailboxes[box.name] = box.id;
            }
            std::uint32_t n = 0;
            if (!r.count(n, limits::messages_per_mailbox_max, 74)) return Status::corrupt;
            for (std::uint32_t i = 0; i < n; ++i) {
                MessageEntry e;
                if (!decode_message(r, e)) return Status::corrupt;
                const std::uint64_t modseq = r.u64();
                if (!box.messages.empty() && box.messages.back().uid >= e.uid) return Status::corrupt;
                if (e.uid >= box.uidnext || modseq > box.highest_modseq) return Status::corrupt;
                box.messages.push_back({e.uid, e.flags, e.keywords, modseq, e.internal_date, e.size,
                                        e.body, 0});
            }
            break;
        }
        case RecordType::snap_bodies: {
            std::uint32_t n = 0;
            if (!r.count(n, limits::record_payload_bytes_max / 21, 21)) return Status::corrupt;
            for (std::uint32_t i = 0; i < n; ++i) {
                const std::uint64_t id = r.u64();
                Body body;
                body.bytes = r.u64();
                const std::uint8_t state = r.u8();
                body.corrupt = (state & 1) != 0;
                body.traits = static_cast<std::uint8_t>(state >> 1);
                if ((body.traits & ~body_traits_all) != 0) return Status::corrupt;
                if (!decode_extents(r, body.extents) || index.bodies.count(id)) return Status::corrupt;
                index.bodies[id] = std::move(body);
            }
            break;
        }
        case RecordType::snap_spool: {
            SpoolEntry e;
            if (!decode_spool_entry(r, e) || index.spool.count(e.id)) return Status::corrupt;
            index.spool_due_track(e, true);
            index.spool[e.id] = std::move(e);
            break;
        }
        case RecordType::snap_deliveries: {
            std::uint32_t n = 0;
            if (!r.count(n, limits::record_payload_bytes_max / 24, 24)) return Status::corrupt;
            for (std::uint32_t i = 0; i < n; ++i) {
                std::string key;
                r.str(key, limits::address_bytes_max + 32);
                Delivery d;
                d.mailbox_id = r.u64();
                d.uid = r.u32();
                d.at = r.i64();
                index.deliveries[key] = d;
            }
            break;
        }
        default: return Status::corrupt;
    }
    return r.done() ? Status::ok : Status::corrupt;
}

}  // namespace

Status snapshot_decode(std::span<const std::byte> bytes, MailboxIndex& index, SnapshotMeta& meta) {
    RP_ASSERT(index.accounts.empty());
    auto header = segment_header_decode(bytes);
    if (!header || header->segment_id != 0 || header->shard != index.shard) return Status::corrupt;
    SegmentScanner scanner(bytes, segment_header_bytes);
    std::uint32_t count = 0;
    bool have_state = false;
    for (;;) {
        ScanItem item = scanner.next();
        if (item.kind != ScanItem::Kind::record) return Status::corrupt;
        const auto type = static_cast<RecordType>(item.header.type);
        if (type == RecordType::snap_end) {
            ByteReader r(item.payload);
            const std::uint32_t expect = r.u32();
            if (!r.done() || expect != count || !have_state) return Status::corrupt;
            break;
        }
        if ((type == RecordType::snap_state) == have_state) return Status::corrupt;
        have_state = true;
        if (Status s = decode_one(type, item.payload, index, meta); s != Status::ok) return s;
        ++count;
    }
    // Derived state: local references and live bytes per segment.
    for (auto& [id, body] : index.bodies) {
        for (const auto& e : body.extents) index.segment_live_bytes[e.segment_id] += record_bytes(e.bytes);
        body.dead_epoch = 0;
    }
    for (const auto& [id, box] : index.mailboxes) {
        for (const auto& m : box.messages) index.body_ref(m.body, +1);
    }
    for (const auto& [id, entry] : index.spool) index.body_ref(entry.body, +1);
    for (auto& [id, body] : index.bodies) {
        if (body.local_refs == 0) body.dead_epoch = 0;
    }
    return Status::ok;
}

}  // namespace rp::storage
