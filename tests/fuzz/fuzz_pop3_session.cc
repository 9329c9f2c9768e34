// tests/fuzz/fuzz_pop3_session.cc: arbitrary client bytes against the POP3 state machine.
// The first byte picks the chunk size and whether the host answers later; the rest is the
// client stream. The server must never crash, never grow its output past the bound between
// pumps, and an UPDATE may only carry UIDs of the maildrop.
#include <cstddef>
#include <cstdint>

#include "tests/unit/pop3_test_harness.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace rp::pop3;
    using namespace rp::pop3::testing;
    if (size == 0) return 0;
    const std::size_t chunk = data[0] & 0x0f;
    FakeHost host;
    host.async = (data[0] & 0x10) != 0;
    host.piece_bytes = 1 + (data[0] >> 5);
    host.messages = {"Subject: a\r\n\r\n.\r\nbody\r\n", "x", "..\n.\r\n.", ""};
    Pop3ServerConfig config = test_config();
    config.line_bytes_max = 255;
    config.output_bytes_high = 1024;
    Pop3SessionInfo info;
    info.tls_available = (data[0] & 0x80) != 0;
    Pop3Server server(config, host, info);
    const std::string_view input(reinterpret_cast<const char*>(data + 1), size - 1);
    (void)drive(server, host, input, chunk);
    for (std::uint32_t uid : host.updated) {
        RP_ASSERT(uid == 1 || uid == 11 || uid == 21 || uid == 31);
    }
    server.connection_lost();
    return 0;
}
