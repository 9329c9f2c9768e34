// tools/ringpost.cc: the admin command.
//
//   ringpost [--config FILE] store check|dump|stats|compact [--data DIR] [--shard N]
//   ringpost mailbox list ACCOUNT [MAILBOX] [--data DIR]
//   ringpost mailbox show ACCOUNT MAILBOX UID [--data DIR]     (raw message bytes on stdout)
//   ringpost mailbox cat ACCOUNT MAILBOX [--data DIR]          (every message, with sizes)
//   ringpost queue list | show ID                              (the relay's spool)
//   ringpost queue flush | retry ID | delete ID                (daemon stopped)
//   ringpost queue fill COUNT ADDRESS [BYTES]                  (benchmarks; daemon stopped)
//   ringpost user add|passwd ADDRESS [--accounts FILE]         (password from stdin)
//   ringpost user del ADDRESS | user list | user hash          (hash: print an argon2id hash)
//
// `user` edits the accounts file (default <data>/accounts, or [auth] accounts_file of
// --config) by rewriting it atomically; ringpostd re-reads it on SIGHUP.
//
// Commands read the store directly from <DIR>/shard-N/. Reading commands open it read-only,
// so they work offline or while ringpostd runs (they see what is durable). `store compact`
// writes, so the daemon must be stopped. Add a command group by adding a row to `groups`.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <map>
#include <memory>
#include <string>
#include <unordered_set>
#include <vector>

#include "core/clock.h"
#include "core/sync_io.h"
#include "config/config_parse.h"
#include "protocols/auth/account_db.h"
#include "protocols/auth/password.h"
#include "protocols/auth/scram.h"
#include "storage/mail_store.h"
#include "storage/segment.h"

using namespace rp;
using namespace rp::storage;

namespace {

struct Args {
    std::string data = "data";
    int shard = -1;  // All shards.
    std::vector<std::string> words;  // Positional arguments after the group.
    std::string accounts;            // Accounts file; empty: <data>/accounts.
    std::vector<std::string> domains;  // From --config: `user add` checks the domain.
};

using Command = int (*)(const Args&);

void usage() {
    std::fprintf(stderr,
                 "usage: ringpost [--config FILE] store check|dump|stats|compact [--data DIR] [--shard N]\n"
                 "       ringpost mailbox list ACCOUNT [MAILBOX] [--data DIR]\n"
                 "       ringpost mailbox show ACCOUNT MAILBOX UID [--data DIR]\n"
                 "       ringpost mailbox cat ACCOUNT MAILBOX [--data DIR]\n"
                 "       ringpost queue list | queue show ID [--data DIR]\n"
                 "       ringpost queue flush | queue retry ID | queue delete ID [--data DIR]  (daemon stopped)\n"
                 "       ringpost queue fill COUNT ADDRESS [BYTES] [--data DIR]  (benchmarks; daemon stopped)\n"
                 "       ringpost user add|passwd ADDRESS [--accounts FILE]  (password on stdin)\n"
                 "       ringpost user del ADDRESS | user list | user hash [--accounts FILE]\n");
}

std::vector<int> shard_ids(const Args& args) {
    std::vector<int> ids;
    if (DIR* d = ::opendir(args.data.c_str())) {
        while (dirent* e = ::readdir(d)) {
            int n = 0;
            char extra = 0;
            if (std::sscanf(e->d_name, "shard-%d%c", &n, &extra) == 1 && n >= 0 && n < 65536) {
                if (args.shard < 0 || args.shard == n) ids.push_back(n);
            }
        }
        ::closedir(d);
    }
    std::sort(ids.begin(), ids.end());
    return ids;
}

std::string shard_dir(const Args& args, int shard) { return args.data + "/shard-" + std::to_string(shard); }

struct Opened {
    SyncIo io;
    std::unique_ptr<MailStore> store;
};

std::unique_ptr<Opened> open_shard(const Args& args, int shard, bool read_only) {
    auto o = std::make_unique<Opened>();
    StoreOptions options;
    options.dir = shard_dir(args, shard);
    options.shard = static_cast<std::uint16_t>(shard);
    options.read_only = read_only;
    options.prewrite_bytes = 0;  // The daemon's default: a short-lived tool needs no zeros ahead.
    auto s = MailStore::open(o->io, RealClock::instance(), options);
    if (!s) {
        std::fprintf(stderr, "ringpost: shard %d: open failed: %s\n", shard,
                     std::string(status_name(s.status())).c_str());
        return nullptr;
    }
    o->store = std::move(*s);
    return o;
}

std::string read_all(const std::string& path) {
    std::string out;
    FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) return out;
    char buf[1 << 16];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
    std::fclose(f);
    return out;
}

