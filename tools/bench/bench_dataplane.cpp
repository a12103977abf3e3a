// tapwire-bench-dataplane: the dataplane worker (dataplane/worker.hpp) on the standard mix
// M1 (issue 3, "Benchmark"), one worker core, next to a baseline on the same port.
//
//   tapwire-bench-dataplane [EAL options --] [--quick] [--rounds N] [--round-ms MS]
//                           [--window-ms MS] [--targets N] [--calls N] [--burst N]
//                           [--shuffle-mbufs] [--pipeline-only] [--seed N]
//
// 1. Builds a window of M1 (tools/traffic/m1_mix.hpp: every share kept, 250 ms by default)
//    and copies every frame into its own mbuf once: generating traffic is never measured.
// 2. Sets up what dataplane/main.cpp sets up, at the production defaults of
//    dataplane/config.cpp: flow tables, QuiescentState, a published TargetSet of 100,000
//    identities (the targeted calls' among them), a hit ring and pool, a Worker.
// 3. The port is a net_ring device whose rx and tx queue are backed by ONE ring holding the
//    window: what is received and sent back goes to the end of the queue, so the window
//    replays in order forever and no mbuf is freed or refilled.
//    - baseline: rx_burst, tx_burst back (rx and recycle, no classification);
//    - baseline + touch: the same, reading the first line of every frame (the least any
//      classifier must do: what the memory system costs on its own);
//    - pipeline: Worker::run itself in inline mode (rx_burst, prefetch, Worker::inspect per
//      packet, tx_burst back, flush_hits, RCU quiescent report): the production loop.
//      Worker::inspect called alone would match no target: the worker loads the target
//      snapshot in run(), once per loop iteration (RCU), not per packet.
//    Before timing, the concurrent calls' SIP set-up is played once through a second worker
//    (passive, on its own port), so the targeted calls' dialogs and media are in the tables
//    as in steady state.
// 4. Rounds of round_ms, interleaved (baseline, touch, pipeline) so that noise hits all
//    three alike; SIGALRM sets the loop's stop flag. Between rounds (untimed) the hit ring
//    is drained and the tables swept, as the control plane and the main lcore would do.
//
// Figures: Mpps (median, p10, p90 over rounds) and cycles per packet per second of the
// thread's on-CPU time (other processes on a shared core do not count; their share is
// printed), hits/s, drops, every non-zero worker counter; the floor (5.25 Mpps per
// core: 10 GbE of G.711) and goal (10 Mpps) with PASS/BELOW on the pipeline median. Nothing
// is tuned to them. A sanity check (tables after the warm-up, hit share against the mix's
// expectation) exits 3 if the worker did not do its job, so a broken pipeline cannot post
// good figures.
//
// Reading the figures. The ring port is the cheapest port there is (a few cycles per
// packet): a NIC PMD adds its descriptor handling (and, in passive mode, the free), so the
// portable figure is the inspection cost over the baseline. Hugepages are used when enough
// are free; on 4 KiB pages the flow tables' random bucket reads miss the TLB and the
// pipeline measured about half as fast (a warning says so).

#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_eth_ring.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_prefetch.h>
#include <rte_ring.h>
#include <sched.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <bitset>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/shm_contract.hpp"
#include "dataplane/flow_tables.hpp"
#include "dataplane/rcu.hpp"
#include "dataplane/target_set.hpp"
#include "dataplane/worker.hpp"
#include "tools/bench/bench_stats.hpp"
#include "tools/traffic/m1_mix.hpp"

