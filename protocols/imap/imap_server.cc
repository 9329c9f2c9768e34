// protocols/imap/imap_server.cc: see imap_server.h.
#include "protocols/imap/imap_server.h"

#include <algorithm>
#include <charconv>

#include "core/assert.h"
#include "protocols/common/reply_table.h"

namespace rp::imap {

namespace {

constexpr std::string_view capabilities_base =
    "IMAP4rev1 IMAP4rev2 LITERAL+ SASL-IR UIDPLUS MOVE IDLE NAMESPACE ID ENABLE SPECIAL-USE "
    "LIST-EXTENDED LIST-STATUS ESEARCH UNSELECT CHILDREN";
constexpr std::string_view system_flags = "\\Answered \\Flagged \\Deleted \\Seen \\Draft";

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }

bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        if (lower(a[i]) != lower(b[i])) return false;
    }
    return true;
}

bool icontains(std::string_view hay, std::string_view needle) {
    if (needle.empty()) return true;
    return std::search(hay.begin(), hay.end(), needle.begin(), needle.end(),
                       [](char a, char b) { return lower(a) == lower(b); }) != hay.end();
}

void append_u64(std::string& out, std::uint64_t v) {
    char text[24];
    const auto r = std::to_chars(text, text + sizeof(text), v);
    out.append(text, r.ptr);
}

// Ascending numbers -> "1:3,7,9:10".
void append_set(std::string& out, std::span<const std::uint32_t> sorted) {
    for (std::size_t i = 0; i < sorted.size();) {
        std::size_t j = i;
        while (j + 1 < sorted.size() && sorted[j + 1] == sorted[j] + 1) ++j;
        if (i > 0) out.push_back(',');
        append_u64(out, sorted[i]);
        if (j > i) {
            out.push_back(':');
            append_u64(out, sorted[j]);
        }
        i = j + 1;
    }
}

// RFC 3501 6.3.8: "*" matches anything, "%" anything but the delimiter. INBOX is
// case-insensitive. Iterative with backtracking on the last "*" / "%" (no recursion).
bool list_match(std::string_view name, std::string_view pattern) {
    auto eq = [&](std::size_t ni, char pc) {
        const bool inbox = name.size() >= 5 && ni < 5 && iequals(name.substr(0, 5), "INBOX") &&
                           (name.size() == 5 || name[5] == '/');
        return inbox ? lower(name[ni]) == lower(pc) : name[ni] == pc;
    };
    // Dynamic programming over (pattern index, name index), O(n*m) bounded by the limits.
    std::vector<char> row(name.size() + 1, 0);
    std::vector<char> next(name.size() + 1, 0);
    row[0] = 1;
    for (std::size_t pi = 0; pi < pattern.size(); ++pi) {
        const char pc = pattern[pi];
        std::fill(next.begin(), next.end(), 0);
        if (pc == '*' || pc == '%') {
            bool reach = false;
            for (std::size_t ni = 0; ni <= name.size(); ++ni) {
                if (row[ni]) reach = true;
                if (reach) next[ni] = 1;
                if (pc == '%' && ni < name.size() && name[ni] == '/') reach = false;
            }
        } else {
            for (std::size_t ni = 0; ni < name.size(); ++ni) {
                if (row[ni] && eq(ni, pc)) next[ni + 1] = 1;
            }
        }
        row.swap(next);
    }
    return row[name.size()] != 0;
}

void append_special_use(std::string& out, std::uint32_t bits, bool& first) {
    static constexpr std::string_view names[] = {"\\Sent", "\\Drafts", "\\Trash", "\\Junk",
                                                 "\\Archive", "\\All", "\\Flagged"};
    for (unsigned i = 0; i < 7; ++i) {
        if ((bits & (1u << i)) == 0) continue;
        if (!first) out.push_back(' ');
        out.append(names[i]);
        first = false;
    }
}

void append_status_items(std::string& out, std::uint16_t items, const ImapMailboxStatus& s) {
    out.push_back('(');
    bool first = true;
    auto item = [&](std::uint16_t bit, std::string_view name, std::uint64_t value) {
        if ((items & bit) == 0) return;
        if (!first) out.push_back(' ');
        first = false;
        out.append(name);
        out.push_back(' ');
        append_u64(out, value);
    };
    item(status_messages, "MESSAGES", s.messages);
    item(status_recent, "RECENT", 0);
    item(status_uidnext, "UIDNEXT", s.uidnext);
    item(status_uidvalidity, "UIDVALIDITY", s.uidvalidity);
    item(status_unseen, "UNSEEN", s.unseen);
    item(status_deleted, "DELETED", s.deleted);
    item(status_size, "SIZE", s.size);
    item(status_highestmodseq, "HIGHESTMODSEQ", s.highest_modseq);
    out.push_back(')');
}

bool search_needs(const SearchKey& key, std::uint32_t& needs, int depth) {
    if (depth > 64) return false;
    switch (key.op) {
        case SearchOp::bcc: case SearchOp::cc: case SearchOp::from: case SearchOp::to:
        case SearchOp::subject: case SearchOp::header: case SearchOp::body: case SearchOp::text:
        case SearchOp::sentbefore: case SearchOp::senton: case SearchOp::sentsince:
            needs |= fetch_need_mime | fetch_need_bytes;
            break;
        default:
            break;
    }
    for (const SearchKey& c : key.children) search_needs(c, needs, depth + 1);
    return true;
}

std::string_view as_text(std::span<const std::byte> bytes) {
    return std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

void append_section_name(std::string& out, const Section& s) {
    for (std::size_t i = 0; i < s.part.size(); ++i) {
        if (i) out.push_back('.');
        append_u64(out, s.part[i]);
    }
    const bool dot = !s.part.empty() && s.text != SectionText::none;
    if (dot) out.push_back('.');
    switch (s.text) {
        case SectionText::none: break;
        case SectionText::header: out.append("HEADER"); break;
        case SectionText::text: out.append("TEXT"); break;
        case SectionText::mime: out.append("MIME"); break;
        case SectionText::header_fields:
        case SectionText::header_fields_not:
            out.append(s.text == SectionText::header_fields ? "HEADER.FIELDS (" : "HEADER.FIELDS.NOT (");
            for (std::size_t i = 0; i < s.fields.size(); ++i) {
                if (i) out.push_back(' ');
                const bool atom = !s.fields[i].empty() &&
                    s.fields[i].find_first_of(" (){%*\"\\]") == std::string::npos &&
                    std::all_of(s.fields[i].begin(), s.fields[i].end(),
                                [](char ch) { return ch > 0x20 && ch < 0x7f; });
                if (atom) out.append(s.fields[i]);
                else append_astring_quoted(out, s.fields[i]);
            }
            out.push_back(')');
            break;
    }
}

// The tag of a command line, for a reply before the command is parsed; "*" when the line
// does not start with a valid tag (never echo control bytes).
std::string_view line_tag(std::string_view text) {
    const std::string_view tag = text.substr(0, text.find(' '));
    if (tag.empty() || tag.size() > 64) return "*";
    for (char c : tag) {
        const auto u = static_cast<unsigned char>(c);
        if (u <= 0x20 || u >= 0x7f || c == '(' || c == ')' || c == '{' || c == '%' || c == '*' ||
            c == '"' || c == '\\' || c == '+') {
            return "*";
        }
    }
    return tag;
}

bool sets_seen(const FetchItem& item) {
    switch (item.att) {
        case FetchAtt::body_section: case FetchAtt::binary: return !item.peek;
        case FetchAtt::rfc822: case FetchAtt::rfc822_text: return true;
        default: return false;
    }
}

}  // namespace

