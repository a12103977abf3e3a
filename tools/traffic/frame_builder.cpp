#include "tools/traffic/frame_builder.hpp"

#include <algorithm>
#include <cstring>

#include "common/packet.hpp"

namespace tapwire::traffic {

namespace {

// Wire constants are the parser's (common/packet.hpp): writer and reader share one list.
constexpr std::size_t kMinFrame = 60;
constexpr std::size_t kMaxIpPacket = 65535;

bool valid_pair(const IpSpec& ip) noexcept {
    return !ip.src.empty() && ip.src.family == ip.dst.family;
}

std::size_t ip_header_bytes(IpFamily family) noexcept {
    return family == IpFamily::V4 ? kIpv4MinHeaderSize : kIpv6HeaderSize;
}

std::size_t l2_bytes(const L2Spec& l2) noexcept {
    return kEthernetHeaderSize + l2.vlans.header_bytes();
}

std::size_t tcp_header_bytes(const TcpSpec& tcp) noexcept {
    return kTcpMinHeaderSize + (tcp.mss_option != 0 ? 4 : 0);
}

// Writes MACs, VLAN tags and the EtherType; returns the L3 offset.
std::size_t write_l2(std::uint8_t* p, const L2Spec& l2, std::uint16_t ether_type) noexcept {
    std::memcpy(p, l2.dst.data(), 6);
    std::memcpy(p + 6, l2.src.data(), 6);
    std::size_t off = 12;
    for (std::uint8_t i = 0; i < l2.vlans.count && i < 2; ++i) {
        // QinQ: the outer tag is the 802.1ad service tag (IEEE 802.1Q-2018 section 9.5).
        std::uint16_t tpid = (l2.vlans.count == 2 && i == 0) ? kEtherTypeQinQ : kEtherTypeVlan;
        store_be16(p + off, tpid);
        std::uint16_t tci = std::uint16_t((l2.vlans.pcp & 0x7) << 13 | (l2.vlans.ids[i] & 0x0fff));
        store_be16(p + off + 2, tci);
        off += 4;
    }
    store_be16(p + off, ether_type);
    return off + 2;
}

// IPv4 header without options (RFC 791 section 3.1); frag_field holds flags and offset.
void write_ipv4(std::uint8_t* p, const IpSpec& ip, std::uint8_t proto, std::size_t payload,
                std::uint16_t frag_field) noexcept {
    p[0] = 0x45;
    p[1] = std::uint8_t(ip.dscp << 2);
    store_be16(p + 2, std::uint16_t(kIpv4MinHeaderSize + payload));
    store_be16(p + 4, std::uint16_t(ip.id));
    store_be16(p + 6, frag_field);
    p[8] = ip.ttl;
    p[9] = proto;
    store_be16(p + 10, 0);
    std::memcpy(p + 12, ip.src.bytes.data(), 4);
    std::memcpy(p + 16, ip.dst.bytes.data(), 4);
    store_be16(p + 10, internet_checksum(ByteSpan(p, kIpv4MinHeaderSize)));
}

// IPv6 fixed header (RFC 8200 section 3).
void write_ipv6(std::uint8_t* p, const IpSpec& ip, std::uint8_t next_header,
                std::size_t payload) noexcept {
    std::uint32_t first = (6u << 28) | (std::uint32_t(ip.dscp) << 22) | (ip.flow_label & 0xfffff);
    store_be32(p, first);
    store_be16(p + 4, std::uint16_t(payload));
    p[6] = next_header;
    p[7] = ip.ttl;
    std::memcpy(p + 8, ip.src.bytes.data(), 16);
    std::memcpy(p + 24, ip.dst.bytes.data(), 16);
}

std::size_t write_ip(std::uint8_t* p, const IpSpec& ip, std::uint8_t proto,
                     std::size_t payload) noexcept {
    if (ip.src.is_v4()) {
        write_ipv4(p, ip, proto, payload, ip.dont_fragment ? 0x4000 : 0);
        return kIpv4MinHeaderSize;
    }
    write_ipv6(p, ip, proto, payload);
    return kIpv6HeaderSize;
}

void write_udp(std::uint8_t* p, const IpSpec& ip, const UdpSpec& udp, ByteSpan payload) noexcept {
    std::size_t len = kUdpHeaderSize + payload.size();
    store_be16(p, udp.src_port);
    store_be16(p + 2, udp.dst_port);
    store_be16(p + 4, std::uint16_t(len));
    store_be16(p + 6, 0);
    if (!payload.empty()) std::memcpy(p + kUdpHeaderSize, payload.data(), payload.size());
    std::uint16_t sum = internet_checksum(
        ByteSpan(p, len), pseudo_header_sum(ip.src, ip.dst, kIpProtoUdp, std::uint32_t(len)));
    // RFC 768: a computed zero is sent as all ones (zero means "no checksum").
    store_be16(p + 6, sum == 0 ? 0xffff : sum);
}

std::size_t pad(std::uint8_t* frame, std::size_t len, std::size_t cap, const L2Spec& l2) noexcept {
    if (!l2.pad_to_minimum || len >= kMinFrame || cap < kMinFrame) return len;
    std::memset(frame + len, 0, kMinFrame - len);
    return kMinFrame;
}

std::size_t padded(const L2Spec& l2, std::size_t len) noexcept {
    return l2.pad_to_minimum ? std::max(len, kMinFrame) : len;
}

}  // namespace

MacAddress mac_from_ip(const IpAddress& ip) noexcept {
    MacAddress mac{0x02, 0, 0, 0, 0, 0};
    if (ip.is_v4()) {
        std::memcpy(mac.data() + 2, ip.bytes.data(), 4);
        return mac;
    }
    std::uint64_t h = 1469598103934665603ull;  // FNV-1a 64
    for (std::uint8_t b : ip.bytes) {
        h ^= b;
        h *= 1099511628211ull;
    }
    mac[0] = 0x06;  // locally administered, unicast; differs from the IPv4 scheme
    for (int i = 1; i < 6; ++i)
        mac[i] = std::uint8_t(h >> (8 * i));
    return mac;
}

L2Spec l2_for(const IpAddress& src, const IpAddress& dst, VlanTags vlans) noexcept {
    L2Spec l2;
    l2.src = mac_from_ip(src);
    l2.dst = mac_from_ip(dst);
    l2.vlans = vlans;
    return l2;
}

std::uint16_t internet_checksum(ByteSpan data, std::uint32_t initial) noexcept {
    std::uint64_t sum = initial;
    std::size_t i = 0;
    for (; i + 1 < data.size(); i += 2)
        sum += load_be16(data.data() + i);
    if (i < data.size()) sum += std::uint32_t(data[i]) << 8;
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return std::uint16_t(~sum & 0xffff);
}

std::uint32_t pseudo_header_sum(const IpAddress& src, const IpAddress& dst, std::uint8_t proto,
                                std::uint32_t l4_length) noexcept {
    std::uint64_t sum = 0;
    std::size_t n = src.length();
    for (std::size_t i = 0; i + 1 < n; i += 2) {
        sum += load_be16(src.bytes.data() + i);
        sum += load_be16(dst.bytes.data() + i);
    }
    sum += proto;
    sum += l4_length >> 16;
    sum += l4_length & 0xffff;
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return std::uint32_t(sum);
}

std::size_t udp_frame_size(const L2Spec& l2, IpFamily family, std::size_t payload) noexcept {
    return l2_bytes(l2) + ip_header_bytes(family) + kUdpHeaderSize + payload;
}

std::size_t tcp_frame_size(const L2Spec& l2, IpFamily family, const TcpSpec& tcp,
                           std::size_t payload) noexcept {
    return l2_bytes(l2) + ip_header_bytes(family) + tcp_header_bytes(tcp) + payload;
}

std::size_t build_udp_frame(std::span<std::uint8_t> buf, const L2Spec& l2, const IpSpec& ip,
                            const UdpSpec& udp, ByteSpan payload) noexcept {
    if (!valid_pair(ip)) return 0;
    std::size_t l4 = kUdpHeaderSize + payload.size();
    if (ip_header_bytes(ip.src.family) + l4 > kMaxIpPacket && ip.src.is_v4()) return 0;
    if (l4 > kMaxIpPacket) return 0;
    std::size_t len = udp_frame_size(l2, ip.src.family, payload.size());
    if (buf.size() < len) return 0;
    std::uint8_t* p = buf.data();
    std::size_t off = write_l2(p, l2, ip.src.is_v4() ? kEtherTypeIpv4 : kEtherTypeIpv6);
    off += write_ip(p + off, ip, kIpProtoUdp, l4);
    write_udp(p + off, ip, udp, payload);
    return pad(p, len, buf.size(), l2);
}

std::size_t build_tcp_frame(std::span<std::uint8_t> buf, const L2Spec& l2, const IpSpec& ip,
                            const TcpSpec& tcp, ByteSpan payload) noexcept {
    if (!valid_pair(ip)) return 0;
    std::size_t hdr = tcp_header_bytes(tcp);
    std::size_t l4 = hdr + payload.size();
    if (ip_header_bytes(ip.src.family) + l4 > kMaxIpPacket && ip.src.is_v4()) return 0;
    if (l4 > kMaxIpPacket) return 0;
    std::size_t len = tcp_frame_size(l2, ip.src.family, tcp, payload.size());
    if (buf.size() < len) return 0;
    std::uint8_t* p = buf.data();
    std::size_t off = write_l2(p, l2, ip.src.is_v4() ? kEtherTypeIpv4 : kEtherTypeIpv6);
    off += write_ip(p + off, ip, kIpProtoTcp, l4);
    std::uint8_t* t = p + off;
    // RFC 9293 section 3.1.
    store_be16(t, tcp.src_port);
    store_be16(t + 2, tcp.dst_port);
    store_be32(t + 4, tcp.seq);
    store_be32(t + 8, tcp.ack);
    t[12] = std::uint8_t((hdr / 4) << 4);
    t[13] = tcp.flags;
    store_be16(t + 14, tcp.window);
    store_be16(t + 16, 0);
    store_be16(t + 18, 0);
    if (tcp.mss_option != 0) {
        t[20] = 2;  // kind MSS
        t[21] = 4;
        store_be16(t + 22, tcp.mss_option);
    }
    if (!payload.empty()) std::memcpy(t + hdr, payload.data(), payload.size());
    store_be16(t + 16,
               internet_checksum(ByteSpan(t, l4), pseudo_header_sum(ip.src, ip.dst, kIpProtoTcp,
                                                                    std::uint32_t(l4))));
    return pad(p, len, buf.size(), l2);
}

bool build_udp_frame(std::vector<std::uint8_t>& out, const L2Spec& l2, const IpSpec& ip,
                     const UdpSpec& udp, ByteSpan payload) {
    if (!valid_pair(ip)) {
        out.clear();
        return false;
    }
    out.assign(padded(l2, udp_frame_size(l2, ip.src.family, payload.size())), 0);
    std::size_t n = build_udp_frame(std::span<std::uint8_t>(out), l2, ip, udp, payload);
    out.resize(n);
    return n != 0;
}

bool build_tcp_frame(std::vector<std::uint8_t>& out, const L2Spec& l2, const IpSpec& ip,
                     const TcpSpec& tcp, ByteSpan payload) {
    if (!valid_pair(ip)) {
        out.clear();
        return false;
    }
    out.assign(padded(l2, tcp_frame_size(l2, ip.src.family, tcp, payload.size())), 0);
    std::size_t n = build_tcp_frame(std::span<std::uint8_t>(out), l2, ip, tcp, payload);
    out.resize(n);
    return n != 0;
}

bool build_arp_frame(std::vector<std::uint8_t>& out, ArpOp op, const MacAddress& sender_mac,
                     const IpAddress& sender_ip, const MacAddress& target_mac,
                     const IpAddress& target_ip, VlanTags vlans) {
    out.clear();
    if (!sender_ip.is_v4() || !target_ip.is_v4()) return false;
    L2Spec l2;
    l2.src = sender_mac;
    l2.dst = op == ArpOp::Request ? kBroadcastMac : target_mac;
    l2.vlans = vlans;
    out.assign(std::max(l2_bytes(l2) + 28, kMinFrame), 0);
    std::uint8_t* p = out.data();
    std::size_t off = write_l2(p, l2, kEtherTypeArp);
    std::uint8_t* a = p + off;
    store_be16(a, 1);           // hardware type Ethernet
    store_be16(a + 2, 0x0800);  // protocol IPv4
    a[4] = 6;
    a[5] = 4;
    store_be16(a + 6, std::uint16_t(op));
    std::memcpy(a + 8, sender_mac.data(), 6);
    std::memcpy(a + 14, sender_ip.bytes.data(), 4);
    if (op == ArpOp::Reply) std::memcpy(a + 18, target_mac.data(), 6);
    std::memcpy(a + 24, target_ip.bytes.data(), 4);
    return true;
}

std::vector<std::vector<std::uint8_t>> build_udp_fragments(const L2Spec& l2, const IpSpec& ip,
                                                           const UdpSpec& udp, ByteSpan payload,
                                                           std::size_t mtu) {
    std::vector<std::vector<std::uint8_t>> frames;
    if (!valid_pair(ip)) return frames;
    bool v4 = ip.src.is_v4();
    std::size_t datagram_len = kUdpHeaderSize + payload.size();
    if (datagram_len > kMaxIpPacket - (v4 ? kIpv4MinHeaderSize : 0)) return frames;
    if (ip_header_bytes(ip.src.family) + datagram_len <= mtu) {
        frames.emplace_back();
        if (!build_udp_frame(frames.back(), l2, ip, udp, payload)) frames.clear();
        return frames;
    }
    std::size_t per_fragment_header =
        v4 ? kIpv4MinHeaderSize : kIpv6HeaderSize + kIpv6FragmentHeaderSize;
    if (mtu < per_fragment_header + 8) return frames;
    // Every fragment but the last carries a multiple of 8 bytes (RFC 791, RFC 8200 4.5).
    std::size_t max_data = (mtu - per_fragment_header) & ~std::size_t(7);

    // The whole datagram first, so the checksum covers all fragments.
    std::vector<std::uint8_t> datagram(datagram_len);
    write_udp(datagram.data(), ip, udp, payload);

    for (std::size_t off = 0; off < datagram_len; off += max_data) {
        std::size_t n = std::min(max_data, datagram_len - off);
        bool more = off + n < datagram_len;
        std::vector<std::uint8_t>& f = frames.emplace_back();
        std::size_t len = l2_bytes(l2) + per_fragment_header + n;
        f.assign(padded(l2, len), 0);
        std::uint8_t* p = f.data();
        std::size_t pos = write_l2(p, l2, v4 ? kEtherTypeIpv4 : kEtherTypeIpv6);
        if (v4) {
            // DF must be clear on a fragment; offset in 8-byte units (RFC 791 section 3.1).
            std::uint16_t field = std::uint16_t((more ? 0x2000 : 0) | (off / 8));
            write_ipv4(p + pos, ip, kIpProtoUdp, n, field);
            pos += kIpv4MinHeaderSize;
        } else {
            write_ipv6(p + pos, ip, kIpProtoFragment, kIpv6FragmentHeaderSize + n);
            pos += kIpv6HeaderSize;
            std::uint8_t* fh = p + pos;
            fh[0] = kIpProtoUdp;
            fh[1] = 0;
            store_be16(fh + 2, std::uint16_t(off | (more ? 1 : 0)));  // offset<<3 == off
            store_be32(fh + 4, ip.id);
            pos += kIpv6FragmentHeaderSize;
        }
        std::memcpy(p + pos, datagram.data() + off, n);
    }
    return frames;
}

}  // namespace tapwire::traffic