namespace {

using namespace tapwire;
using tapwire::bench::Stats;
using tapwire::bench::stats_of;
using namespace tapwire::dataplane;
using shm::WorkerCounter;
using SteadyClock = std::chrono::steady_clock;

// The runtime directory of a --no-huge run started with our own file prefix, removed at exit
// (rte_eal_cleanup leaves it behind).
std::string g_own_runtime_dir;

constexpr double kFloorMpps = 5.25;  // issue 3: 10 GbE of G.711 per core
constexpr double kGoalMpps = 10.0;
constexpr std::uint16_t kSmallDataRoom = 256;  // RTP (214 B), RTCP, DNS, ACKs
constexpr unsigned kHitRingSize = 65536;       // a round's hits fit; drained between rounds

struct Options {
    bool quick = false;
    int rounds = 15;
    unsigned round_ms = 200;
    unsigned window_ms = 250;
    unsigned targets = 100'000;
    unsigned calls = 20'000;
    unsigned burst = 32;
    bool shuffle_mbufs = false;
    bool pipeline_only = false;
    std::uint64_t seed = 1;
};

[[noreturn]] void fail(const std::string& message) {
    std::fprintf(stderr, "tapwire-bench-dataplane: %s\n", message.c_str());
    std::exit(1);
}

void usage() {
    std::fprintf(
        stderr,
        "usage: tapwire-bench-dataplane [EAL options --] [options]\n"
        "  --quick           CI smoke: 10k targets, 100 ms window, 5 rounds of 100 ms\n"
        "  --rounds N        timed rounds per mode (default 15)\n"
        "  --round-ms MS     length of one round (default 200)\n"
        "  --window-ms MS    M1 window replayed (default 250: 50 new calls, 1 targeted)\n"
        "  --targets N       active target identities (default 100000)\n"
        "  --calls N         concurrent calls (default 20000)\n"
        "  --burst N         rx burst (default 32, as the dataplane)\n"
        "  --shuffle-mbufs   give frames mbufs in random address order (no stride prefetch)\n"
        "  --seed N          traffic seed (default 1)\n"
        "  --pipeline-only   skip the baselines (for a profiler attached to the run)\n"
        "Without EAL options: -l <idlest allowed cpu> --no-pci -m <sized>, on hugepages\n"
        "(--in-memory) when enough are free, else --no-huge with a warning.\n");
}

unsigned parse_unsigned(const std::string& flag, const char* value, unsigned min, unsigned max) {
    char* end = nullptr;
    unsigned long v = std::strtoul(value, &end, 10);
    if (*value == '\0' || *end != '\0' || v < min || v > max)
        fail(flag + ": '" + value + "' is not a number in [" + std::to_string(min) + ", " +
             std::to_string(max) + "]");
    return unsigned(v);
}

Options parse_options(const std::vector<char*>& args) {
    Options o;
    bool rounds_set = false, round_ms_set = false, window_set = false, targets_set = false;
    for (std::size_t i = 0; i < args.size(); ++i) {
        std::string a = args[i];
        auto value = [&]() -> const char* {
            if (i + 1 >= args.size()) fail(a + " needs a value");
            return args[++i];
        };
        if (a == "--help" || a == "-h") {
            usage();
            std::exit(0);
        } else if (a == "--quick") {
            o.quick = true;
        } else if (a == "--rounds") {
            o.rounds = int(parse_unsigned(a, value(), 3, 1000)), rounds_set = true;
        } else if (a == "--round-ms") {
            o.round_ms = parse_unsigned(a, value(), 10, 10'000), round_ms_set = true;
        } else if (a == "--window-ms") {
            o.window_ms = parse_unsigned(a, value(), 20, 5'000), window_set = true;
        } else if (a == "--targets") {
            o.targets = parse_unsigned(a, value(), 1, 10'000'000), targets_set = true;
        } else if (a == "--calls") {
            o.calls = parse_unsigned(a, value(), 1, 1'000'000);
        } else if (a == "--burst") {
            o.burst = parse_unsigned(a, value(), 1, 256);
        } else if (a == "--shuffle-mbufs") {
            o.shuffle_mbufs = true;
        } else if (a == "--pipeline-only") {
            o.pipeline_only = true;
        } else if (a == "--seed") {
            o.seed = parse_unsigned(a, value(), 0, ~0u);
        } else {
            usage();
            fail("unknown option '" + a + "'");
        }
    }
    if (o.quick) {
        if (!rounds_set) o.rounds = 5;
        if (!round_ms_set) o.round_ms = 100;
        if (!window_set) o.window_ms = 100;
        if (!targets_set) o.targets = 10'000;
    }
    return o;
}

// --- stopping a loop from a timer --------------------------------------------------------
// The loops poll a stop flag once per iteration (Worker::run takes one). A one-shot
// ITIMER_REAL ends a timed round; a periodic one ends a warm-up chunk once the worker has
// received every frame of it. One core, no helper thread.

std::atomic<bool> g_stop{false};
std::atomic<const std::uint64_t*> g_watch{nullptr};  // stop when *g_watch >= g_watch_target
std::uint64_t g_watch_target = 0;

extern "C" void on_alarm(int) {
    const std::uint64_t* counter = g_watch.load(std::memory_order_relaxed);
    if (counter == nullptr ||
        *static_cast<const volatile std::uint64_t*>(counter) >= g_watch_target)
        g_stop.store(true, std::memory_order_relaxed);
}

void set_timer(unsigned first_us, unsigned interval_us) {
    itimerval t{};
    t.it_value.tv_sec = first_us / 1'000'000;
    t.it_value.tv_usec = first_us % 1'000'000;
    t.it_interval.tv_sec = interval_us / 1'000'000;
    t.it_interval.tv_usec = interval_us % 1'000'000;
    setitimer(ITIMER_REAL, &t, nullptr);
}

void stop_timer() {
    set_timer(0, 0);
    g_watch.store(nullptr);
    g_stop.store(false);
}

// --- the measured loops -----------------------------------------------------------------

// Rounds are timed by the thread's on-CPU time (CLOCK_THREAD_CPUTIME_ID): on a shared
// machine another process on the same core would otherwise count as cost. The TSC gives the
// wall time, so the on-CPU share of each round is known and reported.
struct Sample {
    std::uint64_t packets = 0;
    std::uint64_t tsc = 0;  // wall
    double cpu_s = 0;       // on-CPU
};

double thread_cpu_s() {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return double(ts.tv_sec) + double(ts.tv_nsec) * 1e-9;
}

// Baseline: what the port costs with no classification. Identical burst handling to
// Worker::run in inline mode minus inspect and flush_hits. touch additionally reads the
// first line of every frame with the same prefetch distance as Worker::run.
Sample run_baseline(std::uint16_t port, std::uint16_t burst, bool touch, unsigned ms,
                    std::uint64_t& lost) {
    std::array<rte_mbuf*, 256> b;
    std::uint64_t packets = 0;
    std::uint32_t sink = 0;
    set_timer(ms * 1000, 0);
    double c0 = thread_cpu_s();
    std::uint64_t t0 = rte_rdtsc();
    while (!g_stop.load(std::memory_order_relaxed)) {
        std::uint16_t n = rte_eth_rx_burst(port, 0, b.data(), burst);
        if (n == 0) continue;
        if (touch) {
            for (std::uint16_t i = 0; i < n; ++i) {
                if (i + 2 < n) rte_prefetch0(rte_pktmbuf_mtod(b[i + 2], void*));
                const auto* p = rte_pktmbuf_mtod(b[i], const std::uint8_t*);
                sink += p[12] + p[13] + b[i]->data_len;
            }
        }
        std::uint16_t sent = rte_eth_tx_burst(port, 0, b.data(), n);
        if (sent < n) {  // cannot happen: the ring holds every mbuf
            lost += n - sent;
            rte_pktmbuf_free_bulk(b.data() + sent, n - sent);
        }
        packets += n;
    }
    std::uint64_t t1 = rte_rdtsc();
    double c1 = thread_cpu_s();
    stop_timer();
    asm volatile("" : : "r"(sink));
    return {packets, t1 - t0, c1 - c0};
}

Sample run_pipeline(Worker& worker, const shm::WorkerCounters& counters, unsigned ms) {
    std::uint64_t before = counters[WorkerCounter::rx_packets];
    set_timer(ms * 1000, 0);
    double c0 = thread_cpu_s();
    std::uint64_t t0 = rte_rdtsc();
    worker.run(g_stop);
    std::uint64_t t1 = rte_rdtsc();
    double c1 = thread_cpu_s();
    stop_timer();
    return {counters[WorkerCounter::rx_packets] - before, t1 - t0, c1 - c0};
}

std::uint64_t drain(rte_ring* ring) {
    std::array<void*, 512> objs;
    std::uint64_t total = 0;
    unsigned n;
    while ((n = rte_ring_sc_dequeue_burst(ring, objs.data(), objs.size(), nullptr)) > 0) {
        rte_pktmbuf_free_bulk(reinterpret_cast<rte_mbuf**>(objs.data()), n);
        total += n;
    }
    return total;
}

// --- set-up helpers ----------------------------------------------------------------------

std::string l3_size() {
    std::ifstream in("/sys/devices/system/cpu/cpu0/cache/index3/size");
    std::string size;
    return in >> size ? size : "unknown";
}

std::string cpu_model() {
    std::ifstream in("/proc/cpuinfo");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
    return "unknown";
}

// The allowed CPU that was idlest over 200 ms (/proc/stat): on a shared development machine
// that keeps other processes off the measured core more often than not. Pass -l to choose.
int idlest_allowed_cpu() {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) != 0) return 0;
    auto idle_times = [] {
        std::vector<std::pair<int, unsigned long long>> out;
        std::ifstream in("/proc/stat");
        std::string line;
        while (std::getline(in, line)) {
            if (line.rfind("cpu", 0) != 0 || line.size() < 4 || line[3] < '0' || line[3] > '9')
                continue;
            int cpu = std::atoi(line.c_str() + 3);
            unsigned long long v[5] = {};
            std::sscanf(line.c_str() + line.find(' '), "%llu %llu %llu %llu %llu", &v[0], &v[1],
                        &v[2], &v[3], &v[4]);
            out.emplace_back(cpu, v[3] + v[4]);  // idle + iowait
        }
        return out;
    };
    auto before = idle_times();
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    auto after = idle_times();
    int best = -1;
    unsigned long long best_idle = 0;
    for (std::size_t i = 0; i < std::min(before.size(), after.size()); ++i) {
        int cpu = after[i].first;
        if (cpu >= CPU_SETSIZE || !CPU_ISSET(cpu, &set)) continue;
        unsigned long long idle = after[i].second - before[i].second;
        if (best < 0 || idle > best_idle) best = cpu, best_idle = idle;
    }
    if (best >= 0) return best;
    for (int c = 0; c < CPU_SETSIZE; ++c)
        if (CPU_ISSET(c, &set)) return c;
    return 0;
}

unsigned free_hugepage_mb() {
    std::ifstream in("/proc/meminfo");
    std::string key;
    unsigned long value = 0, free_pages = 0, page_kb = 0;
    std::string unit;
    while (in >> key >> value) {
        if (key == "HugePages_Free:") free_pages = value;
        if (key == "Hugepagesize:") page_kb = value;
        std::getline(in, unit);
    }
    return unsigned(free_pages * page_kb / 1024);
}

std::string joined(int argc, char** argv) {
    std::string s;
    for (int i = 0; i < argc; ++i) {
        std::string a = argv[i];
        bool quote = a.find_first_of(" \t'\"*$") != std::string::npos;
        if (!s.empty()) s += ' ';
        s += quote ? "'" + a + "'" : a;
    }
    return s;
}

unsigned pow2_above(std::uint64_t n) {
    unsigned p = 1;
    while (p <= n)
        p <<= 1;
    return p;
}

rte_mempool* make_pool(const char* name, unsigned count, std::uint16_t priv,
                       std::uint16_t data_room) {
    rte_mempool* p = rte_pktmbuf_pool_create(name, count, 256, priv,
                                             std::uint16_t(RTE_PKTMBUF_HEADROOM + data_room),
                                             int(rte_socket_id()));
    if (p == nullptr)
        fail(std::string("mempool ") + name + " (" + std::to_string(count) +
             " mbufs): " + rte_strerror(rte_errno) + " (raise -m, or use hugepages)");
    return p;
}

// A net_ring port whose rx and tx queue 0 are both backed by ring. (The PMD never allocates;
// ethdev still wants a pool for the rx queue.)
std::uint16_t ring_port(rte_ring* ring, rte_mempool* pool) {
    int port = rte_eth_from_ring(ring);
    if (port < 0) fail(std::string("rte_eth_from_ring: ") + rte_strerror(rte_errno));
    auto id = std::uint16_t(port);
    rte_eth_conf conf{};
    if (rte_eth_dev_configure(id, 1, 1, &conf) != 0 ||
        rte_eth_rx_queue_setup(id, 0, 1024, rte_socket_id(), nullptr, pool) != 0 ||
        rte_eth_tx_queue_setup(id, 0, 1024, rte_socket_id(), nullptr) != 0 ||
        rte_eth_dev_start(id) != 0)
        fail("cannot start the net_ring port on " + std::string(ring->name));
    return id;
}

// Hands out count mbufs of one pool, in allocation order or shuffled. Shuffled, consecutive
// frames lie in mbufs far apart, so the hardware prefetchers cannot stream them in: the
// pessimistic case (a NIC's recycled mbufs lie somewhere between the two).
class MbufSource {
  public:
    MbufSource(rte_mempool* pool, std::size_t count, bool shuffle, std::mt19937_64& rng)
        : mbufs_(count) {
        for (std::size_t at = 0; at < count;) {
            unsigned n = unsigned(std::min<std::size_t>(512, count - at));
            if (rte_pktmbuf_alloc_bulk(pool, mbufs_.data() + at, n) != 0)
                fail("mbuf pool exhausted while loading frames");
            at += n;
        }
        if (shuffle) std::shuffle(mbufs_.begin(), mbufs_.end(), rng);
    }
    rte_mbuf* next() { return at_ < mbufs_.size() ? mbufs_[at_++] : nullptr; }

