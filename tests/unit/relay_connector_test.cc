// tests/unit/relay_connector_test.cc: OutboundConnection (core/connector.h) on a real ring
// against loopback sockets: refused, echo, peer close, our close; callbacks exactly once.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "core/connector.h"
#include "core/reactor.h"
#include "tests/unit/engine_test_util.h"

namespace rp {
namespace {

struct Recorder final : OutboundHandler {
    int connected = 0, closed = 0, sent = 0;
    Status connect_status = Status::cancelled, close_reason = Status::cancelled;
    std::string received;
    void on_connected(Status s) override {
        ++connected;
        connect_status = s;
    }
    void on_received(std::string_view bytes) override { received += bytes; }
    void on_sent() override { ++sent; }
    void on_closed(Status s) override {
        ++closed;
        close_reason = s;
    }
};

sockaddr_storage loopback(std::uint16_t port) {
    sockaddr_storage s{};
    auto* a = reinterpret_cast<sockaddr_in*>(&s);
    a->sin_family = AF_INET;
    a->sin_port = htons(port);
    a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return s;
}

// A listening socket on a free port (accepting is done by the test, blocking with a timeout).
int listener(std::uint16_t& port) {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_storage s = loopback(0);
    EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&s), sizeof(sockaddr_in)), 0);
    EXPECT_EQ(listen(fd, 4), 0);
    socklen_t len = sizeof s;
    getsockname(fd, reinterpret_cast<sockaddr*>(&s), &len);
    port = ntohs(reinterpret_cast<sockaddr_in*>(&s)->sin_port);
    timeval tv{5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

template <typename Done>
void run_until(Reactor& reactor, Done done) {
    for (int i = 0; i < 500 && !done(); ++i) reactor.run_once(10'000'000);
}

// A refused connect reports on_connected(refused), then on_closed once.
TEST(OutboundConnection, Refused) {
    test::require_io_uring();
    auto reactor = Reactor::create({});
    ASSERT_TRUE(reactor.ok());
    std::uint16_t port = 0;
    close(listener(port));  // Now nobody listens there.
    Recorder r;
    OutboundConnection c(**reactor, r);
    ASSERT_EQ(c.connect(loopback(port), sizeof(sockaddr_in)), Status::ok);
    run_until(**reactor, [&] { return r.closed > 0; });
    EXPECT_EQ(r.connected, 1);
    EXPECT_EQ(r.connect_status, Status::refused);
    EXPECT_EQ(r.closed, 1);
    EXPECT_TRUE(c.idle());
}

// Connect, send, receive the peer's bytes, peer closes: on_closed(closed) once; reusable.
TEST(OutboundConnection, ExchangeAndPeerClose) {
    test::require_io_uring();
    auto reactor = Reactor::create({});
    ASSERT_TRUE(reactor.ok());
    std::uint16_t port = 0;
    const int l = listener(port);
    Recorder r;
    OutboundConnection c(**reactor, r);
    ASSERT_EQ(c.connect(loopback(port), sizeof(sockaddr_in)), Status::ok);
    c.send("hello ");  // Queued before the connection is up: sent once it is.
    c.send("world");
    run_until(**reactor, [&] { return r.connected > 0; });
    ASSERT_EQ(r.connect_status, Status::ok);
    const int peer = accept(l, nullptr, nullptr);
    ASSERT_GE(peer, 0);
    run_until(**reactor, [&] { return r.sent > 0; });
    char buffer[64] = {};
    std::string got;
    while (got.size() < 11) {
        const ssize_t n = recv(peer, buffer, sizeof buffer, 0);
        ASSERT_GT(n, 0);
        got.append(buffer, static_cast<std::size_t>(n));
    }
    EXPECT_EQ(got, "hello world");
    ASSERT_EQ(send(peer, "220 hi\r\n", 8, 0), 8);
    run_until(**reactor, [&] { return r.received.size() >= 8; });
    EXPECT_EQ(r.received, "220 hi\r\n");
    close(peer);
    run_until(**reactor, [&] { return r.closed > 0; });
    EXPECT_EQ(r.closed, 1);
    EXPECT_EQ(r.close_reason, Status::closed);
    EXPECT_TRUE(c.idle());
    // Our own close of a second connection: on_closed(reason) once, no more receives.
    Recorder r2;
    OutboundConnection c2(**reactor, r2);
    ASSERT_EQ(c2.connect(loopback(port), sizeof(sockaddr_in)), Status::ok);
    run_until(**reactor, [&] { return r2.connected > 0; });
    const int peer2 = accept(l, nullptr, nullptr);
    c2.close(Status::timeout);
    c2.close(Status::io);  // A second close is ignored.
    run_until(**reactor, [&] { return r2.closed > 0; });
    EXPECT_EQ(r2.closed, 1);
    EXPECT_EQ(r2.close_reason, Status::timeout);
    EXPECT_TRUE(c2.idle());
    close(peer2);
    close(l);
}

}  // namespace
}  // namespace rp