ImapServer::ImapServer(const ImapServerConfig& config, ImapHost& host, const ImapSessionInfo& session)
    : config_(config),
      host_(host),
      reader_(config.command_bytes_max),
      tls_active_(session.tls_active),
      tls_available_(session.tls_available),
      plaintext_auth_allowed_(session.plaintext_auth_allowed) {
    RP_ASSERT(config.command_bytes_max <= limits::imap_line_bytes_max);
    RP_ASSERT(config.fetch_batch_count > 0);
}

ImapServer::~ImapServer() { RP_ASSERT(!append_open_); }

// ---- output ----

void ImapServer::out(std::string_view text) {
    if (state_ == State::closed) return;
    if (output_head_ == output_.size() || output_.back().has_stream) output_.emplace_back();
    output_.back().text.append(text);
    output_bytes_ += text.size();
}

void ImapServer::out_stream(const ImapStreamPiece& piece) {
    if (state_ == State::closed) return;
    RP_ASSERT(output_head_ < output_.size());
    RP_ASSERT(!output_.back().has_stream);
    output_.back().has_stream = true;
    output_.back().stream = piece;
    output_bytes_ += piece.bytes;
}

void ImapServer::take_output(std::string& out_text) {
    if (output_head_ == output_.size()) return;
    OutChunk& c = output_[output_head_];
    output_bytes_ -= c.text.size();
    if (out_text.empty()) {
        out_text.swap(c.text);
    } else {
        out_text.append(c.text);
    }
    c.text.clear();
    if (!c.has_stream) output_pop();
}

// The output is a vector read from output_head_: nothing is allocated while a session has
// nothing to say (a deque would hold a block per idle session), and it is given back once
// all of it was taken.
void ImapServer::output_pop() {
    RP_ASSERT(output_head_ < output_.size());
    ++output_head_;
    if (output_head_ < output_.size()) return;
    output_head_ = 0;
    if (output_.capacity() > 8) {
        std::vector<OutChunk>().swap(output_);
    } else {
        output_.clear();
    }
}

bool ImapServer::has_output() const { return output_head_ < output_.size(); }

bool ImapServer::has_stream() const {
    return has_output() && output_[output_head_].text.empty() && output_[output_head_].has_stream;
}

ImapStreamPiece ImapServer::take_stream() {
    RP_ASSERT(has_stream());
    const ImapStreamPiece piece = output_[output_head_].stream;
    output_bytes_ -= piece.bytes;
    output_pop();
    return piece;
}

void ImapServer::untagged(std::string_view text) {
    out("* ");
    out(text);
    out("\r\n");
}

void ImapServer::reply_tagged(std::string_view kind, std::string_view text) {
    scratch_.clear();
    scratch_.append(tag_);
    scratch_.push_back(' ');
    scratch_.append(kind);
    scratch_.push_back(' ');
    scratch_.append(text);
    scratch_.append("\r\n");
    out(scratch_);
}

void ImapServer::reply_status(Status status, std::string_view what) {
    if (status == Status::ok) {
        std::string text(what);
        text.append(" completed");
        reply_tagged("OK", text);
        return;
    }
    reply_tagged("NO", protocols::imap_reply_for(status));
}

void ImapServer::reply_bad(std::string_view tag, std::string_view text) {
    ++counters_.bad_commands;
    ++error_count_;
    std::string line(tag.empty() ? std::string_view("*") : tag);
    line.append(" BAD ");
    line.append(text);
    line.append("\r\n");
    out(line);
    if (error_count_ >= config_.errors_max) close_with_bye("Too many invalid commands");
}

void ImapServer::close_with_bye(std::string_view text) {
    if (state_ == State::closed) return;
    std::string line("* BYE ");
    line.append(text);
    line.append("\r\n");
    out(line);
    if (append_open_) {
        append_open_ = false;
        host_.append_abort();
    }
    end_view();
    state_ = State::closed;
}

std::string ImapServer::capability_text() const {
    std::string text(capabilities_base);
    if (state_ == State::not_authenticated || state_ == State::fresh) {
        if (tls_available_ && !tls_active_) text.append(" STARTTLS");
        const bool login_ok = tls_active_ || !config_.login_requires_tls || plaintext_auth_allowed_;
        text.append(login_ok ? " AUTH=PLAIN" : " LOGINDISABLED");
    }
    return text;
}

// ---- session ----

void ImapServer::greet() {
    RP_ASSERT(state_ == State::fresh);
    state_ = State::not_authenticated;
    out("* OK [CAPABILITY " + capability_text() + "] " + config_.hostname + " ringpost ready\r\n");
}

void ImapServer::refuse(Status reason) {
    RP_ASSERT(state_ == State::fresh);
    state_ = State::not_authenticated;
    close_with_bye(reason == Status::full ? "[UNAVAILABLE] Too many connections, try again later"
                                          : "[UNAVAILABLE] Service not available");
}

bool ImapServer::paused() const {
    return mode_ == Mode::host || state_ == State::wait_tls;
}

ImapTimeoutKind ImapServer::timeout_kind() const {
    if (paused() || state_ == State::closed) return ImapTimeoutKind::none;
    if (mode_ == Mode::idle) return ImapTimeoutKind::idle;
    if (state_ == State::not_authenticated) return ImapTimeoutKind::login;
    return ImapTimeoutKind::autologout;
}

void ImapServer::on_timeout() { close_with_bye("Autologout; idle for too long"); }

void ImapServer::begin_shutdown() {
    shutting_down_ = true;
    if (mode_ == Mode::command || mode_ == Mode::idle || mode_ == Mode::auth_response) {
        close_with_bye("[UNAVAILABLE] Server shutting down");
    }
}

void ImapServer::connection_lost() {
    if (append_open_) {
        append_open_ = false;
        host_.append_abort();
    }
    end_view();
    lost_ = true;
    state_ = State::closed;
    output_.clear();
    output_head_ = 0;
    output_bytes_ = 0;
}

void ImapServer::tls_started() {
    RP_ASSERT(state_ == State::wait_tls);
    RP_ASSERT(!tls_active_);
    tls_active_ = true;
    reader_.reset();
    state_ = State::not_authenticated;
    mode_ = Mode::command;
}

// FLAGS and PERMANENTFLAGS with the keywords defined so far.
void ImapServer::tell_flags() {
    std::string kw;
    for (const std::string& k : keywords_) {
        kw.push_back(' ');
        kw.append(k);
    }
    untagged("FLAGS (" + std::string(system_flags) + kw + ")");
    if (read_only_) {
        untagged("OK [PERMANENTFLAGS ()] No permanent flags permitted");
    } else {
        untagged("OK [PERMANENTFLAGS (" + std::string(system_flags) + kw + " \\*)] Flags permitted");
    }
}

// RFC 3501 7.2.6: a keyword defined since SELECT (by this or another session) gets a new
// untagged FLAGS before the FETCH that shows it.
void ImapServer::keywords_seen(std::span<const std::string_view> keywords) {
    if (state_ != State::selected || lost_) return;
    bool added = false;
    for (std::string_view k : keywords) {
        if (std::find(keywords_.begin(), keywords_.end(), k) != keywords_.end()) continue;
        keywords_.emplace_back(k);  // bounds: keywords_per_account_max names at most.
        added = true;
    }
    if (added) tell_flags();
}

void ImapServer::end_view() {
    if (state_ == State::selected && !lost_) host_.mailbox_close();
    if (state_ == State::selected) state_ = State::authenticated;
    std::vector<std::string>().swap(keywords_);
    view_.clear();
    changes_.clear();
    changes_overflow_ = false;
    saved_search_.clear();
    selected_name_.clear();
}

// ---- input ----

