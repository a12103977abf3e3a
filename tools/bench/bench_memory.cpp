// tapwire-bench-memory: memory per active call (dataplane flow tables) and per target
// (compiled target set), issue 6 benchmark suite.
//
//   tapwire-bench-memory [EAL options --] [--quick] [--rounds N] [--targets N]
//
// How memory is counted. Every figure is the difference of two snapshots taken around one
// step, in one process:
//   - DPDK heap: rte_malloc_get_socket_stats heap_allocsz_bytes summed over sockets (what
//     rte_malloc and memzones hold, memzones included), and the memzone total
//     (rte_memzone_walk: rings, i.e. rte_hash's free slots and RCU defer queues) as a share of it;
//   - process heap: glibc mallinfo2, bytes in use (uordblks + hblkhd);
//   - resident: VmRSS + HugetlbPages of /proc/self/status, after malloc_trim(0) so that freed
//     compile scratch does not count. On hugepages without -m (the default) DPDK maps pages
//     as its heap grows and unmaps them when freed, so resident follows the heap in 2 MiB
//     steps. With --no-huge (or -m) DPDK keeps its memory mapped: memory reused from an
//     earlier step was already resident and does not show (a printed note says so).
//
// 1. Per active call. FlowTables::create at several capacities with the production ratio
//    (dataplane/config.cpp: 65,536 dialogs, 262,144 media endpoints: 4 per dialog). The
//    tables preallocate everything, so the cost of a call is the cost of its slot:
//    (reserved at create) / max_dialogs, its 4 media slots included. Components: tables with
//    the dialog side only (media at the minimum of 8) and the media side only, minus the
//    minimal table (8 + 8), the baseline. Then the table is filled to capacity with live
//    calls as the worker writes them (dialog_create_or_update, then media_add for the offer
//    and for the answer: 2 to 4 endpoints per call, RTP and RTCP or rtcp-mux), and the
//    program checks that the fill allocated nothing, DPDK or process heap: it exits 3 if it
//    did. Repeated over rounds (median, p10, p90).
// 2. Per target. TargetSet::build of N identity targets of the kinds bench_match uses (E.164
//    in warrant spellings, SIP URIs on carrier domains, 5% number-range prefixes, a few
//    globs) plus 1% IP targets; held alive, then destroyed. Hyperscan database bytes
//    (stats), process heap (databases, pattern tables, scratch), DPDK heap (the LPM tables of
//    the IP targets) and resident growth while the set is alive. Baselines in the same run:
//    an empty TargetSet, and one with a single IPv4 and IPv6 target (the LPM tables' fixed
//    cost: the first levels of rte_lpm and rte_lpm6 are 64 MiB each, whatever the number of
//    prefixes). The marginal cost per
//    target is the slope between two sizes (fixed costs cancel).
// 3. The control plane's per-call state (controlplane/handover_pipeline.hpp) is not
//    measured: its headers pull in gRPC, which this program does not link (a note says so).
//
// Without EAL options: one lcore, --no-pci, hugepages (--in-memory) when enough are free
// (as in production), else --no-huge; a --file-prefix of our own (tw_benchmem_<pid>) so
// runs side by side do not collide. --quick: tables of 4k and 16k dialogs, 1k and 10k targets
// (CI smoke, ~2 s). Full: 16k, 64k (the production default) and 256k dialogs, 10k, 100k and
// 1M targets (~1.5 min on a 2-core VM, ~2.7 GB peak while 1M targets compile; --targets 100000
// skips it: ~15 s). Sizes up to 10k targets and every table capacity run --rounds times; the larger
// target sets once (their compile takes seconds to a minute; the database is deterministic).
//
// Exit status: 0; 3 when the flow tables allocated after create() or a fill write failed
// (the design promise this program checks); 1 when a measurement could not be made.

#include <malloc.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_memzone.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "common/identity.hpp"
#include "common/ip_address.hpp"
#include "dataplane/flow_tables.hpp"
#include "dataplane/rcu.hpp"
#include "dataplane/target_set.hpp"
#include "tools/bench/bench_stats.hpp"

