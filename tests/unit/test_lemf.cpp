// The reference LEMF receiver (tools/lemf) against the project's real encoders: its decoders
// are an independent implementation, so every field an encoder writes is read back here by
// code that shares nothing with it. Also: sequence continuity, the pcap and JSON-lines output,
// malformed input, and one session over real TCP.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "handover/calea.hpp"
#include "handover/etsi_102232.hpp"
#include "handover/record.hpp"
#include "handover/x2x3.hpp"
#include "tests/unit/handover_test_support.hpp"
#include "tools/lemf/lemf.hpp"

namespace {

using namespace tapwire;
using tapwire::test::Bytes;
namespace ho = tapwire::handover;
namespace lemf = tapwire::lemf;

constexpr const char* kXid[2] = {"3f2504e0-4f89-11d3-9a0c-0305e82c3301",
                                 "9b2d5c1a-0000-4000-8000-00000000abcd"};
constexpr const char* kLiid[2] = {"LIID-A", "LIID-B"};
constexpr std::uint64_t kCins[2][2] = {{1001, 1002}, {2001, 2002}};
constexpr std::int64_t kT0 = 1'700'000'000'000'000'000;

ho::WarrantContext context(int w) {
    ho::WarrantContext c;
    c.liid = kLiid[w];
    c.authorization_country_code = "DE";
    c.operator_identifier = "tapwire-op";
    c.network_element_identifier = "sbc-1";
    c.delivery_country_code = "DE";
    c.interception_point_id = "POI1";
    c.xid = kXid[w];
    c.microsecond_timestamps = w == 1;  // one LIID each way: both ETSI time encodings
    return c;
}

std::string sip(const std::string& start, const std::string& cseq, std::uint64_t cin, bool sdp) {
    const std::string body = sdp ? "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\n"
                                   "t=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
                                 : "";
    std::string m = start + "\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-" +
                    std::to_string(cin) + "\r\nFrom: \"Alice\" <sip:+4930111@example.net>;tag=a" +
                    std::to_string(cin) + "\r\nTo: <sip:+4930555@example.net>" +
                    (start.rfind("SIP/2.0", 0) == 0 ? ";tag=b1" : "") + "\r\nCall-ID: call-" +
                    std::to_string(cin) + "@example.net\r\nCSeq: " + cseq + "\r\n";
    if (sdp) m += "Content-Type: application/sdp\r\n";
    m += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
    return m;
}

/// One record of the scripted traffic, with everything the LEMF should decode from it.
struct Step {
    int warrant = 0;
    std::uint64_t cin = 0;
    bool iri = true;
    ho::IriType type = ho::IriType::Begin;
    ho::Direction dir = ho::Direction::Unknown;
    std::uint64_t seq = 0;
    std::int64_t ts = 0;
    Bytes data;  // SIP text or IP packet
    ho::Endpoint src, dst;
};

/// Two LIIDs, two calls each, interleaved: INVITE, 180, 200, RTP both ways twice, BYE.
std::vector<Step> script() {
    std::vector<std::vector<Step>> calls;
    const IpAddress a = test::ip("10.0.0.1"), b = test::ip("192.0.2.7");
    for (int w = 0; w < 2; ++w)
        for (int c = 0; c < 2; ++c) {
            const std::uint64_t cin = kCins[w][c];
            std::vector<Step> s;
            auto iri = [&](ho::IriType t, const std::string& text, bool from_a) {
                Step st;
                st.warrant = w;
                st.cin = cin;
                st.type = t;
                st.data = test::to_bytes(text);
                st.src = {from_a ? a : b, 5060};
                st.dst = {from_a ? b : a, 5060};
                s.push_back(st);
            };
            auto cc = [&](bool from_target, std::uint16_t n) {
                Step st;
                st.warrant = w;
                st.cin = cin;
                st.iri = false;
                st.dir = from_target ? ho::Direction::FromTarget : ho::Direction::ToTarget;
                const Bytes rtp = test::rtp_payload(0, n, n * 160u, 0x1234 + unsigned(cin), 160);
                st.data = from_target ? test::udp_packet(a, b, 4000, 5004, rtp)
                                      : test::udp_packet(b, a, 5004, 4000, rtp);
                s.push_back(st);
            };
            iri(ho::IriType::Begin,
                sip("INVITE sip:+4930555@example.net SIP/2.0", "1 INVITE", cin, true), true);
            iri(ho::IriType::Continue, sip("SIP/2.0 180 Ringing", "1 INVITE", cin, false), false);
            iri(ho::IriType::Continue, sip("SIP/2.0 200 OK", "1 INVITE", cin, true), false);
            cc(true, 1);
            cc(false, 1);
            cc(true, 2);
            cc(false, 2);
            iri(ho::IriType::End, sip("BYE sip:+4930555@example.net SIP/2.0", "2 BYE", cin, false),
                true);
            calls.push_back(s);
        }
    std::vector<Step> out;
    std::int64_t t = kT0;
    std::map<std::pair<std::uint64_t, bool>, std::uint64_t> next;
    for (std::size_t i = 0; i < calls[0].size(); ++i)
        for (auto& c : calls) {
            Step s = c[i];
            s.ts = (t += 1'234'000);  // whole microseconds: exact in every time encoding
            s.seq = next[{s.cin, s.iri}]++;
            out.push_back(s);
        }
    return out;
}

/// The scripted traffic encoded by a real encoder: one byte string per step.
std::vector<Bytes> encode(lemf::Format format, const std::vector<Step>& steps) {
    std::unique_ptr<ho::Encoder> enc = format == lemf::Format::Etsi102232
                                           ? ho::make_etsi_102232_encoder()
                                       : format == lemf::Format::X2X3 ? ho::make_x2x3_encoder()
                                                                      : ho::make_calea_encoder();
    std::unique_ptr<ho::PreparedWarrant> w[2];
    for (int i = 0; i < 2; ++i) {
        std::string error;
        w[i] = enc->prepare(context(i), error);
        INFO(error);
        REQUIRE(w[i]);
    }
    std::map<std::uint64_t, ho::CaleaCall> calls;
    std::vector<Bytes> out;
    for (const Step& s : steps) {
        Bytes buf(8192);
        std::size_t n = 0;
        if (s.iri) {
            ho::IriRecord r;
            r.header = {s.cin, s.seq, s.ts};
            r.type = s.type;
            r.sip_message = s.data;
            r.source = s.src;
            r.destination = s.dst;
            if (format == lemf::Format::Calea)
                n = static_cast<ho::CaleaEncoder&>(*enc).encode_iri(*w[s.warrant], r, calls[s.cin],
                                                                    buf);
            else
                n = enc->encode_iri(*w[s.warrant], r, buf);
        } else {
            ho::CcRecord r;
            r.header = {s.cin, s.seq, s.ts};
            r.direction = s.dir;
            r.ip_packet = s.data;
            n = enc->encode_cc(*w[s.warrant], r, buf);
        }
        REQUIRE(n > 0);
        buf.resize(n);
        out.push_back(std::move(buf));
    }
    return out;
}

Bytes join(const std::vector<Bytes>& pdus) {
    Bytes all;
    for (const Bytes& p : pdus)
        all.insert(all.end(), p.begin(), p.end());
    return all;
}

/// Feeds `stream` in random chunks of 1..max_chunk octets.
std::vector<lemf::Record> decode(lemf::Format f, const Bytes& stream, std::mt19937& rng,
                                 std::size_t max_chunk, std::uint64_t* errors = nullptr,
                                 std::size_t* pending = nullptr) {
    lemf::StreamDecoder dec(f);
    std::vector<lemf::Record> out;
    std::size_t i = 0;
    while (i < stream.size()) {
        const std::size_t n = std::min(
            stream.size() - i, std::uniform_int_distribution<std::size_t>(1, max_chunk)(rng));
        dec.feed({stream.data() + i, n}, out);
        i += n;
    }
    if (errors)
        *errors = dec.errors();
    else
        CHECK(dec.errors() == 0);
    if (pending)
        *pending = dec.pending();
    else
        CHECK(dec.pending() == 0);
    return out;
}

const char* iri_name(ho::IriType t) {
    return t == ho::IriType::Begin      ? "begin"
           : t == ho::IriType::Continue ? "continue"
           : t == ho::IriType::End      ? "end"
                                        : "report";
}

lemf::Direction lemf_dir(ho::Direction d) {
    return d == ho::Direction::FromTarget ? lemf::Direction::FromTarget
           : d == ho::Direction::ToTarget ? lemf::Direction::ToTarget
                                          : lemf::Direction::Unknown;
}

std::string liid_of(lemf::Format f, int w) {
    return f == lemf::Format::X2X3 ? kXid[w] : kLiid[w];
}

/// ETSI and X2/X3: one record per step, every field as encoded.
void check_one_to_one(lemf::Format f, const std::vector<Step>& steps,
                      const std::vector<lemf::Record>& got) {
    REQUIRE(got.size() == steps.size());
    for (std::size_t i = 0; i < steps.size(); ++i) {
        const Step& s = steps[i];
        const lemf::Record& r = got[i];
        INFO("step " << i);
        CHECK(r.format == f);
        CHECK(r.kind == (s.iri ? lemf::Kind::Iri : lemf::Kind::Cc));
        CHECK(r.liid == liid_of(f, s.warrant));
        CHECK(r.has_cin);
        CHECK(r.cin == s.cin);
        CHECK(r.has_sequence);
        CHECK(r.sequence == s.seq);
        CHECK(r.has_timestamp);
        CHECK(r.timestamp_ns == s.ts);
        CHECK(r.payload == s.data);
        if (s.iri) {
            CHECK(r.iri_type == (f == lemf::Format::X2X3 ? "x2" : iri_name(s.type)));
            CHECK(r.source == s.src.address.to_string());
            CHECK(r.destination == s.dst.address.to_string());
            if (f == lemf::Format::X2X3) {
                CHECK(r.source_port == s.src.port);
                CHECK(r.destination_port == s.dst.port);
            }
        } else {
            CHECK(r.direction == lemf_dir(s.dir));
        }
    }
}

/// CALEA: CDC messages per call (several per IRI record) and the CC in order.
void check_calea(const std::vector<Step>& steps, const std::vector<lemf::Record>& got) {
    std::vector<const Step*> cc;
    std::map<std::uint64_t, std::vector<const Step*>> iri;
    for (const Step& s : steps)
        (s.iri ? iri[s.cin].push_back(&s) : cc.push_back(&s));
    std::map<std::uint64_t, std::vector<const lemf::Record*>> cdc;
    std::size_t ci = 0;
    for (const lemf::Record& r : got) {
        CHECK(r.format == lemf::Format::Calea);
        CHECK_FALSE(r.has_sequence);  // PCESP carries none
        REQUIRE(r.has_cin);
        if (r.kind == lemf::Kind::Iri) {
            cdc[r.cin].push_back(&r);
            continue;
        }
        REQUIRE(r.kind == lemf::Kind::Cc);
        REQUIRE(ci < cc.size());
        const Step& s = *cc[ci++];
        CHECK(r.liid == kLiid[s.warrant]);
        CHECK(r.cin == s.cin);
        CHECK(r.cccid == ho::calea_ccc_id(s.cin));
        CHECK(r.payload == s.data);
    }
    CHECK(ci == cc.size());
    REQUIRE(cdc.size() == 4);
    for (const auto& [cin, msgs] : cdc) {
        INFO("cin " << cin);
        const auto& want = iri[cin];
        REQUIRE(msgs.size() >= want.size());
        CHECK(msgs.front()->cdc_message == "origination");  // the target calls
        CHECK(msgs.front()->iri_type == "begin");
        CHECK(msgs.back()->cdc_message == "release");
        CHECK(msgs.back()->iri_type == "end");
        bool answer = false, ccopen = false;
        for (const lemf::Record* m : msgs) {
            CHECK(m->liid == kLiid[want[0]->warrant]);
            // Every message carries the time of one of the call's records: to the millisecond,
            // or the microsecond where the warrant asks for microsecond timestamps.
            const std::int64_t unit = want[0]->warrant == 1 ? 1'000 : 1'000'000;
            bool time_ok = false;
            for (const Step* s : want)
                time_ok = time_ok || m->timestamp_ns == s->ts / unit * unit;
            CHECK(time_ok);
            answer = answer || m->cdc_message == "answer";
            if (m->cdc_message == "ccopen") {
                ccopen = true;
                CHECK(m->cccid == ho::calea_ccc_id(cin));
            }
        }
        CHECK(answer);
        CHECK(ccopen);
    }
}

constexpr std::size_t x2x3_keepalive_size() {
    return ho::x2x3::kKeepaliveSize;
}

const lemf::Format kFormats[] = {lemf::Format::Etsi102232, lemf::Format::X2X3, lemf::Format::Calea};

}  // namespace

