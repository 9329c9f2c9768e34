// tools/bench/bench_access.cc: the POP3 and IMAP response readers of ringpost-bench.
#include "tools/bench/bench_access.h"

#include <algorithm>
#include <cctype>
#include <cstring>

namespace rp::bench {
namespace {

// Drops consumed bytes once they are at least half the buffer, so appends stay amortised.
void compact(std::string& buffer, std::size_t& start, std::size_t& other) {
    if (start == 0 || start * 2 < buffer.size()) return;
    buffer.erase(0, start);
    other -= start;
    start = 0;
}

std::string upper(std::string_view text) {
    std::string out(text);
    for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return out;
}

}  // namespace

// ---- POP3 ----

Status Pop3ReplyReader::feed(std::string_view bytes) {
    compact(buffer_, start_, scan_);
    buffer_.append(bytes);
    // bounds: buffer_ holds one unfinished reply plus one receive buffer.
    if (buffer_.size() - start_ > reply_bytes_max) return Status::too_big;
    return Status::ok;
}

void Pop3ReplyReader::reset() {
    buffer_.clear();
    start_ = 0;
    scan_ = 0;
}

Result<Pop3Reply> Pop3ReplyReader::next(bool multiline) {
    const std::size_t newline = buffer_.find('\n', start_);
    if (newline == std::string::npos) return Status::again;
    std::string_view line(buffer_.data() + start_, newline - start_);
    if (line.ends_with('\r')) line.remove_suffix(1);
    Pop3Reply reply;
    if (line.starts_with("+OK")) {
        reply.ok = true;
    } else if (!line.starts_with("-ERR")) {
        return Status::invalid;
    }
    const std::size_t body_start = newline + 1;
    std::size_t end = body_start;  // The first byte after the reply.
    if (reply.ok && multiline) {
        // RFC 1939 3: the data ends with a line holding one dot. Search for LF "." CR LF from
        // the status line's LF (an empty body) or from where the last search stopped.
        const std::size_t from = std::max(body_start - 1, scan_);
        const std::size_t found = buffer_.find("\n.\r\n", from);
        if (found == std::string::npos) {
            // The next search re-reads the last 3 bytes: a terminator may be split.
            scan_ = std::max(body_start - 1, buffer_.size() >= 3 ? buffer_.size() - 3 : 0);
            return Status::again;
        }
        const std::size_t terminator = found + 1;
        std::uint64_t lines = 0;
        std::uint64_t stuffed = 0;
        for (std::size_t at = body_start; at < terminator;) {
            if (buffer_[at] == '.') stuffed++;  // RFC 1939 3: a leading dot is stuffing.
            const std::size_t eol = buffer_.find('\n', at);
            lines++;
            at = eol + 1;  // bounds: the terminator search found a LF before `terminator`.
        }
        reply.line_count = lines;
        reply.body_bytes = terminator - body_start - stuffed;
        end = terminator + 3;
    }
    reply.line.assign(line.substr(0, 512));
    start_ = end;
    scan_ = end;
    return reply;
}

// ---- IMAP ----

Status ImapResponseReader::feed(std::string_view bytes) {
    compact(buffer_, start_, cursor_);
    buffer_.append(bytes);
    // bounds: buffer_ holds one unfinished response plus one receive buffer.
    if (buffer_.size() - start_ > response_bytes_max) return Status::too_big;
    return Status::ok;
}

void ImapResponseReader::reset() {
    buffer_.clear();
    start_ = 0;
    cursor_ = 0;
    literal_left_ = 0;
    literal_bytes_ = 0;
    literal_count_ = 0;
}

namespace {

// A line's trailing literal: "{123}" or "{123+}" (RFC 7888) -> 123, or -1.
std::int64_t trailing_literal(std::string_view line) {
    if (!line.ends_with('}')) return -1;
    line.remove_suffix(1);
    if (line.ends_with('+')) line.remove_suffix(1);
    const std::size_t open = line.rfind('{');
    if (open == std::string_view::npos || open + 1 == line.size()) return -1;
    std::int64_t value = 0;
    for (std::size_t i = open + 1; i < line.size(); i++) {
        if (!std::isdigit(static_cast<unsigned char>(line[i]))) return -1;
        if (value > (std::int64_t{1} << 40)) return -1;
        value = value * 10 + (line[i] - '0');
    }
    return value;
}

Result<ImapResponse> parse_head(std::string_view line) {
    ImapResponse response;
    if (line.starts_with("+")) {
        response.kind = ImapResponse::Kind::continuation;
        return response;
    }
    const std::size_t space = line.find(' ');
    if (space == std::string_view::npos || space == 0) return Status::invalid;
    std::string_view rest = line.substr(space + 1);
    const std::size_t word_end = rest.find_first_of(" [(");
    std::string_view first = rest.substr(0, word_end);
    if (line[0] == '*') {
        response.kind = ImapResponse::Kind::untagged;
        if (!first.empty() && std::isdigit(static_cast<unsigned char>(first[0]))) {
            for (char c : first) {
                if (!std::isdigit(static_cast<unsigned char>(c)) || response.number > (1ull << 40)) {
                    return Status::invalid;
                }
                response.number = response.number * 10 + static_cast<std::uint64_t>(c - '0');
            }
            rest = word_end == std::string_view::npos ? std::string_view() : rest.substr(word_end + 1);
            first = rest.substr(0, rest.find_first_of(" [("));
        }
    } else {
        response.kind = ImapResponse::Kind::tagged;
        response.tag.assign(line.substr(0, space));
    }
    if (first.empty()) return Status::invalid;
    response.word = upper(first.substr(0, 32));
    return response;
}

}  // namespace

Result<ImapResponse> ImapResponseReader::next() {
    while (true) {
        if (literal_left_ > 0) {
            const std::size_t available = buffer_.size() - cursor_;
            if (available < literal_left_) {
                literal_left_ -= available;
                cursor_ = buffer_.size();
                return Status::again;
            }
            cursor_ += literal_left_;  // bounds: literal_left_ <= available.
            literal_left_ = 0;
        }
        const std::size_t newline = buffer_.find('\n', cursor_);
        if (newline == std::string::npos) return Status::again;
        std::string_view line(buffer_.data() + cursor_, newline - cursor_);
        if (line.ends_with('\r')) line.remove_suffix(1);
        cursor_ = newline + 1;
        const std::int64_t literal = trailing_literal(line);
        if (literal >= 0) {
            literal_left_ = static_cast<std::uint64_t>(literal);
            literal_bytes_ += literal_left_;
            literal_count_++;
            continue;
        }
        // The response is complete: parse its first line.
        const std::size_t first_end = buffer_.find('\n', start_);
        std::string_view head(buffer_.data() + start_, first_end - start_);
        if (head.ends_with('\r')) head.remove_suffix(1);
        auto response = parse_head(head);
        if (response) {
            response->literal_bytes = literal_bytes_;
            response->literal_count = literal_count_;
        }
        start_ = cursor_;
        literal_bytes_ = 0;
        literal_count_ = 0;
        return response;
    }
}

}  // namespace rp::bench
