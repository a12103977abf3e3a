// Warrant checks shared by the control plane, its tests and tools: validation at the gRPC
// edge, the canonical encoding the issuing authority signs, Ed25519 signatures (OpenSSL),
// and the one definition of a warrant's state over time (pending, active, lapsed...).
//
// Everything here is off the hot path: it allocates, and returns typed results whose
// messages name the offending field. No message ever holds a target value (targets must not
// reach ordinary logs): a target is named by its index and the reason only.
#pragma once

#include <openssl/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/identity.hpp"
#include "common/x_list.hpp"
#include "tapwire/v1/controlplane.pb.h"

namespace tapwire::controlplane {

/// UTC instants with nanosecond resolution (1677-09-21 .. 2262-04-11; proto timestamps
/// outside that range saturate, see to_timestamp).
using Timestamp = std::chrono::sys_time<std::chrono::nanoseconds>;
using Duration = std::chrono::nanoseconds;

inline constexpr std::size_t kMaxTargetsPerWarrant = 1000;
inline constexpr std::size_t kMaxDestinationsPerWarrant = 32;
/// ETSI TS 102 232-1 LawfulInterceptionIdentifier is OCTET STRING (SIZE (1..25)); TS 103 280
/// writes the LIID as 1 to 25 printable ASCII characters without space ([!-~]{1,25}).
inline constexpr std::size_t kMaxLiidLength = 25;
/// Free-text legal fields (authority, references): bytes of UTF-8.
inline constexpr std::size_t kMaxLegalTextLength = 256;
inline constexpr std::size_t kMaxDestinationIdLength = 128;
inline constexpr std::size_t kMaxKeyIdLength = 64;
inline constexpr std::size_t kEd25519SignatureLength = 64;
/// How long an emergency warrant stays effective without a confirming court order.
inline constexpr Duration kDefaultConfirmWithin = std::chrono::hours(48);

// ---------------------------------------------------------------------------------------
// Validation

#define TAPWIRE_VALIDATION_CODES(X)        \
    X(Ok, "ok")                            \
    X(InvalidArgument, "invalid_argument") \
    X(FailedPrecondition, "failed_precondition")

/// gRPC-style categories. InvalidArgument: the warrant is wrong whatever the appliance's
/// state. FailedPrecondition: it refers to something the appliance lacks (a destination
/// that was not created first).
enum class ValidationCode : std::uint8_t { TAPWIRE_VALIDATION_CODES(TAPWIRE_X_ENUMERATOR) Count };

const char* to_string(ValidationCode c) noexcept;

/// The grpc::StatusCode number for a code (OK 0, INVALID_ARGUMENT 3, FAILED_PRECONDITION 9),
/// so this header needs no gRPC include: grpc::StatusCode(grpc_status_code(c)).
int grpc_status_code(ValidationCode c) noexcept;

/// The first problem found, or code Ok.
struct ValidationError {
    ValidationCode code = ValidationCode::Ok;
    std::string field;    // "targets[2].value", "legal.jurisdiction"; empty when Ok
    std::string message;  // "<field>: <reason>", never holding a target value

