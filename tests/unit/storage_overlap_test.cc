// Group commit with several batches in flight, and segments pre-written ahead of the tail:
// durability in order, failures of overlapped batches, zeros never read as records.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <string>
#include <vector>

#include "core/clock.h"
#include "storage/segment.h"
#include "tests/sim/sim_io.h"
#include "tests/sim/store_harness.h"

namespace rp::storage {
namespace {

using test::body_string;
using test::bytes_of;
using test::TempDir;

// Records the order in which flushes and waiters complete.
struct Events {
    std::vector<std::string> order;
};

struct Flushed final : FlushDone {
    Flushed(Events& e, std::string n) : events(e), name(std::move(n)) {}
    void flush_done(Status s) override {
        status = s;
        events.order.push_back("flush " + name);
    }
    Events& events;
    std::string name;
    Status status = Status::cancelled;
};

struct Waiter final : DurableDone {
    Waiter(Events& e, std::string n) : events(e), name(std::move(n)) {}
    void durable(Status s) override {
        status = s;
        events.order.push_back("durable " + name);
    }
    Events& events;
    std::string name;
    Status status = Status::cancelled;
};

class Overlap : public ::testing::Test {
protected:
    StoreOptions options(std::uint32_t prewrite = 0) {
        StoreOptions o = test::options_for(dir.shard(0), 0, 1u << 20);
        o.batches_inflight_max = 2;
        o.prewrite_bytes = prewrite;
        return o;
    }
    void open(std::uint32_t prewrite = 0) {
        store.reset();
        auto opened = MailStore::open(io, clock, options(prewrite));
        ASSERT_TRUE(opened) << status_name(opened.status());
        store = std::move(*opened);
    }
    // Stages one message in one transaction; `w` hears when it is durable.
    std::uint32_t stage(const std::string& body, Waiter& w) {
        store->txn_begin();
        auto ref = store->body_put(bytes_of(body));
        EXPECT_TRUE(ref);
        MailStore::AppendArgs args;
        args.body = *ref;
        args.size = body.size();
        auto uid = store->message_append("a@x", "INBOX", args);
        EXPECT_TRUE(uid);
        EXPECT_TRUE(store->txn_commit(&w));
        return uid ? *uid : 0;
    }
    std::vector<std::string> bodies() {
        std::vector<std::string> out;
        auto msgs = store->messages("a@x", "INBOX");
        if (!msgs) return out;
        for (const auto& m : *msgs) out.push_back(body_string(*store, m.body));
        return out;
    }

