// Tests for fragment and SIP-over-TCP reassembly: frames come from the traffic generator
// and are parsed with parse_frame(), as in the worker. Expected datagrams are built
// independently (one unfragmented frame of the same datagram), so a wrong offset, a lost
// byte or a wrong merge shows up as different bytes.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "common/packet.hpp"
#include "dataplane/reassembly.hpp"
#include "tools/traffic/frame_builder.hpp"

using namespace tapwire;
using namespace tapwire::dataplane;
using namespace tapwire::traffic;

namespace {

using Bytes = std::vector<std::uint8_t>;
using Frames = std::vector<Bytes>;

constexpr std::uint64_t kMs = 1'000'000;
constexpr std::uint64_t kSec = 1'000'000'000;

IpAddress addr(const char* text) {
    return *IpAddress::parse(text);
}

IpSpec ip_spec(IpFamily family, std::uint32_t id) {
    IpSpec ip;
    ip.src = family == IpFamily::V4 ? addr("10.1.0.1") : addr("2001:db8::1");
    ip.dst = family == IpFamily::V4 ? addr("10.2.0.2") : addr("2001:db8:ffff::2");
    ip.id = id;
    ip.dont_fragment = false;
    return ip;
}

/// SIP-ish text of n bytes with a position-dependent pattern.
Bytes pattern(std::size_t n, std::uint8_t seed = 0) {
    Bytes b(n);
    for (std::size_t i = 0; i < n; ++i)
        b[i] = static_cast<std::uint8_t>('!' + (i * 7 + seed + i / 251) % 90);
    return b;
}

const UdpSpec kUdp{5060, 5080};

Frames fragments(IpFamily family, std::uint32_t id, const Bytes& payload, std::size_t mtu,
                 VlanTags vlans = {}) {
    const IpSpec ip = ip_spec(family, id);
    Frames f = build_udp_fragments(l2_for(ip.src, ip.dst, vlans), ip, kUdp, payload, mtu);
    REQUIRE(!f.empty());
    return f;
}

/// The UDP header + payload as one unfragmented frame carries it.
Bytes expected_datagram(IpFamily family, const Bytes& payload) {
    const IpSpec ip = ip_spec(family, 7);
    Bytes frame;
    REQUIRE(build_udp_frame(frame, l2_for(ip.src, ip.dst), ip, kUdp, payload));
    PacketInfo info;
    REQUIRE(parse_frame(frame, info) == PacketError::Ok);
    REQUIRE(info.is_udp());
    const std::size_t end = std::size_t(info.l3_offset) + info.l3_length;
    return Bytes(frame.begin() + info.l4_offset, frame.begin() + end);
}

FragmentResult feed(FragmentReassembler& r, const Bytes& frame, std::uint64_t now,
                    ReassembledDatagram& out) {
    PacketInfo info;
    REQUIRE(parse_frame(frame, info) == PacketError::Ok);
    REQUIRE(info.is_fragment);
    return r.add(frame, info, now, out);
}

/// Feeds frames in the given order; returns the datagram completed by the last one.
Bytes reassemble(FragmentReassembler& r, const Frames& frames,
                 const std::vector<std::size_t>& order, ReassembledDatagram& out) {
    for (std::size_t k = 0; k < order.size(); ++k) {
        const FragmentResult res = feed(r, frames[order[k]], k * kMs, out);
        if (k + 1 < order.size()) {
            REQUIRE(res == FragmentResult::Pending);
        } else {
            REQUIRE(res == FragmentResult::Complete);
        }
    }
    return Bytes(out.data.begin(), out.data.end());
}

std::vector<std::size_t> iota(std::size_t n) {
    std::vector<std::size_t> v(n);
    std::iota(v.begin(), v.end(), 0);
    return v;
}

}  // namespace

TEST_CASE("fragments reassemble in any order to exactly the original datagram",
          "[reassembly][fragment]") {
    for (IpFamily family : {IpFamily::V4, IpFamily::V6}) {
        const Bytes payload = pattern(5000);
        const Bytes expected = expected_datagram(family, payload);
        const Frames frames = fragments(family, 0x4242, payload, 1500);
        REQUIRE(frames.size() == 4);

        std::vector<std::vector<std::size_t>> orders = {iota(frames.size())};
        orders.push_back(orders[0]);
        std::reverse(orders[1].begin(), orders[1].end());
        std::mt19937 rng(1);
        for (int i = 0; i < 20; ++i) {
            orders.push_back(orders[0]);
            std::shuffle(orders.back().begin(), orders.back().end(), rng);
        }
        for (const auto& order : orders) {
            FragmentReassembler r;
            ReassembledDatagram out;
            CHECK(reassemble(r, frames, order, out) == expected);
            CHECK(out.family == family);
            CHECK(out.proto == kIpProtoUdp);
            CHECK(out.id == 0x4242);
            CHECK(out.src == ip_spec(family, 0).src);
            CHECK(out.dst == ip_spec(family, 0).dst);
            UdpDatagram udp;
            REQUIRE(parse_udp_datagram(out.data, udp));
            CHECK(udp.src_port == 5060);
            CHECK(udp.dst_port == 5080);
            CHECK(Bytes(udp.payload.begin(), udp.payload.end()) == payload);
            CHECK(r.in_use() == 0);
            CHECK(r.counters().reassembled == 1);
            CHECK(r.counters().fragments == frames.size());
        }
    }
}

