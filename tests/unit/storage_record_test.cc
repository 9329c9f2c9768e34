// Record format, payload codecs and the segment scanner.
#include <gtest/gtest.h>

#include <cstring>

#include "storage/record.h"
#include "storage/segment.h"

namespace rp::storage {
namespace {

std::string sealed(RecordType type, const std::string& payload, std::uint64_t txn = 1) {
    RecordHeader h;
    h.type = static_cast<std::uint16_t>(type);
    h.payload_bytes = static_cast<std::uint32_t>(payload.size());
    h.txn = txn;
    record_seal(h, as_bytes(payload));
    std::string out(reinterpret_cast<const char*>(&h), sizeof h);
    out += payload;
    out.resize(record_bytes(h.payload_bytes), '\0');
    return out;
}

template <typename T>
T round_trip(const T& v) {
    std::string p;
    encode(p, v);
    T out;
    EXPECT_TRUE(decode(as_bytes(p), out));
    // Every strict prefix must be rejected, never read past the end.
    for (std::size_t n = 0; n < p.size(); ++n) {
        T cut;
        EXPECT_FALSE(decode(as_bytes(std::string_view(p).substr(0, n)), cut)) << n;
    }
    // Trailing garbage is rejected too.
    T longer;
    EXPECT_FALSE(decode(as_bytes(p + "x"), longer));
    return out;
}

// Proves every record type encodes and decodes to the same value and rejects truncation.
TEST(StorageRecord, EveryTypeRoundTrips) {
    BodyDefine body{7, 30, {{1, 64, 10}, {2, 64, 20}}};
    EXPECT_EQ(round_trip(body).extents, body.extents);
    EXPECT_EQ(round_trip(IdList{{1, 2, 3}}).ids.size(), 3u);
    EXPECT_EQ(round_trip(IdOnly{9}).id, 9u);
    EXPECT_EQ(round_trip(AccountCreate{3, "a@b.test", 5}).name, "a@b.test");
    EXPECT_EQ(round_trip(MailboxCreate{3, 4, "Sent", special_sent, 77}).special_use, special_sent);
    EXPECT_EQ(round_trip(MailboxRename{4, "Old"}).name, "Old");
    EXPECT_EQ(round_trip(KeywordDefine{3, 0, "$Junk"}).name, "$Junk");
    EXPECT_TRUE(round_trip(SubscriptionSet{3, "Lists/a", true}).subscribed);
    EXPECT_FALSE(round_trip(SubscriptionSet{3, "Lists/a", false}).subscribed);
    MessageAppend app{4, 2, {11, "x@y"}, {{1, flag_seen, {}, 123, 456, {0, 7}}}};
    app.messages[0].keywords[0] = 5;
    auto app2 = round_trip(app);
    EXPECT_EQ(app2.messages[0].keywords[0], 5u);
    EXPECT_EQ(app2.key.rcpt, "x@y");
    EXPECT_EQ(round_trip(FlagsSet{4, 3, FlagMode::replace, flag_deleted, {}, {1, 2}}).uids.size(), 2u);
    EXPECT_EQ(round_trip(Expunge{4, 5, {1}}).modseq, 5u);
    SpoolEntry e;
    e.id = 1;
    e.sender = "s@x";
    e.recipients = {{"r@y", RcptState::deferred, 100, 2, "451 later"}};
    e.body = {1, 2};
    EXPECT_EQ(round_trip(SpoolAdd{e}).entry.recipients[0].reply, "451 later");
    EXPECT_EQ(round_trip(SpoolUpdate{1, 0, RcptState::bounced, 0, 3, "550 no"}).state, RcptState::bounced);
    EXPECT_EQ(round_trip(Commit{4}).record_count, 4u);
}

// Proves decoders reject out-of-range values (a lying count, bad flags, bad enum).
TEST(StorageRecord, DecodersRejectBadValues) {
    std::string p;
    ByteWriter w(p);
    w.u32(0xffffffffu);  // A count far beyond the bytes present.
    IdList ids;
    EXPECT_FALSE(decode(as_bytes(p), ids));
    FlagsSet f{4, 3, FlagMode::add, 0, {}, {}};
    std::string fp;
    encode(fp, f);
    fp[16] = 9;  // mode
    EXPECT_FALSE(decode(as_bytes(fp), f));
    BodyDefine lie{7, 31, {{1, 64, 10}}};  // Sum of extents != bytes.
    std::string bp;
    encode(bp, lie);
    EXPECT_FALSE(decode(as_bytes(bp), lie));
    std::string sp;
    encode(sp, SubscriptionSet{3, "x", true});
    sp.back() = 2;  // Neither subscribed nor unsubscribed.
    SubscriptionSet sub;
    EXPECT_FALSE(decode(as_bytes(sp), sub));
    sp.clear();
    encode(sp, SubscriptionSet{3, "", true});
    EXPECT_FALSE(decode(as_bytes(sp), sub));
}

// Proves the header CRC, record CRC, magic and version checks, and that a payload flip is a
// bad item whose header is still trusted.
TEST(StorageRecord, HeaderAndPayloadChecks) {
    const std::string rec = sealed(RecordType::commit, std::string("\x01\0\0\0", 4));
    auto h = record_header_decode(as_bytes(rec));
    ASSERT_TRUE(h);
    EXPECT_TRUE(record_payload_ok(*h, as_bytes(rec).subspan(48, 4)));
    std::string bad = rec;
    bad[49] ^= 1;
    EXPECT_FALSE(record_payload_ok(*h, as_bytes(bad).subspan(48, 4)));
    bad = rec;
    bad[20] ^= 1;  // reserved, covered by header CRC
    EXPECT_EQ(record_header_decode(as_bytes(bad)).status(), Status::corrupt);
    bad = rec;
    bad[0] = 'X';
    EXPECT_EQ(record_header_decode(as_bytes(bad)).status(), Status::corrupt);
    EXPECT_EQ(record_header_decode(as_bytes(rec).first(40)).status(), Status::truncated);
    EXPECT_EQ(record_header_decode(as_bytes(rec).first(50)).status(), Status::truncated);
}

// Proves the scanner walks records, reports damage with offsets, and resyncs after it.
TEST(StorageSegment, ScannerReportsAndResyncs) {
    const SegmentHeader sh = segment_header_make(3, 9, 0);
    std::string seg(reinterpret_cast<const char*>(&sh), sizeof sh);
    const std::string a = sealed(RecordType::commit, std::string(4, '\0'));
    seg += a + a + a;
    auto decoded = segment_header_decode(as_bytes(seg));
    ASSERT_TRUE(decoded);
    EXPECT_EQ(decoded->segment_id, 9u);
    EXPECT_EQ(decoded->shard, 3);
    seg[64 + a.size() + 2] ^= 0x40;  // Break the second record's magic.
    SegmentScanner scan(as_bytes(seg), 64);
    EXPECT_EQ(scan.next().kind, ScanItem::Kind::record);
    ScanItem bad = scan.next();
    EXPECT_EQ(bad.kind, ScanItem::Kind::bad);
    EXPECT_EQ(bad.offset, 64 + a.size());
    EXPECT_FALSE(bad.header_ok);
    EXPECT_TRUE(scan.resync(bad.offset + 8));
    EXPECT_EQ(scan.position(), 64 + 2 * a.size());
    EXPECT_EQ(scan.next().kind, ScanItem::Kind::record);
    EXPECT_EQ(scan.next().kind, ScanItem::Kind::end);
    std::string broken = seg;
    broken[5] ^= 1;
    EXPECT_EQ(segment_header_decode(as_bytes(broken)).status(), Status::corrupt);
    EXPECT_EQ(segment_header_decode(as_bytes(seg).first(10)).status(), Status::truncated);
}

// Proves segment file names parse back and foreign names are refused.
TEST(StorageSegment, FileNames) {
    std::uint32_t id = 0;
    EXPECT_TRUE(segment_file_parse(segment_file_name(42), id));
    EXPECT_EQ(id, 42u);
    EXPECT_FALSE(segment_file_parse("seg-0000000x.log", id));
    EXPECT_FALSE(segment_file_parse("seg-00000000.log", id));
    EXPECT_FALSE(segment_file_parse("snapshot", id));
}

}  // namespace
}  // namespace rp::storage
