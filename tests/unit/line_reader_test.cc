// tests/unit/line_reader_test.cc: strict CRLF framing of protocols/common/line_reader.
#include "protocols/common/line_reader.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace rp::protocols {
namespace {

std::span<const std::byte> bytes(std::string_view s) {
    return std::as_bytes(std::span<const char>(s.data(), s.size()));
}

struct Event {
    LineKind kind;
    std::string text;
    bool operator==(const Event&) const = default;
};

// Feeds `input` in chunks of `chunk` bytes and collects every event.
std::vector<Event> run(LineReader& reader, std::string_view input, std::size_t chunk) {
    std::vector<Event> events;
    for (std::size_t at = 0; at < input.size(); at += chunk) {
        std::string_view piece = input.substr(at, chunk);
        while (!piece.empty()) {
            const LineStep s = reader.next(bytes(piece));
            EXPECT_GT(s.consumed, 0u);
            EXPECT_LE(s.consumed, piece.size());
            if (s.kind != LineKind::need_more) events.push_back({s.kind, std::string(s.text)});
            piece.remove_prefix(s.consumed);
        }
    }
    return events;
}

// Proves: a complete line is returned as a view into the input (zero copy), without CRLF,
// and only its bytes are consumed.
TEST(LineReader, CompleteLineIsZeroCopy) {
    LineReader reader(512);
    const std::string input = "NOOP\r\nQUIT\r\n";
    const LineStep s = reader.next(bytes(input));
    EXPECT_EQ(s.kind, LineKind::line);
    EXPECT_EQ(s.text, "NOOP");
    EXPECT_EQ(s.consumed, 6u);
    EXPECT_EQ(s.text.data(), input.data());
}

// Proves: trickle: one byte at a time gives need_more until the LF, then the same line.
TEST(LineReader, TrickleGivesNeedMoreUntilTheLastByte) {
    LineReader reader(512);
    const std::string input = "MAIL FROM:<a@b.example>\r\n";
    for (std::size_t i = 0; i + 1 < input.size(); ++i) {
        const LineStep s = reader.next(bytes(std::string_view(input).substr(i, 1)));
        EXPECT_EQ(s.kind, LineKind::need_more) << i;
        EXPECT_EQ(s.consumed, 1u);
    }
    const LineStep s = reader.next(bytes(std::string_view(input).substr(input.size() - 1)));
    EXPECT_EQ(s.kind, LineKind::line);
    EXPECT_EQ(s.text, "MAIL FROM:<a@b.example>");
}

// Proves: every split of a stream gives the same events as the whole stream.
TEST(LineReader, EverySplitGivesTheSameEvents) {
    const std::string input = "A\r\nBB\r\n\r\nbare\nCR\rinside\r\n" + std::string(600, 'x') +
                              "\r\nafter\r\n";
    LineReader whole_reader(512);
    const auto whole = run(whole_reader, input, input.size());
    ASSERT_EQ(whole.size(), 7u);
    EXPECT_EQ(whole[2], (Event{LineKind::line, ""}));
    EXPECT_EQ(whole[3], (Event{LineKind::bare_lf, "bare"}));
    EXPECT_EQ(whole[4], (Event{LineKind::line, "CR\rinside"}));
    EXPECT_EQ(whole[5], (Event{LineKind::too_long, ""}));
    EXPECT_EQ(whole[6], (Event{LineKind::line, "after"}));
    for (std::size_t chunk = 1; chunk < 40; ++chunk) {
        LineReader reader(512);
        EXPECT_EQ(run(reader, input, chunk), whole) << chunk;
    }
}

// Proves: a line of exactly the limit passes; one byte more is too long, reported once even
// when it arrives in many pieces, and the next line is read normally.
TEST(LineReader, LimitIsExactAndOverlongIsReportedOnce) {
    for (const std::size_t chunk : {1u, 5u, 512u, 100000u}) {
        LineReader reader(512);
        const std::string input = std::string(512, 'a') + "\r\n" + std::string(513, 'b') +
                                  "\r\n" + std::string(5000, 'c') + "\r\nok\r\n";
        const auto events = run(reader, input, chunk);
        ASSERT_EQ(events.size(), 4u) << chunk;
        EXPECT_EQ(events[0].kind, LineKind::line);
        EXPECT_EQ(events[0].text.size(), 512u);
        EXPECT_EQ(events[1].kind, LineKind::too_long);
        EXPECT_EQ(events[2].kind, LineKind::too_long);
        EXPECT_EQ(events[3], (Event{LineKind::line, "ok"}));
    }
}

// Proves: a CR at the end of one input and the LF at the start of the next make a CRLF.
TEST(LineReader, CrLfSplitAcrossInputs) {
    LineReader reader(512);
    EXPECT_EQ(reader.next(bytes("HELO x\r")).kind, LineKind::need_more);
    EXPECT_TRUE(reader.mid_line());
    const LineStep s = reader.next(bytes("\nNOOP"));
    EXPECT_EQ(s.kind, LineKind::line);
    EXPECT_EQ(s.text, "HELO x");
    EXPECT_EQ(s.consumed, 1u);
    reader.reset();
    EXPECT_FALSE(reader.mid_line());
}

}  // namespace
}  // namespace rp::protocols