namespace {

using namespace tapwire;
using namespace tapwire::dataplane;
using tapwire::bench::Stats;
using tapwire::bench::stats_of;
using SteadyClock = std::chrono::steady_clock;

constexpr std::uint32_t kMediaPerDialog = 4;  // dataplane/config.cpp: 262144 / 65536
constexpr double kMiB = 1048576.0;

// The runtime directory of our own file prefix, removed at exit (rte_eal_cleanup leaves it).
std::string g_own_runtime_dir;

[[noreturn]] void fail(const std::string& message) {
    std::fprintf(stderr, "tapwire-bench-memory: %s\n", message.c_str());
    std::exit(1);
}

void usage() {
    std::fprintf(
        stderr,
        "usage: tapwire-bench-memory [EAL options --] [options]\n"
        "  --quick       CI smoke: tables of 4k and 16k dialogs, 1k and 10k targets\n"
        "  --rounds N    rounds per table capacity (default 5; quick 3)\n"
        "  --targets N   largest target set: 10000, 100000 or 1000000 (default; its compile\n"
        "                takes ~70 s and ~2.7 GB at peak)\n"
        "Without EAL options: one lcore, --no-pci, hugepages when enough are free,\n"
        "else --no-huge.\n");
}

// --- snapshots --------------------------------------------------------------------------

struct Mem {
    std::int64_t dpdk = 0;      // heap_allocsz_bytes over sockets (memzones included)
    std::int64_t memzones = 0;  // bytes in memzones
    std::int64_t zone_count = 0;
    std::int64_t heap = 0;      // process heap in use (glibc)
    std::int64_t resident = 0;  // VmRSS + HugetlbPages
};

Mem operator-(const Mem& a, const Mem& b) {
    return {a.dpdk - b.dpdk, a.memzones - b.memzones, a.zone_count - b.zone_count, a.heap - b.heap,
            a.resident - b.resident};
}

std::int64_t status_kb(const std::string& text, const char* key) {
    auto at = text.find(key);
    return at == std::string::npos ? 0 : std::atoll(text.c_str() + at + std::strlen(key));
}

Mem snapshot() {
    malloc_trim(0);  // freed memory back to the system: resident = what is held
    Mem m;
    for (unsigned i = 0; i < rte_socket_count(); ++i) {
        rte_malloc_socket_stats s{};
        if (rte_malloc_get_socket_stats(rte_socket_id_by_idx(i), &s) == 0)
            m.dpdk += std::int64_t(s.heap_allocsz_bytes);
    }
    rte_memzone_walk(
        [](const rte_memzone* mz, void* arg) {
            auto* mm = static_cast<Mem*>(arg);
            mm->memzones += std::int64_t(mz->len);
            mm->zone_count += 1;
        },
        &m);
    struct mallinfo2 mi = mallinfo2();
    m.heap = std::int64_t(mi.uordblks + mi.hblkhd);
    // Read with a fixed buffer: the snapshot must not itself move the heap figure much.
    char buf[4096];
    std::FILE* f = std::fopen("/proc/self/status", "r");
    std::size_t n = f ? std::fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f) std::fclose(f);
    buf[n] = '\0';
    std::string text(buf, n);
    m.resident = 1024 * (status_kb(text, "VmRSS:") + status_kb(text, "HugetlbPages:"));
    return m;
}

// --- EAL ----------------------------------------------------------------------------------

unsigned free_hugepage_mb() {
    std::ifstream in("/proc/meminfo");
    std::string key, rest;
    unsigned long value = 0, free_pages = 0, page_kb = 0;
    while (in >> key >> value) {
        if (key == "HugePages_Free:") free_pages = value;
        if (key == "Hugepagesize:") page_kb = value;
        std::getline(in, rest);
    }
    return unsigned(free_pages * page_kb / 1024);
}

int first_allowed_cpu() {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) == 0)
        for (int c = 0; c < CPU_SETSIZE; ++c)
            if (CPU_ISSET(c, &set)) return c;
    return 0;
}

