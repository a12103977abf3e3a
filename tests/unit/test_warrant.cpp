// Warrant validation, canonical encoding, Ed25519 signatures and state over time
// (controlplane/warrant.hpp). Keys are generated at test time; nothing secret is checked in.
#include <catch2/catch.hpp>

#include <openssl/evp.h>

#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>
#include <google/protobuf/reflection.h>
#include <google/protobuf/text_format.h>
#include <google/protobuf/util/message_differencer.h>
#include <grpcpp/support/status_code_enum.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "controlplane/warrant.hpp"
#include "tests/unit/temp_dir.hpp"

namespace {

using tapwire::test::TempDir;

namespace cp = tapwire::controlplane;
namespace v1 = tapwire::v1;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

// 2026-01-01T00:00:00Z and 2026-04-01T00:00:00Z.
constexpr std::int64_t kFrom = 1767225600;
constexpr std::int64_t kUntil = 1775001600;

v1::TargetIdentity* add_target(v1::Warrant& w, v1::IdentityType type, const std::string& value) {
    v1::TargetIdentity* t = w.add_targets();
    t->set_type(type);
    t->set_value(value);
    return t;
}

v1::Warrant valid_warrant() {
    v1::Warrant w;
    w.set_xid("3f1c2a4e-8b7d-4c3e-9f10-2a3b4c5d6e7f");
    w.set_liid("DE-LI-0001");
    add_target(w, v1::IDENTITY_TYPE_SIP_URI, "sip:secret-alice@example.test");
    add_target(w, v1::IDENTITY_TYPE_TEL_URI, "tel:+49-30-1234-5678");
    add_target(w, v1::IDENTITY_TYPE_E164, "+44 20 7946 0000");
    add_target(w, v1::IDENTITY_TYPE_IP_ADDRESS, "192.0.2.7");
    add_target(w, v1::IDENTITY_TYPE_IP_PREFIX, "2001:db8::/48");
    w.set_delivery_type(v1::DELIVERY_TYPE_IRI_AND_CC);
    w.add_destination_ids("lemf-1");
    w.mutable_valid_from()->set_seconds(kFrom);
    w.mutable_valid_until()->set_seconds(kUntil);
    v1::LegalMetadata* legal = w.mutable_legal();
    legal->set_issuing_authority("Amtsgericht Berlin-Tiergarten");
    legal->set_reference("353 Gs 1234/26");
    legal->set_jurisdiction("DE");
    legal->set_kind(v1::WARRANT_KIND_COURT_ORDER);
    w.set_key_id("authority-1");
    return w;
}

cp::ValidationContext context() {
    cp::ValidationContext ctx;
    ctx.destination_exists = [](std::string_view id) { return id == "lemf-1" || id == "lemf-2"; };
    return ctx;
}

// A message must never quote a target value: neither the value as given nor its trimmed
// or normalised text (checked through a distinctive part of each test value).
void check_no_target_in(const std::string& message, const v1::Warrant& w) {
    for (const auto& t : w.targets()) {
        const std::string& v = t.value();
        if (v.find_first_not_of(" \t\r") == std::string::npos) continue;
        INFO("target value must not appear: " << cp::percent_escape(v));
        CHECK(message.find(v) == std::string::npos);
        const auto first = v.find_first_not_of(" \t\r"), last = v.find_last_not_of(" \t\r");
        CHECK(message.find(v.substr(first, last - first + 1)) == std::string::npos);
    }
    CHECK(message.find("secret") == std::string::npos);
    CHECK(message.find("7946") == std::string::npos);
    CHECK(message.find("192.0.2") == std::string::npos);
}

struct Case {
    const char* name;
    std::function<void(v1::Warrant&)> mutate;
    std::string field;
    std::string reason;  // a part of the message after "<field>: "
    cp::ValidationCode code = cp::ValidationCode::InvalidArgument;
};

// Replaces target i (keeping the others) with a type and a value.
std::function<void(v1::Warrant&)> target(int i, v1::IdentityType type, std::string value) {
    return [=](v1::Warrant& w) {
        w.mutable_targets(i)->set_type(type);
        w.mutable_targets(i)->set_value(value);
    };
}

void write_text(const std::string& path, const std::string& text) {
    std::ofstream out(path, std::ios::binary);
    out << text;
    REQUIRE(out.good());
}

cp::PkeyPtr new_key() {
    cp::KeyResult k = cp::generate_ed25519_key();
    REQUIRE(k.key);
    return std::move(k.key);
}

// A public-key-only copy of a key pair, as an authority would hand it over.
cp::PkeyPtr public_part(EVP_PKEY* key) {
    cp::KeyResult k = cp::parse_public_key_pem(cp::public_key_pem(key), "test");
    REQUIRE(k.key);
    return std::move(k.key);
}

std::string source_dir() {
    const char* s = std::getenv("TAPWIRE_SOURCE_DIR");
    return s ? s : ".";
}

// Runs a command and returns its stdout (binary-safe) and exit status.
int run(const std::string& command, std::string& out) {
    out.clear();
    FILE* p = ::popen(command.c_str(), "r");
    if (!p) return -1;
    char buf[4096];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0)
        out.append(buf, n);
    return ::pclose(p);
}

const cp::Timestamp kT0 = cp::Timestamp(std::chrono::seconds(kFrom));
const cp::Timestamp kT1 = cp::Timestamp(std::chrono::seconds(kUntil));

}  // namespace

// ---------------------------------------------------------------------------------------
// Validation

TEST_CASE("a complete warrant validates", "[warrant][validate]") {
    const v1::Warrant w = valid_warrant();
    const cp::ValidationError e = cp::validate_warrant(w, context());
    INFO(e.message);
    CHECK(e.ok());
    CHECK(e.field.empty());
    CHECK(e.message.empty());
    // No destination predicate: ids are checked for form only.
    CHECK(cp::validate_warrant(w, cp::ValidationContext{}).ok());
}

TEST_CASE("accepted forms of every field", "[warrant][validate]") {
    const std::vector<std::pair<const char*, std::function<void(v1::Warrant&)>>> ok = {
        {"upper-case UUID",
         [](v1::Warrant& w) { w.set_xid("3F1C2A4E-8B7D-4C3E-9F10-2A3B4C5D6E7F"); }},
        {"LIID of 25 characters", [](v1::Warrant& w) { w.set_liid(std::string(25, 'L')); }},
        {"sips: URI", target(0, v1::IDENTITY_TYPE_SIP_URI, "sips:Bob@Example.test")},
        {"SIP URI of a phone number",
         target(0, v1::IDENTITY_TYPE_SIP_URI, "sip:+4930999@gw.example.test;user=phone")},
        {"SIP glob", target(0, v1::IDENTITY_TYPE_SIP_URI, "sip:*@evil.example")},
        {"tel: number range", target(1, v1::IDENTITY_TYPE_TEL_URI, "tel:+49-30-555*")},
        {"local tel: URI",
         target(1, v1::IDENTITY_TYPE_TEL_URI, "tel:1234;phone-context=example.com")},
        {"E.164 range", target(2, v1::IDENTITY_TYPE_E164, "+4930555*")},
        {"E.164 of 15 digits", target(2, v1::IDENTITY_TYPE_E164, "+493012345678901")},
        {"IPv6 address", target(3, v1::IDENTITY_TYPE_IP_ADDRESS, "2001:db8::7")},
        {"IPv4 /32 prefix", target(4, v1::IDENTITY_TYPE_IP_PREFIX, "198.51.100.9/32")},
        {"1000 targets",
         [](v1::Warrant& w) {
             w.clear_targets();
             for (int i = 0; i < 1000; ++i)
                 add_target(w, v1::IDENTITY_TYPE_E164, "+4930100" + std::to_string(10000 + i));
         }},
        {"two destinations", [](v1::Warrant& w) { w.add_destination_ids("lemf-2"); }},
        {"nanosecond window",
         [](v1::Warrant& w) {
             w.mutable_valid_until()->set_seconds(kFrom);
             w.mutable_valid_until()->set_nanos(1);
         }},
        {"UTF-8 authority",
         [](v1::Warrant& w) {
             w.mutable_legal()->set_issuing_authority("Amtsgericht M\xC3\xBCnchen");
         }},
        {"confirmed emergency",
         [](v1::Warrant& w) {
             w.mutable_legal()->set_kind(v1::WARRANT_KIND_EMERGENCY);
             w.mutable_legal()->set_confirmation_reference("ER 7/26");
         }},
        {"preservation",
         [](v1::Warrant& w) {
             w.mutable_legal()->set_kind(v1::WARRANT_KIND_PRESERVATION);
             w.set_delivery_type(v1::DELIVERY_TYPE_IRI_ONLY);
         }},
        {"no key id (the signature check refuses it)", [](v1::Warrant& w) { w.clear_key_id(); }},
    };
    for (const auto& [name, mutate] : ok) {
        v1::Warrant w = valid_warrant();
        mutate(w);
        const cp::ValidationError e = cp::validate_warrant(w, context());
        INFO(name << ": " << e.message);
        CHECK(e.ok());
    }
}

