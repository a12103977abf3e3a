#include "controlplane/warrant.hpp"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "common/files.hpp"
#include "common/text.hpp"
#include "dataplane/target_set.hpp"

namespace tapwire::controlplane {

namespace {

using v1::IdentityType;

// ---------------------------------------------------------------------------------------
// Small text helpers

bool is_hex(char c) noexcept {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

ValidationError fail(ValidationCode code, std::string field, std::string_view reason) {
    ValidationError e;
    e.code = code;
    e.message = field + ": " + std::string(reason);
    e.field = std::move(field);
    return e;
}

ValidationError invalid(std::string field, std::string_view reason) {
    return fail(ValidationCode::InvalidArgument, std::move(field), reason);
}

std::string indexed(std::string_view name, std::size_t i) {
    return std::string(name) + "[" + std::to_string(i) + "]";
}

// ---------------------------------------------------------------------------------------
// Field checks

ValidationError check_xid(const std::string& xid) {
    if (xid.empty()) return invalid("xid", "must be set (a UUID, the idempotency key)");
    // RFC 4122 section 3: 8-4-4-4-12 hex digits; "case insensitive on input".
    bool form = xid.size() == 36;
    bool all_zero = true;
    for (std::size_t i = 0; form && i < xid.size(); ++i) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            form = xid[i] == '-';
        } else {
            form = is_hex(xid[i]);
            all_zero = all_zero && xid[i] == '0';
        }
    }
    if (!form) return invalid("xid", "not a UUID (RFC 4122: 8-4-4-4-12 hex digits)");
    // RFC 4122 section 4.1.7: the nil UUID names nothing, so it cannot key a warrant.
    if (all_zero) return invalid("xid", "the nil UUID is not an identifier");
    return {};
}

ValidationError check_liid(const std::string& liid) {
    if (liid.empty()) return invalid("liid", "must be set");
    if (liid.size() > kMaxLiidLength)
        return invalid("liid", "longer than 25 characters (ETSI TS 102 232-1, TS 103 280)");
    for (char c : liid)
        if (c < '!' || c > '~')
            return invalid("liid", "not printable ASCII without space (TS 103 280 LIID)");
    return {};
}

// Legal free text: UTF-8, no control characters (they would corrupt tables and logs).
ValidationError check_text(const std::string& value, const char* field, bool required) {
    if (value.empty()) {
        if (required) return invalid(field, "must be set");
        return {};
    }
    if (value.size() > kMaxLegalTextLength) return invalid(field, "longer than 256 bytes");
    if (!is_utf8(value)) return invalid(field, "not valid UTF-8");
    for (std::size_t i = 0; i < value.size(); ++i) {
        const auto c = std::uint8_t(value[i]);
        if (c < 0x20 || c == 0x7F)
            return invalid(field, "control character at byte " + std::to_string(i));
    }
    return {};
}

const char* type_description(int type) noexcept {
    switch (type) {
        case v1::IDENTITY_TYPE_SIP_URI:
            return "SIP URI";
        case v1::IDENTITY_TYPE_TEL_URI:
            return "TEL URI";
        case v1::IDENTITY_TYPE_E164:
            return "E.164 number";
        case v1::IDENTITY_TYPE_IP_ADDRESS:
            return "IP address";
        case v1::IDENTITY_TYPE_IP_PREFIX:
            return "IP prefix";
        default:
            return "identity";
    }
}

const char* kind_description(dataplane::TargetKind kind) noexcept {
    switch (kind) {
        case dataplane::TargetKind::Exact:
            return "an exact identity";
        case dataplane::TargetKind::Prefix:
            return "a number range";
        case dataplane::TargetKind::Glob:
            return "a SIP glob";
        case dataplane::TargetKind::Ipv4:
        case dataplane::TargetKind::Ipv6:
            return "an IP address or prefix";
    }
    return "another kind of target";
}

// Whether the parsed form is what the declared type means. Reasons never quote the value.
const char* type_mismatch(int type, std::string_view value, const dataplane::ParsedTarget& p) {
    using dataplane::TargetKind;
    const bool ip = p.kind == TargetKind::Ipv4 || p.kind == TargetKind::Ipv6;
    const bool has_length = value.find('/') != std::string_view::npos;
    const bool number = (p.kind == TargetKind::Exact || p.kind == TargetKind::Prefix) &&
                        p.text.compare(0, 4, "tel:") == 0;
    switch (type) {
        case v1::IDENTITY_TYPE_SIP_URI:
            if (!istarts_with(value, "sip:") && !istarts_with(value, "sips:"))
                return "not a sip: or sips: URI";
            if (p.kind != TargetKind::Exact && p.kind != TargetKind::Glob)
                return "not a SIP URI or SIP glob";
            return nullptr;
        case v1::IDENTITY_TYPE_TEL_URI:
            if (!istarts_with(value, "tel:")) return "not a tel: URI";
            if (!number) return "not a telephone number or number range";
            return nullptr;
        case v1::IDENTITY_TYPE_E164: {
            if (value.empty() || value.front() != '+' || !number)
                return "not an E.164 number in international form ('+' and country code)";
            // ITU-T E.164 section 6.1: at most 15 digits, country code included.
            std::string_view digits = std::string_view(p.text).substr(4);
            if (digits.empty() || digits.front() != '+') return "not an international number";
            digits.remove_prefix(1);
            if (digits.empty() || digits.size() > 15 ||
                !std::all_of(digits.begin(), digits.end(),
                             [](char c) { return c >= '0' && c <= '9'; }))
                return "not an E.164 number (1 to 15 digits, ITU-T E.164 section 6.1)";
            return nullptr;
        }
        case v1::IDENTITY_TYPE_IP_ADDRESS:
            if (!ip) return "not an IP address";
            if (has_length) return "an IP prefix: use IDENTITY_TYPE_IP_PREFIX";
            return nullptr;
        case v1::IDENTITY_TYPE_IP_PREFIX:
            if (!ip) return "not an IP prefix";
            if (!has_length) return "no prefix length (address/length, e.g. /24)";
            return nullptr;
        default:
            return "unknown type";
    }
}

// The identity of a target after normalisation, to find repeats within one warrant.
std::string target_key(const dataplane::ParsedTarget& p) {
    std::string key(1, char('0' + int(p.kind)));
    if (p.kind == dataplane::TargetKind::Ipv4 || p.kind == dataplane::TargetKind::Ipv6) {
        key.append(reinterpret_cast<const char*>(p.address.bytes.data()), p.address.bytes.size());
        key += char(p.depth);
    } else {
        key += p.text;
    }
    return key;
}

ValidationError check_targets(const v1::Warrant& w, const ValidationContext& ctx) {
    if (w.targets_size() == 0) return invalid("targets", "at least one target");
    if (std::size_t(w.targets_size()) > kMaxTargetsPerWarrant)
        return invalid("targets", "more than 1000 targets");
    std::map<std::string, int> seen;
    for (int i = 0; i < w.targets_size(); ++i) {
        const v1::TargetIdentity& t = w.targets(i);
        const std::string base = indexed("targets", std::size_t(i));
        const int type = t.type();
        if (type == v1::IDENTITY_TYPE_UNSPECIFIED) return invalid(base + ".type", "must be set");
        if (!v1::IdentityType_IsValid(type))
            return invalid(base + ".type", "unknown identity type " + std::to_string(type));
        const std::string field = base + ".value";
        const std::string_view value = trim(t.value());
        if (value.empty()) return invalid(field, "empty");

        dataplane::ParsedTarget parsed;
        const dataplane::TargetError e = dataplane::parse_target(t.value(), parsed, ctx.plan);
        if (e != dataplane::TargetError::Ok) {
            const char* detail = e == dataplane::TargetError::BadIdentity
                                     ? to_string(parsed.identity_error)
                                     : dataplane::to_string(e);
            return invalid(
                field, std::string("not a valid ") + type_description(type) + " (" + detail + ")");
        }
        if (const char* why = type_mismatch(type, value, parsed)) {
            return invalid(field, std::string(why) + " (type " + v1::IdentityType_Name(type) +
                                      ", value is " + kind_description(parsed.kind) + ")");
        }
        auto [it, inserted] = seen.emplace(target_key(parsed), i);
        if (!inserted)
            return invalid(field, "the same target as targets[" + std::to_string(it->second) +
                                      "] after normalisation");
    }
    return {};
}

ValidationError check_destinations(const v1::Warrant& w, const ValidationContext& ctx) {
    if (w.destination_ids_size() == 0) return invalid("destination_ids", "at least one");
    if (std::size_t(w.destination_ids_size()) > kMaxDestinationsPerWarrant)
        return invalid("destination_ids", "more than 32 destinations");
    for (int i = 0; i < w.destination_ids_size(); ++i) {
        const std::string& id = w.destination_ids(i);
        const std::string field = indexed("destination_ids", std::size_t(i));
        if (id.empty()) return invalid(field, "empty");
        if (id.size() > kMaxDestinationIdLength) return invalid(field, "longer than 128 bytes");
        for (char c : id)
            if (c < '!' || c > '~') return invalid(field, "not printable ASCII without space");
        for (int j = 0; j < i; ++j)
            if (w.destination_ids(j) == id)
                return invalid(field,
                               "listed twice (also destination_ids[" + std::to_string(j) + "])");
        // The id is printable ASCII by now, so quoting it in a message is safe.
        if (ctx.destination_exists && !ctx.destination_exists(id))
            return fail(ValidationCode::FailedPrecondition, field,
                        "unknown destination '" + id + "'");
    }
    return {};
}

// google/protobuf/timestamp.proto: 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59.999999999Z.
constexpr std::int64_t kMinProtoSeconds = -62135596800;
constexpr std::int64_t kMaxProtoSeconds = 253402300799;

ValidationError check_time(bool set, const google::protobuf::Timestamp& t, const char* field) {
    if (!set) return invalid(field, "must be set");
    if (t.nanos() < 0 || t.nanos() > 999999999)
        return invalid(field, "not a valid timestamp (nanos outside 0..999999999)");
    if (t.seconds() < kMinProtoSeconds || t.seconds() > kMaxProtoSeconds)
        return invalid(field, "not a valid timestamp (outside 0001-01-01 .. 9999-12-31)");
    return {};
}

bool before(const google::protobuf::Timestamp& a, const google::protobuf::Timestamp& b) {
    return a.seconds() < b.seconds() || (a.seconds() == b.seconds() && a.nanos() < b.nanos());
}

ValidationError check_window(const v1::Warrant& w, const ValidationContext& ctx) {
    if (auto e = check_time(w.has_valid_from(), w.valid_from(), "valid_from"); !e.ok()) return e;
    if (auto e = check_time(w.has_valid_until(), w.valid_until(), "valid_until"); !e.ok()) return e;
    if (!before(w.valid_from(), w.valid_until()))
        return invalid("valid_until", "must be after valid_from");
    if (ctx.now && to_timestamp(w.valid_until()) <= *ctx.now)
        return invalid("valid_until", "the window has already ended");
    return {};
}

bool is_key_id(std::string_view id) noexcept {
    if (id.empty() || id.size() > kMaxKeyIdLength) return false;
    return std::all_of(id.begin(), id.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '.' || c == '_' || c == '-';
    });
}

