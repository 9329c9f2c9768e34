#include "core/tls.h"

// wolfSSL's build options must come before any other wolfSSL header.
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/chacha20_poly1305.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/random.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/assert.h"

namespace rp::tls {
namespace {

// wolfSSL_Cleanup at exit frees the library's global state (its session cache, RNG), so
// that a leak check at exit (ASan) sees only our own leaks. Constructed on first use, so it
// is destroyed before the sanitizer's exit-time check runs.
struct LibraryCleanup {
    LibraryCleanup() { wolfSSL_Init(); }
    ~LibraryCleanup() { wolfSSL_Cleanup(); }
};

// Per-thread crypto state, released at thread exit. With FP_ECC, wolfCrypt keeps a
// fixed-point table cache per thread (thread-local, ~1 MB once an ECDSA signature or ECDH
// ran) that only wc_ecc_fp_free on that same thread frees. The RNG makes ticket nonces.
struct ThreadCrypto {
    bool ecc_used = false;
    bool rng_ready = false;
    WC_RNG rng;
    ~ThreadCrypto() {
        if (rng_ready) wc_FreeRng(&rng);
#ifdef FP_ECC
        if (ecc_used) wc_ecc_fp_free();
#endif
    }
};

ThreadCrypto& library_init() {
    static LibraryCleanup library;
    thread_local ThreadCrypto crypto;
    crypto.ecc_used = true;
    return crypto;
}

bool random_bytes(unsigned char* out, std::size_t bytes) {
    ThreadCrypto& crypto = library_init();
    if (!crypto.rng_ready) {
        if (wc_InitRng(&crypto.rng) != 0) return false;
        crypto.rng_ready = true;
    }
    return wc_RNG_GenerateBlock(&crypto.rng, out, static_cast<word32>(bytes)) == 0;
}

// Session tickets (RFC 5077, RFC 8446 4.6.1): the ticket state is sealed with
// ChaCha20-Poly1305 under the current key; the key name and the nonce travel in the clear
// and are authenticated as associated data. A ticket under the previous key is accepted and
// replaced by a new one (WOLFSSL_TICKET_RET_CREATE); an unknown key name is a full handshake.
int on_ticket(WOLFSSL* /*ssl*/, unsigned char key_name[WOLFSSL_TICKET_NAME_SZ],
              unsigned char iv[WOLFSSL_TICKET_IV_SZ], unsigned char mac[WOLFSSL_TICKET_MAC_SZ],
              int encrypt, unsigned char* ticket, int in_bytes, int* out_bytes, void* arg) {
    static_assert(WOLFSSL_TICKET_NAME_SZ == sizeof(TicketKey{}.name));
    static_assert(WOLFSSL_TICKET_IV_SZ >= CHACHA20_POLY1305_AEAD_IV_SIZE);
    static_assert(WOLFSSL_TICKET_MAC_SZ >= CHACHA20_POLY1305_AEAD_AUTHTAG_SIZE);
    static_assert(sizeof(TicketKey{}.key) == CHACHA20_POLY1305_AEAD_KEYSIZE);
    const auto* keys = static_cast<const TicketKeys*>(arg);
    if (keys == nullptr || in_bytes < 0) return WOLFSSL_TICKET_RET_FATAL;
    const auto bytes = static_cast<word32>(in_bytes);
    unsigned char aad[WOLFSSL_TICKET_NAME_SZ + WOLFSSL_TICKET_IV_SZ];
    if (encrypt != 0) {
        std::memcpy(key_name, keys->current.name.data(), WOLFSSL_TICKET_NAME_SZ);
        if (!random_bytes(iv, WOLFSSL_TICKET_IV_SZ)) return WOLFSSL_TICKET_RET_FATAL;
        std::memcpy(aad, key_name, WOLFSSL_TICKET_NAME_SZ);
        std::memcpy(aad + WOLFSSL_TICKET_NAME_SZ, iv, WOLFSSL_TICKET_IV_SZ);
        std::memset(mac, 0, WOLFSSL_TICKET_MAC_SZ);
        if (wc_ChaCha20Poly1305_Encrypt(keys->current.key.data(), iv, aad, sizeof(aad), ticket,
                                        bytes, ticket, mac) != 0) {
            return WOLFSSL_TICKET_RET_FATAL;
        }
        *out_bytes = in_bytes;
        return WOLFSSL_TICKET_RET_OK;
    }
    const TicketKey* key = nullptr;
    if (std::memcmp(key_name, keys->current.name.data(), WOLFSSL_TICKET_NAME_SZ) == 0) {
        key = &keys->current;
    } else if (keys->has_previous &&
               std::memcmp(key_name, keys->previous.name.data(), WOLFSSL_TICKET_NAME_SZ) == 0) {
        key = &keys->previous;
    }
    if (key == nullptr) return WOLFSSL_TICKET_RET_REJECT;
    std::memcpy(aad, key_name, WOLFSSL_TICKET_NAME_SZ);
    std::memcpy(aad + WOLFSSL_TICKET_NAME_SZ, iv, WOLFSSL_TICKET_IV_SZ);
    if (wc_ChaCha20Poly1305_Decrypt(key->key.data(), iv, aad, sizeof(aad), ticket, bytes, mac,
                                    ticket) != 0) {
        return WOLFSSL_TICKET_RET_REJECT;  // Forged or damaged: a full handshake.
    }
    *out_bytes = in_bytes;
    return key == &keys->current ? WOLFSSL_TICKET_RET_OK : WOLFSSL_TICKET_RET_CREATE;
}

bool read_file(const std::string& path, std::string& out) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return false;
    std::ostringstream text;
    text << in.rdbuf();
    out = text.str();
    return static_cast<bool>(in) || in.eof();
}

bool write_file(const std::string& path, const void* data, std::size_t bytes, mode_t mode) {
    std::string temporary = path + ".tmp";
    int fd = open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0) return false;
    const char* p = static_cast<const char*>(data);
    std::size_t left = bytes;
    while (left > 0) {
        ssize_t n = ::write(fd, p, left);
        if (n <= 0) {
            if (n < 0 && errno == EINTR) continue;
            close(fd);
            return false;
        }
        p += n;
        left -= static_cast<std::size_t>(n);
    }
    bool ok = fsync(fd) == 0;
    ok = close(fd) == 0 && ok;
    return ok && rename(temporary.c_str(), path.c_str()) == 0;
}

