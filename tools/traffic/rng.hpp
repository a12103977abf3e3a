// The traffic generator's deterministic random numbers: splitmix64 (Steele, Lea, Flood
// 2014), so a seed reproduces a capture byte for byte on any machine.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace tapwire::traffic {

class Rng {
  public:
    explicit Rng(std::uint64_t seed) : state_(seed) {}

    std::uint64_t next() {
        std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
    }
    std::uint32_t below(std::uint32_t n) { return n == 0 ? 0 : std::uint32_t(next() % n); }
    std::uint64_t between(std::uint64_t lo, std::uint64_t hi) {  // inclusive
        return lo + next() % (hi - lo + 1);
    }
    std::string hex(std::size_t digits) {
        static constexpr char kHex[] = "0123456789abcdef";
        std::string s;
        for (std::size_t i = 0; i < digits; ++i)
            s.push_back(kHex[next() & 0xf]);
        return s;
    }

  private:
    std::uint64_t state_;
};

}  // namespace tapwire::traffic
