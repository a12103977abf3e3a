#include "handover/x2x3.hpp"

#include <cstring>
#include <limits>
#include <vector>

#include "common/bytes.hpp"

namespace tapwire::handover {

namespace x2x3 {

namespace {

int hex_value(char c) noexcept {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

}  // namespace

bool parse_uuid(std::string_view text, std::array<std::uint8_t, 16>& out) noexcept {
    if (text.size() != 36) return false;
    std::size_t octet = 0;
    for (std::size_t i = 0; i < text.size();) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (text[i] != '-') return false;
            ++i;
            continue;
        }
        const int high = hex_value(text[i]);
        const int low = hex_value(text[i + 1]);
        if (high < 0 || low < 0) return false;
        out[octet++] = static_cast<std::uint8_t>(high << 4 | low);
        i += 2;
    }
    return octet == 16;
}

}  // namespace x2x3

namespace {

using x2x3::AttributeType;
using x2x3::kAttributeHeaderSize;
using x2x3::kHeaderSize;
using x2x3::PayloadDirection;
using x2x3::PayloadFormat;
using x2x3::PduType;

// Header field offsets (table 5.1-1).
constexpr std::size_t kOffVersion = 0;
constexpr std::size_t kOffPduType = 2;
constexpr std::size_t kOffHeaderLength = 4;
constexpr std::size_t kOffPayloadLength = 8;
constexpr std::size_t kOffPayloadFormat = 12;
constexpr std::size_t kOffPayloadDirection = 14;
constexpr std::size_t kOffXid = 16;
constexpr std::size_t kOffCorrelationId = 32;

// Every record's Sequence Number and Timestamp attributes.
constexpr std::size_t kRecordAttributesSize =
    (kAttributeHeaderSize + 4) + (kAttributeHeaderSize + 8);
constexpr std::size_t kPortAttributeSize = kAttributeHeaderSize + 2;
constexpr std::size_t kProtocolAttributeSize = kAttributeHeaderSize + 1;

constexpr std::uint8_t kTcp = 6;
constexpr std::uint8_t kUdp = 17;

/// The per-warrant part: the header with Version and XID in place, then the fixed NFID and
/// IPID attributes. encode_*() copy it and patch the per-record fields.
struct X2X3Warrant final : PreparedWarrant {
    std::vector<std::uint8_t> prefix;
};

std::uint8_t* put_attribute_header(std::uint8_t* p, AttributeType type,
                                   std::size_t length) noexcept {
    store_be16(p, static_cast<std::uint16_t>(type));
    store_be16(p + 2, static_cast<std::uint16_t>(length));
    return p + kAttributeHeaderSize;
}

std::uint8_t* put_bytes(std::uint8_t* p, AttributeType type, const std::uint8_t* value,
                        std::size_t length) noexcept {
    p = put_attribute_header(p, type, length);
    std::memcpy(p, value, length);
    return p + length;
}

std::uint8_t* put_u16(std::uint8_t* p, AttributeType type, std::uint16_t value) noexcept {
    p = put_attribute_header(p, type, 2);
    store_be16(p, value);
    return p + 2;
}

std::uint8_t* put_u8(std::uint8_t* p, AttributeType type, std::uint8_t value) noexcept {
    p = put_attribute_header(p, type, 1);
    *p = value;
    return p + 1;
}

// Sequence Number (clause 5.3.9) is 4 octets: it wraps modulo 2^32, which keeps it
// contiguous. Timestamp (clause 5.3.10) is a POSIX timespec as two unsigned 32-bit fields.
std::uint8_t* put_record_attributes(std::uint8_t* p, const RecordHeader& header) noexcept {
    p = put_attribute_header(p, AttributeType::SequenceNumber, 4);
    store_be32(p, static_cast<std::uint32_t>(header.sequence));
    p += 4;
    constexpr std::int64_t kNsPerSecond = 1'000'000'000;
    std::int64_t seconds = header.timestamp_ns / kNsPerSecond;
    std::int64_t nanoseconds = header.timestamp_ns % kNsPerSecond;
    if (nanoseconds < 0) {
        nanoseconds += kNsPerSecond;
        --seconds;
    }
    p = put_attribute_header(p, AttributeType::Timestamp, 8);
    store_be32(p, static_cast<std::uint32_t>(seconds));
    store_be32(p + 4, static_cast<std::uint32_t>(nanoseconds));
    return p + 8;
}

std::size_t address_attribute_size(const IpAddress& address) noexcept {
    return address.empty() ? 0 : kAttributeHeaderSize + address.length();
}

std::uint8_t* put_address(std::uint8_t* p, const IpAddress& address, bool source) noexcept {
    if (address.is_v4()) {
        return put_bytes(p, source ? AttributeType::SourceIpv4 : AttributeType::DestinationIpv4,
                         address.bytes.data(), 4);
    }
    if (address.is_v6()) {
        return put_bytes(p, source ? AttributeType::SourceIpv6 : AttributeType::DestinationIpv6,
                         address.bytes.data(), 16);
    }
    return p;
}

/// Copies the warrant's prefix and fills the per-record header fields.
std::uint8_t* put_header(const X2X3Warrant& warrant, std::uint8_t* out, PduType type,
                         std::size_t header_length, std::size_t payload_length,
                         PayloadFormat format, PayloadDirection direction,
                         std::uint64_t correlation_id) noexcept {
    std::memcpy(out, warrant.prefix.data(), warrant.prefix.size());
    store_be16(out + kOffPduType, static_cast<std::uint16_t>(type));
    store_be32(out + kOffHeaderLength, static_cast<std::uint32_t>(header_length));
    store_be32(out + kOffPayloadLength, static_cast<std::uint32_t>(payload_length));
    store_be16(out + kOffPayloadFormat, static_cast<std::uint16_t>(format));
    store_be16(out + kOffPayloadDirection, static_cast<std::uint16_t>(direction));
    store_be64(out + kOffCorrelationId, correlation_id);
    return out + warrant.prefix.size();
}

/// Whether a PDU of `header` + `payload` octets fits both `out` and the 32-bit length fields.
bool fits(std::size_t header, std::size_t payload, std::span<std::uint8_t> out) noexcept {
    constexpr std::size_t kMax = std::numeric_limits<std::uint32_t>::max();
    return payload <= kMax - header && header + payload <= out.size();
}

/// The flow of an intercepted packet, read from its own IP and UDP/TCP headers, so that a
/// mediation function can sort X3 without parsing the payload (clauses 5.3.11 to 5.3.17).
struct PacketFlow {
    PayloadFormat format = PayloadFormat::Ipv4Packet;
    const std::uint8_t* source = nullptr;  // null when the IP header is truncated
    const std::uint8_t* destination = nullptr;
    std::size_t address_length = 0;
    int protocol = -1;
    bool has_ports = false;
    std::uint16_t source_port = 0, destination_port = 0;

