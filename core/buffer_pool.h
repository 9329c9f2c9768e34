// core/buffer_pool.h: a provided-buffer ring for multishot receives.
//
// Owns: `count` buffers of `buffer_bytes` each and the ring that offers them to the kernel
//   (io_uring_register_buf_ring; liburing 2.3 has no io_uring_setup_buf_ring, so we mmap
//   the ring ourselves).
// Core: one pool per shard; only the owning core takes and releases buffers.
// Invariants: a buffer is in exactly one place: the ring (kernel), or one BufferRef.
//   available() + outstanding() == count().
// Backpressure: when every buffer is outstanding the kernel ends multishot receives with
//   ENOBUFS; the session driver re-arms them once buffers come back.
#pragma once

#include <liburing.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "core/result.h"

namespace rp {

class BufferPool;

// A received buffer, owned by whoever holds this. Move-only; returns the buffer to its
// pool's ring on reset() or destruction. Must be released on the pool's core.
class BufferRef {
public:
    BufferRef() = default;
    BufferRef(BufferRef&& other) noexcept
        : pool_(other.pool_), id_(other.id_), bytes_(other.bytes_) {
        other.pool_ = nullptr;
    }
    BufferRef& operator=(BufferRef&& other) noexcept {
        if (this != &other) {
            reset();
            pool_ = other.pool_;
            id_ = other.id_;
            bytes_ = other.bytes_;
            other.pool_ = nullptr;
        }
        return *this;
    }
    BufferRef(const BufferRef&) = delete;
    BufferRef& operator=(const BufferRef&) = delete;
    ~BufferRef() { reset(); }

    explicit operator bool() const { return pool_ != nullptr; }
    // The received bytes (the kernel's count, not the buffer's capacity).
    std::span<const std::byte> bytes() const;
    std::uint32_t size() const { return bytes_; }
    std::uint16_t id() const { return id_; }
    void reset();

private:
    friend class BufferPool;
    BufferRef(BufferPool* pool, std::uint16_t id, std::uint32_t bytes)
        : pool_(pool), id_(id), bytes_(bytes) {}

    BufferPool* pool_ = nullptr;
    std::uint16_t id_ = 0;
    std::uint32_t bytes_ = 0;
};

class BufferPool {
public:
    // `count` is a power of two in [limits::recv_buffer_count_min, recv_buffer_count_max];
    // `buffer_bytes` in [recv_buffer_bytes_min, recv_buffer_bytes_max].
    [[nodiscard]] static Result<std::unique_ptr<BufferPool>> create(io_uring* ring,
                                                                    std::uint16_t group_id,
                                                                    unsigned count,
                                                                    std::uint32_t buffer_bytes);
    ~BufferPool();
    BufferPool(const BufferPool&) = delete;
    BufferPool& operator=(const BufferPool&) = delete;

    std::uint16_t group_id() const { return group_id_; }
    unsigned count() const { return count_; }
    std::uint32_t buffer_bytes() const { return buffer_bytes_; }
    unsigned outstanding() const { return outstanding_; }
    unsigned available() const { return count_ - outstanding_; }

    // Takes the buffer a receive CQE names (cqe.flags has IORING_CQE_F_BUFFER, res > 0).
    BufferRef take(const io_uring_cqe& cqe);
    // Same, from the id and length directly (tests).
    BufferRef take(std::uint16_t id, std::uint32_t bytes);

    std::span<const std::byte> bytes_of(std::uint16_t id, std::uint32_t bytes) const;

private:
    friend class BufferRef;
    BufferPool() = default;
    void give_back(std::uint16_t id);

    io_uring* ring_ = nullptr;
    io_uring_buf_ring* buf_ring_ = nullptr;
    std::size_t ring_bytes_ = 0;
    std::byte* memory_ = nullptr;
    std::size_t memory_bytes_ = 0;
    unsigned count_ = 0;
    std::uint32_t buffer_bytes_ = 0;
    unsigned outstanding_ = 0;
    std::uint16_t group_id_ = 0;
    bool registered_ = false;
};

inline std::span<const std::byte> BufferRef::bytes() const {
    RP_ASSERT(pool_ != nullptr);
    return pool_->bytes_of(id_, bytes_);
}

inline void BufferRef::reset() {
    if (pool_ != nullptr) {
        pool_->give_back(id_);
        pool_ = nullptr;
    }
}

}  // namespace rp
