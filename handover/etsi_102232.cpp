#include "handover/etsi_102232.hpp"

#include <array>
#include <chrono>
#include <cstring>
#include <string_view>
#include <utility>

#include "handover/ber.hpp"
#include "handover/generalized_time.hpp"

namespace tapwire::handover {
namespace {

using Bytes = std::span<const std::uint8_t>;

// li-PSDomainId: {itu-t(0) identified-organization(4) etsi(0) securityDomain(2)
// lawfulIntercept(2) li-ps(5) genHeader(1) version43(43)}, the LI-PS-PDU module encoded against
// (TS 102 232-1 clause 5.2.1). X.690 8.19: first two arcs as 0 * 40 + 4.
constexpr std::uint8_t kPsDomainIdOid[] = {0x04, 0x00, 0x02, 0x02, 0x05, 0x01, 0x2B};

// IPMultimediaPDU (TS 102 232-5) object ids, RELATIVE-OID {li-ps(5) iPMultimedia(5)
// version17(17) iRI(1) | cC(2)}, already as context [0] TLVs: the first component of IPMMIRI
// and of IPMMCC.
constexpr std::uint8_t kIpmmIriObjId[] = {0x80, 0x04, 0x05, 0x05, 0x11, 0x01};
constexpr std::uint8_t kIpmmCcObjId[] = {0x80, 0x04, 0x05, 0x05, 0x11, 0x02};

// IPMMCC's last components: frameType [2] ipFrame(0) (mMCCContents holds the whole IP
// packet), mMCCprotocol [4] rTP(0) (TS 102 232-5 has no RTCP value; RTCP is part of RTP).
constexpr std::uint8_t kIpmmCcTail[] = {0x82, 0x01, 0x00, 0x84, 0x01, 0x00};

// IRIType (TS 102 232-1): iRI-Begin(1), iRI-End(2), iRI-Continue(3), iRI-Report(4), indexed
// by IriType.
constexpr std::uint8_t kIriTypeValue[] = {1, 3, 2, 4};
static_assert(std::size(kIriTypeValue) == std::size_t(IriType::Count));
static_assert(std::uint8_t(IriType::Begin) == 0 && std::uint8_t(IriType::Continue) == 1 &&
              std::uint8_t(IriType::End) == 2 && std::uint8_t(IriType::Report) == 3);

// PayloadDirection: fromTarget(0), toTarget(1), indeterminate(2) (the extension value for
// a direction that could not be determined).
constexpr std::uint8_t direction_value(Direction d) noexcept {
    switch (d) {
        case Direction::FromTarget:
            return 0;
        case Direction::ToTarget:
            return 1;
        default:
            return 2;
    }
}

constexpr std::uint64_t kUint32Mask = 0xFFFFFFFFull;

// A warrant's fixed PSHeader parts as ready TLV runs, back to back in one array (two cache
// lines with the vtable pointer; no pointers to chase per record):
//   head = li-PSDomainId [0], lawfulInterceptionIdentifier [1], authorizationCountryCode [2]
//   net  = networkIdentifier [0] (inside communicationIdentifier)
//   dcc  = deliveryCountryCode [2] (inside communicationIdentifier)
//   ipid = interceptionPointID [6]
struct EtsiWarrant final : PreparedWarrant {
    std::array<std::uint8_t, 112> buf{};
    std::uint8_t head_len = 0, net_len = 0, dcc_len = 0, ipid_len = 0;
    bool microsecond_timestamps = false;

