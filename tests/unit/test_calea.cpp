// Tests for the CALEA (J-STD-025 model) encoder: CDC messages decoded by an asn1c decoder
// generated at test time from the PCESP module (and re-encoded by it to DER, which must give
// our bytes back), CCC records decoded by tshark's pcli dissector, buffer bounds, no heap
// allocation, and prepare() errors. Expected values are written out by hand here.

#include <catch2/catch.hpp>

#include <time.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "handover/calea.hpp"
#include "tests/unit/handover_test_support.hpp"

using namespace tapwire;
using namespace tapwire::handover;
using namespace tapwire::test;

// Every heap allocation in this program is counted: encode_* must make none.
TAPWIRE_TEST_COUNT_ALLOCATIONS();

namespace {

// ---- helpers ------------------------------------------------------------------------------
/// A SIP message with a correct Content-Length.
std::string sip(const std::string& head, const std::string& body = "",
                const std::string& type = "application/sdp") {
    std::string s = head;
    if (!body.empty()) s += "Content-Type: " + type + "\r\n";
    s += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
    return s;
}

/// 2024-02-29 12:34:56.789123456 UTC, computed with libc (independently of the encoder).
std::int64_t test_time_ns(int second_offset = 0) {
    struct tm t {};
    t.tm_year = 2024 - 1900;
    t.tm_mon = 1;
    t.tm_mday = 29;
    t.tm_hour = 12;
    t.tm_min = 34;
    t.tm_sec = 56 + second_offset;
    return std::int64_t(::timegm(&t)) * 1'000'000'000 + 789'123'456;
}

std::string ccc_hex(std::uint64_t cin) {
    char b[16];
    std::snprintf(b, sizeof b, "%08X", unsigned(std::uint32_t(cin) ^ std::uint32_t(cin >> 32)));
    return b;
}

// ---- the asn1c decoder, built once per test program run ---------------------------------------

const Asn1cDecoder& decoder() {
    // The PDU is CdcPdu, the CDC message of PCESP.
    static const Asn1cDecoder d("CdcPdu", {shared_dir() / "specs/asn1c-profiles/PCESP-asn1c.asn"},
                                "tapwire-calea-asn1c");
    return d;
}

/// The text of the element at `path` ("a/b/c") below `x`, or nullopt when absent. `<x/>`
/// yields "".
std::optional<std::string> xer(const Xml& x, const std::string& path) {
    const Xml* n = x.at(path);
    if (n == nullptr) return std::nullopt;
    return n->text;
}

struct DecodedCdc {
    std::vector<std::string> xer;  // each PDU's XER as asn1c wrote it
    std::vector<Xml> pdus;         // the same, read
    int der_status = -1;
    std::string der;  // asn1c's DER re-encoding of them all
};

/// Decodes concatenated CdcPdus with constraint checks (-c).
DecodedCdc decode_all(const std::vector<std::uint8_t>& ber) {
    const Asn1cDecoder::Result r = decoder().decode(ber, "cdc");
    INFO(r.xer);
    REQUIRE(r.xer_status == 0);
    DecodedCdc d;
    for (std::size_t at = r.xer.find("<CdcPdu>"); at != std::string::npos;) {
        const std::size_t next = r.xer.find("<CdcPdu>", at + 1);
        d.xer.push_back(r.xer.substr(at, next == std::string::npos ? next : next - at));
        auto xml = XmlReader(d.xer.back()).document();
        REQUIRE(xml.has_value());
        d.pdus.push_back(std::move(*xml));
        at = next;
    }
    d.der_status = r.der_status;
    d.der = r.der;
    return d;
}

// ---- the call flows -------------------------------------------------------------------------

const std::string kSdpOffer =
    "v=0\r\no=alice 1 1 IN IP4 192.0.2.10\r\ns=caf\xc3\xa9 \xff call\r\nc=IN IP4 "
    "192.0.2.10\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\n";
const std::string kSdpOfferRepaired =  // \xff is not UTF-8: '?'; the 'é' stays
    "v=0\r\no=alice 1 1 IN IP4 192.0.2.10\r\ns=caf\xc3\xa9 ? call\r\nc=IN IP4 "
    "192.0.2.10\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\n";
const std::string kSdpAnswer =
    "v=0\r\no=bob 2 2 IN IP4 192.0.2.20\r\ns=-\r\nc=IN IP4 192.0.2.20\r\nt=0 0\r\n"
    "m=audio 40002 RTP/AVP 0\r\n";
const std::string kSdpReoffer =
    "v=0\r\no=alice 1 2 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
    "m=audio 40000 RTP/AVP 0\r\na=sendonly\r\n";
const std::string kSdpReanswer =
    "v=0\r\no=bob 2 3 IN IP4 192.0.2.20\r\ns=-\r\nc=IN IP4 192.0.2.20\r\nt=0 0\r\n"
    "m=audio 40002 RTP/AVP 0\r\na=recvonly\r\n";

const std::string kAliceFrom = "From: \"Alice Z\xc3\xab\" <sip:alice@a.example>;tag=a-tag-1\r\n";
const std::string kBobTo = "To: <sip:+1-555-123-0000@b.example;user=phone>;tag=b-tag-9\r\n";
const std::string kCallA = "Call-ID: call-a@a.example\r\n";
const std::string kVia = "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-1\r\n";

struct Step {
    IriType type;
    std::string sip;
    std::uint64_t cin;
    std::vector<CdcMessage> plan;
    // One entry per CDC message: XER element name and (path -> value) inside it. A value of
    // "\x01absent" requires the path to be absent.
    std::vector<std::pair<std::string, std::map<std::string, std::string>>> expect;
};

constexpr const char* kAbsent =
    "\x01"
    "absent";

std::vector<Step> flow_target_calls() {        // Alice is the target and calls Bob
    const std::uint64_t cin = 77'000'000'001;  // above 2^32: the CCCID folds it
    const std::string ccc = ccc_hex(cin);
    const std::string alice_to = "To: \"Alice Z\xc3\xab\" <sip:alice@a.example>;tag=a-tag-1\r\n";
    const std::string bob_from = "From: <sip:+1-555-123-0000@b.example;user=phone>;tag=b-tag-9\r\n";
    std::vector<Step> s;
    s.push_back({IriType::Begin,
                 sip("INVITE sip:+15551230000@b.example;user=phone SIP/2.0\r\n" + kVia +
                         kAliceFrom + "To: <sip:+1-555-123-0000@b.example;user=phone>\r\n" +
                         "P-Asserted-Identity: <sip:+15550001111@a.example>\r\n" + kCallA +
                         "CSeq: 1 INVITE\r\nContact: <sip:alice@192.0.2.10>\r\n",
                     kSdpOffer),
                 cin,
                 {CdcMessage::Origination, CdcMessage::MediaReport},
                 {{"origination",
                   {{"calling/dn", "15550001111"},
                    {"calling/genericAddress", "+15550001111@a.example"},
                    {"calling/genericName", kAbsent},
                    {"called/dn", "15551230000"},
                    {"called/genericAddress", "+1-555-123-0000@b.example"},
                    {"input/userinput", "+15551230000@b.example"},
                    {"reserved0", ""}}},
                  {"mediareport", {{"subject", kSdpOfferRepaired}, {"associate", kAbsent}}}}});
    s.push_back({IriType::Continue,
                 sip("SIP/2.0 180 Ringing\r\n" + kVia + kAliceFrom + kBobTo + kCallA +
                     "CSeq: 1 INVITE\r\n"),
                 cin,
                 {CdcMessage::NetworkSignal},
                 {{"networksignal",
                   {{"other", "SIP/2.0 180 Ringing"},
                    {"signaledToPartyId/genericAddress", "alice@a.example"},
                    {"signaledToPartyId/genericName", "Alice Z??"},
                    {"signaledToPartyId/dn", kAbsent}}}}});
    s.push_back({IriType::Continue,
                 sip("SIP/2.0 200 OK\r\n" + kVia + kAliceFrom + kBobTo + kCallA +
                         "CSeq: 1 INVITE\r\nP-Asserted-Identity: \"Bob\" "
                         "<sip:+15551230000@ims.mnc001.mcc310.3gppnetwork.org>\r\n",
                     kSdpAnswer),
                 cin,
                 {CdcMessage::Answer, CdcMessage::CCOpen},
                 {{"answer",
                   {{"answering/dn", "15551230000"},
                    // the URI's core, cut to PCESP's 32 characters
                    {"answering/genericAddress", "+15551230000@ims.mnc001.mcc310.3"},
                    {"answering/genericName", "Bob"}}},
                  {"ccopen",
                   {{"ccOpenOption/ccOpenTime/CallId/sequencenumber", "77000000001"},
                    {"ccOpenOption/ccOpenTime/CallId/systemidentity", "ELEM-7"},
                    {"cCCId/combCCC", ccc},
                    {"associate", kSdpAnswer},
                    {"subject", kAbsent},
                    {"flowDirection/downstream-and-upstream", ""}}}}});
    s.push_back({IriType::Continue,
                 sip("ACK sip:bob@192.0.2.20 SIP/2.0\r\n" + kVia + kAliceFrom + kBobTo + kCallA +
                     "CSeq: 1 ACK\r\n"),
                 cin,
                 {CdcMessage::SubjectSignal},
                 {{"subjectsignal",
                   {{"signal/otherSignalingInformation", "ACK sip:bob@192.0.2.20 SIP/2.0"},
                    {"signaledFromPartyId/genericAddress", "alice@a.example"}}}}});
    s.push_back({IriType::Continue,
                 sip("INVITE sip:bob@192.0.2.20 SIP/2.0\r\n" + kVia + kAliceFrom + kBobTo + kCallA +
                         "CSeq: 2 INVITE\r\n",
                     kSdpReoffer),
                 cin,
                 {CdcMessage::MediaReport},
                 {{"mediareport", {{"subject", kSdpReoffer}, {"associate", kAbsent}}}}});
    s.push_back(
        {IriType::Continue,
         sip("SIP/2.0 200 OK\r\n" + kVia + kAliceFrom + kBobTo + kCallA + "CSeq: 2 INVITE\r\n",
             kSdpReanswer),
         cin,
         {CdcMessage::CCChange},  // answered already: no second Answer
         {{"ccchange",
           {{"cCCId/combCCC", ccc},
            {"associate", kSdpReanswer},
            {"flowDirection/downstream-and-upstream", ""}}}}});
    // Bob hangs up: an in-dialog request from the far side (From is Bob, tag b-tag-9).
    s.push_back({IriType::Continue,
                 sip("BYE sip:alice@192.0.2.10 SIP/2.0\r\n"
                     "Via: SIP/2.0/UDP 192.0.2.20;branch=z9hG4bK-2\r\n" +
                     bob_from + alice_to + kCallA + "CSeq: 1 BYE\r\n"),
                 cin,
                 {CdcMessage::NetworkSignal},
                 {{"networksignal",
                   {{"other", "BYE sip:alice@192.0.2.10 SIP/2.0"},
                    {"signaledToPartyId/genericAddress", "alice@a.example"}}}}});
    s.push_back({IriType::End,
                 sip("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.20;branch=z9hG4bK-2\r\n" +
                     bob_from + alice_to + kCallA + "CSeq: 1 BYE\r\n"),
                 cin,
                 {CdcMessage::CCClose, CdcMessage::Release},
                 {{"ccclose",
                   {{"cCCId/combCCC", ccc},
                    {"callId", kAbsent},
                    {"flowDirection/downstream-and-upstream", ""}}},
                  {"release", {}}}});
    return s;
}

std::vector<Step> flow_target_called() {  // Dave is the target; Carol's call was diverted to him
    const std::uint64_t cin = 5;
    std::vector<Step> s;
    const std::string head =
        "Via: SIP/2.0/UDP 198.51.100.1;branch=z9hG4bK-d\r\n"
        "From: <sip:carol@c.example>;tag=c1\r\n"
        "To: \"Dave\" <sip:dave@d.example>\r\nCall-ID: call-d\r\n";
    s.push_back({IriType::Begin,
                 sip("INVITE sip:dave@d.example SIP/2.0\r\n" + head +
                     "CSeq: 7 INVITE\r\nDiversion: <sip:erin@c.example>;reason=unconditional, "
                     "<tel:+44-20-7946-0000>;reason=user-busy\r\n"),
                 cin,
                 {CdcMessage::TerminationAttempt},
                 {{"terminationattempt",
                   {{"calling/genericAddress", "carol@c.example"},
                    {"called/genericAddress", "dave@d.example"},
                    {"called/genericName", "Dave"},
                    {"reserved0", ""},
                    {"redirectedFromInfo/lastRedirecting/genericAddress", "erin@c.example"},
                    {"redirectedFromInfo/originalCalled/dn", "442079460000"},
                    {"redirectedFromInfo/originalCalled/genericAddress", "tel:+44-20-7946-0000"},
                    {"redirectedFromInfo/numRedirections", "2"}}}}});
    s.push_back({IriType::End,
                 sip("SIP/2.0 302 Moved Temporarily\r\n" + head +
                     "CSeq: 7 INVITE\r\nContact: <sip:vm@vm.example;transport=tcp>\r\n"),
                 cin,
                 {CdcMessage::Redirection, CdcMessage::Release},
                 {{"redirection",
                   {{"old/sequencenumber", "5"},
                    {"old/systemidentity", "ELEM-7"},
                    {"redirectedto/genericAddress", "vm@vm.example"},
                    {"redirectedfrom/genericAddress", "dave@d.example"},
                    {"reserved0", ""},
                    {"reserved1", ""},
                    {"new", kAbsent}}},
                  {"release", {}}}});
    return s;
}

std::vector<Step> non_call_records() {
    std::vector<Step> s;
    s.push_back({IriType::Report,
                 sip("REGISTER sip:a.example SIP/2.0\r\n" + kVia + kAliceFrom +
                     "To: <sip:alice@a.example>\r\nCall-ID: reg-1\r\nCSeq: 3 REGISTER\r\n"
                     "Contact: <sip:alice@192.0.2.10>\r\n"),
                 9,
                 {CdcMessage::ServiceInstance},
                 {{"serviceinstance",
                   {{"serviceName", "REGISTER sip:a.example SIP/2.0"},
                    {"calling/genericAddress", "alice@a.example"},
                    {"called/genericAddress", "alice@a.example"}}}}});
    s.push_back({IriType::Begin,
                 sip("MESSAGE sip:bob@b.example SIP/2.0\r\n" + kVia + kAliceFrom +
                         "To: <sip:bob@b.example>\r\nCall-ID: msg-1\r\nCSeq: 1 MESSAGE\r\n",
                     "hello", "text/plain"),
                 10,
                 {CdcMessage::ServiceInstance},
                 {{"serviceinstance",
                   {{"serviceName", "MESSAGE sip:bob@b.example SIP/2.0"},
                    {"called/genericAddress", "bob@b.example"}}}}});
    // Not SIP at all: a signal with the (sanitised) first line, the target unknown.
    s.push_back({IriType::Continue,
                 std::string("GARBAGE\x01 line\r\nmore"),
                 11,
                 {CdcMessage::NetworkSignal},
                 {{"networksignal",
                   {{"other", "GARBAGE? line"}, {"signaledToPartyId/genericAddress", kAbsent}}}}});
    // A timeout End carries no SIP.
    s.push_back({IriType::End, "", 11, {CdcMessage::Release}, {{"release", {}}}});
    return s;
}

WarrantContext context_a() {
    WarrantContext c;
    c.liid = "LIID-CALEA-0000000000001";  // 24 characters
    c.operator_identifier = "OPERATOR";
    c.network_element_identifier = "ELEM-7";
    c.authorization_country_code = "US";
    c.delivery_country_code = "US";
    return c;
}

IriRecord record_of(const Step& st, std::int64_t ts = test_time_ns()) {
    IriRecord r;
    r.type = st.type;
    r.header.cin = st.cin;
    r.header.sequence = 3;
    r.header.timestamp_ns = ts;
    r.sip_message = as_bytes(st.sip);
    return r;
}

/// A 214-octet IPv4/UDP/RTP packet (RTP seq 1234, timestamp 160000, SSRC 0xDEADBEEF).
std::vector<std::uint8_t> rtp_packet() {
    return udp_packet(ip("10.1.1.1"), ip("10.2.2.2"), 40000, 40002,
                      rtp_payload(0, 1234, 160000, 0xDEADBEEF, 214 - 20 - 8 - 12));
}

std::unique_ptr<PreparedWarrant> prepare_or_fail(const Encoder& e, const WarrantContext& c) {
    std::string error;
    auto w = e.prepare(c, error);
    INFO(error);
    REQUIRE(w);
    return w;
}

/// Every step of every flow above, in order.
std::vector<Step> all_steps() {
    std::vector<Step> steps = flow_target_calls();
    for (auto* flow : {flow_target_called, non_call_records})
        for (auto& s : flow())
            steps.push_back(std::move(s));
    return steps;
}

/// Encodes one step (with the call state when given) into a fresh vector.
std::vector<std::uint8_t> encode(const CaleaEncoder& e, const PreparedWarrant& w,
                                 const IriRecord& r, CaleaCall* call) {
    std::vector<std::uint8_t> out(16384);
    const std::size_t n = call ? e.encode_iri(w, r, *call, out) : e.encode_iri(w, r, out);
    REQUIRE(n > 0);
    out.resize(n);
    return out;
}

void check_common(const Xml& body, const std::string& kind, const std::string& liid,
                  const std::string& element, const std::string& time, const std::string& cin) {
    CHECK(xer(body, "caseId") == liid);
    CHECK(xer(body, "accessingElementId") == element);
    CHECK(xer(body, "eventTime") == time);
    if (kind == "ccopen" || kind == "ccclose" || kind == "redirection") return;
    CHECK(xer(body, "callId/sequencenumber") == cin);
    CHECK(xer(body, "callId/systemidentity") == element);
}

}  // namespace

