// What every Tapwire benchmark shares: keeping results alive past the optimiser, median and
// spread over rounds, and timing an operation per item in ns and TSC cycles.
#pragma once

#include <x86intrin.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace tapwire::bench {

/// Keeps value (and the work that made it) from being optimised away.
template <class T>
inline void keep(const T& value) {
    asm volatile("" : : "r,m"(value) : "memory");
}

/// Median and spread (10th and 90th percentile) of per-round figures.
struct Stats {
    double median = 0, p10 = 0, p90 = 0;
};

inline Stats stats_of(std::vector<double> v) {
    if (v.empty()) return {};
    std::sort(v.begin(), v.end());
    auto at = [&](double q) { return v[std::size_t(q * double(v.size() - 1) + 0.5)]; };
    return {at(0.5), at(0.1), at(0.9)};
}

struct Row {
    std::string name;
    Stats ns;
    Stats cycles;
};

/// Runs op(i) for i cycling over [0, items) (items a power of two), per_round times per
/// round, after one untimed warm-up round; per-item ns and TSC cycles over the rounds. A
/// template, so op inlines as in a real worker loop.
template <class Op>
Row measure(const std::string& name, std::size_t items, std::size_t per_round, int rounds, Op op) {
    using Clock = std::chrono::steady_clock;
    const std::size_t mask = items - 1;
    for (std::size_t i = 0; i < per_round; ++i)
        op(i & mask);
    std::vector<double> ns, cycles;
    for (int r = 0; r < rounds; ++r) {
        auto t0 = Clock::now();
        std::uint64_t c0 = __rdtsc();
        for (std::size_t i = 0; i < per_round; ++i)
            op(i & mask);
        std::uint64_t c1 = __rdtsc();
        auto t1 = Clock::now();
        ns.push_back(std::chrono::duration<double, std::nano>(t1 - t0).count() / double(per_round));
        cycles.push_back(double(c1 - c0) / double(per_round));
    }
    return {name, stats_of(ns), stats_of(cycles)};
}

}  // namespace tapwire::bench
