// protocols/imap/imap_mime.cc: see imap_mime.h.
#include "protocols/imap/imap_mime.h"

#include <algorithm>
#include <cstring>

#include "core/assert.h"

namespace rp::imap {

namespace {

char upper(char c) { return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 32) : c; }
char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }

std::string upper_copy(std::string_view s) {
    std::string r(s);
    for (char& c : r) c = upper(c);
    return r;
}

bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        if (lower(a[i]) != lower(b[i])) return false;
    }
    return true;
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r' || s.front() == '\n')) {
        s.remove_prefix(1);
    }
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n')) {
        s.remove_suffix(1);
    }
    return s;
}

// Where the header block ends (just after the blank line) in `s`; s.size() when there is no
// blank line (the whole entity is header).
std::size_t header_end(std::string_view s, bool& blank_found) {
    blank_found = true;
    if (s.substr(0, 2) == "\r\n") return 2;
    if (s.substr(0, 1) == "\n") return 1;
    std::size_t pos = 0;
    for (;;) {
        const std::size_t lf = s.find('\n', pos);
        if (lf == std::string_view::npos) break;
        if (lf + 1 < s.size() && s[lf + 1] == '\n') return lf + 2;
        if (lf + 2 < s.size() && s[lf + 1] == '\r' && s[lf + 2] == '\n') return lf + 3;
        pos = lf + 1;
    }
    blank_found = false;
    return s.size();
}

// Calls fn(name, raw_value_with_folding, field_offset, field_bytes) for each header field.
template <typename Fn>
void for_each_field(std::string_view header, Fn&& fn) {
    std::size_t pos = 0;
    while (pos < header.size()) {
        std::size_t end = pos;
        // A field runs to the LF that is not followed by a space or tab.
        for (;;) {
            const std::size_t lf = header.find('\n', end);
            if (lf == std::string_view::npos) {
                end = header.size();
                break;
            }
            end = lf + 1;
            if (end >= header.size() || (header[end] != ' ' && header[end] != '\t')) break;
        }
        const std::string_view field = header.substr(pos, end - pos);
        const std::size_t colon = field.find(':');
        if (colon != std::string_view::npos && colon > 0 &&
            field.substr(0, colon).find_first_of(" \t\r\n") == std::string_view::npos) {
            fn(field.substr(0, colon), field.substr(colon + 1), pos, end - pos);
        }
        pos = end;
    }
}

std::string unfold(std::string_view raw) {
    std::string out;
    out.reserve(raw.size());
    for (char c : raw) {
        if (c == '\r' || c == '\n') continue;
        out.push_back(c);
    }
    return std::string(trim(out));
}

// A MIME parameter list "; a=b; c="d e"" (RFC 2045 5.1), tolerant.
void parse_params(std::string_view s, std::vector<std::pair<std::string, std::string>>& out) {
    std::size_t pos = 0;
    while (pos < s.size() && out.size() < 64) {
        const std::size_t semi = s.find(';', pos);
        if (semi == std::string_view::npos) return;
        pos = semi + 1;
        while (pos < s.size() && (s[pos] == ' ' || s[pos] == '\t')) ++pos;
        const std::size_t eq = s.find('=', pos);
        if (eq == std::string_view::npos) return;
        std::string name = upper_copy(trim(s.substr(pos, eq - pos)));
        pos = eq + 1;
        while (pos < s.size() && (s[pos] == ' ' || s[pos] == '\t')) ++pos;
        std::string value;
        if (pos < s.size() && s[pos] == '"') {
            ++pos;
            while (pos < s.size() && s[pos] != '"') {
                if (s[pos] == '\\' && pos + 1 < s.size()) ++pos;
                value.push_back(s[pos++]);
            }
            if (pos < s.size()) ++pos;
        } else {
            const std::size_t end = std::min(s.find(';', pos), s.size());
            value = std::string(trim(s.substr(pos, end - pos)));
            pos = end;
        }
        if (!name.empty() && name.find_first_of(" \t\"") == std::string::npos) {
            out.emplace_back(std::move(name), std::move(value));
        }
    }
}

