#include "tools/inspect/inspector.hpp"

#include <pcap/pcap.h>

#include <algorithm>
#include <cstdio>
#include <iterator>

#include "common/identity.hpp"

namespace tapwire {

namespace {
constexpr int kLinktypeLinuxSll = 113;
constexpr int kLinktypeRawBsd = 14;  // DLT_RAW is 12 on Linux, 14 on some BSDs
}  // namespace

const char* to_string(PacketClass c) noexcept {
    static const char* const names[] = {"non-ip",    "malformed",     "fragment", "sip",
                                        "sip-bad",   "sip-keepalive", "rtp",      "rtcp",
                                        "other-udp", "other-tcp",     "other-ip", "bad-link"};
    static_assert(std::size(names) == static_cast<std::size_t>(PacketClass::Count));
    return names[static_cast<int>(c)];
}

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

std::string Inspector::endpoint_text(const Endpoint& e) {
    // Appending (not operator+ on a temporary) sidesteps a g++ 12 -Wrestrict false positive.
    std::string text = e.ip.is_v6() ? "[" : "";
    text += e.ip.to_string();
    text += e.ip.is_v6() ? "]:" : ":";
    text += std::to_string(e.port);
    return text;
}

void Inspector::learn_media(const SipMessage& msg, std::string& detail) {
    SdpSession sdp;
    SdpError err = parse_sdp(msg.body, sdp);
    if (err != SdpError::Ok) {
        ++counts_.sdp_errors[static_cast<int>(err)];
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
    counts_.media_endpoints = media_.size();
}

PacketClass Inspector::on_sip_text(std::string_view text, const Endpoint& src, const Endpoint& dst,
                                   std::string& detail) {
    SipMessage msg;
    SipError err = parse_sip(text, msg);
    detail += endpoint_text(src) + " > " + endpoint_text(dst);
    if (err != SipError::Ok) {
        ++counts_.sip_errors[static_cast<int>(err)];
        detail += " error=";
        detail += to_string(err);
        return PacketClass::SipInvalid;
    }
    ++counts_.sip_messages;
    std::string kind =
        msg.is_request ? std::string(msg.method_token)
                       : std::to_string(msg.status_code) + " " + std::string(msg.cseq_method_token);
    ++counts_.sip_kinds[kind];
    counts_.call_ids.insert(std::string(msg.call_id));
    detail += " " + kind;
    if (msg.is_request) detail += " " + identity(msg.request_uri);
    detail += " from=" + identity(msg.from.uri) + " to=" + identity(msg.to.uri);
    detail += " call-id=" + std::string(msg.call_id.substr(0, 24));
    detail += " cseq=" + std::to_string(msg.cseq);
    for (const NameAddr& pai : msg.p_asserted_identity)
        detail += " pai=" + identity(pai.uri);
    for (const NameAddr& div : msg.diversion)
        detail += " diversion=" + identity(div.uri);
    if (msg.has_sdp_body()) learn_media(msg, detail);
    return PacketClass::Sip;
}

PacketClass Inspector::on_udp(const Endpoint& src, const Endpoint& dst, ByteSpan payload,
                              std::string& detail) {
    std::string_view text = as_text(payload);
    if (is_sip_port(src.port) || is_sip_port(dst.port) || looks_like_sip(text)) {
        if (is_sip_keepalive(text)) return PacketClass::SipKeepalive;
        return on_sip_text(text, src, dst, detail);
    }
    for (const Endpoint* e : {&dst, &src}) {
        auto it = media_.find(*e);
        if (it == media_.end()) continue;
        // RFC 5761 section 4: with rtcp-mux, RTCP packet types 200-204 sit in the PT byte.
        bool rtcp = it->second.rtcp || (it->second.mux && payload.size() > 1 && payload[1] >= 200 &&
                                        payload[1] <= 204);
        detail = endpoint_text(src) + " > " + endpoint_text(dst) +
                 " call-id=" + it->second.call_id.substr(0, 24) +
                 " len=" + std::to_string(payload.size());
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
    if (info.tcp_seq != stream.next_seq) {  // retransmission or reordering: not reassembled
        ++counts_.tcp_out_of_order;
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
            ++counts_.sip_errors[static_cast<int>(frame.error)];
            messages += std::string(" stream-error=") + to_string(frame.error);
            stream.buffer.clear();
            result = PacketClass::SipInvalid;
            break;
        }
        std::string one;
        std::string text = stream.buffer.substr(frame.skip, frame.length);
        stream.buffer.erase(0, frame.skip + frame.length);
        PacketClass c = on_sip_text(text, src, dst, one);
        if (result != PacketClass::Sip) result = c;  // SIP if any message in it parsed
        if (!messages.empty()) messages += " | ";
        messages += one;
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
        if (offset != datagram.size()) return PacketClass::Fragment;  // a hole: wait for more
        datagram.insert(datagram.end(), bytes.begin(), bytes.end());
    }
    if (datagram.size() != set.total) return PacketClass::Fragment;
    fragments_.erase(key);
    ++counts_.reassembled;
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

PacketClass Inspector::on_frame(ByteSpan frame, int linktype, std::string& detail) {
    ++counts_.frames;
    PacketInfo info;
    PacketError err = PacketError::Ok;
    ByteSpan base = frame;
    PacketClass c;
    switch (linktype) {
        case DLT_EN10MB:
            err = parse_frame(frame, info);
            break;
        case DLT_RAW:
        case kLinktypeRawBsd:
        case DLT_IPV4:
        case DLT_IPV6:
            err = parse_ip(frame, info);
            break;
        case DLT_NULL:  // 4-byte address family in host order, then IP
            base = frame.subspan(std::min<std::size_t>(frame.size(), 4));
            err = parse_ip(base, info);
            break;
        case kLinktypeLinuxSll:  // 16-byte cooked header ending in the EtherType, then L3
            base = frame.subspan(std::min<std::size_t>(frame.size(), 16));
            if (frame.size() >= 16 && load_be16(frame.data() + 14) != kEtherTypeIpv4 &&
                load_be16(frame.data() + 14) != kEtherTypeIpv6) {
                break;  // ARP and the like: info stays non-IP
            }
            err = parse_ip(base, info);
            break;
        default:
            c = PacketClass::UnsupportedLink;
            ++counts_.by_class[static_cast<int>(c)];
            return c;
    }
    if (err != PacketError::Ok) {
        ++counts_.packet_errors[static_cast<int>(err)];
        detail = to_string(err);
        c = PacketClass::Malformed;
    } else {
        c = classify(info, base, detail);
    }
    ++counts_.by_class[static_cast<int>(c)];
    return c;
}

std::string Inspector::run_file(const std::string& path,
                                void (*on_line)(std::uint64_t, PacketClass, const std::string&)) {
    char errbuf[PCAP_ERRBUF_SIZE];
    pcap_t* pcap = pcap_open_offline(path.c_str(), errbuf);
    if (!pcap) return std::string("cannot read ") + path + ": " + errbuf;
    int linktype = pcap_datalink(pcap);
    pcap_pkthdr* header;
    const u_char* data;
    std::uint64_t index = 0;
    int rc;
    while ((rc = pcap_next_ex(pcap, &header, &data)) == 1) {
        std::string detail;
        PacketClass c = on_frame(ByteSpan(data, header->caplen), linktype, detail);
        if (on_line) on_line(++index, c, detail);
    }
    std::string error = rc == PCAP_ERROR ? path + ": " + pcap_geterr(pcap) : "";
    pcap_close(pcap);
    return error;
}

namespace {
template <class Enum, std::size_t N>
void print_reasons(const char* layer, const std::uint64_t (&counts)[N]) {
    for (std::size_t i = 1; i < N; ++i)  // 0 is Ok
        if (counts[i])
            std::printf("  %-5s %-34s %10llu\n", layer, to_string(static_cast<Enum>(i)),
                        static_cast<unsigned long long>(counts[i]));
}
}  // namespace

void Inspector::print_summary() const {
    auto line = [](const char* name, std::uint64_t n) {
        std::printf("  %-40s %10llu\n", name, static_cast<unsigned long long>(n));
    };
    std::printf("\npackets by class\n");
    for (int i = 0; i < static_cast<int>(PacketClass::Count); ++i)
        line(to_string(static_cast<PacketClass>(i)), counts_.by_class[i]);
    line("total", counts_.frames);
    std::printf("\nsip messages by kind\n");
    for (const auto& [kind, n] : counts_.sip_kinds)
        line(kind.c_str(), n);
    line("total", counts_.sip_messages);
    std::printf("\n");
    line("sip dialogs (call-ids)", counts_.call_ids.size());
    line("media endpoints announced by sdp", counts_.media_endpoints);
    line("datagrams reassembled from fragments", counts_.reassembled);
    line("tcp segments out of order (not used)", counts_.tcp_out_of_order);
    std::printf("\nerrors by reason\n");
    print_reasons<PacketError>("l2-l4", counts_.packet_errors);
    print_reasons<SipError>("sip", counts_.sip_errors);
    print_reasons<SdpError>("sdp", counts_.sdp_errors);
}

}  // namespace tapwire
