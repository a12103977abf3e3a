// SQLite persistence of the control plane. See store.hpp for the contract.
//
// Durability settings, and why:
// - journal_mode=WAL: readers never block the writer, and a commit is one sequential append
//   to the -wal file plus one fsync.
// - synchronous=FULL, not NORMAL: in WAL mode NORMAL fsyncs the WAL only at checkpoints, so a
//   commit survives kill -9 (the data is in the kernel's page cache) but the last
//   transactions can be rolled back by a power loss or kernel crash. A warrant that we
//   acknowledged over gRPC must survive both, so every commit fsyncs the WAL (FULL).
//   Cost, measured on the development VM's virtio disk (2000 puts of a 5-target warrant):
//   put_warrant median 3.5-4 ms, p99 8-11 ms, ~330 per second from one thread; a bare
//   SQLite insert costs the same under WAL+FULL (3.6 ms) and 0.013 ms under WAL+NORMAL: the
//   fsync is the price, and it buys the durability of every acknowledged warrant.
// - foreign_keys=ON: a link from a warrant to a destination that does not exist cannot be
//   written, and a destination that warrants still reference cannot be deleted.
// - BEGIN IMMEDIATE for every write: the write lock is taken up front, so a transaction never
//   fails half-way with SQLITE_BUSY when another process (a backup, sqlite3 CLI) holds it;
//   busy_timeout bounds the wait.
#include "controlplane/store.hpp"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <limits>
#include <system_error>

namespace tapwire::controlplane {

// The SQL below writes warrant states as literals: the partial indexes are only used by
// queries whose WHERE clause repeats the index's own terms.
static_assert(v1::WARRANT_STATE_PENDING == 1 && v1::WARRANT_STATE_ACTIVE == 2 &&
              v1::WARRANT_STATE_LAPSED == 3 && v1::WARRANT_STATE_DEACTIVATED == 4 &&
              v1::WARRANT_STATE_EMERGENCY_LAPSED == 5);

namespace {

constexpr std::int32_t kApplicationId = 0x54505752;  // "TPWR" in the file header
constexpr std::uint64_t kMaxCounter = std::numeric_limits<std::int64_t>::max();
constexpr std::uint64_t kMaxInternalId = std::numeric_limits<std::uint32_t>::max();

// Migration i brings the schema from version i to i + 1; all run in one transaction.
constexpr const char* kMigrations[] = {
    // Version 1.
    R"sql(
CREATE TABLE warrants (
    xid TEXT PRIMARY KEY NOT NULL,
    liid TEXT NOT NULL,
    state INTEGER NOT NULL CHECK (state BETWEEN 1 AND 5),
    version INTEGER NOT NULL CHECK (version >= 1),
    -- The window and deadline, copied out of the blob so that the scheduler's queries use
    -- indexes; NULL: none.
    valid_from_ns INTEGER,
    valid_until_ns INTEGER,
    emergency_deadline_ns INTEGER,
    activated_at_ns INTEGER,
    ended_at_ns INTEGER,
    -- The dataplane's warrant id: allocated from meta.next_internal_id, never reused.
    internal_id INTEGER NOT NULL UNIQUE CHECK (internal_id BETWEEN 1 AND 4294967295),
    warrant BLOB NOT NULL,  -- serialized tapwire.v1.Warrant, as signed
    updated_at_ns INTEGER NOT NULL
);
-- The scheduler's three kinds of due change, each over the warrants that can still change.
CREATE INDEX warrants_due_start ON warrants (valid_from_ns) WHERE state = 1;
CREATE INDEX warrants_due_end ON warrants (valid_until_ns) WHERE state IN (1, 2);
CREATE INDEX warrants_due_deadline ON warrants (emergency_deadline_ns)
    WHERE state IN (1, 2) AND emergency_deadline_ns IS NOT NULL;

CREATE TABLE destinations (
    id TEXT PRIMARY KEY NOT NULL,
    destination BLOB NOT NULL,  -- serialized tapwire.v1.Destination
    created_at_ns INTEGER NOT NULL,
    updated_at_ns INTEGER NOT NULL
);

-- Which warrant delivers to which destination. RESTRICT: removing a destination that a
-- warrant still links to fails even if the code forgot to check.
CREATE TABLE warrant_destinations (
    xid TEXT NOT NULL REFERENCES warrants (xid) ON DELETE CASCADE,
    destination_id TEXT NOT NULL REFERENCES destinations (id) ON DELETE RESTRICT,
    PRIMARY KEY (xid, destination_id)
) WITHOUT ROWID;
CREATE INDEX warrant_destinations_by_destination ON warrant_destinations (destination_id);

-- Durable counters handed out in blocks (handover sequence numbers, CINs).
CREATE TABLE counters (
    name TEXT PRIMARY KEY NOT NULL,
    reserved_end INTEGER NOT NULL CHECK (reserved_end >= 0)
) WITHOUT ROWID;

-- The store's own values (next_internal_id).
CREATE TABLE meta (
    key TEXT PRIMARY KEY NOT NULL,
    value INTEGER NOT NULL
) WITHOUT ROWID;

PRAGMA application_id = 1414551378;
)sql",
    // Version 2: when a warrant was first accepted (its emergency deadline counts from it, and
    // a Modify keeps it), and an emergency confirmation recorded outside the signed warrant.
    R"sql(
ALTER TABLE warrants ADD COLUMN accepted_at_ns INTEGER;
ALTER TABLE warrants ADD COLUMN confirmation_reference TEXT NOT NULL DEFAULT '';
ALTER TABLE warrants ADD COLUMN confirmed_at_ns INTEGER;
)sql",
};
static_assert(std::size(kMigrations) == Store::kSchemaVersion);
static_assert(kApplicationId == 1414551378);

#define TAPWIRE_WARRANT_COLUMNS                                                           \
    "xid, liid, state, version, valid_from_ns, valid_until_ns, emergency_deadline_ns, "   \
    "activated_at_ns, ended_at_ns, internal_id, warrant, updated_at_ns, accepted_at_ns, " \
    "confirmation_reference, confirmed_at_ns"

enum Col : int {
    kColXid,
    kColLiid,
    kColState,
    kColVersion,
    kColValidFrom,
    kColValidUntil,
    kColDeadline,
    kColActivatedAt,
    kColEndedAt,
    kColInternalId,
    kColWarrant,
    kColUpdatedAt,
    kColAcceptedAt,
    kColConfirmation,
    kColConfirmedAt,
};

bool is_valid_state(int s) noexcept {
    return s >= v1::WARRANT_STATE_PENDING && s <= v1::WARRANT_STATE_EMERGENCY_LAPSED;
}