// "type/subtype; params"
void parse_content_type(std::string_view v, MimePart& part, bool& ok) {
    const std::size_t semi = std::min(v.find(';'), v.size());
    const std::string_view ts = trim(v.substr(0, semi));
    const std::size_t slash = ts.find('/');
    ok = false;
    if (slash == std::string_view::npos || slash == 0 || slash + 1 == ts.size()) return;
    const std::string_view t = trim(ts.substr(0, slash));
    const std::string_view st = trim(ts.substr(slash + 1));
    if (t.find_first_of(" \t\"()<>@,;:\\[]?=") != std::string_view::npos) return;
    if (st.find_first_of(" \t\"()<>@,;:\\[]?=") != std::string_view::npos) return;
    part.type = upper_copy(t);
    part.subtype = upper_copy(st);
    part.params.clear();
    parse_params(v.substr(semi), part.params);
    ok = true;
}

std::string_view param(const MimePart& part, std::string_view name) {
    for (const auto& [n, value] : part.params) {
        if (n == name) return value;
    }
    return {};
}

// RFC 5322 address lists, tolerant: "Name <a@b>", "a@b (comment)", groups "g: a, b;".
void parse_addresses(std::string_view s, std::vector<MimeAddress>& out) {
    std::vector<std::string_view> items;
    int angle = 0, paren = 0;
    bool quote = false;
    std::size_t start = 0;
    auto emit = [&](std::string_view item, bool end_group) {
        item = trim(item);
        if (out.size() >= 256) return;
        if (!item.empty()) {
            MimeAddress a;
            std::string display;
            std::string addr;
            const std::size_t lt = item.rfind('<');
            if (lt != std::string_view::npos) {
                const std::size_t gt = item.find('>', lt);
                addr = std::string(trim(item.substr(lt + 1, (gt == std::string_view::npos ? item.size() : gt) - lt - 1)));
                display = std::string(trim(item.substr(0, lt)));
            } else {
                // Drop comments.
                int depth = 0;
                for (char c : item) {
                    if (c == '(') ++depth;
                    else if (c == ')' && depth > 0) --depth;
                    else if (depth == 0) addr.push_back(c);
                }
                addr = std::string(trim(addr));
            }
            if (display.size() >= 2 && display.front() == '"' && display.back() == '"') {
                std::string d;
                for (std::size_t i = 1; i + 1 < display.size(); ++i) {
                    if (display[i] == '\\' && i + 2 < display.size()) ++i;
                    d.push_back(display[i]);
                }
                display = d;
            }
            // Source route "@a,@b:user@host".
            if (!addr.empty() && addr[0] == '@') {
                const std::size_t colon = addr.find(':');
                if (colon != std::string::npos) {
                    a.adl = addr.substr(0, colon);
                    addr.erase(0, colon + 1);
                }
            }
            const std::size_t at = addr.rfind('@');
            a.name = display;
            if (at == std::string::npos) {
                a.mailbox = addr;
            } else {
                a.mailbox = addr.substr(0, at);
                a.host = addr.substr(at + 1);
            }
            if (!a.mailbox.empty() || !a.host.empty()) out.push_back(std::move(a));
        }
        if (end_group) {
            MimeAddress g;
            g.group_end = true;
            out.push_back(std::move(g));
        }
    };
    bool in_group = false;
    for (std::size_t i = 0; i < s.size(); ++i) {
        const char c = s[i];
        if (quote) {
            if (c == '\\') ++i;
            else if (c == '"') quote = false;
            continue;
        }
        if (c == '"') quote = true;
        else if (c == '(') ++paren;
        else if (c == ')' && paren > 0) --paren;
        else if (paren > 0) continue;
        else if (c == '<') ++angle;
        else if (c == '>' && angle > 0) --angle;
        else if (angle > 0) continue;
        else if (c == ':' && !in_group) {
            MimeAddress g;
            g.group_start = true;
            g.mailbox = std::string(trim(s.substr(start, i - start)));
            if (out.size() < 256) out.push_back(std::move(g));
            in_group = true;
            start = i + 1;
        } else if (c == ';' && in_group) {
            emit(s.substr(start, i - start), true);
            in_group = false;
            start = i + 1;
        } else if (c == ',') {
            emit(s.substr(start, i - start), false);
            start = i + 1;
        }
    }
    emit(s.substr(std::min(start, s.size())), in_group);
}

