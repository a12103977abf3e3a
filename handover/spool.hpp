// The on-disk delivery spool behind every LEMF destination (issue 5, Delivery): every
// encoded PDU goes here first, the delivery client sends from here, and a record leaves
// the disk only once the LEMF acknowledged it. Nothing is lost while a LEMF is unreachable
// or slow, up to a configured size; beyond it records are refused and counted, never
// dropped silently.
//
// Layout: one directory per destination holding
//   <first index, 20 digits>.seg  append-only segments (segment_bytes each at most)
//   state                         the persisted cursors (two slots, see below)
// Segment: a 32-byte header ("TWSPSEG1", the index of its first record, CRC32C), then
// frames: le32 length | le32 CRC32C | payload. The CRC covers le64(index) | le32(length) |
// payload, so a frame read at the wrong position (or a zero-filled tail) never verifies.
// Indices are implied by position: contiguous from the first record ever, kept across
// restarts by the segment names and headers.
//
// Durability: append() copies the frame into a write buffer (write_buffer_bytes) that goes
// to the segment with one pwrite() when full; flush() writes the buffer out and does one
// fdatasync() covering everything appended since the previous flush. durable_index() says
// up to where. What a crash can lose is what was appended after the last flush (a process
// crash loses only what was still in the write buffer; a power loss what was not synced):
// the owner picks the window by how often it flushes (every few ms, or every N records).
// A record below durable_index() leaves the disk only once it is acknowledged. Records may
// be sent before they are durable; if the host then loses them, later records reuse their
// spool indices (internal only: the PDUs carry their own sequence numbers).
//
// Torn tails: open() walks every segment and cuts it at the first frame that is incomplete
// or fails its CRC (ftruncate + fdatasync), counting the records cut (torn_tail_records_cut,
// exact when a later segment says where the cut one should have ended, otherwise the frames
// found in the cut bytes, at least one) and the bytes; recovery() lists each cut.
//
// Cursors (persisted in `state`): records below acked() are acknowledged by the LEMF; the
// delivery client reads from next_to_send(). The state file has two fixed 4 KiB slots,
// written alternately in place with pwrite + fdatasync, each with a generation number and a
// CRC; open() takes the valid slot with the higher generation, so a torn state write leaves
// the previous one. Chosen over write-temp-fsync-rename because it costs one fdatasync
// instead of three syncs, and above all because an in-place overwrite needs no new block or
// inode: when the disk is full, acknowledgements can still be persisted and segments
// deleted, which is how the spool gets out of a full disk (a rename would fail with ENOSPC
// and deadlock). Two values are stored:
//  - acked, lazily (by flush()), never beyond durable_index(): after a restart delivery
//    resumes from it and records acknowledged after the last save are sent again.
//  - send_limit, eagerly (write-ahead): no record at or above the stored send_limit has
//    ever been handed to the delivery client, because read_batch() stores a new limit
//    (the batch end + send_reservation records) before returning records beyond the old
//    one; flush() moves it on ahead of time, so the reader seldom waits. It is the
//    persisted form of next_to_send: an upper bound, exact to within send_reservation
//    records, at about one state write per send_reservation / 2 records.
//
// Duplicates at a reconnect boundary, exactly: the records the LEMF may receive twice are
// those in [acked, high-water) where high-water is the highest next_to_send handed out in
// this process or, after a restart, the stored send_limit. On a reconnect without restart
// (rewind_to_acked()) that is exactly the records sent on the old connection and not yet
// acknowledged; after a crash it is [stored acked, stored send_limit), which includes
// records acknowledged after the last save and may include records never sent (at most
// send_reservation of them). maybe_duplicate(i) answers for one record and read_batch()
// reports how many leading records of a batch are such; the LEMF dedups by (LIID, CIN,
// sequence), which the PDUs already carry. No other duplicates are possible, and no record
// below durable_index() that is not acknowledged is skipped: order is the index order.
//
// Bounded: records are refused (append() returns Full, records_refused_full and
// bytes_refused_full count them) once segments plus buffer would exceed max_total_bytes.
// Space comes back by whole segments, deleted by flush() once every record in them is
// acknowledged and that acknowledgement is stored. A full disk is handled the same way:
// each new segment is preallocated (fallocate, KEEP_SIZE), so ENOSPC surfaces when a
// segment is created and the record is refused (DiskFull) before anything is written; on
// filesystems without fallocate, ENOSPC on pwrite cuts the partial write back (ftruncate),
// keeps the buffered records in memory (they were accepted and keep their indices) and
// refuses new ones until the buffer can be written again (destroying the spool meanwhile
// loses them: at most write_buffer_bytes, and only there).
//
// Threads: one producer thread calls append(); one delivery thread calls read_batch(),
// read(), ack() and rewind_to_acked(); flush() may be called from either or from a third
// (flusher) thread; getters and counters() from any thread. One mutex guards the in-memory
// state: append() holds it for the CRC, a memcpy and, when the buffer is full, one pwrite
// (flush() for its one pwrite of the buffer); fdatasync, state writes, unlink and reads of
// written data run outside it, so a sync or a slow disk read never stalls the producer. Flushes are
// serialised among themselves, as are state writes. Files are created 0600 in a 0700 directory:
// they hold intercepted content.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "common/bytes.hpp"
#include "common/x_list.hpp"

