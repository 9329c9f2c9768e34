// bench/bench_storage.cc: the store's micro-benchmarks.
//
//   BM_Append/<bytes>/<per_sync>   appends with one group commit (writev + fdatasync) per
//                                  <per_sync> messages, real disk (RP_BENCH_DIR, default
//                                  ./benchtmp); compare with dd oflag=direct (bench/storage_vs_dd.sh)
//   BM_AppendCpu/<bytes>           the CPU cost only: an Io that completes at once, no disk
//   BM_Read/<bytes>                read + verify a body (page cache)
//   BM_Recovery/<records>          open a store whose log holds that many records (no snapshot)
//   BM_RestartWithSnapshot/<MiB>/<tail MiB>  open a store of that size whose log holds that
//                                  much after its snapshot (RP_BENCH_COLD=1: page cache dropped)
//   BM_IndexLookup                 message(uid) in a 100k-message mailbox
//   BM_SnapshotEncode/<messages>   encode the index of one mailbox of that many delivered
//                                  messages (each with its body and delivery key), as the
//                                  daemon's upkeep does
//   BM_SpoolMemory/<entries>       RSS per deferred spool entry (1 remote recipient, 30-byte
//                                  addresses, a 451 reply) held by the store, and the cost
//                                  of spool_due() when little is due
#include <benchmark/benchmark.h>

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include "core/clock.h"
#include "core/io_uring.h"
#include "core/reactor.h"
#include "core/sync_io.h"
#include "storage/index_snapshot.h"
#include "tests/sim/store_harness.h"

using namespace rp;
using namespace rp::storage;

namespace {

std::string bench_dir(const std::string& name) {
    const char* base = std::getenv("RP_BENCH_DIR");
    std::string dir = std::string(base ? base : "benchtmp") + "/" + name;
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    return dir;
}

// Completes every operation at once without touching the disk: CPU cost only.
class NullIo final : public Io {
public:
    void writev(int, const iovec* iov, unsigned n, std::uint64_t, IoCompletion& d) override {
        std::uint64_t total = 0;
        for (unsigned i = 0; i < n; ++i) total += iov[i].iov_len;
        pending_.push_back({&d, static_cast<std::uint32_t>(total)});
    }
    void read(int, void*, std::uint32_t n, std::uint64_t, IoCompletion& d) override { pending_.push_back({&d, n}); }
    void fdatasync(int, IoCompletion& d) override { pending_.push_back({&d, 0}); }
    void fsync(int, IoCompletion& d) override { pending_.push_back({&d, 0}); }
    // Metadata really happens (segment files must exist); completions are queued like the rest.
    void openat(int dir, const char* path, int flags, unsigned mode, IoCompletion& d) override {
        const int fd = ::openat(dir, path, flags, static_cast<mode_t>(mode));
        if (fd < 0) std::abort();
        pending_.push_back({&d, static_cast<std::uint32_t>(fd)});
    }
    void renameat(int od, const char* op, int nd, const char* np, IoCompletion& d) override {
        if (::renameat(od, op, nd, np) != 0) std::abort();
        pending_.push_back({&d, 0});
    }
    void unlinkat(int dir, const char* path, IoCompletion& d) override {
        (void)::unlinkat(dir, path, 0);
        pending_.push_back({&d, 0});
    }
    void fallocate(int, int, std::uint64_t, std::uint64_t, IoCompletion& d) override { pending_.push_back({&d, 0}); }
    std::size_t run_pending() {
        std::size_t n = 0;
        while (!pending_.empty()) {
            auto p = pending_.back();
            pending_.pop_back();
            p.first->io_done(Status::ok, p.second);
            ++n;
        }
        return n;
    }

private:
    std::vector<std::pair<IoCompletion*, std::uint32_t>> pending_;
};

std::unique_ptr<MailStore> open_or_die(Io& io, Clock& clock, const StoreOptions& o) {
    auto s = MailStore::open(io, clock, o);
    if (!s) std::abort();
    return std::move(s.value());
}

struct NoRelease final : BufferRelease {
    void buffer_released(Status) override {}
};

// Flushes what is staged and completes it at once (NullIo: CPU only).
void flush_now(MailStore& store, NullIo& io) {
    (void)store.flush();
    io.run_pending();
}

template <typename IoT>
void append_one(MailStore& store, std::string& body, NoRelease& rel) {
    store.txn_begin();
    auto w = store.body_begin();
    iovec iov{body.data(), body.size()};
    if (store.body_append(*w, &iov, 1, rel) != Status::ok) std::abort();
    auto ref = store.body_finish(*w);
    MailStore::AppendArgs args;
    args.body = *ref;
    args.size = body.size();
    if (!store.message_append("bench@x", "INBOX", args)) std::abort();
    if (!store.txn_commit()) std::abort();
}

void BM_Append(benchmark::State& state) {
    const auto bytes = static_cast<std::size_t>(state.range(0));
    const auto per_sync = static_cast<int>(state.range(1));
    const std::string dir = bench_dir("append");
    SyncIo io;
    SimClock clock;
    StoreOptions o = test::options_for(dir, 0, 256u << 20);
    o.prewrite_bytes = 0;  // The daemon's default ([store] prewrite_bytes).
    auto store = open_or_die(io, clock, o);
    (void)store->account_create("bench@x");
    std::string body(bytes, 'x');
    NoRelease rel;
    for (auto _ : state) {
        for (int i = 0; i < per_sync; ++i) append_one<SyncIo>(*store, body, rel);
        if (test::flush_all(*store, io) != Status::ok) std::abort();
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * per_sync * bytes));
    state.SetItemsProcessed(state.iterations() * per_sync);
    store.reset();
    std::filesystem::remove_all(dir);
}
BENCHMARK(BM_Append)->Args({4096, 1})->Iterations(2000)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_Append)->Args({4096, 16})->Iterations(1000)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_Append)->Args({4096, 256})->Iterations(200)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_Append)->Args({102400, 1})->Iterations(2000)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_Append)->Args({102400, 16})->Iterations(400)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_Append)->Args({102400, 256})->Iterations(40)->Unit(benchmark::kMicrosecond)->UseRealTime();

