// tests/sim/store_harness.h: small helpers shared by the storage tests.
#pragma once

#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "core/sync_io.h"
#include "storage/mail_store.h"

namespace rp::storage::test {

struct TempDir {
    std::string path;
    TempDir() {
        char tmpl[] = "/tmp/rp_storage_XXXXXX";
        const char* p = ::mkdtemp(tmpl);
        RP_ASSERT(p != nullptr);
        path = p;
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
    std::string shard(int n) const { return path + "/shard-" + std::to_string(n); }
};

inline StoreOptions options_for(const std::string& dir, std::uint16_t shard = 0,
                                std::uint32_t segment_bytes = 1u << 20) {
    StoreOptions o;
    o.dir = dir;
    o.shard = shard;
    o.segment_bytes = segment_bytes;
    return o;
}

// Drives flushes to completion with an Io whose run_pending() delivers completions.
template <typename IoT>
Status flush_all(MailStore& store, IoT& io) {
    struct Done final : FlushDone {
        Status status = Status::ok;
        bool called = false;
        void flush_done(Status s) override {
            status = s;
            called = true;
        }
    } done;
    for (;;) {
        const Status s = store.flush(&done);
        if (s == Status::again) return Status::ok;
        if (s == Status::busy) {
            io.run_pending();
            continue;
        }
        if (s != Status::ok) return s;
        done.called = false;
        while (!done.called && io.run_pending() > 0) {
        }
        if (!done.called) return Status::cancelled;  // Crashed underneath.
        if (done.status != Status::ok) return done.status;
    }
}

inline std::string body_string(const MailStore& store, BodyRef ref) {
    auto handle = store.body_open(ref);
    if (!handle) return "<" + std::string(status_name(handle.status())) + ">";
    std::string out(handle->bytes, '\0');
    const Status s = body_read_blocking(*handle, {reinterpret_cast<std::byte*>(out.data()), out.size()});
    if (s != Status::ok) return "<" + std::string(status_name(s)) + ">";
    return out;
}

inline std::span<const std::byte> bytes_of(const std::string& s) {
    return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

// Appends a whole message (body + delivery) in one transaction and returns its UID.
inline Result<std::uint32_t> put_message(MailStore& store, std::string_view account,
                                         std::string_view mailbox, const std::string& body,
                                         DeliveryKey key = {}, std::int64_t date = 1700000000) {
    store.txn_begin();
    auto ref = store.body_put(bytes_of(body));
    if (!ref) {
        (void)store.txn_commit();
        return ref.status();
    }
    MailStore::AppendArgs args;
    args.body = *ref;
    args.size = body.size();
    args.internal_date = date;
    auto uid = store.deliver(account, mailbox, key, args);
    auto end = store.txn_commit();
    if (!end) return end.status();
    return uid;
}

}  // namespace rp::storage::test
