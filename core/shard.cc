#include "core/shard.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>

#include "core/limits.h"
#include "core/log.h"

namespace rp {
namespace {

constexpr std::uint64_t ns_per_ms = 1'000'000;
constexpr std::uint64_t loop_wait_ns = 1'000 * ns_per_ms;      // Watchdog wake-up.
constexpr std::uint64_t drain_wait_ns = 20 * ns_per_ms;        // While draining.

// Binds one listening socket. `exclusive` binds without SO_REUSEPORT: it fails if anyone
// (even another ringpostd with SO_REUSEPORT) holds the address, which a shared bind would
// silently join.
int bind_listener(const ListenerSpec& spec, bool exclusive, int backlog, std::string* error) {
    int fd = socket(spec.address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        *error = "cannot listen on " + spec.text + ": " + std::strerror(errno);
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (!exclusive) setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (spec.address.ss_family == AF_INET6) {
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    }
    if (bind(fd, reinterpret_cast<const sockaddr*>(&spec.address), spec.address_bytes) != 0 ||
        listen(fd, backlog) != 0) {
        *error = "cannot listen on " + spec.text + " (" + spec.kind + "): " +
                 std::strerror(errno);
        close(fd);
        return -1;
    }
    return fd;
}

}  // namespace

// ---- addresses and CPUs ----

Status listener_address_parse(std::string_view text, ListenerSpec& spec) {
    std::size_t colon = text.rfind(':');
    if (colon == std::string_view::npos || colon + 1 >= text.size()) return Status::invalid;
    std::string_view host = text.substr(0, colon);
    std::string_view port_text = text.substr(colon + 1);
    unsigned port = 0;
    auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (ec != std::errc() || end != port_text.data() + port_text.size() || port > 65535) {
        return Status::invalid;
    }
    spec.text = std::string(text);
    spec.address = {};
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
        std::string v6(host.substr(1, host.size() - 2));
        auto* address = reinterpret_cast<sockaddr_in6*>(&spec.address);
        address->sin6_family = AF_INET6;
        address->sin6_port = htons(static_cast<std::uint16_t>(port));
        if (inet_pton(AF_INET6, v6.c_str(), &address->sin6_addr) != 1) return Status::invalid;
        spec.address_bytes = sizeof(sockaddr_in6);
        return Status::ok;
    }
    auto* address = reinterpret_cast<sockaddr_in*>(&spec.address);
    address->sin_family = AF_INET;
    address->sin_port = htons(static_cast<std::uint16_t>(port));
    spec.address_bytes = sizeof(sockaddr_in);
    if (host == "*" || host.empty()) {
        address->sin_addr.s_addr = htonl(INADDR_ANY);
        return Status::ok;
    }
    std::string v4(host);
    if (inet_pton(AF_INET, v4.c_str(), &address->sin_addr) != 1) return Status::invalid;
    return Status::ok;
}

std::vector<int> online_cpus() {
    std::vector<int> cpus;
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) == 0) {
        for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
            if (CPU_ISSET(cpu, &set)) cpus.push_back(cpu);
        }
    }
    if (cpus.empty()) cpus.push_back(0);
    return cpus;
}

// ---- Shard ----

Shard::Shard(Engine& engine, unsigned index, int cpu)
    : engine_(engine), index_(index), cpu_(cpu) {}

Shard::~Shard() {
    RP_ASSERT(!thread_.joinable());
    for (auto& [fd, kind] : listener_fds_) close(fd);
}

unsigned Shard::shard_count() const { return engine_.shard_count(); }

Status Shard::post(unsigned to, CrossMessage message) {
    RP_ASSERT(to != index_);
    RP_ASSERT(to < engine_.shard_count());
    RP_ASSERT(message.handler != nullptr);
    message.from = index_;
    if (!engine_.cross_core_->queue(index_, to).push(message)) return Status::full;
    wake_pending_[to] = true;
    return Status::ok;
}

void Shard::post_external(std::function<void(Shard&)> work) {
    {
        std::lock_guard<std::mutex> lock(external_mutex_);
        external_.push_back(std::move(work));
    }
    reactor_->wake();
}

void Shard::own(std::unique_ptr<ShardLocal> object) { owned_.push_back(std::move(object)); }

void Shard::on_stop(std::function<void(Shard&)> callback) {
    stop_callbacks_.push_back(std::move(callback));
}

void Shard::CrossWake::on_cqe(const io_uring_cqe& /*cqe*/, unsigned /*tag*/) {
    // Nothing to do here: the loop drains every incoming queue after each iteration.
}

