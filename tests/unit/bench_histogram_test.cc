// tests/unit/bench_histogram_test.cc: ringpost-bench's latency histogram and percentiles.
#include "tools/bench/bench_histogram.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

namespace rp::bench {
namespace {

// Proves every value lands in a bucket whose bounds contain it, that buckets tile the whole
// uint64 range without gaps, and that a bucket is at most 1/64 of its values wide.
TEST(BenchHistogram, BucketsTileTheRange) {
    for (unsigned i = 0; i + 1 < Histogram::bucket_count; i++) {
        ASSERT_EQ(Histogram::bucket_high(i) + 1, Histogram::bucket_low(i + 1)) << i;
        ASSERT_LE(Histogram::bucket_high(i) - Histogram::bucket_low(i),
                  std::max<std::uint64_t>(Histogram::bucket_low(i) / 64, 0))
            << i;
    }
    EXPECT_EQ(Histogram::bucket_low(0), 0u);
    EXPECT_EQ(Histogram::bucket_high(Histogram::bucket_count - 1), UINT64_MAX);
    std::mt19937_64 random(7);
    for (int i = 0; i < 100000; i++) {
        const std::uint64_t value = random() >> (random() % 64);
        const unsigned index = Histogram::bucket_index(value);
        ASSERT_LE(Histogram::bucket_low(index), value);
        ASSERT_GE(Histogram::bucket_high(index), value);
    }
    EXPECT_EQ(Histogram::bucket_index(UINT64_MAX), Histogram::bucket_count - 1);
}

// Proves small values (below 128 ns) are kept exactly.
TEST(BenchHistogram, SmallValuesAreExact) {
    Histogram h;
    for (std::uint64_t v = 1; v <= 100; v++) h.record(v);
    EXPECT_EQ(h.count(), 100u);
    EXPECT_EQ(h.min(), 1u);
    EXPECT_EQ(h.max(), 100u);
    EXPECT_EQ(h.percentile(50), 50u);
    EXPECT_EQ(h.percentile(90), 90u);
    EXPECT_EQ(h.percentile(99), 99u);
    EXPECT_EQ(h.percentile(100), 100u);
    EXPECT_DOUBLE_EQ(h.mean(), 50.5);
}

// Proves percentiles of a wide random distribution are within the bucket precision of the
// exact order statistics, and are ordered.
TEST(BenchHistogram, PercentilesMatchSortedValues) {
    std::mt19937_64 random(42);
    std::lognormal_distribution<double> latency(13.0, 1.0);  // Around 0.4 ms, in ns.
    std::vector<std::uint64_t> values;
    Histogram h;
    for (int i = 0; i < 200000; i++) {
        const auto v = static_cast<std::uint64_t>(latency(random));
        values.push_back(v);
        h.record(v);
    }
    std::sort(values.begin(), values.end());
    std::uint64_t previous = 0;
    for (const double p : {1.0, 10.0, 50.0, 90.0, 99.0, 99.9, 99.99, 100.0}) {
        const auto rank = static_cast<std::size_t>(std::ceil(p / 100 * values.size()));
        const double exact = static_cast<double>(values[rank - 1]);
        const auto got = h.percentile(p);
        EXPECT_NEAR(static_cast<double>(got), exact, exact / 64 + 1) << "p" << p;
        EXPECT_GE(got, previous) << "p" << p;
        previous = got;
    }
    EXPECT_EQ(h.min(), values.front());
    EXPECT_EQ(h.max(), values.back());
    EXPECT_EQ(h.percentile(100), values.back());
}

// Proves merging per-thread histograms equals recording everything in one.
TEST(BenchHistogram, MergeEqualsOneHistogram) {
    Histogram a;
    Histogram b;
    Histogram all;
    for (std::uint64_t v = 0; v < 50000; v += 7) {
        (v % 2 ? a : b).record(v * 131);
        all.record(v * 131);
    }
    a.merge(b);
    EXPECT_EQ(a.count(), all.count());
    EXPECT_EQ(a.min(), all.min());
    EXPECT_EQ(a.max(), all.max());
    EXPECT_DOUBLE_EQ(a.mean(), all.mean());
    for (const double p : {50.0, 90.0, 99.0, 99.9}) EXPECT_EQ(a.percentile(p), all.percentile(p));
}

// Proves an empty histogram reports zeros, and a single value is every percentile.
TEST(BenchHistogram, EmptyAndSingle) {
    Histogram h;
    EXPECT_EQ(h.count(), 0u);
    EXPECT_EQ(h.percentile(99), 0u);
    EXPECT_EQ(h.min(), 0u);
    EXPECT_EQ(h.mean(), 0.0);
    h.record(1'234'567);
    for (const double p : {0.1, 50.0, 99.9, 100.0}) EXPECT_EQ(h.percentile(p), 1'234'567u);
    h.reset();
    EXPECT_EQ(h.count(), 0u);
}

}  // namespace
}  // namespace rp::bench
