// Tests for the synthetic traffic library: every check re-derives what it verifies from the
// produced bytes with code written here (checksums, header walks, SIP framing, TCP stream
// reassembly, IP reassembly), and the demo capture is cross-checked with tshark when present.

#include <catch2/catch.hpp>

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "tools/traffic/call_flow.hpp"
#include "tools/traffic/frame_builder.hpp"
#include "tools/traffic/pcap_writer.hpp"

using namespace tapwire;
using namespace tapwire::traffic;

namespace {

// ---- independent reference implementations --------------------------------------------

std::uint32_t be16(const std::uint8_t* p) {
    return std::uint32_t(p[0]) << 8 | p[1];
}
std::uint32_t be32(const std::uint8_t* p) {
    return be16(p) << 16 | be16(p + 2);
}

// RFC 1071 sum, not complemented.
std::uint32_t ones_sum(const std::uint8_t* p, std::size_t n, std::uint32_t sum = 0) {
    for (std::size_t i = 0; i < n; ++i)
        sum += (i % 2 == 0) ? std::uint32_t(p[i]) << 8 : p[i];
    while (sum > 0xffff)
        sum = (sum & 0xffff) + (sum >> 16);
    return sum;
}

// A header or segment with its checksum in place sums to 0xffff.
bool checksum_ok(const std::uint8_t* p, std::size_t n, std::uint32_t pseudo = 0) {
    return ones_sum(p, n, pseudo) == 0xffff;
}

struct Parsed {
    bool ok = false;
    std::vector<std::uint16_t> tpids;
    std::vector<std::uint16_t> vlan_ids;
    std::uint16_t ether_type = 0;
    int family = 0;  // 4 or 6
    std::size_t l3 = 0;
    std::vector<std::uint8_t> src, dst;
    std::uint8_t proto = 0;
    std::size_t l4 = 0;      // offset of the UDP/TCP header (or of fragment data)
    std::size_t l4_len = 0;  // bytes of the IP payload after any extension header
    bool ipv4_header_ok = false;
    std::uint32_t ip_id = 0;
    bool df = false;
    bool mf = false;
    std::uint32_t frag_offset = 0;  // bytes
    bool fragment = false;
    std::uint8_t ttl = 0;
    std::uint16_t sport = 0, dport = 0;
    std::uint32_t seq = 0, ack = 0;
    std::uint8_t tcp_flags = 0;
    std::size_t payload = 0, payload_len = 0;

