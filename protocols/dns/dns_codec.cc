// protocols/dns/dns_codec.cc: ldns packets for queries and answers.
#include "protocols/dns/dns_codec.h"

#include <arpa/inet.h>
#include <ldns/ldns.h>

#include <algorithm>
#include <cstdlib>
#include <memory>

namespace rp::dns {

namespace {

struct PktFree {
    void operator()(ldns_pkt* p) const { ldns_pkt_free(p); }
};
struct RdfFree {
    void operator()(ldns_rdf* r) const { ldns_rdf_deep_free(r); }
};
using PktPtr = std::unique_ptr<ldns_pkt, PktFree>;
using RdfPtr = std::unique_ptr<ldns_rdf, RdfFree>;

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

// A dname rdf as our normalised text. Labels with bytes outside the host-name alphabet come
// back as "" plus false: such an MX target cannot be a mail host.
bool dname_text(const ldns_rdf* rdf, std::string& out) {
    out.clear();
    if (rdf == nullptr || ldns_rdf_get_type(rdf) != LDNS_RDF_TYPE_DNAME) return false;
    const std::uint8_t* data = ldns_rdf_data(rdf);
    const std::size_t size = ldns_rdf_size(rdf);
    std::size_t at = 0;
    while (at < size) {
        const std::size_t label = data[at];
        if (label == 0) break;
        // bounds: ldns validated the dname, but check before reading anyway.
        if (label > 63 || at + 1 + label > size) return false;
        if (!out.empty()) out.push_back('.');
        for (std::size_t i = 0; i < label; ++i) {
            const char c = static_cast<char>(data[at + 1 + i]);
            const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                            (c >= '0' && c <= '9') || c == '-' || c == '_';
            if (!ok) return false;
            out.push_back(lower(c));
        }
        at += 1 + label;
    }
    return true;
}

std::uint32_t clamp_ttl(std::uint32_t ttl, std::uint32_t max) { return std::min(ttl, max); }

DnsRcode rcode_of(ldns_pkt_rcode rcode) {
    switch (rcode) {
        case LDNS_RCODE_NOERROR: return DnsRcode::noerror;
        case LDNS_RCODE_NXDOMAIN: return DnsRcode::nxdomain;
        case LDNS_RCODE_SERVFAIL: return DnsRcode::servfail;
        case LDNS_RCODE_REFUSED: return DnsRcode::refused;
        default: return DnsRcode::other;
    }
}

// RFC 2308 5: a negative answer is cached for min(SOA TTL, SOA MINIMUM).
std::uint32_t negative_ttl(const ldns_pkt* pkt) {
    const ldns_rr_list* authority = ldns_pkt_authority(pkt);
    const std::size_t count = authority != nullptr ? ldns_rr_list_rr_count(authority) : 0;
    for (std::size_t i = 0; i < count; ++i) {
        const ldns_rr* rr = ldns_rr_list_rr(authority, i);
        if (ldns_rr_get_type(rr) != LDNS_RR_TYPE_SOA || ldns_rr_rd_count(rr) < 7) continue;
        const ldns_rdf* minimum = ldns_rr_rdf(rr, 6);
        if (minimum == nullptr || ldns_rdf_size(minimum) != 4) continue;
        return clamp_ttl(std::min(ldns_rr_ttl(rr), ldns_rdf2native_int32(minimum)),
                         dns_negative_ttl_max_s);
    }
    return dns_negative_ttl_default_s;
}

// Records of the question's type whose owner is the question or reached through the CNAME
// chain in the answer section (a recursive resolver answers with the chain, RFC 1034 3.6.2).
void collect(const ldns_pkt* pkt, const DnsQuestion& question, DnsAnswer& answer) {
    const ldns_rr_list* list = ldns_pkt_answer(pkt);
    const std::size_t count = list != nullptr ? ldns_rr_list_rr_count(list) : 0;
    std::vector<std::string> names{question.name};
    std::string owner, target;
    // Bounded: each pass adds at most one name; a chain longer than 8 is ignored.
    for (int pass = 0; pass < 8; ++pass) {
        bool grew = false;
        for (std::size_t i = 0; i < count; ++i) {
            const ldns_rr* rr = ldns_rr_list_rr(list, i);
            if (ldns_rr_get_type(rr) != LDNS_RR_TYPE_CNAME || ldns_rr_rd_count(rr) < 1) continue;
            if (!dname_text(ldns_rr_owner(rr), owner)) continue;
            if (!dname_text(ldns_rr_rdf(rr, 0), target)) continue;
            if (std::find(names.begin(), names.end(), owner) == names.end()) continue;
            if (std::find(names.begin(), names.end(), target) != names.end()) continue;
            names.push_back(target);
            grew = true;
        }
        if (!grew) break;
    }
    std::uint32_t ttl = dns_ttl_max_s;
    bool any = false;
    for (std::size_t i = 0; i < count; ++i) {
        const ldns_rr* rr = ldns_rr_list_rr(list, i);
        if (static_cast<std::uint16_t>(ldns_rr_get_type(rr)) !=
            static_cast<std::uint16_t>(question.type)) {
            continue;
        }
        if (!dname_text(ldns_rr_owner(rr), owner)) continue;
        if (std::find(names.begin(), names.end(), owner) == names.end()) continue;
        if (answer.mx.size() + answer.addresses.size() >= dns_answer_records_max) break;
        if (question.type == DnsType::mx) {
            if (ldns_rr_rd_count(rr) < 2) continue;
            const ldns_rdf* pref = ldns_rr_rdf(rr, 0);
            if (pref == nullptr || ldns_rdf_size(pref) != 2) continue;
            DnsMx mx;
            mx.preference = ldns_rdf2native_int16(pref);
            if (!dname_text(ldns_rr_rdf(rr, 1), mx.host)) continue;
            answer.mx.push_back(std::move(mx));
        } else {
            if (ldns_rr_rd_count(rr) < 1) continue;
            const ldns_rdf* rdf = ldns_rr_rdf(rr, 0);
            const std::size_t want = question.type == DnsType::a ? 4 : 16;
            if (rdf == nullptr || ldns_rdf_size(rdf) != want) continue;
            DnsAddress address;
            address.family = question.type == DnsType::a ? AF_INET : AF_INET6;
            std::copy_n(ldns_rdf_data(rdf), want, address.bytes);
            answer.addresses.push_back(address);
        }
        ttl = std::min(ttl, ldns_rr_ttl(rr));
        any = true;
    }
    answer.ttl_s = any ? ttl : negative_ttl(pkt);
}

}  // namespace

std::string DnsAddress::text() const {
    char buffer[INET6_ADDRSTRLEN] = {};
    if (inet_ntop(family, bytes, buffer, sizeof buffer) == nullptr) return "?";
    return buffer;
}

std::string_view dns_type_name(DnsType type) {
    switch (type) {
        case DnsType::a: return "A";
        case DnsType::mx: return "MX";
        case DnsType::aaaa: return "AAAA";
    }
    return "?";
}

Result<std::string> dns_name_normalize(std::string_view name) {
    if (!name.empty() && name.back() == '.') name.remove_suffix(1);
    if (name.empty() || name.size() > 253) return Status::invalid;
    std::string out;
    out.reserve(name.size());
    std::size_t label = 0;
    for (const char c : name) {
        if (c == '.') {
            if (label == 0) return Status::invalid;
            label = 0;
            out.push_back('.');
            continue;
        }
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                        (c >= '0' && c <= '9') || c == '-' || c == '_';
        if (!ok || ++label > 63) return Status::invalid;
        out.push_back(lower(c));
    }
    if (label == 0) return Status::invalid;
    return out;
}

Result<std::vector<std::uint8_t>> dns_query_build(const DnsQuestion& question, std::uint16_t id) {
    auto name = dns_name_normalize(question.name);
    if (!name) return name.status();
    RdfPtr owner(ldns_dname_new_frm_str(name->c_str()));
    if (!owner) return Status::invalid;
    // ldns_pkt_query_new takes ownership of the owner rdf.
    PktPtr pkt(ldns_pkt_query_new(owner.release(), static_cast<ldns_rr_type>(question.type),
                                  LDNS_RR_CLASS_IN, LDNS_RD));
    if (!pkt) return Status::invalid;
    ldns_pkt_set_id(pkt.get(), id);
    std::uint8_t* wire = nullptr;
    std::size_t size = 0;
    if (ldns_pkt2wire(&wire, pkt.get(), &size) != LDNS_STATUS_OK || wire == nullptr) {
        std::free(wire);
        return Status::invalid;
    }
    std::vector<std::uint8_t> out(wire, wire + size);
    std::free(wire);
    RP_ASSERT(out.size() >= 12);
    return out;
}

Result<DnsAnswer> dns_answer_parse(std::span<const std::uint8_t> wire, const DnsQuestion& question,
                                   std::uint16_t id) {
    if (wire.size() < 12) return Status::corrupt;
    ldns_pkt* raw = nullptr;
    if (ldns_wire2pkt(&raw, wire.data(), wire.size()) != LDNS_STATUS_OK || raw == nullptr) {
        if (raw != nullptr) ldns_pkt_free(raw);
        return Status::corrupt;
    }
    PktPtr pkt(raw);
    if (!ldns_pkt_qr(pkt.get()) || ldns_pkt_id(pkt.get()) != id) return Status::corrupt;
    // RFC 5452 9.1: accept only the question we asked.
    const ldns_rr_list* questions = ldns_pkt_question(pkt.get());
    if (questions == nullptr || ldns_rr_list_rr_count(questions) != 1) return Status::corrupt;
    const ldns_rr* q = ldns_rr_list_rr(questions, 0);
    std::string name;
    if (!dname_text(ldns_rr_owner(q), name) || name != question.name) return Status::corrupt;
    if (static_cast<std::uint16_t>(ldns_rr_get_type(q)) != static_cast<std::uint16_t>(question.type)) {
        return Status::corrupt;
    }
    DnsAnswer answer;
    answer.id = id;
    answer.rcode = rcode_of(ldns_pkt_get_rcode(pkt.get()));
    answer.truncated = ldns_pkt_tc(pkt.get());
    if (answer.rcode == DnsRcode::noerror) {
        collect(pkt.get(), question, answer);
    } else if (answer.rcode == DnsRcode::nxdomain) {
        answer.ttl_s = negative_ttl(pkt.get());
    }
    RP_ASSERT(answer.ttl_s <= dns_ttl_max_s);
    return answer;
}

}  // namespace rp::dns
