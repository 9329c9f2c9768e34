#include "core/sync_io.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

namespace rp {
namespace {

struct Recorder final : IoCompletion {
    Status status = Status::cancelled;
    std::uint32_t bytes = 0;
    int calls = 0;
    void io_done(Status s, std::uint32_t b) override {
        status = s;
        bytes = b;
        ++calls;
    }
};

// Proves SyncIo writes, syncs and reads back, and delivers completions only from
// run_pending(), never inside the submitting call.
TEST(SyncIo, WriteSyncRead) {
    char path[] = "/tmp/rp_sync_io_XXXXXX";
    const int fd = mkstemp(path);
    ASSERT_GE(fd, 0);
    unlink(path);
    SyncIo io;
    std::string a = "hello ", b = "world";
    iovec iov[2] = {{a.data(), a.size()}, {b.data(), b.size()}};
    Recorder w, s, r;
    io.writev(fd, iov, 2, 0, w);
    io.fdatasync(fd, s);
    EXPECT_EQ(w.calls, 0);
    EXPECT_EQ(io.run_pending(), 2u);
    EXPECT_EQ(w.status, Status::ok);
    EXPECT_EQ(w.bytes, 11u);
    EXPECT_EQ(s.status, Status::ok);
    char buf[32] = {};
    io.read(fd, buf, sizeof buf, 0, r);
    io.run_pending();
    EXPECT_EQ(r.bytes, 11u);
    EXPECT_EQ(std::string(buf, r.bytes), "hello world");
    close(fd);
}

// Proves an errno becomes a Status: writing to a closed descriptor reports invalid.
TEST(SyncIo, ErrorsBecomeStatus) {
    SyncIo io;
    Recorder w;
    char x = 'x';
    iovec iov{&x, 1};
    io.writev(-1, &iov, 1, 0, w);
    io.run_pending();
    EXPECT_EQ(w.status, Status::invalid);
}

}  // namespace
}  // namespace rp
