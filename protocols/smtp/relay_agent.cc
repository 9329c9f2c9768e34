// protocols/smtp/relay_agent.cc: the per-shard relay.
#include "protocols/smtp/relay_agent.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>

#include "core/connector.h"
#include "core/log.h"
#include "protocols/common/shard_mail.h"
#include "protocols/smtp/dsn.h"
#include "protocols/smtp/routing.h"

namespace rp::smtp {

namespace {

// Per-destination limit messages (kind): shard -> owner, owner -> shard.
constexpr std::uint32_t limit_acquire = 1;
constexpr std::uint32_t limit_grant = 2;
constexpr std::uint32_t limit_release = 3;
constexpr std::uint32_t limit_yield_request = 4;
constexpr std::uint32_t limit_idle = 5;       // A connection went idle: contended?
constexpr std::uint32_t limit_drop_idle = 6;  // Yes: close an idle one.

std::string domain_of(std::string_view address) {
    const auto at = address.rfind('@');
    if (at == std::string_view::npos) return {};
    return ascii_lower(address.substr(at + 1));
}

bool eight_bit(std::string_view body) {
    for (const char c : body) {
        if (static_cast<unsigned char>(c) >= 0x80) return true;
    }
    return false;
}

void to_sockaddr(const dns::DnsAddress& address, std::uint16_t port, sockaddr_storage& out,
                 socklen_t& bytes) {
    std::memset(&out, 0, sizeof out);
    if (address.family == AF_INET) {
        auto* v4 = reinterpret_cast<sockaddr_in*>(&out);
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        std::memcpy(&v4->sin_addr, address.bytes, 4);
        bytes = sizeof(sockaddr_in);
    } else {
        auto* v6 = reinterpret_cast<sockaddr_in6*>(&out);
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(port);
        std::memcpy(&v6->sin6_addr, address.bytes, 16);
        bytes = sizeof(sockaddr_in6);
    }
}

// A listener address as one of ours (unspecified addresses are skipped: any address).
std::optional<dns::DnsAddress> listener_self(const std::string& text) {
    ListenerSpec spec;
    if (listener_address_parse(text, spec) != Status::ok) return std::nullopt;
    dns::DnsAddress out;
    if (spec.address.ss_family == AF_INET) {
        const auto* v4 = reinterpret_cast<const sockaddr_in*>(&spec.address);
        if (v4->sin_addr.s_addr == htonl(INADDR_ANY)) return std::nullopt;
        out.family = AF_INET;
        std::memcpy(out.bytes, &v4->sin_addr, 4);
        return out;
    }
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&spec.address);
    if (std::memcmp(&v6->sin6_addr, &in6addr_any, 16) == 0) return std::nullopt;
    out.family = AF_INET6;
    std::memcpy(out.bytes, &v6->sin6_addr, 16);
    return out;
}

}  // namespace

Result<RelayOptions> relay_options_from(const config::Settings& s, std::string* error) {
    RelayOptions o;
    o.hostname = ascii_lower(s.server.hostname);
    o.retry_schedule_s = s.relay.retry_schedule_s;
    o.max_lifetime_s = s.relay.max_lifetime_s;
    o.connect_timeout_ms = s.relay.connect_timeout_ms;
    o.deliveries_max = s.relay.deliveries_per_shard_max;
    o.per_destination_max = s.relay.deliveries_per_destination_max;
    o.port = s.relay.port;
    o.scan_interval_ms = s.relay.scan_interval_ms;
    o.connection_idle_ms = s.relay.connection_idle_ms;
    o.dns.timeout_ms = s.dns.timeout_ms;
    o.dns.attempts = s.dns.attempts;
    std::vector<std::string> resolvers = s.dns.resolvers;
    if (resolvers.empty() && !s.dns.resolv_conf.empty()) {
        // Start-up only (blocking read): the default, [dns] resolvers when absent.
        std::ifstream file(s.dns.resolv_conf);
        std::stringstream text;
        text << file.rdbuf();
        resolvers = dns::resolv_conf_nameservers(text.str());
        o.resolvers_from = s.dns.resolv_conf;
    }
    for (const std::string& text : resolvers) {
        auto server = dns::dns_server_parse(text);
        if (!server) {
            *error = "dns.resolvers: \"" + text + "\" is not address:port";
            return server.status();
        }
        o.dns.resolvers.push_back(*server);
    }
    o.resolver_texts = resolvers;
    o.self.hostnames.push_back(o.hostname);
    for (const auto& listener : s.smtp.listeners) {
        if (auto address = listener_self(listener.address)) o.self.addresses.push_back(*address);
    }
    o.client.helo_name = o.hostname;
    o.tls.mode = s.relay.tls == "none"     ? tls::TlsClientMode::none
                 : s.relay.tls == "verify" ? tls::TlsClientMode::verify
                                           : tls::TlsClientMode::may;
    o.tls.ca_file = s.relay.tls_ca_file;
    if (auto groups = tls::groups_parse(s.tls.groups, error); groups) {
        o.tls.groups = std::move(groups.value());
    } else {
        *error = "tls.groups: " + *error;
        return groups.status();
    }
    o.client.starttls = o.tls.mode != tls::TlsClientMode::none;
    o.client.require_tls = o.tls.mode == tls::TlsClientMode::verify;
    o.client_plain = o.client;
    o.client_plain.starttls = false;
    o.client_plain.require_tls = false;
    if (o.tls.mode != tls::TlsClientMode::none) {
        // Checks the CA file now, so that a bad one stops the start with a clear line.
        if (auto context = tls::TlsClientContext::create(o.tls, error); !context) {
            *error = "relay.tls: " + *error;
            return context.status();
        }
    }
    RP_ASSERT(!o.retry_schedule_s.empty());
    return o;
}

// One message to one domain: the due recipients of one spool entry there.
struct RelayAgent::Job {
    std::uint64_t spool_id = 0;
    std::string domain;
    std::vector<std::uint32_t> rcpt_indices;
    std::vector<std::string> addresses;
    std::vector<DsnRecipient> bounces;
};