ValidationError check_legal(const v1::Warrant& w) {
    if (!w.has_legal()) return invalid("legal", "must be set");
    const v1::LegalMetadata& legal = w.legal();
    if (auto e = check_text(legal.issuing_authority(), "legal.issuing_authority", true); !e.ok())
        return e;
    if (auto e = check_text(legal.reference(), "legal.reference", true); !e.ok()) return e;
    if (legal.jurisdiction().empty())
        return invalid("legal.jurisdiction", "must be set (ISO 3166-1 alpha-2, e.g. DE)");
    if (!is_iso3166_alpha2(legal.jurisdiction()))
        return invalid("legal.jurisdiction",
                       "not an ISO 3166-1 alpha-2 code (two upper-case letters, e.g. DE)");
    if (legal.kind() == v1::WARRANT_KIND_UNSPECIFIED) return invalid("legal.kind", "must be set");
    if (!v1::WarrantKind_IsValid(legal.kind()))
        return invalid("legal.kind", "unknown warrant kind " + std::to_string(legal.kind()));
    if (auto e = check_text(legal.confirmation_reference(), "legal.confirmation_reference", false);
        !e.ok())
        return e;
    if (!legal.confirmation_reference().empty() && legal.kind() != v1::WARRANT_KIND_EMERGENCY)
        return invalid("legal.confirmation_reference", "only an emergency warrant is confirmed");
    return {};
}

