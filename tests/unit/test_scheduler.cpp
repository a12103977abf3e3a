// The warrant lifecycle of the control plane: the Scheduler (controlplane/scheduler.hpp)
// moving warrants through their windows and emergency deadlines by itself, and the
// Warrants service's Modify, ConfirmEmergency and Deactivate around it. Real SQLite store and
// audit log in a temporary directory, real Ed25519 signatures, and a clock the test moves
// (plus one case on the real clock). The services are called in-process in plaintext
// development mode; tests/integration/controlplane_grpc.py drives the same calls over gRPC
// with mutual TLS.
#include <catch2/catch.hpp>

#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "controlplane/scheduler.hpp"
#include "controlplane/service.hpp"
#include "tests/unit/temp_dir.hpp"

namespace {

using tapwire::test::TempDir;
using tapwire::test::TinyDisk;
using namespace tapwire;
using namespace tapwire::controlplane;
using namespace std::chrono_literals;

constexpr std::int64_t kMs = 1'000'000;
constexpr std::int64_t kSecond = 1'000 * kMs;
constexpr std::int64_t kHour = 3600 * kSecond;
constexpr std::int64_t kT0 = 1'767'225'600 * kSecond;  // 2026-01-01T00:00:00Z
constexpr std::int64_t kConfirmWithin = 48 * kHour;

std::string xid_of(int i) {
    char buf[40];
    std::snprintf(buf, sizeof buf, "%08x-1111-4222-8333-%012d", i + 1, i);
    return buf;
}

std::int64_t ns(const google::protobuf::Timestamp& t) {
    return to_unix_ns(t).value();
}

std::string detail(const AuditRecord& r, const std::string& key) {
    for (const auto& [k, v] : r.details)
        if (k == key) return v;
    return "<none>";
}

struct Seen {
    std::string xid;
    v1::EventKind kind;
    v1::WarrantState state;
    std::chrono::system_clock::time_point at;  // real time of the call
};

// A control plane without the network: store, audit log, authority key, services, a clock
// the test moves, and a recording warrant_changed listener.
struct Plane {
    TempDir dir{"tapwire-scheduler"};
    StoreOptions store_options;
    std::unique_ptr<Store> store;
    std::unique_ptr<AuditLog> audit;
    PkeyPtr authority;
    AuthorityKeys keys;
    std::atomic<std::int64_t> now{kT0};
    ServiceContext ctx;
    WarrantsService service{ctx};

    std::mutex seen_mutex;
    std::vector<Seen> seen;
    // Runs inside warrant_changed, after recording (a test's way to race the scheduler).
    std::function<void(const StoredWarrant&, v1::EventKind)> on_change;

    explicit Plane(StoreOptions options = {}) : store_options(options) {
        open();
        REQUIRE(store->create_destination(destination(), kT0).ok());
        KeyResult k = generate_ed25519_key();
        REQUIRE(k.key);
        authority = std::move(k.key);
        KeyResult pub = parse_public_key_pem(public_key_pem(authority.get()), "test");
        REQUIRE(pub.key);
        REQUIRE(keys.add("court-1", std::move(pub.key)) == "");
        ctx.authority_keys = &keys;
        ctx.insecure_development = true;  // no certificate in-process: a provisioner
        ctx.targets_digest_key = "test-digest-key";
        ctx.clock = [this] { return Timestamp(Duration(now.load())); };
        ctx.warrant_changed = [this](const StoredWarrant& w, v1::EventKind kind) {
            {
                std::lock_guard lock(seen_mutex);
                seen.push_back({w.status.warrant().xid(), kind, w.status.state(),
                                std::chrono::system_clock::now()});
            }
            if (on_change) on_change(w, kind);
        };
    }

    static v1::Destination destination() {
        v1::Destination d;
        d.set_id("lemf-1");
        d.set_address("192.0.2.10");
        d.set_port(6000);
        d.set_format(v1::HANDOVER_FORMAT_ETSI_102232);
        return d;
    }

    // (Re)opens the store and the audit log, as a restarted control plane does.
    void open() {
        ctx.store = nullptr;
        ctx.audit = nullptr;
        audit.reset();
        store.reset();
        std::string error;
        store = Store::open(dir.file("state.db"), error, store_options);
        INFO(error);
        REQUIRE(store);
        ctx.store = store.get();
        audit_at(dir.file("audit.log"));
    }

    // (Re)opens the audit log at `path`.
    void audit_at(const std::string& path) {
        ctx.audit = nullptr;
        audit.reset();
        AuditLogOptions o;
        o.path = path;
        auto opened = AuditLog::open(std::move(o));
        INFO(opened.status.message);
        REQUIRE(opened.ok());
        audit = std::move(*opened);
        ctx.audit = audit.get();
    }

    v1::Warrant warrant(const std::string& xid, std::int64_t from, std::int64_t until,
                        v1::WarrantKind kind = v1::WARRANT_KIND_COURT_ORDER,
                        const std::string& liid = "LI-SCHED-1") {
        v1::Warrant w;
        w.set_xid(xid);
        w.set_liid(liid);
        auto* t = w.add_targets();
        t->set_type(v1::IDENTITY_TYPE_SIP_URI);
        t->set_value("sip:secret-target@example.test");
        w.set_delivery_type(v1::DELIVERY_TYPE_IRI_AND_CC);
        w.add_destination_ids("lemf-1");
        *w.mutable_valid_from() = to_timestamp(from);
        *w.mutable_valid_until() = to_timestamp(until);
        w.mutable_legal()->set_issuing_authority("Amtsgericht Test");
        w.mutable_legal()->set_reference("AZ 1/26");
        w.mutable_legal()->set_jurisdiction("DE");
        w.mutable_legal()->set_kind(kind);
        return sign(w);
    }

    v1::Warrant sign(v1::Warrant w) {
        w.set_key_id("court-1");
        REQUIRE(sign_warrant(w, authority.get()) == "");
        return w;
    }

    grpc::Status activate(const v1::Warrant& w, v1::WarrantStatus* out = nullptr) {
        grpc::ServerContext call;
        v1::ActivateWarrantRequest request;
        *request.mutable_warrant() = w;
        v1::ActivateWarrantResponse response;
        const grpc::Status s = service.Activate(&call, &request, &response);
        if (out != nullptr) *out = response.status();
        return s;
    }

