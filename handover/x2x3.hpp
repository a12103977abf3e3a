// ETSI TS 103 221-2 X2 (xIRI: the intercepted SIP message) and X3 (xCC: the intercepted IP
// packet) PDUs: a 40-octet big-endian header, type-length-value conditional attributes, then
// the payload. The stream is framed by the header's two length fields alone.
//
// Clause numbers below follow TS 103 221-2 V1.10.1; the field layout has been stable since
// V1.1.1. The Version field says 5 (V1.6.1 to V1.9.1): deployed mediation functions refuse
// any other minor version.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "handover/record.hpp"

namespace tapwire::handover {

namespace x2x3 {

/// Version field (clause 5.2.1).
inline constexpr std::uint16_t kVersion = 5;
/// The mandatory header fields, up to the conditional attributes (table 5.1-1).
inline constexpr std::size_t kHeaderSize = 40;
/// A conditional attribute's type and length fields (table 5.3.1-1).
inline constexpr std::size_t kAttributeHeaderSize = 4;
/// A Keepalive: the header and its Sequence Number attribute (clause 6.2.4).
inline constexpr std::size_t kKeepaliveSize = kHeaderSize + kAttributeHeaderSize + 4;

/// PDU Type (table 5.2.2-1).
enum class PduType : std::uint16_t { X2 = 1, X3 = 2, Keepalive = 3, KeepaliveAck = 4 };

/// Payload Format (table 5.4.1-1), the values this encoder emits or a reader must know.
enum class PayloadFormat : std::uint16_t {
    Keepalive = 0,
    Ipv4Packet = 5,
    Ipv6Packet = 6,
    RtpPacket = 8,
    SipMessage = 9,
};

/// Payload Direction (table 5.2.6-1).
enum class PayloadDirection : std::uint16_t {
    Keepalive = 0,
    Unknown = 1,     // not known to the POI
    ToTarget = 2,    // sent to (received by) the target
    FromTarget = 3,  // sent from the target
    Multiple = 4,
    NotApplicable = 5,
};

/// Conditional attribute types (table 5.3.1-2) that this encoder emits.
enum class AttributeType : std::uint16_t {
    NetworkFunctionId = 6,    // clause 5.3.7
    InterceptionPointId = 7,  // clause 5.3.8
    SequenceNumber = 8,       // clause 5.3.9: 4 octets
    Timestamp = 9,            // clause 5.3.10: 4 octets seconds, 4 octets nanoseconds
    SourceIpv4 = 10,
    DestinationIpv4 = 11,
    SourceIpv6 = 12,
    DestinationIpv6 = 13,
    SourcePort = 14,
    DestinationPort = 15,
    IpProtocol = 16,
};

/// Parses a UUID in its RFC 4122 text form (8-4-4-4-12 hex digits, either case) into its
/// 16 octets in network order. False when `text` is not one.
bool parse_uuid(std::string_view text, std::array<std::uint8_t, 16>& out) noexcept;

}  // namespace x2x3

/// The X2/X3 format. An IRI record becomes an X2 PDU with the SIP message as payload
/// (format 9); a CC record becomes an X3 PDU with the whole IP packet as payload (format 5
/// or 6, which carries RTCP as faithfully as RTP). The XID is the warrant's X1 task UUID,
/// the Correlation ID the record's CIN, so that X2 and X3 of one call correlate. Every PDU
/// carries Sequence Number (the low 32 bits of the record's) and Timestamp, then the
/// addresses, ports and IP protocol that are known (X2: from the record; X3: from the
/// packet's own IP and UDP/TCP headers), then NFID and IPID when the warrant has them.
/// The LIID is not carried: TS 103 221-2 has no attribute for it; the mediation function
/// maps the XID to the LIID.
class X2X3Encoder final : public Encoder {
  public:
    const char* name() const noexcept override { return "etsi-x2x3"; }
    /// Requires `xid` (a non-nil UUID); NFID from network_element_identifier and IPID from
    /// interception_point_id when not empty (each at most 65535 octets).
    std::unique_ptr<PreparedWarrant> prepare(const WarrantContext& context,
                                             std::string& error) const override;
    std::size_t encode_iri(const PreparedWarrant& warrant, const IriRecord& record,
                           std::span<std::uint8_t> out) const noexcept override;
    std::size_t encode_cc(const PreparedWarrant& warrant, const CcRecord& record,
                          std::span<std::uint8_t> out) const noexcept override;
    /// A Keepalive numbered from this encoder's own counter. A connection should rather
    /// number its own with the overload below, since the MDF acknowledges each number.
    std::size_t encode_keepalive(std::span<std::uint8_t> out) const noexcept override;
    /// A Keepalive carrying `sequence` (clause 6.2.4: the acknowledgement echoes it). XID,
    /// Correlation ID, format and direction are zero.
    static std::size_t encode_keepalive(std::uint32_t sequence,
                                        std::span<std::uint8_t> out) noexcept;

  private:
    mutable std::atomic<std::uint32_t> keepalive_sequence_{0};
};

/// The X2/X3 encoder behind the common interface.
std::unique_ptr<Encoder> make_x2x3_encoder();

}  // namespace tapwire::handover