TEST_CASE("many small fragments behind QinQ, shuffled", "[reassembly][fragment]") {
    for (IpFamily family : {IpFamily::V4, IpFamily::V6}) {
        const Bytes payload = pattern(9000, 3);
        const Frames frames = fragments(family, 99, payload, 576, VlanTags::qinq(100, 200));
        REQUIRE(frames.size() > 16);
        std::vector<std::size_t> order = iota(frames.size());
        std::mt19937 rng(7);
        std::shuffle(order.begin(), order.end(), rng);
        FragmentReassembler r;
        ReassembledDatagram out;
        CHECK(reassemble(r, frames, order, out) == expected_datagram(family, payload));
    }
}

TEST_CASE("IPv6 takes the protocol from the offset-0 fragment", "[reassembly][fragment]") {
    // RFC 8200 4.5: Next Header may differ between fragments; only the first one counts,
    // and it is not part of the key.
    const Bytes payload = pattern(3000);
    Frames frames = fragments(IpFamily::V6, 8, payload, 1280);
    PacketInfo info;
    REQUIRE(parse_frame(frames.back(), info) == PacketError::Ok);
    frames.back()[info.ip_payload_offset - 8] = kIpProtoDestOpts;
    std::vector<std::size_t> order = iota(frames.size());
    std::reverse(order.begin(), order.end());
    FragmentReassembler r;
    ReassembledDatagram out;
    CHECK(reassemble(r, frames, order, out) == expected_datagram(IpFamily::V6, payload));
    CHECK(out.proto == kIpProtoUdp);
}

TEST_CASE("interleaved datagrams reassemble independently", "[reassembly][fragment]") {
    const Bytes p1 = pattern(3000, 1), p2 = pattern(3000, 2);
    const Frames a = fragments(IpFamily::V4, 1, p1, 1000);
    const Frames b = fragments(IpFamily::V4, 2, p2, 1000);
    REQUIRE(a.size() == b.size());
    FragmentReassembler r;
    ReassembledDatagram out;
    int complete = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
        for (const Bytes* f : {&a[a.size() - 1 - i], &b[i]}) {
            if (feed(r, *f, 0, out) != FragmentResult::Complete) continue;
            ++complete;
            UdpDatagram udp;
            REQUIRE(parse_udp_datagram(out.data, udp));
            CHECK(Bytes(udp.payload.begin(), udp.payload.end()) == (out.id == 1 ? p1 : p2));
        }
    }
    CHECK(complete == 2);
}

TEST_CASE("exact duplicate fragments are ignored", "[reassembly][fragment]") {
    for (IpFamily family : {IpFamily::V4, IpFamily::V6}) {
        const Bytes payload = pattern(4000);
        const Frames frames = fragments(family, 5, payload, 1280);
        REQUIRE(frames.size() == 4);
        FragmentReassembler r;
        ReassembledDatagram out;
        CHECK(feed(r, frames[0], 0, out) == FragmentResult::Pending);
        CHECK(feed(r, frames[0], 0, out) == FragmentResult::Duplicate);
        CHECK(feed(r, frames[3], 0, out) == FragmentResult::Pending);
        CHECK(feed(r, frames[3], 0, out) == FragmentResult::Duplicate);
        CHECK(feed(r, frames[1], 0, out) == FragmentResult::Pending);
        CHECK(feed(r, frames[1], 0, out) == FragmentResult::Duplicate);
        REQUIRE(feed(r, frames[2], 0, out) == FragmentResult::Complete);
        CHECK(Bytes(out.data.begin(), out.data.end()) == expected_datagram(family, payload));
        CHECK(r.counters().duplicates == 3);
        CHECK(r.counters().overlaps == 0);
    }
}

