// US CALEA VoIP delivery in the J-STD-025 model: a call-data channel (CDC) of call-identifying
// messages and a call-content channel (CCC) carrying each intercepted packet behind a
// call-content connection identifier (CCCID).
//
// WHICH ASN.1: ATIS-1000678 (LAES for VoIP in wireline networks) and J-STD-025 are sold
// standards whose ASN.1 we do not have. The CDC messages are therefore encoded with the public
// PacketCable Electronic Surveillance module PCESP version-4 (CableLabs PacketCable ES /
// ANSI/SCTE 24-13), which follows the same J-STD-025 CDC model: CdcPdu { protocolVersion v4,
// message }. It is NOT verified to be wire-identical to ATIS-1000678. Everything format-neutral
// (the record-to-message mapping plan_cdc(), the per-call state CaleaCall, the CCCID and the
// CCC framing) is kept apart from the PCESP BER writer, so a carrier holding the ATIS module
// adds one more CaleaEncoder implementation (make_<module>_encoder()) behind the same Encoder
// interface, and the destination's configuration picks it.
//
// CDC on the stream: one IriRecord becomes 1..3 complete BER CdcPdu values back to back (for
// example a 200 OK with SDP is Answer + CCOpen); BER is self-delimiting, first octet 0x30.
//
// CCC on the stream: PacketCable sends each packet in a UDP datagram as [CCCID (4 octets,
// big-endian)][IP packet] (what tshark's `pcli` dissector decodes). Over TCP the datagram
// boundary is gone, so each CCC record is
//     [length (4 octets, big-endian): octets that follow][CCCID (4 octets)][IP packet]
// i.e. a 4-octet length in front of exactly the pcli datagram payload. The length is below
// 2^24, so a CCC record's first octet is 0x00 and never 0x30: a receiver can tell CCC from
// CDC records on one connection by the first octet. Both directions and RTCP share the call's
// one CCC (PCESP combCCC, flowDirection downstream-and-upstream); the LEMF tells them apart
// by the IP addresses, which the CCOpen SDP names.
//
// Keep-alive: this model has none on the CDC or the CCC; encode_keepalive() returns 0.
//
// What PCESP cannot carry, and what this encoder does about it:
//  - No field holds the raw SIP message (PCESP has no signalling-message type): the CDC
//    carries the call-identifying facts taken from it (parties, dialed URI, SDP bodies as the
//    SDP UTF8String fields, the start line as signal text). Message bodies other than SDP
//    (e.g. the text of a SIP MESSAGE) are not delivered.
//  - No per-record sequence number, and the CCC header has no timestamp (pcli, 4 octets): the
//    record's sequence is not sent, and the CC record's time is not sent.
//  - Narrow VisibleString fields, kept within their root sizes so that strict decoders accept
//    them: party addresses are the URI without scheme and parameters, cut to 32 characters
//    (the telephone number, when the URI's user part is one, also goes to dn, up to 15
//    digits); display names cut to 48; signal and service texts (the SIP start line) to 128;
//    characters outside VisibleString become '?'. Invalid UTF-8 in SDP becomes '?'.
//  - The CDC's callId is { sequencenumber: the CIN in decimal, systemidentity: the element
//    id }, the same for every message of the call.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "handover/record.hpp"

namespace tapwire::handover {

/// CDC message kinds this model produces, valued as the PCESP Message CHOICE alternatives.
enum class CdcMessage : std::uint8_t {
    Answer = 1,
    CCClose = 2,
    CCOpen = 3,
    Origination = 5,
    Redirection = 7,
    Release = 8,
    TerminationAttempt = 10,
    CCChange = 12,
    NetworkSignal = 16,
    SubjectSignal = 17,
    MediaReport = 18,
    ServiceInstance = 19,
};

const char* to_string(CdcMessage m) noexcept;

/// What the CDC mapping needs to know about a call beyond one IriRecord. The control plane
/// keeps one per (warrant, CIN) for CALEA destinations and passes it to every record of the
/// call (CaleaEncoder::encode_iri with a CaleaCall); it drops it after the End record.
///
/// Why it exists: an IriRecord does not say which party is the target, and J-STD-025 reports
/// a call the target makes as Origination but one it receives as TerminationAttempt; only
/// the control plane knows which identity matched (From / P-Asserted-Identity: the target
/// calls; To / Request-URI: the target is called). CCClose must follow a CCOpen, and Answer
/// comes once per call, which takes memory of earlier records.
struct CaleaCall {
    /// Set by the control plane before the first record: the target placed the call.
    bool target_is_caller = true;

