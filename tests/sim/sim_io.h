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
//   eio_sync      fdatasync fails with Status::io and the dirty data is lost (fsyncgate);
//                 a later sync through another open file description of the file fails
//                 once too (the kernel's errseq), through the same one it does not
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
    // Deterministic faults: the Nth writev / fdatasync from now on (1-based, 0: none) fails
    // like eio_write / eio_sync.
    std::uint64_t eio_write_at = 0;
    std::uint64_t eio_sync_at = 0;
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
    // Delivers queued completions newest first (again and again until none is left): batches
    // in flight then finish out of order.
    std::size_t run_pending_reversed();
    void crash();   // Power loss: unsynced writes kept, torn or lost; queued completions dropped.
    void settle();  // Clean shutdown: every cached write reaches the file.

    SimFaults faults;
    std::uint64_t writes = 0, syncs = 0, faults_injected = 0;
    std::mt19937_64& rng() { return rng_; }

private:
    struct Cached {
        int fd;  // The descriptor that wrote it (any description of the file will do).
        std::uint64_t offset;
        std::vector<std::byte> bytes;
    };
    // The page cache belongs to the file, not the descriptor: several open file descriptions
    // of one segment (storage/log.h) sync each other's writes, as in the kernel.
    using FileKey = std::pair<std::uint64_t, std::uint64_t>;  // (device, inode)
    static FileKey file_of(int fd);
    bool chance(double p);
    void apply(const Cached& w, std::size_t bytes);

    std::mt19937_64 rng_;
    std::map<FileKey, std::vector<Cached>> cache_;
    // Write-back errors as the kernel reports them (errseq): a failed sync bumps the file's
    // error count; each descriptor reports every error it has not seen yet, once, so a sync
    // through another description of the file fails too. Reset at crash() and settle().
    std::map<FileKey, std::uint64_t> file_errors_;
    std::map<std::pair<int, FileKey>, std::uint64_t> fd_errors_seen_;
    std::deque<std::function<void()>> pending_;
};

}  // namespace rp::sim
