// Durable state of the control plane: warrants, destinations and the counters the handover
// needs across restarts, in one SQLite database.
//
// Durability contract: every mutating call is one transaction and has reached the disk when
// it returns success (WAL journal, synchronous=FULL: the WAL is fsynced at every commit). So
// the gRPC layer acknowledges a warrant only after put_warrant returned, and an acknowledged
// warrant survives kill -9 and power loss. Measured cost: see store.cpp (one fsync per call).
//
// Errors are returned, never thrown: StoreResult<T> holds a value or a StoreFailure whose
// message a person can act on ("database or disk is full (/var/lib/tapwire/state.db): ...").
// The gRPC layer maps StoreError to status codes: NotFound -> NOT_FOUND, AlreadyExists ->
// ALREADY_EXISTS, FailedPrecondition -> FAILED_PRECONDITION, InvalidArgument ->
// INVALID_ARGUMENT, Busy -> UNAVAILABLE, DiskFull/Exhausted -> RESOURCE_EXHAUSTED, the rest ->
// INTERNAL.
//
// Times are nanoseconds since the Unix epoch (UTC) passed in by the caller: the store never
// reads a clock, so tests drive it with a controllable one.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "common/x_list.hpp"
#include "tapwire/v1/controlplane.pb.h"

struct sqlite3;
struct sqlite3_stmt;

namespace tapwire::controlplane {

#define TAPWIRE_STORE_ERRORS(X)                  \
    X(Ok, "ok")                                  \
    X(NotFound, "not_found")                     \
    X(AlreadyExists, "already_exists")           \
    X(FailedPrecondition, "failed_precondition") \
    X(InvalidArgument, "invalid_argument")       \
    X(Busy, "busy")                              \
    X(DiskFull, "disk_full")                     \
    X(Io, "io_error")                            \
    X(Corrupt, "corrupt")                        \
    X(Exhausted, "exhausted")                    \
    X(Internal, "internal")

enum class StoreError : std::uint8_t { TAPWIRE_STORE_ERRORS(TAPWIRE_X_ENUMERATOR) Count };

const char* to_string(StoreError e) noexcept;

/// Why a store call failed: a code for the caller's logic and a message for a person.
struct StoreFailure {
    StoreError code = StoreError::Internal;
    std::string message;
};

/// A value or a StoreFailure (std::expected is C++23).
template <class T>
class [[nodiscard]] StoreResult {
  public:
    StoreResult(T value) : v_(std::in_place_index<0>, std::move(value)) {}
    StoreResult(StoreFailure failure) : v_(std::in_place_index<1>, std::move(failure)) {}

    bool ok() const noexcept { return v_.index() == 0; }
    explicit operator bool() const noexcept { return ok(); }

    /// Only when ok().
    T& value() & { return std::get<0>(v_); }
    const T& value() const& { return std::get<0>(v_); }
    T&& value() && { return std::get<0>(std::move(v_)); }
    T* operator->() { return &std::get<0>(v_); }
    const T* operator->() const { return &std::get<0>(v_); }
    T& operator*() & { return std::get<0>(v_); }
    const T& operator*() const& { return std::get<0>(v_); }

    /// Only when !ok().
    const StoreFailure& failure() const& { return std::get<1>(v_); }
    StoreError code() const noexcept { return ok() ? StoreError::Ok : std::get<1>(v_).code; }
    /// "" when ok().
    const std::string& message() const {
        static const std::string kNone;
        return ok() ? kNone : std::get<1>(v_).message;
    }