struct Parser {
    std::string_view msg;
    MimeMessage& mime;

    std::uint32_t add_part() {
        mime.parts.emplace_back();
        return static_cast<std::uint32_t>(mime.parts.size() - 1);
    }

    void parse_header(std::uint32_t index, std::string_view header, bool message) {
        bool type_seen = false;
        for_each_field(header, [&](std::string_view name, std::string_view raw, std::size_t, std::size_t) {
            MimePart& p = mime.parts[index];
            if (iequals(name, "Content-Type") && !type_seen) {
                bool ok = false;
                parse_content_type(unfold(raw), p, ok);
                if (!ok) ++mime.malformed_count;
                type_seen = ok;
            } else if (iequals(name, "Content-Transfer-Encoding")) {
                p.encoding = upper_copy(unfold(raw));
                if (p.encoding.empty() || p.encoding.find_first_of(" \t;\"") != std::string::npos) {
                    p.encoding = "7BIT";
                    ++mime.malformed_count;
                }
            } else if (iequals(name, "Content-ID")) {
                p.id = unfold(raw);
                p.has_id = true;
            } else if (iequals(name, "Content-Description")) {
                p.description = unfold(raw);
                p.has_description = true;
            } else if (iequals(name, "Content-MD5")) {
                p.md5 = unfold(raw);
                p.has_md5 = true;
            } else if (iequals(name, "Content-Location")) {
                p.location = unfold(raw);
                p.has_location = true;
            } else if (iequals(name, "Content-Language")) {
                std::string v = unfold(raw);
                std::size_t pos = 0;
                while (pos <= v.size() && p.languages.size() < 16) {
                    const std::size_t comma = std::min(v.find(',', pos), v.size());
                    const std::string_view l = trim(std::string_view(v).substr(pos, comma - pos));
                    if (!l.empty()) p.languages.emplace_back(l);
                    pos = comma + 1;
                }
            } else if (iequals(name, "Content-Disposition")) {
                const std::string v = unfold(raw);
                const std::size_t semi = std::min(v.find(';'), v.size());
                p.disposition = upper_copy(trim(std::string_view(v).substr(0, semi)));
                parse_params(std::string_view(v).substr(semi), p.disposition_params);
            } else if (message) {
                parse_envelope_field(p.envelope, name, raw);
            }
        });
    }

    static void parse_envelope_field(MimeEnvelope& e, std::string_view name, std::string_view raw) {
        auto set = [&](std::string& field, bool& has) {
            if (has) return;
            field = unfold(raw);
            has = true;
        };
        auto addrs = [&](std::vector<MimeAddress>& list) {
            if (list.empty()) parse_addresses(unfold(raw), list);
        };
        if (iequals(name, "Date")) set(e.date, e.has_date);
        else if (iequals(name, "Subject")) set(e.subject, e.has_subject);
        else if (iequals(name, "In-Reply-To")) set(e.in_reply_to, e.has_in_reply_to);
        else if (iequals(name, "Message-ID")) set(e.message_id, e.has_message_id);
        else if (iequals(name, "From")) addrs(e.from);
        else if (iequals(name, "Sender")) addrs(e.sender);
        else if (iequals(name, "Reply-To")) addrs(e.reply_to);
        else if (iequals(name, "To")) addrs(e.to);
        else if (iequals(name, "Cc")) addrs(e.cc);
        else if (iequals(name, "Bcc")) addrs(e.bcc);
    }