    // Maintained by encode_iri (only when it succeeds, so a retry sees the same state).
    bool begun = false;            // a Begin with parsable SIP was encoded: caller_tag known
    bool answered = false;         // Answer sent
    bool media_open = false;       // CCOpen sent, no CCClose yet
    std::uint64_t caller_tag = 0;  // FNV-1a of the caller's From tag (from the Begin):
                                   // tells which side sent an in-dialog request
};

/// The CDC messages one record maps to, in the order they are sent.
struct CdcPlan {
    std::array<CdcMessage, 4> messages{};
    std::uint8_t count = 0;
};

/// The J-STD-025 mapping of one record, independent of the ASN.1 module:
///  - Report (REGISTER, MESSAGE, ...), and any record of a non-INVITE transaction:
///    ServiceInstance (serviceName: the start line; calling: From; called: To).
///  - Begin of an INVITE dialog: Origination when call.target_is_caller, else
///    TerminationAttempt (with redirectedFromInfo from Diversion headers). An INVITE's SDP
///    offer adds MediaReport; a Begin on another message of the dialog (interception joined
///    mid-call) adds that message's Continue mapping.
///  - Continue: 3xx or 181 -> Redirection; the first 2xx to INVITE -> Answer; SDP in a
///    response or ACK (an answer) -> CCOpen, or CCChange when the CCC is already open; SDP in
///    another request (an offer) -> MediaReport; anything else -> SubjectSignal when the
///    target's side sent it, NetworkSignal when it was sent towards the target.
///  - End: Redirection for a final 3xx, CCClose when the CCC is open, then Release.
/// Without a CaleaCall (the plain Encoder interface) a fresh one is used for every record:
/// the target is taken to be the caller, every 2xx to INVITE is an Answer, SDP answers are
/// always CCOpen, and End never sends CCClose.
CdcPlan plan_cdc(const IriRecord& record, const CaleaCall& call) noexcept;

/// The call's 32-bit CCCID: the CIN folded to 32 bits (low XOR high half). The same value
/// heads every CCC record of the call and, as 8 upper-case hex digits, is the CDC CCCId.
constexpr std::uint32_t calea_ccc_id(std::uint64_t cin) noexcept {
    return std::uint32_t(cin ^ (cin >> 32));
}

/// Octets in front of the IP packet in a CCC record: length (4) and CCCID (4).
inline constexpr std::size_t kCccHeaderSize = 8;

/// A CALEA (J-STD-025 model) encoder. Through the plain Encoder interface it maps each
/// record on its own; the CaleaCall overload carries per-call state (see CaleaCall).
class CaleaEncoder : public Encoder {
  public:
    using Encoder::encode_iri;
    /// As encode_iri(), reading and (on success only) updating the call's state.
    virtual std::size_t encode_iri(const PreparedWarrant& warrant, const IriRecord& record,
                                   CaleaCall& call, std::span<std::uint8_t> out) const noexcept = 0;
    /// A CCOpen (no SDP) for a call whose content arrives before any CDC message opened its
    /// CCC (the SDP answer was not intercepted, or a retried INVITE's media came first):
    /// without it the LEMF could not tie the content to the call. Sets call.media_open.
    virtual std::size_t encode_cc_open(const PreparedWarrant& warrant, const RecordHeader& header,
                                       CaleaCall& call,
                                       std::span<std::uint8_t> out) const noexcept = 0;
    /// The CCC record of one packet: kCccHeaderSize + packet octets (see the file comment).
    std::size_t encode_cc(const PreparedWarrant& warrant, const CcRecord& record,
                          std::span<std::uint8_t> out) const noexcept override;
    /// None in this model: always 0.
    std::size_t encode_keepalive(std::span<std::uint8_t>) const noexcept override { return 0; }
};

/// The CALEA encoder with CDC messages in PacketCable PCESP version-4 BER (name
/// "calea-pcesp"). prepare() requires: liid 1..25 VisibleString characters (CaseId); the
/// element id, network_element_identifier or, when that is empty, operator_identifier,
/// 1..15 VisibleString characters (AccessingElementId and CallId.systemidentity). Country
/// codes and interception_point_id are not part of PCESP and are ignored;
/// microsecond_timestamps selects 6 instead of 3 fraction digits in the GeneralizedTime.
std::unique_ptr<Encoder> make_calea_encoder();

}  // namespace tapwire::handover
