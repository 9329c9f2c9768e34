// protocols/imap/imap_parser.h: IMAP command framing and grammar (RFC 3501, RFC 9051).
//
// Two layers:
//   ImapReader frames the client's byte stream into commands. A command is one line, or
//     several lines joined by literals. The reader reports each literal announcement
//     ({n} synchronizing, {n+} non-synchronizing, RFC 7888) and the caller decides: take it
//     into the command (inline, bounded), stream it out (APPEND: the bytes are handed over as
//     views into the input, zero copy) or refuse it. A command wholly inside one input is
//     returned as a view INTO the input (zero copy); only a command split across inputs, or
//     one with inline literals, is assembled in the reader's bounded buffer.
//   parse_command() turns one complete command (literals inline, in their wire form
//     "{n}\r\n<n bytes>") into an ImapCommand: tag, verb, arguments. It never reads past the
//     text and reports syntax errors as a message for a BAD reply.
//
// Owns: at most command_bytes_max bytes of one partial command.
// Invariants: a command line ends at LF (CRLF; a bare LF is accepted as lenient framing);
//   nothing in a literal is ever interpreted; a command longer than command_bytes_max is
//   reported once (too_long) and the rest of its line skipped.
// Errors: peer misbehaviour only, as ReadKind::too_long or ParseResult::error text.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace rp::imap {

// ---------------------------------------------------------------------------------------------
// Framing.

enum class ReadKind : std::uint8_t {
    need_more,     // All input consumed, nothing complete yet.
    command,       // `text` is one whole command (without its final CRLF).
    literal,       // `text` is the command so far, ending in "{n}" or "{n+}"; decide now.
    literal_data,  // `text` is a piece of a streamed literal (a view into the input).
    literal_end,   // The streamed literal is complete; the command line goes on.
    too_long,      // The command passed command_bytes_max; the rest of its line is skipped.
};

struct LiteralInfo {
    std::uint64_t bytes = 0;
    bool synchronizing = true;  // {n}: the client waits for "+ " before sending the bytes.
};

struct ReadStep {
    std::size_t consumed = 0;
    ReadKind kind = ReadKind::need_more;
    std::string_view text;  // Valid until the next call.
    LiteralInfo literal;    // For ReadKind::literal.
};

class ImapReader {
public:
    explicit ImapReader(std::uint32_t command_bytes_max);

    ReadStep next(std::span<const std::byte> input);

    // Answers to ReadKind::literal (exactly one must follow before the next next()):
    // Append the literal to the command (bytes <= room()).
    void literal_inline();
    // Hand the literal out as literal_data steps, then literal_end; it is not kept.
    void literal_stream();
    // Drop the whole command. A synchronizing literal is not sent by the client, so the
    // next line is a new command; a non-synchronizing one is skipped (its bytes and the rest
    // of the command).
    void literal_refuse();

    // Bytes an inline literal may still add to the command.
    std::uint64_t room() const;
    // True while inside a command (partial line, literal or skipping).
    bool mid_command() const;
    // Forget everything (after STARTTLS).
    void reset();

private:
    enum class Mode : std::uint8_t { line, literal_inline, literal_stream, literal_skip, skip_line };
    ReadStep line_step(const char* data, std::size_t size);

