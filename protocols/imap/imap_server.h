// protocols/imap/imap_server.h: the IMAP server state machine (RFC 3501 / RFC 9051 server side,
// with LITERAL+, SASL-IR, UIDPLUS, MOVE, IDLE, NAMESPACE, ID, ENABLE, SPECIAL-USE,
// LIST-EXTENDED, LIST-STATUS, ESEARCH, UNSELECT, CHILDREN).
//
// Owns: the protocol state of one IMAP connection: command framing, the session's view of
//   the selected mailbox (sequence number <-> UID map), changes the host reported that are not
//   yet told to the client, the command in progress, and pending output.
// Core: one session driver on one core; nothing here is shared or locked.
// Invariants: no I/O, no clock. Memory is bounded: command <= command_bytes_max; the view
//   <= the mailbox size; pending changes <= pending_changes_max (past it: BYE and close);
//   output stays near output_bytes_high because FETCH/SEARCH ask the host for at most
//   fetch_batch_count messages at a time and wait for the driver to drain the output between
//   batches. Replies come strictly in command order. Sequence numbers the client sees change
//   only by untagged EXISTS / EXPUNGE responses the server sent: host changes are queued and
//   told at command boundaries (never during FETCH, STORE or SEARCH, RFC 3501 7.4.1) or at
//   once while idling.
// Errors: peer misbehaviour -> "tag BAD ..." and a counter, the session goes on (after
//   errors_max of them: BYE and close). Host failures arrive as Status values and become
//   "tag NO [code] text" through protocols/common/reply_table.
//
// How a session driver uses it (the same loop as SmtpServer):
//   ImapServer server(config, host, session); server.greet();
//   on receive: n = server.feed(pending); drop n; send output (see Output); stop when
//     paused() (keep the rest), wants_close() (flush, close) or output_blocked() (wait for the
//     send, call on_output_drained(), loop).
//   Host operations are asynchronous: the server calls a host method and pauses until the
//     host calls the matching *_done() method (which may also happen from inside the host
//     call: a synchronous host). When paused() turns false outside feed(), the driver feeds
//     its kept input again.
//   STARTTLS: waiting_for_tls() -> discard kept input, handshake, tls_started().
//   timer for timeout_kind() expires: on_timeout(). Peer gone: connection_lost().
//
// Output. Pending output is a sequence of text and body ranges. take_output() moves the text
// up to the next body range; then, if has_stream(), take_stream() gives the range, whose bytes
// the driver sends straight from the store (the literal header "{n}\r\n" is already in the
// text): a big message is never copied into the output.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/limits.h"
#include "core/result.h"
#include "protocols/imap/imap_mime.h"
#include "protocols/imap/imap_parser.h"