    // Parses the entity at [offset, offset + bytes) into part `index`.
    void entity(std::uint32_t index, std::uint64_t offset, std::uint64_t bytes, bool message,
                bool digest_child, unsigned depth) {
        const std::string_view s = msg.substr(static_cast<std::size_t>(offset), static_cast<std::size_t>(bytes));
        bool blank = false;
        const std::size_t hend = header_end(s, blank);
        if (!blank) ++mime.malformed_count;
        {
            MimePart& p = mime.parts[index];
            p.header = MimeRange{offset, hend};
            p.body = MimeRange{offset + hend, bytes - hend};
            p.is_message = message;
            if (digest_child) {
                p.type = "MESSAGE";
                p.subtype = "RFC822";
            }
        }
        parse_header(index, s.substr(0, hend), message);
        MimePart& p = mime.parts[index];
        if (message) {
            MimeEnvelope& e = p.envelope;
            if (e.sender.empty()) e.sender = e.from;
            if (e.reply_to.empty()) e.reply_to = e.from;
        }
        if (p.type == "TEXT" && param(p, "CHARSET").empty()) {
            if (p.params.empty() || p.subtype == "PLAIN") p.params.emplace_back("CHARSET", "us-ascii");
        }
        const std::string_view body = s.substr(hend);
        if (p.type == "TEXT" || p.rfc822()) {
            p.body_lines = static_cast<std::uint64_t>(std::count(body.begin(), body.end(), '\n'));
            if (!body.empty() && body.back() != '\n') ++p.body_lines;
        }
        if (depth >= mime_depth_max || mime.parts.size() >= mime_parts_max) {
            if (p.multipart() || p.rfc822()) {
                ++mime.malformed_count;
                p.type = "APPLICATION";
                p.subtype = "OCTET-STREAM";
                p.params.clear();
            }
            return;
        }
        if (p.multipart()) {
            multipart(index, offset + hend, body, depth);
        } else if (p.rfc822()) {
            const std::uint32_t child = add_part();
            mime.parts[index].message = child;
            entity(child, offset + hend, body.size(), true, false, depth + 1);
        }
    }

    void multipart(std::uint32_t index, std::uint64_t body_offset, std::string_view body, unsigned depth) {
        const std::string boundary(param(mime.parts[index], "BOUNDARY"));
        const bool digest = mime.parts[index].subtype == "DIGEST";
        std::vector<std::pair<std::size_t, std::size_t>> ranges;  // Part contents in body.
        bool closed = false;
        if (!boundary.empty() && boundary.size() <= 200) {
            std::size_t pos = 0;
            std::size_t part_start = std::string_view::npos;
            while (pos <= body.size() && !closed) {
                // Each delimiter starts a line: "--boundary" then "--"? then whitespace.
                const std::size_t line_end_lf = body.find('\n', pos);
                const std::size_t line_end = line_end_lf == std::string_view::npos ? body.size() : line_end_lf;
                std::string_view line = body.substr(pos, line_end - pos);
                if (line.size() >= boundary.size() + 2 && line[0] == '-' && line[1] == '-' &&
                    line.substr(2, boundary.size()) == boundary) {
                    const std::string_view after = line.substr(2 + boundary.size());
                    const bool close = after.substr(0, 2) == "--";
                    if (trim(close ? after.substr(2) : after).empty()) {
                        if (part_start != std::string_view::npos) {
                            // The CRLF before the delimiter belongs to the delimiter.
                            std::size_t end = pos;
                            if (end > part_start && body[end - 1] == '\n') --end;
                            if (end > part_start && body[end - 1] == '\r') --end;
                            ranges.emplace_back(part_start, std::max(end, part_start) - part_start);
                        }
                        if (close) {
                            closed = true;
                            break;
                        }
                        part_start = line_end_lf == std::string_view::npos ? body.size() : line_end + 1;
                    }
                }
                if (line_end_lf == std::string_view::npos) break;
                pos = line_end + 1;
            }
            if (!closed && part_start != std::string_view::npos) {
                ++mime.malformed_count;  // No close delimiter: the last part runs to the end.
                ranges.emplace_back(part_start, body.size() - part_start);
            }
        }
        if (ranges.empty()) {
            // RFC 3501 needs at least one part: report the body as text/plain.
            ++mime.malformed_count;
            MimePart& p = mime.parts[index];
            p.type = "TEXT";
            p.subtype = "PLAIN";
            p.params.clear();
            p.params.emplace_back("CHARSET", "us-ascii");
            p.body_lines = static_cast<std::uint64_t>(std::count(body.begin(), body.end(), '\n'));
            return;
        }
        for (const auto& [start, bytes] : ranges) {
            if (mime.parts.size() >= mime_parts_max) {
                ++mime.malformed_count;
                break;
            }
            const std::uint32_t child = add_part();
            mime.parts[index].children.push_back(child);
            entity(child, body_offset + start, bytes, false, digest, depth + 1);
        }
    }
};

