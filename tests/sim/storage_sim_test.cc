// tests/sim/storage_sim_test.cc: the store under simulated faults (torn and short writes,
// EIO, ENOSPC, EIO on fdatasync with lost dirty data, and power loss).
//
// Proves, for every seed: a failed write or sync is reported as a clear Status (io,
// no_space) to the waiting transactions and poisons the store instead of diverging; after a
// crash and reopen every transaction that was reported durable is there byte-exact; nothing
// damaged is served; and the store keeps working after the reopen.
//
// Usage: storage_sim_test [--seed=N] [--rounds=N]. A failure prints the seed to replay.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <random>
#include <string>

#include "core/clock.h"
#include "tests/sim/sim_io.h"
#include "tests/sim/store_harness.h"

using namespace rp;
using namespace rp::storage;

namespace {

struct Expect {
    std::string body;
    bool acked = false;
    bool expunge_issued = false;
};

struct Waiter final : DurableDone {
    std::map<std::uint32_t, Expect>* model = nullptr;
    std::uint32_t uid = 0;
    int* failures = nullptr;
    void durable(Status s) override {
        auto it = model->find(uid);
        if (s == Status::ok && it != model->end()) it->second.acked = true;
        if (s != Status::ok) ++*failures;
    }
};

std::uint64_t seed_value = 1;

#define CHECK(cond, ...)                                                                  \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            std::fprintf(stderr, "FAIL seed=%llu: %s: ", static_cast<unsigned long long>(seed_value), #cond); \
            std::fprintf(stderr, __VA_ARGS__);                                            \
            std::fprintf(stderr, "\nreplay: storage_sim_test --seed=%llu --rounds=1\n",   \
                         static_cast<unsigned long long>(seed_value));                    \
            std::exit(1);                                                                 \
        }                                                                                 \
    } while (0)

std::string make_body(std::mt19937_64& rng, std::uint32_t tag) {
    const std::size_t size = rng() % 8 == 0 ? 20000 + rng() % 200000 : rng() % 6000;
    std::string s(size, '\0');
    for (std::size_t i = 0; i < size; ++i) s[i] = static_cast<char>('a' + (i * 31 + tag) % 26);
    return s + "#" + std::to_string(tag);
}

struct Stats {
    int crashes = 0, failures = 0, acked = 0, verified = 0;
};

// Reopens and checks the store against the model; pending entries resolve either way.
std::unique_ptr<MailStore> reopen(sim::SimIo& io, Clock& clock, const std::string& dir,
                                  std::map<std::uint32_t, Expect>& model, Stats& stats) {
    auto opened = MailStore::open(io, clock, test::options_for(dir, 0, 1u << 20));
    CHECK(opened, "open failed: %s", std::string(status_name(opened.status())).c_str());
    auto store = std::move(*opened);
    CHECK(store->open_report().damage.empty(), "damage reported after a crash: %s at %u:%u",
          store->open_report().damage[0].what.c_str(), store->open_report().damage[0].segment_id,
          store->open_report().damage[0].offset);
    auto msgs = store->messages("sim@x", "INBOX");
    std::map<std::uint32_t, Message> present;
    if (msgs) {
        for (const auto& m : *msgs) present[m.uid] = m;
    } else {
        CHECK(msgs.status() == Status::not_found, "INBOX: %s", std::string(status_name(msgs.status())).c_str());
    }
    for (auto it = model.begin(); it != model.end();) {
        auto p = present.find(it->first);
        if (it->second.acked && !it->second.expunge_issued) {
            CHECK(p != present.end(), "acknowledged uid %u lost", it->first);
        }
        if (p != present.end()) {
            const std::string got = test::body_string(*store, p->second.body);
            CHECK(got == it->second.body, "uid %u: body differs (%zu vs %zu bytes) %s", it->first,
                  got.size(), it->second.body.size(), got.substr(0, 20).c_str());
            it->second.acked = true;  // On disk now, whatever the batch was told.
            ++stats.verified;
            ++it;
        } else {
            it = model.erase(it);
        }
    }
    for (const auto& [uid, m] : present) {
        CHECK(model.count(uid), "uid %u present but never appended", uid);
    }
    return store;
}

