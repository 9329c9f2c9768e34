// core/clock.h: time, real or simulated.
//
// Core threads read time through a Clock so that tests/sim can drive it. Monotonic time is
// for timeouts and latency; wall time is for dates written into mail and records.
#pragma once

#include <cstdint>

namespace rp {

class Clock {
public:
    virtual ~Clock() = default;
    virtual std::uint64_t monotonic_ns() const = 0;
    virtual std::int64_t wall_seconds() const = 0;  // Unix time.
    std::uint64_t monotonic_ms() const { return monotonic_ns() / 1'000'000u; }
};

class RealClock final : public Clock {
public:
    std::uint64_t monotonic_ns() const override;
    std::int64_t wall_seconds() const override;
    static RealClock& instance();
};

class SimClock final : public Clock {
public:
    std::uint64_t monotonic_ns() const override { return now_ns_; }
    std::int64_t wall_seconds() const override {
        return wall_base_seconds_ + static_cast<std::int64_t>(now_ns_ / 1'000'000'000u);
    }
    void advance_ns(std::uint64_t delta_ns) { now_ns_ += delta_ns; }
    void set_wall_base(std::int64_t seconds) { wall_base_seconds_ = seconds; }

private:
    std::uint64_t now_ns_ = 0;
    std::int64_t wall_base_seconds_ = 1'700'000'000;
};

}  // namespace rp
