// tests/unit/tls_client_test.cc: core/tls_client against core/tls's server stream, in memory.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "core/tls.h"
#include "core/tls_client.h"

namespace rp::tls {
namespace {

struct Pipe final : TlsSink {
    std::string bytes;
    bool tls_send(std::span<const std::byte> out) override {
        bytes.append(reinterpret_cast<const char*>(out.data()), out.size());
        return true;
    }
};

struct Pair {
    Pipe to_server, to_client;
    std::unique_ptr<TlsStream> server;
    std::unique_ptr<TlsClientStream> client;
    TlsClientStream::Step client_step = TlsClientStream::Step::want_input;
    TlsStream::Step server_step = TlsStream::Step::want_input;

    // Runs both handshakes, moving bytes both ways, until neither side moves.
    void handshake() {
        client_step = client->handshake();
        for (int round = 0; round < 20; ++round) {
            if (!server->established() && server_step != TlsStream::Step::failed) {
                const std::string in = std::exchange(to_server.bytes, {});
                server->set_input(std::as_bytes(std::span(in.data(), in.size())));
                server_step = server->handshake();
            }
            if (!client->established() && client_step != TlsClientStream::Step::failed) {
                const std::string in = std::exchange(to_client.bytes, {});
                client->set_input(std::as_bytes(std::span(in.data(), in.size())));
                client_step = client->handshake();
            }
            if (to_server.bytes.empty() && to_client.bytes.empty()) break;
        }
    }
};

class TlsClientTest : public ::testing::Test {
protected:
    void SetUp() override {
        char pattern[] = "/tmp/rp-tls-client-XXXXXX";
        ASSERT_NE(::mkdtemp(pattern), nullptr);
        dir_ = pattern;
        std::string error;
        ASSERT_EQ(self_signed_make(dir_ + "/cert.pem", dir_ + "/key.pem", "mx.tls.test", &error),
                  Status::ok)
            << error;
        auto certificate = certificate_load(dir_ + "/cert.pem", dir_ + "/key.pem", &error);
        ASSERT_TRUE(certificate) << error;
        TlsMaterial material;
        material.certificates.push_back(std::move(certificate.value()));
        auto context = TlsContext::create(material, &error);
        ASSERT_TRUE(context) << error;
        server_context_ = std::move(context.value());
    }
    void TearDown() override { std::filesystem::remove_all(dir_); }

    Pair connect(const TlsClientOptions& options, const std::string& name) {
        Pair p;
        std::string error;
        auto context = TlsClientContext::create(options, &error);
        EXPECT_TRUE(context) << error;
        p.server = TlsStream::server(server_context_, p.to_client);
        p.client = TlsClientStream::connect(context.value(), p.to_server, name);
        return p;
    }

    std::string dir_;
    std::shared_ptr<const TlsContext> server_context_;
};

// Proves the opportunistic client ("may"): a self-signed certificate is accepted, TLS 1.3
// is negotiated, and application bytes go both ways through the records.
TEST_F(TlsClientTest, OpportunisticHandshakeAndData) {
    Pair p = connect(TlsClientOptions{}, "mx.tls.test");
    ASSERT_TRUE(p.server && p.client);
    p.handshake();
    ASSERT_TRUE(p.client->established()) << p.client->last_error();
    ASSERT_TRUE(p.server->established());
    EXPECT_EQ(p.client->version(), "TLSv1.3");
    const std::string hello = "EHLO mail.example.test\r\n";
    ASSERT_EQ(p.client->write(std::as_bytes(std::span(hello.data(), hello.size()))), Status::ok);
    std::string in = std::exchange(p.to_server.bytes, {});
    p.server->set_input(std::as_bytes(std::span(in.data(), in.size())));
    std::array<std::byte, 256> plain;
    auto r = p.server->read(plain);
    ASSERT_EQ(r.step, TlsStream::Step::done);
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(plain.data()), r.bytes), hello);
    const std::string reply = "250 mx.tls.test\r\n";
    ASSERT_EQ(p.server->write(std::as_bytes(std::span(reply.data(), reply.size()))), Status::ok);
    in = std::exchange(p.to_client.bytes, {});
    p.client->set_input(std::as_bytes(std::span(in.data(), in.size())));
    std::string got;
    for (;;) {  // A TLS 1.3 server may send tickets first: read until the data or nothing.
        auto c = p.client->read(plain);
        if (c.step != TlsClientStream::Step::done) break;
        got.append(reinterpret_cast<const char*>(plain.data()), c.bytes);
    }
    EXPECT_EQ(got, reply);
}

// Proves "verify": the self-signed certificate does not verify against the system CAs, so
// the handshake fails; with that certificate as the CA and the right name it succeeds; with
// a wrong name it fails.
TEST_F(TlsClientTest, VerifyChainAndName) {
    TlsClientOptions verify;
    verify.mode = TlsClientMode::verify;
    {
        Pair p = connect(verify, "mx.tls.test");
        ASSERT_TRUE(p.server && p.client);
        p.handshake();
        EXPECT_FALSE(p.client->established());
        EXPECT_EQ(p.client_step, TlsClientStream::Step::failed);
    }
    verify.ca_file = dir_ + "/cert.pem";
    std::string error;
    if (!TlsClientContext::create(verify, &error)) {
        GTEST_SKIP() << "wolfSSL refuses a non-CA certificate as trust anchor: " << error;
    }
    {
        Pair p = connect(verify, "mx.tls.test");
        ASSERT_TRUE(p.server && p.client);
        p.handshake();
        EXPECT_TRUE(p.client->established()) << p.client->last_error();
    }
    {
        Pair p = connect(verify, "other.test");
        ASSERT_TRUE(p.server);
        if (p.client) {  // Null is also a refusal (the name check could not be armed).
            p.handshake();
            EXPECT_FALSE(p.client->established());
        }
    }
}

}  // namespace
}  // namespace rp::tls
