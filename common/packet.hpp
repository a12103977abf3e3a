// L2-L4 header parsing: Ethernet, 802.1Q/QinQ, IPv4, IPv6 extension chain, UDP, TCP.
// A pure function over a bounded span: every length is checked against the buffer and a
// malformed header yields a typed reason (which the dataplane counts), never an
// out-of-bounds read.
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/bytes.hpp"
#include "common/ip_address.hpp"
#include "common/x_list.hpp"

namespace tapwire {

/// Why a frame could not be parsed. One list, so counters and telemetry names come from
/// the same place as the enum (X-macro: X(Enumerator, "counter_name")).
#define TAPWIRE_PACKET_ERRORS(X)                          \
    X(Ok, "ok")                                           \
    X(EthernetTruncated, "ethernet_truncated")            \
    X(VlanTruncated, "vlan_truncated")                    \
    X(TooManyVlanTags, "too_many_vlan_tags")              \
    X(Ipv4Truncated, "ipv4_truncated")                    \
    X(Ipv4BadVersion, "ipv4_bad_version")                 \
    X(Ipv4BadHeaderLength, "ipv4_bad_header_length")      \
    X(Ipv4BadTotalLength, "ipv4_bad_total_length")        \
    X(Ipv4BadOptions, "ipv4_bad_options")                 \
    X(Ipv4BadFragment, "ipv4_bad_fragment")               \
    X(Ipv6Truncated, "ipv6_truncated")                    \
    X(Ipv6BadVersion, "ipv6_bad_version")                 \
    X(Ipv6BadPayloadLength, "ipv6_bad_payload_length")    \
    X(Ipv6ExtensionTruncated, "ipv6_extension_truncated") \
    X(Ipv6TooManyExtensions, "ipv6_too_many_extensions")  \
    X(Ipv6BadExtensionOrder, "ipv6_bad_extension_order")  \
    X(Ipv6BadFragment, "ipv6_bad_fragment")               \
    X(UdpTruncated, "udp_truncated")                      \
    X(UdpBadLength, "udp_bad_length")                     \
    X(TcpTruncated, "tcp_truncated")                      \
    X(TcpBadDataOffset, "tcp_bad_data_offset")            \
    X(TcpBadOptions, "tcp_bad_options")                   \
    X(PacketTooLarge, "packet_too_large")

enum class PacketError : std::uint8_t { TAPWIRE_PACKET_ERRORS(TAPWIRE_X_ENUMERATOR) Count };

/// Counter-style name of an error, e.g. "ipv4_bad_total_length".
const char* to_string(PacketError e) noexcept;

/// IP protocol numbers the parser knows by name.
enum IpProto : std::uint8_t {
    kIpProtoHopByHop = 0,
    kIpProtoTcp = 6,
    kIpProtoUdp = 17,
    kIpProtoRouting = 43,
    kIpProtoFragment = 44,
    kIpProtoEsp = 50,
    kIpProtoAh = 51,
    kIpProtoNoNext = 59,
    kIpProtoDestOpts = 60,
    kIpProtoSctp = 132,
};

enum EtherType : std::uint16_t {
    kEtherTypeIpv4 = 0x0800,
    kEtherTypeArp = 0x0806,
    kEtherTypeVlan = 0x8100,
    kEtherTypeIpv6 = 0x86DD,
    kEtherTypeQinQ = 0x88A8,
    kEtherTypeQinQOld = 0x9100,
};

/// Fixed wire sizes of the headers, in bytes (writers and readers share them).
inline constexpr std::size_t kEthernetHeaderSize = 14;
inline constexpr std::size_t kVlanTagSize = 4;
inline constexpr std::size_t kIpv4MinHeaderSize = 20;
inline constexpr std::size_t kIpv6HeaderSize = 40;
inline constexpr std::size_t kIpv6FragmentHeaderSize = 8;
inline constexpr std::size_t kUdpHeaderSize = 8;
inline constexpr std::size_t kTcpMinHeaderSize = 20;

/// TCP flag bits (RFC 9293 section 3.1).
enum TcpFlag : std::uint8_t {
    kTcpFin = 0x01,
    kTcpSyn = 0x02,
    kTcpRst = 0x04,
    kTcpPsh = 0x08,
    kTcpAck = 0x10,
    kTcpUrg = 0x20,
};

/// What parse_frame() found. Offsets are from the start of the frame; all are valid
/// indexes into the parsed span when the corresponding layer is present.
struct PacketInfo {
    static constexpr int kMaxVlanTags = 2;  // 802.1Q, or QinQ (802.1ad outer + inner)