// ---- CDC: asn1c decode, field by field --------------------------------------------------------

TEST_CASE("CDC messages decode with an asn1c PCESP decoder, field by field", "[calea][asn1c]") {
    if (!decoder().ready()) return;
    const auto enc_base = make_calea_encoder();
    const auto& enc = dynamic_cast<const CaleaEncoder&>(*enc_base);
    CHECK(std::string(enc.name()) == "calea-pcesp");
    const auto w = prepare_or_fail(enc, context_a());

    struct Flow {
        std::vector<Step> steps;
        bool target_is_caller;
    };
    const std::vector<Flow> flows = {
        {flow_target_calls(), true}, {flow_target_called(), false}, {non_call_records(), true}};
    std::vector<std::uint8_t> all;
    std::vector<std::pair<const Step*, std::size_t>> expected;  // step, message index
    for (const Flow& f : flows) {
        CaleaCall call;
        call.target_is_caller = f.target_is_caller;
        for (const Step& st : f.steps) {
            const IriRecord r = record_of(st);
            const CdcPlan plan = plan_cdc(r, call);
            INFO("record: " << st.sip.substr(0, st.sip.find('\r')));
            REQUIRE(std::vector<CdcMessage>(plan.messages.begin(),
                                            plan.messages.begin() + plan.count) == st.plan);
            REQUIRE(st.expect.size() == st.plan.size());
            const auto bytes = encode(enc, *w, r, &call);
            all.insert(all.end(), bytes.begin(), bytes.end());
            for (std::size_t i = 0; i < st.expect.size(); ++i)
                expected.emplace_back(&st, i);
        }
    }

    const DecodedCdc decoded = decode_all(all);
    const auto& pdus = decoded.pdus;
    REQUIRE(pdus.size() == expected.size());
    for (std::size_t i = 0; i < pdus.size(); ++i) {
        const Step& st = *expected[i].first;
        const auto& [kind, fields] = st.expect[expected[i].second];
        INFO("PDU " << i << " (" << kind << "):\n" << decoded.xer[i]);
        CHECK(xer(pdus[i], "protocolVersion/v4") == "");
        const Xml* body = pdus[i].at("message/" + kind);
        REQUIRE(body);
        check_common(*body, kind, "LIID-CALEA-0000000000001", "ELEM-7", "20240229123456.789Z",
                     std::to_string(st.cin));
        for (const auto& [path, value] : fields) {
            INFO("field " << path);
            if (value == kAbsent)
                CHECK_FALSE(xer(*body, path));
            else
                CHECK(xer(*body, path) == value);
        }
    }

    // asn1c's DER encoder re-encodes what it decoded: our BER is already canonical.
    REQUIRE(decoded.der_status == 0);
    CHECK(to_bytes(decoded.der) == all);
}

