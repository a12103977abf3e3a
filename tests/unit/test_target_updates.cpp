// TargetUpdater: control-plane commands through a real rte_ring and mempool into published
// snapshots, the background base compilation, and the progress reported in shared memory.
#include "dataplane/target_updates.hpp"

#include <rte_errno.h>
#include <rte_mempool.h>
#include <rte_ring.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "common/identity.hpp"
#include "tests/unit/eal_fixture.hpp"

using namespace tapwire;
using namespace tapwire::dataplane;
using W = std::vector<std::uint32_t>;

namespace {

shm::TargetCommand command(shm::TargetOp op, std::uint32_t warrant = 0, std::string text = {},
                           std::uint64_t sequence = 0) {
    shm::TargetCommand c{};
    c.op = op;
    c.warrant_id = warrant;
    c.sequence = sequence;
    c.length = std::uint8_t(std::min(text.size(), shm::kMaxTargetText));
    std::memcpy(c.text, text.data(), c.length);
    return c;
}

// One warrant's targets replaced, as the control plane sends it.
void replace(TargetUpdater& u, std::uint32_t warrant, std::vector<std::string> ids) {
    u.apply(command(shm::TargetOp::Replace, warrant));
    for (auto& id : ids)
        u.apply(command(shm::TargetOp::Add, warrant, id));
}

W warrants_of(const Published<TargetSet>& p, const std::string& raw) {
    NormalizedIdentity n;
    REQUIRE(normalize_identity(raw, n) == IdentityError::Ok);
    std::string_view ids[] = {n.view()};
    MatchResult r;
    r.clear();
    p.load()->match_identities(ids, 0, r);
    W w(r.warrant_ids().begin(), r.warrant_ids().end());
    std::sort(w.begin(), w.end());
    return w;
}

W address_warrants(const Published<TargetSet>& p, const char* text) {
    MatchResult r;
    r.clear();
    p.load()->match_address(IpAddress::parse(text).value(), r);
    W w(r.warrant_ids().begin(), r.warrant_ids().end());
    std::sort(w.begin(), w.end());
    return w;
}

struct Fixture {
    std::unique_ptr<QuiescentState> qs;
    std::unique_ptr<Published<TargetSet>> published;
    shm::TargetPublication out{};

    Fixture() {
        REQUIRE(test::ensure_eal());
        qs = QuiescentState::create(1);
        REQUIRE(qs);
        published = std::make_unique<Published<TargetSet>>(*qs);
    }
};

}  // namespace

TEST_CASE("a batch applies at its commit, atomically, and reports the sequence",
          "[target_updates]") {
    Fixture f;
    TargetUpdater u(*f.published, &f.out, {});
    replace(u, 1, {"sip:alice@example.com", "+49 30 555-010"});
    replace(u, 2, {"sip:alice@example.com", "192.0.2.0/24"});
    CHECK(f.published->load() == nullptr);  // not before the commit
    u.apply(command(shm::TargetOp::Commit, 0, {}, 7));
    REQUIRE(f.published->load() != nullptr);
    CHECK(f.out.commit_applied == 7);
    CHECK(f.out.warrants == 2);
    CHECK(f.out.targets == 4);
    CHECK(warrants_of(*f.published, "sip:alice@example.com") == W{1, 2});
    CHECK(warrants_of(*f.published, "tel:+4930555010") == W{1});
    CHECK(address_warrants(*f.published, "192.0.2.77") == W{2});

    // Replace with nothing removes; a replaced warrant keeps only its new targets.
    replace(u, 1, {});
    replace(u, 2, {"sip:bob@example.com"});
    u.apply(command(shm::TargetOp::Commit, 0, {}, 8));
    CHECK(f.out.commit_applied == 8);
    CHECK(warrants_of(*f.published, "sip:alice@example.com").empty());
    CHECK(warrants_of(*f.published, "sip:bob@example.com") == W{2});
    CHECK(address_warrants(*f.published, "192.0.2.77").empty());
    CHECK(f.out.warrants == 1);
}