TEST_CASE("lemf decodes every field each real encoder writes, in any chunking", "[lemf]") {
    const auto steps = script();
    std::mt19937 rng(7);
    for (const lemf::Format f : kFormats) {
        INFO(lemf::to_string(f));
        const Bytes stream = join(encode(f, steps));
        for (const std::size_t max_chunk :
             {std::size_t(1), std::size_t(7), std::size_t(300), stream.size()}) {
            const auto got = decode(f, stream, rng, max_chunk);
            if (f == lemf::Format::Calea)
                check_calea(steps, got);
            else
                check_one_to_one(f, steps, got);
        }
    }
}

TEST_CASE("lemf answers ETSI and X2/X3 keep-alives", "[lemf]") {
    Bytes ka(256);
    std::size_t n = ho::make_etsi_102232_encoder()->encode_keepalive(ka);
    REQUIRE(n > 0);
    ka.resize(n);
    std::vector<lemf::Record> out;
    lemf::StreamDecoder etsi(lemf::Format::Etsi102232);
    etsi.feed(ka, out);
    REQUIRE(out.size() == 1);
    CHECK(out[0].kind == lemf::Kind::Keepalive);
    REQUIRE_FALSE(out[0].reply.empty());
    const Bytes reply = out[0].reply;
    out.clear();
    etsi.feed(reply, out);  // the answer is a well-formed keep-aliveResponse
    REQUIRE(out.size() == 1);
    CHECK(out[0].kind == lemf::Kind::KeepaliveResponse);
    CHECK(out[0].reply.empty());

    Bytes x(64);
    n = ho::X2X3Encoder::encode_keepalive(42, x);
    REQUIRE(n > 0);
    x.resize(n);
    out.clear();
    lemf::StreamDecoder x2(lemf::Format::X2X3);
    x2.feed(x, out);
    REQUIRE(out.size() == 1);
    CHECK(out[0].kind == lemf::Kind::Keepalive);
    CHECK(out[0].sequence == 42);
    const Bytes ack = out[0].reply;
    out.clear();
    x2.feed(ack, out);
    REQUIRE(out.size() == 1);
    CHECK(out[0].kind == lemf::Kind::KeepaliveResponse);
    CHECK(out[0].sequence == 42);  // the acknowledgement echoes the number
    CHECK(x2.errors() == 0);
}

