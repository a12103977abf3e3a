// The worker pipeline, driven packet by packet: two workers share the flow tables the way two
// lcores do, with every SIP message steered to one worker and every media packet to the other
// (as RSS does: signalling and media of a call have different 5-tuples). Media learned from
// SDP on worker 0 must be intercepted on worker 1, with the right direction and warrants.
#include <catch2/catch.hpp>
#include <chrono>
#include <thread>

#include <rte_mbuf.h>
#include <rte_ring.h>

#include <bitset>
#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "common/shm_contract.hpp"
#include "dataplane/worker.hpp"
#include "tests/unit/eal_fixture.hpp"
#include "tools/traffic/call_flow.hpp"

using namespace tapwire;
using namespace tapwire::dataplane;
using tapwire::traffic::FrameKind;

namespace {

struct Rig {
    std::unique_ptr<QuiescentState> qs;
    std::unique_ptr<FlowTables> tables;
    std::unique_ptr<Published<TargetSet>> targets;
    rte_mempool* rx_pool = nullptr;
    rte_mempool* hit_pool = nullptr;
    std::vector<rte_ring*> rings;
    shm::WorkerCounters counters[2] = {};
    std::bitset<65536> sip_ports;
    std::vector<std::unique_ptr<Worker>> workers;

    explicit Rig(const std::vector<std::string>& target_identities, unsigned ring_size = 8192) {
        REQUIRE(test::ensure_eal());
        static int instance = 0;
        std::string tag = std::to_string(instance++);
        qs = QuiescentState::create(3);
        REQUIRE(qs);
        std::string error;
        FlowTablesConfig cfg;
        cfg.max_dialogs = 1024;
        cfg.max_media = 4096;
        tables = FlowTables::create(cfg, *qs, &error);
        INFO(error);
        REQUIRE(tables);
        std::vector<TargetSpec> specs;
        for (std::size_t i = 0; i < target_identities.size(); ++i)
            specs.push_back({target_identities[i], static_cast<std::uint32_t>(100 + i)});
        TargetSetOptions options;
        options.workers = 2;
        auto built = TargetSet::build(specs, options);
        INFO(built.error);
        REQUIRE(built.set);
        targets = std::make_unique<Published<TargetSet>>(*qs, std::move(built.set));
        rx_pool = rte_pktmbuf_pool_create(("tw_t_rx" + tag).c_str(), 4096, 0, 0,
                                          RTE_MBUF_DEFAULT_BUF_SIZE, SOCKET_ID_ANY);
        hit_pool =
            rte_pktmbuf_pool_create(("tw_t_hit" + tag).c_str(), 16384, 0, sizeof(shm::HitMeta),
                                    RTE_MBUF_DEFAULT_BUF_SIZE, SOCKET_ID_ANY);
        REQUIRE(rx_pool);
        REQUIRE(hit_pool);
        sip_ports.set(5060);
        for (unsigned w = 0; w < 2; ++w) {
            rings.push_back(rte_ring_create(("tw_t_ring" + tag + "_" + std::to_string(w)).c_str(),
                                            ring_size, SOCKET_ID_ANY,
                                            RING_F_SP_ENQ | RING_F_SC_DEQ));
            REQUIRE(rings.back());
            WorkerSetup s;
            s.index = w;
            s.rcu_thread_id = w + 1;
            s.sip_ports = &sip_ports;
            s.hit_ring = rings[w];
            s.hit_pool = hit_pool;
            s.counters = &counters[w];
            s.tables = tables.get();
            s.qs = qs.get();
            s.targets = targets.get();
            workers.push_back(std::make_unique<Worker>(s));
        }
    }

    ~Rig() {
        for (auto* r : rings) {
            void* m;
            while (rte_ring_dequeue(r, &m) == 0)
                rte_pktmbuf_free(static_cast<rte_mbuf*>(m));
            rte_ring_free(r);
        }
        workers.clear();
        targets.reset();
        tables.reset();
        rte_mempool_free(hit_pool);
        rte_mempool_free(rx_pool);
    }

    void feed(unsigned worker, const std::vector<std::uint8_t>& frame, std::uint64_t now) {
        rte_mbuf* m = rte_pktmbuf_alloc(rx_pool);
        REQUIRE(m);
        std::memcpy(rte_pktmbuf_append(m, static_cast<std::uint16_t>(frame.size())), frame.data(),
                    frame.size());
        workers[worker]->process(&m, 1, now);
        rte_pktmbuf_free(m);
    }

    std::vector<shm::HitMeta> drain(unsigned worker) {
        std::vector<shm::HitMeta> out;
        void* m;
        while (rte_ring_dequeue(rings[worker], &m) == 0) {
            auto* mbuf = static_cast<rte_mbuf*>(m);
            out.push_back(*static_cast<shm::HitMeta*>(rte_mbuf_to_priv(mbuf)));
            rte_pktmbuf_free(mbuf);
        }
        return out;
    }
};

// Feeds worker 0 up to the first targeted SIP message that follows targeted media, so the
// first targeted call is under intercept mid-way; returns that message's frame index.
template <class Frames>
std::size_t feed_into_first_call(Rig& rig, const Frames& frames) {
    std::size_t i = 0;
    bool media_seen = false;
    for (; i < frames.size(); ++i) {
        const auto& f = frames[i];
        if (media_seen && f.targeted && f.kind == FrameKind::Sip) break;
        media_seen = media_seen || (f.targeted && f.kind == FrameKind::Rtp);
        rig.feed(0, f.bytes, f.time_ns);
    }
    return i;
}

}  // namespace

