// protocols/smtp/destination_limits.cc: per-destination connection counts of one shard.
#include "protocols/smtp/destination_limits.h"

#include <algorithm>
#include <functional>

#include "core/assert.h"

namespace rp::smtp {

unsigned DestinationLimits::owner(const std::string& domain, unsigned shard_count) {
    RP_ASSERT(shard_count > 0);
    // std::hash of a string is the same on every thread of one process.
    return static_cast<unsigned>(std::hash<std::string>{}(domain) % shard_count);
}

std::vector<LimitAction> DestinationLimits::acquire(unsigned from, const std::string& domain) {
    RP_ASSERT(from < shard_count_);
    Counter& c = counters_[domain];
    if (c.held.empty()) {
        c.held.assign(shard_count_, 0);
        c.yields.assign(shard_count_, 0);
    }
    if (c.count < limit_) {
        ++c.count;
        ++c.held[from];
        return {{LimitAction::Kind::grant, from}};
    }
    // Ask for a yield only while `from` would still hold fewer than the biggest holder once
    // the yields already asked for have moved to the waiters: no more than fair shares.
    unsigned pending = 0;
    for (const unsigned w : c.waiters) pending += w == from ? 1 : 0;
    c.waiters.push_back(from);
    unsigned top = from;
    unsigned top_keeps = 0;
    for (unsigned s = 0; s < shard_count_; ++s) {
        const unsigned keeps = c.held[s] - std::min(c.held[s], c.yields[s]);
        if (s != from && keeps > top_keeps) {
            top = s;
            top_keeps = keeps;
        }
    }
    if (top == from || top_keeps <= c.held[from] + pending) return {};
    ++c.yields[top];
    return {{LimitAction::Kind::yield, top}};
}

std::vector<LimitAction> DestinationLimits::release(unsigned from, const std::string& domain) {
    RP_ASSERT(from < shard_count_);
    auto it = counters_.find(domain);
    if (it == counters_.end() || it->second.held[from] == 0) return {};
    Counter& c = it->second;
    RP_ASSERT(c.count > 0);
    --c.count;
    --c.held[from];
    if (c.yields[from] > 0) --c.yields[from];  // The yield asked for (or as good as it).
    std::vector<LimitAction> out;
    if (!c.waiters.empty()) {
        const unsigned next = c.waiters.front();
        c.waiters.pop_front();
        ++c.count;
        ++c.held[next];
        out.push_back({LimitAction::Kind::grant, next});
    }
    RP_ASSERT(c.count <= limit_);
    if (c.count == 0 && c.waiters.empty()) counters_.erase(it);
    return out;
}

bool DestinationLimits::contended(unsigned holder, const std::string& domain) const {
    RP_ASSERT(holder < shard_count_);
    auto it = counters_.find(domain);
    if (it == counters_.end()) return false;
    const Counter& c = it->second;
    return std::any_of(c.waiters.begin(), c.waiters.end(),
                       [&](unsigned w) { return w != holder; });
}

unsigned DestinationLimits::count(const std::string& domain) const {
    auto it = counters_.find(domain);
    return it == counters_.end() ? 0 : it->second.count;
}

}  // namespace rp::smtp