void append_nstring(std::string& out, std::string_view s, bool present) {
    if (!present) {
        out.append("NIL");
        return;
    }
    append_astring_quoted(out, s);
}

void append_addresses(std::string& out, const std::vector<MimeAddress>& list) {
    if (list.empty()) {
        out.append("NIL");
        return;
    }
    out.push_back('(');
    for (const MimeAddress& a : list) {
        out.push_back('(');
        if (a.group_end) {
            out.append("NIL NIL NIL NIL");
        } else if (a.group_start) {
            out.append("NIL NIL ");
            append_astring_quoted(out, a.mailbox);
            out.append(" NIL");
        } else {
            append_nstring(out, a.name, !a.name.empty());
            out.push_back(' ');
            append_nstring(out, a.adl, !a.adl.empty());
            out.push_back(' ');
            append_nstring(out, a.mailbox, true);
            out.push_back(' ');
            append_nstring(out, a.host, !a.host.empty());
        }
        out.push_back(')');
    }
    out.push_back(')');
}

void append_params(std::string& out, const std::vector<std::pair<std::string, std::string>>& params) {
    if (params.empty()) {
        out.append("NIL");
        return;
    }
    out.push_back('(');
    bool first = true;
    for (const auto& [name, value] : params) {
        if (!first) out.push_back(' ');
        first = false;
        append_astring_quoted(out, name);
        out.push_back(' ');
        append_astring_quoted(out, value);
    }
    out.push_back(')');
}

void append_extension(std::string& out, const MimePart& p) {
    out.push_back(' ');
    if (p.disposition.empty()) {
        out.append("NIL");
    } else {
        out.push_back('(');
        append_astring_quoted(out, p.disposition);
        out.push_back(' ');
        append_params(out, p.disposition_params);
        out.push_back(')');
    }
    out.push_back(' ');
    if (p.languages.empty()) {
        out.append("NIL");
    } else {
        out.push_back('(');
        for (std::size_t i = 0; i < p.languages.size(); ++i) {
            if (i) out.push_back(' ');
            append_astring_quoted(out, p.languages[i]);
        }
        out.push_back(')');
    }
    out.push_back(' ');
    append_nstring(out, p.location, p.has_location);
}

void append_part(std::string& out, const MimeMessage& mime, const MimePart& p, bool ext, unsigned depth) {
    out.push_back('(');
    if (p.multipart() && !p.children.empty()) {
        for (std::uint32_t c : p.children) append_part(out, mime, mime.parts[c], ext, depth + 1);
        out.push_back(' ');
        append_astring_quoted(out, p.subtype);
        if (ext) {
            out.push_back(' ');
            append_params(out, p.params);
            append_extension(out, p);
        }
        out.push_back(')');
        return;
    }
    append_astring_quoted(out, p.type);
    out.push_back(' ');
    append_astring_quoted(out, p.subtype);
    out.push_back(' ');
    append_params(out, p.params);
    out.push_back(' ');
    append_nstring(out, p.id, p.has_id);
    out.push_back(' ');
    append_nstring(out, p.description, p.has_description);
    out.push_back(' ');
    append_astring_quoted(out, p.encoding);
    out.push_back(' ');
    out.append(std::to_string(p.body.bytes));
    if (p.rfc822() && p.message != 0) {
        const MimePart& m = mime.parts[p.message];
        out.push_back(' ');
        mime_append_envelope(out, m.envelope);
        out.push_back(' ');
        append_part(out, mime, m, ext, depth + 1);
        out.push_back(' ');
        out.append(std::to_string(p.body_lines));
    } else if (p.type == "TEXT") {
        out.push_back(' ');
        out.append(std::to_string(p.body_lines));
    }
    if (ext) {
        out.push_back(' ');
        append_nstring(out, p.md5, p.has_md5);
        append_extension(out, p);
    }
    out.push_back(')');
}

