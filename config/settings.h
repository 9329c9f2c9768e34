// config/settings.h: typed settings of ringpostd, with the defaults a bare config gets.
//
// Owns: plain values only; parsing is config_parse.h, cross-field checks config_check.h.
// Units are in the names (_ms, _us, _bytes, _s). Paths are absolute after parsing
// (relative ones are resolved against the working directory).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace rp::config {

struct ListenerSettings {
    std::string address;   // "127.0.0.1:25", "[::1]:25", "*:25".
    std::string kind;      // smtp: mx|submission|smtps; pop3: pop3|pop3s; imap: imap|imaps.
    std::uint32_t line = 0;  // Where it was defined, for messages.
    std::string cert_file;   // TLS: this listener's own certificate (else [tls]'s default).
    std::string key_file;
};

struct ServerSettings {
    std::string hostname = "localhost";
    unsigned cores = 0;                 // 0: one shard per online CPU.
    bool pin_cores = true;
    std::string data_dir = "data";
    std::string log_target = "stderr";  // "stderr" or a file path.
    std::string log_level = "info";     // debug|info|warn|error.
};

struct EngineSettings {
    unsigned ring_entries = 1024;
    unsigned recv_buffer_count = 1024;
    std::uint32_t recv_buffer_bytes = 16384;
    unsigned sessions_per_shard = 4096;
    std::uint32_t commit_window_us = 1000;   // Longest a durable reply waits for batching.
    unsigned commit_batch_max = 256;         // Messages per group commit at most.
    unsigned connections_per_ip = 64;        // 0: no limit.
    std::uint64_t shutdown_grace_ms = 10'000;
    std::vector<ListenerSettings> test_echo_listeners;  // Tests only: a line-echo protocol.
};

// RFC 5321 4.5.3.2 defaults.
struct SmtpTimeouts {
    std::uint64_t greeting_ms = 5 * 60'000;
    std::uint64_t mail_ms = 5 * 60'000;
    std::uint64_t rcpt_ms = 5 * 60'000;
    std::uint64_t data_init_ms = 2 * 60'000;
    std::uint64_t data_block_ms = 3 * 60'000;
    std::uint64_t data_end_ms = 10 * 60'000;
    std::uint64_t idle_ms = 5 * 60'000;      // Server timeout waiting for the next command.
};

struct SmtpSettings {
    std::vector<ListenerSettings> listeners;
    std::uint64_t message_bytes_max = 25ull << 20;
    unsigned recipients_max = 1000;
    std::uint32_t line_bytes_max = 1000;     // RFC 5321 4.5.3.1.6: text line 1000 octets.
    SmtpTimeouts timeouts;
    std::vector<std::string> trusted_networks;  // CIDR: may relay without authentication.
};

struct MailboxProtocolSettings {
    std::vector<ListenerSettings> listeners;
    std::uint64_t idle_timeout_ms = 0;       // Set per protocol in the defaults below.
    // FETCH literals and RETRs of at least this many bytes go from the store's segment to the
    // socket by splice (plaintext connections; RETR only for bodies without dot lines);
    // smaller ones are copied. Measured (bench/compare_splice.sh): splice costs more CPU per
    // message than the copy (2.2-2.6x at 4 KiB, 1.1-1.3x at 1 MiB) but carries concurrent
    // big FETCHes faster (1.7x with 10 clients at 1 MiB), so only big bodies take it.
    std::uint64_t splice_bytes_min = 1u << 20;
};

// [[tls.certificates]]: a certificate chosen by the client's SNI name (any listener).
struct TlsCertificateSettings {
    std::vector<std::string> names;          // "mail.example.net", "*.example.org".
    std::string cert_file;
    std::string key_file;
    std::uint32_t line = 0;
};

struct TlsSettings {
    std::string cert_file;                   // PEM; empty with self_signed: made at start.
    std::string key_file;
    bool self_signed = false;                // Make a self-signed pair if the files are absent.
    std::string min_version = "1.2";         // "1.2" or "1.3".
    std::string ciphers;                     // OpenSSL-style list; empty: ChaCha20 first.
    // Key exchange groups, most preferred first (rp::tls::groups_default): the server's and
    // the relay client's. X25519 first, as real mail clients offer it.
    std::vector<std::string> groups = {"X25519", "P-256", "P-384"};
    std::uint64_t handshake_timeout_ms = 30'000;
    std::uint64_t ticket_lifetime_s = 1800;  // Session tickets (resumption); 0: off; <= 1800.
                                             // Also how often the ticket key rotates.
    std::vector<TlsCertificateSettings> certificates;  // By SNI name; the default is above.
};

