// protocols/imap/imap_parser.cc: see imap_parser.h.
#include "protocols/imap/imap_parser.h"

#include <algorithm>
#include <charconv>
#include <cstring>

#include "core/assert.h"

namespace rp::imap {

// ---------------------------------------------------------------------------------------------
// ImapReader.

namespace {

// Finds "{n}" or "{n+}" at the end of `line`. Sizes beyond 2^63 saturate (always refused).
bool literal_marker(std::string_view line, LiteralInfo& info, std::size_t& marker_bytes) {
    if (line.size() < 3 || line.back() != '}') return false;
    std::size_t end = line.size() - 1;
    bool plus = false;
    if (line[end - 1] == '+') {
        plus = true;
        --end;
    }
    std::size_t begin = end;
    while (begin > 0 && line[begin - 1] >= '0' && line[begin - 1] <= '9') --begin;
    if (begin == end || begin == 0 || line[begin - 1] != '{') return false;
    std::uint64_t n = 0;
    for (std::size_t i = begin; i < end; ++i) {
        const auto digit = static_cast<std::uint64_t>(line[i] - '0');
        n = n > (~std::uint64_t{0} >> 1) / 10 ? ~std::uint64_t{0} >> 1 : n * 10 + digit;
    }
    info.bytes = n;
    info.synchronizing = !plus;
    marker_bytes = line.size() - (begin - 1);
    return true;
}

}  // namespace

ImapReader::ImapReader(std::uint32_t command_bytes_max) : command_bytes_max_(command_bytes_max) {
    RP_ASSERT(command_bytes_max >= 64);
}

void ImapReader::reset() {
    mode_ = Mode::line;
    buffer_.clear();
    buffer_returned_ = false;
    decision_owed_ = false;
    discard_ = false;
    literal_left_ = 0;
}

bool ImapReader::mid_command() const {
    return mode_ != Mode::line || discard_ || (!buffer_.empty() && !buffer_returned_);
}

std::uint64_t ImapReader::room() const {
    // bounds: buffer_ never exceeds command_bytes_max_ + 2 (the CR and LF of a line).
    return buffer_.size() >= command_bytes_max_ ? 0 : command_bytes_max_ - buffer_.size();
}

void ImapReader::literal_inline() {
    RP_ASSERT(decision_owed_);
    RP_ASSERT(pending_.bytes <= room());
    decision_owed_ = false;
    literal_left_ = pending_.bytes;
    mode_ = Mode::literal_inline;
}

void ImapReader::literal_stream() {
    RP_ASSERT(decision_owed_);
    decision_owed_ = false;
    literal_left_ = pending_.bytes;
    mode_ = Mode::literal_stream;
}

void ImapReader::literal_refuse() {
    RP_ASSERT(decision_owed_);
    decision_owed_ = false;
    buffer_.clear();
    if (pending_.synchronizing) {
        mode_ = Mode::line;  // The client sends no literal: the next line is a new command.
        return;
    }
    literal_left_ = pending_.bytes;
    discard_ = true;
    mode_ = Mode::literal_skip;
}

ReadStep ImapReader::next(std::span<const std::byte> input) {
    RP_ASSERT(!decision_owed_);
    if (buffer_returned_) {
        buffer_.clear();
        buffer_returned_ = false;
    }
    const char* const data = reinterpret_cast<const char*>(input.data());
    const std::size_t size = input.size();
    std::size_t pos = 0;
    for (;;) {
        const std::size_t rest = size - pos;
        switch (mode_) {
            case Mode::literal_inline: {
                const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(literal_left_, rest));
                buffer_.append(data + pos, n);
                pos += n;
                literal_left_ -= n;
                if (literal_left_ > 0) return ReadStep{size, ReadKind::need_more, {}, {}};
                mode_ = Mode::line;
                continue;
            }
            case Mode::literal_stream: {
                if (literal_left_ == 0) {
                    mode_ = Mode::line;
                    return ReadStep{pos, ReadKind::literal_end, {}, {}};
                }
                if (rest == 0) return ReadStep{size, ReadKind::need_more, {}, {}};
                const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(literal_left_, rest));
                literal_left_ -= n;
                return ReadStep{pos + n, ReadKind::literal_data, std::string_view(data + pos, n), {}};
            }
            case Mode::literal_skip: {
                const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(literal_left_, rest));
                pos += n;
                literal_left_ -= n;
                if (literal_left_ > 0) return ReadStep{size, ReadKind::need_more, {}, {}};
                mode_ = Mode::line;
                continue;
            }
            case Mode::skip_line: {
                const void* lf = rest == 0 ? nullptr : std::memchr(data + pos, '\n', rest);
                if (lf == nullptr) return ReadStep{size, ReadKind::need_more, {}, {}};
                pos = static_cast<std::size_t>(static_cast<const char*>(lf) - data) + 1;
                mode_ = Mode::line;
                continue;
            }
            case Mode::line: {
                ReadStep step = line_step(data + pos, rest);
                step.consumed += pos;
                if (step.kind == ReadKind::need_more && step.consumed < size) {
                    pos = step.consumed;  // A discarded command ended: go on.
                    continue;
                }
                return step;
            }
        }
    }
}