    grpc::Status modify(const v1::Warrant& w, v1::WarrantStatus* out = nullptr) {
        grpc::ServerContext call;
        v1::ModifyWarrantRequest request;
        *request.mutable_warrant() = w;
        v1::ModifyWarrantResponse response;
        const grpc::Status s = service.Modify(&call, &request, &response);
        if (out != nullptr) *out = response.status();
        return s;
    }

    grpc::Status confirm(const std::string& xid, const std::string& reference,
                         v1::WarrantStatus* out = nullptr) {
        grpc::ServerContext call;
        v1::ConfirmEmergencyRequest request;
        request.set_xid(xid);
        request.set_court_order_reference(reference);
        v1::ConfirmEmergencyResponse response;
        const grpc::Status s = service.ConfirmEmergency(&call, &request, &response);
        if (out != nullptr) *out = response.status();
        return s;
    }

    grpc::Status deactivate(const std::string& xid, v1::WarrantStatus* out = nullptr) {
        grpc::ServerContext call;
        v1::DeactivateWarrantRequest request;
        request.set_xid(xid);
        request.set_reason("order revoked");
        v1::DeactivateWarrantResponse response;
        const grpc::Status s = service.Deactivate(&call, &request, &response);
        if (out != nullptr) *out = response.status();
        return s;
    }

    v1::WarrantStatus get(const std::string& xid) {
        auto got = store->get_warrant(xid);
        INFO(got.message());
        REQUIRE(got.ok());
        return got->status;
    }

    std::vector<Seen> events() {
        std::lock_guard lock(seen_mutex);
        return seen;
    }
    std::vector<v1::EventKind> kinds_of(const std::string& xid) {
        std::vector<v1::EventKind> out;
        for (const auto& s : events())
            if (s.xid == xid) out.push_back(s.kind);
        return out;
    }

    std::vector<AuditRecord> records(AuditAction action, const std::string& xid) {
        auto all = audit->export_records({});
        INFO(all.status.message);
        REQUIRE(all.ok());
        std::vector<AuditRecord> out;
        for (auto& r : *all)
            if (r.action == action && r.subject == "xid:" + xid) out.push_back(std::move(r));
        return out;
    }
};

#define REQUIRE_OK(call)                                                                 \
    do {                                                                                 \
        const grpc::Status status_ = (call);                                             \
        INFO(status_code_name(status_.error_code()) << ": " << status_.error_message()); \
        REQUIRE(status_.ok());                                                           \
    } while (false)

// Polls until the warrant is in `state` (real time), for cases that must not rely on sync().
bool wait_for_state(Plane& p, const std::string& xid, v1::WarrantState state,
                    std::chrono::milliseconds within) {
    const auto end = std::chrono::steady_clock::now() + within;
    while (std::chrono::steady_clock::now() < end) {
        if (p.get(xid).state() == state) return true;
        std::this_thread::sleep_for(5ms);
    }
    return p.get(xid).state() == state;
}

}  // namespace

TEST_CASE("a pending warrant becomes ACTIVE exactly at valid_from and LAPSED at valid_until",
          "[scheduler]") {
    Plane p;
    const std::string xid = xid_of(1);
    const std::int64_t from = kT0 + 10 * kSecond + 7;  // odd nanoseconds: exact edges
    const std::int64_t until = kT0 + 20 * kSecond + 123;
    v1::WarrantStatus s;
    REQUIRE_OK(p.activate(p.warrant(xid, from, until), &s));
    CHECK(s.state() == v1::WARRANT_STATE_PENDING);

    Scheduler scheduler(p.ctx);
    p.ctx.schedule_changed = [&scheduler] { scheduler.wake(); };
    scheduler.start();
    REQUIRE(scheduler.sync());
    CHECK(p.get(xid).state() == v1::WARRANT_STATE_PENDING);

    p.now = from - 1;  // one nanosecond before the window
    REQUIRE(scheduler.sync());
    CHECK(p.get(xid).state() == v1::WARRANT_STATE_PENDING);
    CHECK(p.kinds_of(xid) == std::vector{v1::EVENT_WARRANT_ACCEPTED});

    p.now = from;
    REQUIRE(scheduler.sync());
    s = p.get(xid);
    CHECK(s.state() == v1::WARRANT_STATE_ACTIVE);
    CHECK(ns(s.activated_at()) == from);
    CHECK(p.kinds_of(xid) == std::vector{v1::EVENT_WARRANT_ACCEPTED, v1::EVENT_WARRANT_ACTIVATED});
    CHECK(p.events().back().state == v1::WARRANT_STATE_ACTIVE);

    p.now = until - 1;
    REQUIRE(scheduler.sync());
    CHECK(p.get(xid).state() == v1::WARRANT_STATE_ACTIVE);

    // No wake() this time: the scheduler re-checks the clock by itself within max_sleep (1 s).
    p.now = until;
    CHECK(wait_for_state(p, xid, v1::WARRANT_STATE_LAPSED, 3s));
    s = p.get(xid);
    CHECK(ns(s.ended_at()) == until);
    CHECK(ns(s.activated_at()) == from);
    REQUIRE(scheduler.sync());  // its listener call follows the store write
    CHECK(p.kinds_of(xid) == std::vector{v1::EVENT_WARRANT_ACCEPTED, v1::EVENT_WARRANT_ACTIVATED,
                                         v1::EVENT_WARRANT_LAPSED});

    const auto effective = p.records(AuditAction::WarrantEffective, xid);
    REQUIRE(effective.size() == 1);
    CHECK(effective[0].actor == "system:scheduler");
    CHECK(effective[0].result == "ok");
    CHECK(detail(effective[0], "liid") == "LI-SCHED-1");
    CHECK(detail(effective[0], "from") == "WARRANT_STATE_PENDING");
    CHECK(detail(effective[0], "to") == "WARRANT_STATE_ACTIVE");
    CHECK(detail(effective[0], "due") == format_audit_time(from / 1000));
    CHECK(detail(effective[0], "late_ms") == "<none>");  // on time
    const auto lapse = p.records(AuditAction::WarrantLapse, xid);
    REQUIRE(lapse.size() == 1);
    CHECK(detail(lapse[0], "from") == "WARRANT_STATE_ACTIVE");
    CHECK(detail(lapse[0], "to") == "WARRANT_STATE_LAPSED");
    CHECK(detail(lapse[0], "due") == format_audit_time(until / 1000));
    CHECK(scheduler.stats().applied == 2);
    CHECK(scheduler.stats().failures == 0);

    // Nothing is left to do: more passes change nothing.
    p.now = until + kHour;
    REQUIRE(scheduler.sync());
    CHECK(p.kinds_of(xid).size() == 3);
    CHECK(p.records(AuditAction::WarrantLapse, xid).size() == 1);
}

