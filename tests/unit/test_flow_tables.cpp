// The shared dialog and media tables: semantics with a controlled clock, bounds, and a
// concurrency run (lock-free readers against a writer and the sweep) that checks every entry
// a reader sees is whole.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "common/sdp.hpp"
#include "dataplane/flow_tables.hpp"
#include "tests/unit/eal_fixture.hpp"

using namespace tapwire;
using namespace tapwire::dataplane;
using namespace std::chrono_literals;

namespace {

constexpr unsigned kSweeper = 7;
constexpr std::uint64_t kSec = 1'000'000'000;
constexpr std::uint8_t kUdp = 17;

FlowTablesConfig small_config() {
    FlowTablesConfig c;
    c.max_dialogs = 64;
    c.max_media = 256;
    c.linger_ns = 8 * kSec;
    c.dialog_idle_timeout_ns = 300 * kSec;
    c.media_idle_timeout_ns = 300 * kSec;
    c.touch_interval_ns = 1;
    c.sweeper_thread_id = kSweeper;
    c.call_id_key0 = 1, c.call_id_key1 = 2;
    return c;
}

struct Fixture {
    std::unique_ptr<QuiescentState> qs;
    std::unique_ptr<FlowTables> tables;

    explicit Fixture(const FlowTablesConfig& config = small_config()) {
        REQUIRE(test::ensure_eal());
        qs = QuiescentState::create(8);
        REQUIRE(qs);
        std::string error;
        tables = FlowTables::create(config, *qs, &error);
        INFO(error);
        REQUIRE(tables);
    }
    ~Fixture() {
        std::string problem;
        CHECK(tables->validate(&problem));
        INFO(problem);
    }
    std::uint64_t counter(FlowTableCounter c) const { return tables->counters()[c]; }
    FlowTables* operator->() const { return tables.get(); }
};

MediaKey v4(const char* ip, std::uint16_t port) {
    return MediaKey::make(*IpAddress::parse(ip), port, kUdp);
}

std::vector<MediaSpec> rtp_pair(const char* ip, std::uint16_t port) {
    return {{v4(ip, port), MediaKind::Rtp},
            {v4(ip, static_cast<std::uint16_t>(port + 1)), MediaKind::Rtcp}};
}

MediaSpecList specs_from_sdp(const char* text) {
    SdpSession sdp;
    REQUIRE(parse_sdp(text, sdp) == SdpError::Ok);
    MediaSpecList out;
    collect_media(sdp, out);
    return out;
}

std::span<const MediaSpec> span_of(const MediaSpecList& l) {
    return {l.begin(), l.size()};
}

}  // namespace

TEST_CASE("siphash128 matches the reference vectors", "[flow_tables]") {
    // SipHash reference implementation, vectors_sip128: key 00..0f, message 00..(n-1).
    const std::uint64_t k0 = 0x0706050403020100ULL, k1 = 0x0f0e0d0c0b0a0908ULL;
    std::uint8_t msg[64];
    for (int i = 0; i < 64; ++i)
        msg[i] = static_cast<std::uint8_t>(i);
    struct Vector {
        std::size_t len;
        std::uint8_t out[16];
    };
    const Vector vectors[] = {
        {0,
         {0xa3, 0x81, 0x7f, 0x04, 0xba, 0x25, 0xa8, 0xe6, 0x6d, 0xf6, 0x72, 0x14, 0xc7, 0x55, 0x02,
          0x93}},
        {1,
         {0xda, 0x87, 0xc1, 0xd8, 0x6b, 0x99, 0xaf, 0x44, 0x34, 0x76, 0x59, 0x11, 0x9b, 0x22, 0xfc,
          0x45}},
        {15,
         {0x54, 0x93, 0xe9, 0x99, 0x33, 0xb0, 0xa8, 0x11, 0x7e, 0x08, 0xec, 0x0f, 0x97, 0xcf, 0xc3,
          0xd9}},
        {63,
         {0x51, 0x50, 0xd1, 0x77, 0x2f, 0x50, 0x83, 0x4a, 0x50, 0x3e, 0x06, 0x9a, 0x97, 0x3f, 0xbd,
          0x7c}},
    };
    for (const Vector& v : vectors) {
        const DialogKey k = siphash128(msg, v.len, k0, k1);
        std::uint8_t out[16];
        std::memcpy(out, &k.lo, 8);  // little-endian hosts: the tag's byte order
        std::memcpy(out + 8, &k.hi, 8);
        INFO("length " << v.len);
        REQUIRE(std::memcmp(out, v.out, 16) == 0);
    }
}

TEST_CASE("dialog keys: per Call-ID, per process key", "[flow_tables]") {
    Fixture f;
    const DialogKey a = f->dialog_key("a84b4c76e66710@pc33.atlanta.com");
    REQUIRE(a == f->dialog_key("a84b4c76e66710@pc33.atlanta.com"));
    REQUIRE_FALSE(a == f->dialog_key("a84b4c76e66710@pc33.atlanta.coM"));  // case-sensitive
    REQUIRE_FALSE(a == make_dialog_key("a84b4c76e66710@pc33.atlanta.com", 3, 4));
}