int base64_value(char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

}  // namespace

MimeMessage mime_parse(std::string_view message) {
    MimeMessage mime;
    mime.bytes = message.size();
    mime.parts.reserve(4);
    Parser parser{message, mime};
    parser.add_part();
    parser.entity(0, 0, message.size(), true, false, 0);
    RP_ASSERT(!mime.parts.empty());
    RP_ASSERT(mime.parts.size() <= mime_parts_max + 1);
    return mime;
}

const MimePart* mime_resolve(const MimeMessage& mime, std::span<const std::uint32_t> part) {
    RP_ASSERT(!mime.parts.empty());
    const MimePart* cur = &mime.parts[0];
    for (std::size_t i = 0; i < part.size(); ++i) {
        const std::uint32_t n = part[i];
        const MimePart* ent = cur;
        if (i > 0 && cur->rfc822() && cur->message != 0) ent = &mime.parts[cur->message];
        if (ent->multipart() && !ent->children.empty()) {
            if (n == 0 || n > ent->children.size()) return nullptr;
            cur = &mime.parts[ent->children[n - 1]];
        } else if (n == 1 && (ent->is_message || i == 0)) {
            cur = ent;  // A non-multipart message has one part: its body.
        } else {
            return nullptr;
        }
    }
    return cur;
}

bool mime_section_range(const MimeMessage& mime, const Section& section, MimeRange& out) {
    const MimePart* p = mime_resolve(mime, section.part);
    if (p == nullptr) return false;
    // HEADER and TEXT of a part name the encapsulated message of a message/rfc822 part.
    const MimePart* msg = p;
    if (!section.part.empty() && section.text != SectionText::none && section.text != SectionText::mime) {
        if (!p->rfc822() || p->message == 0) return false;
        msg = &mime.parts[p->message];
    }
    switch (section.text) {
        case SectionText::none:
            if (section.part.empty()) {
                out = MimeRange{0, mime.bytes};
            } else {
                out = p->body;
            }
            return true;
        case SectionText::header:
        case SectionText::header_fields:
        case SectionText::header_fields_not:
            out = msg->header;
            return true;
        case SectionText::text:
            out = msg->body;
            return true;
        case SectionText::mime:
            out = p->header;
            return true;
    }
    return false;
}

std::string mime_header_fields(std::string_view message, const MimeMessage& mime,
                               const Section& section) {
    MimeRange range;
    std::string out;
    if (!mime_section_range(mime, section, range) || range.offset + range.bytes > message.size()) {
        return out;
    }
    const std::string_view header = message.substr(static_cast<std::size_t>(range.offset),
                                                   static_cast<std::size_t>(range.bytes));
    const bool negate = section.text == SectionText::header_fields_not;
    for_each_field(header, [&](std::string_view name, std::string_view, std::size_t offset, std::size_t bytes) {
        bool listed = false;
        for (const std::string& f : section.fields) {
            if (iequals(f, name)) listed = true;
        }
        if (listed == negate) return;
        std::string_view field = header.substr(offset, bytes);
        out.append(field);
        if (field.empty() || field.back() != '\n') out.append("\r\n");
    });
    out.append("\r\n");
    return out;
}

void mime_append_envelope(std::string& out, const MimeEnvelope& e) {
    out.push_back('(');
    append_nstring(out, e.date, e.has_date);
    out.push_back(' ');
    append_nstring(out, e.subject, e.has_subject);
    for (const auto* list : {&e.from, &e.sender, &e.reply_to, &e.to, &e.cc, &e.bcc}) {
        out.push_back(' ');
        append_addresses(out, *list);
    }
    out.push_back(' ');
    append_nstring(out, e.in_reply_to, e.has_in_reply_to);
    out.push_back(' ');
    append_nstring(out, e.message_id, e.has_message_id);
    out.push_back(')');
}

