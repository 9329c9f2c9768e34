// MailStore: mailbox operations, durability, recovery, quarantine, spool, GC and compaction.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <unordered_set>

#include "core/clock.h"
#include "core/sync_io.h"
#include "storage/segment.h"
#include "tests/sim/sim_io.h"
#include "tests/sim/store_harness.h"

namespace rp::storage {
namespace {

using test::body_string;
using test::bytes_of;
using test::flush_all;
using test::put_message;
using test::TempDir;

// Counts what reaches the Io, to prove group commit.
class CountingIo final : public Io {
public:
    void writev(int fd, const iovec* iov, unsigned n, std::uint64_t off, IoCompletion& d) override {
        ++writes;
        inner.writev(fd, iov, n, off, d);
    }
    void read(int fd, void* b, std::uint32_t n, std::uint64_t off, IoCompletion& d) override {
        inner.read(fd, b, n, off, d);
    }
    void fdatasync(int fd, IoCompletion& d) override {
        ++syncs;
        inner.fdatasync(fd, d);
    }
    void fsync(int fd, IoCompletion& d) override {
        ++dir_syncs;
        inner.fsync(fd, d);
    }
    void openat(int dir, const char* path, int flags, unsigned mode, IoCompletion& d) override {
        ++meta_ops;
        inner.openat(dir, path, flags, mode, d);
    }
    void renameat(int od, const char* op, int nd, const char* np, IoCompletion& d) override {
        ++meta_ops;
        inner.renameat(od, op, nd, np, d);
    }
    void unlinkat(int dir, const char* path, IoCompletion& d) override {
        ++meta_ops;
        inner.unlinkat(dir, path, d);
    }
    void fallocate(int fd, int mode, std::uint64_t off, std::uint64_t n, IoCompletion& d) override {
        ++meta_ops;
        inner.fallocate(fd, mode, off, n, d);
    }
    std::size_t run_pending() { return inner.run_pending(); }
    SyncIo inner;
    int meta_ops = 0;
    int writes = 0, syncs = 0, dir_syncs = 0;
};

struct Durable final : DurableDone {
    int calls = 0;
    Status status = Status::cancelled;
    void durable(Status s) override {
        ++calls;
        status = s;
    }
};

struct Release final : BufferRelease {
    int calls = 0;
    Status status = Status::cancelled;
    void buffer_released(Status s) override {
        ++calls;
        status = s;
    }
};

class Store : public ::testing::Test {
protected:
    void open(std::uint16_t shard = 0, std::uint32_t segment_bytes = 1u << 20) {
        store.reset();
        StoreOptions o = test::options_for(dir.shard(shard), shard, segment_bytes);
        // These tests reason about file sizes; pre-written segments are covered in
        // storage_overlap_test.cc (and by the simulated faults, which use the default).
        o.prewrite_bytes = 0;
        auto s = MailStore::open(io, clock, o);
        ASSERT_TRUE(s) << status_name(s.status());
        store = std::move(*s);
    }
    void flush() { ASSERT_EQ(flush_all(*store, io), Status::ok); }
    std::uint32_t put(std::string_view account, std::string_view box, const std::string& body) {
        auto uid = put_message(*store, account, box, body);
        EXPECT_TRUE(uid) << status_name(uid.status());
        return uid ? *uid : 0;
    }
    std::string segment_path(std::uint32_t id, int shard = 0) {
        return dir.shard(shard) + "/" + segment_file_name(id);
    }

