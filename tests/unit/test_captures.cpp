// The parsing core over real traffic: every public capture in ../shared/captures, and the
// synthetic call mixes frame by frame against the generator's labels.
//
// The expected figures for the public captures are Wireshark's (tshark 4.0, recorded in
// ../shared/captures/SOURCES.md), an independent decoder: SIP message and Call-ID counts
// must match exactly; RTP must be found on at least every packet tshark finds on flows
// that SDP announced.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "tools/inspect/inspector.hpp"
#include "tools/traffic/call_flow.hpp"

namespace {

using tapwire::InspectCounts;
using tapwire::Inspector;
using tapwire::PacketClass;

std::string capture(const std::string& name) {
    const char* dir = std::getenv("TAPWIRE_SHARED_DIR");
    return std::string(dir ? dir : "../shared") + "/captures/" + name;
}

InspectCounts inspect(const std::string& name, std::uint16_t sip_port = 5060) {
    tapwire::InspectOptions options;
    options.sip_ports = {sip_port};
    Inspector inspector(options);
    std::string error = inspector.run_file(capture(name));
    INFO(error);
    REQUIRE(error.empty());
    return inspector.counts();
}

std::uint64_t total_errors(const InspectCounts& c) {
    std::uint64_t n = 0;
    for (auto v : c.packet_errors)
        n += v;
    for (auto v : c.sip_errors)
        n += v;
    for (auto v : c.sdp_errors)
        n += v;
    return n - c.packet_errors[0] - c.sip_errors[0] - c.sdp_errors[0];
}

}  // namespace

TEST_CASE("UDP SIP captures: message and dialog counts match Wireshark", "[captures]") {
    struct Expect {
        const char* file;
        std::uint64_t sip, call_ids, frames, rtp_at_least;
    };
    for (const Expect& e : {
             Expect{"sngrep__aaa.pcap", 81, 6, 691, 9},
             Expect{"heplify__rtp_rtcp_sip_ipv4_udp.pcap", 14, 4, 4269, 1439},
             Expect{"heplify__sip_ipv6_udp.pcap", 6, 1, 6, 0},
             Expect{"heplify__FAX-Call-t38-CA-TDM-SIP-FB-1.pcap", 92, 3, 7217, 4985},
             Expect{"truelegend__ipv6-define.pcap", 50, 5, 6229, 3067},
         }) {
        SECTION(e.file) {
            InspectCounts c = inspect(e.file);
            CHECK(c.frames == e.frames);
            CHECK(c.sip_messages == e.sip);
            CHECK(c.call_ids.size() == e.call_ids);
            CHECK(c.of(PacketClass::Rtp) >= e.rtp_at_least);
            CHECK(c.of(PacketClass::Malformed) == 0);
            CHECK(c.of(PacketClass::SipInvalid) == 0);
            CHECK(total_errors(c) == 0);
        }
    }
}

TEST_CASE("NAT keep-alives of spaces are told apart from SIP", "[captures]") {
    InspectCounts c = inspect("sngrep__aaa.pcap");
    CHECK(c.of(PacketClass::SipKeepalive) == 21);  // 5-space UDP payloads to port 5060
    CHECK(c.of(PacketClass::Sip) == 81);
}

TEST_CASE("IPv6-fragmented SIP is reassembled (Linux cooked capture)", "[captures]") {
    InspectCounts c = inspect("sngrep__ipv6frag.pcap");
    CHECK(c.frames == 34);
    CHECK(c.reassembled == 2);
    CHECK(c.sip_messages == 32);
    CHECK(c.call_ids.size() == 1);
    CHECK(c.sip_kinds.at("INVITE") == 2);  // both hops of the proxy
    CHECK(c.sip_kinds.at("UPDATE") == 4);
    // Its SDP writes IPv6 addresses in brackets (SIPp style); the media must still be learned.
    CHECK(c.media_endpoints > 0);
    CHECK(total_errors(c) == 0);
}