void mime_append_body(std::string& out, const MimeMessage& mime, bool extensible) {
    RP_ASSERT(!mime.parts.empty());
    append_part(out, mime, mime.parts[0], extensible, 0);
}

bool mime_decode(std::string_view in, std::string_view encoding, std::string& out) {
    out.clear();
    if (iequals(encoding, "BASE64")) {
        unsigned acc = 0;
        int bits = 0;
        for (char c : in) {
            const int v = base64_value(c);
            if (v < 0) continue;  // Line ends, padding and garbage are skipped.
            acc = (acc << 6) | static_cast<unsigned>(v);
            bits += 6;
            if (bits >= 8) {
                bits -= 8;
                out.push_back(static_cast<char>((acc >> bits) & 0xff));
            }
        }
        return true;
    }
    if (iequals(encoding, "QUOTED-PRINTABLE")) {
        for (std::size_t i = 0; i < in.size(); ++i) {
            if (in[i] != '=') {
                out.push_back(in[i]);
                continue;
            }
            if (i + 2 < in.size() + 0 && hex_value(in[i + 1]) >= 0 && hex_value(in[i + 2]) >= 0) {
                out.push_back(static_cast<char>(hex_value(in[i + 1]) * 16 + hex_value(in[i + 2])));
                i += 2;
            } else if (i + 1 < in.size() && in[i + 1] == '\n') {
                i += 1;  // Soft line break.
            } else if (i + 2 < in.size() && in[i + 1] == '\r' && in[i + 2] == '\n') {
                i += 2;
            } else {
                out.push_back('=');
            }
        }
        return true;
    }
    if (iequals(encoding, "7BIT") || iequals(encoding, "8BIT") || iequals(encoding, "BINARY")) {
        out.assign(in);
        return true;
    }
    return false;
}

bool mime_date_days(std::string_view text, std::int64_t& days) {
    // [day-of-week ","] day month year ...
    std::string_view s = trim(text);
    const std::size_t comma = s.find(',');
    if (comma != std::string_view::npos && comma < 10) s = trim(s.substr(comma + 1));
    unsigned day = 0;
    std::size_t pos = 0;
    while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9' && pos < 2) day = day * 10 + static_cast<unsigned>(s[pos++] - '0');
    if (pos == 0) return false;
    while (pos < s.size() && (s[pos] == ' ' || s[pos] == '-')) ++pos;
    if (s.size() - pos < 3) return false;
    static constexpr std::string_view months[] = {"jan", "feb", "mar", "apr", "may", "jun",
                                                  "jul", "aug", "sep", "oct", "nov", "dec"};
    unsigned month = 0;
    for (unsigned m = 0; m < 12; ++m) {
        if (iequals(s.substr(pos, 3), months[m])) month = m + 1;
    }
    if (month == 0) return false;
    pos += 3;
    while (pos < s.size() && (s[pos] == ' ' || s[pos] == '-')) ++pos;
    unsigned year = 0;
    const std::size_t ys = pos;
    while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9' && pos - ys < 4) year = year * 10 + static_cast<unsigned>(s[pos++] - '0');
    if (pos - ys == 2) year += year < 50 ? 2000 : 1900;  // RFC 5322 4.3 obsolete years.
    else if (pos - ys != 4) return false;
    if (day < 1 || day > 31) return false;
    days = days_from_civil(year, month, day);
    return true;
}

bool mime_header_value(std::string_view header, std::string_view name, std::string& out) {
    bool found = false;
    for_each_field(header, [&](std::string_view n, std::string_view raw, std::size_t, std::size_t) {
        if (found || !iequals(n, name)) return;
        out = unfold(raw);
        found = true;
    });
    return found;
}

}  // namespace rp::imap
