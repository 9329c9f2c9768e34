// tools/bench/bench_tls.cc: wolfSSL client connections over memory buffers.
#include "tools/bench/bench_tls.h"

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/ecc.h>

#include <algorithm>
#include <cstring>

#include "core/assert.h"
#include "core/tls.h"

namespace rp::bench {
namespace {

// wolfSSL_Init once, and wolfSSL_Cleanup at exit (its global state: RNG, session cache).
struct Library {
    Library() { wolfSSL_Init(); }
    ~Library() { wolfSSL_Cleanup(); }
};

// With FP_ECC (Debian's build) wolfCrypt keeps a per-thread fixed-point cache that only
// wc_ecc_fp_free on the same thread frees; every bench thread that handshakes fills it.
struct ThreadEcc {
    ~ThreadEcc() {
#ifdef FP_ECC
        wc_ecc_fp_free();
#endif
    }
};

void tls_init_once() {
    static Library library;
    thread_local ThreadEcc ecc;
    (void)ecc;
}

}  // namespace

std::unique_ptr<ClientTlsContext> ClientTlsContext::create(const std::string& ca_file,
                                                           const std::vector<std::string>& groups,
                                                           std::string* error) {
    tls_init_once();
    std::unique_ptr<ClientTlsContext> context(new ClientTlsContext());
    context->ctx_ = wolfSSL_CTX_new(wolfSSLv23_client_method());
    if (context->ctx_ == nullptr) {
        *error = "wolfSSL_CTX_new failed";
        return nullptr;
    }
    if (!groups.empty()) {
        auto ids = rp::tls::groups_parse(groups, error);
        if (!ids) return nullptr;
        if (rp::tls::groups_apply(context->ctx_, ids.value()) != Status::ok) {
            *error = "wolfSSL refused the groups";
            return nullptr;
        }
    }
    if (ca_file.empty()) {
        wolfSSL_CTX_set_verify(context->ctx_, WOLFSSL_VERIFY_NONE, nullptr);
    } else {
        if (wolfSSL_CTX_load_verify_locations(context->ctx_, ca_file.c_str(), nullptr) !=
            WOLFSSL_SUCCESS) {
            *error = "cannot load CA file " + ca_file;
            return nullptr;
        }
        wolfSSL_CTX_set_verify(context->ctx_, WOLFSSL_VERIFY_PEER, nullptr);
    }
    return context;
}

ClientTlsContext::~ClientTlsContext() {
    if (ctx_ != nullptr) wolfSSL_CTX_free(ctx_);
}

std::unique_ptr<ClientTls> ClientTls::create(const ClientTlsContext& context,
                                             std::string_view server_name) {
    tls_init_once();  // The handshake runs on this thread: its ECC cache is freed at exit.
    std::unique_ptr<ClientTls> tls(new ClientTls());
    tls->ssl_ = wolfSSL_new(context.native());
    if (tls->ssl_ == nullptr) return nullptr;
    wolfSSL_SSLSetIORecv(tls->ssl_, &ClientTls::on_recv);
    wolfSSL_SSLSetIOSend(tls->ssl_, &ClientTls::on_send);
    wolfSSL_SetIOReadCtx(tls->ssl_, tls.get());
    wolfSSL_SetIOWriteCtx(tls->ssl_, tls.get());
    if (!server_name.empty()) {
        // bounds: a host name from the command line, at most a few hundred bytes.
        wolfSSL_UseSNI(tls->ssl_, WOLFSSL_SNI_HOST_NAME, server_name.data(),
                       static_cast<unsigned short>(std::min<std::size_t>(server_name.size(), 255)));
    }
    return tls;
}

ClientTls::~ClientTls() {
    if (ssl_ != nullptr) wolfSSL_free(ssl_);
}

void ClientTls::feed(std::string_view cipher) {
    if (input_start_ == input_.size()) {
        input_.clear();
        input_start_ = 0;
    } else if (input_start_ > 0 && input_start_ * 2 >= input_.size()) {
        input_.erase(0, input_start_);
        input_start_ = 0;
    }
    input_.append(cipher);
}

int ClientTls::on_recv(WOLFSSL* /*ssl*/, char* buf, int bytes, void* self) {
    auto* tls = static_cast<ClientTls*>(self);
    RP_ASSERT(bytes >= 0);
    RP_ASSERT(tls->input_start_ <= tls->input_.size());
    const std::size_t left = tls->input_.size() - tls->input_start_;
    if (left == 0) return WOLFSSL_CBIO_ERR_WANT_READ;
    const std::size_t count = std::min<std::size_t>(left, static_cast<std::size_t>(bytes));
    std::memcpy(buf, tls->input_.data() + tls->input_start_, count);
    tls->input_start_ += count;  // bounds: count <= left.
    return static_cast<int>(count);
}

int ClientTls::on_send(WOLFSSL* /*ssl*/, char* buf, int bytes, void* self) {
    auto* tls = static_cast<ClientTls*>(self);
    RP_ASSERT(bytes >= 0);
    tls->output_.append(buf, static_cast<std::size_t>(bytes));
    return bytes;
}

ClientTls::Step ClientTls::handshake() {
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

ClientTls::ReadResult ClientTls::read(char* plain, std::size_t capacity) {
    RP_ASSERT(established_);
    RP_ASSERT(capacity > 0);
    const int limit = static_cast<int>(std::min<std::size_t>(capacity, 1u << 30));
    const int r = wolfSSL_read(ssl_, plain, limit);
    if (r > 0) return {Step::done, static_cast<std::size_t>(r)};
    const int e = wolfSSL_get_error(ssl_, r);
    if (e == WOLFSSL_ERROR_WANT_READ || e == WOLFSSL_ERROR_WANT_WRITE) {
        return {Step::want_input, 0};
    }
    if (e == WOLFSSL_ERROR_ZERO_RETURN) return {Step::closed, 0};
    last_error_ = e;
    return {Step::failed, 0};
}

Status ClientTls::write(std::string_view plain) {
    RP_ASSERT(established_);
    while (!plain.empty()) {
        const int count = static_cast<int>(std::min<std::size_t>(plain.size(), 1u << 20));
        const int r = wolfSSL_write(ssl_, plain.data(), count);
        if (r <= 0) {
            last_error_ = wolfSSL_get_error(ssl_, r);
            return Status::tls;
        }
        plain.remove_prefix(static_cast<std::size_t>(r));
    }
    return Status::ok;
}

std::string ClientTls::last_error() const {
    char text[WOLFSSL_MAX_ERROR_SZ] = {};
    wolfSSL_ERR_error_string_n(static_cast<unsigned long>(last_error_), text, sizeof(text));
    return text;
}

}  // namespace rp::bench
