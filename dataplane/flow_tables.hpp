// The dataplane's shared call state: the dialog table (Call-ID -> intercepted call) and the
// media table (RTP/RTCP endpoint -> intercepted call), one of each for all workers.
//
// The problem. RSS spreads packets over workers by 5-tuple. SIP and RTP of one call have
// different 5-tuples (signalling goes through proxies, media does not), so the worker that
// sees the INVITE and its SDP is in general not the worker that will see the RTP. Media
// learned from SDP must be effective on every worker before the first RTP packet of the
// call can arrive, and the read path (every UDP packet looks up the media table) must take
// no lock.
//
// Why one shared table with a synchronous insert, not per-worker tables. A tap sees the SDP
// before the far end does: the offer/answer still has to cross the network to the peer, be
// processed there, and the peer's first RTP packet has to come back. That is at least one
// network transit plus the peer's processing, which is hundreds of microseconds even in one
// data centre. The insert here is synchronous and takes a few hundred nanoseconds; when the
// worker returns from media_add() the entry is visible to every worker (the hash's
// release store, paired with the readers' acquire load). Per-worker tables fed by messages
// would make visibility depend on when each other worker next polls its message ring, with
// no bound under load, and every media entry would be stored N times.
//
// How readers stay lock-free. The index is rte_hash in lock-free read/write mode
// (RTE_HASH_EXTRA_FLAGS_RW_CONCURRENCY_LF): lookups use acquire loads and a table-change
// counter, never a lock. The hash stores a pointer to an entry. Entries are immutable once
// published: a change (new warrant, dialog ending, media list change) fills a fresh entry
// from a fixed pool and swaps the pointer (rte_hash_add_key_data on an existing key stores
// the new data pointer with one release store, checked in rte_cuckoo_hash.c
// search_and_update), so a reader sees the old entry or the new one, never a torn mix. The
// old entry goes back to the pool only after an RCU grace period (QuiescentState), as do
// rte_hash's key slots on delete (rte_hash_rcu_qsbr_add, defer-queue mode). The one field
// readers write is last_seen, a relaxed atomic refreshed at most once per touch interval per
// entry, so busy flows do not bounce cache lines between cores.
//
// Writers. Only intercepted calls write (about 2% of calls), so writers, which may be any
// worker or the housekeeping sweep, are serialised by one spinlock that readers never
// touch. Measured on a loaded 2-core VM with 10k calls in the tables: creating a dialog
// 0.25-0.6 us, adding 4 endpoints (with the dialog's list update) 0.9-1.9 us. The lock makes
// compound updates (a dialog and its media) atomic with respect to other writers; readers
// may see one half done (a new media entry before the dialog lists it), but every entry
// they see is whole. Writers never wait for a grace period: replaced entries go to a retire
// list and are reclaimed later, non-blocking.
//
// Using it from a worker. Each burst: look up the source and the destination endpoint of
// every UDP packet (find_media_bulk, 64 keys for 32 packets); a hit on the destination is
// media to MediaEntry::party, on the source media from it, which with target_side gives
// the direction. SIP: find_dialog(dialog_key(Call-ID)) for every message; write only when
// the message matched a target (dialog_create_or_update), carries SDP (media_add or
// media_move) or ends the call (dialog_end). Entries are valid until the worker's next
// QuiescentState::quiescent(), which it calls once per loop iteration.
//
// Bounded. Capacities are fixed at start. A full table refuses the insert with a typed
// result, counts it, and asks the next sweep to evict; the sweep removes ended dialogs after
// their linger, idle dialogs and media, and above a high watermark the oldest idle entries
// first. Nothing allocates after create().
//
// Time is passed in by the caller (now_ns, any monotonic nanosecond clock, the same for all
// callers); the tables never read a clock, so tests control time.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "common/bounded_list.hpp"
#include "common/ip_address.hpp"
#include "common/sdp.hpp"
#include "common/shm_contract.hpp"
#include "common/x_list.hpp"
#include "dataplane/rcu.hpp"

#include <rte_hash.h>