std::size_t ImapServer::feed(std::span<const std::byte> input) {
    std::size_t pos = 0;
    while (state_ != State::closed && !paused() && !output_blocked()) {
        const ReadStep step = reader_.next(input.subspan(pos));
        pos += step.consumed;
        if (step.kind == ReadKind::need_more) {
            RP_ASSERT(pos == input.size());
            break;
        }
        handle_step(step);
    }
    RP_ASSERT(pos <= input.size());
    return pos;
}

void ImapServer::handle_step(const ReadStep& step) {
    switch (step.kind) {
        case ReadKind::need_more:
            return;
        case ReadKind::too_long:
            ++counters_.long_commands;
            if (mode_ == Mode::append_tail) {
                append_open_ = false;
                host_.append_abort();
                mode_ = Mode::command;
                reply_bad(tag_, "Command line too long");
                return;
            }
            // Inside AUTHENTICATE or IDLE the line answers that command: end it tagged.
            reply_bad(mode_ == Mode::command ? std::string_view("*") : std::string_view(tag_),
                      "Command line too long");
            mode_ = Mode::command;
            return;
        case ReadKind::literal:
            handle_literal(step);
            return;
        case ReadKind::literal_data:
            RP_ASSERT(mode_ == Mode::append_stream);
            append_bytes_ += step.text.size();
            host_.append_data(std::as_bytes(std::span<const char>(step.text.data(), step.text.size())));
            return;
        case ReadKind::literal_end:
            RP_ASSERT(mode_ == Mode::append_stream);
            mode_ = Mode::append_tail;
            return;
        case ReadKind::command:
            switch (mode_) {
                case Mode::command: handle_command(step.text); return;
                case Mode::auth_response: auth_response(step.text); return;
                case Mode::idle: idle_line(step.text); return;
                case Mode::append_tail: append_tail_line(step.text); return;
                case Mode::host:
                case Mode::append_stream: break;
            }
            RP_ASSERT(false);
    }
}

void ImapServer::handle_literal(const ReadStep& step) {
    const LiteralInfo info = step.literal;
    if (mode_ != Mode::command) {
        // A literal where none belongs (after an APPEND message, in IDLE or a SASL answer).
        reader_.literal_refuse();
        ++counters_.literals_refused;
        if (mode_ == Mode::append_tail) {
            append_open_ = false;
            host_.append_abort();
        }
        mode_ = Mode::command;
        reply_bad(tag_, "Unexpected literal");  // Ends the command that was in progress.
        if (!info.synchronizing && info.bytes > config_.append_bytes_max) {
            close_with_bye("Literal too big");
        }
        return;
    }
    ImapCommand append;
    if (parse_append_prefix(step.text, append)) {
        tag_ = std::string(append.tag);
        if (state_ != State::authenticated && state_ != State::selected) {
            reader_.literal_refuse();
            reply_bad(tag_, "Command not valid in this state");
        } else if (info.bytes > config_.append_bytes_max) {
            reader_.literal_refuse();
            ++counters_.literals_refused;
            reply_tagged("NO", "[TOOBIG] Message too big");
            if (!info.synchronizing) close_with_bye("[TOOBIG] Message too big");
        } else {
            cmd_ = std::move(append);
            cmd_.tag = tag_;
            append_sync_ = info.synchronizing;
            append_bytes_ = 0;
            append_mailbox_ = cmd_.arg1;
            phase_ = 0;
            ImapAppendRequest request;
            request.mailbox = append_mailbox_;
            request.flags = cmd_.flags.flags;
            request.keywords = cmd_.flags.keywords;
            request.internal_date = cmd_.have_date ? cmd_.date : 0;
            request.bytes = info.bytes;
            host_call_begin();
            host_.append_begin(request);
            if (host_call_end()) after_host();
        }
        return;
    }
    const std::string_view tag = line_tag(step.text);
    if (info.bytes <= reader_.room()) {
        reader_.literal_inline();
        if (info.synchronizing) out("+ Ready for literal data\r\n");
        return;
    }
    ++counters_.literals_refused;
    const std::string tag_copy(tag);
    reader_.literal_refuse();
    reply_bad(tag_copy, "[TOOBIG] Literal too big");
    if (!info.synchronizing && info.bytes > config_.append_bytes_max) {
        close_with_bye("[TOOBIG] Literal too big");
    }
}

void ImapServer::handle_command(std::string_view text) {
    ++counters_.commands;
    const ParseResult r = parse_command(text, cmd_);
    tag_ = std::string(cmd_.tag);
    cmd_.tag = tag_;
    if (!r.ok) {
        if (r.error == "BADCHARSET") {
            reply_tagged("NO", "[BADCHARSET (US-ASCII UTF-8)] Unsupported charset");
            return;
        }
        reply_bad(tag_, r.error);
        return;
    }
    if (!check_state()) return;
    phase_ = 0;
    dispatch();
}

bool ImapServer::check_state() {
    bool ok = false;
    switch (cmd_.verb) {
        case Verb::capability: case Verb::noop: case Verb::logout: case Verb::id:
            ok = true;
            break;
        case Verb::starttls: case Verb::authenticate: case Verb::login:
            ok = state_ == State::not_authenticated;
            break;
        case Verb::enable: case Verb::namespace_: case Verb::select: case Verb::examine:
        case Verb::create: case Verb::delete_: case Verb::rename: case Verb::subscribe:
        case Verb::unsubscribe: case Verb::list: case Verb::lsub: case Verb::status:
        case Verb::append: case Verb::idle:
            ok = state_ == State::authenticated || state_ == State::selected;
            break;
        case Verb::check: case Verb::close: case Verb::unselect: case Verb::expunge:
        case Verb::search: case Verb::fetch: case Verb::store: case Verb::copy: case Verb::move:
            ok = state_ == State::selected;
            break;
        case Verb::unknown:
            break;
    }
    if (!ok) {
        reply_bad(tag_, state_ == State::not_authenticated ? "Not authenticated"
                                                          : "Command not valid in this state");
    }
    return ok;
}

void ImapServer::dispatch() {
    switch (cmd_.verb) {
        case Verb::capability:
            untagged("CAPABILITY " + capability_text());
            finish_command();
            return;
        case Verb::noop: case Verb::check:
            finish_command();
            return;
        case Verb::logout:
            untagged("BYE Logging out");
            finish_command();
            end_view();
            state_ = State::closed;
            return;
        case Verb::starttls:
            if (tls_active_ || !tls_available_) {
                reply_bad(tag_, tls_active_ ? "TLS already active" : "STARTTLS not available");
                return;
            }
            reply_tagged("OK", "Begin TLS negotiation now");
            reader_.reset();
            state_ = State::wait_tls;
            return;
        case Verb::login: do_login(); return;
        case Verb::authenticate: do_authenticate(); return;
        case Verb::enable: do_enable(); return;
        case Verb::id: do_id(); return;
        case Verb::namespace_:
            untagged("NAMESPACE ((\"\" \"/\")) NIL NIL");
            finish_command();
            return;
        case Verb::select: case Verb::examine: do_select(); return;
        case Verb::list: case Verb::lsub: do_list(); return;
        case Verb::status: do_status(); return;
        case Verb::create: case Verb::delete_: case Verb::rename: case Verb::subscribe:
        case Verb::unsubscribe:
            do_mailbox_op();
            return;
        case Verb::append:
            // A complete APPEND reaches here only without a literal marker at a line end
            // (the parser demands one), i.e. never; refuse defensively.
            reply_bad(tag_, "APPEND needs a message literal");
            return;
        case Verb::idle: do_idle(); return;
        case Verb::close: case Verb::unselect: do_close_like(); return;
        case Verb::expunge: do_expunge(); return;
        case Verb::search: case Verb::fetch: do_fetch_like(); return;
        case Verb::store: do_store(); return;
        case Verb::copy: case Verb::move: do_copy(); return;
        case Verb::unknown: break;
    }
    RP_ASSERT(false);
}