TEST_CASE("dialog: create, find, merge warrants, remove", "[flow_tables]") {
    Fixture f;
    const DialogKey key = f->dialog_key("call-1@example.net");
    REQUIRE(f->find_dialog(key) == nullptr);

    const WarrantId w1[] = {7};
    DialogUpsert r = f->dialog_create_or_update(key, w1, TargetSide::Caller, 0, 1000);
    REQUIRE(r.result == FlowResult::Created);
    REQUIRE(r.entry != nullptr);
    const DialogEntry* d = f->find_dialog(key);
    REQUIRE(d == r.entry);
    CHECK(d->key == key);
    CHECK(d->correlation_id == 1);
    CHECK(d->created_ns == 1000);
    CHECK(d->state == DialogState::Active);
    CHECK(d->target_side == TargetSide::Caller);
    REQUIRE(d->warrants.count == 1);
    CHECK(d->warrants.ids[0] == 7);
    CHECK(f->dialog_count() == 1);

    // The same match again (a retransmission): nothing to write.
    r = f->dialog_create_or_update(key, w1, TargetSide::Caller, 0, 2000);
    REQUIRE(r.result == FlowResult::Unchanged);
    REQUIRE(r.entry == d);

    // The callee is a target too, under another warrant: a new immutable entry.
    const WarrantId w2[] = {7, 9};
    r = f->dialog_create_or_update(key, w2, TargetSide::Callee, 0, 3000);
    REQUIRE(r.result == FlowResult::Updated);
    REQUIRE(r.entry != d);
    d = f->find_dialog(key);
    REQUIRE(d == r.entry);
    CHECK(d->correlation_id == 1);  // same call, same id
    CHECK(d->created_ns == 1000);
    CHECK(d->target_side == TargetSide::Both);
    REQUIRE(d->warrants.count == 2);
    CHECK(d->warrants.ids[1] == 9);
    CHECK(d->last_seen_ns.load() == 3000);

    // A second call gets the next correlation id.
    const DialogKey other = f->dialog_key("call-2@example.net");
    r = f->dialog_create_or_update(other, w1, TargetSide::Callee, 0, 4000);
    REQUIRE(r.result == FlowResult::Created);
    CHECK(r.entry->correlation_id == 2);

    REQUIRE(f->dialog_remove(key) == FlowResult::Removed);
    REQUIRE(f->find_dialog(key) == nullptr);
    REQUIRE(f->dialog_remove(key) == FlowResult::NotFound);
    CHECK(f->dialog_count() == 1);
    CHECK(f.counter(FlowTableCounter::dialog_inserts) == 2);
    CHECK(f.counter(FlowTableCounter::dialog_updates) == 1);
    CHECK(f.counter(FlowTableCounter::dialog_removed_explicit) == 1);
}

TEST_CASE("dialog: more than 16 warrants are counted, not stored", "[flow_tables]") {
    Fixture f;
    std::vector<WarrantId> many;
    for (WarrantId w = 1; w <= 20; ++w)
        many.push_back(w);
    const DialogKey key = f->dialog_key("busy-target");
    REQUIRE(f->dialog_create_or_update(key, many, TargetSide::Caller, 0, 1).result ==
            FlowResult::Created);
    REQUIRE(f->find_dialog(key)->warrants.count == kMaxWarrantsPerCall);
    CHECK(f.counter(FlowTableCounter::dialog_warrant_overflow) == 4);
}

TEST_CASE("collect_media: RTP, RTCP, rtcp-mux, a=rtcp, IPv6, disabled streams", "[flow_tables]") {
    const MediaSpecList specs = specs_from_sdp(
        "v=0\r\n"
        "o=alice 2890844526 2890844526 IN IP4 192.0.2.10\r\n"
        "s=-\r\n"
        "c=IN IP4 192.0.2.10\r\n"
        "t=0 0\r\n"
        "m=audio 49170 RTP/AVP 0\r\n"
        "m=video 0 RTP/AVP 31\r\n"
        "m=audio 50000 RTP/AVP 0\r\n"
        "a=rtcp:53020 IN IP4 192.0.2.11\r\n"
        "m=audio 52000 UDP/TLS/RTP/SAVPF 111\r\n"
        "a=rtcp-mux\r\n"
        "m=audio 54000 RTP/AVP 0\r\n"
        "c=IN IP6 2001:db8::7\r\n"
        "m=image 56000 udptl t38\r\n"
        "m=audio 58000 TCP/RTP/AVP 0\r\n"
        "m=audio 59000 RTP/AVP 0\r\n"
        "c=IN IP4 0.0.0.0\r\n");  // on hold, RFC 2543 style: nothing to follow
    std::vector<std::pair<std::string, MediaKind>> got;
    for (const MediaSpec& s : specs)
        got.emplace_back(s.key.ip().to_string() + ":" + std::to_string(s.key.port) +
                             (s.key.l4_proto == 6 ? "/tcp" : "/udp"),
                         s.kind);
    const std::vector<std::pair<std::string, MediaKind>> want = {
        {"192.0.2.10:49170/udp", MediaKind::Rtp},
        {"192.0.2.10:49171/udp", MediaKind::Rtcp},
        // m=video port 0: disabled, nothing
        {"192.0.2.10:50000/udp", MediaKind::Rtp},
        {"192.0.2.11:53020/udp", MediaKind::Rtcp},  // RFC 3605 a=rtcp with its own address
        {"192.0.2.10:52000/udp", MediaKind::RtpRtcpMux},
        {"192.0.2.10:52001/udp", MediaKind::Rtcp},  // in case the answer declines rtcp-mux
        {"2001:db8::7:54000/udp", MediaKind::Rtp},
        {"2001:db8::7:54001/udp", MediaKind::Rtcp},
        {"192.0.2.10:56000/udp", MediaKind::NonRtp},  // T.38 fax is content too
        {"192.0.2.10:58000/tcp", MediaKind::Rtp},
        {"192.0.2.10:58001/tcp", MediaKind::Rtcp},
    };
    REQUIRE(got == want);
    REQUIRE_FALSE(specs.overflowed());
}

