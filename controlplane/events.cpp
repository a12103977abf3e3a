#include "controlplane/events.hpp"

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <utility>

namespace tapwire::controlplane {

struct EventHub::Subscriber {
    mutable std::mutex mutex;
    std::condition_variable wake;
    // Shared with the other subscribers' queues: an emit allocates the event once.
    std::deque<std::shared_ptr<const v1::Event>> queue;
    bool closed = false;
    // The run of events lost since the last delivery (contiguous: always the oldest queued).
    std::uint64_t lost = 0;
    std::uint64_t first_lost = 0;
    std::uint64_t last_lost = 0;
    google::protobuf::Timestamp last_lost_time;
    std::uint64_t dropped_total = 0;
};

EventHub::EventHub(std::function<Timestamp()> clock, std::size_t queue_capacity)
    : clock_(std::move(clock)), capacity_(std::max<std::size_t>(queue_capacity, 1)) {}

EventHub::~EventHub() {
    shutdown();
}

void EventHub::emit(v1::Event event) {
    if (is_shut_down()) return;
    auto shared = std::make_shared<v1::Event>(std::move(event));  // allocated outside the lock
    std::lock_guard lock(mutex_);
    if (is_shut_down()) return;
    // Stamped under the lock so that time never goes backwards along the sequence.
    shared->set_sequence(++sequence_);
    if (!shared->has_time()) {
        *shared->mutable_time() = to_proto(
            clock_ ? clock_()
                   : std::chrono::time_point_cast<Duration>(std::chrono::system_clock::now()));
    }
    std::shared_ptr<const v1::Event> item = std::move(shared);
    for (const auto& s : subscribers_) {
        std::lock_guard sub_lock(s->mutex);
        if (s->closed) continue;
        if (s->queue.size() >= capacity_) {
            const v1::Event& oldest = *s->queue.front();
            if (s->lost == 0) s->first_lost = oldest.sequence();
            s->last_lost = oldest.sequence();
            s->last_lost_time = oldest.time();
            ++s->lost;
            ++s->dropped_total;
            dropped_.fetch_add(1, std::memory_order_relaxed);
            s->queue.pop_front();
        }
        s->queue.push_back(item);
        s->wake.notify_one();
    }
}

EventHub::Subscription EventHub::subscribe() {
    auto s = std::make_shared<Subscriber>();
    std::lock_guard lock(mutex_);
    if (is_shut_down()) {
        s->closed = true;
    } else {
        subscribers_.push_back(s);
    }
    return Subscription(this, std::move(s));
}

void EventHub::shutdown() {
    std::lock_guard lock(mutex_);
    shut_down_.store(true, std::memory_order_release);
    for (const auto& s : subscribers_) {
        std::lock_guard sub_lock(s->mutex);
        s->closed = true;
        s->queue.clear();
        s->wake.notify_all();
    }
}

std::uint64_t EventHub::last_sequence() const {
    std::lock_guard lock(mutex_);
    return sequence_;
}

std::size_t EventHub::subscriber_count() const {
    std::lock_guard lock(mutex_);
    return subscribers_.size();
}

void EventHub::unsubscribe(const std::shared_ptr<Subscriber>& s) {
    std::lock_guard lock(mutex_);
    subscribers_.erase(std::remove(subscribers_.begin(), subscribers_.end(), s),
                       subscribers_.end());
}

// ---------------------------------------------------------------------------------------
// Subscription

EventHub::Subscription::Subscription(Subscription&& other) noexcept
    : hub_(std::exchange(other.hub_, nullptr)), s_(std::move(other.s_)) {}

EventHub::Subscription& EventHub::Subscription::operator=(Subscription&& other) noexcept {
    if (this != &other) {
        reset();
        hub_ = std::exchange(other.hub_, nullptr);
        s_ = std::move(other.s_);
    }
    return *this;
}

EventHub::Subscription::~Subscription() {
    reset();
}

void EventHub::Subscription::reset() {
    if (hub_ != nullptr && s_) hub_->unsubscribe(s_);
    hub_ = nullptr;
    s_.reset();
}

bool EventHub::Subscription::next(v1::Event& out, std::chrono::milliseconds timeout) {
    if (!s_) return false;
    std::shared_ptr<const v1::Event> item;
    {
        std::unique_lock lock(s_->mutex);
        Subscriber& s = *s_;
        if (!s.wake.wait_for(lock, timeout, [&s] { return s.closed || !s.queue.empty(); })) {
            return false;
        }
        if (s.closed) return false;
        if (s.lost > 0) {
            // Delivered before the first event after the gap; the gap stays visible in the
            // sequence numbers too (this alarm takes the last lost one's).
            out.Clear();
            out.set_sequence(s.last_lost);
            *out.mutable_time() = s.last_lost_time;
            out.set_kind(v1::EVENT_ALARM);
            out.set_detail("event feed overflow: " + std::to_string(s.lost) +
                           " events lost (sequence " + std::to_string(s.first_lost) + ".." +
                           std::to_string(s.last_lost) + "), this subscriber fell more than " +
                           std::to_string(hub_ != nullptr ? hub_->queue_capacity() : 0) +
                           " events behind");
            auto& counters = *out.mutable_counters();
            counters["lost"] = s.lost;
            counters["first_lost_sequence"] = s.first_lost;
            counters["last_lost_sequence"] = s.last_lost;
            s.lost = 0;
            return true;
        }
        item = std::move(s.queue.front());
        s.queue.pop_front();
    }
    out = *item;  // the copy outside the lock: emitters only wait for the pop
    return true;
}

void EventHub::Subscription::cancel() {
    if (!s_) return;
    std::lock_guard lock(s_->mutex);
    s_->closed = true;
    s_->queue.clear();
    s_->wake.notify_all();
}

bool EventHub::Subscription::closed() const {
    if (!s_) return true;
    std::lock_guard lock(s_->mutex);
    return s_->closed;
}

std::uint64_t EventHub::Subscription::dropped() const {
    if (!s_) return 0;
    std::lock_guard lock(s_->mutex);
    return s_->dropped_total;
}

std::size_t EventHub::Subscription::queued() const {
    if (!s_) return 0;
    std::lock_guard lock(s_->mutex);
    return s_->queue.size();
}

// ---------------------------------------------------------------------------------------

v1::Event warrant_event(const StoredWarrant& warrant, v1::EventKind kind, std::string detail) {
    v1::Event e;
    e.set_kind(kind);
    e.set_xid(warrant.status.warrant().xid());
    e.set_liid(warrant.status.warrant().liid());
    e.set_detail(std::move(detail));
    (*e.mutable_counters())["version"] = warrant.status.version();
    return e;
}

}  // namespace tapwire::controlplane