    TempDir dir;
    CountingIo io;
    SimClock clock;
    std::unique_ptr<MailStore> store;
};

// Proves a new account gets INBOX, Sent, Drafts, Trash and Junk with special-use flags, and
// the account errors.
TEST_F(Store, AccountDefaults) {
    open();
    ASSERT_EQ(store->account_create("demo@example.test"), Status::ok);
    EXPECT_EQ(store->account_create("demo@example.test"), Status::exists);
    EXPECT_EQ(store->account_create(""), Status::invalid);
    auto list = store->mailbox_list("demo@example.test");
    ASSERT_TRUE(list);
    ASSERT_EQ(list->size(), 5u);
    std::map<std::string, std::uint32_t> uses;
    for (const auto& m : *list) uses[m.name] = m.special_use;
    EXPECT_EQ(uses["INBOX"], special_none);
    EXPECT_EQ(uses["Sent"], special_sent);
    EXPECT_EQ(uses["Drafts"], special_drafts);
    EXPECT_EQ(uses["Trash"], special_trash);
    EXPECT_EQ(uses["Junk"], special_junk);
    EXPECT_EQ(store->mailbox_list("nobody").status(), Status::not_found);
    flush();
    open();
    EXPECT_EQ(store->mailbox_list("demo@example.test")->size(), 5u);
}

// Proves create, rename and delete, their errors, distinct UIDVALIDITY, and that a recreated
// name gets a new UIDVALIDITY.
TEST_F(Store, MailboxLifecycle) {
    open();
    ASSERT_EQ(store->account_create("a@x"), Status::ok);
    auto id = store->mailbox_create("a@x", "Work", special_archive);
    ASSERT_TRUE(id);
    EXPECT_EQ(store->mailbox_create("a@x", "Work").status(), Status::exists);
    EXPECT_EQ(store->mailbox_create("a@x", "").status(), Status::invalid);
    EXPECT_EQ(store->mailbox_create("b@x", "Work").status(), Status::not_found);
    EXPECT_EQ(store->mailbox_create("a@x", "inbox").status(), Status::exists);  // INBOX is case-insensitive
    const auto v1 = store->mailbox_status("a@x", "Work")->uidvalidity;
    put("a@x", "Work", "hello");
    EXPECT_EQ(store->mailbox_rename("a@x", "Work", "Play"), Status::ok);
    EXPECT_EQ(store->mailbox_rename("a@x", "Work", "Other"), Status::not_found);
    EXPECT_EQ(store->mailbox_rename("a@x", "Play", "Sent"), Status::exists);
    EXPECT_EQ(store->mailbox_rename("a@x", "Play", "inbox"), Status::invalid);
    EXPECT_EQ(store->mailbox_rename("a@x", "INBOX", "Sent"), Status::exists);
    EXPECT_EQ(store->mailbox_delete("a@x", "INBOX"), Status::invalid);
    flush();
    EXPECT_EQ(store->messages("a@x", "Play")->size(), 1u);
    EXPECT_EQ(store->mailbox_delete("a@x", "Play"), Status::ok);
    EXPECT_EQ(store->mailbox_delete("a@x", "Play"), Status::not_found);
    ASSERT_TRUE(store->mailbox_create("a@x", "Play"));
    const auto v2 = store->mailbox_status("a@x", "Play")->uidvalidity;
    EXPECT_NE(v1, v2);
    flush();
    open();
    EXPECT_EQ(store->mailbox_status("a@x", "Play")->uidvalidity, v2);
    EXPECT_EQ(store->mailbox_status("a@x", "Play")->message_count, 0u);
    EXPECT_EQ(store->mailbox_list("a@x")->size(), 6u);
}

// Proves append, visibility only after the flush, read back, flags and keywords with modseq,
// copy, move and expunge, and that all of it survives a reopen.
TEST_F(Store, MessageOperations) {
    open();
    ASSERT_EQ(store->account_create("a@x"), Status::ok);
    const std::uint32_t u1 = put("a@x", "INBOX", "one");
    EXPECT_EQ(store->messages("a@x", "INBOX")->size(), 0u);  // Not durable yet.
    flush();
    const std::uint32_t u2 = put("a@x", "INBOX", "two");
    flush();
    EXPECT_EQ(u1, 1u);
    EXPECT_EQ(u2, 2u);
    auto msgs = store->messages("a@x", "INBOX");
    ASSERT_EQ(msgs->size(), 2u);
    EXPECT_EQ(body_string(*store, (*msgs)[0].body), "one");
    EXPECT_EQ((*msgs)[1].size, 3u);

    const std::uint32_t uids[] = {u1, u2, 99};
    auto m1 = store->flags_set("a@x", "INBOX", uids, FlagMode::add, flag_seen, {"$Label1"});
    ASSERT_TRUE(m1);
    auto m2 = store->flags_set("a@x", "INBOX", std::span(uids, 1), FlagMode::remove, flag_seen);
    ASSERT_TRUE(m2);
    EXPECT_GT(*m2, *m1);
    // Setting what is already set changes nothing and bumps no modseq.
    auto m3 = store->flags_set("a@x", "INBOX", std::span(uids + 1, 1), FlagMode::add, flag_seen);
    EXPECT_EQ(*m3, *m2);
    EXPECT_EQ(store->flags_set("a@x", "INBOX", uids, FlagMode::add, 1u << 9).status(), Status::invalid);
    auto r = store->flags_set("a@x", "INBOX", std::span(uids, 1), FlagMode::replace, flag_flagged, {"work"});
    ASSERT_TRUE(r);
    flush();
    auto one = store->message("a@x", "INBOX", u1);
    ASSERT_TRUE(one);
    EXPECT_EQ(one->flags, flag_flagged);
    EXPECT_EQ(store->keyword_names("a@x", one->keywords), std::vector<std::string>{"work"});
    EXPECT_EQ(one->modseq, *r);
    EXPECT_EQ(store->mailbox_status("a@x", "INBOX")->highest_modseq, *r);

    auto copied = store->message_copy("a@x", "INBOX", uids, "Trash");
    ASSERT_TRUE(copied);
    ASSERT_EQ(copied->size(), 2u);
    EXPECT_EQ((*copied)[0], std::make_pair(u1, 1u));
    auto moved = store->message_move("a@x", "INBOX", std::span(uids + 1, 1), "Junk");
    ASSERT_TRUE(moved);
    EXPECT_EQ(moved->size(), 1u);
    EXPECT_EQ(store->message_move("a@x", "INBOX", uids, "INBOX").status(), Status::invalid);
    EXPECT_EQ(store->message_copy("a@x", "INBOX", uids, "Nope").status(), Status::not_found);
    flush();
    EXPECT_EQ(store->messages("a@x", "INBOX")->size(), 1u);
    EXPECT_EQ(store->messages("a@x", "Junk")->size(), 1u);
    EXPECT_EQ(body_string(*store, store->messages("a@x", "Junk")->front().body), "two");
    auto ex = store->expunge("a@x", "Trash", std::span(uids, 1));
    ASSERT_TRUE(ex);
    flush();
    EXPECT_EQ(store->messages("a@x", "Trash")->size(), 1u);
    EXPECT_EQ(store->message("a@x", "INBOX", 99).status(), Status::not_found);

    const auto before = *store->mailbox_list("a@x");
    open();
    const auto after = *store->mailbox_list("a@x");
    ASSERT_EQ(before.size(), after.size());
    for (std::size_t i = 0; i < before.size(); ++i) {
        EXPECT_EQ(before[i].name, after[i].name);
        EXPECT_EQ(before[i].uidnext, after[i].uidnext);
        EXPECT_EQ(before[i].highest_modseq, after[i].highest_modseq);
        EXPECT_EQ(before[i].message_count, after[i].message_count);
    }
    EXPECT_EQ(store->message("a@x", "INBOX", u1)->flags, flag_flagged);
}

// Proves the append error paths: unknown account, mailbox or body, bad flags.
TEST_F(Store, AppendErrors) {
    open();
    ASSERT_EQ(store->account_create("a@x"), Status::ok);
    MailStore::AppendArgs args;
    args.body = {0, 12345};
    EXPECT_EQ(store->message_append("a@x", "INBOX", args).status(), Status::not_found);
    auto ref = store->body_put(bytes_of("x"));
    ASSERT_TRUE(ref);
    args.body = *ref;
    EXPECT_EQ(store->message_append("b@x", "INBOX", args).status(), Status::not_found);
    EXPECT_EQ(store->message_append("a@x", "Nope", args).status(), Status::not_found);
    args.flags = 1u << 20;
    EXPECT_EQ(store->message_append("a@x", "INBOX", args).status(), Status::invalid);
    EXPECT_EQ(store->body_append_copy(BodyWriterId{77}, bytes_of("x")), Status::invalid);
    EXPECT_EQ(store->body_finish(BodyWriterId{77}).status(), Status::invalid);
}

// Proves group commit: many transactions, one flush, one writev and one fdatasync, and every
// appender is told once its transaction is durable (not before).
TEST_F(Store, GroupCommit) {
    open();
    ASSERT_EQ(store->account_create("a@x"), Status::ok);
    flush();
    io.writes = io.syncs = 0;
    std::vector<Durable> done(50);
    std::vector<Lsn> lsns;
    for (auto& d : done) {
        store->txn_begin();
        auto ref = store->body_put(bytes_of("message body"));
        ASSERT_TRUE(ref);
        MailStore::AppendArgs args;
        args.body = *ref;
        ASSERT_TRUE(store->message_append("a@x", "INBOX", args));
        auto lsn = store->txn_commit(&d);
        ASSERT_TRUE(lsn);
        lsns.push_back(*lsn);
    }
    EXPECT_FALSE(store->is_durable(lsns.back()));
    ASSERT_EQ(store->flush(), Status::ok);
    EXPECT_EQ(store->flush(), Status::again);  // Nothing staged (a second slot is free).
    EXPECT_EQ(done[0].calls, 0);              // Never inside the submitting call.
    io.run_pending();
    EXPECT_EQ(io.writes, 1);
    EXPECT_EQ(io.syncs, 1);
    for (auto& d : done) {
        EXPECT_EQ(d.calls, 1);
        EXPECT_EQ(d.status, Status::ok);
    }
    EXPECT_TRUE(store->is_durable(lsns.back()));
    EXPECT_EQ(store->flush(), Status::again);
}

// Proves zero-copy appends: the caller's memory is released after the write completes, a
// body grown over several flushes becomes several extents, and a one-tick body is one extent.
TEST_F(Store, ZeroCopyBodies) {
    open();
    ASSERT_EQ(store->account_create("a@x"), Status::ok);
    auto w = store->body_begin();
    ASSERT_TRUE(w);
    std::string parts[3] = {std::string(5000, 'a'), std::string(7000, 'b'), std::string(3, 'c')};
    Release rel[3];
    for (int i = 0; i < 3; ++i) {
        iovec iov[2] = {{parts[i].data(), 1}, {parts[i].data() + 1, parts[i].size() - 1}};
        ASSERT_EQ(store->body_append(*w, iov, 2, rel[i]), Status::ok);
        EXPECT_EQ(rel[i].calls, 0);
        flush();
        EXPECT_EQ(rel[i].calls, 1);
        EXPECT_EQ(rel[i].status, Status::ok);
    }
    auto ref = store->body_finish(*w);
    ASSERT_TRUE(ref);
    flush();
    auto handle = store->body_open(*ref);
    ASSERT_TRUE(handle);
    EXPECT_EQ(handle->pieces.size(), 3u);
    EXPECT_EQ(body_string(*store, *ref), parts[0] + parts[1] + parts[2]);

    std::string one(4096, 'z');
    Release r1;
    auto w2 = store->body_begin();
    iovec iov{one.data(), one.size()};
    ASSERT_EQ(store->body_append(*w2, &iov, 1, r1), Status::ok);
    auto ref2 = store->body_finish(*w2);
    EXPECT_EQ(store->body_open(*ref2).status(), Status::again);  // Not durable yet.
    flush();
    auto h2 = store->body_open(*ref2);
    ASSERT_TRUE(h2);
    ASSERT_EQ(h2->pieces.size(), 1u);  // One contiguous (fd, offset, length): sendfile-able.
    std::string via_fd(4096, '\0');
    ASSERT_EQ(::pread(h2->pieces[0].fd(), via_fd.data(), 4096,
                      static_cast<off_t>(h2->pieces[0].data_offset())), 4096);
    EXPECT_EQ(via_fd, one);
}

// Proves a body larger than a segment spans segments and reads back after a reopen.
TEST_F(Store, RotationAndBigBodies) {
    open(0, 1u << 20);
    ASSERT_EQ(store->account_create("a@x"), Status::ok);
    std::string big(3u << 20, '\0');
    for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 7 + i / 4096);
    const std::uint32_t uid = put("a@x", "INBOX", big);
    for (int i = 0; i < 40; ++i) put("a@x", "INBOX", std::string(50000, static_cast<char>('a' + i % 26)));
    flush();
    EXPECT_GE(store->stats().segment_count, 5u);
    open(0, 1u << 20);
    auto m = store->message("a@x", "INBOX", uid);
    ASSERT_TRUE(m);
    EXPECT_EQ(body_string(*store, m->body), big);
    EXPECT_EQ(store->messages("a@x", "INBOX")->size(), 41u);
}

// Proves idempotent delivery: the same (spool id, recipient) twice is one message, also after
// a reopen and after a snapshot.
TEST_F(Store, IdempotentDelivery) {
    open();
    ASSERT_EQ(store->account_create("a@x"), Status::ok);
    auto ref = store->body_put(bytes_of("mail"));
    ASSERT_TRUE(ref);
    MailStore::AppendArgs args;
    args.body = *ref;
    args.size = 4;
    args.internal_date = clock.wall_seconds();  // Delivery keys expire relative to it.
    const DeliveryKey key{42, "a@x"};
    auto u1 = store->deliver("a@x", "INBOX", key, args);
    auto u2 = store->deliver("a@x", "INBOX", key, args);
    ASSERT_TRUE(u1);
    EXPECT_EQ(*u1, *u2);
    flush();
    open();
    EXPECT_EQ(*store->deliver("a@x", "INBOX", key, args), *u1);
    EXPECT_EQ(*store->deliver("a@x", "INBOX", DeliveryKey{42, "b@x"}, args), *u1 + 1);
    flush();
    struct Done final : SnapshotDone {
        Status status = Status::cancelled;
        void snapshot_done(Status s) override { status = s; }
    } snap;
    ASSERT_EQ(store->snapshot(snap), Status::ok);
    io.run_pending();
    ASSERT_EQ(snap.status, Status::ok);
    open();
    EXPECT_TRUE(store->open_report().snapshot_loaded);
    EXPECT_EQ(*store->deliver("a@x", "INBOX", key, args), *u1);
    EXPECT_EQ(store->messages("a@x", "INBOX")->size(), 2u);
}

// Proves the spool: ids carry the shard, due lists, updates survive reopen, removal needs
// every recipient final, and a removed entry's body becomes collectable.
TEST_F(Store, Spool) {
    open(3);
    auto ref = store->body_put(bytes_of("relay me"));
    ASSERT_TRUE(ref);
    SpoolEntry e;
    e.sender = "s@x";
    e.recipients = {{"r1@y", RcptState::pending, 0, 0, ""}, {"r2@z", RcptState::pending, 500, 0, ""}};
    e.body = *ref;
    e.arrival = 100;
    e.client = "helo=h ip=127.0.0.1";
    auto id = store->spool_add(e);
    ASSERT_TRUE(id);
    EXPECT_EQ(*id >> 48, 3u);
    EXPECT_EQ(store->spool_due(100, 10).size(), 1u);
    EXPECT_EQ(store->spool_due(600, 10).size(), 2u);
    ASSERT_EQ(store->spool_update(*id, 0, RcptState::deferred, 900, 1, "451 4.7.1 later"), Status::ok);
    EXPECT_EQ(store->spool_update(*id, 5, RcptState::delivered, 0, 0, ""), Status::invalid);
    EXPECT_EQ(store->spool_update(999, 0, RcptState::delivered, 0, 0, ""), Status::not_found);
    EXPECT_EQ(store->spool_remove(*id), Status::busy);
    e.recipients.clear();
    EXPECT_EQ(store->spool_add(e).status(), Status::invalid);
    flush();
    open(3);
    const SpoolEntry* got = store->spool_get(*id);
    ASSERT_NE(got, nullptr);
    EXPECT_EQ(got->recipients[0].state, RcptState::deferred);
    EXPECT_EQ(got->recipients[0].reply, "451 4.7.1 later");
    EXPECT_EQ(got->client, "helo=h ip=127.0.0.1");
    EXPECT_EQ(store->spool_due(600, 10).size(), 1u);
    ASSERT_EQ(store->spool_update(*id, 0, RcptState::delivered, 0, 2, "250 ok"), Status::ok);
    ASSERT_EQ(store->spool_update(*id, 1, RcptState::bounced, 0, 1, "550 no such user"), Status::ok);
    ASSERT_EQ(store->spool_remove(*id), Status::ok);
    EXPECT_EQ(store->spool_get(*id), nullptr);
    const auto epoch = store->gc_begin();
    auto dropped = store->gc_finish(epoch, {});
    ASSERT_TRUE(dropped);
    EXPECT_EQ(*dropped, 1u);
    flush();
    EXPECT_EQ(store->body_open(*ref).status(), Status::not_found);
}

// Proves cross-shard delivery: a message in shard 1 references a body in shard 0; shard 0's
// GC keeps it while shard 1 references it and drops it after the expunge.
TEST_F(Store, CrossShardBodiesAndGc) {
    SyncIo io1;
    auto s1 = MailStore::open(io1, clock, test::options_for(dir.shard(1), 1));
    ASSERT_TRUE(s1);
    MailStore& owner = **s1;
    open(0);
    ASSERT_EQ(store->account_create("a@x"), Status::ok);
    auto ref = owner.body_put(bytes_of("shared body"));
    ASSERT_TRUE(ref);
    ASSERT_EQ(flush_all(owner, io1), Status::ok);
    MailStore::AppendArgs args;
    args.body = *ref;
    args.size = 11;
    auto uid = store->deliver("a@x", "INBOX", DeliveryKey{7, "a@x"}, args);
    ASSERT_TRUE(uid);
    flush();
    EXPECT_EQ(store->message("a@x", "INBOX", *uid)->body.shard, 1);
    EXPECT_EQ(body_string(owner, store->message("a@x", "INBOX", *uid)->body), "shared body");

    auto epoch = owner.gc_begin();
    auto foreign = store->foreign_refs(1);
    ASSERT_EQ(foreign.size(), 1u);
    EXPECT_EQ(*owner.gc_finish(epoch, {foreign.begin(), foreign.end()}), 0u);
    // A body whose last local reference died after gc_begin survives the round.
    ASSERT_TRUE(store->expunge("a@x", "INBOX", std::span(&*uid, 1)));
    flush();
    epoch = owner.gc_begin();
    foreign = store->foreign_refs(1);
    EXPECT_TRUE(foreign.empty());
    EXPECT_EQ(*owner.gc_finish(epoch, {}), 1u);
    ASSERT_EQ(flush_all(owner, io1), Status::ok);
    EXPECT_EQ(owner.body_open(*ref).status(), Status::not_found);
}

// Proves a torn tail (a half-written record after the last sync) is cut and nothing
// acknowledged is lost.
TEST_F(Store, TornTailTruncated) {
    open();
    ASSERT_EQ(store->account_create("a@x"), Status::ok);
    for (int i = 0; i < 10; ++i) put("a@x", "INBOX", "message " + std::to_string(i));
    flush();
    const auto size_before = std::filesystem::file_size(segment_path(1));
    store.reset();
    {
        // A record header that promises more bytes than follow.
        const int fd = ::open(segment_path(1).c_str(), O_WRONLY | O_APPEND);
        RecordHeader h;
        h.type = static_cast<std::uint16_t>(RecordType::body_chunk);
        h.payload_bytes = 1000;
        std::string payload(1000, 'x');
        record_seal(h, bytes_of(payload));
        ASSERT_EQ(::write(fd, &h, sizeof h), 48);
        ASSERT_EQ(::write(fd, payload.data(), 300), 300);
        ::close(fd);
    }
    open();
    EXPECT_EQ(store->open_report().torn_bytes, 348u);
    EXPECT_TRUE(store->open_report().damage.empty());
    EXPECT_EQ(std::filesystem::file_size(segment_path(1)), size_before);
    EXPECT_EQ(store->messages("a@x", "INBOX")->size(), 10u);
    put("a@x", "INBOX", "after");
    flush();
    open();
    EXPECT_EQ(store->messages("a@x", "INBOX")->size(), 11u);
    EXPECT_EQ(store->open_report().torn_bytes, 0u);
}

// Finds the file offset of the first record of `type` whose scope is `scope`.
std::uint32_t find_record(const std::string& path, RecordType type, std::uint64_t scope) {
    std::string bytes;
    {
        FILE* f = std::fopen(path.c_str(), "rb");
        char buf[65536];
        std::size_t n;
        while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) bytes.append(buf, n);
        std::fclose(f);
    }
    SegmentScanner scan(bytes_of(bytes), segment_header_bytes);
    for (;;) {
        ScanItem item = scan.next();
        if (item.kind != ScanItem::Kind::record) return 0;
        if (item.header.type == static_cast<std::uint16_t>(type) && item.header.scope == scope) {
            return item.offset;
        }
    }
}