TEST_CASE("on the real clock, a window opens and closes by itself", "[scheduler][realtime]") {
    Plane p;
    p.ctx.clock = nullptr;  // the system clock
    Scheduler scheduler(p.ctx);
    p.ctx.schedule_changed = [&scheduler] { scheduler.wake(); };
    scheduler.start();
    const std::int64_t t = std::chrono::duration_cast<std::chrono::nanoseconds>(
                               std::chrono::system_clock::now().time_since_epoch())
                               .count();
    const std::int64_t from = t + 300 * kMs, until = t + 700 * kMs;
    const std::string xid = xid_of(2);
    REQUIRE_OK(p.activate(p.warrant(xid, from, until)));
    CHECK(p.get(xid).state() == v1::WARRANT_STATE_PENDING);
    REQUIRE(wait_for_state(p, xid, v1::WARRANT_STATE_LAPSED, 5s));
    REQUIRE(scheduler.sync());

    const auto s = p.get(xid);
    CHECK(ns(s.activated_at()) == from);
    CHECK(ns(s.ended_at()) == until);
    const auto events = p.events();
    REQUIRE(events.size() == 3);
    CHECK(events[1].kind == v1::EVENT_WARRANT_ACTIVATED);
    CHECK(events[2].kind == v1::EVENT_WARRANT_LAPSED);
    // Never early, and close to the edge (it sleeps until the due time, not a fixed tick).
    const auto real_ns = [](std::chrono::system_clock::time_point at) {
        return std::chrono::duration_cast<std::chrono::nanoseconds>(at.time_since_epoch()).count();
    };
    CHECK(real_ns(events[1].at) >= from);
    CHECK(real_ns(events[1].at) < from + 250 * kMs);
    CHECK(real_ns(events[2].at) >= until);
    CHECK(real_ns(events[2].at) < until + 250 * kMs);
}

TEST_CASE("an emergency warrant lapses at its deadline unless confirmed",
          "[scheduler][emergency]") {
    Plane p;
    const std::string unconfirmed = xid_of(3), confirmed = xid_of(4);
    const std::int64_t from = kT0 - kHour, until = kT0 + 30 * 24 * kHour;
    v1::WarrantStatus s;
    REQUIRE_OK(p.activate(p.warrant(unconfirmed, from, until, v1::WARRANT_KIND_EMERGENCY), &s));
    CHECK(s.state() == v1::WARRANT_STATE_ACTIVE);
    const std::int64_t deadline = kT0 + kConfirmWithin;  // from acceptance (after valid_from)
    CHECK(ns(s.emergency_deadline()) == deadline);
    const v1::Warrant signed_warrant =
        p.warrant(confirmed, from, until, v1::WARRANT_KIND_EMERGENCY);
    REQUIRE_OK(p.activate(signed_warrant));

    p.now = kT0 + kHour;
    REQUIRE_OK(p.confirm(confirmed, "Beschluss 12 Gs 34/26", &s));
    CHECK(s.state() == v1::WARRANT_STATE_ACTIVE);
    CHECK_FALSE(s.has_emergency_deadline());
    CHECK(s.emergency_confirmation_reference() == "Beschluss 12 Gs 34/26");
    CHECK(ns(s.emergency_confirmed_at()) == kT0 + kHour);
    // The signed warrant is untouched: its signature still verifies.
    CHECK(s.warrant().SerializeAsString() == signed_warrant.SerializeAsString());
    CHECK(verify_warrant_signature(s.warrant(), p.keys).ok());
    CHECK(p.kinds_of(confirmed) ==
          std::vector{v1::EVENT_WARRANT_ACCEPTED, v1::EVENT_EMERGENCY_CONFIRMED});
    const auto audited = p.records(AuditAction::WarrantConfirm, confirmed);
    REQUIRE(audited.size() == 1);
    CHECK(audited[0].result == "ok");
    CHECK(detail(audited[0], "court_order_reference") == "Beschluss 12 Gs 34/26");
    CHECK(detail(audited[0], "emergency_deadline") == format_audit_time(deadline / 1000));

    // The same confirmation again is a repeat; another one is refused.
    v1::WarrantStatus again;
    REQUIRE_OK(p.confirm(confirmed, "Beschluss 12 Gs 34/26", &again));
    CHECK(again.SerializeAsString() == s.SerializeAsString());
    CHECK(p.kinds_of(confirmed).size() == 2);
    CHECK(p.confirm(confirmed, "Beschluss 99/26").error_code() ==
          grpc::StatusCode::FAILED_PRECONDITION);

    Scheduler scheduler(p.ctx);
    p.ctx.schedule_changed = [&scheduler] { scheduler.wake(); };
    scheduler.start();
    p.now = deadline - 1;
    REQUIRE(scheduler.sync());
    CHECK(p.get(unconfirmed).state() == v1::WARRANT_STATE_ACTIVE);
    CHECK(p.get(confirmed).state() == v1::WARRANT_STATE_ACTIVE);

    p.now = deadline;
    REQUIRE(scheduler.sync());
    s = p.get(unconfirmed);
    CHECK(s.state() == v1::WARRANT_STATE_EMERGENCY_LAPSED);
    CHECK(ns(s.ended_at()) == deadline);
    CHECK(p.kinds_of(unconfirmed) ==
          std::vector{v1::EVENT_WARRANT_ACCEPTED, v1::EVENT_EMERGENCY_LAPSED});
    const auto lapse = p.records(AuditAction::WarrantLapse, unconfirmed);
    REQUIRE(lapse.size() == 1);
    CHECK(detail(lapse[0], "to") == "WARRANT_STATE_EMERGENCY_LAPSED");
    CHECK(detail(lapse[0], "due") == format_audit_time(deadline / 1000));
    CHECK(p.get(confirmed).state() == v1::WARRANT_STATE_ACTIVE);

    // Too late to confirm now; the confirmed one runs to the end of its window.
    CHECK(p.confirm(unconfirmed, "Beschluss 13/26").error_code() ==
          grpc::StatusCode::FAILED_PRECONDITION);
    p.now = until;
    REQUIRE(scheduler.sync());
    CHECK(p.get(confirmed).state() == v1::WARRANT_STATE_LAPSED);
    scheduler.stop();

    // The confirmation is durable.
    p.open();
    s = p.get(confirmed);
    CHECK(s.emergency_confirmation_reference() == "Beschluss 12 Gs 34/26");
    CHECK(ns(s.emergency_confirmed_at()) == kT0 + kHour);
    CHECK(ns(s.accepted_at()) == kT0);
}

