// tests/unit/commit_policy_test.cc: the group-commit decision (protocols/common/shard_mail.h).
#include <gtest/gtest.h>

#include "protocols/common/shard_mail.h"

namespace rp::mail {
namespace {

constexpr std::uint64_t ms = 1'000'000;

CommitPolicy policy(std::uint64_t window_ns, unsigned batch_max) {
    CommitPolicy p;
    p.window_ns = window_ns;
    p.batch_max = batch_max;
    return p;
}

// Proves nothing staged means nothing to do, flushing or not.
TEST(CommitDecide, NothingStaged) {
    EXPECT_EQ(commit_decide(policy(ms, 8), 10 * ms, false, 0, 0, 0).action, CommitAction::idle);
    EXPECT_EQ(commit_decide(policy(ms, 8), 10 * ms, true, 0, 0, 0).action, CommitAction::idle);
}

// Proves a batch is flushed at once when no flush is in flight, however small and young.
TEST(CommitDecide, FlushAtOnceWhenIdle) {
    EXPECT_EQ(commit_decide(policy(ms, 8), 10 * ms, false, 100, 1, 10 * ms).action,
              CommitAction::flush);
    EXPECT_EQ(commit_decide(policy(ms, 8), 10 * ms, false, 100, 0, 0).action, CommitAction::flush);
}

// Proves that while a flush is in flight a young, small batch waits until its oldest commit
// is a window old, then goes early.
TEST(CommitDecide, WindowWhileInFlight) {
    CommitDecision d = commit_decide(policy(ms, 8), 10 * ms, true, 100, 3, 10 * ms - ms / 4);
    EXPECT_EQ(d.action, CommitAction::wait);
    EXPECT_EQ(d.deadline_ns, 10 * ms - ms / 4 + ms);
    EXPECT_EQ(commit_decide(policy(ms, 8), 11 * ms, true, 100, 3, 10 * ms).action,
              CommitAction::flush);
    // Window 0: never wait.
    EXPECT_EQ(commit_decide(policy(0, 8), 10 * ms, true, 100, 1, 10 * ms).action,
              CommitAction::flush);
}

// Proves a batch that reaches commit_batch_max goes early, before its window.
TEST(CommitDecide, BatchMaxWhileInFlight) {
    EXPECT_EQ(commit_decide(policy(ms, 8), 10 * ms, true, 100, 7, 10 * ms).action,
              CommitAction::wait);
    EXPECT_EQ(commit_decide(policy(ms, 8), 10 * ms, true, 100, 8, 10 * ms).action,
              CommitAction::flush);
}

// Proves staged work nobody waits on (spool updates) rides with the next batch.
TEST(CommitDecide, NoWaiterWhileInFlight) {
    EXPECT_EQ(commit_decide(policy(ms, 8), 10 * ms, true, 100, 0, 0).action, CommitAction::idle);
}

}  // namespace
}  // namespace rp::mail