bool is_ended(int s) noexcept {
    return s == v1::WARRANT_STATE_LAPSED || s == v1::WARRANT_STATE_DEACTIVATED ||
           s == v1::WARRANT_STATE_EMERGENCY_LAPSED;
}

std::string state_name(int s) {
    return v1::WarrantState_IsValid(s) ? v1::WarrantState_Name(static_cast<v1::WarrantState>(s))
                                       : "state " + std::to_string(s);
}

StoreFailure fail(StoreError code, std::string message) {
    return {code, std::move(message)};
}

// Reads a Timestamp field that may be absent; false when it is present but out of range.
bool optional_ns(bool present, const google::protobuf::Timestamp& t,
                 std::optional<std::int64_t>& out) {
    out.reset();
    if (!present) return true;
    out = to_unix_ns(t);
    return out.has_value();
}

// Rolls back whatever transaction is still open when a call returns early (an error, or a
// repeat that wrote nothing). Declared before any Stmt so that it runs after their resets.
struct RollbackGuard {
    sqlite3* db;
    ~RollbackGuard() {
        if (sqlite3_get_autocommit(db) == 0)
            sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
    }
};

}  // namespace

const char* to_string(StoreError e) noexcept {
    static constexpr const char* kNames[] = {TAPWIRE_STORE_ERRORS(TAPWIRE_X_TEXT)};
    return name_of(e, kNames);
}

