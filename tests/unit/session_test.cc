// Session driver over the real engine with the test echo protocol: greeting, pipelining,
// async resume, busy and per-IP refusals, state timeouts, send-queue backpressure and
// graceful stop. Clients are blocking sockets on this thread; the shard runs on its own.
#include "core/session.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <random>
#include <future>
#include <string>
#include <vector>

#include "core/echo_protocol.h"
#include "core/shard.h"
#include "engine_test_util.h"

namespace rp {
namespace {

int free_port() {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
    socklen_t bytes = sizeof(address);
    getsockname(fd, reinterpret_cast<sockaddr*>(&address), &bytes);
    close(fd);
    return ntohs(address.sin_port);
}

class Client {
public:
    explicit Client(int port) {
        fd_ = socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_port = htons(static_cast<std::uint16_t>(port));
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        connected_ = connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
    }
    ~Client() { close(fd_); }
    bool connected() const { return connected_; }
    void send(const std::string& text) {
        ASSERT_EQ(::send(fd_, text.data(), text.size(), MSG_NOSIGNAL),
                  static_cast<ssize_t>(text.size()));
    }
    // Reads until `text` ends what was received, EOF, or 10 s pass.
    std::string read_until(const std::string& end, int timeout_ms = 10'000) {
        return read_while(
            [&] {
                return !(received_.size() >= end.size() &&
                         received_.compare(received_.size() - end.size(), end.size(), end) == 0);
            },
            65536, timeout_ms);
    }
    // At least `count` bytes (fewer at EOF or timeout), without waiting for more.
    std::string read_at_least(std::size_t count, int timeout_ms = 10'000) {
        return read_while([&] { return received_.size() < count; }, 4096, timeout_ms);
    }
    bool eof() const { return eof_; }

private:
    // Receives blocks of up to `block` bytes while `more()` holds, until EOF or the timeout;
    // returns (and forgets) everything received.
    template <typename More>
    std::string read_while(More more, std::size_t block, int timeout_ms) {
        auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
        std::vector<char> buffer(block);
        while (more()) {
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                deadline - std::chrono::steady_clock::now());
            if (left.count() <= 0) break;
            pollfd p{fd_, POLLIN, 0};
            if (poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
            ssize_t n = recv(fd_, buffer.data(), buffer.size(), 0);
            if (n <= 0) {
                eof_ = true;
                break;
            }
            received_.append(buffer.data(), static_cast<std::size_t>(n));
        }
        std::string out;
        out.swap(received_);
        return out;
    }

