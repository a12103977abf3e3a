// Bounded per-worker reassembly for SIP: IPv4/IPv6 fragments (large INVITEs over UDP) and
// SIP-over-TCP streams. Pure C++ over byte spans, no DPDK types: the worker passes the frame
// bytes and the PacketInfo from parse_frame(), and reassembly works on COPIES of the bytes,
// so mbufs are never held (inline mode forwards every packet unchanged, at once).
//
// Memory: every table, slot and buffer is allocated in the constructor (worker start-up,
// on the worker's own thread so that first touch places it on the worker's NUMA node);
// nothing allocates afterwards. Full tables evict their oldest entry and count it. One
// instance per worker lcore, single-threaded: no locks, no atomics.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string_view>
#include <type_traits>
#include <vector>

#include "common/bytes.hpp"
#include "common/ip_address.hpp"
#include "common/packet.hpp"
#include "common/sip.hpp"
#include "common/x_list.hpp"

namespace tapwire::dataplane {

namespace detail {

inline constexpr std::uint32_t kNil = 0xFFFFFFFFu;

/// A flow key compared and hashed as 40 raw bytes: addresses, a 32-bit id (IP fragment id,
/// or source port << 16 | destination port for TCP), protocol and family. Padding is
/// explicit and zero so memcmp equality is exact.
struct FlowKey {
    std::uint8_t src[16] = {};
    std::uint8_t dst[16] = {};
    std::uint32_t id = 0;
    std::uint8_t proto = 0;
    std::uint8_t family = 0;
    std::uint16_t pad = 0;

    bool operator==(const FlowKey& o) const noexcept {
        return std::memcmp(this, &o, sizeof *this) == 0;
    }
};
static_assert(sizeof(FlowKey) == 40, "FlowKey is hashed as five 64-bit words");

/// Seeded multiply-xorshift over the five words (~3 ns). The per-worker seed makes bucket
/// collisions hard to aim at from the wire; chains stay short at load factor <= 0.5.
inline std::uint32_t hash_key(const FlowKey& k, std::uint64_t seed) noexcept {
    std::uint64_t w[5];
    std::memcpy(w, &k, sizeof w);
    std::uint64_t h = seed;
    for (std::uint64_t x : w) {
        h ^= x;
        h *= 0x9E3779B97F4A7C15ull;
        h ^= h >> 29;
    }
    h *= 0xBF58476D1CE4E5B9ull;
    return static_cast<std::uint32_t>(h ^ (h >> 32));
}

/// Doubly linked list links by node index (indexes stay valid; nodes never move).
struct Link {
    std::uint32_t prev = kNil;
    std::uint32_t next = kNil;
};

/// An intrusive list over an array of nodes, threaded through the Link member L.
template <class Node, Link Node::*L>
struct IndexList {
    std::uint32_t head = kNil;
    std::uint32_t tail = kNil;

    void push_back(Node* nodes, std::uint32_t i) noexcept {
        Link& l = nodes[i].*L;
        l.prev = tail;
        l.next = kNil;
        if (tail != kNil)
            (nodes[tail].*L).next = i;
        else
            head = i;
        tail = i;
    }
    void remove(Node* nodes, std::uint32_t i) noexcept {
        Link& l = nodes[i].*L;
        if (l.prev != kNil)
            (nodes[l.prev].*L).next = l.next;
        else
            head = l.next;
        if (l.next != kNil)
            (nodes[l.next].*L).prev = l.prev;
        else
            tail = l.prev;
        l.prev = l.next = kNil;
    }
    void move_to_back(Node* nodes, std::uint32_t i) noexcept {
        if (tail == i) return;
        remove(nodes, i);
        push_back(nodes, i);
    }
};

/// A fixed pool of nodes with a chained hash index on FlowKey and a list in age order
/// (insertion order, or last use when touch() is called). Node needs members `key`, `hash`,
/// `chain` (hash chain, reused as the free-list link) and `age` (a Link).
template <class Node>
class FixedTable {
  public:
    explicit FixedTable(std::uint32_t capacity, std::uint64_t seed)
        : nodes_(capacity), seed_(seed) {
        std::size_t buckets = 1;
        while (buckets < 2 * static_cast<std::size_t>(capacity))
            buckets <<= 1;
        buckets_.assign(buckets, kNil);
        mask_ = static_cast<std::uint32_t>(buckets - 1);
        for (std::uint32_t i = 0; i < capacity; ++i)
            nodes_[i].chain = i + 1 < capacity ? i + 1 : kNil;
        free_ = capacity ? 0 : kNil;
    }