TEST_CASE("overlapping fragments discard the whole datagram", "[reassembly][fragment]") {
    for (IpFamily family : {IpFamily::V4, IpFamily::V6}) {
        const Bytes payload = pattern(4000);
        // The same datagram cut at two MTUs: the pieces overlap without being equal.
        const Frames small = fragments(family, 9, payload, 600);
        const Frames large = fragments(family, 9, payload, 1000);

        SECTION("partial overlap, identical bytes") {
            FragmentReassembler r;
            ReassembledDatagram out;
            CHECK(feed(r, small[0], 0, out) == FragmentResult::Pending);
            CHECK(feed(r, large[0], 0, out) == FragmentResult::Overlap);
            // RFC 5722: the fragments still to come are discarded as well.
            for (std::size_t i = 1; i < small.size(); ++i)
                CHECK(feed(r, small[i], 0, out) == FragmentResult::Discarded);
            CHECK(r.counters().overlaps == 1);
            CHECK(r.counters().discarded == small.size() - 1);
            CHECK(r.counters().reassembled == 0);
        }
        SECTION("same range, different bytes (evasion)") {
            Bytes forged = small[1];
            forged[forged.size() - 20] ^= 0x55;  // inside the fragment data
            FragmentReassembler r;
            ReassembledDatagram out;
            CHECK(feed(r, small[1], 0, out) == FragmentResult::Pending);
            CHECK(feed(r, forged, 0, out) == FragmentResult::Overlap);
            for (std::size_t i = 0; i < small.size(); ++i)
                CHECK(feed(r, small[i], 0, out) == FragmentResult::Discarded);
            CHECK(r.counters().reassembled == 0);
        }
        SECTION("a fragment straddling two received ones") {
            FragmentReassembler r;
            ReassembledDatagram out;
            // large[1] covers [976, 1952): it straddles small[1] [576, 1152) and beyond.
            CHECK(feed(r, small[2], 0, out) == FragmentResult::Pending);
            CHECK(feed(r, large[1], 0, out) == FragmentResult::Overlap);
        }
        SECTION("the discarded datagram's slot expires, then the id is usable again") {
            FragmentReassembler r;
            ReassembledDatagram out;
            CHECK(feed(r, small[0], 0, out) == FragmentResult::Pending);
            CHECK(feed(r, large[0], 0, out) == FragmentResult::Overlap);
            std::vector<std::size_t> order = iota(small.size());
            for (std::size_t k = 0; k < order.size(); ++k) {
                const FragmentResult res = feed(r, small[order[k]], 3 * kSec, out);
                CHECK(res ==
                      (k + 1 < order.size() ? FragmentResult::Pending : FragmentResult::Complete));
            }
            CHECK(r.counters().timeouts == 0);  // a discarded datagram is not a timeout
        }
    }
}

TEST_CASE("incomplete datagrams time out", "[reassembly][fragment]") {
    FragmentConfig cfg;
    cfg.timeout_ns = 2 * kSec;
    const Frames frames = fragments(IpFamily::V4, 77, pattern(4000), 1500);
    REQUIRE(frames.size() == 3);
    FragmentReassembler r(cfg);
    ReassembledDatagram out;
    CHECK(feed(r, frames[0], 0, out) == FragmentResult::Pending);
    CHECK(feed(r, frames[1], 1999 * kMs, out) == FragmentResult::Pending);
    // The timer runs from the first fragment (RFC 791), so the third comes too late and
    // starts a new reassembly that lacks the first two.
    CHECK(feed(r, frames[2], 2 * kSec, out) == FragmentResult::Pending);
    CHECK(r.counters().timeouts == 1);
    CHECK(r.in_use() == 1);
    r.expire(3 * kSec);
    CHECK(r.in_use() == 1);
    r.expire(4 * kSec);
    CHECK(r.in_use() == 0);
    CHECK(r.counters().timeouts == 2);
    CHECK(r.counters().reassembled == 0);
}

TEST_CASE("datagrams over the size limit are dropped", "[reassembly][fragment]") {
    FragmentConfig cfg;
    cfg.max_datagram_bytes = 16384;
    const Frames frames = fragments(IpFamily::V6, 1, pattern(20000), 1500);
    SECTION("in order") {
        FragmentReassembler r(cfg);
        ReassembledDatagram out;
        int too_large = 0;
        for (const Bytes& f : frames) {
            const FragmentResult res = feed(r, f, 0, out);
            CHECK(res != FragmentResult::Complete);
            too_large += res == FragmentResult::TooLarge;
        }
        CHECK(too_large == 1);
        CHECK(r.counters().too_large == 1);
    }
    SECTION("last fragment first") {
        FragmentReassembler r(cfg);
        ReassembledDatagram out;
        CHECK(feed(r, frames.back(), 0, out) == FragmentResult::TooLarge);
        for (std::size_t i = 0; i + 1 < frames.size(); ++i)
            CHECK(feed(r, frames[i], 0, out) == FragmentResult::Discarded);
    }
    SECTION("the largest allowed datagram passes") {
        const Bytes payload = pattern(16384 - 8);
        FragmentReassembler r(cfg);
        ReassembledDatagram out;
        CHECK(reassemble(r, fragments(IpFamily::V4, 2, payload, 1500),
                         iota(fragments(IpFamily::V4, 2, payload, 1500).size()),
                         out) == expected_datagram(IpFamily::V4, payload));
    }
}

TEST_CASE("inconsistent lengths discard the datagram", "[reassembly][fragment]") {
    // Same id, different lengths: two "last" fragments that disagree.
    const Frames a = fragments(IpFamily::V4, 3, pattern(3000), 1000);
    const Frames b = fragments(IpFamily::V4, 3, pattern(2500), 1000);
    SECTION("two different last fragments") {
        FragmentReassembler r;
        ReassembledDatagram out;
        CHECK(feed(r, a.back(), 0, out) == FragmentResult::Pending);
        CHECK(feed(r, b.back(), 0, out) == FragmentResult::Inconsistent);
        CHECK(feed(r, a[0], 0, out) == FragmentResult::Discarded);
        CHECK(r.counters().inconsistent == 1);
    }
    SECTION("data past the end set by the last fragment") {
        FragmentReassembler r;
        ReassembledDatagram out;
        // b ends at 2508; a[2] covers [1952, 2928) with MF set.
        CHECK(feed(r, b.back(), 0, out) == FragmentResult::Pending);
        CHECK(feed(r, a[2], 0, out) == FragmentResult::Inconsistent);
    }
    SECTION("a last fragment that ends before data already received") {
        FragmentReassembler r;
        ReassembledDatagram out;
        CHECK(feed(r, a[2], 0, out) == FragmentResult::Pending);
        CHECK(feed(r, b.back(), 0, out) == FragmentResult::Inconsistent);
    }
}

