// The target set: target parsing, Hyperscan identity matching, LPM address matching, the
// base+delta layers, target files, and concurrent use by several workers.

#include "dataplane/target_set.hpp"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "common/identity.hpp"
#include "tests/unit/eal_fixture.hpp"

using namespace tapwire;
using namespace tapwire::dataplane;

namespace {

std::unique_ptr<TargetSet> must_build(std::vector<TargetSpec> targets, unsigned workers = 1) {
    TargetSetOptions options;
    options.workers = workers;
    auto r = TargetSet::build(targets, options);
    INFO(r.error);
    REQUIRE(r.set);
    return std::move(r.set);
}

// Normalises raw header values as the packet side does, then matches them.
struct Probe {
    std::vector<std::string> storage;
    std::vector<std::string_view> views;
    MatchResult result;
    bool hit = false;
};

Probe probe(const TargetSet& set, std::vector<std::string> raw_values, unsigned worker = 0) {
    Probe p;
    for (const auto& v : raw_values) {
        std::string n = normalized(v);
        REQUIRE(!n.empty());  // the test input itself must be a valid identity
        p.storage.push_back(n);
    }
    for (const auto& s : p.storage)
        p.views.push_back(s);
    p.result.clear();
    p.hit = set.match_identities(p.views, worker, p.result);
    return p;
}

std::vector<std::uint32_t> sorted_warrants(const MatchResult& r) {
    std::vector<std::uint32_t> w(r.warrant_ids().begin(), r.warrant_ids().end());
    std::sort(w.begin(), w.end());
    return w;
}

std::vector<std::uint32_t> warrants_of(const TargetSet& set, const std::string& raw) {
    return sorted_warrants(probe(set, {raw}).result);
}

std::vector<std::uint32_t> address_warrants(const TargetSet& set, const char* text) {
    MatchResult r;
    r.clear();
    set.match_address(IpAddress::parse(text).value(), r);
    return sorted_warrants(r);
}

using W = std::vector<std::uint32_t>;

}  // namespace

TEST_CASE("parse_target classifies and normalises targets", "[target_set]") {
    ParsedTarget p;
    REQUIRE(parse_target("+49 30 555-010", p) == TargetError::Ok);
    CHECK(p.kind == TargetKind::Exact);
    CHECK(p.text == "tel:+4930555010");

    REQUIRE(parse_target("  <sip:Alice@Example.COM;transport=tcp>  ", p) == TargetError::Ok);
    CHECK(p.kind == TargetKind::Exact);
    CHECK(p.text == "sip:Alice@example.com");

    // The trailing '*' is stripped before normalisation: "+4930555*" is not a number.
    REQUIRE(parse_target("+4930555*", p) == TargetError::Ok);
    CHECK(p.kind == TargetKind::Prefix);
    CHECK(p.text == "tel:+4930555");
    REQUIRE(parse_target("tel:+49-30-555*", p) == TargetError::Ok);
    CHECK(p.kind == TargetKind::Prefix);
    CHECK(p.text == "tel:+4930555");

    // Globs are matched over the scan form "host@sip:user": the common ones are literals.
    REQUIRE(parse_target("sip:*@Evil.Example", p) == TargetError::Ok);
    CHECK(p.kind == TargetKind::Glob);
    CHECK(p.text == "sip:*@evil.example");
    CHECK_FALSE(p.regex);
    CHECK(p.pattern == "\nevil.example@sip:");  // prefix literal
    REQUIRE(parse_target("sip:alice@*.Example.org", p) == TargetError::Ok);
    CHECK_FALSE(p.regex);
    CHECK(p.pattern == ".example.org@sip:alice\n");  // suffix literal
    REQUIRE(parse_target("sip:a.b**c@example.com", p) == TargetError::Ok);
    CHECK(p.text == "sip:a.b*c@example.com");
    CHECK(p.regex);  // every non-alphanumeric escaped
    CHECK(p.pattern == "\\x0aexample\\x2ecom\\x40sip\\x3aa\\x2eb[^@\\x0a]*c\\x0a");
    REQUIRE(parse_target("sip:*.host.example", p) == TargetError::Ok);
    CHECK(p.regex);
    CHECK(p.pattern == "\\x0asip\\x3a[^@\\x0a]*\\x2ehost\\x2eexample\\x0a");

    REQUIRE(parse_target("sip:bob@example.com", p) == TargetError::Ok);
    CHECK(p.pattern == "\nexample.com@sip:bob\n");
    REQUIRE(parse_target("+49 30 555*", p) == TargetError::Ok);
    CHECK(p.pattern == "\ntel:+4930555");

    REQUIRE(parse_target("192.0.2.7", p) == TargetError::Ok);
    CHECK(p.kind == TargetKind::Ipv4);
    CHECK(int(p.depth) == 32);
    REQUIRE(parse_target("192.0.2.0/24", p) == TargetError::Ok);
    CHECK(int(p.depth) == 24);
    REQUIRE(parse_target("2001:db8::/48", p) == TargetError::Ok);
    CHECK(p.kind == TargetKind::Ipv6);
    CHECK(int(p.depth) == 48);
    REQUIRE(parse_target("2001:db8::1", p) == TargetError::Ok);
    CHECK(int(p.depth) == 128);

    // A '/' in a SIP user part does not make an IP target.
    REQUIRE(parse_target("sip:a/b@example.com", p) == TargetError::Ok);
    CHECK(p.kind == TargetKind::Exact);
}