Status Shard::start_on_thread() {
    const EngineOptions& options = engine_.options_;
    if (engine_.options_.pin_cores) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpu_, &set);
        if (pthread_setaffinity_np(pthread_self(), sizeof(set), &set) != 0) {
            log::warn("shard {}: cannot pin to CPU {}; running unpinned", index_, cpu_);
        }
    }
    ReactorOptions reactor_options;
    reactor_options.ring_entries = options.ring_entries;
    reactor_options.timers_max = options.sessions_per_shard + limits::timers_extra_per_shard;
    auto reactor = Reactor::create(reactor_options);
    if (!reactor) return reactor.status();
    reactor_ = std::move(reactor.value());
    auto buffers = BufferPool::create(reactor_->ring(), 0, options.recv_buffer_count,
                                      options.recv_buffer_bytes);
    if (!buffers) return buffers.status();
    buffers_ = std::move(buffers.value());
    io_ = std::make_unique<UringIo>(*reactor_);
    SessionDriverOptions session_options;
    session_options.sessions_max = options.sessions_per_shard;
    session_options.chunk_count = options.chunk_count != 0
                                      ? options.chunk_count
                                      : 2 * options.sessions_per_shard + 64;
    session_options.connections_per_ip = options.connections_per_ip;
    session_options.shard_index = index_;
    sessions_ = std::make_unique<SessionDriver>(*reactor_, *buffers_, engine_.ip_limiter_,
                                                session_options);
    cross_wake_ = std::make_unique<CrossWake>(*this);
    wake_pending_.assign(engine_.shard_count(), false);
    if (engine_.setup_) {
        Status status = engine_.setup_(*this);
        if (status != Status::ok) return status;
    }
    Status status = sessions_->start();
    if (status != Status::ok) return status;
    ring_fd_.store(reactor_->ring_fd(), std::memory_order_release);
    return Status::ok;
}

void Shard::thread_main() {
    Status status = start_on_thread();
    if (status == Status::ok && index_ == 0) {
        log::info("shard 0: ring flags {:#x}, {} receive buffers of {} bytes, {} sessions",
                  reactor_->setup_flags(), buffers_->count(), buffers_->buffer_bytes(),
                  sessions_->sessions_max());
    }
    engine_.shard_ready(status, status == Status::ok
                                    ? std::string()
                                    : "shard " + std::to_string(index_) + " start: " +
                                          std::string(status_name(status)));
    bool go = false;
    {
        std::unique_lock<std::mutex> lock(engine_.start_mutex_);
        engine_.start_cv_.wait(lock, [&] { return engine_.go_; });
        go = engine_.start_status_ == Status::ok;
    }
    if (go) {
        for (auto& [fd, kind] : listener_fds_) {
            if (!sessions_->has_protocol(kind)) {
                if (index_ == 0) log::warn("no protocol serves listener kind {} yet", kind);
                close(fd);
            } else if (sessions_->listen(fd, kind) != Status::ok) {
                close(fd);
            }
        }
        listener_fds_.clear();
        loop();
    }
    // Tear down on this thread, in reverse order of creation.
    while (!owned_.empty()) owned_.pop_back();
    sessions_.reset();
    // Every receive buffer lent out (to sessions, to store writes) must be back by now.
    if (buffers_ != nullptr) {
        if (buffers_->outstanding() == 0) {
            log::info("shard {}: all {} receive buffers returned", index_, buffers_->count());
        } else {
            log::error("shard {}: {} receive buffers not returned", index_, buffers_->outstanding());
        }
    }
    io_.reset();
    buffers_.reset();
    // The reactor stays until ~Shard: request_stop() may still wake it from another thread.
}

void Shard::loop() {
    bool work_arrived = false;
    for (;;) {
        // Cross-core messages and external work run after the reactor's tick hooks; what they
        // stage (a delivery into the store) must not wait for the next event: when any
        // arrived, the next iteration does not wait, so its ticks run at once.
        const std::uint64_t wait_ns = work_arrived ? 0 : draining_ ? drain_wait_ns : loop_wait_ns;
        reactor_->run_once(wait_ns);
        work_arrived = drain_incoming() > 0;
        if (reactor_->take_woken()) {
            run_external();
            work_arrived = true;
        }
        if (!draining_ && engine_.stop_requested_.load(std::memory_order_acquire)) {
            begin_drain();
        }
        if (draining_) {
            if (sessions_->quiescent() && reactor_->ticks_idle() && io_->in_flight() == 0) {
                break;
            }
            if (!forced_ && reactor_->now_ns() >= drain_deadline_ns_) {
                log::warn("shard {}: {} sessions still open after the shutdown grace; closing",
                          index_, sessions_->open_count());
                sessions_->close_all(Status::cancelled);
                forced_ = true;
            }
        }
        send_wakes();
    }
    log::info("shard {}: stopped", index_);
}

void Shard::begin_drain() {
    draining_ = true;
    drain_deadline_ns_ = reactor_->now_ns() + engine_.options_.shutdown_grace_ms * ns_per_ms;
    for (auto& callback : stop_callbacks_) callback(*this);
    sessions_->drain();
}