    std::uint32_t hash(const FlowKey& k) const noexcept { return hash_key(k, seed_); }

    std::uint32_t find(const FlowKey& k, std::uint32_t h) const noexcept {
        for (std::uint32_t i = buckets_[h & mask_]; i != kNil; i = nodes_[i].chain)
            if (nodes_[i].hash == h && nodes_[i].key == k) return i;
        return kNil;
    }

    bool full() const noexcept { return free_ == kNil; }

    /// Takes a free node (the table must not be full) and links it as the youngest.
    std::uint32_t insert(const FlowKey& k, std::uint32_t h) noexcept {
        const std::uint32_t i = free_;
        Node& n = nodes_[i];
        free_ = n.chain;
        n.key = k;
        n.hash = h;
        n.chain = buckets_[h & mask_];
        buckets_[h & mask_] = i;
        age_.push_back(nodes_.data(), i);
        ++size_;
        return i;
    }

    void erase(std::uint32_t i) noexcept {
        Node& n = nodes_[i];
        std::uint32_t* p = &buckets_[n.hash & mask_];
        while (*p != i)
            p = &nodes_[*p].chain;
        *p = n.chain;
        age_.remove(nodes_.data(), i);
        n.chain = free_;
        free_ = i;
        --size_;
    }

    /// Marks i as the youngest (streams age by last activity, fragments by creation).
    void touch(std::uint32_t i) noexcept { age_.move_to_back(nodes_.data(), i); }
    std::uint32_t oldest() const noexcept { return age_.head; }

    Node& operator[](std::uint32_t i) noexcept { return nodes_[i]; }
    const Node& operator[](std::uint32_t i) const noexcept { return nodes_[i]; }
    Node* data() noexcept { return nodes_.data(); }
    std::uint32_t size() const noexcept { return size_; }
    std::uint32_t capacity() const noexcept { return static_cast<std::uint32_t>(nodes_.size()); }

  private:
    std::vector<Node> nodes_;
    std::vector<std::uint32_t> buckets_;
    IndexList<Node, &Node::age> age_;
    std::uint64_t seed_;
    std::uint32_t mask_ = 0;
    std::uint32_t free_ = kNil;
    std::uint32_t size_ = 0;
};

}  // namespace detail

// ---------------------------------------------------------------------------------------------
// IP fragments

/// What FragmentReassembler::add() did with one fragment (X(Enumerator, "counter_name")).
#define TAPWIRE_FRAGMENT_RESULTS(X)        \
    X(Pending, "pending")                  \
    X(Complete, "complete")                \
    X(Duplicate, "duplicate")              \
    X(Overlap, "overlap")                  \
    X(TooLarge, "too_large")               \
    X(Inconsistent, "inconsistent_length") \
    X(TooManyHoles, "too_many_holes")      \
    X(Discarded, "discarded")              \
    X(Bad, "bad_fragment")

enum class FragmentResult : std::uint8_t { TAPWIRE_FRAGMENT_RESULTS(TAPWIRE_X_ENUMERATOR) Count };

const char* to_string(FragmentResult r) noexcept;

/// Per-worker fragment counters (X(field, "telemetry_name")).
#define TAPWIRE_FRAGMENT_COUNTERS(X)                                                        \
    X(fragments, "fragments")               /* fragments offered to add() */                \
    X(reassembled, "datagrams_reassembled") /* complete datagrams returned */               \
    X(duplicates, "duplicate_fragments")    /* exact repeats, ignored (RFC 8200 4.5) */     \
    X(overlaps, "overlaps")                 /* datagram discarded (RFC 5722) */             \
    X(too_large, "too_large")               /* datagram over max_datagram_bytes */          \
    X(inconsistent, "inconsistent_length")  /* conflicting last fragments / data past it */ \
    X(too_many_holes, "too_many_holes")     /* more disjoint pieces than a slot tracks */   \
    X(discarded, "discarded_fragments")     /* later fragments of a discarded datagram */   \
    X(bad, "bad_fragments")                 /* not a fragment, or an empty non-last one */  \
    X(timeouts, "timeouts")                 /* incomplete datagrams expired */              \
    X(evictions, "pool_evictions")          /* oldest slot reused because the pool was full */

struct FragmentCounters {
#define TAPWIRE_COUNTER_FIELD(field, name) std::uint64_t field = 0;
    TAPWIRE_FRAGMENT_COUNTERS(TAPWIRE_COUNTER_FIELD)
#undef TAPWIRE_COUNTER_FIELD