    std::uint32_t command_bytes_max_;
    Mode mode_ = Mode::line;
    std::string buffer_;            // The command so far, when it spans inputs or literals.
    bool buffer_returned_ = false;  // buffer_ was returned as a whole command: clear next time.
    bool decision_owed_ = false;
    bool discard_ = false;          // Inside a refused command: drop to its end.
    LiteralInfo pending_;
    std::uint64_t literal_left_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Grammar.

enum class Verb : std::uint8_t {
    unknown,
    capability, noop, logout, starttls, authenticate, login, enable, id, namespace_,
    select, examine, create, delete_, rename, subscribe, unsubscribe, list, lsub, status,
    append, idle, check, close, unselect, expunge, search, fetch, store, copy, move,
};

std::string_view verb_name(Verb verb);

// A sequence number or UID range; `*` is star (resolved later against the mailbox).
inline constexpr std::uint32_t seq_star = 0xffffffffu;
struct SeqRange {
    std::uint32_t first = 0;
    std::uint32_t last = 0;
};
struct SequenceSet {
    std::vector<SeqRange> ranges;
    bool saved = false;  // "$" (RFC 5182): the last search result.
};

// BODY[section]: part numbers then one of these.
enum class SectionText : std::uint8_t { none, header, header_fields, header_fields_not, text, mime };
struct Section {
    std::vector<std::uint32_t> part;  // "1.2.3"; empty = the whole message.
    SectionText text = SectionText::none;
    std::vector<std::string> fields;  // For HEADER.FIELDS[.NOT], upper-cased.
};

enum class FetchAtt : std::uint8_t {
    uid, flags, internaldate, rfc822_size, envelope, body, bodystructure,
    body_section,  // BODY[...] / BODY.PEEK[...]
    binary,        // BINARY[...] / BINARY.PEEK[...] (RFC 3516)
    binary_size,
    rfc822, rfc822_header, rfc822_text,
    modseq,
};
struct FetchItem {
    FetchAtt att = FetchAtt::uid;
    bool peek = false;
    Section section;
    bool partial = false;
    std::uint32_t partial_offset = 0;
    std::uint32_t partial_bytes = 0;
};

// System flags, bit-compatible with the store's flags (storage/record.h MessageFlag).
enum FlagBit : std::uint32_t {
    flag_seen = 1u << 0,
    flag_answered = 1u << 1,
    flag_flagged = 1u << 2,
    flag_deleted = 1u << 3,
    flag_draft = 1u << 4,
};
inline constexpr std::uint32_t flag_bits_all = 0x1f;
struct FlagList {
    std::uint32_t flags = 0;
    std::vector<std::string> keywords;
    bool recent = false;  // "\Recent" was given (not settable; ignored).
};

enum class SearchOp : std::uint8_t {
    all, and_, or_, not_, seqset, uid,
    answered, deleted, draft, flagged, seen, recent, new_, old,
    unanswered, undeleted, undraft, unflagged, unseen,
    keyword, unkeyword,
    before, on, since, sentbefore, senton, sentsince,  // `number` = days since 1970-01-01.
    larger, smaller,
    bcc, cc, from, to, subject, body, text, header,     // header: text = field, text2 = value.
};
struct SearchKey {
    SearchOp op = SearchOp::all;
    std::string text;
    std::string text2;
    std::int64_t number = 0;
    SequenceSet set;
    std::vector<SearchKey> children;  // and_: all; or_: two; not_: one.
};
enum SearchReturn : std::uint8_t {
    search_return_min = 1, search_return_max = 2, search_return_all = 4, search_return_count = 8,
    search_return_save = 16,
};

enum class StoreMode : std::uint8_t { replace, add, remove };

// LIST-EXTENDED (RFC 5258) options and LIST-STATUS (RFC 5819) items.
enum StatusItem : std::uint16_t {
    status_messages = 1, status_recent = 2, status_uidnext = 4, status_uidvalidity = 8,
    status_unseen = 16, status_deleted = 32, status_size = 64, status_highestmodseq = 128,
};

struct ImapCommand {
    std::string_view tag;   // A view into the command text.
    Verb verb = Verb::unknown;
    bool uid = false;       // "UID FETCH" etc.
    // Strings (mailbox names, user, password, mechanism, patterns).
    std::string arg1, arg2;
    std::vector<std::string> patterns;  // LIST patterns / ENABLE capabilities / ID pairs.
    SequenceSet set;
    std::vector<FetchItem> fetch;
    FlagList flags;
    bool have_flags = false;
    StoreMode store_mode = StoreMode::replace;
    bool silent = false;
    SearchKey search;            // Root: and_ of the keys given.
    std::uint8_t search_return = 0;
    bool esearch = false;        // RETURN (...) given.
    std::uint16_t status_items = 0;
    // LIST: selection and return options.
    bool list_subscribed = false;     // (SUBSCRIBED) selection
    bool list_special_use = false;    // RETURN (SPECIAL-USE) or selection SPECIAL-USE
    bool list_select_special_use = false;  // Selection (SPECIAL-USE): only special-use boxes.
    bool list_return_subscribed = false;
    bool list_return_children = false;
    bool list_extended = false;
    // APPEND.
    bool have_date = false;
    std::int64_t date = 0;  // Unix seconds.
    // AUTHENTICATE initial response (SASL-IR), when present.
    bool have_initial_response = false;
};

struct ParseResult {
    bool ok = false;
    std::string_view error;  // For BAD, static text.
};

// Parses one complete command (no CRLF at the end). `out.tag` is set whenever a tag could be
// read, even on error.
ParseResult parse_command(std::string_view text, ImapCommand& out);

// Parses the start of an APPEND command up to (not including) its message literal:
// "tag APPEND mailbox [flags] [date-time] ". On success fills arg1/flags/date and returns
// true. Used when the reader announces a literal, to stream the message.
bool parse_append_prefix(std::string_view text, ImapCommand& out);

// Helpers shared with the server.
bool parse_sequence_set(std::string_view text, SequenceSet& out);
// RFC 3501 date-time "dd-Mon-yyyy hh:mm:ss +zzzz" -> Unix seconds.
bool parse_date_time(std::string_view text, std::int64_t& out);
// "d-Mon-yyyy" -> days since 1970-01-01.
bool parse_date(std::string_view text, std::int64_t& days);
void append_date_time(std::string& out, std::int64_t unix_seconds);
std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d);
// Appends `s` as an IMAP string: quoted when possible, a literal otherwise, NIL never.
void append_astring_quoted(std::string& out, std::string_view s);
void append_flags(std::string& out, std::uint32_t flags, std::span<const std::string_view> keywords);

}  // namespace rp::imap
