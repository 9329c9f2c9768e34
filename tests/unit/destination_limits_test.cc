// tests/unit/destination_limits_test.cc: the per-destination connection limit over shards.
#include "protocols/smtp/destination_limits.h"

#include <gtest/gtest.h>

namespace rp::smtp {
namespace {

using Kind = LimitAction::Kind;

// Proves the limit holds over all shards: the third ask for a limit of 2 waits, whichever
// shard asks, and the next release grants it to the waiter.
TEST(DestinationLimits, LimitOverAllShardsAndGrantOnRelease) {
    DestinationLimits limits(2, 2);
    auto a = limits.acquire(0, "d.test");
    ASSERT_EQ(a.size(), 1u);
    EXPECT_EQ(a[0].kind, Kind::grant);
    EXPECT_EQ(a[0].shard, 0u);
    a = limits.acquire(0, "d.test");
    ASSERT_EQ(a.size(), 1u);
    EXPECT_EQ(a[0].kind, Kind::grant);
    EXPECT_EQ(limits.count("d.test"), 2u);
    // Shard 1 must wait; shard 0 holds more, so it is asked to yield one.
    a = limits.acquire(1, "d.test");
    ASSERT_EQ(a.size(), 1u);
    EXPECT_EQ(a[0].kind, Kind::yield);
    EXPECT_EQ(a[0].shard, 0u);
    EXPECT_EQ(limits.count("d.test"), 2u);
    a = limits.release(0, "d.test");
    ASSERT_EQ(a.size(), 1u);
    EXPECT_EQ(a[0].kind, Kind::grant);
    EXPECT_EQ(a[0].shard, 1u);
    EXPECT_EQ(limits.count("d.test"), 2u);
    EXPECT_FALSE(limits.contended(0, "d.test"));
    // Fair shares: shard 1 holds 1 and shard 0 holds 1: a further ask waits without a yield.
    EXPECT_TRUE(limits.acquire(1, "d.test").empty());
    EXPECT_TRUE(limits.contended(0, "d.test"));
    EXPECT_FALSE(limits.contended(1, "d.test"));  // Only shard 1 waits.
    // Other domains count apart.
    a = limits.acquire(1, "other.test");
    ASSERT_EQ(a.size(), 1u);
    EXPECT_EQ(a[0].kind, Kind::grant);
    EXPECT_EQ(limits.count("other.test"), 1u);
}

// Proves waiters are served in order, a shard that already holds as many as the biggest
// holder asks nobody to yield, and counters vanish when unused.
TEST(DestinationLimits, WaitersInOrderAndCleanup) {
    DestinationLimits limits(3, 1);
    EXPECT_EQ(limits.acquire(2, "d.test")[0].kind, Kind::grant);
    auto a = limits.acquire(2, "d.test");  // Holds the only one itself: no yield.
    EXPECT_TRUE(a.empty());
    a = limits.acquire(0, "d.test");
    ASSERT_EQ(a.size(), 1u);
    EXPECT_EQ(a[0].kind, Kind::yield);
    EXPECT_EQ(a[0].shard, 2u);
    a = limits.release(2, "d.test");
    ASSERT_EQ(a.size(), 1u);
    EXPECT_EQ(a[0].shard, 2u);  // Its own earlier ask came first.
    a = limits.release(2, "d.test");
    ASSERT_EQ(a.size(), 1u);
    EXPECT_EQ(a[0].shard, 0u);
    EXPECT_TRUE(limits.release(0, "d.test").empty());
    EXPECT_EQ(limits.domains(), 0u);
    // A release that matches nothing held changes nothing.
    EXPECT_TRUE(limits.release(1, "d.test").empty());
    EXPECT_EQ(limits.count("d.test"), 0u);
}

// Proves yields stop at fair shares: a shard holding 4 of 4 is asked for 2 when another
// shard asks for 4 (not for all 4, which would make the shards swap every connection).
TEST(DestinationLimits, YieldsOnlyToFairShares) {
    DestinationLimits limits(2, 4);
    for (int i = 0; i < 4; ++i) EXPECT_EQ(limits.acquire(0, "d.test")[0].kind, Kind::grant);
    unsigned yields = 0;
    for (int i = 0; i < 4; ++i) {
        for (const auto& a : limits.acquire(1, "d.test")) {
            EXPECT_EQ(a.kind, Kind::yield);
            EXPECT_EQ(a.shard, 0u);
            ++yields;
        }
    }
    EXPECT_EQ(yields, 2u);

}

// Proves every shard agrees on a domain's owner and owners spread over the shards.
TEST(DestinationLimits, OwnerIsStableAndSpread) {
    bool seen[4] = {};
    for (int i = 0; i < 200; ++i) {
        const std::string domain = "d" + std::to_string(i) + ".test";
        const unsigned owner = DestinationLimits::owner(domain, 4);
        ASSERT_LT(owner, 4u);
        EXPECT_EQ(owner, DestinationLimits::owner(domain, 4));
        seen[owner] = true;
    }
    for (bool s : seen) EXPECT_TRUE(s);
}

}  // namespace
}  // namespace rp::smtp