    /// Calls f(name, value) for every counter, in list order (for telemetry).
    template <class F>
    void for_each(F&& f) const {
#define TAPWIRE_COUNTER_VISIT(field, name) f(name, field);
        TAPWIRE_FRAGMENT_COUNTERS(TAPWIRE_COUNTER_VISIT)
#undef TAPWIRE_COUNTER_VISIT
    }
};

struct FragmentConfig {
    std::uint32_t slots = 1024;                    // datagrams under reassembly at once
    std::uint32_t max_datagram_bytes = 16384;      // L4 datagram (UDP header + payload), <= 65535
    std::uint64_t timeout_ns = 2'000'000'000;      // from the first fragment (RFC 791 timer)
    std::uint64_t hash_seed = 0x7461707769726531;  // set per worker (e.g. from the TSC)

    /// nullptr when usable, else a message naming the bad setting.
    const char* check() const noexcept;
};

/// A reassembled L4 datagram. data is valid until the next call on the reassembler.
struct ReassembledDatagram {
    IpFamily family = IpFamily::None;
    std::uint8_t proto = 0;  // IPv6: Next Header of the offset-0 fragment (RFC 8200 4.5)
    std::uint32_t id = 0;
    IpAddress src;
    IpAddress dst;
    ByteSpan data;  // the L4 header + payload (for UDP: 8-byte header, then the SIP text)
};

/// A UDP header and payload taken from a reassembled datagram.
struct UdpDatagram {
    std::uint16_t src_port = 0;
    std::uint16_t dst_port = 0;
    ByteSpan payload;
};

/// Reads the UDP header at the start of a reassembled datagram (RFC 768): false when
/// shorter than 8 bytes or the UDP Length is below 8 or past the data. Bytes past the UDP
/// Length are not payload.
bool parse_udp_datagram(ByteSpan l4, UdpDatagram& out) noexcept;

/// Reassembles IPv4 (RFC 791) and IPv6 (RFC 8200 section 4.5) fragments, one instance per
/// worker. Keys: (src, dst, id, protocol) for IPv4; (src, dst, id) for IPv6, where the
/// Next Header of the offset-0 fragment names the protocol. Out-of-order arrival and exact
/// duplicates are fine; any other overlap discards the whole datagram including fragments
/// still to come (RFC 5722, applied to IPv4 too: overlaps are an evasion technique). A
/// discarded datagram keeps its slot until the timeout so that its later fragments cannot
/// start a fresh reassembly.
class FragmentReassembler {
  public:
    /// Disjoint received pieces tracked per datagram (adjacent pieces merge, so in-order
    /// and reversed arrival use one). More is treated as a flood of tiny fragments.
    static constexpr std::uint32_t kMaxRanges = 32;

    /// Allocates everything; config must pass check() (values are clamped otherwise).
    explicit FragmentReassembler(const FragmentConfig& config = {});
    FragmentReassembler(const FragmentReassembler&) = delete;
    FragmentReassembler& operator=(const FragmentReassembler&) = delete;

    /// Adds one fragment: info from parse_frame()/parse_ip() over frame with is_fragment set.
    /// The fragment data is copied; frame is not referenced after the call. On Complete,
    /// out describes the datagram, valid until the next call. now_ns: any monotonic clock,
    /// the same one for every call. Expired datagrams are dropped first.
    FragmentResult add(ByteSpan frame, const PacketInfo& info, std::uint64_t now_ns,
                       ReassembledDatagram& out) noexcept;

    /// Drops datagrams older than the timeout (add() does this too; call when idle).
    void expire(std::uint64_t now_ns) noexcept;

    const FragmentCounters& counters() const noexcept { return counters_; }
    std::uint32_t in_use() const noexcept { return table_.size(); }
    std::uint32_t capacity() const noexcept { return table_.capacity(); }
    /// Bytes allocated by the constructor for config.
    static std::size_t memory_bytes(const FragmentConfig& config) noexcept;

  private:
    struct Range {
        std::uint16_t begin;
        std::uint16_t end;  // exclusive; max_datagram_bytes <= 65535 keeps it in 16 bits
    };
    struct Slot {
        detail::FlowKey key;
        std::uint32_t hash = 0;
        std::uint32_t chain = detail::kNil;
        detail::Link age;
        std::uint64_t created = 0;
        std::uint32_t total = 0;    // datagram length, known once the last fragment arrived
        std::uint32_t max_end = 0;  // highest byte received
        std::uint8_t range_count = 0;
        bool has_last = false;
        bool discarded = false;  // dropped; absorbs the datagram's later fragments
        std::uint8_t proto = 0;
        Range ranges[kMaxRanges];  // sorted, disjoint, not adjacent
    };

