// tests/unit/data_decoder_test.cc: DATA body decoding (terminator, dot-unstuffing, no
// smuggling, zero copy) of protocols/common/data_decoder.
#include "protocols/common/data_decoder.h"

#include <gtest/gtest.h>

#include <string>

namespace rp::protocols {
namespace {

struct Decoded {
    std::string body;
    bool end = false;
    std::size_t consumed = 0;  // Of the whole input, up to and including the terminator.
    std::uint64_t bare = 0;
    bool operator==(const Decoded&) const = default;
};

// Decodes `input` fed in chunks of `chunk` bytes; checks that every piece lies inside the
// chunk it came from, except the single held-back CR.
Decoded decode(std::string_view input, std::size_t chunk) {
    DataDecoder d;
    d.reset();
    Decoded r;
    for (std::size_t at = 0; at < input.size() && !r.end; at += chunk) {
        const std::string_view piece_in = input.substr(at, chunk);
        auto in = std::as_bytes(std::span<const char>(piece_in.data(), piece_in.size()));
        std::size_t used = 0;
        while (used < in.size() && !r.end) {
            const DataStep s = d.next(in.subspan(used));
            if (!s.piece.empty()) {
                const bool inside = s.piece.data() >= in.data() &&
                                    s.piece.data() + s.piece.size() <= in.data() + in.size();
                const bool held_cr = s.piece.size() == 1 && s.piece[0] == std::byte{'\r'};
                EXPECT_TRUE(inside || held_cr);
                r.body.append(reinterpret_cast<const char*>(s.piece.data()), s.piece.size());
            }
            used += s.consumed;
            r.end = s.end;
        }
        r.consumed = at + used;
    }
    r.bare = d.bare_line_end_count();
    return r;
}

// Proves: the CRLF before the final dot belongs to the body; bytes after the end are left.
TEST(DataDecoder, EndsAtCrLfDotCrLf) {
    const Decoded d = decode("Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n", 1000);
    EXPECT_TRUE(d.end);
    EXPECT_EQ(d.body, "Subject: x\r\n\r\nbody\r\n");
    EXPECT_EQ(d.consumed, 23u);
    EXPECT_EQ(d.bare, 0u);
}

// Proves: an empty message (".\r\n" right away) is empty, not an error.
TEST(DataDecoder, EmptyBody) {
    const Decoded d = decode(".\r\n", 1000);
    EXPECT_TRUE(d.end);
    EXPECT_EQ(d.body, "");
}

// Proves: RFC 5321 4.5.2 dot-unstuffing removes exactly one leading dot of each line.
TEST(DataDecoder, DotUnstuffing) {
    const Decoded d = decode("..a\r\n...b\r\n..\r\n.c\r\nx.y\r\n. \r\n.\r\n", 1000);
    EXPECT_TRUE(d.end);
    EXPECT_EQ(d.body, ".a\r\n..b\r\n.\r\nc\r\nx.y\r\n \r\n");
}

// Proves: bare LF and bare CR never end the message (SMTP smuggling) and are kept as is.
TEST(DataDecoder, NoSmuggling) {
    const std::string input =
        "a\n.\nMAIL FROM:<x@y>\r.\rb\r\n.\nc\n.\r\nd\r\r\n.\r\r\n.\r\n";
    const Decoded d = decode(input, 1000);
    EXPECT_TRUE(d.end);
    // "\r\n.\n" loses its dot (a line that starts with '.'); the lone-dot lines with a bare
    // ending do not end the body.
    EXPECT_EQ(d.body, "a\n.\nMAIL FROM:<x@y>\r.\rb\r\n\nc\n.\r\nd\r\r\n\r\r\n");
    EXPECT_EQ(d.consumed, input.size());
    EXPECT_EQ(d.bare, 8u);
}

// Proves: trickle and every chunk size give the same body and end as the whole input.
TEST(DataDecoder, EverySplitGivesTheSameBody) {
    const std::string input =
        "From: a\r\n..x\r\n.\r\rz\r\n.\rq\n\r\n.\n\r\n..\r\n\r\n.\r\nafter";
    const Decoded whole = decode(input, input.size());
    EXPECT_TRUE(whole.end);
    EXPECT_EQ(whole.body, "From: a\r\n.x\r\n\r\rz\r\n\rq\n\r\n\n\r\n.\r\n\r\n");
    for (std::size_t chunk = 1; chunk <= input.size(); ++chunk) {
        EXPECT_EQ(decode(input, chunk), whole) << chunk;
    }
}

// Proves: a long body with no line-start dot comes out as one piece per input (zero copy).
TEST(DataDecoder, PlainBodyIsOnePiece) {
    std::string body;
    for (int i = 0; i < 64; ++i) body += "a line of text in the body of the message\r\n";
    const std::string input = body + ".\r\n";
    DataDecoder d;
    d.reset();
    auto in = std::as_bytes(std::span<const char>(input.data(), input.size()));
    const DataStep s = d.next(in);
    EXPECT_EQ(s.piece.data(), in.data());
    EXPECT_EQ(s.piece.size(), body.size());
    EXPECT_FALSE(s.end);
}

}  // namespace
}  // namespace rp::protocols
