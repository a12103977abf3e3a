// The control plane's handover pipeline (controlplane/handover_pipeline.hpp) with real parts:
// a SQLite store, on-disk spools, delivery over loopback TCP, and receivers that decode with
// the reference LEMF's independent decoders (tools/lemf). Hits are built as the dataplane
// makes them: a HitMeta and the frame.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <set>
#include <thread>

#include "controlplane/events.hpp"
#include "controlplane/handover_pipeline.hpp"
#include "tests/unit/handover_test_support.hpp"
#include "tests/unit/temp_dir.hpp"
#include "tools/lemf/lemf.hpp"

namespace {

using namespace tapwire;
using namespace tapwire::controlplane;
using handover::IriType;
using tapwire::test::Bytes;
using tapwire::test::TempDir;
using tapwire::test::TinyDisk;
namespace ht = tapwire::test;

constexpr std::uint32_t kWarrantA = 7;
constexpr std::uint32_t kWarrantB = 8;
const IpAddress kAlice = IpAddress::v4(0xC000020A);  // 192.0.2.10
const IpAddress kBob = IpAddress::v4(0xC6336414);    // 198.51.100.20

// ---- a LEMF: accepts connections, decodes every record with the reference decoder -------

class Lemf {
  public:
    explicit Lemf(lemf::Format format, std::uint16_t port = 0) : format_(format) {
        fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int one = 1;
        ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a.sin_port = htons(port);
        REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
        REQUIRE(::listen(fd_, 8) == 0);
        socklen_t len = sizeof a;
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
        port_ = ntohs(a.sin_port);
        thread_ = std::thread([this] { run(); });
    }
    ~Lemf() {
        stop_ = true;
        thread_.join();
        ::close(fd_);
    }
    std::uint16_t port() const { return port_; }

