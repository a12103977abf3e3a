// The control plane's in-process event bus: what Appliance.WatchEvents streams.
//
// Emitters are gRPC handler threads, the window scheduler and the dataplane-link thread;
// none of them may ever wait for a subscriber (a stalled operator console must not delay a
// warrant's activation). So each subscriber has its own bounded queue, and when it is full
// the oldest events are dropped, not the emitter: the loss is counted (per subscriber and
// hub-wide, ApplianceStatus.events_dropped) and the subscriber's next event is an
// EVENT_ALARM saying how many it lost.
//
// Ordering: events are stamped with a sequence number and queued to every subscriber under
// one lock, so every subscriber sees them in sequence order (and one emitter's events in the
// order it emitted them). An emit costs one allocation plus a short lock per subscriber;
// the event itself is shared between the queues, not copied.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "controlplane/store.hpp"
#include "controlplane/warrant.hpp"
#include "tapwire/v1/controlplane.pb.h"

namespace tapwire::controlplane {

/// The event feed. Thread-safe. Must outlive its subscriptions.
class EventHub {
  public:
    /// Events a subscriber may fall behind before it loses the oldest (the proto's figure).
    static constexpr std::size_t kDefaultQueueCapacity = 4096;

    class Subscription;

    /// `clock` stamps events without a time (default: the system clock, UTC);
    /// `queue_capacity` (>= 1) is each subscriber's bound.
    explicit EventHub(std::function<Timestamp()> clock = {},
                      std::size_t queue_capacity = kDefaultQueueCapacity);
    /// Shuts down (wakes every waiting subscriber).
    ~EventHub();
    EventHub(const EventHub&) = delete;
    EventHub& operator=(const EventHub&) = delete;

    /// Stamps `event` with the next sequence number (1, 2, 3, ... per hub; main() makes one
    /// hub per process) and, when it has none, the time; then queues it for every current
    /// subscriber. Never waits for a subscriber. A no-op after shutdown().
    void emit(v1::Event event);

    /// A subscription to every event emitted from now on.
    Subscription subscribe();

    /// Ends the feed: every next() returns false from now on, waiting ones at once. Call it
    /// before grpc::Server::Shutdown(), which waits for open WatchEvents streams to end.
    void shutdown();
    bool is_shut_down() const noexcept { return shut_down_.load(std::memory_order_acquire); }

    /// Events dropped from subscriber queues since the hub was made (all subscribers,
    /// current and gone): ApplianceStatus.events_dropped.
    std::uint64_t dropped() const noexcept { return dropped_.load(std::memory_order_relaxed); }
    /// The last sequence number handed out (0: nothing emitted yet).
    std::uint64_t last_sequence() const;
    std::size_t subscriber_count() const;
    std::size_t queue_capacity() const noexcept { return capacity_; }

  private:
    struct Subscriber;
    void unsubscribe(const std::shared_ptr<Subscriber>& s);

    std::function<Timestamp()> clock_;
    const std::size_t capacity_;
    mutable std::mutex mutex_;  // subscribers_, sequence_; taken before a Subscriber's
    std::vector<std::shared_ptr<Subscriber>> subscribers_;
    std::uint64_t sequence_ = 0;
    std::atomic<bool> shut_down_{false};
    std::atomic<std::uint64_t> dropped_{0};
};

/// One subscriber's end of the feed; unsubscribes when destroyed. Movable. next() is meant
/// for one consuming thread; cancel() may be called from any thread.
class EventHub::Subscription {
  public:
    Subscription() = default;
    Subscription(Subscription&& other) noexcept;
    Subscription& operator=(Subscription&& other) noexcept;
    ~Subscription();

    /// The next event, waiting up to `timeout`. Before the first event after a loss it
    /// yields an EVENT_ALARM for this subscriber alone: detail says how many events were
    /// lost, counters hold "lost", "first_lost_sequence" and "last_lost_sequence" (the lost
    /// events are always a contiguous run), and its sequence is the last lost one's, so the
    /// sequence numbers a subscriber sees still increase. False on timeout, after cancel(),
    /// after the hub's shutdown(), or for a default-made subscription.
    bool next(v1::Event& out, std::chrono::milliseconds timeout);

    /// Wakes a waiting next() and makes every later one return false.
    void cancel();
    /// True after cancel() or the hub's shutdown() (next() will only return false).
    bool closed() const;
    /// Events this subscriber lost to overflow, in total.
    std::uint64_t dropped() const;
    /// Events waiting in this subscriber's queue.
    std::size_t queued() const;

  private:
    friend class EventHub;
    Subscription(EventHub* hub, std::shared_ptr<Subscriber> s) : hub_(hub), s_(std::move(s)) {}
    void reset();

    EventHub* hub_ = nullptr;
    std::shared_ptr<Subscriber> s_;
};

/// An event about a warrant: kind, XID, LIID and `detail`. Never the targets (the feed is
/// read by operators, who may not learn who is intercepted).
v1::Event warrant_event(const StoredWarrant& warrant, v1::EventKind kind, std::string detail = {});

}  // namespace tapwire::controlplane