void ImapServer::finish_command() {
    const bool seq_sensitive =
        cmd_.verb == Verb::fetch || cmd_.verb == Verb::store || cmd_.verb == Verb::search;
    if (state_ == State::selected && !seq_sensitive) flush_changes();
    std::string what;
    if (cmd_.uid) what = "UID ";
    what.append(verb_name(cmd_.verb));
    reply_status(Status::ok, what);
    mode_ = Mode::command;
    release_scratch();
    if (shutting_down_) close_with_bye("[UNAVAILABLE] Server shutting down");
}

// An idle session keeps no memory of its last big command.
void ImapServer::release_scratch() {
    constexpr std::size_t keep_bytes = 4096;
    if (targets_.capacity() * sizeof(std::uint32_t) > keep_bytes) {
        std::vector<std::uint32_t>().swap(targets_);
    }
    if (matches_.capacity() * sizeof(std::uint32_t) > keep_bytes) {
        std::vector<std::uint32_t>().swap(matches_);
    }
    if (scratch_.capacity() > keep_bytes) std::string().swap(scratch_);
    if (changes_.capacity() > 64) std::vector<Change>().swap(changes_);
}

// ---- host calls ----

void ImapServer::host_call_begin() {
    RP_ASSERT(!host_pending_);
    host_pending_ = true;
    in_host_ = true;
    host_status_ = Status::ok;
    mode_ = Mode::host;
}

bool ImapServer::host_call_end() {
    in_host_ = false;
    return !host_pending_;
}

void ImapServer::complete(Status status) {
    RP_ASSERT(host_pending_);
    host_pending_ = false;
    host_status_ = status;
    if (lost_) return;
    if (!in_host_) after_host();
}

void ImapServer::after_host() {
    RP_ASSERT(!host_pending_);
    if (state_ == State::closed) return;
    const Status st = host_status_;
    mode_ = Mode::command;
    switch (cmd_.verb) {
        case Verb::login: case Verb::authenticate:
            if (st == Status::ok) {
                state_ = State::authenticated;
                reply_tagged("OK", "[CAPABILITY " + capability_text() + "] Logged in");
            } else {
                ++counters_.logins_failed;
                reply_tagged("NO", st == Status::refused || st == Status::permission ||
                                           st == Status::not_found
                                       ? "[AUTHENTICATIONFAILED] Authentication failed"
                                       : "[UNAVAILABLE] Temporary authentication failure");
            }
            break;
        case Verb::select: case Verb::examine:
            if (st == Status::ok) {
                reply_tagged("OK", read_only_ ? "[READ-ONLY] SELECT completed"
                                              : "[READ-WRITE] SELECT completed");
            } else {
                reply_status(st, "");
            }
            break;
        case Verb::list: case Verb::lsub: case Verb::status: case Verb::create:
        case Verb::delete_: case Verb::rename: case Verb::subscribe: case Verb::unsubscribe:
            if (st == Status::ok) finish_command();
            else reply_status(st, "");
            break;
        case Verb::append:
            if (phase_ == 0) {
                if (st == Status::ok) {
                    append_open_ = true;
                    reader_.literal_stream();
                    if (append_sync_) out("+ Ready for literal data\r\n");
                    mode_ = Mode::append_stream;
                } else {
                    reader_.literal_refuse();
                    reply_tagged("NO", st == Status::not_found
                                           ? "[TRYCREATE] Mailbox does not exist"
                                           : protocols::imap_reply_for(st));
                }
            } else if (st == Status::ok) {
                if (state_ == State::selected) flush_changes();
                reply_tagged("OK", scratch_.empty() ? std::string("APPEND completed") : scratch_);
            } else {
                reply_tagged("NO", protocols::imap_reply_for(st));
            }
            break;
        case Verb::fetch: case Verb::search:
            if (phase_ == 0) {
                // The implicit \Seen is stored; now fetch.
                phase_ = 1;
                if (st != Status::ok) {
                    reply_status(st, "");
                    break;
                }
            }
            fetch_batches();
            return;
        case Verb::store:
            if (st == Status::ok) finish_command();
            else reply_status(st, "");
            break;
        case Verb::copy: case Verb::move:
            if (st != Status::ok) {
                reply_tagged("NO", st == Status::not_found ? "[TRYCREATE] Mailbox does not exist"
                                                           : protocols::imap_reply_for(st));
            } else if (cmd_.verb == Verb::copy && !scratch_.empty()) {
                flush_changes();
                reply_tagged("OK", scratch_ + (cmd_.uid ? " UID COPY completed" : " COPY completed"));
            } else {
                finish_command();
            }
            break;
        case Verb::expunge:
            if (st == Status::ok) finish_command();
            else reply_status(st, "");
            break;
        case Verb::close:
            // RFC 3501 6.4.2: CLOSE succeeds even when the expunge did not.
            end_view();
            finish_command();
            break;
        default:
            RP_ASSERT(false);
    }
    if (shutting_down_ && mode_ == Mode::command) close_with_bye("[UNAVAILABLE] Server shutting down");
}

// ---- not authenticated ----

void ImapServer::do_login() {
    const bool login_ok = tls_active_ || !config_.login_requires_tls || plaintext_auth_allowed_;
    if (!login_ok) {
        reply_tagged("NO", "[PRIVACYREQUIRED] LOGIN is disabled without TLS");
        return;
    }
    host_call_begin();
    host_.login(cmd_.arg1, cmd_.arg2);
    if (host_call_end()) after_host();
}

void ImapServer::do_authenticate() {
    const bool login_ok = tls_active_ || !config_.login_requires_tls || plaintext_auth_allowed_;
    if (!iequals(cmd_.arg1, "PLAIN")) {
        reply_tagged("NO", "[CANNOT] Unsupported authentication mechanism");
        return;
    }
    if (!login_ok) {
        reply_tagged("NO", "[PRIVACYREQUIRED] Authentication is disabled without TLS");
        return;
    }
    if (cmd_.have_initial_response) {
        auth_response(cmd_.arg2);
        return;
    }
    out("+ \r\n");
    mode_ = Mode::auth_response;
}

void ImapServer::auth_response(std::string_view line) {
    mode_ = Mode::command;
    if (line == "*") {
        reply_bad(tag_, "AUTHENTICATE cancelled");
        return;
    }
    std::string decoded;
    if (line != "=") {
        for (char c : line) {
            const bool b64 = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                             (c >= '0' && c <= '9') || c == '+' || c == '/' || c == '=';
            if (!b64) {
                reply_bad(tag_, "Invalid base64 data");
                return;
            }
        }
        (void)mime_decode(line, "BASE64", decoded);
    }
    // RFC 4616: [authzid] NUL authcid NUL passwd.
    const std::size_t a = decoded.find('\0');
    const std::size_t b = a == std::string::npos ? a : decoded.find('\0', a + 1);
    if (b == std::string::npos) {
        reply_bad(tag_, "Invalid PLAIN response");
        return;
    }
    const std::string authzid = decoded.substr(0, a);
    cmd_.arg1 = decoded.substr(a + 1, b - a - 1);
    cmd_.arg2 = decoded.substr(b + 1);
    if (!authzid.empty() && authzid != cmd_.arg1) {
        reply_tagged("NO", "[AUTHORIZATIONFAILED] Authorization identity refused");
        return;
    }
    host_call_begin();
    host_.login(cmd_.arg1, cmd_.arg2);
    if (host_call_end()) after_host();
}

// ---- authenticated ----

void ImapServer::do_enable() {
    std::string enabled;
    for (const std::string& c : cmd_.patterns) {
        if (iequals(c, "IMAP4rev2") && !rev2_) {
            rev2_ = true;
            enabled.append(" IMAP4rev2");
        }
    }
    untagged("ENABLED" + enabled);
    finish_command();
}