std::string lower(std::string_view text) {
    std::string out(text);
    for (char& c : out) {
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    }
    return out;
}

// SNI: switch the handshake to the context whose certificate carries the name asked for.
// No name, or a name no certificate carries, keeps the listener's default.
int on_servername(WOLFSSL* ssl, int* /*alert*/, void* arg) {
    const auto* context = static_cast<const TlsContext*>(arg);
    const char* name = wolfSSL_get_servername(ssl, WOLFSSL_SNI_HOST_NAME);
    if (name == nullptr) return 0;  // SSL_TLSEXT_ERR_OK: keep the default.
    WOLFSSL_CTX* chosen = context->find_name(name);
    if (chosen != nullptr && chosen != wolfSSL_get_SSL_CTX(ssl)) wolfSSL_set_SSL_CTX(ssl, chosen);
    return 0;
}

struct GroupName {
    std::string_view name;
    int group;
};
// The first spelling of each group is its canonical name (group_name).
constexpr GroupName group_names[] = {
    {"X25519", WOLFSSL_ECC_X25519},       {"P-256", WOLFSSL_ECC_SECP256R1},
    {"P-384", WOLFSSL_ECC_SECP384R1},     {"P-521", WOLFSSL_ECC_SECP521R1},
    {"prime256v1", WOLFSSL_ECC_SECP256R1}, {"secp256r1", WOLFSSL_ECC_SECP256R1},
    {"secp384r1", WOLFSSL_ECC_SECP384R1}, {"secp521r1", WOLFSSL_ECC_SECP521R1},
};