TEST_CASE("parse_target rejects invalid targets with a reason", "[target_set]") {
    ParsedTarget p;
    CHECK(parse_target("", p) == TargetError::Empty);
    CHECK(parse_target("   ", p) == TargetError::Empty);
    CHECK(parse_target("sip:", p) == TargetError::BadIdentity);
    CHECK(p.identity_error == IdentityError::BadUri);
    CHECK(parse_target("mailto:bob@example.com", p) == TargetError::BadIdentity);
    CHECK(p.identity_error == IdentityError::UnsupportedScheme);
    CHECK(parse_target("192.0.2.7/24", p) == TargetError::HostBitsSet);
    CHECK(parse_target("2001:db8::1/64", p) == TargetError::HostBitsSet);
    CHECK(parse_target("10.0.0.0/33", p) == TargetError::BadPrefixLength);
    CHECK(parse_target("10.0.0.0/", p) == TargetError::BadPrefixLength);
    CHECK(parse_target("10.0.0.0/8x", p) == TargetError::BadPrefixLength);
    CHECK(parse_target("2001:db8::/129", p) == TargetError::BadPrefixLength);
    CHECK(parse_target("0.0.0.0/0", p) == TargetError::MatchesEverything);
    CHECK(parse_target("::/0", p) == TargetError::MatchesEverything);
    CHECK(parse_target("sip:*", p) == TargetError::MatchesEverything);
    CHECK(parse_target("sip:*@*", p) == TargetError::MatchesEverything);
    CHECK(parse_target("+*", p) == TargetError::BadIdentity);
    CHECK(parse_target("+49*30", p) == TargetError::WildcardInsideNumber);
    CHECK(parse_target("tel:+49**", p) == TargetError::WildcardInsideNumber);
    CHECK(parse_target("sip:+49*@carrier.example;user=phone", p) ==
          TargetError::WildcardInsideNumber);
    CHECK(parse_target("sip:+4930*@carrier.example", p) == TargetError::WildcardInsideNumber);
    CHECK(parse_target("sip:bob@example.com;x=*", p) == TargetError::WildcardInDroppedPart);
    CHECK(parse_target("\"Bob*\" <sip:bob@example.com>", p) == TargetError::WildcardInDroppedPart);
    CHECK(std::string(to_string(TargetError::WildcardInsideNumber)) == "wildcard_inside_number");
}