void ImapServer::do_id() {
    untagged("ID (\"name\" \"ringpost\" \"version\" \"0.1\")");
    finish_command();
}

void ImapServer::do_select() {
    if (state_ == State::selected) {
        end_view();
        untagged("OK [CLOSED] Previous mailbox closed");
    }
    selected_name_ = cmd_.arg1;
    host_call_begin();
    host_.select(selected_name_, cmd_.verb == Verb::examine);
    if (host_call_end()) after_host();
}

void ImapServer::select_done(Status status, const ImapSelectInfo& info) {
    if (!lost_ && status == Status::ok && state_ != State::closed) {
        RP_ASSERT(state_ == State::authenticated);
        state_ = State::selected;
        read_only_ = cmd_.verb == Verb::examine || info.read_only;
        view_.assign(info.uids.begin(), info.uids.end());
        changes_.clear();
        keywords_.assign(info.keywords.begin(), info.keywords.end());
        tell_flags();
        untagged(std::to_string(view_.size()) + " EXISTS");
        if (!rev2_) {
            untagged("0 RECENT");
            const std::uint32_t unseen = info.first_unseen_uid ? seq_of(info.first_unseen_uid) : 0;
            if (unseen) untagged("OK [UNSEEN " + std::to_string(unseen) + "] First unseen");
        }
        untagged("OK [UIDVALIDITY " + std::to_string(info.uidvalidity) + "] UIDs valid");
        untagged("OK [UIDNEXT " + std::to_string(info.uidnext) + "] Predicted next UID");
    } else if (status != Status::ok) {
        selected_name_.clear();
    }
    complete(status);
}

void ImapServer::do_list() {
    if (cmd_.verb == Verb::list && cmd_.patterns.size() == 1 && cmd_.patterns[0].empty()) {
        // RFC 3501 6.3.8: the hierarchy delimiter and root.
        untagged("LIST (\\Noselect) \"/\" \"\"");
        finish_command();
        return;
    }
    host_call_begin();
    host_.list(cmd_.status_items != 0);
    if (host_call_end()) after_host();
}

void ImapServer::list_done(Status status, std::span<const ImapMailboxEntry> boxes) {
    if (lost_ || status != Status::ok) {
        complete(status);
        return;
    }
    const bool lsub = cmd_.verb == Verb::lsub;
    std::string line;
    for (const ImapMailboxEntry& box : boxes) {
        bool match = false;
        for (const std::string& p : cmd_.patterns) {
            if (list_match(box.name, cmd_.arg1 + p)) match = true;
        }
        if (!match) continue;
        if ((lsub || cmd_.list_subscribed) && !box.subscribed) continue;
        if (cmd_.list_select_special_use && box.special_use == 0) continue;
        bool children = false;
        for (const ImapMailboxEntry& other : boxes) {
            if (other.name.size() > box.name.size() + 1 &&
                other.name.substr(0, box.name.size()) == box.name && other.name[box.name.size()] == '/') {
                children = true;
                break;
            }
        }
        line.assign(lsub ? "* LSUB (" : "* LIST (");
        bool first = true;
        if (!lsub) {
            line.append(children ? "\\HasChildren" : "\\HasNoChildren");
            first = false;
            append_special_use(line, box.special_use, first);
            if ((cmd_.list_subscribed || cmd_.list_return_subscribed) && box.subscribed) {
                line.append(" \\Subscribed");
            }
        }
        line.append(") \"/\" ");
        append_astring_quoted(line, box.name);
        line.append("\r\n");
        out(line);
        if (cmd_.status_items != 0 && !lsub) {
            line.assign("* STATUS ");
            append_astring_quoted(line, box.name);
            line.push_back(' ');
            append_status_items(line, cmd_.status_items, box.status);
            line.append("\r\n");
            out(line);
        }
    }
    complete(status);
}

void ImapServer::do_status() {
    host_call_begin();
    host_.status(cmd_.arg1);
    if (host_call_end()) after_host();
}

void ImapServer::status_done(Status status, const ImapMailboxStatus& s) {
    if (!lost_ && status == Status::ok) {
        std::string line("* STATUS ");
        append_astring_quoted(line, cmd_.arg1);
        line.push_back(' ');
        append_status_items(line, cmd_.status_items, s);
        line.append("\r\n");
        out(line);
    }
    complete(status);
}

void ImapServer::do_mailbox_op() {
    MailboxOp op = MailboxOp::create;
    switch (cmd_.verb) {
        case Verb::create:
            op = MailboxOp::create;
            // RFC 3501 6.3.3: a trailing delimiter only says "will have children".
            while (cmd_.arg1.size() > 1 && cmd_.arg1.back() == '/') cmd_.arg1.pop_back();
            break;
        case Verb::delete_: op = MailboxOp::delete_; break;
        case Verb::rename: op = MailboxOp::rename; break;
        case Verb::subscribe: op = MailboxOp::subscribe; break;
        case Verb::unsubscribe: op = MailboxOp::unsubscribe; break;
        default: RP_ASSERT(false);
    }
    host_call_begin();
    host_.mailbox_op(op, cmd_.arg1, cmd_.arg2);
    if (host_call_end()) after_host();
}

void ImapServer::mailbox_op_done(Status status) { complete(status); }
void ImapServer::login_done(Status status) { complete(status); }

void ImapServer::do_idle() {
    out("+ idling\r\n");
    mode_ = Mode::idle;
    if (state_ == State::selected) flush_changes();
}

void ImapServer::idle_line(std::string_view line) {
    mode_ = Mode::command;
    if (!iequals(line, "DONE")) {
        reply_bad(tag_, "Expected DONE");
        return;
    }
    finish_command();
}

void ImapServer::append_tail_line(std::string_view text) {
    // `text` is the whole command; after the message literal only the line end may follow
    // (no MULTIAPPEND, no CATENATE).
    const std::size_t end = text.rfind("}\r\n");
    RP_ASSERT(end != std::string_view::npos);
    mode_ = Mode::command;
    if (end + 3 != text.size()) {
        append_open_ = false;
        host_.append_abort();
        reply_bad(tag_, "Unexpected characters after the message");
        return;
    }
    append_open_ = false;
    phase_ = 1;
    scratch_.clear();
    host_call_begin();
    host_.append_end();
    if (host_call_end()) after_host();
}

void ImapServer::append_ready(Status status) { complete(status); }

void ImapServer::append_done(Status status, std::uint32_t uidvalidity, std::uint32_t uid) {
    scratch_.clear();
    if (status == Status::ok && uidvalidity != 0 && uid != 0) {
        scratch_ = "[APPENDUID " + std::to_string(uidvalidity) + " " + std::to_string(uid) +
                   "] APPEND completed";
    }
    complete(status);
}

// ---- selected ----

std::uint32_t ImapServer::seq_of(std::uint32_t uid) const {
    const auto it = std::lower_bound(view_.begin(), view_.end(), uid);
    if (it == view_.end() || *it != uid) return 0;
    return static_cast<std::uint32_t>(it - view_.begin()) + 1;
}

