// IPv4 and IPv6 addresses in one value type, shared by the packet and SDP parsers,
// flow tables and target prefixes.
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace tapwire {

enum class IpFamily : std::uint8_t { None = 0, V4 = 4, V6 = 6 };

/// An IP address in network byte order. IPv4 uses the first 4 bytes; the rest are zero,
/// so two addresses compare equal exactly when family and bytes are equal.
struct IpAddress {
    std::array<std::uint8_t, 16> bytes{};
    IpFamily family = IpFamily::None;

    static IpAddress v4(const std::uint8_t* network_order) noexcept;
    static IpAddress v6(const std::uint8_t* network_order) noexcept;
    /// IPv4 from a host-order integer, e.g. v4(0x0a000001) is 10.0.0.1.
    static IpAddress v4(std::uint32_t host_order) noexcept;

    /// Parses dotted-quad IPv4 or RFC 4291 IPv6 text (no brackets, no zone).
    static std::optional<IpAddress> parse(std::string_view text) noexcept;

    bool is_v4() const noexcept { return family == IpFamily::V4; }
    bool is_v6() const noexcept { return family == IpFamily::V6; }
    bool empty() const noexcept { return family == IpFamily::None; }
    std::uint32_t v4_host_order() const noexcept;
    std::size_t length() const noexcept { return is_v4() ? 4 : is_v6() ? 16 : 0; }

    std::string to_string() const;

    friend auto operator<=>(const IpAddress&, const IpAddress&) = default;
};

}  // namespace tapwire