void run_seed(std::uint64_t seed, Stats& stats) {
    seed_value = seed;
    test::TempDir dir;
    sim::SimIo io(seed);
    SimClock clock;
    auto& rng = io.rng();
    const std::string path = dir.shard(0);
    std::map<std::uint32_t, Expect> model;
    std::vector<std::unique_ptr<Waiter>> waiters;
    auto store = reopen(io, clock, path, model, stats);
    if (!store->account_exists("sim@x")) {
        CHECK(store->account_create("sim@x") == Status::ok, "account");
        CHECK(test::flush_all(*store, io) == Status::ok, "first flush");
    }
    const double p = 0.01 + static_cast<double>(rng() % 4) / 100.0;
    for (int step = 0; step < 400; ++step) {
        // Faults stay on most of the time; a few quiet stretches let work get through.
        const bool faulty = step % 100 < 70;
        io.faults = faulty ? sim::SimFaults{p, p / 2, p / 2, p / 2} : sim::SimFaults{};
        const unsigned action = static_cast<unsigned>(rng() % 100);
        if (store->failed() != Status::ok || action < 3) {
            const Status why = store->failed();
            CHECK(why == Status::ok || why == Status::io || why == Status::no_space,
                  "unexpected failure status %s", std::string(status_name(why)).c_str());
            ++stats.crashes;
            if (rng() % 2) {
                io.crash();
            } else {
                io.run_pending();
                io.settle();
            }
            store.reset();
            waiters.clear();
            io.faults = {};
            store = reopen(io, clock, path, model, stats);
            continue;
        }
        if (action < 60) {
            const std::string body = make_body(rng, static_cast<std::uint32_t>(step));
            store->txn_begin();
            auto w = store->body_begin();
            if (!w) {
                (void)store->txn_commit();
                continue;
            }
            // Zero-copy in one or two pieces; the model's string owns the memory.
            std::string* owned = nullptr;
            Status s = Status::ok;
            struct Keep final : BufferRelease {
                void buffer_released(Status) override {}
            };
            static Keep keep;
            std::string* held = new std::string(body);
            owned = held;
            const std::size_t half = held->size() / 2;
            iovec iov[2] = {{held->data(), half}, {held->data() + half, held->size() - half}};
            s = store->body_append(*w, iov, 2, keep);
            MailStore::AppendArgs args;
            std::uint32_t uid = 0;
            if (s == Status::ok) {
                auto ref = store->body_finish(*w);
                if (ref) {
                    args.body = *ref;
                    args.size = body.size();
                    auto u = store->message_append("sim@x", "INBOX", args);
                    if (u) uid = *u;
                }
            } else {
                store->body_abort(*w);
            }
            auto waiter = std::make_unique<Waiter>();
            waiter->model = &model;
            waiter->uid = uid;
            waiter->failures = &stats.failures;
            if (uid != 0) model[uid] = Expect{body, false, false};
            auto end = store->txn_commit(uid != 0 ? waiter.get() : nullptr);
            waiters.push_back(std::move(waiter));
            static std::vector<std::unique_ptr<std::string>> arena;
            arena.emplace_back(owned);
            if (arena.size() > 4096) arena.erase(arena.begin(), arena.begin() + 2048);
            (void)end;
        } else if (action < 70) {
            std::vector<std::uint32_t> uids;
            for (auto& [uid, e] : model) {
                if (rng() % 4 == 0 && e.acked) {
                    uids.push_back(uid);
                    e.expunge_issued = true;
                }
            }
            (void)store->expunge("sim@x", "INBOX", uids);
        } else if (action < 80) {
            std::vector<std::uint32_t> uids;
            for (auto& [uid, e] : model) {
                if (rng() % 3 == 0) uids.push_back(uid);
            }
            (void)store->flags_set("sim@x", "INBOX", uids, FlagMode::add, flag_seen, {"$k"});
        } else if (action < 97) {
            (void)store->flush();
            // Sometimes leave the batch in flight, so that the next flush overlaps it.
            if (rng() % 3 != 0) io.run_pending();
        } else {
            io.run_pending();
            if (!store->flushing() && store->staged_bytes() == 0 && store->failed() == Status::ok) {
                struct Done final : SnapshotDone {
                    void snapshot_done(Status) override {}
                } static snap;
                (void)store->snapshot(snap);
                io.run_pending();
            }
        }
    }
    for (const auto& [uid, e] : model) stats.acked += e.acked ? 1 : 0;
    io.faults = {};
    io.run_pending();
    io.crash();
    store.reset();
    waiters.clear();
    store = reopen(io, clock, path, model, stats);
    // It still works after all that.
    auto uid = test::put_message(*store, "sim@x", "INBOX", "final");
    CHECK(uid, "append after recovery: %s", std::string(status_name(uid.status())).c_str());
    CHECK(test::flush_all(*store, io) == Status::ok, "flush after recovery");
}

}  // namespace

int main(int argc, char** argv) {
    std::uint64_t first = 1;
    int rounds = 40;
    for (int i = 1; i < argc; ++i) {
        if (std::strncmp(argv[i], "--seed=", 7) == 0) first = std::strtoull(argv[i] + 7, nullptr, 10);
        if (std::strncmp(argv[i], "--rounds=", 9) == 0) rounds = std::atoi(argv[i] + 9);
    }
    Stats stats;
    for (int r = 0; r < rounds; ++r) run_seed(first + static_cast<std::uint64_t>(r), stats);
    std::printf("storage_sim_test: seeds %llu..%llu ok: %d crashes/reopens, %d failed batches "
                "reported, %d acknowledged messages, %d verifications\n",
                static_cast<unsigned long long>(first),
                static_cast<unsigned long long>(first + static_cast<std::uint64_t>(rounds) - 1),
                stats.crashes, stats.failures, stats.acked, stats.verified);
    return 0;
}