TEST_CASE("every validation error names its field and never the target", "[warrant][validate]") {
    using cp::ValidationCode;
    const std::vector<Case> cases = {
        {"no xid", [](v1::Warrant& w) { w.clear_xid(); }, "xid", "must be set"},
        {"xid not a UUID", [](v1::Warrant& w) { w.set_xid("warrant-17"); }, "xid", "not a UUID"},
        {"xid hyphen misplaced",
         [](v1::Warrant& w) { w.set_xid("3f1c2a4e8-b7d-4c3e-9f10-2a3b4c5d6e7f"); }, "xid",
         "not a UUID"},
        {"xid not hex", [](v1::Warrant& w) { w.set_xid("3f1c2a4e-8b7d-4c3e-9f10-2a3b4c5d6e7g"); },
         "xid", "not a UUID"},
        {"xid with braces",
         [](v1::Warrant& w) { w.set_xid("{3f1c2a4e-8b7d-4c3e-9f10-2a3b4c5d6e7f}"); }, "xid",
         "not a UUID"},
        {"nil xid", [](v1::Warrant& w) { w.set_xid("00000000-0000-0000-0000-000000000000"); },
         "xid", "nil UUID"},
        {"no liid", [](v1::Warrant& w) { w.clear_liid(); }, "liid", "must be set"},
        {"liid too long", [](v1::Warrant& w) { w.set_liid(std::string(26, 'L')); }, "liid",
         "longer than 25"},
        {"liid with space", [](v1::Warrant& w) { w.set_liid("DE LI 1"); }, "liid",
         "printable ASCII"},
        {"liid with newline", [](v1::Warrant& w) { w.set_liid("DE\nxid=1"); }, "liid",
         "printable ASCII"},
        {"liid not ASCII", [](v1::Warrant& w) { w.set_liid("M\xC3\xBC-1"); }, "liid",
         "printable ASCII"},
        {"no targets", [](v1::Warrant& w) { w.clear_targets(); }, "targets", "at least one target"},
        {"1001 targets",
         [](v1::Warrant& w) {
             w.clear_targets();
             for (int i = 0; i < 1001; ++i)
                 add_target(w, v1::IDENTITY_TYPE_E164, "+4930100" + std::to_string(10000 + i));
         },
         "targets", "more than 1000"},
        {"type unset", target(2, v1::IDENTITY_TYPE_UNSPECIFIED, "+44 20 7946 0000"),
         "targets[2].type", "must be set"},
        {"unknown type", target(1, v1::IdentityType(99), "tel:+49-30-1234-5678"), "targets[1].type",
         "unknown identity type 99"},
        {"empty value", target(2, v1::IDENTITY_TYPE_E164, ""), "targets[2].value", "empty"},
        {"blank value", target(2, v1::IDENTITY_TYPE_E164, " \t "), "targets[2].value", "empty"},
        {"bad E.164", target(2, v1::IDENTITY_TYPE_E164, "+44 20 7946 secret"), "targets[2].value",
         "not a valid E.164 number (bad_telephone_number)"},
        {"bad tel: URI", target(1, v1::IDENTITY_TYPE_TEL_URI, "tel:+49-7946-secret"),
         "targets[1].value", "not a valid TEL URI (bad_telephone_number)"},
        {"bad SIP URI", target(0, v1::IDENTITY_TYPE_SIP_URI, "sip:"), "targets[0].value",
         "not a valid SIP URI (bad_uri)"},
        {"SIP URI with a newline", target(0, v1::IDENTITY_TYPE_SIP_URI, "sip:secret@x\ny"),
         "targets[0].value", "(bad_uri)"},
        {"unsupported scheme", target(0, v1::IDENTITY_TYPE_SIP_URI, "mailto:secret@example.test"),
         "targets[0].value", "(unsupported_scheme)"},
        {"SIP type, tel: value", target(0, v1::IDENTITY_TYPE_SIP_URI, "tel:+44-20-7946-0001"),
         "targets[0].value", "not a sip: or sips: URI (type IDENTITY_TYPE_SIP_URI"},
        {"SIP type, name-addr",
         target(0, v1::IDENTITY_TYPE_SIP_URI, "Secret <sip:secret@example.test>"),
         "targets[0].value", "not a sip: or sips: URI"},
        {"SIP type, address", target(0, v1::IDENTITY_TYPE_SIP_URI, "192.0.2.99"),
         "targets[0].value", "not a sip: or sips: URI"},
        {"match-all SIP glob", target(0, v1::IDENTITY_TYPE_SIP_URI, "sip:*@*"), "targets[0].value",
         "(matches_everything)"},
        {"glob inside a number",
         target(0, v1::IDENTITY_TYPE_SIP_URI, "sip:+4930*@secret.example;user=phone"),
         "targets[0].value", "(wildcard_inside_number)"},
        {"TEL type, SIP value", target(1, v1::IDENTITY_TYPE_TEL_URI, "sip:secret@example.test"),
         "targets[1].value", "not a tel: URI"},
        {"TEL type, bare number", target(1, v1::IDENTITY_TYPE_TEL_URI, "+44 20 7946 0001"),
         "targets[1].value", "not a tel: URI"},
        {"E.164 type, tel: URI", target(2, v1::IDENTITY_TYPE_E164, "tel:+44-20-7946-0001"),
         "targets[2].value", "not an E.164 number in international form"},
        {"E.164 type, national number", target(2, v1::IDENTITY_TYPE_E164, "020 7946 0001"),
         "targets[2].value", "international form"},
        {"E.164 type, SIP URI", target(2, v1::IDENTITY_TYPE_E164, "sip:secret@example.test"),
         "targets[2].value", "international form"},
        {"E.164 of 16 digits", target(2, v1::IDENTITY_TYPE_E164, "+4420794600000001"),
         "targets[2].value", "1 to 15 digits"},
        {"E.164 wildcard inside", target(2, v1::IDENTITY_TYPE_E164, "+44 20 *7946"),
         "targets[2].value", "(wildcard_inside_number)"},
        {"address type, prefix", target(3, v1::IDENTITY_TYPE_IP_ADDRESS, "192.0.2.0/24"),
         "targets[3].value", "an IP prefix: use IDENTITY_TYPE_IP_PREFIX"},
        {"address type, SIP URI", target(3, v1::IDENTITY_TYPE_IP_ADDRESS, "sip:secret@192.0.2.1"),
         "targets[3].value", "not an IP address"},
        {"address type, number", target(3, v1::IDENTITY_TYPE_IP_ADDRESS, "+44 20 7946 0001"),
         "targets[3].value", "not an IP address"},
        {"prefix type, address", target(4, v1::IDENTITY_TYPE_IP_PREFIX, "192.0.2.7"),
         "targets[4].value", "no prefix length"},
        {"prefix with host bits", target(4, v1::IDENTITY_TYPE_IP_PREFIX, "192.0.2.7/24"),
         "targets[4].value", "not a valid IP prefix (host_bits_set)"},
        {"prefix length too long", target(4, v1::IDENTITY_TYPE_IP_PREFIX, "192.0.2.0/33"),
         "targets[4].value", "(bad_prefix_length)"},
        {"prefix length not a number", target(4, v1::IDENTITY_TYPE_IP_PREFIX, "192.0.2.0/2x"),
         "targets[4].value", "(bad_prefix_length)"},
        {"match-all prefix", target(4, v1::IDENTITY_TYPE_IP_PREFIX, "::/0"), "targets[4].value",
         "(matches_everything)"},
        {"prefix type, SIP URI", target(4, v1::IDENTITY_TYPE_IP_PREFIX, "sip:secret@x.example"),
         "targets[4].value", "not an IP prefix"},
        {"same number twice",
         [](v1::Warrant& w) { add_target(w, v1::IDENTITY_TYPE_E164, "+49 30 1234 5678"); },
         "targets[5].value", "the same target as targets[1]"},
        {"same SIP URI in another case",
         [](v1::Warrant& w) {
             add_target(w, v1::IDENTITY_TYPE_SIP_URI, "sips:secret-alice@EXAMPLE.test");
         },
         "targets[5].value", "the same target as targets[0]"},
        {"same prefix twice",
         [](v1::Warrant& w) { add_target(w, v1::IDENTITY_TYPE_IP_PREFIX, "2001:db8:0::/48"); },
         "targets[5].value", "the same target as targets[4]"},
        {"no delivery type", [](v1::Warrant& w) { w.clear_delivery_type(); }, "delivery_type",
         "must be set"},
        {"unknown delivery type", [](v1::Warrant& w) { w.set_delivery_type(v1::DeliveryType(7)); },
         "delivery_type", "unknown delivery type 7"},
        {"no destination", [](v1::Warrant& w) { w.clear_destination_ids(); }, "destination_ids",
         "at least one"},
        {"empty destination id", [](v1::Warrant& w) { w.add_destination_ids(""); },
         "destination_ids[1]", "empty"},
        {"destination id with space", [](v1::Warrant& w) { w.add_destination_ids("lemf 2"); },
         "destination_ids[1]", "printable ASCII"},
        {"destination id with newline", [](v1::Warrant& w) { w.set_destination_ids(0, "a\nb"); },
         "destination_ids[0]", "printable ASCII"},
        {"destination id too long",
         [](v1::Warrant& w) { w.set_destination_ids(0, std::string(129, 'd')); },
         "destination_ids[0]", "longer than 128"},
        {"destination twice", [](v1::Warrant& w) { w.add_destination_ids("lemf-1"); },
         "destination_ids[1]", "listed twice (also destination_ids[0])"},
        {"33 destinations",
         [](v1::Warrant& w) {
             for (int i = 0; i < 32; ++i)
                 w.add_destination_ids("d" + std::to_string(i));
         },
         "destination_ids", "more than 32"},
        {"unknown destination", [](v1::Warrant& w) { w.set_destination_ids(0, "lemf-x"); },
         "destination_ids[0]", "unknown destination 'lemf-x'", ValidationCode::FailedPrecondition},
        {"no valid_from", [](v1::Warrant& w) { w.clear_valid_from(); }, "valid_from",
         "must be set"},
        {"no valid_until", [](v1::Warrant& w) { w.clear_valid_until(); }, "valid_until",
         "must be set"},
        {"negative nanos", [](v1::Warrant& w) { w.mutable_valid_from()->set_nanos(-1); },
         "valid_from", "nanos outside"},
        {"nanos of a second",
         [](v1::Warrant& w) { w.mutable_valid_until()->set_nanos(1000000000); }, "valid_until",
         "nanos outside"},
        {"after year 9999",
         [](v1::Warrant& w) { w.mutable_valid_until()->set_seconds(253402300800); }, "valid_until",
         "outside 0001-01-01 .. 9999-12-31"},
        {"before year 1", [](v1::Warrant& w) { w.mutable_valid_from()->set_seconds(-62135596801); },
         "valid_from", "outside 0001-01-01"},
        {"empty window", [](v1::Warrant& w) { w.mutable_valid_until()->set_seconds(kFrom); },
         "valid_until", "must be after valid_from"},
        {"reversed window",
         [](v1::Warrant& w) {
             w.mutable_valid_from()->set_seconds(kUntil);
             w.mutable_valid_until()->set_seconds(kFrom);
         },
         "valid_until", "must be after valid_from"},
        {"same second, earlier nanos",
         [](v1::Warrant& w) {
             w.mutable_valid_from()->set_nanos(5);
             w.mutable_valid_until()->set_seconds(kFrom);
             w.mutable_valid_until()->set_nanos(4);
         },
         "valid_until", "must be after valid_from"},
        {"no legal metadata", [](v1::Warrant& w) { w.clear_legal(); }, "legal", "must be set"},
        {"no authority", [](v1::Warrant& w) { w.mutable_legal()->clear_issuing_authority(); },
         "legal.issuing_authority", "must be set"},
        {"authority too long",
         [](v1::Warrant& w) { w.mutable_legal()->set_issuing_authority(std::string(257, 'a')); },
         "legal.issuing_authority", "longer than 256 bytes"},
        {"authority not UTF-8",
         [](v1::Warrant& w) { w.mutable_legal()->set_issuing_authority("Amtsgericht \xC3\x28"); },
         "legal.issuing_authority", "not valid UTF-8"},
        {"authority overlong UTF-8",
         [](v1::Warrant& w) { w.mutable_legal()->set_issuing_authority("A \xC0\xAF"); },
         "legal.issuing_authority", "not valid UTF-8"},
        {"authority truncated UTF-8",
         [](v1::Warrant& w) { w.mutable_legal()->set_issuing_authority("Amtsgericht \xE2\x82"); },
         "legal.issuing_authority", "not valid UTF-8"},
        {"no reference", [](v1::Warrant& w) { w.mutable_legal()->clear_reference(); },
         "legal.reference", "must be set"},
        {"reference with newline",
         [](v1::Warrant& w) { w.mutable_legal()->set_reference("353\nkind=2"); }, "legal.reference",
         "control character at byte 3"},
        {"no jurisdiction", [](v1::Warrant& w) { w.mutable_legal()->clear_jurisdiction(); },
         "legal.jurisdiction", "must be set"},
        {"lower-case jurisdiction",
         [](v1::Warrant& w) { w.mutable_legal()->set_jurisdiction("de"); }, "legal.jurisdiction",
         "not an ISO 3166-1 alpha-2 code"},
        {"alpha-3 jurisdiction", [](v1::Warrant& w) { w.mutable_legal()->set_jurisdiction("DEU"); },
         "legal.jurisdiction", "not an ISO 3166-1 alpha-2 code"},
        {"unassigned jurisdiction",
         [](v1::Warrant& w) { w.mutable_legal()->set_jurisdiction("XX"); }, "legal.jurisdiction",
         "not an ISO 3166-1 alpha-2 code"},
        {"reserved jurisdiction UK",
         [](v1::Warrant& w) { w.mutable_legal()->set_jurisdiction("UK"); }, "legal.jurisdiction",
         "not an ISO 3166-1 alpha-2 code"},
        {"no kind", [](v1::Warrant& w) { w.mutable_legal()->clear_kind(); }, "legal.kind",
         "must be set"},
        {"unknown kind", [](v1::Warrant& w) { w.mutable_legal()->set_kind(v1::WarrantKind(9)); },
         "legal.kind", "unknown warrant kind 9"},
        {"confirmation of a court order",
         [](v1::Warrant& w) { w.mutable_legal()->set_confirmation_reference("ER 7/26"); },
         "legal.confirmation_reference", "only an emergency warrant is confirmed"},
        {"confirmation with control character",
         [](v1::Warrant& w) {
             w.mutable_legal()->set_kind(v1::WARRANT_KIND_EMERGENCY);
             w.mutable_legal()->set_confirmation_reference("ER\t7");
         },
         "legal.confirmation_reference", "control character at byte 2"},
        {"key id with space", [](v1::Warrant& w) { w.set_key_id("authority 1"); }, "key_id",
         "not 1 to 64 characters"},
        {"key id path", [](v1::Warrant& w) { w.set_key_id("../etc/key"); }, "key_id",
         "not 1 to 64 characters"},
        {"key id too long", [](v1::Warrant& w) { w.set_key_id(std::string(65, 'k')); }, "key_id",
         "not 1 to 64 characters"},
    };
    std::set<std::string> fields;
    for (const Case& c : cases) {
        v1::Warrant w = valid_warrant();
        c.mutate(w);
        const cp::ValidationError e = cp::validate_warrant(w, context());
        INFO(c.name << " -> " << cp::percent_escape(e.message));
        CHECK(e.code == c.code);
        CHECK(e.field == c.field);
        CHECK(e.message.rfind(c.field + ": ", 0) == 0);
        CHECK(e.message.find(c.reason) != std::string::npos);
        CHECK(e.message.find('\n') == std::string::npos);
        check_no_target_in(e.message, w);
        fields.insert(e.field.substr(0, e.field.find('[')));
    }
    // Every top-level field that has a rule has a failing case above.
    for (const char* f :
         {"xid", "liid", "targets", "delivery_type", "destination_ids", "valid_from", "valid_until",
          "legal", "legal.issuing_authority", "legal.reference", "legal.jurisdiction", "legal.kind",
          "legal.confirmation_reference", "key_id"}) {
        INFO(f);
        CHECK(fields.count(f) == 1);
    }
}