    Bytes head() const noexcept { return {buf.data(), head_len}; }
    Bytes net() const noexcept { return {buf.data() + head_len, net_len}; }
    Bytes dcc() const noexcept { return {buf.data() + head_len + net_len, dcc_len}; }
    Bytes ipid() const noexcept { return {buf.data() + head_len + net_len + dcc_len, ipid_len}; }
};

bool is_country_code(std::string_view s) noexcept {
    return s.size() == 2 && s[0] >= 'A' && s[0] <= 'Z' && s[1] >= 'A' && s[1] <= 'Z';
}

// X.680 41.4: the PrintableString character set.
bool is_printable_string(std::string_view s) noexcept {
    for (const char c : s) {
        const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                        (c >= '0' && c <= '9') ||
                        std::string_view(" '()+,-./:=?").find(c) != std::string_view::npos;
        if (!ok) return false;
    }
    return true;
}

// Encodes one fixed run with `fill` (which writes backwards into a BerWriter) and appends it
// to w.buf; the run's length goes to `len`.
template <typename Fill>
bool append_run(EtsiWarrant& w, std::size_t& used, std::uint8_t& len, Fill fill) noexcept {
    std::array<std::uint8_t, 64> tmp{};
    BerWriter b(tmp);
    fill(b);
    if (!b.ok() || used + b.size() > w.buf.size()) return false;
    std::memcpy(w.buf.data() + used, b.bytes().data(), b.size());
    used += b.size();
    len = std::uint8_t(b.size());
    return true;
}

// The fixed PSHeader fields; empty optional ones are left out.
struct FixedFields {
    std::string_view liid, authorization_country_code, operator_identifier,
        network_element_identifier, delivery_country_code, interception_point_id;
    bool microsecond_timestamps = false;
};

bool build_warrant(EtsiWarrant& w, const FixedFields& c) noexcept {
    w.microsecond_timestamps = c.microsecond_timestamps;
    std::size_t used = 0;
    bool ok = append_run(w, used, w.head_len, [&](BerWriter& b) {
        if (!c.authorization_country_code.empty())
            b.octets(BerTag::context(2), c.authorization_country_code);
        b.octets(BerTag::context(1), c.liid);
        b.octets(BerTag::context(0), Bytes(kPsDomainIdOid));
    });
    ok = ok && append_run(w, used, w.net_len, [&](BerWriter& b) {
             if (!c.network_element_identifier.empty())
                 b.octets(BerTag::context(1), c.network_element_identifier);
             b.octets(BerTag::context(0), c.operator_identifier);
             b.close(BerTag::context(0, true), 0);
         });
    ok = ok && append_run(w, used, w.dcc_len, [&](BerWriter& b) {
             if (!c.delivery_country_code.empty())
                 b.octets(BerTag::context(2), c.delivery_country_code);
         });
    ok = ok && append_run(w, used, w.ipid_len, [&](BerWriter& b) {
             if (!c.interception_point_id.empty())
                 b.octets(BerTag::context(6), c.interception_point_id);
         });
    return ok;
}

std::unique_ptr<EtsiWarrant> prepare_warrant(const WarrantContext& c, std::string& error) {
    // Field limits: LIID (TS 103 280) OCTET STRING (SIZE (1..25)); country codes
    // PrintableString (SIZE (2)), ISO 3166-1 alpha-2 (TS 102 232-1 clauses 5.2.3, 5.2.4);
    // operator and network element ids OCTET STRING (SIZE (1..16)); interceptionPointID
    // PrintableString (SIZE (1..8)) (clause 5.2.11).
    if (c.liid.empty() || c.liid.size() > 25) {
        error =
            "liid: must be 1 to 25 bytes (TS 103 280 LIID), got " + std::to_string(c.liid.size());
        return nullptr;
    }
    const std::pair<const char*, const std::string*> country_codes[] = {
        {"authorization_country_code", &c.authorization_country_code},
        {"delivery_country_code", &c.delivery_country_code}};
    for (const auto& [field, value] : country_codes) {
        if (!is_country_code(*value)) {
            error = std::string(field) + ": must be two letters A-Z (ISO 3166-1 alpha-2), got '" +
                    *value + "'";
            return nullptr;
        }
    }
    if (c.operator_identifier.empty() || c.operator_identifier.size() > 16) {
        error =
            "operator_identifier: must be 1 to 16 bytes (TS 102 232-1 NetworkIdentifier), got " +
            std::to_string(c.operator_identifier.size());
        return nullptr;
    }
    if (c.network_element_identifier.size() > 16) {
        error =
            "network_element_identifier: must be at most 16 bytes (TS 102 232-1 "
            "NetworkIdentifier), got " +
            std::to_string(c.network_element_identifier.size());
        return nullptr;
    }
    if (c.interception_point_id.size() > 8 || !is_printable_string(c.interception_point_id)) {
        error =
            "interception_point_id: must be at most 8 PrintableString characters "
            "(TS 102 232-1 clause 5.2.11), got '" +
            c.interception_point_id + "'";
        return nullptr;
    }
    auto w = std::make_unique<EtsiWarrant>();
    if (!build_warrant(*w, {c.liid, c.authorization_country_code, c.operator_identifier,
                            c.network_element_identifier, c.delivery_country_code,
                            c.interception_point_id, c.microsecond_timestamps})) {
        error = "warrant: fixed PSHeader fields do not fit";  // cannot happen within the limits
        return nullptr;
    }
    return w;
}

struct HeaderFields {
    bool has_cin = true;
    std::uint64_t cin = 0;
    std::uint64_t sequence = 0;
    bool has_time = true;
    std::int64_t timestamp_ns = 0;
};

// Writes pSHeader [1] in front of what the writer holds (the payload).
void write_ps_header(BerWriter& w, const EtsiWarrant& wt, const HeaderFields& f) noexcept {
    const std::size_t mark = w.size();
    const std::int64_t ns = f.timestamp_ns < 0 ? 0 : f.timestamp_ns;
    const std::uint64_t seconds = std::uint64_t(ns / 1000000000);
    const std::uint32_t micros = std::uint32_t(ns % 1000000000 / 1000);
    // Components in tag order: ... sequenceNumber [4], timeStamp [5], interceptionPointID [6],
    // microSecondTimeStamp [7]; exactly one of the two times (clause 5.2.6).
    if (f.has_time && wt.microsecond_timestamps) {
        const std::size_t m = w.size();
        w.integer(BerTag::context(1), micros);
        w.integer(BerTag::context(0), seconds);
        w.close(BerTag::context(7, true), m);
    }
    w.raw(wt.ipid());
    if (f.has_time && !wt.microsecond_timestamps) {
        char text[32];
        const std::size_t n = generalized_time(ns, 6, text);  // to the microsecond
        w.octets(BerTag::context(5), std::string_view(text, n));
    }
    w.integer(BerTag::context(4), f.sequence & kUint32Mask);
    const std::size_t ci = w.size();
    w.raw(wt.dcc());
    if (f.has_cin) w.integer(BerTag::context(1), f.cin & kUint32Mask);
    w.raw(wt.net());
    w.close(BerTag::context(3, true), ci);
    w.raw(wt.head());
    w.close(BerTag::context(1, true), mark);
}

// IPAddress (TS 102 232-1) { iP-type [1], iP-value [2] { iPBinaryAddress [1] },
// iPv6PrefixLength [4] }: a single host address, so /128 for IPv6 (the field's comment makes
// it mandatory with an IPv6 binary value).
void write_ip_address(BerWriter& w, BerTag tag, const IpAddress& a) noexcept {
    const std::size_t m = w.size();
    if (a.is_v6()) w.integer(BerTag::context(4), 128);
    const std::size_t v = w.size();
    w.octets(BerTag::context(1), Bytes(a.bytes.data(), a.length()));
    w.close(BerTag::context(2, true), v);  // IP-value is a CHOICE: explicitly tagged
    w.integer(BerTag::context(1), a.is_v6() ? 1 : 0);
    w.close(tag, m);
}

// Closes the PS-PDU around payload [2] and moves the PDU to the start of `out`.
std::size_t finish(BerWriter& w, const EtsiWarrant& wt, const HeaderFields& f,
                   std::span<std::uint8_t> out) noexcept {
    w.close(BerTag::context(2, true), 0);  // payload: Payload is a CHOICE, explicitly tagged
    write_ps_header(w, wt, f);
    w.close(ber::kSequence, 0);
    if (!w.ok()) return 0;
    const std::size_t n = w.size();
    if (n != out.size()) std::memmove(out.data(), w.bytes().data(), n);
    return n;
}

std::size_t keepalive_pdu(const EtsiWarrant& wt, const HeaderFields& f, EtsiKeepAlive kind,
                          std::span<std::uint8_t> out) noexcept {
    BerWriter w(out);
    w.octets(BerTag::context(std::uint32_t(kind)), std::string_view());  // NULL
    w.close(BerTag::context(2, true), 0);  // tRIPayload: TRIPayload is a CHOICE
    return finish(w, wt, f, out);
}

// The header of the constant keep-alive: LIID "-", operatorIdentifier "-", nothing optional.
const EtsiWarrant& constant_keepalive_header() noexcept {
    static const EtsiWarrant header = [] {
        EtsiWarrant w;
        build_warrant(w, {"-", "", "-", "", "", "", false});
        return w;
    }();
    return header;
}

}  // namespace

std::unique_ptr<PreparedWarrant> Etsi102232Encoder::prepare(const WarrantContext& context,
                                                            std::string& error) const {
    return prepare_warrant(context, error);
}

std::size_t Etsi102232Encoder::encode_iri(const PreparedWarrant& warrant, const IriRecord& r,
                                          std::span<std::uint8_t> out) const noexcept {
    const auto& wt = static_cast<const EtsiWarrant&>(warrant);
    BerWriter w(out);
    // iPMMIRIContents: sIPMessage [1] { iPSourceAddress [0], iPDestinationAddress [1],
    // sIPContent [2] } when both addresses are known (TS 102 232-5 carries SIP with its
    // addresses), else originalIPMMMessage [0] with the SIP bytes alone.
    if (!r.source.address.empty() && !r.destination.address.empty()) {
        w.octets(BerTag::context(2), r.sip_message);
        write_ip_address(w, BerTag::context(1, true), r.destination.address);
        write_ip_address(w, BerTag::context(0, true), r.source.address);
        w.close(BerTag::context(1, true), 0);
    } else {
        w.octets(BerTag::context(0), r.sip_message);
    }
    w.close(BerTag::context(1, true), 0);  // iPMMIRIContents: a CHOICE, explicitly tagged
    w.raw(Bytes(kIpmmIriObjId));
    w.close(BerTag::context(11, true), 0);  // iRIContents.iPMMIRI
    w.close(BerTag::context(2, true), 0);   // iRIContents: a CHOICE, explicitly tagged
    // iRIType [0] (clause 5.2.10); left out (it is OPTIONAL) for a value outside IriType.
    if (std::size_t(r.type) < std::size(kIriTypeValue))
        w.integer(BerTag::context(0), kIriTypeValue[std::size_t(r.type)]);
    w.close(ber::kSequence, 0);            // IRIPayload
    w.close(BerTag::context(0, true), 0);  // iRIPayloadSequence
    return finish(w, wt, {true, r.header.cin, r.header.sequence, true, r.header.timestamp_ns}, out);
}

std::size_t Etsi102232Encoder::encode_cc(const PreparedWarrant& warrant, const CcRecord& r,
                                         std::span<std::uint8_t> out) const noexcept {
    const auto& wt = static_cast<const EtsiWarrant&>(warrant);
    BerWriter w(out);
    // IPMMCC { iPMMCCObjId [0], mMCCContents [1], frameType [2], mMCCprotocol [4] }.
    w.raw(Bytes(kIpmmCcTail));
    w.octets(BerTag::context(1), r.ip_packet);
    w.raw(Bytes(kIpmmCcObjId));
    w.close(BerTag::context(12, true), 0);  // cCContents.iPMMCC
    w.close(BerTag::context(2, true), 0);   // cCContents: a CHOICE, explicitly tagged
    const std::uint8_t direction[] = {0x80, 0x01, direction_value(r.direction)};
    w.raw(Bytes(direction));               // payloadDirection [0]
    w.close(ber::kSequence, 0);            // CCPayload
    w.close(BerTag::context(1, true), 0);  // cCPayloadSequence
    return finish(w, wt, {true, r.header.cin, r.header.sequence, true, r.header.timestamp_ns}, out);
}

std::size_t Etsi102232Encoder::encode_keepalive(std::span<std::uint8_t> out) const noexcept {
    return keepalive_pdu(constant_keepalive_header(), {false, 0, 0, false, 0},
                         EtsiKeepAlive::Request, out);
}

std::size_t Etsi102232Encoder::encode_keepalive(const PreparedWarrant& destination,
                                                std::uint64_t sequence, std::int64_t timestamp_ns,
                                                std::span<std::uint8_t> out,
                                                EtsiKeepAlive kind) const noexcept {
    return keepalive_pdu(static_cast<const EtsiWarrant&>(destination),
                         {false, 0, sequence, true, timestamp_ns}, kind, out);
}

std::unique_ptr<Encoder> make_etsi_102232_encoder() {
    return std::make_unique<Etsi102232Encoder>();
}

}  // namespace tapwire::handover