void flip_byte(const std::string& path, std::uint64_t offset) {
    const int fd = ::open(path.c_str(), O_RDWR);
    char c;
    ASSERT_EQ(::pread(fd, &c, 1, static_cast<off_t>(offset)), 1);
    c ^= 0x5a;
    ASSERT_EQ(::pwrite(fd, &c, 1, static_cast<off_t>(offset)), 1);
    ::close(fd);
}

// Proves a damaged record in the middle of the log is reported with segment and offset, its
// mailbox is quarantined, and every other mailbox and account opens and serves.
TEST_F(Store, CorruptRecordQuarantinesMailbox) {
    open();
    ASSERT_EQ(store->account_create("a@x"), Status::ok);
    ASSERT_EQ(store->account_create("b@x"), Status::ok);
    put("a@x", "INBOX", "for a");
    put("b@x", "INBOX", "for b");
    flush();
    for (int i = 0; i < 3; ++i) {  // Later batches prove the damaged bytes had been synced.
        put("b@x", "Sent", "later " + std::to_string(i));
        flush();
    }
    const std::uint64_t a_inbox = store->mailbox_status("a@x", "INBOX")->id;
    store.reset();
    const std::uint32_t off = find_record(segment_path(1), RecordType::message_append,
                                          scope_make(ScopeKind::mailbox, a_inbox));
    ASSERT_NE(off, 0u);
    flip_byte(segment_path(1), off + 48 + 10);  // In the payload: the header stays readable.
    open();
    const auto& report = store->open_report();
    ASSERT_EQ(report.damage.size(), 1u);
    EXPECT_EQ(report.damage[0].segment_id, 1u);
    EXPECT_EQ(report.damage[0].offset, off);
    EXPECT_EQ(report.quarantined_mailboxes, std::vector<std::uint64_t>{a_inbox});
    EXPECT_EQ(store->messages("a@x", "INBOX").status(), Status::quarantined);
    MailStore::AppendArgs args;
    EXPECT_EQ(store->message_append("a@x", "INBOX", args).status(), Status::quarantined);
    EXPECT_EQ(store->messages("b@x", "INBOX")->size(), 1u);
    EXPECT_EQ(store->messages("b@x", "Sent")->size(), 3u);
    EXPECT_EQ(body_string(*store, store->messages("b@x", "INBOX")->front().body), "for b");
    // New work keeps going, and repair lifts the quarantine.
    put("b@x", "INBOX", "new");
    ASSERT_EQ(store->mailbox_repair("a@x", "INBOX"), Status::ok);
    flush();
    EXPECT_TRUE(store->messages("a@x", "INBOX"));
}

