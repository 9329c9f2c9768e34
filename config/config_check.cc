#include "config/config_check.h"

#include <arpa/inet.h>

#include <charconv>
#include <map>
#include <set>

#include "core/limits.h"
#include "core/shard.h"
#include "core/tls.h"

namespace rp::config {
namespace {

class Checker {
public:
    explicit Checker(const Settings& settings, std::string* error)
        : settings_(settings), error_(error) {}

    bool failed() const { return failed_; }
    void fail(std::uint32_t line, const std::string& key, const std::string& message) {
        if (failed_) return;
        failed_ = true;
        *error_ = settings_.source_path;
        if (line != 0) *error_ += ":" + std::to_string(line);
        *error_ += ": " + key + ": " + message;
    }

    void listeners(const std::string& key, const std::vector<ListenerSettings>& list,
                   std::initializer_list<std::string_view> kinds) {
        for (const ListenerSettings& listener : list) {
            bool known = false;
            std::string names;
            for (std::string_view kind : kinds) {
                known = known || listener.kind == kind;
                names += names.empty() ? "" : "|";
                names += kind;
            }
            if (!known) {
                fail(listener.line, key + ".kind",
                     "\"" + listener.kind + "\" is not one of " + names);
            }
            ListenerSpec spec;
            if (listener_address_parse(listener.address, spec) != Status::ok) {
                fail(listener.line, key + ".address",
                     "\"" + listener.address + "\" is not host:port (an IP address)");
            }
            if (!addresses_.insert(listener.address).second) {
                fail(listener.line, key + ".address",
                     listener.address + " is used by another listener");
            }
            if (listener.cert_file.empty() != listener.key_file.empty()) {
                fail(listener.line, key + ".cert_file", "needs both cert_file and key_file");
            }
            // One factory (and one TLS default) per kind: its listeners share a certificate.
            auto [it, fresh] = listener_cert_.emplace(listener.kind, listener.cert_file);
            if (!fresh && it->second != listener.cert_file) {
                fail(listener.line, key + ".cert_file",
                     "listeners of kind \"" + listener.kind + "\" must share one certificate");
            }
            if (listener.kind == "smtps" || listener.kind == "pop3s" || listener.kind == "imaps") {
                tls_needed_ = true;
                tls_line_ = listener.line;
            }
        }
    }

