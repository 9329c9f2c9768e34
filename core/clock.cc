#include "core/clock.h"

#include <ctime>

namespace rp {

std::uint64_t RealClock::monotonic_ns() const {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000u +
           static_cast<std::uint64_t>(ts.tv_nsec);
}

std::int64_t RealClock::wall_seconds() const {
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    return static_cast<std::int64_t>(ts.tv_sec);
}

RealClock& RealClock::instance() {
    static RealClock clock;
    return clock;
}

}  // namespace rp
