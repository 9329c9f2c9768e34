// core/tls.h: TLS (wolfSSL) over memory I/O callbacks, for the session driver.
//
// Owns: TlsContext owns one WOLFSSL_CTX per certificate (the first is the default; a
//   certificate may be the default of some listener kinds; SNI picks one by name);
//   TlsStream owns one WOLFSSL object (one connection).
// Core: a TlsContext is built once and then only read; each shard builds its own (no lock is
//   shared between shards on a handshake) from the same TlsMaterial. A TlsStream is used by
//   one core only. Sessions keep the context they started with alive (shared_ptr), so a
//   reload (SIGHUP) swaps the context for new handshakes while open sessions go on.
// I/O: wolfSSL never touches a socket. The driver hands it received ciphertext with
//   set_input() before a call and reads input_consumed() after; ciphertext wolfSSL wants to
//   send goes to a TlsSink (the session's send queue). wolfSSL keeps a partial record in its
//   own input buffer, so every call may consume all the input it was given.
// Tickets: every context built from one TlsMaterial encrypts session tickets with the same
//   TicketKeys (ChaCha20-Poly1305), so a ticket issued by one shard resumes on any shard.
//   Rotation makes new material (new current key, the old one kept to decrypt).
// Errors: a handshake or record failure is Step::failed (the driver closes with
//   Status::tls); a close_notify from the peer is Step::closed.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"

struct WOLFSSL_CTX;
struct WOLFSSL;

namespace rp::tls {

// One certificate chain and its private key, PEM text (read at start-up or on SIGHUP, never
// on a core thread).
struct TlsCertificate {
    std::string cert_pem;                 // Leaf first, then intermediates.
    std::string key_pem;
    std::vector<std::string> server_names;  // SNI names ("*.x" matches one label).
    std::vector<std::string> listener_kinds;  // Default for these listener kinds (no SNI match).
};

// Session ticket keys, shared read-only by every context built from one TlsMaterial.
struct TicketKey {
    std::array<unsigned char, 16> name{};  // Sent in the clear in the ticket: picks the key.
    std::array<unsigned char, 32> key{};   // ChaCha20-Poly1305.
};
struct TicketKeys {
    TicketKey current;            // Encrypts new tickets.
    TicketKey previous;           // Still decrypts (a resumed session then gets a new ticket).
    bool has_previous = false;
};

// Fresh random keys; the current key of `before` (if not null) becomes the previous key.
[[nodiscard]] Result<std::shared_ptr<const TicketKeys>> ticket_keys_rotate(
    const TicketKeys* before);

// Tickets must outlive no key that decrypts them: the daemon rotates the ticket keys every
// ticket lifetime (keeping one previous key), and config caps the lifetime.
inline constexpr std::uint32_t ticket_lifetime_max_s = 1800;

// Key exchange groups (RFC 8446 4.2.7) by name: "X25519", "P-256", "P-384", "P-521"
// (OpenSSL's spellings "x25519", "prime256v1", "secp256r1", "secp384r1", "secp521r1" too).
// Returns wolfSSL's group ids in the same order; an unknown or repeated name is an error.
[[nodiscard]] Result<std::vector<int>> groups_parse(const std::vector<std::string>& names,
                                                    std::string* error);
// The name of a wolfSSL group id ("X25519", "P-256", ...), or "" if we have none.
std::string_view group_name(int group);
// Sets `groups` (not empty) as the context's key exchange groups, most preferred first:
// TLS 1.3 supported_groups and key shares, TLS 1.2 ECDHE curves. Client or server.
[[nodiscard]] Status groups_apply(WOLFSSL_CTX* ctx, const std::vector<int>& groups);
// Real clients (NSS, OpenSSL, BoringSSL, Apple) offer X25519 first; P-256 and P-384 for the
// rest. X25519 costs a fraction of P-256 in Debian's wolfSSL (no P-256 assembly there).
inline const std::vector<std::string> groups_default = {"X25519", "P-256", "P-384"};

// The server's cipher suites when tls.ciphers is empty, in the server's order of preference
// (wolfSSL picks by the server's order): ChaCha20-Poly1305 first, because Debian's wolfSSL
// has no AES-NI code and ChaCha20-Poly1305 runs about 3x faster than AES-GCM there
// (bench_tls BM_TlsRecord*), as BoringSSL prefers it on machines without AES hardware; then
// AES-GCM, then the CBC suites old mail clients may need. No RC4, 3DES, NULL or PSK suites.
inline constexpr const char* ciphers_default =
    "TLS13-CHACHA20-POLY1305-SHA256:TLS13-AES128-GCM-SHA256:TLS13-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-AES128-SHA256:ECDHE-RSA-AES128-SHA256:"
    "ECDHE-ECDSA-AES256-SHA384:ECDHE-RSA-AES256-SHA384:"
    "ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:ECDHE-RSA-AES256-SHA";

struct TlsMaterial {
    std::vector<TlsCertificate> certificates;  // [0] is the default; must not be empty.
    unsigned min_version = 12;                 // 12: TLS 1.2, 13: TLS 1.3.
    std::string ciphers;                       // wolfSSL/OpenSSL list; empty: ciphers_default.
    // Key exchange groups, most preferred first (groups_parse); empty: wolfSSL's defaults.
    // A client key share of a listed group is taken as it is (no extra round trip); a
    // client with no listed group fails the handshake (TLS 1.2: wolfSSL falls back to P-256
    // for ECDHE, so TlsStream refuses a finished handshake on an unlisted curve).
    std::vector<int> groups;
    std::uint32_t ticket_lifetime_s = 1800;    // Session tickets (resumption); 0: none.
    // Null: TlsContext::create makes keys of its own (tickets resume only on that context).
    std::shared_ptr<const TicketKeys> ticket_keys;
};

// Reads `cert_file` and `key_file` (blocking: start-up and reload only).
[[nodiscard]] Result<TlsCertificate> certificate_load(const std::string& cert_file,
                                                      const std::string& key_file,
                                                      std::string* error);

// Makes a self-signed ECDSA P-256 certificate for `hostname` and writes both files
// (key mode 0600). Blocking: start-up only.
[[nodiscard]] Status self_signed_make(const std::string& cert_file, const std::string& key_file,
                                      const std::string& hostname, std::string* error);

class TlsContext {
public:
    [[nodiscard]] static Result<std::shared_ptr<TlsContext>> create(const TlsMaterial& material,
                                                                    std::string* error);
    ~TlsContext();
    TlsContext(const TlsContext&) = delete;
    TlsContext& operator=(const TlsContext&) = delete;

