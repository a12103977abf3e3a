#include <catch2/catch.hpp>

#include <string>
#include <string_view>
#include <vector>

#include "common/sdp.hpp"

using namespace tapwire;

namespace {

IpAddress ip(std::string_view text) {
    auto a = IpAddress::parse(text);
    REQUIRE(a.has_value());
    return *a;
}

// Joins lines with CRLF, as SIP bodies are sent.
std::string crlf(std::initializer_list<std::string_view> lines) {
    std::string s;
    for (auto l : lines) {
        s += l;
        s += "\r\n";
    }
    return s;
}

// An IPv6 offer with audio, video and T.38 fax, exercising most of the parser.
const std::string kOffer = crlf({
    "v=0",
    "o=alice 2890844526 2890844527 IN IP6 2001:db8::1",
    "s=-",
    "c=IN IP6 2001:db8::10",
    "t=0 0",
    "a=sendrecv",
    "m=audio 49170 RTP/AVP 0 8 101",
    "a=rtpmap:101 telephone-event/8000",
    "a=rtcp:53020",
    "m=video 51372/2 RTP/SAVP 31",
    "c=IN IP6 2001:DB8::20",
    "a=rtcp:53022 IN IP6 2001:db8::30",
    "a=recvonly",
    "m=image 49180 udptl t38",
    "a=T38FaxVersion:0",
    "a=rtcp-mux",
});

}  // namespace

TEST_CASE("sdp: IPv6 offer with audio, video and T.38", "[sdp]") {
    SdpSession s;
    REQUIRE(parse_sdp(kOffer, s) == SdpError::Ok);
    CHECK(s.origin_username == "alice");
    CHECK(s.session_id == "2890844526");
    CHECK(s.session_version == "2890844527");
    CHECK(s.origin_address == ip("2001:db8::1"));
    CHECK(s.connection == ip("2001:db8::10"));
    REQUIRE(s.media.size() == 3);

    const SdpMedia& audio = s.media[0];
    CHECK(audio.media == "audio");
    CHECK(audio.proto == "RTP/AVP");
    CHECK(audio.port == 49170);
    CHECK(audio.port_count == 1);
    CHECK(audio.address == ip("2001:db8::10"));  // session c= applies
    CHECK(audio.has_rtcp_attribute);
    CHECK(audio.rtcp_port == 53020);
    CHECK(audio.rtcp_address == audio.address);  // a=rtcp without address
    CHECK(audio.direction == SdpDirection::SendRecv);

    const SdpMedia& video = s.media[1];
    CHECK(video.media == "video");
    CHECK(video.proto == "RTP/SAVP");
    CHECK(video.port == 51372);
    CHECK(video.port_count == 2);
    CHECK(video.address == ip("2001:db8::20"));  // media c= overrides session c=
    CHECK(video.rtcp_port == 53022);
    CHECK(video.rtcp_address == ip("2001:db8::30"));
    CHECK(video.direction == SdpDirection::RecvOnly);

    const SdpMedia& image = s.media[2];
    CHECK(image.media == "image");
    CHECK(image.proto == "udptl");
    CHECK(image.port == 49180);
    CHECK(image.rtcp_mux);
    CHECK(image.rtcp_port == 49180);
    CHECK_FALSE(image.has_rtcp_attribute);
    CHECK(image.address == ip("2001:db8::10"));
}

TEST_CASE("sdp: views point into the input (zero-copy)", "[sdp]") {
    SdpSession s;
    REQUIRE(parse_sdp(kOffer, s) == SdpError::Ok);
    const char* begin = kOffer.data();
    const char* end = begin + kOffer.size();
    for (const SdpMedia& m : s.media) {
        CHECK(m.media.data() >= begin);
        CHECK(m.media.data() + m.media.size() <= end);
    }
    CHECK(s.origin_username.data() >= begin);
}

