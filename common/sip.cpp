// SIP message parser (RFC 3261) and TCP stream framing.
//
// One pass over the header section: 16-octet SSE2 compares find line ends and the special
// characters inside values, header names are dispatched on their length and first letter,
// values are sliced in place. Folded values (RFC 3261 section 7.3.1) stay folded in the output
// views: every scanner treats CR, LF, SP and HT inside a value as linear whitespace, so no
// unfolding copy is needed. The body is not touched.
//
// Strict where RFC 4475 section 3.1.2 calls a message invalid and the defect is cheap to see
// (start line, scalars, quoting, conflicting singletons, empty list elements); liberal where it
// allows it and rejecting would only hide calls from interception: spaces just inside <>
// (3.1.2.14), unquoted display names with non-token characters (3.1.2.15), unknown URI schemes
// (3.3.2 to 3.3.4).
//
// Cost: ~475 ns for a 1.2 KB INVITE with SDP and 16 header fields (~12 ns per unknown field,
// ~30 ns per Via, ~50 ns per name-addr value), ~280 ns for frame_sip_stream on it; measured
// with a throwaway loop on the development VM (AMD EPYC 2.6 GHz, g++ 12 -O2).
#include "common/sip.hpp"

#include <array>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "common/x_list.hpp"
namespace tapwire {

namespace {

// The scanners below are small and called several times per header field.
#define TAPWIRE_INLINE inline __attribute__((always_inline))

// ---------------------------------------------------------------------------------------------
// Character classes.

enum : std::uint8_t {
    kTok = 1,  // RFC 3261 section 25.1 token character
    kLws = 2,  // SP HT CR LF: linear whitespace once folding is taken into account
};

constexpr std::array<std::uint8_t, 256> kClass = [] {
    std::array<std::uint8_t, 256> t{};
    for (int c = '0'; c <= '9'; ++c)
        t[c] = kTok;
    for (int c = 'a'; c <= 'z'; ++c)
        t[c] = kTok;
    for (int c = 'A'; c <= 'Z'; ++c)
        t[c] = kTok;
    for (char c : std::string_view("-.!%*_+`'~"))
        t[static_cast<unsigned char>(c)] = kTok;
    t[' '] = t['\t'] = t['\r'] = t['\n'] = kLws;
    return t;
}();

TAPWIRE_INLINE std::uint8_t cls(char c) noexcept {
    return kClass[static_cast<unsigned char>(c)];
}
TAPWIRE_INLINE bool is_lws(char c) noexcept {
    return (cls(c) & kLws) != 0;
}
constexpr bool is_wsp(char c) noexcept {
    return c == ' ' || c == '\t';
}
constexpr bool is_digit(char c) noexcept {
    return c >= '0' && c <= '9';
}
constexpr bool is_alpha(char c) noexcept {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
constexpr char to_lower(char c) noexcept {
    return (c >= 'A' && c <= 'Z') ? char(c + 32) : c;
}

TAPWIRE_INLINE std::size_t skip_lws(const char* p, std::size_t i, std::size_t n) noexcept {
    while (i < n && is_lws(p[i]))
        ++i;
    return i;
}

// First index >= i holding one of the octets Cs (or, with Ctl, any octet <= 0x20: SP, HT,
// CR, LF and the other controls), or n; i itself when i >= n. SSE2 compares 16 octets at a
// time; the tail is one more 16-octet load that overlaps what was already seen, so a load
// never crosses n (nor starts before p). Header values are mostly longer than 16 octets, and
// this is what keeps the per-field cost low.
template <bool Ctl, char... Cs>
TAPWIRE_INLINE std::size_t find_first(const char* p, std::size_t i, std::size_t n) noexcept {
    if (i >= n) return i;
#if defined(__SSE2__)
    if (n >= 16) {
        const auto hits = [](const char* at) noexcept {
            const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(at));
            __m128i h = _mm_setzero_si128();
            if constexpr (Ctl) {
                const __m128i sp = _mm_set1_epi8(0x20);
                h = _mm_cmpeq_epi8(_mm_max_epu8(v, sp), sp);
            }
            ((h = _mm_or_si128(h, _mm_cmpeq_epi8(v, _mm_set1_epi8(Cs)))), ...);
            return static_cast<unsigned>(_mm_movemask_epi8(h));
        };
        for (; i + 16 <= n; i += 16) {
            const unsigned m = hits(p + i);
            if (m != 0) return i + static_cast<std::size_t>(__builtin_ctz(m));
        }
        if (i == n) return n;
        const std::size_t base = n - 16;
        const unsigned m = hits(p + base) >> (i - base);
        return m != 0 ? i + static_cast<std::size_t>(__builtin_ctz(m)) : n;
    }
#endif
    for (; i < n; ++i) {
        const auto c = static_cast<unsigned char>(p[i]);
        if ((Ctl && c <= 0x20) || ((c == static_cast<unsigned char>(Cs)) || ...)) return i;
    }
    return n;
}

TAPWIRE_INLINE std::size_t find_lf(const char* p, std::size_t i, std::size_t n) noexcept {
    return find_first<false, '\n'>(p, i, n);
}

bool is_token(std::string_view s) noexcept {
    if (s.empty()) return false;
    for (char c : s)
        if ((cls(c) & kTok) == 0) return false;
    return true;
}

TAPWIRE_INLINE std::string_view trim_lws(std::string_view s) noexcept {
    std::size_t b = 0, e = s.size();
    while (b < e && is_lws(s[b]))
        ++b;
    while (e > b && is_lws(s[e - 1]))
        --e;
    return s.substr(b, e - b);
}

// Case-insensitive comparison against a lower-case literal.
bool ieq(std::string_view s, std::string_view lower) noexcept {
    if (s.size() != lower.size()) return false;
    for (std::size_t i = 0; i < s.size(); ++i)
        if (to_lower(s[i]) != lower[i]) return false;
    return true;
}

// The same for a header name of the literal's length. Names hold token characters only, and
// OR 0x20 maps a token character onto a lower-case letter or '-' only when it is that letter
// in either case, so eight octets compare at once.
bool ieq_name(std::string_view name, std::string_view lower) noexcept {
    const std::size_t n = lower.size();
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        std::uint64_t a, b;
        std::memcpy(&a, name.data() + i, 8);
        std::memcpy(&b, lower.data() + i, 8);
        if ((a | 0x2020202020202020ull) != b) return false;
    }
    for (; i < n; ++i)
        if ((name[i] | 0x20) != lower[i]) return false;
    return true;
}

// RFC 3986 section 3.1: scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ), then ":".
bool has_scheme(std::string_view uri) noexcept {
    if (uri.empty() || !is_alpha(uri[0])) return false;
    for (std::size_t i = 1; i < uri.size(); ++i) {
        const char c = uri[i];
        if (c == ':') return true;
        if (!is_alpha(c) && !is_digit(c) && c != '+' && c != '-' && c != '.') return false;
    }
    return false;
}

// True when a SIP or SIPS URI carries a header part ("?name=value"). '@' cannot occur after
// the userinfo (RFC 3261 section 25.1: host, uri-parameters and headers exclude it), so the
// host part starts after the last '@'; a '?' before it belongs to the user part.
bool sip_uri_has_headers(std::string_view uri) noexcept {
    const bool sip = (uri.size() > 4 && ieq(uri.substr(0, 4), "sip:")) ||
                     (uri.size() > 5 && ieq(uri.substr(0, 5), "sips:"));
    if (!sip) return false;
    const std::size_t at = uri.rfind('@');
    return uri.find('?', at == std::string_view::npos ? 0 : at) != std::string_view::npos;
}

// Decimal number no larger than `max`; false on an empty or non-digit string or on overflow.
bool parse_decimal(std::string_view s, std::uint64_t max, std::uint64_t& out) noexcept {
    if (s.empty()) return false;
    std::uint64_t v = 0;
    for (char c : s) {
        if (!is_digit(c)) return false;
        v = v * 10 + static_cast<unsigned>(c - '0');
        if (v > max) return false;  // checked per digit, so v * 10 never wraps
    }
    out = v;
    return true;
}

// Content-Length fits 32 bits for any sane message; larger values are treated as overflow.
constexpr std::uint64_t kMaxContentLength = 0xFFFFFFFFu;
// RFC 3261 section 8.1.1.5: the CSeq sequence number MUST be less than 2**31.
constexpr std::uint64_t kMaxCSeq = 0x7FFFFFFFu;

bool parse_content_length(std::string_view value, std::int64_t& out) noexcept {
    std::uint64_t v = 0;
    if (!parse_decimal(value, kMaxContentLength, v)) return false;
    out = static_cast<std::int64_t>(v);
    return true;
}

// ---------------------------------------------------------------------------------------------
// Header section iteration (shared by parse_sip and frame_sip_stream).

enum class LineResult : std::uint8_t { Header, End, Unterminated, Bad };

struct HeaderCursor {
    const char* p;
    std::size_t n;
    std::size_t pos;  // start of the next line