namespace tapwire::dataplane {

using WarrantId = std::uint32_t;
inline constexpr std::size_t kMaxWarrantsPerCall = 16;
inline constexpr std::size_t kMaxMediaPerDialog = 16;
/// Media endpoints one SDP can yield: 8 m-lines x (RTP + RTCP), bounded again for port counts.
inline constexpr std::size_t kMaxMediaSpecs = 32;
static_assert(kMaxWarrantsPerCall == shm::kMaxWarrantsPerHit,
              "a call's warrants must fit in one hit's metadata");

/// Which side of the call is the target: decides the direction (to/from target) of hits.
enum class TargetSide : std::uint8_t { None = 0, Caller = 1, Callee = 2, Both = 3 };
constexpr TargetSide operator|(TargetSide a, TargetSide b) noexcept {
    return static_cast<TargetSide>(static_cast<std::uint8_t>(a) | static_cast<std::uint8_t>(b));
}

/// A party of the call: the one that sent the SDP announcing a media endpoint (the
/// endpoint is where that party receives).
enum class Party : std::uint8_t { Caller = 1, Callee = 2 };

/// Active, or ending: BYE, CANCEL or a final failure was seen; the dialog lingers so the
/// 200 OK to the BYE and retransmissions are still intercepted, then the sweep removes it.
enum class DialogState : std::uint8_t { Active = 0, Ending = 1 };

/// What flows to a media endpoint.
enum class MediaKind : std::uint8_t {
    Rtp = 1,
    Rtcp = 2,
    RtpRtcpMux = 3,  // RFC 5761 rtcp-mux: both on one port
    NonRtp = 4,      // media that is not RTP (T.38 udptl, MSRP): intercepted as content
};

/// Warrants of one call, in the order they matched. Fixed size, no heap.
struct WarrantSet {
    std::uint8_t count = 0;  // first, so that an entry can put it before a line boundary
    std::array<WarrantId, kMaxWarrantsPerCall> ids{};

    bool contains(WarrantId id) const noexcept {
        for (std::uint8_t i = 0; i < count; ++i)
            if (ids[i] == id) return true;
        return false;
    }
    std::span<const WarrantId> view() const noexcept { return {ids.data(), count}; }
    /// Adds the ids not in the set yet; counts in `overflow` those that do not fit.
    void merge(std::span<const WarrantId> more, std::uint64_t& overflow) noexcept {
        for (WarrantId id : more) {
            if (contains(id)) continue;
            if (count == kMaxWarrantsPerCall) {
                ++overflow;
                continue;
            }
            ids[count++] = id;
        }
    }
    friend bool operator==(const WarrantSet& a, const WarrantSet& b) noexcept {
        if (a.count != b.count) return false;
        for (std::uint8_t i = 0; i < a.count; ++i)
            if (a.ids[i] != b.ids[i]) return false;
        return true;
    }
};

/// A dialog's key: a 128-bit keyed hash (SipHash-2-4, 128-bit output) of the Call-ID bytes.
///
/// Why a hash and not the text: Call-IDs are up to hundreds of bytes of attacker-chosen
/// text; a fixed 16-byte key keeps the hash table's key store small and lets rte_hash use
/// its 16-byte vector compare. Why 128 bits: the table compares only the key, so two
/// Call-IDs with the same key would share a dialog. For n live dialogs the chance of any
/// collision is about n^2 / 2^129: 1.5e-27 for a million. Why keyed (a random 128-bit key
/// per process): SipHash is a PRF, so without the key nobody can construct a Call-ID that
/// collides with another call's, which an unkeyed hash (Murmur, CityHash) would allow.
/// Cost: ~30 ns for a 40-byte Call-ID, once per SIP message.
struct DialogKey {
    std::uint64_t lo = 0;
    std::uint64_t hi = 0;
    friend bool operator==(const DialogKey&, const DialogKey&) = default;
};
static_assert(sizeof(DialogKey) == 16);

/// SipHash-2-4 with 128-bit output (Aumasson and Bernstein, 2012) over bytes.
/// Exposed for tests against the reference vectors.
DialogKey siphash128(const void* data, std::size_t size, std::uint64_t k0,
                     std::uint64_t k1) noexcept;

/// The dialog key of a Call-ID (RFC 3261 section 20.8: compared byte by byte, so hashed as
/// is). The tables' key is in FlowTables::dialog_key().
inline DialogKey make_dialog_key(std::string_view call_id, std::uint64_t k0,
                                 std::uint64_t k1) noexcept {
    return siphash128(call_id.data(), call_id.size(), k0, k1);
}

/// A media endpoint: where one party receives RTP or RTCP. 20 bytes, no padding, so the
/// bytes can be hashed and compared as they are.
struct MediaKey {
    std::array<std::uint8_t, 16> address{};  // IpAddress bytes: IPv4 in the first 4, rest 0
    std::uint16_t port = 0;                  // host order
    IpFamily family = IpFamily::None;
    std::uint8_t l4_proto = 0;  // 17 UDP, 6 TCP