TEST_CASE("exact targets match across equivalent spellings", "[target_set]") {
    auto set = must_build({{"+49 30 555-010", 7}, {"sip:Alice@Example.com", 8}});

    // The packet side normalises a tel-in-SIP URI to the same identity.
    CHECK(warrants_of(*set, "<sip:+4930555010@x;user=phone>") == W{7});
    CHECK(warrants_of(*set, "\"Target\" <tel:+49-30-555-010;phone-context=x>") == W{7});
    CHECK(warrants_of(*set, "tel:+4930555010") == W{7});
    CHECK(warrants_of(*set, "<sips:Alice@EXAMPLE.COM:5061;transport=tls>;tag=1") == W{8});
    CHECK(warrants_of(*set, "sip:Alice@example.com?Subject=x") == W{8});

    // Near misses: prefix of the target, target plus a digit, other user, suffix.
    CHECK(warrants_of(*set, "tel:+493055501").empty());
    CHECK(warrants_of(*set, "tel:+49305550100").empty());
    CHECK(warrants_of(*set, "tel:+4930555011").empty());
    CHECK(warrants_of(*set, "sip:alice@example.com").empty());  // user part is case-sensitive
    CHECK(warrants_of(*set, "sip:Alice@example.com.evil").empty());
    CHECK(warrants_of(*set, "sip:Alice@example.co").empty());
    CHECK(warrants_of(*set, "sip:xAlice@example.com").empty());
    CHECK(warrants_of(*set, "sip:example.com").empty());
}

TEST_CASE("prefix targets match number ranges", "[target_set]") {
    auto set = must_build({{"+4930555*", 1}, {"tel:+49-89-1*", 2}});
    CHECK(warrants_of(*set, "tel:+4930555") == W{1});
    CHECK(warrants_of(*set, "tel:+4930555000") == W{1});
    CHECK(warrants_of(*set, "<sip:+49305559999@gw.example;user=phone>") == W{1});
    CHECK(warrants_of(*set, "tel:+49891234") == W{2});
    CHECK(warrants_of(*set, "tel:+493055").empty());       // shorter than the range
    CHECK(warrants_of(*set, "tel:+4930556000").empty());   // next range
    CHECK(warrants_of(*set, "tel:+14930555000").empty());  // anchored at the start
    CHECK(warrants_of(*set, "tel:04930555000").empty());   // local, not global
    CHECK(warrants_of(*set, "sip:4930555000@example.com").empty());
}

TEST_CASE("SIP globs match whole identities and never cross '@'", "[target_set]") {
    auto set = must_build({{"sip:*@evil.example", 1},
                           {"sip:bob*@example.com", 2},
                           {"sip:alice@*.example.org", 3},
                           {"sip:*.host.example", 4}});
    CHECK(warrants_of(*set, "sip:anyone@evil.example") == W{1});
    CHECK(warrants_of(*set, "<sip:x@EVIL.example:5060>") == W{1});
    CHECK(warrants_of(*set, "sip:a@notevil.example").empty());
    CHECK(warrants_of(*set, "sip:a@evil.example.com").empty());
    CHECK(warrants_of(*set, "sip:a@sub.evil.example").empty());
    CHECK(warrants_of(*set, "sip:evil.example").empty());

    CHECK(warrants_of(*set, "sip:bob@example.com") == W{2});  // '*' may be empty
    CHECK(warrants_of(*set, "sip:bobby@example.com") == W{2});
    CHECK(warrants_of(*set, "sip:alice@example.com").empty());
    CHECK(warrants_of(*set, "sip:bob@example.com.evil").empty());

    CHECK(warrants_of(*set, "sip:alice@pbx.example.org") == W{3});
    CHECK(warrants_of(*set, "sip:alice@example.org").empty());
    CHECK(warrants_of(*set, "sip:malice@pbx.example.org").empty());
    CHECK(warrants_of(*set, "sip:alice@pbx.example.org.evil").empty());

    CHECK(warrants_of(*set, "sip:edge.host.example") == W{4});
    CHECK(warrants_of(*set, "sip:bob@edge.host.example").empty());  // '*' never spans '@'
}