// The same load through the daemon's Io (io_uring), with the store's batches in flight
// (StoreOptions::batches_inflight_max, the third argument): the next batch is checksummed and
// written while the previous one syncs. MB_per_s_drained also counts the last batches' sync.
void BM_AppendRing(benchmark::State& state) {
    const auto bytes = static_cast<std::size_t>(state.range(0));
    const auto per_sync = static_cast<int>(state.range(1));
    ReactorOptions ro;
    ro.ring_entries = 256;
    ro.timers_max = 4;
    auto reactor = Reactor::create(ro);
    if (!reactor) {
        state.SkipWithError("no io_uring");
        return;
    }
    const std::string dir = bench_dir("ring");
    UringIo io(**reactor);
    SimClock clock;
    StoreOptions o = test::options_for(dir, 0, 256u << 20);
    o.prewrite_bytes = 0;  // The daemon's default ([store] prewrite_bytes).
    o.batches_inflight_max = static_cast<unsigned>(state.range(2));
    auto store = open_or_die(io, clock, o);
    (void)store->account_create("bench@x");
    std::string body(bytes, 'x');
    NoRelease rel;
    struct Done final : FlushDone {
        int outstanding = 0;
        void flush_done(Status s) override {
            if (s != Status::ok) std::abort();
            --outstanding;
        }
    } done;
    const auto start = std::chrono::steady_clock::now();
    for (auto _ : state) {
        for (int i = 0; i < per_sync; ++i) append_one<UringIo>(*store, body, rel);
        for (;;) {
            const Status s = store->flush(&done);
            if (s == Status::ok) {
                ++done.outstanding;
                break;
            }
            if (s != Status::busy) std::abort();
            (*reactor)->run_once(1'000'000'000ull);
        }
    }
    while (done.outstanding > 0 || store->flushing()) (*reactor)->run_once(1'000'000'000ull);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const double total = static_cast<double>(state.iterations()) * per_sync * static_cast<double>(bytes);
    state.counters["MB_per_s_drained"] = total / seconds / 1e6;
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * per_sync * bytes));
    store.reset();
    std::filesystem::remove_all(dir);
}
BENCHMARK(BM_AppendRing)->Args({102400, 256, 1})->Iterations(40)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_AppendRing)->Args({102400, 256, 2})->Iterations(40)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_AppendRing)->Args({102400, 16, 1})->Iterations(400)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_AppendRing)->Args({102400, 16, 2})->Iterations(400)->Unit(benchmark::kMicrosecond)->UseRealTime();