TEST_CASE("CDC without per-call state, timestamps and the operator id fallback", "[calea][asn1c]") {
    if (!decoder().ready()) return;
    const auto enc = make_calea_encoder();
    WarrantContext c;
    c.liid = "CASE-2";
    c.operator_identifier = "OPCO";  // no network element id: the operator id stands in
    c.microsecond_timestamps = true;
    const auto w = prepare_or_fail(*enc, c);

    // The plain Encoder interface: a fresh state per record. End never sends CCClose, and a
    // Begin INVITE is an Origination (the target is taken to be the caller).
    const auto flow = flow_target_calls();
    std::vector<std::uint8_t> all;
    std::vector<std::string> kinds, times;
    const auto add = [&](const IriRecord& r, const std::vector<std::string>& k,
                         const std::string& time) {
        std::vector<std::uint8_t> out(16384);
        const std::size_t n = enc->encode_iri(*w, r, out);
        REQUIRE(n > 0);
        all.insert(all.end(), out.begin(), out.begin() + std::ptrdiff_t(n));
        for (const auto& x : k)
            kinds.push_back(x), times.push_back(time);
    };
    add(record_of(flow.front()), {"origination", "mediareport"}, "20240229123456.789123Z");
    add(record_of(flow.back()), {"release"}, "20240229123456.789123Z");
    IriRecord r = record_of(flow[2]);  // 200 OK: Answer + CCOpen every time without state
    r.header.timestamp_ns = test_time_ns(4) - 789'123'456;  // a whole second: no fraction
    add(r, {"answer", "ccopen"}, "20240229123500Z");
    r = record_of(flow.back());
    // Before the epoch (not 1969-12-31T23:59:59: asn1c's time check reads its time_t -1 as an
    // error).
    r.header.timestamp_ns = -86'400'500'000'000;
    add(r, {"release"}, "19691230235959.5Z");
    r.header.timestamp_ns = 1'000;  // 1 us after the epoch
    add(r, {"release"}, "19700101000000.000001Z");

    const DecodedCdc decoded = decode_all(all);
    const auto& pdus = decoded.pdus;
    REQUIRE(pdus.size() == kinds.size());
    for (std::size_t i = 0; i < pdus.size(); ++i) {
        INFO(decoded.xer[i]);
        const Xml* body = pdus[i].at("message/" + kinds[i]);
        REQUIRE(body);
        check_common(*body, kinds[i], "CASE-2", "OPCO", times[i], "77000000001");
    }
}