ReadStep ImapReader::line_step(const char* data, std::size_t size) {
    const void* lf = size == 0 ? nullptr : std::memchr(data, '\n', size);
    if (lf == nullptr) {
        // bounds: buffer_.size() <= command_bytes_max_ + 1 and size is an input length.
        if (buffer_.size() + size > std::size_t{command_bytes_max_} + 1) {
            const bool report = !discard_;
            buffer_.clear();
            discard_ = false;
            mode_ = Mode::skip_line;
            return ReadStep{size, report ? ReadKind::too_long : ReadKind::need_more, {}, {}};
        }
        buffer_.append(data, size);
        return ReadStep{size, ReadKind::need_more, {}, {}};
    }
    const std::size_t line_bytes = static_cast<std::size_t>(static_cast<const char*>(lf) - data);
    const std::size_t consumed = line_bytes + 1;
    // bounds: as above; the line is checked before it is appended.
    if (buffer_.size() + line_bytes > std::size_t{command_bytes_max_} + 1) {
        const bool report = !discard_;
        buffer_.clear();
        discard_ = false;
        return ReadStep{consumed, report ? ReadKind::too_long : ReadKind::need_more, {}, {}};
    }
    std::string_view text;
    const bool zero_copy = buffer_.empty();
    if (zero_copy) {
        text = std::string_view(data, line_bytes);
    } else {
        buffer_.append(data, line_bytes);
        text = buffer_;
    }
    if (!text.empty() && text.back() == '\r') text.remove_suffix(1);
    LiteralInfo info;
    std::size_t marker_bytes = 0;
    if (literal_marker(text, info, marker_bytes)) {
        if (zero_copy) buffer_.assign(text);
        else buffer_.resize(text.size());
        buffer_.append("\r\n");
        if (discard_) {
            buffer_.clear();
            if (info.synchronizing) {
                discard_ = false;  // The client will not send it; the command is over.
            } else {
                literal_left_ = info.bytes;
                mode_ = Mode::literal_skip;
            }
            return ReadStep{consumed, ReadKind::need_more, {}, {}};
        }
        pending_ = info;
        decision_owed_ = true;
        return ReadStep{consumed, ReadKind::literal,
                        std::string_view(buffer_).substr(0, buffer_.size() - 2), info};
    }
    if (discard_) {
        buffer_.clear();
        discard_ = false;
        return ReadStep{consumed, ReadKind::need_more, {}, {}};
    }
    if (!zero_copy) buffer_returned_ = true;
    return ReadStep{consumed, ReadKind::command, text, {}};
}

// ---------------------------------------------------------------------------------------------
// Grammar.

namespace {

bool is_atom_char(char c) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f) return false;
    switch (c) {
        case '(': case ')': case '{': case '%': case '*': case '"': case '\\': case ']':
            return false;
        default:
            return true;
    }
}
bool is_astring_char(char c) { return is_atom_char(c) || c == ']'; }
bool is_list_char(char c) { return is_atom_char(c) || c == '%' || c == '*' || c == ']'; }

char upper(char c) { return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 32) : c; }

bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        if (upper(a[i]) != upper(b[i])) return false;
    }
    return true;
}

constexpr int search_depth_max = 32;

class Cursor {
public:
    explicit Cursor(std::string_view text) : s_(text) {}

    bool at_end() const { return pos_ >= s_.size(); }
    char peek() const { return at_end() ? '\0' : s_[pos_]; }
    std::size_t pos() const { return pos_; }
    void set_pos(std::size_t p) { pos_ = p; }
    bool fail(std::string_view why) {
        if (error_.empty()) error_ = why;
        return false;
    }
    std::string_view error() const { return error_.empty() ? "syntax error" : error_; }

    bool eat(char c) {
        if (peek() != c) return false;
        ++pos_;
        return true;
    }
    bool sp() { return eat(' ') || fail("expected a space"); }
    bool expect(char c, std::string_view why) { return eat(c) || fail(why); }

    // Case-insensitive keyword followed by a non-atom character.
    bool keyword(std::string_view word) {
        if (s_.size() - pos_ < word.size()) return false;
        if (!iequals(s_.substr(pos_, word.size()), word)) return false;
        const std::size_t after = pos_ + word.size();
        if (after < s_.size() && is_atom_char(s_[after]) && s_[after] != '[' && s_[after] != '.') {
            return false;
        }
        pos_ = after;
        return true;
    }

    std::string_view atom_view(bool (*ok)(char) = is_atom_char) {
        const std::size_t b = pos_;
        while (!at_end() && ok(s_[pos_])) ++pos_;
        return s_.substr(b, pos_ - b);
    }

    bool number(std::uint64_t& out, std::uint64_t max) {
        const std::size_t b = pos_;
        std::uint64_t n = 0;
        while (!at_end() && s_[pos_] >= '0' && s_[pos_] <= '9') {
            n = n * 10 + static_cast<std::uint64_t>(s_[pos_] - '0');
            if (n > max) return fail("number out of range");
            ++pos_;
        }
        if (pos_ == b) return fail("expected a number");
        out = n;
        return true;
    }
    bool nz_number32(std::uint32_t& out) {
        std::uint64_t n = 0;
        if (!number(n, 0xffffffffu)) return false;
        if (n == 0) return fail("zero is not a valid number here");
        out = static_cast<std::uint32_t>(n);
        return true;
    }

    bool quoted(std::string& out) {
        if (!eat('"')) return fail("expected a quoted string");
        out.clear();
        while (!at_end()) {
            const char c = s_[pos_++];
            if (c == '"') return true;
            if (c == '\r' || c == '\n' || c == '\0') return fail("bad character in quoted string");
            if (c == '\\') {
                const char e = peek();
                if (e != '"' && e != '\\') return fail("bad escape in quoted string");
                ++pos_;
                out.push_back(e);
                continue;
            }
            out.push_back(c);
        }
        return fail("unterminated quoted string");
    }

