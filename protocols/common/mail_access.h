// protocols/common/mail_access.h: how POP3 and IMAP sessions read and change mailboxes.
//
// Owns: MailAccess (one per shard) owns the mailbox locks and the change watchers of the
//   mailboxes its shard owns, the table of its sessions' AccessClients, and the cross-shard
//   backlog (posts that met a full queue; retried every tick). Requests travel as heap
//   AccessJobs: whoever holds the pointer owns the job.
// Core: a session stays on the shard that accepted it. A mailbox belongs to the shard that
//   owns its account (Directory::find_account(addr)->owner_shard); a body belongs to the shard
//   named by BodyRef.shard (maybe a third one). Every request goes to the shard that owns
//   what it touches: a cross-core message (Shard::post) when that is another shard, a
//   Reactor::defer when it is this one, so callers have one code path: the reply ALWAYS
//   arrives later, on the client's shard, through AccessHandler::access_done().
// Durability: flags_set, expunge, append, copy, move, create, rename, remove, subscribe and
//   unsubscribe reply only once the store made the change durable (DurableDone after the
//   group commit).
// Locks: open with `exclusive` takes the mailbox's lock on its owner (POP3: one session per
//   maildrop); a second exclusive open gets Status::busy. The lock is released by the
//   client's destructor (or by an open reply that finds its client gone).
// Watchers: open with `watch` registers the client on the owner; after every durable change
//   (appends by SMTP delivery, append/copy/move/expunge/flags by any session) the owner posts
//   a MailboxEvent to each watcher (IMAP EXISTS/EXPUNGE/FETCH FLAGS and IDLE). Events carry
//   the change itself (the new messages, the new flags and keywords, the expunged UIDs), so a
//   watcher keeps its view current without reading the mailbox again. Every new message is
//   told exactly once per watch (the owner remembers the highest UID it told about), and
//   events to one watcher arrive in the order the owner made the changes. A watch ends with
//   AccessClient::unwatch() or with the client.
// Bounds: at most access_in_flight_max requests per client (Status::full beyond);
//   watchers_per_mailbox_max watchers per mailbox (Status::full beyond). Events and releases
//   are never refused: they are not counted against access_in_flight_max. Posts that meet a
//   full queue wait in a backlog of at most access_backlog_max (see there); a message that
//   is never handled because its shard stopped is freed by its discard (no leak), and a
//   request that reaches a shard whose MailAccess is gone is answered Status::cancelled.
// Errors: account or mailbox unknown -> not_found; locked -> busy; store errors as returned
//   by the store (quarantined, no_space, io, ...).
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/session.h"
#include "core/shard.h"
#include "protocols/common/shard_mail.h"
#include "storage/mail_store.h"

