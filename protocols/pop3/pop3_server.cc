// protocols/pop3/pop3_server.cc: see pop3_server.h.
#include "protocols/pop3/pop3_server.h"

#include <cstdio>
#include <cstring>

#include "protocols/common/reply_table.h"

namespace rp::pop3 {

namespace {

// RFC 2449 4: keywords are 3-4 characters, arguments up to 40 characters each.
constexpr std::size_t argument_bytes_max = 40;

bool equals_nocase(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        char x = a[i];
        char y = b[i];
        if (x >= 'a' && x <= 'z') x = static_cast<char>(x - 32);
        if (y >= 'a' && y <= 'z') y = static_cast<char>(y - 32);
        if (x != y) return false;
    }
    return true;
}

// A decimal number 1..2^32-1 without sign or leading garbage; 0 when it is not one.
std::uint64_t parse_number(std::string_view text) {
    if (text.empty() || text.size() > 10) return 0;
    std::uint64_t value = 0;
    for (char c : text) {
        if (c < '0' || c > '9') return 0;
        value = value * 10 + static_cast<std::uint64_t>(c - '0');
    }
    return value <= 0xffffffffu ? value : 0;
}

// Splits off the first space-separated word.
std::string_view next_word(std::string_view& text) {
    const std::size_t space = text.find(' ');
    std::string_view word = text.substr(0, space);
    text = space == std::string_view::npos ? std::string_view{} : text.substr(space + 1);
    return word;
}

int base64_value(char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

}  // namespace

bool base64_decode(std::string_view text, std::string& out) {
    out.clear();
    if (text.size() % 4 != 0) return false;
    for (std::size_t i = 0; i < text.size(); i += 4) {
        int v[4];
        int pad = 0;
        for (int k = 0; k < 4; ++k) {
            const char c = text[i + static_cast<std::size_t>(k)];
            if (c == '=' && i + 4 == text.size() && k >= 2) {
                v[k] = 0;
                ++pad;
                continue;
            }
            if (pad > 0) return false;  // Data after padding.
            v[k] = base64_value(c);
            if (v[k] < 0) return false;
        }
        const unsigned bits = (unsigned(v[0]) << 18) | (unsigned(v[1]) << 12) |
                              (unsigned(v[2]) << 6) | unsigned(v[3]);
        out.push_back(static_cast<char>(bits >> 16));
        if (pad < 2) out.push_back(static_cast<char>((bits >> 8) & 0xff));
        if (pad < 1) out.push_back(static_cast<char>(bits & 0xff));
    }
    return true;
}

Pop3Server::Pop3Server(const Pop3ServerConfig& config, Pop3Host& host, const Pop3SessionInfo& info)
    : config_(config),
      host_(host),
      line_reader_(config.line_bytes_max),
      tls_active_(info.tls_active),
      tls_available_(info.tls_available),
      auth_allowed_(info.auth_allowed) {
    RP_ASSERT(config.line_bytes_max >= 255);
    RP_ASSERT(config.line_bytes_max <= limits::pop3_line_bytes_max);
    RP_ASSERT(config.output_bytes_high >= 1024);
    RP_ASSERT(!config.hostname.empty());
}

void Pop3Server::greet() {
    RP_ASSERT(state_ == State::fresh);
    state_ = State::authorization;
    reply("+OK " + config_.hostname + " POP3 server ready");
}

void Pop3Server::refuse(Status reason) {
    RP_ASSERT(state_ == State::fresh);
    reply(std::string("-ERR ") + std::string(protocols::pop3_reply_for(reason)));
    state_ = State::closed;
}

std::size_t Pop3Server::feed(std::span<const std::byte> input) {
    RP_ASSERT(state_ != State::fresh);
    if (listing_ != 0) pump();
    std::size_t used = 0;
    while (used < input.size()) {
        if (state_ != State::authorization && state_ != State::auth_plain &&
            state_ != State::transaction) {
            break;  // Paused or closed.
        }
        if (output_blocked()) break;
        const rp::protocols::LineStep step = line_reader_.next(input.subspan(used));
        // bounds: a step consumes at most the rest of the input.
        RP_ASSERT(step.consumed <= input.size() - used);
        used += step.consumed;
        if (step.kind == rp::protocols::LineKind::need_more) break;
        if (step.kind == rp::protocols::LineKind::too_long) {
            ++counters_.long_lines;
            error("-ERR Line too long");
            continue;
        }
        // A bare LF ends a line too: POP3 has no smuggling concern, and lenient clients
        // exist (the reply still uses CRLF).
        handle_line(step.text);
    }
    RP_ASSERT(used == input.size() || paused() || wants_close() || output_blocked());
    return used;
}

void Pop3Server::take_output(std::string& out) {
    if (out.empty()) {
        out.swap(output_);
    } else {
        out += output_;
        output_.clear();
    }
}

void Pop3Server::reply(std::string_view line) {
    output_.append(line);
    output_.append("\r\n");
}

void Pop3Server::error(std::string_view line) {
    reply(line);
    ++counters_.syntax_errors;
    if (++error_count_ >= config_.errors_max) {
        reply("-ERR Too many errors, closing");
        state_ = State::closed;
    }
}

void Pop3Server::close_shutdown() {
    reply(std::string("-ERR ") + std::string(protocols::pop3_reply_for(Status::cancelled)));
    state_ = State::closed;
}

void Pop3Server::handle_line(std::string_view line) {
    if (state_ == State::auth_plain) {
        auth_plain_response(line);
        return;
    }
    if (shutting_down_) {
        close_shutdown();
        return;
    }
    std::string_view args = line;
    const std::string_view verb = next_word(args);
    if (verb.size() < 3 || verb.size() > 4) {
        error("-ERR Unknown command");
        return;
    }
    if (state_ == State::authorization) {
        authorization_command(verb, args);
    } else {
        transaction_command(verb, args);
    }
}

void Pop3Server::authorization_command(std::string_view verb, std::string_view args) {
    if (equals_nocase(verb, "CAPA")) {
        do_capa();
    } else if (equals_nocase(verb, "QUIT")) {
        reply("+OK " + config_.hostname + " POP3 server signing off");
        state_ = State::closed;
    } else if (equals_nocase(verb, "NOOP")) {
        reply("+OK");  // Not in RFC 1939 for AUTHORIZATION, but harmless and common.
    } else if (equals_nocase(verb, "STLS")) {
        if (tls_active_) {
            error("-ERR Command not permitted when TLS active");
        } else if (!tls_available_) {
            error("-ERR STLS not available");
        } else {
            reply("+OK Begin TLS negotiation");
            state_ = State::wait_tls;
        }
    } else if (equals_nocase(verb, "USER") || equals_nocase(verb, "PASS") ||
               equals_nocase(verb, "AUTH")) {
        if (!auth_allowed_ && !tls_active_) {
            error("-ERR [AUTH] Authentication requires TLS: use STLS first");
            return;
        }
        if (equals_nocase(verb, "AUTH")) {
            do_auth(args);
        } else if (equals_nocase(verb, "USER")) {
            if (args.empty() || args.size() > limits::address_bytes_max) {
                error("-ERR Syntax: USER name");
                return;
            }
            user_ = std::string(args);
            reply("+OK Send your password");
        } else if (user_.empty()) {
            error("-ERR USER first");
        } else {
            // RFC 1939 7: the password may contain spaces; the rest of the line is it.
            std::string user;
            user.swap(user_);
            start_login(user, args);
        }
    } else if (equals_nocase(verb, "STAT") || equals_nocase(verb, "LIST") ||
               equals_nocase(verb, "RETR") || equals_nocase(verb, "DELE") ||
               equals_nocase(verb, "RSET") || equals_nocase(verb, "TOP") ||
               equals_nocase(verb, "UIDL")) {
        error("-ERR Not authenticated");
    } else {
        error("-ERR Unknown command");
    }
}

void Pop3Server::do_capa() {
    std::string text = "+OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\n"
                       "AUTH-RESP-CODE\r\nPIPELINING\r\n";
    const bool may_auth = state_ == State::authorization && (auth_allowed_ || tls_active_);
    if (may_auth) text += "USER\r\nSASL PLAIN\r\n";
    if (state_ == State::authorization && tls_available_ && !tls_active_) text += "STLS\r\n";
    text += "IMPLEMENTATION ringpost\r\n.";
    reply(text);
}

void Pop3Server::do_auth(std::string_view args) {
    if (args.empty()) {
        // Not in RFC 5034, but clients probe with a bare AUTH for the mechanism list.
        reply("+OK\r\nPLAIN\r\n.");
        return;
    }
    const std::string_view mechanism = next_word(args);
    if (!equals_nocase(mechanism, "PLAIN")) {
        error("-ERR Unsupported authentication mechanism");
        return;
    }
    if (args.empty()) {
        reply("+ ");  // RFC 5034 4: an empty challenge.
        state_ = State::auth_plain;
        return;
    }
    auth_plain_response(args);
}

void Pop3Server::auth_plain_response(std::string_view line) {
    state_ = State::authorization;
    if (line == "*") {
        error("-ERR Authentication cancelled");
        return;
    }
    std::string decoded;
    if (line != "=" && !base64_decode(line, decoded)) {
        error("-ERR Invalid base64 in AUTH PLAIN");
        return;
    }
    // RFC 4616 2: [authzid] NUL authcid NUL passwd.
    const std::size_t first = decoded.find('\0');
    const std::size_t second =
        first == std::string::npos ? std::string::npos : decoded.find('\0', first + 1);
    if (second == std::string::npos || decoded.find('\0', second + 1) != std::string::npos) {
        error("-ERR Malformed AUTH PLAIN response");
        return;
    }
    const std::string_view view(decoded);
    const std::string_view authzid = view.substr(0, first);
    const std::string_view authcid = view.substr(first + 1, second - first - 1);
    const std::string_view password = view.substr(second + 1);
    if (authcid.empty() || (!authzid.empty() && authzid != authcid)) {
        ++counters_.auth_failures;
        error("-ERR [AUTH] Authentication failed");
        return;
    }
    start_login(authcid, password);
}

void Pop3Server::start_login(std::string_view user, std::string_view password) {
    state_ = State::wait_login;
    host_.login(user, password);
}

void Pop3Server::login_done(Status status, const Pop3Maildrop* maildrop) {
    if (state_ == State::closed) return;
    RP_ASSERT(state_ == State::wait_login);
    if (status == Status::permission) {
        // The client address is over its failure limit (auth.failures_max): no more tries
        // on this connection.
        ++counters_.auth_failures;
        reply("-ERR [AUTH] Too many failed logins from your address, try again later");
        state_ = State::closed;
        return;
    }
    if (status != Status::ok) {
        state_ = State::authorization;
        if (status == Status::refused) ++counters_.auth_failures;
        error(std::string("-ERR ") + std::string(protocols::pop3_reply_for(status)));
        return;
    }
    RP_ASSERT(maildrop != nullptr);
    uidvalidity_ = maildrop->uidvalidity;
    messages_ = maildrop->messages;
    deleted_.assign(messages_.size(), false);
    deleted_count_ = 0;
    state_ = State::transaction;
    reply("+OK " + maildrop_summary());
    if (shutting_down_) close_shutdown();
}

std::string Pop3Server::maildrop_summary() const {
    std::uint64_t bytes = 0;
    for (std::size_t i = 0; i < messages_.size(); ++i) {
        if (!deleted_[i]) bytes += messages_[i].size;
    }
    return "maildrop has " + std::to_string(messages_.size() - deleted_count_) + " messages (" +
           std::to_string(bytes) + " octets)";
}

long Pop3Server::message_arg(std::string_view arg) {
    const std::uint64_t number = parse_number(arg);
    if (number == 0) {
        error("-ERR Invalid message number");
        return -1;
    }
    if (number > messages_.size() || deleted_[number - 1]) {
        error("-ERR No such message");
        return -1;
    }
    return static_cast<long>(number - 1);
}

void Pop3Server::transaction_command(std::string_view verb, std::string_view args) {
    if (args.size() > 2 * argument_bytes_max + 1) {
        error("-ERR Arguments too long");
        return;
    }
    if (equals_nocase(verb, "STAT")) {
        std::uint64_t bytes = 0;
        for (std::size_t i = 0; i < messages_.size(); ++i) {
            if (!deleted_[i]) bytes += messages_[i].size;
        }
        reply("+OK " + std::to_string(messages_.size() - deleted_count_) + " " +
              std::to_string(bytes));
    } else if (equals_nocase(verb, "LIST")) {
        do_list(args, false);
    } else if (equals_nocase(verb, "UIDL")) {
        do_list(args, true);
    } else if (equals_nocase(verb, "RETR")) {
        do_retr(args, false);
    } else if (equals_nocase(verb, "TOP")) {
        do_retr(args, true);
    } else if (equals_nocase(verb, "DELE")) {
        const long index = message_arg(args);
        if (index < 0) return;
        deleted_[static_cast<std::size_t>(index)] = true;
        ++deleted_count_;
        reply("+OK Message " + std::to_string(index + 1) + " deleted");
    } else if (equals_nocase(verb, "RSET")) {
        deleted_.assign(messages_.size(), false);
        deleted_count_ = 0;
        reply("+OK " + maildrop_summary());
    } else if (equals_nocase(verb, "NOOP")) {
        reply("+OK");
    } else if (equals_nocase(verb, "QUIT")) {
        do_quit();
    } else if (equals_nocase(verb, "CAPA")) {
        do_capa();
    } else if (equals_nocase(verb, "USER") || equals_nocase(verb, "PASS") ||
               equals_nocase(verb, "AUTH") || equals_nocase(verb, "STLS")) {
        error("-ERR Already authenticated");
    } else {
        error("-ERR Unknown command");
    }
}

void Pop3Server::do_list(std::string_view args, bool uidl) {
    if (!args.empty()) {
        const long index = message_arg(args);
        if (index < 0) return;
        const auto i = static_cast<std::size_t>(index);
        reply(uidl ? "+OK " + std::to_string(i + 1) + " " + std::to_string(uidvalidity_) + "." +
                         std::to_string(messages_[i].uid)
                   : "+OK " + std::to_string(i + 1) + " " + std::to_string(messages_[i].size));
        return;
    }
    reply(uidl ? "+OK Unique-ID listing follows" : "+OK " + maildrop_summary());
    listing_ = uidl ? 2 : 1;
    listing_index_ = 0;
    pump();
}

void Pop3Server::pump() {
    if (listing_ == 0) return;
    while (listing_index_ < messages_.size() && !output_blocked()) {
        if (!deleted_[listing_index_]) list_line(listing_index_, listing_ == 2);
        ++listing_index_;
    }
    if (listing_index_ == messages_.size()) {
        reply(".");
        listing_ = 0;
        if (shutting_down_) close_shutdown();
    }
}

void Pop3Server::list_line(std::size_t index, bool uidl) {
    // RFC 1939 7: the unique-id is 1-70 characters 0x21..0x7E; UIDVALIDITY.UID stays the same
    // across sessions because the store never reuses a UID under one UIDVALIDITY.
    char line[64];
    const int n = uidl ? std::snprintf(line, sizeof line, "%zu %u.%u\r\n", index + 1,
                                       uidvalidity_, messages_[index].uid)
                       : std::snprintf(line, sizeof line, "%zu %llu\r\n", index + 1,
                                       static_cast<unsigned long long>(messages_[index].size));
    RP_ASSERT(n > 0);
    RP_ASSERT(static_cast<std::size_t>(n) < sizeof line);
    output_.append(line, static_cast<std::size_t>(n));
}

void Pop3Server::do_retr(std::string_view args, bool top) {
    std::string_view rest = args;
    const std::string_view number = next_word(rest);
    std::uint64_t lines = 0;
    if (top) {
        // RFC 1939 7: TOP msg n, n non-negative.
        if (rest.empty() || rest.size() > 10 || rest.find_first_not_of("0123456789") !=
                                                    std::string_view::npos) {
            error("-ERR Syntax: TOP msg n");
            return;
        }
        for (char c : rest) lines = lines * 10 + static_cast<std::uint64_t>(c - '0');
    } else if (!rest.empty()) {
        error("-ERR Syntax: RETR msg");
        return;
    }
    const long index = message_arg(number);
    if (index < 0) return;
    top_ = top;
    top_lines_left_ = lines;
    message_started_ = false;
    line_start_ = true;
    in_header_ = true;
    top_done_ = false;
    line_bytes_ = 0;
    last_cr_ = false;
    message_size_ = messages_[static_cast<std::size_t>(index)].size;
    state_ = State::wait_message;
    host_.message_read(static_cast<std::uint32_t>(index));
}

bool Pop3Server::message_data(std::span<const std::byte> piece) {
    if (state_ == State::closed) return false;
    RP_ASSERT(state_ == State::wait_message);
    if (!message_started_) {
        message_started_ = true;
        reply(top_ ? std::string("+OK Top of message follows")
                   : "+OK " + std::to_string(message_size_) + " octets");
    }
    if (top_) return stuff_top(piece);
    stuff(piece);
    return true;
}

// RFC 1939 3: a line that starts with "." gets one more. A line starts after any LF, so
// that clients splitting on LF (poplib) and on CRLF both read the bytes back exactly for
// CRLF text (the store keeps what SMTP received, CRLF lines).
void Pop3Server::stuff(std::span<const std::byte> piece) {
    const char* at = reinterpret_cast<const char*>(piece.data());
    const char* end = at + piece.size();
    while (at < end) {
        if (line_start_ && *at == '.') output_.push_back('.');
        const void* lf = std::memchr(at, '\n', static_cast<std::size_t>(end - at));
        if (lf == nullptr) {
            output_.append(at, end);
            line_start_ = false;
            return;
        }
        const char* next = static_cast<const char*>(lf) + 1;
        output_.append(at, next);
        line_start_ = true;
        at = next;
    }
}

bool Pop3Server::stuff_top(std::span<const std::byte> piece) {
    for (std::byte b : piece) {
        if (top_done_) return false;
        const char c = static_cast<char>(b);
        if (line_start_ && c == '.') output_.push_back('.');
        output_.push_back(c);
        line_start_ = false;
        if (c != '\n') {
            ++line_bytes_;
            last_cr_ = c == '\r';
            continue;
        }
        // A line ended: empty when it held nothing but a CR.
        const bool empty = line_bytes_ == 0 || (line_bytes_ == 1 && last_cr_);
        line_bytes_ = 0;
        last_cr_ = false;
        line_start_ = true;
        if (in_header_) {
            if (empty) {
                in_header_ = false;
                top_done_ = top_lines_left_ == 0;
            }
        } else if (--top_lines_left_ == 0) {
            top_done_ = true;
        }
    }
    return !top_done_;
}

void Pop3Server::message_end(Status status) {
    if (state_ == State::closed) return;
    RP_ASSERT(state_ == State::wait_message);
    if (status != Status::ok) {
        if (message_started_) {
            // Part of the message went out after "+OK": never end it with a dot, so the
            // client cannot take a truncated message for a whole one.
            state_ = State::closed;
            return;
        }
        state_ = State::transaction;
        error(std::string("-ERR ") + std::string(protocols::pop3_reply_for(status)));
        if (shutting_down_ && state_ != State::closed) close_shutdown();
        return;
    }
    if (!message_started_) message_data({});
    if (!line_start_) output_.append("\r\n");
    output_.append(".\r\n");
    ++counters_.messages_sent;
    state_ = State::transaction;
    if (shutting_down_) close_shutdown();
}

void Pop3Server::do_quit() {
    // UPDATE (RFC 1939 6) even with nothing to delete: the host releases the maildrop before
    // the +OK, so a client that logs in again right after it finds the maildrop free.
    update_uids_.clear();
    for (std::size_t i = 0; i < messages_.size(); ++i) {
        if (deleted_[i]) update_uids_.push_back(messages_[i].uid);
    }
    state_ = State::wait_update;
    host_.update(update_uids_);
}

void Pop3Server::update_done(Status status) {
    if (state_ == State::closed) return;
    RP_ASSERT(state_ == State::wait_update);
    if (status == Status::ok && deleted_count_ == 0) {
        reply("+OK " + config_.hostname + " POP3 server signing off");
    } else if (status == Status::ok) {
        counters_.messages_deleted += deleted_count_;
        reply("+OK " + config_.hostname + " POP3 server signing off (" +
              std::to_string(deleted_count_) + " messages deleted)");
    } else {
        // RFC 1939 6: "-ERR some deleted messages not removed".
        reply("-ERR [SYS/TEMP] Some deleted messages not removed");
    }
    state_ = State::closed;
}

void Pop3Server::tls_started() {
    RP_ASSERT(state_ == State::wait_tls);
    RP_ASSERT(!tls_active_);
    tls_active_ = true;
    user_.clear();
    line_reader_.reset();
    state_ = State::authorization;
}

void Pop3Server::on_timeout() {
    // RFC 1939 3: the autologout timer closes the connection without a response and
    // without entering the UPDATE state.
    state_ = State::closed;
}

void Pop3Server::begin_shutdown() {
    shutting_down_ = true;
    if (state_ == State::authorization || state_ == State::transaction ||
        state_ == State::auth_plain) {
        if (listing_ != 0) return;  // Finish the listing; the next command gets the reply.
        close_shutdown();
    }
}

void Pop3Server::connection_lost() { state_ = State::closed; }

}  // namespace rp::pop3