TEST_CASE("a window that already ended is refused when the clock is given", "[warrant][validate]") {
    v1::Warrant w = valid_warrant();
    cp::ValidationContext ctx = context();
    ctx.now = kT1 - 1ns;
    CHECK(cp::validate_warrant(w, ctx).ok());
    ctx.now = kT1;
    const cp::ValidationError e = cp::validate_warrant(w, ctx);
    CHECK(e.code == cp::ValidationCode::InvalidArgument);
    CHECK(e.message == "valid_until: the window has already ended");
}

TEST_CASE("validation errors of hostile target values never echo the value",
          "[warrant][validate]") {
    // Each value carries "secret" so that a partial echo is caught too.
    const std::vector<std::string> values = {
        "secret",
        "sip:secret",
        "sip:secret@",
        "sip:secret@exa mple.test",
        "sip:secret@example.test\r\nX-Injected: 1",
        "sip:secret%zz@example.test",
        "tel:+49secret",
        "+49 30 secret",
        "sip:secret*@*",
        "secret/24",
        "10.0.0.1/secret",
        "sip:" + std::string(300, 's') + "secret@example.test",
        "sips:*secret*@*.example.test",
        "tel:+49-30-*secret",
        std::string("sip:secret\0@example.test", 24),
        "sip:secret\xFF@example.test",
    };
    std::size_t refused = 0;
    for (const std::string& v : values) {
        for (int type = 1; type <= 5; ++type) {
            v1::Warrant w = valid_warrant();
            add_target(w, v1::IdentityType(type), v);
            const cp::ValidationError e = cp::validate_warrant(w, context());
            INFO(cp::percent_escape(v)
                 << " as type " << type << " -> " << cp::percent_escape(e.message));
            if (e.ok()) continue;  // a valid SIP glob or host-only URI, for its own type
            ++refused;
            CHECK(e.field == "targets[5].value");
            CHECK(e.message.find("secret") == std::string::npos);
            CHECK(e.message.find(v) == std::string::npos);
        }
    }
    // Each value is wrong for four types at least.
    CHECK(refused >= values.size() * 4);
}

TEST_CASE("validation agrees with the dataplane's parse_target", "[warrant][validate]") {
    // Whatever validates must be accepted by the dataplane parser with the same plan: the
    // control plane relies on it when it publishes the targets.
    const char* plan_values[] = {"030 1234567", "0049 30 1234567"};
    cp::ValidationContext ctx = context();
    ctx.plan = tapwire::NumberingPlan{"49", "0", "00"};
    for (const char* v : plan_values) {
        // Not an E.164 value as written ('+' is required), whatever the plan makes of it.
        v1::Warrant w = valid_warrant();
        w.mutable_targets(2)->set_value(v);
        CHECK_FALSE(cp::validate_warrant(w, ctx).ok());
        // As a tel: URI of a local number it is accepted (the plan rewrites it).
        w.mutable_targets(2)->set_type(v1::IDENTITY_TYPE_TEL_URI);
        w.mutable_targets(2)->set_value(std::string("tel:") + v);
        const cp::ValidationError e = cp::validate_warrant(w, ctx);
        INFO(e.message);
        CHECK(e.ok());
    }
}

