#include "core/checksum.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace rp {
namespace {

// Proves the CRC32C matches the published check value and the RFC 3720 B.4 vectors.
TEST(Checksum, KnownVectors) {
    EXPECT_EQ(crc32c("123456789", 9), 0xE3069283u);
    std::vector<unsigned char> zeros(32, 0x00);
    EXPECT_EQ(crc32c(zeros.data(), zeros.size()), 0x8A9136AAu);
    std::vector<unsigned char> ones(32, 0xFF);
    EXPECT_EQ(crc32c(ones.data(), ones.size()), 0x62A8AB43u);
    EXPECT_EQ(crc32c("", 0), 0u);
}

// Proves that extending a checksum piece by piece equals one pass, at every split point.
TEST(Checksum, ExtendEqualsOnePass) {
    std::string text;
    for (int i = 0; i < 300; ++i) text.push_back(static_cast<char>(i * 7 + 3));
    const auto whole = crc32c(text.data(), text.size());
    for (std::size_t split = 0; split <= text.size(); ++split) {
        const auto first = crc32c_extend(0, text.data(), split);
        EXPECT_EQ(crc32c_extend(first, text.data() + split, text.size() - split), whole);
    }
}

}  // namespace
}  // namespace rp
