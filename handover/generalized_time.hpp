// GeneralizedTime text for the BER formats (ETSI TS 102 232-1 timeStamp, PCESP EventTime):
// one implementation, allocation-free, for the hot path of both.
#pragma once

#include <cstddef>
#include <cstdint>

namespace tapwire::handover {

/// `ns` since the Unix epoch (negative: before it) as GeneralizedTime "YYYYMMDDhhmmss[.f...]Z"
/// in UTC, with at most `fraction_digits` (0..9) digits of fraction, truncated, trailing zeros
/// dropped (X.690 clause 11.7, so the text is also DER). Returns the length written to `out`.
inline std::size_t generalized_time(std::int64_t ns, int fraction_digits,
                                    char (&out)[32]) noexcept {
    std::int64_t secs = ns / 1'000'000'000;
    std::int64_t frac = ns % 1'000'000'000;
    if (frac < 0) frac += 1'000'000'000, --secs;
    std::int64_t days = secs / 86400;
    std::int64_t sod = secs % 86400;
    if (sod < 0) sod += 86400, --days;
    // Civil date from days since 1970-01-01 (H. Hinnant's days_from_civil inverse).
    const std::int64_t z = days + 719468;
    const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const std::int64_t doe = z - era * 146097;
    const std::int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const std::int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const std::int64_t mp = (5 * doy + 2) / 153;
    const std::int64_t d = doy - (153 * mp + 2) / 5 + 1;
    const std::int64_t m = mp < 10 ? mp + 3 : mp - 9;
    const std::int64_t y = yoe + era * 400 + (m <= 2);
    std::size_t n = 0;
    auto put = [&](std::int64_t v, int width) {
        for (int i = width - 1; i >= 0; --i, v /= 10)
            out[n + std::size_t(i)] = char('0' + v % 10);
        n += std::size_t(width);
    };
    put(y, 4);  // int64 nanoseconds span 1677..2262: always four digits
    put(m, 2);
    put(d, 2);
    put(sod / 3600, 2);
    put(sod / 60 % 60, 2);
    put(sod % 60, 2);
    std::int64_t f = frac;
    for (int i = fraction_digits; i < 9; ++i)
        f /= 10;
    int digits = fraction_digits;
    while (digits > 0 && f % 10 == 0)
        f /= 10, --digits;
    if (digits > 0) {
        out[n++] = '.';
        put(f, digits);
    }
    out[n++] = 'Z';
    return n;
}

}  // namespace tapwire::handover