TEST_CASE("media: add from SDP, lookups single and bulk, warrants follow the dialog",
          "[flow_tables]") {
    Fixture f;
    const DialogKey key = f->dialog_key("media-call");
    const WarrantId w[] = {42};
    REQUIRE(f->dialog_create_or_update(key, w, TargetSide::Caller, 0, 10).result ==
            FlowResult::Created);

    const MediaSpecList offer = specs_from_sdp(
        "v=0\r\no=a 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
        "m=audio 4000 RTP/AVP 0\r\n");
    MediaUpdate u = f->media_add(key, Party::Caller, span_of(offer), 20);
    REQUIRE(u.result == FlowResult::Updated);
    REQUIRE(u.added == 2);

    const MediaEntry* rtp = f->find_media(v4("10.0.0.1", 4000));
    REQUIRE(rtp != nullptr);
    CHECK(rtp->kind == MediaKind::Rtp);
    CHECK(rtp->party == Party::Caller);
    CHECK(rtp->target_side == TargetSide::Caller);
    CHECK(rtp->correlation_id == f->find_dialog(key)->correlation_id);
    CHECK(rtp->dialog == key);
    REQUIRE(rtp->warrants.count == 1);
    CHECK(rtp->warrants.ids[0] == 42);
    const MediaEntry* rtcp = f->find_media(v4("10.0.0.1", 4001));
    REQUIRE(rtcp != nullptr);
    CHECK(rtcp->kind == MediaKind::Rtcp);
    CHECK(f->find_media(v4("10.0.0.1", 4002)) == nullptr);
    CHECK(f->find_media(MediaKey::make(*IpAddress::parse("10.0.0.1"), 4000, 6)) == nullptr);
    REQUIRE(f->find_dialog(key)->media_count == 2);

    // Bulk: 32 keys, hits at 0 and 31.
    std::vector<MediaKey> burst;
    for (int i = 0; i < 32; ++i)
        burst.push_back(v4("10.9.9.9", static_cast<std::uint16_t>(i)));
    burst[0] = v4("10.0.0.1", 4000);
    burst[31] = v4("10.0.0.1", 4001);
    const MediaEntry* out[32];
    const std::uint64_t hits = f->find_media_bulk(burst, out);
    CHECK(hits == ((1ULL << 31) | 1ULL));
    CHECK(out[0] == rtp);
    CHECK(out[31] == rtcp);
    CHECK(out[5] == nullptr);

    // The same SDP again (200 OK retransmission): nothing changes.
    u = f->media_add(key, Party::Caller, span_of(offer), 30);
    CHECK(u.result == FlowResult::Unchanged);
    CHECK(f->find_media(v4("10.0.0.1", 4000)) == rtp);

    // A new warrant on the call reaches its media: hits carry every warrant.
    const WarrantId w2[] = {43};
    REQUIRE(f->dialog_create_or_update(key, w2, TargetSide::Callee, 0, 40).result ==
            FlowResult::Updated);
    rtp = f->find_media(v4("10.0.0.1", 4000));
    REQUIRE(rtp->warrants.count == 2);
    CHECK(rtp->warrants.ids[1] == 43);
    CHECK(rtp->target_side == TargetSide::Both);
    CHECK(f->find_media(v4("10.0.0.1", 4001))->warrants.count == 2);

    CHECK(f->media_add(f->dialog_key("unknown"), Party::Caller, span_of(offer), 50).result ==
          FlowResult::NotFound);
}