namespace tapwire::handover {

// ---------------------------------------------------------------------------------------
// Results and counters

#define TAPWIRE_SPOOL_STATUSES(X)                                                               \
    X(Ok, "ok")                                                                                 \
    X(Full, "full")                       /* max_total_bytes reached: record refused */         \
    X(DiskFull, "disk_full")              /* ENOSPC, EDQUOT, EFBIG: record refused */           \
    X(TooLarge, "too_large")              /* empty, or longer than max_record_bytes */          \
    X(Io, "io_error")                     /* other I/O error; see last_error() */               \
    X(Failed, "failed")                   /* fdatasync failed: reopen (file state unknown) */   \
    X(NoRecord, "no_record")              /* index not stored (acked and deleted, or future) */ \
    X(Lost, "lost")                       /* index cut at open, or skipped as corrupt */        \
    X(Corrupt, "corrupt")                 /* CRC mismatch on read: data at rest damaged */      \
    X(BufferTooSmall, "buffer_too_small") /* the caller's buffer cannot hold the record */      \
    X(Locked, "locked")                   /* another Spool holds this directory */              \
    X(BadOptions, "bad_options")          /* SpoolOptions out of range (message names it) */

enum class SpoolStatus : std::uint8_t { TAPWIRE_SPOOL_STATUSES(TAPWIRE_X_ENUMERATOR) Count };

const char* to_string(SpoolStatus s) noexcept;

#define TAPWIRE_SPOOL_COUNTERS(X)                                                        \
    X(appended, "records appended")                                                      \
    X(bytes_appended, "payload bytes appended (without framing)")                        \
    X(flushes, "flush() calls that wrote or synced something")                           \
    X(records_refused_full, "records refused: max_total_bytes reached or disk full")     \
    X(bytes_refused_full, "payload bytes of the records refused for lack of space")      \
    X(records_refused_error, "records refused: I/O error or spool failed")               \
    X(records_refused_size, "records refused: empty or over max_record_bytes")           \
    X(torn_tail_records_cut, "records cut at open: torn or corrupt tail, or missing")    \
    X(torn_tail_bytes_cut, "bytes cut at open")                                          \
    X(segments_created, "segment files created")                                         \
    X(segments_deleted, "segments deleted once all their records were acknowledged")     \
    X(redelivered, "records handed out that may already have reached the LEMF")          \
    X(records_lost_corrupt, "records skipped on read: CRC mismatch in a sealed segment") \
    X(disk_full_errors, "ENOSPC, EDQUOT or EFBIG on preallocation or write")             \
    X(io_errors, "other I/O errors")                                                     \
    X(state_saves, "cursor state writes (each one fdatasync)")

enum class SpoolCounter : std::uint8_t { TAPWIRE_SPOOL_COUNTERS(TAPWIRE_X_ENUMERATOR) Count };

inline constexpr std::size_t kSpoolCounterCount = static_cast<std::size_t>(SpoolCounter::Count);

/// Counter names as telemetry shows them ("appended", ...).
inline constexpr const char* kSpoolCounterNames[] = {TAPWIRE_SPOOL_COUNTERS(TAPWIRE_X_NAME)};
/// One-line descriptions, same order.
inline constexpr const char* kSpoolCounterTexts[] = {TAPWIRE_SPOOL_COUNTERS(TAPWIRE_X_TEXT)};
static_assert(std::size(kSpoolCounterNames) == kSpoolCounterCount);

/// A snapshot of one spool's counters (counters() copies them under the lock).
struct SpoolCounters {
    std::uint64_t value[kSpoolCounterCount] = {};
    std::uint64_t& operator[](SpoolCounter c) noexcept { return value[static_cast<int>(c)]; }
    std::uint64_t operator[](SpoolCounter c) const noexcept { return value[static_cast<int>(c)]; }
};

// ---------------------------------------------------------------------------------------
// Options and open

struct SpoolOptions {
    /// One directory per destination, created (one level, 0700) if absent.
    std::string directory;
    /// Largest segment file, header included. Space is reclaimed a whole segment at a time.
    std::uint64_t segment_bytes = 64ull << 20;
    /// Bound on segments plus write buffer; at least 2 * segment_bytes.
    std::uint64_t max_total_bytes = 4ull << 30;
    /// Largest record (an encoded PDU).
    std::uint32_t max_record_bytes = 64u << 10;
    /// append() gathers frames here and writes them with one pwrite when it is full.
    std::uint32_t write_buffer_bytes = 256u << 10;
    /// read_batch() reads ahead this much per read.
    std::uint32_t read_buffer_bytes = 1u << 20;
    /// How far ahead of what was handed out the stored send_limit runs (records): one
    /// state fdatasync per this many records read, and at most this many records wrongly
    /// marked as possible duplicates after a crash.
    std::uint64_t send_reservation = 65536;
    /// fallocate() each new segment so that a full disk is detected before writing.
    bool preallocate = true;
};

/// What open() found and repaired. Every repair is counted and described, never silent.
struct SpoolRecovery {
    std::uint64_t segments = 0;          // segment files kept
    std::uint64_t records = 0;           // records found in them
    std::uint64_t segments_deleted = 0;  // found fully acknowledged, deleted
    std::uint64_t torn_records_cut = 0;  // see torn_tail_records_cut
    std::uint64_t torn_bytes_cut = 0;
    std::uint64_t records_missing = 0;  // unacknowledged records whose files are gone
    std::uint64_t acked = 0;            // cursors as restored
    std::uint64_t send_limit = 0;
    bool fresh = false;              // no state and no segments: a new spool
    bool state_recovered = false;    // newer state slot damaged, older one used
    bool state_lost = false;         // segments but no valid state: every stored
                                     // record is treated as possibly sent
    std::vector<std::string> notes;  // one line per repair, for the log
};

class Spool;

struct SpoolOpenResult {
    std::unique_ptr<Spool> spool;  // null on failure
    SpoolStatus status = SpoolStatus::Ok;
    std::string message;  // on failure: the option or file concerned and the errno text
};

/// append()'s outcome.
struct SpoolAppend {
    SpoolStatus status = SpoolStatus::Ok;
    std::uint64_t index = 0;     // the record's index when Ok
    bool first_refusal = false;  // first refusal since the last accepted record: the owner
                                 // raises its "spool full" alarm event once per episode
};

/// read()'s outcome.
struct SpoolRead {
    SpoolStatus status = SpoolStatus::Ok;
    std::size_t size = 0;  // record size (also when BufferTooSmall)
};

/// A run of consecutive records [first, first + count) copied back to back into the
/// caller's buffer (PDUs are self-delimiting on the stream: the bytes go to the socket as
/// they are); sizes[i] is record first + i's size.
struct SpoolBatch {
    SpoolStatus status = SpoolStatus::Ok;
    std::uint64_t first = 0;
    std::size_t count = 0;
    std::size_t bytes = 0;
    /// The leading records of the batch that may already have reached the LEMF (a prefix:
    /// possible duplicates are always the lowest indices).
    std::size_t maybe_duplicates = 0;
    /// Records skipped before `first`: cut at open (already counted there) or, with status
    /// Corrupt, unreadable now (records_lost_corrupt). The owner raises an alarm for these.
    std::uint64_t skipped = 0;
    /// BufferTooSmall: the size of the record at `first`.
    std::size_t needed = 0;
};

// ---------------------------------------------------------------------------------------
// The spool

class Spool {
  public:
    /// Layout constants (exposed for tests and tools).
    static constexpr std::size_t kSegmentHeaderBytes = 32;
    static constexpr std::size_t kFrameHeaderBytes = 8;
    static constexpr std::size_t kStateSlotBytes = 4096;

