// protocols/common/data_decoder.h: the SMTP DATA body decoder (RFC 5321 4.1.1.4 and 4.5.2).
//
// Owns: at most two held-back bytes of state (a line-start dot, and a CR after it).
// Invariants:
//   - Only CRLF "." CRLF ends the body: the CRLF before the dot belongs to the body, the
//     ".\r\n" is the terminator. A line starts only after CRLF (or at the start of DATA).
//   - Bare LF and bare CR are kept in the body as they are. They never end the body and never
//     start a line, so "\n.\n", "\r.\r", "\n.\r\n" and "\r\n.\n" are body text, not an end
//     (SMTP smuggling, CVE-2023-51764 class). bare_line_end_count() counts them so that a
//     relay can normalise the message before sending it on.
//   - Dot-unstuffing: a line that starts with "." and is not exactly ".\r\n" loses that one
//     leading dot (RFC 5321 4.5.2), whatever follows it ("..x" -> ".x", ".\n" -> "\n").
//   - Pieces are spans INTO the input (zero copy). The only byte ever produced from outside
//     the input is a CR that followed a line-start dot at a buffer boundary (a static "\r").
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace rp::protocols {

struct DataStep {
    std::size_t consumed = 0;            // Bytes of the input used by this step.
    std::span<const std::byte> piece;    // Body bytes to deliver (may be empty).
    bool end = false;                    // The terminator was consumed; the body is complete.
};

class DataDecoder {
public:
    // Start a new body (state: at the start of a line).
    void reset();

    // Decodes from `input`; returns one piece at a time. Call again with the rest while
    // consumed < input.size() and !end. With empty input, returns an empty step.
    DataStep next(std::span<const std::byte> input);

    std::uint64_t bare_line_end_count() const { return bare_line_end_count_; }

private:
    enum class State : std::uint8_t {
        line_start,  // After CRLF: a '.' here is special.
        mid_line,    // Inside a line; prev_cr_ says whether the last byte was CR.
        dot,         // Held back: a line-start '.', dropped whatever comes.
        dot_cr,      // Held back: line-start ".\r"; LF next means the end.
    };
    State state_ = State::line_start;
    bool prev_cr_ = false;
    std::uint64_t bare_line_end_count_ = 0;
};

}  // namespace rp::protocols