  private:
    std::vector<rte_mbuf*> mbufs_;
    std::size_t at_ = 0;
};

// Copies frames [begin, end) of list into mbufs from alloc(length), in order.
template <class Alloc>
void fill(const traffic::FrameList& list, std::size_t begin, std::size_t end, std::uint16_t port,
          std::vector<rte_mbuf*>& out, Alloc&& alloc) {
    out.clear();
    for (std::size_t i = begin; i < end; ++i) {
        ByteSpan f = list.frame(i);
        rte_mbuf* m = alloc(f.size());
        if (m == nullptr) fail("mbuf pool exhausted while loading frames");
        if (f.size() > rte_pktmbuf_tailroom(m)) fail("frame larger than an mbuf");
        std::memcpy(rte_pktmbuf_mtod(m, void*), f.data(), f.size());
        m->data_len = std::uint16_t(f.size());
        m->pkt_len = std::uint32_t(f.size());
        m->port = port;  // a real PMD sets it; the worker reports it in hits
        out.push_back(m);
    }
}

void enqueue_all(rte_ring* ring, const std::vector<rte_mbuf*>& mbufs) {
    if (rte_ring_enqueue_bulk(ring, reinterpret_cast<void* const*>(mbufs.data()),
                              unsigned(mbufs.size()), nullptr) != mbufs.size())
        fail("ring too small for the frames");
}

std::uint64_t drops_of(const shm::WorkerCounters& c) {
    return c[WorkerCounter::drop_ring_full] + c[WorkerCounter::drop_pool_empty] +
           c[WorkerCounter::drop_dialog_table_full] + c[WorkerCounter::drop_media_table_full] +
           c[WorkerCounter::drop_warrant_overflow] + c[WorkerCounter::drop_fragment] +
           c[WorkerCounter::drop_tcp_stream] + c[WorkerCounter::tx_drop];
}

std::uint64_t hits_of(const shm::WorkerCounters& c) {
    return c[WorkerCounter::hits_sip] + c[WorkerCounter::hits_rtp] + c[WorkerCounter::hits_rtcp] +
           c[WorkerCounter::hits_ip];
}

double pct(std::uint64_t part, std::uint64_t whole) {
    return whole ? 100.0 * double(part) / double(whole) : 0.0;
}

int run(int argc, char** argv) {
    // EAL options come before "--"; without them, sensible single-core defaults.
    int split = 0;
    for (int i = 1; i < argc; ++i)
        if (std::string_view(argv[i]) == "--") split = i;
    std::vector<char*> bench_args(argv + (split ? split + 1 : 1), argv + argc);
    Options o = parse_options(bench_args);

    std::printf("tapwire-bench-dataplane: dataplane worker on mix M1, one worker core\n");
    std::printf("command:  %s\n", joined(argc, argv).c_str());
    std::fflush(stdout);

    // --- traffic (before the EAL: its size decides the memory the EAL is given)
    traffic::M1Config mc;
    mc.concurrent_calls = o.calls;
    mc.target_identities = o.targets;
    mc.window_ms = o.window_ms;
    mc.seed = o.seed;
    auto t_build = SteadyClock::now();
    traffic::M1Mix mix;
    try {
        mix = traffic::build_m1_mix(mc);
    } catch (const std::exception& e) {
        fail(e.what());
    }
    double build_s = std::chrono::duration<double>(SteadyClock::now() - t_build).count();
    const traffic::M1Composition& comp = mix.composition;

    std::size_t small_frames = 0, large_frames = 0;
    for (std::size_t i = 0; i < mix.window.size(); ++i)
        (mix.window.entry(i).length <= kSmallDataRoom ? small_frames : large_frames) += 1;
    const std::size_t warm_chunk = std::min<std::size_t>(16384, mix.warmup.size());
    const unsigned small_count = unsigned(small_frames + 2048);
    const unsigned large_count = unsigned(large_frames + warm_chunk + 2048);
    const unsigned hit_count = kHitRingSize + 8192;
    const unsigned loop_ring_size = pow2_above(mix.window.size());
    // Object sizes: mbuf header 128 + headroom + data room (+ priv), mempool header 64.
    const double small_obj = 128 + RTE_PKTMBUF_HEADROOM + kSmallDataRoom + 64;
    const double large_obj = 128 + RTE_MBUF_DEFAULT_BUF_SIZE + 64;
    const double hit_obj = 128 + sizeof(shm::HitMeta) + RTE_MBUF_DEFAULT_BUF_SIZE + 64;
    const double pools_mb =
        (small_count * small_obj + large_count * large_obj + hit_count * hit_obj) / 1048576.0;
    const double working_set_mb =
        (double(small_frames) * small_obj + double(large_frames) * large_obj) / 1048576.0;

    std::vector<std::string> eal = {argv[0]};
    std::string memory_note;
    if (split) {
        for (int i = 1; i < split; ++i)
            eal.push_back(argv[i]);
    } else {
        // Tables (~70 MB at the production sizes), rings, pools, plus headroom. Hugepages
        // when enough are free, as in production: on 4 KiB pages the flow tables' random
        // bucket reads miss the TLB and the pipeline measured about half as fast here.
        // (Measured: the defaults take ~680 MiB of hugepages for an estimate of ~690.) On
        // hugepages -m only pre-reserves and DPDK grows past it; --no-huge gets a margin.
        unsigned need_mb = unsigned(pools_mb + 8.0 * loop_ring_size / 1048576.0 + 160);
        unsigned free_mb = free_hugepage_mb();
        unsigned mb = need_mb;
        eal.insert(eal.end(), {"-l", std::to_string(idlest_allowed_cpu()), "--no-pci"});
        if (free_mb >= need_mb) {
            eal.insert(eal.end(), {"--in-memory"});  // nothing left in hugetlbfs on exit
        } else {
            mb = need_mb * 5 / 4;
            eal.insert(eal.end(),
                       {"--no-huge", "--file-prefix=tw_bench_dp_" + std::to_string(getpid())});
            memory_note = "only " + std::to_string(free_mb) + " MiB of hugepages free, " +
                          std::to_string(need_mb) +
                          " MiB needed: 4 KiB pages, TLB misses inflate the pipeline's cost "
                          "(production runs on hugepages)";
        }
        eal.insert(eal.end(),
                   {"-m", std::to_string(mb), "--no-telemetry", "--log-level=lib.eal:error"});
    }
    std::string eal_text;
    for (std::size_t i = 1; i < eal.size(); ++i)
        eal_text += (i > 1 ? " " : "") + eal[i];
    std::vector<char*> eal_argv;
    for (auto& a : eal)
        eal_argv.push_back(a.data());
    if (rte_eal_init(int(eal_argv.size()), eal_argv.data()) < 0)
        fail(std::string("EAL initialisation failed: ") + rte_strerror(rte_errno));
    const double tsc_hz = double(rte_get_tsc_hz());
    if (!split && !rte_eal_has_hugepages()) g_own_runtime_dir = rte_eal_get_runtime_dir();

    std::printf("EAL:      %s%s\n", eal_text.c_str(), split ? "" : "   (defaults)");
    if (!split) {
        std::string bench_text;
        for (char* a : bench_args)
            bench_text += std::string(" ") + a;
        std::printf("reproduce: %s %s --%s\n", argv[0], eal_text.c_str(), bench_text.c_str());
    }
    std::printf("cpu:      %s, lcore %u, TSC %.3f GHz, %s\n", cpu_model().c_str(), rte_lcore_id(),
                tsc_hz / 1e9, rte_eal_has_hugepages() ? "hugepages" : "4 KiB pages (--no-huge)");
    if (!rte_eal_has_hugepages())
        std::printf("WARNING:  %s\n", memory_note.empty()
                                          ? "4 KiB pages: TLB misses inflate the pipeline's cost "
                                            "(production runs on hugepages)"
                                          : memory_note.c_str());
    std::printf(
        "M1:       %u concurrent G.711 calls (214-byte RTP both ways every 20 ms, RTCP every "
        "%u s per direction), %.0f new calls/s with complete SIP dialogs (%.0f%% over TCP), "
        "%.0f%% of calls targeted, %u target identities, %.0f%% non-VoIP background\n",
        mc.concurrent_calls, mc.rtcp_interval_ms / 1000, mc.new_calls_per_second,
        mc.tcp_share * 100, mc.targeted_share * 100, mc.target_identities,
        mc.background_share * 100);
    std::printf(
        "window:   %u ms of M1 = %llu frames, replayed in a loop: RTP %llu (%.2f%%, %u whole "
        "20 ms slices), RTCP %llu (%.2f%%), SIP %llu frames / %llu messages (%.3f%%; %u "
        "dialogs, %u over TCP, %u targeted), background %llu (%.2f%%)\n",
        mc.window_ms, (unsigned long long)comp.frames, (unsigned long long)comp.rtp,
        pct(comp.rtp, comp.frames), comp.rtp_slices_full, (unsigned long long)comp.rtcp,
        pct(comp.rtcp, comp.frames), (unsigned long long)comp.sip_frames,
        (unsigned long long)comp.sip_messages, pct(comp.sip_frames, comp.frames), comp.new_calls,
        comp.new_calls_tcp, comp.new_calls_targeted, (unsigned long long)comp.background,
        pct(comp.background, comp.frames));
    std::printf(
        "          targeted: %u concurrent calls (%u media endpoints expected); %llu hits "
        "expected per pass (%.2f%% of frames); built in %.1f s\n",
        comp.targeted_calls, comp.targeted_calls * 4, (unsigned long long)comp.expected_hits,
        pct(comp.expected_hits, comp.frames), build_s);
    std::printf(
        "memory:   %zu mbufs (%zu with 256-byte data room, %zu with 2 KiB) = %.0f MiB of frames "
        "in the loop (L3 %s), loop ring %u slots, %s mbuf order\n",
        small_frames + large_frames, small_frames, large_frames, working_set_mb, l3_size().c_str(),
        loop_ring_size, o.shuffle_mbufs ? "shuffled" : "allocation");
    std::fflush(stdout);

    // --- what dataplane/main.cpp sets up, at its defaults (dataplane/config.cpp)
    rte_mempool* small_pool = make_pool("tw_bench_small", small_count, 0, kSmallDataRoom);
    rte_mempool* large_pool = make_pool("tw_bench_large", large_count, 0, 2048);
    rte_mempool* hit_pool = make_pool(shm::kHitPoolName, hit_count, sizeof(shm::HitMeta), 2048);
    rte_ring* hit_ring = rte_ring_create(shm::hit_ring_name(0).c_str(), kHitRingSize,
                                         int(rte_socket_id()), RING_F_SP_ENQ | RING_F_SC_DEQ);
    // SP/SC like the PMD's own rings: the ring PMD then counts without atomics.
    rte_ring* loop_ring = rte_ring_create("tw_bench_loop", loop_ring_size, int(rte_socket_id()),
                                          RING_F_SP_ENQ | RING_F_SC_DEQ);
    rte_ring* warm_ring = rte_ring_create("tw_bench_warm", pow2_above(warm_chunk),
                                          int(rte_socket_id()), RING_F_SP_ENQ | RING_F_SC_DEQ);
    if (!hit_ring || !loop_ring || !warm_ring)
        fail(std::string("rings: ") + rte_strerror(rte_errno));
    const std::uint16_t port = ring_port(loop_ring, small_pool);
    const std::uint16_t warm_port = ring_port(warm_ring, large_pool);

    // RCU thread 0: the sweeper (this thread between rounds); 1: the worker.
    auto qs = QuiescentState::create(2);
    if (!qs) fail("cannot create the RCU quiescent-state variable");
    FlowTablesConfig tcfg;
    tcfg.max_dialogs = 65536;
    tcfg.max_media = 262144;
    tcfg.linger_ns = 32'000'000'000ull;
    tcfg.dialog_idle_timeout_ns = 7200'000'000'000ull;
    tcfg.media_idle_timeout_ns = 300'000'000'000ull;
    tcfg.sweeper_thread_id = 0;
    tcfg.socket_id = int(rte_socket_id());
    std::string table_error;
    auto tables = FlowTables::create(tcfg, *qs, &table_error);
    if (!tables) fail("tables: " + table_error);

    std::vector<TargetSpec> specs;
    specs.reserve(mix.targets.size());
    for (std::size_t i = 0; i < mix.targets.size(); ++i)
        specs.push_back({mix.targets[i], std::uint32_t(1 + i)});
    TargetSetOptions topt;
    topt.workers = 1;
    auto t_compile = SteadyClock::now();
    auto built = TargetSet::build(specs, topt);
    if (!built.set) fail("target set: " + built.error);
    double compile_s = std::chrono::duration<double>(SteadyClock::now() - t_compile).count();
    const TargetSetStats& ts = built.set->stats();
    std::printf(
        "targets:  %u identities (%u exact, %u prefixes, %u globs) compiled in %.1f s, "
        "database %.1f MiB, scratch %zu KiB\n",
        ts.base.targets, ts.base.exact_identities, ts.base.identity_prefixes,
        ts.base.identity_globs, compile_s, double(ts.base.database_bytes) / 1048576.0,
        ts.scratch_bytes / 1024);
    Published<TargetSet> targets(*qs);
    targets.publish(std::move(built.set), 0);

    std::bitset<65536> sip_ports;
    sip_ports.set(5060);
    auto counters = std::make_unique<shm::WorkerCounters>();
    auto warm_counters = std::make_unique<shm::WorkerCounters>();
    std::memset(counters.get(), 0, sizeof *counters);
    std::memset(warm_counters.get(), 0, sizeof *warm_counters);

    WorkerSetup s;
    s.index = 0;
    s.rcu_thread_id = 1;
    s.queues = {RxQueue{port, 0, port}};
    s.inline_mode = true;  // tx back into the loop ring: the recycle
    s.burst = std::uint16_t(o.burst);
    s.snap_length = 65535;
    s.sip_ports = &sip_ports;
    s.hit_ring = hit_ring;
    s.hit_pool = hit_pool;
    s.counters = counters.get();
    s.tables = tables.get();
    s.qs = qs.get();
    s.targets = &targets;
    s.fragments.slots = 1024;
    s.fragments.timeout_ns = 2'000'000'000;
    s.fragments.hash_seed ^= rte_rdtsc();
    s.tcp.streams = 4096;
    s.tcp.hash_seed ^= rte_rdtsc() * 31;
    s.clock = &default_clock();
    Worker worker(s);
    // The warm-up worker: passive (frees what it received), its own port and counters, the
    // same tables, targets and RCU id (the two never run at once).
    WorkerSetup ws = s;
    ws.queues = {RxQueue{warm_port, 0, warm_port}};
    ws.inline_mode = false;
    ws.counters = warm_counters.get();
    Worker warm_worker(ws);

    // --- frames into mbufs, in window order
    std::mt19937_64 shuffle_rng(o.seed);
    MbufSource small_src(small_pool, small_frames, o.shuffle_mbufs, shuffle_rng);
    MbufSource large_src(large_pool, large_frames, o.shuffle_mbufs, shuffle_rng);
    std::vector<rte_mbuf*> mbufs;
    fill(mix.window, 0, mix.window.size(), port, mbufs, [&](std::size_t length) {
        return length <= kSmallDataRoom ? small_src.next() : large_src.next();
    });
    enqueue_all(loop_ring, mbufs);
    mbufs.clear();
    mbufs.shrink_to_fit();

    // --- warm-up: the concurrent calls' SIP set-up, once, through the passive worker
    struct sigaction sa {};
    sa.sa_handler = on_alarm;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, nullptr);
    std::uint64_t warm_tsc = 0;
    std::vector<rte_mbuf*> chunk;
    for (std::size_t at = 0; at < mix.warmup.size(); at += warm_chunk) {
        std::size_t end = std::min(mix.warmup.size(), at + warm_chunk);
        fill(mix.warmup, at, end, warm_port, chunk,
             [&](std::size_t) { return rte_pktmbuf_alloc(large_pool); });
        enqueue_all(warm_ring, chunk);
        g_watch_target = (*warm_counters)[WorkerCounter::rx_packets] + chunk.size();
        g_watch.store(&warm_counters->value[std::size_t(WorkerCounter::rx_packets)]);
        set_timer(200, 200);
        std::uint64_t t0 = rte_rdtsc();
        warm_worker.run(g_stop);
        warm_tsc += rte_rdtsc() - t0;
        stop_timer();
        drain(hit_ring);
    }
    const shm::WorkerCounters& wc = *warm_counters;
    std::printf(
        "warm-up:  %llu SIP frames (%llu messages) of the concurrent calls' set-up in %.0f ms "
        "(%.2f us per message incl. <=0.2 ms idle per %zu-frame chunk): %llu matched, tables "
        "now hold %u dialogs and %u media endpoints\n",
        (unsigned long long)wc[WorkerCounter::rx_packets],
        (unsigned long long)wc[WorkerCounter::sip_messages], 1e3 * double(warm_tsc) / tsc_hz,
        1e6 * double(warm_tsc) / tsc_hz /
            double(std::max<std::uint64_t>(1, wc[WorkerCounter::sip_messages])),
        warm_chunk, (unsigned long long)wc[WorkerCounter::target_matches], tables->dialog_count(),
        tables->media_count());
    bool sane = true;
    if (tables->dialog_count() != comp.targeted_calls ||
        tables->media_count() != comp.targeted_calls * 4 ||
        wc[WorkerCounter::sip_messages] != comp.warmup_messages) {
        std::printf(
            "SANITY:   after the warm-up the tables should hold %u dialogs and %u media "
            "endpoints from %llu SIP messages\n",
            comp.targeted_calls, comp.targeted_calls * 4, (unsigned long long)comp.warmup_messages);
        sane = false;
    }

