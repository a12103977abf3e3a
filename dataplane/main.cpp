// tapwire-dataplane: the point of interception, a DPDK primary process.
//
//   tapwire-dataplane [EAL options] -- --config FILE [options]
//
// The main lcore does housekeeping (table sweeps, heartbeat, statistics); every other lcore
// given to the EAL is a worker. See proto/tapwire/v1/dataplane.proto for the configuration.
// Logs carry counters only, never target identities.

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_memzone.h>
#include <rte_ring.h>

#include <atomic>
#include <bitset>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "common/shm_contract.hpp"
#include "common/x_list.hpp"
#include "dataplane/config.hpp"
#include "dataplane/flow_tables.hpp"
#include "dataplane/ports.hpp"
#include "dataplane/rcu.hpp"
#include "dataplane/target_set.hpp"
#include "dataplane/target_updates.hpp"
#include "dataplane/telemetry.hpp"
#include "dataplane/worker.hpp"

namespace tapwire::dataplane {
namespace {

std::atomic<bool> g_stop{false};

void on_signal(int) {
    g_stop.store(true);
}

struct Options {
    std::string config_path;
    std::string config_text;
    std::string targets_path;
    double run_seconds = 0;        // 0: until SIGINT/SIGTERM
    double exit_when_idle_ms = 0;  // replay tests: stop after this long without packets
    double drain_timeout_ms = 2000;
    double stats_every_s = 0;
};

[[noreturn]] void fail(const std::string& message) {
    std::fprintf(stderr, "tapwire-dataplane: %s\n", message.c_str());
    std::exit(1);
}

void usage() {
    std::fprintf(stderr,
                 "usage: tapwire-dataplane [EAL options] -- --config FILE [options]\n"
                 "  --config FILE          DataplaneConfig in protobuf text format\n"
                 "  --config-text TEXT     the same, inline\n"
                 "  --targets FILE         standalone targets (\"<warrant-id> <identity>\" lines)\n"
                 "  --run-seconds S        stop after S seconds\n"
                 "  --exit-when-idle MS    stop once no packet arrived for MS ms (pcap replay)\n"
                 "  --drain-timeout MS     at stop, wait this long for the hit rings to drain\n"
                 "  --stats-every S        print counters every S seconds\n");
}

Options parse_options(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) fail(a + " needs a value");
            return argv[++i];
        };
        auto number = [&]() {
            std::string v = value();
            char* end;
            double d = std::strtod(v.c_str(), &end);
            if (*end || d < 0) fail(a + ": '" + v + "' is not a non-negative number");
            return d;
        };
        if (a == "--config")
            o.config_path = value();
        else if (a == "--config-text")
            o.config_text = value();
        else if (a == "--targets")
            o.targets_path = value();
        else if (a == "--run-seconds")
            o.run_seconds = number();
        else if (a == "--exit-when-idle")
            o.exit_when_idle_ms = number();
        else if (a == "--drain-timeout")
            o.drain_timeout_ms = number();
        else if (a == "--stats-every")
            o.stats_every_s = number();
        else {
            usage();
            fail("unknown option '" + a + "'");
        }
    }
    if (o.config_path.empty() == o.config_text.empty()) {
        usage();
        fail("give exactly one of --config and --config-text");
    }
    return o;
}

std::uint64_t total(const shm::DataplaneState& s, shm::WorkerCounter c) {
    std::uint64_t sum = 0;
    for (std::uint32_t w = 0; w < s.worker_count; ++w)
        sum += s.workers[w][c];
    return sum;
}

void print_counters(const shm::DataplaneState& s, FILE* out) {
    for (std::size_t c = 0; c < shm::kWorkerCounterCount; ++c) {
        std::uint64_t v = total(s, static_cast<shm::WorkerCounter>(c));
        if (v)
            std::fprintf(out, "  %-24s %14llu\n", shm::kWorkerCounterNames[c],
                         static_cast<unsigned long long>(v));
    }
}

