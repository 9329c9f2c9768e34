// tests/fuzz/fuzz_imap_session.cc: the whole IMAP server state machine with the fake host.
//
// The first input byte picks the settings (chunk size, asynchronous host, small limits); the
// rest is the client's byte stream. Invariants:
//   - never crash, never trip an RP_ASSERT, never get stuck on the host;
//   - every output line is an untagged ("* "), continuation ("+ ") or tagged reply, or part
//     of a literal announced by the line before (counted exactly);
//   - feeding in chunks with an asynchronous host gives exactly the output of feeding whole
//     with a synchronous one.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "tests/unit/imap_test_harness.h"

namespace {

void check(bool ok) {
    if (!ok) std::abort();
}

void check_output(std::string_view out) {
    std::size_t pos = 0;
    while (pos < out.size()) {
        const std::size_t end = out.find("\r\n", pos);
        check(end != std::string_view::npos);
        std::string_view line = out.substr(pos, end - pos);
        check(!line.empty());
        check(line[0] == '*' || line[0] == '+' || (line[0] > ' ' && line[0] < 0x7f));
        pos = end + 2;
        // A line ending in {n} or ~{n} announces n raw bytes; skip them.
        while (!line.empty() && line.back() == '}') {
            const std::size_t open = line.rfind('{');
            check(open != std::string_view::npos);
            const std::size_t n = std::stoul(std::string(line.substr(open + 1, line.size() - open - 2)));
            check(pos + n <= out.size());
            pos += n;
            const std::size_t next = out.find("\r\n", pos);
            check(next != std::string_view::npos);
            line = out.substr(pos, next - pos);
            pos = next + 2;
        }
    }
}

std::string run(std::uint8_t settings, std::string_view input, std::size_t chunk, bool async) {
    rp::imap::ImapServerConfig config = rp::imap::testing::test_config();
    if (settings & 1) config.command_bytes_max = 256;
    if (settings & 2) config.append_bytes_max = 64;
    if (settings & 4) config.fetch_batch_count = 1;
    if (settings & 8) config.output_bytes_high = 256;
    config.errors_max = (settings & 16) ? 5 : 1000;
    rp::imap::testing::FakeImapHost host;
    host.async = async;
    rp::imap::ImapServer server(config, host, rp::imap::ImapSessionInfo{});
    host.server = &server;
    server.greet();
    const rp::imap::testing::DriveResult r = rp::imap::testing::drive(server, host, input, chunk);
    check(!r.stuck);
    if (!server.wants_close()) server.connection_lost();
    // The closed marker is a byte the server never sends (output is checked to be text).
    return r.output + (r.closed ? std::string(1, '\0') : std::string());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const std::uint8_t settings = data[0];
    const std::string_view input(reinterpret_cast<const char*>(data + 1), size - 1);
    const std::string whole = run(settings, input, 0, false);
    std::string_view text = whole;
    if (!text.empty() && text.back() == '\0') text.remove_suffix(1);
    check_output(text);
    const std::size_t chunk = 1 + (settings >> 5) * 3;
    check(run(settings, input, chunk, true) == whole);
    return 0;
}