    std::vector<lemf::Record> records() {
        std::lock_guard lock(mutex_);
        return records_;
    }
    std::uint64_t errors() {
        std::lock_guard lock(mutex_);
        return errors_;
    }
    /// Waits until `n` IRI or CC records (keep-alives aside) have arrived.
    bool wait_records(std::size_t n, double seconds = 15) {
        const auto deadline =
            std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
        while (std::chrono::steady_clock::now() < deadline) {
            if (content_records() >= n) return true;
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        return false;
    }
    std::size_t content_records() {
        std::lock_guard lock(mutex_);
        std::size_t n = 0;
        for (const auto& r : records_)
            n += r.kind == lemf::Kind::Iri || r.kind == lemf::Kind::Cc;
        return n;
    }

  private:
    void run() {
        while (!stop_) {
            pollfd p{fd_, POLLIN, 0};
            if (::poll(&p, 1, 20) <= 0) continue;
            const int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
            if (c < 0) continue;
            lemf::StreamDecoder decoder(format_);
            std::vector<lemf::Record> out;
            std::uint8_t buf[65536];
            while (!stop_) {
                pollfd q{c, POLLIN, 0};
                if (::poll(&q, 1, 20) <= 0) continue;
                const ssize_t n = ::read(c, buf, sizeof buf);
                if (n <= 0) break;
                out.clear();
                decoder.feed({buf, std::size_t(n)}, out);
                std::lock_guard lock(mutex_);
                errors_ = decoder.errors();
                for (auto& r : out) {
                    if (!r.reply.empty()) [[maybe_unused]]
                        auto w = ::write(c, r.reply.data(), r.reply.size());
                    records_.push_back(std::move(r));
                }
            }
            ::close(c);
        }
    }

    lemf::Format format_;
    int fd_ = -1;
    std::uint16_t port_ = 0;
    std::thread thread_;
    std::atomic<bool> stop_{false};
    std::mutex mutex_;
    std::vector<lemf::Record> records_;
    std::uint64_t errors_ = 0;
};

// ---- hits as the dataplane makes them ------------------------------------------------------

struct Hit {
    shm::HitMeta meta{};
    Bytes frame;
};

Hit make_hit(shm::HitKind kind, std::uint64_t correlation, bool from_alice, ByteSpan l4_payload,
             std::uint16_t sport, std::uint16_t dport, std::uint8_t flags = 0,
             std::int64_t ts = 1'700'000'000'000'000'000) {
    Hit h;
    const IpAddress& src = from_alice ? kAlice : kBob;
    const IpAddress& dst = from_alice ? kBob : kAlice;
    h.frame = ht::ethernet_frame(ht::udp_packet(src, dst, sport, dport, l4_payload));
    h.meta.timestamp_ns = std::uint64_t(ts);
    h.meta.correlation_id = correlation;
    h.meta.original_length = std::uint32_t(h.frame.size());
    h.meta.kind = kind;
    h.meta.direction = from_alice ? shm::HitDirection::FromTarget : shm::HitDirection::ToTarget;
    h.meta.flags = flags;
    h.meta.payload_offset = 14 + 20 + 8;
    h.meta.payload_length = std::uint16_t(l4_payload.size());
    std::memcpy(h.meta.src_ip, src.bytes.data(), 16);
    std::memcpy(h.meta.dst_ip, dst.bytes.data(), 16);
    h.meta.src_port = sport;
    h.meta.dst_port = dport;
    h.meta.ip_family = 4;
    h.meta.l4_proto = 17;
    return h;
}

std::string sip(std::string start_line, std::string cseq, std::string extra = {}) {
    return start_line +
           "\r\n"
           "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-1\r\n"
           "From: <sip:+4930111@example.net>;tag=alice1\r\n"
           "To: <sip:+4930222@example.net>" +
           (start_line.starts_with("INVITE") ? "" : ";tag=bob1") +
           "\r\n"
           "Call-ID: call-1@192.0.2.10\r\n"
           "CSeq: " +
           cseq + "\r\n" + extra + "Content-Length: 0\r\n\r\n";
}

Hit sip_hit(const std::string& text, bool from_alice, std::uint8_t flags = 0,
            std::uint64_t correlation = 42) {
    return make_hit(shm::HitKind::Sip, correlation, from_alice, ht::to_bytes(text), 5060, 5060,
                    flags);
}

Hit rtp_hit(std::uint16_t seq, bool from_alice, std::uint64_t correlation = 42) {
    const Bytes rtp = ht::rtp_payload(0, seq, seq * 160u, from_alice ? 0x1111 : 0x2222, 160);
    return make_hit(shm::HitKind::Rtp, correlation, from_alice, rtp, from_alice ? 20000 : 30000,
                    from_alice ? 30000 : 20000);
}

// INVITE, 180, 200, ACK, BYE, 200 to BYE: the call's six messages.
std::vector<Hit> call_messages(std::uint64_t correlation = 42) {
    return {sip_hit(sip("INVITE sip:+4930222@example.net SIP/2.0", "1 INVITE"), true,
                    shm::kHitFirstOfCall, correlation),
            sip_hit(sip("SIP/2.0 180 Ringing", "1 INVITE"), false, 0, correlation),
            sip_hit(sip("SIP/2.0 200 OK", "1 INVITE"), false, 0, correlation),
            sip_hit(sip("ACK sip:+4930222@example.net SIP/2.0", "1 ACK"), true, 0, correlation),
            sip_hit(sip("BYE sip:+4930222@example.net SIP/2.0", "2 BYE"), true, shm::kHitCallEnding,
                    correlation),
            sip_hit(sip("SIP/2.0 200 OK", "2 BYE"), false, 0, correlation)};
}

// ---- the appliance side ----------------------------------------------------------------------

v1::Destination destination(const std::string& id, v1::HandoverFormat format, std::uint16_t port) {
    v1::Destination d;
    d.set_id(id);
    d.set_address("127.0.0.1");
    d.set_port(port);
    d.set_format(format);
    return d;
}

StoredWarrant warrant(std::uint32_t id, const std::string& liid, const std::string& xid,
                      std::vector<std::string> destinations) {
    StoredWarrant w;
    w.internal_id = id;
    w.status.set_state(v1::WARRANT_STATE_ACTIVE);
    v1::Warrant& wr = *w.status.mutable_warrant();
    wr.set_xid(xid);
    wr.set_liid(liid);
    wr.set_delivery_type(v1::DELIVERY_TYPE_IRI_AND_CC);
    wr.mutable_legal()->set_jurisdiction("DE");
    for (auto& d : destinations)
        wr.add_destination_ids(d);
    return w;
}

struct Appliance {
    TempDir dir{"tapwire-pipeline"};
    std::unique_ptr<Store> store;
    EventHub events;
    HandoverPipelineOptions options;

