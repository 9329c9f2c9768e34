// tests/unit/dns_client_test.cc: the DNS client on a real ring against a loopback responder.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "core/reactor.h"
#include "protocols/dns/dns_client.h"
#include "tests/unit/dns_test_util.h"
#include "tests/unit/engine_test_util.h"

namespace rp::dns {
namespace {

enum class Mode { answer, stray_then_answer, silent_once, silent, truncate };

// A UDP (and TCP) responder on 127.0.0.1 in a thread; every socket call is bounded by a
// receive timeout, so the thread ends.
class Responder {
public:
    explicit Responder(Mode mode) : mode_(mode) {
        // UDP takes a free port; TCP needs the same number, which another process (tests
        // run in parallel) may hold for TCP: then both start over on a new port, bounded.
        bool bound = false;
        sockaddr_in a{};
        for (int attempt = 0; attempt < 100 && !bound; ++attempt) {
            if (attempt > 0) {
                close(udp_);
                close(tcp_);
            }
            udp_ = socket(AF_INET, SOCK_DGRAM, 0);
            a = sockaddr_in{};
            a.sin_family = AF_INET;
            a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            EXPECT_EQ(bind(udp_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
            socklen_t len = sizeof a;
            getsockname(udp_, reinterpret_cast<sockaddr*>(&a), &len);
            port_ = ntohs(a.sin_port);
            tcp_ = socket(AF_INET, SOCK_STREAM, 0);
            int one = 1;
            setsockopt(tcp_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
            bound = bind(tcp_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
        }
        EXPECT_TRUE(bound) << "no port free for both UDP and TCP";
        listen(tcp_, 4);
        timeval tv{0, 100'000};
        setsockopt(udp_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(tcp_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        thread_ = std::thread([this] { run(); });
    }
    ~Responder() {
        stop_ = true;
        thread_.join();
        close(udp_);
        close(tcp_);
    }
    std::uint16_t port() const { return port_; }
    int udp_queries() const { return udp_queries_; }
    int tcp_queries() const { return tcp_queries_; }

private:
    static bool question_of(const std::uint8_t* data, std::size_t size, DnsQuestion& q) {
        ldns_pkt* p = nullptr;
        if (ldns_wire2pkt(&p, data, size) != LDNS_STATUS_OK) return false;
        const ldns_rr* rr = ldns_rr_list_rr(ldns_pkt_question(p), 0);
        char* name = ldns_rdf2str(ldns_rr_owner(rr));
        q.name = name;
        free(name);
        q.name.pop_back();  // The trailing dot.
        q.type = static_cast<DnsType>(ldns_rr_get_type(rr));
        ldns_pkt_free(p);
        return true;
    }
    static std::vector<std::uint8_t> reply(const DnsQuestion& q, std::uint16_t id, bool tc) {
        test::AnswerSpec spec;
        spec.truncated = tc;
        if (!tc) spec.answer = {q.name + ". 300 IN MX 10 mx." + q.name + "."};
        return test::answer_wire(q, id, spec);
    }
    void run() {
        std::uint8_t buffer[4096];
        while (!stop_) {
            sockaddr_in from{};
            socklen_t len = sizeof from;
            const ssize_t n = recvfrom(udp_, buffer, sizeof buffer, 0, reinterpret_cast<sockaddr*>(&from), &len);
            if (n <= 0) continue;
            ++udp_queries_;
            DnsQuestion q;
            if (!question_of(buffer, static_cast<std::size_t>(n), q)) continue;
            const auto id = static_cast<std::uint16_t>((buffer[0] << 8) | buffer[1]);
            auto send = [&](const std::vector<std::uint8_t>& bytes) {
                sendto(udp_, bytes.data(), bytes.size(), 0, reinterpret_cast<sockaddr*>(&from), len);
            };
            if (mode_ == Mode::silent || (mode_ == Mode::silent_once && udp_queries_ == 1)) continue;
            if (mode_ == Mode::stray_then_answer) send(reply(q, static_cast<std::uint16_t>(id + 1), false));
            if (mode_ == Mode::truncate) {
                send(reply(q, id, true));
                serve_tcp();
                continue;
            }
            send(reply(q, id, false));
        }
    }
    void serve_tcp() {
        for (int i = 0; i < 20; ++i) {
            const int c = accept(tcp_, nullptr, nullptr);
            if (c < 0) continue;
            timeval tv{1, 0};
            setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
            std::uint8_t buffer[4096];
            std::size_t got = 0;
            while (got < 2 || got < 2u + ((buffer[0] << 8) | buffer[1])) {
                const ssize_t n = recv(c, buffer + got, sizeof buffer - got, 0);
                if (n <= 0) break;
                got += static_cast<std::size_t>(n);
            }
            DnsQuestion q;
            if (got > 2 && question_of(buffer + 2, got - 2, q)) {
                ++tcp_queries_;
                const auto id = static_cast<std::uint16_t>((buffer[2] << 8) | buffer[3]);
                auto bytes = reply(q, id, false);
                std::uint8_t prefix[2] = {static_cast<std::uint8_t>(bytes.size() >> 8),
                                          static_cast<std::uint8_t>(bytes.size())};
                send(c, prefix, 2, MSG_NOSIGNAL);
                send(c, bytes.data(), bytes.size(), MSG_NOSIGNAL);
            }
            close(c);
            return;
        }
    }

    Mode mode_;
    int udp_ = -1, tcp_ = -1;
    std::uint16_t port_ = 0;
    std::atomic<bool> stop_{false};
    std::atomic<int> udp_queries_{0}, tcp_queries_{0};
    std::thread thread_;
};

struct Outcome {
    bool done = false;
    Result<DnsAnswer> answer = Status::cancelled;
};

Outcome ask(Mode mode, unsigned attempts, int* udp = nullptr, int* tcp = nullptr) {
    rp::test::require_io_uring();
    Responder responder(mode);
    auto reactor = Reactor::create({});
    EXPECT_TRUE(reactor.ok());
    DnsClientOptions options;
    options.resolvers.push_back(*dns_server_parse("127.0.0.1:" + std::to_string(responder.port())));
    options.timeout_ms = 200;
    options.attempts = attempts;
    Outcome outcome;
    {
        DnsClient client(**reactor, options, 42);
        client.query({"d.test", DnsType::mx}, [&](const Result<DnsAnswer>& a) {
            EXPECT_FALSE(outcome.done);
            outcome.done = true;
            outcome.answer = a;
        });
        EXPECT_FALSE(outcome.done);  // Never inside query().
        for (int i = 0; i < 500 && !(outcome.done && client.idle()); ++i) {
            (*reactor)->run_once(20'000'000);
        }
        EXPECT_TRUE(client.idle());
    }
    if (udp) *udp = responder.udp_queries();
    if (tcp) *tcp = responder.tcp_queries();
    return outcome;
}

// A plain UDP answer.
TEST(DnsClient, Answers) {
    Outcome o = ask(Mode::answer, 1);
    ASSERT_TRUE(o.done);
    ASSERT_TRUE(o.answer.ok());
    ASSERT_EQ(o.answer->mx.size(), 1u);
    EXPECT_EQ(o.answer->mx[0].host, "mx.d.test");
}

// A datagram with the wrong id is ignored; the right one is taken.
TEST(DnsClient, IgnoresStray) {
    Outcome o = ask(Mode::stray_then_answer, 1);
    ASSERT_TRUE(o.done);
    ASSERT_TRUE(o.answer.ok());
}

// A lost datagram is retried after the timeout.
TEST(DnsClient, RetriesAfterTimeout) {
    int udp = 0;
    Outcome o = ask(Mode::silent_once, 2, &udp);
    ASSERT_TRUE(o.done);
    ASSERT_TRUE(o.answer.ok());
    EXPECT_EQ(udp, 2);
}

// No answer at all: Status::timeout after the attempts.
TEST(DnsClient, TimesOut) {
    int udp = 0;
    Outcome o = ask(Mode::silent, 2, &udp);
    ASSERT_TRUE(o.done);
    EXPECT_EQ(o.answer.status(), Status::timeout);
    EXPECT_EQ(udp, 2);
}

// TC=1 over UDP: the question is asked again over TCP.
TEST(DnsClient, TcpOnTruncation) {
    int tcp = 0;
    Outcome o = ask(Mode::truncate, 1, nullptr, &tcp);
    ASSERT_TRUE(o.done);
    ASSERT_TRUE(o.answer.ok());
    EXPECT_FALSE(o.answer->truncated);
    EXPECT_EQ(tcp, 1);
}

// Resolver addresses parse; bad ones are refused.
TEST(DnsClient, ServerParse) {
    EXPECT_TRUE(dns_server_parse("127.0.0.1:53").ok());
    EXPECT_TRUE(dns_server_parse("[::1]:5353").ok());
    EXPECT_FALSE(dns_server_parse("127.0.0.1").ok());
    EXPECT_FALSE(dns_server_parse("localhost:53").ok());
    EXPECT_FALSE(dns_server_parse("127.0.0.1:0").ok());
}

}  // namespace
}  // namespace rp::dns

// Proves resolv.conf parsing: nameserver lines in order (IPv4 and IPv6, port 53), comments,
// other options and zone-scoped link-local addresses skipped, at most three, no trailing
// newline needed.
TEST(DnsClient, ResolvConfNameservers) {
    using rp::dns::resolv_conf_nameservers;
    EXPECT_EQ(resolv_conf_nameservers("# comment\nsearch a.test\nnameserver 10.0.0.1\n"
                                      "options ndots:2\n  nameserver\t::1  # trailing\n"
                                      "nameserver fe80::1%eth0\nnameserver 10.0.0.3"),
              (std::vector<std::string>{"10.0.0.1:53", "[::1]:53", "10.0.0.3:53"}));
    EXPECT_EQ(resolv_conf_nameservers("nameserver 1.1.1.1\nnameserver 2.2.2.2\n"
                                      "nameserver 3.3.3.3\nnameserver 4.4.4.4\n").size(), 3u);
    EXPECT_TRUE(resolv_conf_nameservers("").empty());
    EXPECT_TRUE(resolv_conf_nameservers("nameserver\nnameserver not-an-address\n;nameserver 1.2.3.4\n").empty());
    EXPECT_EQ(resolv_conf_nameservers("nameserver 127.0.0.1\r\n"), std::vector<std::string>{"127.0.0.1:53"});
}