    // --- untimed pre-pass of each loop: caches, branch predictors, first-time dialogs
    std::uint64_t lost = 0;
    const unsigned pre_ms = std::max(50u, o.round_ms / 2);
    if (!o.pipeline_only) {
        run_baseline(port, std::uint16_t(o.burst), false, pre_ms, lost);
        run_baseline(port, std::uint16_t(o.burst), true, pre_ms, lost);
    }
    run_pipeline(worker, *counters, pre_ms);
    drain(hit_ring);

    std::printf(
        "rounds:   %d per mode x %u ms, interleaved; burst %u; hit ring %u (drained between "
        "rounds); rates per second of on-CPU time, cycles = on-CPU time x TSC rate\n\n",
        o.rounds, o.round_ms, o.burst, kHitRingSize);
    std::fflush(stdout);

    std::vector<double> mpps[3], cycles[3], hits_per_s, on_cpu;
    const shm::WorkerCounters start = *counters;
    for (int r = 0; r < o.rounds; ++r) {
        for (int mode = o.pipeline_only ? 2 : 0; mode < 3; ++mode) {
            Sample smp;
            if (mode < 2) {
                smp = run_baseline(port, std::uint16_t(o.burst), mode == 1, o.round_ms, lost);
            } else {
                std::uint64_t hits_before = hits_of(*counters);
                smp = run_pipeline(worker, *counters, o.round_ms);
                hits_per_s.push_back(double(hits_of(*counters) - hits_before) / smp.cpu_s);
                drain(hit_ring);
                tables->sweep(s.clock->ns(rte_rdtsc()), 1u << 20);
            }
            if (smp.packets == 0) fail("a round received no packets");
            mpps[mode].push_back(double(smp.packets) / smp.cpu_s / 1e6);
            cycles[mode].push_back(smp.cpu_s * tsc_hz / double(smp.packets));
            on_cpu.push_back(smp.cpu_s / (double(smp.tsc) / tsc_hz));
        }
    }
    shm::WorkerCounters delta{};
    for (std::size_t c = 0; c < shm::kWorkerCounterCount; ++c)
        delta.value[c] = counters->value[c] - start.value[c];

