// tests/unit/imap_test_harness.h: a fake ImapHost (an in-memory account) and a fake session
// driver, shared by the IMAP unit tests, the golden transcript runner, the fuzz target and
// the benchmark.
//
// The fake account is user "demo" with password "demo" ("later" gets Status::again). It has
// INBOX (three sample messages: plain, multipart with an attachment, a forwarded message),
// Sent, Drafts, Trash, Junk and Archive/2023. In asynchronous mode every completion is queued
// and runs when the driver finds the server paused, as a real cross-core host would.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "protocols/imap/imap_mime.h"
#include "protocols/imap/imap_server.h"

namespace rp::imap::testing {

inline constexpr std::string_view sample_plain =
    "From: Alice Example <alice@example.test>\r\n"
    "To: demo@example.test\r\n"
    "Subject: Hello\r\n"
    "Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"
    "Message-ID: <1@example.test>\r\n"
    "\r\n"
    "Hello, world.\r\n"
    "Second line.\r\n";

inline constexpr std::string_view sample_multipart =
    "From: \"Bob, Jr.\" <bob@example.test>\r\n"
    "To: demo@example.test, Carol <carol@example.test>\r\n"
    "Cc: team: dave@example.test, erin@example.test;\r\n"
    "Subject: Report\r\n"
    "Date: Wed, 15 Nov 2023 08:00:00 +0100\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: multipart/mixed; boundary=\"XYZ\"\r\n"
    "\r\n"
    "Preamble.\r\n"
    "--XYZ\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "\r\n"
    "See the attachment.\r\n"
    "--XYZ\r\n"
    "Content-Type: application/octet-stream; name=\"data.bin\"\r\n"
    "Content-Transfer-Encoding: base64\r\n"
    "Content-Disposition: attachment; filename=\"data.bin\"\r\n"
    "\r\n"
    "AAECAwQ=\r\n"
    "--XYZ--\r\n"
    "Epilogue.\r\n";

inline constexpr std::string_view sample_forward =
    "From: carol@example.test\r\n"
    "To: demo@example.test\r\n"
    "Subject: Fwd: Hello\r\n"
    "Date: Thu, 16 Nov 2023 10:00:00 -0500\r\n"
    "Content-Type: message/rfc822\r\n"
    "\r\n"
    "From: Alice Example <alice@example.test>\r\n"
    "Subject: Hello\r\n"
    "\r\n"
    "Hello, world.\r\n";

struct FakeMessage {
    std::uint32_t uid = 0;
    std::uint32_t flags = 0;
    std::vector<std::string> keywords;
    std::int64_t date = 0;
    std::uint64_t modseq = 1;
    std::uint64_t token = 0;
    std::shared_ptr<const std::string> bytes;
    std::shared_ptr<const MimeMessage> mime;
};

struct FakeMailbox {
    std::uint32_t special_use = 0;
    bool subscribed = true;
    std::uint32_t uidvalidity = 1700000000;
    std::uint32_t uidnext = 1;
    std::uint64_t modseq = 1;
    std::vector<FakeMessage> messages;
};

class FakeImapHost : public ImapHost {
public:
    bool async = false;
    ImapServer* server = nullptr;
    std::map<std::string, FakeMailbox> boxes;
    std::vector<std::string> account_keywords{"$Forwarded", "Junk"};
    std::string selected;
    std::deque<std::function<void()>> queue;
    std::map<std::uint64_t, std::shared_ptr<const std::string>> bodies;
    std::uint64_t next_token = 1;
    std::vector<std::string> calls;  // One line per host call, for tests.
    std::uint64_t fetch_calls = 0;
    bool append_open = false;
    std::string append_mailbox;
    std::string append_bytes;
    std::uint32_t append_flags = 0;
    std::vector<std::string> append_keywords;
    std::int64_t append_date = 0;

    FakeImapHost() {
        boxes["INBOX"];
        boxes["Sent"].special_use = 1;
        boxes["Drafts"].special_use = 2;
        boxes["Trash"].special_use = 4;
        boxes["Junk"].special_use = 8;
        boxes["Archive"].subscribed = false;
        boxes["Archive/2023"].special_use = 16;
        add("INBOX", sample_plain, 1700000000, 0);
        add("INBOX", sample_multipart, 1700035200, 1u << 0);
        add("INBOX", sample_forward, 1700146800, 0);
    }

