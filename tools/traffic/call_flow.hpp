// Synthetic VoIP traffic: SIP dialogs (calls, REGISTER, MESSAGE) rendered as a proxy pair
// would put them on the wire, with their RTP and RTCP, plus non-VoIP background traffic.
// Every frame carries a label (which call, what kind, whether a target is involved) so
// integration tests can check per call exactly which packets an interceptor mirrored.
// Deterministic: the same scenario and seed always give the same bytes.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/ip_address.hpp"
#include "tools/traffic/frame_builder.hpp"

namespace tapwire::traffic {

enum class FrameKind : std::uint8_t { Sip, Rtp, Rtcp, Background };

/// "sip", "rtp", "rtcp", "background".
const char* to_string(FrameKind kind) noexcept;

/// One generated frame and what it is.
struct LabeledFrame {
    std::uint64_t time_ns = 0;  // absolute, since the Unix epoch
    std::vector<std::uint8_t> bytes;
    int call_index = -1;  // index into Scenario::calls; -1 for background
    FrameKind kind = FrameKind::Background;
    bool targeted = false;  // belongs to a call (or REGISTER/MESSAGE) that involves a target
    /// SIP messages completed in this frame: 0 for TCP control segments and for all but the
    /// last IP fragment / TCP segment of a message; 2 when two messages share a segment.
    /// Wireshark shows each message in the frame where it completes, so the sum over a
    /// capture equals the number of SIP messages tshark reports.
    std::uint8_t sip_messages = 0;
    std::string note;  // short description: "INVITE", "180 Ringing", "RTP caller->callee", ...
};

enum class SipTransport : std::uint8_t { Udp, Tcp };
enum class Codec : std::uint8_t { Pcmu, G729, Opus };
enum class SessionKind : std::uint8_t { Call, Register, Message };

/// How a call ends: a BYE from either side after the media, a CANCEL before the answer
/// (487 to the INVITE), or a 486 Busy Here final failure.
/// How a call ends. Abandoned: nothing after the media, the BYE never crosses the tap (a
/// lost signalling path, a crashed phone): the appliance must end the call by timeout.
enum class CallEnding : std::uint8_t { CallerBye, CalleeBye, Cancel, Busy, Abandoned };

/// Static properties of a codec at 20 ms packetisation.
struct CodecInfo {
    const char* encoding;  // a=rtpmap encoding name
    std::uint8_t payload_type;
    std::uint32_t clock_rate;
    std::uint8_t channels;         // 0: omitted from a=rtpmap
    std::uint32_t timestamp_step;  // RTP timestamp units per 20 ms packet
    std::uint16_t min_payload;     // bytes; equal to max for constant bit rate codecs
    std::uint16_t max_payload;
    const char* fmtp;  // a=fmtp parameters, or nullptr
};

/// PCMU: PT 0, 8 kHz, 160 bytes (a 214-byte frame on IPv4/UDP/RTP). G.729: PT 18, 20 bytes.
/// Opus: PT 111, 48 kHz, variable 60..120 bytes.
const CodecInfo& codec_info(Codec codec) noexcept;

/// One user agent: its identity and where its media lives. The UA's Contact and Via use
/// media_ip (a UA sends media from its own address).
struct Party {
    std::string uri;  // "sip:alice@tapwire.test", "sip:+4930555010@carrier.test;user=phone"
    std::string display_name;  // optional, quoted in From/To
    IpAddress media_ip;
    std::uint16_t rtp_port = 0;  // even; RTCP on rtp_port + 1
};

/// A mid-call re-INVITE from the caller that moves the caller's media.
struct MediaMove {
    std::uint32_t after_packets = 0;  // sent after this many RTP packets per direction
    IpAddress new_ip;                 // may equal the old address (port-only move)
    std::uint16_t new_port = 0;
};

/// Everything that describes one SIP dialog and its media.
struct CallSpec {
    SessionKind kind = SessionKind::Call;
    Party caller;                     // REGISTER: the registering user; MESSAGE: the sender
    Party callee;                     // ignored for REGISTER
    std::string request_uri;          // empty: callee.uri (a forwarded call targets the new party)
    std::string p_asserted_identity;  // caller's PAI value, e.g. "<tel:+4930555010>"
    std::string diversion;            // Diversion header value (RFC 5806), empty: none
    std::vector<std::string> history_info;  // History-Info values (RFC 7044), in order
    std::vector<std::pair<std::string, std::string>> extra_headers;  // added to the request