TEST_CASE("media: a re-INVITE moves one party's media, the other's stay", "[flow_tables]") {
    Fixture f;
    const DialogKey key = f->dialog_key("reinvite-call");
    const WarrantId w[] = {1};
    f->dialog_create_or_update(key, w, TargetSide::Caller, 0, 0);
    const auto caller = rtp_pair("10.0.0.1", 4000);
    const auto callee = rtp_pair("10.0.0.2", 5000);
    REQUIRE(f->media_add(key, Party::Caller, caller, 1).added == 2);  // INVITE offer
    REQUIRE(f->media_add(key, Party::Callee, callee, 2).added == 2);  // 200 OK answer
    REQUIRE(f->media_count() == 4);

    // re-INVITE from the caller: it moved to another host and port.
    const auto moved = rtp_pair("10.0.0.3", 6000);
    const MediaUpdate u = f->media_move(key, Party::Caller, moved, 3);
    CHECK(u.result == FlowResult::Updated);
    CHECK(u.removed == 2);
    CHECK(u.added == 2);
    CHECK(f->find_media(v4("10.0.0.1", 4000)) == nullptr);
    CHECK(f->find_media(v4("10.0.0.1", 4001)) == nullptr);
    CHECK(f->find_media(v4("10.0.0.3", 6000)) != nullptr);
    CHECK(f->find_media(v4("10.0.0.3", 6001)) != nullptr);
    CHECK(f->find_media(v4("10.0.0.2", 5000)) != nullptr);  // callee untouched
    CHECK(f->find_media(v4("10.0.0.2", 5001)) != nullptr);
    CHECK(f->find_dialog(key)->media_count == 4);
    CHECK(f.counter(FlowTableCounter::media_removed_moved) == 2);

    // The callee answers keeping RTP but dropping the separate RTCP (now rtcp-mux).
    const MediaSpec mux[] = {{v4("10.0.0.2", 5000), MediaKind::RtpRtcpMux}};
    const MediaUpdate u2 = f->media_move(key, Party::Callee, mux, 4);
    CHECK(u2.removed == 1);
    CHECK(u2.changed == 1);
    CHECK(f->find_media(v4("10.0.0.2", 5000))->kind == MediaKind::RtpRtcpMux);
    CHECK(f->find_media(v4("10.0.0.2", 5001)) == nullptr);

    // media_add never removes: early media from a second fork adds to the first.
    f->media_add(key, Party::Callee, rtp_pair("10.0.0.4", 7000), 5);
    CHECK(f->find_media(v4("10.0.0.2", 5000)) != nullptr);
    CHECK(f->find_media(v4("10.0.0.4", 7000)) != nullptr);

    // Removing the dialog removes everything it owns.
    REQUIRE(f->dialog_remove(key) == FlowResult::Removed);
    CHECK(f->media_count() == 0);
}

TEST_CASE("media: a newer call takes over an endpoint; the old call does not remove it",
          "[flow_tables]") {
    Fixture f;
    const WarrantId w[] = {1};
    const DialogKey old_call = f->dialog_key("old"), new_call = f->dialog_key("new");
    f->dialog_create_or_update(old_call, w, TargetSide::Caller, 0, 0);
    f->dialog_create_or_update(new_call, w, TargetSide::Caller, 0, 0);
    f->media_add(old_call, Party::Caller, rtp_pair("10.0.0.1", 4000), 1);
    const MediaUpdate u = f->media_add(new_call, Party::Callee, rtp_pair("10.0.0.1", 4000), 2);
    CHECK(u.changed == 2);
    CHECK(f.counter(FlowTableCounter::media_taken_over) == 2);
    CHECK(f->find_media(v4("10.0.0.1", 4000))->dialog == new_call);
    f->dialog_remove(old_call);
    REQUIRE(f->find_media(v4("10.0.0.1", 4000)) != nullptr);  // still the new call's
    CHECK(f->find_media(v4("10.0.0.1", 4000))->correlation_id ==
          f->find_dialog(new_call)->correlation_id);
}

TEST_CASE("ending: the dialog and its media linger, then the sweep removes them", "[flow_tables]") {
    Fixture f;
    const DialogKey key = f->dialog_key("bye-call");
    const WarrantId w[] = {1};
    f->dialog_create_or_update(key, w, TargetSide::Caller, 0, 0);
    f->media_add(key, Party::Caller, rtp_pair("10.0.0.1", 4000), 0);
    f->media_add(key, Party::Callee, rtp_pair("10.0.0.2", 5000), 0);

    const std::uint64_t bye = 100 * kSec;
    REQUIRE(f->dialog_end(key, bye) == FlowResult::Updated);
    const DialogEntry* d = f->find_dialog(key);
    REQUIRE(d != nullptr);  // the 200 OK to the BYE is still intercepted
    CHECK(d->state == DialogState::Ending);
    CHECK(d->linger_until_ns == bye + 8 * kSec);
    // A retransmitted BYE does not push the deadline out.
    CHECK(f->dialog_end(key, bye + 2 * kSec) == FlowResult::Unchanged);
    CHECK(f->find_dialog(key)->linger_until_ns == bye + 8 * kSec);

    f->sweep(bye + 8 * kSec - 1, 1'000'000);
    REQUIRE(f->find_dialog(key) != nullptr);
    REQUIRE(f->find_media(v4("10.0.0.1", 4000)) != nullptr);

    const SweepResult s = f->sweep(bye + 8 * kSec, 1'000'000);
    CHECK(s.pass_completed);
    CHECK(s.removed == 1);
    CHECK(f->find_dialog(key) == nullptr);
    CHECK(f->media_count() == 0);
    CHECK(f->dialog_count() == 0);
    CHECK(f.counter(FlowTableCounter::dialog_removed_ended) == 1);
    CHECK(f.counter(FlowTableCounter::media_removed_with_dialog) == 4);
    CHECK(f->dialog_end(key, bye) == FlowResult::NotFound);
}

