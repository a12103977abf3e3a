#include "tools/traffic/call_flow.hpp"
#include "tools/traffic/rng.hpp"

#include <algorithm>
#include <array>
#include <iterator>
#include <stdexcept>

namespace tapwire::traffic {

namespace {

constexpr std::uint64_t kUs = 1000;
constexpr std::uint64_t kMs = 1000 * kUs;
constexpr std::uint64_t kPtimeNs = 20 * kMs;
constexpr std::uint8_t kDscpSignalling = 24;  // CS3, what most SIP equipment marks
constexpr std::uint8_t kDscpMedia = 46;       // EF, RFC 3246
constexpr std::uint8_t kDtmfPayloadType = 101;
constexpr std::uint64_t kNtpUnixOffset = 2208988800ull;  // 1900-01-01 to 1970-01-01, seconds

// splitmix64: tiny, fast, and the same sequence on every platform (std distributions are
// not), which is what makes captures reproducible.
std::uint64_t mix_seed(std::uint64_t seed, std::uint64_t salt) {
    Rng r(seed ^ (salt * 0xd1b54a32d192ed03ull));
    return r.next();
}

std::uint64_t us(std::uint64_t n) {
    return n * kUs;
}
std::uint64_t ms(std::uint64_t n) {
    return n * kMs;
}

// ---------------------------------------------------------------------------------------
// Text helpers

std::string ip_text(const IpAddress& ip) {
    return ip.to_string();
}

// Host as it appears in a SIP URI or Via: IPv6 in brackets (RFC 3261 section 25.1).
std::string sip_host(const IpAddress& ip) {
    return ip.is_v6() ? "[" + ip.to_string() + "]" : ip.to_string();
}

std::string sip_hostport(const IpAddress& ip, std::uint16_t port) {
    return sip_host(ip) + ":" + std::to_string(port);
}

// "sip:alice@tapwire.test;user=phone" -> "alice"; "tel:+4930555010" -> "+4930555010".
std::string uri_user(std::string_view uri) {
    std::size_t colon = uri.find(':');
    std::string_view rest = colon == std::string_view::npos ? uri : uri.substr(colon + 1);
    std::size_t end = rest.find_first_of("@;>?");
    if (end != std::string_view::npos && rest[end] != '@') {
        return std::string(rest.substr(0, end));  // tel: URI or user-less SIP URI
    }
    return std::string(end == std::string_view::npos ? rest : rest.substr(0, end));
}

// Host part of a SIP URI, empty for tel: URIs.
std::string uri_host(std::string_view uri) {
    std::size_t at = uri.find('@');
    if (at == std::string_view::npos) return {};
    std::string_view rest = uri.substr(at + 1);
    return std::string(rest.substr(0, rest.find_first_of(";>?:")));
}

std::string name_addr(const std::string& display, const std::string& uri) {
    if (display.empty()) return "<" + uri + ">";
    return "\"" + display + "\" <" + uri + ">";
}

std::string branch(Rng& rng) {
    return "z9hG4bK" + rng.hex(16);
}

// ---------------------------------------------------------------------------------------
// Frame emission

class Emitter {
  public:
    Emitter(std::vector<LabeledFrame>& out, int call_index, bool targeted, VlanTags vlans,
            std::uint64_t base_ns, Rng& rng)
        : out_(out),
          call_index_(call_index),
          targeted_(targeted),
          vlans_(vlans),
          base_ns_(base_ns),
          rng_(rng) {}

    Rng& rng() { return rng_; }
    std::uint64_t base_ns() const { return base_ns_; }
    VlanTags vlans() const { return vlans_; }

    void add(std::uint64_t t, std::vector<std::uint8_t> bytes, FrameKind kind,
             std::uint8_t sip_messages, std::string note) {
        LabeledFrame& f = out_.emplace_back();
        f.time_ns = base_ns_ + t;
        f.bytes = std::move(bytes);
        f.call_index = call_index_;
        f.kind = kind;
        f.targeted = targeted_;
        f.sip_messages = sip_messages;
        f.note = std::move(note);
    }

    IpSpec ip(const IpAddress& src, const IpAddress& dst, std::uint8_t dscp) {
        IpSpec s;
        s.src = src;
        s.dst = dst;
        s.dscp = dscp;
        s.ttl = 64;
        s.id = next_id(src);
        return s;
    }

    L2Spec l2(const IpAddress& src, const IpAddress& dst) const { return l2_for(src, dst, vlans_); }

    // One UDP datagram, fragmented when its IP packet exceeds mtu. The SIP message count
    // goes on the last fragment (where a reassembling receiver completes it).
    void udp(std::uint64_t t, const IpAddress& src, std::uint16_t sport, const IpAddress& dst,
             std::uint16_t dport, ByteSpan payload, FrameKind kind, std::uint8_t dscp,
             std::uint8_t sip_messages, const std::string& note, std::size_t mtu) {
        IpSpec ips = ip(src, dst, dscp);
        auto frames = build_udp_fragments(l2(src, dst), ips, {sport, dport}, payload, mtu);
        if (frames.empty()) throw std::invalid_argument("cannot build UDP frame for " + note);
        std::size_t n = frames.size();
        for (std::size_t i = 0; i < n; ++i) {
            bool last = i + 1 == n;
            std::string what = n == 1 ? note
                                      : note + " (fragment " + std::to_string(i + 1) + "/" +
                                            std::to_string(n) + ")";
            add(t + us(10 * i), std::move(frames[i]), kind, last ? sip_messages : 0, what);
        }
    }

  private:
    std::uint32_t next_id(const IpAddress& src) {
        for (auto& [addr, id] : ids_) {
            if (addr == src) return ++id;
        }
        std::uint32_t first = std::uint32_t(rng_.next());
        ids_.emplace_back(src, first);
        return first;
    }

    std::vector<LabeledFrame>& out_;
    int call_index_;
    bool targeted_;
    VlanTags vlans_;
    std::uint64_t base_ns_;
    Rng& rng_;
    std::vector<std::pair<IpAddress, std::uint32_t>> ids_;
};

// A TCP connection: handshake, data as MSS-sized segments, a pure ACK from the receiver
// after each burst, FIN exchange. Side 0 is the client.
class TcpConnection {
  public:
    TcpConnection(Emitter& em, FrameKind kind, std::uint8_t dscp, IpAddress client,
                  std::uint16_t client_port, IpAddress server, std::uint16_t server_port,
                  std::uint16_t mtu)
        : em_(em), kind_(kind), dscp_(dscp) {
        ip_[0] = client;
        ip_[1] = server;
        port_[0] = client_port;
        port_[1] = server_port;
        std::size_t ip_hdr = client.is_v4() ? 20 : 40;
        mss_ = std::uint16_t(mtu - ip_hdr - 20);
        next_[0] = std::uint32_t(em.rng().next());
        next_[1] = std::uint32_t(em.rng().next());
    }

    std::uint16_t mss() const { return mss_; }

    // RFC 9293 section 3.5: SYN, SYN-ACK, ACK; each SYN consumes one sequence number.
    std::uint64_t open(std::uint64_t t) {
        segment(t, 0, TcpFlags::kSyn, {}, 0, "TCP SYN", true);
        ++next_[0];
        segment(t + us(300), 1, TcpFlags::kSyn | TcpFlags::kAck, {}, 0, "TCP SYN-ACK", true);
        ++next_[1];
        segment(t + us(600), 0, TcpFlags::kAck, {}, 0, "TCP ACK");
        return t + us(600);
    }

    struct Piece {
        std::string bytes;
        std::string note;
        bool is_message = true;  // counts toward sip_messages
    };

    // Sends pieces back to back as one byte stream from `side`. first_cut > 0 ends the
    // first segment there (one message split across two segments); pieces that fit share
    // a segment (two messages in one segment). Returns the time of the receiver's ACK.
    std::uint64_t send(std::uint64_t t, int side, const std::vector<Piece>& pieces,
                       std::size_t first_cut = 0) {
        std::string stream;
        std::vector<std::size_t> ends;  // stream offset just past each piece
        for (const Piece& p : pieces) {
            stream += p.bytes;
            ends.push_back(stream.size());
        }
        std::size_t pos = 0;
        std::uint64_t when = t;
        int segment_no = 0;
        while (pos < stream.size()) {
            std::size_t len = std::min<std::size_t>(mss_, stream.size() - pos);
            if (segment_no == 0 && first_cut > 0 && first_cut < len) len = first_cut;
            std::size_t end = pos + len;
            std::uint8_t completed = 0;
            std::string note;
            for (std::size_t i = 0; i < pieces.size(); ++i) {
                std::size_t start = i == 0 ? 0 : ends[i - 1];
                if (ends[i] > pos && ends[i] <= end) {
                    if (pieces[i].is_message) ++completed;
                    if (!note.empty()) note += " + ";
                    note += pieces[i].note;
                    if (start < pos) note += " (last segment)";
                } else if (start < end && ends[i] > end) {
                    if (!note.empty()) note += " + ";
                    note += pieces[i].note + " (segment)";
                }
            }
            segment(when, side, TcpFlags::kPsh | TcpFlags::kAck,
                    as_bytes(std::string_view(stream).substr(pos, len)), completed, note);
            next_[side] += std::uint32_t(len);
            pos = end;
            when += us(40);
            ++segment_no;
        }
        // Delayed ACK disabled on these servers: the receiver acknowledges the burst.
        segment(when + us(110), 1 - side, TcpFlags::kAck, {}, 0, "TCP ACK");
        return when + us(110);
    }

