// CALEA (J-STD-025 model) CDC in PacketCable PCESP version-4 BER, and the CCC framing.
// See calea.hpp for the mapping and what the module cannot carry.
#include "handover/calea.hpp"

#include <algorithm>
#include <cstring>
#include <string_view>

#include "common/sip.hpp"
#include "common/text.hpp"
#include "handover/ber.hpp"
#include "handover/generalized_time.hpp"

namespace tapwire::handover {

const char* to_string(CdcMessage m) noexcept {
    switch (m) {
        case CdcMessage::Answer:
            return "answer";
        case CdcMessage::CCClose:
            return "ccclose";
        case CdcMessage::CCOpen:
            return "ccopen";
        case CdcMessage::Origination:
            return "origination";
        case CdcMessage::Redirection:
            return "redirection";
        case CdcMessage::Release:
            return "release";
        case CdcMessage::TerminationAttempt:
            return "terminationattempt";
        case CdcMessage::CCChange:
            return "ccchange";
        case CdcMessage::NetworkSignal:
            return "networksignal";
        case CdcMessage::SubjectSignal:
            return "subjectsignal";
        case CdcMessage::MediaReport:
            return "mediareport";
        case CdcMessage::ServiceInstance:
            return "serviceinstance";
    }
    return "unknown";
}

std::size_t CaleaEncoder::encode_cc(const PreparedWarrant&, const CcRecord& record,
                                    std::span<std::uint8_t> out) const noexcept {
    const std::size_t n = record.ip_packet.size();
    // The length field must stay below 2^24 so the first octet is 0x00 (CDC starts 0x30).
    if (n > 0xFFFFFF - 4 || out.size() < kCccHeaderSize + n) return 0;
    store_be32(out.data(), std::uint32_t(4 + n));
    store_be32(out.data() + 4, calea_ccc_id(record.header.cin));
    if (n) std::memcpy(out.data() + kCccHeaderSize, record.ip_packet.data(), n);
    return kCccHeaderSize + n;
}

namespace {

// PCESP root sizes (SIZE(lo..hi, ...)): values are kept inside them, see calea.hpp.
constexpr std::size_t kCaseIdMax = 25;
constexpr std::size_t kElementIdMax = 15;
constexpr std::size_t kDnMax = 15;
constexpr std::size_t kAddressMax = 32;        // PartyId.genericAddress, Origination.userinput
constexpr std::size_t kNameMax = 48;           // PartyId.genericName
constexpr std::size_t kSignalMax = 128;        // serviceName, other, otherSignalingInformation
constexpr std::uint64_t kProtocolVersion = 4;  // ProtocolVersion v4
constexpr std::uint64_t kBothDirections = 3;   // FlowDirection downstream-and-upstream

constexpr BerTag ctx(std::uint32_t n) noexcept {
    return BerTag::context(n);
}
constexpr BerTag cons(std::uint32_t n) noexcept {
    return BerTag::context(n, true);
}

bool is_visible(std::string_view s) noexcept {
    for (const char c : s)
        if (c < 0x20 || c > 0x7E) return false;
    return true;
}

std::uint64_t fnv1a(std::string_view s) noexcept {
    std::uint64_t h = 0xcbf29ce484222325ull;
    for (const char c : s)
        h = (h ^ std::uint8_t(c)) * 0x100000001b3ull;
    return h;
}

/// Drops a leading "sip:" or "sips:" (any case); false when `uri` has neither.
bool strip_sip_scheme(std::string_view& uri) noexcept {
    for (const std::string_view scheme : {"sips:", "sip:"}) {
        if (istarts_with(uri, scheme)) {
            uri.remove_prefix(scheme.size());
            return true;
        }
    }
    return false;
}

/// The URI without its sip:/sips: scheme and without parameters and headers: "user@host".
std::string_view address_core(std::string_view uri) noexcept {
    strip_sip_scheme(uri);
    const std::size_t at = uri.find('@');
    const std::size_t cut = uri.find_first_of(";?", at == std::string_view::npos ? 0 : at);
    return uri.substr(0, cut);
}

/// The digits of a telephone-number user part (RFC 3966 global or local number with visual
/// separators), or 0 when the URI's user part is not one or has more than kDnMax digits.
std::size_t telephone_digits(std::string_view uri, char (&digits)[kDnMax]) noexcept {
    std::string_view user;
    if (istarts_with(uri, "tel:")) {
        user = uri.substr(4);
        user = user.substr(0, user.find_first_of(";?"));
    } else {
        if (!strip_sip_scheme(uri)) return 0;
        const std::size_t at = uri.find('@');
        if (at == std::string_view::npos) return 0;
        user = uri.substr(0, at);
        user = user.substr(0, user.find(';'));  // user parameters (e.g. ;npdi)
    }
    if (!user.empty() && user.front() == '+') user.remove_prefix(1);
    std::size_t n = 0;
    for (const char c : user) {
        if (c >= '0' && c <= '9') {
            if (n == kDnMax) return 0;
            digits[n++] = c;
        } else if (c != '-' && c != '.' && c != '(' && c != ')') {
            return 0;
        }
    }
    return n;
}

/// The bytes the writer put in front most recently: the caller's buffer, so writable.
std::uint8_t* front(const BerWriter& w) noexcept {
    return const_cast<std::uint8_t*>(w.bytes().data());
}

/// VisibleString, cut to `max` and with characters outside it replaced by '?'.
void visible(BerWriter& w, BerTag t, std::string_view s, std::size_t max) noexcept {
    if (s.size() > max) s = s.substr(0, max);
    w.raw(s);
    if (!w.ok()) return;
    std::uint8_t* p = front(w);
    for (std::size_t i = 0; i < s.size(); ++i)
        if (p[i] < 0x20 || p[i] > 0x7E) p[i] = '?';
    w.length(s.size());
    w.tag(t);
}

/// Replaces each octet that does not start a well-formed UTF-8 sequence (RFC 3629: no
/// overlong forms, no surrogates, nothing above U+10FFFF) with '?', in place.
void repair_utf8(std::uint8_t* p, std::size_t n) noexcept {
    std::size_t i = 0;
    while (i < n) {
        const std::uint8_t c = p[i];
        if (c < 0x80) {
            ++i;
            continue;
        }
        std::size_t len = 0;
        std::uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the second octet
        if (c >= 0xC2 && c <= 0xDF) {
            len = 2;
        } else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            if (c == 0xE0) lo = 0xA0;
            if (c == 0xED) hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            if (c == 0xF0) lo = 0x90;
            if (c == 0xF4) hi = 0x8F;
        }
        bool good = len != 0 && i + len <= n && p[i + 1] >= lo && p[i + 1] <= hi;
        for (std::size_t k = 2; good && k < len; ++k)
            good = (p[i + k] & 0xC0) == 0x80;
        if (good) {
            i += len;
        } else {
            p[i++] = '?';
        }
    }
}

/// SDP ::= UTF8String.
void sdp(BerWriter& w, BerTag t, std::string_view body) noexcept {
    w.raw(body);
    if (!w.ok()) return;
    repair_utf8(front(w), body.size());
    w.length(body.size());
    w.tag(t);
}

struct Prepared final : PreparedWarrant {
    std::string case_id;     // [0] CaseId, encoded
    std::string element_id;  // [1] AccessingElementId, encoded; also CallId.systemidentity [1]
    int fraction_digits = 3;
};

/// The state a record is planned against: a Begin starts the call afresh.
CaleaCall effective_state(IriType type, const CaleaCall* call) noexcept {
    CaleaCall s = call ? *call : CaleaCall{};
    if (type == IriType::Begin) {
        const bool target_is_caller = s.target_is_caller;
        s = CaleaCall{};
        s.target_is_caller = target_is_caller;
    }
    return s;
}

/// Whether the caller's side started this message's transaction (so From is the caller):
/// known from the caller's From tag once a Begin was seen, else assumed.
bool transaction_from_caller(const SipMessage* m, const CaleaCall& s) noexcept {
    return !m || !s.begun || fnv1a(m->from.tag) == s.caller_tag;
}

bool sent_by_target(const SipMessage* m, const CaleaCall& s) noexcept {
    if (!m) return false;
    const bool txn = transaction_from_caller(m, s);
    const bool from_caller_side = m->is_request ? txn : !txn;
    return from_caller_side == s.target_is_caller;
}

void push(CdcPlan& plan, CdcMessage m) noexcept {
    if (plan.count < plan.messages.size()) plan.messages[plan.count++] = m;
}

void plan_continue(CdcPlan& plan, const SipMessage& m, const CaleaCall& s) noexcept {
    if (m.is_response() && ((m.status_code >= 300 && m.status_code < 400) || m.status_code == 181))
        push(plan, CdcMessage::Redirection);
    if (m.is_response() && m.status_code >= 200 && m.status_code < 300 &&
        m.cseq_method == SipMethod::Invite && !s.answered)
        push(plan, CdcMessage::Answer);
    if (m.has_sdp_body()) {
        if (m.is_request && m.method != SipMethod::Ack)
            push(plan, CdcMessage::MediaReport);  // an offer: media not yet agreed
        else
            push(plan, s.media_open ? CdcMessage::CCChange : CdcMessage::CCOpen);
    }
}

CdcPlan plan_for(IriType type, const SipMessage* m, const CaleaCall& s) noexcept {
    CdcPlan plan;
    const bool invite_dialog = m && is_call_method(m->is_request ? m->method : m->cseq_method);
    switch (type) {
        case IriType::Begin:
            if (m && !invite_dialog) {
                push(plan, CdcMessage::ServiceInstance);
                break;
            }
            push(plan,
                 s.target_is_caller ? CdcMessage::Origination : CdcMessage::TerminationAttempt);
            if (m) plan_continue(plan, *m, s);
            // Interception joined a call already under way (a warrant activated mid-call):
            // its media may be flowing, so the CCC is opened now, without SDP if this message
            // has none, or the LEMF could not tie the content to the call.
            if (m && !(m->is_request && m->method == SipMethod::Invite && m->to.tag.empty()) &&
                std::find(plan.messages.begin(), plan.messages.begin() + plan.count,
                          CdcMessage::CCOpen) == plan.messages.begin() + plan.count)
                push(plan, CdcMessage::CCOpen);
            break;
        case IriType::Continue:
            if (m && !invite_dialog) {
                push(plan, CdcMessage::ServiceInstance);
                break;
            }
            if (m) plan_continue(plan, *m, s);
            if (plan.count == 0)
                push(plan,
                     sent_by_target(m, s) ? CdcMessage::SubjectSignal : CdcMessage::NetworkSignal);
            break;
        case IriType::End:
            if (m && m->is_response() && m->status_code >= 300 && m->status_code < 400)
                push(plan, CdcMessage::Redirection);
            if (s.media_open) push(plan, CdcMessage::CCClose);
            push(plan, CdcMessage::Release);
            break;
        default:
            push(plan, CdcMessage::ServiceInstance);
            break;
    }
    return plan;
}

/// Everything one record's messages are written from.
struct View {
    const Prepared& warrant;
    const SipMessage* m;  // null when the record's SIP did not parse (or is empty)
    const CaleaCall& s;
    std::string_view start_line;
    char time[32];
    std::size_t time_len = 0;
    char cin[20];
    std::size_t cin_len = 0;
    char ccc[8];

