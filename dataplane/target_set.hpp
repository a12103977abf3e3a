// The target set: the immutable snapshot the dataplane workers match SIP identities and IP
// addresses against. One snapshot is built off the hot path (control plane or the standalone
// target file), published by pointer swap with RCU, and read by every worker at once.
//
// Design (why it looks like this):
// - Identity targets are Hyperscan patterns over ONE buffer per SIP message: the message's
//   normalised identities joined as "\nid0\nid1\n...\n". Exact targets are the literal
//   "\n<id>\n", prefixes "\n<prefix>", globs a literal or regex between the '\n's. The
//   delimiters make every match whole-identity (or start-anchored) with no anchors and no
//   post-filtering, and one hs_scan per database replaces one per identity (bench_match
//   measures both).
// - Identities enter the buffer in "scan form": "sip:user@host" is written "host@sip:user".
//   Hyperscan's literal matcher buckets literals by their last bytes, and a carrier's SIP
//   targets share their domain: in plain form each SIP identity of each packet had to
//   confirm every same-domain target (measured ~5 us per message at 5k targets, against
//   ~0.3 us in scan form; 100k compile 22 s against 6 s). In scan form the common SIP
//   globs ("sip:*@host", "sip:bob*@host", "sip:bob@*.host") are plain prefix or suffix
//   literals, so the regex database, a second scan, is only there for unusual globs.
// - Literals compile with hs_compile_lit_multi, ~20x faster than hs_compile_multi on the
//   same anchored patterns (measured here, 100k identities: ~4.5 s against ~96 s).
// - Two layers: a large "base" and a small "delta" database, both scanned and the results
//   merged. A full compile of 100k identities takes seconds, but a new warrant only needs
//   the delta compiled (well under a millisecond for a few targets) and the snapshot
//   re-assembled around the shared, already compiled base (TargetSet::assemble). When to
//   fold the delta into a new base is TargetUpdater's policy (dataplane/target_updates.hpp).
//   Deactivation is as fast: a snapshot carries a list of suspended warrant ids whose base
//   targets matching ignores, so a lapsing warrant stops being intercepted without waiting
//   for a recompile, and a modified one keeps only its new targets (in the delta).
// - IP targets are LPM tables (rte_lpm, rte_lpm6) whose next hop indexes a table of warrant
//   lists. LPM returns only the longest match, so at build time each prefix's list also
//   takes the warrants of every prefix covering it. Snapshots with the same IP targets
//   share the tables (an rte_lpm zeroes 64 MiB when created).
// - Per-worker Hyperscan scratch is allocated at assembly (one hs_alloc_scratch, then
//   hs_clone_scratch per worker): matching never allocates.
// - Target text never appears in error messages (targets must not reach ordinary logs):
//   errors name the entry by index, warrant id and reason.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/identity.hpp"
#include "common/ip_address.hpp"
#include "common/x_list.hpp"

struct hs_database;
struct hs_scratch;
struct rte_lpm;
struct rte_lpm6;