    std::uint32_t pseudo(std::size_t len) const {
        std::uint32_t s = ones_sum(src.data(), src.size());
        s = ones_sum(dst.data(), dst.size(), s);
        s += proto;
        s += std::uint32_t(len >> 16) + std::uint32_t(len & 0xffff);
        while (s > 0xffff)
            s = (s & 0xffff) + (s >> 16);
        return s;
    }
};

Parsed parse(const std::vector<std::uint8_t>& f) {
    Parsed p;
    if (f.size() < 14) return p;
    std::size_t off = 12;
    std::uint16_t et = std::uint16_t(be16(&f[off]));
    while (et == 0x8100 || et == 0x88a8) {
        p.tpids.push_back(et);
        p.vlan_ids.push_back(std::uint16_t(be16(&f[off + 2]) & 0x0fff));
        off += 4;
        et = std::uint16_t(be16(&f[off]));
    }
    p.ether_type = et;
    p.l3 = off + 2;
    const std::uint8_t* ip = f.data() + p.l3;
    if (et == 0x0800) {
        p.family = 4;
        std::size_t ihl = (ip[0] & 0xf) * 4u;
        std::size_t total = be16(ip + 2);
        p.ipv4_header_ok = (ip[0] >> 4) == 4 && checksum_ok(ip, ihl);
        p.ip_id = be16(ip + 4);
        std::uint32_t frag = be16(ip + 6);
        p.df = frag & 0x4000;
        p.mf = frag & 0x2000;
        p.frag_offset = (frag & 0x1fff) * 8;
        p.fragment = p.mf || p.frag_offset != 0;
        p.ttl = ip[8];
        p.proto = ip[9];
        p.src.assign(ip + 12, ip + 16);
        p.dst.assign(ip + 16, ip + 20);
        p.l4 = p.l3 + ihl;
        p.l4_len = total - ihl;
    } else if (et == 0x86dd) {
        p.family = 6;
        std::size_t plen = be16(ip + 4);
        p.proto = ip[6];
        p.ttl = ip[7];
        p.src.assign(ip + 8, ip + 24);
        p.dst.assign(ip + 24, ip + 40);
        p.l4 = p.l3 + 40;
        p.l4_len = plen;
        if (p.proto == 44) {  // Fragment header
            const std::uint8_t* fh = f.data() + p.l4;
            p.proto = fh[0];
            std::uint32_t field = be16(fh + 2);
            p.frag_offset = field & 0xfff8;
            p.mf = field & 1;
            p.ip_id = be32(fh + 4);
            p.fragment = true;
            p.l4 += 8;
            p.l4_len -= 8;
        }
    } else {
        p.ok = true;  // ARP and friends: L2 only
        return p;
    }
    if (p.l4 + p.l4_len > f.size()) return p;
    if (p.fragment && p.frag_offset != 0) {
        p.ok = true;
        return p;
    }
    const std::uint8_t* l4 = f.data() + p.l4;
    p.sport = std::uint16_t(be16(l4));
    p.dport = std::uint16_t(be16(l4 + 2));
    if (p.proto == 17) {
        p.payload = p.l4 + 8;
        p.payload_len = p.fragment ? p.l4_len - 8 : be16(l4 + 4) - 8u;
    } else if (p.proto == 6) {
        p.seq = be32(l4 + 4);
        p.ack = be32(l4 + 8);
        std::size_t doff = (l4[12] >> 4) * 4u;
        p.tcp_flags = l4[13];
        p.payload = p.l4 + doff;
        p.payload_len = p.l4_len - doff;
    }
    p.ok = true;
    return p;
}

// L4 checksum over an unfragmented packet, including the pseudo-header.
bool l4_checksum_ok(const std::vector<std::uint8_t>& f, const Parsed& p) {
    return checksum_ok(f.data() + p.l4, p.l4_len, p.pseudo(p.l4_len));
}

std::string payload_text(const std::vector<std::uint8_t>& f, const Parsed& p) {
    return std::string(reinterpret_cast<const char*>(f.data() + p.payload), p.payload_len);
}

// ---- SIP helpers ---------------------------------------------------------------------

std::string header(const std::string& msg, const std::string& name) {
    std::string key = "\r\n" + name + ":";
    std::size_t at = msg.find(key);
    if (at == std::string::npos) return {};
    std::size_t start = at + key.size();
    while (start < msg.size() && msg[start] == ' ')
        ++start;
    return msg.substr(start, msg.find("\r\n", start) - start);
}

std::size_t header_count(const std::string& msg, const std::string& name) {
    std::size_t n = 0;
    std::string key = "\r\n" + name + ":";
    for (std::size_t at = msg.find(key); at != std::string::npos; at = msg.find(key, at + 1))
        ++n;
    return n;
}

std::string body_of(const std::string& msg) {
    std::size_t end = msg.find("\r\n\r\n");
    return end == std::string::npos ? std::string() : msg.substr(end + 4);
}

// "INVITE", "ACK", ... for requests; "100", "180", ... for responses.
std::string first_token(const std::string& msg) {
    if (msg.rfind("SIP/2.0 ", 0) == 0) return msg.substr(8, 3);
    return msg.substr(0, msg.find(' '));
}

struct CallSip {
    std::vector<std::string> messages;  // in wire order, reassembled
    std::size_t udp_datagram_checksum_failures = 0;
    std::size_t tcp_gaps = 0;  // data segments whose seq did not continue the stream
    std::size_t leftover_stream_bytes = 0;
};

// Rebuilds the SIP messages of one call from its frames: UDP datagrams (reassembling IP
// fragments), TCP streams per direction (checking sequence continuity and framing by
// Content-Length as RFC 3261 section 18.3 requires for streams).
CallSip sip_of_call(const std::vector<LabeledFrame>& frames, int call) {
    CallSip out;
    std::map<std::uint32_t, std::map<std::uint32_t, std::vector<std::uint8_t>>> frags;
    std::map<std::uint32_t, Parsed> first_frag;
    std::map<std::uint16_t, std::string> streams;
    std::map<std::uint16_t, std::uint32_t> next_seq;
    for (const LabeledFrame& fr : frames) {
        if (fr.call_index != call || fr.kind != FrameKind::Sip) continue;
        Parsed p = parse(fr.bytes);
        REQUIRE(p.ok);
        if (p.proto == 17 && !p.fragment) {
            out.messages.push_back(payload_text(fr.bytes, p));
            continue;
        }
        if (p.proto == 17) {
            auto& parts = frags[p.ip_id];
            parts[p.frag_offset].assign(fr.bytes.begin() + std::ptrdiff_t(p.l4),
                                        fr.bytes.begin() + std::ptrdiff_t(p.l4 + p.l4_len));
            if (p.frag_offset == 0) first_frag[p.ip_id] = p;
            if (!p.mf) {
                std::vector<std::uint8_t> dgram;
                for (auto& [off, data] : parts) {
                    REQUIRE(off == dgram.size());  // contiguous, no overlap
                    dgram.insert(dgram.end(), data.begin(), data.end());
                }
                const Parsed& head = first_frag.at(p.ip_id);
                REQUIRE(be16(dgram.data() + 4) == dgram.size());
                if (!checksum_ok(dgram.data(), dgram.size(), head.pseudo(dgram.size()))) {
                    ++out.udp_datagram_checksum_failures;
                }
                out.messages.emplace_back(reinterpret_cast<const char*>(dgram.data()) + 8,
                                          dgram.size() - 8);
                frags.erase(p.ip_id);
            }
            continue;
        }
        REQUIRE(p.proto == 6);
        std::uint32_t consumed = p.payload_len + ((p.tcp_flags & 0x03) ? 1 : 0);  // SYN/FIN
        if (next_seq.count(p.sport) && next_seq[p.sport] != p.seq) ++out.tcp_gaps;
        next_seq[p.sport] = p.seq + consumed;
        std::string& s = streams[p.sport];
        s += payload_text(fr.bytes, p);
        for (;;) {
            std::size_t end = s.find("\r\n\r\n");
            if (end == std::string::npos) break;
            std::string head = s.substr(0, end + 2);
            std::size_t len = std::stoul(header("\r\n" + head, "Content-Length"));
            if (s.size() < end + 4 + len) break;
            out.messages.push_back(s.substr(0, end + 4 + len));
            s.erase(0, end + 4 + len);
        }
    }
    for (auto& [port, s] : streams)
        out.leftover_stream_bytes += s.size();
    return out;
}

std::vector<std::string> dialog_tokens(const CallSip& sip) {
    std::vector<std::string> t;
    for (const std::string& m : sip.messages)
        t.push_back(first_token(m));
    return t;
}

IpAddress ip(const char* text) {
    return *IpAddress::parse(text);
}

CallSpec simple_call() {
    CallSpec c;
    c.caller.uri = "sip:+4940111001@carrier-a.test;user=phone";
    c.caller.display_name = "Bob";
    c.caller.media_ip = ip("10.10.0.1");
    c.caller.rtp_port = 20000;
    c.callee.uri = "sip:+4930555010@carrier-b.test;user=phone";
    c.callee.media_ip = ip("10.20.0.1");
    c.callee.rtp_port = 30000;
    c.caller_proxy = ip("198.51.100.10");
    c.callee_proxy = ip("203.0.113.20");
    c.rtp_packets = 40;
    c.rtcp_every_packets = 10;
    c.targeted = true;
    return c;
}

// Every frame of a call has valid IPv4 header checksums and valid L4 checksums where the
// L4 header is present in one piece.
void check_all_checksums(const std::vector<LabeledFrame>& frames) {
    for (const LabeledFrame& fr : frames) {
        Parsed p = parse(fr.bytes);
        REQUIRE(p.ok);
        if (p.family == 4) CHECK(p.ipv4_header_ok);
        if (p.family != 0 && !p.fragment) {
            INFO(fr.note);
            CHECK(l4_checksum_ok(fr.bytes, p));
        }
    }
}

std::string temp_path(const std::string& name) {
    return (std::filesystem::temp_directory_path() /
            ("tapwire_test_traffic_" + std::to_string(::getpid()) + "_" + name))
        .string();
}

bool run_command(const std::string& cmd, std::string& output) {
    output.clear();
    std::FILE* p = ::popen(cmd.c_str(), "r");
    if (p == nullptr) return false;
    char buf[4096];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0)
        output.append(buf, n);
    return ::pclose(p) == 0;
}

std::vector<std::string> lines_of(const std::string& s) {
    std::vector<std::string> out;
    std::size_t start = 0;
    while (start < s.size()) {
        std::size_t end = s.find('\n', start);
        if (end == std::string::npos) end = s.size();
        out.push_back(s.substr(start, end - start));
        start = end + 1;
    }
    return out;
}

}  // namespace

// ---- frame builder ----------------------------------------------------------------------

TEST_CASE("internet checksum matches the RFC 1071 example", "[traffic][checksum]") {
    // RFC 1071 section 3: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2, checksum 220d.
    const std::uint8_t data[] = {0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7};
    CHECK(internet_checksum(ByteSpan(data, 8)) == 0x220d);
    const std::uint8_t odd[] = {0x12, 0x34, 0x56};  // odd length pads with a zero byte
    CHECK(internet_checksum(ByteSpan(odd, 3)) == std::uint16_t(~(0x1234 + 0x5600)));
}

TEST_CASE("MAC addresses derive deterministically from IPs", "[traffic][frame]") {
    MacAddress m = mac_from_ip(ip("10.1.2.3"));
    CHECK(m == MacAddress{0x02, 0x00, 10, 1, 2, 3});
    MacAddress a = mac_from_ip(ip("2001:db8::1"));
    CHECK(a == mac_from_ip(ip("2001:db8::1")));
    CHECK(a != mac_from_ip(ip("2001:db8::2")));
    CHECK((a[0] & 0x03) == 0x02);  // locally administered, unicast
}