    bool txn_from_caller() const noexcept { return transaction_from_caller(m, s); }
    const NameAddr* caller() const noexcept {
        return m ? (txn_from_caller() ? &m->from : &m->to) : nullptr;
    }
    const NameAddr* callee() const noexcept {
        return m ? (txn_from_caller() ? &m->to : &m->from) : nullptr;
    }
    const NameAddr* target() const noexcept { return s.target_is_caller ? caller() : callee(); }
};

/// CallId ::= SEQUENCE { sequencenumber [0] (the CIN), systemidentity [1] (the element id) }.
void call_id(BerWriter& w, const View& v, BerTag t) noexcept {
    const std::size_t end = w.size();
    w.raw(v.warrant.element_id);
    w.octets(ctx(0), std::string_view(v.cin, v.cin_len));
    w.close(t, end);
}

/// The fields every message starts with: caseId [0], accessingElementId [1], eventTime [2],
/// and (most messages) callId [3].
void head(BerWriter& w, const View& v, bool with_call_id) noexcept {
    if (with_call_id) call_id(w, v, cons(3));
    w.octets(ctx(2), std::string_view(v.time, v.time_len));
    w.raw(v.warrant.element_id);
    w.raw(v.warrant.case_id);
}

/// PartyId: dn [6] (a telephone number), genericAddress [14] (the URI's core), genericName
/// [16] (the display name). An unknown party is the empty SEQUENCE (all fields optional).
void party(BerWriter& w, BerTag t, const NameAddr* a) noexcept {
    const std::size_t end = w.size();
    if (a) {
        if (!a->display_name.empty()) visible(w, ctx(16), a->display_name, kNameMax);
        const std::string_view core = address_core(a->uri);
        if (!core.empty()) visible(w, ctx(14), core, kAddressMax);
        char digits[kDnMax];
        const std::size_t n = telephone_digits(a->uri, digits);
        if (n) w.octets(ctx(6), std::string_view(digits, n));
    }
    w.close(t, end);
}

/// cCCId [n] EXPLICIT CCCId: combCCC [0], the CCCID in 8 hex digits (PCESP CCCId comment).
void ccc_id(BerWriter& w, const View& v, BerTag t) noexcept {
    const std::size_t end = w.size();
    w.octets(ctx(0), std::string_view(v.ccc, sizeof v.ccc));
    w.close(t, end);
}

void null(BerWriter& w, BerTag t) noexcept {
    w.octets(t, ByteSpan{});
}

/// subject (the target's side sent this SDP) or associate (the other side).
void sdp_field(BerWriter& w, const View& v, std::uint32_t subject_tag) noexcept {
    if (v.m == nullptr || !v.m->has_sdp_body()) return;  // OPTIONAL: a CCOpen on joining
    const bool subject = sent_by_target(v.m, v.s);
    sdp(w, ctx(subject ? subject_tag : subject_tag + 1), v.m->body);
}

std::string_view signal_text(const View& v) noexcept {
    return v.start_line.empty() ? std::string_view("unknown") : v.start_line;
}

/// The components Origination and TerminationAttempt begin with, written last: head() with
/// callId [3], calling [4] (the caller's P-Asserted-Identity when the caller sent the
/// request, RFC 3325), called [5].
void call_parties(BerWriter& w, const View& v) noexcept {
    const SipMessage* m = v.m;
    party(w, cons(5), v.callee());
    const NameAddr* calling = v.caller();
    if (m && m->is_request && v.txn_from_caller() && !m->p_asserted_identity.empty())
        calling = &m->p_asserted_identity.front();
    party(w, cons(4), calling);
    head(w, v, true);
}

/// One message's SEQUENCE content, last component first; the caller adds the CHOICE tag.
void message_body(BerWriter& w, CdcMessage kind, const View& v) noexcept {
    const SipMessage* m = v.m;
    switch (kind) {
        case CdcMessage::Origination: {
            null(w, ctx(8));  // reserved0 [8] NULL (not OPTIONAL)
            std::string_view dialed;
            if (m)
                dialed = address_core(m->is_request && v.txn_from_caller() ? m->request_uri
                                                                           : v.callee()->uri);
            visible(w, ctx(6), dialed.empty() ? "unknown" : dialed, kAddressMax);  // userinput
            call_parties(w, v);
            break;
        }
        case CdcMessage::TerminationAttempt: {
            if (m && !m->diversion.empty()) {
                // Diversion (RFC 5806): the top value is the last redirection, the bottom one
                // names the originally called party.
                const std::size_t end = w.size();
                const std::size_t seen = m->diversion.seen();
                w.integer(ctx(2), seen > 100 ? 100 : seen);  // numRedirections INTEGER (1..100)
                party(w, cons(1), &m->diversion[m->diversion.size() - 1]);
                party(w, cons(0), &m->diversion.front());
                w.close(cons(7), end);  // redirectedFromInfo
            }
            null(w, ctx(6));  // reserved0 [6] NULL (not OPTIONAL)
            call_parties(w, v);
            break;
        }
        case CdcMessage::Answer: {
            const NameAddr* answering = v.callee();
            if (m && m->is_response() && !m->p_asserted_identity.empty())
                answering = &m->p_asserted_identity.front();
            party(w, cons(4), answering);
            head(w, v, true);
            break;
        }
        case CdcMessage::CCOpen: {
            w.integer(ctx(8), kBothDirections);
            sdp_field(w, v, 6);  // subject [6] / associate [7]
            ccc_id(w, v, cons(5));
            const std::size_t end = w.size();  // ccOpenTime [3] SEQUENCE OF CallId
            call_id(w, v, ber::kSequence);
            w.close(cons(3), end);
            head(w, v, false);
            break;
        }
        case CdcMessage::CCChange:
            w.integer(ctx(7), kBothDirections);
            sdp_field(w, v, 5);  // subject [5] / associate [6]
            ccc_id(w, v, cons(4));
            head(w, v, true);
            break;
        case CdcMessage::CCClose:
            w.integer(ctx(4), kBothDirections);
            ccc_id(w, v, cons(3));
            head(w, v, false);
            break;
        case CdcMessage::Release:
            head(w, v, true);
            break;
        case CdcMessage::Redirection: {
            party(w, cons(9), v.callee());  // redirectedfrom: the party that redirected
            null(w, ctx(7));                // reserved1 [7], reserved0 [6]: NULL, not OPTIONAL
            null(w, ctx(6));
            const NameAddr* to = v.callee();
            if (m && !m->contact.empty()) to = &m->contact.front();
            party(w, cons(4), to);  // redirectedto
            head(w, v, true);       // old [3] CallId
            break;
        }
        case CdcMessage::ServiceInstance:
            party(w, cons(9), m ? &m->from : nullptr);  // calling
            party(w, cons(8), m ? &m->to : nullptr);    // called
            visible(w, ctx(5), signal_text(v), kSignalMax);
            head(w, v, true);
            break;
        case CdcMessage::MediaReport:
            sdp_field(w, v, 4);  // subject [4] / associate [5]
            head(w, v, true);
            break;
        case CdcMessage::SubjectSignal: {
            party(w, cons(5), v.target());  // signaledFromPartyId
            const std::size_t end = w.size();
            visible(w, ctx(3), signal_text(v), kSignalMax);  // otherSignalingInformation
            w.close(cons(4), end);                           // signal
            head(w, v, true);
            break;
        }
        case CdcMessage::NetworkSignal:
            party(w, cons(8), v.target());                   // signaledToPartyId
            visible(w, ctx(7), signal_text(v), kSignalMax);  // other
            head(w, v, true);
            break;
    }
}

/// CdcPdu ::= SEQUENCE { protocolVersion [0] v4, message [1] Message (a CHOICE: explicit) }.
void cdc_pdu(BerWriter& w, CdcMessage kind, const View& v) noexcept {
    const std::size_t end = w.size();
    message_body(w, kind, v);
    w.close(cons(std::uint32_t(kind)), end);
    w.close(cons(1), end);
    w.integer(ctx(0), kProtocolVersion);
    w.close(ber::kSequence, end);
}

/// The record's SIP message parsed into `msg`; nullptr when it is empty or does not parse.
const SipMessage* parsed_sip(const IriRecord& record, SipMessage& msg) noexcept {
    if (record.sip_message.empty() || parse_sip(as_text(record.sip_message), msg) != SipError::Ok)
        return nullptr;
    return &msg;
}

std::string_view first_line(ByteSpan sip) noexcept {
    const std::string_view text = as_text(sip);
    return text.substr(0, text.find_first_of("\r\n"));
}

class PcespEncoder final : public CaleaEncoder {
  public:
    const char* name() const noexcept override { return "calea-pcesp"; }

