// protocols/smtp/relay_agent.h: outbound delivery of one shard's spool (DESIGN.md step 6).
//
// Owns: per shard, the DNS client and MX resolver, the destinations (one queue of jobs per
//   domain), the deliveries running (each one OutboundConnection + SmtpClient, reused for
//   the next job of its domain), and the set of spool recipients in flight.
// Core: the shard's thread only. Works on the ShardMail's store; the ShardMail's commit tick
//   makes every spool update durable.
// Flow: a message accepted with remote recipients is queued the moment it is durable (the
//   ShardMail's SpoolObserver); a timer also scans spool_due() every scan_interval_ms (every
//   50 ms while scans keep finding new work) for retries and mail from before a restart.
//   Recipients that are not local accounts (local ones are the ShardMail's) are grouped
//   into jobs: one message, one domain, all its due recipients there (one transaction).
//   Per shard at most deliveries_per_shard_max deliveries run; per destination domain at
//   most deliveries_per_destination_max over all shards: a shard asks the domain's owner
//   shard (DestinationLimits, by cross-core message; one ask at a time per domain) before
//   it connects and tells it after it closed. A shard that must wait makes the biggest
//   holder yield connections down to fair shares (each after 20 messages or 500 ms on it,
//   so a limit of 1 does not swap shards every message), and a connection of another
//   shard idle for 200 ms closes at once. A delivery resolves MX (cached), reads the
//   body's pieces through the shard's Io (the header is kept for a DSN; the rest is
//   looked at for 8-bit bytes before MAIL: BODY=8BITMIME only then), connects to the MX addresses in order (next one on a
//   connect failure, timeout or refused greeting), STARTTLS when offered ([relay] tls:
//   "may" = opportunistic without verification and clear text after a failed handshake;
//   "verify" = required and verified), sends the job, streaming the body piece by piece
//   (dot-stuffed on the fly, at most one piece read ahead of the socket's queue), then the
//   next job of its domain on the same connection. With no job left the connection stays
//   open and idle for connection_idle_ms (unless its last transaction failed): a job for
//   its domain in that time reuses it (the most recently idle first); then QUIT (RFC 5321
//   4.1.1.10: QUIT before closing; at shutdown too, waiting at most quit_grace_ms).
//   When every delivery slot of the shard is taken and a domain with no connection has
//   jobs, the longest idle connection of another domain QUITs to make room.
// Memory: nothing per message is held for spool entries that are not due (a scan takes at
//   most scan_batch_max due recipients); a running delivery holds one body piece.
// Results per recipient (spool_update): 2xx delivered; 4xx deferred to now + the retry
//   schedule's next step (the last step repeats), or bounced once arrival + max_lifetime_s
//   passed; 5xx bounced. Bounced recipients of one job make one RFC 3464 DSN to the sender
//   (a new message from <>: a local sender gets it in INBOX, a remote one through the
//   spool); a null sender's bounce is dropped with a log line. An entry whose recipients
//   are all final is removed.
// Crash safety: the spool is durable; a recipient is marked delivered only after the remote
//   250, so a crash between the two repeats that delivery (at-least-once), nothing is lost.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <list>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "config/settings.h"
#include "core/reactor.h"
#include "core/shard.h"
#include "core/tls_client.h"
#include "protocols/common/shard_mail.h"
#include "protocols/dns/dns_client.h"
#include "protocols/smtp/destination_limits.h"
#include "protocols/smtp/mx_resolver.h"
#include "protocols/smtp/smtp_client.h"