    TempDir dir;
    sim::SimIo io{7};
    SimClock clock;
    std::unique_ptr<MailStore> store;
    Events events;
};

// Proves two batches go out before either is durable, that a third waits for a slot, and
// that completions arrive in flush order even when the second batch's writes and sync finish
// first: the durable watermark never passes a batch that is not synced.
TEST_F(Overlap, TwoBatchesInFlightCompleteInOrder) {
    open();
    ASSERT_EQ(store->account_create("a@x"), Status::ok);
    ASSERT_EQ(test::flush_all(*store, io), Status::ok);
    Waiter wa(events, "a"), wb(events, "b"), wc(events, "c");
    Flushed fa(events, "a"), fb(events, "b"), fc(events, "c");
    stage("message a", wa);
    ASSERT_EQ(store->flush(&fa), Status::ok);
    const Lsn before = store->durable_lsn();
    stage("message b", wb);
    ASSERT_EQ(store->flush(&fb), Status::ok);  // The second slot: written while a syncs.
    EXPECT_TRUE(store->flush_slots_full());
    stage("message c", wc);
    EXPECT_EQ(store->flush(&fc), Status::busy);
    EXPECT_EQ(store->durable_lsn(), before);
    // Newest completions first: b's write and sync finish before a's.
    io.run_pending_reversed();
    const std::vector<std::string> want{"durable a", "flush a", "durable b", "flush b"};
    EXPECT_EQ(events.order, want);
    EXPECT_EQ(wa.status, Status::ok);
    EXPECT_EQ(wb.status, Status::ok);
    EXPECT_EQ(wc.status, Status::cancelled);  // Still staged.
    ASSERT_EQ(store->flush(&fc), Status::ok);
    io.run_pending();
    EXPECT_EQ(wc.status, Status::ok);
    io.settle();
    open();
    EXPECT_EQ(bodies(), (std::vector<std::string>{"message a", "message b", "message c"}));
}

// Proves EIO on the write of the second of two batches in flight fails only that batch (the
// first is durable and acknowledged), poisons the store, and a reopen after a power loss
// holds the first message and not the second.
TEST_F(Overlap, EioOnSecondBatchInFlight) {
    open();
    ASSERT_EQ(store->account_create("a@x"), Status::ok);
    ASSERT_EQ(test::flush_all(*store, io), Status::ok);
    Waiter wa(events, "a"), wb(events, "b");
    Flushed fa(events, "a"), fb(events, "b");
    stage("message a", wa);
    ASSERT_EQ(store->flush(&fa), Status::ok);
    stage("message b", wb);
    io.faults.eio_write_at = 1;  // The next writev: batch b's.
    ASSERT_EQ(store->flush(&fb), Status::ok);
    io.run_pending_reversed();
    EXPECT_EQ(wa.status, Status::ok);
    EXPECT_EQ(fa.status, Status::ok);
    EXPECT_EQ(wb.status, Status::io);
    EXPECT_EQ(fb.status, Status::io);
    EXPECT_EQ(store->failed(), Status::io);
    EXPECT_EQ(store->flush(&fb), Status::io);
    io.crash();
    open();
    EXPECT_TRUE(store->open_report().damage.empty());
    EXPECT_EQ(bodies(), std::vector<std::string>{"message a"});
}

// Proves a failed fdatasync of the first batch fails the second as well, although the
// second's own sync reported success (after a failed sync the kernel may have dropped pages
// of both; only the first sync saw the error): nothing after a failed batch is called
// durable, and the reopened store is consistent.
TEST_F(Overlap, FailedFirstSyncFailsTheSecondBatch) {
    open();
    ASSERT_EQ(store->account_create("a@x"), Status::ok);
    ASSERT_EQ(test::flush_all(*store, io), Status::ok);
    Waiter wa(events, "a"), wb(events, "b");
    Flushed fa(events, "a"), fb(events, "b");
    stage("message a", wa);
    ASSERT_EQ(store->flush(&fa), Status::ok);
    stage("message b", wb);
    ASSERT_EQ(store->flush(&fb), Status::ok);
    io.faults.eio_sync_at = 1;  // a's fdatasync (completions in order: a's sync goes first).
    io.run_pending();
    EXPECT_EQ(wa.status, Status::io);
    EXPECT_EQ(wb.status, Status::io);
    EXPECT_EQ(fb.status, Status::io);
    EXPECT_EQ(store->failed(), Status::io);
    io.crash();
    open();
    EXPECT_TRUE(store->open_report().damage.empty());
    EXPECT_LE(bodies().size(), 2u);
}

// Proves the tail segment is pre-written with zeros ahead of the tail (the file is longer
// than the log), that a reopen reads the zeros as the end (no damage, nothing torn, the zeros
// kept), and that appends after the reopen overwrite them and read back byte-exact.
TEST_F(Overlap, PrewrittenSegmentReopensClean) {
    open(256 * 1024);
    ASSERT_EQ(store->account_create("a@x"), Status::ok);
    Waiter w(events, "w");
    stage("first", w);
    ASSERT_EQ(test::flush_all(*store, io), Status::ok);
    io.run_pending();  // The pre-write's zeros and their sync.
    EXPECT_EQ(store->log().prewrites(), 1u);
    const std::string seg = dir.shard(0) + "/" + segment_file_name(1);
    struct stat st {};
    ASSERT_EQ(::stat(seg.c_str(), &st), 0);
    const Lsn tail = store->log().tail();
    EXPECT_GT(static_cast<std::uint64_t>(st.st_size), lsn_offset(tail) + 200 * 1024);
    io.settle();
    open(256 * 1024);
    EXPECT_TRUE(store->open_report().damage.empty());
    EXPECT_EQ(store->open_report().torn_bytes, 0u);
    EXPECT_EQ(store->log().tail(), tail);
    struct stat again {};
    ASSERT_EQ(::stat(seg.c_str(), &again), 0);
    EXPECT_EQ(again.st_size, st.st_size);  // Not truncated.
    std::vector<std::unique_ptr<Waiter>> ws;
    for (int i = 0; i < 20; ++i) {
        ws.push_back(std::make_unique<Waiter>(events, "m"));
        stage("message " + std::to_string(i) + std::string(9000, 'x'), *ws.back());
        ASSERT_EQ(test::flush_all(*store, io), Status::ok);
    }
    io.run_pending();
    io.crash();  // Power loss: everything acknowledged is synced, zeros after it.
    open(256 * 1024);
    EXPECT_TRUE(store->open_report().damage.empty());
    const auto got = bodies();
    ASSERT_EQ(got.size(), 21u);
    EXPECT_EQ(got[0], "first");
    EXPECT_EQ(got[20], "message 19" + std::string(9000, 'x'));
}

// Proves a batch that would reach into zeros still being written waits (busy) and goes once
// they are synced, so zeros never overwrite records.
TEST_F(Overlap, BatchWaitsForPrewriteItWouldOverlap) {
    open(64 * 1024);
    ASSERT_EQ(store->account_create("a@x"), Status::ok);
    Waiter w1(events, "1"), w2(events, "2");
    stage("small", w1);
    Flushed f1(events, "1");
    ASSERT_EQ(store->flush(&f1), Status::ok);  // Starts the pre-write behind this batch.
    stage(std::string(100 * 1024, 'y'), w2);    // Reaches past the zeros in flight.
    Flushed f2(events, "2");
    EXPECT_EQ(store->flush(&f2), Status::busy);
    EXPECT_EQ(store->log().prewrite_waits(), 1u);
    ASSERT_EQ(test::flush_all(*store, io), Status::ok);
    io.run_pending();
    EXPECT_EQ(w2.status, Status::ok);
    io.crash();
    open(64 * 1024);
    EXPECT_TRUE(store->open_report().damage.empty());
    ASSERT_EQ(bodies().size(), 2u);
    EXPECT_EQ(bodies()[1], std::string(100 * 1024, 'y'));
}

// Proves a batch of a quarter of the pre-write or more skips it when its bytes are zero-copy
// pieces (the daemon's bodies), as when they are copied: zeros written ahead of a
// bandwidth-bound load only double its disk writes. The sizes count every piece.
TEST_F(Overlap, BigZeroCopyBatchSkipsThePrewrite) {
    open(256 * 1024);
    ASSERT_EQ(store->account_create("a@x"), Status::ok);
    ASSERT_EQ(test::flush_all(*store, io), Status::ok);
    io.run_pending();
    const std::uint64_t before = store->log().prewrites();
    EXPECT_EQ(before, 1u);  // The account's batch pre-wrote.
    struct Release final : BufferRelease {
        void buffer_released(Status s) override { status = s; }
        Status status = Status::cancelled;
    } release;
    // Above a quarter of 256 KiB, and far enough that the pre-written zeros would be renewed.
    const std::string body(200 * 1024, 'z');
    store->txn_begin();
    auto writer = store->body_begin();
    ASSERT_TRUE(writer);
    iovec part{const_cast<char*>(body.data()), body.size()};
    ASSERT_EQ(store->body_append(*writer, &part, 1, release), Status::ok);
    auto ref = store->body_finish(*writer);
    ASSERT_TRUE(ref);
    EXPECT_LT(store->log().staged_bytes(), 4096u);  // The body itself was not copied.
    MailStore::AppendArgs args;
    args.body = *ref;
    args.size = body.size();
    ASSERT_TRUE(store->message_append("a@x", "INBOX", args));
    Waiter w(events, "big");
    ASSERT_TRUE(store->txn_commit(&w));
    ASSERT_EQ(test::flush_all(*store, io), Status::ok);
    io.run_pending();
    EXPECT_EQ(w.status, Status::ok);
    EXPECT_EQ(release.status, Status::ok);
    EXPECT_EQ(store->log().prewrites(), before);
    Waiter small(events, "small");
    stage("small", small);  // A small batch still pre-writes.
    ASSERT_EQ(test::flush_all(*store, io), Status::ok);
    io.run_pending();
    EXPECT_EQ(store->log().prewrites(), before + 1);
    EXPECT_EQ(bodies(), (std::vector<std::string>{body, "small"}));
}

// Proves a scanner reads zeros from a record boundary to the end as the end of the records,
// but zeros followed by anything else as damage.
TEST(SegmentScanner, ZerosToTheEndAreTheEnd) {
    std::vector<std::byte> bytes(4096, std::byte{0});
    SegmentScanner scan(bytes, 64);
    EXPECT_EQ(scan.next().kind, ScanItem::Kind::end);
    bytes[4000] = std::byte{1};
    SegmentScanner damaged(bytes, 64);
    EXPECT_EQ(damaged.next().kind, ScanItem::Kind::bad);
}

}  // namespace
}  // namespace rp::storage