std::optional<std::int64_t> to_unix_ns(const google::protobuf::Timestamp& t) noexcept {
    if (t.nanos() < 0 || t.nanos() >= 1'000'000'000) return std::nullopt;
    std::int64_t ns = 0;
    if (__builtin_mul_overflow(t.seconds(), std::int64_t{1'000'000'000}, &ns)) return std::nullopt;
    if (__builtin_add_overflow(ns, std::int64_t{t.nanos()}, &ns)) return std::nullopt;
    return ns;
}

google::protobuf::Timestamp to_timestamp(std::int64_t unix_ns) {
    std::int64_t seconds = unix_ns / 1'000'000'000;
    std::int64_t nanos = unix_ns % 1'000'000'000;
    if (nanos < 0) {  // Timestamp.nanos is never negative
        nanos += 1'000'000'000;
        --seconds;
    }
    google::protobuf::Timestamp t;
    t.set_seconds(seconds);
    t.set_nanos(static_cast<std::int32_t>(nanos));
    return t;
}

// ---- Prepared statements --------------------------------------------------------------------

enum class Store::Sql : std::uint8_t {
    Begin,
    Commit,
    WarrantByXid,
    WarrantInsert,
    WarrantReplace,
    WarrantSetState,
    WarrantList,
    WarrantsDue,
    NextDue,
    MaxInternalId,
    LinksDelete,
    LinkInsert,
    DestinationById,
    DestinationInsert,
    DestinationUpdate,
    DestinationDelete,
    DestinationList,
    DestinationUsers,
    DestinationUnlink,
    MetaGet,
    MetaSet,
    CounterGet,
    CounterSet,
    CounterDelete,
    Count
};

namespace {

constexpr const char* kSql[] = {
    "BEGIN IMMEDIATE",
    "COMMIT",
    "SELECT " TAPWIRE_WARRANT_COLUMNS " FROM warrants WHERE xid = ?1",
    "INSERT INTO warrants (" TAPWIRE_WARRANT_COLUMNS
    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
    // ?10 (internal_id) is bound but unused: a replace keeps the id of the first insert.
    "UPDATE warrants SET liid = ?2, state = ?3, version = ?4, valid_from_ns = ?5, "
    "valid_until_ns = ?6, emergency_deadline_ns = ?7, activated_at_ns = ?8, ended_at_ns = ?9, "
    "warrant = ?11, updated_at_ns = ?12, accepted_at_ns = ?13, confirmation_reference = ?14, "
    "confirmed_at_ns = ?15 WHERE xid = ?1",
    "UPDATE warrants SET state = ?2, activated_at_ns = ?3, ended_at_ns = ?4, "
    "emergency_deadline_ns = ?5, updated_at_ns = ?6, confirmation_reference = ?7, "
    "confirmed_at_ns = ?8 WHERE xid = ?1",
    // ?1: bit mask of the wanted states.
    "SELECT " TAPWIRE_WARRANT_COLUMNS " FROM warrants WHERE (?1 >> state) & 1 ORDER BY internal_id",
    // Each arm uses its partial index; UNION drops a warrant due on two counts twice over.
    "SELECT xid, internal_id, state, valid_from_ns, valid_until_ns, emergency_deadline_ns "
    "FROM warrants WHERE state = 1 AND valid_from_ns <= ?1 "
    "UNION SELECT xid, internal_id, state, valid_from_ns, valid_until_ns, emergency_deadline_ns "
    "FROM warrants WHERE state IN (1, 2) AND valid_until_ns <= ?1 "
    "UNION SELECT xid, internal_id, state, valid_from_ns, valid_until_ns, emergency_deadline_ns "
    "FROM warrants WHERE state IN (1, 2) AND emergency_deadline_ns IS NOT NULL "
    "AND emergency_deadline_ns <= ?1",
    "SELECT min(t) FROM ("
    "SELECT min(valid_from_ns) AS t FROM warrants WHERE state = 1 "
    "UNION ALL SELECT min(valid_until_ns) FROM warrants WHERE state IN (1, 2) "
    "UNION ALL SELECT min(emergency_deadline_ns) FROM warrants "
    "WHERE state IN (1, 2) AND emergency_deadline_ns IS NOT NULL)",
    "SELECT max(internal_id) FROM warrants",
    "DELETE FROM warrant_destinations WHERE xid = ?1",
    "INSERT OR IGNORE INTO warrant_destinations (xid, destination_id) VALUES (?1, ?2)",
    "SELECT destination FROM destinations WHERE id = ?1",
    "INSERT INTO destinations (id, destination, created_at_ns, updated_at_ns) "
    "VALUES (?1, ?2, ?3, ?3)",
    "UPDATE destinations SET destination = ?2, updated_at_ns = ?3 WHERE id = ?1",
    "DELETE FROM destinations WHERE id = ?1",
    "SELECT destination FROM destinations ORDER BY id",
    "SELECT w.xid FROM warrant_destinations AS d JOIN warrants AS w ON w.xid = d.xid "
    "WHERE d.destination_id = ?1 AND w.state IN (1, 2) ORDER BY w.internal_id LIMIT 4",
    "DELETE FROM warrant_destinations WHERE destination_id = ?1",
    "SELECT value FROM meta WHERE key = ?1",
    "INSERT INTO meta (key, value) VALUES (?1, ?2) "
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    "SELECT reserved_end FROM counters WHERE name = ?1",
    "INSERT INTO counters (name, reserved_end) VALUES (?1, ?2) "
    "ON CONFLICT (name) DO UPDATE SET reserved_end = excluded.reserved_end",
    "DELETE FROM counters WHERE name = ?1",
};

}  // namespace

/// One use of a cached statement: binds, steps, reads columns; resets it on scope exit.
/// Bound strings and blobs are SQLITE_STATIC: they must outlive the Stmt, which they do as
/// every Stmt lives inside the call that owns them.
class Store::Stmt {
  public:
    Stmt(Store& store, Sql which) : store_(store), s_(store.statement(which, failure_)) {}
    ~Stmt() {
        if (s_ != nullptr) {
            sqlite3_reset(s_);
            sqlite3_clear_bindings(s_);
        }
    }
    Stmt(const Stmt&) = delete;
    Stmt& operator=(const Stmt&) = delete;

    explicit operator bool() const noexcept { return s_ != nullptr; }
    const StoreFailure& failure() const noexcept { return failure_; }

    void text(int i, std::string_view v) {
        // A null pointer would bind SQL NULL: empty strings stay strings.
        keep(sqlite3_bind_text(s_, i, v.data() != nullptr ? v.data() : "",
                               static_cast<int>(v.size()), SQLITE_STATIC));
    }
    void blob(int i, std::string_view v) {
        keep(sqlite3_bind_blob(s_, i, v.data() != nullptr ? v.data() : "",
                               static_cast<int>(v.size()), SQLITE_STATIC));
    }
    void integer(int i, std::int64_t v) { keep(sqlite3_bind_int64(s_, i, v)); }
    void integer(int i, std::optional<std::int64_t> v) {
        keep(v ? sqlite3_bind_int64(s_, i, *v) : sqlite3_bind_null(s_, i));
    }

    /// SQLITE_ROW, SQLITE_DONE or an error code (a bind error first).
    int step() { return bind_rc_ != SQLITE_OK ? bind_rc_ : sqlite3_step(s_); }

    /// step() that expects SQLITE_DONE.
    StoreStatus run(std::string_view what) {
        const int rc = step();
        if (rc == SQLITE_DONE) return Done{};
        return error(rc, what);
    }

    StoreFailure error(int rc, std::string_view what) const {
        return store_.failure_from_sqlite(rc, what);
    }

    bool is_null(int c) const { return sqlite3_column_type(s_, c) == SQLITE_NULL; }
    std::int64_t integer(int c) const { return sqlite3_column_int64(s_, c); }
    std::optional<std::int64_t> optional_integer(int c) const {
        if (is_null(c)) return std::nullopt;
        return integer(c);
    }
    std::string_view text(int c) const {
        const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s_, c));
        return p != nullptr ? std::string_view(p, sqlite3_column_bytes(s_, c)) : "";
    }
    std::string_view blob(int c) const {
        const auto* p = static_cast<const char*>(sqlite3_column_blob(s_, c));
        return p != nullptr ? std::string_view(p, sqlite3_column_bytes(s_, c)) : "";
    }

  private:
    void keep(int rc) {
        if (bind_rc_ == SQLITE_OK) bind_rc_ = rc;
    }

    Store& store_;
    StoreFailure failure_;
    sqlite3_stmt* s_;
    int bind_rc_ = SQLITE_OK;
};

sqlite3_stmt* Store::statement(Sql which, StoreFailure& failure) {
    static_assert(std::size(kSql) == static_cast<std::size_t>(Sql::Count));
    static_assert(std::size(kSql) <= std::tuple_size_v<decltype(statements_)>);
    const auto i = static_cast<std::size_t>(which);
    if (statements_[i] == nullptr) {
        // PERSISTENT: kept for the connection's life, so SQLite allocates it outside the
        // lookaside pool.
        const int rc = sqlite3_prepare_v3(db_, kSql[i], -1, SQLITE_PREPARE_PERSISTENT,
                                          &statements_[i], nullptr);
        if (rc != SQLITE_OK) {
            failure = failure_from_sqlite(rc, "preparing a statement");
            statements_[i] = nullptr;
        }
    }
    return statements_[i];
}

StoreFailure Store::failure_from_sqlite(int rc, std::string_view what) const {
    StoreFailure f;
    std::string hint;
    bool with_errno = false;
    switch (rc & 0xff) {
        case SQLITE_BUSY:
        case SQLITE_LOCKED:
            f.code = StoreError::Busy;
            hint = "another process held the database's write lock for more than " +
                   std::to_string(options_.busy_timeout_ms) + " ms; retry";
            break;
        case SQLITE_FULL:
            f.code = StoreError::DiskFull;
            hint = "free space on its volume";
            if (options_.max_page_count != 0) {
                hint += " or raise the store's size cap (max_page_count " +
                        std::to_string(options_.max_page_count) + ")";
            }
            with_errno = true;
            break;
        case SQLITE_IOERR:
        case SQLITE_CANTOPEN:
        case SQLITE_READONLY:
        case SQLITE_PERM:
            f.code = StoreError::Io;
            hint = "check the volume and the file's permissions";
            with_errno = true;
            break;
        case SQLITE_CORRUPT:
        case SQLITE_NOTADB:
            f.code = StoreError::Corrupt;
            hint = "the file is damaged or not a database: restore it from a backup";
            break;
        case SQLITE_CONSTRAINT:
            f.code = StoreError::FailedPrecondition;
            break;
        default:
            f.code = StoreError::Internal;
            break;
    }
    f.message.assign(what);
    f.message += ": ";
    f.message += db_ != nullptr ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
    f.message += " (";
    f.message += path_;
    f.message += ")";
    if (with_errno && db_ != nullptr) {
        if (const int e = sqlite3_system_errno(db_); e != 0) {
            f.message += ": errno " + std::to_string(e) + " (" +
                         std::error_code(e, std::generic_category()).message() + ")";
        }
    }
    if (!hint.empty()) {
        f.message += "; ";
        f.message += hint;
    }
    return f;
}

StoreStatus Store::exec(const char* sql, std::string_view what) {
    const int rc = sqlite3_exec(db_, sql, nullptr, nullptr, nullptr);
    if (rc != SQLITE_OK) return failure_from_sqlite(rc, what);
    return Done{};
}

StoreResult<std::string> Store::query_text(const char* sql, std::string_view what) {
    sqlite3_stmt* s = nullptr;
    int rc = sqlite3_prepare_v2(db_, sql, -1, &s, nullptr);
    if (rc != SQLITE_OK) return failure_from_sqlite(rc, what);
    std::string out;
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
        if (p != nullptr) out.assign(p, sqlite3_column_bytes(s, 0));
        rc = SQLITE_OK;
    } else if (rc == SQLITE_DONE) {
        rc = SQLITE_OK;
    }
    StoreResult<std::string> result = rc == SQLITE_OK
                                          ? StoreResult<std::string>(std::move(out))
                                          : StoreResult<std::string>(failure_from_sqlite(rc, what));
    sqlite3_finalize(s);
    return result;
}

StoreStatus Store::begin(std::string_view what) {
    Stmt st(*this, Sql::Begin);
    if (!st) return st.failure();
    return st.run(what);
}

StoreStatus Store::commit(std::string_view what) {
    Stmt st(*this, Sql::Commit);
    if (!st) return st.failure();
    return st.run(what);  // on failure the caller's RollbackGuard ends the transaction
}

// ---- Opening --------------------------------------------------------------------------------

Store::Store(sqlite3* db, std::string path, const StoreOptions& options)
    : db_(db), path_(std::move(path)), options_(options) {}

Store::~Store() {
    for (sqlite3_stmt*& s : statements_) {
        sqlite3_finalize(s);
        s = nullptr;
    }
    // The last connection checkpoints the WAL into the database file and removes it.
    sqlite3_close(db_);
}

StoreStatus Store::migrate() {
    RollbackGuard guard{db_};
    if (auto s = exec("BEGIN IMMEDIATE", "migrating the schema"); !s) return s;
    if (auto s = exec("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)",
                      "creating schema_version");
        !s) {
        return s;
    }
    auto rows = query_text("SELECT count(*) FROM schema_version", "reading schema_version");
    if (!rows) return rows.failure();
    auto version = query_text("SELECT max(version) FROM schema_version", "reading schema_version");
    if (!version) return version.failure();
    if (*rows != "0" && *rows != "1") {
        return fail(StoreError::Corrupt, "schema_version holds " + *rows + " rows, not one (" +
                                             path_ + "); restore the database from a backup");
    }
    const int from = version->empty() ? 0 : std::stoi(*version);
    if (from > kSchemaVersion) {
        return fail(StoreError::FailedPrecondition,
                    "the database's schema version " + std::to_string(from) +
                        " is newer than this build's (" + std::to_string(kSchemaVersion) +
                        "): refusing to open it (" + path_ + "); run the newer tapwire");
    }
    if (from == kSchemaVersion) return Done{};  // the guard ends the read-only transaction
    for (int v = from; v < kSchemaVersion; ++v) {
        if (auto s =
                exec(kMigrations[v], "migrating the schema to version " + std::to_string(v + 1));
            !s) {
            return s;
        }
    }
    const std::string set =
        from == 0
            ? "INSERT INTO schema_version (version) VALUES (" + std::to_string(kSchemaVersion) + ")"
            : "UPDATE schema_version SET version = " + std::to_string(kSchemaVersion);
    if (auto s = exec(set.c_str(), "recording the schema version"); !s) return s;
    return exec("COMMIT", "migrating the schema");
}

std::unique_ptr<Store> Store::open(const std::string& path, std::string& error,
                                   const StoreOptions& options) {
    if (path.empty()) {
        error = "state database: empty path";
        return nullptr;
    }
    // Create the file ourselves, mode 0600: the warrants hold target identities, readable by
    // the appliance's user only. SQLite gives its -wal and -shm files the database's mode.
    bool created = false;
    if (const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600); fd >= 0) {
        created = true;
        ::close(fd);
    } else if (errno != EEXIST) {
        error = "state database " + path +
                ": cannot create it: " + std::error_code(errno, std::generic_category()).message();
        return nullptr;
    }

    // NOMUTEX: the Store's own mutex serialises every use of the connection.
    sqlite3* db = nullptr;
    const int rc =
        sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr);
    if (rc != SQLITE_OK) {
        error = "state database " + path +
                ": cannot open it: " + (db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        sqlite3_close(db);
        return nullptr;
    }
    std::unique_ptr<Store> store(new Store(db, path, options));  // owns db from here
    sqlite3_extended_result_codes(db, 1);
    sqlite3_busy_timeout(db, options.busy_timeout_ms);

    auto failed = [&](const StoreFailure& f) {
        error = "state database: " + f.message;
        return nullptr;
    };
    auto expect = [&](const char* pragma, const char* want,
                      const std::string& why) -> std::optional<StoreFailure> {
        auto got = store->query_text(pragma, pragma);
        if (!got) return got.failure();
        if (*got != want) {
            return fail(StoreError::Internal,
                        std::string(pragma) + " gave '" + *got + "' (" + path + "): " + why);
        }
        return std::nullopt;
    };

    // Also the first read of the file: a file that is not a database fails here.
    auto app = store->query_text("PRAGMA application_id", "reading the file header");
    if (!app) return failed(app.failure());
    if (*app != "0" && *app != std::to_string(kApplicationId)) {
        return failed(fail(StoreError::Corrupt, "not a tapwire state database (application_id " +
                                                    *app + ") (" + path + ")"));
    }
    if (auto f = expect("PRAGMA journal_mode = WAL", "wal",
                        "WAL is unavailable here; is the file on a network file system?")) {
        return failed(*f);
    }
    if (auto s = store->exec("PRAGMA synchronous = FULL", "setting synchronous"); !s) {
        return failed(s.failure());
    }
    if (auto f = expect("PRAGMA synchronous", "2", "cannot make commits synchronous")) {
        return failed(*f);
    }
    if (auto s = store->exec("PRAGMA foreign_keys = ON", "enabling foreign keys"); !s) {
        return failed(s.failure());
    }
    if (auto f = expect("PRAGMA foreign_keys", "1", "this SQLite has no foreign key support")) {
        return failed(*f);
    }
    if (options.max_page_count != 0) {
        const std::string cap = "PRAGMA max_page_count = " + std::to_string(options.max_page_count);
        if (auto s = store->query_text(cap.c_str(), "setting max_page_count"); !s) {
            return failed(s.failure());
        }
    }
    if (auto s = store->migrate(); !s) return failed(s.failure());
    if (options.quick_check) {
        auto check = store->query_text("PRAGMA quick_check", "checking the database");
        if (!check) return failed(check.failure());
        if (*check != "ok") {
            return failed(fail(StoreError::Corrupt, "quick_check found damage (" + path + "): " +
                                                        *check + "; restore it from a backup"));
        }
    }
    if (created) {
        // The new file's directory entry must be durable too, or a power loss could lose the
        // whole database along with the warrants acknowledged into it.
        const auto slash = path.find_last_of('/');
        const std::string dir = slash == std::string::npos ? "."
                                : slash == 0               ? "/"
                                                           : path.substr(0, slash);
        if (const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); fd >= 0) {
            const int synced = ::fsync(fd);
            const int e = errno;
            ::close(fd);
            if (synced != 0 && e != EINVAL) {  // EINVAL: the file system cannot sync dirs
                error = "state database " + path + ": cannot fsync its directory: " +
                        std::error_code(e, std::generic_category()).message();
                return nullptr;
            }
        }
    }
    return store;
}