namespace rp::smtp {

struct RelayOptions {
    std::string hostname = "localhost";
    std::vector<std::uint64_t> retry_schedule_s = {300};
    std::uint64_t max_lifetime_s = 5 * 24 * 3600;
    std::uint64_t connect_timeout_ms = 30'000;
    unsigned deliveries_max = 256;
    unsigned per_destination_max = 4;
    std::uint16_t port = 25;
    std::uint64_t scan_interval_ms = 1'000;
    std::uint64_t connection_idle_ms = 2'000;
    std::size_t scan_batch_max = 4096;
    dns::DnsClientOptions dns;
    std::vector<std::string> resolver_texts;  // For the log.
    std::string resolvers_from;               // The resolv.conf read ("": [dns] resolvers).
    MxSelf self;
    SmtpClientConfig client;
    SmtpClientConfig client_plain;  // After a failed opportunistic TLS handshake.
    tls::TlsClientOptions tls;
};

// From the settings (resolvers, [relay], our hostname and listening addresses).
[[nodiscard]] Result<RelayOptions> relay_options_from(const config::Settings& settings,
                                                      std::string* error);

struct RelayStats {
    std::uint64_t delivered = 0, deferred = 0, bounced = 0;
    std::uint64_t dsn_queued = 0, dsn_dropped = 0;
    std::uint64_t connections = 0, transactions = 0, scans = 0;
    std::uint64_t reused = 0;    // Jobs given to an idle connection.
    std::uint64_t evicted = 0;   // Idle connections closed to make room for another domain.
    // Body pieces read before MAIL only to learn whether the body is 8-bit: bodies stored
    // before the store recorded body_7bit, and 8-bit bodies up to their first high byte.
    std::uint64_t body_prescan_reads = 0;
};

class RelayAgent;

// The relay agents of every shard, for the per-destination limit's messages.
using RelayCluster = ShardSlots<RelayAgent>;

class RelayAgent final : public ShardLocal,
                         public mail::SpoolObserver,
                         public TickHook,
                         private Timer,
                         private Deferred {
public:
    // `cluster` null: this shard alone counts its connections (tests).
    RelayAgent(mail::ShardMail& mail, RelayOptions options, RelayCluster* cluster = nullptr);
    ~RelayAgent() override;
    RelayAgent(const RelayAgent&) = delete;
    RelayAgent& operator=(const RelayAgent&) = delete;

    // Arms the first scan and the shard's stop hook.
    void start();
    const RelayStats& stats() const { return stats_; }
    // mail::SpoolObserver: a message with remote recipients is durable; queue it now.
    void spooled(std::uint64_t spool_id) override;
    // TickHook: nothing per tick; at shutdown the shard waits (at most quit_grace_ms) for
    // the deliveries to end, so that idle connections get their QUIT out and answered.
    void on_tick() override {}
    bool idle() const override;
    static constexpr std::uint64_t quit_grace_ms = 1'000;
    std::size_t deliveries_running() const { return deliveries_.size(); }

private:
    struct Job;
    class Delivery;
    struct Destination {
        std::deque<std::unique_ptr<Job>> waiting;
        unsigned active = 0;               // Deliveries of this domain, idle ones included.
        std::vector<Delivery*> idle;       // Connected, ready, waiting for a job (oldest first).
        unsigned permits = 0;              // Connections granted by the owner (>= active).
        unsigned requested = 0;            // Asked for, not granted yet.
        unsigned yield_wanted = 0;         // The owner asked us to give connections back.
    };
    struct LimitMessage;
    class PostRetry;

    void on_timer() override;
    void on_deferred() override;
    // Queues the due recipients that are not in flight yet; returns the new jobs.
    std::size_t scan();
    // Adds recipient `rcpt_index` of `spool_id` to `jobs` unless it is in flight or local.
    using JobMap = std::map<std::pair<std::uint64_t, std::string>, std::unique_ptr<Job>>;
    void job_add(JobMap& jobs, std::uint64_t spool_id, std::uint32_t rcpt_index);
    void jobs_queue(JobMap& jobs);
    void spooled_run();
    static constexpr std::uint64_t busy_scan_interval_ms = 50;
    void pump();
    void stop();
    std::unique_ptr<Job> take_job(const std::string& domain);
    void delivery_finished(Delivery& delivery);
    // A delivery with nothing to send: true when it may stay connected and idle.
    bool delivery_idle(Delivery& delivery);
    void idle_remove(Delivery& delivery);
    // Closes idle connections of other domains for domains that wait for a free slot.
    void evict_idle(std::size_t wanted);
    // A delivery between messages: true (once per request) when it should QUIT because
    // another shard waits for a connection to its domain.
    bool yield_take(const std::string& domain);
    // ---- the per-destination limit (DestinationLimits on the owner shard) ----
    void pump_permits(const std::string& domain, Destination& d);
    unsigned limit_owner(const std::string& domain) const;
    unsigned limit_self() const;
    void limit_post(unsigned to, std::uint32_t kind, const std::string& domain);
    void limit_handle(unsigned from, std::uint32_t kind, const std::string& domain);
    void limit_actions(const std::vector<LimitAction>& actions, const std::string& domain);
    void limit_granted(const std::string& domain);
    void limit_yield(const std::string& domain);
    void outbox_flush();
    static void on_limit_message(Shard& to, const CrossMessage& message);
    static void on_limit_discard(const CrossMessage& message);
    // Records one recipient's reply; returns true when it bounced.
    bool record(Job& job, std::size_t index, const SmtpReply& reply, const std::string& remote);
    void job_done(std::unique_ptr<Job> job, const std::string& body);
    void job_release(std::unique_ptr<Job> job);
    void send_dsn(const Job& job, const std::string& body);
    std::int64_t now_s() const;

    mail::ShardMail& mail_;
    RelayOptions options_;
    RelayCluster* cluster_;
    DestinationLimits limits_;   // Of the domains this shard owns.
    std::deque<std::pair<unsigned, CrossMessage>> outbox_;  // Posts that met a full queue.
    std::unique_ptr<PostRetry> post_retry_;
    unsigned requested_total_ = 0;  // Connections asked for on all destinations.
    std::unique_ptr<dns::DnsClient> dns_;       // Declared before the resolver: outlives it.
    std::unique_ptr<MxResolver> resolver_;
    std::shared_ptr<const tls::TlsClientContext> tls_context_;  // Null: no outbound TLS.
    std::map<std::string, Destination> destinations_;
    std::list<std::unique_ptr<Delivery>> deliveries_;
    std::set<std::pair<std::uint64_t, std::uint32_t>> in_flight_;
    std::vector<std::uint64_t> spooled_;  // From spooled(), queued by on_deferred().
    unsigned evicting_ = 0;               // Idle deliveries told to QUIT for room.
    std::size_t blocked_ = 0;             // Domains without a connection waiting for a slot.
    bool stopping_ = false;
    std::uint64_t stop_deadline_ns_ = 0;
    bool ticking_ = false;
    RelayStats stats_;
};

}  // namespace rp::smtp
