// protocols/common/login_checker.h: the one password check of POP3 and IMAP logins.
//
// Owns: AccountChecker (one per shard) owns the password checks in flight on its shard: a
//   ticket per check waiting for the HashPool, and a timer per failed check waiting out its
//   throttle delay. PlaintextPasswords (tests, and factories built without a checker) owns
//   its deferred answers.
// Core: the shard's thread only, except the HashPool's `done`, which runs on a helper thread
//   and only posts the result back to the shard (Shard::post_external), where the ticket
//   finds the check again (a check cancelled meanwhile is simply not found).
// Flow: the same accounts as SMTP AUTH (auth::AccountDb: the accounts file plus the config's
//   [[user]] entries, replaced on SIGHUP). argon2id runs on the HashPool; an unknown user is
//   verified against a dummy hash, so it takes as long and is refused the same way. A failure
//   is answered after the throttle's growing delay (auth.failure_delay_ms, doubling up to
//   auth.failure_delay_max_ms); a client address with auth.failures_max failures in the
//   window is refused at once with Status::permission (the session closes).
// Plaintext: USER/PASS, AUTH PLAIN, LOGIN and AUTHENTICATE PLAIN need TLS, unless
//   auth.plaintext_loopback and the client is on 127.0.0.0/8 or ::1 (as SMTP AUTH).
// Errors: every answer comes through PasswordCheckDone::password_checked, never inside
//   check(): ok, refused (unknown user or wrong password), permission (this address is over
//   its failure limit), full (the hash pool's queue is full: try again later).
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <deque>
#include <list>
#include <memory>
#include <string_view>
#include <unordered_map>

#include "core/reactor.h"
#include "core/result.h"
#include "protocols/auth/account_db.h"
#include "protocols/auth/auth_pool.h"
#include "protocols/smtp/routing.h"

namespace rp {
class Shard;
}

namespace rp::mail {

class PasswordCheckDone {
public:
    virtual void password_checked(Status status) = 0;

protected:
    ~PasswordCheckDone() = default;
};

struct LoginAttempt {
    std::string_view user;                   // As the client sent it.
    std::string_view password;
    const smtp::Account* account = nullptr;  // The Directory's entry for `user`, if any.
    std::uint64_t client_key = 0;            // auth::AuthThrottle::key_of(peer); 0: unknown.
};

// True for 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104.
bool is_loopback(const sockaddr_storage& peer);

class PasswordChecker {
public:
    virtual ~PasswordChecker() = default;
    // Answers `done` on this shard, never inside the call, unless cancel(done) comes first.
    virtual void check(const LoginAttempt& attempt, PasswordCheckDone& done) = 0;
    virtual void cancel(PasswordCheckDone& done) = 0;
    // May a client at `peer` log in with a plaintext password before TLS?
    virtual bool plaintext_allowed(const sockaddr_storage& peer) const = 0;

    // A check without the client's address (no per-address limit, no delay).
    void check(const smtp::Account& account, std::string_view password, PasswordCheckDone& done) {
        check(LoginAttempt{account.address, password, &account, 0}, done);
    }
};

// Compares with the plaintext password of the Directory's account (constant time),
// answering from a Reactor::defer. Allows plaintext logins from loopback.
class PlaintextPasswords final : public PasswordChecker, private Deferred {
public:
    explicit PlaintextPasswords(Reactor& reactor) : reactor_(reactor) {}
    using PasswordChecker::check;
    void check(const LoginAttempt& attempt, PasswordCheckDone& done) override;
    void cancel(PasswordCheckDone& done) override;
    bool plaintext_allowed(const sockaddr_storage& peer) const override {
        return is_loopback(peer);
    }

private:
    void on_deferred() override;
    Reactor& reactor_;
    std::deque<std::pair<PasswordCheckDone*, Status>> answers_;
};

// What an AccountChecker checks against; the pool and throttle are process-wide (they
// outlive the shards), the account table is replaced on SIGHUP.
struct LoginContext {
    auth::HashPool* pool = nullptr;
    auth::AuthThrottle* throttle = nullptr;
    std::shared_ptr<const auth::AccountDb> accounts;
    bool plaintext_loopback = false;
};

class AccountChecker final : public PasswordChecker, private Deferred {
public:
    AccountChecker(Shard& shard, LoginContext context);
    ~AccountChecker() override;
    AccountChecker(const AccountChecker&) = delete;
    AccountChecker& operator=(const AccountChecker&) = delete;

    using PasswordChecker::check;
    void check(const LoginAttempt& attempt, PasswordCheckDone& done) override;
    void cancel(PasswordCheckDone& done) override;
    bool plaintext_allowed(const sockaddr_storage& peer) const override {
        return context_.plaintext_loopback && is_loopback(peer);
    }
    // SIGHUP: new accounts and switches for the checks that start from now on.
    void set_context(LoginContext context);

    std::size_t in_flight() const { return pending_.size() + delayed_.size() + answers_.size(); }

private:
    struct Pending {
        PasswordCheckDone* done;
        std::uint64_t client_key;
    };
    struct Delayed final : Timer {
        AccountChecker* checker = nullptr;
        PasswordCheckDone* done = nullptr;
        Status status = Status::refused;
        void on_timer() override;
    };

    // The helper thread's answer, on this shard's thread.
    void verified(std::uint64_t ticket, bool match);
    void answer_later(PasswordCheckDone* done, Status status);
    void on_deferred() override;
    std::uint64_t now_seconds() const;

    Shard& shard_;
    LoginContext context_;
    std::unordered_map<std::uint64_t, Pending> pending_;
    std::uint64_t next_ticket_ = 1;
    std::list<Delayed> delayed_;
    std::deque<std::pair<PasswordCheckDone*, Status>> answers_;
    // Outlives this checker in the closures posted by helper threads: they look the checker
    // up through it, and find null once it is gone.
    std::shared_ptr<AccountChecker*> self_;
};

}  // namespace rp::mail