    // --- report
    const char* names[3] = {"baseline: rx + recycle", "baseline: rx + touch + recycle",
                            "pipeline: Worker::run (inline)"};
    Stats cyc[3];
    std::printf("  %-34s %10s %8s %8s %14s %9s\n", "per worker core", "Mpps med", "p10", "p90",
                "TSC cyc/pkt", "vs base");
    for (int mode = o.pipeline_only ? 2 : 0; mode < 3; ++mode) {
        Stats m = stats_of(mpps[mode]);
        cyc[mode] = stats_of(cycles[mode]);
        std::printf("  %-34s %10.2f %8.2f %8.2f %14.1f", names[mode], m.median, m.p10, m.p90,
                    cyc[mode].median);
        if (!o.pipeline_only) std::printf(" %8.1fx", cyc[mode].median / cyc[0].median);
        std::printf("\n");
    }
    Stats pipe = stats_of(mpps[2]);
    if (!o.pipeline_only)
        std::printf(
            "\n  inspection cost: %.1f TSC cycles (%.1f ns) per packet over the bare port, %.1f "
            "over rx + touch; pipeline cycles p10-p90 %.1f-%.1f\n",
            cyc[2].median - cyc[0].median, 1e9 * (cyc[2].median - cyc[0].median) / tsc_hz,
            cyc[2].median - cyc[1].median, cyc[2].p10, cyc[2].p90);