std::vector<std::uint32_t> segment_ids(const std::string& dir) {
    std::vector<std::uint32_t> ids;
    if (DIR* d = ::opendir(dir.c_str())) {
        while (dirent* e = ::readdir(d)) {
            std::uint32_t id;
            if (segment_file_parse(e->d_name, id)) ids.push_back(id);
        }
        ::closedir(d);
    }
    std::sort(ids.begin(), ids.end());
    return ids;
}

// ---- store ----

void print_report(int shard, const OpenReport& r) {
    std::printf("shard %d: snapshot %s (lsn %u:%u), %llu records replayed, %llu torn bytes, "
                "%llu uncommitted transactions discarded\n",
                shard, r.snapshot_loaded ? "loaded" : "none", lsn_segment(r.snapshot_lsn),
                lsn_offset(r.snapshot_lsn), static_cast<unsigned long long>(r.records_replayed),
                static_cast<unsigned long long>(r.torn_bytes),
                static_cast<unsigned long long>(r.txns_discarded));
    for (const auto& d : r.damage) {
        std::printf("shard %d: DAMAGE segment %u offset %u: %s (%s)\n", shard, d.segment_id, d.offset,
                    d.what.c_str(), std::string(status_name(d.error)).c_str());
    }
    for (auto id : r.quarantined_mailboxes) std::printf("shard %d: QUARANTINED mailbox id %llu\n", shard,
                                                        static_cast<unsigned long long>(id));
}

int store_check(const Args& args) {
    int problems = 0;
    for (int shard : shard_ids(args)) {
        auto o = open_shard(args, shard, true);
        if (!o) {
            ++problems;
            continue;
        }
        print_report(shard, o->store->open_report());
        problems += static_cast<int>(o->store->open_report().damage.size());
        // Every record of every segment, including those below the snapshot.
        const std::string dir = shard_dir(args, shard);
        std::uint64_t records = 0;
        for (std::uint32_t id : segment_ids(dir)) {
            const std::string bytes = read_all(dir + "/" + segment_file_name(id));
            const auto span = std::span(reinterpret_cast<const std::byte*>(bytes.data()), bytes.size());
            if (!segment_header_decode(span)) {
                std::printf("shard %d: segment %u: bad header\n", shard, id);
                ++problems;
                continue;
            }
            SegmentScanner scan(span, segment_header_bytes);
            for (;;) {
                ScanItem item = scan.next();
                if (item.kind == ScanItem::Kind::end) break;
                if (item.kind == ScanItem::Kind::record) {
                    ++records;
                    continue;
                }
                const bool tail = id == segment_ids(dir).back() && !scan.resync(item.offset + 8);
                std::printf("shard %d: segment %u offset %u: %s%s\n", shard, id, item.offset,
                            std::string(status_name(item.error)).c_str(), tail ? " (tail)" : "");
                if (!tail) ++problems;
                if (tail) break;
                if (!item.header_ok) scan.resync(item.offset + 8);
            }
        }
        // Every body served must read back with good checksums.
        std::uint64_t bodies = 0, bad = 0;
        for (const auto& [id, body] : o->store->index().bodies) {
            auto handle = o->store->body_open({static_cast<std::uint16_t>(shard), id});
            if (!handle) continue;
            std::string out(handle->bytes, '\0');
            if (body_read_blocking(*handle, {reinterpret_cast<std::byte*>(out.data()), out.size()}) != Status::ok) {
                std::printf("shard %d: body %llu: checksum mismatch\n", shard, static_cast<unsigned long long>(id));
                ++bad;
            }
            ++bodies;
        }
        problems += static_cast<int>(bad);
        std::printf("shard %d: %llu records checked, %llu bodies read, %llu bad\n", shard,
                    static_cast<unsigned long long>(records), static_cast<unsigned long long>(bodies),
                    static_cast<unsigned long long>(bad));
    }
    std::printf("%s\n", problems == 0 ? "store check: ok" : "store check: PROBLEMS FOUND");
    return problems == 0 ? 0 : 1;
}

