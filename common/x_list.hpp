// X-macro lists: one list of X(name, text) entries per enum, from which the enumerators,
// their counter-style names and descriptions are generated, so that code, counters,
// telemetry and logs cannot disagree.
//
//   #define MY_ERRORS(X) X(Ok, "ok") X(Truncated, "truncated")
//   enum class MyError { MY_ERRORS(TAPWIRE_X_ENUMERATOR) Count };
//   const char* to_string(MyError e) noexcept {
//       static constexpr const char* kNames[] = {MY_ERRORS(TAPWIRE_X_TEXT)};
//       return tapwire::name_of(e, kNames);
//   }
#pragma once

#include <cstddef>

#define TAPWIRE_X_ENUMERATOR(name, text) name,
#define TAPWIRE_X_TEXT(name, text) text,
#define TAPWIRE_X_NAME(name, text) #name,

namespace tapwire {

/// names[e], or "unknown" for a value outside the list (for example Count).
template <class Enum, std::size_t N>
constexpr const char* name_of(Enum e, const char* const (&names)[N]) noexcept {
    const auto i = static_cast<std::size_t>(e);
    return i < N ? names[i] : "unknown";
}

}  // namespace tapwire
