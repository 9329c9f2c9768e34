// bench/bench_imap.cc: IMAP command framing and parsing, FETCH 1:* FLAGS response generation
// over 10,000 messages through the ImapServer state machine (a minimal synchronous host), and
// MIME parsing of a 4 KiB message.
//
// Run: build/bench/bench_imap --benchmark_min_time=1
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "protocols/imap/imap_mime.h"
#include "protocols/imap/imap_parser.h"
#include "protocols/imap/imap_server.h"

namespace {

using namespace rp::imap;

std::span<const std::byte> bytes(std::string_view s) {
    return std::as_bytes(std::span<const char>(s.data(), s.size()));
}

void BM_ParseFetch(benchmark::State& state) {
    const std::string line =
        "a17 UID FETCH 1:*,5 (UID FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (From To Subject Date)])";
    ImapCommand c;
    for (auto _ : state) {
        benchmark::DoNotOptimize(parse_command(line, c));
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ParseFetch);

void BM_ParseSearch(benchmark::State& state) {
    const std::string line = "a18 UID SEARCH RETURN (COUNT) UNSEEN SINCE 1-Feb-2024 OR FROM alice SUBJECT report";
    ImapCommand c;
    for (auto _ : state) {
        benchmark::DoNotOptimize(parse_command(line, c));
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ParseSearch);

// Framing of pipelined commands in one buffer (zero copy) plus parsing each.
void BM_ReadAndParsePipelined(benchmark::State& state) {
    std::string input;
    for (int i = 0; i < 100; ++i) input += "a" + std::to_string(i) + " UID STORE 1:5 +FLAGS.SILENT (\\Seen)\r\n";
    ImapCommand c;
    for (auto _ : state) {
        ImapReader reader(65536);
        std::size_t pos = 0;
        for (;;) {
            const ReadStep s = reader.next(bytes(input).subspan(pos));
            pos += s.consumed;
            if (s.kind != ReadKind::command) break;
            benchmark::DoNotOptimize(parse_command(s.text, c));
        }
    }
    state.SetItemsProcessed(state.iterations() * 100);
    state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(input.size()));
}
BENCHMARK(BM_ReadAndParsePipelined);

// A host that answers from memory, synchronously: 10,000 messages with a few flags.
class BenchHost final : public ImapHost {
public:
    ImapServer* server = nullptr;
    std::vector<std::uint32_t> uids;
    std::vector<std::string_view> keywords{"$Forwarded"};

    void login(std::string_view, std::string_view) override { server->login_done(rp::Status::ok); }
    void list(bool) override { server->list_done(rp::Status::ok, {}); }
    void status(std::string_view) override { server->status_done(rp::Status::ok, {}); }
    void mailbox_op(MailboxOp, std::string_view, std::string_view) override { server->mailbox_op_done(rp::Status::ok); }
    void select(std::string_view, bool) override {
        ImapSelectInfo info;
        info.uidvalidity = 1;
        info.uidnext = static_cast<std::uint32_t>(uids.size() + 1);
        info.uids = uids;
        server->select_done(rp::Status::ok, info);
    }
    void mailbox_close() override {}
    void fetch(const ImapFetchRequest& request) override {
        for (std::uint32_t uid : request.uids) {
            ImapMessageData d;
            d.uid = uid;
            d.flags = (uid % 3 == 0) ? flag_seen : (flag_seen | flag_answered);
            if (uid % 7 == 0) d.keywords = keywords;
            d.size = 4096;
            d.internal_date = 1700000000 + uid;
            server->fetch_message(d);
        }
        server->fetch_done(rp::Status::ok);
    }
    void store(std::span<const std::uint32_t>, StoreMode, std::uint32_t, std::span<const std::string>) override {
        server->store_done(rp::Status::ok, {});
    }
    void copy(std::span<const std::uint32_t>, std::string_view, bool) override { server->copy_done(rp::Status::ok, 0, {}); }
    void expunge(std::span<const std::uint32_t>) override { server->expunge_done(rp::Status::ok, {}); }
    void append_begin(const ImapAppendRequest&) override { server->append_ready(rp::Status::ok); }
    void append_data(std::span<const std::byte>) override {}
    void append_end() override { server->append_done(rp::Status::ok, 1, 1); }
    void append_abort() override {}
};

// FETCH 1:* FLAGS over 10,000 messages: the whole response generated and taken by a driver
// that drains the output whenever it passes the high-water mark.
void BM_FetchFlags10k(benchmark::State& state) {
    ImapServerConfig config;
    config.login_requires_tls = false;
    BenchHost host;
    for (std::uint32_t i = 1; i <= 10000; ++i) host.uids.push_back(i);
    ImapServer server(config, host, ImapSessionInfo{});
    host.server = &server;
    server.greet();
    std::string out;
    (void)server.feed(bytes("a LOGIN u p\r\nb SELECT INBOX\r\n"));
    server.take_output(out);
    const std::string cmd = "c FETCH 1:* FLAGS\r\n";
    std::size_t response_bytes = 0;
    for (auto _ : state) {
        response_bytes = 0;
        (void)server.feed(bytes(cmd));
        for (;;) {
            out.clear();
            while (server.has_output()) {
                server.take_output(out);
                response_bytes += out.size();
                out.clear();
            }
            if (!server.paused()) break;
            server.on_output_drained();
        }
    }
    state.SetItemsProcessed(state.iterations() * 10000);
    state.counters["response_bytes"] = static_cast<double>(response_bytes);
    server.connection_lost();
}
BENCHMARK(BM_FetchFlags10k)->Unit(benchmark::kMicrosecond);

std::string message_4k() {
    std::string m =
        "Return-Path: <alice@example.test>\r\n"
        "Received: from client.example.net (client.example.net [192.0.2.7])\r\n"
        "\tby mail.example.test (ringpost) with ESMTP id 4F00000001;\r\n"
        "\tTue, 14 Nov 2023 22:13:20 +0000\r\n"
        "From: Alice Example <alice@example.test>\r\n"
        "To: Demo User <demo@example.test>, bob@example.test\r\n"
        "Cc: team: carol@example.test, dave@example.test;\r\n"
        "Subject: Quarterly report with attachment\r\n"
        "Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"
        "Message-ID: <20231114221320.1234@example.test>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: multipart/mixed; boundary=\"=_boundary_1234\"\r\n"
        "\r\n"
        "This is a multi-part message in MIME format.\r\n"
        "--=_boundary_1234\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: quoted-printable\r\n"
        "\r\n";
    for (int i = 0; i < 20; ++i) m += "The quarterly numbers are in the attached file, line " + std::to_string(i) + ".\r\n";
    m += "--=_boundary_1234\r\n"
         "Content-Type: application/pdf; name=\"report.pdf\"\r\n"
         "Content-Transfer-Encoding: base64\r\n"
         "Content-Disposition: attachment; filename=\"report.pdf\"\r\n"
         "\r\n";
    while (m.size() < 4096 - 40) m += "JVBERi0xLjQKJcfsj6IKNSAwIG9iago8PC9MZW5ndGggNiAwIFIvRmlsdGVyIC9G\r\n";
    m += "--=_boundary_1234--\r\n";
    return m;
}

void BM_MimeParse4k(benchmark::State& state) {
    const std::string m = message_4k();
    for (auto _ : state) {
        MimeMessage mime = mime_parse(m);
        benchmark::DoNotOptimize(mime);
    }
    state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(m.size()));
    state.counters["message_bytes"] = static_cast<double>(m.size());
}
BENCHMARK(BM_MimeParse4k);

void BM_Bodystructure4k(benchmark::State& state) {
    const std::string m = message_4k();
    const MimeMessage mime = mime_parse(m);
    std::string out;
    for (auto _ : state) {
        out.clear();
        mime_append_body(out, mime, true);
        mime_append_envelope(out, mime.parts[0].envelope);
        benchmark::DoNotOptimize(out);
    }
}
BENCHMARK(BM_Bodystructure4k);

}  // namespace

BENCHMARK_MAIN();
