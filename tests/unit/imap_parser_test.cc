// tests/unit/imap_parser_test.cc: ImapReader framing and parse_command grammar.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "protocols/imap/imap_parser.h"

namespace rp::imap {
namespace {

std::span<const std::byte> bytes(std::string_view s) {
    return std::as_bytes(std::span<const char>(s.data(), s.size()));
}

// Runs the reader over `input` in chunks; inline literals are accepted while they fit,
// streamed ones are collected. Returns one event per line: "C:<command>", "L:<n>[+]",
// "D:<data>", "E" (literal end), "T" (too long).
struct ReaderRun {
    std::vector<std::string> events;
    std::string streamed;
};

ReaderRun run_reader(std::string_view input, std::size_t chunk, std::uint32_t max = 256,
                     bool stream = false) {
    ImapReader reader(max);
    ReaderRun r;
    std::string pending;
    std::size_t pos = 0;
    for (;;) {
        std::size_t used = 0;
        for (;;) {
            const ReadStep step = reader.next(bytes(pending).subspan(used));
            used += step.consumed;
            if (step.kind == ReadKind::need_more) break;
            switch (step.kind) {
                case ReadKind::command: r.events.push_back("C:" + std::string(step.text)); break;
                case ReadKind::literal:
                    r.events.push_back("L:" + std::to_string(step.literal.bytes) +
                                       (step.literal.synchronizing ? "" : "+"));
                    if (stream) reader.literal_stream();
                    else if (step.literal.bytes <= reader.room()) reader.literal_inline();
                    else reader.literal_refuse();
                    break;
                case ReadKind::literal_data: r.streamed += step.text; break;
                case ReadKind::literal_end: r.events.push_back("E"); break;
                case ReadKind::too_long: r.events.push_back("T"); break;
                case ReadKind::need_more: break;
            }
        }
        pending.erase(0, used);
        if (pos >= input.size()) break;
        const std::size_t take = chunk == 0 ? input.size() : std::min(chunk, input.size() - pos);
        pending.append(input.substr(pos, take));
        pos += take;
    }
    return r;
}

// Proves a command wholly inside one input comes back as a view into that input (zero copy).
TEST(ImapReader, WholeCommandIsZeroCopy) {
    ImapReader reader(1024);
    const std::string input = "a1 NOOP\r\na2 CAPABILITY\r\n";
    const ReadStep s = reader.next(bytes(input));
    ASSERT_EQ(s.kind, ReadKind::command);
    EXPECT_EQ(s.text, "a1 NOOP");
    EXPECT_EQ(s.text.data(), input.data());
    EXPECT_EQ(s.consumed, 9u);
}

// Proves framing is the same whether bytes arrive whole or one at a time (trickle), with
// inline synchronizing and non-synchronizing literals that contain CRLF.
TEST(ImapReader, TrickleMatchesWhole) {
    const std::string input = "a1 LOGIN {4}\r\nde\r\n {5+}\r\nx\r\nyz\r\na2 NOOP\r\n";
    const ReaderRun whole = run_reader(input, 0);
    const std::vector<std::string> want = {"L:4", "L:5+", "C:a1 LOGIN {4}\r\nde\r\n {5+}\r\nx\r\nyz",
                                           "C:a2 NOOP"};
    EXPECT_EQ(whole.events, want);
    for (std::size_t chunk : {1u, 2u, 3u, 7u}) {
        EXPECT_EQ(run_reader(input, chunk).events, want) << chunk;
    }
}

// Proves one byte at a time gives "need more" until the final LF.
TEST(ImapReader, TrickleNeedsMoreUntilLastByte) {
    ImapReader reader(1024);
    const std::string input = "tag SELECT INBOX\r\n";
    for (std::size_t i = 0; i + 1 < input.size(); ++i) {
        EXPECT_EQ(reader.next(bytes(input).subspan(i, 1)).kind, ReadKind::need_more) << i;
    }
    const ReadStep s = reader.next(bytes(input).subspan(input.size() - 1));
    ASSERT_EQ(s.kind, ReadKind::command);
    EXPECT_EQ(s.text, "tag SELECT INBOX");
}

// Proves a streamed literal (APPEND) is handed out as views and never kept in the command.
TEST(ImapReader, StreamedLiteral) {
    const std::string input = "a APPEND INBOX {10}\r\n0123456789\r\nb NOOP\r\n";
    for (std::size_t chunk : {0u, 1u, 4u}) {
        const ReaderRun r = run_reader(input, chunk, 64, true);
        EXPECT_EQ(r.streamed, "0123456789") << chunk;
        ASSERT_EQ(r.events.size(), 4u) << chunk;
        EXPECT_EQ(r.events[0], "L:10");
        EXPECT_EQ(r.events[1], "E");
        EXPECT_EQ(r.events[2], "C:a APPEND INBOX {10}\r\n");
        EXPECT_EQ(r.events[3], "C:b NOOP");
    }
}

// Proves a refused synchronizing literal ends the command (the client sends nothing) and a
// refused non-synchronizing one is skipped with the rest of its command, bytes unread as
// commands.
TEST(ImapReader, RefusedLiterals) {
    const ReaderRun sync = run_reader("a LOGIN {1000}\r\nb NOOP\r\n", 1, 64);
    EXPECT_EQ(sync.events, (std::vector<std::string>{"L:1000", "C:b NOOP"}));
    const std::string skipped = "a LOGIN {100+}\r\n" + std::string(100, 'Z') + " {3+}\r\nabc\r\nb NOOP\r\n";
    for (std::size_t chunk : {0u, 1u, 9u}) {
        const ReaderRun r = run_reader(skipped, chunk, 64);
        EXPECT_EQ(r.events, (std::vector<std::string>{"L:100+", "C:b NOOP"})) << chunk;
    }
}

// Proves an overlong command is reported once and the session resynchronizes at the next line.
TEST(ImapReader, OverlongLine) {
    const std::string input = "a NOOP " + std::string(1000, 'x') + "\r\nb NOOP\r\n";
    for (std::size_t chunk : {0u, 1u, 100u}) {
        EXPECT_EQ(run_reader(input, chunk, 128).events, (std::vector<std::string>{"T", "C:b NOOP"})) << chunk;
    }
}

// Proves garbage bytes (NUL, 8-bit, bare CR) never break framing and a bare LF ends a line.
TEST(ImapReader, GarbageAndBareLf) {
    const std::string input = std::string("\0\xff\r\x01 x\r\n", 8) + "a NOOP\nb NOOP\r\n";
    const ReaderRun r = run_reader(input, 1);
    ASSERT_EQ(r.events.size(), 3u);
    EXPECT_EQ(r.events[1], "C:a NOOP");
    EXPECT_EQ(r.events[2], "C:b NOOP");
}

// Proves a huge announced size saturates instead of overflowing.
TEST(ImapReader, HugeLiteralSize) {
    const ReaderRun r = run_reader("a LOGIN {99999999999999999999999}\r\nb NOOP\r\n", 0, 64);
    ASSERT_EQ(r.events.size(), 2u);
    EXPECT_EQ(r.events[1], "C:b NOOP");
}

ImapCommand parse_ok(std::string_view text) {
    ImapCommand c;
    const ParseResult r = parse_command(text, c);
    EXPECT_TRUE(r.ok) << text << ": " << r.error;
    return c;
}

std::string parse_error(std::string_view text) {
    ImapCommand c;
    const ParseResult r = parse_command(text, c);
    EXPECT_FALSE(r.ok) << text;
    return std::string(r.error);
}

// Proves the string forms: atom, quoted with escapes, literal, INBOX case folding.
TEST(ImapParser, Strings) {
    ImapCommand c = parse_ok("a1 LOGIN \"de\\\"mo\" {3}\r\np w");
    EXPECT_EQ(c.tag, "a1");
    EXPECT_EQ(c.verb, Verb::login);
    EXPECT_EQ(c.arg1, "de\"mo");
    EXPECT_EQ(c.arg2, "p w");
    EXPECT_EQ(parse_ok("x SELECT inBox").arg1, "INBOX");
    EXPECT_EQ(parse_ok("x SELECT INBOX/sub").arg1, "INBOX/sub");
    parse_error("a LOGIN \"abc");
    parse_error("a LOGIN {5}\r\nab");  // Literal cut short.
    parse_error("a LOGIN \"a\\b\" c");
}

// Proves sequence sets, including "*", "$", reversed ranges, and refusals.
TEST(ImapParser, SequenceSets) {
    SequenceSet s;
    ASSERT_TRUE(parse_sequence_set("1:*", s));
    EXPECT_EQ(s.ranges[0].first, 1u);
    EXPECT_EQ(s.ranges[0].last, seq_star);
    ASSERT_TRUE(parse_sequence_set("2,4:7,9:8", s));
    ASSERT_EQ(s.ranges.size(), 3u);
    EXPECT_EQ(s.ranges[2].first, 8u);
    EXPECT_EQ(s.ranges[2].last, 9u);
    ASSERT_TRUE(parse_sequence_set("$", s));
    EXPECT_TRUE(s.saved);
    for (std::string_view bad : {"", "0", "1:", ",1", "1,,2", "4294967296", "a", "1:2:3", "$,1"}) {
        EXPECT_FALSE(parse_sequence_set(bad, s)) << bad;
    }
}

// Proves FETCH attributes: macros, sections, partials, PEEK, BINARY.
TEST(ImapParser, FetchAttributes) {
    ImapCommand c = parse_ok("a FETCH 1:* (FLAGS BODY.PEEK[1.2.HEADER.FIELDS (Subject \"From\")]<0.100> BODY[] UID)");
    ASSERT_EQ(c.fetch.size(), 4u);
    EXPECT_EQ(c.fetch[1].att, FetchAtt::body_section);
    EXPECT_TRUE(c.fetch[1].peek);
    EXPECT_EQ(c.fetch[1].section.part, (std::vector<std::uint32_t>{1, 2}));
    EXPECT_EQ(c.fetch[1].section.text, SectionText::header_fields);
    EXPECT_EQ(c.fetch[1].section.fields, (std::vector<std::string>{"SUBJECT", "FROM"}));
    EXPECT_TRUE(c.fetch[1].partial);
    EXPECT_EQ(c.fetch[1].partial_bytes, 100u);
    EXPECT_FALSE(c.fetch[2].peek);
    EXPECT_EQ(parse_ok("a FETCH 1 ALL").fetch.size(), 4u);
    EXPECT_EQ(parse_ok("a FETCH 1 FULL").fetch.size(), 5u);
    EXPECT_EQ(parse_ok("a FETCH 1 FAST").fetch.size(), 3u);
    EXPECT_EQ(parse_ok("a UID FETCH 1 BINARY.PEEK[1]<0.5>").fetch[0].att, FetchAtt::binary);
    EXPECT_EQ(parse_ok("a FETCH 1 BODY[3.MIME]").fetch[0].section.text, SectionText::mime);
    parse_error("a FETCH 1 BODY[MIME]");
    parse_error("a FETCH 1 BODY[0]");
    parse_error("a FETCH 1 BODY[1]<0.0>");
    parse_error("a FETCH 1 (FLAGS");
    parse_error("a FETCH 1 BINARY[1.TEXT]");
    parse_error("a FETCH 1 FLAGS (CHANGEDSINCE 5)");
}

// Proves SEARCH keys, nesting, RETURN options, CHARSET and the depth bound.
TEST(ImapParser, Search) {
    ImapCommand c = parse_ok("a SEARCH RETURN (MIN COUNT) CHARSET UTF-8 OR (FROM \"x y\" SEEN) DRAFT NOT 1:3 SINCE 1-Feb-2024 HEADER X-Spam yes");
    EXPECT_TRUE(c.esearch);
    EXPECT_EQ(c.search_return, search_return_min | search_return_count);
    ASSERT_EQ(c.search.children.size(), 4u);
    EXPECT_EQ(c.search.children[0].op, SearchOp::or_);
    EXPECT_EQ(c.search.children[0].children[0].children[0].text, "x y");
    EXPECT_EQ(c.search.children[1].op, SearchOp::not_);
    EXPECT_EQ(c.search.children[2].number, days_from_civil(2024, 2, 1));
    EXPECT_EQ(c.search.children[3].text, "X-SPAM");
    EXPECT_EQ(parse_ok("a SEARCH SENTBEFORE \"31-Dec-1999\"").search.children[0].number,
              days_from_civil(1999, 12, 31));
    EXPECT_EQ(parse_error("a SEARCH CHARSET ISO-2022-JP ALL"), "BADCHARSET");
    parse_error("a SEARCH SINCE 32-Jan-2024");
    parse_error("a SEARCH OR SEEN");
    parse_error("a SEARCH");
    parse_error("a SEARCH " + std::string(100, '(') + "ALL" + std::string(100, ')'));
}

// Proves STORE, COPY/MOVE, UID forms and flag parsing.
TEST(ImapParser, StoreCopy) {
    ImapCommand c = parse_ok("a UID STORE 1:5 -FLAGS.SILENT (\\Seen \\deleted $Label)");
    EXPECT_TRUE(c.uid);
    EXPECT_EQ(c.store_mode, StoreMode::remove);
    EXPECT_TRUE(c.silent);
    EXPECT_EQ(c.flags.flags, flag_seen | flag_deleted);
    EXPECT_EQ(c.flags.keywords, (std::vector<std::string>{"$Label"}));
    EXPECT_EQ(parse_ok("a STORE 1 FLAGS \\Flagged \\Draft").flags.flags, flag_flagged | flag_draft);
    EXPECT_EQ(parse_ok("a UID MOVE 1,3 Trash").verb, Verb::move);
    EXPECT_EQ(parse_ok("a UID EXPUNGE 4:*").set.ranges.size(), 1u);
    parse_error("a STORE 1 +FLAGS (\\Unknown)");
    parse_error("a UID NOOP");
    parse_error("a COPY 1");
}

// Proves LIST-EXTENDED, LIST-STATUS, STATUS, ENABLE, ID, AUTHENTICATE (SASL-IR).
TEST(ImapParser, MailboxCommands) {
    ImapCommand c = parse_ok("a LIST (SUBSCRIBED) \"\" (\"INBOX\" %) RETURN (CHILDREN STATUS (MESSAGES UNSEEN))");
    EXPECT_TRUE(c.list_subscribed);
    EXPECT_TRUE(c.list_return_children);
    EXPECT_EQ(c.patterns.size(), 2u);
    EXPECT_EQ(c.status_items, status_messages | status_unseen);
    EXPECT_EQ(parse_ok("a STATUS Sent (UIDNEXT UIDVALIDITY)").status_items, status_uidnext | status_uidvalidity);
    EXPECT_EQ(parse_ok("a ENABLE IMAP4rev2 UTF8=ACCEPT").patterns.size(), 2u);
    EXPECT_EQ(parse_ok("a ID (\"name\" \"x\" \"os\" NIL)").patterns.size(), 4u);
    ImapCommand auth = parse_ok("a AUTHENTICATE PLAIN AGRlbW8AZGVtbw==");
    EXPECT_TRUE(auth.have_initial_response);
    EXPECT_EQ(auth.arg2, "AGRlbW8AZGVtbw==");
    parse_error("a STATUS Sent (BOGUS)");
    parse_error("a LIST \"\"");
}

// Proves APPEND prefix parsing (flags, date) and that the date-time is exact.
TEST(ImapParser, AppendPrefix) {
    ImapCommand c;
    ASSERT_TRUE(parse_append_prefix("a APPEND Drafts (\\Draft) \"05-Dec-2023 10:00:00 +0100\" {12}", c));
    EXPECT_EQ(c.arg1, "Drafts");
    EXPECT_EQ(c.flags.flags, flag_draft);
    EXPECT_EQ(c.date, 1701766800);  // 09:00 UTC.
    EXPECT_TRUE(parse_append_prefix("a APPEND INBOX {0+}", c));
    EXPECT_FALSE(parse_append_prefix("a APPEND INBOX (\\Bogus) {1}", c));
    EXPECT_FALSE(parse_append_prefix("a LOGIN {1}", c));
    std::int64_t t = 0;
    EXPECT_FALSE(parse_date_time("05-Dec-2023 25:00:00 +0100", t));
    EXPECT_FALSE(parse_date_time("05-Xyz-2023 10:00:00 +0100", t));
    std::string out;
    append_date_time(out, 1701766800);
    EXPECT_EQ(out, "\"05-Dec-2023 09:00:00 +0000\"");
}

// Proves garbage never parses and never crashes: random bytes, truncations of valid commands.
TEST(ImapParser, GarbageAndTruncation) {
    const std::string valid = "a1 UID FETCH 1:*,5 (FLAGS BODY.PEEK[1.HEADER.FIELDS (A B)]<1.2> UID)";
    for (std::size_t n = 0; n < valid.size(); ++n) {
        ImapCommand c;
        (void)parse_command(valid.substr(0, n), c);
    }
    std::uint32_t x = 12345;
    for (int i = 0; i < 2000; ++i) {
        std::string s;
        for (int j = 0; j < 40; ++j) {
            x = x * 1103515245 + 12345;
            s.push_back(static_cast<char>(x >> 16));
        }
        ImapCommand c;
        (void)parse_command(s, c);
    }
    EXPECT_EQ(parse_error(""), "missing tag");
    EXPECT_EQ(parse_error("+ NOOP"), "missing tag");
    EXPECT_EQ(parse_error("a"), "missing command");
}

}  // namespace
}  // namespace rp::imap
