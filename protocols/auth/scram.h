// protocols/auth/scram.h: SCRAM-SHA-256 (RFC 5802, RFC 7677), server side, and its stored
// credential (RFC 5803 text form).
//
// Owns: nothing shared; a ScramServer holds one exchange's state (nonces, the messages the
//   AuthMessage is made of). Pure: bytes in, bytes out, no I/O (nonces come from getrandom).
// Cost: making a credential runs PBKDF2 (tool only, `ringpost user add|passwd`); verifying
//   an exchange is three HMACs and a hash, cheap enough for a core thread.
// Limits: no channel binding (SCRAM-SHA-256-PLUS is not offered; a client asking for it
//   with "p=" is refused); passwords are used as given (no SASLprep: ASCII passwords are
//   unaffected; non-ASCII ones must be typed in the same normalization form on both sides).
// Errors: malformed client messages are Status::invalid (the protocol answers 501 5.5.2 /
//   BAD); a wrong proof is a failed verification, not an error.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/result.h"

namespace rp::auth {

inline constexpr std::string_view scram_mechanism = "SCRAM-SHA-256";
inline constexpr std::uint32_t scram_iterations_default = 4096;  // RFC 7677 4: at least 4096.
inline constexpr std::uint32_t scram_iterations_max = 1'000'000;
inline constexpr std::size_t scram_message_bytes_max = 1024;

struct ScramCredential {
    std::uint32_t iterations = 0;
    std::string salt;                       // Raw bytes.
    std::array<unsigned char, 32> stored_key{};  // H(ClientKey).
    std::array<unsigned char, 32> server_key{};  // HMAC(SaltedPassword, "Server Key").
};

// PBKDF2-HMAC-SHA-256 with a random 16-byte salt. CPU-heavy: tools only.
[[nodiscard]] Result<ScramCredential> scram_credential_make(
    std::string_view password, std::uint32_t iterations = scram_iterations_default);
// The same with a given salt (tests, RFC 7677 vector).
[[nodiscard]] Result<ScramCredential> scram_credential_derive(std::string_view password,
                                                              std::string_view salt,
                                                              std::uint32_t iterations);
// RFC 5803: "SCRAM-SHA-256$<iterations>:<base64 salt>$<base64 StoredKey>:<base64 ServerKey>".
std::string scram_credential_format(const ScramCredential& credential);
[[nodiscard]] Result<ScramCredential> scram_credential_parse(std::string_view text);

// One server-side exchange:
//   client_first(decoded client-first-message) -> user(); the host looks the user up;
//   server_first(credential or null) -> the challenge; client_final(decoded message) ->
//   verified or not, and server_final() (v=...) for a verified client.
class ScramServer {
public:
    [[nodiscard]] Status client_first(std::string_view message);
    // The user name (saslname decoded), valid after client_first.
    std::string_view user() const { return user_; }
    // `credential` null (unknown user): a stable fake salt, so the exchange looks the same
    // and fails at the end (RFC 5802 5.1). `server_nonce`: empty for a random one (tests
    // give one to replay RFC 7677's example).
    std::string server_first(const ScramCredential* credential,
                             std::string_view server_nonce = {});
    // Status::ok with `*verified` set, or Status::invalid (malformed, or not our nonce).
    [[nodiscard]] Status client_final(std::string_view message, bool* verified);
    // "v=<base64 ServerSignature>", after a verified client_final.
    const std::string& server_final() const { return server_final_; }
    // Wipes the exchange's state.
    void reset();

private:
    enum class Step : std::uint8_t { first, final, done };
    Step step_ = Step::first;
    bool fake_ = false;
    std::string user_;
    std::string gs2_header_;          // "n,," / "y,,a=x," as sent: the c= attribute's value.
    std::string client_first_bare_;
    std::string server_first_;
    std::string nonce_;               // Client nonce + server nonce.
    ScramCredential credential_;
    std::string server_final_;
};

}  // namespace rp::auth