TEST_CASE("ConfirmEmergency refuses what it cannot confirm", "[service][emergency]") {
    Plane p;
    const std::string emergency = xid_of(5), court = xid_of(6);
    const std::int64_t from = kT0 + kHour, until = kT0 + 10 * 24 * kHour;
    REQUIRE_OK(p.activate(p.warrant(emergency, from, until, v1::WARRANT_KIND_EMERGENCY)));
    REQUIRE_OK(p.activate(p.warrant(court, from, until)));
    // A scheduled emergency warrant's deadline counts from its start, not from acceptance.
    CHECK(ns(p.get(emergency).emergency_deadline()) == from + kConfirmWithin);

    const auto code = [&](const std::string& xid, const std::string& ref, std::string* msg) {
        v1::WarrantStatus ignored;
        grpc::ServerContext call;
        v1::ConfirmEmergencyRequest request;
        request.set_xid(xid);
        request.set_court_order_reference(ref);
        v1::ConfirmEmergencyResponse response;
        const grpc::Status s = p.service.ConfirmEmergency(&call, &request, &response);
        if (msg != nullptr) *msg = s.error_message();
        return s.error_code();
    };
    std::string msg;
    CHECK(code(emergency, "", &msg) == grpc::StatusCode::INVALID_ARGUMENT);
    CHECK_THAT(msg, Catch::StartsWith("court_order_reference"));
    CHECK(code(emergency, std::string(257, 'x'), &msg) == grpc::StatusCode::INVALID_ARGUMENT);
    CHECK_THAT(msg, Catch::StartsWith("court_order_reference"));
    CHECK(code(emergency, "Gs\n12", &msg) == grpc::StatusCode::INVALID_ARGUMENT);
    CHECK_THAT(msg, Catch::StartsWith("court_order_reference"));
    CHECK(code(emergency, "Gs \xC0\xAF", &msg) == grpc::StatusCode::INVALID_ARGUMENT);  // overlong
    CHECK(code(emergency, "   ", &msg) == grpc::StatusCode::INVALID_ARGUMENT);
    CHECK(code("not-a-uuid", "Gs 1", &msg) == grpc::StatusCode::INVALID_ARGUMENT);
    CHECK(code(xid_of(77), "Gs 1", &msg) == grpc::StatusCode::NOT_FOUND);
    CHECK(code(court, "Gs 1", &msg) == grpc::StatusCode::FAILED_PRECONDITION);
    CHECK_THAT(msg, Catch::Contains("not an emergency warrant"));
    CHECK(code(emergency, std::string(256, 'x'), &msg) == grpc::StatusCode::OK);  // at the limit
    CHECK(code(emergency, std::string(256, 'x'), &msg) == grpc::StatusCode::OK);  // a repeat

    // Past the deadline it is refused even before the scheduler has lapsed the warrant.
    const std::string late = xid_of(7);
    REQUIRE_OK(p.activate(p.warrant(late, kT0 - kHour, until, v1::WARRANT_KIND_EMERGENCY)));
    p.now = kT0 + kConfirmWithin;
    CHECK(p.get(late).state() == v1::WARRANT_STATE_ACTIVE);
    CHECK(code(late, "Gs 2", &msg) == grpc::StatusCode::FAILED_PRECONDITION);
    CHECK_THAT(msg, Catch::Contains("deadline") && Catch::Contains("has passed"));
    CHECK(p.get(late).has_emergency_deadline());

    // Ended warrants cannot be confirmed.
    const std::string ended = xid_of(8);
    REQUIRE_OK(p.activate(p.warrant(ended, kT0, until, v1::WARRANT_KIND_EMERGENCY)));
    REQUIRE_OK(p.deactivate(ended));
    CHECK(code(ended, "Gs 3", &msg) == grpc::StatusCode::FAILED_PRECONDITION);
    CHECK_THAT(msg, Catch::Contains("WARRANT_STATE_DEACTIVATED"));

    // Every call was audited, refusals included.
    CHECK(p.records(AuditAction::WarrantConfirm, emergency).size() == 7);
}

TEST_CASE("after downtime a passed window ends LAPSED, never ACTIVE, and the lateness is audited",
          "[scheduler][restart]") {
    Plane p;
    const std::string passed = xid_of(10), emergency = xid_of(11), later = xid_of(12);
    const std::int64_t from = kT0 + 10 * kSecond, until = kT0 + 20 * kSecond;
    REQUIRE_OK(p.activate(p.warrant(passed, from, until)));
    REQUIRE_OK(p.activate(
        p.warrant(emergency, kT0 - kSecond, kT0 + 30 * 24 * kHour, v1::WARRANT_KIND_EMERGENCY)));
    const std::int64_t later_from = kT0 + 50 * kHour;
    REQUIRE_OK(p.activate(p.warrant(later, later_from, kT0 + 30 * 24 * kHour)));

    // The control plane is down for 72 hours, then restarts.
    p.open();
    const std::int64_t restart = kT0 + 72 * kHour;
    p.now = restart;
    Scheduler scheduler(p.ctx);
    scheduler.start();
    REQUIRE(scheduler.sync());

    auto s = p.get(passed);
    CHECK(s.state() == v1::WARRANT_STATE_LAPSED);
    CHECK(ns(s.ended_at()) == until);
    CHECK_FALSE(s.has_activated_at());
    CHECK(p.kinds_of(passed) == std::vector{v1::EVENT_WARRANT_ACCEPTED, v1::EVENT_WARRANT_LAPSED});
    CHECK(p.records(AuditAction::WarrantEffective, passed).empty());
    auto lapse = p.records(AuditAction::WarrantLapse, passed);
    REQUIRE(lapse.size() == 1);
    CHECK(detail(lapse[0], "from") == "WARRANT_STATE_PENDING");
    CHECK(detail(lapse[0], "to") == "WARRANT_STATE_LAPSED");
    CHECK(detail(lapse[0], "late_ms") == std::to_string((restart - until) / kMs));

    s = p.get(emergency);
    CHECK(s.state() == v1::WARRANT_STATE_EMERGENCY_LAPSED);
    CHECK(ns(s.ended_at()) == kT0 + kConfirmWithin);
    lapse = p.records(AuditAction::WarrantLapse, emergency);
    REQUIRE(lapse.size() == 1);
    CHECK(detail(lapse[0], "late_ms") == std::to_string((restart - kT0 - kConfirmWithin) / kMs));

    // A window that opened during the downtime and is still open: ACTIVE since its start.
    s = p.get(later);
    CHECK(s.state() == v1::WARRANT_STATE_ACTIVE);
    CHECK(ns(s.activated_at()) == later_from);
    const auto effective = p.records(AuditAction::WarrantEffective, later);
    REQUIRE(effective.size() == 1);
    CHECK(detail(effective[0], "late_ms") == std::to_string((restart - later_from) / kMs));
    CHECK(scheduler.stats().applied == 3);
}

