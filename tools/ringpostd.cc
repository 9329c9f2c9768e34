// tools/ringpostd.cc: the ringpost daemon.
//
//   ringpostd --config FILE                  run in the foreground until SIGTERM
//   ringpostd --check-config --config FILE   print OK or the first error; exit 0 or 1
//
// Start-up errors (unreadable config, port in use, missing certificate) print one line to
// stderr and exit 1. SIGTERM/SIGINT: stop accepting, let sessions finish (bounded by
// engine.shutdown_grace_ms), exit 0. SIGHUP: re-read the config, log what changed, apply
// what is safe to change while running.
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include "config/config_parse.h"
#include "core/echo_protocol.h"
#include "core/log.h"
#include "core/shard.h"
#include "core/tls.h"
#include "protocols/auth/account_db.h"
#include "protocols/auth/auth_pool.h"
#include "protocols/common/login_checker.h"
#include "protocols/common/mail_access.h"
#include "protocols/common/shard_mail.h"
#include "protocols/common/store_upkeep.h"
#include "protocols/imap/imap_session.h"
#include "protocols/pop3/pop3_session.h"
#include "protocols/smtp/relay_agent.h"
#include "protocols/smtp/routing.h"
#include "protocols/smtp/smtp_session.h"

#ifdef RP_MIMALLOC
#include <mimalloc.h>
#endif

