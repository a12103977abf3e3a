#include "dataplane/target_updates.hpp"

#include <rte_mempool.h>
#include <rte_ring.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>

namespace tapwire::dataplane {
namespace {

double ms_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

TargetUpdater::TargetUpdater(Published<TargetSet>& published, shm::TargetPublication* out,
                             TargetUpdaterOptions options)
    : published_(published), out_(out), options_(std::move(options)) {}

TargetUpdater::~TargetUpdater() {
    if (rebuild_.valid()) rebuild_.wait();
}

unsigned TargetUpdater::poll(rte_ring* commands, unsigned max) {
    unsigned taken = 0;
    void* objs[64];
    // Every batch committed in this pass goes into one publication: under a burst of
    // activations the dataplane compiles once per pass, not once per warrant, and the pass
    // stays short (the housekeeping loop's heartbeat must not stall).
    coalesce_ = true;
    while (taken < max) {
        const unsigned n = rte_ring_dequeue_burst(commands, objs, 64, nullptr);
        if (n == 0) break;
        for (unsigned i = 0; i < n; ++i) {
            apply(*static_cast<const shm::TargetCommand*>(objs[i]));
            rte_mempool_put(rte_mempool_from_obj(objs[i]), objs[i]);
        }
        taken += n;
        stats_.commands += n;
    }
    coalesce_ = false;
    if (publish_pending_) {
        publish_pending_ = false;
        publish_current();
    }
    service();
    if (taken) report();
    return taken;
}

void TargetUpdater::reject(std::string message) {
    ++stats_.commands_invalid;
    std::snprintf(stats_.last_error, sizeof stats_.last_error, "%s", message.c_str());
}

void TargetUpdater::fail_commit(std::string message) {
    stats_.commit_failed = model_sequence_;
    ++failures_;
    reject(std::move(message));
    report();
}

void TargetUpdater::apply(const shm::TargetCommand& c) {
    switch (c.op) {
        case shm::TargetOp::SyncBegin:
            batch_.clear();
            batch_open_ = batch_sync_ = true;
            return;
        case shm::TargetOp::Replace:
            if (c.warrant_id == 0) return reject("Replace for warrant id 0");
            batch_open_ = true;
            batch_[c.warrant_id].clear();
            return;
        case shm::TargetOp::Add: {
            auto it = batch_.find(c.warrant_id);
            if (it == batch_.end())
                return reject("Add for warrant " + std::to_string(c.warrant_id) +
                              " without its Replace");
            if (c.length == 0 || c.length > shm::kMaxTargetText)
                return reject("Add for warrant " + std::to_string(c.warrant_id) + ": bad length");
            std::string text(c.text, c.length);
            ParsedTarget parsed;
            // Validated again here: the control plane uses the same parser, so this only
            // fires on a mismatch of versions; the warrant's other targets still apply.
            if (TargetError e = parse_target(text, parsed, options_.plan); e != TargetError::Ok)
                return reject("warrant " + std::to_string(c.warrant_id) + ": invalid target (" +
                              to_string(e) + ")");
            it->second.push_back(std::move(text));
            return;
        }
        case shm::TargetOp::Commit:
            return commit(c.sequence);
    }
    reject("unknown command " + std::to_string(unsigned(c.op)));
}

void TargetUpdater::commit(std::uint64_t sequence) {
    if (batch_sync_) {
        for (const auto& [w, m] : model_)
            if (!m.identities.empty() && !batch_.count(w)) batch_[w];  // removed
    }
    for (auto& [w, ids] : batch_) {
        std::sort(ids.begin(), ids.end());
        ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
        auto found = model_.find(w);
        if (found != model_.end() && found->second.identities == ids) continue;
        if (found == model_.end() && ids.empty()) continue;
        WarrantTargets& m = model_[w];
        warrants_ += (ids.empty() ? 0 : 1) - (m.identities.empty() ? 0 : 1);
        targets_ += ids.size() - m.identities.size();
        m.identities = std::move(ids);
        m.changed = ++tick_;
        changed_since_base_.insert(w);
        // A removed warrant is remembered only while a base (or one being compiled) still
        // holds it: it must stay suspended there.
        if (m.identities.empty() && !base_warrants_.count(w) && !rebuild_warrants_.count(w)) {
            model_.erase(w);
            changed_since_base_.erase(w);
        }
    }
    batch_.clear();
    batch_open_ = batch_sync_ = false;
    model_sequence_ = sequence;
    if (coalesce_)
        publish_pending_ = true;
    else
        publish_current();
}

void TargetUpdater::start_rebuild() {
    std::vector<TargetSpec> specs;
    rebuild_warrants_.clear();
    for (const auto& [w, m] : model_) {
        if (m.identities.empty()) continue;
        rebuild_warrants_.insert(w);
        for (const auto& id : m.identities)
            specs.push_back({id, w});
    }
    rebuild_tick_ = tick_;
    rebuild_ = std::async(std::launch::async, [specs = std::move(specs), plan = options_.plan] {
        const auto t0 = std::chrono::steady_clock::now();
        Rebuild r{TargetLayer::compile(specs, plan, "base"), 0};
        r.ms = ms_since(t0);
        return r;
    });
}

void TargetUpdater::service() {
    if (!rebuild_.valid() ||
        rebuild_.wait_for(std::chrono::seconds(0)) != std::future_status::ready)
        return;
    Rebuild r = rebuild_.get();
    if (!r.result.layer) {
        // Every target was validated on the way in, so this is resource exhaustion: keep the
        // old base; the next commit tries again.
        reject("base compilation failed: " + r.result.error);
        rebuild_warrants_.clear();
        return;
    }
    base_ = std::move(r.result.layer);
    base_tick_ = rebuild_tick_;
    base_warrants_ = std::move(rebuild_warrants_);
    rebuild_warrants_.clear();
    changed_since_base_.clear();
    for (auto it = model_.begin(); it != model_.end();) {
        if (it->second.identities.empty() && !base_warrants_.count(it->first)) {
            it = model_.erase(it);
            continue;
        }
        if (it->second.changed > base_tick_) changed_since_base_.insert(it->first);
        ++it;
    }
    ++stats_.rebuilds;
    stats_.last_rebuild_ms = r.ms;
    publish_current();
}

void TargetUpdater::publish_current() {
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<TargetSpec> delta;
    TargetSetOptions options;
    options.workers = options_.workers;
    options.plan = options_.plan;
    for (std::uint32_t w : changed_since_base_) {
        const WarrantTargets& m = model_.at(w);
        for (const auto& id : m.identities)
            delta.push_back({id, w});
        if (base_warrants_.count(w)) options.suspended_warrants.push_back(w);
    }
    if (delta.size() > options_.delta_limit && !rebuilding()) start_rebuild();
    if (delta.size() > options_.delta_hard_limit) {
        report();  // the background compilation will publish
        return;
    }
    std::shared_ptr<const TargetLayer> delta_layer;
    if (!delta.empty()) {
        TargetLayer::Result compiled = TargetLayer::compile(delta, options_.plan, "delta");
        if (!compiled.layer) return fail_commit("delta compilation failed: " + compiled.error);
        delta_layer = std::move(compiled.layer);
    }
    TargetSet::Result set =
        TargetSet::assemble(base_, std::move(delta_layer), options, published_.load());
    if (!set.set) return fail_commit("snapshot assembly failed: " + set.error);
    const TargetSetStats st = set.set->stats();
    published_.publish(std::move(set.set), options_.rcu_thread_id);
    applied_ = model_sequence_;
    stats_.generation = st.generation;
    stats_.base_targets = st.base.targets;
    stats_.delta_targets = st.delta.targets;
    stats_.suspended_warrants = st.suspended_warrants;
    stats_.last_publish_ms = ms_since(t0);
    report();
}

void TargetUpdater::report() {
    stats_.warrants = std::uint32_t(warrants_);
    stats_.targets = std::uint32_t(targets_);
    if (out_ == nullptr) return;
    const std::uint64_t applied = applied_;
    shm::TargetPublication copy = stats_;
    copy.commit_applied = std::atomic_ref<std::uint64_t>(out_->commit_applied).load();
    std::memcpy(static_cast<void*>(out_), &copy, sizeof copy);
    // Last, with release: a reader that sees this sequence sees the figures above.
    std::atomic_ref<std::uint64_t>(out_->commit_applied).store(applied, std::memory_order_release);
}

std::string TargetUpdater::load(std::span<const TargetSpec> targets, std::uint64_t sequence) {
    batch_.clear();
    batch_open_ = batch_sync_ = true;
    for (const auto& t : targets)
        batch_[t.warrant_id].push_back(t.identity);
    const std::uint64_t failures_before = failures_;
    const std::uint64_t invalid_before = stats_.commands_invalid;
    commit(sequence);
    if (rebuild_.valid()) {
        rebuild_.wait();
        service();
    }
    if (failures_ != failures_before || stats_.commands_invalid != invalid_before ||
        applied_ != sequence)
        return stats_.last_error;
    return {};
}

}  // namespace tapwire::dataplane