TEST_CASE("UDP over IPv4 with an 802.1Q tag", "[traffic][frame]") {
    std::string text = "hello, udp: long enough to need no Ethernet padding";
    std::vector<std::uint8_t> f;
    IpSpec ips{ip("192.0.2.1"), ip("192.0.2.2"), 61, 0x1234, true, 46, 0};
    REQUIRE(build_udp_frame(f, l2_for(ips.src, ips.dst, VlanTags::dot1q(42)), ips, {5060, 5061},
                            as_bytes(text)));
    CHECK(f.size() == 14 + 4 + 20 + 8 + text.size());
    Parsed p = parse(f);
    REQUIRE(p.ok);
    CHECK(p.tpids == std::vector<std::uint16_t>{0x8100});
    CHECK(p.vlan_ids == std::vector<std::uint16_t>{42});
    CHECK(p.family == 4);
    CHECK(p.ipv4_header_ok);
    CHECK(p.ip_id == 0x1234);
    CHECK(p.df);
    CHECK_FALSE(p.mf);
    CHECK(p.ttl == 61);
    CHECK(f[p.l3 + 1] == 46 << 2);
    CHECK(p.sport == 5060);
    CHECK(p.dport == 5061);
    CHECK(payload_text(f, p) == text);
    CHECK(l4_checksum_ok(f, p));
    CHECK(be16(&f[p.l4 + 6]) != 0);  // checksum sent

    // The fixed-buffer form writes the same bytes and refuses a short buffer.
    std::vector<std::uint8_t> buf(f.size());
    CHECK(build_udp_frame(std::span<std::uint8_t>(buf),
                          l2_for(ips.src, ips.dst, VlanTags::dot1q(42)), ips, {5060, 5061},
                          as_bytes(text)) == f.size());
    CHECK(buf == f);
    std::vector<std::uint8_t> small(f.size() - 1);
    CHECK(build_udp_frame(std::span<std::uint8_t>(small),
                          l2_for(ips.src, ips.dst, VlanTags::dot1q(42)), ips, {5060, 5061},
                          as_bytes(text)) == 0);
}

TEST_CASE("UDP over IPv6 carries a valid mandatory checksum", "[traffic][frame]") {
    std::vector<std::uint8_t> f;
    IpSpec ips;
    ips.src = ip("2001:db8:a::1");
    ips.dst = ip("2001:db8:b::2");
    ips.flow_label = 0x12345;
    std::string text(333, 'x');
    REQUIRE(build_udp_frame(f, l2_for(ips.src, ips.dst), ips, {1000, 2000}, as_bytes(text)));
    Parsed p = parse(f);
    REQUIRE(p.ok);
    CHECK(p.family == 6);
    CHECK((be32(&f[p.l3]) & 0xfffff) == 0x12345);
    CHECK(p.l4_len == 8 + text.size());
    CHECK(be16(&f[p.l4 + 6]) != 0);
    CHECK(l4_checksum_ok(f, p));
}

TEST_CASE("TCP over QinQ with MSS option, seq, ack and flags", "[traffic][frame]") {
    for (const char* a : {"10.0.0.1", "2001:db8::1"}) {
        IpSpec ips;
        ips.src = ip(a);
        ips.dst = ips.src.is_v4() ? ip("10.0.0.2") : ip("2001:db8::2");
        TcpSpec t;
        t.src_port = 40000;
        t.dst_port = 5060;
        t.seq = 0xfffffff0;
        t.ack = 77;
        t.flags = TcpFlags::kSyn | TcpFlags::kAck;
        t.mss_option = 1460;
        std::string text = "abc";  // odd length exercises the checksum's padding byte
        std::vector<std::uint8_t> f;
        REQUIRE(build_tcp_frame(f, l2_for(ips.src, ips.dst, VlanTags::qinq(200, 300)), ips, t,
                                as_bytes(text)));
        Parsed p = parse(f);
        REQUIRE(p.ok);
        CHECK(p.tpids == std::vector<std::uint16_t>{0x88a8, 0x8100});
        CHECK(p.vlan_ids == std::vector<std::uint16_t>{200, 300});
        CHECK(p.seq == 0xfffffff0);
        CHECK(p.ack == 77);
        CHECK(p.tcp_flags == 0x12);
        CHECK(p.payload - p.l4 == 24);
        CHECK(f[p.l4 + 20] == 2);
        CHECK(be16(&f[p.l4 + 22]) == 1460);
        CHECK(payload_text(f, p) == text);
        CHECK(l4_checksum_ok(f, p));
        if (p.family == 4) CHECK(p.ipv4_header_ok);
    }
}

TEST_CASE("short frames are padded to 60 bytes and invalid specs refused", "[traffic][frame]") {
    IpSpec ips{ip("10.0.0.1"), ip("10.0.0.2")};
    std::vector<std::uint8_t> f;
    REQUIRE(build_tcp_frame(f, l2_for(ips.src, ips.dst), ips, TcpSpec{}, {}));
    CHECK(f.size() == 60);
    Parsed p = parse(f);
    CHECK(l4_checksum_ok(f, p));  // the padding is outside the IP length

    IpSpec mixed{ip("10.0.0.1"), ip("2001:db8::1")};
    CHECK_FALSE(build_udp_frame(f, L2Spec{}, mixed, {1, 2}, {}));
    CHECK(f.empty());
    CHECK_FALSE(build_tcp_frame(f, L2Spec{}, IpSpec{}, TcpSpec{}, {}));
    std::vector<std::uint8_t> huge(70000);
    CHECK_FALSE(build_udp_frame(f, L2Spec{}, ips, {1, 2}, ByteSpan(huge)));
}

TEST_CASE("ARP request and reply", "[traffic][frame]") {
    std::vector<std::uint8_t> f;
    MacAddress me = mac_from_ip(ip("10.0.0.1"));
    REQUIRE(build_arp_frame(f, ArpOp::Request, me, ip("10.0.0.1"), {}, ip("10.0.0.2")));
    CHECK(f.size() == 60);
    CHECK(std::equal(f.begin(), f.begin() + 6, kBroadcastMac.begin()));
    CHECK(be16(&f[12]) == 0x0806);
    CHECK(be16(&f[20]) == 1);
    CHECK(std::equal(f.begin() + 28, f.begin() + 32, ip("10.0.0.1").bytes.begin()));
    CHECK(std::equal(f.begin() + 38, f.begin() + 42, ip("10.0.0.2").bytes.begin()));
    CHECK_FALSE(build_arp_frame(f, ArpOp::Reply, me, ip("2001:db8::1"), me, ip("10.0.0.2")));
}

TEST_CASE("IPv4 fragments reassemble to the original datagram", "[traffic][fragment]") {
    std::string text;
    for (int i = 0; text.size() < 4000; ++i)
        text += "line " + std::to_string(i) + "\r\n";
    IpSpec ips{ip("198.51.100.10"), ip("203.0.113.20"), 64, 0xbeef, true};
    auto frames = build_udp_fragments(l2_for(ips.src, ips.dst, VlanTags::dot1q(7)), ips,
                                      {5060, 5060}, as_bytes(text), 1500);
    REQUIRE(frames.size() == 3);
    std::vector<std::uint8_t> dgram;
    Parsed first;
    for (std::size_t i = 0; i < frames.size(); ++i) {
        Parsed p = parse(frames[i]);
        REQUIRE(p.ok);
        CHECK(p.ipv4_header_ok);
        CHECK(p.ip_id == 0xbeef);
        CHECK_FALSE(p.df);
        CHECK(p.mf == (i + 1 < frames.size()));
        CHECK(p.frag_offset == dgram.size());
        CHECK(p.l4_len + 20 <= 1500);
        if (i + 1 < frames.size()) CHECK(p.l4_len % 8 == 0);
        if (i == 0) first = p;
        dgram.insert(dgram.end(), frames[i].begin() + std::ptrdiff_t(p.l4),
                     frames[i].begin() + std::ptrdiff_t(p.l4 + p.l4_len));
    }
    REQUIRE(dgram.size() == 8 + text.size());
    CHECK(be16(&dgram[0]) == 5060);
    CHECK(be16(&dgram[4]) == dgram.size());
    CHECK(std::string(dgram.begin() + 8, dgram.end()) == text);
    CHECK(checksum_ok(dgram.data(), dgram.size(), first.pseudo(dgram.size())));

    // A datagram that fits is not fragmented and keeps DF.
    auto single = build_udp_fragments(l2_for(ips.src, ips.dst), ips, {1, 2},
                                      as_bytes(std::string_view(text).substr(0, 1000)), 1500);
    REQUIRE(single.size() == 1);
    Parsed s = parse(single[0]);
    CHECK_FALSE(s.fragment);
    CHECK(s.df);
    CHECK(build_udp_fragments(l2_for(ips.src, ips.dst), ips, {1, 2}, as_bytes(text), 27).empty());
}