  private:
    std::variant<T, StoreFailure> v_;
};

struct Done {};
using StoreStatus = StoreResult<Done>;

/// A warrant as stored: its status (the signed warrant, state, version, times) and the small
/// numeric id the dataplane uses for it.
struct StoredWarrant {
    v1::WarrantStatus status;
    /// Allocated once per XID at first insert, never reused (not even after the warrant
    /// ended, nor across restarts): a stale id in a dataplane snapshot or a ring can never
    /// be attributed to another warrant. 0 is never a warrant (dataplane/target_set.hpp).
    std::uint32_t internal_id = 0;
    std::int64_t updated_at_ns = 0;
};

/// What put_warrant did.
struct PutOutcome {
    StoredWarrant stored;   // the row as it is now
    bool inserted = false;  // first time this XID was seen
    /// A repeat: the same signed warrant was already stored (at that version); nothing was
    /// written and `stored` is the original result (its state may have moved on since).
    bool repeated = false;
};

/// A state change the scheduler has to make (see warrants_needing_attention).
struct Attention {
    std::string xid;
    std::uint32_t internal_id = 0;
    v1::WarrantState from = v1::WARRANT_STATE_UNSPECIFIED;
    v1::WarrantState to = v1::WARRANT_STATE_UNSPECIFIED;  // ACTIVE, LAPSED or EMERGENCY_LAPSED
    std::int64_t due_ns = 0;  // when the change took or takes effect (window edge, deadline)
};

/// update_state's arguments. Timestamps left empty keep the stored value.
struct StateChange {
    v1::WarrantState state = v1::WARRANT_STATE_UNSPECIFIED;
    std::optional<std::int64_t> activated_at_ns;
    std::optional<std::int64_t> ended_at_ns;
    bool clear_emergency_deadline = false;
    /// Compare-and-set: applied only while the stored state is this one (the scheduler
    /// activating a warrant must not resurrect one that a Deactivate ended meanwhile).
    std::optional<v1::WarrantState> expected_state;
    /// Records an emergency warrant's confirmation (ConfirmEmergency) in the status, outside
    /// the signed warrant: emergency_confirmation_reference and emergency_confirmed_at.
    struct Confirmation {
        std::string reference;
        std::int64_t confirmed_at_ns = 0;
    };
    std::optional<Confirmation> confirmation;
};

/// A contiguous block of counter values [first, end).
struct CounterBlock {
    std::uint64_t first = 0;
    std::uint64_t end = 0;
};

enum class RecordStream : std::uint8_t { Iri, Cc };

struct StoreOptions {
    /// How long a call waits for another connection's write lock (another process on the
    /// same file, e.g. a backup) before it fails with StoreError::Busy.
    int busy_timeout_ms = 5000;
    /// Caps the database size in pages (4 KiB each); 0: no cap. Writes past it fail with
    /// StoreError::DiskFull and the database stays usable, so the state database can never
    /// fill the volume it shares with the audit trail and the delivery spool.
    std::uint32_t max_page_count = 0;
    /// PRAGMA quick_check at open: refuse a damaged database loudly at start-up rather than
    /// serve from it (100k warrants, 34 MB: 0.6 s from a cold page cache, 45 ms warm).
    bool quick_check = true;
};

/// The control plane's SQLite database. Thread-safe: every call takes one mutex.
///
/// One connection behind a mutex, not a pool: SQLite admits one writer at a time anyway, the
/// control plane's calls are few and short (one fsync dominates each write), and a single
/// connection means our own threads never see SQLITE_BUSY from each other and the prepared
/// statement cache needs no further locking. Other processes on the same file are handled by
/// busy_timeout and BEGIN IMMEDIATE.
class Store {
  public:
    /// Opens (creating if needed) the database at `path` and migrates its schema to the
    /// current version. nullptr with `error` set on failure (a sentence naming the path).
    static std::unique_ptr<Store> open(const std::string& path, std::string& error,
                                       const StoreOptions& options = {});

    ~Store();
    Store(const Store&) = delete;
    Store& operator=(const Store&) = delete;

    // ---- Warrants -------------------------------------------------------------------------