    // Reads one header field, joining folded continuation lines (RFC 3261 section 7.3.1).
    // On End, pos is the first octet of the body.
    LineResult next(std::string_view& name, std::string_view& value) noexcept {
        if (pos >= n) return LineResult::Unterminated;
        const char c = p[pos];
        if (c == '\n') {  // bare LF line ends are accepted
            ++pos;
            return LineResult::End;
        }
        if (c == '\r') {
            if (pos + 1 >= n) return LineResult::Unterminated;
            if (p[pos + 1] != '\n') return LineResult::Bad;
            pos += 2;
            return LineResult::End;
        }
        if (is_wsp(c)) return LineResult::Bad;  // a continuation line with nothing to continue

        // The name ends at ':' or at whitespace; LF is whitespace, so the line end is searched
        // from there on and no octet is scanned twice.
        const std::size_t name_end = find_first<true, ':'>(p, pos, n);
        std::size_t lf = find_lf(p, name_end, n);
        while (lf + 1 < n && is_wsp(p[lf + 1]))
            lf = find_lf(p, lf + 1, n);
        if (lf + 1 >= n) return LineResult::Unterminated;  // the empty line cannot follow
        std::size_t end = lf;
        if (p[end - 1] == '\r') --end;  // end > pos: p[pos] is neither CR nor LF

        // field-name HCOLON field-value, HCOLON = *( SP / HTAB ) ":" SWS
        std::size_t i = name_end;  // <= end: CR and LF stop the name scan
        if (i == pos) return LineResult::Bad;
        name = std::string_view(p + pos, i - pos);
        for (char ch : name)
            if ((cls(ch) & kTok) == 0) return LineResult::Bad;
        i = skip_lws(p, i, end);
        if (i >= end || p[i] != ':') return LineResult::Bad;
        value = trim_lws(std::string_view(p + i + 1, end - i - 1));
        pos = lf + 1;
        return LineResult::Header;
    }

