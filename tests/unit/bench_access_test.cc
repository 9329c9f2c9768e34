// tests/unit/bench_access_test.cc: ringpost-bench's POP3 and IMAP response readers, its
// base64, and the pop3/imap options.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tools/bench/bench_access.h"
#include "tools/bench/bench_text.h"

namespace rp::bench {
namespace {

// Proves a RETR reply is one reply: its lines are counted, the stuffing dot is not part of
// the body bytes, and the next reply follows.
TEST(BenchPop3Reply, MultilineWithStuffing) {
    Pop3ReplyReader reader;
    ASSERT_EQ(reader.feed("+OK 20 octets\r\nSubject: x\r\n\r\n..dot\r\n.\r\n+OK bye\r\n"),
              Status::ok);
    auto reply = reader.next(true);
    ASSERT_TRUE(reply.ok());
    EXPECT_TRUE(reply->ok);
    EXPECT_EQ(reply->line, "+OK 20 octets");
    EXPECT_EQ(reply->line_count, 3u);
    EXPECT_EQ(reply->body_bytes, std::string("Subject: x\r\n\r\n.dot\r\n").size());
    auto bye = reader.next(false);
    ASSERT_TRUE(bye.ok());
    EXPECT_EQ(bye->line, "+OK bye");
    EXPECT_EQ(reader.next(false).status(), Status::again);
}

// Trickle test: one byte at a time gives "need more" until the terminator's last byte, for an
// empty LIST and for a message.
TEST(BenchPop3Reply, Trickle) {
    for (const std::string& bytes : {std::string("+OK 0 messages\r\n.\r\n"),
                                    std::string("+OK\r\nline one\r\n.\r\n"),
                                    std::string("+OK\r\na\r\n.x\r\n\r\n.\r\n")}) {
        Pop3ReplyReader reader;
        for (std::size_t i = 0; i < bytes.size(); i++) {
            ASSERT_EQ(reader.feed(std::string_view(&bytes[i], 1)), Status::ok);
            auto reply = reader.next(true);
            if (i + 1 < bytes.size()) {
                ASSERT_EQ(reply.status(), Status::again) << bytes << " at " << i;
            } else {
                ASSERT_TRUE(reply.ok()) << bytes;
                EXPECT_TRUE(reply->ok);
            }
        }
    }
}

// Proves -ERR is one line even where a multi-line reply was expected, and garbage is refused.
TEST(BenchPop3Reply, ErrAndGarbage) {
    Pop3ReplyReader reader;
    ASSERT_EQ(reader.feed("-ERR no such message\r\nhello\r\n"), Status::ok);
    auto reply = reader.next(true);
    ASSERT_TRUE(reply.ok());
    EXPECT_FALSE(reply->ok);
    EXPECT_EQ(reader.next(false).status(), Status::invalid);
}

// Proves an untagged FETCH with a literal is one response, whose literal bytes are counted,
// and that EXISTS and tagged replies are parsed.
TEST(BenchImapResponse, FetchLiteralExistsTagged) {
    ImapResponseReader reader;
    const std::string body = "Subject: x\r\n\r\n{5}\r\nline)\r\n";  // Looks like syntax inside.
    ASSERT_EQ(reader.feed("* 12 EXISTS\r\n* 1 FETCH (BODY[] {" + std::to_string(body.size()) +
                          "}\r\n" + body + ")\r\na7 OK [READ-ONLY] done\r\n"),
              Status::ok);
    auto exists = reader.next();
    ASSERT_TRUE(exists.ok());
    EXPECT_EQ(exists->kind, ImapResponse::Kind::untagged);
    EXPECT_EQ(exists->word, "EXISTS");
    EXPECT_EQ(exists->number, 12u);
    auto fetch = reader.next();
    ASSERT_TRUE(fetch.ok());
    EXPECT_EQ(fetch->word, "FETCH");
    EXPECT_EQ(fetch->number, 1u);
    EXPECT_EQ(fetch->literal_count, 1u);
    EXPECT_EQ(fetch->literal_bytes, body.size());
    auto tagged = reader.next();
    ASSERT_TRUE(tagged.ok());
    EXPECT_EQ(tagged->kind, ImapResponse::Kind::tagged);
    EXPECT_EQ(tagged->tag, "a7");
    EXPECT_EQ(tagged->word, "OK");
    EXPECT_EQ(reader.next().status(), Status::again);
}

// Trickle test: a FETCH with two literals, one byte at a time, is "need more" until the
// final CRLF.
TEST(BenchImapResponse, Trickle) {
    const std::string bytes = "* 3 FETCH (BODY[HEADER] {4}\r\nab\r\n BODY[TEXT] {0}\r\n)\r\n";
    ImapResponseReader reader;
    for (std::size_t i = 0; i < bytes.size(); i++) {
        ASSERT_EQ(reader.feed(std::string_view(&bytes[i], 1)), Status::ok);
        auto response = reader.next();
        if (i + 1 < bytes.size()) {
            ASSERT_EQ(response.status(), Status::again) << i;
        } else {
            ASSERT_TRUE(response.ok());
            EXPECT_EQ(response->literal_count, 2u);
            EXPECT_EQ(response->literal_bytes, 4u);
        }
    }
}

// Proves continuations and malformed lines: "+ go" is a continuation, a line without a space
// is invalid, and the reader goes on after it.
TEST(BenchImapResponse, ContinuationAndBad) {
    ImapResponseReader reader;
    ASSERT_EQ(reader.feed("+ go ahead\r\ngarbage\r\n* BYE\r\n"), Status::ok);
    EXPECT_EQ(reader.next()->kind, ImapResponse::Kind::continuation);
    EXPECT_EQ(reader.next().status(), Status::invalid);
    auto bye = reader.next();
    ASSERT_TRUE(bye.ok());
    EXPECT_EQ(bye->word, "BYE");
}

// Proves base64 against RFC 4648 section 10's test vectors.
TEST(BenchText, Base64) {
    EXPECT_EQ(base64_encode(""), "");
    EXPECT_EQ(base64_encode("f"), "Zg==");
    EXPECT_EQ(base64_encode("fo"), "Zm8=");
    EXPECT_EQ(base64_encode("foo"), "Zm9v");
    EXPECT_EQ(base64_encode("foobar"), "Zm9vYmFy");
    EXPECT_EQ(base64_encode(std::string("\0u\0p", 4)), "AHUAcA==");
}

Status parse(AccessProtocol protocol, std::vector<const char*> args, AccessOptions& out,
             std::string& error) {
    out.protocol = protocol;
    return parse_access_options(args, out, error);
}

// Proves the ports follow --tls, --idle sets the session count, and protocol-specific options
// are refused for the other protocol.
TEST(BenchAccessOptions, DefaultsAndErrors) {
    std::string error;
    AccessOptions pop3;
    ASSERT_EQ(parse(AccessProtocol::pop3, {"--tls", "--window", "8", "--dele"}, pop3, error),
              Status::ok);
    EXPECT_EQ(pop3.common.port, 2995);
    EXPECT_EQ(pop3.window, 8u);
    EXPECT_TRUE(pop3.dele);
    AccessOptions imap;
    ASSERT_EQ(parse(AccessProtocol::imap, {"--idle", "50", "--chunk=100", "--starttls"}, imap, error),
              Status::ok);
    EXPECT_EQ(imap.common.port, 2143);
    EXPECT_EQ(imap.common.session_count, 50u);
    EXPECT_EQ(imap.chunk, 100u);
    AccessOptions bad;
    EXPECT_EQ(parse(AccessProtocol::imap, {"--dele"}, bad, error), Status::invalid);
    EXPECT_NE(error.find("--dele"), std::string::npos);
    AccessOptions quote;
    EXPECT_EQ(parse(AccessProtocol::imap, {"--user", "a\"b"}, quote, error), Status::invalid);
}

}  // namespace
}  // namespace rp::bench