TEST_CASE("idle: a dialog lives as long as its media flow", "[flow_tables]") {
    FlowTablesConfig config = small_config();
    config.dialog_idle_timeout_ns = 60 * kSec;
    config.media_idle_timeout_ns = 60 * kSec;
    config.touch_interval_ns = kSec;
    Fixture f(config);
    const DialogKey quiet = f->dialog_key("quiet"), talking = f->dialog_key("talking");
    const WarrantId w[] = {1};
    f->dialog_create_or_update(quiet, w, TargetSide::Caller, 0, 0);
    f->dialog_create_or_update(talking, w, TargetSide::Caller, 0, 0);
    f->media_add(talking, Party::Caller, rtp_pair("10.0.0.1", 4000), 0);

    // RTP keeps flowing on the talking call: workers touch the media entry.
    const MediaEntry* rtp = f->find_media(v4("10.0.0.1", 4000));
    f->touch(*rtp, kSec / 2);  // within the touch interval: not written
    CHECK(rtp->last_seen_ns.load() == 0);
    f->touch(*rtp, 50 * kSec);
    CHECK(rtp->last_seen_ns.load() == 50 * kSec);

    f->sweep(61 * kSec, 1'000'000);
    CHECK(f->find_dialog(quiet) == nullptr);    // no SIP, no media for 61 s
    CHECK(f->find_dialog(talking) != nullptr);  // SIP silent, but media 11 s ago
    CHECK(f->find_media(v4("10.0.0.1", 4000)) != nullptr);
    CHECK(f->find_media(v4("10.0.0.1", 4001)) == nullptr);  // RTCP idle since 0
    CHECK(f.counter(FlowTableCounter::dialog_removed_idle) == 1);
    CHECK(f.counter(FlowTableCounter::media_removed_idle) == 1);

    f->sweep(111 * kSec, 1'000'000);
    CHECK(f->find_dialog(talking) == nullptr);
    CHECK(f->media_count() == 0);
    CHECK(f.counter(FlowTableCounter::dialog_removed_idle) == 2);
}

TEST_CASE("sweep: a small budget resumes where it stopped", "[flow_tables]") {
    Fixture f;
    const WarrantId w[] = {1};
    for (int i = 0; i < 10; ++i)
        f->dialog_create_or_update(f->dialog_key("c" + std::to_string(i)), w, TargetSide::Caller, 0,
                                   0);
    std::uint32_t removed = 0;
    int calls = 0;
    SweepResult s;
    do {
        s = f->sweep(1000 * kSec, 7);
        CHECK(s.scanned <= 7);
        removed += s.removed;
        ++calls;
    } while (!s.pass_completed && calls < 1000);
    CHECK(removed == 10);
    CHECK(calls > 10);
    CHECK(f->dialog_count() == 0);
}

TEST_CASE("eviction: above the high watermark the oldest idle dialogs go first", "[flow_tables]") {
    Fixture f;  // 64 dialogs: evict above 57 (90%) down to 51 (80%)
    const WarrantId w[] = {1};
    std::vector<DialogKey> keys;
    for (int i = 0; i < 60; ++i) {
        keys.push_back(f->dialog_key("call-" + std::to_string(i)));
        REQUIRE(f->dialog_create_or_update(keys.back(), w, TargetSide::Caller, 0,
                                           static_cast<std::uint64_t>(i) * kSec)
                    .result == FlowResult::Created);
    }
    // Call 3 is old but just saw a packet on its dialog.
    f->touch(*f->find_dialog(keys[3]), 100 * kSec);
    f->sweep(101 * kSec, 1'000'000);
    CHECK(f->dialog_count() == 51);
    CHECK(f.counter(FlowTableCounter::dialog_evicted) == 9);
    for (int i = 0; i < 60; ++i) {
        const bool evicted = i <= 9 && i != 3;
        INFO("call " << i);
        CHECK((f->find_dialog(keys[static_cast<std::size_t>(i)]) == nullptr) == evicted);
    }
}

TEST_CASE("eviction: media above the high watermark, oldest idle first", "[flow_tables]") {
    FlowTablesConfig config = small_config();
    config.max_media = 32;  // evict above 28 down to 25
    Fixture f(config);
    const WarrantId w[] = {1};
    const DialogKey a = f->dialog_key("a"), b = f->dialog_key("b");
    f->dialog_create_or_update(a, w, TargetSide::Caller, 0, 0);
    f->dialog_create_or_update(b, w, TargetSide::Caller, 0, 0);
    for (std::uint16_t i = 0; i < 30; ++i) {
        const MediaSpec one[] = {
            {v4("10.1.0.1", static_cast<std::uint16_t>(2000 + i)), MediaKind::Rtp}};
        REQUIRE(f->media_add(i % 2 ? a : b, Party::Caller, one, i * kSec).added == 1);
    }
    f->sweep(100 * kSec, 1'000'000);
    CHECK(f->media_count() == 25);
    CHECK(f.counter(FlowTableCounter::media_evicted) == 5);
    for (std::uint16_t i = 0; i < 30; ++i)
        CHECK((f->find_media(v4("10.1.0.1", static_cast<std::uint16_t>(2000 + i))) == nullptr) ==
              (i < 5));
    // The dialogs were used at least as recently as their media: not evicted.
    CHECK(f->dialog_count() == 2);
}