TEST_CASE("IPv6 fragments use a Fragment header and reassemble", "[traffic][fragment]") {
    std::string text(3000, 'v');
    for (std::size_t i = 0; i < text.size(); ++i)
        text[i] = char('a' + i % 26);
    IpSpec ips;
    ips.src = ip("2001:db8:a::10");
    ips.dst = ip("2001:db8:b::20");
    ips.id = 0xdeadbeef;
    auto frames =
        build_udp_fragments(l2_for(ips.src, ips.dst), ips, {5060, 5060}, as_bytes(text), 1280);
    REQUIRE(frames.size() == 3);
    std::vector<std::uint8_t> dgram;
    Parsed first;
    for (std::size_t i = 0; i < frames.size(); ++i) {
        Parsed p = parse(frames[i]);
        REQUIRE(p.ok);
        CHECK(p.fragment);
        CHECK(p.ip_id == 0xdeadbeef);
        CHECK(p.mf == (i + 1 < frames.size()));
        CHECK(p.frag_offset == dgram.size());
        CHECK(40 + 8 + p.l4_len <= 1280);
        if (i == 0) first = p;
        dgram.insert(dgram.end(), frames[i].begin() + std::ptrdiff_t(p.l4),
                     frames[i].begin() + std::ptrdiff_t(p.l4 + p.l4_len));
    }
    CHECK(std::string(dgram.begin() + 8, dgram.end()) == text);
    CHECK(checksum_ok(dgram.data(), dgram.size(), first.pseudo(dgram.size())));
}

// ---- call flows ---------------------------------------------------------------------------

TEST_CASE("a basic call renders a complete, consistent dialog", "[traffic][call]") {
    CallSpec spec = simple_call();
    auto frames = render_call(spec, 3, kDefaultEpochNs, 42);
    REQUIRE(!frames.empty());
    check_all_checksums(frames);
    for (std::size_t i = 1; i < frames.size(); ++i) {
        CHECK(frames[i - 1].time_ns <= frames[i].time_ns);
    }
    for (const LabeledFrame& f : frames) {
        CHECK(f.call_index == 3);
        CHECK(f.targeted);
        CHECK(f.time_ns >= kDefaultEpochNs);
        CHECK(f.time_ns % 1000 == 0);  // microsecond grid: lossless in a microsecond pcap
    }

    CallSip sip = sip_of_call(frames, 3);
    CHECK(dialog_tokens(sip) ==
          std::vector<std::string>{"INVITE", "100", "180", "200", "ACK", "BYE", "200"});
    std::string call_id = header(sip.messages[0], "Call-ID");
    CHECK(!call_id.empty());
    std::string from_tag = header(sip.messages[0], "From");
    from_tag = from_tag.substr(from_tag.find(";tag="));
    for (const std::string& m : sip.messages) {
        INFO(m);
        CHECK(header(m, "Call-ID") == call_id);
        CHECK(std::stoul(header(m, "Content-Length")) == body_of(m).size());
        CHECK(header(m, "Via").rfind("SIP/2.0/UDP ", 0) == 0);
        CHECK(header(m, "Via").find(";branch=z9hG4bK") != std::string::npos);
        CHECK(!header(m, "CSeq").empty());
        std::string from = header(m, "From");
        std::string to = header(m, "To");
        CHECK((from.find(from_tag) != std::string::npos || to.find(from_tag) != std::string::npos));
    }
    const std::string& invite = sip.messages[0];
    CHECK(invite.rfind("INVITE sip:+4930555010@carrier-b.test;user=phone SIP/2.0\r\n", 0) == 0);
    CHECK(header(invite, "Max-Forwards") == "69");
    CHECK(header_count(invite, "Via") == 2);
    CHECK(header(invite, "Content-Type") == "application/sdp");
    std::string offer = body_of(invite);
    CHECK(offer.rfind("v=0\r\n", 0) == 0);
    CHECK(offer.find("\r\no=tapwire ") != std::string::npos);
    CHECK(offer.find("\r\nc=IN IP4 10.10.0.1\r\n") != std::string::npos);
    CHECK(offer.find("\r\nm=audio 20000 RTP/AVP 0 101\r\n") != std::string::npos);
    CHECK(offer.find("\r\na=rtpmap:0 PCMU/8000\r\n") != std::string::npos);
    CHECK(offer.find("\r\na=sendrecv\r\n") != std::string::npos);
    CHECK(header(sip.messages[1], "To").find(";tag=") == std::string::npos);  // 100 Trying
    const std::string& ok = sip.messages[3];
    CHECK(header(ok, "CSeq") == "1 INVITE");
    CHECK(header(ok, "To").find(";tag=") != std::string::npos);
    CHECK(body_of(ok).find("\r\nm=audio 30000 RTP/AVP 0 101\r\n") != std::string::npos);
    CHECK(header(sip.messages[4], "CSeq") == "1 ACK");
    CHECK(header(sip.messages[4], "Via") != header(invite, "Via"));  // new transaction
    CHECK(header(sip.messages[5], "CSeq") == "2 BYE");
    CHECK(header(sip.messages[6], "CSeq") == "2 BYE");
    // Responses echo their request's Via branch.
    CHECK(header(sip.messages[1], "Via") == header(invite, "Via"));
    CHECK(header(sip.messages[6], "Via") == header(sip.messages[5], "Via"));
}

