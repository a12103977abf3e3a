// tapwire-bench-match: cost of the target set (dataplane/target_set.hpp) on one core.
//
// For 1k, 10k and 100k active targets (about 47% exact E.164, 47% exact SIP URIs on a few
// carrier domains, 5% number-range prefixes, a few SIP globs, 1% IP prefixes) it prints:
//   - build: full compile + assembly (ms), Hyperscan database and scratch size;
//   - activation: one new warrant as a delta layer compiled and assembled around the
//     already compiled base (the control plane's fast path, issue 4);
//   - ns per SIP message (5 normalised identities, 2% of messages hit) as median, p10, p90
//     over rounds, for TargetSet::match_identities (one joined buffer in scan form, one
//     hs_scan per database), for two alternative designs (one hs_scan per identity; the
//     joined buffer without the scan form's rotation), and for the baseline: the
//     same identities looked up in a std::unordered_set<std::string_view> of the exact
//     targets (it cannot do prefixes or globs; it is the floor any design is judged by);
//   - ns per address LPM lookup (IPv4, IPv6; 2% hit), next to an unordered_set baseline.
// Usage: tapwire-bench-match [--rounds N] [--quick]

#include <hs/hs.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <unistd.h>
#include <x86intrin.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "common/identity.hpp"
#include "common/ip_address.hpp"
#include "dataplane/target_set.hpp"
#include "tools/bench/bench_stats.hpp"

