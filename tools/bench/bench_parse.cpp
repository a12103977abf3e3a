// tapwire-bench-parse: cost of the parsing core on one core, per packet and per SIP message.
//
// Each row runs the operation over a working set that stays in L1/L2 (as a worker's burst
// does) for many rounds, and prints the median and spread over the rounds, next to a
// baseline measured in the same run:
//   - L2-L4 rows: baseline "touch" reads the EtherType and last byte of each frame, the
//     least any classifier must do, so (row - baseline) is the parser's own cost;
//   - SIP rows: baseline "scan" finds the end of headers with memmem, the least any SIP
//     framing must do.
// Usage: tapwire-bench-parse [--rounds N] [--quick]

#include <x86intrin.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "common/identity.hpp"
#include "common/packet.hpp"
#include "common/sdp.hpp"
#include "common/sip.hpp"
#include "tools/bench/bench_stats.hpp"
#include "tools/traffic/frame_builder.hpp"

namespace {

using namespace tapwire;
using namespace tapwire::bench;
using Clock = std::chrono::steady_clock;

void print(const Row& r, const Row* baseline) {
    std::printf("%-34s %9.1f %9.1f %9.1f %10.1f", r.name.c_str(), r.ns.median, r.ns.p10, r.ns.p90,
                r.cycles.median);
    if (baseline) std::printf(" %12.1f", r.ns.median - baseline->ns.median);
    std::printf("\n");
}

// --- frames -----------------------------------------------------------------------------

std::vector<std::uint8_t> rtp_payload(std::size_t bytes) {
    std::vector<std::uint8_t> p(bytes, 0xd5);  // PCMU silence
    p[0] = 0x80;                               // RTP version 2
    p[1] = 0x00;                               // PT 0 (PCMU)
    return p;
}

std::vector<std::vector<std::uint8_t>> frames_ipv4_udp_rtp() {
    std::vector<std::vector<std::uint8_t>> out;
    auto payload = rtp_payload(172);  // 12-byte RTP header + 160 bytes G.711: 214-byte frame
    for (std::uint32_t i = 0; i < 256; ++i) {
        IpAddress src = IpAddress::v4(0x0a000000u + i), dst = IpAddress::v4(0x0a010000u + i);
        std::vector<std::uint8_t> f;
        traffic::build_udp_frame(f, traffic::l2_for(src, dst), {src, dst},
                                 {std::uint16_t(20000 + 2 * i), std::uint16_t(30000 + 2 * i)},
                                 payload);
        out.push_back(std::move(f));
    }
    return out;
}

std::vector<std::vector<std::uint8_t>> frames_vlan_ipv6_udp() {
    std::vector<std::vector<std::uint8_t>> out;
    auto payload = rtp_payload(172);
    auto base = IpAddress::parse("2001:db8::1").value();
    for (std::uint32_t i = 0; i < 256; ++i) {
        IpAddress src = base, dst = base;
        src.bytes[15] = std::uint8_t(i), dst.bytes[14] = std::uint8_t(i);
        std::vector<std::uint8_t> f;
        traffic::build_udp_frame(f, traffic::l2_for(src, dst, traffic::VlanTags::dot1q(100)),
                                 {src, dst}, {40000, 40002}, payload);
        out.push_back(std::move(f));
    }
    return out;
}

std::vector<std::vector<std::uint8_t>> frames_qinq_ipv4_tcp() {
    std::vector<std::vector<std::uint8_t>> out;
    std::string sip(600, 'x');
    for (std::uint32_t i = 0; i < 256; ++i) {
        IpAddress src = IpAddress::v4(0xc0000200u + (i & 0xff)), dst = IpAddress::v4(0xc6336401u);
        traffic::TcpSpec tcp{
            std::uint16_t(30000 + i), 5060,  1000 * i, 77,
            traffic::TcpFlags::kAck,  64240, 1460};  // MSS option: the parser walks TCP options
        std::vector<std::uint8_t> f;
        traffic::build_tcp_frame(f, traffic::l2_for(src, dst, traffic::VlanTags::qinq(10, 20)),
                                 {src, dst}, tcp, as_bytes(sip));
        out.push_back(std::move(f));
    }
    return out;
}

// --- SIP --------------------------------------------------------------------------------

// A carrier-style INVITE with SDP (~1 KB), as an SBC sends it towards a core proxy.
std::string invite_with_sdp() {
    std::string sdp =
        "v=0\r\n"
        "o=- 3711239921 3711239921 IN IP4 198.51.100.20\r\n"
        "s=-\r\n"
        "c=IN IP4 198.51.100.20\r\n"
        "t=0 0\r\n"
        "m=audio 49170 RTP/AVP 8 0 18 101\r\n"
        "a=rtpmap:8 PCMA/8000\r\n"
        "a=rtpmap:0 PCMU/8000\r\n"
        "a=rtpmap:18 G729/8000\r\n"
        "a=fmtp:18 annexb=no\r\n"
        "a=rtpmap:101 telephone-event/8000\r\n"
        "a=fmtp:101 0-15\r\n"
        "a=ptime:20\r\n"
        "a=rtcp:49171\r\n"
        "a=sendrecv\r\n";
    std::string headers =
        "INVITE sip:+4930555010@core.carrier.test;user=phone SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 198.51.100.20:5060;branch=z9hG4bK-524287-1---7f2a9c1d3e4b5a60;rport\r\n"
        "Via: SIP/2.0/UDP 203.0.113.9:5060;received=203.0.113.9;branch=z9hG4bK776asdhds\r\n"
        "Max-Forwards: 69\r\n"
        "From: \"Alice Example\" <sip:+4989123456@sbc.carrier.test;user=phone>;tag=9fxced76sl\r\n"
        "To: <sip:+4930555010@core.carrier.test;user=phone>\r\n"
        "Call-ID: 3848276298220188511@198.51.100.20\r\n"
        "CSeq: 314159 INVITE\r\n"
        "Contact: <sip:+4989123456@198.51.100.20:5060;transport=udp>\r\n"
        "P-Asserted-Identity: \"Alice Example\" <sip:+4989123456@sbc.carrier.test;user=phone>\r\n"
        "P-Asserted-Identity: <tel:+4989123456>\r\n"
        "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, PRACK, UPDATE, INFO, REFER, NOTIFY\r\n"
        "Supported: 100rel, timer, replaces\r\n"
        "Session-Expires: 1800;refresher=uac\r\n"
        "User-Agent: Example-SBC/5.2\r\n"
        "Content-Type: application/sdp\r\n"
        "Content-Length: " +
        std::to_string(sdp.size()) + "\r\n\r\n";
    return headers + sdp;
}

}  // namespace

