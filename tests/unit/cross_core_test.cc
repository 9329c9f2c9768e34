// Cross-core queues: SPSC order and capacity, and shard-to-shard messages over the real
// engine (woken with IORING_OP_MSG_RING).
#include "core/cross_core.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "core/shard.h"
#include "engine_test_util.h"

namespace rp {
namespace {

// Proves a full queue refuses (backpressure, no growth) and order survives wrap-around.
TEST(SpscQueue, CapacityAndOrder) {
    SpscQueue queue(4);
    CrossMessage message;
    for (std::uint64_t round = 0; round < 3; ++round) {
        for (std::uint64_t i = 0; i < 4; ++i) {
            message.args[0] = round * 10 + i;
            EXPECT_TRUE(queue.push(message));
        }
        EXPECT_FALSE(queue.push(message));
        for (std::uint64_t i = 0; i < 4; ++i) {
            ASSERT_TRUE(queue.pop(message));
            EXPECT_EQ(message.args[0], round * 10 + i);
        }
        EXPECT_FALSE(queue.pop(message));
        EXPECT_TRUE(queue.empty());
    }
}

// Proves one producer and one consumer thread pass 200,000 messages in order.
TEST(SpscQueue, TwoThreads) {
    SpscQueue queue(64);
    constexpr std::uint64_t count = 200'000;
    std::thread producer([&] {
        CrossMessage message;
        for (std::uint64_t i = 0; i < count;) {
            message.args[0] = i;
            if (queue.push(message)) {
                ++i;
            } else {
                std::this_thread::yield();
            }
        }
    });
    std::uint64_t expected = 0;
    CrossMessage message;
    while (expected < count) {
        if (queue.pop(message)) {
            ASSERT_EQ(message.args[0], expected);
            ++expected;
        } else {
            std::this_thread::yield();
        }
    }
    producer.join();
}

std::atomic<std::uint64_t> pongs_sum{0};
std::atomic<unsigned> pongs{0};

void on_pong(Shard& to, const CrossMessage& message) {
    EXPECT_EQ(to.index(), 0u);
    EXPECT_EQ(message.from, 1u);
    pongs_sum += message.args[0];
    ++pongs;
}

void on_ping(Shard& to, const CrossMessage& message) {
    EXPECT_EQ(to.index(), 1u);
    CrossMessage reply;
    reply.handler = on_pong;
    reply.args[0] = message.args[0] * 2;
    // The reply queue has room: the test sends fewer than its capacity.
    EXPECT_EQ(to.post(0, reply), Status::ok);
}

// Proves messages between two running shards arrive and are answered (the receiving shard
// sleeps in its ring until the MSG_RING wake).
TEST(CrossCore, PingPongBetweenShards) {
    test::require_io_uring();
    EngineOptions options;
    options.cores = 2;
    options.pin_cores = false;
    options.ring_entries = 64;
    options.recv_buffer_count = 16;
    options.recv_buffer_bytes = 512;
    options.sessions_per_shard = 4;
    std::string error;
    auto engine = Engine::create(options, nullptr, &error);
    ASSERT_TRUE(engine.ok()) << error;
    constexpr unsigned count = 1000;
    (*engine)->shard(0).post_external([](Shard& shard) {
        for (unsigned i = 1; i <= count; ++i) {
            CrossMessage message;
            message.handler = on_ping;
            message.args[0] = i;
            EXPECT_EQ(shard.post(1, message), Status::ok);
        }
    });
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (pongs.load() < count && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    EXPECT_EQ(pongs.load(), count);
    EXPECT_EQ(pongs_sum.load(), std::uint64_t{count} * (count + 1));
    (*engine)->request_stop();
    (*engine)->wait();
}

// Proves messages nobody handled (posted to a shard that had stopped) are freed by
// discard_all: every discard runs once, messages without one are skipped, queues end empty.
std::atomic<unsigned> discarded{0};
void discard_int(const CrossMessage& message) {
    delete static_cast<int*>(message.pointer);
    discarded.fetch_add(1);
}

TEST(CrossCore, DiscardAllFreesWhatIsLeft) {
    CrossCore cross(3, 8);
    for (int i = 0; i < 5; ++i) {
        CrossMessage message;
        message.handler = on_ping;
        message.pointer = new int(i);
        message.discard = discard_int;
        ASSERT_TRUE(cross.queue(0, 1).push(message));
        message.pointer = new int(i);
        ASSERT_TRUE(cross.queue(2, 0).push(message));
    }
    CrossMessage plain;
    plain.handler = on_ping;
    ASSERT_TRUE(cross.queue(1, 2).push(plain));
    EXPECT_EQ(cross.discard_all(), 11u);
    EXPECT_EQ(discarded.load(), 10u);
    for (unsigned from = 0; from < 3; ++from) {
        for (unsigned to = 0; to < 3; ++to) EXPECT_TRUE(cross.queue(from, to).empty());
    }
    EXPECT_EQ(cross.discard_all(), 0u);
}

}  // namespace
}  // namespace rp