namespace {

using namespace tapwire;
using namespace tapwire::bench;
using namespace tapwire::dataplane;
using Clock = std::chrono::steady_clock;

void print(const Row& r, const Row* baseline) {
    std::printf("  %-40s %9.1f %9.1f %9.1f %9.0f", r.name.c_str(), r.ns.median, r.ns.p10, r.ns.p90,
                r.cycles.median);
    if (baseline) std::printf(" %10.2fx", r.ns.median / baseline->ns.median);
    std::printf("\n");
}

double ms_since(Clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

constexpr const char* kDomains[] = {"ims.carrier.example", "voip.carrier.example",
                                    "sip.partner.example", "pbx.customer.example"};

// --- the workload -------------------------------------------------------------------------

struct Workload {
    std::vector<TargetSpec> targets;
    std::vector<std::string> exact;     // normalised exact identities (baseline set, alt DB)
    std::vector<std::string> prefixes;  // normalised prefixes (alt DB)
    std::vector<std::string> hit_ids;   // normalised identities that hit (2% of messages)
    std::vector<IpAddress> ip_hosts;    // v4 and v6 /32, /128 targets
};

std::string digits(std::mt19937_64& rng, int n) {
    std::string s;
    for (int i = 0; i < n; ++i)
        s += char('0' + rng() % 10);
    return s;
}

Workload make_workload(std::size_t n, std::uint64_t seed) {
    Workload w;
    std::mt19937_64 rng(seed);
    NormalizedIdentity id;
    std::uint32_t warrant = 1;
    for (std::size_t i = 0; i < n; ++i, ++warrant) {
        std::string spec;
        switch (i % 20) {
            case 0: {  // 5%: a number range of 1,000 numbers
                std::string range = "+4930" + digits(rng, 6);
                spec = range + "*";
                w.prefixes.push_back("tel:" + range);
                w.hit_ids.push_back("tel:" + range + digits(rng, 3));
                break;
            }
            default:
                if (i % 2) {  // E.164 in the spellings warrants use
                    std::string num = "49" + digits(rng, 10);
                    spec = i % 3 ? "+" + num
                                 : "tel:+" + num.substr(0, 2) + "-" + num.substr(2, 3) + "-" +
                                       num.substr(5);
                } else {
                    spec = "sip:user." + digits(rng, 8) + "@" + kDomains[rng() % 4];
                }
                if (normalize_identity(spec, id) != IdentityError::Ok) std::abort();
                w.exact.emplace_back(id.view());
                w.hit_ids.emplace_back(id.view());
        }
        w.targets.push_back({spec, warrant});
    }
    for (int g = 0; g < 8; ++g)  // a few SIP globs: a hostile domain, a user family
        w.targets.push_back({g % 2 ? "sip:*@bad" + std::to_string(g) + ".example"
                                   : "sip:fraud" + std::to_string(g) + "*@voip.carrier.example",
                             warrant++});
    for (std::size_t i = 0; i < std::max<std::size_t>(n / 100, 8); ++i, ++warrant) {
        if (i % 2) {
            IpAddress a = IpAddress::v4(0x0a000000u | std::uint32_t(rng() & 0xffffff));
            if (i % 10 == 1) {
                a.bytes[3] = 0;
                w.targets.push_back({a.to_string() + "/24", warrant});
            } else {
                w.targets.push_back({a.to_string(), warrant});
                w.ip_hosts.push_back(a);
            }
        } else {
            IpAddress a = IpAddress::parse("2001:db8::").value();
            for (int b = 4; b < 16; ++b)
                a.bytes[b] = std::uint8_t(rng());
            w.targets.push_back({a.to_string(), warrant});
            w.ip_hosts.push_back(a);
        }
    }
    return w;
}

// 5 normalised identities per message as a worker passes them: Request-URI, From, To,
// P-Asserted-Identity, Contact. Non-target numbers are +44 (targets are +49), so exactly
// the chosen 2% hit.
struct Messages {
    std::vector<std::string> store;
    std::vector<std::array<std::string_view, 5>> msgs;
};

Messages make_messages(const Workload& w, std::size_t count, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    Messages m;
    m.store.reserve(count * 5);
    NormalizedIdentity id;
    for (std::size_t i = 0; i < count; ++i) {
        std::string callee = "+44" + digits(rng, 10), caller = "+44" + digits(rng, 10);
        std::string raw[5] = {
            "sip:" + callee + "@core.carrier.example;user=phone",
            "\"Caller\" <sip:" + caller + "@sbc.carrier.example;user=phone>;tag=x",
            "<tel:" + callee + ">",
            "<sip:member." + digits(rng, 8) + "@" + kDomains[rng() % 4] + ">",
            "<sip:user@192.0.2." + std::to_string(rng() % 250) + ":5060;transport=udp>"};
        for (auto& r : raw) {
            if (normalize_identity(r, id) != IdentityError::Ok) std::abort();
            m.store.emplace_back(id.view());
        }
        if (i % 50 == 7)  // 2%: a target is the called party
            m.store[m.store.size() - 3] = w.hit_ids[rng() % w.hit_ids.size()];
    }
    for (std::size_t i = 0; i < count; ++i)
        m.msgs.push_back({m.store[5 * i], m.store[5 * i + 1], m.store[5 * i + 2],
                          m.store[5 * i + 3], m.store[5 * i + 4]});
    return m;
}

// Mirrors the target set's scan form ("sip:user@host" -> "host@sip:user"; see
// dataplane/target_set.cpp) for the alternative designs below.
std::size_t scan_form(std::string_view s, char* out) {
    std::size_t at = std::string_view::npos;
    if (s.size() > 4 && s.substr(0, 4) == "sip:") at = s.find('@', 4);
    if (at == std::string_view::npos) {
        std::memcpy(out, s.data(), s.size());
    } else {
        std::memcpy(out, s.data() + at + 1, s.size() - at - 1);
        out[s.size() - at - 1] = '@';
        std::memcpy(out + s.size() - at, s.data(), at);
    }
    return s.size();
}

// The designs TargetSet did not take, over the same exact and prefix targets (no globs, no
// warrant lists: they only count hits, which flatters them slightly):
//   PerIdentity: one hs_scan per identity (scan form), undelimited literals, anchoring
//                checked in the callback from the match end and the literal's length;
//   JoinedPlain: one joined buffer like TargetSet, but identities in their plain form.
struct AltDb {
    enum class Mode { PerIdentity, JoinedPlain };
    Mode mode;
    hs_database_t* db = nullptr;
    hs_scratch_t* scratch = nullptr;
    std::vector<std::uint32_t> lengths;
    std::vector<bool> exact;
    double compile_ms = 0;

    struct Ctx {
        const AltDb* self;
        std::size_t length;
        unsigned hits;
    };
    static int on_match(unsigned id, unsigned long long, unsigned long long to, unsigned, void* p) {
        auto& c = *static_cast<Ctx*>(p);
        const AltDb& s = *c.self;
        if (s.mode == Mode::JoinedPlain ||
            (to == s.lengths[id] && (!s.exact[id] || to == c.length)))
            ++c.hits;
        return 0;
    }
    unsigned scan(const std::array<std::string_view, 5>& msg) const {
        char buf[2048];
        Ctx c{this, 0, 0};
        if (mode == Mode::PerIdentity) {
            for (auto id : msg) {
                c.length = scan_form(id, buf);
                hs_scan(db, buf, unsigned(c.length), 0, scratch, on_match, &c);
            }
        } else {
            std::size_t len = 0;
            buf[len++] = '\n';
            for (auto id : msg) {
                std::memcpy(buf + len, id.data(), id.size());
                len += id.size();
                buf[len++] = '\n';
            }
            hs_scan(db, buf, unsigned(len), 0, scratch, on_match, &c);
        }
        return c.hits;
    }
    explicit AltDb(Mode m) : mode(m) {}
    ~AltDb() {
        hs_free_scratch(scratch);
        hs_free_database(db);
    }
};

bool compile_alt(const Workload& w, AltDb& out) {
    std::vector<std::string> pats;
    std::unordered_set<std::string> seen;
    const bool joined = out.mode == AltDb::Mode::JoinedPlain;
    for (const auto& e : w.exact) {
        std::string p(e.size(), '\0');
        if (joined) {
            p = "\n" + e + "\n";
        } else {
            scan_form(e, p.data());
        }
        if (seen.insert(p).second) pats.push_back(p), out.exact.push_back(true);
    }
    for (const auto& pre : w.prefixes) {
        std::string p = joined ? "\n" + pre : pre;
        if (seen.insert(p).second) pats.push_back(p), out.exact.push_back(false);
    }
    std::vector<const char*> exprs;
    std::vector<std::size_t> lens;
    std::vector<unsigned> flags(pats.size(), joined ? 0 : HS_FLAG_SINGLEMATCH), ids;
    for (std::size_t i = 0; i < pats.size(); ++i) {
        exprs.push_back(pats[i].data());
        lens.push_back(pats[i].size());
        ids.push_back(unsigned(i));
        out.lengths.push_back(std::uint32_t(pats[i].size()));
    }
    hs_compile_error_t* err = nullptr;
    auto t0 = Clock::now();
    if (hs_compile_lit_multi(exprs.data(), flags.data(), ids.data(), lens.data(),
                             unsigned(pats.size()), HS_MODE_BLOCK, nullptr, &out.db,
                             &err) != HS_SUCCESS) {
        std::fprintf(stderr, "alternative compile: %s\n", err ? err->message : "?");
        return false;
    }
    out.compile_ms = ms_since(t0);
    return hs_alloc_scratch(out.db, &out.scratch) == HS_SUCCESS;
}

bool init_eal() {
    std::string prefix = "--file-prefix=tw_bench_match_" + std::to_string(getpid());
    std::vector<std::string> args = {"tapwire-bench-match",
                                     "--no-huge",
                                     "--no-pci",
                                     "-m",
                                     "1024",
                                     "-l",
                                     "0",
                                     prefix,
                                     "--log-level=lib.eal:error",
                                     "--log-level=lib.telemetry:error"};
    std::vector<char*> argv;
    for (auto& a : args)
        argv.push_back(a.data());
    if (rte_eal_init(int(argv.size()), argv.data()) < 0) {
        std::fprintf(stderr, "EAL init failed: %s\n", rte_strerror(rte_errno));
        return false;
    }
    return true;
}

}  // namespace

int main(int argc, char** argv) {
    int rounds = 21;
    std::vector<std::size_t> sizes = {1'000, 10'000, 100'000};
    std::size_t per_round = 200'000;
    bool alt = true;
    for (int i = 1; i < argc; ++i) {
        std::string_view a = argv[i];
        if (a == "--rounds" && i + 1 < argc) {
            rounds = std::max(3, std::atoi(argv[++i]));
        } else if (a == "--quick") {  // CI smoke: it runs and prints sane figures
            rounds = 5, sizes = {1'000, 5'000}, per_round = 20'000;
        } else if (a == "--no-alt") {  // skip the second compile of the alternative design
            alt = false;
        } else {
            std::fprintf(stderr, "usage: tapwire-bench-match [--rounds N] [--quick] [--no-alt]\n");
            return 2;
        }
    }
    if (!init_eal()) return 1;

    std::printf(
        "tapwire-bench-match: %d rounds, one core; ns per item (median, p10, p90), TSC cycles "
        "per item (median), ratio to the baseline\n",
        rounds);

    constexpr std::size_t kMessages = 4096;  // power of two: measure() cycles over them
    for (std::size_t n : sizes) {
        Workload w = make_workload(n, 42 + n);
        Messages m = make_messages(w, kMessages, 7 + n);

        TargetSetOptions options;
        options.workers = 1;
        auto t0 = Clock::now();
        TargetSet::Result built = TargetSet::build(w.targets, options);
        const double build_ms = ms_since(t0);
        if (!built.set) {
            std::fprintf(stderr, "build failed: %s\n", built.error.c_str());
            return 1;
        }
        const TargetSet& set = *built.set;
        const TargetSetStats& st = set.stats();

        // Activation: one new warrant as a delta around the compiled base.
        std::vector<TargetSpec> one = {{"sip:new.target@ims.carrier.example", 999'999'999}};
        t0 = Clock::now();
        auto delta = TargetLayer::compile(one, options.plan, "delta");
        auto next = TargetSet::assemble(set.base_layer(), delta.layer, options, &set);
        const double activate_ms = ms_since(t0);
        if (!next.set) {
            std::fprintf(stderr, "delta failed: %s\n", next.error.c_str());
            return 1;
        }
        // The same, with the IP tables rebuilt (an IP target in the delta).
        one.push_back({"203.0.113.77", 999'999'998});
        t0 = Clock::now();
        auto delta_ip = TargetLayer::compile(one, options.plan, "delta");
        auto next_ip = TargetSet::assemble(set.base_layer(), delta_ip.layer, options, &set);
        const double activate_ip_ms = ms_since(t0);
        if (!next_ip.set) return 1;
        next_ip.set.reset();

        std::printf("\n%zu identity targets (%u exact, %u prefixes, %u globs), %u+%u IP prefixes\n",
                    n, st.base.exact_identities, st.base.identity_prefixes, st.base.identity_globs,
                    st.ipv4_prefixes, st.ipv6_prefixes);
        std::printf(
            "  build %.1f ms (Hyperscan compile %.1f ms, assembly %.1f ms), database "
            "%.2f MiB, scratch %zu bytes per worker\n",
            build_ms, st.base.compile_ms, st.assemble_ms,
            double(st.base.database_bytes) / 1048576.0, st.scratch_bytes);
        std::printf(
            "  activation of one warrant (delta compile + assembly over the base): "
            "%.2f ms; with an IP target (new LPM tables): %.2f ms\n",
            activate_ms, activate_ip_ms);

        // Correctness guard: every design must find the same 2% of messages.
        std::unordered_set<std::string_view> exact_set(w.exact.begin(), w.exact.end());
        std::size_t hits_set = 0, hits_baseline = 0;
        MatchResult result;
        for (const auto& msg : m.msgs) {
            result.clear();
            hits_set += set.match_identities(msg, 0, result);
            bool any = false;
            for (auto id : msg)
                any |= exact_set.count(id) != 0;
            hits_baseline += any;
        }
        std::printf("  messages hit: %zu of %zu (baseline, exact only: %zu)\n", hits_set,
                    m.msgs.size(), hits_baseline);

        std::printf("  %-40s %9s %9s %9s %9s %11s\n", "per SIP message (5 identities)", "median",
                    "p10", "p90", "cycles", "vs base");
        Row baseline = measure("baseline unordered_set (exact only)", kMessages, per_round, rounds,
                               [&](std::size_t i) {
                                   unsigned hits = 0;
                                   for (auto id : m.msgs[i])
                                       hits += unsigned(exact_set.count(id));
                                   keep(hits);
                               });
        Row joined = measure("TargetSet::match_identities (joined)", kMessages, per_round, rounds,
                             [&](std::size_t i) {
                                 result.clear();
                                 keep(set.match_identities(m.msgs[i], 0, result));
                             });
        Row delta_row = measure("  with a 1-target delta layer", kMessages, per_round, rounds,
                                [&](std::size_t i) {
                                    result.clear();
                                    keep(next.set->match_identities(m.msgs[i], 0, result));
                                });
        print(baseline, nullptr);
        print(joined, &baseline);
        print(delta_row, &baseline);
        if (alt) {
            for (auto mode : {AltDb::Mode::PerIdentity, AltDb::Mode::JoinedPlain}) {
                AltDb db(mode);
                if (!compile_alt(w, db)) return 1;
                std::size_t hits = 0;
                for (const auto& msg : m.msgs)
                    hits += db.scan(msg) != 0;
                const bool per = mode == AltDb::Mode::PerIdentity;
                // The plain form is slow enough (~100 us per message at 100k targets) that
                // it runs one pass over the messages per round, and at most 5 rounds.
                Row row = measure(per ? "alt: hs_scan per identity" : "alt: joined, plain form",
                                  kMessages, per ? per_round : kMessages,
                                  per ? rounds : std::min(rounds, 5),
                                  [&](std::size_t i) { keep(db.scan(m.msgs[i])); });
                print(row, &baseline);
                std::printf("    (compile %.1f ms, messages hit %zu; exact and prefixes only)\n",
                            db.compile_ms, hits);
            }
        }

        // Addresses: 2% are target hosts, the rest miss (10.x, 2001:db8:: ranges mostly
        // not targeted).
        std::vector<IpAddress> v4, v6;
        std::mt19937_64 rng(99 + n);
        std::vector<IpAddress> hosts4, hosts6;
        for (const auto& a : w.ip_hosts)
            (a.is_v4() ? hosts4 : hosts6).push_back(a);
        for (std::size_t i = 0; i < kMessages; ++i) {
            bool hit = i % 50 == 3;
            IpAddress a4 = hit ? hosts4[rng() % hosts4.size()]
                               : IpAddress::v4(0xc6120000u | std::uint32_t(rng() & 0xffff));
            IpAddress a6 =
                hit ? hosts6[rng() % hosts6.size()] : IpAddress::parse("2001:db8:ffff::").value();
            if (!hit)
                for (int b = 8; b < 16; ++b)
                    a6.bytes[b] = std::uint8_t(rng());
            v4.push_back(a4);
            v6.push_back(a6);
        }
        std::unordered_set<std::uint32_t> host_set;
        for (const auto& a : hosts4)
            host_set.insert(a.v4_host_order());
        std::printf("  %-40s %9s %9s %9s %9s %11s\n", "per address", "median", "p10", "p90",
                    "cycles", "vs base");
        Row ip_base =
            measure("baseline unordered_set<u32> (v4 hosts)", kMessages, per_round * 4, rounds,
                    [&](std::size_t i) { keep(host_set.count(v4[i].v4_host_order())); });
        Row lpm4 = measure("match_address IPv4 (rte_lpm)", kMessages, per_round * 4, rounds,
                           [&](std::size_t i) {
                               result.clear();
                               keep(set.match_address(v4[i], result));
                           });
        Row lpm6 = measure("match_address IPv6 (rte_lpm6)", kMessages, per_round * 4, rounds,
                           [&](std::size_t i) {
                               result.clear();
                               keep(set.match_address(v6[i], result));
                           });
        print(ip_base, nullptr);
        print(lpm4, &ip_base);
        print(lpm6, &ip_base);
    }
    rte_eal_cleanup();
    return 0;
}