    std::uint32_t add(const std::string& box, std::string_view bytes, std::int64_t date, std::uint32_t flags) {
        FakeMailbox& b = boxes[box];
        FakeMessage m;
        m.uid = b.uidnext++;
        m.flags = flags;
        m.date = date;
        m.modseq = ++b.modseq;
        m.token = next_token++;
        m.bytes = std::make_shared<const std::string>(bytes);
        m.mime = std::make_shared<const MimeMessage>(mime_parse(*m.bytes));
        bodies[m.token] = m.bytes;
        b.messages.push_back(std::move(m));
        return b.messages.back().uid;
    }

    std::string body_bytes(const ImapStreamPiece& piece) const {
        const auto it = bodies.find(piece.body_token);
        RP_ASSERT(it != bodies.end());
        RP_ASSERT(piece.offset + piece.bytes <= it->second->size());
        return it->second->substr(piece.offset, piece.bytes);
    }

    bool run_one() {
        if (queue.empty()) return false;
        auto f = std::move(queue.front());
        queue.pop_front();
        f();
        return true;
    }

    // ---- events from "other sessions" ----
    void deliver(const std::string& box, std::string_view bytes) {
        const std::uint32_t uid = add(box, bytes, 1700200000, 0);
        if (selected == box && server != nullptr) server->mailbox_exists(uid);
    }
    void other_expunge(std::uint32_t uid) {
        auto& msgs = boxes[selected].messages;
        for (auto it = msgs.begin(); it != msgs.end(); ++it) {
            if (it->uid != uid) continue;
            msgs.erase(it);
            if (server) server->mailbox_expunged(uid);
            return;
        }
    }
    void other_flags(std::uint32_t uid, std::uint32_t flags) {
        for (auto& m : boxes[selected].messages) {
            if (m.uid != uid) continue;
            m.flags = flags;
            std::vector<std::string_view> kw(m.keywords.begin(), m.keywords.end());
            if (server) server->mailbox_flags(ImapFlagUpdate{uid, flags, kw, m.modseq});
        }
    }

    // ---- ImapHost ----
    void login(std::string_view user, std::string_view password) override {
        calls.push_back("login " + std::string(user));
        const Status st = user == "later" ? Status::again
                          : (user == "demo" && password == "demo") ? Status::ok : Status::refused;
        later([this, st] { server->login_done(st); });
    }

    void list(bool with_status) override {
        calls.push_back(with_status ? "list status" : "list");
        later([this] {
            std::vector<ImapMailboxEntry> entries;
            for (const auto& [name, box] : boxes) {
                ImapMailboxEntry e;
                e.name = name;
                e.special_use = box.special_use;
                e.subscribed = box.subscribed;
                e.status = status_of(box);
                entries.push_back(e);
            }
            server->list_done(Status::ok, entries);
        });
    }

    void status(std::string_view mailbox) override {
        calls.push_back("status " + std::string(mailbox));
        later([this, name = std::string(mailbox)] {
            const auto it = boxes.find(name);
            if (it == boxes.end()) return server->status_done(Status::not_found, {});
            server->status_done(Status::ok, status_of(it->second));
        });
    }

    void mailbox_op(MailboxOp op, std::string_view name, std::string_view new_name) override {
        calls.push_back("mailbox_op " + std::string(name));
        later([this, op, a = std::string(name), b = std::string(new_name)] {
            Status st = Status::ok;
            const bool exists = boxes.count(a) != 0;
            switch (op) {
                case MailboxOp::create:
                    st = exists ? Status::exists : a.empty() ? Status::invalid : Status::ok;
                    if (st == Status::ok) boxes[a].uidvalidity = 1700000100;
                    break;
                case MailboxOp::delete_:
                    st = a == "INBOX" ? Status::refused : !exists ? Status::not_found : Status::ok;
                    if (st == Status::ok) boxes.erase(a);
                    break;
                case MailboxOp::rename:
                    st = !exists ? Status::not_found : boxes.count(b) ? Status::exists : Status::ok;
                    if (st == Status::ok) {
                        boxes[b] = std::move(boxes[a]);
                        boxes.erase(a);
                    }
                    break;
                case MailboxOp::subscribe:
                case MailboxOp::unsubscribe:
                    if (exists) boxes[a].subscribed = op == MailboxOp::subscribe;
                    else st = Status::not_found;
                    break;
            }
            server->mailbox_op_done(st);
        });
    }

