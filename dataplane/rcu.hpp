// RCU building blocks for the dataplane: quiescent-state tracking (DPDK rte_rcu_qsbr), a
// deferred-free list for pooled entries, and Published<T> (an immutable snapshot swapped by
// pointer).
//
// Why QSBR: workers poll in a loop and already have a natural point where they hold no
// pointer into shared state, the end of each loop iteration. Reporting a quiescent state
// there is one load of the global token plus a store when it moved (a few ns per
// iteration, not per packet), and readers then need no lock, no atomic read-modify-write
// and no reference count at all. A writer that unpublishes something (pointer swap, hash
// delete) takes a token with start() and may free the memory once passed(token): every
// reader that could have seen the old object has since passed a quiescent state or gone
// offline.
//
// One QuiescentState serves the whole dataplane: the flow tables, rte_hash's own key-slot
// reclamation and the target-set snapshot all wait on it, so a worker reports once per
// iteration for everything.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <utility>

// DPDK headers are C and trip C++ pedantic/volatile warnings; they are not our code.
#include <rte_rcu_qsbr.h>

namespace tapwire::dataplane {

/// Quiescent-state-based reclamation over DPDK's rte_rcu_qsbr.
///
/// Reader threads (workers) have ids in [0, max_threads), usually their lcore id. A reader
/// registers once, goes online, and calls quiescent() once per poll-loop iteration at a
/// point where it holds no pointer obtained from shared state; it goes offline before it
/// blocks or sleeps. Pointers a reader loaded stay valid until its next quiescent() or
/// offline(). Writers never wait on the hot path: they take a token with start() and test
/// it with passed(); only the control side blocks in synchronize().
class QuiescentState {
  public:
    static constexpr unsigned kNoThread = RTE_QSBR_THRID_INVALID;

    /// Creates the state in DPDK memory (the EAL must be up). Returns nullptr on failure.
    static std::unique_ptr<QuiescentState> create(unsigned max_threads) noexcept;
    ~QuiescentState();
    QuiescentState(const QuiescentState&) = delete;
    QuiescentState& operator=(const QuiescentState&) = delete;

    unsigned max_threads() const noexcept { return max_threads_; }

    /// Adds a reader. Idempotent; thread-safe. The reader starts offline.
    bool register_thread(unsigned thread_id) noexcept;
    /// Removes a reader (it must be offline). Thread-safe.
    bool unregister_thread(unsigned thread_id) noexcept;

    /// The reader will report quiescent states; writers wait for it from now on.
    void online(unsigned thread_id) noexcept { rte_rcu_qsbr_thread_online(v_, thread_id); }
    /// The reader holds no shared pointer and will not until online() again.
    void offline(unsigned thread_id) noexcept { rte_rcu_qsbr_thread_offline(v_, thread_id); }
    /// Once per poll-loop iteration: every pointer this reader loaded so far is released.
    /// Cost: one shared load, plus one store when a writer started a grace period.
    void quiescent(unsigned thread_id) noexcept { rte_rcu_qsbr_quiescent(v_, thread_id); }

    /// Starts a grace period after the caller's unpublishing stores (release); returns its
    /// token. Lock-free, callable from workers.
    std::uint64_t start() noexcept { return rte_rcu_qsbr_start(v_); }
    /// True once every reader online at start() has reported a quiescent state or gone
    /// offline. Never blocks. A registered reader that asks about a token taken in its own
    /// current iteration gets false until its next quiescent().
    bool passed(std::uint64_t token) noexcept { return rte_rcu_qsbr_check(v_, token, false) == 1; }
    /// Blocks until a full grace period has elapsed. Control side only. If the caller is
    /// itself a registered reader, pass its id so that it does not wait for itself.
    void synchronize(unsigned self_thread_id = kNoThread) noexcept;

    /// The DPDK object, for rte_hash_rcu_qsbr_add and friends.
    rte_rcu_qsbr* raw() noexcept { return v_; }

  private:
    QuiescentState(rte_rcu_qsbr* v, unsigned max_threads) noexcept
        : v_(v), max_threads_(max_threads) {}

    rte_rcu_qsbr* v_;
    unsigned max_threads_;
};

/// Takes a registered reader online for a scope (for a thread that reads shared state only
/// now and then, such as the housekeeping sweep) and offline again at the end.
class OnlineScope {
  public:
    OnlineScope(QuiescentState& qs, unsigned thread_id) noexcept : qs_(qs), id_(thread_id) {
        qs_.online(id_);
    }
    ~OnlineScope() { qs_.offline(id_); }
    OnlineScope(const OnlineScope&) = delete;
    OnlineScope& operator=(const OnlineScope&) = delete;