TEST_CASE("sdp: IPv4 with default RTCP port and LF-only line ends", "[sdp]") {
    std::string body =
        "v=0\no=- 0 0 IN IP4 10.0.0.1\ns=-\nc=IN IP4 10.0.0.1\nt=0 0\nm=audio 8000 RTP/AVP 0\n";
    SdpSession s;
    REQUIRE(parse_sdp(body, s) == SdpError::Ok);
    REQUIRE(s.media.size() == 1);
    CHECK(s.media[0].address == ip("10.0.0.1"));
    CHECK(s.media[0].rtcp_port == 8001);
    CHECK(s.media[0].rtcp_address == ip("10.0.0.1"));
    CHECK_FALSE(s.media[0].has_rtcp_attribute);
}

TEST_CASE("sdp: last line without line end, blank and trailing-space lines tolerated", "[sdp]") {
    SdpSession s;
    REQUIRE(parse_sdp("v=0\r\nc=IN IP4 10.0.0.1  \r\n\r\nm=audio 8000 RTP/AVP 0", s) ==
            SdpError::Ok);
    REQUIRE(s.media.size() == 1);
    CHECK(s.media[0].port == 8000);
}

TEST_CASE("sdp: rtcp-mux puts RTCP on the RTP port even with a=rtcp", "[sdp]") {
    // RFC 5761 section 5.1.3: an offerer may add a=rtcp with the fallback port.
    std::string body = crlf(
        {"v=0", "c=IN IP4 192.0.2.1", "m=audio 30000 RTP/AVP 0", "a=rtcp:30001", "a=rtcp-mux"});
    SdpSession s;
    REQUIRE(parse_sdp(body, s) == SdpError::Ok);
    CHECK(s.media[0].rtcp_mux);
    CHECK(s.media[0].has_rtcp_attribute);
    CHECK(s.media[0].rtcp_port == 30000);
}

TEST_CASE("sdp: real-world a=rtcp with address (FreeSWITCH style)", "[sdp]") {
    std::string body = crlf({
        "v=0",
        "o=FreeSWITCH 1542018924 1542018925 IN IP4 35.175.163.49",
        "s=FreeSWITCH",
        "c=IN IP4 35.175.163.49",
        "t=0 0",
        "m=audio 32242 UDP/TLS/RTP/SAVPF 111 110",
        "a=rtcp:32242 IN IP4 35.175.163.49",
        "a=rtcp-mux",
        "a=sendrecv",
    });
    SdpSession s;
    REQUIRE(parse_sdp(body, s) == SdpError::Ok);
    CHECK(s.media[0].proto == "UDP/TLS/RTP/SAVPF");
    CHECK(s.media[0].rtcp_port == 32242);
    CHECK(s.media[0].rtcp_address == ip("35.175.163.49"));
}

TEST_CASE("sdp: direction at session level, overridden per media", "[sdp]") {
    std::string body =
        crlf({"v=0", "c=IN IP4 192.0.2.1", "a=sendonly", "m=audio 4000 RTP/AVP 0",
              "m=video 4002 RTP/AVP 31", "a=inactive", "m=audio 4004 RTP/AVP 0", "a=sendrecv"});
    SdpSession s;
    REQUIRE(parse_sdp(body, s) == SdpError::Ok);
    CHECK(s.direction == SdpDirection::SendOnly);
    CHECK(s.media[0].direction == SdpDirection::SendOnly);
    CHECK(s.media[1].direction == SdpDirection::Inactive);
    CHECK(s.media[2].direction == SdpDirection::SendRecv);
    CHECK(std::string_view(to_string(SdpDirection::Inactive)) == "inactive");
}

TEST_CASE("sdp: multicast c= keeps the base address", "[sdp]") {
    std::string body = crlf({"v=0", "c=IN IP4 224.2.1.1/127/3", "m=audio 49170 RTP/AVP 0",
                             "m=video 51372 RTP/AVP 31", "c=IN IP6 ff15::101/3"});
    SdpSession s;
    REQUIRE(parse_sdp(body, s) == SdpError::Ok);
    CHECK(s.media[0].address == ip("224.2.1.1"));
    CHECK(s.media[1].address == ip("ff15::101"));

    CHECK(parse_sdp(crlf({"v=0", "c=IN IP4 224.2.1.1/127/3/4"}), s) == SdpError::BadConnection);
    CHECK(parse_sdp(crlf({"v=0", "c=IN IP6 ff15::101/3/4"}), s) == SdpError::BadConnection);
    CHECK(parse_sdp(crlf({"v=0", "c=IN IP4 224.2.1.1/x"}), s) == SdpError::BadConnection);
}

