// tests/unit/engine_test_util.h: shared helpers of the engine unit tests.
#pragma once

#include <liburing.h>

#include <cstdio>
#include <cstdlib>

namespace rp::test {

// Tests that need io_uring exit 77 (ctest: skipped) when the kernel has none.
inline void require_io_uring() {
    io_uring ring;
    int rc = io_uring_queue_init(8, &ring, 0);
    if (rc < 0) {
        std::fprintf(stderr, "io_uring unavailable (%d): skipping\n", rc);
        std::exit(77);
    }
    io_uring_queue_exit(&ring);
}

}  // namespace rp::test
