// The event feed (EventHub) and the Appliance and Audit services over real gRPC: plaintext
// for the feed's mechanics, mutual TLS with the test PKI (make_test_pki.sh) for the roles
// and the audit export.
#include <sys/wait.h>

#include <grpc/grpc_security_constants.h>
#include <grpcpp/grpcpp.h>
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "controlplane/appliance_service.hpp"
#include "controlplane/audit_log.hpp"
#include "controlplane/events.hpp"
#include "controlplane/service.hpp"
#include "controlplane/store.hpp"
#include "tapwire/v1/controlplane.grpc.pb.h"
#include "temp_dir.hpp"

namespace {

using namespace tapwire::controlplane;
namespace v1 = tapwire::v1;
using tapwire::test::TempDir;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr std::int64_t kSecond = 1'000'000'000;

v1::Event numbered(std::uint64_t emitter, std::uint64_t i) {
    v1::Event e;
    e.set_kind(v1::EVENT_DROPS);
    (*e.mutable_counters())["emitter"] = emitter;
    (*e.mutable_counters())["i"] = i;
    return e;
}

std::uint64_t counter(const v1::Event& e, const std::string& name) {
    const auto it = e.counters().find(name);
    return it == e.counters().end() ? UINT64_MAX : it->second;
}

std::string read_all(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

void write_all(const std::string& path, const std::string& data) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << data;
    REQUIRE(out.good());
}

// What one consumer thread saw (assertions stay on the test's thread: Catch2 v2 is not
// thread-safe).
struct Seen {
    std::uint64_t delivered = 0;
    std::uint64_t lost = 0;  // as the alarms said
    std::uint64_t alarms = 0;
    bool sequence_increasing = true;
    bool emitter_order_kept = true;
    bool alarm_consistent = true;  // lost == last - first + 1, and the gap matches
};

// Reads until `total` events are accounted for (delivered or reported lost).
void consume(EventHub::Subscription& sub, std::uint64_t total, Seen& seen) {
    std::uint64_t last_seq = 0;
    std::map<std::uint64_t, std::uint64_t> next_i;  // emitter -> lowest i still expected
    v1::Event e;
    while (seen.delivered + seen.lost < total && sub.next(e, 5s)) {
        if (e.sequence() <= last_seq) seen.sequence_increasing = false;
        if (e.kind() == v1::EVENT_ALARM) {
            const std::uint64_t lost = counter(e, "lost");
            const std::uint64_t first = counter(e, "first_lost_sequence");
            const std::uint64_t last = counter(e, "last_lost_sequence");
            if (lost != last - first + 1 || first != last_seq + 1 || e.sequence() != last) {
                seen.alarm_consistent = false;
            }
            seen.lost += lost;
            ++seen.alarms;
        } else {
            const std::uint64_t em = counter(e, "emitter"), i = counter(e, "i");
            if (i < next_i[em]) seen.emitter_order_kept = false;
            next_i[em] = i + 1;
            ++seen.delivered;
        }
        last_seq = e.sequence();
    }
}

StoredWarrant stored_warrant(const std::string& xid, const std::string& liid) {
    StoredWarrant w;
    w.status.mutable_warrant()->set_xid(xid);
    w.status.mutable_warrant()->set_liid(liid);
    auto* t = w.status.mutable_warrant()->add_targets();
    t->set_type(v1::IDENTITY_TYPE_E164);
    t->set_value("+4930555012345");
    t = w.status.mutable_warrant()->add_targets();
    t->set_type(v1::IDENTITY_TYPE_SIP_URI);
    t->set_value("sip:alice.target@example.test");
    w.status.set_state(v1::WARRANT_STATE_ACTIVE);
    w.status.set_version(3);
    w.internal_id = 7;
    return w;
}

}  // namespace

// ---------------------------------------------------------------------------------------
// EventHub