    void select(std::string_view mailbox, bool read_only) override {
        calls.push_back(std::string(read_only ? "examine " : "select ") + std::string(mailbox));
        later([this, name = std::string(mailbox)] {
            const auto it = boxes.find(name);
            if (it == boxes.end()) return server->select_done(Status::not_found, {});
            selected = name;
            std::vector<std::uint32_t> uids;
            std::uint32_t unseen = 0;
            for (const auto& m : it->second.messages) {
                uids.push_back(m.uid);
                if (unseen == 0 && (m.flags & flag_seen) == 0) unseen = m.uid;
            }
            std::vector<std::string_view> kw(account_keywords.begin(), account_keywords.end());
            ImapSelectInfo info;
            info.uidvalidity = it->second.uidvalidity;
            info.uidnext = it->second.uidnext;
            info.highest_modseq = it->second.modseq;
            info.keywords = kw;
            info.uids = uids;
            info.first_unseen_uid = unseen;
            server->select_done(Status::ok, info);
        });
    }

    void mailbox_close() override {
        calls.push_back("close");
        selected.clear();
    }

    void fetch(const ImapFetchRequest& request) override {
        ++fetch_calls;
        later([this, uids = std::vector<std::uint32_t>(request.uids.begin(), request.uids.end()),
               needs = request.needs] {
            auto& msgs = boxes[selected].messages;
            for (std::uint32_t uid : uids) {
                for (const auto& m : msgs) {
                    if (m.uid != uid) continue;
                    std::vector<std::string_view> kw(m.keywords.begin(), m.keywords.end());
                    ImapMessageData d;
                    d.uid = m.uid;
                    d.flags = m.flags;
                    d.keywords = kw;
                    d.internal_date = m.date;
                    d.size = m.bytes->size();
                    d.modseq = m.modseq;
                    d.mime = m.mime.get();
                    if (needs & fetch_need_bytes) d.bytes = std::as_bytes(std::span<const char>(*m.bytes));
                    d.body_token = m.token;
                    server->fetch_message(d);
                }
            }
            server->fetch_done(Status::ok);
        });
    }

    void store(std::span<const std::uint32_t> uids, StoreMode mode, std::uint32_t flags,
               std::span<const std::string> keywords) override {
        calls.push_back("store");
        later([this, u = std::vector<std::uint32_t>(uids.begin(), uids.end()), mode, flags,
               kws = std::vector<std::string>(keywords.begin(), keywords.end())] {
            FakeMailbox& box = boxes[selected];
            std::vector<ImapFlagUpdate> updates;
            std::vector<std::vector<std::string_view>> kw_store;
            kw_store.reserve(u.size());
            for (auto& m : box.messages) {
                if (!std::binary_search(u.begin(), u.end(), m.uid)) continue;
                if (mode == StoreMode::replace) {
                    m.flags = flags;
                    m.keywords = kws;
                } else if (mode == StoreMode::add) {
                    m.flags |= flags;
                    for (const auto& k : kws) {
                        if (std::find(m.keywords.begin(), m.keywords.end(), k) == m.keywords.end()) m.keywords.push_back(k);
                    }
                } else {
                    m.flags &= ~flags;
                    for (const auto& k : kws) std::erase(m.keywords, k);
                }
                m.modseq = ++box.modseq;
                kw_store.emplace_back(m.keywords.begin(), m.keywords.end());
                updates.push_back(ImapFlagUpdate{m.uid, m.flags, kw_store.back(), m.modseq});
            }
            server->store_done(Status::ok, updates);
        });
    }

    void copy(std::span<const std::uint32_t> uids, std::string_view mailbox, bool move) override {
        calls.push_back(std::string(move ? "move " : "copy ") + std::string(mailbox));
        later([this, u = std::vector<std::uint32_t>(uids.begin(), uids.end()), dest = std::string(mailbox), move] {
            if (!boxes.count(dest)) return server->copy_done(Status::not_found, 0, {});
            std::vector<std::pair<std::uint32_t, std::uint32_t>> map;
            std::vector<FakeMessage> moved;
            auto& src = boxes[selected].messages;
            for (const auto& m : src) {
                if (std::binary_search(u.begin(), u.end(), m.uid)) moved.push_back(m);
            }
            for (const auto& m : moved) {
                FakeMailbox& d = boxes[dest];
                FakeMessage c = m;
                c.uid = d.uidnext++;
                d.messages.push_back(c);
                map.emplace_back(m.uid, c.uid);
            }
            if (move) std::erase_if(src, [&](const FakeMessage& m) { return std::binary_search(u.begin(), u.end(), m.uid); });
            if (dest == selected && !move) {
                for (const auto& [from, to] : map) server->mailbox_exists(to);
            }
            server->copy_done(Status::ok, boxes[dest].uidvalidity, map);
        });
    }