    static MediaKey make(const IpAddress& ip, std::uint16_t port, std::uint8_t l4_proto) noexcept {
        MediaKey k;
        k.address = ip.bytes;
        k.port = port;
        k.family = ip.family;
        k.l4_proto = l4_proto;
        return k;
    }
    IpAddress ip() const noexcept {
        IpAddress a;
        a.bytes = address;
        a.family = family;
        return a;
    }
    friend bool operator==(const MediaKey&, const MediaKey&) = default;
};
static_assert(sizeof(MediaKey) == 20, "MediaKey is hashed as raw bytes: no padding");
static_assert(std::has_unique_object_representations_v<MediaKey>);

/// One media endpoint to follow, from an SDP.
struct MediaSpec {
    MediaKey key;
    MediaKind kind = MediaKind::Rtp;
};
using MediaSpecList = BoundedList<MediaSpec, kMaxMediaSpecs>;

/// The endpoints an SDP announces (where its sender receives), per m-line with a port and an
/// address (RFC 3264 section 5.1: port 0 means the stream is disabled): RTP on the port
/// (and port+2i for m=<media> <port>/<count>), RTCP on the a=rtcp port or port+1 (RFC 3605,
/// RFC 3550 section 11), or RTP and RTCP on one port with rtcp-mux (RFC 5761). TCP
/// transports (RFC 4571 "TCP/RTP/AVP", "TCP/MSRP") are keyed on TCP. Non-RTP transports
/// (udptl for T.38) are followed as NonRtp. Hold by c=0.0.0.0 (RFC 3264 section 8.4) yields
/// nothing. Overflow shows in out.overflowed().
void collect_media(const SdpSession& sdp, MediaSpecList& out) noexcept;

// Entry layout. A worker that hits an entry reads its identity, correlation id and warrants
// and may refresh last_seen: line 0 holds all of it but the warrant ids, which fill line 1.
// last_seen shares line 0 with read-mostly fields on purpose: it is written at most once per
// touch interval per entry, so the coherence misses that costs other cores are rare, while
// a line of its own costs every hit another miss (measured, 64k media entries, random
// lookups: lookup + read + touch ~75 ns with this layout, ~95 ns with last_seen apart).

/// A dialog under intercept. Immutable once published, except last_seen.
struct alignas(64) DialogEntry {
    // line 0
    DialogKey key;
    std::uint64_t correlation_id = 0;  // one per intercepted call (CIN source), never reused
    /// Written by readers (relaxed, at most once per touch interval).
    mutable std::atomic<std::uint64_t> last_seen_ns{0};
    std::uint64_t created_ns = 0;
    std::uint64_t linger_until_ns = 0;  // Ending: removed by the sweep after this
    TargetSide target_side = TargetSide::None;
    DialogState state = DialogState::Active;
    std::uint8_t media_count = 0;
    std::uint8_t reserved_[9] = {};  // puts warrants.ids at the start of line 1
    WarrantSet warrants;             // count in line 0, ids are line 1
    // lines 2-7: media endpoints this dialog created, so that ending the call removes them.
    // A key is removed only while its media entry still names this dialog (see
    // MediaEntry::dialog).
    std::array<MediaKey, kMaxMediaPerDialog> media{};
    std::array<Party, kMaxMediaPerDialog> media_party{};
    std::uint64_t caller_tag =
        0;  // hash of the caller's From tag (tells senders apart); 0: unknown
};

/// A media endpoint under intercept. Immutable once published, except last_seen.
struct alignas(64) MediaEntry {
    // line 0
    MediaKey key;
    MediaKind kind = MediaKind::Rtp;
    Party party = Party::Caller;  // who receives here: packets to key come to this party
    TargetSide target_side = TargetSide::None;
    /// Written by readers (relaxed, at most once per touch interval).
    mutable std::atomic<std::uint64_t> last_seen_ns{0};
    std::uint64_t correlation_id = 0;
    DialogKey dialog;                // the owning dialog; a newer call may take the endpoint over
    std::uint8_t reserved_[4] = {};  // puts warrants.ids at the start of line 1
    WarrantSet warrants;             // count in line 0, ids are line 1
};

#define TAPWIRE_FLOW_RESULTS(X) \
    X(Created, "created")       \
    X(Updated, "updated")       \
    X(Unchanged, "unchanged")   \
    X(NotFound, "not_found")    \
    X(Removed, "removed")       \
    X(TableFull, "table_full")  \
    X(PoolExhausted, "pool_exhausted")

/// Outcome of a table write. TableFull: at capacity (counted; the next sweep evicts).
/// PoolExhausted: no free entry because too many replaced entries still wait for a grace
/// period (a reader is stalled or the slack is too small); counted, nothing changed.
enum class FlowResult : std::uint8_t { TAPWIRE_FLOW_RESULTS(TAPWIRE_X_ENUMERATOR) Count };

const char* to_string(FlowResult r) noexcept;

/// Counters of the shared tables. X(name, description). Gauges are marked.
#define TAPWIRE_FLOW_TABLE_COUNTERS(X)                                                      \
    X(dialog_occupancy, "dialogs in the table (gauge)")                                     \
    X(dialog_inserts, "dialogs put under intercept")                                        \
    X(dialog_updates, "dialog entries replaced (warrants, side, state, media list)")        \
    X(dialog_removed_ended, "dialogs removed after BYE/CANCEL/failure and the linger")      \
    X(dialog_removed_idle, "dialogs removed: no SIP and no media for the idle timeout")     \
    X(dialog_removed_explicit, "dialogs removed by dialog_remove()")                        \
    X(dialog_evicted, "dialogs evicted above the high watermark, oldest idle first")        \
    X(dialog_table_full, "dialogs not created: table at capacity")                          \
    X(dialog_pool_exhausted, "dialog writes refused: no free entry (grace period pending)") \
    X(dialog_warrant_overflow, "warrants beyond 16 per call not recorded")                  \
    X(dialog_media_untracked, "media beyond 16 per dialog: not removed with the call")      \
    X(media_occupancy, "media endpoints in the table (gauge)")                              \
    X(media_inserts, "media endpoints put under intercept")                                 \
    X(media_updates, "media entries replaced (kind, warrants, owner)")                      \
    X(media_taken_over, "media endpoints claimed by a newer call")                          \
    X(media_removed_with_dialog, "media removed with their dialog")                         \
    X(media_removed_moved, "media removed by a re-INVITE/UPDATE that moved them")           \
    X(media_removed_idle, "media removed: no packet for the idle timeout")                  \
    X(media_evicted, "media evicted above the high watermark, oldest idle first")           \
    X(media_table_full, "media not added: table at capacity")                               \
    X(media_pool_exhausted, "media writes refused: no free entry (grace period pending)")   \
    X(sweep_passes, "complete sweeps over both tables")

enum class FlowTableCounter : std::uint16_t {
    TAPWIRE_FLOW_TABLE_COUNTERS(TAPWIRE_X_ENUMERATOR) Count
};
inline constexpr std::size_t kFlowTableCounterCount =
    static_cast<std::size_t>(FlowTableCounter::Count);

/// Counter name (the X-macro name) and description, for telemetry.
const char* to_string(FlowTableCounter c) noexcept;
const char* describe(FlowTableCounter c) noexcept;

/// A snapshot of the counters: plain values for telemetry.
struct FlowTableCounterValues {
    std::uint64_t value[kFlowTableCounterCount] = {};
    std::uint64_t operator[](FlowTableCounter c) const noexcept {
        return value[static_cast<std::size_t>(c)];
    }
};

/// Sizes and timeouts, fixed at create().
struct FlowTablesConfig {
    std::uint32_t max_dialogs = 32768;
    std::uint32_t max_media = 131072;
    /// Extra pool entries for replaced/removed entries awaiting a grace period;
    /// 0 picks capacity/8 + 64.
    std::uint32_t pool_slack = 0;
    /// Ending dialogs stay this long: BYE retransmissions back off 0.5, 1, 2, 4 s (RFC 3261
    /// section 17.1.2.2, T1 = 500 ms), so 8 s covers the 200 OK and four retransmits.
    std::uint64_t linger_ns = 8'000'000'000;
    /// A dialog with no SIP message and no packet on any of its media for this long ends.
    std::uint64_t dialog_idle_timeout_ns = 300'000'000'000;
    /// A media endpoint with no packet for this long is removed (a re-INVITE re-adds it).
    std::uint64_t media_idle_timeout_ns = 300'000'000'000;
    /// Readers refresh last_seen at most this often per entry.
    std::uint64_t touch_interval_ns = 100'000'000;
    /// Above this occupancy (percent of capacity) a sweep pass evicts the oldest idle
    /// entries down to evict_to_percent.
    std::uint8_t evict_above_percent = 90;
    std::uint8_t evict_to_percent = 80;
    /// QSBR reader id of the thread that calls sweep() (registered by create(), taken
    /// online only during sweep()). Must not be a worker's id.
    unsigned sweeper_thread_id = 0;
    /// SipHash key for Call-IDs; both 0 picks a random key (getrandom).
    std::uint64_t call_id_key0 = 0;
    std::uint64_t call_id_key1 = 0;
    /// First correlation id; ids then increase by one per intercepted call. Seed it from
    /// the start time so ids stay unique across restarts.
    std::uint64_t first_correlation_id = 1;
    int socket_id = -1;  // NUMA socket for tables and pools; -1: any
};

/// Result of dialog_create_or_update. entry: the current entry (also on Unchanged and, when
/// the update could not be stored, the previous one), valid until the caller's next
/// quiescent(); nullptr when there is none.
struct DialogUpsert {
    FlowResult result = FlowResult::NotFound;
    const DialogEntry* entry = nullptr;
};

/// Result of media_add/media_move: what happened to each endpoint.
struct MediaUpdate {
    FlowResult result = FlowResult::Unchanged;  // NotFound, the first failure, else Updated
                                                // when anything changed
    std::uint8_t added = 0;                     // new endpoints (Created)
    std::uint8_t changed = 0;                   // replaced entries (kind, owner)
    std::uint8_t removed = 0;                   // moved away (media_move)
    std::uint8_t failed = 0;                    // TableFull or PoolExhausted
};

struct SweepResult {
    std::uint32_t scanned = 0;  // pool slots examined
    std::uint32_t removed = 0;  // dialogs and media removed (any reason)
    bool pass_completed = false;
};

/// Free-slot bookkeeping for one entry pool. Writers use it under the writers' lock; the
/// sweep reads state() and generation() without it (see FlowTables::sweep).
class SlotPool {
  public:
    static constexpr std::uint32_t kNone = UINT32_MAX;
    enum class State : std::uint8_t { Free = 0, Filling, Live, Retired };
    using Poison = void (*)(void* ctx, std::uint32_t slot);