void BM_AppendCpu(benchmark::State& state) {
    const auto bytes = static_cast<std::size_t>(state.range(0));
    const std::string dir = bench_dir("cpu");
    NullIo io;
    SimClock clock;
    auto store = open_or_die(io, clock, test::options_for(dir, 0, 1u << 30));
    (void)store->account_create("bench@x");
    std::string body(bytes, 'x');
    NoRelease rel;
    int n = 0;
    for (auto _ : state) {
        append_one<NullIo>(*store, body, rel);
        if (++n % 256 == 0) {
            flush_now(*store, io);
        }
        if (n % 100000 == 0) {  // Keep the mailbox and segment bounded.
            state.PauseTiming();
            flush_now(*store, io);
            store.reset();
            std::filesystem::remove_all(dir);
            store = open_or_die(io, clock, test::options_for(dir, 0, 1u << 30));
            (void)store->account_create("bench@x");
            state.ResumeTiming();
        }
    }
    state.SetItemsProcessed(state.iterations());
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * bytes));
}
BENCHMARK(BM_AppendCpu)->Arg(4096)->Arg(102400);

void BM_SnapshotEncode(benchmark::State& state) {
    const auto messages = state.range(0);
    const std::string dir = bench_dir("snapenc");
    NullIo io;
    SimClock clock;
    auto store = open_or_die(io, clock, test::options_for(dir, 0, 1u << 30));
    (void)store->account_create("bench@x");
    for (std::int64_t i = 0; i < messages; ++i) {
        store->txn_begin();
        auto ref = store->body_put(test::bytes_of(std::string(64, 'b')));
        MailStore::AppendArgs args;
        args.body = *ref;
        args.size = 4096;
        args.internal_date = 1'700'000'000 + i;
        if (!store->deliver("bench@x", "INBOX", DeliveryKey{static_cast<std::uint64_t>(i) << 8, "bench@x"}, args)) std::abort();
        if (!store->txn_commit()) std::abort();
        if (i % 256 == 255) {
            flush_now(*store, io);
        }
    }
    flush_now(*store, io);
    std::size_t bytes = 0;
    for (auto _ : state) {
        const std::string out = snapshot_encode(store->index(), SnapshotMeta{1, 1, 1'700'000'000}, 0);
        bytes = out.size();
        benchmark::DoNotOptimize(out.data());
    }
    state.counters["snapshot_bytes"] = static_cast<double>(bytes);
    state.counters["ns_per_message"] = benchmark::Counter(
        static_cast<double>(state.iterations() * messages), benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
    store.reset();
    std::filesystem::remove_all(dir);
}
BENCHMARK(BM_SnapshotEncode)->Arg(100000)->Unit(benchmark::kMillisecond);

void BM_Read(benchmark::State& state) {
    const auto bytes = static_cast<std::size_t>(state.range(0));
    const std::string dir = bench_dir("read");
    SyncIo io;
    SimClock clock;
    auto store = open_or_die(io, clock, test::options_for(dir, 0, 256u << 20));
    (void)store->account_create("bench@x");
    std::vector<BodyRef> refs;
    for (int i = 0; i < 256; ++i) refs.push_back(*store->body_put(test::bytes_of(std::string(bytes, 'r'))));
    (void)test::flush_all(*store, io);
    std::string out(bytes, '\0');
    std::size_t i = 0;
    for (auto _ : state) {
        auto h = store->body_open(refs[i++ % refs.size()]);
        if (body_read_blocking(*h, {reinterpret_cast<std::byte*>(out.data()), out.size()}) != Status::ok) std::abort();
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * bytes));
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Read)->Arg(4096)->Arg(102400);

// A log of `records` records: messages of 64 bytes, 4 records each (chunk, body_define,
// message_append, commit).
void BM_Recovery(benchmark::State& state) {
    const auto records = static_cast<std::int64_t>(state.range(0));
    const std::string dir = bench_dir("recovery");
    {
        SyncIo io;
        SimClock clock;
        auto store = open_or_die(io, clock, test::options_for(dir, 0, 256u << 20));
        (void)store->account_create("bench@x");
        std::string body(64, 'm');
        NoRelease rel;
        for (std::int64_t i = 0; i < records / 4; ++i) {
            append_one<SyncIo>(*store, body, rel);
            if (i % 4096 == 4095) (void)test::flush_all(*store, io);
        }
        (void)test::flush_all(*store, io);
    }
    std::uint64_t replayed = 0;
    for (auto _ : state) {
        SyncIo io;
        SimClock clock;
        auto store = MailStore::open(io, clock, test::options_for(dir, 0, 256u << 20));
        if (!store) std::abort();
        replayed = (*store)->open_report().records_replayed;
    }
    state.counters["records"] = static_cast<double>(replayed);
    state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(replayed));
    std::filesystem::remove_all(dir);
}
BENCHMARK(BM_Recovery)->Arg(1000000)->Unit(benchmark::kMillisecond)->Iterations(3)->UseRealTime();

struct SnapWait final : SnapshotDone {
    void snapshot_done(Status s) override {
        if (s != Status::ok) std::abort();
    }
};

// With RP_BENCH_COLD=1 (root), the page cache is dropped before each open: a restart after a
// reboot rather than after a daemon restart.
void drop_caches() {
    ::sync();
    FILE* f = std::fopen("/proc/sys/vm/drop_caches", "w");
    if (!f || std::fputs("3", f) < 0 || std::fclose(f) != 0) std::abort();
}

void BM_RestartWithSnapshot(benchmark::State& state) {
    const auto mib = static_cast<std::int64_t>(state.range(0));
    const auto tail_mib = static_cast<std::int64_t>(state.range(1));
    const bool cold = std::getenv("RP_BENCH_COLD") != nullptr;
    const std::string dir = bench_dir("restart");
    {
        SyncIo io;
        SimClock clock;
        auto store = open_or_die(io, clock, test::options_for(dir, 0, 256u << 20));
        (void)store->account_create("bench@x");
        std::string body(100 * 1024, 'b');
        NoRelease rel;
        for (std::int64_t i = 0; i < mib * 10; ++i) {
            append_one<SyncIo>(*store, body, rel);
            if (i % 64 == 63) (void)test::flush_all(*store, io);
        }
        (void)test::flush_all(*store, io);
        SnapWait w;
        (void)store->snapshot(w);
        io.run_pending();
        for (std::int64_t i = 0; i < tail_mib * 10; ++i) {  // The log to replay after it.
            append_one<SyncIo>(*store, body, rel);
            if (i % 64 == 63) (void)test::flush_all(*store, io);
        }
        (void)test::flush_all(*store, io);
    }
    std::uint64_t messages = 0;
    for (auto _ : state) {
        if (cold) {
            state.PauseTiming();
            drop_caches();
            state.ResumeTiming();
        }
        SyncIo io;
        SimClock clock;
        auto store = MailStore::open(io, clock, test::options_for(dir, 0, 256u << 20));
        if (!store || !(*store)->open_report().snapshot_loaded) std::abort();
        messages = (*store)->stats().messages;
    }
    state.counters["messages"] = static_cast<double>(messages);
    std::filesystem::remove_all(dir);
}
// Sizes in MiB: the store, and the log after its snapshot (10: a quiet shard; 512: the hard
// mark, [store] snapshot_log_bytes_max, reached under a load that never pauses).
BENCHMARK(BM_RestartWithSnapshot)->Args({2048, 10})->Args({10240, 10})->Args({10240, 512})
    ->Unit(benchmark::kMillisecond)->Iterations(3)->UseRealTime();

void BM_IndexLookup(benchmark::State& state) {
    const std::string dir = bench_dir("lookup");
    NullIo io;
    SimClock clock;
    auto store = open_or_die(io, clock, test::options_for(dir, 0, 1u << 30));
    (void)store->account_create("bench@x");
    std::string body(16, 'l');
    NoRelease rel;
    for (int i = 0; i < 100000; ++i) {
        append_one<NullIo>(*store, body, rel);
        if (i % 256 == 255) {
            flush_now(*store, io);
        }
    }
    flush_now(*store, io);
    std::uint32_t uid = 1;
    for (auto _ : state) {
        auto m = store->message("bench@x", "INBOX", uid);
        benchmark::DoNotOptimize(m);
        uid = uid % 100000 + 1;
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_IndexLookup);

std::int64_t rss_bytes() {
    long pages_total = 0, pages_resident = 0;
    FILE* f = std::fopen("/proc/self/statm", "r");
    if (!f) return 0;
    if (std::fscanf(f, "%ld %ld", &pages_total, &pages_resident) != 2) pages_resident = 0;
    std::fclose(f);
    return static_cast<std::int64_t>(pages_resident) * ::sysconf(_SC_PAGESIZE);
}

// The relay issue's budget is 1 KiB of memory per queued message, all of ringpostd; this is
// the store's part: the spool entry, its due-index node and its body's index entry, written
// through the API as SMTP accept (pending) and a failed attempt (deferred) would.
void BM_SpoolMemory(benchmark::State& state) {
    const auto count = static_cast<std::uint32_t>(state.range(0));
    const std::string dir = bench_dir("spool");
    for (auto _ : state) {
        NullIo io;
        SimClock clock;
        const std::int64_t before = rss_bytes();
        auto store = open_or_die(io, clock, test::options_for(dir, 0, 1u << 30));
        const std::string body(1024, 'b');
        char address[64];
        for (std::uint32_t i = 0; i < count; ++i) {
            store->txn_begin();
            auto ref = store->body_put({reinterpret_cast<const std::byte*>(body.data()), body.size()});
            if (!ref) std::abort();
            SpoolEntry e;
            std::snprintf(address, sizeof address, "sender%08u@origin.example.org", i);  // 30 bytes
            e.sender = address;
            std::snprintf(address, sizeof address, "rcpt%08u@remote.example.net", i);    // 29 bytes
            e.recipients.push_back({address, RcptState::pending, 1700000000, 0, ""});
            e.body = *ref;
            e.body_bytes = body.size();
            e.arrival = 1700000000;
            e.client = "helo=<mx.origin.example.org> addr=<192.0.2.1>";
            auto id = store->spool_add(std::move(e));
            if (!id || !store->txn_commit()) std::abort();
            if (store->spool_update(*id, 0, RcptState::deferred, 1700003600 + i % 3600, 1,
                                    "451 4.4.1 remote.example.net: connection refused") != Status::ok) {
                std::abort();
            }
            if (i % 256 == 255) {
                flush_now(*store, io);
            }
        }
        flush_now(*store, io);
        const std::int64_t after = rss_bytes();
        // Nothing due yet, and a few due: neither walks the spool.
        const auto t0 = std::chrono::steady_clock::now();
        std::size_t seen = 0;
        for (int k = 0; k < 1000; ++k) seen += store->spool_due(1700000000, 100).size();
        for (int k = 0; k < 1000; ++k) seen += store->spool_due(1700003600 + 2, 100).size();
        const auto t1 = std::chrono::steady_clock::now();
        if (seen == 0) std::abort();
        // What spool_due() did before the index: walk every entry and recipient.
        std::size_t due_walk = 0;
        for (int k = 0; k < 10; ++k) {
            for (const auto& [id, entry] : store->spool_all()) {
                for (const auto& rc : entry.recipients) {
                    due_walk += !rcpt_state_final(rc.state) && rc.next_attempt <= 1700000000 ? 1 : 0;
                }
            }
        }
        const auto t2 = std::chrono::steady_clock::now();
        benchmark::DoNotOptimize(due_walk);
        state.counters["walk_ns"] = std::chrono::duration<double, std::nano>(t2 - t1).count() / 10;
        state.counters["rss_bytes_per_entry"] = static_cast<double>(after - before) / count;
        state.counters["spool_due_ns"] =
            std::chrono::duration<double, std::nano>(t1 - t0).count() / 2000;
        state.counters["entries"] = store->stats().spool_entries;
    }
}
BENCHMARK(BM_SpoolMemory)->Arg(1000000)->Iterations(1)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