TEST_CASE("full tables: the overflow is counted, the next sweep makes room", "[flow_tables]") {
    FlowTablesConfig config = small_config();
    config.max_dialogs = 16;  // high 14, low 12
    config.max_media = 8;
    Fixture f(config);
    const WarrantId w[] = {1};
    for (int i = 0; i < 16; ++i)
        REQUIRE(f->dialog_create_or_update(f->dialog_key("d" + std::to_string(i)), w,
                                           TargetSide::Caller, 0, static_cast<std::uint64_t>(i))
                    .result == FlowResult::Created);
    const DialogKey late = f->dialog_key("late");
    DialogUpsert r = f->dialog_create_or_update(late, w, TargetSide::Caller, 0, 100);
    CHECK(r.result == FlowResult::TableFull);
    CHECK(r.entry == nullptr);
    CHECK(f.counter(FlowTableCounter::dialog_table_full) == 1);
    CHECK(f->dialog_count() == 16);

    f->sweep(200, 1'000'000);
    CHECK(f->dialog_count() == 12);
    CHECK(f->find_dialog(f->dialog_key("d0")) == nullptr);
    CHECK(f->find_dialog(f->dialog_key("d15")) != nullptr);
    r = f->dialog_create_or_update(late, w, TargetSide::Caller, 0, 300);
    CHECK(r.result == FlowResult::Created);

    // Media: 10 endpoints into 8 places.
    std::vector<MediaSpec> specs;
    for (std::uint16_t i = 0; i < 10; ++i)
        specs.push_back({v4("10.0.0.9", static_cast<std::uint16_t>(3000 + i)), MediaKind::Rtp});
    const MediaUpdate u = f->media_add(late, Party::Caller, specs, 400);
    CHECK(u.result == FlowResult::TableFull);
    CHECK(u.added == 8);
    CHECK(u.failed == 2);
    CHECK(f.counter(FlowTableCounter::media_table_full) == 2);
    CHECK(f->media_count() == 8);
}

TEST_CASE("pool exhaustion: a stalled reader holds entries back; counted, no damage",
          "[flow_tables]") {
    FlowTablesConfig config = small_config();
    config.max_dialogs = 8;
    config.pool_slack = 4;  // 12 entries for 8 dialogs
    Fixture f(config);
    constexpr unsigned kStalled = 1;
    REQUIRE(f.qs->register_thread(kStalled));
    f.qs->online(kStalled);  // a worker that stops reporting quiescent states

    const WarrantId w1[] = {1};
    std::vector<DialogKey> keys;
    for (int i = 0; i < 8; ++i) {
        keys.push_back(f->dialog_key("p" + std::to_string(i)));
        REQUIRE(f->dialog_create_or_update(keys.back(), w1, TargetSide::Caller, 0, 0).result ==
                FlowResult::Created);
    }
    // Each update needs a fresh entry; the replaced ones cannot be reused yet.
    int updated = 0;
    for (int i = 0; i < 8; ++i) {
        const WarrantId w2[] = {static_cast<WarrantId>(100 + i)};
        const DialogUpsert r = f->dialog_create_or_update(keys[static_cast<std::size_t>(i)], w2,
                                                          TargetSide::Caller, 0, 1);
        if (r.result == FlowResult::Updated) {
            ++updated;
        } else {
            CHECK(r.result == FlowResult::PoolExhausted);
            REQUIRE(r.entry != nullptr);  // the call is still intercepted, with the old warrants
            CHECK(r.entry->warrants.count == 1);
        }
    }
    CHECK(updated == 4);
    CHECK(f.counter(FlowTableCounter::dialog_pool_exhausted) == 4);

    // The worker reports again: the retired entries come back, updates succeed.
    f.qs->quiescent(kStalled);
    const WarrantId w3[] = {200};
    CHECK(f->dialog_create_or_update(keys[7], w3, TargetSide::Caller, 0, 2).result ==
          FlowResult::Updated);
    f.qs->offline(kStalled);
}

TEST_CASE("config: bad settings are refused with a message", "[flow_tables]") {
    REQUIRE(test::ensure_eal());
    auto qs = QuiescentState::create(8);
    std::string error;
    FlowTablesConfig c = small_config();
    c.evict_to_percent = 95;
    CHECK(FlowTables::create(c, *qs, &error) == nullptr);
    CHECK(error.find("evict") != std::string::npos);
    c = small_config();
    c.sweeper_thread_id = 8;
    CHECK(FlowTables::create(c, *qs, &error) == nullptr);
    CHECK(error.find("sweeper") != std::string::npos);
    c = small_config();
    c.max_dialogs = 2;
    CHECK(FlowTables::create(c, *qs, &error) == nullptr);
}

// ---- Concurrency: 2 lock-free readers, 1 writer, the sweep, for a few seconds.
//
// Every entry's content is a function of its identity, so a reader can tell a whole entry
// from a torn, stale-after-reuse or poisoned one: a dialog's key is the key looked up, its
// warrants are W(correlation id, 0..count-1); a media entry's key is the key looked up, its
// dialog is the one its port belongs to, its warrants follow the same rule, and its kind
// matches the port's parity.

