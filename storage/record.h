// storage/record.h: the on-disk record format and the payload codecs of every record type.
//
// A record is a 48-byte header, a payload and zero padding to the next 8-byte boundary:
//
//   [0,4)   magic 'RPRC'         lets a scanner resynchronise after a damaged record
//   [4,8)   header_crc           CRC32C of bytes [12,48): the length and scope can be trusted
//                                even when the payload is damaged
//   [8,12)  record_crc           CRC32C of bytes [12,48) and the payload
//   [12,14) type, [14] version, [15] flags
//   [16,20) payload_bytes, [20,24) reserved (0)
//   [24,32) txn                  0 for body chunks; a transaction id for index records
//   [32,40) scope                what the record touches (scope_mailbox(id), scope_body(id)...)
//   [40,48) durable_hint         the log position known durable when the record was made
//
// Index records of one transaction are contiguous and end with a commit record that counts
// them; recovery applies a transaction only when its commit is present. The durable hint lets
// recovery tell a torn tail (nothing after the damage was ever durable) from damage in the
// middle (a later record proves the damaged bytes had been synced).
//
// Payload decoders take bytes from disk: they validate every length and never read outside the
// span. They return false on malformed input; nothing here asserts on disk bytes.
#pragma once

#include <sys/uio.h>

#include <array>
#include <bit>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/limits.h"
#include "core/result.h"