// ---- Warrants -------------------------------------------------------------------------------

StoreResult<StoredWarrant> Store::read_warrant(Stmt& row) {
    StoredWarrant w;
    const std::string_view xid = row.text(kColXid);
    const std::string_view blob = row.blob(kColWarrant);
    if (!w.status.mutable_warrant()->ParseFromArray(blob.data(), static_cast<int>(blob.size()))) {
        return fail(StoreError::Corrupt, "warrant " + std::string(xid) +
                                             ": the stored warrant does not parse (" + path_ +
                                             "); restore the database from a backup");
    }
    const std::int64_t state = row.integer(kColState);
    if (!is_valid_state(static_cast<int>(state))) {
        return fail(StoreError::Corrupt, "warrant " + std::string(xid) + ": stored state " +
                                             std::to_string(state) + " is unknown (" + path_ + ")");
    }
    w.status.set_state(static_cast<v1::WarrantState>(state));
    w.status.set_version(static_cast<std::uint64_t>(row.integer(kColVersion)));
    if (auto t = row.optional_integer(kColActivatedAt)) {
        *w.status.mutable_activated_at() = to_timestamp(*t);
    }
    if (auto t = row.optional_integer(kColEndedAt)) {
        *w.status.mutable_ended_at() = to_timestamp(*t);
    }
    if (auto t = row.optional_integer(kColDeadline)) {
        *w.status.mutable_emergency_deadline() = to_timestamp(*t);
    }
    if (auto t = row.optional_integer(kColAcceptedAt)) {
        *w.status.mutable_accepted_at() = to_timestamp(*t);
    }
    w.status.set_emergency_confirmation_reference(std::string(row.text(kColConfirmation)));
    if (auto t = row.optional_integer(kColConfirmedAt)) {
        *w.status.mutable_emergency_confirmed_at() = to_timestamp(*t);
    }
    w.internal_id = static_cast<std::uint32_t>(row.integer(kColInternalId));
    w.updated_at_ns = row.integer(kColUpdatedAt);
    return w;
}