namespace {

constexpr int kCalls = 200;
constexpr std::uint16_t kBasePort = 10000, kMovedPort = 30000;

WarrantId warrant_of(std::uint64_t correlation_id, unsigned i) {
    return static_cast<WarrantId>(correlation_id * 1000003u + i);
}

std::string call_id_of(int call) {
    return "stress-" + std::to_string(call) + "@test";
}

// Call c's endpoints: 4 per call (caller RTP/RTCP, callee RTP/RTCP) in two port ranges, the
// second used after a re-INVITE moved the caller.
MediaKey endpoint(int call, int which, bool moved) {
    const std::uint16_t base = moved ? kMovedPort : kBasePort;
    return v4("10.20.0.1", static_cast<std::uint16_t>(base + call * 4 + which));
}

int call_of_port(std::uint16_t port) {
    const std::uint16_t base = port >= kMovedPort ? kMovedPort : kBasePort;
    return (port - base) / 4;
}

// Whether a sweep whose clock is at most now may remove d (past its linger, or idle). The
// sweep's clock never runs ahead of the writer's now (only the writer advances it), and a
// dialog's effective last_seen is at least d's own, so false here means the sweep cannot
// take d before this thread's next write.
bool sweep_may_remove(const DialogEntry& d, std::uint64_t now, const FlowTablesConfig& c) {
    if (d.state == DialogState::Ending && now >= d.linger_until_ns) return true;
    const std::uint64_t seen = d.last_seen_ns.load(std::memory_order_relaxed);
    return now > seen && now - seen >= c.dialog_idle_timeout_ns;
}

bool warrants_whole(const WarrantSet& w, std::uint64_t correlation_id) {
    if (w.count > kMaxWarrantsPerCall) return false;
    for (unsigned i = 0; i < w.count; ++i)
        if (w.ids[i] != warrant_of(correlation_id, i)) return false;
    return true;
}

}  // namespace