TEST_CASE("RTP and RTCP headers are correct per direction", "[traffic][rtp]") {
    CallSpec spec = simple_call();
    auto frames = render_call(spec, 0, kDefaultEpochNs, 7);
    std::map<std::uint16_t, std::vector<Parsed>> rtp;  // by source port
    std::map<std::uint16_t, std::vector<const LabeledFrame*>> rtp_frames;
    std::size_t rtcp = 0;
    for (const LabeledFrame& f : frames) {
        Parsed p = parse(f.bytes);
        if (f.kind == FrameKind::Rtp) {
            CHECK(f.bytes.size() == 214);  // G.711 20 ms on Ethernet/IPv4/UDP/RTP
            CHECK(p.payload_len == 12 + 160);
            rtp[p.sport].push_back(p);
            rtp_frames[p.sport].push_back(&f);
        } else if (f.kind == FrameKind::Rtcp) {
            ++rtcp;
            CHECK((p.sport == 20001 || p.sport == 30001));
            CHECK(p.dport == (p.sport == 20001 ? 30001 : 20001));
            const std::uint8_t* r = f.bytes.data() + p.payload;
            CHECK(r[0] == 0x81);  // V=2, one report block
            CHECK(r[1] == 200);   // SR
            std::size_t sr_len = (be16(r + 2) + 1) * 4;
            CHECK(sr_len == 52);
            CHECK(r[sr_len] >> 6 == 2);
            CHECK(r[sr_len + 1] == 202);  // SDES follows in the compound packet
            CHECK(sr_len + (be16(r + sr_len + 2) + 1) * 4 == p.payload_len);
            std::uint32_t count = be32(r + 20);
            CHECK(count % 10 == 0);  // one SR every 10 RTP packets
            CHECK(be32(r + 24) == count * 160);
            std::uint32_t ntp_sec = be32(r + 8);
            CHECK(ntp_sec == std::uint32_t(f.time_ns / 1000000000u + 2208988800u));
        }
    }
    CHECK(rtcp == 8);
    REQUIRE(rtp.size() == 2);
    std::set<std::uint32_t> ssrcs;
    for (auto& [port, pkts] : rtp) {
        REQUIRE(pkts.size() == 40);
        const auto& fs = rtp_frames[port];
        std::uint32_t ssrc = be32(fs[0]->bytes.data() + pkts[0].payload + 8);
        ssrcs.insert(ssrc);
        for (std::size_t i = 0; i < pkts.size(); ++i) {
            const std::uint8_t* r = fs[i]->bytes.data() + pkts[i].payload;
            CHECK(r[0] == 0x80);                   // V=2, P=0, X=0, CC=0
            CHECK((r[1] & 0x7f) == 0);             // PT 0 PCMU
            CHECK(bool(r[1] & 0x80) == (i == 0));  // marker on the first packet only
            CHECK(be32(r + 8) == ssrc);
            if (i > 0) {
                const std::uint8_t* prev = fs[i - 1]->bytes.data() + pkts[i - 1].payload;
                CHECK(std::uint16_t(be16(r + 2) - be16(prev + 2)) == 1);
                CHECK(be32(r + 4) - be32(prev + 4) == 160);
                std::uint64_t gap = fs[i]->time_ns - fs[i - 1]->time_ns;
                CHECK(gap > 19000000);
                CHECK(gap < 21000000);
            }
        }
    }
    CHECK(ssrcs.size() == 2);
}

TEST_CASE("codecs: G.729 20 bytes, Opus 60..120 bytes with a TOC byte", "[traffic][rtp]") {
    for (Codec codec : {Codec::G729, Codec::Opus}) {
        CallSpec spec = simple_call();
        spec.codec = codec;
        auto frames = render_call(spec, 0, kDefaultEpochNs, 1);
        CallSip sip = sip_of_call(frames, 0);
        const CodecInfo& info = codec_info(codec);
        std::string pt = std::to_string(info.payload_type);
        CHECK(body_of(sip.messages[0]).find("a=rtpmap:" + pt + " ") != std::string::npos);
        std::size_t rtp = 0;
        for (const LabeledFrame& f : frames) {
            if (f.kind != FrameKind::Rtp) continue;
            ++rtp;
            Parsed p = parse(f.bytes);
            const std::uint8_t* r = f.bytes.data() + p.payload;
            CHECK((r[1] & 0x7f) == info.payload_type);
            std::size_t n = p.payload_len - 12;
            if (codec == Codec::G729) CHECK(n == 20);
            if (codec == Codec::Opus) {
                CHECK(n >= 60);
                CHECK(n <= 120);
                CHECK(r[12] == 0x78);
            }
        }
        CHECK(rtp == 80);
    }
}

TEST_CASE("SIP over TCP: handshake, contiguous streams, split and coalesced messages",
          "[traffic][tcp]") {
    CallSpec spec = simple_call();
    spec.transport = SipTransport::Tcp;
    spec.tcp_split_invite = true;
    spec.tcp_coalesce_provisional = true;
    spec.caller_proxy = ip("2001:db8:a::10");
    spec.callee_proxy = ip("2001:db8:b::20");
    auto frames = render_call(spec, 0, kDefaultEpochNs, 9);
    check_all_checksums(frames);

    std::vector<Parsed> tcp;
    std::vector<const LabeledFrame*> tcp_frames;
    for (const LabeledFrame& f : frames) {
        if (f.kind != FrameKind::Sip) continue;
        tcp.push_back(parse(f.bytes));
        tcp_frames.push_back(&f);
    }
    REQUIRE(tcp.size() > 6);
    CHECK(tcp[0].tcp_flags == 0x02);  // SYN
    CHECK(tcp[0].dport == 5060);
    CHECK(tcp[0].sport >= 32768);
    CHECK(tcp[1].tcp_flags == 0x12);  // SYN-ACK
    CHECK(tcp[1].ack == tcp[0].seq + 1);
    CHECK(tcp[2].tcp_flags == 0x10);
    CHECK(tcp[2].seq == tcp[0].seq + 1);
    CHECK(tcp[2].ack == tcp[1].seq + 1);
    CHECK(tcp.back().tcp_flags == 0x10);  // the final ACK of the FIN exchange
    CHECK((tcp[tcp.size() - 2].tcp_flags & 0x01) == 0x01);

    // Every segment acknowledges everything the peer sent before it.
    std::map<std::uint16_t, std::uint32_t> sent_end;
    for (const Parsed& p : tcp) {
        std::uint16_t peer = p.sport == 5060 ? p.dport : 5060;
        if (p.tcp_flags != 0x02 && sent_end.count(peer)) CHECK(p.ack == sent_end[peer]);
        sent_end[p.sport] = p.seq + std::uint32_t(p.payload_len) + ((p.tcp_flags & 0x03) ? 1 : 0);
    }

    bool split_seen = false;
    bool coalesced_seen = false;
    for (std::size_t i = 0; i < tcp.size(); ++i) {
        if (tcp[i].payload_len > 0 && tcp_frames[i]->sip_messages == 0) split_seen = true;
        if (tcp_frames[i]->sip_messages == 2) coalesced_seen = true;
    }
    CHECK(split_seen);
    CHECK(coalesced_seen);

    CallSip sip = sip_of_call(frames, 0);
    CHECK(sip.tcp_gaps == 0);
    CHECK(sip.leftover_stream_bytes == 0);
    CHECK(dialog_tokens(sip) ==
          std::vector<std::string>{"INVITE", "100", "180", "200", "ACK", "BYE", "200"});
    for (const std::string& m : sip.messages) {
        std::string via = header(m, "Via");
        bool proxy_via = via.rfind("SIP/2.0/TCP [2001:db8:a::10]:5060;branch=z9hG4bK", 0) == 0 ||
                         via.rfind("SIP/2.0/TCP [2001:db8:b::20]:5060;branch=z9hG4bK", 0) == 0;
        CHECK(proxy_via);
    }
    CHECK(header(sip.messages[0], "Record-Route") == "<sip:[2001:db8:a::10];transport=tcp;lr>");
}