    SlotPool() = default;
    ~SlotPool();
    SlotPool(const SlotPool&) = delete;
    SlotPool& operator=(const SlotPool&) = delete;

    bool init(std::uint32_t slots, int socket_id, Poison poison, void* ctx) noexcept;
    /// A Free slot, now Filling; reclaims first when none is free. kNone when exhausted.
    std::uint32_t alloc(QuiescentState& qs) noexcept;
    void abort(std::uint32_t slot) noexcept;    // Filling -> Free (never published)
    void publish(std::uint32_t slot) noexcept;  // Filling -> Live (after the hash insert)
    void retire(std::uint32_t slot, QuiescentState& qs) noexcept;  // Live -> Retired
    std::uint32_t reclaim(QuiescentState& qs) noexcept;            // Retired -> Free

    State state(std::uint32_t slot) const noexcept {
        return static_cast<State>(meta_[slot].state.load(std::memory_order_acquire));
    }
    /// Bumped on every alloc: tells a slot seen earlier from a reused one.
    std::uint32_t generation(std::uint32_t slot) const noexcept {
        return meta_[slot].generation.load(std::memory_order_relaxed);
    }
    std::uint32_t size() const noexcept { return size_; }
    std::uint32_t free_count() const noexcept { return free_count_; }
    std::uint32_t retired_count() const noexcept { return retired_.size(); }