    int fd_ = -1;
    bool connected_ = false;
    bool eof_ = false;
    std::string received_;
};

class EchoLocal final : public ShardLocal {
public:
    std::unique_ptr<EchoFactory> factory;
};

// One unpinned shard with small pools, listening for `kind` on 127.0.0.1:`port`.
EngineOptions one_shard_options(int port, const char* kind, unsigned sessions,
                                unsigned recv_buffer_count) {
    EngineOptions options;
    options.cores = 1;
    options.pin_cores = false;
    options.ring_entries = 256;
    options.recv_buffer_count = recv_buffer_count;
    options.recv_buffer_bytes = 4096;
    options.sessions_per_shard = sessions;
    options.shutdown_grace_ms = 2000;
    ListenerSpec spec;
    spec.kind = kind;
    EXPECT_EQ(listener_address_parse("127.0.0.1:" + std::to_string(port), spec), Status::ok);
    options.listeners.push_back(spec);
    return options;
}

struct Daemon {
    explicit Daemon(unsigned sessions, unsigned per_ip, std::uint64_t idle_ms,
                    unsigned recv_buffer_count = 64) {
        test::require_io_uring();
        port = free_port();
        EngineOptions options = one_shard_options(port, "test-echo", sessions, recv_buffer_count);
        options.connections_per_ip = per_ip;
        std::string error;
        auto created = Engine::create(
            options,
            [idle_ms](Shard& shard) {
                auto local = std::make_unique<EchoLocal>();
                EchoOptions echo;
                echo.line_bytes_max = 1000;
                echo.idle_timeout_ms = idle_ms;
                local->factory =
                    std::make_unique<EchoFactory>(shard.reactor(), shard.sessions(), echo);
                Status status = shard.sessions().register_protocol("test-echo", *local->factory);
                shard.own(std::move(local));
                return status;
            },
            &error);
        EXPECT_TRUE(created.ok()) << error;
        engine = std::move(created.value());
    }
    ~Daemon() {
        engine->request_stop();
        engine->wait();
    }
    int port = 0;
    std::unique_ptr<Engine> engine;
};

// Proves the greeting, echo of pipelined lines in order, and QUIT closing after the reply.
TEST(Session, EchoPipelinedAndQuit) {
    Daemon daemon(16, 0, 60'000);
    Client client(daemon.port);
    ASSERT_TRUE(client.connected());
    EXPECT_EQ(client.read_until("\r\n"), "+ECHO ready\r\n");
    client.send("one\r\ntwo\nthree\r\nQUIT\r\nignored\r\n");
    EXPECT_EQ(client.read_until("+BYE\r\n"), "+one\r\n+two\r\n+three\r\n+BYE\r\n");
    client.read_until("never");
    EXPECT_TRUE(client.eof());
}

// Proves a paused session holds pipelined input until an async completion resumes it, and
// then answers it in order.
TEST(Session, AsyncResumeKeepsOrder) {
    Daemon daemon(16, 0, 60'000);
    Client client(daemon.port);
    client.read_until("\r\n");
    client.send("a\nSLEEP 100\nb\nc\n");
    EXPECT_EQ(client.read_until("+c\r\n"), "+a\r\n+AWAKE\r\n+b\r\n+c\r\n");
}

// Proves a line split across many receives (one byte at a time) is staged and echoed whole,
// and a line longer than the limit is refused without closing the session.
TEST(Session, StagingAndLongLines) {
    Daemon daemon(16, 0, 60'000);
    Client client(daemon.port);
    client.read_until("\r\n");
    for (char c : std::string("split")) {
        client.send(std::string(1, c));
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    client.send("\n");
    EXPECT_EQ(client.read_until("\r\n"), "+split\r\n");
    client.send(std::string(100'000, 'z') + "\nafter\n");
    EXPECT_EQ(client.read_until("+after\r\n"), "-ERR line too long\r\n+after\r\n");
}

// Proves a full session pool answers the busy reply and closes, and a slot freed by a
// closed session serves the next client.
TEST(Session, BusyWhenPoolFull) {
    Daemon daemon(2, 0, 60'000);
    Client a(daemon.port), b(daemon.port);
    EXPECT_EQ(a.read_until("\r\n"), "+ECHO ready\r\n");
    EXPECT_EQ(b.read_until("\r\n"), "+ECHO ready\r\n");
    Client c(daemon.port);
    EXPECT_EQ(c.read_until("\r\n"), "-ECHO busy, try later\r\n");
    c.read_until("never", 5000);
    EXPECT_TRUE(c.eof());
    a.send("QUIT\n");
    a.read_until("never");
    std::string greeting;
    for (int i = 0; i < 50 && greeting != "+ECHO ready\r\n"; ++i) {
        Client d(daemon.port);
        greeting = d.read_until("\r\n");
    }
    EXPECT_EQ(greeting, "+ECHO ready\r\n");
}

// Proves the per-address limit refuses the connection past it.
TEST(Session, PerIpLimit) {
    Daemon daemon(16, 2, 60'000);
    Client a(daemon.port), b(daemon.port);
    a.read_until("\r\n");
    b.read_until("\r\n");
    Client c(daemon.port);
    EXPECT_EQ(c.read_until("\r\n"), "-ECHO too many connections from your address\r\n");
}

// Proves a client trickling bytes without completing a line is timed out (bytes do not
// re-arm the state timeout) while another client keeps being served.
TEST(Session, TrickleTimesOut) {
    Daemon daemon(16, 0, 500);
    Client slow(daemon.port), fast(daemon.port);
    slow.read_until("\r\n");
    fast.read_until("\r\n");
    std::string got;
    for (int i = 0; i < 40 && !slow.eof(); ++i) {
        slow.send("x");
        fast.send("ping\n");
        EXPECT_EQ(fast.read_until("\r\n"), "+ping\r\n");
        got += slow.read_until("never", 50);
    }
    EXPECT_TRUE(slow.eof());
    EXPECT_EQ(got, "-ERR timeout\r\n");
}

// Proves the send queue is bounded: a client that asks for much output and does not read
// stops being read (no growth), and gets every byte once it reads.
TEST(Session, OutputBackpressure) {
    Daemon daemon(16, 0, 60'000);
    Client client(daemon.port);
    client.read_until("\r\n");
    client.send("BIG 3000000\nafter\n");
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    std::string got = client.read_until("+after\r\n", 20'000);
    EXPECT_EQ(got.size(), 3'000'000u + 2 + 8);
    EXPECT_EQ(got.substr(got.size() - 11), "x\r\n+after\r\n");
}

// Proves receive-buffer exhaustion is backpressure, not loss: with 16 buffers and eight
// paused clients sending at once, receives end with ENOBUFS, are re-armed when buffers come
// back, and every line is answered in order.
TEST(Session, BufferExhaustionRecovers) {
    Daemon daemon(16, 0, 60'000, 16);
    std::vector<std::unique_ptr<Client>> clients;
    std::string lines;
    std::string expected = "+AWAKE\r\n";
    for (int i = 0; i < 200; ++i) {
        std::string line = "line " + std::to_string(i) + std::string(40, 'p');
        lines += line + "\n";
        expected += "+" + line + "\r\n";
    }
    for (int i = 0; i < 8; ++i) {
        clients.push_back(std::make_unique<Client>(daemon.port));
        clients.back()->read_until("\r\n");
    }
    const auto starved_count = [&] {
        // Read the shard's counters on its own thread.
        std::promise<std::uint64_t> starved;
        daemon.engine->shard(0).post_external(
            [&](Shard& shard) { starved.set_value(shard.sessions().stats().recv_starved); });
        return starved.get_future().get();
    };
    std::string last_line = "+line 199" + std::string(40, 'p') + "\r\n";
    // Whether the buffers run out depends on timing: rounds repeat (bounded) until they did,
    // and every round must answer every line in order.
    for (int round = 0; round < 5 && (round == 0 || starved_count() == 0); ++round) {
        for (auto& client : clients) {
            client->send("SLEEP 200\n");
            // Many small sends: each tends to land in its own receive buffer.
            for (int part = 0; part < 20; ++part) {
                client->send(lines.substr(
                    part * lines.size() / 20,
                    (part + 1) * lines.size() / 20 - part * lines.size() / 20));
            }
        }
        for (auto& client : clients) {
            std::string got = client->read_until(last_line, 20'000);
            EXPECT_EQ(got.size(), expected.size());
            EXPECT_TRUE(got == expected);
        }
    }
    EXPECT_GT(starved_count(), 0u);
}

// Proves a graceful stop closes idle sessions and the engine's threads end.
TEST(Session, StopClosesSessions) {
    auto daemon = std::make_unique<Daemon>(16, 0, 60'000);
    Client client(daemon->port);
    client.read_until("\r\n");
    daemon.reset();
    client.read_until("never", 5000);
    EXPECT_TRUE(client.eof());
}

// A protocol that sends a file range between two writes: "head", the range (zero copy),
// "tail" (written after send_file, so it must follow the range), then "sent" from file_sent.
class FileSender final : public ProtocolSession, public FileSendDone {
public:
    FileSender(int fd, std::uint64_t offset, std::uint64_t bytes, std::atomic<int>& verdict,
               bool own_copy)
        : fd_(fd), offset_(offset), bytes_(bytes), verdict_(verdict), own_copy_(own_copy) {}
    void on_open(const SessionInfo&, SessionOutput& out) override {
        out_ = &out;
        out.write(std::string_view("head\r\n"));
        // own_copy: the sender hands in a descriptor of its own and closes it at once, as
        // a protocol dropping its pin on a store segment would: the range must not need it.
        const int fd = own_copy_ ? ::dup(fd_) : fd_;
        const bool first = out.send_file(fd, offset_, bytes_, *this);
        const bool second = out.send_file(fd, 0, 1, *this);  // One range at a time.
        if (own_copy_) ::close(fd);
        verdict_ = first && !second ? 1 : 2;
        out.write(std::string_view("tail\r\n"));
    }
    std::size_t on_bytes(std::span<const std::byte> bytes, BufferRef*, SessionOutput&) override {
        return bytes.size();
    }
    void on_timeout(SessionOutput& out) override { out.close_after_flush(); }
    void on_close(Status) override {}
    void file_sent(Status status) override {
        if (status != Status::ok) {
            verdict_ = 3;
            return;
        }
        out_->write(std::string_view("sent\r\n"));
        out_->close_after_flush();
    }

private:
    int fd_;
    std::uint64_t offset_, bytes_;
    std::atomic<int>& verdict_;
    bool own_copy_;
    SessionOutput* out_ = nullptr;
};

class FileSenderFactory final : public ProtocolFactory {
public:
    FileSenderFactory(int fd, std::uint64_t offset, std::uint64_t bytes, std::atomic<int>& verdict,
                      bool own_copy = false)
        : fd_(fd), offset_(offset), bytes_(bytes), verdict_(verdict), own_copy_(own_copy) {}
    std::size_t session_bytes() const override { return sizeof(FileSender); }
    std::size_t session_align() const override { return alignof(FileSender); }
    ProtocolSession* create(void* storage) override {
        return new (storage) FileSender(fd_, offset_, bytes_, verdict_, own_copy_);
    }
    std::string_view busy_reply() const override { return "busy\r\n"; }
    std::string_view per_ip_reply() const override { return "limit\r\n"; }
    std::uint64_t open_timeout_ms() const override { return 30'000; }

private:
    int fd_;
    std::uint64_t offset_, bytes_;
    std::atomic<int>& verdict_;
    bool own_copy_;
};

class FileLocal final : public ShardLocal {
public:
    std::unique_ptr<FileSenderFactory> factory;
};

// Open descriptors of this process that refer to `fd`'s file (same device and inode).
int descriptors_of(int fd) {
    struct stat want {};
    if (fstat(fd, &want) != 0) return -1;
    int count = 0;
    for (int i = 0; i < 4096; ++i) {
        struct stat st {};
        if (fstat(i, &st) == 0 && st.st_dev == want.st_dev && st.st_ino == want.st_ino) ++count;
    }
    return count;
}

struct SendFileRun {
    std::string received;
    int verdict = 0;
    std::uint64_t spliced = 0;
};

// One engine with a FileSender listener; `client_reads` false: the client reads the head,
// then closes while the range is still going out.
SendFileRun send_file_run(int fd, std::uint64_t offset, std::uint64_t bytes,
                          const std::string& expected, bool own_copy, bool client_reads) {
    SendFileRun run;
    std::atomic<int> verdict{0};
    std::atomic<std::uint64_t> spliced{0};
    const int port = free_port();
    const EngineOptions options = one_shard_options(port, "file", 4, 64);
    std::string error;
    auto engine = Engine::create(
        options,
        [&](Shard& shard) {
            auto local = std::make_unique<FileLocal>();
            local->factory =
                std::make_unique<FileSenderFactory>(fd, offset, bytes, verdict, own_copy);
            Status status = shard.sessions().register_protocol("file", *local->factory);
            shard.own(std::move(local));
            shard.on_stop([&spliced](Shard& s) { spliced = s.sessions().stats().file_bytes; });
            return status;
        },
        &error);
    EXPECT_TRUE(engine.ok()) << error;
    if (!engine.ok()) return run;
    {
        Client client(port);
        if (client_reads) {
            for (int i = 0; i < 100 && !client.eof() && run.received.size() < expected.size();
                 ++i) {
                run.received += client.read_until("sent\r\n");
            }
        } else {
            run.received = client.read_at_least(expected.size());
        }
    }  // The client closes here (mid-range when it stopped reading).
    if (!client_reads) {
        for (int i = 0; i < 500 && verdict.load() != 3; ++i) usleep(10'000);
    }
    (*engine)->request_stop();
    (*engine)->wait();
    run.verdict = verdict.load();
    run.spliced = spliced.load();
    return run;
}

std::string random_file(int& fd, std::size_t size) {
    char path[] = "/tmp/rp-sendfile-XXXXXX";
    fd = mkstemp(path);
    if (fd < 0) return {};
    unlink(path);
    std::string content(size, '\0');
    std::mt19937 rng(7);
    for (char& c : content) c = static_cast<char>(rng());
    if (write(fd, content.data(), content.size()) != static_cast<ssize_t>(content.size())) return {};
    return content;
}

// Proves send_file over a real TCP connection: a 1 MiB range (many pipe loads, above the
// output high-water mark) arrives byte-exact, in order between the writes around it, a
// second concurrent range is refused, and the driver counts the spliced bytes.
TEST(Session, SendFileZeroCopy) {
    test::require_io_uring();
    int fd = -1;
    const std::string content = random_file(fd, 1'048'576 + 333);
    ASSERT_GE(fd, 0);
    ASSERT_FALSE(content.empty());
    constexpr std::uint64_t offset = 333;
    const std::string expected = "head\r\n" + content.substr(offset) + "tail\r\nsent\r\n";
    const SendFileRun run =
        send_file_run(fd, offset, content.size() - offset, expected, false, true);
    EXPECT_EQ(run.received.size(), expected.size());
    EXPECT_TRUE(run.received == expected);
    EXPECT_EQ(run.verdict, 1);
    EXPECT_EQ(run.spliced, content.size() - offset);
    close(fd);
}

// Proves the range does not depend on the caller's descriptor staying open (a protocol may
// drop its pin on the file while the kernel still splices from it): the caller closes its
// descriptor right after send_file, the bytes still arrive exact, and the engine's own
// duplicate is closed when the range ends.
TEST(Session, SendFileOutlivesCallersDescriptor) {
    test::require_io_uring();
    int fd = -1;
    const std::string content = random_file(fd, 2'097'152);
    ASSERT_GE(fd, 0);
    ASSERT_FALSE(content.empty());
    const std::string expected = "head\r\n" + content + "tail\r\nsent\r\n";
    const SendFileRun run = send_file_run(fd, 0, content.size(), expected, true, true);
    EXPECT_EQ(run.received.size(), expected.size());
    EXPECT_TRUE(run.received == expected);
    EXPECT_EQ(run.verdict, 1);
    EXPECT_EQ(descriptors_of(fd), 1);  // Only the test's own.
    close(fd);
}

// Proves a client that goes away mid-range cancels it (file_sent with an error) and leaves
// no descriptor of the file behind, also when a splice was in flight at the close.
TEST(Session, SendFileCancelledByClose) {
    test::require_io_uring();
    int fd = -1;
    const std::string content = random_file(fd, 16u << 20);
    ASSERT_GE(fd, 0);
    ASSERT_FALSE(content.empty());
    const SendFileRun run = send_file_run(fd, 0, content.size(), "head\r\n", true, false);
    EXPECT_EQ(run.received.substr(0, 6), "head\r\n");
    EXPECT_EQ(run.verdict, 3);
    EXPECT_LT(run.spliced, content.size());
    EXPECT_EQ(descriptors_of(fd), 1);
    close(fd);
}

}  // namespace
}  // namespace rp
