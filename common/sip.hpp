// SIP message parsing (RFC 3261) and stream framing for SIP over TCP.
// Zero-copy: every string_view points into the caller's buffer, which must outlive the
// SipMessage. No heap, no exceptions: a hostile message yields a typed SipError.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "common/bounded_list.hpp"
#include "common/x_list.hpp"

namespace tapwire {

#define TAPWIRE_SIP_ERRORS(X)                                 \
    X(Ok, "ok")                                               \
    X(Empty, "empty")                                         \
    X(TooLarge, "too_large")                                  \
    X(LeadingWhitespace, "leading_whitespace")                \
    X(BadStartLine, "bad_start_line")                         \
    X(BadVersion, "bad_version")                              \
    X(BadStatusCode, "bad_status_code")                       \
    X(BadRequestUri, "bad_request_uri")                       \
    X(BadMethod, "bad_method")                                \
    X(BadHeaderLine, "bad_header_line")                       \
    X(TooManyHeaders, "too_many_headers")                     \
    X(HeadersUnterminated, "headers_unterminated")            \
    X(MissingCallId, "missing_call_id")                       \
    X(MissingCSeq, "missing_cseq")                            \
    X(BadCSeq, "bad_cseq")                                    \
    X(CSeqMethodMismatch, "cseq_method_mismatch")             \
    X(MissingFrom, "missing_from")                            \
    X(BadFrom, "bad_from")                                    \
    X(MissingTo, "missing_to")                                \
    X(BadTo, "bad_to")                                        \
    X(MissingVia, "missing_via")                              \
    X(BadNameAddr, "bad_name_addr")                           \
    X(DuplicateSingletonHeader, "duplicate_singleton_header") \
    X(BadContentLength, "bad_content_length")                 \
    X(BodyTruncated, "body_truncated")                        \
    X(MissingContentLength, "missing_content_length")

enum class SipError : std::uint8_t { TAPWIRE_SIP_ERRORS(TAPWIRE_X_ENUMERATOR) Count };

const char* to_string(SipError e) noexcept;

/// Methods the interception logic distinguishes; anything else is Other (still parsed).
enum class SipMethod : std::uint8_t {
    Other,
    Invite,
    Ack,
    Bye,
    Cancel,
    Register,
    Options,
    Prack,
    Subscribe,
    Notify,
    Publish,
    Info,
    Refer,
    Message,
    Update,
};

const char* to_string(SipMethod m) noexcept;
/// Case-sensitive per RFC 3261 section 7.1 (methods are case-sensitive tokens).
SipMethod parse_method(std::string_view token) noexcept;
/// Whether requests of this method belong to a call (an INVITE dialog and its transactions:
/// INVITE, ACK, BYE, CANCEL, PRACK, UPDATE, INFO, REFER), as opposed to REGISTER, MESSAGE,
/// OPTIONS, SUBSCRIBE/NOTIFY, PUBLISH and unknown methods.
bool is_call_method(SipMethod m) noexcept;

/// A name-addr or addr-spec header value (From, To, Contact, P-Asserted-Identity, ...):
/// `"Alice" <sip:alice@example.com>;tag=1928301774`.
struct NameAddr {
    std::string_view display_name;  // without quotes; empty when absent
    std::string_view uri;           // inside <>, or the bare addr-spec without header params
    std::string_view tag;           // the tag= parameter value, empty when absent
    std::string_view params;        // header parameters after the URI, starting at ';'
};

/// The parts of a SIP message that interception needs.
struct SipMessage {
    static constexpr std::size_t kMaxIdentities = 8;  // per multi-value identity header

    bool is_request = false;
    SipMethod method = SipMethod::Other;  // request method; for responses, the CSeq method
    std::string_view method_token;        // as written (requests), e.g. "INVITE"
    std::string_view request_uri;
    std::uint16_t status_code = 0;  // responses only
    std::string_view reason_phrase;

    std::string_view call_id;
    std::uint32_t cseq = 0;
    SipMethod cseq_method = SipMethod::Other;
    std::string_view cseq_method_token;

    NameAddr from;
    NameAddr to;
    std::string_view via_branch;  // branch of the topmost Via
    std::string_view top_via;     // the whole topmost Via value
    std::uint16_t via_count = 0;

    BoundedList<NameAddr, kMaxIdentities> contact;
    BoundedList<NameAddr, kMaxIdentities> p_asserted_identity;
    BoundedList<NameAddr, kMaxIdentities> p_preferred_identity;
    BoundedList<NameAddr, kMaxIdentities> remote_party_id;
    BoundedList<NameAddr, kMaxIdentities> diversion;
    BoundedList<NameAddr, kMaxIdentities> history_info;

    std::string_view content_type;  // media type only, without parameters, e.g. "application/sdp"
    std::int64_t content_length = -1;  // -1 when the header is absent
    std::string_view body;
    std::uint16_t header_count = 0;
    std::size_t length = 0;  // bytes consumed: start line + headers + body

    bool is_response() const noexcept { return !is_request; }
    bool has_sdp_body() const noexcept;
};

/// Limits that bound the work done on hostile input.
struct SipLimits {
    std::size_t max_message_bytes = 65535;  // largest UDP datagram / reassembled TCP message
    std::uint16_t max_headers = 256;
};

/// Parses one complete SIP message (a UDP datagram, or one framed by frame_sip_stream()).
/// Compact header forms, case-insensitive names, comma-separated values and obsolete
/// line folding (RFC 3261 section 7.3.1) are accepted. Without Content-Length the body runs
/// to the end of the input (datagram rule, section 18.3).
SipError parse_sip(std::string_view text, SipMessage& out, const SipLimits& limits = {}) noexcept;

enum class SipFrameStatus : std::uint8_t { Complete, NeedMore, Invalid };

struct SipFrame {
    SipFrameStatus status = SipFrameStatus::NeedMore;
    std::size_t length = 0;         // Complete: bytes of the first message in the buffer
    std::size_t skip = 0;           // CRLF keep-alives before the message (RFC 5626 section 3.5.1)
    SipError error = SipError::Ok;  // Invalid: why
};

/// Finds the first whole message in a stream buffer (SIP over TCP, RFC 3261 section 18.3):
/// headers up to the blank line, then Content-Length bytes of body. NeedMore means the
/// buffer holds only part of a message; Invalid means the stream cannot be framed (no
/// or bad Content-Length, or a message larger than the limit) and must be reset.
SipFrame frame_sip_stream(std::string_view buffered, const SipLimits& limits = {}) noexcept;

/// True when the text plausibly starts a SIP message: "SIP/2.0 " or a method token then
/// a space, checked on the first bytes only. The cheap first-line test for classification.
bool looks_like_sip(std::string_view text) noexcept;

/// True for a keep-alive, which is not a SIP message: CRLF (RFC 5626 section 3.5.1), or the
/// runs of spaces or NULs that some UAs send to hold NAT bindings open. Empty is not one.
bool is_sip_keepalive(std::string_view payload) noexcept;

}  // namespace tapwire