  private:
    QuiescentState& qs_;
    unsigned id_;
};

/// FIFO of retired items (pool indices) waiting for a grace period: our equivalent of
/// rte_rcu_qsbr_dq. The DPDK defer queue is experimental in 22.11 and adds a ring plus an
/// indirect call per item for what, under the writers' lock, is a plain ring buffer.
/// Tokens grow in push order, so reclaim() stops at the first item whose grace period is
/// still running. Not thread-safe: the owner serialises push() and reclaim().
class RetireList {
  public:
    /// Allocates room for capacity items (control side, at start-up).
    bool init(std::uint32_t capacity) noexcept;

    /// Queues item, unpublished before token was taken. False only when full, which a
    /// capacity of at least the pool size rules out.
    bool push(std::uint32_t item, std::uint64_t token) noexcept {
        if (count_ == capacity_) return false;
        ring_[(head_ + count_) % capacity_] = Item{token, item};
        ++count_;
        return true;
    }

    /// Calls release(item) for every item whose grace period has passed, oldest first, at
    /// most max of them. Never blocks. Returns the number released.
    template <class Release>
    std::uint32_t reclaim(QuiescentState& qs, Release&& release,
                          std::uint32_t max = UINT32_MAX) noexcept {
        std::uint32_t n = 0;
        while (count_ != 0 && n < max) {
            const Item& it = ring_[head_];
            // One rte_rcu_qsbr_check answers for every older token too.
            if (it.token > passed_token_) {
                if (!qs.passed(it.token)) break;
                passed_token_ = it.token;
            }
            release(it.item);
            head_ = (head_ + 1) % capacity_;
            --count_;
            ++n;
        }
        return n;
    }

    std::uint32_t size() const noexcept { return count_; }
    std::uint32_t capacity() const noexcept { return capacity_; }

  private:
    struct Item {
        std::uint64_t token;
        std::uint32_t item;
    };
    std::unique_ptr<Item[]> ring_;
    std::uint32_t capacity_ = 0;
    std::uint32_t head_ = 0;
    std::uint32_t count_ = 0;
    std::uint64_t passed_token_ = 0;
};

/// An immutable snapshot that readers use without any lock while the control side replaces
/// it (the target set: Hyperscan database plus match tables).
///
/// Readers call load() (one acquire load) and may use the snapshot until their next
/// quiescent(); they never see a half-built snapshot because publish() stores the pointer
/// only after construction (release), and never a destroyed one because the old snapshot is
/// destroyed only after a grace period. publish() blocks for that grace period, typically
/// one poll-loop iteration of the slowest worker (microseconds), on the control side only.
template <class T>
class Published {
  public:
    explicit Published(QuiescentState& qs, std::unique_ptr<T> initial = nullptr) noexcept
        : qs_(qs), current_(initial.release()) {}
    /// Precondition: no reader uses the snapshot any more (workers stopped or offline).
    ~Published() { delete current_.load(std::memory_order_relaxed); }
    Published(const Published&) = delete;
    Published& operator=(const Published&) = delete;

    /// Hot path: the current snapshot, or nullptr before the first publish.
    const T* load() const noexcept { return current_.load(std::memory_order_acquire); }

    /// Control side: makes next current, waits for a grace period, destroys the previous
    /// snapshot. Publishers are serialised. self_thread_id: the caller's reader id when it
    /// is itself a registered reader, so that it does not wait for itself.
    void publish(std::unique_ptr<T> next, unsigned self_thread_id = QuiescentState::kNoThread) {
        std::lock_guard<std::mutex> guard(publish_mutex_);
        T* old = current_.exchange(next.release(), std::memory_order_acq_rel);
        generation_.fetch_add(1, std::memory_order_relaxed);
        if (old == nullptr) return;
        qs_.synchronize(self_thread_id);
        delete old;
    }

    /// Number of publish() calls so far (for telemetry: which target set is live).
    std::uint64_t generation() const noexcept {
        return generation_.load(std::memory_order_relaxed);
    }

  private:
    QuiescentState& qs_;
    std::atomic<T*> current_;
    std::atomic<std::uint64_t> generation_{0};
    std::mutex publish_mutex_;
};

}  // namespace tapwire::dataplane
