// protocols/dns/dns_codec.h: DNS queries and answers as bytes (ldns), for MX resolution.
//
// Owns: nothing; pure functions over byte spans. No I/O, no clock.
// Core: any.
// Invariants: names are lowercased ASCII without the trailing dot ("" is the root, the null
//   MX target of RFC 7505). An answer is accepted only when it is a response (QR) to exactly
//   the question and id we sent; anything else is Status::corrupt (a stray or spoofed
//   datagram), never a crash.
// Errors: dns_query_build gives Status::invalid for a name ldns refuses (too long, bad label).
//   dns_answer_parse gives Status::corrupt for garbage or a mismatch.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"

namespace rp::dns {

enum class DnsType : std::uint16_t { a = 1, mx = 15, aaaa = 28 };

struct DnsQuestion {
    std::string name;  // Lowercased, no trailing dot.
    DnsType type = DnsType::a;
    bool operator==(const DnsQuestion&) const = default;
};

enum class DnsRcode : std::uint8_t { noerror, nxdomain, servfail, refused, other };

struct DnsMx {
    std::uint16_t preference = 0;
    std::string host;  // Lowercased, no trailing dot; "" for "." (null MX).
};

struct DnsAddress {
    int family = 0;         // AF_INET or AF_INET6.
    std::uint8_t bytes[16] = {};
    bool operator==(const DnsAddress&) const = default;
    std::string text() const;
};

struct DnsAnswer {
    std::uint16_t id = 0;
    DnsRcode rcode = DnsRcode::other;
    bool truncated = false;       // TC: the UDP answer was cut; ask again over TCP.
    std::uint32_t ttl_s = 0;      // How long this answer may be cached (negative: SOA min).
    std::vector<DnsMx> mx;        // For MX questions (CNAME chain followed).
    std::vector<DnsAddress> addresses;  // For A / AAAA questions.
};

inline constexpr std::uint32_t dns_ttl_max_s = 86'400;          // Cap for positive answers.
inline constexpr std::uint32_t dns_negative_ttl_max_s = 3'600;  // RFC 2308 5: cap negatives.
inline constexpr std::uint32_t dns_negative_ttl_default_s = 300;
inline constexpr std::size_t dns_answer_records_max = 64;       // MX or addresses kept.

// Normalises a domain name: lowercase, no trailing dot. Status::invalid for an empty label,
// a label over 63 bytes, a name over 253 bytes, or bytes other than letters, digits, '-', '_'.
[[nodiscard]] Result<std::string> dns_name_normalize(std::string_view name);

// A recursive query (RD) for `question` with id `id`, in wire format.
[[nodiscard]] Result<std::vector<std::uint8_t>> dns_query_build(const DnsQuestion& question,
                                                                std::uint16_t id);

// Parses a response to `question` with id `id`.
[[nodiscard]] Result<DnsAnswer> dns_answer_parse(std::span<const std::uint8_t> wire,
                                                 const DnsQuestion& question, std::uint16_t id);

std::string_view dns_type_name(DnsType type);

// Sends one question and calls back with its answer (the shard's DnsClient, or a fake).
class DnsTransport {
public:
    using Done = std::function<void(const Result<DnsAnswer>&)>;
    virtual ~DnsTransport() = default;
    // `done` runs later (never inside this call), exactly once, unless the transport is
    // destroyed first (then never).
    virtual void query(const DnsQuestion& question, Done done) = 0;
};

}  // namespace rp::dns