TEST_CASE("a large INVITE is IPv4-fragmented and reassembles", "[traffic][fragment]") {
    CallSpec spec = simple_call();
    spec.large_invite = true;
    auto frames = render_call(spec, 0, kDefaultEpochNs, 5);
    std::size_t fragments = 0;
    for (const LabeledFrame& f : frames) {
        Parsed p = parse(f.bytes);
        if (p.fragment) {
            ++fragments;
            CHECK(p.l4_len + 20 <= spec.mtu);
            CHECK(f.sip_messages == (p.mf ? 0 : 1));
        }
    }
    CHECK(fragments >= 2);
    check_all_checksums(frames);
    CallSip sip = sip_of_call(frames, 0);
    CHECK(sip.udp_datagram_checksum_failures == 0);
    REQUIRE(!sip.messages.empty());
    const std::string& invite = sip.messages[0];
    CHECK(invite.size() + 8 + 20 > spec.mtu);
    CHECK(std::stoul(header(invite, "Content-Length")) == body_of(invite).size());
    CHECK(body_of(invite).find("a=rtpmap:0 PCMU/8000") != std::string::npos);
    CHECK(dialog_tokens(sip).size() == 7);
}

TEST_CASE("a re-INVITE moves the caller's media", "[traffic][reinvite]") {
    CallSpec spec = simple_call();
    spec.rtp_packets = 60;
    spec.reinvite = MediaMove{20, ip("10.10.0.99"), 40000};
    auto frames = render_call(spec, 0, kDefaultEpochNs, 3);
    CallSip sip = sip_of_call(frames, 0);
    CHECK(dialog_tokens(sip) == std::vector<std::string>{"INVITE", "100", "180", "200", "ACK",
                                                         "INVITE", "200", "ACK", "BYE", "200"});
    const std::string& re = sip.messages[5];
    CHECK(header(re, "CSeq") == "2 INVITE");
    CHECK(header(re, "To").find(";tag=") != std::string::npos);
    CHECK(header(re, "Route") == "<sip:203.0.113.20;lr>");
    CHECK(body_of(re).find("\r\nc=IN IP4 10.10.0.99\r\n") != std::string::npos);
    CHECK(body_of(re).find("\r\nm=audio 40000 ") != std::string::npos);
    CHECK(body_of(re).find(" 2 IN IP4 ") != std::string::npos);  // o= version bumped
    CHECK(header(sip.messages[8], "CSeq") == "3 BYE");

    // Find the time of the re-INVITE's 200 OK; caller RTP after it uses the new address.
    std::uint64_t switch_time = 0;
    int sip_seen = 0;
    for (const LabeledFrame& f : frames) {
        if (f.kind == FrameKind::Sip && ++sip_seen == 7) switch_time = f.time_ns;
    }
    REQUIRE(switch_time != 0);
    std::size_t old_caller = 0, new_caller = 0, old_callee = 0, new_callee = 0;
    IpAddress moved = ip("10.10.0.99");
    for (const LabeledFrame& f : frames) {
        if (f.kind != FrameKind::Rtp) continue;
        Parsed p = parse(f.bytes);
        bool from_caller = p.dport == 30000;
        bool after = f.time_ns > switch_time;
        if (from_caller) {
            bool is_new =
                p.sport == 40000 && std::equal(p.src.begin(), p.src.end(), moved.bytes.begin());
            CHECK(is_new == after);
            (is_new ? new_caller : old_caller)++;
        } else {
            bool is_new =
                p.dport == 40000 && std::equal(p.dst.begin(), p.dst.end(), moved.bytes.begin());
            CHECK(is_new == after);
            (is_new ? new_callee : old_callee)++;
        }
    }
    CHECK(old_caller + new_caller == 60);
    CHECK(old_callee + new_callee == 60);
    CHECK(old_caller >= 15);
    CHECK(new_caller >= 30);
    CHECK(new_callee >= 30);
}

TEST_CASE("an abandoned call: answered, media, no BYE", "[traffic][call]") {
    CallSpec spec = simple_call();
    spec.ending = CallEnding::Abandoned;
    const auto frames = render_call(spec, 0, kDefaultEpochNs, 11);
    CHECK(dialog_tokens(sip_of_call(frames, 0)) ==
          std::vector<std::string>{"INVITE", "100", "180", "200", "ACK"});
    CHECK(std::count_if(frames.begin(), frames.end(),
                        [](const LabeledFrame& f) { return f.kind == FrameKind::Rtp; }) > 0);
    CHECK(frames.back().kind != FrameKind::Sip);  // the media is the last of it
}

TEST_CASE("CANCEL and busy endings", "[traffic][call]") {
    CallSpec spec = simple_call();
    spec.ending = CallEnding::Cancel;
    auto frames = render_call(spec, 0, kDefaultEpochNs, 11);
    CallSip sip = sip_of_call(frames, 0);
    CHECK(dialog_tokens(sip) ==
          std::vector<std::string>{"INVITE", "100", "180", "CANCEL", "200", "487", "ACK"});
    std::string invite_branch = header(sip.messages[0], "Via");
    CHECK(header(sip.messages[3], "Via") == invite_branch);  // CANCEL matches the INVITE
    CHECK(header(sip.messages[3], "CSeq") == "1 CANCEL");
    CHECK(header(sip.messages[4], "CSeq") == "1 CANCEL");
    CHECK(header(sip.messages[6], "Via") == invite_branch);  // ACK of a non-2xx
    CHECK(header(sip.messages[6], "CSeq") == "1 ACK");
    for (const LabeledFrame& f : frames)
        CHECK(f.kind == FrameKind::Sip);

    spec.ending = CallEnding::Busy;
    frames = render_call(spec, 0, kDefaultEpochNs, 11);
    sip = sip_of_call(frames, 0);
    CHECK(dialog_tokens(sip) == std::vector<std::string>{"INVITE", "100", "486", "ACK"});
    CHECK(header(sip.messages[2], "To").find(";tag=") != std::string::npos);
    for (const LabeledFrame& f : frames)
        CHECK(f.kind == FrameKind::Sip);
}

TEST_CASE("REGISTER with a digest challenge, and MESSAGE", "[traffic][call]") {
    CallSpec reg;
    reg.kind = SessionKind::Register;
    reg.caller.uri = "sip:alice@tapwire.test";
    reg.caller.media_ip = ip("10.10.0.5");
    reg.caller_proxy = ip("198.51.100.10");
    reg.callee_proxy = ip("203.0.113.20");
    auto frames = render_call(reg, 0, kDefaultEpochNs, 1);
    CallSip sip = sip_of_call(frames, 0);
    CHECK(dialog_tokens(sip) == std::vector<std::string>{"REGISTER", "401", "REGISTER", "200"});
    CHECK(sip.messages[0].rfind("REGISTER sip:tapwire.test SIP/2.0\r\n", 0) == 0);
    CHECK(header(sip.messages[0], "To") == "<sip:alice@tapwire.test>");
    CHECK(header(sip.messages[1], "WWW-Authenticate").rfind("Digest realm=\"tapwire.test\"", 0) ==
          0);
    CHECK(header(sip.messages[0], "Authorization").empty());
    CHECK(header(sip.messages[2], "Authorization").rfind("Digest username=\"alice\"", 0) == 0);
    CHECK(header(sip.messages[0], "CSeq") == "1 REGISTER");
    CHECK(header(sip.messages[2], "CSeq") == "2 REGISTER");
    CHECK(header(sip.messages[0], "Call-ID") == header(sip.messages[3], "Call-ID"));

    CallSpec msg = reg;
    msg.kind = SessionKind::Message;
    msg.caller.uri = "sip:grace@example.test";
    msg.callee.uri = "tel:+4930555010";
    msg.message_text = "ping";
    msg.transport = SipTransport::Tcp;
    frames = render_call(msg, 0, kDefaultEpochNs, 1);
    sip = sip_of_call(frames, 0);
    CHECK(dialog_tokens(sip) == std::vector<std::string>{"MESSAGE", "200"});
    CHECK(header(sip.messages[0], "Content-Type") == "text/plain;charset=UTF-8");
    CHECK(body_of(sip.messages[0]) == "ping");
    CHECK(header(sip.messages[0], "Content-Length") == "4");
}