int store_dump(const Args& args) {
    for (int shard : shard_ids(args)) {
        const std::string dir = shard_dir(args, shard);
        for (std::uint32_t id : segment_ids(dir)) {
            const std::string bytes = read_all(dir + "/" + segment_file_name(id));
            const auto span = std::span(reinterpret_cast<const std::byte*>(bytes.data()), bytes.size());
            auto header = segment_header_decode(span);
            std::printf("shard %d segment %u: %zu bytes, header %s\n", shard, id, bytes.size(),
                        header ? "ok" : std::string(status_name(header.status())).c_str());
            SegmentScanner scan(span, segment_header_bytes);
            for (;;) {
                ScanItem item = scan.next();
                if (item.kind == ScanItem::Kind::end) break;
                if (item.kind == ScanItem::Kind::bad) {
                    std::printf("  %10u  BAD %s\n", item.offset, std::string(status_name(item.error)).c_str());
                    if (!item.header_ok && !scan.resync(item.offset + 8)) break;
                    continue;
                }
                std::printf("  %10u  %-15s txn %-8llu scope %u:%-8llu %u bytes\n", item.offset,
                            std::string(record_type_name(static_cast<RecordType>(item.header.type))).c_str(),
                            static_cast<unsigned long long>(item.header.txn),
                            static_cast<unsigned>(scope_kind(item.header.scope)),
                            static_cast<unsigned long long>(scope_id(item.header.scope)),
                            item.header.payload_bytes);
            }
        }
    }
    return 0;
}

int store_stats(const Args& args) {
    for (int shard : shard_ids(args)) {
        auto o = open_shard(args, shard, true);
        if (!o) return 1;
        const StoreStats s = o->store->stats();
        std::printf("shard %d: %u segments, %llu segment bytes, %llu live body bytes, %llu snapshot bytes\n"
                    "shard %d: %llu accounts, %llu mailboxes, %llu messages, %llu bodies, %llu spool entries\n",
                    shard, s.segment_count, static_cast<unsigned long long>(s.segment_bytes),
                    static_cast<unsigned long long>(s.live_body_bytes),
                    static_cast<unsigned long long>(s.snapshot_bytes), shard,
                    static_cast<unsigned long long>(s.accounts), static_cast<unsigned long long>(s.mailboxes),
                    static_cast<unsigned long long>(s.messages), static_cast<unsigned long long>(s.bodies),
                    static_cast<unsigned long long>(s.spool_entries));
        const OpenReport& r = o->store->open_report();
        std::printf("shard %d: durable lsn %u:%u, snapshot lsn %u:%u; opened from %s, %llu records "
                    "(%llu bytes) replayed\n",
                    shard, lsn_segment(s.durable_lsn), lsn_offset(s.durable_lsn),
                    lsn_segment(s.snapshot_lsn), lsn_offset(s.snapshot_lsn),
                    r.snapshot_loaded ? "snapshot" : "log only",
                    static_cast<unsigned long long>(r.records_replayed),
                    static_cast<unsigned long long>(r.bytes_replayed));
    }
    return 0;
}

struct Waits final : FlushDone, SnapshotDone, CompactDone {
    Status status = Status::ok;
    std::uint64_t bytes = 0;
    void flush_done(Status s) override { status = s; }
    void snapshot_done(Status s) override { status = s; }
    void compact_done(Status s, std::uint64_t b) override {
        status = s;
        bytes = b;
    }
};

Status flush(Opened& o, Waits& w) {
    for (;;) {
        const Status s = o.store->flush(&w);
        if (s == Status::again) return Status::ok;
        if (s != Status::ok) return s;
        o.io.run_pending();
        if (w.status != Status::ok) return w.status;
    }
}

int store_compact(const Args& args) {
    std::map<int, std::unique_ptr<Opened>> shards;
    for (int shard : shard_ids(Args{args.data, -1, {}, {}, {}})) {
        auto o = open_shard(args, shard, false);
        if (!o) return 1;
        shards[shard] = std::move(o);
    }
    for (auto& [shard, o] : shards) {
        if (args.shard >= 0 && args.shard != shard) continue;
        MailStore& store = *o->store;
        const StoreStats before = store.stats();
        // Other shards' references keep bodies of this one alive.
        const std::uint64_t epoch = store.gc_begin();
        std::unordered_set<std::uint64_t> foreign;
        for (auto& [other, oo] : shards) {
            for (auto id : oo->store->foreign_refs(static_cast<std::uint16_t>(shard))) foreign.insert(id);
        }
        Waits w;
        auto dropped = store.gc_finish(epoch, foreign);
        if (!dropped || flush(*o, w) != Status::ok) {
            std::fprintf(stderr, "ringpost: shard %d: gc failed\n", shard);
            return 1;
        }
        std::uint64_t moved = 0;
        while (store.compact_needed()) {
            if (store.compact_step(16u << 20, w) != Status::ok) break;
            o->io.run_pending();
            if (w.status != Status::ok || flush(*o, w) != Status::ok) {
                std::fprintf(stderr, "ringpost: shard %d: compaction failed\n", shard);
                return 1;
            }
            moved += w.bytes;
        }
        for (int i = 0; i < 2; ++i) {  // Two snapshots: segments go only below both.
            if (store.snapshot(w) == Status::ok) o->io.run_pending();
        }
        const StoreStats after = store.stats();
        std::printf("shard %d: dropped %zu bodies, moved %llu bytes, segments %u -> %u, bytes %llu -> %llu "
                    "(live %llu)\n",
                    shard, *dropped, static_cast<unsigned long long>(moved), before.segment_count,
                    after.segment_count, static_cast<unsigned long long>(before.segment_bytes),
                    static_cast<unsigned long long>(after.segment_bytes),
                    static_cast<unsigned long long>(after.live_body_bytes));
    }
    return 0;
}

