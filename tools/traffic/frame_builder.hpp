// Builds complete Ethernet frames for the synthetic traffic generator: 802.1Q / QinQ
// tags, IPv4 (header checksum, id, TTL, DF) or IPv6, UDP or TCP with correct checksums,
// ARP, and IPv4 / IPv6 fragmentation of UDP datagrams. Test tooling, not the hot path:
// the fixed-buffer builders do not allocate so a pktgen can fill mbufs with them.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "common/bytes.hpp"
#include "common/ip_address.hpp"

namespace tapwire::traffic {

using MacAddress = std::array<std::uint8_t, 6>;

/// Locally administered unicast MAC derived from an IP, so every host keeps one MAC across
/// a capture: IPv4 a.b.c.d -> 02:00:a:b:c:d, IPv6 -> 06: + 5 bytes of an FNV-1a hash.
MacAddress mac_from_ip(const IpAddress& ip) noexcept;

inline constexpr MacAddress kBroadcastMac{0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

/// VLAN tags in wire order, outermost first. Two tags are QinQ: an 802.1ad S-tag (TPID
/// 0x88A8) followed by an 802.1Q C-tag (TPID 0x8100).
struct VlanTags {
    std::uint8_t count = 0;  // 0 untagged, 1 802.1Q, 2 QinQ
    std::array<std::uint16_t, 2> ids{};
    std::uint8_t pcp = 0;  // priority code point, same on every tag

    static VlanTags none() noexcept { return {}; }
    static VlanTags dot1q(std::uint16_t id) noexcept { return {1, {id, 0}, 0}; }
    static VlanTags qinq(std::uint16_t outer, std::uint16_t inner) noexcept {
        return {2, {outer, inner}, 0};
    }
    std::size_t header_bytes() const noexcept { return 4u * count; }
};

/// Ethernet header fields.
struct L2Spec {
    MacAddress src{};
    MacAddress dst{};
    VlanTags vlans;
    /// Pad frames shorter than 60 bytes (the Ethernet minimum without FCS) with zeros, as a
    /// capture on the receiving side shows them; parsers must ignore the padding.
    bool pad_to_minimum = true;
};

/// L2 header with MACs derived from the two IPs.
L2Spec l2_for(const IpAddress& src, const IpAddress& dst, VlanTags vlans = {}) noexcept;

/// IP header fields. src and dst must be of the same family.
struct IpSpec {
    IpAddress src;
    IpAddress dst;
    std::uint8_t ttl = 64;         // IPv6: hop limit
    std::uint32_t id = 0;          // IPv4 identification (low 16 bits); IPv6 fragment id
    bool dont_fragment = true;     // IPv4 DF (cleared on fragments)
    std::uint8_t dscp = 0;         // IPv4 DSCP / IPv6 traffic class upper 6 bits (46 = EF)
    std::uint32_t flow_label = 0;  // IPv6 only, 20 bits
};

struct UdpSpec {
    std::uint16_t src_port = 0;
    std::uint16_t dst_port = 0;
};

/// TCP flag bits (RFC 9293 section 3.1), kept in a struct so they do not clash with the
/// parser's names in namespace tapwire.
struct TcpFlags {
    static constexpr std::uint8_t kFin = 0x01;
    static constexpr std::uint8_t kSyn = 0x02;
    static constexpr std::uint8_t kRst = 0x04;
    static constexpr std::uint8_t kPsh = 0x08;
    static constexpr std::uint8_t kAck = 0x10;
};

struct TcpSpec {
    std::uint16_t src_port = 0;
    std::uint16_t dst_port = 0;
    std::uint32_t seq = 0;
    std::uint32_t ack = 0;
    std::uint8_t flags = TcpFlags::kAck;
    std::uint16_t window = 64240;
    std::uint16_t mss_option = 0;  // non-zero: add an MSS option (SYN and SYN-ACK)
};

/// Exact frame sizes before minimum-length padding.
std::size_t udp_frame_size(const L2Spec& l2, IpFamily family, std::size_t payload) noexcept;
std::size_t tcp_frame_size(const L2Spec& l2, IpFamily family, const TcpSpec& tcp,
                           std::size_t payload) noexcept;

/// Writes an Ethernet/[VLAN]/IP/UDP frame into buf. Returns the bytes written, or 0 when buf
/// is too small, the addresses are empty or of different families, or the IP packet would
/// exceed 65535 bytes. The UDP checksum is always computed (RFC 768; mandatory for IPv6,
/// RFC 8200 section 8.1).
std::size_t build_udp_frame(std::span<std::uint8_t> buf, const L2Spec& l2, const IpSpec& ip,
                            const UdpSpec& udp, ByteSpan payload) noexcept;

/// Writes an Ethernet/[VLAN]/IP/TCP frame; same contract as build_udp_frame.
std::size_t build_tcp_frame(std::span<std::uint8_t> buf, const L2Spec& l2, const IpSpec& ip,
                            const TcpSpec& tcp, ByteSpan payload) noexcept;

/// Vector forms: replace out's contents; false on an invalid spec (out is then empty).
bool build_udp_frame(std::vector<std::uint8_t>& out, const L2Spec& l2, const IpSpec& ip,
                     const UdpSpec& udp, ByteSpan payload);
bool build_tcp_frame(std::vector<std::uint8_t>& out, const L2Spec& l2, const IpSpec& ip,
                     const TcpSpec& tcp, ByteSpan payload);

enum class ArpOp : std::uint16_t { Request = 1, Reply = 2 };

/// ARP for IPv4 over Ethernet (RFC 826). A request goes to the broadcast MAC with a zero
/// target hardware address; a reply goes to target_mac. False unless both IPs are IPv4.
bool build_arp_frame(std::vector<std::uint8_t>& out, ArpOp op, const MacAddress& sender_mac,
                     const IpAddress& sender_ip, const MacAddress& target_mac,
                     const IpAddress& target_ip, VlanTags vlans = {});

/// Builds one UDP datagram as IP fragments whose IP packets are at most mtu bytes.
/// IPv4 (RFC 791): same id, DF clear, MF on all but the last, offsets in 8-byte units.
/// IPv6 (RFC 8200 section 4.5): a Fragment header with ip.id. A datagram that fits is
/// returned as one unfragmented frame. The UDP checksum covers the whole datagram.
/// Empty result on an invalid spec or an mtu too small to carry 8 bytes per fragment.
std::vector<std::vector<std::uint8_t>> build_udp_fragments(const L2Spec& l2, const IpSpec& ip,
                                                           const UdpSpec& udp, ByteSpan payload,
                                                           std::size_t mtu);

/// RFC 1071 one's-complement sum over data, folded and complemented, starting from a
/// partial 32-bit sum (for pseudo-headers).
std::uint16_t internet_checksum(ByteSpan data, std::uint32_t initial = 0) noexcept;

/// Partial sum of the IPv4 (RFC 768) or IPv6 (RFC 8200 section 8.1) pseudo-header.
std::uint32_t pseudo_header_sum(const IpAddress& src, const IpAddress& dst, std::uint8_t proto,
                                std::uint32_t l4_length) noexcept;

}  // namespace tapwire::traffic
