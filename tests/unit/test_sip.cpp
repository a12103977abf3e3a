// Unit tests for the SIP parser and stream framing (common/sip.hpp).
//
// RFC 4475 torture messages are reproduced from the RFC text, with its <repeat>, <hex> and
// <allOneLine> notations expanded and binary octets written as escapes; the body of every
// valid one matches its Content-Length, which pins those octets down. Where the RFC leaves
// the choice to the implementation, the test says which one we made.
#include <catch2/catch.hpp>

#include <cstring>
#include <memory>
#include <string>
#include <string_view>

#include "common/sip.hpp"

using namespace tapwire;
using namespace std::string_view_literals;

namespace {

// The text last given to parse(), copied into an exact-size heap block: the SipMessage views
// stay valid after a temporary argument is gone, and ASan flags any read past the end.
std::unique_ptr<char[]> g_text;
std::size_t g_text_size = 0;

std::string_view last_text() {
    return {g_text.get(), g_text_size};
}

// Parses a copy of `text`; returns the error's counter name, so that a failing check prints
// "bad_cseq", not a number.
std::string parse(std::string_view text, SipMessage& m, const SipLimits& limits = {}) {
    g_text = std::make_unique<char[]>(text.size());
    g_text_size = text.size();
    if (!text.empty()) std::memcpy(g_text.get(), text.data(), text.size());
    return to_string(parse_sip(last_text(), m, limits));
}

std::string repeat(std::string_view s, int n) {
    std::string out;
    for (int i = 0; i < n; ++i)
        out += s;
    return out;
}

// head: start line and header fields, each ending in CRLF, without Content-Length.
std::string with_body(std::string_view head, std::string_view body) {
    std::string m(head);
    m += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n";
    m += body;
    return m;
}

bool inside(std::string_view outer, std::string_view v) {
    return v.empty() ||
           (v.data() >= outer.data() && v.data() + v.size() <= outer.data() + outer.size());
}

// Every view of a parsed message must point into the input (zero-copy, no out-of-bounds).
bool all_inside(std::string_view text, const SipMessage& m) {
    auto na = [&](const NameAddr& a) {
        return inside(text, a.display_name) && inside(text, a.uri) && inside(text, a.tag) &&
               inside(text, a.params);
    };
    bool ok = inside(text, m.method_token) && inside(text, m.request_uri) &&
              inside(text, m.reason_phrase) && inside(text, m.call_id) &&
              inside(text, m.cseq_method_token) && na(m.from) && na(m.to) &&
              inside(text, m.via_branch) && inside(text, m.top_via) &&
              inside(text, m.content_type) && inside(text, m.body);
    for (const auto* list : {&m.contact, &m.p_asserted_identity, &m.p_preferred_identity,
                             &m.remote_party_id, &m.diversion, &m.history_info})
        for (const NameAddr& a : *list)
            ok = ok && na(a);
    return ok && m.length <= text.size();
}

constexpr std::string_view kSdp150 =
    "v=0\r\n"
    "o=mhandley 29739 7272939 IN IP4 192.0.2.1\r\n"
    "s=-\r\n"
    "c=IN IP4 192.0.2.1\r\n"
    "t=0 0\r\n"
    "m=audio 49217 RTP/AVP 0 12\r\n"
    "m=video 3227 RTP/AVP 31\r\n"
    "a=rtpmap:31 LPC\r\n";

}  // namespace

// =============================================================================================
// RFC 4475 section 3.1.1: valid messages
// =============================================================================================