TEST_CASE("sdp: port 0 media is kept as a disabled stream and needs no address", "[sdp]") {
    std::string body = crlf({"v=0", "m=audio 0 RTP/AVP 0", "m=video 0 RTP/AVP 31"});
    SdpSession s;
    REQUIRE(parse_sdp(body, s) == SdpError::Ok);
    REQUIRE(s.media.size() == 2);
    CHECK(s.media[0].port == 0);
    CHECK(s.media[0].rtcp_port == 0);
    CHECK(s.media[1].media == "video");
}

TEST_CASE("sdp: missing c= is MissingConnection, other media still resolved", "[sdp]") {
    std::string body = crlf({"v=0", "o=- 1 1 IN IP4 192.0.2.9", "m=audio 4000 RTP/AVP 0",
                             "c=IN IP4 192.0.2.1", "m=video 4002 RTP/AVP 31"});
    SdpSession s;
    CHECK(parse_sdp(body, s) == SdpError::MissingConnection);
    REQUIRE(s.media.size() == 2);
    CHECK(s.media[0].address == ip("192.0.2.1"));
    CHECK(s.media[0].rtcp_port == 4001);
    CHECK(s.media[1].address.empty());
    CHECK(std::string_view(to_string(SdpError::MissingConnection)) == "missing_connection");
}

TEST_CASE("sdp: more than kMaxMedia m= lines keeps the first ones", "[sdp]") {
    std::string body = crlf({"v=0", "c=IN IP4 192.0.2.1"});
    for (int i = 0; i < 11; ++i) {
        body += "m=audio " + std::to_string(10000 + 2 * i) + " RTP/AVP 0\r\n";
        body += "a=rtcp:" + std::to_string(20000 + i) + "\r\n";
    }
    SdpSession s;
    CHECK(parse_sdp(body, s) == SdpError::TooManyMedia);
    REQUIRE(s.media.size() == SdpSession::kMaxMedia);
    CHECK(s.media.seen() == 11);
    CHECK(s.media[7].port == 10014);
    CHECK(s.media[7].rtcp_port == 20007);  // a=rtcp after the 9th m= did not leak back
    CHECK(s.media[7].address == ip("192.0.2.1"));

    body = crlf({"v=0", "c=IN IP4 192.0.2.1"});
    for (int i = 0; i < 8; ++i)
        body += "m=audio 10000 RTP/AVP 0\r\n";
    CHECK(parse_sdp(body, s) == SdpError::Ok);  // exactly kMaxMedia is fine
}

TEST_CASE("sdp: version line", "[sdp]") {
    SdpSession s;
    CHECK(parse_sdp("", s) == SdpError::Empty);
    CHECK(parse_sdp("\r\n\r\n", s) == SdpError::Empty);
    CHECK(parse_sdp("v=1\r\n", s) == SdpError::BadVersion);
    CHECK(parse_sdp("v=00\r\n", s) == SdpError::BadVersion);
    CHECK(parse_sdp("o=- 0 0 IN IP4 1.2.3.4\r\nv=0\r\n", s) == SdpError::BadVersion);
    CHECK(parse_sdp("hello world", s) == SdpError::BadVersion);
    CHECK(parse_sdp("v=0", s) == SdpError::Ok);
}

