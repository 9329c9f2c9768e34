// tests/fuzz/fuzz_imap_parser.cc: the IMAP reader and command grammar.
//
// The first byte picks the chunk size and the literal policy; the rest is the client's byte
// stream. Invariants: never crash or trip an RP_ASSERT; the reader consumes all input in
// need_more steps; every command it returns parses or fails cleanly (and, when it parses,
// re-parsing gives the same verb and tag); feeding in chunks gives the same commands as
// feeding whole.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "protocols/imap/imap_parser.h"

namespace {

void check(bool ok) {
    if (!ok) std::abort();
}

std::vector<std::string> frame(std::string_view input, std::size_t chunk, bool stream) {
    rp::imap::ImapReader reader(512);
    std::vector<std::string> events;
    std::string pending;
    std::size_t pos = 0;
    for (;;) {
        std::size_t used = 0;
        for (;;) {
            const auto rest = std::as_bytes(std::span<const char>(pending)).subspan(used);
            const rp::imap::ReadStep step = reader.next(rest);
            check(step.consumed <= rest.size());
            used += step.consumed;
            if (step.kind == rp::imap::ReadKind::need_more) {
                check(used == pending.size());
                break;
            }
            switch (step.kind) {
                case rp::imap::ReadKind::command: {
                    events.emplace_back(step.text);
                    rp::imap::ImapCommand c;
                    const auto r = rp::imap::parse_command(step.text, c);
                    if (r.ok) {
                        rp::imap::ImapCommand again;
                        check(rp::imap::parse_command(step.text, again).ok);
                        check(again.verb == c.verb && again.tag == c.tag);
                    } else {
                        check(!r.error.empty());
                    }
                    break;
                }
                case rp::imap::ReadKind::literal:
                    events.push_back("L" + std::to_string(step.literal.bytes));
                    if (stream && step.literal.bytes < 4096) reader.literal_stream();
                    else if (step.literal.bytes <= reader.room()) reader.literal_inline();
                    else reader.literal_refuse();
                    break;
                case rp::imap::ReadKind::literal_data: events.back() += step.text; break;
                case rp::imap::ReadKind::literal_end: events.push_back("E"); break;
                case rp::imap::ReadKind::too_long: events.push_back("T"); break;
                case rp::imap::ReadKind::need_more: break;
            }
        }
        pending.erase(0, used);
        if (pos >= input.size()) break;
        const std::size_t take = chunk == 0 ? input.size() : std::min(chunk, input.size() - pos);
        pending.append(input.substr(pos, take));
        pos += take;
    }
    return events;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const std::uint8_t settings = data[0];
    const std::string_view input(reinterpret_cast<const char*>(data + 1), size - 1);
    const bool stream = (settings & 1) != 0;
    const std::vector<std::string> whole = frame(input, 0, stream);
    const std::size_t chunk = 1 + (settings >> 1) % 13;
    // Streamed literal data arrives in pieces that depend on the chunking: compare the
    // concatenation only, which the events hold.
    check(frame(input, chunk, stream) == whole);
    // The grammar alone, on the raw input as one command.
    rp::imap::ImapCommand c;
    (void)rp::imap::parse_command(input, c);
    rp::imap::SequenceSet set;
    (void)rp::imap::parse_sequence_set(input, set);
    std::int64_t t = 0;
    (void)rp::imap::parse_date_time(input, t);
    return 0;
}