    std::size_t attributes_size() const noexcept {
        std::size_t n = 0;
        if (source != nullptr) n += 2 * (kAttributeHeaderSize + address_length);
        if (protocol >= 0) n += kProtocolAttributeSize;
        if (has_ports) n += 2 * kPortAttributeSize;
        return n;
    }
};

PacketFlow read_flow(ByteSpan packet) noexcept {
    PacketFlow flow;
    if (packet.empty()) return flow;
    const std::uint8_t* p = packet.data();
    std::size_t transport_offset = 0;
    bool first_fragment = true;
    switch (p[0] >> 4) {
        case 4: {
            const std::size_t ihl = std::size_t{p[0] & 0x0fu} * 4;
            if (ihl < 20 || packet.size() < ihl) return flow;
            flow.source = p + 12;
            flow.destination = p + 16;
            flow.address_length = 4;
            flow.protocol = p[9];
            first_fragment = (load_be16(p + 6) & 0x1fffu) == 0;
            transport_offset = ihl;
            break;
        }
        case 6:
            flow.format = PayloadFormat::Ipv6Packet;
            if (packet.size() < 40) return flow;
            flow.source = p + 8;
            flow.destination = p + 24;
            flow.address_length = 16;
            // The next header is the transport when there are no extension headers, as for
            // RTP; with extension headers the ports are left out rather than walked to.
            flow.protocol = p[6];
            transport_offset = 40;
            break;
        default:
            return flow;
    }
    if ((flow.protocol == kUdp || flow.protocol == kTcp) && first_fragment &&
        packet.size() >= transport_offset + 4) {
        flow.has_ports = true;
        flow.source_port = load_be16(p + transport_offset);
        flow.destination_port = load_be16(p + transport_offset + 2);
    }
    return flow;
}

PayloadDirection to_payload_direction(Direction direction) noexcept {
    switch (direction) {
        case Direction::FromTarget:
            return PayloadDirection::FromTarget;
        case Direction::ToTarget:
            return PayloadDirection::ToTarget;
        case Direction::Unknown:
            break;
    }
    return PayloadDirection::Unknown;
}

bool add_text_attribute(std::vector<std::uint8_t>& prefix, AttributeType type,
                        const std::string& value, const char* field, std::string& error) {
    if (value.empty()) return true;
    if (value.size() > std::numeric_limits<std::uint16_t>::max()) {
        error = std::string(field) + ": longer than 65535 octets (X2/X3 attribute length)";
        return false;
    }
    const std::size_t at = prefix.size();
    prefix.resize(at + kAttributeHeaderSize + value.size());
    put_bytes(prefix.data() + at, type, reinterpret_cast<const std::uint8_t*>(value.data()),
              value.size());
    return true;
}

}  // namespace

