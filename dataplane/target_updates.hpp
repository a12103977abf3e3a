// Target updates in the dataplane: the control plane's TargetCommands (common/shm_contract.hpp)
// become published TargetSet snapshots, on the main lcore and one background thread, never on
// a worker.
//
// Why the dataplane compiles, not the control plane: a compiled Hyperscan database and its
// tables are process-local heap objects, and an update path that only passes target text
// across the process boundary survives either process dying mid-update (an unfinished batch
// is simply never committed) and lets a restarted dataplane be repopulated by the same
// commands. The text is small: 100,000 targets are ~25 MB of commands, taken in ~0.1 s.
//
// How a new warrant is effective within milliseconds with 100,000 targets active, when a full
// compile of them takes ~4.5 s: the snapshot has two layers (dataplane/target_set.hpp). The
// base is compiled in the background from the whole model; every commit compiles only the
// delta (the warrants changed since the base was taken, bounded by delta_limit) and
// re-assembles around the shared base: a few milliseconds (bench_activation measures it).
// Warrants removed or modified since the base are "suspended" in it, so removal is immediate
// too. Once the delta exceeds delta_limit targets a new base is compiled in the background
// from the model as it is then, and swapped in when done. While that runs, commits go on
// compiling the (growing) delta, up to delta_hard_limit; past it (bulk loads: a first sync of
// 100,000 targets), commits wait for the background compile, and target_commit_applied tells
// the control plane when they are in.
#pragma once

#include <cstddef>
#include <cstdint>
#include <future>
#include <map>
#include <memory>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "common/shm_contract.hpp"
#include "dataplane/rcu.hpp"
#include "dataplane/target_set.hpp"

struct rte_ring;

namespace tapwire::dataplane {

struct TargetUpdaterOptions {
    unsigned workers = 1;
    NumberingPlan plan{};
    /// The caller's RCU reader id (publish() must not wait for itself).
    unsigned rcu_thread_id = QuiescentState::kNoThread;
    /// Delta targets that start a background base compilation. Every commit recompiles the
    /// whole delta (a 1,000-target delta cost ~60 ms per activation in bench_activation,
    /// 200 keeps it to a few ms), so it is kept small.
    std::size_t delta_limit = 200;
    /// Delta targets beyond which a commit waits for the background compilation instead.
    std::size_t delta_hard_limit = 8000;
};

class TargetUpdater {
  public:
    /// `published` is what the workers read; `out` is where the progress is reported to the
    /// control plane (the state memzone), may be null.
    TargetUpdater(Published<TargetSet>& published, shm::TargetPublication* out,
                  TargetUpdaterOptions options);
    /// Waits for a background compilation to finish (it cannot be interrupted).
    ~TargetUpdater();
    TargetUpdater(const TargetUpdater&) = delete;
    TargetUpdater& operator=(const TargetUpdater&) = delete;

    /// Takes up to `max` commands from the ring (returning them to their mempool) and
    /// applies them, publishing every batch committed in this pass as one snapshot; then
    /// finishes a background compilation if one is done. Main lcore, every housekeeping
    /// pass. Returns the number of commands taken.
    unsigned poll(rte_ring* commands, unsigned max = 65536);

    /// Applies one command (poll() calls it; tests drive it directly).
    void apply(const shm::TargetCommand& command);

    /// Finishes a background compilation if it is done (poll() calls it).
    void service();

    /// Replaces everything with `targets` and publishes, as one synchronous commit (the
    /// standalone --targets file). Compiles in the calling thread. Empty string on success.
    std::string load(std::span<const TargetSpec> targets, std::uint64_t sequence = 0);

    bool rebuilding() const noexcept { return rebuild_.valid(); }
    /// Sequence of the last commit the workers' snapshot holds.
    std::uint64_t applied() const noexcept { return applied_; }
    std::size_t warrant_count() const noexcept { return warrants_; }
    std::size_t target_count() const noexcept { return targets_; }

  private:
    struct WarrantTargets {
        std::vector<std::string> identities;  // sorted; empty: removed (kept while in base)
        std::uint64_t changed = 0;            // tick of the last change
    };
    struct Rebuild {
        TargetLayer::Result result;
        double ms = 0;
    };

    void reject(std::string message);
    void fail_commit(std::string message);
    void commit(std::uint64_t sequence);
    void start_rebuild();
    void publish_current();
    void report();

    Published<TargetSet>& published_;
    shm::TargetPublication* out_;
    TargetUpdaterOptions options_;

    // The batch being received.
    bool batch_open_ = false;
    bool batch_sync_ = false;
    std::map<std::uint32_t, std::vector<std::string>> batch_;

    // The model: every warrant's targets as committed.
    std::map<std::uint32_t, WarrantTargets> model_;
    std::uint64_t tick_ = 0;
    std::uint64_t model_sequence_ = 0;  // last commit applied to the model
    std::uint64_t applied_ = 0;         // last commit the published snapshot holds
    std::uint64_t failures_ = 0;        // commits refused
    bool coalesce_ = false;             // inside poll(): commits publish once at its end
    bool publish_pending_ = false;
    std::size_t warrants_ = 0;  // with targets, in the model
    std::size_t targets_ = 0;
    std::set<std::uint32_t> changed_since_base_;  // the delta's warrants

    // The base layer: compiled from the model as of base_tick_.
    std::shared_ptr<const TargetLayer> base_;
    std::uint64_t base_tick_ = 0;
    std::set<std::uint32_t> base_warrants_;  // warrants whose targets the base holds

    // The background compilation, and what it was started from.
    std::future<Rebuild> rebuild_;
    std::uint64_t rebuild_tick_ = 0;
    std::uint64_t rebuild_sequence_ = 0;
    std::set<std::uint32_t> rebuild_warrants_;

    shm::TargetPublication stats_{};
};

}  // namespace tapwire::dataplane
