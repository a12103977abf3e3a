#include <catch2/catch.hpp>

#include <string>
#include <string_view>
#include <vector>

#include "common/identity.hpp"

using namespace tapwire;

namespace {

struct Case {
    std::string_view input;
    std::string_view expected;  // canonical form
    IdentityKind kind;
};

constexpr auto kSip = IdentityKind::SipUri;
constexpr auto kTel = IdentityKind::Telephone;

// A German carrier: national prefix 0, international prefix 00.
const NumberingPlan kGermany{"49", "0", "00"};

void check_case(const Case& c, const NumberingPlan& plan = {}) {
    INFO("input: " << c.input);
    NormalizedIdentity id;
    REQUIRE(normalize_identity(c.input, id, plan) == IdentityError::Ok);
    CHECK(id.view() == c.expected);
    CHECK(id.kind == c.kind);
    // Canonical forms are fixed points: normalising the output changes nothing.
    NormalizedIdentity again;
    REQUIRE(normalize_identity(id.view(), again, plan) == IdentityError::Ok);
    CHECK(again.view() == id.view());
}

}  // namespace

TEST_CASE("identity: canonical forms without a numbering plan", "[identity]") {
    const Case cases[] = {
        // SIP URIs: scheme, case, port, parameters, headers, password.
        {"sip:alice@example.com", "sip:alice@example.com", kSip},
        {"SIP:alice@EXAMPLE.com", "sip:alice@example.com", kSip},
        {"sips:alice@example.com", "sip:alice@example.com", kSip},
        {"SiPs:Alice@Example.COM", "sip:Alice@example.com", kSip},  // user is case-sensitive
        {"sip:alice@example.com:5061", "sip:alice@example.com", kSip},
        {"sip:alice@example.com;transport=udp;lr", "sip:alice@example.com", kSip},
        {"sip:alice@example.com?subject=project&priority=urgent", "sip:alice@example.com", kSip},
        {"sip:alice:secretword@example.com;transport=tcp", "sip:alice@example.com", kSip},
        {"sip:example.com", "sip:example.com", kSip},
        {"sip:10.186.205.131:6060;transport=tcp", "sip:10.186.205.131", kSip},
        {"sip:voicepbx@10.100.50.65", "sip:voicepbx@10.100.50.65", kSip},
        // Percent-encoding of the user part (RFC 3261 section 19.1.4).
        {"sip:%61lice@example.com", "sip:alice@example.com", kSip},
        {"sip:%41lice@example.com", "sip:Alice@example.com", kSip},
        {"sip:a%20b@example.com", "sip:a%20b@example.com", kSip},
        {"sip:a%3ab@example.com", "sip:a%3Ab@example.com", kSip},  // ':' stays escaped
        {"sip:a%40b@example.com", "sip:a%40b@example.com", kSip},  // '@' stays escaped
        {"sip:user;day=tuesday@example.com", "sip:user;day=tuesday@example.com", kSip},
        // IPv6 references: lower-cased and in one (RFC 5952) spelling, brackets kept.
        {"sip:alice@[2001:DB8::1]", "sip:alice@[2001:db8::1]", kSip},
        {"sip:alice@[2001:db8:0:0:0:0:0:1]:5060", "sip:alice@[2001:db8::1]", kSip},
        {"<sip:14408710012@[2001::921d:27ff:fe6d:4e9b];line=85b74b8bff23fd5>;expires=60",
         "sip:14408710012@[2001::921d:27ff:fe6d:4e9b]", kSip},
        {"sip:sipp@[fd17:625c:f037:2:a00:27ff:feb9:1521]:15060",
         "sip:sipp@[fd17:625c:f037:2:a00:27ff:feb9:1521]", kSip},
        // name-addr: display names (quoted with '<', ',' and escaped quotes), header params.
        {"\"Alice\" <sip:alice@Example.COM;transport=udp>;tag=x", "sip:alice@example.com", kSip},
        {"\"Smith, John <boss>\" <sip:john@example.com>", "sip:john@example.com", kSip},
        {"\"say \\\"hi\\\" <x>\" <sip:bob@example.com>;tag=1", "sip:bob@example.com", kSip},
        {"\"20008909\"<sip:20008909@101.231.48.19:5060>;tag=abc", "sip:20008909@101.231.48.19",
         kSip},
        {"Bob Jones <sips:bob@biloxi.example.com>", "sip:bob@biloxi.example.com", kSip},
        {"  <sip:bob@biloxi.example.com>  ", "sip:bob@biloxi.example.com", kSip},
        {"sip:alice@example.com;tag=1928301774", "sip:alice@example.com", kSip},
        {"\"1001\" <sip:1001@172.168.0.252:52795;transport=TCP;ob>;reg-id=1;"
         "+sip.instance=\"<urn:uuid:00000000-0000-0000-0000-00009314fa8a>\"",
         "sip:1001@172.168.0.252", kSip},
        // Local digits without user=phone stay SIP: they may be an extension.
        {"sip:0301234@carrier.de", "sip:0301234@carrier.de", kSip},
        {"sip:%30301234@carrier.de", "sip:0301234@carrier.de", kSip},
        {"<sip:200.57.7.195:55061;user=phone>", "sip:200.57.7.195", kSip},    // no user part
        {"sip:alice@example.com;user=phone", "sip:alice@example.com", kSip},  // not a number
        // tel: URIs (RFC 3966).
        {"tel:+49-30-1234", "tel:+49301234", kTel},
        {"TEL:+1.202.555.0123", "tel:+12025550123", kTel},
        {"tel:+1-201-555-0123;ext=1234", "tel:+12015550123", kTel},
        {"tel:+1-201-555-0123;isub=1411", "tel:+12015550123", kTel},
        {"tel:0301234;phone-context=+49", "tel:0301234", kTel},
        {"tel:7042;phone-context=example.com", "tel:7042", kTel},
        {"tel:*31#;phone-context=+49", "tel:*31#", kTel},
        {"<tel:+49(30)1234>;tag=a", "tel:+49301234", kTel},
        // SIP URIs holding telephone numbers (RFC 3261 section 19.1.6).
        {"sip:+4930123456@ims.example.de;user=phone", "tel:+4930123456", kTel},
        {"sip:+4930123456@ims.example.de", "tel:+4930123456", kTel},  // '+' global number
        {"sip:+1-212-555-1212:1234@gateway.com;user=phone", "tel:+12125551212", kTel},
        {"sip:+4930123;npdi;rn=+4930999@carrier.de;user=phone", "tel:+4930123", kTel},
        {"<sip:061963177@italtel.it;user=phone>;tag=1", "tel:061963177", kTel},
        {"\"Ivan Alizade\" <sip:5514540002@200.57.7.195:55061;user=phone>", "tel:5514540002", kTel},
        {"\"+12675941249\" <sip:+12675941249@10.243.0.143>;tag=x", "tel:+12675941249", kTel},
        {"sip:%2B4930123@example.com", "tel:+4930123", kTel},
        {"sip:+49-30-123@example.com;USER=PHONE", "tel:+4930123", kTel},
        // Bare numbers as typed into a warrant.
        {"+49 (30) 1234-5678", "tel:+493012345678", kTel},
        {"0301234", "tel:0301234", kTel},
        {"(+49) 30 1234", "tel:+49301234", kTel},
        {"030 1234", "tel:0301234", kTel},
    };
    STATIC_REQUIRE(sizeof cases / sizeof cases[0] >= 40);
    for (const Case& c : cases)
        check_case(c);
}

