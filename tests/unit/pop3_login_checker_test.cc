// tests/unit/pop3_login_checker_test.cc: the POP3/IMAP password checker
// (protocols/common/login_checker.h) on a real one-shard engine with a real HashPool:
// answers always come back on the shard and never inside check(), the throttle refuses an
// address over its limit, cancel() silences an answer, SIGHUP's set_context() takes effect,
// a full hash pool is Status::full, and is_loopback() knows 127/8, ::1 and v4-mapped 127/8.
#include "protocols/common/login_checker.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <thread>
#include <vector>

#include "core/shard.h"
#include "engine_test_util.h"
#include "protocols/auth/password.h"

namespace rp::mail {
namespace {

using namespace std::chrono_literals;

// Records the answer; `inside` is set while check() runs, to prove answers come later.
struct Answer final : PasswordCheckDone {
    std::promise<Status> promise;
    bool answered = false;
    bool during_check = false;
    bool* inside = nullptr;
    void password_checked(Status status) override {
        during_check = inside != nullptr && *inside;
        answered = true;
        promise.set_value(status);
    }
};

struct Local final : ShardLocal {
    std::unique_ptr<AccountChecker> checker;
};

class LoginCheckerTest : public ::testing::Test {
protected:
    void SetUp() override {
        test::require_io_uring();
        auth::ThrottleOptions throttle;
        throttle.failures_max = 2;
        throttle.window_s = 600;
        throttle.delay_base_ms = 1;
        throttle.delay_max_ms = 4;
        throttle_ = std::make_unique<auth::AuthThrottle>(throttle);
        pool_ = std::make_unique<auth::HashPool>(1, 16);
        auto db = std::make_shared<auth::AccountDb>();
        ASSERT_EQ(db->put("plain@example.test", "{plain}pw"), Status::ok);
        auth::HashCost cheap;
        cheap.memory_kib = 64;
        cheap.passes = 1;
        auto hash = auth::password_hash("secret", cheap);
        ASSERT_TRUE(hash.ok());
        ASSERT_EQ(db->put("hashed@example.test", hash.value()), Status::ok);
        accounts_ = db;
        EngineOptions options;
        options.cores = 1;
        options.pin_cores = false;
        options.ring_entries = 256;
        options.recv_buffer_count = 64;
        options.recv_buffer_bytes = 4096;
        options.sessions_per_shard = 16;
        std::string error;
        auto engine = Engine::create(
            options,
            [this](Shard& shard) {
                auto local = std::make_unique<Local>();
                local->checker = std::make_unique<AccountChecker>(shard, context(true));
                checker_ = local->checker.get();
                shard.own(std::move(local));
                return Status::ok;
            },
            &error);
        ASSERT_TRUE(engine.ok()) << error;
        engine_ = std::move(engine.value());
    }

    void TearDown() override {
        if (engine_) {
            engine_->request_stop();
            engine_->wait();
        }
        pool_.reset();  // Its threads post to the shard: stop them before the engine goes.
        engine_.reset();
    }

    LoginContext context(bool plaintext_loopback) {
        LoginContext c;
        c.pool = pool_.get();
        c.throttle = throttle_.get();
        c.accounts = accounts_;
        c.plaintext_loopback = plaintext_loopback;
        return c;
    }

    template <typename F>
    void on_shard(F work) {
        std::promise<void> done;
        engine_->shard(0).post_external([&](Shard&) {
            work();
            done.set_value();
        });
        ASSERT_EQ(done.get_future().wait_for(10s), std::future_status::ready);
    }

    // One check from `key`, answered within 10 s.
    Status check(std::string_view user, std::string_view password, std::uint64_t key) {
        Answer answer;
        bool inside = false;
        answer.inside = &inside;
        auto future = answer.promise.get_future();
        on_shard([&] {
            inside = true;
            checker_->check(LoginAttempt{user, password, nullptr, key}, answer);
            inside = false;
        });
        EXPECT_EQ(future.wait_for(10s), std::future_status::ready);
        EXPECT_FALSE(answer.during_check);
        return future.get();
    }