    // FIN from `side`, FIN from the peer, final ACK (RFC 9293 section 3.6).
    void close(std::uint64_t t, int side) {
        segment(t, side, TcpFlags::kFin | TcpFlags::kAck, {}, 0, "TCP FIN");
        ++next_[side];
        segment(t + us(300), 1 - side, TcpFlags::kFin | TcpFlags::kAck, {}, 0, "TCP FIN");
        ++next_[1 - side];
        segment(t + us(600), side, TcpFlags::kAck, {}, 0, "TCP ACK");
    }

  private:
    void segment(std::uint64_t t, int side, std::uint8_t flags, ByteSpan payload,
                 std::uint8_t messages, std::string note, bool syn_options = false) {
        TcpSpec spec;
        spec.src_port = port_[side];
        spec.dst_port = port_[1 - side];
        spec.seq = next_[side];
        bool syn_only = flags == TcpFlags::kSyn;
        spec.ack = syn_only ? 0 : next_[1 - side];
        spec.flags = flags;
        spec.mss_option = syn_options ? mss_ : 0;
        std::vector<std::uint8_t> bytes;
        IpSpec ips = em_.ip(ip_[side], ip_[1 - side], dscp_);
        if (!build_tcp_frame(bytes, em_.l2(ip_[side], ip_[1 - side]), ips, spec, payload)) {
            throw std::invalid_argument("cannot build TCP frame for " + note);
        }
        em_.add(t, std::move(bytes), kind_, messages, std::move(note));
    }

    Emitter& em_;
    FrameKind kind_;
    std::uint8_t dscp_;
    std::array<IpAddress, 2> ip_;
    std::array<std::uint16_t, 2> port_{};
    std::array<std::uint32_t, 2> next_{};
    std::uint16_t mss_ = 1460;
};

// ---------------------------------------------------------------------------------------
// SIP messages

struct SipMessage {
    std::string start_line;
    std::vector<std::string> headers;  // "Name: value", in order
    std::string content_type;
    std::string body;
    std::string note;

    void add(std::string_view name, std::string_view value) {
        std::string h(name);
        h += ": ";
        h += value;
        headers.push_back(std::move(h));
    }

    // Content-Length is the exact body size in bytes (RFC 3261 section 20.14).
    std::string text() const {
        std::string s = start_line + "\r\n";
        for (const std::string& h : headers)
            s += h + "\r\n";
        if (!body.empty()) s += "Content-Type: " + content_type + "\r\n";
        s += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n";
        s += body;
        return s;
    }
};

// The observed signalling hop between the caller's proxy (side 0) and the callee's proxy
// (side 1), over UDP or one TCP connection.
class SipHop {
  public:
    SipHop(Emitter& em, const CallSpec& spec) : em_(em), spec_(spec) {
        ip_[0] = spec.caller_proxy;
        ip_[1] = spec.callee_proxy;
        if (spec.transport == SipTransport::Tcp) {
            auto client_port = std::uint16_t(32768 + em.rng().below(28000));
            tcp_.emplace(em, FrameKind::Sip, kDscpSignalling, ip_[0], client_port, ip_[1],
                         spec.sip_port, spec.mtu);
        }
    }

    bool is_tcp() const { return tcp_.has_value(); }
    std::uint64_t open(std::uint64_t t) { return tcp_ ? tcp_->open(t) + us(400) : t; }
    void close(std::uint64_t t) {
        if (tcp_) tcp_->close(t, 0);
    }

    // Sends messages from `side`; over TCP they share segments when they fit.
    void send(std::uint64_t t, int side, const std::vector<SipMessage>& msgs, bool split = false) {
        if (tcp_) {
            std::vector<TcpConnection::Piece> pieces;
            for (const SipMessage& m : msgs)
                pieces.push_back({m.text(), m.note, true});
            std::size_t cut = split ? pieces.front().bytes.size() * 2 / 5 : 0;
            tcp_->send(t, side, pieces, cut);
            return;
        }
        for (std::size_t i = 0; i < msgs.size(); ++i) {
            std::string text = msgs[i].text();
            em_.udp(t + us(50 * i), ip_[side], spec_.sip_port, ip_[1 - side], spec_.sip_port,
                    as_bytes(text), FrameKind::Sip, kDscpSignalling, 1, msgs[i].note, spec_.mtu);
        }
    }