  private:
    struct Meta {
        std::atomic<std::uint8_t> state{0};
        std::atomic<std::uint32_t> generation{0};
    };
    void release(std::uint32_t slot) noexcept;

    Meta* meta_ = nullptr;
    std::uint32_t* free_ = nullptr;
    std::uint32_t free_count_ = 0;
    std::uint32_t size_ = 0;
    RetireList retired_;
    Poison poison_ = nullptr;
    void* poison_ctx_ = nullptr;
};

/// The shared dialog and media tables. Readers: any registered QSBR reader, lock-free.
/// Writers: any thread, serialised internally. sweep(): one thread (the main lcore).
class FlowTables {
  public:
    /// Builds the tables in DPDK memory. On a bad setting or no memory returns nullptr and
    /// says why in *error.
    static std::unique_ptr<FlowTables> create(const FlowTablesConfig& config, QuiescentState& qs,
                                              std::string* error = nullptr);
    /// Precondition: no reader is online (workers stopped or offline).
    ~FlowTables();
    FlowTables(const FlowTables&) = delete;
    FlowTables& operator=(const FlowTables&) = delete;

    // ---- Readers: lock-free, noexcept. Entries stay valid until the caller's next
    // ---- quiescent(). Never write through them except touch().

    /// The key of a Call-ID under this process's SipHash key.
    DialogKey dialog_key(std::string_view call_id) const noexcept {
        return make_dialog_key(call_id, key0_, key1_);
    }

