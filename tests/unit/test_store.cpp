// controlplane/store: the durable state of the control plane, on real SQLite files in a
// temporary directory. Includes kill -9 of a writing child process, a full database and a
// file-size limit that makes writes fail, and concurrent use.
#include <catch2/catch.hpp>

#include <signal.h>
#include <sqlite3.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "controlplane/store.hpp"
#include "tests/unit/temp_dir.hpp"

namespace {

using tapwire::test::TempDir;

using namespace tapwire;
using namespace tapwire::controlplane;

constexpr std::int64_t kSecond = 1'000'000'000;
constexpr std::int64_t kT0 = 1'700'000'000 * kSecond;  // 2023-11-14, an arbitrary "now"

std::unique_ptr<Store> open_store(const std::string& path, const StoreOptions& options = {}) {
    std::string error;
    auto store = Store::open(path, error, options);
    INFO(error);
    REQUIRE(store != nullptr);
    CHECK(error.empty());
    return store;
}

v1::Warrant make_warrant(const std::string& xid, std::vector<std::string> destinations,
                         std::optional<std::int64_t> from_ns, std::optional<std::int64_t> until_ns,
                         v1::WarrantKind kind = v1::WARRANT_KIND_COURT_ORDER, int targets = 2) {
    v1::Warrant w;
    w.set_xid(xid);
    w.set_liid("LIID-" + xid.substr(0, 8));
    for (int i = 0; i < targets; ++i) {
        auto* t = w.add_targets();
        t->set_type(v1::IDENTITY_TYPE_SIP_URI);
        t->set_value("sip:target" + std::to_string(i) + "-" + xid + "@carrier.example");
    }
    w.set_delivery_type(v1::DELIVERY_TYPE_IRI_AND_CC);
    for (auto& d : destinations)
        w.add_destination_ids(d);
    if (from_ns) *w.mutable_valid_from() = to_timestamp(*from_ns);
    if (until_ns) *w.mutable_valid_until() = to_timestamp(*until_ns);
    w.mutable_legal()->set_issuing_authority("Amtsgericht Berlin-Tiergarten");
    w.mutable_legal()->set_reference("349 Gs 1234/23");
    w.mutable_legal()->set_jurisdiction("DE");
    w.mutable_legal()->set_kind(kind);
    w.set_key_id("ag-berlin-2023");
    w.set_signature(std::string(64, '\x5a'));
    return w;
}

v1::WarrantStatus make_status(const v1::Warrant& w, v1::WarrantState state,
                              std::uint64_t version = 1,
                              std::optional<std::int64_t> deadline_ns = {}) {
    v1::WarrantStatus s;
    *s.mutable_warrant() = w;
    s.set_state(state);
    s.set_version(version);
    if (deadline_ns) *s.mutable_emergency_deadline() = to_timestamp(*deadline_ns);
    return s;
}

v1::Destination make_destination(const std::string& id, std::uint32_t port = 6000) {
    v1::Destination d;
    d.set_id(id);
    d.set_address("192.0.2.10");
    d.set_port(port);
    d.set_format(v1::HANDOVER_FORMAT_ETSI_102232);
    d.mutable_tls()->set_enabled(true);
    d.mutable_tls()->set_server_name("lemf.example");
    return d;
}

std::string xid_of(int i) {
    char buf[40];
    std::snprintf(buf, sizeof buf, "%08x-1111-4222-8333-%012d", i, i);
    return buf;
}

bool same(const google::protobuf::Message& a, const google::protobuf::Message& b) {
    return a.SerializeAsString() == b.SerializeAsString();
}

// Puts and REQUIREs success.
PutOutcome put(Store& store, const v1::WarrantStatus& status,
               std::optional<std::uint64_t> expected = 0, std::int64_t now = kT0) {
    auto r = store.put_warrant(status, now, expected);
    INFO(r.message());
    REQUIRE(r.ok());
    return std::move(r).value();
}

}  // namespace

TEST_CASE("timestamps convert to nanoseconds and back", "[store]") {
    for (std::int64_t ns : {std::int64_t{0}, kT0 + 123, std::int64_t{-1}, -kSecond - 7}) {
        const auto t = to_timestamp(ns);
        CHECK(t.nanos() >= 0);
        CHECK(to_unix_ns(t) == ns);
    }
    google::protobuf::Timestamp far;
    far.set_seconds(std::int64_t{1} << 40);  // year ~36800: beyond int64 nanoseconds
    CHECK_FALSE(to_unix_ns(far).has_value());
    google::protobuf::Timestamp bad;
    bad.set_nanos(-1);
    CHECK_FALSE(to_unix_ns(bad).has_value());
}