TEST_CASE("identity: numbering plan rewrites national and international forms", "[identity]") {
    const Case cases[] = {
        {"004930123456", "tel:+4930123456", kTel},
        {"030123456", "tel:+4930123456", kTel},
        {"030 1234-56", "tel:+4930123456", kTel},
        {"tel:030123456;phone-context=+49", "tel:+4930123456", kTel},
        {"tel:004930123456", "tel:+4930123456", kTel},
        {"tel:+4930123456", "tel:+4930123456", kTel},  // already global
        {"sip:030123456@carrier.de", "tel:+4930123456", kTel},
        {"sip:004930123456@carrier.de;transport=udp", "tel:+4930123456", kTel},
        {"sip:030123456@carrier.de;user=phone", "tel:+4930123456", kTel},
        {"sip:0044207946000@carrier.de", "tel:+44207946000", kTel},  // international first
        {"sip:0619%3177@carrier.de", "tel:+49619177", kTel},         // digits judged after decoding
        // Not rewritten: no prefix, service codes, non-digit users, a bare prefix.
        {"sip:1234@pbx.example.com", "sip:1234@pbx.example.com", kSip},
        {"tel:1234;phone-context=example.com", "tel:1234", kTel},
        {"tel:*31#", "tel:*31#", kTel},
        {"sip:0alice@example.com", "sip:0alice@example.com", kSip},
        {"tel:00", "tel:00", kTel},
        {"tel:0", "tel:0", kTel},
        {"sip:0@example.com", "sip:0@example.com", kSip},
    };
    for (const Case& c : cases)
        check_case(c, kGermany);

    // Empty fields disable their rewrite.
    NumberingPlan intl_only{"", "0", "00"};
    CHECK(normalized("004930123", intl_only) == "tel:+4930123");
    CHECK(normalized("030123", intl_only) == "tel:030123");
    NumberingPlan national_only{"49", "0", ""};
    CHECK(normalized("004930123", national_only) == "tel:+4904930123");
    CHECK(normalized("030123", national_only) == "tel:+4930123");
    // A North American plan: "011" international, "1" national.
    NumberingPlan nanp{"1", "1", "011"};
    CHECK(normalized("011 49 30 123", nanp) == "tel:+4930123");
    CHECK(normalized("1-202-555-0123", nanp) == "tel:+12025550123");
}

