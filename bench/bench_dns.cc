// bench/bench_dns.cc: the relay's pure pieces: DNS query build and answer parse (ldns), MX
// resolution logic, the SMTP client over one pipelined transaction, and body dot-stuffing.
//
// Run: build/bench/bench_dns --benchmark_min_time=1
#include <benchmark/benchmark.h>

#include <sys/socket.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "protocols/dns/dns_codec.h"
#include "protocols/smtp/mx_resolver.h"
#include "protocols/smtp/smtp_client.h"

namespace {

using namespace rp;

// An MX answer as a resolver sends it (two MX, name compression).
std::vector<std::uint8_t> mx_wire() {
    std::vector<std::uint8_t> w = {0x12, 0x34, 0x81, 0x80, 0, 1, 0, 2, 0, 0, 0, 0};
    auto name = [&w](const char* a, const char* b) {
        w.push_back(static_cast<std::uint8_t>(std::strlen(a)));
        w.insert(w.end(), a, a + std::strlen(a));
        w.push_back(static_cast<std::uint8_t>(std::strlen(b)));
        w.insert(w.end(), b, b + std::strlen(b));
        w.push_back(0);
    };
    name("example", "test");
    w.insert(w.end(), {0, 15, 0, 1});
    for (int i = 0; i < 2; ++i) {
        w.insert(w.end(), {0xc0, 0x0c, 0, 15, 0, 1, 0, 0, 0x0e, 0x10, 0, 8, 0,
                           static_cast<std::uint8_t>(10 * (i + 1)), 3, 'm', 'x',
                           static_cast<std::uint8_t>('1' + i), 0xc0, 0x0c});
    }
    return w;
}

void BM_DnsQueryBuild(benchmark::State& state) {
    const dns::DnsQuestion q{"example.test", dns::DnsType::mx};
    std::uint16_t id = 0;
    for (auto _ : state) {
        auto wire = dns::dns_query_build(q, ++id);
        benchmark::DoNotOptimize(wire);
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_DnsQueryBuild);

void BM_DnsAnswerParse(benchmark::State& state) {
    const auto wire = mx_wire();
    const dns::DnsQuestion q{"example.test", dns::DnsType::mx};
    for (auto _ : state) {
        auto answer = dns::dns_answer_parse(wire, q, 0x1234);
        if (!answer || answer->mx.size() != 2) state.SkipWithError("parse failed");
        benchmark::DoNotOptimize(answer);
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_DnsAnswerParse);

void BM_MxLookup(benchmark::State& state) {
    const dns::DnsQuestion q{"example.test", dns::DnsType::mx};
    const auto mx = *dns::dns_answer_parse(mx_wire(), q, 0x1234);
    dns::DnsAnswer a;
    a.rcode = dns::DnsRcode::noerror;
    a.ttl_s = 300;
    a.addresses.push_back({AF_INET, {127, 0, 0, 2}});
    smtp::MxSelf self;
    self.hostnames = {"mail.example.test"};
    std::uint64_t seed = 0;
    for (auto _ : state) {
        smtp::MxLookup lookup("example.test", self, ++seed);
        for (int round = 0; round < 3; ++round) {
            for (const auto& question : lookup.take_questions()) {
                lookup.answer(question, question.type == dns::DnsType::mx ? mx : a);
            }
        }
        if (lookup.result().outcome != smtp::MxOutcome::ready) state.SkipWithError("not ready");
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_MxLookup);

// One pipelined transaction of a 4 KiB message with 2 recipients on a reused connection.
void BM_SmtpClientTransaction(benchmark::State& state) {
    smtp::SmtpClientConfig config;
    smtp::SmtpClient client(config);
    client.feed("220 mx\r\n");
    client.feed("250-mx\r\n250-PIPELINING\r\n250-SIZE 100000000\r\n250 8BITMIME\r\n");
    (void)client.take_output();
    smtp::SmtpClientMessage message;
    message.sender = "a@example.test";
    message.recipients = {"x@remote.test", "y@remote.test"};
    std::string body = "Subject: bench\r\n\r\n";
    while (body.size() < 4096) body += "The quick brown fox jumps over the lazy dog, again.\r\n";
    message.body = std::make_shared<const std::string>(body);
    std::size_t bytes = 0;
    for (auto _ : state) {
        client.send(message);
        bytes += client.take_output().size();
        client.feed("250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n");
        bytes += client.take_output().size();
        client.feed("250 2.0.0 queued\r\n");
        auto result = client.take_result();
        if (!result || (*result)[0].code != 250) state.SkipWithError("transaction failed");
    }
    state.SetItemsProcessed(state.iterations());
    state.SetBytesProcessed(static_cast<std::int64_t>(bytes));
}
BENCHMARK(BM_SmtpClientTransaction);

void BM_BodyEncode(benchmark::State& state) {
    std::string body;
    while (body.size() < 1 << 20) body += "A line of text for the body.\r\n.leading dot line\r\n";
    std::string out;
    for (auto _ : state) {
        out.clear();
        smtp::smtp_body_encode(body, out);
        benchmark::DoNotOptimize(out.data());
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * body.size()));
}
BENCHMARK(BM_BodyEncode);

}  // namespace

BENCHMARK_MAIN();