TEST_CASE("warrants: put, get, list, update_state, modify", "[store]") {
    TempDir dir;
    auto store = open_store(dir.file("state.db"));
    REQUIRE(store->create_destination(make_destination("lemf-1"), kT0).ok());

    const auto w = make_warrant(xid_of(1), {"lemf-1"}, kT0 + 10 * kSecond, kT0 + 100 * kSecond);
    const auto out = put(*store, make_status(w, v1::WARRANT_STATE_PENDING));
    CHECK(out.inserted);
    CHECK_FALSE(out.repeated);
    CHECK(out.stored.internal_id == 1);

    auto got = store->get_warrant(xid_of(1));
    REQUIRE(got.ok());
    CHECK(same(got->status.warrant(), w));
    CHECK(got->status.state() == v1::WARRANT_STATE_PENDING);
    CHECK(got->status.version() == 1);
    CHECK(got->internal_id == 1);
    CHECK(got->updated_at_ns == kT0);
    CHECK_FALSE(got->status.has_activated_at());

    auto missing = store->get_warrant("nope");
    CHECK(missing.code() == StoreError::NotFound);
    CHECK_THAT(missing.message(), Catch::Contains("nope"));
    auto none = store->find_by_xid("nope");
    REQUIRE(none.ok());
    CHECK_FALSE(none->has_value());

    // Activation by the scheduler.
    StateChange activate;
    activate.state = v1::WARRANT_STATE_ACTIVE;
    activate.activated_at_ns = kT0 + 10 * kSecond;
    activate.expected_state = v1::WARRANT_STATE_PENDING;
    auto active = store->update_state(xid_of(1), activate, kT0 + 11 * kSecond);
    REQUIRE(active.ok());
    CHECK(active->status.state() == v1::WARRANT_STATE_ACTIVE);
    CHECK(to_unix_ns(active->status.activated_at()) == kT0 + 10 * kSecond);
    // Compare-and-set: a second activation attempt finds it ACTIVE.
    auto again = store->update_state(xid_of(1), activate, kT0 + 12 * kSecond);
    CHECK(again.code() == StoreError::FailedPrecondition);
    CHECK_THAT(again.message(), Catch::Contains("WARRANT_STATE_ACTIVE"));

    auto list = store->list_warrants({v1::WARRANT_STATE_ACTIVE});
    REQUIRE(list.ok());
    REQUIRE(list->size() == 1);
    CHECK(list->front().status.warrant().xid() == xid_of(1));
    CHECK(store->list_warrants({v1::WARRANT_STATE_PENDING})->empty());
    CHECK(store->list_warrants()->size() == 1);
    CHECK(store->list_warrants({static_cast<v1::WarrantState>(9)}).code() ==
          StoreError::InvalidArgument);

    // Modify: a new signed version, same internal id, state carried by the caller.
    auto w2 = w;
    w2.set_liid("LIID-CHANGED");
    auto s2 = make_status(w2, v1::WARRANT_STATE_ACTIVE, 2);
    *s2.mutable_activated_at() = active->status.activated_at();
    const auto modified = put(*store, s2, 1, kT0 + 20 * kSecond);
    CHECK_FALSE(modified.inserted);
    CHECK_FALSE(modified.repeated);
    CHECK(modified.stored.internal_id == 1);
    got = store->get_warrant(xid_of(1));
    REQUIRE(got.ok());
    CHECK(got->status.warrant().liid() == "LIID-CHANGED");
    CHECK(got->status.version() == 2);
    CHECK(got->status.has_activated_at());

    // A Modify based on a stale read loses.
    auto w3 = w;
    w3.set_liid("LIID-STALE");
    auto stale = store->put_warrant(make_status(w3, v1::WARRANT_STATE_ACTIVE, 2), kT0, 1);
    CHECK(stale.code() == StoreError::FailedPrecondition);
    CHECK_THAT(stale.message(), Catch::Contains("version 2") && Catch::Contains("expected 1"));
    auto absent = store->put_warrant(
        make_status(make_warrant("other", {}, {}, {}), v1::WARRANT_STATE_ACTIVE, 2), kT0, 1);
    CHECK(absent.code() == StoreError::NotFound);

    // Deactivation is final; repeating it keeps the first end time.
    StateChange deactivate;
    deactivate.state = v1::WARRANT_STATE_DEACTIVATED;
    deactivate.ended_at_ns = kT0 + 30 * kSecond;
    REQUIRE(store->update_state(xid_of(1), deactivate, kT0 + 30 * kSecond).ok());
    deactivate.ended_at_ns = kT0 + 40 * kSecond;
    auto repeat = store->update_state(xid_of(1), deactivate, kT0 + 40 * kSecond);
    REQUIRE(repeat.ok());
    CHECK(to_unix_ns(repeat->status.ended_at()) == kT0 + 30 * kSecond);
    auto revive = store->update_state(xid_of(1), activate, kT0 + 50 * kSecond);
    CHECK(revive.code() == StoreError::FailedPrecondition);
    activate.expected_state.reset();
    revive = store->update_state(xid_of(1), activate, kT0 + 50 * kSecond);
    CHECK(revive.code() == StoreError::FailedPrecondition);
    CHECK_THAT(revive.message(), Catch::Contains("final"));
    CHECK(store->get_warrant(xid_of(1))->status.state() == v1::WARRANT_STATE_DEACTIVATED);
    CHECK(store->update_state("nope", deactivate, kT0).code() == StoreError::NotFound);
}

TEST_CASE("put_warrant refuses bad input and writes nothing", "[store]") {
    TempDir dir;
    auto store = open_store(dir.file("state.db"));
    const auto w = make_warrant(xid_of(2), {"lemf-missing"}, kT0, kT0 + kSecond);

    auto r = store->put_warrant(make_status(w, v1::WARRANT_STATE_PENDING), kT0, 0);
    CHECK(r.code() == StoreError::FailedPrecondition);
    CHECK_THAT(r.message(),
               Catch::Contains("destination_ids[0]") && Catch::Contains("lemf-missing"));
    CHECK_FALSE(store->find_by_xid(xid_of(2))->has_value());  // rolled back as a whole

    auto no_xid = w;
    no_xid.clear_xid();
    CHECK(store->put_warrant(make_status(no_xid, v1::WARRANT_STATE_PENDING), kT0).code() ==
          StoreError::InvalidArgument);
    CHECK(store->put_warrant(make_status(w, v1::WARRANT_STATE_UNSPECIFIED), kT0).code() ==
          StoreError::InvalidArgument);
    CHECK(store->put_warrant(make_status(w, v1::WARRANT_STATE_PENDING, 0), kT0).code() ==
          StoreError::InvalidArgument);
    auto far = w;
    far.mutable_valid_until()->set_seconds(std::int64_t{1} << 40);
    auto out_of_range = store->put_warrant(make_status(far, v1::WARRANT_STATE_PENDING), kT0);
    CHECK(out_of_range.code() == StoreError::InvalidArgument);
    CHECK_THAT(out_of_range.message(), Catch::Contains("warrant.valid_until"));
    CHECK(store->list_warrants()->empty());
}