    // "{n}" or "{n+}" CRLF n bytes, as the reader assembled it.
    bool literal(std::string& out) {
        if (!eat('{')) return fail("expected a literal");
        std::uint64_t n = 0;
        if (!number(n, 0xffffffffu)) return false;
        eat('+');
        if (!eat('}') || !eat('\r') || !eat('\n')) return fail("bad literal");
        if (s_.size() - pos_ < n) return fail("literal is cut short");
        out.assign(s_.substr(pos_, static_cast<std::size_t>(n)));
        pos_ += static_cast<std::size_t>(n);
        if (out.find('\0') != std::string::npos) return fail("NUL in a literal");
        return true;
    }

    bool string(std::string& out) {
        if (peek() == '"') return quoted(out);
        if (peek() == '{') return literal(out);
        return fail("expected a string");
    }

    bool astring(std::string& out) {
        if (peek() == '"' || peek() == '{') return string(out);
        const std::string_view a = atom_view(is_astring_char);
        if (a.empty()) return fail("expected a string or atom");
        out.assign(a);
        return true;
    }

    bool nstring(std::string& out, bool& nil) {
        nil = keyword("NIL");
        if (nil) {
            out.clear();
            return true;
        }
        return string(out);
    }

    bool mailbox(std::string& out) {
        if (!astring(out)) return false;
        if (iequals(out, "INBOX")) out = "INBOX";
        return true;
    }

    bool list_mailbox(std::string& out) {
        if (peek() == '"' || peek() == '{') return string(out);
        const std::string_view a = atom_view(is_list_char);
        if (a.empty()) return fail("expected a mailbox pattern");
        out.assign(a);
        return true;
    }

    std::string_view rest() const { return s_.substr(std::min(pos_, s_.size())); }
    std::string_view slice(std::size_t b, std::size_t e) const { return s_.substr(b, e - b); }

private:
    std::string_view s_;
    std::size_t pos_ = 0;
    std::string_view error_;
};

constexpr std::string_view month_names[] = {"JAN", "FEB", "MAR", "APR", "MAY", "JUN",
                                            "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"};

bool read_digits(std::string_view s, std::size_t& pos, unsigned count, unsigned& out) {
    out = 0;
    for (unsigned i = 0; i < count; ++i) {
        if (pos >= s.size() || s[pos] < '0' || s[pos] > '9') return false;
        out = out * 10 + static_cast<unsigned>(s[pos++] - '0');
    }
    return true;
}

// "d-Mon-yyyy" or "dd-Mon-yyyy" (a leading space allowed for date-time); sets pos after it.
bool read_date(std::string_view s, std::size_t& pos, std::int64_t& days) {
    if (pos < s.size() && s[pos] == ' ') ++pos;
    unsigned day = 0;
    const std::size_t b = pos;
    while (pos < s.size() && pos - b < 2 && s[pos] >= '0' && s[pos] <= '9') {
        day = day * 10 + static_cast<unsigned>(s[pos++] - '0');
    }
    if (pos == b || pos >= s.size() || s[pos] != '-') return false;
    ++pos;
    if (s.size() - pos < 4) return false;
    unsigned month = 0;
    for (unsigned m = 0; m < 12; ++m) {
        if (iequals(s.substr(pos, 3), month_names[m])) month = m + 1;
    }
    if (month == 0 || s[pos + 3] != '-') return false;
    pos += 4;
    unsigned year = 0;
    if (!read_digits(s, pos, 4, year)) return false;
    static constexpr unsigned mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (day < 1 || day > mdays[month - 1]) return false;
    days = days_from_civil(year, month, day);
    return true;
}

bool parse_set(Cursor& c, SequenceSet& out) {
    const std::size_t b = c.pos();
    while (!c.at_end() && c.peek() != ' ' && c.peek() != ')') c.set_pos(c.pos() + 1);
    const std::string_view text = c.slice(b, c.pos());
    if (!parse_sequence_set(text, out)) {
        c.set_pos(b);
        return c.fail("bad sequence set");
    }
    return true;
}

bool parse_flag(Cursor& c, FlagList& out, bool allow_recent) {
    if (c.eat('\\')) {
        const std::string_view a = c.atom_view();
        if (iequals(a, "Seen")) out.flags |= flag_seen;
        else if (iequals(a, "Answered")) out.flags |= flag_answered;
        else if (iequals(a, "Flagged")) out.flags |= flag_flagged;
        else if (iequals(a, "Deleted")) out.flags |= flag_deleted;
        else if (iequals(a, "Draft")) out.flags |= flag_draft;
        else if (allow_recent && iequals(a, "Recent")) out.recent = true;
        else return c.fail("unknown system flag");
        return true;
    }
    const std::string_view a = c.atom_view();
    if (a.empty()) return c.fail("expected a flag");
    if (a.size() > 255) return c.fail("keyword too long");
    if (std::find(out.keywords.begin(), out.keywords.end(), a) == out.keywords.end()) {
        out.keywords.emplace_back(a);
    }
    return true;
}

bool parse_flag_list(Cursor& c, FlagList& out, bool allow_recent) {
    if (!c.expect('(', "expected a flag list")) return false;
    if (c.eat(')')) return true;
    for (;;) {
        if (!parse_flag(c, out, allow_recent)) return false;
        if (c.eat(')')) return true;
        if (!c.sp()) return false;
    }
}

