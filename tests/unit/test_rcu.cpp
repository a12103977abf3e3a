// QuiescentState, RetireList and Published<T>: grace periods are honoured, readers never see
// a destroyed snapshot.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include "dataplane/rcu.hpp"
#include "tests/unit/eal_fixture.hpp"

using namespace tapwire::dataplane;
using namespace std::chrono_literals;

TEST_CASE("QuiescentState: a grace period waits for online readers only", "[rcu]") {
    REQUIRE(tapwire::test::ensure_eal());
    auto qs = QuiescentState::create(4);
    REQUIRE(qs);
    REQUIRE(qs->max_threads() == 4);
    REQUIRE_FALSE(qs->register_thread(4));  // out of range
    REQUIRE(qs->register_thread(1));
    REQUIRE(qs->register_thread(1));  // idempotent

    // Offline readers never hold a grace period back.
    std::uint64_t t = qs->start();
    REQUIRE(qs->passed(t));

    qs->online(1);
    t = qs->start();
    REQUIRE_FALSE(qs->passed(t));  // reader 1 may still hold a pointer from before
    qs->quiescent(1);
    REQUIRE(qs->passed(t));

    t = qs->start();
    REQUIRE_FALSE(qs->passed(t));
    qs->offline(1);
    REQUIRE(qs->passed(t));

    // synchronize() with our own id reports for us instead of waiting for us.
    qs->online(1);
    qs->synchronize(1);
    qs->offline(1);
    REQUIRE(qs->unregister_thread(1));
}

TEST_CASE("QuiescentState: synchronize blocks until the reader reports", "[rcu]") {
    REQUIRE(tapwire::test::ensure_eal());
    auto qs = QuiescentState::create(2);
    REQUIRE(qs);
    REQUIRE(qs->register_thread(0));
    qs->online(0);

    std::atomic<bool> done{false};
    std::thread control([&] {
        qs->synchronize();
        done = true;
    });
    std::this_thread::sleep_for(50ms);
    CHECK_FALSE(done.load());  // reader 0 is online and has not reported
    qs->quiescent(0);
    control.join();
    REQUIRE(done.load());
    qs->offline(0);
}

TEST_CASE("RetireList: releases in order, only after the grace period", "[rcu]") {
    REQUIRE(tapwire::test::ensure_eal());
    auto qs = QuiescentState::create(2);
    REQUIRE(qs);
    REQUIRE(qs->register_thread(0));
    qs->online(0);

    RetireList list;
    REQUIRE(list.init(3));
    std::vector<std::uint32_t> released;
    auto release = [&](std::uint32_t item) { released.push_back(item); };

    REQUIRE(list.push(10, qs->start()));
    REQUIRE(list.push(11, qs->start()));
    REQUIRE(list.reclaim(*qs, release) == 0);  // reader 0 has not passed a quiescent state
    qs->quiescent(0);
    REQUIRE(list.push(12, qs->start()));  // taken after the reader's report: still pending
    REQUIRE(list.push(13, 0) == false);   // full (capacity 3)
    REQUIRE(list.reclaim(*qs, release) == 2);
    REQUIRE(released == std::vector<std::uint32_t>{10, 11});
    REQUIRE(list.size() == 1);
    qs->quiescent(0);
    REQUIRE(list.reclaim(*qs, release, 1) == 1);
    REQUIRE(released.back() == 12);
    REQUIRE(list.size() == 0);
    qs->offline(0);
}

namespace {

// A snapshot that makes use-after-destroy visible even without ASan: the destructor
// scribbles over the fields that readers check.
struct Snapshot {
    static constexpr std::uint64_t kAlive = 0x5eed5eed5eed5eedULL;
    std::uint64_t magic = kAlive;
    std::uint64_t value = 0;
    std::uint64_t check = ~0ULL;         // always ~value
    std::vector<std::uint64_t> payload;  // heap: ASan reports reads after delete

    explicit Snapshot(std::uint64_t v) : value(v), check(~v), payload(64, v) {}
    ~Snapshot() {
        magic = 0xdeaddeaddeaddeadULL;
        value = check = 0;
    }
};

}  // namespace

TEST_CASE("Published: readers never see a destroyed snapshot", "[rcu]") {
    REQUIRE(tapwire::test::ensure_eal());
    auto qs = QuiescentState::create(4);
    REQUIRE(qs);
    Published<Snapshot> published(*qs, std::make_unique<Snapshot>(0));

    std::atomic<bool> stop{false};
    std::atomic<std::uint64_t> bad{0};
    std::atomic<std::uint64_t> reads{0};
    std::atomic<unsigned> ready{0};
    auto reader = [&](unsigned id) {
        qs->register_thread(id);
        qs->online(id);
        ++ready;
        std::uint64_t local_reads = 0, last = 0;
        while (!stop.load(std::memory_order_relaxed)) {
            // One "poll-loop iteration": use the snapshot for a while, then report.
            const Snapshot* s = published.load();
            for (int i = 0; i < 16; ++i) {
                if (s->magic != Snapshot::kAlive || s->check != ~s->value ||
                    s->payload[static_cast<std::size_t>(i)] != s->value)
                    ++bad;
            }
            if (s->value < last) ++bad;  // snapshots only move forward
            last = s->value;
            ++local_reads;
            qs->quiescent(id);
        }
        qs->offline(id);
        reads += local_reads;
    };
    std::thread r1(reader, 1), r2(reader, 2);
    while (ready.load() < 2)
        std::this_thread::yield();

    const auto until = std::chrono::steady_clock::now() + 1s;
    std::uint64_t n = 0;
    while (std::chrono::steady_clock::now() < until)
        published.publish(std::make_unique<Snapshot>(++n));
    stop = true;
    r1.join();
    r2.join();

    INFO("publishes " << n << ", reads " << reads.load());
    REQUIRE(bad.load() == 0);
    REQUIRE(n >= 10);  // each publish waits a grace period: few on a loaded 2-core box
    REQUIRE(reads.load() > 1000);
    REQUIRE(published.generation() == n);
    REQUIRE(published.load()->value == n);
}

TEST_CASE("Published: a publisher that is itself a reader does not wait for itself", "[rcu]") {
    REQUIRE(tapwire::test::ensure_eal());
    auto qs = QuiescentState::create(2);
    REQUIRE(qs);
    REQUIRE(qs->register_thread(0));
    qs->online(0);
    Published<Snapshot> published(*qs);
    REQUIRE(published.load() == nullptr);
    published.publish(std::make_unique<Snapshot>(1), 0);
    published.publish(std::make_unique<Snapshot>(2), 0);  // would hang without the self id
    REQUIRE(published.load()->value == 2);
    qs->offline(0);
}