    // Steps over the line that next() found Bad, with its continuation lines; false when its
    // end is not in the buffer yet.
    bool skip_line() noexcept {
        std::size_t lf = find_lf(p, pos, n);
        while (lf + 1 < n && is_wsp(p[lf + 1]))
            lf = find_lf(p, lf + 1, n);
        if (lf + 1 >= n) return false;
        pos = lf + 1;
        return true;
    }
};

// ---------------------------------------------------------------------------------------------
// Header names.

enum class Hdr : std::uint8_t {
    Other,
    CallId,
    CSeq,
    From,
    To,
    Via,
    Contact,
    ContentLength,
    ContentType,
    PAssertedIdentity,
    PPreferredIdentity,
    RemotePartyId,
    Diversion,
    HistoryInfo,
};

// Dispatch on length, then first letter; names are case-insensitive (RFC 3261 section 7.3.1).
// Compact forms: RFC 3261 section 7.3.3 and the IANA registry. Those of fields that are not
// extracted (k s e o r u x) fall through to Other like any unknown field.
Hdr classify_header(std::string_view name) noexcept {
    const char c = static_cast<char>(name[0] | 0x20);
    switch (name.size()) {
        case 1:
            switch (c) {
                case 'i':
                    return Hdr::CallId;
                case 'f':
                    return Hdr::From;
                case 't':
                    return Hdr::To;
                case 'v':
                    return Hdr::Via;
                case 'm':
                    return Hdr::Contact;
                case 'l':
                    return Hdr::ContentLength;
                case 'c':
                    return Hdr::ContentType;
                default:
                    return Hdr::Other;
            }
        case 2:
            return c == 't' && ieq_name(name, "to") ? Hdr::To : Hdr::Other;
        case 3:
            return c == 'v' && ieq_name(name, "via") ? Hdr::Via : Hdr::Other;
        case 4:
            if (c == 'c') return ieq_name(name, "cseq") ? Hdr::CSeq : Hdr::Other;
            return c == 'f' && ieq_name(name, "from") ? Hdr::From : Hdr::Other;
        case 7:
            if (c != 'c') return Hdr::Other;
            if (ieq_name(name, "call-id")) return Hdr::CallId;
            return ieq_name(name, "contact") ? Hdr::Contact : Hdr::Other;
        case 9:
            return c == 'd' && ieq_name(name, "diversion") ? Hdr::Diversion : Hdr::Other;
        case 12:
            if (c == 'c') return ieq_name(name, "content-type") ? Hdr::ContentType : Hdr::Other;
            return c == 'h' && ieq_name(name, "history-info") ? Hdr::HistoryInfo : Hdr::Other;
        case 14:
            return c == 'c' && ieq_name(name, "content-length") ? Hdr::ContentLength : Hdr::Other;
        case 15:
            return c == 'r' && ieq_name(name, "remote-party-id") ? Hdr::RemotePartyId : Hdr::Other;
        case 19:
            return c == 'p' && ieq_name(name, "p-asserted-identity") ? Hdr::PAssertedIdentity
                                                                     : Hdr::Other;
        case 20:
            return c == 'p' && ieq_name(name, "p-preferred-identity") ? Hdr::PPreferredIdentity
                                                                      : Hdr::Other;
        default:
            return Hdr::Other;
    }
}

// ---------------------------------------------------------------------------------------------
// Parameters, name-addr, lists.

constexpr std::size_t kBad = static_cast<std::size_t>(-1);

// Skips a quoted-string whose opening quote is at p[i]; returns the index after the closing
// quote, or kBad when it is unterminated. Any octet may follow a backslash (RFC 4475 3.1.1.2
// puts NUL, BEL and DEL there).
std::size_t skip_quoted(const char* p, std::size_t i, std::size_t n) noexcept {
    ++i;
    for (;;) {
        i = find_first<false, '"', '\\'>(p, i, n);
        if (i >= n) return kBad;
        if (p[i] == '"') return i + 1;
        i += 2;
    }
}

// Parses *( SEMI generic-param ) from v[i] == ';' (RFC 3261 section 25.1). Stops at the end or
// at a top-level ','; returns that index, or kBad on an empty parameter (";;", RFC 4475
// 3.1.2.1), an empty name or an unterminated quoted value. The value of the first parameter
// named `want` (trimmed) goes to `found`.
std::size_t parse_params(std::string_view v, std::size_t i, std::string_view want,
                         std::string_view& found) noexcept {
    const char* p = v.data();
    const std::size_t n = v.size();
    while (i < n && p[i] == ';') {
        const std::size_t start = ++i;
        for (;;) {
            i = find_first<false, ';', ',', '"'>(p, i, n);
            if (i >= n || p[i] != '"') break;
            i = skip_quoted(p, i, n);
            if (i == kBad) return kBad;
        }
        const std::string_view param = trim_lws(v.substr(start, i - start));
        std::string_view name = param, value;
        const std::size_t eq = param.find('=');
        if (eq != std::string_view::npos) {
            name = trim_lws(param.substr(0, eq));
            value = trim_lws(param.substr(eq + 1));
        }
        if (name.empty()) return kBad;  // ";;" or ";=x"
        if (found.empty() && ieq(name, want)) found = value;
    }
    return i;
}

enum class NameAddrResult : std::uint8_t { Ok, Syntax, Multiple };

// Parses one value `(name-addr / addr-spec) *( SEMI param )` starting at v[pos] (leading LWS
// allowed). In a list (`list`), a top-level ',' ends the value and pos is left on it (or at
// the end). Outside a list a top-level ',' is Multiple: a second value where one is allowed.
NameAddrResult parse_name_addr(std::string_view v, std::size_t& pos, bool list,
                               NameAddr& out) noexcept {
    out = NameAddr{};
    const char* p = v.data();
    const std::size_t n = v.size();
    std::size_t i = skip_lws(p, pos, n);
    if (i >= n || p[i] == ',') return NameAddrResult::Syntax;  // empty element

    std::size_t laquot = kBad;
    if (p[i] == '"') {
        const std::size_t close = skip_quoted(p, i, n);
        if (close == kBad) return NameAddrResult::Syntax;  // RFC 4475 3.1.2.6
        out.display_name = v.substr(i + 1, close - i - 2);
        i = skip_lws(p, close, n);
        if (i >= n || p[i] != '<') return NameAddrResult::Syntax;
        laquot = i;
    } else {
        const std::size_t start = i;
        for (;;) {
            i = find_first<false, '"', '<', '>', ';', ','>(p, i, n);
            if (i >= n || p[i] == ';' || (p[i] == ',' && list)) break;
            if (p[i] == ',') {  // outside a list: part of a display name, or a second value
                ++i;
                continue;
            }
            if (p[i] != '<') return NameAddrResult::Syntax;  // '"' or '>' out of place
            // Unquoted display name, taken as written even with non-token characters
            // (liberal reading allowed by RFC 4475 3.1.2.15).
            out.display_name = trim_lws(v.substr(start, i - start));
            laquot = i;
            break;
        }
        if (laquot == kBad) {
            // addr-spec: it ends at the first ';' (what follows are header parameters) and
            // needs <> if it holds ',' ';' or '?' (RFC 3261 section 20).
            const std::string_view uri = trim_lws(v.substr(start, i - start));
            if (!has_scheme(uri)) return NameAddrResult::Syntax;
            const std::size_t bad = find_first<true, ',', '?', '\\'>(uri.data(), 0, uri.size());
            if (bad < uri.size())
                return uri[bad] == ',' ? NameAddrResult::Multiple : NameAddrResult::Syntax;
            out.uri = uri;
        }
    }

    if (laquot != kBad) {
        // LWS just inside <> is dropped (liberal reading of RFC 4475 3.1.2.14); inside the
        // URI it is an error.
        std::size_t k = skip_lws(p, laquot + 1, n);
        const std::size_t first = k;
        k = find_first<true, '<', '>', '"'>(p, k, n);  // controls in a URI are an error too
        const std::size_t last = k;
        k = skip_lws(p, k, n);
        if (k >= n || p[k] != '>') return NameAddrResult::Syntax;  // unbalanced, or LWS inside
        out.uri = v.substr(first, last - first);
        if (!has_scheme(out.uri)) return NameAddrResult::Syntax;
        i = k + 1;
    }

    i = skip_lws(p, i, n);
    if (i < n && p[i] == ';') {
        const std::size_t start = i;
        i = parse_params(v, i, "tag", out.tag);
        if (i == kBad) return NameAddrResult::Syntax;
        out.params = trim_lws(v.substr(start, i - start));
    }
    if (i < n) {
        if (p[i] != ',') return NameAddrResult::Syntax;
        if (!list) return NameAddrResult::Multiple;
    }
    pos = i;
    return NameAddrResult::Ok;
}

// A comma-separated list of name-addr values (Contact, P-Asserted-Identity, Diversion, ...).
// Commas inside quoted strings and <> do not split; an empty element is an error (RFC 3261
// section 7.3.1: 1#element has no null elements). `star` allows "Contact: *".
SipError parse_name_addr_list(std::string_view v,
                              BoundedList<NameAddr, SipMessage::kMaxIdentities>& list,
                              bool* star) noexcept {
    const char* p = v.data();
    const std::size_t n = v.size();
    std::size_t i = 0;
    for (;;) {
        NameAddr na;
        std::size_t k = skip_lws(p, i, n);
        if (star != nullptr && k < n && p[k] == '*') {
            // RFC 3261 section 10.2.2 (checked against the method at the end)
            const std::size_t e = skip_lws(p, k + 1, n);
            if (e < n && p[e] != ',') return SipError::BadNameAddr;
            *star = true;
            na.uri = v.substr(k, 1);
            i = e;
        } else if (parse_name_addr(v, i, true, na) != NameAddrResult::Ok) {
            return SipError::BadNameAddr;
        }
        list.push(na);
        if (i >= n) return SipError::Ok;
        ++i;  // the ','
    }
}

SipError parse_single_name_addr(std::string_view v, NameAddr& slot, bool& seen,
                                SipError bad) noexcept {
    if (v.empty()) return bad;
    NameAddr na;
    std::size_t pos = 0;
    switch (parse_name_addr(v, pos, false, na)) {
        case NameAddrResult::Ok:
            break;
        case NameAddrResult::Multiple:
            return bad;
        case NameAddrResult::Syntax:
            return SipError::BadNameAddr;
    }
    if (seen) {
        // A repeated From or To must say the same thing (RFC 4475 3.3.8).
        const bool same =
            slot.uri == na.uri && slot.tag == na.tag && slot.display_name == na.display_name;
        return same ? SipError::Ok : SipError::DuplicateSingletonHeader;
    }
    slot = na;
    seen = true;
    return SipError::Ok;
}

// Via values: counts them, returns the first, and rejects empty values and empty parameters
// (",," and ";;", RFC 4475 3.1.2.1) in the same pass.
bool scan_via(std::string_view v, std::uint16_t& count, std::string_view& first) noexcept {
    const char* p = v.data();
    const std::size_t n = v.size();
    std::size_t start = 0, i = 0;
    bool content = false;
    for (;;) {
        const std::size_t j = find_first<true, ';', ',', '"'>(p, i, n);
        if (j > i) content = true;
        if (j >= n) break;
        const char c = p[j];
        if (static_cast<unsigned char>(c) <= 0x20) {
            if (!is_lws(c)) content = true;
            i = j + 1;
            continue;
        }
        if (c == '"') {
            i = skip_quoted(p, j, n);
            if (i == kBad) return false;
            content = true;
            continue;
        }
        if (!content) return false;  // nothing before this ';' or ','
        content = false;
        if (c == ',') {
            if (first.empty()) first = trim_lws(v.substr(start, j - start));
            if (count < UINT16_MAX) ++count;
            start = j + 1;
        }
        i = j + 1;
    }
    if (!content) return false;
    if (first.empty()) first = trim_lws(v.substr(start));
    if (count < UINT16_MAX) ++count;
    return true;
}

std::string_view via_branch(std::string_view via) noexcept {
    std::string_view branch;
    const std::size_t semi = via.find(';');
    if (semi != std::string_view::npos) parse_params(via, semi, "branch", branch);
    return branch;
}

// CSeq = 1*DIGIT LWS Method (RFC 3261 section 20.16); the number is below 2**31 (8.1.1.5).
bool parse_cseq(std::string_view v, std::uint32_t& number, std::string_view& method) noexcept {
    std::size_t i = 0;
    while (i < v.size() && is_digit(v[i]))
        ++i;
    std::uint64_t num = 0;
    if (!parse_decimal(v.substr(0, i), kMaxCSeq, num)) return false;
    const std::size_t digits_end = i;
    i = skip_lws(v.data(), i, v.size());
    if (i == digits_end) return false;
    const std::string_view m = v.substr(i);  // the value is trimmed: no trailing LWS
    if (!is_token(m)) return false;
    number = static_cast<std::uint32_t>(num);
    method = m;
    return true;
}

// ---------------------------------------------------------------------------------------------
// Start line.

// RFC 3261 section 7.1: SIP-Version = "SIP" "/" 1*DIGIT "." 1*DIGIT, "SIP" case-insensitive.
// Ok for 2.0, BadVersion for another well-formed version, BadStartLine otherwise.
SipError check_version(std::string_view v) noexcept {
    if (v.size() < 4 || !ieq(v.substr(0, 4), "sip/")) return SipError::BadStartLine;
    std::size_t i = 4, d1 = 0, d2 = 0;
    while (i < v.size() && is_digit(v[i]))
        ++i, ++d1;
    if (d1 == 0 || i >= v.size() || v[i] != '.') return SipError::BadStartLine;
    ++i;
    while (i < v.size() && is_digit(v[i]))
        ++i, ++d2;
    if (d2 == 0 || i != v.size()) return SipError::BadStartLine;
    return v.substr(4) == "2.0" ? SipError::Ok : SipError::BadVersion;
}

SipError parse_status_line(std::string_view line, SipMessage& out) noexcept {
    // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase (RFC 3261 section 7.2)
    const std::size_t sp = line.find(' ');
    if (sp == std::string_view::npos) return SipError::BadStartLine;
    const SipError ver = check_version(line.substr(0, sp));
    if (ver != SipError::Ok) return ver;
    std::size_t i = sp + 1;
    const std::size_t code_start = i;
    while (i < line.size() && is_digit(line[i]))
        ++i;
    if (i == code_start && i < line.size() && is_wsp(line[i])) return SipError::BadStartLine;
    if (i < line.size() && line[i] != ' ') return SipError::BadStatusCode;
    // Status-Code = 3DIGIT, 100 to 699 (RFC 3261 section 21; RFC 4475 3.1.2.19)
    if (i - code_start != 3) return SipError::BadStatusCode;
    const unsigned code = unsigned(line[code_start] - '0') * 100 +
                          unsigned(line[code_start + 1] - '0') * 10 +
                          unsigned(line[code_start + 2] - '0');
    if (code < 100 || code > 699) return SipError::BadStatusCode;
    out.is_request = false;
    out.status_code = static_cast<std::uint16_t>(code);
    // A missing SP before an empty Reason-Phrase is tolerated (RFC 4475 3.1.1.13 has it;
    // some stacks drop it).
    out.reason_phrase = i < line.size() ? line.substr(i + 1) : std::string_view{};
    return SipError::Ok;
}

SipError parse_request_line(std::string_view line, SipMessage& out) noexcept {
    // Request-Line = Method SP Request-URI SP SIP-Version, one SP each (RFC 3261 section 7.1;
    // RFC 4475 3.1.2.9 and 3.1.2.10).
    const std::size_t sp1 = line.find(' ');
    if (sp1 == std::string_view::npos || sp1 == 0) return SipError::BadStartLine;
    const std::string_view method = line.substr(0, sp1);
    if (!is_token(method)) return SipError::BadMethod;
    const std::size_t sp2 = line.rfind(' ');
    if (sp2 == sp1) return SipError::BadStartLine;
    if (is_wsp(line[sp1 + 1]) || is_wsp(line[sp2 - 1]) || sp2 + 1 == line.size())
        return SipError::BadStartLine;
    const SipError ver = check_version(line.substr(sp2 + 1));
    if (ver != SipError::Ok) return ver;
    const std::string_view uri = line.substr(sp1 + 1, sp2 - sp1 - 1);
    // RFC 4475 3.1.2.7 (<> around the URI), 3.1.2.8 (embedded LWS), 3.1.2.11 (headers are not
    // allowed in a Request-URI, RFC 3261 section 19.1.1 table 1).
    if (find_first<true>(uri.data(), 0, uri.size()) != uri.size() || !has_scheme(uri) ||
        sip_uri_has_headers(uri))
        return SipError::BadRequestUri;
    out.is_request = true;
    out.method_token = method;
    out.method = parse_method(method);
    out.request_uri = uri;
    return SipError::Ok;
}

void reset(SipMessage& m) noexcept {
    m.is_request = false;
    m.method = SipMethod::Other;
    m.method_token = {};
    m.request_uri = {};
    m.status_code = 0;
    m.reason_phrase = {};
    m.call_id = {};
    m.cseq = 0;
    m.cseq_method = SipMethod::Other;
    m.cseq_method_token = {};
    m.from = {};
    m.to = {};
    m.via_branch = {};
    m.top_via = {};
    m.via_count = 0;
    m.contact.clear();
    m.p_asserted_identity.clear();
    m.p_preferred_identity.clear();
    m.remote_party_id.clear();
    m.diversion.clear();
    m.history_info.clear();
    m.content_type = {};
    m.content_length = -1;
    m.body = {};
    m.header_count = 0;
    m.length = 0;
}

}  // namespace