bool parse_section(Cursor& c, Section& out) {
    if (!c.expect('[', "expected [")) return false;
    if (c.eat(']')) return true;
    for (;;) {
        if (c.peek() < '0' || c.peek() > '9') break;
        std::uint32_t n = 0;
        if (!c.nz_number32(n)) return false;
        if (out.part.size() >= 64) return c.fail("section too deep");
        out.part.push_back(n);
        if (!c.eat('.')) {
            return c.expect(']', "expected ]");
        }
    }
    if (c.keyword("HEADER.FIELDS.NOT")) {
        out.text = SectionText::header_fields_not;
    } else if (c.keyword("HEADER.FIELDS")) {
        out.text = SectionText::header_fields;
    } else if (c.keyword("HEADER")) {
        out.text = SectionText::header;
    } else if (c.keyword("TEXT")) {
        out.text = SectionText::text;
    } else if (!out.part.empty() && c.keyword("MIME")) {
        out.text = SectionText::mime;
    } else {
        return c.fail("bad section");
    }
    if (out.text == SectionText::header_fields || out.text == SectionText::header_fields_not) {
        if (!c.sp() || !c.expect('(', "expected a header list")) return false;
        for (;;) {
            std::string field;
            if (!c.astring(field)) return false;
            for (char& ch : field) ch = upper(ch);
            out.fields.push_back(std::move(field));
            if (c.eat(')')) break;
            if (!c.sp()) return false;
        }
    }
    return c.expect(']', "expected ]");
}

bool parse_partial(Cursor& c, FetchItem& item) {
    if (!c.eat('<')) return true;
    std::uint64_t offset = 0;
    std::uint64_t bytes = 0;
    if (!c.number(offset, 0xffffffffu) || !c.expect('.', "expected .")) return false;
    if (!c.number(bytes, 0xffffffffu)) return false;
    if (bytes == 0) return c.fail("zero-length partial");
    item.partial = true;
    item.partial_offset = static_cast<std::uint32_t>(offset);
    item.partial_bytes = static_cast<std::uint32_t>(bytes);
    return c.expect('>', "expected >");
}

bool parse_fetch_att(Cursor& c, FetchItem& item) {
    struct Simple {
        std::string_view name;
        FetchAtt att;
    };
    static constexpr Simple simple[] = {
        {"ENVELOPE", FetchAtt::envelope},        {"FLAGS", FetchAtt::flags},
        {"INTERNALDATE", FetchAtt::internaldate}, {"RFC822.HEADER", FetchAtt::rfc822_header},
        {"RFC822.SIZE", FetchAtt::rfc822_size},  {"RFC822.TEXT", FetchAtt::rfc822_text},
        {"BODYSTRUCTURE", FetchAtt::bodystructure}, {"UID", FetchAtt::uid},
        {"MODSEQ", FetchAtt::modseq},
    };
    const std::size_t b = c.pos();
    std::string_view word = c.atom_view([](char ch) { return is_atom_char(ch) && ch != '['; });
    for (const Simple& s : simple) {
        if (iequals(word, s.name)) {
            item.att = s.att;
            return true;
        }
    }
    if (iequals(word, "RFC822")) {
        item.att = FetchAtt::rfc822;
        return true;
    }
    const bool bracket = c.peek() == '[';
    if (iequals(word, "BODY") && !bracket) {
        item.att = FetchAtt::body;
        return true;
    }
    if (iequals(word, "BODY") || iequals(word, "BODY.PEEK")) {
        item.att = FetchAtt::body_section;
    } else if (iequals(word, "BINARY") || iequals(word, "BINARY.PEEK")) {
        item.att = FetchAtt::binary;
    } else if (iequals(word, "BINARY.SIZE")) {
        item.att = FetchAtt::binary_size;
    } else {
        c.set_pos(b);
        return c.fail("unknown fetch attribute");
    }
    item.peek = word.size() > 6 && iequals(word.substr(word.size() - 5), ".PEEK");
    if (!parse_section(c, item.section)) return false;
    if (item.att != FetchAtt::body_section) {
        // RFC 3516: BINARY takes part numbers only.
        if (item.section.text != SectionText::none) return c.fail("BINARY takes part numbers only");
        if (item.att == FetchAtt::binary_size) return true;
    }
    return parse_partial(c, item);
}

bool parse_fetch(Cursor& c, ImapCommand& out) {
    // RFC 3501 6.4.5 macros.
    const bool all = c.keyword("ALL");
    const bool full = !all && c.keyword("FULL");
    if (all || full || c.keyword("FAST")) {
        auto add = [&](FetchAtt att) {
            FetchItem item;
            item.att = att;
            out.fetch.push_back(std::move(item));
        };
        add(FetchAtt::flags);
        add(FetchAtt::internaldate);
        add(FetchAtt::rfc822_size);
        if (all || full) add(FetchAtt::envelope);
        if (full) add(FetchAtt::body);
        return true;
    }
    const bool list = c.eat('(');
    for (;;) {
        if (out.fetch.size() >= 64) return c.fail("too many fetch attributes");
        FetchItem item;
        if (!parse_fetch_att(c, item)) return false;
        out.fetch.push_back(std::move(item));
        if (!list) return true;
        if (c.eat(')')) return true;
        if (!c.sp()) return false;
    }
}

bool parse_search_key(Cursor& c, SearchKey& key, int depth);

bool parse_search_date(Cursor& c, std::int64_t& days) {
    const bool q = c.eat('"');
    const std::string_view rest = c.rest();
    std::size_t pos = 0;
    if (!read_date(rest, pos, days)) return c.fail("bad date");
    c.set_pos(c.pos() + pos);
    return !q || c.expect('"', "expected \"");
}