// Officially assigned ISO 3166-1 alpha-2 codes (249, as in Debian's iso-codes 4.15), sorted;
// test_warrant compares the list with /usr/share/iso-codes when it is installed.
constexpr std::string_view kIso3166Alpha2 =
    "ADAEAFAGAIALAMAOAQARASATAUAWAXAZBABBBDBEBFBGBHBIBJBLBMBNBOBQBRBSBTBVBWBYBZCACCCDCFCGCHCI"
    "CKCLCMCNCOCRCUCVCWCXCYCZDEDJDKDMDODZECEEEGEHERESETFIFJFKFMFOFRGAGBGDGEGFGGGHGIGLGMGNGPGQ"
    "GRGSGTGUGWGYHKHMHNHRHTHUIDIEILIMINIOIQIRISITJEJMJOJPKEKGKHKIKMKNKPKRKWKYKZLALBLCLILKLRLS"
    "LTLULVLYMAMCMDMEMFMGMHMKMLMMMNMOMPMQMRMSMTMUMVMWMXMYMZNANCNENFNGNINLNONPNRNUNZOMPAPEPFPG"
    "PHPKPLPMPNPRPSPTPWPYQARERORSRURWSASBSCSDSESGSHSISJSKSLSMSNSOSRSSSTSVSXSYSZTCTDTFTGTHTJTK"
    "TLTMTNTOTRTTTVTWTZUAUGUMUSUYUZVAVCVEVGVIVNVUWFWSYEYTZAZMZW";