// Proves a damaged body chunk quarantines the mailbox holding the message and that the
// body is never served.
TEST_F(Store, CorruptBodyIsNeverServed) {
    open();
    ASSERT_EQ(store->account_create("a@x"), Status::ok);
    const std::uint32_t uid = put("a@x", "INBOX", std::string(1000, 'q'));
    flush();
    put("a@x", "Sent", "later");
    flush();
    const BodyRef ref = store->message("a@x", "INBOX", uid)->body;
    store.reset();
    const std::uint32_t off = find_record(segment_path(1), RecordType::body_chunk,
                                          scope_make(ScopeKind::body, ref.id));
    ASSERT_NE(off, 0u);
    flip_byte(segment_path(1), off + 48 + 500);
    open();
    EXPECT_EQ(store->open_report().damage.size(), 1u);
    EXPECT_EQ(store->messages("a@x", "INBOX").status(), Status::quarantined);
    EXPECT_EQ(store->body_open(ref).status(), Status::corrupt);
    EXPECT_EQ(store->messages("a@x", "Sent")->size(), 1u);
}

// Proves that damage found only at read time (below a snapshot, never replayed) is caught by
// the chunk checksum and reported as corrupt, not served.
TEST_F(Store, ReadTimeChecksum) {
    open();
    ASSERT_EQ(store->account_create("a@x"), Status::ok);
    const std::uint32_t uid = put("a@x", "INBOX", std::string(1000, 'q'));
    flush();
    const BodyRef ref = store->message("a@x", "INBOX", uid)->body;
    auto handle = store->body_open(ref);
    ASSERT_TRUE(handle);
    flip_byte(segment_path(1), handle->pieces[0].data_offset() + 3);
    std::string out(1000, '\0');
    EXPECT_EQ(body_read_blocking(*handle, {reinterpret_cast<std::byte*>(out.data()), out.size()}),
              Status::corrupt);
}

