#include "storage/record.h"

#include <cstring>

#include "core/checksum.h"

namespace rp::storage {

std::string_view record_type_name(RecordType type) {
    switch (type) {
        case RecordType::body_chunk: return "body_chunk";
        case RecordType::body_define: return "body_define";
        case RecordType::body_move: return "body_move";
        case RecordType::body_drop: return "body_drop";
        case RecordType::account_create: return "account_create";
        case RecordType::mailbox_create: return "mailbox_create";
        case RecordType::mailbox_rename: return "mailbox_rename";
        case RecordType::mailbox_delete: return "mailbox_delete";
        case RecordType::keyword_define: return "keyword_define";
        case RecordType::message_append: return "message_append";
        case RecordType::flags_set: return "flags_set";
        case RecordType::expunge: return "expunge";
        case RecordType::spool_add: return "spool_add";
        case RecordType::spool_update: return "spool_update";
        case RecordType::spool_remove: return "spool_remove";
        case RecordType::commit: return "commit";
        case RecordType::mailbox_repair: return "mailbox_repair";
        case RecordType::segment_seal: return "segment_seal";
        case RecordType::subscription_set: return "subscription_set";
        case RecordType::snap_state: return "snap_state";
        case RecordType::snap_account: return "snap_account";
        case RecordType::snap_mailbox: return "snap_mailbox";
        case RecordType::snap_bodies: return "snap_bodies";
        case RecordType::snap_spool: return "snap_spool";
        case RecordType::snap_deliveries: return "snap_deliveries";
        case RecordType::snap_end: return "snap_end";
    }
    return "unknown";
}

bool record_type_known(std::uint16_t type) {
    return (type >= 1 && type <= static_cast<std::uint16_t>(RecordType::subscription_set)) ||
           (type >= 64 && type <= static_cast<std::uint16_t>(RecordType::snap_end));
}

namespace {

constexpr std::size_t crc_from = 12;  // The CRCs cover the header from byte 12 on.

std::uint32_t header_part_crc(const RecordHeader& h) {
    return crc32c(reinterpret_cast<const std::byte*>(&h) + crc_from, sizeof h - crc_from);
}

}  // namespace

void record_seal(RecordHeader& header, const iovec* payload, unsigned payload_count) {
    header.magic = record_magic;
    header.reserved = 0;
    const std::uint32_t head = header_part_crc(header);
    std::uint32_t crc = head;
    std::uint64_t total = 0;
    for (unsigned i = 0; i < payload_count; ++i) {
        crc = crc32c_extend(crc, payload[i].iov_base, payload[i].iov_len);
        total += payload[i].iov_len;
    }
    RP_ASSERT(total == header.payload_bytes);
    header.header_crc = head;
    header.record_crc = crc;
}

void record_seal(RecordHeader& header, std::span<const std::byte> payload) {
    iovec iov{const_cast<std::byte*>(payload.data()), payload.size()};
    record_seal(header, &iov, 1);
}

Result<RecordHeader> record_header_decode(std::span<const std::byte> bytes) {
    if (bytes.size() < sizeof(RecordHeader)) return Status::truncated;
    RecordHeader h;
    std::memcpy(&h, bytes.data(), sizeof h);
    if (h.magic != record_magic) return Status::corrupt;
    if (h.header_crc != header_part_crc(h)) return Status::corrupt;
    if (h.version != record_version) return Status::unsupported;
    if (!record_type_known(h.type) || h.reserved != 0) return Status::corrupt;
    if (h.payload_bytes > limits::record_payload_bytes_max) return Status::corrupt;
    if (bytes.size() < record_header_bytes + std::size_t{h.payload_bytes}) return Status::truncated;
    return h;
}

bool record_payload_ok(const RecordHeader& header, std::span<const std::byte> payload) {
    if (payload.size() != header.payload_bytes) return false;
    return crc32c_extend(header_part_crc(header), payload.data(), payload.size()) ==
           header.record_crc;
}

bool ByteReader::str(std::string& out, std::uint32_t bytes_max) {
    const std::uint32_t n = u32();
    if (!ok_ || n > bytes_max || n > bytes_.size() - pos_) {
        ok_ = false;
        return false;
    }
    out.assign(reinterpret_cast<const char*>(bytes_.data() + pos_), n);
    pos_ += n;
    return true;
}

bool ByteReader::count(std::uint32_t& out, std::uint32_t count_max, std::uint32_t item_bytes_min) {
    out = u32();
    // bounds: both factors are below 2^32, the product is computed in 64 bits.
    if (!ok_ || out > count_max ||
        std::uint64_t{out} * item_bytes_min > bytes_.size() - pos_) {
        ok_ = false;
        out = 0;
        return false;
    }
    return true;
}

// ---- shared pieces ----

namespace {

void encode_keywords(ByteWriter& w, const Keywords& k) {
    for (auto word : k) w.u64(word);
}
void decode_keywords(ByteReader& r, Keywords& k) {
    for (auto& word : k) word = r.u64();
}
void encode_body(ByteWriter& w, const BodyRef& b) {
    w.u16(b.shard);
    w.u64(b.id);
}
void decode_body(ByteReader& r, BodyRef& b) {
    b.shard = r.u16();
    b.id = r.u64();
}
void encode_uids(ByteWriter& w, const std::vector<std::uint32_t>& uids) {
    w.u32(static_cast<std::uint32_t>(uids.size()));
    for (auto uid : uids) w.u32(uid);
}
bool decode_uids(ByteReader& r, std::vector<std::uint32_t>& uids) {
    std::uint32_t n = 0;
    if (!r.count(n, limits::uids_per_record_max, 4)) return false;
    uids.resize(n);
    for (auto& uid : uids) uid = r.u32();
    return r.ok();
}
constexpr std::uint32_t address_max = limits::address_bytes_max;

}  // namespace

void encode_extents(ByteWriter& w, const std::vector<Extent>& extents) {
    w.u32(static_cast<std::uint32_t>(extents.size()));
    for (const auto& e : extents) {
        w.u32(e.segment_id);
        w.u32(e.offset);
        w.u32(e.bytes);
    }
}

bool decode_extents(ByteReader& r, std::vector<Extent>& extents) {
    std::uint32_t n = 0;
    if (!r.count(n, limits::body_extents_max, 12)) return false;
    extents.resize(n);
    for (auto& e : extents) {
        e.segment_id = r.u32();
        e.offset = r.u32();
        e.bytes = r.u32();
    }
    return r.ok();
}

void encode_message(ByteWriter& w, const MessageEntry& m) {
    w.u32(m.uid);
    w.u32(m.flags);
    encode_keywords(w, m.keywords);
    w.i64(m.internal_date);
    w.u64(m.size);
    encode_body(w, m.body);
}

bool decode_message(ByteReader& r, MessageEntry& m) {
    m.uid = r.u32();
    m.flags = r.u32();
    decode_keywords(r, m.keywords);
    m.internal_date = r.i64();
    m.size = r.u64();
    decode_body(r, m.body);
    return r.ok() && m.uid != 0 && (m.flags & ~flags_all) == 0;
}

void encode_spool_entry(ByteWriter& w, const SpoolEntry& e) {
    w.u64(e.id);
    w.str(e.sender);
    encode_body(w, e.body);
    w.u64(e.body_bytes);
    w.i64(e.arrival);
    w.str(e.client);
    w.u32(static_cast<std::uint32_t>(e.recipients.size()));
    for (const auto& rc : e.recipients) {
        w.str(rc.address);
        w.u8(static_cast<std::uint8_t>(rc.state));
        w.i64(rc.next_attempt);
        w.u32(rc.attempts);
        w.str(rc.reply);
    }
}

bool decode_spool_entry(ByteReader& r, SpoolEntry& e) {
    e.id = r.u64();
    r.str(e.sender, address_max);
    decode_body(r, e.body);
    e.body_bytes = r.u64();
    e.arrival = r.i64();
    r.str(e.client, limits::reply_bytes_max);
    std::uint32_t n = 0;
    if (!r.count(n, limits::recipients_per_spool_entry_max, 21)) return false;
    e.recipients.resize(n);
    for (auto& rc : e.recipients) {
        r.str(rc.address, address_max);
        const std::uint8_t state = r.u8();
        if (state > static_cast<std::uint8_t>(RcptState::failed)) return false;
        rc.state = static_cast<RcptState>(state);
        rc.next_attempt = r.i64();
        rc.attempts = r.u32();
        r.str(rc.reply, limits::reply_bytes_max);
    }
    return r.ok();
}

// ---- records ----

void encode(std::string& out, const BodyDefine& v) {
    ByteWriter w(out);
    w.u64(v.body_id);
    w.u64(v.bytes);
    encode_extents(w, v.extents);
    if (v.traits != 0) w.u8(v.traits);
}
bool decode(std::span<const std::byte> in, BodyDefine& v) {
    ByteReader r(in);
    v.body_id = r.u64();
    v.bytes = r.u64();
    if (!decode_extents(r, v.extents)) return false;
    v.traits = r.remaining() > 0 ? r.u8() : 0;  // Older records end after the extents.
    if ((v.traits & ~body_traits_all) != 0) return false;
    std::uint64_t sum = 0;
    for (const auto& e : v.extents) sum += e.bytes;
    return r.done() && v.body_id != 0 && sum == v.bytes;
}

void encode(std::string& out, const IdList& v) {
    ByteWriter w(out);
    w.u32(static_cast<std::uint32_t>(v.ids.size()));
    for (auto id : v.ids) w.u64(id);
}
bool decode(std::span<const std::byte> in, IdList& v) {
    ByteReader r(in);
    std::uint32_t n = 0;
    if (!r.count(n, limits::record_payload_bytes_max / 8, 8)) return false;
    v.ids.resize(n);
    for (auto& id : v.ids) id = r.u64();
    return r.done();
}

void encode(std::string& out, const IdOnly& v) {
    ByteWriter w(out);
    w.u64(v.id);
}
bool decode(std::span<const std::byte> in, IdOnly& v) {
    ByteReader r(in);
    v.id = r.u64();
    return r.done() && v.id != 0;
}

void encode(std::string& out, const AccountCreate& v) {
    ByteWriter w(out);
    w.u64(v.account_id);
    w.str(v.name);
    w.i64(v.created);
}
bool decode(std::span<const std::byte> in, AccountCreate& v) {
    ByteReader r(in);
    v.account_id = r.u64();
    r.str(v.name, address_max);
    v.created = r.i64();
    return r.done() && v.account_id != 0 && !v.name.empty();
}

void encode(std::string& out, const MailboxCreate& v) {
    ByteWriter w(out);
    w.u64(v.account_id);
    w.u64(v.mailbox_id);
    w.str(v.name);
    w.u32(v.special_use);
    w.u32(v.uidvalidity);
}
bool decode(std::span<const std::byte> in, MailboxCreate& v) {
    ByteReader r(in);
    v.account_id = r.u64();
    v.mailbox_id = r.u64();
    r.str(v.name, limits::mailbox_name_bytes_max);
    v.special_use = r.u32();
    v.uidvalidity = r.u32();
    return r.done() && v.mailbox_id != 0 && !v.name.empty() &&
           (v.special_use & ~special_use_all) == 0 && v.uidvalidity != 0;
}

void encode(std::string& out, const MailboxRename& v) {
    ByteWriter w(out);
    w.u64(v.mailbox_id);
    w.str(v.name);
}
bool decode(std::span<const std::byte> in, MailboxRename& v) {
    ByteReader r(in);
    v.mailbox_id = r.u64();
    r.str(v.name, limits::mailbox_name_bytes_max);
    return r.done() && !v.name.empty();
}

void encode(std::string& out, const KeywordDefine& v) {
    ByteWriter w(out);
    w.u64(v.account_id);
    w.u32(v.index);
    w.str(v.name);
}
bool decode(std::span<const std::byte> in, KeywordDefine& v) {
    ByteReader r(in);
    v.account_id = r.u64();
    v.index = r.u32();
    r.str(v.name, limits::mailbox_name_bytes_max);
    return r.done() && v.index < limits::keywords_per_account_max && !v.name.empty();
}

void encode(std::string& out, const SubscriptionSet& v) {
    ByteWriter w(out);
    w.u64(v.account_id);
    w.str(v.name);
    w.u8(v.subscribed ? 1 : 0);
}
bool decode(std::span<const std::byte> in, SubscriptionSet& v) {
    ByteReader r(in);
    v.account_id = r.u64();
    r.str(v.name, limits::mailbox_name_bytes_max);
    const std::uint8_t subscribed = r.u8();
    v.subscribed = subscribed == 1;
    return r.done() && subscribed <= 1 && !v.name.empty();
}

void encode(std::string& out, const MessageAppend& v) {
    ByteWriter w(out);
    w.u64(v.mailbox_id);
    w.u64(v.modseq);
    w.u64(v.key.spool_id);
    w.str(v.key.rcpt);
    w.u32(static_cast<std::uint32_t>(v.messages.size()));
    for (const auto& m : v.messages) encode_message(w, m);
}
bool decode(std::span<const std::byte> in, MessageAppend& v) {
    ByteReader r(in);
    v.mailbox_id = r.u64();
    v.modseq = r.u64();
    v.key.spool_id = r.u64();
    r.str(v.key.rcpt, address_max);
    std::uint32_t n = 0;
    if (!r.count(n, limits::uids_per_record_max, 66)) return false;
    v.messages.resize(n);
    for (auto& m : v.messages) {
        if (!decode_message(r, m)) return false;
    }
    return r.done() && v.mailbox_id != 0;
}

void encode(std::string& out, const FlagsSet& v) {
    ByteWriter w(out);
    w.u64(v.mailbox_id);
    w.u64(v.modseq);
    w.u8(static_cast<std::uint8_t>(v.mode));
    w.u32(v.flags);
    encode_keywords(w, v.keywords);
    encode_uids(w, v.uids);
}
bool decode(std::span<const std::byte> in, FlagsSet& v) {
    ByteReader r(in);
    v.mailbox_id = r.u64();
    v.modseq = r.u64();
    const std::uint8_t mode = r.u8();
    v.mode = static_cast<FlagMode>(mode);
    v.flags = r.u32();
    decode_keywords(r, v.keywords);
    if (!decode_uids(r, v.uids)) return false;
    return r.done() && mode <= 2 && (v.flags & ~flags_all) == 0;
}

void encode(std::string& out, const Expunge& v) {
    ByteWriter w(out);
    w.u64(v.mailbox_id);
    w.u64(v.modseq);
    encode_uids(w, v.uids);
}
bool decode(std::span<const std::byte> in, Expunge& v) {
    ByteReader r(in);
    v.mailbox_id = r.u64();
    v.modseq = r.u64();
    if (!decode_uids(r, v.uids)) return false;
    return r.done();
}

void encode(std::string& out, const SpoolAdd& v) {
    ByteWriter w(out);
    encode_spool_entry(w, v.entry);
}
bool decode(std::span<const std::byte> in, SpoolAdd& v) {
    ByteReader r(in);
    return decode_spool_entry(r, v.entry) && r.done() && v.entry.id != 0;
}

void encode(std::string& out, const SpoolUpdate& v) {
    ByteWriter w(out);
    w.u64(v.spool_id);
    w.u32(v.rcpt_index);
    w.u8(static_cast<std::uint8_t>(v.state));
    w.i64(v.next_attempt);
    w.u32(v.attempts);
    w.str(v.reply);
}
bool decode(std::span<const std::byte> in, SpoolUpdate& v) {
    ByteReader r(in);
    v.spool_id = r.u64();
    v.rcpt_index = r.u32();
    const std::uint8_t state = r.u8();
    v.state = static_cast<RcptState>(state);
    v.next_attempt = r.i64();
    v.attempts = r.u32();
    r.str(v.reply, limits::reply_bytes_max);
    return r.done() && state <= static_cast<std::uint8_t>(RcptState::failed);
}

void encode(std::string& out, const Commit& v) {
    ByteWriter w(out);
    w.u32(v.record_count);
}
bool decode(std::span<const std::byte> in, Commit& v) {
    ByteReader r(in);
    v.record_count = r.u32();
    return r.done();
}

}  // namespace rp::storage