// ---------------------------------------------------------------------------------------
// OpenSSL helpers

// The OpenSSL error queue as text, cleared (so one failure never leaks into the next).
std::string openssl_error() {
    std::string out;
    while (unsigned long e = ERR_get_error()) {
        char buf[256];
        ERR_error_string_n(e, buf, sizeof buf);
        if (!out.empty()) out += "; ";
        out += buf;
    }
    return out.empty() ? "unknown OpenSSL error" : out;
}

struct BioFree {
    void operator()(BIO* b) const noexcept { BIO_free(b); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;

struct MdCtxFree {
    void operator()(EVP_MD_CTX* c) const noexcept { EVP_MD_CTX_free(c); }
};
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, MdCtxFree>;

std::string key_type_name(const EVP_PKEY* key) {
    const char* name = EVP_PKEY_get0_type_name(key);
    return name ? name : "unknown";
}

KeyResult require_ed25519(PkeyPtr key, std::string_view origin) {
    KeyResult r;
    if (EVP_PKEY_get_id(key.get()) != EVP_PKEY_ED25519) {
        r.error =
            std::string(origin) + ": not an Ed25519 key (found " + key_type_name(key.get()) + ")";
        return r;
    }
    r.key = std::move(key);
    return r;
}

std::string write_pem(EVP_PKEY* key, bool private_part) {
    BioPtr bio(BIO_new(BIO_s_mem()));
    if (!bio) return {};
    const int ok = private_part ? PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0,
                                                           nullptr, nullptr)
                                : PEM_write_bio_PUBKEY(bio.get(), key);
    if (ok != 1) {
        ERR_clear_error();
        return {};
    }
    char* data = nullptr;
    const long n = BIO_get_mem_data(bio.get(), &data);
    return n > 0 ? std::string(data, std::size_t(n)) : std::string();
}

void append_time(std::string& out, bool set, const google::protobuf::Timestamp& t) {
    if (!set) return;
    char buf[48];
    std::snprintf(buf, sizeof buf, "%" PRId64 ".%09" PRId32, std::int64_t(t.seconds()),
                  std::int32_t(t.nanos()));
    out += buf;
}

void append_line(std::string& out, std::string_view name, std::string_view escaped) {
    out += name;
    out += '=';
    out += escaped;
    out += '\n';
}

Timestamp saturating_add(Timestamp t, Duration d) noexcept {
    const auto max = Timestamp::max().time_since_epoch().count();
    const auto min = Timestamp::min().time_since_epoch().count();
    const auto a = t.time_since_epoch().count(), b = d.count();
    if (b > 0 && a > max - b) return Timestamp::max();
    if (b < 0 && a < min - b) return Timestamp::min();
    return t + d;
}

struct End {
    Timestamp at;
    v1::WarrantState state;
};

// The ends that apply, in tie-break order (LAPSED, EMERGENCY_LAPSED, DEACTIVATED).
std::size_t ends_of(const StateInputs& in, End (&ends)[3]) noexcept {
    std::size_t n = 0;
    ends[n++] = {in.valid_until, v1::WARRANT_STATE_LAPSED};
    if (in.emergency_deadline && !(in.confirmed_at && *in.confirmed_at < *in.emergency_deadline))
        ends[n++] = {*in.emergency_deadline, v1::WARRANT_STATE_EMERGENCY_LAPSED};
    if (in.deactivated_at) ends[n++] = {*in.deactivated_at, v1::WARRANT_STATE_DEACTIVATED};
    return n;
}

}  // namespace