bool parse_search_keys(Cursor& c, SearchKey& group, int depth, bool paren) {
    group.op = SearchOp::and_;
    for (;;) {
        if (group.children.size() >= 256) return c.fail("too many search keys");
        SearchKey key;
        if (!parse_search_key(c, key, depth)) return false;
        group.children.push_back(std::move(key));
        if (paren && c.eat(')')) return true;
        if (!paren && c.at_end()) return true;
        if (!c.sp()) return false;
    }
}

bool parse_search_key(Cursor& c, SearchKey& key, int depth) {
    if (depth > search_depth_max) return c.fail("search keys nested too deep");
    if (c.eat('(')) return parse_search_keys(c, key, depth + 1, true);
    if (c.peek() == '$' || c.peek() == '*' || (c.peek() >= '0' && c.peek() <= '9')) {
        key.op = SearchOp::seqset;
        return parse_set(c, key.set);
    }
    struct Word {
        std::string_view name;
        SearchOp op;
        char arg;  // 0 none, 's' astring, 'd' date, 'n' number, 'f' flag, 'h' header, 'u' set
    };
    static constexpr Word words[] = {
        {"ALL", SearchOp::all, 0},           {"ANSWERED", SearchOp::answered, 0},
        {"BCC", SearchOp::bcc, 's'},         {"BEFORE", SearchOp::before, 'd'},
        {"BODY", SearchOp::body, 's'},       {"CC", SearchOp::cc, 's'},
        {"DELETED", SearchOp::deleted, 0},   {"DRAFT", SearchOp::draft, 0},
        {"FLAGGED", SearchOp::flagged, 0},   {"FROM", SearchOp::from, 's'},
        {"HEADER", SearchOp::header, 'h'},   {"KEYWORD", SearchOp::keyword, 'f'},
        {"LARGER", SearchOp::larger, 'n'},   {"NEW", SearchOp::new_, 0},
        {"OLD", SearchOp::old, 0},           {"ON", SearchOp::on, 'd'},
        {"RECENT", SearchOp::recent, 0},     {"SEEN", SearchOp::seen, 0},
        {"SENTBEFORE", SearchOp::sentbefore, 'd'}, {"SENTON", SearchOp::senton, 'd'},
        {"SENTSINCE", SearchOp::sentsince, 'd'},   {"SINCE", SearchOp::since, 'd'},
        {"SMALLER", SearchOp::smaller, 'n'}, {"SUBJECT", SearchOp::subject, 's'},
        {"TEXT", SearchOp::text, 's'},       {"TO", SearchOp::to, 's'},
        {"UID", SearchOp::uid, 'u'},         {"UNANSWERED", SearchOp::unanswered, 0},
        {"UNDELETED", SearchOp::undeleted, 0}, {"UNDRAFT", SearchOp::undraft, 0},
        {"UNFLAGGED", SearchOp::unflagged, 0}, {"UNKEYWORD", SearchOp::unkeyword, 'f'},
        {"UNSEEN", SearchOp::unseen, 0},
    };
    if (c.keyword("NOT")) {
        key.op = SearchOp::not_;
        key.children.emplace_back();
        return c.sp() && parse_search_key(c, key.children[0], depth + 1);
    }
    if (c.keyword("OR")) {
        key.op = SearchOp::or_;
        key.children.resize(2);
        return c.sp() && parse_search_key(c, key.children[0], depth + 1) && c.sp() &&
               parse_search_key(c, key.children[1], depth + 1);
    }
    for (const Word& w : words) {
        if (!c.keyword(w.name)) continue;
        key.op = w.op;
        if (w.arg == 0) return true;
        if (!c.sp()) return false;
        switch (w.arg) {
            case 's': return c.astring(key.text);
            case 'd': return parse_search_date(c, key.number);
            case 'n': {
                std::uint64_t n = 0;
                if (!c.number(n, ~std::uint64_t{0} >> 2)) return false;
                key.number = static_cast<std::int64_t>(n);
                return true;
            }
            case 'f': {
                const std::string_view a = c.atom_view();
                if (a.empty()) return c.fail("expected a keyword");
                key.text.assign(a);
                return true;
            }
            case 'h':
                if (!c.astring(key.text) || !c.sp() || !c.astring(key.text2)) return false;
                for (char& ch : key.text) ch = upper(ch);
                return true;
            case 'u': return parse_set(c, key.set);
            default: RP_ASSERT(false);
        }
    }
    return c.fail("unknown search key");
}

bool parse_search(Cursor& c, ImapCommand& out, bool& bad_charset) {
    if (c.keyword("RETURN")) {
        out.esearch = true;
        if (!c.sp() || !c.expect('(', "expected (")) return false;
        while (!c.eat(')')) {
            if (c.keyword("MIN")) out.search_return |= search_return_min;
            else if (c.keyword("MAX")) out.search_return |= search_return_max;
            else if (c.keyword("ALL")) out.search_return |= search_return_all;
            else if (c.keyword("COUNT")) out.search_return |= search_return_count;
            else if (c.keyword("SAVE")) out.search_return |= search_return_save;
            else return c.fail("unknown RETURN option");
            if (c.peek() != ')' && !c.sp()) return false;
        }
        if (out.search_return == 0) out.search_return = search_return_all;
        if (!c.sp()) return false;
    }
    if (c.keyword("CHARSET")) {
        std::string charset;
        if (!c.sp() || !c.astring(charset) || !c.sp()) return false;
        bad_charset = !iequals(charset, "UTF-8") && !iequals(charset, "US-ASCII");
    }
    return parse_search_keys(c, out.search, 0, false);
}

