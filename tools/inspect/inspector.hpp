// Inspector: runs Tapwire's parsing core over captured frames the way the dataplane will:
// L2-L4 headers, IP fragment reassembly, SIP over UDP and TCP (stream framing), SDP, and the
// RTP/RTCP flows that SDP announces. Offline and allocation-happy (std::map): a diagnostic
// view and a test oracle, not the hot path.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/bytes.hpp"
#include "common/ip_address.hpp"
#include "common/packet.hpp"
#include "common/sdp.hpp"
#include "common/sip.hpp"

namespace tapwire {

enum class PacketClass : std::uint8_t {
    NonIp,
    Malformed,
    Fragment,
    Sip,
    SipInvalid,
    SipKeepalive,
    Rtp,
    Rtcp,
    OtherUdp,
    OtherTcp,
    OtherIp,
    UnsupportedLink,
    Count
};

const char* to_string(PacketClass c) noexcept;

struct InspectOptions {
    std::vector<std::uint16_t> sip_ports{5060};
    bool show_identities = false;  // identities are redacted unless asked for
};

/// What an inspection found, by class and by reason.
struct InspectCounts {
    std::uint64_t frames = 0;
    std::uint64_t by_class[static_cast<int>(PacketClass::Count)] = {};
    std::uint64_t packet_errors[static_cast<int>(PacketError::Count)] = {};
    std::uint64_t sip_errors[static_cast<int>(SipError::Count)] = {};
    std::uint64_t sdp_errors[static_cast<int>(SdpError::Count)] = {};
    std::uint64_t sip_messages = 0;  // parsed without error (a TCP segment may carry several)
    std::map<std::string, std::uint64_t> sip_kinds;  // "INVITE", "200 INVITE", ...
    std::set<std::string> call_ids;
    std::uint64_t media_endpoints = 0;
    std::uint64_t reassembled = 0;
    std::uint64_t tcp_out_of_order = 0;

    std::uint64_t of(PacketClass c) const { return by_class[static_cast<int>(c)]; }
};

class Inspector {
  public:
    explicit Inspector(InspectOptions options = {}) : options_(std::move(options)) {}

    /// Reads a pcap or pcapng file (Ethernet, raw IP, BSD loopback or Linux SLL link).
    /// Calls on_line for each frame with its class and a description, when given.
    /// Returns an error message, or an empty string on success.
    std::string run_file(const std::string& path,
                         void (*on_line)(std::uint64_t, PacketClass, const std::string&) = nullptr);

    /// Inspects one frame of the given pcap link type.
    PacketClass on_frame(ByteSpan frame, int linktype, std::string& detail);

    const InspectCounts& counts() const noexcept { return counts_; }
    void print_summary() const;

  private:
    struct Endpoint {
        IpAddress ip;
        std::uint16_t port = 0;
        auto operator<=>(const Endpoint&) const = default;
    };
    struct MediaEndpoint {
        std::string call_id;
        bool rtcp = false;
        bool mux = false;
    };
    struct FlowKey {
        Endpoint src, dst;
        auto operator<=>(const FlowKey&) const = default;
    };
    struct TcpStream {
        std::string buffer;
        std::uint32_t next_seq = 0;
        bool synced = false;
    };
    struct FragmentKey {
        IpAddress src, dst;
        std::uint32_t id = 0;
        std::uint8_t proto = 0;
        auto operator<=>(const FragmentKey&) const = default;
    };
    struct FragmentSet {
        std::map<std::uint16_t, std::vector<std::uint8_t>> pieces;  // offset -> bytes
        std::size_t total = 0;  // known once the last fragment arrived
    };

    PacketClass classify(const PacketInfo& info, ByteSpan l3_base, std::string& detail);
    PacketClass on_udp(const Endpoint& src, const Endpoint& dst, ByteSpan payload,
                       std::string& detail);
    PacketClass on_tcp(const PacketInfo& info, const Endpoint& src, const Endpoint& dst,
                       ByteSpan payload, std::string& detail);
    PacketClass on_fragment(const PacketInfo& info, ByteSpan base, std::string& detail);
    PacketClass on_sip_text(std::string_view text, const Endpoint& src, const Endpoint& dst,
                            std::string& detail);
    void learn_media(const SipMessage& msg, std::string& detail);
    std::string identity(std::string_view uri) const;
    bool is_sip_port(std::uint16_t port) const;
    static std::string endpoint_text(const Endpoint& e);

    InspectOptions options_;
    InspectCounts counts_;
    std::map<Endpoint, MediaEndpoint> media_;
    std::map<FlowKey, TcpStream> tcp_;
    std::map<FragmentKey, FragmentSet> fragments_;
};

}  // namespace tapwire
