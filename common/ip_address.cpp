#include "common/ip_address.hpp"

#include <arpa/inet.h>

#include <cstring>

#include "common/bytes.hpp"

namespace tapwire {

IpAddress IpAddress::v4(const std::uint8_t* network_order) noexcept {
    IpAddress a;
    std::memcpy(a.bytes.data(), network_order, 4);
    a.family = IpFamily::V4;
    return a;
}

IpAddress IpAddress::v6(const std::uint8_t* network_order) noexcept {
    IpAddress a;
    std::memcpy(a.bytes.data(), network_order, 16);
    a.family = IpFamily::V6;
    return a;
}

IpAddress IpAddress::v4(std::uint32_t host_order) noexcept {
    std::uint8_t wire[4];
    store_be32(wire, host_order);
    return v4(wire);
}

std::uint32_t IpAddress::v4_host_order() const noexcept {
    return load_be32(bytes.data());
}

namespace {

// Strict dotted quad (RFC 3986 IPv4address): four decimal octets, no leading '+',
// no octal, each at most 255. Hand-written because it runs per SDP c= line.
std::optional<IpAddress> parse_v4(std::string_view s) noexcept {
    std::uint8_t out[4];
    std::size_t pos = 0;
    for (int part = 0; part < 4; ++part) {
        if (part > 0) {
            if (pos >= s.size() || s[pos] != '.') return std::nullopt;
            ++pos;
        }
        std::size_t start = pos;
        unsigned value = 0;
        while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9' && pos - start < 3) {
            value = value * 10 + unsigned(s[pos] - '0');
            ++pos;
        }
        std::size_t digits = pos - start;
        if (digits == 0 || value > 255 || (digits > 1 && s[start] == '0')) return std::nullopt;
        out[part] = std::uint8_t(value);
    }
    if (pos != s.size()) return std::nullopt;
    return IpAddress::v4(out);
}

}  // namespace

std::optional<IpAddress> IpAddress::parse(std::string_view text) noexcept {
    if (text.find(':') == std::string_view::npos) return parse_v4(text);
    char buf[INET6_ADDRSTRLEN];
    if (text.size() >= sizeof buf) return std::nullopt;
    std::memcpy(buf, text.data(), text.size());
    buf[text.size()] = '\0';
    std::uint8_t wire[16];
    if (inet_pton(AF_INET6, buf, wire) != 1) return std::nullopt;
    return v6(wire);
}

std::string IpAddress::to_string() const {
    char buf[INET6_ADDRSTRLEN] = "";
    if (is_v4()) inet_ntop(AF_INET, bytes.data(), buf, sizeof buf);
    if (is_v6()) inet_ntop(AF_INET6, bytes.data(), buf, sizeof buf);
    return buf;
}

}  // namespace tapwire
