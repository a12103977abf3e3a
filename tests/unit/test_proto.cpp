// The proto build rule works end to end: protoc + gRPC plugin output compiles, links, and
// round-trips on the wire; and the API's identity values normalise like packet values.
#include <catch2/catch.hpp>

#include "common/identity.hpp"
#include "tapwire/v1/identity.pb.h"

TEST_CASE("TargetIdentity round-trips through the protobuf wire format", "[proto]") {
    tapwire::v1::TargetIdentity in;
    in.set_type(tapwire::v1::IDENTITY_TYPE_TEL_URI);
    in.set_value("tel:+49-30-1234-5678");

    std::string wire;
    REQUIRE(in.SerializeToString(&wire));
    REQUIRE_FALSE(wire.empty());

    tapwire::v1::TargetIdentity out;
    REQUIRE(out.ParseFromString(wire));
    CHECK(out.type() == tapwire::v1::IDENTITY_TYPE_TEL_URI);
    CHECK(out.value() == "tel:+49-30-1234-5678");
    CHECK(tapwire::v1::IdentityType_Name(out.type()) == "IDENTITY_TYPE_TEL_URI");
}

TEST_CASE("an identity from the API and one from a SIP header normalise to one form", "[proto]") {
    tapwire::v1::TargetIdentity target;
    target.set_type(tapwire::v1::IDENTITY_TYPE_E164);
    target.set_value("+49 30 1234 5678");
    CHECK(tapwire::normalized(target.value()) ==
          tapwire::normalized("<sip:+49-30-12345678@gw.carrier.test;user=phone>;tag=9"));
    CHECK(tapwire::normalized(target.value()) == "tel:+493012345678");
}

TEST_CASE("truncated protobuf input is rejected, not misread", "[proto]") {
    tapwire::v1::TargetIdentity in;
    in.set_type(tapwire::v1::IDENTITY_TYPE_SIP_URI);
    in.set_value("sip:alice@example.test");
    std::string wire = in.SerializeAsString();
    tapwire::v1::TargetIdentity out;
    CHECK_FALSE(out.ParseFromString(wire.substr(0, wire.size() - 3)));
}