std::unique_ptr<PreparedWarrant> X2X3Encoder::prepare(const WarrantContext& context,
                                                      std::string& error) const {
    std::array<std::uint8_t, 16> xid{};
    if (context.xid.empty()) {
        error = "xid: required for X2/X3 (the X1 task UUID)";
        return nullptr;
    }
    if (!x2x3::parse_uuid(context.xid, xid)) {
        error = "xid: not a UUID (8-4-4-4-12 hex digits)";
        return nullptr;
    }
    // An all-zero XID marks a Keepalive (clause 6.2.4), never a task.
    if (xid == std::array<std::uint8_t, 16>{}) {
        error = "xid: the nil UUID is reserved for keepalives";
        return nullptr;
    }
    auto warrant = std::make_unique<X2X3Warrant>();
    warrant->prefix.assign(kHeaderSize, 0);
    store_be16(warrant->prefix.data() + kOffVersion, x2x3::kVersion);
    std::memcpy(warrant->prefix.data() + kOffXid, xid.data(), xid.size());
    if (!add_text_attribute(warrant->prefix, AttributeType::NetworkFunctionId,
                            context.network_element_identifier, "network_element_identifier",
                            error) ||
        !add_text_attribute(warrant->prefix, AttributeType::InterceptionPointId,
                            context.interception_point_id, "interception_point_id", error)) {
        return nullptr;
    }
    return warrant;
}