// ---- mailbox ----

std::string flag_text(const MailStore& store, const std::string& account, const Message& m) {
    std::string out;
    const char* names[] = {"\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft"};
    for (int i = 0; i < 5; ++i) {
        if (m.flags & (1u << i)) out += std::string(out.empty() ? "" : " ") + names[i];
    }
    for (const auto& k : store.keyword_names(account, m.keywords)) out += (out.empty() ? "" : " ") + k;
    return "(" + out + ")";
}

// Opens every shard read-only and returns the one holding `account`.
std::map<int, std::unique_ptr<Opened>> open_all(const Args& args) {
    std::map<int, std::unique_ptr<Opened>> out;
    for (int shard : shard_ids(Args{args.data, -1, {}, {}, {}})) {
        auto o = open_shard(args, shard, true);
        if (o) out[shard] = std::move(o);
    }
    return out;
}

Opened* owner_of(std::map<int, std::unique_ptr<Opened>>& shards, const std::string& account) {
    for (auto& [id, o] : shards) {
        if (o->store->account_exists(account)) return o.get();
    }
    return nullptr;
}

int mailbox_list(const Args& args) {
    if (args.words.empty()) return usage(), 2;
    auto shards = open_all(args);
    const std::string& account = args.words[0];
    Opened* o = owner_of(shards, account);
    if (!o) {
        std::fprintf(stderr, "ringpost: no account %s\n", account.c_str());
        return 1;
    }
    if (args.words.size() == 1) {
        const auto boxes = o->store->mailbox_list(account);
        for (const auto& m : *boxes) {
            std::printf("%-24s messages %-6u uidvalidity %-10u uidnext %-6u highestmodseq %llu%s%s\n",
                        m.name.c_str(), m.message_count, m.uidvalidity, m.uidnext,
                        static_cast<unsigned long long>(m.highest_modseq),
                        m.special_use ? " special-use" : "", m.quarantined ? " QUARANTINED" : "");
        }
        return 0;
    }
    auto msgs = o->store->messages(account, args.words[1]);
    if (!msgs) {
        std::fprintf(stderr, "ringpost: %s: %s\n", args.words[1].c_str(), std::string(status_name(msgs.status())).c_str());
        return 1;
    }
    for (const auto& m : *msgs) {
        char date[64];
        const std::time_t t = m.internal_date;
        std::tm tm{};
        ::gmtime_r(&t, &tm);
        std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", &tm);
        std::printf("%u\t%llu\t%s\tmodseq %llu\tbody %u:%llu\t%s\n", m.uid, static_cast<unsigned long long>(m.size),
                    date, static_cast<unsigned long long>(m.modseq), m.body.shard,
                    static_cast<unsigned long long>(m.body.id), flag_text(*o->store, account, m).c_str());
    }
    return 0;
}

// Reads one message's bytes, wherever its body lives. Prints the reason and returns false
// when it cannot.
bool read_message(std::map<int, std::unique_ptr<Opened>>& shards, const Message& m,
                  std::string& out) {
    auto body_shard = shards.find(m.body.shard);
    if (body_shard == shards.end()) {
        std::fprintf(stderr, "ringpost: uid %u: body shard %u missing\n", m.uid, m.body.shard);
        return false;
    }
    auto handle = body_shard->second->store->body_open(m.body);
    if (!handle) {
        std::fprintf(stderr, "ringpost: uid %u: body: %s\n", m.uid,
                     std::string(status_name(handle.status())).c_str());
        return false;
    }
    out.assign(handle->bytes, '\0');
    const Status s = body_read_blocking(*handle, {reinterpret_cast<std::byte*>(out.data()), out.size()});
    if (s != Status::ok) {
        std::fprintf(stderr, "ringpost: uid %u: body: %s\n", m.uid, std::string(status_name(s)).c_str());
        return false;
    }
    return true;
}

