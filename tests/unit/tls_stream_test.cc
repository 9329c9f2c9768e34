// tests/unit/tls_stream_test.cc: core/tls.h over memory, against a wolfSSL client.
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <string>

#include "core/tls.h"

namespace rp::tls {
namespace {

// The server's ciphertext goes here; the client reads it.
struct Pipe final : TlsSink {
    std::string bytes;
    bool refuse = false;
    bool tls_send(std::span<const std::byte> data) override {
        if (refuse) return false;
        bytes.append(reinterpret_cast<const char*>(data.data()), data.size());
        return true;
    }
};

// A wolfSSL client over two strings.
struct Client {
    WOLFSSL_CTX* ctx = nullptr;
    WOLFSSL* ssl = nullptr;
    std::string in;   // From the server.
    std::string out;  // To the server.

    explicit Client(int version = 0) {
        ctx = wolfSSL_CTX_new(version == 12   ? wolfTLSv1_2_client_method()
                              : version == 13 ? wolfTLSv1_3_client_method()
                                              : wolfSSLv23_client_method());
        wolfSSL_CTX_set_verify(ctx, WOLFSSL_VERIFY_NONE, nullptr);
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
    ~Client() {
        wolfSSL_free(ssl);
        wolfSSL_CTX_free(ctx);
    }
    int connect() { return wolfSSL_connect(ssl); }
    void write(std::string_view text) {
        ASSERT_EQ(wolfSSL_write(ssl, text.data(), static_cast<int>(text.size())),
                  static_cast<int>(text.size()));
    }
    std::string read_all() {
        std::string result;
        char buffer[4096];
        for (int i = 0; i < 100; ++i) {
            int n = wolfSSL_read(ssl, buffer, sizeof(buffer));
            if (n <= 0) break;
            result.append(buffer, static_cast<std::size_t>(n));
        }
        return result;
    }
};

class TlsStreamTest : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        folder_ = std::filesystem::temp_directory_path() /
                  ("rp-tls-test-" + std::to_string(getpid()));
        std::filesystem::create_directories(folder_);
        std::string error;
        ASSERT_EQ(self_signed_make(folder_ / "cert.pem", folder_ / "key.pem", "mail.example.test",
                                   &error),
                  Status::ok)
            << error;
        auto certificate = certificate_load(folder_ / "cert.pem", folder_ / "key.pem", &error);
        ASSERT_TRUE(certificate.ok()) << error;
        certificate_ = new TlsCertificate(*certificate);
    }
    static void TearDownTestSuite() {
        delete certificate_;
        std::filesystem::remove_all(folder_);
    }

    std::shared_ptr<const TlsContext> context(unsigned min_version = 12) {
        TlsMaterial material;
        material.certificates.push_back(*certificate_);
        material.min_version = min_version;
        std::string error;
        auto created = TlsContext::create(material, &error);
        EXPECT_TRUE(created.ok()) << error;
        return *created;
    }

    // Runs the handshake to the end, moving bytes between the two, `chunk` bytes at a time.
    static bool handshake(TlsStream& server, Pipe& pipe, Client& client, std::size_t chunk) {
        for (int round = 0; round < 10000; ++round) {
            client.connect();
            client.in += pipe.bytes;
            pipe.bytes.clear();
            std::string input = client.out.substr(0, chunk);
            client.out.erase(0, input.size());
            if (!server.established()) {
                server.set_input(std::as_bytes(std::span(input.data(), input.size())));
                auto step = server.handshake();
                if (step == TlsStream::Step::failed) return false;
                EXPECT_EQ(server.input_consumed(), input.size());
            } else if (!input.empty()) {
                client.out.insert(0, input);  // Application data: for the caller.
            }
            if (server.established() && wolfSSL_is_init_finished(client.ssl)) return true;
        }
        return false;
    }

