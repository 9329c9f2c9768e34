// tests/unit/dns_codec_test.cc: the DNS codec (ldns), MX resolution logic and the cache.
#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "protocols/dns/dns_codec.h"
#include "protocols/smtp/mx_resolver.h"
#include "tests/unit/dns_test_util.h"

namespace rp::dns {
namespace {

using test::AnswerSpec;
using test::answer_wire;

// A query round-trips through ldns: right id, RD set, one question of the right type.
TEST(DnsCodec, QueryHasIdAndQuestion) {
    auto wire = dns_query_build({"Example.TEST.", DnsType::mx}, 0x1234);
    ASSERT_TRUE(wire.ok());
    EXPECT_EQ(test::query_id(*wire), 0x1234);
    ldns_pkt* p = nullptr;
    ASSERT_EQ(ldns_wire2pkt(&p, wire->data(), wire->size()), LDNS_STATUS_OK);
    EXPECT_TRUE(ldns_pkt_rd(p));
    EXPECT_FALSE(ldns_pkt_qr(p));
    ASSERT_EQ(ldns_rr_list_rr_count(ldns_pkt_question(p)), 1u);
    EXPECT_EQ(ldns_rr_get_type(ldns_rr_list_rr(ldns_pkt_question(p), 0)), LDNS_RR_TYPE_MX);
    ldns_pkt_free(p);
}

// Names are normalised and bad ones refused.
TEST(DnsCodec, NameNormalize) {
    EXPECT_EQ(*dns_name_normalize("MX.Example.Test."), "mx.example.test");
    EXPECT_FALSE(dns_name_normalize("").ok());
    EXPECT_FALSE(dns_name_normalize("a..b").ok());
    EXPECT_FALSE(dns_name_normalize("a b.test").ok());
    EXPECT_FALSE(dns_name_normalize(std::string(64, 'a') + ".test").ok());
    EXPECT_FALSE(dns_name_normalize(std::string(254, 'a')).ok());
    EXPECT_FALSE(dns_query_build({"bad name", DnsType::a}, 1).ok());
}

// MX answers parse with preference and lowercased host; TTL is the smallest one.
TEST(DnsCodec, ParsesMx) {
    DnsQuestion q{"example.test", DnsType::mx};
    AnswerSpec spec;
    spec.answer = {"example.test. 300 IN MX 10 MX1.example.test.",
                   "example.test. 120 IN MX 20 mx2.example.test."};
    auto answer = dns_answer_parse(answer_wire(q, 7, spec), q, 7);
    ASSERT_TRUE(answer.ok());
    EXPECT_EQ(answer->rcode, DnsRcode::noerror);
    ASSERT_EQ(answer->mx.size(), 2u);
    EXPECT_EQ(answer->mx[0].preference, 10);
    EXPECT_EQ(answer->mx[0].host, "mx1.example.test");
    EXPECT_EQ(answer->ttl_s, 120u);
}

// A and AAAA through a CNAME chain; records of other owners are ignored.
TEST(DnsCodec, ParsesAddressesThroughCname) {
    DnsQuestion q{"mx.example.test", DnsType::a};
    AnswerSpec spec;
    spec.answer = {"mx.example.test. 300 IN CNAME real.example.test.",
                   "real.example.test. 300 IN A 127.0.0.2",
                   "other.example.test. 300 IN A 127.0.0.9"};
    auto answer = dns_answer_parse(answer_wire(q, 9, spec), q, 9);
    ASSERT_TRUE(answer.ok());
    ASSERT_EQ(answer->addresses.size(), 1u);
    EXPECT_EQ(answer->addresses[0].text(), "127.0.0.2");
    DnsQuestion q6{"mx.example.test", DnsType::aaaa};
    spec.answer = {"mx.example.test. 300 IN AAAA ::1"};
    auto answer6 = dns_answer_parse(answer_wire(q6, 9, spec), q6, 9);
    ASSERT_TRUE(answer6.ok());
    ASSERT_EQ(answer6->addresses.size(), 1u);
    EXPECT_EQ(answer6->addresses[0].family, AF_INET6);
}

// NXDOMAIN takes its negative TTL from the SOA (RFC 2308): min(ttl, minimum).
TEST(DnsCodec, NxdomainNegativeTtl) {
    DnsQuestion q{"nope.test", DnsType::mx};
    AnswerSpec spec;
    spec.rcode = LDNS_RCODE_NXDOMAIN;
    spec.authority = {"test. 600 IN SOA ns.test. host.test. 1 3600 600 86400 60"};
    auto answer = dns_answer_parse(answer_wire(q, 1, spec), q, 1);
    ASSERT_TRUE(answer.ok());
    EXPECT_EQ(answer->rcode, DnsRcode::nxdomain);
    EXPECT_EQ(answer->ttl_s, 60u);
    spec.authority.clear();
    auto bare = dns_answer_parse(answer_wire(q, 1, spec), q, 1);
    ASSERT_TRUE(bare.ok());
    EXPECT_EQ(bare->ttl_s, dns_negative_ttl_default_s);
}

// A reply to another id or question, or a query, is refused as corrupt.
TEST(DnsCodec, RefusesMismatch) {
    DnsQuestion q{"example.test", DnsType::mx};
    AnswerSpec spec;
    const auto wire = answer_wire(q, 5, spec);
    EXPECT_EQ(dns_answer_parse(wire, q, 6).status(), Status::corrupt);
    EXPECT_EQ(dns_answer_parse(wire, {"other.test", DnsType::mx}, 5).status(), Status::corrupt);
    EXPECT_EQ(dns_answer_parse(wire, {"example.test", DnsType::a}, 5).status(), Status::corrupt);
    auto query = dns_query_build(q, 5);
    EXPECT_EQ(dns_answer_parse(*query, q, 5).status(), Status::corrupt);
}

// Truncation: every prefix of a valid answer is refused without a crash, the whole parses.
TEST(DnsCodec, TruncatedPrefixes) {
    DnsQuestion q{"example.test", DnsType::mx};
    AnswerSpec spec;
    spec.answer = {"example.test. 300 IN MX 10 mx1.example.test."};
    const auto wire = answer_wire(q, 3, spec);
    for (std::size_t n = 0; n < wire.size(); ++n) {
        auto answer = dns_answer_parse(std::span(wire.data(), n), q, 3);
        if (answer.ok()) {
            EXPECT_TRUE(answer->mx.empty());  // Cut at a record boundary.
        }
    }
    EXPECT_TRUE(dns_answer_parse(wire, q, 3).ok());
}

// Garbage: random bytes never crash and never pass as an answer to our question.
TEST(DnsCodec, Garbage) {
    DnsQuestion q{"example.test", DnsType::mx};
    std::uint64_t state = 12345;
    for (int i = 0; i < 2000; ++i) {
        std::vector<std::uint8_t> bytes(static_cast<std::size_t>(i % 300));
        for (auto& b : bytes) {
            state = state * 6364136223846793005ull + 1442695040888963407ull;
            b = static_cast<std::uint8_t>(state >> 56);
        }
        EXPECT_FALSE(dns_answer_parse(bytes, q, 3).ok());
    }
}

// The TC bit is reported.
TEST(DnsCodec, Truncated) {
    DnsQuestion q{"example.test", DnsType::mx};
    AnswerSpec spec;
    spec.truncated = true;
    auto answer = dns_answer_parse(answer_wire(q, 3, spec), q, 3);
    ASSERT_TRUE(answer.ok());
    EXPECT_TRUE(answer->truncated);
}

}  // namespace
}  // namespace rp::dns