// EAL options before "--" are used as given; else defaults sized for need_mb of DPDK memory.
std::string init_eal(char** argv, int split, unsigned need_mb) {
    std::vector<std::string> eal = {argv[0]};
    if (split) {
        for (int i = 1; i < split; ++i)
            eal.push_back(argv[i]);
    } else {
        const std::string prefix = "tw_benchmem_" + std::to_string(getpid());
        eal.insert(eal.end(),
                   {"-l", std::to_string(first_allowed_cpu()), "--no-pci",
                    "--file-prefix=" + prefix, "--no-telemetry", "--log-level=lib.eal:error"});
        // Hugepages as in production, without -m: -m would map its pages at start, and the
        // heap then grows without the resident figure moving. Mapped on demand, each step's
        // pages show in HugetlbPages. On 4 KiB pages -m is all there is, with a margin.
        if (free_hugepage_mb() >= need_mb)
            eal.insert(eal.end(), {"--in-memory"});
        else
            eal.insert(eal.end(), {"--no-huge", "-m", std::to_string(need_mb * 5 / 4)});
    }
    std::string text;
    for (std::size_t i = 1; i < eal.size(); ++i)
        text += (i > 1 ? " " : "") + eal[i];
    std::vector<char*> eal_argv;
    for (auto& a : eal)
        eal_argv.push_back(a.data());
    if (rte_eal_init(int(eal_argv.size()), eal_argv.data()) < 0)
        fail("EAL initialisation failed: " + std::string(rte_strerror(rte_errno)) +
             " (EAL: " + text + ")");
    if (!split) g_own_runtime_dir = rte_eal_get_runtime_dir();
    return text;
}

// --- 1. flow tables -----------------------------------------------------------------------

FlowTablesConfig table_config(std::uint32_t dialogs, std::uint32_t media) {
    FlowTablesConfig c;  // production timeouts (dataplane/config.cpp); only sizes matter here
    c.max_dialogs = dialogs;
    c.max_media = media;
    c.linger_ns = 32'000'000'000ull;
    c.dialog_idle_timeout_ns = 7200'000'000'000ull;
    c.media_idle_timeout_ns = 300'000'000'000ull;
    c.sweeper_thread_id = 0;
    c.socket_id = int(rte_socket_id());
    return c;
}

// Call i's endpoints, offer (caller) and answer (callee): 2, 3 or 4 of them (rtcp-mux on
// both sides, on one side, on neither), on distinct addresses. Built on the stack: filling
// must allocate nothing, and neither may the code that feeds it.
struct CallMedia {
    std::array<MediaSpec, 2> caller, callee;
    std::size_t n_caller = 0, n_callee = 0;
};

CallMedia call_media(std::uint32_t i) {
    CallMedia m;
    const IpAddress a = IpAddress::v4(0x0a000000u | i), b = IpAddress::v4(0xac000000u | i);
    auto side = [](std::array<MediaSpec, 2>& out, const IpAddress& ip, bool mux) {
        out[0] = {MediaKey::make(ip, 20000, 17), mux ? MediaKind::RtpRtcpMux : MediaKind::Rtp};
        out[1] = {MediaKey::make(ip, 20001, 17), MediaKind::Rtcp};
        return mux ? std::size_t(1) : std::size_t(2);
    };
    const unsigned n = 2 + i % 3;
    m.n_caller = side(m.caller, a, n == 2);
    m.n_callee = side(m.callee, b, n != 4);
    return m;
}

DialogKey call_key(std::uint32_t i) {
    // Stands for SipHash(Call-ID): any well-spread 128 bits (splitmix64).
    auto mix = [](std::uint64_t z) {
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
    };
    return {mix(2 * std::uint64_t(i) + 1), mix(2 * std::uint64_t(i) + 2)};
}

struct FillResult {
    std::uint32_t calls = 0, media = 0;
    std::string problem;  // empty: every write succeeded
};