TEST_CASE("destinations: create, modify, get, list, remove", "[store]") {
    TempDir dir;
    auto store = open_store(dir.file("state.db"));
    const auto b = make_destination("lemf-b", 7000);
    const auto a = make_destination("lemf-a", 6000);
    REQUIRE(store->create_destination(b, kT0).ok());
    REQUIRE(store->create_destination(a, kT0).ok());
    CHECK(store->create_destination(a, kT0).ok());  // an identical repeat is safe
    auto clash = store->create_destination(make_destination("lemf-a", 6001), kT0);
    CHECK(clash.code() == StoreError::AlreadyExists);
    CHECK(store->create_destination(make_destination(""), kT0).code() ==
          StoreError::InvalidArgument);

    auto list = store->list_destinations();
    REQUIRE(list.ok());
    REQUIRE(list->size() == 2);
    CHECK(list->at(0).id() == "lemf-a");  // id order
    CHECK(same(list->at(1), b));

    REQUIRE(store->modify_destination(make_destination("lemf-a", 6443), kT0).ok());
    CHECK(store->get_destination("lemf-a")->port() == 6443);
    CHECK(store->modify_destination(make_destination("lemf-zz"), kT0).code() ==
          StoreError::NotFound);

    auto removed = store->remove_destination("lemf-b");
    REQUIRE(removed.ok());
    CHECK(same(*removed, b));
    CHECK(store->get_destination("lemf-b").code() == StoreError::NotFound);
    CHECK(store->remove_destination("lemf-b").code() == StoreError::NotFound);
    CHECK(store->list_destinations()->size() == 1);
}

TEST_CASE("a destination in use by a pending or active warrant cannot be removed", "[store]") {
    TempDir dir;
    auto store = open_store(dir.file("state.db"));
    REQUIRE(store->create_destination(make_destination("lemf-1"), kT0).ok());
    REQUIRE(store->create_destination(make_destination("lemf-2"), kT0).ok());
    put(*store, make_status(make_warrant(xid_of(1), {"lemf-1", "lemf-2"}, kT0, kT0 + kSecond),
                            v1::WARRANT_STATE_PENDING));
    put(*store, make_status(make_warrant(xid_of(2), {"lemf-1"}, kT0, kT0 + kSecond),
                            v1::WARRANT_STATE_ACTIVE));

    auto refused = store->remove_destination("lemf-1");
    CHECK(refused.code() == StoreError::FailedPrecondition);
    CHECK_THAT(refused.message(), Catch::Contains(xid_of(1)) && Catch::Contains(xid_of(2)));
    CHECK(store->get_destination("lemf-1").ok());

    StateChange end;
    end.state = v1::WARRANT_STATE_DEACTIVATED;
    end.ended_at_ns = kT0;
    REQUIRE(store->update_state(xid_of(1), end, kT0).ok());
    CHECK(store->remove_destination("lemf-1").code() == StoreError::FailedPrecondition);
    REQUIRE(store->update_state(xid_of(2), end, kT0).ok());
    REQUIRE(store->remove_destination("lemf-1").ok());
    // The ended warrant keeps the id in its signed content.
    CHECK(store->get_warrant(xid_of(1))->status.warrant().destination_ids(0) == "lemf-1");

    // Modify moving a warrant off a destination frees it; many users are listed briefly.
    for (int i = 10; i < 16; ++i) {
        put(*store, make_status(make_warrant(xid_of(i), {"lemf-2"}, kT0, kT0 + kSecond),
                                v1::WARRANT_STATE_PENDING));
    }
    auto many = store->remove_destination("lemf-2");
    CHECK(many.code() == StoreError::FailedPrecondition);
    CHECK_THAT(many.message(), Catch::Contains(", ..."));
    REQUIRE(store->create_destination(make_destination("lemf-3"), kT0).ok());
    for (int i = 10; i < 16; ++i) {
        put(*store,
            make_status(make_warrant(xid_of(i), {"lemf-3"}, kT0, kT0 + kSecond),
                        v1::WARRANT_STATE_PENDING, 2),
            1);
    }
    CHECK(store->remove_destination("lemf-2").ok());
}

