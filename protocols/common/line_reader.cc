// protocols/common/line_reader.cc: see line_reader.h.
#include "protocols/common/line_reader.h"

#include <cstring>

#include "core/assert.h"
#include "core/limits.h"

namespace rp::protocols {

LineReader::LineReader(std::uint32_t line_bytes_max) : line_bytes_max_(line_bytes_max) {
    RP_ASSERT(line_bytes_max > 0);
    RP_ASSERT(line_bytes_max <= limits::imap_line_bytes_max);
}

void LineReader::reset() {
    partial_.clear();
    partial_returned_ = false;
    skipping_ = false;
}

void LineReader::trim() {
    if (!mid_line()) {
        std::string().swap(partial_);
        partial_returned_ = false;
    }
}

LineStep LineReader::next(std::span<const std::byte> input) {
    if (partial_returned_) {
        partial_.clear();
        partial_returned_ = false;
    }
    const char* const data = reinterpret_cast<const char*>(input.data());
    const std::size_t size = input.size();
    std::size_t start = 0;
    if (skipping_) {
        // The rest of an overlong line, already reported: drop it up to its end. Any LF ends
        // it (a bare LF would also have ended a normal line).
        const void* lf = size == 0 ? nullptr : std::memchr(data, '\n', size);
        if (lf == nullptr) return LineStep{size, LineKind::need_more, {}};
        start = static_cast<std::size_t>(static_cast<const char*>(lf) - data) + 1;
        skipping_ = false;
    }
    const std::size_t rest = size - start;
    const void* lf = rest == 0 ? nullptr : std::memchr(data + start, '\n', rest);
    if (lf == nullptr) {
        // No line end yet: keep the bytes, unless the line is already too long. One byte
        // more than the limit is allowed for a CR that may precede the LF.
        // bounds: partial_.size() <= line_bytes_max_ + 1 and rest <= size.
        if (partial_.size() + rest > std::size_t{line_bytes_max_} + 1) {
            partial_.clear();
            skipping_ = true;
            return LineStep{size, LineKind::too_long, {}};
        }
        partial_.append(data + start, rest);
        return LineStep{size, LineKind::need_more, {}};
    }
    const std::size_t lf_index = static_cast<std::size_t>(static_cast<const char*>(lf) - data);
    std::string_view text;
    if (partial_.empty()) {
        text = std::string_view(data + start, lf_index - start);  // Zero copy.
    } else {
        // bounds: the line is checked against line_bytes_max_ below; partial_ is bounded.
        if (partial_.size() + (lf_index - start) <= std::size_t{line_bytes_max_} + 1) {
            partial_.append(data + start, lf_index - start);
        } else {
            partial_.append(line_bytes_max_ + 2 - partial_.size(), 'x');  // Marks too long.
        }
        partial_returned_ = true;
        text = partial_;
    }
    const bool crlf = !text.empty() && text.back() == '\r';
    if (crlf) text.remove_suffix(1);
    if (text.size() > line_bytes_max_) {
        return LineStep{lf_index + 1, LineKind::too_long, {}};
    }
    return LineStep{lf_index + 1, crlf ? LineKind::line : LineKind::bare_lf, text};
}

}  // namespace rp::protocols