TEST_CASE("A CCOpen for content that came first: no SDP, the call's CCCID", "[calea][asn1c]") {
    if (!decoder().ready()) return;
    const auto enc_base = make_calea_encoder();
    const auto& enc = dynamic_cast<const CaleaEncoder&>(*enc_base);
    WarrantContext c;
    c.liid = "CASE-3";
    c.network_element_identifier = "ELEM-7";
    const auto w = prepare_or_fail(enc, c);
    RecordHeader h;
    h.cin = 77000000001;
    h.timestamp_ns = test_time_ns();
    CaleaCall call;
    std::vector<std::uint8_t> out(4096);
    const std::size_t n = enc.encode_cc_open(*w, h, call, out);
    REQUIRE(n > 0);
    CHECK(call.media_open);
    out.resize(n);
    const DecodedCdc decoded = decode_all(out);
    REQUIRE(decoded.pdus.size() == 1);
    INFO(decoded.xer[0]);
    const Xml* body = decoded.pdus[0].at("message/ccopen");
    REQUIRE(body);
    check_common(*body, "ccopen", "CASE-3", "ELEM-7", "20240229123456.789Z", "");
    CHECK(xer(*body, "ccOpenOption/ccOpenTime/CallId/sequencenumber") == "77000000001");
    CHECK(xer(*body, "cCCId/combCCC") == ccc_hex(h.cin));
    CHECK_FALSE(xer(*body, "subject").has_value());
    CHECK_FALSE(xer(*body, "associate").has_value());
}