namespace rp::imap {

struct ImapServerConfig {
    std::string hostname = "localhost";
    std::uint32_t command_bytes_max = limits::imap_line_bytes_max;  // Line + inline literals.
    std::uint64_t append_bytes_max = 50ull << 20;  // APPEND literal; bigger: NO [TOOBIG].
    std::uint32_t output_bytes_high = 65536;       // Stop producing above this.
    std::uint32_t fetch_batch_count = 256;         // Messages per host fetch call.
    std::uint32_t errors_max = 50;                 // BADs before BYE and close.
    std::uint32_t pending_changes_max = 100000;    // Queued host changes before BYE.
    bool login_requires_tls = true;                // LOGINDISABLED without TLS.
};

struct ImapSessionInfo {
    bool tls_active = false;
    bool tls_available = false;          // STARTTLS may be offered.
    bool plaintext_auth_allowed = false;  // Loopback: LOGIN without TLS.
};

// ---- host data ----

struct ImapMailboxStatus {
    std::uint32_t messages = 0;
    std::uint32_t uidnext = 1;
    std::uint32_t uidvalidity = 0;
    std::uint32_t unseen = 0;
    std::uint32_t deleted = 0;
    std::uint64_t size = 0;
    std::uint64_t highest_modseq = 0;
};

struct ImapMailboxEntry {
    std::string_view name;         // Full name, "/" as the hierarchy delimiter.
    std::uint32_t special_use = 0;  // storage SpecialUse bits: sent 1, drafts 2, trash 4, junk 8,
                                    // archive 16, all 32, flagged 64.
    bool subscribed = false;
    ImapMailboxStatus status;       // Filled when list(with_status) was asked.
};

struct ImapSelectInfo {
    std::uint32_t uidvalidity = 0;
    std::uint32_t uidnext = 1;
    std::uint64_t highest_modseq = 0;
    std::span<const std::string_view> keywords;  // Keywords defined for the account.
    std::span<const std::uint32_t> uids;        // The messages, ascending.
    std::uint32_t first_unseen_uid = 0;          // 0: none.
    bool read_only = false;                      // The host may force EXAMINE semantics.
};

enum FetchNeed : std::uint32_t {
    fetch_need_mime = 1,   // ImapMessageData::mime must be set.
    fetch_need_bytes = 2,  // ImapMessageData::bytes must hold the whole message.
};

struct ImapFetchRequest {
    std::span<const std::uint32_t> uids;  // Ascending, all in the session's view.
    std::uint32_t needs = 0;              // FetchNeed bits.
};

struct ImapMessageData {
    std::uint32_t uid = 0;
    std::uint32_t flags = 0;  // FlagBit.
    std::span<const std::string_view> keywords;
    std::int64_t internal_date = 0;  // Unix seconds.
    std::uint64_t size = 0;
    std::uint64_t modseq = 0;
    const MimeMessage* mime = nullptr;   // fetch_need_mime.
    std::span<const std::byte> bytes;    // fetch_need_bytes.
    std::uint64_t body_token = 0;        // Names the body in ImapStreamPiece.
};

struct ImapFlagUpdate {
    std::uint32_t uid = 0;
    std::uint32_t flags = 0;
    std::span<const std::string_view> keywords;
    std::uint64_t modseq = 0;
};

struct ImapAppendRequest {
    std::string_view mailbox;
    std::uint32_t flags = 0;
    std::span<const std::string> keywords;
    std::int64_t internal_date = 0;  // 0: now.
    std::uint64_t bytes = 0;          // The literal's size.
};

// A range of a message's bytes that the driver sends from the store.
struct ImapStreamPiece {
    std::uint64_t body_token = 0;
    std::uint64_t offset = 0;
    std::uint64_t bytes = 0;
};

enum class MailboxOp : std::uint8_t { create, delete_, rename, subscribe, unsubscribe };

// Implemented by the session's adapter onto the mailbox-access layer. Every operation except
// append_data/append_abort/mailbox_close completes by a call of the named ImapServer method,
// later or from inside the call. Views passed in are valid only during the call; views the
// host passes back only during the completion call. At most one operation is outstanding.
class ImapHost {
public:
    virtual ~ImapHost() = default;