    void run() {
        const Settings& s = settings_;
        if (s.server.hostname.empty()) fail(0, "server.hostname", "must not be empty");
        if (s.tls.min_version != "1.2" && s.tls.min_version != "1.3") {
            fail(0, "tls.min_version", "must be \"1.2\" or \"1.3\"");
        }
        std::string groups_error;
        if (s.tls.groups.empty()) {
            fail(0, "tls.groups", "must name at least one group");
        } else if (!tls::groups_parse(s.tls.groups, &groups_error)) {
            fail(0, "tls.groups", groups_error);
        }
        if (s.server.data_dir.empty()) fail(0, "server.data_dir", "must not be empty");
        const char* const levels[] = {"debug", "info", "warn", "error"};
        bool level_ok = false;
        for (const char* level : levels) level_ok = level_ok || s.server.log_level == level;
        if (!level_ok) fail(0, "server.log_level", "must be debug, info, warn or error");
        unsigned count = s.engine.recv_buffer_count;
        if ((count & (count - 1)) != 0) {
            fail(0, "engine.recv_buffer_count", "must be a power of two");
        }
        if (s.engine.sessions_per_shard > limits::sessions_per_shard_max) {
            fail(0, "engine.sessions_per_shard", "above the hard limit");
        }
        listeners("smtp.listener", s.smtp.listeners, {"mx", "submission", "smtps"});
        listeners("pop3.listener", s.pop3.listeners, {"pop3", "pop3s"});
        listeners("imap.listener", s.imap.listeners, {"imap", "imaps"});
        listeners("engine.test_echo_listener", s.engine.test_echo_listeners, {"test-echo"});
        if (tls_needed_ && !s.tls.self_signed &&
            (s.tls.cert_file.empty() || s.tls.key_file.empty())) {
            fail(tls_line_, "tls.cert_file",
                 "a TLS listener needs tls.cert_file and tls.key_file (or tls.self_signed)");
        }
        for (const auto& certificate : s.tls.certificates) {
            if (certificate.names.empty()) {
                fail(certificate.line, "tls.certificates.names", "needs at least one name");
            }
            if (certificate.cert_file.empty() || certificate.key_file.empty()) {
                fail(certificate.line, "tls.certificates.cert_file",
                     "needs both cert_file and key_file");
            }
        }
        if (s.smtp.line_bytes_max > limits::smtp_line_bytes_max) {
            fail(0, "smtp.line_bytes_max", "above the hard limit");
        }
        if (s.smtp.recipients_max > limits::smtp_recipients_max) {
            fail(0, "smtp.recipients_max", "above the hard limit");
        }
        for (const std::string& network : s.smtp.trusted_networks) {
            if (!cidr_valid(network)) {
                fail(0, "smtp.trusted_networks", "\"" + network + "\" is not a network");
            }
        }
        for (const std::string& resolver : s.dns.resolvers) {
            ListenerSpec spec;
            if (listener_address_parse(resolver, spec) != Status::ok || resolver[0] == '*') {
                fail(0, "dns.resolvers", "\"" + resolver + "\" is not address:port");
            }
        }
        if (s.relay.retry_schedule_s.empty()) {
            fail(0, "relay.retry_schedule_s", "needs at least one interval");
        }
        if (s.relay.tls != "none" && s.relay.tls != "may" && s.relay.tls != "verify") {
            fail(0, "relay.tls", "must be \"none\", \"may\" or \"verify\", not \"" + s.relay.tls + "\"");
        }
        domains_and_users();
    }

private:
    void domains_and_users() {
        std::set<std::string> domains;
        for (const DomainSettings& domain : settings_.domains) {
            if (domain.name.empty() || domain.name.find('@') != std::string::npos ||
                domain.name.size() > 253) {
                fail(domain.line, "domain.name", "\"" + domain.name + "\" is not a domain");
            }
            if (!domains.insert(domain.name).second) {
                fail(domain.line, "domain.name", domain.name + " is listed twice");
            }
        }
        std::set<std::string> addresses;
        for (const UserSettings& user : settings_.users) {
            std::size_t at = user.address.rfind('@');
            if (at == std::string::npos || at == 0 || at + 1 == user.address.size()) {
                fail(user.line, "user.address", "\"" + user.address + "\" is not local@domain");
                continue;
            }
            if (domains.count(user.address.substr(at + 1)) == 0) {
                fail(user.line, "user.address",
                     user.address + ": its domain is not a [[domain]]");
            }
            if (user.password.empty() && user.password_hash.empty()) {
                fail(user.line, "user.password", "must not be empty (or set password_hash)");
            }
            if (!user.password_hash.empty() && user.password_hash.rfind("$argon2id$", 0) != 0) {
                fail(user.line, "user.password_hash", "must be an argon2id hash ($argon2id$...)");
            }
            if (!addresses.insert(user.address).second) {
                fail(user.line, "user.address", user.address + " is listed twice");
            }
        }
    }

    const Settings& settings_;
    std::string* error_;
    bool failed_ = false;
    std::map<std::string, std::string> listener_cert_;  // Kind -> its cert_file.
    bool tls_needed_ = false;
    std::uint32_t tls_line_ = 0;
    std::set<std::string> addresses_;
};

}  // namespace

bool cidr_valid(const std::string& text) {
    std::size_t slash = text.find('/');
    std::string address = text.substr(0, slash);
    unsigned char bytes[16];
    unsigned bits_max = 0;
    if (inet_pton(AF_INET, address.c_str(), bytes) == 1) {
        bits_max = 32;
    } else if (inet_pton(AF_INET6, address.c_str(), bytes) == 1) {
        bits_max = 128;
    } else {
        return false;
    }
    if (slash == std::string::npos) return true;
    const char* begin = text.data() + slash + 1;
    const char* end = text.data() + text.size();
    unsigned bits = 0;
    auto [ptr, ec] = std::from_chars(begin, end, bits);
    return ec == std::errc() && ptr == end && begin != end && bits <= bits_max;
}

Status config_check(const Settings& settings, std::string* error) {
    RP_ASSERT(error != nullptr);
    Checker checker(settings, error);
    checker.run();
    return checker.failed() ? Status::invalid : Status::ok;
}

}  // namespace rp::config