    // Decrypts everything in `cipher`, one call per `chunk` bytes.
    static std::string read_all(TlsStream& server, std::string cipher, std::size_t chunk) {
        std::string plain;
        std::byte buffer[16384];
        for (int round = 0; round < 100000; ++round) {
            std::string input = cipher.substr(0, chunk);
            server.set_input(std::as_bytes(std::span(input.data(), input.size())));
            auto result = server.read(buffer);
            cipher.erase(0, server.input_consumed());
            if (result.step == TlsStream::Step::done) {
                plain.append(reinterpret_cast<const char*>(buffer), result.bytes);
                continue;
            }
            EXPECT_EQ(result.step, TlsStream::Step::want_input);
            if (cipher.empty()) break;
        }
        return plain;
    }

    static inline std::filesystem::path folder_;
    static inline TlsCertificate* certificate_ = nullptr;
};

// Proves a TLS 1.3 and a TLS 1.2 handshake complete over memory, and data flows both ways.
TEST_F(TlsStreamTest, HandshakeAndDataBothVersions) {
    for (int version : {12, 13}) {
        Pipe pipe;
        Client client(version);
        auto server = TlsStream::server(context(), pipe);
        ASSERT_NE(server, nullptr);
        ASSERT_TRUE(handshake(*server, pipe, client, 1u << 20)) << version;
        EXPECT_EQ(server->version(), version == 13 ? "TLSv1.3" : "TLSv1.2");
        client.write("EHLO client.test\r\n");
        EXPECT_EQ(read_all(*server, std::move(client.out), 1u << 20), "EHLO client.test\r\n");
        client.out.clear();
        std::string reply = "250 ok\r\n";
        ASSERT_EQ(server->write(std::as_bytes(std::span(reply.data(), reply.size()))), Status::ok);
        client.in += pipe.bytes;
        pipe.bytes.clear();
        EXPECT_EQ(client.read_all(), reply);
    }
}

// Proves many handshakes on one context all succeed (a ticket lifetime above wolfSSL's key
// lifetime once broke every handshake after the first), with tickets on and off.
TEST_F(TlsStreamTest, ManyHandshakesOneContext) {
    for (std::uint32_t lifetime : {0u, 3600u, 7200u}) {
        TlsMaterial material;
        material.certificates.push_back(*certificate_);
        material.ticket_lifetime_s = lifetime;
        std::string error;
        auto shared = TlsContext::create(material, &error);
        ASSERT_TRUE(shared.ok()) << error;
        for (int i = 0; i < 6; ++i) {
            Pipe pipe;
            Client client(i % 2 == 0 ? 12 : 13);
            auto server = TlsStream::server(*shared, pipe);
            ASSERT_TRUE(handshake(*server, pipe, client, 1u << 20)) << lifetime << " " << i;
        }
    }
}

// Proves the trickle case: the handshake and the records arrive one byte at a time, and
// every byte offered is consumed (wolfSSL keeps partial records itself).
TEST_F(TlsStreamTest, TrickleOneByteAtATime) {
    Pipe pipe;
    Client client;
    auto server = TlsStream::server(context(), pipe);
    ASSERT_TRUE(handshake(*server, pipe, client, 1));
    client.write("hello, one byte at a time\r\n");
    EXPECT_EQ(read_all(*server, std::move(client.out), 1), "hello, one byte at a time\r\n");
}

// Proves the client's Finished and its first application data in ONE input (what
// real clients send) complete the handshake and the data is read afterwards.
TEST_F(TlsStreamTest, FinishedAndDataTogether) {
    for (int version : {12, 13}) {
        Pipe pipe;
        Client client(version);
        auto server = TlsStream::server(context(), pipe);
        bool written = false;
        for (int round = 0; round < 100 && !server->established(); ++round) {
            int r = client.connect();
            if (r == WOLFSSL_SUCCESS && !written) {
                client.write("EHLO x\r\n");
                written = true;
            }
            server->set_input(std::as_bytes(std::span(client.out.data(), client.out.size())));
            auto step = server->handshake();
            ASSERT_NE(step, TlsStream::Step::failed) << version << " " << server->last_error();
            // At the end of the handshake wolfSSL stops after the Finished record: the
            // application data behind it stays in the input for read().
            if (step == TlsStream::Step::want_input) {
                ASSERT_EQ(server->input_consumed(), client.out.size());
            }
            client.out.erase(0, server->input_consumed());
            client.in += pipe.bytes;
            pipe.bytes.clear();
        }
        ASSERT_TRUE(server->established());
        if (!written) {
            // TLS 1.2: the client finishes only after the server's Finished.
            client.in += pipe.bytes;
            ASSERT_EQ(client.connect(), WOLFSSL_SUCCESS);
            client.write("EHLO x\r\n");
        }
        EXPECT_EQ(read_all(*server, std::move(client.out), 1u << 20), "EHLO x\r\n") << version;
    }
}

// Proves garbage instead of a ClientHello fails the handshake (no crash, no hang).
TEST_F(TlsStreamTest, GarbageFails) {
    for (std::string garbage : {std::string("EHLO not tls\r\n"), std::string(300, '\x16'),
                                std::string("\x16\x03\x01\x00\x05hello", 10)}) {
        Pipe pipe;
        auto server = TlsStream::server(context(), pipe);
        // Some garbage fails at once; some looks like a record header and waits for the
        // rest (the driver's handshake timeout ends that). More garbage always fails.
        TlsStream::Step step = TlsStream::Step::want_input;
        for (int round = 0; round < 100 && step == TlsStream::Step::want_input; ++round) {
            server->set_input(std::as_bytes(std::span(garbage.data(), garbage.size())));
            step = server->handshake();
        }
        EXPECT_EQ(step, TlsStream::Step::failed) << server->last_error();
    }
}

// Proves a truncated ClientHello only asks for more input.
TEST_F(TlsStreamTest, TruncatedClientHelloWants) {
    Pipe pipe;
    Client client;
    client.connect();
    auto server = TlsStream::server(context(), pipe);
    std::string half = client.out.substr(0, client.out.size() / 2);
    server->set_input(std::as_bytes(std::span(half.data(), half.size())));
    EXPECT_EQ(server->handshake(), TlsStream::Step::want_input);
    EXPECT_FALSE(server->established());
}

// Proves min_version 1.3 refuses a TLS 1.2-only client.
TEST_F(TlsStreamTest, MinVersionRefusesOlder) {
    Pipe pipe;
    Client client(12);
    auto server = TlsStream::server(context(13), pipe);
    EXPECT_FALSE(handshake(*server, pipe, client, 1u << 20));
}

// Makes `client` offer only `group` (wolfSSL_set_groups is for TLS 1.3 only).
bool offer_only(Client& client, int version, int group) {
    if (version == 13) {
        int offered[] = {group};
        return wolfSSL_set_groups(client.ssl, offered, 1) == WOLFSSL_SUCCESS;
    }
    return wolfSSL_UseSupportedCurve(client.ssl, static_cast<word16>(group)) == WOLFSSL_SUCCESS;
}

// Proves group names parse in order, OpenSSL's spellings and any case included, and that an
// unknown or repeated name is refused with a message.
TEST(TlsGroups, Parse) {
    std::string error;
    auto groups = groups_parse({"X25519", "p-256", "secp384r1", "prime256v1x"}, &error);
    EXPECT_FALSE(groups.ok());
    EXPECT_NE(error.find("prime256v1x"), std::string::npos);
    groups = groups_parse({"X25519", "p-256", "secp384r1", "P-521"}, &error);
    ASSERT_TRUE(groups.ok()) << error;
    EXPECT_EQ(*groups, (std::vector<int>{WOLFSSL_ECC_X25519, WOLFSSL_ECC_SECP256R1,
                                         WOLFSSL_ECC_SECP384R1, WOLFSSL_ECC_SECP521R1}));
    EXPECT_FALSE(groups_parse({"P-256", "prime256v1"}, &error).ok());
    EXPECT_NE(error.find("twice"), std::string::npos);
    EXPECT_EQ(group_name(WOLFSSL_ECC_SECP256R1), "P-256");
    EXPECT_TRUE(groups_parse(groups_default, &error).ok());
}

// Proves the server takes the client's key share of any listed group as it is: X25519 and
// P-256 clients both finish in one round trip (two server calls, no HelloRetryRequest).
TEST_F(TlsStreamTest, KeyShareOfEachListedGroup) {
    TlsMaterial material;
    material.certificates.push_back(*certificate_);
    std::string error;
    material.groups = *groups_parse(groups_default, &error);
    auto shared = TlsContext::create(material, &error);
    ASSERT_TRUE(shared.ok()) << error;
    for (int version : {12, 13}) {
        for (int group : {WOLFSSL_ECC_X25519, WOLFSSL_ECC_SECP256R1}) {
            Pipe pipe;
            Client client(version);
            ASSERT_TRUE(offer_only(client, version, group));
            auto server = TlsStream::server(*shared, pipe);
            // Whole flights: the ClientHello, then the client's Finished.
            ASSERT_EQ(client.connect(), WOLFSSL_FATAL_ERROR);
            for (int flight = 0; flight < 2; ++flight) {
                server->set_input(std::as_bytes(std::span(client.out.data(), client.out.size())));
                auto step = server->handshake();
                client.out.clear();
                ASSERT_NE(step, TlsStream::Step::failed) << version << " " << group;
                client.in += pipe.bytes;
                pipe.bytes.clear();
                (void)client.connect();
            }
            EXPECT_TRUE(server->established()) << version << " " << group;
            EXPECT_EQ(server->group(), group_name(group));
        }
    }
}

// Proves a client with none of the server's groups fails the handshake cleanly (an alert,
// Step::failed), in TLS 1.3 and TLS 1.2 (ECDHE curves).
TEST_F(TlsStreamTest, UnlistedGroupFails) {
    TlsMaterial material;
    material.certificates.push_back(*certificate_);
    std::string error;
    material.groups = *groups_parse({"X25519"}, &error);
    auto shared = TlsContext::create(material, &error);
    ASSERT_TRUE(shared.ok()) << error;
    for (int version : {12, 13}) {
        Pipe pipe;
        Client client(version);
        ASSERT_TRUE(offer_only(client, version, WOLFSSL_ECC_SECP256R1));
        auto server = TlsStream::server(*shared, pipe);
        EXPECT_FALSE(handshake(*server, pipe, client, 1u << 20)) << version;
        if (version == 12) {  // TLS 1.3 fails inside wolfSSL (no shared group).
            EXPECT_NE(server->last_error().find("tls.groups"), std::string::npos);
        }
    }
}

// Proves the default cipher order is the server's and puts ChaCha20-Poly1305 first (a
// wolfSSL client lists AES-128-GCM first), and tls.ciphers overrides it.
TEST_F(TlsStreamTest, ServerPrefersChaCha) {
    for (int version : {12, 13}) {
        Pipe pipe;
        Client client(version);
        auto server = TlsStream::server(context(), pipe);
        ASSERT_TRUE(handshake(*server, pipe, client, 1u << 20)) << version;
        EXPECT_NE(server->cipher().find("CHACHA20-POLY1305"), std::string_view::npos)
            << version << " " << server->cipher();
    }
    TlsMaterial material;
    material.certificates.push_back(*certificate_);
    material.ciphers = "TLS13-AES128-GCM-SHA256:ECDHE-ECDSA-AES128-GCM-SHA256";
    std::string error;
    auto shared = TlsContext::create(material, &error);
    ASSERT_TRUE(shared.ok()) << error;
    Pipe pipe;
    Client client(13);
    auto server = TlsStream::server(*shared, pipe);
    ASSERT_TRUE(handshake(*server, pipe, client, 1u << 20));
    EXPECT_EQ(server->cipher(), "TLS13-AES128-GCM-SHA256");
}

// Proves a bad key or certificate is refused with a message, not a crash.
TEST_F(TlsStreamTest, BadMaterialRefused) {
    TlsMaterial material;
    material.certificates.push_back({"not a cert", certificate_->key_pem, {}, {}});
    std::string error;
    EXPECT_FALSE(TlsContext::create(material, &error).ok());
    EXPECT_FALSE(error.empty());
    material.certificates[0] = {certificate_->cert_pem, "not a key", {}, {}};
    EXPECT_FALSE(TlsContext::create(material, &error).ok());
    material.certificates.clear();
    EXPECT_FALSE(TlsContext::create(material, &error).ok());
}

// Proves a close_notify from the peer reads as Step::closed.
TEST_F(TlsStreamTest, CloseNotify) {
    Pipe pipe;
    Client client;
    auto server = TlsStream::server(context(), pipe);
    ASSERT_TRUE(handshake(*server, pipe, client, 1u << 20));
    wolfSSL_shutdown(client.ssl);
    std::byte buffer[256];
    server->set_input(std::as_bytes(std::span(client.out.data(), client.out.size())));
    EXPECT_EQ(server->read(buffer).step, TlsStream::Step::closed);
}

// A client's session after a full handshake with `server` (the ticket read), or null.
WOLFSSL_SESSION* session_after(TlsStream& server, Pipe& pipe, Client& client) {
    // TLS 1.3 sends the ticket after the handshake: let the client read it.
    client.in += pipe.bytes;
    pipe.bytes.clear();
    (void)client.read_all();
    (void)server;
    return wolfSSL_get1_session(client.ssl);
}

// Whether a client offering `session` resumes on `context`.
bool resumes(const std::shared_ptr<const TlsContext>& context, WOLFSSL_SESSION* session,
             int version) {
    Pipe pipe;
    Client client(version);
    EXPECT_EQ(wolfSSL_UseSessionTicket(client.ssl), WOLFSSL_SUCCESS);
    EXPECT_EQ(wolfSSL_set_session(client.ssl, session), WOLFSSL_SUCCESS);
    auto server = TlsStream::server(context, pipe);
    EXPECT_NE(server, nullptr);
    for (int round = 0; round < 100; ++round) {
        client.connect();
        client.in += pipe.bytes;
        pipe.bytes.clear();
        if (!server->established()) {
            server->set_input(std::as_bytes(std::span(client.out.data(), client.out.size())));
            if (server->handshake() == TlsStream::Step::failed) return false;
            client.out.erase(0, server->input_consumed());
        }
        if (server->established() && wolfSSL_is_init_finished(client.ssl)) break;
    }
    EXPECT_TRUE(server->established());
    return server->resumed();
}

// Proves session tickets resume across contexts that share TicketKeys (one per shard in the
// daemon), for TLS 1.3 and 1.2; a context with other keys makes a full handshake; after one
// rotation the old key still decrypts, after two it does not.
TEST_F(TlsStreamTest, TicketsResumeAcrossContextsSharingKeys) {
    auto keys = ticket_keys_rotate(nullptr);
    ASSERT_TRUE(keys.ok());
    auto make = [&](std::shared_ptr<const TicketKeys> ticket_keys) {
        TlsMaterial material;
        material.certificates.push_back(*certificate_);
        material.ticket_keys = std::move(ticket_keys);
        std::string error;
        auto created = TlsContext::create(material, &error);
        EXPECT_TRUE(created.ok()) << error;
        return std::shared_ptr<const TlsContext>(*created);
    };
    auto shard0 = make(*keys);
    auto shard1 = make(*keys);
    auto stranger = make(nullptr);  // Keys of its own.
    auto once = ticket_keys_rotate(keys->get());
    ASSERT_TRUE(once.ok());
    auto twice = ticket_keys_rotate(once->get());
    ASSERT_TRUE(twice.ok());
    auto rotated_once = make(*once);
    auto rotated_twice = make(*twice);
    for (int version : {13, 12}) {
        Pipe pipe;
        Client client(version);
        ASSERT_EQ(wolfSSL_UseSessionTicket(client.ssl), WOLFSSL_SUCCESS);  // TLS 1.2 asks.
        auto server = TlsStream::server(shard0, pipe);
        ASSERT_TRUE(handshake(*server, pipe, client, 1u << 20));
        EXPECT_FALSE(server->resumed());
        WOLFSSL_SESSION* session = session_after(*server, pipe, client);
        ASSERT_NE(session, nullptr);
        EXPECT_TRUE(resumes(shard1, session, version)) << version;
        EXPECT_TRUE(resumes(shard0, session, version)) << version;
        EXPECT_FALSE(resumes(stranger, session, version)) << version;
        EXPECT_TRUE(resumes(rotated_once, session, version)) << version;
        EXPECT_FALSE(resumes(rotated_twice, session, version)) << version;
        wolfSSL_SESSION_free(session);
    }
}

// The CN of the certificate a client was shown.
std::string peer_common_name(Client& client) {
    WOLFSSL_X509* peer = wolfSSL_get_peer_certificate(client.ssl);
    if (peer == nullptr) return "";
    char text[256] = {};
    wolfSSL_X509_NAME_get_text_by_NID(wolfSSL_X509_get_subject_name(peer), NID_commonName, text,
                                      sizeof(text));
    wolfSSL_X509_free(peer);
    return text;
}

// Proves certificate selection: SNI picks the certificate carrying the name (exact or
// "*." wildcard, any case); an unknown name or no SNI gets the listener's own certificate,
// else the default.
TEST_F(TlsStreamTest, CertificateBySniAndListener) {
    std::string error;
    TlsMaterial material;
    material.certificates.push_back(*certificate_);  // Default: mail.example.test.
    for (const char* host : {"mx.other.test", "submit.example.test"}) {
        std::string cert = (folder_ / (std::string(host) + ".pem")).string();
        std::string key = (folder_ / (std::string(host) + ".key")).string();
        ASSERT_EQ(self_signed_make(cert, key, host, &error), Status::ok) << error;
        auto loaded = certificate_load(cert, key, &error);
        ASSERT_TRUE(loaded.ok()) << error;
        material.certificates.push_back(*loaded);
    }
    material.certificates[1].server_names = {"mx.other.test", "*.wild.test"};
    material.certificates[2].listener_kinds = {"submission"};
    auto created = TlsContext::create(material, &error);
    ASSERT_TRUE(created.ok()) << error;
    std::shared_ptr<const TlsContext> context = *created;
    struct Case {
        const char* sni;
        const char* listener;
        const char* expected;
    };
    for (const Case& c : {Case{"mx.other.test", "mx", "mx.other.test"},
                          Case{"MX.Other.Test", "submission", "mx.other.test"},
                          Case{"a.wild.test", "mx", "mx.other.test"},
                          Case{"a.b.wild.test", "mx", "mail.example.test"},
                          Case{"unknown.test", "mx", "mail.example.test"},
                          Case{"unknown.test", "submission", "submit.example.test"},
                          Case{"", "submission", "submit.example.test"},
                          Case{"", "smtps", "mail.example.test"}}) {
        for (int version : {13, 12}) {
            Pipe pipe;
            Client client(version);
            if (*c.sni != 0) {
                ASSERT_EQ(wolfSSL_UseSNI(client.ssl, WOLFSSL_SNI_HOST_NAME, c.sni,
                                         static_cast<unsigned short>(std::strlen(c.sni))),
                          WOLFSSL_SUCCESS);
            }
            auto server = TlsStream::server(context, pipe, c.listener);
            ASSERT_TRUE(handshake(*server, pipe, client, 1u << 20)) << c.sni;
            EXPECT_EQ(peer_common_name(client), c.expected) << c.sni << " " << c.listener;
        }
    }
}

}  // namespace
}  // namespace rp::tls