TEST_CASE("malformed commands and invalid targets are counted, never applied", "[target_updates]") {
    Fixture f;
    TargetUpdater u(*f.published, &f.out, {});
    u.apply(command(shm::TargetOp::Add, 3, "sip:x@example.com"));  // no Replace before
    u.apply(command(shm::TargetOp::Replace, 0));                   // warrant 0 is reserved
    replace(u, 4, {"tel:+49-30-x", "sip:ok@example.com"});         // first one invalid
    shm::TargetCommand bad = command(shm::TargetOp::Commit);
    bad.op = shm::TargetOp(99);
    u.apply(bad);
    u.apply(command(shm::TargetOp::Commit, 0, {}, 1));
    CHECK(f.out.commands_invalid == 4);
    CHECK(std::string(f.out.last_error).find("unknown command") != std::string::npos);
    CHECK(std::string(f.out.last_error).find("+49") == std::string::npos);  // no targets
    CHECK(warrants_of(*f.published, "sip:ok@example.com") == W{4});
    CHECK(f.out.targets == 1);
}

TEST_CASE("a sync replaces everything, and an unfinished batch is discarded by it",
          "[target_updates]") {
    Fixture f;
    TargetUpdater u(*f.published, &f.out, {});
    replace(u, 1, {"sip:a@example.com"});
    replace(u, 2, {"sip:b@example.com"});
    u.apply(command(shm::TargetOp::Commit, 0, {}, 1));
    // A control plane dies mid-batch: its Replace of warrant 1 is never committed.
    replace(u, 1, {});
    // The restarted control plane syncs: warrant 2 and a new warrant 3.
    u.apply(command(shm::TargetOp::SyncBegin));
    replace(u, 2, {"sip:b@example.com"});
    replace(u, 3, {"sip:c@example.com"});
    u.apply(command(shm::TargetOp::Commit, 0, {}, 2));
    CHECK(f.out.commit_applied == 2);
    CHECK(warrants_of(*f.published, "sip:a@example.com").empty());  // not in the sync
    CHECK(warrants_of(*f.published, "sip:b@example.com") == W{2});
    CHECK(warrants_of(*f.published, "sip:c@example.com") == W{3});
}

TEST_CASE("commands arrive through a real ring and mempool", "[target_updates]") {
    Fixture f;
    const std::string suffix = std::to_string(getpid());
    rte_mempool* pool =
        rte_mempool_create(("tw_t_pool" + suffix).c_str(), 1023, sizeof(shm::TargetCommand), 0, 0,
                           nullptr, nullptr, nullptr, nullptr, SOCKET_ID_ANY, 0);
    rte_ring* ring =
        rte_ring_create(("tw_t_ring" + suffix).c_str(), 1024, SOCKET_ID_ANY, RING_F_SC_DEQ);
    REQUIRE(pool);
    REQUIRE(ring);
    TargetUpdater u(*f.published, &f.out, {});
    auto send = [&](const shm::TargetCommand& c) {
        void* obj = nullptr;
        REQUIRE(rte_mempool_get(pool, &obj) == 0);
        std::memcpy(obj, &c, sizeof c);
        REQUIRE(rte_ring_enqueue(ring, obj) == 0);
    };
    send(command(shm::TargetOp::SyncBegin));
    send(command(shm::TargetOp::Replace, 9));
    send(command(shm::TargetOp::Add, 9, "sip:ring@example.com"));
    send(command(shm::TargetOp::Commit, 0, {}, 42));
    CHECK(u.poll(ring) == 4);
    CHECK(f.out.commit_applied == 42);
    CHECK(f.out.commands == 4);
    CHECK(rte_mempool_avail_count(pool) == 1023);  // every command returned
    CHECK(warrants_of(*f.published, "sip:ring@example.com") == W{9});

    // Three batches waiting at once are published as one snapshot, holding all three.
    const std::uint64_t generation = f.published->generation();
    for (std::uint32_t w = 10; w < 13; ++w) {
        send(command(shm::TargetOp::Replace, w));
        send(command(shm::TargetOp::Add, w, "sip:batch" + std::to_string(w) + "@example.com"));
        send(command(shm::TargetOp::Commit, 0, {}, 40 + w));
    }
    CHECK(u.poll(ring) == 9);
    CHECK(f.published->generation() == generation + 1);
    CHECK(f.out.commit_applied == 52);
    CHECK(warrants_of(*f.published, "sip:batch10@example.com") == W{10});
    CHECK(warrants_of(*f.published, "sip:batch12@example.com") == W{12});
    rte_ring_free(ring);
    rte_mempool_free(pool);
}

