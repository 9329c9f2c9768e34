// tests/sim/sim_io.h: a simulated disk behind the Io interface, for fault tests.
//
// Writes land in a simulated page cache (per descriptor, in order) and reach the real file
// only at a successful fdatasync/fsync, or at settle() (a clean shutdown: the kernel writes
// everything back). crash() models power loss: every write not yet synced is kept, torn at a
// 512-byte sector boundary, or lost, at random; completions still queued never arrive.
// Injected faults, each with its own probability per operation, drawn from one seeded PRNG:
//   short_write   writev transfers a prefix and reports ok (the caller must resubmit)
//   eio_write     writev fails with Status::io after a random prefix reached the cache
//   enospc_write  writev fails with Status::no_space after a random prefix
//   eio_sync      fdatasync fails with Status::io and the dirty data is lost (fsyncgate)
//   eio_meta      openat, renameat, unlinkat or fallocate fails with Status::io, undone
// Reads see the page cache over the file. Completions run only from run_pending().
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <random>
#include <vector>

#include "core/io.h"

namespace rp::sim {

struct SimFaults {
    double short_write = 0;
    double eio_write = 0;
    double enospc_write = 0;
    double eio_sync = 0;
    double eio_meta = 0;  // openat, renameat, unlinkat, fallocate fail with Status::io.
};

class SimIo final : public Io {
public:
    explicit SimIo(std::uint64_t seed) : rng_(seed) {}

    void writev(int fd, const iovec* iov, unsigned iov_count, std::uint64_t offset,
                IoCompletion& done) override;
    void read(int fd, void* buf, std::uint32_t bytes, std::uint64_t offset,
              IoCompletion& done) override;
    void fdatasync(int fd, IoCompletion& done) override;
    void fsync(int fd, IoCompletion& done) override { fdatasync(fd, done); }
    // Metadata operations run at once on the real file system (their effects survive a
    // crash); eio_meta fails them before they run.
    void openat(int dir_fd, const char* path, int flags, unsigned mode,
                IoCompletion& done) override;
    void renameat(int old_dir_fd, const char* old_path, int new_dir_fd, const char* new_path,
                  IoCompletion& done) override;
    void unlinkat(int dir_fd, const char* path, IoCompletion& done) override;
    void fallocate(int fd, int mode, std::uint64_t offset, std::uint64_t bytes,
                   IoCompletion& done) override;

    std::size_t run_pending();
    void crash();   // Power loss: unsynced writes kept, torn or lost; queued completions dropped.
    void settle();  // Clean shutdown: every cached write reaches the file.

    SimFaults faults;
    std::uint64_t writes = 0, syncs = 0, faults_injected = 0;
    std::mt19937_64& rng() { return rng_; }

private:
    struct Cached {
        std::uint64_t offset;
        std::vector<std::byte> bytes;
    };
    bool chance(double p);
    void apply(int fd, const Cached& w, std::size_t bytes);

    std::mt19937_64 rng_;
    std::map<int, std::vector<Cached>> cache_;
    std::deque<std::function<void()>> pending_;
};

}  // namespace rp::sim
