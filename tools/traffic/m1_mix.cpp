#include "tools/traffic/m1_mix.hpp"
#include "tools/traffic/rng.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>
#include <string_view>
#include <utility>

#include "tools/traffic/frame_builder.hpp"

namespace tapwire::traffic {

namespace {

constexpr std::uint64_t kUs = 1'000;
constexpr std::uint64_t kMs = 1'000'000;
constexpr std::uint64_t kSliceNs = 20 * kMs;  // G.711 ptime: every leg sends once per slice
constexpr std::uint32_t kPcmuBytes = 160;     // 20 ms at 8 kHz: a 214-byte frame
constexpr std::uint8_t kDscpMedia = 46;       // EF
constexpr std::uint64_t kNtpUnixOffset = 2'208'988'800ull;

// splitmix64, as in call_flow.cpp: the same bytes on every platform.
std::uint64_t hash64(std::uint64_t a, std::uint64_t salt) {
    Rng r(a * 0x9e3779b97f4a7c15ull ^ salt);
    return r.next();
}

// Picks round(n * share) of the indices [0, n), evenly spread (Bresenham), so a small window
// still gets its exact share; phase shifts where the picks fall, so that two selections
// (targeted, TCP) do not pick the same calls.
bool picked(std::uint64_t i, double share, double phase) {
    return std::floor(double(i + 1) * share + phase) > std::floor(double(i) * share + phase);
}

std::string caller_number(std::uint32_t call) {
    return "+4930" + std::to_string(20'000'000u + call);
}
std::string callee_number(std::uint32_t call) {
    return "+4940" + std::to_string(30'000'000u + call);
}

// Media endpoints: every UA has its own address, so 20,000 calls are 40,000 distinct flows.
IpAddress caller_media(std::uint32_t call) {
    return IpAddress::v4(0x0a400000u + call);  // 10.64.0.0/10
}
IpAddress callee_media(std::uint32_t call) {
    return IpAddress::v4(0x0a800000u + call);  // 10.128.0.0/10
}
std::uint16_t caller_port(std::uint32_t call) {
    return std::uint16_t(16384 + 2 * (call % 8192));
}
std::uint16_t callee_port(std::uint32_t call) {
    return std::uint16_t(32768 + 2 * (call % 8192));
}

CallSpec make_call(std::uint32_t call, bool targeted, bool tcp) {
    CallSpec c;
    c.caller.uri = "sip:" + caller_number(call) + "@carrier-a.test;user=phone";
    c.caller.media_ip = caller_media(call);
    c.caller.rtp_port = caller_port(call);
    c.callee.uri = "sip:" + callee_number(call) + "@carrier-b.test;user=phone";
    c.callee.media_ip = callee_media(call);
    c.callee.rtp_port = callee_port(call);
    c.p_asserted_identity = "<" + c.caller.uri + ">";  // IMS carriers assert the caller
    // A carrier's traffic crosses a handful of SBC/proxy pairs.
    c.caller_proxy = IpAddress::v4(0xc6336400u + 10 + call % 8);  // 198.51.100.10-17
    c.callee_proxy = IpAddress::v4(0xcb007100u + 20 + call % 8);  // 203.0.113.20-27
    c.transport = tcp ? SipTransport::Tcp : SipTransport::Udp;
    c.codec = Codec::Pcmu;
    c.rtp_packets = 1;  // the renderer's media is not used: the window builds its own
    c.rtcp_every_packets = 1;
    c.ending = call % 3 == 0 ? CallEnding::CalleeBye : CallEnding::CallerBye;
    c.targeted = targeted;
    return c;
}

// One leg of a call: caller->callee (0) or callee->caller (1).
struct Leg {
    IpAddress src, dst;
    std::uint16_t sport = 0, dport = 0;
    std::uint32_t ssrc = 0;
    std::uint16_t seq0 = 0;
    std::uint32_t ts0 = 0;
    std::uint16_t ip_id0 = 0;
};

Leg leg_of(std::uint32_t call, int dir, std::uint64_t seed) {
    Leg l;
    bool from_caller = dir == 0;
    l.src = from_caller ? caller_media(call) : callee_media(call);
    l.dst = from_caller ? callee_media(call) : caller_media(call);
    l.sport = from_caller ? caller_port(call) : callee_port(call);
    l.dport = from_caller ? callee_port(call) : caller_port(call);
    std::uint64_t h = hash64(std::uint64_t(call) * 2 + std::uint64_t(dir), seed);
    l.ssrc = std::uint32_t(h);
    l.seq0 = std::uint16_t(h >> 32);
    l.ts0 = std::uint32_t(h >> 16);
    l.ip_id0 = std::uint16_t(h >> 48);
    return l;
}

IpSpec ip_spec(const Leg& l, std::uint32_t id) {
    IpSpec s;
    s.src = l.src;
    s.dst = l.dst;
    s.dscp = kDscpMedia;
    s.id = id;
    return s;
}

// RTP (RFC 3550 section 5.1) with a G.711 mu-law payload: the n-th packet of the leg.
std::size_t rtp_frame(std::span<std::uint8_t> buf, const Leg& l, std::uint32_t n) {
    std::array<std::uint8_t, 12 + kPcmuBytes> rtp{};
    rtp[0] = 0x80;  // V=2
    rtp[1] = 0;     // PT 0 (PCMU), no marker mid-talkspurt
    store_be16(rtp.data() + 2, std::uint16_t(l.seq0 + n));
    store_be32(rtp.data() + 4, l.ts0 + n * kPcmuBytes);
    store_be32(rtp.data() + 8, l.ssrc);
    for (std::size_t i = 12; i < rtp.size(); ++i)
        rtp[i] = std::uint8_t(0xd5 ^ ((i + n) & 0x0f));  // low-level noise, not silence
    return build_udp_frame(buf, l2_for(l.src, l.dst), ip_spec(l, l.ip_id0 + n), {l.sport, l.dport},
                           ByteSpan(rtp.data(), rtp.size()));
}

// Compound RTCP: SR with one report block, then SDES CNAME (RFC 3550 sections 6.4.1, 6.5),
// to port + 1 (RFC 3550 section 11).
std::vector<std::uint8_t> rtcp_frame(const Leg& l, const Leg& other, std::uint32_t call,
                                     std::uint32_t sent, std::uint64_t unix_ns) {
    std::vector<std::uint8_t> p(52, 0);
    p[0] = 0x81;  // V=2, RC=1
    p[1] = 200;   // SR
    store_be16(p.data() + 2, 52 / 4 - 1);
    store_be32(p.data() + 4, l.ssrc);
    std::uint64_t sec = unix_ns / 1'000'000'000u + kNtpUnixOffset;
    std::uint64_t frac = ((unix_ns % 1'000'000'000u) << 32) / 1'000'000'000u;
    store_be64(p.data() + 8, (sec << 32) | frac);
    store_be32(p.data() + 16, l.ts0 + sent * kPcmuBytes);
    store_be32(p.data() + 20, sent);
    store_be32(p.data() + 24, sent * kPcmuBytes);
    std::uint8_t* rb = p.data() + 28;
    store_be32(rb, other.ssrc);
    store_be32(rb + 8, other.seq0 + sent);
    store_be32(rb + 12, 12);  // jitter, timestamp units
    std::string cname = "ua" + std::to_string(call) + "@" + l.src.to_string();
    std::size_t chunk = (4 + 2 + cname.size() + 1 + 3) & ~std::size_t(3);
    std::size_t at = p.size();
    p.resize(at + 4 + chunk, 0);
    std::uint8_t* sd = p.data() + at;
    sd[0] = 0x81;  // V=2, SC=1
    sd[1] = 202;   // SDES
    store_be16(sd + 2, std::uint16_t((4 + chunk) / 4 - 1));
    store_be32(sd + 4, l.ssrc);
    sd[8] = 1;  // CNAME
    sd[9] = std::uint8_t(cname.size());
    std::copy(cname.begin(), cname.end(), sd + 10);
    Leg ctl = l;
    ctl.sport = std::uint16_t(l.sport + 1);
    ctl.dport = std::uint16_t(l.dport + 1);
    std::vector<std::uint8_t> frame;
    build_udp_frame(frame, l2_for(ctl.src, ctl.dst), ip_spec(ctl, ctl.ip_id0 + 7 * sent),
                    {ctl.sport, ctl.dport}, ByteSpan(p.data(), p.size()));
    return frame;
}

std::uint32_t coprime_stride(std::uint32_t n, std::uint32_t start) {
    for (std::uint32_t s = start;; ++s)
        if (std::gcd(s, n) == 1) return s;
}

// Non-RTP frames wait here with their place in the window until merged with the RTP.
struct Pending {
    std::uint64_t time_ns;
    std::uint32_t index;  // into the staging list
};

// Lays the frames of one unit (a dialog, an exchange, a report) out from start, 1 us apart:
// a unit keeps its order (TCP reassembly depends on it) and never wraps around the window.
void stage_unit(const std::vector<LabeledFrame>& frames, std::uint64_t start_ns, bool sip_only,
                std::size_t max_frames, FrameList& staging, std::vector<Pending>& pending) {
    std::uint64_t t = start_ns;
    for (const LabeledFrame& f : frames) {
        if (max_frames == 0) break;
        if (sip_only && f.kind != FrameKind::Sip) continue;
        pending.push_back({t, std::uint32_t(staging.size())});
        staging.add(ByteSpan(f.bytes.data(), f.bytes.size()), f.kind, f.targeted, f.sip_messages);
        t += kUs;
        --max_frames;
    }
}

void check(const M1Config& c) {
    auto share_ok = [](double s) { return s >= 0 && s < 1; };
    if (c.concurrent_calls == 0) throw std::invalid_argument("M1: concurrent_calls must be > 0");
    if (c.concurrent_calls > 1'000'000)
        throw std::invalid_argument("M1: concurrent_calls above 1,000,000");
    if (!share_ok(c.tcp_share) || !share_ok(c.targeted_share) || !share_ok(c.background_share))
        throw std::invalid_argument("M1: shares must be in [0, 1)");
    if (c.new_calls_per_second < 0) throw std::invalid_argument("M1: new_calls_per_second < 0");
    if (c.window_ms < 20) throw std::invalid_argument("M1: window_ms must be at least 20");
    if (c.rtcp_interval_ms == 0) throw std::invalid_argument("M1: rtcp_interval_ms must be > 0");
}

}  // namespace

void FrameList::add(ByteSpan frame, FrameKind kind, bool targeted, std::uint8_t sip_messages) {
    Entry e;
    e.offset = data_.size();
    e.length = std::uint32_t(frame.size());
    e.kind = kind;
    e.targeted = targeted;
    e.sip_messages = sip_messages;
    data_.insert(data_.end(), frame.begin(), frame.end());
    entries_.push_back(e);
}

void FrameList::reserve(std::size_t frames, std::size_t bytes) {
    entries_.reserve(frames);
    data_.reserve(bytes);
}

M1Mix build_m1_mix(const M1Config& config) {
    check(config);
    M1Mix mix;
    mix.config = config;
    M1Composition& comp = mix.composition;
    const std::uint32_t calls = config.concurrent_calls;
    const std::uint64_t window_ns = std::uint64_t(config.window_ms) * kMs;

    // --- Targets: the targeted calls' identities first, then filler no call uses.
    std::vector<bool> targeted(calls);
    for (std::uint32_t i = 0; i < calls; ++i) {
        targeted[i] = picked(i, config.targeted_share, 0.5);
        if (!targeted[i]) continue;
        // Half by the called number, half by the calling number: both directions of
        // "target" occur.
        mix.targets.push_back(comp.targeted_calls % 2 == 0 ? callee_number(i) : caller_number(i));
        ++comp.targeted_calls;
    }
    const std::uint32_t new_calls =
        std::uint32_t(std::llround(config.new_calls_per_second * config.window_ms / 1000.0));
    std::vector<bool> new_targeted(new_calls), new_tcp(new_calls);
    for (std::uint32_t j = 0; j < new_calls; ++j) {
        new_targeted[j] = picked(j, config.targeted_share, 0.5);
        new_tcp[j] = picked(j, config.tcp_share, 0.25);
        if (new_targeted[j]) {
            std::uint32_t call = calls + j;
            mix.targets.push_back(j % 2 == 0 ? callee_number(call) : caller_number(call));
            ++comp.new_calls_targeted;
        }
        comp.new_calls_tcp += new_tcp[j] ? 1 : 0;
    }
    comp.new_calls = new_calls;
    mix.call_targets = std::uint32_t(mix.targets.size());
    if (mix.call_targets > config.target_identities)
        throw std::invalid_argument(
            "M1: target_identities (" + std::to_string(config.target_identities) +
            ") is below the number of targeted calls (" + std::to_string(mix.call_targets) + ")");
    static constexpr const char* kDomains[] = {"ims1.carrier.example", "ims2.carrier.example",
                                               "voip.partner.example", "pbx.customer.example"};
    for (std::uint32_t f = 0; mix.targets.size() < config.target_identities; ++f) {
        // Shares as bench_match's workload (without IP targets: M1 names identities):
        // ~47% E.164, ~47% SIP URIs, 5% number ranges, 0.1% globs. Number ranges sit in
        // +4969..., never used by the calls (+4930..., +4940...).
        std::uint32_t kind = f % 1000;
        if (kind == 999)
            mix.targets.push_back("sip:*@blocked" + std::to_string(f) + ".example");
        else if (kind % 20 == 0)
            mix.targets.push_back("+4969" + std::to_string(10'000'000u + f) + "*");
        else if (kind % 2)
            mix.targets.push_back("+4989" + std::to_string(10'000'000u + f));
        else
            mix.targets.push_back("sip:user." + std::to_string(f) + "@" + kDomains[f % 4]);
    }

    // --- Warm-up: every concurrent call's set-up (INVITE, 100, 180, 200, ACK; over TCP with
    // its handshake), up to the BYE.
    mix.warmup.reserve(std::size_t(calls) * 6, std::size_t(calls) * 6 * 700);
    for (std::uint32_t i = 0; i < calls; ++i) {
        CallSpec spec = make_call(i, targeted[i], picked(i, config.tcp_share, 0.25));
        std::vector<LabeledFrame> frames =
            render_call(spec, int(i), kDefaultEpochNs, hash64(i, config.seed));
        for (const LabeledFrame& f : frames) {
            if (f.kind == FrameKind::Sip && f.note.rfind("BYE", 0) == 0) break;
            if (f.kind != FrameKind::Sip) continue;
            mix.warmup.add(ByteSpan(f.bytes.data(), f.bytes.size()), f.kind, f.targeted,
                           f.sip_messages);
            comp.warmup_messages += f.sip_messages;
        }
    }
    comp.warmup_frames = mix.warmup.size();

    // --- The window's shares.
    const std::uint32_t legs = 2 * calls;
    comp.rtp = std::uint64_t(std::llround(double(legs) * config.window_ms / 20.0));
    comp.rtcp = std::uint64_t(
        std::llround(double(legs) * config.window_ms / double(config.rtcp_interval_ms)));

    FrameList staging;  // non-RTP frames, placed by time below
    std::vector<Pending> pending;

    // SIP: complete dialogs of the new calls, evenly spread.
    for (std::uint32_t j = 0; j < new_calls; ++j) {
        std::uint32_t call = calls + j;
        CallSpec spec = make_call(call, new_targeted[j], new_tcp[j]);
        std::vector<LabeledFrame> frames =
            render_call(spec, int(call), kDefaultEpochNs, hash64(call, config.seed));
        std::size_t before = staging.size();
        stage_unit(frames, (2 * j + 1) * window_ns / (2 * new_calls), true, SIZE_MAX, staging,
                   pending);
        for (std::size_t k = before; k < staging.size(); ++k) {
            const FrameList::Entry& e = staging.entry(k);
            ++comp.sip_frames;
            comp.sip_messages += e.sip_messages;
            if (e.targeted) comp.expected_hits += e.sip_messages;
        }
    }

    // RTCP: one sender report per leg every rtcp_interval, so over the window a spread of
    // legs (a stride coprime with the leg count visits every leg before repeating).
    const std::uint32_t stride = coprime_stride(legs, 7919);
    for (std::uint64_t k = 0; k < comp.rtcp; ++k) {
        std::uint32_t leg = std::uint32_t((k * stride + 13) % legs);
        std::uint32_t call = leg / 2;
        int dir = int(leg % 2);
        Leg l = leg_of(call, dir, config.seed);
        Leg o = leg_of(call, 1 - dir, config.seed);
        std::uint64_t t = (2 * k + 1) * window_ns / (2 * comp.rtcp);
        auto frame = rtcp_frame(l, o, call, 250 + std::uint32_t(k % 1000), kDefaultEpochNs + t);
        pending.push_back({t, std::uint32_t(staging.size())});
        staging.add(ByteSpan(frame.data(), frame.size()), FrameKind::Rtcp, targeted[call], 0);
        if (targeted[call]) ++comp.expected_hits;
    }

    // Background: the rest to background_share of all frames: DNS, HTTPS over TCP, ARP.
    const std::uint64_t voip = comp.rtp + comp.rtcp + comp.sip_frames;
    comp.background = std::uint64_t(
        std::llround(config.background_share / (1 - config.background_share) * double(voip)));
    {
        // Render units until there are enough frames, then place them evenly.
        std::vector<std::vector<LabeledFrame>> units;
        std::uint64_t have = 0;
        for (std::uint32_t u = 0; have < comp.background; ++u) {
            BackgroundSpec b;
            std::uint32_t pick = u % 20;
            b.kind = pick < 9    ? BackgroundKind::Dns
                     : pick < 18 ? BackgroundKind::Https
                                 : BackgroundKind::Arp;
            b.client = IpAddress::v4(0x0ac80000u + 2 + u % 4000);  // 10.200.0.2...
            b.server = b.kind == BackgroundKind::Dns   ? IpAddress::v4(0xc0000235u)  // .53
                       : b.kind == BackgroundKind::Arp ? IpAddress::v4(0x0ac80001u)
                                                       : IpAddress::v4(0xc0000250u + u % 16);
            b.count = 1;
            units.push_back(render_background(b, kDefaultEpochNs, hash64(u, config.seed ^ 0xb9)));
            have += units.back().size();
        }
        std::uint64_t left = comp.background;
        for (std::size_t u = 0; u < units.size(); ++u) {
            std::uint64_t t = (2 * u + 1) * window_ns / (2 * units.size());
            std::size_t take = std::size_t(std::min<std::uint64_t>(left, units[u].size()));
            stage_unit(units[u], t, false, take, staging, pending);
            left -= take;
        }
    }

    std::stable_sort(pending.begin(), pending.end(),
                     [](const Pending& a, const Pending& b) { return a.time_ns < b.time_ns; });

    // --- Merge: RTP slice after slice (every leg once per slice, shuffled), non-RTP frames
    // at their times.
    const std::uint64_t total = comp.rtp + staging.size();
    mix.window.reserve(total, comp.rtp * 214 + staging.total_bytes());
    std::vector<std::uint32_t> order(legs);
    std::iota(order.begin(), order.end(), 0u);
    Rng rng(hash64(0x5110e, config.seed));
    std::vector<Leg> leg_table(legs);
    for (std::uint32_t leg = 0; leg < legs; ++leg)
        leg_table[leg] = leg_of(leg / 2, int(leg % 2), config.seed);
    std::array<std::uint8_t, 256> buf{};
    std::size_t next_pending = 0;
    auto flush_until = [&](std::uint64_t t) {
        while (next_pending < pending.size() && pending[next_pending].time_ns <= t) {
            std::uint32_t k = pending[next_pending++].index;
            const FrameList::Entry& e = staging.entry(k);
            mix.window.add(staging.frame(k), e.kind, e.targeted, e.sip_messages);
        }
    };
    std::uint64_t emitted = 0;
    for (std::uint32_t slice = 0; emitted < comp.rtp; ++slice) {
        for (std::uint32_t i = legs - 1; i > 0; --i)  // Fisher-Yates
            std::swap(order[i], order[rng.below(i + 1)]);
        for (std::uint32_t r = 0; r < legs && emitted < comp.rtp; ++r, ++emitted) {
            std::uint64_t t = slice * kSliceNs + r * kSliceNs / legs;
            flush_until(t);
            std::uint32_t leg = order[r];
            std::size_t n = rtp_frame(buf, leg_table[leg], slice);
            bool hit = targeted[leg / 2];
            mix.window.add(ByteSpan(buf.data(), n), FrameKind::Rtp, hit, 0);
            if (hit) ++comp.expected_hits;
        }
        if (emitted % legs == 0) ++comp.rtp_slices_full;
    }
    flush_until(UINT64_MAX);
    comp.frames = mix.window.size();
    return mix;
}

}  // namespace tapwire::traffic