StoreResult<std::optional<StoredWarrant>> Store::find_warrant(std::string_view xid) {
    Stmt st(*this, Sql::WarrantByXid);
    if (!st) return st.failure();
    st.text(1, xid);
    const int rc = st.step();
    if (rc == SQLITE_DONE) return std::optional<StoredWarrant>{};
    if (rc != SQLITE_ROW) return st.error(rc, "reading warrant " + std::string(xid));
    auto w = read_warrant(st);
    if (!w) return w.failure();
    return std::optional<StoredWarrant>(std::move(*w));
}

StoreResult<std::uint32_t> Store::allocate_internal_id() {
    std::int64_t next = 1;
    {
        Stmt st(*this, Sql::MetaGet);
        if (!st) return st.failure();
        st.text(1, "next_internal_id");
        const int rc = st.step();
        if (rc == SQLITE_ROW) {
            next = std::max<std::int64_t>(next, st.integer(0));
        } else if (rc != SQLITE_DONE) {
            return st.error(rc, "allocating a warrant id");
        }
    }
    {
        // Belt and braces: never below an id in use, even if the meta row were lost.
        Stmt st(*this, Sql::MaxInternalId);
        if (!st) return st.failure();
        const int rc = st.step();
        if (rc != SQLITE_ROW) return st.error(rc, "allocating a warrant id");
        if (!st.is_null(0)) next = std::max<std::int64_t>(next, st.integer(0) + 1);
    }
    if (static_cast<std::uint64_t>(next) > kMaxInternalId) {
        return fail(StoreError::Exhausted, "all 2^32-1 warrant ids have been used (" + path_ + ")");
    }
    Stmt st(*this, Sql::MetaSet);
    if (!st) return st.failure();
    st.text(1, "next_internal_id");
    st.integer(2, next + 1);
    if (auto s = st.run("allocating a warrant id"); !s) return s.failure();
    return static_cast<std::uint32_t>(next);
}

