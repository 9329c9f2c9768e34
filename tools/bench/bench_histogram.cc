// tools/bench/bench_histogram.cc: log-linear buckets and percentiles.
#include "tools/bench/bench_histogram.h"

#include <bit>
#include <cmath>

#include "core/assert.h"

namespace rp::bench {

unsigned Histogram::bucket_index(std::uint64_t value) {
    if (value < exact_count) return static_cast<unsigned>(value);
    const unsigned high_bit = 63u - static_cast<unsigned>(std::countl_zero(value));
    const unsigned group = high_bit - sub_bits + 1;  // >= 1: value >> group is in [64, 128).
    const std::uint64_t mantissa = value >> group;
    RP_ASSERT(mantissa >= half_count);
    RP_ASSERT(mantissa < exact_count);
    const unsigned index =
        static_cast<unsigned>(exact_count + (group - 1) * half_count + (mantissa - half_count));
    RP_ASSERT(index < bucket_count);
    return index;
}

std::uint64_t Histogram::bucket_low(unsigned index) {
    RP_ASSERT(index < bucket_count);
    if (index < exact_count) return index;
    const unsigned group = 1 + static_cast<unsigned>((index - exact_count) / half_count);
    const std::uint64_t mantissa = half_count + (index - exact_count) % half_count;
    return mantissa << group;
}

std::uint64_t Histogram::bucket_high(unsigned index) {
    RP_ASSERT(index < bucket_count);
    if (index < exact_count) return index;
    const unsigned group = 1 + static_cast<unsigned>((index - exact_count) / half_count);
    // bounds: the top bucket's high is 2^64 - 1; the shift stays below 64 bits.
    return bucket_low(index) + ((std::uint64_t{1} << group) - 1);
}

void Histogram::record(std::uint64_t value) {
    buckets_[bucket_index(value)]++;
    count_++;
    sum_ += static_cast<long double>(value);
    if (value < min_) min_ = value;
    if (value > max_) max_ = value;
}

void Histogram::merge(const Histogram& other) {
    for (unsigned i = 0; i < bucket_count; i++) buckets_[i] += other.buckets_[i];
    count_ += other.count_;
    sum_ += other.sum_;
    if (other.min_ < min_) min_ = other.min_;
    if (other.max_ > max_) max_ = other.max_;
}

void Histogram::reset() { *this = Histogram{}; }

double Histogram::mean() const {
    if (count_ == 0) return 0;
    return static_cast<double>(sum_ / static_cast<long double>(count_));
}

std::uint64_t Histogram::percentile(double percent) const {
    RP_ASSERT(percent > 0);
    RP_ASSERT(percent <= 100);
    if (count_ == 0) return 0;
    // The rank of the value we want, 1-based: the smallest value with at least `percent` of
    // the values at or below it.
    auto rank = static_cast<std::uint64_t>(std::ceil(percent / 100.0 * static_cast<double>(count_)));
    if (rank < 1) rank = 1;
    if (rank > count_) rank = count_;
    std::uint64_t seen = 0;
    for (unsigned i = 0; i < bucket_count; i++) {
        seen += buckets_[i];
        if (seen >= rank) {
            const std::uint64_t low = bucket_low(i);
            const std::uint64_t middle = low + (bucket_high(i) - low) / 2;
            if (middle < min_) return min_;
            if (middle > max_) return max_;
            return middle;
        }
    }
    RP_ASSERT(false);  // count_ is the sum of the buckets, so the loop returns.
    return max_;
}

}  // namespace rp::bench
