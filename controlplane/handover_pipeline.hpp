// The control plane's mediation and delivery function: turns the hits the dataplane link
// accepted into IRI and CC records, encodes them in each destination's format, appends them
// to that destination's on-disk spool and delivers them to the LEMF (handover/).
//
//   DataplaneLink::drain ─► deliver(hit, accepted warrants)
//        per warrant ─► record (IRI: SIP hit, CC: RTP/RTCP/IP hit) with CIN and sequence
//        per destination of the warrant ─► Encoder ─► Spool::append ─► Delivery ─► LEMF
//   flusher thread: Spool::flush every flush_interval (batched fdatasync, reclaims space)
//
// Communication identifiers: one CIN per call (the dataplane's 64-bit correlation id, which
// the LEMF never sees), shared by every warrant that intercepts the call, allocated from the
// durable store counter "cin" in blocks (Store::reserve_block), so a CIN is never handed out
// twice, not even across restarts. ETSI's CIN is 32-bit: the counter is taken modulo 2^32
// (skipping 0). IP-target hits (no call) use one CIN per warrant and control-plane run.
//
// Sequence numbers: per (warrant, CIN, IRI or CC), from 0, contiguous; every destination of
// the warrant gets the same numbers. The call table (CIN, sequence numbers, IRI state) lives
// in memory; a clean stop saves it (save_calls) with the dataplane's boot id and the next run
// resumes it (restore_calls) when the same dataplane is still running, so calls that outlive
// a control-plane restart or upgrade keep their CIN and continue their sequences. After a
// crash the table is gone: an ongoing call continues under a new CIN, starting at 0 with an
// IRI-BEGIN; the LEMF sees two communications, never a repeated or skipped number.
//
// IRI types (TS 102 232-1 / TS 101 671): per warrant and call, the first record is BEGIN
// (also when the warrant joined mid-call); END when the call ends: the final response to BYE
// or CANCEL, or a final failure response to the INVITE (the dataplane's call-ending flag on
// a response); a MESSAGE request begins its transaction and the final response ends it;
// everything else in between is CONTINUE. REGISTER, OPTIONS, SUBSCRIBE, NOTIFY, PUBLISH and
// messages of a call after its END are REPORT. A call that goes idle (nothing of it, SIP or
// media, seen for call_idle_timeout: the dataplane has given up its dialog by then) is ended
// by housekeeping(): every warrant that began it, has not ended it and is still inside its
// window gets an IRI END without a SIP message (ETSI: sIPMessage with the call's last
// addresses and empty content; CALEA: CCClose and Release). X2 carries raw signalling for the
// mediation function to type, so an X2 destination gets no such record; as the END is the
// call's last record, its X2 stream shows no gap.
//
// Threads: deliver(), call_alive(), end_burst(), housekeeping(), save_calls() and
// restore_calls() run on the dataplane link's thread only (the call table is its own);
// destination_*() and warrant_changed() come from gRPC threads and the scheduler;
// fill_status() from any thread.
// One mutex guards destinations and warrants; it is held per hit, never across disk or
// network I/O except a spool append (a memcpy, a pwrite when its buffer is full).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/bytes.hpp"
#include "common/shm_contract.hpp"
#include "common/sip.hpp"
#include "common/x_list.hpp"
#include "controlplane/store.hpp"
#include "handover/calea.hpp"
#include "handover/delivery.hpp"
#include "handover/record.hpp"
#include "handover/spool.hpp"
#include "tapwire/v1/controlplane.pb.h"

