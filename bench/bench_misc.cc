// bench/bench_misc.cc: micro-benchmarks of hot pieces no other bench file covers:
//   BM_Crc32c/<bytes>            the checksum of every record (SSE4.2 or table)
//   BM_RecordSeal/<bytes>        sealing a body_chunk record (header and payload CRCs)
//   BM_RecordVerify/<bytes>      decoding its header and checking its payload CRC (a read)
//   BM_BenchImapReader/<count>   ringpost-bench's IMAP reader over a FETCH 1:* of 4 KiB
//                                messages: the client must stay far faster than a server
//   BM_BenchPop3Reader           ringpost-bench's POP3 reader over one 4 KiB RETR reply
#include <benchmark/benchmark.h>

#include <cstring>
#include <string>
#include <vector>

#include "core/checksum.h"
#include "storage/record.h"
#include "tools/bench/bench_access.h"

namespace {

std::vector<std::byte> payload(std::size_t bytes) {
    std::vector<std::byte> data(bytes);
    for (std::size_t i = 0; i < bytes; i++) data[i] = static_cast<std::byte>(i * 131 + 7);
    return data;
}

void BM_Crc32c(benchmark::State& state) {
    const auto data = payload(static_cast<std::size_t>(state.range(0)));
    for (auto _ : state) benchmark::DoNotOptimize(rp::crc32c(data));
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * state.range(0));
}
BENCHMARK(BM_Crc32c)->Arg(64)->Arg(4096)->Arg(65536);

void BM_RecordSeal(benchmark::State& state) {
    const auto data = payload(static_cast<std::size_t>(state.range(0)));
    for (auto _ : state) {
        rp::storage::RecordHeader header;
        header.type = static_cast<std::uint16_t>(rp::storage::RecordType::body_chunk);
        header.payload_bytes = static_cast<std::uint32_t>(data.size());
        header.txn = 42;
        rp::storage::record_seal(header, data);
        benchmark::DoNotOptimize(header);
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * state.range(0));
}
BENCHMARK(BM_RecordSeal)->Arg(4096)->Arg(65536);

void BM_RecordVerify(benchmark::State& state) {
    const auto data = payload(static_cast<std::size_t>(state.range(0)));
    rp::storage::RecordHeader header;
    header.type = static_cast<std::uint16_t>(rp::storage::RecordType::body_chunk);
    header.payload_bytes = static_cast<std::uint32_t>(data.size());
    rp::storage::record_seal(header, data);
    std::vector<std::byte> record(rp::storage::record_bytes(header.payload_bytes));
    std::memcpy(record.data(), &header, sizeof(header));
    std::memcpy(record.data() + sizeof(header), data.data(), data.size());
    for (auto _ : state) {
        auto decoded = rp::storage::record_header_decode(record);
        if (!decoded) state.SkipWithError("record did not decode");
        const std::span<const std::byte> body(record.data() + sizeof(header), data.size());
        benchmark::DoNotOptimize(rp::storage::record_payload_ok(*decoded, body));
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * state.range(0));
}
BENCHMARK(BM_RecordVerify)->Arg(4096)->Arg(65536);

std::string message_4k() {
    std::string line(76, 'x');
    std::string body;
    while (body.size() < 4096) body += line + "\r\n";
    body.resize(4096);
    return body;
}

void BM_BenchImapReader(benchmark::State& state) {
    const auto count = static_cast<std::size_t>(state.range(0));
    const std::string body = message_4k();
    std::string stream;
    for (std::size_t i = 1; i <= count; i++) {
        stream += "* " + std::to_string(i) + " FETCH (BODY[] {4096}\r\n" + body + ")\r\n";
    }
    stream += "a1 OK FETCH done\r\n";
    for (auto _ : state) {
        rp::bench::ImapResponseReader reader;
        std::size_t responses = 0;
        // Fed in 16 KiB pieces, as the loop receives them.
        for (std::size_t at = 0; at < stream.size(); at += 16384) {
            if (reader.feed(std::string_view(stream).substr(at, 16384)) != rp::Status::ok) {
                state.SkipWithError("feed failed");
            }
            while (reader.next().ok()) responses++;
        }
        if (responses != count + 1) state.SkipWithError("wrong response count");
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * stream.size()));
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * count));
}
BENCHMARK(BM_BenchImapReader)->Arg(100);

void BM_BenchPop3Reader(benchmark::State& state) {
    const std::string reply = "+OK 4096 octets\r\n" + message_4k() + "\r\n.\r\n";
    rp::bench::Pop3ReplyReader reader;
    for (auto _ : state) {
        if (reader.feed(reply) != rp::Status::ok) state.SkipWithError("feed failed");
        auto got = reader.next(true);
        if (!got) state.SkipWithError("no reply");
        benchmark::DoNotOptimize(got);
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * reply.size()));
}
BENCHMARK(BM_BenchPop3Reader);

}  // namespace

BENCHMARK_MAIN();
