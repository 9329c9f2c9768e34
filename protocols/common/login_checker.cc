// protocols/common/login_checker.cc: see login_checker.h.
#include "protocols/common/login_checker.h"

#include <netinet/in.h>

#include <algorithm>
#include <string>
#include <utility>

#include "core/log.h"
#include "core/shard.h"

namespace rp::mail {
namespace {

bool same_constant_time(std::string_view a, std::string_view b) {
    unsigned char diff = a.size() == b.size() ? 0 : 1;
    const std::size_t n = std::max(a.size(), b.size());
    for (std::size_t i = 0; i < n; ++i) {
        const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
        const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
        diff = static_cast<unsigned char>(diff | (x ^ y));
    }
    return diff == 0;
}

}  // namespace

bool is_loopback(const sockaddr_storage& peer) {
    if (peer.ss_family == AF_INET) {
        const auto* v4 = reinterpret_cast<const sockaddr_in*>(&peer);
        return (ntohl(v4->sin_addr.s_addr) >> 24) == 127;
    }
    if (peer.ss_family == AF_INET6) {
        const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&peer);
        if (IN6_IS_ADDR_LOOPBACK(&v6->sin6_addr)) return true;
        return IN6_IS_ADDR_V4MAPPED(&v6->sin6_addr) && v6->sin6_addr.s6_addr[12] == 127;
    }
    return false;
}

// ---- PlaintextPasswords ----

void PlaintextPasswords::check(const LoginAttempt& attempt, PasswordCheckDone& done) {
    const bool ok = attempt.account != nullptr && !attempt.account->password.empty() &&
                    same_constant_time(attempt.account->password, attempt.password);
    answers_.emplace_back(&done, ok ? Status::ok : Status::refused);
    reactor_.defer(*this);
}

void PlaintextPasswords::cancel(PasswordCheckDone& done) {
    for (auto& answer : answers_) {
        if (answer.first == &done) answer.first = nullptr;
    }
}

void PlaintextPasswords::on_deferred() {
    std::size_t count = answers_.size();
    while (count-- > 0) {
        auto [done, status] = answers_.front();
        answers_.pop_front();
        if (done != nullptr) done->password_checked(status);
    }
    if (!answers_.empty()) reactor_.defer(*this);
}

// ---- AccountChecker ----

AccountChecker::AccountChecker(Shard& shard, LoginContext context)
    : shard_(shard), context_(std::move(context)), self_(std::make_shared<AccountChecker*>(this)) {
    RP_ASSERT(context_.pool != nullptr);
    RP_ASSERT(context_.throttle != nullptr);
}

AccountChecker::~AccountChecker() {
    *self_ = nullptr;  // Answers still coming from helper threads find no checker.
    for (Delayed& d : delayed_) shard_.reactor().timer_cancel(d);
}

void AccountChecker::set_context(LoginContext context) {
    RP_ASSERT(context.pool != nullptr);
    RP_ASSERT(context.throttle != nullptr);
    context_ = std::move(context);
}

std::uint64_t AccountChecker::now_seconds() const {
    return static_cast<std::uint64_t>(shard_.reactor().clock().wall_seconds());
}

void AccountChecker::check(const LoginAttempt& attempt, PasswordCheckDone& done) {
    if (attempt.client_key != 0 && context_.throttle->blocked(attempt.client_key, now_seconds())) {
        answer_later(&done, Status::permission);
        return;
    }
    const std::string* stored =
        context_.accounts != nullptr ? context_.accounts->find(smtp::ascii_lower(attempt.user))
                                     : nullptr;
    const std::uint64_t ticket = next_ticket_++;
    Shard* shard = &shard_;
    std::shared_ptr<AccountChecker*> self = self_;
    // Runs on a helper thread; the result goes back to this shard's thread.
    auto verified_done = [shard, self, ticket](bool match) {
        shard->post_external([self, ticket, match](Shard&) {
            if (*self != nullptr) (*self)->verified(ticket, match);
        });
    };
    Status status = context_.pool->submit(stored != nullptr ? *stored : std::string(),
                                          std::string(attempt.password), std::move(verified_done));
    if (status != Status::ok) {
        answer_later(&done, Status::full);
        return;
    }
    pending_.emplace(ticket, Pending{&done, attempt.client_key});
}

void AccountChecker::verified(std::uint64_t ticket, bool match) {
    auto it = pending_.find(ticket);
    if (it == pending_.end()) return;
    const Pending pending = it->second;
    pending_.erase(it);
    if (pending.done == nullptr) return;  // Cancelled.
    if (match) {
        pending.done->password_checked(Status::ok);
        return;
    }
    std::uint64_t delay_ms = context_.throttle->options().delay_base_ms;
    Status status = Status::refused;
    if (pending.client_key != 0) {
        const std::uint64_t now = now_seconds();
        delay_ms = context_.throttle->record_failure(pending.client_key, now);
        if (context_.throttle->blocked(pending.client_key, now)) status = Status::permission;
    }
    Delayed& d = delayed_.emplace_back();
    d.checker = this;
    d.done = pending.done;
    d.status = status;
    // bounds: delay_max_ms is at most a few seconds (config_check), far below 2^64 ns.
    shard_.reactor().timer_arm(d, delay_ms * 1'000'000u);
}

void AccountChecker::Delayed::on_timer() {
    AccountChecker* owner = checker;
    PasswordCheckDone* target = done;
    const Status answer = status;
    auto it = std::find_if(owner->delayed_.begin(), owner->delayed_.end(),
                           [this](const Delayed& d) { return &d == this; });
    RP_ASSERT(it != owner->delayed_.end());
    owner->delayed_.erase(it);  // Destroys this timer: use only the copies from here on.
    if (target != nullptr) target->password_checked(answer);
}

void AccountChecker::answer_later(PasswordCheckDone* done, Status status) {
    answers_.emplace_back(done, status);
    shard_.reactor().defer(*this);
}

void AccountChecker::on_deferred() {
    std::size_t count = answers_.size();
    while (count-- > 0) {
        auto [done, status] = answers_.front();
        answers_.pop_front();
        if (done != nullptr) done->password_checked(status);
    }
    if (!answers_.empty()) shard_.reactor().defer(*this);
}

void AccountChecker::cancel(PasswordCheckDone& done) {
    for (auto& entry : pending_) {
        if (entry.second.done == &done) entry.second.done = nullptr;
    }
    for (Delayed& d : delayed_) {
        if (d.done == &done) d.done = nullptr;
    }
    for (auto& answer : answers_) {
        if (answer.first == &done) answer.first = nullptr;
    }
}

}  // namespace rp::mail