TEST_CASE("a repeated Activate or Modify with the same XID is safe", "[store]") {
    TempDir dir;
    auto store = open_store(dir.file("state.db"));
    const auto w = make_warrant(xid_of(7), {}, kT0, kT0 + 100 * kSecond);
    const auto first = put(*store, make_status(w, v1::WARRANT_STATE_PENDING));
    CHECK(first.inserted);

    // The state moved on between the two requests: the repeat returns the current status.
    StateChange activate;
    activate.state = v1::WARRANT_STATE_ACTIVE;
    activate.activated_at_ns = kT0;
    REQUIRE(store->update_state(xid_of(7), activate, kT0).ok());
    const auto repeat = put(*store, make_status(w, v1::WARRANT_STATE_PENDING));
    CHECK(repeat.repeated);
    CHECK_FALSE(repeat.inserted);
    CHECK(repeat.stored.internal_id == first.stored.internal_id);
    CHECK(repeat.stored.status.state() == v1::WARRANT_STATE_ACTIVE);
    CHECK(repeat.stored.updated_at_ns == kT0);

    auto different = w;
    different.set_signature(std::string(64, '\x01'));
    auto clash = store->put_warrant(make_status(different, v1::WARRANT_STATE_PENDING), kT0, 0);
    CHECK(clash.code() == StoreError::AlreadyExists);
    CHECK_THAT(clash.message(), Catch::Contains(xid_of(7)));

    auto w2 = w;
    w2.set_liid("LIID-V2");
    CHECK_FALSE(put(*store, make_status(w2, v1::WARRANT_STATE_ACTIVE, 2), 1).repeated);
    CHECK(put(*store, make_status(w2, v1::WARRANT_STATE_ACTIVE, 2), 1).repeated);
    CHECK(store->get_warrant(xid_of(7))->status.version() == 2);
    CHECK(store->list_warrants()->size() == 1);
}

