#include "core/buffer_pool.h"

#include <sys/mman.h>

#include "core/io.h"
#include "core/limits.h"

namespace rp {

Result<std::unique_ptr<BufferPool>> BufferPool::create(io_uring* ring, std::uint16_t group_id,
                                                       unsigned count,
                                                       std::uint32_t buffer_bytes) {
    RP_ASSERT(ring != nullptr);
    if (count < limits::recv_buffer_count_min || count > limits::recv_buffer_count_max ||
        (count & (count - 1)) != 0) {
        return Status::invalid;
    }
    if (buffer_bytes < limits::recv_buffer_bytes_min ||
        buffer_bytes > limits::recv_buffer_bytes_max) {
        return Status::invalid;
    }
    std::unique_ptr<BufferPool> pool(new BufferPool());
    pool->ring_ = ring;
    pool->group_id_ = group_id;
    pool->count_ = count;
    pool->buffer_bytes_ = buffer_bytes;
    // bounds: count <= 2^15 and sizeof(io_uring_buf) == 16, so the ring is at most 512 KiB.
    pool->ring_bytes_ = std::size_t{count} * sizeof(io_uring_buf);
    void* ring_memory = mmap(nullptr, pool->ring_bytes_, PROT_READ | PROT_WRITE,
                             MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (ring_memory == MAP_FAILED) return Status::no_space;
    pool->buf_ring_ = static_cast<io_uring_buf_ring*>(ring_memory);
    // bounds: count <= 2^15 and buffer_bytes <= 2^20, so at most 32 GiB of address space.
    pool->memory_bytes_ = std::size_t{count} * buffer_bytes;
    void* memory = mmap(nullptr, pool->memory_bytes_, PROT_READ | PROT_WRITE,
                        MAP_ANONYMOUS | MAP_PRIVATE | MAP_NORESERVE, -1, 0);
    if (memory == MAP_FAILED) return Status::no_space;
    pool->memory_ = static_cast<std::byte*>(memory);

    io_uring_buf_ring_init(pool->buf_ring_);
    io_uring_buf_reg reg{};
    reg.ring_addr = reinterpret_cast<std::uint64_t>(pool->buf_ring_);
    reg.ring_entries = count;
    reg.bgid = group_id;
    int rc = io_uring_register_buf_ring(ring, &reg, 0);
    if (rc < 0) return status_from_errno(-rc);
    pool->registered_ = true;
    int mask = io_uring_buf_ring_mask(count);
    for (unsigned i = 0; i < count; ++i) {
        io_uring_buf_ring_add(pool->buf_ring_, pool->memory_ + std::size_t{i} * buffer_bytes,
                              buffer_bytes, static_cast<std::uint16_t>(i), mask,
                              static_cast<int>(i));
    }
    io_uring_buf_ring_advance(pool->buf_ring_, static_cast<int>(count));
    return pool;
}

BufferPool::~BufferPool() {
    // Every BufferRef must be gone: they point back at this pool.
    RP_ASSERT(outstanding_ == 0);
    if (registered_) io_uring_unregister_buf_ring(ring_, group_id_);
    if (memory_ != nullptr) munmap(memory_, memory_bytes_);
    if (buf_ring_ != nullptr) munmap(buf_ring_, ring_bytes_);
}

BufferRef BufferPool::take(const io_uring_cqe& cqe) {
    RP_ASSERT((cqe.flags & IORING_CQE_F_BUFFER) != 0);
    RP_ASSERT(cqe.res > 0);
    return take(static_cast<std::uint16_t>(cqe.flags >> IORING_CQE_BUFFER_SHIFT),
                static_cast<std::uint32_t>(cqe.res));
}

BufferRef BufferPool::take(std::uint16_t id, std::uint32_t bytes) {
    RP_ASSERT(id < count_);
    RP_ASSERT(bytes <= buffer_bytes_);
    RP_ASSERT(outstanding_ < count_);
    ++outstanding_;
    return BufferRef(this, id, bytes);
}

std::span<const std::byte> BufferPool::bytes_of(std::uint16_t id, std::uint32_t bytes) const {
    RP_ASSERT(id < count_);
    RP_ASSERT(bytes <= buffer_bytes_);
    return {memory_ + std::size_t{id} * buffer_bytes_, bytes};
}

void BufferPool::give_back(std::uint16_t id) {
    RP_ASSERT(id < count_);
    RP_ASSERT(outstanding_ > 0);
    io_uring_buf_ring_add(buf_ring_, memory_ + std::size_t{id} * buffer_bytes_, buffer_bytes_,
                          id, io_uring_buf_ring_mask(count_), 0);
    io_uring_buf_ring_advance(buf_ring_, 1);
    --outstanding_;
}

}  // namespace rp