    FragmentResult discard(Slot& s, FragmentResult why, std::uint64_t& counter) noexcept;
    FragmentResult insert_range(Slot& s, const std::uint8_t* buf, std::uint32_t begin,
                                std::uint32_t end, const std::uint8_t* data) noexcept;
    std::uint8_t* buffer(std::uint32_t slot) noexcept {
        return buffers_.get() + static_cast<std::size_t>(slot) * max_datagram_;
    }

    detail::FixedTable<Slot> table_;
    std::unique_ptr<std::uint8_t[]> buffers_;  // slots x max_datagram_bytes, never zeroed
    std::uint32_t max_datagram_;
    std::uint64_t timeout_ns_;
    FragmentCounters counters_;
};

// ---------------------------------------------------------------------------------------------
// SIP over TCP

/// Per-worker SIP-over-TCP counters (X(field, "telemetry_name")).
#define TAPWIRE_TCP_STREAM_COUNTERS(X)                                                            \
    X(segments, "segments")                      /* segments offered */                           \
    X(bytes, "bytes")                            /* new in-sequence payload bytes */              \
    X(messages, "messages")                      /* SIP messages delivered */                     \
    X(zero_copy, "messages_zero_copy")           /* ... of which straight from the segment */     \
    X(retransmissions, "retransmissions")        /* segments with data already seen, trimmed */   \
    X(gaps, "gaps")                              /* missing data: partial message dropped */      \
    X(resyncs, "resyncs")                        /* sync regained at a SIP start line */          \
    X(resync_skipped, "resync_skipped_segments") /* data dropped while looking for one */         \
    X(overflows, "stream_overflow")              /* message larger than the stream buffer */      \
    X(invalid_framing, "invalid_framing")        /* unframeable (see invalid_by_reason) */        \
    X(buffer_steals, "buffer_steals")            /* pool empty: oldest partial message dropped */ \
    X(evictions, "stream_evictions")             /* table full: least recently active dropped */  \
    X(idle_timeouts, "idle_timeouts")            /* streams dropped after idle_timeout_ns */      \
    X(closes, "closes")                          /* FIN or RST */                                 \
    X(bad_segments, "bad_segments")              /* not TCP, IP fragment, or bad offsets */

struct TcpStreamCounters {
#define TAPWIRE_COUNTER_FIELD(field, name) std::uint64_t field = 0;
    TAPWIRE_TCP_STREAM_COUNTERS(TAPWIRE_COUNTER_FIELD)
#undef TAPWIRE_COUNTER_FIELD
    /// invalid_framing broken down by frame_sip_stream()'s reason.
    std::uint64_t invalid_by_reason[static_cast<std::size_t>(SipError::Count)] = {};

    /// Calls f(name, value) for every counter, in list order (for telemetry); the reasons
    /// come as f(SipError, value) through for_each_invalid().
    template <class F>
    void for_each(F&& f) const {
#define TAPWIRE_COUNTER_VISIT(field, name) f(name, field);
        TAPWIRE_TCP_STREAM_COUNTERS(TAPWIRE_COUNTER_VISIT)
#undef TAPWIRE_COUNTER_VISIT
    }
    template <class F>
    void for_each_invalid(F&& f) const {
        for (std::size_t i = 0; i < static_cast<std::size_t>(SipError::Count); ++i)
            f(static_cast<SipError>(i), invalid_by_reason[i]);
    }
};

struct TcpStreamConfig {
    std::uint32_t streams = 4096;  // directional streams tracked at once
    // Partial messages wait in a shared pool: most segments carry whole messages and need
    // no buffer, so the pool is smaller than the stream table (16 MiB here, not 64).
    std::uint32_t buffers = 1024;
    std::uint32_t buffer_bytes = 16384;  // also the largest SIP message accepted on TCP
    std::uint64_t idle_timeout_ns = 300'000'000'000;
    std::uint64_t hash_seed = 0x7461707769726532;