TEST_CASE("SIP over TCP: segments reassembled and framed by Content-Length", "[captures]") {
    SECTION("one call over TCP, media announced in it") {
        InspectCounts c = inspect("heplify__sip_ipv4_tcp.pcap");
        CHECK(c.sip_messages == 7);
        CHECK(c.call_ids.size() == 1);
        CHECK(c.of(PacketClass::Rtp) == 66);
        CHECK(total_errors(c) == 0);
    }
    SECTION("messages split over several segments, port 6060") {
        InspectCounts c = inspect("heplify__sip_ipv4_tcp_fragmented.pcap", 6060);
        CHECK(c.sip_messages == 406);
        CHECK(c.call_ids.size() == 70);
        CHECK(c.sip_kinds.at("INVITE") == 37);
        CHECK(c.sip_kinds.at("UPDATE") == 63);
        CHECK(c.sip_kinds.at("BYE") == 34);
        CHECK(total_errors(c) == 0);
    }
    SECTION("OpenLI training lab call, TSO-sized IPv4 total length") {
        InspectCounts c = inspect("openli-training-lab__tcpsip_voip.pcap");
        CHECK(c.of(PacketClass::Sip) == 35);
        CHECK(c.sip_kinds.at("INVITE") == 2);
        CHECK(c.of(PacketClass::Rtp) == 3950);
        CHECK(total_errors(c) == 0);
    }
}

TEST_CASE("invalid Content-Length is rejected with its reason", "[captures]") {
    InspectCounts c = inspect("zeek__invalid-content-length.pcap");
    CHECK(c.of(PacketClass::SipInvalid) == 2);
    CHECK(c.sip_errors[static_cast<int>(tapwire::SipError::BadContentLength)] == 2);
}

TEST_CASE("every public capture parses without a malformed frame", "[captures]") {
    namespace fs = std::filesystem;
    int files = 0;
    for (const auto& entry : fs::directory_iterator(capture(""))) {
        std::string name = entry.path().filename();
        if (name.ends_with(".md")) continue;
        ++files;
        InspectCounts c = inspect(name);
        INFO(name);
        CHECK(c.frames > 0);
        CHECK(c.of(PacketClass::Malformed) == 0);
    }
    CHECK(files >= 17);
}

TEST_CASE("synthetic call mixes: each frame classified as the generator labelled it",
          "[captures][traffic]") {
    using tapwire::traffic::FrameKind;
    for (const char* name : {"demo", "mix"}) {
        SECTION(name) {
            auto scenario = tapwire::traffic::make_scenario(name, 7);
            REQUIRE(scenario);
            auto frames = tapwire::traffic::render_scenario(*scenario, 7);
            Inspector inspector;
            std::uint64_t labelled_sip = 0, mismatches = 0;
            for (const auto& f : frames) {
                std::string detail;
                PacketClass c = inspector.on_frame(f.bytes, 1 /* Ethernet */, detail);
                labelled_sip += f.sip_messages;
                bool ok = true;
                switch (f.kind) {
                    case FrameKind::Rtp:
                        ok = c == PacketClass::Rtp;
                        break;
                    case FrameKind::Rtcp:
                        ok = c == PacketClass::Rtcp;
                        break;
                    case FrameKind::Sip:  // a message completes here, or it is a TCP/fragment piece
                        ok = f.sip_messages
                                 ? c == PacketClass::Sip
                                 : (c == PacketClass::OtherTcp || c == PacketClass::Fragment);
                        break;
                    case FrameKind::Background:
                        ok = c != PacketClass::Sip && c != PacketClass::Rtp &&
                             c != PacketClass::Rtcp;
                        break;
                }
                if (!ok) {
                    ++mismatches;
                    UNSCOPED_INFO("frame '" << f.note << "' classified " << tapwire::to_string(c));
                }
            }
            const InspectCounts& c = inspector.counts();
            CHECK(mismatches == 0);
            CHECK(c.sip_messages == labelled_sip);
            CHECK(total_errors(c) == 0);
        }
    }
}
