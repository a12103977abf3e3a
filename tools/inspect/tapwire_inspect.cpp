// tapwire-inspect: runs Tapwire's parsing core over a capture file and prints what it
// found, per packet and per packet class. It is the offline view of what the dataplane
// sees: L2-L4 headers, IP fragments, SIP over UDP and TCP (stream framing), SDP, and the
// RTP/RTCP flows that SDP announces.
//
// Target identities are redacted unless --show-identities is given: this is a diagnostic
// tool, and its output may end up in tickets and logs.

#include <pcap/pcap.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "common/bytes.hpp"
#include "common/identity.hpp"
#include "common/packet.hpp"
#include "common/sdp.hpp"
#include "common/sip.hpp"

namespace tapwire {
namespace {

constexpr int kLinktypeLinuxSll = 113;

struct Options {
    std::vector<std::string> files;
    std::vector<std::uint16_t> sip_ports{5060};
    bool quiet = false;
    bool show_identities = false;
};

enum class PacketClass {
    NonIp,
    Malformed,
    Fragment,
    Sip,
    SipInvalid,
    Rtp,
    Rtcp,
    OtherUdp,
    OtherTcp,
    OtherIp,
    UnsupportedLink,
    Count
};

const char* class_name(PacketClass c) {
    static const char* names[] = {"non-ip",    "malformed", "fragment",  "sip",
                                  "sip-bad",   "rtp",       "rtcp",      "other-udp",
                                  "other-tcp", "other-ip",  "bad-link"};
    return names[static_cast<int>(c)];
}

struct Endpoint {
    IpAddress ip;
    std::uint16_t port = 0;
    auto operator<=>(const Endpoint& o) const {
        return std::tie(ip.family, ip.bytes, port) <=> std::tie(o.ip.family, o.ip.bytes, o.port);
    }
    bool operator==(const Endpoint&) const = default;
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
    auto operator<=>(const FragmentKey& o) const {
        return std::tie(src.bytes, dst.bytes, id, proto) <=>
               std::tie(o.src.bytes, o.dst.bytes, o.id, o.proto);
    }
};

struct FragmentSet {
    std::map<std::uint16_t, std::vector<std::uint8_t>> pieces;  // offset -> bytes
    std::size_t total = 0;                                      // known once the last arrives
};

class Inspector {
public:
    explicit Inspector(const Options& options) : options_(options) {}

    bool run_file(const std::string& path);
    void print_summary() const;

private:
    void on_frame(std::uint64_t index, ByteSpan frame, int linktype);
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

