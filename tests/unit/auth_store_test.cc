// tests/unit/auth_store_test.cc: argon2id hashes, the account file, the hash pool, throttle.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "protocols/auth/account_db.h"
#include "protocols/auth/auth_pool.h"
#include "protocols/auth/password.h"

namespace rp::auth {
namespace {

constexpr HashCost cheap{1024, 1, 1};  // Tests only: fast.

// Proves an argon2id hash verifies its password only, and plaintext works constant-time.
TEST(Password, HashAndVerify) {
    auto hash = password_hash("correct horse", cheap);
    ASSERT_TRUE(hash.ok());
    EXPECT_EQ(hash->rfind("$argon2id$", 0), 0u);
    EXPECT_TRUE(password_verify(*hash, "correct horse"));
    EXPECT_FALSE(password_verify(*hash, "correct horsf"));
    EXPECT_FALSE(password_verify(*hash, ""));
    auto again = password_hash("correct horse", cheap);
    EXPECT_NE(*again, *hash);  // Random salt.
    EXPECT_TRUE(password_verify("{plain}demo", "demo"));
    EXPECT_FALSE(password_verify("{plain}demo", "demo2"));
    EXPECT_FALSE(password_verify("garbage", "garbage"));
    EXPECT_FALSE(password_verify("$argon2id$v=19$m=1,t=1,p=1$bad$bad", "x"));
}

// Proves the accounts file round-trips, config users merge (the file wins), and bad lines
// are reported with file and line.
TEST(AccountDb, SaveLoadMerge) {
    auto folder = std::filesystem::temp_directory_path() / ("rp-acc-" + std::to_string(getpid()));
    std::filesystem::create_directories(folder);
    std::string path = folder / "accounts";
    std::string error;
    auto empty = AccountDb::load(path, &error);
    ASSERT_TRUE(empty.ok()) << error;  // Missing file: empty.
    AccountDb db;
    auto hash = password_hash("pw", cheap);
    ASSERT_EQ(db.put("Bob@Example.Test", *hash), Status::ok);
    EXPECT_EQ(db.put("not-an-address", *hash), Status::invalid);
    ASSERT_EQ(db.save(path, &error), Status::ok) << error;
    auto loaded = AccountDb::load(path, &error);
    ASSERT_TRUE(loaded.ok()) << error;
    ASSERT_NE(loaded->find("bob@example.test"), nullptr);
    EXPECT_EQ(*loaded->find("BOB@example.test"), *hash);
    config::UserSettings user;
    user.address = "bob@example.test";
    user.password = "config";
    config::UserSettings other;
    other.address = "demo@example.test";
    other.password = "demo";
    loaded->add_config_users({user, other});
    EXPECT_EQ(*loaded->find("bob@example.test"), *hash);
    EXPECT_EQ(*loaded->find("demo@example.test"), "{plain}demo");
    EXPECT_EQ(loaded->remove("bob@example.test"), Status::ok);
    EXPECT_EQ(loaded->remove("bob@example.test"), Status::not_found);
    std::ofstream(path) << "# comment\n\nbad line\n";
    EXPECT_FALSE(AccountDb::load(path, &error).ok());
    EXPECT_NE(error.find(":3:"), std::string::npos) << error;
    std::filesystem::remove_all(folder);
}

// Proves the pool verifies off the calling thread, answers unknown users false, and a full
// queue refuses instead of growing.
TEST(HashPool, VerifiesAndBounds) {
    HashPool pool(2, 4);
    auto hash = password_hash("pw", cheap);
    std::atomic<int> good{0}, bad{0}, done{0};
    auto caller = std::this_thread::get_id();
    std::atomic<bool> other_thread{true};
    auto record = [&](bool match) {
        if (std::this_thread::get_id() == caller) other_thread = false;
        (match ? good : bad)++;
        done++;
    };
    ASSERT_EQ(pool.submit(*hash, "pw", record), Status::ok);
    ASSERT_EQ(pool.submit(*hash, "nope", record), Status::ok);
    ASSERT_EQ(pool.submit("", "pw", record), Status::ok);
    for (int i = 0; i < 2000 && done < 3; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    EXPECT_EQ(done, 3);
    EXPECT_EQ(good, 1);
    EXPECT_EQ(bad, 2);
    EXPECT_TRUE(other_thread);
    int refused = 0;
    for (int i = 0; i < 50; ++i) {
        if (pool.submit(*hash, "pw", [](bool) {}) == Status::full) ++refused;
    }
    EXPECT_GT(refused, 0);
}

// Proves the throttle counts per address in a window, doubles the delay up to its cap,
// blocks at the limit, and forgets after the window.
TEST(AuthThrottle, CountsDelaysBlocks) {
    ThrottleOptions options;
    options.failures_max = 3;
    options.window_s = 60;
    options.delay_base_ms = 100;
    options.delay_max_ms = 300;
    AuthThrottle throttle(options);
    sockaddr_storage a{}, b{};
    reinterpret_cast<sockaddr_in*>(&a)->sin_family = AF_INET;
    reinterpret_cast<sockaddr_in*>(&a)->sin_addr.s_addr = htonl(0x7f000002);
    reinterpret_cast<sockaddr_in*>(&b)->sin_family = AF_INET;
    reinterpret_cast<sockaddr_in*>(&b)->sin_addr.s_addr = htonl(0x7f000003);
    auto ka = AuthThrottle::key_of(a), kb = AuthThrottle::key_of(b);
    EXPECT_EQ(throttle.record_failure(ka, 1000), 100u);
    EXPECT_EQ(throttle.record_failure(ka, 1001), 200u);
    EXPECT_FALSE(throttle.blocked(ka, 1001));
    EXPECT_EQ(throttle.record_failure(ka, 1002), 300u);
    EXPECT_TRUE(throttle.blocked(ka, 1002));
    EXPECT_FALSE(throttle.blocked(kb, 1002));
    EXPECT_FALSE(throttle.blocked(ka, 1000 + 61));
}

}  // namespace
}  // namespace rp::auth