// TlsStream::last_error_ when the handshake used a group tls.groups does not list (no
// wolfSSL error code is this large).
constexpr int group_refused = -100000;

// ASCII only, without allocating (it runs once per finished handshake).
bool same_ignoring_case(std::string_view a, std::string_view b) {
    auto fold = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; };
    return a.size() == b.size() &&
           std::equal(a.begin(), a.end(), b.begin(), [&](char x, char y) { return fold(x) == fold(y); });
}

// The group of a name in any spelling of group_names, any case; null when unknown.
const GroupName* group_find(std::string_view name) {
    for (const GroupName& candidate : group_names) {
        if (same_ignoring_case(candidate.name, name)) return &candidate;
    }
    return nullptr;
}

WOLFSSL_CTX* context_make(const TlsCertificate& certificate, const TlsMaterial& material,
                          const TicketKeys* ticket_keys, std::string* error) {
    WOLFSSL_CTX* ctx = wolfSSL_CTX_new(wolfSSLv23_server_method());
    if (ctx == nullptr) {
        *error = "wolfSSL_CTX_new failed";
        return nullptr;
    }
    auto fail = [&](const std::string& what) -> WOLFSSL_CTX* {
        *error = what;
        wolfSSL_CTX_free(ctx);
        return nullptr;
    };
    int version = material.min_version >= 13 ? WOLFSSL_TLSV1_3 : WOLFSSL_TLSV1_2;
    if (wolfSSL_CTX_SetMinVersion(ctx, version) != WOLFSSL_SUCCESS) {
        return fail("cannot set the minimum TLS version");
    }
    const auto* cert = reinterpret_cast<const unsigned char*>(certificate.cert_pem.data());
    if (wolfSSL_CTX_use_certificate_chain_buffer_format(
            ctx, cert, static_cast<long>(certificate.cert_pem.size()), WOLFSSL_FILETYPE_PEM) !=
        WOLFSSL_SUCCESS) {
        return fail("the certificate is not a PEM certificate chain");
    }
    const auto* key = reinterpret_cast<const unsigned char*>(certificate.key_pem.data());
    if (wolfSSL_CTX_use_PrivateKey_buffer(ctx, key, static_cast<long>(certificate.key_pem.size()),
                                          WOLFSSL_FILETYPE_PEM) != WOLFSSL_SUCCESS) {
        return fail("the key is not a PEM private key");
    }
    if (wolfSSL_CTX_check_private_key(ctx) != WOLFSSL_SUCCESS) {
        return fail("the private key does not match the certificate");
    }
    const char* ciphers = material.ciphers.empty() ? ciphers_default : material.ciphers.c_str();
    if (wolfSSL_CTX_set_cipher_list(ctx, ciphers) != WOLFSSL_SUCCESS) {
        return fail("no usable cipher in tls.ciphers \"" + material.ciphers + "\"");
    }
    if (!material.groups.empty() && groups_apply(ctx, material.groups) != Status::ok) {
        return fail("wolfSSL refused tls.groups");
    }
    // A mail client may not verify us at all, but we never ask for its certificate.
    wolfSSL_CTX_set_verify(ctx, WOLFSSL_VERIFY_NONE, nullptr);
#ifdef HAVE_SESSION_TICKET
    if (material.ticket_lifetime_s > 0) {
        // Our keys (on_ticket), shared by every shard's context; the owner rotates them
        // every lifetime and keeps one previous key, so a ticket outlives no key it needs.
        std::uint32_t hint = std::min<std::uint32_t>(material.ticket_lifetime_s, ticket_lifetime_max_s);
        wolfSSL_CTX_set_TicketHint(ctx, static_cast<int>(hint));
        wolfSSL_CTX_set_TicketEncCb(ctx, on_ticket);
        wolfSSL_CTX_set_TicketEncCtx(ctx, const_cast<TicketKeys*>(ticket_keys));
        // Tickets make the server stateless: no session-ID cache (wolfSSL's is one global
        // table behind a lock that every shard's handshakes would take).
        wolfSSL_CTX_set_session_cache_mode(ctx, WOLFSSL_SESS_CACHE_OFF);
    } else {
        wolfSSL_CTX_set_options(ctx, WOLFSSL_OP_NO_TICKET);
    }
#endif
    return ctx;
}

}  // namespace