FillResult fill(FlowTables& t, std::uint32_t calls) {
    FillResult r;
    constexpr std::uint64_t now = 1'000'000'000;
    for (std::uint32_t i = 0; i < calls; ++i) {
        const DialogKey key = call_key(i);
        const WarrantId w[1] = {1 + i % 1000};
        DialogUpsert d = t.dialog_create_or_update(key, w, TargetSide::Caller, i + 1, now);
        if (d.result != FlowResult::Created) {
            r.problem = std::string("dialog ") + std::to_string(i) + ": " + to_string(d.result);
            return r;
        }
        const CallMedia m = call_media(i);
        MediaUpdate o = t.media_add(key, Party::Caller, {m.caller.data(), m.n_caller}, now);
        MediaUpdate a = t.media_add(key, Party::Callee, {m.callee.data(), m.n_callee}, now);
        if (o.added != m.n_caller || a.added != m.n_callee || o.failed || a.failed) {
            r.problem = std::string("media of call ") + std::to_string(i) + ": " +
                        to_string(o.result) + "/" + to_string(a.result);
            return r;
        }
        ++r.calls;
        r.media += std::uint32_t(m.n_caller + m.n_callee);
    }
    return r;
}

// Reserved by create() (DPDK + process heap), the tables destroyed again before returning.
Mem reserved_by(QuiescentState& qs, std::uint32_t dialogs, std::uint32_t media) {
    Mem before = snapshot();
    std::string error;
    auto t = FlowTables::create(table_config(dialogs, media), qs, &error);
    if (!t) fail("flow tables (" + std::to_string(dialogs) + " dialogs): " + error);
    Mem after = snapshot();
    return after - before;
}

void print_row(const char* label, const std::vector<double>& v, double scale, const char* unit) {
    Stats s = stats_of(v);
    std::printf("    %-44s %12.1f %12.1f %12.1f  %s\n", label, s.median / scale, s.p10 / scale,
                s.p90 / scale, unit);
}