TEST_CASE("ISO 3166-1 alpha-2 codes", "[warrant][validate]") {
    CHECK(cp::is_iso3166_alpha2("DE"));
    CHECK(cp::is_iso3166_alpha2("US"));
    CHECK(cp::is_iso3166_alpha2("GB"));
    CHECK(cp::is_iso3166_alpha2("AD"));  // first
    CHECK(cp::is_iso3166_alpha2("ZW"));  // last
    CHECK_FALSE(cp::is_iso3166_alpha2("UK"));
    CHECK_FALSE(cp::is_iso3166_alpha2("EU"));
    CHECK_FALSE(cp::is_iso3166_alpha2("de"));
    CHECK_FALSE(cp::is_iso3166_alpha2("D"));
    CHECK_FALSE(cp::is_iso3166_alpha2(""));
    CHECK_FALSE(cp::is_iso3166_alpha2("DEU"));

    // The embedded list is exactly Debian's iso-codes list, when that is installed.
    std::ifstream in("/usr/share/iso-codes/json/iso_3166-1.json");
    if (!in) {
        WARN("iso-codes not installed: ISO 3166-1 list not cross-checked");
        return;
    }
    std::stringstream s;
    s << in.rdbuf();
    const std::string json = s.str();
    std::set<std::string> codes;
    const std::string key = "\"alpha_2\": \"";
    for (auto p = json.find(key); p != std::string::npos; p = json.find(key, p + 1))
        codes.insert(json.substr(p + key.size(), 2));
    CHECK(codes.size() == 249);
    for (const std::string& c : codes) {
        INFO(c);
        CHECK(cp::is_iso3166_alpha2(c));
    }
    int accepted = 0;
    for (char a = 'A'; a <= 'Z'; ++a)
        for (char b = 'A'; b <= 'Z'; ++b)
            accepted += cp::is_iso3166_alpha2(std::string{a, b});
    CHECK(std::size_t(accepted) == codes.size());
}

TEST_CASE("validation codes map to gRPC status codes", "[warrant][validate]") {
    CHECK(cp::grpc_status_code(cp::ValidationCode::Ok) == int(grpc::StatusCode::OK));
    CHECK(cp::grpc_status_code(cp::ValidationCode::InvalidArgument) ==
          int(grpc::StatusCode::INVALID_ARGUMENT));
    CHECK(cp::grpc_status_code(cp::ValidationCode::FailedPrecondition) ==
          int(grpc::StatusCode::FAILED_PRECONDITION));
    CHECK(std::string(cp::to_string(cp::ValidationCode::FailedPrecondition)) ==
          "failed_precondition");
    CHECK(std::string(cp::to_string(cp::SignatureResult::UnknownKey)) == "unknown_key");
}

// ---------------------------------------------------------------------------------------
// Canonical encoding

TEST_CASE("canonical encoding is the documented byte string", "[warrant][canonical]") {
    v1::Warrant w = valid_warrant();
    w.mutable_valid_until()->set_nanos(500);
    w.add_destination_ids("lemf-2");
    w.mutable_legal()->set_issuing_authority("Amtsgericht M\xC3\xBCnchen 100%");
    w.set_signature(std::string(64, 'x'));  // never encoded
    const std::string expected =
        "tapwire-warrant-v1\n"
        "xid=3f1c2a4e-8b7d-4c3e-9f10-2a3b4c5d6e7f\n"
        "liid=DE-LI-0001\n"
        "target=1:sip:secret-alice@example.test\n"
        "target=2:tel:+49-30-1234-5678\n"
        "target=3:+44 20 7946 0000\n"
        "target=4:192.0.2.7\n"
        "target=5:2001:db8::/48\n"
        "delivery=2\n"
        "destination=lemf-1\n"
        "destination=lemf-2\n"
        "valid_from=1767225600.000000000\n"
        "valid_until=1775001600.000000500\n"
        "authority=Amtsgericht M%C3%BCnchen 100%25\n"
        "reference=353 Gs 1234/26\n"
        "jurisdiction=DE\n"
        "kind=1\n"
        "confirmation=\n"
        "key_id=authority-1\n";
    CHECK(cp::canonical_encoding(w) == expected);
    // Stable: the same warrant always encodes the same, serialised or not.
    v1::Warrant copy;
    REQUIRE(copy.ParseFromString(w.SerializeAsString()));
    CHECK(cp::canonical_encoding(copy) == expected);
}

TEST_CASE("canonical encoding of unset and odd values", "[warrant][canonical]") {
    v1::Warrant w;
    CHECK(cp::canonical_encoding(w) ==
          "tapwire-warrant-v1\nxid=\nliid=\ndelivery=0\nvalid_from=\nvalid_until=\n"
          "authority=\nreference=\njurisdiction=\nkind=0\nconfirmation=\nkey_id=\n");
    // A set timestamp at the epoch differs from an unset one.
    w.mutable_valid_from();
    CHECK(cp::canonical_encoding(w).find("valid_from=0.000000000\n") != std::string::npos);
    // Unknown enum numbers and out-of-range timestamps still encode deterministically.
    w.set_delivery_type(v1::DeliveryType(-3));
    w.mutable_valid_from()->set_seconds(-5);
    w.mutable_valid_from()->set_nanos(-7);
    const std::string e = cp::canonical_encoding(w);
    CHECK(e.find("delivery=-3\n") != std::string::npos);
    CHECK(e.find("valid_from=-5.-00000007\n") != std::string::npos);
    CHECK(cp::percent_escape(std::string("a%b\n\r\t\x7f\x80 =:~", 12)) ==
          "a%25b%0A%0D%09%7F%80 =:~");
    CHECK(cp::percent_escape(std::string("\0", 1)) == "%00");
}

namespace {

// Decodes a canonical encoding back into a warrant: it exists, so the encoding is injective
// (two warrants that encode equal are equal, signature aside).
bool decode(const std::string& text, v1::Warrant& w) {
    auto unescape = [](std::string_view s, std::string& out) {
        out.clear();
        for (std::size_t i = 0; i < s.size(); ++i) {
            if (s[i] != '%') {
                if (s[i] < 0x20 || s[i] > 0x7E) return false;
                out += s[i];
                continue;
            }
            if (s.size() - i < 3) return false;
            out += char(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16));
            i += 2;
        }
        return true;
    };
    auto time = [](std::string_view s, google::protobuf::Timestamp* t) {
        const auto dot = s.find('.');
        t->set_seconds(std::stoll(std::string(s.substr(0, dot))));
        t->set_nanos(std::stoi(std::string(s.substr(dot + 1))));
    };
    w.Clear();
    std::istringstream in(text);
    std::string line, value;
    if (!std::getline(in, line) || line != "tapwire-warrant-v1") return false;
    while (std::getline(in, line)) {
        const auto eq = line.find('=');
        if (eq == std::string::npos) return false;
        const std::string name = line.substr(0, eq);
        const std::string_view raw = std::string_view(line).substr(eq + 1);
        if (name == "target") {
            const auto colon = raw.find(':');
            if (!unescape(raw.substr(colon + 1), value)) return false;
            add_target(w, v1::IdentityType(std::stoi(std::string(raw.substr(0, colon)))), value);
            continue;
        }
        if (name == "delivery" || name == "kind") {
            const int n = std::stoi(std::string(raw));
            if (name == "kind") {
                if (n) w.mutable_legal()->set_kind(v1::WarrantKind(n));
            } else {
                w.set_delivery_type(v1::DeliveryType(n));
            }
            continue;
        }
        if (name == "valid_from" || name == "valid_until") {
            if (!raw.empty())
                time(raw, name == "valid_from" ? w.mutable_valid_from() : w.mutable_valid_until());
            continue;
        }
        if (!unescape(raw, value)) return false;
        if (name == "xid") {
            w.set_xid(value);
        } else if (name == "liid") {
            w.set_liid(value);
        } else if (name == "destination") {
            w.add_destination_ids(value);
        } else if (name == "authority") {
            if (!value.empty()) w.mutable_legal()->set_issuing_authority(value);
        } else if (name == "reference") {
            if (!value.empty()) w.mutable_legal()->set_reference(value);
        } else if (name == "jurisdiction") {
            if (!value.empty()) w.mutable_legal()->set_jurisdiction(value);
        } else if (name == "confirmation") {
            if (!value.empty()) w.mutable_legal()->set_confirmation_reference(value);
        } else if (name == "key_id") {
            w.set_key_id(value);
        } else {
            return false;
        }
    }
    return true;
}

// Random warrants over an alphabet full of the encoding's own syntax.
v1::Warrant random_warrant(std::mt19937_64& rng) {
    static const std::string kAlphabet =
        std::string("a=:%\n\r.-Z0", 11) + std::string(1, '\0') + "\xC3\xBC\x7F target=xid=";
    auto str = [&](std::size_t max) {
        std::string s;
        const std::size_t n = rng() % (max + 1);
        for (std::size_t i = 0; i < n; ++i)
            s += kAlphabet[rng() % kAlphabet.size()];
        return s;
    };
    v1::Warrant w;
    w.set_xid(str(6));
    w.set_liid(str(6));
    for (std::size_t i = rng() % 4; i > 0; --i)
        add_target(w, v1::IdentityType(int(rng() % 7) - 1), str(8));
    w.set_delivery_type(v1::DeliveryType(rng() % 4));
    for (std::size_t i = rng() % 3; i > 0; --i)
        w.add_destination_ids(str(4));
    if (rng() % 4) {
        w.mutable_valid_from()->set_seconds(std::int64_t(rng() % 5) - 2);
        w.mutable_valid_from()->set_nanos(int(rng() % 3) * 500000000);
    }
    if (rng() % 4) w.mutable_valid_until()->set_seconds(std::int64_t(rng() % 3));
    if (rng() % 4) {
        v1::LegalMetadata* l = w.mutable_legal();
        l->set_issuing_authority(str(4));
        l->set_reference(str(4));
        l->set_jurisdiction(str(2));
        l->set_kind(v1::WarrantKind(rng() % 4));
        l->set_confirmation_reference(str(3));
    }
    w.set_key_id(str(3));
    return w;
}