TEST_CASE("identity: equivalent spellings normalise to one string", "[identity]") {
    // The warrant side (what an operator types) and the packet side (what the header
    // carries) must agree, or the target is never matched.
    const std::vector<std::vector<std::string_view>> groups = {
        {"sip:alice@example.com", "SIP:alice@EXAMPLE.COM", "sips:alice@example.com",
         "\"Alice A.\" <sip:alice@example.com;transport=tcp>;tag=88sja8x",
         "<sip:alice:pw@Example.com:5060?Subject=x>", "sip:%61lice@example.com",
         "Alice <sips:alice@example.com:5061;lr>"},
        {"sip:bob@[2001:db8::1]", "<sip:bob@[2001:DB8:0:0::1]:5060>",
         "\"Bob\" <sip:bob@[2001:0db8:0000:0000:0000:0000:0000:0001];transport=udp>"},
        {"tel:+49301234567", "+49 30 1234567", "+49 (30) 123-45-67", "tel:+49-30-123.45.67",
         "sip:+49301234567@ims.carrier.de;user=phone", "<sip:+49-30-1234567@10.0.0.1>;tag=1",
         "\"+49 30 1234567\" <tel:+49301234567;phone-context=+49>",
         "sip:+49301234567;npdi@carrier.de;user=phone"},
    };
    for (const auto& group : groups) {
        std::string first = normalized(group.front());
        REQUIRE_FALSE(first.empty());
        for (std::string_view spelling : group) {
            INFO("spelling: " << spelling);
            CHECK(normalized(spelling) == first);
        }
    }

    // With the carrier's plan, national and international dialling forms join E.164.
    const std::vector<std::string_view> national = {"tel:+49301234567",
                                                    "030 1234567",
                                                    "0049 30 1234567",
                                                    "sip:0301234567@carrier.de",
                                                    "sip:00491234567@x",
                                                    "+49301234567",
                                                    "<sip:0301234567@carrier.de;user=phone>"};
    for (std::string_view spelling : national) {
        INFO("spelling: " << spelling);
        if (spelling == "sip:00491234567@x") {
            CHECK(normalized(spelling, kGermany) == "tel:+491234567");  // a different number
        } else {
            CHECK(normalized(spelling, kGermany) == "tel:+49301234567");
        }
    }
}

