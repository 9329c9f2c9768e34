// protocols/auth/sasl.cc: see sasl.h.
#include "protocols/auth/sasl.h"

#include <array>

#include "core/assert.h"

namespace rp::auth {
namespace {

constexpr char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

constexpr std::array<signed char, 256> decode_table() {
    std::array<signed char, 256> table{};
    for (auto& v : table) v = -1;
    for (int i = 0; i < 64; ++i) table[static_cast<unsigned char>(alphabet[i])] = static_cast<signed char>(i);
    return table;
}

constexpr auto table = decode_table();

}  // namespace

Status base64_decode(std::string_view text, std::string& out) {
    out.clear();
    if (text == "=") return Status::ok;
    if (text.empty() || text.size() % 4 != 0) return Status::invalid;
    // bounds: every 4 characters decode to at most 3 bytes.
    if (text.size() / 4 * 3 > sasl_response_bytes_max + 2) return Status::too_big;
    out.reserve(text.size() / 4 * 3);
    for (std::size_t i = 0; i < text.size(); i += 4) {
        int v[4];
        int pad = 0;
        for (int k = 0; k < 4; ++k) {
            char c = text[i + static_cast<std::size_t>(k)];
            if (c == '=') {
                // Padding only in the last group, and only at its end (RFC 4648 3.3).
                if (i + 4 != text.size() || k < 2) return Status::invalid;
                ++pad;
                v[k] = 0;
                continue;
            }
            if (pad > 0) return Status::invalid;
            v[k] = table[static_cast<unsigned char>(c)];
            if (v[k] < 0) return Status::invalid;
        }
        unsigned bits = (static_cast<unsigned>(v[0]) << 18) | (static_cast<unsigned>(v[1]) << 12) |
                        (static_cast<unsigned>(v[2]) << 6) | static_cast<unsigned>(v[3]);
        out.push_back(static_cast<char>((bits >> 16) & 0xff));
        if (pad < 2) out.push_back(static_cast<char>((bits >> 8) & 0xff));
        if (pad < 1) out.push_back(static_cast<char>(bits & 0xff));
        // Non-canonical encodings (stray low bits before padding) are refused.
        if (pad == 2 && (bits & 0xffff) != 0) return Status::invalid;
        if (pad == 1 && (bits & 0xff) != 0) return Status::invalid;
    }
    if (out.size() > sasl_response_bytes_max) return Status::too_big;
    return Status::ok;
}

void base64_encode(std::string_view bytes, std::string& out) {
    out.clear();
    out.reserve((bytes.size() + 2) / 3 * 4);
    for (std::size_t i = 0; i < bytes.size(); i += 3) {
        unsigned b0 = static_cast<unsigned char>(bytes[i]);
        unsigned b1 = i + 1 < bytes.size() ? static_cast<unsigned char>(bytes[i + 1]) : 0;
        unsigned b2 = i + 2 < bytes.size() ? static_cast<unsigned char>(bytes[i + 2]) : 0;
        unsigned bits = (b0 << 16) | (b1 << 8) | b2;
        out.push_back(alphabet[(bits >> 18) & 63]);
        out.push_back(alphabet[(bits >> 12) & 63]);
        out.push_back(i + 1 < bytes.size() ? alphabet[(bits >> 6) & 63] : '=');
        out.push_back(i + 2 < bytes.size() ? alphabet[bits & 63] : '=');
    }
}

Result<SaslPlain> sasl_plain_parse(std::string_view message) {
    std::size_t first = message.find('\0');
    if (first == std::string_view::npos) return Status::invalid;
    std::size_t second = message.find('\0', first + 1);
    if (second == std::string_view::npos) return Status::invalid;
    if (message.find('\0', second + 1) != std::string_view::npos) return Status::invalid;
    SaslPlain plain;
    plain.authzid = message.substr(0, first);
    plain.authcid = message.substr(first + 1, second - first - 1);
    plain.password = message.substr(second + 1);
    if (plain.authcid.empty() || plain.password.empty()) return Status::invalid;
    if (plain.authzid.size() > sasl_field_bytes_max || plain.authcid.size() > sasl_field_bytes_max ||
        plain.password.size() > sasl_field_bytes_max) {
        return Status::invalid;
    }
    RP_ASSERT(plain.authcid.find('\0') == std::string_view::npos);
    return plain;
}

Status sasl_login_field_check(std::string_view field) {
    if (field.empty() || field.size() > sasl_field_bytes_max) return Status::invalid;
    if (field.find('\0') != std::string_view::npos) return Status::invalid;
    return Status::ok;
}

}  // namespace rp::auth