TEST_CASE("metacharacters in targets are literal", "[target_set]") {
    auto set = must_build({{"sip:a.b+c(d)$x?y@ex-ample.com", 1},
                           {"sip:j.doe*@corp.example", 2},
                           {"sip:a.b*c+d@ex.example", 5},  // a regex glob
                           {"sip:a%2Ab@example.com", 3},   // a literal '*'
                           {"sip:x%2A*@example.com", 4}});
    CHECK(warrants_of(*set, "sip:a.b+c(d)$x?y@ex-ample.com") == W{1});
    CHECK(warrants_of(*set, "sip:aXb+c(d)$x?y@ex-ample.com").empty());  // '.' is not any
    CHECK(warrants_of(*set, "sip:a.bbc(d)$x?y@ex-ample.com").empty());  // '+' no quantifier
    CHECK(warrants_of(*set, "sip:a.b+cd$x?y@ex-ample.com").empty());    // '(' no group
    CHECK(warrants_of(*set, "sip:a.b+c(d)$xy@ex-ample.com").empty());   // '?' not optional

    CHECK(warrants_of(*set, "sip:j.doe.2@corp.example") == W{2});
    CHECK(warrants_of(*set, "sip:a.bXYc+d@ex.example") == W{5});
    CHECK(warrants_of(*set, "sip:a.bc+d@ex.example") == W{5});
    CHECK(warrants_of(*set, "sip:aXbc+d@ex.example").empty());  // '.' is not any
    CHECK(warrants_of(*set, "sip:a.bccd@ex.example").empty());  // '+' no quantifier
    CHECK(warrants_of(*set, "sip:a.bc+d@exXexample").empty());
    CHECK(warrants_of(*set, "sip:jXdoe@corp.example").empty());
    CHECK(warrants_of(*set, "sip:j.doe@corpXexample").empty());

    CHECK(warrants_of(*set, "sip:a*b@example.com") == W{3});
    CHECK(warrants_of(*set, "sip:a.b+c(d)$x?y@ex-ample.com.").empty());
    CHECK(warrants_of(*set, "sip:axb@example.com").empty());
    CHECK(warrants_of(*set, "sip:x*anything@example.com") == W{4});
    CHECK(warrants_of(*set, "sip:xanything@example.com").empty());
}

TEST_CASE("several warrants on one identity all receive the hit", "[target_set]") {
    auto set = must_build({{"tel:+4930555010", 11},
                           {"+49 (30) 555 010", 12},  // same identity, other spelling
                           {"+4930555*", 13},         // a range covering it
                           {"tel:+4930555010", 11},   // exact duplicate
                           {"sip:bob@example.com", 14}});
    auto p = probe(*set, {"sip:+4930555010@x;user=phone"});
    CHECK(p.hit);
    CHECK(sorted_warrants(p.result) == W{11, 12, 13});
    CHECK_FALSE(p.result.overflow);
    CHECK(set->stats().base.exact_identities == 2);
    CHECK(set->stats().base.identity_prefixes == 1);
    CHECK(set->stats().base.targets == 5);
    CHECK(set->stats().base.database_bytes > 0);
}

TEST_CASE("identity mask tells which side matched", "[target_set]") {
    auto set = must_build({{"sip:bob@example.com", 1}, {"+4930555*", 2}});
    // Request-URI, From, To, PAI as a worker would pass them.
    auto p = probe(*set, {"sip:carol@example.net", "<sip:alice@example.net>;tag=1",
                          "<sip:bob@example.com>", "<tel:+4930555123>"});
    CHECK(p.hit);
    CHECK(p.result.identity_mask == ((1u << 2) | (1u << 3)));
    CHECK(sorted_warrants(p.result) == W{1, 2});

    // The same target on both sides sets both bits.
    p = probe(*set, {"sip:bob@example.com", "sip:bob@example.com"});
    CHECK(p.result.identity_mask == 3);
    CHECK(sorted_warrants(p.result) == W{1});

    p = probe(*set, {"sip:alice@example.net", "tel:+4930556"});
    CHECK_FALSE(p.hit);
    CHECK(p.result.identity_mask == 0);
    CHECK(p.result.warrant_count == 0);
}

TEST_CASE("more than 16 warrants on one hit overflow, flagged and counted", "[target_set]") {
    std::vector<TargetSpec> targets;
    for (std::uint32_t w = 1; w <= 20; ++w)
        targets.push_back({"sip:popular@example.com", w});
    auto set = must_build(targets);
    auto p = probe(*set, {"sip:popular@example.com"});
    CHECK(p.hit);
    CHECK(p.result.warrant_count == kMaxWarrantsPerHit);
    CHECK(p.result.overflow);
    CHECK(p.result.overflow_count == 4);
    auto w = sorted_warrants(p.result);
    CHECK(std::adjacent_find(w.begin(), w.end()) == w.end());  // distinct

    TargetMatchCounters counters;
    counters.record(p.result);
    CHECK(counters.get(TargetMatchCounter::WarrantOverflow) == 4);
    CHECK(counters.get(TargetMatchCounter::ScanError) == 0);
    CHECK(std::string(to_string(TargetMatchCounter::WarrantOverflow)) == "warrant_overflow");
}