TEST_CASE("past the delta limit a base compiles in the background while commits go on",
          "[target_updates]") {
    Fixture f;
    TargetUpdaterOptions options;
    options.delta_limit = 50;
    options.delta_hard_limit = 400;
    TargetUpdater u(*f.published, &f.out, options);

    // 100 warrants of 2 targets: the delta passes its limit, a rebuild starts.
    for (std::uint32_t w = 1; w <= 100; ++w)
        replace(u, w,
                {"sip:user" + std::to_string(w) + "@example.com",
                 "tel:+4930" + std::to_string(1000 + w)});
    u.apply(command(shm::TargetOp::Commit, 0, {}, 1));
    CHECK(f.out.commit_applied == 1);  // 200 targets: within the hard limit, published now
    CHECK(u.rebuilding());

    // While it compiles: a warrant in the rebuild is removed, another modified, one added.
    replace(u, 5, {});
    replace(u, 6, {"sip:moved6@example.com"});
    replace(u, 500, {"sip:new@example.com"});
    u.apply(command(shm::TargetOp::Commit, 0, {}, 2));
    CHECK(f.out.commit_applied == 2);

    for (int i = 0; i < 1000 && u.rebuilding(); ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
        u.service();
    }
    REQUIRE_FALSE(u.rebuilding());
    CHECK(f.out.rebuilds == 1);
    CHECK(f.out.base_targets == 200);      // as it was when the rebuild started
    CHECK(f.out.delta_targets == 2);       // warrants 6 and 500 changed since
    CHECK(f.out.suspended_warrants == 2);  // 5 and 6 in the base
    CHECK(warrants_of(*f.published, "sip:user5@example.com").empty());
    CHECK(warrants_of(*f.published, "sip:user6@example.com").empty());
    CHECK(warrants_of(*f.published, "sip:moved6@example.com") == W{6});
    CHECK(warrants_of(*f.published, "sip:new@example.com") == W{500});
    CHECK(warrants_of(*f.published, "sip:user7@example.com") == W{7});
    CHECK(warrants_of(*f.published, "tel:+49301100") == W{100});
    CHECK(f.out.targets == 200 - 2 - 2 + 1 + 1);
}

TEST_CASE("a bulk load past the hard limit waits for the background base", "[target_updates]") {
    Fixture f;
    TargetUpdaterOptions options;
    options.delta_limit = 10;
    options.delta_hard_limit = 20;
    TargetUpdater u(*f.published, &f.out, options);
    for (std::uint32_t w = 1; w <= 30; ++w)
        replace(u, w, {"sip:bulk" + std::to_string(w) + "@example.com"});
    u.apply(command(shm::TargetOp::Commit, 0, {}, 3));
    CHECK(f.out.commit_applied == 0);  // not yet: compiling in the background
    for (int i = 0; i < 1000 && u.rebuilding(); ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
        u.service();
    }
    CHECK(f.out.commit_applied == 3);
    CHECK(f.out.base_targets == 30);
    CHECK(f.out.delta_targets == 0);
    CHECK(warrants_of(*f.published, "sip:bulk30@example.com") == W{30});

    // The standalone target file path: load() is synchronous.
    std::vector<TargetSpec> specs = {{"sip:file@example.com", 77}};
    CHECK(u.load(specs, 4).empty());
    CHECK(f.out.commit_applied == 4);
    CHECK(warrants_of(*f.published, "sip:file@example.com") == W{77});
    CHECK(warrants_of(*f.published, "sip:bulk30@example.com").empty());
}