    // -> login_done(Status): ok, refused/permission (bad credentials), again (try later).
    virtual void login(std::string_view user, std::string_view password) = 0;
    // All mailboxes of the user (with status when asked) -> list_done().
    virtual void list(bool with_status) = 0;
    // -> status_done().
    virtual void status(std::string_view mailbox) = 0;
    // CREATE/DELETE/RENAME/SUBSCRIBE/UNSUBSCRIBE -> mailbox_op_done(Status).
    virtual void mailbox_op(MailboxOp op, std::string_view name, std::string_view new_name) = 0;
    // SELECT/EXAMINE -> select_done(). From then on, until mailbox_close(), the host reports
    // changes of this mailbox with mailbox_exists/expunged/flags: every new message (also
    // those this session appended or copied there), and other sessions' expunges and flag
    // changes. Echoes of this session's own changes are tolerated (an expunge or exists
    // already known is ignored; a flag change becomes one more untagged FETCH, which RFC 3501
    // 7.4.2 allows), so an adapter may forward every MailboxEvent as it comes.
    virtual void select(std::string_view mailbox, bool read_only) = 0;
    // The selected mailbox is closed (UNSELECT, CLOSE, SELECT of another, LOGOUT, lost).
    virtual void mailbox_close() = 0;
    // Per message of the request, in UID order: fetch_message(); then fetch_done(). UIDs
    // that no longer exist are skipped.
    virtual void fetch(const ImapFetchRequest& request) = 0;
    // STORE on UIDs of the selected mailbox -> store_done() with the new flags of each.
    virtual void store(std::span<const std::uint32_t> uids, StoreMode mode, std::uint32_t flags,
                       std::span<const std::string> keywords) = 0;
    // COPY/MOVE to `mailbox` -> copy_done(). not_found: [TRYCREATE].
    virtual void copy(std::span<const std::uint32_t> uids, std::string_view mailbox, bool move) = 0;
    // Removes messages flagged \Deleted (among `uids` when not empty) -> expunge_done().
    virtual void expunge(std::span<const std::uint32_t> uids) = 0;
    // APPEND: check the mailbox and size -> append_ready(Status). Then, if ok, the message
    // bytes by append_data() (views into the input), then append_end() -> append_done(), or
    // append_abort() when the command fails or the connection ends.
    virtual void append_begin(const ImapAppendRequest& request) = 0;
    virtual void append_data(std::span<const std::byte> bytes) = 0;
    virtual void append_end() = 0;
    virtual void append_abort() = 0;
};

enum class ImapTimeoutKind : std::uint8_t {
    login,      // Not authenticated yet (short).
    autologout, // Authenticated, waiting for a command (RFC 3501 5.4: at least 30 min).
    idle,       // In IDLE (RFC 2177: re-issue within 29 min).
    none,       // Paused on the host or on TLS: the host owns the timing.
};

struct ImapCounters {
    std::uint32_t bad_commands = 0;
    std::uint32_t long_commands = 0;
    std::uint32_t literals_refused = 0;
    std::uint32_t logins_failed = 0;
    std::uint32_t commands = 0;
};

class ImapServer {
public:
    ImapServer(const ImapServerConfig& config, ImapHost& host, const ImapSessionInfo& session);
    ~ImapServer();
    ImapServer(const ImapServer&) = delete;
    ImapServer& operator=(const ImapServer&) = delete;

    void greet();
    // Instead of greet(): "* BYE" and close (full: too many connections).
    void refuse(Status reason);

    [[nodiscard]] std::size_t feed(std::span<const std::byte> input);

    // ---- output ----
    void take_output(std::string& out);
    bool has_output() const;
    bool has_stream() const;
    ImapStreamPiece take_stream();
    std::size_t output_bytes() const { return output_bytes_; }
    bool output_blocked() const { return output_bytes_ >= config_.output_bytes_high; }
    // The driver sent the output: a FETCH/SEARCH that waited for it goes on.
    void on_output_drained();

    bool wants_close() const { return state_ == State::closed; }
    bool paused() const;
    bool waiting_for_tls() const { return state_ == State::wait_tls; }
    void tls_started();
    ImapTimeoutKind timeout_kind() const;
    void on_timeout();
    void begin_shutdown();
    void connection_lost();
    // True while a host operation is outstanding (destroy only when false).
    bool host_busy() const { return host_pending_; }

    // ---- host completions ----
    void login_done(Status status);
    void list_done(Status status, std::span<const ImapMailboxEntry> mailboxes);
    void status_done(Status status, const ImapMailboxStatus& mailbox_status);
    void mailbox_op_done(Status status);
    void select_done(Status status, const ImapSelectInfo& info);
    void fetch_message(const ImapMessageData& message);
    void fetch_done(Status status);
    void store_done(Status status, std::span<const ImapFlagUpdate> updated);
    void copy_done(Status status, std::uint32_t dest_uidvalidity,
                   std::span<const std::pair<std::uint32_t, std::uint32_t>> uid_map);
    void expunge_done(Status status, std::span<const std::uint32_t> expunged_uids);
    void append_ready(Status status);
    void append_done(Status status, std::uint32_t uidvalidity, std::uint32_t uid);

    // ---- changes of the selected mailbox made by others ----
    void mailbox_exists(std::uint32_t uid);
    void mailbox_expunged(std::uint32_t uid);
    void mailbox_flags(const ImapFlagUpdate& update);

