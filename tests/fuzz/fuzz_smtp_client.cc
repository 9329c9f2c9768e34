// tests/fuzz/fuzz_smtp_client.cc: the SMTP client state machine on arbitrary server bytes.
//
// Invariants: never crash; once a transaction was started, it yields exactly one result
// with one reply per recipient, each a 2xx..5xx code; after closed() nothing more is sent.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "protocols/smtp/smtp_client.h"

namespace {
void check(bool ok) {
    if (!ok) std::abort();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace rp::smtp;
    SmtpClientConfig config;
    config.starttls = size > 0 && (data[0] & 1);
    SmtpClient client(config);
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    bool started = false;
    int results = 0;
    // Feed in pieces whose sizes come from the input, starting a transaction when ready.
    std::size_t at = 0;
    while (at < input.size()) {
        const std::size_t piece = 1 + static_cast<unsigned char>(input[at]) % 64;
        client.feed(input.substr(at, piece));
        at += piece;
        (void)client.take_output();
        if (client.wants_tls()) client.tls_started();
        if (auto r = client.take_result()) {
            ++results;
            check(r->size() == 2);
            for (const auto& reply : *r) check(reply.code >= 200 && reply.code <= 599);
        }
        if (client.ready() && !started) {
            SmtpClientMessage m;
            m.sender = "a@b.test";
            m.recipients = {"x@d.test", "y@d.test"};
            m.body = std::make_shared<const std::string>("Subject: s\r\n\r\n.body\r\n");
            client.send(m);
            started = true;
        }
        if (client.closed()) {
            check(client.take_output().empty());
            break;
        }
    }
    if (started && !client.closed() && client.transaction_running()) client.connection_lost();
    if (auto r = client.take_result()) ++results;
    check(!started || results == 1);
    return 0;
}