namespace rp::storage {

static_assert(std::endian::native == std::endian::little, "the disk format is little endian");

// A position in one shard's log: segment id in the high 32 bits, byte offset in the low.
using Lsn = std::uint64_t;
inline constexpr Lsn lsn_make(std::uint32_t segment_id, std::uint32_t offset) {
    return (static_cast<Lsn>(segment_id) << 32) | offset;
}
inline constexpr std::uint32_t lsn_segment(Lsn lsn) { return static_cast<std::uint32_t>(lsn >> 32); }
inline constexpr std::uint32_t lsn_offset(Lsn lsn) { return static_cast<std::uint32_t>(lsn); }

inline constexpr std::uint32_t record_magic = 0x43525052u;  // "RPRC" little endian.
inline constexpr std::uint8_t record_version = 1;
inline constexpr std::uint32_t record_header_bytes = limits::record_header_bytes;

enum class RecordType : std::uint16_t {
    body_chunk = 1,   // Raw body bytes; scope_body(id). Not part of a transaction.
    body_define,      // BodyDefine: a body's extents, size and id.
    body_move,        // BodyDefine: compaction moved a body to new extents.
    body_drop,        // IdList: bodies no longer referenced anywhere.
    account_create,   // AccountCreate
    mailbox_create,   // MailboxCreate
    mailbox_rename,   // MailboxRename
    mailbox_delete,   // IdOnly (mailbox id)
    keyword_define,   // KeywordDefine
    message_append,   // MessageAppend (also COPY and the first half of MOVE)
    flags_set,        // FlagsSet
    expunge,          // Expunge
    spool_add,        // SpoolAdd
    spool_update,     // SpoolUpdate
    spool_remove,     // IdOnly (spool id)
    commit,           // Commit: ends a transaction.
    mailbox_repair,   // IdOnly (mailbox id): an operator accepted a quarantined mailbox.
    segment_seal,     // IdOnly (next segment id): the last record of a full segment. Recovery
                      // knows from it that the segment's tail is complete.
    subscription_set, // SubscriptionSet: IMAP SUBSCRIBE / UNSUBSCRIBE of a mailbox name.
    // Snapshot-only records (index_snapshot.cc).
    snap_state = 64,
    snap_account,
    snap_mailbox,
    snap_bodies,
    snap_spool,
    snap_deliveries,
    snap_end,
};
std::string_view record_type_name(RecordType type);
bool record_type_known(std::uint16_t type);

// What a record touches, for quarantine: kind in the top 8 bits, id below.
enum class ScopeKind : std::uint8_t { none = 0, mailbox = 1, body = 2, spool = 3, account = 4 };
inline constexpr std::uint64_t scope_make(ScopeKind kind, std::uint64_t id) {
    return (static_cast<std::uint64_t>(kind) << 56) | (id & ((1ull << 56) - 1));
}
inline constexpr ScopeKind scope_kind(std::uint64_t scope) { return static_cast<ScopeKind>(scope >> 56); }
inline constexpr std::uint64_t scope_id(std::uint64_t scope) { return scope & ((1ull << 56) - 1); }

struct RecordHeader {
    std::uint32_t magic = record_magic;
    std::uint32_t header_crc = 0;
    std::uint32_t record_crc = 0;
    std::uint16_t type = 0;
    std::uint8_t version = record_version;
    std::uint8_t flags = 0;
    std::uint32_t payload_bytes = 0;
    std::uint32_t reserved = 0;
    std::uint64_t txn = 0;
    std::uint64_t scope = 0;
    Lsn durable_hint = 0;
};
static_assert(sizeof(RecordHeader) == record_header_bytes);

// bounds: payload_bytes <= record_payload_bytes_max (64 MiB), so the sum fits in 32 bits.
inline constexpr std::uint32_t align8(std::uint32_t bytes) { return (bytes + 7u) & ~7u; }
inline constexpr std::uint32_t record_bytes(std::uint32_t payload_bytes) {
    return align8(record_header_bytes + payload_bytes);
}

// Fills magic, header_crc and record_crc; the payload is given as pieces.
void record_seal(RecordHeader& header, const iovec* payload, unsigned payload_count);
void record_seal(RecordHeader& header, std::span<const std::byte> payload);

// Validates magic, header CRC, version, type and length against `available` bytes.
// Status::truncated when the bytes end inside the header or the record.
[[nodiscard]] Result<RecordHeader> record_header_decode(std::span<const std::byte> bytes);
// True when the record CRC matches; `payload` is exactly header.payload_bytes long.
bool record_payload_ok(const RecordHeader& header, std::span<const std::byte> payload);

// ---- payload codec ----

class ByteWriter {
public:
    explicit ByteWriter(std::string& out) : out_(out) {}
    void u8(std::uint8_t v) { out_.push_back(static_cast<char>(v)); }
    void u16(std::uint16_t v) { raw(&v, sizeof v); }
    void u32(std::uint32_t v) { raw(&v, sizeof v); }
    void u64(std::uint64_t v) { raw(&v, sizeof v); }
    void i64(std::int64_t v) { raw(&v, sizeof v); }
    void str(std::string_view s) {
        u32(static_cast<std::uint32_t>(s.size()));
        out_.append(s);
    }
    void raw(const void* p, std::size_t n) { out_.append(static_cast<const char*>(p), n); }

private:
    std::string& out_;
};

// Reads little-endian fields; once a read would pass the end, ok() is false and every later
// read yields zero. Never reads outside the span.
class ByteReader {
public:
    explicit ByteReader(std::span<const std::byte> bytes) : bytes_(bytes) {}
    std::uint8_t u8() { return take<std::uint8_t>(); }
    std::uint16_t u16() { return take<std::uint16_t>(); }
    std::uint32_t u32() { return take<std::uint32_t>(); }
    std::uint64_t u64() { return take<std::uint64_t>(); }
    std::int64_t i64() { return take<std::int64_t>(); }
    // A length-prefixed string of at most `bytes_max` bytes.
    bool str(std::string& out, std::uint32_t bytes_max);
    // A count that must be <= count_max and whose items (item_bytes_min each) fit in the rest.
    bool count(std::uint32_t& out, std::uint32_t count_max, std::uint32_t item_bytes_min);
    bool ok() const { return ok_; }
    bool done() const { return ok_ && pos_ == bytes_.size(); }
    std::size_t remaining() const { return ok_ ? bytes_.size() - pos_ : 0; }

private:
    template <typename T>
    T take();
    std::span<const std::byte> bytes_;
    std::size_t pos_ = 0;
    bool ok_ = true;
};

template <typename T>
inline T ByteReader::take() {
    T v{};
    if (!ok_ || bytes_.size() - pos_ < sizeof(T)) {
        ok_ = false;
        return v;
    }
    std::memcpy(&v, bytes_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
}

// ---- the records ----

// System flags (RFC 3501 2.3.2); \Recent is session state and never stored.
enum MessageFlag : std::uint32_t {
    flag_seen = 1u << 0,
    flag_answered = 1u << 1,
    flag_flagged = 1u << 2,
    flag_deleted = 1u << 3,
    flag_draft = 1u << 4,
};
inline constexpr std::uint32_t flags_all = 0x1f;

// RFC 6154 special-use attributes.
enum SpecialUse : std::uint32_t {
    special_none = 0,
    special_sent = 1u << 0,
    special_drafts = 1u << 1,
    special_trash = 1u << 2,
    special_junk = 1u << 3,
    special_archive = 1u << 4,
    special_all = 1u << 5,
    special_flagged = 1u << 6,
};
inline constexpr std::uint32_t special_use_all = 0x7f;

// Keyword bits; bit i is keyword i of the account's keyword table.
using Keywords = std::array<std::uint64_t, limits::keywords_per_account_max / 64>;

struct Extent {
    std::uint32_t segment_id = 0;
    std::uint32_t offset = 0;  // Of the chunk record's header; the bytes start 48 later.
    std::uint32_t bytes = 0;   // Payload bytes of the chunk.
    bool operator==(const Extent&) const = default;
};

// A body lives in the store of shard `shard`; id 0 means no body.
struct BodyRef {
    std::uint16_t shard = 0;
    std::uint64_t id = 0;
    bool operator==(const BodyRef&) const = default;
    bool empty() const { return id == 0; }
};

// What a body's writer learned about its bytes (a bit set; 0 says nothing is known).
enum BodyTrait : std::uint8_t {
    // No line starts with "." (at the start or after any LF) and the body ends with CRLF:
    // POP3 RETR may send the stored bytes as they are, then ".\r\n" (RFC 1939 3).
    body_dot_free = 1u << 0,
    // Every byte is below 0x80: the relay may send it without BODY=8BITMIME (RFC 6152) and
    // need not read it first to find out.
    body_7bit = 1u << 1,
};
inline constexpr std::uint8_t body_traits_all = 0x3;

struct BodyDefine {  // body_define and body_move
    std::uint64_t body_id = 0;
    std::uint64_t bytes = 0;
    std::vector<Extent> extents;
    // body_define only; a trailing byte, absent in records written before it existed (then 0).
    std::uint8_t traits = 0;
};

struct IdList {  // body_drop
    std::vector<std::uint64_t> ids;
};

struct IdOnly {  // mailbox_delete, spool_remove, mailbox_repair
    std::uint64_t id = 0;
};

struct AccountCreate {
    std::uint64_t account_id = 0;
    std::string name;
    std::int64_t created = 0;
};

struct MailboxCreate {
    std::uint64_t account_id = 0;
    std::uint64_t mailbox_id = 0;
    std::string name;
    std::uint32_t special_use = 0;
    std::uint32_t uidvalidity = 0;
};

struct MailboxRename {
    std::uint64_t mailbox_id = 0;
    std::string name;
};

// RFC 3501 6.3.6: a name may be subscribed whether or not the mailbox exists.
struct SubscriptionSet {
    std::uint64_t account_id = 0;
    std::string name;
    bool subscribed = false;
};

struct KeywordDefine {
    std::uint64_t account_id = 0;
    std::uint32_t index = 0;
    std::string name;
};

struct MessageEntry {
    std::uint32_t uid = 0;
    std::uint32_t flags = 0;
    Keywords keywords{};
    std::int64_t internal_date = 0;
    std::uint64_t size = 0;
    BodyRef body;
};

// Idempotent delivery: (spool id, recipient) delivered once. Empty rcpt means none.
struct DeliveryKey {
    std::uint64_t spool_id = 0;
    std::string rcpt;
    bool empty() const { return rcpt.empty(); }
};

struct MessageAppend {
    std::uint64_t mailbox_id = 0;
    std::uint64_t modseq = 0;
    DeliveryKey key;
    std::vector<MessageEntry> messages;
};

enum class FlagMode : std::uint8_t { add = 0, remove = 1, replace = 2 };

struct FlagsSet {
    std::uint64_t mailbox_id = 0;
    std::uint64_t modseq = 0;
    FlagMode mode = FlagMode::add;
    std::uint32_t flags = 0;
    Keywords keywords{};
    std::vector<std::uint32_t> uids;
};

struct Expunge {
    std::uint64_t mailbox_id = 0;
    std::uint64_t modseq = 0;
    std::vector<std::uint32_t> uids;
};

enum class RcptState : std::uint8_t { pending = 0, delivered = 1, deferred = 2, bounced = 3, failed = 4 };
inline bool rcpt_state_final(RcptState s) {
    return s == RcptState::delivered || s == RcptState::bounced || s == RcptState::failed;
}

struct SpoolRecipient {
    std::string address;
    RcptState state = RcptState::pending;
    std::int64_t next_attempt = 0;  // Unix seconds; due when <= now (pending or deferred).
    std::uint32_t attempts = 0;
    std::string reply;  // The last reply text (deferred, bounced, failed).
};

struct SpoolEntry {
    std::uint64_t id = 0;
    std::string sender;
    std::vector<SpoolRecipient> recipients;
    BodyRef body;
    std::uint64_t body_bytes = 0;
    std::int64_t arrival = 0;
    std::string client;  // Client information: helo, address, authenticated user.
};

struct SpoolAdd {
    SpoolEntry entry;
};

struct SpoolUpdate {
    std::uint64_t spool_id = 0;
    std::uint32_t rcpt_index = 0;
    RcptState state = RcptState::pending;
    std::int64_t next_attempt = 0;
    std::uint32_t attempts = 0;
    std::string reply;
};

struct Commit {
    std::uint32_t record_count = 0;  // Records of the transaction before this one.
};

void encode(std::string& out, const BodyDefine& v);
void encode(std::string& out, const IdList& v);
void encode(std::string& out, const IdOnly& v);
void encode(std::string& out, const AccountCreate& v);
void encode(std::string& out, const MailboxCreate& v);
void encode(std::string& out, const MailboxRename& v);
void encode(std::string& out, const KeywordDefine& v);
void encode(std::string& out, const SubscriptionSet& v);
void encode(std::string& out, const MessageAppend& v);
void encode(std::string& out, const FlagsSet& v);
void encode(std::string& out, const Expunge& v);
void encode(std::string& out, const SpoolAdd& v);
void encode(std::string& out, const SpoolUpdate& v);
void encode(std::string& out, const Commit& v);

// Each decoder consumes the whole payload; false when it is malformed.
bool decode(std::span<const std::byte> in, BodyDefine& v);
bool decode(std::span<const std::byte> in, IdList& v);
bool decode(std::span<const std::byte> in, IdOnly& v);
bool decode(std::span<const std::byte> in, AccountCreate& v);
bool decode(std::span<const std::byte> in, MailboxCreate& v);
bool decode(std::span<const std::byte> in, MailboxRename& v);
bool decode(std::span<const std::byte> in, KeywordDefine& v);
bool decode(std::span<const std::byte> in, SubscriptionSet& v);
bool decode(std::span<const std::byte> in, MessageAppend& v);
bool decode(std::span<const std::byte> in, FlagsSet& v);
bool decode(std::span<const std::byte> in, Expunge& v);
bool decode(std::span<const std::byte> in, SpoolAdd& v);
bool decode(std::span<const std::byte> in, SpoolUpdate& v);
bool decode(std::span<const std::byte> in, Commit& v);

// Shared pieces, also used by the snapshot codec.
void encode_message(ByteWriter& w, const MessageEntry& m);
bool decode_message(ByteReader& r, MessageEntry& m);
void encode_spool_entry(ByteWriter& w, const SpoolEntry& e);
bool decode_spool_entry(ByteReader& r, SpoolEntry& e);
void encode_extents(ByteWriter& w, const std::vector<Extent>& extents);
bool decode_extents(ByteReader& r, std::vector<Extent>& extents);

inline std::span<const std::byte> as_bytes(std::string_view s) {
    return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

}  // namespace rp::storage