    std::unique_ptr<PreparedWarrant> prepare(const WarrantContext& c,
                                             std::string& error) const override {
        const auto check = [&](const std::string& value, const char* field, std::size_t max,
                               const char* type) {
            if (value.empty() || value.size() > max) {
                error = std::string(field) + ": must be 1.." + std::to_string(max) +
                        " characters (PCESP " + type + "), is " + std::to_string(value.size());
                return false;
            }
            if (!is_visible(value)) {
                error = std::string(field) + ": has a character outside VisibleString (PCESP " +
                        type + ")";
                return false;
            }
            return true;
        };
        if (!check(c.liid, "liid", kCaseIdMax, "CaseId")) return nullptr;
        const bool element = !c.network_element_identifier.empty();
        if (!element && c.operator_identifier.empty()) {
            error =
                "network_element_identifier: empty, and operator_identifier (its fallback) "
                "too: one is needed as PCESP AccessingElementId";
            return nullptr;
        }
        const std::string& id = element ? c.network_element_identifier : c.operator_identifier;
        if (!check(id, element ? "network_element_identifier" : "operator_identifier",
                   kElementIdMax, "AccessingElementId"))
            return nullptr;

        auto p = std::make_unique<Prepared>();
        p->fraction_digits = c.microsecond_timestamps ? 6 : 3;
        std::uint8_t buffer[64];
        BerWriter a(buffer);
        a.octets(ctx(0), c.liid);
        p->case_id.assign(reinterpret_cast<const char*>(a.bytes().data()), a.size());
        BerWriter b(buffer);
        b.octets(ctx(1), id);
        p->element_id.assign(reinterpret_cast<const char*>(b.bytes().data()), b.size());
        return p;
    }

