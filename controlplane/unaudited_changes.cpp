#include "controlplane/unaudited_changes.hpp"

#include <bit>
#include <chrono>
#include <cstdio>
#include <iterator>
#include <string>
#include <utility>
#include <vector>

namespace tapwire::controlplane {

namespace {

// A log that stays broken is said on stderr at 1, 2, 4, 8, ... occurrences, not per record.
bool worth_a_line(std::uint64_t n) noexcept {
    return std::has_single_bit(n);
}

std::string now_text() {
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(
                        std::chrono::system_clock::now().time_since_epoch())
                        .count();
    return format_audit_time(us);
}

}  // namespace

bool UnauditedChanges::ends_interception(v1::EventKind kind) noexcept {
    return kind == v1::EVENT_WARRANT_DEACTIVATED || kind == v1::EVENT_WARRANT_LAPSED ||
           kind == v1::EVENT_EMERGENCY_LAPSED;
}

bool UnauditedChanges::flush_locked(AuditLog& audit, std::vector<Pending>& written) {
    while (!queue_.empty()) {
        const auto appended = audit.append(queue_.front().entry);
        if (appended.ok()) {
            written.push_back(std::move(queue_.front()));
            queue_.pop_front();
            continue;
        }
        if (worth_a_line(++failures_))
            std::fprintf(stderr, "tapwire-controlplane: audit record not written (%s): %s\n",
                         to_string(appended.status.error), appended.status.message.c_str());
        // A record the log refuses as such would block the queue for good: a bug, not a
        // disk; it is said on stderr and given up (its change still announced).
        if (appended.status.error != AuditError::InvalidRecord) return false;
        written.push_back(std::move(queue_.front()));
        queue_.pop_front();
    }
    return true;
}

bool UnauditedChanges::write(AuditEntry entry, std::optional<WarrantChange> change, AuditLog* audit,
                             const Announce& announce, bool queue_if_unwritten) {
    std::vector<Pending> done;
    bool written = audit == nullptr;
    bool announce_now = false;
    bool was_empty = false;
    std::size_t queued = 0;
    {
        std::lock_guard lock(mutex_);
        was_empty = queue_.empty();
        if (audit != nullptr && flush_locked(*audit, done)) {
            const auto appended = audit->append(entry);
            written = appended.ok();
            if (!written && worth_a_line(++failures_))
                std::fprintf(stderr, "tapwire-controlplane: audit record not written (%s): %s\n",
                             to_string(appended.status.error), appended.status.message.c_str());
        }
        if (!written && queue_if_unwritten && queue_.size() >= kMaxQueued) {
            ++lost_;
            announce_now = change && ends_interception(change->kind);
            if (worth_a_line(lost_))
                std::fprintf(stderr,
                             "tapwire-controlplane: audit queue full (%zu records): a %s record is "
                             "given up (%llu so far)\n",
                             queue_.size(), to_string(entry.action),
                             static_cast<unsigned long long>(lost_));
        } else if (!written && queue_if_unwritten) {
            Pending p{std::move(entry), change, false};
            if (p.entry.details.size() < AuditEntry::kMaxDetails)
                p.entry.details.emplace_back("audit_deferred_from", now_text());
            announce_now = change && ends_interception(change->kind);
            p.announced = announce_now;
            queue_.push_back(std::move(p));
            if (worth_a_line(queue_.size()))
                std::fprintf(stderr,
                             "tapwire-controlplane: %zu audit record(s) queued until the audit "
                             "log takes them\n",
                             queue_.size());
        }
        queued = queue_.size();
    }
    if (backlog_changed && was_empty != (queued == 0)) backlog_changed(queued);
    if (announce) {
        for (const Pending& p : done)
            if (p.change && !p.announced) announce(p.change->warrant, p.change->kind);
        if (change && (written || announce_now)) announce(change->warrant, change->kind);
    }
    return written;
}

bool UnauditedChanges::flush(AuditLog* audit, const Announce& announce) {
    std::vector<Pending> done;
    bool empty = false;
    bool was_empty = false;
    {
        std::lock_guard lock(mutex_);
        was_empty = queue_.empty();
        if (audit == nullptr) {
            done.assign(std::make_move_iterator(queue_.begin()),
                        std::make_move_iterator(queue_.end()));
            queue_.clear();
        } else {
            flush_locked(*audit, done);
        }
        empty = queue_.empty();
    }
    if (backlog_changed && !was_empty && empty) backlog_changed(0);
    if (announce)
        for (const Pending& p : done)
            if (p.change && !p.announced) announce(p.change->warrant, p.change->kind);
    return empty;
}

std::uint64_t UnauditedChanges::lost() const {
    std::lock_guard lock(mutex_);
    return lost_;
}

std::size_t UnauditedChanges::size() const {
    std::lock_guard lock(mutex_);
    return queue_.size();
}

}  // namespace tapwire::controlplane
