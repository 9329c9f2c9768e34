// protocols/smtp/destination_limits.h: the per-destination connection limit over all shards.
//
// Owns: the connection counts of the destination domains one shard owns (a domain belongs to
//   shard hash(domain) % shards), and the shards waiting for a connection to one of them.
// Core: the owning shard only; pure (no I/O). Other shards ask by cross-core message
//   (relay_agent.cc): acquire before opening a connection, release after closing it.
// Invariants: per domain, count <= limit and count == sum of held[shard]; a waiting shard
//   gets the next released connection (first come, first served).
// Fairness: when a shard must wait, the shard holding the most connections to that domain
//   (more than the waiter) is asked to yield one after its current message, so that a busy
//   shard cannot keep every connection while another shard's mail for the domain waits;
//   and a connection idle for a while (200 ms) closes when another shard waits.
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <unordered_map>
#include <vector>

namespace rp::smtp {

struct LimitAction {
    enum class Kind : std::uint8_t { grant, yield };
    Kind kind;
    unsigned shard;  // Who gets the grant, or who is asked to yield a connection.
};

class DestinationLimits {
public:
    DestinationLimits(unsigned shard_count, unsigned limit) : shard_count_(shard_count), limit_(limit) {}

    // Shard `from` wants one more connection to `domain`: a grant now, or it waits (and
    // perhaps a yield request to the biggest holder).
    std::vector<LimitAction> acquire(unsigned from, const std::string& domain);
    // Shard `from` closed a connection to `domain`: perhaps a grant to the first waiter.
    // A release that matches no held connection is ignored (returns nothing).
    std::vector<LimitAction> release(unsigned from, const std::string& domain);

    unsigned count(const std::string& domain) const;
    // True when another shard than `holder` waits for a connection to `domain`: the
    // holder's connection that has been idle a while should close rather than wait.
    bool contended(unsigned holder, const std::string& domain) const;
    std::size_t domains() const { return counters_.size(); }
    // The shard that owns `domain`'s counter.
    static unsigned owner(const std::string& domain, unsigned shard_count);

private:
    struct Counter {
        unsigned count = 0;
        std::vector<unsigned> held;     // Per shard.
        std::vector<unsigned> yields;   // Per shard: yields asked for, not released yet.
        std::deque<unsigned> waiters;   // Shards, one entry per connection asked for.
    };

    unsigned shard_count_;
    unsigned limit_;
    std::unordered_map<std::string, Counter> counters_;
};

}  // namespace rp::smtp
