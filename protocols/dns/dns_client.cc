// protocols/dns/dns_client.cc: UDP and TCP DNS over io_uring.
#include "protocols/dns/dns_client.h"

#include <arpa/inet.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>

#include "core/io.h"

namespace rp::dns {

namespace {
constexpr unsigned tag_send = 0, tag_recv = 1, tag_connect = 2, tag_cancel = 3;
constexpr std::size_t udp_bytes_max = 4096;
constexpr std::size_t tcp_bytes_max = 65535 + 2;
}  // namespace

std::vector<std::string> resolv_conf_nameservers(std::string_view text) {
    std::vector<std::string> out;
    while (!text.empty() && out.size() < 3) {
        const auto end = text.find('\n');
        std::string_view line = text.substr(0, end);
        text = end == std::string_view::npos ? std::string_view() : text.substr(end + 1);
        const auto word = [&line]() {
            const auto start = line.find_first_not_of(" \t\r");
            if (start == std::string_view::npos) {
                line = {};
                return std::string_view();
            }
            line.remove_prefix(start);
            const auto stop = std::min(line.find_first_of(" \t\r"), line.size());
            const std::string_view w = line.substr(0, stop);
            line.remove_prefix(stop);
            return w;
        };
        if (word() != "nameserver") continue;  // Comments (# ;) and other options too.
        const std::string_view address = word();
        if (address.empty() || address.find('%') != std::string_view::npos) continue;
        std::string server = address.find(':') != std::string_view::npos
                                 ? "[" + std::string(address) + "]:53"
                                 : std::string(address) + ":53";
        if (dns_server_parse(server)) out.push_back(std::move(server));
    }
    return out;
}

Result<DnsServerAddress> dns_server_parse(std::string_view text) {
    std::string_view host, port;
    if (!text.empty() && text.front() == '[') {
        const auto close = text.find(']');
        if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
            return Status::invalid;
        }
        host = text.substr(1, close - 1);
        port = text.substr(close + 2);
    } else {
        const auto colon = text.rfind(':');
        if (colon == std::string_view::npos) return Status::invalid;
        host = text.substr(0, colon);
        port = text.substr(colon + 1);
    }
    unsigned number = 0;
    auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), number);
    if (ec != std::errc() || end != port.data() + port.size() || number == 0 || number > 65535) {
        return Status::invalid;
    }
    DnsServerAddress out;
    const std::string h(host);
    auto* v4 = reinterpret_cast<sockaddr_in*>(&out.address);
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&out.address);
    if (inet_pton(AF_INET, h.c_str(), &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(static_cast<std::uint16_t>(number));
        out.bytes = sizeof(sockaddr_in);
    } else if (inet_pton(AF_INET6, h.c_str(), &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(static_cast<std::uint16_t>(number));
        out.bytes = sizeof(sockaddr_in6);
    } else {
        return Status::invalid;
    }
    return out;
}

// Failures found inside query() are reported from a deferred callback.
class DnsClient::Failures final : public Deferred {
public:
    explicit Failures(Reactor& reactor) : reactor_(reactor) {}
    void add(Done done, Status status) {
        pending_.emplace_back(std::move(done), status);
        if (!queued()) reactor_.defer(*this);
    }
    void on_deferred() override {
        auto list = std::move(pending_);
        pending_.clear();
        for (auto& [done, status] : list) done(Result<DnsAnswer>(status));
    }

private:
    Reactor& reactor_;
    std::vector<std::pair<Done, Status>> pending_;
};

class DnsClient::Slot final : public CqeHandler, public Timer {
public:
    explicit Slot(DnsClient& client) : client_(client) {}
    ~Slot() override {
        if (fd_ >= 0) ::close(fd_);
    }

    void start(const DnsQuestion& question, std::vector<std::uint8_t> wire, std::uint16_t id,
               Done done) {
        RP_ASSERT(!busy_);
        RP_ASSERT(ops_ == 0);
        busy_ = true;
        question_ = question;
        wire_ = std::move(wire);
        id_ = id;
        done_ = std::move(done);
        attempt_ = 0;
        tcp_ = false;
        finished_ = false;
        begin_attempt();
    }
    bool busy() const { return busy_; }

    void on_cqe(const io_uring_cqe& cqe, unsigned tag) override {
        RP_ASSERT(ops_ > 0);
        --ops_;
        if (!finished_ && !retry_) handle(cqe, tag);
        settle();
    }

    void on_timer() override {
        if (finished_ || retry_) return;
        ++client_.stats_.timeouts;
        attempt_failed(Status::timeout);
        settle();
    }

private:
    Reactor& reactor() { return client_.reactor_; }
    const DnsServerAddress& server() const {
        const auto& list = client_.options_.resolvers;
        return list[attempt_ % list.size()];
    }

    void begin_attempt() {
        RP_ASSERT(fd_ < 0);
        RP_ASSERT(ops_ == 0);
        retry_ = false;
        received_ = 0;
        const DnsServerAddress& to = server();
        const int type = tcp_ ? SOCK_STREAM : SOCK_DGRAM;
        fd_ = ::socket(to.address.ss_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd_ < 0) {
            attempt_failed(status_from_errno(errno));
            return;
        }
        reactor().timer_arm(*this, client_.options_.timeout_ms * 1'000'000ull);
        if (tcp_) {
            ++client_.stats_.tcp;
            buffer_.assign(tcp_bytes_max, 0);
            tcp_request_.clear();
            tcp_request_.push_back(static_cast<std::uint8_t>(wire_.size() >> 8));
            tcp_request_.push_back(static_cast<std::uint8_t>(wire_.size() & 0xff));
            tcp_request_.insert(tcp_request_.end(), wire_.begin(), wire_.end());
            io_uring_sqe* sqe = reactor().sqe();
            io_uring_prep_connect(sqe, fd_, reinterpret_cast<const sockaddr*>(&to.address), to.bytes);
            submit(sqe, tag_connect);
            return;
        }
        // A connected UDP socket: the kernel drops datagrams from other sources.
        if (::connect(fd_, reinterpret_cast<const sockaddr*>(&to.address), to.bytes) != 0) {
            attempt_failed(status_from_errno(errno));
            return;
        }
        buffer_.assign(udp_bytes_max, 0);
        io_uring_sqe* sqe = reactor().sqe();
        io_uring_prep_send(sqe, fd_, wire_.data(), wire_.size(), MSG_NOSIGNAL);
        submit(sqe, tag_send);
        arm_recv();
    }

    void submit(io_uring_sqe* sqe, unsigned tag) {
        io_uring_sqe_set_data64(sqe, Reactor::user_data(this, tag));
        ++ops_;
    }

    void arm_recv() {
        RP_ASSERT(received_ < buffer_.size());
        io_uring_sqe* sqe = reactor().sqe();
        // bounds: received_ < buffer_.size() (asserted), so the length is positive.
        io_uring_prep_recv(sqe, fd_, buffer_.data() + received_, buffer_.size() - received_, 0);
        submit(sqe, tag_recv);
    }

    void handle(const io_uring_cqe& cqe, unsigned tag) {
        if (tag == tag_cancel) return;
        if (cqe.res < 0) {
            if (cqe.res == -ECANCELED) return;
            attempt_failed(status_from_errno(-cqe.res));
            return;
        }
        if (tag == tag_connect) {
            io_uring_sqe* sqe = reactor().sqe();
            io_uring_prep_send(sqe, fd_, tcp_request_.data(), tcp_request_.size(), MSG_NOSIGNAL);
            submit(sqe, tag_send);
            arm_recv();
            return;
        }
        if (tag == tag_send) {
            const auto want = tcp_ ? tcp_request_.size() : wire_.size();
            if (static_cast<std::size_t>(cqe.res) != want) attempt_failed(Status::io);
            return;
        }
        RP_ASSERT(tag == tag_recv);
        if (tcp_) {
            tcp_received(static_cast<std::size_t>(cqe.res));
            return;
        }
        const std::span<const std::uint8_t> datagram(buffer_.data(), static_cast<std::size_t>(cqe.res));
        answer_received(datagram);
    }

    void tcp_received(std::size_t bytes) {
        if (bytes == 0) {
            attempt_failed(Status::closed);
            return;
        }
        received_ += bytes;  // bounds: the recv was at most buffer_.size() - received_.
        if (received_ >= 2) {
            const std::size_t length = (std::size_t{buffer_[0]} << 8) | buffer_[1];
            if (received_ >= 2 + length) {
                answer_received(std::span<const std::uint8_t>(buffer_.data() + 2, length));
                return;
            }
        }
        arm_recv();
    }

    void answer_received(std::span<const std::uint8_t> bytes) {
        auto answer = dns_answer_parse(bytes, question_, id_);
        if (!answer) {
            ++client_.stats_.ignored;
            if (tcp_) {
                attempt_failed(Status::corrupt);
            } else {
                arm_recv();  // A stray datagram: keep waiting for ours.
            }
            return;
        }
        if (answer->truncated && !tcp_) {
            tcp_ = true;
            retry_same_ = true;
            attempt_failed(Status::again);
            return;
        }
        ++client_.stats_.answers;
        finish(answer);
    }

    void attempt_failed(Status status) {
        last_error_ = status;
        retry_ = true;
        reactor().timer_cancel(*this);
        if (ops_ > 0 && fd_ >= 0) {
            io_uring_sqe* sqe = reactor().sqe();
            io_uring_prep_cancel_fd(sqe, fd_, IORING_ASYNC_CANCEL_ALL);
            submit(sqe, tag_cancel);
        }
    }

    void finish(const Result<DnsAnswer>& answer) {
        finished_ = true;
        reactor().timer_cancel(*this);
        if (ops_ > 0 && fd_ >= 0) {
            io_uring_sqe* sqe = reactor().sqe();
            io_uring_prep_cancel_fd(sqe, fd_, IORING_ASYNC_CANCEL_ALL);
            submit(sqe, tag_cancel);
        }
        Done done = std::move(done_);
        done_ = nullptr;
        done(answer);
    }

    // Once no operation is in flight: close the socket, then retry, or free the slot.
    void settle() {
        if (ops_ > 0) return;
        if (fd_ >= 0) {
            ::close(fd_);
            fd_ = -1;
        }
        if (retry_ && !finished_) {
            const unsigned total = client_.options_.attempts *
                                   static_cast<unsigned>(client_.options_.resolvers.size());
            if (retry_same_) {
                retry_same_ = false;  // TCP to the same resolver: not a new attempt.
            } else if (++attempt_ >= total) {
                ++client_.stats_.failures;
                finish(Result<DnsAnswer>(last_error_ == Status::ok ? Status::timeout : last_error_));
                settle();
                return;
            } else {
                tcp_ = false;
            }
            begin_attempt();
            if (retry_ && ops_ == 0) settle();  // The socket could not even be made.
            return;
        }
        if (finished_) {
            busy_ = false;
            finished_ = false;
            retry_ = false;
            client_.release(*this);
        }
    }

    DnsClient& client_;
    bool busy_ = false;
    bool finished_ = false;
    bool retry_ = false;
    bool retry_same_ = false;
    bool tcp_ = false;
    int fd_ = -1;
    unsigned ops_ = 0;
    unsigned attempt_ = 0;
    std::uint16_t id_ = 0;
    Status last_error_ = Status::ok;
    DnsQuestion question_;
    std::vector<std::uint8_t> wire_;
    std::vector<std::uint8_t> tcp_request_;
    std::vector<std::uint8_t> buffer_;
    std::size_t received_ = 0;
    Done done_;
};

DnsClient::DnsClient(Reactor& reactor, DnsClientOptions options, std::uint64_t seed)
    : reactor_(reactor), options_(std::move(options)), random_(seed),
      failures_(std::make_unique<Failures>(reactor)) {
    RP_ASSERT(options_.attempts > 0);
    RP_ASSERT(options_.queries_max > 0);
    slots_.reserve(options_.queries_max);
    for (unsigned i = 0; i < options_.queries_max; ++i) {
        slots_.push_back(std::make_unique<Slot>(*this));
        free_.push_back(slots_.back().get());
    }
}

DnsClient::~DnsClient() {
    for (auto& slot : slots_) {
        if (slot->armed()) reactor_.timer_cancel(*slot);
    }
    // A queued Failures would be run by the reactor after we are gone: the shard destroys
    // the client only after its loop ended, when nothing is dispatched any more.
}

bool DnsClient::idle() const { return free_.size() == slots_.size() && !failures_->queued(); }

void DnsClient::query(const DnsQuestion& question, Done done) {
    ++stats_.queries;
    if (options_.resolvers.empty()) {
        failures_->add(std::move(done), Status::not_found);
        return;
    }
    if (free_.empty()) {
        failures_->add(std::move(done), Status::full);
        return;
    }
    const auto id = static_cast<std::uint16_t>(random_());
    auto wire = dns_query_build(question, id);
    if (!wire) {
        failures_->add(std::move(done), wire.status());
        return;
    }
    Slot* slot = free_.back();
    free_.pop_back();
    slot->start(question, std::move(wire.value()), id, std::move(done));
}

void DnsClient::release(Slot& slot) {
    RP_ASSERT(!slot.busy());
    free_.push_back(&slot);
    RP_ASSERT(free_.size() <= slots_.size());
}

}  // namespace rp::dns