    /// nullptr when usable, else a message naming the bad setting.
    const char* check() const noexcept;
};

/// One SIP message framed from a stream.
struct StreamMessage {
    /// The whole message (start line, headers, body). When in_segment, it points into the
    /// frame passed to on_segment(); otherwise into the stream buffer. Either way it is
    /// valid only during the callback.
    std::string_view text;
    bool in_segment = false;
};

/// Reassembles SIP over TCP (RFC 3261 section 18.3) per directional 5-tuple and frames it
/// with frame_sip_stream(). A segment that holds whole messages is framed in place (no
/// copy); only a trailing partial message is copied into a buffer. Data that cannot be put
/// in order (a gap) is not waited for: the partial message is dropped and the stream
/// resynchronises at the next segment that starts a SIP message, as it does for a stream
/// first seen mid-connection.
class TcpStreamTable {
  public:
    using MessageFn = void (*)(void* ctx, const StreamMessage& message) noexcept;

    /// A segment this far behind the expected sequence number is not a retransmission but
    /// a stream we lost (e.g. a reused 5-tuple whose SYN we missed): resynchronise.
    static constexpr std::uint32_t kRetransmitWindow = 1u << 20;

    /// Allocates everything; config must pass check() (values are clamped otherwise).
    explicit TcpStreamTable(const TcpStreamConfig& config = {});
    TcpStreamTable(const TcpStreamTable&) = delete;
    TcpStreamTable& operator=(const TcpStreamTable&) = delete;

    /// Feeds one TCP segment (info from parse_frame() over frame). Calls fn(ctx, message)
    /// for every complete SIP message, in order, and returns how many. Nothing of frame is
    /// referenced after the call. now_ns: any monotonic clock, the same for every call.
    std::uint32_t on_segment(ByteSpan frame, const PacketInfo& info, std::uint64_t now_ns,
                             MessageFn fn, void* ctx) noexcept;

    /// Same, with any callable taking (const StreamMessage&); it must not throw.
    template <class F>
    std::uint32_t on_segment(ByteSpan frame, const PacketInfo& info, std::uint64_t now_ns,
                             F&& f) noexcept {
        using Fn = std::remove_reference_t<F>;
        return on_segment(
            frame, info, now_ns,
            [](void* ctx, const StreamMessage& m) noexcept { (*static_cast<Fn*>(ctx))(m); },
            const_cast<void*>(static_cast<const void*>(&f)));
    }

    /// Drops streams idle for idle_timeout_ns (on_segment() does this too).
    void expire(std::uint64_t now_ns) noexcept;

    const TcpStreamCounters& counters() const noexcept { return counters_; }
    std::uint32_t streams_in_use() const noexcept { return table_.size(); }
    std::uint32_t buffers_in_use() const noexcept { return buffer_count_ - free_top_; }
    static std::size_t memory_bytes(const TcpStreamConfig& config) noexcept;

  private:
    struct Stream {
        detail::FlowKey key;
        std::uint32_t hash = 0;
        std::uint32_t chain = detail::kNil;
        detail::Link age;         // by last activity
        detail::Link buffer_age;  // buffer holders, by last append
        std::uint64_t last_seen = 0;
        std::uint32_t next_seq = 0;  // next expected sequence number (modulo 2^32)
        std::uint32_t buffer = detail::kNil;
        std::uint32_t buffered = 0;  // bytes of a partial message in the buffer
        bool have_seq = false;
        bool resync = true;            // waiting for a segment that starts a SIP message
        bool header_end_seen = false;  // the buffered partial message has all its headers
    };

    std::uint32_t accept(Stream& s, std::uint32_t seq, std::string_view data, MessageFn fn,
                         void* ctx) noexcept;
    std::uint32_t frame_data(Stream& s, std::string_view data, MessageFn fn, void* ctx) noexcept;
    void fail(Stream& s, SipError why) noexcept;
    void take_buffer(std::uint32_t stream) noexcept;
    void drop_buffer(Stream& s) noexcept;
    void close(std::uint32_t stream) noexcept;
    std::uint32_t index_of(const Stream& s) noexcept {
        return static_cast<std::uint32_t>(&s - table_.data());
    }
    char* buffer(const Stream& s) noexcept {
        return arena_.get() + static_cast<std::size_t>(s.buffer) * buffer_bytes_;
    }

    detail::FixedTable<Stream> table_;
    detail::IndexList<Stream, &Stream::buffer_age> buffer_holders_;
    std::unique_ptr<char[]> arena_;          // buffers x buffer_bytes, never zeroed
    std::unique_ptr<std::uint32_t[]> free_;  // stack of free buffer indexes
    std::uint32_t free_top_ = 0;
    std::uint32_t buffer_count_;
    std::uint32_t buffer_bytes_;
    std::uint64_t idle_timeout_ns_;
    SipLimits limits_;
    TcpStreamCounters counters_;
};

}  // namespace tapwire::dataplane
