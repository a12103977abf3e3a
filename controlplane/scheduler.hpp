// The warrant window scheduler: makes a warrant effective at valid_from and lapse at
// valid_until or at its emergency deadline on time, with no client call, and catches up
// after the control plane was down (a window that passed meanwhile ends LAPSED, never ACTIVE).
//
// One thread. Each pass asks the store for the warrants due for a change at now
// (Store::warrants_needing_attention), and for each: re-reads it under
// warrant_transition_mutex() (a Modify, ConfirmEmergency or Deactivate may have changed it
// since), applies the change with Store::update_state as a compare-and-set on the state (a
// deactivated warrant is never resurrected), writes the audit record (actor
// "system:scheduler"; warrant_effective or warrant_lapse, with the lateness of a change
// applied late) and then tells ServiceContext::warrant_changed (EVENT_WARRANT_ACTIVATED,
// EVENT_WARRANT_LAPSED, EVENT_EMERGENCY_LAPSED). Then it sleeps until
// Store::next_attention_ns(), at most Options::max_sleep at a time (so a stepped wall clock or
// a test clock that jumps is noticed), and wakes at once on wake().
//
// Failures never stop it: a store failure is logged (the store's message, which names no
// target) and the pass is retried with exponential backoff; a change whose audit record
// cannot be written stays applied (it is durable) and its record is retried on every later
// pass (ServiceContext::unaudited, shared with the services), its warrant_changed call
// following once the record is written, or at once for a lapse (UnauditedChanges).
//
// Wiring (main.cpp), with `ctx` the ServiceContext the services use (it must outlive the
// scheduler; store, audit and, if wanted, clock and warrant_changed set before start()):
//
//     cp::Scheduler scheduler(ctx);
//     ctx.schedule_changed = [&scheduler] { scheduler.wake(); };  // before serving
//     scheduler.start();  // first pass at once: applies what fell due while it was down
//     ... serve; on shutdown, after server Shutdown() and Wait():
//     scheduler.stop();   // before the audit log is closed and the store destroyed
//
// warrant_changed is called from the scheduler's thread as well as from gRPC threads.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "controlplane/service.hpp"

namespace tapwire::controlplane {

class Scheduler {
  public:
    struct Options {
        /// Longest sleep between passes, whatever the next due time: bounds how late a
        /// change can be after a wall-clock step or a missed wake().
        Duration max_sleep = std::chrono::seconds(1);
        /// First retry after a failed pass; doubles up to max_backoff.
        Duration initial_backoff = std::chrono::milliseconds(100);
        Duration max_backoff = std::chrono::seconds(30);
        /// A change applied at least this long after it was due is audited with "late_ms".
        Duration late_after = std::chrono::seconds(1);
    };

    /// Counters since start(), for tests and status.
    struct Stats {
        std::uint64_t passes = 0;
        std::uint64_t applied = 0;    // state changes stored
        std::uint64_t skipped = 0;    // due changes no longer due when re-read (changed meanwhile)
        std::uint64_t failures = 0;   // failed passes (store or audit)
        std::uint64_t unaudited = 0;  // changes applied whose audit record is still pending
    };

    /// Uses ctx.store, ctx.audit, ctx.clock (system clock when empty) and ctx.warrant_changed.
    explicit Scheduler(const ServiceContext& ctx);
    Scheduler(const ServiceContext& ctx, Options options);
    /// stop().
    ~Scheduler();
    Scheduler(const Scheduler&) = delete;
    Scheduler& operator=(const Scheduler&) = delete;

    /// Starts the thread, whose first pass runs at once. No-op while running.
    void start();
    /// Ends the current pass after its current warrant, and joins the thread. Idempotent.
    void stop();
    /// Runs a pass now (after the current one): the next due time may have moved. Any thread.
    void wake() noexcept;
    /// Wakes the scheduler and waits until a pass that began after this call has finished
    /// (a test moves its clock, then syncs). false on timeout or when not running.
    bool sync(std::chrono::milliseconds timeout = std::chrono::seconds(10));

    Stats stats() const;

  private:
    struct PassResult;

    void run();
    PassResult pass();
    void apply(const Attention& due, std::int64_t now_ns, PassResult& result);
    std::int64_t now_ns() const;

    const ServiceContext& ctx_;
    const Options options_;

    mutable std::mutex mutex_;
    std::condition_variable wake_;  // the thread waits here between passes
    std::condition_variable done_;  // sync() waits here for a pass to finish
    bool stopping_ = false;
    bool woken_ = false;
    std::uint64_t started_ = 0;    // passes begun
    std::uint64_t completed_ = 0;  // passes finished
    Stats stats_;
    std::thread thread_;
};

}  // namespace tapwire::controlplane
