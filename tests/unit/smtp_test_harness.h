// tests/unit/smtp_test_harness.h: a fake SmtpHost and a fake session driver, shared by the
// SMTP unit tests, the golden transcript runner, the fuzz target and the benchmark.
//
// The fake host knows the domain example.test with users demo, alice, bob, postmaster and
// every local part that starts with "rcpt" (for the 1,000-recipient test); "temp@..." gets a
// temporary failure, "full@..." storage_full, other local users 550, other domains 554 unless
// relaying is allowed. Messages are kept whole so that tests can check bytes exactly.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "protocols/smtp/smtp_server.h"

namespace rp::smtp::testing {

struct FakeMessage {
    std::string queue_id;
    std::string sender;
    std::vector<std::string> recipients;
    std::string body;  // Concatenated pieces, Received: header first.
    SmtpMessageInfo info;
    bool ended = false;
    bool aborted = false;
};

class FakeHost : public SmtpHost {
public:
    // Settings a test may change.
    bool relay_allowed = false;
    bool synchronous_done = true;     // message_done() from inside message_end().
    Status done_status = Status::ok;  // What message_done() reports.
    Status begin_status = Status::ok; // Non-ok: message_begin() fails with it.
    Status mail_status = Status::ok;
    bool keep_bodies = true;          // False in benchmarks: count bytes only.

    SmtpServer* server = nullptr;
    std::vector<FakeMessage> messages;
    std::vector<std::string> events;  // "begin", "end", "abort" lines, in order.
    std::uint64_t data_bytes = 0;
    std::uint64_t data_piece_count = 0;
    bool done_pending = false;        // Asynchronous mode: message_done() still owed.
    unsigned next_id = 1;

    Status mail_check(const SmtpEnvelope& envelope) override {
        RP_ASSERT(envelope.sender != nullptr);
        return mail_status;
    }

    RcptVerdict rcpt_verdict(const SmtpEnvelope& /*envelope*/, const SmtpAddress& rcpt) override {
        // Local parts are looked up case-insensitively, as the real account table does.
        std::string local(rcpt.local_part());
        for (char& c : local) c = (c >= 'A' && c <= 'Z') ? static_cast<char>(c | 0x20) : c;
        const std::string_view domain = rcpt.domain();
        if (domain.empty()) return RcptVerdict::accept_local;  // <postmaster>
        if (domain != "example.test") {
            return relay_allowed ? RcptVerdict::accept_relay : RcptVerdict::relay_denied;
        }
        if (local == "temp") return RcptVerdict::temporary;
        if (local == "full") return RcptVerdict::storage_full;
        if (local == "demo" || local == "alice" || local == "bob" || local == "postmaster" ||
            local.compare(0, 4, "rcpt") == 0) {
            return RcptVerdict::accept_local;
        }
        return RcptVerdict::no_such_user;
    }

    Result<QueueId> message_begin(const SmtpEnvelope& envelope) override {
        RP_ASSERT(!envelope.recipients.empty());
        if (begin_status != Status::ok) return begin_status;
        char id[16];
        std::snprintf(id, sizeof(id), "4F%08X", next_id++);
        FakeMessage m;
        m.queue_id = id;
        m.sender = std::string(envelope.sender->text());
        for (const SmtpRecipient& r : envelope.recipients) {
            m.recipients.emplace_back(r.address.text());
        }
        if (keep_bodies || messages.empty()) {
            messages.push_back(std::move(m));
        } else {
            messages.back() = std::move(m);
        }
        std::string e = "begin " + std::string(id) + " from=<" + messages.back().sender + ">";
        e += " rcpt_count=" + std::to_string(envelope.recipients.size());
        e += envelope.smtputf8 ? " smtputf8" : "";
        e += envelope.body == SmtpBodyType::eight_bit_mime ? " 8bitmime" : "";
        e += envelope.declared_bytes ? " size=" + std::to_string(envelope.declared_bytes) : "";
        if (keep_bodies) events.push_back(e);
        return QueueId::from(id);
    }

    void message_data(std::span<const std::byte> piece) override {
        RP_ASSERT(!messages.empty());
        data_bytes += piece.size();
        data_piece_count++;
        if (keep_bodies) {
            messages.back().body.append(reinterpret_cast<const char*>(piece.data()),
                                        piece.size());
        }
    }

    void message_end(const SmtpMessageInfo& info) override {
        FakeMessage& m = messages.back();
        m.info = info;
        m.ended = true;
        if (keep_bodies) {
            events.push_back("end " + m.queue_id + " bytes=" + std::to_string(info.body_bytes) +
                             " bare_line_ends=" + std::to_string(info.bare_line_end_count) +
                             (info.chunked ? " chunked" : ""));
        }
        if (synchronous_done) {
            server->message_done(done_status);
        } else {
            done_pending = true;
        }
    }

    void message_abort() override {
        RP_ASSERT(!messages.empty());
        messages.back().aborted = true;
        if (keep_bodies) events.push_back("abort " + messages.back().queue_id);
    }

    std::int64_t now_unix_seconds() override { return 1'700'000'000; }  // Tue, 14 Nov 2023.
};

inline SmtpServerConfig test_config() {
    SmtpServerConfig c;
    c.hostname = "mail.example.test";
    c.message_bytes_max = 1u << 20;
    c.recipients_max = 1000;
    c.line_bytes_max = 1000;
    c.output_bytes_high = 4096;
    c.errors_max = 50;
    return c;
}

inline SmtpSessionInfo test_session() {
    SmtpSessionInfo s;
    s.client_address = "192.0.2.7";
    s.client_name = "client.example.net";
    return s;
}

// A fake session driver: feeds `input` in pieces of `chunk_bytes` (0 = all at once) the way
// the real driver must (keep unconsumed bytes, drain output, honour pause and close), and
// returns everything the server wrote.
struct DriveResult {
    std::string output;
    bool closed = false;
    std::size_t unconsumed_bytes = 0;  // Input left when the server closed.
};

inline DriveResult drive(SmtpServer& server, FakeHost& host, std::string_view input,
                         std::size_t chunk_bytes) {
    DriveResult r;
    server.greet();
    server.take_output(r.output);
    std::string pending;
    std::size_t offset = 0;
    if (chunk_bytes == 0) chunk_bytes = input.size() + 1;
    while (!server.wants_close()) {
        if (offset < input.size()) {
            const std::size_t n = std::min(chunk_bytes, input.size() - offset);
            pending.append(input.substr(offset, n));
            offset += n;
        } else if (pending.empty() && !host.done_pending) {
            break;
        }
        while (true) {
            const std::size_t used =
                server.feed(std::as_bytes(std::span<const char>(pending.data(), pending.size())));
            pending.erase(0, used);
            server.take_output(r.output);
            if (server.wants_close()) break;
            if (server.paused() && host.done_pending) {
                host.done_pending = false;
                server.message_done(host.done_status);
                continue;
            }
            if (server.paused()) break;
            if (pending.empty()) break;
            // Output was blocked: it has just been drained, so feed again.
        }
        if (offset >= input.size() && (pending.empty() || server.paused()) && !host.done_pending) {
            break;
        }
    }
    r.closed = server.wants_close();
    r.unconsumed_bytes = pending.size() + (input.size() - offset);
    if (!r.closed) server.connection_lost();
    return r;
}

}  // namespace rp::smtp::testing