TEST_CASE("everything persists across close and reopen", "[store]") {
    TempDir dir;
    const std::string path = dir.file("state.db");
    std::vector<v1::WarrantStatus> written;
    {
        auto store = open_store(path);
        REQUIRE(store->create_destination(make_destination("lemf-1"), kT0).ok());
        REQUIRE(store->create_destination(make_destination("lemf-2", 7000), kT0).ok());
        auto s1 = make_status(make_warrant(xid_of(1), {"lemf-1"}, kT0, kT0 + 50 * kSecond),
                              v1::WARRANT_STATE_ACTIVE, 3);
        *s1.mutable_activated_at() = to_timestamp(kT0 + 1);
        auto s2 = make_status(make_warrant(xid_of(2), {"lemf-1", "lemf-2"}, kT0 + 5 * kSecond,
                                           kT0 + 500 * kSecond, v1::WARRANT_KIND_EMERGENCY),
                              v1::WARRANT_STATE_PENDING, 1, kT0 + 48 * 3600 * kSecond);
        auto s3 = make_status(make_warrant(xid_of(3), {}, kT0 - 100 * kSecond, kT0 - kSecond),
                              v1::WARRANT_STATE_LAPSED);
        *s3.mutable_ended_at() = to_timestamp(kT0 - kSecond);
        for (const auto& s : {s1, s2, s3}) {
            put(*store, s, std::nullopt, kT0 + 9);
            written.push_back(s);
        }
        REQUIRE(store->reserve_block("seq/LIID-1/7/iri", 1000).ok());
        CHECK(std::filesystem::exists(path + "-wal"));
    }
    // Owner-only: the database holds target identities.
    struct stat st {};
    REQUIRE(::stat(path.c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0600);

    auto store = open_store(path);
    auto list = store->list_warrants();
    REQUIRE(list.ok());
    REQUIRE(list->size() == written.size());
    for (std::size_t i = 0; i < written.size(); ++i) {
        INFO("warrant " << i);
        CHECK(same(list->at(i).status, written[i]));
        CHECK(list->at(i).internal_id == i + 1);
        CHECK(list->at(i).updated_at_ns == kT0 + 9);
    }
    auto dests = store->list_destinations();
    REQUIRE(dests.ok());
    REQUIRE(dests->size() == 2);
    CHECK(same(dests->at(1), make_destination("lemf-2", 7000)));
    CHECK(store->counter_reserved_end("seq/LIID-1/7/iri").value() == 1000);
    // The links persisted too: lemf-2 is still in use by the pending warrant.
    CHECK(store->remove_destination("lemf-2").code() == StoreError::FailedPrecondition);
    CHECK(store->integrity_check().value() == "ok");
}

TEST_CASE("internal warrant ids are never reused, also across reopen", "[store]") {
    TempDir dir;
    const std::string path = dir.file("state.db");
    std::set<std::uint32_t> seen;
    std::uint32_t last = 0;
    auto add = [&](Store& store, int i) {
        const auto out = put(store, make_status(make_warrant(xid_of(i), {}, kT0, kT0 + kSecond),
                                                v1::WARRANT_STATE_PENDING));
        CHECK(out.stored.internal_id > last);
        CHECK(seen.insert(out.stored.internal_id).second);
        last = out.stored.internal_id;
    };
    {
        auto store = open_store(path);
        for (int i = 0; i < 5; ++i)
            add(*store, i);
        // A refused put (unknown destination) is rolled back with its id.
        CHECK_FALSE(store
                        ->put_warrant(make_status(make_warrant("bad", {"none"}, {}, {}),
                                                  v1::WARRANT_STATE_PENDING),
                                      kT0)
                        .ok());
        StateChange end;
        end.state = v1::WARRANT_STATE_DEACTIVATED;
        REQUIRE(store->update_state(xid_of(4), end, kT0).ok());  // the newest one ends
        add(*store, 5);
        CHECK(last == 6);
    }
    {
        auto store = open_store(path);
        for (int i = 6; i < 9; ++i)
            add(*store, i);
        // Modifying keeps the id.
        auto w = make_warrant(xid_of(0), {}, kT0, kT0 + kSecond);
        w.set_liid("LIID-NEW");
        CHECK(put(*store, make_status(w, v1::WARRANT_STATE_PENDING, 2), 1).stored.internal_id == 1);
    }
    {
        // Even with the newest warrants' rows gone (only an administrator with the sqlite3
        // CLI could do that), the counter in meta keeps ids moving forward.
        sqlite3* db = nullptr;
        REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
        CHECK(sqlite3_exec(db, "DELETE FROM warrants WHERE internal_id > 3", nullptr, nullptr,
                           nullptr) == SQLITE_OK);
        sqlite3_close(db);
        auto store = open_store(path);
        add(*store, 100);
        CHECK(last == 10);
    }
    {
        // And with the counter row lost, never below an id still in use.
        sqlite3* db = nullptr;
        REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
        CHECK(sqlite3_exec(db, "DELETE FROM meta", nullptr, nullptr, nullptr) == SQLITE_OK);
        sqlite3_close(db);
        auto store = open_store(path);
        add(*store, 101);
        CHECK(last == 11);
    }
}

TEST_CASE("warrants_needing_attention orders window starts, ends and emergency deadlines",
          "[store]") {
    TempDir dir;
    const std::string path = dir.file("state.db");
    const auto s = [](int n) { return kT0 + n * kSecond; };
    struct Spec {
        const char* name;
        v1::WarrantState state;
        std::optional<std::int64_t> from, until, deadline;
    };
    const Spec specs[] = {
        {"A", v1::WARRANT_STATE_PENDING, s(10), s(100), {}},
        {"B", v1::WARRANT_STATE_PENDING, s(5), s(50), {}},
        {"C", v1::WARRANT_STATE_ACTIVE, s(-10), s(30), {}},
        {"D", v1::WARRANT_STATE_ACTIVE, s(-10), s(1000), s(20)},  // emergency
        {"E", v1::WARRANT_STATE_PENDING, s(-100), s(-50), {}},    // window passed while down
        {"F", v1::WARRANT_STATE_PENDING, s(1), s(200), s(3)},     // emergency
        {"G", v1::WARRANT_STATE_DEACTIVATED, s(-10), s(10), {}},  // ended: never due
        {"H", v1::WARRANT_STATE_ACTIVE, s(-10), s(40), s(25)},    // deadline before window end
        {"I", v1::WARRANT_STATE_ACTIVE, s(-10), s(70), s(70)},    // tie: the window ends it
        {"J", v1::WARRANT_STATE_PENDING, {}, {}, {}},             // no window: never due
    };
    {
        auto store = open_store(path);
        for (const auto& spec : specs) {
            put(*store, make_status(make_warrant(spec.name, {}, spec.from, spec.until), spec.state,
                                    1, spec.deadline));
        }
        CHECK(store->next_attention_ns().value() <= s(0));  // something is overdue
    }

    using Step = std::tuple<std::string, v1::WarrantState, std::int64_t>;
    auto due = [](Store& store, std::int64_t now) {
        auto r = store.warrants_needing_attention(now);
        INFO(r.message());
        REQUIRE(r.ok());
        std::vector<Step> out;
        for (const auto& a : *r)
            out.emplace_back(a.xid, a.to, a.due_ns);
        return out;
    };
    constexpr auto kActive = v1::WARRANT_STATE_ACTIVE;
    constexpr auto kLapsed = v1::WARRANT_STATE_LAPSED;
    constexpr auto kEmergencyLapsed = v1::WARRANT_STATE_EMERGENCY_LAPSED;

    SECTION("after a long outage (a reopened store), at once") {
        auto store = open_store(path);
        const std::vector<Step> expected = {
            {"E", kLapsed, s(-50)},         {"F", kEmergencyLapsed, s(3)},  {"A", kActive, s(10)},
            {"D", kEmergencyLapsed, s(20)}, {"H", kEmergencyLapsed, s(25)}, {"C", kLapsed, s(30)},
            {"B", kLapsed, s(50)},          {"I", kLapsed, s(70)},
        };
        CHECK(due(*store, s(80)) == expected);
        CHECK(due(*store, s(-200)).empty());
    }

    SECTION("step by step, as the scheduler runs them") {
        auto store = open_store(path);
        std::vector<Step> applied;
        std::int64_t now = s(0);
        for (int guard = 0; guard < 50; ++guard) {
            auto attention = store->warrants_needing_attention(now);
            REQUIRE(attention.ok());
            for (const Attention& a : *attention) {
                StateChange change;
                change.state = a.to;
                change.expected_state = a.from;
                if (a.to == kActive) {
                    change.activated_at_ns = a.due_ns;
                } else {
                    change.ended_at_ns = a.due_ns;
                }
                auto r = store->update_state(a.xid, change, now);
                INFO(r.message());
                REQUIRE(r.ok());
                applied.emplace_back(a.xid, a.to, a.due_ns);
            }
            CHECK(due(*store, now).empty());  // nothing left at this time
            auto next = store->next_attention_ns();
            REQUIRE(next.ok());
            if (!next->has_value()) break;
            REQUIRE(**next > now);
            now = **next;
        }
        const std::vector<Step> expected = {
            {"E", kLapsed, s(-50)},         {"F", kActive, s(1)},   {"F", kEmergencyLapsed, s(3)},
            {"B", kActive, s(5)},           {"A", kActive, s(10)},  {"D", kEmergencyLapsed, s(20)},
            {"H", kEmergencyLapsed, s(25)}, {"C", kLapsed, s(30)},  {"B", kLapsed, s(50)},
            {"I", kLapsed, s(70)},          {"A", kLapsed, s(100)},
        };
        CHECK(applied == expected);
        CHECK(store->list_warrants({kActive})->empty());
        CHECK(store->list_warrants({v1::WARRANT_STATE_PENDING})->size() == 1);  // J
        auto a = store->get_warrant("A");
        CHECK(to_unix_ns(a->status.activated_at()) == s(10));
        CHECK(to_unix_ns(a->status.ended_at()) == s(100));
        CHECK_FALSE(store->get_warrant("E")->status.has_activated_at());  // never activated
    }
}

TEST_CASE("an emergency confirmation clears the deadline", "[store]") {
    TempDir dir;
    auto store = open_store(dir.file("state.db"));
    const auto w = make_warrant("E1", {}, kT0, kT0 + 1000 * kSecond, v1::WARRANT_KIND_EMERGENCY);
    put(*store, make_status(w, v1::WARRANT_STATE_ACTIVE, 1, kT0 + 10 * kSecond));
    CHECK(store->next_attention_ns().value() == kT0 + 10 * kSecond);
    StateChange confirm;
    confirm.state = v1::WARRANT_STATE_ACTIVE;
    confirm.clear_emergency_deadline = true;
    auto r = store->update_state("E1", confirm, kT0 + 5 * kSecond);
    REQUIRE(r.ok());
    CHECK_FALSE(r->status.has_emergency_deadline());
    CHECK(store->next_attention_ns().value() == kT0 + 1000 * kSecond);
    CHECK(store->warrants_needing_attention(kT0 + 20 * kSecond)->empty());
}

TEST_CASE("durable counters: blocks, restart with and without the spool's last value", "[store]") {
    TempDir dir;
    const std::string path = dir.file("state.db");
    const std::string iri = Store::sequence_counter("LIID/1", 42, RecordStream::Iri);
    const std::string cc = Store::sequence_counter("LIID/1", 42, RecordStream::Cc);
    CHECK(iri == "seq/LIID/1/42/iri");
    CHECK(iri != cc);
    {
        auto store = open_store(path);
        auto b1 = store->reserve_block(iri, 65536);
        REQUIRE(b1.ok());
        CHECK(b1->first == 0);
        CHECK(b1->end == 65536);
        auto b2 = store->reserve_block(iri, 65536);
        CHECK(b2->first == 65536);
        CHECK(store->reserve_block(cc, 10)->first == 0);  // independent
        CHECK(store->reserve_block(iri, 0).code() == StoreError::InvalidArgument);
        CHECK(store->reserve_block("", 1).code() == StoreError::InvalidArgument);
    }
    {
        // No spool information: continue after the reserved end (a gap, never a repeat).
        auto store = open_store(path);
        CHECK(store->counter_reserved_end(iri).value() == 131072);
        CHECK(store->resume_counter(iri).value() == 131072);
        CHECK(store->reserve_block(iri, 100)->first == 131072);
        // The spool says 70000 was the last one handed over: contiguous from there on.
        CHECK(store->resume_counter(iri, 70000).value() == 70001);
        CHECK(store->reserve_block(iri, 100)->first == 70001);
        CHECK(store->resume_counter("unknown").value() == 0);
        REQUIRE(store->drop_counter(cc).ok());
        CHECK(store->counter_reserved_end(cc).value() == 0);
        CHECK(store->drop_counter("never-existed").ok());
        REQUIRE(store->resume_counter("big", (std::uint64_t{1} << 63) - 10).ok());
        CHECK(store->reserve_block("big", 100).code() == StoreError::Exhausted);
    }
    auto store = open_store(path);
    CHECK(store->counter_reserved_end(iri).value() == 70101);
}

TEST_CASE("open refuses what it must not use, with the path in the message", "[store]") {
    TempDir dir;
    std::string error;

    const std::string junk = dir.file("junk.db");
    {
        FILE* f = std::fopen(junk.c_str(), "w");
        REQUIRE(f != nullptr);
        std::fputs(std::string(8192, 'x').c_str(), f);
        std::fclose(f);
    }
    CHECK(Store::open(junk, error) == nullptr);
    CHECK_THAT(error, Catch::Contains(junk));

    CHECK(Store::open(dir.file("no/such/dir/state.db"), error) == nullptr);
    CHECK_THAT(error, Catch::Contains("no/such/dir"));

    // Another application's SQLite file.
    const std::string foreign = dir.file("foreign.db");
    {
        sqlite3* db = nullptr;
        REQUIRE(sqlite3_open(foreign.c_str(), &db) == SQLITE_OK);
        sqlite3_exec(db, "PRAGMA application_id = 7; CREATE TABLE t (x);", nullptr, nullptr,
                     nullptr);
        sqlite3_close(db);
    }
    CHECK(Store::open(foreign, error) == nullptr);
    CHECK_THAT(error, Catch::Contains("not a tapwire state database"));

    // A schema from a newer build.
    const std::string newer = dir.file("newer.db");
    { open_store(newer); }
    {
        sqlite3* db = nullptr;
        REQUIRE(sqlite3_open(newer.c_str(), &db) == SQLITE_OK);
        sqlite3_exec(db, "UPDATE schema_version SET version = 99", nullptr, nullptr, nullptr);
        sqlite3_close(db);
    }
    CHECK(Store::open(newer, error) == nullptr);
    CHECK_THAT(error, Catch::Contains("schema version 99") && Catch::Contains(newer));

    // The current schema opens again without migrating twice.
    const std::string same_version = dir.file("same.db");
    { open_store(same_version); }
    { open_store(same_version); }
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(same_version.c_str(), &db) == SQLITE_OK);
    sqlite3_stmt* s = nullptr;
    REQUIRE(sqlite3_prepare_v2(db, "SELECT count(*), max(version) FROM schema_version", -1, &s,
                               nullptr) == SQLITE_OK);
    REQUIRE(sqlite3_step(s) == SQLITE_ROW);
    CHECK(sqlite3_column_int(s, 0) == 1);
    CHECK(sqlite3_column_int(s, 1) == Store::kSchemaVersion);
    sqlite3_finalize(s);
    sqlite3_close(db);
}