    std::uint16_t vlan_ids[kMaxVlanTags] = {};
    std::uint8_t vlan_count = 0;
    std::uint16_t ether_type = 0;  // after VLAN tags; 0 when parse started at L3

    IpFamily ip_family = IpFamily::None;  // None: not IP (ARP, LLDP, ...), not an error
    std::uint8_t ip_proto = 0;            // upper-layer protocol after any IPv6 extensions
    std::uint8_t ttl = 0;                 // IPv4 TTL or IPv6 hop limit
    std::uint16_t l3_offset = 0;
    std::uint16_t l3_length = 0;  // IP header + payload per the IP length field (excludes padding)
    IpAddress src_ip;
    IpAddress dst_ip;

    // Fragments: IPv4 flags/offset or the IPv6 Fragment header. For any fragment other
    // than the first (offset > 0) no L4 header is parsed.
    bool is_fragment = false;  // MF set or offset > 0
    bool more_fragments = false;
    std::uint16_t fragment_offset = 0;  // in bytes
    std::uint32_t fragment_id = 0;      // IPv4 16-bit id or IPv6 32-bit id
    // First byte after IPv4 options / IPv6 extensions. For an IPv6 fragment the walk stops
    // at the Fragment header: this is then the fragment data and ip_proto its Next Header.
    std::uint16_t ip_payload_offset = 0;
    std::uint16_t ip_payload_length = 0;

    // L4 (UDP or TCP) when present and parsed.
    bool has_l4 = false;
    std::uint16_t l4_offset = 0;
    std::uint16_t src_port = 0;
    std::uint16_t dst_port = 0;
    std::uint32_t tcp_seq = 0;
    std::uint32_t tcp_ack = 0;
    std::uint8_t tcp_flags = 0;
    std::uint16_t payload_offset = 0;  // first byte of the UDP/TCP payload
    std::uint16_t payload_length = 0;

    bool is_udp() const noexcept { return has_l4 && ip_proto == kIpProtoUdp; }
    bool is_tcp() const noexcept { return has_l4 && ip_proto == kIpProtoTcp; }
};

/// Parses an Ethernet frame (optionally 802.1Q / QinQ tagged) down to the L4 payload.
/// Non-IP frames return Ok with ip_family None. Trailing Ethernet padding is ignored.
/// IPv4 Total Length 0 (TSO, host-side captures) is taken as "up to the end of the frame".
/// On error, out keeps what the layers before the failing one set; every offset + length
/// in out lies within the span, also on error. ~6 ns for Ethernet/IPv4/UDP (packet.cpp).
PacketError parse_frame(ByteSpan frame, PacketInfo& out) noexcept;

/// Parses starting at an IPv4 or IPv6 header (the version nibble selects which), for
/// reassembled datagrams and raw-IP captures. Offsets in out are relative to ip. An empty
/// span is Ipv4Truncated, a version other than 4 or 6 Ipv4BadVersion.
PacketError parse_ip(ByteSpan ip, PacketInfo& out) noexcept;

/// The L4 payload of a parsed packet (empty when there is none).
inline ByteSpan payload_of(ByteSpan frame, const PacketInfo& info) noexcept {
    return frame.subspan(info.payload_offset, info.payload_length);
}

}  // namespace tapwire