    /// The observed signalling hop: caller-side proxy to callee-side proxy. UDP uses port
    /// sip_port on both; TCP connects from an ephemeral port to sip_port.
    SipTransport transport = SipTransport::Udp;
    IpAddress caller_proxy;
    IpAddress callee_proxy;
    std::uint16_t sip_port = 5060;
    VlanTags vlans;            // on every frame of the call, signalling and media
    std::uint16_t mtu = 1500;  // IP MTU for UDP fragmentation and the TCP MSS

    Codec codec = Codec::Pcmu;
    std::uint32_t rtp_packets = 0;         // per direction; 0: duration_ms / 20
    std::uint32_t duration_ms = 2000;      // media duration when rtp_packets is 0
    std::uint32_t rtcp_every_packets = 0;  // RTCP SR interval; 0: every 5 s of media
    bool large_invite = false;             // pad the INVITE (big SDP, IMS headers) past the MTU
    std::optional<MediaMove> reinvite;
    CallEnding ending = CallEnding::CallerBye;
    bool tcp_split_invite = false;          // TCP: the INVITE in two segments
    bool tcp_coalesce_provisional = false;  // TCP: 100 Trying and 180 Ringing in one segment

    std::uint64_t start_ns = 0;      // offset from the scenario epoch
    std::uint32_t ringing_ms = 300;  // 180 Ringing to 200 OK (or to CANCEL)
    std::string message_text = "Hello from tapwire-callgen";  // MESSAGE body
    bool targeted = false;  // label only: the scenario knows which identities are targets
};

/// Background (non-VoIP) traffic.
enum class BackgroundKind : std::uint8_t { Dns, Https, Arp };

struct BackgroundSpec {
    BackgroundKind kind = BackgroundKind::Dns;
    IpAddress client;
    IpAddress server;
    std::uint64_t start_ns = 0;  // offset from the scenario epoch
    std::uint32_t count = 1;     // DNS queries, HTTPS request/response rounds, ARP exchanges
    VlanTags vlans;
};

/// 2024-01-01T00:00:00Z: a fixed epoch so captures are byte-for-byte reproducible.
inline constexpr std::uint64_t kDefaultEpochNs = 1704067200ull * 1000000000ull;

struct Scenario {
    std::string name;
    std::string description;
    std::uint64_t epoch_ns = kDefaultEpochNs;
    std::vector<CallSpec> calls;
    std::vector<BackgroundSpec> background;
    /// Target identities as a warrant would name them ("+4930555010",
    /// "sip:alice@tapwire.test"); a call is targeted iff one of them appears in its
    /// Request-URI, From, To, P-Asserted-Identity, Contact, Diversion or History-Info.
    std::vector<std::string> targets;
};

struct ScenarioInfo {
    std::string_view name;
    std::string_view description;
};

/// The named scenarios: "demo", "basic", "mix".
const std::vector<ScenarioInfo>& list_scenarios();

/// Builds a named scenario; nullopt for an unknown name. The seed varies randomised
/// scenarios ("mix"); fixed ones ignore it.
std::optional<Scenario> make_scenario(std::string_view name, std::uint64_t seed = 1);

/// Empty when spec can be rendered, else what is wrong ("caller_proxy and callee_proxy
/// are of different IP families").
std::string validate(const CallSpec& spec);

/// Renders one dialog and its media, time-ordered. Throws std::invalid_argument with
/// validate()'s message on an invalid spec.
std::vector<LabeledFrame> render_call(const CallSpec& spec, int call_index, std::uint64_t epoch_ns,
                                      std::uint64_t seed);

/// Renders one background exchange (call_index -1, not targeted).
std::vector<LabeledFrame> render_background(const BackgroundSpec& spec, std::uint64_t epoch_ns,
                                            std::uint64_t seed);

/// Renders the whole scenario, merged in time order (stable: ties keep call order).
std::vector<LabeledFrame> render_scenario(const Scenario& scenario, std::uint64_t seed = 1);

}  // namespace tapwire::traffic