    /// Opens or creates the spool in options.directory, takes an exclusive lock (flock on
    /// `state`), cuts torn tails, deletes segments already fully acknowledged, fdatasyncs
    /// what it keeps (so durable_index() == end_index() after open) and restores the cursors.
    /// Reads every stored byte once (CRC check): ~0.3 s per GB from the page cache on the
    /// development VM, the disk's read rate when cold.
    static SpoolOpenResult open(const SpoolOptions& options);

    /// Flushes (best effort) and closes.
    ~Spool();
    Spool(const Spool&) = delete;
    Spool& operator=(const Spool&) = delete;

    // -- producer --------------------------------------------------------------------------

    /// Appends one record (an encoded PDU) and returns its index. Never blocks on the disk
    /// except for one pwrite when the write buffer is full (and a file creation every
    /// segment_bytes). Refuses when full (Full, DiskFull), counting the record.
    SpoolAppend append(ByteSpan record) noexcept;

    /// Writes the buffer out and fdatasyncs everything appended before the call, then
    /// stores the acked cursor if it moved (and moves the stored send_limit ahead of the
    /// reader when it is within send_reservation / 2), and deletes segments that are fully
    /// acknowledged. Meant to run every few ms on a flusher thread: an fdatasync costs
    /// milliseconds, and appends go on meanwhile. Ok, or the first error (DiskFull when the buffer
    /// could not be written: what was written is synced anyway; Failed when fdatasync failed).
    SpoolStatus flush() noexcept;