Result<std::vector<int>> groups_parse(const std::vector<std::string>& names,
                                      std::string* error) {
    RP_ASSERT(error != nullptr);
    std::vector<int> groups;
    for (const std::string& name : names) {
        const GroupName* found = group_find(name);
        if (found == nullptr) {
            *error = "unknown group \"" + name + "\" (X25519, P-256, P-384 or P-521)";
            return Status::invalid;
        }
        if (std::find(groups.begin(), groups.end(), found->group) != groups.end()) {
            *error = "group \"" + name + "\" listed twice";
            return Status::invalid;
        }
        groups.push_back(found->group);
    }
    if (groups.size() > WOLFSSL_MAX_GROUP_COUNT) {
        *error = "too many groups";
        return Status::invalid;
    }
    RP_ASSERT(groups.size() == names.size());
    return groups;
}

std::string_view group_name(int group) {
    for (const GroupName& candidate : group_names) {
        if (candidate.group == group) return candidate.name;
    }
    return {};
}

Status groups_apply(WOLFSSL_CTX* ctx, const std::vector<int>& groups) {
    RP_ASSERT(ctx != nullptr);
    RP_ASSERT(!groups.empty());
    // The curves list disables every group not named, for TLS 1.2 ECDHE (RFC 8422 5.1.1)
    // too, then sets the TLS 1.3 preference (supported_groups and key share) in this order:
    // a client's key share of any listed group is taken as it is; one with only unlisted
    // shares gets a HelloRetryRequest naming the best shared group, or fails.
    std::string names;
    for (int group : groups) {
        std::string_view name = group_name(group);
        if (name.empty()) return Status::invalid;
        if (!names.empty()) names += ':';
        names += name;
    }
    if (wolfSSL_CTX_set1_curves_list(ctx, names.c_str()) != WOLFSSL_SUCCESS) {
        return Status::invalid;
    }
    std::vector<int> copy = groups;  // wolfSSL takes a non-const pointer.
    if (wolfSSL_CTX_set_groups(ctx, copy.data(), static_cast<int>(copy.size())) !=
        WOLFSSL_SUCCESS) {
        return Status::invalid;
    }
    return Status::ok;
}

Result<std::shared_ptr<const TicketKeys>> ticket_keys_rotate(const TicketKeys* before) {
    auto keys = std::make_shared<TicketKeys>();
    if (!random_bytes(keys->current.name.data(), keys->current.name.size()) ||
        !random_bytes(keys->current.key.data(), keys->current.key.size())) {
        return Status::tls;
    }
    if (before != nullptr) {
        keys->previous = before->current;
        keys->has_previous = true;
        RP_ASSERT(keys->previous.name != keys->current.name);
    }
    return std::shared_ptr<const TicketKeys>(std::move(keys));
}

Result<TlsCertificate> certificate_load(const std::string& cert_file, const std::string& key_file,
                                        std::string* error) {
    TlsCertificate certificate;
    if (!read_file(cert_file, certificate.cert_pem)) {
        *error = "cannot read TLS certificate " + cert_file + ": " + std::strerror(errno);
        return Status::not_found;
    }
    if (!read_file(key_file, certificate.key_pem)) {
        *error = "cannot read TLS key " + key_file + ": " + std::strerror(errno);
        return Status::not_found;
    }
    return certificate;
}