TEST_CASE("overlapping IP prefixes return the warrants of every covering prefix", "[target_set]") {
    REQUIRE(tapwire::test::ensure_eal());
    auto set = must_build({{"10.0.0.0/8", 1},
                           {"10.1.0.0/16", 2},
                           {"10.1.2.3", 3},
                           {"10.1.2.128/25", 4},
                           {"10.1.2.3/32", 5},  // same prefix, another warrant
                           {"2001:db8::/32", 21},
                           {"2001:db8:1::/48", 22},
                           {"2001:db8:1::7", 23},
                           {"2001:db8:1:0:8000::/65", 24},
                           {"sip:bob@example.com", 99}});
    CHECK(address_warrants(*set, "10.1.2.3") == W{1, 2, 3, 5});
    CHECK(address_warrants(*set, "10.1.2.200") == W{1, 2, 4});
    CHECK(address_warrants(*set, "10.1.2.4") == W{1, 2});
    CHECK(address_warrants(*set, "10.1.9.9") == W{1, 2});
    CHECK(address_warrants(*set, "10.200.0.1") == W{1});
    CHECK(address_warrants(*set, "11.0.0.1").empty());
    CHECK(address_warrants(*set, "9.255.255.255").empty());

    CHECK(address_warrants(*set, "2001:db8:1::7") == W{21, 22, 23});
    CHECK(address_warrants(*set, "2001:db8:1::8") == W{21, 22});
    CHECK(address_warrants(*set, "2001:db8:1:0:8000::1") == W{21, 22, 24});
    CHECK(address_warrants(*set, "2001:db8:2::1") == W{21});
    CHECK(address_warrants(*set, "2001:db9::1").empty());
    CHECK(address_warrants(*set, "::ffff:10.1.2.3").empty());  // v6 is not v4

    CHECK(set->stats().ipv4_prefixes == 4);
    CHECK(set->stats().ipv6_prefixes == 4);
    // Identities still work beside IP targets.
    CHECK(warrants_of(*set, "sip:bob@example.com") == W{99});

    // Source and destination of one packet accumulate into one result.
    MatchResult r;
    r.clear();
    CHECK(set->match_address(IpAddress::parse("10.200.0.1").value(), r));
    CHECK(set->match_address(IpAddress::parse("2001:db8:2::1").value(), r));
    CHECK(sorted_warrants(r) == W{1, 21});
}

