// bench/bench_tls.cc: server-side TLS cost over memory (no sockets): full TLS 1.3 ECDSA P-256
// handshakes per key exchange group (X25519, P-256), resumed handshakes (session ticket),
// record encryption and decryption per cipher suite (AES-128-GCM, AES-256-GCM,
// ChaCha20-Poly1305), and a SCRAM-SHA-256 verification. Client and server run in one thread; the server's share is
// measured with a per-thread CPU clock around the server calls only (counter server_cpu_us),
// so handshakes per server-CPU-second = 1e6 / server_cpu_us.
//
//   build/bench/bench_tls [--benchmark_filter=...]
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include <benchmark/benchmark.h>
#include <time.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <string>

#include "core/tls.h"
#include "protocols/auth/sasl.h"
#include "protocols/auth/scram.h"

namespace {

using rp::tls::TlsStream;

double thread_cpu_us() {
    timespec t{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return static_cast<double>(t.tv_sec) * 1e6 + static_cast<double>(t.tv_nsec) / 1e3;
}

struct Pipe final : rp::tls::TlsSink {
    std::string bytes;
    bool tls_send(std::span<const std::byte> data) override {
        bytes.append(reinterpret_cast<const char*>(data.data()), data.size());
        return true;
    }
};

// A wolfSSL client over strings (the other end of the in-memory pair).
struct Client {
    WOLFSSL* ssl = nullptr;
    std::string in, out;
    explicit Client(WOLFSSL_CTX* ctx) {
        ssl = wolfSSL_new(ctx);
        wolfSSL_SSLSetIORecv(ssl, [](WOLFSSL*, char* buf, int sz, void* self) -> int {
            auto* c = static_cast<Client*>(self);
            if (c->in.empty()) return WOLFSSL_CBIO_ERR_WANT_READ;
            int n = std::min<int>(sz, static_cast<int>(c->in.size()));
            std::memcpy(buf, c->in.data(), static_cast<std::size_t>(n));
            c->in.erase(0, static_cast<std::size_t>(n));
            return n;
        });
        wolfSSL_SSLSetIOSend(ssl, [](WOLFSSL*, char* buf, int sz, void* self) -> int {
            static_cast<Client*>(self)->out.append(buf, static_cast<std::size_t>(sz));
            return sz;
        });
        wolfSSL_SetIOReadCtx(ssl, this);
        wolfSSL_SetIOWriteCtx(ssl, this);
    }
    ~Client() { wolfSSL_free(ssl); }
};

struct Setup {
    std::filesystem::path folder;
    std::shared_ptr<const rp::tls::TlsContext> context;
    std::shared_ptr<const rp::tls::TlsContext> context_no_tickets;  // ticket_lifetime_s = 0.
    WOLFSSL_CTX* client_ctx = nullptr;
    Setup() {
        folder = std::filesystem::temp_directory_path() / ("rp-bench-tls-" + std::to_string(getpid()));
        std::filesystem::create_directories(folder);
        std::string error;
        if (rp::tls::self_signed_make(folder / "cert.pem", folder / "key.pem", "mail.example.test",
                                      &error) != rp::Status::ok) {
            std::abort();
        }
        auto certificate = rp::tls::certificate_load(folder / "cert.pem", folder / "key.pem", &error);
        rp::tls::TlsMaterial material;
        material.certificates.push_back(*certificate);
        material.min_version = 13;
        material.groups = *rp::tls::groups_parse(rp::tls::groups_default, &error);
        context = *rp::tls::TlsContext::create(material, &error);
        material.ticket_lifetime_s = 0;
        context_no_tickets = *rp::tls::TlsContext::create(material, &error);
        client_ctx = wolfSSL_CTX_new(wolfTLSv1_3_client_method());
        wolfSSL_CTX_set_verify(client_ctx, WOLFSSL_VERIFY_NONE, nullptr);
        // Supported groups as real clients list them; each benchmark picks the key share.
        if (rp::tls::groups_apply(client_ctx, material.groups) != rp::Status::ok) std::abort();
        std::filesystem::remove_all(folder);
    }
    ~Setup() { wolfSSL_CTX_free(client_ctx); }
};

Setup& setup() {
    static Setup s;
    return s;
}

// The key share a benchmark's client sends: range(0) of the handshake benchmarks.
constexpr int key_shares[] = {WOLFSSL_ECC_X25519, WOLFSSL_ECC_SECP256R1};

// Cipher suites a benchmark's client offers alone: range(1) of the record benchmarks.
constexpr const char* suites[] = {"TLS13-AES128-GCM-SHA256", "TLS13-AES256-GCM-SHA384",
                                  "TLS13-CHACHA20-POLY1305-SHA256"};

// One handshake; returns the server's CPU microseconds, or -1 on failure. `server_flights`
// counts the server calls that took client bytes (2 for a 1-RTT handshake, 3 after a
// HelloRetryRequest).
double handshake(TlsStream& server, Pipe& pipe, Client& client, int* server_flights = nullptr) {
    double server_us = 0;
    for (int round = 0; round < 50; ++round) {
        wolfSSL_connect(client.ssl);
        client.in += pipe.bytes;
        pipe.bytes.clear();
        if (!server.established() && !client.out.empty()) {
            double start = thread_cpu_us();
            server.set_input(std::as_bytes(std::span(client.out.data(), client.out.size())));
            auto step = server.handshake();
            client.out.erase(0, server.input_consumed());
            server_us += thread_cpu_us() - start;
            if (server_flights != nullptr) ++*server_flights;
            if (step == TlsStream::Step::failed) return -1;
        }
        if (server.established() && wolfSSL_is_init_finished(client.ssl)) {
            client.in += pipe.bytes;  // The ticket (TLS 1.3 sends it after the handshake).
            pipe.bytes.clear();
            char buffer[64];
            (void)wolfSSL_read(client.ssl, buffer, sizeof(buffer));
            return server_us;
        }
    }
    return -1;
}

// A full handshake with the client's key share of group range(0) (X25519 or P-256; the
// server's list has both, so neither needs a HelloRetryRequest: flights stays 2); range(1)
// 0 turns session tickets off (the cost of issuing one).
void BM_TlsFullHandshake(benchmark::State& state) {
    Setup& s = setup();
    const int group = key_shares[state.range(0)];
    double server_us = 0;
    int flights = 0;
    for (auto _ : state) {
        Pipe pipe;
        Client client(s.client_ctx);
        wolfSSL_UseKeyShare(client.ssl, static_cast<word16>(group));
        auto server = TlsStream::server(state.range(1) != 0 ? s.context : s.context_no_tickets, pipe);
        double us = handshake(*server, pipe, client, &flights);
        if (us < 0) state.SkipWithError("handshake failed");
        server_us += us;
    }
    const double iterations = static_cast<double>(state.iterations());
    state.counters["server_cpu_us"] = benchmark::Counter(server_us / iterations);
    state.counters["server_handshakes_per_cpu_s"] = benchmark::Counter(1e6 * iterations / server_us);
    state.counters["server_flights"] = benchmark::Counter(flights / iterations);
    state.SetLabel(std::string(rp::tls::group_name(group)) +
                   (state.range(1) != 0 ? " ticket" : " no ticket"));
}
BENCHMARK(BM_TlsFullHandshake)->ArgsProduct({{0, 1}, {1, 0}})->Unit(benchmark::kMicrosecond);

void BM_TlsResumedHandshake(benchmark::State& state) {
    Setup& s = setup();
    WOLFSSL_SESSION* session = nullptr;
    {
        Pipe pipe;
        Client client(s.client_ctx);
        auto server = TlsStream::server(s.context, pipe);
        if (handshake(*server, pipe, client) < 0) state.SkipWithError("first handshake failed");
        session = wolfSSL_get1_session(client.ssl);
    }
    double server_us = 0;
    std::int64_t resumed = 0;
    for (auto _ : state) {
        Pipe pipe;
        Client client(s.client_ctx);
        wolfSSL_UseKeyShare(client.ssl, WOLFSSL_ECC_X25519);
        wolfSSL_set_session(client.ssl, session);
        auto server = TlsStream::server(s.context, pipe);
        double us = handshake(*server, pipe, client);
        if (us < 0) state.SkipWithError("handshake failed");
        server_us += us;
        resumed += server->resumed() ? 1 : 0;
    }
    wolfSSL_SESSION_free(session);
    if (resumed != static_cast<std::int64_t>(state.iterations())) {
        state.SkipWithError("not every handshake resumed");
    }
    state.counters["server_cpu_us"] = benchmark::Counter(
        server_us / static_cast<double>(state.iterations()));
    state.counters["server_handshakes_per_cpu_s"] =
        benchmark::Counter(1e6 * static_cast<double>(state.iterations()) / server_us);
}
BENCHMARK(BM_TlsResumedHandshake)->Unit(benchmark::kMicrosecond);

// Server encrypts `range(0)` bytes of plaintext with suite range(1).
void BM_TlsRecordEncrypt(benchmark::State& state) {
    Setup& s = setup();
    Pipe pipe;
    Client client(s.client_ctx);
    wolfSSL_set_cipher_list(client.ssl, suites[state.range(1)]);
    auto server = TlsStream::server(s.context, pipe);
    if (handshake(*server, pipe, client) < 0) state.SkipWithError("handshake failed");
    std::string plain(static_cast<std::size_t>(state.range(0)), 'x');
    for (auto _ : state) {
        pipe.bytes.clear();
        if (server->write(std::as_bytes(std::span(plain.data(), plain.size()))) != rp::Status::ok) {
            state.SkipWithError("write failed");
        }
        benchmark::DoNotOptimize(pipe.bytes.data());
    }
    state.SetBytesProcessed(state.iterations() * state.range(0));
    state.SetLabel(std::string(server->cipher()));
}
BENCHMARK(BM_TlsRecordEncrypt)->ArgsProduct({{4096, 16384, 1 << 20}, {0, 1, 2}});

// Server decrypts records of `range(0)` plaintext bytes (suite range(1)) made by the client.
void BM_TlsRecordDecrypt(benchmark::State& state) {
    Setup& s = setup();
    Pipe pipe;
    Client client(s.client_ctx);
    wolfSSL_set_cipher_list(client.ssl, suites[state.range(1)]);
    auto server = TlsStream::server(s.context, pipe);
    if (handshake(*server, pipe, client) < 0) state.SkipWithError("handshake failed");
    std::string plain(static_cast<std::size_t>(state.range(0)), 'x');
    std::string buffer(1 << 16, '\0');
    for (auto _ : state) {
        state.PauseTiming();
        client.out.clear();
        wolfSSL_write(client.ssl, plain.data(), static_cast<int>(plain.size()));
        std::string cipher = std::move(client.out);
        client.out.clear();
        state.ResumeTiming();
        std::size_t got = 0;
        std::span<const std::byte> input = std::as_bytes(std::span(cipher.data(), cipher.size()));
        while (got < plain.size()) {
            server->set_input(input);
            auto result = server->read(std::as_writable_bytes(std::span(buffer.data(), buffer.size())));
            input = input.subspan(server->input_consumed());
            if (result.step != TlsStream::Step::done) break;
            got += result.bytes;
        }
        if (got != plain.size()) state.SkipWithError("decrypt short");
    }
    state.SetBytesProcessed(state.iterations() * state.range(0));
    state.SetLabel(std::string(server->cipher()));
}
BENCHMARK(BM_TlsRecordDecrypt)->ArgsProduct({{4096, 16384, 1 << 20}, {0, 1, 2}});

// The server's whole share of a SCRAM-SHA-256 login (parse, challenge, proof check,
// signature), with the client's messages made once (fixed nonces, RFC 7677's example).
void BM_ScramVerify(benchmark::State& state) {
    std::string salt;
    (void)rp::auth::base64_decode("W22ZaJ0SNY7soEsUEjb6gQ==", salt);
    auto credential = rp::auth::scram_credential_derive("pencil", salt, 4096);
    for (auto _ : state) {
        rp::auth::ScramServer server;
        (void)server.client_first("n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        benchmark::DoNotOptimize(server.server_first(&*credential, "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"));
        bool verified = false;
        (void)server.client_final(
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
            "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
            &verified);
        if (!verified) state.SkipWithError("not verified");
    }
}
BENCHMARK(BM_ScramVerify)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