namespace tapwire::dataplane {

/// One target of one warrant, as the control plane (or a target file) gives it.
/// identity is one of:
/// - anything normalize_identity accepts: SIP/SIPS/TEL URI, E.164 with separators
///   ("+49 30 555-010"): an exact target;
/// - a telephone number with a trailing '*': a number-range prefix ("+4930555*",
///   "tel:+49-30-555*" both become the prefix "tel:+4930555");
/// - a SIP URI with '*' wildcards: a glob ("sip:*@evil.example", "sip:bob*@example.com").
///   A '*' matches any run of characters except '@' (it never crosses from user to host).
///   A literal '*' is written "%2A";
/// - an IPv4/IPv6 address or CIDR prefix ("192.0.2.7", "192.0.2.0/24", "2001:db8::/48").
struct TargetSpec {
    std::string identity;
    std::uint32_t warrant_id = 0;  // 0 is reserved (never a warrant)
};

#define TAPWIRE_TARGET_ERRORS(X)                         \
    X(Ok, "ok")                                          \
    X(Empty, "empty")                                    \
    X(BadWarrantId, "bad_warrant_id")                    \
    X(BadIdentity, "bad_identity")                       \
    X(BadPrefixLength, "bad_prefix_length")              \
    X(HostBitsSet, "host_bits_set")                      \
    X(MatchesEverything, "matches_everything")           \
    X(WildcardInsideNumber, "wildcard_inside_number")    \
    X(WildcardInDroppedPart, "wildcard_in_dropped_part") \
    X(TooManyIpPrefixes, "too_many_ip_prefixes")

enum class TargetError : std::uint8_t { TAPWIRE_TARGET_ERRORS(TAPWIRE_X_ENUMERATOR) Count };

const char* to_string(TargetError e) noexcept;

enum class TargetKind : std::uint8_t { Exact, Prefix, Glob, Ipv4, Ipv6 };

/// A target reduced to what the matcher needs.
struct ParsedTarget {
    TargetKind kind = TargetKind::Exact;
    std::string text;        // normalised form (Glob: '*' marks the wildcards)
    std::string pattern;     // what the matcher compiles: over the scan form, '\n'-delimited
    bool regex = false;      // pattern is a Hyperscan regex (else a literal)
    IpAddress address;       // Ipv4/Ipv6: network address (host bits zero)
    std::uint8_t depth = 0;  // Ipv4/Ipv6: prefix length
    IdentityError identity_error = IdentityError::Ok;  // detail for BadIdentity
};

/// Classifies and normalises one target with the same normalize_identity the packet side
/// uses. The control plane validates with this function, so both sides agree.
TargetError parse_target(std::string_view identity, ParsedTarget& out,
                         const NumberingPlan& plan = {});

/// Parses a target list "<warrant-id> <identity>" per line; '#' starts a comment line;
/// blank lines are skipped; the identity is the rest of the line (it may hold spaces).
/// Every identity is validated with parse_target. Errors name the line number.
bool parse_target_list(std::string_view text, std::vector<TargetSpec>& out, std::string& error);

/// Reads a target file (see parse_target_list); used until the control plane exists.
bool load_target_file(const std::string& path, std::vector<TargetSpec>& out, std::string& error);

inline constexpr std::size_t kMaxWarrantsPerHit = 16;
/// Identities per match_identities call that the result can attribute (bit mask width);
/// a SIP message carries at most 3 + 6 x 8 (common/sip.hpp), so none are lost in practice.
inline constexpr std::size_t kMaxIdentitiesPerMatch = 64;
/// Longest identity matched: normalize_identity never writes more.
inline constexpr std::size_t kMaxIdentityLength = NormalizedIdentity::kMaxLength - 1;

/// What one message matched. Both match functions ADD to it (so a worker can collect the
/// identities and both addresses of one packet in one result); clear() per message.
struct MatchResult {
    std::array<std::uint32_t, kMaxWarrantsPerHit> warrants;  // distinct, first warrant_count
    std::uint8_t warrant_count = 0;
    bool overflow = false;                 // more warrants hit than fit
    bool scan_error = false;               // Hyperscan failed or bad worker index: result partial
    std::uint16_t overflow_count = 0;      // warrant references that did not fit
    std::uint16_t identities_skipped = 0;  // longer than kMaxIdentityLength, holding '\n',
                                           // or beyond kMaxIdentitiesPerMatch
    std::uint64_t identity_mask = 0;       // bit i: input identity i matched an active warrant

    void clear() noexcept {
        warrant_count = 0, overflow = false, scan_error = false;
        overflow_count = 0, identities_skipped = 0, identity_mask = 0;
    }
    bool hit() const noexcept { return warrant_count != 0; }
    std::span<const std::uint32_t> warrant_ids() const noexcept {
        return {warrants.data(), warrant_count};
    }
    bool contains(std::uint32_t warrant) const noexcept {
        for (std::size_t i = 0; i < warrant_count; ++i)
            if (warrants[i] == warrant) return true;
        return false;
    }
};

/// Per-worker match counters, one X-macro list for the enum, the names and the struct, so
/// the lead can publish them through telemetry. The worker owns one and calls record().
#define TAPWIRE_TARGET_MATCH_COUNTERS(X)   \
    X(IdentityMatches, "identity_matches") \
    X(IdentityHits, "identity_hits")       \
    X(AddressLookups, "address_lookups")   \
    X(AddressHits, "address_hits")         \
    X(WarrantOverflow, "warrant_overflow") \
    X(IdentitySkipped, "identity_skipped") \
    X(ScanError, "scan_error")

enum class TargetMatchCounter : std::uint8_t {
    TAPWIRE_TARGET_MATCH_COUNTERS(TAPWIRE_X_ENUMERATOR) Count
};

const char* to_string(TargetMatchCounter c) noexcept;

struct TargetMatchCounters {
    std::array<std::uint64_t, std::size_t(TargetMatchCounter::Count)> values{};