// ---- CCC: tshark pcli ------------------------------------------------------------------------

TEST_CASE("CCC records decode with tshark's pcli dissector", "[calea][tshark]") {
    const auto enc = make_calea_encoder();
    const auto w = prepare_or_fail(*enc, context_a());
    const auto packet = rtp_packet();
    CcRecord r;
    r.header.cin = 77'000'000'001;
    r.direction = Direction::FromTarget;
    r.ip_packet = packet;
    std::vector<std::uint8_t> out(1024);
    const std::size_t n = enc->encode_cc(*w, r, out);
    REQUIRE(n == kCccHeaderSize + packet.size());
    // The TCP framing, read by hand: length of what follows, CCCID, the packet verbatim.
    const std::uint32_t ccc = std::uint32_t(r.header.cin) ^ std::uint32_t(r.header.cin >> 32);
    CHECK(out[0] == 0);
    CHECK((std::uint32_t(out[0]) << 24 | out[1] << 16 | out[2] << 8 | out[3]) == 4 + 214);
    CHECK((std::uint32_t(out[4]) << 24 | out[5] << 16 | out[6] << 8 | out[7]) == ccc);
    CHECK(std::equal(packet.begin(), packet.end(), out.begin() + kCccHeaderSize));
    CHECK(calea_ccc_id(r.header.cin) == ccc);
    CHECK(enc->encode_keepalive(out) == 0);  // no keep-alive in this model

    if (const std::string why = tshark_missing("pcli"); !why.empty()) {
        WARN("skipped: " << why);
        return;
    }

    // A pcap of an Ethernet/IPv4/UDP datagram to port 7000 carrying the CCC record without
    // its TCP length field: exactly PacketCable's pcli datagram.
    const std::vector<std::uint8_t> payload(out.begin() + 4, out.begin() + std::ptrdiff_t(n));
    const std::size_t ip_len = 20 + 8 + payload.size();
    TempDir dir("tapwire-calea-ccc");
    write_pcap(dir.file("ccc.pcap"),
               {ethernet_frame(udp_packet(ip("192.0.2.1"), ip("192.0.2.2"), 7001, 7000, payload))});
    std::string fields;
    REQUIRE(run_command("tshark -r '" + dir.file("ccc.pcap") +
                            "' -d udp.port==7000,pcli -d pcli.payload,ip -d udp.port==40000,rtp "
                            "-T fields -E separator='|' -e pcli.cccid -e ip.src -e ip.dst "
                            "-e ip.len -e udp.dstport -e rtp.version -e rtp.seq -e rtp.timestamp "
                            "-e rtp.ssrc 2>/dev/null",
                        fields) == 0);
    INFO(fields);
    CHECK(fields == std::to_string(ccc) + "|192.0.2.1,10.1.1.1|192.0.2.2,10.2.2.2|" +
                        std::to_string(ip_len) + ",214|7000,40002|2|1234|160000|0xdeadbeef\n");
    std::string verbose;
    REQUIRE(run_command("tshark -r '" + dir.file("ccc.pcap") +
                            "' -d udp.port==7000,pcli -d pcli.payload,ip "
                            "-d udp.port==40000,rtp -V 2>/dev/null",
                        verbose) == 0);
    CHECK(verbose.find("Packet Cable Lawful Intercept, CCCID: " + std::to_string(ccc)) !=
          std::string::npos);
    CHECK(verbose.find("Real-Time Transport Protocol") != std::string::npos);
}