    /// Inserts or replaces the warrant with status.warrant().xid(), atomically with its
    /// destination links (every destination id must exist: FailedPrecondition otherwise).
    /// `expected_version`:
    ///  - nullopt: unconditional upsert;
    ///  - 0: create only (Activate). An existing row with the identical signed warrant is a
    ///    repeat (outcome.repeated, nothing written); a different one is AlreadyExists;
    ///  - n: the stored version must be n (Modify; two racing Modifies cannot both win): a
    ///    stored row already holding this exact warrant at status.version() is a repeat;
    ///    otherwise FailedPrecondition, or NotFound when there is no row.
    /// The internal id is allocated on first insert and kept on every replace. Stored from
    /// the status: state, version, activated_at, ended_at, emergency_deadline, accepted_at and
    /// the emergency confirmation (the runtime fields are not persisted).
    StoreResult<PutOutcome> put_warrant(const v1::WarrantStatus& status, std::int64_t now_ns,
                                        std::optional<std::uint64_t> expected_version = {});

    /// The warrant with this XID, or nullopt (not an error: the idempotency check).
    StoreResult<std::optional<StoredWarrant>> find_by_xid(std::string_view xid);

    /// The warrant with this XID, NotFound if there is none.
    StoreResult<StoredWarrant> get_warrant(std::string_view xid);

    /// Changes state and times without a new version (activation, lapse, deactivation,
    /// emergency confirmation). Ended states (LAPSED, DEACTIVATED, EMERGENCY_LAPSED) are
    /// final: moving out of one is FailedPrecondition; setting the same ended state again is
    /// a no-op that keeps the original end time.
    StoreResult<StoredWarrant> update_state(std::string_view xid, const StateChange& change,
                                            std::int64_t now_ns);

    /// Warrants in any of `states` (all when empty), in internal id (creation) order.
    StoreResult<std::vector<StoredWarrant>> list_warrants(
        const std::vector<v1::WarrantState>& states = {});

    /// Every PENDING or ACTIVE warrant whose state must change at or before `now_ns`,
    /// ordered by the time of the change: PENDING -> ACTIVE at valid_from, -> LAPSED at
    /// valid_until, -> EMERGENCY_LAPSED at the emergency deadline. One entry per warrant,
    /// naming the state it must be in at now_ns: when the window has already ended (say,
    /// after the control plane was down through it) the warrant goes straight to its ended
    /// state and is never activated; when both ends have passed, the earlier one wins.
    /// The scheduler calls this at start-up and whenever next_attention_ns() is reached.
    StoreResult<std::vector<Attention>> warrants_needing_attention(std::int64_t now_ns);

    /// The earliest time at which some PENDING or ACTIVE warrant's state must change (it may
    /// lie in the past); nullopt when none will. What the scheduler sleeps until.
    StoreResult<std::optional<std::int64_t>> next_attention_ns();

    // ---- Destinations ---------------------------------------------------------------------

    /// AlreadyExists for a different destination with the same id; an identical repeat
    /// succeeds.
    StoreResult<v1::Destination> create_destination(const v1::Destination& destination,
                                                    std::int64_t now_ns);
    /// NotFound when there is none with this id.
    StoreResult<v1::Destination> modify_destination(const v1::Destination& destination,
                                                    std::int64_t now_ns);
    /// Returns the removed destination. FailedPrecondition (naming the XIDs) while a PENDING
    /// or ACTIVE warrant delivers to it; links from ended warrants are dropped with it (the
    /// ended warrant keeps the id in its signed destination_ids).
    StoreResult<v1::Destination> remove_destination(std::string_view id);
    StoreResult<v1::Destination> get_destination(std::string_view id);
    /// In id order.
    StoreResult<std::vector<v1::Destination>> list_destinations();