TEST_CASE("sdp: garbage lines are BadLine, unknown types and attributes skipped", "[sdp]") {
    SdpSession s;
    std::string ok = crlf({"v=0", "c=IN IP4 192.0.2.1", "z=unknown", "X=upper case type",
                           "m=audio 4000 RTP/AVP 0", "a=x-custom:1 2 3", "a=rtcp-fb:* nack",
                           "a=rtcpx:1", "b=AS:64", "k=prompt"});
    CHECK(parse_sdp(ok, s) == SdpError::Ok);
    CHECK(s.media[0].rtcp_port == 4001);  // a=rtcp-fb and a=rtcpx are not a=rtcp

    CHECK(parse_sdp(crlf({"v=0", "this is not sdp"}), s) == SdpError::BadLine);
    CHECK(parse_sdp(crlf({"v=0", "m =audio 4000 RTP/AVP 0"}), s) == SdpError::BadLine);
    CHECK(parse_sdp(crlf({"v=0", "="}), s) == SdpError::BadLine);
    CHECK(parse_sdp(crlf({"v=0", "1=x"}), s) == SdpError::BadLine);
    CHECK(parse_sdp(crlf({"v=0", "c"}), s) == SdpError::BadLine);
    // What was parsed before the bad line stays available.
    std::string partial = crlf({"v=0", "c=IN IP4 192.0.2.1", "m=audio 4000 RTP/AVP 0", "@@@"});
    CHECK(parse_sdp(partial, s) == SdpError::BadLine);
    REQUIRE(s.media.size() == 1);
    CHECK(s.media[0].address == ip("192.0.2.1"));
}

TEST_CASE("sdp: origin line", "[sdp]") {
    SdpSession s;
    // "-" and host names are legal unicast-address values (RFC 8866 section 5.2).
    CHECK(parse_sdp(crlf({"v=0", "o=- 0 0 IN IP4 -"}), s) == SdpError::Ok);
    CHECK(s.origin_address.empty());
    CHECK(parse_sdp(crlf({"v=0", "o=- 0 0 IN IP4 host.example.com"}), s) == SdpError::Ok);
    CHECK(parse_sdp(crlf({"v=0", "o=- 0 0 IN IP4"}), s) == SdpError::BadOrigin);
    CHECK(parse_sdp(crlf({"v=0", "o=- 0 0 IN IP4 ::1"}), s) == SdpError::BadOrigin);
    CHECK(parse_sdp(crlf({"v=0", "o=- 0 0 IN IP4 1.2.3.999"}), s) == SdpError::BadOrigin);
    CHECK(parse_sdp(crlf({"v=0", "o=- 0 0 ATM NSAP 47.0005"}), s) == SdpError::BadOrigin);
    CHECK(parse_sdp(crlf({"v=0", "o=- 0 0 IN IP4 1.2.3.4 extra"}), s) == SdpError::BadOrigin);
}

TEST_CASE("sdp: connection, media and rtcp errors", "[sdp]") {
    SdpSession s;
    CHECK(parse_sdp(crlf({"v=0", "c=IN IP4"}), s) == SdpError::BadConnection);
    CHECK(parse_sdp(crlf({"v=0", "c=IN IP4 2001:db8::1"}), s) == SdpError::BadConnection);
    CHECK(parse_sdp(crlf({"v=0", "c=IN IP6 192.0.2.1"}), s) == SdpError::BadConnection);
    CHECK(parse_sdp(crlf({"v=0", "c=IN IP4 media.example.com"}), s) == SdpError::BadConnection);
    CHECK(parse_sdp(crlf({"v=0", "c=IN IP4 192.0.2.1", "m=audio"}), s) == SdpError::BadMedia);
    CHECK(parse_sdp(crlf({"v=0", "m=audio 65536 RTP/AVP 0"}), s) == SdpError::BadMedia);
    CHECK(parse_sdp(crlf({"v=0", "m=audio 4000/0 RTP/AVP 0"}), s) == SdpError::BadMedia);
    CHECK(parse_sdp(crlf({"v=0", "m=image $ udptl t38"}), s) == SdpError::BadMedia);
    CHECK(parse_sdp(crlf({"v=0", "m=audio -1 RTP/AVP 0"}), s) == SdpError::BadMedia);
    std::string base = crlf({"v=0", "c=IN IP4 192.0.2.1", "m=audio 4000 RTP/AVP 0"});
    CHECK(parse_sdp(base + "a=rtcp:\r\n", s) == SdpError::BadRtcpAttribute);
    CHECK(parse_sdp(base + "a=rtcp:70000\r\n", s) == SdpError::BadRtcpAttribute);
    CHECK(parse_sdp(base + "a=rtcp:5000 IN IP4\r\n", s) == SdpError::BadRtcpAttribute);
    CHECK(parse_sdp(base + "a=rtcp:5000 IN IP6 10.0.0.1\r\n", s) == SdpError::BadRtcpAttribute);
    CHECK(parse_sdp(base + "a=rtcp:5000 IN IP4 10.0.0.1\r\n", s) == SdpError::Ok);
    CHECK(s.media[0].rtcp_address == ip("10.0.0.1"));
    CHECK(s.media[0].address == ip("192.0.2.1"));
}