TEST_CASE("concurrency: readers see whole entries while a writer and the sweep run",
          "[flow_tables][concurrency]") {
    FlowTablesConfig config = small_config();
    config.max_dialogs = 256;
    config.max_media = 1024;
    config.linger_ns = 50'000'000;             // simulated: the clock moves 0.1 ms
    config.dialog_idle_timeout_ns = 2 * kSec;  // per writer op
    config.media_idle_timeout_ns = 2 * kSec;
    config.touch_interval_ns = 10'000'000;
    Fixture f(config);
    FlowTables& t = *f.tables;

    std::vector<DialogKey> dialog_keys;
    for (int c = 0; c < kCalls; ++c)
        dialog_keys.push_back(t.dialog_key(call_id_of(c)));

    std::atomic<std::uint64_t> clock{kSec};
    std::atomic<bool> stop{false};
    std::atomic<std::uint64_t> violations{0}, dialog_hits{0}, media_hits{0}, lookups{0};
    std::atomic<unsigned> ready{0};

    auto reader = [&](unsigned id) {
        f.qs->register_thread(id);
        f.qs->online(id);
        ++ready;
        std::mt19937 rng(id);
        std::uint64_t bad = 0, dhits = 0, mhits = 0, n = 0;
        MediaKey burst[32];
        const MediaEntry* out[32];
        while (!stop.load(std::memory_order_relaxed)) {
            const std::uint64_t now = clock.load(std::memory_order_relaxed);
            const int c = static_cast<int>(rng() % kCalls);
            if (const DialogEntry* d = t.find_dialog(dialog_keys[static_cast<std::size_t>(c)])) {
                ++dhits;
                if (!(d->key == dialog_keys[static_cast<std::size_t>(c)]) ||
                    !warrants_whole(d->warrants, d->correlation_id) ||
                    d->media_count > kMaxMediaPerDialog ||
                    (d->state != DialogState::Active && d->state != DialogState::Ending))
                    ++bad;
                t.touch(*d, now);
            }
            for (int i = 0; i < 32; ++i)
                burst[i] = endpoint(static_cast<int>(rng() % kCalls), static_cast<int>(rng() % 4),
                                    rng() % 2 == 0);
            t.find_media_bulk(burst, out);
            for (int i = 0; i < 32; ++i) {
                const MediaEntry* m = i == 0 ? t.find_media(burst[0]) : out[i];
                if (m == nullptr) continue;
                ++mhits;
                const int call = call_of_port(burst[i].port);
                const bool rtcp = (burst[i].port % 2) == 1;
                if (!(m->key == burst[i]) ||
                    !(m->dialog == dialog_keys[static_cast<std::size_t>(call)]) ||
                    !warrants_whole(m->warrants, m->correlation_id) ||
                    m->kind != (rtcp ? MediaKind::Rtcp : MediaKind::Rtp))
                    ++bad;
                t.touch(*m, now);
            }
            n += 33;
            f.qs->quiescent(id);  // end of this "poll-loop iteration"
        }
        f.qs->offline(id);
        violations += bad;
        dialog_hits += dhits;
        media_hits += mhits;
        lookups += n;
    };

    // The writer is a worker too: registered, reporting once per iteration.
    std::atomic<std::uint64_t> ops{0};
    auto writer = [&] {
        constexpr unsigned kId = 3;
        f.qs->register_thread(kId);
        f.qs->online(kId);
        std::mt19937 rng(99);
        std::vector<bool> moved(kCalls, false);
        auto exhausted = [&] {
            const FlowTableCounterValues v = t.counters();
            return v[FlowTableCounter::dialog_pool_exhausted] +
                   v[FlowTableCounter::media_pool_exhausted];
        };
        while (!stop.load(std::memory_order_relaxed)) {
            const std::uint64_t exhausted_before = exhausted();
            const std::uint64_t now = clock.fetch_add(100'000) + 100'000;
            const int c = static_cast<int>(rng() % kCalls);
            const DialogKey& key = dialog_keys[static_cast<std::size_t>(c)];
            const DialogEntry* d = t.find_dialog(key);
            const unsigned op = rng() % 10;
            if (d == nullptr) {
                // New call: matched with its first warrant (derived from the id it gets). The
                // new dialog is Active and seen now, so the sweep cannot remove it in between.
                const DialogUpsert r =
                    t.dialog_create_or_update(key, {}, TargetSide::Caller, 0, now);
                if (r.entry != nullptr) {
                    const WarrantId w[] = {warrant_of(r.entry->correlation_id, 0)};
                    t.dialog_create_or_update(key, w, TargetSide::Caller, 0, now);
                }
                moved[static_cast<std::size_t>(c)] = false;
            } else if (op < 3) {
                // Another warrant matches: replaces the dialog and all its media entries.
                // The warrant is derived from d's correlation id, read here without the
                // writers' lock. Were d removed by the sweep before the update takes the lock,
                // dialog_create_or_update would rightly create a new call (new correlation
                // id) holding the old call's warrant: a whole entry, but one that breaks this
                // test's encoding and reads as a violation. Only this thread creates, ends
                // and replaces dialogs, and no dialog is evicted (kCalls is below the high
                // watermark), so the sweep removes d only as sweep_may_remove() says.
                if (d->warrants.count < kMaxWarrantsPerCall && !sweep_may_remove(*d, now, config)) {
                    const WarrantId w[] = {warrant_of(d->correlation_id, d->warrants.count)};
                    t.dialog_create_or_update(key, w, TargetSide::Callee, 0, now);
                }
            } else if (op < 6) {
                const bool m = moved[static_cast<std::size_t>(c)];
                const MediaSpec caller[] = {{endpoint(c, 0, m), MediaKind::Rtp},
                                            {endpoint(c, 1, m), MediaKind::Rtcp}};
                const MediaSpec callee[] = {{endpoint(c, 2, false), MediaKind::Rtp},
                                            {endpoint(c, 3, false), MediaKind::Rtcp}};
                t.media_add(key, Party::Caller, caller, now);
                t.media_add(key, Party::Callee, callee, now);
            } else if (op < 8) {
                // re-INVITE: the caller's media move to the other port range and back.
                const bool m = !moved[static_cast<std::size_t>(c)];
                moved[static_cast<std::size_t>(c)] = m;
                const MediaSpec caller[] = {{endpoint(c, 0, m), MediaKind::Rtp},
                                            {endpoint(c, 1, m), MediaKind::Rtcp}};
                t.media_move(key, Party::Caller, caller, now);
            } else if (op < 9) {
                t.dialog_end(key, now);
            } else {
                t.dialog_remove(key);
            }
            ++ops;
            f.qs->quiescent(kId);
            // With more busy threads than cores (2-core CI hosts) a reader is often preempted
            // while online, which holds every grace period, and so the pools, until it runs
            // again. A writer that kept going would spend the run failing fast: removals need
            // no entry, so the calls drain, few dialogs end, readers find few dialogs. Back
            // off as a worker would, and let the readers report.
            if (exhausted() != exhausted_before) std::this_thread::sleep_for(20us);
        }
        f.qs->offline(kId);
    };

    // Housekeeping on its own thread, as on the main lcore.
    std::atomic<std::uint64_t> passes{0};
    auto sweeper = [&] {
        while (!stop.load(std::memory_order_relaxed)) {
            if (t.sweep(clock.load(std::memory_order_relaxed), 512).pass_completed) ++passes;
            std::this_thread::sleep_for(100us);
        }
    };

    std::thread r1(reader, 1), r2(reader, 2);
    while (ready.load() < 2)
        std::this_thread::yield();
    std::thread w(writer), s(sweeper);
    std::this_thread::sleep_for(3s);
    stop = true;
    w.join();
    s.join();
    // One last full pass past every linger, from this thread (the sweeper has stopped): a
    // slow machine (ASan, a loaded CI host) may not have swept in time during the run.
    const std::uint64_t after_linger = clock.load() + config.linger_ns + 1;
    while (!t.sweep(after_linger, 1u << 20).pass_completed) {
    }
    r1.join();
    r2.join();

    const FlowTableCounterValues c = t.counters();
    INFO("writer ops " << ops.load() << ", lookups " << lookups.load() << ", dialog hits "
                       << dialog_hits.load() << ", media hits " << media_hits.load()
                       << ", sweep passes " << passes.load() << ", dialog updates "
                       << c[FlowTableCounter::dialog_updates] << ", media updates "
                       << c[FlowTableCounter::media_updates]);
    REQUIRE(violations.load() == 0);
    CHECK(ops.load() > 1000);
    CHECK(dialog_hits.load() > 1000);
    CHECK(media_hits.load() > 1000);
    CHECK(c[FlowTableCounter::dialog_updates] > 100);
    CHECK(c[FlowTableCounter::media_updates] > 100);
    CHECK(c[FlowTableCounter::media_removed_moved] > 0);
    CHECK(c[FlowTableCounter::dialog_removed_ended] > 0);
    CHECK(c[FlowTableCounter::dialog_removed_explicit] > 0);
    CHECK(passes.load() > 0);
    // Fixture's destructor validates the tables against the pools.
}