unsigned Shard::drain_incoming() {
    unsigned handled = 0;
    unsigned count = engine_.shard_count();
    for (unsigned from = 0; from < count; ++from) {
        if (from == index_) continue;
        SpscQueue& queue = engine_.cross_core_->queue(from, index_);
        // At most one queue's worth per source per iteration, so one busy sender cannot
        // starve this shard's own work.
        CrossMessage message;
        for (unsigned i = 0; i < queue.capacity() && queue.pop(message); ++i) {
            message.handler(*this, message);
            ++handled;
        }
    }
    return handled;
}

void Shard::run_external() {
    std::vector<std::function<void(Shard&)>> work;
    {
        std::lock_guard<std::mutex> lock(external_mutex_);
        work.swap(external_);
    }
    for (auto& item : work) item(*this);
}

void Shard::send_wakes() {
    for (unsigned to = 0; to < wake_pending_.size(); ++to) {
        if (!wake_pending_[to]) continue;
        wake_pending_[to] = false;
        Shard& target = *engine_.shards_[to];
        int fd = target.ring_fd_.load(std::memory_order_acquire);
        if (fd < 0) continue;
        io_uring_sqe* sqe = reactor_->sqe();
        io_uring_prep_msg_ring(sqe, fd, 0, Reactor::user_data(target.cross_wake_.get(), 0), 0);
        io_uring_sqe_set_data64(sqe, 0);
    }
}

// ---- Engine ----

Result<std::unique_ptr<Engine>> Engine::create(const EngineOptions& options, ShardSetup setup,
                                               std::string* error) {
    RP_ASSERT(error != nullptr);
    std::unique_ptr<Engine> engine(new Engine());
    engine->options_ = options;
    engine->setup_ = std::move(setup);
    std::vector<int> cpus = online_cpus();
    unsigned count = options.cores == 0 ? static_cast<unsigned>(cpus.size()) : options.cores;
    if (count == 0 || count > limits::shard_count_max) {
        *error = "cores: " + std::to_string(count) + " shards is out of range";
        return Status::invalid;
    }
    engine->options_.cores = count;
    // Probe every address exclusively first: a clear "in use" before any thread starts.
    for (const ListenerSpec& spec : options.listeners) {
        int fd = bind_listener(spec, true, 1, error);
        if (fd < 0) return Status::busy;
        close(fd);
    }
    engine->cross_core_ = std::make_unique<CrossCore>(count, limits::cross_core_queue_entries);
    for (unsigned i = 0; i < count; ++i) {
        int cpu = cpus[i % cpus.size()];
        engine->shards_.push_back(std::make_unique<Shard>(*engine, i, cpu));
        for (const ListenerSpec& spec : options.listeners) {
            int fd = bind_listener(spec, false, options.listen_backlog, error);
            if (fd < 0) return Status::busy;
            engine->shards_.back()->listener_fds_.emplace_back(fd, spec.kind);
        }
    }
    for (auto& shard : engine->shards_) {
        Shard* raw = shard.get();
        raw->thread_ = std::thread([raw] { raw->thread_main(); });
    }
    Status status = Status::ok;
    {
        std::unique_lock<std::mutex> lock(engine->start_mutex_);
        engine->start_cv_.wait(lock, [&] { return engine->ready_count_ == count; });
        status = engine->start_status_;
        if (status != Status::ok) *error = engine->start_error_;
        engine->go_ = true;
    }
    engine->start_cv_.notify_all();
    if (status != Status::ok) {
        engine->wait();
        return status;
    }
    return engine;
}

void Engine::shard_ready(Status status, const std::string& error) {
    {
        std::lock_guard<std::mutex> lock(start_mutex_);
        ++ready_count_;
        if (status != Status::ok && start_status_ == Status::ok) {
            start_status_ = status;
            start_error_ = error;
        }
    }
    start_cv_.notify_all();
}

Engine::~Engine() {
    if (!joined_ && !shards_.empty()) {
        request_stop();
        wait();
    }
}

void Engine::request_stop() {
    stop_requested_.store(true, std::memory_order_release);
    for (auto& shard : shards_) {
        if (shard->reactor_) shard->reactor_->wake();
    }
}

void Engine::wait() {
    for (auto& shard : shards_) {
        if (shard->thread_.joinable()) shard->thread_.join();
    }
    // Messages posted to a shard that had already stopped were never handled: free what
    // they own (a leak at exit otherwise, which ASan reports).
    if (!joined_ && cross_core_ != nullptr) {
        const unsigned left = cross_core_->discard_all();
        if (left > 0) log::info("engine: {} cross-core messages discarded at stop", left);
    }
    joined_ = true;
}

void Engine::run_on_all(const std::function<void(Shard&)>& work) {
    for (auto& shard : shards_) shard->post_external(work);
}

}  // namespace rp
