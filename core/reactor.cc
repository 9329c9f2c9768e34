#include "core/reactor.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>

#include "core/io.h"
#include "core/limits.h"

namespace rp {
namespace {

constexpr unsigned reap_batch = 256;

// Tries the flags we want first and drops the ones an older kernel refuses.
int ring_init(unsigned entries, io_uring* ring, unsigned* flags_used) {
    const unsigned wanted[] = {
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_CQSIZE |
            IORING_SETUP_SUBMIT_ALL,
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL,
        IORING_SETUP_CQSIZE,
        0,
    };
    int rc = -EINVAL;
    for (unsigned flags : wanted) {
        io_uring_params params{};
        params.flags = flags;
        // Multishot accept and recv post many CQEs per SQE: give the CQ room.
        params.cq_entries = entries * 4;
        rc = io_uring_queue_init_params(entries, ring, &params);
        if (rc == 0) {
            *flags_used = flags;
            return 0;
        }
        if (rc != -EINVAL) return rc;
    }
    return rc;
}

}  // namespace

Result<std::unique_ptr<Reactor>> Reactor::create(const ReactorOptions& options) {
    if (options.ring_entries < limits::ring_entries_min ||
        options.ring_entries > limits::ring_entries_max) {
        return Status::invalid;
    }
    std::unique_ptr<Reactor> reactor(new Reactor());
    reactor->clock_ = options.clock != nullptr ? options.clock : &RealClock::instance();
    int rc = ring_init(options.ring_entries, &reactor->ring_, &reactor->setup_flags_);
    if (rc < 0) return status_from_errno(-rc);
    reactor->ring_ready_ = true;
    reactor->timers_max_ = options.timers_max;
    reactor->heap_.reserve(options.timers_max);
    reactor->ticks_.reserve(16);
    reactor->wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (reactor->wake_fd_ < 0) return status_from_errno(errno);
    reactor->wake_reader_ = std::make_unique<WakeReader>(*reactor);
    reactor->wake_reader_->arm();
    return reactor;
}

Reactor::~Reactor() {
    if (ring_ready_) io_uring_queue_exit(&ring_);
    if (wake_fd_ >= 0) close(wake_fd_);
}

io_uring_sqe* Reactor::sqe() {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    if (sqe == nullptr) {
        io_uring_submit(&ring_);
        sqe = io_uring_get_sqe(&ring_);
    }
    RP_ASSERT(sqe != nullptr);
    return sqe;
}

void Reactor::WakeReader::arm() {
    io_uring_sqe* sqe = reactor_.sqe();
    io_uring_prep_read(sqe, reactor_.wake_fd_, &value_, sizeof(value_), 0);
    io_uring_sqe_set_data64(sqe, Reactor::user_data(this, 0));
}

void Reactor::WakeReader::on_cqe(const io_uring_cqe& cqe, unsigned /*tag*/) {
    // The woken_ flag carries the news; the read only ends the sleep.
    if (cqe.res == -ECANCELED) return;
    arm();
}

void Reactor::wake() {
    woken_.store(true, std::memory_order_release);
    std::uint64_t one = 1;
    // A non-blocking eventfd write fails only when the counter is saturated, which
    // already means "wake up".
    [[maybe_unused]] ssize_t n = write(wake_fd_, &one, sizeof(one));
}

void Reactor::defer(Deferred& work) {
    if (work.queued_) return;
    work.queued_ = true;
    work.next_ = nullptr;
    if (deferred_tail_ == nullptr) {
        deferred_head_ = &work;
    } else {
        deferred_tail_->next_ = &work;
    }
    deferred_tail_ = &work;
}

void Reactor::run_deferred() {
    // Deferred work may defer more; each item runs once per defer() call, so this ends
    // when the items stop re-queueing (the session driver never re-queues itself).
    while (deferred_head_ != nullptr) {
        Deferred* work = deferred_head_;
        deferred_head_ = work->next_;
        if (deferred_head_ == nullptr) deferred_tail_ = nullptr;
        work->queued_ = false;
        work->next_ = nullptr;
        work->on_deferred();
    }
}

void Reactor::add_tick(TickHook& hook) {
    for (TickHook* existing : ticks_) RP_ASSERT(existing != &hook);
    ticks_.push_back(&hook);
}

void Reactor::remove_tick(TickHook& hook) {
    for (std::size_t i = 0; i < ticks_.size(); ++i) {
        if (ticks_[i] == &hook) {
            ticks_.erase(ticks_.begin() + static_cast<std::ptrdiff_t>(i));
            return;
        }
    }
    RP_ASSERT(false);
}

bool Reactor::ticks_idle() const {
    for (TickHook* hook : ticks_) {
        if (!hook->idle()) return false;
    }
    return true;
}

void Reactor::run_once(std::uint64_t wait_ns_max) {
    ++iterations_;
    std::uint64_t wait_ns = wait_ns_max;
    if (deferred_head_ != nullptr) wait_ns = 0;
    if (!heap_.empty()) {
        std::uint64_t now = now_ns();
        std::uint64_t deadline = heap_.front()->deadline_ns_;
        std::uint64_t until = deadline > now ? deadline - now : 0;
        if (until < wait_ns) wait_ns = until;
    }
    if (wait_ns == 0) {
        io_uring_submit(&ring_);
    } else {
        __kernel_timespec ts{};
        ts.tv_sec = static_cast<long long>(wait_ns / 1'000'000'000u);
        ts.tv_nsec = static_cast<long long>(wait_ns % 1'000'000'000u);
        io_uring_cqe* first = nullptr;
        // -ETIME (timer due) and -EINTR (a signal) are ordinary wake-ups.
        io_uring_submit_and_wait_timeout(&ring_, &first, 1, &ts, nullptr);
    }
    // Reap in batches until the CQ is empty; a handler may queue more SQEs meanwhile.
    io_uring_cqe* cqes[reap_batch];
    for (;;) {
        unsigned count = io_uring_peek_batch_cqe(&ring_, cqes, reap_batch);
        if (count == 0) break;
        for (unsigned i = 0; i < count; ++i) dispatch(*cqes[i]);
        io_uring_cq_advance(&ring_, count);
        if (count < reap_batch) break;
    }
    fire_timers();
    run_deferred();
    for (std::size_t i = 0; i < ticks_.size(); ++i) ticks_[i]->on_tick();
    run_deferred();
}

void Reactor::dispatch(const io_uring_cqe& cqe) {
    std::uint64_t data = cqe.user_data;
    if (data == 0) return;  // Fire-and-forget (the sender side of a MSG_RING).
    unsigned tag = static_cast<unsigned>(data & 7u);
    if (tag == tag_fd_op) {
        RP_ASSERT(fd_op_handler_ != nullptr);
        fd_op_handler_->on_cqe(cqe, tag);
        return;
    }
    auto* handler = reinterpret_cast<CqeHandler*>(static_cast<std::uintptr_t>(data & ~7ull));
    RP_ASSERT(handler != nullptr);
    handler->on_cqe(cqe, tag);
}

void Reactor::timer_arm(Timer& timer, std::uint64_t delay_ns) {
    std::uint64_t deadline = now_ns() + delay_ns;  // bounds: monotonic ns fit for 584 years.
    if (timer.armed()) {
        std::uint64_t old = timer.deadline_ns_;
        timer.deadline_ns_ = deadline;
        if (deadline < old) {
            heap_up(timer.heap_index_);
        } else {
            heap_down(timer.heap_index_);
        }
        return;
    }
    RP_ASSERT(heap_.size() < timers_max_);
    timer.deadline_ns_ = deadline;
    timer.heap_index_ = static_cast<std::uint32_t>(heap_.size());
    heap_.push_back(&timer);
    heap_up(timer.heap_index_);
}

void Reactor::timer_cancel(Timer& timer) {
    if (!timer.armed()) return;
    heap_remove(timer.heap_index_);
}

void Reactor::fire_timers() {
    if (heap_.empty()) return;
    std::uint64_t now = now_ns();
    // A timer armed by a callback for "now" waits for the next iteration, so a callback
    // that re-arms with 0 cannot spin here.
    unsigned fired_max = static_cast<unsigned>(heap_.size());
    for (unsigned fired = 0; fired < fired_max && !heap_.empty(); ++fired) {
        Timer* timer = heap_.front();
        if (timer->deadline_ns_ > now) break;
        heap_remove(0);
        timer->on_timer();
    }
}

void Reactor::heap_swap(std::uint32_t a, std::uint32_t b) {
    std::swap(heap_[a], heap_[b]);
    heap_[a]->heap_index_ = a;
    heap_[b]->heap_index_ = b;
}

void Reactor::heap_up(std::uint32_t index) {
    while (index > 0) {
        std::uint32_t parent = (index - 1) / 2;
        if (heap_[parent]->deadline_ns_ <= heap_[index]->deadline_ns_) break;
        heap_swap(parent, index);
        index = parent;
    }
}

void Reactor::heap_down(std::uint32_t index) {
    auto size = static_cast<std::uint32_t>(heap_.size());
    for (;;) {
        std::uint32_t left = 2 * index + 1;  // bounds: size <= timers_max, far below 2^31.
        if (left >= size) break;
        std::uint32_t child = left;
        if (left + 1 < size && heap_[left + 1]->deadline_ns_ < heap_[left]->deadline_ns_) {
            child = left + 1;
        }
        if (heap_[index]->deadline_ns_ <= heap_[child]->deadline_ns_) break;
        heap_swap(index, child);
        index = child;
    }
}

void Reactor::heap_remove(std::uint32_t index) {
    RP_ASSERT(index < heap_.size());
    Timer* removed = heap_[index];
    auto last = static_cast<std::uint32_t>(heap_.size() - 1);
    if (index != last) {
        heap_swap(index, last);
        heap_.pop_back();
        heap_down(index);
        heap_up(index);
    } else {
        heap_.pop_back();
    }
    removed->heap_index_ = Timer::not_armed;
}

}  // namespace rp
