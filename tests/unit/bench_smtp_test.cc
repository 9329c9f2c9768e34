// tests/unit/bench_smtp_test.cc: ringpost-bench's SMTP reply reader, options and report.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tools/bench/bench_options.h"
#include "tools/bench/bench_report.h"
#include "tools/bench/bench_smtp.h"

namespace rp::bench {
namespace {

// Proves a multi-line EHLO reply is one reply, with PIPELINING found among its keywords.
TEST(BenchSmtpReply, MultilineEhlo) {
    SmtpReplyReader reader;
    ASSERT_EQ(reader.feed("250-mail.test Hello\r\n250-SIZE 1000\r\n250-pipelining\r\n"
                          "250 8BITMIME\r\n220 next\r\n"),
              Status::ok);
    auto reply = reader.next();
    ASSERT_TRUE(reply.ok());
    EXPECT_EQ(reply->code, 250);
    EXPECT_TRUE(reply->pipelining);
    auto second = reader.next();
    ASSERT_TRUE(second.ok());
    EXPECT_EQ(second->code, 220);
    EXPECT_FALSE(second->pipelining);
    EXPECT_EQ(reader.next().status(), Status::again);
}

// Trickle test: one byte at a time gives "need more" until the reply's last byte.
TEST(BenchSmtpReply, Trickle) {
    const std::string bytes = "250-first\r\n250-PIPELINING\r\n250 last\r\n";
    SmtpReplyReader reader;
    for (std::size_t i = 0; i < bytes.size(); i++) {
        ASSERT_EQ(reader.feed(std::string_view(&bytes[i], 1)), Status::ok);
        auto reply = reader.next();
        if (i + 1 < bytes.size()) {
            ASSERT_EQ(reply.status(), Status::again) << i;
        } else {
            ASSERT_TRUE(reply.ok());
            EXPECT_EQ(reply->code, 250);
            EXPECT_TRUE(reply->pipelining);
        }
    }
}

// Proves bare-LF replies and a bare code ("354") parse, and garbage is refused.
TEST(BenchSmtpReply, LooseAndBad) {
    SmtpReplyReader reader;
    ASSERT_EQ(reader.feed("354\n451 4.3.0 try later\n"), Status::ok);
    EXPECT_EQ(reader.next()->code, 354);
    EXPECT_EQ(reader.next()->code, 451);
    ASSERT_EQ(reader.feed("hello\r\n"), Status::ok);
    EXPECT_EQ(reader.next().status(), Status::invalid);
    SmtpReplyReader big;
    const std::string line = "250-" + std::string(1000, 'x') + "\r\n";
    Status status = Status::ok;
    for (int i = 0; i < 100 && status == Status::ok; i++) status = big.feed(line);
    EXPECT_EQ(status, Status::too_big);
}

// Proves size ranges and durations parse with their suffixes, and bad ones are refused.
TEST(BenchOptions, SizesAndDurations) {
    EXPECT_EQ(parse_size_range("4096")->low, 4096u);
    EXPECT_EQ(parse_size_range("4k")->high, 4096u);
    auto range = parse_size_range("1k-100k");
    ASSERT_TRUE(range.ok());
    EXPECT_EQ(range->low, 1024u);
    EXPECT_EQ(range->high, 102400u);
    EXPECT_EQ(parse_size_range("2M")->low, 2u << 20);
    EXPECT_FALSE(parse_size_range("100k-1k").ok());
    EXPECT_FALSE(parse_size_range("0").ok());
    EXPECT_FALSE(parse_size_range("x").ok());
    EXPECT_FALSE(parse_size_range("").ok());
    EXPECT_DOUBLE_EQ(*parse_duration_s("10"), 10);
    EXPECT_DOUBLE_EQ(*parse_duration_s("2.5s"), 2.5);
    EXPECT_DOUBLE_EQ(*parse_duration_s("500ms"), 0.5);
    EXPECT_DOUBLE_EQ(*parse_duration_s("2m"), 120);
    EXPECT_FALSE(parse_duration_s("soon").ok());
}

// Proves the smtp command line sets every field, and defaults bound the run.
TEST(BenchOptions, SmtpCommandLine) {
    const std::vector<const char*> args = {
        "--host", "::1", "--port=2526", "--threads", "2", "--sessions", "50", "--messages",
        "20000", "--size", "1k-8k", "--rcpts", "3", "--pipelining", "--to", "u%d@x.test",
        "--per-session", "10", "--json", "--timeout", "5s"};
    SmtpOptions options;
    std::string error;
    ASSERT_EQ(parse_smtp_options(args, options, error), Status::ok) << error;
    EXPECT_EQ(options.common.host, "::1");
    EXPECT_EQ(options.common.port, 2526);
    EXPECT_EQ(options.common.thread_count, 2u);
    EXPECT_EQ(options.common.session_count, 50u);
    EXPECT_EQ(options.common.message_count, 20000u);
    EXPECT_EQ(options.size.high, 8192u);
    EXPECT_EQ(options.recipient_count, 3u);
    EXPECT_TRUE(options.pipelining);
    EXPECT_EQ(options.to, "u%d@x.test");
    EXPECT_EQ(options.messages_per_session, 10u);
    EXPECT_TRUE(options.common.json);
    EXPECT_EQ(options.common.timeout_ms, 5000u);

    SmtpOptions defaults;
    ASSERT_EQ(parse_smtp_options({}, defaults, error), Status::ok);
    EXPECT_EQ(defaults.common.port, 2525);
    EXPECT_EQ(defaults.common.message_count, 1000u);  // Never unbounded.

    const std::vector<const char*> bad = {"--sessions", "0"};
    EXPECT_EQ(parse_smtp_options(bad, defaults, error), Status::invalid);
    EXPECT_NE(error.find("--sessions"), std::string::npos);
    const std::vector<const char*> unknown = {"--frobnicate"};
    EXPECT_EQ(parse_smtp_options(unknown, defaults, error), Status::invalid);
    const std::vector<const char*> missing = {"--port"};
    EXPECT_EQ(parse_smtp_options(missing, defaults, error), Status::invalid);
}

// Proves %d spreads recipients, and filler lines never start with a dot and end in CRLF.
TEST(BenchSmtp, AddressesAndFiller) {
    EXPECT_EQ(smtp_expand_address("u%d@x.test", 42), "u42@x.test");
    EXPECT_EQ(smtp_expand_address("demo@example.test", 42), "demo@example.test");
    const std::string filler = make_filler(100000);
    ASSERT_EQ(filler.size(), 100000u);
    for (std::size_t at = 0; at < filler.size(); at = filler.find("\r\n", at) + 2) {
        ASSERT_NE(filler[at], '.') << at;
        if (filler.find("\r\n", at) == std::string::npos) break;
    }
    EXPECT_EQ(filler.find('\n'), 77u);  // 76 characters, then CRLF.
}

// Proves the JSON report carries the counts, percentiles in order and escaped error keys.
TEST(BenchReport, Json) {
    RunReport report;
    report.protocol = "smtp";
    report.target = "127.0.0.1:2525";
    report.elapsed_s = 2;
    report.attempted = 10;
    report.completed = 8;
    report.failed = 2;
    report.errors["451 rcpt"] = 2;
    report.errors["a\"b"] = 1;
    report.steps.push_back({"accept", "dot to 250", {}});
    for (std::uint64_t v = 1; v <= 1000; v++) report.steps[0].latency_ns.record(v * 1000);
    const std::string json = format_json(report);
    EXPECT_NE(json.find("\"completed\":8"), std::string::npos) << json;
    EXPECT_NE(json.find("\"per_second\":4.000"), std::string::npos) << json;
    EXPECT_NE(json.find("\"451 rcpt\":2"), std::string::npos) << json;
    EXPECT_NE(json.find("\"a\\\"b\":1"), std::string::npos) << json;
    EXPECT_NE(json.find("\"error_count\":3"), std::string::npos) << json;
    EXPECT_NE(json.find("\"p99_9\":"), std::string::npos) << json;
    const std::string text = format_text(report);
    EXPECT_NE(text.find("451 rcpt: 2"), std::string::npos) << text;
}

// Proves a step the run never took (no samples) stays in the JSON but not in the table.
TEST(BenchReport, EmptyStepOnlyInJson) {
    RunReport report;
    report.protocol = "smtp";
    report.steps.push_back({"tls", "handshake", {}});
    report.steps.push_back({"accept", "dot to 250", {}});
    report.steps[1].latency_ns.record(5000);
    const std::string text = format_text(report);
    EXPECT_EQ(text.find("tls"), std::string::npos) << text;
    EXPECT_NE(text.find("accept"), std::string::npos) << text;
    EXPECT_NE(format_json(report).find("\"tls\":{\"count\":0"), std::string::npos);
}

}  // namespace
}  // namespace rp::bench
