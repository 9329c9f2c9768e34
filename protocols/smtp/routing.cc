#include "protocols/smtp/routing.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <charconv>
#include <cstring>

#include "core/checksum.h"

namespace rp::smtp {

std::string ascii_lower(std::string_view text) {
    std::string out(text);
    for (char& c : out) {
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    }
    return out;
}

Result<Cidr> Cidr::parse(std::string_view text) {
    Cidr cidr;
    std::string_view host = text;
    const std::size_t slash = text.find('/');
    int prefix = -1;
    if (slash != std::string_view::npos) {
        host = text.substr(0, slash);
        std::string_view bits = text.substr(slash + 1);
        auto [end, ec] = std::from_chars(bits.data(), bits.data() + bits.size(), prefix);
        if (ec != std::errc() || end != bits.data() + bits.size() || prefix < 0) {
            return Status::invalid;
        }
    }
    const std::string host_text(host);
    if (inet_pton(AF_INET, host_text.c_str(), cidr.bytes) == 1) {
        cidr.family = AF_INET;
        if (prefix > 32) return Status::invalid;
        cidr.prefix_bits = prefix < 0 ? 32u : static_cast<unsigned>(prefix);
    } else if (inet_pton(AF_INET6, host_text.c_str(), cidr.bytes) == 1) {
        cidr.family = AF_INET6;
        if (prefix > 128) return Status::invalid;
        cidr.prefix_bits = prefix < 0 ? 128u : static_cast<unsigned>(prefix);
    } else {
        return Status::invalid;
    }
    return cidr;
}

namespace {

bool prefix_equal(const std::uint8_t* a, const std::uint8_t* b, unsigned bits) {
    const unsigned whole = bits / 8;
    if (std::memcmp(a, b, whole) != 0) return false;
    const unsigned rest = bits % 8;
    if (rest == 0) return true;
    const auto mask = static_cast<std::uint8_t>(0xFFu << (8 - rest));
    return (a[whole] & mask) == (b[whole] & mask);
}

}  // namespace

bool Cidr::contains(const sockaddr_storage& address) const {
    if (address.ss_family == AF_INET && family == AF_INET) {
        const auto& in = reinterpret_cast<const sockaddr_in&>(address);
        return prefix_equal(reinterpret_cast<const std::uint8_t*>(&in.sin_addr), bytes,
                            prefix_bits);
    }
    if (address.ss_family == AF_INET6) {
        const auto& in6 = reinterpret_cast<const sockaddr_in6&>(address);
        const auto* raw = reinterpret_cast<const std::uint8_t*>(&in6.sin6_addr);
        if (family == AF_INET6) return prefix_equal(raw, bytes, prefix_bits);
        // An IPv4-mapped client (::ffff:a.b.c.d) matches IPv4 networks.
        static constexpr std::uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};
        if (std::memcmp(raw, mapped, sizeof mapped) == 0) {
            return prefix_equal(raw + 12, bytes, prefix_bits);
        }
    }
    return false;
}

unsigned Directory::owner_of(std::string_view account, unsigned shard_count) {
    RP_ASSERT(shard_count > 0);
    return crc32c(account.data(), account.size()) % shard_count;
}

Result<Directory> Directory::build(const config::Settings& settings, unsigned shard_count,
                                   std::string* error) {
    RP_ASSERT(shard_count > 0);
    Directory d;
    d.shard_count_ = shard_count;
    for (const auto& domain : settings.domains) {
        std::string name = ascii_lower(domain.name);
        if (d.first_domain_.empty()) d.first_domain_ = name;
        d.domains_.insert(std::move(name));
    }
    for (const auto& user : settings.users) {
        Account account;
        account.address = ascii_lower(user.address);
        account.password = user.password;
        account.owner_shard = owner_of(account.address, shard_count);
        if (d.by_address_.count(account.address) != 0) continue;  // config_check reports it.
        const std::size_t at = account.address.find('@');
        const std::string domain = at == std::string::npos ? "" : account.address.substr(at + 1);
        d.postmaster_of_domain_.emplace(domain, d.accounts_.size());
        d.by_address_.emplace(account.address, d.accounts_.size());
        d.accounts_.push_back(std::move(account));
    }
    for (const auto& network : settings.smtp.trusted_networks) {
        auto cidr = Cidr::parse(network);
        if (!cidr) {
            if (error) *error = "smtp.trusted_networks: bad network \"" + network + "\"";
            return Status::invalid;
        }
        d.trusted_.push_back(*cidr);
    }
    return d;
}

bool Directory::local_domain(std::string_view domain) const {
    return domains_.count(ascii_lower(domain)) != 0;
}

const Account* Directory::find(const SmtpAddress& address) const {
    const std::string key = ascii_lower(address.text());
    if (auto it = by_address_.find(key); it != by_address_.end()) return &accounts_[it->second];
    const std::string local = ascii_lower(address.local_part());
    if (local != "postmaster") return nullptr;
    const std::string domain = address.domain().empty() ? first_domain_
                                                        : ascii_lower(address.domain());
    if (domains_.count(domain) == 0) return nullptr;
    if (auto it = postmaster_of_domain_.find(domain); it != postmaster_of_domain_.end()) {
        return &accounts_[it->second];
    }
    return nullptr;
}

const Account* Directory::find_account(std::string_view address) const {
    auto it = by_address_.find(ascii_lower(address));
    return it == by_address_.end() ? nullptr : &accounts_[it->second];
}

bool Directory::trusted(const sockaddr_storage& client) const {
    for (const Cidr& cidr : trusted_) {
        if (cidr.contains(client)) return true;
    }
    return false;
}

RcptVerdict Directory::route(const SmtpAddress& recipient, bool relay_allowed) const {
    if (recipient.domain().empty() || local_domain(recipient.domain())) {
        return find(recipient) != nullptr ? RcptVerdict::accept_local : RcptVerdict::no_such_user;
    }
    // RFC 5321 3.6.2 / 7.1: never an open relay.
    return relay_allowed ? RcptVerdict::accept_relay : RcptVerdict::relay_denied;
}

}  // namespace rp::smtp