TEST_CASE("identity: errors", "[identity]") {
    struct ErrorCase {
        std::string_view input;
        IdentityError expected;
    };
    const ErrorCase cases[] = {
        {"", IdentityError::Empty},
        {"   \t ", IdentityError::Empty},
        {"http://example.com/alice", IdentityError::UnsupportedScheme},
        {"mailto:alice@example.com", IdentityError::UnsupportedScheme},
        {"urn:service:sos", IdentityError::UnsupportedScheme},
        {"\"Alice\" <im:alice@example.com>", IdentityError::UnsupportedScheme},
        {"alice@example.com", IdentityError::BadUri},                // no scheme
        {"\"Alice <sip:alice@example.com>", IdentityError::BadUri},  // unterminated quote
        {"\"Alice\" sip:alice@example.com", IdentityError::BadUri},  // quote without <>
        {"<sip:alice@example.com", IdentityError::BadUri},           // no '>'
        {"<>", IdentityError::BadUri},
        {"sip:", IdentityError::BadUri},
        {"sip:@example.com", IdentityError::BadUri},
        {"sip:alice@", IdentityError::BadUri},
        {"sip:alice@exa mple.com", IdentityError::BadUri},
        {"sip:alice@example.com:50x60", IdentityError::BadUri},
        {"sip:alice@[2001:db8::1", IdentityError::BadUri},
        {"sip:alice@[not-an-address]", IdentityError::BadUri},
        {"sip:alice@[10.0.0.1]", IdentityError::BadUri},
        {"1sip:alice@example.com", IdentityError::BadUri},
        {"sip:al%4ice@example.com", IdentityError::BadPercentEncoding},
        {"sip:alice%@example.com", IdentityError::BadPercentEncoding},
        {"sip:alice%4@example.com", IdentityError::BadPercentEncoding},
        {"tel:+49%2", IdentityError::BadPercentEncoding},
        {"tel:", IdentityError::BadTelephoneNumber},
        {"tel:+", IdentityError::BadTelephoneNumber},
        {"tel:+49*30", IdentityError::BadTelephoneNumber},  // no * # in global numbers
        {"tel:alice", IdentityError::BadTelephoneNumber},
        {"tel:+49+30", IdentityError::BadTelephoneNumber},
        {"+49 30 12a4", IdentityError::BadTelephoneNumber},
        {"( )", IdentityError::BadTelephoneNumber},
    };
    for (const ErrorCase& c : cases) {
        INFO("input: " << c.input);
        NormalizedIdentity id;
        CHECK(normalize_identity(c.input, id) == c.expected);
        CHECK(id.length == 0);
        CHECK(normalized(c.input).empty());
    }
    for (std::size_t i = 0; i < std::size_t(IdentityError::Count); ++i)
        CHECK(std::string_view(to_string(IdentityError(i))) != "unknown");
    CHECK(std::string_view(to_string(IdentityError::BadPercentEncoding)) == "bad_percent_encoding");
}

TEST_CASE("identity: output limit of 255 characters", "[identity]") {
    // "sip:" + user + "@" + "example.com" is 16 characters plus the user.
    std::string fits = "sip:" + std::string(239, 'a') + "@example.com";
    REQUIRE(fits.size() == 255);
    NormalizedIdentity id;
    CHECK(normalize_identity(fits, id) == IdentityError::Ok);
    CHECK(id.length == 255);
    std::string over = "sip:" + std::string(240, 'a') + "@example.com";
    CHECK(normalize_identity(over, id) == IdentityError::TooLong);
    CHECK(id.length == 0);
    // Escaping can push the output over the limit though the input is shorter.
    std::string escaped = "sip:" + std::string(100, ' ') + "x@example.com";
    escaped[4] = 'a';
    CHECK(normalize_identity(escaped, id) == IdentityError::TooLong);
    // Decoding shrinks: 300 input characters of %41 are 100 output characters.
    std::string decoded = "sip:";
    for (int i = 0; i < 100; ++i)
        decoded += "%41";
    decoded += "@example.com";
    CHECK(normalize_identity(decoded, id) == IdentityError::Ok);
    CHECK(id.view() == "sip:" + std::string(100, 'A') + "@example.com");

    CHECK(normalize_identity("tel:+" + std::string(250, '1'), id) == IdentityError::Ok);
    CHECK(id.length == 255);
    CHECK(normalize_identity("tel:+" + std::string(251, '1'), id) == IdentityError::TooLong);
    CHECK(normalize_identity(std::string(400, '1'), id) == IdentityError::TooLong);
    // The plan's country code can push a long national number over the limit.
    CHECK(normalize_identity("tel:0" + std::string(250, '1'), id) == IdentityError::Ok);
    CHECK(normalize_identity("tel:0" + std::string(250, '1'), id, kGermany) ==
          IdentityError::TooLong);
}

TEST_CASE("identity: input is never read past its end", "[identity]") {
    // Exact-size heap copies of every prefix, for AddressSanitizer.
    const std::string_view inputs[] = {
        "\"A \\\"q\\\" <x>\" <sip:alice:pw@[2001:db8::1]:5060;user=phone?h=v>;tag=1",
        "sip:%2B49-30-1234;npdi@carrier.de;user=phone", "tel:+49-30-1234;phone-context=+49",
        "+49 (30) 1234-5678"};
    for (std::string_view input : inputs) {
        for (std::size_t n = 0; n <= input.size(); ++n) {
            std::vector<char> copy(input.begin(), input.begin() + std::ptrdiff_t(n));
            NormalizedIdentity id;
            IdentityError e =
                normalize_identity(std::string_view(copy.data(), copy.size()), id, kGermany);
            CHECK(std::size_t(e) < std::size_t(IdentityError::Count));
            CHECK(id.length <= NormalizedIdentity::kMaxLength - 1);
        }
    }
}