    const std::uint64_t rx = delta[WorkerCounter::rx_packets];
    const std::uint64_t hits = hits_of(delta);
    Stats hps = stats_of(hits_per_s);
    std::printf(
        "  hits: %.0f/s median (%.2f%% of packets; the mix expects %.2f%%): RTP %llu, RTCP "
        "%llu, SIP %llu over %llu packets\n",
        hps.median, pct(hits, rx), pct(comp.expected_hits, comp.frames),
        (unsigned long long)delta[WorkerCounter::hits_rtp],
        (unsigned long long)delta[WorkerCounter::hits_rtcp],
        (unsigned long long)delta[WorkerCounter::hits_sip], (unsigned long long)rx);
    std::printf(
        "  drops: %llu (ring full %llu, pool empty %llu, tables full %llu, TCP stream %llu, tx "
        "%llu); baseline lost %llu\n",
        (unsigned long long)drops_of(delta),
        (unsigned long long)delta[WorkerCounter::drop_ring_full],
        (unsigned long long)delta[WorkerCounter::drop_pool_empty],
        (unsigned long long)(delta[WorkerCounter::drop_dialog_table_full] +
                             delta[WorkerCounter::drop_media_table_full]),
        (unsigned long long)delta[WorkerCounter::drop_tcp_stream],
        (unsigned long long)delta[WorkerCounter::tx_drop], (unsigned long long)lost);
    std::printf("  pipeline counters over the timed rounds:\n");
    for (std::size_t c = 0; c < shm::kWorkerCounterCount; ++c)
        if (delta.value[c] != 0)
            std::printf("    %-24s %14llu  %7.3f%%\n", shm::kWorkerCounterNames[c],
                        (unsigned long long)delta.value[c], pct(delta.value[c], rx));
    std::printf("  tables: %u dialogs, %u media endpoints\n", tables->dialog_count(),
                tables->media_count());
    Stats share = stats_of(on_cpu);
    std::printf("  on-CPU share of wall time per round: median %.1f%%, worst %.1f%%\n",
                std::min(100.0, 100 * share.median),
                std::min(100.0, 100 * *std::min_element(on_cpu.begin(), on_cpu.end())));
    if (share.p10 < 0.95)
        std::printf(
            "WARNING:  other processes ran on the measured core; caches and memory bandwidth were "
            "shared too, so the figures are noisy (pick an idle core with -l)\n");
    std::printf("\n");