  private:
    Emitter& em_;
    const CallSpec& spec_;
    std::array<IpAddress, 2> ip_;
    std::optional<TcpConnection> tcp_;
};

// Dialog state shared by every message of one Call-ID.
struct Dialog {
    std::string transport;                // "UDP" or "TCP" on the observed hop
    std::array<std::string, 2> proxy;     // Via sent-by of each proxy
    std::array<std::string, 2> proxy_rr;  // Record-Route / Route URI of each proxy
    std::array<std::string, 2> ua;        // Via sent-by of each UA
    std::array<std::string, 2> party;     // From/To name-addr of caller, callee (no tag)
    std::array<std::string, 2> tag;       // from-tag, to-tag
    std::array<std::string, 2> contact;   // Contact URI of caller, callee
    std::array<std::uint32_t, 2> cseq{};  // next local CSeq of caller, callee
    std::string call_id;
    std::string request_uri;
};

// A client transaction's identity, kept so responses can echo it (RFC 3261 section 8.2.6).
struct Transaction {
    int side = 0;  // who sent the request
    std::string method;
    std::uint32_t cseq = 0;
    std::vector<std::string> vias;
    std::string from;  // with tag
    std::string to;    // as sent (tag only in-dialog)
};

// A request from `side`, relayed by that side's proxy: the UA's Via below the proxy's.
SipMessage make_request(Dialog& d, Rng& rng, int side, const std::string& method,
                        const std::string& ruri, std::uint32_t cseq, bool in_dialog,
                        Transaction& txn) {
    SipMessage m;
    m.start_line = method + " " + ruri + " SIP/2.0";
    m.note = method;
    txn.side = side;
    txn.method = method;
    txn.cseq = cseq;
    txn.vias = {"SIP/2.0/" + d.transport + " " + d.proxy[side] + ";branch=" + branch(rng),
                "SIP/2.0/UDP " + d.ua[side] + ";rport;branch=" + branch(rng)};
    txn.from = d.party[side] + ";tag=" + d.tag[side];
    txn.to = d.party[1 - side];
    if (in_dialog) txn.to += ";tag=" + d.tag[1 - side];
    for (const std::string& v : txn.vias)
        m.add("Via", v);
    m.add("Max-Forwards", "69");
    if (in_dialog) m.add("Route", "<" + d.proxy_rr[1 - side] + ">");
    m.add("From", txn.from);
    m.add("To", txn.to);
    m.add("Call-ID", d.call_id);
    m.add("CSeq", std::to_string(cseq) + " " + method);
    return m;
}

// A response echoing the transaction's Via, From, To (with the to-tag when to_tag),
// Call-ID and CSeq.
SipMessage make_response(const Dialog& d, const Transaction& txn, int code, const char* reason,
                         bool to_tag) {
    SipMessage m;
    m.start_line = "SIP/2.0 " + std::to_string(code) + " " + reason;
    m.note = std::to_string(code) + " " + reason + " (" + txn.method + ")";
    for (const std::string& v : txn.vias)
        m.add("Via", v);
    m.add("From", txn.from);
    std::string to = txn.to;
    if (to_tag && to.find(";tag=") == std::string::npos) to += ";tag=" + d.tag[1 - txn.side];
    m.add("To", to);
    m.add("Call-ID", d.call_id);
    m.add("CSeq", std::to_string(txn.cseq) + " " + txn.method);
    return m;
}

// A request on the INVITE's branch with only the proxy's Via: CANCEL (RFC 3261 section
// 9.1) and the ACK of a non-2xx final response (section 17.1.1.3), sent hop by hop.
SipMessage same_branch_request(const Dialog& d, const Transaction& invite, const char* method,
                               bool to_tag) {
    SipMessage m;
    m.start_line = std::string(method) + " " + d.request_uri + " SIP/2.0";
    m.note = method;
    m.add("Via", invite.vias[0]);
    m.add("Max-Forwards", "70");
    m.add("From", invite.from);
    m.add("To", to_tag ? invite.to + ";tag=" + d.tag[1] : invite.to);
    m.add("Call-ID", d.call_id);
    m.add("CSeq", std::to_string(invite.cseq) + " " + method);
    return m;
}

// ---------------------------------------------------------------------------------------
// SDP (RFC 4566, offer/answer RFC 3264)

struct ExtraCodec {
    std::uint8_t pt;
    const char* rtpmap;
    const char* fmtp;
};

// What a large IMS-style offer lists besides the call's codec.
constexpr ExtraCodec kExtraCodecs[] = {
    {8, "PCMA/8000", nullptr},
    {9, "G722/8000", nullptr},
    {18, "G729/8000", "annexb=no"},
    {3, "GSM/8000", nullptr},
    {96, "AMR-WB/16000", "mode-set=0,1,2;mode-change-capability=2;max-red=0"},
    {97, "AMR/8000", "mode-set=0,2,4,7;mode-change-period=2;max-red=0"},
    {98, "iLBC/8000", "mode=30"},
    {99, "EVS/16000", "br=5.9-24.4;bw=nb-swb;max-red=0"},
    {0, "PCMU/8000", nullptr},
    {111, "opus/48000/2", "useinbandfec=1;maxplaybackrate=16000"},
};

std::string rtpmap_of(const CodecInfo& c) {
    std::string s = std::string(c.encoding) + "/" + std::to_string(c.clock_rate);
    if (c.channels != 0) s += "/" + std::to_string(c.channels);
    return s;
}

std::string make_sdp(std::uint64_t session_id, std::uint32_t version, const IpAddress& ip,
                     std::uint16_t port, const CodecInfo& codec, bool large_offer,
                     std::size_t candidates) {
    std::string family = ip.is_v4() ? "IP4" : "IP6";
    std::string addr = ip_text(ip);
    std::string s;
    s += "v=0\r\n";
    s += "o=tapwire " + std::to_string(session_id) + " " + std::to_string(version) + " IN " +
         family + " " + addr + "\r\n";
    s += "s=tapwire-callgen\r\n";
    s += "c=IN " + family + " " + addr + "\r\n";
    s += "t=0 0\r\n";
    std::string fmts = std::to_string(codec.payload_type);
    if (large_offer) {
        for (const ExtraCodec& e : kExtraCodecs) {
            if (e.pt != codec.payload_type) fmts += " " + std::to_string(e.pt);
        }
    }
    fmts += " " + std::to_string(kDtmfPayloadType);
    s += "m=audio " + std::to_string(port) + " RTP/AVP " + fmts + "\r\n";
    s += "a=rtpmap:" + std::to_string(codec.payload_type) + " " + rtpmap_of(codec) + "\r\n";
    if (codec.fmtp != nullptr) {
        s += "a=fmtp:" + std::to_string(codec.payload_type) + " " + codec.fmtp + "\r\n";
    }
    if (large_offer) {
        for (const ExtraCodec& e : kExtraCodecs) {
            if (e.pt == codec.payload_type) continue;
            s += "a=rtpmap:" + std::to_string(e.pt) + " " + e.rtpmap + "\r\n";
            if (e.fmtp != nullptr) s += "a=fmtp:" + std::to_string(e.pt) + " " + e.fmtp + "\r\n";
        }
    }
    s += "a=rtpmap:" + std::to_string(kDtmfPayloadType) + " telephone-event/8000\r\n";
    s += "a=fmtp:" + std::to_string(kDtmfPayloadType) + " 0-16\r\n";
    s += "a=ptime:20\r\n";
    s += "a=maxptime:40\r\n";
    // ICE host candidates (RFC 8839) for the same address: bulk that real offers carry.
    for (std::size_t i = 0; i < candidates; ++i) {
        std::uint16_t cport = std::uint16_t(port + (i % 2));
        s += "a=candidate:" + std::to_string(i / 2 + 1) + " " + std::to_string(i % 2 + 1) +
             " UDP " + std::to_string(2130706431 - i) + " " + addr + " " + std::to_string(cport) +
             " typ host generation 0\r\n";
    }
    s += "a=sendrecv\r\n";
    return s;
}

// ---------------------------------------------------------------------------------------
// RTP / RTCP (RFC 3550)

// G.711 mu-law encoding of one 16-bit sample (ITU-T G.711, the classic Sun reference).
std::uint8_t linear_to_ulaw(int sample) {
    constexpr int kBias = 0x84;
    constexpr int kClip = 32635;
    int sign = 0;
    if (sample < 0) {
        sign = 0x80;
        sample = -sample;
    }
    if (sample > kClip) sample = kClip;
    sample += kBias;
    int exponent = 7;
    for (int mask = 0x4000; (sample & mask) == 0 && exponent > 0; mask >>= 1)
        --exponent;
    int mantissa = (sample >> (exponent + 3)) & 0x0f;
    return std::uint8_t(~(sign | (exponent << 4) | mantissa));
}

struct MediaLeg {
    IpAddress src_ip;
    IpAddress dst_ip;
    std::uint16_t src_port = 0;
    std::uint16_t dst_port = 0;
    std::uint32_t ssrc = 0;
    std::uint16_t first_seq = 0;
    std::uint32_t first_ts = 0;
    std::vector<std::uint64_t> times;     // send time of each RTP packet
    std::vector<std::uint64_t> sr_times;  // send time of each RTCP SR
    std::string cname;
    std::string label;               // "caller->callee"
    std::uint32_t tone_period = 20;  // samples per period of the PCMU test tone
};

void put_rtp_payload(std::vector<std::uint8_t>& pkt, const CodecInfo& codec, const MediaLeg& leg,
                     std::uint32_t index, Rng& rng) {
    std::size_t n = codec.min_payload;
    if (codec.max_payload > codec.min_payload) {
        n = codec.min_payload + rng.below(codec.max_payload - codec.min_payload + 1u);
    }
    if (codec.payload_type == 0) {
        // A triangle tone per direction, so the RTP player in Wireshark plays something.
        for (std::size_t i = 0; i < n; ++i) {
            std::uint32_t phase = std::uint32_t((index * n + i) % leg.tone_period);
            int half = int(leg.tone_period / 2);
            int tri = (phase < std::uint32_t(half)) ? int(phase) : int(leg.tone_period - phase);
            int sample = (tri * 2 - half) * 8000 / half;
            pkt.push_back(linear_to_ulaw(sample));
        }
        return;
    }
    if (codec.payload_type == 111) {
        // Opus TOC byte (RFC 6716 section 3.1): config 15 (hybrid fullband 20 ms), mono,
        // code 0 (one frame filling the packet), so dissectors see a well-formed packet.
        pkt.push_back(0x78);
        --n;
    }
    for (std::size_t i = 0; i < n; ++i)
        pkt.push_back(std::uint8_t(rng.next()));
}

std::uint64_t ntp_timestamp(std::uint64_t unix_ns) {
    std::uint64_t sec = unix_ns / 1000000000u + kNtpUnixOffset;
    std::uint64_t frac = ((unix_ns % 1000000000u) << 32) / 1000000000u;
    return (sec << 32) | frac;
}

// ---------------------------------------------------------------------------------------
// Rendering one dialog

class CallRenderer {
  public:
    CallRenderer(const CallSpec& spec, int call_index, std::uint64_t epoch_ns, std::uint64_t seed,
                 std::vector<LabeledFrame>& out)
        : spec_(spec),
          rng_(seed),
          em_(out, call_index, spec.targeted, spec.vlans, epoch_ns, rng_),
          hop_(em_, spec),
          codec_(codec_info(spec.codec)) {
        d_.transport = spec.transport == SipTransport::Tcp ? "TCP" : "UDP";
        std::string rr_param = spec.transport == SipTransport::Tcp ? ";transport=tcp" : "";
        const IpAddress proxies[2] = {spec.caller_proxy, spec.callee_proxy};
        const Party* parties[2] = {&spec.caller, &spec.callee};
        for (int s = 0; s < 2; ++s) {
            d_.proxy[s] = sip_hostport(proxies[s], spec.sip_port);
            d_.proxy_rr[s] = "sip:" + sip_host(proxies[s]) + rr_param + ";lr";
            const Party& p = *parties[s];
            IpAddress ua = p.media_ip.empty() ? proxies[s] : p.media_ip;
            d_.ua[s] = sip_hostport(ua, 5060);
            d_.party[s] = name_addr(p.display_name, p.uri);
            d_.tag[s] = rng_.hex(10);
            std::string user = uri_user(p.uri);
            d_.contact[s] = "sip:" + (user.empty() ? "" : user + "@") + d_.ua[s];
            d_.cseq[s] = s == 0 ? 1 : 100 + rng_.below(900);
        }
        d_.call_id = rng_.hex(24) + "@" + sip_host(spec.caller_proxy);
        d_.request_uri = spec.request_uri.empty() ? spec.callee.uri : spec.request_uri;
    }

    void render() {
        switch (spec_.kind) {
            case SessionKind::Call:
                render_call();
                break;
            case SessionKind::Register:
                render_register();
                break;
            case SessionKind::Message:
                render_message();
                break;
        }
    }

  private:
    void render_call();
    void render_register();
    void render_message();
    void render_media(std::uint64_t caller_start, std::uint64_t callee_start,
                      std::uint64_t switch_time);
    void emit_rtcp(const MediaLeg& leg, const MediaLeg& other, std::uint64_t t, std::uint32_t sent,
                   std::uint32_t octets, std::uint32_t last_ts);

