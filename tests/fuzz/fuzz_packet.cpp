// libFuzzer target for the L2-L4 parser: the same bytes go to parse_frame and parse_ip, and
// every range the parser reports must lie inside the input (abort otherwise), so a bad
// offset is a finding even when ASan sees no out-of-bounds read.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "common/packet.hpp"

namespace {

void require(bool ok, const char* what) {
    if (!ok) {
        std::fprintf(stderr, "fuzz_packet: invariant violated: %s\n", what);
        std::abort();
    }
}

void check(tapwire::PacketError e, const tapwire::PacketInfo& info, std::size_t size) {
    using tapwire::IpFamily;
    using tapwire::PacketError;
    require(static_cast<std::size_t>(e) < static_cast<std::size_t>(PacketError::Count),
            "error in range");
    require(std::size_t(info.l3_offset) + info.l3_length <= size, "l3 within input");
    require(std::size_t(info.ip_payload_offset) + info.ip_payload_length <= size,
            "ip payload within input");
    require(std::size_t(info.payload_offset) + info.payload_length <= size, "payload within input");
    require(info.vlan_count <= tapwire::PacketInfo::kMaxVlanTags, "vlan count");
    if (info.ip_family != IpFamily::None) {
        require(info.src_ip.family == info.ip_family && info.dst_ip.family == info.ip_family,
                "address family");
    }
    if (e == PacketError::Ok && info.ip_family != IpFamily::None) {
        require(info.ip_payload_offset >= info.l3_offset, "ip payload after l3 start");
        require(std::size_t(info.ip_payload_offset) + info.ip_payload_length ==
                    std::size_t(info.l3_offset) + info.l3_length,
                "ip payload ends with the datagram");
    }
    if (info.has_l4) {
        require(e == PacketError::Ok, "l4 only on success");
        require(info.ip_family != IpFamily::None, "l4 needs ip");
        require(info.l4_offset == info.ip_payload_offset, "l4 at ip payload");
        require(info.payload_offset >= info.l4_offset + 8, "payload after l4 header");
        require(std::size_t(info.payload_offset) + info.payload_length <=
                    std::size_t(info.ip_payload_offset) + info.ip_payload_length,
                "payload within ip payload");
        require(!info.is_fragment || info.fragment_offset == 0, "l4 only in first fragment");
    } else {
        require(info.payload_length == 0, "no payload without l4");
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const tapwire::ByteSpan bytes(data, size);
    tapwire::PacketInfo info;
    check(tapwire::parse_frame(bytes, info), info, size);
    if (info.has_l4) {
        // Touch every payload byte so ASan sees any range error directly.
        const tapwire::ByteSpan payload = tapwire::payload_of(bytes, info);
        volatile std::uint8_t sink = 0;
        for (std::uint8_t b : payload)
            sink = sink ^ b;
    }
    check(tapwire::parse_ip(bytes, info), info, size);
    if (info.has_l4) {
        const tapwire::ByteSpan payload = tapwire::payload_of(bytes, info);
        volatile std::uint8_t sink = 0;
        for (std::uint8_t b : payload)
            sink = sink ^ b;
    }
    return 0;
}
