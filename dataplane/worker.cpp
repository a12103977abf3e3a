#include "dataplane/worker.hpp"

#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_prefetch.h>

#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstring>

#include "common/identity.hpp"
#include "common/sdp.hpp"

namespace tapwire::dataplane {

using shm::HitDirection;
using shm::HitKind;
using shm::WorkerCounter;

namespace {

std::uint64_t realtime_ns() noexcept {
    timespec ts{};
    ::clock_gettime(CLOCK_REALTIME, &ts);
    return std::uint64_t(ts.tv_sec) * 1'000'000'000ull + std::uint64_t(ts.tv_nsec);
}

}  // namespace

Clock::Clock(std::uint64_t tsc_hz) {
    tsc_at_start_ = last_tsc_ = rte_rdtsc();
    ns_at_start_ = last_real_ns_ = realtime_ns();
    publish(tsc_at_start_, ns_at_start_,
            std::max<std::uint64_t>(tsc_hz ? tsc_hz : rte_get_tsc_hz(), 1));
}

void Clock::publish(std::uint64_t tsc, std::uint64_t ns, std::uint64_t hz) noexcept {
    const std::uint64_t s = seq_.load(std::memory_order_relaxed);
    seq_.store(s + 1, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_release);
    tsc_.store(tsc, std::memory_order_relaxed);
    ns_.store(ns, std::memory_order_relaxed);
    hz_.store(hz, std::memory_order_relaxed);
    seq_.store(s + 2, std::memory_order_release);
}

std::uint64_t Clock::ns(std::uint64_t tsc) const noexcept {
    std::uint64_t base_tsc, base_ns, hz, s1;
    do {
        s1 = seq_.load(std::memory_order_acquire);
        base_tsc = tsc_.load(std::memory_order_relaxed);
        base_ns = ns_.load(std::memory_order_relaxed);
        hz = hz_.load(std::memory_order_relaxed);
        std::atomic_thread_fence(std::memory_order_acquire);
    } while ((s1 & 1) != 0 || seq_.load(std::memory_order_relaxed) != s1);
    // A TSC read on another core just before the anchor's may be a little behind it.
    if (tsc < base_tsc) return base_ns - (base_tsc - tsc) * 1'000'000'000ull / hz;
    const std::uint64_t d = tsc - base_tsc;
    return base_ns + d / hz * 1'000'000'000ull + d % hz * 1'000'000'000ull / hz;
}

void Clock::recalibrate(std::uint64_t min_interval_ns) noexcept {
    const std::uint64_t tsc = rte_rdtsc();
    const std::uint64_t real = realtime_ns();
    if (real < last_real_ns_ + min_interval_ns || tsc <= last_tsc_) {
        if (real < last_real_ns_) last_real_ns_ = real, last_tsc_ = tsc;  // the clock was set back
        return;
    }
    // The rate over the interval; a wild figure (the wall clock stepped) keeps the old one.
    const auto measured =
        static_cast<std::uint64_t>(static_cast<long double>(tsc - last_tsc_) * 1e9L /
                                   static_cast<long double>(real - last_real_ns_));
    std::uint64_t hz = hz_.load(std::memory_order_relaxed);
    if (measured > hz - hz / 100 && measured < hz + hz / 100) hz = measured;
    last_tsc_ = tsc;
    last_real_ns_ = real;
    publish(tsc, real, hz);
}

const Clock& default_clock() {
    static const Clock clock;
    return clock;
}

Worker::Worker(const WorkerSetup& setup)
    : setup_(setup),
      clock_(setup.clock ? *setup.clock : default_clock()),
      counters_(setup.counters),
      sip_ports_(setup.sip_ports),
      fragments_(setup.fragments),
      tcp_(setup.tcp) {}

namespace {

// Which identities of a SIP message name which party. A request is sent by the party in
// From (in-dialog requests from the callee carry the callee in From: RFC 3261 section
// 12.2.1.1), so From, the asserted/preferred identities and Contact are the sender's, and
// Request-URI, To, Diversion and History-Info the recipient's. A response is sent by the
// party in To.
enum Role : std::uint8_t { kSender = 1, kRecipient = 2 };

struct IdentityList {
    static constexpr std::size_t kMax = 48;
    std::array<NormalizedIdentity, kMax> ids;
    std::array<std::string_view, kMax> views;
    std::array<Role, kMax> roles;
    std::size_t size = 0;

