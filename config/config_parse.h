// config/config_parse.h: a TOML file -> Settings.
//
// Errors: one line naming the file, line and key ("ringpost.toml:12: engine.ring_entries:
//   expected an integer"). Unknown keys are errors (a typo must not silently fall back to a
//   default). After parsing, config_check() runs the cross-field checks.
// Start-up code only (toml++ without exceptions, TOML_EXCEPTIONS=0).
#pragma once

#include <string>
#include <string_view>

#include "config/settings.h"
#include "core/result.h"

namespace rp::config {

// Reads and checks `path`. Relative paths in the file resolve against the working directory.
[[nodiscard]] Result<Settings> parse_file(const std::string& path, std::string* error);
// Same for text in memory; `source_name` stands for the file in messages.
[[nodiscard]] Result<Settings> parse_text(std::string_view text, const std::string& source_name,
                                          std::string* error);

}  // namespace rp::config
