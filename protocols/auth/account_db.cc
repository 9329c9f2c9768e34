// protocols/auth/account_db.cc: see account_db.h.
#include "protocols/auth/account_db.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "protocols/auth/password.h"
#include "protocols/auth/scram.h"

namespace rp::auth {
namespace {

std::string lower(std::string_view text) {
    std::string out(text);
    for (char& c : out) {
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    }
    return out;
}

bool address_valid(std::string_view address) {
    std::size_t at = address.rfind('@');
    if (at == std::string_view::npos || at == 0 || at + 1 == address.size()) return false;
    if (address.size() > 254) return false;
    for (char c : address) {
        if (static_cast<unsigned char>(c) <= ' ' || c == 0x7f) return false;
    }
    return true;
}

}  // namespace

std::string accounts_path(const config::Settings& settings) {
    if (!settings.auth.accounts_file.empty()) return settings.auth.accounts_file;
    return (std::filesystem::path(settings.server.data_dir) / "accounts").string();
}

Result<AccountDb> AccountDb::load(const std::string& path, std::string* error) {
    AccountDb db;
    std::ifstream in(path);
    if (!in) {
        if (errno == ENOENT) return db;
        *error = "cannot read accounts file " + path + ": " + std::strerror(errno);
        return Status::io;
    }
    std::string line;
    unsigned number = 0;
    while (std::getline(in, line)) {
        ++number;
        if (line.empty() || line[0] == '#') continue;
        std::size_t tab = line.find('\t');
        std::string where = path + ":" + std::to_string(number) + ": ";
        if (tab == std::string::npos) {
            *error = where + "expected address<TAB>credential";
            return Status::invalid;
        }
        std::string address = lower(std::string_view(line).substr(0, tab));
        std::string credential = line.substr(tab + 1);
        std::string scram;
        if (std::size_t second = credential.find('\t'); second != std::string::npos) {
            scram = credential.substr(second + 1);
            credential.resize(second);
            if (!scram_credential_parse(scram).ok()) {
                *error = where + "the third field is not SCRAM-SHA-256 keys (RFC 5803)";
                return Status::invalid;
            }
        }
        if (!address_valid(address)) {
            *error = where + "\"" + address + "\" is not local@domain";
            return Status::invalid;
        }
        if (!password_stored_valid(credential)) {
            *error = where + "the credential is not an argon2id hash";
            return Status::invalid;
        }
        if (!scram.empty()) db.scram_[address] = scram;
        db.entries_[address] = credential;
    }
    return db;
}

void AccountDb::add_config_users(const std::vector<config::UserSettings>& users) {
    for (const auto& user : users) {
        std::string address = lower(user.address);
        if (entries_.count(address) != 0) continue;
        if (!user.password_hash.empty()) {
            entries_[address] = user.password_hash;
        } else if (!user.password.empty()) {
            // No SCRAM keys for config users: PBKDF2 for each of them at every start and
            // SIGHUP would cost seconds with many users. `ringpost user add` makes them.
            entries_[address] = std::string(plain_prefix) + user.password;
        }
    }
}

const std::string* AccountDb::find(std::string_view address) const {
    auto it = entries_.find(lower(address));
    return it == entries_.end() ? nullptr : &it->second;
}

const std::string* AccountDb::find_scram(std::string_view address) const {
    auto it = scram_.find(lower(address));
    return it == scram_.end() ? nullptr : &it->second;
}

Status AccountDb::put(std::string_view address, std::string credential, std::string scram) {
    if (!address_valid(address) || !password_stored_valid(credential)) return Status::invalid;
    if (!scram.empty() && !scram_credential_parse(scram).ok()) return Status::invalid;
    std::string key = lower(address);
    entries_[key] = std::move(credential);
    if (scram.empty()) {
        scram_.erase(key);
    } else {
        scram_[key] = std::move(scram);
    }
    return Status::ok;
}

Status AccountDb::remove(std::string_view address) {
    scram_.erase(lower(address));
    return entries_.erase(lower(address)) > 0 ? Status::ok : Status::not_found;
}

Status AccountDb::save(const std::string& path, std::string* error) const {
    std::string text =
        "# ringpost accounts: address<TAB>argon2id hash[<TAB>SCRAM-SHA-256 keys]. "
        "Edit with `ringpost user`.\n";
    for (const auto& [address, credential] : entries_) {
        if (credential.substr(0, plain_prefix.size()) == plain_prefix) continue;  // Config only.
        text += address + "\t" + credential;
        if (auto it = scram_.find(address); it != scram_.end()) text += "\t" + it->second;
        text += "\n";
    }
    std::string temporary = path + ".tmp";
    int fd = open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        *error = "cannot write " + temporary + ": " + std::strerror(errno);
        return Status::io;
    }
    std::size_t done = 0;
    while (done < text.size()) {
        ssize_t n = ::write(fd, text.data() + done, text.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            *error = "cannot write " + temporary + ": " + std::strerror(errno);
            close(fd);
            return Status::io;
        }
        done += static_cast<std::size_t>(n);
    }
    bool ok = fsync(fd) == 0;
    ok = close(fd) == 0 && ok;
    if (!ok || rename(temporary.c_str(), path.c_str()) != 0) {
        *error = "cannot replace " + path + ": " + std::strerror(errno);
        return Status::io;
    }
    // The rename is durable once the folder is synced.
    std::string folder = std::filesystem::path(path).parent_path().string();
    int dir = open(folder.empty() ? "." : folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir >= 0) {
        fsync(dir);
        close(dir);
    }
    return Status::ok;
}

}  // namespace rp::auth