    const DialogEntry* find_dialog(const DialogKey& key) const noexcept {
        void* data = nullptr;
        return rte_hash_lookup_data(dialog_hash_, &key, &data) >= 0
                   ? static_cast<const DialogEntry*>(data)
                   : nullptr;
    }

    /// One media lookup. Measured with 40k entries, random keys (2-core VM, -O2): ~25 ns on
    /// a hit, ~16 ns on a miss. Reading the entry is a cache miss of its own on large tables.
    const MediaEntry* find_media(const MediaKey& key) const noexcept {
        void* data = nullptr;
        return rte_hash_lookup_data(media_hash_, &key, &data) >= 0
                   ? static_cast<const MediaEntry*>(data)
                   : nullptr;
    }

    /// Looks up a burst of endpoints (at most RTE_HASH_LOOKUP_BULK_MAX = 64, e.g. source and
    /// destination of 32 packets) with prefetching; out[i] is the entry or nullptr. Returns
    /// the hit mask (bit i set when out[i] != nullptr). Measured as above, 32 keys: ~13 ns
    /// per key on hits, ~9 ns per key on misses (the common case: most UDP is not
    /// intercepted).
    std::uint64_t find_media_bulk(std::span<const MediaKey> keys,
                                  const MediaEntry** out) const noexcept;