namespace {

using rp::Status;
using rp::config::Settings;

int usage() {
    std::fprintf(stderr, "usage: ringpostd [--check-config] --config FILE\n");
    return 2;
}

int fail(const std::string& line) {
    std::fprintf(stderr, "ringpostd: %s\n", line.c_str());
    return 1;
}

// What each shard keeps for the daemon: the protocol factories it serves and the settings
// it runs with (replaced on SIGHUP, on the shard's own thread).
class DaemonShard final : public rp::ShardLocal {
public:
    std::shared_ptr<const Settings> settings;
    std::unique_ptr<rp::EchoFactory> echo;
    // Destroyed last of the mail parts (members go in reverse order): everything below
    // refers to it.
    std::unique_ptr<rp::mail::ShardMail> mail;
    std::vector<std::unique_ptr<rp::smtp::SmtpFactory>> smtp;
    // Destroyed before `mail`, which it observes; the POP3 factories go before it.
    std::unique_ptr<rp::mail::MailAccess> access;
    // POP3 and IMAP logins (argon2id on the hash pool, throttled); the factories use it.
    std::unique_ptr<rp::mail::AccountChecker> logins;
    std::vector<std::unique_ptr<rp::pop3::Pop3Factory>> pop3;
    std::vector<std::unique_ptr<rp::imap::ImapFactory>> imap;
    // Outbound delivery of this shard's spool; destroyed first (it works on `mail`).
    std::unique_ptr<rp::smtp::RelayAgent> relay;
};

// What every shard shares, read-only once the shards run.
struct Shared {
    std::shared_ptr<const Settings> settings;
    std::shared_ptr<const rp::smtp::Directory> directory;
    std::unique_ptr<rp::mail::MailCluster> cluster;
    std::unique_ptr<rp::mail::AccessCluster> access_cluster;
    // TLS and AUTH (tls_auth_setup / tls_auth_reload below).
    std::shared_ptr<const rp::tls::TlsMaterial> tls;
    std::shared_ptr<const rp::auth::AccountDb> accounts;
    std::unique_ptr<rp::auth::HashPool> hash_pool;   // Stopped before the shards go away.
    std::unique_ptr<rp::auth::AuthThrottle> throttle;
    std::vector<DaemonShard*> locals;  // By shard index; each shard sets its own entry.
    std::shared_ptr<const rp::smtp::RelayOptions> relay;  // [dns], [relay].
    std::unique_ptr<rp::smtp::RelayCluster> relay_cluster;  // Per-destination limits.
};

// ---- TLS and AUTH ----

bool is_tls_kind(std::string_view kind) {
    return kind == "smtps" || kind == "pop3s" || kind == "imaps";
}

// Reads the certificate and key (making a self-signed pair first if allowed and absent).
// Blocking file I/O: start-up and the signal thread only.
// Reads one more certificate into `material` (SNI names or listener kinds set by the caller).
bool tls_certificate_add(rp::tls::TlsMaterial& material, const std::string& cert_file,
                         const std::string& key_file, std::string* error) {
    auto certificate = rp::tls::certificate_load(cert_file, key_file, error);
    if (!certificate) return false;
    material.certificates.push_back(std::move(certificate.value()));
    return true;
}

// The default certificate, then [[tls.certificates]] (by SNI name), then the listeners' own.
// The session ticket keys are new; `previous_keys` (the running ones) still decrypt.
std::shared_ptr<const rp::tls::TlsMaterial> tls_material_load(
    const Settings& s, const rp::tls::TicketKeys* previous_keys, std::string* error) {
    if (s.tls.cert_file.empty() || s.tls.key_file.empty()) return nullptr;
    if (s.tls.self_signed && (access(s.tls.cert_file.c_str(), R_OK) != 0 ||
                              access(s.tls.key_file.c_str(), R_OK) != 0)) {
        if (rp::tls::self_signed_make(s.tls.cert_file, s.tls.key_file, s.server.hostname,
                                      error) != Status::ok) {
            return nullptr;
        }
        rp::log::info("tls: made a self-signed ECDSA P-256 certificate for {} in {}",
                      s.server.hostname, s.tls.cert_file);
    }
    auto certificate = rp::tls::certificate_load(s.tls.cert_file, s.tls.key_file, error);
    if (!certificate) return nullptr;
    auto material = std::make_shared<rp::tls::TlsMaterial>();
    material->certificates.push_back(std::move(certificate.value()));
    material->min_version = s.tls.min_version == "1.3" ? 13 : 12;
    material->ciphers = s.tls.ciphers;
    auto groups = rp::tls::groups_parse(s.tls.groups, error);
    if (!groups) return nullptr;
    material->groups = std::move(groups.value());
    material->ticket_lifetime_s = static_cast<std::uint32_t>(s.tls.ticket_lifetime_s);
    for (const auto& named : s.tls.certificates) {
        if (!tls_certificate_add(*material, named.cert_file, named.key_file, error)) return nullptr;
        material->certificates.back().server_names = named.names;
    }
    for (const auto* list : {&s.smtp.listeners, &s.pop3.listeners, &s.imap.listeners}) {
        for (const auto& listener : *list) {
            if (listener.cert_file.empty()) continue;
            if (!tls_certificate_add(*material, listener.cert_file, listener.key_file, error)) {
                return nullptr;
            }
            material->certificates.back().listener_kinds = {listener.kind};
        }
    }
    if (material->ticket_lifetime_s > 0) {
        auto keys = rp::tls::ticket_keys_rotate(previous_keys);
        if (!keys) {
            *error = "cannot make session ticket keys";
            return nullptr;
        }
        material->ticket_keys = std::move(keys.value());
    }
    // Validate once here, so that a bad file is reported before any shard uses it.
    auto context = rp::tls::TlsContext::create(*material, error);
    if (!context) {
        *error = s.tls.cert_file + ": " + *error;
        return nullptr;
    }
    return material;
}

std::shared_ptr<const rp::auth::AccountDb> accounts_load(const Settings& s, std::string* error) {
    auto db = rp::auth::AccountDb::load(rp::auth::accounts_path(s), error);
    if (!db) return nullptr;
    db->add_config_users(s.users);
    return std::make_shared<const rp::auth::AccountDb>(std::move(db.value()));
}

// Accounts from the accounts file are mailboxes too: add them as users for the Directory.
void users_add_from_accounts(Settings& s, const rp::auth::AccountDb& accounts) {
    for (const auto& [address, credential] : accounts.entries()) {
        bool known = false;
        for (const auto& user : s.users) known = known || rp::smtp::ascii_lower(user.address) == address;
        if (known) continue;
        rp::config::UserSettings user;
        user.address = address;
        user.password_hash = credential;
        s.users.push_back(std::move(user));
    }
}

void smtp_auth_apply(DaemonShard& local, const Shared& shared, const Settings& s,
                     const std::shared_ptr<const rp::auth::AccountDb>& accounts) {
    for (auto& factory : local.smtp) {
        rp::smtp::AuthContext context;
        context.pool = shared.hash_pool.get();
        context.throttle = shared.throttle.get();
        context.accounts = accounts;
        context.plaintext_loopback = s.auth.plaintext_loopback;
        factory->set_auth(std::move(context));
    }
}

rp::mail::LoginContext login_context(const Shared& shared, const Settings& s,
                                     const std::shared_ptr<const rp::auth::AccountDb>& accounts) {
    rp::mail::LoginContext context;
    context.pool = shared.hash_pool.get();
    context.throttle = shared.throttle.get();
    context.accounts = accounts;
    context.plaintext_loopback = s.auth.plaintext_loopback;
    return context;
}

Status shard_tls_apply(rp::Shard& shard, const std::shared_ptr<const rp::tls::TlsMaterial>& tls) {
    if (tls == nullptr) return Status::ok;
    std::string error;
    auto context = rp::tls::TlsContext::create(*tls, &error);
    if (!context) {
        rp::log::error("shard {}: tls: {}", shard.index(), error);
        return context.status();
    }
    shard.sessions().set_tls_context(std::move(context.value()));
    return Status::ok;
}

// The listener kinds this build serves. Others in the config are reported at start and not
// bound.
bool served_kind(std::string_view kind) {
    return kind == "mx" || kind == "submission" || kind == "smtps" || kind == "test-echo" ||
           kind == "pop3" || kind == "pop3s" || kind == "imap" || kind == "imaps";
}

bool add_listeners(const std::vector<rp::config::ListenerSettings>& list,
                   rp::EngineOptions& options, std::string* error) {
    for (const auto& listener : list) {
        if (!served_kind(listener.kind)) {
            rp::log::warn("listener {} ({}): not served by this build yet", listener.address,
                          listener.kind);
            continue;
        }
        rp::ListenerSpec spec;
        spec.kind = listener.kind;
        if (rp::listener_address_parse(listener.address, spec) != Status::ok) {
            *error = "bad listener address " + listener.address;
            return false;
        }
        options.listeners.push_back(std::move(spec));
    }
    return true;
}

rp::EngineOptions engine_options(const Settings& s, std::string* error, bool* ok) {
    rp::EngineOptions options;
    options.cores = s.server.cores;
    options.pin_cores = s.server.pin_cores;
    options.ring_entries = s.engine.ring_entries;
    options.recv_buffer_count = s.engine.recv_buffer_count;
    options.recv_buffer_bytes = s.engine.recv_buffer_bytes;
    options.sessions_per_shard = s.engine.sessions_per_shard;
    options.connections_per_ip = s.engine.connections_per_ip;
    options.shutdown_grace_ms = s.engine.shutdown_grace_ms;
    *ok = add_listeners(s.smtp.listeners, options, error) &&
          add_listeners(s.pop3.listeners, options, error) &&
          add_listeners(s.imap.listeners, options, error) &&
          add_listeners(s.engine.test_echo_listeners, options, error);
    return options;
}

// Checks what must exist before we bind anything: a readable certificate and key for TLS
// listeners (unless self_signed makes them), a data folder we can create.
bool check_files(const Settings& s, std::string* error) {
    bool tls = false;
    for (const auto* list : {&s.smtp.listeners, &s.pop3.listeners, &s.imap.listeners}) {
        for (const auto& listener : *list) {
            tls = tls || listener.kind == "smtps" || listener.kind == "pop3s" ||
                  listener.kind == "imaps";
        }
    }
    if (tls && !s.tls.self_signed) {
        for (const std::string* path : {&s.tls.cert_file, &s.tls.key_file}) {
            if (access(path->c_str(), R_OK) != 0) {
                *error = "cannot read TLS file " + *path + ": " + std::strerror(errno);
                return false;
            }
        }
    }
    std::error_code ec;
    std::filesystem::create_directories(s.server.data_dir, ec);
    if (ec) {
        *error = "cannot create data_dir " + s.server.data_dir + ": " + ec.message();
        return false;
    }
    return true;
}

rp::mail::CommitPolicy commit_policy_of(const Settings& s) {
    rp::mail::CommitPolicy policy;
    policy.window_ns = std::uint64_t{s.engine.commit_window_us} * 1000;
    policy.batch_max = s.engine.commit_batch_max;
    return policy;
}

Status shard_setup(rp::Shard& shard, Shared& shared) {
    const std::shared_ptr<const Settings>& settings = shared.settings;
    auto local = std::make_unique<DaemonShard>();
    local->settings = settings;
    std::string error;
    rp::storage::StoreOptions store_options;
    store_options.segment_bytes = settings->store.segment_bytes;
    store_options.batches_inflight_max = settings->store.batches_inflight;
    store_options.prewrite_bytes = settings->store.prewrite_bytes;
    auto mail = rp::mail::ShardMail::open(shard, *shared.cluster, shared.directory,
                                          settings->server.data_dir, &error, store_options);
    if (!mail) {
        rp::log::error("shard {}: {}", shard.index(), error);
        return mail.status();
    }
    local->mail = std::move(mail.value());
    local->mail->set_commit_policy(commit_policy_of(*settings));
    local->relay = std::make_unique<rp::smtp::RelayAgent>(*local->mail, *shared.relay,
                                                          shared.relay_cluster.get());
    local->relay->start();
    local->access = std::make_unique<rp::mail::MailAccess>(*local->mail, *shared.access_cluster);
    local->logins = std::make_unique<rp::mail::AccountChecker>(
        shard, login_context(shared, *settings, shared.accounts));
    if (Status status = shard_tls_apply(shard, shared.tls); status != Status::ok) return status;
    shard.sessions().set_tls_handshake_timeout_ms(settings->tls.handshake_timeout_ms);
    for (const auto& listener : settings->pop3.listeners) {
        if (shard.sessions().has_protocol(listener.kind)) continue;  // One factory per kind.
        local->pop3.push_back(std::make_unique<rp::pop3::Pop3Factory>(
            *local->access, shard.sessions(), *settings, listener.kind, local->logins.get()));
        Status status = shard.sessions().register_protocol(listener.kind, *local->pop3.back(),
                                                           is_tls_kind(listener.kind));
        if (status != Status::ok) return status;
    }
    for (const auto& listener : settings->smtp.listeners) {
        if (shard.sessions().has_protocol(listener.kind)) continue;  // One factory per kind.
        local->smtp.push_back(std::make_unique<rp::smtp::SmtpFactory>(
            *local->mail, shard.sessions(), *settings, listener.kind));
        Status status = shard.sessions().register_protocol(listener.kind, *local->smtp.back(),
                                                           is_tls_kind(listener.kind));
        if (status != Status::ok) return status;
    }
    for (const auto& listener : settings->imap.listeners) {
        if (shard.sessions().has_protocol(listener.kind)) continue;  // One factory per kind.
        local->imap.push_back(std::make_unique<rp::imap::ImapFactory>(
            *local->access, shard.sessions(), *settings, listener.kind, local->logins.get()));
        Status status = shard.sessions().register_protocol(listener.kind, *local->imap.back(),
                                                           is_tls_kind(listener.kind));
        if (status != Status::ok) return status;
    }
    smtp_auth_apply(*local, shared, *settings, shared.accounts);
    shared.locals[shard.index()] = local.get();
    if (!settings->engine.test_echo_listeners.empty()) {
        rp::EchoOptions echo;
        echo.line_bytes_max = settings->smtp.line_bytes_max;
        echo.idle_timeout_ms = settings->smtp.timeouts.idle_ms;
        local->echo = std::make_unique<rp::EchoFactory>(shard.reactor(), shard.sessions(), echo);
        Status status = shard.sessions().register_protocol("test-echo", *local->echo);
        if (status != Status::ok) return status;
    }
    rp::mail::ShardMail& shard_mail = *local->mail;
    shard.own(std::move(local));
    // Owned after the ShardMail's owner, so destroyed before it.
    rp::mail::StoreUpkeepOptions upkeep;
    upkeep.interval_ms = settings->store.upkeep_interval_ms;
    upkeep.snapshot_log_bytes = settings->store.snapshot_log_bytes;
    upkeep.snapshot_log_bytes_max = settings->store.snapshot_log_bytes_max;
    upkeep.snapshot_quiet_ms = settings->store.snapshot_quiet_ms;
    upkeep.gc_interval_ms = settings->store.gc_interval_ms;
    upkeep.compact_step_bytes = settings->store.compact_step_bytes;
    shard.own(std::make_unique<rp::mail::StoreUpkeep>(shard_mail, *shared.cluster, upkeep));
    return Status::ok;
}

// SIGHUP: new certificates for new handshakes (open sessions keep theirs), and the account
// table for new AUTHs (their mailboxes: directory_reload below).
void tls_auth_reload(rp::Engine& engine, Shared& shared, const Settings& next) {
    std::string error;
    if (shared.tls != nullptr) {
        auto material = tls_material_load(next, shared.tls->ticket_keys.get(), &error);
        if (material == nullptr) {
            rp::log::error("tls reload failed, keeping the running certificate: {}", error);
        } else {
            shared.tls = material;
            engine.run_on_all([material](rp::Shard& shard) { (void)shard_tls_apply(shard, material); });
            rp::log::info("tls: certificate reloaded from {} ({} certificates), ticket key rotated",
                          next.tls.cert_file, material->certificates.size());
        }
    }
    auto accounts = accounts_load(next, &error);
    if (accounts == nullptr) {
        rp::log::error("accounts reload failed, keeping the running accounts: {}", error);
        return;
    }
    shared.accounts = accounts;
    Shared* all = &shared;
    auto settings = std::make_shared<const Settings>(next);
    engine.run_on_all([all, accounts, settings](rp::Shard& shard) {
        DaemonShard* local = all->locals[shard.index()];
        if (local == nullptr) return;
        smtp_auth_apply(*local, *all, *settings, accounts);
        local->logins->set_context(login_context(*all, *settings, accounts));
    });
    rp::log::info("auth: {} accounts", accounts->entries().size());
}

// SIGHUP: accounts added to the config or the accounts file receive mail and log in without
// a restart. Each shard creates the mailboxes it owns, then routes with the new directory.
void directory_reload(rp::Engine& engine, Shared& shared, const Settings& next) {
    std::string error;
    auto built = rp::smtp::Directory::build(next, shared.directory->shard_count(), &error);
    if (!built) {
        rp::log::error("directory reload failed, keeping the running accounts: {}", error);
        return;
    }
    auto directory = std::make_shared<const rp::smtp::Directory>(std::move(built.value()));
    shared.directory = directory;
    Shared* all = &shared;
    engine.run_on_all([all, directory](rp::Shard& shard) {
        DaemonShard* local = all->locals[shard.index()];
        if (local == nullptr) return;
        const Status status = local->mail->directory_update(directory);
        rp::log::info("shard {}: directory reloaded: {} accounts{}", shard.index(),
                      directory->accounts().size(),
                      status == Status::ok ? "" : " (some mailboxes could not be created)");
    });
}

// Every ticket lifetime: a new ticket key for every shard (the old one still decrypts, so no
// ticket dies before its lifetime). Same certificates; no file is read.
void ticket_keys_rotate_all(rp::Engine& engine, Shared& shared) {
    if (shared.tls == nullptr || shared.tls->ticket_keys == nullptr) return;
    auto keys = rp::tls::ticket_keys_rotate(shared.tls->ticket_keys.get());
    if (!keys) {
        rp::log::error("tls: cannot make a new session ticket key; keeping the running one");
        return;
    }
    auto material = std::make_shared<rp::tls::TlsMaterial>(*shared.tls);
    material->ticket_keys = std::move(keys.value());
    std::shared_ptr<const rp::tls::TlsMaterial> next = material;
    shared.tls = next;
    engine.run_on_all([next](rp::Shard& shard) { (void)shard_tls_apply(shard, next); });
    rp::log::info("tls: session ticket key rotated");
}

void reload(rp::Engine& engine, const std::string& path,
            std::shared_ptr<const Settings>& current, Shared& shared) {
    std::string error;
    auto parsed = rp::config::parse_file(path, &error);
    if (!parsed) {
        rp::log::error("config reload failed, keeping the running settings: {}", error);
        return;
    }
    tls_auth_reload(engine, shared, parsed.value());
    if (shared.accounts != nullptr) users_add_from_accounts(parsed.value(), *shared.accounts);
    directory_reload(engine, shared, parsed.value());
    auto next = std::make_shared<const Settings>(std::move(parsed.value()));
    auto changes = rp::config::settings_diff(*current, *next);
    if (changes.empty()) rp::log::info("config reload: nothing changed");
    for (const auto& change : changes) {
        rp::log::info("config reload: {}: {} -> {}{}", change.key, change.before, change.after,
                      change.reloadable ? "" : " (needs a restart; not applied)");
    }
    auto level = rp::log::level_from_name(next->server.log_level);
    if (level) rp::log::set_level(*level);
    unsigned per_ip = next->engine.connections_per_ip;
    engine.run_on_all([per_ip](rp::Shard& shard) { shard.sessions().set_connections_per_ip(per_ip); });
    const rp::mail::CommitPolicy policy = commit_policy_of(*next);
    Shared* all = &shared;
    engine.run_on_all([all, policy](rp::Shard& shard) {
        DaemonShard* local = all->locals[shard.index()];
        if (local != nullptr) local->mail->set_commit_policy(policy);
    });
    current = next;
}

}  // namespace

