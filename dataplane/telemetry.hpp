// DPDK telemetry endpoints, readable with dpdk-telemetry.py (or any client of the
// /var/run/dpdk/<prefix>/dpdk_telemetry socket):
//   /tapwire/totals          every worker counter summed over workers
//   /tapwire/workers         every counter as an array, one value per worker
//   /tapwire/worker,N        one worker's counters
//   /tapwire/state           start time, worker count, table sizes, target publication
// The names are the X-macro list in common/shm_contract.hpp, so telemetry, status and the
// code cannot disagree.
#pragma once

#include <cstdint>
#include "common/shm_contract.hpp"

namespace tapwire::dataplane {

/// Registers the endpoints over the given state. Call once, after rte_eal_init.
void register_telemetry(const shm::DataplaneState* state);

}  // namespace tapwire::dataplane