    const ImapCounters& counters() const { return counters_; }
    std::size_t view_count() const { return view_.size(); }

private:
    enum class State : std::uint8_t {
        fresh, not_authenticated, authenticated, selected, logout_done, wait_tls, closed,
    };
    enum class Mode : std::uint8_t {
        command,        // Reading commands.
        host,           // A host operation is outstanding (or a batch loop waits for output).
        auth_response,  // AUTHENTICATE: waiting for the client's SASL response line.
        append_stream,  // Streaming an APPEND literal to the host.
        append_tail,    // After the literal: waiting for the end of the command line.
        idle,           // IDLE: waiting for DONE.
    };
    struct Change {
        enum class Kind : std::uint8_t { exists, expunged, flags } kind;
        std::uint32_t uid;
        std::uint32_t flags;
        std::uint64_t modseq;
        std::vector<std::string> keywords;
    };
    struct OutChunk {
        std::string text;
        bool has_stream = false;
        ImapStreamPiece stream;
    };

    // Implementation details; see imap_server.cc.
    void handle_step(const ReadStep& step);
    void handle_literal(const ReadStep& step);
    void handle_command(std::string_view text);
    void dispatch();
    bool check_state();
    void do_capability();
    void do_login();
    void do_authenticate();
    void auth_response(std::string_view line);
    void do_enable();
    void do_id();
    void do_select();
    void do_list();
    void do_status();
    void do_mailbox_op();
    void do_fetch_like();
    void do_store();
    void do_copy();
    void do_expunge();
    void do_close_like();
    void do_idle();
    void idle_line(std::string_view line);
    void append_tail_line(std::string_view text);
    void host_call_begin();
    bool host_call_end();
    void after_host();
    void fetch_batches();
    void fetch_finish();
    void emit_fetch(const ImapMessageData& m, std::uint32_t seq);
    void emit_section(const FetchItem& item, const ImapMessageData& m);
    void complete(Status status);
    bool search_match(const SearchKey& key, const ImapMessageData& m, std::uint32_t seq, int depth) const;
    void emit_search_result();
    bool resolve_set(const SequenceSet& set, bool uid, std::vector<std::uint32_t>& out);
    std::uint32_t seq_of(std::uint32_t uid) const;  // 0 when not in the view.
    void flush_changes();
    void end_view();
    void tell_flags();
    void keywords_seen(std::span<const std::string_view> keywords);
    void reply_tagged(std::string_view kind, std::string_view text);
    void reply_status(Status status, std::string_view what);
    void reply_bad(std::string_view tag, std::string_view text);
    void untagged(std::string_view text);
    void out(std::string_view text);
    void out_stream(const ImapStreamPiece& piece);
    void close_with_bye(std::string_view text);
    void finish_command();
    void output_pop();
    void release_scratch();
    std::string capability_text() const;

    const ImapServerConfig& config_;
    ImapHost& host_;
    State state_ = State::fresh;
    Mode mode_ = Mode::command;
    ImapReader reader_;
    std::vector<OutChunk> output_;  // Pending from output_head_ on.
    std::size_t output_head_ = 0;
    std::size_t output_bytes_ = 0;

    bool tls_active_;
    bool tls_available_;
    bool plaintext_auth_allowed_;
    bool rev2_ = false;
    bool shutting_down_ = false;
    bool lost_ = false;
    std::uint32_t error_count_ = 0;

    // The command in progress.
    ImapCommand cmd_;
    std::string tag_;
    bool host_pending_ = false;
    bool in_host_ = false;
    std::uint8_t phase_ = 0;  // Step of a command with several host calls.
    bool waiting_output_ = false;
    Status host_status_ = Status::ok;

    // Selected mailbox view.
    std::string selected_name_;
    bool read_only_ = false;
    std::vector<std::uint32_t> view_;  // Index = sequence number - 1.
    std::vector<std::string> keywords_;  // Keywords told in FLAGS since SELECT.
    std::vector<Change> changes_;
    bool changes_overflow_ = false;
    std::vector<std::uint32_t> saved_search_;

    // FETCH / SEARCH / STORE / COPY in progress.
    std::vector<std::uint32_t> targets_;
    std::size_t batch_next_ = 0;
    std::uint32_t fetch_needs_ = 0;
    bool fetch_add_flags_ = false;   // Implicit \Seen: include FLAGS.
    bool is_search_ = false;
    std::vector<std::uint32_t> matches_;
    std::string scratch_;
    // APPEND in progress.
    bool append_sync_ = false;
    bool append_open_ = false;
    std::uint64_t append_bytes_ = 0;
    std::string append_mailbox_;

    ImapCounters counters_;
};

}  // namespace rp::imap
