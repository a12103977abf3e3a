#include "tools/lemf/lemf.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <list>
#include <set>
#include <sstream>
#include <unordered_map>

#include "common/clock.hpp"

namespace tapwire::lemf {

namespace {

using Span = std::span<const std::uint8_t>;

// ---- BER (X.690) reader --------------------------------------------------------------------

enum class Parse { Ok, Incomplete, Error };

/// One TLV: class (0 universal, 2 context), constructed bit, tag number, contents, and the
/// whole encoding (header and contents).
struct Tlv {
    std::uint8_t cls = 0;
    bool constructed = false;
    std::uint32_t tag = 0;
    Span value, raw;
};

// Reads the TLV at the start of `in`. Definite lengths only (X.690 8.1.3): every format here
// is sent with definite lengths, and an indefinite one cannot be framed by length alone.
Parse read_tlv(Span in, Tlv& t) noexcept {
    std::size_t i = 0;
    if (in.size() < 2) return Parse::Incomplete;
    const std::uint8_t b = in[i++];
    t.cls = b >> 6;
    t.constructed = (b & 0x20) != 0;
    t.tag = b & 0x1F;
    if (t.tag == 0x1F) {  // X.690 8.1.2.4: high tag number, base 128
        t.tag = 0;
        for (int n = 0;; ++n) {
            if (i >= in.size()) return Parse::Incomplete;
            if (n == 4) return Parse::Error;
            const std::uint8_t c = in[i++];
            t.tag = (t.tag << 7) | (c & 0x7F);
            if (!(c & 0x80)) break;
        }
    }
    if (i >= in.size()) return Parse::Incomplete;
    std::uint64_t len = in[i++];
    if (len & 0x80) {
        const std::size_t n = len & 0x7F;
        if (n == 0 || n > 4) return Parse::Error;  // indefinite, or beyond any PDU we accept
        if (in.size() - i < n) return Parse::Incomplete;
        len = 0;
        for (std::size_t k = 0; k < n; ++k)
            len = (len << 8) | in[i++];
    }
    if (len > StreamDecoder::kMaxPdu) return Parse::Error;
    if (in.size() - i < len) return Parse::Incomplete;
    t.value = in.subspan(i, std::size_t(len));
    t.raw = in.subspan(0, i + std::size_t(len));
    return Parse::Ok;
}

/// The children of a constructed value; false when they do not exactly fill it.
bool children(Span value, std::vector<Tlv>& out) {
    out.clear();
    while (!value.empty()) {
        Tlv t;
        if (read_tlv(value, t) != Parse::Ok) return false;
        out.push_back(t);
        value = value.subspan(t.raw.size());
    }
    return true;
}

const Tlv* find_ctx(const std::vector<Tlv>& v, std::uint32_t tag) noexcept {
    for (const Tlv& t : v)
        if (t.cls == 2 && t.tag == tag) return &t;
    return nullptr;
}

// A non-negative INTEGER or ENUMERATED of up to 64 bits (X.690 8.3).
bool to_uint(const Tlv& t, std::uint64_t& out) noexcept {
    Span v = t.value;
    if (v.empty() || t.constructed) return false;
    if (v[0] & 0x80) return false;  // negative: no field here may be
    if (v.size() > 1 && v[0] == 0) v = v.subspan(1);
    if (v.size() > 8) return false;
    out = 0;
    for (const std::uint8_t c : v)
        out = (out << 8) | c;
    return true;
}

std::string to_text(Span v) {
    return std::string(reinterpret_cast<const char*>(v.data()), v.size());
}

int digits(std::string_view s, std::size_t at, std::size_t n) noexcept {
    int v = 0;
    for (std::size_t i = at; i < at + n; ++i) {
        if (i >= s.size() || s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) noexcept {
    y -= m <= 2;
    const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = unsigned(y - era * 400);
    const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + std::int64_t(doe) - 719468;
}

// GeneralizedTime in UTC, "YYYYMMDDhhmmss[.f{1,9}]Z" (X.680 46, the form both BER formats
// send; local times and offsets are not accepted).
bool parse_generalized_time(std::string_view s, std::int64_t& ns) noexcept {
    if (s.size() < 15 || s.back() != 'Z') return false;
    const int y = digits(s, 0, 4), mo = digits(s, 4, 2), d = digits(s, 6, 2);
    const int h = digits(s, 8, 2), mi = digits(s, 10, 2), se = digits(s, 12, 2);
    if (y < 0 || mo < 1 || mo > 12 || d < 1 || d > 31 || h < 0 || h > 23 || mi < 0 || mi > 59 ||
        se < 0 || se > 60)
        return false;
    std::int64_t frac = 0;
    const std::size_t end = s.size() - 1;
    if (end > 14) {
        if ((s[14] != '.' && s[14] != ',') || end - 15 < 1 || end - 15 > 9) return false;
        const int n = int(end - 15);
        const int f = digits(s, 15, std::size_t(n));
        if (f < 0) return false;
        frac = f;
        for (int k = n; k < 9; ++k)
            frac *= 10;
    }
    const std::int64_t secs =
        days_from_civil(y, unsigned(mo), unsigned(d)) * 86400 + h * 3600 + mi * 60 + se;
    ns = secs * 1'000'000'000 + frac;
    return true;
}

std::string ip_text(Span b) {
    char buf[INET6_ADDRSTRLEN] = {};
    if (b.size() == 4) return inet_ntop(AF_INET, b.data(), buf, sizeof buf) ? buf : "";
    if (b.size() == 16) return inet_ntop(AF_INET6, b.data(), buf, sizeof buf) ? buf : "";
    return {};
}

std::uint16_t be16(const std::uint8_t* p) noexcept {
    return std::uint16_t(p[0] << 8 | p[1]);
}
std::uint32_t be32(const std::uint8_t* p) noexcept {
    return std::uint32_t(p[0]) << 24 | std::uint32_t(p[1]) << 16 | std::uint32_t(p[2]) << 8 | p[3];
}

// Thrown inside one PDU's decoding only; caught per PDU and counted.
struct Malformed {};

void need(bool ok) {
    if (!ok) throw Malformed{};
}

std::vector<Tlv> kids(const Tlv& t) {
    need(t.constructed);
    std::vector<Tlv> v;
    need(children(t.value, v));
    return v;
}

const Tlv& req(const std::vector<Tlv>& v, std::uint32_t tag) {
    const Tlv* t = find_ctx(v, tag);
    need(t != nullptr);
    return *t;
}

std::uint64_t req_uint(const Tlv& t) {
    std::uint64_t v = 0;
    need(to_uint(t, v));
    return v;
}

// ---- ETSI TS 102 232-1 PS-PDU --------------------------------------------------------------

// IPAddress (TS 102 232-1 / TS 103 280): iP-value [2] is a CHOICE, so explicitly tagged;
// iPBinaryAddress [1] inside it.
std::string etsi_ip_address(const Tlv& t) {
    const auto f = kids(t);
    const auto v = kids(req(f, 2));
    const Tlv& bin = req(v, 1);
    need(bin.value.size() == 4 || bin.value.size() == 16);
    return ip_text(bin.value);
}

const char* etsi_iri_type(std::uint64_t v) {
    switch (v) {  // IRIType: iRI-Begin(1), iRI-End(2), iRI-Continue(3), iRI-Report(4)
        case 1:
            return "begin";
        case 2:
            return "end";
        case 3:
            return "continue";
        case 4:
            return "report";
        default:
            throw Malformed{};
    }
}

void decode_etsi(const Tlv& pdu, std::vector<Record>& out) {
    need(pdu.cls == 0 && pdu.tag == 16 && pdu.constructed);
    const auto top = kids(pdu);
    const auto hdr = kids(req(top, 1));
    Record base;
    base.format = Format::Etsi102232;
    need(find_ctx(hdr, 0) != nullptr);  // li-PSDomainId is mandatory
    base.liid = to_text(req(hdr, 1).value);
    need(!base.liid.empty());
    const auto ci = kids(req(hdr, 3));
    if (const Tlv* cin = find_ctx(ci, 1)) {
        base.cin = req_uint(*cin);
        base.has_cin = true;
    }
    base.sequence = req_uint(req(hdr, 4));
    base.has_sequence = true;
    if (const Tlv* ts = find_ctx(hdr, 5)) {
        need(parse_generalized_time(to_text(ts->value), base.timestamp_ns));
        base.has_timestamp = true;
    }
    if (const Tlv* us = find_ctx(hdr, 7)) {  // microSecondTimeStamp {seconds, microSeconds}
        const auto m = kids(*us);
        const std::uint64_t s = req_uint(req(m, 0)), u = req_uint(req(m, 1));
        need(u < 1'000'000 && s < (1ull << 33));
        base.timestamp_ns = std::int64_t(s) * 1'000'000'000 + std::int64_t(u) * 1000;
        base.has_timestamp = true;
    }
    const auto payload = kids(req(top, 2));
    need(payload.size() == 1 && payload[0].cls == 2);
    const Tlv& choice = payload[0];
    const std::size_t first = out.size();
    try {
        if (choice.tag == 0) {  // iRIPayloadSequence
            for (const Tlv& item : kids(choice)) {
                const auto p = kids(item);
                Record r = base;
                r.kind = Kind::Iri;
                r.iri_type = etsi_iri_type(req_uint(req(p, 0)));
                const auto contents = kids(req(p, 2));
                const auto ipmm = kids(req(contents, 11));  // iPMMIRI
                need(find_ctx(ipmm, 0) != nullptr);
                const auto c = kids(req(ipmm, 1));  // iPMMIRIContents CHOICE
                need(c.size() == 1);
                if (c[0].tag == 0 && !c[0].constructed) {  // originalIPMMMessage
                    r.payload.assign(c[0].value.begin(), c[0].value.end());
                } else {
                    need(c[0].tag == 1);  // sIPMessage
                    const auto sip = kids(c[0]);
                    r.source = etsi_ip_address(req(sip, 0));
                    r.destination = etsi_ip_address(req(sip, 1));
                    const Tlv& content = req(sip, 2);
                    r.payload.assign(content.value.begin(), content.value.end());
                }
                out.push_back(std::move(r));
            }
        } else if (choice.tag == 1) {  // cCPayloadSequence
            for (const Tlv& item : kids(choice)) {
                const auto p = kids(item);
                Record r = base;
                r.kind = Kind::Cc;
                if (const Tlv* d = find_ctx(p, 0)) {
                    const std::uint64_t v = req_uint(*d);
                    r.direction = v == 0   ? Direction::FromTarget
                                  : v == 1 ? Direction::ToTarget
                                           : Direction::Unknown;
                }
                const auto contents = kids(req(p, 2));
                const auto ipmm = kids(req(contents, 12));  // iPMMCC
                const Tlv& packet = req(ipmm, 1);
                need(!packet.constructed);
                r.payload.assign(packet.value.begin(), packet.value.end());
                out.push_back(std::move(r));
            }
        } else if (choice.tag == 2) {  // tRIPayload
            const auto tri = kids(choice);
            need(tri.size() == 1 && (tri[0].tag == 3 || tri[0].tag == 4));
            Record r = base;
            r.kind = tri[0].tag == 3 ? Kind::Keepalive : Kind::KeepaliveResponse;
            if (r.kind == Kind::Keepalive) {
                // keep-aliveResponse: the same PDU with the TRIPayload alternative [3]
                // turned into [4] (TS 102 232-1 clause 6.3: the response echoes the header).
                r.reply.assign(pdu.raw.begin(), pdu.raw.end());
                r.reply[std::size_t(tri[0].raw.data() - pdu.raw.data())] = 0x84;
            }
            out.push_back(std::move(r));
        } else {
            throw Malformed{};
        }
    } catch (...) {
        out.resize(first);
        throw;
    }
}

// ---- ETSI TS 103 221-2 X2/X3 ---------------------------------------------------------------

constexpr std::size_t kX2Header = 40;

std::string uuid_text(const std::uint8_t* p) {
    static constexpr char kHex[] = "0123456789abcdef";
    std::string s;
    for (int i = 0; i < 16; ++i) {
        if (i == 4 || i == 6 || i == 8 || i == 10) s += '-';
        s += kHex[p[i] >> 4];
        s += kHex[p[i] & 15];
    }
    return s;
}

void decode_x2x3(Span pdu, std::size_t header_len, std::vector<Record>& out) {
    const std::uint8_t* p = pdu.data();
    const std::uint16_t type = be16(p + 2);
    const std::uint16_t direction = be16(p + 14);
    Record r;
    r.format = Format::X2X3;
    r.kind = type == 1   ? Kind::Iri
             : type == 2 ? Kind::Cc
             : type == 3 ? Kind::Keepalive
                         : Kind::KeepaliveResponse;
    r.liid = uuid_text(p + 16);
    r.cin = (std::uint64_t(be32(p + 32)) << 32) | be32(p + 36);
    r.has_cin = type <= 2;
    r.direction = direction == 2   ? Direction::ToTarget
                  : direction == 3 ? Direction::FromTarget
                                   : Direction::Unknown;
    // Conditional attributes (clause 5.3): Type (2), Length (2), Value, filling the header.
    std::size_t i = kX2Header;
    while (i < header_len) {
        need(header_len - i >= 4);
        const std::uint16_t at = be16(p + i), len = be16(p + i + 2);
        i += 4;
        need(header_len - i >= len);
        const std::uint8_t* v = p + i;
        switch (at) {
            case 8:  // Sequence Number
                need(len == 4);
                r.sequence = be32(v);
                r.has_sequence = true;
                break;
            case 9: {  // Timestamp: seconds, nanoseconds
                need(len == 8);
                const std::uint32_t ns = be32(v + 4);
                need(ns < 1'000'000'000);
                r.timestamp_ns = std::int64_t(be32(v)) * 1'000'000'000 + ns;
                r.has_timestamp = true;
                break;
            }
            case 10:
                need(len == 4);
                r.source = ip_text({v, 4});
                break;
            case 11:
                need(len == 4);
                r.destination = ip_text({v, 4});
                break;
            case 12:
                need(len == 16);
                r.source = ip_text({v, 16});
                break;
            case 13:
                need(len == 16);
                r.destination = ip_text({v, 16});
                break;
            case 14:
                need(len == 2);
                r.source_port = be16(v);
                break;
            case 15:
                need(len == 2);
                r.destination_port = be16(v);
                break;
            default:
                break;  // others are not needed here
        }
        i += len;
    }
    if (r.kind == Kind::Iri) r.iri_type = "x2";
    r.payload.assign(pdu.begin() + std::ptrdiff_t(header_len), pdu.end());
    if (r.kind == Kind::Keepalive) {
        // Keepalive Acknowledgement (clause 6.2.4): the same PDU, PDU Type 4.
        r.reply.assign(pdu.begin(), pdu.end());
        r.reply[3] = 4;
    }
    out.push_back(std::move(r));
}

// ---- CALEA: PCESP CdcPdu and the CCC framing ----------------------------------------------

// PCESP Message alternatives (CHOICE tag numbers).
const char* cdc_name(std::uint32_t tag) noexcept {
    switch (tag) {
        case 1:
            return "answer";
        case 2:
            return "ccclose";
        case 3:
            return "ccopen";
        case 5:
            return "origination";
        case 7:
            return "redirection";
        case 8:
            return "release";
        case 10:
            return "terminationattempt";
        case 12:
            return "ccchange";
        case 15:
            return "dialeddigitextraction";
        case 16:
            return "networksignal";
        case 17:
            return "subjectsignal";
        case 18:
            return "mediareport";
        case 19:
            return "serviceinstance";
        case 20:
            return "confpartychange";
        default:
            return nullptr;
    }
}

// The J-STD-025 events as IRI record types: a call begins with Origination or
// TerminationAttempt and ends with Release; ServiceInstance reports a non-call event.
const char* cdc_iri_type(std::uint32_t tag) noexcept {
    switch (tag) {
        case 5:
        case 10:
            return "begin";
        case 8:
            return "end";
        case 19:
            return "report";
        default:
            return "continue";
    }
}

struct CallRef {
    std::string case_id;
    std::uint64_t cin = 0;
    bool has_cin = false;
};

// CCCId ::= CHOICE { combCCC [0] VisibleString (8 hex digits), sepCCC [1] ... }, explicitly
// tagged in its message.
std::uint32_t cccid_from(const Tlv& t) {
    const auto c = kids(t);
    need(c.size() == 1 && c[0].tag == 0 && !c[0].constructed && c[0].value.size() == 8);
    std::uint32_t v = 0;
    for (const std::uint8_t ch : c[0].value) {
        int d = ch >= '0' && ch <= '9'   ? ch - '0'
                : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
                : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
                                         : -1;
        need(d >= 0);
        v = v << 4 | std::uint32_t(d);
    }
    return v;
}

void decode_cdc(const Tlv& pdu, std::unordered_map<std::uint32_t, CallRef>& calls,
                std::vector<Record>& out) {
    need(pdu.cls == 0 && pdu.tag == 16 && pdu.constructed);
    const auto top = kids(pdu);
    need(find_ctx(top, 0) != nullptr);   // protocolVersion
    const auto msg = kids(req(top, 1));  // message: a CHOICE, explicitly tagged
    need(msg.size() == 1 && msg[0].cls == 2);
    const char* name = cdc_name(msg[0].tag);
    need(name != nullptr);
    const auto f = kids(msg[0]);
    Record r;
    r.format = Format::Calea;
    r.kind = Kind::Iri;
    r.cdc_message = name;
    r.iri_type = cdc_iri_type(msg[0].tag);
    r.liid = to_text(req(f, 0).value);
    need(!r.liid.empty());
    need(parse_generalized_time(to_text(req(f, 2).value), r.timestamp_ns));
    r.has_timestamp = true;
    const std::uint32_t tag = msg[0].tag;
    const Tlv* call_id = nullptr;
    if (tag == 3) {  // CCOpen: ccOpenTime [3] SEQUENCE OF CallId
        const auto list = kids(req(f, 3));
        need(!list.empty());
        call_id = &list[0];
        const auto c = kids(*call_id);
        r.cin = 0;
        const std::string seq = to_text(req(c, 0).value);
        need(!seq.empty() && seq.size() <= 20);
        for (const char ch : seq) {
            need(ch >= '0' && ch <= '9');
            r.cin = r.cin * 10 + std::uint64_t(ch - '0');
        }
        r.has_cin = true;
        call_id = nullptr;
    } else if (tag != 2) {
        call_id = find_ctx(f, 3);
    }
    if (call_id) {
        const auto c = kids(*call_id);
        const std::string seq = to_text(req(c, 0).value);
        // The CIN in decimal in this model (handover/calea.hpp); another sender's text is
        // kept as the record's identity only through its CCCID.
        if (!seq.empty() && seq.size() <= 19 &&
            std::all_of(seq.begin(), seq.end(), [](char ch) { return ch >= '0' && ch <= '9'; })) {
            r.cin = std::stoull(seq);
            r.has_cin = true;
        }
    }
    const std::uint32_t ccc_tag = tag == 3 ? 5 : tag == 12 ? 4 : tag == 2 ? 3 : 0;
    if (ccc_tag) {
        r.cccid = cccid_from(req(f, ccc_tag));
        r.has_cccid = true;
    }
    if (r.has_cccid) {
        CallRef& ref = calls[r.cccid];
        if (r.has_cin) {
            ref = {r.liid, r.cin, true};
        } else if (ref.has_cin && ref.case_id == r.liid) {
            r.cin = ref.cin;  // CCClose names its call only by the CCCID
            r.has_cin = true;
        } else if (ref.case_id.empty()) {
            ref.case_id = r.liid;
        }
    } else if (r.has_cin) {
        // The CCCID this model derives from the CIN (handover/calea.hpp), so that CC that
        // arrives before a CCOpen still finds its case.
        const std::uint32_t folded = std::uint32_t(r.cin ^ (r.cin >> 32));
        calls.try_emplace(folded, CallRef{r.liid, r.cin, true});
    }
    out.push_back(std::move(r));
}

}  // namespace

// ---- names ---------------------------------------------------------------------------------

const char* to_string(Format f) noexcept {
    switch (f) {
        case Format::Etsi102232:
            return "etsi-102232";
        case Format::X2X3:
            return "etsi-x2x3";
        case Format::Calea:
            return "calea";
    }
    return "?";
}

bool parse_format(std::string_view text, Format& out) noexcept {
    for (const Format f : {Format::Etsi102232, Format::X2X3, Format::Calea})
        if (text == to_string(f)) {
            out = f;
            return true;
        }
    return false;
}

const char* to_string(Kind k) noexcept {
    switch (k) {
        case Kind::Iri:
            return "iri";
        case Kind::Cc:
            return "cc";
        case Kind::Keepalive:
            return "keepalive";
        case Kind::KeepaliveResponse:
            return "keepalive-response";
    }
    return "?";
}

const char* to_string(Direction d) noexcept {
    switch (d) {
        case Direction::FromTarget:
            return "from-target";
        case Direction::ToTarget:
            return "to-target";
        default:
            return "unknown";
    }
}

// ---- StreamDecoder -------------------------------------------------------------------------

struct StreamDecoder::Impl {
    Format format;
    std::vector<std::uint8_t> buf;
    std::size_t start = 0;  // first unconsumed octet of buf
    std::uint64_t errors = 0, pdus = 0;
    bool resyncing = false;  // counts one framing error per run of skipped octets
    std::unordered_map<std::uint32_t, CallRef> calls;  // CALEA: CCCID -> call

    // Framing failed at `start`: skip one octet and look for the next PDU.
    void skip_one() {
        if (!resyncing) ++errors;
        resyncing = true;
        ++start;
    }

    // Decodes one PDU at `start` if complete; false when more input is needed.
    bool step(std::vector<Record>& out) {
        const Span in(buf.data() + start, buf.size() - start);
        if (in.empty()) return false;
        const std::size_t first = out.size();
        try {
            if (format == Format::X2X3) {
                if (in.size() < 12) return false;
                const std::uint16_t type = be16(in.data() + 2);
                const std::uint32_t hlen = be32(in.data() + 4), plen = be32(in.data() + 8);
                if (type < 1 || type > 4 || hlen < kX2Header || hlen > kMaxPdu || plen > kMaxPdu) {
                    skip_one();
                    return true;
                }
                const std::size_t total = std::size_t(hlen) + plen;
                if (in.size() < total) return false;
                resyncing = false;
                start += total;
                decode_x2x3(in.first(total), hlen, out);
            } else if (format == Format::Calea && in[0] == 0x00) {
                // CCC record: [length][CCCID][IP packet] (handover/calea.hpp).
                if (in.size() < 4) return false;
                const std::uint32_t len = be32(in.data());
                if (len < 4 || len > kMaxPdu) {
                    skip_one();
                    return true;
                }
                if (in.size() - 4 < len) return false;
                resyncing = false;
                start += 4 + std::size_t(len);
                Record r;
                r.format = Format::Calea;
                r.kind = Kind::Cc;
                r.cccid = be32(in.data() + 4);
                r.has_cccid = true;
                const auto it = calls.find(r.cccid);
                if (it != calls.end() && !it->second.case_id.empty()) {
                    r.liid = it->second.case_id;
                    r.cin = it->second.cin;
                    r.has_cin = it->second.has_cin;
                } else {
                    char name[20];
                    std::snprintf(name, sizeof name, "cccid-%08X", r.cccid);
                    r.liid = name;
                }
                r.payload.assign(in.begin() + 8, in.begin() + 4 + std::ptrdiff_t(len));
                out.push_back(std::move(r));
            } else {
                if (in[0] != 0x30) {  // both BER formats are a SEQUENCE at the top
                    skip_one();
                    return true;
                }
                Tlv t;
                const Parse p = read_tlv(in, t);
                if (p == Parse::Incomplete) return false;
                if (p == Parse::Error) {
                    skip_one();
                    return true;
                }
                resyncing = false;
                start += t.raw.size();
                if (format == Format::Etsi102232)
                    decode_etsi(t, out);
                else
                    decode_cdc(t, calls, out);
            }
            ++pdus;
        } catch (...) {  // Malformed, or allocation failure on absurd input
            out.resize(first);
            ++errors;
        }
        return true;
    }
};

StreamDecoder::StreamDecoder(Format format) : impl_(std::make_unique<Impl>()) {
    impl_->format = format;
}
StreamDecoder::~StreamDecoder() = default;
StreamDecoder::StreamDecoder(StreamDecoder&&) noexcept = default;
StreamDecoder& StreamDecoder::operator=(StreamDecoder&&) noexcept = default;

void StreamDecoder::feed(std::span<const std::uint8_t> bytes, std::vector<Record>& out) {
    Impl& d = *impl_;
    d.buf.insert(d.buf.end(), bytes.begin(), bytes.end());
    while (d.start < d.buf.size() && d.step(out)) {
    }
    // Keep the buffer small: drop what was consumed once it is most of it.
    if (d.start > 0 && (d.start == d.buf.size() || d.start >= 65536)) {
        d.buf.erase(d.buf.begin(), d.buf.begin() + std::ptrdiff_t(d.start));
        d.start = 0;
    }
}

std::uint64_t StreamDecoder::errors() const noexcept {
    return impl_->errors;
}
std::uint64_t StreamDecoder::pdus() const noexcept {
    return impl_->pdus;
}
std::size_t StreamDecoder::pending() const noexcept {
    return impl_->buf.size() - impl_->start;
}
Format StreamDecoder::format() const noexcept {
    return impl_->format;
}

// ---- Collector -----------------------------------------------------------------------------

namespace {

// Seen indexes of one (LIID, CIN, IRI/CC) as disjoint closed intervals: contiguous streams
// cost one entry, whatever their length.
struct SeenSet {
    std::map<std::uint64_t, std::uint64_t> runs;  // first -> last

    // Inserts `s`; false when it was already there.
    bool insert(std::uint64_t s) {
        auto next = runs.upper_bound(s);
        if (next != runs.begin()) {
            auto prev = std::prev(next);
            if (s <= prev->second) return false;
            if (prev->second + 1 == s) {
                prev->second = s;
                if (next != runs.end() && next->first == s + 1) {
                    prev->second = next->second;
                    runs.erase(next);
                }
                return true;
            }
        }
        if (next != runs.end() && next->first == s + 1) {
            const std::uint64_t last = next->second;
            runs.erase(next);
            runs.emplace(s, last);
            return true;
        }
        runs.emplace(s, s);
        return true;
    }
};

void json_string(std::string& o, std::string_view s) {
    o += '"';
    for (const char ch : s) {
        const auto c = static_cast<unsigned char>(ch);
        switch (c) {
            case '"':
                o += "\\\"";
                break;
            case '\\':
                o += "\\\\";
                break;
            case '\n':
                o += "\\n";
                break;
            case '\r':
                o += "\\r";
                break;
            case '\t':
                o += "\\t";
                break;
            default:
                if (c < 0x20 || c == 0x7F || c >= 0x80) {
                    // Non-ASCII as \u00XX (one code point per octet): always valid JSON,
                    // and the octets can be recovered exactly.
                    char b[8];
                    std::snprintf(b, sizeof b, "\\u%04x", c);
                    o += b;
                } else {
                    o += ch;
                }
        }
    }
    o += '"';
}

std::string iso_time(std::int64_t ns) {
    std::int64_t secs = ns / 1'000'000'000, frac = ns % 1'000'000'000;
    if (frac < 0) frac += 1'000'000'000, --secs;
    const std::time_t t = std::time_t(secs);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char b[64];
    std::snprintf(b, sizeof b, "%04d-%02d-%02dT%02d:%02d:%02d.%09lldZ", tm.tm_year + 1900,
                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (long long)frac);
    return b;
}

void put_le32(std::ofstream& f, std::uint32_t v) {
    const char b[4] = {char(v), char(v >> 8), char(v >> 16), char(v >> 24)};
    f.write(b, 4);
}

struct LiidState {
    std::set<std::uint64_t> cins;
    LiidSummary totals;
    std::map<std::pair<std::uint64_t, Kind>, SeenSet> seen;
    std::unique_ptr<std::ofstream> jsonl, pcap;
};

}  // namespace

struct Collector::Impl {
    std::filesystem::path dir;
    mutable std::mutex mu;
    std::map<std::string, LiidState> liids;
    std::uint64_t errors = 0, keepalives = 0;
    // Interception-to-decoding latencies: every record's up to kLatencySamples, then a
    // uniform reservoir sample (bounded memory on long runs).
    static constexpr std::size_t kLatencySamples = 1u << 20;
    std::vector<std::int64_t> latency_ns;
    std::uint64_t latency_seen = 0;
    std::uint64_t reservoir_state = 0x9E3779B97F4A7C15ull;

    std::ofstream& open(std::unique_ptr<std::ofstream>& f, const std::string& liid,
                        const char* suffix, bool pcap) {
        if (!f) {
            f = std::make_unique<std::ofstream>(dir / (file_stem(liid) + suffix),
                                                std::ios::binary | std::ios::trunc);
            if (pcap) {  // classic pcap global header, microseconds, LINKTYPE_RAW (101)
                put_le32(*f, 0xA1B2C3D4);
                const char ver[4] = {2, 0, 4, 0};
                f->write(ver, 4);
                put_le32(*f, 0);
                put_le32(*f, 0);
                put_le32(*f, 262144);
                put_le32(*f, 101);
            }
        }
        return *f;
    }
};

Collector::Collector(std::filesystem::path out_dir) : impl_(std::make_unique<Impl>()) {
    impl_->dir = std::move(out_dir);
    if (!impl_->dir.empty()) std::filesystem::create_directories(impl_->dir);
}

Collector::~Collector() {
    flush();
}

std::string Collector::file_stem(std::string_view liid) {
    std::string s(liid);
    for (char& c : s)
        if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-')
            c = '_';
    if (s.empty() || s[0] == '.') s.insert(s.begin(), '_');
    return s;
}

void Collector::add(const Record& r) {
    std::lock_guard lock(impl_->mu);
    if (r.kind == Kind::Keepalive || r.kind == Kind::KeepaliveResponse) {
        ++impl_->keepalives;
        return;
    }
    LiidState& st = impl_->liids[r.liid];
    if (r.has_cin) st.cins.insert(r.cin);
    bool duplicate = false;
    if (r.has_sequence) duplicate = !st.seen[{r.cin, r.kind}].insert(r.sequence);
    if (duplicate) ++st.totals.duplicates;
    const std::int64_t now = unix_time_ns();
    const std::int64_t ts = r.has_timestamp ? r.timestamp_ns : now;
    if (r.has_timestamp && !duplicate) {
        Impl& im = *impl_;
        ++im.latency_seen;
        if (im.latency_ns.size() < Impl::kLatencySamples) {
            im.latency_ns.push_back(now - ts);
        } else {
            im.reservoir_state =
                im.reservoir_state * 6364136223846793005ull + 1442695040888963407ull;
            const std::uint64_t slot = (im.reservoir_state >> 11) % im.latency_seen;
            if (slot < im.latency_ns.size()) im.latency_ns[slot] = now - ts;
        }
    }
    if (r.kind == Kind::Iri) {
        ++st.totals.iri;
        ++st.totals.iri_by_type[r.cdc_message.empty() ? r.iri_type : r.cdc_message];
        if (impl_->dir.empty()) return;
        std::string o = "{\"format\":";
        json_string(o, to_string(r.format));
        o += ",\"liid\":";
        json_string(o, r.liid);
        if (r.has_cin) o += ",\"cin\":" + std::to_string(r.cin);
        if (r.has_sequence) o += ",\"sequence\":" + std::to_string(r.sequence);
        if (r.has_cccid) o += ",\"cccid\":" + std::to_string(r.cccid);
        o += ",\"kind\":\"iri\",\"iri_type\":";
        json_string(o, r.iri_type);
        if (!r.cdc_message.empty()) {
            o += ",\"cdc_message\":";
            json_string(o, r.cdc_message);
        }
        if (r.has_timestamp) {
            o += ",\"timestamp\":\"" + iso_time(r.timestamp_ns) + "\"";
            o += ",\"timestamp_ns\":" + std::to_string(r.timestamp_ns);
        }
        o += ",\"direction\":\"";
        o += to_string(r.direction);
        o += '"';
        if (!r.source.empty()) {
            o += ",\"source\":";
            json_string(o, r.source);
        }
        if (r.source_port) o += ",\"source_port\":" + std::to_string(r.source_port);
        if (!r.destination.empty()) {
            o += ",\"destination\":";
            json_string(o, r.destination);
        }
        if (r.destination_port) o += ",\"destination_port\":" + std::to_string(r.destination_port);
        if (duplicate) o += ",\"possible_duplicate\":true";
        o += ",\"sip\":";
        json_string(
            o, std::string_view(reinterpret_cast<const char*>(r.payload.data()), r.payload.size()));
        o += "}\n";
        impl_->open(st.jsonl, r.liid, ".iri.jsonl", false)
            .write(o.data(), std::streamsize(o.size()));
    } else {
        ++st.totals.cc_packets;
        if (impl_->dir.empty()) return;
        std::ofstream& f = impl_->open(st.pcap, r.liid, ".cc.pcap", true);
        const std::int64_t secs = ts / 1'000'000'000;
        put_le32(f, std::uint32_t(secs));
        put_le32(f, std::uint32_t((ts % 1'000'000'000) / 1000));
        const std::uint32_t cap = std::uint32_t(std::min<std::size_t>(r.payload.size(), 262144));
        put_le32(f, cap);
        put_le32(f, std::uint32_t(r.payload.size()));
        f.write(reinterpret_cast<const char*>(r.payload.data()), cap);
    }
}

void Collector::add_errors(std::uint64_t n) {
    std::lock_guard lock(impl_->mu);
    impl_->errors += n;
}

void Collector::flush() {
    std::lock_guard lock(impl_->mu);
    for (auto& [liid, st] : impl_->liids) {
        if (st.jsonl) st.jsonl->flush();
        if (st.pcap) st.pcap->flush();
    }
}

std::map<std::string, LiidSummary> Collector::summary() const {
    std::lock_guard lock(impl_->mu);
    std::map<std::string, LiidSummary> out;
    for (const auto& [liid, st] : impl_->liids) {
        LiidSummary s = st.totals;
        s.calls = st.cins.size();
        for (const auto& [key, seen] : st.seen) {
            std::uint64_t prev_last = 0;
            bool first = true;
            for (const auto& [a, b] : seen.runs) {
                if (!first) {
                    ++s.gaps;
                    s.missing += a - prev_last - 1;
                    s.gap_list.push_back({key.first, key.second, prev_last + 1, a - 1});
                }
                first = false;
                prev_last = b;
            }
        }
        out.emplace(liid, std::move(s));
    }
    return out;
}

std::uint64_t Collector::errors() const {
    std::lock_guard lock(impl_->mu);
    return impl_->errors;
}

std::uint64_t Collector::keepalives() const {
    std::lock_guard lock(impl_->mu);
    return impl_->keepalives;
}

std::string Collector::summary_text() const {
    const auto sum = summary();
    std::ostringstream o;
    o << "LIID                       calls    IRI     CC   gaps missing  dups  IRI by type\n";
    for (const auto& [liid, s] : sum) {
        char line[160];
        std::snprintf(line, sizeof line, "%-25s %6llu %6llu %6llu %6llu %7llu %5llu  ",
                      liid.c_str(), (unsigned long long)s.calls, (unsigned long long)s.iri,
                      (unsigned long long)s.cc_packets, (unsigned long long)s.gaps,
                      (unsigned long long)s.missing, (unsigned long long)s.duplicates);
        o << line;
        bool first = true;
        for (const auto& [t, n] : s.iri_by_type) {
            o << (first ? "" : " ") << t << '=' << n;
            first = false;
        }
        o << '\n';
        for (const Gap& g : s.gap_list)
            o << "  gap: cin " << g.cin << ' ' << to_string(g.kind) << " sequence " << g.first
              << ".." << g.last << '\n';
    }
    o << "errors " << errors() << ", keep-alives " << keepalives() << '\n';
    if (const Latency l = latency(); l.samples) {
        char line[160];
        std::snprintf(line, sizeof line,
                      "interception to decoding: p50 %.3f ms, p99 %.3f ms, max %.3f ms (%llu "
                      "records)\n",
                      l.p50_ms, l.p99_ms, l.max_ms, static_cast<unsigned long long>(l.samples));
        o << line;
    }
    return o.str();
}

Collector::Latency Collector::latency() const {
    std::vector<std::int64_t> v;
    {
        std::lock_guard lock(impl_->mu);
        v = impl_->latency_ns;
    }
    Latency l;
    l.samples = v.size();
    if (v.empty()) return l;
    std::sort(v.begin(), v.end());
    auto at = [&v](double q) { return double(v[std::size_t(q * double(v.size() - 1))]) / 1e6; };
    l.p50_ms = at(0.50);
    l.p99_ms = at(0.99);
    l.max_ms = double(v.back()) / 1e6;
    return l;
}

std::string Collector::summary_json() const {
    const auto sum = summary();
    std::string o = "{\"liids\":{";
    bool first = true;
    for (const auto& [liid, s] : sum) {
        if (!first) o += ',';
        first = false;
        json_string(o, liid);
        o += ":{\"calls\":" + std::to_string(s.calls) + ",\"iri\":" + std::to_string(s.iri) +
             ",\"cc_packets\":" + std::to_string(s.cc_packets) +
             ",\"gaps\":" + std::to_string(s.gaps) + ",\"missing\":" + std::to_string(s.missing) +
             ",\"duplicates\":" + std::to_string(s.duplicates) + ",\"iri_by_type\":{";
        bool f2 = true;
        for (const auto& [t, n] : s.iri_by_type) {
            if (!f2) o += ',';
            f2 = false;
            json_string(o, t);
            o += ':' + std::to_string(n);
        }
        o += "},\"gap_list\":[";
        f2 = true;
        for (const Gap& g : s.gap_list) {
            if (!f2) o += ',';
            f2 = false;
            o += "{\"cin\":" + std::to_string(g.cin) + ",\"kind\":\"" + to_string(g.kind) +
                 "\",\"first\":" + std::to_string(g.first) + ",\"last\":" + std::to_string(g.last) +
                 "}";
        }
        o += "]}";
    }
    const Latency l = latency();
    char latency[160];
    std::snprintf(latency, sizeof latency,
                  ",\"latency_ms\":{\"samples\":%llu,\"p50\":%.3f,\"p99\":%.3f,\"max\":%.3f}",
                  static_cast<unsigned long long>(l.samples), l.p50_ms, l.p99_ms, l.max_ms);
    o += "},\"errors\":" + std::to_string(errors()) +
         ",\"keepalives\":" + std::to_string(keepalives()) + latency + "}";
    return o;
}

// ---- Server --------------------------------------------------------------------------------

namespace {

struct SslCtxFree {
    void operator()(SSL_CTX* c) const noexcept { SSL_CTX_free(c); }
};

std::string ssl_error() {
    char b[256] = "unknown";
    if (const unsigned long e = ERR_get_error()) ERR_error_string_n(e, b, sizeof b);
    return b;
}

}  // namespace

struct Server::Impl {
    ServerOptions opt;
    Collector& collector;
    int listen_fd = -1;
    std::uint16_t bound_port = 0;
    std::atomic<bool> stopping{false};
    std::atomic<std::uint64_t> accepted{0};
    std::unique_ptr<SSL_CTX, SslCtxFree> ctx;
    std::thread acceptor;
    std::mutex mu;
    std::list<std::thread> workers;

    Impl(ServerOptions o, Collector& c) : opt(std::move(o)), collector(c) {}

    // Waits up to 100 ms for `fd` to be readable; false on timeout (so stop() is noticed).
    static bool readable(int fd) {
        pollfd p{fd, POLLIN, 0};
        return ::poll(&p, 1, 100) > 0;
    }

    void serve(int fd) {
        // Bounded blocking: a silent or stuck peer cannot keep stop() waiting (the loops
        // below see the timeout as "try again" and check `stopping`).
        const timeval tv{0, 200'000};
        ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        SSL* ssl = nullptr;
        if (ctx) {
            ssl = SSL_new(ctx.get());
            SSL_set_fd(ssl, fd);
            int rc;
            while ((rc = SSL_accept(ssl)) <= 0) {
                const int e = SSL_get_error(ssl, rc);
                if ((e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) || stopping) {
                    collector.add_errors(1);  // a failed handshake
                    SSL_free(ssl);
                    ::close(fd);
                    return;
                }
                readable(fd);
            }
        }
        StreamDecoder dec(opt.format);
        std::vector<Record> recs;
        std::array<std::uint8_t, 65536> buf;
        std::uint64_t counted = 0;
        // After stop(): what is already buffered is still read, up to this many reads, so a
        // sender that never pauses cannot keep the receiver from stopping.
        int reads_after_stop = 64;
        for (;;) {
            if (stopping && reads_after_stop-- <= 0) break;
            // TLS may hold decrypted bytes already: read before polling then.
            if (!(ssl && SSL_pending(ssl) > 0) && !readable(fd)) {
                if (stopping) break;
                continue;
            }
            long n;
            if (ssl) {
                n = SSL_read(ssl, buf.data(), int(buf.size()));
                if (n <= 0) {
                    const int e = SSL_get_error(ssl, int(n));
                    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) continue;
                    break;
                }
            } else {
                n = ::recv(fd, buf.data(), buf.size(), 0);
                if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
                if (n <= 0) break;
            }
            recs.clear();
            dec.feed({buf.data(), std::size_t(n)}, recs);
            for (const Record& r : recs) {
                if (!r.reply.empty()) {  // answer keep-alives (best effort, blocking)
                    if (ssl)
                        SSL_write(ssl, r.reply.data(), int(r.reply.size()));
                    else
                        (void)::send(fd, r.reply.data(), r.reply.size(), MSG_NOSIGNAL);
                }
                collector.add(r);
            }
            collector.add_errors(dec.errors() - counted);
            counted = dec.errors();
            // On disk as they arrive: people and tests read the files while records flow.
            if (!recs.empty()) collector.flush();
        }
        collector.add_errors(dec.errors() - counted + (dec.pending() ? 1 : 0));
        collector.flush();
        if (ssl) {
            SSL_shutdown(ssl);
            SSL_free(ssl);
        }
        ::close(fd);
    }

    void accept_loop() {
        while (!stopping) {
            if (!readable(listen_fd)) continue;
            const int fd = ::accept(listen_fd, nullptr, nullptr);
            if (fd < 0) continue;
            ++accepted;
            std::lock_guard lock(mu);
            workers.emplace_back([this, fd] { serve(fd); });
        }
    }
};

Server::Server(ServerOptions options, Collector& collector)
    : impl_(std::make_unique<Impl>(std::move(options), collector)) {}

Server::~Server() {
    stop();
}

bool Server::start(std::string& error) {
    Impl& s = *impl_;
    if (!s.opt.tls_cert.empty() || !s.opt.tls_key.empty()) {
        if (s.opt.tls_cert.empty() || s.opt.tls_key.empty()) {
            error = "tls: both --tls-cert and --tls-key are needed";
            return false;
        }
        s.ctx.reset(SSL_CTX_new(TLS_server_method()));
        if (!s.ctx) return error = "tls: " + ssl_error(), false;
        SSL_CTX_set_min_proto_version(s.ctx.get(), TLS1_2_VERSION);
        if (SSL_CTX_use_certificate_chain_file(s.ctx.get(), s.opt.tls_cert.c_str()) != 1)
            return error = "tls-cert: " + ssl_error(), false;
        if (SSL_CTX_use_PrivateKey_file(s.ctx.get(), s.opt.tls_key.c_str(), SSL_FILETYPE_PEM) != 1)
            return error = "tls-key: " + ssl_error(), false;
        if (!s.opt.client_ca.empty()) {
            if (SSL_CTX_load_verify_locations(s.ctx.get(), s.opt.client_ca.c_str(), nullptr) != 1)
                return error = "client-ca: " + ssl_error(), false;
            SSL_CTX_set_verify(s.ctx.get(), SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                               nullptr);
        }
    }
    const std::size_t colon = s.opt.listen.rfind(':');
    if (colon == std::string::npos) return error = "listen: expected ADDR:PORT", false;
    std::string host = s.opt.listen.substr(0, colon);
    const std::string port_text = s.opt.listen.substr(colon + 1);
    char* end = nullptr;
    const unsigned long port = std::strtoul(port_text.c_str(), &end, 10);
    if (port_text.empty() || *end || port > 65535) return error = "listen: bad port", false;
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
        host = host.substr(1, host.size() - 2);
    sockaddr_storage ss{};
    socklen_t len = 0;
    if (auto* a4 = reinterpret_cast<sockaddr_in*>(&ss);
        inet_pton(AF_INET, host.empty() ? "0.0.0.0" : host.c_str(), &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons(std::uint16_t(port));
        len = sizeof(sockaddr_in);
    } else if (auto* a6 = reinterpret_cast<sockaddr_in6*>(&ss);
               inet_pton(AF_INET6, host.c_str(), &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons(std::uint16_t(port));
        len = sizeof(sockaddr_in6);
    } else {
        return error = "listen: bad address '" + host + "'", false;
    }
    s.listen_fd = ::socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s.listen_fd < 0) return error = std::string("socket: ") + std::strerror(errno), false;
    const int one = 1;
    ::setsockopt(s.listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(s.listen_fd, reinterpret_cast<sockaddr*>(&ss), len) != 0 ||
        ::listen(s.listen_fd, 64) != 0) {
        error = "listen " + s.opt.listen + ": " + std::strerror(errno);
        ::close(s.listen_fd);
        s.listen_fd = -1;
        return false;
    }
    sockaddr_storage bound{};
    socklen_t blen = sizeof bound;
    ::getsockname(s.listen_fd, reinterpret_cast<sockaddr*>(&bound), &blen);
    s.bound_port =
        ntohs(bound.ss_family == AF_INET ? reinterpret_cast<sockaddr_in*>(&bound)->sin_port
                                         : reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port);
    s.acceptor = std::thread([&s] { s.accept_loop(); });
    return true;
}

std::uint16_t Server::port() const noexcept {
    return impl_->bound_port;
}

std::uint64_t Server::connections() const noexcept {
    return impl_->accepted;
}

void Server::stop() {
    Impl& s = *impl_;
    s.stopping = true;
    if (s.acceptor.joinable()) s.acceptor.join();
    std::list<std::thread> workers;
    {
        std::lock_guard lock(s.mu);
        workers.swap(s.workers);
    }
    for (std::thread& t : workers)
        t.join();
    if (s.listen_fd >= 0) ::close(s.listen_fd);
    s.listen_fd = -1;
}

}  // namespace tapwire::lemf