namespace rp::smtp {
namespace {

using dns::DnsAnswer;
using dns::DnsQuestion;
using dns::DnsRcode;
using dns::DnsType;

dns::DnsAddress v4(const char* text) {
    dns::DnsAddress a;
    a.family = AF_INET;
    inet_pton(AF_INET, text, a.bytes);
    return a;
}

DnsAnswer mx_answer(std::vector<dns::DnsMx> mx) {
    DnsAnswer a;
    a.rcode = DnsRcode::noerror;
    a.ttl_s = 300;
    a.mx = std::move(mx);
    return a;
}

DnsAnswer addr_answer(std::vector<dns::DnsAddress> addresses) {
    DnsAnswer a;
    a.rcode = DnsRcode::noerror;
    a.ttl_s = 300;
    a.addresses = std::move(addresses);
    return a;
}

DnsAnswer rcode_answer(DnsRcode rcode) {
    DnsAnswer a;
    a.rcode = rcode;
    a.ttl_s = 60;
    return a;
}

// A zone for the fake resolver: question -> answer (or a failure status).
struct Zone {
    std::map<std::pair<std::string, DnsType>, Result<DnsAnswer>> records;
    Result<DnsAnswer> lookup(const DnsQuestion& q) const {
        auto it = records.find({q.name, q.type});
        if (it != records.end()) return it->second;
        DnsAnswer empty;
        empty.rcode = DnsRcode::noerror;
        empty.ttl_s = 300;
        return empty;
    }
};

MxResult run(MxLookup& lookup, const Zone& zone) {
    for (int round = 0; round < 4; ++round) {
        for (const auto& q : lookup.take_questions()) lookup.answer(q, zone.lookup(q));
    }
    return lookup.result();
}

// MX sorted by preference; A records per host; IPv4 before IPv6.
TEST(MxLookup, SortsByPreference) {
    Zone zone;
    zone.records.emplace(std::pair{std::string("d.test"), DnsType::mx},
                         mx_answer({{20, "b.d.test"}, {10, "a.d.test"}}));
    zone.records.emplace(std::pair{std::string("a.d.test"), DnsType::a}, addr_answer({v4("127.0.0.2")}));
    zone.records.emplace(std::pair{std::string("b.d.test"), DnsType::a}, addr_answer({v4("127.0.0.3")}));
    MxSelf self;
    MxLookup lookup("d.test", self, 1);
    MxResult r = run(lookup, zone);
    ASSERT_EQ(r.outcome, MxOutcome::ready);
    ASSERT_EQ(r.targets.size(), 2u);
    EXPECT_EQ(r.targets[0].host, "a.d.test");
    EXPECT_EQ(r.targets[0].addresses[0].text(), "127.0.0.2");
    EXPECT_EQ(r.targets[1].host, "b.d.test");
}

// Equal preferences come out in both orders over different seeds (random within a
// preference), and never before a better preference.
TEST(MxLookup, RandomWithinPreference) {
    Zone zone;
    zone.records.emplace(std::pair{std::string("d.test"), DnsType::mx},
                         mx_answer({{10, "a.d.test"}, {10, "b.d.test"}, {5, "c.d.test"}}));
    for (const char* h : {"a.d.test", "b.d.test", "c.d.test"}) {
        zone.records.emplace(std::pair{std::string(h), DnsType::a}, addr_answer({v4("127.0.0.2")}));
    }
    MxSelf self;
    std::set<std::string> firsts;
    for (std::uint64_t seed = 0; seed < 64; ++seed) {
        MxLookup lookup("d.test", self, seed);
        MxResult r = run(lookup, zone);
        ASSERT_EQ(r.targets.size(), 3u);
        EXPECT_EQ(r.targets[0].host, "c.d.test");
        firsts.insert(r.targets[1].host);
    }
    EXPECT_EQ(firsts.size(), 2u);
}

// No MX: the domain itself is the MX (RFC 5321 5.1).
TEST(MxLookup, ImplicitMx) {
    Zone zone;
    zone.records.emplace(std::pair{std::string("d.test"), DnsType::a}, addr_answer({v4("127.0.0.4")}));
    MxSelf self;
    MxLookup lookup("d.test", self, 1);
    MxResult r = run(lookup, zone);
    ASSERT_EQ(r.outcome, MxOutcome::ready);
    ASSERT_EQ(r.targets.size(), 1u);
    EXPECT_EQ(r.targets[0].host, "d.test");
    // No MX and no address: permanent.
    Zone empty;
    MxLookup none("d.test", self, 1);
    EXPECT_EQ(run(none, empty).outcome, MxOutcome::permanent);
}

// Null MX (RFC 7505), NXDOMAIN: permanent. SERVFAIL, timeout: temporary.
TEST(MxLookup, Failures) {
    MxSelf self;
    struct Case {
        Result<DnsAnswer> mx;
        MxOutcome outcome;
        const char* code;
    };
    std::vector<Case> cases = {
        {mx_answer({{0, ""}}), MxOutcome::permanent, "556 5.1.10"},
        {rcode_answer(DnsRcode::nxdomain), MxOutcome::permanent, "550 5.1.2"},
        {rcode_answer(DnsRcode::servfail), MxOutcome::temporary, "451 4.4.3"},
        {Result<DnsAnswer>(Status::timeout), MxOutcome::temporary, "451 4.4.3"},
    };
    for (const auto& c : cases) {
        Zone zone;
        zone.records.emplace(std::pair{std::string("d.test"), DnsType::mx}, c.mx);
        MxLookup lookup("d.test", self, 1);
        MxResult r = run(lookup, zone);
        EXPECT_EQ(r.outcome, c.outcome) << c.code;
        EXPECT_EQ(r.reply.rfind(c.code, 0), 0u) << r.reply;
    }
}

// MX hosts that are us (by name or by address) are dropped with every worse one; only us
// left is a loop (permanent).
TEST(MxLookup, Loops) {
    MxSelf self;
    self.hostnames = {"mail.example.test"};
    self.addresses = {v4("127.0.0.1")};
    Zone zone;
    zone.records.emplace(std::pair{std::string("d.test"), DnsType::mx},
                         mx_answer({{10, "mail.example.test"}}));
    MxLookup by_name("d.test", self, 1);
    EXPECT_EQ(run(by_name, zone).outcome, MxOutcome::permanent);
    EXPECT_NE(by_name.result().reply.find("5.4.6"), std::string::npos);

    Zone zone2;
    zone2.records.emplace(std::pair{std::string("d.test"), DnsType::mx},
                          mx_answer({{10, "other.d.test"}, {5, "better.d.test"}, {20, "worse.d.test"}}));
    zone2.records.emplace(std::pair{std::string("other.d.test"), DnsType::a}, addr_answer({v4("127.0.0.1")}));
    zone2.records.emplace(std::pair{std::string("better.d.test"), DnsType::a}, addr_answer({v4("127.0.0.5")}));
    zone2.records.emplace(std::pair{std::string("worse.d.test"), DnsType::a}, addr_answer({v4("127.0.0.6")}));
    MxLookup by_address("d.test", self, 1);
    MxResult r = run(by_address, zone2);
    ASSERT_EQ(r.outcome, MxOutcome::ready);
    ASSERT_EQ(r.targets.size(), 1u);
    EXPECT_EQ(r.targets[0].host, "better.d.test");
}

// A host whose address lookups time out is skipped; all of them: temporary.
TEST(MxLookup, AddressFailures) {
    MxSelf self;
    Zone zone;
    zone.records.emplace(std::pair{std::string("d.test"), DnsType::mx},
                         mx_answer({{10, "a.d.test"}, {20, "b.d.test"}}));
    zone.records.emplace(std::pair{std::string("a.d.test"), DnsType::a}, Result<DnsAnswer>(Status::timeout));
    zone.records.emplace(std::pair{std::string("b.d.test"), DnsType::a}, addr_answer({v4("127.0.0.7")}));
    MxLookup lookup("d.test", self, 1);
    MxResult r = run(lookup, zone);
    ASSERT_EQ(r.outcome, MxOutcome::ready);
    EXPECT_EQ(r.targets.size(), 1u);
    zone.records.erase({"b.d.test", DnsType::a});
    zone.records.emplace(std::pair{std::string("b.d.test"), DnsType::a}, Result<DnsAnswer>(Status::timeout));
    MxLookup failing("d.test", self, 1);
    EXPECT_EQ(run(failing, zone).outcome, MxOutcome::temporary);
}

// The cache honours TTLs (positive and negative), refuses SERVFAIL and stays bounded.
TEST(DnsCache, TtlAndBounds) {
    DnsCache cache(4);
    DnsQuestion q{"d.test", DnsType::mx};
    cache.put(q, mx_answer({{10, "a.d.test"}}), 1000);
    ASSERT_NE(cache.find(q, 1299), nullptr);
    EXPECT_EQ(cache.find(q, 1300), nullptr);
    DnsQuestion nx{"nx.test", DnsType::mx};
    cache.put(nx, rcode_answer(DnsRcode::nxdomain), 1000);
    ASSERT_NE(cache.find(nx, 1059), nullptr);
    EXPECT_EQ(cache.find(nx, 1060), nullptr);
    cache.put(q, rcode_answer(DnsRcode::servfail), 1000);
    EXPECT_EQ(cache.find(q, 1000), nullptr);
    for (int i = 0; i < 10; ++i) {
        cache.put({"n" + std::to_string(i) + ".test", DnsType::a}, addr_answer({}), 1000);
        // addr_answer has ttl 300.
    }
    EXPECT_LE(cache.size(), 4u);
}

// A fake transport answering from a zone on the next pump, counting queries.
class FakeTransport final : public DnsTransport {
public:
    Zone zone;
    unsigned queries = 0;
    std::vector<std::pair<DnsQuestion, Done>> pending;
    void query(const DnsQuestion& q, Done done) override {
        ++queries;
        pending.emplace_back(q, std::move(done));
    }
    void pump() {
        for (int i = 0; i < 8 && !pending.empty(); ++i) {
            auto list = std::move(pending);
            pending.clear();
            for (auto& [q, done] : list) done(zone.lookup(q));
        }
    }
};

// The resolver asks MX then A/AAAA, caches them: a second resolve asks nothing.
TEST(MxResolver, CachesAnswers) {
    FakeTransport transport;
    transport.zone.records.emplace(std::pair{std::string("d.test"), DnsType::mx},
                                   mx_answer({{10, "a.d.test"}}));
    transport.zone.records.emplace(std::pair{std::string("a.d.test"), DnsType::a},
                                   addr_answer({v4("127.0.0.2")}));
    std::int64_t now = 1000;
    MxResolver resolver(transport, MxSelf{}, [&now] { return now; }, 1);
    int calls = 0;
    MxResult last;
    resolver.resolve("D.test", [&](const MxResult& r) { ++calls; last = r; });
    transport.pump();
    EXPECT_EQ(calls, 1);
    EXPECT_EQ(last.outcome, MxOutcome::ready);
    EXPECT_EQ(transport.queries, 3u);
    resolver.resolve("d.test", [&](const MxResult& r) { ++calls; last = r; });
    EXPECT_EQ(calls, 2);  // From the cache, at once.
    EXPECT_EQ(transport.queries, 3u);
    now += 301;  // Expired: asked again.
    resolver.resolve("d.test", [&](const MxResult& r) { ++calls; last = r; });
    transport.pump();
    EXPECT_EQ(calls, 3);
    EXPECT_EQ(transport.queries, 6u);
    EXPECT_EQ(resolver.lookups_in_flight(), 0u);
    // A bad domain fails at once, permanently.
    resolver.resolve("bad domain", [&](const MxResult& r) { ++calls; last = r; });
    EXPECT_EQ(last.outcome, MxOutcome::permanent);
}

}  // namespace
}  // namespace rp::smtp