namespace rp::mail {

inline constexpr unsigned access_in_flight_max = 16;      // Requests per client.
inline constexpr unsigned watchers_per_mailbox_max = 4096;
// Cross-core messages a shard holds back while a queue to another shard is full. New
// requests are refused (Status::full) once half of it is used, so the rest keeps room for what
// admitted requests still owe (replies, releases: bounded by access_in_flight_max per client
// and the locks and watches granted); events beyond the whole of it are dropped and counted.
inline constexpr unsigned access_backlog_max = 4096;
inline constexpr unsigned access_backlog_requests_max = access_backlog_max / 2;

class MailAccess;

// The MailAccess of every shard.
using AccessCluster = ShardSlots<MailAccess>;

enum class AccessOp : std::uint8_t {
    open,       // Snapshot of a mailbox (+ lock with exclusive, + watch with watch).
    status,     // MailboxInfo of one mailbox.
    body_open,  // Pin a body for reading (runs on the shard in body.shard).
    flags_set,
    expunge,
    append,     // `bytes` become a new body in the owner's store, then a message.
    copy,
    move,
    list,       // Every mailbox of the account.
    create,
    rename,     // mailbox -> target
    remove,     // Delete a mailbox.
    subscribe,  // IMAP SUBSCRIBE of the name in `mailbox` (need not exist).
    unsubscribe,
    unlock,     // Fire and forget (no reply).
    unwatch,    // Fire and forget (no reply).
    release,    // Expunge `uids` (maybe none), then unlock; replies (AccessClient::release).
};

struct MessageEntry {
    std::uint32_t uid = 0;
    std::uint32_t flags = 0;
    std::uint64_t size = 0;
    std::int64_t internal_date = 0;
    std::uint64_t modseq = 0;
    storage::BodyRef body;
    storage::Keywords keywords{};  // Bit i: the account's keyword i (keyword_names).
};

// Flags, deleted and size counts of one mailbox (STATUS UNSEEN/DELETED/SIZE, LIST-STATUS).
struct MailboxCounts {
    std::uint32_t unseen = 0;
    std::uint32_t deleted = 0;
    std::uint64_t size = 0;
};

struct MailboxSnapshot {
    std::uint64_t mailbox_id = 0;
    std::uint32_t uidvalidity = 0;
    std::uint32_t uidnext = 0;
    std::uint64_t highest_modseq = 0;
    std::vector<MessageEntry> messages;  // Visible (durable) ones, sorted by UID.
    // The account's keyword names: index i names bit i of MessageEntry::keywords. Indexes
    // never change meaning (keywords are only ever added to an account).
    std::vector<std::string> keyword_names;
};

struct AccessRequest {
    AccessOp op = AccessOp::open;
    std::string account;                 // Lowercased account address.
    std::string mailbox;                 // "INBOX", ...
    std::string target;                  // rename: new name; copy/move: destination.
    std::vector<std::uint32_t> uids;     // flags_set, expunge, copy, move.
    storage::FlagMode mode = storage::FlagMode::add;
    std::uint32_t flags = 0;
    std::vector<std::string> keywords;
    bool exclusive = false;              // open: take the mailbox lock.
    bool watch = false;                  // open: register for MailboxEvents.
    bool counts = false;                 // status, list: also count unseen/deleted/size.
    storage::BodyRef body;               // body_open.
    std::string bytes;                   // append: the message.
    std::int64_t internal_date = 0;      // append (0: now).
    std::uint32_t special_use = 0;       // create.
};

struct AccessReply {
    Status status = Status::ok;
    MailboxSnapshot snapshot;                        // open.
    storage::MailboxInfo info;                       // status.
    MailboxCounts counts;                            // status with request.counts.
    std::vector<storage::MailboxInfo> mailboxes;     // list.
    std::vector<MailboxCounts> mailbox_counts;       // list with request.counts (same order).
    std::vector<std::string> subscriptions;          // list: subscribed names, sorted.
    storage::BodyHandle body;                        // body_open.
    std::uint64_t modseq = 0;                        // flags_set, expunge.
    // flags_set: the messages changed, with their new flags and keywords (only `messages`
    // and `keyword_names` are filled).
    MailboxSnapshot changed;
    std::uint32_t uid = 0;                           // append.
    std::uint32_t uidvalidity = 0;                   // append, copy, move (of the target).
    storage::MailStore::UidMap uid_map;              // copy, move.
};

struct MailboxEvent {
    enum class Kind : std::uint8_t { exists, expunge, flags };
    Kind kind = Kind::exists;
    std::uint64_t mailbox_id = 0;
    std::string account;
    std::string mailbox;
    std::uint32_t uidnext = 0;           // exists: the mailbox's UIDNEXT after the change.
    std::uint32_t message_count = 0;     // exists: visible messages after the change.
    std::vector<std::uint32_t> uids;     // expunge, flags: the UIDs concerned.
    // exists: the new messages (ascending UIDs); flags: the changed messages with their new
    // flags and keywords.
    std::vector<MessageEntry> messages;
    // The account's keyword names when a message in `messages` has a keyword (else empty).
    std::vector<std::string> keyword_names;
    std::uint64_t modseq = 0;
};

// Implemented by the session that owns an AccessClient. Called on the client's shard, never
// inside submit().
class AccessHandler {
public:
    virtual void access_done(std::uint64_t tag, AccessOp op, AccessReply& reply) = 0;
    virtual void mailbox_changed(const MailboxEvent& /*event*/) {}

protected:
    ~AccessHandler() = default;
};

// One session's handle on MailAccess. Destroying it drops replies still in flight (they are
// discarded on arrival) and releases its locks and watches on their owners.
class AccessClient {
public:
    AccessClient(MailAccess& access, AccessHandler& handler);
    ~AccessClient();
    AccessClient(const AccessClient&) = delete;
    AccessClient& operator=(const AccessClient&) = delete;