    std::unique_ptr<auth::AuthThrottle> throttle_;
    std::unique_ptr<auth::HashPool> pool_;
    std::shared_ptr<const auth::AccountDb> accounts_;
    std::unique_ptr<Engine> engine_;
    AccountChecker* checker_ = nullptr;
};

// Proves the verdicts: {plain} and argon2id credentials, any case of the address, a wrong
// password and an unknown user refused; every answer arrives after check() returned.
TEST_F(LoginCheckerTest, Verdicts) {
    EXPECT_EQ(check("plain@example.test", "pw", 1), Status::ok);
    EXPECT_EQ(check("Hashed@Example.TEST", "secret", 2), Status::ok);
    EXPECT_EQ(check("hashed@example.test", "Secret", 3), Status::refused);
    EXPECT_EQ(check("nobody@example.test", "pw", 4), Status::refused);
}

// Proves the throttle: the failure that reaches failures_max is answered with permission,
// and from then on that address is refused even with the right password; other addresses
// (and checks without an address) are not affected.
TEST_F(LoginCheckerTest, ThrottlePerAddress) {
    EXPECT_EQ(check("plain@example.test", "bad", 7), Status::refused);
    EXPECT_EQ(check("nobody@example.test", "bad", 7), Status::permission);
    EXPECT_EQ(check("plain@example.test", "pw", 7), Status::permission);
    EXPECT_EQ(check("plain@example.test", "pw", 8), Status::ok);
    EXPECT_EQ(check("plain@example.test", "bad", 0), Status::refused);
    EXPECT_EQ(check("plain@example.test", "bad", 0), Status::refused);
    EXPECT_EQ(check("plain@example.test", "pw", 0), Status::ok);
}

// Proves cancel(): a check cancelled while it waits for the pool never answers, and the
// checker forgets it once the pool's answer comes back; later checks still answer.
TEST_F(LoginCheckerTest, CancelSilencesTheAnswer) {
    Answer pending;
    on_shard([&] {
        checker_->check(LoginAttempt{"plain@example.test", "pw", nullptr, 11}, pending);
        checker_->cancel(pending);
    });
    // The pool answers in order: the cancelled check comes back before this one.
    EXPECT_EQ(check("plain@example.test", "pw", 13), Status::ok);
    on_shard([&] {
        EXPECT_FALSE(pending.answered);
        EXPECT_EQ(checker_->in_flight(), 0u);
    });
}

// Proves set_context() (SIGHUP): a new account table applies to the next check.
TEST_F(LoginCheckerTest, NewAccountsApply) {
    EXPECT_EQ(check("carol@example.test", "pw1", 21), Status::refused);
    auto db = std::make_shared<auth::AccountDb>(*accounts_);
    ASSERT_EQ(db->put("carol@example.test", "{plain}pw1"), Status::ok);
    accounts_ = db;
    on_shard([&] { checker_->set_context(context(true)); });
    EXPECT_EQ(check("carol@example.test", "pw1", 22), Status::ok);
}

// Proves a full hash pool (1 thread, 1 queued job) answers Status::full, never queues more.
TEST_F(LoginCheckerTest, FullPoolIsFull) {
    auth::HashPool small(1, 1);
    LoginContext tight = context(true);
    tight.pool = &small;
    on_shard([&] { checker_->set_context(tight); });
    std::vector<std::unique_ptr<Answer>> answers;
    std::vector<std::future<Status>> futures;
    for (int i = 0; i < 4; ++i) {
        answers.push_back(std::make_unique<Answer>());
        futures.push_back(answers.back()->promise.get_future());
    }
    // The pool's one thread is held busy until every check was submitted, so the outcome
    // does not depend on how fast it runs: one check queues, the others find it full.
    std::promise<void> gate;
    std::shared_future<void> opened = gate.get_future().share();
    ASSERT_EQ(small.submit("{plain}x", "x", [opened](bool) { opened.wait(); }), Status::ok);
    on_shard([&] {
        for (auto& a : answers) {
            checker_->check(LoginAttempt{"plain@example.test", "pw", nullptr, 31}, *a);
        }
    });
    gate.set_value();
    int full = 0;
    for (auto& f : futures) {
        ASSERT_EQ(f.wait_for(10s), std::future_status::ready);
        const Status s = f.get();
        EXPECT_TRUE(s == Status::ok || s == Status::full) << status_name(s);
        full += s == Status::full ? 1 : 0;
    }
    EXPECT_GE(full, 2);  // At most one job runs and one waits.
    on_shard([&] { checker_->set_context(context(true)); });
}

// Proves is_loopback() (the plaintext switch uses it): 127/8, ::1 and v4-mapped 127/8 only.
TEST(LoginCheckerPlaintext, LoopbackOnlyWhenEnabled) {
    sockaddr_storage v4{};
    auto* a = reinterpret_cast<sockaddr_in*>(&v4);
    a->sin_family = AF_INET;
    ASSERT_EQ(inet_pton(AF_INET, "127.0.0.9", &a->sin_addr), 1);
    sockaddr_storage v6{};
    auto* b = reinterpret_cast<sockaddr_in6*>(&v6);
    b->sin6_family = AF_INET6;
    ASSERT_EQ(inet_pton(AF_INET6, "::1", &b->sin6_addr), 1);
    sockaddr_storage mapped{};
    auto* c = reinterpret_cast<sockaddr_in6*>(&mapped);
    c->sin6_family = AF_INET6;
    ASSERT_EQ(inet_pton(AF_INET6, "::ffff:127.0.0.1", &c->sin6_addr), 1);
    sockaddr_storage remote{};
    auto* d = reinterpret_cast<sockaddr_in*>(&remote);
    d->sin_family = AF_INET;
    ASSERT_EQ(inet_pton(AF_INET, "192.0.2.1", &d->sin_addr), 1);
    EXPECT_TRUE(is_loopback(v4));
    EXPECT_TRUE(is_loopback(v6));
    EXPECT_TRUE(is_loopback(mapped));
    EXPECT_FALSE(is_loopback(remote));
}

}  // namespace
}  // namespace rp::mail
