// tools/bench/bench_tls.h: the client side of TLS for ringpost-bench (wolfSSL over memory I/O).
//
// Owns: ClientTlsContext owns one WOLFSSL_CTX (one per bench thread, so handshakes share no
//   lock); ClientTls owns one WOLFSSL object, its unread ciphertext and the ciphertext waiting
//   to be sent.
// I/O: wolfSSL never touches a socket. The loop feeds received ciphertext with feed() and
//   sends what pending_output() holds; the bench never blocks on TLS.
// Verification: none by default (a benchmark measures, it does not authenticate the server);
//   --tls-ca FILE turns it on.
// Errors: a handshake or record failure is Step::failed; close_notify is Step::closed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"

struct WOLFSSL_CTX;
struct WOLFSSL;

namespace rp::bench {

class ClientTlsContext {
public:
    // `ca_file` empty: no certificate verification. `groups`: key exchange groups offered,
    // preferred first (the key share is for the first); empty: wolfSSL's defaults.
    [[nodiscard]] static std::unique_ptr<ClientTlsContext> create(
        const std::string& ca_file, const std::vector<std::string>& groups, std::string* error);
    ~ClientTlsContext();
    ClientTlsContext(const ClientTlsContext&) = delete;
    ClientTlsContext& operator=(const ClientTlsContext&) = delete;
    WOLFSSL_CTX* native() const { return ctx_; }

private:
    ClientTlsContext() = default;
    WOLFSSL_CTX* ctx_ = nullptr;
};

class ClientTls {
public:
    enum class Step : std::uint8_t { done, want_input, failed, closed };
    struct ReadResult {
        Step step;
        std::size_t bytes;
    };

    // Null if wolfSSL could not allocate the connection.
    static std::unique_ptr<ClientTls> create(const ClientTlsContext& context,
                                             std::string_view server_name);
    ~ClientTls();
    ClientTls(const ClientTls&) = delete;
    ClientTls& operator=(const ClientTls&) = delete;

    // Appends received ciphertext.
    void feed(std::string_view cipher);
    // Drives the handshake with what was fed; its records go to pending_output().
    Step handshake();
    bool established() const { return established_; }
    // Decrypts into `plain` (not empty): done with bytes > 0, want_input, closed or failed.
    ReadResult read(char* plain, std::size_t capacity);
    // Encrypts all of `plain` into pending_output(). Status::tls on a record failure.
    [[nodiscard]] Status write(std::string_view plain);
    // Ciphertext to send; the caller takes it (swap or clear) when it sends.
    std::string& pending_output() { return output_; }
    std::string last_error() const;

private:
    ClientTls() = default;
    static int on_recv(WOLFSSL* ssl, char* buf, int bytes, void* self);
    static int on_send(WOLFSSL* ssl, char* buf, int bytes, void* self);

    WOLFSSL* ssl_ = nullptr;
    std::string input_;
    std::size_t input_start_ = 0;  // The first byte wolfSSL has not read.
    std::string output_;
    int last_error_ = 0;
    bool established_ = false;
};

}  // namespace rp::bench