// ---------------------------------------------------------------------------------------
// Validation

const char* to_string(ValidationCode c) noexcept {
    static constexpr const char* kNames[] = {TAPWIRE_VALIDATION_CODES(TAPWIRE_X_TEXT)};
    return name_of(c, kNames);
}

int grpc_status_code(ValidationCode c) noexcept {
    switch (c) {
        case ValidationCode::Ok:
            return 0;
        case ValidationCode::InvalidArgument:
            return 3;
        case ValidationCode::FailedPrecondition:
            return 9;
        case ValidationCode::Count:
            break;
    }
    return 2;  // UNKNOWN
}

bool is_iso3166_alpha2(std::string_view code) noexcept {
    if (code.size() != 2) return false;
    std::size_t lo = 0, hi = kIso3166Alpha2.size() / 2;
    while (lo < hi) {
        const std::size_t mid = (lo + hi) / 2;
        const std::string_view entry = kIso3166Alpha2.substr(mid * 2, 2);
        if (entry == code) return true;
        if (entry < code) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return false;
}

ValidationError validate_warrant(const v1::Warrant& w, const ValidationContext& ctx) {
    if (auto e = check_xid(w.xid()); !e.ok()) return e;
    if (auto e = check_liid(w.liid()); !e.ok()) return e;
    if (auto e = check_targets(w, ctx); !e.ok()) return e;
    if (w.delivery_type() == v1::DELIVERY_TYPE_UNSPECIFIED)
        return invalid("delivery_type", "must be set (IRI_ONLY or IRI_AND_CC)");
    if (!v1::DeliveryType_IsValid(w.delivery_type()))
        return invalid("delivery_type",
                       "unknown delivery type " + std::to_string(w.delivery_type()));
    if (auto e = check_destinations(w, ctx); !e.ok()) return e;
    if (auto e = check_window(w, ctx); !e.ok()) return e;
    if (auto e = check_legal(w); !e.ok()) return e;
    if (!w.key_id().empty() && !is_key_id(w.key_id()))
        return invalid("key_id", "not 1 to 64 characters of A-Z a-z 0-9 . _ -");
    return {};
}

// ---------------------------------------------------------------------------------------
// Canonical encoding

std::string percent_escape(std::string_view value) {
    static constexpr char kHex[] = "0123456789ABCDEF";
    std::string out;
    out.reserve(value.size());
    for (char ch : value) {
        const auto c = std::uint8_t(ch);
        if (c >= 0x20 && c <= 0x7E && c != '%') {
            out += ch;
        } else {
            out += '%';
            out += kHex[c >> 4];
            out += kHex[c & 0x0F];
        }
    }
    return out;
}

std::string canonical_encoding(const v1::Warrant& w) {
    std::string out = "tapwire-warrant-v1\n";
    append_line(out, "xid", percent_escape(w.xid()));
    append_line(out, "liid", percent_escape(w.liid()));
    for (const v1::TargetIdentity& t : w.targets())
        append_line(out, "target", std::to_string(int(t.type())) + ":" + percent_escape(t.value()));
    append_line(out, "delivery", std::to_string(int(w.delivery_type())));
    for (const std::string& id : w.destination_ids())
        append_line(out, "destination", percent_escape(id));
    std::string time;
    append_time(time, w.has_valid_from(), w.valid_from());
    append_line(out, "valid_from", time);
    time.clear();
    append_time(time, w.has_valid_until(), w.valid_until());
    append_line(out, "valid_until", time);
    const v1::LegalMetadata& legal = w.legal();  // the default instance when unset
    append_line(out, "authority", percent_escape(legal.issuing_authority()));
    append_line(out, "reference", percent_escape(legal.reference()));
    append_line(out, "jurisdiction", percent_escape(legal.jurisdiction()));
    append_line(out, "kind", std::to_string(int(legal.kind())));
    append_line(out, "confirmation", percent_escape(legal.confirmation_reference()));
    append_line(out, "key_id", percent_escape(w.key_id()));
    return out;
}

// ---------------------------------------------------------------------------------------
// Keys and signatures

void PkeyFree::operator()(EVP_PKEY* key) const noexcept {
    EVP_PKEY_free(key);
}

KeyResult generate_ed25519_key() {
    KeyResult r;
    EVP_PKEY* key = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
    if (!key) {
        r.error = "Ed25519 key generation failed: " + openssl_error();
        return r;
    }
    r.key.reset(key);
    return r;
}

KeyResult load_private_key_file(const std::string& path) {
    KeyResult r;
    std::string text;
    if (!read_file(path, text, r.error)) return r;
    BioPtr bio(BIO_new_mem_buf(text.data(), int(text.size())));
    PkeyPtr key(bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr) : nullptr);
    if (!key) {
        ERR_clear_error();
        r.error = path + ": not a PEM private key";
        return r;
    }
    return require_ed25519(std::move(key), path);
}