int mailbox_show(const Args& args) {
    if (args.words.size() != 3) return usage(), 2;
    auto shards = open_all(args);
    const std::string& account = args.words[0];
    Opened* o = owner_of(shards, account);
    if (!o) {
        std::fprintf(stderr, "ringpost: no account %s\n", account.c_str());
        return 1;
    }
    const auto uid = static_cast<std::uint32_t>(std::strtoul(args.words[2].c_str(), nullptr, 10));
    auto m = o->store->message(account, args.words[1], uid);
    if (!m) {
        std::fprintf(stderr, "ringpost: %s %s %u: %s\n", account.c_str(), args.words[1].c_str(), uid,
                     std::string(status_name(m.status())).c_str());
        return 1;
    }
    std::string out;
    if (!read_message(shards, *m, out)) return 1;
    std::fwrite(out.data(), 1, out.size(), stdout);
    return 0;
}

// Every message of a mailbox, each as "=== UID <uid> <bytes>\n", its raw bytes and "\n":
// for scripts and tests that check many messages at once.
int mailbox_cat(const Args& args) {
    if (args.words.size() != 2) return usage(), 2;
    auto shards = open_all(args);
    const std::string& account = args.words[0];
    Opened* o = owner_of(shards, account);
    if (!o) {
        std::fprintf(stderr, "ringpost: no account %s\n", account.c_str());
        return 1;
    }
    auto list = o->store->messages(account, args.words[1]);
    if (!list) {
        std::fprintf(stderr, "ringpost: %s %s: %s\n", account.c_str(), args.words[1].c_str(),
                     std::string(status_name(list.status())).c_str());
        return 1;
    }
    std::string out;
    int status = 0;
    for (const Message& m : *list) {
        if (!read_message(shards, m, out)) {
            status = 1;
            continue;
        }
        std::printf("=== UID %u %zu\n", m.uid, out.size());
        std::fwrite(out.data(), 1, out.size(), stdout);
        std::fputc('\n', stdout);
    }
    return status;
}

// ---- user ----

std::string accounts_file(const Args& args) {
    return args.accounts.empty() ? args.data + "/accounts" : args.accounts;
}

// One line from stdin; without echo when stdin is a terminal.
bool read_password(std::string& out) {
    const bool tty = isatty(STDIN_FILENO) != 0;
    termios saved{};
    if (tty) {
        std::fprintf(stderr, "password: ");
        tcgetattr(STDIN_FILENO, &saved);
        termios quiet = saved;
        quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
        tcsetattr(STDIN_FILENO, TCSANOW, &quiet);
    }
    out.clear();
    int c = 0;
    while ((c = std::fgetc(stdin)) != EOF && c != '\n') out.push_back(static_cast<char>(c));
    if (tty) {
        tcsetattr(STDIN_FILENO, TCSANOW, &saved);
        std::fprintf(stderr, "\n");
    }
    if (!out.empty() && out.back() == '\r') out.pop_back();
    return !out.empty();
}

int user_change(const Args& args, bool adding) {
    if (args.words.size() != 1) return usage(), 2;
    const std::string& address = args.words[0];
    const std::string path = accounts_file(args);
    std::string error;
    auto db = rp::auth::AccountDb::load(path, &error);
    if (!db) return std::fprintf(stderr, "ringpost: %s\n", error.c_str()), 1;
    const bool exists = db->find(address) != nullptr;
    if (adding && exists) return std::fprintf(stderr, "ringpost: %s exists\n", address.c_str()), 1;
    if (!adding && !exists) {
        return std::fprintf(stderr, "ringpost: no account %s\n", address.c_str()), 1;
    }
    std::size_t at = address.rfind('@');
    if (adding && !args.domains.empty() && at != std::string::npos &&
        std::find(args.domains.begin(), args.domains.end(), address.substr(at + 1)) ==
            args.domains.end()) {
        return std::fprintf(stderr, "ringpost: %s is not a [[domain]] of the config\n",
                            address.substr(at + 1).c_str()), 1;
    }
    std::string password;
    if (!read_password(password)) return std::fprintf(stderr, "ringpost: empty password\n"), 1;
    auto hash = rp::auth::password_hash(password);
    // SCRAM-SHA-256 keys next to the argon2id hash: SCRAM logins verify with HMACs only.
    auto scram = rp::auth::scram_credential_make(password);
    std::fill(password.begin(), password.end(), '\0');
    if (!hash || !scram) return std::fprintf(stderr, "ringpost: hashing failed\n"), 1;
    if (db->put(address, *hash, rp::auth::scram_credential_format(*scram)) != Status::ok) {
        return std::fprintf(stderr, "ringpost: \"%s\" is not local@domain\n", address.c_str()), 1;
    }
    if (db->save(path, &error) != Status::ok) return std::fprintf(stderr, "ringpost: %s\n", error.c_str()), 1;
    std::printf("%s %s (reload ringpostd with SIGHUP)\n", adding ? "added" : "changed", address.c_str());
    return 0;
}