bool ImapServer::resolve_set(const SequenceSet& set, bool uid, std::vector<std::uint32_t>& result) {
    result.clear();
    if (set.saved) {
        for (std::uint32_t u : saved_search_) {
            if (seq_of(u) != 0) result.push_back(u);
        }
        return true;
    }
    const std::size_t n = view_.size();
    std::vector<std::uint8_t> mark(n, 0);
    for (const SeqRange& r : set.ranges) {
        if (!uid) {
            const std::uint64_t first = r.first == seq_star ? n : r.first;
            std::uint64_t last = r.last == seq_star ? n : r.last;
            const std::uint64_t lo = std::min(first, last);
            last = std::max(first, last);
            if (lo < 1 || last > n) return false;
            std::fill(mark.begin() + static_cast<std::ptrdiff_t>(lo - 1),
                      mark.begin() + static_cast<std::ptrdiff_t>(last), 1);
        } else {
            const std::uint32_t max = view_.empty() ? 0 : view_.back();
            std::uint32_t lo = r.first == seq_star ? max : r.first;
            std::uint32_t hi = r.last == seq_star ? max : r.last;
            if (lo > hi) std::swap(lo, hi);
            const auto b = std::lower_bound(view_.begin(), view_.end(), lo);
            const auto e = std::upper_bound(view_.begin(), view_.end(), hi);
            if (b < e) std::fill(mark.begin() + (b - view_.begin()), mark.begin() + (e - view_.begin()), 1);
        }
    }
    for (std::size_t i = 0; i < n; ++i) {
        if (mark[i]) result.push_back(view_[i]);
    }
    return true;
}

void ImapServer::do_fetch_like() {
    host_status_ = Status::ok;  // No host call may happen (empty mailbox): forget the last one.
    is_search_ = cmd_.verb == Verb::search;
    matches_.clear();
    fetch_needs_ = 0;
    fetch_add_flags_ = false;
    batch_next_ = 0;
    if (is_search_) {
        targets_ = view_;
        search_needs(cmd_.search, fetch_needs_, 0);
    } else {
        if (!resolve_set(cmd_.set, cmd_.uid, targets_)) {
            reply_bad(tag_, "Invalid message sequence number");
            return;
        }
        bool any_seen = false;
        bool has_flags = false;
        for (const FetchItem& item : cmd_.fetch) {
            switch (item.att) {
                case FetchAtt::envelope: case FetchAtt::body: case FetchAtt::bodystructure:
                    fetch_needs_ |= fetch_need_mime;
                    break;
                case FetchAtt::body_section: case FetchAtt::rfc822_header:
                case FetchAtt::rfc822_text:
                    if (item.att != FetchAtt::body_section || !item.section.part.empty() ||
                        item.section.text != SectionText::none) {
                        fetch_needs_ |= fetch_need_mime;
                    }
                    if (item.section.text == SectionText::header_fields ||
                        item.section.text == SectionText::header_fields_not) {
                        fetch_needs_ |= fetch_need_bytes;
                    }
                    break;
                case FetchAtt::binary: case FetchAtt::binary_size:
                    fetch_needs_ |= fetch_need_mime | fetch_need_bytes;
                    break;
                case FetchAtt::flags: has_flags = true; break;
                default: break;
            }
            if (sets_seen(item)) any_seen = true;
        }
        if (any_seen && !read_only_) {
            fetch_add_flags_ = !has_flags;
            if (!targets_.empty()) {
                phase_ = 0;
                host_call_begin();
                host_.store(targets_, StoreMode::add, flag_seen, {});
                if (host_call_end()) after_host();
                return;
            }
        }
    }
    phase_ = 1;
    fetch_batches();
}

void ImapServer::fetch_batches() {
    while (batch_next_ < targets_.size()) {
        if (host_status_ != Status::ok) break;
        if (output_blocked()) {
            waiting_output_ = true;
            mode_ = Mode::host;
            return;
        }
        const std::size_t n = std::min<std::size_t>(config_.fetch_batch_count, targets_.size() - batch_next_);
        ImapFetchRequest request;
        request.uids = std::span<const std::uint32_t>(targets_.data() + batch_next_, n);
        request.needs = fetch_needs_;
        batch_next_ += n;
        host_call_begin();
        host_.fetch(request);
        if (!host_call_end()) return;  // fetch_done() goes on with the next batch.
        if (state_ == State::closed) return;
    }
    fetch_finish();
}

void ImapServer::on_output_drained() {
    if (!waiting_output_ || output_blocked() || state_ == State::closed) return;
    waiting_output_ = false;
    fetch_batches();
}

void ImapServer::fetch_finish() {
    mode_ = Mode::command;
    if (host_status_ != Status::ok) {
        reply_status(host_status_, "");
        return;
    }
    if (is_search_) emit_search_result();
    finish_command();
}

void ImapServer::fetch_message(const ImapMessageData& m) {
    RP_ASSERT(host_pending_);
    if (lost_ || state_ == State::closed) return;
    const std::uint32_t seq = seq_of(m.uid);
    if (seq == 0) return;
    if (fetch_needs_ & fetch_need_mime) RP_ASSERT(m.mime != nullptr);
    if (fetch_needs_ & fetch_need_bytes) RP_ASSERT(m.bytes.size() == m.size);
    if (is_search_) {
        if (search_match(cmd_.search, m, seq, 0)) matches_.push_back(m.uid);
        return;
    }
    emit_fetch(m, seq);
}

void ImapServer::fetch_done(Status status) {
    if (status != Status::ok) batch_next_ = targets_.size();
    complete(status);
}

void ImapServer::emit_fetch(const ImapMessageData& m, std::uint32_t seq) {
    if (!m.keywords.empty()) keywords_seen(m.keywords);
    std::string& line = scratch_;
    line.assign("* ");
    append_u64(line, seq);
    line.append(" FETCH (");
    bool first = true;
    auto sep = [&] {
        if (!first) line.push_back(' ');
        first = false;
    };
    bool uid_listed = false;
    for (const FetchItem& item : cmd_.fetch) uid_listed |= item.att == FetchAtt::uid;
    if (cmd_.uid && !uid_listed) {
        sep();
        line.append("UID ");
        append_u64(line, m.uid);
    }
    if (fetch_add_flags_) {
        sep();
        line.append("FLAGS ");
        append_flags(line, m.flags, m.keywords);
    }
    for (const FetchItem& item : cmd_.fetch) {
        sep();
        switch (item.att) {
            case FetchAtt::uid: line.append("UID "); append_u64(line, m.uid); break;
            case FetchAtt::flags: line.append("FLAGS "); append_flags(line, m.flags, m.keywords); break;
            case FetchAtt::internaldate: line.append("INTERNALDATE "); append_date_time(line, m.internal_date); break;
            case FetchAtt::rfc822_size: line.append("RFC822.SIZE "); append_u64(line, m.size); break;
            case FetchAtt::modseq: line.append("MODSEQ ("); append_u64(line, m.modseq); line.push_back(')'); break;
            case FetchAtt::envelope:
                line.append("ENVELOPE ");
                mime_append_envelope(line, m.mime->parts[0].envelope);
                break;
            case FetchAtt::body: line.append("BODY "); mime_append_body(line, *m.mime, false); break;
            case FetchAtt::bodystructure: line.append("BODYSTRUCTURE "); mime_append_body(line, *m.mime, true); break;
            case FetchAtt::body_section: case FetchAtt::rfc822: case FetchAtt::rfc822_header:
            case FetchAtt::rfc822_text: case FetchAtt::binary: case FetchAtt::binary_size:
                emit_section(item, m);  // Writes into `line` (scratch_) and may stream.
                break;
        }
    }
    line.append(")\r\n");
    out(line);
}

