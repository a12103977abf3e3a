// Identity normalisation: the one function that both the warrant side (targets) and the
// packet side (SIP header values) use, so a target and a packet never disagree on form.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/x_list.hpp"
namespace tapwire {

#define TAPWIRE_IDENTITY_ERRORS(X)                \
    X(Ok, "ok")                                   \
    X(Empty, "empty")                             \
    X(UnsupportedScheme, "unsupported_scheme")    \
    X(BadUri, "bad_uri")                          \
    X(BadPercentEncoding, "bad_percent_encoding") \
    X(BadTelephoneNumber, "bad_telephone_number") \
    X(TooLong, "too_long")

enum class IdentityError : std::uint8_t { TAPWIRE_IDENTITY_ERRORS(TAPWIRE_X_ENUMERATOR) Count };

const char* to_string(IdentityError e) noexcept;

enum class IdentityKind : std::uint8_t {
    SipUri,     // canonical "sip:user@host" or "sip:host"
    Telephone,  // canonical "tel:+4930123456" (global) or "tel:0301234" (local)
};

/// Carrier numbering plan, so national and international dialling forms reduce to one
/// E.164 form. Empty fields disable the corresponding rewrite.
struct NumberingPlan {
    std::string_view country_code;          // "49": national numbers become +49...
    std::string_view national_prefix;       // "0": 030123 becomes +4930123
    std::string_view international_prefix;  // "00": 004930123 becomes +4930123
};

/// Canonical identity, written into an inline buffer (no heap on the packet path).
struct NormalizedIdentity {
    static constexpr std::size_t kMaxLength = 256;

    char text[kMaxLength];
    std::uint16_t length = 0;
    IdentityKind kind = IdentityKind::SipUri;

    std::string_view view() const noexcept { return {text, length}; }
};

/// Normalises a URI or name-addr to its canonical identity:
/// - display name and <> are dropped; sips: is the same identity as sip:;
/// - user part percent-decoded (RFC 3261 section 19.1.4), password, port, URI parameters
///   and headers dropped; host lower-cased;
/// - tel: URIs (RFC 3966) and SIP URIs whose user is a telephone number (user=phone, or a
///   '+' global number) become "tel:" plus digits, visual separators (-.() and space)
///   stripped; global numbers keep their '+';
/// - a bare number ("+49 30 1234", "030 1234") is a telephone identity;
/// - the numbering plan, when given, rewrites national and international forms to E.164.
IdentityError normalize_identity(std::string_view input, NormalizedIdentity& out,
                                 const NumberingPlan& plan = {}) noexcept;

/// Convenience for the control plane and tests (allocates).
std::string normalized(std::string_view input, const NumberingPlan& plan = {});

}  // namespace tapwire
