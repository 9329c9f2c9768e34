// tools/bench/bench_histogram.h: a log-linear latency histogram, in the spirit of HdrHistogram.
//
// Owns: a fixed array of counters, one per bucket. Values below 128 get a bucket each; above
//   that, every power-of-two range [2^h, 2^(h+1)) is split into 64 equal buckets, so a
//   reported percentile is within 1/64 (1.6 %) of the true value, at any magnitude.
// Core: one histogram per bench thread and step; threads merge theirs at the end.
// Invariants: count() is the sum of all buckets; min() <= every percentile <= max().
#pragma once

#include <array>
#include <cstdint>

namespace rp::bench {

class Histogram {
public:
    static constexpr unsigned sub_bits = 7;                    // 128 exact values.
    static constexpr std::uint64_t exact_count = 1u << sub_bits;
    static constexpr std::uint64_t half_count = exact_count / 2;  // Buckets per octave.
    // bounds: the top octave is h = 63, group 57; the index below stays < bucket_count.
    static constexpr unsigned bucket_count = exact_count + (64 - sub_bits) * half_count;

    void record(std::uint64_t value);
    void merge(const Histogram& other);
    void reset();

    std::uint64_t count() const { return count_; }
    std::uint64_t min() const { return count_ == 0 ? 0 : min_; }
    std::uint64_t max() const { return max_; }
    double mean() const;
    // The value at or below which `percent` of the recorded values lie (0 < percent <= 100),
    // reported as the middle of its bucket and clamped to [min(), max()]. 0 when empty.
    std::uint64_t percentile(double percent) const;

    // Exposed for tests: the bucket of a value and the lowest value in a bucket.
    static unsigned bucket_index(std::uint64_t value);
    static std::uint64_t bucket_low(unsigned index);
    static std::uint64_t bucket_high(unsigned index);  // Inclusive.

private:
    std::array<std::uint64_t, bucket_count> buckets_{};
    std::uint64_t count_ = 0;
    std::uint64_t min_ = UINT64_MAX;
    std::uint64_t max_ = 0;
    long double sum_ = 0;
};

}  // namespace rp::bench
