// protocols/smtp/relay_agent.h: outbound delivery of one shard's spool (DESIGN.md step 6).
//
// Owns: per shard, the DNS client and MX resolver, the destinations (one queue of jobs per
//   domain), the deliveries running (each one OutboundConnection + SmtpClient, reused for
//   the next job of its domain), and the set of spool recipients in flight.
// Core: the shard's thread only. Works on the ShardMail's store; the ShardMail's commit tick
//   makes every spool update durable.
// Flow: a timer scans spool_due() every scan_interval_ms (every 50 ms while scans keep
//   finding new work). Recipients that are not local accounts (local ones are the
//   ShardMail's) are grouped into jobs: one message, one
//   domain, all its due recipients there (one transaction). Per domain at most
//   deliveries_per_destination_max deliveries run, per shard deliveries_per_shard_max. A
//   delivery resolves MX (cached), reads the body's first piece through the shard's Io
//   (its header is kept for a DSN), connects to the MX addresses in order (next one on a
//   connect failure, timeout or refused greeting), STARTTLS when offered ([relay] tls:
//   "may" = opportunistic without verification and clear text after a failed handshake;
//   "verify" = required and verified), sends the job, streaming the body piece by piece
//   (dot-stuffed on the fly, at most one piece read ahead of the socket's queue), then the
//   next job of its domain on the same connection, then QUIT.
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
#include "protocols/dns/dns_client.h"
#include "protocols/smtp/mx_resolver.h"
#include "protocols/smtp/smtp_client.h"

namespace rp::mail {
class ShardMail;
}

namespace rp::smtp {

struct RelayOptions {
    std::string hostname = "localhost";
    std::vector<std::uint64_t> retry_schedule_s = {300};
    std::uint64_t max_lifetime_s = 5 * 24 * 3600;
    std::uint64_t connect_timeout_ms = 30'000;
    unsigned deliveries_max = 64;
    unsigned per_destination_max = 4;
    std::uint16_t port = 25;
    std::uint64_t scan_interval_ms = 1'000;
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
};

class RelayAgent final : public ShardLocal, private Timer, private Deferred {
public:
    RelayAgent(mail::ShardMail& mail, RelayOptions options);
    ~RelayAgent() override;
    RelayAgent(const RelayAgent&) = delete;
    RelayAgent& operator=(const RelayAgent&) = delete;

    // Arms the first scan and the shard's stop hook.
    void start();
    const RelayStats& stats() const { return stats_; }
    std::size_t deliveries_running() const { return deliveries_.size(); }

private:
    struct Job;
    class Delivery;
    struct Destination {
        std::deque<std::unique_ptr<Job>> waiting;
        unsigned active = 0;
    };

    void on_timer() override;
    void on_deferred() override;
    // Queues the due recipients that are not in flight yet; returns the new jobs.
    std::size_t scan();
    static constexpr std::uint64_t busy_scan_interval_ms = 50;
    void pump();
    void stop();
    std::unique_ptr<Job> take_job(const std::string& domain);
    void delivery_finished(Delivery& delivery);
    // Records one recipient's reply; returns true when it bounced.
    bool record(Job& job, std::size_t index, const SmtpReply& reply, const std::string& remote);
    void job_done(std::unique_ptr<Job> job, const std::string& body);
    void job_release(std::unique_ptr<Job> job);
    void send_dsn(const Job& job, const std::string& body);
    std::int64_t now_s() const;

    mail::ShardMail& mail_;
    RelayOptions options_;
    std::unique_ptr<dns::DnsClient> dns_;       // Declared before the resolver: outlives it.
    std::unique_ptr<MxResolver> resolver_;
    std::shared_ptr<const tls::TlsClientContext> tls_context_;  // Null: no outbound TLS.
    std::map<std::string, Destination> destinations_;
    std::list<std::unique_ptr<Delivery>> deliveries_;
    std::set<std::pair<std::uint64_t, std::uint32_t>> in_flight_;
    bool stopping_ = false;
    RelayStats stats_;
};

}  // namespace rp::smtp