TEST_CASE("base and delta layers are both matched and merged", "[target_set]") {
    REQUIRE(tapwire::test::ensure_eal());
    std::vector<TargetSpec> base = {
        {"sip:alice@example.com", 1}, {"+4930555*", 2}, {"192.0.2.0/24", 3}};
    std::vector<TargetSpec> delta = {{"sip:bob@example.com", 4},
                                     {"sip:alice@example.com", 5},  // already in the base
                                     {"sip:*@evil.example", 6},
                                     {"198.51.100.7", 7}};
    TargetSetOptions options;
    options.workers = 2;
    auto first = TargetSet::build(base, delta, options);
    INFO(first.error);
    REQUIRE(first.set);
    const TargetSet& s1 = *first.set;
    CHECK(warrants_of(s1, "sip:alice@example.com") == W{1, 5});
    CHECK(warrants_of(s1, "sip:bob@example.com") == W{4});
    CHECK(warrants_of(s1, "tel:+4930555123") == W{2});
    CHECK(warrants_of(s1, "sip:x@evil.example") == W{6});
    CHECK(address_warrants(s1, "192.0.2.9") == W{3});
    CHECK(address_warrants(s1, "198.51.100.7") == W{7});
    CHECK(s1.stats().base.targets == 3);
    CHECK(s1.stats().delta.targets == 4);
    CHECK(s1.stats().delta.identity_globs == 1);

    // The fast update path: keep the compiled base, compile only a new delta.
    auto new_delta = TargetLayer::compile(
        std::vector<TargetSpec>{{"sip:carol@example.com", 8}, {"198.51.100.7", 7}}, {}, "delta");
    REQUIRE(new_delta.layer);
    options.suspended_warrants = {2};  // warrant 2 lapsed since the base was compiled
    auto second = TargetSet::assemble(s1.base_layer(), new_delta.layer, options, &s1);
    INFO(second.error);
    REQUIRE(second.set);
    const TargetSet& s2 = *second.set;
    CHECK(s2.base_layer() == s1.base_layer());  // shared, not recompiled
    CHECK(s2.generation() > s1.generation());
    CHECK(warrants_of(s2, "sip:carol@example.com") == W{8});
    CHECK(warrants_of(s2, "sip:bob@example.com").empty());  // no longer in the delta
    CHECK(warrants_of(s2, "sip:alice@example.com") == W{1});
    CHECK(warrants_of(s2, "tel:+4930555123").empty());  // suspended
    CHECK(address_warrants(s2, "192.0.2.9") == W{3});
    CHECK(address_warrants(s2, "198.51.100.7") == W{7});
    CHECK(s2.stats().suspended_warrants == 1);

    // The first snapshot is unchanged (immutable) and can be dropped independently.
    CHECK(warrants_of(s1, "sip:bob@example.com") == W{4});
    first.set.reset();
    CHECK(warrants_of(s2, "sip:alice@example.com") == W{1});
    CHECK(address_warrants(s2, "198.51.100.7") == W{7});

    // A base with no delta, and a snapshot with no targets at all.
    auto third = TargetSet::assemble(s2.base_layer(), nullptr, {});
    REQUIRE(third.set);
    CHECK(warrants_of(*third.set, "sip:alice@example.com") == W{1});
    CHECK(warrants_of(*third.set, "sip:carol@example.com").empty());
    auto empty = TargetSet::build(std::vector<TargetSpec>{}, {});
    REQUIRE(empty.set);
    CHECK(warrants_of(*empty.set, "sip:alice@example.com").empty());
    MatchResult r;
    r.clear();
    CHECK_FALSE(empty.set->match_address(IpAddress::parse("192.0.2.9").value(), r));
}

TEST_CASE("suspension hides a warrant's base targets only: a modified warrant moves to the delta",
          "[target_set]") {
    // Warrant 1 is in the base with an identity and an address; it is then modified: its
    // new targets are in the delta and the base's are suspended.
    auto base = TargetLayer::compile(
        std::vector<TargetSpec>{{"sip:alice@example.com", 1}, {"192.0.2.9", 1}, {"+4930555*", 2}},
        {}, "base");
    REQUIRE(base.layer);
    auto delta = TargetLayer::compile(
        std::vector<TargetSpec>{{"sip:bob@example.com", 1}, {"198.51.100.0/24", 1}}, {}, "delta");
    REQUIRE(delta.layer);
    TargetSetOptions options;
    options.suspended_warrants = {1};
    auto r = TargetSet::assemble(base.layer, delta.layer, options);
    INFO(r.error);
    REQUIRE(r.set);
    CHECK(warrants_of(*r.set, "sip:alice@example.com").empty());
    CHECK(warrants_of(*r.set, "sip:bob@example.com") == W{1});
    CHECK(address_warrants(*r.set, "192.0.2.9").empty());
    CHECK(address_warrants(*r.set, "198.51.100.77") == W{1});
    CHECK(warrants_of(*r.set, "tel:+4930555123") == W{2});
}

TEST_CASE("invalid targets fail the whole build, naming index, warrant and reason",
          "[target_set]") {
    std::vector<TargetSpec> targets = {
        {"sip:alice@example.com", 1}, {"+4930555*", 2}, {"tel:+49-30-x", 3}};
    auto r = TargetSet::build(targets, {});
    CHECK_FALSE(r.set);
    CHECK(r.error == "base target 2 (warrant 3): bad_identity (bad_telephone_number)");
    CHECK(r.error.find("+49") == std::string::npos);  // targets stay out of logs

    r = TargetSet::build(std::vector<TargetSpec>{{"sip:a@b.example", 1}},
                         std::vector<TargetSpec>{{"sip:b@b.example", 2}, {"10.0.0.1/8", 4}}, {});
    CHECK_FALSE(r.set);
    CHECK(r.error == "delta target 1 (warrant 4): host_bits_set");

    r = TargetSet::build(std::vector<TargetSpec>{{"sip:a@b.example", 0}}, {});
    CHECK(r.error == "base target 0 (warrant 0): bad_warrant_id");
    r = TargetSet::build(std::vector<TargetSpec>{{"sip:a@b.example", 1}, {"sip:*@*", 2}}, {});
    CHECK(r.error == "base target 1 (warrant 2): matches_everything");

    TargetSetOptions zero_workers;
    zero_workers.workers = 0;
    r = TargetSet::build(std::vector<TargetSpec>{{"sip:a@b.example", 1}}, zero_workers);
    CHECK_FALSE(r.set);
    CHECK(!r.error.empty());
}