TEST_CASE("every acknowledged warrant survives kill -9 of the writer", "[store][crash]") {
    TempDir dir;
    const std::string path = dir.file("state.db");
    { REQUIRE(open_store(path)->create_destination(make_destination("lemf-1"), kT0).ok()); }

    std::set<std::string> acknowledged;
    int base = 0;
    for (const int kill_after : {1, 37, 150}) {  // three crashes at different points
        int fds[2];
        REQUIRE(::pipe(fds) == 0);
        const pid_t pid = ::fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            // The child: write warrants as fast as it can and report each one acknowledged.
            ::close(fds[0]);
            std::string error;
            auto store = Store::open(path, error);
            if (!store) ::_exit(2);
            for (int i = base; i < base + 100000; ++i) {
                const auto w = make_warrant(xid_of(i), {"lemf-1"}, kT0, kT0 + kSecond,
                                            v1::WARRANT_KIND_COURT_ORDER, 5);
                if (!store->put_warrant(make_status(w, v1::WARRANT_STATE_PENDING), kT0, 0)) {
                    ::_exit(3);
                }
                const std::string line = xid_of(i) + "\n";  // atomic: < PIPE_BUF
                if (::write(fds[1], line.data(), line.size()) < 0) ::_exit(4);
            }
            ::_exit(0);
        }
        ::close(fds[1]);
        std::string buffer;
        int lines = 0;
        bool killed = false;
        char chunk[4096];
        for (;;) {
            const ssize_t n = ::read(fds[0], chunk, sizeof chunk);
            if (n <= 0) break;  // EOF once the child is gone
            buffer.append(chunk, static_cast<std::size_t>(n));
            for (std::size_t nl; (nl = buffer.find('\n')) != std::string::npos;) {
                acknowledged.insert(buffer.substr(0, nl));
                buffer.erase(0, nl + 1);
                ++lines;
            }
            if (!killed && lines >= kill_after) {
                ::kill(pid, SIGKILL);  // in the middle of the next put
                killed = true;
            }
        }
        ::close(fds[0]);
        int status = 0;
        REQUIRE(::waitpid(pid, &status, 0) == pid);
        INFO("child status " << status);
        REQUIRE(WIFSIGNALED(status));
        CHECK(WTERMSIG(status) == SIGKILL);
        base += 100000;

        auto store = open_store(path);
        CHECK(store->integrity_check().value() == "ok");
        auto list = store->list_warrants();
        REQUIRE(list.ok());
        std::set<std::string> present;
        std::set<std::uint32_t> ids;
        for (const auto& w : *list) {
            present.insert(w.status.warrant().xid());
            CHECK(ids.insert(w.internal_id).second);
            CHECK(w.status.warrant().targets_size() == 5);  // never a torn row
        }
        for (const auto& xid : acknowledged) {
            INFO(xid);
            CHECK(present.count(xid) == 1);
        }
        // At most the one put in flight when the kill came may be there unacknowledged.
        CHECK(present.size() <= acknowledged.size() + 3);
    }
    CHECK(acknowledged.size() >= 1 + 37 + 150);
}

