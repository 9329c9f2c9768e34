// core/tls_client.cc: client-side TLS over memory I/O (see tls_client.h).
#include "core/tls_client.h"

// wolfSSL's build options must come before any other wolfSSL header.
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/ecc.h>

#include <algorithm>
#include <cstring>

#include "core/assert.h"

namespace rp::tls {
namespace {

// wolfSSL counts Init/Cleanup calls: ours are balanced (Cleanup at exit), whatever
// core/tls.cc does with its own.
struct LibraryUse {
    LibraryUse() { wolfSSL_Init(); }
    ~LibraryUse() { wolfSSL_Cleanup(); }
};

// With FP_ECC wolfCrypt keeps a per-thread fixed-point cache that only wc_ecc_fp_free on the
// same thread frees; an ECDHE handshake on a shard thread fills it.
struct ThreadEcc {
    ~ThreadEcc() {
#ifdef FP_ECC
        wc_ecc_fp_free();
#endif
    }
};

void library_use() {
    static LibraryUse library;
    thread_local ThreadEcc ecc;
    (void)ecc;
}

}  // namespace

Result<std::shared_ptr<TlsClientContext>> TlsClientContext::create(const TlsClientOptions& options,
                                                                   std::string* error) {
    RP_ASSERT(error != nullptr);
    library_use();
    std::shared_ptr<TlsClientContext> context(new TlsClientContext());
    context->ctx_ = wolfSSL_CTX_new(wolfSSLv23_client_method());
    if (context->ctx_ == nullptr) {
        *error = "wolfSSL_CTX_new (client) failed";
        return Status::tls;
    }
    const int version = options.min_version >= 13 ? WOLFSSL_TLSV1_3 : WOLFSSL_TLSV1_2;
    if (wolfSSL_CTX_SetMinVersion(context->ctx_, version) != WOLFSSL_SUCCESS) {
        *error = "TLS minimum version refused";
        return Status::tls;
    }
    if (!options.groups.empty() && groups_apply(context->ctx_, options.groups) != Status::ok) {
        *error = "wolfSSL refused the TLS groups";
        return Status::tls;
    }
    context->verify_ = options.mode == TlsClientMode::verify;
    if (!context->verify_) {
        // Opportunistic (RFC 7435): any certificate; encryption against passive listeners.
        wolfSSL_CTX_set_verify(context->ctx_, WOLFSSL_VERIFY_NONE, nullptr);
        return context;
    }
    const int loaded = options.ca_file.empty()
                           ? wolfSSL_CTX_load_verify_locations(context->ctx_, nullptr, "/etc/ssl/certs")
                           : wolfSSL_CTX_load_verify_locations(context->ctx_, options.ca_file.c_str(), nullptr);
    if (loaded != WOLFSSL_SUCCESS) {
        *error = "cannot load CA certificates from " +
                 (options.ca_file.empty() ? std::string("/etc/ssl/certs") : options.ca_file);
        return Status::tls;
    }
    wolfSSL_CTX_set_verify(context->ctx_, WOLFSSL_VERIFY_PEER, nullptr);
    return context;
}

TlsClientContext::~TlsClientContext() {
    if (ctx_ != nullptr) wolfSSL_CTX_free(ctx_);
}

std::unique_ptr<TlsClientStream> TlsClientStream::connect(
    const std::shared_ptr<const TlsClientContext>& context, TlsSink& sink,
    const std::string& server_name) {
    RP_ASSERT(context != nullptr);
    library_use();
    std::unique_ptr<TlsClientStream> stream(new TlsClientStream());
    stream->context_ = context;
    stream->sink_ = &sink;
    stream->ssl_ = wolfSSL_new(context->native());
    if (stream->ssl_ == nullptr) return nullptr;
    wolfSSL_SSLSetIORecv(stream->ssl_, &TlsClientStream::on_recv);
    wolfSSL_SSLSetIOSend(stream->ssl_, &TlsClientStream::on_send);
    wolfSSL_SetIOReadCtx(stream->ssl_, stream.get());
    wolfSSL_SetIOWriteCtx(stream->ssl_, stream.get());
    if (!server_name.empty()) {
        // RFC 6066 3: SNI carries a host name, never an address literal.
        const bool literal = server_name.find_first_not_of("0123456789.:[]") == std::string::npos;
        if (!literal) {
            (void)wolfSSL_UseSNI(stream->ssl_, WOLFSSL_SNI_HOST_NAME, server_name.data(),
                                 static_cast<unsigned short>(std::min<std::size_t>(server_name.size(), 255)));
        }
        if (context->verify() && wolfSSL_check_domain_name(stream->ssl_, server_name.c_str()) != WOLFSSL_SUCCESS) {
            return nullptr;
        }
    }
    return stream;
}

TlsClientStream::~TlsClientStream() {
    if (ssl_ != nullptr) wolfSSL_free(ssl_);
}

int TlsClientStream::on_recv(WOLFSSL* /*ssl*/, char* buf, int bytes, void* self) {
    auto* stream = static_cast<TlsClientStream*>(self);
    RP_ASSERT(bytes >= 0);
    RP_ASSERT(stream->input_consumed_ <= stream->input_.size());
    const std::size_t left = stream->input_.size() - stream->input_consumed_;
    if (left == 0) return WOLFSSL_CBIO_ERR_WANT_READ;
    const std::size_t count = std::min<std::size_t>(left, static_cast<std::size_t>(bytes));
    std::memcpy(buf, stream->input_.data() + stream->input_consumed_, count);
    stream->input_consumed_ += count;  // bounds: count <= left.
    return static_cast<int>(count);
}

int TlsClientStream::on_send(WOLFSSL* /*ssl*/, char* buf, int bytes, void* self) {
    auto* stream = static_cast<TlsClientStream*>(self);
    RP_ASSERT(bytes >= 0);
    const std::span<const std::byte> out(reinterpret_cast<const std::byte*>(buf),
                                         static_cast<std::size_t>(bytes));
    if (!stream->sink_->tls_send(out)) return WOLFSSL_CBIO_ERR_CONN_CLOSE;
    return bytes;
}

TlsClientStream::Step TlsClientStream::handshake() {
    RP_ASSERT(!established_);
    const int r = wolfSSL_connect(ssl_);
    if (r == WOLFSSL_SUCCESS) {
        established_ = true;
        return Step::done;
    }
    const int e = wolfSSL_get_error(ssl_, r);
    if (e == WOLFSSL_ERROR_WANT_READ || e == WOLFSSL_ERROR_WANT_WRITE) return Step::want_input;
    last_error_ = e;
    return Step::failed;
}

TlsClientStream::ReadResult TlsClientStream::read(std::span<std::byte> plain) {
    RP_ASSERT(established_);
    RP_ASSERT(!plain.empty());
    const int capacity = static_cast<int>(std::min<std::size_t>(plain.size(), 1u << 30));
    const int r = wolfSSL_read(ssl_, plain.data(), capacity);
    if (r > 0) {
        RP_ASSERT(r <= capacity);
        return {Step::done, static_cast<std::size_t>(r)};
    }
    const int e = wolfSSL_get_error(ssl_, r);
    if (e == WOLFSSL_ERROR_WANT_READ || e == WOLFSSL_ERROR_WANT_WRITE) return {Step::want_input, 0};
    if (e == WOLFSSL_ERROR_ZERO_RETURN) return {Step::closed, 0};
    last_error_ = e;
    return {Step::failed, 0};
}

Status TlsClientStream::write(std::span<const std::byte> plain) {
    RP_ASSERT(established_);
    while (!plain.empty()) {
        const int count = static_cast<int>(std::min<std::size_t>(plain.size(), 1u << 20));
        const int r = wolfSSL_write(ssl_, plain.data(), count);
        if (r <= 0) {
            last_error_ = wolfSSL_get_error(ssl_, r);
            return Status::tls;
        }
        plain = plain.subspan(static_cast<std::size_t>(r));
    }
    return Status::ok;
}

void TlsClientStream::shutdown() {
    if (established_) wolfSSL_shutdown(ssl_);
}

std::string_view TlsClientStream::version() const { return wolfSSL_get_version(ssl_); }

std::string_view TlsClientStream::cipher() const {
    const char* name = wolfSSL_get_cipher_name(ssl_);
    return name != nullptr ? name : "";
}

std::string TlsClientStream::last_error() const {
    char text[WOLFSSL_MAX_ERROR_SZ] = {};
    wolfSSL_ERR_error_string_n(static_cast<unsigned long>(last_error_), text, sizeof(text));
    return text;
}

}  // namespace rp::tls
