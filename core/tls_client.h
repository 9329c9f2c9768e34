// core/tls_client.h: client-side TLS (wolfSSL over memory I/O), for the relay's STARTTLS.
//
// Owns: TlsClientContext owns one WOLFSSL_CTX (client method); TlsClientStream owns one
//   WOLFSSL object (one outbound connection).
// Core: a context is built once per shard and then only read; a stream is used by one core.
// I/O: like core/tls.h's TlsStream: wolfSSL never touches a socket. The caller hands it
//   received ciphertext with set_input() before a call; ciphertext to send goes to a TlsSink.
// Verification: TlsClientMode::may (opportunistic, like Postfix's smtp_tls_security_level =
//   may): encrypt, verify nothing (an MX's certificate name rarely matches anything we could
//   check without DANE/MTA-STS). TlsClientMode::verify: the chain must verify against the CA
//   file (or the system's CA folder) and the certificate must name the host we connected to.
// Errors: a handshake or record failure is Step::failed; close_notify is Step::closed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"
#include "core/tls.h"

namespace rp::tls {

enum class TlsClientMode : std::uint8_t {
    none,    // Never STARTTLS.
    may,     // STARTTLS when offered, no verification; plaintext when not offered.
    verify,  // STARTTLS required, certificate verified (chain and host name).
};

struct TlsClientOptions {
    TlsClientMode mode = TlsClientMode::may;
    unsigned min_version = 12;  // 12: TLS 1.2, 13: TLS 1.3.
    std::string ca_file;        // For verify; empty: the system's /etc/ssl/certs.
    // Key exchange groups (groups_parse), most preferred first; the ClientHello carries a key
    // share for the first. Empty: wolfSSL's defaults.
    std::vector<int> groups;
};

class TlsClientContext {
public:
    // Blocking (reads CA files): start-up only.
    [[nodiscard]] static Result<std::shared_ptr<TlsClientContext>> create(
        const TlsClientOptions& options, std::string* error);
    ~TlsClientContext();
    TlsClientContext(const TlsClientContext&) = delete;
    TlsClientContext& operator=(const TlsClientContext&) = delete;

    WOLFSSL_CTX* native() const { return ctx_; }
    bool verify() const { return verify_; }

private:
    TlsClientContext() = default;
    WOLFSSL_CTX* ctx_ = nullptr;
    bool verify_ = false;
};

class TlsClientStream {
public:
    using Step = TlsStream::Step;
    using ReadResult = TlsStream::ReadResult;

    // `server_name` goes into SNI and, with verify, must match the certificate. Null when
    // wolfSSL could not allocate.
    static std::unique_ptr<TlsClientStream> connect(
        const std::shared_ptr<const TlsClientContext>& context, TlsSink& sink,
        const std::string& server_name);
    ~TlsClientStream();
    TlsClientStream(const TlsClientStream&) = delete;
    TlsClientStream& operator=(const TlsClientStream&) = delete;

    // The ciphertext the next call may read; borrowed until that call returns.
    void set_input(std::span<const std::byte> cipher) {
        input_ = cipher;
        input_consumed_ = 0;
    }
    std::size_t input_consumed() const { return input_consumed_; }

    // Sends the ClientHello on the first call; done once established.
    Step handshake();
    bool established() const { return established_; }
    ReadResult read(std::span<std::byte> plain);
    [[nodiscard]] Status write(std::span<const std::byte> plain);
    void shutdown();

    std::string_view version() const;
    std::string_view cipher() const;
    std::string last_error() const;

private:
    TlsClientStream() = default;
    static int on_recv(WOLFSSL* ssl, char* buf, int bytes, void* self);
    static int on_send(WOLFSSL* ssl, char* buf, int bytes, void* self);

    std::shared_ptr<const TlsClientContext> context_;
    WOLFSSL* ssl_ = nullptr;
    TlsSink* sink_ = nullptr;
    std::span<const std::byte> input_;
    std::size_t input_consumed_ = 0;
    int last_error_ = 0;
    bool established_ = false;
};

}  // namespace rp::tls