// Equal as the canonical encoding sees them: signature ignored, an all-default legal the
// same as none (documented).
bool same_signed_content(v1::Warrant a, v1::Warrant b) {
    for (v1::Warrant* w : {&a, &b}) {
        w->clear_signature();
        if (w->has_legal() && w->legal().ByteSizeLong() == 0) w->clear_legal();
    }
    return google::protobuf::util::MessageDifferencer::Equals(a, b);
}

}  // namespace

TEST_CASE("canonical encoding is injective: no value can forge another field",
          "[warrant][canonical]") {
    SECTION("a liid holding a newline and another field") {
        v1::Warrant a = valid_warrant(), b = valid_warrant();
        a.set_liid("DE-LI-0001\nxid=3f1c2a4e-8b7d-4c3e-9f10-000000000000");
        const std::string e = cp::canonical_encoding(a);
        CHECK(e.find("liid=DE-LI-0001%0Axid=3f1c2a4e-8b7d-4c3e-9f10-000000000000\n") !=
              std::string::npos);
        const std::string eb = cp::canonical_encoding(b);
        CHECK(std::count(e.begin(), e.end(), '\n') == std::count(eb.begin(), eb.end(), '\n'));
        CHECK(e != cp::canonical_encoding(b));
    }
    SECTION("one target holding a second target line") {
        v1::Warrant a = valid_warrant(), b = valid_warrant();
        a.clear_targets();
        add_target(a, v1::IDENTITY_TYPE_SIP_URI, "sip:a@x.example\ntarget=1:sip:b@x.example");
        b.clear_targets();
        add_target(b, v1::IDENTITY_TYPE_SIP_URI, "sip:a@x.example");
        add_target(b, v1::IDENTITY_TYPE_SIP_URI, "sip:b@x.example");
        CHECK(cp::canonical_encoding(a) != cp::canonical_encoding(b));
    }
    SECTION("an escaped form and the raw byte") {
        v1::Warrant a = valid_warrant(), b = valid_warrant();
        a.set_liid("L%0A");
        b.set_liid("L\n");
        CHECK(cp::canonical_encoding(a) != cp::canonical_encoding(b));
    }
    SECTION("a destination moved into a target") {
        v1::Warrant a = valid_warrant(), b = valid_warrant();
        a.set_key_id("k\ndestination=lemf-2");
        b.set_key_id("k");
        b.add_destination_ids("lemf-2");
        CHECK(cp::canonical_encoding(a) != cp::canonical_encoding(b));
    }
    SECTION("random warrants decode back from their encoding") {
        std::mt19937_64 rng(20260101);
        for (int i = 0; i < 20000; ++i) {
            const v1::Warrant w = random_warrant(rng);
            const std::string e = cp::canonical_encoding(w);
            v1::Warrant back;
            INFO(cp::percent_escape(e));
            REQUIRE(decode(e, back));
            REQUIRE(same_signed_content(w, back));
        }
    }
}

TEST_CASE("C++ and Python canonical encodings are byte-equal", "[warrant][canonical][python]") {
    std::string out;
    if (run("/usr/bin/python3 -c 'import google.protobuf' 2>/dev/null", out) != 0) {
        WARN("SKIPPED: /usr/bin/python3 with python3-protobuf is not installed");
        return;
    }
    if (run("protoc --version 2>/dev/null", out) != 0) {
        WARN("SKIPPED: protoc is not installed");
        return;
    }
    const std::string src = source_dir();
    TempDir tmp;
    const std::string stubs = tmp.file("stubs");
    fs::create_directory(stubs);
    REQUIRE(run("protoc -I '" + src + "/proto' --python_out='" + stubs + "' '" + src +
                    "/proto/tapwire/v1/identity.proto' '" + src +
                    "/proto/tapwire/v1/controlplane.proto' 2>&1",
                out) == 0);

    std::vector<v1::Warrant> warrants;
    warrants.push_back(valid_warrant());
    warrants.push_back(v1::Warrant{});
    {
        v1::Warrant w = valid_warrant();
        w.set_liid("L\nxid=1%25 =:\x7f\t\r");
        w.mutable_targets(0)->set_value("sip:J\xC3\xBCrgen@b\xC3\xBCro.example;x=%41\n");
        add_target(w, v1::IdentityType(42), "=:=");
        w.set_delivery_type(v1::DeliveryType(-1));
        w.add_destination_ids("d\xE2\x82\xAC");
        w.add_destination_ids("");
        w.mutable_valid_from()->set_seconds(-62135596800);
        w.mutable_valid_from()->set_nanos(-42);
        w.mutable_valid_until()->set_seconds(253402300799);
        w.mutable_valid_until()->set_nanos(999999999);
        w.mutable_legal()->set_issuing_authority("\xF0\x9F\x94\x92 authority");
        w.mutable_legal()->set_kind(v1::WarrantKind(77));
        w.mutable_legal()->set_confirmation_reference("%%");
        w.set_key_id("\x01");
        w.set_signature("ignored");
        warrants.push_back(w);
    }
    {
        v1::Warrant w = valid_warrant();
        w.clear_legal();
        w.clear_valid_until();
        w.mutable_legal();  // set but empty: encodes like unset
        w.mutable_valid_from()->set_nanos(7);
        warrants.push_back(w);
    }
    std::mt19937_64 rng(7);
    // Draw until 12 usable random warrants are kept: how many draws that takes depends on
    // the compiler (argument evaluation order in random_warrant), not on the code under test.
    for (int i = 0, kept = 0; kept < 12 && i < 1000; ++i) {
        v1::Warrant w = random_warrant(rng);
        // Python strings must be valid UTF-8, and the random alphabet splits its one
        // non-ASCII character (C3 BC): keep the random warrants without it.
        const std::string e = cp::canonical_encoding(w);
        if (e.find("%C3") != std::string::npos || e.find("%BC") != std::string::npos) continue;
        warrants.push_back(w);
        ++kept;
    }
    CHECK(warrants.size() > 10);
    for (std::size_t i = 0; i < warrants.size(); ++i) {
        const v1::Warrant& w = warrants[i];
        std::string text;
        REQUIRE(google::protobuf::TextFormat::PrintToString(w, &text));
        v1::Warrant reparsed;
        REQUIRE(google::protobuf::TextFormat::ParseFromString(text, &reparsed));
        REQUIRE(cp::canonical_encoding(reparsed) == cp::canonical_encoding(w));
        const std::string path = tmp.file("w" + std::to_string(i) + ".textproto");
        write_text(path, text);
        const int rc =
            run("/usr/bin/python3 '" + src + "/tests/unit/warrant_canonical.py' --stubs '" + stubs +
                    "' '" + path + "'",
                out);
        INFO("warrant " << i << ":\n" << text);
        REQUIRE(rc == 0);
        CHECK(out == cp::canonical_encoding(w));
    }
}

// ---------------------------------------------------------------------------------------
// Keys and signatures

TEST_CASE("sign and verify round-trip", "[warrant][signature]") {
    cp::PkeyPtr key = new_key();
    cp::AuthorityKeys keys;
    REQUIRE(keys.add("authority-1", public_part(key.get())) == "");
    v1::Warrant w = valid_warrant();
    REQUIRE(cp::sign_warrant(w, key.get()) == "");
    CHECK(w.signature().size() == cp::kEd25519SignatureLength);
    const cp::SignatureCheck c = cp::verify_warrant_signature(w, keys);
    INFO(c.message);
    CHECK(c.ok());
    CHECK(c.message.empty());

    // Ed25519 is deterministic (RFC 8032): the same warrant signs the same.
    v1::Warrant again = valid_warrant();
    REQUIRE(cp::sign_warrant(again, key.get()) == "");
    CHECK(again.signature() == w.signature());

    // The signature is plain Ed25519 over the canonical bytes, so any signer that
    // reproduces canonical_encoding (another language) makes signatures that verify.
    const std::string bytes = cp::canonical_encoding(w);
    EVP_MD_CTX* md = EVP_MD_CTX_new();
    REQUIRE(EVP_DigestVerifyInit(md, nullptr, nullptr, nullptr, key.get()) == 1);
    CHECK(EVP_DigestVerify(md, reinterpret_cast<const unsigned char*>(w.signature().data()),
                           w.signature().size(),
                           reinterpret_cast<const unsigned char*>(bytes.data()),
                           bytes.size()) == 1);
    EVP_MD_CTX_free(md);

    // It survives the wire.
    v1::Warrant wire;
    REQUIRE(wire.ParseFromString(w.SerializeAsString()));
    CHECK(cp::verify_warrant_signature(wire, keys).ok());
}