bool parse_status_items(Cursor& c, std::uint16_t& items) {
    if (!c.expect('(', "expected (")) return false;
    for (;;) {
        if (c.keyword("MESSAGES")) items |= status_messages;
        else if (c.keyword("RECENT")) items |= status_recent;
        else if (c.keyword("UIDNEXT")) items |= status_uidnext;
        else if (c.keyword("UIDVALIDITY")) items |= status_uidvalidity;
        else if (c.keyword("UNSEEN")) items |= status_unseen;
        else if (c.keyword("DELETED")) items |= status_deleted;
        else if (c.keyword("SIZE")) items |= status_size;
        else if (c.keyword("HIGHESTMODSEQ")) items |= status_highestmodseq;
        else return c.fail("unknown status item");
        if (c.eat(')')) return true;
        if (!c.sp()) return false;
    }
}

bool parse_list(Cursor& c, ImapCommand& out) {
    if (c.eat('(')) {
        out.list_extended = true;
        while (!c.eat(')')) {
            if (c.keyword("SUBSCRIBED")) out.list_subscribed = true;
            else if (c.keyword("SPECIAL-USE")) out.list_special_use = out.list_select_special_use = true;
            else if (c.keyword("REMOTE") || c.keyword("RECURSIVEMATCH")) {}
            else return c.fail("unknown LIST selection option");
            if (c.peek() != ')' && !c.sp()) return false;
        }
        if (!c.sp()) return false;
    }
    if (!c.mailbox(out.arg1) || !c.sp()) return false;
    if (c.eat('(')) {
        out.list_extended = true;
        for (;;) {
            std::string p;
            if (!c.list_mailbox(p)) return false;
            if (out.patterns.size() >= 32) return c.fail("too many patterns");
            out.patterns.push_back(std::move(p));
            if (c.eat(')')) break;
            if (!c.sp()) return false;
        }
    } else {
        std::string p;
        if (!c.list_mailbox(p)) return false;
        out.patterns.push_back(std::move(p));
    }
    if (c.at_end()) return true;
    if (!c.sp() || !c.keyword("RETURN") || !c.sp() || !c.expect('(', "expected (")) return false;
    out.list_extended = true;
    while (!c.eat(')')) {
        if (c.keyword("SUBSCRIBED")) out.list_return_subscribed = true;
        else if (c.keyword("CHILDREN")) out.list_return_children = true;
        else if (c.keyword("SPECIAL-USE")) out.list_special_use = true;
        else if (c.keyword("STATUS")) {
            if (!c.sp() || !parse_status_items(c, out.status_items)) return false;
        } else {
            return c.fail("unknown LIST return option");
        }
        if (c.peek() != ')' && !c.sp()) return false;
    }
    return true;
}

bool parse_store(Cursor& c, ImapCommand& out) {
    if (!parse_set(c, out.set) || !c.sp()) return false;
    if (c.eat('+')) out.store_mode = StoreMode::add;
    else if (c.eat('-')) out.store_mode = StoreMode::remove;
    if (c.keyword("FLAGS.SILENT")) out.silent = true;
    else if (!c.keyword("FLAGS")) return c.fail("expected FLAGS");
    if (!c.sp()) return false;
    out.have_flags = true;
    if (c.peek() == '(') return parse_flag_list(c, out.flags, true);
    for (;;) {
        if (!parse_flag(c, out.flags, true)) return false;
        if (c.at_end()) return true;
        if (!c.sp()) return false;
    }
}

bool parse_id(Cursor& c, ImapCommand& out) {
    if (c.keyword("NIL")) return true;
    if (!c.expect('(', "expected (")) return false;
    if (c.eat(')')) return true;
    for (;;) {
        std::string field;
        std::string value;
        bool nil = false;
        if (!c.string(field) || !c.sp() || !c.nstring(value, nil)) return false;
        if (out.patterns.size() >= 60) return c.fail("too many ID fields");
        out.patterns.push_back(std::move(field));
        out.patterns.push_back(std::move(value));
        if (c.eat(')')) return true;
        if (!c.sp()) return false;
    }
}

bool parse_append_args(Cursor& c, ImapCommand& out) {
    if (!c.mailbox(out.arg1) || !c.sp()) return false;
    if (c.peek() == '(') {
        out.have_flags = true;
        if (!parse_flag_list(c, out.flags, false) || !c.sp()) return false;
    }
    if (c.peek() == '"') {
        std::string date;
        if (!c.quoted(date) || !c.sp()) return false;
        if (!parse_date_time(date, out.date)) return c.fail("bad date-time");
        out.have_date = true;
    }
    return true;
}

struct VerbName {
    std::string_view name;
    Verb verb;
};
constexpr VerbName verb_names[] = {
    {"CAPABILITY", Verb::capability}, {"NOOP", Verb::noop},
    {"LOGOUT", Verb::logout},         {"STARTTLS", Verb::starttls},
    {"AUTHENTICATE", Verb::authenticate}, {"LOGIN", Verb::login},
    {"ENABLE", Verb::enable},         {"ID", Verb::id},
    {"NAMESPACE", Verb::namespace_},  {"SELECT", Verb::select},
    {"EXAMINE", Verb::examine},       {"CREATE", Verb::create},
    {"DELETE", Verb::delete_},        {"RENAME", Verb::rename},
    {"SUBSCRIBE", Verb::subscribe},   {"UNSUBSCRIBE", Verb::unsubscribe},
    {"LIST", Verb::list},             {"LSUB", Verb::lsub},
    {"STATUS", Verb::status},         {"APPEND", Verb::append},
    {"IDLE", Verb::idle},             {"CHECK", Verb::check},
    {"CLOSE", Verb::close},           {"UNSELECT", Verb::unselect},
    {"EXPUNGE", Verb::expunge},       {"SEARCH", Verb::search},
    {"FETCH", Verb::fetch},           {"STORE", Verb::store},
    {"COPY", Verb::copy},             {"MOVE", Verb::move},
};