TEST_CASE("sdp: session-level a=rtcp and rtcp-mux are ignored", "[sdp]") {
    // RFC 3605 and RFC 5761 define both attributes at media level only.
    SdpSession s;
    std::string body =
        crlf({"v=0", "c=IN IP4 192.0.2.1", "a=rtcp:9", "a=rtcp-mux", "m=audio 4000 RTP/AVP 0"});
    REQUIRE(parse_sdp(body, s) == SdpError::Ok);
    CHECK(s.media[0].rtcp_port == 4001);
    CHECK_FALSE(s.media[0].rtcp_mux);
}

TEST_CASE("sdp: a reused session is reset", "[sdp]") {
    SdpSession s;
    REQUIRE(parse_sdp(kOffer, s) == SdpError::Ok);
    REQUIRE(parse_sdp("v=0\r\n", s) == SdpError::Ok);
    CHECK(s.media.empty());
    CHECK(s.connection.empty());
    CHECK(s.origin_username.empty());
}

TEST_CASE("sdp: every truncation of a valid SDP is handled", "[sdp]") {
    // Exact-size heap copies so that AddressSanitizer catches any read past the end.
    SdpSession s;
    for (std::size_t n = 0; n <= kOffer.size(); ++n) {
        std::vector<char> copy(kOffer.begin(), kOffer.begin() + std::ptrdiff_t(n));
        SdpError e = parse_sdp(std::string_view(copy.data(), copy.size()), s);
        CHECK(std::size_t(e) < std::size_t(SdpError::Count));
        CHECK(s.media.size() <= SdpSession::kMaxMedia);
        // Cutting inside the first line can only give Empty or BadVersion.
        if (n < 3) CHECK((e == SdpError::Empty || e == SdpError::BadVersion));
    }
    CHECK(parse_sdp(kOffer.substr(0, kOffer.size() - 2), s) == SdpError::Ok);
}

TEST_CASE("sdp: error names", "[sdp]") {
    for (std::size_t i = 0; i < std::size_t(SdpError::Count); ++i)
        CHECK(std::string_view(to_string(SdpError(i))) != "unknown");
    CHECK(std::string_view(to_string(SdpError::TooManyMedia)) == "too_many_media");
}

TEST_CASE("sdp: bracketed IPv6 in o= and c= (SIPp style) is accepted", "[sdp]") {
    // Not RFC 8866 syntax, but sent by SIPp and some SBCs (sngrep's ipv6frag capture);
    // refusing it would lose the media of those calls.
    const std::string body =
        "v=0\r\n"
        "o=user1 53655765 2353687637 IN IP6 [fd17:625c:f037:2:a00:27ff:feb9:1521]\r\n"
        "s=-\r\n"
        "c=IN IP6 [fd17:625c:f037:2:a00:27ff:feb9:1521]\r\n"
        "t=0 0\r\n"
        "m=audio 6000 RTP/AVP 0\r\n";
    SdpSession s;
    REQUIRE(parse_sdp(body, s) == SdpError::Ok);
    auto expected = IpAddress::parse("fd17:625c:f037:2:a00:27ff:feb9:1521");
    REQUIRE(expected);
    CHECK(s.origin_address == *expected);
    REQUIRE(s.media.size() == 1);
    CHECK(s.media[0].address == *expected);
    // Brackets are for IPv6 only, and must be balanced.
    SdpSession bad;
    CHECK(parse_sdp("v=0\r\nc=IN IP4 [192.0.2.1]\r\nm=audio 1 RTP/AVP 0\r\n", bad) ==
          SdpError::BadConnection);
    CHECK(parse_sdp("v=0\r\nc=IN IP6 [2001:db8::1\r\nm=audio 1 RTP/AVP 0\r\n", bad) ==
          SdpError::BadConnection);
}