TEST_CASE("a Deactivate racing the scheduler is never resurrected", "[scheduler][race]") {
    SECTION("deactivated between the scheduler's query and its update") {
        Plane p;
        const std::string first = xid_of(20), second = xid_of(21);
        const std::int64_t from = kT0 + 10 * kSecond, until = kT0 + kHour;
        REQUIRE_OK(p.activate(p.warrant(first, from, until)));
        REQUIRE_OK(p.activate(p.warrant(second, from, until)));
        // Both fall due in the same pass, `first` before `second` (same time, older id). When
        // `first` has been activated, `second` is deactivated: the scheduler's list of due
        // changes still holds its activation.
        grpc::Status deactivated = grpc::Status(grpc::StatusCode::UNKNOWN, "not called");
        p.on_change = [&](const StoredWarrant& w, v1::EventKind kind) {
            if (kind == v1::EVENT_WARRANT_ACTIVATED && w.status.warrant().xid() == first) {
                deactivated = p.deactivate(second);
            }
        };
        Scheduler scheduler(p.ctx);
        p.ctx.schedule_changed = [&scheduler] { scheduler.wake(); };
        scheduler.start();
        p.now = from;
        REQUIRE(scheduler.sync());
        REQUIRE(scheduler.sync());
        CHECK(deactivated.ok());
        CHECK(p.get(first).state() == v1::WARRANT_STATE_ACTIVE);
        CHECK(p.get(second).state() == v1::WARRANT_STATE_DEACTIVATED);
        CHECK(p.kinds_of(second) ==
              std::vector{v1::EVENT_WARRANT_ACCEPTED, v1::EVENT_WARRANT_DEACTIVATED});
        CHECK(p.records(AuditAction::WarrantEffective, second).empty());
        CHECK(scheduler.stats().skipped >= 1);
    }
    SECTION("a Modify moving the window between the scheduler's query and its update") {
        Plane p;
        const std::string first = xid_of(22), second = xid_of(23);
        const std::int64_t from = kT0 + 10 * kSecond, until = kT0 + kHour;
        REQUIRE_OK(p.activate(p.warrant(first, from, until)));
        REQUIRE_OK(p.activate(p.warrant(second, from, until)));
        const std::int64_t moved = kT0 + 30 * kSecond;
        grpc::Status modified = grpc::Status(grpc::StatusCode::UNKNOWN, "not called");
        p.on_change = [&](const StoredWarrant& w, v1::EventKind kind) {
            if (kind == v1::EVENT_WARRANT_ACTIVATED && w.status.warrant().xid() == first) {
                modified = p.modify(p.warrant(second, moved, until));
            }
        };
        Scheduler scheduler(p.ctx);
        p.ctx.schedule_changed = [&scheduler] { scheduler.wake(); };
        scheduler.start();
        p.now = from;
        REQUIRE(scheduler.sync());
        REQUIRE(scheduler.sync());
        CHECK(modified.ok());
        CHECK(p.get(second).state() == v1::WARRANT_STATE_PENDING);  // not before its new start
        CHECK(p.records(AuditAction::WarrantEffective, second).empty());
        p.now = moved;
        REQUIRE(scheduler.sync());
        CHECK(p.get(second).state() == v1::WARRANT_STATE_ACTIVE);
        CHECK(ns(p.get(second).activated_at()) == moved);
    }
    SECTION("many warrants deactivated while their window opens") {
        Plane p;
        constexpr int kWarrants = 40;
        const std::int64_t from = kT0 + 10 * kSecond, until = kT0 + kHour;
        for (int i = 0; i < kWarrants; ++i)
            REQUIRE_OK(p.activate(p.warrant(xid_of(100 + i), from, until)));
        Scheduler scheduler(p.ctx);
        p.ctx.schedule_changed = [&scheduler] { scheduler.wake(); };
        scheduler.start();
        REQUIRE(scheduler.sync());
        std::atomic<int> ok{0};
        std::thread deactivator([&] {
            for (int i = kWarrants - 1; i >= 0; --i)  // against the scheduler's order
                if (p.deactivate(xid_of(100 + i)).ok()) ++ok;
        });
        p.now = from;
        scheduler.wake();
        deactivator.join();
        REQUIRE(scheduler.sync());
        CHECK(ok.load() == kWarrants);
        for (int i = 0; i < kWarrants; ++i) {
            const std::string xid = xid_of(100 + i);
            INFO(xid);
            CHECK(p.get(xid).state() == v1::WARRANT_STATE_DEACTIVATED);
            // Activated before the deactivation, or not at all; never after it.
            const auto kinds = p.kinds_of(xid);
            CHECK(kinds.back() == v1::EVENT_WARRANT_DEACTIVATED);
            CHECK(std::count(kinds.begin(), kinds.end(), v1::EVENT_WARRANT_DEACTIVATED) == 1);
        }
    }
}