// ---------------------------------------------------------------------------------------------

const char* to_string(SipError e) noexcept {
    static constexpr const char* kNames[] = {TAPWIRE_SIP_ERRORS(TAPWIRE_X_TEXT)};
    return name_of(e, kNames);
}

const char* to_string(SipMethod m) noexcept {
    switch (m) {
        case SipMethod::Other:
            return "OTHER";
        case SipMethod::Invite:
            return "INVITE";
        case SipMethod::Ack:
            return "ACK";
        case SipMethod::Bye:
            return "BYE";
        case SipMethod::Cancel:
            return "CANCEL";
        case SipMethod::Register:
            return "REGISTER";
        case SipMethod::Options:
            return "OPTIONS";
        case SipMethod::Prack:
            return "PRACK";
        case SipMethod::Subscribe:
            return "SUBSCRIBE";
        case SipMethod::Notify:
            return "NOTIFY";
        case SipMethod::Publish:
            return "PUBLISH";
        case SipMethod::Info:
            return "INFO";
        case SipMethod::Refer:
            return "REFER";
        case SipMethod::Message:
            return "MESSAGE";
        case SipMethod::Update:
            return "UPDATE";
    }
    return "OTHER";
}

SipMethod parse_method(std::string_view t) noexcept {
    if (t.size() < 3) return SipMethod::Other;
    switch (t[0]) {
        case 'A':
            return t == "ACK" ? SipMethod::Ack : SipMethod::Other;
        case 'B':
            return t == "BYE" ? SipMethod::Bye : SipMethod::Other;
        case 'C':
            return t == "CANCEL" ? SipMethod::Cancel : SipMethod::Other;
        case 'I':
            if (t == "INVITE") return SipMethod::Invite;
            return t == "INFO" ? SipMethod::Info : SipMethod::Other;
        case 'M':
            return t == "MESSAGE" ? SipMethod::Message : SipMethod::Other;
        case 'N':
            return t == "NOTIFY" ? SipMethod::Notify : SipMethod::Other;
        case 'O':
            return t == "OPTIONS" ? SipMethod::Options : SipMethod::Other;
        case 'P':
            if (t == "PRACK") return SipMethod::Prack;
            return t == "PUBLISH" ? SipMethod::Publish : SipMethod::Other;
        case 'R':
            if (t == "REGISTER") return SipMethod::Register;
            return t == "REFER" ? SipMethod::Refer : SipMethod::Other;
        case 'S':
            return t == "SUBSCRIBE" ? SipMethod::Subscribe : SipMethod::Other;
        case 'U':
            return t == "UPDATE" ? SipMethod::Update : SipMethod::Other;
        default:
            return SipMethod::Other;
    }
}