StoreResult<PutOutcome> Store::put_warrant(const v1::WarrantStatus& status, std::int64_t now_ns,
                                           std::optional<std::uint64_t> expected_version) {
    const v1::Warrant& warrant = status.warrant();
    const std::string& xid = warrant.xid();
    if (xid.empty()) return fail(StoreError::InvalidArgument, "warrant.xid: empty");
    if (!is_valid_state(status.state())) {
        return fail(StoreError::InvalidArgument, "warrant " + xid +
                                                     ": state: " + state_name(status.state()) +
                                                     " is not a state a warrant can be stored in");
    }
    if (status.version() < 1 || status.version() > kMaxCounter) {
        return fail(StoreError::InvalidArgument,
                    "warrant " + xid + ": version: " + std::to_string(status.version()) +
                        " is out of range (1 to 2^63-1)");
    }
    std::optional<std::int64_t> valid_from, valid_until, deadline, activated_at, ended_at,
        accepted_at, confirmed_at;
    const struct {
        bool present;
        const google::protobuf::Timestamp& t;
        std::optional<std::int64_t>& out;
        const char* field;
    } times[] = {
        {warrant.has_valid_from(), warrant.valid_from(), valid_from, "warrant.valid_from"},
        {warrant.has_valid_until(), warrant.valid_until(), valid_until, "warrant.valid_until"},
        {status.has_emergency_deadline(), status.emergency_deadline(), deadline,
         "emergency_deadline"},
        {status.has_activated_at(), status.activated_at(), activated_at, "activated_at"},
        {status.has_ended_at(), status.ended_at(), ended_at, "ended_at"},
        {status.has_accepted_at(), status.accepted_at(), accepted_at, "accepted_at"},
        {status.has_emergency_confirmed_at(), status.emergency_confirmed_at(), confirmed_at,
         "emergency_confirmed_at"},
    };
    for (const auto& t : times) {
        if (!optional_ns(t.present, t.t, t.out)) {
            return fail(StoreError::InvalidArgument,
                        "warrant " + xid + ": " + t.field + ": out of range (years 1678 to 2261)");
        }
    }
    std::string blob;
    if (!warrant.SerializeToString(&blob)) {
        return fail(StoreError::Internal, "warrant " + xid + ": cannot serialize it");
    }

    const std::string what = "storing warrant " + xid;
    std::lock_guard lock(mutex_);
    RollbackGuard guard{db_};
    if (auto s = begin(what); !s) return s.failure();
    auto found = find_warrant(xid);
    if (!found) return found.failure();
    std::optional<StoredWarrant>& existing = *found;

    PutOutcome out;
    if (existing) {
        // A repeat is recognised by the identical signed warrant. Serialisation of equal
        // messages is byte-identical (no map fields in Warrant).
        const bool same = existing->status.warrant().SerializeAsString() == blob;
        if (expected_version && *expected_version == 0) {
            if (!same) {
                return fail(StoreError::AlreadyExists,
                            "warrant " + xid + " already exists (version " +
                                std::to_string(existing->status.version()) +
                                ") with a different content; change it with Modify");
            }
            out.stored = std::move(*existing);
            out.repeated = true;
            return out;
        }
        if (expected_version && existing->status.version() != *expected_version) {
            if (same && existing->status.version() == status.version()) {
                out.stored = std::move(*existing);
                out.repeated = true;
                return out;
            }
            return fail(StoreError::FailedPrecondition,
                        "warrant " + xid + " is at version " +
                            std::to_string(existing->status.version()) + ", not the expected " +
                            std::to_string(*expected_version) +
                            ": it was modified meanwhile; read it again");
        }
        out.stored.internal_id = existing->internal_id;
    } else {
        if (expected_version && *expected_version != 0) {
            return fail(StoreError::NotFound, "warrant " + xid + " does not exist");
        }
        auto id = allocate_internal_id();
        if (!id) return id.failure();
        out.stored.internal_id = *id;
        out.inserted = true;
    }

    {
        Stmt st(*this, existing ? Sql::WarrantReplace : Sql::WarrantInsert);
        if (!st) return st.failure();
        st.text(1, xid);
        st.text(2, warrant.liid());
        st.integer(3, std::int64_t{status.state()});
        st.integer(4, static_cast<std::int64_t>(status.version()));
        st.integer(5, valid_from);
        st.integer(6, valid_until);
        st.integer(7, deadline);
        st.integer(8, activated_at);
        st.integer(9, ended_at);
        st.integer(10, std::int64_t{out.stored.internal_id});
        st.blob(11, blob);
        st.integer(12, now_ns);
        st.integer(13, accepted_at);
        st.text(14, status.emergency_confirmation_reference());
        st.integer(15, confirmed_at);
        if (auto s = st.run(what); !s) return s.failure();
    }
    {
        Stmt st(*this, Sql::LinksDelete);
        if (!st) return st.failure();
        st.text(1, xid);
        if (auto s = st.run(what); !s) return s.failure();
    }
    for (int i = 0; i < warrant.destination_ids_size(); ++i) {
        const std::string& id = warrant.destination_ids(i);
        auto dest = find_destination(id);
        if (!dest) return dest.failure();
        if (!*dest) {
            return fail(StoreError::FailedPrecondition,
                        "warrant " + xid + ": destination_ids[" + std::to_string(i) +
                            "]: destination '" + id + "' does not exist; create it first");
        }
        Stmt st(*this, Sql::LinkInsert);
        if (!st) return st.failure();
        st.text(1, xid);
        st.text(2, id);
        if (auto s = st.run(what); !s) return s.failure();
    }
    if (auto s = commit(what); !s) return s.failure();
    out.stored.status = status;
    out.stored.updated_at_ns = now_ns;
    return out;
}

StoreResult<std::optional<StoredWarrant>> Store::find_by_xid(std::string_view xid) {
    std::lock_guard lock(mutex_);
    return find_warrant(xid);
}

StoreResult<StoredWarrant> Store::get_warrant(std::string_view xid) {
    std::lock_guard lock(mutex_);
    auto found = find_warrant(xid);
    if (!found) return found.failure();
    if (!*found)
        return fail(StoreError::NotFound, "warrant " + std::string(xid) + " does not exist");
    return std::move(**found);
}

StoreResult<StoredWarrant> Store::update_state(std::string_view xid, const StateChange& change,
                                               std::int64_t now_ns) {
    const std::string x(xid);
    if (!is_valid_state(change.state)) {
        return fail(StoreError::InvalidArgument, "warrant " + x +
                                                     ": state: " + state_name(change.state) +
                                                     " is not a state a warrant can be in");
    }
    const std::string what = "changing the state of warrant " + x;
    std::lock_guard lock(mutex_);
    RollbackGuard guard{db_};
    if (auto s = begin(what); !s) return s.failure();
    auto found = find_warrant(xid);
    if (!found) return found.failure();
    if (!*found) return fail(StoreError::NotFound, "warrant " + x + " does not exist");
    StoredWarrant w = std::move(**found);
    const v1::WarrantState current = w.status.state();
    if (change.expected_state && current != *change.expected_state) {
        return fail(StoreError::FailedPrecondition,
                    "warrant " + x + " is " + state_name(current) + ", not " +
                        state_name(*change.expected_state) + ": it changed meanwhile");
    }
    if (is_ended(current)) {
        if (change.state == current) return w;  // a repeat: the first end time stands
        return fail(
            StoreError::FailedPrecondition,
            "warrant " + x + " has ended (" + state_name(current) + "): its state is final");
    }

    if (change.activated_at_ns)
        *w.status.mutable_activated_at() = to_timestamp(*change.activated_at_ns);
    if (change.ended_at_ns) *w.status.mutable_ended_at() = to_timestamp(*change.ended_at_ns);
    if (change.clear_emergency_deadline) w.status.clear_emergency_deadline();
    if (change.confirmation) {
        w.status.set_emergency_confirmation_reference(change.confirmation->reference);
        *w.status.mutable_emergency_confirmed_at() =
            to_timestamp(change.confirmation->confirmed_at_ns);
    }
    w.status.set_state(change.state);
    w.updated_at_ns = now_ns;

    std::optional<std::int64_t> activated_at, ended_at, deadline, confirmed_at;
    if (w.status.has_activated_at()) activated_at = to_unix_ns(w.status.activated_at());
    if (w.status.has_ended_at()) ended_at = to_unix_ns(w.status.ended_at());
    if (w.status.has_emergency_deadline()) deadline = to_unix_ns(w.status.emergency_deadline());
    if (w.status.has_emergency_confirmed_at()) {
        confirmed_at = to_unix_ns(w.status.emergency_confirmed_at());
    }
    {
        Stmt st(*this, Sql::WarrantSetState);
        if (!st) return st.failure();
        st.text(1, xid);
        st.integer(2, std::int64_t{change.state});
        st.integer(3, activated_at);
        st.integer(4, ended_at);
        st.integer(5, deadline);
        st.integer(6, now_ns);
        st.text(7, w.status.emergency_confirmation_reference());
        st.integer(8, confirmed_at);
        if (auto s = st.run(what); !s) return s.failure();
    }
    if (auto s = commit(what); !s) return s.failure();
    return w;
}