TEST_CASE("target lists parse with comments, blank lines and errors by line", "[target_set]") {
    std::vector<TargetSpec> out;
    std::string error;
    REQUIRE(
        parse_target_list("# warrants of agency A\r\n"
                          "\n"
                          "17 +49 30 555-010\r\n"
                          "   # indented comment\n"
                          "17\tsip:*@evil.example\n"
                          "4294967295 192.0.2.0/24\n"
                          "18 sip:bob@example.com",  // no final newline
                          out, error));
    INFO(error);
    REQUIRE(out.size() == 4);
    CHECK(out[0].warrant_id == 17);
    CHECK(out[0].identity == "+49 30 555-010");
    CHECK(out[1].identity == "sip:*@evil.example");
    CHECK(out[2].warrant_id == 4294967295u);
    CHECK(out[3].identity == "sip:bob@example.com");

    CHECK_FALSE(parse_target_list("1 sip:a@b.example\n\n# c\nsip:bob@example.com\n", out, error));
    CHECK(error == "line 4: expected '<warrant-id> <identity>'");
    CHECK_FALSE(parse_target_list("12\n", out, error));
    CHECK(error == "line 1: expected '<warrant-id> <identity>'");
    CHECK_FALSE(parse_target_list("12x sip:a@b.example\n", out, error));
    CHECK(error == "line 1: expected '<warrant-id> <identity>'");
    CHECK_FALSE(parse_target_list("0 sip:a@b.example\n", out, error));
    CHECK(error == "line 1: bad_warrant_id");
    CHECK_FALSE(parse_target_list("4294967296 sip:a@b.example\n", out, error));
    CHECK(error == "line 1: bad_warrant_id");
    CHECK_FALSE(parse_target_list("1 sip:a@b.example\n2 +49*30\n", out, error));
    CHECK(error == "line 2 (warrant 2): wildcard_inside_number");

    // From a file, and a file that does not exist.
    const std::string path = "/tmp/tapwire_targets_" + std::to_string(getpid()) + ".txt";
    {
        std::ofstream f(path);
        f << "# test\n5 tel:+4930555010\n6 sip:carol@example.com\n";
    }
    REQUIRE(load_target_file(path, out, error));
    REQUIRE(out.size() == 2);
    auto set = must_build(out);
    CHECK(warrants_of(*set, "sip:+4930555010@x;user=phone") == W{5});
    {
        std::ofstream f(path);
        f << "5 tel:+4930555010\n\n6 sip:\n";
    }
    CHECK_FALSE(load_target_file(path, out, error));
    CHECK(error == path + ": line 3 (warrant 6): bad_identity (bad_uri)");
    std::remove(path.c_str());
    CHECK_FALSE(load_target_file(path, out, error));
    CHECK(error.find("cannot read target file") != std::string::npos);
}

