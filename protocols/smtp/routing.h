// protocols/smtp/routing.h: where a recipient goes (RFC 5321 routing for an MX and a relay).
//
// Owns: the local domains, the accounts and the trusted networks, built once from Settings
//   at start (and again on reload); immutable afterwards, so every shard reads it without
//   locks.
// Core: any; read-only after build().
// Invariants: domains and accounts are stored lowercased (ASCII), so lookups are
//   case-insensitive as users expect, although RFC 5321 2.4 lets a local part be
//   case-sensitive. Each account has exactly one owner shard: hash(account) % shard_count.
// Errors: build() names the first bad trusted network.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "config/settings.h"
#include "core/result.h"
#include "protocols/smtp/smtp_address.h"
#include "protocols/smtp/smtp_server.h"

namespace rp::smtp {

struct Cidr {
    int family = AF_INET;
    std::uint8_t bytes[16] = {};
    unsigned prefix_bits = 0;

    // "192.0.2.0/24", "2001:db8::/32", or a bare address (a host route).
    [[nodiscard]] static Result<Cidr> parse(std::string_view text);
    bool contains(const sockaddr_storage& address) const;
};

struct Account {
    std::string address;   // "demo@example.test", lowercased: the store's account name.
    std::string password;  // Plaintext from the config for now (the auth issue hashes it).
    unsigned owner_shard = 0;
};

class Directory {
public:
    [[nodiscard]] static Result<Directory> build(const config::Settings& settings,
                                                 unsigned shard_count, std::string* error);

    bool local_domain(std::string_view domain) const;
    // The account for a local address, or null. "postmaster" (no domain, RFC 5321 4.1.1.3)
    // and postmaster@<local domain> without an account of that name go to the first account
    // of that domain (the first configured domain for the bare form).
    const Account* find(const SmtpAddress& address) const;
    // The account named exactly `address` (any case), or null.
    const Account* find_account(std::string_view address) const;
    bool trusted(const sockaddr_storage& client) const;

    // The verdict for RCPT TO. `relay_allowed`: the client is trusted or authenticated.
    RcptVerdict route(const SmtpAddress& recipient, bool relay_allowed) const;

    const std::vector<Account>& accounts() const { return accounts_; }
    unsigned shard_count() const { return shard_count_; }
    static unsigned owner_of(std::string_view account, unsigned shard_count);

private:
    std::unordered_set<std::string> domains_;
    std::string first_domain_;
    std::vector<Account> accounts_;
    std::unordered_map<std::string, std::size_t> by_address_;
    std::unordered_map<std::string, std::size_t> postmaster_of_domain_;
    std::vector<Cidr> trusted_;
    unsigned shard_count_ = 1;
};

// ASCII lowercase copy.
std::string ascii_lower(std::string_view text);

}  // namespace rp::smtp