int main(int argc, char** argv) {
    // Signals are taken synchronously by this thread (sigwaitinfo below). Block them before
    // any thread starts (the async logger's, the hash pool's, the shards'), which inherit the
    // mask: a thread that did not block SIGTERM would take it and die of it (exit -15).
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);
    signal(SIGPIPE, SIG_IGN);
    std::string config_path;
    bool check_only = false;
    for (int i = 1; i < argc; ++i) {
        std::string_view arg = argv[i];
        if (arg == "--check-config") {
            check_only = true;
        } else if (arg == "--config" && i + 1 < argc) {
            config_path = argv[++i];
        } else if (arg.rfind("--config=", 0) == 0) {
            config_path = std::string(arg.substr(9));
        } else {
            return usage();
        }
    }
    if (config_path.empty()) return usage();

    std::string error;
    auto parsed = rp::config::parse_file(config_path, &error);
    if (!parsed) return fail(error);
    if (check_only) {
        std::printf("%s: OK\n", config_path.c_str());
        return 0;
    }
    auto accounts = accounts_load(parsed.value(), &error);
    if (accounts == nullptr) return fail(error);
    users_add_from_accounts(parsed.value(), *accounts);
    auto settings = std::make_shared<const Settings>(std::move(parsed.value()));
    if (!check_files(*settings, &error)) return fail(error);
    auto level = rp::log::level_from_name(settings->server.log_level);
    RP_ASSERT(level.ok());  // config_check validated it.
    if (rp::log::init(settings->server.log_target, *level) != Status::ok) {
        return fail("cannot open log target " + settings->server.log_target);
    }
    auto tls_material = tls_material_load(*settings, nullptr, &error);
    if (tls_material == nullptr && !error.empty()) {
        rp::log::shutdown();
        return fail(error);
    }


    bool ok = true;
    rp::EngineOptions options = engine_options(*settings, &error, &ok);
    if (!ok) return fail(error);
    const unsigned shard_count = options.cores != 0 ? options.cores
                                                    : static_cast<unsigned>(rp::online_cpus().size());
    options.cores = shard_count;
    if (rp::mail::ShardMail::check_layout(settings->server.data_dir, shard_count, &error) !=
        Status::ok) {
        return fail(error);
    }
    auto directory = rp::smtp::Directory::build(*settings, shard_count, &error);
    if (!directory) return fail(error);
    Shared shared;
    shared.settings = settings;
    shared.directory = std::make_shared<const rp::smtp::Directory>(std::move(directory.value()));
    shared.cluster = std::make_unique<rp::mail::MailCluster>(shard_count);
    auto relay_options = rp::smtp::relay_options_from(*settings, &error);
    if (!relay_options) return fail(error);
    shared.relay = std::make_shared<const rp::smtp::RelayOptions>(std::move(relay_options.value()));
    shared.access_cluster = std::make_unique<rp::mail::AccessCluster>(shard_count);
    shared.relay_cluster = std::make_unique<rp::smtp::RelayCluster>(shard_count);
    shared.tls = tls_material;
    shared.accounts = accounts;
    shared.locals.assign(shard_count, nullptr);
    shared.hash_pool = std::make_unique<rp::auth::HashPool>(settings->auth.hash_threads, 1024);
    rp::auth::ThrottleOptions throttle;
    throttle.failures_max = settings->auth.failures_max;
    throttle.window_s = settings->auth.failure_window_s;
    throttle.delay_base_ms = settings->auth.failure_delay_ms;
    throttle.delay_max_ms = settings->auth.failure_delay_max_ms;
    shared.throttle = std::make_unique<rp::auth::AuthThrottle>(throttle);
    auto engine = rp::Engine::create(
        options, [&shared](rp::Shard& shard) { return shard_setup(shard, shared); }, &error);
    if (!engine) {
        rp::log::shutdown();
        return fail(error);
    }
    std::string addresses;
    for (const auto& spec : options.listeners) addresses += " " + spec.text + "(" + spec.kind + ")";