int user_add(const Args& args) { return user_change(args, true); }
int user_passwd(const Args& args) { return user_change(args, false); }

int user_del(const Args& args) {
    if (args.words.size() != 1) return usage(), 2;
    const std::string path = accounts_file(args);
    std::string error;
    auto db = rp::auth::AccountDb::load(path, &error);
    if (!db) return std::fprintf(stderr, "ringpost: %s\n", error.c_str()), 1;
    if (db->remove(args.words[0]) != Status::ok) {
        return std::fprintf(stderr, "ringpost: no account %s\n", args.words[0].c_str()), 1;
    }
    if (db->save(path, &error) != Status::ok) return std::fprintf(stderr, "ringpost: %s\n", error.c_str()), 1;
    std::printf("deleted %s (its mailbox stays in the store)\n", args.words[0].c_str());
    return 0;
}

int user_list(const Args& args) {
    std::string error;
    auto db = rp::auth::AccountDb::load(accounts_file(args), &error);
    if (!db) return std::fprintf(stderr, "ringpost: %s\n", error.c_str()), 1;
    for (const auto& [address, credential] : db->entries()) {
        std::printf("%s\t%s\n", address.c_str(), credential.substr(0, credential.find('$', 10)).c_str());
    }
    return 0;
}

int user_hash(const Args& /*args*/) {
    std::string password;
    if (!read_password(password)) return std::fprintf(stderr, "ringpost: empty password\n"), 1;
    auto hash = rp::auth::password_hash(password);
    if (!hash) return std::fprintf(stderr, "ringpost: hashing failed\n"), 1;
    std::printf("%s\n", hash->c_str());
    return 0;
}

// ---- queue (the relay's spool) ----
// list/show read (daemon running or not); flush/retry/delete write, so ringpostd must be
// stopped (like store compact): its next start scans the spool at once.

std::string queue_id(std::uint64_t id) {
    char text[24];
    std::snprintf(text, sizeof text, "%013llX", static_cast<unsigned long long>(id));
    return text;
}

const char* rcpt_state_name(RcptState state) {
    switch (state) {
        case RcptState::pending: return "pending";
        case RcptState::delivered: return "delivered";
        case RcptState::deferred: return "deferred";
        case RcptState::bounced: return "bounced";
        case RcptState::failed: return "failed";
    }
    return "?";
}