    const Options& options_;
    std::uint64_t counts_[static_cast<int>(PacketClass::Count)] = {};
    std::uint64_t packet_errors_[static_cast<int>(PacketError::Count)] = {};
    std::uint64_t sip_errors_[static_cast<int>(SipError::Count)] = {};
    std::uint64_t sdp_errors_[static_cast<int>(SdpError::Count)] = {};
    std::map<std::string, std::uint64_t> sip_kinds_;
    std::set<std::string> call_ids_;
    std::map<Endpoint, MediaEndpoint> media_;
    std::map<FlowKey, TcpStream> tcp_;
    std::map<FragmentKey, FragmentSet> fragments_;
    std::uint64_t reassembled_ = 0;
    std::uint64_t tcp_out_of_order_ = 0;
    std::uint64_t frames_ = 0;
};

bool Inspector::is_sip_port(std::uint16_t port) const {
    for (auto p : options_.sip_ports)
        if (p == port) return true;
    return false;
}

std::string Inspector::identity(std::string_view uri) const {
    if (!options_.show_identities) return "<redacted>";
    NormalizedIdentity id;
    if (normalize_identity(uri, id) != IdentityError::Ok) return "<unparsed>";
    return std::string(id.view());
}

std::string endpoint_text(const Endpoint& e) {
    return e.ip.is_v6() ? "[" + e.ip.to_string() + "]:" + std::to_string(e.port)
                        : e.ip.to_string() + ":" + std::to_string(e.port);
}

void Inspector::learn_media(const SipMessage& msg, std::string& detail) {
    SdpSession sdp;
    SdpError err = parse_sdp(msg.body, sdp);
    if (err != SdpError::Ok) {
        ++sdp_errors_[static_cast<int>(err)];
        detail += " sdp-error=";
        detail += to_string(err);
    }
    for (const SdpMedia& m : sdp.media) {
        if (m.port == 0 || m.address.empty()) continue;
        std::string cid(msg.call_id);
        media_[{m.address, m.port}] = {cid, false, m.rtcp_mux};
        if (!m.rtcp_mux) media_[{m.rtcp_address, m.rtcp_port}] = {cid, true, false};
        detail += " sdp:" + std::string(m.media) + "@" + endpoint_text({m.address, m.port});
        if (m.rtcp_mux) detail += "(rtcp-mux)";
    }
}

PacketClass Inspector::on_sip_text(std::string_view text, const Endpoint& src,
                                   const Endpoint& dst, std::string& detail) {
    SipMessage msg;
    SipError err = parse_sip(text, msg);
    detail += endpoint_text(src) + " > " + endpoint_text(dst);
    if (err != SipError::Ok) {
        ++sip_errors_[static_cast<int>(err)];
        detail += " error=";
        detail += to_string(err);
        return PacketClass::SipInvalid;
    }
    std::string kind = msg.is_request ? std::string(msg.method_token)
                                      : std::to_string(msg.status_code) + " " +
                                            to_string(msg.cseq_method);
    ++sip_kinds_[kind];
    call_ids_.insert(std::string(msg.call_id));
    detail += " " + kind;
    if (msg.is_request) detail += " " + identity(msg.request_uri);
    detail += " from=" + identity(msg.from.uri) + " to=" + identity(msg.to.uri);
    detail += " call-id=" + std::string(msg.call_id.substr(0, 24));
    detail += " cseq=" + std::to_string(msg.cseq);
    for (const NameAddr& pai : msg.p_asserted_identity) detail += " pai=" + identity(pai.uri);
    for (const NameAddr& div : msg.diversion) detail += " diversion=" + identity(div.uri);
    if (msg.has_sdp_body()) learn_media(msg, detail);
    return PacketClass::Sip;
}

PacketClass Inspector::on_udp(const Endpoint& src, const Endpoint& dst, ByteSpan payload,
                              std::string& detail) {
    std::string_view text = as_text(payload);
    if (is_sip_port(src.port) || is_sip_port(dst.port) || looks_like_sip(text)) {
        // A UDP keep-alive (RFC 5626 CRLF) is not a SIP message.
        if (text.find_first_not_of("\r\n") == std::string_view::npos) return PacketClass::OtherUdp;
        return on_sip_text(text, src, dst, detail);
    }
    for (const Endpoint* e : {&dst, &src}) {
        auto it = media_.find(*e);
        if (it == media_.end()) continue;
        // RFC 5761 section 4: with rtcp-mux, RTCP packet types 200-204 sit in the PT byte.
        bool rtcp = it->second.rtcp ||
                    (it->second.mux && payload.size() > 1 && payload[1] >= 200 && payload[1] <= 204);
        detail = endpoint_text(src) + " > " + endpoint_text(dst) + " call-id=" +
                 it->second.call_id.substr(0, 24) + " len=" + std::to_string(payload.size());
        return rtcp ? PacketClass::Rtcp : PacketClass::Rtp;
    }
    return PacketClass::OtherUdp;
}

PacketClass Inspector::on_tcp(const PacketInfo& info, const Endpoint& src, const Endpoint& dst,
                              ByteSpan payload, std::string& detail) {
    if (!is_sip_port(src.port) && !is_sip_port(dst.port)) return PacketClass::OtherTcp;
    TcpStream& stream = tcp_[{src, dst}];
    if (info.tcp_flags & (kTcpSyn | kTcpRst)) {
        stream = TcpStream{};
        stream.next_seq = info.tcp_seq + 1;
        stream.synced = (info.tcp_flags & kTcpSyn) != 0;
        return PacketClass::OtherTcp;
    }
    if (payload.empty()) return PacketClass::OtherTcp;
    if (!stream.synced) {  // picked up mid-stream: start at a segment that opens a message
        if (!looks_like_sip(as_text(payload))) return PacketClass::OtherTcp;
        stream.synced = true;
        stream.next_seq = info.tcp_seq;
    }
    if (info.tcp_seq != stream.next_seq) {  // retransmission or reordering: not reassembled here
        ++tcp_out_of_order_;
        detail = "tcp segment out of order";
        return PacketClass::OtherTcp;
    }
    stream.next_seq += static_cast<std::uint32_t>(payload.size());
    stream.buffer.append(as_text(payload));
    PacketClass result = PacketClass::OtherTcp;
    detail = "tcp segment, partial sip message buffered";
    std::string messages;
    for (;;) {
        SipFrame frame = frame_sip_stream(stream.buffer);
        if (frame.status == SipFrameStatus::NeedMore) break;
        if (frame.status == SipFrameStatus::Invalid) {
            ++sip_errors_[static_cast<int>(frame.error)];
            messages += std::string(" stream-error=") + to_string(frame.error);
            stream.buffer.clear();
            result = PacketClass::SipInvalid;
            break;
        }
        std::string one;
        std::string text = stream.buffer.substr(frame.skip, frame.length);
        stream.buffer.erase(0, frame.skip + frame.length);
        PacketClass c = on_sip_text(text, src, dst, one);
        // A segment may complete several messages; the packet is SIP if any parsed.
        if (result != PacketClass::Sip) result = c;
        messages += (messages.empty() ? "" : " | ") + one;
    }
    if (!messages.empty()) detail = "tcp " + messages;
    return result;
}

PacketClass Inspector::on_fragment(const PacketInfo& info, ByteSpan base, std::string& detail) {
    FragmentKey key{info.src_ip, info.dst_ip, info.fragment_id, info.ip_proto};
    FragmentSet& set = fragments_[key];
    ByteSpan piece = base.subspan(info.ip_payload_offset, info.ip_payload_length);
    set.pieces[info.fragment_offset].assign(piece.begin(), piece.end());
    if (!info.more_fragments) set.total = info.fragment_offset + piece.size();
    detail = "id=" + std::to_string(info.fragment_id) +
             " offset=" + std::to_string(info.fragment_offset) + (info.more_fragments ? " MF" : "");
    if (set.total == 0) return PacketClass::Fragment;
    std::vector<std::uint8_t> datagram;
    for (auto& [offset, bytes] : set.pieces) {
        if (offset != datagram.size()) return PacketClass::Fragment;  // hole: wait for more
        datagram.insert(datagram.end(), bytes.begin(), bytes.end());
    }
    if (datagram.size() != set.total) return PacketClass::Fragment;
    fragments_.erase(key);
    ++reassembled_;
    detail += " reassembled " + std::to_string(datagram.size()) + " bytes: ";
    if (info.ip_proto != kIpProtoUdp || datagram.size() < 8) return PacketClass::Fragment;
    Endpoint src{info.src_ip, load_be16(datagram.data())};
    Endpoint dst{info.dst_ip, load_be16(datagram.data() + 2)};
    std::string inner;
    PacketClass c = on_udp(src, dst, ByteSpan(datagram).subspan(8), inner);
    detail += inner;
    return c == PacketClass::OtherUdp ? PacketClass::Fragment : c;
}

PacketClass Inspector::classify(const PacketInfo& info, ByteSpan base, std::string& detail) {
    if (info.ip_family == IpFamily::None) return PacketClass::NonIp;
    if (info.is_fragment) return on_fragment(info, base, detail);
    if (!info.has_l4) return PacketClass::OtherIp;
    Endpoint src{info.src_ip, info.src_port};
    Endpoint dst{info.dst_ip, info.dst_port};
    ByteSpan payload = payload_of(base, info);
    if (info.is_udp()) return on_udp(src, dst, payload, detail);
    if (info.is_tcp()) return on_tcp(info, src, dst, payload, detail);
    return PacketClass::OtherIp;
}

void Inspector::on_frame(std::uint64_t index, ByteSpan frame, int linktype) {
    ++frames_;
    PacketInfo info;
    PacketError err;
    ByteSpan base = frame;
    switch (linktype) {
        case DLT_EN10MB:
            err = parse_frame(frame, info);
            break;
        case DLT_RAW:
        case 12:
        case 14:
            err = parse_ip(frame, info);
            break;
        case DLT_NULL:
            if (frame.size() < 4) return;
            base = frame.subspan(4);
            err = parse_ip(base, info);
            break;
        case kLinktypeLinuxSll:  // 16-byte cooked header, protocol type in the last two
            if (frame.size() < 16) return;
            base = frame.subspan(16);
            err = parse_ip(base, info);
            break;
        default:
            ++counts_[static_cast<int>(PacketClass::UnsupportedLink)];
            return;
    }
    std::string detail;
    PacketClass c;
    if (err != PacketError::Ok) {
        ++packet_errors_[static_cast<int>(err)];
        detail = to_string(err);
        c = PacketClass::Malformed;
    } else {
        c = classify(info, base, detail);
    }
    ++counts_[static_cast<int>(c)];
    if (!options_.quiet) {
        std::printf("%6llu  %-9s %s\n", static_cast<unsigned long long>(index), class_name(c),
                    detail.c_str());
    }
}

bool Inspector::run_file(const std::string& path) {
    char errbuf[PCAP_ERRBUF_SIZE];
    pcap_t* pcap = pcap_open_offline(path.c_str(), errbuf);
    if (!pcap) {
        std::fprintf(stderr, "tapwire-inspect: cannot read %s: %s\n", path.c_str(), errbuf);
        return false;
    }
    int linktype = pcap_datalink(pcap);
    if (!options_.quiet) std::printf("== %s (linktype %d)\n", path.c_str(), linktype);
    pcap_pkthdr* header;
    const u_char* data;
    std::uint64_t index = 0;
    int rc;
    while ((rc = pcap_next_ex(pcap, &header, &data)) == 1)
        on_frame(++index, ByteSpan(data, header->caplen), linktype);
    if (rc == PCAP_ERROR)
        std::fprintf(stderr, "tapwire-inspect: %s: %s\n", path.c_str(), pcap_geterr(pcap));
    pcap_close(pcap);
    return rc != PCAP_ERROR;
}

template <class Enum, std::size_t N>
void print_reasons(const char* title, const std::uint64_t (&counts)[N]) {
    for (std::size_t i = 1; i < N; ++i)
        if (counts[i])
            std::printf("  %-28s %-30s %10llu\n", title, to_string(static_cast<Enum>(i)),
                        static_cast<unsigned long long>(counts[i]));
}

void Inspector::print_summary() const {
    std::printf("\n%-30s %10s\n", "packet class", "packets");
    for (int i = 0; i < static_cast<int>(PacketClass::Count); ++i)
        std::printf("  %-28s %10llu\n", class_name(static_cast<PacketClass>(i)),
                    static_cast<unsigned long long>(counts_[i]));
    std::printf("  %-28s %10llu\n", "total", static_cast<unsigned long long>(frames_));
    std::printf("\nsip messages by kind\n");
    for (const auto& [kind, n] : sip_kinds_)
        std::printf("  %-28s %10llu\n", kind.c_str(), static_cast<unsigned long long>(n));
    std::printf("\n  %-28s %10zu\n", "sip dialogs (call-ids)", call_ids_.size());
    std::printf("  %-28s %10zu\n", "media endpoints from sdp", media_.size());
    std::printf("  %-28s %10llu\n", "datagrams reassembled",
                static_cast<unsigned long long>(reassembled_));
    std::printf("  %-28s %10llu\n", "tcp segments out of order",
                static_cast<unsigned long long>(tcp_out_of_order_));
    std::printf("\nerrors by reason\n");
    print_reasons<PacketError>("packet", packet_errors_);
    print_reasons<SipError>("sip", sip_errors_);
    print_reasons<SdpError>("sdp", sdp_errors_);
}

void usage(FILE* out) {
    std::fprintf(out,
                 "usage: tapwire-inspect [options] CAPTURE...\n"
                 "Runs Tapwire's L2-L4, SIP and SDP parsers over pcap/pcapng files.\n"
                 "  --quiet              summary only, no line per packet\n"
                 "  --sip-port N         a SIP port (repeatable; default 5060)\n"
                 "  --show-identities    print normalised identities (redacted by default)\n");
}

}  // namespace
}  // namespace tapwire