namespace {

// One mutation of one field, found by reflection so that a field added to Warrant later is
// covered without anyone remembering to add it here.
struct Mutation {
    std::string path;
    std::function<void(v1::Warrant&)> apply;
};

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;

// Navigates from the warrant to the message at `path` (indices of (field, element)).
using Steps = std::vector<std::pair<const FieldDescriptor*, int>>;

Message* walk(v1::Warrant& w, const Steps& steps) {
    Message* m = &w;
    for (const auto& [f, index] : steps) {
        const auto* r = m->GetReflection();
        m = f->is_repeated() ? r->MutableRepeatedMessage(m, f, index) : r->MutableMessage(m, f);
    }
    return m;
}

void collect(const Message& m, const Steps& steps, const std::string& prefix,
             std::vector<Mutation>& out) {
    const auto* d = m.GetDescriptor();
    const auto* r = m.GetReflection();
    for (int i = 0; i < d->field_count(); ++i) {
        const FieldDescriptor* f = d->field(i);
        if (steps.empty() && f->name() == "signature") continue;
        const std::string path = prefix + f->name();
        auto at = [steps](v1::Warrant& w) { return walk(w, steps); };
        if (f->is_repeated()) {
            const int n = r->FieldSize(m, f);
            out.push_back({path + " (one more)", [at, f](v1::Warrant& w) {
                               Message* x = at(w);
                               const auto* xr = x->GetReflection();
                               switch (f->cpp_type()) {
                                   case FieldDescriptor::CPPTYPE_STRING:
                                       xr->AddString(x, f, "lemf-2");
                                       break;
                                   case FieldDescriptor::CPPTYPE_MESSAGE: {
                                       Message* e = xr->AddMessage(x, f);
                                       // A copy of the first element (an empty one if none).
                                       if (xr->FieldSize(*x, f) > 1)
                                           e->CopyFrom(xr->GetRepeatedMessage(*x, f, 0));
                                       break;
                                   }
                                   default:
                                       FAIL("unhandled repeated field type");
                               }
                           }});
            if (n >= 1)
                out.push_back({path + " (last removed)", [at, f](v1::Warrant& w) {
                                   Message* x = at(w);
                                   x->GetReflection()->RemoveLast(x, f);
                               }});
            if (n >= 2)
                out.push_back({path + " (reordered)", [at, f](v1::Warrant& w) {
                                   Message* x = at(w);
                                   x->GetReflection()->SwapElements(x, f, 0, 1);
                               }});
            if (n >= 1) {
                if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
                    Steps next = steps;
                    next.emplace_back(f, n - 1);
                    collect(r->GetRepeatedMessage(m, f, n - 1), next,
                            path + "[" + std::to_string(n - 1) + "].", out);
                } else {
                    out.push_back({path + "[0] (changed)", [at, f](v1::Warrant& w) {
                                       Message* x = at(w);
                                       const auto* xr = x->GetReflection();
                                       xr->SetRepeatedString(x, f, 0,
                                                             xr->GetRepeatedString(*x, f, 0) + "x");
                                   }});
                }
            }
            continue;
        }
        switch (f->cpp_type()) {
            case FieldDescriptor::CPPTYPE_MESSAGE: {
                if (r->HasField(m, f)) {
                    out.push_back({path + " (cleared)", [at, f](v1::Warrant& w) {
                                       Message* x = at(w);
                                       x->GetReflection()->ClearField(x, f);
                                   }});
                    Steps next = steps;
                    next.emplace_back(f, 0);
                    collect(r->GetMessage(m, f), next, path + ".", out);
                } else {
                    out.push_back({path + " (set)", [at, f](v1::Warrant& w) {
                                       Message* x = at(w);
                                       x->GetReflection()->MutableMessage(x, f);
                                   }});
                }
                break;
            }
            case FieldDescriptor::CPPTYPE_STRING:
                out.push_back({path, [at, f](v1::Warrant& w) {
                                   Message* x = at(w);
                                   const auto* xr = x->GetReflection();
                                   std::string v = xr->GetString(*x, f);
                                   // Flip one character (or add one): same length where possible.
                                   if (v.empty()) {
                                       v = "x";
                                   } else {
                                       v[v.size() / 2] = char(v[v.size() / 2] ^ 1);
                                   }
                                   xr->SetString(x, f, v);
                               }});
                break;
            case FieldDescriptor::CPPTYPE_ENUM:
                out.push_back({path, [at, f](v1::Warrant& w) {
                                   Message* x = at(w);
                                   const auto* xr = x->GetReflection();
                                   xr->SetEnumValue(x, f, xr->GetEnumValue(*x, f) + 1);
                               }});
                break;
            case FieldDescriptor::CPPTYPE_INT64:
                out.push_back({path, [at, f](v1::Warrant& w) {
                                   Message* x = at(w);
                                   const auto* xr = x->GetReflection();
                                   xr->SetInt64(x, f, xr->GetInt64(*x, f) + 1);
                               }});
                break;
            case FieldDescriptor::CPPTYPE_INT32:
                out.push_back({path, [at, f](v1::Warrant& w) {
                                   Message* x = at(w);
                                   const auto* xr = x->GetReflection();
                                   xr->SetInt32(x, f, xr->GetInt32(*x, f) + 1);
                               }});
                break;
            default:
                FAIL("field " << path << " has a type this test does not mutate");
        }
    }
}

}  // namespace

TEST_CASE("tampering with any field breaks the signature", "[warrant][signature]") {
    cp::PkeyPtr key = new_key();
    cp::AuthorityKeys keys;
    REQUIRE(keys.add("authority-1", public_part(key.get())) == "");
    v1::Warrant signed_warrant = valid_warrant();
    signed_warrant.add_destination_ids("lemf-2");
    signed_warrant.mutable_legal()->set_kind(v1::WARRANT_KIND_EMERGENCY);
    signed_warrant.mutable_legal()->set_confirmation_reference("ER 7/26");
    signed_warrant.mutable_valid_from()->set_nanos(250);
    REQUIRE(cp::sign_warrant(signed_warrant, key.get()) == "");
    REQUIRE(cp::verify_warrant_signature(signed_warrant, keys).ok());

    std::vector<Mutation> mutations;
    collect(signed_warrant, {}, "", mutations);
    std::set<std::string> leaves;
    for (const Mutation& m : mutations) {
        v1::Warrant w = signed_warrant;
        m.apply(w);
        INFO(m.path);
        REQUIRE_FALSE(google::protobuf::util::MessageDifferencer::Equals(w, signed_warrant));
        CHECK(cp::canonical_encoding(w) != cp::canonical_encoding(signed_warrant));
        const cp::SignatureCheck c = cp::verify_warrant_signature(w, keys);
        CHECK_FALSE(c.ok());
        CHECK(c.result == (m.path == "key_id" ? cp::SignatureResult::UnknownKey
                                              : cp::SignatureResult::BadSignature));
        leaves.insert(m.path.substr(0, m.path.find(' ')));
    }
    // Every field of the message was reached (the reflection walk covers new fields too).
    for (const char* f : {"xid",
                          "liid",
                          "targets",
                          "targets[4].type",
                          "targets[4].value",
                          "delivery_type",
                          "destination_ids",
                          "destination_ids[0]",
                          "valid_from",
                          "valid_from.seconds",
                          "valid_from.nanos",
                          "valid_until.seconds",
                          "valid_until.nanos",
                          "legal",
                          "legal.issuing_authority",
                          "legal.reference",
                          "legal.jurisdiction",
                          "legal.kind",
                          "legal.confirmation_reference",
                          "key_id"}) {
        INFO(f);
        CHECK(leaves.count(f) == 1);
    }

    SECTION("the signature itself") {
        for (std::size_t byte : {std::size_t(0), std::size_t(31), std::size_t(63)}) {
            v1::Warrant w = signed_warrant;
            std::string sig = w.signature();
            sig[byte] = char(sig[byte] ^ 0x01);
            w.set_signature(sig);
            CHECK(cp::verify_warrant_signature(w, keys).result ==
                  cp::SignatureResult::BadSignature);
        }
        v1::Warrant w = signed_warrant;
        w.set_signature(signed_warrant.signature().substr(0, 63));
        cp::SignatureCheck c = cp::verify_warrant_signature(w, keys);
        CHECK(c.result == cp::SignatureResult::BadSignature);
        CHECK(c.message == "signature: 63 bytes, an Ed25519 signature has 64");
        w.set_signature(signed_warrant.signature() + "x");
        CHECK(cp::verify_warrant_signature(w, keys).result == cp::SignatureResult::BadSignature);
        w.clear_signature();
        c = cp::verify_warrant_signature(w, keys);
        CHECK(c.result == cp::SignatureResult::MissingSignature);
        CHECK(c.message.rfind("signature: ", 0) == 0);
    }
    SECTION("a signature made for another warrant") {
        v1::Warrant other = valid_warrant();
        REQUIRE(cp::sign_warrant(other, key.get()) == "");
        v1::Warrant w = signed_warrant;
        w.set_signature(other.signature());
        CHECK(cp::verify_warrant_signature(w, keys).result == cp::SignatureResult::BadSignature);
    }
}

TEST_CASE("unknown, missing and substituted keys", "[warrant][signature]") {
    cp::PkeyPtr a = new_key(), b = new_key();
    cp::AuthorityKeys keys;
    REQUIRE(keys.add("authority-a", public_part(a.get())) == "");
    REQUIRE(keys.add("authority-b", public_part(b.get())) == "");
    CHECK(keys.size() == 2);
    CHECK(keys.key_ids() == std::vector<std::string>{"authority-a", "authority-b"});

    v1::Warrant w = valid_warrant();
    w.set_key_id("authority-a");
    REQUIRE(cp::sign_warrant(w, a.get()) == "");
    CHECK(cp::verify_warrant_signature(w, keys).ok());

    SECTION("key id of no configured key") {
        v1::Warrant u = valid_warrant();
        u.set_key_id("authority-z");
        REQUIRE(cp::sign_warrant(u, a.get()) == "");
        const cp::SignatureCheck c = cp::verify_warrant_signature(u, keys);
        CHECK(c.result == cp::SignatureResult::UnknownKey);
        CHECK(c.message == "key_id: no authority key 'authority-z' is configured");
        CHECK(cp::verify_warrant_signature(u, cp::AuthorityKeys{}).result ==
              cp::SignatureResult::UnknownKey);
    }
    SECTION("a hostile key id is escaped in the message") {
        v1::Warrant u = w;
        u.set_key_id("x\ny");
        const cp::SignatureCheck c = cp::verify_warrant_signature(u, keys);
        CHECK(c.result == cp::SignatureResult::UnknownKey);
        CHECK(c.message.find('\n') == std::string::npos);
        CHECK(c.message.find("x%0Ay") != std::string::npos);
    }
    SECTION("no key id") {
        v1::Warrant u = w;
        u.clear_key_id();
        const cp::SignatureCheck c = cp::verify_warrant_signature(u, keys);
        CHECK(c.result == cp::SignatureResult::MissingSignature);
        CHECK(c.message.rfind("key_id: ", 0) == 0);
    }
    SECTION("signed by one authority, claiming another") {
        // key_id is signed, so relabelling breaks the signature; and a signature by key A
        // presented as B's never verifies with B's key.
        v1::Warrant u = valid_warrant();
        u.set_key_id("authority-b");
        REQUIRE(cp::sign_warrant(u, a.get()) == "");
        const cp::SignatureCheck c = cp::verify_warrant_signature(u, keys);
        CHECK(c.result == cp::SignatureResult::BadSignature);
        CHECK(c.message == "signature: does not verify with authority key 'authority-b'");
    }
}