Status self_signed_make(const std::string& cert_file, const std::string& key_file,
                        const std::string& hostname, std::string* error) {
    library_init();
    std::error_code ec;
    for (const std::string* path : {&cert_file, &key_file}) {
        std::filesystem::path parent = std::filesystem::path(*path).parent_path();
        if (!parent.empty()) std::filesystem::create_directories(parent, ec);
        if (ec) {
            *error = "cannot create " + parent.string() + ": " + ec.message();
            return Status::io;
        }
    }
    WC_RNG rng;
    if (wc_InitRng(&rng) != 0) {
        *error = "wolfCrypt RNG init failed";
        return Status::tls;
    }
    ecc_key key;
    wc_ecc_init(&key);
    Status status = Status::tls;
    static constexpr std::size_t der_bytes_max = 4096;
    std::vector<unsigned char> der(der_bytes_max), pem(der_bytes_max * 2);
    do {
        if (wc_ecc_make_key_ex(&rng, 32, &key, ECC_SECP256R1) != 0) {
            *error = "ECDSA P-256 key generation failed";
            break;
        }
        Cert cert;
        wc_InitCert(&cert);
        std::strncpy(cert.subject.commonName, hostname.c_str(), CTC_NAME_SIZE - 1);
        std::strncpy(cert.subject.org, "ringpost self-signed", CTC_NAME_SIZE - 1);
        cert.sigType = CTC_SHA256wECDSA;
        cert.daysValid = 3650;
        cert.isCA = 0;
        int body = wc_MakeCert_ex(&cert, der.data(), der_bytes_max, ECC_TYPE, &key, &rng);
        if (body < 0) {
            *error = "certificate generation failed (" + std::to_string(body) + ")";
            break;
        }
        int signed_bytes = wc_SignCert_ex(cert.bodySz, cert.sigType, der.data(), der_bytes_max,
                                          ECC_TYPE, &key, &rng);
        if (signed_bytes < 0) {
            *error = "certificate signing failed (" + std::to_string(signed_bytes) + ")";
            break;
        }
        int pem_bytes = wc_DerToPem(der.data(), static_cast<word32>(signed_bytes), pem.data(),
                                    static_cast<word32>(pem.size()), CERT_TYPE);
        if (pem_bytes <= 0 || !write_file(cert_file, pem.data(),
                                          static_cast<std::size_t>(pem_bytes), 0644)) {
            *error = "cannot write " + cert_file;
            status = Status::io;
            break;
        }
        int key_der = wc_EccKeyToDer(&key, der.data(), der_bytes_max);
        if (key_der <= 0) {
            *error = "key encoding failed";
            break;
        }
        pem_bytes = wc_DerToPem(der.data(), static_cast<word32>(key_der), pem.data(),
                                static_cast<word32>(pem.size()), ECC_PRIVATEKEY_TYPE);
        if (pem_bytes <= 0 || !write_file(key_file, pem.data(),
                                          static_cast<std::size_t>(pem_bytes), 0600)) {
            *error = "cannot write " + key_file;
            status = Status::io;
            break;
        }
        status = Status::ok;
    } while (false);
    std::fill(der.begin(), der.end(), 0);
    std::fill(pem.begin(), pem.end(), 0);
    wc_ecc_free(&key);
    wc_FreeRng(&rng);
    return status;
}

// ---- TlsContext ----

Result<std::shared_ptr<TlsContext>> TlsContext::create(const TlsMaterial& material,
                                                       std::string* error) {
    RP_ASSERT(error != nullptr);
    if (material.certificates.empty()) {
        *error = "no TLS certificate";
        return Status::invalid;
    }
    library_init();
    std::shared_ptr<TlsContext> context(new TlsContext());
    context->groups_ = material.groups;
    context->ticket_keys_ = material.ticket_keys;
    if (context->ticket_keys_ == nullptr && material.ticket_lifetime_s > 0) {
        auto keys = ticket_keys_rotate(nullptr);
        if (!keys) {
            *error = "cannot make session ticket keys";
            return keys.status();
        }
        context->ticket_keys_ = std::move(keys.value());
    }
    for (const TlsCertificate& certificate : material.certificates) {
        WOLFSSL_CTX* ctx = context_make(certificate, material, context->ticket_keys_.get(), error);
        if (ctx == nullptr) return Status::tls;
        context->contexts_.push_back(ctx);
        std::vector<std::string> names;
        for (const std::string& name : certificate.server_names) names.push_back(lower(name));
        context->names_.push_back(std::move(names));
        context->kinds_.push_back(certificate.listener_kinds);
    }
    if (context->contexts_.size() > 1) {
        // A handshake starts on its listener's context, whichever that is.
        for (WOLFSSL_CTX* ctx : context->contexts_) {
            wolfSSL_CTX_set_servername_callback(ctx, on_servername);
            wolfSSL_CTX_set_servername_arg(ctx, context.get());
        }
    }
    RP_ASSERT(context->contexts_.size() == material.certificates.size());
    return context;
}