namespace tapwire::controlplane {

class EventHub;

/// X(name, description); drop_* are losses of intercepted data, by reason.
#define TAPWIRE_HANDOVER_COUNTERS(X)                                                           \
    X(iri_records, "IRI records spooled (one per warrant and destination)")                    \
    X(cc_records, "CC records spooled (one per warrant and destination)")                      \
    X(calls, "communication identifiers (CIN) allocated")                                      \
    X(calls_resumed, "calls resumed from the table a clean stop saved")                        \
    X(calls_timed_out, "calls ended by the idle timeout (IRI END without a SIP message)")      \
    X(drop_spool_full, "records refused: a destination's spool limit or its disk is full")     \
    X(drop_spool_error, "records refused: spool I/O error")                                    \
    X(drop_encode_failed, "records the destination's format could not encode")                 \
    X(drop_destination_unavailable, "records for a destination that is not open (see status)") \
    X(drop_malformed_hit, "hits without a usable IP packet or SIP message")                    \
    X(drop_cin_unavailable, "hits dropped: no CIN could be reserved in the store")

enum class HandoverCounter : std::uint8_t { TAPWIRE_HANDOVER_COUNTERS(TAPWIRE_X_ENUMERATOR) Count };

struct HandoverPipelineOptions {
    /// One spool directory per destination below it (<state-dir>/spool).
    std::string spool_root;
    /// ETSI CommunicationIdentifier.networkIdentifier (operator and network element ids);
    /// CALEA takes the element id (1..15 characters), or the operator id when it is empty.
    std::string operator_identifier = "tapwire";
    std::string network_element_identifier;
    /// ETSI deliveryCountryCode; empty: the warrant's jurisdiction.
    std::string delivery_country_code;
    /// ETSI interceptionPointID (optional).
    std::string interception_point_id;
    /// Spool sizes for every destination (directory set per destination).
    handover::SpoolOptions spool;
    /// Delivery timings for every destination (host, port and TLS come from it).
    handover::DeliveryOptions delivery;
    /// How often the spools are flushed (one fdatasync each): what a power loss can lose.
    std::chrono::milliseconds flush_interval{5};
    /// A call with nothing of it seen for this long is ended (see the file comment) and
    /// forgotten; ended calls are forgotten after `ended_call_linger` (late retransmissions).
    /// Above the dataplane's dialog idle timeout (the sample configuration's 7200 s): the
    /// dataplane no longer follows the call by then. Only intercepted calls are kept (~250
    /// bytes each).
    std::chrono::seconds call_idle_timeout{7260};
    std::chrono::seconds ended_call_linger{64};
    /// CINs reserved per store write.
    std::uint64_t cin_block = 4096;
};

/// How one SIP message of a call is typed (see the file comment). Exposed for tests.
struct IriState {
    bool begun = false;
    bool ended = false;
};
handover::IriType classify_iri(const SipMessage* parsed_message, bool call_ending_flag,
                               IriState& state) noexcept;
/// The same over the raw message (parsed here; unparsable: the call's next record).
handover::IriType classify_iri(std::string_view sip_message, bool call_ending_flag,
                               IriState& state) noexcept;

class HandoverPipeline {
  public:
    /// Opens a spool and starts a delivery for every destination in the store, prepares
    /// every warrant, reserves the first CIN block, starts the flusher. A destination that
    /// cannot be opened is reported in its status and by an alarm, not fatal.
    static std::unique_ptr<HandoverPipeline> open(HandoverPipelineOptions options, Store& store,
                                                  EventHub* events, std::string& error);
    ~HandoverPipeline();  // stop()
    HandoverPipeline(const HandoverPipeline&) = delete;
    HandoverPipeline& operator=(const HandoverPipeline&) = delete;

    /// Stops deliveries and the flusher and flushes every spool (idempotent).
    void stop();

    // -- management (any thread) -------------------------------------------------------------
    void destination_changed(const v1::Destination& destination);
    void destination_removed(const std::string& id);
    void warrant_changed(const StoredWarrant& warrant);

    // -- the dataplane link's thread -----------------------------------------------------------
    /// One accepted hit: `data` is the hit's bytes (the frame, or the SIP message alone when
    /// kHitReassembled), `warrants` the internal ids the link accepted for it.
    void deliver(const shm::HitMeta& meta, ByteSpan data, std::span<const std::uint32_t> warrants);
    /// After a ring burst: wakes the deliveries that got records.
    void end_burst();
    /// A packet of the call under `correlation_id` that gives no record (media of an IRI-only
    /// warrant): the call is still going.
    void call_alive(std::uint64_t correlation_id, std::int64_t timestamp_ns);
    /// Ends idle calls, forgets them and ended ones (cheap to call often: works once a
    /// second). `in_window(warrant, now)`: whether the warrant may still get records.
    using WarrantInWindow = std::function<bool(std::uint32_t warrant, std::int64_t now_ns)>;
    void housekeeping(std::int64_t now_ns, const WarrantInWindow& in_window);
    /// Saves the call table for the next run (clean stop), tagged with the dataplane's boot
    /// id; restore_calls() takes it back only for the same dataplane boot, and removes it.
    void save_calls(std::uint64_t dataplane_boot_id);
    void restore_calls(std::uint64_t dataplane_boot_id);