TEST_CASE("authority key loading errors are clear", "[warrant][signature][keys]") {
    TempDir tmp;
    cp::PkeyPtr ed = new_key();
    EVP_PKEY* ec_raw = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
    REQUIRE(ec_raw);
    cp::PkeyPtr ec(ec_raw);

    SECTION("a directory of keys") {
        const fs::path dir = tmp.path / "keys";
        fs::create_directory(dir);
        write_text((dir / "authority-1.pem").string(), cp::public_key_pem(ed.get()));
        write_text((dir / "README.txt").string(), "not a key");
        write_text((dir / ".hidden.pem").string(), "not a key either");
        cp::AuthorityKeys keys;
        REQUIRE(keys.load_directory(dir.string()) == "");
        CHECK(keys.key_ids() == std::vector<std::string>{"authority-1"});
        v1::Warrant w = valid_warrant();
        REQUIRE(cp::sign_warrant(w, ed.get()) == "");
        CHECK(cp::verify_warrant_signature(w, keys).ok());

        // A second load of the same directory refuses the repeated id.
        std::string e = keys.load_directory(dir.string());
        CHECK(e.find("authority-1.pem") != std::string::npos);
        CHECK(e.find("configured twice") != std::string::npos);
    }
    SECTION("missing directory") {
        cp::AuthorityKeys keys;
        const std::string e = keys.load_directory(tmp.file("nope"));
        CHECK(e.rfind(tmp.file("nope") + ": cannot read the authority key directory", 0) == 0);
    }
    SECTION("empty directory") {
        cp::AuthorityKeys keys;
        const std::string e = keys.load_directory(tmp.path.string());
        CHECK(e.find("no authority keys") != std::string::npos);
    }
    SECTION("a key that is not Ed25519") {
        const std::string path = tmp.file("ec.pem");
        write_text(path, cp::public_key_pem(ec.get()));
        const cp::KeyResult r = cp::load_public_key_file(path);
        CHECK_FALSE(r.key);
        CHECK(r.error == path + ": not an Ed25519 key (found EC)");
        cp::AuthorityKeys keys;
        CHECK(keys.add_file("ec", path) == r.error);
        CHECK(keys.load_directory(tmp.path.string()) == r.error);
        CHECK(keys.add("ec", cp::PkeyPtr(EVP_PKEY_dup(ec.get()))) ==
              "authority key 'ec': not an Ed25519 key (found EC)");
        CHECK(keys.size() == 0);

        // Nor signs with one, nor loads one as a signing key.
        v1::Warrant w = valid_warrant();
        CHECK(cp::sign_warrant(w, ec.get()) == "not an Ed25519 key (found EC)");
        CHECK(w.signature().empty());
        const std::string priv = tmp.file("ec-private.pem");
        write_text(priv, cp::private_key_pem(ec.get()));
        CHECK(cp::load_private_key_file(priv).error == priv + ": not an Ed25519 key (found EC)");
    }
    SECTION("a private key where a public key belongs") {
        const std::string path = tmp.file("authority-1.pem");
        write_text(path, cp::private_key_pem(ed.get()));
        const cp::KeyResult r = cp::load_public_key_file(path);
        CHECK_FALSE(r.key);
        CHECK(r.error.find("holds a private key") != std::string::npos);
    }
    SECTION("signing needs the private key") {
        cp::PkeyPtr pub = public_part(ed.get());
        v1::Warrant w = valid_warrant();
        CHECK(cp::sign_warrant(w, pub.get()).find("signing failed") == 0);
        CHECK(w.signature().empty());
        const std::string path = tmp.file("pub.pem");
        write_text(path, cp::public_key_pem(ed.get()));
        CHECK(cp::load_private_key_file(path).error == path + ": not a PEM private key");
    }
    SECTION("unreadable and garbage files") {
        const cp::KeyResult missing = cp::load_public_key_file(tmp.file("missing.pem"));
        CHECK(missing.error.find("missing.pem: cannot read") != std::string::npos);
        const std::string garbage = tmp.file("garbage.pem");
        write_text(garbage, "-----BEGIN PUBLIC KEY-----\nnot base64!\n-----END PUBLIC KEY-----\n");
        CHECK(cp::load_public_key_file(garbage).error ==
              garbage + ": not a PEM public key (-----BEGIN PUBLIC KEY-----)");
        const std::string empty = tmp.file("empty.pem");
        write_text(empty, "");
        CHECK(cp::load_public_key_file(empty).error.find("not a PEM public key") !=
              std::string::npos);
        CHECK(cp::load_private_key_file(tmp.file("missing.pem")).error.find("cannot read") !=
              std::string::npos);
    }
    SECTION("key ids") {
        cp::AuthorityKeys keys;
        CHECK(keys.add("", public_part(ed.get())).find("not 1 to 64 characters") !=
              std::string::npos);
        CHECK(keys.add("a/b", public_part(ed.get())).find("not 1 to 64 characters") !=
              std::string::npos);
        CHECK(keys.add("a", nullptr) == "authority key 'a': no key");
        CHECK(keys.size() == 0);
    }
    SECTION("a private key round-trips through PEM") {
        const std::string path = tmp.file("priv.pem");
        write_text(path, cp::private_key_pem(ed.get()));
        const cp::KeyResult r = cp::load_private_key_file(path);
        REQUIRE(r.key);
        CHECK(EVP_PKEY_eq(r.key.get(), ed.get()) == 1);
    }
}

TEST_CASE("a signature made in Python verifies in C++", "[warrant][signature][python]") {
    std::string out;
    if (run("/usr/bin/python3 -c 'import google.protobuf, cryptography' 2>/dev/null", out) != 0) {
        WARN("SKIPPED: /usr/bin/python3 with python3-protobuf and python3-cryptography missing");
        return;
    }
    const std::string src = source_dir();
    TempDir tmp;
    const std::string stubs = tmp.file("stubs");
    fs::create_directory(stubs);
    REQUIRE(run("protoc -I '" + src + "/proto' --python_out='" + stubs + "' '" + src +
                    "/proto/tapwire/v1/identity.proto' '" + src +
                    "/proto/tapwire/v1/controlplane.proto' 2>&1",
                out) == 0);
    cp::PkeyPtr key = new_key();
    const std::string priv = tmp.file("priv.pem");
    write_text(priv, cp::private_key_pem(key.get()));
    v1::Warrant w = valid_warrant();
    w.mutable_legal()->set_issuing_authority("Amtsgericht M\xC3\xBCnchen");
    std::string text;
    REQUIRE(google::protobuf::TextFormat::PrintToString(w, &text));
    const std::string in = tmp.file("w.textproto");
    write_text(in, text);
    const std::string script = tmp.file("sign.py");
    write_text(script,
               "import sys\n"
               "sys.path.insert(0, sys.argv[1])\n"
               "import warrant_canonical as wc\n"
               "pb = wc._import_stubs(sys.argv[4])\n"
               "from google.protobuf import text_format\n"
               "from cryptography.hazmat.primitives.serialization import load_pem_private_key\n"
               "w = text_format.Parse(open(sys.argv[3]).read(), pb.Warrant())\n"
               "key = load_pem_private_key(open(sys.argv[2], 'rb').read(), None)\n"
               "sys.stdout.write(key.sign(wc.canonical_encoding(w)).hex())\n");
    REQUIRE(run("/usr/bin/python3 '" + script + "' '" + src + "/tests/unit' '" + priv + "' '" + in +
                    "' '" + stubs + "'",
                out) == 0);
    REQUIRE(out.size() == 128);
    std::string sig;
    for (std::size_t i = 0; i < out.size(); i += 2)
        sig += char(std::stoi(out.substr(i, 2), nullptr, 16));
    w.set_signature(sig);
    cp::AuthorityKeys keys;
    REQUIRE(keys.add("authority-1", public_part(key.get())) == "");
    const cp::SignatureCheck c = cp::verify_warrant_signature(w, keys);
    INFO(c.message);
    CHECK(c.ok());
}

// ---------------------------------------------------------------------------------------
// Time and state

TEST_CASE("timestamps convert both ways", "[warrant][state]") {
    google::protobuf::Timestamp t;
    t.set_seconds(kFrom);
    t.set_nanos(123456789);
    CHECK(cp::to_timestamp(t) == kT0 + 123456789ns);
    CHECK(cp::to_proto(cp::to_timestamp(t)).seconds() == kFrom);
    CHECK(cp::to_proto(cp::to_timestamp(t)).nanos() == 123456789);
    // Before the epoch: proto nanos stay non-negative.
    const google::protobuf::Timestamp before = cp::to_proto(cp::Timestamp(-1ns));
    CHECK(before.seconds() == -1);
    CHECK(before.nanos() == 999999999);
    CHECK(cp::to_timestamp(before) == cp::Timestamp(-1ns));
    // Beyond the representable range (valid proto timestamps): saturated, order kept.
    t.set_seconds(253402300799);
    CHECK(cp::to_timestamp(t) == cp::Timestamp::max());
    t.set_seconds(-62135596800);
    CHECK(cp::to_timestamp(t) == cp::Timestamp::min());
    t.set_seconds(9223372033);
    t.set_nanos(999999999);
    CHECK(cp::to_timestamp(t) < cp::Timestamp::max());
}

