#include "config/config_parse.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <set>

// Debian's libtomlplusplus.so is built with exceptions, so its no-exception entry points
// (toml::noex) do not exist there: compile toml++ header-only into this file instead. The
// CMake target still provides the include path and version check.
#undef TOML_HEADER_ONLY
#undef TOML_SHARED_LIB
#define TOML_SHARED_LIB 0
#define TOML_HEADER_ONLY 1
#include <toml++/toml.h>

#include "config/config_check.h"
#include "core/limits.h"

static_assert(TOML_EXCEPTIONS == 0, "config parsing runs without exceptions");

namespace rp::config {
namespace {

struct Context {
    std::string file;
    std::string error;
    bool failed() const { return !error.empty(); }
    void fail(std::uint32_t line, const std::string& key, const std::string& message) {
        if (failed()) return;  // The first error is the one to fix first.
        error = file + ":" + std::to_string(line) + ": " + key + ": " + message;
    }
};

std::uint32_t line_of(const toml::node& node) { return node.source().begin.line; }

// Reads the keys of one table; every key read is marked, and finish() reports the rest.
class TableReader {
public:
    TableReader(Context& context, const toml::table& table, std::string path)
        : context_(context), table_(table), path_(std::move(path)) {}

    std::string key_name(std::string_view key) const {
        return path_.empty() ? std::string(key) : path_ + "." + std::string(key);
    }

    const toml::node* find(std::string_view key) {
        seen_.insert(std::string(key));
        return table_.get(key);
    }

    template <typename T>
    void integer(std::string_view key, T& out, std::int64_t min, std::int64_t max) {
        const toml::node* node = find(key);
        if (node == nullptr) return;
        if (!node->is_integer()) {
            context_.fail(line_of(*node), key_name(key), "expected an integer");
            return;
        }
        std::int64_t value = node->as_integer()->get();
        if (value < min || value > max) {
            context_.fail(line_of(*node), key_name(key),
                          "must be between " + std::to_string(min) + " and " +
                              std::to_string(max) + ", not " + std::to_string(value));
            return;
        }
        out = static_cast<T>(value);
    }

    void boolean(std::string_view key, bool& out) {
        const toml::node* node = find(key);
        if (node == nullptr) return;
        if (!node->is_boolean()) {
            context_.fail(line_of(*node), key_name(key), "expected true or false");
            return;
        }
        out = node->as_boolean()->get();
    }

    void string(std::string_view key, std::string& out) {
        const toml::node* node = find(key);
        if (node == nullptr) return;
        if (!node->is_string()) {
            context_.fail(line_of(*node), key_name(key), "expected a string");
            return;
        }
        out = node->as_string()->get();
    }

    void strings(std::string_view key, std::vector<std::string>& out) {
        const toml::node* node = find(key);
        if (node == nullptr) return;
        const toml::array* array = node->as_array();
        if (array == nullptr) {
            context_.fail(line_of(*node), key_name(key), "expected an array of strings");
            return;
        }
        out.clear();
        for (const toml::node& item : *array) {
            if (!item.is_string()) {
                context_.fail(line_of(item), key_name(key), "expected an array of strings");
                return;
            }
            out.push_back(item.as_string()->get());
        }
    }

    void integers(std::string_view key, std::vector<std::uint64_t>& out, std::int64_t min,
                  std::int64_t max) {
        const toml::node* node = find(key);
        if (node == nullptr) return;
        const toml::array* array = node->as_array();
        if (array == nullptr) {
            context_.fail(line_of(*node), key_name(key), "expected an array of integers");
            return;
        }
        out.clear();
        for (const toml::node& item : *array) {
            if (!item.is_integer() || item.as_integer()->get() < min ||
                item.as_integer()->get() > max) {
                context_.fail(line_of(item), key_name(key),
                              "expected integers between " + std::to_string(min) + " and " +
                                  std::to_string(max));
                return;
            }
            out.push_back(static_cast<std::uint64_t>(item.as_integer()->get()));
        }
    }

    // A sub-table, or null when absent (or not a table: reported).
    const toml::table* table(std::string_view key) {
        const toml::node* node = find(key);
        if (node == nullptr) return nullptr;
        if (!node->is_table()) {
            context_.fail(line_of(*node), key_name(key), "expected a table");
            return nullptr;
        }
        return node->as_table();
    }