    void add(TargetMatchCounter c, std::uint64_t n = 1) noexcept { values[std::size_t(c)] += n; }
    std::uint64_t get(TargetMatchCounter c) const noexcept { return values[std::size_t(c)]; }
    /// Counts the overflow, skips and errors one finished result carries.
    void record(const MatchResult& r) noexcept {
        add(TargetMatchCounter::WarrantOverflow, r.overflow_count);
        add(TargetMatchCounter::IdentitySkipped, r.identities_skipped);
        add(TargetMatchCounter::ScanError, r.scan_error ? 1 : 0);
    }
};

/// Sizes and costs of one compiled layer.
struct LayerStats {
    std::uint32_t targets = 0;            // TargetSpec entries given
    std::uint32_t exact_identities = 0;   // distinct patterns, after deduplication
    std::uint32_t identity_prefixes = 0;  // distinct
    std::uint32_t identity_globs = 0;     // distinct
    std::uint32_t ip_targets = 0;         // IP entries given (merged at assembly)
    double compile_ms = 0;                // Hyperscan compile, both databases
    std::size_t database_bytes = 0;       // hs_database_size, both databases
};

/// One compiled list of targets: Hyperscan databases plus pattern-to-warrants tables, and
/// the parsed IP prefixes. Immutable; shared (shared_ptr) by every snapshot that uses it,
/// so a base compiled once serves many snapshots with different deltas.
class TargetLayer {
  public:
    struct Result;

    /// Parses, deduplicates and compiles. Fails as a whole on the first invalid entry, with
    /// an error naming it: "<label> target <index> (warrant <id>): <reason>".
    static Result compile(std::span<const TargetSpec> targets, const NumberingPlan& plan = {},
                          std::string_view label = "target list");

    ~TargetLayer();
    TargetLayer(const TargetLayer&) = delete;
    TargetLayer& operator=(const TargetLayer&) = delete;

    const LayerStats& stats() const noexcept { return stats_; }

    /// Pattern id to warrants: warrant_ids_[begin, begin + count).
    struct WarrantRange {
        std::uint32_t begin = 0;
        std::uint32_t count = 0;
    };
    struct IpTarget {
        IpAddress address;
        std::uint8_t depth = 0;
        std::uint32_t warrant_id = 0;
    };

  private:
    friend class TargetSet;
    TargetLayer() = default;

    hs_database* literal_db_ = nullptr;  // exact, prefix, and globs that reduce to literals
    hs_database* glob_db_ = nullptr;     // globs that need a regex
    std::vector<WarrantRange> literal_lists_, glob_lists_;
    std::vector<std::uint32_t> warrant_ids_;
    std::vector<IpTarget> ip_targets_;
    std::vector<std::uint32_t> warrants_;  // every warrant with a target here, sorted
    LayerStats stats_;
};

struct TargetLayer::Result {
    std::shared_ptr<const TargetLayer> layer;  // null on error
    std::string error;
};

/// Options of one snapshot.
struct TargetSetOptions {
    unsigned workers = 1;  // one Hyperscan scratch per worker index [0, workers)
    NumberingPlan plan{};  // must be the plan the packet side normalises with
    /// Warrants whose BASE-layer targets are ignored: ended or modified since the base was
    /// compiled, so removal never waits for a recompile. The delta layer is never filtered,
    /// so a modified warrant is suspended in the base and carries its new targets in the
    /// delta.
    std::vector<std::uint32_t> suspended_warrants;
};

/// Snapshot-wide figures (for telemetry and the control plane's merge policy).
struct TargetSetStats {
    std::uint64_t generation = 0;  // unique per process, increasing
    LayerStats base, delta;
    std::uint32_t ipv4_prefixes = 0;  // distinct after merging both layers
    std::uint32_t ipv6_prefixes = 0;
    std::uint32_t suspended_warrants = 0;
    unsigned workers = 0;
    std::size_t scratch_bytes = 0;  // per worker
    double assemble_ms = 0;         // scratch, LPM and tables (not the layers' compile)
};

/// The immutable snapshot. All methods are const and safe to call concurrently, each worker
/// with its own worker index. Destroy it only after an RCU grace period.
class TargetSet {
  public:
    struct Result;

