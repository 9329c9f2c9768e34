// protocols/smtp/smtp_server.cc: see smtp_server.h.
#include "protocols/smtp/smtp_server.h"

#include <algorithm>
#include <charconv>

#include "core/assert.h"
#include "protocols/auth/sasl.h"
#include "protocols/common/reply_table.h"

namespace rp::smtp {

namespace {

using rp::protocols::DataStep;
using rp::protocols::LineKind;
using rp::protocols::LineStep;

// Replies that carry no variable text.
constexpr std::string_view reply_ok = "250 2.0.0 Ok";
constexpr std::string_view reply_mail_ok = "250 2.1.0 Ok";
constexpr std::string_view reply_rcpt_ok = "250 2.1.5 Ok";
constexpr std::string_view reply_bye = "221 2.0.0 Bye";
constexpr std::string_view reply_data_go = "354 End data with <CR><LF>.<CR><LF>";
constexpr std::string_view reply_vrfy =
    "252 2.0.0 Cannot VRFY user, but will accept message and attempt delivery";
constexpr std::string_view reply_help =
    "214 2.0.0 Commands: HELO EHLO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP STARTTLS";
constexpr std::string_view reply_unknown = "500 5.5.2 Error: command not recognized";
constexpr std::string_view reply_too_long = "500 5.5.2 Error: line too long";
constexpr std::string_view reply_bare_lf = "500 5.5.2 Error: bare <LF> received";
constexpr std::string_view reply_not_impl = "502 5.5.1 Error: command not implemented";
constexpr std::string_view reply_need_helo = "503 5.5.1 Error: send HELO/EHLO first";
constexpr std::string_view reply_need_ehlo = "503 5.5.1 Error: send EHLO first";
constexpr std::string_view reply_nested_mail = "503 5.5.1 Error: nested MAIL command";
constexpr std::string_view reply_need_mail = "503 5.5.1 Error: need MAIL command";
constexpr std::string_view reply_need_rcpt = "503 5.5.1 Error: need RCPT command";
constexpr std::string_view reply_in_transaction = "503 5.5.1 Error: MAIL transaction in progress";
constexpr std::string_view reply_data_after_bdat = "503 5.5.1 Error: DATA after BDAT";
constexpr std::string_view reply_auth_disabled = "503 5.5.1 Error: authentication not enabled";
constexpr std::string_view reply_no_valid_rcpt = "554 5.5.1 Error: no valid recipients";
constexpr std::string_view reply_bad_sender = "501 5.1.7 Bad sender address syntax";
constexpr std::string_view reply_bad_rcpt = "501 5.1.3 Bad recipient address syntax";
constexpr std::string_view reply_need_utf8 =
    "553 5.6.7 Error: SMTPUTF8 is required for a non-ASCII address";
constexpr std::string_view reply_size_refused =
    "552 5.3.4 Error: message size exceeds fixed limit";
constexpr std::string_view reply_too_big = "552 5.3.4 Error: message file too big";
constexpr std::string_view reply_too_many_rcpt = "452 4.5.3 Error: too many recipients";
constexpr std::string_view reply_tls_go = "220 2.0.0 Ready to start TLS";
constexpr std::string_view reply_tls_none = "454 4.7.0 TLS not available";
constexpr std::string_view reply_tls_again = "554 5.5.1 Error: TLS already active";
constexpr std::string_view reply_storage = "452 4.3.1 Insufficient system storage";
constexpr std::string_view reply_auth_ok = "235 2.7.0 Authentication successful";
constexpr std::string_view reply_auth_bad = "535 5.7.8 Error: authentication failed";
constexpr std::string_view reply_auth_temporary = "454 4.7.0 Temporary authentication failure";
constexpr std::string_view reply_auth_need_tls =
    "538 5.7.11 Encryption required for requested authentication mechanism";
constexpr std::string_view reply_auth_again = "503 5.5.1 Error: already authenticated";
constexpr std::string_view reply_auth_mechanism = "504 5.5.4 Unrecognized authentication type";
constexpr std::string_view reply_auth_base64 = "501 5.5.2 Cannot decode response";
constexpr std::string_view reply_auth_malformed = "501 5.5.2 Invalid authentication response";
constexpr std::string_view reply_auth_cancelled = "501 5.7.0 Authentication cancelled";
constexpr std::string_view reply_auth_required = "530 5.7.0 Authentication required";

std::string_view usage(SmtpVerb verb) {
    switch (verb) {
        case SmtpVerb::helo: return "501 5.5.4 Syntax: HELO hostname";
        case SmtpVerb::ehlo: return "501 5.5.4 Syntax: EHLO hostname";
        case SmtpVerb::mail: return "501 5.5.4 Syntax: MAIL FROM:<address>";
        case SmtpVerb::rcpt: return "501 5.5.4 Syntax: RCPT TO:<address>";
        case SmtpVerb::data: return "501 5.5.4 Syntax: DATA";
        case SmtpVerb::bdat: return "501 5.5.4 Syntax: BDAT count [LAST]";
        case SmtpVerb::rset: return "501 5.5.4 Syntax: RSET";
        case SmtpVerb::quit: return "501 5.5.4 Syntax: QUIT";
        case SmtpVerb::vrfy: return "501 5.5.4 Syntax: VRFY address";
        case SmtpVerb::expn: return "501 5.5.4 Syntax: EXPN mailing-list";
        case SmtpVerb::starttls: return "501 5.5.4 Syntax: STARTTLS";
        case SmtpVerb::auth: return "501 5.5.4 Syntax: AUTH mechanism";
        default: return "501 5.5.4 Syntax error in parameters or arguments";
    }
}

void append_u64(std::string& out, std::uint64_t value) {
    char text[24];
    const auto r = std::to_chars(text, text + sizeof(text), value);
    out.append(text, r.ptr);
}

void append_2digits(std::string& out, unsigned value) {
    out.push_back(static_cast<char>('0' + value / 10));
    out.push_back(static_cast<char>('0' + value % 10));
}

// RFC 5322 3.3 date-time in UTC: "Tue, 14 Nov 2023 22:13:20 +0000".
void append_rfc5322_date(std::string& out, std::int64_t unix_seconds) {
    static constexpr std::string_view days[] = {"Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"};
    static constexpr std::string_view months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                  "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    std::int64_t day_count = unix_seconds / 86400;
    std::int64_t second_of_day = unix_seconds % 86400;
    if (second_of_day < 0) {
        second_of_day += 86400;
        day_count -= 1;
    }
    // H. Hinnant's civil_from_days.
    const std::int64_t z = day_count + 719468;
    const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const auto doe = static_cast<unsigned>(z - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    const unsigned day = doy - (153 * mp + 2) / 5 + 1;
    const unsigned month = mp < 10 ? mp + 3 : mp - 9;
    const std::int64_t year = static_cast<std::int64_t>(yoe) + era * 400 + (month <= 2 ? 1 : 0);
    const std::int64_t weekday = ((day_count % 7) + 7) % 7;
    out.append(days[weekday]);
    out.append(", ");
    append_u64(out, day);
    out.push_back(' ');
    out.append(months[month - 1]);
    out.push_back(' ');
    append_u64(out, static_cast<std::uint64_t>(std::max<std::int64_t>(year, 0)));
    out.push_back(' ');
    const auto sod = static_cast<unsigned>(second_of_day);
    append_2digits(out, sod / 3600);
    out.push_back(':');
    append_2digits(out, sod / 60 % 60);
    out.push_back(':');
    append_2digits(out, sod % 60);
    out.append(" +0000");
}

}  // namespace

QueueId QueueId::from(std::string_view s) {
    RP_ASSERT(!s.empty());
    RP_ASSERT(s.size() <= bytes_max);
    QueueId id;
    for (std::size_t k = 0; k < s.size(); ++k) {
        RP_ASSERT(s[k] > ' ' && s[k] < 127);
        id.text[k] = s[k];
    }
    id.bytes = static_cast<std::uint8_t>(s.size());
    return id;
}

Status SmtpHost::mail_check(const SmtpEnvelope& /*envelope*/) { return Status::ok; }
Status SmtpHost::auth_begin(const SmtpAuthRequest& /*request*/) { return Status::unsupported; }
std::string SmtpHost::auth_scram_keys(std::string_view /*user*/) { return {}; }

SmtpServer::SmtpServer(const SmtpServerConfig& config, SmtpHost& host,
                       const SmtpSessionInfo& session)
    : config_(config),
      host_(host),
      line_reader_(config.line_bytes_max),
      client_address_(session.client_address),
      client_name_(session.client_name),
      tls_active_(session.tls_active),
      tls_available_(session.tls_available),
      auth_available_(session.auth_available),
      auth_plaintext_(session.auth_plaintext) {
    RP_ASSERT(config.line_bytes_max >= 512);
    RP_ASSERT(config.line_bytes_max <= limits::smtp_line_bytes_max);
    RP_ASSERT(config.recipients_max >= 1);
    RP_ASSERT(config.recipients_max <= limits::smtp_recipients_max);
    RP_ASSERT(config.message_bytes_max > 0);
    RP_ASSERT(!config.hostname.empty());
}

SmtpServer::~SmtpServer() {
    // The driver must report a lost connection before destroying a session mid-message.
    RP_ASSERT(!message_open_);
}

void SmtpServer::greet() {
    RP_ASSERT(state_ == State::fresh);
    state_ = State::command;
    reply_with_host("220", "ESMTP ringpost");
}

void SmtpServer::refuse(Status reason) {
    RP_ASSERT(state_ == State::fresh);
    const auto parts = rp::protocols::smtp_close_reply_for(reason);
    reply_with_host(parts.codes, parts.text);
    state_ = State::closed;
}

std::size_t SmtpServer::feed(std::span<const std::byte> input) {
    RP_ASSERT(state_ != State::fresh);
    std::size_t used = 0;
    while (used < input.size()) {
        std::size_t step = 0;
        if (state_ == State::command) {
            if (output_blocked()) break;
            step = feed_command(input.subspan(used));
        } else if (state_ == State::data) {
            step = feed_data(input.subspan(used));
        } else if (state_ == State::bdat) {
            step = feed_bdat(input.subspan(used));
        } else {
            break;  // Paused or closed.
        }
        // bounds: every step consumes at most the rest of the input.
        RP_ASSERT(step <= input.size() - used);
        used += step;
    }
    RP_ASSERT(used == input.size() || paused() || wants_close() || output_blocked());
    return used;
}

void SmtpServer::take_output(std::string& out) {
    if (out.empty()) {
        out.swap(output_);
    } else {
        out.append(output_);
    }
    output_.clear();
}

SmtpTimeoutKind SmtpServer::timeout_kind() const {
    switch (state_) {
        case State::data:
        case State::bdat:
            return SmtpTimeoutKind::data;
        case State::wait_message_done:
        case State::wait_tls:
        case State::wait_auth:
            return SmtpTimeoutKind::none;
        default:
            return SmtpTimeoutKind::command;
    }
}

// ---- input ----

std::size_t SmtpServer::feed_command(std::span<const std::byte> input) {
    const LineStep step = line_reader_.next(input);
    switch (step.kind) {
        case LineKind::need_more:
            break;
        case LineKind::too_long:
            counters_.long_lines++;
            reply(reply_too_long);
            protocol_error();
            break;
        case LineKind::bare_lf:
            // Never execute a command framed by a bare LF (strict CRLF framing).
            counters_.bare_lf_commands++;
            reply(reply_bare_lf);
            protocol_error();
            break;
        case LineKind::line:
            handle_line(step.text);
            break;
    }
    return step.consumed;
}

std::size_t SmtpServer::feed_data(std::span<const std::byte> input) {
    const DataStep step = data_decoder_.next(input);
    if (!step.piece.empty()) {
        // bounds: a message is far below 2^64 bytes; pieces come from memory.
        message_bytes_ += step.piece.size();
        if (!message_failed_ && message_bytes_ > config_.message_bytes_max) {
            // Keep reading to the end of the data, then answer 552 (RFC 1870 6.3).
            too_big_ = true;
            message_failed_ = true;
            abort_message();
        }
        if (!message_failed_) host_.message_data(step.piece);
    }
    if (step.end) end_data();
    return step.consumed;
}

std::size_t SmtpServer::feed_bdat(std::span<const std::byte> input) {
    RP_ASSERT(bdat_remaining_ > 0);
    const std::size_t take =
        static_cast<std::size_t>(std::min<std::uint64_t>(bdat_remaining_, input.size()));
    bdat_remaining_ -= take;
    if (message_open_ && !message_failed_) {
        message_bytes_ += take;
        if (message_bytes_ > config_.message_bytes_max) {
            too_big_ = true;
            message_failed_ = true;
            abort_message();
        } else {
            host_.message_data(input.first(take));
        }
    }
    if (bdat_remaining_ == 0) end_bdat_chunk();
    return take;
}

void SmtpServer::handle_line(std::string_view line) {
    if (auth_step_ != AuthStep::none) return auth_continue(line);
    const SmtpCommand command = parse_command(line);
    if (command.verb == SmtpVerb::unknown) {
        counters_.syntax_errors++;
        reply(reply_unknown);
        protocol_error();
        return;
    }
    if (shutting_down_ && !have_sender_) {
        close_with_status(Status::cancelled);
        return;
    }
    if (command.syntax != SmtpSyntax::ok && command.verb != SmtpVerb::mail &&
        command.verb != SmtpVerb::rcpt) {
        counters_.syntax_errors++;
        reply(usage(command.verb));
        if (command.verb == SmtpVerb::bdat) {
            // The chunk length is unknown: its bytes would be read as commands. Close.
            state_ = State::closed;
            abort_message();
            return;
        }
        protocol_error();
        return;
    }
    handle_command(command);
}

void SmtpServer::handle_command(const SmtpCommand& command) {
    switch (command.verb) {
        case SmtpVerb::helo:
        case SmtpVerb::ehlo:
            do_helo(command);
            break;
        case SmtpVerb::mail:
            do_mail(command);
            break;
        case SmtpVerb::rcpt:
            do_rcpt(command);
            break;
        case SmtpVerb::data:
            do_data(command);
            break;
        case SmtpVerb::bdat:
            do_bdat(command);
            break;
        case SmtpVerb::rset:
            reset_transaction();
            reply(reply_ok);
            break;
        case SmtpVerb::noop:
            reply(reply_ok);
            break;
        case SmtpVerb::quit:
            abort_message();
            reply(reply_bye);
            state_ = State::closed;
            break;
        case SmtpVerb::vrfy:
            reply(reply_vrfy);  // RFC 5321 3.5.3: 252, no address harvesting.
            break;
        case SmtpVerb::expn:
            reply(reply_not_impl);
            break;
        case SmtpVerb::help:
            reply(reply_help);
            break;
        case SmtpVerb::starttls:
            do_starttls(command);
            break;
        case SmtpVerb::auth:
            do_auth(command);
            break;
        case SmtpVerb::unknown:
            RP_ASSERT(false);
    }
}

// ---- commands ----

void SmtpServer::do_helo(const SmtpCommand& command) {
    if (command.argument.size() > domain_bytes_max) {
        counters_.syntax_errors++;
        reply(usage(command.verb));
        protocol_error();
        return;
    }
    // RFC 5321 4.1.4: HELO/EHLO resets any transaction. The argument is not checked against
    // DNS; it is printable ASCII (parse_command), so it is safe in the Received: header.
    reset_transaction();
    helo_.assign(command.argument);
    esmtp_ = command.verb == SmtpVerb::ehlo;
    if (!esmtp_) {
        reply_with_host("250", "");
        return;
    }
    std::string& out = output_;
    out.append("250-");
    out.append(config_.hostname);
    out.append("\r\n250-PIPELINING\r\n250-SIZE ");
    append_u64(out, config_.message_bytes_max);
    out.append("\r\n");
    if (tls_available_ && !tls_active_) out.append("250-STARTTLS\r\n");
    if (auth_available_ && (tls_active_ || auth_plaintext_)) out.append("250-AUTH PLAIN LOGIN SCRAM-SHA-256\r\n");
    out.append(
        "250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 CHUNKING\r\n");
}

void SmtpServer::do_mail(const SmtpCommand& command) {
    if (helo_.empty()) return sequence_error(reply_need_helo);
    if (have_sender_) return sequence_error(reply_nested_mail);
    if (command.syntax != SmtpSyntax::ok) return param_error(command, reply_bad_sender);
    if (!esmtp_ && (command.has_size || command.has_body || command.smtputf8)) {
        // Service extensions exist only after EHLO (RFC 5321 4.1.1.11).
        SmtpCommand fake = command;
        fake.syntax = SmtpSyntax::unsupported_param;
        fake.bad_param = command.has_size ? "SIZE" : command.has_body ? "BODY" : "SMTPUTF8";
        return param_error(fake, reply_bad_sender);
    }
    if (command.address.utf8() && !command.smtputf8) return reply(reply_need_utf8);
    if (command.has_size && command.size > config_.message_bytes_max) {
        return reply(reply_size_refused);  // RFC 1870 6.2.
    }
    if (config_.auth_required && auth_user_.empty()) return reply(reply_auth_required);
    if (config_.sender_login_match && !auth_user_.empty() && !command.address.is_null()) {
        std::string_view from = command.address.text();
        bool same = from.size() == auth_user_.size();
        for (std::size_t i = 0; same && i < from.size(); ++i) {
            char a = from[i], b = auth_user_[i];
            if (a >= 'A' && a <= 'Z') a = static_cast<char>(a - 'A' + 'a');
            if (b >= 'A' && b <= 'Z') b = static_cast<char>(b - 'A' + 'a');
            same = a == b;
        }
        if (!same) {
            std::string text = "553 5.7.1 <";
            text.append(from);
            text.append(">: Sender address rejected: not owned by user ");
            text.append(auth_user_);
            return reply(text);
        }
    }
    sender_ = command.address;
    smtputf8_ = command.smtputf8;
    body_type_ = command.body;
    declared_bytes_ = command.has_size ? command.size : 0;
    have_sender_ = true;
    const Status status = host_.mail_check(envelope());
    if (status != Status::ok) {
        reset_transaction();
        reply(rp::protocols::smtp_reply_for(status));
        return;
    }
    reply(reply_mail_ok);
}

void SmtpServer::do_rcpt(const SmtpCommand& command) {
    if (!have_sender_) return sequence_error(reply_need_mail);
    if (command.syntax != SmtpSyntax::ok) return param_error(command, reply_bad_rcpt);
    if (command.address.utf8() && !smtputf8_) return reply(reply_need_utf8);
    if (recipients_.size() >= config_.recipients_max) {
        return reply(reply_too_many_rcpt);  // RFC 5321 4.5.3.1.10.
    }
    rcpt_attempt_count_++;
    const RcptVerdict verdict = host_.rcpt_verdict(envelope(), command.address);
    std::string_view text;
    switch (verdict) {
        case RcptVerdict::accept_local:
        case RcptVerdict::accept_relay:
            recipients_.push_back(SmtpRecipient{command.address, verdict});
            reply(reply_rcpt_ok);
            return;
        case RcptVerdict::no_such_user:
            text = "550 5.1.1 <";
            break;
        case RcptVerdict::relay_denied:
            text = "554 5.7.1 <";
            break;
        case RcptVerdict::temporary:
            text = "451 4.3.0 <";
            break;
        case RcptVerdict::storage_full:
            counters_.recipients_rejected++;
            return reply(reply_storage);
    }
    counters_.recipients_rejected++;
    output_.append(text);
    output_.append(command.address.text());
    switch (verdict) {
        case RcptVerdict::no_such_user:
            output_.append(">: Recipient address rejected: User unknown\r\n");
            break;
        case RcptVerdict::relay_denied:
            output_.append(">: Relay access denied\r\n");
            break;
        default:
            output_.append(">: Temporary lookup failure\r\n");
            break;
    }
}

bool SmtpServer::check_ready_for_data() {
    if (!have_sender_) {
        sequence_error(reply_need_mail);
        return false;
    }
    if (recipients_.empty()) {
        // RFC 2920 3.1: with pipelining, all RCPTs may have failed: 554, not 503.
        if (rcpt_attempt_count_ > 0) {
            reply(reply_no_valid_rcpt);
        } else {
            sequence_error(reply_need_rcpt);
        }
        return false;
    }
    return true;
}

void SmtpServer::do_data(const SmtpCommand& /*command*/) {
    if (bdat_used_) return sequence_error(reply_data_after_bdat);
    if (!check_ready_for_data()) return;
    const Status status = begin_message();
    if (status != Status::ok) {
        reset_transaction();
        reply(rp::protocols::smtp_reply_for(status));
        return;
    }
    reply(reply_data_go);
    data_decoder_.reset();
    state_ = State::data;
}

void SmtpServer::do_bdat(const SmtpCommand& command) {
    // RFC 3030 2: the chunk is always read, whatever the reply to it will be.
    bdat_remaining_ = command.chunk_bytes;
    bdat_chunk_bytes_ = command.chunk_bytes;
    bdat_last_ = command.last;
    bdat_error_ = {};
    if (!have_sender_) {
        bdat_error_ = reply_need_mail;
    } else if (recipients_.empty()) {
        bdat_error_ = rcpt_attempt_count_ > 0 ? reply_no_valid_rcpt : reply_need_rcpt;
    } else if (!bdat_used_) {
        bdat_used_ = true;
        const Status status = begin_message();
        if (status != Status::ok) {
            bdat_error_ = rp::protocols::smtp_reply_for(status);
            bdat_reset_ = true;
        }
    }
    if (!bdat_error_.empty() && bdat_error_.substr(0, 3) == "503") {
        counters_.sequence_errors++;
    }
    if (bdat_remaining_ == 0) {
        end_bdat_chunk();
    } else {
        state_ = State::bdat;
    }
}

void SmtpServer::do_starttls(const SmtpCommand& /*command*/) {
    if (tls_active_) return reply(reply_tls_again);
    if (!tls_available_) return reply(reply_tls_none);
    if (have_sender_) return sequence_error(reply_in_transaction);
    reply(reply_tls_go);
    state_ = State::wait_tls;
}

void SmtpServer::do_auth(const SmtpCommand& command) {
    if (!esmtp_) return sequence_error(reply_need_ehlo);
    if (have_sender_) return sequence_error(reply_in_transaction);
    if (!auth_available_) return sequence_error(reply_auth_disabled);
    if (!auth_user_.empty()) return sequence_error(reply_auth_again);
    // RFC 4954 4: AUTH mechanism [initial-response].
    std::string_view argument = command.argument;
    std::size_t space = argument.find(' ');
    std::string_view mechanism = argument.substr(0, space);
    std::string_view initial =
        space == std::string_view::npos ? std::string_view() : argument.substr(space + 1);
    auto equals = [](std::string_view a, std::string_view b) {
        if (a.size() != b.size()) return false;
        for (std::size_t i = 0; i < a.size(); ++i) {
            char c = a[i];
            if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
            if (c != b[i]) return false;
        }
        return true;
    };
    const bool plain = equals(mechanism, "PLAIN");
    const bool login = equals(mechanism, "LOGIN");
    const bool scram = equals(mechanism, rp::auth::scram_mechanism);
    if (!plain && !login && !scram) return reply(reply_auth_mechanism);
    if (!tls_active_ && !auth_plaintext_) return reply(reply_auth_need_tls);
    if (space != std::string_view::npos && initial.empty()) {
        counters_.syntax_errors++;
        return reply(reply_auth_base64);
    }
    if (plain || scram) {
        if (initial.empty()) {
            auth_step_ = plain ? AuthStep::plain : AuthStep::scram_first;
            return reply("334 ");
        }
        return plain ? auth_plain(initial) : scram_first(initial);
    }
    if (initial.empty()) {
        auth_step_ = AuthStep::login_user;
        output_.append("334 ").append(rp::auth::sasl_login_user_prompt).append("\r\n");
        return;
    }
    auth_step_ = AuthStep::login_user;
    auth_continue(initial);
}

// A line in the middle of a SASL exchange: a base64 response, or "*" to cancel.
void SmtpServer::auth_continue(std::string_view line) {
    const AuthStep step = auth_step_;
    auth_step_ = AuthStep::none;
    if (line == "*") {
        auth_reset();
        auth_pending_user_.clear();
        return reply(reply_auth_cancelled);
    }
    if (step == AuthStep::plain) return auth_plain(line);
    if (step == AuthStep::scram_first) return scram_first(line);
    if (step == AuthStep::scram_final) return scram_final(line);
    if (step == AuthStep::scram_ack) {
        // The client checked our signature (RFC 5802 3) and sends an empty response.
        auth_user_ = auth_pending_user_;
        auth_pending_user_.clear();
        auth_reset();
        return reply(reply_auth_ok);
    }
    if (rp::auth::base64_decode(line, auth_scratch_) != Status::ok) {
        counters_.syntax_errors++;
        auth_reset();
        return reply(reply_auth_base64);
    }
    if (rp::auth::sasl_login_field_check(auth_scratch_) != Status::ok) {
        counters_.syntax_errors++;
        auth_reset();
        return reply(reply_auth_malformed);
    }
    if (step == AuthStep::login_user) {
        auth_login_name_ = auth_scratch_;
        auth_step_ = AuthStep::login_password;
        output_.append("334 ").append(rp::auth::sasl_login_password_prompt).append("\r\n");
        return;
    }
    RP_ASSERT(step == AuthStep::login_password);
    auth_submit("LOGIN", {}, auth_login_name_, auth_scratch_);
}

void SmtpServer::auth_plain(std::string_view response) {
    if (rp::auth::base64_decode(response, auth_scratch_) != Status::ok) {
        counters_.syntax_errors++;
        auth_reset();
        return reply(reply_auth_base64);
    }
    auto plain = rp::auth::sasl_plain_parse(auth_scratch_);
    if (!plain) {
        counters_.syntax_errors++;
        auth_reset();
        return reply(reply_auth_malformed);
    }
    auth_submit("PLAIN", plain->authzid, plain->authcid, plain->password);
}

void SmtpServer::auth_submit(std::string_view mechanism, std::string_view authzid,
                             std::string_view user, std::string_view password) {
    // Acting for another identity is not supported (RFC 4616 2: the server may refuse).
    if (!authzid.empty() && authzid != user) {
        auth_reset();
        return reply(reply_auth_bad);
    }
    SmtpAuthRequest request;
    request.mechanism = mechanism;
    request.authzid = authzid;
    request.user = user;
    request.password = password;
    auth_pending_user_.assign(user);
    const Status status = host_.auth_begin(request);
    auth_reset();
    if (status == Status::ok) {
        state_ = State::wait_auth;
        return;
    }
    if (status == Status::refused) {
        reply_with_host("421 4.7.0", "Error: too many authentication failures");
        state_ = State::closed;
        return;
    }
    reply(reply_auth_temporary);
}

// SCRAM step 1: client-first-message in, server-first-message out (a 334 challenge).
void SmtpServer::scram_first(std::string_view response) {
    if (rp::auth::base64_decode(response, auth_scratch_) != Status::ok) {
        counters_.syntax_errors++;
        auth_reset();
        return reply(reply_auth_base64);
    }
    scram_ = std::make_unique<rp::auth::ScramServer>();
    if (scram_->client_first(auth_scratch_) != Status::ok) {
        counters_.syntax_errors++;
        auth_reset();
        return reply(reply_auth_malformed);
    }
    auto keys = rp::auth::scram_credential_parse(host_.auth_scram_keys(scram_->user()));
    std::string challenge = scram_->server_first(keys ? &keys.value() : nullptr);
    std::string encoded;
    rp::auth::base64_encode(challenge, encoded);
    output_.append("334 ").append(encoded).append("\r\n");
    auth_step_ = AuthStep::scram_final;
}

// SCRAM step 2: client-final-message in; the verdict goes to the host like a password check.
void SmtpServer::scram_final(std::string_view response) {
    RP_ASSERT(scram_ != nullptr);
    bool verified = false;
    if (rp::auth::base64_decode(response, auth_scratch_) != Status::ok) {
        counters_.syntax_errors++;
        auth_reset();
        return reply(reply_auth_base64);
    }
    if (scram_->client_final(auth_scratch_, &verified) != Status::ok) {
        counters_.syntax_errors++;
        auth_reset();
        return reply(reply_auth_malformed);
    }
    SmtpAuthRequest request;
    request.mechanism = rp::auth::scram_mechanism;
    request.user = scram_->user();
    request.verified = verified;
    auth_pending_user_.assign(request.user);
    const Status status = host_.auth_begin(request);
    for (char& c : auth_scratch_) c = 0;
    auth_scratch_.clear();
    if (status == Status::ok) {
        state_ = State::wait_auth;  // auth_done() sends the signature or the failure.
        return;
    }
    auth_reset();
    auth_pending_user_.clear();
    if (status == Status::refused) {
        reply_with_host("421 4.7.0", "Error: too many authentication failures");
        state_ = State::closed;
        return;
    }
    reply(reply_auth_temporary);
}

// Wipes what the exchange decoded (passwords).
void SmtpServer::auth_reset() {
    if (scram_ != nullptr) scram_->reset();
    scram_.reset();
    for (char& c : auth_scratch_) c = 0;
    for (char& c : auth_login_name_) c = 0;
    auth_scratch_.clear();
    auth_login_name_.clear();
    auth_step_ = AuthStep::none;
}

void SmtpServer::auth_done(SmtpAuthOutcome outcome) {
    if (state_ == State::closed) return;
    RP_ASSERT(state_ == State::wait_auth);
    state_ = State::command;
    if (outcome == SmtpAuthOutcome::success && scram_ != nullptr) {
        // RFC 4954 4: success data goes in a 334; 235 follows the client's empty line.
        std::string encoded;
        rp::auth::base64_encode(scram_->server_final(), encoded);
        output_.append("334 ").append(encoded).append("\r\n");
        auth_step_ = AuthStep::scram_ack;
        return;  // auth_pending_user_ stays until the ack.
    }
    auth_reset();
    switch (outcome) {
        case SmtpAuthOutcome::success:
            auth_user_ = auth_pending_user_;
            reply(reply_auth_ok);
            break;
        case SmtpAuthOutcome::bad:
            reply(reply_auth_bad);
            break;
        case SmtpAuthOutcome::temporary:
            reply(reply_auth_temporary);
            break;
        case SmtpAuthOutcome::throttled:
            reply_with_host("421 4.7.0", "Error: too many authentication failures");
            state_ = State::closed;
            break;
    }
    auth_pending_user_.clear();
}

// ---- message ----

Status SmtpServer::begin_message() {
    RP_ASSERT(!message_open_);
    RP_ASSERT(!recipients_.empty());
    Result<QueueId> id = host_.message_begin(envelope());
    if (!id) return id.status();
    queue_id_ = *id;
    message_open_ = true;
    message_failed_ = false;
    too_big_ = false;
    message_bytes_ = 0;
    emit_received_header();
    return Status::ok;
}

// RFC 5321 4.4 trace header, protocol names per RFC 3848 and RFC 6531.
void SmtpServer::emit_received_header() {
    std::string& r = received_;
    r.clear();
    r.append("Received: from ");
    r.append(helo_);
    r.append(" (");
    r.append(client_name_.empty() ? std::string_view("unknown") : client_name_);
    r.append(" [");
    r.append(client_address_);
    r.append("])\r\n\tby ");
    r.append(config_.hostname);
    r.append(" (ringpost) with ");
    r.append(smtputf8_ ? "UTF8SMTP" : esmtp_ ? "ESMTP" : "SMTP");
    if (tls_active_ && (esmtp_ || smtputf8_)) r.push_back('S');
    if (!auth_user_.empty() && (esmtp_ || smtputf8_)) r.push_back('A');  // RFC 3848.
    r.append(" id ");
    r.append(queue_id_.view());
    if (recipients_.size() == 1) {
        r.append("\r\n\tfor <");
        r.append(recipients_.front().address.text());
        r.append(">; ");
    } else {
        r.append(";\r\n\t");
    }
    append_rfc5322_date(r, host_.now_unix_seconds());
    r.append("\r\n");
    host_.message_data(std::as_bytes(std::span<const char>(r.data(), r.size())));
}

void SmtpServer::end_data() {
    RP_ASSERT(state_ == State::data);
    state_ = State::command;
    if (message_failed_) {
        reply(too_big_ ? reply_too_big : rp::protocols::smtp_reply_for(Status::io));
        reset_transaction();
        return;
    }
    finish_message(false);
}

void SmtpServer::end_bdat_chunk() {
    state_ = State::command;
    if (!bdat_error_.empty()) {
        reply(bdat_error_);
        if (bdat_reset_) reset_transaction();
        bdat_reset_ = false;
        bdat_error_ = {};
        return;
    }
    if (message_failed_) {
        // RFC 3030 2: the transaction failed; later chunks of the pipeline get 503.
        reply(reply_too_big);
        reset_transaction();
        return;
    }
    if (bdat_last_) {
        finish_message(true);
        return;
    }
    output_.append("250 2.0.0 Ok: ");
    append_u64(output_, bdat_chunk_bytes_);
    output_.append(" octets received\r\n");
}

void SmtpServer::finish_message(bool chunked) {
    RP_ASSERT(message_open_);
    SmtpMessageInfo info;
    info.body_bytes = message_bytes_ + received_.size();
    info.bare_line_end_count = chunked ? 0 : data_decoder_.bare_line_end_count();
    info.chunked = chunked;
    message_open_ = false;
    state_ = State::wait_message_done;
    host_.message_end(info);  // May call message_done() before it returns.
}

void SmtpServer::message_done(Status status) {
    if (state_ == State::closed) {
        reset_transaction();
        return;  // Timed out or lost meanwhile: nobody to answer.
    }
    RP_ASSERT(state_ == State::wait_message_done);
    RP_ASSERT(!message_open_);
    state_ = State::command;
    if (status == Status::ok) {
        counters_.messages_accepted++;
        output_.append("250 2.0.0 Ok: queued as ");
        output_.append(queue_id_.view());
        output_.append("\r\n");
    } else {
        reply(rp::protocols::smtp_reply_for(status));
    }
    reset_transaction();
    if (shutting_down_) close_with_status(Status::cancelled);
}

void SmtpServer::tls_started() {
    RP_ASSERT(state_ == State::wait_tls);
    RP_ASSERT(!tls_active_);
    // RFC 3207 4.2: forget everything learnt before TLS; EHLO again.
    tls_active_ = true;
    line_reader_.reset();
    reset_transaction();
    helo_.clear();
    esmtp_ = false;
    auth_user_.clear();
    auth_reset();
    state_ = State::command;
}

// ---- session end ----

void SmtpServer::on_timeout() {
    if (state_ == State::closed) return;
    abort_message();
    close_with_status(Status::timeout);
}

void SmtpServer::begin_shutdown() {
    shutting_down_ = true;
    if (state_ == State::fresh) {
        state_ = State::closed;
    } else if (state_ == State::command && !have_sender_) {
        close_with_status(Status::cancelled);
    }
    // Otherwise the transaction finishes; message_done() or the next command closes.
}

void SmtpServer::connection_lost() {
    abort_message();
    state_ = State::closed;
    output_.clear();
}

// ---- helpers ----

void SmtpServer::abort_message() {
    if (!message_open_) return;
    message_open_ = false;
    host_.message_abort();
}

void SmtpServer::reset_transaction() {
    abort_message();
    have_sender_ = false;
    sender_ = SmtpAddress();
    smtputf8_ = false;
    body_type_ = SmtpBodyType::seven_bit;
    declared_bytes_ = 0;
    recipients_.clear();
    if (recipients_.capacity() > 64) std::vector<SmtpRecipient>().swap(recipients_);
    rcpt_attempt_count_ = 0;
    message_failed_ = false;
    too_big_ = false;
    bdat_used_ = false;
    message_bytes_ = 0;
}

void SmtpServer::sequence_error(std::string_view line) {
    counters_.sequence_errors++;
    reply(line);
    protocol_error();
}

void SmtpServer::param_error(const SmtpCommand& command, std::string_view bad_address) {
    counters_.syntax_errors++;
    switch (command.syntax) {
        case SmtpSyntax::bad_address:
            reply(bad_address);
            break;
        case SmtpSyntax::unsupported_param:
            output_.append("555 5.5.4 Unsupported option: ");
            output_.append(command.bad_param);
            output_.append("\r\n");
            break;
        case SmtpSyntax::bad_param_value:
            output_.append("501 5.5.4 Bad parameter value: ");
            output_.append(command.bad_param);
            output_.append("\r\n");
            break;
        default:
            reply(usage(command.verb));
            break;
    }
    protocol_error();
}

void SmtpServer::protocol_error() {
    error_count_++;
    if (error_count_ >= config_.errors_max && state_ != State::closed) {
        abort_message();
        close_with_status(Status::refused);  // 421 4.7.0 too many errors.
    }
}

void SmtpServer::reply(std::string_view line) {
    output_.append(line);
    output_.append("\r\n");
}

void SmtpServer::reply_with_host(std::string_view codes, std::string_view text) {
    output_.append(codes);
    output_.push_back(' ');
    output_.append(config_.hostname);
    if (!text.empty()) {
        output_.push_back(' ');
        output_.append(text);
    }
    output_.append("\r\n");
}

void SmtpServer::close_with_status(Status reason) {
    const auto parts = rp::protocols::smtp_close_reply_for(reason);
    reply_with_host(parts.codes, parts.text);
    state_ = State::closed;
}

SmtpEnvelope SmtpServer::envelope() const {
    SmtpEnvelope e;
    e.helo = helo_;
    e.client_address = client_address_;
    e.esmtp = esmtp_;
    e.tls = tls_active_;
    e.smtputf8 = smtputf8_;
    e.body = body_type_;
    e.declared_bytes = declared_bytes_;
    e.sender = &sender_;
    e.recipients = recipients_;
    e.auth_user = auth_user_;
    return e;
}

}  // namespace rp::smtp
