#include "protocols/auth/scram.h"

// wolfSSL's build options must come before any other wolfSSL header.
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/hmac.h>
#include <wolfssl/wolfcrypt/pwdbased.h>
#include <wolfssl/wolfcrypt/sha256.h>

#include <sys/random.h>

#include <charconv>
#include <cstring>
#include <mutex>

#include "core/assert.h"
#include "protocols/auth/sasl.h"

namespace rp::auth {
namespace {

using Digest = std::array<unsigned char, 32>;

bool random_fill(unsigned char* out, std::size_t bytes) {
    while (bytes > 0) {
        ssize_t n = getrandom(out, bytes, 0);
        if (n <= 0) return false;
        out += n;
        bytes -= static_cast<std::size_t>(n);  // bounds: 0 < n <= bytes.
    }
    return true;
}

bool hmac(std::string_view key, std::string_view data, Digest& out) {
    Hmac h;
    if (wc_HmacInit(&h, nullptr, INVALID_DEVID) != 0) return false;
    bool ok = wc_HmacSetKey(&h, WC_SHA256, reinterpret_cast<const byte*>(key.data()),
                            static_cast<word32>(key.size())) == 0 &&
              wc_HmacUpdate(&h, reinterpret_cast<const byte*>(data.data()),
                            static_cast<word32>(data.size())) == 0 &&
              wc_HmacFinal(&h, out.data()) == 0;
    wc_HmacFree(&h);
    return ok;
}

std::string_view view(const Digest& digest) {
    return {reinterpret_cast<const char*>(digest.data()), digest.size()};
}

std::string base64(std::string_view bytes) {
    std::string out;
    base64_encode(bytes, out);
    return out;
}

// RFC 5802 5.1: saslname, where "=2C" is ',' and "=3D" is '='; any other '=' is malformed.
bool saslname_decode(std::string_view text, std::string& out) {
    out.clear();
    for (std::size_t i = 0; i < text.size(); ++i) {
        char c = text[i];
        if (c == ',' || c == '\0') return false;
        if (c != '=') {
            out.push_back(c);
            continue;
        }
        std::string_view escape = text.substr(i, 3);
        if (escape == "=2C") {
            out.push_back(',');
        } else if (escape == "=3D") {
            out.push_back('=');
        } else {
            return false;
        }
        i += 2;
    }
    return !out.empty() && out.size() <= sasl_field_bytes_max;
}

// "k=value" attribute `key`, or false.
bool attribute(std::string_view item, char key, std::string_view& value) {
    if (item.size() < 2 || item[0] != key || item[1] != '=') return false;
    value = item.substr(2);
    return true;
}

// Splits at the first ',' (the rest may be empty).
std::string_view next_item(std::string_view& text) {
    std::size_t comma = text.find(',');
    std::string_view item = text.substr(0, comma);
    text = comma == std::string_view::npos ? std::string_view() : text.substr(comma + 1);
    return item;
}

bool printable_nonce(std::string_view nonce) {
    if (nonce.empty()) return false;
    for (char c : nonce) {
        if (c < 0x21 || c > 0x7e || c == ',') return false;
    }
    return true;
}

// A per-process secret for the fake salts of unknown users (stable within one run).
const Digest& fake_secret() {
    static Digest secret;
    static std::once_flag once;
    std::call_once(once, [] { RP_ASSERT(random_fill(secret.data(), secret.size())); });
    return secret;
}

}  // namespace

Result<ScramCredential> scram_credential_derive(std::string_view password, std::string_view salt,
                                                std::uint32_t iterations) {
    if (iterations == 0 || iterations > scram_iterations_max || salt.empty()) {
        return Status::invalid;
    }
    Digest salted{};
    if (wc_PBKDF2(salted.data(), reinterpret_cast<const byte*>(password.data()),
                  static_cast<int>(password.size()), reinterpret_cast<const byte*>(salt.data()),
                  static_cast<int>(salt.size()), static_cast<int>(iterations),
                  static_cast<int>(salted.size()), WC_SHA256) != 0) {
        return Status::invalid;
    }
    ScramCredential credential;
    credential.iterations = iterations;
    credential.salt.assign(salt);
    Digest client_key{};
    bool ok = hmac(view(salted), "Client Key", client_key) &&
              hmac(view(salted), "Server Key", credential.server_key) &&
              wc_Sha256Hash(client_key.data(), static_cast<word32>(client_key.size()),
                            credential.stored_key.data()) == 0;
    salted.fill(0);
    client_key.fill(0);
    if (!ok) return Status::invalid;
    return credential;
}

Result<ScramCredential> scram_credential_make(std::string_view password,
                                              std::uint32_t iterations) {
    unsigned char salt[16];
    if (!random_fill(salt, sizeof(salt))) return Status::io;
    return scram_credential_derive(password, {reinterpret_cast<const char*>(salt), sizeof(salt)},
                                   iterations);
}

std::string scram_credential_format(const ScramCredential& credential) {
    return std::string(scram_mechanism) + "$" + std::to_string(credential.iterations) + ":" +
           base64(credential.salt) + "$" + base64(view(credential.stored_key)) + ":" +
           base64(view(credential.server_key));
}

Result<ScramCredential> scram_credential_parse(std::string_view text) {
    std::string_view prefix = scram_mechanism;
    if (text.size() <= prefix.size() || text.substr(0, prefix.size()) != prefix ||
        text[prefix.size()] != '$') {
        return Status::invalid;
    }
    text.remove_prefix(prefix.size() + 1);
    std::size_t colon = text.find(':');
    std::size_t dollar = text.find('$');
    if (colon == std::string_view::npos || dollar == std::string_view::npos || colon > dollar) {
        return Status::invalid;
    }
    ScramCredential credential;
    std::string_view count = text.substr(0, colon);
    auto [end, error] = std::from_chars(count.data(), count.data() + count.size(),
                                        credential.iterations);
    if (error != std::errc() || end != count.data() + count.size() ||
        credential.iterations == 0 || credential.iterations > scram_iterations_max) {
        return Status::invalid;
    }
    if (base64_decode(text.substr(colon + 1, dollar - colon - 1), credential.salt) != Status::ok ||
        credential.salt.empty()) {
        return Status::invalid;
    }
    std::string_view keys = text.substr(dollar + 1);
    std::size_t split = keys.find(':');
    if (split == std::string_view::npos) return Status::invalid;
    std::string stored, server;
    if (base64_decode(keys.substr(0, split), stored) != Status::ok ||
        base64_decode(keys.substr(split + 1), server) != Status::ok ||
        stored.size() != credential.stored_key.size() ||
        server.size() != credential.server_key.size()) {
        return Status::invalid;
    }
    std::memcpy(credential.stored_key.data(), stored.data(), stored.size());
    std::memcpy(credential.server_key.data(), server.data(), server.size());
    return credential;
}

// ---- ScramServer ----

Status ScramServer::client_first(std::string_view message) {
    RP_ASSERT(step_ == Step::first);
    if (message.empty() || message.size() > scram_message_bytes_max) return Status::invalid;
    std::string_view rest = message;
    // RFC 5802 7: gs2-header = gs2-cbind-flag "," [authzid] ",". "p=" asks for channel
    // binding, which we do not offer; "y" (client could, thinks we cannot) and "n" are fine.
    std::string_view flag = next_item(rest);
    if (flag != "n" && flag != "y") return Status::invalid;
    std::string_view authzid_item = next_item(rest);
    std::string authzid;
    std::string_view value;
    if (!authzid_item.empty() &&
        (!attribute(authzid_item, 'a', value) || !saslname_decode(value, authzid))) {
        return Status::invalid;
    }
    gs2_header_.assign(message.substr(0, message.size() - rest.size()));
    client_first_bare_.assign(rest);
    // client-first-message-bare = [reserved-mext ","] username "," nonce ["," extensions]:
    // "m=" is a mandatory extension we do not know: refuse.
    std::string_view name_item = next_item(rest);
    if (!attribute(name_item, 'n', value) || !saslname_decode(value, user_)) {
        return Status::invalid;
    }
    std::string_view nonce_item = next_item(rest);
    if (!attribute(nonce_item, 'r', value) || !printable_nonce(value)) return Status::invalid;
    // Acting for another identity is not supported (as for PLAIN).
    if (!authzid.empty() && authzid != user_) return Status::invalid;
    nonce_.assign(value);
    step_ = Step::final;
    return Status::ok;
}

std::string ScramServer::server_first(const ScramCredential* credential,
                                      std::string_view server_nonce) {
    RP_ASSERT(step_ == Step::final);
    RP_ASSERT(server_first_.empty());
    if (credential != nullptr) {
        credential_ = *credential;
        fake_ = false;
    } else {
        // Unknown user: a salt stable per user (HMAC of the name), keys nobody can match.
        Digest salt{};
        RP_ASSERT(hmac(view(fake_secret()), user_, salt));
        credential_ = ScramCredential{};
        credential_.iterations = scram_iterations_default;
        credential_.salt.assign(view(salt).substr(0, 16));
        fake_ = true;
    }
    if (server_nonce.empty()) {
        unsigned char random[18];
        RP_ASSERT(random_fill(random, sizeof(random)));
        nonce_ += base64({reinterpret_cast<const char*>(random), sizeof(random)});
    } else {
        nonce_ += server_nonce;
    }
    server_first_ = "r=" + nonce_ + ",s=" + base64(credential_.salt) +
                    ",i=" + std::to_string(credential_.iterations);
    return server_first_;
}

Status ScramServer::client_final(std::string_view message, bool* verified) {
    RP_ASSERT(step_ == Step::final);
    RP_ASSERT(!server_first_.empty());
    RP_ASSERT(verified != nullptr);
    *verified = false;
    step_ = Step::done;
    if (message.size() > scram_message_bytes_max) return Status::invalid;
    // client-final-message = "c=" base64(gs2-header) "," "r=" nonce ["," ext] "," "p=" proof.
    std::size_t proof_at = message.rfind(",p=");
    if (proof_at == std::string_view::npos) return Status::invalid;
    std::string_view without_proof = message.substr(0, proof_at);
    std::string proof;
    if (base64_decode(message.substr(proof_at + 3), proof) != Status::ok ||
        proof.size() != 32) {
        return Status::invalid;
    }
    std::string_view rest = without_proof;
    std::string_view value;
    std::string binding;
    if (!attribute(next_item(rest), 'c', value) || base64_decode(value, binding) != Status::ok ||
        binding != gs2_header_) {
        return Status::invalid;
    }
    if (!attribute(next_item(rest), 'r', value) || value != nonce_) return Status::invalid;
    // RFC 5802 3: ClientSignature = HMAC(StoredKey, AuthMessage); ClientKey = proof XOR it;
    // the client knows the password when H(ClientKey) == StoredKey.
    std::string auth_message = client_first_bare_ + "," + server_first_ + "," +
                               std::string(without_proof);
    Digest signature{}, client_key{}, stored{};
    if (!hmac(view(credential_.stored_key), auth_message, signature)) return Status::invalid;
    for (std::size_t i = 0; i < client_key.size(); ++i) {
        client_key[i] = static_cast<unsigned char>(proof[i]) ^ signature[i];
    }
    if (wc_Sha256Hash(client_key.data(), static_cast<word32>(client_key.size()),
                      stored.data()) != 0) {
        return Status::invalid;
    }
    unsigned char difference = 0;
    for (std::size_t i = 0; i < stored.size(); ++i) {
        difference |= static_cast<unsigned char>(stored[i] ^ credential_.stored_key[i]);
    }
    client_key.fill(0);
    *verified = difference == 0 && !fake_;
    if (*verified) {
        Digest server_signature{};
        if (!hmac(view(credential_.server_key), auth_message, server_signature)) {
            *verified = false;
            return Status::invalid;
        }
        server_final_ = "v=" + base64(view(server_signature));
    }
    return Status::ok;
}

void ScramServer::reset() {
    step_ = Step::first;
    fake_ = false;
    user_.clear();
    gs2_header_.clear();
    client_first_bare_.clear();
    server_first_.clear();
    nonce_.clear();
    credential_.stored_key.fill(0);
    credential_.server_key.fill(0);
    credential_ = ScramCredential{};
    server_final_.clear();
}

}  // namespace rp::auth