namespace rfc4475 {

// 3.1.1.1 A Short Tortuous INVITE
constexpr std::string_view wsinv =
    "INVITE sip:vivekg@chair-dnrc.example.com;unknownparam SIP/2.0\r\n"
    "TO :\r\n"
    " sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n\r\n"
    "from   : \"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com>\r\n"
    "  ;\r\n"
    "  tag = 98asjd8\r\n"
    "MaX-fOrWaRdS: 0068\r\n"
    "Call-ID: wsinv.ndaksdj@192.0.2.1\r\n"
    "Content-Length   : 150\r\n"
    "cseq: 0009\r\n"
    "  INVITE\r\n"
    "Via  : SIP  /   2.0\r\n"
    " /UDP\r\n"
    "    192.0.2.2;branch=390skdjuw\r\n"
    "s :\r\n"
    "NewFangledHeader:   newfangled value\r\n"
    " continued newfangled value\r\n"
    "UnknownHeaderWithUnusualValue: ;;,,;;,;\r\n"
    "Content-Type: application/sdp\r\n"
    "Route:\r\n"
    " <sip:services.example.com;lr;unknownwith=value;unknown-no-value>\r\n"
    "v:  SIP  / 2.0  / TCP     spindle.example.com   ;\r\n"
    "  branch  =   z9hG4bK9ikj8  ,\r\n"
    " SIP  /    2.0   / UDP  192.168.255.111   ; branch=\r\n"
    " z9hG4bK30239\r\n"
    "m:\"Quoted string \\\"\\\"\" <sip:jdrosen@example.com> ; newparam =\r\n"
    "      newvalue ;\r\n"
    "  secondparam ; q = 0.33\r\n"
    "\r\n"
    "v=0\r\n"
    "o=mhandley 29739 7272939 IN IP4 192.0.2.3\r\n"
    "s=-\r\n"
    "c=IN IP4 192.0.2.4\r\n"
    "t=0 0\r\n"
    "m=audio 49217 RTP/AVP 0 12\r\n"
    "m=video 3227 RTP/AVP 31\r\n"
    "a=rtpmap:31 LPC\r\n";

// 3.1.1.2 Wide Range of Valid Characters (NUL, BEL and DEL as quoted-pairs, UTF-8 values)
constexpr std::string_view intmeth =
    "!interesting-Method0123456789_*+`.%indeed'~ "
    "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too."
    "(doesn't-it)@example.com SIP/2.0\r\n"
    "Via: SIP/2.0/TCP host1.example.com;branch=z9hG4bK-.!%66*_+`'~\r\n"
    "To: \"BEL:\\\x07 NUL:\\\x00 DEL:\\\x7F\" "
    "<sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*@example.com>\r\n"
    "From: token1~` token2'+_ token3*%!.- <sip:mundane@example.com> "
    ";fromParam''~+*_!.-%=\xD1\x80\xD0\xB0\xD0\xB1\xD0\xBE\xD1\x82\xD0\xB0\xD1\x8E\xD1\x89\xD0"
    "\xB8\xD0\xB9;tag=_token~1'+`*%!-.\r\n"
    "Call-ID: intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{\r\n"
    "CSeq: 139122385 !interesting-Method0123456789_*+`.%indeed'~\r\n"
    "Max-Forwards: 255\r\n"
    "extensionHeader-!.%*+_`'~:\xEF\xBB\xBF\xE5\xA4\xA7\xE5\x81\x9C\xE9\x9B\xBB\r\n"
    "Content-Length: 0\r\n"
    "\r\n"sv;

// 3.1.1.3 Valid Use of the % Escaping Mechanism
constexpr std::string_view esc01 =
    "INVITE sip:sips%3Auser%40example.com@example.net SIP/2.0\r\n"
    "To: sip:%75se%72@example.com\r\n"
    "From: <sip:I%20have%20spaces@example.net>;tag=938\r\n"
    "Max-Forwards: 87\r\n"
    "i: esc01.239409asdfakjkn23onasd0-3234\r\n"
    "CSeq: 234234 INVITE\r\n"
    "Via: SIP/2.0/UDP host5.example.net;branch=z9hG4bKkdjuw\r\n"
    "C: application/sdp\r\n"
    "Contact:\r\n"
    "  <sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31>\r\n"
    "Content-Length: 150\r\n"
    "\r\n"
    "v=0\r\n"
    "o=mhandley 29739 7272939 IN IP4 192.0.2.1\r\n"
    "s=-\r\n"
    "c=IN IP4 192.0.2.1\r\n"
    "t=0 0\r\n"
    "m=audio 49217 RTP/AVP 0 12\r\n"
    "m=video 3227 RTP/AVP 31\r\n"
    "a=rtpmap:31 LPC\r\n";

// 3.1.1.4 Escaped Nulls in URIs
constexpr std::string_view escnull =
    "REGISTER sip:example.com SIP/2.0\r\n"
    "To: sip:null-%00-null@example.com\r\n"
    "From: sip:null-%00-null@example.com;tag=839923423\r\n"
    "Max-Forwards: 70\r\n"
    "Call-ID: escnull.39203ndfvkjdasfkq3w4otrq0adsfdfnavd\r\n"
    "CSeq: 14398234 REGISTER\r\n"
    "Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bKkdjuw\r\n"
    "Contact: <sip:%00@host5.example.com>\r\n"
    "Contact: <sip:%00%00@host5.example.com>\r\n"
    "L:0\r\n"
    "\r\n";

// 3.1.1.5 Use of % When It Is Not an Escape
constexpr std::string_view esc02 =
    "RE%47IST%45R sip:registrar.example.com SIP/2.0\r\n"
    "To: \"%Z%45\" <sip:resource@example.com>\r\n"
    "From: \"%Z%45\" <sip:resource@example.com>;tag=f232jadfj23\r\n"
    "Call-ID: esc02.asdfnqwo34rq23i34jrjasdcnl23nrlknsdf\r\n"
    "Via: SIP/2.0/TCP host.example.com;branch=z9hG4bK209%fzsnel234\r\n"
    "CSeq: 29344 RE%47IST%45R\r\n"
    "Max-Forwards: 70\r\n"
    "Contact: <sip:alias1@host1.example.com>\r\n"
    "C%6Fntact: <sip:alias2@host2.example.com>\r\n"
    "Contact: <sip:alias3@host3.example.com>\r\n"
    "l: 0\r\n"
    "\r\n";

// 3.1.1.6 Message with No LWS between Display Name and <
constexpr std::string_view lwsdisp =
    "OPTIONS sip:user@example.com SIP/2.0\r\n"
    "To: sip:user@example.com\r\n"
    "From: caller<sip:caller@example.com>;tag=323\r\n"
    "Max-Forwards: 70\r\n"
    "Call-ID: lwsdisp.1234abcd@funky.example.com\r\n"
    "CSeq: 60 OPTIONS\r\n"
    "Via: SIP/2.0/UDP funky.example.com;branch=z9hG4bKkdjuw\r\n"
    "l: 0\r\n"
    "\r\n";

// 3.1.1.7 Long Values in Header Fields (built from the RFC's <repeat> notation)
std::string longreq() {
    std::string m =
        "INVITE sip:user@example.com SIP/2.0\r\n"
        "To: \"I have a user name of " +
        repeat("extreme", 10) + " proportion\"<sip:user@example.com:6000;unknownparam1=very" +
        repeat("long", 20) + "value;longparam" + repeat("name", 25) + "=shortvalue;very" +
        repeat("long", 25) + "ParameterNameWithNoValue>\r\n" +
        "F: sip:" + repeat("amazinglylongcallername", 5) + "@example.net;tag=12" +
        repeat("982", 50) + "424;unknownheaderparam" + repeat("name", 20) + "=unknowheaderparam" +
        repeat("value", 15) + ";unknownValueless" + repeat("paramname", 10) + "\r\n" +
        "Call-ID: longreq.one" + repeat("really", 20) + "longcallid\r\n" +
        "CSeq: 3882340 INVITE\r\n" + "Unknown-" + repeat("Long", 20) + "-Name: unknown-" +
        repeat("long", 20) + "-value; unknown-" + repeat("long", 20) +
        "-parameter-name = unknown-" + repeat("long", 20) + "-parameter-value\r\n";
    const char* vias[] = {
        "Via: ", "v: ",   "V: ",   "Via: ", "ViA: ", "VIa: ", "VIA: ",  "via: ",  "viA: ",
        "vIa: ", "vIA: ", "V :  ", "v :  ", "V  : ", "v  : ", "Via : ", "Via  : "};
    int host = 33;
    for (const char* v : vias)
        m += std::string(v) + "SIP/2.0/TCP sip" + std::to_string(host--) + ".example.com\r\n";
    while (host >= 1)
        m += "Via: SIP/2.0/TCP sip" + std::to_string(host--) + ".example.com\r\n";
    m += "Via: SIP/2.0/TCP host.example.com;received=192.0.2.5;branch=very" + repeat("long", 50) +
         "branchvalue\r\n" + "Max-Forwards: 70\r\n" +
         "Contact: <sip:" + repeat("amazinglylongcallername", 5) + "@host5.example.net>\r\n" +
         "Content-Type: application/sdp\r\n" + "l: 150\r\n" + "\r\n" + std::string(kSdp150);
    return m;
}

// 3.1.1.8 Extra Trailing Octets in a UDP Datagram
constexpr std::string_view dblreq =
    "REGISTER sip:example.com SIP/2.0\r\n"
    "To: sip:j.user@example.com\r\n"
    "From: sip:j.user@example.com;tag=43251j3j324\r\n"
    "Max-Forwards: 8\r\n"
    "I: dblreq.0ha0isndaksdj99sdfafnl3lk233412\r\n"
    "Contact: sip:j.user@host.example.com\r\n"
    "CSeq: 8 REGISTER\r\n"
    "Via: SIP/2.0/UDP 192.0.2.125;branch=z9hG4bKkdjuw23492\r\n"
    "Content-Length: 0\r\n"
    "\r\n"
    "INVITE sip:joe@example.com SIP/2.0\r\n"
    "t: sip:joe@example.com\r\n"
    "From: sip:caller@example.net;tag=141334\r\n"
    "Max-Forwards: 8\r\n"
    "Call-ID: dblreq.0ha0isnda977644900765@192.0.2.15\r\n"
    "CSeq: 8 INVITE\r\n"
    "Via: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bKkdjuw380234\r\n"
    "Content-Type: application/sdp\r\n"
    "Content-Length: 150\r\n"
    "\r\n"
    "v=0\r\n"
    "o=mhandley 29739 7272939 IN IP4 192.0.2.15\r\n"
    "s=-\r\n"
    "c=IN IP4 192.0.2.15\r\n"
    "t=0 0\r\n"
    "m=audio 49217 RTP/AVP 0 12\r\n"
    "m=video 3227 RTP/AVP 31\r\n"
    "a=rtpmap:31 LPC\r\n";

// 3.1.1.9 Semicolon-Separated Parameters in URI User Part
constexpr std::string_view semiuri =
    "OPTIONS sip:user;par=u%40example.net@example.com SIP/2.0\r\n"
    "To: sip:j_user@example.com\r\n"
    "From: sip:caller@example.org;tag=33242\r\n"
    "Max-Forwards: 3\r\n"
    "Call-ID: semiuri.0ha0isndaksdj\r\n"
    "CSeq: 8 OPTIONS\r\n"
    "Accept: application/sdp, application/pkcs7-mime,\r\n"
    "        multipart/mixed, multipart/signed,\r\n"
    "        message/sip, message/sipfrag\r\n"
    "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKkdjuw\r\n"
    "l: 0\r\n"
    "\r\n";

// 3.1.1.10 Varied and Unknown Transport Types
constexpr std::string_view transports =
    "OPTIONS sip:user@example.com SIP/2.0\r\n"
    "To: sip:user@example.com\r\n"
    "From: <sip:caller@example.com>;tag=323\r\n"
    "Max-Forwards: 70\r\n"
    "Call-ID:  transports.kijh4akdnaqjkwendsasfdj\r\n"
    "Accept: application/sdp\r\n"
    "CSeq: 60 OPTIONS\r\n"
    "Via: SIP/2.0/UDP t1.example.com;branch=z9hG4bKkdjuw\r\n"
    "Via: SIP/2.0/SCTP t2.example.com;branch=z9hG4bKklasjdhf\r\n"
    "Via: SIP/2.0/TLS t3.example.com;branch=z9hG4bK2980unddj\r\n"
    "Via: SIP/2.0/UNKNOWN t4.example.com;branch=z9hG4bKasd0f3en\r\n"
    "Via: SIP/2.0/TCP t5.example.com;branch=z9hG4bK0a9idfnee\r\n"
    "l: 0\r\n"
    "\r\n";

// 3.1.1.11 Multipart MIME Message (the second body part is 342 octets of binary CMS data)
constexpr std::string_view mpart01 =
    "MESSAGE sip:kumiko@example.org SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-d87543-4dade06d0bdb11ee-1--d87543-;rport\r\n"
    "Max-Forwards: 70\r\n"
    "Route: <sip:127.0.0.1:5080>\r\n"
    "Identity: r5mwreLuyDRYBi/0TiPwEsY3rEVsk/G2WxhgTV1PF7hHuLIK0YWVKZhKv9Mj8UeXqkMVbnVq37CD+813g"
    "vYjcBUaZngQmXc9WNZSDNGCzA+fWl9MEUHWIZo1CeJebdY/XlgKeTa0Olvq0rt70Q5jiSfbqMJmQFteeivUhkMWYUA="
    "\r\n"
    "Contact: <sip:fluffy@127.0.0.1:5070>\r\n"
    "To: <sip:kumiko@example.org>\r\n"
    "From: <sip:fluffy@example.com>;tag=2fb0dcc9\r\n"
    "Call-ID: 3d9485ad0c49859b@Zmx1ZmZ5LW1hYy0xNi5sb2NhbA..\r\n"
    "CSeq: 1 MESSAGE\r\n"
    "Content-Transfer-Encoding: binary\r\n"
    "Content-Type: multipart/mixed;boundary=7a9cbec02ceef655\r\n"
    "Date: Sat, 15 Oct 2005 04:44:56 GMT\r\n"
    "User-Agent: SIPimp.org/0.2.5 (curses)\r\n"
    "Content-Length: 553\r\n"
    "\r\n"
    "--7a9cbec02ceef655\r\n"
    "Content-Type: text/plain\r\n"
    "Content-Transfer-Encoding: binary\r\n"
    "\r\n"
    "Hello\r\n"
    "--7a9cbec02ceef655\r\n"
    "Content-Type: application/octet-stream\r\n"
    "Content-Transfer-Encoding: binary\r\n"
    "\r\n"
    "\x30\x82\x01\x52\x06\x09\x2A\x86"
    "\x48\x86\xF7\x0D\x01\x07\x02\xA0\x82\x01\x43\x30\x82\x01\x3F\x02"
    "\x01\x01\x31\x09\x30\x07\x06\x05\x2B\x0E\x03\x02\x1A\x30\x0B\x06"
    "\x09\x2A\x86\x48\x86\xF7\x0D\x01\x07\x01\x31\x82\x01\x20\x30\x82"
    "\x01\x1C\x02\x01\x01\x30\x7C\x30\x70\x31\x0B\x30\x09\x06\x03\x55"
    "\x04\x06\x13\x02\x55\x53\x31\x13\x30\x11\x06\x03\x55\x04\x08\x13"
    "\x0A\x43\x61\x6C\x69\x66\x6F\x72\x6E\x69\x61\x31\x11\x30\x0F\x06"
    "\x03\x55\x04\x07\x13\x08\x53\x61\x6E\x20\x4A\x6F\x73\x65\x31\x0E"
    "\x30\x0C\x06\x03\x55\x04\x0A\x13\x05\x73\x69\x70\x69\x74\x31\x29"
    "\x30\x27\x06\x03\x55\x04\x0B\x13\x20\x53\x69\x70\x69\x74\x20\x54"
    "\x65\x73\x74\x20\x43\x65\x72\x74\x69\x66\x69\x63\x61\x74\x65\x20"
    "\x41\x75\x74\x68\x6F\x72\x69\x74\x79\x02\x08\x01\x95\x00\x71\x02"
    "\x33\x01\x13\x30\x07\x06\x05\x2B\x0E\x03\x02\x1A\x30\x0D\x06\x09"
    "\x2A\x86\x48\x86\xF7\x0D\x01\x01\x01\x05\x00\x04\x81\x80\x8E\xF4"
    "\x66\xF9\x48\xF0\x52\x2D\xD2\xE5\x97\x8E\x9D\x95\xAA\xE9\xF2\xFE"
    "\x15\xA0\x66\x59\x71\x62\x92\xE8\xDA\x2A\xA8\xD8\x35\x0A\x68\xCE"
    "\xFF\xAE\x3C\xBD\x2B\xFF\x16\x75\xDD\xD5\x64\x8E\x59\x3D\xD6\x47"
    "\x28\xF2\x62\x20\xF7\xE9\x41\x74\x9E\x33\x0D\x9A\x15\xED\xAB\xDB"
    "\x93\xD1\x0C\x42\x10\x2E\x7B\x72\x89\xD2\x9C\xC0\xC9\xAE\x2E\xFB"
    "\xC7\xC0\xCF\xF9\x17\x2F\x3B\x02\x7E\x4F\xC0\x27\xE1\x54\x6D\xE4"
    "\xB6\xAA\x3A\xBB\x3E\x66\xCC\xCB\x5D\xD6\xC6\x4B\x83\x83\x14\x9C"
    "\xB8\xE6\xFF\x18\x2D\x94\x4F\xE5\x7B\x65\xBC\x99\xD0\x05"
    "\r\n"
    "--7a9cbec02ceef655--\r\n"sv;

// 3.1.1.12 Unusual Reason Phrase (UTF-8)
constexpr std::string_view unreason =
    "SIP/2.0 200 = 2**3 * 5**2 \xD0\xBD\xD0\xBE\x20\xD1\x81\xD1\x82\xD0\xBE\x20\xD0\xB4\xD0\xB5"
    "\xD0\xB2\xD1\x8F\xD0\xBD\xD0\xBE\xD1\x81\xD1\x82\xD0\xBE\x20\xD0\xB4\xD0\xB5\xD0\xB2\xD1\x8F"
    "\xD1\x82\xD1\x8C\x20\x2D\x20\xD0\xBF\xD1\x80\xD0\xBE\xD1\x81\xD1\x82\xD0\xBE\xD0\xB5\r\n"
    "Via: SIP/2.0/UDP 192.0.2.198;branch=z9hG4bK1324923\r\n"
    "Call-ID: unreason.1234ksdfak3j2erwedfsASdf\r\n"
    "CSeq: 35 INVITE\r\n"
    "From: sip:user@example.com;tag=11141343\r\n"
    "To: sip:user@example.edu;tag=2229\r\n"
    "Content-Length: 154\r\n"
    "Content-Type: application/sdp\r\n"
    "Contact: <sip:user@host198.example.com>\r\n"
    "\r\n"
    "v=0\r\n"
    "o=mhandley 29739 7272939 IN IP4 192.0.2.198\r\n"
    "s=-\r\n"
    "c=IN IP4 192.0.2.198\r\n"
    "t=0 0\r\n"
    "m=audio 49217 RTP/AVP 0 12\r\n"
    "m=video 3227 RTP/AVP 31\r\n"
    "a=rtpmap:31 LPC\r\n";

// 3.1.1.13 Empty Reason Phrase (the SP after the code is there)
constexpr std::string_view noreason =
    "SIP/2.0 100 \r\n"
    "Via: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe\r\n"
    "Call-ID: noreason.asndj203insdf99223ndf\r\n"
    "CSeq: 35 INVITE\r\n"
    "From: <sip:user@example.com>;tag=39ansfi3\r\n"
    "To: <sip:user@example.edu>;tag=902jndnke3\r\n"
    "Content-Length: 0\r\n"
    "Contact: <sip:user@host105.example.com>\r\n"
    "\r\n";

// =============================================================================================
// RFC 4475 section 3.1.2: invalid messages
// =============================================================================================

// 3.1.2.1 Extraneous Header Field Separators
constexpr std::string_view badinv01 =
    "INVITE sip:user@example.com SIP/2.0\r\n"
    "To: sip:j.user@example.com\r\n"
    "From: sip:caller@example.net;tag=134161461246\r\n"
    "Max-Forwards: 7\r\n"
    "Call-ID: badinv01.0ha0isndaksdjasdf3234nas\r\n"
    "CSeq: 8 INVITE\r\n"
    "Via: SIP/2.0/UDP 192.0.2.15;;,;,,\r\n"
    "Contact: \"Joe\" <sip:joe@example.org>;;;;\r\n"
    "Content-Length: 152\r\n"
    "Content-Type: application/sdp\r\n"
    "\r\n"
    "v=0\r\n"
    "o=mhandley 29739 7272939 IN IP4 192.0.2.15\r\n"
    "s=-\r\n"
    "c=IN IP4 192.0.2.15\r\n"
    "t=0 0\r\n"
    "m=audio 49217 RTP/AVP 0 12\r\n"
    "m=video 3227 RTP/AVP 31\r\n"
    "a=rtpmap:31 LPC\r\n";

// 3.1.2.2 Content Length Larger Than Message
constexpr std::string_view clerr =
    "INVITE sip:user@example.com SIP/2.0\r\n"
    "Max-Forwards: 80\r\n"
    "To: sip:j.user@example.com\r\n"
    "From: sip:caller@example.net;tag=93942939o2\r\n"
    "Contact: <sip:caller@hungry.example.net>\r\n"
    "Call-ID: clerr.0ha0isndaksdjweiafasdk3\r\n"
    "CSeq: 8 INVITE\r\n"
    "Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bK-39234-23523\r\n"
    "Content-Type: application/sdp\r\n"
    "Content-Length: 9999\r\n"
    "\r\n"
    "v=0\r\n"
    "o=mhandley 29739 7272939 IN IP4 192.0.2.155\r\n"
    "s=-\r\n"
    "c=IN IP4 192.0.2.155\r\n"
    "t=0 0\r\n"
    "m=audio 49217 RTP/AVP 0 12\r\n"
    "m=video 3227 RTP/AVP 31\r\n"
    "a=rtpmap:31 LPC\r\n";

// 3.1.2.3 Negative Content-Length
constexpr std::string_view ncl =
    "INVITE sip:user@example.com SIP/2.0\r\n"
    "Max-Forwards: 254\r\n"
    "To: sip:j.user@example.com\r\n"
    "From: sip:caller@example.net;tag=32394234\r\n"
    "Call-ID: ncl.0ha0isndaksdj2193423r542w35\r\n"
    "CSeq: 0 INVITE\r\n"
    "Via: SIP/2.0/UDP 192.0.2.53;branch=z9hG4bKkdjuw\r\n"
    "Contact: <sip:caller@example53.example.net>\r\n"
    "Content-Type: application/sdp\r\n"
    "Content-Length: -999\r\n"
    "\r\n"
    "v=0\r\n"
    "o=mhandley 29739 7272939 IN IP4 192.0.2.53\r\n"
    "s=-\r\n"
    "c=IN IP4 192.0.2.53\r\n"
    "t=0 0\r\n"
    "m=audio 49217 RTP/AVP 0 12\r\n"
    "m=video 3227 RTP/AVP 31\r\n"
    "a=rtpmap:31 LPC\r\n";

// 3.1.2.4 Request Scalar Fields with Overlarge Values
std::string scalar02() {
    return "REGISTER sip:example.com SIP/2.0\r\n"
           "Via: SIP/2.0/TCP host129.example.com;branch=z9hG4bK342sdfoi3\r\n"
           "To: <sip:user@example.com>\r\n"
           "From: <sip:user@example.com>;tag=239232jh3\r\n"
           "CSeq: 36893488147419103232 REGISTER\r\n"
           "Call-ID: scalar02.23o0pd9vanlq3wnrlnewofjas9ui32\r\n"
           "Max-Forwards: 300\r\n"
           "Expires: 1" +
           repeat("0", 100) +
           "\r\n"
           "Contact: <sip:user@host129.example.com>\r\n"
           "  ;expires=280297596632815\r\n"
           "Content-Length: 0\r\n"
           "\r\n";
}

// 3.1.2.5 Response Scalar Fields with Overlarge Values
constexpr std::string_view scalarlg =
    "SIP/2.0 503 Service Unavailable\r\n"
    "Via: SIP/2.0/TCP host129.example.com;branch=z9hG4bKzzxdiwo34sw;received=192.0.2.129\r\n"
    "To: <sip:user@example.com>\r\n"
    "From: <sip:other@example.net>;tag=2easdjfejw\r\n"
    "CSeq: 9292394834772304023312 OPTIONS\r\n"
    "Call-ID: scalarlg.noase0of0234hn2qofoaf0232aewf2394r\r\n"
    "Retry-After: 949302838503028349304023988\r\n"
    "Warning: 1812 overture \"In Progress\"\r\n"
    "Content-Length: 0\r\n"
    "\r\n";

// 3.1.2.6 Unterminated Quoted String in Display Name
constexpr std::string_view quotbal =
    "INVITE sip:user@example.com SIP/2.0\r\n"
    "To: \"Mr. J. User <sip:j.user@example.com>\r\n"
    "From: sip:caller@example.net;tag=93334\r\n"
    "Max-Forwards: 10\r\n"
    "Call-ID: quotbal.aksdj\r\n"
    "Contact: <sip:caller@host59.example.net>\r\n"
    "CSeq: 8 INVITE\r\n"
    "Via: SIP/2.0/UDP 192.0.2.59:5050;branch=z9hG4bKkdjuw39234\r\n"
    "Content-Type: application/sdp\r\n"
    "Content-Length: 152\r\n"
    "\r\n"
    "v=0\r\n"
    "o=mhandley 29739 7272939 IN IP4 192.0.2.15\r\n"
    "s=-\r\n"
    "c=IN IP4 192.0.2.15\r\n"
    "t=0 0\r\n"
    "m=audio 49217 RTP/AVP 0 12\r\n"
    "m=video 3227 RTP/AVP 31\r\n"
    "a=rtpmap:31 LPC\r\n";

// 3.1.2.7 <> Enclosing Request-URI
constexpr std::string_view ltgtruri =
    "INVITE <sip:user@example.com> SIP/2.0\r\n"
    "To: sip:user@example.com\r\n"
    "From: sip:caller@example.net;tag=39291\r\n"
    "Max-Forwards: 23\r\n"
    "Call-ID: ltgtruri.1@192.0.2.5\r\n"
    "CSeq: 1 INVITE\r\n"
    "Via: SIP/2.0/UDP 192.0.2.5\r\n"
    "Contact: <sip:caller@host5.example.net>\r\n"
    "Content-Type: application/sdp\r\n"
    "Content-Length: 159\r\n"
    "\r\n"
    "v=0\r\n"
    "o=mhandley 29739 7272939 IN IP4 192.0.2.5\r\n"
    "s=-\r\n"
    "c=IN IP4 192.0.2.5\r\n"
    "t=3149328700 0\r\n"
    "m=audio 49217 RTP/AVP 0 12\r\n"
    "m=video 3227 RTP/AVP 31\r\n"
    "a=rtpmap:31 LPC\r\n";

// 3.1.2.8 Malformed SIP Request-URI (embedded LWS)
constexpr std::string_view lwsruri =
    "INVITE sip:user@example.com; lr SIP/2.0\r\n"
    "To: sip:user@example.com;tag=3xfe-9921883-z9f\r\n"
    "From: sip:caller@example.net;tag=231413434\r\n"
    "Max-Forwards: 5\r\n"
    "Call-ID: lwsruri.asdfasdoeoi2323-asdfwrn23-asd834rk423\r\n"
    "CSeq: 2130706432 INVITE\r\n"
    "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKkdjuw2395\r\n"
    "Contact: <sip:caller@host1.example.net>\r\n"
    "Content-Type: application/sdp\r\n"
    "Content-Length: 159\r\n"
    "\r\n"
    "v=0\r\n"
    "o=mhandley 29739 7272939 IN IP4 192.0.2.1\r\n"
    "s=-\r\n"
    "c=IN IP4 192.0.2.1\r\n"
    "t=3149328700 0\r\n"
    "m=audio 49217 RTP/AVP 0 12\r\n"
    "m=video 3227 RTP/AVP 31\r\n"
    "a=rtpmap:31 LPC\r\n";

// 3.1.2.9 Multiple SP Separating Request-Line Elements
constexpr std::string_view lwsstart =
    "INVITE  sip:user@example.com  SIP/2.0\r\n"
    "Max-Forwards: 8\r\n"
    "To: sip:user@example.com\r\n"
    "From: sip:caller@example.net;tag=8814\r\n"
    "Call-ID: lwsstart.dfknq234oi243099adsdfnawe3@example.com\r\n"
    "CSeq: 1893884 INVITE\r\n"
    "Via: SIP/2.0/UDP host1.example.com;branch=z9hG4bKkdjuw3923\r\n"
    "Contact: <sip:caller@host1.example.net>\r\n"
    "Content-Type: application/sdp\r\n"
    "Content-Length: 150\r\n"
    "\r\n"
    "v=0\r\n"
    "o=mhandley 29739 7272939 IN IP4 192.0.2.1\r\n"
    "s=-\r\n"
    "c=IN IP4 192.0.2.1\r\n"
    "t=0 0\r\n"
    "m=audio 49217 RTP/AVP 0 12\r\n"
    "m=video 3227 RTP/AVP 31\r\n"
    "a=rtpmap:31 LPC\r\n";

// 3.1.2.10 SP Characters at End of Request-Line
constexpr std::string_view trws =
    "OPTIONS sip:remote-target@example.com SIP/2.0  \r\n"
    "Via: SIP/2.0/TCP host1.example.com;branch=z9hG4bK299342093\r\n"
    "To: <sip:remote-target@example.com>\r\n"
    "From: <sip:local-resource@example.com>;tag=329429089\r\n"
    "Call-ID: trws.oicu34958239neffasdhr2345r\r\n"
    "Accept: application/sdp\r\n"
    "CSeq: 238923 OPTIONS\r\n"
    "Max-Forwards: 70\r\n"
    "Content-Length: 0\r\n"
    "\r\n";

// 3.1.2.11 Escaped Headers in SIP Request-URI
constexpr std::string_view escruri =
    "INVITE sip:user@example.com?Route=%3Csip:example.com%3E SIP/2.0\r\n"
    "To: sip:user@example.com\r\n"
    "From: sip:caller@example.net;tag=341518\r\n"
    "Max-Forwards: 7\r\n"
    "Contact: <sip:caller@host39923.example.net>\r\n"
    "Call-ID: escruri.23940-asdfhj-aje3br-234q098w-fawerh2q-h4n5\r\n"
    "CSeq: 149209342 INVITE\r\n"
    "Via: SIP/2.0/UDP host-of-the-hour.example.com;branch=z9hG4bKkdjuw\r\n"
    "Content-Type: application/sdp\r\n"
    "Content-Length: 150\r\n"
    "\r\n"
    "v=0\r\n"
    "o=mhandley 29739 7272939 IN IP4 192.0.2.1\r\n"
    "s=-\r\n"
    "c=IN IP4 192.0.2.1\r\n"
    "t=0 0\r\n"
    "m=audio 49217 RTP/AVP 0 12\r\n"
    "m=video 3227 RTP/AVP 31\r\n"
    "a=rtpmap:31 LPC\r\n";

// 3.1.2.12 Invalid Time Zone in Date Header Field
constexpr std::string_view baddate =
    "INVITE sip:user@example.com SIP/2.0\r\n"
    "To: sip:user@example.com\r\n"
    "From: sip:caller@example.net;tag=2234923\r\n"
    "Max-Forwards: 70\r\n"
    "Call-ID: baddate.239423mnsadf3j23lj42--sedfnm234\r\n"
    "CSeq: 1392934 INVITE\r\n"
    "Via: SIP/2.0/UDP host.example.com;branch=z9hG4bKkdjuw\r\n"
    "Date: Fri, 01 Jan 2010 16:00:00 EST\r\n"
    "Contact: <sip:caller@host5.example.net>\r\n"
    "Content-Type: application/sdp\r\n"
    "Content-Length: 150\r\n"
    "\r\n"
    "v=0\r\n"
    "o=mhandley 29739 7272939 IN IP4 192.0.2.5\r\n"
    "s=-\r\n"
    "c=IN IP4 192.0.2.5\r\n"
    "t=0 0\r\n"
    "m=audio 49217 RTP/AVP 0 12\r\n"
    "m=video 3227 RTP/AVP 31\r\n"
    "a=rtpmap:31 LPC\r\n";

// 3.1.2.13 Failure to Enclose name-addr URI in <>
constexpr std::string_view regbadct =
    "REGISTER sip:example.com SIP/2.0\r\n"
    "To: sip:user@example.com\r\n"
    "From: sip:user@example.com;tag=998332\r\n"
    "Max-Forwards: 70\r\n"
    "Call-ID: regbadct.k345asrl3fdbv@10.0.0.1\r\n"
    "CSeq: 1 REGISTER\r\n"
    "Via: SIP/2.0/UDP 135.180.130.133:5060;branch=z9hG4bKkdjuw\r\n"
    "Contact: sip:user@example.com?Route=%3Csip:sip.example.com%3E\r\n"
    "l: 0\r\n"
    "\r\n";

// 3.1.2.14 Spaces within addr-spec
constexpr std::string_view badaspec =
    "OPTIONS sip:user@example.org SIP/2.0\r\n"
    "Via: SIP/2.0/UDP host4.example.com:5060;branch=z9hG4bKkdju43234\r\n"
    "Max-Forwards: 70\r\n"
    "From: \"Bell, Alexander\" <sip:a.g.bell@example.com>;tag=433423\r\n"
    "To: \"Watson, Thomas\" < sip:t.watson@example.org >\r\n"
    "Call-ID: badaspec.sdf0234n2nds0a099u23h3hnnw009cdkne3\r\n"
    "Accept: application/sdp\r\n"
    "CSeq: 3923239 OPTIONS\r\n"
    "l: 0\r\n"
    "\r\n";

// 3.1.2.15 Non-token Characters in Display Name
constexpr std::string_view baddn =
    "OPTIONS sip:t.watson@example.org SIP/2.0\r\n"
    "Via:     SIP/2.0/UDP c.example.com:5060;branch=z9hG4bKkdjuw\r\n"
    "Max-Forwards:      70\r\n"
    "From:    Bell, Alexander <sip:a.g.bell@example.com>;tag=43\r\n"
    "To:      Watson, Thomas <sip:t.watson@example.org>\r\n"
    "Call-ID: baddn.31415@c.example.com\r\n"
    "Accept: application/sdp\r\n"
    "CSeq:    3923239 OPTIONS\r\n"
    "l: 0\r\n"
    "\r\n";

// 3.1.2.16 Unknown Protocol Version
constexpr std::string_view badvers =
    "OPTIONS sip:t.watson@example.org SIP/7.0\r\n"
    "Via:     SIP/7.0/UDP c.example.com;branch=z9hG4bKkdjuw\r\n"
    "Max-Forwards:     70\r\n"
    "From:    A. Bell <sip:a.g.bell@example.com>;tag=qweoiqpe\r\n"
    "To:      T. Watson <sip:t.watson@example.org>\r\n"
    "Call-ID: badvers.31417@c.example.com\r\n"
    "CSeq:    1 OPTIONS\r\n"
    "l: 0\r\n"
    "\r\n";

// 3.1.2.17 Start Line and CSeq Method Mismatch
constexpr std::string_view mismatch01 =
    "OPTIONS sip:user@example.com SIP/2.0\r\n"
    "To: sip:j.user@example.com\r\n"
    "From: sip:caller@example.net;tag=34525\r\n"
    "Max-Forwards: 6\r\n"
    "Call-ID: mismatch01.dj0234sxdfl3\r\n"
    "CSeq: 8 INVITE\r\n"
    "Via: SIP/2.0/UDP host.example.com;branch=z9hG4bKkdjuw\r\n"
    "l: 0\r\n"
    "\r\n";

// 3.1.2.18 Unknown Method with CSeq Method Mismatch
constexpr std::string_view mismatch02 =
    "NEWMETHOD sip:user@example.com SIP/2.0\r\n"
    "To: sip:j.user@example.com\r\n"
    "From: sip:caller@example.net;tag=34525\r\n"
    "Max-Forwards: 6\r\n"
    "Call-ID: mismatch02.dj0234sxdfl3\r\n"
    "CSeq: 8 INVITE\r\n"
    "Contact: <sip:caller@host.example.net>\r\n"
    "Via: SIP/2.0/UDP host.example.net;branch=z9hG4bKkdjuw\r\n"
    "Content-Type: application/sdp\r\n"
    "l: 138\r\n"
    "\r\n"
    "v=0\r\n"
    "o=mhandley 29739 7272939 IN IP4 192.0.2.1\r\n"
    "c=IN IP4 192.0.2.1\r\n"
    "m=audio 49217 RTP/AVP 0 12\r\n"
    "m=video 3227 RTP/AVP 31\r\n"
    "a=rtpmap:31 LPC\r\n";

// 3.1.2.19 Overlarge Response Code
constexpr std::string_view bigcode =
    "SIP/2.0 4294967301 better not break the receiver\r\n"
    "Via: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe\r\n"
    "Call-ID: bigcode.asdof3uj203asdnf3429uasdhfas3ehjasdfas9i\r\n"
    "CSeq: 353494 INVITE\r\n"
    "From: <sip:user@example.com>;tag=39ansfi3\r\n"
    "To: <sip:user@example.edu>;tag=902jndnke3\r\n"
    "Content-Length: 0\r\n"
    "Contact: <sip:user@host105.example.com>\r\n"
    "\r\n";

// =============================================================================================
// RFC 4475 sections 3.2 to 3.4: transaction, application and compatibility tests
// =============================================================================================

// 3.2.1 Missing Transaction Identifier
constexpr std::string_view badbranch =
    "OPTIONS sip:user@example.com SIP/2.0\r\n"
    "To: sip:user@example.com\r\n"
    "From: sip:caller@example.org;tag=33242\r\n"
    "Max-Forwards: 3\r\n"
    "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK\r\n"
    "Accept: application/sdp\r\n"
    "Call-ID: badbranch.sadonfo23i420jv0as0derf3j3n\r\n"
    "CSeq: 8 OPTIONS\r\n"
    "l: 0\r\n"
    "\r\n";

// 3.3.1 Missing Required Header Fields
constexpr std::string_view insuf =
    "INVITE sip:user@example.com SIP/2.0\r\n"
    "CSeq: 193942 INVITE\r\n"
    "Via: SIP/2.0/UDP 192.0.2.95;branch=z9hG4bKkdj.insuf\r\n"
    "Content-Type: application/sdp\r\n"
    "l: 152\r\n"
    "\r\n"
    "v=0\r\n"
    "o=mhandley 29739 7272939 IN IP4 192.0.2.95\r\n"
    "s=-\r\n"
    "c=IN IP4 192.0.2.95\r\n"
    "t=0 0\r\n"
    "m=audio 49217 RTP/AVP 0 12\r\n"
    "m=video 3227 RTP/AVP 31\r\n"
    "a=rtpmap:31 LPC\r\n";

// 3.3.2 Request-URI with Unknown Scheme
constexpr std::string_view unkscm =
    "OPTIONS nobodyKnowsThisScheme:totallyopaquecontent SIP/2.0\r\n"
    "To: sip:user@example.com\r\n"
    "From: sip:caller@example.net;tag=384\r\n"
    "Max-Forwards: 3\r\n"
    "Call-ID: unkscm.nasdfasser0q239nwsdfasdkl34\r\n"
    "CSeq: 3923423 OPTIONS\r\n"
    "Via: SIP/2.0/TCP host9.example.com;branch=z9hG4bKkdjuw39234\r\n"
    "Content-Length: 0\r\n"
    "\r\n";

// 3.3.3 Request-URI with Known but Atypical Scheme
constexpr std::string_view novelsc =
    "OPTIONS soap.beep://192.0.2.103:3002 SIP/2.0\r\n"
    "To: sip:user@example.com\r\n"
    "From: sip:caller@example.net;tag=384\r\n"
    "Max-Forwards: 3\r\n"
    "Call-ID: novelsc.asdfasser0q239nwsdfasdkl34\r\n"
    "CSeq: 3923423 OPTIONS\r\n"
    "Via: SIP/2.0/TCP host9.example.com;branch=z9hG4bKkdjuw39234\r\n"
    "Content-Length: 0\r\n"
    "\r\n";

// 3.3.4 Unknown URI Schemes in Header Fields
constexpr std::string_view unksm2 =
    "REGISTER sip:example.com SIP/2.0\r\n"
    "To: isbn:2983792873\r\n"
    "From: <http://www.example.com>;tag=3234233\r\n"
    "Call-ID: unksm2.daksdj@hyphenated-host.example.com\r\n"
    "CSeq: 234902 REGISTER\r\n"
    "Max-Forwards: 70\r\n"
    "Via: SIP/2.0/UDP 192.0.2.21:5060;branch=z9hG4bKkdjuw\r\n"
    "Contact: <name:John_Smith>\r\n"
    "l: 0\r\n"
    "\r\n";

// 3.3.5 Proxy-Require and Require
constexpr std::string_view bext01 =
    "OPTIONS sip:user@example.com SIP/2.0\r\n"
    "To: sip:j_user@example.com\r\n"
    "From: sip:caller@example.net;tag=242etr\r\n"
    "Max-Forwards: 6\r\n"
    "Call-ID: bext01.0ha0isndaksdj\r\n"
    "Require: nothingSupportsThis, nothingSupportsThisEither\r\n"
    "Proxy-Require: noProxiesSupportThis, norDoAnyProxiesSupportThis\r\n"
    "CSeq: 8 OPTIONS\r\n"
    "Via: SIP/2.0/UDP fold-and-staple.example.com;branch=z9hG4bKkdjuw\r\n"
    "Content-Length: 0\r\n"
    "\r\n";

// 3.3.6 Unknown Content-Type
constexpr std::string_view invut =
    "INVITE sip:user@example.com SIP/2.0\r\n"
    "Contact: <sip:caller@host5.example.net>\r\n"
    "To: sip:j.user@example.com\r\n"
    "From: sip:caller@example.net;tag=8392034\r\n"
    "Max-Forwards: 70\r\n"
    "Call-ID: invut.0ha0isndaksdjadsfij34n23d\r\n"
    "CSeq: 235448 INVITE\r\n"
    "Via: SIP/2.0/UDP somehost.example.com;branch=z9hG4bKkdjuw\r\n"
    "Content-Type: application/unknownformat\r\n"
    "Content-Length: 40\r\n"
    "\r\n"
    "<audio>\r\n"
    " <pcmu port=\"443\"/>\r\n"
    "</audio>\r\n";

// 3.3.7 Unknown Authorization Scheme
constexpr std::string_view regaut01 =
    "REGISTER sip:example.com SIP/2.0\r\n"
    "To: sip:j.user@example.com\r\n"
    "From: sip:j.user@example.com;tag=87321hj23128\r\n"
    "Max-Forwards: 8\r\n"
    "Call-ID: regaut01.0ha0isndaksdj\r\n"
    "CSeq: 9338 REGISTER\r\n"
    "Via: SIP/2.0/TCP 192.0.2.253;branch=z9hG4bKkdjuw\r\n"
    "Authorization: NoOneKnowsThisScheme opaque-data=here\r\n"
    "Content-Length:0\r\n"
    "\r\n";

// 3.3.8 Multiple Values in Single Value Required Fields
constexpr std::string_view multi01 =
    "INVITE sip:user@company.com SIP/2.0\r\n"
    "Contact: <sip:caller@host25.example.net>\r\n"
    "Via: SIP/2.0/UDP 192.0.2.25;branch=z9hG4bKkdjuw\r\n"
    "Max-Forwards: 70\r\n"
    "CSeq: 5 INVITE\r\n"
    "Call-ID: multi01.98asdh@192.0.2.1\r\n"
    "CSeq: 59 INVITE\r\n"
    "Call-ID: multi01.98asdh@192.0.2.2\r\n"
    "From: sip:caller@example.com;tag=3413415\r\n"
    "To: sip:user@example.com\r\n"
    "To: sip:other@example.net\r\n"
    "From: sip:caller@example.net;tag=2923420123\r\n"
    "Content-Type: application/sdp\r\n"
    "l: 154\r\n"
    "Contact: <sip:caller@host36.example.net>\r\n"
    "Max-Forwards: 5\r\n"
    "\r\n"
    "v=0\r\n"
    "o=mhandley 29739 7272939 IN IP4 192.0.2.25\r\n"
    "s=-\r\n"
    "c=IN IP4 192.0.2.25\r\n"
    "t=0 0\r\n"
    "m=audio 49217 RTP/AVP 0 12\r\n"
    "m=video 3227 RTP/AVP 31\r\n"
    "a=rtpmap:31 LPC\r\n";

// 3.3.9 Multiple Content-Length Values
constexpr std::string_view mcl01 =
    "OPTIONS sip:user@example.com SIP/2.0\r\n"
    "Via: SIP/2.0/UDP host5.example.net;branch=z9hG4bK293423\r\n"
    "To: sip:user@example.com\r\n"
    "From: sip:other@example.net;tag=3923942\r\n"
    "Call-ID: mcl01.fhn2323orihawfdoa3o4r52o3irsdf\r\n"
    "CSeq: 15932 OPTIONS\r\n"
    "Content-Length: 13\r\n"
    "Max-Forwards: 60\r\n"
    "Content-Length: 5\r\n"
    "Content-Type: text/plain\r\n"
    "\r\n"
    "There's no way to know how many octets are supposed to be here.\r\n";

// 3.3.10 200 OK Response with Broadcast Via Header Field Value
constexpr std::string_view bcast =
    "SIP/2.0 200 OK\r\n"
    "Via: SIP/2.0/UDP 192.0.2.198;branch=z9hG4bK1324923\r\n"
    "Via: SIP/2.0/UDP 255.255.255.255;branch=z9hG4bK1saber23\r\n"
    "Call-ID: bcast.0384840201234ksdfak3j2erwedfsASdf\r\n"
    "CSeq: 35 INVITE\r\n"
    "From: sip:user@example.com;tag=11141343\r\n"
    "To: sip:user@example.edu;tag=2229\r\n"
    "Content-Length: 154\r\n"
    "Content-Type: application/sdp\r\n"
    "Contact: <sip:user@host28.example.com>\r\n"
    "\r\n"
    "v=0\r\n"
    "o=mhandley 29739 7272939 IN IP4 192.0.2.198\r\n"
    "s=-\r\n"
    "c=IN IP4 192.0.2.198\r\n"
    "t=0 0\r\n"
    "m=audio 49217 RTP/AVP 0 12\r\n"
    "m=video 3227 RTP/AVP 31\r\n"
    "a=rtpmap:31 LPC\r\n";

// 3.3.11 Max-Forwards of Zero
constexpr std::string_view zeromf =
    "OPTIONS sip:user@example.com SIP/2.0\r\n"
    "To: sip:user@example.com\r\n"
    "From: sip:caller@example.net;tag=3ghsd41\r\n"
    "Call-ID: zeromf.jfasdlfnm2o2l43r5u0asdfas\r\n"
    "CSeq: 39234321 OPTIONS\r\n"
    "Via: SIP/2.0/UDP host1.example.com;branch=z9hG4bKkdjuw2349i\r\n"
    "Max-Forwards: 0\r\n"
    "Content-Length: 0\r\n"
    "\r\n";

// 3.3.12 REGISTER with a Contact Header Parameter
constexpr std::string_view cparam01 =
    "REGISTER sip:example.com SIP/2.0\r\n"
    "Via: SIP/2.0/UDP saturn.example.com:5060;branch=z9hG4bKkdjuw\r\n"
    "Max-Forwards: 70\r\n"
    "From: sip:watson@example.com;tag=DkfVgjkrtMwaerKKpe\r\n"
    "To: sip:watson@example.com\r\n"
    "Call-ID: cparam01.70710@saturn.example.com\r\n"
    "CSeq: 2 REGISTER\r\n"
    "Contact: sip:+19725552222@gw1.example.net;unknownparam\r\n"
    "l: 0\r\n"
    "\r\n";

// 3.3.13 REGISTER with a url-parameter
constexpr std::string_view cparam02 =
    "REGISTER sip:example.com SIP/2.0\r\n"
    "Via: SIP/2.0/UDP saturn.example.com:5060;branch=z9hG4bKkdjuw\r\n"
    "Max-Forwards: 70\r\n"
    "From: sip:watson@example.com;tag=838293\r\n"
    "To: sip:watson@example.com\r\n"
    "Call-ID: cparam02.70710@saturn.example.com\r\n"
    "CSeq: 3 REGISTER\r\n"
    "Contact: <sip:+19725552222@gw1.example.net;unknownparam>\r\n"
    "l: 0\r\n"
    "\r\n";

// 3.3.14 REGISTER with a URL Escaped Header
constexpr std::string_view regescrt =
    "REGISTER sip:example.com SIP/2.0\r\n"
    "To: sip:user@example.com\r\n"
    "From: sip:user@example.com;tag=8\r\n"
    "Max-Forwards: 70\r\n"
    "Call-ID: regescrt.k345asrl3fdbv@192.0.2.1\r\n"
    "CSeq: 14398234 REGISTER\r\n"
    "Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bKkdjuw\r\n"
    "M: <sip:user@example.com?Route=%3Csip:sip.example.com%3E>\r\n"
    "L:0\r\n"
    "\r\n";

// 3.3.15 Unacceptable Accept Offering
constexpr std::string_view sdp01 =
    "INVITE sip:user@example.com SIP/2.0\r\n"
    "To: sip:j_user@example.com\r\n"
    "Contact: <sip:caller@host15.example.net>\r\n"
    "From: sip:caller@example.net;tag=234\r\n"
    "Max-Forwards: 5\r\n"
    "Call-ID: sdp01.ndaksdj9342dasdd\r\n"
    "Accept: text/nobodyKnowsThis\r\n"
    "CSeq: 8 INVITE\r\n"
    "Via: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bKkdjuw\r\n"
    "Content-Length: 150\r\n"
    "Content-Type: application/sdp\r\n"
    "\r\n"
    "v=0\r\n"
    "o=mhandley 29739 7272939 IN IP4 192.0.2.5\r\n"
    "s=-\r\n"
    "c=IN IP4 192.0.2.5\r\n"
    "t=0 0\r\n"
    "m=audio 49217 RTP/AVP 0 12\r\n"
    "m=video 3227 RTP/AVP 31\r\n"
    "a=rtpmap:31 LPC\r\n";

// 3.4.1 INVITE with RFC 2543 Syntax (no Content-Length: the body runs to the datagram's end)
constexpr std::string_view inv2543 =
    "INVITE sip:UserB@example.com SIP/2.0\r\n"
    "Via: SIP/2.0/UDP iftgw.example.com\r\n"
    "From: <sip:+13035551111@ift.client.example.net;user=phone>\r\n"
    "Record-Route: <sip:UserB@example.com;maddr=ss1.example.com>\r\n"
    "To: sip:+16505552222@ss1.example.net;user=phone\r\n"
    "Call-ID: inv2543.1717@ift.client.example.com\r\n"
    "CSeq: 56 INVITE\r\n"
    "Content-Type: application/sdp\r\n"
    "\r\n"
    "v=0\r\n"
    "o=mhandley 29739 7272939 IN IP4 192.0.2.5\r\n"
    "s=-\r\n"
    "c=IN IP4 192.0.2.5\r\n"
    "t=0 0\r\n"
    "m=audio 49217 RTP/AVP 0\r\n";

}  // namespace rfc4475