#ifdef RP_MIMALLOC
    rp::log::info("ringpostd: {} shards, mimalloc {}, listening on{}", (*engine)->shard_count(),
                  mi_version(), addresses);
#else
    rp::log::info("ringpostd: {} shards, listening on{}", (*engine)->shard_count(), addresses);
#endif

    // The ticket key rotates every ticket lifetime (and on SIGHUP, which restarts the wait).
    const auto rotation = std::chrono::seconds(
        settings->tls.ticket_lifetime_s > 0 ? settings->tls.ticket_lifetime_s : 3600);
    auto rotate_at = std::chrono::steady_clock::now() + rotation;
    for (;;) {
        siginfo_t info{};
        timespec wait{};
        auto left = rotate_at - std::chrono::steady_clock::now();
        if (left < std::chrono::seconds(1)) left = std::chrono::seconds(1);
        wait.tv_sec = std::chrono::duration_cast<std::chrono::seconds>(left).count();
        int signal_number = sigtimedwait(&signals, &info, &wait);
        if (signal_number < 0 && errno == EAGAIN) {
            if (std::chrono::steady_clock::now() >= rotate_at) {
                ticket_keys_rotate_all(**engine, shared);
                rotate_at = std::chrono::steady_clock::now() + rotation;
            }
            continue;
        }
        if (signal_number < 0) continue;  // EINTR.
        if (signal_number == SIGHUP) {
            rp::log::info("SIGHUP: reloading {}", config_path);
            reload(**engine, config_path, settings, shared);
            rotate_at = std::chrono::steady_clock::now() + rotation;
            continue;
        }
        rp::log::info("{}: stopping", signal_number == SIGTERM ? "SIGTERM" : "SIGINT");
        break;
    }
    (*engine)->request_stop();
    (*engine)->wait();
    shared.hash_pool.reset();  // Its threads post to shards: stop them first.
    engine.value().reset();
    rp::log::info("ringpostd: stopped");
    rp::log::shutdown();
    return 0;
}