    std::printf("  floor %.2f Mpps per core (10 GbE of G.711): %s (pipeline median %.2f Mpps)\n",
                kFloorMpps, pipe.median >= kFloorMpps ? "PASS" : "BELOW", pipe.median);
    std::printf("  goal  %.2f Mpps per core:                   %s\n", kGoalMpps,
                pipe.median >= kGoalMpps ? "PASS" : "BELOW");

    // The pipeline must have done its job for its figures to mean anything.
    double expected = pct(comp.expected_hits, comp.frames), got = pct(hits, rx);
    if (expected > 0 && (got < expected * 0.9 || got > expected * 1.1)) {
        std::printf("SANITY:   hit share %.3f%% differs from the mix's %.3f%% by more than 10%%\n",
                    got, expected);
        sane = false;
    }
    if (delta[WorkerCounter::malformed] || delta[WorkerCounter::sip_invalid] || lost) {
        std::printf("SANITY:   malformed frames, invalid SIP or lost packets in a generated mix\n");
        sane = false;
    }
    std::fflush(stdout);

    rte_eth_dev_stop(port);
    rte_eth_dev_stop(warm_port);
    return sane ? 0 : 3;
}

}  // namespace

int main(int argc, char** argv) {
    int rc = run(argc, argv);  // everything DPDK-owned is destroyed when run() returns
    rte_eal_cleanup();
    if (!g_own_runtime_dir.empty()) {
        std::error_code ignored;
        std::filesystem::remove_all(g_own_runtime_dir, ignored);
    }
    return rc;
}
