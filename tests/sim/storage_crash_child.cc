// tests/sim/storage_crash_child.cc: the victim of storage_crash_test.
//
// Opens the store in DIR, then appends messages numbered from the highest one present + 1,
// a few per group commit, and after each flush completes writes the durable numbers to
// stdout (one per line, unbuffered). It runs until killed.
#include <unistd.h>

#include <cstdio>
#include <string>

#include "core/clock.h"
#include "core/sync_io.h"
#include "tests/sim/store_harness.h"

using namespace rp;
using namespace rp::storage;

std::string crash_body(std::uint64_t id) {
    const std::size_t size = 100 + (id * 7919) % 30000;
    std::string s(size, '\0');
    for (std::size_t i = 0; i < size; ++i) s[i] = static_cast<char>((id * 131 + i * 17) & 0xff);
    return s;
}

int main(int argc, char** argv) {
    if (argc < 2) return 2;
    SyncIo io;
    RealClock& clock = RealClock::instance();
    auto opened = MailStore::open(io, clock, test::options_for(argv[1], 0, 1u << 20));
    if (!opened) return 3;
    MailStore& store = **opened;
    if (!store.account_exists("crash@x")) {
        if (store.account_create("crash@x") != Status::ok) return 4;
        if (test::flush_all(store, io) != Status::ok) return 5;
    }
    std::int64_t next = 1;
    if (auto msgs = store.messages("crash@x", "INBOX"); msgs && !msgs->empty()) {
        next = msgs->back().internal_date + 1;
    }
    for (unsigned round = 0;; ++round) {
        const unsigned batch = 1 + round % 8;
        std::string line;
        for (unsigned i = 0; i < batch; ++i, ++next) {
            auto uid = test::put_message(store, "crash@x", "INBOX", crash_body(static_cast<std::uint64_t>(next)),
                                         {}, next);
            if (!uid) return 6;
            line += std::to_string(next) + "\n";
        }
        if (test::flush_all(store, io) != Status::ok) return 7;
        // Durable: only now report the ids.
        if (::write(1, line.data(), line.size()) != static_cast<ssize_t>(line.size())) return 8;
    }
}
