// core/cross_core.h: bounded single-producer single-consumer queues between shards.
//
// Owns: one queue per ordered pair of shards (limits::cross_core_queue_entries each).
// Core: queue(from, to) is pushed only by shard `from` and popped only by shard `to`.
// Invariants: a full queue is backpressure (push returns false); it never grows. A message
//   is a plain struct: a handler that runs on the receiving shard plus a few words; what the
//   words point at belongs to the receiver once pushed (or to whoever the protocol of that
//   message names).
// Wake-up: the sending shard posts one IORING_OP_MSG_RING per destination per loop
//   iteration (see Shard::post); receivers also drain their queues every iteration.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

namespace rp {

class Shard;

struct CrossMessage {
    // Runs on the receiving shard's thread.
    void (*handler)(Shard& to, const CrossMessage& message) = nullptr;
    std::uint32_t from = 0;  // Set by Shard::post.
    std::uint32_t kind = 0;
    std::uint64_t args[3] = {};
    void* pointer = nullptr;
    // Frees what the message owns (`pointer`) when it is never handled: the receiver had
    // stopped when it was posted (shutdown). Null when the message owns nothing. Runs on the
    // thread that calls CrossCore::discard_all(), after every shard thread has ended.
    void (*discard)(const CrossMessage& message) = nullptr;
};

class SpscQueue {
public:
    explicit SpscQueue(unsigned capacity);  // A power of two.
    SpscQueue(const SpscQueue&) = delete;
    SpscQueue& operator=(const SpscQueue&) = delete;

    // Producer side. False when full.
    bool push(const CrossMessage& message);
    // Consumer side. False when empty.
    bool pop(CrossMessage& message);
    bool empty() const;
    unsigned capacity() const { return mask_ + 1; }

private:
    // Head and tail on their own cache lines; each side caches the other's index.
    alignas(64) std::atomic<std::uint32_t> head_{0};  // Next to pop (consumer writes).
    std::uint32_t tail_cached_ = 0;                    // Consumer's copy of tail_.
    alignas(64) std::atomic<std::uint32_t> tail_{0};  // Next to push (producer writes).
    std::uint32_t head_cached_ = 0;                    // Producer's copy of head_.
    alignas(64) std::unique_ptr<CrossMessage[]> slots_;
    std::uint32_t mask_ = 0;
};

class CrossCore {
public:
    explicit CrossCore(unsigned shard_count, unsigned queue_entries);
    SpscQueue& queue(unsigned from, unsigned to);
    unsigned shard_count() const { return shard_count_; }
    // Empties every queue, calling each message's discard. Only once no shard runs (nobody
    // pushes or pops any more). Returns how many messages were left.
    unsigned discard_all();

private:
    unsigned shard_count_;
    std::vector<std::unique_ptr<SpscQueue>> queues_;  // from * shard_count + to.
};

// One T per shard (the ShardMail, MailAccess or RelayAgent of each), for the handlers of
// cross-shard messages. Each slot is written by its own shard (set-up, destruction) and read
// by handlers running on that same shard.
template <typename T>
class ShardSlots {
public:
    explicit ShardSlots(unsigned shard_count) : slots_(shard_count) {}
    void set(unsigned shard, T* value) { slots_[shard].store(value, std::memory_order_release); }
    T* get(unsigned shard) const { return slots_[shard].load(std::memory_order_acquire); }
    unsigned shard_count() const { return static_cast<unsigned>(slots_.size()); }

private:
    std::vector<std::atomic<T*>> slots_;
};

}  // namespace rp
