#include "controlplane/dataplane_link.hpp"
#include "common/clock.hpp"

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_memzone.h>
#include <rte_ring.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "controlplane/events.hpp"
#include "controlplane/handover_pipeline.hpp"

namespace tapwire::controlplane {
namespace {

constexpr const char* kCounterNames[] = {TAPWIRE_LINK_COUNTERS(TAPWIRE_X_NAME)};

void sleep_ms(double ms) {
    std::this_thread::sleep_for(std::chrono::microseconds(std::int64_t(ms * 1000)));
}

// Where a primary with this file prefix keeps its runtime config (eal_runtime_config_path),
// computed without the EAL: the file is write-locked for as long as the primary runs.
std::string primary_config_path(const std::string& prefix) {
    std::string dir = "/var/run/dpdk";
    if (getuid() != 0) {
        const char* xdg = std::getenv("XDG_RUNTIME_DIR");
        dir = std::string(xdg ? xdg : "/tmp") + "/dpdk";
    }
    return dir + "/" + prefix + "/config";
}

// "(0,1,5)": the CPUs this process may run on, for --lcores.
std::string allowed_cpus() {
    cpu_set_t set;
    CPU_ZERO(&set);
    std::string out;
    if (sched_getaffinity(0, sizeof set, &set) == 0)
        for (int c = 0; c < CPU_SETSIZE; ++c)
            if (CPU_ISSET(c, &set)) out += (out.empty() ? "" : ",") + std::to_string(c);
    return "(" + (out.empty() ? std::string("0") : out) + ")";
}

std::uint64_t load_acquire(const std::uint64_t& v) {
    return std::atomic_ref<const std::uint64_t>(v).load(std::memory_order_acquire);
}

}  // namespace

DataplaneLink::DataplaneLink(DataplaneLinkOptions options, Store& store, EventHub* events,
                             HandoverPipeline& handover)
    : options_(std::move(options)), store_(store), events_(events), handover_(handover) {
    linear_.resize(std::size_t(1) << 17);
    detail_ = "waiting for the dataplane (file prefix " + options_.file_prefix + ")";
}

DataplaneLink::~DataplaneLink() {
    stop();
}

void DataplaneLink::start() {
    thread_ = std::thread([this] { run(); });
}

void DataplaneLink::stop() {
    stop_.store(true);
    if (thread_.joinable()) thread_.join();
}

void DataplaneLink::emit(v1::EventKind kind, const WarrantRuntime* w, std::string detail,
                         std::map<std::string, std::uint64_t> counters) {
    if (events_ == nullptr) return;
    v1::Event e;
    e.set_kind(kind);
    if (w) {
        e.set_xid(w->xid);
        e.set_liid(w->liid);
    }
    e.set_detail(std::move(detail));
    for (auto& [k, v] : counters)
        (*e.mutable_counters())[k] = v;
    events_->emit(std::move(e));
}

void DataplaneLink::run() {
    if (!attach()) return;
    handover_.restore_calls(boot_id_);
    if (!sync_all()) {
        std::lock_guard lock(mutex_);
        detail_ = "initial target sync failed";
    }
    attached_.store(true);
    emit(v1::EVENT_DATAPLANE_ATTACHED, nullptr,
         "dataplane with " + std::to_string(state_->worker_count) + " workers, file prefix " +
             options_.file_prefix);
    std::fprintf(stderr, "tapwire-controlplane: attached to the dataplane (%u workers)\n",
                 state_->worker_count);
    auto last_watch = std::chrono::steady_clock::now();
    while (!stop_.load()) {
        drain();
        const auto now = std::chrono::steady_clock::now();
        if (now - last_watch >= std::chrono::microseconds(200)) {
            last_watch = now;
            watch();
            if (lost_.load()) return;
        }
    }
    handover_.save_calls(boot_id_);  // a clean stop: the next run resumes these calls
}

bool DataplaneLink::attach() {
    const std::string config = primary_config_path(options_.file_prefix);
    auto set_detail = [this](std::string d) {
        std::lock_guard lock(mutex_);
        detail_ = std::move(d);
    };
    set_detail("waiting for the dataplane (file prefix " + options_.file_prefix + ")");
    while (!stop_.load() && !rte_eal_primary_proc_alive(config.c_str()))
        sleep_ms(100);
    if (stop_.load()) return false;

    std::vector<std::string> args = {
        "tapwire-controlplane",
        "--proc-type=secondary",
        "--file-prefix=" + options_.file_prefix,
        "--lcores=" + std::to_string(options_.lcore_id) + "@" + allowed_cpus(),
        "--no-pci",
        "--no-telemetry",
        "--log-level=lib.eal:warning"};
    std::vector<char*> argv;
    for (auto& a : args)
        argv.push_back(a.data());
    if (rte_eal_init(int(argv.size()), argv.data()) < 0) {
        // The EAL cannot be initialised twice: start over as a new process.
        set_detail(std::string("EAL secondary init failed: ") + rte_strerror(rte_errno));
        std::fprintf(stderr, "tapwire-controlplane: %s\n", detail_.c_str());
        sleep_ms(1000);
        lost_.store(true);
        if (on_lost) on_lost();
        return false;
    }

    // The primary reserves the state first and sets its magic once its ports are up.
    const rte_memzone* mz = nullptr;
    while (!stop_.load()) {
        mz = rte_memzone_lookup(shm::kStateMemzoneName);
        if (mz && std::atomic_ref<const std::uint32_t>(
                      static_cast<const shm::DataplaneState*>(mz->addr)->magic)
                          .load(std::memory_order_acquire) == shm::kStateMagic)
            break;
        if (!rte_eal_primary_proc_alive(config.c_str())) {
            lost_.store(true);
            if (on_lost) on_lost();
            return false;
        }
        sleep_ms(50);
    }
    if (stop_.load()) return false;
    state_ = static_cast<shm::DataplaneState*>(mz->addr);
    if (state_->contract_version != shm::kContractVersion) {
        set_detail("dataplane speaks shared-memory contract " +
                   std::to_string(state_->contract_version) + ", this control plane " +
                   std::to_string(shm::kContractVersion) + ": not attached");
        std::fprintf(stderr, "tapwire-controlplane: %s\n", detail_.c_str());
        return false;
    }
    commands_ = rte_ring_lookup(shm::kTargetCommandRingName);
    command_pool_ = rte_mempool_lookup(shm::kTargetCommandPoolName);
    for (unsigned w = 0; w < state_->worker_count; ++w)
        hit_rings_.push_back(rte_ring_lookup(shm::hit_ring_name(w).c_str()));
    if (!commands_ || !command_pool_ ||
        std::find(hit_rings_.begin(), hit_rings_.end(), nullptr) != hit_rings_.end()) {
        set_detail("dataplane rings or pools missing: not attached");
        return false;
    }
    boot_id_ = state_->boot_id;
    attached_ns_ = unix_time_ns();
    state_->controlplane_pid = std::uint64_t(getpid());
    std::lock_guard lock(publish_mutex_);
    sequence_ = std::max(sequence_, load_acquire(state_->targets.commit_applied));
    set_detail("attached");
    return true;
}

bool DataplaneLink::send(shm::TargetOp op, std::uint32_t warrant, const std::string& text,
                         std::uint64_t sequence) {
    void* obj = nullptr;
    const auto deadline = std::chrono::steady_clock::now() +
                          std::chrono::duration<double>(options_.publish_timeout_s);
    // The pool is as large as the ring: a free command always fits in the ring.
    while (rte_mempool_get(command_pool_, &obj) != 0) {
        if (std::chrono::steady_clock::now() >= deadline || stop_.load()) {
            count(LinkCounter::target_publish_failed);
            return false;
        }
        sleep_ms(0.05);
    }
    auto* c = static_cast<shm::TargetCommand*>(obj);
    std::memset(c, 0, sizeof *c);
    c->op = op;
    c->warrant_id = warrant;
    c->sequence = sequence;
    c->length = std::uint8_t(std::min(text.size(), shm::kMaxTargetText));
    std::memcpy(c->text, text.data(), c->length);
    while (rte_ring_enqueue(commands_, obj) != 0)
        sleep_ms(0.05);
    count(LinkCounter::target_commands);
    return true;
}

bool DataplaneLink::send_warrant(const StoredWarrant& w) {
    if (!send(shm::TargetOp::Replace, w.internal_id)) return false;
    if (w.status.state() != v1::WARRANT_STATE_ACTIVE) return true;
    for (const auto& t : w.status.warrant().targets())
        if (!send(shm::TargetOp::Add, w.internal_id, t.value())) return false;
    return true;
}

void DataplaneLink::remember(const StoredWarrant& w) {
    const auto& wr = w.status.warrant();
    std::lock_guard lock(mutex_);
    WarrantRuntime& r = warrants_[w.internal_id];
    r.xid = wr.xid();
    r.liid = wr.liid();
    r.valid_from_ns = to_unix_ns(wr.valid_from()).value_or(INT64_MAX);
    r.valid_until_ns = to_unix_ns(wr.valid_until()).value_or(INT64_MIN);
    const bool active = w.status.state() == v1::WARRANT_STATE_ACTIVE;
    if (!active || !r.active) r.effective = false, r.first_hit_reported = false;
    r.active = active;
    r.content = wr.delivery_type() == v1::DELIVERY_TYPE_IRI_AND_CC;
}

bool DataplaneLink::sync_all() {
    auto listed = store_.list_warrants();
    if (!listed) {
        std::fprintf(stderr, "tapwire-controlplane: target sync: %s\n", listed.message().c_str());
        return false;
    }
    std::lock_guard lock(publish_mutex_);
    for (const auto& w : *listed)
        remember(w);
    bool ok = send(shm::TargetOp::SyncBegin);
    std::vector<std::uint32_t> active;
    for (const auto& w : *listed) {
        if (w.status.state() != v1::WARRANT_STATE_ACTIVE) continue;
        ok = ok && send_warrant(w);
        active.push_back(w.internal_id);
    }
    ok = ok && send(shm::TargetOp::Commit, 0, {}, ++sequence_);
    count(LinkCounter::syncs);
    if (!ok) return false;
    for (std::uint32_t id : active)
        pending_.push_back({sequence_, id});
    return true;
}

void DataplaneLink::warrant_changed(const StoredWarrant& w) {
    remember(w);
    if (!attached_.load()) return;  // the sync at attach publishes it
    std::lock_guard lock(publish_mutex_);
    if (!send_warrant(w) || !send(shm::TargetOp::Commit, 0, {}, ++sequence_)) {
        // A half-sent batch must never be committed by a later one: the link thread
        // resyncs (SyncBegin discards it).
        resync_needed_.store(true);
        return;
    }
    if (w.status.state() == v1::WARRANT_STATE_ACTIVE)
        pending_.push_back({sequence_, w.internal_id});
}

void DataplaneLink::drain() {
    void* objs[64];
    bool idle = true;
    for (rte_ring* ring : hit_rings_) {
        const unsigned n = rte_ring_dequeue_burst(ring, objs, 64, nullptr);
        if (n == 0) continue;
        idle = false;
        count(LinkCounter::hits_drained, n);
        for (unsigned i = 0; i < n; ++i) {
            auto* m = static_cast<rte_mbuf*>(objs[i]);
            const auto* meta = static_cast<const shm::HitMeta*>(rte_mbuf_to_priv(m));
            std::uint32_t accepted[shm::kMaxWarrantsPerHit];
            unsigned accepted_count = 0;
            bool call_alive = false;
            {
                std::lock_guard lock(mutex_);
                const unsigned count_in_hit =
                    std::min<unsigned>(meta->warrant_count, shm::kMaxWarrantsPerHit);
                for (unsigned k = 0; k < count_in_hit; ++k) {
                    auto it = warrants_.find(meta->warrant_ids[k]);
                    if (it == warrants_.end()) {
                        count(LinkCounter::drop_hit_unknown_warrant);
                        continue;
                    }
                    WarrantRuntime& w = it->second;
                    const auto ts = std::int64_t(meta->timestamp_ns);
                    if (!w.in_window(ts)) {
                        count(LinkCounter::drop_hit_outside_window);
                        continue;
                    }
                    if (meta->kind != shm::HitKind::Sip && !w.content) {
                        count(LinkCounter::drop_hit_cc_not_authorized);
                        call_alive = true;
                        continue;
                    }
                    count(LinkCounter::hits_accepted);
                    ++w.hits;
                    w.last_hit_ns = ts;
                    if (!w.first_hit_reported) {
                        w.first_hit_reported = true;
                        emit(v1::EVENT_WARRANT_FIRST_HIT, &w,
                             "first hit since effective, intercepted at " + std::to_string(ts));
                    }
                    accepted[accepted_count++] = meta->warrant_ids[k];
                }
            }
            if (call_alive && meta->correlation_id != 0)  // media an IRI-only warrant refused
                handover_.call_alive(meta->correlation_id, std::int64_t(meta->timestamp_ns));
            if (accepted_count != 0) {
                // A hit longer than one mbuf is chained: made contiguous here.
                if (linear_.size() < m->pkt_len) linear_.resize(m->pkt_len);
                const auto* data = static_cast<const std::uint8_t*>(
                    rte_pktmbuf_read(m, 0, m->pkt_len, linear_.data()));
                handover_.deliver(*meta, ByteSpan(data, data ? m->pkt_len : 0),
                                  std::span(accepted, accepted_count));
            }
            rte_pktmbuf_free(m);
        }
        handover_.end_burst();
    }
    if (idle) sleep_ms(0.02);
}

void DataplaneLink::watch() {
    const std::int64_t now = unix_time_ns();
    state_->controlplane_heartbeat_ns = std::uint64_t(now);
    handover_.housekeeping(now, [this](std::uint32_t warrant, std::int64_t at) {
        std::lock_guard lock(mutex_);
        const auto it = warrants_.find(warrant);
        return it != warrants_.end() && it->second.in_window(at);
    });

    // Which published commits the dataplane has taken.
    const std::uint64_t applied = load_acquire(state_->targets.commit_applied);
    std::vector<Pending> done;
    {
        std::unique_lock lock(publish_mutex_, std::try_to_lock);
        if (lock.owns_lock()) {
            auto split = std::partition(pending_.begin(), pending_.end(),
                                        [&](const Pending& p) { return p.sequence > applied; });
            done.assign(split, pending_.end());
            pending_.erase(split, pending_.end());
        }
    }
    if (!done.empty()) {
        std::lock_guard lock(mutex_);
        char detail[128];
        std::snprintf(detail, sizeof detail,
                      "in target set generation %llu (%u targets, published in %.2f ms)",
                      static_cast<unsigned long long>(state_->targets.generation),
                      state_->targets.targets, state_->targets.last_publish_ms);
        for (const Pending& p : done) {
            auto it = warrants_.find(p.internal_id);
            if (it == warrants_.end() || !it->second.active) continue;
            it->second.effective = true;
            emit(v1::EVENT_WARRANT_EFFECTIVE, &it->second, detail);
        }
    }

    if (resync_needed_.exchange(false) && !sync_all()) resync_needed_.store(true);

    // Liveness, a few times a second.
    if (now - last_liveness_ns_ < 100'000'000) return;
    last_liveness_ns_ = now;
    // Measured from the attach at the latest: a dataplane may not have beaten yet.
    const double silent_s =
        double(now - std::max(std::int64_t(state_->heartbeat_ns), attached_ns_)) / 1e9;
    std::string why;
    if (state_->boot_id != boot_id_)
        why = "dataplane restarted";
    else if (!rte_eal_primary_proc_alive(primary_config_path(options_.file_prefix).c_str()))
        why = "dataplane process gone";
    else if (silent_s > options_.heartbeat_timeout_s)
        why = "dataplane heartbeat silent for " + std::to_string(int(silent_s)) + " s";
    if (!why.empty()) {
        {
            std::lock_guard lock(mutex_);
            detail_ = why;
        }
        attached_.store(false);
        lost_.store(true);
        emit(v1::EVENT_DATAPLANE_LOST, nullptr, why);
        std::fprintf(stderr, "tapwire-controlplane: %s\n", why.c_str());
        if (on_lost) on_lost();
        return;
    }

    // Drops by reason, as events, once a second.
    if (now - drop_sample_.at_ns >= 1'000'000'000) {
        std::map<std::string, std::uint64_t> drops = drop_totals();
        std::map<std::string, std::uint64_t> increase;
        if (drop_sample_.at_ns != 0)
            for (const auto& [name, v] : drops)
                if (v > drop_sample_.drops[name]) increase[name] = v - drop_sample_.drops[name];
        drop_sample_.drops = std::move(drops);
        drop_sample_.at_ns = now;
        if (!increase.empty()) emit(v1::EVENT_DROPS, nullptr, "drop counters increased", increase);
    }
}

std::map<std::string, std::uint64_t> DataplaneLink::drop_totals() const {
    std::map<std::string, std::uint64_t> drops = handover_.drop_totals();
    for (std::size_t c = 0; c < std::size_t(LinkCounter::Count); ++c)
        if (std::strncmp(kCounterNames[c], "drop_", 5) == 0)
            drops[kCounterNames[c]] = counters_[c].load(std::memory_order_relaxed);
    if (state_ == nullptr) return drops;
    for (std::size_t c = 0; c < shm::kWorkerCounterCount; ++c) {
        if (std::strncmp(shm::kWorkerCounterNames[c], "drop_", 5) != 0) continue;
        std::uint64_t sum = 0;
        for (std::uint32_t w = 0; w < state_->worker_count; ++w)
            sum += state_->workers[w].value[c];
        drops[shm::kWorkerCounterNames[c]] = sum;
    }
    return drops;
}

void DataplaneLink::fill_status(v1::ApplianceStatus& s) {
    s.set_dataplane_attached(attached_.load());
    {
        std::lock_guard lock(mutex_);
        s.set_dataplane_detail(detail_);
    }
    s.set_hits_drained(counters_[std::size_t(LinkCounter::hits_drained)].load());
    for (const auto& [name, v] : drop_totals())
        (*s.mutable_drops())[name] = v;
    if (!attached_.load()) return;
    const shm::DataplaneState& st = *state_;
    *s.mutable_dataplane_started() = to_timestamp(std::int64_t(st.started_ns));
    *s.mutable_dataplane_heartbeat() = to_timestamp(std::int64_t(st.heartbeat_ns));
    s.set_active_calls(st.dialogs);
    s.set_active_media_flows(st.media_flows);
    s.set_published_targets(st.targets.targets);
    s.set_target_generation(st.targets.generation);
    if (std::string_view(st.targets.last_error).size())
        s.set_dataplane_detail("attached; last target error: " +
                               std::string(st.targets.last_error));

    const std::int64_t now = unix_time_ns();
    std::lock_guard lock(mutex_);
    const double interval_s = double(now - rate_sample_.at_ns) / 1e9;
    rate_sample_.rx.resize(st.worker_count);
    std::uint64_t hits_total = 0;
    for (std::uint32_t w = 0; w < st.worker_count; ++w) {
        const shm::WorkerCounters& c = st.workers[w];
        v1::WorkerStatus* ws = s.add_workers();
        ws->set_worker(w);
        const std::uint64_t rx = c[shm::WorkerCounter::rx_packets];
        ws->set_rx_packets(rx);
        if (rate_sample_.at_ns != 0 && interval_s > 0)
            ws->set_rx_packets_per_second(double(rx - rate_sample_.rx[w]) / interval_s);
        rate_sample_.rx[w] = rx;
        const std::uint64_t hits =
            c[shm::WorkerCounter::hits_sip] + c[shm::WorkerCounter::hits_rtp] +
            c[shm::WorkerCounter::hits_rtcp] + c[shm::WorkerCounter::hits_ip];
        ws->set_hits(hits);
        hits_total += hits;
        if (w < hit_rings_.size() && st.hit_ring_size)
            ws->set_hit_ring_fill(double(rte_ring_count(hit_rings_[w])) / st.hit_ring_size);
        for (std::size_t k = 0; k < shm::kWorkerCounterCount; ++k) {
            (*ws->mutable_counters())[shm::kWorkerCounterNames[k]] = c.value[k];
            if (c.value[k] && std::strncmp(shm::kWorkerCounterNames[k], "drop_", 5) == 0)
                (*ws->mutable_drops())[shm::kWorkerCounterNames[k]] = c.value[k];
        }
    }
    rate_sample_.at_ns = now;
    s.set_hits_total(hits_total);
}

void DataplaneLink::fill_warrant_runtime(std::uint32_t internal_id, v1::WarrantStatus& status) {
    std::lock_guard lock(mutex_);
    auto it = warrants_.find(internal_id);
    if (it == warrants_.end()) return;
    status.set_hits(it->second.hits);
    if (it->second.last_hit_ns) *status.mutable_last_hit() = to_timestamp(it->second.last_hit_ns);
    status.set_effective_in_dataplane(it->second.effective && attached_.load());
}

}  // namespace tapwire::controlplane