    // -- delivery --------------------------------------------------------------------------

    /// Copies whole records from next_to_send() into `out` (at most sizes.size() records),
    /// advances next_to_send() past them and reports which may be duplicates. When the batch
    /// goes beyond the stored send_limit it stores a new one first (one fdatasync, waited
    /// for here; flush() normally keeps the limit ahead). Ok with count 0 when there is
    /// nothing to send.
    SpoolBatch read_batch(std::span<std::uint8_t> out, std::span<std::uint32_t> sizes) noexcept;

    /// Copies the record `index` into `out` (any stored index; does not move the cursors).
    SpoolRead read(std::uint64_t index, std::span<std::uint8_t> out) noexcept;

    /// The LEMF has every record below `up_to`. False (and no change) when up_to is below
    /// acked() or beyond next_to_send(). Memory only: flush() stores it.
    bool ack(std::uint64_t up_to) noexcept;

    /// After a reconnect: next_to_send() goes back to acked(). Returns how many records
    /// will be sent again (they count in `redelivered` as they are read).
    std::uint64_t rewind_to_acked() noexcept;

    /// Whether the LEMF may already have record `index` (sent before a reconnect or a
    /// restart): index < high-water (see the header comment).
    bool maybe_duplicate(std::uint64_t index) const noexcept;

    // -- any thread ------------------------------------------------------------------------

    std::uint64_t first_index() const noexcept;    // oldest record still stored
    std::uint64_t end_index() const noexcept;      // the index the next append gets
    std::uint64_t durable_index() const noexcept;  // records below it are fdatasync'd
    std::uint64_t next_to_send() const noexcept;
    std::uint64_t acked() const noexcept;
    std::uint64_t stored_acked() const noexcept;  // acked as last written to `state`
    std::uint64_t send_limit() const noexcept;    // as last written to `state`
    std::uint64_t high_water() const noexcept;    // see maybe_duplicate()
    std::uint64_t bytes_used() const noexcept;    // segments plus buffer, vs max_total_bytes
    std::size_t segment_count() const noexcept;
    SpoolCounters counters() const noexcept;
    /// Ok, or Failed after an fdatasync failure (appends are then refused).
    SpoolStatus health() const noexcept;
    std::string last_error() const;
    const SpoolRecovery& recovery() const noexcept { return recovery_; }
    const SpoolOptions& options() const noexcept { return options_; }

  private:
    struct Segment;
    using SegmentPtr = std::shared_ptr<Segment>;