TEST_CASE("hostile identity lists are bounded and counted", "[target_set]") {
    auto set = must_build({{"sip:bob@example.com", 1}, {"sip:*@evil.example", 2}}, 2);
    MatchResult r;

    // A '\n' would forge an identity boundary: such input is skipped, not matched.
    std::string forged = "sip:x@y\nsip:bob@example.com";
    std::string too_long = "sip:" + std::string(300, 'a') + "@evil.example";
    std::vector<std::string_view> ids = {forged, too_long, "", "sip:bob@example.com"};
    r.clear();
    CHECK(set->match_identities(ids, 1, r));
    CHECK(r.identities_skipped == 2);
    CHECK(r.identity_mask == (1u << 3));

    // More identities than the mask holds: the excess is skipped and counted.
    std::vector<std::string_view> many(70, "sip:nobody@example.com");
    many[63] = "sip:bob@example.com";
    many[69] = "sip:x@evil.example";
    r.clear();
    CHECK(set->match_identities(many, 0, r));
    CHECK(r.identities_skipped == 6);
    CHECK(r.identity_mask == (std::uint64_t(1) << 63));
    CHECK(sorted_warrants(r) == W{1});

    // Long identities spill into several scan chunks; attribution stays exact.
    std::vector<std::string> long_ids;
    for (int i = 0; i < 40; ++i)
        long_ids.push_back("sip:" + std::string(200, char('a' + i % 26)) + "@pad.example");
    long_ids[37] = "sip:" + std::string(200, 'z') + "@evil.example";
    long_ids[38] = "sip:bob@example.com";
    std::vector<std::string_view> views(long_ids.begin(), long_ids.end());
    r.clear();
    CHECK(set->match_identities(views, 0, r));
    CHECK(r.identity_mask == ((std::uint64_t(1) << 37) | (std::uint64_t(1) << 38)));
    CHECK(sorted_warrants(r) == W{1, 2});
    CHECK(r.identities_skipped == 0);

    // A worker index without a scratch is refused, not scanned.
    r.clear();
    std::vector<std::string_view> one = {"sip:bob@example.com"};
    CHECK_FALSE(set->match_identities(one, 2, r));
    CHECK(r.scan_error);
}

TEST_CASE("two workers match concurrently with their own scratch", "[target_set]") {
    std::vector<TargetSpec> targets;
    for (std::uint32_t i = 0; i < 1000; ++i)
        targets.push_back({"tel:+49301000" + std::to_string(1000 + i), i + 1});
    targets.push_back({"sip:*@evil.example", 5000});
    auto set = must_build(targets, 2);

    std::atomic<int> failures{0};
    auto worker = [&](unsigned index) {
        std::vector<std::string> ids(3);
        std::vector<std::string_view> views(3);
        MatchResult r;
        for (int round = 0; round < 20000; ++round) {
            const std::uint32_t n = std::uint32_t(round * 7 + index * 13) % 1200;
            ids[0] = "sip:caller" + std::to_string(round) + "@example.net";
            ids[1] = "tel:+49301000" + std::to_string(1000 + n);
            ids[2] = round % 5 == 0 ? "sip:w" + std::to_string(index) + "@evil.example"
                                    : "sip:w@good.example";
            for (int k = 0; k < 3; ++k)
                views[k] = ids[k];
            r.clear();
            set->match_identities(views, index, r);
            std::uint64_t mask = (n < 1000 ? 2u : 0u) | (round % 5 == 0 ? 4u : 0u);
            bool ok = r.identity_mask == mask && !r.scan_error &&
                      r.warrant_count == (n < 1000) + (round % 5 == 0) &&
                      (n >= 1000 || r.contains(n + 1)) && (round % 5 != 0 || r.contains(5000));
            if (!ok) failures.fetch_add(1, std::memory_order_relaxed);
        }
    };
    std::thread a(worker, 0), b(worker, 1);
    a.join();
    b.join();
    CHECK(failures.load() == 0);
}

TEST_CASE("a target set of 100,000 exact identities builds and matches", "[target_set]") {
    std::vector<TargetSpec> targets;
    targets.reserve(100'000);
    for (std::uint32_t i = 0; i < 100'000; ++i) {
        if (i % 2)
            targets.push_back({"+49 30 " + std::to_string(10'000'000 + i * 7), i + 1});
        else
            targets.push_back({"sip:user" + std::to_string(i) + "@example.com", i + 1});
    }
    const auto t0 = std::chrono::steady_clock::now();
    auto set = must_build(targets);
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    const auto& st = set->stats();
    WARN("100k exact targets: build " << ms << " ms (compile " << st.base.compile_ms
                                      << " ms), database " << st.base.database_bytes
                                      << " bytes, scratch " << st.scratch_bytes << " bytes");
    CHECK(st.base.exact_identities == 100'000);
    CHECK(warrants_of(*set, "<sip:+493010000007@x;user=phone>") == W{2});
    CHECK(warrants_of(*set, "sip:user99998@example.com") == W{99'999});
    CHECK(warrants_of(*set, "sip:user99999@example.com").empty());  // odd i are numbers
    CHECK(warrants_of(*set, "tel:+493010000008").empty());
}
