#include "config/settings.h"


namespace rp::config {
namespace {

std::string join(const std::vector<std::string>& items) {
    std::string text = "[";
    for (std::size_t i = 0; i < items.size(); ++i) {
        if (i > 0) text += ", ";
        text += items[i];
    }
    return text + "]";
}

std::string listeners_text(const std::vector<ListenerSettings>& listeners) {
    std::vector<std::string> items;
    for (const auto& listener : listeners) items.push_back(listener.address + " " + listener.kind);
    return join(items);
}

}  // namespace

std::vector<std::pair<std::string, std::string>> settings_flatten(const Settings& s) {
    std::vector<std::pair<std::string, std::string>> out;
    auto add = [&out](std::string key, std::string value) {
        out.emplace_back(std::move(key), std::move(value));
    };
    auto num = [](auto value) { return std::to_string(value); };
    add("server.hostname", s.server.hostname);
    add("server.cores", num(s.server.cores));
    add("server.pin_cores", s.server.pin_cores ? "true" : "false");
    add("server.data_dir", s.server.data_dir);
    add("server.log_target", s.server.log_target);
    add("server.log_level", s.server.log_level);
    add("engine.ring_entries", num(s.engine.ring_entries));
    add("engine.recv_buffer_count", num(s.engine.recv_buffer_count));
    add("engine.recv_buffer_bytes", num(s.engine.recv_buffer_bytes));
    add("engine.sessions_per_shard", num(s.engine.sessions_per_shard));
    add("engine.commit_window_us", num(s.engine.commit_window_us));
    add("engine.commit_batch_max", num(s.engine.commit_batch_max));
    add("engine.connections_per_ip", num(s.engine.connections_per_ip));
    add("engine.shutdown_grace_ms", num(s.engine.shutdown_grace_ms));
    add("engine.test_echo_listeners", listeners_text(s.engine.test_echo_listeners));
    add("store.segment_bytes", num(s.store.segment_bytes));
    add("store.snapshot_log_bytes", num(s.store.snapshot_log_bytes));
    add("store.snapshot_log_bytes_max", num(s.store.snapshot_log_bytes_max));
    add("store.snapshot_quiet_ms", num(s.store.snapshot_quiet_ms));
    add("store.upkeep_interval_ms", num(s.store.upkeep_interval_ms));
    add("store.gc_interval_ms", num(s.store.gc_interval_ms));
    add("store.compact_step_bytes", num(s.store.compact_step_bytes));
    add("store.batches_inflight", num(s.store.batches_inflight));
    add("store.prewrite_bytes", num(s.store.prewrite_bytes));
    add("smtp.listeners", listeners_text(s.smtp.listeners));
    add("smtp.message_bytes_max", num(s.smtp.message_bytes_max));
    add("smtp.recipients_max", num(s.smtp.recipients_max));
    add("smtp.line_bytes_max", num(s.smtp.line_bytes_max));
    add("smtp.timeouts.greeting_ms", num(s.smtp.timeouts.greeting_ms));
    add("smtp.timeouts.mail_ms", num(s.smtp.timeouts.mail_ms));
    add("smtp.timeouts.rcpt_ms", num(s.smtp.timeouts.rcpt_ms));
    add("smtp.timeouts.data_init_ms", num(s.smtp.timeouts.data_init_ms));
    add("smtp.timeouts.data_block_ms", num(s.smtp.timeouts.data_block_ms));
    add("smtp.timeouts.data_end_ms", num(s.smtp.timeouts.data_end_ms));
    add("smtp.timeouts.idle_ms", num(s.smtp.timeouts.idle_ms));
    add("smtp.trusted_networks", join(s.smtp.trusted_networks));
    add("pop3.listeners", listeners_text(s.pop3.listeners));
    add("pop3.idle_timeout_ms", num(s.pop3.idle_timeout_ms));
    add("pop3.splice_bytes_min", num(s.pop3.splice_bytes_min));
    add("imap.listeners", listeners_text(s.imap.listeners));
    add("imap.idle_timeout_ms", num(s.imap.idle_timeout_ms));
    add("imap.splice_bytes_min", num(s.imap.splice_bytes_min));
    add("tls.cert_file", s.tls.cert_file);
    add("tls.key_file", s.tls.key_file);
    add("tls.self_signed", s.tls.self_signed ? "true" : "false");
    add("tls.min_version", s.tls.min_version);
    add("tls.ciphers", s.tls.ciphers);
    add("tls.groups", join(s.tls.groups));
    add("tls.handshake_timeout_ms", num(s.tls.handshake_timeout_ms));
    add("tls.ticket_lifetime_s", num(s.tls.ticket_lifetime_s));
    std::vector<std::string> certificates;
    for (const auto& certificate : s.tls.certificates) {
        certificates.push_back(join(certificate.names) + " " + certificate.cert_file);
    }
    for (const auto* list : {&s.smtp.listeners, &s.pop3.listeners, &s.imap.listeners}) {
        for (const auto& listener : *list) {
            if (!listener.cert_file.empty()) {
                certificates.push_back(listener.kind + " " + listener.cert_file);
            }
        }
    }
    add("tls.certificates", join(certificates));
    add("auth.accounts_file", s.auth.accounts_file);
    add("auth.plaintext_loopback", s.auth.plaintext_loopback ? "true" : "false");
    add("auth.failures_max", num(s.auth.failures_max));
    add("auth.failure_window_s", num(s.auth.failure_window_s));
    add("auth.failure_delay_ms", num(s.auth.failure_delay_ms));
    add("auth.failure_delay_max_ms", num(s.auth.failure_delay_max_ms));
    add("auth.hash_threads", num(s.auth.hash_threads));
    add("auth.sender_login_match", s.auth.sender_login_match ? "true" : "false");
    add("dns.resolvers", join(s.dns.resolvers));
    add("dns.timeout_ms", num(s.dns.timeout_ms));
    add("dns.attempts", num(s.dns.attempts));
    std::vector<std::string> schedule;
    for (auto value : s.relay.retry_schedule_s) schedule.push_back(num(value));
    add("relay.retry_schedule_s", join(schedule));
    add("relay.max_lifetime_s", num(s.relay.max_lifetime_s));
    add("relay.connect_timeout_ms", num(s.relay.connect_timeout_ms));
    add("relay.deliveries_per_shard_max", num(s.relay.deliveries_per_shard_max));
    add("relay.deliveries_per_destination_max", num(s.relay.deliveries_per_destination_max));
    add("relay.connection_idle_ms", num(s.relay.connection_idle_ms));
    add("relay.port", num(s.relay.port));
    add("relay.scan_interval_ms", num(s.relay.scan_interval_ms));
    std::vector<std::string> domains;
    for (const auto& domain : s.domains) domains.push_back(domain.name);
    add("domain", join(domains));
    // Passwords stay out of logs; settings_diff compares them separately.
    std::vector<std::string> users;
    for (const auto& user : s.users) users.push_back(user.address);
    add("user", join(users));
    return out;
}

bool settings_reloadable(const std::string& key) {
    static const char* const reloadable[] = {
        "server.log_level",     "engine.connections_per_ip", "engine.commit_window_us",
        "engine.commit_batch_max", "engine.shutdown_grace_ms", "smtp.message_bytes_max",
        "smtp.recipients_max",  "smtp.line_bytes_max",       "smtp.trusted_networks",
        "pop3.idle_timeout_ms", "imap.idle_timeout_ms",      "dns.resolvers",
        "dns.timeout_ms",       "dns.attempts",              "relay.retry_schedule_s",
        "relay.max_lifetime_s", "relay.connect_timeout_ms",  "domain",
        "user",                 "tls.cert_file",             "tls.key_file",
        "tls.certificates",
    };
    for (const char* name : reloadable) {
        if (key == name) return true;
    }
    return key.rfind("smtp.timeouts.", 0) == 0;
}

std::vector<SettingsChange> settings_diff(const Settings& before, const Settings& after) {
    auto a = settings_flatten(before);
    auto b = settings_flatten(after);
    std::vector<SettingsChange> changes;
    for (std::size_t i = 0; i < a.size() && i < b.size(); ++i) {
        if (a[i].second != b[i].second) {
            changes.push_back({a[i].first, a[i].second, b[i].second,
                               settings_reloadable(a[i].first)});
        }
    }
    for (const auto& user : after.users) {
        for (const auto& old : before.users) {
            if (old.address == user.address && old.password != user.password) {
                changes.push_back({"user.password " + user.address, "(hidden)", "(changed)",
                                   true});
            }
        }
    }
    return changes;
}

}  // namespace rp::config