KeyResult parse_public_key_pem(std::string_view pem, std::string_view origin) {
    KeyResult r;
    if (pem.find("PRIVATE KEY-----") != std::string_view::npos) {
        r.error = std::string(origin) +
                  ": holds a private key; configure the authority's public key only";
        return r;
    }
    BioPtr bio(BIO_new_mem_buf(pem.data(), int(pem.size())));
    PkeyPtr key(bio ? PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr) : nullptr);
    if (!key) {
        ERR_clear_error();
        r.error = std::string(origin) + ": not a PEM public key (-----BEGIN PUBLIC KEY-----)";
        return r;
    }
    return require_ed25519(std::move(key), origin);
}

KeyResult load_public_key_file(const std::string& path) {
    KeyResult r;
    std::string text;
    if (!read_file(path, text, r.error)) return r;
    return parse_public_key_pem(text, path);
}

std::string private_key_pem(EVP_PKEY* key) {
    return write_pem(key, true);
}

std::string public_key_pem(EVP_PKEY* key) {
    return write_pem(key, false);
}

std::string sign_warrant(v1::Warrant& w, EVP_PKEY* private_key) {
    if (!private_key) return "no private key";
    if (EVP_PKEY_get_id(private_key) != EVP_PKEY_ED25519)
        return "not an Ed25519 key (found " + key_type_name(private_key) + ")";
    const std::string message = canonical_encoding(w);
    MdCtxPtr ctx(EVP_MD_CTX_new());
    unsigned char sig[kEd25519SignatureLength];
    std::size_t sig_len = sizeof sig;
    // Ed25519 is "pure" (RFC 8032 section 5.1): no digest, one-shot over the whole message.
    if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, private_key) != 1 ||
        EVP_DigestSign(ctx.get(), sig, &sig_len,
                       reinterpret_cast<const unsigned char*>(message.data()), message.size()) != 1)
        return "signing failed (is it a private key?): " + openssl_error();
    w.set_signature(sig, sig_len);
    return {};
}