TEST_CASE("RFC 4475 3.1.1.1 wsinv: a short tortuous INVITE", "[sip][rfc4475]") {
    SipMessage m;
    REQUIRE(parse(rfc4475::wsinv, m) == "ok");
    CHECK(m.is_request);
    CHECK(m.method == SipMethod::Invite);
    CHECK(m.method_token == "INVITE");
    CHECK(m.request_uri == "sip:vivekg@chair-dnrc.example.com;unknownparam");
    // "TO :" then a folded value; tag with LWS around '=' (EQUAL = SWS "=" SWS)
    CHECK(m.to.display_name.empty());
    CHECK(m.to.uri == "sip:vivekg@chair-dnrc.example.com");
    CHECK(m.to.tag == "1918181833n");
    // quoted display name with quoted-pairs, kept raw (zero-copy); tag after two folds
    CHECK(m.from.display_name == "J Rosenberg \\\\\\\"");
    CHECK(m.from.uri == "sip:jdrosen@example.com");
    CHECK(m.from.tag == "98asjd8");
    CHECK(m.call_id == "wsinv.ndaksdj@192.0.2.1");
    // "cseq: 0009\r\n  INVITE": the folded CRLF is LWS between number and method
    CHECK(m.cseq == 9);
    CHECK(m.cseq_method == SipMethod::Invite);
    CHECK(m.cseq_method_token == "INVITE");
    // one Via field with a folded value, then "v:" with two values
    CHECK(m.via_count == 3);
    CHECK(m.top_via == "SIP  /   2.0\r\n /UDP\r\n    192.0.2.2;branch=390skdjuw");
    CHECK(m.via_branch == "390skdjuw");
    // "m:" compact Contact with escaped quotes in the display name
    REQUIRE(m.contact.size() == 1);
    CHECK(m.contact[0].display_name == "Quoted string \\\"\\\"");
    CHECK(m.contact[0].uri == "sip:jdrosen@example.com");
    CHECK(m.contact[0].params == "; newparam =\r\n      newvalue ;\r\n  secondparam ; q = 0.33");
    CHECK(m.contact[0].tag.empty());
    CHECK(m.content_type == "application/sdp");
    CHECK(m.content_length == 150);
    CHECK(m.body.size() == 150);
    CHECK(m.body.substr(0, 5) == "v=0\r\n");
    CHECK(m.has_sdp_body());
    CHECK(m.header_count == 14);
    CHECK(m.length == rfc4475::wsinv.size());
    CHECK(all_inside(last_text(), m));
}