bool is_call_method(SipMethod m) noexcept {
    switch (m) {
        case SipMethod::Invite:
        case SipMethod::Ack:
        case SipMethod::Bye:
        case SipMethod::Cancel:
        case SipMethod::Prack:
        case SipMethod::Update:
        case SipMethod::Info:
        case SipMethod::Refer:
            return true;
        default:
            return false;
    }
}

bool SipMessage::has_sdp_body() const noexcept {
    return !body.empty() && ieq(content_type, "application/sdp");
}

SipError parse_sip(std::string_view text, SipMessage& out, const SipLimits& limits) noexcept {
    reset(out);
    if (text.empty()) return SipError::Empty;
    if (text.size() > limits.max_message_bytes) return SipError::TooLarge;
    const char* p = text.data();
    const std::size_t n = text.size();

    if (is_lws(p[0])) {
        // A datagram of CR/LF only is a keep-alive (RFC 5626 section 3.5.1), not a message.
        std::size_t i = 0;
        while (i < n && (p[i] == '\r' || p[i] == '\n'))
            ++i;
        return i == n ? SipError::Empty : SipError::LeadingWhitespace;
    }

    // Start line.
    const std::size_t lf = find_lf(p, 0, n);
    if (lf >= n) return SipError::HeadersUnterminated;
    std::string_view line(p, lf);
    if (line.back() == '\r') line.remove_suffix(1);  // lf > 0: p[0] is not LWS
    const SipError start = (line.size() >= 4 && ieq(line.substr(0, 4), "sip/"))
                               ? parse_status_line(line, out)
                               : parse_request_line(line, out);
    if (start != SipError::Ok) return start;

    // Header fields.
    HeaderCursor cur{p, n, lf + 1};
    bool seen_cseq = false, seen_from = false, seen_to = false, seen_cl = false;
    bool seen_ct = false, contact_star = false;
    std::string_view name, value;
    for (;;) {
        const LineResult r = cur.next(name, value);
        if (r == LineResult::End) break;
        if (r == LineResult::Unterminated) return SipError::HeadersUnterminated;
        if (r == LineResult::Bad) return SipError::BadHeaderLine;
        if (out.header_count >= limits.max_headers) return SipError::TooManyHeaders;
        ++out.header_count;

        SipError err = SipError::Ok;
        switch (classify_header(name)) {
            case Hdr::Other:
                break;
            case Hdr::CallId:
                // RFC 3261 section 20.8; a repeated Call-ID must agree (RFC 4475 3.3.8).
                if (!out.call_id.empty() && out.call_id != value)
                    err = SipError::DuplicateSingletonHeader;
                else
                    out.call_id = value;
                break;
            case Hdr::CSeq: {
                std::uint32_t num = 0;
                std::string_view m;
                if (!parse_cseq(value, num, m)) {
                    err = SipError::BadCSeq;
                } else if (seen_cseq) {
                    if (num != out.cseq || m != out.cseq_method_token)
                        err = SipError::DuplicateSingletonHeader;
                } else {
                    seen_cseq = true;
                    out.cseq = num;
                    out.cseq_method_token = m;
                    out.cseq_method = parse_method(m);
                }
                break;
            }
            case Hdr::From:
                err = parse_single_name_addr(value, out.from, seen_from, SipError::BadFrom);
                break;
            case Hdr::To:
                err = parse_single_name_addr(value, out.to, seen_to, SipError::BadTo);
                break;
            case Hdr::Via:
                if (!scan_via(value, out.via_count, out.top_via)) err = SipError::BadHeaderLine;
                break;
            case Hdr::Contact:
                err = parse_name_addr_list(value, out.contact, &contact_star);
                break;
            case Hdr::ContentLength: {
                // RFC 3261 section 20.14: 1*DIGIT; RFC 4475 3.1.2.3 (negative), 3.3.9 (two)
                std::int64_t cl = 0;
                if (!parse_content_length(value, cl))
                    err = SipError::BadContentLength;
                else if (seen_cl && cl != out.content_length)
                    err = SipError::DuplicateSingletonHeader;
                seen_cl = true;
                out.content_length = cl;
                break;
            }
            case Hdr::ContentType: {
                // media type only: parameters (;boundary=, ;charset=) are cut off
                const std::string_view media = trim_lws(value.substr(0, value.find(';')));
                if (seen_ct && out.content_type != media) err = SipError::DuplicateSingletonHeader;
                seen_ct = true;
                out.content_type = media;
                break;
            }
            case Hdr::PAssertedIdentity:
                err = parse_name_addr_list(value, out.p_asserted_identity, nullptr);
                break;
            case Hdr::PPreferredIdentity:
                err = parse_name_addr_list(value, out.p_preferred_identity, nullptr);
                break;
            case Hdr::RemotePartyId:
                err = parse_name_addr_list(value, out.remote_party_id, nullptr);
                break;
            case Hdr::Diversion:
                err = parse_name_addr_list(value, out.diversion, nullptr);
                break;
            case Hdr::HistoryInfo:
                err = parse_name_addr_list(value, out.history_info, nullptr);
                break;
        }
        if (err != SipError::Ok) return err;
    }
    const std::size_t body_start = cur.pos;

    // Mandatory header fields (RFC 3261 section 8.1.1).
    if (out.call_id.empty()) return SipError::MissingCallId;
    if (!seen_cseq) return SipError::MissingCSeq;
    if (!seen_from) return SipError::MissingFrom;
    if (!seen_to) return SipError::MissingTo;
    if (out.via_count == 0) return SipError::MissingVia;
    out.via_branch = via_branch(out.top_via);

    if (out.is_request) {
        // RFC 3261 section 8.1.1.5: the CSeq method matches the request method (for ACK and
        // CANCEL too: their CSeq carries ACK and CANCEL). RFC 4475 3.1.2.17 and 3.1.2.18.
        if (out.cseq_method_token != out.method_token) return SipError::CSeqMethodMismatch;
    } else {
        out.method = out.cseq_method;
    }
    // "Contact: *" only alone and only in REGISTER (RFC 3261 sections 10.2.2 and 20.10).
    if (contact_star && (out.method != SipMethod::Register || out.contact.seen() != 1))
        return SipError::BadNameAddr;

    // Body: Content-Length octets; without the field, the rest of the datagram
    // (RFC 3261 section 18.3). Octets past Content-Length are ignored (RFC 4475 3.1.1.8).
    const std::size_t available = n - body_start;
    std::size_t body_len = available;
    if (out.content_length >= 0) {
        if (static_cast<std::uint64_t>(out.content_length) > available)
            return SipError::BodyTruncated;  // RFC 4475 3.1.2.2
        body_len = static_cast<std::size_t>(out.content_length);
    }
    out.body = text.substr(body_start, body_len);
    out.length = body_start + body_len;
    return SipError::Ok;
}