    WOLFSSL_CTX* native() const { return contexts_.front(); }
    // The context for an SNI name, or the default.
    WOLFSSL_CTX* for_name(std::string_view name) const;
    // The context whose certificate carries an SNI name, or null.
    WOLFSSL_CTX* find_name(std::string_view name) const;
    // The default context of a listener kind: its own certificate, else the default.
    WOLFSSL_CTX* for_listener(std::string_view kind) const;
    // Whether ECDHE may use `group` (tls.groups; any group when none are configured).
    bool group_allowed(int group) const;

private:
    TlsContext() = default;
    std::vector<WOLFSSL_CTX*> contexts_;
    std::vector<std::vector<std::string>> names_;  // Parallel to contexts_.
    std::vector<std::vector<std::string>> kinds_;  // Parallel to contexts_.
    std::shared_ptr<const TicketKeys> ticket_keys_;
    std::vector<int> groups_;  // Empty: wolfSSL's defaults, any group.
};

// Where a stream puts ciphertext to send.
class TlsSink {
public:
    // Takes all of `bytes`, or returns false (the send queue is at its hard cap).
    virtual bool tls_send(std::span<const std::byte> bytes) = 0;

protected:
    ~TlsSink() = default;
};

class TlsStream {
public:
    enum class Step : std::uint8_t {
        done,        // Handshake finished / bytes produced.
        want_input,  // Needs more ciphertext.
        failed,      // Handshake or record error: close the connection.
        closed,      // The peer sent close_notify.
    };
    struct ReadResult {
        Step step;
        std::size_t bytes;  // Plaintext written (step done).
    };

    // A server-side stream for a connection on a `listener_kind` listener (its certificate
    // unless SNI names another); null if wolfSSL could not allocate one.
    static std::unique_ptr<TlsStream> server(const std::shared_ptr<const TlsContext>& context,
                                             TlsSink& sink, std::string_view listener_kind = {});
    ~TlsStream();
    TlsStream(const TlsStream&) = delete;
    TlsStream& operator=(const TlsStream&) = delete;

    // The ciphertext the next call may read; borrowed until that call returns.
    void set_input(std::span<const std::byte> cipher) {
        input_ = cipher;
        input_consumed_ = 0;
    }
    std::size_t input_consumed() const { return input_consumed_; }

    Step handshake();
    bool established() const { return established_; }
    // Decrypts into `plain` (not empty).
    ReadResult read(std::span<std::byte> plain);
    // Encrypts all of `plain` (one or more records) into the sink.
    [[nodiscard]] Status write(std::span<const std::byte> plain);
    // Queues close_notify (best effort).
    void shutdown();

    std::string_view version() const;
    std::string_view cipher() const;
    // The key exchange group (group_name: "X25519", "P-256", ...), "" if none or unknown.
    std::string_view group() const;
    bool resumed() const;
    // Why the last call failed (wolfSSL's text), for the log.
    std::string last_error() const;

private:
    TlsStream() = default;
    static int on_recv(WOLFSSL* ssl, char* buf, int bytes, void* self);
    static int on_send(WOLFSSL* ssl, char* buf, int bytes, void* self);

    std::shared_ptr<const TlsContext> context_;
    WOLFSSL* ssl_ = nullptr;
    TlsSink* sink_ = nullptr;
    std::span<const std::byte> input_;
    std::size_t input_consumed_ = 0;
    int last_error_ = 0;  // wolfSSL's error code, or group_refused.
    bool established_ = false;
};

}  // namespace rp::tls