int main(int argc, char** argv) {
    using namespace tapwire;
    Options options;
    bool custom_ports = false;
    for (int i = 1; i < argc; ++i) {
        std::string_view arg = argv[i];
        if (arg == "--quiet") {
            options.quiet = true;
        } else if (arg == "--show-identities") {
            options.show_identities = true;
        } else if (arg == "--sip-port" && i + 1 < argc) {
            long port = std::strtol(argv[++i], nullptr, 10);
            if (port <= 0 || port > 65535) {
                std::fprintf(stderr, "tapwire-inspect: --sip-port wants 1-65535, got %s\n",
                             argv[i]);
                return 2;
            }
            if (!custom_ports) options.sip_ports.clear(), custom_ports = true;
            options.sip_ports.push_back(static_cast<std::uint16_t>(port));
        } else if (arg == "-h" || arg == "--help") {
            usage(stdout);
            return 0;
        } else if (arg.starts_with("-")) {
            std::fprintf(stderr, "tapwire-inspect: unknown option %s\n", argv[i]);
            usage(stderr);
            return 2;
        } else {
            options.files.emplace_back(arg);
        }
    }
    if (options.files.empty()) {
        usage(stderr);
        return 2;
    }
    Inspector inspector(options);
    bool ok = true;
    for (const auto& f : options.files) ok = inspector.run_file(f) && ok;
    inspector.print_summary();
    return ok ? 0 : 1;
}
