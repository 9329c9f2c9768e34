// protocols/common/data_decoder.cc: see data_decoder.h.
#include "protocols/common/data_decoder.h"

#include "core/assert.h"

namespace rp::protocols {

namespace {

// The CR of a line-start ".\r" that turned out not to be the terminator, when the buffer
// boundary fell between the CR and the byte after it.
const std::byte held_cr[1] = {std::byte{'\r'}};

}  // namespace

void DataDecoder::reset() {
    state_ = State::line_start;
    prev_cr_ = false;
    bare_line_end_count_ = 0;
}

DataStep DataDecoder::next(std::span<const std::byte> input) {
    if (input.empty()) return DataStep{};
    const auto* const p = reinterpret_cast<const unsigned char*>(input.data());
    const std::size_t size = input.size();
    std::size_t start = 0;
    switch (state_) {
        case State::line_start:
            if (p[0] == '.') {
                // RFC 5321 4.5.2: a leading dot is removed, or it is the terminator.
                state_ = State::dot;
                return DataStep{1, {}, false};
            }
            break;
        case State::dot:
            if (p[0] == '\r') {
                state_ = State::dot_cr;
                return DataStep{1, {}, false};
            }
            break;  // The dot is dropped; the line goes on from p[0].
        case State::dot_cr:
            if (p[0] == '\n') {
                state_ = State::line_start;
                return DataStep{1, {}, true};
            }
            // ".\r" then not LF: the dot is dropped, the CR is body (a bare CR, counted
            // when the scan below sees p[0]).
            state_ = State::mid_line;
            prev_cr_ = true;
            return DataStep{0, std::span<const std::byte>(held_cr), false};
        case State::mid_line:
            break;
    }
    // prev_cr_ is false in every state but mid_line.
    state_ = State::mid_line;
    bool prev_cr = prev_cr_;
    std::size_t i = start;
    while (i < size) {
        const unsigned char c = p[i];
        ++i;
        if (c > '\r') {
            if (prev_cr) [[unlikely]] {
                ++bare_line_end_count_;  // CR followed by something other than LF.
                prev_cr = false;
            }
            continue;
        }
        if (c == '\n') {
            if (!prev_cr) {
                ++bare_line_end_count_;
                continue;
            }
            prev_cr = false;
            // CRLF: a new line starts at i.
            if (i == size) {
                state_ = State::line_start;
                prev_cr_ = false;
                return DataStep{size, input.subspan(start, size - start), false};
            }
            if (p[i] == '.') {
                state_ = State::dot;
                prev_cr_ = false;
                return DataStep{i + 1, input.subspan(start, i - start), false};
            }
            continue;
        }
        if (prev_cr) ++bare_line_end_count_;  // CR followed by something other than LF.
        prev_cr = c == '\r';
    }
    prev_cr_ = prev_cr;
    return DataStep{size, input.subspan(start, size - start), false};
}

}  // namespace rp::protocols
