#include "core/tls.h"

// wolfSSL's build options must come before any other wolfSSL header.
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/asn_public.h>
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
#include <mutex>
#include <sstream>

#include "core/assert.h"

namespace rp::tls {
namespace {

void library_init() {
    static std::once_flag once;
    std::call_once(once, [] { wolfSSL_Init(); });
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
int on_servername(WOLFSSL* ssl, int* /*alert*/, void* arg) {
    const auto* context = static_cast<const TlsContext*>(arg);
    const char* name = wolfSSL_get_servername(ssl, WOLFSSL_SNI_HOST_NAME);
    if (name == nullptr) return 0;  // SSL_TLSEXT_ERR_OK: keep the default.
    WOLFSSL_CTX* chosen = context->for_name(name);
    if (chosen != context->native()) wolfSSL_set_SSL_CTX(ssl, chosen);
    return 0;
}

WOLFSSL_CTX* context_make(const TlsCertificate& certificate, const TlsMaterial& material,
                          std::string* error) {
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
    if (!material.ciphers.empty() &&
        wolfSSL_CTX_set_cipher_list(ctx, material.ciphers.c_str()) != WOLFSSL_SUCCESS) {
        return fail("no usable cipher in tls.ciphers \"" + material.ciphers + "\"");
    }
    // A mail client may not verify us at all, but we never ask for its certificate.
    wolfSSL_CTX_set_verify(ctx, WOLFSSL_VERIFY_NONE, nullptr);
#ifdef HAVE_SESSION_TICKET
    if (material.ticket_lifetime_s > 0) {
        // wolfSSL's built-in ticket keys live 3600 s in two slots; a hint above half of that
        // makes handshakes fail once both slots hold live keys. Clamp (ticket_lifetime_max_s).
        std::uint32_t hint = std::min<std::uint32_t>(material.ticket_lifetime_s, ticket_lifetime_max_s);
        wolfSSL_CTX_set_TicketHint(ctx, static_cast<int>(hint));
    } else {
        wolfSSL_CTX_set_options(ctx, WOLFSSL_OP_NO_TICKET);
    }
#endif
    return ctx;
}

}  // namespace

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
    for (const TlsCertificate& certificate : material.certificates) {
        WOLFSSL_CTX* ctx = context_make(certificate, material, error);
        if (ctx == nullptr) return Status::tls;
        context->contexts_.push_back(ctx);
        std::vector<std::string> names;
        for (const std::string& name : certificate.server_names) names.push_back(lower(name));
        context->names_.push_back(std::move(names));
    }
    if (context->contexts_.size() > 1) {
        WOLFSSL_CTX* first = context->contexts_.front();
        wolfSSL_CTX_set_servername_callback(first, on_servername);
        wolfSSL_CTX_set_servername_arg(first, context.get());
    }
    RP_ASSERT(context->contexts_.size() == material.certificates.size());
    return context;
}

TlsContext::~TlsContext() {
    // wolfSSL counts references: a context still used by a live WOLFSSL is freed with it.
    for (WOLFSSL_CTX* ctx : contexts_) wolfSSL_CTX_free(ctx);
}

WOLFSSL_CTX* TlsContext::for_name(std::string_view name) const {
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
    return contexts_.front();
}

// ---- TlsStream ----

std::unique_ptr<TlsStream> TlsStream::server(const std::shared_ptr<const TlsContext>& context,
                                             TlsSink& sink) {
    RP_ASSERT(context != nullptr);
    std::unique_ptr<TlsStream> stream(new TlsStream());
    stream->context_ = context;
    stream->sink_ = &sink;
    stream->ssl_ = wolfSSL_new(context->native());
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

bool TlsStream::resumed() const { return wolfSSL_session_reused(ssl_) != 0; }

std::string TlsStream::last_error() const {
    char text[WOLFSSL_MAX_ERROR_SZ] = {};
    wolfSSL_ERR_error_string_n(static_cast<unsigned long>(last_error_), text, sizeof(text));
    return std::to_string(last_error_) + " " + text;
}

}  // namespace rp::tls
