// ETSI TS 102 232-1/-5 encoder, checked against an independent decoder: asn1c generates a BER
// decoder from the asn1c-ready LI-PS-PDU profile (and the TS 102 232-5 and TS 103 280 modules)
// at test time; every kind of PDU the encoder makes is decoded with it (constraints checked),
// its XER is compared field by field with what the record said, and its DER re-encoding must
// equal our bytes (so no component was skipped as an unknown extension). Also: bounds with
// guard regions, no allocation in encode_*, prepare() validation, and the encode speed.
#include <time.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <filesystem>
#include <memory>
#include <regex>
#include <string>
#include <string_view>
#include <vector>

#include "common/bytes.hpp"
#include "common/ip_address.hpp"
#include "handover/etsi_102232.hpp"
#include "handover/record.hpp"
#include "tests/unit/handover_test_support.hpp"

// Every heap allocation in this program is counted: encode_* must make none.
TAPWIRE_TEST_COUNT_ALLOCATIONS();

using namespace tapwire;
using namespace tapwire::handover;
using namespace tapwire::test;

namespace {

// ---- the asn1c decoder, generated and compiled once per test run -------------------------

std::filesystem::path specs() {
    return shared_dir() / "specs";
}

const Asn1cDecoder& decoder() {
    // The modules of asn1c-profiles/README.md.
    static const Asn1cDecoder d(
        "PS-PDU",
        {specs() / "asn1c-profiles/LI-PS-PDU-voip.asn", specs() / "etsi-103280/TS_103_280.asn1",
         specs() / "etsi-102232-5/IPMultimediaPDU.RECONSTRUCTED-NOT-VERBATIM.asn"},
        "tapwire-etsi");
    return d;
}

/// Numbers in parentheses of an OBJECT IDENTIFIER / RELATIVE-OID value assignment in an
/// ASN.1 file, e.g. "5.5.17.1" for `iPMMIRIObjId RELATIVE-OID ::= {li-ps(5) ... iRI(1)}`.
std::string oid_from_asn1(const std::filesystem::path& file, const std::string& name) {
    const std::string text = read_file(file);
    std::smatch m;
    const std::regex assignment(name +
                                R"(\s+(OBJECT IDENTIFIER|RELATIVE-OID)\s*::=\s*\{([^}]*)\})");
    if (!std::regex_search(text, m, assignment)) return "?";
    std::string out;
    const std::string body = m[2];
    // A leading reference to another OID value (lawfulInterceptDomainId) is expanded.
    const auto first = body.find_first_not_of(" \t\r\n");
    const auto word_end = body.find_first_of(" \t\r\n(", first);
    if (first != std::string::npos && word_end != std::string::npos && body[word_end] != '(')
        out = oid_from_asn1(file, body.substr(first, word_end - first));
    const std::regex number(R"(\((\d+)\))");
    for (auto it = std::sregex_iterator(body.begin(), body.end(), number);
         it != std::sregex_iterator(); ++it)
        out += (out.empty() ? "" : ".") + (*it)[1].str();
    return out;
}

// ---- test data: warrants, SIP messages, packets ------------------------------------------

std::vector<WarrantContext> contexts() {
    std::vector<WarrantContext> v;
    WarrantContext full;  // every optional field, GeneralizedTime
    full.liid = "DE-BKA-2026-000123";
    full.authorization_country_code = "DE";
    full.operator_identifier = "TAPWIRE-OP";
    full.network_element_identifier = "sbc-fra-01";
    full.delivery_country_code = "DE";
    full.interception_point_id = "FRA-1:=?";  // 8 PrintableString characters
    v.push_back(full);
    WarrantContext minimal;  // no optional field, microSecondTimeStamp
    minimal.liid = "L";
    minimal.authorization_country_code = "FR";
    minimal.operator_identifier = "O";
    minimal.delivery_country_code = "BE";
    minimal.microsecond_timestamps = true;
    v.push_back(minimal);
    WarrantContext longest;  // every field at its maximum size, binary LIID
    longest.liid = std::string("LIID\x00\xff\x80-", 8) + std::string(17, 'x');  // 25 bytes
    longest.authorization_country_code = "NL";
    longest.operator_identifier = std::string(16, 'o');
    longest.network_element_identifier = std::string(16, 'n');
    longest.delivery_country_code = "GB";
    longest.interception_point_id = "ABCDEFGH";
    longest.microsecond_timestamps = true;
    v.push_back(longest);
    return v;
}

std::string with_content_length(std::string head, const std::string& body) {
    return head + "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

std::string sip_invite() {
    const std::string sdp =
        "v=0\r\n"
        "o=- 3886123456 3886123456 IN IP4 192.0.2.10\r\n"
        "s=-\r\n"
        "c=IN IP4 192.0.2.10\r\n"
        "t=0 0\r\n"
        "m=audio 40000 RTP/AVP 8 0 101\r\n"
        "a=rtpmap:8 PCMA/8000\r\n"
        "a=rtpmap:0 PCMU/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\n"
        "a=fmtp:101 0-16\r\n"
        "a=ptime:20\r\n"
        "a=sendrecv\r\n";
    return with_content_length(
        "INVITE sip:+4930555123@ims.example.net;user=phone SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-524287-1---a1b2c3d4e5f6\r\n"
        "Max-Forwards: 70\r\n"
        "Contact: <sip:+4930555999@192.0.2.10:5060>\r\n"
        "To: <sip:+4930555123@ims.example.net;user=phone>\r\n"
        "From: \"Target\" <sip:+4930555999@ims.example.net;user=phone>;tag=8f3a9c21\r\n"
        "Call-ID: 6c3f0a9e1b2d4c5e8f7a6b5c4d3e2f1a@192.0.2.10\r\n"
        "CSeq: 1 INVITE\r\n"
        "Allow: INVITE, ACK, CANCEL, BYE, NOTIFY, REFER, OPTIONS, UPDATE, PRACK\r\n"
        "Supported: replaces, timer, 100rel\r\n"
        "User-Agent: Tapwire-Test/1.0\r\n"
        "Content-Type: application/sdp\r\n",
        sdp);
}

std::string sip_ok() {
    return with_content_length(
        "SIP/2.0 200 OK\r\n"
        "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-524287-1---a1b2c3d4e5f6\r\n"
        "Contact: <sip:+4930555123@198.51.100.20:5060>\r\n"
        "To: <sip:+4930555123@ims.example.net;user=phone>;tag=77aa01\r\n"
        "From: \"Target\" <sip:+4930555999@ims.example.net;user=phone>;tag=8f3a9c21\r\n"
        "Call-ID: 6c3f0a9e1b2d4c5e8f7a6b5c4d3e2f1a@192.0.2.10\r\n"
        "CSeq: 1 INVITE\r\n",
        "");
}

std::string sip_bye() {
    return with_content_length(
        "BYE sip:+4930555123@198.51.100.20:5060 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP [2001:db8::10]:5060;branch=z9hG4bK-524287-2---9f8e7d6c\r\n"
        "Max-Forwards: 70\r\n"
        "To: <sip:+4930555123@ims.example.net;user=phone>;tag=77aa01\r\n"
        "From: \"Target\" <sip:+4930555999@ims.example.net;user=phone>;tag=8f3a9c21\r\n"
        "Call-ID: 6c3f0a9e1b2d4c5e8f7a6b5c4d3e2f1a@192.0.2.10\r\n"
        "CSeq: 2 BYE\r\n",
        "");
}

std::string sip_register() {
    return with_content_length(
        "REGISTER sip:ims.example.net SIP/2.0\r\n"
        "Via: SIP/2.0/TCP [2001:db8::10]:5060;branch=z9hG4bK-reg-0001\r\n"
        "Max-Forwards: 70\r\n"
        "To: <sip:+4930555999@ims.example.net>\r\n"
        "From: <sip:+4930555999@ims.example.net>;tag=reg77\r\n"
        "Call-ID: reg-4f1c2d3e@2001:db8::10\r\n"
        "CSeq: 42 REGISTER\r\n"
        "Contact: <sip:+4930555999@[2001:db8::10]:5060;transport=tcp>;expires=3600\r\n"
        "Expires: 3600\r\n",
        "");
}

/// An IPv4 or IPv6 / UDP packet around `payload`, `total` bytes in all (payload padded).
Bytes udp_of_size(bool v6, std::uint16_t sport, std::uint16_t dport, Bytes payload,
                  std::size_t total) {
    payload.resize(total - (v6 ? 40 : 20) - 8, 0);
    return v6 ? udp_packet(ip("2001:db8::10"), ip("2001:db8:1::20"), sport, dport, payload)
              : udp_packet(ip("192.0.2.10"), ip("198.51.100.20"), sport, dport, payload);
}

Bytes rtp(std::size_t total, bool v6) {
    // PT 8 (PCMA); the media fills the packet to `total`.
    return udp_of_size(v6, 40000, 30000,
                       rtp_payload(8, 0x1A2B, 123456, 0xDEADBEEF, total - (v6 ? 40 : 20) - 8 - 12),
                       total);
}

Bytes rtcp(bool v6) {
    const Bytes sender_report = rtcp_sender_report(0xDEADBEEF);
    return udp_of_size(v6, 40001, 30001, sender_report, (v6 ? 48 : 28) + sender_report.size());
}

// ---- the PDUs under test ------------------------------------------------------------------

enum class Kind { Iri, Cc, KeepAlive, DestinationKeepAlive };

struct Case {
    std::string label;
    Kind kind = Kind::Iri;
    std::size_t warrant = 0;  // index into Corpus::contexts
    IriRecord iri;
    CcRecord cc;
    std::uint64_t ka_sequence = 0;
    std::int64_t ka_time = 0;
    EtsiKeepAlive ka_kind = EtsiKeepAlive::Request;
};

constexpr std::uint64_t k2to63 = std::uint64_t(1) << 63;
constexpr std::int64_t kTime = 1'790'000'000'123'456'789;  // 2026-09-21T14:13:20.123456789Z

struct Corpus {
    Etsi102232Encoder encoder;
    std::vector<WarrantContext> contexts = ::contexts();
    std::vector<std::unique_ptr<PreparedWarrant>> warrants;
    std::deque<Bytes> storage;  // what records' spans point into
    std::vector<Case> cases;

    ByteSpan keep(Bytes b) {
        storage.push_back(std::move(b));
        return storage.back();
    }

    Corpus() {
        for (const auto& c : contexts) {
            std::string error;
            warrants.push_back(encoder.prepare(c, error));
            REQUIRE(warrants.back() != nullptr);
        }
        const IpAddress v4a = *IpAddress::parse("192.0.2.10");
        const IpAddress v4b = *IpAddress::parse("198.51.100.20");
        const IpAddress v6a = *IpAddress::parse("2001:db8::10");
        const IpAddress v6b = *IpAddress::parse("2001:db8:1::20");
        // (type, message, source, destination, cin, sequence, time)
        struct IriSpec {
            const char* label;
            IriType type;
            std::string sip;
            IpAddress src, dst;
            std::uint64_t cin, seq;
            std::int64_t time;
        };
        std::string big(70000, 'x');  // a SIP message over TCP past 64 KiB: 3-byte lengths
        big = with_content_length("MESSAGE sip:t@ims.example.net SIP/2.0\r\n", big);
        const std::vector<IriSpec> iris = {
            {"INVITE begin v4", IriType::Begin, sip_invite(), v4a, v4b, 1, 0, kTime},
            {"200 continue v4->v6", IriType::Continue, sip_ok(), v4b, v6a, 1, 1, kTime + 1},
            {"BYE end v6", IriType::End, sip_bye(), v6a, v6b, 1, 2, 1'790'000'001'000'000'000},
            {"REGISTER report v6", IriType::Report, sip_register(), v6a, v6b, 0xFFFFFFFF,
             0xFFFFFFFF, 1'790'000'000'500'000'000},
            {"INVITE no addresses", IriType::Begin, sip_invite(), {}, {}, 7, 3, 0},
            {"BYE only source known", IriType::End, sip_bye(), v4a, {}, 7, 4, 999'999},
            {"large CIN and sequence", IriType::Continue, sip_ok(), v4a, v4b, k2to63 + 5,
             k2to63 - 1, kTime},
            {"max CIN and sequence", IriType::Report, sip_register(), v4a, v4b, ~std::uint64_t(0),
             ~std::uint64_t(0), INT64_MAX},
            {"CIN 2^32", IriType::Begin, sip_invite(), v6a, v4a, 0x100000000, 0x100000001,
             -5'000'000'000},
            {"70 KB MESSAGE", IriType::Report, big, v4a, v4b, 9, 0, kTime},
            // A call ended by the idle timeout: END without a SIP message.
            {"END without a message (idle timeout)", IriType::End, "", v4b, v4a, 11, 6, kTime},
            {"END without a message or addresses", IriType::End, "", {}, {}, 12, 2, kTime},
        };
        for (std::size_t w = 0; w < warrants.size(); ++w) {
            for (const auto& s : iris) {
                Case c;
                c.label = std::string(s.label) + " / warrant " + std::to_string(w);
                c.kind = Kind::Iri;
                c.warrant = w;
                c.iri.header = {s.cin, s.seq, s.time};
                c.iri.type = s.type;
                c.iri.sip_message = keep(to_bytes(s.sip));
                c.iri.source = {s.src, 5060};
                c.iri.destination = {s.dst, 5062};
                cases.push_back(c);
            }
        }
        struct CcSpec {
            const char* label;
            Bytes packet;
            bool is_rtcp;
            Direction direction;
            std::uint64_t cin, seq;
            std::int64_t time;
        };
        const std::vector<CcSpec> ccs = {
            {"RTP 214 v4 from target", rtp(214, false), false, Direction::FromTarget, 1, 0, kTime},
            {"RTP 220 v6 to target", rtp(220, true), false, Direction::ToTarget, 1, 1, kTime + 1},
            {"RTCP v4 to target", rtcp(false), true, Direction::ToTarget, 1, 2, kTime + 20},
            {"RTCP v6 from target", rtcp(true), true, Direction::FromTarget, 2, 0, kTime},
            {"RTP unknown direction", rtp(214, false), false, Direction::Unknown, 3, 0, 0},
            {"RTP 1400 v4", rtp(1400, false), false, Direction::FromTarget, 4, 5, kTime},
            {"RTP 1400 v6 large CIN", rtp(1400, true), false, Direction::ToTarget,
             k2to63 + 0x12345678, k2to63 + 3, INT64_MAX},
            {"RTP sequence 2^32-1", rtp(214, false), false, Direction::FromTarget, 0xFFFFFFFF,
             0xFFFFFFFF, 1'000'000'000},
        };
        for (std::size_t w = 0; w < warrants.size(); ++w) {
            for (const auto& s : ccs) {
                Case c;
                c.label = std::string(s.label) + " / warrant " + std::to_string(w);
                c.kind = Kind::Cc;
                c.warrant = w;
                c.cc.header = {s.cin, s.seq, s.time};
                c.cc.direction = s.direction;
                c.cc.rtcp = s.is_rtcp;
                c.cc.ip_packet = keep(s.packet);
                cases.push_back(c);
            }
        }
        Case ka;
        ka.label = "constant keep-alive";
        ka.kind = Kind::KeepAlive;
        cases.push_back(ka);
        for (std::size_t w = 0; w < warrants.size(); ++w) {
            for (const auto kind : {EtsiKeepAlive::Request, EtsiKeepAlive::Response}) {
                Case c;
                c.label = std::string(kind == EtsiKeepAlive::Request ? "keep-alive"
                                                                     : "keep-aliveResponse") +
                          " / warrant " + std::to_string(w);
                c.kind = Kind::DestinationKeepAlive;
                c.warrant = w;
                c.ka_sequence = w == 2 ? k2to63 + 11 : 17;
                c.ka_time = kTime + std::int64_t(w);
                c.ka_kind = kind;
                cases.push_back(c);
            }
        }
    }

    std::size_t encode(const Case& c, std::span<std::uint8_t> out) const noexcept {
        switch (c.kind) {
            case Kind::Iri:
                return encoder.encode_iri(*warrants[c.warrant], c.iri, out);
            case Kind::Cc:
                return encoder.encode_cc(*warrants[c.warrant], c.cc, out);
            case Kind::KeepAlive:
                return encoder.encode_keepalive(out);
            case Kind::DestinationKeepAlive:
                return encoder.encode_keepalive(*warrants[c.warrant], c.ka_sequence, c.ka_time, out,
                                                c.ka_kind);
        }
        return 0;
    }
    Bytes encode(const Case& c) const {
        Bytes out(200000);
        out.resize(encode(c, out));
        return out;
    }
};

Corpus& corpus() {
    static Corpus c;
    return c;
}

// ---- expected values, computed independently of the encoder -------------------------------

/// GeneralizedTime as TS 102 232-1 wants it, from the C library's calendar: UTC, microsecond
/// fraction without trailing zeros, "Z".
std::string expected_generalized_time(std::int64_t ns) {
    if (ns < 0) ns = 0;
    const time_t seconds = time_t(ns / 1'000'000'000);
    struct tm tm {};
    ::gmtime_r(&seconds, &tm);
    char text[64];
    std::snprintf(text, sizeof text, "%04d%02d%02d%02d%02d%02d", tm.tm_year + 1900, tm.tm_mon + 1,
                  tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    std::string s = text;
    const long micros = long(ns % 1'000'000'000 / 1000);
    if (micros) {
        std::snprintf(text, sizeof text, ".%06ld", micros);
        std::string frac = text;
        while (frac.back() == '0')
            frac.pop_back();
        s += frac;
    }
    return s + "Z";
}

std::string text_at(const Xml& x, std::string_view path) {
    const Xml* n = x.at(path);
    return n ? n->trimmed() : "<absent>";
}

std::string enum_at(const Xml& x, std::string_view path) {
    const Xml* n = x.at(path);
    return n ? n->enumerated() : "<absent>";
}

std::string hex_at(const Xml& x, std::string_view path) {
    const Xml* n = x.at(path);
    return n ? hex(n->octets()) : "<absent>";
}

const char* iri_type_name(IriType t) {
    switch (t) {
        case IriType::Begin:
            return "iRI-Begin";
        case IriType::Continue:
            return "iRI-Continue";
        case IriType::End:
            return "iRI-End";
        case IriType::Report:
            return "iRI-Report";
        default:
            return "?";
    }
}

const char* direction_name(Direction d) {
    switch (d) {
        case Direction::FromTarget:
            return "fromTarget";
        case Direction::ToTarget:
            return "toTarget";
        default:
            return "indeterminate";
    }
}

void check_address(const Xml* a, const IpAddress& expected) {
    REQUIRE(a != nullptr);
    CHECK(enum_at(*a, "iP-type") == (expected.is_v6() ? "iPV6" : "iPV4"));
    CHECK(hex_at(*a, "iP-value/iPBinaryAddress") ==
          hex(Bytes(expected.bytes.begin(), expected.bytes.begin() + long(expected.length()))));
    if (expected.is_v6())
        CHECK(text_at(*a, "iPv6PrefixLength") == "128");
    else
        CHECK(a->child("iPv6PrefixLength") == nullptr);
}

struct ExpectedHeader {
    std::string liid, auth_cc, operator_id, ne_id, delivery_cc, ipid;
    bool has_cin = false;
    std::uint64_t cin = 0, sequence = 0;
    bool has_time = false, micro = false;
    std::int64_t time = 0;
};

void check_header(const Xml& pdu, const ExpectedHeader& e, const std::string& domain_oid) {
    const Xml* h = pdu.child("pSHeader");
    REQUIRE(h != nullptr);
    CHECK(text_at(*h, "li-psDomainId") == domain_oid);
    CHECK(hex_at(*h, "lawfulInterceptionIdentifier") == hex(to_bytes(e.liid)));
    CHECK(text_at(*h, "authorizationCountryCode") == (e.auth_cc.empty() ? "<absent>" : e.auth_cc));
    CHECK(hex_at(*h, "communicationIdentifier/networkIdentifier/operatorIdentifier") ==
          hex(to_bytes(e.operator_id)));
    CHECK(hex_at(*h, "communicationIdentifier/networkIdentifier/networkElementIdentifier") ==
          (e.ne_id.empty() ? "<absent>" : hex(to_bytes(e.ne_id))));
    // INTEGER (0..4294967295): the record's 64-bit values go modulo 2^32.
    CHECK(text_at(*h, "communicationIdentifier/communicationIdentityNumber") ==
          (e.has_cin ? std::to_string(e.cin & 0xFFFFFFFF) : "<absent>"));
    CHECK(text_at(*h, "communicationIdentifier/deliveryCountryCode") ==
          (e.delivery_cc.empty() ? "<absent>" : e.delivery_cc));
    CHECK(text_at(*h, "sequenceNumber") == std::to_string(e.sequence & 0xFFFFFFFF));
    const std::int64_t t = e.time < 0 ? 0 : e.time;
    if (e.has_time && e.micro) {
        CHECK(h->child("timeStamp") == nullptr);
        CHECK(text_at(*h, "microSecondTimeStamp/seconds") == std::to_string(t / 1'000'000'000));
        CHECK(text_at(*h, "microSecondTimeStamp/microSeconds") ==
              std::to_string(t % 1'000'000'000 / 1000));
    } else if (e.has_time) {
        CHECK(h->child("microSecondTimeStamp") == nullptr);
        CHECK(text_at(*h, "timeStamp") == expected_generalized_time(t));
    } else {
        CHECK(h->child("timeStamp") == nullptr);
        CHECK(h->child("microSecondTimeStamp") == nullptr);
    }
    CHECK(text_at(*h, "interceptionPointID") == (e.ipid.empty() ? "<absent>" : e.ipid));
    // Nothing else in the header.
    std::size_t expected_kids = 4 + !e.auth_cc.empty() + e.has_time + !e.ipid.empty();
    CHECK(h->kids.size() == expected_kids);
}

ExpectedHeader expected_header(const Corpus& corpus, const Case& c) {
    ExpectedHeader e;
    if (c.kind == Kind::KeepAlive) {
        e.liid = "-";
        e.operator_id = "-";
        return e;
    }
    const WarrantContext& w = corpus.contexts[c.warrant];
    e.liid = w.liid;
    e.auth_cc = w.authorization_country_code;
    e.operator_id = w.operator_identifier;
    e.ne_id = w.network_element_identifier;
    e.delivery_cc = w.delivery_country_code;
    e.ipid = w.interception_point_id;
    e.micro = w.microsecond_timestamps;
    e.has_time = true;
    if (c.kind == Kind::DestinationKeepAlive) {
        e.sequence = c.ka_sequence;
        e.time = c.ka_time;
        return e;
    }
    const RecordHeader& r = c.kind == Kind::Iri ? c.iri.header : c.cc.header;
    e.has_cin = true;
    e.cin = r.cin;
    e.sequence = r.sequence;
    e.time = r.timestamp_ns;
    return e;
}

struct Oids {
    std::string domain, iri, cc;
};

void check_pdu(const Corpus& corpus, const Case& c, const Xml& pdu, const Oids& oids) {
    REQUIRE(pdu.name == "PS-PDU");
    check_header(pdu, expected_header(corpus, c), oids.domain);
    const Xml* payload = pdu.child("payload");
    REQUIRE(payload != nullptr);
    REQUIRE(payload->kids.size() == 1);
    switch (c.kind) {
        case Kind::Iri: {
            const Xml* seq = payload->child("iRIPayloadSequence");
            REQUIRE(seq != nullptr);
            REQUIRE(seq->kids.size() == 1);
            const Xml& p = seq->kids[0];
            CHECK(p.name == "IRIPayload");
            CHECK(enum_at(p, "iRIType") == iri_type_name(c.iri.type));
            const Xml* mm = p.at("iRIContents/iPMMIRI");
            REQUIRE(mm != nullptr);
            CHECK(text_at(*mm, "iPMMIRIObjId") == oids.iri);
            const Xml* contents = mm->child("iPMMIRIContents");
            REQUIRE(contents != nullptr);
            REQUIRE(contents->kids.size() == 1);
            const Bytes sip(c.iri.sip_message.begin(), c.iri.sip_message.end());
            if (!c.iri.source.address.empty() && !c.iri.destination.address.empty()) {
                const Xml* m = contents->child("sIPMessage");
                REQUIRE(m != nullptr);
                check_address(m->child("iPSourceAddress"), c.iri.source.address);
                check_address(m->child("iPDestinationAddress"), c.iri.destination.address);
                CHECK(hex_at(*m, "sIPContent") == hex(sip));
            } else {
                CHECK(hex_at(*contents, "originalIPMMMessage") == hex(sip));
            }
            CHECK(p.kids.size() == 2);  // iRIType, iRIContents
            break;
        }
        case Kind::Cc: {
            const Xml* seq = payload->child("cCPayloadSequence");
            REQUIRE(seq != nullptr);
            REQUIRE(seq->kids.size() == 1);
            const Xml& p = seq->kids[0];
            CHECK(p.name == "CCPayload");
            CHECK(enum_at(p, "payloadDirection") == direction_name(c.cc.direction));
            const Xml* mm = p.at("cCContents/iPMMCC");
            REQUIRE(mm != nullptr);
            CHECK(text_at(*mm, "iPMMCCObjId") == oids.cc);
            CHECK(hex_at(*mm, "mMCCContents") ==
                  hex(Bytes(c.cc.ip_packet.begin(), c.cc.ip_packet.end())));
            CHECK(enum_at(*mm, "frameType") == "ipFrame");
            // MMCCprotocol has no RTCP value: RTCP is carried as rTP (RTP/RTCP).
            CHECK(enum_at(*mm, "mMCCprotocol") == "rTP");
            CHECK(mm->kids.size() == 4);
            CHECK(p.kids.size() == 2);  // payloadDirection, cCContents
            break;
        }
        case Kind::KeepAlive:
            CHECK(payload->at("tRIPayload/keep-alive") != nullptr);
            CHECK(payload->at("tRIPayload")->kids.size() == 1);
            break;
        case Kind::DestinationKeepAlive:
            CHECK(payload->at(c.ka_kind == EtsiKeepAlive::Request
                                  ? "tRIPayload/keep-alive"
                                  : "tRIPayload/keep-aliveResponse") != nullptr);
            CHECK(payload->at("tRIPayload")->kids.size() == 1);
            break;
    }
}

}  // namespace

// ---- tests ----------------------------------------------------------------------------------

TEST_CASE("ETSI 102 232: every PDU kind decodes with asn1c, field by field", "[etsi102232]") {
    const Asn1cDecoder& dec = decoder();
    if (!dec.ready()) return;
    const std::filesystem::path ipmm =
        specs() / "etsi-102232-5/IPMultimediaPDU.RECONSTRUCTED-NOT-VERBATIM.asn";
    const Oids oids{oid_from_asn1(specs() / "asn1c-profiles/LI-PS-PDU-voip.asn", "li-psDomainId"),
                    oid_from_asn1(ipmm, "iPMMIRIObjId"), oid_from_asn1(ipmm, "iPMMCCObjId")};
    REQUIRE(oids.domain == "0.4.0.2.2.5.1.43");  // the module version this encoder targets
    REQUIRE(oids.iri == "5.5.17.1");
    REQUIRE(oids.cc == "5.5.17.2");

    const Corpus& c = corpus();
    std::size_t n = 0;
    for (const Case& k : c.cases) {
        INFO(k.label);
        const Bytes pdu = c.encode(k);
        REQUIRE(!pdu.empty());
        const auto r = dec.decode(pdu, "pdu" + std::to_string(n++));
        INFO(r.xer.substr(0, 4000));
        REQUIRE(r.xer_status == 0);
        auto xml = XmlReader(r.xer).document();
        REQUIRE(xml.has_value());
        check_pdu(c, k, *xml, oids);
        // DER re-encoding of what asn1c understood equals our bytes: nothing was skipped or
        // reordered, and every length and time is canonical.
        CHECK(r.der_status == 0);
        CHECK(hex(to_bytes(r.der)) == hex(pdu));
    }
    CHECK(n == c.cases.size());
    CHECK(n >= 60);
}

TEST_CASE("ETSI 102 232: the asn1c harness rejects a damaged PDU", "[etsi102232]") {
    const Asn1cDecoder& dec = decoder();
    if (!dec.ready()) return;
    const Corpus& c = corpus();
    const Bytes good = c.encode(c.cases.front());
    CHECK(dec.decode(good, "good").xer_status == 0);
    Bytes truncated = good;
    truncated.pop_back();  // the outer length now overruns
    CHECK(dec.decode(truncated, "truncated").xer_status != 0);
    // The constraint check (-c) is on: a control character in authorizationCountryCode
    // (PrintableString) decodes as BER but is refused.
    Bytes bad_country = good;
    const std::uint8_t de[] = {0x82, 0x02, 'D', 'E'};
    auto at = std::search(bad_country.begin(), bad_country.end(), std::begin(de), std::end(de));
    REQUIRE(at != bad_country.end());
    at[3] = 0x01;
    CHECK(dec.decode(bad_country, "bad_country").xer_status != 0);
}

TEST_CASE("ETSI 102 232: too small a buffer gives 0 and nothing is written outside it",
          "[etsi102232]") {
    const Corpus& c = corpus();
    // The 70 KB message: the first and last 3000 of the sizes below the needed one.
    BoundsOptions options;
    options.sample_above = 8000;
    options.sample_edge = 3000;
    for (const Case& k : c.cases) {
        INFO(k.label);
        CHECK(check_buffer_bounds([&](std::span<std::uint8_t> out) { return c.encode(k, out); },
                                  options) == "");
    }
}

TEST_CASE("ETSI 102 232: encode_* makes no heap allocation", "[etsi102232]") {
    const Corpus& c = corpus();
    Bytes out(200000);
    const std::span<std::uint8_t> span(out);
    // Warm up once (a function-local static in the constant keep-alive), then count.
    for (const Case& k : c.cases)
        c.encode(k, span);
    const std::size_t before = allocations();
    std::size_t bytes = 0;
    for (int round = 0; round < 100; ++round)
        for (const Case& k : c.cases)
            bytes += c.encode(k, span);
    const std::size_t after = allocations();
    CHECK(bytes > 0);
    CHECK(after - before == 0);
    // The counter works: an allocation here is seen.
    const std::size_t mark = allocations();
    auto probe = std::make_unique<int>(1);
    const std::size_t seen = allocations() - mark;
    CHECK(seen == 1);
}

TEST_CASE("ETSI 102 232: prepare() refuses what the PSHeader cannot carry, naming the field",
          "[etsi102232]") {
    const Etsi102232Encoder encoder;
    const WarrantContext good = contexts()[0];
    struct Bad {
        const char* field;
        void (*spoil)(WarrantContext&);
    };
    const Bad bad[] = {
        {"liid", [](WarrantContext& w) { w.liid = std::string(26, 'L'); }},
        {"liid", [](WarrantContext& w) { w.liid.clear(); }},
        {"authorization_country_code",
         [](WarrantContext& w) { w.authorization_country_code = "D"; }},
        {"authorization_country_code",
         [](WarrantContext& w) { w.authorization_country_code = "DEU"; }},
        {"authorization_country_code",
         [](WarrantContext& w) { w.authorization_country_code = "de"; }},
        {"authorization_country_code",
         [](WarrantContext& w) { w.authorization_country_code = ""; }},
        {"delivery_country_code", [](WarrantContext& w) { w.delivery_country_code = "1A"; }},
        {"delivery_country_code", [](WarrantContext& w) { w.delivery_country_code = ""; }},
        {"operator_identifier", [](WarrantContext& w) { w.operator_identifier.clear(); }},
        {"operator_identifier",
         [](WarrantContext& w) { w.operator_identifier = std::string(17, 'o'); }},
        {"network_element_identifier",
         [](WarrantContext& w) { w.network_element_identifier = std::string(17, 'n'); }},
        {"interception_point_id", [](WarrantContext& w) { w.interception_point_id = "ABCDEFGHI"; }},
        {"interception_point_id", [](WarrantContext& w) { w.interception_point_id = "tap_1"; }},
    };
    for (const Bad& b : bad) {
        WarrantContext w = good;
        b.spoil(w);
        std::string error;
        INFO(b.field);
        CHECK(encoder.prepare(w, error) == nullptr);
        CHECK(error.rfind(std::string(b.field) + ":", 0) == 0);
    }
    std::string error;
    CHECK(encoder.prepare(good, error) != nullptr);
    CHECK(error.empty());
    // Limits are inclusive: 25-byte LIID, 16-byte ids, 8-character IPID all pass.
    CHECK(encoder.prepare(contexts()[2], error) != nullptr);
}

TEST_CASE("ETSI 102 232: factory", "[etsi102232]") {
    const auto encoder = make_etsi_102232_encoder();
    REQUIRE(encoder != nullptr);
    CHECK(std::string(encoder->name()) == "etsi-102232");
}