std::string time_text(std::int64_t unix_seconds) {
    if (unix_seconds <= 0) return "-";
    const std::time_t t = static_cast<std::time_t>(unix_seconds);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buffer[32];
    std::strftime(buffer, sizeof buffer, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buffer;
}

void print_entry(const SpoolEntry& e, bool detail) {
    std::printf("%s %s %llu bytes from=<%s> %zu recipients\n", queue_id(e.id).c_str(),
                time_text(e.arrival).c_str(), static_cast<unsigned long long>(e.body_bytes),
                e.sender.c_str(), e.recipients.size());
    for (const SpoolRecipient& r : e.recipients) {
        std::printf("  %-9s attempts=%u next=%s <%s>%s%s\n", rcpt_state_name(r.state), r.attempts,
                    time_text(r.next_attempt).c_str(), r.address.c_str(), r.reply.empty() ? "" : " ",
                    r.reply.c_str());
    }
    if (detail) std::printf("  client: %s\n", e.client.c_str());
}

bool parse_queue_id(const std::string& text, std::uint64_t& id) {
    char* end = nullptr;
    id = std::strtoull(text.c_str(), &end, 16);
    return !text.empty() && end != nullptr && *end == '\0';
}

int queue_list(const Args& args) {
    std::size_t count = 0;
    for (int shard : shard_ids(args)) {
        auto o = open_shard(args, shard, true);
        if (!o) return 1;
        for (const auto& [id, entry] : o->store->spool_all()) {
            print_entry(entry, false);
            ++count;
        }
    }
    std::printf("%zu queued messages\n", count);
    return 0;
}

int queue_show(const Args& args) {
    std::uint64_t id = 0;
    if (args.words.size() != 1 || !parse_queue_id(args.words[0], id)) return usage(), 2;
    for (int shard : shard_ids(args)) {
        auto o = open_shard(args, shard, true);
        if (!o) return 1;
        const SpoolEntry* e = o->store->spool_get(id);
        if (e == nullptr) continue;
        print_entry(*e, true);
        auto body = o->store->body_open(e->body);
        if (!body) {
            std::fprintf(stderr, "ringpost: body: %s\n", std::string(status_name(body.status())).c_str());
            return 1;
        }
        std::vector<std::byte> bytes(body->bytes);
        if (body_read_blocking(*body, bytes) != Status::ok) return 1;
        std::printf("\n");
        std::fwrite(bytes.data(), 1, bytes.size(), stdout);
        return 0;
    }
    std::fprintf(stderr, "ringpost: no queued message %s\n", args.words[0].c_str());
    return 1;
}

// Applies `change` to the matching entries (all with an empty id list) of every shard.
int queue_change(const Args& args, bool all, bool remove) {
    std::uint64_t id = 0;
    if (all ? !args.words.empty() : (args.words.size() != 1 || !parse_queue_id(args.words[0], id))) {
        return usage(), 2;
    }
    const std::int64_t now = RealClock::instance().wall_seconds();
    std::size_t changed = 0;
    for (int shard : shard_ids(args)) {
        auto o = open_shard(args, shard, false);
        if (!o) return 1;
        std::vector<std::uint64_t> ids;
        for (const auto& [entry_id, entry] : o->store->spool_all()) {
            if (all || entry_id == id) ids.push_back(entry_id);
        }
        for (const std::uint64_t entry_id : ids) {
            const SpoolEntry* e = o->store->spool_get(entry_id);
            for (std::uint32_t i = 0; e != nullptr && i < e->recipients.size(); ++i) {
                const SpoolRecipient r = e->recipients[i];
                if (rcpt_state_final(r.state)) continue;
                const Status s = remove ? o->store->spool_update(entry_id, i, RcptState::failed, 0, r.attempts,
                                                                 "deleted by the operator")
                                        : o->store->spool_update(entry_id, i, r.state == RcptState::pending
                                                                                  ? RcptState::pending
                                                                                  : RcptState::deferred,
                                                                 now, r.attempts, r.reply);
                if (s != Status::ok) {
                    std::fprintf(stderr, "ringpost: %s: %s\n", queue_id(entry_id).c_str(),
                                 std::string(status_name(s)).c_str());
                    return 1;
                }
                e = o->store->spool_get(entry_id);
            }
            if (remove) (void)o->store->spool_remove(entry_id);
            ++changed;
        }
        Waits w;
        if (flush(*o, w) != Status::ok) {
            std::fprintf(stderr, "ringpost: shard %d: write failed (is ringpostd running?)\n", shard);
            return 1;
        }
    }
    if (!all && changed == 0) {
        std::fprintf(stderr, "ringpost: no queued message %s\n", args.words[0].c_str());
        return 1;
    }
    std::printf("%zu messages %s\n", changed, remove ? "deleted" : "due now");
    return 0;
}

// For benchmarks (bench/relay_queue_memory.py): writes COUNT deferred messages of about
// BYTES each (default 800), due in an hour, round-robin over the existing shards, through
// the store API as ringpostd would. "%d" in ADDRESS becomes the message number.
int queue_fill(const Args& args) {
    if (args.words.size() < 2 || args.words.size() > 3) return usage(), 2;
    const std::uint64_t count = std::strtoull(args.words[0].c_str(), nullptr, 10);
    const std::uint64_t bytes = args.words.size() == 3 ? std::strtoull(args.words[2].c_str(), nullptr, 10) : 800;
    const std::vector<int> ids = shard_ids(args);
    if (count == 0 || bytes < 200 || bytes > (1u << 20) || ids.empty()) return usage(), 2;
    std::vector<std::unique_ptr<Opened>> shards;
    for (int shard : ids) {
        shards.push_back(open_shard(args, shard, false));
        if (!shards.back()) return 1;
    }
    const std::int64_t now = RealClock::instance().wall_seconds();
    std::string filler(bytes, 'x');
    for (std::size_t i = 0; i < filler.size(); i += 78) filler[i] = '\n';
    for (std::uint64_t n = 0; n < count; ++n) {
        Opened& o = *shards[n % shards.size()];
        std::string address = args.words[1];
        if (const auto at = address.find("%d"); at != std::string::npos) address.replace(at, 2, std::to_string(n));
        std::string body = "From: <bench@example.test>\nTo: <" + address + ">\nSubject: queued " +
                           std::to_string(n) + "\n\n";
        // bounds: bytes >= 200 > the header; the body ends up `bytes` long.
        body += std::string_view(filler).substr(0, bytes > body.size() ? bytes - body.size() : 0);
        auto ref = o.store->body_put(std::as_bytes(std::span(body.data(), body.size())));
        if (!ref) return std::fprintf(stderr, "ringpost: body: %s\n", std::string(status_name(ref.status())).c_str()), 1;
        SpoolEntry e;
        e.sender = "bench@example.test";
        e.body = *ref;
        e.body_bytes = body.size();
        e.arrival = now;
        e.client = "ringpost queue fill";
        e.recipients.push_back({address, RcptState::deferred, now + 3600, 1, "451 4.4.1 queue fill"});
        o.store->txn_begin();
        auto id = o.store->spool_add(std::move(e));
        if (!id) return std::fprintf(stderr, "ringpost: spool: %s\n", std::string(status_name(id.status())).c_str()), 1;
        if (!o.store->txn_commit(nullptr)) return 1;
        if (n % 4096 != 4095) continue;
        for (auto& each : shards) {  // Bounded staging: a batch per 4096 messages.
            Waits w;
            if (flush(*each, w) != Status::ok) return std::fprintf(stderr, "ringpost: write failed\n"), 1;
        }
    }
    for (auto& o : shards) {
        Waits w;
        if (flush(*o, w) != Status::ok) return std::fprintf(stderr, "ringpost: write failed\n"), 1;
    }
    std::printf("%llu messages queued\n", static_cast<unsigned long long>(count));
    return 0;
}

int queue_flush(const Args& args) { return queue_change(args, true, false); }
int queue_retry(const Args& args) { return queue_change(args, false, false); }
int queue_delete(const Args& args) { return queue_change(args, false, true); }

struct Sub {
    const char* name;
    Command run;
};
struct Group {
    const char* name;
    std::vector<Sub> subs;
};

const std::vector<Group> groups = {
    {"store", {{"check", store_check}, {"dump", store_dump}, {"stats", store_stats}, {"compact", store_compact}}},
    {"mailbox", {{"list", mailbox_list}, {"show", mailbox_show}, {"cat", mailbox_cat}}},
    {"queue", {{"list", queue_list}, {"show", queue_show}, {"flush", queue_flush}, {"retry", queue_retry},
               {"delete", queue_delete}, {"fill", queue_fill}}},
    {"user", {{"add", user_add}, {"passwd", user_passwd}, {"del", user_del}, {"list", user_list},
              {"hash", user_hash}}},
};

}  // namespace

