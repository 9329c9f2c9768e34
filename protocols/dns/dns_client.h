// protocols/dns/dns_client.h: DNS queries over the shard's ring (UDP, TCP on truncation).
//
// Owns: a fixed table of query slots, each with its own socket per attempt (a fresh source
//   port per attempt, RFC 5452 9.2), its request bytes and receive buffer, and a timer.
// Core: the shard's thread only. Sockets are created non-blocking; connect() on a UDP socket
//   only sets the peer and does not block; every send, receive and TCP connect goes through
//   the ring.
// Rules: attempt i goes to resolver i % resolver_count, `attempts` rounds over all
//   resolvers; each attempt waits timeout_ms. A datagram with the wrong id or question is
//   ignored (the receive re-arms). TC=1 -> the same question over TCP to that resolver.
// Errors: Status::timeout after the last attempt, Status::full when every slot is busy,
//   Status::invalid for a name that cannot be asked; `done` always runs from a later
//   callback, never inside query().
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "core/reactor.h"
#include "protocols/dns/dns_codec.h"

namespace rp::dns {

struct DnsServerAddress {
    sockaddr_storage address{};
    socklen_t bytes = 0;
};

// Parses "127.0.0.1:53" or "[::1]:53".
[[nodiscard]] Result<DnsServerAddress> dns_server_parse(std::string_view text);

// The `nameserver` lines of resolv.conf(5) text as "address:53" / "[v6]:53", in order, at
// most 3 (MAXNS) like the C library. Link-local addresses with a zone (fe80::1%eth0) are
// skipped: the ring's sockets carry no scope here.
std::vector<std::string> resolv_conf_nameservers(std::string_view text);

struct DnsClientOptions {
    std::vector<DnsServerAddress> resolvers;
    std::uint64_t timeout_ms = 5'000;
    unsigned attempts = 3;
    unsigned queries_max = 256;  // In flight at once.
};

struct DnsClientStats {
    std::uint64_t queries = 0, answers = 0, timeouts = 0, ignored = 0, tcp = 0, failures = 0;
};

class DnsClient final : public DnsTransport {
public:
    DnsClient(Reactor& reactor, DnsClientOptions options, std::uint64_t seed);
    // Drops pending callbacks; in-flight operations are cancelled and their completions
    // must still be reaped: destroy only after the reactor stops dispatching, or when
    // idle() (the shard does this at its end).
    ~DnsClient() override;
    void query(const DnsQuestion& question, Done done) override;
    bool idle() const;
    const DnsClientStats& stats() const { return stats_; }

private:
    class Slot;
    class Failures;
    void release(Slot& slot);

    Reactor& reactor_;
    DnsClientOptions options_;
    std::mt19937_64 random_;
    std::vector<std::unique_ptr<Slot>> slots_;
    std::vector<Slot*> free_;
    std::unique_ptr<Failures> failures_;
    DnsClientStats stats_;
    friend class Slot;
};

}  // namespace rp::dns
