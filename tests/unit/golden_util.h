// tests/unit/golden_util.h: file and escape helpers shared by the golden transcript runners
// (smtp, pop3, imap). Each runner keeps its own unescaping, since their escape sets differ.
#pragma once

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace rp::testing::golden {

inline std::string read_file(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

// The value of one hex digit, or -1.
inline int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

}  // namespace rp::testing::golden