    // ---- Durable counters (handover sequence numbers, CIN allocation) ---------------------
    //
    // A counter hands out values in blocks: reserve_block durably moves the counter's
    // reserved end forward by `count` (one fsync) and the caller then uses the block's
    // values from memory. Persisting every record's sequence number would cost one fsync per
    // record (~ms; see store.cpp), far too slow at 1M records/s; with blocks of 64k the
    // store is written ~15 times a second at that rate.
    //
    // At a restart there are two choices, and resume_counter offers both:
    //  - without `last_used`: continue at the reserved end. Never repeats a value, but
    //    leaves a gap of the unused rest of the block, which the LEMF reads as lost records
    //    (ETSI TS 102 232-1 sequenceNumber is meant to be contiguous per LIID and CIN).
    //  - with `last_used`: continue at last_used + 1, contiguous. Correct only when
    //    `last_used` comes from the durable record of what was handed over — the delivery
    //    spool, which fsyncs each record with its sequence number before it may leave the
    //    appliance. The spool, not this store, is the source of truth for delivered
    //    sequence numbers; this store only guarantees that a value beyond its reserved end
    //    was never handed out. The handover should pass the spool's last sequence number
    //    for every stream the spool knows, so the LEMF sees no gap.
    // Note that a new CIN starts its sequence at 0 (TS 102 232-1), so a per-call counter
    // needs no store write until a block is exhausted or the call outlives a restart.

    /// Reserves [first, first + count) of the named counter (count >= 1).
    StoreResult<CounterBlock> reserve_block(std::string_view counter, std::uint64_t count);
    /// The next value to use after a restart (see above), and makes it the reserved end so
    /// that the next reserve_block starts there.
    StoreResult<std::uint64_t> resume_counter(std::string_view counter,
                                              std::optional<std::uint64_t> last_used = {});
    /// The reserved end (the first value never handed out), 0 for an unknown counter.
    StoreResult<std::uint64_t> counter_reserved_end(std::string_view counter);
    /// Forgets a counter (a call's CIN ended); unknown counters are fine.
    StoreStatus drop_counter(std::string_view counter);

    /// The counter name of the sequence numbers of one LIID, CIN and record stream.
    static std::string sequence_counter(std::string_view liid, std::uint64_t cin,
                                        RecordStream stream);

    // ---- Maintenance ----------------------------------------------------------------------

    /// PRAGMA integrity_check: "ok", or SQLite's list of problems.
    StoreResult<std::string> integrity_check();

    const std::string& path() const noexcept { return path_; }

    /// The schema version this binary writes (the schema_version table holds the file's).
    static constexpr int kSchemaVersion = 2;

  private:
    enum class Sql : std::uint8_t;
    class Stmt;

    Store(sqlite3* db, std::string path, const StoreOptions& options);

    // Everything below runs with mutex_ held (or, in open(), before the Store is shared).
    sqlite3_stmt* statement(Sql which, StoreFailure& failure);
    StoreFailure failure_from_sqlite(int rc, std::string_view what) const;
    StoreStatus exec(const char* sql, std::string_view what);
    StoreResult<std::string> query_text(const char* sql, std::string_view what);
    StoreStatus migrate();
    StoreStatus begin(std::string_view what);
    StoreStatus commit(std::string_view what);

    StoreResult<StoredWarrant> read_warrant(Stmt& row);
    StoreResult<std::optional<StoredWarrant>> find_warrant(std::string_view xid);
    StoreResult<std::optional<v1::Destination>> find_destination(std::string_view id);
    StoreResult<std::uint32_t> allocate_internal_id();
    StoreResult<std::optional<std::uint64_t>> counter_get(std::string_view counter);
    StoreStatus counter_set(std::string_view counter, std::uint64_t value);

    std::mutex mutex_;
    sqlite3* db_ = nullptr;
    std::string path_;
    StoreOptions options_;
    std::array<sqlite3_stmt*, 40> statements_{};
};

/// google.protobuf.Timestamp <-> nanoseconds since the epoch. nullopt when it does not fit
/// in int64 nanoseconds (before 1677 or after 2262) or is malformed.
std::optional<std::int64_t> to_unix_ns(const google::protobuf::Timestamp& t) noexcept;
google::protobuf::Timestamp to_timestamp(std::int64_t unix_ns);

}  // namespace tapwire::controlplane