TlsContext::~TlsContext() {
    // wolfSSL counts references: a context still used by a live WOLFSSL is freed with it.
    for (WOLFSSL_CTX* ctx : contexts_) wolfSSL_CTX_free(ctx);
}

WOLFSSL_CTX* TlsContext::for_name(std::string_view name) const {
    WOLFSSL_CTX* found = find_name(name);
    return found != nullptr ? found : contexts_.front();
}

WOLFSSL_CTX* TlsContext::for_listener(std::string_view kind) const {
    if (kind.empty()) return contexts_.front();
    for (std::size_t i = 0; i < contexts_.size(); ++i) {
        for (const std::string& candidate : kinds_[i]) {
            if (candidate == kind) return contexts_[i];
        }
    }
    return contexts_.front();
}

bool TlsContext::group_allowed(int group) const {
    return groups_.empty() || std::find(groups_.begin(), groups_.end(), group) != groups_.end();
}

WOLFSSL_CTX* TlsContext::find_name(std::string_view name) const {
    std::string wanted = lower(name);
    for (std::size_t i = 0; i < contexts_.size(); ++i) {
        for (const std::string& candidate : names_[i]) {
            if (candidate == wanted) return contexts_[i];
            // "*.example.test" matches one label.
            if (candidate.size() > 2 && candidate[0] == '*' && candidate[1] == '.') {
                std::size_t dot = wanted.find('.');
                if (dot != std::string::npos && wanted.substr(dot) == candidate.substr(1)) {
                    return contexts_[i];
                }
            }
        }
    }
    return nullptr;
}

// ---- TlsStream ----

std::unique_ptr<TlsStream> TlsStream::server(const std::shared_ptr<const TlsContext>& context,
                                             TlsSink& sink, std::string_view listener_kind) {
    RP_ASSERT(context != nullptr);
    library_init();  // Arms this thread's ECC cache guard (handshakes run ECC here).
    std::unique_ptr<TlsStream> stream(new TlsStream());
    stream->context_ = context;
    stream->sink_ = &sink;
    stream->ssl_ = wolfSSL_new(context->for_listener(listener_kind));
    if (stream->ssl_ == nullptr) return nullptr;
    wolfSSL_SSLSetIORecv(stream->ssl_, &TlsStream::on_recv);
    wolfSSL_SSLSetIOSend(stream->ssl_, &TlsStream::on_send);
    wolfSSL_SetIOReadCtx(stream->ssl_, stream.get());
    wolfSSL_SetIOWriteCtx(stream->ssl_, stream.get());
    return stream;
}

TlsStream::~TlsStream() {
    if (ssl_ != nullptr) wolfSSL_free(ssl_);
}

int TlsStream::on_recv(WOLFSSL* /*ssl*/, char* buf, int bytes, void* self) {
    auto* stream = static_cast<TlsStream*>(self);
    RP_ASSERT(bytes >= 0);
    RP_ASSERT(stream->input_consumed_ <= stream->input_.size());
    std::size_t left = stream->input_.size() - stream->input_consumed_;
    if (left == 0) return WOLFSSL_CBIO_ERR_WANT_READ;
    std::size_t count = std::min<std::size_t>(left, static_cast<std::size_t>(bytes));
    std::memcpy(buf, stream->input_.data() + stream->input_consumed_, count);
    stream->input_consumed_ += count;  // bounds: count <= left.
    return static_cast<int>(count);
}