// Proves a read-only open refuses writes and does not touch a torn tail.
TEST_F(Store, ReadOnly) {
    open();
    ASSERT_EQ(store->account_create("a@x"), Status::ok);
    put("a@x", "INBOX", "x");
    flush();
    store.reset();
    {
        const int fd = ::open(segment_path(1).c_str(), O_WRONLY | O_APPEND);
        ASSERT_EQ(::write(fd, "garbage!", 8), 8);
        ::close(fd);
    }
    const auto size = std::filesystem::file_size(segment_path(1));
    auto o = test::options_for(dir.shard(0));
    o.read_only = true;
    auto ro = MailStore::open(io, clock, o);
    ASSERT_TRUE(ro);
    EXPECT_EQ((*ro)->messages("a@x", "INBOX")->size(), 1u);
    EXPECT_EQ((*ro)->account_create("b@x"), Status::permission);
    EXPECT_EQ(std::filesystem::file_size(segment_path(1)), size);
}

struct Snap final : SnapshotDone {
    Status status = Status::cancelled;
    void snapshot_done(Status s) override { status = s; }
};
struct Compact final : CompactDone {
    Status status = Status::cancelled;
    std::uint64_t bytes = 0;
    bool called = false;
    void compact_done(Status s, std::uint64_t b) override {
        status = s;
        bytes = b;
        called = true;
    }
};

std::uint64_t disk_bytes(const std::string& dir) {
    std::uint64_t total = 0;
    for (const auto& e : std::filesystem::directory_iterator(dir)) total += e.file_size();
    return total;
}

// Proves the space target: after expunging 90% and compacting, the shard folder is within
// 15% of the live data; a reader's pin delays retirement; everything left reads back.
TEST_F(Store, CompactionReclaimsSpace) {
    open(0, 4u << 20);
    ASSERT_EQ(store->account_create("a@x"), Status::ok);
    std::vector<std::uint32_t> uids;
    for (int i = 0; i < 300; ++i) {
        uids.push_back(put("a@x", "INBOX", std::string(100 * 1024, static_cast<char>('A' + i % 50))));
        if (i % 16 == 15) flush();
    }
    flush();
    std::vector<std::uint32_t> gone, kept;
    for (std::size_t i = 0; i < uids.size(); ++i) (i % 10 == 0 ? kept : gone).push_back(uids[i]);
    ASSERT_TRUE(store->expunge("a@x", "INBOX", gone));
    flush();
    ASSERT_TRUE(store->gc_finish(store->gc_begin(), {}));
    flush();
    // Pin one old segment through a body handle of a kept message.
    auto pinned = store->body_open(store->message("a@x", "INBOX", kept[0])->body);
    ASSERT_TRUE(pinned);
    const std::uint32_t pinned_segment = pinned->pieces[0].extent.segment_id;
    Compact step;
    while (store->compact_needed()) {
        step.called = false;
        ASSERT_EQ(store->compact_step(8u << 20, step), Status::ok);
        io.run_pending();
        ASSERT_TRUE(step.called);
        ASSERT_EQ(step.status, Status::ok);
        flush();
    }
    for (int i = 0; i < 2; ++i) {
        Snap snap;
        ASSERT_EQ(store->snapshot(snap), Status::ok);
        io.run_pending();
        ASSERT_EQ(snap.status, Status::ok);
    }
    EXPECT_EQ(store->stats().pinned_segments, 1u);
    EXPECT_TRUE(std::filesystem::exists(segment_path(pinned_segment)));
    std::string old(100 * 1024, '\0');
    EXPECT_EQ(body_read_blocking(*pinned, {reinterpret_cast<std::byte*>(old.data()), old.size()}), Status::ok);
    pinned = Status::not_found;  // Release the pin.
    EXPECT_GE(store->retire_segments(), 1u);
    EXPECT_FALSE(std::filesystem::exists(segment_path(pinned_segment)));
    const std::uint64_t live = kept.size() * 100 * 1024;
    const std::uint64_t disk = disk_bytes(dir.shard(0));
    std::printf("live %llu bytes, disk %llu bytes (%.3f)\n", static_cast<unsigned long long>(live),
                static_cast<unsigned long long>(disk), static_cast<double>(disk) / live);
    EXPECT_LE(disk, live * 115 / 100);
    open(0, 4u << 20);
    auto msgs = store->messages("a@x", "INBOX");
    ASSERT_EQ(msgs->size(), kept.size());
    for (std::size_t i = 0; i < kept.size(); ++i) {
        EXPECT_EQ(body_string(*store, (*msgs)[i].body),
                  std::string(100 * 1024, static_cast<char>('A' + (i * 10) % 50)));
    }
}

