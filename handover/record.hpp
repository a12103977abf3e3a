// The records the handover turns hits into, and the interface every handover format
// implements. The control plane builds one IriRecord per intercepted SIP message and one
// CcRecord per intercepted media packet; the destination's format encodes them.
//
// Performance contract (issue 5): the fixed parts of a warrant's records (LIID, operator and
// network element ids, country codes, the interception point) are encoded once per
// warrant and destination by prepare(); encode_*() then writes only the variable fields
// into a caller-provided buffer, with no heap allocation per record.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "common/bytes.hpp"
#include "common/ip_address.hpp"
#include "common/x_list.hpp"

namespace tapwire::handover {

/// The IRI record types of ETSI TS 102 232-1 / TS 101 671 (IRI-Begin, -Continue, -End,
/// -Report), which the CALEA format maps to its own messages.
#define TAPWIRE_IRI_TYPES(X) \
    X(Begin, "begin")        \
    X(Continue, "continue")  \
    X(End, "end")            \
    X(Report, "report")

enum class IriType : std::uint8_t { TAPWIRE_IRI_TYPES(TAPWIRE_X_ENUMERATOR) Count };

const char* to_string(IriType t) noexcept;

/// Direction of intercepted content relative to the target.
enum class Direction : std::uint8_t { Unknown = 0, FromTarget = 1, ToTarget = 2 };

/// One end of an intercepted packet.
struct Endpoint {
    IpAddress address;
    std::uint16_t port = 0;
};

/// What a warrant's records share, fixed for its lifetime: encoded once by prepare().
struct WarrantContext {
    std::string liid;                        // LawfulInterceptionIdentifier, 1..25 bytes
    std::string authorization_country_code;  // ISO 3166-1 alpha-2, e.g. "DE"
    std::string operator_identifier;         // CommunicationIdentifier.networkIdentifier
    std::string network_element_identifier;  // optional, may be empty
    std::string delivery_country_code;       // ISO 3166-1 alpha-2
    std::string interception_point_id;       // optional, may be empty (ETSI IPID)
    std::string xid;                         // X1 task UUID (X2/X3 header)
    bool microsecond_timestamps = false;     // ETSI: microSecondTimeStamp, else
                                             // GeneralizedTime (per destination)
};

/// What every record carries that changes per record.
struct RecordHeader {
    std::uint64_t cin = 0;          // communication identity number: one per call
    std::uint64_t sequence = 0;     // per (LIID, CIN, IRI or CC), contiguous from 0
    std::int64_t timestamp_ns = 0;  // time of interception, ns since the Unix epoch (UTC)
};

/// One intercepted SIP message (HI2).
struct IriRecord {
    RecordHeader header;
    IriType type = IriType::Report;
    ByteSpan sip_message;  // the raw SIP message (start line to end of body)
    Endpoint source, destination;
    std::uint8_t transport = 17;               // IP protocol number: 17 UDP, 6 TCP
    Direction direction = Direction::Unknown;  // who sent it: the target or the other side
};

/// One intercepted media packet (HI3): the whole IP packet (from the IP header).
struct CcRecord {
    RecordHeader header;
    Direction direction = Direction::Unknown;
    ByteSpan ip_packet;
    bool rtcp = false;  // RTCP rather than RTP
};

/// A warrant's pre-encoded fixed parts, opaque to the caller; made by Encoder::prepare.
class PreparedWarrant {
  public:
    virtual ~PreparedWarrant() = default;
};

/// One handover format. encode_*() write one complete PDU (everything the LEMF needs to
/// frame it on the stream) into `out` and return its size, or 0 when `out` is too small
/// (the caller retries with a larger buffer); they never allocate and never throw.
class Encoder {
  public:
    virtual ~Encoder() = default;
    virtual const char* name() const noexcept = 0;
    /// Validates and pre-encodes a warrant's fixed parts. nullptr with `error` (naming the
    /// field) when the context cannot be encoded in this format.
    virtual std::unique_ptr<PreparedWarrant> prepare(const WarrantContext& context,
                                                     std::string& error) const = 0;
    virtual std::size_t encode_iri(const PreparedWarrant& warrant, const IriRecord& record,
                                   std::span<std::uint8_t> out) const noexcept = 0;
    virtual std::size_t encode_cc(const PreparedWarrant& warrant, const CcRecord& record,
                                  std::span<std::uint8_t> out) const noexcept = 0;
    /// A keep-alive PDU for an idle connection (0 when the format has none).
    virtual std::size_t encode_keepalive(std::span<std::uint8_t> out) const noexcept = 0;
};

}  // namespace tapwire::handover