namespace rp::storage {
namespace {
struct SnapDone final : SnapshotDone {
    Status status = Status::cancelled;
    void snapshot_done(Status s) override { status = s; }
};
struct CompactWait final : CompactDone {
    Status status = Status::cancelled;
    std::uint64_t bytes = 0;
    bool called = false;
    void compact_done(Status s, std::uint64_t b) override {
        status = s;
        bytes = b;
        called = true;
    }
};

// Proves compaction and segment retirement work on pre-written segments: after expunging 90%
// the emptied segments are retired and what is left reads back.
TEST_F(Overlap, CompactionRetiresPrewrittenSegments) {
    open(16u << 20);
    ASSERT_EQ(store->account_create("a@x"), Status::ok);
    std::vector<std::uint32_t> uids;
    std::vector<std::unique_ptr<Waiter>> ws;
    for (int i = 0; i < 120; ++i) {
        ws.push_back(std::make_unique<Waiter>(events, "m"));
        uids.push_back(stage(std::string(25000, static_cast<char>('A' + i % 50)), *ws.back()));
        ASSERT_EQ(test::flush_all(*store, io), Status::ok);
        io.run_pending();
    }
    const std::size_t before = store->log().segments().size();
    std::vector<std::uint32_t> gone;
    for (std::size_t i = 0; i < uids.size(); ++i) {
        if (i % 10 != 0) gone.push_back(uids[i]);
    }
    ASSERT_TRUE(store->expunge("a@x", "INBOX", gone));
    ASSERT_EQ(test::flush_all(*store, io), Status::ok);
    ASSERT_TRUE(store->gc_finish(store->gc_begin(), {}));
    ASSERT_EQ(test::flush_all(*store, io), Status::ok);
    io.run_pending();
    int steps = 0;
    while (store->compact_needed()) {
        CompactWait step;
        ASSERT_EQ(store->compact_step(128 * 1024, step), Status::ok);
        io.run_pending();
        ASSERT_TRUE(step.called);
        ASSERT_EQ(step.status, Status::ok);
        ASSERT_EQ(test::flush_all(*store, io), Status::ok);
        io.run_pending();
        ASSERT_LT(++steps, 100);
    }
    for (int i = 0; i < 2; ++i) {
        SnapDone snap;
        ASSERT_EQ(store->snapshot(snap), Status::ok);
        io.run_pending();
        ASSERT_EQ(snap.status, Status::ok);
    }
    store->retire_segments();
    io.run_pending();
    std::printf("segments before %zu after %zu, steps %d\n", before, store->log().segments().size(), steps);
    EXPECT_LE(store->log().segments().size(), 2u);
    EXPECT_EQ(bodies().size(), 12u);
}
}  // namespace
}  // namespace rp::storage

