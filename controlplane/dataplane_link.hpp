// The control plane's side of the shared-memory contract (common/shm_contract.hpp): it
// attaches to a running dataplane as a DPDK secondary process, keeps the dataplane's target
// set equal to the ACTIVE warrants in the Store, drains the hit rings, and reports the
// dataplane's figures for Appliance.GetStatus.
//
// Life cycle (one thread, started by start()):
//   wait for the primary (its runtime config file is locked while it runs; checked without
//   touching the EAL) -> rte_eal_init as a secondary -> wait for the state memzone's magic
//   -> full sync (SyncBegin, every ACTIVE warrant, Commit) -> drain hits, heartbeat, watch
//   the dataplane. The dataplane keeps intercepting with its last target set while the
//   control plane is away; the next sync is a no-op in the dataplane when nothing changed.
//
// A DPDK secondary cannot re-attach to a restarted primary (its memory is mapped from the
// old primary's hugepage files, and the EAL cannot be initialised twice), so when the
// dataplane goes away lost() becomes true and main() re-executes the control plane, which
// then waits for the new dataplane and repopulates it. gRPC is unavailable for that moment
// (well under a second); the state and the audit trail are on disk.
//
// Hits: a drained hit is checked against each of its warrants (known, ACTIVE, inside its
// window, CC allowed by the delivery type) and handed to the handover pipeline for the
// warrants that pass (controlplane/handover_pipeline.hpp); the others are counted by reason
// as drops. Nothing leaves the appliance outside a warrant's window, whatever the
// dataplane's snapshot says. The pipeline's call table is saved on a clean stop and resumed
// when the next run attaches to the same dataplane.
//
// lcore: the secondary's EAL thread takes lcore id `lcore_id` (127 by default), which the
// dataplane never uses, so the per-lcore caches of the shared hit pool are never shared.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/shm_contract.hpp"
#include "common/x_list.hpp"
#include "controlplane/store.hpp"
#include "tapwire/v1/controlplane.pb.h"

struct rte_ring;
struct rte_mempool;

namespace tapwire::controlplane {

class EventHub;
class HandoverPipeline;

/// The control plane's own counters. X(name, description); drop_* are drops by reason.
#define TAPWIRE_LINK_COUNTERS(X)                                                             \
    X(hits_drained, "hits taken from the dataplane's rings")                                 \
    X(hits_accepted, "hits of an ACTIVE warrant inside its window")                          \
    X(drop_hit_unknown_warrant, "hit for a warrant id the control plane does not know")      \
    X(drop_hit_outside_window, "hit of a warrant not ACTIVE, or stamped outside its window") \
    X(drop_hit_cc_not_authorized, "RTP/RTCP/IP hit of an IRI-only warrant")                  \
    X(target_commands, "target commands sent to the dataplane")                              \
    X(target_publish_failed, "target updates the dataplane did not take (ring, timeout)")    \
    X(syncs, "full target syncs (attach, re-attach)")

enum class LinkCounter : std::uint8_t { TAPWIRE_LINK_COUNTERS(TAPWIRE_X_ENUMERATOR) Count };

struct DataplaneLinkOptions {
    std::string file_prefix = "tapwire";  // the dataplane's --file-prefix
    unsigned lcore_id = 127;              // this process's EAL lcore id (see above)
    /// The dataplane counts as hung when its heartbeat is older than this (a dead or
    /// restarted one is noticed at once: its runtime config lock and boot id).
    double heartbeat_timeout_s = 10.0;
    /// How long one target update may wait for room in the command ring.
    double publish_timeout_s = 5.0;
};

class DataplaneLink {
  public:
    DataplaneLink(DataplaneLinkOptions options, Store& store, EventHub* events,
                  HandoverPipeline& handover);
    ~DataplaneLink();
    DataplaneLink(const DataplaneLink&) = delete;
    DataplaneLink& operator=(const DataplaneLink&) = delete;

    void start();
    void stop();

    /// After any durable state change: publishes the warrant's targets when it is ACTIVE,
    /// removes them otherwise; returns at once (the dataplane applies it within
    /// milliseconds; EVENT_WARRANT_EFFECTIVE says when).
    void warrant_changed(const StoredWarrant& warrant);

    void fill_status(v1::ApplianceStatus& status);
    void fill_warrant_runtime(std::uint32_t internal_id, v1::WarrantStatus& status);

    bool attached() const noexcept { return attached_.load(); }
    /// The dataplane went away after being attached: the process must re-execute.
    bool lost() const noexcept { return lost_.load(); }
    /// Called (from the link thread) when lost() becomes true.
    std::function<void()> on_lost;

  private:
    struct WarrantRuntime {
        std::string xid, liid;
        std::int64_t valid_from_ns = 0, valid_until_ns = 0;
        bool active = false;
        bool content = false;  // delivery type includes CC
        bool effective = false;
        bool first_hit_reported = false;
        std::uint64_t hits = 0;
        std::int64_t last_hit_ns = 0;
        std::uint64_t effective_sequence = 0;  // commit that made it effective (0: none)
        /// Whether a packet intercepted at `ts` may give this warrant a record.
        bool in_window(std::int64_t ts) const noexcept {
            return active && ts >= valid_from_ns && ts < valid_until_ns;
        }
    };
    struct Pending {
        std::uint64_t sequence;
        std::uint32_t internal_id;
    };

    void run();
    bool attach();
    bool sync_all();
    void drain();
    void watch();
    bool send_warrant(const StoredWarrant& w);
    bool send(shm::TargetOp op, std::uint32_t warrant = 0, const std::string& text = {},
              std::uint64_t sequence = 0);
    void remember(const StoredWarrant& w);
    std::map<std::string, std::uint64_t> drop_totals() const;
    void emit(v1::EventKind kind, const WarrantRuntime* w, std::string detail,
              std::map<std::string, std::uint64_t> counters = {});
    void count(LinkCounter c, std::uint64_t n = 1) {
        counters_[std::size_t(c)].fetch_add(n, std::memory_order_relaxed);
    }

    DataplaneLinkOptions options_;
    Store& store_;
    EventHub* events_;
    HandoverPipeline& handover_;
    std::vector<std::uint8_t> linear_;  // a chained hit mbuf made contiguous
    std::thread thread_;
    std::atomic<bool> stop_{false};
    std::atomic<bool> attached_{false};
    std::atomic<bool> lost_{false};
    std::atomic<bool> resync_needed_{false};
    std::int64_t last_liveness_ns_ = 0;
    std::int64_t attached_ns_ = 0;
    std::string detail_;  // why not attached (under mutex_)

    shm::DataplaneState* state_ = nullptr;
    std::uint64_t boot_id_ = 0;
    rte_ring* commands_ = nullptr;
    rte_mempool* command_pool_ = nullptr;
    std::vector<rte_ring*> hit_rings_;

    // Serialises publishers (a batch must reach the ring whole) and guards the maps.
    std::mutex publish_mutex_;
    std::uint64_t sequence_ = 0;
    std::vector<Pending> pending_;

    mutable std::mutex mutex_;
    std::unordered_map<std::uint32_t, WarrantRuntime> warrants_;

    std::atomic<std::uint64_t> counters_[std::size_t(LinkCounter::Count)]{};
    // Previous sample for rates and drop events (link thread and status callers).
    struct Sample {
        std::int64_t at_ns = 0;
        std::vector<std::uint64_t> rx;
        std::map<std::string, std::uint64_t> drops;
    };
    Sample rate_sample_, drop_sample_;
};

}  // namespace tapwire::controlplane