// One domain's worker: MX, then jobs one after another over one connection.
class RelayAgent::Delivery final : public OutboundHandler,
                                   public Timer,
                                   private IoCompletion,
                                   private tls::TlsSink {
public:
    Delivery(RelayAgent& agent, std::string domain)
        : agent_(agent), domain_(std::move(domain)), connection_(reactor(), *this) {}
    ~Delivery() override {
        if (armed()) reactor().timer_cancel(*this);
    }

    const std::string& domain() const { return domain_; }
    bool finished() const { return phase_ == Phase::finished; }
    bool evicted() const { return evicted_; }
    std::uint64_t idle_since_ns() const { return idle_since_ns_; }

    // An idle connection gets work again: the agent queued a job for its domain (and took
    // this delivery off its idle list).
    void resume() {
        RP_ASSERT(phase_ == Phase::idle);
        RP_ASSERT(!job_);
        if (armed()) reactor().timer_cancel(*this);
        phase_ = Phase::session;
        next_job();
    }

    // Ends an idle connection politely (the agent took it off its idle list). `evicted`:
    // to make room for another domain.
    void quit_idle(bool evicted) {
        RP_ASSERT(phase_ == Phase::idle);
        evicted_ = evicted;
        phase_ = Phase::session;
        send_quit();
    }

    void start() {
        phase_ = Phase::resolving;
        agent_.resolver_->resolve(domain_, [this](const MxResult& r) {
            mx_ = r;
            next_job();
        });
    }

    void stop() {
        stopping_ = true;
        if (phase_ == Phase::idle) {
            // RFC 5321 4.1.1.10: QUIT, not just a close (best effort: the shard is ending).
            agent_.idle_remove(*this);
            quit_idle(false);
            return;
        }
        if (armed()) reactor().timer_cancel(*this);
        if (!connection_.idle()) {
            connection_.close(Status::cancelled);
        } else if (!reading_ && phase_ != Phase::resolving) {
            finish();
        }
    }

    // ---- OutboundHandler ----
    void on_connected(Status status) override {
        if (status != Status::ok) return;  // on_closed follows and moves on.
        ++agent_.stats_.connections;
        jobs_here_ = 0;
        connected_ns_ = reactor().now_ns();
        log::info("relay: connected to {} for {}", remote_, domain_);
        client_.emplace(plaintext_ ? agent_.options_.client_plain : agent_.options_.client);
        phase_ = Phase::session;
        arm(client_->timeout_ms());
    }
    void on_received(std::string_view bytes) override {
        if (!client_ || client_->closed()) return;
        if (tls_) {
            tls_input(bytes);
        } else {
            client_->feed(bytes);
        }
        progress();
    }
    void on_sent() override {
        // RFC 5321 4.5.3.2.5: the body went out; now the final reply is due.
        if (client_ && client_->transaction_running()) arm(client_->timeout_ms());
        // Streaming: the queue drained, so the next piece may be read.
        if (client_ && client_->wants_body() && !reading_) progress();
    }
    void on_closed(Status reason) override {
        if (phase_ == Phase::idle) {
            // The server ended an idle session (a 421, a timeout of its own).
            agent_.idle_remove(*this);
            phase_ = Phase::session;
        }
        tls_.reset();
        const bool was_ready = client_.has_value() && ever_ready_;
        if (client_ && !client_->closed()) client_->connection_lost();
        if (client_) collect_result();
        if (client_ && !ever_ready_) {
            const SmtpReply& r = client_->session_reply();
            last_error_ = r.code != 0 ? r.line() + " (from " + remote_ + ")"
                                      : "451 4.4.2 Connection to " + remote_ + " lost";
        } else if (!client_) {
            last_error_ = "451 4.4.1 Connection to " + remote_ + " failed: " +
                          std::string(status_name(reason));
            log::info("relay: connect to {} for {} failed: {}", remote_, domain_, status_name(reason));
        }
        client_.reset();
        if (armed()) reactor().timer_cancel(*this);
        if (stopping_) {
            if (!reading_) finish();
            return;
        }
        if (phase_ == Phase::quitting) {
            finish();
            return;
        }
        if (retry_plain_) {
            // RFC 7435 (opportunistic): the handshake failed; the same host again, in clear.
            retry_plain_ = false;
            connect_next();
            return;
        }
        if (was_ready) {
            // The session ended after working: a job still waiting reconnects from the top.
            ever_ready_ = false;
            if (job_ && ++reconnects_ <= 2) {
                target_index_ = 0;
                address_index_ = 0;
                connect_next();
                return;
            }
            if (job_) fail_job(last_error_, false);
            next_job();
            return;
        }
        ++address_index_;
        connect_next();
    }

    // ---- Timer ----
    void on_timer() override {
        if (phase_ == Phase::idle && !idle_noticed_ &&
            agent_.options_.connection_idle_ms > idle_notice_ms) {
            // Idle for a while (not just between two messages): if another shard waits for
            // a connection to this domain, the owner has this one closed (limit_drop_idle).
            idle_noticed_ = true;
            arm(agent_.options_.connection_idle_ms - idle_notice_ms);
            agent_.limit_post(agent_.limit_owner(domain_), limit_idle, domain_);
            return;
        }
        if (phase_ == Phase::idle) {
            agent_.idle_remove(*this);
            quit_idle(false);
            return;
        }
        if (client_) {
            client_->on_timeout();
            collect_result();
        }
        if (!client_) last_error_ = "451 4.4.1 Connection to " + remote_ + " timed out";
        connection_.close(Status::timeout);
    }

private:
    enum class Phase : std::uint8_t { resolving, loading, connecting, session, idle, quitting, finished };

    Reactor& reactor() { return agent_.mail_.shard().reactor(); }
    storage::MailStore& store() { return agent_.mail_.store(); }

    void arm(std::uint64_t ms) {
        if (ms == 0) {
            if (armed()) reactor().timer_cancel(*this);
            return;
        }
        reactor().timer_arm(*this, ms * 1'000'000ull);
    }

    void finish() {
        if (phase_ == Phase::finished) return;
        if (job_) agent_.job_release(std::move(job_));
        phase_ = Phase::finished;
        agent_.delivery_finished(*this);
    }

    // Takes the next job of this domain and reads its body; none left: QUIT and finish.
    void next_job() {
        RP_ASSERT(!job_);
        if (stopping_) {
            stop();
            return;
        }
        if (client_ && client_->ready() && !connection_.idle() && yield_due() &&
            agent_.yield_take(domain_)) {
            send_quit();  // Another shard waits for a connection to this domain.
            return;
        }
        job_ = agent_.take_job(domain_);
        if (!job_) {
            if (client_ && client_->ready() && !connection_.idle()) {
                // Only a clean session waits idle: after a refused transaction the server
                // still holds its state (RFC 5321 4.1.1.5), so QUIT rather than linger.
                if (!client_->needs_rset() && agent_.delivery_idle(*this)) {
                    // Kept for the next job of this domain (resume), or QUIT on the timer.
                    phase_ = Phase::idle;
                    idle_since_ns_ = reactor().now_ns();
                    idle_noticed_ = false;
                    arm(std::min(idle_notice_ms, agent_.options_.connection_idle_ms));
                    return;
                }
                send_quit();
            } else if (!connection_.idle()) {
                phase_ = Phase::quitting;
                connection_.close(Status::ok);
            } else {
                finish();
            }
            return;
        }
        load_body();
    }

    // A connection yields to another shard only after it was worth opening (a few messages
    // or some time): else a limit of 1 with mail on two shards swaps it every message.
    bool yield_due() {
        return jobs_here_ >= yield_after_jobs ||
               reactor().now_ns() - connected_ns_ >= yield_after_ms * 1'000'000ull;
    }

    void send_quit() {
        RP_ASSERT(client_ && client_->ready());
        client_->quit();
        phase_ = Phase::quitting;
        flush_output();
        arm(client_->timeout_ms());
    }

    // Opens the body and reads its first pieces up to the end of the header (kept for a DSN
    // and sent first); the rest is read piece by piece while the DATA goes out.
    void load_body() {
        if (reading_) {
            // A read of the previous job is still with the kernel (its buffer too): after it.
            load_waiting_ = true;
            return;
        }
        const storage::SpoolEntry* entry = store().spool_get(job_->spool_id);
        auto handle = entry != nullptr ? store().body_open(entry->body) : Result<storage::BodyHandle>(Status::not_found);
        if (!handle) {
            // Not durable yet (again) or gone: leave the recipients for a later scan.
            log::warn("relay: body of {} not readable: {}", mail::ShardMail::queue_id_text(job_->spool_id),
                      status_name(handle.status()));
            agent_.job_release(std::move(job_));
            next_job();
            return;
        }
        if (phase_ != Phase::session) phase_ = Phase::loading;
        handle_ = std::move(handle.value());
        head_.clear();
        body_ready_ = false;
        read_first_piece();
    }

    void read_first_piece() {
        piece_index_ = 0;
        scanning_ = false;
        eight_bit_ = false;
        head_pieces_ = 0;
        piece_loaded_ = false;
        piece_fed_ = false;
        if (handle_.pieces.empty()) {
            body_ready_ = true;
            body_loaded();
            return;
        }
        read_piece();
    }

    void read_piece() {
        RP_ASSERT(piece_index_ < handle_.pieces.size());
        RP_ASSERT(!reading_);
        const storage::Extent& extent = handle_.pieces[piece_index_].extent;
        record_.resize(storage::record_bytes(extent.bytes));
        record_filled_ = 0;
        read_more();
    }

    void read_more() {
        const auto& piece = handle_.pieces[piece_index_];
        // bounds: record_filled_ < record_.size() <= record_bytes(chunk max) < 2^32.
        const auto left = static_cast<std::uint32_t>(record_.size() - record_filled_);
        reading_ = true;
        agent_.mail_.shard().io().read(piece.fd(), record_.data() + record_filled_, left,
                                       std::uint64_t{piece.extent.offset} + record_filled_, *this);
    }

    void io_done(Status status, std::uint32_t bytes) override {
        reading_ = false;
        if (discard_read_) {
            // The job ended (a result, a lost connection) while this read ran.
            discard_read_ = false;
            handle_ = storage::BodyHandle{};
            if (stopping_) {
                stop();
            } else if (load_waiting_) {
                load_waiting_ = false;
                load_body();
            }
            return;
        }
        if (status == Status::ok && bytes == 0) status = Status::truncated;
        if (status == Status::ok) {
            record_filled_ += bytes;
            if (record_filled_ < record_.size()) {
                read_more();
                return;
            }
            auto payload = storage::extent_verify(handle_.pieces[piece_index_].extent, record_);
            if (payload && !stopping_) {
                piece_ready(*payload);
                return;
            }
            status = payload ? Status::cancelled : payload.status();
        }
        log::error("relay: reading the body of {} failed: {}", mail::ShardMail::queue_id_text(job_->spool_id),
                   status_name(status));
        handle_ = storage::BodyHandle{};
        agent_.job_release(std::move(job_));
        if (stopping_) {
            stop();
            return;
        }
        if (client_ && client_->wants_body()) {
            // Half a message must never end with a dot: drop the session instead.
            connection_.close(Status::io);
            return;
        }
        next_job();
    }

    void piece_ready(std::span<const std::byte> payload) {
        if (scanning_) {
            // The pieces after the header, read once before MAIL only to learn whether the
            // body has 8-bit bytes (RFC 6152: declare BODY=8BITMIME only then).
            ++agent_.stats_.body_prescan_reads;
            eight_bit_ = eight_bit(std::string_view(reinterpret_cast<const char*>(payload.data()), payload.size()));
            if (!eight_bit_ && piece_index_ + 1 < handle_.pieces.size()) {
                ++piece_index_;
                read_piece();
                return;
            }
            scanning_ = false;
            body_ready_ = true;
            body_loaded();
            return;
        }
        if (!body_ready_) {
            // Whole pieces until the header ends (the Received: line is a piece of its own)
            // or 64 KiB: the DSN needs the header, and these pieces go out first.
            head_.append(reinterpret_cast<const char*>(payload.data()), payload.size());
            head_pieces_ = piece_index_ + 1;
            const bool header_done = head_.find("\n\n") != std::string::npos ||
                                     head_.find("\n\r\n") != std::string::npos;
            if (!header_done && head_.size() < head_bytes_max && head_pieces_ < handle_.pieces.size()) {
                ++piece_index_;
                read_piece();
                return;
            }
            // A body its writer saw to be 7-bit needs no look (older bodies do not say).
            const bool known_7bit = (handle_.traits & storage::body_7bit) != 0;
            eight_bit_ = !known_7bit && eight_bit(head_);
            if (!known_7bit && !eight_bit_ && head_pieces_ < handle_.pieces.size()) {
                scanning_ = true;
                ++piece_index_;
                read_piece();
                return;
            }
            body_ready_ = true;
            body_loaded();
            return;
        }
        piece_loaded_ = true;
        piece_fed_ = false;
        payload_ = payload;  // Inside record_, until the next read_piece().
        progress();
    }

    // Feeds loaded pieces to the client while it wants the body; reads the next piece once
    // the connection's queue is short (at most one piece read ahead of the socket).
    void stream_body() {
        while (client_ && client_->wants_body() && !reading_) {
            if (!head_fed_) {
                client_->body_chunk(head_);
                head_fed_ = true;
                flush_output();
            }
            if (piece_loaded_ && !piece_fed_) {
                client_->body_chunk(std::string_view(reinterpret_cast<const char*>(payload_.data()),
                                                     payload_.size()));
                piece_fed_ = true;
                flush_output();
            }
            const std::size_t next = piece_loaded_ ? piece_index_ + 1 : head_pieces_;
            if (next >= handle_.pieces.size()) {
                client_->body_end();
                return;
            }
            if (connection_.queued_bytes() > stream_queue_bytes_max) return;  // on_sent resumes.
            piece_index_ = next;
            piece_loaded_ = false;
            read_piece();
        }
    }

    void body_loaded() {
        if (mx_.outcome != MxOutcome::ready) {
            fail_job(mx_.reply, mx_.outcome == MxOutcome::permanent);
            next_job();
            return;
        }
        if (client_ && client_->ready()) {
            send_job();
            return;
        }
        if (connection_.idle()) {
            target_index_ = 0;
            address_index_ = 0;
            reconnects_ = 0;
            connect_next();
        }
        // Otherwise the session is starting: progress() sends the job once it is ready.
    }

    // Tries MX targets in order, each of their addresses in order.
    void connect_next() {
        phase_ = Phase::connecting;
        while (target_index_ < mx_.targets.size()) {
            const MxTarget& target = mx_.targets[target_index_];
            if (address_index_ >= target.addresses.size()) {
                ++target_index_;
                address_index_ = 0;
                continue;
            }
            const dns::DnsAddress& address = target.addresses[address_index_];
            remote_ = target.host + "[" + address.text() + "]";
            host_ = target.host;
            sockaddr_storage to;
            socklen_t to_bytes = 0;
            to_sockaddr(address, agent_.options_.port, to, to_bytes);
            if (connection_.connect(to, to_bytes) != Status::ok) {
                ++address_index_;
                continue;
            }
            arm(agent_.options_.connect_timeout_ms);
            return;
        }
        // Every MX failed: this job and every waiting one of the domain wait for a retry.
        if (last_error_.empty()) last_error_ = "451 4.4.1 No MX host of " + domain_ + " answered";
        if (job_) fail_job(last_error_, false);
        while (auto job = agent_.take_job(domain_)) {
            job_ = std::move(job);
            fail_job(last_error_, false);
        }
        finish();
    }

    void send_job() {
        RP_ASSERT(job_);
        RP_ASSERT(client_ && client_->ready());
        const storage::SpoolEntry* entry = store().spool_get(job_->spool_id);
        if (entry == nullptr) {
            agent_.job_release(std::move(job_));
            next_job();
            return;
        }
        // From the start (also after a reconnect in the middle of a body): head_ first.
        head_fed_ = false;
        piece_loaded_ = false;
        SmtpClientMessage message;
        message.sender = entry->sender;
        message.recipients = job_->addresses;
        message.eight_bit = eight_bit_;  // Every piece was looked at (piece_ready).
        message.body_bytes = handle_.bytes;
        ++agent_.stats_.transactions;
        ++jobs_here_;
        client_->send(std::move(message));
        progress();
    }

    void flush_output() {
        std::string out = client_->take_output();
        if (out.empty()) return;
        if (!tls_) {
            connection_.send(std::move(out));
            return;
        }
        RP_ASSERT(tls_->established());  // The client says nothing during the handshake.
        if (tls_->write(std::as_bytes(std::span(out.data(), out.size()))) != Status::ok) {
            log::info("relay: TLS write to {} failed: {}", remote_, tls_->last_error());
            client_->connection_lost();
        }
    }

    // ---- TLS (RFC 3207), client side ----
    bool tls_send(std::span<const std::byte> bytes) override {
        connection_.send(std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
        return true;
    }

    // After the server's 220 to STARTTLS: the ClientHello goes out.
    void tls_begin() {
        RP_ASSERT(!tls_);
        const auto& context = agent_.tls_context_;
        if (context) tls_ = tls::TlsClientStream::connect(context, *this, host_);
        if (!tls_) {
            tls_fail("no TLS client context");
            return;
        }
        tls_->set_input({});
        if (tls_->handshake() == tls::TlsClientStream::Step::failed) tls_fail(tls_->last_error());
    }

    void tls_input(std::string_view bytes) {
        tls_->set_input(std::as_bytes(std::span(bytes.data(), bytes.size())));
        if (!tls_->established()) {
            const auto step = tls_->handshake();
            if (step == tls::TlsClientStream::Step::want_input) return;
            if (step == tls::TlsClientStream::Step::failed) {
                tls_fail(tls_->last_error());
                return;
            }
            log::info("relay: TLS {} {} with {} for {}", tls_->version(), tls_->cipher(), remote_, domain_);
            client_->tls_started();
        }
        std::array<std::byte, 16384> plain;
        for (;;) {
            const auto r = tls_->read(plain);
            if (r.step == tls::TlsClientStream::Step::done) {
                client_->feed(std::string_view(reinterpret_cast<const char*>(plain.data()), r.bytes));
                continue;
            }
            if (r.step != tls::TlsClientStream::Step::want_input) {
                if (r.step == tls::TlsClientStream::Step::failed) {
                    log::info("relay: TLS record error from {}: {}", remote_, tls_->last_error());
                }
                client_->connection_lost();
            }
            return;
        }
    }

    void tls_fail(const std::string& why) {
        log::info("relay: TLS handshake with {} for {} failed: {}", remote_, domain_, why);
        // Opportunistic: once more in clear; verify: the session fails (4xx, next MX).
        if (!agent_.options_.client.require_tls && !plaintext_) {
            plaintext_ = true;
            retry_plain_ = true;
        }
        client_->tls_failed();
    }

    // After the client moved: send its output, apply a result, go on or close.
    void progress() {
        if (!client_) return;
        if (client_->ready()) ever_ready_ = true;
        if (client_->wants_tls() && !tls_) tls_begin();
        if (client_->wants_body()) stream_body();
        flush_output();
        collect_result();
        if (client_->closed()) {
            if (phase_ == Phase::idle) {
                // The server ended the idle session (421): no longer offered for reuse.
                agent_.idle_remove(*this);
                phase_ = Phase::session;
                if (armed()) reactor().timer_cancel(*this);
            }
            connection_.close(Status::ok);
            return;
        }
        if (client_->ready() && phase_ != Phase::quitting && phase_ != Phase::idle) {
            if (job_ && !reading_ && body_ready_ && !client_->transaction_running()) {
                send_job();
                return;
            }
            if (!job_ && !reading_) {
                next_job();
                return;
            }
        }
        if (phase_ == Phase::idle) return;  // Its own timer runs (connection_idle_ms).
        arm(client_->timeout_ms());
    }

    void collect_result() {
        if (!client_) return;
        auto result = client_->take_result();
        if (!result || !job_) return;
        RP_ASSERT(result->size() == job_->rcpt_indices.size());
        for (std::size_t i = 0; i < result->size(); ++i) agent_.record(*job_, i, (*result)[i], remote_);
        body_done();
    }

    void fail_job(const std::string& reply_line, bool permanent) {
        SmtpReply reply;
        reply.code = static_cast<std::uint16_t>(permanent ? 550 : 451);
        if (reply_line.size() > 4 && reply_line[3] == ' ') {
            reply.code = static_cast<std::uint16_t>(std::stoi(reply_line.substr(0, 3)));
            reply.text = reply_line.substr(4);
        } else {
            reply.text = reply_line;
        }
        if (permanent && reply.code < 500) reply.code = 550;
        if (!permanent && reply.code >= 500) reply.code = 451;
        for (std::size_t i = 0; i < job_->rcpt_indices.size(); ++i) agent_.record(*job_, i, reply, "");
        body_done();
    }

    void body_done() {
        if (reading_) {
            discard_read_ = true;  // io_done drops the piece and unpins the segments.
        } else {
            handle_ = storage::BodyHandle{};  // Unpins the segments.
        }
        body_ready_ = false;
        scanning_ = false;
        piece_loaded_ = false;
        agent_.job_done(std::move(job_), head_);
    }

    RelayAgent& agent_;
    std::string domain_;
    OutboundConnection connection_;
    std::optional<SmtpClient> client_;
    Phase phase_ = Phase::resolving;
    MxResult mx_;
    std::size_t target_index_ = 0, address_index_ = 0;
    unsigned reconnects_ = 0;
    unsigned jobs_here_ = 0;           // Transactions on this connection.
    std::uint64_t connected_ns_ = 0;
    static constexpr unsigned yield_after_jobs = 20;
    static constexpr std::uint64_t yield_after_ms = 500;
    bool ever_ready_ = false;
    bool stopping_ = false;
    bool evicted_ = false;
    std::uint64_t idle_since_ns_ = 0;
    bool idle_noticed_ = false;  // The owner heard that this connection is idle.
    static constexpr std::uint64_t idle_notice_ms = 200;
    bool reading_ = false;
    std::string remote_;
    std::string host_;  // The MX host name connected to (SNI, verification).
    std::unique_ptr<tls::TlsClientStream> tls_;
    bool plaintext_ = false;    // A TLS handshake failed here: no STARTTLS from now on.
    bool retry_plain_ = false;  // Reconnect to the same address without STARTTLS.
    std::string last_error_;
    std::unique_ptr<Job> job_;
    static constexpr std::size_t stream_queue_bytes_max = 256 * 1024;
    static constexpr std::size_t head_bytes_max = 64 * 1024;
    std::string head_;               // The first pieces, through the header (for a DSN).
    std::size_t head_pieces_ = 0;    // How many pieces head_ holds.
    bool head_fed_ = false;          // The client has head_.
    bool body_ready_ = false;   // head_ was read (or the body is empty).
    bool scanning_ = false;     // Reading the pieces after head_ for 8-bit bytes.
    bool eight_bit_ = false;    // The body has bytes >= 0x80 (known once body_ready_).
    bool piece_loaded_ = false;  // payload_ holds piece piece_index_.
    bool piece_fed_ = false;     // ... and the client has it.
    bool discard_read_ = false;  // The read in flight belongs to a job that ended.
    bool load_waiting_ = false;  // load_body() once that read is back.
    std::span<const std::byte> payload_;
    storage::BodyHandle handle_;
    std::size_t piece_index_ = 0;
    std::vector<std::byte> record_;
    std::size_t record_filled_ = 0;
};

// Owned by the CrossMessage that carries it (freed by the handler or on discard).
struct RelayAgent::LimitMessage {
    RelayCluster* cluster = nullptr;
    std::string domain;
};

class RelayAgent::PostRetry final : public Timer {
public:
    explicit PostRetry(RelayAgent& agent) : agent_(agent) {}
    void on_timer() override { agent_.outbox_flush(); }

private:
    RelayAgent& agent_;
};

RelayAgent::RelayAgent(mail::ShardMail& mail, RelayOptions options, RelayCluster* cluster)
    : mail_(mail),
      options_(std::move(options)),
      cluster_(cluster),
      limits_(cluster != nullptr ? cluster->shard_count() : 1, options_.per_destination_max),
      post_retry_(std::make_unique<PostRetry>(*this)) {
    Reactor& reactor = mail_.shard().reactor();
    const std::uint64_t seed = reactor.now_ns() ^ (std::uint64_t{mail_.shard_index()} << 48);
    dns_ = std::make_unique<dns::DnsClient>(reactor, options_.dns, seed);
    if (options_.tls.mode != tls::TlsClientMode::none) {
        std::string error;
        auto context = tls::TlsClientContext::create(options_.tls, &error);
        if (context) {
            tls_context_ = std::move(context.value());
        } else {
            log::error("relay: no outbound TLS: {}", error);
        }
    }
    resolver_ = std::make_unique<MxResolver>(*dns_, options_.self, [this] { return now_s(); }, seed + 1);
}

RelayAgent::~RelayAgent() {
    if (ticking_) mail_.shard().reactor().remove_tick(*this);
    mail_.set_spool_observer(nullptr);
    if (cluster_ != nullptr) cluster_->set(mail_.shard_index(), nullptr);
    if (Timer::armed()) mail_.shard().reactor().timer_cancel(*this);
    if (post_retry_->armed()) mail_.shard().reactor().timer_cancel(*post_retry_);
    for (auto& [to, message] : outbox_) on_limit_discard(message);
    deliveries_.clear();
    resolver_.reset();
    dns_.reset();
}

std::int64_t RelayAgent::now_s() const { return mail_.shard().reactor().clock().wall_seconds(); }

void RelayAgent::start() {
    if (options_.dns.resolvers.empty() && mail_.shard_index() == 0) {
        log::warn("relay: no [dns] resolvers configured{}: mail for other domains stays queued",
                  options_.resolvers_from.empty() ? "" : " (none in " + options_.resolvers_from + ")");
    } else if (!options_.resolvers_from.empty() && mail_.shard_index() == 0) {
        std::string list;
        for (const auto& r : options_.resolver_texts) list += (list.empty() ? "" : ", ") + r;
        log::info("relay: DNS resolvers from {}: {}", options_.resolvers_from, list);
    }
    mail_.shard().on_stop([this](Shard&) { stop(); });
    mail_.set_spool_observer(this);
    if (cluster_ != nullptr) cluster_->set(mail_.shard_index(), this);
    mail_.shard().reactor().add_tick(*this);
    ticking_ = true;
    // The first scan soon after start: mail queued before a restart goes out at once.
    mail_.shard().reactor().timer_arm(*this, 100'000'000ull);
}

bool RelayAgent::idle() const {
    if (!stopping_ || mail_.shard().reactor().now_ns() >= stop_deadline_ns_) return true;
    return std::all_of(deliveries_.begin(), deliveries_.end(),
                       [](const std::unique_ptr<Delivery>& d) { return d->finished(); });
}

void RelayAgent::stop() {
    stopping_ = true;
    stop_deadline_ns_ = mail_.shard().reactor().now_ns() + quit_grace_ms * 1'000'000ull;
    mail_.set_spool_observer(nullptr);
    log::info("relay: shard {}: {} connections, {} transactions, {} jobs on a reused idle "
              "connection, {} idle connections closed for room; {} sent, {} deferred, {} bounced; "
              "{} body pieces read ahead for the 8-bit check",
              mail_.shard_index(), stats_.connections, stats_.transactions, stats_.reused,
              stats_.evicted, stats_.delivered, stats_.deferred, stats_.bounced,
              stats_.body_prescan_reads);
    if (Timer::armed()) mail_.shard().reactor().timer_cancel(*this);
    for (auto& delivery : deliveries_) delivery->stop();
}

void RelayAgent::on_timer() {
    if (stopping_) return;
    // While new mail keeps arriving, look again soon: a message waits for the next scan.
    const bool found = scan() > 0;
    const std::uint64_t ms = found ? std::min<std::uint64_t>(options_.scan_interval_ms, busy_scan_interval_ms)
                                   : options_.scan_interval_ms;
    mail_.shard().reactor().timer_arm(*this, ms * 1'000'000ull);
}

std::size_t RelayAgent::scan() {
    ++stats_.scans;
    storage::MailStore& store = mail_.store();
    if (store.failed() != Status::ok) return 0;
    const auto due = store.spool_due(now_s(), options_.scan_batch_max);
    JobMap jobs;
    for (const storage::SpoolDue& d : due) job_add(jobs, d.spool_id, d.rcpt_index);
    const std::size_t found = jobs.size();
    jobs_queue(jobs);
    pump();
    return found;
}

void RelayAgent::job_add(JobMap& jobs, std::uint64_t spool_id, std::uint32_t rcpt_index) {
    const auto key = std::pair{spool_id, rcpt_index};
    if (in_flight_.contains(key)) return;
    const storage::SpoolEntry* entry = mail_.store().spool_get(spool_id);
    if (entry == nullptr || rcpt_index >= entry->recipients.size()) return;
    const std::string& address = entry->recipients[rcpt_index].address;
    if (mail_.directory().find_account(address) != nullptr) return;  // Local: ShardMail's.
    std::string domain = domain_of(address);
    if (domain.empty()) return;
    auto& job = jobs[{spool_id, domain}];
    if (!job) {
        job = std::make_unique<Job>();
        job->spool_id = spool_id;
        job->domain = domain;
    }
    job->rcpt_indices.push_back(rcpt_index);
    job->addresses.push_back(address);
    in_flight_.insert(key);
}

void RelayAgent::jobs_queue(JobMap& jobs) {
    for (auto& [key, job] : jobs) destinations_[key.second].waiting.push_back(std::move(job));
}

void RelayAgent::spooled(std::uint64_t spool_id) {
    if (stopping_) return;
    spooled_.push_back(spool_id);
    if (!Deferred::queued()) mail_.shard().reactor().defer(*this);
}

// The messages made durable since the last call: their due remote recipients become jobs
// now, not at the next scan.
void RelayAgent::spooled_run() {
    const storage::MailStore& store = mail_.store();
    const std::int64_t now = now_s();
    JobMap jobs;
    for (const std::uint64_t id : spooled_) {
        const storage::SpoolEntry* entry = store.spool_get(id);
        if (entry == nullptr) continue;
        for (std::uint32_t i = 0; i < entry->recipients.size(); ++i) {
            const storage::SpoolRecipient& r = entry->recipients[i];
            if (storage::rcpt_state_final(r.state) || r.next_attempt > now) continue;
            job_add(jobs, id, i);
        }
    }
    spooled_.clear();
    jobs_queue(jobs);
}

void RelayAgent::pump() {
    std::size_t blocked = 0;
    for (auto it = destinations_.begin(); it != destinations_.end();) {
        Destination& d = it->second;
        // An idle connection of this domain first (the most recently used: the server's
        // own idle timer is furthest away). resume() takes a job at once.
        while (!stopping_ && !d.waiting.empty() && !d.idle.empty()) {
            Delivery* delivery = d.idle.back();
            d.idle.pop_back();
            ++stats_.reused;
            delivery->resume();
        }
        while (!stopping_ && !d.waiting.empty() && d.active < d.permits &&
               deliveries_.size() < options_.deliveries_max) {
            ++d.active;
            deliveries_.push_back(std::make_unique<Delivery>(*this, it->first));
            deliveries_.back()->start();
        }
        pump_permits(it->first, d);
        if (!stopping_ && !d.waiting.empty() && d.active == 0 && d.requested == 0 && d.permits == 0) {
            ++blocked;  // No slot left to even ask for a connection.
        }
        if (d.waiting.empty() && d.active == 0 && d.requested == 0 && d.permits == 0) {
            it = destinations_.erase(it);
        } else {
            ++it;
        }
    }
    blocked_ = blocked;
    if (blocked > evicting_) evict_idle(blocked - evicting_);
}

// Asks the owner for one more connection while jobs wait (busy connections count: each
// holds a job), within the shard's free slots; gives back permits nobody uses. One ask at
// a time per domain: domains ramp up evenly (a grant pumps again), and a shard that waits
// at the owner holds one slot for it, not the domain's whole limit.
void RelayAgent::pump_permits(const std::string& domain, Destination& d) {
    if (!stopping_ && d.requested == 0) {
        const std::size_t want = std::min<std::size_t>(d.active + d.waiting.size(), options_.per_destination_max);
        const std::size_t used = deliveries_.size() + requested_total_;
        if (d.permits < want && used < options_.deliveries_max) {
            ++d.requested;
            ++requested_total_;
            limit_post(limit_owner(domain), limit_acquire, domain);
        }
    }
    while (d.permits > d.active && (d.waiting.empty() || stopping_)) {
        --d.permits;
        limit_post(limit_owner(domain), limit_release, domain);
    }
    d.yield_wanted = std::min(d.yield_wanted, d.permits);
}

unsigned RelayAgent::limit_owner(const std::string& domain) const {
    return cluster_ != nullptr ? DestinationLimits::owner(domain, cluster_->shard_count()) : limit_self();
}

unsigned RelayAgent::limit_self() const { return cluster_ != nullptr ? mail_.shard_index() : 0; }

void RelayAgent::limit_post(unsigned to, std::uint32_t kind, const std::string& domain) {
    if (to == limit_self()) {
        limit_handle(to, kind, domain);
        return;
    }
    CrossMessage message;
    message.handler = &RelayAgent::on_limit_message;
    message.discard = &RelayAgent::on_limit_discard;
    message.kind = kind;
    message.pointer = new LimitMessage{cluster_, domain};
    if (outbox_.empty() && mail_.shard().post(to, message) == Status::ok) return;
    // A full queue is backpressure: keep the order, retry soon.
    outbox_.emplace_back(to, message);
    if (!post_retry_->armed()) mail_.shard().reactor().timer_arm(*post_retry_, 1'000'000ull);
}

void RelayAgent::outbox_flush() {
    while (!outbox_.empty()) {
        if (mail_.shard().post(outbox_.front().first, outbox_.front().second) != Status::ok) {
            mail_.shard().reactor().timer_arm(*post_retry_, 1'000'000ull);
            return;
        }
        outbox_.pop_front();
    }
}

void RelayAgent::on_limit_message(Shard& to, const CrossMessage& message) {
    std::unique_ptr<LimitMessage> m(static_cast<LimitMessage*>(message.pointer));
    RelayAgent* agent = m->cluster->get(to.index());
    if (agent != nullptr) agent->limit_handle(message.from, message.kind, m->domain);
}

void RelayAgent::on_limit_discard(const CrossMessage& message) {
    delete static_cast<LimitMessage*>(message.pointer);
}

void RelayAgent::limit_handle(unsigned from, std::uint32_t kind, const std::string& domain) {
    switch (kind) {
        case limit_acquire: limit_actions(limits_.acquire(from, domain), domain); return;
        case limit_release: limit_actions(limits_.release(from, domain), domain); return;
        case limit_grant: limit_granted(domain); return;
        case limit_yield_request: limit_yield(domain); return;
        case limit_idle:
            if (limits_.contended(from, domain)) limit_post(from, limit_drop_idle, domain);
            return;
        case limit_drop_idle: {
            auto it = destinations_.find(domain);
            if (it == destinations_.end() || it->second.idle.empty()) return;
            Delivery* delivery = it->second.idle.front();
            idle_remove(*delivery);
            delivery->quit_idle(false);
            return;
        }
        default: log::error("relay: unknown limit message {}", kind);
    }
}

void RelayAgent::limit_actions(const std::vector<LimitAction>& actions, const std::string& domain) {
    for (const LimitAction& a : actions) {
        limit_post(a.shard, a.kind == LimitAction::Kind::grant ? limit_grant : limit_yield_request, domain);
    }
}

void RelayAgent::limit_granted(const std::string& domain) {
    auto it = destinations_.find(domain);
    if (it == destinations_.end() || it->second.requested == 0) {
        limit_post(limit_owner(domain), limit_release, domain);  // Not asked for: back.
        return;
    }
    Destination& d = it->second;
    --d.requested;
    RP_ASSERT(requested_total_ > 0);
    --requested_total_;
    ++d.permits;
    // pump() starts the delivery (or gives the permit back when the jobs went elsewhere).
    if (!Deferred::queued()) mail_.shard().reactor().defer(*this);
}

void RelayAgent::limit_yield(const std::string& domain) {
    auto it = destinations_.find(domain);
    if (it == destinations_.end()) return;
    Destination& d = it->second;
    if (!d.idle.empty()) {
        Delivery* delivery = d.idle.front();
        idle_remove(*delivery);
        delivery->quit_idle(false);
        return;
    }
    if (d.yield_wanted < d.permits) ++d.yield_wanted;
}

bool RelayAgent::yield_take(const std::string& domain) {
    auto it = destinations_.find(domain);
    if (it == destinations_.end() || it->second.yield_wanted == 0) return false;
    --it->second.yield_wanted;
    return true;
}

bool RelayAgent::delivery_idle(Delivery& delivery) {
    // A domain without a connection waits for a slot: give this one up instead.
    if (stopping_ || options_.connection_idle_ms == 0 || blocked_ > evicting_) return false;
    if (yield_take(delivery.domain())) return false;
    auto it = destinations_.find(delivery.domain());
    RP_ASSERT(it != destinations_.end());
    it->second.idle.push_back(&delivery);
    return true;
}

void RelayAgent::idle_remove(Delivery& delivery) {
    auto it = destinations_.find(delivery.domain());
    RP_ASSERT(it != destinations_.end());
    auto& idle = it->second.idle;
    const auto at = std::find(idle.begin(), idle.end(), &delivery);
    RP_ASSERT(at != idle.end());
    idle.erase(at);
}

void RelayAgent::evict_idle(std::size_t wanted) {
    std::vector<Delivery*> idle;
    for (auto& [domain, d] : destinations_) idle.insert(idle.end(), d.idle.begin(), d.idle.end());
    const std::size_t count = std::min(wanted, idle.size());
    std::partial_sort(idle.begin(), idle.begin() + static_cast<std::ptrdiff_t>(count), idle.end(),
                      [](const Delivery* a, const Delivery* b) { return a->idle_since_ns() < b->idle_since_ns(); });
    for (std::size_t i = 0; i < count; ++i) {
        idle_remove(*idle[i]);
        ++evicting_;
        ++stats_.evicted;
        idle[i]->quit_idle(true);
    }
}

std::unique_ptr<RelayAgent::Job> RelayAgent::take_job(const std::string& domain) {
    auto it = destinations_.find(domain);
    if (it == destinations_.end() || it->second.waiting.empty()) return nullptr;
    std::unique_ptr<Job> job = std::move(it->second.waiting.front());
    it->second.waiting.pop_front();
    return job;
}

void RelayAgent::delivery_finished(Delivery& delivery) {
    auto it = destinations_.find(delivery.domain());
    RP_ASSERT(it != destinations_.end());
    RP_ASSERT(it->second.active > 0);
    --it->second.active;
    RP_ASSERT(it->second.permits > 0);
    --it->second.permits;
    it->second.yield_wanted = std::min(it->second.yield_wanted, it->second.permits);
    limit_post(limit_owner(delivery.domain()), limit_release, delivery.domain());
    if (delivery.evicted()) {
        RP_ASSERT(evicting_ > 0);
        --evicting_;
    }
    // Freed after the current callback (the connection is still on the stack).
    if (!Deferred::queued()) mail_.shard().reactor().defer(*this);
}

void RelayAgent::on_deferred() {
    deliveries_.remove_if([](const std::unique_ptr<Delivery>& d) { return d->finished(); });
    if (!spooled_.empty()) spooled_run();
    pump();
}

bool RelayAgent::record(Job& job, std::size_t index, const SmtpReply& reply, const std::string& remote) {
    storage::MailStore& store = mail_.store();
    const std::uint32_t rcpt = job.rcpt_indices[index];
    const storage::SpoolEntry* entry = store.spool_get(job.spool_id);
    if (entry == nullptr || rcpt >= entry->recipients.size()) return false;
    const storage::SpoolRecipient& r = entry->recipients[rcpt];
    const std::uint32_t attempts = r.attempts + 1;
    const std::int64_t now = now_s();
    std::string line = reply.line();
    storage::RcptState state = storage::RcptState::delivered;
    std::int64_t next = 0;
    const char* what = "sent";
    if (reply.transient()) {
        const bool expired = now >= entry->arrival + static_cast<std::int64_t>(options_.max_lifetime_s);
        if (expired) {
            state = storage::RcptState::bounced;
            line += " (gave up: in the queue longer than " + std::to_string(options_.max_lifetime_s) + " s)";
            what = "expired";
        } else {
            const auto& schedule = options_.retry_schedule_s;
            next = now + static_cast<std::int64_t>(schedule[std::min<std::size_t>(attempts - 1, schedule.size() - 1)]);
            state = storage::RcptState::deferred;
            what = "deferred";
        }
    } else if (reply.permanent()) {
        state = storage::RcptState::bounced;
        what = "bounced";
    }
    if (line.size() > limits::reply_bytes_max) line.resize(limits::reply_bytes_max);
    log::info("relay {}: to=<{}> relay={} status={} ({})", mail::ShardMail::queue_id_text(job.spool_id),
              r.address, remote.empty() ? "none" : remote, what, line);
    const std::string address = r.address;  // `r` dies with the update below.
    if (Status s = store.spool_update(job.spool_id, rcpt, state, next, attempts, line); s != Status::ok) {
        log::error("relay {}: spool update failed: {}", mail::ShardMail::queue_id_text(job.spool_id),
                   status_name(s));
        return false;
    }
    if (state == storage::RcptState::delivered) ++stats_.delivered;
    if (state == storage::RcptState::deferred) ++stats_.deferred;
    if (state != storage::RcptState::bounced) return false;
    ++stats_.bounced;
    job.bounces.push_back({address, remote, line});
    return true;
}

void RelayAgent::job_done(std::unique_ptr<Job> job, const std::string& body) {
    if (!job->bounces.empty()) send_dsn(*job, body);
    storage::MailStore& store = mail_.store();
    if (const storage::SpoolEntry* entry = store.spool_get(job->spool_id)) {
        bool all_final = true;
        for (const auto& r : entry->recipients) all_final = all_final && storage::rcpt_state_final(r.state);
        if (all_final) (void)store.spool_remove(job->spool_id);
    }
    job_release(std::move(job));
}

void RelayAgent::job_release(std::unique_ptr<Job> job) {
    for (const std::uint32_t rcpt : job->rcpt_indices) in_flight_.erase({job->spool_id, rcpt});
}

namespace {
// Waits for the DSN's transaction; logs a failure (the bounce is then dropped, not retried).
struct DsnWait final : storage::DurableDone {
    std::string queue_id;
    void durable(Status status) override {
        if (status != Status::ok) {
            log::error("relay {}: bounce dropped: {}", queue_id, status_name(status));
        }
        delete this;
    }
};
}  // namespace

void RelayAgent::send_dsn(const Job& job, const std::string& body) {
    const storage::SpoolEntry* entry = mail_.store().spool_get(job.spool_id);
    const std::string queue_id = mail::ShardMail::queue_id_text(job.spool_id);
    if (entry == nullptr) return;
    if (!dsn_wanted(entry->sender)) {
        log::warn("relay {}: bounce of a bounce (null sender) dropped", queue_id);
        ++stats_.dsn_dropped;
        return;
    }
    DsnInput in;
    in.reporting_mta = options_.hostname;
    in.sender = entry->sender;
    in.queue_id = queue_id;
    in.arrival_unix = entry->arrival;
    in.now_unix = now_s();
    const std::uint64_t id = mail_.next_message_id();
    in.boundary_seed = mail::ShardMail::queue_id_text(id);
    in.recipients = job.bounces;
    in.original = body;
    const std::string dsn = dsn_build(in);
    auto ref = mail_.store().body_put(std::as_bytes(std::span(dsn.data(), dsn.size())));
    mail::AcceptArgs args;
    args.message_id = id;
    args.sender = "";
    args.client = "ringpost relay (DSN for " + queue_id + ")";
    args.body_bytes = dsn.size();
    if (ref) args.body = *ref;
    const Account* account = mail_.directory().find_account(ascii_lower(entry->sender));
    args.recipients.push_back({account != nullptr ? account->address : entry->sender, account});
    auto* wait = new DsnWait;
    wait->queue_id = queue_id;
    const Status s = ref ? mail_.accept(args, *wait) : ref.status();
    if (s != Status::ok) {
        delete wait;
        log::error("relay {}: bounce to <{}> dropped: {}", queue_id, entry->sender, status_name(s));
        ++stats_.dsn_dropped;
        return;
    }
    ++stats_.dsn_queued;
    log::info("relay {}: bounce {} to <{}> ({} recipients)", queue_id, in.boundary_seed, entry->sender,
              job.bounces.size());
}

}  // namespace rp::smtp
