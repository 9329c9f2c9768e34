#include "core/echo_protocol.h"

#include <charconv>
#include <cstring>
#include <string>
#include <string_view>

#include "core/limits.h"

namespace rp {
namespace {

constexpr std::uint64_t ns_per_ms = 1'000'000;
constexpr std::uint64_t big_bytes_max = 4u << 20;

class EchoSession final : public ProtocolSession, public Timer {
public:
    explicit EchoSession(EchoFactory& factory) : factory_(factory) {}

    void on_open(const SessionInfo& info, SessionOutput& out) override {
        handle_ = info.handle;
        out.write("+ECHO ready\r\n");
        out.set_timeout_ms(factory_.options().idle_timeout_ms);
    }

    std::size_t on_bytes(std::span<const std::byte> bytes, BufferRef* /*source*/,
                         SessionOutput& out) override {
        std::string_view text(reinterpret_cast<const char*>(bytes.data()), bytes.size());
        std::size_t consumed = 0;
        while (consumed < text.size() && !stopped_) {
            std::size_t newline = text.find('\n', consumed);
            if (discarding_) {
                if (newline == std::string_view::npos) return text.size();
                discarding_ = false;
                consumed = newline + 1;
                out.write("-ERR line too long\r\n");
                out.set_timeout_ms(factory_.options().idle_timeout_ms);
                continue;
            }
            if (newline == std::string_view::npos) {
                // A partial line: keep it unconsumed unless it is already too long.
                if (text.size() - consumed > factory_.options().line_bytes_max) {
                    discarding_ = true;
                    return text.size();
                }
                return consumed;
            }
            std::string_view line = text.substr(consumed, newline - consumed);
            consumed = newline + 1;
            if (line.size() > factory_.options().line_bytes_max) {
                out.write("-ERR line too long\r\n");
            } else {
                if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
                command(line, out);
            }
            if (!stopped_) out.set_timeout_ms(factory_.options().idle_timeout_ms);
        }
        return consumed;
    }

    void on_timeout(SessionOutput& out) override {
        out.write("-ERR timeout\r\n");
        out.close_after_flush();
    }

    void on_close(Status /*reason*/) override { factory_.reactor().timer_cancel(*this); }

    void on_output_drained(SessionOutput& out) override {
        if (big_left_ > 0) stream(out);
    }

    // The SLEEP timer: an async completion finding its session by handle.
    void on_timer() override {
        SessionOutput* out = factory_.driver().find(handle_);
        if (out == nullptr) return;
        stopped_ = false;
        out->write("+AWAKE\r\n");
        out->set_timeout_ms(factory_.options().idle_timeout_ms);
        out->resume_reading();
    }

private:
    // Writes BIG output while the send queue is below its high mark; the rest follows from
    // on_output_drained.
    void stream(SessionOutput& out) {
        char block[4096];
        std::memset(block, 'x', sizeof(block));
        while (big_left_ > 0 && out.output_queued_bytes() < limits::session_output_high_bytes) {
            std::size_t count = big_left_ < sizeof(block) ? big_left_ : sizeof(block);
            out.write(std::string_view(block, count));
            big_left_ -= count;
        }
        if (big_left_ == 0) {
            out.write("\r\n");
            stopped_ = false;
            out.set_timeout_ms(factory_.options().idle_timeout_ms);
            out.resume_reading();
        }
    }

    void command(std::string_view line, SessionOutput& out) {
        if (line == "QUIT") {
            out.write("+BYE\r\n");
            out.close_after_flush();
            stopped_ = true;
            return;
        }
        if (line.rfind("SLEEP ", 0) == 0 || line.rfind("BIG ", 0) == 0) {
            std::string_view number = line.substr(line.find(' ') + 1);
            std::uint64_t value = 0;
            auto [end, ec] = std::from_chars(number.data(), number.data() + number.size(), value);
            if (ec != std::errc() || end != number.data() + number.size()) {
                out.write("-ERR number\r\n");
                return;
            }
            if (line[0] == 'S') {
                out.pause_reading();
                stopped_ = true;
                factory_.reactor().timer_arm(*this, value * ns_per_ms);
                return;
            }
            big_left_ = value < big_bytes_max ? value : big_bytes_max;
            stopped_ = true;
            out.pause_reading();
            stream(out);
            return;
        }
        std::string reply;
        reply.reserve(line.size() + 3);
        reply += '+';
        reply += line;
        reply += "\r\n";
        out.write(reply);
    }

    EchoFactory& factory_;
    SessionHandle handle_;
    bool discarding_ = false;
    bool stopped_ = false;  // After QUIT, during SLEEP or BIG: consume nothing more.
    std::uint64_t big_left_ = 0;
};

}  // namespace

std::size_t EchoFactory::session_bytes() const { return sizeof(EchoSession); }
std::size_t EchoFactory::session_align() const { return alignof(EchoSession); }

ProtocolSession* EchoFactory::create(void* storage) { return new (storage) EchoSession(*this); }

}  // namespace rp
