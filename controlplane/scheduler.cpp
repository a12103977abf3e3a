// The warrant window scheduler. See scheduler.hpp.
#include "controlplane/scheduler.hpp"

#include <algorithm>
#include <cstdio>
#include <string>
#include <utility>

namespace tapwire::controlplane {

namespace {

constexpr const char* kActor = "system:scheduler";

std::optional<std::int64_t> ns_of(bool present, const google::protobuf::Timestamp& t) {
    if (!present) return std::nullopt;
    return to_unix_ns(t);
}

// The change a PENDING or ACTIVE warrant needs at now_ns, by the rules of
// Store::warrants_needing_attention (an end that has passed wins over the start; of two ends
// the earlier, the window on a tie): what a due Attention must still be when re-read.
std::optional<std::pair<v1::WarrantState, std::int64_t>> due_change(const v1::WarrantStatus& s,
                                                                    std::int64_t now_ns) {
    if (s.state() != v1::WARRANT_STATE_PENDING && s.state() != v1::WARRANT_STATE_ACTIVE) {
        return std::nullopt;
    }
    const auto from = ns_of(s.warrant().has_valid_from(), s.warrant().valid_from());
    const auto until = ns_of(s.warrant().has_valid_until(), s.warrant().valid_until());
    const auto deadline = ns_of(s.has_emergency_deadline(), s.emergency_deadline());
    const bool until_due = until && *until <= now_ns;
    const bool deadline_due = deadline && *deadline <= now_ns;
    if (until_due && (!deadline_due || *until <= *deadline)) {
        return std::pair{v1::WARRANT_STATE_LAPSED, *until};
    }
    if (deadline_due) return std::pair{v1::WARRANT_STATE_EMERGENCY_LAPSED, *deadline};
    if (s.state() == v1::WARRANT_STATE_PENDING && from && *from <= now_ns) {
        return std::pair{v1::WARRANT_STATE_ACTIVE, *from};
    }
    return std::nullopt;
}

v1::EventKind event_of(v1::WarrantState to) noexcept {
    switch (to) {
        case v1::WARRANT_STATE_ACTIVE:
            return v1::EVENT_WARRANT_ACTIVATED;
        case v1::WARRANT_STATE_EMERGENCY_LAPSED:
            return v1::EVENT_EMERGENCY_LAPSED;
        default:
            return v1::EVENT_WARRANT_LAPSED;
    }
}

void log_failure(const char* what, const std::string& message) {
    // Store and audit messages name XIDs and paths, never target identities.
    std::fprintf(stderr, "tapwire-controlplane: scheduler: %s failed (will retry): %s\n", what,
                 message.c_str());
}

}  // namespace

struct Scheduler::PassResult {
    std::int64_t now_ns = 0;
    std::optional<std::int64_t> next_ns;  // the store's next due time (may lie in the past)
    bool failed = false;
    bool progressed = false;  // applied or skipped at least one due change
    std::uint64_t applied = 0, skipped = 0, late = 0;
    std::int64_t max_late_ns = 0;
};

Scheduler::Scheduler(const ServiceContext& ctx) : Scheduler(ctx, Options{}) {}

Scheduler::Scheduler(const ServiceContext& ctx, Options options) : ctx_(ctx), options_(options) {}

Scheduler::~Scheduler() {
    stop();
}

void Scheduler::start() {
    std::lock_guard lock(mutex_);
    if (thread_.joinable()) return;
    stopping_ = false;
    thread_ = std::thread([this] { run(); });
}

void Scheduler::stop() {
    {
        std::lock_guard lock(mutex_);
        if (!thread_.joinable()) return;
        stopping_ = true;
    }
    wake_.notify_all();
    done_.notify_all();
    thread_.join();
    if (const std::size_t left = ctx_.unaudited->size(); left != 0) {
        std::fprintf(stderr,
                     "tapwire-controlplane: scheduler: stopped with %zu audit record(s) not "
                     "written (their changes are stored)\n",
                     left);
    }
}

void Scheduler::wake() noexcept {
    {
        std::lock_guard lock(mutex_);
        woken_ = true;
    }
    wake_.notify_all();
}

bool Scheduler::sync(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    if (!thread_.joinable() || stopping_) return false;
    // Passes are numbered as they begin (under this mutex), so the next number is a pass
    // that has not begun yet.
    const std::uint64_t target = started_ + 1;
    woken_ = true;
    wake_.notify_all();
    done_.wait_for(lock, timeout, [&] { return completed_ >= target || stopping_; });
    return completed_ >= target;
}

Scheduler::Stats Scheduler::stats() const {
    std::lock_guard lock(mutex_);
    return stats_;
}

std::int64_t Scheduler::now_ns() const {
    const Timestamp now =
        ctx_.clock ? ctx_.clock()
                   : std::chrono::time_point_cast<Duration>(std::chrono::system_clock::now());
    return now.time_since_epoch().count();
}

void Scheduler::run() {
    Duration backoff = options_.initial_backoff;
    std::unique_lock lock(mutex_);
    while (!stopping_) {
        woken_ = false;
        const std::uint64_t number = ++started_;
        lock.unlock();
        const PassResult r = pass();
        if (r.late > 0) {
            std::fprintf(stderr,
                         "tapwire-controlplane: scheduler: applied %llu warrant state change(s) "
                         "late, by up to %lld ms (the control plane was not running when they "
                         "fell due)\n",
                         static_cast<unsigned long long>(r.late),
                         static_cast<long long>(r.max_late_ns / 1'000'000));
        }
        lock.lock();
        completed_ = number;
        ++stats_.passes;
        stats_.applied += r.applied;
        stats_.skipped += r.skipped;
        stats_.unaudited = ctx_.unaudited->size();
        if (r.failed) ++stats_.failures;
        done_.notify_all();
        if (stopping_) break;

        Duration wait = options_.max_sleep;
        // Due in the past although this pass found nothing to do: the store disagrees with
        // itself; back off rather than spin.
        const bool stuck = r.next_ns && *r.next_ns <= r.now_ns && !r.progressed;
        if (r.failed || stuck) {
            wait = backoff;
            backoff = std::min(backoff * 2, options_.max_backoff);
        } else {
            backoff = options_.initial_backoff;
            const std::int64_t now = now_ns();
            // A clock that did not move during a whole pass is a test clock held still: wait
            // for wake() (or max_sleep) rather than spin towards a time it will not reach.
            if (r.next_ns && *r.next_ns <= now) {
                wait = Duration::zero();  // fell due meanwhile
            } else if (r.next_ns && now != r.now_ns) {
                wait = std::min(Duration(*r.next_ns - now), options_.max_sleep);
            }
        }
        if (wait > Duration::zero()) {
            wake_.wait_for(lock, wait, [this] { return stopping_ || woken_; });
        }
    }
}

Scheduler::PassResult Scheduler::pass() {
    PassResult r;
    // Records that could not be written earlier come first: they are older.
    if (!ctx_.unaudited->flush(ctx_.audit, ctx_.warrant_changed)) r.failed = true;

    r.now_ns = now_ns();
    auto due = ctx_.store->warrants_needing_attention(r.now_ns);
    if (!due) {
        log_failure("finding the warrants due for a change", due.message());
        r.failed = true;
        return r;
    }
    for (const Attention& a : *due) {
        {
            std::lock_guard lock(mutex_);
            if (stopping_) return r;
        }
        apply(a, r.now_ns, r);
    }
    auto next = ctx_.store->next_attention_ns();
    if (!next) {
        log_failure("finding the next warrant change", next.message());
        r.failed = true;
        return r;
    }
    r.next_ns = *next;
    return r;
}

void Scheduler::apply(const Attention& due, std::int64_t now_ns, PassResult& r) {
    StoredWarrant moved;
    {
        std::lock_guard lock(warrant_transition_mutex());
        // Re-read: a Modify, ConfirmEmergency or Deactivate since the query may have moved the
        // window, removed the deadline or ended the warrant. The next pass sees the new state.
        auto current = ctx_.store->get_warrant(due.xid);
        if (!current) {
            if (current.code() == StoreError::NotFound) {
                ++r.skipped;
                r.progressed = true;
                return;
            }
            log_failure("reading a due warrant", current.message());
            r.failed = true;
            return;
        }
        const auto still = due_change(current->status, now_ns);
        if (current->status.state() != due.from || !still || still->first != due.to ||
            still->second != due.due_ns) {
            ++r.skipped;
            r.progressed = true;
            return;
        }
        StateChange change;
        change.state = due.to;
        change.expected_state = due.from;
        if (due.to == v1::WARRANT_STATE_ACTIVE) {
            change.activated_at_ns = due.due_ns;
        } else {
            change.ended_at_ns = due.due_ns;
        }
        auto updated = ctx_.store->update_state(due.xid, change, now_ns);
        if (!updated) {
            if (updated.code() == StoreError::FailedPrecondition) {  // changed meanwhile
                ++r.skipped;
                r.progressed = true;
                return;
            }
            log_failure("changing a warrant's state", updated.message());
            r.failed = true;
            return;
        }
        moved = std::move(*updated);
    }
    ++r.applied;
    r.progressed = true;

    UnauditedChanges::WarrantChange change{std::move(moved), event_of(due.to)};
    AuditEntry e;
    e.actor = kActor;
    e.role = "system";
    e.action = due.to == v1::WARRANT_STATE_ACTIVE ? AuditAction::WarrantEffective
                                                  : AuditAction::WarrantLapse;
    e.subject = "xid:" + due.xid;
    e.details.emplace_back("liid", change.warrant.status.warrant().liid());
    e.details.emplace_back("from", v1::WarrantState_Name(due.from));
    e.details.emplace_back("to", v1::WarrantState_Name(due.to));
    e.details.emplace_back("due", format_audit_time(due.due_ns / 1000));
    const std::int64_t late_ns = now_ns - due.due_ns;
    if (late_ns >= options_.late_after.count()) {
        e.details.emplace_back("late_ms", std::to_string(late_ns / 1'000'000));
        ++r.late;
        r.max_late_ns = std::max(r.max_late_ns, late_ns);
    }
    if (!ctx_.unaudited->write(std::move(e), std::move(change), ctx_.audit, ctx_.warrant_changed))
        r.failed = true;
}

}  // namespace tapwire::controlplane