std::string AuthorityKeys::add(const std::string& key_id, PkeyPtr key) {
    if (!is_key_id(key_id))
        return "authority key id '" + percent_escape(key_id) +
               "': not 1 to 64 characters of A-Z a-z 0-9 . _ -";
    if (!key) return "authority key '" + key_id + "': no key";
    if (EVP_PKEY_get_id(key.get()) != EVP_PKEY_ED25519)
        return "authority key '" + key_id + "': not an Ed25519 key (found " +
               key_type_name(key.get()) + ")";
    if (keys_.count(key_id)) return "authority key '" + key_id + "': configured twice";
    keys_.emplace(key_id, std::move(key));
    return {};
}

std::string AuthorityKeys::add_file(const std::string& key_id, const std::string& path) {
    KeyResult r = load_public_key_file(path);
    if (!r.key) return r.error;
    std::string error = add(key_id, std::move(r.key));
    return error.empty() ? error : path + ": " + error;
}

std::string AuthorityKeys::load_directory(const std::string& dir) {
    namespace fs = std::filesystem;
    std::error_code ec;
    fs::directory_iterator it(dir, ec);
    if (ec) return dir + ": cannot read the authority key directory (" + ec.message() + ")";
    std::vector<fs::path> files;
    for (; it != fs::directory_iterator(); it.increment(ec)) {
        if (ec) return dir + ": " + ec.message();
        const fs::path& p = it->path();
        if (p.extension() != ".pem" || p.filename().string().front() == '.') continue;
        files.push_back(p);
    }
    if (ec) return dir + ": " + ec.message();
    std::sort(files.begin(), files.end());  // deterministic: the first error is always the same
    std::size_t added = 0;
    for (const fs::path& p : files) {
        if (!fs::is_regular_file(p, ec)) continue;
        if (std::string error = add_file(p.stem().string(), p.string()); !error.empty())
            return error;
        ++added;
    }
    if (added == 0) return dir + ": no authority keys (<key_id>.pem public key files)";
    return {};
}

const EVP_PKEY* AuthorityKeys::find(std::string_view key_id) const {
    auto it = keys_.find(key_id);
    return it == keys_.end() ? nullptr : it->second.get();
}

std::vector<std::string> AuthorityKeys::key_ids() const {
    std::vector<std::string> ids;
    for (const auto& [id, key] : keys_)
        ids.push_back(id);
    return ids;
}

const char* to_string(SignatureResult r) noexcept {
    static constexpr const char* kNames[] = {TAPWIRE_SIGNATURE_RESULTS(TAPWIRE_X_TEXT)};
    return name_of(r, kNames);
}

SignatureCheck verify_warrant_signature(const v1::Warrant& w, const AuthorityKeys& keys) {
    SignatureCheck c;
    if (w.signature().empty()) {
        c.result = SignatureResult::MissingSignature;
        c.message = "signature: missing (the warrant is not signed)";
        return c;
    }
    if (w.key_id().empty()) {
        c.result = SignatureResult::MissingSignature;
        c.message = "key_id: missing (which authority key signed the warrant?)";
        return c;
    }
    // key_id is not validated yet here: escape it before it reaches a message.
    const std::string id = percent_escape(w.key_id());
    const EVP_PKEY* key = keys.find(w.key_id());
    if (!key) {
        c.result = SignatureResult::UnknownKey;
        c.message = "key_id: no authority key '" + id + "' is configured";
        return c;
    }
    if (w.signature().size() != kEd25519SignatureLength) {
        c.result = SignatureResult::BadSignature;
        c.message = "signature: " + std::to_string(w.signature().size()) +
                    " bytes, an Ed25519 signature has 64";
        return c;
    }
    const std::string message = canonical_encoding(w);
    MdCtxPtr ctx(EVP_MD_CTX_new());
    // EVP_DigestVerifyInit takes a non-const key but does not modify it.
    EVP_PKEY* k = const_cast<EVP_PKEY*>(key);
    const int ok =
        ctx && EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, k) == 1
            ? EVP_DigestVerify(
                  ctx.get(), reinterpret_cast<const unsigned char*>(w.signature().data()),
                  w.signature().size(), reinterpret_cast<const unsigned char*>(message.data()),
                  message.size())
            : -1;
    ERR_clear_error();
    if (ok != 1) {
        c.result = SignatureResult::BadSignature;
        c.message = "signature: does not verify with authority key '" + id + "'";
        return c;
    }
    return c;
}