TEST_CASE("emit stamps sequence numbers and the time when unset", "[events]") {
    const Timestamp t0 = Timestamp(std::chrono::seconds(1'700'000'000));
    EventHub hub([t0] { return t0; });
    auto sub = hub.subscribe();
    CHECK(hub.subscriber_count() == 1);
    CHECK(hub.last_sequence() == 0);

    hub.emit(numbered(0, 0));
    v1::Event given = numbered(0, 1);
    given.mutable_time()->set_seconds(42);
    given.set_sequence(999);  // the hub's numbering wins
    hub.emit(given);

    v1::Event e;
    REQUIRE(sub.next(e, 1s));
    CHECK(e.sequence() == 1);
    CHECK(to_timestamp(e.time()) == t0);
    REQUIRE(sub.next(e, 1s));
    CHECK(e.sequence() == 2);
    CHECK(e.time().seconds() == 42);
    CHECK_FALSE(sub.next(e, 10ms));
    CHECK(hub.last_sequence() == 2);
    CHECK(hub.dropped() == 0);

    // Default clock: the system's.
    EventHub system_hub;
    auto s2 = system_hub.subscribe();
    const auto before = std::chrono::system_clock::now();
    system_hub.emit(numbered(0, 0));
    REQUIRE(s2.next(e, 1s));
    CHECK(to_timestamp(e.time()) >= std::chrono::time_point_cast<Duration>(before) - 1s);
    CHECK(to_timestamp(e.time()) <= std::chrono::system_clock::now() + 1s);
}

TEST_CASE("concurrent emitters: every subscriber sees every event in sequence order", "[events]") {
    constexpr std::uint64_t kEmitters = 4, kPerEmitter = 5000, kTotal = kEmitters * kPerEmitter;
    EventHub hub;
    std::vector<EventHub::Subscription> subs;
    for (int i = 0; i < 3; ++i)
        subs.push_back(hub.subscribe());
    std::vector<Seen> seen(subs.size());
    std::vector<std::thread> consumers;
    for (std::size_t i = 0; i < subs.size(); ++i)
        consumers.emplace_back([&, i] { consume(subs[i], kTotal, seen[i]); });
    std::vector<std::thread> emitters;
    for (std::uint64_t em = 0; em < kEmitters; ++em) {
        emitters.emplace_back([&hub, em] {
            for (std::uint64_t i = 0; i < kPerEmitter; ++i)
                hub.emit(numbered(em, i));
        });
    }
    for (auto& t : emitters)
        t.join();
    for (auto& t : consumers)
        t.join();

    CHECK(hub.last_sequence() == kTotal);
    std::uint64_t dropped = 0;
    for (std::size_t i = 0; i < subs.size(); ++i) {
        INFO("subscriber " << i);
        // Consumers usually keep up; when one falls behind, the alarms account for the rest.
        CHECK(seen[i].delivered + seen[i].lost == kTotal);
        CHECK(seen[i].lost == subs[i].dropped());
        CHECK(seen[i].sequence_increasing);
        CHECK(seen[i].emitter_order_kept);
        CHECK(seen[i].alarm_consistent);
        dropped += subs[i].dropped();
    }
    CHECK(hub.dropped() == dropped);
}

TEST_CASE("a slow subscriber loses the oldest events, exactly counted, and is told first",
          "[events]") {
    constexpr std::uint64_t kEmitters = 4, kPerEmitter = 3000, kTotal = kEmitters * kPerEmitter;
    constexpr std::uint64_t kCap = EventHub::kDefaultQueueCapacity;
    EventHub hub;
    auto slow = hub.subscribe();  // reads nothing while the emitters run
    auto fast = hub.subscribe();
    Seen fast_seen;
    std::thread reader([&] { consume(fast, kTotal, fast_seen); });
    std::vector<std::thread> emitters;
    const auto started = Clock::now();
    for (std::uint64_t em = 0; em < kEmitters; ++em) {
        emitters.emplace_back([&hub, em] {
            for (std::uint64_t i = 0; i < kPerEmitter; ++i)
                hub.emit(numbered(em, i));
        });
    }
    for (auto& t : emitters)
        t.join();
    reader.join();
    // Nobody waited for the slow subscriber (12000 emits take milliseconds, not seconds).
    CHECK(Clock::now() - started < 5s);

    CHECK(slow.dropped() == kTotal - kCap);
    CHECK(slow.queued() == kCap);
    CHECK(fast_seen.delivered + fast_seen.lost == kTotal);
    CHECK(hub.dropped() == slow.dropped() + fast.dropped());

    v1::Event e;
    REQUIRE(slow.next(e, 1s));
    CHECK(e.kind() == v1::EVENT_ALARM);
    CHECK(counter(e, "lost") == kTotal - kCap);
    CHECK(counter(e, "first_lost_sequence") == 1);
    CHECK(counter(e, "last_lost_sequence") == kTotal - kCap);
    CHECK(e.sequence() == kTotal - kCap);
    CHECK(e.detail().find(std::to_string(kTotal - kCap) + " events lost") != std::string::npos);
    CHECK(e.has_time());
    // Then the newest kCap, contiguous and in order.
    for (std::uint64_t seq = kTotal - kCap + 1; seq <= kTotal; ++seq) {
        REQUIRE(slow.next(e, 1s));
        REQUIRE(e.kind() == v1::EVENT_DROPS);
        REQUIRE(e.sequence() == seq);
    }
    CHECK_FALSE(slow.next(e, 10ms));

    // A second overflow is reported on its own.
    fast = EventHub::Subscription();  // gone: its drops stay in the hub's total
    const std::uint64_t hub_dropped = hub.dropped();
    CHECK(hub.subscriber_count() == 1);
    for (std::uint64_t i = 0; i < kCap + 10; ++i)
        hub.emit(numbered(9, i));
    CHECK(hub.dropped() == hub_dropped + 10);
    CHECK(slow.dropped() == kTotal - kCap + 10);
    REQUIRE(slow.next(e, 1s));
    CHECK(e.kind() == v1::EVENT_ALARM);
    CHECK(counter(e, "lost") == 10);
    CHECK(counter(e, "first_lost_sequence") == kTotal + 1);
    CHECK(counter(e, "last_lost_sequence") == kTotal + 10);
    REQUIRE(slow.next(e, 1s));
    CHECK(e.sequence() == kTotal + 11);
    CHECK(counter(e, "i") == 10);
}

TEST_CASE("a small queue bound is honoured", "[events]") {
    EventHub hub({}, 3);
    auto sub = hub.subscribe();
    for (int i = 0; i < 5; ++i)
        hub.emit(numbered(0, std::uint64_t(i)));
    CHECK(sub.queued() == 3);
    CHECK(hub.dropped() == 2);
    v1::Event e;
    REQUIRE(sub.next(e, 1s));
    CHECK(e.kind() == v1::EVENT_ALARM);
    CHECK(counter(e, "lost") == 2);
    for (std::uint64_t seq = 3; seq <= 5; ++seq) {
        REQUIRE(sub.next(e, 1s));
        CHECK(e.sequence() == seq);
    }
}

TEST_CASE("shutdown wakes waiting subscribers and ends the feed", "[events]") {
    EventHub hub;
    auto a = hub.subscribe();
    auto b = hub.subscribe();
    hub.emit(numbered(0, 0));
    std::atomic<int> returned_false{0};
    std::atomic<std::int64_t> waited_ms{0};
    auto wait = [&](EventHub::Subscription& s) {
        v1::Event e;
        while (s.next(e, 10s)) {
        }
        returned_false.fetch_add(1);
    };
    const auto t0 = Clock::now();
    std::thread ta([&] { wait(a); });
    std::thread tb([&] {
        wait(b);
        waited_ms =
            std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
    });
    std::this_thread::sleep_for(100ms);
    hub.shutdown();
    ta.join();
    tb.join();
    CHECK(returned_false == 2);
    CHECK(waited_ms < 2000);
    CHECK(hub.is_shut_down());
    CHECK(a.closed());

    v1::Event e;
    CHECK_FALSE(a.next(e, 1s));  // at once, not after the timeout
    const std::uint64_t seq = hub.last_sequence();
    hub.emit(numbered(0, 1));
    CHECK(hub.last_sequence() == seq);
    auto late = hub.subscribe();
    CHECK(late.closed());
    CHECK_FALSE(late.next(e, 1s));
}

TEST_CASE("cancel wakes the waiter; a destroyed subscription unsubscribes", "[events]") {
    EventHub hub;
    {
        auto sub = hub.subscribe();
        CHECK(hub.subscriber_count() == 1);
        std::atomic<bool> done{false};
        std::thread t([&] {
            v1::Event e;
            while (sub.next(e, 10s)) {
            }
            done = true;
        });
        std::this_thread::sleep_for(50ms);
        const auto t0 = Clock::now();
        sub.cancel();
        t.join();
        CHECK(done);
        CHECK(Clock::now() - t0 < 2s);
        CHECK(sub.closed());
        // A cancelled subscriber queues nothing and loses nothing.
        for (std::uint64_t i = 0; i < EventHub::kDefaultQueueCapacity + 5; ++i)
            hub.emit(numbered(0, i));
        CHECK(sub.queued() == 0);
        CHECK(hub.dropped() == 0);

        auto moved = hub.subscribe();
        CHECK(hub.subscriber_count() == 2);
        EventHub::Subscription target = std::move(moved);
        CHECK(hub.subscriber_count() == 2);
        hub.emit(numbered(1, 0));
        v1::Event e;
        CHECK(target.next(e, 1s));
        CHECK_FALSE(moved.next(e, 10ms));  // the moved-from one is empty
    }
    CHECK(hub.subscriber_count() == 0);
    EventHub::Subscription none;
    v1::Event e;
    CHECK_FALSE(none.next(e, 1ms));
    CHECK(none.closed());
}

TEST_CASE("warrant events name XID and LIID, never the targets", "[events]") {
    const StoredWarrant w = stored_warrant("6f1c2d3e-1111-4222-8333-000000000001", "LI-0042");
    const v1::Event e = warrant_event(w, v1::EVENT_WARRANT_ACCEPTED, "state PENDING");
    CHECK(e.kind() == v1::EVENT_WARRANT_ACCEPTED);
    CHECK(e.xid() == "6f1c2d3e-1111-4222-8333-000000000001");
    CHECK(e.liid() == "LI-0042");
    CHECK(e.detail() == "state PENDING");
    CHECK(counter(e, "version") == 3);
    const std::string wire = e.SerializeAsString();
    CHECK(wire.find("4930555012345") == std::string::npos);
    CHECK(wire.find("alice.target") == std::string::npos);
    CHECK(e.DebugString().find("alice.target") == std::string::npos);
}

// ---------------------------------------------------------------------------------------
// The services over gRPC

namespace {

std::string source_dir() {
    const char* s = std::getenv("TAPWIRE_SOURCE_DIR");
    return s != nullptr ? s : "";
}

// A store, an audit log, a hub and a gRPC server with the two services, plaintext (every
// caller is the development provisioner) or mutual TLS with the test PKI.
struct ServerFixture {
    TempDir dir{"tapwire-events"};
    std::unique_ptr<Store> store;
    std::unique_ptr<AuditLog> audit;
    AuditKey audit_public;
    EventHub hub;
    ServiceContext ctx;
    ApplianceService appliance{ctx};
    AuditService audit_service{ctx};
    std::unique_ptr<grpc::Server> server;
    int port = 0;
    bool tls = false;
    std::string pki;

    explicit ServerFixture(bool use_tls, std::size_t queue_capacity = 4096,
                           std::uint32_t checkpoint_interval = 1000)
        : hub({}, queue_capacity), tls(use_tls) {
        std::string error;
        store = Store::open(dir.file("state.db"), error);
        INFO(error);
        REQUIRE(store);
        auto key = AuditKey::generate();
        REQUIRE(key.ok());
        auto pub = AuditKey::from_pem(key->public_pem());
        REQUIRE(pub.ok());
        audit_public = *pub;
        AuditLogOptions options;
        options.path = dir.file("audit.log");
        options.signing_key = *key;
        options.checkpoint_interval = checkpoint_interval;
        auto opened = AuditLog::open(std::move(options));
        INFO(opened.status.message);
        REQUIRE(opened.ok());
        audit = std::move(*opened);

        ctx.store = store.get();
        ctx.audit = audit.get();
        ctx.events = &hub;
        ctx.insecure_development = !tls;
        ctx.roles = {{"test-provisioner", Role::Provisioner},
                     {"test-auditor", Role::Auditor},
                     {"test-operator", Role::Operator}};

        std::shared_ptr<grpc::ServerCredentials> creds = grpc::InsecureServerCredentials();
        if (tls) {
            REQUIRE_FALSE(source_dir().empty());
            pki = dir.file("pki");
            const std::string cmd =
                "sh '" + source_dir() + "/tools/make_test_pki.sh' '" + pki + "' >/dev/null 2>&1";
            REQUIRE(std::system(cmd.c_str()) == 0);
            grpc::SslServerCredentialsOptions ssl(
                GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
            ssl.pem_root_certs = read_all(pki + "/ca.pem");
            ssl.pem_key_cert_pairs.push_back(
                {read_all(pki + "/server.key"), read_all(pki + "/server.pem")});
            creds = grpc::SslServerCredentials(ssl);
        }
        grpc::ServerBuilder builder;
        builder.AddListeningPort("127.0.0.1:0", creds, &port);
        builder.RegisterService(&appliance);
        builder.RegisterService(&audit_service);
        server = builder.BuildAndStart();
        REQUIRE(server);
        REQUIRE(port != 0);
    }

    ~ServerFixture() {
        hub.shutdown();
        if (server) server->Shutdown(std::chrono::system_clock::now() + 2s);
    }

    // role: "operator", "auditor", "provisioner" (TLS), ignored in plaintext.
    std::shared_ptr<grpc::Channel> channel(const std::string& role = "") const {
        const std::string target = "127.0.0.1:" + std::to_string(port);
        if (!tls) return grpc::CreateChannel(target, grpc::InsecureChannelCredentials());
        grpc::SslCredentialsOptions o;
        o.pem_root_certs = read_all(pki + "/ca.pem");
        o.pem_private_key = read_all(pki + "/" + role + ".key");
        o.pem_cert_chain = read_all(pki + "/" + role + ".pem");
        grpc::ChannelArguments args;
        args.SetSslTargetNameOverride("localhost");
        return grpc::CreateCustomChannel(target, grpc::SslCredentials(o), args);
    }

    void put(const std::string& xid, v1::WarrantState state) {
        v1::WarrantStatus s;
        s.mutable_warrant()->set_xid(xid);
        s.mutable_warrant()->set_liid("LI-" + xid.substr(0, 4));
        s.set_state(state);
        s.set_version(1);
        auto r = store->put_warrant(s, 1'700'000'000 * kSecond, 0);
        INFO(r.message());
        REQUIRE(r.ok());
    }

    std::vector<AuditRecord> records() {
        auto r = audit->export_records({});
        REQUIRE(r.ok());
        return *r;
    }
};

void deadline(grpc::ClientContext& c, std::chrono::seconds s = 10s) {
    c.set_deadline(std::chrono::system_clock::now() + s);
}

grpc::Status get_status(const std::shared_ptr<grpc::Channel>& ch, v1::ApplianceStatus& out) {
    auto stub = v1::Appliance::NewStub(ch);
    grpc::ClientContext c;
    deadline(c);
    return stub->GetStatus(&c, v1::GetStatusRequest(), &out);
}

struct Exported {
    grpc::Status status;
    std::string data;
    std::vector<std::size_t> chunks;
};

Exported export_audit(const std::shared_ptr<grpc::Channel>& ch) {
    auto stub = v1::Audit::NewStub(ch);
    grpc::ClientContext c;
    deadline(c, 30s);
    Exported out;
    auto reader = stub->Export(&c, v1::ExportAuditRequest());
    v1::AuditChunk chunk;
    while (reader->Read(&chunk)) {
        out.data += chunk.data();
        out.chunks.push_back(chunk.data().size());
    }
    out.status = reader->Finish();
    return out;
}

bool has_record(const std::vector<AuditRecord>& records, AuditAction action,
                const std::string& result, const std::string& actor) {
    return std::any_of(records.begin(), records.end(), [&](const AuditRecord& r) {
        return r.action == action && r.result == result && r.actor == actor;
    });
}

std::string detail_of(const AuditRecord& r, const std::string& key) {
    for (const auto& [k, v] : r.details)
        if (k == key) return v;
    return {};
}

// Waits (briefly) for a condition another thread makes true.
template <class F>
bool eventually(F f, std::chrono::milliseconds limit = 3000ms) {
    const auto end = Clock::now() + limit;
    while (!f()) {
        if (Clock::now() > end) return false;
        std::this_thread::sleep_for(5ms);
    }
    return true;
}

}  // namespace

TEST_CASE("GetStatus: warrant counts, dropped events, the dataplane's part", "[events][grpc]") {
    ServerFixture f(false, 4);
    f.put("a0000000-1111-4222-8333-000000000001", v1::WARRANT_STATE_ACTIVE);
    f.put("a0000000-1111-4222-8333-000000000002", v1::WARRANT_STATE_ACTIVE);
    f.put("b0000000-1111-4222-8333-000000000003", v1::WARRANT_STATE_PENDING);
    f.put("c0000000-1111-4222-8333-000000000004", v1::WARRANT_STATE_DEACTIVATED);
    auto local = f.hub.subscribe();
    for (int i = 0; i < 10; ++i)
        f.hub.emit(numbered(0, std::uint64_t(i)));
    REQUIRE(f.hub.dropped() == 6);

    v1::ApplianceStatus st;
    const grpc::Status rc = get_status(f.channel(), st);
    INFO(rc.error_message());
    REQUIRE(rc.ok());
    CHECK(st.active_warrants() == 2);
    CHECK(st.pending_warrants() == 1);
    CHECK(st.events_dropped() == 6);
    CHECK_FALSE(st.dataplane_attached());
    CHECK(st.dataplane_detail() == "no dataplane link");
    const auto now = std::chrono::system_clock::now();
    CHECK(to_timestamp(st.now()) > std::chrono::time_point_cast<Duration>(now - 60s));

    // With a dataplane link: its figures, but the control plane's own stay authoritative.
    f.ctx.fill_appliance_status = [](v1::ApplianceStatus& s) {
        s.set_dataplane_attached(true);
        s.set_hits_total(42);
        s.set_active_warrants(999);
        s.add_workers()->set_worker(3);
    };
    f.ctx.clock = [] { return Timestamp(std::chrono::seconds(1'800'000'000)); };
    st.Clear();
    REQUIRE(get_status(f.channel(), st).ok());
    CHECK(st.dataplane_attached());
    CHECK(st.hits_total() == 42);
    CHECK(st.workers_size() == 1);
    CHECK(st.active_warrants() == 2);
    CHECK(st.now().seconds() == 1'800'000'000);

    const auto records = f.records();
    CHECK(has_record(records, AuditAction::StatusQuery, "ok", kInsecureDevelopmentActor));
}

TEST_CASE("WatchEvents streams the feed and ends with the client or the hub", "[events][grpc]") {
    ServerFixture f(false);
    auto stub = v1::Appliance::NewStub(f.channel());

    SECTION("events in order; client cancellation unsubscribes") {
        grpc::ClientContext c;
        deadline(c, 20s);
        auto reader = stub->WatchEvents(&c, v1::WatchEventsRequest());
        reader->WaitForInitialMetadata();
        // The subscription is in place once the metadata arrived.
        CHECK(f.hub.subscriber_count() == 1);
        const StoredWarrant w = stored_warrant("6f1c2d3e-1111-4222-8333-000000000001", "LI-7");
        f.hub.emit(warrant_event(w, v1::EVENT_WARRANT_ACCEPTED));
        f.hub.emit(warrant_event(w, v1::EVENT_WARRANT_ACTIVATED));
        f.hub.emit(numbered(0, 0));
        v1::Event e;
        REQUIRE(reader->Read(&e));
        CHECK(e.kind() == v1::EVENT_WARRANT_ACCEPTED);
        CHECK(e.xid() == w.status.warrant().xid());
        CHECK(e.sequence() == 1);
        REQUIRE(reader->Read(&e));
        CHECK(e.kind() == v1::EVENT_WARRANT_ACTIVATED);
        CHECK(e.sequence() == 2);
        REQUIRE(reader->Read(&e));
        CHECK(e.sequence() == 3);

        c.TryCancel();
        CHECK(eventually([&] { return f.hub.subscriber_count() == 0; }));
        CHECK(reader->Finish().error_code() == grpc::StatusCode::CANCELLED);
        const auto records = f.records();
        CHECK(has_record(records, AuditAction::EventSubscribe, "ok", kInsecureDevelopmentActor));
    }

    SECTION("the hub's shutdown ends open streams, so the server shuts down promptly") {
        std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
        std::vector<std::unique_ptr<grpc::ClientReader<v1::Event>>> readers;
        for (int i = 0; i < 3; ++i) {
            contexts.push_back(std::make_unique<grpc::ClientContext>());
            deadline(*contexts.back(), 20s);
            readers.push_back(stub->WatchEvents(contexts.back().get(), v1::WatchEventsRequest()));
            readers.back()->WaitForInitialMetadata();
        }
        CHECK(f.hub.subscriber_count() == 3);
        const auto t0 = Clock::now();
        f.hub.shutdown();
        f.server->Shutdown();  // no deadline: returns only once every handler has returned
        CHECK(Clock::now() - t0 < 2s);
        for (auto& r : readers) {
            v1::Event e;
            CHECK_FALSE(r->Read(&e));
            const grpc::Status st = r->Finish();
            CHECK(st.error_code() == grpc::StatusCode::UNAVAILABLE);
        }
    }

    SECTION("a Shutdown deadline ends open streams even with the hub still running") {
        grpc::ClientContext c;
        deadline(c, 20s);
        auto reader = stub->WatchEvents(&c, v1::WatchEventsRequest());
        reader->WaitForInitialMetadata();
        const auto t0 = Clock::now();
        f.server->Shutdown(std::chrono::system_clock::now() + 200ms);
        CHECK(Clock::now() - t0 < 2s);
        CHECK(eventually([&] { return f.hub.subscriber_count() == 0; }));
        v1::Event e;
        CHECK_FALSE(reader->Read(&e));
        CHECK_FALSE(reader->Finish().ok());
    }

    SECTION("without an event feed the call is refused") {
        f.ctx.events = nullptr;
        grpc::ClientContext c;
        deadline(c);
        auto reader = stub->WatchEvents(&c, v1::WatchEventsRequest());
        v1::Event e;
        CHECK_FALSE(reader->Read(&e));
        const grpc::Status st = reader->Finish();
        CHECK(st.error_code() == grpc::StatusCode::UNAVAILABLE);
        CHECK(st.error_message() == "no event feed");
        f.ctx.events = &f.hub;
    }
}

TEST_CASE("roles over mutual TLS: operator status and events, auditor export",
          "[events][grpc][tls]") {
    ServerFixture f(true);
    f.put("a0000000-1111-4222-8333-000000000001", v1::WARRANT_STATE_ACTIVE);

    v1::ApplianceStatus st;
    grpc::Status rc = get_status(f.channel("operator"), st);
    INFO(rc.error_message());
    CHECK(rc.ok());
    CHECK(st.active_warrants() == 1);
    CHECK(get_status(f.channel("provisioner"), st).ok());
    rc = get_status(f.channel("auditor"), st);
    CHECK(rc.error_code() == grpc::StatusCode::PERMISSION_DENIED);
    CHECK(rc.error_message() == "role 'auditor' may not call Appliance.GetStatus");

    Exported ex = export_audit(f.channel("operator"));
    CHECK(ex.status.error_code() == grpc::StatusCode::PERMISSION_DENIED);
    CHECK(ex.data.empty());
    ex = export_audit(f.channel("provisioner"));
    CHECK(ex.status.error_code() == grpc::StatusCode::PERMISSION_DENIED);

    {  // The operator's feed.
        auto stub = v1::Appliance::NewStub(f.channel("operator"));
        grpc::ClientContext c;
        deadline(c);
        auto reader = stub->WatchEvents(&c, v1::WatchEventsRequest());
        reader->WaitForInitialMetadata();
        f.hub.emit(warrant_event(stored_warrant("a0000000-1111-4222-8333-000000000001", "LI-1"),
                                 v1::EVENT_WARRANT_ACCEPTED));
        v1::Event e;
        REQUIRE(reader->Read(&e));
        CHECK(e.kind() == v1::EVENT_WARRANT_ACCEPTED);
        c.TryCancel();
        reader->Finish();
    }
    {  // Not the auditor's.
        auto stub = v1::Appliance::NewStub(f.channel("auditor"));
        grpc::ClientContext c;
        deadline(c);
        auto reader = stub->WatchEvents(&c, v1::WatchEventsRequest());
        v1::Event e;
        CHECK_FALSE(reader->Read(&e));
        CHECK(reader->Finish().error_code() == grpc::StatusCode::PERMISSION_DENIED);
    }

    ex = export_audit(f.channel("auditor"));
    INFO(ex.status.error_message());
    REQUIRE(ex.status.ok());
    const AuditHead head_after = f.audit->head();  // the export's own record is after it
    AuditVerifyOptions vo;
    vo.public_keys = {f.audit_public};
    const AuditVerifyReport report = verify_audit_bytes(ex.data, vo);
    INFO(report.summary());
    CHECK(report.intact());
    CHECK(report.checkpoints_verified >= 1);
    CHECK(report.last_seq + 1 == head_after.seq);
    const std::string file = read_all(f.dir.file("audit.log"));
    CHECK(file.compare(0, ex.data.size(), ex.data) == 0);

    const auto records = f.records();
    CHECK(has_record(records, AuditAction::StatusQuery, "ok", "CN=test-operator"));
    CHECK(
        has_record(records, AuditAction::PermissionDenied, "PERMISSION_DENIED", "CN=test-auditor"));
    CHECK(has_record(records, AuditAction::PermissionDenied, "PERMISSION_DENIED",
                     "CN=test-operator"));
    CHECK(has_record(records, AuditAction::EventSubscribe, "ok", "CN=test-operator"));
    const AuditRecord& last = records.back();
    CHECK(last.action == AuditAction::AuditExport);
    CHECK(last.actor == "CN=test-auditor");
    CHECK(last.result == "ok");
    CHECK(detail_of(last, "bytes") == std::to_string(ex.data.size()));
    CHECK(detail_of(last, "last_seq") == std::to_string(report.last_seq));

    // The exported file passes the command-line verifier too.
    if (const char* cli = std::getenv("TAPWIRE_AUDIT_VERIFY"); cli != nullptr && *cli) {
        write_all(f.dir.file("export.log"), ex.data);
        write_all(f.dir.file("audit.pub"), f.audit_public.public_pem());
        const std::string cmd = std::string(cli) + " --log '" + f.dir.file("export.log") +
                                "' --public-key '" + f.dir.file("audit.pub") + "' >/dev/null";
        const int status = std::system(cmd.c_str());
        CHECK(WIFEXITED(status));
        CHECK(WEXITSTATUS(status) == 0);
    } else {
        WARN("TAPWIRE_AUDIT_VERIFY not set: the CLI check is skipped");
    }
}

TEST_CASE("Export hands out the durable trail while records are appended concurrently",
          "[events][grpc][tls]") {
    ServerFixture f(true, 4096, 50);
    // Enough for several 64 KiB chunks before the appender starts.
    std::vector<AuditEntry> batch(100);
    for (std::size_t i = 0; i < batch.size(); ++i) {
        batch[i].actor = "CN=filler";
        batch[i].role = "system";
        batch[i].action = AuditAction::WarrantList;
        batch[i].message = std::string(200, 'f');
    }
    for (int i = 0; i < 6; ++i)
        REQUIRE(f.audit->append_batch(batch).ok());

    std::atomic<bool> stop{false};
    std::atomic<bool> append_failed{false};
    std::thread appender([&] {
        AuditEntry e;
        e.actor = "CN=concurrent";
        e.role = "system";
        e.action = AuditAction::WarrantGet;
        while (!stop) {
            if (!f.audit->append(e).ok()) append_failed = true;
        }
    });
    std::vector<std::pair<std::uint64_t, Exported>> exports;  // head before the call
    for (int i = 0; i < 5; ++i) {
        const std::uint64_t before = f.audit->head().seq;
        exports.emplace_back(before, export_audit(f.channel("auditor")));
    }
    stop = true;
    appender.join();
    CHECK_FALSE(append_failed);

    const std::string file = read_all(f.dir.file("audit.log"));
    AuditVerifyOptions vo;
    vo.public_keys = {f.audit_public};
    vo.checkpoint_interval = 50;
    for (const auto& [before, ex] : exports) {
        INFO(ex.status.error_message());
        REQUIRE(ex.status.ok());
        REQUIRE(ex.data.size() > 4 * AuditService::kChunkBytes);
        for (std::size_t i = 0; i + 1 < ex.chunks.size(); ++i)
            CHECK(ex.chunks[i] == AuditService::kChunkBytes);
        CHECK(ex.chunks.back() <= AuditService::kChunkBytes);
        CHECK(ex.data.back() == '\n');
        const AuditVerifyReport report = verify_audit_bytes(ex.data, vo);
        INFO(report.summary());
        CHECK(report.intact());
        CHECK(report.last_seq >= before);
        CHECK(file.compare(0, ex.data.size(), ex.data) == 0);
    }
    const auto records = f.records();
    std::size_t exports_audited = 0;
    for (const auto& r : records)
        if (r.action == AuditAction::AuditExport && r.result == "ok") ++exports_audited;
    CHECK(exports_audited == exports.size());
}

TEST_CASE("Export stops exactly at the head record when its end straddles a chunk boundary",
          "[events][grpc][tls]") {
    // The head line's end marker (`,"hash":"<64 hex>"}\n`, 76 bytes) ends `past` bytes
    // after the first 64 KiB boundary.
    const std::size_t past = GENERATE(0, 1, 30, 75, 76);
    INFO("line end " << past << " bytes past 64 KiB");
    ServerFixture f(true, 4096, 0);  // no interval checkpoints: every filler line is alike
    const std::string path = f.dir.file("audit.log");
    const auto size = [&] { return std::uint64_t(read_all(path).size()); };
    const std::uint64_t target = AuditService::kChunkBytes + past;

    AuditEntry e;
    e.actor = "CN=filler";
    e.role = "system";
    e.action = AuditAction::WarrantList;
    e.message = "x";
    // Same-length lines from here on (three-digit sequence numbers).
    while (f.audit->head().seq < 100)
        REQUIRE(f.audit->append(e).ok());
    std::uint64_t s = size();
    REQUIRE(f.audit->append(e).ok());
    const std::uint64_t line = size() - s;  // with a one-byte message
    while (size() + line + 1000 < target)
        REQUIRE(f.audit->append(e).ok());
    s = size();
    REQUIRE(target - s >= line);
    e.message = std::string(target - s - line + 1, 'x');
    REQUIRE(f.audit->append(e).ok());
    REQUIRE(size() == target);

    const Exported ex = export_audit(f.channel("auditor"));
    INFO(ex.status.error_message());
    REQUIRE(ex.status.ok());
    CHECK(ex.data.size() == target);
    CHECK(ex.data == read_all(path).substr(0, target));
    CHECK(ex.chunks.size() == (past == 0 ? 1u : 2u));
    AuditVerifyOptions vo;
    vo.public_keys = {f.audit_public};
    CHECK(verify_audit_bytes(ex.data, vo).intact());
}
