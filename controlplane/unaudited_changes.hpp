// Audit records that could not be written when their action happened (the audit log's disk
// is full or failing), kept in order until they can be. One queue for every writer of
// action records, the gRPC services (CallAudit::finish) and the window scheduler, so the
// trail keeps the order in which things happened: a writer first writes what is queued, then
// its own record, and queues its own when either fails.
//
// A record may describe a durable warrant change (stored before its record is written). When
// such a change takes effect (ServiceContext::warrant_changed: dataplane, handover, event
// feed) depends on which way it goes:
//  - one that lets interception start or go on (accepted, activated, modified, emergency
//    confirmed) only once its record is written: nothing intercepts on an unaudited change,
//    and until then the dataplane holds what the trail shows (a Modify's previous version);
//  - one that ends interception (deactivated, lapsed) at once: a warrant must not go on
//    intercepting because the audit disk is full; its record follows when it can be written.
// A record written late carries the detail `audit_deferred_from` (when it happened), and a
// gRPC caller whose record could not be written was answered UNAVAILABLE.
//
// In memory only: a control plane that stops with records queued says how many on stderr.
// The store has the changes; the next start publishes the stored state. Bounded (kMaxQueued:
// a log that stays broken must not take the memory with it): beyond it a record is given up
// with a line on stderr and counted in lost(); its change takes effect only if it ends
// interception.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <vector>

#include "controlplane/audit_log.hpp"
#include "controlplane/store.hpp"
#include "tapwire/v1/controlplane.pb.h"

namespace tapwire::controlplane {

class UnauditedChanges {
  public:
    using Announce = std::function<void(const StoredWarrant&, v1::EventKind)>;
    struct WarrantChange {
        StoredWarrant warrant;
        v1::EventKind kind = v1::EVENT_KIND_UNSPECIFIED;
    };

    /// Whether a change of this kind ends interception (announced before its record).
    static bool ends_interception(v1::EventKind kind) noexcept;

    /// Writes the queued records, then `entry`, announcing each change once it may take
    /// effect (see the file comment). What cannot be written is queued, `entry` too unless
    /// `queue_if_unwritten` is false (a read that was not handed out). Returns whether `entry`
    /// was written. `audit` null: nothing is written, every change is announced.
    bool write(AuditEntry entry, std::optional<WarrantChange> change, AuditLog* audit,
               const Announce& announce, bool queue_if_unwritten = true);
    /// Writes the queued records (the scheduler retries on every pass). true when none is left.
    bool flush(AuditLog* audit, const Announce& announce);
    std::size_t size() const;
    /// Records given up because the queue was full.
    std::uint64_t lost() const;
    static constexpr std::size_t kMaxQueued = 65536;

    /// Told the number of queued records when the queue stops being empty and (0) when it
    /// empties again, outside the lock; main() raises an EVENT_ALARM. Set before use.
    std::function<void(std::size_t queued)> backlog_changed;

  private:
    struct Pending {
        AuditEntry entry;
        std::optional<WarrantChange> change;
        bool announced = false;
    };
    /// Writes queue_ from the front; the changes written are moved to `written`. mutex_ held.
    bool flush_locked(AuditLog& audit, std::vector<Pending>& written);

    mutable std::mutex mutex_;  // queue_; held across the appends, which keeps their order
    std::deque<Pending> queue_;
    std::uint64_t lost_ = 0;
    std::uint64_t failures_ = 0;  // failed appends, for the stderr lines
};

}  // namespace tapwire::controlplane
