// The shared-memory contract between the dataplane (DPDK primary) and the control plane
// (DPDK secondary): every ring, mempool and memzone name, and every structure that crosses
// the process boundary. Both processes include this header; nothing else is shared.
//
// Layout changes are breaking: bump kContractVersion, which the control plane checks in
// DataplaneState before it touches anything else.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <iterator>
#include <string>

#include "common/x_list.hpp"
namespace tapwire::shm {

inline constexpr std::uint32_t kContractVersion = 1;
inline constexpr std::uint32_t kStateMagic = 0x54575350;  // "TWSP"
inline constexpr unsigned kMaxWorkers = 32;
inline constexpr unsigned kMaxWarrantsPerHit = 16;
inline constexpr std::size_t kCacheLine = 64;

/// Mempool of hit copies (mbufs whose private area holds a HitMeta).
inline constexpr const char* kHitPoolName = "tw_hit_pool";
/// Memzone holding DataplaneState.
inline constexpr const char* kStateMemzoneName = "tw_dp_state";

/// Per-worker single-producer single-consumer ring of hit mbufs: "tw_hits_<worker>".
inline std::string hit_ring_name(unsigned worker) {
    char name[32];
    std::snprintf(name, sizeof name, "tw_hits_%u", worker);
    return name;
}

/// What a hit is. Sip hits carry one whole SIP message as an unfragmented IP packet (a
/// reassembled datagram or TCP message is re-framed so), Rtp/Rtcp/Ip hits the packet as seen.
enum class HitKind : std::uint8_t { Sip = 1, Rtp = 2, Rtcp = 3, Ip = 4 };

/// Direction of the packet relative to the target of the warrant(s).
enum class HitDirection : std::uint8_t { Unknown = 0, FromTarget = 1, ToTarget = 2 };

/// Flags on a hit.
enum HitFlag : std::uint8_t {
    kHitReassembled = 0x01,  // rebuilt from IP fragments or TCP segments
    kHitTruncated = 0x02,    // the copy was cut at the snap length
    kHitCallEnding = 0x04,   // this message ends the call (BYE, CANCEL, final failure)
    kHitFirstOfCall = 0x08,  // first intercepted message of the call
};

/// Metadata of one hit, in the private area of the hit mbuf (rte_mbuf_to_priv). Written
/// once by the worker before the enqueue, read by the control plane after the dequeue;
/// the ring's release/acquire ordering makes it visible. Addresses and payload bounds are
/// given here so the consumer never re-parses: for a packet hit the mbuf holds the frame
/// as captured (up to the snap length); for a reassembled SIP message (kHitReassembled) it
/// holds only the SIP message, payload_offset 0.
struct alignas(kCacheLine) HitMeta {
    // cache line 0: identity of the hit
    std::uint64_t timestamp_ns;     // arrival, ns since the Unix epoch
    std::uint64_t correlation_id;   // one per intercepted call (the CIN source); 0 for IP hits
    std::uint32_t original_length;  // length on the wire before any snap-length cut
    std::uint16_t worker;
    std::uint16_t port;  // DPDK port the packet arrived on
    HitKind kind;
    HitDirection direction;
    std::uint8_t flags;  // HitFlag bits
    std::uint8_t warrant_count;
    std::uint16_t payload_offset;  // L4 payload (SIP text, RTP header) within the mbuf data
    std::uint16_t payload_length;
    std::uint8_t src_ip[16];  // IPv4 in the first 4 bytes
    std::uint8_t dst_ip[16];
    // cache line 1
    std::uint16_t src_port;
    std::uint16_t dst_port;
    std::uint8_t ip_family;  // 4 or 6
    std::uint8_t l4_proto;   // 17 UDP, 6 TCP
    std::uint8_t reserved[58];
    // cache line 2
    std::uint32_t warrant_ids[kMaxWarrantsPerHit];  // internal warrant ids (control plane's)
};
static_assert(sizeof(HitMeta) == 192, "HitMeta is three cache lines: the hit pool's priv_size");
static_assert(offsetof(HitMeta, src_port) == kCacheLine);
static_assert(offsetof(HitMeta, warrant_ids) == 2 * kCacheLine);

/// Per-worker counters, one list for the enum, the names, telemetry and status.
/// X(name, description)
#define TAPWIRE_WORKER_COUNTERS(X)                                                        \
    X(rx_packets, "packets received")                                                     \
    X(rx_bytes, "bytes received")                                                         \
    X(non_ip, "non-IP frames (ARP, LLDP, ...)")                                           \
    X(malformed, "frames whose L2-L4 headers failed to parse")                            \
    X(sip_messages, "SIP messages parsed")                                                \
    X(sip_invalid, "SIP messages rejected by the parser")                                 \
    X(sip_keepalives, "SIP keep-alives (CRLF, spaces)")                                   \
    X(rtp_rtcp_candidates, "UDP packets looked up in the media table")                    \
    X(other_packets, "IP packets that are neither SIP nor known media")                   \
    X(fragments, "IP fragments fed to reassembly")                                        \
    X(tcp_sip_segments, "TCP segments on SIP ports fed to stream reassembly")             \
    X(target_matches, "SIP messages whose identities matched a target")                   \
    X(match_incomplete, "SIP messages not fully matched (scan error, identity too long)") \
    X(hits_sip, "SIP hits mirrored")                                                      \
    X(hits_rtp, "RTP hits mirrored")                                                      \
    X(hits_rtcp, "RTCP hits mirrored")                                                    \
    X(hits_ip, "IP-target hits mirrored")                                                 \
    X(drop_ring_full, "hits dropped: hit ring full (control plane too slow or absent)")   \
    X(drop_pool_empty, "hits dropped: hit mempool empty")                                 \
    X(drop_dialog_table_full, "calls not followed: dialog table full")                    \
    X(drop_media_table_full, "media flows not followed: media table full")                \
    X(drop_warrant_overflow, "warrants beyond the per-hit limit")                         \
    X(drop_fragment, "fragments dropped by reassembly (timeout, overlap, size, pool)")    \
    X(drop_tcp_stream, "TCP SIP data dropped by stream reassembly (gap, overflow)")       \
    X(tx_packets, "inline mode: packets forwarded")                                       \
    X(tx_drop, "inline mode: packets the peer port did not accept")

enum class WorkerCounter : std::uint16_t { TAPWIRE_WORKER_COUNTERS(TAPWIRE_X_ENUMERATOR) Count };

inline constexpr std::size_t kWorkerCounterCount = static_cast<std::size_t>(WorkerCounter::Count);

/// Counter names as telemetry, status and logs show them ("rx_packets", ...).
inline constexpr const char* kWorkerCounterNames[] = {TAPWIRE_WORKER_COUNTERS(TAPWIRE_X_NAME)};
static_assert(std::size(kWorkerCounterNames) == kWorkerCounterCount);

/// One worker's counters. Written only by that worker (plain stores, no atomics: one
/// writer), read by telemetry and the control plane, which tolerate a value one update old.
struct alignas(kCacheLine) WorkerCounters {
    std::uint64_t value[kWorkerCounterCount];
    std::uint64_t& operator[](WorkerCounter c) noexcept { return value[static_cast<int>(c)]; }
    std::uint64_t operator[](WorkerCounter c) const noexcept { return value[static_cast<int>(c)]; }
};

/// The dataplane's state memzone. The header cache line is written once at start-up by the
/// dataplane; each WorkerCounters block is written by its worker only; heartbeat_ns by the
/// dataplane's main lcore once per housekeeping pass.
struct alignas(kCacheLine) DataplaneState {
    std::uint32_t magic;
    std::uint32_t contract_version;
    std::uint32_t worker_count;
    std::uint32_t hit_ring_size;
    std::uint64_t started_ns;  // Unix time of start-up
    std::uint64_t tsc_hz;
    std::uint64_t tsc_at_start;       // with started_ns, converts TSC stamps to wall time
    std::uint64_t heartbeat_ns;       // last housekeeping pass, Unix time
    std::uint64_t target_generation;  // generation of the target set the workers use
    WorkerCounters workers[kMaxWorkers];
};
static_assert(offsetof(DataplaneState, workers) % kCacheLine == 0);

}  // namespace tapwire::shm
