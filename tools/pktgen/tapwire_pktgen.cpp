// tapwire-pktgen: realistic VoIP traffic at a chosen rate through any DPDK port (in tests a
// net_memif link to the dataplane, which has the shape of a real NIC link), and/or into a pcap.
//
//   tapwire-pktgen [EAL options --] [--mix NAME] [--rate PPS] [--packets N] ... (see kUsage)
//
// Frames come from the traffic library (tools/traffic): the standard mix M1 (m1_mix.hpp) or a
// named scenario (call_flow.hpp). Everything is rendered before sending starts, into a
// FrameList (frames back to back); the send loop only copies a frame into a fresh mbuf and
// calls rte_eth_tx_burst, paced against a steady clock. Copying was chosen over shared mbuf
// templates (refcnt or extbuf) because frames are patched per pass (below) and a 214-byte
// copy is cheap next to what any real port costs per packet.
//
// Long runs loop the traffic, kept realistic per pass:
//  - scenarios are re-rendered with seed + pass (new Call-IDs, tags, TCP ISNs, SSRCs) by a
//    helper thread one pass ahead, so the send loop never waits for rendering;
//  - M1 (too big to re-render: 20,000 call set-ups) sends its warm-up once and then replays
//    the window, patching SIP frames per pass: TCP sequence and acknowledgement numbers move
//    by a per-pass offset (a repeated ISN on the same 4-tuple confuses TCP reassembly in the
//    dataplane) and the first 8 hex digits of every Call-ID change, so each pass's new calls
//    are new dialogs. RTP and RTCP of the concurrent calls repeat as they are (same flows).
// Without EAL options (no "--") nothing is initialised and --write-pcap is the only output.

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <future>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "common/bytes.hpp"
#include "common/clock.hpp"
#include "common/ip_address.hpp"
#include "tools/traffic/call_flow.hpp"
#include "tools/traffic/frame_builder.hpp"
#include "tools/traffic/m1_mix.hpp"
#include "tools/traffic/pcap_writer.hpp"