// Proves snapshots bound replay: after a snapshot only the records after it are replayed,
// and the state is the same.
TEST_F(Store, SnapshotBoundsReplay) {
    open();
    ASSERT_EQ(store->account_create("a@x"), Status::ok);
    for (int i = 0; i < 100; ++i) put("a@x", "INBOX", "m" + std::to_string(i));
    flush();
    Snap snap;
    ASSERT_EQ(store->snapshot(snap), Status::ok);
    put("a@x", "INBOX", "not yet");  // Appends continue while the snapshot is written.
    io.run_pending();
    ASSERT_EQ(snap.status, Status::ok);
    flush();
    open();
    EXPECT_TRUE(store->open_report().snapshot_loaded);
    EXPECT_LT(store->open_report().records_replayed, 10u);
    EXPECT_EQ(store->messages("a@x", "INBOX")->size(), 101u);
    EXPECT_EQ(body_string(*store, store->messages("a@x", "INBOX")->back().body), "not yet");
    // A damaged newest snapshot falls back to the previous one (or the full log).
    store.reset();
    flip_byte(dir.shard(0) + "/snapshot", 100);
    open();
    EXPECT_FALSE(store->open_report().damage.empty());
    EXPECT_EQ(store->messages("a@x", "INBOX")->size(), 101u);
}

// Proves the trait the body writer notes for POP3 (body_dot_free): set for a body without
// dot lines that ends with CRLF (also when appends split its lines), not for a dot line (at
// the start, after a LF, or split across appends), a body without a final CRLF; the trait
// survives replay and a snapshot (compaction's body_move changes only extents); a body_define
// written before traits existed (no trailing byte) reads as none; an unknown bit is refused.
TEST_F(Store, BodyTraits) {
    open();
    auto body = [&](std::vector<std::string> parts) {
        auto w = store->body_begin();
        EXPECT_TRUE(w);
        for (const std::string& p : parts) EXPECT_EQ(store->body_append_copy(*w, bytes_of(p)), Status::ok);
        auto ref = store->body_finish(*w);
        EXPECT_TRUE(ref);
        return *ref;
    };
    auto traits = [&](BodyRef ref) {
        auto handle = store->body_open(ref);
        EXPECT_TRUE(handle) << status_name(handle.status());
        return handle ? handle->traits : std::uint8_t{0xff};
    };
    const std::vector<std::pair<std::vector<std::string>, bool>> cases = {
        {{"Subject: a\r\n\r\nbody. not a dot line\r\n"}, true},
        {{"Subject: a\r\n\r\nsplit li", "ne\r", "\n", "next\r\n"}, true},
        {{".\r\n"}, false},
        {{"a\r\n.b\r\n"}, false},
        {{"a\n.b\r\n"}, false},  // A line starts after any LF.
        {{"a\r\n", ".b\r\n"}, false},
        {{"a\r\n\r", "\n", ".", "b\r\n"}, false},
        {{"no final crlf"}, false},
        {{"bare lf\n"}, false},
        {{"\r\n"}, true},
        {{"Subject: caf\xc3\xa9\r\n\r\nbody\r\n"}, true},  // 8-bit: no body_7bit.
        {{"7-bit first piece\r\n", "then \xff\r\n"}, true},
    };
    // Which cases hold a byte >= 0x80.
    auto eight = [&](std::size_t i) { return i >= cases.size() - 2; };
    std::vector<BodyRef> refs;
    for (const auto& [parts, dot_free] : cases) refs.push_back(body(parts));
    flush();
    auto check = [&](const char* when) {
        for (std::size_t i = 0; i < cases.size(); ++i) {
            const std::uint8_t want = (cases[i].second ? body_dot_free : 0) | (eight(i) ? 0 : body_7bit);
            EXPECT_EQ(traits(refs[i]), want) << when << " case " << i;
        }
    };
    check("written");
    open();
    check("replayed");
    Snap snap;
    ASSERT_EQ(store->snapshot(snap), Status::ok);
    io.run_pending();
    ASSERT_EQ(snap.status, Status::ok);
    open();
    EXPECT_TRUE(store->open_report().snapshot_loaded);
    check("from a snapshot");

    // The record codec: without traits the payload is the older layout.
    BodyDefine def{7, 3, {Extent{1, 64, 3}}};
    std::string old_layout;
    encode(old_layout, def);
    def.traits = body_dot_free;
    std::string with_traits;
    encode(with_traits, def);
    EXPECT_EQ(with_traits.size(), old_layout.size() + 1);
    BodyDefine back;
    ASSERT_TRUE(decode(bytes_of(old_layout), back));
    EXPECT_EQ(back.traits, 0);
    ASSERT_TRUE(decode(bytes_of(with_traits), back));
    EXPECT_EQ(back.traits, body_dot_free);
    with_traits.back() = static_cast<char>(0x80);
    EXPECT_FALSE(decode(bytes_of(with_traits), back));
}

// Proves subscriptions: names of missing mailboxes may be subscribed (RFC 3501 6.3.6),
// INBOX is case-insensitive, unsubscribe removes, they survive DELETE, the errors, and they
// are recovered both from the log and from a snapshot.
TEST_F(Store, Subscriptions) {
    open();
    ASSERT_EQ(store->account_create("a@x"), Status::ok);
    // A new account's default mailboxes are subscribed; the test starts from none.
    const std::vector<std::string> defaults{"Drafts", "INBOX", "Junk", "Sent", "Trash"};
    EXPECT_EQ(store->subscriptions("a@x"), defaults);
    for (const std::string& name : defaults) {
        ASSERT_EQ(store->mailbox_subscribe("a@x", name, false), Status::ok);
    }
    EXPECT_TRUE(store->subscriptions("a@x").empty());
    Durable d;
    store->on_durable(&d);
    ASSERT_EQ(store->mailbox_subscribe("a@x", "inbox", true), Status::ok);
    ASSERT_EQ(store->mailbox_subscribe("a@x", "Lists/none-yet", true), Status::ok);
    ASSERT_EQ(store->mailbox_subscribe("a@x", "Sent", true), Status::ok);
    ASSERT_EQ(store->mailbox_subscribe("a@x", "Sent", true), Status::ok);  // Twice is once.
    ASSERT_EQ(store->mailbox_subscribe("a@x", "Trash", true), Status::ok);
    ASSERT_EQ(store->mailbox_subscribe("a@x", "Trash", false), Status::ok);
    ASSERT_EQ(store->mailbox_subscribe("a@x", "Never", false), Status::ok);
    EXPECT_EQ(store->mailbox_subscribe("a@x", "", true), Status::invalid);
    EXPECT_EQ(store->mailbox_subscribe("nobody@x", "INBOX", true), Status::not_found);
    EXPECT_TRUE(store->subscriptions("nobody@x").empty());
    flush();
    EXPECT_EQ(d.calls, 1);
    EXPECT_EQ(d.status, Status::ok);
    const std::vector<std::string> want{"INBOX", "Lists/none-yet", "Sent"};
    EXPECT_EQ(store->subscriptions("a@x"), want);
    ASSERT_EQ(store->mailbox_delete("a@x", "Sent"), Status::ok);  // RFC 3501 6.3.4: stays.
    flush();
    open();  // From the log.
    EXPECT_FALSE(store->open_report().snapshot_loaded);
    EXPECT_EQ(store->subscriptions("a@x"), want);
    Snap snap;
    ASSERT_EQ(store->snapshot(snap), Status::ok);
    io.run_pending();
    ASSERT_EQ(snap.status, Status::ok);
    ASSERT_EQ(store->mailbox_subscribe("a@x", "INBOX", false), Status::ok);
    flush();
    open();  // From the snapshot, then the unsubscribe from the log.
    EXPECT_TRUE(store->open_report().snapshot_loaded);
    EXPECT_EQ(store->subscriptions("a@x"), (std::vector<std::string>{"Lists/none-yet", "Sent"}));
}

