// protocols/smtp/mx_resolver.cc: MX resolution logic, cache and driver.
#include "protocols/smtp/mx_resolver.h"

#include <algorithm>
#include <utility>

namespace rp::smtp {

using dns::DnsAnswer;
using dns::DnsQuestion;
using dns::DnsRcode;
using dns::DnsType;

MxLookup::MxLookup(std::string domain, const MxSelf& self, std::uint64_t seed)
    : domain_(std::move(domain)), self_(self), random_(seed) {
    RP_ASSERT(!domain_.empty());
    questions_.push_back({domain_, DnsType::mx});
}

std::vector<DnsQuestion> MxLookup::take_questions() { return std::exchange(questions_, {}); }

void MxLookup::fail(MxOutcome outcome, std::string reply) {
    RP_ASSERT(outcome == MxOutcome::temporary || outcome == MxOutcome::permanent);
    result_.outcome = outcome;
    result_.targets.clear();
    result_.reply = std::move(reply);
}

bool MxLookup::is_self_name(const std::string& host) const {
    return std::find(self_.hostnames.begin(), self_.hostnames.end(), host) !=
           self_.hostnames.end();
}

bool MxLookup::is_self_address(const dns::DnsAddress& address) const {
    return std::find(self_.addresses.begin(), self_.addresses.end(), address) !=
           self_.addresses.end();
}

void MxLookup::answer(const DnsQuestion& question, const Result<DnsAnswer>& answer) {
    if (result_.outcome != MxOutcome::pending) return;
    if (question.type == DnsType::mx) {
        mx_answered(answer);
    } else {
        address_answered(question, answer);
    }
}

void MxLookup::mx_answered(const Result<DnsAnswer>& answer) {
    if (!answer) {
        fail(MxOutcome::temporary, "451 4.4.3 MX lookup for " + domain_ + " failed: " +
                                       std::string(status_name(answer.status())));
        return;
    }
    if (answer->rcode == DnsRcode::nxdomain) {
        fail(MxOutcome::permanent, "550 5.1.2 Domain " + domain_ + " does not exist (NXDOMAIN)");
        return;
    }
    if (answer->rcode != DnsRcode::noerror || answer->truncated) {
        fail(MxOutcome::temporary, "451 4.4.3 MX lookup for " + domain_ + " failed (" +
                                       (answer->truncated ? "truncated" : "server failure") + ")");
        return;
    }
    std::vector<dns::DnsMx> mx = answer->mx;
    for (const auto& record : mx) {
        if (record.host.empty()) {  // RFC 7505 3: "." means the domain accepts no mail.
            fail(MxOutcome::permanent, "556 5.1.10 Domain " + domain_ + " accepts no mail (null MX)");
            return;
        }
    }
    if (mx.empty()) {
        implicit_ = true;  // RFC 5321 5.1: the domain itself, preference 0.
        mx.push_back({0, domain_});
    }
    // Random order within a preference (RFC 5321 5.1), then a stable sort by preference.
    std::shuffle(mx.begin(), mx.end(), random_);
    std::stable_sort(mx.begin(), mx.end(),
                     [](const auto& a, const auto& b) { return a.preference < b.preference; });
    // Drop duplicates of a host (keep the best preference).
    std::vector<dns::DnsMx> unique;
    for (auto& record : mx) {
        bool seen = false;
        for (const auto& u : unique) seen = seen || u.host == record.host;
        if (!seen) unique.push_back(std::move(record));
    }
    // RFC 5321 5.1: if we are an MX, only hosts strictly better than us may be tried.
    for (std::size_t i = 0; i < unique.size(); ++i) {
        if (is_self_name(unique[i].host)) {
            const std::uint16_t ours = unique[i].preference;
            std::erase_if(unique, [ours](const auto& r) { return r.preference >= ours; });
            break;
        }
    }
    if (unique.empty()) {
        fail(MxOutcome::permanent, "554 5.4.6 Mail for " + domain_ + " loops back to myself");
        return;
    }
    if (unique.size() > mx_hosts_max) unique.resize(mx_hosts_max);
    for (auto& record : unique) {
        Host host;
        host.target.host = record.host;
        host.target.preference = record.preference;
        questions_.push_back({record.host, DnsType::a});
        questions_.push_back({record.host, DnsType::aaaa});
        hosts_.push_back(std::move(host));
    }
}

void MxLookup::address_answered(const DnsQuestion& question, const Result<DnsAnswer>& answer) {
    for (Host& host : hosts_) {
        if (host.target.host != question.name) continue;
        bool& done = question.type == DnsType::a ? host.a_done : host.aaaa_done;
        if (done) continue;
        done = true;
        if (!answer) {
            host.temporary = true;
        } else if (answer->rcode == DnsRcode::noerror && !answer->truncated) {
            auto& into = question.type == DnsType::a ? host.target.addresses : host.v6;
            for (const auto& address : answer->addresses) into.push_back(address);
        } else if (answer->rcode != DnsRcode::nxdomain) {
            host.temporary = true;
        }
    }
    for (const Host& host : hosts_) {
        if (!host.a_done || !host.aaaa_done) return;
    }
    finish_addresses();
}

void MxLookup::finish_addresses() {
    // An MX host that resolves to one of our addresses is us, like our hostname.
    for (std::size_t i = 0; i < hosts_.size(); ++i) {
        Host& host = hosts_[i];
        for (auto& a : host.v6) host.target.addresses.push_back(a);
        bool self = false;
        for (const auto& a : host.target.addresses) self = self || is_self_address(a);
        if (self) {
            const std::uint16_t ours = host.target.preference;
            std::erase_if(hosts_, [ours](const Host& h) { return h.target.preference >= ours; });
            if (hosts_.empty()) {
                fail(MxOutcome::permanent, "554 5.4.6 Mail for " + domain_ + " loops back to myself");
                return;
            }
            break;
        }
    }
    bool temporary = false;
    for (Host& host : hosts_) {
        temporary = temporary || host.temporary;
        if (!host.target.addresses.empty()) result_.targets.push_back(std::move(host.target));
    }
    if (!result_.targets.empty()) {
        result_.outcome = MxOutcome::ready;
        return;
    }
    if (temporary) {
        fail(MxOutcome::temporary, "451 4.4.3 Address lookup for the MX hosts of " + domain_ + " failed");
    } else if (implicit_) {
        fail(MxOutcome::permanent, "550 5.1.2 Domain " + domain_ + " has no MX and no address");
    } else {
        fail(MxOutcome::permanent, "550 5.4.4 No MX host of " + domain_ + " has an address");
    }
}

// ---- DnsCache ----

std::string DnsCache::key(const DnsQuestion& question) {
    return std::to_string(static_cast<unsigned>(question.type)) + ":" + question.name;
}

const DnsAnswer* DnsCache::find(const DnsQuestion& question, std::int64_t now_s) {
    auto it = map_.find(key(question));
    if (it == map_.end()) return nullptr;
    if (it->second.expires_s <= now_s) {
        ages_.erase(it->second.age);
        map_.erase(it);
        return nullptr;
    }
    return &it->second.answer;
}

void DnsCache::put(const DnsQuestion& question, const DnsAnswer& answer, std::int64_t now_s) {
    if (answer.ttl_s == 0 || answer.truncated) return;
    if (answer.rcode != DnsRcode::noerror && answer.rcode != DnsRcode::nxdomain) return;
    std::string k = key(question);
    if (auto it = map_.find(k); it != map_.end()) {
        ages_.erase(it->second.age);
        map_.erase(it);
    }
    while (map_.size() >= entries_max_ && !ages_.empty()) {
        map_.erase(ages_.front());
        ages_.pop_front();
    }
    ages_.push_back(k);
    Entry entry{answer, now_s + answer.ttl_s, std::prev(ages_.end())};
    map_.emplace(std::move(k), std::move(entry));
    RP_ASSERT(map_.size() <= entries_max_);
}

// ---- MxResolver ----

struct MxResolver::Lookup {
    MxLookup logic;
    Done done;
    unsigned outstanding = 0;
    Lookup(std::string domain, const MxSelf& self, std::uint64_t seed, Done d)
        : logic(std::move(domain), self, seed), done(std::move(d)) {}
};

MxResolver::MxResolver(DnsTransport& transport, MxSelf self, std::function<std::int64_t()> now_s,
                       std::uint64_t seed)
    : transport_(transport), self_(std::move(self)), now_s_(std::move(now_s)), random_(seed) {}

MxResolver::~MxResolver() = default;

void MxResolver::resolve(const std::string& domain, Done done) {
    auto name = dns::dns_name_normalize(domain);
    if (!name) {
        MxResult result;
        result.outcome = MxOutcome::permanent;
        result.reply = "553 5.1.2 Bad destination domain " + domain;
        done(result);
        return;
    }
    const std::uint64_t id = next_id_++;
    auto lookup = std::make_unique<Lookup>(std::move(name.value()), self_, random_(), std::move(done));
    lookups_.emplace(id, std::move(lookup));
    // No question yet: this only asks the first ones (the cache may finish the lookup).
    answered(id, DnsQuestion{}, Result<DnsAnswer>(Status::cancelled));
}

void MxResolver::answered(std::uint64_t lookup_id, const DnsQuestion& question,
                          const Result<DnsAnswer>& answer) {
    auto it = lookups_.find(lookup_id);
    if (it == lookups_.end()) return;
    Lookup& lookup = *it->second;
    if (!question.name.empty()) {
        RP_ASSERT(lookup.outstanding > 0);
        --lookup.outstanding;
        if (answer) cache_.put(question, *answer, now_s_());
        lookup.logic.answer(question, answer);
    }
    // Ask what is still unknown; cache hits are answered at once (bounded: every round
    // moves the lookup forward by one stage, MX then addresses).
    for (int round = 0; round < 4 && lookup.logic.result().outcome == MxOutcome::pending; ++round) {
        std::vector<DnsQuestion> questions = lookup.logic.take_questions();
        if (questions.empty()) break;
        for (const DnsQuestion& q : questions) {
            if (const DnsAnswer* cached = cache_.find(q, now_s_())) {
                lookup.logic.answer(q, *cached);
                continue;
            }
            ++lookup.outstanding;
            transport_.query(q, [this, lookup_id, q](const Result<DnsAnswer>& a) {
                answered(lookup_id, q, a);
            });
        }
    }
    if (lookup.logic.result().outcome == MxOutcome::pending) return;
    if (lookup.outstanding > 0 && lookup.done == nullptr) return;
    if (lookup.done) {
        Done done = std::move(lookup.done);
        lookup.done = nullptr;
        MxResult result = lookup.logic.result();
        if (lookup.outstanding == 0) lookups_.erase(it);
        done(result);
        return;
    }
    if (lookup.outstanding == 0) lookups_.erase(it);
}

}  // namespace rp::smtp