// ---- bounds, allocation, prepare -----------------------------------------------------------

TEST_CASE("encode returns 0 for every buffer shorter than the PDU and writes nothing outside",
          "[calea]") {
    const auto enc_base = make_calea_encoder();
    const auto& enc = dynamic_cast<const CaleaEncoder&>(*enc_base);
    const auto w = prepare_or_fail(enc, context_a());
    CaleaCall call;
    bool state_kept = true;
    for (const Step& st : all_steps()) {
        const IriRecord r = record_of(st);
        INFO("record: " << st.sip.substr(0, st.sip.find('\r')));
        if (st.type == IriType::Begin) call = CaleaCall{};
        CHECK(check_buffer_bounds([&](std::span<std::uint8_t> out) {
                  CaleaCall copy = call;
                  const std::size_t n = enc.encode_iri(*w, r, copy, out);
                  // A failed encode leaves the call state as it was, so the retry is the same.
                  if (n == 0)
                      state_kept = state_kept && copy.target_is_caller == call.target_is_caller &&
                                   copy.begun == call.begun && copy.answered == call.answered &&
                                   copy.media_open == call.media_open &&
                                   copy.caller_tag == call.caller_tag;
                  return n;
              }) == "");
        CHECK(state_kept);
        encode(enc, *w, r, &call);
    }
    const auto packet = rtp_packet();
    CcRecord cc;
    cc.header.cin = 3;
    cc.ip_packet = packet;
    std::vector<std::uint8_t> full(kCccHeaderSize + packet.size());
    REQUIRE(enc.encode_cc(*w, cc, full) == full.size());
    CHECK(check_buffer_bounds(
              [&](std::span<std::uint8_t> out) { return enc.encode_cc(*w, cc, out); }) == "");
}