    std::size_t encode_iri(const PreparedWarrant& warrant, const IriRecord& record,
                           std::span<std::uint8_t> out) const noexcept override {
        return encode(static_cast<const Prepared&>(warrant), record, nullptr, out);
    }

    std::size_t encode_iri(const PreparedWarrant& warrant, const IriRecord& record, CaleaCall& call,
                           std::span<std::uint8_t> out) const noexcept override {
        return encode(static_cast<const Prepared&>(warrant), record, &call, out);
    }

    std::size_t encode_cc_open(const PreparedWarrant& warrant, const RecordHeader& header,
                               CaleaCall& call,
                               std::span<std::uint8_t> out) const noexcept override {
        IriRecord record;  // no SIP message: a CCOpen without SDP
        record.header = header;
        record.type = IriType::Continue;
        CdcPlan plan;
        push(plan, CdcMessage::CCOpen);
        return encode_plan(static_cast<const Prepared&>(warrant), record, nullptr, call, plan,
                           &call, out);
    }

  private:
    static std::size_t encode(const Prepared& warrant, const IriRecord& record, CaleaCall* call,
                              std::span<std::uint8_t> out) noexcept {
        SipMessage msg;
        const SipMessage* m = parsed_sip(record, msg);
        const CaleaCall s = effective_state(record.type, call);
        return encode_plan(warrant, record, m, s, plan_for(record.type, m, s), call, out);
    }