bool bench_tables(QuiescentState& qs, const std::vector<std::uint32_t>& capacities, int rounds) {
    bool ok = true;
    std::printf(
        "\n1. Memory per active call: dataplane flow tables (dataplane/flow_tables.hpp)\n"
        "   production ratio %u media endpoints per dialog; pools get capacity/8 + 64 slack "
        "slots for entries awaiting a grace period; sizeof(DialogEntry) %zu, "
        "sizeof(MediaEntry) %zu\n",
        kMediaPerDialog, sizeof(DialogEntry), sizeof(MediaEntry));

    const Mem base = reserved_by(qs, 8, 8);  // the baseline: the smallest table there is
    std::printf(
        "   baseline (8 dialogs, 8 media, the minimum): DPDK %lld B in %lld memzones, process "
        "heap %lld B\n",
        (long long)base.dpdk, (long long)base.zone_count, (long long)base.heap);

    for (std::uint32_t dialogs : capacities) {
        const std::uint32_t media = dialogs * kMediaPerDialog;
        // Components: each side alone, the other at the minimum; the baseline subtracted.
        const Mem d_only = reserved_by(qs, dialogs, 8) - base;
        const Mem m_only = reserved_by(qs, 8, media) - base;

        std::vector<double> dpdk, zones, heap, res_create, res_fill, per_call, fill_us;
        std::uint32_t calls = 0, endpoints = 0;
        for (int r = 0; r < rounds; ++r) {
            Mem m0 = snapshot();
            std::string error;
            auto t = FlowTables::create(table_config(dialogs, media), qs, &error);
            if (!t) fail("flow tables (" + std::to_string(dialogs) + " dialogs): " + error);
            Mem m1 = snapshot();
            auto t0 = SteadyClock::now();
            FillResult f = fill(*t, dialogs);
            double fill_s = std::chrono::duration<double>(SteadyClock::now() - t0).count();
            Mem m2 = snapshot();
            if (!f.problem.empty()) {
                std::printf("FAIL:     filling %u dialogs: %s\n", dialogs, f.problem.c_str());
                return false;  // a table that refuses calls below capacity measures nothing
            }
            std::string problem;
            if (t->dialog_count() != f.calls || t->media_count() != f.media ||
                !t->validate(&problem)) {
                std::printf(
                    "FAIL:     tables after the fill: %u dialogs, %u media (expected %u, "
                    "%u) %s\n",
                    t->dialog_count(), t->media_count(), f.calls, f.media, problem.c_str());
                return false;
            }
            // The design promise: nothing allocates after create().
            const Mem grown = m2 - m1;
            if (grown.dpdk != 0 || grown.zone_count != 0 || grown.heap != 0) {
                std::printf(
                    "FAIL:     filling %u calls allocated: DPDK %+lld B, memzones %+lld, process "
                    "heap %+lld B (the tables must not allocate after create)\n",
                    dialogs, (long long)grown.dpdk, (long long)grown.zone_count,
                    (long long)grown.heap);
                ok = false;
            }
            const Mem created = m1 - m0;
            dpdk.push_back(double(created.dpdk));
            zones.push_back(double(created.memzones));
            heap.push_back(double(created.heap));
            res_create.push_back(double(created.resident));
            res_fill.push_back(double(grown.resident));
            per_call.push_back(double(created.dpdk + created.heap) / dialogs);
            fill_us.push_back(1e6 * fill_s / f.calls);
            calls = f.calls, endpoints = f.media;
            t.reset();
        }
        const double total = stats_of(dpdk).median + stats_of(heap).median;
        std::printf(
            "\n  %u dialogs, %u media endpoints; %d rounds of create, fill with %u live calls "
            "(%u endpoints, %.2f per call), destroy\n",
            dialogs, media, rounds, calls, endpoints, double(endpoints) / calls);
        std::printf("    %-44s %12s %12s %12s\n", "", "median", "p10", "p90");
        print_row("reserved at create: DPDK heap", dpdk, kMiB, "MiB");
        print_row("  of which memzones (rings)", zones, kMiB, "MiB");
        print_row("reserved at create: process heap", heap, kMiB, "MiB");
        print_row("resident growth at create", res_create, kMiB, "MiB");
        print_row("resident growth while filling (first touch)", res_fill, kMiB, "MiB");
        print_row("bytes per call (reserved / max_dialogs)", per_call, 1, "B");
        print_row("fill: dialog + offer + answer writes", fill_us, 1, "us per call");
        std::printf(
            "    allocated while filling: DPDK %s, process heap %s (resident growth while filling "
            "is "
            "the first touch of pages reserved at create)\n",
            ok ? "0 B" : "SEE FAIL", ok ? "0 B" : "SEE FAIL");
        const double d_bytes = double(d_only.dpdk + d_only.heap);
        const double m_bytes = double(m_only.dpdk + m_only.heap);
        std::printf(
            "    components (one side alone, minus the baseline): dialog side %.1f MiB = %.0f B "
            "per dialog slot; media side %.1f MiB = %.0f B per media endpoint slot\n"
            "    per call at %u endpoints of capacity: %.0f + %u x %.0f = %.0f B (whole table: "
            "%.0f B per dialog slot)\n",
            d_bytes / kMiB, d_bytes / dialogs, m_bytes / kMiB, m_bytes / media, kMediaPerDialog,
            d_bytes / dialogs, kMediaPerDialog, m_bytes / media,
            d_bytes / dialogs + kMediaPerDialog * m_bytes / media, total / dialogs);
        std::fflush(stdout);
    }
    return ok;
}

// --- 2. target sets -----------------------------------------------------------------------

constexpr const char* kDomains[] = {"ims.carrier.example", "voip.carrier.example",
                                    "sip.partner.example", "pbx.customer.example"};

std::string digits(std::mt19937_64& rng, int n) {
    std::string s;
    for (int i = 0; i < n; ++i)
        s += char('0' + rng() % 10);
    return s;
}