    bool ok() const noexcept { return code == ValidationCode::Ok; }
};

/// What validation needs from the rest of the control plane.
struct ValidationContext {
    /// Whether a destination id names a configured destination. Empty: ids are checked for
    /// form only (tools that validate a warrant file offline).
    std::function<bool(std::string_view)> destination_exists;
    /// The numbering plan the dataplane normalises with (its views must outlive the call).
    NumberingPlan plan{};
    /// When set, a window that has already ended (valid_until <= now) is refused.
    std::optional<Timestamp> now;
};

/// Validates every field except the signature (see verify_warrant_signature), in field
/// order, and returns the first error. Checks:
/// - xid: a UUID (RFC 4122 section 3: 8-4-4-4-12 hex digits, either case), not the nil UUID;
/// - liid: 1..25 printable ASCII characters, no space (TS 103 280 LIID);
/// - targets: 1..kMaxTargetsPerWarrant; each with a known type and a value that
///   dataplane::parse_target accepts (the dataplane's own parser, so both sides agree) and
///   that is of that type: SIP_URI "sip:"/"sips:" (exact or a '*' glob), TEL_URI "tel:"
///   (exact or a trailing-'*' range), E164 "+" and at most 15 digits (ITU-T E.164 section 6,
///   exact or range), IP_ADDRESS an address without a length, IP_PREFIX an address/length
///   CIDR with no host bits set; no two targets the same after normalisation;
/// - delivery_type and legal.kind: set and known;
/// - destination_ids: 1..kMaxDestinationsPerWarrant printable ids, no repeats, each known
///   (ctx.destination_exists; an unknown one is FailedPrecondition);
/// - valid_from, valid_until: set, valid google.protobuf.Timestamp values (0001-01-01 to
///   9999-12-31, nanos 0..999999999), valid_until after valid_from (and after ctx.now);
/// - legal: set; issuing_authority and reference non-empty UTF-8 text without control
///   characters; jurisdiction an officially assigned ISO 3166-1 alpha-2 code ("DE", "US");
///   confirmation_reference only on an emergency warrant;
/// - key_id: when set, [A-Za-z0-9._-]{1,64} (so it is safe to log and to use as a file name).
ValidationError validate_warrant(const v1::Warrant& warrant, const ValidationContext& ctx);

/// Whether code is an officially assigned ISO 3166-1 alpha-2 code (upper case).
bool is_iso3166_alpha2(std::string_view code) noexcept;

// ---------------------------------------------------------------------------------------
// Canonical encoding (what the authority signs)

/// The byte string the signature covers: every field of the warrant except `signature`,
/// as UTF-8 text lines, each "<name>=<value>\n", in exactly this order:
///
///   tapwire-warrant-v1\n                        (a version line, no '=')
///   xid=<xid>\n
///   liid=<liid>\n
///   target=<type>:<value>\n                     (one line per target, in the given order)
///   delivery=<delivery_type>\n
///   destination=<id>\n                          (one line per destination id, given order)
///   valid_from=<time>\n
///   valid_until=<time>\n
///   authority=<legal.issuing_authority>\n
///   reference=<legal.reference>\n
///   jurisdiction=<legal.jurisdiction>\n
///   kind=<legal.kind>\n
///   confirmation=<legal.confirmation_reference>\n
///   key_id=<key_id>\n
///
/// - <type>, <delivery_type>, <kind>: the enum's number in decimal ("-" for a negative),
///   unknown numbers included ("target=1:sip:a@b.example").
/// - <time>: empty when the Timestamp is not set; else "<seconds>.<nanos>", seconds in
///   decimal (with '-' when negative), nanos in decimal zero-padded to 9 characters
///   (printf "%09d"; valid nanos always give exactly 9 digits): "1767225600.000000000".
/// - every string value (target value and ids included): its bytes as is, except that '%'
///   (0x25) and every byte outside 0x20..0x7E (controls, DEL, and each byte of non-ASCII
///   UTF-8) is written "%XX", two upper-case hex digits. So no value holds a newline, and
///   since names are fixed and come in a fixed order, the encoding is injective: a value
///   cannot forge another line ("liid=x\nxid=..." encodes as "liid=x%0Axid=...").
/// - An unset `legal` encodes like an empty one (its fields' defaults).
/// The signature is Ed25519 (RFC 8032, pure, no pre-hash) over these bytes. A Python
/// implementation for other signers: tests/unit/warrant_canonical.py.
std::string canonical_encoding(const v1::Warrant& warrant);

/// The escaping used by canonical_encoding (also used to quote ids in messages).
std::string percent_escape(std::string_view value);

// ---------------------------------------------------------------------------------------
// Keys and signatures (OpenSSL EVP, EVP_PKEY_ED25519)

struct PkeyFree {
    void operator()(EVP_PKEY* key) const noexcept;
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;

/// A key, or null with an error naming the file and the reason.
struct KeyResult {
    PkeyPtr key;
    std::string error;
};

/// A fresh Ed25519 key pair (tests and tapwire-sign --gen-key).
KeyResult generate_ed25519_key();
/// A PEM private key (PKCS#8); errors: unreadable file, not PEM, not an Ed25519 key.
KeyResult load_private_key_file(const std::string& path);
/// A PEM public key (SubjectPublicKeyInfo); errors: unreadable file, not a PEM public key
/// (a private key is refused: the appliance holds authority public keys only), not Ed25519.
KeyResult load_public_key_file(const std::string& path);
/// As load_public_key_file, from text; origin names it in errors.
KeyResult parse_public_key_pem(std::string_view pem, std::string_view origin);
/// PEM text of a key ("-----BEGIN PRIVATE KEY-----", "-----BEGIN PUBLIC KEY-----").
std::string private_key_pem(EVP_PKEY* key);
std::string public_key_pem(EVP_PKEY* key);

/// Signs canonical_encoding(warrant) with an Ed25519 private key and stores the signature.
/// Set key_id first (it is signed too). Returns an empty string, or the reason.
std::string sign_warrant(v1::Warrant& warrant, EVP_PKEY* private_key);

/// The configured authority public keys, by key id.
class AuthorityKeys {
  public:
    /// Adds one Ed25519 public key. Returns an empty string, or the reason (bad key id,
    /// already present, not Ed25519).
    std::string add(const std::string& key_id, PkeyPtr key);
    /// Adds the PEM public key in path under key_id; errors name the file.
    std::string add_file(const std::string& key_id, const std::string& path);
    /// Loads every "<key_id>.pem" regular file of a directory (other names are ignored).
    /// Fails as a whole on the first bad file, or when the directory holds no key.
    std::string load_directory(const std::string& dir);

