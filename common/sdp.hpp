// SDP parsing (RFC 8866, formerly 4566) for media-flow learning: where RTP and RTCP of a
// call will flow. Zero-copy and allocation-free; bad SDP is reported, never fatal.
#pragma once

#include <cstdint>
#include <string_view>

#include "common/bounded_list.hpp"
#include "common/ip_address.hpp"
#include "common/x_list.hpp"

namespace tapwire {

#define TAPWIRE_SDP_ERRORS(X)                 \
    X(Ok, "ok")                               \
    X(Empty, "empty")                         \
    X(BadVersion, "bad_version")              \
    X(BadLine, "bad_line")                    \
    X(BadOrigin, "bad_origin")                \
    X(BadConnection, "bad_connection")        \
    X(BadMedia, "bad_media")                  \
    X(BadRtcpAttribute, "bad_rtcp_attribute") \
    X(TooManyMedia, "too_many_media")         \
    X(MissingConnection, "missing_connection")

enum class SdpError : std::uint8_t { TAPWIRE_SDP_ERRORS(TAPWIRE_X_ENUMERATOR) Count };

const char* to_string(SdpError e) noexcept;

/// RFC 8866 section 6.7 direction attributes; session level applies unless a media
/// section overrides it.
enum class SdpDirection : std::uint8_t { SendRecv, SendOnly, RecvOnly, Inactive };

const char* to_string(SdpDirection d) noexcept;

/// One m= section with its effective connection address (media c= or else session c=).
struct SdpMedia {
    std::string_view media;        // "audio", "video", "image", ...
    std::string_view proto;        // "RTP/AVP", "RTP/SAVP", "udptl", ...
    std::uint16_t port = 0;        // 0: stream disabled or rejected (RFC 3264 section 5.1)
    std::uint16_t port_count = 1;  // m=audio 49170/2 gives 2
    IpAddress address;             // effective c= address; empty when none applies
    // RTCP (RFC 3605 a=rtcp, RFC 5761 a=rtcp-mux). rtcp_port is the effective port:
    // the a=rtcp value, else port+1; with rtcp-mux RTCP shares the RTP port.
    std::uint16_t rtcp_port = 0;
    IpAddress rtcp_address;  // a=rtcp address when given, else address
    bool has_rtcp_attribute = false;
    bool rtcp_mux = false;
    SdpDirection direction = SdpDirection::SendRecv;
};

struct SdpSession {
    static constexpr std::size_t kMaxMedia = 8;

    // o=<username> <sess-id> <sess-version> <nettype> <addrtype> <unicast-address>
    std::string_view origin_username;
    std::string_view session_id;
    std::string_view session_version;
    IpAddress origin_address;

    IpAddress connection;  // session-level c=, empty when absent
    SdpDirection direction = SdpDirection::SendRecv;
    BoundedList<SdpMedia, kMaxMedia> media;
};

/// Parses an SDP body. Lines may end in CRLF or LF. Returns the first error met; the
/// session holds what was parsed up to then. A media section without any applicable c=
/// yields MissingConnection (RFC 8866 section 5.7) after everything else was parsed.
SdpError parse_sdp(std::string_view body, SdpSession& out) noexcept;

}  // namespace tapwire
