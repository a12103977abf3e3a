// ETSI TS 102 232-1 PS-PDU (BER) with TS 102 232-5 IP Multimedia payloads: the ETSI HI2
// (IRI) and HI3 (CC) handover format for VoIP.
//
// Encoded against LI-PS-PDU version43 (li-PSDomainId {0 4 0 2 2 5 1 43}) and IPMultimediaPDU
// version17 (the version LI-PS-PDU version43 imports; the repository's copy of that module is
// a reconstruction, see specs/SOURCES.md). One record becomes one PS-PDU:
//
//   PS-PDU { pSHeader { li-PSDomainId, lawfulInterceptionIdentifier, authorizationCountryCode,
//                       communicationIdentifier { networkIdentifier { operatorIdentifier,
//                           networkElementIdentifier? }, communicationIdentityNumber (CIN),
//                           deliveryCountryCode },
//                       sequenceNumber, timeStamp | microSecondTimeStamp,
//                       interceptionPointID? },
//            payload  { iRIPayloadSequence { IRIPayload { iRIType, iRIContents: iPMMIRI {
//                           iPMMIRIObjId, iPMMIRIContents: sIPMessage { iPSourceAddress,
//                           iPDestinationAddress, sIPContent } } } }
//                     | cCPayloadSequence { CCPayload { payloadDirection, cCContents: iPMMCC {
//                           iPMMCCObjId, mMCCContents (the IP packet), frameType ipFrame,
//                           mMCCprotocol rTP } } }
//                     | tRIPayload { keep-alive | keep-aliveResponse } } }
//
// What the modules cannot carry, and what this encoder does about it:
//  - sequenceNumber and communicationIdentityNumber are INTEGER (0..4294967295); the record's
//    64-bit values are written modulo 2^32 (a sequence number wraps; a CIN must be allocated
//    below 2^32 by the caller to stay unique).
//  - SIPMessage has addresses but no ports (IPAddress has no port field): ports are not sent.
//    A record without both addresses is sent as originalIPMMMessage (the SIP bytes only).
//  - MMCCprotocol has no RTCP value ("absence means RTP/RTCP"): RTCP is sent as rTP(0), the
//    protocol family RFC 3550 defines it in.
//  - PayloadDirection has no "unknown": Direction::Unknown is sent as indeterminate(2).
//  - Times before 1970 are sent as 1970-01-01T00:00:00Z (MicroSecondTimeStamp is unsigned).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "handover/record.hpp"

namespace tapwire::handover {

/// The two keep-alive PDUs of TS 102 232-1 (TRIPayload keep-alive [3], keep-aliveResponse [4]).
enum class EtsiKeepAlive : std::uint8_t { Request = 3, Response = 4 };

/// The ETSI TS 102 232-1/-5 encoder. Also usable through the Encoder interface.
class Etsi102232Encoder final : public Encoder {
  public:
    const char* name() const noexcept override { return "etsi-102232"; }

    /// Validates and pre-encodes the PSHeader's fixed fields. Limits (TS 102 232-1, TS 103 280):
    /// liid 1..25 bytes; country codes two letters A-Z; operator_identifier 1..16 bytes;
    /// network_element_identifier 0..16 bytes (empty: omitted); interception_point_id 0..8
    /// PrintableString characters (empty: omitted).
    std::unique_ptr<PreparedWarrant> prepare(const WarrantContext& context,
                                             std::string& error) const override;

    std::size_t encode_iri(const PreparedWarrant& warrant, const IriRecord& record,
                           std::span<std::uint8_t> out) const noexcept override;
    std::size_t encode_cc(const PreparedWarrant& warrant, const CcRecord& record,
                          std::span<std::uint8_t> out) const noexcept override;

    /// A constant keep-alive: LIID "-", operatorIdentifier "-", no CIN, sequenceNumber 0, no
    /// time. Prefer the overload below, which carries the destination's identity.
    std::size_t encode_keepalive(std::span<std::uint8_t> out) const noexcept override;

    /// A keep-alive (or keep-aliveResponse) whose PSHeader comes from `destination`, a context
    /// prepared for the delivery connection (its LIID is whatever the LEMF expects in
    /// keep-alives; national rules differ), with the connection's own keep-alive sequence
    /// number and the time of sending. No CIN: a keep-alive belongs to no communication.
    std::size_t encode_keepalive(const PreparedWarrant& destination, std::uint64_t sequence,
                                 std::int64_t timestamp_ns, std::span<std::uint8_t> out,
                                 EtsiKeepAlive kind = EtsiKeepAlive::Request) const noexcept;
};

/// The ETSI TS 102 232-1/-5 encoder.
std::unique_ptr<Encoder> make_etsi_102232_encoder();

}  // namespace tapwire::handover