SipFrame frame_sip_stream(std::string_view buffered, const SipLimits& limits) noexcept {
    SipFrame f;
    const char* p = buffered.data();
    const std::size_t n = buffered.size();

    // RFC 3261 section 7.5: CRLFs before the start line are ignored on streams; they are the
    // RFC 5626 keep-alive ping and pong.
    std::size_t s = 0;
    while (s < n && (p[s] == '\r' || p[s] == '\n'))
        ++s;
    f.skip = s;
    if (s == n) return f;  // NeedMore

    // Header fields up to the empty line, in one pass. Only max_message_bytes are looked at,
    // so that a peer cannot make every call rescan an ever-growing buffer.
    const char* m = p + s;
    const std::size_t avail = n - s;
    const std::size_t window = avail < limits.max_message_bytes ? avail : limits.max_message_bytes;
    auto need_more = [&]() noexcept {
        if (avail >= limits.max_message_bytes) {
            f.status = SipFrameStatus::Invalid;
            f.error = SipError::TooLarge;
        }
        return f;
    };
    auto invalid = [&](SipError e) noexcept {
        f.status = SipFrameStatus::Invalid;
        f.error = e;
        return f;
    };

    const std::size_t first_lf = find_lf(m, 0, window);
    if (first_lf >= window) return need_more();
    HeaderCursor cur{m, window, first_lf + 1};
    std::int64_t cl = -1;
    std::string_view name, value;
    for (;;) {
        const LineResult r = cur.next(name, value);
        if (r == LineResult::End) break;
        if (r == LineResult::Unterminated) return need_more();
        if (r == LineResult::Bad) {
            // Framing needs only the empty line and Content-Length: a malformed line is left
            // for parse_sip to report for this one message, and the stream stays in step.
            if (!cur.skip_line()) return need_more();
            continue;
        }
        if (classify_header(name) != Hdr::ContentLength) continue;
        std::int64_t v = 0;
        if (!parse_content_length(value, v)) return invalid(SipError::BadContentLength);
        if (cl >= 0 && v != cl) return invalid(SipError::DuplicateSingletonHeader);
        cl = v;
    }
    // Content-Length is mandatory on streams (RFC 3261 sections 18.3 and 20.14).
    if (cl < 0) return invalid(SipError::MissingContentLength);
    const std::uint64_t total = cur.pos + static_cast<std::uint64_t>(cl);
    if (total > limits.max_message_bytes) return invalid(SipError::TooLarge);
    if (avail < total) return f;  // NeedMore
    f.status = SipFrameStatus::Complete;
    f.length = static_cast<std::size_t>(total);
    return f;
}

bool is_sip_keepalive(std::string_view payload) noexcept {
    return !payload.empty() &&
           payload.find_first_not_of(std::string_view("\r\n \t\0", 5)) == std::string_view::npos;
}

bool looks_like_sip(std::string_view text) noexcept {
    if (text.size() >= 8 && text.substr(0, 8) == "SIP/2.0 ") return true;
    // Method: 2 to 16 upper-case letters, then SP, then a URI scheme's first letter. The
    // letter rules out "GET / HTTP/1.1" style lines.
    std::size_t i = 0;
    while (i < text.size() && i < 17 && text[i] >= 'A' && text[i] <= 'Z')
        ++i;
    return i >= 2 && i <= 16 && i + 1 < text.size() && text[i] == ' ' && is_alpha(text[i + 1]);
}

}  // namespace tapwire