    static std::size_t encode_plan(const Prepared& warrant, const IriRecord& record,
                                   const SipMessage* m, const CaleaCall& s, const CdcPlan& plan,
                                   CaleaCall* call, std::span<std::uint8_t> out) noexcept {
        View v{warrant, m, s, first_line(record.sip_message), {}, 0, {}, 0, {}};
        v.time_len = generalized_time(record.header.timestamp_ns, warrant.fraction_digits, v.time);
        std::uint64_t cin = record.header.cin;
        char digits[20];
        do {
            digits[v.cin_len++] = char('0' + cin % 10);
            cin /= 10;
        } while (cin);
        for (std::size_t i = 0; i < v.cin_len; ++i)
            v.cin[i] = digits[v.cin_len - 1 - i];
        static constexpr char kHex[] = "0123456789ABCDEF";
        const std::uint32_t ccc = calea_ccc_id(record.header.cin);
        for (int i = 0; i < 8; ++i)
            v.ccc[i] = kHex[(ccc >> (28 - 4 * i)) & 0xF];

        BerWriter w(out);
        for (std::size_t i = plan.count; i-- > 0;)
            cdc_pdu(w, plan.messages[i], v);
        if (!w.ok()) return 0;
        const std::size_t n = w.size();
        std::memmove(out.data(), w.bytes().data(), n);

        if (call) {
            CaleaCall next = s;
            if (record.type == IriType::Begin) {
                next.begun = m != nullptr;  // the caller's tag is known
                next.caller_tag = m ? fnv1a(m->from.tag) : 0;
            }
            for (std::size_t i = 0; i < plan.count; ++i) {
                if (plan.messages[i] == CdcMessage::Answer) next.answered = true;
                if (plan.messages[i] == CdcMessage::CCOpen) next.media_open = true;
                if (plan.messages[i] == CdcMessage::CCClose) next.media_open = false;
            }
            *call = next;
        }
        return n;
    }
};

}  // namespace

CdcPlan plan_cdc(const IriRecord& record, const CaleaCall& call) noexcept {
    SipMessage msg;
    return plan_for(record.type, parsed_sip(record, msg), effective_state(record.type, &call));
}

std::unique_ptr<Encoder> make_calea_encoder() {
    return std::make_unique<PcespEncoder>();
}

}  // namespace tapwire::handover