TEST_CASE("a full database is reported and stays usable", "[store][full]") {
    TempDir dir;
    const std::string path = dir.file("state.db");
    StoreOptions capped;
    capped.max_page_count = 64;  // 256 KiB
    std::set<std::string> stored;
    {
        auto store = open_store(path, capped);
        REQUIRE(store->create_destination(make_destination("lemf-1"), kT0).ok());
        StoreFailure full;
        int i = 0;
        for (; i < 10000; ++i) {
            const auto w = make_warrant(xid_of(i), {"lemf-1"}, kT0, kT0 + kSecond,
                                        v1::WARRANT_KIND_COURT_ORDER, 40);  // ~3 KiB each
            auto r = store->put_warrant(make_status(w, v1::WARRANT_STATE_PENDING), kT0, 0);
            if (!r) {
                full = r.failure();
                break;
            }
            stored.insert(xid_of(i));
        }
        REQUIRE(i < 10000);
        CHECK(full.code == StoreError::DiskFull);
        CHECK_THAT(full.message, Catch::Contains("full") && Catch::Contains(path) &&
                                     Catch::Contains("max_page_count"));
        CHECK(stored.size() > 10);
        // The failed warrant is absent, everything before it intact, reads and small writes
        // still work.
        CHECK_FALSE(store->find_by_xid(xid_of(i))->has_value());
        CHECK(store->list_warrants()->size() == stored.size());
        StateChange end;
        end.state = v1::WARRANT_STATE_DEACTIVATED;
        end.ended_at_ns = kT0;
        CHECK(store->update_state(xid_of(0), end, kT0).ok());
        CHECK(store->integrity_check().value() == "ok");
    }
    auto store = open_store(path);  // no cap: the same warrant now fits
    CHECK(store
              ->put_warrant(make_status(make_warrant(xid_of(99999), {}, kT0, kT0 + kSecond,
                                                     v1::WARRANT_KIND_COURT_ORDER, 40),
                                        v1::WARRANT_STATE_PENDING),
                            kT0, 0)
              .ok());
    CHECK(store->list_warrants()->size() == stored.size() + 1);
}

