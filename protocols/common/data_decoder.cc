// protocols/common/data_decoder.cc: see data_decoder.h.
#include "protocols/common/data_decoder.h"

#include <cstring>

#include "core/assert.h"

namespace rp::protocols {

namespace {

std::uint64_t count_cr(const unsigned char* p, std::size_t size) {
    std::uint64_t count = 0;
    while (size > 0) {
        const void* cr = std::memchr(p, '\r', size);
        if (cr == nullptr) break;
        ++count;
        // bounds: cr points inside [p, p + size).
        const auto skip = static_cast<std::size_t>(static_cast<const unsigned char*>(cr) - p) + 1;
        p += skip;
        size -= skip;
    }
    return count;
}

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
    std::size_t i = start;
    if (prev_cr_) {
        // A CR ended the previous input (or was the held-back CR): is it half of a CRLF?
        prev_cr_ = false;
        if (p[0] == '\n') {
            i = 1;
            if (i == size) {
                state_ = State::line_start;
                return DataStep{size, input.subspan(start, size - start), false};
            }
            if (p[i] == '.') {
                state_ = State::dot;
                return DataStep{i + 1, input.subspan(start, i - start), false};
            }
        } else {
            ++bare_line_end_count_;
        }
    }
    // Line by line with memchr: only a CRLF followed by '.' stops the piece.
    while (i < size) {
        const void* lf = std::memchr(p + i, '\n', size - i);
        if (lf == nullptr) {
            const bool last_cr = p[size - 1] == '\r';
            bare_line_end_count_ += count_cr(p + i, size - i - (last_cr ? 1 : 0));
            prev_cr_ = last_cr;
            break;
        }
        const auto end = static_cast<std::size_t>(static_cast<const unsigned char*>(lf) - p);
        const bool crlf = end > i && p[end - 1] == '\r';
        // Every CR before the LF but the one right before it is bare.
        bare_line_end_count_ += count_cr(p + i, end - i - (crlf ? 1 : 0));
        i = end + 1;
        if (!crlf) {
            ++bare_line_end_count_;  // Bare LF.
            continue;
        }
        if (i == size) {
            state_ = State::line_start;
            break;
        }
        if (p[i] == '.') {
            state_ = State::dot;
            return DataStep{i + 1, input.subspan(start, i - start), false};
        }
    }
    return DataStep{size, input.subspan(start, size - start), false};
}

}  // namespace rp::protocols