TEST_CASE("media learned on one worker is intercepted on another", "[worker]") {
    auto scenario = traffic::make_scenario("demo");
    REQUIRE(scenario);
    auto frames = traffic::render_scenario(*scenario);
    Rig rig(scenario->targets);

    std::map<int, std::uint64_t> expected_media, expected_sip;  // per call index
    for (const auto& f : frames) {
        bool media = f.kind == FrameKind::Rtp || f.kind == FrameKind::Rtcp;
        rig.feed(media ? 1 : 0, f.bytes, f.time_ns);
        if (f.targeted && media) ++expected_media[f.call_index];
        if (f.targeted && f.kind == FrameKind::Sip) expected_sip[f.call_index] += f.sip_messages;
    }
    auto sip_hits = rig.drain(0);
    auto media_hits = rig.drain(1);

    std::uint64_t want_media = 0, want_sip = 0;
    for (auto& [call, n] : expected_media)
        want_media += n;
    for (auto& [call, n] : expected_sip)
        want_sip += n;
    CHECK(sip_hits.size() == want_sip);
    CHECK(media_hits.size() == want_media);
    CHECK(rig.counters[1][shm::WorkerCounter::hits_rtp] +
              rig.counters[1][shm::WorkerCounter::hits_rtcp] ==
          want_media);

    // One correlation id per call, shared by its SIP (worker 0) and media (worker 1) hits.
    std::set<std::uint64_t> sip_cids, media_cids;
    for (const auto& h : sip_hits) {
        CHECK(h.kind == shm::HitKind::Sip);
        CHECK(h.warrant_count >= 1);
        CHECK(h.correlation_id != 0);
        sip_cids.insert(h.correlation_id);
    }
    for (const auto& h : media_hits) {
        CHECK((h.kind == shm::HitKind::Rtp || h.kind == shm::HitKind::Rtcp));
        CHECK(h.worker == 1);
        CHECK(h.warrant_count >= 1);
        CHECK(h.direction != shm::HitDirection::Unknown);
        media_cids.insert(h.correlation_id);
    }
    for (auto cid : media_cids)
        CHECK(sip_cids.count(cid) == 1);
    CHECK(media_cids.size() == expected_media.size());
    for (unsigned w = 0; w < 2; ++w) {
        CHECK(rig.counters[w][shm::WorkerCounter::drop_ring_full] == 0);
        CHECK(rig.counters[w][shm::WorkerCounter::drop_pool_empty] == 0);
    }
}

TEST_CASE("hit direction follows the target's side of the call", "[worker]") {
    auto scenario = traffic::make_scenario("basic");
    REQUIRE(scenario);
    auto frames = traffic::render_scenario(*scenario);
    Rig rig(scenario->targets);
    for (const auto& f : frames)
        rig.feed(0, f.bytes, f.time_ns);
    auto hits = rig.drain(0);
    REQUIRE_FALSE(hits.empty());
    // Find which party is the target from the INVITE's direction, then check RTP both ways.
    std::size_t from = 0, to = 0;
    for (const auto& h : hits) {
        if (h.kind != shm::HitKind::Rtp) continue;
        from += h.direction == shm::HitDirection::FromTarget;
        to += h.direction == shm::HitDirection::ToTarget;
    }
    // Each side sends the same number of RTP packets in the generator's calls.
    CHECK(from > 0);
    CHECK(from == to);
}

TEST_CASE("a warrant activated mid-call joins the call at its next SIP message", "[worker]") {
    auto scenario = traffic::make_scenario("basic");
    REQUIRE(scenario);
    auto frames = traffic::render_scenario(*scenario);
    Rig rig(scenario->targets);  // warrants 100, 101, ...

    std::size_t i = feed_into_first_call(rig, frames);
    REQUIRE(i < frames.size());
    const int call = frames[i].call_index;
    for (const auto& h : rig.drain(0))
        for (unsigned k = 0; k < h.warrant_count; ++k)
            CHECK(h.warrant_ids[k] != 999);

    // Another agency's warrant on the same target becomes effective now.
    std::vector<TargetSpec> specs;
    for (std::size_t t = 0; t < scenario->targets.size(); ++t)
        specs.push_back({scenario->targets[t], std::uint32_t(100 + t)});
    specs.push_back({scenario->targets[0], 999});
    specs.push_back({scenario->targets.back(), 999});
    TargetSetOptions options;
    options.workers = 2;
    auto built = TargetSet::build(specs, options);
    REQUIRE(built.set);
    rig.targets->publish(std::move(built.set));

    // The rest of that call: its next SIP message and every later packet carry warrant 999.
    std::size_t joined = 0, of_call = 0;
    for (; i < frames.size(); ++i) {
        const auto& f = frames[i];
        rig.feed(0, f.bytes, f.time_ns);
        for (const auto& h : rig.drain(0)) {
            if (f.call_index != call || !f.targeted) continue;
            ++of_call;
            for (unsigned k = 0; k < h.warrant_count; ++k)
                joined += h.warrant_ids[k] == 999;
        }
    }
    CHECK(of_call > 2);
    CHECK(joined == of_call);
}