TEST_CASE("scattered tiny fragments hit the hole limit", "[reassembly][fragment]") {
    // MTU 28: IPv4 header + 8 data bytes per fragment.
    const Frames frames = fragments(IpFamily::V4, 11, pattern(1000), 28);
    REQUIRE(frames.size() > 2 * FragmentReassembler::kMaxRanges);
    FragmentReassembler r;
    ReassembledDatagram out;
    std::size_t i = 0;
    for (; i < 2 * FragmentReassembler::kMaxRanges; i += 2)
        REQUIRE(feed(r, frames[i], 0, out) == FragmentResult::Pending);
    CHECK(feed(r, frames[i], 0, out) == FragmentResult::TooManyHoles);
    CHECK(r.counters().too_many_holes == 1);

    // Filled in order, the same 126 tiny fragments use one range and complete.
    FragmentReassembler in_order;
    CHECK(reassemble(in_order, frames, iota(frames.size()), out) ==
          expected_datagram(IpFamily::V4, pattern(1000)));
}

TEST_CASE("a fragment flood stays within the pool and counts evictions",
          "[reassembly][fragment][flood]") {
    FragmentConfig cfg;
    cfg.slots = 1024;
    FragmentReassembler r(cfg);
    ReassembledDatagram out;
    constexpr std::uint32_t kFlood = 100000;

    for (IpFamily family : {IpFamily::V6, IpFamily::V4}) {
        Bytes frame = fragments(family, 0, pattern(3000), 1500)[0];
        PacketInfo info;
        REQUIRE(parse_frame(frame, info) == PacketError::Ok);
        const std::uint64_t evictions_before = r.counters().evictions;
        for (std::uint32_t id = 0; id < kFlood; ++id) {
            // Patch the id in place: IPv6 Fragment header (32 bits) or, for IPv4, the
            // 16-bit id plus the low source-address byte to get 100k distinct keys.
            if (family == IpFamily::V6) {
                store_be32(frame.data() + info.ip_payload_offset - 4, id);
            } else {
                store_be16(frame.data() + info.l3_offset + 4, std::uint16_t(id));
                frame[info.l3_offset + 15] = std::uint8_t(id >> 16);
            }
            PacketInfo fi;
            REQUIRE(parse_frame(frame, fi) == PacketError::Ok);
            REQUIRE(r.add(frame, fi, id, out) == FragmentResult::Pending);
            REQUIRE(r.in_use() <= cfg.slots);
        }
        CHECK(r.in_use() == cfg.slots);
        const std::uint64_t expected = family == IpFamily::V6 ? kFlood - cfg.slots : kFlood;
        CHECK(r.counters().evictions - evictions_before == expected);
    }
    CHECK(FragmentReassembler::memory_bytes(cfg) < 20u << 20);

    // A real datagram still gets through after the flood.
    const Bytes payload = pattern(5000, 9);
    const Frames frames = fragments(IpFamily::V4, 0xBEEF, payload, 1500);
    CHECK(reassemble(r, frames, iota(frames.size()), out) ==
          expected_datagram(IpFamily::V4, payload));
}

TEST_CASE("non-fragments and bad UDP headers are rejected", "[reassembly][fragment]") {
    const IpSpec ip = ip_spec(IpFamily::V4, 1);
    Bytes frame;
    REQUIRE(build_udp_frame(frame, l2_for(ip.src, ip.dst), ip, kUdp, pattern(100)));
    PacketInfo info;
    REQUIRE(parse_frame(frame, info) == PacketError::Ok);
    FragmentReassembler r;
    ReassembledDatagram out;
    CHECK(r.add(frame, info, 0, out) == FragmentResult::Bad);
    CHECK(r.counters().bad == 1);

    UdpDatagram udp;
    const std::uint8_t short_len[] = {0x13, 0xc4, 0x13, 0xd8, 0x00, 0x07, 0, 0};
    const std::uint8_t long_len[] = {0x13, 0xc4, 0x13, 0xd8, 0x00, 0x0a, 0, 0, 'x'};
    const std::uint8_t exact[] = {0x13, 0xc4, 0x13, 0xd8, 0x00, 0x09, 0, 0, 'x', 'p'};
    CHECK_FALSE(parse_udp_datagram(ByteSpan(short_len, 7), udp));
    CHECK_FALSE(parse_udp_datagram(short_len, udp));
    CHECK_FALSE(parse_udp_datagram(long_len, udp));
    REQUIRE(parse_udp_datagram(exact, udp));
    CHECK(udp.payload.size() == 1);  // the trailing byte is past the UDP Length
    CHECK(std::string(to_string(FragmentResult::Overlap)) == "overlap");

    FragmentConfig bad;
    bad.max_datagram_bytes = 70000;
    CHECK(bad.check() != nullptr);
    CHECK(FragmentConfig{}.check() == nullptr);
}

