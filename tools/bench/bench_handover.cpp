// Handover encoding on one core, per format: records per second for CC (a 214-byte RTP
// packet, G.711 20 ms) and IRI (a 1 KB SIP INVITE with SDP), each with the next sequence
// number and a later timestamp, into one reused buffer. The baseline in the same run copies
// the payload into the buffer: the least any encoder must do. Then the same CC records
// appended to an on-disk spool (one fdatasync per 1000 records, in the appending thread).
// Goal (issue 5): at least 1M CC records per second per core for ETSI.
//
// Usage: tapwire-bench-handover [--rounds N] [--quick]
#include <stdlib.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "handover/calea.hpp"
#include "handover/etsi_102232.hpp"
#include "handover/record.hpp"
#include "handover/spool.hpp"
#include "handover/x2x3.hpp"
#include "tools/bench/bench_stats.hpp"

namespace {

using namespace tapwire;
using namespace tapwire::handover;

std::array<std::uint8_t, 214> rtp_packet() {
    // IPv4/UDP/RTP: 20 + 8 + 12 header bytes, 174 bytes of G.711 payload.
    std::array<std::uint8_t, 214> p{};
    const std::uint8_t head[] = {0x45, 0x00, 0x00, 0xD6, 0x12, 0x34, 0x00, 0x00, 0x40, 0x11,
                                 0x00, 0x00, 10,   0,    0,    1,    10,   0,    0,    2,
                                 0x4E, 0x20, 0x4E, 0x22, 0x00, 0xC2, 0x00, 0x00, 0x80, 0x00,
                                 0x01, 0x00, 0x00, 0x00, 0xA0, 0x00, 0xDE, 0xAD, 0xBE, 0xEF};
    std::memcpy(p.data(), head, sizeof head);
    for (std::size_t i = sizeof head; i < p.size(); ++i)
        p[i] = std::uint8_t(0xD5 ^ i);
    return p;
}

std::string sip_invite_1k() {
    std::string head =
        "INVITE sip:+4930123456@ims.example.net SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK776asdhds\r\n"
        "Max-Forwards: 70\r\n"
        "To: <sip:+4930123456@ims.example.net>\r\n"
        "From: \"Alice\" <sip:+4930654321@ims.example.net>;tag=1928301774\r\n"
        "Call-ID: a84b4c76e66710@10.0.0.1\r\n"
        "CSeq: 314159 INVITE\r\n"
        "Contact: <sip:+4930654321@10.0.0.1:5060>\r\n"
        "Content-Type: application/sdp\r\n"
        "Content-Length: ";
    std::string body =
        "v=0\r\no=alice 2890844526 2890844526 IN IP4 10.0.0.1\r\ns=-\r\n"
        "c=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 20000 RTP/AVP 0 8 101\r\n"
        "a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n";
    const std::size_t fixed = head.size() + 3 + 4;  // "NNN" and the blank line
    while (fixed + body.size() < 1024)
        body += "a=x-pad:0\r\n";
    body.resize(1024 - fixed);
    return head + std::to_string(body.size()) + "\r\n\r\n" + body;
}

WarrantContext context() {
    WarrantContext c;
    c.liid = "DE-BKA-2026-000123";
    c.authorization_country_code = "DE";
    c.delivery_country_code = "DE";
    c.operator_identifier = "TAPWIRE-OP";
    c.network_element_identifier = "tw-fra-01";
    c.interception_point_id = "FRA1";
    c.xid = "2b9c4c1e-7d3a-4f0e-9a57-0c2f4d8e1b6a";
    return c;
}

void print(const bench::Row& row, std::size_t bytes, double base_ns) {
    std::printf("  %-34s %9.1f %9.1f %9.1f %9.2f %7zu  %6.1fx\n", row.name.c_str(), row.ns.median,
                row.ns.p10, row.ns.p90, 1e3 / row.ns.median, bytes, row.ns.median / base_ns);
}

}  // namespace