    explicit Spool(const SpoolOptions& options);
    SpoolStatus open_locked(std::string& message);
    SpoolStatus scan_segment(Segment& seg, bool last, std::uint64_t max_records,
                             std::uint64_t& cut_frames, std::uint64_t& cut_bytes,
                             std::string& message);
    SpoolStatus rotate_locked() noexcept;
    SpoolStatus write_out_locked() noexcept;
    SpoolStatus save_state(std::uint64_t want_send_limit) noexcept;
    void reclaim() noexcept;
    SegmentPtr find_segment_locked(std::uint64_t index) const noexcept;
    // Copies bytes [offset, offset + len) of `seg` (file, then the write buffer) into dst;
    // returns how many were available, or -1 on a read error.
    long long read_segment_bytes(const SegmentPtr& seg, std::uint64_t offset, std::uint8_t* dst,
                                 std::size_t len) noexcept;
    // Byte offset of record `index` in `seg`, walking frame headers from the sparse index.
    SpoolStatus locate(const SegmentPtr& seg, std::uint64_t index, std::uint64_t& offset) noexcept;
    // Puts the cursor on the record cur_index_ (its segment and offset). Across a gap of
    // missing records it jumps when allow_skip (adding to `skipped`), else returns Lost.
    SpoolStatus position_cursor(bool allow_skip, std::uint64_t& skipped) noexcept;
    bool ensure_read_buffer(std::uint64_t offset, std::size_t len, bool& io_error) noexcept;
    void set_error_locked(SpoolCounter counter, const char* what, int err) noexcept;
    // set_error_locked() for a failed write or allocation of space: DiskFull when `err` says
    // the disk is full (ENOSPC, EDQUOT, EFBIG, counted as disk_full_errors), else Io.
    SpoolStatus io_error_locked(const char* what, int err) noexcept;

    SpoolOptions options_;
    SpoolRecovery recovery_;
    int dir_fd_ = -1;
    int state_fd_ = -1;

    mutable std::mutex mutex_;  // everything from here to the delivery-thread members
    std::deque<SegmentPtr> segments_;
    std::unique_ptr<std::uint8_t[]> pending_;  // frames not yet written, of segments_.back()
    std::size_t pending_len_ = 0;
    std::uint64_t end_index_ = 0;
    std::uint64_t written_index_ = 0;  // records below it are in a file (page cache)
    std::uint64_t durable_index_ = 0;
    std::uint64_t acked_ = 0;
    std::uint64_t saved_acked_ = 0;
    std::uint64_t send_limit_ = 0;
    std::uint64_t high_water_ = 0;
    std::uint64_t next_to_send_ = 0;
    std::uint64_t total_bytes_ = 0;
    std::vector<SegmentPtr> unsynced_;  // sealed since the last flush, not yet synced
    bool dir_dirty_ = false;            // a segment was created: fsync the directory
    bool preallocate_ = true;           // false once fallocate proved unsupported
    bool refusing_ = false;             // the last append was refused
    bool force_rotate_ = false;         // open() moved end_index_ past the last segment
    bool opened_ = false;
    SpoolCounters counters_;
    SpoolStatus failed_ = SpoolStatus::Ok;
    std::string last_error_;

    std::mutex flush_mutex_;  // one flush at a time
    std::vector<SegmentPtr> sync_scratch_;
    std::mutex state_mutex_;  // one state write at a time
    std::uint64_t state_generation_ = 0;

    // Delivery thread only.
    SegmentPtr cur_seg_;
    std::uint64_t cur_index_ = 0;
    std::uint64_t cur_offset_ = 0;
    std::uint64_t cur_seg_end_ = 0;  // cur_seg_'s end index when last looked up
    std::unique_ptr<std::uint8_t[]> rb_;
    SegmentPtr rb_seg_;  // holds it: a raw pointer could match a later segment's address
    std::uint64_t rb_offset_ = 0;
    std::size_t rb_len_ = 0;
};

/// CRC32C (Castagnoli polynomial, as in iSCSI, SCTP and ext4): `crc` is a previous result
/// to extend (0 to start), so crc32c(b, crc32c(a)) == crc32c(a + b). crc32c("123456789")
/// == 0xE3069283. Uses the SSE4.2 instruction when the CPU has it, else slicing-by-8.
std::uint32_t crc32c(ByteSpan data, std::uint32_t crc = 0) noexcept;

namespace detail {
/// The table-driven implementation alone (tests compare both).
std::uint32_t crc32c_portable(ByteSpan data, std::uint32_t crc = 0) noexcept;
}  // namespace detail

}  // namespace tapwire::handover