int TlsStream::on_send(WOLFSSL* /*ssl*/, char* buf, int bytes, void* self) {
    auto* stream = static_cast<TlsStream*>(self);
    RP_ASSERT(bytes >= 0);
    std::span<const std::byte> out(reinterpret_cast<const std::byte*>(buf),
                                   static_cast<std::size_t>(bytes));
    if (!stream->sink_->tls_send(out)) return WOLFSSL_CBIO_ERR_CONN_CLOSE;
    return bytes;
}

TlsStream::Step TlsStream::handshake() {
    RP_ASSERT(!established_);
    int r = wolfSSL_accept(ssl_);
    if (r == WOLFSSL_SUCCESS) {
        // TLS 1.2: with no listed curve in the ClientHello wolfSSL still does ECDHE on P-256;
        // refuse that here, as TLS 1.3 refuses it during the handshake.
        const char* curve = wolfSSL_get_curve_name(ssl_);
        const GroupName* used = curve != nullptr ? group_find(curve) : nullptr;
        if (used != nullptr && !context_->group_allowed(used->group)) {
            last_error_ = group_refused;
            return Step::failed;
        }
        established_ = true;
        return Step::done;
    }
    int e = wolfSSL_get_error(ssl_, r);
    if (e == WOLFSSL_ERROR_WANT_READ || e == WOLFSSL_ERROR_WANT_WRITE) return Step::want_input;
    last_error_ = e;
    return Step::failed;
}

TlsStream::ReadResult TlsStream::read(std::span<std::byte> plain) {
    RP_ASSERT(established_);
    RP_ASSERT(!plain.empty());
    int capacity = static_cast<int>(std::min<std::size_t>(plain.size(), 1u << 30));
    int r = wolfSSL_read(ssl_, plain.data(), capacity);
    if (r > 0) {
        RP_ASSERT(r <= capacity);
        return {Step::done, static_cast<std::size_t>(r)};
    }
    int e = wolfSSL_get_error(ssl_, r);
    if (e == WOLFSSL_ERROR_WANT_READ || e == WOLFSSL_ERROR_WANT_WRITE) {
        return {Step::want_input, 0};
    }
    if (e == WOLFSSL_ERROR_ZERO_RETURN) return {Step::closed, 0};
    last_error_ = e;
    return {Step::failed, 0};
}

Status TlsStream::write(std::span<const std::byte> plain) {
    RP_ASSERT(established_);
    while (!plain.empty()) {
        int count = static_cast<int>(std::min<std::size_t>(plain.size(), 1u << 20));
        int r = wolfSSL_write(ssl_, plain.data(), count);
        if (r <= 0) {
            last_error_ = wolfSSL_get_error(ssl_, r);
            return Status::full;  // The sink refused: the send queue is at its cap.
        }
        plain = plain.subspan(static_cast<std::size_t>(r));
    }
    return Status::ok;
}

void TlsStream::shutdown() {
    if (established_) wolfSSL_shutdown(ssl_);
}

std::string_view TlsStream::version() const { return wolfSSL_get_version(ssl_); }

std::string_view TlsStream::cipher() const {
    const char* name = wolfSSL_get_cipher_name(ssl_);
    return name != nullptr ? name : "";
}

std::string_view TlsStream::group() const {
    const char* name = wolfSSL_get_curve_name(ssl_);
    if (name == nullptr) return {};
    // wolfSSL names curves "SECP256R1"; ours are the RFC 8446 / config spellings.
    const GroupName* found = group_find(name);
    return found != nullptr ? group_name(found->group) : std::string_view{};
}

bool TlsStream::resumed() const { return wolfSSL_session_reused(ssl_) != 0; }

std::string TlsStream::last_error() const {
    if (last_error_ == group_refused) {
        return "the client offered none of tls.groups (TLS 1.2 ECDHE on " +
               std::string(group()) + ")";
    }
    char text[WOLFSSL_MAX_ERROR_SZ] = {};
    wolfSSL_ERR_error_string_n(static_cast<unsigned long>(last_error_), text, sizeof(text));
    return std::to_string(last_error_) + " " + text;
}

}  // namespace rp::tls