TEST_CASE("RFC 4475 3.1.1.2 intmeth: wide range of valid characters", "[sip][rfc4475]") {
    SipMessage m;
    REQUIRE(parse(rfc4475::intmeth, m) == "ok");
    CHECK(m.method == SipMethod::Other);
    CHECK(m.method_token == "!interesting-Method0123456789_*+`.%indeed'~");
    CHECK(m.cseq_method_token == m.method_token);
    CHECK(m.cseq == 139122385);
    CHECK(m.request_uri ==
          "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too."
          "(doesn't-it)@example.com");
    CHECK(m.via_branch == "z9hG4bK-.!%66*_+`'~");
    // NUL, BEL and DEL as quoted-pairs in the display name
    CHECK(m.to.display_name == "BEL:\\\x07 NUL:\\\x00 DEL:\\\x7F"sv);
    CHECK(m.to.uri == "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*@example.com");
    CHECK(m.from.display_name == "token1~` token2'+_ token3*%!.-");
    CHECK(m.from.uri == "sip:mundane@example.com");
    CHECK(m.from.tag == "_token~1'+`*%!-.");
    CHECK(m.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{");
    CHECK(m.body.empty());
    CHECK(m.header_count == 8);
    CHECK(m.length == rfc4475::intmeth.size());
    // The cheap classifier only knows upper-case methods: this one needs the full parser.
    CHECK_FALSE(looks_like_sip(rfc4475::intmeth));
}

TEST_CASE("RFC 4475 3.1.1.3 to 3.1.1.6: escapes and display names", "[sip][rfc4475]") {
    SipMessage m;
    SECTION("esc01: escapes are left as written") {
        REQUIRE(parse(rfc4475::esc01, m) == "ok");
        CHECK(m.request_uri == "sip:sips%3Auser%40example.com@example.net");
        CHECK(m.to.uri == "sip:%75se%72@example.com");
        CHECK(m.from.uri == "sip:I%20have%20spaces@example.net");
        CHECK(m.call_id == "esc01.239409asdfakjkn23onasd0-3234");  // compact "i:"
        CHECK(m.content_type == "application/sdp");                // compact "C:"
        REQUIRE(m.contact.size() == 1);
        CHECK(m.contact[0].uri == "sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31");
        CHECK(m.body.size() == 150);
    }
    SECTION("escnull: %00 in URIs, compact L:") {
        REQUIRE(parse(rfc4475::escnull, m) == "ok");
        CHECK(m.method == SipMethod::Register);
        CHECK(m.to.uri == "sip:null-%00-null@example.com");
        REQUIRE(m.contact.size() == 2);
        CHECK(m.contact[0].uri == "sip:%00@host5.example.com");
        CHECK(m.contact[1].uri == "sip:%00%00@host5.example.com");
        CHECK(m.content_length == 0);
    }
    SECTION("esc02: RE%47IST%45R is not REGISTER, C%6Fntact is not Contact") {
        REQUIRE(parse(rfc4475::esc02, m) == "ok");
        CHECK(m.method == SipMethod::Other);
        CHECK(m.method_token == "RE%47IST%45R");
        CHECK(m.to.display_name == "%Z%45");
        CHECK(m.from.tag == "f232jadfj23");
        CHECK(m.via_branch == "z9hG4bK209%fzsnel234");
        REQUIRE(m.contact.size() == 2);
        CHECK(m.contact[0].uri == "sip:alias1@host1.example.com");
        CHECK(m.contact[1].uri == "sip:alias3@host3.example.com");
    }
    SECTION("lwsdisp: no LWS between display name and <") {
        REQUIRE(parse(rfc4475::lwsdisp, m) == "ok");
        CHECK(m.from.display_name == "caller");
        CHECK(m.from.uri == "sip:caller@example.com");
        CHECK(m.from.tag == "323");
        CHECK(m.method == SipMethod::Options);
    }
}

TEST_CASE("RFC 4475 3.1.1.7 longreq: long values and 34 Via fields", "[sip][rfc4475]") {
    const std::string msg = rfc4475::longreq();
    SipMessage m;
    REQUIRE(parse(msg, m) == "ok");
    CHECK(m.via_count == 34);
    CHECK(m.top_via == "SIP/2.0/TCP sip33.example.com");
    CHECK(m.via_branch.empty());  // the topmost Via has no branch
    CHECK(m.to.display_name == "I have a user name of " + repeat("extreme", 10) + " proportion");
    CHECK(m.to.uri.substr(0, 30) == "sip:user@example.com:6000;unkn");
    CHECK(m.from.uri == "sip:" + repeat("amazinglylongcallername", 5) + "@example.net");
    CHECK(m.from.tag == "12" + repeat("982", 50) + "424");
    CHECK(m.call_id == "longreq.one" + repeat("really", 20) + "longcallid");
    REQUIRE(m.contact.size() == 1);
    CHECK(m.content_length == 150);
    CHECK(m.body == kSdp150);
    CHECK(m.length == msg.size());
}

TEST_CASE("RFC 4475 3.1.1.8 to 3.1.1.13", "[sip][rfc4475]") {
    SipMessage m;
    SECTION("dblreq: octets after Content-Length are ignored (datagram rule)") {
        REQUIRE(parse(rfc4475::dblreq, m) == "ok");
        CHECK(m.method == SipMethod::Register);
        CHECK(m.call_id == "dblreq.0ha0isndaksdj99sdfafnl3lk233412");  // "I:" compact
        REQUIRE(m.contact.size() == 1);
        CHECK(m.contact[0].uri == "sip:j.user@host.example.com");
        CHECK(m.body.empty());
        CHECK(m.length == rfc4475::dblreq.find("INVITE sip:joe"));
        CHECK(m.length < rfc4475::dblreq.size());
    }
    SECTION("semiuri: ';' in the user part of the Request-URI, folded Accept") {
        REQUIRE(parse(rfc4475::semiuri, m) == "ok");
        CHECK(m.request_uri == "sip:user;par=u%40example.net@example.com");
        CHECK(m.to.uri == "sip:j_user@example.com");
        CHECK(m.via_branch == "z9hG4bKkdjuw");
    }
    SECTION("transports: five Via fields, unknown transport") {
        REQUIRE(parse(rfc4475::transports, m) == "ok");
        CHECK(m.via_count == 5);
        CHECK(m.top_via == "SIP/2.0/UDP t1.example.com;branch=z9hG4bKkdjuw");
        CHECK(m.call_id == "transports.kijh4akdnaqjkwendsasfdj");
    }
    SECTION("mpart01: binary body, Content-Type parameters cut") {
        REQUIRE(parse(rfc4475::mpart01, m) == "ok");
        CHECK(m.method == SipMethod::Message);
        CHECK(m.content_type == "multipart/mixed");
        CHECK(m.content_length == 553);
        CHECK(m.body.size() == 553);
        CHECK(m.body.substr(0, 20) == "--7a9cbec02ceef655\r\n");
        CHECK_FALSE(m.has_sdp_body());
        CHECK(m.via_branch == "z9hG4bK-d87543-4dade06d0bdb11ee-1--d87543-");
        CHECK(m.length == rfc4475::mpart01.size());
    }
    SECTION("unreason: UTF-8 reason phrase") {
        REQUIRE(parse(rfc4475::unreason, m) == "ok");
        CHECK_FALSE(m.is_request);
        CHECK(m.status_code == 200);
        const std::size_t line_end = rfc4475::unreason.find("\r\n");
        CHECK(m.reason_phrase == rfc4475::unreason.substr(12, line_end - 12));
        CHECK(m.reason_phrase.substr(0, 14) == "= 2**3 * 5**2 ");
        CHECK(m.method == SipMethod::Invite);  // from CSeq
        CHECK(m.body.size() == 154);
        CHECK(m.has_sdp_body());
    }
    SECTION("noreason: empty reason phrase") {
        REQUIRE(parse(rfc4475::noreason, m) == "ok");
        CHECK(m.status_code == 100);
        CHECK(m.reason_phrase.empty());
        CHECK(m.to.tag == "902jndnke3");
    }
}

TEST_CASE("RFC 4475 3.1.2: invalid messages are rejected with a reason", "[sip][rfc4475]") {
    SipMessage m;
    // Empty separators in Via (";;,;,,"): the Via field is the first bad one.
    CHECK(parse(rfc4475::badinv01, m) == "bad_header_line");
    CHECK(parse(rfc4475::clerr, m) == "body_truncated");
    CHECK(parse(rfc4475::ncl, m) == "bad_content_length");
    CHECK(parse(rfc4475::scalar02(), m) == "bad_cseq");
    CHECK(parse(rfc4475::scalarlg, m) == "bad_cseq");
    CHECK(parse(rfc4475::quotbal, m) == "bad_name_addr");
    CHECK(parse(rfc4475::ltgtruri, m) == "bad_request_uri");
    CHECK(parse(rfc4475::lwsruri, m) == "bad_request_uri");
    CHECK(parse(rfc4475::lwsstart, m) == "bad_start_line");
    CHECK(parse(rfc4475::trws, m) == "bad_start_line");
    // Headers are not allowed in a Request-URI (RFC 3261 19.1.1); we take the strict reading.
    CHECK(parse(rfc4475::escruri, m) == "bad_request_uri");
    // An addr-spec with '?' must use the name-addr form (RFC 3261 section 20).
    CHECK(parse(rfc4475::regbadct, m) == "bad_name_addr");
    CHECK(parse(rfc4475::badvers, m) == "bad_version");
    CHECK(parse(rfc4475::mismatch01, m) == "cseq_method_mismatch");
    // Unknown method: the RFC allows 501 or 400; at parse level it is the same mismatch.
    CHECK(parse(rfc4475::mismatch02, m) == "cseq_method_mismatch");
    CHECK(parse(rfc4475::bigcode, m) == "bad_status_code");
}

TEST_CASE("RFC 4475 3.1.2: defects we accept on purpose", "[sip][rfc4475]") {
    SipMessage m;
    SECTION("baddate: Date is not parsed") {
        REQUIRE(parse(rfc4475::baddate, m) == "ok");
        CHECK(m.body.size() == 150);
    }
    SECTION("badaspec: spaces just inside <> are dropped (liberal reading the RFC allows)") {
        REQUIRE(parse(rfc4475::badaspec, m) == "ok");
        CHECK(m.to.display_name == "Watson, Thomas");
        CHECK(m.to.uri == "sip:t.watson@example.org");
        CHECK(m.from.display_name == "Bell, Alexander");
    }
    SECTION("baddn: unquoted display names with ',' are taken as written") {
        // Rejecting would only hide the call from interception; the quotes are inferred.
        REQUIRE(parse(rfc4475::baddn, m) == "ok");
        CHECK(m.from.display_name == "Bell, Alexander");
        CHECK(m.from.uri == "sip:a.g.bell@example.com");
        CHECK(m.from.tag == "43");
        CHECK(m.to.display_name == "Watson, Thomas");
    }
}

TEST_CASE("RFC 4475 3.2 to 3.4: syntactically valid, semantically odd", "[sip][rfc4475]") {
    SipMessage m;
    SECTION("badbranch: a bare magic cookie is still a branch") {
        REQUIRE(parse(rfc4475::badbranch, m) == "ok");
        CHECK(m.via_branch == "z9hG4bK");
    }
    SECTION("insuf: the first missing mandatory field is reported") {
        CHECK(parse(rfc4475::insuf, m) == "missing_call_id");
    }
    SECTION("unkscm, novelsc, unksm2: unknown schemes are not a parse error") {
        REQUIRE(parse(rfc4475::unkscm, m) == "ok");
        CHECK(m.request_uri == "nobodyKnowsThisScheme:totallyopaquecontent");
        REQUIRE(parse(rfc4475::novelsc, m) == "ok");
        CHECK(m.request_uri == "soap.beep://192.0.2.103:3002");
        REQUIRE(parse(rfc4475::unksm2, m) == "ok");
        CHECK(m.to.uri == "isbn:2983792873");
        CHECK(m.from.uri == "http://www.example.com");
        REQUIRE(m.contact.size() == 1);
        CHECK(m.contact[0].uri == "name:John_Smith");
    }
    SECTION("bext01, regaut01, zeromf, sdp01, bcast: fine at this layer") {
        CHECK(parse(rfc4475::bext01, m) == "ok");
        CHECK(parse(rfc4475::regaut01, m) == "ok");
        CHECK(m.content_length == 0);
        CHECK(parse(rfc4475::zeromf, m) == "ok");
        CHECK(parse(rfc4475::sdp01, m) == "ok");
        CHECK(m.has_sdp_body());
        REQUIRE(parse(rfc4475::bcast, m) == "ok");
        CHECK(m.via_count == 2);
        CHECK(m.method == SipMethod::Invite);
        CHECK(m.body.size() == 154);
    }
    SECTION("invut: unknown Content-Type, body kept") {
        REQUIRE(parse(rfc4475::invut, m) == "ok");
        CHECK(m.content_type == "application/unknownformat");
        CHECK(m.body == "<audio>\r\n <pcmu port=\"443\"/>\r\n</audio>\r\n");
        CHECK_FALSE(m.has_sdp_body());
    }
    SECTION("multi01 and mcl01: conflicting singleton fields") {
        CHECK(parse(rfc4475::multi01, m) == "duplicate_singleton_header");
        CHECK(parse(rfc4475::mcl01, m) == "duplicate_singleton_header");
    }
    SECTION("cparam01: bare addr-spec, the parameter belongs to the header") {
        REQUIRE(parse(rfc4475::cparam01, m) == "ok");
        REQUIRE(m.contact.size() == 1);
        CHECK(m.contact[0].uri == "sip:+19725552222@gw1.example.net");
        CHECK(m.contact[0].params == ";unknownparam");
    }
    SECTION("cparam02: inside <> the parameter belongs to the URI") {
        REQUIRE(parse(rfc4475::cparam02, m) == "ok");
        REQUIRE(m.contact.size() == 1);
        CHECK(m.contact[0].uri == "sip:+19725552222@gw1.example.net;unknownparam");
        CHECK(m.contact[0].params.empty());
    }
    SECTION("regescrt: escaped header inside <> is allowed in Contact") {
        REQUIRE(parse(rfc4475::regescrt, m) == "ok");
        REQUIRE(m.contact.size() == 1);  // compact "M:"
        CHECK(m.contact[0].uri == "sip:user@example.com?Route=%3Csip:sip.example.com%3E");
    }
    SECTION("inv2543: RFC 2543 syntax, no Content-Length, no tag, no branch") {
        REQUIRE(parse(rfc4475::inv2543, m) == "ok");
        CHECK(m.content_length == -1);
        CHECK(m.body.substr(0, 4) == "v=0\r");
        CHECK(m.length == rfc4475::inv2543.size());
        CHECK(m.from.tag.empty());
        CHECK(m.via_branch.empty());
        CHECK(m.to.uri == "sip:+16505552222@ss1.example.net");
        CHECK(m.to.params == ";user=phone");
        CHECK(m.has_sdp_body());
    }
}

// =============================================================================================
// Call flows in the style of RFC 3665 (basic) and RFC 3666 (PSTN interworking)
// =============================================================================================

namespace flows {

constexpr std::string_view kAliceSdp =
    "v=0\r\n"
    "o=alice 2890844526 2890844526 IN IP4 client.atlanta.example.com\r\n"
    "s=-\r\n"
    "c=IN IP4 192.0.2.101\r\n"
    "t=0 0\r\n"
    "m=audio 49172 RTP/AVP 0\r\n"
    "a=rtpmap:0 PCMU/8000\r\n";

constexpr std::string_view kBobSdp =
    "v=0\r\n"
    "o=bob 2890844527 2890844527 IN IP4 client.biloxi.example.com\r\n"
    "s=-\r\n"
    "c=IN IP4 192.0.2.201\r\n"
    "t=0 0\r\n"
    "m=audio 3456 RTP/AVP 0\r\n"
    "a=rtpmap:0 PCMU/8000\r\n";

const std::string invite = with_body(
    "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
    "Via: SIP/2.0/TCP client.atlanta.example.com:5060;branch=z9hG4bK74bf9\r\n"
    "Max-Forwards: 70\r\n"
    "From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\n"
    "To: Bob <sip:bob@biloxi.example.com>\r\n"
    "Call-ID: 3848276298220188511@atlanta.example.com\r\n"
    "CSeq: 1 INVITE\r\n"
    "Contact: <sip:alice@client.atlanta.example.com;transport=tcp>\r\n"
    "Content-Type: application/sdp\r\n",
    kAliceSdp);

const std::string trying =
    "SIP/2.0 100 Trying\r\n"
    "Via: SIP/2.0/TCP client.atlanta.example.com:5060;branch=z9hG4bK74bf9"
    ";received=192.0.2.101\r\n"
    "From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\n"
    "To: Bob <sip:bob@biloxi.example.com>\r\n"
    "Call-ID: 3848276298220188511@atlanta.example.com\r\n"
    "CSeq: 1 INVITE\r\n"
    "Content-Length: 0\r\n"
    "\r\n";

const std::string ringing =
    "SIP/2.0 180 Ringing\r\n"
    "Via: SIP/2.0/TCP client.atlanta.example.com:5060;branch=z9hG4bK74bf9"
    ";received=192.0.2.101\r\n"
    "From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\n"
    "To: Bob <sip:bob@biloxi.example.com>;tag=8321234356\r\n"
    "Call-ID: 3848276298220188511@atlanta.example.com\r\n"
    "CSeq: 1 INVITE\r\n"
    "Contact: <sip:bob@client.biloxi.example.com;transport=tcp>\r\n"
    "Content-Length: 0\r\n"
    "\r\n";

const std::string ok_invite = with_body(
    "SIP/2.0 200 OK\r\n"
    "Via: SIP/2.0/TCP client.atlanta.example.com:5060;branch=z9hG4bK74bf9"
    ";received=192.0.2.101\r\n"
    "From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\n"
    "To: Bob <sip:bob@biloxi.example.com>;tag=8321234356\r\n"
    "Call-ID: 3848276298220188511@atlanta.example.com\r\n"
    "CSeq: 1 INVITE\r\n"
    "Contact: <sip:bob@client.biloxi.example.com;transport=tcp>\r\n"
    "Content-Type: application/sdp\r\n",
    kBobSdp);

const std::string ack =
    "ACK sip:bob@client.biloxi.example.com SIP/2.0\r\n"
    "Via: SIP/2.0/TCP client.atlanta.example.com:5060;branch=z9hG4bK74bd5\r\n"
    "Max-Forwards: 70\r\n"
    "From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\n"
    "To: Bob <sip:bob@biloxi.example.com>;tag=8321234356\r\n"
    "Call-ID: 3848276298220188511@atlanta.example.com\r\n"
    "CSeq: 1 ACK\r\n"
    "Content-Length: 0\r\n"
    "\r\n";

const std::string bye =
    "BYE sip:alice@client.atlanta.example.com SIP/2.0\r\n"
    "Via: SIP/2.0/TCP client.biloxi.example.com:5060;branch=z9hG4bKnashds7\r\n"
    "Max-Forwards: 70\r\n"
    "From: Bob <sip:bob@biloxi.example.com>;tag=8321234356\r\n"
    "To: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\n"
    "Call-ID: 3848276298220188511@atlanta.example.com\r\n"
    "CSeq: 1 BYE\r\n"
    "Content-Length: 0\r\n"
    "\r\n";

const std::string ok_bye =
    "SIP/2.0 200 OK\r\n"
    "Via: SIP/2.0/TCP client.biloxi.example.com:5060;branch=z9hG4bKnashds7"
    ";received=192.0.2.201\r\n"
    "From: Bob <sip:bob@biloxi.example.com>;tag=8321234356\r\n"
    "To: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\n"
    "Call-ID: 3848276298220188511@atlanta.example.com\r\n"
    "CSeq: 1 BYE\r\n"
    "Content-Length: 0\r\n"
    "\r\n";

}  // namespace flows

TEST_CASE("RFC 3665 style: successful session establishment and teardown", "[sip][flow]") {
    SipMessage m;
    REQUIRE(parse(flows::invite, m) == "ok");
    CHECK(m.method == SipMethod::Invite);
    CHECK(m.from.display_name == "Alice");
    CHECK(m.from.tag == "9fxced76sl");
    CHECK(m.to.tag.empty());
    CHECK(m.via_branch == "z9hG4bK74bf9");
    CHECK(m.has_sdp_body());
    CHECK(m.body == flows::kAliceSdp);
    CHECK(m.contact[0].uri == "sip:alice@client.atlanta.example.com;transport=tcp");
    CHECK(looks_like_sip(flows::invite));

    REQUIRE(parse(flows::trying, m) == "ok");
    CHECK(m.status_code == 100);
    CHECK(m.reason_phrase == "Trying");
    CHECK(m.method == SipMethod::Invite);
    CHECK(m.via_branch == "z9hG4bK74bf9");
    CHECK(looks_like_sip(flows::trying));

    REQUIRE(parse(flows::ringing, m) == "ok");
    CHECK(m.status_code == 180);
    CHECK(m.to.tag == "8321234356");
    CHECK_FALSE(m.has_sdp_body());

    REQUIRE(parse(flows::ok_invite, m) == "ok");
    CHECK(m.status_code == 200);
    CHECK(m.body == flows::kBobSdp);
    CHECK(m.has_sdp_body());
    CHECK(m.call_id == "3848276298220188511@atlanta.example.com");

    REQUIRE(parse(flows::ack, m) == "ok");
    CHECK(m.method == SipMethod::Ack);
    CHECK(m.cseq_method == SipMethod::Ack);

    REQUIRE(parse(flows::bye, m) == "ok");
    CHECK(m.method == SipMethod::Bye);
    CHECK(m.from.tag == "8321234356");

    REQUIRE(parse(flows::ok_bye, m) == "ok");
    CHECK(m.method == SipMethod::Bye);
    CHECK(m.status_code == 200);
}

TEST_CASE("RFC 3665 style: REGISTER with a 401 challenge", "[sip][flow]") {
    const std::string reg1 =
        "REGISTER sips:ss2.biloxi.example.com SIP/2.0\r\n"
        "Via: SIP/2.0/TLS client.biloxi.example.com:5061;branch=z9hG4bKnashds7\r\n"
        "Max-Forwards: 70\r\n"
        "From: Bob <sips:bob@biloxi.example.com>;tag=a73kszlfl\r\n"
        "To: Bob <sips:bob@biloxi.example.com>\r\n"
        "Call-ID: 1j9FpLxk3uxtm8tn@biloxi.example.com\r\n"
        "CSeq: 1 REGISTER\r\n"
        "Contact: <sips:bob@client.biloxi.example.com>\r\n"
        "Content-Length: 0\r\n"
        "\r\n";
    const std::string challenge =
        "SIP/2.0 401 Unauthorized\r\n"
        "Via: SIP/2.0/TLS client.biloxi.example.com:5061;branch=z9hG4bKnashds7\r\n"
        " ;received=192.0.2.201\r\n"
        "From: Bob <sips:bob@biloxi.example.com>;tag=a73kszlfl\r\n"
        "To: Bob <sips:bob@biloxi.example.com>;tag=1410948204\r\n"
        "Call-ID: 1j9FpLxk3uxtm8tn@biloxi.example.com\r\n"
        "CSeq: 1 REGISTER\r\n"
        "WWW-Authenticate: Digest realm=\"atlanta.example.com\", qop=\"auth\",\r\n"
        " nonce=\"ea9c8e88df84f1cec4341ae6cbe5a359\",\r\n"
        " opaque=\"\", stale=FALSE, algorithm=MD5\r\n"
        "Content-Length: 0\r\n"
        "\r\n";
    const std::string reg2 =
        "REGISTER sips:ss2.biloxi.example.com SIP/2.0\r\n"
        "Via: SIP/2.0/TLS client.biloxi.example.com:5061;branch=z9hG4bKnashd92\r\n"
        "Max-Forwards: 70\r\n"
        "From: Bob <sips:bob@biloxi.example.com>;tag=ja743ks76zlflH\r\n"
        "To: Bob <sips:bob@biloxi.example.com>\r\n"
        "Call-ID: 1j9FpLxk3uxtm8tn@biloxi.example.com\r\n"
        "CSeq: 2 REGISTER\r\n"
        "Contact: <sips:bob@client.biloxi.example.com>\r\n"
        "Authorization: Digest username=\"bob\", realm=\"atlanta.example.com\",\r\n"
        " nonce=\"ea9c8e88df84f1cec4341ae6cbe5a359\", opaque=\"\",\r\n"
        " uri=\"sips:ss2.biloxi.example.com\",\r\n"
        " response=\"dfe56131d1958046689d83306477ecc\"\r\n"
        "Content-Length: 0\r\n"
        "\r\n";
    const std::string ok =
        "SIP/2.0 200 OK\r\n"
        "Via: SIP/2.0/TLS client.biloxi.example.com:5061;branch=z9hG4bKnashd92\r\n"
        " ;received=192.0.2.201\r\n"
        "From: Bob <sips:bob@biloxi.example.com>;tag=ja743ks76zlflH\r\n"
        "To: Bob <sips:bob@biloxi.example.com>;tag=37GkEhwl6\r\n"
        "Call-ID: 1j9FpLxk3uxtm8tn@biloxi.example.com\r\n"
        "CSeq: 2 REGISTER\r\n"
        "Contact: <sips:bob@client.biloxi.example.com>;expires=3600\r\n"
        "Content-Length: 0\r\n"
        "\r\n";
    SipMessage m;
    REQUIRE(parse(reg1, m) == "ok");
    CHECK(m.method == SipMethod::Register);
    CHECK(m.request_uri == "sips:ss2.biloxi.example.com");
    CHECK(m.to.uri == "sips:bob@biloxi.example.com");
    REQUIRE(parse(challenge, m) == "ok");
    CHECK(m.status_code == 401);
    CHECK(m.method == SipMethod::Register);
    CHECK(m.via_branch == "z9hG4bKnashds7");
    CHECK(m.top_via ==
          "SIP/2.0/TLS client.biloxi.example.com:5061;branch=z9hG4bKnashds7\r\n"
          " ;received=192.0.2.201");
    REQUIRE(parse(reg2, m) == "ok");
    CHECK(m.cseq == 2);
    REQUIRE(parse(ok, m) == "ok");
    REQUIRE(m.contact.size() == 1);
    CHECK(m.contact[0].params == ";expires=3600");
}

TEST_CASE("RFC 3665 style: CANCEL before answer", "[sip][flow]") {
    const std::string cancel =
        "CANCEL sip:bob@biloxi.example.com SIP/2.0\r\n"
        "Via: SIP/2.0/TCP client.atlanta.example.com:5060;branch=z9hG4bK74bf9\r\n"
        "Max-Forwards: 70\r\n"
        "From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\n"
        "To: Bob <sip:bob@biloxi.example.com>\r\n"
        "Call-ID: 2xTb9vxSit55XU7p8@atlanta.example.com\r\n"
        "CSeq: 1 CANCEL\r\n"
        "Content-Length: 0\r\n"
        "\r\n";
    const std::string terminated =
        "SIP/2.0 487 Request Terminated\r\n"
        "Via: SIP/2.0/TCP client.atlanta.example.com:5060;branch=z9hG4bK74bf9\r\n"
        " ;received=192.0.2.101\r\n"
        "From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\n"
        "To: Bob <sip:bob@biloxi.example.com>;tag=314159\r\n"
        "Call-ID: 2xTb9vxSit55XU7p8@atlanta.example.com\r\n"
        "CSeq: 1 INVITE\r\n"
        "Content-Length: 0\r\n"
        "\r\n";
    const std::string ack =
        "ACK sip:bob@biloxi.example.com SIP/2.0\r\n"
        "Via: SIP/2.0/TCP client.atlanta.example.com:5060;branch=z9hG4bK74bf9\r\n"
        "Max-Forwards: 70\r\n"
        "From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\n"
        "To: Bob <sip:bob@biloxi.example.com>;tag=314159\r\n"
        "Call-ID: 2xTb9vxSit55XU7p8@atlanta.example.com\r\n"
        "CSeq: 1 ACK\r\n"
        "Content-Length: 0\r\n"
        "\r\n";
    SipMessage m;
    REQUIRE(parse(cancel, m) == "ok");
    CHECK(m.method == SipMethod::Cancel);
    CHECK(m.via_branch == "z9hG4bK74bf9");  // same branch as the INVITE it cancels
    REQUIRE(parse(terminated, m) == "ok");
    CHECK(m.status_code == 487);
    CHECK(m.method == SipMethod::Invite);
    REQUIRE(parse(ack, m) == "ok");
    CHECK(m.method == SipMethod::Ack);
    // A CANCEL whose CSeq says INVITE is a mismatch (its CSeq method is CANCEL).
    std::string wrong = cancel;
    wrong.replace(wrong.find("1 CANCEL"), 8, "1 INVITE");
    CHECK(parse(wrong, m) == "cseq_method_mismatch");
}

TEST_CASE("RFC 3666 style: PSTN gateway with identity and diversion headers", "[sip][flow]") {
    const std::string invite = with_body(
        "INVITE sip:+13125551212@ss1.chicago.example.com;user=phone SIP/2.0\r\n"
        "Via: SIP/2.0/UDP gw1.atlanta.example.com:5060;branch=z9hG4bK2d4790\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:+19725551111@gw1.atlanta.example.com;user=phone>;tag=4d41\r\n"
        "To: <sip:+13125551212@ss1.chicago.example.com;user=phone>\r\n"
        "Call-ID: 12345601@gw1.atlanta.example.com\r\n"
        "CSeq: 1 INVITE\r\n"
        "P-Asserted-Identity: \"Alice, Sales\" "
        "<sip:+19725551111@atlanta.example.com;user=phone>,\r\n"
        " <tel:+19725551111>\r\n"
        "P-Preferred-Identity: <sip:alice@atlanta.example.com>\r\n"
        "Remote-Party-ID: \"Alice\" <sip:+19725551111@gw1.atlanta.example.com>;party=calling;"
        "screen=yes;privacy=off\r\n"
        "Diversion: <sip:+13125550000@ss1.chicago.example.com;user=phone>;reason=unconditional"
        ";counter=1,\r\n"
        "  \"Bob, Office\" <tel:+13125559999>;reason=\"user-busy\";counter=1\r\n"
        "History-Info: <sip:bob@biloxi.example.com>;index=1,"
        "<sip:bob@192.0.2.4?Reason=SIP%3Bcause%3D302>;index=1.1\r\n"
        "history-info: <sip:office@biloxi.example.com>;index=1.2\r\n"
        "Privacy: id\r\n"
        "Contact: <sip:gw1.atlanta.example.com>\r\n"
        "Content-Type: application/SDP\r\n",
        flows::kAliceSdp);
    SipMessage m;
    REQUIRE(parse(invite, m) == "ok");
    CHECK(m.request_uri == "sip:+13125551212@ss1.chicago.example.com;user=phone");
    REQUIRE(m.p_asserted_identity.size() == 2);
    CHECK(m.p_asserted_identity[0].display_name == "Alice, Sales");
    CHECK(m.p_asserted_identity[0].uri == "sip:+19725551111@atlanta.example.com;user=phone");
    CHECK(m.p_asserted_identity[1].uri == "tel:+19725551111");
    REQUIRE(m.p_preferred_identity.size() == 1);
    CHECK(m.p_preferred_identity[0].uri == "sip:alice@atlanta.example.com");
    REQUIRE(m.remote_party_id.size() == 1);
    CHECK(m.remote_party_id[0].params == ";party=calling;screen=yes;privacy=off");
    REQUIRE(m.diversion.size() == 2);
    CHECK(m.diversion[0].uri == "sip:+13125550000@ss1.chicago.example.com;user=phone");
    CHECK(m.diversion[0].params == ";reason=unconditional;counter=1");
    CHECK(m.diversion[1].display_name == "Bob, Office");
    CHECK(m.diversion[1].uri == "tel:+13125559999");
    // History-Info values add up across fields; '?' and ';' inside <> stay in the URI.
    REQUIRE(m.history_info.size() == 3);
    CHECK(m.history_info[1].uri == "sip:bob@192.0.2.4?Reason=SIP%3Bcause%3D302");
    CHECK(m.history_info[1].params == ";index=1.1");
    CHECK(m.history_info[2].uri == "sip:office@biloxi.example.com");
    CHECK(m.content_type == "application/SDP");
    CHECK(m.has_sdp_body());  // media type compared case-insensitively
    CHECK_FALSE(m.p_asserted_identity.overflowed());
}

// =============================================================================================
// Syntax details
// =============================================================================================

namespace {

const std::string kMinimal =
    "OPTIONS sip:bob@example.com SIP/2.0\r\n"
    "Via: SIP/2.0/UDP host.example.com;branch=z9hG4bK1\r\n"
    "From: <sip:alice@example.com>;tag=1\r\n"
    "To: <sip:bob@example.com>\r\n"
    "Call-ID: c1@example.com\r\n"
    "CSeq: 1 OPTIONS\r\n"
    "Content-Length: 0\r\n"
    "\r\n";

// kMinimal with `line` (CRLF-terminated) inserted before Content-Length.
std::string with_header(std::string_view line) {
    std::string m = kMinimal;
    m.insert(m.find("Content-Length:"), line);
    return m;
}

std::string replace(std::string s, std::string_view from, std::string_view to) {
    const std::size_t at = s.find(from);
    REQUIRE(at != std::string::npos);
    s.replace(at, from.size(), to);
    return s;
}

}  // namespace

TEST_CASE("Compact header forms and case-insensitive names", "[sip]") {
    const std::string msg =
        "INVITE sip:bob@example.com SIP/2.0\r\n"
        "v: SIP/2.0/UDP a.example.com;branch=z9hG4bKa\r\n"
        "f: \"A\" <sip:a@example.com>;tag=fa\r\n"
        "t: <sip:bob@example.com>\r\n"
        "i: compact@example.com\r\n"
        "CSEQ: 7 INVITE\r\n"
        "m: <sip:a@192.0.2.1>\r\n"
        "k: timer\r\n"
        "s: hello\r\n"
        "e: gzip\r\n"
        "o: dialog\r\n"
        "r: <sip:c@example.com>\r\n"
        "u: dialog\r\n"
        "x: 1800\r\n"
        "c: application/sdp\r\n"
        "l: 5\r\n"
        "\r\n"
        "v=0\r\n";
    SipMessage m;
    REQUIRE(parse(msg, m) == "ok");
    CHECK(m.via_branch == "z9hG4bKa");
    CHECK(m.from.tag == "fa");
    CHECK(m.to.uri == "sip:bob@example.com");
    CHECK(m.call_id == "compact@example.com");
    CHECK(m.cseq == 7);
    REQUIRE(m.contact.size() == 1);
    CHECK(m.content_type == "application/sdp");
    CHECK(m.content_length == 5);
    CHECK(m.body == "v=0\r\n");
    CHECK(m.header_count == 15);

    const std::string shouting =
        "OPTIONS sip:bob@example.com SIP/2.0\r\n"
        "VIA: SIP/2.0/UDP host.example.com;BRANCH=z9hG4bK1\r\n"
        "FROM: <sip:alice@example.com>;TAG=1\r\n"
        "tO: <sip:bob@example.com>\r\n"
        "CALL-id: c1@example.com\r\n"
        "cSeQ: 1 OPTIONS\r\n"
        "p-asserted-IDENTITY: <sip:alice@example.com>\r\n"
        "CONTENT-LENGTH: 0\r\n"
        "\r\n";
    REQUIRE(parse(shouting, m) == "ok");
    CHECK(m.via_branch == "z9hG4bK1");  // parameter names are case-insensitive too
    CHECK(m.from.tag == "1");
    CHECK(m.call_id == "c1@example.com");
    CHECK(m.p_asserted_identity.size() == 1);
}

TEST_CASE("Folded header values (RFC 3261 7.3.1)", "[sip]") {
    const std::string msg =
        "INVITE sip:bob@example.com SIP/2.0\r\n"
        "Via: SIP/2.0/UDP a.example.com\r\n"
        "\t;branch=z9hG4bKfold\r\n"
        "From:\r\n"
        " \"Alice\"\r\n"
        "\t<sip:alice@example.com>\r\n"
        "  ;tag=ft\r\n"
        "To: <sip:bob@example.com>\r\n"
        "Call-ID:\r\n"
        "   folded@example.com\r\n"
        "CSeq:\r\n"
        " 42\r\n"
        "\tINVITE\r\n"
        "Contact: <sip:a@192.0.2.1>,\r\n"
        " <sip:a@192.0.2.2>\r\n"
        "Content-Length:\r\n"
        " 0\r\n"
        "\r\n";
    SipMessage m;
    REQUIRE(parse(msg, m) == "ok");
    CHECK(m.via_branch == "z9hG4bKfold");
    CHECK(m.from.display_name == "Alice");
    CHECK(m.from.uri == "sip:alice@example.com");
    CHECK(m.from.tag == "ft");
    CHECK(m.call_id == "folded@example.com");
    CHECK(m.cseq == 42);
    CHECK(m.cseq_method_token == "INVITE");
    CHECK(m.contact.size() == 2);
    CHECK(m.content_length == 0);
    CHECK(m.header_count == 7);
    // The same message framed on a stream: folding does not hide Content-Length.
    const SipFrame f = frame_sip_stream(msg);
    CHECK(f.status == SipFrameStatus::Complete);
    CHECK(f.length == msg.size());
}

TEST_CASE("Bare LF line endings", "[sip]") {
    const std::string msg =
        "INVITE sip:bob@example.com SIP/2.0\n"
        "Via: SIP/2.0/UDP a.example.com;branch=z9hG4bKlf\n"
        "From: <sip:alice@example.com>;tag=1\n"
        "To: <sip:bob@example.com>\n"
        "Call-ID: lf@example.com\n"
        "CSeq: 1 INVITE\n"
        "Content-Type: application/sdp\n"
        "Content-Length: 4\n"
        "\n"
        "v=0\n";
    SipMessage m;
    REQUIRE(parse(msg, m) == "ok");
    CHECK(m.call_id == "lf@example.com");
    CHECK(m.body == "v=0\n");
    CHECK(m.length == msg.size());
    const SipFrame f = frame_sip_stream(msg + msg);
    CHECK(f.status == SipFrameStatus::Complete);
    CHECK(f.length == msg.size());
    // Mixed: CRLF start line, LF headers
    REQUIRE(parse(replace(msg, "SIP/2.0\n", "SIP/2.0\r\n"), m) == "ok");
}

TEST_CASE("Multi-value identity headers: commas inside quotes and <> do not split", "[sip]") {
    SipMessage m;
    REQUIRE(parse(with_header("Contact: \"Smith, John\" <sip:john@example.com>;q=0.5, "
                              "<sip:a,b@example.com>, sip:c@example.com;expires=60,"
                              "\"quote \\\", comma\" <sip:d@example.com>\r\n"),
                  m) == "ok");
    REQUIRE(m.contact.size() == 4);
    CHECK(m.contact[0].display_name == "Smith, John");
    CHECK(m.contact[0].params == ";q=0.5");
    CHECK(m.contact[1].uri == "sip:a,b@example.com");
    CHECK(m.contact[2].uri == "sip:c@example.com");
    CHECK(m.contact[2].params == ";expires=60");
    CHECK(m.contact[3].display_name == "quote \\\", comma");
    CHECK(m.contact[3].uri == "sip:d@example.com");

    // A quoted parameter may hold <, >, ',' and ';' (sip.instance, RFC 5626).
    REQUIRE(parse(with_header("Contact: <sip:e@192.0.2.9>;+sip.instance=\"<urn:uuid:1,2;3>\""
                              ";reg-id=1, <sip:f@192.0.2.9>\r\n"),
                  m) == "ok");
    REQUIRE(m.contact.size() == 2);
    CHECK(m.contact[0].params == ";+sip.instance=\"<urn:uuid:1,2;3>\";reg-id=1");
    CHECK(m.contact[1].uri == "sip:f@192.0.2.9");

    REQUIRE(parse(with_header("Diversion: \"A, B\" <tel:+1555>;reason=no-answer,"
                              "<sip:x@example.com>;reason=deflection\r\n"),
                  m) == "ok");
    REQUIRE(m.diversion.size() == 2);
    CHECK(m.diversion[0].display_name == "A, B");
    CHECK(m.diversion[1].params == ";reason=deflection");
}

TEST_CASE("BoundedList overflow: more than 8 values are counted, not kept", "[sip]") {
    std::string contacts = "Contact: ";
    for (int i = 0; i < 11; ++i) {
        if (i) contacts += ", ";
        contacts += "<sip:u" + std::to_string(i) + "@192.0.2.1>";
    }
    contacts += "\r\n";
    SipMessage m;
    REQUIRE(parse(with_header(contacts), m) == "ok");
    CHECK(m.contact.size() == SipMessage::kMaxIdentities);
    CHECK(m.contact.seen() == 11);
    CHECK(m.contact.overflowed());
    CHECK(m.contact[7].uri == "sip:u7@192.0.2.1");
    // The next parse into the same struct starts empty.
    REQUIRE(parse(kMinimal, m) == "ok");
    CHECK(m.contact.empty());
    CHECK_FALSE(m.contact.overflowed());
}

TEST_CASE("Contact: * is for REGISTER only, and alone", "[sip]") {
    const std::string reg =
        "REGISTER sip:example.com SIP/2.0\r\n"
        "Via: SIP/2.0/UDP host.example.com;branch=z9hG4bKstar\r\n"
        "From: <sip:bob@example.com>;tag=1\r\n"
        "To: <sip:bob@example.com>\r\n"
        "Call-ID: star@example.com\r\n"
        "CSeq: 9 REGISTER\r\n"
        "Contact: *\r\n"
        "Expires: 0\r\n"
        "Content-Length: 0\r\n"
        "\r\n";
    SipMessage m;
    REQUIRE(parse(reg, m) == "ok");
    REQUIRE(m.contact.size() == 1);
    CHECK(m.contact[0].uri == "*");
    CHECK(parse(replace(reg, "Contact: *", "Contact: *, <sip:b@192.0.2.1>"), m) == "bad_name_addr");
    CHECK(parse(with_header("Contact: *\r\n"), m) == "bad_name_addr");  // OPTIONS
}

TEST_CASE("Start line validation", "[sip]") {
    SipMessage m;
    const std::string tail = kMinimal.substr(kMinimal.find("\r\n") + 2);
    auto with_start = [&](std::string_view start) { return std::string(start) + "\r\n" + tail; };

    CHECK(parse("", m) == "empty");
    CHECK(parse("\r\n\r\n", m) == "empty");  // a keep-alive, not a message
    CHECK(parse("\r\n" + kMinimal, m) == "leading_whitespace");
    CHECK(parse(" " + kMinimal, m) == "leading_whitespace");
    CHECK(parse("\t" + kMinimal, m) == "leading_whitespace");

    CHECK(parse(with_start("OPTIONS sip:bob@example.com SIP/2.0"), m) == "ok");
    CHECK(parse(with_start("OPTIONS sip:bob@example.com sip/2.0"), m) == "ok");  // 7.1
    CHECK(parse(with_start("OPTIONS sip:bob@example.com SIP/3.0"), m) == "bad_version");
    CHECK(parse(with_start("OPTIONS sip:bob@example.com SIP/2.00"), m) == "bad_version");
    CHECK(parse(with_start("OPTIONS sip:bob@example.com HTTP/1.1"), m) == "bad_start_line");
    CHECK(parse(with_start("OPTIONS sip:bob@example.com SIP/2"), m) == "bad_start_line");
    CHECK(parse(with_start("OPTIONS sip:bob@example.com"), m) == "bad_start_line");
    CHECK(parse(with_start("OPTIONS"), m) == "bad_start_line");
    CHECK(parse(with_start("OPTIONS SIP/2.0"), m) == "bad_start_line");
    CHECK(parse(with_start("OPTIONS  SIP/2.0"), m) == "bad_start_line");
    CHECK(parse(with_start("OPTIONS sip:bob@example.com\tSIP/2.0"), m) == "bad_start_line");
    CHECK(parse(with_start("OPT<IONS sip:bob@example.com SIP/2.0"), m) == "bad_method");
    CHECK(parse(with_start("OPTIONS bob@example.com SIP/2.0"), m) == "bad_request_uri");
    CHECK(parse(with_start("OPTIONS :bob SIP/2.0"), m) == "bad_request_uri");
    CHECK(parse(with_start("OPTIONS sip:bob@exa\tmple.com SIP/2.0"), m) == "bad_request_uri");
    CHECK(parse(with_start("OPTIONS tel:+1-555-1234 SIP/2.0"), m) == "ok");
    CHECK(parse(with_start("OPTIONS sips:bob@example.com;transport=tcp SIP/2.0"), m) == "ok");

    auto status = [&](std::string_view start) {
        return parse(std::string(start) + "\r\n" + tail, m);
    };
    CHECK(status("SIP/2.0 200 OK") == "ok");
    CHECK(m.status_code == 200);
    CHECK(m.method == SipMethod::Options);
    CHECK(status("SIP/2.0 699 Whatever") == "ok");
    CHECK(status("SIP/2.0 100") == "ok");  // missing SP before an empty reason: tolerated
    CHECK(m.reason_phrase.empty());
    CHECK(status("SIP/2.0 099 Too Low") == "bad_status_code");
    CHECK(status("SIP/2.0 700 Too High") == "bad_status_code");
    CHECK(status("SIP/2.0 20 Short") == "bad_status_code");
    CHECK(status("SIP/2.0 2000 Long") == "bad_status_code");
    CHECK(status("SIP/2.0 2x0 Hex") == "bad_status_code");
    CHECK(status("SIP/2.0 OK") == "bad_status_code");
    CHECK(status("SIP/2.0  200 OK") == "bad_start_line");
    CHECK(status("SIP/2.0") == "bad_start_line");
    CHECK(status("SIP/2.1 200 OK") == "bad_version");
    CHECK(status("SIP/x 200 OK") == "bad_start_line");
}

TEST_CASE("Header line validation", "[sip]") {
    SipMessage m;
    CHECK(parse(with_header("NoColonHere\r\n"), m) == "bad_header_line");
    CHECK(parse(with_header(": no name\r\n"), m) == "bad_header_line");
    CHECK(parse(with_header("Bad Name: x\r\n"), m) == "bad_header_line");
    CHECK(parse(with_header("Bad@Name: x\r\n"), m) == "bad_header_line");
    CHECK(parse(with_header("X-Empty:\r\n"), m) == "ok");
    CHECK(parse(with_header("X-Spaces   :   value   \r\n"), m) == "ok");
    // A continuation line with nothing to continue
    CHECK(parse(replace(kMinimal, "SIP/2.0\r\nVia", "SIP/2.0\r\n Via"), m) == "bad_header_line");
    // Bare CR as a line
    CHECK(parse(replace(kMinimal, "\r\n\r\n", "\r\n\rX\r\n\r\n"), m) == "bad_header_line");
    // No empty line at the end of the header section
    CHECK(parse(kMinimal.substr(0, kMinimal.size() - 2), m) == "headers_unterminated");
    CHECK(parse("OPTIONS sip:bob@example.com SIP/2.0", m) == "headers_unterminated");
    // Empty Via values and parameters (RFC 4475 3.1.2.1)
    CHECK(parse(replace(kMinimal, "branch=z9hG4bK1", "branch=z9hG4bK1,"), m) == "bad_header_line");
    CHECK(parse(replace(kMinimal, "branch=z9hG4bK1", "branch=z9hG4bK1;"), m) == "bad_header_line");
    CHECK(parse(replace(kMinimal, "host.example.com;", "host.example.com;;"), m) ==
          "bad_header_line");
    CHECK(parse(replace(kMinimal, "Via: SIP/2.0/UDP", "Via: ,SIP/2.0/UDP"), m) ==
          "bad_header_line");
    CHECK(parse(replace(kMinimal, "Via: SIP/2.0/UDP host.example.com;branch=z9hG4bK1", "Via:"),
                m) == "bad_header_line");
    // A quoted Via parameter may hold ',' and ';'
    REQUIRE(parse(replace(kMinimal, "branch=z9hG4bK1", "branch=z9hG4bK1;x=\"a,b;c\""), m) == "ok");
    CHECK(m.via_count == 1);
}

TEST_CASE("Mandatory header fields and duplicates", "[sip]") {
    SipMessage m;
    CHECK(parse(replace(kMinimal, "Call-ID: c1@example.com\r\n", ""), m) == "missing_call_id");
    CHECK(parse(replace(kMinimal, "Call-ID: c1@example.com", "Call-ID:"), m) == "missing_call_id");
    CHECK(parse(replace(kMinimal, "CSeq: 1 OPTIONS\r\n", ""), m) == "missing_cseq");
    CHECK(parse(replace(kMinimal, "From: <sip:alice@example.com>;tag=1\r\n", ""), m) ==
          "missing_from");
    CHECK(parse(replace(kMinimal, "To: <sip:bob@example.com>\r\n", ""), m) == "missing_to");
    CHECK(parse(replace(kMinimal, "Via: SIP/2.0/UDP host.example.com;branch=z9hG4bK1\r\n", ""),
                m) == "missing_via");

    // The same value twice is harmless; different values conflict.
    CHECK(parse(with_header("Call-ID: c1@example.com\r\n"), m) == "ok");
    CHECK(parse(with_header("i: c2@example.com\r\n"), m) == "duplicate_singleton_header");
    CHECK(parse(with_header("CSeq: 1 OPTIONS\r\n"), m) == "ok");
    CHECK(parse(with_header("CSeq: 2 OPTIONS\r\n"), m) == "duplicate_singleton_header");
    CHECK(parse(with_header("From: <sip:alice@example.com>;tag=1\r\n"), m) == "ok");
    CHECK(parse(with_header("f: <sip:alice@example.com>;tag=2\r\n"), m) ==
          "duplicate_singleton_header");
    CHECK(parse(with_header("To: <sip:carol@example.com>\r\n"), m) == "duplicate_singleton_header");
    CHECK(parse(with_header("Content-Length: 0\r\n"), m) == "ok");
    CHECK(parse(with_header("l: 1\r\n"), m) == "duplicate_singleton_header");
    CHECK(parse(with_header("Content-Type: text/plain\r\nc: text/plain\r\n"), m) == "ok");
    CHECK(parse(with_header("Content-Type: text/plain\r\nc: application/sdp\r\n"), m) ==
          "duplicate_singleton_header");
}

TEST_CASE("CSeq validation (RFC 3261 8.1.1.5, 20.16)", "[sip]") {
    SipMessage m;
    auto cseq = [&](std::string_view v) {
        return parse(replace(kMinimal, "CSeq: 1 OPTIONS", "CSeq: " + std::string(v)), m);
    };
    CHECK(cseq("2147483647 OPTIONS") == "ok");
    CHECK(m.cseq == 2147483647u);
    CHECK(cseq("0 OPTIONS") == "ok");
    CHECK(cseq("000000000000000000001 OPTIONS") == "ok");  // leading zeros do not overflow
    CHECK(m.cseq == 1);
    CHECK(cseq("2147483648 OPTIONS") == "bad_cseq");
    CHECK(cseq("99999999999999999999999 OPTIONS") == "bad_cseq");
    CHECK(cseq("-1 OPTIONS") == "bad_cseq");
    CHECK(cseq("one OPTIONS") == "bad_cseq");
    CHECK(cseq("1") == "bad_cseq");
    CHECK(cseq("1OPTIONS") == "bad_cseq");
    CHECK(cseq("1 OPTIONS extra") == "bad_cseq");
    CHECK(cseq("OPTIONS") == "bad_cseq");
    CHECK(cseq("") == "bad_cseq");
    CHECK(cseq("1 options") == "cseq_method_mismatch");  // methods are case-sensitive
    CHECK(cseq("1 INVITE") == "cseq_method_mismatch");
}

TEST_CASE("Content-Length and body (RFC 3261 18.3, 20.14)", "[sip]") {
    SipMessage m;
    const std::string head =
        "MESSAGE sip:bob@example.com SIP/2.0\r\n"
        "Via: SIP/2.0/UDP host.example.com;branch=z9hG4bKm\r\n"
        "From: <sip:alice@example.com>;tag=1\r\n"
        "To: <sip:bob@example.com>\r\n"
        "Call-ID: cl@example.com\r\n"
        "CSeq: 1 MESSAGE\r\n"
        "Content-Type: text/plain\r\n";
    auto msg = [&](std::string_view cl, std::string_view body) {
        return head + "Content-Length: " + std::string(cl) + "\r\n\r\n" + std::string(body);
    };
    REQUIRE(parse(msg("5", "hello"), m) == "ok");
    CHECK(m.body == "hello");
    REQUIRE(parse(msg("3", "hello"), m) == "ok");  // extra octets ignored
    CHECK(m.body == "hel");
    CHECK(m.length == msg("3", "hello").size() - 2);
    CHECK(parse(msg("6", "hello"), m) == "body_truncated");
    CHECK(parse(msg("-1", "hello"), m) == "bad_content_length");
    CHECK(parse(msg("+5", "hello"), m) == "bad_content_length");
    CHECK(parse(msg("5x", "hello"), m) == "bad_content_length");
    CHECK(parse(msg("0x5", "hello"), m) == "bad_content_length");
    CHECK(parse(msg("", "hello"), m) == "bad_content_length");
    CHECK(parse(msg("5 5", "hello"), m) == "bad_content_length");
    CHECK(parse(msg("99999999999999999999", "hello"), m) == "bad_content_length");
    CHECK(parse(msg("4294967295", "hello"), m) == "body_truncated");
    CHECK(parse(msg("4294967296", "hello"), m) == "bad_content_length");
    // Without Content-Length the body is the rest of the datagram.
    REQUIRE(parse(head + "\r\nhello", m) == "ok");
    CHECK(m.content_length == -1);
    CHECK(m.body == "hello");
    // has_sdp_body needs both the type and a body.
    REQUIRE(parse(replace(msg("0", ""), "text/plain", "application/sdp"), m) == "ok");
    CHECK_FALSE(m.has_sdp_body());
    REQUIRE(parse(replace(msg("5", "v=0\r\n"), "text/plain", "Application/Sdp ; charset=utf-8"),
                  m) == "ok");
    CHECK(m.content_type == "Application/Sdp");
    CHECK(m.has_sdp_body());
}

TEST_CASE("name-addr validation", "[sip]") {
    SipMessage m;
    auto to = [&](std::string_view v) {
        return parse(replace(kMinimal, "To: <sip:bob@example.com>", "To: " + std::string(v)), m);
    };
    CHECK(to("<sip:bob@example.com") == "bad_name_addr");
    CHECK(to("sip:bob@example.com>") == "bad_name_addr");
    CHECK(to("\"Bob <sip:bob@example.com>") == "bad_name_addr");
    CHECK(to("\"Bob\\\" <sip:bob@example.com>") == "bad_name_addr");  // escaped closing quote
    CHECK(to("\"Bob\" sip:bob@example.com") == "bad_name_addr");
    CHECK(to("<<sip:bob@example.com>>") == "bad_name_addr");
    CHECK(to("<>") == "bad_name_addr");
    CHECK(to("<bob@example.com>") == "bad_name_addr");  // no scheme
    CHECK(to("<sip:bob @example.com>") == "bad_name_addr");
    CHECK(to("<sip:bob@example.com> junk") == "bad_name_addr");
    CHECK(to("<sip:bob@example.com>;") == "bad_name_addr");
    CHECK(to("<sip:bob@example.com>;;tag=1") == "bad_name_addr");
    CHECK(to("<sip:bob@example.com>;=1") == "bad_name_addr");
    CHECK(to("<sip:bob@example.com>;x=\"open") == "bad_name_addr");
    CHECK(to("Bob \"Smith\" <sip:bob@example.com>") == "bad_name_addr");
    CHECK(to("") == "bad_to");
    CHECK(to("<sip:bob@example.com>, <sip:carol@example.com>") == "bad_to");
    CHECK(to("sip:bob@example.com;tag=1, sip:carol@example.com") == "bad_to");
    CHECK(to("sip:bob,carol@example.com") == "bad_to");  // needs <> (RFC 3261 section 20)
    CHECK(parse(replace(kMinimal, "From: <sip:alice@example.com>;tag=1", "From:"), m) ==
          "bad_from");
    CHECK(parse(with_header("P-Asserted-Identity: <sip:a@example.com>,\r\n"), m) ==
          "bad_name_addr");
    CHECK(parse(with_header("History-Info: <sip:a@example.com;index=1\r\n"), m) == "bad_name_addr");
    CHECK(parse(with_header("Diversion: \"unterminated <sip:a@example.com>\r\n"), m) ==
          "bad_name_addr");

    REQUIRE(to("Bob Smith<sip:bob@example.com>;tag=x;other") == "ok");
    CHECK(m.to.display_name == "Bob Smith");
    CHECK(m.to.tag == "x");
    CHECK(m.to.params == ";tag=x;other");
    REQUIRE(to("\"\" <sip:bob@example.com>") == "ok");
    CHECK(m.to.display_name.empty());
    REQUIRE(to("<sip:bob@example.com>;Tag = \"q\"") == "ok");
    CHECK(m.to.tag == "\"q\"");
    REQUIRE(to("<urn:service:sos>") == "ok");
    CHECK(m.to.uri == "urn:service:sos");
    REQUIRE(to("<sip:[2001:db8::1]:5060;transport=tcp>") == "ok");
    CHECK(m.to.uri == "sip:[2001:db8::1]:5060;transport=tcp");
}

TEST_CASE("Limits: message size and header count", "[sip]") {
    SipMessage m;
    SECTION("a 60 KB header value is fine under the 64 KB limit") {
        const std::string big = with_header("X-Big: " + std::string(60000, 'a') + "\r\n");
        REQUIRE(big.size() < 65535);
        REQUIRE(parse(big, m) == "ok");
        CHECK(m.header_count == 7);
        const std::string pai = with_header("P-Asserted-Identity: \"" + std::string(60000, 'n') +
                                            "\" <sip:a@example.com>\r\n");
        REQUIRE(parse(pai, m) == "ok");
        CHECK(m.p_asserted_identity[0].display_name.size() == 60000);
    }
    SECTION("a message over the limit is TooLarge before any parsing") {
        const std::string huge = with_header("X-Big: " + std::string(70000, 'a') + "\r\n");
        CHECK(parse(huge, m) == "too_large");
        SipLimits small;
        small.max_message_bytes = 100;
        CHECK(parse(kMinimal, m, small) == "too_large");
        small.max_message_bytes = kMinimal.size();
        CHECK(parse(kMinimal, m, small) == "ok");
    }
}

TEST_CASE("Limits: too many headers", "[sip]") {
    SipMessage m;
    std::string many;
    for (int i = 0; i < 250; ++i)
        many += "X-H" + std::to_string(i) + ": v\r\n";
    // kMinimal has 6 fields: 256 is the default limit and allowed, 257 is not.
    CHECK(parse(with_header(many), m) == "ok");
    CHECK(m.header_count == 256);
    const std::string over = with_header(many + "X-Last: v\r\n");
    CHECK(parse(over, m) == "too_many_headers");
    SipLimits limits;
    limits.max_headers = 257;
    CHECK(parse(over, m, limits) == "ok");
    CHECK(m.header_count == 257);
    limits.max_headers = 5;
    CHECK(parse(kMinimal, m, limits) == "too_many_headers");
    limits.max_headers = 6;
    CHECK(parse(kMinimal, m, limits) == "ok");
}

TEST_CASE("Truncation at every byte offset never crashes and stays consistent", "[sip]") {
    const std::string& full = flows::invite;
    const std::size_t header_end = full.find("\r\n\r\n") + 4;
    SipMessage m;
    for (std::size_t k = 0; k <= full.size(); ++k) {
        const std::string e = parse(std::string_view(full).substr(0, k), m);
        INFO("cut at " << k << ": " << e);
        if (k == full.size()) {
            CHECK(e == "ok");
        } else if (k >= header_end) {
            CHECK(e == "body_truncated");
        } else {
            CHECK(e != "ok");
        }
        CHECK(all_inside(last_text(), m));
    }
    // Without Content-Length a cut in the body is a shorter, consistent message.
    const std::string cl_line =
        "Content-Length: " + std::to_string(flows::kAliceSdp.size()) + "\r\n";
    const std::string no_cl = replace(full, cl_line, "");
    for (std::size_t k = no_cl.find("\r\n\r\n") + 4; k <= no_cl.size(); ++k) {
        const std::string cut = no_cl.substr(0, k);
        REQUIRE(parse(cut, m) == "ok");
        CHECK(m.length == k);
        CHECK(m.body.size() == k - (no_cl.find("\r\n\r\n") + 4));
    }
    // Every RFC 4475 message, cut everywhere: no crash, views inside the input.
    for (std::string_view t : {rfc4475::wsinv, rfc4475::intmeth, rfc4475::mpart01,
                               rfc4475::badinv01, rfc4475::quotbal, rfc4475::unreason}) {
        for (std::size_t k = 0; k < t.size(); ++k) {
            parse(t.substr(0, k), m);
            CHECK(all_inside(last_text(), m));
        }
    }
}

// =============================================================================================
// frame_sip_stream
// =============================================================================================

TEST_CASE("frame_sip_stream: back to back messages and keep-alives", "[sip][stream]") {
    const std::string stream = flows::invite + flows::trying + "\r\n\r\n" + flows::ok_invite;
    std::string_view rest = stream;
    std::size_t count = 0;
    SipMessage m;
    while (!rest.empty()) {
        const SipFrame f = frame_sip_stream(rest);
        if (f.status == SipFrameStatus::NeedMore && f.skip == rest.size()) break;
        REQUIRE(f.status == SipFrameStatus::Complete);
        const std::string_view msg = rest.substr(f.skip, f.length);
        REQUIRE(parse_sip(msg, m) == SipError::Ok);
        CHECK(m.length == f.length);
        if (count == 2) CHECK(f.skip == 4);  // the RFC 5626 double-CRLF ping
        rest.remove_prefix(f.skip + f.length);
        ++count;
    }
    CHECK(count == 3);
    CHECK(m.status_code == 200);

    const SipFrame ping = frame_sip_stream("\r\n\r\n");
    CHECK(ping.status == SipFrameStatus::NeedMore);
    CHECK(ping.skip == 4);
    const SipFrame empty = frame_sip_stream("");
    CHECK(empty.status == SipFrameStatus::NeedMore);
    CHECK(empty.skip == 0);
}

TEST_CASE("frame_sip_stream: a message split at every byte offset", "[sip][stream]") {
    const std::string two = flows::ok_invite + flows::bye;
    const std::size_t first = flows::ok_invite.size();
    for (std::size_t k = 0; k <= two.size(); ++k) {
        const std::string part = two.substr(0, k);
        const SipFrame f = frame_sip_stream(part);
        INFO("split at " << k);
        CHECK(f.skip == 0);
        if (k < first) {
            CHECK(f.status == SipFrameStatus::NeedMore);
        } else {
            REQUIRE(f.status == SipFrameStatus::Complete);
            CHECK(f.length == first);
            // and the second one, from where the first ended
            const SipFrame g = frame_sip_stream(std::string_view(part).substr(first));
            CHECK(g.status ==
                  (k == two.size() ? SipFrameStatus::Complete : SipFrameStatus::NeedMore));
        }
    }
}

TEST_CASE("frame_sip_stream: streams that cannot be framed", "[sip][stream]") {
    const std::string no_cl = replace(flows::bye, "Content-Length: 0\r\n", "");
    SipFrame f = frame_sip_stream(no_cl);
    CHECK(f.status == SipFrameStatus::Invalid);
    CHECK(f.error == SipError::MissingContentLength);

    f = frame_sip_stream(replace(flows::bye, "Content-Length: 0", "Content-Length: 99999999"));
    CHECK(f.status == SipFrameStatus::Invalid);
    CHECK(f.error == SipError::TooLarge);

    f = frame_sip_stream(replace(flows::bye, "Content-Length: 0", "l: 65536"));
    CHECK(f.status == SipFrameStatus::Invalid);
    CHECK(f.error == SipError::TooLarge);

    f = frame_sip_stream(replace(flows::bye, "Content-Length: 0", "Content-Length: 1"));
    CHECK(f.status == SipFrameStatus::NeedMore);  // one body octet still to come

    f = frame_sip_stream(replace(flows::bye, "Content-Length: 0", "Content-Length: -5"));
    CHECK(f.status == SipFrameStatus::Invalid);
    CHECK(f.error == SipError::BadContentLength);

    f = frame_sip_stream(
        replace(flows::bye, "Content-Length: 0", "Content-Length: 99999999999999999999999"));
    CHECK(f.status == SipFrameStatus::Invalid);
    CHECK(f.error == SipError::BadContentLength);

    f = frame_sip_stream(replace(flows::bye, "Content-Length: 0", "Content-Length: 0\r\nl: 3"));
    CHECK(f.status == SipFrameStatus::Invalid);
    CHECK(f.error == SipError::DuplicateSingletonHeader);

    // A malformed header line does not stop framing: that one message fails to parse, the
    // stream stays in step and the next message is framed normally.
    const std::string bad_line = replace(flows::bye, "Max-Forwards: 70", "Max Forwards 70");
    const std::string stream = bad_line + flows::ok_bye;
    f = frame_sip_stream(stream);
    REQUIRE(f.status == SipFrameStatus::Complete);
    CHECK(f.length == bad_line.size());
    SipMessage m;
    CHECK(parse(std::string_view(stream).substr(0, f.length), m) == "bad_header_line");
    f = frame_sip_stream(std::string_view(stream).substr(bad_line.size()));
    CHECK(f.status == SipFrameStatus::Complete);
    CHECK(f.length == flows::ok_bye.size());
    f = frame_sip_stream(std::string_view(bad_line).substr(0, bad_line.find("Max Forwards") + 5));
    CHECK(f.status == SipFrameStatus::NeedMore);

    // A header section that never ends: NeedMore until the limit, then Invalid.
    std::string endless = "INVITE sip:bob@example.com SIP/2.0\r\n";
    while (endless.size() < 70000)
        endless += "X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
    f = frame_sip_stream(std::string_view(endless).substr(0, 60000));
    CHECK(f.status == SipFrameStatus::NeedMore);
    f = frame_sip_stream(endless);
    CHECK(f.status == SipFrameStatus::Invalid);
    CHECK(f.error == SipError::TooLarge);
    SipLimits small;
    small.max_message_bytes = 1000;
    f = frame_sip_stream(std::string_view(endless).substr(0, 1000), small);
    CHECK(f.status == SipFrameStatus::Invalid);
    f = frame_sip_stream(std::string_view(endless).substr(0, 999), small);
    CHECK(f.status == SipFrameStatus::NeedMore);
    // Exactly at the limit is allowed.
    small.max_message_bytes = flows::invite.size();
    f = frame_sip_stream(flows::invite, small);
    CHECK(f.status == SipFrameStatus::Complete);
    small.max_message_bytes = flows::invite.size() - 1;
    f = frame_sip_stream(flows::invite, small);
    CHECK(f.status == SipFrameStatus::Invalid);
    CHECK(f.error == SipError::TooLarge);
}

// =============================================================================================
// Classification and names
// =============================================================================================

TEST_CASE("looks_like_sip", "[sip]") {
    CHECK(looks_like_sip("SIP/2.0 200 OK\r\n"));
    CHECK(looks_like_sip("INVITE sip:bob@example.com SIP/2.0\r\n"));
    CHECK(looks_like_sip("REGISTER sips:example.com SIP/2.0\r\n"));
    CHECK(looks_like_sip("NEWMETHOD tel:+1555 SIP/2.0\r\n"));
    CHECK(looks_like_sip("BYE s"));
    CHECK_FALSE(looks_like_sip(""));
    CHECK_FALSE(looks_like_sip("SIP/2.0"));
    CHECK_FALSE(looks_like_sip("INVITE"));
    CHECK_FALSE(looks_like_sip("INVITE "));
    CHECK_FALSE(looks_like_sip("invite sip:bob@example.com SIP/2.0"));
    CHECK_FALSE(looks_like_sip("GET / HTTP/1.1\r\n"));
    CHECK_FALSE(looks_like_sip("HTTP/1.1 200 OK\r\n"));
    CHECK_FALSE(looks_like_sip("\r\n\r\n"));
    CHECK_FALSE(looks_like_sip(" INVITE sip:bob@example.com SIP/2.0"));
    CHECK_FALSE(looks_like_sip("\x80\x00\x01\x02"sv));
    CHECK_FALSE(looks_like_sip("ABCDEFGHIJKLMNOPQRSTUVWXYZ sip:x"));
}

TEST_CASE("to_string and parse_method", "[sip]") {
    CHECK(std::string(to_string(SipError::Ok)) == "ok");
    CHECK(std::string(to_string(SipError::BodyTruncated)) == "body_truncated");
    CHECK(std::string(to_string(SipError::MissingContentLength)) == "missing_content_length");
    for (int i = 0; i < int(SipError::Count); ++i) {
        const std::string a = to_string(SipError(i));
        CHECK_FALSE(a.empty());
        for (int j = 0; j < i; ++j)
            CHECK(a != to_string(SipError(j)));
    }
    for (int i = int(SipMethod::Invite); i <= int(SipMethod::Update); ++i) {
        const SipMethod method = SipMethod(i);
        CHECK(parse_method(to_string(method)) == method);
    }
    CHECK(std::string(to_string(SipMethod::Prack)) == "PRACK");
    CHECK(parse_method("invite") == SipMethod::Other);  // case-sensitive (RFC 3261 7.1)
    CHECK(parse_method("INVITEX") == SipMethod::Other);
    CHECK(parse_method("INV") == SipMethod::Other);
    CHECK(parse_method("") == SipMethod::Other);
    CHECK(parse_method("OTHER") == SipMethod::Other);
}

TEST_CASE("keep-alives: CRLF and NAT-binding spaces, not SIP", "[sip]") {
    CHECK(tapwire::is_sip_keepalive("\r\n\r\n"));
    CHECK(tapwire::is_sip_keepalive("\r\n"));
    CHECK(tapwire::is_sip_keepalive("     "));  // seen in sngrep's aaa.pcap
    CHECK(tapwire::is_sip_keepalive(std::string_view("\0\0\0\0", 4)));
    CHECK_FALSE(tapwire::is_sip_keepalive(""));
    CHECK_FALSE(tapwire::is_sip_keepalive("\r\nOPTIONS sip:a SIP/2.0\r\n\r\n"));
}