int main(int argc, char** argv) {
    int rounds = 21;
    std::size_t per_round = 200'000;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--quick") {
            rounds = 5, per_round = 20'000;
        } else if (a == "--rounds" && i + 1 < argc) {
            rounds = std::atoi(argv[++i]);
        } else {
            std::fprintf(stderr, "usage: tapwire-bench-handover [--rounds N] [--quick]\n");
            return 2;
        }
    }

    const auto packet = rtp_packet();
    const std::string sip = sip_invite_1k();
    CcRecord cc;
    cc.header = {0x1234567, 0, 1'790'000'000'123'456'789};
    cc.direction = Direction::FromTarget;
    cc.ip_packet = packet;
    IriRecord iri;
    iri.header = cc.header;
    iri.type = IriType::Continue;
    iri.sip_message = ByteSpan(reinterpret_cast<const std::uint8_t*>(sip.data()), sip.size());
    iri.source = {IpAddress::v4(0x0A000001), 5060};
    iri.destination = {IpAddress::v4(0x0A000002), 5060};

    std::vector<std::uint8_t> out(4096);
    std::size_t sink = 0;
    std::printf(
        "tapwire-bench-handover: %d rounds of %zu records, one core; ns per record "
        "(median, p10, p90), M records/s, PDU bytes, ratio to the baseline\n\n",
        rounds, per_round);
    std::printf("  %-34s %9s %9s %9s %9s %7s  %7s\n", "", "median", "p10", "p90", "M/s", "bytes",
                "vs base");
    const bench::Row base_cc =
        bench::measure("baseline: copy 214 B packet", 1, per_round, rounds, [&](std::size_t) {
            std::memcpy(out.data(), packet.data(), packet.size());
            bench::keep(out[7]);
        });
    print(base_cc, packet.size(), base_cc.ns.median);
    const bench::Row base_iri =
        bench::measure("baseline: copy 1 KB SIP", 1, per_round, rounds, [&](std::size_t) {
            std::memcpy(out.data(), sip.data(), sip.size());
            bench::keep(out[7]);
        });
    print(base_iri, sip.size(), base_iri.ns.median);

    const std::unique_ptr<Encoder> encoders[] = {make_etsi_102232_encoder(), make_x2x3_encoder(),
                                                 make_calea_encoder()};
    for (const auto& encoder : encoders) {
        std::string error;
        const auto warrant = encoder->prepare(context(), error);
        if (!warrant) {
            std::fprintf(stderr, "%s: prepare: %s\n", encoder->name(), error.c_str());
            return 1;
        }
        std::size_t cc_bytes = 0, iri_bytes = 0;
        const bench::Row row_cc = bench::measure(std::string(encoder->name()) + " CC (RTP 214 B)",
                                                 1, per_round, rounds, [&](std::size_t) {
                                                     ++cc.header.sequence;
                                                     cc.header.timestamp_ns += 20'000'000;
                                                     cc_bytes =
                                                         encoder->encode_cc(*warrant, cc, out);
                                                     sink += cc_bytes;
                                                 });
        const bench::Row row_iri = bench::measure(std::string(encoder->name()) + " IRI (SIP 1 KB)",
                                                  1, per_round, rounds, [&](std::size_t) {
                                                      ++iri.header.sequence;
                                                      iri.header.timestamp_ns += 1'000'000;
                                                      iri_bytes =
                                                          encoder->encode_iri(*warrant, iri, out);
                                                      sink += iri_bytes;
                                                  });
        if (cc_bytes == 0 || iri_bytes == 0) {
            std::fprintf(stderr, "%s: an encode failed\n", encoder->name());
            return 1;
        }
        print(row_cc, cc_bytes, base_cc.ns.median);
        print(row_iri, iri_bytes, base_iri.ns.median);
    }

    // The same ETSI CC records into a spool on disk, fdatasync every 1000 records.
    std::string dir = (std::filesystem::temp_directory_path() / "tw-bench-spool-XXXXXX").string();
    if (::mkdtemp(dir.data()) == nullptr) {
        std::perror("mkdtemp");
        return 1;
    }
    SpoolOptions options;
    options.directory = dir;
    options.segment_bytes = 64u << 20;
    options.max_total_bytes = 1ull << 30;
    auto opened = Spool::open(options);
    if (!opened.spool) {
        std::fprintf(stderr, "spool: %s\n", opened.message.c_str());
        return 1;
    }
    const auto encoder = make_etsi_102232_encoder();
    std::string error;
    const auto warrant = encoder->prepare(context(), error);
    std::size_t appended = 0;
    const bench::Row row_spool =
        bench::measure("etsi-102232 CC encode + spool append", 1, per_round / 4,
                       std::max(3, rounds / 4), [&](std::size_t) {
                           ++cc.header.sequence;
                           const std::size_t n = encoder->encode_cc(*warrant, cc, out);
                           opened.spool->append(ByteSpan(out.data(), n));
                           if (++appended % 1000 == 0) opened.spool->flush();
                       });
    print(row_spool, 0, base_cc.ns.median);
    std::printf("\n  (spool in %s, one fdatasync per 1000 records in the appending thread)\n",
                dir.c_str());
    opened.spool.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
    bench::keep(sink);
    return 0;
}
