// ETSI TS 103 221-2 X2/X3 encoder, checked against Wireshark's independent `5gli` dissector:
// the PDUs go into a pcap as a TCP stream, tshark decodes it (decode-as on the port) and its
// PDML is compared field by field with what the records said. Also: bounds, no allocation on
// the hot path, prepare() validation, and (hidden, [.bench]) the encode speed.
#include <time.h>

#include <algorithm>
#include <array>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/bytes.hpp"
#include "common/ip_address.hpp"
#include "handover/record.hpp"
#include "handover/x2x3.hpp"
#include "tests/unit/handover_test_support.hpp"

// Every heap allocation in this program is counted: encode_* must make none.
TAPWIRE_TEST_COUNT_ALLOCATIONS();

using namespace tapwire;
using namespace tapwire::handover;
using namespace tapwire::test;

namespace {

// ---- test data --------------------------------------------------------------------------

// Mixed case on purpose: X1 UUIDs are case-insensitive, tshark prints lower case.
constexpr const char* kXid = "3FA85F64-5717-4562-b3fc-2c963f66afa6";
constexpr const char* kXidShown = "3fa85f64-5717-4562-b3fc-2c963f66afa6";
constexpr const char* kNfid = "sbc-fra-01";
constexpr const char* kIpid = "tap-eth2";

WarrantContext context() {
    WarrantContext c;
    c.liid = "LIID-0042";
    c.authorization_country_code = "DE";
    c.operator_identifier = "tapwire-op";
    c.network_element_identifier = kNfid;
    c.delivery_country_code = "DE";
    c.interception_point_id = kIpid;
    c.xid = kXid;
    return c;
}

std::vector<std::uint8_t> unhex(std::string_view h) {
    std::vector<std::uint8_t> out;
    for (std::size_t i = 0; i + 1 < h.size(); i += 2) {
        out.push_back(
            static_cast<std::uint8_t>(std::stoi(std::string(h.substr(i, 2)), nullptr, 16)));
    }
    return out;
}

std::string sip_message(std::string_view start_line, std::size_t body_size) {
    std::string body(body_size, 'x');
    for (std::size_t i = 0; i < body.size(); ++i)
        body[i] = "v=0 o=- 1 c=IN IP4 a\r\n"[i % 22];
    std::string m(start_line);
    m += "\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds\r\n"
         "Max-Forwards: 70\r\nTo: Bob <sip:bob@example.com>\r\n"
         "From: Alice <sip:alice@example.org>;tag=1928301774\r\n"
         "Call-ID: a84b4c76e66710@pc33.example.org\r\nCSeq: 314159 INVITE\r\n"
         "Contact: <sip:alice@192.0.2.10>\r\nContent-Type: application/sdp\r\n"
         "Content-Length: " +
         std::to_string(body.size()) + "\r\n\r\n" + body;
    return m;
}

std::vector<std::uint8_t> udp(std::string_view src, std::string_view dst, std::uint16_t sport,
                              std::uint16_t dport, const std::vector<std::uint8_t>& payload) {
    return udp_packet(ip(src), ip(dst), sport, dport, payload);
}

/// An RTP packet (RFC 3550): PCMA, `media` octets of payload.
std::vector<std::uint8_t> rtp(std::uint16_t seq, std::uint32_t ssrc, std::size_t media) {
    return rtp_payload(8, seq, seq * 160u, ssrc, media);
}

/// A 214-octet IPv4/UDP/RTP packet, the size the benchmark names.
std::vector<std::uint8_t> rtp214() {
    return udp("192.0.2.10", "198.51.100.20", 40000, 50000, rtp(1, 0x11223344, 174));
}

// ---- pcap and tshark --------------------------------------------------------------------

constexpr std::uint16_t kLemfPort = 41221;

/// Writes the segments as one TCP stream (Ethernet/IPv4/TCP, sequence numbers contiguous).
void write_stream_pcap(const std::string& path,
                       const std::vector<std::vector<std::uint8_t>>& segments) {
    std::vector<Bytes> frames;
    std::uint32_t seq = 1000;
    for (std::size_t i = 0; i < segments.size(); ++i) {
        REQUIRE(segments[i].size() <= 65495);
        frames.push_back(ethernet_frame(ip_packet(ip("10.1.0.1"), ip("10.2.0.1"), 6,
                                                  tcp_segment(33000, kLemfPort, seq, segments[i]),
                                                  static_cast<std::uint16_t>(i))));
        seq += static_cast<std::uint32_t>(segments[i].size());
    }
    write_pcap(path, frames);
}

/// tshark's output of `command`, or nullopt when it fails.
std::optional<std::string> run(const std::string& command) {
    std::string out;
    if (run_command(command, out) != 0) return std::nullopt;
    return out;
}

/// One decoded PDU: li5g field name -> (show, value), first occurrence.
struct Field {
    std::string show, value;
};
struct DecodedPdu {
    std::map<std::string, Field> fields;
    std::string xml;  // the PDU's PDML, inner dissections included
    bool has(const std::string& name) const { return fields.count(name) != 0; }
    const Field& at(const std::string& name) const {
        auto it = fields.find(name);
        if (it == fields.end()) FAIL("tshark shows no " << name);
        return it->second;
    }
};
struct DecodedPacket {
    std::vector<DecodedPdu> pdus;
    bool malformed = false;
};

std::string attribute(std::string_view tag, std::string_view name) {
    const std::string key = std::string(" ") + std::string(name) + "=\"";
    const auto at = tag.find(key);
    if (at == std::string_view::npos) return {};
    const auto begin = at + key.size();
    return std::string(tag.substr(begin, tag.find('"', begin) - begin));
}

std::vector<DecodedPacket> parse_pdml(const std::string& pdml) {
    std::vector<DecodedPacket> packets;
    std::size_t at = 0;
    while ((at = pdml.find("<packet>", at)) != std::string::npos) {
        const std::size_t end = pdml.find("</packet>", at);
        const std::string_view packet(pdml.data() + at, end - at);
        at = end;
        DecodedPacket decoded;
        decoded.malformed = packet.find("_ws.malformed") != std::string_view::npos;
        constexpr std::string_view kProto = "<proto name=\"5gli\"";
        std::size_t p = packet.find(kProto);
        while (p != std::string_view::npos) {
            const std::size_t next = packet.find(kProto, p + 1);
            const std::string_view chunk = packet.substr(p, next - p);
            DecodedPdu pdu;
            pdu.xml = std::string(chunk);
            std::size_t f = 0;
            while ((f = chunk.find("<field name=\"li5g.", f)) != std::string_view::npos) {
                const std::string_view tag = chunk.substr(f, chunk.find('>', f) - f);
                const std::string name = attribute(tag, "name");
                pdu.fields.emplace(name, Field{attribute(tag, "show"), attribute(tag, "value")});
                ++f;
            }
            decoded.pdus.push_back(std::move(pdu));
            p = next;
        }
        packets.push_back(std::move(decoded));
    }
    return packets;
}

std::vector<DecodedPacket> decode(const std::string& pcap) {
    const std::string command = "tshark -r '" + pcap +
                                "' -d tcp.port==" + std::to_string(kLemfPort) +
                                ",5gli --enable-heuristic rtp_udp -T pdml 2>/dev/null";
    auto out = run(command);
    REQUIRE(out.has_value());
    return parse_pdml(*out);
}

/// tshark's rendering of an absolute UTC time ("Jan  3, 2024 02:06:40.000000001 UTC").
std::string tshark_time(std::int64_t ns) {
    const time_t seconds = static_cast<time_t>(ns / 1'000'000'000);
    struct tm tm {};
    gmtime_r(&seconds, &tm);
    char date[64];
    std::strftime(date, sizeof date, "%b %e, %Y %H:%M:%S", &tm);
    char out[96];
    std::snprintf(out, sizeof out, "%s.%09lld UTC", date,
                  static_cast<long long>(ns % 1'000'000'000));
    return out;
}

/// What tshark must show for one PDU, written from the record (not from the encoder).
struct Expected {
    int type = 0, format = 0, direction = 0;
    std::string xid = kXidShown;
    std::uint64_t correlation = 0;
    std::optional<std::uint32_t> sequence;
    std::optional<std::int64_t> timestamp_ns;
    std::string source, destination;  // addresses as text, "" when absent
    bool v6 = false;
    std::optional<int> source_port, destination_port, protocol;
    bool warrant_attributes = true;  // NFID and IPID
    std::vector<std::uint8_t> payload;
    std::string inner;  // a protocol tshark must find inside the payload ("" for none)
};

void check(const DecodedPdu& pdu, const Expected& e) {
    INFO(pdu.xml.substr(0, 4000));
    CHECK(pdu.at("li5g.ver").show == "5");
    CHECK(pdu.at("li5g.type").show == std::to_string(e.type));
    CHECK(pdu.at("li5g.pf").show == std::to_string(e.format));
    CHECK(pdu.at("li5g.pd").show == std::to_string(e.direction));
    CHECK(pdu.at("li5g.xid").show == e.xid);
    char cid[17];
    std::snprintf(cid, sizeof cid, "%016llx", static_cast<unsigned long long>(e.correlation));
    CHECK(pdu.at("li5g.cid").value == cid);
    CHECK(pdu.at("li5g.pl").show == std::to_string(e.payload.size()));
    if (e.sequence) {
        CHECK(pdu.at("li5g.sq").show == std::to_string(*e.sequence));
    } else {
        CHECK_FALSE(pdu.has("li5g.sq"));
    }
    if (e.timestamp_ns) {
        CHECK(pdu.at("li5g.ts").show == tshark_time(*e.timestamp_ns));
    } else {
        CHECK_FALSE(pdu.has("li5g.ts"));
    }
    const std::string src = e.v6 ? "li5g.srcipv6" : "li5g.srcip";
    const std::string dst = e.v6 ? "li5g.dstipv6" : "li5g.dstip";
    const std::string other_src = e.v6 ? "li5g.srcip" : "li5g.srcipv6";
    const std::string other_dst = e.v6 ? "li5g.dstip" : "li5g.dstipv6";
    CHECK_FALSE(pdu.has(other_src));
    CHECK_FALSE(pdu.has(other_dst));
    if (!e.source.empty()) {
        CHECK(pdu.at(src).show == e.source);
    } else {
        CHECK_FALSE(pdu.has(src));
    }
    if (!e.destination.empty()) {
        CHECK(pdu.at(dst).show == e.destination);
    } else {
        CHECK_FALSE(pdu.has(dst));
    }
    const std::pair<const char*, std::optional<int>> numbers[] = {
        {"li5g.srcport", e.source_port},
        {"li5g.dstport", e.destination_port},
        {"li5g.ipproto", e.protocol}};
    for (const auto& [name, value] : numbers) {
        if (value) {
            CHECK(pdu.at(name).show == std::to_string(*value));
        } else {
            CHECK_FALSE(pdu.has(name));
        }
    }
    if (e.warrant_attributes) {
        CHECK(pdu.at("li5g.nfid").value == hex(as_bytes(kNfid)));
        CHECK(pdu.at("li5g.ipid").value == hex(as_bytes(kIpid)));
    } else {
        CHECK_FALSE(pdu.has("li5g.nfid"));
        CHECK_FALSE(pdu.has("li5g.ipid"));
    }
    if (e.payload.empty()) {
        CHECK((!pdu.has("li5g.pld") || pdu.at("li5g.pld").value.empty()));
    } else {
        CHECK(pdu.at("li5g.pld").value == hex(e.payload));
    }
    if (!e.inner.empty()) {
        CHECK(pdu.xml.find("<proto name=\"" + e.inner + "\"") != std::string::npos);
    }
}

// ---- the records of one call, encoded, with what tshark must show for each --------------

struct Case {
    std::vector<std::uint8_t> pdu;
    Expected expected;
};

constexpr std::uint64_t kCin = 0x0102030405060708;
constexpr std::int64_t kT0 = 1704250000'000000001;  // Jan  3 2024, one nanosecond past

struct Fixture {
    std::unique_ptr<Encoder> encoder = make_x2x3_encoder();
    std::unique_ptr<PreparedWarrant> warrant;
    // Payloads outlive the records that point at them.
    std::string invite = sip_message("INVITE sip:bob@example.com SIP/2.0", 200);
    std::string ok = sip_message("SIP/2.0 200 OK", 180);
    std::string bye = sip_message("BYE sip:bob@example.com SIP/2.0", 0);
    std::vector<std::uint8_t> rtp_out = rtp214();
    std::vector<std::uint8_t> rtp_in =
        udp("198.51.100.20", "192.0.2.10", 50000, 40000, rtp(7, 0x55667788, 174));
    std::vector<std::uint8_t> rtcp_out =
        udp("192.0.2.10", "198.51.100.20", 40001, 50001, rtcp_sender_report(0x11223344));
    std::vector<std::uint8_t> rtcp_in =
        udp("198.51.100.20", "192.0.2.10", 50001, 40001, rtcp_sender_report(0x55667788));
    std::vector<std::uint8_t> rtp_v6 =
        udp("2001:db8::10", "2001:db8:0:1::20", 40002, 50002, rtp(9, 0x99aabbcc, 160));

    Fixture() {
        std::string error;
        warrant = encoder->prepare(context(), error);
        REQUIRE(warrant != nullptr);
    }

    std::vector<std::uint8_t> encode_iri(const IriRecord& r) {
        std::vector<std::uint8_t> out(4096);
        const std::size_t n = encoder->encode_iri(*warrant, r, out);
        REQUIRE(n > 0);
        out.resize(n);
        return out;
    }
    std::vector<std::uint8_t> encode_cc(const CcRecord& r) {
        std::vector<std::uint8_t> out(4096);
        const std::size_t n = encoder->encode_cc(*warrant, r, out);
        REQUIRE(n > 0);
        out.resize(n);
        return out;
    }

    // The plain records the bounds, allocation and speed tests encode: the INVITE over IPv4
    // (type and transport left at their defaults) and the target's first RTP packet.
    IriRecord invite_record() const {
        IriRecord r;
        r.header = {kCin, 0, kT0};
        r.sip_message = as_bytes(invite);
        r.source = {ip("192.0.2.10"), 5060};
        r.destination = {ip("198.51.100.20"), 5062};
        return r;
    }
    CcRecord rtp_record() const {
        CcRecord r;
        r.header = {kCin, 0, kT0};
        r.direction = Direction::FromTarget;
        r.ip_packet = rtp_out;
        return r;
    }

    // An X2 PDU: SIP over `transport` between the addresses; tshark shows the record's fields.
    Case signalling(const std::string& sip, IriType type, std::uint64_t cin, std::uint64_t seq,
                    std::int64_t time, const char* src, const char* dst, int sport, int dport,
                    std::uint8_t transport) {
        IriRecord r;
        r.header = {cin, seq, time};
        r.type = type;
        r.sip_message = as_bytes(sip);
        r.source = {ip(src), static_cast<std::uint16_t>(sport)};
        r.destination = {ip(dst), static_cast<std::uint16_t>(dport)};
        r.transport = transport;
        Expected e;
        e.type = 1;
        e.format = 9;
        e.direction = 1;
        e.correlation = cin;
        e.sequence = static_cast<std::uint32_t>(seq);
        e.timestamp_ns = time;
        e.source = src;
        e.destination = dst;
        e.v6 = r.source.address.is_v6();
        e.source_port = sport;
        e.destination_port = dport;
        e.protocol = transport;
        e.payload = to_bytes(sip);
        e.inner = "sip";
        return {encode_iri(r), e};
    }

    Case sip_v4() {
        return signalling(invite, IriType::Begin, kCin, 0, kT0, "192.0.2.10", "198.51.100.20", 5060,
                          5062, 17);
    }
    Case sip_v6() {
        return signalling(ok, IriType::Continue, kCin, 1, kT0 + 499'999'999, "2001:db8:0:1::20",
                          "2001:db8::10", 5061, 5061, 6);
    }
    // The 32-bit Sequence Number wraps (tshark shows 5); a CIN with its top bit set stays
    // unsigned.
    Case sip_end() {
        return signalling(bye, IriType::End, 0xfedcba9876543210, (std::uint64_t{1} << 32) + 5,
                          kT0 + 86'400'000'000'000, "192.0.2.10", "198.51.100.20", 5060, 5062, 17);
    }

    Case media(const std::vector<std::uint8_t>& packet, Direction d, std::uint64_t seq, bool rtcp,
               const char* src, const char* dst, int sport, int dport, bool v6) {
        CcRecord r;
        r.header = {kCin, seq, kT0 + static_cast<std::int64_t>(seq) * 20'000'000};
        r.direction = d;
        r.ip_packet = packet;
        r.rtcp = rtcp;
        Expected e;
        e.type = 2;
        e.format = v6 ? 6 : 5;
        e.correlation = kCin;
        e.direction = d == Direction::FromTarget ? 3 : d == Direction::ToTarget ? 2 : 1;
        e.sequence = static_cast<std::uint32_t>(seq);
        e.timestamp_ns = r.header.timestamp_ns;
        e.source = src;
        e.destination = dst;
        e.v6 = v6;
        e.source_port = sport;
        e.destination_port = dport;
        e.protocol = 17;
        e.payload = packet;
        e.inner = rtcp ? "rtcp" : "rtp";
        return {encode_cc(r), e};
    }

    Case rtp_from() {
        return media(rtp_out, Direction::FromTarget, 0, false, "192.0.2.10", "198.51.100.20", 40000,
                     50000, false);
    }
    Case rtp_to() {
        return media(rtp_in, Direction::ToTarget, 1, false, "198.51.100.20", "192.0.2.10", 50000,
                     40000, false);
    }
    Case rtcp_from() {
        return media(rtcp_out, Direction::FromTarget, 2, true, "192.0.2.10", "198.51.100.20", 40001,
                     50001, false);
    }
    Case rtcp_to() {
        return media(rtcp_in, Direction::ToTarget, 3, true, "198.51.100.20", "192.0.2.10", 50001,
                     40001, false);
    }
    Case rtp_ipv6() {
        return media(rtp_v6, Direction::FromTarget, 4, false, "2001:db8::10", "2001:db8:0:1::20",
                     40002, 50002, true);
    }

    static Case keepalive(std::uint32_t seq) {
        std::vector<std::uint8_t> out(64);
        const std::size_t n = X2X3Encoder::encode_keepalive(seq, out);
        REQUIRE(n == x2x3::kKeepaliveSize);
        out.resize(n);
        Expected e;
        e.type = 3;
        e.format = 0;
        e.direction = 0;
        e.xid = "00000000-0000-0000-0000-000000000000";
        e.sequence = seq;
        e.warrant_attributes = false;
        return {out, e};
    }
};

std::vector<std::uint8_t> concat(const std::vector<Case>& cases) {
    std::vector<std::uint8_t> out;
    for (const auto& c : cases)
        out.insert(out.end(), c.pdu.begin(), c.pdu.end());
    return out;
}

}  // namespace

TEST_CASE("x2x3: tshark's 5gli dissector decodes every PDU kind, several per segment") {
    if (const std::string why = tshark_missing("5gli"); !why.empty()) {
        WARN("skipped: " << why);
        return;
    }
    Fixture fx;
    // Segment 1: one X2; segment 2: X2, X3 both ways (RTP, RTCP), IPv6 X3 and a keepalive;
    // segment 3: the END record.
    const std::vector<std::vector<Case>> segments = {
        {fx.sip_v4()},
        {fx.sip_v6(), fx.rtp_from(), fx.rtp_to(), fx.rtcp_from(), fx.rtcp_to(), fx.rtp_ipv6(),
         Fixture::keepalive(7)},
        {fx.sip_end()},
    };
    test::TempDir dir("x2x3");
    std::vector<std::vector<std::uint8_t>> wire;
    for (const auto& s : segments)
        wire.push_back(concat(s));
    write_stream_pcap(dir.file("x2x3.pcap"), wire);

    const auto packets = decode(dir.file("x2x3.pcap"));
    REQUIRE(packets.size() == segments.size());
    for (std::size_t i = 0; i < segments.size(); ++i) {
        INFO("segment " << i);
        CHECK_FALSE(packets[i].malformed);
        REQUIRE(packets[i].pdus.size() == segments[i].size());
        for (std::size_t j = 0; j < segments[i].size(); ++j) {
            INFO("PDU " << j);
            check(packets[i].pdus[j], segments[i][j].expected);
        }
    }
}

TEST_CASE("x2x3: a PDU across two TCP segments is framed by its length fields") {
    if (const std::string why = tshark_missing("5gli"); !why.empty()) {
        WARN("skipped: " << why);
        return;
    }
    Fixture fx;
    const std::vector<Case> cases = {fx.sip_v4(), fx.rtp_from(), Fixture::keepalive(8)};
    const std::vector<std::uint8_t> stream = concat(cases);
    // Cut inside the X3 PDU's payload: segment 2 starts mid-PDU and carries the next one.
    const std::size_t cut = cases[0].pdu.size() + 100;
    test::TempDir dir("x2x3");
    write_stream_pcap(dir.file("split.pcap"),
                      {std::vector<std::uint8_t>(stream.begin(), stream.begin() + cut),
                       std::vector<std::uint8_t>(stream.begin() + cut, stream.end())});

    // tshark 4.0's 5gli does not ask TCP for more data, so it cannot dissect a split PDU in
    // place. tshark reassembles the stream itself (follow), and the 5gli dissector then walks
    // the reassembled bytes purely by Header Length + Payload Length.
    auto follow =
        run("tshark -r '" + dir.file("split.pcap") + "' -q -z follow,tcp,raw,0 2>/dev/null");
    REQUIRE(follow.has_value());
    std::string reassembled_hex;
    std::size_t lines = 0;
    for (std::size_t at = 0; at < follow->size();) {
        std::size_t end = follow->find('\n', at);
        if (end == std::string::npos) end = follow->size();
        const std::string line = follow->substr(at, end - at);
        at = end + 1;
        if (!line.empty() && line.find_first_not_of("0123456789abcdef") == std::string::npos) {
            reassembled_hex += line;
            ++lines;
        }
    }
    CHECK(lines == 2);
    const std::vector<std::uint8_t> reassembled = unhex(reassembled_hex);
    REQUIRE(reassembled == stream);

    write_stream_pcap(dir.file("joined.pcap"), {reassembled});
    const auto packets = decode(dir.file("joined.pcap"));
    REQUIRE(packets.size() == 1);
    CHECK_FALSE(packets[0].malformed);
    REQUIRE(packets[0].pdus.size() == cases.size());
    for (std::size_t j = 0; j < cases.size(); ++j) {
        INFO("PDU " << j);
        check(packets[0].pdus[j], cases[j].expected);
    }
}

TEST_CASE("x2x3: wire layout of a keepalive and an X2 header, octet by octet") {
    // Written from TS 103 221-2 table 5.1-1 so that the layout is checked without tshark.
    std::array<std::uint8_t, 64> ka{};
    REQUIRE(X2X3Encoder::encode_keepalive(0x01020304, ka) == 48);
    CHECK(hex({ka.data(), 48}) ==
          "0005"                              // version
          "0003"                              // keepalive
          "00000030"                          // header length 48
          "00000000"                          // payload length
          "0000"                              // format: reserved for keepalive
          "0000"                              // direction: reserved for keepalive
          "00000000000000000000000000000000"  // XID
          "0000000000000000"                  // correlation ID
          "0008000401020304");                // Sequence Number

    auto encoder = make_x2x3_encoder();
    WarrantContext c = context();
    c.network_element_identifier.clear();
    c.interception_point_id = "P";
    std::string error;
    auto warrant = encoder->prepare(c, error);
    REQUIRE(warrant);
    IriRecord r;
    r.header = {0x1122334455667788, 0x99, 1'000'000'002'000'000'003};
    r.sip_message = as_bytes("SIP");
    r.source = {ip("10.0.0.1"), 0};  // no port: no port attribute
    r.transport = 0;                 // unknown: no protocol attribute
    std::array<std::uint8_t, 256> out{};
    const std::size_t n = encoder->encode_iri(*warrant, r, out);
    CHECK(hex({out.data(), n}) ==
          "0005"                              // version
          "0001"                              // X2
          "00000049"                          // header length 40 + 5 + 8 + 12 + 8 = 73
          "00000003"                          // payload length
          "0009"                              // SIP message
          "0001"                              // direction unknown to the POI
          "3fa85f6457174562b3fc2c963f66afa6"  // XID
          "1122334455667788"                  // correlation ID = CIN
          "0007000150"                        // IPID "P"
          "0008000400000099"                  // Sequence Number
          "000900083b9aca0200000003"          // Timestamp: 1000000002 s, 3 ns
          "000a00040a000001"                  // source IPv4
          "534950");                          // payload
}

TEST_CASE("x2x3: too small a buffer returns 0 and writes nothing") {
    Fixture fx;
    IriRecord iri_v6;
    iri_v6.header = {kCin, 1, kT0};
    iri_v6.sip_message = as_bytes(fx.ok);
    iri_v6.source = {ip("2001:db8::1"), 5060};
    iri_v6.destination = {ip("2001:db8::2"), 5060};
    CcRecord cc;
    cc.header = {kCin, 2, kT0};
    cc.direction = Direction::ToTarget;
    cc.ip_packet = fx.rtp_v6;
    CcRecord truncated = cc;  // an IP header cut short: no address attributes, still a PDU
    truncated.ip_packet = ByteSpan(fx.rtp_out).first(12);

    // The size is checked before anything is written: a refused buffer is left as it was.
    BoundsOptions untouched;
    untouched.refused_span_untouched = true;
    auto check_bounds = [&](const char* what, auto&& encode) {
        INFO(what);
        CHECK(check_buffer_bounds(encode, untouched) == "");
    };
    const Encoder& e = *fx.encoder;
    const PreparedWarrant& w = *fx.warrant;
    const IriRecord iri_v4 = fx.invite_record();
    check_bounds("X2 SIP, IPv4",
                 [&](std::span<std::uint8_t> out) { return e.encode_iri(w, iri_v4, out); });
    check_bounds("X2 SIP, IPv6",
                 [&](std::span<std::uint8_t> out) { return e.encode_iri(w, iri_v6, out); });
    const CcRecord cc_v4 = fx.rtp_record();
    check_bounds("X3 RTP, IPv4",
                 [&](std::span<std::uint8_t> out) { return e.encode_cc(w, cc_v4, out); });
    check_bounds("X3 RTP, IPv6",
                 [&](std::span<std::uint8_t> out) { return e.encode_cc(w, cc, out); });
    check_bounds("X3, truncated IP header",
                 [&](std::span<std::uint8_t> out) { return e.encode_cc(w, truncated, out); });
    check_bounds("keepalive with a number", [&](std::span<std::uint8_t> out) {
        return X2X3Encoder::encode_keepalive(3, out);
    });

    // The interface's keepalive takes a number only when it writes the PDU.
    std::array<std::uint8_t, 64> ka{};
    CHECK(e.encode_keepalive(std::span<std::uint8_t>(ka).first(47)) == 0);
    REQUIRE(e.encode_keepalive(ka) == 48);
    CHECK(load_be32(&ka[44]) == 0);
    REQUIRE(e.encode_keepalive(ka) == 48);
    CHECK(load_be32(&ka[44]) == 1);
}

TEST_CASE("x2x3: encode_* allocate nothing") {
    Fixture fx;
    IriRecord iri = fx.invite_record();
    iri.source = {ip("2001:db8::1"), 5060};  // an IPv6 source, an IPv4 destination
    iri.destination = {ip("192.0.2.1"), 5060};
    CcRecord cc = fx.rtp_record();
    std::vector<std::uint8_t> out(4096);
    std::size_t total = 0;
    const std::size_t before = allocations();
    for (int i = 0; i < 1000; ++i) {
        iri.header.sequence = cc.header.sequence = static_cast<std::uint64_t>(i);
        total += fx.encoder->encode_iri(*fx.warrant, iri, out);
        total += fx.encoder->encode_cc(*fx.warrant, cc, out);
        total += fx.encoder->encode_keepalive(out);
        total += fx.encoder->encode_iri(*fx.warrant, iri, std::span<std::uint8_t>(out).first(10));
    }
    const std::size_t after = allocations();
    CHECK(total > 0);
    CHECK(after == before);
    // The counter works: a string that defeats the small-string buffer is counted.
    std::string heap(100, 'x');
    CHECK(allocations() > after);
}

TEST_CASE("x2x3: prepare() refuses what X2/X3 cannot carry, naming the field") {
    auto encoder = make_x2x3_encoder();
    auto refused = [&](const WarrantContext& c) {
        std::string error;
        auto w = encoder->prepare(c, error);
        CHECK(w == nullptr);
        return error;
    };
    const char* bad_xids[] = {
        "",
        "not-a-uuid",
        "3fa85f6457174562b3fc2c963f66afa6",        // no hyphens
        "3fa85f64-5717-4562-b3fc-2c963f66afa",     // one digit short
        "3fa85f64-5717-4562-b3fc-2c963f66afa6a",   // one digit too many
        "3fa85f64-5717-4562-b3fc-2c963f66afg6",    // not hex
        "3fa85f645-717-4562-b3fc-2c963f66afa6",    // hyphen misplaced
        "{3fa85f64-5717-4562-b3fc-2c963f66afa6}",  // braces
        "00000000-0000-0000-0000-000000000000",    // nil: keepalives only
    };
    for (const char* xid : bad_xids) {
        INFO("xid '" << xid << "'");
        WarrantContext c = context();
        c.xid = xid;
        const std::string error = refused(c);
        CHECK(error.rfind("xid:", 0) == 0);
    }
    WarrantContext c = context();
    c.network_element_identifier.assign(65536, 'n');
    CHECK(refused(c).rfind("network_element_identifier:", 0) == 0);
    c = context();
    c.interception_point_id.assign(65536, 'i');
    CHECK(refused(c).rfind("interception_point_id:", 0) == 0);

    // The largest attribute values and an upper-case UUID are fine; the XID goes on the wire
    // in network order.
    c = context();
    c.xid = "00112233-4455-6677-8899-AABBCCDDEEFF";
    c.network_element_identifier.assign(65535, 'n');
    std::string error;
    auto warrant = encoder->prepare(c, error);
    REQUIRE(warrant != nullptr);
    CHECK(error.empty());
    std::vector<std::uint8_t> out(70000);
    CcRecord cc;
    const std::uint8_t packet[1] = {0x45};
    cc.ip_packet = packet;
    const std::size_t n = encoder->encode_cc(*warrant, cc, out);
    REQUIRE(n > 0);
    CHECK(hex({out.data() + 16, 16}) == "00112233445566778899aabbccddeeff");
    CHECK(load_be32(&out[4]) == 40 + (4 + 65535) + (4 + 8) + (4 + 4) + (4 + 8));
}

TEST_CASE("x2x3: encode speed", "[.bench]") {
    Fixture fx;
    const char* start = "INVITE sip:bob@example.com SIP/2.0";
    std::size_t body = 1024 - sip_message(start, 0).size();
    std::string sip = sip_message(start, body);
    sip = sip_message(start, body - (sip.size() - 1024));  // Content-Length grew by 2 digits
    REQUIRE(sip.size() == 1024);
    REQUIRE(fx.rtp_out.size() == 214);
    IriRecord iri = fx.invite_record();
    iri.sip_message = as_bytes(sip);
    CcRecord cc = fx.rtp_record();
    std::vector<std::uint8_t> out(4096);
    constexpr int kIterations = 1'000'000;
    const Encoder& encoder = *fx.encoder;
    auto time = [&](auto&& body) {
        std::size_t bytes = 0;
        const auto start = std::chrono::steady_clock::now();
        for (int i = 0; i < kIterations; ++i)
            bytes += body(i);
        const auto ns =
            std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - start)
                .count();
        REQUIRE(bytes > 0);
        return std::pair{ns / kIterations, bytes / kIterations};
    };
    const auto [cc_ns, cc_bytes] = time([&](int i) {
        cc.header.sequence = static_cast<std::uint64_t>(i);
        cc.header.timestamp_ns += 20'000'000;
        return encoder.encode_cc(*fx.warrant, cc, out);
    });
    const auto [iri_ns, iri_bytes] = time([&](int i) {
        iri.header.sequence = static_cast<std::uint64_t>(i);
        iri.header.timestamp_ns += 1'000'000;
        return encoder.encode_iri(*fx.warrant, iri, out);
    });
    std::printf("X3 CC, 214-octet RTP packet: %.1f ns/record (%zu-octet PDU)\n", cc_ns, cc_bytes);
    std::printf("X2 IRI, 1 KB SIP message: %.1f ns/record (%zu-octet PDU)\n", iri_ns, iri_bytes);
}