int main(int argc, char** argv) {
    // `--config FILE` may stand anywhere: it names the data folder through server.data_dir.
    std::vector<std::string> argv_rest;
    Args args;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        std::string config_path;
        if (a == "--config" && i + 1 < argc) {
            config_path = argv[++i];
        } else if (a.rfind("--config=", 0) == 0) {
            config_path = a.substr(9);
        } else {
            argv_rest.push_back(a);
            continue;
        }
        std::string error;
        auto settings = rp::config::parse_file(config_path, &error);
        if (!settings) {
            std::fprintf(stderr, "ringpost: %s\n", error.c_str());
            return 1;
        }
        args.data = settings->server.data_dir;
        args.accounts = rp::auth::accounts_path(*settings);
        for (const auto& domain : settings->domains) args.domains.push_back(domain.name);
    }
    if (argv_rest.size() == 2 && argv_rest[0] == "user" &&
        (argv_rest[1] == "list" || argv_rest[1] == "hash")) {
        // No positional words needed.
    } else if (argv_rest.size() < 2) {
        return usage(), 2;
    }
    for (std::size_t i = 2; i < argv_rest.size(); ++i) {
        const std::string& a = argv_rest[i];
        if (a == "--data" && i + 1 < argv_rest.size()) {
            args.data = argv_rest[++i];
        } else if (a.rfind("--data=", 0) == 0) {
            args.data = a.substr(7);
        } else if (a == "--accounts" && i + 1 < argv_rest.size()) {
            args.accounts = argv_rest[++i];
        } else if (a == "--shard" && i + 1 < argv_rest.size()) {
            args.shard = std::atoi(argv_rest[++i].c_str());
        } else {
            args.words.push_back(a);
        }
    }
    for (const Group& g : groups) {
        if (argv_rest[0] != g.name) continue;
        for (const Sub& s : g.subs) {
            if (argv_rest[1] == s.name) return s.run(args);
        }
    }
    usage();
    return 2;
}