    /// Marks an entry seen at now (a relaxed store at most once per touch interval).
    void touch(const DialogEntry& e, std::uint64_t now_ns) const noexcept {
        touch(e.last_seen_ns, now_ns);
    }
    void touch(const MediaEntry& e, std::uint64_t now_ns) const noexcept {
        touch(e.last_seen_ns, now_ns);
    }

    // ---- Writers: any thread; serialised by the writers' lock, never blocked by readers,
    // ---- never waiting for a grace period.

    /// A SIP message of this dialog matched targets: creates the dialog (new correlation id)
    /// or merges warrants and side into it. Messages that match nothing but belong to a known
    /// dialog need no write: find_dialog() and touch().
    /// caller_tag identifies the caller's From tag (any non-zero hash of it; 0: unknown) so
    /// that later messages tell which party sent them.
    /// replace: the dialog's warrants become exactly `warrants` (a worker re-matched the call
    /// after the target set changed: ended warrants leave, new ones join).
    DialogUpsert dialog_create_or_update(const DialogKey& key, std::span<const WarrantId> warrants,
                                         TargetSide side, std::uint64_t caller_tag,
                                         std::uint64_t now_ns, bool replace = false) noexcept;

    /// BYE, CANCEL or a final failure of the initial INVITE (not of a re-INVITE: the caller
    /// decides): the dialog and its media stay for linger_ns, then the sweep removes them.
    /// Ending is final; later updates keep it ending.
    FlowResult dialog_end(const DialogKey& key, std::uint64_t now_ns) noexcept;

    /// Removes the dialog and the media it owns now.
    FlowResult dialog_remove(const DialogKey& key) noexcept;

    /// specs: at most kMaxMediaSpecs (one SDP's worth, see collect_media); more are ignored.
    ///
    /// Adds endpoints announced by party (offer or answer, early media from forks): existing
    /// endpoints of the dialog stay. An endpoint owned by another dialog is taken over (the
    /// newer SDP wins: the old call ended unseen or the port was reused).
    MediaUpdate media_add(const DialogKey& dialog, Party party, std::span<const MediaSpec> specs,
                          std::uint64_t now_ns) noexcept;

    /// Replaces the endpoints of party with specs (re-INVITE or UPDATE in a confirmed dialog,
    /// RFC 3264 section 8: a new offer describes the whole session): the party's endpoints
    /// not in specs are removed, new ones added. The other party's endpoints are untouched.
    MediaUpdate media_move(const DialogKey& dialog, Party party, std::span<const MediaSpec> specs,
                           std::uint64_t now_ns) noexcept;

    // ---- Housekeeping: one thread (the main lcore), periodically, e.g. every millisecond.

    /// Examines up to budget pool slots (resuming where the last call stopped) and removes
    /// ended dialogs past their linger, idle dialogs and idle media. At the end of each full
    /// pass, when occupancy is above the high watermark or an insert found a table full, it
    /// evicts the least recently seen entries down to the low watermark. Scanning takes no
    /// lock; removals take the writers' lock a few entries at a time, so workers that write
    /// never wait long.
    SweepResult sweep(std::uint64_t now_ns, std::uint32_t budget) noexcept;

    // ---- Diagnostics

    FlowTableCounterValues counters() const noexcept;
    std::uint32_t dialog_count() const noexcept;
    std::uint32_t media_count() const noexcept;
    const FlowTablesConfig& config() const noexcept { return config_; }

    /// Checks the tables against the pools (every live entry findable under its key, counts
    /// agree, free + live + retired = pool size). Takes the writers' lock; O(capacity). For
    /// tests and debugging. Returns false and says what is wrong in *problem.
    bool validate(std::string* problem = nullptr) noexcept;

  private:
    enum class Reason : std::uint8_t { Ended, Idle, Evicted, Explicit, Moved, WithDialog };
    struct Candidate {
        std::uint64_t last_seen;
        std::uint32_t slot;
        std::uint32_t generation;
    };
    struct Victim {
        std::uint32_t slot;
        std::uint32_t generation;
        Reason reason;
        bool media;
        std::uint64_t seen;  // eviction: last_seen when chosen (skip it if used since)
    };
    class WriterLock;

