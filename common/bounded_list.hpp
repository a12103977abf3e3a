// A fixed-capacity list for parser output: no heap, and overflow is visible, not silent.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace tapwire {

/// Holds up to N items inline. push() past capacity keeps counting in seen() so the
/// caller can report that values were dropped (for example a SIP message with more
/// Contact values than the parser keeps).
template <class T, std::size_t N>
class BoundedList {
  public:
    static constexpr std::size_t capacity = N;

    /// Appends v; returns false (and still counts it) when the list is full.
    constexpr bool push(const T& v) noexcept {
        ++seen_;
        if (size_ == N) return false;
        items_[size_++] = v;
        return true;
    }
    constexpr void clear() noexcept { size_ = 0, seen_ = 0; }

    constexpr std::size_t size() const noexcept { return size_; }
    constexpr bool empty() const noexcept { return size_ == 0; }
    /// Number of push() calls, including those that did not fit.
    constexpr std::size_t seen() const noexcept { return seen_; }
    constexpr bool overflowed() const noexcept { return seen_ > size_; }

    constexpr const T& operator[](std::size_t i) const noexcept { return items_[i]; }
    constexpr T& operator[](std::size_t i) noexcept { return items_[i]; }
    constexpr const T& front() const noexcept { return items_[0]; }
    constexpr const T* begin() const noexcept { return items_.data(); }
    constexpr const T* end() const noexcept { return items_.data() + size_; }
    constexpr T* begin() noexcept { return items_.data(); }
    constexpr T* end() noexcept { return items_.data() + size_; }

  private:
    std::array<T, N> items_{};
    std::uint32_t size_ = 0;
    std::uint32_t seen_ = 0;
};

}  // namespace tapwire
