// tests/fuzz/fuzz_segment.cc: segment bytes from disk never crash the reader.
//
// Each input is one segment file. It is scanned record by record (with resync after damage),
// every payload is decoded and applied to an index, the same bytes are tried as a snapshot,
// and finally the whole recovery runs on them (MailStore::open on a folder holding just this
// segment) and every body it serves is read. ASan/UBSan catch any read out of bounds.
#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <string>

#include "core/clock.h"
#include "core/sync_io.h"
#include "storage/index_snapshot.h"
#include "storage/mail_store.h"
#include "storage/segment.h"

using namespace rp;
using namespace rp::storage;

namespace {

void scan(std::span<const std::byte> bytes) {
    (void)segment_header_decode(bytes);
    MailboxIndex index(0);
    SegmentScanner scanner(bytes, segment_header_bytes);
    for (int guard = 0; guard < 100000; ++guard) {
        ScanItem item = scanner.next();
        if (item.kind == ScanItem::Kind::end) break;
        if (item.kind == ScanItem::Kind::bad) {
            if (!item.header_ok && !scanner.resync(item.offset + 8)) break;
            continue;
        }
        (void)index.apply(static_cast<RecordType>(item.header.type), item.payload, 1);
    }
    MailboxIndex snap(0);
    SnapshotMeta meta;
    (void)snapshot_decode(bytes, snap, meta);
}

void recover(const std::uint8_t* data, std::size_t size) {
    static const std::string dir = "/tmp/rp_fuzz_segment_" + std::to_string(::getpid());
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
    std::filesystem::create_directories(dir, ec);
    const std::string path = dir + "/" + segment_file_name(1);
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) return;
    if (::write(fd, data, size) != static_cast<ssize_t>(size)) {
        ::close(fd);
        return;
    }
    ::close(fd);
    SyncIo io;
    SimClock clock;
    StoreOptions options;
    options.dir = dir;
    options.segment_bytes = limits::segment_bytes_min;
    options.read_only = true;  // No fsync per input; the replay and damage logic is the same.
    auto store = MailStore::open(io, clock, options);
    if (!store) return;
    for (const auto& [id, body] : (*store)->index().bodies) {
        auto handle = (*store)->body_open({0, id});
        if (!handle || handle->bytes > (1u << 20)) continue;
        std::string out(handle->bytes, '\0');
        (void)body_read_blocking(*handle, {reinterpret_cast<std::byte*>(out.data()), out.size()});
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    scan({reinterpret_cast<const std::byte*>(data), size});
    recover(data, size);
    return 0;
}
