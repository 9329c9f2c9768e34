// protocols/auth/auth_pool.cc: see auth_pool.h.
#include "protocols/auth/auth_pool.h"

#include <netinet/in.h>

#include "core/assert.h"
#include "protocols/auth/password.h"

namespace rp::auth {

HashPool::HashPool(unsigned threads, unsigned queue_max) : queue_max_(queue_max) {
    RP_ASSERT(threads > 0);
    RP_ASSERT(queue_max > 0);
    // A hash of a random password with the default cost: unknown users cost the same time.
    auto dummy = password_hash("ringpost-dummy-password");
    if (dummy) dummy_ = *dummy;
    for (unsigned i = 0; i < threads; ++i) threads_.emplace_back([this] { run(); });
}

HashPool::~HashPool() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        stopping_ = true;
    }
    cv_.notify_all();
    for (auto& thread : threads_) thread.join();
}

Status HashPool::submit(std::string stored, std::string password,
                        std::function<void(bool)> done) {
    RP_ASSERT(done != nullptr);
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (stopping_ || jobs_.size() >= queue_max_) return Status::full;
        jobs_.push_back(Job{std::move(stored), std::move(password), std::move(done)});
    }
    cv_.notify_one();
    return Status::ok;
}

unsigned HashPool::queued() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return static_cast<unsigned>(jobs_.size());
}

void HashPool::run() {
    for (;;) {
        Job job;
        {
            std::unique_lock<std::mutex> lock(mutex_);
            cv_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
            if (jobs_.empty()) return;  // Stopping, and nothing left.
            job = std::move(jobs_.front());
            jobs_.pop_front();
        }
        bool match = false;
        if (job.stored.empty()) {
            password_verify(dummy_, job.password);
        } else {
            match = password_verify(job.stored, job.password);
        }
        // Wipe the password before the job's memory is reused.
        for (char& c : job.password) c = 0;
        job.done(match);
    }
}

// ---- AuthThrottle ----

AuthThrottle::AuthThrottle(const ThrottleOptions& options)
    : options_(options), slots_(new std::atomic<std::uint64_t>[slot_count]) {
    RP_ASSERT(options.failures_max > 0);
    for (unsigned i = 0; i < slot_count; ++i) slots_[i].store(0);
}

std::uint64_t AuthThrottle::key_of(const sockaddr_storage& address) {
    // FNV-1a over the address; IPv4-mapped IPv6 counts as IPv4.
    const unsigned char* bytes = nullptr;
    std::size_t count = 0;
    if (address.ss_family == AF_INET) {
        bytes = reinterpret_cast<const unsigned char*>(
            &reinterpret_cast<const sockaddr_in*>(&address)->sin_addr);
        count = 4;
    } else if (address.ss_family == AF_INET6) {
        const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&address);
        bytes = v6->sin6_addr.s6_addr;
        count = IN6_IS_ADDR_V4MAPPED(&v6->sin6_addr) ? 4 : 16;
        if (count == 4) bytes += 12;
    }
    std::uint64_t hash = 1469598103934665603ull;
    for (std::size_t i = 0; i < count; ++i) {
        hash ^= bytes[i];
        hash *= 1099511628211ull;
    }
    return hash;
}

unsigned AuthThrottle::failures(std::uint64_t key, std::uint64_t now_s) const {
    std::uint64_t value = slots_[key & (slot_count - 1)].load(std::memory_order_relaxed);
    std::uint64_t start = value >> 32;
    if (now_s >= start + options_.window_s) return 0;
    return static_cast<unsigned>(value & 0xffffffffu);
}

std::uint64_t AuthThrottle::record_failure(std::uint64_t key, std::uint64_t now_s) {
    auto& slot = slots_[key & (slot_count - 1)];
    std::uint64_t value = slot.load(std::memory_order_relaxed);
    std::uint64_t next = 0;
    std::uint32_t count = 0;
    do {
        std::uint64_t start = value >> 32;
        count = static_cast<std::uint32_t>(value & 0xffffffffu);
        if (now_s >= start + options_.window_s) {
            start = now_s & 0xffffffffu;
            count = 0;
        }
        if (count < 0xffffffffu) ++count;
        next = (start << 32) | count;
    } while (!slot.compare_exchange_weak(value, next, std::memory_order_relaxed));
    std::uint64_t delay = options_.delay_base_ms;
    for (std::uint32_t i = 1; i < count && delay < options_.delay_max_ms; ++i) delay *= 2;
    return delay < options_.delay_max_ms ? delay : options_.delay_max_ms;
}

}  // namespace rp::auth