StoreResult<std::vector<StoredWarrant>> Store::list_warrants(
    const std::vector<v1::WarrantState>& states) {
    std::int64_t mask = states.empty() ? ~std::int64_t{0} : 0;
    for (std::size_t i = 0; i < states.size(); ++i) {
        if (!v1::WarrantState_IsValid(states[i])) {
            return fail(StoreError::InvalidArgument, "states[" + std::to_string(i) +
                                                         "]: " + std::to_string(states[i]) +
                                                         " is not a warrant state");
        }
        mask |= std::int64_t{1} << states[i];
    }
    std::lock_guard lock(mutex_);
    Stmt st(*this, Sql::WarrantList);
    if (!st) return st.failure();
    st.integer(1, mask);
    std::vector<StoredWarrant> out;
    for (;;) {
        const int rc = st.step();
        if (rc == SQLITE_DONE) break;
        if (rc != SQLITE_ROW) return st.error(rc, "listing warrants");
        auto w = read_warrant(st);
        if (!w) return w.failure();
        out.push_back(std::move(*w));
    }
    return out;
}

StoreResult<std::vector<Attention>> Store::warrants_needing_attention(std::int64_t now_ns) {
    std::vector<Attention> out;
    {
        std::lock_guard lock(mutex_);
        Stmt st(*this, Sql::WarrantsDue);
        if (!st) return st.failure();
        st.integer(1, now_ns);
        for (;;) {
            const int rc = st.step();
            if (rc == SQLITE_DONE) break;
            if (rc != SQLITE_ROW) return st.error(rc, "finding warrants due for a change");
            Attention a;
            a.xid = st.text(0);
            a.internal_id = static_cast<std::uint32_t>(st.integer(1));
            a.from = static_cast<v1::WarrantState>(st.integer(2));
            const auto from = st.optional_integer(3);
            const auto until = st.optional_integer(4);
            const auto deadline = st.optional_integer(5);
            // The state the warrant must be in at now_ns. An end that has passed wins over a
            // start (never activate a warrant whose window is over); of two ends, the earlier
            // one is what ended it (the window, on a tie).
            const bool until_due = until && *until <= now_ns;
            const bool deadline_due = deadline && *deadline <= now_ns;
            if (until_due && (!deadline_due || *until <= *deadline)) {
                a.to = v1::WARRANT_STATE_LAPSED;
                a.due_ns = *until;
            } else if (deadline_due) {
                a.to = v1::WARRANT_STATE_EMERGENCY_LAPSED;
                a.due_ns = *deadline;
            } else {
                // Only the start arm remains: PENDING with valid_from <= now_ns.
                a.to = v1::WARRANT_STATE_ACTIVE;
                a.due_ns = from.value_or(now_ns);
            }
            out.push_back(std::move(a));
        }
    }
    std::sort(out.begin(), out.end(), [](const Attention& a, const Attention& b) {
        return a.due_ns != b.due_ns ? a.due_ns < b.due_ns : a.internal_id < b.internal_id;
    });
    return out;
}

StoreResult<std::optional<std::int64_t>> Store::next_attention_ns() {
    std::lock_guard lock(mutex_);
    Stmt st(*this, Sql::NextDue);
    if (!st) return st.failure();
    const int rc = st.step();
    if (rc != SQLITE_ROW) return st.error(rc, "finding the next warrant change");
    return st.optional_integer(0);
}

// ---- Destinations ---------------------------------------------------------------------------

StoreResult<std::optional<v1::Destination>> Store::find_destination(std::string_view id) {
    Stmt st(*this, Sql::DestinationById);
    if (!st) return st.failure();
    st.text(1, id);
    const int rc = st.step();
    if (rc == SQLITE_DONE) return std::optional<v1::Destination>{};
    if (rc != SQLITE_ROW) return st.error(rc, "reading destination " + std::string(id));
    v1::Destination d;
    const std::string_view blob = st.blob(0);
    if (!d.ParseFromArray(blob.data(), static_cast<int>(blob.size()))) {
        return fail(StoreError::Corrupt, "destination " + std::string(id) +
                                             ": the stored destination does not parse (" + path_ +
                                             "); restore the database from a backup");
    }
    return std::optional<v1::Destination>(std::move(d));
}

StoreResult<v1::Destination> Store::create_destination(const v1::Destination& destination,
                                                       std::int64_t now_ns) {
    const std::string& id = destination.id();
    if (id.empty()) return fail(StoreError::InvalidArgument, "destination.id: empty");
    std::string blob;
    if (!destination.SerializeToString(&blob)) {
        return fail(StoreError::Internal, "destination " + id + ": cannot serialize it");
    }
    const std::string what = "creating destination " + id;
    std::lock_guard lock(mutex_);
    RollbackGuard guard{db_};
    if (auto s = begin(what); !s) return s.failure();
    auto found = find_destination(id);
    if (!found) return found.failure();
    if (*found) {
        if (found->value().SerializeAsString() == blob) return std::move(**found);  // a repeat
        return fail(StoreError::AlreadyExists,
                    "destination " + id +
                        " already exists with other settings; change it with "
                        "Modify");
    }
    {
        Stmt st(*this, Sql::DestinationInsert);
        if (!st) return st.failure();
        st.text(1, id);
        st.blob(2, blob);
        st.integer(3, now_ns);
        if (auto s = st.run(what); !s) return s.failure();
    }
    if (auto s = commit(what); !s) return s.failure();
    return destination;
}

StoreResult<v1::Destination> Store::modify_destination(const v1::Destination& destination,
                                                       std::int64_t now_ns) {
    const std::string& id = destination.id();
    if (id.empty()) return fail(StoreError::InvalidArgument, "destination.id: empty");
    std::string blob;
    if (!destination.SerializeToString(&blob)) {
        return fail(StoreError::Internal, "destination " + id + ": cannot serialize it");
    }
    const std::string what = "modifying destination " + id;
    std::lock_guard lock(mutex_);
    RollbackGuard guard{db_};
    if (auto s = begin(what); !s) return s.failure();
    {
        Stmt st(*this, Sql::DestinationUpdate);
        if (!st) return st.failure();
        st.text(1, id);
        st.blob(2, blob);
        st.integer(3, now_ns);
        if (auto s = st.run(what); !s) return s.failure();
    }
    if (sqlite3_changes(db_) == 0) {
        return fail(StoreError::NotFound, "destination " + id + " does not exist");
    }
    if (auto s = commit(what); !s) return s.failure();
    return destination;
}