void ImapServer::emit_section(const FetchItem& item, const ImapMessageData& m) {
    std::string& line = scratch_;
    Section section = item.section;
    switch (item.att) {
        case FetchAtt::rfc822: line.append("RFC822"); break;
        case FetchAtt::rfc822_header: line.append("RFC822.HEADER"); section.text = SectionText::header; break;
        case FetchAtt::rfc822_text: line.append("RFC822.TEXT"); section.text = SectionText::text; break;
        default:
            line.append(item.att == FetchAtt::body_section ? "BODY[" : item.att == FetchAtt::binary ? "BINARY[" : "BINARY.SIZE[");
            append_section_name(line, section);
            line.push_back(']');
            if (item.partial) {
                line.push_back('<');
                append_u64(line, item.partial_offset);
                line.push_back('>');
            }
            break;
    }
    line.push_back(' ');
    auto clip = [&](std::uint64_t& offset, std::uint64_t& bytes) {
        if (!item.partial) return;
        if (item.partial_offset >= bytes) {
            bytes = 0;
            return;
        }
        offset += item.partial_offset;
        bytes = std::min<std::uint64_t>(bytes - item.partial_offset, item.partial_bytes);
    };
    if (item.att == FetchAtt::binary || item.att == FetchAtt::binary_size) {
        const MimePart* p = mime_resolve(*m.mime, section.part);
        std::string decoded;
        if (p == nullptr || p->multipart() || p->body.offset + p->body.bytes > m.bytes.size() ||
            !mime_decode(as_text(m.bytes).substr(p->body.offset, p->body.bytes), p->encoding, decoded)) {
            line.append(item.att == FetchAtt::binary_size ? "0" : "NIL");
            return;
        }
        if (item.att == FetchAtt::binary_size) {
            append_u64(line, decoded.size());
            return;
        }
        std::uint64_t offset = 0;
        std::uint64_t bytes = decoded.size();
        clip(offset, bytes);
        line.append(decoded.find('\0') == std::string::npos ? "{" : "~{");
        append_u64(line, bytes);
        line.append("}\r\n");
        line.append(decoded, offset, bytes);
        return;
    }
    if (section.text == SectionText::header_fields || section.text == SectionText::header_fields_not) {
        const std::string fields = mime_header_fields(as_text(m.bytes), *m.mime, section);
        std::uint64_t offset = 0;
        std::uint64_t bytes = fields.size();
        clip(offset, bytes);
        line.push_back('{');
        append_u64(line, bytes);
        line.append("}\r\n");
        line.append(fields, offset, bytes);
        return;
    }
    MimeRange range{0, m.size};
    if (m.mime != nullptr && !mime_section_range(*m.mime, section, range)) {
        line.append("\"\"");
        return;
    }
    range.bytes = std::min(range.bytes, m.size - std::min(range.offset, m.size));
    clip(range.offset, range.bytes);
    line.push_back('{');
    append_u64(line, range.bytes);
    line.append("}\r\n");
    if (range.bytes == 0) return;
    // The literal's bytes come straight from the store: flush the text, then the range.
    out(line);
    out_stream(ImapStreamPiece{m.body_token, range.offset, range.bytes});
    line.clear();
}

bool ImapServer::search_match(const SearchKey& key, const ImapMessageData& m, std::uint32_t seq,
                              int depth) const {
    if (depth > 64) return false;
    auto header_has = [&](std::string_view field, std::string_view value) {
        const MimePart& root = m.mime->parts[0];
        const std::string_view header = as_text(m.bytes).substr(root.header.offset, root.header.bytes);
        std::string v;
        if (!mime_header_value(header, field, v)) return false;
        return icontains(v, value);
    };
    auto sent_days = [&](std::int64_t& days) {
        return m.mime->parts[0].envelope.has_date && mime_date_days(m.mime->parts[0].envelope.date, days);
    };
    const std::int64_t internal_days = (m.internal_date >= 0 ? m.internal_date : m.internal_date - 86399) / 86400;
    std::int64_t days = 0;
    switch (key.op) {
        case SearchOp::all: return true;
        case SearchOp::and_:
            for (const SearchKey& c : key.children) {
                if (!search_match(c, m, seq, depth + 1)) return false;
            }
            return true;
        case SearchOp::or_:
            return search_match(key.children[0], m, seq, depth + 1) ||
                   search_match(key.children[1], m, seq, depth + 1);
        case SearchOp::not_: return !search_match(key.children[0], m, seq, depth + 1);
        case SearchOp::seqset: case SearchOp::uid: {
            const bool by_uid = key.op == SearchOp::uid;
            if (key.set.saved) {
                return std::binary_search(saved_search_.begin(), saved_search_.end(), m.uid);
            }
            const std::uint32_t value = by_uid ? m.uid : seq;
            const std::uint32_t star = by_uid ? (view_.empty() ? 0 : view_.back())
                                              : static_cast<std::uint32_t>(view_.size());
            for (const SeqRange& r : key.set.ranges) {
                std::uint32_t lo = r.first == seq_star ? star : r.first;
                std::uint32_t hi = r.last == seq_star ? star : r.last;
                if (lo > hi) std::swap(lo, hi);
                if (value >= lo && value <= hi) return true;
            }
            return false;
        }
        case SearchOp::answered: return (m.flags & flag_answered) != 0;
        case SearchOp::deleted: return (m.flags & flag_deleted) != 0;
        case SearchOp::draft: return (m.flags & flag_draft) != 0;
        case SearchOp::flagged: return (m.flags & flag_flagged) != 0;
        case SearchOp::seen: return (m.flags & flag_seen) != 0;
        case SearchOp::unanswered: return (m.flags & flag_answered) == 0;
        case SearchOp::undeleted: return (m.flags & flag_deleted) == 0;
        case SearchOp::undraft: return (m.flags & flag_draft) == 0;
        case SearchOp::unflagged: return (m.flags & flag_flagged) == 0;
        case SearchOp::unseen: return (m.flags & flag_seen) == 0;
        case SearchOp::recent: case SearchOp::new_: return false;  // \Recent is not kept.
        case SearchOp::old: return true;
        case SearchOp::keyword: case SearchOp::unkeyword: {
            bool has = false;
            for (std::string_view k : m.keywords) has |= iequals(k, key.text);
            return key.op == SearchOp::keyword ? has : !has;
        }
        case SearchOp::before: return internal_days < key.number;
        case SearchOp::on: return internal_days == key.number;
        case SearchOp::since: return internal_days >= key.number;
        case SearchOp::sentbefore: return sent_days(days) && days < key.number;
        case SearchOp::senton: return sent_days(days) && days == key.number;
        case SearchOp::sentsince: return sent_days(days) && days >= key.number;
        case SearchOp::larger: return m.size > static_cast<std::uint64_t>(key.number);
        case SearchOp::smaller: return m.size < static_cast<std::uint64_t>(key.number);
        case SearchOp::bcc: return header_has("Bcc", key.text);
        case SearchOp::cc: return header_has("Cc", key.text);
        case SearchOp::from: return header_has("From", key.text);
        case SearchOp::to: return header_has("To", key.text);
        case SearchOp::subject: return header_has("Subject", key.text);
        case SearchOp::header: return header_has(key.text, key.text2);
        case SearchOp::body: {
            const MimePart& root = m.mime->parts[0];
            return icontains(as_text(m.bytes).substr(root.body.offset), key.text);
        }
        case SearchOp::text: return icontains(as_text(m.bytes), key.text);
    }
    return false;
}

void ImapServer::emit_search_result() {
    std::vector<std::uint32_t> numbers;
    numbers.reserve(matches_.size());
    for (std::uint32_t u : matches_) numbers.push_back(cmd_.uid ? u : seq_of(u));
    if (cmd_.search_return & search_return_save) saved_search_ = matches_;
    std::string line;
    if (!cmd_.esearch && !rev2_) {
        line.assign("* SEARCH");
        for (std::uint32_t n : numbers) {
            line.push_back(' ');
            append_u64(line, n);
        }
        line.append("\r\n");
        out(line);
        return;
    }
    const std::uint8_t ret = cmd_.esearch ? cmd_.search_return : std::uint8_t{search_return_all};
    if (ret == search_return_save) return;  // RFC 5182: SAVE alone returns no ESEARCH.
    line.assign("* ESEARCH (TAG ");
    append_astring_quoted(line, tag_);
    line.push_back(')');
    if (cmd_.uid) line.append(" UID");
    if (!numbers.empty()) {
        if (ret & search_return_min) { line.append(" MIN "); append_u64(line, numbers.front()); }
        if (ret & search_return_max) { line.append(" MAX "); append_u64(line, numbers.back()); }
        if (ret & search_return_all) { line.append(" ALL "); append_set(line, numbers); }
    }
    if (ret & search_return_count) { line.append(" COUNT "); append_u64(line, numbers.size()); }
    line.append("\r\n");
    out(line);
}

