#include "storage/segment.h"

#include <cstdio>
#include <algorithm>
#include <cstring>

#include "core/checksum.h"

namespace rp::storage {

SegmentHeader segment_header_make(std::uint16_t shard, std::uint32_t segment_id, std::int64_t created) {
    SegmentHeader h;
    h.shard = shard;
    h.segment_id = segment_id;
    h.created = created;
    h.crc = crc32c(&h, offsetof(SegmentHeader, crc));
    return h;
}

Result<SegmentHeader> segment_header_decode(std::span<const std::byte> bytes) {
    if (bytes.size() < sizeof(SegmentHeader)) return Status::truncated;
    SegmentHeader h;
    std::memcpy(&h, bytes.data(), sizeof h);
    if (h.magic != segment_magic) return Status::corrupt;
    if (h.crc != crc32c(&h, offsetof(SegmentHeader, crc))) return Status::corrupt;
    if (h.format_version != segment_format_version) return Status::unsupported;
    if (h.header_bytes != segment_header_bytes) return Status::corrupt;
    return h;
}

std::string segment_file_name(std::uint32_t segment_id) {
    char name[32];
    std::snprintf(name, sizeof name, "seg-%08u.log", segment_id);
    return name;
}

bool segment_file_parse(std::string_view name, std::uint32_t& segment_id) {
    if (name.size() != 16 || name.substr(0, 4) != "seg-" || name.substr(12) != ".log") {
        return false;
    }
    std::uint64_t id = 0;
    for (char c : name.substr(4, 8)) {
        if (c < '0' || c > '9') return false;
        id = id * 10 + static_cast<unsigned>(c - '0');
    }
    if (id == 0 || id > 0xffffffffu) return false;
    segment_id = static_cast<std::uint32_t>(id);
    return true;
}

SegmentScanner::SegmentScanner(std::span<const std::byte> bytes, std::uint32_t start_offset)
    : bytes_(bytes.size() > 0xffffffffu ? bytes.first(0xffffffffu) : bytes),
      pos_(start_offset) {
    if (pos_ > bytes_.size()) pos_ = static_cast<std::uint32_t>(bytes_.size());
}

bool SegmentScanner::zeros_to_end(std::uint32_t offset) const {
    // Cheap first: a record starts with its magic, so any zero-tail begins with 8 zero bytes.
    std::uint64_t word = 0;
    const std::size_t first = std::min<std::size_t>(sizeof word, bytes_.size() - offset);
    std::memcpy(&word, bytes_.data() + offset, first);
    if (word != 0) return false;
    static const std::byte zero_page[4096] = {};
    for (std::size_t at = offset; at < bytes_.size(); at += sizeof zero_page) {
        const std::size_t n = std::min(sizeof zero_page, bytes_.size() - at);
        if (std::memcmp(bytes_.data() + at, zero_page, n) != 0) return false;
    }
    return true;
}

ScanItem SegmentScanner::at(std::uint32_t offset) const {
    ScanItem item;
    item.offset = offset;
    if (offset >= bytes_.size()) {
        item.kind = ScanItem::Kind::end;
        item.next = offset;
        return item;
    }
    item.kind = ScanItem::Kind::bad;
    item.next = offset;
    if (offset % limits::record_alignment != 0) {
        item.error = Status::corrupt;
        return item;
    }
    if (zeros_to_end(offset)) {
        // Pre-written zeros (or a file extended with zeros): the records end here.
        item.kind = ScanItem::Kind::end;
        return item;
    }
    auto header = record_header_decode(bytes_.subspan(offset));
    if (!header) {
        item.error = header.status();
        // A header that is intact but whose payload runs past the end is a truncation.
        if (header.status() == Status::truncated && bytes_.size() - offset >= record_header_bytes) {
            RecordHeader h;
            std::memcpy(&h, bytes_.data() + offset, sizeof h);
            item.header = h;
        }
        return item;
    }
    item.header = *header;
    item.header_ok = true;
    // bounds: offset < size <= 2^32-1 and the record fits in the span (checked by decode);
    // the padded end may pass the span by < 8 bytes, clamp it.
    const std::uint64_t end = std::uint64_t{offset} + record_bytes(header->payload_bytes);
    item.next = static_cast<std::uint32_t>(end > bytes_.size() ? bytes_.size() : end);
    item.payload = bytes_.subspan(offset + record_header_bytes, header->payload_bytes);
    if (!record_payload_ok(*header, item.payload)) {
        item.error = Status::corrupt;
        item.payload = {};
        return item;
    }
    item.kind = ScanItem::Kind::record;
    return item;
}

ScanItem SegmentScanner::next() {
    ScanItem item = at(pos_);
    if (item.kind == ScanItem::Kind::record || (item.kind == ScanItem::Kind::bad && item.header_ok)) {
        pos_ = item.next;
    }
    return item;
}

bool SegmentScanner::resync(std::uint32_t from) {
    std::uint64_t off = (std::uint64_t{from} + 7u) & ~std::uint64_t{7};
    for (; off + record_header_bytes <= bytes_.size(); off += 8) {
        std::uint32_t magic;
        std::memcpy(&magic, bytes_.data() + off, sizeof magic);
        if (magic != record_magic) continue;
        ScanItem item = at(static_cast<std::uint32_t>(off));
        if (item.kind == ScanItem::Kind::record) {
            pos_ = static_cast<std::uint32_t>(off);
            return true;
        }
    }
    pos_ = static_cast<std::uint32_t>(bytes_.size());
    return false;
}

}  // namespace rp::storage
