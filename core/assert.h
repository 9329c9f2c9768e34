// core/assert.h: assertions that stay on in every build.
//
// RP_ASSERT guards our own invariants (bugs): a crash costs less than a corrupt mailbox.
// Never assert on bytes from a socket or a disk; validate them first.
#pragma once

namespace rp {

[[noreturn]] void assert_fail(const char* expr, const char* file, int line) noexcept;

}  // namespace rp

#define RP_ASSERT(cond)                                                 \
    do {                                                                \
        if (!(cond)) [[unlikely]] ::rp::assert_fail(#cond, __FILE__, __LINE__); \
    } while (0)

#ifdef RP_DEBUG_ASSERTS
#define RP_ASSERT_DEBUG(cond) RP_ASSERT(cond)
#else
#define RP_ASSERT_DEBUG(cond) \
    do {                      \
        (void)sizeof(cond);   \
    } while (0)
#endif
