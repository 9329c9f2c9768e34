// protocols/smtp/smtp_client.cc: the SMTP client state machine.
#include "protocols/smtp/smtp_client.h"

#include <charconv>
#include <utility>

#include "core/assert.h"

namespace rp::smtp {

namespace {

constexpr std::size_t reply_line_bytes_max = 2048;  // RFC 5321 4.5.3.1.5: 512; be lenient.
constexpr std::size_t reply_lines_max = 128;

char upper(char c) { return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c; }

bool starts_with_word(std::string_view line, std::string_view word) {
    if (line.size() < word.size()) return false;
    for (std::size_t i = 0; i < word.size(); ++i) {
        if (upper(line[i]) != word[i]) return false;
    }
    return line.size() == word.size() || line[word.size()] == ' ' || line[word.size()] == '=';
}

}  // namespace

void SmtpBodyEncoder::encode(std::string_view bytes, std::string& out) {
    // bounds: at most one extra byte per line plus one per bare CR/LF; a guess, not a limit.
    out.reserve(out.size() + bytes.size() + bytes.size() / 64 + 8);
    std::size_t i = 0;
    while (i < bytes.size()) {
        const char c = bytes[i];
        if (after_cr_) {
            after_cr_ = false;
            if (c == '\n') {  // The CR's CRLF is out already.
                ++i;
                continue;
            }
        }
        if (c == '\r' || c == '\n') {
            out += "\r\n";
            after_cr_ = c == '\r';
            line_start_ = true;
            ++i;
            continue;
        }
        if (line_start_ && c == '.') out.push_back('.');  // RFC 5321 4.5.2.
        line_start_ = false;
        // The rest of the line in one append.
        std::size_t end = i + 1;
        while (end < bytes.size() && bytes[end] != '\r' && bytes[end] != '\n') ++end;
        out.append(bytes.data() + i, end - i);
        i = end;
    }
}

void SmtpBodyEncoder::finish(std::string& out) {
    if (!line_start_) out += "\r\n";
    out += ".\r\n";
    line_start_ = true;
    after_cr_ = false;
}

void smtp_body_encode(std::string_view body, std::string& out) {
    SmtpBodyEncoder encoder;
    encoder.encode(body, out);
    encoder.finish(out);
}

SmtpClient::SmtpClient(const SmtpClientConfig& config) : config_(config) {}

std::string SmtpClient::take_output() { return std::exchange(out_, {}); }

void SmtpClient::emit(std::string_view command) {
    out_ += command;
    out_ += "\r\n";
}

std::uint64_t SmtpClient::timeout_ms() const {
    switch (state_) {
        case State::greeting: return config_.timeouts.greeting_ms;
        case State::ehlo:
        case State::helo:
        case State::starttls:
        case State::tls_handshake:  // The host's handshake: as long as a command.
        case State::quitting: return config_.timeouts.command_ms;
        case State::transaction:
            if (streaming_) return config_.timeouts.data_block_ms;  // RFC 5321 4.5.3.2.5.
            if (expected_.empty()) return config_.timeouts.command_ms;
            switch (expected_.front().first) {
                case Expect::data: return config_.timeouts.data_init_ms;
                case Expect::data_end:
                case Expect::dot_only: return config_.timeouts.data_end_ms;
                default: return config_.timeouts.command_ms;
            }
        case State::ready:
        case State::closed: return 0;
    }
    return 0;
}

void SmtpClient::feed(std::string_view bytes) {
    for (const char c : bytes) {
        if (state_ == State::closed) return;
        if (c != '\n') {
            if (in_.size() >= reply_line_bytes_max) {
                fail_session(421, "4.5.0 Remote reply line too long");
                return;
            }
            in_.push_back(c);
            continue;
        }
        if (!in_.empty() && in_.back() == '\r') in_.pop_back();
        std::string line = std::exchange(in_, {});
        line_received(line);
    }
}

void SmtpClient::line_received(std::string_view line) {
    // RFC 5321 4.2: "ddd" SP text, "ddd-" text for all but the last line.
    std::uint16_t code = 0;
    const bool digits = line.size() >= 3 && line[0] >= '2' && line[0] <= '5' &&
                        line[1] >= '0' && line[1] <= '9' && line[2] >= '0' && line[2] <= '9';
    if (digits) code = static_cast<std::uint16_t>((line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0'));
    const bool last = line.size() == 3 || (line.size() > 3 && line[3] == ' ');
    const bool more = line.size() > 3 && line[3] == '-';
    if (!digits || (!last && !more) || (reply_code_ != 0 && code != reply_code_)) {
        fail_session(421, "4.5.0 Malformed reply from remote: " +
                              std::string(line.substr(0, std::min<std::size_t>(line.size(), 80))));
        return;
    }
    if (lines_.size() >= reply_lines_max) {
        fail_session(421, "4.5.0 Remote reply has too many lines");
        return;
    }
    reply_code_ = code;
    lines_.emplace_back(line.size() > 4 ? line.substr(4) : std::string_view{});
    if (!last) return;
    SmtpReply reply;
    reply.code = code;
    for (const auto& text : lines_) {
        if (!reply.text.empty()) reply.text += "; ";
        reply.text += text;
    }
    std::vector<std::string> lines = std::exchange(lines_, {});
    reply_code_ = 0;
    if (state_ == State::ehlo && reply.positive()) {
        ext_ = SmtpExtensions{};
        ext_.esmtp = true;
        for (std::size_t i = 1; i < lines.size(); ++i) parse_extension(lines[i]);
    }
    reply_received(reply);
}

void SmtpClient::parse_extension(std::string_view line) {
    if (starts_with_word(line, "PIPELINING")) ext_.pipelining = true;
    if (starts_with_word(line, "8BITMIME")) ext_.eight_bit_mime = true;
    if (starts_with_word(line, "STARTTLS")) ext_.starttls = true;
    if (starts_with_word(line, "SMTPUTF8")) ext_.smtputf8 = true;
    if (starts_with_word(line, "SIZE")) ext_.size = true;
    if (starts_with_word(line, "SIZE") && line.size() > 5) {
        std::uint64_t value = 0;
        const std::string_view number = line.substr(5);
        auto [end, ec] = std::from_chars(number.data(), number.data() + number.size(), value);
        if (ec == std::errc()) ext_.size_max = value;
        (void)end;
    }
}

void SmtpClient::reply_received(const SmtpReply& reply) {
    switch (state_) {
        case State::greeting:
            if (reply.code != 220) {  // 554 / 421: this host will not talk to us.
                session_reply_ = reply;
                emit("QUIT");
                state_ = State::closed;
                return;
            }
            emit("EHLO " + config_.helo_name);
            state_ = State::ehlo;
            return;
        case State::ehlo:
            if (!reply.positive()) {  // RFC 5321 3.2: fall back to HELO.
                emit("HELO " + config_.helo_name);
                state_ = State::helo;
                return;
            }
            after_ehlo(reply);
            return;
        case State::helo:
            if (!reply.positive()) {
                session_reply_ = reply;
                emit("QUIT");
                state_ = State::closed;
                return;
            }
            ext_ = SmtpExtensions{};
            state_ = State::ready;
            return;
        case State::starttls:
            if (reply.code == 220) {
                state_ = State::tls_handshake;
                return;
            }
            if (config_.require_tls) {
                emit("QUIT");
                fail_session(421, "4.7.4 STARTTLS refused: " + reply.line());
                return;
            }
            state_ = State::ready;  // Opportunistic: go on without TLS.
            return;
        case State::transaction:
            transaction_reply(reply);
            return;
        case State::quitting:
            state_ = State::closed;
            return;
        case State::tls_handshake:
        case State::ready:
            // An unsolicited reply (421 before closing, RFC 5321 3.8): the session ends.
            fail_session(reply.transient() || reply.permanent() ? reply.code : 421,
                         reply.text.empty() ? "4.5.0 Unexpected reply" : reply.text);
            return;
        case State::closed:
            return;
    }
}

void SmtpClient::after_ehlo(const SmtpReply& /*reply*/) {
    if (config_.starttls && ext_.starttls && !tls_active_) {
        emit("STARTTLS");
        state_ = State::starttls;
        return;
    }
    if (config_.require_tls && !tls_active_) {
        // RFC 3207 4.1: a client that needs TLS ends the session; the mail waits (4xx).
        emit("QUIT");
        fail_session(421, "4.7.4 STARTTLS is required but not offered");
        return;
    }
    state_ = State::ready;
}

void SmtpClient::tls_started() {
    RP_ASSERT(state_ == State::tls_handshake);
    RP_ASSERT(!tls_active_);
    tls_active_ = true;
    // RFC 3207 4.2: forget what we knew and ask again.
    ext_ = SmtpExtensions{};
    emit("EHLO " + config_.helo_name);
    state_ = State::ehlo;
}

void SmtpClient::tls_failed() {
    RP_ASSERT(state_ == State::tls_handshake);
    fail_session(421, "4.7.0 TLS handshake failed");
}

void SmtpClient::send(SmtpClientMessage message) {
    RP_ASSERT(state_ == State::ready);
    RP_ASSERT(!message.recipients.empty());
    message_ = std::move(message);
    const std::uint64_t body_bytes = message_.body != nullptr ? message_.body->size() : message_.body_bytes;
    streaming_ = false;
    const std::size_t count = message_.recipients.size();
    results_.assign(count, SmtpReply{});
    rcpt_ok_.assign(count, false);
    mail_ok_ = false;
    aborted_ = false;
    expected_.clear();
    unsent_.clear();
    state_ = State::transaction;
    ++transactions_;
    std::optional<SmtpReply> refused;
    if (ext_.size_max != 0 && body_bytes > ext_.size_max) {
        // RFC 1870 6: do not send what the server said it will refuse.
        refused = SmtpReply{552, "5.3.4 Message size exceeds the limit of the destination (" +
                                     std::to_string(ext_.size_max) + " bytes)"};
    } else if (message_.eight_bit && !ext_.eight_bit_mime) {
        // RFC 6152 3: 8-bit data to a server without 8BITMIME must be converted or returned
        // as not deliverable; we return it (no MIME conversion to 7 bit).
        refused = SmtpReply{554, "5.6.3 The message has 8-bit data and the destination does not "
                                 "offer 8BITMIME (RFC 6152)"};
    }
    if (refused) {
        for (auto& r : results_) r = *refused;
        end_transaction();
        need_rset_ = false;
        return;
    }
    std::vector<std::string> commands;
    if (need_rset_) {
        commands.emplace_back("RSET");
        expected_.emplace_back(Expect::rset, 0);
    }
    std::string mail = "MAIL FROM:<" + message_.sender + ">";
    if (ext_.size) mail += " SIZE=" + std::to_string(body_bytes);  // RFC 1870.
    if (message_.eight_bit && ext_.eight_bit_mime) mail += " BODY=8BITMIME";
    commands.push_back(std::move(mail));
    expected_.emplace_back(Expect::mail, 0);
    for (std::uint32_t i = 0; i < count; ++i) {
        commands.push_back("RCPT TO:<" + message_.recipients[i] + ">");
        expected_.emplace_back(Expect::rcpt, i);
    }
    commands.emplace_back("DATA");
    expected_.emplace_back(Expect::data, 0);
    if (ext_.pipelining) {
        for (const auto& c : commands) emit(c);  // RFC 2920 3.1: DATA ends the group.
    } else {
        emit(commands.front());
        for (std::size_t i = 1; i < commands.size(); ++i) unsent_.push_back(std::move(commands[i]));
    }
}

void SmtpClient::send_next_unsent() {
    if (unsent_.empty()) return;
    emit(unsent_.front());
    unsent_.pop_front();
}

void SmtpClient::transaction_reply(const SmtpReply& reply) {
    if (expected_.empty()) {
        fail_session(421, "4.5.0 Unexpected reply: " + reply.line());
        return;
    }
    const auto [expect, index] = expected_.front();
    expected_.pop_front();
    switch (expect) {
        case Expect::rset:
            break;  // Whatever it says, MAIL follows (and tells).
        case Expect::mail:
            mail_ok_ = reply.positive();
            if (!mail_ok_) {
                for (auto& r : results_) r = reply;
                aborted_ = true;
                if (!ext_.pipelining) {  // Nothing else was sent: the transaction ends now.
                    expected_.clear();
                    unsent_.clear();
                    end_transaction();
                    return;
                }
            }
            break;
        case Expect::rcpt:
            if (!aborted_) {
                results_[index] = reply;
                rcpt_ok_[index] = reply.positive();
            }
            break;
        case Expect::data: {
            bool any = false;
            for (bool ok : rcpt_ok_) any = any || ok;
            if (reply.code == 354) {
                if (any && !aborted_ && message_.body == nullptr) {
                    streaming_ = true;  // The host feeds body_chunk() and body_end().
                    encoder_ = SmtpBodyEncoder{};
                } else if (any && !aborted_) {
                    send_body();
                    expected_.emplace_back(Expect::data_end, 0);
                } else {
                    // RFC 2920 3.1: DATA was accepted without recipients: send an empty
                    // message's end and ignore its reply.
                    emit(".");
                    expected_.emplace_back(Expect::dot_only, 0);
                }
                return;
            }
            if (!aborted_) {
                for (std::size_t i = 0; i < rcpt_ok_.size(); ++i) {
                    if (rcpt_ok_[i]) results_[i] = reply;
                }
            }
            end_transaction();
            return;
        }
        case Expect::data_end:
            for (std::size_t i = 0; i < rcpt_ok_.size(); ++i) {
                if (rcpt_ok_[i]) results_[i] = reply;
            }
            expected_.clear();
            end_transaction();
            need_rset_ = !reply.positive();  // A finished transaction needs no RSET.
            return;
        case Expect::dot_only:
            end_transaction();
            return;
    }
    if (!ext_.pipelining && !aborted_) {
        // Without PIPELINING, stop at the first refusal of everything: no RCPT accepted
        // after the last RCPT means no DATA.
        if (!unsent_.empty() && unsent_.front() == "DATA") {
            bool any = false;
            for (bool ok : rcpt_ok_) any = any || ok;
            if (!any) {
                unsent_.clear();
                expected_.clear();
                end_transaction();
                return;
            }
        }
        send_next_unsent();
    }
}

void SmtpClient::send_body() {
    smtp_body_encode(*message_.body, out_);
}

void SmtpClient::body_chunk(std::string_view bytes) {
    RP_ASSERT(wants_body());
    encoder_.encode(bytes, out_);
}

void SmtpClient::body_end() {
    RP_ASSERT(wants_body());
    encoder_.finish(out_);
    streaming_ = false;
    expected_.emplace_back(Expect::data_end, 0);
}

void SmtpClient::end_transaction() {
    RP_ASSERT(state_ == State::transaction);
    streaming_ = false;
    for (auto& r : results_) {
        if (r.code == 0) {  // Never answered (RCPT skipped): treat as temporary.
            r.code = 451;
            r.text = "4.4.2 No reply for this recipient";
        }
    }
    need_rset_ = true;
    done_ = std::exchange(results_, {});
    message_ = SmtpClientMessage{};
    state_ = State::ready;
}

std::optional<std::vector<SmtpReply>> SmtpClient::take_result() { return std::exchange(done_, std::nullopt); }

void SmtpClient::quit() {
    if (state_ == State::ready) {
        emit("QUIT");
        state_ = State::quitting;
        return;
    }
    if (state_ != State::closed) fail_session(421, "4.4.2 Session closed by us");
}

void SmtpClient::fail_session(std::uint16_t code, std::string text) {
    if (state_ == State::closed) return;
    SmtpReply reply{code, std::move(text)};
    if (reply.code < 400) reply.code = 421;
    if (state_ == State::transaction) {
        // Recipients not yet finished get a temporary failure: the message was not taken.
        SmtpReply temporary{451, "4.4.2 " + reply.line()};
        if (reply.transient()) temporary = reply;
        for (auto& r : results_) r = temporary;
        done_ = std::exchange(results_, {});
        expected_.clear();
        unsent_.clear();
    }
    session_reply_ = reply;
    streaming_ = false;
    state_ = State::closed;
}

void SmtpClient::on_timeout() {
    const char* what = "a reply";
    if (state_ == State::greeting) what = "the greeting";
    if (state_ == State::transaction && !expected_.empty()) {
        switch (expected_.front().first) {
            case Expect::mail: what = "the MAIL reply"; break;
            case Expect::rcpt: what = "the RCPT reply"; break;
            case Expect::data: what = "the DATA reply"; break;
            case Expect::data_end:
            case Expect::dot_only: what = "the reply to the message"; break;
            case Expect::rset: what = "the RSET reply"; break;
        }
    }
    fail_session(421, std::string("4.4.2 Timeout waiting for ") + what);
}

void SmtpClient::connection_lost() { fail_session(421, "4.4.2 Connection lost"); }

}  // namespace rp::smtp