TEST_CASE("encode_iri and encode_cc do not allocate", "[calea]") {
    const auto enc_base = make_calea_encoder();
    const auto& enc = dynamic_cast<const CaleaEncoder&>(*enc_base);
    const auto w = prepare_or_fail(enc, context_a());
    const std::vector<Step> steps = all_steps();  // the records point into their SIP
    std::vector<IriRecord> records;
    for (const Step& st : steps)
        records.push_back(record_of(st));
    const auto packet = rtp_packet();
    CcRecord cc;
    cc.ip_packet = packet;
    std::vector<std::uint8_t> out(16384);
    CaleaCall call;
    std::size_t total = 0;

    const std::size_t before = allocations();
    for (const IriRecord& r : records) {
        total += enc.encode_iri(*w, r, call, out);
        total += enc.encode_iri(*w, r, out);
        total += enc.encode_iri(*w, r, std::span(out.data(), 10));  // too small
    }
    total += enc.encode_cc(*w, cc, out);
    total += plan_cdc(records.front(), call).count;
    CHECK(allocations() == before);
    CHECK(total > 0);

    // The counter works: a std::string of this size does allocate.
    const std::size_t mark = allocations();
    std::string s(1000, 'x');
    CHECK(allocations() > mark);
}

TEST_CASE("prepare names the field it cannot encode", "[calea]") {
    const auto enc = make_calea_encoder();
    const auto error_of = [&](const WarrantContext& c) {
        std::string error;
        const auto w = enc->prepare(c, error);
        CHECK((w == nullptr) == !error.empty());
        return error;
    };
    const auto starts = [](const std::string& s, const std::string& prefix) {
        INFO(s);
        return s.rfind(prefix, 0) == 0;
    };
    WarrantContext c = context_a();
    CHECK(error_of(c).empty());
    c.liid = std::string(25, 'L');  // the CaseId maximum
    c.network_element_identifier = std::string(15, 'E');
    CHECK(error_of(c).empty());

    c = context_a();
    c.liid = "";
    CHECK(starts(error_of(c), "liid:"));
    c.liid = std::string(26, 'L');
    CHECK(starts(error_of(c), "liid:"));
    c.liid = "LI\nID";
    CHECK(starts(error_of(c), "liid:"));
    c.liid = "Z\xc3\xab";
    CHECK(starts(error_of(c), "liid:"));

    c = context_a();
    c.network_element_identifier = std::string(16, 'E');
    CHECK(starts(error_of(c), "network_element_identifier:"));
    c.network_element_identifier = "EL\tEM";
    CHECK(starts(error_of(c), "network_element_identifier:"));
    c.network_element_identifier = "";
    c.operator_identifier = std::string(16, 'O');
    CHECK(starts(error_of(c), "operator_identifier:"));
    c.operator_identifier = "";
    CHECK(starts(error_of(c), "network_element_identifier:"));
}