    // Sends `request`; its reply comes to access_done(tag, ...). Status::full when
    // access_in_flight_max requests are in flight, not_found for an unknown account; then
    // nothing was sent.
    [[nodiscard]] Status submit(AccessRequest request, std::uint64_t tag = 0);
    // Releases the exclusive lock taken by an open of `mailbox_id` (when the session is
    // done with it before it closes).
    void unlock(std::uint64_t mailbox_id);
    // POP3 UPDATE: expunges `uids` of the locked mailbox `mailbox_id` (`account`, `mailbox`)
    // durably, then releases the lock on its owner, then replies to access_done(tag,
    // AccessOp::release, ...) with the expunge's status (the lock goes in any case). After
    // the reply, an exclusive open from any session finds the mailbox free. not_found (and
    // nothing sent) when this client holds no lock on it; full as for submit().
    [[nodiscard]] Status release(std::uint64_t mailbox_id, std::string account,
                                 std::string mailbox, std::vector<std::uint32_t> uids,
                                 std::uint64_t tag);
    // Ends one watch of `mailbox_id` taken by an open with `watch` (IMAP: the selected
    // mailbox is closed). Events already on their way may still arrive.
    void unwatch(std::uint64_t mailbox_id);
    std::size_t watches() const { return watches_.size(); }
    unsigned in_flight() const { return in_flight_; }
    std::uint64_t id() const { return id_; }
    MailAccess& access() { return access_; }

private:
    friend class MailAccess;
    struct Held {
        unsigned owner;
        std::uint64_t mailbox_id;
        std::uint64_t token;
    };
    MailAccess& access_;
    AccessHandler& handler_;
    std::uint64_t id_ = 0;
    unsigned in_flight_ = 0;
    std::vector<Held> locks_;
    std::vector<Held> watches_;
};

struct AccessJob;
struct EventJob;

struct MailAccessStats {
    std::uint64_t requests_local = 0;
    std::uint64_t requests_remote = 0;
    std::uint64_t events_sent = 0;
    std::uint64_t replies_orphaned = 0;
    std::uint64_t post_retries = 0;
    std::uint64_t requests_refused_backlog = 0;  // Status::full: the backlog is half full.
    std::uint64_t events_dropped = 0;            // The backlog was full.
    // Message bytes sent by this shard's sessions (FETCH literals, RETR): spliced from the
    // segment to the socket (BodySplicer), or read and copied (BodyReader; TLS, dot-stuffing).
    std::uint64_t bodies_spliced = 0;
    std::uint64_t bytes_spliced = 0;
    std::uint64_t bodies_copied = 0;
    std::uint64_t bytes_copied = 0;
};

class MailAccess final : public ShardLocal, public TickHook, public DeliveryObserver,
                         private Deferred {
public:
    // Registers itself in `cluster` and as `mail`'s delivery observer and tick hook.
    MailAccess(ShardMail& mail, AccessCluster& cluster);
    ~MailAccess() override;

    ShardMail& mail() { return mail_; }
    unsigned shard_index() const { return mail_.shard_index(); }
    const MailAccessStats& stats() const { return stats_; }
    MailAccessStats& stats() { return stats_; }
    // Locks and watchers held on this shard's mailboxes (tests).
    std::size_t locks_held() const { return locks_.size(); }
    std::size_t watchers() const;

    // TickHook: retries posts that met a full queue.
    void on_tick() override;
    bool idle() const override { return backlog_.empty(); }
    std::size_t backlog() const { return backlog_.size(); }
    // DeliveryObserver: tells watchers of the mailbox about the new message(s).
    void delivered(const std::string& account, std::string_view mailbox) override;

private:
    friend class AccessClient;
    friend struct AccessJob;
    struct Lock {
        std::uint64_t token;
        unsigned shard;
        std::uint64_t client;
    };
    struct Watcher {
        unsigned shard;
        std::uint64_t client;
    };
    struct WatchList {
        std::vector<Watcher> watchers;
        std::uint32_t uid_told = 0;  // Every message up to this UID was told (or seen at open).
    };

    std::uint64_t client_add(AccessClient& client);
    void client_remove(AccessClient& client);
    Status submit(AccessClient& client, AccessRequest request, std::uint64_t tag,
                  const AccessClient::Held* lock = nullptr);
    void release(unsigned owner, AccessOp op, std::uint64_t mailbox_id, std::uint64_t token,
                 std::uint64_t client);
    void route(unsigned to, std::uint32_t kind, void* pointer);
    void post_or_queue(const CrossMessage& message);
    static void on_cross(Shard& to, const CrossMessage& message);
    static void on_discard(const CrossMessage& message);
    void on_deferred() override;

    // On the owner.
    void execute(std::unique_ptr<AccessJob> job);
    void after_durable(std::unique_ptr<AccessJob> job, Status status);
    void execute_open(AccessJob& job);
    void execute_release(AccessJob& job);
    void unlock_token(std::uint64_t mailbox_id, std::uint64_t token);
    bool execute_mutation(AccessJob& job);  // True when the reply waits for durability.
    void finished(std::unique_ptr<AccessJob> job);  // Sends the reply home.
    void notify(MailboxEvent event);
    void notify_exists(std::string_view account, std::string_view mailbox);
    void notify_flags(const AccessJob& job);
    std::uint64_t mailbox_id(std::string_view account, std::string_view mailbox) const;

    // On the client's shard.
    void reply_arrived(std::unique_ptr<AccessJob> job);
    void event_arrived(std::unique_ptr<EventJob> event);

    ShardMail& mail_;
    AccessCluster& cluster_;
    std::uint64_t next_client_id_ = 1;
    std::uint64_t next_token_ = 1;
    std::unordered_map<std::uint64_t, AccessClient*> clients_;
    std::unordered_map<std::uint64_t, Lock> locks_;                  // Mailbox id -> lock.
    std::unordered_map<std::uint64_t, WatchList> watchers_;  // Mailbox id -> its watchers.
    std::deque<std::unique_ptr<AccessJob>> local_jobs_;  // Requests and replies for here.
    std::deque<std::unique_ptr<EventJob>> local_events_;
    std::deque<CrossMessage> backlog_;
    MailAccessStats stats_;
};

// Reads a pinned body through the caller's Io, one extent (chunk record) at a time, and
// verifies each chunk's checksum before handing its bytes out. Memory: one extent at a time
// (a chunk is at most limits::body_chunk_bytes_max; SMTP writes 1 MiB pieces).
class BodyReaderDone {
public:
    // `bytes` are valid until next() or cancel(); `last` marks the final piece. A status
    // other than ok ends the body (corrupt: a checksum failed; io: the read failed).
    virtual void body_piece(Status status, std::span<const std::byte> bytes, bool last) = 0;

protected:
    ~BodyReaderDone() = default;
};

class BodyReader final : private IoCompletion {
public:
    // Starts reading the first extent (`handle` has at least one piece: callers answer an
    // empty body themselves). Delete with cancel(), never directly.
    static BodyReader* start(Io& io, storage::BodyHandle handle, BodyReaderDone& done);
    // Reads the next extent (after body_piece(ok, ..., last=false)).
    void next();
    // The reader is no longer wanted: freed now, or when the read in flight completes.
    void cancel();

private:
    BodyReader(Io& io, storage::BodyHandle handle, BodyReaderDone& done);
    ~BodyReader() = default;
    void read_more();
    void io_done(Status status, std::uint32_t bytes) override;

