// The store upkeep's pure rules: how much log lies between two positions, and when a
// snapshot is due (protocols/common/store_upkeep.h).
#include <gtest/gtest.h>

#include "protocols/common/store_upkeep.h"

namespace rp::mail {
namespace {

constexpr std::uint64_t MiB = 1ull << 20;

StoreUpkeepOptions options() {
    StoreUpkeepOptions o;
    o.snapshot_log_bytes = 64 * MiB;
    o.snapshot_log_bytes_max = 512 * MiB;
    return o;
}

// Proves the distance counts the rest of the first segment, whole segments between, and the
// offset into the last.
TEST(LogBytesBetween, CountsAcrossSegments) {
    EXPECT_EQ(log_bytes_between(storage::lsn_make(3, 100), storage::lsn_make(3, 4196), 1u << 20), 4096u);
    EXPECT_EQ(log_bytes_between(storage::lsn_make(3, 100), storage::lsn_make(5, 10), 1u << 20),
              (1u << 20) - 100 + (1u << 20) + 10);
}

// Proves a snapshot past the soft mark waits for a quiet shard, and goes under load only
// past the hard mark.
TEST(SnapshotDue, SoftMarkWaitsForQuietHardMarkDoesNot) {
    const auto o = options();
    EXPECT_FALSE(snapshot_due(o, 10 * MiB, 0, false, true));   // Not grown enough.
    EXPECT_FALSE(snapshot_due(o, 100 * MiB, 0, false, false)); // Grown, but busy.
    EXPECT_TRUE(snapshot_due(o, 100 * MiB, 0, false, true));   // Grown and quiet.
    EXPECT_FALSE(snapshot_due(o, 511 * MiB, 0, false, false));
    EXPECT_TRUE(snapshot_due(o, 512 * MiB, 0, false, false));  // The hard mark.
}

// Proves freed space asks for a snapshot whatever the growth, still only when quiet.
TEST(SnapshotDue, WantedGoesWhenQuiet) {
    const auto o = options();
    EXPECT_TRUE(snapshot_due(o, 1, 0, true, true));
    EXPECT_FALSE(snapshot_due(o, 1, 0, true, false));
}

// Proves a big index is re-encoded only after a few times its size of log: the soft mark is
// 4x the last snapshot, the hard mark 16x, when those are above the configured marks.
TEST(SnapshotDue, BigSnapshotsRaiseBothMarks) {
    const auto o = options();
    const std::uint64_t snapshot = 100 * MiB;  // About 700,000 messages.
    EXPECT_FALSE(snapshot_due(o, 300 * MiB, snapshot, false, true));
    EXPECT_TRUE(snapshot_due(o, 400 * MiB, snapshot, false, true));
    EXPECT_FALSE(snapshot_due(o, 1500 * MiB, snapshot, false, false));
    EXPECT_TRUE(snapshot_due(o, 1600 * MiB, snapshot, false, false));
}

}  // namespace
}  // namespace rp::mail