bool parse_tag_and_verb(Cursor& c, ImapCommand& out, std::string_view text) {
    const std::string_view tag = c.atom_view([](char ch) { return is_astring_char(ch) && ch != '+'; });
    if (tag.empty()) return c.fail("missing tag");
    out.tag = tag;
    if (!c.eat(' ')) return c.fail("missing command");
    std::string_view word = c.atom_view();
    if (iequals(word, "UID")) {
        out.uid = true;
        if (!c.sp()) return false;
        word = c.atom_view();
    }
    for (const VerbName& v : verb_names) {
        if (iequals(word, v.name)) out.verb = v.verb;
    }
    (void)text;
    if (out.verb == Verb::unknown) return c.fail("unknown command");
    if (out.uid) {
        switch (out.verb) {
            case Verb::fetch: case Verb::store: case Verb::copy: case Verb::move:
            case Verb::search: case Verb::expunge:
                return true;
            default:
                return c.fail("unknown UID command");
        }
    }
    return true;
}

bool parse_arguments(Cursor& c, ImapCommand& out, bool& bad_charset) {
    switch (out.verb) {
        case Verb::capability: case Verb::noop: case Verb::logout: case Verb::starttls:
        case Verb::namespace_: case Verb::idle: case Verb::check: case Verb::close:
        case Verb::unselect:
            return true;
        case Verb::expunge:
            return !out.uid || (c.sp() && parse_set(c, out.set));
        case Verb::authenticate: {
            if (!c.sp()) return false;
            const std::string_view mech = c.atom_view();
            if (mech.empty()) return c.fail("expected a mechanism");
            out.arg1.assign(mech);
            if (c.at_end()) return true;
            if (!c.sp()) return false;
            const std::string_view ir = c.atom_view([](char ch) {
                return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                       (ch >= '0' && ch <= '9') || ch == '+' || ch == '/' || ch == '=';
            });
            if (ir.empty()) return c.fail("bad initial response");
            out.arg2.assign(ir);
            out.have_initial_response = true;
            return true;
        }
        case Verb::login:
            return c.sp() && c.astring(out.arg1) && c.sp() && c.astring(out.arg2);
        case Verb::enable:
            if (!c.sp()) return false;
            for (;;) {
                const std::string_view a = c.atom_view();
                if (a.empty()) return c.fail("expected a capability");
                if (out.patterns.size() < 32) out.patterns.emplace_back(a);
                if (c.at_end()) return true;
                if (!c.sp()) return false;
            }
        case Verb::id:
            return c.sp() && parse_id(c, out);
        case Verb::select: case Verb::examine:
            if (!c.sp() || !c.mailbox(out.arg1)) return false;
            if (c.at_end()) return true;
            if (!c.sp() || !c.expect('(', "expected (")) return false;
            while (!c.eat(')')) {
                if (!c.keyword("CONDSTORE")) return c.fail("unknown SELECT parameter");
                if (c.peek() != ')' && !c.sp()) return false;
            }
            return true;
        case Verb::create: case Verb::delete_: case Verb::subscribe: case Verb::unsubscribe:
            return c.sp() && c.mailbox(out.arg1);
        case Verb::rename:
            return c.sp() && c.mailbox(out.arg1) && c.sp() && c.mailbox(out.arg2);
        case Verb::list:
            return c.sp() && parse_list(c, out);
        case Verb::lsub: {
            std::string p;
            if (!c.sp() || !c.mailbox(out.arg1) || !c.sp() || !c.list_mailbox(p)) return false;
            out.patterns.push_back(std::move(p));
            return true;
        }
        case Verb::status:
            return c.sp() && c.mailbox(out.arg1) && c.sp() && parse_status_items(c, out.status_items);
        case Verb::append: {
            if (!c.sp() || !parse_append_args(c, out)) return false;
            std::string message;
            return c.literal(message) || c.fail("APPEND needs a message literal");
        }
        case Verb::search:
            return c.sp() && parse_search(c, out, bad_charset);
        case Verb::fetch:
            if (!c.sp() || !parse_set(c, out.set) || !c.sp() || !parse_fetch(c, out)) return false;
            if (c.at_end()) return true;
            // RFC 7162 CHANGEDSINCE is not offered; no other modifiers exist.
            return c.fail("unknown FETCH modifier");
        case Verb::store:
            return c.sp() && parse_store(c, out);
        case Verb::copy: case Verb::move:
            return c.sp() && parse_set(c, out.set) && c.sp() && c.mailbox(out.arg1);
        case Verb::unknown:
            break;
    }
    return c.fail("unknown command");
}

}  // namespace

std::string_view verb_name(Verb verb) {
    for (const VerbName& v : verb_names) {
        if (v.verb == verb) return v.name;
    }
    return "UNKNOWN";
}

ParseResult parse_command(std::string_view text, ImapCommand& out) {
    out = ImapCommand{};
    Cursor c(text);
    if (!parse_tag_and_verb(c, out, text)) return ParseResult{false, c.error()};
    bool bad_charset = false;
    if (!parse_arguments(c, out, bad_charset)) return ParseResult{false, c.error()};
    if (!c.at_end()) return ParseResult{false, "unexpected characters at the end"};
    if (bad_charset) {
        // Reported as NO [BADCHARSET] by the server: a distinct marker.
        return ParseResult{false, "BADCHARSET"};
    }
    return ParseResult{true, {}};
}