    // -- any thread ----------------------------------------------------------------------------
    void fill_status(v1::ApplianceStatus& status) const;
    std::uint64_t counter(HandoverCounter c) const noexcept {
        return counters_[std::size_t(c)].load(std::memory_order_relaxed);
    }
    std::map<std::string, std::uint64_t> drop_totals() const;

  private:
    struct Channel;
    /// A warrant's records: its fixed parts prepared once per destination.
    struct WarrantHandover {
        handover::WarrantContext context;  // microsecond_timestamps set per destination
        std::vector<std::string> destination_ids;
        struct Target {
            std::string id;
            std::shared_ptr<Channel> channel;  // null: destination not configured
            std::unique_ptr<handover::PreparedWarrant> prepared;  // null: cannot be encoded
            std::string error;                                    // why not prepared
        };
        std::vector<Target> targets;
    };
    struct CallStream {
        std::uint32_t warrant = 0;
        std::uint64_t iri_sequence = 0;
        std::uint64_t cc_sequence = 0;
        IriState iri;
        handover::CaleaCall calea;
    };
    struct Call {
        std::uint32_t cin = 0;
        std::int64_t last_ns = 0;
        bool ended = false;  // some warrant's END went out
        std::uint8_t sip_transport = 0;
        handover::Endpoint sip_source, sip_destination;  // of its last SIP message
        std::vector<CallStream> streams;
        CallStream& stream(std::uint32_t warrant);
    };

    HandoverPipeline(HandoverPipelineOptions options, Store& store, EventHub* events);
    std::shared_ptr<Channel> open_channel(const v1::Destination& destination);
    void prepare_keepalive(Channel& channel);
    std::unique_ptr<handover::Delivery> make_delivery(Channel& channel);
    void prepare_locked(WarrantHandover& warrant);
    bool next_cin(std::uint32_t& cin);
    /// The call under `key`, opened with a new CIN when it is new; null when no CIN could be
    /// reserved (counted).
    Call* open_call(std::unordered_map<std::uint64_t, Call>& table, std::uint64_t key);
    void append(const std::shared_ptr<Channel>& channel, ByteSpan pdu, bool iri);
    /// Encodes one record (`iri` or `cc`) of warrant `w` for each of its destinations and
    /// spools it; `s` is the warrant's stream of the call. Returns the stream's CALEA state
    /// after the record. Holds mutex_.
    handover::CaleaCall spool_record(WarrantHandover& w, const CallStream& s,
                                     const handover::IriRecord* iri, const handover::CcRecord* cc);
    /// The IRI ENDs of a call that went idle (housekeeping).
    void end_idle_call(Call& call, std::int64_t now_ns, const WarrantInWindow& in_window);
    void flusher();
    void emit(v1::EventKind kind, std::string destination_id, std::string detail);
    void count(HandoverCounter c, std::uint64_t n = 1) noexcept {
        counters_[std::size_t(c)].fetch_add(n, std::memory_order_relaxed);
    }
    std::string calls_path() const;

    HandoverPipelineOptions options_;
    Store& store_;
    EventHub* events_;
    std::unique_ptr<handover::Encoder> encoders_[4];  // by v1::HandoverFormat

    mutable std::mutex mutex_;  // channels_, warrants_
    std::map<std::string, std::shared_ptr<Channel>> channels_;
    std::unordered_map<std::uint32_t, WarrantHandover> warrants_;

    // Link thread only.
    std::unordered_map<std::uint64_t, Call> calls_;        // by dataplane correlation id
    std::unordered_map<std::uint64_t, Call> ip_sessions_;  // IP-target hits, by warrant
    std::uint64_t cin_next_ = 0, cin_end_ = 0;
    std::int64_t last_housekeeping_ns_ = 0;
    std::vector<std::uint8_t> pdu_;                  // encoder output
    std::vector<std::shared_ptr<Channel>> touched_;  // got records since the last end_burst

    std::thread flusher_;
    std::mutex flusher_mutex_;
    std::condition_variable flusher_wake_;
    bool stopping_ = false;

    std::atomic<std::uint64_t> counters_[std::size_t(HandoverCounter::Count)]{};
};

}  // namespace tapwire::controlplane