struct AuthSettings {
    std::string accounts_file;               // Empty: <data_dir>/accounts.
    bool plaintext_loopback = false;         // Offer AUTH without TLS to 127.0.0.0/8 and ::1.
    unsigned failures_max = 10;              // Failed AUTHs per client address per window.
    std::uint64_t failure_window_s = 900;
    std::uint64_t failure_delay_ms = 1000;   // First failure; doubles per failure.
    std::uint64_t failure_delay_max_ms = 8000;
    unsigned hash_threads = 2;               // Helper threads for password hashing.
    bool sender_login_match = true;          // Submission: MAIL FROM must be the user (553).
};

struct DnsSettings {
    std::vector<std::string> resolvers;      // "127.0.0.1:53"; empty: resolv_conf's nameservers.
    std::string resolv_conf = "/etc/resolv.conf";  // Read at start when resolvers is empty.
    std::uint64_t timeout_ms = 5'000;
    unsigned attempts = 3;
};

struct RelaySettings {
    std::vector<std::uint64_t> retry_schedule_s = {300, 900, 1800, 3600, 7200, 14400};
    std::uint64_t max_lifetime_s = 5 * 24 * 3600;  // Then bounce (RFC 5321 4.5.4.1: 4-5 d).
    std::uint64_t connect_timeout_ms = 30'000;
    unsigned deliveries_per_shard_max = 256;       // About 20 KiB each (receive buffer).
    unsigned deliveries_per_destination_max = 4;   // Connections to one domain, all shards.
    std::uint64_t connection_idle_ms = 2'000;      // An unused connection stays for reuse.
    std::uint16_t port = 25;                       // Remote MX port (tests use another).
    std::uint64_t scan_interval_ms = 1'000;        // How often each shard looks at its spool.
    std::string tls = "may";                       // Outbound STARTTLS: none, may, verify.
    std::string tls_ca_file;                       // For verify; empty: /etc/ssl/certs.
};

struct DomainSettings {
    std::string name;
    std::uint32_t line = 0;
};

struct UserSettings {
    std::string address;                     // local@domain, domain must be a [[domain]].
    std::string password;                    // Plaintext (demo); or password_hash.
    std::string password_hash;               // "$argon2id$..." (ringpost user hash).
    std::uint32_t line = 0;
};

// [store]: the mail store and the daemon's upkeep of it (protocols/common/store_upkeep.h).
struct StoreSettings {
    std::uint32_t segment_bytes = 256u << 20;          // Log segment size (new segments).
    std::uint64_t snapshot_log_bytes = 64ull << 20;    // Snapshot after this much log, when quiet.
    std::uint64_t snapshot_log_bytes_max = 512ull << 20;  // ... and at once past this much.
    std::uint64_t snapshot_quiet_ms = 200;             // No commit for this long is quiet.
    std::uint64_t upkeep_interval_ms = 1000;           // How often upkeep looks for work.
    std::uint64_t gc_interval_ms = 60'000;             // Body GC rounds across shards.
    std::uint64_t compact_step_bytes = 1ull << 20;     // Bytes relocated per compaction step.
    unsigned batches_inflight = 2;                     // Group-commit batches writing/syncing at once.
    std::uint32_t prewrite_bytes = 0;                  // Tail segment written ahead (0: off).
};

struct Settings {
    std::string source_path;                 // The file these came from (absolute).
    ServerSettings server;
    EngineSettings engine;
    StoreSettings store;
    SmtpSettings smtp;
    MailboxProtocolSettings pop3{{}, 10 * 60'000};   // RFC 1939 3: at least 10 minutes.
    MailboxProtocolSettings imap{{}, 30 * 60'000};   // RFC 9051 5.4: at least 30 minutes.
    TlsSettings tls;
    AuthSettings auth;
    DnsSettings dns;
    RelaySettings relay;
    std::vector<DomainSettings> domains;
    std::vector<UserSettings> users;
};

// Every setting as ("section.key", value text), in a stable order: for logs and diffs.
std::vector<std::pair<std::string, std::string>> settings_flatten(const Settings& settings);

// True if a changed value of `key` (as from settings_flatten) takes effect on SIGHUP;
// the others need a restart.
bool settings_reloadable(const std::string& key);

struct SettingsChange {
    std::string key;
    std::string before;
    std::string after;
    bool reloadable;
};
std::vector<SettingsChange> settings_diff(const Settings& before, const Settings& after);

}  // namespace rp::config
