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

inline constexpr std::uint32_t kContractVersion = 2;
inline constexpr std::uint32_t kStateMagic = 0x54575350;  // "TWSP"
inline constexpr unsigned kMaxWorkers = 32;
inline constexpr unsigned kMaxWarrantsPerHit = 16;
inline constexpr std::size_t kCacheLine = 64;

/// Mempool of hit copies (mbufs whose private area holds a HitMeta).
inline constexpr const char* kHitPoolName = "tw_hit_pool";
/// Memzone holding DataplaneState.
inline constexpr const char* kStateMemzoneName = "tw_dp_state";

/// Target updates from the control plane to the dataplane: a ring of TargetCommand objects
/// from their own mempool. Multi-producer (any control-plane thread), single consumer (the
/// dataplane's main lcore). Created by the dataplane.
inline constexpr const char* kTargetCommandRingName = "tw_tgt_cmds";
inline constexpr const char* kTargetCommandPoolName = "tw_tgt_cmd_pool";
inline constexpr unsigned kTargetCommandRingSize = 16384;  // a power of two
inline constexpr unsigned kTargetCommandPoolSize = kTargetCommandRingSize - 1;

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

/// One target update. The dataplane applies a batch of commands atomically at its Commit:
/// the workers see either none or all of it. A batch that a vanished control plane left
/// unfinished is discarded by the next SyncBegin.
enum class TargetOp : std::uint8_t {
    /// The next Commit replaces the whole target set: warrants the batch does not mention
    /// are removed. Sent by a control plane that (re)attaches. Discards any unfinished batch.
    SyncBegin = 1,
    /// warrant_id's targets are replaced by the Add commands for it that follow in this
    /// batch (none: the warrant is removed from the dataplane).
    Replace = 2,
    /// One target of warrant_id (after its Replace in the same batch).
    Add = 3,
    /// Applies the batch; `sequence` is then published as target_commit_applied.
    Commit = 4,
};

inline constexpr std::size_t kMaxTargetText = 240;  // > the longest normalised identity

struct alignas(kCacheLine) TargetCommand {
    std::uint64_t sequence;  // Commit: the batch's number, increasing per control plane
    std::uint32_t warrant_id;
    TargetOp op;
    std::uint8_t length;  // Add: bytes of text used
    std::uint16_t reserved;
    char text[kMaxTargetText];  // Add: the identity as a warrant gives it (parse_target input)
};
static_assert(sizeof(TargetCommand) == 256);

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

/// Where the dataplane's target set stands, written by its main lcore after every
/// publication (target_commit_applied last, with release order: a reader that sees a
/// sequence also sees the figures of that publication).
struct alignas(kCacheLine) TargetPublication {
    std::uint64_t commit_applied;  // sequence of the last Commit the workers now use
    std::uint64_t commit_failed;   // sequence of the last Commit refused (see last_error)
    std::uint64_t generation;      // TargetSet generation the workers use
    std::uint32_t warrants;        // warrants with targets in the published set
    std::uint32_t targets;
    std::uint32_t base_targets;  // compiled into the large layer
    std::uint32_t delta_targets;
    std::uint32_t suspended_warrants;
    std::uint32_t rebuilds;          // base layer recompilations (background)
    double last_publish_ms;          // Commit dequeued -> snapshot published
    double last_rebuild_ms;          // the last background base compilation
    std::uint64_t commands;          // TargetCommands taken from the ring
    std::uint64_t commands_invalid;  // malformed commands or targets (counted, skipped)
    char last_error[128];            // why commit_failed / commands_invalid moved (no targets)
};

/// The dataplane's state memzone. The header cache line is written once at start-up by the
/// dataplane; each WorkerCounters block is written by its worker only; heartbeat_ns, the
/// table sizes and `targets` by the dataplane's main lcore once per housekeeping pass;
/// controlplane_heartbeat_ns by the control plane.
struct alignas(kCacheLine) DataplaneState {
    std::uint32_t magic;
    std::uint32_t contract_version;
    std::uint32_t worker_count;
    std::uint32_t hit_ring_size;
    std::uint64_t started_ns;  // Unix time of start-up
    std::uint64_t tsc_hz;
    std::uint64_t tsc_at_start;  // with started_ns, converts TSC stamps to wall time
    std::uint64_t boot_id;       // random per start: a changed id means a restarted dataplane
    std::uint64_t heartbeat_ns;  // last housekeeping pass, Unix time
    std::uint32_t dialogs;       // calls followed now
    std::uint32_t media_flows;
    alignas(kCacheLine) TargetPublication targets;
    alignas(kCacheLine) std::uint64_t controlplane_heartbeat_ns;
    std::uint64_t controlplane_pid;
    alignas(kCacheLine) WorkerCounters workers[kMaxWorkers];
};
static_assert(offsetof(DataplaneState, workers) % kCacheLine == 0);

}  // namespace tapwire::shm
