// tests/unit/dns_test_util.h: DNS answers in wire format for tests, built with ldns.
#pragma once

#include <ldns/ldns.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "protocols/dns/dns_codec.h"

namespace rp::dns::test {

struct AnswerSpec {
    ldns_pkt_rcode rcode = LDNS_RCODE_NOERROR;
    bool truncated = false;
    std::vector<std::string> answer;     // "example.test. 300 IN MX 10 mx.example.test."
    std::vector<std::string> authority;  // SOA for negative TTLs.
};

inline std::vector<std::uint8_t> answer_wire(const DnsQuestion& q, std::uint16_t id,
                                             const AnswerSpec& spec) {
    ldns_pkt* p = ldns_pkt_new();
    ldns_pkt_set_id(p, id);
    ldns_pkt_set_qr(p, true);
    ldns_pkt_set_rd(p, true);
    ldns_pkt_set_ra(p, true);
    ldns_pkt_set_rcode(p, static_cast<std::uint8_t>(spec.rcode));
    ldns_pkt_set_tc(p, spec.truncated);
    ldns_rr* question = ldns_rr_new();
    ldns_rr_set_owner(question, ldns_dname_new_frm_str(q.name.c_str()));
    ldns_rr_set_type(question, static_cast<ldns_rr_type>(q.type));
    ldns_rr_set_class(question, LDNS_RR_CLASS_IN);
    ldns_rr_set_question(question, true);
    ldns_pkt_push_rr(p, LDNS_SECTION_QUESTION, question);
    for (const auto& text : spec.answer) {
        ldns_rr* rr = nullptr;
        if (ldns_rr_new_frm_str(&rr, text.c_str(), 300, nullptr, nullptr) != LDNS_STATUS_OK) std::abort();
        ldns_pkt_push_rr(p, LDNS_SECTION_ANSWER, rr);
    }
    for (const auto& text : spec.authority) {
        ldns_rr* rr = nullptr;
        if (ldns_rr_new_frm_str(&rr, text.c_str(), 300, nullptr, nullptr) != LDNS_STATUS_OK) std::abort();
        ldns_pkt_push_rr(p, LDNS_SECTION_AUTHORITY, rr);
    }
    std::uint8_t* wire = nullptr;
    std::size_t size = 0;
    if (ldns_pkt2wire(&wire, p, &size) != LDNS_STATUS_OK) std::abort();
    std::vector<std::uint8_t> out(wire, wire + size);
    std::free(wire);
    ldns_pkt_free(p);
    return out;
}

// The id and question of a query in wire format (the first 2 bytes are the id).
inline std::uint16_t query_id(const std::vector<std::uint8_t>& wire) {
    return static_cast<std::uint16_t>((wire[0] << 8) | wire[1]);
}

}  // namespace rp::dns::test