TEST_CASE("a warrant that ends mid-call leaves the call; with none left it is not followed",
          "[worker]") {
    auto scenario = traffic::make_scenario("basic");
    REQUIRE(scenario);
    auto frames = traffic::render_scenario(*scenario);
    Rig rig(scenario->targets);  // warrants 100, 101, ... plus 999 below
    auto publish = [&](std::vector<std::uint32_t> warrants) {
        std::vector<TargetSpec> specs;
        for (std::uint32_t w : warrants)
            for (const auto& t : scenario->targets)
                specs.push_back({t, w});
        TargetSetOptions options;
        options.workers = 2;
        auto built = TargetSet::build(specs, options);
        REQUIRE(built.set);
        rig.targets->publish(std::move(built.set));
    };
    publish({100, 999});

    std::size_t i = feed_into_first_call(rig, frames);
    REQUIRE(i < frames.size());
    const int call = frames[i].call_index;
    rig.drain(0);

    // Warrant 100 ends: from the call's next SIP message on, its hits carry only 999.
    publish({999});
    std::size_t i_after = i;
    std::size_t of_call = 0, with_100 = 0;
    bool sip_seen = false;
    for (; i_after < frames.size(); ++i_after) {
        const auto& f = frames[i_after];
        if (f.call_index == call && f.kind == FrameKind::Sip && sip_seen) break;
        rig.feed(0, f.bytes, f.time_ns);
        sip_seen = sip_seen || (f.call_index == call && f.kind == FrameKind::Sip);
        for (const auto& h : rig.drain(0)) {
            if (f.call_index != call) continue;
            ++of_call;
            for (unsigned k = 0; k < h.warrant_count; ++k)
                with_100 += h.warrant_ids[k] == 100;
        }
    }
    CHECK(of_call > 0);
    CHECK(with_100 == 0);

    // Every warrant ends: the call's next SIP message ends its interception; nothing of it
    // is mirrored any more.
    publish({});
    std::size_t mirrored = 0;
    for (; i_after < frames.size(); ++i_after) {
        const auto& f = frames[i_after];
        rig.feed(0, f.bytes, f.time_ns);
        for (const auto& h : rig.drain(0)) {
            (void)h;
            mirrored += f.call_index == call;
        }
    }
    CHECK(mirrored == 0);
}

TEST_CASE("a full hit ring drops copies and counts them, never blocks", "[worker]") {
    auto scenario = traffic::make_scenario("demo");
    REQUIRE(scenario);
    auto frames = traffic::render_scenario(*scenario);
    Rig rig(scenario->targets, 64);  // far fewer slots than the demo's hits
    for (const auto& f : frames)
        rig.feed(0, f.bytes, f.time_ns);
    const auto& c = rig.counters[0];
    std::uint64_t hits = c[shm::WorkerCounter::hits_sip] + c[shm::WorkerCounter::hits_rtp] +
                         c[shm::WorkerCounter::hits_rtcp];
    CHECK(c[shm::WorkerCounter::rx_packets] == frames.size());
    CHECK(c[shm::WorkerCounter::drop_ring_full] > 0);
    CHECK(rig.drain(0).size() + c[shm::WorkerCounter::drop_ring_full] == hits);
}

TEST_CASE("the TSC clock follows the wall clock when DPDK's TSC rate is off", "[worker]") {
    REQUIRE(test::ensure_eal());
    const auto wall_ns = [] {
        return std::uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                 std::chrono::system_clock::now().time_since_epoch())
                                 .count());
    };
    const auto error_ms = [&](const Clock& c) {
        const double e = double(std::int64_t(c.ns(rte_rdtsc()) - wall_ns())) / 1e6;
        return e < 0 ? -e : e;
    };
    // A rate 0.5% too high (seen: 0.15% on a VM): 600 ms later the clock is ~3 ms slow.
    Clock clock(rte_get_tsc_hz() + rte_get_tsc_hz() / 200);
    std::this_thread::sleep_for(std::chrono::milliseconds(600));
    CHECK(error_ms(clock) > 1.0);
    // Re-anchoring puts it back on the wall clock and measures the true rate over the interval,
    clock.recalibrate();
    CHECK(error_ms(clock) < 0.5);
    // so that it stays on it until the next re-anchor.
    std::this_thread::sleep_for(std::chrono::milliseconds(600));
    CHECK(error_ms(clock) < 0.5);
    // (The rate measured here may itself differ from DPDK's: by 0.15% on the development VM,
    // the very error this corrects.)
    WARN("TSC rate: DPDK " << rte_get_tsc_hz() << " Hz, measured against the wall clock "
                           << clock.tsc_hz() << " Hz");
}