TEST_CASE("a write failure from the file system is reported and loses nothing acknowledged",
          "[store][full]") {
    // A child process limits its file size (RLIMIT_FSIZE): the WAL append that crosses the
    // limit fails like a full disk (a short write: SQLITE_FULL) or with EFBIG (SQLITE_IOERR).
    TempDir dir;
    const std::string path = dir.file("state.db");
    { open_store(path); }
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        ::close(fds[0]);
        ::signal(SIGXFSZ, SIG_IGN);  // get EFBIG instead of being killed
        std::string error;
        auto store = Store::open(path, error);
        if (!store) ::_exit(2);
        const rlimit limit{192 * 1024, 192 * 1024};
        if (::setrlimit(RLIMIT_FSIZE, &limit) != 0) ::_exit(5);
        auto say = [&](const std::string& line) {
            if (::write(fds[1], line.data(), line.size()) < 0) ::_exit(4);
        };
        for (int i = 0; i < 100000; ++i) {
            const auto w =
                make_warrant(xid_of(i), {}, kT0, kT0 + kSecond, v1::WARRANT_KIND_COURT_ORDER, 40);
            auto r = store->put_warrant(make_status(w, v1::WARRANT_STATE_PENDING), kT0, 0);
            if (!r) {
                std::string msg = r.message();
                std::replace(msg.begin(), msg.end(), '\n', ' ');
                say("ERROR " + std::string(to_string(r.code())) + " " + msg + "\n");
                // The connection is still usable for reads.
                say(store->get_warrant(xid_of(0)).ok() ? "READ ok\n" : "READ failed\n");
                ::_exit(0);
            }
            say("ACK " + xid_of(i) + "\n");
        }
        ::_exit(6);
    }
    ::close(fds[1]);
    std::string all;
    char chunk[4096];
    for (ssize_t n; (n = ::read(fds[0], chunk, sizeof chunk)) > 0;) {
        all.append(chunk, static_cast<std::size_t>(n));
    }
    ::close(fds[0]);
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    INFO(all);
    REQUIRE(WIFEXITED(status));
    REQUIRE(WEXITSTATUS(status) == 0);

    std::vector<std::string> acked;
    std::string error_line, read_line;
    for (std::size_t pos = 0; pos < all.size();) {
        const std::size_t nl = all.find('\n', pos);
        const std::string line = all.substr(pos, nl - pos);
        pos = nl + 1;
        if (line.rfind("ACK ", 0) == 0) acked.push_back(line.substr(4));
        if (line.rfind("ERROR ", 0) == 0) error_line = line;
        if (line.rfind("READ ", 0) == 0) read_line = line;
    }
    CHECK(acked.size() > 5);
    const bool full_or_io =
        error_line.rfind("ERROR disk_full ", 0) == 0 || error_line.rfind("ERROR io_error ", 0) == 0;
    CHECK(full_or_io);
    CHECK_THAT(error_line, Catch::Contains(path));
    CHECK(read_line == "READ ok");

    auto store = open_store(path);
    CHECK(store->integrity_check().value() == "ok");
    for (const auto& xid : acked) {
        INFO(xid);
        CHECK(store->find_by_xid(xid)->has_value());
    }
    CHECK(store->list_warrants()->size() == acked.size());
}

TEST_CASE("concurrent use from several threads", "[store][threads]") {
    TempDir dir;
    const std::string path = dir.file("state.db");
    constexpr int kPerThread = 150;

    auto worker = [&](Store& store, int base, std::atomic<int>& failures) {
        for (int i = base; i < base + kPerThread; ++i) {
            const auto w = make_warrant(xid_of(i), {}, kT0, kT0 + kSecond);
            if (!store.put_warrant(make_status(w, v1::WARRANT_STATE_PENDING), kT0, 0)) ++failures;
            if (i % 10 == 0) {
                StateChange activate;
                activate.state = v1::WARRANT_STATE_ACTIVE;
                activate.expected_state = v1::WARRANT_STATE_PENDING;
                if (!store.update_state(xid_of(i), activate, kT0)) ++failures;
                if (!store.list_warrants({v1::WARRANT_STATE_ACTIVE})) ++failures;
                if (!store.warrants_needing_attention(kT0)) ++failures;
            }
        }
    };
    auto check = [&](Store& store) {
        auto list = store.list_warrants();
        REQUIRE(list.ok());
        CHECK(list->size() == 2 * kPerThread);
        std::set<std::uint32_t> ids;
        for (const auto& w : *list)
            ids.insert(w.internal_id);
        CHECK(ids.size() == 2 * kPerThread);
        CHECK(store.list_warrants({v1::WARRANT_STATE_ACTIVE})->size() == 2 * kPerThread / 10);
        CHECK(store.integrity_check().value() == "ok");
    };

    SECTION("one Store shared by two threads") {
        auto store = open_store(path);
        std::atomic<int> failures{0};
        std::thread a(worker, std::ref(*store), 0, std::ref(failures));
        std::thread b(worker, std::ref(*store), 100000, std::ref(failures));
        a.join();
        b.join();
        CHECK(failures == 0);
        check(*store);
    }
    SECTION("two Stores (two connections, as two processes would) on one file") {
        auto one = open_store(path);
        auto two = open_store(path);
        std::atomic<int> failures{0};
        std::thread a(worker, std::ref(*one), 0, std::ref(failures));
        std::thread b(worker, std::ref(*two), 100000, std::ref(failures));
        a.join();
        b.join();
        CHECK(failures == 0);  // BEGIN IMMEDIATE + busy_timeout: no SQLITE_BUSY surfaces
        check(*one);
        check(*two);
    }
}