bool parse_append_prefix(std::string_view text, ImapCommand& out) {
    out = ImapCommand{};
    Cursor c(text);
    if (!parse_tag_and_verb(c, out, text) || out.verb != Verb::append || out.uid) return false;
    if (!c.sp() || !parse_append_args(c, out)) return false;
    // What is left is the literal marker itself.
    const std::string_view rest = c.rest();
    return !rest.empty() && rest.front() == '{' && rest.find(' ') == std::string_view::npos;
}

bool parse_sequence_set(std::string_view text, SequenceSet& out) {
    out = SequenceSet{};
    if (text == "$") {
        out.saved = true;
        return true;
    }
    std::size_t pos = 0;
    auto number = [&](std::uint32_t& n) {
        if (pos < text.size() && text[pos] == '*') {
            ++pos;
            n = seq_star;
            return true;
        }
        std::uint64_t v = 0;
        const std::size_t b = pos;
        while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
            v = v * 10 + static_cast<std::uint64_t>(text[pos++] - '0');
            if (v > 0xffffffffu) return false;
        }
        if (pos == b || v == 0) return false;
        n = static_cast<std::uint32_t>(v);
        return true;
    };
    for (;;) {
        if (out.ranges.size() >= 4096) return false;
        SeqRange r;
        if (!number(r.first)) return false;
        r.last = r.first;
        if (pos < text.size() && text[pos] == ':') {
            ++pos;
            if (!number(r.last)) return false;
        }
        if (r.first > r.last) std::swap(r.first, r.last);
        out.ranges.push_back(r);
        if (pos == text.size()) return true;
        if (text[pos] != ',') return false;
        ++pos;
    }
}

std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) {
    // H. Hinnant's days_from_civil.
    y -= m <= 2;
    const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
    const auto yoe = static_cast<unsigned>(y - era * 400);
    const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

bool parse_date(std::string_view text, std::int64_t& days) {
    std::size_t pos = 0;
    return read_date(text, pos, days) && pos == text.size();
}

bool parse_date_time(std::string_view text, std::int64_t& out) {
    std::size_t pos = 0;
    std::int64_t days = 0;
    if (!read_date(text, pos, days)) return false;
    unsigned h = 0, m = 0, s = 0, zh = 0, zm = 0;
    if (pos >= text.size() || text[pos++] != ' ') return false;
    if (!read_digits(text, pos, 2, h) || pos >= text.size() || text[pos++] != ':') return false;
    if (!read_digits(text, pos, 2, m) || pos >= text.size() || text[pos++] != ':') return false;
    if (!read_digits(text, pos, 2, s) || pos >= text.size() || text[pos++] != ' ') return false;
    if (pos >= text.size() || (text[pos] != '+' && text[pos] != '-')) return false;
    const bool minus = text[pos++] == '-';
    if (!read_digits(text, pos, 2, zh) || !read_digits(text, pos, 2, zm)) return false;
    if (pos != text.size() || h > 23 || m > 59 || s > 60 || zm > 59) return false;
    const std::int64_t zone = (std::int64_t{zh} * 60 + zm) * 60;
    out = days * 86400 + h * 3600 + m * 60 + s - (minus ? -zone : zone);
    return true;
}

void append_date_time(std::string& out, std::int64_t t) {
    std::int64_t days = t / 86400;
    std::int64_t sod = t % 86400;
    if (sod < 0) {
        sod += 86400;
        --days;
    }
    const std::int64_t z = days + 719468;
    const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const auto doe = static_cast<unsigned>(z - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    const unsigned d = doy - (153 * mp + 2) / 5 + 1;
    const unsigned m = mp < 10 ? mp + 3 : mp - 9;
    const std::int64_t y = static_cast<std::int64_t>(yoe) + era * 400 + (m <= 2 ? 1 : 0);
    static constexpr std::string_view months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                  "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    char buf[40];
    const auto u = static_cast<unsigned>(sod);
    const int n = std::snprintf(buf, sizeof(buf), "\"%02u-%s-%04lld %02u:%02u:%02u +0000\"", d,
                                months[m - 1].data(), static_cast<long long>(std::clamp<std::int64_t>(y, 0, 9999)),
                                u / 3600, u / 60 % 60, u % 60);
    out.append(buf, static_cast<std::size_t>(n));
}

void append_astring_quoted(std::string& out, std::string_view s) {
    bool literal = false;
    for (char ch : s) {
        if (ch == '\r' || ch == '\n' || ch == '\0' || static_cast<unsigned char>(ch) >= 0x80) literal = true;
    }
    if (literal) {
        out.push_back('{');
        out.append(std::to_string(s.size()));
        out.append("}\r\n");
        out.append(s);
        return;
    }
    out.push_back('"');
    for (char ch : s) {
        if (ch == '"' || ch == '\\') out.push_back('\\');
        out.push_back(ch);
    }
    out.push_back('"');
}

void append_flags(std::string& out, std::uint32_t flags, std::span<const std::string_view> keywords) {
    static constexpr std::string_view names[] = {"\\Seen", "\\Answered", "\\Flagged", "\\Deleted",
                                                 "\\Draft"};
    out.push_back('(');
    bool first = true;
    for (unsigned i = 0; i < 5; ++i) {
        if ((flags & (1u << i)) == 0) continue;
        if (!first) out.push_back(' ');
        out.append(names[i]);
        first = false;
    }
    for (std::string_view k : keywords) {
        if (!first) out.push_back(' ');
        out.append(k);
        first = false;
    }
    out.push_back(')');
}

}  // namespace rp::imap
