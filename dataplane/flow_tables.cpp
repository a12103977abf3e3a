#include "dataplane/flow_tables.hpp"

#include <sys/random.h>

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <new>
#include <type_traits>

#include <rte_errno.h>
#include <rte_hash_crc.h>
#include <rte_malloc.h>
#include <rte_pause.h>
#include <rte_random.h>

#include "common/x_list.hpp"
namespace tapwire::dataplane {

static_assert(std::is_trivially_destructible_v<DialogEntry>);
static_assert(std::is_trivially_destructible_v<MediaEntry>);
// A hit reads lines 0 and 1 only (see the layout comment in the header).
static_assert(sizeof(MediaEntry) == 128);
static_assert(offsetof(MediaEntry, warrants) + offsetof(WarrantSet, ids) == 64);
static_assert(offsetof(MediaEntry, last_seen_ns) < 64 && offsetof(MediaEntry, correlation_id) < 64);
static_assert(sizeof(DialogEntry) == 512);
static_assert(offsetof(DialogEntry, warrants) + offsetof(WarrantSet, ids) == 64);
static_assert(offsetof(DialogEntry, last_seen_ns) < 64);

namespace {

constexpr const char* kResultNames[] = {TAPWIRE_FLOW_RESULTS(TAPWIRE_X_TEXT)};

constexpr const char* kCounterNames[] = {TAPWIRE_FLOW_TABLE_COUNTERS(TAPWIRE_X_NAME)};

constexpr const char* kCounterDescriptions[] = {TAPWIRE_FLOW_TABLE_COUNTERS(TAPWIRE_X_TEXT)};

constexpr std::uint64_t kPoison = 0xA5A5A5A5A5A5A5A5ULL;

// ---- SipHash-2-4, 128-bit output (Aumasson, Bernstein: "SipHash: a fast short-input PRF")

constexpr std::uint64_t rotl(std::uint64_t x, int b) noexcept {
    return (x << b) | (x >> (64 - b));
}

struct SipState {
    std::uint64_t v0, v1, v2, v3;
    void round() noexcept {
        v0 += v1;
        v1 = rotl(v1, 13);
        v1 ^= v0;
        v0 = rotl(v0, 32);
        v2 += v3;
        v3 = rotl(v3, 16);
        v3 ^= v2;
        v0 += v3;
        v3 = rotl(v3, 21);
        v3 ^= v0;
        v2 += v1;
        v1 = rotl(v1, 17);
        v1 ^= v2;
        v2 = rotl(v2, 32);
    }
    void absorb(std::uint64_t m) noexcept {
        v3 ^= m;
        round();
        round();
        v0 ^= m;
    }
};

std::uint64_t load_le64(const std::uint8_t* p) noexcept {
    std::uint64_t v;
    std::memcpy(&v, p, sizeof v);
    return v;  // x86 and arm64 (the targets) are little-endian
}

// rte_hash signature and bucket index come from these 32 bits; the key is already a PRF
// output, so any 32 of its bits are uniform.
std::uint32_t dialog_key_hash(const void* key, std::uint32_t, std::uint32_t) {
    std::uint64_t lo;
    std::memcpy(&lo, key, sizeof lo);
    return static_cast<std::uint32_t>(lo);
}

// SSE4.2 crc32 over the 20 key bytes: three instructions. Loads go through memcpy because
// keys are only 2-byte aligned (rte_hash_crc() would load them as uint64_t).
std::uint32_t media_key_hash(const void* key, std::uint32_t, std::uint32_t seed) {
    static_assert(sizeof(MediaKey) == 20);
    const auto* p = static_cast<const std::uint8_t*>(key);
    std::uint64_t a, b;
    std::uint32_t c;
    std::memcpy(&a, p, 8);
    std::memcpy(&b, p + 8, 8);
    std::memcpy(&c, p + 16, 4);
    return rte_hash_crc_4byte(c, rte_hash_crc_8byte(b, rte_hash_crc_8byte(a, seed)));
}

std::atomic<unsigned> g_table_serial{0};

bool in_specs(std::span<const MediaSpec> specs, const MediaKey& key) noexcept {
    for (const MediaSpec& s : specs)
        if (s.key == key) return true;
    return false;
}

void copy_dialog(DialogEntry& dst, const DialogEntry& src) noexcept {
    dst.key = src.key;
    dst.correlation_id = src.correlation_id;
    dst.created_ns = src.created_ns;
    dst.caller_tag = src.caller_tag;
    dst.linger_until_ns = src.linger_until_ns;
    dst.target_side = src.target_side;
    dst.state = src.state;
    dst.media_count = src.media_count;
    dst.warrants = src.warrants;
    dst.media = src.media;
    dst.media_party = src.media_party;
    dst.last_seen_ns.store(src.last_seen_ns.load(std::memory_order_relaxed),
                           std::memory_order_relaxed);
}

void raise_last_seen(std::atomic<std::uint64_t>& seen, std::uint64_t now_ns) noexcept {
    if (seen.load(std::memory_order_relaxed) < now_ns)
        seen.store(now_ns, std::memory_order_relaxed);
}

bool starts_with_nocase(std::string_view s, std::string_view prefix) noexcept {
    if (s.size() < prefix.size()) return false;
    for (std::size_t i = 0; i < prefix.size(); ++i) {
        char c = s[i];
        if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
        if (c != prefix[i]) return false;
    }
    return true;
}

bool contains_nocase(std::string_view s, std::string_view word) noexcept {
    for (std::size_t i = 0; i + word.size() <= s.size(); ++i)
        if (starts_with_nocase(s.substr(i), word)) return true;
    return false;
}

}  // namespace

const char* to_string(FlowResult r) noexcept {
    const auto i = static_cast<std::size_t>(r);
    return i < std::size(kResultNames) ? kResultNames[i] : "unknown";
}

const char* to_string(FlowTableCounter c) noexcept {
    const auto i = static_cast<std::size_t>(c);
    return i < kFlowTableCounterCount ? kCounterNames[i] : "unknown";
}

const char* describe(FlowTableCounter c) noexcept {
    const auto i = static_cast<std::size_t>(c);
    return i < kFlowTableCounterCount ? kCounterDescriptions[i] : "unknown";
}

DialogKey siphash128(const void* data, std::size_t size, std::uint64_t k0,
                     std::uint64_t k1) noexcept {
    SipState s{k0 ^ 0x736f6d6570736575ULL, k1 ^ 0x646f72616e646f6dULL ^ 0xee,
               k0 ^ 0x6c7967656e657261ULL, k1 ^ 0x7465646279746573ULL};
    const auto* p = static_cast<const std::uint8_t*>(data);
    const std::size_t whole = size & ~std::size_t{7};
    for (std::size_t i = 0; i < whole; i += 8)
        s.absorb(load_le64(p + i));
    // Last block: the remaining bytes, little-endian, with the length's low byte on top.
    std::uint64_t last = static_cast<std::uint64_t>(size) << 56;
    for (std::size_t i = 0; i < (size & 7); ++i)
        last |= static_cast<std::uint64_t>(p[whole + i]) << (8 * i);
    s.absorb(last);
    s.v2 ^= 0xee;
    for (int i = 0; i < 4; ++i)
        s.round();
    DialogKey key;
    key.lo = s.v0 ^ s.v1 ^ s.v2 ^ s.v3;
    s.v1 ^= 0xdd;
    for (int i = 0; i < 4; ++i)
        s.round();
    key.hi = s.v0 ^ s.v1 ^ s.v2 ^ s.v3;
    return key;
}

void collect_media(const SdpSession& sdp, MediaSpecList& out) noexcept {
    constexpr std::uint8_t kUdp = 17, kTcp = 6;
    constexpr unsigned kMaxPortCount = 8;  // m=video 49170/2 style hierarchies; more is abuse
    for (const SdpMedia& m : sdp.media) {
        // RFC 3264 section 5.1: port 0 disables the stream; without an address (missing c=)
        // there is nothing to follow.
        if (m.port == 0 || m.address.empty()) continue;
        // c=IN IP4 0.0.0.0 is the RFC 2543 way to put a call on hold (RFC 3264 section 8.4):
        // no packet is ever sent there.
        if (std::all_of(m.address.bytes.begin(), m.address.bytes.end(),
                        [](std::uint8_t b) { return b == 0; }))
            continue;
        const std::uint8_t l4 = starts_with_nocase(m.proto, "TCP") ? kTcp : kUdp;
        const bool rtp = contains_nocase(m.proto, "RTP");
        const unsigned pairs = std::clamp<unsigned>(m.port_count, 1, kMaxPortCount);
        for (unsigned i = 0; i < pairs; ++i) {
            // RFC 8866 section 5.14: with a port count, RTP uses every other port from port.
            const unsigned port = m.port + 2 * i;
            if (port > 65535) break;
            const MediaKey key = MediaKey::make(m.address, static_cast<std::uint16_t>(port), l4);
            if (!rtp) {
                out.push({key, MediaKind::NonRtp});
                continue;
            }
            if (m.rtcp_mux) {
                out.push({key, MediaKind::RtpRtcpMux});
                // RFC 5761 section 5.1.1: if the answer declines rtcp-mux, RTCP goes to the
                // usual port+1 (an a=rtcp port is not known here once mux applies).
                if (!m.has_rtcp_attribute && port < 65535)
                    out.push({MediaKey::make(m.address, static_cast<std::uint16_t>(port + 1), l4),
                              MediaKind::Rtcp});
                continue;
            }
            out.push({key, MediaKind::Rtp});
            // RFC 3605 a=rtcp applies to the first pair; further pairs use port+1 (RFC 3550
            // section 11).
            const unsigned rtcp_port = i == 0 ? m.rtcp_port : port + 1;
            const IpAddress& rtcp_addr =
                i == 0 && !m.rtcp_address.empty() ? m.rtcp_address : m.address;
            if (rtcp_port != 0 && rtcp_port <= 65535)
                out.push({MediaKey::make(rtcp_addr, static_cast<std::uint16_t>(rtcp_port), l4),
                          MediaKind::Rtcp});
        }
    }
}

// ---- SlotPool

SlotPool::~SlotPool() {
    rte_free(meta_);
    delete[] free_;
}

bool SlotPool::init(std::uint32_t slots, int socket_id, Poison poison, void* ctx) noexcept {
    meta_ = static_cast<Meta*>(
        rte_zmalloc_socket("tw_slot_meta", sizeof(Meta) * slots, RTE_CACHE_LINE_SIZE, socket_id));
    free_ = new (std::nothrow) std::uint32_t[slots];
    if (meta_ == nullptr || free_ == nullptr || !retired_.init(slots)) return false;
    for (std::uint32_t i = 0; i < slots; ++i) {
        new (&meta_[i]) Meta();
        free_[i] = slots - 1 - i;  // pops slot 0 first: tests read nicer, nothing depends on it
    }
    size_ = free_count_ = slots;
    poison_ = poison;
    poison_ctx_ = ctx;
    return true;
}

std::uint32_t SlotPool::alloc(QuiescentState& qs) noexcept {
    if (free_count_ == 0) reclaim(qs);
    if (free_count_ == 0) return kNone;
    const std::uint32_t slot = free_[--free_count_];
    Meta& m = meta_[slot];
    m.generation.store(m.generation.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    m.state.store(static_cast<std::uint8_t>(State::Filling), std::memory_order_relaxed);
    return slot;
}

void SlotPool::abort(std::uint32_t slot) noexcept {
    meta_[slot].state.store(static_cast<std::uint8_t>(State::Free), std::memory_order_relaxed);
    free_[free_count_++] = slot;
}

void SlotPool::publish(std::uint32_t slot) noexcept {
    // Release: the sweep reads the entry after seeing Live (acquire).
    meta_[slot].state.store(static_cast<std::uint8_t>(State::Live), std::memory_order_release);
}

void SlotPool::retire(std::uint32_t slot, QuiescentState& qs) noexcept {
    meta_[slot].state.store(static_cast<std::uint8_t>(State::Retired), std::memory_order_relaxed);
    // The token is taken after the entry was unpublished (hash delete or pointer swap), so
    // its grace period covers every reader that could have loaded the pointer.
    const std::uint64_t token = qs.start();
    if (!retired_.push(slot, token)) {
        // Unreachable: the list holds as many items as the pool has slots. Leaking the slot
        // is the safe answer if it ever happened.
    }
}

std::uint32_t SlotPool::reclaim(QuiescentState& qs) noexcept {
    return retired_.reclaim(qs, [this](std::uint32_t slot) { release(slot); });
}

void SlotPool::release(std::uint32_t slot) noexcept {
    // Poison what a reader would check first, so that a reclaim-before-grace-period bug
    // shows as a wrong key or id in the concurrency test rather than as silent reuse.
    if (poison_ != nullptr) poison_(poison_ctx_, slot);
    meta_[slot].state.store(static_cast<std::uint8_t>(State::Free), std::memory_order_relaxed);
    free_[free_count_++] = slot;
}

// ---- FlowTables: construction

class FlowTables::WriterLock {
  public:
    explicit WriterLock(std::atomic<bool>& lock) noexcept : lock_(lock) {
        // Test-and-test-and-set: waiters spin on a shared read, not on the bus.
        while (lock_.exchange(true, std::memory_order_acquire))
            while (lock_.load(std::memory_order_relaxed))
                rte_pause();
    }
    ~WriterLock() { lock_.store(false, std::memory_order_release); }
    WriterLock(const WriterLock&) = delete;
    WriterLock& operator=(const WriterLock&) = delete;

  private:
    std::atomic<bool>& lock_;
};

FlowTables::FlowTables(const FlowTablesConfig& config, QuiescentState& qs) noexcept
    : config_(config), qs_(qs), next_correlation_id_(config.first_correlation_id) {}

std::unique_ptr<FlowTables> FlowTables::create(const FlowTablesConfig& config, QuiescentState& qs,
                                               std::string* error) {
    auto fail = [&](const char* why) -> std::unique_ptr<FlowTables> {
        if (error != nullptr) *error = why;
        return nullptr;
    };
    if (config.max_dialogs < 8 || config.max_dialogs > (1u << 22))
        return fail("flow tables: max_dialogs must be 8..4194304");
    if (config.max_media < 8 || config.max_media > (1u << 24))
        return fail("flow tables: max_media must be 8..16777216");
    if (config.evict_above_percent > 100 || config.evict_to_percent >= config.evict_above_percent)
        return fail("flow tables: need evict_to_percent < evict_above_percent <= 100");
    if (config.linger_ns == 0 || config.dialog_idle_timeout_ns == 0 ||
        config.media_idle_timeout_ns == 0)
        return fail("flow tables: linger and idle timeouts must be > 0");
    if (config.sweeper_thread_id >= qs.max_threads())
        return fail("flow tables: sweeper_thread_id is outside the QSBR thread range");
    std::unique_ptr<FlowTables> t(new (std::nothrow) FlowTables(config, qs));
    if (!t) return fail("flow tables: out of memory");
    std::string why;
    if (!t->init(&why)) return fail(why.c_str());
    return t;
}

bool FlowTables::init(std::string* error) noexcept {
    auto fail = [&](const char* what) {
        if (error != nullptr) {
            char buf[160];
            std::snprintf(buf, sizeof buf, "flow tables: %s failed: %s", what,
                          rte_strerror(rte_errno));
            *error = buf;
        }
        return false;
    };
    key0_ = config_.call_id_key0;
    key1_ = config_.call_id_key1;
    if (key0_ == 0 && key1_ == 0) {
        std::uint64_t k[2];
        if (getrandom(k, sizeof k, 0) == static_cast<ssize_t>(sizeof k)) {
            key0_ = k[0], key1_ = k[1];
        } else {
            key0_ = rte_rand(), key1_ = rte_rand();
        }
    }

    auto slack = [&](std::uint32_t cap) {
        return config_.pool_slack != 0 ? config_.pool_slack : cap / 8 + 64;
    };
    const std::uint32_t dialog_slots = config_.max_dialogs + slack(config_.max_dialogs);
    const std::uint32_t media_slots = config_.max_media + slack(config_.max_media);
    const int socket = config_.socket_id;

    dialogs_ = static_cast<DialogEntry*>(rte_zmalloc_socket(
        "tw_dialogs", sizeof(DialogEntry) * dialog_slots, RTE_CACHE_LINE_SIZE, socket));
    media_ = static_cast<MediaEntry*>(rte_zmalloc_socket(
        "tw_media", sizeof(MediaEntry) * media_slots, RTE_CACHE_LINE_SIZE, socket));
    if (dialogs_ == nullptr || media_ == nullptr) return fail("entry pool allocation");
    for (std::uint32_t i = 0; i < dialog_slots; ++i)
        new (&dialogs_[i]) DialogEntry();
    for (std::uint32_t i = 0; i < media_slots; ++i)
        new (&media_[i]) MediaEntry();

    auto poison_dialog = [](void* ctx, std::uint32_t slot) {
        DialogEntry& e = static_cast<FlowTables*>(ctx)->dialogs_[slot];
        e.key = DialogKey{kPoison, kPoison};
        e.correlation_id = kPoison;
        e.media_count = 0;
        e.warrants.count = 0;
        e.warrants.ids.fill(static_cast<WarrantId>(kPoison));
    };
    auto poison_media = [](void* ctx, std::uint32_t slot) {
        MediaEntry& e = static_cast<FlowTables*>(ctx)->media_[slot];
        e.key.address.fill(0xA5);
        e.correlation_id = kPoison;
        e.dialog = DialogKey{kPoison, kPoison};
        e.warrants.count = 0;
        e.warrants.ids.fill(static_cast<WarrantId>(kPoison));
    };
    if (!dialog_slots_.init(dialog_slots, socket, poison_dialog, this) ||
        !media_slots_.init(media_slots, socket, poison_media, this))
        return fail("slot pool allocation");

    dialog_candidates_.reset(new (std::nothrow) Candidate[dialog_slots]);
    media_candidates_.reset(new (std::nothrow) Candidate[media_slots]);
    if (!dialog_candidates_ || !media_candidates_) return fail("sweep candidate allocation");

    // Names are global to the process (memzones, rings): short and numbered, because
    // rte_hash derives ring names ("HT_", "RCU_HASH_RCU_") that must fit 29 characters.
    const unsigned serial = g_table_serial.fetch_add(1);
    char dialog_name[RTE_HASH_NAMESIZE];
    char media_name[RTE_HASH_NAMESIZE];
    std::snprintf(dialog_name, sizeof dialog_name, "twd%u", serial);
    std::snprintf(media_name, sizeof media_name, "twm%u", serial);

    // Lock-free readers; writers serialised by our lock (so no MULTI_WRITER_ADD, whose
    // per-lcore slot caches also break for non-EAL threads). The extendable bucket table
    // makes capacity exact: an insert below capacity never fails on cuckoo displacement.
    const std::uint8_t flags =
        RTE_HASH_EXTRA_FLAGS_RW_CONCURRENCY_LF | RTE_HASH_EXTRA_FLAGS_EXT_TABLE;
    rte_hash_parameters dp{};
    dp.name = dialog_name;
    dp.entries = dialog_slots;  // keys awaiting reclamation also hold a slot
    dp.key_len = sizeof(DialogKey);
    dp.hash_func = dialog_key_hash;
    dp.socket_id = socket;
    dp.extra_flag = flags;
    dialog_hash_ = rte_hash_create(&dp);
    if (dialog_hash_ == nullptr) return fail("dialog hash creation");

    rte_hash_parameters mp{};
    mp.name = media_name;
    mp.entries = media_slots;
    mp.key_len = sizeof(MediaKey);
    mp.hash_func = media_key_hash;
    mp.hash_func_init_val = static_cast<std::uint32_t>(key1_);
    mp.socket_id = socket;
    mp.extra_flag = flags;
    media_hash_ = rte_hash_create(&mp);
    if (media_hash_ == nullptr) return fail("media hash creation");

    // rte_hash frees a deleted key's slot (and extendable bucket) only after a grace period
    // on our QuiescentState: its defer queue is reclaimed on later deletes and on inserts
    // that find no free slot.
    for (rte_hash* h : {dialog_hash_, media_hash_}) {
        rte_hash_rcu_config rcu{};
        rcu.v = qs_.raw();
        rcu.mode = RTE_HASH_QSBR_MODE_DQ;
        rcu.trigger_reclaim_limit = 32;
        if (rte_hash_rcu_qsbr_add(h, &rcu) != 0) return fail("rte_hash_rcu_qsbr_add");
    }

    if (!qs_.register_thread(config_.sweeper_thread_id))
        return fail("registering the sweeper thread id");
    return true;
}

FlowTables::~FlowTables() {
    // rte_hash_free reclaims its defer queue; with no reader online every grace period has
    // passed. The entries are trivially destructible: freeing the pools is enough.
    rte_hash_free(dialog_hash_);
    rte_hash_free(media_hash_);
    rte_free(dialogs_);
    rte_free(media_);
}

// ---- Counters

void FlowTables::count(FlowTableCounter c, std::uint64_t n) noexcept {
    counters_[static_cast<std::size_t>(c)].fetch_add(n, std::memory_order_relaxed);
}

void FlowTables::set_gauge(FlowTableCounter c, std::uint64_t v) noexcept {
    counters_[static_cast<std::size_t>(c)].store(v, std::memory_order_relaxed);
}

FlowTableCounterValues FlowTables::counters() const noexcept {
    FlowTableCounterValues v;
    for (std::size_t i = 0; i < kFlowTableCounterCount; ++i)
        v.value[i] = counters_[i].load(std::memory_order_relaxed);
    return v;
}

std::uint32_t FlowTables::dialog_count() const noexcept {
    return static_cast<std::uint32_t>(
        counters_[static_cast<std::size_t>(FlowTableCounter::dialog_occupancy)].load(
            std::memory_order_relaxed));
}

std::uint32_t FlowTables::media_count() const noexcept {
    return static_cast<std::uint32_t>(
        counters_[static_cast<std::size_t>(FlowTableCounter::media_occupancy)].load(
            std::memory_order_relaxed));
}

// ---- Readers

std::uint64_t FlowTables::find_media_bulk(std::span<const MediaKey> keys,
                                          const MediaEntry** out) const noexcept {
    const std::size_t n = std::min<std::size_t>(keys.size(), RTE_HASH_LOOKUP_BULK_MAX);
    if (n == 0) return 0;
    const void* key_ptrs[RTE_HASH_LOOKUP_BULK_MAX];
    void* data[RTE_HASH_LOOKUP_BULK_MAX];
    for (std::size_t i = 0; i < n; ++i)
        key_ptrs[i] = &keys[i];
    std::uint64_t hits = 0;
    if (rte_hash_lookup_bulk_data(media_hash_, key_ptrs, static_cast<std::uint32_t>(n), &hits,
                                  data) < 0)
        hits = 0;
    for (std::size_t i = 0; i < n; ++i)
        out[i] = (hits >> i) & 1 ? static_cast<const MediaEntry*>(data[i]) : nullptr;
    return hits;
}

// ---- Writers (all under the lock)

void FlowTables::reclaim() noexcept {
    dialog_slots_.reclaim(qs_);
    media_slots_.reclaim(qs_);
}

const DialogEntry* FlowTables::replace_dialog(const DialogEntry& old,
                                              const DialogEntry& next) noexcept {
    DialogEntry* fresh = const_cast<DialogEntry*>(&next);
    // Replacing the data of an existing key is one release store of the pointer.
    if (rte_hash_add_key_data(dialog_hash_, &old.key, fresh) != 0) {
        dialog_slots_.abort(slot_of(*fresh));
        count(FlowTableCounter::dialog_pool_exhausted);
        return &old;
    }
    dialog_slots_.publish(slot_of(*fresh));
    dialog_slots_.retire(slot_of(old), qs_);
    count(FlowTableCounter::dialog_updates);
    return fresh;
}

DialogUpsert FlowTables::dialog_create_or_update(const DialogKey& key,
                                                 std::span<const WarrantId> warrants,
                                                 TargetSide side, std::uint64_t caller_tag,
                                                 std::uint64_t now_ns, bool replace) noexcept {
    WriterLock guard(lock_);
    std::uint64_t overflow = 0;
    if (const DialogEntry* old = find_dialog(key)) {
        WarrantSet merged = replace ? WarrantSet{} : old->warrants;
        merged.merge(warrants, overflow);
        if (overflow != 0) count(FlowTableCounter::dialog_warrant_overflow, overflow);
        const TargetSide merged_side = old->target_side | side;
        if (merged == old->warrants && merged_side == old->target_side) {
            touch(*old, now_ns);
            return {FlowResult::Unchanged, old};
        }
        const std::uint32_t slot = dialog_slots_.alloc(qs_);
        if (slot == SlotPool::kNone) {
            count(FlowTableCounter::dialog_pool_exhausted);
            return {FlowResult::PoolExhausted, old};
        }
        DialogEntry& fresh = dialogs_[slot];
        copy_dialog(fresh, *old);
        fresh.warrants = merged;
        fresh.target_side = merged_side;
        raise_last_seen(fresh.last_seen_ns, now_ns);
        const DialogEntry* current = replace_dialog(*old, fresh);
        if (current == old) return {FlowResult::PoolExhausted, old};
        // Media hits carry the call's warrants and direction: bring its media up to date.
        refresh_media_of(*current, now_ns);
        return {FlowResult::Updated, current};
    }

    if (dialog_live_ >= config_.max_dialogs) {
        count(FlowTableCounter::dialog_table_full);
        dialog_full_seen_.store(true, std::memory_order_relaxed);
        return {FlowResult::TableFull, nullptr};
    }
    const std::uint32_t slot = dialog_slots_.alloc(qs_);
    if (slot == SlotPool::kNone) {
        count(FlowTableCounter::dialog_pool_exhausted);
        return {FlowResult::PoolExhausted, nullptr};
    }
    DialogEntry& e = dialogs_[slot];
    e.key = key;
    e.correlation_id = next_correlation_id_;
    e.created_ns = now_ns;
    e.caller_tag = caller_tag;
    e.linger_until_ns = 0;
    e.target_side = side;
    e.state = DialogState::Active;
    e.media_count = 0;
    e.warrants = WarrantSet{};
    e.warrants.merge(warrants, overflow);
    if (overflow != 0) count(FlowTableCounter::dialog_warrant_overflow, overflow);
    e.last_seen_ns.store(now_ns, std::memory_order_relaxed);
    // Publishes: from here every worker finds the dialog.
    if (rte_hash_add_key_data(dialog_hash_, &key, &e) != 0) {
        // Only -ENOSPC: every key slot is held by deleted keys still in their grace period.
        dialog_slots_.abort(slot);
        count(FlowTableCounter::dialog_pool_exhausted);
        return {FlowResult::PoolExhausted, nullptr};
    }
    dialog_slots_.publish(slot);
    ++next_correlation_id_;
    ++dialog_live_;
    set_gauge(FlowTableCounter::dialog_occupancy, dialog_live_);
    count(FlowTableCounter::dialog_inserts);
    return {FlowResult::Created, &e};
}

FlowResult FlowTables::dialog_end(const DialogKey& key, std::uint64_t now_ns) noexcept {
    WriterLock guard(lock_);
    const DialogEntry* old = find_dialog(key);
    if (old == nullptr) return FlowResult::NotFound;
    if (old->state == DialogState::Ending) {
        touch(*old, now_ns);
        return FlowResult::Unchanged;  // a retransmitted BYE does not extend the linger
    }
    const std::uint32_t slot = dialog_slots_.alloc(qs_);
    if (slot == SlotPool::kNone) {
        count(FlowTableCounter::dialog_pool_exhausted);
        return FlowResult::PoolExhausted;  // stays active; the idle timeout ends it
    }
    DialogEntry& fresh = dialogs_[slot];
    copy_dialog(fresh, *old);
    fresh.state = DialogState::Ending;
    fresh.linger_until_ns = now_ns + config_.linger_ns;
    raise_last_seen(fresh.last_seen_ns, now_ns);
    return replace_dialog(*old, fresh) == old ? FlowResult::PoolExhausted : FlowResult::Updated;
}

FlowResult FlowTables::dialog_remove(const DialogKey& key) noexcept {
    WriterLock guard(lock_);
    const DialogEntry* d = find_dialog(key);
    if (d == nullptr) return FlowResult::NotFound;
    remove_dialog(*d, Reason::Explicit);
    return FlowResult::Removed;
}

MediaUpdate FlowTables::media_add(const DialogKey& dialog, Party party,
                                  std::span<const MediaSpec> specs, std::uint64_t now_ns) noexcept {
    return media_update(dialog, party, specs, now_ns, false);
}

MediaUpdate FlowTables::media_move(const DialogKey& dialog, Party party,
                                   std::span<const MediaSpec> specs,
                                   std::uint64_t now_ns) noexcept {
    return media_update(dialog, party, specs, now_ns, true);
}

MediaUpdate FlowTables::media_update(const DialogKey& dialog, Party party,
                                     std::span<const MediaSpec> specs, std::uint64_t now_ns,
                                     bool replace) noexcept {
    // One SDP yields at most kMaxMediaSpecs endpoints (collect_media); more is a caller bug,
    // and the per-call tallies are 8-bit.
    specs = specs.first(std::min(specs.size(), kMaxMediaSpecs));
    WriterLock guard(lock_);
    MediaUpdate r;
    const DialogEntry* d = find_dialog(dialog);
    if (d == nullptr) {
        r.result = FlowResult::NotFound;
        return r;
    }
    // The dialog's list of owned endpoints, edited here and stored once at the end.
    std::array<MediaKey, kMaxMediaPerDialog> keys = d->media;
    std::array<Party, kMaxMediaPerDialog> parties = d->media_party;
    std::size_t n = d->media_count;
    bool list_changed = false;

    if (replace) {
        std::size_t kept = 0;
        for (std::size_t i = 0; i < n; ++i) {
            if (parties[i] == party && !in_specs(specs, keys[i])) {
                const MediaEntry* m = find_media(keys[i]);
                if (m != nullptr && m->dialog == d->key) {
                    remove_media(*m, Reason::Moved);
                    ++r.removed;
                }
                list_changed = true;
                continue;
            }
            keys[kept] = keys[i];
            parties[kept] = parties[i];
            ++kept;
        }
        n = kept;
    }

    for (const MediaSpec& spec : specs) {
        const FlowResult fr = upsert_media(spec, party, *d, now_ns);
        if (fr == FlowResult::TableFull || fr == FlowResult::PoolExhausted) {
            ++r.failed;
            if (r.result != FlowResult::TableFull && r.result != FlowResult::PoolExhausted)
                r.result = fr;
            continue;
        }
        if (fr == FlowResult::Created) ++r.added;
        if (fr == FlowResult::Updated) ++r.changed;
        bool listed = false;
        for (std::size_t i = 0; i < n && !listed; ++i)
            listed = keys[i] == spec.key;
        if (listed) continue;
        if (n == kMaxMediaPerDialog) {
            count(FlowTableCounter::dialog_media_untracked);  // followed until idle
            continue;
        }
        keys[n] = spec.key;
        parties[n] = party;
        ++n;
        list_changed = true;
    }

    if (list_changed) {
        const std::uint32_t slot = dialog_slots_.alloc(qs_);
        if (slot == SlotPool::kNone) {
            // The media are in the table and followed; only their removal with the call is
            // lost (the idle timeout still removes them).
            count(FlowTableCounter::dialog_pool_exhausted);
        } else {
            DialogEntry& fresh = dialogs_[slot];
            copy_dialog(fresh, *d);
            fresh.media = keys;
            fresh.media_party = parties;
            fresh.media_count = static_cast<std::uint8_t>(n);
            raise_last_seen(fresh.last_seen_ns, now_ns);
            replace_dialog(*d, fresh);
        }
    }
    if (r.result == FlowResult::Unchanged && (r.added | r.changed | r.removed) != 0)
        r.result = FlowResult::Updated;
    return r;
}

FlowResult FlowTables::upsert_media(const MediaSpec& spec, Party party, const DialogEntry& owner,
                                    std::uint64_t now_ns) noexcept {
    const MediaEntry* old = find_media(spec.key);
    const bool same_owner =
        old != nullptr && old->dialog == owner.key && old->correlation_id == owner.correlation_id;
    if (same_owner && old->kind == spec.kind && old->party == party &&
        old->target_side == owner.target_side && old->warrants == owner.warrants) {
        touch(*old, now_ns);
        return FlowResult::Unchanged;
    }
    if (old == nullptr && media_live_ >= config_.max_media) {
        count(FlowTableCounter::media_table_full);
        media_full_seen_.store(true, std::memory_order_relaxed);
        return FlowResult::TableFull;
    }
    const std::uint32_t slot = media_slots_.alloc(qs_);
    if (slot == SlotPool::kNone) {
        count(FlowTableCounter::media_pool_exhausted);
        return FlowResult::PoolExhausted;
    }
    MediaEntry& e = media_[slot];
    e.key = spec.key;
    e.kind = spec.kind;
    e.party = party;
    e.target_side = owner.target_side;
    e.correlation_id = owner.correlation_id;
    e.dialog = owner.key;
    e.warrants = owner.warrants;
    const std::uint64_t seen =
        same_owner ? std::max(old->last_seen_ns.load(std::memory_order_relaxed), now_ns) : now_ns;
    e.last_seen_ns.store(seen, std::memory_order_relaxed);
    // New key: the insert publishes it to every worker. Existing key: one release store
    // swaps the data pointer; readers see the old entry or this one.
    if (rte_hash_add_key_data(media_hash_, &spec.key, &e) != 0) {
        media_slots_.abort(slot);
        count(FlowTableCounter::media_pool_exhausted);
        return FlowResult::PoolExhausted;
    }
    media_slots_.publish(slot);
    if (old != nullptr) {
        media_slots_.retire(slot_of(*old), qs_);
        count(FlowTableCounter::media_updates);
        if (!same_owner) count(FlowTableCounter::media_taken_over);
        return FlowResult::Updated;
    }
    ++media_live_;
    set_gauge(FlowTableCounter::media_occupancy, media_live_);
    count(FlowTableCounter::media_inserts);
    return FlowResult::Created;
}

void FlowTables::refresh_media_of(const DialogEntry& d, std::uint64_t now_ns) noexcept {
    for (std::size_t i = 0; i < d.media_count; ++i) {
        const MediaEntry* m = find_media(d.media[i]);
        if (m != nullptr && m->dialog == d.key)
            upsert_media(MediaSpec{m->key, m->kind}, m->party, d, now_ns);
    }
}

void FlowTables::remove_media(const MediaEntry& m, Reason reason) noexcept {
    if (rte_hash_del_key(media_hash_, &m.key) < 0) return;
    media_slots_.retire(slot_of(m), qs_);
    --media_live_;
    set_gauge(FlowTableCounter::media_occupancy, media_live_);
    switch (reason) {
        case Reason::Moved:
            count(FlowTableCounter::media_removed_moved);
            break;
        case Reason::Idle:
            count(FlowTableCounter::media_removed_idle);
            break;
        case Reason::Evicted:
            count(FlowTableCounter::media_evicted);
            break;
        default:
            count(FlowTableCounter::media_removed_with_dialog);
            break;
    }
}

void FlowTables::remove_dialog(const DialogEntry& d, Reason reason) noexcept {
    for (std::size_t i = 0; i < d.media_count; ++i) {
        const MediaEntry* m = find_media(d.media[i]);
        // Only endpoints still ours: a newer call may have taken one over.
        if (m != nullptr && m->dialog == d.key) remove_media(*m, Reason::WithDialog);
    }
    if (rte_hash_del_key(dialog_hash_, &d.key) < 0) return;
    dialog_slots_.retire(slot_of(d), qs_);
    --dialog_live_;
    set_gauge(FlowTableCounter::dialog_occupancy, dialog_live_);
    switch (reason) {
        case Reason::Ended:
            count(FlowTableCounter::dialog_removed_ended);
            break;
        case Reason::Idle:
            count(FlowTableCounter::dialog_removed_idle);
            break;
        case Reason::Evicted:
            count(FlowTableCounter::dialog_evicted);
            break;
        default:
            count(FlowTableCounter::dialog_removed_explicit);
            break;
    }
}

// ---- Sweep
//
// The sweeper is a QSBR reader (sweeper_thread_id), online only inside sweep(). That lets it
// scan the pools without the writers' lock: a slot it sees Live cannot be reclaimed and
// reused before the sweeper goes offline, because retirement after that point waits for its
// quiescent state. Removals re-check each victim under the lock (still Live, same
// generation, still idle), a few per lock hold. Eviction candidates collected during a pass
// span several sweep() calls; the generation check catches slots reused in between.

std::uint64_t FlowTables::effective_last_seen(const DialogEntry& d) const noexcept {
    // A call's SIP can be silent for hours while its media flow: the dialog is as recent as
    // its most recent media.
    std::uint64_t seen = d.last_seen_ns.load(std::memory_order_relaxed);
    for (std::size_t i = 0; i < d.media_count; ++i) {
        const MediaEntry* m = find_media(d.media[i]);
        if (m != nullptr && m->dialog == d.key)
            seen = std::max(seen, m->last_seen_ns.load(std::memory_order_relaxed));
    }
    return seen;
}

SweepResult FlowTables::sweep(std::uint64_t now_ns, std::uint32_t budget) noexcept {
    SweepResult r;
    OnlineScope online(qs_, config_.sweeper_thread_id);
    {
        WriterLock guard(lock_);
        reclaim();
    }
    sweep_removed_ = 0;
    const std::uint32_t dialog_slots = dialog_slots_.size();
    const std::uint32_t total = dialog_slots + media_slots_.size();
    while (r.scanned < budget) {
        if (cursor_ >= total) {
            flush_victims(now_ns);
            end_of_pass(now_ns);
            cursor_ = 0;
            r.pass_completed = true;
            break;
        }
        const std::uint32_t i = cursor_++;
        ++r.scanned;
        if (i < dialog_slots)
            scan_dialog(i, now_ns);
        else
            scan_media(i - dialog_slots, now_ns);
    }
    flush_victims(now_ns);
    r.removed = sweep_removed_;
    return r;
}

void FlowTables::scan_dialog(std::uint32_t slot, std::uint64_t now_ns) noexcept {
    if (dialog_slots_.state(slot) != SlotPool::State::Live) return;
    const std::uint32_t generation = dialog_slots_.generation(slot);
    const DialogEntry& d = dialogs_[slot];
    if (d.state == DialogState::Ending && now_ns >= d.linger_until_ns) {
        queue_victim({slot, generation, Reason::Ended, false, 0}, now_ns);
        return;
    }
    const std::uint64_t seen = effective_last_seen(d);
    if (now_ns > seen && now_ns - seen >= config_.dialog_idle_timeout_ns) {
        queue_victim({slot, generation, Reason::Idle, false, seen}, now_ns);
        return;
    }
    dialog_candidates_[dialog_candidate_count_++] = {seen, slot, generation};
}

void FlowTables::scan_media(std::uint32_t slot, std::uint64_t now_ns) noexcept {
    if (media_slots_.state(slot) != SlotPool::State::Live) return;
    const std::uint32_t generation = media_slots_.generation(slot);
    const std::uint64_t seen = media_[slot].last_seen_ns.load(std::memory_order_relaxed);
    if (now_ns > seen && now_ns - seen >= config_.media_idle_timeout_ns) {
        queue_victim({slot, generation, Reason::Idle, true, seen}, now_ns);
        return;
    }
    media_candidates_[media_candidate_count_++] = {seen, slot, generation};
}

void FlowTables::queue_victim(const Victim& v, std::uint64_t now_ns) noexcept {
    victims_[victim_count_++] = v;
    if (victim_count_ == kVictimBatch) flush_victims(now_ns);
}

bool FlowTables::still_victim(const Victim& v, std::uint64_t now_ns) const noexcept {
    const SlotPool& pool = v.media ? media_slots_ : dialog_slots_;
    if (pool.state(v.slot) != SlotPool::State::Live || pool.generation(v.slot) != v.generation)
        return false;
    if (v.media) {
        const std::uint64_t seen = media_[v.slot].last_seen_ns.load(std::memory_order_relaxed);
        if (v.reason == Reason::Evicted) return seen <= v.seen;  // not used since chosen
        return now_ns > seen && now_ns - seen >= config_.media_idle_timeout_ns;
    }
    const DialogEntry& d = dialogs_[v.slot];
    if (v.reason == Reason::Ended)
        return d.state == DialogState::Ending && now_ns >= d.linger_until_ns;
    const std::uint64_t seen = effective_last_seen(d);
    if (v.reason == Reason::Evicted) return seen <= v.seen;
    return now_ns > seen && now_ns - seen >= config_.dialog_idle_timeout_ns;
}

void FlowTables::flush_victims(std::uint64_t now_ns) noexcept {
    if (victim_count_ == 0) return;
    WriterLock guard(lock_);
    for (std::uint32_t i = 0; i < victim_count_; ++i) {
        const Victim& v = victims_[i];
        if (!still_victim(v, now_ns)) continue;
        if (v.media)
            remove_media(media_[v.slot], v.reason);
        else
            remove_dialog(dialogs_[v.slot], v.reason);
        ++sweep_removed_;
    }
    victim_count_ = 0;
}

void FlowTables::end_of_pass(std::uint64_t now_ns) noexcept {
    count(FlowTableCounter::sweep_passes);
    evict(false, now_ns);  // dialogs first: their media go with them
    evict(true, now_ns);
    dialog_candidate_count_ = 0;
    media_candidate_count_ = 0;
}

void FlowTables::evict(bool media, std::uint64_t now_ns) noexcept {
    const std::uint64_t capacity = media ? config_.max_media : config_.max_dialogs;
    std::atomic<bool>& full_seen = media ? media_full_seen_ : dialog_full_seen_;
    const bool full = full_seen.exchange(false, std::memory_order_relaxed);
    const std::uint64_t live = media ? media_count() : dialog_count();
    const std::uint64_t high = capacity * config_.evict_above_percent / 100;
    const std::uint64_t low = capacity * config_.evict_to_percent / 100;
    if (live <= high && !full) return;
    std::uint64_t target = live > low ? live - low : (full ? 1 : 0);
    Candidate* c = media ? media_candidates_.get() : dialog_candidates_.get();
    const std::uint32_t n = media ? media_candidate_count_ : dialog_candidate_count_;
    // Oldest idle first. std::sort is in place (no allocation); this runs once per pass and
    // only above the watermark, on the main lcore.
    std::sort(c, c + n, [](const Candidate& a, const Candidate& b) {
        return a.last_seen < b.last_seen || (a.last_seen == b.last_seen && a.slot < b.slot);
    });
    std::uint32_t i = 0;
    while (i < n && target > 0) {
        WriterLock guard(lock_);
        for (std::uint32_t k = 0; k < kVictimBatch && i < n && target > 0; ++k, ++i) {
            const Victim v{c[i].slot, c[i].generation, Reason::Evicted, media, c[i].last_seen};
            if (!still_victim(v, now_ns)) continue;
            if (media)
                remove_media(media_[v.slot], Reason::Evicted);
            else
                remove_dialog(dialogs_[v.slot], Reason::Evicted);
            ++sweep_removed_;
            --target;
        }
    }
}

// ---- Diagnostics

bool FlowTables::validate(std::string* problem) noexcept {
    auto fail = [&](const char* what, std::uint32_t slot) {
        if (problem != nullptr) {
            char buf[128];
            std::snprintf(buf, sizeof buf, "%s (slot %u)", what, slot);
            *problem = buf;
        }
        return false;
    };
    WriterLock guard(lock_);
    std::uint32_t live = 0, retired = 0;
    for (std::uint32_t s = 0; s < dialog_slots_.size(); ++s) {
        const SlotPool::State st = dialog_slots_.state(s);
        if (st == SlotPool::State::Retired) ++retired;
        if (st == SlotPool::State::Filling) return fail("dialog slot left Filling", s);
        if (st != SlotPool::State::Live) continue;
        ++live;
        const DialogEntry& d = dialogs_[s];
        if (find_dialog(d.key) != &d) return fail("live dialog not found under its key", s);
        if (d.media_count > kMaxMediaPerDialog || d.warrants.count > kMaxWarrantsPerCall)
            return fail("dialog counts out of range", s);
    }
    if (live != dialog_live_) return fail("dialog live count mismatch", live);
    if (live + retired + dialog_slots_.free_count() != dialog_slots_.size() ||
        retired != dialog_slots_.retired_count())
        return fail("dialog pool accounting mismatch", retired);
    if (rte_hash_count(dialog_hash_) < static_cast<std::int32_t>(live))
        return fail("dialog hash holds fewer keys than live entries", live);

    live = retired = 0;
    for (std::uint32_t s = 0; s < media_slots_.size(); ++s) {
        const SlotPool::State st = media_slots_.state(s);
        if (st == SlotPool::State::Retired) ++retired;
        if (st == SlotPool::State::Filling) return fail("media slot left Filling", s);
        if (st != SlotPool::State::Live) continue;
        ++live;
        const MediaEntry& m = media_[s];
        if (find_media(m.key) != &m) return fail("live media not found under its key", s);
        if (m.warrants.count > kMaxWarrantsPerCall) return fail("media counts out of range", s);
    }
    if (live != media_live_) return fail("media live count mismatch", live);
    if (live + retired + media_slots_.free_count() != media_slots_.size() ||
        retired != media_slots_.retired_count())
        return fail("media pool accounting mismatch", retired);

    // Every key in the hashes must map to a live entry (nothing leaked, nothing dangling).
    for (rte_hash* h : {dialog_hash_, media_hash_}) {
        const void* key = nullptr;
        void* data = nullptr;
        std::uint32_t next = 0;
        std::uint32_t keys = 0;
        while (rte_hash_iterate(h, &key, &data, &next) >= 0) {
            ++keys;
            if (h == dialog_hash_) {
                const auto* d = static_cast<const DialogEntry*>(data);
                if (dialog_slots_.state(slot_of(*d)) != SlotPool::State::Live)
                    return fail("dialog hash points at a non-live entry", slot_of(*d));
            } else {
                const auto* m = static_cast<const MediaEntry*>(data);
                if (media_slots_.state(slot_of(*m)) != SlotPool::State::Live)
                    return fail("media hash points at a non-live entry", slot_of(*m));
            }
        }
        const std::uint32_t expected = h == dialog_hash_ ? dialog_live_ : media_live_;
        if (keys != expected) return fail("hash key count differs from live entries", keys);
    }
    return true;
}

}  // namespace tapwire::dataplane