TEST_CASE("plan_cdc without a call: the mapping documented for the plain interface", "[calea]") {
    const auto flow = flow_target_calls();
    const CaleaCall fresh;
    const auto plan_of = [&](const IriRecord& r, const CaleaCall& call) {
        const CdcPlan p = plan_cdc(r, call);
        return std::vector<CdcMessage>(p.messages.begin(), p.messages.begin() + p.count);
    };
    using V = std::vector<CdcMessage>;
    CHECK(plan_of(record_of(flow.back()), fresh) == V{CdcMessage::Release});
    CHECK(plan_of(record_of(flow[2]), fresh) == V{CdcMessage::Answer, CdcMessage::CCOpen});
    CaleaCall callee;
    callee.target_is_caller = false;
    CHECK(plan_of(record_of(flow[0]), callee) ==
          V{CdcMessage::TerminationAttempt, CdcMessage::MediaReport});
    // Joining mid-call at a 200 OK: the call's start, then the 200 OK's own messages.
    IriRecord mid = record_of(flow[2]);
    mid.type = IriType::Begin;
    CHECK(plan_of(mid, fresh) ==
          V{CdcMessage::Origination, CdcMessage::Answer, CdcMessage::CCOpen});
    // Joining at the BYE: the media of the call under way is opened (no SDP) so that its
    // content's CCCID is known at the LEMF.
    IriRecord bye = record_of(flow.back());
    bye.type = IriType::Begin;
    CHECK(plan_of(bye, fresh) == V{CdcMessage::Origination, CdcMessage::CCOpen});
    CHECK(std::string(to_string(CdcMessage::TerminationAttempt)) == "terminationattempt");
}

// ---- speed (run by hand: test_calea "[.bench]") ------------------------------------------

TEST_CASE("encode speed", "[.bench]") {
    const auto enc_base = make_calea_encoder();
    const auto& enc = dynamic_cast<const CaleaEncoder&>(*enc_base);
    const auto w = prepare_or_fail(enc, context_a());
    constexpr int kIterations = 1'000'000;
    std::vector<std::uint8_t> out(4096);
    using Clock = std::chrono::steady_clock;

    const auto packet = rtp_packet();
    CcRecord cc;
    cc.ip_packet = packet;
    std::size_t sink = 0;
    auto t0 = Clock::now();
    for (int i = 0; i < kIterations; ++i) {
        cc.header.cin = std::uint64_t(i);
        sink += enc.encode_cc(*w, cc, out);
    }
    const double cc_ns =
        std::chrono::duration<double, std::nano>(Clock::now() - t0).count() / kIterations;

    // A 1 KB SIP message: the 180 Ringing of the flow, padded with headers (one CDC message).
    std::string ringing = flow_target_calls()[1].sip;
    const std::string pad = "X-Padding: " + std::string(60, 'p') + "\r\n";
    while (ringing.size() + pad.size() <= 1024)
        ringing.insert(ringing.find("Content-Length"), pad);
    const std::size_t rest = 1024 - ringing.size();  // "X-P: " + filler + CRLF
    ringing.insert(ringing.find("Content-Length"), "X-P: " + std::string(rest - 7, 'p') + "\r\n");
    REQUIRE(ringing.size() == 1024);
    IriRecord r = record_of(flow_target_calls()[1]);
    r.sip_message = as_bytes(ringing);
    CaleaCall call;
    t0 = Clock::now();
    for (int i = 0; i < kIterations; ++i) {
        r.header.timestamp_ns += 1000;
        sink += enc.encode_iri(*w, r, call, out);
    }
    const double cdc_ns =
        std::chrono::duration<double, std::nano>(Clock::now() - t0).count() / kIterations;
    WARN("CCC record (214-byte RTP): " << cc_ns << " ns; CDC message (" << ringing.size()
                                       << "-byte SIP): " << cdc_ns << " ns; sink " << sink);
    CHECK(sink > 0);
}
