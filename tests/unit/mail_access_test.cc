// tests/unit/mail_access_test.cc: protocols/common/mail_access on a real 2-shard Engine with
// a ShardMail (store) per shard. A client on shard 0 works on an account owned by shard 1
// (every request is a cross-core message) and on one owned by shard 0 (deferred local
// calls): append, open with lock and watch, IN-USE, change events, body_open + BodyReader
// through shard 0's own Io, flags, expunge, mailbox list/create/rename/remove, copy, the
// in-flight cap, and lock release when a client goes away.
#include "protocols/common/mail_access.h"

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <future>
#include <mutex>
#include <thread>

#include "engine_test_util.h"

namespace rp::mail {
namespace {

using namespace std::chrono_literals;

struct Reply {
    std::uint64_t tag;
    AccessOp op;
    AccessReply reply;
};

// Records replies and events (on shard 0) for the test thread.
class Recorder final : public AccessHandler, public BodyReaderDone {
public:
    void access_done(std::uint64_t tag, AccessOp op, AccessReply& reply) override {
        std::lock_guard lock(mutex_);
        replies_.push_back({tag, op, std::move(reply)});
        cv_.notify_all();
    }
    void mailbox_changed(const MailboxEvent& event) override {
        std::lock_guard lock(mutex_);
        events_.push_back(event);
        cv_.notify_all();
    }
    void body_piece(Status status, std::span<const std::byte> bytes, bool last) override {
        std::lock_guard lock(mutex_);
        body_status_ = status;
        body_.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
        body_done_ = last || status != Status::ok;
        if (!body_done_) reader->next();
        cv_.notify_all();
    }
    Reply wait_reply() {
        std::unique_lock lock(mutex_);
        EXPECT_TRUE(cv_.wait_for(lock, 10s, [&] { return !replies_.empty(); }));
        if (replies_.empty()) return {0, AccessOp::status, {}};
        Reply r = std::move(replies_.front());
        replies_.erase(replies_.begin());
        return r;
    }
    MailboxEvent wait_event() {
        std::unique_lock lock(mutex_);
        EXPECT_TRUE(cv_.wait_for(lock, 10s, [&] { return !events_.empty(); }));
        if (events_.empty()) return {};
        MailboxEvent e = events_.front();
        events_.erase(events_.begin());
        return e;
    }
    std::string wait_body() {
        std::unique_lock lock(mutex_);
        EXPECT_TRUE(cv_.wait_for(lock, 10s, [&] { return body_done_; }));
        EXPECT_EQ(body_status_, Status::ok);
        return body_;
    }
    std::size_t events() {
        std::lock_guard lock(mutex_);
        return events_.size();
    }
    BodyReader* reader = nullptr;

private:
    std::mutex mutex_;
    std::condition_variable cv_;
    std::vector<Reply> replies_;
    std::vector<MailboxEvent> events_;
    std::string body_;
    Status body_status_ = Status::ok;
    bool body_done_ = false;
};

class Local final : public ShardLocal {
public:
    std::unique_ptr<ShardMail> mail;
    std::unique_ptr<MailAccess> access;  // Destroyed first.
};

class MailAccessTest : public ::testing::Test {
protected:
    void SetUp() override {
        test::require_io_uring();
        dir_ = std::filesystem::temp_directory_path() /
               ("ringpost-mail-access-" + std::to_string(::getpid()));
        std::filesystem::remove_all(dir_);
        std::filesystem::create_directories(dir_);
        config::Settings settings;
        config::DomainSettings domain;
        domain.name = "example.test";
        settings.domains.push_back(domain);
        for (int i = 0; i < 40 && (remote_.empty() || local_.empty()); ++i) {
            const std::string a = "user" + std::to_string(i) + "@example.test";
            std::string& slot = smtp::Directory::owner_of(a, 2) == 1 ? remote_ : local_;
            if (slot.empty()) {
                slot = a;
                config::UserSettings user;
                user.address = a;
                user.password = "pw";
                settings.users.push_back(user);
            }
        }
        std::string error;
        ASSERT_EQ(ShardMail::check_layout(dir_.string(), 2, &error), Status::ok) << error;
        auto directory = smtp::Directory::build(settings, 2, &error);
        ASSERT_TRUE(directory.ok()) << error;
        directory_ = std::make_shared<const smtp::Directory>(std::move(directory.value()));
        cluster_ = std::make_unique<MailCluster>(2);
        access_cluster_ = std::make_unique<AccessCluster>(2);
        EngineOptions options;
        options.cores = 2;
        options.pin_cores = false;
        options.ring_entries = 256;
        options.recv_buffer_count = 64;
        options.recv_buffer_bytes = 4096;
        options.sessions_per_shard = 16;
        auto engine = Engine::create(
            options,
            [this](Shard& shard) {
                auto local = std::make_unique<Local>();
                std::string e;
                auto mail = ShardMail::open(shard, *cluster_, directory_, dir_.string(), &e);
                if (!mail) return mail.status();
                local->mail = std::move(mail.value());
                local->access = std::make_unique<MailAccess>(*local->mail, *access_cluster_);
                if (shard.index() == 0) access0_ = local->access.get();
                shard.own(std::move(local));
                return Status::ok;
            },
            &error);
        ASSERT_TRUE(engine.ok()) << error;
        engine_ = std::move(engine.value());
    }