    void expunge(std::span<const std::uint32_t> uids) override {
        calls.push_back("expunge");
        later([this, u = std::vector<std::uint32_t>(uids.begin(), uids.end())] {
            std::vector<std::uint32_t> gone;
            auto& msgs = boxes[selected].messages;
            std::erase_if(msgs, [&](const FakeMessage& m) {
                const bool hit = (m.flags & flag_deleted) && (u.empty() || std::binary_search(u.begin(), u.end(), m.uid));
                if (hit) gone.push_back(m.uid);
                return hit;
            });
            server->expunge_done(Status::ok, gone);
        });
    }

    void append_begin(const ImapAppendRequest& r) override {
        calls.push_back("append_begin " + std::string(r.mailbox) + " " + std::to_string(r.bytes));
        append_mailbox = std::string(r.mailbox);
        append_flags = r.flags;
        append_keywords.assign(r.keywords.begin(), r.keywords.end());
        append_date = r.internal_date;
        append_bytes.clear();
        later([this, exists = boxes.count(append_mailbox) != 0] {
            append_open = exists;
            server->append_ready(exists ? Status::ok : Status::not_found);
        });
    }
    void append_data(std::span<const std::byte> bytes) override {
        RP_ASSERT(append_open);
        append_bytes.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    }
    void append_end() override {
        RP_ASSERT(append_open);
        append_open = false;
        calls.push_back("append_end " + std::to_string(append_bytes.size()));
        later([this] {
            const std::uint32_t uid = add(append_mailbox, append_bytes, append_date ? append_date : 1700300000, append_flags);
            boxes[append_mailbox].messages.back().keywords = append_keywords;
            if (append_mailbox == selected) server->mailbox_exists(uid);
            server->append_done(Status::ok, boxes[append_mailbox].uidvalidity, uid);
        });
    }
    void append_abort() override {
        calls.push_back("append_abort");
        append_open = false;
    }

private:
    void later(std::function<void()> f) {
        if (async) queue.push_back(std::move(f));
        else f();
    }
    static ImapMailboxStatus status_of(const FakeMailbox& box) {
        ImapMailboxStatus s;
        s.messages = static_cast<std::uint32_t>(box.messages.size());
        s.uidnext = box.uidnext;
        s.uidvalidity = box.uidvalidity;
        s.highest_modseq = box.modseq;
        for (const auto& m : box.messages) {
            if ((m.flags & flag_seen) == 0) ++s.unseen;
            if (m.flags & flag_deleted) ++s.deleted;
            s.size += m.bytes->size();
        }
        return s;
    }
};

inline ImapServerConfig test_config() {
    ImapServerConfig c;
    c.hostname = "mail.example.test";
    c.login_requires_tls = false;
    return c;
}

inline std::span<const std::byte> as_bytes(std::string_view s) {
    return std::as_bytes(std::span<const char>(s.data(), s.size()));
}

struct DriveResult {
    std::string output;  // Text and streamed bytes, in order.
    bool closed = false;
    bool stuck = false;  // Paused on the host with nothing queued: a bug.
};

// Sends pending output (streams resolved from the host) into `r`.
inline void pump(ImapServer& server, FakeImapHost& host, DriveResult& r) {
    while (server.has_output()) {
        std::string text;
        server.take_output(text);
        r.output += text;
        if (server.has_stream()) r.output += host.body_bytes(server.take_stream());
    }
    server.on_output_drained();
}

// Feeds `input` in chunks of `chunk` bytes (0: whole), running queued host completions
// whenever the server waits. Keeps unconsumed input like a real driver.
inline void drive_more(ImapServer& server, FakeImapHost& host, std::string_view input,
                       std::size_t chunk, DriveResult& r, std::string& pending) {
    std::size_t pos = 0;
    for (;;) {
        pump(server, host, r);
        if (server.wants_close()) {
            r.closed = true;
            return;
        }
        if (server.waiting_for_tls()) {
            pending.clear();  // RFC 3501 6.2.1: no plaintext command injection.
            server.tls_started();
            continue;
        }
        if (host.run_one()) continue;
        if (server.paused()) {
            if (!server.has_output()) {
                r.stuck = true;
                return;
            }
            continue;
        }
        if (!pending.empty()) {
            const std::size_t n = server.feed(as_bytes(pending));
            pending.erase(0, n);
            if (n > 0 || server.has_output() || server.paused() || server.wants_close()) continue;
        }
        if (pos >= input.size()) return;
        const std::size_t take = chunk == 0 ? input.size() - pos : std::min(chunk, input.size() - pos);
        pending.append(input.substr(pos, take));
        pos += take;
    }
}

inline DriveResult drive(ImapServer& server, FakeImapHost& host, std::string_view input, std::size_t chunk) {
    DriveResult r;
    std::string pending;
    drive_more(server, host, input, chunk, r, pending);
    return r;
}

}  // namespace rp::imap::testing