StoreResult<v1::Destination> Store::remove_destination(std::string_view id) {
    const std::string d(id);
    const std::string what = "removing destination " + d;
    std::lock_guard lock(mutex_);
    RollbackGuard guard{db_};
    if (auto s = begin(what); !s) return s.failure();
    auto found = find_destination(id);
    if (!found) return found.failure();
    if (!*found) return fail(StoreError::NotFound, "destination " + d + " does not exist");
    {
        // Pending warrants count: they will deliver to it when their window opens.
        Stmt st(*this, Sql::DestinationUsers);
        if (!st) return st.failure();
        st.text(1, id);
        std::string users;
        int n = 0;
        for (;; ++n) {
            const int rc = st.step();
            if (rc == SQLITE_DONE) break;
            if (rc != SQLITE_ROW) return st.error(rc, what);
            if (n == 3) {  // the query stops at 4: name three and say there are more
                users += ", ...";
                continue;
            }
            users += (n == 0 ? "" : ", ") + std::string(st.text(0));
        }
        if (n > 0) {
            return fail(StoreError::FailedPrecondition,
                        "destination " + d + " is in use by pending or active warrant(s) " + users +
                            "; deactivate them or move them to another destination first");
        }
    }
    for (Sql sql : {Sql::DestinationUnlink, Sql::DestinationDelete}) {
        Stmt st(*this, sql);
        if (!st) return st.failure();
        st.text(1, id);
        if (auto s = st.run(what); !s) return s.failure();
    }
    if (auto s = commit(what); !s) return s.failure();
    return std::move(**found);
}

StoreResult<v1::Destination> Store::get_destination(std::string_view id) {
    std::lock_guard lock(mutex_);
    auto found = find_destination(id);
    if (!found) return found.failure();
    if (!*found) {
        return fail(StoreError::NotFound, "destination " + std::string(id) + " does not exist");
    }
    return std::move(**found);
}

StoreResult<std::vector<v1::Destination>> Store::list_destinations() {
    std::lock_guard lock(mutex_);
    Stmt st(*this, Sql::DestinationList);
    if (!st) return st.failure();
    std::vector<v1::Destination> out;
    for (;;) {
        const int rc = st.step();
        if (rc == SQLITE_DONE) break;
        if (rc != SQLITE_ROW) return st.error(rc, "listing destinations");
        const std::string_view blob = st.blob(0);
        if (!out.emplace_back().ParseFromArray(blob.data(), static_cast<int>(blob.size()))) {
            return fail(StoreError::Corrupt, "a stored destination does not parse (" + path_ +
                                                 "); restore the database from a backup");
        }
    }
    return out;
}

// ---- Counters -------------------------------------------------------------------------------

StoreResult<std::optional<std::uint64_t>> Store::counter_get(std::string_view counter) {
    Stmt st(*this, Sql::CounterGet);
    if (!st) return st.failure();
    st.text(1, counter);
    const int rc = st.step();
    if (rc == SQLITE_DONE) return std::optional<std::uint64_t>{};
    if (rc != SQLITE_ROW) return st.error(rc, "reading counter " + std::string(counter));
    return std::optional<std::uint64_t>(static_cast<std::uint64_t>(st.integer(0)));
}

StoreStatus Store::counter_set(std::string_view counter, std::uint64_t value) {
    Stmt st(*this, Sql::CounterSet);
    if (!st) return st.failure();
    st.text(1, counter);
    st.integer(2, static_cast<std::int64_t>(value));
    return st.run("writing counter " + std::string(counter));
}

StoreResult<CounterBlock> Store::reserve_block(std::string_view counter, std::uint64_t count) {
    const std::string name(counter);
    if (name.empty()) return fail(StoreError::InvalidArgument, "counter name: empty");
    if (count == 0) return fail(StoreError::InvalidArgument, "counter " + name + ": count: 0");
    const std::string what = "reserving a block of counter " + name;
    std::lock_guard lock(mutex_);
    RollbackGuard guard{db_};
    if (auto s = begin(what); !s) return s.failure();
    auto current = counter_get(name);
    if (!current) return current.failure();
    const std::uint64_t first = current->value_or(0);
    if (count > kMaxCounter - first) {
        return fail(StoreError::Exhausted, "counter " + name + " would pass 2^63-1");
    }
    if (auto s = counter_set(name, first + count); !s) return s.failure();
    if (auto s = commit(what); !s) return s.failure();
    return CounterBlock{first, first + count};
}

StoreResult<std::uint64_t> Store::resume_counter(std::string_view counter,
                                                 std::optional<std::uint64_t> last_used) {
    const std::string name(counter);
    if (name.empty()) return fail(StoreError::InvalidArgument, "counter name: empty");
    if (last_used && *last_used >= kMaxCounter) {
        return fail(StoreError::InvalidArgument, "counter " + name + ": last_used out of range");
    }
    const std::string what = "resuming counter " + name;
    std::lock_guard lock(mutex_);
    RollbackGuard guard{db_};
    if (auto s = begin(what); !s) return s.failure();
    auto current = counter_get(name);
    if (!current) return current.failure();
    // With the spool's last value: continue right after it, below the reserved end (the
    // unused rest of the block is handed out again, contiguous for the LEMF) or even beyond
    // it (the spool is the truth about what left; never hand out a value twice).
    const std::uint64_t next = last_used ? *last_used + 1 : current->value_or(0);
    if (auto s = counter_set(name, next); !s) return s.failure();
    if (auto s = commit(what); !s) return s.failure();
    return next;
}

StoreResult<std::uint64_t> Store::counter_reserved_end(std::string_view counter) {
    std::lock_guard lock(mutex_);
    auto current = counter_get(counter);
    if (!current) return current.failure();
    return current->value_or(0);
}

StoreStatus Store::drop_counter(std::string_view counter) {
    const std::string what = "dropping counter " + std::string(counter);
    std::lock_guard lock(mutex_);
    Stmt st(*this, Sql::CounterDelete);  // one statement: autocommit is its transaction
    if (!st) return st.failure();
    st.text(1, counter);
    return st.run(what);
}

std::string Store::sequence_counter(std::string_view liid, std::uint64_t cin, RecordStream stream) {
    // "seq/<liid>/<cin>/<stream>": unambiguous even if the LIID holds '/', as the last two
    // components have a fixed form.
    std::string name = "seq/";
    name += liid;
    name += '/';
    name += std::to_string(cin);
    name += stream == RecordStream::Iri ? "/iri" : "/cc";
    return name;
}

StoreResult<std::string> Store::integrity_check() {
    std::lock_guard lock(mutex_);
    sqlite3_stmt* s = nullptr;
    int rc = sqlite3_prepare_v2(db_, "PRAGMA integrity_check", -1, &s, nullptr);
    if (rc != SQLITE_OK) return failure_from_sqlite(rc, "integrity_check");
    std::string out;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (!out.empty()) out += '\n';
        const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
        if (p != nullptr) out += p;
    }
    StoreResult<std::string> result =
        rc == SQLITE_DONE ? StoreResult<std::string>(std::move(out))
                          : StoreResult<std::string>(failure_from_sqlite(rc, "integrity_check"));
    sqlite3_finalize(s);
    return result;
}

}  // namespace tapwire::controlplane
