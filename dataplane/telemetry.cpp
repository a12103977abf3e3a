#include "dataplane/telemetry.hpp"

#include <rte_telemetry.h>

#include <cstdlib>

#include "common/x_list.hpp"
namespace tapwire::dataplane {

namespace {

const shm::DataplaneState* g_state = nullptr;  // telemetry callbacks take no user pointer

const auto& kCounterNames = shm::kWorkerCounterNames;

int totals(const char*, const char*, rte_tel_data* d) {
    rte_tel_data_start_dict(d);
    for (std::size_t c = 0; c < shm::kWorkerCounterCount; ++c) {
        std::uint64_t sum = 0;
        for (std::uint32_t w = 0; w < g_state->worker_count; ++w)
            sum += g_state->workers[w].value[c];
        rte_tel_data_add_dict_u64(d, kCounterNames[c], sum);
    }
    return 0;
}

int workers(const char*, const char*, rte_tel_data* d) {
    rte_tel_data_start_dict(d);
    for (std::size_t c = 0; c < shm::kWorkerCounterCount; ++c) {
        rte_tel_data* per_worker = rte_tel_data_alloc();
        if (!per_worker) return -ENOMEM;
        rte_tel_data_start_array(per_worker, RTE_TEL_U64_VAL);
        for (std::uint32_t w = 0; w < g_state->worker_count; ++w)
            rte_tel_data_add_array_u64(per_worker, g_state->workers[w].value[c]);
        rte_tel_data_add_dict_container(d, kCounterNames[c], per_worker, 0);
    }
    return 0;
}

int worker(const char*, const char* params, rte_tel_data* d) {
    if (!params || !*params) return -EINVAL;
    char* end;
    unsigned long w = std::strtoul(params, &end, 10);
    if (*end || w >= g_state->worker_count) return -EINVAL;
    rte_tel_data_start_dict(d);
    for (std::size_t c = 0; c < shm::kWorkerCounterCount; ++c)
        rte_tel_data_add_dict_u64(d, kCounterNames[c], g_state->workers[w].value[c]);
    return 0;
}

int state(const char*, const char*, rte_tel_data* d) {
    rte_tel_data_start_dict(d);
    rte_tel_data_add_dict_u64(d, "contract_version", g_state->contract_version);
    rte_tel_data_add_dict_u64(d, "worker_count", g_state->worker_count);
    rte_tel_data_add_dict_u64(d, "started_ns", g_state->started_ns);
    rte_tel_data_add_dict_u64(d, "heartbeat_ns", g_state->heartbeat_ns);
    rte_tel_data_add_dict_u64(d, "dialogs", g_state->dialogs);
    rte_tel_data_add_dict_u64(d, "media_flows", g_state->media_flows);
    const shm::TargetPublication& t = g_state->targets;
    rte_tel_data_add_dict_u64(d, "target_generation", t.generation);
    rte_tel_data_add_dict_u64(d, "target_commit_applied", t.commit_applied);
    rte_tel_data_add_dict_u64(d, "target_warrants", t.warrants);
    rte_tel_data_add_dict_u64(d, "targets", t.targets);
    rte_tel_data_add_dict_u64(d, "target_base", t.base_targets);
    rte_tel_data_add_dict_u64(d, "target_delta", t.delta_targets);
    rte_tel_data_add_dict_u64(d, "target_rebuilds", t.rebuilds);
    rte_tel_data_add_dict_u64(d, "target_commands_invalid", t.commands_invalid);
    rte_tel_data_add_dict_u64(d, "controlplane_heartbeat_ns", g_state->controlplane_heartbeat_ns);
    rte_tel_data_add_dict_u64(d, "hit_ring_size", g_state->hit_ring_size);
    return 0;
}

}  // namespace

void register_telemetry(const shm::DataplaneState* state_ptr) {
    g_state = state_ptr;
    rte_telemetry_register_cmd("/tapwire/totals", totals,
                               "Tapwire worker counters summed over workers. No parameters");
    rte_telemetry_register_cmd(
        "/tapwire/workers", workers,
        "Tapwire worker counters, one array entry per worker. No parameters");
    rte_telemetry_register_cmd("/tapwire/worker", worker,
                               "One Tapwire worker's counters. Parameter: worker index");
    rte_telemetry_register_cmd("/tapwire/state", state,
                               "Tapwire dataplane state and table gauges. No parameters");
}

}  // namespace tapwire::dataplane
