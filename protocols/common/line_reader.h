// protocols/common/line_reader.h: strict CRLF line framing with a bounded line buffer.
//
// Owns: the bytes of one partial line that a buffer boundary split (at most line_bytes_max).
// Invariants: a line ends only at CRLF; the returned text never contains the CRLF. A line
//   wholly inside the input is returned as a view INTO the input (zero copy); only a line split
//   across inputs is reassembled in the internal buffer. A line longer than line_bytes_max is
//   reported once (LineKind::too_long) and the rest of it is skipped up to its CRLF, so the
//   session can answer "500 5.5.2 line too long" and go on with the next line.
// Bare LF: a LF not preceded by CR ends the line as LineKind::bare_lf (text without the LF):
//   the command is refused (never executed) and framing stays in step with lenient clients.
//   A bare CR is an ordinary byte of the line (the command parser refuses control bytes).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace rp::protocols {

enum class LineKind : std::uint8_t {
    need_more,  // All input consumed, no complete line yet.
    line,       // `text` is a complete line (without CRLF).
    too_long,   // A line passed line_bytes_max; reported once, its rest is skipped.
    bare_lf,    // `text` ended with LF not preceded by CR (LF not included).
};

struct LineStep {
    std::size_t consumed = 0;  // Bytes of the input used by this step.
    LineKind kind = LineKind::need_more;
    std::string_view text;     // For line/bare_lf: valid until the next call.
};

class LineReader {
public:
    explicit LineReader(std::uint32_t line_bytes_max);

    // Finds the next line in `input`. Call again with the unconsumed rest.
    LineStep next(std::span<const std::byte> input);

    // Forget any partial line (e.g. after STARTTLS: plaintext must not leak into TLS).
    void reset();
    // True while a partial line is buffered or being skipped.
    bool mid_line() const { return (!partial_.empty() && !partial_returned_) || skipping_; }
    // Give back buffer memory when idle.
    void trim();

private:
    std::uint32_t line_bytes_max_;
    std::string partial_;            // Bytes of a line split across inputs (a final CR too).
    bool partial_returned_ = false;  // partial_ was returned as a line; clear on next call.
    bool skipping_ = false;          // Inside an overlong line: drop bytes up to the LF.
};

}  // namespace rp::protocols