TEST_CASE("lemf counts a dropped record as one gap and a repeated one as a duplicate", "[lemf]") {
    const auto steps = script();
    std::mt19937 rng(11);
    for (const lemf::Format f : {lemf::Format::Etsi102232, lemf::Format::X2X3}) {
        INFO(lemf::to_string(f));
        const auto pdus = encode(f, steps);
        // The 180 Ringing of LIID-A's second call: IRI sequence 1 of CIN 1002.
        std::size_t victim = 0;
        while (!(steps[victim].cin == 1002 && steps[victim].iri && steps[victim].seq == 1))
            ++victim;
        const std::string a = liid_of(f, 0), b = liid_of(f, 1);
        {
            std::vector<Bytes> dropped = pdus;
            dropped.erase(dropped.begin() + std::ptrdiff_t(victim));
            lemf::Collector col("");
            for (const auto& r : decode(f, join(dropped), rng, 64))
                col.add(r);
            const auto s = col.summary();
            REQUIRE(s.at(a).gap_list.size() == 1);
            CHECK(s.at(a).gaps == 1);
            CHECK(s.at(a).missing == 1);
            CHECK(s.at(a).gap_list[0].cin == 1002);
            CHECK(s.at(a).gap_list[0].kind == lemf::Kind::Iri);
            CHECK(s.at(a).gap_list[0].first == 1);
            CHECK(s.at(a).gap_list[0].last == 1);
            CHECK(s.at(a).duplicates == 0);
            CHECK(s.at(b).gaps == 0);
            CHECK(s.at(a).iri_by_type.at(f == lemf::Format::X2X3 ? "x2" : "continue") ==
                  (f == lemf::Format::X2X3 ? 7u : 3u));
        }
        {
            std::vector<Bytes> repeated = pdus;
            repeated.insert(repeated.begin() + std::ptrdiff_t(victim) + 5, pdus[victim]);
            lemf::Collector col("");
            for (const auto& r : decode(f, join(repeated), rng, 64))
                col.add(r);
            const auto s = col.summary();
            CHECK(s.at(a).duplicates == 1);
            CHECK(s.at(a).gaps == 0);
            CHECK(s.at(b).duplicates == 0);
            CHECK(s.at(a).calls == 2);
            CHECK(s.at(a).cc_packets == 8);
            CHECK(s.at(a).iri == 9);
        }
    }
}