TEST_CASE("store failures are retried with backoff and the change applies afterwards",
          "[scheduler][failure]") {
    StoreOptions options;
    options.busy_timeout_ms = 20;
    Plane p(options);
    const std::string xid = xid_of(30);
    const std::int64_t from = kT0 + 10 * kSecond;
    REQUIRE_OK(p.activate(p.warrant(xid, from, kT0 + kHour)));

    // Another process (a backup, the sqlite3 shell) holds the write lock.
    sqlite3* other = nullptr;
    REQUIRE(sqlite3_open(p.dir.file("state.db").c_str(), &other) == SQLITE_OK);
    REQUIRE(sqlite3_exec(other, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) == SQLITE_OK);

    Scheduler::Options fast;
    fast.initial_backoff = std::chrono::milliseconds(10);
    fast.max_backoff = std::chrono::milliseconds(50);
    Scheduler scheduler(p.ctx, fast);
    scheduler.start();
    p.now = from;
    REQUIRE(scheduler.sync());
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (scheduler.stats().failures < 3 && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(10ms);
    CHECK(scheduler.stats().failures >= 3);  // retried, on its own
    CHECK(p.get(xid).state() == v1::WARRANT_STATE_PENDING);

    REQUIRE(sqlite3_exec(other, "ROLLBACK", nullptr, nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(other);
    CHECK(wait_for_state(p, xid, v1::WARRANT_STATE_ACTIVE, 3s));
    CHECK(ns(p.get(xid).activated_at()) == from);
    REQUIRE(scheduler.sync());
    CHECK(p.kinds_of(xid) == std::vector{v1::EVENT_WARRANT_ACCEPTED, v1::EVENT_WARRANT_ACTIVATED});
    CHECK(p.records(AuditAction::WarrantEffective, xid).size() == 1);
}

TEST_CASE("Modify replaces the warrant with a new signed version", "[service][modify]") {
    Plane p;
    const std::string xid = xid_of(40);
    const std::int64_t from = kT0 - kHour, until = kT0 + 24 * kHour;
    v1::WarrantStatus first;
    REQUIRE_OK(p.activate(p.warrant(xid, from, until), &first));
    REQUIRE(first.state() == v1::WARRANT_STATE_ACTIVE);

    p.now = kT0 + kHour;
    v1::Warrant v2 = p.warrant(xid, from, until + 24 * kHour);
    v2.add_targets()->set_type(v1::IDENTITY_TYPE_E164);
    v2.mutable_targets(1)->set_value("+4930555000111");
    v2 = p.sign(v2);
    v1::WarrantStatus s;
    REQUIRE_OK(p.modify(v2, &s));
    CHECK(s.version() == 2);
    CHECK(s.state() == v1::WARRANT_STATE_ACTIVE);
    CHECK(s.warrant().SerializeAsString() == v2.SerializeAsString());
    CHECK(ns(s.activated_at()) == kT0);  // effective since the first version
    CHECK(ns(s.accepted_at()) == kT0);
    CHECK(p.get(xid).SerializeAsString() == s.SerializeAsString());
    CHECK(p.kinds_of(xid) == std::vector{v1::EVENT_WARRANT_ACCEPTED, v1::EVENT_WARRANT_MODIFIED});
    auto audited = p.records(AuditAction::WarrantModify, xid);
    REQUIRE(audited.size() == 1);
    CHECK(audited[0].result == "ok");
    CHECK(detail(audited[0], "version") == "2");
    CHECK(detail(audited[0], "targets") == "2");
    CHECK(detail(audited[0], "key_id") == "court-1");
    CHECK(detail(audited[0], "liid") == "LI-SCHED-1");
    CHECK(detail(audited[0], "targets_hmac").size() == 64);

    // The identical request again: the stored status, no new version, no event.
    v1::WarrantStatus again;
    REQUIRE_OK(p.modify(v2, &again));
    CHECK(again.SerializeAsString() == s.SerializeAsString());
    CHECK(p.kinds_of(xid).size() == 2);

    std::string msg;
    const auto refused = [&](const v1::Warrant& w) {
        const grpc::Status st = p.modify(w);
        msg = st.error_message();
        return st.error_code();
    };
    v1::Warrant tampered = v2;
    tampered.mutable_valid_until()->set_seconds(tampered.valid_until().seconds() + 1);
    CHECK(refused(tampered) == grpc::StatusCode::PERMISSION_DENIED);
    CHECK_THAT(msg, Catch::StartsWith("signature"));
    REQUIRE(p.records(AuditAction::SignatureRejected, xid).size() == 1);
    CHECK(detail(p.records(AuditAction::SignatureRejected, xid)[0], "method") == "Warrants.Modify");
    CHECK(refused(p.warrant(xid, from, until, v1::WARRANT_KIND_COURT_ORDER, "LI-OTHER")) ==
          grpc::StatusCode::FAILED_PRECONDITION);
    CHECK_THAT(msg, Catch::StartsWith("warrant.liid"));
    CHECK(refused(p.warrant(xid_of(41), from, until)) == grpc::StatusCode::NOT_FOUND);
    v1::Warrant no_targets = v2;
    no_targets.clear_targets();
    CHECK(refused(p.sign(no_targets)) == grpc::StatusCode::INVALID_ARGUMENT);
    CHECK(p.get(xid).version() == 2);

    // Moving the window into the future: PENDING again, activated by the scheduler later.
    const std::int64_t new_from = kT0 + 2 * kHour;
    REQUIRE_OK(p.modify(p.warrant(xid, new_from, until), &s));
    CHECK(s.version() == 3);
    CHECK(s.state() == v1::WARRANT_STATE_PENDING);
    CHECK_FALSE(s.has_activated_at());
    CHECK(p.store->next_attention_ns()->value() == new_from);
    // And to a window that has already ended: it lapses now.
    p.now = kT0 + 3 * kHour;
    REQUIRE_OK(p.modify(p.warrant(xid, from, kT0 + 2 * kHour), &s));
    CHECK(s.version() == 4);
    CHECK(s.state() == v1::WARRANT_STATE_LAPSED);
    CHECK(ns(s.ended_at()) == kT0 + 3 * kHour);
    CHECK(p.kinds_of(xid).back() == v1::EVENT_WARRANT_MODIFIED);
    // An ended warrant is final.
    CHECK(refused(p.warrant(xid, from, until + kHour)) == grpc::StatusCode::FAILED_PRECONDITION);
    CHECK_THAT(msg, Catch::Contains("has ended"));
    const std::string other = xid_of(42);
    REQUIRE_OK(p.activate(p.warrant(other, from, until)));
    REQUIRE_OK(p.deactivate(other));
    CHECK(refused(p.warrant(other, from, until + kHour)) == grpc::StatusCode::FAILED_PRECONDITION);
    CHECK(p.get(other).state() == v1::WARRANT_STATE_DEACTIVATED);
}

TEST_CASE("Modify keeps an emergency warrant's deadline and its confirmation",
          "[service][modify][emergency]") {
    Plane p;
    const std::string xid = xid_of(50);
    const std::int64_t from = kT0 - kHour, until = kT0 + 30 * 24 * kHour;
    REQUIRE_OK(p.activate(p.warrant(xid, from, until, v1::WARRANT_KIND_EMERGENCY)));
    const std::int64_t deadline = kT0 + kConfirmWithin;

    // A later version does not restart the confirmation period.
    p.now = kT0 + 40 * kHour;
    v1::WarrantStatus s;
    REQUIRE_OK(p.modify(p.warrant(xid, from, until + kHour, v1::WARRANT_KIND_EMERGENCY), &s));
    CHECK(ns(s.emergency_deadline()) == deadline);

    // Confirmed, it stays confirmed through further versions.
    REQUIRE_OK(p.confirm(xid, "Gs 5/26"));
    p.now = kT0 + 60 * kHour;  // past the original deadline
    REQUIRE_OK(p.modify(p.warrant(xid, from, until + 2 * kHour, v1::WARRANT_KIND_EMERGENCY), &s));
    CHECK(s.state() == v1::WARRANT_STATE_ACTIVE);
    CHECK_FALSE(s.has_emergency_deadline());
    CHECK(s.emergency_confirmation_reference() == "Gs 5/26");
    CHECK(ns(s.emergency_confirmed_at()) == kT0 + 40 * kHour);
    CHECK(verify_warrant_signature(s.warrant(), p.keys).ok());
    CHECK(p.store->next_attention_ns()->value() == until + 2 * kHour);

    // An unconfirmed one modified after its deadline lapses at once.
    const std::string late = xid_of(51);
    p.now = kT0;
    REQUIRE_OK(p.activate(p.warrant(late, from, until, v1::WARRANT_KIND_EMERGENCY)));
    p.now = deadline + kSecond;
    REQUIRE_OK(p.modify(p.warrant(late, from, until + kHour, v1::WARRANT_KIND_EMERGENCY), &s));
    CHECK(s.state() == v1::WARRANT_STATE_EMERGENCY_LAPSED);

    // A version signed with its confirmation_reference needs no confirmation; a later version
    // without it stays confirmed.
    const std::string signed_confirmation = xid_of(52);
    p.now = kT0;
    REQUIRE_OK(p.activate(p.warrant(signed_confirmation, from, until, v1::WARRANT_KIND_EMERGENCY)));
    v1::Warrant with_reference =
        p.warrant(signed_confirmation, from, until, v1::WARRANT_KIND_EMERGENCY);
    with_reference.mutable_legal()->set_confirmation_reference("Gs 6/26");
    REQUIRE_OK(p.modify(p.sign(with_reference), &s));
    CHECK_FALSE(s.has_emergency_deadline());
    REQUIRE_OK(p.modify(
        p.warrant(signed_confirmation, from, until + kHour, v1::WARRANT_KIND_EMERGENCY), &s));
    CHECK_FALSE(s.has_emergency_deadline());
    CHECK(s.emergency_confirmation_reference() == "Gs 6/26");
}

TEST_CASE("listeners hear each durable change once", "[service][events]") {
    Plane p;
    const std::string xid = xid_of(60);
    const v1::Warrant w = p.warrant(xid, kT0 - kHour, kT0 + kHour);
    int woken = 0;
    p.ctx.schedule_changed = [&woken] { ++woken; };
    REQUIRE_OK(p.activate(w));
    REQUIRE_OK(p.activate(w));  // a repeat
    CHECK(woken == 1);
    v1::WarrantStatus s;
    REQUIRE_OK(p.deactivate(xid, &s));
    REQUIRE_OK(p.deactivate(xid));  // a repeat: the first end stands
    CHECK(woken == 2);
    CHECK(p.get(xid).ended_at().SerializeAsString() == s.ended_at().SerializeAsString());
    CHECK(p.kinds_of(xid) ==
          std::vector{v1::EVENT_WARRANT_ACCEPTED, v1::EVENT_WARRANT_DEACTIVATED});
    const auto events = p.events();
    CHECK(events[0].state == v1::WARRANT_STATE_ACTIVE);
    CHECK(events[1].state == v1::WARRANT_STATE_DEACTIVATED);
    // The stored version again, after the end: a repeat, not a change.
    CHECK(p.modify(w).ok());
    CHECK(p.kinds_of(xid).size() == 2);
    CHECK(woken == 2);
}

TEST_CASE("a schema 1 database gains the new warrant columns", "[store][migration]") {
    TempDir dir;
    const std::string path = dir.file("state.db");
    std::string error;
    v1::WarrantStatus status;
    {
        auto store = Store::open(path, error);
        REQUIRE(store);
        REQUIRE(store->create_destination(Plane::destination(), kT0).ok());
        Plane p;  // only for a signed warrant
        *status.mutable_warrant() = p.warrant(xid_of(70), kT0, kT0 + kHour);
        status.set_state(v1::WARRANT_STATE_ACTIVE);
        status.set_version(1);
        REQUIRE(store->put_warrant(status, kT0, 0).ok());
    }
    {
        // Back to what a schema 1 build wrote.
        sqlite3* db = nullptr;
        REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
        for (const char* sql : {"ALTER TABLE warrants DROP COLUMN accepted_at_ns",
                                "ALTER TABLE warrants DROP COLUMN confirmation_reference",
                                "ALTER TABLE warrants DROP COLUMN confirmed_at_ns",
                                "UPDATE schema_version SET version = 1"}) {
            INFO(sql);
            REQUIRE(sqlite3_exec(db, sql, nullptr, nullptr, nullptr) == SQLITE_OK);
        }
        sqlite3_close(db);
    }
    auto store = Store::open(path, error);
    INFO(error);
    REQUIRE(store);
    auto got = store->get_warrant(xid_of(70));
    REQUIRE(got.ok());
    CHECK(got->status.warrant().SerializeAsString() == status.warrant().SerializeAsString());
    CHECK_FALSE(got->status.has_accepted_at());
    CHECK(got->status.emergency_confirmation_reference().empty());
    StateChange change;
    change.state = v1::WARRANT_STATE_ACTIVE;
    change.confirmation = StateChange::Confirmation{"Gs 7/26", kT0 + 5};
    REQUIRE(store->update_state(xid_of(70), change, kT0).ok());
    CHECK(store->get_warrant(xid_of(70))->status.emergency_confirmation_reference() == "Gs 7/26");
    CHECK(ns(store->get_warrant(xid_of(70))->status.emergency_confirmed_at()) == kT0 + 5);
}

namespace {

// Takes every free page of the filesystem holding `path`; removed when it ends.
struct Filler {
    std::string path;
    explicit Filler(std::string at) : path(std::move(at)) {
        std::FILE* f = std::fopen(path.c_str(), "wb");
        REQUIRE(f != nullptr);
        std::setvbuf(f, nullptr, _IONBF, 0);
        const std::vector<char> page(4096, 'x');
        while (std::fwrite(page.data(), 1, page.size(), f) == page.size()) {
        }
        std::fclose(f);
    }
    ~Filler() { std::remove(path.c_str()); }
};

}  // namespace

TEST_CASE(
    "a change whose audit record cannot be written is stored, answered UNAVAILABLE, and takes "
    "effect once the record is written; an end of interception at once",
    "[service][audit][failure]") {
    Plane p;
    TinyDisk disk(p.dir.file("audit-disk"), "256k");
    if (!disk.mounted) {
        WARN("cannot mount a tmpfs (not root?): the full audit disk case is skipped");
        return;
    }
    p.audit_at(disk.path + "/audit.log");
    std::mutex backlog_mutex;
    std::vector<std::size_t> backlog;  // what an operator's alarm is told
    p.ctx.unaudited->backlog_changed = [&](std::size_t queued) {
        std::lock_guard lock(backlog_mutex);
        backlog.push_back(queued);
    };
    Scheduler::Options fast;
    fast.initial_backoff = std::chrono::milliseconds(10);
    fast.max_backoff = std::chrono::milliseconds(50);
    Scheduler scheduler(p.ctx, fast);
    scheduler.start();
    const std::string ended = xid_of(60);
    REQUIRE_OK(p.activate(p.warrant(ended, kT0 - kSecond, kT0 + kHour)));

    auto filler = std::make_unique<Filler>(disk.path + "/filler");
    // The log's last page may still take a record or two: activate until one is refused.
    std::string refused;
    for (int i = 0; i < 40 && refused.empty(); ++i) {
        const std::string xid = xid_of(100 + i);
        const grpc::Status s = p.activate(p.warrant(xid, kT0 - kSecond, kT0 + kHour));
        if (s.ok()) continue;
        CHECK(s.error_code() == grpc::StatusCode::UNAVAILABLE);
        CHECK_THAT(s.error_message(), Catch::Contains("audit"));
        refused = xid;
    }
    REQUIRE_FALSE(refused.empty());
    CHECK(p.get(refused).state() == v1::WARRANT_STATE_ACTIVE);  // stored...
    CHECK(p.kinds_of(refused).empty());                         // ...but not in effect

    // Ending interception takes effect at once, its record queued behind.
    const grpc::Status d = p.deactivate(ended);
    CHECK(d.error_code() == grpc::StatusCode::UNAVAILABLE);
    CHECK(p.kinds_of(ended) ==
          std::vector{v1::EVENT_WARRANT_ACCEPTED, v1::EVENT_WARRANT_DEACTIVATED});
    // A retry while the disk is still full is refused the same way and changes nothing.
    CHECK(p.activate(p.warrant(refused, kT0 - kSecond, kT0 + kHour)).error_code() ==
          grpc::StatusCode::UNAVAILABLE);
    REQUIRE(scheduler.sync());
    CHECK(p.kinds_of(refused).empty());
    CHECK(scheduler.stats().unaudited == 3);

    // Space again: the scheduler writes the records in order, then the activation takes effect.
    filler.reset();
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (p.kinds_of(refused).empty() && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(5ms);
    CHECK(p.kinds_of(refused) == std::vector{v1::EVENT_WARRANT_ACCEPTED});
    REQUIRE(scheduler.sync());
    CHECK(scheduler.stats().unaudited == 0);
    {
        std::lock_guard lock(backlog_mutex);
        CHECK(backlog == std::vector<std::size_t>{1, 0});
    }

    const auto activations = p.records(AuditAction::WarrantActivate, refused);
    REQUIRE(activations.size() == 2);
    CHECK(detail(activations[0], "repeated") == "false");
    CHECK(detail(activations[0], "audit_deferred_from") != "<none>");
    CHECK(activations[0].result == "ok");
    CHECK(detail(activations[1], "repeated") == "true");
    const auto deactivations = p.records(AuditAction::WarrantDeactivate, ended);
    REQUIRE(deactivations.size() == 1);
    CHECK(detail(deactivations[0], "audit_deferred_from") != "<none>");
    CHECK(activations[0].seq < deactivations[0].seq);  // in the order they happened
    CHECK(deactivations[0].seq < activations[1].seq);

    // Once written, a retry is an ordinary repeat: answered OK, announced no second time.
    REQUIRE_OK(p.activate(p.warrant(refused, kT0 - kSecond, kT0 + kHour)));
    CHECK(p.kinds_of(refused) == std::vector{v1::EVENT_WARRANT_ACCEPTED});
}

TEST_CASE("the queue of unwritten audit records is bounded, and what it gives up is counted",
          "[audit][failure]") {
    TempDir dir("tapwire-audit-queue");
    TinyDisk disk(dir.file("disk"), "256k");
    if (!disk.mounted) {
        WARN("cannot mount a tmpfs (not root?): the full audit disk case is skipped");
        return;
    }
    AuditLogOptions o;
    o.path = disk.path + "/audit.log";
    auto opened = AuditLog::open(std::move(o));
    REQUIRE(opened.ok());
    const std::unique_ptr<AuditLog> log = std::move(*opened);
    const Filler filler(disk.path + "/filler");
    UnauditedChanges queue;
    int announced = 0;
    const auto announce = [&](const StoredWarrant&, v1::EventKind) { ++announced; };
    AuditEntry e;
    e.actor = "CN=test";
    e.role = "provisioner";
    e.action = AuditAction::WarrantActivate;
    // The log's last page may take a few records before the disk refuses.
    for (std::size_t i = 0;
         queue.size() < UnauditedChanges::kMaxQueued && i < UnauditedChanges::kMaxQueued + 100; ++i)
        queue.write(e, std::nullopt, log.get(), announce);
    REQUIRE(queue.size() == UnauditedChanges::kMaxQueued);
    CHECK(queue.lost() == 0);

    // Full: given up and counted; an end of interception still takes effect, a start does not.
    CHECK_FALSE(queue.write(e, UnauditedChanges::WarrantChange{{}, v1::EVENT_WARRANT_DEACTIVATED},
                            log.get(), announce));
    CHECK(announced == 1);
    CHECK_FALSE(queue.write(e, UnauditedChanges::WarrantChange{{}, v1::EVENT_WARRANT_ACCEPTED},
                            log.get(), announce));
    CHECK(announced == 1);
    CHECK(queue.lost() == 2);
    CHECK(queue.size() == UnauditedChanges::kMaxQueued);
}