namespace {

using namespace tapwire;
using namespace tapwire::traffic;
using SteadyClock = std::chrono::steady_clock;

constexpr const char* kUsage =
    "usage: tapwire-pktgen [EAL options --] [options]\n"
    "       tapwire-pktgen --list\n"
    "\n"
    "Sends synthetic VoIP traffic through a DPDK port at a chosen rate and/or writes it to a\n"
    "pcap. Without EAL options (no '--') no port is used: give --write-pcap.\n"
    "  --port N              DPDK port id (default 0)\n"
    "  --mix NAME            m1 or a scenario of --list (default m1)\n"
    "  --rate PPS            packets per second; 0 = as fast as the port takes them (default)\n"
    "  --packets N           stop after N packets\n"
    "  --duration S          stop after S seconds\n"
    "  --passes N            stop after N passes over the traffic (m1: over the window)\n"
    "  --burst N             tx burst size (default 32, at most 512)\n"
    "  --retry               resend what the port did not take (else counted as tx drops)\n"
    "  --seed N              seed (default 1); a scenario's pass k renders with seed + k\n"
    "  --codec g711|g729|opus  scenarios: every call's codec (M1 is G.711 only)\n"
    "  --sip-tcp-share F     share of calls with SIP over TCP (m1 default 0.10;\n"
    "                        scenarios: overrides each call's transport)\n"
    "  --ipv6-share F        scenarios: share of calls moved to IPv6 (2001:db8:4::/96 + IPv4)\n"
    "  --fragment-invites    scenarios: INVITEs over UDP padded past the MTU (IP fragments)\n"
    "  --vlan ID             802.1Q tag on every untagged frame\n"
    "  --calls N             m1: concurrent calls (default 20000)\n"
    "  --call-rate CPS       m1: new calls per second (default 200)\n"
    "  --targeted-share F    m1: share of targeted calls (default 0.02)\n"
    "  --background-share F  m1: share of non-VoIP frames (default 0.05)\n"
    "  --targets N           m1: target identities (default 100000)\n"
    "  --window-ms MS        m1: window replayed in a loop (default 250)\n"
    "  --plain-loop          replay the first pass unchanged: no re-rendering (scenarios) or\n"
    "                        TCP/Call-ID rewrite (m1) per pass; faster, less realistic\n"
    "  --write-pcap FILE     also write every frame offered to the port (or only that)\n"
    "  --write-targets FILE  write the mix's targets as the dataplane's --targets file\n"
    "  --link-wait S         wait up to S seconds for the link to come up (default 10)\n"
    "  --hold                after the summary keep the port open, idle, until SIGINT or\n"
    "                        SIGTERM: the peer can stop first (a memif peer that polls while\n"
    "                        this side disconnects can crash in DPDK 22.11's memif driver);\n"
    "                        SIGUSR1 ends the traffic (summary) and then holds\n"
    "  --quiet               no live rate lines\n"
    "  --list                list the mixes and exit\n"
    "Live once a second: pps, Mbit/s (Ethernet frames without FCS), tx drops. Summary at the\n"
    "end or on SIGINT/SIGTERM. Exit: 0 done, 1 runtime failure, 2 usage.\n";

std::atomic<bool> g_stop{false};
std::atomic<bool> g_stop_sending{false};  // SIGUSR1: end the traffic, then --hold applies

void on_signal(int) {
    g_stop.store(true);
}

void on_stop_sending(int) {
    g_stop_sending.store(true);
}

struct UsageError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

struct Options {
    std::uint16_t port = 0;
    std::string mix = "m1";
    double rate = 0;
    std::uint64_t packets = 0;  // 0: no limit
    double duration_s = 0;
    std::uint64_t passes = 0;
    unsigned burst = 32;
    bool retry = false;
    std::uint64_t seed = 1;
    std::optional<Codec> codec;
    std::optional<double> tcp_share;
    std::optional<double> ipv6_share;
    bool fragment_invites = false;
    std::optional<std::uint16_t> vlan;
    M1Config m1;
    std::vector<std::string> m1_only;  // m1 options given, for a clear error with a scenario
    std::string pcap_path;
    std::string targets_path;
    double link_wait_s = 10;
    bool quiet = false;
    bool hold = false;
    bool list = false;
    bool plain_loop = false;
};

double parse_number(std::string_view opt, const char* text, double min, double max) {
    char* end = nullptr;
    errno = 0;
    double v = std::strtod(text, &end);
    if (end == text || *end != '\0' || errno != 0 || !(v >= min && v <= max))
        throw UsageError(std::string(opt) + " needs a number in [" + std::to_string(min) + ", " +
                         std::to_string(max) + "], got '" + text + "'");
    return v;
}

std::uint64_t parse_count(std::string_view opt, const char* text, std::uint64_t max) {
    std::uint64_t v = 0;
    std::string_view t = text;
    if (t.empty()) throw UsageError(std::string(opt) + " needs a non-negative integer");
    for (char c : t) {
        if (c < '0' || c > '9' || v > (max - std::uint64_t(c - '0')) / 10)
            throw UsageError(std::string(opt) + " needs an integer in [0, " + std::to_string(max) +
                             "], got '" + text + "'");
        v = v * 10 + std::uint64_t(c - '0');
    }
    return v;
}

Options parse_options(int argc, char** argv) {
    Options o;
    for (int i = 0; i < argc; ++i) {
        std::string_view a = argv[i];
        auto value = [&]() -> const char* {
            if (i + 1 >= argc) throw UsageError(std::string(a) + " needs a value");
            return argv[++i];
        };
        auto share = [&]() { return parse_number(a, value(), 0, 1); };
        if (a == "--help" || a == "-h") {
            std::fputs(kUsage, stdout);
            std::exit(0);
        } else if (a == "--list") {
            o.list = true;
        } else if (a == "--port") {
            o.port = std::uint16_t(parse_count(a, value(), RTE_MAX_ETHPORTS - 1));
        } else if (a == "--mix") {
            o.mix = value();
        } else if (a == "--rate") {
            o.rate = parse_number(a, value(), 0, 1e9);
        } else if (a == "--packets") {
            o.packets = parse_count(a, value(), UINT64_MAX);
        } else if (a == "--duration") {
            o.duration_s = parse_number(a, value(), 0, 1e7);
        } else if (a == "--passes") {
            o.passes = parse_count(a, value(), UINT64_MAX);
        } else if (a == "--burst") {
            o.burst = unsigned(parse_count(a, value(), 512));
            if (o.burst == 0) throw UsageError("--burst must be at least 1");
        } else if (a == "--retry") {
            o.retry = true;
        } else if (a == "--seed") {
            o.seed = parse_count(a, value(), UINT64_MAX / 2);
            o.m1.seed = o.seed;
        } else if (a == "--codec") {
            std::string_view c = value();
            if (c == "g711" || c == "pcmu")
                o.codec = Codec::Pcmu;
            else if (c == "g729")
                o.codec = Codec::G729;
            else if (c == "opus")
                o.codec = Codec::Opus;
            else
                throw UsageError("--codec: g711, g729 or opus, got '" + std::string(c) + "'");
        } else if (a == "--sip-tcp-share") {
            o.tcp_share = share();
            o.m1.tcp_share = *o.tcp_share;
        } else if (a == "--ipv6-share") {
            o.ipv6_share = share();
        } else if (a == "--fragment-invites") {
            o.fragment_invites = true;
        } else if (a == "--vlan") {
            o.vlan = std::uint16_t(parse_count(a, value(), 4094));
            if (*o.vlan == 0) throw UsageError("--vlan: 1 to 4094");
        } else if (a == "--calls") {
            o.m1.concurrent_calls = std::uint32_t(parse_count(a, value(), 1'000'000));
            o.m1_only.emplace_back(a);
        } else if (a == "--call-rate") {
            o.m1.new_calls_per_second = parse_number(a, value(), 0, 1e6);
            o.m1_only.emplace_back(a);
        } else if (a == "--targeted-share") {
            o.m1.targeted_share = share();
            o.m1_only.emplace_back(a);
        } else if (a == "--background-share") {
            o.m1.background_share = share();
            o.m1_only.emplace_back(a);
        } else if (a == "--targets") {
            o.m1.target_identities = std::uint32_t(parse_count(a, value(), 10'000'000));
            o.m1_only.emplace_back(a);
        } else if (a == "--window-ms") {
            o.m1.window_ms = std::uint32_t(parse_count(a, value(), 60'000));
            o.m1_only.emplace_back(a);
        } else if (a == "--plain-loop") {
            o.plain_loop = true;
        } else if (a == "--write-pcap") {
            o.pcap_path = value();
        } else if (a == "--write-targets") {
            o.targets_path = value();
        } else if (a == "--link-wait") {
            o.link_wait_s = parse_number(a, value(), 0, 3600);
        } else if (a == "--quiet") {
            o.quiet = true;
        } else if (a == "--hold") {
            o.hold = true;
        } else if (a.starts_with("--vdev") || a.starts_with("--file-prefix") || a == "-l") {
            throw UsageError("'" + std::string(a) + "' is an EAL option: put it before '--'");
        } else {
            throw UsageError("unknown argument '" + std::string(a) + "'");
        }
    }
    bool m1 = o.mix == "m1";
    if (!m1 && !o.m1_only.empty())
        throw UsageError(o.m1_only.front() + " applies to --mix m1 only");
    if (m1 && o.codec && *o.codec != Codec::Pcmu)
        throw UsageError("--codec: M1 is G.711 by definition; use a scenario for other codecs");
    if (m1 && o.ipv6_share) throw UsageError("--ipv6-share: M1 is IPv4 only");
    if (m1 && o.fragment_invites) throw UsageError("--fragment-invites: not part of M1");
    return o;
}

// ---- frame edits ------------------------------------------------------------------------

std::uint64_t mix64(std::uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

// A deterministic pick of share of the calls (by index), independent of the scenario's rng.
bool picked(std::size_t index, double share, std::uint64_t salt) {
    return double(mix64(index * 0x100000001b3ull ^ salt) >> 11) * 0x1.0p-53 < share;
}

// Pushes an 802.1Q tag onto an untagged frame (tagged ones already chose their VLANs).
void add_vlan(std::vector<std::uint8_t>& frame, std::uint16_t id) {
    if (frame.size() < 14) return;
    std::uint16_t type = load_be16(frame.data() + 12);
    if (type == 0x8100 || type == 0x88a8) return;
    std::uint8_t tag[4] = {0x81, 0x00, std::uint8_t(id >> 8), std::uint8_t(id)};
    frame.insert(frame.begin() + 12, tag, tag + 4);
}

// Where a frame's L4 header lies; only unfragmented IPv4/IPv6 packets.
struct L4Location {
    std::size_t ip = 0;  // offset of the IP header
    std::size_t l4 = 0;
    std::size_t l4_length = 0;
    std::uint8_t proto = 0;
    bool v6 = false;
};

std::optional<L4Location> locate_l4(ByteSpan f) {
    std::size_t off = 12;
    if (f.size() < 14) return std::nullopt;
    std::uint16_t type = load_be16(f.data() + off);
    while (type == 0x8100 || type == 0x88a8) {
        off += 4;
        if (f.size() < off + 2) return std::nullopt;
        type = load_be16(f.data() + off);
    }
    off += 2;
    L4Location loc;
    loc.ip = off;
    if (type == 0x0800 && f.size() >= off + 20) {
        const std::uint8_t* ip = f.data() + off;
        std::size_t ihl = std::size_t(ip[0] & 0x0f) * 4;
        std::size_t total = load_be16(ip + 2);
        if ((load_be16(ip + 6) & 0x3fff) != 0) return std::nullopt;  // a fragment
        if (ihl < 20 || total < ihl || f.size() < off + total) return std::nullopt;
        loc.proto = ip[9];
        loc.l4 = off + ihl;
        loc.l4_length = total - ihl;
    } else if (type == 0x86dd && f.size() >= off + 40) {
        const std::uint8_t* ip = f.data() + off;
        std::size_t payload = load_be16(ip + 4);
        if (f.size() < off + 40 + payload) return std::nullopt;
        loc.v6 = true;
        loc.proto = ip[6];  // the generator adds no extension headers but Fragment
        loc.l4 = off + 40;
        loc.l4_length = payload;
    } else {
        return std::nullopt;
    }
    if (loc.proto != 6 && loc.proto != 17) return std::nullopt;
    return loc;
}

// Per-pass edits of one M1 window frame (see the file comment).
struct Patch {
    std::uint32_t frame = 0;
    L4Location loc;
    bool tcp = false;
    bool tcp_ack = false;
    std::vector<std::uint32_t> call_ids;  // offsets of 8 hex digits to rewrite
};

bool is_hex(std::uint8_t c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

std::optional<Patch> plan_patch(ByteSpan f, std::uint32_t index) {
    auto loc = locate_l4(f);
    if (!loc) return std::nullopt;
    Patch p;
    p.frame = index;
    p.loc = *loc;
    std::size_t payload = loc->l4 + 8;
    if (loc->proto == 6) {
        p.tcp = true;
        p.tcp_ack = (f[loc->l4 + 13] & TcpFlags::kAck) != 0;
        payload = loc->l4 + std::size_t(f[loc->l4 + 12] >> 4) * 4;
    }
    std::string_view text(reinterpret_cast<const char*>(f.data()), loc->l4 + loc->l4_length);
    constexpr std::string_view kHeader = "\r\nCall-ID: ";
    for (std::size_t at = text.find(kHeader, payload); at != std::string_view::npos;
         at = text.find(kHeader, at + 1)) {
        std::size_t v = at + kHeader.size();
        if (v + 8 <= text.size() && std::all_of(f.begin() + v, f.begin() + v + 8, is_hex))
            p.call_ids.push_back(std::uint32_t(v));
    }
    if (!p.tcp && p.call_ids.empty()) return std::nullopt;
    return p;
}

// One's-complement sum of the 16-bit words of l4[begin, end); begin and end even.
std::uint32_t word_sum(const std::uint8_t* l4, std::size_t begin, std::size_t end) {
    std::uint32_t sum = 0;
    for (std::size_t i = begin; i < end; i += 2)
        sum += load_be16(l4 + i);
    return sum;
}

std::uint16_t fold(std::uint32_t sum) {
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return std::uint16_t(sum);
}

// Incremental checksum update (RFC 1624, eqn. 3): a full recomputation over every 1,500-byte
// HTTPS segment of M1's background made the patched replay 40% slower on net_null.
void apply_patch(std::uint8_t* f, const Patch& p, std::uint64_t pass) {
    std::uint8_t* l4 = f + p.loc.l4;
    std::uint32_t before = 0, after = 0;
    if (p.tcp) {
        std::uint32_t shift = std::uint32_t(pass * 0x9e3779b1ull);
        before += word_sum(l4, 4, 12);
        store_be32(l4 + 4, load_be32(l4 + 4) + shift);
        if (p.tcp_ack) store_be32(l4 + 8, load_be32(l4 + 8) + shift);
        after += word_sum(l4, 4, 12);
    }
    static constexpr char kHex[] = "0123456789abcdef";
    std::uint32_t salt = std::uint32_t(mix64(pass));
    for (std::uint32_t at : p.call_ids) {
        std::size_t rel = at - p.loc.l4, begin = rel & ~std::size_t(1),
                    end = (rel + 9) & ~std::size_t(1);
        before += word_sum(l4, begin, end);
        std::uint32_t v = 0;
        for (int i = 0; i < 8; ++i) {
            std::uint8_t c = f[at + i];
            v = v << 4 | std::uint32_t(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
        }
        v ^= salt;
        for (int i = 7; i >= 0; --i, v >>= 4)
            f[at + i] = std::uint8_t(kHex[v & 15]);
        after += word_sum(l4, begin, end);
    }
    std::uint8_t* check = l4 + (p.tcp ? 16 : 6);
    std::uint16_t c = std::uint16_t(~fold(std::uint32_t(std::uint16_t(~load_be16(check))) +
                                          std::uint16_t(~fold(before)) + fold(after)));
    if (!p.tcp && c == 0) c = 0xffff;
    store_be16(check, c);
}

// ---- traffic ----------------------------------------------------------------------------

FrameList to_frame_list(const std::vector<LabeledFrame>& frames,
                        std::optional<std::uint16_t> vlan) {
    FrameList list;
    std::size_t bytes = 0;
    for (const auto& f : frames)
        bytes += f.bytes.size() + 4;
    list.reserve(frames.size(), bytes);
    std::vector<std::uint8_t> tagged;
    for (const auto& f : frames) {
        if (vlan) {
            tagged = f.bytes;
            add_vlan(tagged, *vlan);
            list.add(ByteSpan(tagged), f.kind, f.targeted, f.sip_messages);
        } else {
            list.add(ByteSpan(f.bytes), f.kind, f.targeted, f.sip_messages);
        }
    }
    return list;
}

FrameList with_vlan(const FrameList& in, std::uint16_t vlan) {
    FrameList out;
    out.reserve(in.size(), in.total_bytes() + 4 * in.size());
    std::vector<std::uint8_t> f;
    for (std::size_t i = 0; i < in.size(); ++i) {
        ByteSpan s = in.frame(i);
        f.assign(s.begin(), s.end());
        add_vlan(f, vlan);
        const auto& e = in.entry(i);
        out.add(ByteSpan(f), e.kind, e.targeted, e.sip_messages);
    }
    return out;
}

IpAddress to_v6(const IpAddress& a) {
    if (!a.is_v4()) return a;
    std::uint8_t b[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 4};
    std::memcpy(b + 12, a.bytes.data(), 4);
    return IpAddress::v6(b);
}

// The scenario with the command line's overrides applied to its call specs.
Scenario adjust(Scenario s, const Options& o) {
    for (std::size_t i = 0; i < s.calls.size(); ++i) {
        CallSpec& c = s.calls[i];
        if (o.codec && c.kind == SessionKind::Call) c.codec = *o.codec;
        if (o.tcp_share)
            c.transport = picked(i, *o.tcp_share, 0x7c9) ? SipTransport::Tcp : SipTransport::Udp;
        if (o.fragment_invites && c.kind == SessionKind::Call && c.transport == SipTransport::Udp)
            c.large_invite = true;
        if (o.ipv6_share && c.caller_proxy.is_v4() && picked(i, *o.ipv6_share, 0x6b6)) {
            c.caller_proxy = to_v6(c.caller_proxy);
            c.callee_proxy = to_v6(c.callee_proxy);
            c.caller.media_ip = to_v6(c.caller.media_ip);
            c.callee.media_ip = to_v6(c.callee.media_ip);
            if (c.reinvite) c.reinvite->new_ip = to_v6(c.reinvite->new_ip);
        }
    }
    return s;
}

struct Frame {
    ByteSpan bytes;
    std::uint8_t sip_messages = 0;
    bool targeted = false;
};

// Endless frames: M1's warm-up then its window per pass, or a scenario rendered per pass.
class Traffic {
  public:
    explicit Traffic(const Options& o) : options_(o) {}

    std::string build() {
        if (options_.mix == "m1") {
            M1Mix mix = build_m1_mix(options_.m1);
            targets_ = std::move(mix.targets);
            comp_ = mix.composition;
            warmup_ = options_.vlan ? with_vlan(mix.warmup, *options_.vlan) : std::move(mix.warmup);
            window_ = options_.vlan ? with_vlan(mix.window, *options_.vlan) : std::move(mix.window);
            patches_.assign(window_.size(), -1);
            for (std::size_t i = 0; i < window_.size(); ++i) {
                // SIP, and background TCP (HTTPS), whose connections repeat per pass too.
                FrameKind kind = window_.entry(i).kind;
                if (kind != FrameKind::Sip && kind != FrameKind::Background) continue;
                if (auto p = plan_patch(window_.frame(i), std::uint32_t(i))) {
                    patches_[i] = int(patch_list_.size());
                    patch_list_.push_back(std::move(*p));
                }
            }
            m1_ = true;
            current_ = warmup_.empty() ? &window_ : &warmup_;
            in_warmup_ = !warmup_.empty();
            return "";
        }
        auto s = make_scenario(options_.mix, options_.seed);
        if (!s) return "unknown mix";
        scenario_ = adjust(std::move(*s), options_);
        for (const auto& c : scenario_.calls)
            if (std::string e = validate(c); !e.empty()) return e;
        targets_ = scenario_.targets;
        pass_list_ = render(0);
        current_ = &pass_list_;
        if (!options_.plain_loop)
            next_ = std::async(std::launch::async, [this] { return render(1); });
        return "";
    }

    std::string describe() const {
        char line[512];
        if (m1_) {
            std::snprintf(
                line, sizeof line,
                "mix m1: %u concurrent calls, %.0f calls/s, tcp %.0f%%, targeted "
                "%.1f%%, background %.0f%%; warm-up %zu frames, window %u ms = %zu "
                "frames (%llu SIP messages, %u new calls), %zu TCP and SIP frames patched "
                "per pass%s",
                options_.m1.concurrent_calls, options_.m1.new_calls_per_second,
                options_.m1.tcp_share * 100, options_.m1.targeted_share * 100,
                options_.m1.background_share * 100, warmup_.size(), options_.m1.window_ms,
                window_.size(), (unsigned long long)comp_.sip_messages, comp_.new_calls,
                options_.plain_loop ? size_t(0) : patch_list_.size(),
                options_.plain_loop ? " (--plain-loop)" : "");
        } else {
            std::snprintf(
                line, sizeof line, "mix %s: %zu dialogs, %zu frames (%.1f KB) per pass, %s",
                scenario_.name.c_str(), scenario_.calls.size(), pass_list_.size(),
                double(pass_list_.total_bytes()) / 1e3,
                options_.plain_loop ? "replayed unchanged" : "re-rendered with seed + pass");
        }
        return line;
    }

    const std::vector<std::string>& targets() const { return targets_; }

    /// The next frame; scratch holds it when it had to be patched.
    Frame next(std::vector<std::uint8_t>& scratch) {
        if (index_ == current_->size()) advance();
        std::size_t i = index_++;
        const auto& e = current_->entry(i);
        Frame f{current_->frame(i), e.sip_messages, e.targeted};
        if (m1_ && !in_warmup_ && pass_ > 0 && patches_[i] >= 0 && !options_.plain_loop) {
            scratch.assign(f.bytes.begin(), f.bytes.end());
            apply_patch(scratch.data(), patch_list_[std::size_t(patches_[i])], pass_);
            f.bytes = ByteSpan(scratch);
        }
        return f;
    }

    /// Passes sent whole (m1: over the window; the warm-up is not one).
    std::uint64_t passes_done() const {
        return pass_ + (index_ == current_->size() && !in_warmup_ ? 1 : 0);
    }

    ~Traffic() {
        if (next_.valid()) next_.wait();
    }

  private:
    FrameList render(std::uint64_t pass) const {
        return to_frame_list(render_scenario(scenario_, options_.seed + pass), options_.vlan);
    }

    void advance() {
        index_ = 0;
        if (m1_) {
            if (in_warmup_)
                in_warmup_ = false;
            else
                ++pass_;
            current_ = &window_;
            return;
        }
        ++pass_;
        if (options_.plain_loop) return;
        pass_list_ = next_.get();
        next_ = std::async(std::launch::async, [this, p = pass_ + 1] { return render(p); });
    }

    const Options& options_;
    bool m1_ = false;
    FrameList warmup_, window_;
    M1Composition comp_;
    std::vector<int> patches_;  // per window frame: index into patch_list_, or -1
    std::vector<Patch> patch_list_;
    Scenario scenario_;
    FrameList pass_list_;
    std::future<FrameList> next_;
    std::vector<std::string> targets_;
    const FrameList* current_ = nullptr;
    std::size_t index_ = 0;
    bool in_warmup_ = false;
    std::uint64_t pass_ = 0;
};

// ---- port -------------------------------------------------------------------------------

std::string port_names() {
    std::string names;
    std::uint16_t id;
    RTE_ETH_FOREACH_DEV(id) {
        char name[RTE_ETH_NAME_MAX_LEN];
        if (rte_eth_dev_get_name_by_port(id, name) == 0)
            names += (names.empty() ? "" : ", ") + std::to_string(id) + " " + name;
    }
    return names.empty() ? "none (no --vdev and no NIC bound to DPDK)" : names;
}

// One tx queue; one rx queue too, which several PMDs (memif among them) need to start.
std::string start_port(std::uint16_t port, rte_mempool* pool, double link_wait_s) {
    rte_eth_dev_info info;
    if (int rc = rte_eth_dev_info_get(port, &info); rc != 0)
        return "cannot query the device: " + std::string(rte_strerror(-rc));
    rte_eth_conf conf{};
    if (int rc = rte_eth_dev_configure(port, 1, 1, &conf); rc != 0)
        return "configure failed: " + std::string(rte_strerror(-rc));
    std::uint16_t rx_desc = 512, tx_desc = 1024;
    if (int rc = rte_eth_dev_adjust_nb_rx_tx_desc(port, &rx_desc, &tx_desc); rc != 0)
        return "descriptor counts rejected: " + std::string(rte_strerror(-rc));
    int socket = rte_eth_dev_socket_id(port);
    if (int rc = rte_eth_rx_queue_setup(port, 0, rx_desc, socket, nullptr, pool); rc != 0)
        return "rx queue setup failed: " + std::string(rte_strerror(-rc));
    if (int rc = rte_eth_tx_queue_setup(port, 0, tx_desc, socket, nullptr); rc != 0)
        return "tx queue setup failed: " + std::string(rte_strerror(-rc));
    if (int rc = rte_eth_dev_start(port); rc != 0)
        return "start failed: " + std::string(rte_strerror(-rc));
    // A memif client is up once the server accepted it; frames sent before are lost.
    auto deadline = SteadyClock::now() + std::chrono::duration<double>(link_wait_s);
    rte_eth_link link{};
    while (!g_stop.load()) {
        rte_eth_link_get_nowait(port, &link);
        if (link.link_status == RTE_ETH_LINK_UP) return "";
        if (SteadyClock::now() >= deadline)
            return "link still down after " + std::to_string(link_wait_s) + " s (--link-wait)";
        usleep(10'000);
    }
    return "interrupted while waiting for the link";
}

// Copies a frame into one mbuf, or a chain when it exceeds the data room.
rte_mbuf* to_mbuf(rte_mbuf* head, rte_mempool* pool, ByteSpan f) {
    std::size_t room = rte_pktmbuf_tailroom(head);
    std::size_t first = std::min(room, f.size());
    std::memcpy(rte_pktmbuf_append(head, std::uint16_t(first)), f.data(), first);
    for (std::size_t at = first; at < f.size();) {
        rte_mbuf* seg = rte_pktmbuf_alloc(pool);
        if (!seg) return nullptr;
        std::size_t n = std::min<std::size_t>(rte_pktmbuf_tailroom(seg), f.size() - at);
        std::memcpy(rte_pktmbuf_append(seg, std::uint16_t(n)), f.data() + at, n);
        if (rte_pktmbuf_chain(head, seg) != 0) {
            rte_pktmbuf_free(seg);
            return nullptr;
        }
        at += n;
    }
    return head;
}

// ---- run --------------------------------------------------------------------------------

struct Totals {
    std::uint64_t packets = 0;  // taken by the port (or written, without a port)
    std::uint64_t bytes = 0;
    std::uint64_t tx_failed = 0;
    std::uint64_t sip_messages = 0;  // SIP messages completed in the frames taken
    std::uint64_t targeted = 0;
};

void fail(const std::string& message) {
    throw std::runtime_error(message);
}

int run(int argc, char** argv) {
    int sep = 0;
    for (int i = 1; i < argc; ++i)
        if (std::string_view(argv[i]) == "--") sep = i;
    Options o;
    try {
        o = parse_options(argc - (sep + 1), argv + sep + 1);
        if (!o.list && sep == 0 && o.pcap_path.empty())
            throw UsageError(
                "nothing to do: give EAL options with a port before '--', or "
                "--write-pcap");
        if (o.list) {
            std::printf("%-8s %s\n", "m1",
                        "the benchmark mix M1: concurrent G.711 calls, new calls with SIP over "
                        "UDP/TCP, RTCP, targets, background (--calls, --call-rate, ...)");
            for (const ScenarioInfo& s : list_scenarios())
                std::printf("%-8.*s %.*s\n", int(s.name.size()), s.name.data(),
                            int(s.description.size()), s.description.data());
            return 0;
        }
        if (o.mix != "m1" && !make_scenario(o.mix, o.seed))
            throw UsageError("unknown mix '" + o.mix + "' (see --list)");
    } catch (const UsageError& e) {
        std::fprintf(stderr, "tapwire-pktgen: %s\n\n%s", e.what(), kUsage);
        return 2;
    }

    bool eal = sep > 0;
    if (eal) {
        argv[sep] = argv[0];  // rte_eal_init sees argv[0..sep)
        if (rte_eal_init(sep, argv) < 0)
            fail(std::string("EAL initialisation failed: ") + rte_strerror(rte_errno));
        if (!rte_eth_dev_is_valid_port(o.port)) {
            std::fprintf(stderr, "tapwire-pktgen: --port %u: no such port; ports: %s\n",
                         unsigned(o.port), port_names().c_str());
            rte_eal_cleanup();
            return 2;
        }
    }
    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);
    std::signal(SIGUSR1, on_stop_sending);

    Traffic traffic(o);
    try {
        if (std::string e = traffic.build(); !e.empty()) fail("--mix " + o.mix + ": " + e);
    } catch (const std::invalid_argument& e) {
        std::fprintf(stderr, "tapwire-pktgen: %s\n", e.what());
        return 2;
    }
    std::printf("tapwire-pktgen: %s\n", traffic.describe().c_str());
    if (!o.targets_path.empty()) {
        std::FILE* f = std::fopen(o.targets_path.c_str(), "w");
        if (!f) fail("cannot create " + o.targets_path + ": " + std::strerror(errno));
        for (std::size_t i = 0; i < traffic.targets().size(); ++i)
            std::fprintf(f, "%zu %s\n", i + 1, traffic.targets()[i].c_str());
        if (std::fclose(f) != 0) fail("cannot write " + o.targets_path);
    }

    PcapWriter pcap;
    std::string error;
    if (!o.pcap_path.empty() && !pcap.open(o.pcap_path, PcapPrecision::Nanosecond, error))
        fail(error);

    rte_mempool* pool = nullptr;
    if (eal) {
        // Enough for the tx ring, a burst in flight and the rx queue, plus the cache.
        pool = rte_pktmbuf_pool_create("pktgen_pool", 8191, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
                                       int(rte_socket_id()));
        if (!pool) fail(std::string("mbuf pool: ") + rte_strerror(rte_errno));
        if (std::string e = start_port(o.port, pool, o.link_wait_s); !e.empty())
            fail("port " + std::to_string(o.port) + ": " + e);
        char name[RTE_ETH_NAME_MAX_LEN] = "?";
        rte_eth_dev_get_name_by_port(o.port, name);
        std::printf("tapwire-pktgen: port %u (%s) up; sending at %s\n", unsigned(o.port), name,
                    o.rate > 0 ? (std::to_string(std::uint64_t(o.rate)) + " pps").c_str()
                               : "the port's pace");
    } else {
        std::printf("tapwire-pktgen: no port: writing %s only\n", o.pcap_path.c_str());
    }
    std::fflush(stdout);

    const unsigned burst = o.burst;
    std::vector<rte_mbuf*> mbufs(burst);
    std::vector<std::uint8_t> sip_of(burst), targeted_of(burst);
    std::vector<std::uint32_t> len_of(burst);
    std::vector<std::uint8_t> scratch;
    unsigned pending = 0;  // built but not yet taken (--retry)

    Totals t, last;
    std::uint64_t generated = 0;
    const auto start = SteadyClock::now();
    const std::uint64_t start_wall = std::uint64_t(tapwire::unix_time_ns());
    auto elapsed_s = [&](SteadyClock::time_point now) {
        return std::chrono::duration<double>(now - start).count();
    };
    auto last_report = start;
    bool traffic_done = false;
    std::uint64_t bursts = 0;

    while (!g_stop.load() && !g_stop_sending.load()) {
        auto now = SteadyClock::now();
        double el = elapsed_s(now);
        if (!o.quiet && now - last_report >= std::chrono::seconds(1)) {
            double dt = std::chrono::duration<double>(now - last_report).count();
            std::printf(
                "tapwire-pktgen: %7.1f s %12.0f pps %10.1f Mbit/s  tx drops %llu  sent "
                "%llu\n",
                el, double(t.packets - last.packets) / dt,
                double(t.bytes - last.bytes) * 8 / dt / 1e6,
                (unsigned long long)(t.tx_failed - last.tx_failed), (unsigned long long)t.packets);
            std::fflush(stdout);
            last = t;
            last_report = now;
        }
        if (o.duration_s > 0 && el >= o.duration_s) break;
        traffic_done = traffic_done || (o.packets && generated >= o.packets) ||
                       (o.passes && traffic.passes_done() >= o.passes);
        if (traffic_done && pending == 0) break;

        // How many frames are due now: the schedule is absolute, so a stall is caught up.
        std::uint64_t want = burst - pending;
        if (traffic_done) want = 0;
        if (o.packets) want = std::min(want, o.packets - generated);
        if (o.rate > 0 && want > 0) {
            std::uint64_t due = std::uint64_t(el * o.rate) + 1;
            std::uint64_t ahead = due > generated ? due - generated : 0;
            if (ahead == 0 && pending == 0) {
                // Sleep when the next frame is far off: the pktgen shares a small machine.
                double wait_s = double(generated + 1) / o.rate - el;
                if (wait_s > 200e-6) usleep(useconds_t(std::min(wait_s, 0.01) * 0.5e6));
                continue;
            }
            want = std::min(want, ahead);
        }
        unsigned n = pending;
        if (want > 0 && eal && rte_pktmbuf_alloc_bulk(pool, mbufs.data() + n, unsigned(want)) != 0)
            want = 0;  // pool momentarily empty (the PMD still holds mbufs): try again
        for (unsigned k = 0; k < want; ++k, ++n) {
            Frame f = traffic.next(scratch);
            // Timestamps: when the frame was due (paced) or sent (as fast as possible).
            std::uint64_t ts =
                start_wall +
                std::uint64_t(o.rate > 0 ? double(generated) / o.rate * 1e9 : el * 1e9);
            ++generated;
            if (pcap.is_open() && !pcap.write(ts, f.bytes, error)) fail(error);
            sip_of[n] = f.sip_messages;
            targeted_of[n] = f.targeted;
            len_of[n] = std::uint32_t(f.bytes.size());
            if (eal && !to_mbuf(mbufs[n], pool, f.bytes)) fail("mbuf pool exhausted by a chain");
            if (o.passes && traffic.passes_done() >= o.passes) {
                ++n;
                traffic_done = true;
                if (eal && want > k + 1)
                    rte_pktmbuf_free_bulk(mbufs.data() + n, unsigned(want - k - 1));
                break;
            }
        }
        unsigned taken = eal ? rte_eth_tx_burst(o.port, 0, mbufs.data(), std::uint16_t(n)) : n;
        for (unsigned k = 0; k < taken; ++k) {
            t.bytes += len_of[k];
            t.sip_messages += sip_of[k];
            t.targeted += targeted_of[k];
        }
        t.packets += taken;
        unsigned left = n - taken;
        if (left && o.retry) {
            std::memmove(mbufs.data(), mbufs.data() + taken, left * sizeof(rte_mbuf*));
            std::memmove(sip_of.data(), sip_of.data() + taken, left);
            std::memmove(targeted_of.data(), targeted_of.data() + taken, left);
            std::memmove(len_of.data(), len_of.data() + taken, left * sizeof(std::uint32_t));
            pending = left;
        } else {
            if (left) rte_pktmbuf_free_bulk(mbufs.data() + taken, left);
            t.tx_failed += left;
            pending = 0;
        }
        if (eal && ++bursts % 64 == 0) {
            // Nothing should come back on a tx-only link; drop it rather than stall the peer.
            rte_mbuf* rx[32];
            std::uint16_t got = rte_eth_rx_burst(o.port, 0, rx, 32);
            if (got) rte_pktmbuf_free_bulk(rx, got);
        }
    }
    double secs = elapsed_s(SteadyClock::now());
    if (pending) rte_pktmbuf_free_bulk(mbufs.data(), pending);

    if (pcap.is_open() && !pcap.close(error)) fail(error);
    std::printf("tapwire-pktgen: %s; summary:\n", g_stop.load() ? "interrupted" : "done");
    std::printf("  %-16s %14llu\n", "packets_sent", (unsigned long long)t.packets);
    std::printf("  %-16s %14llu\n", "bytes_sent", (unsigned long long)t.bytes);
    std::printf("  %-16s %14llu\n", "tx_failed", (unsigned long long)t.tx_failed);
    std::printf("  %-16s %14llu\n", "sip_messages", (unsigned long long)t.sip_messages);
    std::printf("  %-16s %14llu\n", "targeted_frames", (unsigned long long)t.targeted);
    std::printf("  %-16s %14llu\n", "passes", (unsigned long long)traffic.passes_done());
    std::printf("  %-16s %14.3f\n", "duration_s", secs);
    std::printf("  %-16s %14.0f\n", "avg_pps", secs > 0 ? double(t.packets) / secs : 0.0);
    std::printf("  %-16s %14.1f\n", "avg_mbit_s", secs > 0 ? double(t.bytes) * 8 / secs / 1e6 : 0);
    if (pcap.is_open() || !o.pcap_path.empty())
        std::printf("  %-16s %14llu  (%s)\n", "pcap_packets",
                    (unsigned long long)pcap.packets_written(), o.pcap_path.c_str());
    std::fflush(stdout);
    if (eal && o.hold && !g_stop.load()) {
        std::printf("tapwire-pktgen: holding the port open until SIGINT or SIGTERM\n");
        std::fflush(stdout);
        while (!g_stop.load())
            usleep(20'000);
    }
    if (eal) {
        // Let the PMD hand the last burst over before the link goes away.
        usleep(100'000);
        rte_eth_dev_stop(o.port);
        rte_eth_dev_close(o.port);
        rte_eal_cleanup();
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        return run(argc, argv);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "tapwire-pktgen: %s\n", e.what());
        return 1;
    }
}