    Io& io_;
    storage::BodyHandle handle_;
    BodyReaderDone* done_;
    std::size_t piece_index_ = 0;
    std::vector<std::byte> record_;
    std::uint32_t record_filled_ = 0;
    bool reading_ = false;
    bool cancelled_ = false;
};

// Told when a BodySplicer is done with its range. ok: every byte is sent. again: the session
// refused a later extent (its pipes were all in use): the rest must be copied (rest()). Any
// other status: the session is closing (on_close follows at once): touch nothing of its
// output.
class BodySpliceDone {
public:
    virtual void splice_done(Status status) = 0;

protected:
    ~BodySpliceDone() = default;
};

// Sends a range of a pinned body from its segment files to the socket with
// SessionOutput::send_file, one extent (one file range) after the other, so the bytes never
// pass through user space. Holds the BodyHandle (its segment pins) until the last range is
// sent: compaction may relocate the body meanwhile, but a pinned segment is never retired, so
// the bytes stay readable and unchanged. No checksum is verified on this path (the copy path
// verifies each chunk): the bytes below the durable watermark were checked when the segment
// was replayed at open or when compaction read them, and a damaged page would go out as it is.
// `out` must be the session's own output: it outlives every callback of the session.
class BodySplicer final : private FileSendDone {
public:
    explicit BodySplicer(BodySpliceDone& done) : done_(done) {}
    BodySplicer(const BodySplicer&) = delete;
    BodySplicer& operator=(const BodySplicer&) = delete;

    // Starts sending [offset, offset + bytes) of `handle` (bytes > 0, inside the body). False,
    // with nothing queued and `handle` left to the caller, when `out` refuses the first range
    // (TLS active or starting, no pipe free): copy instead. True: `handle` was taken.
    bool start(SessionOutput& out, storage::BodyHandle& handle, std::uint64_t offset,
               std::uint64_t bytes, MailAccessStats& stats);
    bool active() const { return out_ != nullptr; }
    // After splice_done(again): the pieces not sent yet (the body offset of the first one in
    // `position`) and the bytes of the range left; the splicer is idle again.
    storage::BodyHandle rest(std::uint64_t& position, std::uint64_t& offset, std::uint64_t& bytes);

private:
    void file_sent(Status status) override;
    // Queues the part of the range inside piece_index_. False when the session refused it.
    bool send_piece();

    BodySpliceDone& done_;
    SessionOutput* out_ = nullptr;
    MailAccessStats* stats_ = nullptr;
    storage::BodyHandle handle_;
    std::size_t piece_index_ = 0;
    std::uint64_t piece_position_ = 0;  // Body offset of pieces[piece_index_].
    std::uint64_t offset_ = 0;          // Body offset of the next byte to send.
    std::uint64_t bytes_ = 0;           // Range bytes not yet queued.
    std::uint64_t queued_ = 0;          // Bytes of the range in flight.
};

}  // namespace rp::mail