    void TearDown() override {
        if (engine_) {
            engine_->request_stop();
            engine_->wait();
            engine_.reset();
        }
        std::filesystem::remove_all(dir_);
    }

    // Runs `work` on shard 0 and waits for it.
    template <typename F>
    auto on_shard0(F work) {
        using R = decltype(work());
        std::promise<R> done;
        auto future = done.get_future();
        engine_->shard(0).post_external([&](Shard&) {
            if constexpr (std::is_void_v<R>) {
                work();
                done.set_value();
            } else {
                done.set_value(work());
            }
        });
        EXPECT_EQ(future.wait_for(10s), std::future_status::ready);
        return future.get();
    }

    Status submit(AccessClient& client, AccessRequest r, std::uint64_t tag = 0) {
        return on_shard0([&] { return client.submit(std::move(r), tag); });
    }

    AccessRequest request(AccessOp op, const std::string& account, std::string box = "INBOX") {
        AccessRequest r;
        r.op = op;
        r.account = account;
        r.mailbox = std::move(box);
        return r;
    }

    std::filesystem::path dir_;
    std::string remote_, local_;  // Owned by shard 1 / shard 0.
    std::shared_ptr<const smtp::Directory> directory_;
    std::unique_ptr<MailCluster> cluster_;
    std::unique_ptr<AccessCluster> access_cluster_;
    std::unique_ptr<Engine> engine_;
    MailAccess* access0_ = nullptr;
};

// Proves the whole API against a mailbox on another shard and one on this shard.
TEST_F(MailAccessTest, CrossShardAndLocal) {
    for (const std::string& account : {remote_, local_}) {
        SCOPED_TRACE(account);
        Recorder r1, r2;
        auto c1 = on_shard0([&] { return std::make_unique<AccessClient>(*access0_, r1); });
        auto c2 = on_shard0([&] { return std::make_unique<AccessClient>(*access0_, r2); });

        AccessRequest append = request(AccessOp::append, account);
        append.bytes = "Subject: one\r\n\r\nhello\r\n";
        ASSERT_EQ(submit(*c1, append, 7), Status::ok);
        Reply rep = r1.wait_reply();
        EXPECT_EQ(rep.tag, 7u);
        ASSERT_EQ(rep.reply.status, Status::ok);
        EXPECT_EQ(rep.reply.uid, 1u);

        AccessRequest open = request(AccessOp::open, account);
        open.exclusive = true;
        open.watch = true;
        ASSERT_EQ(submit(*c1, open), Status::ok);
        rep = r1.wait_reply();
        ASSERT_EQ(rep.reply.status, Status::ok);
        ASSERT_EQ(rep.reply.snapshot.messages.size(), 1u);
        const MessageEntry first = rep.reply.snapshot.messages[0];
        EXPECT_EQ(first.size, append.bytes.size());
        const std::uint64_t box_id = rep.reply.snapshot.mailbox_id;

        ASSERT_EQ(submit(*c2, open), Status::ok);
        EXPECT_EQ(r2.wait_reply().reply.status, Status::busy);  // POP3 IN-USE.

        append.bytes = "second\r\n";
        ASSERT_EQ(submit(*c2, append), Status::ok);
        EXPECT_EQ(r2.wait_reply().reply.status, Status::ok);
        MailboxEvent ev = r1.wait_event();
        EXPECT_EQ(ev.kind, MailboxEvent::Kind::exists);
        EXPECT_EQ(ev.mailbox_id, box_id);
        EXPECT_EQ(ev.uidnext, 3u);
        EXPECT_EQ(ev.message_count, 2u);

        // Body bytes read through shard 0's Io, verified.
        AccessRequest body = request(AccessOp::body_open, account);
        body.body = first.body;
        ASSERT_EQ(submit(*c1, body), Status::ok);
        rep = r1.wait_reply();
        ASSERT_EQ(rep.reply.status, Status::ok);
        on_shard0([&] {
            r1.reader = BodyReader::start(engine_->shard(0).io(), std::move(rep.reply.body), r1);
        });
        EXPECT_EQ(r1.wait_body(), "Subject: one\r\n\r\nhello\r\n");
        on_shard0([&] { r1.reader->cancel(); });

        AccessRequest flags = request(AccessOp::flags_set, account);
        flags.uids = {1};
        flags.flags = storage::flag_seen;
        ASSERT_EQ(submit(*c1, flags), Status::ok);
        EXPECT_EQ(r1.wait_reply().reply.status, Status::ok);
        ev = r1.wait_event();
        EXPECT_EQ(ev.kind, MailboxEvent::Kind::flags);
        EXPECT_EQ(ev.uids, std::vector<std::uint32_t>{1});

        AccessRequest expunge = request(AccessOp::expunge, account);
        expunge.uids = {2, 99};
        ASSERT_EQ(submit(*c1, expunge), Status::ok);
        EXPECT_EQ(r1.wait_reply().reply.status, Status::ok);
        ev = r1.wait_event();
        EXPECT_EQ(ev.kind, MailboxEvent::Kind::expunge);
        EXPECT_EQ(ev.uids, std::vector<std::uint32_t>{2});  // Only UIDs that existed.

        // Mailbox operations and copy.
        ASSERT_EQ(submit(*c1, request(AccessOp::create, account, "Work")), Status::ok);
        EXPECT_EQ(r1.wait_reply().reply.status, Status::ok);
        AccessRequest rename = request(AccessOp::rename, account, "Work");
        rename.target = "Play";
        ASSERT_EQ(submit(*c1, rename), Status::ok);
        EXPECT_EQ(r1.wait_reply().reply.status, Status::ok);
        AccessRequest copy = request(AccessOp::copy, account);
        copy.uids = {1};
        copy.target = "Play";
        ASSERT_EQ(submit(*c1, copy), Status::ok);
        rep = r1.wait_reply();
        ASSERT_EQ(rep.reply.status, Status::ok);
        ASSERT_EQ(rep.reply.uid_map.size(), 1u);
        ASSERT_EQ(submit(*c1, request(AccessOp::list, account)), Status::ok);
        rep = r1.wait_reply();
        ASSERT_EQ(rep.reply.status, Status::ok);
        EXPECT_EQ(rep.reply.mailboxes.size(), 6u);  // INBOX, Sent, Drafts, Trash, Junk, Play.
        ASSERT_EQ(submit(*c1, request(AccessOp::remove, account, "Play")), Status::ok);
        EXPECT_EQ(r1.wait_reply().reply.status, Status::ok);
        ASSERT_EQ(submit(*c1, request(AccessOp::status, account, "Play")), Status::ok);
        EXPECT_EQ(r1.wait_reply().reply.status, Status::not_found);

        // The in-flight cap: requests beyond it are refused at once, nothing sent.
        unsigned accepted = on_shard0([&] {
            unsigned n = 0;
            for (unsigned i = 0; i < access_in_flight_max + 3; ++i) {
                if (c2->submit(request(AccessOp::status, account)) == Status::ok) ++n;
            }
            return n;
        });
        EXPECT_EQ(accepted, access_in_flight_max);
        for (unsigned i = 0; i < accepted; ++i) r2.wait_reply();
        EXPECT_EQ(on_shard0([&] { return c2->submit(request(AccessOp::status, "nobody@x")); }),
                  Status::not_found);

        // Closing the lock holder releases the lock (its unlock travels ahead of the open).
        on_shard0([&] { c1.reset(); });
        ASSERT_EQ(submit(*c2, open), Status::ok);
        EXPECT_EQ(r2.wait_reply().reply.status, Status::ok);
        on_shard0([&] { c2.reset(); });
        // Clean the mailbox for the next account's round (nothing shared, but be tidy).
    }
}

// Proves events carry the change itself: exists names the new messages (with their flags and
// keywords), flags carries the new flag values and keyword names, the flags_set reply carries
// the same; status/list count unseen, deleted and size; a watch ended by unwatch() gets no
// more events and a second watch of the same mailbox is told each new message once.
TEST_F(MailAccessTest, EventsCarryChanges) {
    for (const std::string& account : {remote_, local_}) {
        SCOPED_TRACE(account);
        Recorder r1;
        auto c1 = on_shard0([&] { return std::make_unique<AccessClient>(*access0_, r1); });
        AccessRequest open = request(AccessOp::open, account);
        open.watch = true;
        ASSERT_EQ(submit(*c1, open), Status::ok);
        Reply rep = r1.wait_reply();
        ASSERT_EQ(rep.reply.status, Status::ok);
        const std::uint64_t box_id = rep.reply.snapshot.mailbox_id;
        const std::size_t before = rep.reply.snapshot.messages.size();
        EXPECT_EQ(on_shard0([&] { return c1->watches(); }), 1u);

        AccessRequest append = request(AccessOp::append, account);
        append.bytes = "Subject: kw\r\n\r\nbody\r\n";
        append.flags = storage::flag_seen;
        append.keywords = {"Work", "$Later"};
        ASSERT_EQ(submit(*c1, append), Status::ok);
        rep = r1.wait_reply();
        ASSERT_EQ(rep.reply.status, Status::ok);
        const std::uint32_t uid = rep.reply.uid;
        MailboxEvent ev = r1.wait_event();
        ASSERT_EQ(ev.kind, MailboxEvent::Kind::exists);
        ASSERT_EQ(ev.messages.size(), 1u);
        EXPECT_EQ(ev.messages[0].uid, uid);
        EXPECT_EQ(ev.messages[0].flags, storage::flag_seen);
        EXPECT_EQ(ev.messages[0].size, append.bytes.size());
        ASSERT_EQ(ev.keyword_names.size(), 2u);
        EXPECT_EQ(ev.keyword_names[0], "Work");
        EXPECT_EQ(ev.messages[0].keywords[0], 3u);  // Bits 0 and 1: Work, $Later.

        AccessRequest flags = request(AccessOp::flags_set, account);
        flags.uids = {uid, 999};
        flags.mode = storage::FlagMode::replace;
        flags.flags = storage::flag_flagged;
        flags.keywords = {"$Later", "Urgent"};
        ASSERT_EQ(submit(*c1, flags), Status::ok);
        rep = r1.wait_reply();
        ASSERT_EQ(rep.reply.status, Status::ok);
        ASSERT_EQ(rep.reply.changed.messages.size(), 1u);  // 999 does not exist.
        EXPECT_EQ(rep.reply.changed.messages[0].flags, storage::flag_flagged);
        EXPECT_EQ(rep.reply.changed.messages[0].keywords[0], 6u);  // $Later, Urgent.
        EXPECT_EQ(rep.reply.changed.keyword_names.size(), 3u);
        ev = r1.wait_event();
        ASSERT_EQ(ev.kind, MailboxEvent::Kind::flags);
        EXPECT_EQ(ev.uids, std::vector<std::uint32_t>{uid});
        ASSERT_EQ(ev.messages.size(), 1u);
        EXPECT_EQ(ev.messages[0].flags, storage::flag_flagged);
        EXPECT_EQ(ev.messages[0].keywords[0], 6u);
        ASSERT_EQ(ev.keyword_names.size(), 3u);
        EXPECT_EQ(ev.keyword_names[2], "Urgent");

        AccessRequest status = request(AccessOp::status, account);
        status.counts = true;
        ASSERT_EQ(submit(*c1, status), Status::ok);
        rep = r1.wait_reply();
        ASSERT_EQ(rep.reply.status, Status::ok);
        EXPECT_EQ(rep.reply.info.message_count, before + 1);
        EXPECT_EQ(before, 0u);  // A fresh store.
        EXPECT_EQ(rep.reply.counts.unseen, 1u);  // STORE replaced \Seen by \Flagged.
        EXPECT_EQ(rep.reply.counts.deleted, 0u);
        EXPECT_EQ(rep.reply.counts.size, append.bytes.size());
        AccessRequest list = request(AccessOp::list, account);
        list.counts = true;
        ASSERT_EQ(submit(*c1, list), Status::ok);
        rep = r1.wait_reply();
        ASSERT_EQ(rep.reply.status, Status::ok);
        ASSERT_EQ(rep.reply.mailbox_counts.size(), rep.reply.mailboxes.size());

        // A second watch (another open) is told each new message once, as is the first.
        ASSERT_EQ(submit(*c1, open), Status::ok);
        ASSERT_EQ(r1.wait_reply().reply.status, Status::ok);
        append.keywords.clear();
        append.flags = 0;
        ASSERT_EQ(submit(*c1, append), Status::ok);
        ASSERT_EQ(r1.wait_reply().reply.status, Status::ok);
        for (int i = 0; i < 2; ++i) {
            ev = r1.wait_event();
            EXPECT_EQ(ev.kind, MailboxEvent::Kind::exists);
            ASSERT_EQ(ev.messages.size(), 1u);
            EXPECT_EQ(ev.messages[0].uid, uid + 1);
            EXPECT_TRUE(ev.keyword_names.empty());  // The new message has no keyword.
        }
        // Both watches ended: the next change tells nobody.
        on_shard0([&] {
            c1->unwatch(box_id);
            c1->unwatch(box_id);
        });
        EXPECT_EQ(on_shard0([&] { return c1->watches(); }), 0u);
        ASSERT_EQ(submit(*c1, append), Status::ok);
        ASSERT_EQ(r1.wait_reply().reply.status, Status::ok);
        ASSERT_EQ(submit(*c1, status), Status::ok);  // A round trip after the append's events.
        ASSERT_EQ(r1.wait_reply().reply.status, Status::ok);
        EXPECT_EQ(r1.events(), 0u);
        on_shard0([&] { c1.reset(); });
    }
}

// Counts replies from any number of clients (on shard 0) for the test thread.
class Counter final : public AccessHandler {
public:
    void access_done(std::uint64_t /*tag*/, AccessOp /*op*/, AccessReply& reply) override {
        std::lock_guard lock(mutex_);
        ++count_;
        if (reply.status == Status::ok) ++ok_;
        cv_.notify_all();
    }
    // True once `n` replies arrived; `ok` of them were ok.
    bool wait_for(std::size_t n, std::size_t& ok) {
        std::unique_lock lock(mutex_);
        const bool done = cv_.wait_for(lock, 20s, [&] { return count_ >= n; });
        ok = ok_;
        return done && count_ == n;
    }

private:
    std::mutex mutex_;
    std::condition_variable cv_;
    std::size_t count_ = 0;
    std::size_t ok_ = 0;
};

// Holds shard 1's thread until release() (it reads no queue meanwhile).
class HoldShard {
public:
    explicit HoldShard(Engine& engine) {
        std::promise<void> held;
        auto held_future = held.get_future();
        engine.shard(1).post_external([&held, released = released_.get_future().share()](Shard&) {
            held.set_value();
            released.wait();
        });
        EXPECT_EQ(held_future.wait_for(10s), std::future_status::ready);
    }
    ~HoldShard() { release(); }
    void release() {
        if (!done_) released_.set_value();
        done_ = true;
    }

private:
    std::promise<void> released_;
    bool done_ = false;
};

// Proves the cross-core backlog is bounded: while the owner shard reads no queue, requests
// for it fill the queue, then the backlog up to access_backlog_requests_max, and the next
// ones are refused with Status::full at once (nothing sent, nothing grows); once the owner
// reads again every admitted request is answered and the backlog empties.
TEST_F(MailAccessTest, BacklogIsBoundedAndDrains) {
    Counter counter;
    std::vector<std::unique_ptr<AccessClient>> clients;
    constexpr unsigned client_count =
        (limits::cross_core_queue_entries + access_backlog_requests_max) / access_in_flight_max + 8;
    HoldShard hold(*engine_);
    const unsigned admitted = on_shard0([&] {
        unsigned n = 0;
        for (unsigned c = 0; c < client_count; ++c) {
            clients.push_back(std::make_unique<AccessClient>(*access0_, counter));
            for (unsigned i = 0; i < access_in_flight_max; ++i) {
                if (clients.back()->submit(request(AccessOp::status, remote_)) == Status::ok) ++n;
            }
        }
        return n;
    });
    EXPECT_EQ(on_shard0([&] { return access0_->backlog(); }), access_backlog_requests_max);
    EXPECT_LT(admitted, client_count * access_in_flight_max);
    EXPECT_LE(admitted, limits::cross_core_queue_entries + access_backlog_requests_max);
    EXPECT_EQ(on_shard0([&] { return access0_->stats().requests_refused_backlog; }),
              client_count * access_in_flight_max - admitted);
    // A request for this shard's own account does not wait behind the backlog.
    Recorder local;
    auto c = on_shard0([&] { return std::make_unique<AccessClient>(*access0_, local); });
    ASSERT_EQ(submit(*c, request(AccessOp::status, local_)), Status::ok);
    EXPECT_EQ(local.wait_reply().reply.status, Status::ok);

    hold.release();
    std::size_t ok = 0;
    EXPECT_TRUE(counter.wait_for(admitted, ok));
    EXPECT_EQ(ok, admitted);
    for (int i = 0; i < 200 && on_shard0([&] { return access0_->backlog(); }) != 0; ++i) {
        std::this_thread::sleep_for(10ms);  // The backlog drains on shard 0's ticks.
    }
    EXPECT_EQ(on_shard0([&] { return access0_->backlog(); }), 0u);
    on_shard0([&] {
        clients.clear();
        c.reset();
    });
}

// Proves a stop with cross-core requests still queued (and their clients gone) neither hangs
// nor leaks (under ASan/LSan): queued messages are discarded with what they own, replies to
// closed clients are dropped, and requests that reach a stopped MailAccess are answered.
TEST_F(MailAccessTest, StopWithRequestsQueued) {
    Counter counter;
    std::vector<std::unique_ptr<AccessClient>> clients;
    {
        HoldShard hold(*engine_);
        on_shard0([&] {
            for (unsigned c = 0; c < 64; ++c) {
                clients.push_back(std::make_unique<AccessClient>(*access0_, counter));
                for (unsigned i = 0; i < access_in_flight_max; ++i) {
                    (void)clients.back()->submit(request(AccessOp::status, remote_));
                }
            }
            clients.clear();  // Their replies will find no client.
        });
        engine_->request_stop();
    }
    engine_->wait();
    engine_.reset();
}

}  // namespace
}  // namespace rp::mail