    // An array of tables ([[key]]), each passed to `read`.
    template <typename F>
    void tables(std::string_view key, F&& read) {
        const toml::node* node = find(key);
        if (node == nullptr) return;
        const toml::array* array = node->as_array();
        if (array == nullptr) {
            context_.fail(line_of(*node), key_name(key), "expected an array of tables [[...]]");
            return;
        }
        for (const toml::node& item : *array) {
            if (!item.is_table()) {
                context_.fail(line_of(item), key_name(key), "expected a table");
                return;
            }
            read(*item.as_table(), line_of(item));
        }
    }

    void finish() {
        for (auto&& [key, node] : table_) {
            std::string name(key.str());
            if (seen_.count(name) == 0) {
                context_.fail(key.source().begin.line, key_name(name), "unknown key");
            }
        }
    }

private:
    Context& context_;
    const toml::table& table_;
    std::string path_;
    std::set<std::string> seen_;
};

constexpr std::int64_t ms_max = 7 * 24 * 3600 * 1000ll;  // A week.

void read_listeners(Context& context, TableReader& reader, const std::string& section,
                    std::vector<ListenerSettings>& out) {
    out.clear();
    reader.tables("listener", [&](const toml::table& table, std::uint32_t line) {
        TableReader item(context, table, section + ".listener");
        ListenerSettings listener;
        listener.line = line;
        item.string("address", listener.address);
        item.string("kind", listener.kind);
        item.string("cert_file", listener.cert_file);
        item.string("key_file", listener.key_file);
        item.finish();
        if (listener.address.empty()) {
            context.fail(line, section + ".listener.address", "missing");
        }
        out.push_back(std::move(listener));
    });
}

void read_server(Context& context, TableReader& root, Settings& s) {
    const toml::table* table = root.table("server");
    if (table == nullptr) return;
    TableReader reader(context, *table, "server");
    reader.string("hostname", s.server.hostname);
    reader.integer("cores", s.server.cores, 0, 256);
    reader.boolean("pin_cores", s.server.pin_cores);
    reader.string("data_dir", s.server.data_dir);
    reader.string("log_target", s.server.log_target);
    reader.string("log_level", s.server.log_level);
    reader.finish();
}

void read_engine(Context& context, TableReader& root, Settings& s) {
    const toml::table* table = root.table("engine");
    if (table == nullptr) return;
    TableReader reader(context, *table, "engine");
    EngineSettings& e = s.engine;
    reader.integer("ring_entries", e.ring_entries, 64, 32768);
    reader.integer("recv_buffer_count", e.recv_buffer_count, 16, 32768);
    reader.integer("recv_buffer_bytes", e.recv_buffer_bytes, 512, 1 << 20);
    reader.integer("sessions_per_shard", e.sessions_per_shard, 1, 1 << 20);
    reader.integer("commit_window_us", e.commit_window_us, 0, 1'000'000);
    reader.integer("commit_batch_max", e.commit_batch_max, 1, 65536);
    reader.integer("connections_per_ip", e.connections_per_ip, 0, 1 << 20);
    reader.integer("shutdown_grace_ms", e.shutdown_grace_ms, 0, 3'600'000);
    e.test_echo_listeners.clear();
    reader.tables("test_echo_listener", [&](const toml::table& item_table, std::uint32_t line) {
        TableReader item(context, item_table, "engine.test_echo_listener");
        ListenerSettings listener;
        listener.line = line;
        listener.kind = "test-echo";
        item.string("address", listener.address);
        item.finish();
        e.test_echo_listeners.push_back(std::move(listener));
    });
    reader.finish();
}

void read_store(Context& context, TableReader& root, Settings& s) {
    const toml::table* table = root.table("store");
    if (table == nullptr) return;
    TableReader reader(context, *table, "store");
    StoreSettings& st = s.store;
    reader.integer("segment_bytes", st.segment_bytes, 1 << 20, 1ll << 30);
    reader.integer("snapshot_log_bytes", st.snapshot_log_bytes, 4096, 1ll << 40);
    reader.integer("snapshot_log_bytes_max", st.snapshot_log_bytes_max, 4096, 1ll << 40);
    reader.integer("snapshot_quiet_ms", st.snapshot_quiet_ms, 0, ms_max);
    reader.integer("upkeep_interval_ms", st.upkeep_interval_ms, 10, ms_max);
    reader.integer("gc_interval_ms", st.gc_interval_ms, 10, ms_max);
    reader.integer("compact_step_bytes", st.compact_step_bytes, 4096, 1ll << 30);
    reader.integer("batches_inflight", st.batches_inflight, 1, limits::store_batches_inflight_max);
    reader.integer("prewrite_bytes", st.prewrite_bytes, 0, 1ll << 30);
    reader.finish();
}

void read_smtp(Context& context, TableReader& root, Settings& s) {
    const toml::table* table = root.table("smtp");
    if (table == nullptr) return;
    TableReader reader(context, *table, "smtp");
    read_listeners(context, reader, "smtp", s.smtp.listeners);
    reader.integer("message_bytes_max", s.smtp.message_bytes_max, 1024, 1ll << 32);
    reader.integer("recipients_max", s.smtp.recipients_max, 1, 100000);
    reader.integer("line_bytes_max", s.smtp.line_bytes_max, 512, 4096);
    reader.strings("trusted_networks", s.smtp.trusted_networks);
    if (const toml::table* timeouts = reader.table("timeouts")) {
        TableReader t(context, *timeouts, "smtp.timeouts");
        SmtpTimeouts& out = s.smtp.timeouts;
        t.integer("greeting_ms", out.greeting_ms, 1, ms_max);
        t.integer("mail_ms", out.mail_ms, 1, ms_max);
        t.integer("rcpt_ms", out.rcpt_ms, 1, ms_max);
        t.integer("data_init_ms", out.data_init_ms, 1, ms_max);
        t.integer("data_block_ms", out.data_block_ms, 1, ms_max);
        t.integer("data_end_ms", out.data_end_ms, 1, ms_max);
        t.integer("idle_ms", out.idle_ms, 1, ms_max);
        t.finish();
    }
    reader.finish();
}

void read_mailbox_protocol(Context& context, TableReader& root, const std::string& name,
                           MailboxProtocolSettings& out) {
    const toml::table* table = root.table(name);
    if (table == nullptr) return;
    TableReader reader(context, *table, name);
    read_listeners(context, reader, name, out.listeners);
    reader.integer("idle_timeout_ms", out.idle_timeout_ms, 1, ms_max);
    reader.integer("splice_bytes_min", out.splice_bytes_min, 0, std::int64_t{1} << 40);
    reader.finish();
}

void read_rest(Context& context, TableReader& root, Settings& s) {
    if (const toml::table* table = root.table("tls")) {
        TableReader reader(context, *table, "tls");
        reader.string("cert_file", s.tls.cert_file);
        reader.string("key_file", s.tls.key_file);
        reader.boolean("self_signed", s.tls.self_signed);
        reader.string("min_version", s.tls.min_version);
        reader.string("ciphers", s.tls.ciphers);
        reader.strings("groups", s.tls.groups);
        reader.integer("handshake_timeout_ms", s.tls.handshake_timeout_ms, 1, ms_max);
        reader.integer("ticket_lifetime_s", s.tls.ticket_lifetime_s, 0, 1800);
        s.tls.certificates.clear();
        reader.tables("certificates", [&](const toml::table& item_table, std::uint32_t line) {
            TableReader item(context, item_table, "tls.certificates");
            TlsCertificateSettings certificate;
            certificate.line = line;
            item.strings("names", certificate.names);
            item.string("cert_file", certificate.cert_file);
            item.string("key_file", certificate.key_file);
            item.finish();
            s.tls.certificates.push_back(std::move(certificate));
        });
        reader.finish();
    }
    if (const toml::table* table = root.table("auth")) {
        TableReader reader(context, *table, "auth");
        reader.string("accounts_file", s.auth.accounts_file);
        reader.boolean("plaintext_loopback", s.auth.plaintext_loopback);
        reader.integer("failures_max", s.auth.failures_max, 1, 1'000'000);
        reader.integer("failure_window_s", s.auth.failure_window_s, 1, 7 * 24 * 3600);
        reader.integer("failure_delay_ms", s.auth.failure_delay_ms, 0, 600'000);
        reader.integer("failure_delay_max_ms", s.auth.failure_delay_max_ms, 0, 600'000);
        reader.integer("hash_threads", s.auth.hash_threads, 1, 64);
        reader.boolean("sender_login_match", s.auth.sender_login_match);
        reader.finish();
    }
    if (const toml::table* table = root.table("dns")) {
        TableReader reader(context, *table, "dns");
        reader.strings("resolvers", s.dns.resolvers);
        reader.integer("timeout_ms", s.dns.timeout_ms, 1, 600'000);
        reader.integer("attempts", s.dns.attempts, 1, 10);
        reader.string("resolv_conf", s.dns.resolv_conf);
        reader.finish();
    }
    if (const toml::table* table = root.table("relay")) {
        TableReader reader(context, *table, "relay");
        reader.integers("retry_schedule_s", s.relay.retry_schedule_s, 1, 7 * 24 * 3600);
        reader.integer("max_lifetime_s", s.relay.max_lifetime_s, 1, 30 * 24 * 3600);
        reader.integer("connect_timeout_ms", s.relay.connect_timeout_ms, 1, 600'000);
        reader.integer("deliveries_per_shard_max", s.relay.deliveries_per_shard_max, 1, 65536);
        reader.integer("deliveries_per_destination_max", s.relay.deliveries_per_destination_max,
                       1, 65536);
        reader.integer("connection_idle_ms", s.relay.connection_idle_ms, 0, 300'000);
        reader.integer("port", s.relay.port, 1, 65535);
        reader.integer("scan_interval_ms", s.relay.scan_interval_ms, 10, 3'600'000);
        reader.string("tls", s.relay.tls);
        reader.string("tls_ca_file", s.relay.tls_ca_file);
        reader.finish();
    }
    s.domains.clear();
    root.tables("domain", [&](const toml::table& table, std::uint32_t line) {
        TableReader reader(context, table, "domain");
        DomainSettings domain;
        domain.line = line;
        reader.string("name", domain.name);
        reader.finish();
        s.domains.push_back(std::move(domain));
    });
    s.users.clear();
    root.tables("user", [&](const toml::table& table, std::uint32_t line) {
        TableReader reader(context, table, "user");
        UserSettings user;
        user.line = line;
        reader.string("address", user.address);
        reader.string("password", user.password);
        reader.string("password_hash", user.password_hash);
        reader.finish();
        s.users.push_back(std::move(user));
    });
}

std::string absolute_path(const std::string& path) {
    if (path.empty()) return path;
    std::error_code ec;
    std::filesystem::path absolute = std::filesystem::absolute(path, ec);
    if (ec) return path;
    return absolute.lexically_normal().string();
}

void resolve_paths(Settings& s) {
    s.server.data_dir = absolute_path(s.server.data_dir);
    if (s.server.log_target != "stderr") s.server.log_target = absolute_path(s.server.log_target);
    s.tls.cert_file = absolute_path(s.tls.cert_file);
    s.tls.key_file = absolute_path(s.tls.key_file);
    for (auto& certificate : s.tls.certificates) {
        certificate.cert_file = absolute_path(certificate.cert_file);
        certificate.key_file = absolute_path(certificate.key_file);
    }
    for (auto* list : {&s.smtp.listeners, &s.pop3.listeners, &s.imap.listeners}) {
        for (auto& listener : *list) {
            listener.cert_file = absolute_path(listener.cert_file);
            listener.key_file = absolute_path(listener.key_file);
        }
    }
    s.auth.accounts_file = absolute_path(s.auth.accounts_file);
}

}  // namespace

Result<Settings> parse_text(std::string_view text, const std::string& source_name,
                            std::string* error) {
    RP_ASSERT(error != nullptr);
    Context context;
    context.file = source_name;
    toml::parse_result parsed = toml::parse(text, source_name);
    if (!parsed) {
        const toml::parse_error& failure = parsed.error();
        *error = source_name + ":" + std::to_string(failure.source().begin.line) +
                 ": syntax: " + std::string(failure.description());
        return Status::invalid;
    }
    const toml::table& root_table = parsed.table();
    Settings settings;
    settings.source_path = source_name;
    TableReader root(context, root_table, "");
    read_server(context, root, settings);
    read_engine(context, root, settings);
    read_store(context, root, settings);
    read_smtp(context, root, settings);
    read_mailbox_protocol(context, root, "pop3", settings.pop3);
    read_mailbox_protocol(context, root, "imap", settings.imap);
    read_rest(context, root, settings);
    root.finish();
    if (context.failed()) {
        *error = context.error;
        return Status::invalid;
    }
    resolve_paths(settings);
    Status status = config_check(settings, error);
    if (status != Status::ok) return status;
    return settings;
}

Result<Settings> parse_file(const std::string& path, std::string* error) {
    RP_ASSERT(error != nullptr);
    std::FILE* file = std::fopen(path.c_str(), "rb");
    if (file == nullptr) {
        *error = path + ": cannot read: " + std::strerror(errno);
        return errno == ENOENT ? Status::not_found : Status::io;
    }
    std::string text;
    char block[8192];
    std::size_t count = 0;
    while ((count = std::fread(block, 1, sizeof(block), file)) > 0) text.append(block, count);
    bool failed = std::ferror(file) != 0;
    int err = errno;
    std::fclose(file);
    if (failed) {
        *error = path + ": cannot read: " + std::strerror(err);
        return Status::io;
    }
    auto settings = parse_text(text, path, error);
    if (settings) settings->source_path = absolute_path(path);
    return settings;
}

}  // namespace rp::config