TEST_CASE("the window is half-open: valid_from inclusive, valid_until exclusive",
          "[warrant][state]") {
    const v1::Warrant w = valid_warrant();
    const cp::StateInputs in = cp::state_inputs(w, kT0 - 24h);
    CHECK_FALSE(in.emergency_deadline);
    CHECK(cp::state_at(in, cp::Timestamp::min()) == v1::WARRANT_STATE_PENDING);
    CHECK(cp::state_at(in, kT0 - 1ns) == v1::WARRANT_STATE_PENDING);
    CHECK(cp::state_at(in, kT0) == v1::WARRANT_STATE_ACTIVE);
    CHECK(cp::state_at(in, kT1 - 1ns) == v1::WARRANT_STATE_ACTIVE);
    CHECK(cp::state_at(in, kT1) == v1::WARRANT_STATE_LAPSED);
    CHECK(cp::state_at(in, cp::Timestamp::max()) == v1::WARRANT_STATE_LAPSED);

    CHECK(cp::next_transition(in, kT0 - 1h) == kT0);
    CHECK(cp::next_transition(in, kT0) == kT1);
    CHECK(cp::next_transition(in, kT1 - 1ns) == kT1);
    CHECK_FALSE(cp::next_transition(in, kT1));

    // Back to back: the next warrant's first instant is this one's first lapsed instant.
    cp::StateInputs next = in;
    next.valid_from = kT1;
    next.valid_until = kT1 + 24h;
    for (cp::Timestamp t : {kT1 - 1ns, kT1}) {
        const bool a = cp::state_at(in, t) == v1::WARRANT_STATE_ACTIVE;
        const bool b = cp::state_at(next, t) == v1::WARRANT_STATE_ACTIVE;
        CHECK(a != b);
    }
}

TEST_CASE("an emergency warrant lapses at its deadline unless confirmed", "[warrant][state]") {
    v1::Warrant w = valid_warrant();
    w.mutable_legal()->set_kind(v1::WARRANT_KIND_EMERGENCY);
    const cp::Timestamp accepted = kT0 + 3h;

    SECTION("the deadline counts from acceptance inside the window") {
        const auto d = cp::emergency_deadline(w, accepted);
        REQUIRE(d);
        CHECK(*d == accepted + 48h);
        CHECK(cp::emergency_deadline(w, accepted, 1h) == accepted + 1h);
        cp::StateInputs in = cp::state_inputs(w, accepted);
        REQUIRE(in.emergency_deadline == d);
        CHECK(cp::state_at(in, *d - 1ns) == v1::WARRANT_STATE_ACTIVE);
        CHECK(cp::state_at(in, *d) == v1::WARRANT_STATE_EMERGENCY_LAPSED);
        CHECK(cp::state_at(in, kT1) == v1::WARRANT_STATE_EMERGENCY_LAPSED);  // first end wins
        CHECK(cp::next_transition(in, accepted) == *d);
        CHECK_FALSE(cp::next_transition(in, *d));

        in.confirmed_at = *d - 1ns;  // just in time
        CHECK(cp::state_at(in, *d) == v1::WARRANT_STATE_ACTIVE);
        CHECK(cp::state_at(in, kT1 - 1ns) == v1::WARRANT_STATE_ACTIVE);
        CHECK(cp::state_at(in, kT1) == v1::WARRANT_STATE_LAPSED);
        CHECK(cp::next_transition(in, *d) == kT1);

        in.confirmed_at = *d;  // too late: it lapsed at that instant, and stays lapsed
        CHECK(cp::state_at(in, *d) == v1::WARRANT_STATE_EMERGENCY_LAPSED);
        CHECK(cp::state_at(in, *d + 1h) == v1::WARRANT_STATE_EMERGENCY_LAPSED);
    }
    SECTION("a scheduled emergency warrant counts from valid_from") {
        CHECK(cp::emergency_deadline(w, kT0 - 72h) == kT0 + 48h);
        const cp::StateInputs in = cp::state_inputs(w, kT0 - 72h);
        CHECK(cp::state_at(in, kT0 - 1ns) == v1::WARRANT_STATE_PENDING);
        CHECK(cp::state_at(in, kT0 + 48h - 1ns) == v1::WARRANT_STATE_ACTIVE);
        CHECK(cp::state_at(in, kT0 + 48h) == v1::WARRANT_STATE_EMERGENCY_LAPSED);
    }
    SECTION("no deadline for other kinds or when already confirmed") {
        w.mutable_legal()->set_confirmation_reference("353 Gs 99/26");
        CHECK_FALSE(cp::emergency_deadline(w, accepted));
        w.mutable_legal()->clear_confirmation_reference();
        w.mutable_legal()->set_kind(v1::WARRANT_KIND_COURT_ORDER);
        CHECK_FALSE(cp::emergency_deadline(w, accepted));
        w.mutable_legal()->set_kind(v1::WARRANT_KIND_PRESERVATION);
        CHECK_FALSE(cp::emergency_deadline(w, accepted));
    }
    SECTION("a deadline after the window lapses with the window") {
        const cp::StateInputs in = cp::state_inputs(w, kT1 - 1h);
        CHECK(cp::state_at(in, kT1) == v1::WARRANT_STATE_LAPSED);
        CHECK(cp::next_transition(in, kT1 - 1h) == kT1);
    }
    SECTION("the deadline saturates") {
        CHECK(cp::emergency_deadline(w, cp::Timestamp::max() - 1h) == cp::Timestamp::max());
    }
}

TEST_CASE("deactivation, and which end wins", "[warrant][state]") {
    cp::StateInputs in;
    in.valid_from = kT0;
    in.valid_until = kT1;
    SECTION("inside the window") {
        in.deactivated_at = kT0 + 1h;
        CHECK(cp::state_at(in, kT0 + 1h - 1ns) == v1::WARRANT_STATE_ACTIVE);
        CHECK(cp::state_at(in, kT0 + 1h) == v1::WARRANT_STATE_DEACTIVATED);
        CHECK(cp::state_at(in, kT1 + 1h) == v1::WARRANT_STATE_DEACTIVATED);
        CHECK(cp::next_transition(in, kT0) == kT0 + 1h);
    }
    SECTION("before the window: never active") {
        in.deactivated_at = kT0 - 1h;
        CHECK(cp::state_at(in, kT0 - 2h) == v1::WARRANT_STATE_PENDING);
        CHECK(cp::state_at(in, kT0 - 1h) == v1::WARRANT_STATE_DEACTIVATED);
        CHECK(cp::state_at(in, kT0) == v1::WARRANT_STATE_DEACTIVATED);
        CHECK(cp::next_transition(in, kT0 - 2h) == kT0 - 1h);
    }
    SECTION("after the window: it stays lapsed") {
        in.deactivated_at = kT1 + 1h;
        CHECK(cp::state_at(in, kT1 + 2h) == v1::WARRANT_STATE_LAPSED);
    }
    SECTION("ties: LAPSED, then EMERGENCY_LAPSED, then DEACTIVATED") {
        in.emergency_deadline = kT1;
        in.deactivated_at = kT1;
        CHECK(cp::state_at(in, kT1) == v1::WARRANT_STATE_LAPSED);
        in.emergency_deadline = kT0 + 1h;
        in.deactivated_at = kT0 + 1h;
        CHECK(cp::state_at(in, kT0 + 1h) == v1::WARRANT_STATE_EMERGENCY_LAPSED);
        in.emergency_deadline.reset();
        in.deactivated_at = kT1;
        CHECK(cp::state_at(in, kT1) == v1::WARRANT_STATE_LAPSED);
    }
}

TEST_CASE("next_transition is exactly where state_at changes", "[warrant][state]") {
    std::mt19937_64 rng(48);
    auto at = [&](int range_h) { return kT0 + std::chrono::hours(int(rng() % range_h)) - 24h; };
    for (int i = 0; i < 5000; ++i) {
        cp::StateInputs in;
        in.valid_from = at(100);
        in.valid_until = in.valid_from + std::chrono::hours(1 + rng() % 100);
        if (rng() % 2) in.emergency_deadline = at(150);
        if (rng() % 3 == 0) in.confirmed_at = at(150);
        if (rng() % 3 == 0) in.deactivated_at = at(150);
        cp::Timestamp now = at(50);
        // Walk every transition; each one changes the state, and nothing changes between.
        int steps = 0;
        while (auto next = cp::next_transition(in, now)) {
            const v1::WarrantState s = cp::state_at(in, now);
            REQUIRE(*next > now);
            CHECK(cp::state_at(in, *next - 1ns) == s);
            CHECK(cp::state_at(in, now + (*next - now) / 2) == s);
            REQUIRE(cp::state_at(in, *next) != s);
            now = *next;
            REQUIRE(++steps <= 3);
        }
        const v1::WarrantState final_state = cp::state_at(in, now);
        CHECK(final_state != v1::WARRANT_STATE_PENDING);
        CHECK(final_state != v1::WARRANT_STATE_ACTIVE);
        CHECK(cp::state_at(in, cp::Timestamp::max()) == final_state);
    }
}