namespace rp::storage {
namespace {

// Proves a read-only open (ringpost beside the daemon) survives the daemon's upkeep retiring a
// segment between the listing of the folder and the opening of the file, and a snapshot
// replaced under it: it starts over and opens the current state. Before, it failed with
// not_found ("no account" in the tool).
TEST(ReadOnlyOpen, RetriesWhenUpkeepRetiresASegmentUnderIt) {
    TempDir dir;
    sim::SimIo io(3);
    SimClock clock;
    StoreOptions o = test::options_for(dir.shard(0), 0, 1u << 20);
    o.prewrite_bytes = 0;
    {
        auto opened = MailStore::open(io, clock, o);
        ASSERT_TRUE(opened);
        auto& store = **opened;
        ASSERT_EQ(store.account_create("a@x"), Status::ok);
        for (int i = 0; i < 6; ++i) {  // Past the first 1 MiB segment.
            ASSERT_TRUE(test::put_message(store, "a@x", "INBOX", std::string(300 * 1024, 'a' + i)));
            ASSERT_EQ(test::flush_all(store, io), Status::ok);
        }
        ASSERT_GE(store.log().segments().size(), 2u);
        for (int i = 0; i < 2; ++i) {  // Both snapshots past segment 1.
            SnapDone snap;
            ASSERT_EQ(store.snapshot(snap), Status::ok);
            io.run_pending();
            ASSERT_EQ(snap.status, Status::ok);
        }
        io.settle();
    }
    const std::string first = dir.shard(0) + "/" + segment_file_name(1);
    const std::string snapshot = dir.shard(0) + "/snapshot";
    int calls = 0;
    StoreOptions ro = o;
    ro.read_only = true;
    ro.open_race_hook = [&] {
        // The first time: the daemon retires segment 1 and rewrites its snapshot (same
        // content, new file) just as the tool is about to open the listed files.
        if (++calls != 1) return;
        ASSERT_EQ(::unlink(first.c_str()), 0);
        const std::string tmp = snapshot + ".tmp";
        std::filesystem::copy_file(snapshot, tmp);
        ASSERT_EQ(::rename(tmp.c_str(), snapshot.c_str()), 0);
    };
    auto opened = MailStore::open(io, clock, ro);
    ASSERT_TRUE(opened) << status_name(opened.status());
    EXPECT_GT(calls, 1);  // It started over.
    EXPECT_TRUE((*opened)->account_exists("a@x"));
    EXPECT_EQ((*opened)->messages("a@x", "INBOX")->size(), 6u);
}

}  // namespace
}  // namespace rp::storage
