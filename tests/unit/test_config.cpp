// Dataplane configuration: text format parsed, defaults applied, and every bad setting
// refused with a message that names it.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <string>

#include "dataplane/config.hpp"

using tapwire::dataplane::Config;
using tapwire::dataplane::parse_config;

TEST_CASE("a minimal configuration gets its documented defaults", "[config]") {
    Config c;
    REQUIRE(parse_config(R"(ports { name: "net_pcap0" })", "test", c).empty());
    CHECK(c.mode() == Config::MODE_PASSIVE);
    CHECK(c.ports(0).rx_queues() == 1);
    CHECK(c.ports(0).rx_descriptors() == 1024);
    CHECK(c.burst_size() == 32);
    REQUIRE(c.sip_ports_size() == 1);
    CHECK(c.sip_ports(0) == 5060);
    CHECK(c.tables().max_dialogs() == 65536);
    CHECK(c.tables().dialog_linger_ms() == 32000);
    CHECK(c.mirror().ring_size() == 16384);
    CHECK(c.mirror().snap_length() == 65535);
}

TEST_CASE("bad settings are refused with the setting named", "[config]") {
    struct Case {
        const char* text;
        const char* expect;
    };
    for (const Case& k : {
             Case{"", "ports: at least one port"},
             Case{R"(ports { name: "a" } ports { name: "a" })", "ports[1].name: 'a' listed twice"},
             Case{R"(ports { name: "a" rx_descriptors: 1000 })", "ports[0].rx_descriptors: 1000"},
             Case{R"(ports { name: "a" peer: "b" })", "ports[0].peer: only inline mode"},
             Case{R"(mode: MODE_INLINE ports { name: "a" })",
                  "ports[0].peer: inline mode needs a peer"},
             Case{R"(mode: MODE_INLINE ports { name: "a" peer: "a" })", "cannot be its own peer"},
             Case{R"(mode: MODE_INLINE ports { name: "a" peer: "z" })", "'z' is not a listed port"},
             Case{R"(ports { name: "a" } mirror { ring_size: 1000 })", "mirror.ring_size: 1000"},
             Case{R"(ports { name: "a" } sip_ports: 70000)", "sip_ports: 70000"},
             Case{R"(ports { name: "a" } burst_size: 1000)", "burst_size: at most 256"},
             Case{R"(ports { name: "a" } tables { max_dialogs: 3 })", "tables.max_dialogs"},
         }) {
        Config c;
        std::string error = parse_config(k.text, "cfg", c);
        INFO(k.text << " -> " << error);
        CHECK(error.find(k.expect) != std::string::npos);
    }
}

TEST_CASE("syntax errors point at file, line and column", "[config]") {
    Config c;
    std::string error = parse_config("ports {\n  name: \"a\"\n  bogus_field: 1\n}\n", "dp.conf", c);
    INFO(error);
    CHECK(error.rfind("dp.conf:3:", 0) == 0);
    CHECK(error.find("bogus_field") != std::string::npos);
}

TEST_CASE("the shipped sample configuration is valid", "[config]") {
    const char* src = std::getenv("TAPWIRE_SOURCE_DIR");
    REQUIRE(src != nullptr);
    Config c;
    std::string error =
        tapwire::dataplane::load_config(std::string(src) + "/dataplane/tapwire-dataplane.conf", c);
    INFO(error);
    CHECK(error.empty());
    CHECK(c.ports_size() == 2);
    CHECK(c.workers() == 4);
}
