// DPDK telemetry endpoints, readable with dpdk-telemetry.py (or any client of the
// /var/run/dpdk/<prefix>/dpdk_telemetry socket):
//   /tapwire/totals          every worker counter summed over workers
//   /tapwire/workers         every counter as an array, one value per worker
//   /tapwire/worker,N        one worker's counters
//   /tapwire/state           start time, target-set generation, worker count, extra gauges
// The names are the X-macro list in common/shm_contract.hpp, so telemetry, status and the
// code cannot disagree.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "common/shm_contract.hpp"

namespace tapwire::dataplane {

/// Gauges that are not per-worker counters (table occupancy and the like), sampled when a
/// client asks.
using GaugeSource = std::function<std::vector<std::pair<std::string, std::uint64_t>>()>;

/// Registers the endpoints over the given state. Call once, after rte_eal_init.
void register_telemetry(const shm::DataplaneState* state, GaugeSource gauges);

}  // namespace tapwire::dataplane
