// Wall-clock time as the appliance records it: nanoseconds since the Unix epoch (UTC).
#pragma once

#include <chrono>
#include <cstdint>

namespace tapwire {

inline std::int64_t unix_time_ns() noexcept {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

}  // namespace tapwire
