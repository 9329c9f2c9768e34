// storage/segment.h: segment files, their header, and the record scanner.
//
// A segment is `seg-NNNNNNNN.log` in the shard's folder: a 64-byte header (magic, format
// version, shard id, segment id, header CRC) and then records from offset 64 on, 8-byte
// aligned. Only the owning shard appends; bytes below the durable watermark never change.
//
// SegmentScanner walks records in a byte span (a mapped file, or fuzz input). It never reads
// outside the span and never asserts on its content: damage comes back as a `bad` item that
// says where and why, and resync() finds the next intact record after it. Zero bytes from a
// record boundary to the end of the span are the end (segments are pre-written with zeros
// ahead of the tail: storage/log.h).
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "core/result.h"
#include "storage/record.h"

namespace rp::storage {

inline constexpr std::uint32_t segment_magic = 0x47535052u;  // "RPSG"
inline constexpr std::uint32_t segment_format_version = 1;
inline constexpr std::uint32_t segment_header_bytes = limits::segment_header_bytes;

struct SegmentHeader {
    std::uint32_t magic = segment_magic;
    std::uint32_t format_version = segment_format_version;
    std::uint32_t header_bytes = segment_header_bytes;
    std::uint16_t shard = 0;
    std::uint16_t reserved0 = 0;
    std::uint32_t segment_id = 0;
    std::uint32_t reserved1 = 0;
    std::int64_t created = 0;
    std::uint8_t reserved2[28] = {};
    std::uint32_t crc = 0;  // CRC32C of bytes [0,60).
};
static_assert(sizeof(SegmentHeader) == segment_header_bytes);

SegmentHeader segment_header_make(std::uint16_t shard, std::uint32_t segment_id, std::int64_t created);
// Status::truncated (too short), corrupt (magic, CRC), unsupported (version).
[[nodiscard]] Result<SegmentHeader> segment_header_decode(std::span<const std::byte> bytes);

std::string segment_file_name(std::uint32_t segment_id);
bool segment_file_parse(std::string_view name, std::uint32_t& segment_id);

struct ScanItem {
    enum class Kind : std::uint8_t { record, bad, end };
    Kind kind = Kind::end;
    std::uint32_t offset = 0;  // Where the record or the damage starts.
    std::uint32_t next = 0;    // Where the next record would start.
    RecordHeader header{};     // Valid for `record`, and for `bad` when header_ok.
    bool header_ok = false;    // A `bad` item whose header is intact (payload CRC failed).
    Status error = Status::ok; // corrupt, truncated or unsupported for `bad`.
    std::span<const std::byte> payload;
};

class SegmentScanner {
public:
    SegmentScanner(std::span<const std::byte> bytes, std::uint32_t start_offset);

    // The item at the current position; advances past records and past `bad` items whose
    // header is intact. After a `bad` item without a header, call resync().
    ScanItem next();
    // Moves to the first offset >= `from` (8-byte aligned) holding an intact record; returns
    // false (and moves to the end) when there is none.
    bool resync(std::uint32_t from);
    std::uint32_t position() const { return pos_; }
    std::uint32_t size() const { return static_cast<std::uint32_t>(bytes_.size()); }

private:
    ScanItem at(std::uint32_t offset) const;
    bool zeros_to_end(std::uint32_t offset) const;
    std::span<const std::byte> bytes_;
    std::uint32_t pos_;
};

}  // namespace rp::storage