    FlowTables(const FlowTablesConfig& config, QuiescentState& qs) noexcept;
    bool init(std::string* error) noexcept;

    void touch(std::atomic<std::uint64_t>& last_seen, std::uint64_t now_ns) const noexcept {
        const std::uint64_t seen = last_seen.load(std::memory_order_relaxed);
        if (now_ns > seen && now_ns - seen >= config_.touch_interval_ns)
            last_seen.store(now_ns, std::memory_order_relaxed);
    }

    void count(FlowTableCounter c, std::uint64_t n = 1) noexcept;
    void set_gauge(FlowTableCounter c, std::uint64_t v) noexcept;

    // All below: the writers' lock is held.
    MediaUpdate media_update(const DialogKey& dialog, Party party, std::span<const MediaSpec> specs,
                             std::uint64_t now_ns, bool replace) noexcept;
    FlowResult upsert_media(const MediaSpec& spec, Party party, const DialogEntry& owner,
                            std::uint64_t now_ns) noexcept;
    const DialogEntry* replace_dialog(const DialogEntry& old, const DialogEntry& next) noexcept;
    void refresh_media_of(const DialogEntry& d, std::uint64_t now_ns) noexcept;
    void remove_media(const MediaEntry& m, Reason reason) noexcept;
    void remove_dialog(const DialogEntry& d, Reason reason) noexcept;
    void reclaim() noexcept;
    std::uint32_t slot_of(const DialogEntry& e) const noexcept {
        return static_cast<std::uint32_t>(&e - dialogs_);
    }
    std::uint32_t slot_of(const MediaEntry& e) const noexcept {
        return static_cast<std::uint32_t>(&e - media_);
    }

    // Sweep helpers (sweeper thread; online in the QSBR while they run).
    std::uint64_t effective_last_seen(const DialogEntry& d) const noexcept;
    void scan_dialog(std::uint32_t slot, std::uint64_t now_ns) noexcept;
    void scan_media(std::uint32_t slot, std::uint64_t now_ns) noexcept;
    void queue_victim(const Victim& v, std::uint64_t now_ns) noexcept;
    void flush_victims(std::uint64_t now_ns) noexcept;
    bool still_victim(const Victim& v, std::uint64_t now_ns) const noexcept;
    void end_of_pass(std::uint64_t now_ns) noexcept;
    void evict(bool media, std::uint64_t now_ns) noexcept;

    FlowTablesConfig config_;
    QuiescentState& qs_;
    std::uint64_t key0_ = 0;
    std::uint64_t key1_ = 0;

    rte_hash* dialog_hash_ = nullptr;
    rte_hash* media_hash_ = nullptr;
    DialogEntry* dialogs_ = nullptr;  // pool storage (DPDK memory)
    MediaEntry* media_ = nullptr;
    SlotPool dialog_slots_;
    SlotPool media_slots_;

    // Writers' state, behind the lock.
    alignas(64) std::atomic<bool> lock_{false};
    std::uint64_t next_correlation_id_ = 1;
    std::uint32_t dialog_live_ = 0;
    std::uint32_t media_live_ = 0;
    std::atomic<bool> dialog_full_seen_{false};  // ask the sweep to evict
    std::atomic<bool> media_full_seen_{false};

    // Sweeper's state (one thread).
    std::uint32_t cursor_ = 0;
    std::unique_ptr<Candidate[]> dialog_candidates_;
    std::unique_ptr<Candidate[]> media_candidates_;
    std::uint32_t dialog_candidate_count_ = 0;
    std::uint32_t media_candidate_count_ = 0;
    static constexpr std::uint32_t kVictimBatch = 8;  // removals per lock hold
    std::array<Victim, kVictimBatch> victims_{};
    std::uint32_t victim_count_ = 0;
    std::uint32_t sweep_removed_ = 0;

    // Written under the lock (or by the sweeper), read by telemetry: relaxed atomics.
    std::array<std::atomic<std::uint64_t>, kFlowTableCounterCount> counters_{};
};

}  // namespace tapwire::dataplane