// ---------------------------------------------------------------------------------------
// Time and state

Timestamp to_timestamp(const google::protobuf::Timestamp& t) noexcept {
    // |seconds| <= 9223372033 keeps seconds * 1e9 + any int32 nanos inside int64.
    constexpr std::int64_t kLimit = 9223372033;
    if (t.seconds() > kLimit) return Timestamp::max();
    if (t.seconds() < -kLimit) return Timestamp::min();
    return Timestamp(Duration(std::int64_t(t.seconds()) * 1000000000 + t.nanos()));
}

google::protobuf::Timestamp to_proto(Timestamp t) {
    const std::int64_t ns = t.time_since_epoch().count();
    std::int64_t s = ns / 1000000000, n = ns % 1000000000;
    if (n < 0) s -= 1, n += 1000000000;  // proto nanos are never negative
    google::protobuf::Timestamp out;
    out.set_seconds(s);
    out.set_nanos(std::int32_t(n));
    return out;
}

std::optional<Timestamp> emergency_deadline(const v1::Warrant& w, Timestamp accepted_at,
                                            Duration confirm_within) {
    if (w.legal().kind() != v1::WARRANT_KIND_EMERGENCY) return std::nullopt;
    if (!w.legal().confirmation_reference().empty()) return std::nullopt;
    const Timestamp start = std::max(accepted_at, to_timestamp(w.valid_from()));
    return saturating_add(start, confirm_within);
}

StateInputs state_inputs(const v1::Warrant& w, Timestamp accepted_at, Duration confirm_within) {
    StateInputs in;
    in.valid_from = to_timestamp(w.valid_from());
    in.valid_until = to_timestamp(w.valid_until());
    in.emergency_deadline = emergency_deadline(w, accepted_at, confirm_within);
    return in;
}

v1::WarrantState state_at(const StateInputs& in, Timestamp now) noexcept {
    End ends[3];
    const std::size_t n = ends_of(in, ends);
    const End* first = nullptr;
    for (std::size_t i = 0; i < n; ++i)
        if (ends[i].at <= now && (!first || ends[i].at < first->at)) first = &ends[i];
    if (first) return first->state;
    return now < in.valid_from ? v1::WARRANT_STATE_PENDING : v1::WARRANT_STATE_ACTIVE;
}

std::optional<Timestamp> next_transition(const StateInputs& in, Timestamp now) noexcept {
    const v1::WarrantState current = state_at(in, now);
    if (current != v1::WARRANT_STATE_PENDING && current != v1::WARRANT_STATE_ACTIVE)
        return std::nullopt;
    End ends[3];
    const std::size_t n = ends_of(in, ends);
    std::optional<Timestamp> next;
    auto consider = [&](Timestamp t) {
        if (t > now && (!next || t < *next)) next = t;
    };
    // Every end still ahead is later than now (else the state would be final); the
    // earliest of them and (while pending) valid_from is where the state next changes.
    if (current == v1::WARRANT_STATE_PENDING) consider(in.valid_from);
    for (std::size_t i = 0; i < n; ++i)
        consider(ends[i].at);
    return next;
}

}  // namespace tapwire::controlplane