TEST_CASE("invalid call specs are rejected with a reason", "[traffic][call]") {
    CallSpec spec = simple_call();
    CHECK(validate(spec).empty());
    spec.callee_proxy = ip("2001:db8::1");
    CHECK(validate(spec).find("different IP families") != std::string::npos);
    CHECK_THROWS_AS(render_call(spec, 0, 0, 1), std::invalid_argument);
    spec = simple_call();
    spec.caller.rtp_port = 0;
    CHECK(!validate(spec).empty());
    spec = simple_call();
    spec.vlans = VlanTags::dot1q(5000);
    CHECK(!validate(spec).empty());
    spec = simple_call();
    spec.reinvite = MediaMove{10, ip("10.0.0.1"), 4000};
    spec.ending = CallEnding::Busy;
    CHECK(!validate(spec).empty());
}

TEST_CASE("rendering is deterministic given a seed", "[traffic][scenario]") {
    Scenario s = *make_scenario("basic");
    auto a = render_scenario(s, 5);
    auto b = render_scenario(s, 5);
    auto c = render_scenario(s, 6);
    REQUIRE(a.size() == b.size());
    bool same = true;
    for (std::size_t i = 0; i < a.size(); ++i) {
        same = same && a[i].bytes == b[i].bytes && a[i].time_ns == b[i].time_ns;
    }
    CHECK(same);
    bool differs = a.size() != c.size();
    for (std::size_t i = 0; !differs && i < a.size(); ++i)
        differs = a[i].bytes != c[i].bytes;
    CHECK(differs);
    auto m1 = make_scenario("mix", 3);
    auto m2 = make_scenario("mix", 4);
    REQUIRE(m1);
    REQUIRE(m2);
    CHECK(m1->calls.size() == m2->calls.size());
    CHECK(m1->calls[0].start_ns != m2->calls[0].start_ns);
}

TEST_CASE("scenario list and unknown names", "[traffic][scenario]") {
    std::set<std::string> names;
    for (const ScenarioInfo& s : list_scenarios()) {
        names.insert(std::string(s.name));
        auto sc = make_scenario(s.name);
        REQUIRE(sc);
        CHECK(sc->name == s.name);
        CHECK(!sc->targets.empty());
        for (const CallSpec& c : sc->calls)
            CHECK(validate(c).empty());
    }
    CHECK(names.count("demo"));
    CHECK(names.count("basic"));
    CHECK_FALSE(make_scenario("no-such-scenario"));
}

TEST_CASE("the demo scenario covers every feature and labels targets truthfully",
          "[traffic][scenario]") {
    Scenario s = *make_scenario("demo");
    CHECK(s.calls.size() >= 12);
    CHECK(s.targets == std::vector<std::string>{"+4930555010", "sip:alice@tapwire.test"});
    bool udp = false, tcp = false, v6 = false, vlan = false, qinq = false, large = false,
         reinvite = false, diversion = false, cancel = false, busy = false, reg = false,
         msg = false, targeted = false, untargeted = false;
    for (const CallSpec& c : s.calls) {
        udp |= c.transport == SipTransport::Udp;
        tcp |= c.transport == SipTransport::Tcp;
        v6 |= c.caller.media_ip.is_v6();
        vlan |= c.vlans.count == 1;
        qinq |= c.vlans.count == 2;
        large |= c.large_invite;
        reinvite |= c.reinvite.has_value();
        diversion |= !c.diversion.empty();
        cancel |= c.ending == CallEnding::Cancel && c.kind == SessionKind::Call;
        busy |= c.ending == CallEnding::Busy && c.kind == SessionKind::Call;
        reg |= c.kind == SessionKind::Register && c.targeted;
        msg |= c.kind == SessionKind::Message && c.targeted;
        targeted |= c.targeted && c.kind == SessionKind::Call;
        untargeted |= !c.targeted && c.kind == SessionKind::Call;
    }
    CHECK((udp && tcp && v6 && vlan && qinq && large && reinvite && diversion && cancel && busy &&
           reg && msg && targeted && untargeted));

    auto frames = render_scenario(s, 1);
    for (std::size_t i = 1; i < frames.size(); ++i) {
        REQUIRE(frames[i - 1].time_ns <= frames[i].time_ns);
    }
    check_all_checksums(frames);
    std::map<FrameKind, std::size_t> kinds;
    for (const LabeledFrame& f : frames) {
        ++kinds[f.kind];
        if (f.call_index < 0) {
            CHECK(f.kind == FrameKind::Background);
            CHECK_FALSE(f.targeted);
        } else {
            CHECK(f.targeted == s.calls[std::size_t(f.call_index)].targeted);
        }
    }
    CHECK(kinds[FrameKind::Sip] > 0);
    CHECK(kinds[FrameKind::Rtp] > 0);
    CHECK(kinds[FrameKind::Rtcp] > 0);
    CHECK(kinds[FrameKind::Background] > 0);

    // A call is labelled targeted exactly when a target identity appears in its SIP.
    for (std::size_t i = 0; i < s.calls.size(); ++i) {
        CallSip sip = sip_of_call(frames, int(i));
        INFO("call " << i);
        REQUIRE(!sip.messages.empty());
        CHECK(sip.leftover_stream_bytes == 0);
        CHECK(sip.tcp_gaps == 0);
        CHECK(sip.udp_datagram_checksum_failures == 0);
        bool mentions = false;
        std::set<std::string> call_ids;
        for (const std::string& m : sip.messages) {
            mentions |= m.find("+4930555010") != std::string::npos ||
                        m.find("alice@tapwire.test") != std::string::npos;
            call_ids.insert(header(m, "Call-ID"));
            CHECK(std::stoul(header(m, "Content-Length")) == body_of(m).size());
        }
        CHECK(mentions == s.calls[i].targeted);
        CHECK(call_ids.size() == 1);
    }
}

// ---- pcap ----------------------------------------------------------------------------------

TEST_CASE("pcap write and read round-trip in both precisions", "[traffic][pcap]") {
    auto frames = render_scenario(*make_scenario("basic"), 1);
    for (PcapPrecision prec : {PcapPrecision::Microsecond, PcapPrecision::Nanosecond}) {
        std::string path = temp_path(prec == PcapPrecision::Nanosecond ? "ns.pcap" : "us.pcap");
        std::string error;
        PcapWriter w;
        REQUIRE(w.open(path, prec, error));
        for (const LabeledFrame& f : frames)
            REQUIRE(w.write(f.time_ns + 789, f.bytes, error));
        CHECK(w.packets_written() == frames.size());
        REQUIRE(w.close(error));
        PcapReadResult r = read_pcap(path);
        std::remove(path.c_str());
        REQUIRE(r);
        CHECK(r.contents->precision == prec);
        CHECK_FALSE(r.contents->big_endian);
        CHECK(r.contents->linktype == kLinktypeEthernet);
        REQUIRE(r.contents->packets.size() == frames.size());
        for (std::size_t i = 0; i < frames.size(); ++i) {
            const PcapPacket& p = r.contents->packets[i];
            CHECK(p.data == frames[i].bytes);
            CHECK(p.original_length == frames[i].bytes.size());
            std::uint64_t want = frames[i].time_ns + (prec == PcapPrecision::Nanosecond ? 789 : 0);
            CHECK(p.time_ns == want);
        }
    }
}

