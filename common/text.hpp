// Small ASCII text helpers shared by the control plane, the dataplane and the handover.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace tapwire {

/// Whether `s` begins with `lower_prefix`, ASCII letters of `s` compared without case (URI
/// schemes are case-insensitive, RFC 3986 clause 3.1). `lower_prefix` must be lower case.
inline bool istarts_with(std::string_view s, std::string_view lower_prefix) noexcept {
    if (s.size() < lower_prefix.size()) return false;
    for (std::size_t i = 0; i < lower_prefix.size(); ++i) {
        char c = s[i];
        if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
        if (c != lower_prefix[i]) return false;
    }
    return true;
}

/// `s` without leading and trailing spaces, tabs and CRs (the whitespace a target line or
/// a roles file line may carry).
inline std::string_view trim(std::string_view s) noexcept {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r'))
        s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
        s.remove_suffix(1);
    return s;
}

/// Valid UTF-8 (RFC 3629 section 4): no overlong forms, no surrogates, nothing above
/// U+10FFFF. Protobuf's C++ setters do not enforce what proto3 parsing does.
inline bool is_utf8(std::string_view s) noexcept {
    static constexpr std::uint32_t kMin[] = {0, 0x80, 0x800, 0x10000};
    for (std::size_t i = 0; i < s.size();) {
        const auto c = std::uint8_t(s[i]);
        std::size_t n = 0;
        std::uint32_t cp = 0;
        if (c < 0x80) {
            ++i;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            n = 1, cp = c & 0x1Fu;
        } else if ((c & 0xF0) == 0xE0) {
            n = 2, cp = c & 0x0Fu;
        } else if ((c & 0xF8) == 0xF0) {
            n = 3, cp = c & 0x07u;
        } else {
            return false;
        }
        if (s.size() - i <= n) return false;
        for (std::size_t k = 1; k <= n; ++k) {
            const auto b = std::uint8_t(s[i + k]);
            if ((b & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (b & 0x3Fu);
        }
        if (cp < kMin[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
        i += n + 1;
    }
    return true;
}

}  // namespace tapwire
