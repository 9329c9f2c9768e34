// protocols/auth/account_db.h: the account database: address -> stored credential.
//
// Owns: the accounts file (`[auth] accounts_file`, default <data_dir>/accounts) and an
//   immutable in-memory table built from it and from the config's [[user]] entries.
// Core: built at start-up and on SIGHUP (blocking file reads: never on a core thread), then
//   only read; shards share it through a shared_ptr.
// File format: one account per line, "address<TAB>credential[<TAB>scram]" (credential as
//   in password.h; scram: SCRAM-SHA-256 keys in RFC 5803 form, scram.h); lines starting with '#' and blank lines are ignored. Addresses are stored
//   lowercased. The file is rewritten whole by `ringpost user`: written to a temporary file,
//   fsynced, renamed over the old one, so a reader sees the old or the new file, never half.
// Errors: load() names the file and line of the first bad entry.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "config/settings.h"
#include "core/result.h"

namespace rp::auth {

struct AccountEntry {
    std::string address;     // Lowercased.
    std::string credential;  // "$argon2id$..." or "{plain}..."
};

class AccountDb {
public:
    AccountDb() = default;
    // Reads `path` (a missing file is an empty database).
    [[nodiscard]] static Result<AccountDb> load(const std::string& path, std::string* error);
    // Adds the config's [[user]] entries (password -> "{plain}", password_hash as is). An
    // address in both: the file wins (it is what `ringpost user passwd` changes).
    void add_config_users(const std::vector<config::UserSettings>& users);

    // The stored credential, or null.
    const std::string* find(std::string_view address) const;
    // The SCRAM-SHA-256 keys (RFC 5803 text), or null (an account made before SCRAM, or a
    // config [[user]]: only `ringpost user add|passwd` makes keys).
    const std::string* find_scram(std::string_view address) const;
    const std::map<std::string, std::string>& entries() const { return entries_; }

    // For the tool: change the table, then save().
    // exists: replaced. `scram` may be empty (the account then has no SCRAM keys).
    Status put(std::string_view address, std::string credential, std::string scram = {});
    Status remove(std::string_view address);                       // not_found
    [[nodiscard]] Status save(const std::string& path, std::string* error) const;

private:
    std::map<std::string, std::string> entries_;  // Sorted: `user list` prints in order.
    std::map<std::string, std::string> scram_;    // Address -> RFC 5803 text.
};

// Where the accounts file lives for these settings.
std::string accounts_path(const config::Settings& settings);

}  // namespace rp::auth