    void add_identity_headers(SipMessage& m) {
        if (!spec_.p_asserted_identity.empty()) {
            m.add("P-Asserted-Identity", spec_.p_asserted_identity);
        }
        if (!spec_.diversion.empty()) m.add("Diversion", spec_.diversion);
        for (const std::string& h : spec_.history_info)
            m.add("History-Info", h);
        for (const auto& [name, value] : spec_.extra_headers)
            m.add(name, value);
    }

    // Pads a large INVITE with IMS headers and ICE candidates until its datagram exceeds
    // the MTU by a margin, as multi-codec IMS offers do in the wild.
    std::size_t candidates_for_large_invite(const SipMessage& without_padding) const {
        std::size_t want = spec_.mtu + 400;
        std::size_t have = without_padding.text().size() + 28;
        std::size_t per_candidate = 75;
        return have >= want ? 2 : (want - have) / per_candidate + 2;
    }

    const CallSpec& spec_;
    Rng rng_;
    Emitter em_;
    SipHop hop_;
    const CodecInfo& codec_;
    Dialog d_;
    std::uint64_t caller_session_ = 0;
    std::uint64_t callee_session_ = 0;
};

void CallRenderer::render_call() {
    std::uint64_t t = hop_.open(spec_.start_ns);
    caller_session_ = 1000000000ull + rng_.below(1000000000u);
    callee_session_ = 1000000000ull + rng_.below(1000000000u);

    // INVITE with the caller's offer.
    Transaction invite;
    SipMessage inv =
        make_request(d_, rng_, 0, "INVITE", d_.request_uri, d_.cseq[0]++, false, invite);
    inv.add("Record-Route", "<" + d_.proxy_rr[0] + ">");
    inv.add("Contact", "<" + d_.contact[0] + ">");
    add_identity_headers(inv);
    inv.add("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO, MESSAGE, NOTIFY");
    inv.add("Supported", "timer, replaces, 100rel");
    inv.add("User-Agent", "tapwire-callgen/1.0");
    inv.content_type = "application/sdp";
    if (spec_.large_invite) {
        inv.add("P-Charging-Vector", "icid-value=" + rng_.hex(32) + ";icid-generated-at=" +
                                         sip_host(spec_.caller_proxy) + ";orig-ioi=carrier-a.test");
        inv.add("P-Access-Network-Info", "3GPP-E-UTRAN-FDD;utran-cell-id-3gpp=262011234" +
                                             rng_.hex(12) + ";network-provided");
        inv.add("P-Visited-Network-ID", "\"ims.mnc001.mcc262.3gppnetwork.org\"");
        inv.add(
            "Accept-Contact",
            "*;+g.3gpp.icsi-ref=\"urn%3Aurn-7%3A3gpp-service.ims.icsi.mmtel\";explicit;require");
        inv.add("P-Early-Media", "supported");
        SipMessage probe = inv;
        probe.body = make_sdp(caller_session_, 1, spec_.caller.media_ip, spec_.caller.rtp_port,
                              codec_, true, 0);
        inv.body = make_sdp(caller_session_, 1, spec_.caller.media_ip, spec_.caller.rtp_port,
                            codec_, true, candidates_for_large_invite(probe));
    } else {
        inv.body = make_sdp(caller_session_, 1, spec_.caller.media_ip, spec_.caller.rtp_port,
                            codec_, false, 0);
    }
    hop_.send(t, 0, {inv}, spec_.tcp_split_invite && hop_.is_tcp());

    // 100 Trying (hop-by-hop, no to-tag), then 180 Ringing with the to-tag and both
    // Record-Routes (the callee's proxy added its own on top).
    t += ms(rng_.between(3, 8));
    SipMessage trying = make_response(d_, invite, 100, "Trying", false);
    auto dialog_response = [&](int code, const char* reason) {
        SipMessage r = make_response(d_, invite, code, reason, true);
        r.add("Record-Route", "<" + d_.proxy_rr[1] + ">");
        r.add("Record-Route", "<" + d_.proxy_rr[0] + ">");
        r.add("Contact", "<" + d_.contact[1] + ">");
        return r;
    };
    if (spec_.ending == CallEnding::Busy) {
        hop_.send(t, 1, {trying});
        t += ms(rng_.between(150, 400));
        SipMessage busy = make_response(d_, invite, 486, "Busy Here", true);
        hop_.send(t, 1, {busy});
        // ACK for a non-2xx final response: same branch as the INVITE, hop by hop
        // (RFC 3261 section 17.1.1.3), so only the proxy's Via.
        t += ms(2);
        hop_.send(t, 0, {same_branch_request(d_, invite, "ACK", true)});
        hop_.close(t + ms(200));
        return;
    }
    SipMessage ringing = dialog_response(180, "Ringing");
    if (spec_.tcp_coalesce_provisional && hop_.is_tcp()) {
        hop_.send(t, 1, {trying, ringing});
    } else {
        hop_.send(t, 1, {trying});
        t += ms(rng_.between(40, 120));
        hop_.send(t, 1, {ringing});
    }
    t += ms(spec_.ringing_ms);

    if (spec_.ending == CallEnding::Cancel) {
        // CANCEL matches the INVITE's branch and has only the proxy's Via (section 9.1).
        hop_.send(t, 0, {same_branch_request(d_, invite, "CANCEL", false)});
        Transaction cancel_txn = invite;
        cancel_txn.method = "CANCEL";
        cancel_txn.vias = {invite.vias[0]};
        t += ms(3);
        hop_.send(t, 1, {make_response(d_, cancel_txn, 200, "OK", true)});
        t += ms(2);
        hop_.send(t, 1, {make_response(d_, invite, 487, "Request Terminated", true)});
        t += ms(2);
        hop_.send(t, 0, {same_branch_request(d_, invite, "ACK", true)});
        hop_.close(t + ms(200));
        return;
    }

    // 200 OK with the answer, then the ACK as a new transaction to the callee's Contact.
    SipMessage ok = dialog_response(200, "OK");
    ok.add("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO, MESSAGE, NOTIFY");
    ok.add("Supported", "timer, replaces");
    ok.content_type = "application/sdp";
    ok.body = make_sdp(callee_session_, 1, spec_.callee.media_ip, spec_.callee.rtp_port, codec_,
                       false, 0);
    hop_.send(t, 1, {ok});
    std::uint64_t t_answer = t;
    t += ms(rng_.between(5, 15));
    Transaction ack_txn;
    SipMessage ack = make_request(d_, rng_, 0, "ACK", d_.contact[1], invite.cseq, true, ack_txn);
    hop_.send(t, 0, {ack});
    std::uint64_t t_ack = t;

    // Media timing: the callee sends once its 200 OK is out, the caller once its ACK is.
    std::uint32_t packets =
        spec_.rtp_packets != 0 ? spec_.rtp_packets : std::max(1u, spec_.duration_ms / 20);
    std::uint64_t callee_start = t_answer + ms(2);
    std::uint64_t caller_start = t_ack + ms(2);
    std::uint64_t media_end = std::max(caller_start, callee_start) + (packets - 1) * kPtimeNs;

    std::uint64_t switch_time = ~0ull;
    if (spec_.reinvite) {
        std::uint32_t after = std::min(spec_.reinvite->after_packets, packets);
        std::uint64_t tr = std::max(caller_start, callee_start) + after * kPtimeNs - ms(15);
        tr = std::max(tr, t_ack + ms(5));
        Transaction re_txn;
        SipMessage re =
            make_request(d_, rng_, 0, "INVITE", d_.contact[1], d_.cseq[0]++, true, re_txn);
        re.note = "re-INVITE";
        re.add("Contact", "<" + d_.contact[0] + ">");
        re.add("User-Agent", "tapwire-callgen/1.0");
        re.content_type = "application/sdp";
        re.body = make_sdp(caller_session_, 2, spec_.reinvite->new_ip, spec_.reinvite->new_port,
                           codec_, false, 0);
        hop_.send(tr, 0, {re});
        SipMessage re_ok = make_response(d_, re_txn, 200, "OK", true);
        re_ok.add("Contact", "<" + d_.contact[1] + ">");
        re_ok.content_type = "application/sdp";
        // The answer is unchanged, so its o= version stays (RFC 3264 section 8).
        re_ok.body = make_sdp(callee_session_, 1, spec_.callee.media_ip, spec_.callee.rtp_port,
                              codec_, false, 0);
        hop_.send(tr + ms(12), 1, {re_ok});
        switch_time = tr + ms(12);
        Transaction re_ack_txn;
        SipMessage re_ack =
            make_request(d_, rng_, 0, "ACK", d_.contact[1], re_txn.cseq, true, re_ack_txn);
        hop_.send(tr + ms(16), 0, {re_ack});
    }

    render_media(caller_start, callee_start, switch_time);

    if (spec_.ending == CallEnding::Abandoned) {
        hop_.close(media_end + ms(200));
        return;
    }
    // BYE from either side after the last media packet, then its 200 OK.
    t = media_end + ms(25);
    int bye_side = spec_.ending == CallEnding::CalleeBye ? 1 : 0;
    Transaction bye_txn;
    SipMessage bye = make_request(d_, rng_, bye_side, "BYE", d_.contact[1 - bye_side],
                                  d_.cseq[bye_side]++, true, bye_txn);
    bye.add("Reason", "Q.850;cause=16;text=\"Normal call clearing\"");
    hop_.send(t, bye_side, {bye});
    t += ms(rng_.between(8, 20));
    hop_.send(t, 1 - bye_side, {make_response(d_, bye_txn, 200, "OK", true)});
    hop_.close(t + ms(200));
}

void CallRenderer::render_media(std::uint64_t caller_start, std::uint64_t callee_start,
                                std::uint64_t switch_time) {
    std::uint32_t packets =
        spec_.rtp_packets != 0 ? spec_.rtp_packets : std::max(1u, spec_.duration_ms / 20);
    std::uint32_t rtcp_every = spec_.rtcp_every_packets != 0 ? spec_.rtcp_every_packets : 250;

    std::array<MediaLeg, 2> legs;
    const Party* from[2] = {&spec_.caller, &spec_.callee};
    std::uint64_t starts[2] = {caller_start, callee_start};
    for (int s = 0; s < 2; ++s) {
        MediaLeg& leg = legs[s];
        leg.src_ip = from[s]->media_ip;
        leg.src_port = from[s]->rtp_port;
        leg.dst_ip = from[1 - s]->media_ip;
        leg.dst_port = from[1 - s]->rtp_port;
        leg.ssrc = std::uint32_t(rng_.next());
        leg.first_seq = std::uint16_t(rng_.next());
        leg.first_ts = std::uint32_t(rng_.next());
        leg.cname = uri_user(from[s]->uri) + "@" + sip_host(from[s]->media_ip);
        leg.label = s == 0 ? "caller->callee" : "callee->caller";
        leg.tone_period = s == 0 ? 20 : 16;  // 400 Hz and 500 Hz at 8 kHz
        // Sender jitter under 1 ms keeps packets in order.
        for (std::uint32_t i = 0; i < packets; ++i) {
            leg.times.push_back(starts[s] + i * kPtimeNs + us(rng_.below(900)));
        }
        for (std::uint32_t i = rtcp_every - 1; i < packets; i += rtcp_every) {
            leg.sr_times.push_back(leg.times[i] + ms(1));
        }
    }

    for (int s = 0; s < 2; ++s) {
        MediaLeg& leg = legs[s];
        std::uint32_t octets = 0;
        std::size_t next_sr = 0;
        for (std::uint32_t i = 0; i < packets; ++i) {
            std::uint64_t t = leg.times[i];
            if (spec_.reinvite && t > switch_time) {
                // The re-INVITE moved the caller's media: the caller sends from, and the
                // callee sends to, the new address.
                if (s == 0) {
                    leg.src_ip = spec_.reinvite->new_ip;
                    leg.src_port = spec_.reinvite->new_port;
                } else {
                    leg.dst_ip = spec_.reinvite->new_ip;
                    leg.dst_port = spec_.reinvite->new_port;
                }
            }
            std::uint32_t ts = leg.first_ts + i * codec_.timestamp_step;
            std::vector<std::uint8_t> pkt(12);
            pkt[0] = 0x80;  // V=2, no padding, no extension, no CSRC
            // Marker on the first packet of a talkspurt (RFC 3551 section 4.1).
            pkt[1] = std::uint8_t((i == 0 ? 0x80 : 0) | codec_.payload_type);
            store_be16(pkt.data() + 2, std::uint16_t(leg.first_seq + i));
            store_be32(pkt.data() + 4, ts);
            store_be32(pkt.data() + 8, leg.ssrc);
            put_rtp_payload(pkt, codec_, leg, i, rng_);
            octets += std::uint32_t(pkt.size() - 12);
            em_.udp(t, leg.src_ip, leg.src_port, leg.dst_ip, leg.dst_port, ByteSpan(pkt),
                    FrameKind::Rtp, kDscpMedia, 0, "RTP " + leg.label, 65535);
            if (next_sr < leg.sr_times.size() && (i + 1) % rtcp_every == 0) {
                emit_rtcp(leg, legs[1 - s], leg.sr_times[next_sr], i + 1, octets, ts);
                ++next_sr;
            }
        }
    }
}

// Compound RTCP packet: SR with one report block about the other direction, then SDES
// CNAME (RFC 3550 sections 6.1, 6.4.1, 6.5).
void CallRenderer::emit_rtcp(const MediaLeg& leg, const MediaLeg& other, std::uint64_t t,
                             std::uint32_t sent, std::uint32_t octets, std::uint32_t last_ts) {
    std::vector<std::uint8_t> p(52);
    p[0] = 0x81;  // V=2, RC=1
    p[1] = 200;
    store_be16(p.data() + 2, 52 / 4 - 1);
    store_be32(p.data() + 4, leg.ssrc);
    // Frame times are relative to the epoch; the NTP timestamp is absolute wall clock.
    store_be64(p.data() + 8, ntp_timestamp(em_.base_ns() + t));
    store_be32(p.data() + 16, last_ts);
    store_be32(p.data() + 20, sent);
    store_be32(p.data() + 24, octets);
    // Report block on what this side has received of the other direction by now.
    std::uint32_t received = 0;
    for (std::uint64_t ot : other.times)
        received += ot < t ? 1 : 0;
    std::uint64_t last_sr = 0;
    for (std::uint64_t st : other.sr_times) {
        if (st < t) last_sr = st;
    }
    std::uint8_t* rb = p.data() + 28;
    store_be32(rb, other.ssrc);
    store_be32(rb + 4, 0);  // fraction lost 0, cumulative lost 0
    store_be32(rb + 8, other.first_seq + (received == 0 ? 0 : received - 1));
    store_be32(rb + 12, 8 + rng_.below(24));  // interarrival jitter, timestamp units
    if (last_sr != 0) {
        store_be32(rb + 16, std::uint32_t(ntp_timestamp(em_.base_ns() + last_sr) >> 16));  // LSR
        store_be32(rb + 20, std::uint32_t((t - last_sr) * 65536 / 1000000000u));           // DLSR
    }
    // SDES chunk: SSRC, CNAME item, then at least one null octet up to a 32-bit boundary.
    std::size_t chunk = 4 + 2 + leg.cname.size() + 1;
    chunk = (chunk + 3) & ~std::size_t(3);
    std::size_t sdes_at = p.size();
    p.resize(sdes_at + 4 + chunk, 0);
    std::uint8_t* sd = p.data() + sdes_at;
    sd[0] = 0x81;  // V=2, SC=1
    sd[1] = 202;
    store_be16(sd + 2, std::uint16_t((4 + chunk) / 4 - 1));
    store_be32(sd + 4, leg.ssrc);
    sd[8] = 1;  // CNAME
    sd[9] = std::uint8_t(leg.cname.size());
    std::copy(leg.cname.begin(), leg.cname.end(), sd + 10);
    em_.udp(t, leg.src_ip, std::uint16_t(leg.src_port + 1), leg.dst_ip,
            std::uint16_t(leg.dst_port + 1), ByteSpan(p), FrameKind::Rtcp, kDscpMedia, 0,
            "RTCP SR " + leg.label, 65535);
}

void CallRenderer::render_register() {
    std::uint64_t t = hop_.open(spec_.start_ns);
    std::string domain = uri_host(spec_.caller.uri);
    if (domain.empty()) domain = sip_host(spec_.callee_proxy);
    std::string ruri = "sip:" + domain;
    // REGISTER's To and From are both the address of record (RFC 3261 section 10.2).
    d_.party[1] = name_addr("", spec_.caller.uri);
    d_.party[0] = name_addr(spec_.caller.display_name, spec_.caller.uri);
    std::string contact = "<" + d_.contact[0] + ">;expires=3600";

    auto make_register = [&](Transaction& txn, const std::string& authorization) {
        SipMessage m = make_request(d_, rng_, 0, "REGISTER", ruri, d_.cseq[0]++, false, txn);
        m.add("Contact", contact);
        if (!authorization.empty()) m.add("Authorization", authorization);
        add_identity_headers(m);
        m.add("Expires", "3600");
        m.add("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, MESSAGE, NOTIFY");
        m.add("User-Agent", "tapwire-callgen/1.0");
        return m;
    };
    Transaction first;
    hop_.send(t, 0, {make_register(first, "")});
    t += ms(rng_.between(3, 10));
    std::string nonce = rng_.hex(32);
    SipMessage challenge = make_response(d_, first, 401, "Unauthorized", true);
    challenge.add("WWW-Authenticate", "Digest realm=\"" + domain + "\", nonce=\"" + nonce +
                                          "\", algorithm=MD5, qop=\"auth\"");
    hop_.send(t, 1, {challenge});

    t += ms(rng_.between(20, 60));
    Transaction second;
    // A real UA's digest response is MD5 over its credentials; any 32 hex digits look the
    // same on the wire (RFC 2617 section 3.2.2).
    std::string authorization = "Digest username=\"" + uri_user(spec_.caller.uri) + "\", realm=\"" +
                                domain + "\", nonce=\"" + nonce + "\", uri=\"" + ruri +
                                "\", response=\"" + rng_.hex(32) + "\", algorithm=MD5, cnonce=\"" +
                                rng_.hex(16) + "\", qop=auth, nc=00000001";
    hop_.send(t, 0, {make_register(second, authorization)});
    t += ms(rng_.between(3, 10));
    SipMessage ok = make_response(d_, second, 200, "OK", true);
    ok.add("Contact", contact);
    ok.add("Date", "Mon, 01 Jan 2024 00:00:00 GMT");
    hop_.send(t, 1, {ok});
    hop_.close(t + ms(200));
}

void CallRenderer::render_message() {
    std::uint64_t t = hop_.open(spec_.start_ns);
    Transaction txn;
    SipMessage m = make_request(d_, rng_, 0, "MESSAGE", d_.request_uri, d_.cseq[0]++, false, txn);
    add_identity_headers(m);
    m.add("User-Agent", "tapwire-callgen/1.0");
    m.content_type = "text/plain;charset=UTF-8";
    m.body = spec_.message_text;
    hop_.send(t, 0, {m});
    t += ms(rng_.between(5, 15));
    hop_.send(t, 1, {make_response(d_, txn, 200, "OK", true)});
    hop_.close(t + ms(200));
}

// ---------------------------------------------------------------------------------------
// Background traffic

void put_dns_name(std::vector<std::uint8_t>& out, std::string_view name) {
    while (!name.empty()) {
        std::size_t dot = name.find('.');
        std::string_view label = name.substr(0, dot);
        out.push_back(std::uint8_t(label.size()));
        out.insert(out.end(), label.begin(), label.end());
        name = dot == std::string_view::npos ? std::string_view() : name.substr(dot + 1);
    }
    out.push_back(0);
}

// DNS query and response (RFC 1035 section 4.1).
void render_dns(const BackgroundSpec& spec, Emitter& em) {
    static constexpr std::string_view kNames[] = {"www.example.com", "cdn.example.net",
                                                  "updates.example.org", "mail.example.com",
                                                  "ntp.example.net"};
    Rng& rng = em.rng();
    std::uint64_t t = spec.start_ns;
    for (std::uint32_t i = 0; i < spec.count; ++i) {
        std::string_view name = kNames[rng.below(std::size(kNames))];
        bool aaaa = (i % 2) == 1;
        auto id = std::uint16_t(rng.next());
        auto sport = std::uint16_t(49152 + rng.below(16000));
        std::vector<std::uint8_t> q(12);
        store_be16(q.data(), id);
        store_be16(q.data() + 2, 0x0100);  // RD
        store_be16(q.data() + 4, 1);
        put_dns_name(q, name);
        std::uint8_t tail[4];
        store_be16(tail, aaaa ? 28 : 1);
        store_be16(tail + 2, 1);  // IN
        q.insert(q.end(), tail, tail + 4);
        em.udp(t, spec.client, sport, spec.server, 53, ByteSpan(q), FrameKind::Background, 0, 0,
               std::string("DNS query ") + std::string(name), 1500);

        std::vector<std::uint8_t> r = q;
        store_be16(r.data() + 2, 0x8180);  // QR, RD, RA, NOERROR
        store_be16(r.data() + 6, 1);       // ANCOUNT
        std::uint8_t answer[12];
        store_be16(answer, 0xc00c);  // pointer to the question name
        store_be16(answer + 2, aaaa ? 28 : 1);
        store_be16(answer + 4, 1);
        store_be32(answer + 6, 300);
        store_be16(answer + 10, aaaa ? 16 : 4);
        r.insert(r.end(), answer, answer + 12);
        if (aaaa) {
            std::uint8_t v6[16] = {0x20, 0x01, 0x0d, 0xb8, 0xee};
            for (int k = 8; k < 16; ++k)
                v6[k] = std::uint8_t(rng.next());
            r.insert(r.end(), v6, v6 + 16);
        } else {
            std::uint8_t v4[4] = {198, 18, std::uint8_t(rng.next()), std::uint8_t(rng.next())};
            r.insert(r.end(), v4, v4 + 4);
        }
        t += ms(rng.between(2, 25));
        em.udp(t, spec.server, 53, spec.client, sport, ByteSpan(r), FrameKind::Background, 0, 0,
               std::string("DNS response ") + std::string(name), 1500);
        t += ms(rng.between(150, 900));
    }
}

// A TLS 1.2 application-data record (RFC 5246 section 6.2) of random bytes.
std::string tls_record(Rng& rng, std::size_t length) {
    std::string s;
    s.push_back(23);
    s.push_back(3);
    s.push_back(3);
    s.push_back(char(length >> 8));
    s.push_back(char(length & 0xff));
    for (std::size_t i = 0; i < length; ++i)
        s.push_back(char(rng.next()));
    return s;
}

void render_https(const BackgroundSpec& spec, Emitter& em) {
    Rng& rng = em.rng();
    auto port = std::uint16_t(49152 + rng.below(16000));
    TcpConnection conn(em, FrameKind::Background, 0, spec.client, port, spec.server, 443, 1500);
    std::uint64_t t = conn.open(spec.start_ns) + ms(1);
    for (std::uint32_t i = 0; i < spec.count; ++i) {
        std::string request = tls_record(rng, 200 + rng.below(400));
        t = conn.send(t, 0, {{request, "TLS request", false}}) + ms(rng.between(10, 40));
        std::string response;
        std::uint32_t records = 1 + rng.below(3);
        for (std::uint32_t k = 0; k < records; ++k)
            response += tls_record(rng, 600 + rng.below(1800));
        t = conn.send(t, 1, {{response, "TLS response", false}}) + ms(rng.between(50, 300));
    }
    conn.close(t, 0);
}

void render_arp(const BackgroundSpec& spec, Emitter& em) {
    Rng& rng = em.rng();
    std::uint64_t t = spec.start_ns;
    MacAddress client_mac = mac_from_ip(spec.client);
    MacAddress server_mac = mac_from_ip(spec.server);
    for (std::uint32_t i = 0; i < spec.count; ++i) {
        std::vector<std::uint8_t> req;
        std::vector<std::uint8_t> rep;
        build_arp_frame(req, ArpOp::Request, client_mac, spec.client, MacAddress{}, spec.server,
                        spec.vlans);
        build_arp_frame(rep, ArpOp::Reply, server_mac, spec.server, client_mac, spec.client,
                        spec.vlans);
        em.add(t, std::move(req), FrameKind::Background, 0, "ARP request");
        em.add(t + us(200 + rng.below(300)), std::move(rep), FrameKind::Background, 0, "ARP reply");
        t += ms(rng.between(500, 2000));
    }
}

// ---------------------------------------------------------------------------------------
// Scenarios

const std::string kTargetNumber = "+4930555010";
const std::string kTargetUri = "sip:alice@tapwire.test";

IpAddress ip(std::string_view text) {
    auto a = IpAddress::parse(text);
    if (!a) throw std::logic_error("bad built-in address " + std::string(text));
    return *a;
}

std::string tel_uri(const std::string& number, const char* domain) {
    return "sip:" + number + "@" + domain + ";user=phone";
}

// Addresses of the built-in scenarios: carrier A's proxy and UAs on the caller side,
// carrier B's on the callee side (documentation and private ranges only).
struct Net {
    IpAddress proxy_a4 = ip("198.51.100.10");
    IpAddress proxy_b4 = ip("203.0.113.20");
    IpAddress proxy_a6 = ip("2001:db8:a::10");
    IpAddress proxy_b6 = ip("2001:db8:b::20");

