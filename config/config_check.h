// config/config_check.h: cross-field validation of parsed Settings.
//
// Checks what one key alone cannot: listener addresses parse and are not repeated, TLS
// listeners have a certificate (or self_signed), users belong to configured domains,
// buffer counts are powers of two within core/limits.h, and so on.
#pragma once

#include <string>

#include "config/settings.h"
#include "core/result.h"

namespace rp::config {

// Status::invalid with a message naming the file, line (when known) and key.
[[nodiscard]] Status config_check(const Settings& settings, std::string* error);

// Parses "192.0.2.0/24" or "2001:db8::/32" (a bare address is a /32 or /128).
[[nodiscard]] bool cidr_valid(const std::string& text);

}  // namespace rp::config
