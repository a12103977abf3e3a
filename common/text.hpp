// Small ASCII text helpers shared by the control plane, the dataplane and the handover.
#pragma once

#include <cstddef>
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

}  // namespace tapwire
