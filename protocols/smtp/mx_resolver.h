// protocols/smtp/mx_resolver.h: where mail for a domain goes (RFC 5321 5.1, RFC 7505).
//
// Owns: MxLookup, the pure resolution logic of one domain (which questions to ask, what
//   the answers mean); DnsCache, a bounded TTL cache with negative entries (RFC 2308); and
//   MxResolver, which drives lookups through the cache and a DnsTransport (the shard's
//   DnsClient, or a fake in tests).
// Core: one shard; nothing shared.
// Rules: MX sorted by preference, random order within one preference; no MX -> the domain
//   itself is the MX (implicit MX, RFC 5321 5.1); a "." MX -> permanent (RFC 7505 3);
//   NXDOMAIN -> permanent; SERVFAIL, REFUSED, a timeout -> temporary; an MX that is us (our
//   hostname or one of our addresses) drops it and every MX of equal or worse preference
//   (RFC 5321 5.1); nothing left -> a mail loop, permanent.
// Errors: a failed lookup is an MxResult with `temporary` or `permanent` and an SMTP-like
//   reply text ("550 5.1.2 ...", "451 4.4.3 ...") for the log and the DSN.
#pragma once

#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "protocols/dns/dns_codec.h"

namespace rp::smtp {

using dns::DnsTransport;

struct MxTarget {
    std::string host;
    std::uint16_t preference = 0;
    std::vector<dns::DnsAddress> addresses;  // IPv4 first, then IPv6.
};

enum class MxOutcome : std::uint8_t { pending, ready, temporary, permanent };

struct MxResult {
    MxOutcome outcome = MxOutcome::pending;
    std::vector<MxTarget> targets;  // ready: in the order to try.
    std::string reply;              // temporary / permanent: "550 5.1.2 ..." etc.
};

// Who we are, for loop detection.
struct MxSelf {
    std::vector<std::string> hostnames;          // Lowercased.
    std::vector<dns::DnsAddress> addresses;      // Our listening addresses.
};

inline constexpr std::size_t mx_hosts_max = 10;  // MX hosts we resolve per domain.

class MxLookup {
public:
    // `domain` is normalised (dns_name_normalize). `seed` shuffles equal preferences.
    MxLookup(std::string domain, const MxSelf& self, std::uint64_t seed);

    // The questions still to ask. Ask each once, then answer() it.
    std::vector<dns::DnsQuestion> take_questions();
    // An answer, or the Status of a failed query (timeout, full, corrupt).
    void answer(const dns::DnsQuestion& question, const Result<dns::DnsAnswer>& answer);
    const MxResult& result() const { return result_; }
    const std::string& domain() const { return domain_; }

private:
    struct Host {
        MxTarget target;
        bool a_done = false, aaaa_done = false;
        bool temporary = false;  // One of its queries failed temporarily.
        std::vector<dns::DnsAddress> v6;
    };
    void mx_answered(const Result<dns::DnsAnswer>& answer);
    void address_answered(const dns::DnsQuestion& question, const Result<dns::DnsAnswer>& answer);
    void finish_addresses();
    bool is_self_name(const std::string& host) const;
    bool is_self_address(const dns::DnsAddress& address) const;
    void fail(MxOutcome outcome, std::string reply);

    std::string domain_;
    const MxSelf& self_;
    std::mt19937_64 random_;
    bool implicit_ = false;
    std::vector<Host> hosts_;
    std::vector<dns::DnsQuestion> questions_;
    MxResult result_;
};

// A bounded cache of answers, keyed by question. Failed queries are not cached.
class DnsCache {
public:
    explicit DnsCache(std::size_t entries_max = 4096) : entries_max_(entries_max) {}
    // The answer if present and not expired at `now_s`.
    const dns::DnsAnswer* find(const dns::DnsQuestion& question, std::int64_t now_s);
    // Stores `answer` until now_s + answer.ttl_s (nothing for ttl 0, SERVFAIL or TC).
    void put(const dns::DnsQuestion& question, const dns::DnsAnswer& answer, std::int64_t now_s);
    std::size_t size() const { return map_.size(); }

private:
    struct Entry {
        dns::DnsAnswer answer;
        std::int64_t expires_s = 0;
        std::list<std::string>::iterator age;
    };
    static std::string key(const dns::DnsQuestion& question);
    std::size_t entries_max_;
    std::unordered_map<std::string, Entry> map_;
    std::list<std::string> ages_;  // Oldest insert first: evicted when full.
};

// Resolves domains: cache first, then the transport; several lookups at once.
class MxResolver {
public:
    using Done = std::function<void(const MxResult&)>;
    MxResolver(DnsTransport& transport, MxSelf self, std::function<std::int64_t()> now_s,
               std::uint64_t seed);
    ~MxResolver();
    // `done` runs exactly once, possibly inside this call (cache hit or a bad name).
    void resolve(const std::string& domain, Done done);
    DnsCache& cache() { return cache_; }
    std::size_t lookups_in_flight() const { return lookups_.size(); }

private:
    struct Lookup;
    void answered(std::uint64_t lookup_id, const dns::DnsQuestion& question,
                  const Result<dns::DnsAnswer>& answer);

    DnsTransport& transport_;
    MxSelf self_;
    std::function<std::int64_t()> now_s_;
    std::mt19937_64 random_;
    DnsCache cache_;
    std::uint64_t next_id_ = 1;
    std::unordered_map<std::uint64_t, std::unique_ptr<Lookup>> lookups_;
};

}  // namespace rp::smtp
