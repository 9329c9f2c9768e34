#include "core/assert.h"

#include <cstdio>
#include <cstdlib>

namespace rp {

void assert_fail(const char* expr, const char* file, int line) noexcept {
    std::fprintf(stderr, "ringpost: assertion failed: %s at %s:%d\n", expr, file, line);
    std::fflush(stderr);
    std::abort();
}

}  // namespace rp