// n identity targets in the mix bench_match uses (E.164 in warrant spellings, SIP URIs on a
// few carrier domains, 5% number-range prefixes), 8 SIP globs, and 1% IP targets (hosts
// and a few /24, v4 and v6).
std::vector<TargetSpec> make_targets(std::size_t n, std::uint64_t seed) {
    std::vector<TargetSpec> out;
    std::mt19937_64 rng(seed);
    std::uint32_t warrant = 1;
    for (std::size_t i = 0; i < n; ++i, ++warrant) {
        std::string spec;
        if (i % 20 == 0) {
            spec = "+4930" + digits(rng, 6) + "*";  // a range of 1,000 numbers
        } else if (i % 2) {
            std::string num = "49" + digits(rng, 10);
            spec = i % 3
                       ? "+" + num
                       : "tel:+" + num.substr(0, 2) + "-" + num.substr(2, 3) + "-" + num.substr(5);
        } else {
            spec = "sip:user." + digits(rng, 8) + "@" + kDomains[rng() % 4];
        }
        out.push_back({spec, warrant});
    }
    for (int g = 0; g < 8; ++g)
        out.push_back({g % 2 ? "sip:*@bad" + std::to_string(g) + ".example"
                             : "sip:fraud" + std::to_string(g) + "*@voip.carrier.example",
                       warrant++});
    for (std::size_t i = 0; i < std::max<std::size_t>(n / 100, 2); ++i, ++warrant) {
        if (i % 2) {
            IpAddress a = IpAddress::v4(0x0a000000u | std::uint32_t(rng() & 0xffffff));
            if (i % 10 == 1) a.bytes[3] = 0;
            out.push_back({a.to_string() + (i % 10 == 1 ? "/24" : ""), warrant});
        } else {
            IpAddress a = IpAddress::parse("2001:db8::").value();
            for (int b = 4; b < 16; ++b)
                a.bytes[b] = std::uint8_t(rng());
            out.push_back({a.to_string(), warrant});
        }
    }
    return out;
}

struct SetFigures {
    std::size_t identities = 0, specs = 0;
    std::size_t database = 0, scratch = 0;
    std::uint32_t v4 = 0, v6 = 0;
    double build_s = 0;
    Mem alive;     // growth while the set is alive
    Mem leftover;  // after it is destroyed (0 expected, within malloc's noise)
};

SetFigures measure_set(const std::vector<TargetSpec>& specs, std::size_t identities) {
    SetFigures f;
    f.identities = identities, f.specs = specs.size();
    TargetSetOptions options;
    options.workers = 1;
    Mem m0 = snapshot();
    auto t0 = SteadyClock::now();
    TargetSet::Result built = TargetSet::build(specs, options);
    f.build_s = std::chrono::duration<double>(SteadyClock::now() - t0).count();
    if (!built.set) fail("target set of " + std::to_string(specs.size()) + ": " + built.error);
    Mem m1 = snapshot();
    const TargetSetStats& st = built.set->stats();
    f.database = st.base.database_bytes + st.delta.database_bytes;
    f.scratch = st.scratch_bytes;
    f.v4 = st.ipv4_prefixes, f.v6 = st.ipv6_prefixes;
    built.set.reset();
    Mem m2 = snapshot();
    f.alive = m1 - m0;
    f.leftover = m2 - m0;
    return f;
}

// Per-target columns leave out the fixed LPM cost: what the IP baseline (fixed) took.
void print_set(const char* label, const SetFigures& f, const Mem& fixed) {
    std::printf("  %-22s %8zu %6u %8.2f %8.2f %8.2f %8.2f %7.1f |", label, f.identities,
                f.v4 + f.v6, double(f.database) / kMiB, double(f.alive.heap) / kMiB,
                double(f.alive.dpdk) / kMiB, double(f.alive.resident) / kMiB, f.build_s);
    if (f.identities == 0) {
        std::printf(" %7s %7s %7s %7s\n", "-", "-", "-", "-");
        return;
    }
    const double n = double(f.identities);
    const double ip_dpdk = double(f.alive.dpdk - fixed.dpdk);
    std::printf(" %7.0f %7.0f %7.0f %7.0f\n", double(f.database) / n, double(f.alive.heap) / n,
                (double(f.alive.heap) + ip_dpdk) / n,
                double(f.alive.resident - fixed.resident) / n);
}