// Proves RENAME of INBOX (RFC 3501 6.3.5): every message moves to the new mailbox with its
// flags and body, INBOX stays with its UIDVALIDITY, empty, and does not reuse UIDs; it is one
// transaction, recovered as such.
TEST_F(Store, RenameInboxMovesMessages) {
    open();
    ASSERT_EQ(store->account_create("a@x"), Status::ok);
    put("a@x", "INBOX", "one");
    put("a@x", "INBOX", "two");
    const std::uint32_t third = put("a@x", "INBOX", "three");
    const std::uint32_t seen[] = {third};
    ASSERT_TRUE(store->flags_set("a@x", "INBOX", seen, FlagMode::add, flag_seen));
    flush();
    const auto before = *store->mailbox_status("a@x", "INBOX");
    Durable d;
    store->on_durable(&d);
    ASSERT_EQ(store->mailbox_rename("a@x", "inbox", "Old mail"), Status::ok);
    EXPECT_EQ(d.calls, 0);
    flush();
    EXPECT_EQ(d.calls, 1);
    auto check = [&](std::uint32_t inbox_count) {
        auto moved = store->messages("a@x", "Old mail");
        ASSERT_TRUE(moved);
        ASSERT_EQ(moved->size(), 3u);
        EXPECT_EQ(body_string(*store, (*moved)[0].body), "one");
        EXPECT_EQ(body_string(*store, (*moved)[2].body), "three");
        EXPECT_EQ((*moved)[2].flags, flag_seen);
        EXPECT_EQ((*moved)[0].flags, 0u);
        auto inbox = store->mailbox_status("a@x", "INBOX");
        ASSERT_TRUE(inbox);
        EXPECT_EQ(inbox->message_count, inbox_count);
        EXPECT_EQ(inbox->uidvalidity, before.uidvalidity);
        EXPECT_EQ(inbox->uidnext, before.uidnext + inbox_count);
        EXPECT_GT(inbox->highest_modseq, before.highest_modseq);
    };
    check(0);
    EXPECT_EQ(put("a@x", "INBOX", "four"), before.uidnext);  // INBOX goes on.
    flush();
    open();
    check(1);
    // An empty INBOX renames too (an empty new mailbox).
    const std::uint32_t four[] = {before.uidnext};
    ASSERT_TRUE(store->expunge("a@x", "INBOX", four));
    ASSERT_EQ(store->mailbox_rename("a@x", "INBOX", "Empty"), Status::ok);
    flush();
    EXPECT_EQ(store->mailbox_status("a@x", "Empty")->message_count, 0u);
    EXPECT_TRUE(store->mailbox_status("a@x", "INBOX"));
}

// Proves spool_due() through its due-time index: only due recipients, the longest due
// first, count_max respected, updates move a recipient (deferred later, final gone), and the
// index is rebuilt the same from the log and from a snapshot.
TEST_F(Store, SpoolDueIndex) {
    open();
    auto ref = store->body_put(bytes_of("queued"));
    ASSERT_TRUE(ref);
    std::vector<std::uint64_t> ids;
    for (int i = 0; i < 50; ++i) {
        SpoolEntry e;
        e.sender = "s@x";
        // Due times 1000 - 10 i: later entries are due earlier.
        e.recipients = {{"a@remote.test", RcptState::pending, 1000 - 10 * i, 0, ""},
                        {"b@remote.test", RcptState::deferred, 5000 + i, 1, "451 later"}};
        e.body = *ref;
        auto id = store->spool_add(e);
        ASSERT_TRUE(id);
        ids.push_back(*id);
    }
    auto expect_due = [&](std::int64_t now, std::size_t max, std::vector<SpoolDue> want) {
        auto got = store->spool_due(now, max);
        ASSERT_EQ(got.size(), want.size()) << "now " << now;
        for (std::size_t k = 0; k < want.size(); ++k) {
            EXPECT_EQ(got[k].spool_id, want[k].spool_id) << k;
            EXPECT_EQ(got[k].rcpt_index, want[k].rcpt_index) << k;
        }
    };
    expect_due(500, 10, {});
    expect_due(520, 10, {{ids[49], 0}, {ids[48], 0}});
    expect_due(1000, 3, {{ids[49], 0}, {ids[48], 0}, {ids[47], 0}});
    EXPECT_EQ(store->spool_due(1000, 1000).size(), 50u);
    EXPECT_EQ(store->spool_due(9999, 1000).size(), 100u);
    ASSERT_EQ(store->spool_update(ids[49], 0, RcptState::deferred, 6000, 1, "451"), Status::ok);
    ASSERT_EQ(store->spool_update(ids[48], 0, RcptState::delivered, 0, 1, "250"), Status::ok);
    expect_due(530, 10, {{ids[47], 0}});
    auto check = [&] {
        expect_due(530, 10, {{ids[47], 0}});
        EXPECT_EQ(store->spool_due(9999, 1000).size(), 99u);
        auto last = store->spool_due(9999, 1000).back();
        EXPECT_EQ(last.spool_id, ids[49]);  // Due at 6000, after every b@ (5000..5049).
        EXPECT_EQ(last.rcpt_index, 0u);
    };
    check();
    flush();
    open();
    check();
    Snap snap;
    ASSERT_EQ(store->snapshot(snap), Status::ok);
    io.run_pending();
    ASSERT_EQ(snap.status, Status::ok);
    open();
    ASSERT_TRUE(store->open_report().snapshot_loaded);
    check();
    for (std::uint64_t id : ids) {
        for (std::uint32_t r = 0; r < 2; ++r) (void)store->spool_update(id, r, RcptState::failed, 0, 2, "5xx");
        ASSERT_EQ(store->spool_remove(id), Status::ok);
    }
    EXPECT_TRUE(store->spool_due(1ll << 40, 1000).empty());
    EXPECT_TRUE(store->index().spool_due_index.empty());
}

std::size_t segment_files(const std::string& dir) {
    std::size_t count = 0;
    std::uint32_t id = 0;
    for (const auto& entry : std::filesystem::directory_iterator(dir)) {
        count += segment_file_parse(entry.path().filename().string(), id) ? 1 : 0;
    }
    return count;
}