TEST_CASE("pcap reader handles big-endian files and snaplen-cut records", "[traffic][pcap]") {
    // A big-endian nanosecond file written by hand: header then one 4-byte record of 6.
    std::vector<std::uint8_t> be = {0xa1, 0xb2, 0x3c, 0x4d, 0, 2,    0,    4,    0,    0,    0,
                                    0,    0,    0,    0,    0, 0,    0,    0,    4,    0,    0,
                                    0,    1,    0x65, 0x92, 0, 0x80, 0x07, 0x5b, 0xcd, 0x15, 0,
                                    0,    0,    4,    0,    0, 0,    6,    1,    2,    3,    4};
    PcapReadResult r = parse_pcap(ByteSpan(be));
    REQUIRE(r);
    CHECK(r.contents->big_endian);
    CHECK(r.contents->precision == PcapPrecision::Nanosecond);
    CHECK(r.contents->snaplen == 4);
    REQUIRE(r.contents->packets.size() == 1);
    CHECK(r.contents->packets[0].time_ns == 0x65920080ull * 1000000000ull + 123456789ull);
    CHECK(r.contents->packets[0].original_length == 6);
    CHECK(r.contents->packets[0].data == std::vector<std::uint8_t>{1, 2, 3, 4});

    std::vector<std::uint8_t> le;
    append_pcap_header(le, PcapPrecision::Microsecond, 8);
    std::vector<std::uint8_t> frame(20, 0xab);
    append_pcap_record(le, PcapPrecision::Microsecond, 1500000001999ull, frame, 8);
    r = parse_pcap(ByteSpan(le));
    REQUIRE(r);
    CHECK(r.contents->packets[0].data.size() == 8);
    CHECK(r.contents->packets[0].original_length == 20);
    CHECK(r.contents->packets[0].time_ns == 1500000001000ull);
}

TEST_CASE("pcap reader reports bad files clearly", "[traffic][pcap]") {
    std::vector<std::uint8_t> good;
    append_pcap_header(good, PcapPrecision::Microsecond);
    append_pcap_record(good, PcapPrecision::Microsecond, 1000, std::vector<std::uint8_t>(50, 1));

    CHECK(parse_pcap(ByteSpan(good.data(), 10)).error.find("24-byte global header") !=
          std::string::npos);
    std::vector<std::uint8_t> bad = good;
    bad[0] = 0x00;
    CHECK(parse_pcap(ByteSpan(bad)).error.find("unknown magic") != std::string::npos);
    std::vector<std::uint8_t> ng = {0x0a, 0x0d, 0x0d, 0x0a};
    ng.resize(32);
    CHECK(parse_pcap(ByteSpan(ng)).error.find("pcapng") != std::string::npos);
    CHECK(parse_pcap(ByteSpan(good.data(), good.size() - 1)).error.find("truncated pcap") !=
          std::string::npos);
    CHECK(parse_pcap(ByteSpan(good.data(), 24 + 5)).error.find("record header") !=
          std::string::npos);
    bad = good;
    bad[24 + 8] = 60;  // caplen 60 > origlen 50
    std::string caplen_error = parse_pcap(ByteSpan(bad)).error;
    CHECK(caplen_error.find("exceeds original length") != std::string::npos);
    bad = good;
    bad[4] = 3;
    CHECK(parse_pcap(ByteSpan(bad)).error.find("version") != std::string::npos);
    PcapReadResult missing = read_pcap("/nonexistent/dir/file.pcap");
    CHECK_FALSE(missing);
    CHECK(missing.error.find("cannot open /nonexistent/dir/file.pcap") != std::string::npos);
    PcapWriter w;
    std::string error;
    CHECK_FALSE(w.open("/nonexistent/dir/out.pcap", PcapPrecision::Microsecond, error));
    CHECK(error.find("cannot create") != std::string::npos);
    CHECK_FALSE(w.write(0, good, error));
}

// ---- cross-check with Wireshark --------------------------------------------------------

TEST_CASE("tshark decodes the demo capture: SIP counts, RTP/RTCP, no malformed packets",
          "[traffic][tshark]") {
    std::string out;
    if (!run_command("command -v tshark >/dev/null 2>&1", out)) {
        WARN("tshark not installed: skipping the Wireshark cross-check");
        return;
    }
    Scenario s = *make_scenario("demo");
    auto frames = render_scenario(s, 1);
    std::string path = temp_path("demo.pcap");
    std::string error;
    PcapWriter w;
    REQUIRE(w.open(path, PcapPrecision::Microsecond, error));
    for (const LabeledFrame& f : frames)
        REQUIRE(w.write(f.time_ns, f.bytes, error));
    REQUIRE(w.close(error));

    // tshark refuses to start in some sandboxes; that is a skip, not a failure.
    std::string base = "tshark -n -r '" + path + "' ";
    if (!run_command(base + "-c 1 >/dev/null 2>&1", out)) {
        std::remove(path.c_str());
        WARN("tshark cannot run here: skipping the Wireshark cross-check");
        return;
    }

    // One row per frame; a frame with two SIP messages lists both, comma-separated.
    REQUIRE(run_command(base + "-T fields -E separator=/t -e frame.number -e sip.Method "
                               "-e sip.Status-Code -e rtp.ssrc -e rtcp.pt 2>/dev/null",
                        out));
    auto rows = lines_of(out);
    REQUIRE(rows.size() == frames.size());
    std::size_t sip_messages = 0;
    std::size_t expected_sip = 0;
    std::size_t rtp_mismatch = 0, rtcp_mismatch = 0, sip_mismatch = 0;
    for (std::size_t i = 0; i < rows.size(); ++i) {
        std::vector<std::string> cols;
        std::size_t start = 0;
        for (;;) {
            std::size_t tab = rows[i].find('\t', start);
            cols.push_back(rows[i].substr(start, tab - start));
            if (tab == std::string::npos) break;
            start = tab + 1;
        }
        cols.resize(5);
        std::size_t in_frame = 0;
        for (int c : {1, 2}) {
            if (!cols[c].empty()) in_frame += 1 + std::count(cols[c].begin(), cols[c].end(), ',');
        }
        sip_messages += in_frame;
        expected_sip += frames[i].sip_messages;
        sip_mismatch += in_frame != frames[i].sip_messages;
        rtp_mismatch += (frames[i].kind == FrameKind::Rtp) != !cols[3].empty();
        rtcp_mismatch += (frames[i].kind == FrameKind::Rtcp) != !cols[4].empty();
    }
    CHECK(sip_messages == expected_sip);
    CHECK(sip_messages >= 90);
    CHECK(sip_mismatch == 0);
    CHECK(rtp_mismatch == 0);  // Wireshark found every RTP stream from the SDP alone
    CHECK(rtcp_mismatch == 0);

    REQUIRE(run_command(base + "-Y _ws.malformed 2>/dev/null", out));
    CHECK(lines_of(out).empty());

    // Wireshark's own checksum validation agrees.
    REQUIRE(run_command(base + "-o ip.check_checksum:TRUE -o udp.check_checksum:TRUE "
                               "-o tcp.check_checksum:TRUE -Y 'ip.checksum.status == 0 || "
                               "udp.checksum.status == 0 || tcp.checksum.status == 0' 2>/dev/null",
                        out));
    CHECK(lines_of(out).empty());
    std::remove(path.c_str());
}
