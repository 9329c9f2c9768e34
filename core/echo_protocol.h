// core/echo_protocol.h: TEST ONLY. A line-echo protocol that proves the engine without
// SMTP: served on listeners of kind "test-echo" ([[engine.test_echo_listener]]).
//
// Lines end with LF (a CR before it is dropped). Replies:
//   on open          "+ECHO ready"
//   "QUIT"           "+BYE", then close
//   "SLEEP <ms>"     pauses reading, and after <ms> (a timer standing in for an async store
//                    completion) writes "+AWAKE" and resumes; pipelined input waits.
//   "BIG <bytes>"    streams that many 'x' and CRLF through on_output_drained (a
//                    bounded send queue; input waits meanwhile)
//   a longer line than line_bytes_max: consumed and answered "-ERR line too long"
//   anything else    "+" and the line
//   state timeout    "-ERR timeout", then close. Each complete line re-arms it.
#pragma once

#include <cstdint>

#include "core/session.h"

namespace rp {

struct EchoOptions {
    std::uint32_t line_bytes_max = 1000;
    std::uint64_t idle_timeout_ms = 60'000;
};

class EchoFactory final : public ProtocolFactory {
public:
    EchoFactory(Reactor& reactor, SessionDriver& driver, const EchoOptions& options)
        : reactor_(reactor), driver_(driver), options_(options) {}

    std::size_t session_bytes() const override;
    std::size_t session_align() const override;
    ProtocolSession* create(void* storage) override;
    std::string_view busy_reply() const override { return "-ECHO busy, try later\r\n"; }
    std::string_view per_ip_reply() const override {
        return "-ECHO too many connections from your address\r\n";
    }
    std::uint64_t open_timeout_ms() const override { return options_.idle_timeout_ms; }

    Reactor& reactor() { return reactor_; }
    SessionDriver& driver() { return driver_; }
    const EchoOptions& options() const { return options_; }

private:
    Reactor& reactor_;
    SessionDriver& driver_;
    EchoOptions options_;
};

}  // namespace rp