void bench_targets(const std::vector<std::size_t>& sizes, int small_rounds) {
    std::printf(
        "\n2. Memory per target: compiled TargetSet (dataplane/target_set.hpp), 1 worker "
        "scratch\n"
        "   identities as bench_match: ~47%% E.164, ~47%% SIP URIs, 5%% number-range prefixes, "
        "+8 globs; +1%% IP targets (v4 hosts and /24, v6 hosts) in DPDK LPM tables\n"
        "   MiB: growth while the set is alive (after malloc_trim). Process heap: the Hyperscan "
        "databases (db), pattern-to-warrant tables, scratch. DPDK heap: the LPM tables.\n"
        "   B/t: bytes per identity target without the LPM tables' fixed cost (the IP "
        "baseline's): db; heap; all = heap + DPDK beyond the fixed; resident beyond the "
        "fixed\n\n");
    std::printf("  %-22s %8s %6s %8s %8s %8s %8s %7s | %7s %7s %7s %7s\n", "", "ident.", "IP",
                "db MiB", "heap MiB", "DPDK MiB", "res MiB", "build s", "db", "heap", "all", "res");

    SetFigures empty = measure_set({}, 0);
    std::vector<TargetSpec> ip_only = {{"198.51.100.7", 1}, {"2001:db8::7", 2}};
    SetFigures ip = measure_set(ip_only, 0);
    const Mem fixed = ip.alive;
    print_set("baseline: empty set", empty, fixed);
    print_set("baseline: 1 v4 + 1 v6", ip, fixed);
    std::fflush(stdout);

    std::vector<SetFigures> by_size;
    for (std::size_t n : sizes) {
        auto specs = make_targets(n, 42 + n);
        // Compiling is the slow part (100k: seconds): rounds only where it is quick.
        const int rounds = n <= 10'000 ? small_rounds : 1;
        std::vector<SetFigures> runs;
        for (int r = 0; r < rounds; ++r)
            runs.push_back(measure_set(specs, n));
        std::sort(runs.begin(), runs.end(), [](const SetFigures& a, const SetFigures& b) {
            return a.alive.resident < b.alive.resident;
        });
        const SetFigures& med = runs[runs.size() / 2];  // the median round by resident growth
        char label[64];
        std::snprintf(label, sizeof label, "%zu targets%s", n, rounds > 1 ? " (median)" : "");
        print_set(label, med, fixed);
        if (rounds > 1) {
            std::vector<double> res, heap, dpdk;
            for (const auto& r : runs) {
                res.push_back(double(r.alive.resident));
                heap.push_back(double(r.alive.heap));
                dpdk.push_back(double(r.alive.dpdk));
            }
            Stats sr = stats_of(res), sh = stats_of(heap), sd = stats_of(dpdk);
            std::printf(
                "  %-22s %d rounds, p10-p90: heap %.2f-%.2f, DPDK %.2f-%.2f, resident "
                "%.2f-%.2f MiB; db bytes identical\n",
                "", rounds, sh.p10 / kMiB, sh.p90 / kMiB, sd.p10 / kMiB, sd.p90 / kMiB,
                sr.p10 / kMiB, sr.p90 / kMiB);
        }
        if (med.leftover.dpdk != 0 || med.leftover.heap > (1 << 20))
            std::printf(
                "  note: after destroying it, DPDK %+lld B and process heap %+lld B "
                "remain\n",
                (long long)med.leftover.dpdk, (long long)med.leftover.heap);
        by_size.push_back(med);
        std::fflush(stdout);
    }

    std::printf("\n");
    for (std::size_t i = 1; i < by_size.size(); ++i) {
        const SetFigures &a = by_size[i - 1], &b = by_size[i];
        const double dn = double(b.identities - a.identities);
        std::printf(
            "  marginal %zu -> %zu targets (slope: fixed costs cancel): database %.0f B, "
            "process heap %.0f B, all-in %.0f B, resident %.0f B per target\n",
            a.identities, b.identities, double(b.database - a.database) / dn,
            double(b.alive.heap - a.alive.heap) / dn,
            double(b.alive.heap + b.alive.dpdk - a.alive.heap - a.alive.dpdk) / dn,
            double(b.alive.resident - a.alive.resident) / dn);
    }
    std::printf(
        "  fixed: LPM tables %.1f MiB of DPDK heap once any IP target exists (rte_lpm and "
        "rte_lpm6 each have a 2^24-entry first level); scratch %zu KiB per worker\n",
        double(fixed.dpdk) / kMiB, by_size.empty() ? 0 : by_size.back().scratch / 1024);
    for (const SetFigures& f : by_size) {
        const std::uint32_t ips = f.v4 + f.v6;
        if (ips > 2)
            std::printf(
                "  per IP prefix beyond the fixed tables (%zu targets, %u IP): DPDK %.0f B "
                "(tbl8 groups, next-hop lists)\n",
                f.identities, ips, double(f.alive.dpdk - fixed.dpdk) / double(ips - 2));
    }
}

