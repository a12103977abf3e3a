// libFuzzer target for parse_sdp: any input must give a typed result, never a crash, and
// every view in the result must lie inside the input.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "common/sdp.hpp"

namespace {

void check_inside(std::string_view input, std::string_view v) {
    if (v.empty()) return;
    if (v.data() < input.data() || v.data() + v.size() > input.data() + input.size()) abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace tapwire;
    std::string_view input(reinterpret_cast<const char*>(data), size);
    static SdpSession session;  // reused, as the dataplane does
    SdpError e = parse_sdp(input, session);
    if (std::size_t(e) >= std::size_t(SdpError::Count)) abort();
    if (session.media.size() > SdpSession::kMaxMedia) abort();
    if (e != SdpError::TooManyMedia && session.media.overflowed()) abort();
    check_inside(input, session.origin_username);
    check_inside(input, session.session_id);
    check_inside(input, session.session_version);
    for (const SdpMedia& m : session.media) {
        check_inside(input, m.media);
        check_inside(input, m.proto);
        if (m.rtcp_mux && m.rtcp_port != m.port) abort();
        if (e == SdpError::Ok && m.port != 0 && m.address.empty()) abort();
        if (!m.address.empty() && m.rtcp_address.empty()) abort();
    }
    return 0;
}