// ---------------------------------------------------------------------------------------------
// SIP over TCP

namespace {

std::string sip_message(int n, std::size_t body_bytes = 0) {
    std::string body;
    if (body_bytes) {
        body = "v=0\r\no=- 1 1 IN IP4 10.1.0.1\r\ns=-\r\nc=IN IP4 10.1.0.1\r\nt=0 0\r\n";
        while (body.size() < body_bytes)
            body += "a=x-pad:" + std::to_string(body.size()) + "\r\n";
    }
    const std::string id = std::to_string(n);
    return "INVITE sip:bob@example.com SIP/2.0\r\n"
           "Via: SIP/2.0/TCP 10.1.0.1:5060;branch=z9hG4bK" +
           id +
           "\r\n"
           "From: <sip:alice@example.com>;tag=" +
           id +
           "\r\n"
           "To: <sip:bob@example.com>\r\n"
           "Call-ID: call-" +
           id +
           "@10.1.0.1\r\n"
           "CSeq: 1 INVITE\r\n" +
           (body.empty() ? "" : "Content-Type: application/sdp\r\n") +
           "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

struct Received {
    std::vector<std::string> texts;
    std::vector<bool> in_segment;
    bool pointers_ok = true;  // in_segment views lie inside the frame, others outside
};

/// One direction of a TCP connection from the traffic generator.
struct Conn {
    IpSpec ip = ip_spec(IpFamily::V4, 0);
    TcpSpec tcp;
    std::uint32_t isn = 1000;

    explicit Conn(std::uint16_t sport = 40000, std::uint32_t isn_ = 1000,
                  IpFamily family = IpFamily::V4)
        : ip(ip_spec(family, 0)), isn(isn_) {
        tcp.src_port = sport;
        tcp.dst_port = 5060;
    }

    Bytes segment(std::uint32_t rel_seq, std::string_view payload,
                  std::uint8_t flags = TcpFlags::kAck | TcpFlags::kPsh) {
        TcpSpec t = tcp;
        t.seq = isn + 1 + rel_seq;
        t.flags = flags;
        Bytes f;
        REQUIRE(build_tcp_frame(f, l2_for(ip.src, ip.dst), ip, t, as_bytes(payload)));
        return f;
    }
    Bytes syn() {
        TcpSpec t = tcp;
        t.seq = isn;
        t.flags = TcpFlags::kSyn;
        t.mss_option = 1460;
        Bytes f;
        REQUIRE(build_tcp_frame(f, l2_for(ip.src, ip.dst), ip, t, {}));
        return f;
    }
};

std::uint32_t feed(TcpStreamTable& t, const Bytes& frame, Received& rx, std::uint64_t now = 0) {
    PacketInfo info;
    REQUIRE(parse_frame(frame, info) == PacketError::Ok);
    REQUIRE(info.is_tcp());
    const char* lo = reinterpret_cast<const char*>(frame.data());
    const char* hi = lo + frame.size();
    return t.on_segment(frame, info, now, [&](const StreamMessage& m) {
        rx.texts.emplace_back(m.text);
        rx.in_segment.push_back(m.in_segment);
        const bool inside = m.text.data() >= lo && m.text.data() + m.text.size() <= hi;
        if (inside != m.in_segment) rx.pointers_ok = false;
    });
}

}  // namespace

TEST_CASE("one message per segment is delivered without copying", "[reassembly][tcp]") {
    TcpStreamTable t;
    Conn c;
    Received rx;
    feed(t, c.syn(), rx);
    std::uint32_t seq = 0;
    std::vector<std::string> sent;
    for (int i = 0; i < 5; ++i) {
        sent.push_back(sip_message(i, i * 100));
        CHECK(feed(t, c.segment(seq, sent.back()), rx) == 1);
        seq += sent.back().size();
    }
    CHECK(rx.texts == sent);
    CHECK(std::count(rx.in_segment.begin(), rx.in_segment.end(), true) == 5);
    CHECK(rx.pointers_ok);
    CHECK(t.counters().zero_copy == 5);
    CHECK(t.counters().bytes == seq);
    CHECK(t.buffers_in_use() == 0);
    CHECK(t.counters().resyncs == 0);
}

TEST_CASE("a message split at every byte offset over two segments", "[reassembly][tcp]") {
    TcpStreamTable t;
    const std::string m1 = sip_message(1, 300);
    const std::string m2 = sip_message(2);
    Received rx;
    for (std::size_t k = 1; k < m1.size(); ++k) {
        // A fresh connection per split point, the second segment also carrying m2 whole.
        Conn c(static_cast<std::uint16_t>(1000 + k), static_cast<std::uint32_t>(k * 7919));
        const std::string second = m1.substr(k) + m2;
        feed(t, c.syn(), rx);
        CHECK(feed(t, c.segment(0, m1.substr(0, k)), rx) == 0);
        CHECK(t.buffers_in_use() == 1);
        REQUIRE(feed(t, c.segment(std::uint32_t(k), second), rx) == 2);
        CHECK(t.buffers_in_use() == 0);
        CHECK(rx.texts[rx.texts.size() - 2] == m1);
        CHECK(rx.texts.back() == m2);
        CHECK_FALSE(rx.in_segment[rx.in_segment.size() - 2]);
        CHECK(rx.in_segment.back());  // the rest of the segment went zero-copy
    }
    CHECK(rx.pointers_ok);
    CHECK(t.counters().messages == 2 * (m1.size() - 1));
    CHECK(t.counters().gaps == 0);
    CHECK(t.counters().overflows == 0);
}

TEST_CASE("several messages in one segment, and a message trickled byte by byte",
          "[reassembly][tcp]") {
    TcpStreamTable t;
    Conn c;
    Received rx;
    feed(t, c.syn(), rx);
    const std::string a = sip_message(1, 200), b = sip_message(2), d = sip_message(3, 50);
    const std::string seg1 = a + b + d.substr(0, 10);
    CHECK(feed(t, c.segment(0, seg1), rx) == 2);
    CHECK(feed(t, c.segment(seg1.size(), d.substr(10)), rx) == 1);
    REQUIRE(rx.texts.size() == 3);
    CHECK(rx.texts[0] == a);
    CHECK(rx.texts[1] == b);
    CHECK(rx.texts[2] == d);

    std::uint32_t seq = static_cast<std::uint32_t>(seg1.size() + d.size() - 10);
    const std::string e = sip_message(4, 120);
    for (std::size_t i = 0; i < e.size(); ++i)
        feed(t, c.segment(seq + i, e.substr(i, 1)), rx);
    REQUIRE(rx.texts.size() == 4);
    CHECK(rx.texts[3] == e);
    CHECK(rx.pointers_ok);
    CHECK(t.buffers_in_use() == 0);
}

TEST_CASE("retransmitted data is delivered once", "[reassembly][tcp]") {
    TcpStreamTable t;
    Conn c;
    Received rx;
    feed(t, c.syn(), rx);
    const std::string a = sip_message(1), b = sip_message(2, 100);
    feed(t, c.segment(0, a), rx);
    feed(t, c.segment(0, a), rx);  // whole retransmission
    const std::uint32_t sb = static_cast<std::uint32_t>(a.size());
    feed(t, c.segment(sb, b.substr(0, 40)), rx);
    // A retransmission that repeats the 40 bytes and carries the rest of b.
    feed(t, c.segment(sb, b), rx);
    feed(t, c.segment(sb + 20, b.substr(20)), rx);  // all old again
    REQUIRE(rx.texts.size() == 2);
    CHECK(rx.texts[0] == a);
    CHECK(rx.texts[1] == b);
    CHECK(t.counters().retransmissions == 3);
    CHECK(t.counters().gaps == 0);
    CHECK(t.counters().bytes == a.size() + b.size());
}

TEST_CASE("a gap drops the partial message and resynchronises", "[reassembly][tcp]") {
    TcpStreamTable t;
    Conn c;
    Received rx;
    feed(t, c.syn(), rx);
    const std::string m1 = sip_message(1), m2 = sip_message(2, 200), m3 = sip_message(3);
    const std::string m4 = sip_message(4, 300), m5 = sip_message(5);
    std::uint32_t seq = 0;
    feed(t, c.segment(seq, m1), rx);
    seq += m1.size();
    feed(t, c.segment(seq, m2.substr(0, 100)), rx);  // m2's tail is lost
    seq += m2.size();
    CHECK(feed(t, c.segment(seq, m3), rx) == 1);
    seq += m3.size();
    CHECK(t.counters().gaps == 1);
    CHECK(t.counters().resyncs == 1);
    CHECK(t.buffers_in_use() == 0);

    // A gap that lands mid-message: segments up to the next start line are skipped.
    feed(t, c.segment(seq, m4.substr(0, 100)), rx);
    feed(t, c.segment(seq + 200, m4.substr(200)), rx);  // [100, 200) lost
    seq += m4.size();
    CHECK(t.counters().resync_skipped == 1);
    CHECK(feed(t, c.segment(seq, m5), rx) == 1);
    REQUIRE(rx.texts.size() == 3);
    CHECK(rx.texts[0] == m1);
    CHECK(rx.texts[1] == m3);
    CHECK(rx.texts[2] == m5);
    CHECK(t.counters().gaps == 2);
    CHECK(t.counters().resyncs == 2);
}

TEST_CASE("a stream first seen mid-connection starts at a start line", "[reassembly][tcp]") {
    TcpStreamTable t;
    const std::string m1 = sip_message(1, 300), m2 = sip_message(2);
    SECTION("first segment is the middle of a message") {
        Conn c;
        Received rx;
        feed(t, c.segment(5000, m1.substr(200)), rx);
        CHECK(rx.texts.empty());
        CHECK(t.counters().resync_skipped == 1);
        CHECK(feed(t, c.segment(5000 + m1.size() - 200, m2), rx) == 1);
        CHECK(rx.texts.at(0) == m2);
        CHECK(t.counters().resyncs == 1);
        CHECK(t.counters().gaps == 0);
    }
    SECTION("first segment begins a message") {
        Conn c;
        Received rx;
        CHECK(feed(t, c.segment(5000, "\r\n" + m1), rx) == 1);
        CHECK(rx.texts.at(0) == m1);
    }
    SECTION("pure ACKs of unknown streams take no entry") {
        Conn c;
        Received rx;
        feed(t, c.segment(5000, "", TcpFlags::kAck), rx);
        CHECK(t.streams_in_use() == 0);
    }
}

TEST_CASE("CRLF keep-alives between and before messages", "[reassembly][tcp]") {
    TcpStreamTable t;
    Conn c;
    Received rx;
    feed(t, c.syn(), rx);
    const std::string m1 = sip_message(1), m2 = sip_message(2);
    std::uint32_t seq = 0;
    for (const std::string& s : {std::string("\r\n\r\n"), m1, std::string("\r\n"), "\r\n\r\n" + m2,
                                 std::string("\r\n\r\n")}) {
        feed(t, c.segment(seq, s), rx);
        seq += s.size();
    }
    REQUIRE(rx.texts.size() == 2);
    CHECK(rx.texts[0] == m1);
    CHECK(rx.texts[1] == m2);
    CHECK(rx.in_segment[0]);
    CHECK(rx.in_segment[1]);
    CHECK(t.buffers_in_use() == 0);
    CHECK(t.counters().invalid_framing == 0);
}

TEST_CASE("an endless stream overflows the buffer and is counted", "[reassembly][tcp]") {
    TcpStreamConfig cfg;
    cfg.buffer_bytes = 16384;
    TcpStreamTable t(cfg);
    Conn c;
    Received rx;
    feed(t, c.syn(), rx);
    std::uint32_t seq = 0;
    const std::string start = "INVITE sip:bob@example.com SIP/2.0\r\nX-Junk: ";
    const std::string junk(1400, 'a');

    SECTION("no header terminator") {
        feed(t, c.segment(seq, start + junk), rx);
        seq += start.size() + junk.size();
        for (int i = 0; i < 40; ++i) {
            feed(t, c.segment(seq, junk), rx);
            seq += junk.size();
            CHECK(t.buffers_in_use() <= 1);
        }
        CHECK(t.counters().overflows == 1);
        CHECK(t.counters().resync_skipped > 20);
    }
    SECTION("header lines but never the empty line") {
        const std::string line = "X-Line: " + std::string(100, 'b') + "\r\n";
        feed(t, c.segment(seq, start + "x\r\n"), rx);
        seq += start.size() + 3;
        for (int i = 0; i < 200; ++i) {
            feed(t, c.segment(seq, line), rx);
            seq += line.size();
        }
        CHECK(t.counters().overflows == 1);
    }
    SECTION("huge Content-Length") {
        const std::string big =
            "INVITE sip:bob@example.com SIP/2.0\r\nContent-Length: 100000000\r\n\r\n";
        feed(t, c.segment(seq, big), rx);
        seq += big.size();
        CHECK(t.counters().overflows == 1);
        CHECK(t.buffers_in_use() == 0);
        // The same, its headers split over two segments (the buffered path).
        feed(t, c.segment(seq, big.substr(0, 30)), rx);
        feed(t, c.segment(seq + 30, big.substr(30)), rx);
        seq += big.size();
        CHECK(t.counters().overflows == 2);
    }
    SECTION("missing Content-Length is invalid framing") {
        const std::string bad = "OPTIONS sip:bob@example.com SIP/2.0\r\nCall-ID: x\r\n\r\n";
        feed(t, c.segment(seq, bad), rx);
        seq += bad.size();
        CHECK(t.counters().invalid_framing == 1);
        CHECK(t.counters().invalid_by_reason[std::size_t(SipError::MissingContentLength)] == 1);
    }
    // Whatever the failure, the stream recovers at the next message.
    const std::string good = sip_message(9, 100);
    CHECK(feed(t, c.segment(seq, good), rx) == 1);
    CHECK(rx.texts.back() == good);
    CHECK(t.buffers_in_use() == 0);
}

TEST_CASE("many streams: the least recently active is evicted", "[reassembly][tcp]") {
    TcpStreamConfig cfg;
    cfg.streams = 64;
    cfg.buffers = 16;
    TcpStreamTable t(cfg);
    const std::string m = sip_message(1, 200);
    Received rx;
    std::vector<Conn> conns;
    for (int i = 0; i < 100; ++i) {
        conns.emplace_back(static_cast<std::uint16_t>(20000 + i));
        feed(t, conns.back().syn(), rx);
        feed(t, conns.back().segment(0, m.substr(0, 100)), rx);
        CHECK(t.streams_in_use() <= 64);
        CHECK(t.buffers_in_use() <= 16);
    }
    CHECK(t.counters().evictions == 36);
    CHECK(t.counters().buffer_steals > 0);
    // The newest stream still holds its partial message and completes it.
    CHECK(feed(t, conns[99].segment(100, m.substr(100)), rx) == 1);
    // An evicted stream comes back mid-message: skipped, then in sync at the next message.
    CHECK(feed(t, conns[0].segment(100, m.substr(100)), rx) == 0);
    CHECK(feed(t, conns[0].segment(m.size(), m), rx) == 1);
    CHECK(rx.texts.size() == 2);
    CHECK(t.streams_in_use() == 64);
}

TEST_CASE("buffer pool exhaustion steals the oldest partial message", "[reassembly][tcp]") {
    TcpStreamConfig cfg;
    cfg.buffers = 2;
    TcpStreamTable t(cfg);
    const std::string m = sip_message(1, 200);
    Conn a(1), b(2), c(3);
    Received rx;
    for (Conn* x : {&a, &b, &c}) {
        feed(t, x->syn(), rx);
        feed(t, x->segment(0, m.substr(0, 50)), rx);
    }
    CHECK(t.counters().buffer_steals == 1);
    CHECK(t.buffers_in_use() == 2);
    CHECK(feed(t, a.segment(50, m.substr(50)), rx) == 0);  // a's buffer went to c
    CHECK(feed(t, b.segment(50, m.substr(50)), rx) == 1);
    CHECK(feed(t, c.segment(50, m.substr(50)), rx) == 1);
}

TEST_CASE("sequence numbers wrap around 2^32", "[reassembly][tcp]") {
    TcpStreamTable t;
    Conn c(40000, 0xFFFFFE00u);
    Received rx;
    feed(t, c.syn(), rx);
    std::vector<std::string> sent;
    std::uint32_t seq = 0;
    for (int i = 0; i < 6; ++i) {
        sent.push_back(sip_message(i, 150));
        const std::string& m = sent.back();
        // Split each message in two so some split points straddle the wrap.
        feed(t, c.segment(seq, m.substr(0, 170)), rx);
        feed(t, c.segment(seq + 170, m.substr(170)), rx);
        seq += m.size();
    }
    CHECK(c.isn + 1 + seq < c.isn);  // the sequence space really wrapped
    CHECK(rx.texts == sent);
    CHECK(t.counters().gaps == 0);
    CHECK(t.counters().retransmissions == 0);
    // A retransmission across the wrap is still recognised as one.
    feed(t, c.segment(seq - 100, sent.back().substr(sent.back().size() - 100)), rx);
    CHECK(t.counters().retransmissions == 1);
    CHECK(rx.texts.size() == sent.size());
}

TEST_CASE("FIN and RST close streams; idle streams expire", "[reassembly][tcp]") {
    TcpStreamConfig cfg;
    cfg.idle_timeout_ns = 60 * kSec;
    TcpStreamTable t(cfg);
    const std::string m = sip_message(1);
    Received rx;
    Conn a(1), b(2), c(3);
    feed(t, a.syn(), rx);
    feed(t, a.segment(0, m.substr(0, 30)), rx);
    // FIN with the rest of the message: delivered, then closed.
    CHECK(feed(t, a.segment(30, m.substr(30), TcpFlags::kAck | TcpFlags::kFin), rx) == 1);
    feed(t, b.syn(), rx);
    feed(t, b.segment(0, m.substr(0, 30)), rx);
    feed(t, b.segment(30, "", TcpFlags::kRst), rx);
    CHECK(t.streams_in_use() == 0);
    CHECK(t.buffers_in_use() == 0);
    CHECK(t.counters().closes == 2);

    feed(t, c.syn(), rx, 0);
    feed(t, c.segment(0, m.substr(0, 30)), rx, 10 * kSec);
    t.expire(69 * kSec);
    CHECK(t.streams_in_use() == 1);
    t.expire(70 * kSec);
    CHECK(t.streams_in_use() == 0);
    CHECK(t.buffers_in_use() == 0);
    CHECK(t.counters().idle_timeouts == 1);
}

TEST_CASE("IPv6 streams, far-behind segments and bad input", "[reassembly][tcp]") {
    TcpStreamTable t;
    Conn c(5, 77, IpFamily::V6);
    Received rx;
    feed(t, c.syn(), rx);
    const std::string m = sip_message(1, 64);
    CHECK(feed(t, c.segment(0, m), rx) == 1);
    // Far behind the expected sequence number: a lost stream, not a retransmission.
    CHECK(feed(t, c.segment(0u - (4u << 20), m), rx) == 1);
    CHECK(t.counters().gaps == 1);
    CHECK(t.counters().retransmissions == 0);

    const IpSpec ip = ip_spec(IpFamily::V4, 1);
    Bytes udp;
    REQUIRE(build_udp_frame(udp, l2_for(ip.src, ip.dst), ip, kUdp, as_bytes(m)));
    PacketInfo info;
    REQUIRE(parse_frame(udp, info) == PacketError::Ok);
    CHECK(t.on_segment(udp, info, 0, [](const StreamMessage&) {}) == 0);
    CHECK(t.counters().bad_segments == 1);

    TcpStreamConfig bad;
    bad.buffer_bytes = 10;
    CHECK(bad.check() != nullptr);
    CHECK(TcpStreamConfig{}.check() == nullptr);
}