std::string joined(int argc, char** argv) {
    std::string s;
    for (int i = 0; i < argc; ++i)
        s += (i ? " " : "") + std::string(argv[i]);
    return s;
}

int run(int argc, char** argv) {
    int split = 0;
    for (int i = 1; i < argc; ++i)
        if (std::string_view(argv[i]) == "--") split = i;
    bool quick = false;
    int rounds = 0;
    std::size_t max_targets = 1'000'000;
    for (int i = split ? split + 1 : 1; i < argc; ++i) {
        std::string_view a = argv[i];
        if (a == "--quick") {
            quick = true;
        } else if (a == "--rounds" && i + 1 < argc) {
            rounds = std::max(1, std::atoi(argv[++i]));
        } else if (a == "--targets" && i + 1 < argc) {
            max_targets = std::max<std::size_t>(1000, std::strtoull(argv[++i], nullptr, 10));
        } else if (a == "--help" || a == "-h") {
            usage();
            return 0;
        } else {
            usage();
            return 2;
        }
    }
    if (rounds == 0) rounds = quick ? 3 : 5;
    std::vector<std::uint32_t> capacities = quick
                                                ? std::vector<std::uint32_t>{4096, 16384}
                                                : std::vector<std::uint32_t>{16384, 65536, 262144};
    std::vector<std::size_t> sizes;
    for (std::size_t n :
         {std::size_t(1'000), std::size_t(10'000), std::size_t(100'000), std::size_t(1'000'000)})
        if (n <= (quick ? 10'000 : max_targets) && (quick || n >= 10'000)) sizes.push_back(n);

    // DPDK memory: the largest table (~1.7 KiB per dialog slot with its media, measured
    // here) or the largest target set (128 MiB of LPM tables + ~50 B per target), never both
    // at once, with room to spare.
    const unsigned need_mb = unsigned(capacities.back() * 1800.0 / kMiB) + 256;

    std::printf("tapwire-bench-memory: memory per active call and per target\n");
    std::printf("command:  %s\n", joined(argc, argv).c_str());
    std::string eal = init_eal(argv, split, need_mb);
    std::printf("EAL:      %s%s; %s\n", eal.c_str(), split ? "" : " (defaults)",
                rte_eal_has_hugepages() ? "hugepages" : "4 KiB pages (--no-huge)");
    std::printf(
        "method:   differences of snapshots around each step: DPDK heap allocated "
        "(rte_malloc_get_socket_stats, memzones included), process heap in use (mallinfo2), "
        "resident (VmRSS + HugetlbPages, after malloc_trim)\n");
    if (split || !rte_eal_has_hugepages())
        std::printf(
            "note:     DPDK memory stays mapped here (--no-huge or -m): resident growth shows "
            "only pages first used in that step, not memory reused from an earlier one\n");
    std::fflush(stdout);

    auto qs = QuiescentState::create(2);  // RCU ids: 0 the sweeper, 1 a worker
    if (!qs) fail("cannot create the RCU quiescent-state variable");

    const bool tables_ok = bench_tables(*qs, capacities, rounds);
    bench_targets(sizes, rounds);

    std::printf(
        "\n3. Control plane per-call state (controlplane/handover_pipeline.hpp): not measured. "
        "Its headers pull in gRPC, which this program does not link (dataplane and traffic "
        "only).\n");
    if (!tables_ok) std::printf("\nFAIL: the flow tables allocated after create()\n");
    return tables_ok ? 0 : 3;
}

}  // namespace

int main(int argc, char** argv) {
    int rc = run(argc, argv);  // the tables and sets are gone when run() returns
    rte_eal_cleanup();
    if (!g_own_runtime_dir.empty()) {
        std::error_code ignored;
        std::filesystem::remove_all(g_own_runtime_dir, ignored);
    }
    return rc;
}