    /// The key, or null.
    const EVP_PKEY* find(std::string_view key_id) const;
    std::size_t size() const noexcept { return keys_.size(); }
    std::vector<std::string> key_ids() const;

  private:
    std::map<std::string, PkeyPtr, std::less<>> keys_;
};

#define TAPWIRE_SIGNATURE_RESULTS(X)         \
    X(Ok, "ok")                              \
    X(MissingSignature, "missing_signature") \
    X(UnknownKey, "unknown_key")             \
    X(BadSignature, "bad_signature")

/// Every result but Ok refuses the warrant (PERMISSION_DENIED at the gRPC edge) and is
/// audited.
enum class SignatureResult : std::uint8_t { TAPWIRE_SIGNATURE_RESULTS(TAPWIRE_X_ENUMERATOR) Count };

const char* to_string(SignatureResult r) noexcept;

struct SignatureCheck {
    SignatureResult result = SignatureResult::Ok;
    std::string message;  // names the field and the key id; empty when Ok

    bool ok() const noexcept { return result == SignatureResult::Ok; }
};

/// MissingSignature: no signature or no key_id. UnknownKey: key_id names no configured key.
/// BadSignature: not 64 bytes, or does not verify over canonical_encoding(warrant).
SignatureCheck verify_warrant_signature(const v1::Warrant& warrant, const AuthorityKeys& keys);

// ---------------------------------------------------------------------------------------
// Time and state

/// A proto timestamp as a Timestamp; beyond the representable range it saturates to
/// Timestamp::min() or max() (ordering is kept; validation refuses unset or invalid ones).
Timestamp to_timestamp(const google::protobuf::Timestamp& t) noexcept;
google::protobuf::Timestamp to_proto(Timestamp t);

/// When an unconfirmed emergency warrant lapses: confirm_within after it becomes effective
/// at the appliance, the later of accepted_at (first accepted; a Modify keeps the original
/// time) and valid_from. So an emergency warrant intercepts at most confirm_within without
/// a court order, and a scheduled one is not lapsed before it starts. nullopt when the
/// warrant is not an emergency warrant, or already carries its confirmation_reference.
std::optional<Timestamp> emergency_deadline(const v1::Warrant& warrant, Timestamp accepted_at,
                                            Duration confirm_within = kDefaultConfirmWithin);

/// Everything a warrant's state depends on; the events are those that happened.
struct StateInputs {
    Timestamp valid_from;
    Timestamp valid_until;
    std::optional<Timestamp> emergency_deadline;  // emergency_deadline(); nullopt: none
    std::optional<Timestamp> confirmed_at;        // ConfirmEmergency accepted
    std::optional<Timestamp> deactivated_at;      // Deactivate accepted
};

/// Window and deadline from the warrant; confirmed_at and deactivated_at left unset.
StateInputs state_inputs(const v1::Warrant& warrant, Timestamp accepted_at,
                         Duration confirm_within = kDefaultConfirmWithin);

/// The state at `now`, the one definition of "effective exactly inside its window":
/// - the window is half-open: ACTIVE when valid_from <= now < valid_until, so valid_from
///   is the first effective instant and valid_until the first lapsed one (back-to-back
///   warrants neither overlap nor leave a gap);
/// - an emergency warrant is EMERGENCY_LAPSED from its deadline on, unless confirmed_at is
///   strictly before the deadline (a late confirmation does not revive it);
/// - DEACTIVATED from deactivated_at on;
/// - the earliest of these ends wins and is final; at equal times LAPSED, then
///   EMERGENCY_LAPSED, then DEACTIVATED;
/// - otherwise PENDING before valid_from.
v1::WarrantState state_at(const StateInputs& in, Timestamp now) noexcept;

/// The next instant after `now` at which state_at changes, or nullopt when the state is
/// final (the control plane's timer: activation and lapse happen with no client call).
std::optional<Timestamp> next_transition(const StateInputs& in, Timestamp now) noexcept;

}  // namespace tapwire::controlplane
