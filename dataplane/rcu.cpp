#include "dataplane/rcu.hpp"

#include <new>

#include <rte_malloc.h>

namespace tapwire::dataplane {

std::unique_ptr<QuiescentState> QuiescentState::create(unsigned max_threads) noexcept {
    if (max_threads == 0) return nullptr;
    const std::size_t size = rte_rcu_qsbr_get_memsize(max_threads);
    if (size == 0) return nullptr;
    // DPDK memory: hugepage-backed in production, so the per-thread counters that writers
    // scan sit on cache lines of their own (rte_rcu_qsbr_cnt is cache-aligned).
    auto* v = static_cast<rte_rcu_qsbr*>(rte_zmalloc("tw_qsbr", size, RTE_CACHE_LINE_SIZE));
    if (v == nullptr) return nullptr;
    if (rte_rcu_qsbr_init(v, max_threads) != 0) {
        rte_free(v);
        return nullptr;
    }
    std::unique_ptr<QuiescentState> qs(new (std::nothrow) QuiescentState(v, max_threads));
    if (!qs) rte_free(v);
    return qs;
}

QuiescentState::~QuiescentState() {
    rte_free(v_);
}

bool QuiescentState::register_thread(unsigned thread_id) noexcept {
    return thread_id < max_threads_ && rte_rcu_qsbr_thread_register(v_, thread_id) == 0;
}

bool QuiescentState::unregister_thread(unsigned thread_id) noexcept {
    return thread_id < max_threads_ && rte_rcu_qsbr_thread_unregister(v_, thread_id) == 0;
}

void QuiescentState::synchronize(unsigned self_thread_id) noexcept {
    rte_rcu_qsbr_synchronize(v_, self_thread_id);
}

bool RetireList::init(std::uint32_t capacity) noexcept {
    if (capacity == 0) return false;
    ring_.reset(new (std::nothrow) Item[capacity]);
    if (!ring_) return false;
    capacity_ = capacity;
    head_ = count_ = 0;
    passed_token_ = 0;
    return true;
}

}  // namespace tapwire::dataplane
