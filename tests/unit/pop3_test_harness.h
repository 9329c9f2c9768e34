// tests/unit/pop3_test_harness.h: a fake Pop3Host and a driver loop, shared by the POP3 unit
// tests, the golden transcript runner and the fuzz target.
//
// The fake host knows user "demo" (password "demo", also "pass word" for "spacey") and a
// maildrop of messages given by the test. It answers synchronously or, in async mode, from
// a queue the driver runs after feed() returns (like the real session's deferred answers).
// Message bytes are handed over in pieces of `piece_bytes`.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "protocols/pop3/pop3_server.h"

namespace rp::pop3::testing {

inline std::span<const std::byte> as_bytes(std::string_view s) {
    return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

class FakeHost : public Pop3Host {
public:
    // Settings.
    bool async = false;
    Status login_status = Status::ok;      // Non-ok: every good login fails with it.
    Status read_status = Status::ok;       // Non-ok: message_end(status) ...
    bool read_fails_midway = false;        // ... after the first piece.
    Status update_status = Status::ok;
    std::size_t piece_bytes = 7;
    std::uint32_t uidvalidity = 1700000000;
    std::vector<std::string> messages;     // UIDs are 1, 2, ... (index + 1) * 10 - 9.

    // Observed.
    Pop3Server* server = nullptr;
    std::vector<std::string> events;
    std::vector<std::uint32_t> updated;
    std::deque<std::function<void()>> pending;

    std::uint32_t uid_of(std::size_t index) const {
        return static_cast<std::uint32_t>(index * 10 + 1);
    }

    void login(std::string_view user, std::string_view password) override {
        events.push_back("login " + std::string(user));
        const bool good = (user == "demo" && password == "demo") ||
                          (user == "spacey" && password == "pass word");
        run([this, good] {
            if (!good) {
                server->login_done(Status::refused, nullptr);
                return;
            }
            if (login_status != Status::ok) {
                server->login_done(login_status, nullptr);
                return;
            }
            Pop3Maildrop drop;
            drop.uidvalidity = uidvalidity;
            for (std::size_t i = 0; i < messages.size(); ++i) {
                drop.messages.push_back({uid_of(i), messages[i].size()});
            }
            server->login_done(Status::ok, &drop);
        });
    }

    void message_read(std::uint32_t index) override {
        events.push_back("read " + std::to_string(index));
        run([this, index] {
            if (read_status != Status::ok && !read_fails_midway) {
                server->message_end(read_status);
                return;
            }
            const std::string& body = messages.at(index);
            std::size_t at = 0;
            while (at < body.size()) {
                const std::size_t n = std::min(piece_bytes, body.size() - at);
                const bool more = server->message_data(as_bytes(std::string_view(body).substr(at, n)));
                at += n;
                if (read_fails_midway) {
                    server->message_end(read_status);
                    return;
                }
                if (!more) break;
            }
            server->message_end(Status::ok);
        });
    }

    void update(std::span<const std::uint32_t> uids) override {
        events.push_back("update " + std::to_string(uids.size()));
        updated.assign(uids.begin(), uids.end());
        run([this] { server->update_done(update_status); });
    }

private:
    void run(std::function<void()> f) {
        if (async) {
            pending.push_back(std::move(f));
        } else {
            f();
        }
    }
};

struct Transcript {
    std::string output;
    bool closed = false;
};

// Feeds `input` in chunks of `chunk` bytes (0: all at once), answering host work and
// pumping listings the way the session does. Bounded: every round consumes input, runs a
// host answer or produces output.
inline Transcript drive(Pop3Server& server, FakeHost& host, std::string_view input,
                        std::size_t chunk) {
    Transcript t;
    host.server = &server;
    server.greet();
    server.take_output(t.output);
    std::string kept;
    std::size_t at = 0;
    for (int rounds = 0; rounds < 10'000'000; ++rounds) {
        if (server.wants_close()) break;
        if (server.waiting_for_tls()) break;  // No TLS in these tests.
        if (!host.pending.empty() && server.paused()) {
            auto f = std::move(host.pending.front());
            host.pending.pop_front();
            f();
        } else if (server.listing()) {
            server.pump();
        } else if (!kept.empty() && !server.paused() &&
                   (chunk == 0 || kept.size() >= chunk || at == input.size())) {
            const std::size_t used = server.feed(as_bytes(kept));
            kept.erase(0, used);
        } else if (at < input.size()) {
            const std::size_t n = chunk == 0 ? input.size() - at : std::min(chunk, input.size() - at);
            kept.append(input.substr(at, n));
            at += n;
            if (!server.paused()) {
                const std::size_t used = server.feed(as_bytes(kept));
                kept.erase(0, used);
            }
        } else {
            break;  // Input used up and nothing pending.
        }
        server.take_output(t.output);
    }
    server.take_output(t.output);
    t.closed = server.wants_close();
    return t;
}

inline Pop3ServerConfig test_config() {
    Pop3ServerConfig config;
    config.hostname = "mail.example.test";
    return config;
}

}  // namespace rp::pop3::testing