int run(int argc, char** argv) {
    int eal_args = rte_eal_init(argc, argv);
    if (eal_args < 0) fail(std::string("EAL initialisation failed: ") + rte_strerror(rte_errno));
    if (rte_eal_process_type() != RTE_PROC_PRIMARY)
        fail("must run as the DPDK primary process (the control plane is the secondary)");
    Options options = parse_options(argc - eal_args, argv + eal_args);

    Config config;
    std::string error = options.config_path.empty()
                            ? parse_config(options.config_text, "--config-text", config)
                            : load_config(options.config_path, config);
    if (!error.empty()) fail(error);

    // Workers: every lcore but the main one, capped by the configuration and the queues.
    unsigned queue_total = 0;
    for (const auto& p : config.ports())
        queue_total += p.rx_queues();
    unsigned available = rte_lcore_count() - 1;
    if (available == 0)
        fail("needs at least 2 lcores (EAL -l): the main lcore for housekeeping and a worker");
    unsigned workers = config.workers() ? config.workers() : std::min(available, queue_total);
    if (workers > available)
        fail("workers: " + std::to_string(workers) + " configured but the EAL gave " +
             std::to_string(available) + " worker lcores");
    if (workers > queue_total)
        fail("workers: " + std::to_string(workers) + " workers but only " +
             std::to_string(queue_total) + " rx queues to poll (raise ports[].rx_queues)");
    if (workers > shm::kMaxWorkers) fail("workers: at most " + std::to_string(shm::kMaxWorkers));

    int socket = static_cast<int>(rte_socket_id());
    // Receive pool: every descriptor filled, plus bursts in flight, plus per-lcore caches.
    unsigned rx_mbufs = config.mbuf_pool_size();
    if (rx_mbufs == 0) {
        for (const auto& p : config.ports())
            rx_mbufs += p.rx_queues() * p.rx_descriptors() + p.tx_descriptors() * workers;
        rx_mbufs += workers * (config.burst_size() + 256) + 1024;
    }
    rte_mempool* rx_pool =
        rte_pktmbuf_pool_create("tw_rx_pool", rx_mbufs, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE, socket);
    if (!rx_pool)
        fail(std::string("rx mbuf pool (") + std::to_string(rx_mbufs) +
             "): " + rte_strerror(rte_errno));

    // Hit pool: enough to fill every ring; copies longer than one mbuf are chained.
    unsigned hit_mbufs = config.mirror().pool_size() ? config.mirror().pool_size()
                                                     : config.mirror().ring_size() * workers + 4096;
    rte_mempool* hit_pool = rte_pktmbuf_pool_create(
        shm::kHitPoolName, hit_mbufs, 256, sizeof(shm::HitMeta), RTE_MBUF_DEFAULT_BUF_SIZE, socket);
    if (!hit_pool)
        fail(std::string("mirror.pool_size: hit pool of ") + std::to_string(hit_mbufs) + ": " +
             rte_strerror(rte_errno));

    const rte_memzone* mz =
        rte_memzone_reserve(shm::kStateMemzoneName, sizeof(shm::DataplaneState), socket, 0);
    if (!mz)
        fail(std::string("state memzone: ") + rte_strerror(rte_errno) +
             " (is another dataplane running with this --file-prefix?)");
    auto* state = static_cast<shm::DataplaneState*>(mz->addr);
    std::memset(state, 0, sizeof *state);

    std::vector<rte_ring*> rings(workers);
    for (unsigned w = 0; w < workers; ++w) {
        rings[w] = rte_ring_create(shm::hit_ring_name(w).c_str(), config.mirror().ring_size(),
                                   socket, RING_F_SP_ENQ | RING_F_SC_DEQ);
        if (!rings[w]) fail("hit ring " + shm::hit_ring_name(w) + ": " + rte_strerror(rte_errno));
    }

    // RCU: thread 0 is the main lcore (table sweeps, snapshot publishing), 1.. the workers.
    auto qs = QuiescentState::create(workers + 1);
    if (!qs) fail("cannot create the RCU quiescent-state variable");
    FlowTablesConfig tcfg;
    tcfg.max_dialogs = config.tables().max_dialogs();
    tcfg.max_media = config.tables().max_media_flows();
    tcfg.linger_ns = std::uint64_t(config.tables().dialog_linger_ms()) * 1'000'000;
    tcfg.dialog_idle_timeout_ns =
        std::uint64_t(config.tables().dialog_idle_timeout_s()) * 1'000'000'000;
    tcfg.media_idle_timeout_ns =
        std::uint64_t(config.tables().media_idle_timeout_s()) * 1'000'000'000;
    tcfg.sweeper_thread_id = 0;
    tcfg.socket_id = socket;
    std::string table_error;
    auto tables = FlowTables::create(tcfg, *qs, &table_error);
    if (!tables) fail("tables: " + table_error);

    // Target updates from the control plane: a command ring the main lcore drains.
    rte_mempool* command_pool = rte_mempool_create(
        shm::kTargetCommandPoolName, shm::kTargetCommandPoolSize, sizeof(shm::TargetCommand), 0, 0,
        nullptr, nullptr, nullptr, nullptr, socket, 0);
    rte_ring* command_ring = rte_ring_create(shm::kTargetCommandRingName,
                                             shm::kTargetCommandRingSize, socket, RING_F_SC_DEQ);
    if (!command_pool || !command_ring)
        fail(std::string("target command ring: ") + rte_strerror(rte_errno));

    Published<TargetSet> targets(*qs);
    TargetUpdaterOptions uopt;
    uopt.workers = workers;
    uopt.rcu_thread_id = 0;
    TargetUpdater updater(targets, &state->targets, uopt);
    std::string targets_path =
        options.targets_path.empty() ? config.target_file() : options.targets_path;
    if (!targets_path.empty()) {
        std::vector<TargetSpec> specs;
        std::string terr;
        if (!load_target_file(targets_path, specs, terr)) fail(terr);
        if (auto e = updater.load(specs); !e.empty()) fail(targets_path + ": " + e);
        std::printf("tapwire-dataplane: %zu targets of %zu warrants loaded from %s\n",
                    updater.target_count(), updater.warrant_count(), targets_path.c_str());
    } else {
        std::printf("tapwire-dataplane: no targets yet (waiting for the control plane)\n");
    }

    std::vector<PortInfo> ports;
    std::vector<RxQueue> queues;
    error = start_ports(config, workers, rx_pool, ports, queues);
    if (!error.empty()) {
        stop_ports(ports);
        fail(error);
    }

    Clock clock;
    state->contract_version = shm::kContractVersion;
    state->worker_count = workers;
    state->hit_ring_size = config.mirror().ring_size();
    state->started_ns = clock.ns_at_start();
    state->tsc_hz = clock.tsc_hz();
    state->tsc_at_start = clock.tsc_at_start();
    state->boot_id = (std::uint64_t(std::random_device{}()) << 32) ^ std::random_device{}() ^
                     clock.tsc_at_start();
    state->heartbeat_ns = clock.ns_at_start();
    // Last, with release: a control plane that sees the magic sees the fields above.
    std::atomic_ref<std::uint32_t>(state->magic).store(shm::kStateMagic, std::memory_order_release);

    std::bitset<65536> sip_ports;
    for (auto p : config.sip_ports())
        sip_ports.set(p);

    std::vector<std::unique_ptr<Worker>> worker_objs;
    std::vector<WorkerLaunch> launches(workers);
    for (unsigned w = 0; w < workers; ++w) {
        WorkerSetup s;
        s.index = w;
        s.rcu_thread_id = w + 1;
        for (std::size_t q = w; q < queues.size(); q += workers)
            s.queues.push_back(queues[q]);
        s.inline_mode = config.mode() == Config::MODE_INLINE;
        s.burst = static_cast<std::uint16_t>(config.burst_size());
        s.snap_length = config.mirror().snap_length();
        s.sip_ports = &sip_ports;
        s.hit_ring = rings[w];
        s.hit_pool = hit_pool;
        s.counters = &state->workers[w];
        s.tables = tables.get();
        s.qs = qs.get();
        s.targets = &targets;
        s.fragments.slots = config.tables().fragment_slots();
        s.fragments.timeout_ns = std::uint64_t(config.tables().fragment_timeout_ms()) * 1'000'000;
        s.fragments.hash_seed ^= rte_rdtsc() + w;
        s.tcp.streams = config.tables().tcp_streams();
        s.tcp.hash_seed ^= rte_rdtsc() * 31 + w;
        s.clock = &clock;
        worker_objs.push_back(std::make_unique<Worker>(s));
        launches[w] = {worker_objs.back().get(), &g_stop};
    }

    register_telemetry(state);

    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);
    unsigned w = 0;
    unsigned lcore;
    RTE_LCORE_FOREACH_WORKER(lcore) {
        if (w == workers) break;
        rte_eal_remote_launch(worker_lcore_main, &launches[w++], lcore);
    }
    std::printf("tapwire-dataplane: %u workers on %zu ports, %zu rx queues, %s mode\n", workers,
                ports.size(), queues.size(),
                config.mode() == Config::MODE_INLINE ? "inline" : "passive");
    std::fflush(stdout);

    // Housekeeping until told to stop.
    using SteadyClock = std::chrono::steady_clock;
    auto started = SteadyClock::now();
    auto last_stats = started;
    auto last_rx_change = started;
    std::uint64_t last_rx = 0;
    while (!g_stop.load()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
        clock.recalibrate();  // about once a second (see Clock)
        std::uint64_t now_ns = clock.ns(rte_rdtsc());
        tables->sweep(now_ns, 4096);
        updater.poll(command_ring);
        qs->quiescent(0);
        state->dialogs = tables->dialog_count();
        state->media_flows = tables->media_count();
        state->heartbeat_ns = now_ns;
        auto now = SteadyClock::now();
        std::uint64_t rx = total(*state, shm::WorkerCounter::rx_packets);
        if (rx != last_rx) last_rx = rx, last_rx_change = now;
        double since_start = std::chrono::duration<double>(now - started).count();
        if (options.run_seconds > 0 && since_start >= options.run_seconds) break;
        if (options.exit_when_idle_ms > 0 && rx > 0 &&
            std::chrono::duration<double, std::milli>(now - last_rx_change).count() >=
                options.exit_when_idle_ms)
            break;
        if (options.stats_every_s > 0 &&
            std::chrono::duration<double>(now - last_stats).count() >= options.stats_every_s) {
            last_stats = now;
            std::printf(
                "tapwire-dataplane: %.0f s: rx %llu, hits %llu, drops %llu, dialogs %u, media %u\n",
                since_start, static_cast<unsigned long long>(rx),
                static_cast<unsigned long long>(total(*state, shm::WorkerCounter::hits_sip) +
                                                total(*state, shm::WorkerCounter::hits_rtp) +
                                                total(*state, shm::WorkerCounter::hits_rtcp) +
                                                total(*state, shm::WorkerCounter::hits_ip)),
                static_cast<unsigned long long>(total(*state, shm::WorkerCounter::drop_ring_full) +
                                                total(*state, shm::WorkerCounter::drop_pool_empty)),
                tables->dialog_count(), tables->media_count());
            std::fflush(stdout);
        }
    }
    g_stop.store(true);
    rte_eal_mp_wait_lcore();

    // Give the consumer a moment to take what is still in the rings: stopping must not
    // silently lose intercepted data. What is left after the timeout is reported.
    auto drain_started = SteadyClock::now();
    std::uint64_t left = 0;
    for (;;) {
        left = 0;
        for (auto* r : rings)
            left += rte_ring_count(r);
        if (left == 0 ||
            std::chrono::duration<double, std::milli>(SteadyClock::now() - drain_started).count() >=
                options.drain_timeout_ms)
            break;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    std::printf("tapwire-dataplane: stopped; totals:\n");
    print_counters(*state, stdout);
    std::printf("  %-24s %14u\n  %-24s %14u\n", "dialogs_open", tables->dialog_count(),
                "media_flows_open", tables->media_count());
    if (left)
        std::printf("  %-24s %14llu  (hits not taken by a consumer before exit)\n",
                    "hits_left_in_rings", static_cast<unsigned long long>(left));
    std::fflush(stdout);
    stop_ports(ports);
    worker_objs.clear();
    return 0;
}

}  // namespace
}  // namespace tapwire::dataplane

int main(int argc, char** argv) {
    return tapwire::dataplane::run(argc, argv);
}