    static IpAddress caller4(int i) { return IpAddress::v4(0x0a0a0000u + std::uint32_t(i)); }
    static IpAddress callee4(int i) { return IpAddress::v4(0x0a140000u + std::uint32_t(i)); }
    static IpAddress caller6(int i) { return ip("2001:db8:a:1::" + std::to_string(100 + i)); }
    static IpAddress callee6(int i) { return ip("2001:db8:b:1::" + std::to_string(100 + i)); }
};

CallSpec basic_call(const Net& net, int i, std::string caller_number, std::string callee_number) {
    CallSpec c;
    c.caller.uri = tel_uri(caller_number, "carrier-a.test");
    c.caller.media_ip = Net::caller4(i + 1);
    c.caller.rtp_port = std::uint16_t(20000 + 2 * i * 10);
    c.callee.uri = tel_uri(callee_number, "carrier-b.test");
    c.callee.media_ip = Net::callee4(i + 1);
    c.callee.rtp_port = std::uint16_t(30000 + 2 * i * 10);
    c.caller_proxy = net.proxy_a4;
    c.callee_proxy = net.proxy_b4;
    c.rtp_packets = 100;
    c.rtcp_every_packets = 50;
    c.start_ns = std::uint64_t(i) * 400 * kMs;
    return c;
}

Scenario scenario_basic() {
    Net net;
    Scenario s;
    s.name = "basic";
    s.description = "one targeted and one untargeted IPv4 UDP call";
    s.targets = {kTargetNumber};
    CallSpec a = basic_call(net, 0, "+4940111001", kTargetNumber);
    a.caller.display_name = "Bob";
    a.targeted = true;
    CallSpec b = basic_call(net, 1, "+4940111002", "+4989222002");
    b.start_ns = 500 * kMs;
    s.calls = {a, b};
    return s;
}

Scenario scenario_abandoned() {
    Net net;
    Scenario s;
    s.name = "abandoned";
    s.description = "two targeted calls answered, with media, whose BYE is never seen";
    s.targets = {kTargetNumber, kTargetUri};
    CallSpec a = basic_call(net, 0, "+4940111001", kTargetNumber);
    a.ending = CallEnding::Abandoned;
    a.targeted = true;
    CallSpec b = basic_call(net, 1, "", "+4969333003");
    b.caller.uri = kTargetUri;
    b.ending = CallEnding::Abandoned;
    b.targeted = true;
    s.calls = {a, b};
    return s;
}

Scenario scenario_demo() {
    Net net;
    Scenario s;
    s.name = "demo";
    s.description =
        "12 calls (targeted and not; UDP and TCP SIP; IPv6; VLAN and QinQ; fragmented INVITE; "
        "re-INVITE moving media; forwarded call with Diversion; CANCEL; busy), REGISTER and "
        "MESSAGE for targets, DNS/HTTPS/ARP background";
    s.targets = {kTargetNumber, kTargetUri};
    std::vector<CallSpec>& calls = s.calls;

    // 0: targeted by the called number; plain IPv4 UDP, G.711.
    CallSpec c = basic_call(net, 0, "+4940111001", kTargetNumber);
    c.caller.display_name = "Bob Caller";
    c.rtp_packets = 150;
    c.targeted = true;
    calls.push_back(c);

    // 1: untargeted, G.729, the callee hangs up.
    c = basic_call(net, 1, "+4940111002", "+4989222002");
    c.codec = Codec::G729;
    c.ending = CallEnding::CalleeBye;
    calls.push_back(c);

    // 2: targeted by the calling SIP URI; SIP over TCP with the INVITE split across two
    // segments and 100+180 in one segment; Opus.
    c = basic_call(net, 2, "", "+4969333003");
    c.caller.uri = kTargetUri;
    c.caller.display_name = "Alice";
    c.transport = SipTransport::Tcp;
    c.tcp_split_invite = true;
    c.tcp_coalesce_provisional = true;
    c.codec = Codec::Opus;
    c.targeted = true;
    calls.push_back(c);

    // 3: untargeted SIP over TCP between SIP URIs.
    c = basic_call(net, 3, "", "");
    c.caller.uri = "sip:erin@example.test";
    c.callee.uri = "sip:frank@example.test";
    c.transport = SipTransport::Tcp;
    calls.push_back(c);

    // 4: targeted IPv6 call (signalling and media) to the target URI.
    c = basic_call(net, 4, "+4940111004", "");
    c.callee.uri = kTargetUri;
    c.callee.display_name = "Alice";
    c.caller_proxy = net.proxy_a6;
    c.callee_proxy = net.proxy_b6;
    c.caller.media_ip = Net::caller6(4);
    c.callee.media_ip = Net::callee6(4);
    c.codec = Codec::Opus;
    c.targeted = true;
    calls.push_back(c);

    // 5: targeted only through P-Asserted-Identity (anonymous From), on VLAN 100.
    c = basic_call(net, 5, "", "+4940111005");
    c.caller.uri = "sip:anonymous@anonymous.invalid";
    c.caller.display_name = "Anonymous";
    c.p_asserted_identity = "<" + tel_uri(kTargetNumber, "carrier-a.test") + ">";
    c.extra_headers = {{"Privacy", "id"}};
    c.vlans = VlanTags::dot1q(100);
    c.targeted = true;
    calls.push_back(c);

    // 6: untargeted call on QinQ 200/300.
    c = basic_call(net, 6, "+4940111006", "+4940111106");
    c.vlans = VlanTags::qinq(200, 300);
    calls.push_back(c);

    // 7: targeted, with an INVITE large enough to be IPv4-fragmented.
    c = basic_call(net, 7, "+4940111007", "");
    c.callee.uri = kTargetUri;
    c.large_invite = true;
    c.targeted = true;
    calls.push_back(c);

    // 8: the target calls; a re-INVITE moves the caller's media to a new address and port.
    c = basic_call(net, 8, kTargetNumber, "+4940111008");
    c.rtp_packets = 150;
    c.reinvite = MediaMove{60, Net::caller4(108), 40000};
    c.targeted = true;
    calls.push_back(c);

    // 9: a forwarded call: the target's number forwards unconditionally; the B2BUA's new
    // INVITE names the forwarded-to party in R-URI and To, and the target only in
    // Diversion and History-Info.
    c = basic_call(net, 9, "+4940111009", "+4940111109");
    c.diversion = "<" + tel_uri(kTargetNumber, "carrier-b.test") +
                  ">;reason=unconditional;counter=1;privacy=off";
    c.history_info = {"<" + tel_uri(kTargetNumber, "carrier-b.test") + ">;index=1",
                      "<" + tel_uri("+4940111109", "carrier-b.test") +
                          "?Reason=SIP%3Bcause%3D302>;index=1.1;mp=1"};
    c.targeted = true;
    calls.push_back(c);

    // 10: a call to the target CANCELled while ringing.
    c = basic_call(net, 10, "+4940111010", kTargetNumber);
    c.ending = CallEnding::Cancel;
    c.ringing_ms = 1200;
    c.targeted = true;
    calls.push_back(c);

    // 11: an untargeted busy call.
    c = basic_call(net, 11, "+4940111011", "+4940111111");
    c.ending = CallEnding::Busy;
    calls.push_back(c);

    // 12: the target registers (401 challenge, then 200).
    CallSpec r;
    r.kind = SessionKind::Register;
    r.caller.uri = kTargetUri;
    r.caller.display_name = "Alice";
    r.caller.media_ip = Net::caller4(12);
    r.caller_proxy = net.proxy_a4;
    r.callee_proxy = net.proxy_b4;
    r.start_ns = 200 * kMs;
    r.targeted = true;
    calls.push_back(r);

    // 13: a MESSAGE to the target number.
    CallSpec m;
    m.kind = SessionKind::Message;
    m.caller.uri = "sip:grace@example.test";
    m.caller.media_ip = Net::caller4(13);
    m.callee.uri = tel_uri(kTargetNumber, "carrier-b.test");
    m.caller_proxy = net.proxy_a4;
    m.callee_proxy = net.proxy_b4;
    m.start_ns = 2700 * kMs;
    m.message_text = "Meet at 10?";
    m.targeted = true;
    calls.push_back(m);

    // 14: an untargeted REGISTER over TCP.
    r.caller.uri = "sip:heidi@example.test";
    r.caller.display_name = "";
    r.caller.media_ip = Net::caller4(14);
    r.transport = SipTransport::Tcp;
    r.start_ns = 3300 * kMs;
    r.targeted = false;
    calls.push_back(r);

    IpAddress resolver = ip("192.0.2.53");
    IpAddress web = ip("192.0.2.80");
    s.background = {
        {BackgroundKind::Arp, Net::caller4(200), Net::caller4(1), 0, 3, {}},
        {BackgroundKind::Dns, Net::caller4(201), resolver, 100 * kMs, 6, {}},
        {BackgroundKind::Https, Net::caller4(201), web, 900 * kMs, 3, {}},
        {BackgroundKind::Dns, Net::callee4(202), resolver, 2500 * kMs, 4, VlanTags::dot1q(100)},
        {BackgroundKind::Https, Net::callee4(203), web, 4000 * kMs, 2, {}},
    };
    return s;
}

Scenario scenario_mix(std::uint64_t seed) {
    Net net;
    Rng rng(mix_seed(seed, 0x6d6978));
    Scenario s;
    s.name = "mix";
    s.description = "60 randomised calls over 30 s (about 15% targeted) with background";
    s.targets = {kTargetNumber, kTargetUri};
    for (int i = 0; i < 60; ++i) {
        auto number = [&](int side) {
            return "+49" + std::to_string(side == 0 ? 40 : 89) +
                   std::to_string(1000000 + rng.below(8999999));
        };
        CallSpec c = basic_call(net, i, number(0), number(1));
        c.caller.rtp_port = std::uint16_t(16384 + 2 * i);
        c.callee.rtp_port = std::uint16_t(24576 + 2 * i);
        c.caller.media_ip = Net::caller4(1 + (i % 250));
        c.callee.media_ip = Net::callee4(1 + (i % 250));
        std::uint32_t pick = rng.below(100);
        if (pick < 8) {
            c.callee.uri = tel_uri(kTargetNumber, "carrier-b.test");
            c.targeted = true;
        } else if (pick < 15) {
            c.caller.uri = kTargetUri;
            c.targeted = true;
        }
        c.codec = Codec(rng.below(3));
        if (rng.below(100) < 20) c.transport = SipTransport::Tcp;
        if (rng.below(100) < 10) {
            c.caller_proxy = net.proxy_a6;
            c.callee_proxy = net.proxy_b6;
            c.caller.media_ip = Net::caller6(i);
            c.callee.media_ip = Net::callee6(i);
        }
        std::uint32_t l2 = rng.below(100);
        if (l2 < 15)
            c.vlans = VlanTags::dot1q(std::uint16_t(100 + rng.below(10)));
        else if (l2 < 20)
            c.vlans = VlanTags::qinq(200, std::uint16_t(300 + rng.below(10)));
        std::uint32_t end = rng.below(100);
        c.ending = end < 60   ? CallEnding::CallerBye
                   : end < 80 ? CallEnding::CalleeBye
                   : end < 90 ? CallEnding::Cancel
                              : CallEnding::Busy;
        c.rtp_packets = 50 + rng.below(250);
        c.rtcp_every_packets = 100;
        c.large_invite = c.transport == SipTransport::Udp && rng.below(100) < 5;
        if (c.ending != CallEnding::Cancel && c.ending != CallEnding::Busy && rng.below(100) < 10) {
            c.reinvite = MediaMove{c.rtp_packets / 2, c.caller.media_ip,
                                   std::uint16_t(c.caller.rtp_port + 5000)};
        }
        c.start_ns = rng.between(0, 30000) * kMs;
        s.calls.push_back(c);
    }
    IpAddress resolver = ip("192.0.2.53");
    IpAddress web = ip("192.0.2.80");
    for (int i = 0; i < 20; ++i) {
        BackgroundSpec b;
        b.kind = BackgroundKind(rng.below(3));
        b.client = Net::caller4(200 + (i % 50));
        b.server = b.kind == BackgroundKind::Dns   ? resolver
                   : b.kind == BackgroundKind::Arp ? Net::caller4(1)
                                                   : web;
        b.start_ns = rng.between(0, 30000) * kMs;
        b.count = 1 + rng.below(4);
        s.background.push_back(b);
    }
    return s;
}

}  // namespace

const char* to_string(FrameKind kind) noexcept {
    switch (kind) {
        case FrameKind::Sip:
            return "sip";
        case FrameKind::Rtp:
            return "rtp";
        case FrameKind::Rtcp:
            return "rtcp";
        case FrameKind::Background:
            return "background";
    }
    return "unknown";
}

const CodecInfo& codec_info(Codec codec) noexcept {
    // RFC 3551 static payload types; Opus per RFC 7587 (48 kHz clock, "/2" mandatory).
    static constexpr CodecInfo kPcmu{"PCMU", 0, 8000, 0, 160, 160, 160, nullptr};
    static constexpr CodecInfo kG729{"G729", 18, 8000, 0, 160, 20, 20, "annexb=no"};
    static constexpr CodecInfo kOpus{"opus", 111, 48000, 2, 960, 60, 120, "useinbandfec=1"};
    switch (codec) {
        case Codec::G729:
            return kG729;
        case Codec::Opus:
            return kOpus;
        case Codec::Pcmu:
            break;
    }
    return kPcmu;
}

const std::vector<ScenarioInfo>& list_scenarios() {
    static const std::vector<ScenarioInfo> kList = {
        {"demo",
         "12 calls (targeted and not, UDP/TCP, IPv6, VLAN/QinQ, fragmented INVITE, re-INVITE, "
         "Diversion, CANCEL, busy), REGISTER, MESSAGE, background"},
        {"basic", "one targeted and one untargeted IPv4 UDP call"},
        {"mix", "60 randomised calls over 30 s (about 15% targeted) with background; seeded"},
        {"abandoned",
         "two targeted calls (by number, by SIP URI) answered, media, then nothing: no BYE"},
    };
    return kList;
}

std::optional<Scenario> make_scenario(std::string_view name, std::uint64_t seed) {
    if (name == "demo") return scenario_demo();
    if (name == "basic") return scenario_basic();
    if (name == "mix") return scenario_mix(seed);
    if (name == "abandoned") return scenario_abandoned();
    return std::nullopt;
}

std::string validate(const CallSpec& spec) {
    if (spec.caller_proxy.empty() || spec.callee_proxy.empty()) {
        return "caller_proxy and callee_proxy must be set";
    }
    if (spec.caller_proxy.family != spec.callee_proxy.family) {
        return "caller_proxy and callee_proxy are of different IP families";
    }
    if (spec.caller.uri.empty()) return "caller.uri must be set";
    if (spec.kind != SessionKind::Register && spec.callee.uri.empty() && spec.request_uri.empty()) {
        return "callee.uri must be set";
    }
    std::size_t min_mtu = spec.caller_proxy.is_v4() ? 576 : 1280;
    if (spec.mtu < min_mtu) return "mtu " + std::to_string(spec.mtu) + " is below the minimum";
    if (spec.vlans.count > 2) return "at most two VLAN tags (QinQ)";
    for (std::uint8_t i = 0; i < spec.vlans.count; ++i) {
        if (spec.vlans.ids[i] > 4095) return "VLAN id above 4095";
    }
    if (spec.sip_port == 0) return "sip_port must not be 0";
    if (spec.kind == SessionKind::Call) {
        if (spec.caller.media_ip.empty() || spec.callee.media_ip.empty()) {
            return "caller.media_ip and callee.media_ip must be set";
        }
        if (spec.caller.rtp_port == 0 || spec.callee.rtp_port == 0 ||
            spec.caller.rtp_port == 65535 || spec.callee.rtp_port == 65535) {
            return "RTP ports must be between 1 and 65534 (RTCP uses port + 1)";
        }
        if (spec.reinvite) {
            if (spec.reinvite->new_ip.empty() || spec.reinvite->new_port == 0 ||
                spec.reinvite->new_port == 65535) {
                return "reinvite needs new_ip and a new_port between 1 and 65534";
            }
            if (spec.reinvite->new_ip.family != spec.callee.media_ip.family) {
                return "reinvite new_ip must be of the callee's media family";
            }
            if (spec.ending == CallEnding::Cancel || spec.ending == CallEnding::Busy) {
                return "a re-INVITE needs an answered call";
            }
        }
        if (spec.caller.media_ip.family != spec.callee.media_ip.family) {
            return "caller and callee media addresses are of different IP families";
        }
    }
    return {};
}

std::vector<LabeledFrame> render_call(const CallSpec& spec, int call_index, std::uint64_t epoch_ns,
                                      std::uint64_t seed) {
    std::string problem = validate(spec);
    if (!problem.empty()) {
        throw std::invalid_argument("call " + std::to_string(call_index) + ": " + problem);
    }
    std::vector<LabeledFrame> out;
    CallRenderer renderer(spec, call_index, epoch_ns, seed, out);
    renderer.render();
    std::stable_sort(out.begin(), out.end(), [](const LabeledFrame& a, const LabeledFrame& b) {
        return a.time_ns < b.time_ns;
    });
    return out;
}

std::vector<LabeledFrame> render_background(const BackgroundSpec& spec, std::uint64_t epoch_ns,
                                            std::uint64_t seed) {
    if (spec.client.empty() || spec.client.family != spec.server.family) {
        throw std::invalid_argument("background: client and server must be of one IP family");
    }
    if (spec.kind == BackgroundKind::Arp && !spec.client.is_v4()) {
        throw std::invalid_argument("background: ARP needs IPv4 addresses");
    }
    std::vector<LabeledFrame> out;
    Rng rng(seed);
    Emitter em(out, -1, false, spec.vlans, epoch_ns, rng);
    switch (spec.kind) {
        case BackgroundKind::Dns:
            render_dns(spec, em);
            break;
        case BackgroundKind::Https:
            render_https(spec, em);
            break;
        case BackgroundKind::Arp:
            render_arp(spec, em);
            break;
    }
    std::stable_sort(out.begin(), out.end(), [](const LabeledFrame& a, const LabeledFrame& b) {
        return a.time_ns < b.time_ns;
    });
    return out;
}

std::vector<LabeledFrame> render_scenario(const Scenario& scenario, std::uint64_t seed) {
    std::vector<LabeledFrame> all;
    for (std::size_t i = 0; i < scenario.calls.size(); ++i) {
        auto frames =
            render_call(scenario.calls[i], int(i), scenario.epoch_ns, mix_seed(seed, i + 1));
        std::move(frames.begin(), frames.end(), std::back_inserter(all));
    }
    for (std::size_t i = 0; i < scenario.background.size(); ++i) {
        auto frames = render_background(scenario.background[i], scenario.epoch_ns,
                                        mix_seed(seed, 1000000 + i));
        std::move(frames.begin(), frames.end(), std::back_inserter(all));
    }
    std::stable_sort(all.begin(), all.end(), [](const LabeledFrame& a, const LabeledFrame& b) {
        return a.time_ns < b.time_ns;
    });
    return all;
}

}  // namespace tapwire::traffic