    /// Compiles one list (the base) and assembles a snapshot.
    static Result build(std::span<const TargetSpec> targets, const TargetSetOptions& options);
    /// Compiles base and delta lists and assembles a snapshot that scans both.
    static Result build(std::span<const TargetSpec> base, std::span<const TargetSpec> delta,
                        const TargetSetOptions& options);
    /// Assembles a snapshot around already compiled layers (the fast update path: keep the
    /// base layer of the current snapshot, compile only the delta). delta may be null.
    /// Needs the DPDK EAL when the layers hold IP targets (LPM tables live in DPDK memory).
    /// previous, when given, lends its LPM tables if the IP targets are unchanged: an
    /// rte_lpm table zeroes 64 MiB on creation, which an identity-only update should not pay.
    static Result assemble(std::shared_ptr<const TargetLayer> base,
                           std::shared_ptr<const TargetLayer> delta,
                           const TargetSetOptions& options, const TargetSet* previous = nullptr);

    ~TargetSet();
    TargetSet(const TargetSet&) = delete;
    TargetSet& operator=(const TargetSet&) = delete;

    /// Matches the normalised identities of one SIP message (normalize_identity output)
    /// against every identity target; adds the warrants of active hits to out and sets bit
    /// i of out.identity_mask when normalized[i] hit. Returns true when this call hit.
    /// worker must be below the snapshot's worker count (its scratch). No allocation.
    /// ~170-270 ns per 5-identity message at 1k-100k targets (bench_match).
    bool match_identities(std::span<const std::string_view> normalized, unsigned worker,
                          MatchResult& out) const noexcept;

    /// Longest-prefix match of one address against the IP targets; adds the warrants of
    /// the most specific prefix (which include those of the prefixes covering it).
    bool match_address(const IpAddress& address, MatchResult& out) const noexcept;

    /// Whether any target of this warrant is active in this snapshot (binary search): a
    /// dialog under intercept drops the warrants that ended since it was matched.
    bool has_warrant(std::uint32_t warrant) const noexcept;

    const TargetSetStats& stats() const noexcept { return stats_; }
    std::uint64_t generation() const noexcept { return stats_.generation; }
    /// The layers, to build the next snapshot from (e.g. same base, a new delta).
    const std::shared_ptr<const TargetLayer>& base_layer() const noexcept { return base_; }
    const std::shared_ptr<const TargetLayer>& delta_layer() const noexcept { return delta_; }

  private:
    TargetSet() = default;

    // One database to scan with the tables that turn its pattern ids into warrants.
    struct ScanDb {
        const hs_database* db = nullptr;
        const TargetLayer::WarrantRange* lists = nullptr;
        const std::uint32_t* warrant_ids = nullptr;
        bool base = false;  // the base layer's: suspended warrants are filtered out
    };

    struct IpTables;  // LPM tables and their warrant lists, shared between snapshots

    std::shared_ptr<const TargetLayer> base_, delta_;
    std::array<ScanDb, 4> dbs_{};
    unsigned db_count_ = 0;
    std::vector<hs_scratch*> scratch_;  // one per worker
    std::shared_ptr<const IpTables> ip_;
    rte_lpm* lpm4_ = nullptr;  // ip_'s tables, cached for the lookup path
    rte_lpm6* lpm6_ = nullptr;
    const TargetLayer::WarrantRange* ip_lists_ = nullptr;  // LPM next hop -> warrants
    const std::uint32_t* ip_warrant_ids_ = nullptr;
    std::vector<std::uint32_t> suspended_;  // sorted
    std::vector<std::uint32_t> warrants_;   // sorted: has_warrant()
    TargetSetStats stats_;
};

struct TargetSet::Result {
    std::unique_ptr<TargetSet> set;  // null on error
    std::string error;
};

}  // namespace tapwire::dataplane
