// Bounded fragment and SIP-over-TCP reassembly (see reassembly.hpp for the contracts).
#include "dataplane/reassembly.hpp"

#include <algorithm>

#include "common/x_list.hpp"
namespace tapwire::dataplane {

namespace {

detail::FlowKey make_key(const PacketInfo& info, std::uint32_t id, std::uint8_t proto) noexcept {
    detail::FlowKey k;
    std::memcpy(k.src, info.src_ip.bytes.data(), sizeof k.src);
    std::memcpy(k.dst, info.dst_ip.bytes.data(), sizeof k.dst);
    k.id = id;
    k.proto = proto;
    k.family = static_cast<std::uint8_t>(info.ip_family);
    return k;
}

// True when p[from, to) holds the empty line that ends a header section: LF then LF or
// CRLF. The buffer never starts with CR or LF (keep-alives are skipped before a message is
// buffered), so the first such pattern is the end of the headers, as frame_sip_stream()
// sees it (bare LF line ends accepted).
bool has_header_end(const char* p, std::size_t from, std::size_t to) noexcept {
    while (from < to) {
        const void* q = std::memchr(p + from, '\n', to - from);
        if (q == nullptr) return false;
        const std::size_t j = static_cast<const char*>(q) - p;
        if (j + 1 < to && p[j + 1] == '\n') return true;
        if (j + 2 < to && p[j + 1] == '\r' && p[j + 2] == '\n') return true;
        from = j + 1;
    }
    return false;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// IP fragments

const char* to_string(FragmentResult r) noexcept {
    static constexpr const char* kNames[] = {TAPWIRE_FRAGMENT_RESULTS(TAPWIRE_X_TEXT)};
    return name_of(r, kNames);
}

const char* FragmentConfig::check() const noexcept {
    if (slots == 0 || slots > (1u << 24)) return "fragment slots: must be 1 to 16777216";
    if (max_datagram_bytes < 8 || max_datagram_bytes > 65535)
        return "fragment max_datagram_bytes: must be 8 to 65535";
    if (timeout_ns == 0) return "fragment timeout: must be positive";
    return nullptr;
}

bool parse_udp_datagram(ByteSpan l4, UdpDatagram& out) noexcept {
    // RFC 768: Length covers header and data; the datagram may carry trailing bytes only
    // if a sender padded it, which the Length excludes.
    if (l4.size() < 8) return false;
    const std::size_t len = load_be16(l4.data() + 4);
    if (len < 8 || len > l4.size()) return false;
    out.src_port = load_be16(l4.data());
    out.dst_port = load_be16(l4.data() + 2);
    out.payload = l4.subspan(8, len - 8);
    return true;
}

namespace {
FragmentConfig clamp(FragmentConfig c) noexcept {
    c.slots = std::clamp<std::uint32_t>(c.slots, 1, 1u << 24);
    c.max_datagram_bytes = std::clamp<std::uint32_t>(c.max_datagram_bytes, 8, 65535);
    if (c.timeout_ns == 0) c.timeout_ns = 1;
    return c;
}
}  // namespace

FragmentReassembler::FragmentReassembler(const FragmentConfig& config)
    : table_(clamp(config).slots, config.hash_seed),
      max_datagram_(clamp(config).max_datagram_bytes),
      timeout_ns_(clamp(config).timeout_ns) {
    // Not value-initialised: pages are only touched (and resident) once used.
    buffers_.reset(new std::uint8_t[static_cast<std::size_t>(table_.capacity()) * max_datagram_]);
}

std::size_t FragmentReassembler::memory_bytes(const FragmentConfig& config) noexcept {
    const FragmentConfig c = clamp(config);
    return static_cast<std::size_t>(c.slots) * (c.max_datagram_bytes + sizeof(Slot) + 8);
}

void FragmentReassembler::expire(std::uint64_t now) noexcept {
    // Slots age from creation and are never touched, so the oldest is at the head and
    // expiry costs one comparison per call when nothing is due.
    for (std::uint32_t i = table_.oldest(); i != detail::kNil; i = table_.oldest()) {
        const Slot& s = table_[i];
        if (now < s.created || now - s.created < timeout_ns_) return;
        if (!s.discarded) ++counters_.timeouts;
        table_.erase(i);
    }
}

FragmentResult FragmentReassembler::discard(Slot& s, FragmentResult why,
                                            std::uint64_t& counter) noexcept {
    s.discarded = true;
    ++counter;
    return why;
}

FragmentResult FragmentReassembler::insert_range(Slot& s, const std::uint8_t* buf,
                                                 std::uint32_t begin, std::uint32_t end,
                                                 const std::uint8_t* data) noexcept {
    Range* r = s.ranges;
    std::uint32_t n = s.range_count;
    std::uint32_t k = 0;
    while (k < n && r[k].end <= begin)
        ++k;
    // r[k] is the first piece ending after begin: the only candidate for an overlap.
    if (k < n && r[k].begin < end) {
        // RFC 8200 4.5 lets exact duplicates be dropped alone; anything else that overlaps
        // discards the datagram (RFC 5722 section 4). "Exact" is judged on the bytes: the
        // same data at the same offsets is harmless whatever the fragment boundaries.
        if (r[k].begin <= begin && end <= r[k].end &&
            std::memcmp(buf + begin, data, end - begin) == 0) {
            ++counters_.duplicates;
            return FragmentResult::Duplicate;
        }
        return discard(s, FragmentResult::Overlap, counters_.overlaps);
    }
    const bool left = k > 0 && r[k - 1].end == begin;
    const bool right = k < n && r[k].begin == end;
    if (left && right) {
        r[k - 1].end = r[k].end;
        std::memmove(r + k, r + k + 1, (n - k - 1) * sizeof *r);
        --n;
    } else if (left) {
        r[k - 1].end = static_cast<std::uint16_t>(end);
    } else if (right) {
        r[k].begin = static_cast<std::uint16_t>(begin);
    } else {
        if (n == kMaxRanges)
            return discard(s, FragmentResult::TooManyHoles, counters_.too_many_holes);
        std::memmove(r + k + 1, r + k, (n - k) * sizeof *r);
        r[k] = {static_cast<std::uint16_t>(begin), static_cast<std::uint16_t>(end)};
        ++n;
    }
    s.range_count = static_cast<std::uint8_t>(n);
    return FragmentResult::Pending;
}

// ~46 ns per 1.25 KB fragment, IPv4 or IPv6, mostly the copy (1024 datagrams x 4 fragments
// in a loop, AMD EPYC, g++ -O2).
FragmentResult FragmentReassembler::add(ByteSpan frame, const PacketInfo& info, std::uint64_t now,
                                        ReassembledDatagram& out) noexcept {
    ++counters_.fragments;
    expire(now);
    const std::size_t offset = info.ip_payload_offset;
    const std::uint32_t len = info.ip_payload_length;
    // Empty non-last fragments carry nothing and are not produced by any stack.
    if (!info.is_fragment || info.ip_family == IpFamily::None || offset + len > frame.size() ||
        (len == 0 && info.more_fragments)) [[unlikely]] {
        ++counters_.bad;
        return FragmentResult::Bad;
    }
    const std::uint32_t begin = info.fragment_offset;
    const std::uint32_t end = begin + len;
    const bool v6 = info.ip_family == IpFamily::V6;

    // RFC 791: (src, dst, protocol, id). RFC 8200 4.5: (src, dst, id); the Next Header of
    // non-first fragments may differ and only the offset-0 one counts.
    const detail::FlowKey key = make_key(info, info.fragment_id, v6 ? 0 : info.ip_proto);
    const std::uint32_t h = table_.hash(key);
    std::uint32_t i = table_.find(key, h);
    if (i == detail::kNil) {
        if (table_.full()) {
            // Fragment flood: recycle the oldest slot (a datagram that is probably lost).
            table_.erase(table_.oldest());
            ++counters_.evictions;
        }
        i = table_.insert(key, h);
        Slot& s = table_[i];
        s.created = now;
        s.total = 0;
        s.max_end = 0;
        s.range_count = 0;
        s.has_last = false;
        s.discarded = false;
        s.proto = info.ip_proto;
    }
    Slot& s = table_[i];
    if (s.discarded) {
        ++counters_.discarded;
        return FragmentResult::Discarded;
    }
    if (end > max_datagram_) return discard(s, FragmentResult::TooLarge, counters_.too_large);
    if (!info.more_fragments) {
        // The last fragment fixes the length; it must agree with every other fragment.
        if ((s.has_last && end != s.total) || end < s.max_end)
            return discard(s, FragmentResult::Inconsistent, counters_.inconsistent);
        s.has_last = true;
        s.total = end;
    } else if (s.has_last && end > s.total) {
        return discard(s, FragmentResult::Inconsistent, counters_.inconsistent);
    }

    std::uint8_t* buf = buffer(i);
    if (len != 0) {
        const std::uint8_t* data = frame.data() + offset;
        const FragmentResult r = insert_range(s, buf, begin, end, data);
        if (r != FragmentResult::Pending) return r;
        std::memcpy(buf + begin, data, len);
        if (begin == 0) s.proto = info.ip_proto;
        s.max_end = std::max(s.max_end, end);
    }

    if (!s.has_last || s.range_count != 1 || s.ranges[0].begin != 0 || s.ranges[0].end != s.total)
        return FragmentResult::Pending;
    out.family = info.ip_family;
    out.proto = s.proto;
    out.id = info.fragment_id;
    out.src = info.src_ip;
    out.dst = info.dst_ip;
    out.data = ByteSpan(buf, s.total);
    // The slot is free again, but its buffer is only rewritten by a later call.
    table_.erase(i);
    ++counters_.reassembled;
    return FragmentResult::Complete;
}

// ---------------------------------------------------------------------------------------------
// SIP over TCP

const char* TcpStreamConfig::check() const noexcept {
    if (streams == 0 || streams > (1u << 24)) return "tcp streams: must be 1 to 16777216";
    if (buffers == 0 || buffers > (1u << 24)) return "tcp buffers: must be 1 to 16777216";
    if (buffer_bytes < 512 || buffer_bytes > (1u << 20))
        return "tcp buffer_bytes: must be 512 to 1048576";
    if (idle_timeout_ns == 0) return "tcp idle timeout: must be positive";
    return nullptr;
}

namespace {
TcpStreamConfig clamp(TcpStreamConfig c) noexcept {
    c.streams = std::clamp<std::uint32_t>(c.streams, 1, 1u << 24);
    c.buffers = std::clamp<std::uint32_t>(c.buffers, 1, 1u << 24);
    c.buffer_bytes = std::clamp<std::uint32_t>(c.buffer_bytes, 512, 1u << 20);
    if (c.idle_timeout_ns == 0) c.idle_timeout_ns = 1;
    return c;
}
}  // namespace

TcpStreamTable::TcpStreamTable(const TcpStreamConfig& config)
    : table_(clamp(config).streams, config.hash_seed),
      buffer_count_(clamp(config).buffers),
      buffer_bytes_(clamp(config).buffer_bytes),
      idle_timeout_ns_(clamp(config).idle_timeout_ns) {
    arena_.reset(new char[static_cast<std::size_t>(buffer_count_) * buffer_bytes_]);
    free_.reset(new std::uint32_t[buffer_count_]);
    // Popped from the top: the lowest indexes first, and a released buffer (still warm in
    // cache) is the next one handed out.
    for (std::uint32_t b = 0; b < buffer_count_; ++b)
        free_[b] = buffer_count_ - 1 - b;
    free_top_ = buffer_count_;
    // A message that does not fit a buffer is an overflow whether it arrives whole or not.
    limits_.max_message_bytes = buffer_bytes_;
}

std::size_t TcpStreamTable::memory_bytes(const TcpStreamConfig& config) noexcept {
    const TcpStreamConfig c = clamp(config);
    return static_cast<std::size_t>(c.buffers) * (c.buffer_bytes + 4) +
           static_cast<std::size_t>(c.streams) * (sizeof(Stream) + 8);
}

void TcpStreamTable::drop_buffer(Stream& s) noexcept {
    s.buffered = 0;
    s.header_end_seen = false;
    if (s.buffer == detail::kNil) return;
    buffer_holders_.remove(table_.data(), index_of(s));
    free_[free_top_++] = s.buffer;
    s.buffer = detail::kNil;
}

void TcpStreamTable::take_buffer(std::uint32_t stream) noexcept {
    if (free_top_ == 0) {
        // Pool empty (slow senders holding partial messages): the partial message that has
        // waited longest is the least likely to complete; drop it.
        Stream& victim = table_[buffer_holders_.head];
        drop_buffer(victim);
        victim.resync = true;
        ++counters_.buffer_steals;
    }
    Stream& s = table_[stream];
    s.buffer = free_[--free_top_];
    buffer_holders_.push_back(table_.data(), stream);
}

void TcpStreamTable::close(std::uint32_t stream) noexcept {
    drop_buffer(table_[stream]);
    table_.erase(stream);
}

void TcpStreamTable::expire(std::uint64_t now) noexcept {
    // Streams age by last activity (touched on every segment): the head is the most idle.
    for (std::uint32_t i = table_.oldest(); i != detail::kNil; i = table_.oldest()) {
        const Stream& s = table_[i];
        if (now < s.last_seen || now - s.last_seen < idle_timeout_ns_) return;
        ++counters_.idle_timeouts;
        close(i);
    }
}

void TcpStreamTable::fail(Stream& s, SipError why) noexcept {
    // Unframeable: nothing after this point can be trusted to start a message.
    if (why == SipError::TooLarge) {
        ++counters_.overflows;
    } else {
        ++counters_.invalid_framing;
        ++counters_.invalid_by_reason[static_cast<std::size_t>(why)];
    }
    drop_buffer(s);
    s.resync = true;
}

// Cost is dominated by frame_sip_stream() (~160 ns for a 10-header INVITE): the table adds
// ~25 ns per segment on the zero-copy path; a message split over two segments costs ~2x
// framing plus the copy (64 streams in a loop, AMD EPYC, g++ -O2).
std::uint32_t TcpStreamTable::on_segment(ByteSpan frame, const PacketInfo& info, std::uint64_t now,
                                         MessageFn fn, void* ctx) noexcept {
    ++counters_.segments;
    expire(now);
    // A TCP header in a first IP fragment describes a payload we only partly have.
    if (!info.is_tcp() || info.is_fragment ||
        static_cast<std::size_t>(info.payload_offset) + info.payload_length > frame.size())
        [[unlikely]] {
        ++counters_.bad_segments;
        return 0;
    }
    const std::uint8_t flags = info.tcp_flags;
    const std::string_view data = as_text(payload_of(frame, info));
    const detail::FlowKey key = make_key(
        info, static_cast<std::uint32_t>(info.src_port) << 16 | info.dst_port, kIpProtoTcp);
    const std::uint32_t h = table_.hash(key);
    std::uint32_t i = table_.find(key, h);

    // RFC 9293 3.10.7.4: RST aborts the connection; its payload is not stream data.
    if (flags & kTcpRst) {
        if (i != detail::kNil) {
            close(i);
            ++counters_.closes;
        }
        return 0;
    }
    if (i == detail::kNil) {
        // Pure ACKs and FINs of untracked streams (often the direction that sends no SIP)
        // take no table entry.
        if (data.empty() && !(flags & kTcpSyn)) return 0;
        if (table_.full()) {
            const std::uint32_t victim = table_.oldest();
            close(victim);
            ++counters_.evictions;
        }
        i = table_.insert(key, h);
        Stream& s = table_[i];
        s.buffer = detail::kNil;
        s.buffered = 0;
        s.have_seq = false;
        s.resync = true;  // first seen mid-connection until a SYN says otherwise
        s.header_end_seen = false;
    } else {
        table_.touch(i);
    }
    Stream& s = table_[i];
    s.last_seen = now;

    std::uint32_t seq = info.tcp_seq;
    if (flags & kTcpSyn) {
        // The SYN occupies one sequence number; the first data byte starts a message.
        drop_buffer(s);
        seq += 1;
        s.have_seq = true;
        s.next_seq = seq;
        s.resync = false;
    }
    std::uint32_t delivered = 0;
    if (!data.empty()) delivered = accept(s, seq, data, fn, ctx);
    if (flags & kTcpFin) {
        // A partial message left at FIN can never complete.
        close(i);
        ++counters_.closes;
    }
    return delivered;
}

std::uint32_t TcpStreamTable::accept(Stream& s, std::uint32_t seq, std::string_view data,
                                     MessageFn fn, void* ctx) noexcept {
    if (!s.have_seq) {
        s.have_seq = true;
        s.next_seq = seq;
    }
    // Sequence space is modulo 2^32 (RFC 9293 3.4): compare by signed difference.
    const std::uint32_t end = seq + static_cast<std::uint32_t>(data.size());
    if (seq != s.next_seq) {
        const std::uint32_t behind = s.next_seq - seq;
        if (static_cast<std::int32_t>(behind) > 0 && behind <= kRetransmitWindow) {
            // Retransmitted data: keep only what is new, if anything.
            ++counters_.retransmissions;
            if (behind >= data.size()) return 0;
            data.remove_prefix(behind);
        } else {
            // Bytes are missing (or the stream jumped): what was buffered cannot complete.
            ++counters_.gaps;
            drop_buffer(s);
            s.resync = true;
        }
    }
    s.next_seq = end;
    counters_.bytes += data.size();

    if (s.resync) {
        std::size_t k = 0;
        while (k < data.size() && (data[k] == '\r' || data[k] == '\n'))
            ++k;
        if (k == data.size()) return 0;  // keep-alive CRLFs (RFC 5626 3.5.1)
        if (!looks_like_sip(data.substr(k))) {
            ++counters_.resync_skipped;
            return 0;
        }
        data.remove_prefix(k);
        s.resync = false;
        ++counters_.resyncs;
    }
    return frame_data(s, data, fn, ctx);
}

std::uint32_t TcpStreamTable::frame_data(Stream& s, std::string_view data, MessageFn fn,
                                         void* ctx) noexcept {
    std::uint32_t delivered = 0;
    auto deliver = [&](std::string_view text, bool in_segment) noexcept {
        ++counters_.messages;
        if (in_segment) ++counters_.zero_copy;
        ++delivered;
        fn(ctx, StreamMessage{text, in_segment});
    };

    for (;;) {
        if (s.buffer == detail::kNil) {
            // Zero-copy: whole messages are handed out straight from the segment.
            for (;;) {
                const SipFrame f = frame_sip_stream(data, limits_);
                if (f.status == SipFrameStatus::Invalid) {
                    fail(s, f.error);
                    return delivered;
                }
                if (f.status == SipFrameStatus::NeedMore) {
                    data.remove_prefix(f.skip);  // keep-alive CRLFs
                    break;
                }
                deliver(data.substr(f.skip, f.length), true);
                data.remove_prefix(f.skip + f.length);
            }
            if (data.empty()) return delivered;
            // A partial message: frame_sip_stream() said NeedMore, so it is shorter than
            // max_message_bytes == buffer_bytes_ and fits.
            if (data.size() >= buffer_bytes_) [[unlikely]] {
                fail(s, SipError::TooLarge);
                return delivered;
            }
            take_buffer(index_of(s));
            std::memcpy(buffer(s), data.data(), data.size());
            s.buffered = static_cast<std::uint32_t>(data.size());
            s.header_end_seen = has_header_end(buffer(s), 0, s.buffered);
            return delivered;
        }

        // Complete the buffered message with the head of the segment.
        char* buf = buffer(s);
        const std::size_t old = s.buffered;
        const std::size_t n = std::min<std::size_t>(buffer_bytes_ - old, data.size());
        std::memcpy(buf + old, data.data(), n);
        s.buffered = static_cast<std::uint32_t>(old + n);
        buffer_holders_.move_to_back(table_.data(), index_of(s));
        // Only the new bytes are searched for the end of the headers, so a peer trickling
        // an endless header section costs O(bytes), not a rescan of the buffer per segment.
        if (!s.header_end_seen)
            s.header_end_seen = has_header_end(buf, old >= 2 ? old - 2 : 0, s.buffered);
        if (!s.header_end_seen) {
            if (s.buffered == buffer_bytes_) fail(s, SipError::TooLarge);
            return delivered;
        }
        const SipFrame f = frame_sip_stream(std::string_view(buf, s.buffered), limits_);
        if (f.status == SipFrameStatus::Invalid) {
            fail(s, f.error);
            return delivered;
        }
        if (f.status == SipFrameStatus::NeedMore) {
            if (s.buffered == buffer_bytes_) fail(s, SipError::TooLarge);  // (frame says so too)
            return delivered;
        }
        // The buffer never holds a whole message between calls, so this one ends inside the
        // bytes just appended; the rest of the segment continues zero-copy.
        const std::size_t msg_end = f.skip + f.length;
        if (msg_end <= old) [[unlikely]] {  // cannot happen; never index before data
            fail(s, SipError::BadHeaderLine);
            return delivered;
        }
        deliver(std::string_view(buf + f.skip, f.length), false);
        const std::size_t leftover = s.buffered - msg_end;  // <= n
        drop_buffer(s);
        data = std::string_view(data.data() + n - leftover, data.size() - n + leftover);
        if (data.empty()) return delivered;
    }
}

}  // namespace tapwire::dataplane