    Appliance() {
        std::string error;
        store = Store::open(dir.file("state.db"), error);
        REQUIRE(store);
        options.spool_root = dir.file("spool");
        options.network_element_identifier = "poi-1";
        options.delivery.backoff_initial = std::chrono::milliseconds(20);
        options.delivery.backoff_max = std::chrono::milliseconds(100);
        options.delivery.poll_interval = std::chrono::milliseconds(2);
    }
    void add_destination(const v1::Destination& d) {
        REQUIRE(store->create_destination(d, 0).ok());
    }
    std::unique_ptr<HandoverPipeline> open() {
        std::string error;
        auto p = HandoverPipeline::open(options, *store, &events, error);
        INFO(error);
        REQUIRE(p);
        return p;
    }
};

void feed(HandoverPipeline& p, const Hit& h, std::span<const std::uint32_t> warrants) {
    p.deliver(h.meta, h.frame, warrants);
    p.end_burst();
}

// Records of one LIID and kind in arrival order, without the repeats a reconnect may send
// (the same CIN and sequence number again: possible duplicates, which the LEMF discards).
std::vector<lemf::Record> of(const std::vector<lemf::Record>& all, const std::string& liid,
                             lemf::Kind kind) {
    std::vector<lemf::Record> out;
    std::set<std::pair<std::uint64_t, std::uint64_t>> seen;
    for (const auto& r : all)
        if (r.liid == liid && r.kind == kind && seen.insert({r.cin, r.sequence}).second)
            out.push_back(r);
    return out;
}

void require_contiguous(const std::vector<lemf::Record>& records) {
    for (std::size_t i = 0; i < records.size(); ++i) {
        INFO("record " << i);
        REQUIRE(records[i].has_sequence);
        REQUIRE(records[i].sequence == i);
    }
}

// One ETSI LEMF, its destination, the pipeline, and warrant A delivering to it.
struct OneEtsiWarrant {
    Appliance app;
    Lemf etsi{lemf::Format::Etsi102232};
    std::unique_ptr<HandoverPipeline> pipeline;
    OneEtsiWarrant() {
        app.add_destination(destination("etsi", v1::HANDOVER_FORMAT_ETSI_102232, etsi.port()));
        pipeline = app.open();
        pipeline->warrant_changed(
            warrant(kWarrantA, "LI-A", "0b0e3f5c-1111-4a6e-9d6a-2f1f0e0a0001", {"etsi"}));
    }
};

// A LEMF per format; warrant A delivers to all three, warrant B to the ETSI one.
struct ThreeFormats {
    static constexpr const char* kXidA = "0b0e3f5c-1111-4a6e-9d6a-2f1f0e0a0001";
    struct Lemfs {
        Lemf etsi{lemf::Format::Etsi102232}, x2x3{lemf::Format::X2X3}, calea{lemf::Format::Calea};
    };
    Appliance app;
    Lemfs lemfs;
    std::unique_ptr<HandoverPipeline> pipeline;
    explicit ThreeFormats(
        std::chrono::seconds call_idle_timeout = HandoverPipelineOptions{}.call_idle_timeout) {
        app.options.call_idle_timeout = call_idle_timeout;
        app.add_destination(
            destination("etsi", v1::HANDOVER_FORMAT_ETSI_102232, lemfs.etsi.port()));
        app.add_destination(destination("x2x3", v1::HANDOVER_FORMAT_ETSI_X2X3, lemfs.x2x3.port()));
        app.add_destination(
            destination("us/calea", v1::HANDOVER_FORMAT_ATIS_CALEA, lemfs.calea.port()));
        pipeline = app.open();
        pipeline->warrant_changed(warrant(kWarrantA, "LI-A", kXidA, {"etsi", "x2x3", "us/calea"}));
        pipeline->warrant_changed(
            warrant(kWarrantB, "LI-B", "0b0e3f5c-2222-4a6e-9d6a-2f1f0e0a0002", {"etsi"}));
    }
};

}  // namespace

TEST_CASE("IRI types follow the call", "[handover_pipeline]") {
    auto type = [](IriState& s, const std::string& text, bool ending = false) {
        return classify_iri(text, ending, s);
    };
    SECTION("a call: BEGIN, CONTINUE..., END at the BYE's final response, REPORT after") {
        IriState s;
        CHECK(type(s, sip("INVITE sip:b@x SIP/2.0", "1 INVITE")) == IriType::Begin);
        CHECK(type(s, sip("SIP/2.0 180 Ringing", "1 INVITE")) == IriType::Continue);
        CHECK(type(s, sip("SIP/2.0 200 OK", "1 INVITE")) == IriType::Continue);
        CHECK(type(s, sip("ACK sip:b@x SIP/2.0", "1 ACK")) == IriType::Continue);
        CHECK(type(s, sip("BYE sip:b@x SIP/2.0", "2 BYE"), true) == IriType::Continue);
        CHECK(type(s, sip("SIP/2.0 100 Trying", "2 BYE")) == IriType::Continue);
        CHECK(type(s, sip("SIP/2.0 200 OK", "2 BYE")) == IriType::End);
        CHECK(type(s, sip("SIP/2.0 200 OK", "2 BYE")) == IriType::Report);  // retransmission
    }
    SECTION("a failed call ends at the final failure") {
        IriState s;
        CHECK(type(s, sip("INVITE sip:b@x SIP/2.0", "1 INVITE")) == IriType::Begin);
        CHECK(type(s, sip("SIP/2.0 486 Busy Here", "1 INVITE"), true) == IriType::End);
        CHECK(type(s, sip("ACK sip:b@x SIP/2.0", "1 ACK")) == IriType::Report);
    }
    SECTION("a cancelled call ends when the CANCEL completes") {
        IriState s;
        CHECK(type(s, sip("INVITE sip:b@x SIP/2.0", "1 INVITE")) == IriType::Begin);
        CHECK(type(s, sip("CANCEL sip:b@x SIP/2.0", "1 CANCEL"), true) == IriType::Continue);
        CHECK(type(s, sip("SIP/2.0 200 OK", "1 CANCEL")) == IriType::End);
    }
    SECTION("a warrant that joins mid-call begins at its first message") {
        IriState s;
        CHECK(type(s, sip("SIP/2.0 200 OK", "1 INVITE")) == IriType::Begin);
        CHECK(type(s, sip("BYE sip:b@x SIP/2.0", "2 BYE")) == IriType::Continue);
    }
    SECTION("MESSAGE: its transaction begins and ends") {
        IriState s;
        CHECK(type(s, sip("MESSAGE sip:b@x SIP/2.0", "1 MESSAGE")) == IriType::Begin);
        CHECK(type(s, sip("SIP/2.0 202 Accepted", "1 MESSAGE")) == IriType::End);
    }
    SECTION("REGISTER, OPTIONS, SUBSCRIBE, NOTIFY are reports") {
        for (const char* m : {"REGISTER", "OPTIONS", "SUBSCRIBE", "NOTIFY", "PUBLISH"}) {
            IriState s;
            INFO(m);
            CHECK(type(s, sip(std::string(m) + " sip:b@x SIP/2.0", std::string("1 ") + m)) ==
                  IriType::Report);
            CHECK_FALSE(s.begun);
        }
    }
}

TEST_CASE("A call reaches three LEMFs, one per format, with one CIN and contiguous sequences",
          "[handover_pipeline]") {
    ThreeFormats f;
    auto& [etsi, x2x3, calea] = f.lemfs;
    auto& p = f.pipeline;
    const std::string xid_a = ThreeFormats::kXidA;

    const std::uint32_t both[] = {kWarrantA, kWarrantB};
    auto messages = call_messages();
    // INVITE .. ACK, then media both ways, then BYE and its 200.
    for (int i = 0; i < 4; ++i)
        feed(*p, messages[i], both);
    for (std::uint16_t s = 0; s < 10; ++s) {
        feed(*p, rtp_hit(s, true), both);
        feed(*p, rtp_hit(s, false), both);
    }
    feed(*p, messages[4], both);
    feed(*p, messages[5], both);

    // ETSI: both LIIDs, 6 IRI + 20 CC each.
    REQUIRE(etsi.wait_records(2 * 26));
    const auto all = etsi.records();
    CHECK(etsi.errors() == 0);
    std::uint64_t cin = 0;
    for (const std::string liid : {"LI-A", "LI-B"}) {
        INFO(liid);
        const auto iri = of(all, liid, lemf::Kind::Iri);
        const auto cc = of(all, liid, lemf::Kind::Cc);
        REQUIRE(iri.size() == 6);
        REQUIRE(cc.size() == 20);
        require_contiguous(iri);
        require_contiguous(cc);
        const std::vector<std::string> types = {"begin",    "continue", "continue",
                                                "continue", "continue", "end"};
        for (std::size_t i = 0; i < 6; ++i)
            CHECK(iri[i].iri_type == types[i]);
        if (cin == 0) cin = iri[0].cin;
        for (const auto& r : iri)
            CHECK(r.cin == cin);  // one CIN per call, shared by both warrants
        for (const auto& r : cc)
            CHECK(r.cin == cin);
        CHECK(cc[0].direction == lemf::Direction::FromTarget);
        CHECK(cc[1].direction == lemf::Direction::ToTarget);
    }
    CHECK(cin != 0);
    CHECK(cin <= 0xFFFFFFFFu);

    // X2/X3: the warrant's XID identifies the stream; same CIN, same numbering.
    REQUIRE(x2x3.wait_records(26));
    const auto x = x2x3.records();
    CHECK(x2x3.errors() == 0);
    const auto xiri = of(x, xid_a, lemf::Kind::Iri);
    const auto xcc = of(x, xid_a, lemf::Kind::Cc);
    REQUIRE(xiri.size() == 6);
    REQUIRE(xcc.size() == 20);
    require_contiguous(xiri);
    require_contiguous(xcc);
    CHECK(xiri[0].cin == cin);
    CHECK(xiri[0].direction == lemf::Direction::FromTarget);  // the INVITE came from the target

    // CALEA: the call-data channel maps the call (Origination: the target called), and the
    // content arrives behind the call's CCCID.
    REQUIRE(calea.wait_records(6 + 20));
    const auto c = calea.records();
    CHECK(calea.errors() == 0);
    std::vector<std::string> cdc;
    std::size_t calea_cc = 0;
    for (const auto& r : c) {
        if (r.kind == lemf::Kind::Iri) cdc.push_back(r.cdc_message);
        if (r.kind == lemf::Kind::Cc) ++calea_cc;
    }
    CHECK(calea_cc == 20);
    // The content's CCC was opened before its first packet: the LEMF can tie it to the call.
    const auto first_cc = std::find_if(
        c.begin(), c.end(), [](const lemf::Record& r) { return r.kind == lemf::Kind::Cc; });
    const auto first_open = std::find_if(c.begin(), c.end(), [](const lemf::Record& r) {
        return r.kind == lemf::Kind::Iri && r.cdc_message == "ccopen";
    });
    CHECK(first_open < first_cc);
    for (const auto& r : c)
        CHECK(r.liid.rfind("cccid-", 0) != 0);
    REQUIRE_FALSE(cdc.empty());
    CHECK(cdc.front() == "origination");
    CHECK(std::find(cdc.begin(), cdc.end(), "answer") != cdc.end());
    CHECK(cdc.back() == "release");

    CHECK(p->counter(HandoverCounter::calls) == 1);
    // A: 3 destinations, B: 1; plus the CCOpen CALEA sent before the first content (these
    // messages carry no SDP, so no CDC message had opened the CCC).
    CHECK(p->counter(HandoverCounter::iri_records) == 6 * 4 + 1);
    CHECK(p->counter(HandoverCounter::cc_records) == 20 * 4);
    for (const auto& [name, v] : p->drop_totals()) {
        INFO(name);
        CHECK(v == 0);
    }

    v1::ApplianceStatus status;
    p->fill_status(status);
    REQUIRE(status.destinations_size() == 3);
    for (const auto& d : status.destinations()) {
        INFO(d.id());
        CHECK(d.up());
        CHECK(d.records_spooled() > 0);
    }
}

TEST_CASE("A call that goes idle is ended by an IRI END without a message, in the window only",
          "[handover_pipeline]") {
    ThreeFormats f(std::chrono::seconds(60));
    auto& [etsi, x2x3, calea] = f.lemfs;
    auto& p = f.pipeline;
    const std::string xid_a = ThreeFormats::kXidA;
    const std::uint32_t both[] = {kWarrantA, kWarrantB};
    // Answered, media flowing, then nothing more: the BYE was never seen.
    const auto messages = call_messages();
    for (int i = 0; i < 3; ++i)
        feed(*p, messages[i], both);
    feed(*p, rtp_hit(0, true), both);

    constexpr std::int64_t t0 = 1'700'000'000'000'000'000, s = 1'000'000'000;
    // B's window closed before the call went idle: B gets nothing more.
    const auto in_window = [](std::uint32_t w, std::int64_t) { return w == kWarrantA; };
    p->housekeeping(t0 + 59 * s, in_window);
    p->call_alive(42, t0 + 50 * s);  // a packet of the call that gave no record
    p->housekeeping(t0 + 109 * s, in_window);
    CHECK(p->counter(HandoverCounter::calls_timed_out) == 0);
    p->housekeeping(t0 + 111 * s, in_window);
    CHECK(p->counter(HandoverCounter::calls_timed_out) == 1);
    p->housekeeping(t0 + 300 * s, in_window);  // forgotten: nothing more
    CHECK(p->counter(HandoverCounter::calls_timed_out) == 1);

    REQUIRE(etsi.wait_records(4 + 1 + 3 + 1));
    const auto all = etsi.records();
    CHECK(etsi.errors() == 0);
    const auto a = of(all, "LI-A", lemf::Kind::Iri);
    REQUIRE(a.size() == 4);
    require_contiguous(a);
    CHECK(a[3].iri_type == "end");
    CHECK(a[3].cin == a[0].cin);
    CHECK(a[3].payload.empty());
    CHECK(a[3].timestamp_ns == t0 + 111 * s);
    CHECK(a[3].source == "198.51.100.20");  // the call's last SIP message: Bob's 200 OK
    CHECK(a[3].destination == "192.0.2.10");
    const auto b = of(all, "LI-B", lemf::Kind::Iri);
    REQUIRE(b.size() == 3);
    CHECK(b.back().iri_type == "continue");

    // X2 carries raw signalling only: the three messages and the packet, no gap.
    REQUIRE(x2x3.wait_records(3 + 1));
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    CHECK(of(x2x3.records(), xid_a, lemf::Kind::Iri).size() == 3);

    // CALEA: the content's CCC is closed and the call released.
    REQUIRE(calea.wait_records(3));
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    std::vector<std::string> cdc;
    while (std::chrono::steady_clock::now() < deadline) {
        cdc.clear();
        for (const auto& r : calea.records())
            if (r.kind == lemf::Kind::Iri) cdc.push_back(r.cdc_message);
        if (!cdc.empty() && cdc.back() == "release") break;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    REQUIRE(cdc.size() >= 2);
    CHECK(cdc[cdc.size() - 2] == "ccclose");
    CHECK(cdc.back() == "release");
    CHECK(calea.errors() == 0);
    for (const auto& [name, v] : p->drop_totals()) {
        INFO(name);
        CHECK(v == 0);
    }
}

TEST_CASE("A new INVITE on the Call-ID of an ended call is a new communication",
          "[handover_pipeline]") {
    OneEtsiWarrant f;
    auto& p = f.pipeline;
    auto& etsi = f.etsi;
    const std::uint32_t a[] = {kWarrantA};
    // Redirected: 302, ACK, then the retry with the same Call-ID (RFC 3261 8.1.3.4).
    feed(*p, sip_hit(sip("INVITE sip:+4930222@example.net SIP/2.0", "1 INVITE"), true), a);
    feed(*p, sip_hit(sip("SIP/2.0 302 Moved Temporarily", "1 INVITE"), false, shm::kHitCallEnding),
         a);
    feed(*p, sip_hit(sip("ACK sip:+4930222@example.net SIP/2.0", "1 ACK"), true), a);
    feed(*p, sip_hit(sip("INVITE sip:+4930333@example.net SIP/2.0", "2 INVITE"), true), a);
    feed(*p, sip_hit(sip("SIP/2.0 180 Ringing", "2 INVITE"), false), a);
    REQUIRE(etsi.wait_records(5));
    const auto iri = of(etsi.records(), "LI-A", lemf::Kind::Iri);
    REQUIRE(iri.size() == 5);
    CHECK(iri[0].iri_type == "begin");
    CHECK(iri[1].iri_type == "end");
    CHECK(iri[2].iri_type == "report");  // the ACK of the ended attempt
    CHECK(iri[2].cin == iri[0].cin);
    CHECK(iri[3].iri_type == "begin");
    CHECK(iri[3].cin != iri[0].cin);
    CHECK(iri[3].sequence == 0);
    CHECK(iri[4].iri_type == "continue");
    CHECK(p->counter(HandoverCounter::calls) == 2);
}

TEST_CASE("A clean restart resumes the call: same CIN, sequences continue; a crash does not",
          "[handover_pipeline]") {
    Appliance app;
    Lemf etsi(lemf::Format::Etsi102232);
    app.add_destination(destination("etsi", v1::HANDOVER_FORMAT_ETSI_102232, etsi.port()));
    const std::uint32_t a[] = {kWarrantA};
    const auto w = warrant(kWarrantA, "LI-A", "0b0e3f5c-1111-4a6e-9d6a-2f1f0e0a0001", {"etsi"});
    auto messages = call_messages();
    {
        auto p = app.open();
        p->warrant_changed(w);
        feed(*p, messages[0], a);
        feed(*p, messages[1], a);
        feed(*p, rtp_hit(0, true), a);
        REQUIRE(etsi.wait_records(3));
        p->save_calls(1234);
        p->stop();
    }
    const bool same_dataplane = GENERATE(true, false);
    INFO((same_dataplane ? "same dataplane" : "the dataplane restarted"));
    auto p = app.open();
    p->warrant_changed(w);
    p->restore_calls(same_dataplane ? 1234 : 999);
    CHECK(p->counter(HandoverCounter::calls_resumed) == (same_dataplane ? 1u : 0u));
    for (int i = 2; i < 6; ++i)
        feed(*p, messages[i], a);
    feed(*p, rtp_hit(1, true), a);
    REQUIRE(etsi.wait_records(8));
    const auto all = etsi.records();
    const auto iri = of(all, "LI-A", lemf::Kind::Iri);
    REQUIRE(iri.size() == 6);
    if (same_dataplane) {
        require_contiguous(iri);
        require_contiguous(of(all, "LI-A", lemf::Kind::Cc));
        for (const auto& r : iri)
            CHECK(r.cin == iri[0].cin);
        CHECK(iri[0].iri_type == "begin");
        CHECK(iri[5].iri_type == "end");
    } else {
        // A new dataplane's correlation ids are new calls: a new CIN from 0, never a reuse.
        CHECK(iri[2].cin != iri[0].cin);
        CHECK(iri[2].sequence == 0);
        CHECK(iri[2].iri_type == "begin");
    }
    // The saved table is consumed: a second restore finds nothing.
    p->restore_calls(1234);
    CHECK(p->counter(HandoverCounter::calls_resumed) == (same_dataplane ? 1u : 0u));
}

TEST_CASE("A call resumed after a clean restart that goes idle ends with its last addresses",
          "[handover_pipeline]") {
    Appliance app;
    app.options.call_idle_timeout = std::chrono::seconds(60);
    Lemf etsi(lemf::Format::Etsi102232);
    app.add_destination(destination("etsi", v1::HANDOVER_FORMAT_ETSI_102232, etsi.port()));
    const std::uint32_t a[] = {kWarrantA};
    const auto w = warrant(kWarrantA, "LI-A", "0b0e3f5c-1111-4a6e-9d6a-2f1f0e0a0001", {"etsi"});
    const auto messages = call_messages();
    {
        auto p = app.open();
        p->warrant_changed(w);
        feed(*p, messages[0], a);
        feed(*p, messages[1], a);  // 180 from Bob: the call's last SIP message
        REQUIRE(etsi.wait_records(2));
        p->save_calls(1234);
        p->stop();
    }
    auto p = app.open();
    p->warrant_changed(w);
    p->restore_calls(1234);
    constexpr std::int64_t t0 = 1'700'000'000'000'000'000, s = 1'000'000'000;
    p->housekeeping(t0 + 61 * s, [](std::uint32_t, std::int64_t) { return true; });
    CHECK(p->counter(HandoverCounter::calls_timed_out) == 1);
    REQUIRE(etsi.wait_records(3));
    const auto iri = of(etsi.records(), "LI-A", lemf::Kind::Iri);
    REQUIRE(iri.size() == 3);
    require_contiguous(iri);
    CHECK(iri[2].iri_type == "end");
    CHECK(iri[2].cin == iri[0].cin);
    CHECK(iri[2].source == "198.51.100.20");
    CHECK(iri[2].destination == "192.0.2.10");
}

TEST_CASE(
    "A full spool or a full disk refuses, counts and alarms; the LEMF sees exactly that "
    "many missing",
    "[handover_pipeline]") {
    Appliance app;
    app.options.spool.segment_bytes = 256u << 10;  // room for one largest record (128 KiB)
    const bool disk = GENERATE(false, true);
    std::unique_ptr<TinyDisk> tiny;
    if (disk) {
        // The limit is far above the disk: the 1 MiB filesystem fills first (ENOSPC).
        app.options.spool.max_total_bytes = 64u << 20;
        tiny = std::make_unique<TinyDisk>(app.options.spool_root + "/etsi");
        if (!tiny->mounted) {
            WARN("cannot mount a tmpfs (not root?): the full-disk case is skipped");
            return;
        }
    } else {
        app.options.spool.max_total_bytes = 512u << 10;
    }
    INFO((disk ? "full disk" : "spool limit"));
    // A port with no LEMF yet: bind one to learn a free port, then close it.
    std::uint16_t port = 0;
    { port = Lemf(lemf::Format::Etsi102232).port(); }
    app.add_destination(destination("etsi", v1::HANDOVER_FORMAT_ETSI_102232, port));
    auto subscription = app.events.subscribe();
    auto p = app.open();
    p->warrant_changed(
        warrant(kWarrantA, "LI-A", "0b0e3f5c-1111-4a6e-9d6a-2f1f0e0a0001", {"etsi"}));
    const std::uint32_t a[] = {kWarrantA};
    std::uint16_t seq = 0;
    while (p->counter(HandoverCounter::drop_spool_full) < 50 && seq < 20000)
        feed(*p, rtp_hit(seq++, true), a);
    const std::uint64_t refused = p->counter(HandoverCounter::drop_spool_full);
    REQUIRE(refused >= 50);
    REQUIRE(p->drop_totals().at("drop_spool_full") == refused);

    bool alarm = false, down = false;
    v1::Event e;
    while (subscription.next(e, std::chrono::milliseconds(50))) {
        alarm = alarm || (e.kind() == v1::EVENT_ALARM && e.destination_id() == "etsi" &&
                          e.detail().find("spool refuses") != std::string::npos);
        down = down || e.kind() == v1::EVENT_DESTINATION_DOWN;
    }
    CHECK(alarm);
    CHECK(down);

    // The LEMF comes up: the spool drains, space comes back, records are accepted again.
    Lemf etsi(lemf::Format::Etsi102232, port);
    REQUIRE(etsi.wait_records(seq - refused, 30));
    const auto drained = [&] {
        v1::ApplianceStatus status;
        p->fill_status(status);
        return status.destinations(0).records_pending() == 0 &&
               status.destinations(0).spool_bytes() <= app.options.spool.segment_bytes;
    };
    for (int i = 0; i < 3000 && !drained(); ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    REQUIRE(drained());
    for (int i = 0; i < 10; ++i)
        feed(*p, rtp_hit(seq++, true), a);
    CHECK(p->counter(HandoverCounter::drop_spool_full) == refused);
    const std::size_t delivered = seq - refused;
    REQUIRE(etsi.wait_records(delivered, 30));
    const auto cc = of(etsi.records(), "LI-A", lemf::Kind::Cc);
    CHECK(cc.size() == delivered);
    // Sequence numbers were consumed by the refused records: the LEMF sees exactly that many
    // missing, at the point where the spool was full.
    std::uint64_t missing = 0;
    for (std::size_t i = 1; i < cc.size(); ++i)
        missing += cc[i].sequence - cc[i - 1].sequence - 1;
    CHECK(missing == refused);
    CHECK(p->counter(HandoverCounter::drop_spool_full) == refused);
}

TEST_CASE("Modifying a destination moves delivery to the new address without loss",
          "[handover_pipeline]") {
    Appliance app;
    Lemf first(lemf::Format::Etsi102232), second(lemf::Format::Etsi102232);
    app.add_destination(destination("etsi", v1::HANDOVER_FORMAT_ETSI_102232, first.port()));
    auto p = app.open();
    p->warrant_changed(
        warrant(kWarrantA, "LI-A", "0b0e3f5c-1111-4a6e-9d6a-2f1f0e0a0001", {"etsi"}));
    const std::uint32_t a[] = {kWarrantA};
    for (std::uint16_t s = 0; s < 5; ++s)
        feed(*p, rtp_hit(s, true), a);
    REQUIRE(first.wait_records(5));
    p->destination_changed(destination("etsi", v1::HANDOVER_FORMAT_ETSI_102232, second.port()));
    for (std::uint16_t s = 5; s < 10; ++s)
        feed(*p, rtp_hit(s, true), a);
    REQUIRE(second.wait_records(5));
    const auto cc = of(second.records(), "LI-A", lemf::Kind::Cc);
    REQUIRE(cc.size() >= 5);
    CHECK(cc.back().sequence == 9);
    CHECK(first.content_records() + cc.size() >= 10);
}

TEST_CASE("Hits that cannot become records are counted, never a crash", "[handover_pipeline]") {
    OneEtsiWarrant f;
    auto& p = f.pipeline;
    const std::uint32_t a[] = {kWarrantA};
    const std::uint32_t unknown[] = {99};

    Hit junk = rtp_hit(0, true);
    junk.frame.resize(10);  // not even an Ethernet header
    feed(*p, junk, a);
    CHECK(p->counter(HandoverCounter::drop_malformed_hit) == 1);

    Hit sip_out_of_bounds = sip_hit(sip("INVITE sip:b@x SIP/2.0", "1 INVITE"), true);
    sip_out_of_bounds.meta.payload_offset = 60000;
    feed(*p, sip_out_of_bounds, a);
    CHECK(p->counter(HandoverCounter::drop_malformed_hit) == 2);

    feed(*p, rtp_hit(1, true), unknown);
    CHECK(p->counter(HandoverCounter::drop_destination_unavailable) == 1);

    // A warrant whose destination was removed.
    p->destination_removed("etsi");
    feed(*p, rtp_hit(2, true), a);
    CHECK(p->counter(HandoverCounter::drop_destination_unavailable) == 2);
    CHECK(p->counter(HandoverCounter::cc_records) == 0);
}