int main(int argc, char** argv) {
    int rounds = 31;
    std::size_t packets_per_round = 2'000'000, messages_per_round = 200'000;
    for (int i = 1; i < argc; ++i) {
        std::string_view a = argv[i];
        if (a == "--rounds" && i + 1 < argc) {
            rounds = std::max(3, std::atoi(argv[++i]));
        } else if (a == "--quick") {  // CI smoke: checks it runs and prints sane figures
            rounds = 5, packets_per_round = 200'000, messages_per_round = 20'000;
        } else {
            std::fprintf(stderr, "usage: tapwire-bench-parse [--rounds N] [--quick]\n");
            return 2;
        }
    }

    std::printf(
        "tapwire-bench-parse: %d rounds, one core; ns per item (median, p10, p90), "
        "TSC cycles per item (median)\n\n",
        rounds);
    std::printf("%-34s %9s %9s %9s %10s %12s\n", "L2-L4 parse", "median", "p10", "p90", "cycles",
                "minus base");

    PacketInfo info;
    for (auto [name, frames] : {std::pair{"ipv4/udp rtp 214 B", frames_ipv4_udp_rtp()},
                                std::pair{"802.1q/ipv6/udp rtp", frames_vlan_ipv6_udp()},
                                std::pair{"qinq/ipv4/tcp+opts sip", frames_qinq_ipv4_tcp()}}) {
        std::vector<ByteSpan> spans(frames.begin(), frames.end());
        Row base = measure(std::string("baseline touch (") + name + ")", spans.size(),
                           packets_per_round, rounds, [&](std::size_t i) {
                               ByteSpan f = spans[i];
                               keep(load_be16(f.data() + 12) + f[f.size() - 1]);
                           });
        Row row = measure(std::string("parse_frame ") + name, spans.size(), packets_per_round,
                          rounds, [&](std::size_t i) {
                              keep(parse_frame(spans[i], info));
                              keep(info.payload_offset);
                          });
        print(base, nullptr);
        print(row, &base);
    }

    std::string invite = invite_with_sdp();
    std::printf("\n%-34s %9s %9s %9s %10s %12s\n", "SIP (INVITE with SDP)", "median", "p10", "p90",
                "cycles", "minus base");
    std::printf("message size: %zu bytes\n", invite.size());
    SipMessage msg;
    SdpSession sdp;
    NormalizedIdentity id;
    if (parse_sip(invite, msg) != SipError::Ok || parse_sdp(msg.body, sdp) != SdpError::Ok) {
        std::fprintf(stderr, "bench INVITE does not parse\n");
        return 1;
    }
    Row scan =
        measure("baseline scan (memmem CRLFCRLF)", 1, messages_per_round, rounds,
                [&](std::size_t) { keep(memmem(invite.data(), invite.size(), "\r\n\r\n", 4)); });
    Row sip_only = measure("parse_sip", 1, messages_per_round, rounds,
                           [&](std::size_t) { keep(parse_sip(invite, msg)); });
    Row full = measure("parse_sip + parse_sdp", 1, messages_per_round, rounds, [&](std::size_t) {
        keep(parse_sip(invite, msg));
        keep(parse_sdp(msg.body, sdp));
    });
    Row with_ids =
        measure("+ normalise 5 identities", 1, messages_per_round, rounds, [&](std::size_t) {
            keep(parse_sip(invite, msg));
            keep(parse_sdp(msg.body, sdp));
            keep(normalize_identity(msg.request_uri, id));
            keep(normalize_identity(msg.from.uri, id));
            keep(normalize_identity(msg.to.uri, id));
            for (const NameAddr& pai : msg.p_asserted_identity)
                keep(normalize_identity(pai.uri, id));
        });
    print(scan, nullptr);
    print(sip_only, &scan);
    print(full, &scan);
    print(with_ids, &scan);
    return 0;
}
