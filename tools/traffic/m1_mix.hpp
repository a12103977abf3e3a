// The standard benchmark mix M1 (issue 3, "Benchmark"): 20,000 concurrent G.711 calls
// (214-byte RTP frames both ways every 20 ms, an RTCP sender report every 5 s per
// direction), 200 new calls per second with complete SIP dialogs (10% over TCP), 2% of
// calls targeted, 100,000 active target identities, and 5% non-VoIP background.
//
// A benchmark cannot replay seconds of 2 Mpps traffic from memory, and need not: it replays
// a window of the mix in a loop. The window keeps M1's proportions exactly (rounded to whole
// frames): every frame kind gets its share of window_ms of traffic, the RTP frames are
// whole 20 ms "slices" in which every leg of every concurrent call sends once (in a
// shuffled order), so all 40,000 media flows are seen, and the SIP, RTCP and background
// units are spread evenly over it. Signalling is rendered by call_flow.hpp (real dialogs,
// TCP connections with handshake and teardown), frames by frame_builder.hpp.
//
// The concurrent calls were set up before the window starts: warmup holds their SIP set-up
// (INVITE up to the ACK) so that a dataplane learns the targeted calls' dialogs and media
// before it sees their RTP. Deterministic: the same config gives the same bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "common/bytes.hpp"
#include "tools/traffic/call_flow.hpp"

namespace tapwire::traffic {

/// M1's parameters; the defaults are the figures.
struct M1Config {
    std::uint32_t concurrent_calls = 20'000;
    double new_calls_per_second = 200;
    double tcp_share = 0.10;       // of new calls (and of the concurrent calls' set-up)
    double targeted_share = 0.02;  // of calls
    std::uint32_t target_identities = 100'000;
    double background_share = 0.05;  // of all frames
    std::uint32_t rtcp_interval_ms = 5'000;
    std::uint32_t window_ms = 250;  // 250 ms holds 50 new calls: exactly 1 targeted, 5 on TCP
    std::uint64_t seed = 1;
};

/// Frames stored back to back (a few hundred thousand small vectors would cost more in
/// allocator overhead than the frames themselves).
class FrameList {
  public:
    struct Entry {
        std::uint64_t offset = 0;
        std::uint32_t length = 0;
        FrameKind kind = FrameKind::Background;
        bool targeted = false;          // belongs to a call under intercept
        std::uint8_t sip_messages = 0;  // SIP messages completed in this frame
    };

    void add(ByteSpan frame, FrameKind kind, bool targeted, std::uint8_t sip_messages);
    void reserve(std::size_t frames, std::size_t bytes);

    std::size_t size() const noexcept { return entries_.size(); }
    bool empty() const noexcept { return entries_.empty(); }
    const Entry& entry(std::size_t i) const noexcept { return entries_[i]; }
    ByteSpan frame(std::size_t i) const noexcept {
        return ByteSpan(data_.data() + entries_[i].offset, entries_[i].length);
    }
    std::uint64_t total_bytes() const noexcept { return data_.size(); }

  private:
    std::vector<std::uint8_t> data_;
    std::vector<Entry> entries_;
};

/// What the window holds, for the benchmark's header and its hit check.
struct M1Composition {
    std::uint64_t frames = 0;
    std::uint64_t rtp = 0;
    std::uint64_t rtcp = 0;
    std::uint64_t sip_frames = 0;  // incl. TCP handshake, ACK and FIN segments
    std::uint64_t sip_messages = 0;
    std::uint64_t background = 0;
    std::uint32_t targeted_calls = 0;  // concurrent calls under intercept
    std::uint32_t new_calls = 0;       // complete dialogs in the window
    std::uint32_t new_calls_tcp = 0;
    std::uint32_t new_calls_targeted = 0;
    /// Hits one pass over the window should produce: every RTP and RTCP frame of a targeted
    /// call and every SIP message of a targeted dialog.
    std::uint64_t expected_hits = 0;
    std::uint64_t warmup_frames = 0;
    std::uint64_t warmup_messages = 0;
    std::uint32_t rtp_slices_full = 0;  // whole 20 ms slices (each flow once); plus a part
};

struct M1Mix {
    M1Config config;
    /// config.target_identities identities as a warrant names them ("+494030000017",
    /// "sip:user.42@ims1.carrier.example", "+496910042*"): first the identities of the
    /// targeted calls, then filler that no call in the mix uses (exact E.164 numbers, SIP
    /// URIs, number-range prefixes and a few globs, as in bench_match).
    std::vector<std::string> targets;
    std::uint32_t call_targets = 0;  // targets[0, call_targets) name calls of the mix
    FrameList warmup;                // set-up of the concurrent calls, call after call
    FrameList window;                // the steady-state window, in replay order
    M1Composition composition;
};

/// Builds the mix. Throws std::invalid_argument when config is out of range (no calls, a
/// share outside [0, 1), a window shorter than one 20 ms slice, fewer targets than targeted
/// calls). Takes about a second for the defaults (rendering 20,000 call set-ups).
M1Mix build_m1_mix(const M1Config& config);

}  // namespace tapwire::traffic