    void add(std::string_view uri, Role role) noexcept {
        if (size == kMax || uri.empty()) return;
        if (normalize_identity(uri, ids[size]) != IdentityError::Ok) return;
        views[size] = ids[size].view();
        roles[size] = role;
        ++size;
    }
    template <class List>
    void add_all(const List& list, Role role) noexcept {
        for (const NameAddr& n : list)
            add(n.uri, role);
    }
};

void collect_identities(const SipMessage& msg, IdentityList& out) noexcept {
    Role from_role = msg.is_request ? kSender : kRecipient;
    Role to_role = msg.is_request ? kRecipient : kSender;
    if (msg.is_request) out.add(msg.request_uri, kRecipient);
    out.add(msg.from.uri, from_role);
    out.add(msg.to.uri, to_role);
    // Asserted identities and Contact describe whoever sent the message.
    out.add_all(msg.p_asserted_identity, kSender);
    out.add_all(msg.p_preferred_identity, kSender);
    out.add_all(msg.remote_party_id, kSender);
    out.add_all(msg.contact, kSender);
    // Forwarding history names earlier recipients of the call (RFC 5806, RFC 7044).
    out.add_all(msg.diversion, kRecipient);
    out.add_all(msg.history_info, kRecipient);
}

// Final responses to an INVITE that end the call attempt. Not 401/407 (the caller retries
// with credentials in the same dialog), 422 (retried with a larger Session-Expires) or 491
// (glare on a re-INVITE: the call goes on).
bool ends_invite(std::uint16_t status) noexcept {
    return status >= 300 && status != 401 && status != 407 && status != 422 && status != 491;
}

// Dialog-creating requests keep the dialog open; any other transaction (REGISTER,
// MESSAGE, OPTIONS, ...) is ended at once so that it lingers just long enough to intercept
// its responses and retransmissions (RFC 3261 timer F, 32 s by default).
bool creates_dialog(SipMethod m) noexcept {
    return m == SipMethod::Invite || m == SipMethod::Subscribe || m == SipMethod::Refer ||
           m == SipMethod::Notify;
}

TargetSide side_of(Party p) noexcept {
    return p == Party::Caller ? TargetSide::Caller : TargetSide::Callee;
}

bool side_has(TargetSide side, Party p) noexcept {
    return (static_cast<std::uint8_t>(side) & static_cast<std::uint8_t>(side_of(p))) != 0;
}

Party other(Party p) noexcept {
    return p == Party::Caller ? Party::Callee : Party::Caller;
}

HitDirection direction_for_sender(TargetSide side, Party sender) noexcept {
    if (side_has(side, sender)) return HitDirection::FromTarget;
    if (side_has(side, other(sender))) return HitDirection::ToTarget;
    return HitDirection::Unknown;
}

// Which party sent a message of a known dialog: the caller's From tag is recorded when the
// dialog is created; a request carrying it comes from the caller, a response carrying it
// (in From, as responses copy From) goes to the caller and so comes from the callee.
Party sender_of(const SipMessage& msg, const DialogEntry* dialog, std::uint64_t from_tag) noexcept {
    bool from_caller =
        dialog == nullptr || dialog->caller_tag == 0 || dialog->caller_tag == from_tag;
    if (msg.is_request) return from_caller ? Party::Caller : Party::Callee;
    return from_caller ? Party::Callee : Party::Caller;
}

std::uint64_t tag_hash(std::string_view tag) noexcept {
    // FNV-1a: the tag only tells the two parties of one dialog apart.
    std::uint64_t h = 1469598103934665603ull;
    for (unsigned char c : tag)
        h = (h ^ c) * 1099511628211ull;
    return h | 1;  // never 0, which means "unknown"
}

}  // namespace

void Worker::stage_hit(ByteSpan bytes, std::uint32_t original_length, std::uint16_t payload_offset,
                       std::uint16_t payload_length, const Addressing& a, HitKind kind,
                       HitDirection direction, std::uint8_t flags, std::uint64_t correlation_id,
                       std::span<const WarrantId> warrants, std::uint64_t now) noexcept {
    if (staged_count_ == kMaxStaged) flush_hits();
    rte_mbuf* copy = rte_pktmbuf_alloc(setup_.hit_pool);
    if (copy == nullptr) {
        count(WorkerCounter::drop_pool_empty);
        return;
    }
    // Copy up to the snap length, chaining further mbufs when one does not hold it all (a
    // reassembled INVITE can be several kilobytes; a copy is never cut for lack of room).
    std::size_t length = std::min<std::size_t>(bytes.size(), setup_.snap_length);
    std::size_t done = 0;
    for (rte_mbuf* seg = copy; done < length;) {
        std::size_t n = std::min<std::size_t>(length - done, rte_pktmbuf_tailroom(seg));
        std::memcpy(rte_pktmbuf_mtod_offset(seg, char*, seg->data_len), bytes.data() + done, n);
        seg->data_len = static_cast<std::uint16_t>(seg->data_len + n);
        copy->pkt_len += static_cast<std::uint32_t>(n);
        done += n;
        if (done == length) break;
        rte_mbuf* next = rte_pktmbuf_alloc(setup_.hit_pool);
        if (next == nullptr || rte_pktmbuf_chain(copy, next) != 0) {
            if (next) rte_pktmbuf_free(next);
            rte_pktmbuf_free(copy);
            count(WorkerCounter::drop_pool_empty);
            return;
        }
        seg = next;
    }
    if (length < original_length) flags |= shm::kHitTruncated;

    auto* meta = static_cast<shm::HitMeta*>(rte_mbuf_to_priv(copy));
    meta->timestamp_ns = now;
    meta->correlation_id = correlation_id;
    meta->original_length = original_length;
    meta->worker = static_cast<std::uint16_t>(setup_.index);
    meta->port = a.port;
    meta->kind = kind;
    meta->direction = direction;
    meta->flags = flags;
    meta->payload_offset = payload_offset;
    meta->payload_length = payload_length;
    std::memcpy(meta->src_ip, a.src.bytes.data(), 16);
    std::memcpy(meta->dst_ip, a.dst.bytes.data(), 16);
    meta->src_port = a.src_port;
    meta->dst_port = a.dst_port;
    meta->ip_family = static_cast<std::uint8_t>(a.src.family);
    meta->l4_proto = a.l4_proto;
    std::size_t n = std::min<std::size_t>(warrants.size(), shm::kMaxWarrantsPerHit);
    if (n < warrants.size()) count(WorkerCounter::drop_warrant_overflow, warrants.size() - n);
    meta->warrant_count = static_cast<std::uint8_t>(n);
    std::memcpy(meta->warrant_ids, warrants.data(), n * sizeof(WarrantId));

    staged_[staged_count_++] = copy;
    switch (kind) {
        case HitKind::Sip:
            count(WorkerCounter::hits_sip);
            break;
        case HitKind::Rtp:
            count(WorkerCounter::hits_rtp);
            break;
        case HitKind::Rtcp:
            count(WorkerCounter::hits_rtcp);
            break;
        case HitKind::Ip:
            count(WorkerCounter::hits_ip);
            break;
    }
}

void Worker::flush_hits() noexcept {
    if (staged_count_ == 0) return;
    unsigned sent = rte_ring_sp_enqueue_burst(
        setup_.hit_ring, reinterpret_cast<void**>(staged_.data()), staged_count_, nullptr);
    if (sent < staged_count_) {
        // The consumer is slow or absent: drop the copies, never wait.
        count(WorkerCounter::drop_ring_full, staged_count_ - sent);
        rte_pktmbuf_free_bulk(staged_.data() + sent, staged_count_ - sent);
    }
    staged_count_ = 0;
}

void Worker::on_sip(std::string_view text, const Addressing& a, rte_mbuf* packet, ByteSpan frame,
                    std::uint16_t payload_offset, std::uint64_t now) noexcept {
    if (is_sip_keepalive(text)) {
        count(WorkerCounter::sip_keepalives);
        return;
    }
    SipMessage msg;
    if (parse_sip(text, msg) != SipError::Ok) {
        count(WorkerCounter::sip_invalid);
        return;
    }
    count(WorkerCounter::sip_messages);

    FlowTables& tables = *setup_.tables;
    const DialogKey key = tables.dialog_key(msg.call_id);
    const DialogEntry* dialog = tables.find_dialog(key);
    const std::uint64_t from_tag = tag_hash(msg.from.tag);

    // Every message of an unknown dialog is matched, and so is every message of a dialog
    // already under intercept: a warrant activated mid-call (another agency, the same
    // target) joins the call at its next message instead of at its next call. Intercepted
    // calls are a small share of the traffic, so this costs little.
    MatchResult match;
    match.clear();
    bool hit = false;
    IdentityList ids;
    if (targets_ != nullptr) {
        collect_identities(msg, ids);
        hit = targets_->match_identities({ids.views.data(), ids.size}, setup_.index, match);
        if (match.overflow_count) count(WorkerCounter::drop_warrant_overflow, match.overflow_count);
        if (match.scan_error || match.identities_skipped)
            count(WorkerCounter::match_incomplete);  // a target may have been missed: alarm-worthy
    }
    // A known dialog's warrants are brought up to date when the target set changed under
    // it: those of this match join, those no longer in the target set (ended) leave.
    WarrantSet current;
    bool changed = false;
    if (dialog != nullptr && targets_ != nullptr) {
        std::uint64_t overflow = 0;
        current.merge(match.warrant_ids(), overflow);
        for (WarrantId w : dialog->warrants.view()) {
            if (targets_->has_warrant(w))
                current.merge({&w, 1}, overflow);
            else
                changed = true;
        }
        changed = changed || current.count != dialog->warrants.count;
        if (changed && current.count == 0) {
            // Every warrant on this call ended: stop following it.
            tables.dialog_remove(key);
            return;
        }
    }

    if (dialog == nullptr || changed) {
        if (dialog == nullptr && !hit) return;  // not a known dialog, no identity matches
        count(WorkerCounter::target_matches);
        Party sender = msg.is_request ? Party::Caller : Party::Callee;
        TargetSide side = TargetSide::None;
        for (std::size_t i = 0; i < ids.size; ++i) {
            if (!(match.identity_mask >> i & 1)) continue;
            side = side | side_of(ids.roles[i] == kSender ? sender : other(sender));
        }
        const bool known = dialog != nullptr;
        DialogUpsert up =
            tables.dialog_create_or_update(key, known ? current.view() : match.warrant_ids(), side,
                                           msg.is_request ? from_tag : 0, now, known);
        if (up.entry == nullptr) {
            count(WorkerCounter::drop_dialog_table_full);
            // Still mirror this message: the warrant names it even if we cannot follow.
            stage_hit(packet ? frame : as_bytes(text), packet ? frame.size() : text.size(),
                      packet ? payload_offset : 0, static_cast<std::uint16_t>(text.size()), a,
                      HitKind::Sip, direction_for_sender(side, sender),
                      shm::kHitFirstOfCall | (packet ? 0 : shm::kHitReassembled), 0,
                      match.warrant_ids(), now);
            return;
        }
        dialog = up.entry;
        if (!known && !creates_dialog(msg.cseq_method)) tables.dialog_end(key, now);
    } else {
        tables.touch(*dialog, now);
    }

    // The dialog is under intercept: follow its state and media, and mirror the message.
    Party sender = sender_of(msg, dialog, from_tag);
    std::uint8_t flags = packet ? 0 : shm::kHitReassembled;
    bool ending =
        (msg.is_request && (msg.method == SipMethod::Bye || msg.method == SipMethod::Cancel)) ||
        (!msg.is_request && msg.cseq_method == SipMethod::Invite && ends_invite(msg.status_code));
    if (ending) {
        tables.dialog_end(key, now);
        flags |= shm::kHitCallEnding;
    }
    if (msg.has_sdp_body()) {
        SdpSession sdp;
        parse_sdp(msg.body, sdp);  // a partial SDP still yields the media parsed before the error
        MediaSpecList specs;
        collect_media(sdp, specs);
        if (!specs.empty()) {
            // A confirmed dialog's new offer describes the whole session (RFC 3264 section
            // 8): replace the sender's media. Before confirmation (forks, early media, the
            // answer) add to it.
            bool in_dialog = msg.is_request && !msg.to.tag.empty();
            MediaUpdate mu =
                in_dialog ? tables.media_move(key, sender, {specs.begin(), specs.size()}, now)
                          : tables.media_add(key, sender, {specs.begin(), specs.size()}, now);
            if (mu.failed) count(WorkerCounter::drop_media_table_full, mu.failed);
        }
    }
    stage_hit(packet ? frame : as_bytes(text),
              static_cast<std::uint32_t>(packet ? frame.size() : text.size()),
              packet ? payload_offset : 0, static_cast<std::uint16_t>(text.size()), a, HitKind::Sip,
              direction_for_sender(dialog->target_side, sender), flags, dialog->correlation_id,
              dialog->warrants.view(), now);
}

bool Worker::on_media(rte_mbuf*, ByteSpan frame, const PacketInfo& info, const Addressing& a,
                      std::uint64_t now) noexcept {
    count(WorkerCounter::rtp_rtcp_candidates);
    const FlowTables& tables = *setup_.tables;
    MediaKey keys[2] = {MediaKey::make(a.dst, a.dst_port, a.l4_proto),
                        MediaKey::make(a.src, a.src_port, a.l4_proto)};
    for (int i = 0; i < 2; ++i) {
        const MediaEntry* e = tables.find_media(keys[i]);
        if (e == nullptr) continue;
        tables.touch(*e, now);
        // keys[0] is where the packet goes: its receiver is e->party. keys[1] is where it
        // comes from: symmetric RTP, sent by the party that receives there.
        Party sender = i == 0 ? other(e->party) : e->party;
        ByteSpan payload = payload_of(frame, info);
        HitKind kind = HitKind::Rtp;
        if (e->kind == MediaKind::Rtcp ||
            // RFC 5761 section 4: on a muxed port RTCP packet types 200-204 sit in the PT byte.
            (e->kind == MediaKind::RtpRtcpMux && payload.size() > 1 && payload[1] >= 200 &&
             payload[1] <= 204))
            kind = HitKind::Rtcp;
        stage_hit(frame, static_cast<std::uint32_t>(frame.size()), info.payload_offset,
                  info.payload_length, a, kind, direction_for_sender(e->target_side, sender), 0,
                  e->correlation_id, e->warrants.view(), now);
        return true;
    }
    return false;
}

void Worker::on_ip_targets(ByteSpan frame, const PacketInfo& info, const Addressing& a,
                           std::uint64_t now) noexcept {
    MatchResult match;
    match.clear();
    bool from = targets_->match_address(a.src, match);
    bool to = targets_->match_address(a.dst, match);
    if (!from && !to) return;
    stage_hit(frame, static_cast<std::uint32_t>(frame.size()), info.payload_offset,
              info.payload_length, a, HitKind::Ip,
              from ? HitDirection::FromTarget : HitDirection::ToTarget, 0, 0, match.warrant_ids(),
              now);
}

void Worker::count_fragment_losses() noexcept {
    // Every datagram or fragment the reassembler gave up on, whatever the reason (its own
    // counters have the breakdown); counted as the difference since the last look.
    const FragmentCounters& c = fragments_.counters();
    std::uint64_t lost = c.overlaps + c.too_large + c.inconsistent + c.too_many_holes +
                         c.discarded + c.bad + c.timeouts + c.evictions;
    count(WorkerCounter::drop_fragment, lost - fragment_losses_seen_);
    fragment_losses_seen_ = lost;
}

void Worker::on_fragment(ByteSpan frame, const PacketInfo& info, const Addressing& a,
                         std::uint64_t now) noexcept {
    count(WorkerCounter::fragments);
    ReassembledDatagram datagram;
    FragmentResult r = fragments_.add(frame, info, now, datagram);
    count_fragment_losses();
    if (r != FragmentResult::Complete) return;
    UdpDatagram udp;
    if (datagram.proto != kIpProtoUdp || !parse_udp_datagram(datagram.data, udp)) {
        count(WorkerCounter::other_packets);
        return;
    }
    Addressing whole = a;
    whole.src_port = udp.src_port;
    whole.dst_port = udp.dst_port;
    whole.l4_proto = kIpProtoUdp;
    std::string_view text = as_text(udp.payload);
    if (is_sip_port(udp.src_port) || is_sip_port(udp.dst_port) || looks_like_sip(text))
        on_sip(text, whole, nullptr, {}, 0, now);
    else
        count(WorkerCounter::other_packets);
}

void Worker::inspect(rte_mbuf* m, std::uint64_t now) noexcept {
    count(WorkerCounter::rx_packets);
    count(WorkerCounter::rx_bytes, rte_pktmbuf_pkt_len(m));
    // Frames are parsed in the first segment; jumbo frames in chained mbufs are inspected
    // up to its end (the parsers never read past the span).
    ByteSpan frame(rte_pktmbuf_mtod(m, const std::uint8_t*), rte_pktmbuf_data_len(m));
    PacketInfo info;
    if (parse_frame(frame, info) != PacketError::Ok) {
        count(WorkerCounter::malformed);
        return;
    }
    if (info.ip_family == IpFamily::None) {
        count(WorkerCounter::non_ip);
        return;
    }
    Addressing a{info.src_ip, info.dst_ip, info.src_port, info.dst_port, info.ip_proto, m->port};
    if (targets_ != nullptr && (targets_->stats().ipv4_prefixes | targets_->stats().ipv6_prefixes))
        on_ip_targets(frame, info, a, now);

    if (info.is_fragment) {
        on_fragment(frame, info, a, now);
        return;
    }
    if (info.is_udp()) {
        ByteSpan payload = payload_of(frame, info);
        std::string_view text = as_text(payload);
        if (is_sip_port(info.src_port) || is_sip_port(info.dst_port) ||
            (payload.size() > 8 && looks_like_sip(text))) {
            on_sip(text, a, m, frame, info.payload_offset, now);
            return;
        }
        if (!on_media(m, frame, info, a, now)) count(WorkerCounter::other_packets);
        return;
    }
    if (info.is_tcp() && (is_sip_port(info.src_port) || is_sip_port(info.dst_port))) {
        count(WorkerCounter::tcp_sip_segments);
        const TcpStreamCounters& tc = tcp_.counters();
        std::uint64_t lost_before = tc.gaps + tc.overflows + tc.invalid_framing + tc.buffer_steals;
        tcp_.on_segment(frame, info, now, [&](const StreamMessage& message) noexcept {
            bool whole_segment = message.in_segment && message.text.size() == info.payload_length;
            auto offset = static_cast<std::uint16_t>(
                whole_segment
                    ? reinterpret_cast<const std::uint8_t*>(message.text.data()) - frame.data()
                    : 0);
            on_sip(message.text, a, whole_segment ? m : nullptr, frame, offset, now);
        });
        std::uint64_t lost = tc.gaps + tc.overflows + tc.invalid_framing + tc.buffer_steals;
        if (lost != lost_before) count(WorkerCounter::drop_tcp_stream, lost - lost_before);
        return;
    }
    if (info.is_tcp() && on_media(m, frame, info, a, now)) return;  // RTP over TCP (RFC 4571)
    count(WorkerCounter::other_packets);
}

void Worker::process(rte_mbuf* const* packets, std::uint16_t n, std::uint64_t now) noexcept {
    // One snapshot per burst: the publisher waits for this worker's next quiescent report
    // before it frees the snapshot held here.
    targets_ = setup_.targets->load();
    for (std::uint16_t i = 0; i < n; ++i) {
        if (i + 2 < n) rte_prefetch0(rte_pktmbuf_mtod(packets[i + 2], void*));
        inspect(packets[i], now);
    }
    flush_hits();
    targets_ = nullptr;
}

void Worker::run(const std::atomic<bool>& stop) noexcept {
    const unsigned thread = setup_.rcu_thread_id;
    setup_.qs->register_thread(thread);
    setup_.qs->online(thread);
    std::array<rte_mbuf*, 256> burst;
    const std::uint16_t burst_size = std::min<std::uint16_t>(setup_.burst, burst.size());
    std::uint64_t iterations = 0;
    while (!stop.load(std::memory_order_relaxed)) {
        for (const RxQueue& q : setup_.queues) {
            std::uint16_t n = rte_eth_rx_burst(q.port, q.queue, burst.data(), burst_size);
            if (n == 0) continue;
            // Monotonic per worker: a re-anchor may set the shared clock back a little.
            now_ns_ = std::max(now_ns_, clock_.ns(rte_rdtsc()));
            process(burst.data(), n, now_ns_);
            if (setup_.inline_mode) {
                // Forward unchanged; a peer that cannot take the packets costs them, never
                // the interception and never a wait.
                std::uint16_t sent = rte_eth_tx_burst(
                    q.tx_port, static_cast<std::uint16_t>(setup_.index), burst.data(), n);
                count(WorkerCounter::tx_packets, sent);
                if (sent < n) {
                    count(WorkerCounter::tx_drop, n - sent);
                    rte_pktmbuf_free_bulk(burst.data() + sent, n - sent);
                }
            } else {
                rte_pktmbuf_free_bulk(burst.data(), n);
            }
        }
        setup_.qs->quiescent(thread);
        if ((++iterations & 0x3ff) == 0) {
            const std::uint64_t now = std::max(now_ns_, clock_.ns(rte_rdtsc()));
            fragments_.expire(now);
            count_fragment_losses();
            tcp_.expire(now);
        }
    }
    flush_hits();
    setup_.qs->offline(thread);
    setup_.qs->unregister_thread(thread);
}

int worker_lcore_main(void* arg) {
    auto* launch = static_cast<WorkerLaunch*>(arg);
    launch->worker->run(*launch->stop);
    return 0;
}

}  // namespace tapwire::dataplane
