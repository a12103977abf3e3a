// libFuzzer target for parse_sip, frame_sip_stream and looks_like_sip: any input must give a
// typed result, never a crash, every view in the result must lie inside the input, and the
// framer and the parser must agree on what a complete message is.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "common/sip.hpp"

namespace {

using namespace tapwire;

void check_inside(std::string_view input, std::string_view v) {
    if (v.empty()) return;
    if (v.data() < input.data() || v.data() + v.size() > input.data() + input.size()) abort();
}

void check_name_addr(std::string_view input, const NameAddr& a) {
    check_inside(input, a.display_name);
    check_inside(input, a.uri);
    check_inside(input, a.tag);
    check_inside(input, a.params);
}

template <class List>
void check_list(std::string_view input, const List& list) {
    if (list.size() > List::capacity || list.seen() < list.size()) abort();
    for (const NameAddr& a : list)
        check_name_addr(input, a);
}

void check_message(std::string_view input, SipError e, const SipMessage& m) {
    if (std::size_t(e) >= std::size_t(SipError::Count)) abort();
    check_inside(input, m.method_token);
    check_inside(input, m.request_uri);
    check_inside(input, m.reason_phrase);
    check_inside(input, m.call_id);
    check_inside(input, m.cseq_method_token);
    check_name_addr(input, m.from);
    check_name_addr(input, m.to);
    check_inside(input, m.via_branch);
    check_inside(input, m.top_via);
    check_inside(input, m.content_type);
    check_inside(input, m.body);
    check_list(input, m.contact);
    check_list(input, m.p_asserted_identity);
    check_list(input, m.p_preferred_identity);
    check_list(input, m.remote_party_id);
    check_list(input, m.diversion);
    check_list(input, m.history_info);
    if (e != SipError::Ok) return;
    // A parsed message is self-consistent.
    if (m.length > input.size() || m.length == 0) abort();
    if (m.body.data() + m.body.size() != input.data() + m.length) abort();
    if (m.content_length >= 0 && std::size_t(m.content_length) != m.body.size()) abort();
    if (m.call_id.empty() || m.via_count == 0 || m.top_via.empty()) abort();
    if (m.is_request == (m.status_code != 0)) abort();
    if (!m.is_request && (m.status_code < 100 || m.status_code > 699)) abort();
    if (m.is_request && m.cseq_method_token != m.method_token) abort();
    if (m.cseq > 0x7FFFFFFFu) abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view input(reinterpret_cast<const char*>(data), size);
    static SipMessage msg;  // reused, as the dataplane does

    SipError e = parse_sip(input, msg);
    check_message(input, e, msg);

    // Small limits reach the TooLarge and TooManyHeaders paths with short inputs.
    SipLimits small;
    small.max_message_bytes = 512;
    small.max_headers = 8;
    e = parse_sip(input, msg, small);
    check_message(input, e, msg);
    if (e == SipError::Ok && (msg.length > 512 || msg.header_count > 8)) abort();

    for (const SipLimits& limits : {SipLimits{}, small}) {
        const SipFrame f = frame_sip_stream(input, limits);
        if (f.skip > size) abort();
        if (f.status == SipFrameStatus::Complete) {
            if (f.length == 0 || f.skip + f.length > size) abort();
            if (f.length > limits.max_message_bytes) abort();
            // A framed message parses to exactly its frame, or fails for a reason other than
            // its length.
            const std::string_view framed = input.substr(f.skip, f.length);
            const SipError pe = parse_sip(framed, msg, limits);
            check_message(framed, pe, msg);
            if (pe == SipError::Ok && msg.length != f.length) abort();
            if (pe == SipError::BodyTruncated || pe == SipError::TooLarge) abort();
        } else if (f.status == SipFrameStatus::Invalid) {
            if (f.error == SipError::Ok) abort();
        } else if (f.length != 0) {
            abort();
        }
    }

    (void)looks_like_sip(input);
    return 0;
}