// Proves that after a store's first segment no file system call blocks: the next segment's
// file is made ahead through Io (openat + fallocate) with a flush, the snapshot opens and
// renames through Io, retired segments are unlinked through Io; and an unused spare (an empty
// file) is removed by the next open.
TEST_F(Store, MetadataThroughIo) {
    open(0, 1u << 20);
    ASSERT_EQ(store->account_create("a@x"), Status::ok);
    flush();
    const std::string body(100 * 1024, 'm');
    std::vector<std::uint32_t> uids;
    for (int i = 0; i < 40; ++i) {
        uids.push_back(put("a@x", "INBOX", body));
        flush();
    }
    EXPECT_GE(store->log().segments().size(), 4u);
    EXPECT_EQ(store->log().blocking_creates(), 1u);  // The first segment only.
    EXPECT_EQ(segment_files(dir.shard(0)), store->log().segments().size() + 1);  // + the spare.
    ASSERT_TRUE(store->expunge("a@x", "INBOX", uids));
    flush();
    auto dropped = store->gc_finish(store->gc_begin(), {});
    ASSERT_TRUE(dropped);
    EXPECT_EQ(*dropped, 40u);
    flush();
    const int meta_before = io.meta_ops;
    for (int round = 0; round < 2; ++round) {
        Snap snap;
        ASSERT_EQ(store->snapshot(snap), Status::ok);
        io.run_pending();
        ASSERT_EQ(snap.status, Status::ok);
    }
    EXPECT_FALSE(store->io_busy());
    // Two snapshots (openat, two renameat each) and at least three unlinks.
    EXPECT_GE(io.meta_ops - meta_before, 9);
    EXPECT_LE(store->log().segments().size(), 2u);
    EXPECT_EQ(segment_files(dir.shard(0)), store->log().segments().size() + 1);
    open(0, 1u << 20);
    EXPECT_EQ(segment_files(dir.shard(0)), store->log().segments().size());  // Spare removed.
    EXPECT_TRUE(store->open_report().damage.empty());
    EXPECT_TRUE(store->messages("a@x", "INBOX")->empty());
    put("a@x", "INBOX", "after");
    flush();
    EXPECT_EQ(store->messages("a@x", "INBOX")->size(), 1u);
}

// Proves a failing metadata call (EIO from openat/renameat, simulated) fails the snapshot
// alone: the store keeps serving and writing, the next snapshot succeeds, and a reopen loads
// it with every message.
TEST(StorageSimMeta, FailedSnapshotMetadataKeepsServing) {
    TempDir dir;
    sim::SimIo io(11);
    SimClock clock;
    auto opened = MailStore::open(io, clock, test::options_for(dir.shard(0)));
    ASSERT_TRUE(opened);
    auto store = std::move(*opened);
    ASSERT_EQ(store->account_create("a@x"), Status::ok);
    ASSERT_TRUE(put_message(*store, "a@x", "INBOX", "one"));
    ASSERT_EQ(flush_all(*store, io), Status::ok);
    io.faults.eio_meta = 1.0;
    Snap snap;
    ASSERT_EQ(store->snapshot(snap), Status::ok);
    io.run_pending();
    EXPECT_EQ(snap.status, Status::io);
    EXPECT_EQ(store->failed(), Status::ok);
    ASSERT_TRUE(put_message(*store, "a@x", "INBOX", "two"));
    ASSERT_EQ(flush_all(*store, io), Status::ok);
    io.faults.eio_meta = 0;
    Snap again;
    ASSERT_EQ(store->snapshot(again), Status::ok);
    io.run_pending();
    ASSERT_EQ(again.status, Status::ok);
    io.settle();
    store.reset();
    auto reopened = MailStore::open(io, clock, test::options_for(dir.shard(0)));
    ASSERT_TRUE(reopened);
    EXPECT_TRUE((*reopened)->open_report().snapshot_loaded);
    EXPECT_EQ((*reopened)->messages("a@x", "INBOX")->size(), 2u);
}

// Proves a damaged segment header in the middle of the log (later segments prove it was
// synced) is reported with its segment and offset 0, the records behind it still open (each
// has its own checksums), and a damaged record there quarantines only its mailbox. Before,
// the whole segment was skipped and its messages vanished without a quarantine.
TEST_F(Store, DamagedSegmentHeaderOpensTheRest) {
    open(0, 1u << 20);
    ASSERT_EQ(store->account_create("a@x"), Status::ok);
    ASSERT_EQ(store->account_create("b@x"), Status::ok);
    const std::string big(300 * 1024, 'x');
    for (int i = 0; i < 12; ++i) {  // Four segments or so, alternating accounts.
        put(i % 2 ? "b@x" : "a@x", "INBOX", std::to_string(i) + big);
        flush();
    }
    ASSERT_GE(store->log().segments().size(), 3u);
    const std::uint64_t b_inbox = store->mailbox_status("b@x", "INBOX")->id;
    store.reset();
    flip_byte(segment_path(2), 20);  // Segment 2's header (its id field).
    open(0, 1u << 20);
    {
        const auto& report = store->open_report();
        ASSERT_EQ(report.damage.size(), 1u);
        EXPECT_EQ(report.damage[0].segment_id, 2u);
        EXPECT_EQ(report.damage[0].offset, 0u);
        EXPECT_TRUE(report.quarantined_mailboxes.empty());
        EXPECT_EQ(store->messages("a@x", "INBOX")->size(), 6u);
        EXPECT_EQ(store->messages("b@x", "INBOX")->size(), 6u);
        const auto b_messages = store->messages("b@x", "INBOX");
        ASSERT_TRUE(b_messages);
        for (const auto& m : *b_messages) {
            const std::string got = body_string(*store, m.body);
            EXPECT_TRUE(got.size() > big.size() && got.compare(got.size() - big.size(), big.size(), big) == 0);
        }
    }
    // Also damage a message record in that segment: only its mailbox is quarantined.
    store.reset();
    const std::uint32_t off = find_record(segment_path(2), RecordType::message_append,
                                          scope_make(ScopeKind::mailbox, b_inbox));
    ASSERT_NE(off, 0u);
    flip_byte(segment_path(2), off + 48 + 10);
    open(0, 1u << 20);
    const auto& report = store->open_report();
    ASSERT_EQ(report.damage.size(), 2u);
    EXPECT_EQ(report.damage[1].segment_id, 2u);
    EXPECT_EQ(report.damage[1].offset, off);
    EXPECT_EQ(report.quarantined_mailboxes, std::vector<std::uint64_t>{b_inbox});
    EXPECT_EQ(store->messages("a@x", "INBOX")->size(), 6u);
    EXPECT_EQ(store->messages("b@x", "INBOX").status(), Status::quarantined);
}

}  // namespace
}  // namespace rp::storage
