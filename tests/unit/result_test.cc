#include "core/result.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>

namespace rp {
namespace {

// Proves Result carries either a value or a non-ok Status, and moves its value out.
TEST(Result, ValueOrStatus) {
    Result<std::string> good(std::string("hello"));
    ASSERT_TRUE(good.ok());
    EXPECT_EQ(*good, "hello");
    Result<std::string> bad(Status::corrupt);
    EXPECT_FALSE(bad.ok());
    EXPECT_EQ(bad.status(), Status::corrupt);
    EXPECT_EQ(status_name(bad.status()), "corrupt");

    Result<std::unique_ptr<int>> owned(std::make_unique<int>(7));
    std::unique_ptr<int> taken = std::move(owned).value();
    EXPECT_EQ(*taken, 7);
}

// Proves assignment between value and status states keeps the right alternative.
TEST(Result, Assignment) {
    Result<std::string> r(Status::not_found);
    r = Result<std::string>(std::string("x"));
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(*r, "x");
    r = Result<std::string>(Status::io);
    EXPECT_EQ(r.status(), Status::io);
}

}  // namespace
}  // namespace rp
