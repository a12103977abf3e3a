// A dataplane worker: one lcore polling its share of the (port, queue) pairs, running each
// burst to completion: parse L2-L4, classify SIP / RTP / other, match SIP identities
// against the target set, follow dialogs and media in the shared tables, copy every hit into
// this worker's ring, and release (passive) or forward (inline) the packet.
//
// Everything the loop touches is this worker's (reassembly state, counters, ring, Hyperscan
// scratch in the snapshot) or lock-free to read (flow tables, target snapshot). It never
// allocates, locks or blocks: a full ring or an empty hit pool drops the copy and counts it;
// production traffic is never delayed by interception.
#pragma once

#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_ring.h>

#include <array>
#include <atomic>
#include <bitset>
#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "common/packet.hpp"
#include "common/shm_contract.hpp"
#include "common/sip.hpp"
#include "dataplane/flow_tables.hpp"
#include "dataplane/ports.hpp"
#include "dataplane/rcu.hpp"
#include "dataplane/reassembly.hpp"
#include "dataplane/target_set.hpp"

namespace tapwire::dataplane {

/// Wall-clock nanoseconds from the TSC, without a syscall per burst. DPDK measures the TSC
/// rate once at start-up, and that figure can be off by a few hundred ppm (0.15% was seen on
/// a VM: 5 s an hour, so records would carry wrong interception times and hits would fall
/// outside warrant windows), so the main lcore re-anchors the clock against CLOCK_REALTIME
/// about once a second (recalibrate), with the TSC rate measured over the last interval.
/// Workers read the anchor under a seqlock: no lock, no syscall, a few ns per burst. A
/// re-anchor may move the clock back by the error of one interval; workers keep their own
/// time monotonic (Worker::run).
class Clock {
  public:
    /// Anchored now, at DPDK's TSC rate (after rte_eal_init), or at `tsc_hz` (tests).
    explicit Clock(std::uint64_t tsc_hz = 0);
    Clock(const Clock&) = delete;
    Clock& operator=(const Clock&) = delete;

    /// Any thread.
    std::uint64_t ns(std::uint64_t tsc) const noexcept;
    std::uint64_t ns_at_start() const noexcept { return ns_at_start_; }
    std::uint64_t tsc_at_start() const noexcept { return tsc_at_start_; }
    std::uint64_t tsc_hz() const noexcept { return hz_.load(std::memory_order_relaxed); }

    /// One writer (the main lcore): re-anchors at now, measuring the TSC rate since the last
    /// call when that was at least `min_interval_ns` ago.
    void recalibrate(std::uint64_t min_interval_ns = 500'000'000) noexcept;

  private:
    void publish(std::uint64_t tsc, std::uint64_t ns, std::uint64_t hz) noexcept;

    std::atomic<std::uint64_t> seq_{0};  // odd while the anchor is being written
    std::atomic<std::uint64_t> tsc_{0}, ns_{0}, hz_{1};
    std::uint64_t tsc_at_start_ = 0, ns_at_start_ = 0;
    std::uint64_t last_tsc_ = 0, last_real_ns_ = 0;  // writer only: the previous anchor
};

/// A process-wide clock for workers whose setup names none (tests, benchmarks).
const Clock& default_clock();

/// What a worker needs; everything is created before the worker starts.
struct WorkerSetup {
    unsigned index = 0;  // 0..workers-1: ring name, scratch index, counters slot
    unsigned rcu_thread_id = 0;
    std::vector<RxQueue> queues;
    bool inline_mode = false;
    std::uint16_t burst = 32;
    std::uint32_t snap_length = 9000;
    const std::bitset<65536>* sip_ports = nullptr;
    rte_ring* hit_ring = nullptr;
    rte_mempool* hit_pool = nullptr;
    shm::WorkerCounters* counters = nullptr;
    FlowTables* tables = nullptr;
    QuiescentState* qs = nullptr;
    const Published<TargetSet>* targets = nullptr;
    FragmentConfig fragments;
    TcpStreamConfig tcp;
    const Clock* clock = nullptr;  // default_clock() when null
};

class Worker {
  public:
    explicit Worker(const WorkerSetup& setup);

    /// The lcore loop; returns when stop becomes true.
    void run(const std::atomic<bool>& stop) noexcept;

    /// Inspects a burst of received packets under the current target snapshot and enqueues
    /// their hits. Does not free or forward the packets. The lcore loop and the unit tests
    /// both drive the pipeline through here. The caller reports its quiescent state after.
    void process(rte_mbuf* const* packets, std::uint16_t count, std::uint64_t now_ns) noexcept;

    const FragmentReassembler& fragments() const noexcept { return fragments_; }
    const TcpStreamTable& tcp_streams() const noexcept { return tcp_; }

  private:
    struct Addressing {
        IpAddress src, dst;
        std::uint16_t src_port = 0, dst_port = 0;
        std::uint8_t l4_proto = 0;
        std::uint16_t port = 0;  // DPDK port
    };

    void count(shm::WorkerCounter c, std::uint64_t n = 1) noexcept { (*counters_)[c] += n; }
    void inspect(rte_mbuf* m, std::uint64_t now_ns) noexcept;
    void flush_hits() noexcept;
    void on_udp(rte_mbuf* m, ByteSpan frame, const PacketInfo& info, std::uint64_t now) noexcept;
    void on_fragment(ByteSpan frame, const PacketInfo& info, const Addressing& a,
                     std::uint64_t now) noexcept;
    void on_sip(std::string_view text, const Addressing& a, rte_mbuf* packet, ByteSpan frame,
                std::uint16_t payload_offset, std::uint64_t now) noexcept;
    bool on_media(rte_mbuf* m, ByteSpan frame, const PacketInfo& info, const Addressing& a,
                  std::uint64_t now) noexcept;
    void on_ip_targets(ByteSpan frame, const PacketInfo& info, const Addressing& a,
                       std::uint64_t now) noexcept;
    bool is_sip_port(std::uint16_t p) const noexcept { return (*sip_ports_)[p]; }
    void count_fragment_losses() noexcept;

    /// Stages a copy of bytes (the frame, or a reassembled message) as a hit.
    void stage_hit(ByteSpan bytes, std::uint32_t original_length, std::uint16_t payload_offset,
                   std::uint16_t payload_length, const Addressing& a, shm::HitKind kind,
                   shm::HitDirection direction, std::uint8_t flags, std::uint64_t correlation_id,
                   std::span<const WarrantId> warrants, std::uint64_t now) noexcept;

    WorkerSetup setup_;
    const Clock& clock_;
    std::uint64_t now_ns_ = 0;  // this worker's latest time: never goes back
    shm::WorkerCounters* counters_;
    const std::bitset<65536>* sip_ports_;
    const TargetSet* targets_ = nullptr;  // the snapshot for the current burst
    FragmentReassembler fragments_;
    TcpStreamTable tcp_;
    std::uint64_t fragment_losses_seen_ = 0;
    static constexpr unsigned kMaxStaged = 256;
    std::array<rte_mbuf*, kMaxStaged> staged_{};
    unsigned staged_count_ = 0;
};

/// The lcore entry point for rte_eal_remote_launch: arg is a WorkerLaunch*.
struct WorkerLaunch {
    Worker* worker;
    const std::atomic<bool>* stop;
};
int worker_lcore_main(void* arg);

}  // namespace tapwire::dataplane
