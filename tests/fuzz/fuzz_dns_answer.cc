// tests/fuzz/fuzz_dns_answer.cc: the DNS answer parser and MX logic on arbitrary packets.
//
// Invariants: never crash; an accepted answer has at most dns_answer_records_max records,
// names without upper case, a TTL within the cap; the MX logic fed with it ends in a
// defined outcome and never returns a target without an address.
#include <cstdint>
#include <cstdlib>
#include <span>

#include "protocols/dns/dns_codec.h"
#include "protocols/smtp/mx_resolver.h"

namespace {

void check(bool ok) {
    if (!ok) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace rp;
    if (size < 2) return 0;
    const auto id = static_cast<std::uint16_t>((data[0] << 8) | data[1]);
    const std::span<const std::uint8_t> wire(data, size);
    for (auto type : {dns::DnsType::mx, dns::DnsType::a, dns::DnsType::aaaa}) {
        const dns::DnsQuestion q{"example.test", type};
        auto answer = dns::dns_answer_parse(wire, q, id);
        if (!answer) continue;
        check(answer->mx.size() + answer->addresses.size() <= dns::dns_answer_records_max);
        check(answer->ttl_s <= dns::dns_ttl_max_s);
        for (const auto& mx : answer->mx) {
            for (char c : mx.host) check(!(c >= 'A' && c <= 'Z'));
        }
        smtp::MxSelf self;
        self.hostnames = {"mail.example.test"};
        smtp::MxLookup lookup("example.test", self, 1);
        for (int round = 0; round < 4; ++round) {
            for (const auto& question : lookup.take_questions()) {
                lookup.answer(question, question.type == type ? answer : Result<dns::DnsAnswer>(Status::timeout));
            }
        }
        const auto& result = lookup.result();
        if (result.outcome == smtp::MxOutcome::ready) {
            for (const auto& t : result.targets) check(!t.addresses.empty());
        }
    }
    return 0;
}