TEST_CASE("lemf writes CC as a LINKTYPE_RAW pcap and IRI as JSON lines per LIID", "[lemf]") {
    const auto steps = script();
    std::mt19937 rng(3);
    test::TempDir dir("lemf-out");
    {
        lemf::Collector col(dir.path);
        for (const auto& r : decode(lemf::Format::Etsi102232,
                                    join(encode(lemf::Format::Etsi102232, steps)), rng, 100))
            col.add(r);
        const std::string text = col.summary_text();
        CHECK(text.find("LIID-A") != std::string::npos);
        const std::string json = col.summary_json();
        CHECK(json.find("\"LIID-B\":{\"calls\":2,\"iri\":8,\"cc_packets\":8,\"gaps\":0") !=
              std::string::npos);
    }  // destroyed: files flushed
    for (int w = 0; w < 2; ++w) {
        INFO(kLiid[w]);
        // The pcap, parsed here: global header, then exactly this LIID's CC packets in order.
        const std::string pcap = test::read_file(dir.path / (std::string(kLiid[w]) + ".cc.pcap"));
        REQUIRE(pcap.size() >= 24);
        auto le32 = [&](std::size_t at) {
            std::uint32_t v;
            std::memcpy(&v, pcap.data() + at, 4);
            return v;
        };
        CHECK(le32(0) == 0xA1B2C3D4);
        CHECK(le32(20) == 101);
        std::size_t at = 24;
        for (const Step& s : steps) {
            if (s.iri || s.warrant != w) continue;
            REQUIRE(pcap.size() >= at + 16);
            CHECK(std::int64_t(le32(at)) == s.ts / 1'000'000'000);
            CHECK(le32(at + 4) == std::uint32_t(s.ts % 1'000'000'000 / 1000));
            const std::uint32_t len = le32(at + 8);
            CHECK(le32(at + 12) == len);
            REQUIRE(pcap.size() >= at + 16 + len);
            CHECK(Bytes(pcap.begin() + std::ptrdiff_t(at + 16),
                        pcap.begin() + std::ptrdiff_t(at + 16 + len)) == s.data);
            at += 16 + len;
        }
        CHECK(at == pcap.size());
        // Wireshark's reader agrees: raw IP, the UDP ports of the RTP packets.
        if (test::have_tool("tshark")) {
            std::string out;
            const std::string file = (dir.path / (std::string(kLiid[w]) + ".cc.pcap")).string();
            REQUIRE(test::run_command(
                        "tshark -r '" + file + "' -T fields -e udp.srcport 2>/dev/null", out) == 0);
            std::string want;
            for (const Step& s : steps)
                if (!s.iri && s.warrant == w)
                    want += s.dir == ho::Direction::FromTarget ? "4000\n" : "5004\n";
            CHECK(out == want);
        } else {
            WARN("tshark not installed: pcap not opened with Wireshark's reader");
        }
        // The JSON lines: one per IRI, in order, with the SIP text escaped.
        std::ifstream in(dir.path / (std::string(kLiid[w]) + ".iri.jsonl"));
        std::string line;
        for (const Step& s : steps) {
            if (!s.iri || s.warrant != w) continue;
            REQUIRE(std::getline(in, line));
            std::string sipj(s.data.begin(), s.data.end());
            std::string esc;
            for (const char c : sipj)
                esc += c == '\r'   ? std::string("\\r")
                       : c == '\n' ? std::string("\\n")
                       : c == '"'  ? std::string("\\\"")
                                   : std::string(1, c);
            CHECK(line.find("\"sip\":\"" + esc + "\"}") != std::string::npos);
            CHECK(line.find("\"cin\":" + std::to_string(s.cin) +
                            ",\"sequence\":" + std::to_string(s.seq) + ",") != std::string::npos);
            CHECK(line.find(std::string("\"iri_type\":\"") + iri_name(s.type) + "\"") !=
                  std::string::npos);
            CHECK(line.find("\"source\":\"" + s.src.address.to_string() + "\"") !=
                  std::string::npos);
        }
        CHECK_FALSE(std::getline(in, line));
    }
}

TEST_CASE("lemf counts malformed input and never reads out of bounds", "[lemf]") {
    const auto steps = script();
    std::mt19937 rng(99);
    for (const lemf::Format f : kFormats) {
        INFO(lemf::to_string(f));
        const auto pdus = encode(f, steps);
        const Bytes stream = join(pdus);
        const auto full = decode(f, stream, rng, stream.size());
        // Pure garbage: errors counted, nothing crashes (ASan/UBSan run checks the bounds).
        std::uint64_t total_errors = 0;
        for (int round = 0; round < 200; ++round) {
            Bytes junk(std::uniform_int_distribution<std::size_t>(1, 3000)(rng));
            for (auto& c : junk)
                c = std::uint8_t(rng());
            if (round % 3 == 0) junk[0] = 0x30;  // looks like BER
            if (round % 3 == 1) junk[0] = 0x00;  // looks like X2/X3 or a CCC record
            std::uint64_t e = 0;
            std::size_t pending = 0;
            decode(f, junk, rng, 50, &e, &pending);
            total_errors += e;
        }
        CHECK(total_errors > 0);
        // Every truncation of a valid stream: a prefix of the records, no error, the rest
        // pending.
        for (std::size_t cut = 0; cut < stream.size(); cut += 1 + cut / 8) {
            std::uint64_t e = 0;
            std::size_t pending = 0;
            const auto got = decode(f, Bytes(stream.begin(), stream.begin() + std::ptrdiff_t(cut)),
                                    rng, 97, &e, &pending);
            CHECK(e == 0);
            REQUIRE(got.size() <= full.size());
            for (std::size_t i = 0; i < got.size(); ++i)
                CHECK(got[i].payload == full[i].payload);
        }
        // Random corruption of valid streams: no crash; what decodes is counted.
        for (int round = 0; round < 300; ++round) {
            Bytes bad = stream;
            const int flips = std::uniform_int_distribution<int>(1, 8)(rng);
            for (int k = 0; k < flips; ++k)
                bad[std::uniform_int_distribution<std::size_t>(0, bad.size() - 1)(rng)] =
                    std::uint8_t(rng());
            std::uint64_t e = 0;
            std::size_t pending = 0;
            decode(f, bad, rng, 500, &e, &pending);
        }
        // A broken PDU between good ones: counted once, the stream resynchronises.
        if (f == lemf::Format::Etsi102232) {
            std::vector<Bytes> mixed = pdus;
            Bytes broken = pdus[0];
            // pSHeader's tag [1] becomes a universal OCTET STRING: framing intact, content not.
            const std::size_t header = broken[1] & 0x80 ? 2 + (broken[1] & 0x7F) : 2;
            REQUIRE(broken[header] == 0xA1);
            broken[header] = 0x04;
            mixed.insert(mixed.begin() + 3, broken);
            std::uint64_t e = 0;
            std::size_t pending = 0;
            const auto got = decode(f, join(mixed), rng, 64, &e, &pending);
            CHECK(e == 1);
            CHECK(got.size() == steps.size());
        }
    }
}

TEST_CASE("lemf server receives a session over TCP and answers its keep-alive", "[lemf]") {
    const auto steps = script();
    const auto pdus = encode(lemf::Format::Etsi102232, steps);
    const Bytes first = join({pdus.begin(), pdus.begin() + 13});
    const Bytes rest = join({pdus.begin() + 13, pdus.end()});
    Bytes ka(256);
    ka.resize(ho::make_etsi_102232_encoder()->encode_keepalive(ka));
    lemf::Collector col("");
    lemf::ServerOptions opt;
    opt.listen = "127.0.0.1:0";
    opt.format = lemf::Format::Etsi102232;
    lemf::Server server(opt, col);
    std::string error;
    REQUIRE(server.start(error));
    REQUIRE(server.port() != 0);

    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(server.port());
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
    std::mt19937 rng(5);
    auto send_all = [&](const std::uint8_t* p, std::size_t n) {
        while (n > 0) {
            const std::size_t k =
                std::min(n, std::uniform_int_distribution<std::size_t>(1, 700)(rng));
            REQUIRE(::send(fd, p, k, MSG_NOSIGNAL) == ssize_t(k));
            p += k;
            n -= k;
        }
    };
    send_all(first.data(), first.size());
    send_all(ka.data(), ka.size());  // between two PDUs, as a sender's idle timer would
    send_all(rest.data(), rest.size());
    ::shutdown(fd, SHUT_WR);
    Bytes answer;
    std::uint8_t buf[512];
    for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;)
        answer.insert(answer.end(), buf, buf + n);
    ::close(fd);
    server.stop();
    CHECK(server.connections() == 1);
    // The keep-aliveResponse came back, whole.
    std::vector<lemf::Record> back;
    lemf::StreamDecoder dec(lemf::Format::Etsi102232);
    dec.feed(answer, back);
    REQUIRE(back.size() == 1);
    CHECK(back[0].kind == lemf::Kind::KeepaliveResponse);
    CHECK(dec.pending() == 0);
    CHECK(col.keepalives() == 1);
    CHECK(col.errors() == 0);
    const auto s = col.summary();
    REQUIRE(s.count("LIID-A"));
    CHECK(s.at("LIID-A").calls == 2);
    CHECK(s.at("LIID-A").cc_packets == 8);
    CHECK(s.at("LIID-A").iri_by_type.at("begin") == 2);
    CHECK(s.at("LIID-A").iri_by_type.at("continue") == 4);
    CHECK(s.at("LIID-A").iri_by_type.at("end") == 2);
    CHECK(s.at("LIID-B").gaps == 0);
}

TEST_CASE("lemf server over TLS with a pinned client certificate (X2/X3)", "[lemf]") {
    if (!test::have_tool("openssl")) {
        WARN("openssl command not installed: TLS case skipped");
        return;
    }
    test::TempDir dir("lemf-tls");
    std::string out;
    for (const char* who : {"server", "client"}) {
        const std::string cmd =
            "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1"
            " -nodes -subj /CN=" +
            std::string(who) + " -days 2 -keyout '" + dir.file(std::string(who) + ".key") +
            "' -out '" + dir.file(std::string(who) + ".pem") + "' 2>&1";
        INFO(cmd);
        REQUIRE(test::run_command(cmd, out) == 0);
    }
    const auto steps = script();
    const Bytes stream = join(encode(lemf::Format::X2X3, steps));
    Bytes ka(64);
    ka.resize(ho::X2X3Encoder::encode_keepalive(7, ka));

    lemf::Collector col("");
    lemf::ServerOptions opt;
    opt.format = lemf::Format::X2X3;
    opt.tls_cert = dir.file("server.pem");
    opt.tls_key = dir.file("server.key");
    opt.client_ca = dir.file("client.pem");  // only this client may connect
    lemf::Server server(opt, col);
    std::string error;
    REQUIRE(server.start(error));

    auto connect_tcp = [&] {
        const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in sa{};
        sa.sin_family = AF_INET;
        sa.sin_port = htons(server.port());
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
        return fd;
    };
    auto client = [&](bool with_cert, const Bytes& data, Bytes& answer) {
        SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
        REQUIRE(ctx);
        SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
        REQUIRE(SSL_CTX_load_verify_locations(ctx, dir.file("server.pem").c_str(), nullptr) == 1);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
        if (with_cert) {
            REQUIRE(SSL_CTX_use_certificate_file(ctx, dir.file("client.pem").c_str(),
                                                 SSL_FILETYPE_PEM) == 1);
            REQUIRE(SSL_CTX_use_PrivateKey_file(ctx, dir.file("client.key").c_str(),
                                                SSL_FILETYPE_PEM) == 1);
        }
        const int fd = connect_tcp();
        SSL* ssl = SSL_new(ctx);
        SSL_set_fd(ssl, fd);
        bool ok = SSL_connect(ssl) == 1;
        // TLS 1.3: a refused client certificate shows on the first read or write.
        ok = ok && SSL_write(ssl, data.data(), int(data.size())) == int(data.size());
        std::uint8_t buf[256];
        // The keep-alive acknowledgement (48 octets) comes back before we close.
        while (ok && answer.size() < x2x3_keepalive_size()) {
            const int n = SSL_read(ssl, buf, sizeof buf);
            if (n <= 0) break;
            answer.insert(answer.end(), buf, buf + n);
        }
        SSL_shutdown(ssl);
        SSL_free(ssl);
        ::close(fd);
        SSL_CTX_free(ctx);
    };
    Bytes data = stream;
    data.insert(data.end(), ka.begin(), ka.end());
    Bytes answer, refused;
    client(true, data, answer);
    client(false, data, refused);
    server.stop();

    CHECK(refused.empty());
    std::vector<lemf::Record> back;
    lemf::StreamDecoder dec(lemf::Format::X2X3);
    dec.feed(answer, back);
    REQUIRE(back.size() == 1);
    CHECK(back[0].kind == lemf::Kind::KeepaliveResponse);
    CHECK(back[0].sequence == 7);
    const auto s = col.summary();
    REQUIRE(s.size() == 2);  // nothing from the refused client
    CHECK(s.at(kXid[0]).iri == 8);
    CHECK(s.at(kXid[1]).cc_packets == 8);
    CHECK(s.at(kXid[1]).gaps == 0);
    CHECK(s.at(kXid[1]).duplicates == 0);
    CHECK(col.keepalives() == 1);
    CHECK(col.errors() >= 1);  // the refused handshake
}