void ImapServer::do_store() {
    if (!resolve_set(cmd_.set, cmd_.uid, targets_)) {
        reply_bad(tag_, "Invalid message sequence number");
        return;
    }
    if (read_only_) {
        reply_tagged("NO", "[READ-ONLY] Mailbox is read-only");
        return;
    }
    if (targets_.empty()) {
        finish_command();
        return;
    }
    host_call_begin();
    host_.store(targets_, cmd_.store_mode, cmd_.flags.flags & flag_bits_all, cmd_.flags.keywords);
    if (host_call_end()) after_host();
}

void ImapServer::store_done(Status status, std::span<const ImapFlagUpdate> updated) {
    const bool report = !lost_ && status == Status::ok && cmd_.verb == Verb::store && !cmd_.silent;
    for (const ImapFlagUpdate& u : updated) {
        if (status == Status::ok && !u.keywords.empty()) keywords_seen(u.keywords);
        if (!report) continue;
        const std::uint32_t seq = seq_of(u.uid);
        if (seq == 0) continue;
        std::string line("* ");
        append_u64(line, seq);
        line.append(" FETCH (FLAGS ");
        append_flags(line, u.flags, u.keywords);
        if (cmd_.uid) {
            line.append(" UID ");
            append_u64(line, u.uid);
        }
        line.append(")\r\n");
        out(line);
    }
    complete(status);
}

void ImapServer::do_copy() {
    if (!resolve_set(cmd_.set, cmd_.uid, targets_)) {
        reply_bad(tag_, "Invalid message sequence number");
        return;
    }
    if (cmd_.verb == Verb::move && read_only_) {
        reply_tagged("NO", "[READ-ONLY] Mailbox is read-only");
        return;
    }
    scratch_.clear();
    if (targets_.empty()) {
        finish_command();
        return;
    }
    host_call_begin();
    host_.copy(targets_, cmd_.arg1, cmd_.verb == Verb::move);
    if (host_call_end()) after_host();
}

void ImapServer::copy_done(Status status, std::uint32_t dest_uidvalidity,
                           std::span<const std::pair<std::uint32_t, std::uint32_t>> uid_map) {
    scratch_.clear();
    if (!lost_ && status == Status::ok && !uid_map.empty() && dest_uidvalidity != 0) {
        // RFC 4315: COPYUID uidvalidity source-set dest-set, in corresponding order.
        std::string src;
        std::string dst;
        for (std::size_t i = 0; i < uid_map.size(); ++i) {
            if (i) {
                src.push_back(',');
                dst.push_back(',');
            }
            append_u64(src, uid_map[i].first);
            append_u64(dst, uid_map[i].second);
        }
        scratch_ = "[COPYUID " + std::to_string(dest_uidvalidity) + " " + src + " " + dst + "]";
        if (cmd_.verb == Verb::move) {
            untagged("OK " + scratch_ + " Moved");
            for (const auto& [from, to] : uid_map) {
                (void)to;
                const std::uint32_t seq = seq_of(from);
                if (seq == 0) continue;
                untagged(std::to_string(seq) + " EXPUNGE");
                view_.erase(view_.begin() + (seq - 1));
            }
        }
    }
    complete(status);
}

void ImapServer::do_expunge() {
    if (read_only_) {
        reply_tagged("NO", "[READ-ONLY] Mailbox is read-only");
        return;
    }
    if (cmd_.uid) {
        if (!resolve_set(cmd_.set, true, targets_)) {
            reply_bad(tag_, "Invalid UID set");
            return;
        }
        if (targets_.empty()) {
            finish_command();
            return;
        }
    } else {
        targets_.clear();
    }
    host_call_begin();
    host_.expunge(targets_);
    if (host_call_end()) after_host();
}

void ImapServer::expunge_done(Status status, std::span<const std::uint32_t> uids) {
    if (!lost_ && status == Status::ok && cmd_.verb == Verb::expunge) {
        for (std::uint32_t uid : uids) {
            const std::uint32_t seq = seq_of(uid);
            if (seq == 0) continue;
            untagged(std::to_string(seq) + " EXPUNGE");
            view_.erase(view_.begin() + (seq - 1));
        }
    }
    complete(status);
}

void ImapServer::do_close_like() {
    if (cmd_.verb == Verb::unselect || read_only_) {
        end_view();
        finish_command();
        return;
    }
    targets_.clear();
    host_call_begin();
    host_.expunge(targets_);
    if (host_call_end()) after_host();
}

// ---- changes by others ----

void ImapServer::mailbox_exists(std::uint32_t uid) {
    if (state_ != State::selected || lost_) return;
    if (changes_.size() >= config_.pending_changes_max) {
        changes_overflow_ = true;
    } else {
        changes_.push_back(Change{Change::Kind::exists, uid, 0, 0, {}});
    }
    if (mode_ == Mode::idle) flush_changes();
}

void ImapServer::mailbox_expunged(std::uint32_t uid) {
    if (state_ != State::selected || lost_) return;
    if (changes_.size() >= config_.pending_changes_max) {
        changes_overflow_ = true;
    } else {
        changes_.push_back(Change{Change::Kind::expunged, uid, 0, 0, {}});
    }
    if (mode_ == Mode::idle) flush_changes();
}

void ImapServer::mailbox_flags(const ImapFlagUpdate& update) {
    if (state_ != State::selected || lost_) return;
    if (changes_.size() >= config_.pending_changes_max) {
        changes_overflow_ = true;
    } else {
        Change c{Change::Kind::flags, update.uid, update.flags, update.modseq, {}};
        for (std::string_view k : update.keywords) c.keywords.emplace_back(k);
        changes_.push_back(std::move(c));
    }
    if (mode_ == Mode::idle) flush_changes();
}

void ImapServer::flush_changes() {
    if (changes_overflow_) {
        close_with_bye("[UNAVAILABLE] Too many mailbox changes, please reconnect");
        return;
    }
    bool exists_dirty = false;
    auto tell_exists = [&] {
        if (!exists_dirty) return;
        untagged(std::to_string(view_.size()) + " EXISTS");
        exists_dirty = false;
    };
    std::vector<std::string_view> keywords;
    for (const Change& c : changes_) {
        switch (c.kind) {
            case Change::Kind::exists:
                if (view_.empty() || c.uid > view_.back()) {
                    view_.push_back(c.uid);
                    exists_dirty = true;
                }
                break;
            case Change::Kind::expunged: {
                tell_exists();
                const std::uint32_t seq = seq_of(c.uid);
                if (seq == 0) break;
                untagged(std::to_string(seq) + " EXPUNGE");
                view_.erase(view_.begin() + (seq - 1));
                break;
            }
            case Change::Kind::flags: {
                tell_exists();
                const std::uint32_t seq = seq_of(c.uid);
                if (seq == 0) break;
                keywords.assign(c.keywords.begin(), c.keywords.end());
                keywords_seen(keywords);
                std::string line(std::to_string(seq));
                line.append(" FETCH (UID ");
                append_u64(line, c.uid);
                line.append(" FLAGS ");
                append_flags(line, c.flags, keywords);
                line.push_back(')');
                untagged(line);
                break;
            }
        }
    }
    tell_exists();
    changes_.clear();
}

}  // namespace rp::imap
