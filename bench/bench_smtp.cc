// bench/bench_smtp.cc: SMTP command parsing, line framing, DATA decoding, and whole
// pipelined transactions through the SmtpServer state machine (no I/O, a minimal host).
//
// Run: build/bench/bench_smtp --benchmark_min_time=1
#include <benchmark/benchmark.h>

#include <string>

#include "protocols/common/data_decoder.h"
#include "protocols/common/line_reader.h"
#include "protocols/smtp/smtp_command.h"
#include "protocols/smtp/smtp_server.h"

namespace {

using namespace rp::smtp;

std::span<const std::byte> bytes(std::string_view s) {
    return std::as_bytes(std::span<const char>(s.data(), s.size()));
}

// A host that does the least a real one must: a verdict, a queue id, count the bytes.
class BenchHost final : public SmtpHost {
public:
    SmtpServer* server = nullptr;
    std::uint64_t data_bytes = 0;
    std::uint64_t message_count = 0;

    RcptVerdict rcpt_verdict(const SmtpEnvelope&, const SmtpAddress& rcpt) override {
        return rcpt.domain() == "example.test" ? RcptVerdict::accept_local
                                               : RcptVerdict::relay_denied;
    }
    rp::Result<QueueId> message_begin(const SmtpEnvelope&) override {
        return QueueId::from("4F00000001");
    }
    void message_data(std::span<const std::byte> piece) override { data_bytes += piece.size(); }
    void message_end(const SmtpMessageInfo&) override {
        ++message_count;
        server->message_done(rp::Status::ok);
    }
    void message_abort() override {}
    std::int64_t now_unix_seconds() override { return 1'700'000'000; }
};

void BM_ParseMail(benchmark::State& state) {
    const std::string line = "MAIL FROM:<sender.name@example.net> SIZE=4096 BODY=8BITMIME";
    for (auto _ : state) {
        SmtpCommand c = parse_command(line);
        benchmark::DoNotOptimize(c);
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ParseMail);

void BM_ParseRcpt(benchmark::State& state) {
    const std::string line = "RCPT TO:<demo@example.test>";
    for (auto _ : state) {
        SmtpCommand c = parse_command(line);
        benchmark::DoNotOptimize(c);
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ParseRcpt);

void BM_ParseNoop(benchmark::State& state) {
    const std::string line = "NOOP";
    for (auto _ : state) {
        SmtpCommand c = parse_command(line);
        benchmark::DoNotOptimize(c);
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ParseNoop);

void BM_LineReader(benchmark::State& state) {
    std::string input;
    for (int i = 0; i < 64; ++i) input += "RCPT TO:<demo@example.test>\r\n";
    rp::protocols::LineReader reader(4096);
    for (auto _ : state) {
        auto in = bytes(input);
        while (!in.empty()) {
            const auto s = reader.next(in);
            benchmark::DoNotOptimize(s.text.data());
            in = in.subspan(s.consumed);
        }
    }
    state.SetItemsProcessed(state.iterations() * 64);
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * input.size()));
}
BENCHMARK(BM_LineReader);

std::string body_4k() {
    std::string body;
    while (body.size() < 4096 - 80) {
        body += "The quick brown fox jumps over the lazy dog, again and again and again.\r\n";
    }
    body += ".a stuffed line\r\n";
    body.resize(4096 - 2, 'x');
    body += "\r\n";
    return body;
}

void BM_DataDecoder4KiB(benchmark::State& state) {
    const std::string input = body_4k() + ".\r\n";
    rp::protocols::DataDecoder decoder;
    for (auto _ : state) {
        decoder.reset();
        auto in = bytes(input);
        std::size_t out = 0;
        while (!in.empty()) {
            const auto s = decoder.next(in);
            out += s.piece.size();
            in = in.subspan(s.consumed);
            if (s.end) break;
        }
        benchmark::DoNotOptimize(out);
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * input.size()));
}
BENCHMARK(BM_DataDecoder4KiB);

// One pipelined transaction (MAIL, RCPT x N, DATA, 4 KiB body, final dot) fed as one buffer
// to a session that already said EHLO; replies drained each time. Items = messages.
void BM_Transaction4KiB(benchmark::State& state) {
    const auto recipient_count = static_cast<int>(state.range(0));
    SmtpServerConfig config;
    config.hostname = "mail.example.test";
    SmtpSessionInfo session;
    session.client_address = "192.0.2.7";
    BenchHost host;
    SmtpServer server(config, host, session);
    host.server = &server;
    server.greet();
    std::string out;
    if (server.feed(bytes("EHLO client.example.net\r\n")) == 0) state.SkipWithError("ehlo");
    server.take_output(out);
    std::string input = "MAIL FROM:<sender@example.net> SIZE=4096\r\n";
    for (int i = 0; i < recipient_count; ++i) {
        input += "RCPT TO:<user" + std::to_string(i) + "@example.test>\r\n";
    }
    input += "DATA\r\n" + body_4k() + ".\r\n";
    for (auto _ : state) {
        const std::size_t used = server.feed(bytes(input));
        if (used != input.size()) state.SkipWithError("not all consumed");
        out.clear();
        server.take_output(out);
        benchmark::DoNotOptimize(out.data());
    }
    if (host.message_count != static_cast<std::uint64_t>(state.iterations())) {
        state.SkipWithError("messages lost");
    }
    state.SetItemsProcessed(state.iterations());
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * input.size()));
    server.connection_lost();
}
BENCHMARK(BM_Transaction4KiB)->Arg(1)->Arg(10);

}  // namespace

BENCHMARK_MAIN();
