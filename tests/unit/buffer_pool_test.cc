// BufferPool: provided buffers move between the kernel and BufferRefs, come back on
// release, and an exhausted ring ends a multishot receive with ENOBUFS (backpressure).
#include "core/buffer_pool.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <vector>

#include "core/reactor.h"
#include "engine_test_util.h"

namespace rp {
namespace {

class Receiver final : public CqeHandler {
public:
    explicit Receiver(BufferPool& pool) : pool_(pool) {}
    void on_cqe(const io_uring_cqe& cqe, unsigned /*tag*/) override {
        if ((cqe.flags & IORING_CQE_F_MORE) == 0) armed = false;
        if (cqe.res > 0) {
            buffers.push_back(pool_.take(cqe));
        } else {
            errors.push_back(-cqe.res);
        }
    }
    void arm(Reactor& reactor, int fd) {
        io_uring_sqe* sqe = reactor.sqe();
        io_uring_prep_recv_multishot(sqe, fd, nullptr, 0, 0);
        sqe->flags |= IOSQE_BUFFER_SELECT;
        sqe->buf_group = pool_.group_id();
        io_uring_sqe_set_data64(sqe, Reactor::user_data(this, 0));
        armed = true;
    }
    std::vector<BufferRef> buffers;
    std::vector<int> errors;
    bool armed = false;

private:
    BufferPool& pool_;
};

struct Fixture {
    Fixture() {
        test::require_io_uring();
        ReactorOptions options;
        options.ring_entries = 64;
        auto created = Reactor::create(options);
        EXPECT_TRUE(created.ok());
        reactor = std::move(created.value());
        auto made = BufferPool::create(reactor->ring(), 3, 16, 512);
        EXPECT_TRUE(made.ok());
        pool = std::move(made.value());
        EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    }
    ~Fixture() {
        close(fds[0]);
        close(fds[1]);
    }
    std::unique_ptr<Reactor> reactor;
    std::unique_ptr<BufferPool> pool;
    int fds[2] = {-1, -1};
};

// Proves bad sizes are refused before anything is registered.
TEST(BufferPool, RejectsBadSizes) {
    test::require_io_uring();
    auto reactor = Reactor::create(ReactorOptions{});
    ASSERT_TRUE(reactor.ok());
    EXPECT_EQ(BufferPool::create((*reactor)->ring(), 0, 24, 512).status(), Status::invalid);
    EXPECT_EQ(BufferPool::create((*reactor)->ring(), 0, 16, 100).status(), Status::invalid);
}

// Proves received bytes arrive in BufferRefs, which return to the ring when released, and
// that moving a BufferRef moves ownership (one release only).
TEST(BufferPool, ReceiveAndRelease) {
    Fixture f;
    Receiver receiver(*f.pool);
    receiver.arm(*f.reactor, f.fds[0]);
    std::string text = "hello ring";
    ASSERT_EQ(write(f.fds[1], text.data(), text.size()), static_cast<ssize_t>(text.size()));
    for (int i = 0; i < 100 && receiver.buffers.empty(); ++i) f.reactor->run_once(100'000'000);
    ASSERT_EQ(receiver.buffers.size(), 1u);
    auto bytes = receiver.buffers[0].bytes();
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size()), text);
    EXPECT_EQ(f.pool->outstanding(), 1u);
    BufferRef moved = std::move(receiver.buffers[0]);
    EXPECT_FALSE(receiver.buffers[0]);
    EXPECT_TRUE(moved);
    receiver.buffers.clear();
    EXPECT_EQ(f.pool->outstanding(), 1u);
    moved.reset();
    EXPECT_EQ(f.pool->outstanding(), 0u);
    EXPECT_EQ(f.pool->available(), 16u);
    shutdown(f.fds[1], SHUT_WR);  // Ends the multishot receive with EOF.
    for (int i = 0; i < 100 && receiver.armed; ++i) f.reactor->run_once(100'000'000);
}

// Proves an exhausted ring ends the multishot receive with ENOBUFS, and that after the
// buffers come back a re-armed receive gets the rest of the bytes, in order.
TEST(BufferPool, ExhaustionIsBackpressure) {
    Fixture f;
    Receiver receiver(*f.pool);
    receiver.arm(*f.reactor, f.fds[0]);
    std::string sent;
    for (int i = 0; i < 20 * 512; ++i) sent.push_back(static_cast<char>('a' + i % 26));
    ASSERT_EQ(write(f.fds[1], sent.data(), sent.size()), static_cast<ssize_t>(sent.size()));
    for (int i = 0; i < 100 && receiver.armed; ++i) f.reactor->run_once(100'000'000);
    ASSERT_FALSE(receiver.armed);
    ASSERT_EQ(receiver.errors, std::vector<int>({ENOBUFS}));
    EXPECT_EQ(receiver.buffers.size(), 16u);
    EXPECT_EQ(f.pool->available(), 0u);
    std::string got;
    for (auto& buffer : receiver.buffers) {
        got.append(reinterpret_cast<const char*>(buffer.bytes().data()), buffer.size());
    }
    receiver.buffers.clear();  // All back to the ring.
    EXPECT_EQ(f.pool->available(), 16u);
    receiver.errors.clear();
    receiver.arm(*f.reactor, f.fds[0]);
    for (int i = 0; i < 100 && got.size() + 0 < sent.size(); ++i) {
        f.reactor->run_once(100'000'000);
        for (auto& buffer : receiver.buffers) {
            got.append(reinterpret_cast<const char*>(buffer.bytes().data()), buffer.size());
        }
        receiver.buffers.clear();
    }
    EXPECT_EQ(got, sent);
    shutdown(f.fds[1], SHUT_WR);
    for (int i = 0; i < 100 && receiver.armed; ++i) f.reactor->run_once(100'000'000);
}

}  // namespace
}  // namespace rp