std::size_t X2X3Encoder::encode_iri(const PreparedWarrant& prepared, const IriRecord& record,
                                    std::span<std::uint8_t> out) const noexcept {
    const auto& warrant = static_cast<const X2X3Warrant&>(prepared);
    const std::size_t header_length = warrant.prefix.size() + kRecordAttributesSize +
                                      address_attribute_size(record.source.address) +
                                      address_attribute_size(record.destination.address) +
                                      (record.source.port != 0 ? kPortAttributeSize : 0) +
                                      (record.destination.port != 0 ? kPortAttributeSize : 0) +
                                      (record.transport != 0 ? kProtocolAttributeSize : 0);
    const std::size_t payload_length = record.sip_message.size();
    if (!fits(header_length, payload_length, out)) return 0;

    std::uint8_t* p = put_header(warrant, out.data(), PduType::X2, header_length, payload_length,
                                 PayloadFormat::SipMessage, to_payload_direction(record.direction),
                                 record.header.cin);
    p = put_record_attributes(p, record.header);
    p = put_address(p, record.source.address, true);
    p = put_address(p, record.destination.address, false);
    if (record.source.port != 0) p = put_u16(p, AttributeType::SourcePort, record.source.port);
    if (record.destination.port != 0) {
        p = put_u16(p, AttributeType::DestinationPort, record.destination.port);
    }
    if (record.transport != 0) p = put_u8(p, AttributeType::IpProtocol, record.transport);
    if (payload_length != 0) std::memcpy(p, record.sip_message.data(), payload_length);
    return header_length + payload_length;
}

std::size_t X2X3Encoder::encode_cc(const PreparedWarrant& prepared, const CcRecord& record,
                                   std::span<std::uint8_t> out) const noexcept {
    const auto& warrant = static_cast<const X2X3Warrant&>(prepared);
    const PacketFlow flow = read_flow(record.ip_packet);
    const std::size_t header_length =
        warrant.prefix.size() + kRecordAttributesSize + flow.attributes_size();
    const std::size_t payload_length = record.ip_packet.size();
    if (!fits(header_length, payload_length, out)) return 0;

    // The whole IP packet (format 5 or 6), not format 8: the record holds RTCP as well as
    // RTP, and the packet keeps everything the LEMF may need.
    std::uint8_t* p =
        put_header(warrant, out.data(), PduType::X3, header_length, payload_length, flow.format,
                   to_payload_direction(record.direction), record.header.cin);
    p = put_record_attributes(p, record.header);
    if (flow.source != nullptr) {
        const bool v4 = flow.address_length == 4;
        p = put_bytes(p, v4 ? AttributeType::SourceIpv4 : AttributeType::SourceIpv6, flow.source,
                      flow.address_length);
        p = put_bytes(p, v4 ? AttributeType::DestinationIpv4 : AttributeType::DestinationIpv6,
                      flow.destination, flow.address_length);
    }
    if (flow.has_ports) {
        p = put_u16(p, AttributeType::SourcePort, flow.source_port);
        p = put_u16(p, AttributeType::DestinationPort, flow.destination_port);
    }
    if (flow.protocol >= 0) {
        p = put_u8(p, AttributeType::IpProtocol, static_cast<std::uint8_t>(flow.protocol));
    }
    if (payload_length != 0) std::memcpy(p, record.ip_packet.data(), payload_length);
    return header_length + payload_length;
}

std::size_t X2X3Encoder::encode_keepalive(std::span<std::uint8_t> out) const noexcept {
    if (out.size() < x2x3::kKeepaliveSize) return 0;  // before taking a number
    return encode_keepalive(keepalive_sequence_.fetch_add(1, std::memory_order_relaxed), out);
}

std::size_t X2X3Encoder::encode_keepalive(std::uint32_t sequence,
                                          std::span<std::uint8_t> out) noexcept {
    if (out.size() < x2x3::kKeepaliveSize) return 0;
    std::uint8_t* p = out.data();
    std::memset(p, 0, kHeaderSize);
    store_be16(p + kOffVersion, x2x3::kVersion);
    store_be16(p + kOffPduType, static_cast<std::uint16_t>(PduType::Keepalive));
    store_be32(p + kOffHeaderLength, static_cast<std::uint32_t>(x2x3::kKeepaliveSize));
    p = put_attribute_header(p + kHeaderSize, AttributeType::SequenceNumber, 4);
    store_be32(p, sequence);
    return x2x3::kKeepaliveSize;
}

std::unique_ptr<Encoder> make_x2x3_encoder() {
    return std::make_unique<X2X3Encoder>();
}

}  // namespace tapwire::handover
