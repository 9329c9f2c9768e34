#include "core/cross_core.h"

#include "core/assert.h"

namespace rp {

SpscQueue::SpscQueue(unsigned capacity) {
    RP_ASSERT(capacity >= 2);
    RP_ASSERT((capacity & (capacity - 1)) == 0);
    slots_ = std::make_unique<CrossMessage[]>(capacity);
    mask_ = capacity - 1;
}

bool SpscQueue::push(const CrossMessage& message) {
    std::uint32_t tail = tail_.load(std::memory_order_relaxed);
    // Indices run freely and wrap; tail - head is the fill count (unsigned arithmetic).
    if (tail - head_cached_ > mask_) {
        head_cached_ = head_.load(std::memory_order_acquire);
        if (tail - head_cached_ > mask_) return false;
    }
    slots_[tail & mask_] = message;
    tail_.store(tail + 1, std::memory_order_release);
    return true;
}

bool SpscQueue::pop(CrossMessage& message) {
    std::uint32_t head = head_.load(std::memory_order_relaxed);
    if (head == tail_cached_) {
        tail_cached_ = tail_.load(std::memory_order_acquire);
        if (head == tail_cached_) return false;
    }
    message = slots_[head & mask_];
    head_.store(head + 1, std::memory_order_release);
    return true;
}

bool SpscQueue::empty() const {
    return head_.load(std::memory_order_acquire) == tail_.load(std::memory_order_acquire);
}

CrossCore::CrossCore(unsigned shard_count, unsigned queue_entries) : shard_count_(shard_count) {
    RP_ASSERT(shard_count > 0);
    queues_.reserve(std::size_t{shard_count} * shard_count);
    for (unsigned i = 0; i < shard_count * shard_count; ++i) {
        queues_.push_back(std::make_unique<SpscQueue>(queue_entries));
    }
}

SpscQueue& CrossCore::queue(unsigned from, unsigned to) {
    RP_ASSERT(from < shard_count_);
    RP_ASSERT(to < shard_count_);
    return *queues_[std::size_t{from} * shard_count_ + to];
}

unsigned CrossCore::discard_all() {
    unsigned left = 0;
    for (auto& queue : queues_) {
        CrossMessage message;
        while (queue->pop(message)) {
            ++left;
            if (message.discard != nullptr) message.discard(message);
        }
    }
    return left;
}

}  // namespace rp
