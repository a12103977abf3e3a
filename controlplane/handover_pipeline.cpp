#include "controlplane/handover_pipeline.hpp"
#include "common/clock.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "common/packet.hpp"
#include "common/sip.hpp"
#include "controlplane/events.hpp"
#include "handover/etsi_102232.hpp"
#include "handover/x2x3.hpp"

namespace tapwire::controlplane {
namespace {

using handover::IriType;

constexpr const char* kCounterNames[] = {TAPWIRE_HANDOVER_COUNTERS(TAPWIRE_X_NAME)};
constexpr const char* kCinCounter = "cin";
// Largest encoded record: a 64 KiB SIP message plus the format's headers.
constexpr std::size_t kMaxPdu = 128u << 10;

// A destination id as a directory name: ids are printable ASCII and may hold '/', so
// anything but [A-Za-z0-9._-] is written %XX (and "." / ".." cannot occur).
std::string directory_name(std::string_view id) {
    std::string out;
    for (unsigned char c : id) {
        if (std::isalnum(c) || c == '_' || c == '-' || (c == '.' && !out.empty())) {
            out += char(c);
        } else {
            char hex[4];
            std::snprintf(hex, sizeof hex, "%%%02X", c);
            out += hex;
        }
    }
    return out;
}

bool write_file_synced(const std::string& path, std::string_view content, std::string& error) {
    const std::string tmp = path + ".tmp";
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    bool ok = fd >= 0 && ::write(fd, content.data(), content.size()) == ssize_t(content.size()) &&
              ::fsync(fd) == 0;
    if (fd >= 0) ::close(fd);
    ok = ok && ::rename(tmp.c_str(), path.c_str()) == 0;
    if (!ok) error = path + ": " + std::strerror(errno);
    return ok;
}

handover::Direction direction_of(shm::HitDirection d) noexcept {
    switch (d) {
        case shm::HitDirection::FromTarget:
            return handover::Direction::FromTarget;
        case shm::HitDirection::ToTarget:
            return handover::Direction::ToTarget;
        case shm::HitDirection::Unknown:
            break;
    }
    return handover::Direction::Unknown;
}

handover::Endpoint endpoint(const std::uint8_t* address, std::uint8_t family, std::uint16_t port) {
    return {family == 6 ? IpAddress::v6(address) : IpAddress::v4(address), port};
}

}  // namespace

IriType classify_iri(std::string_view text, bool call_ending_flag, IriState& state) noexcept {
    SipMessage msg;
    const bool parsed = parse_sip(text, msg) == SipError::Ok;
    return classify_iri(parsed ? &msg : nullptr, call_ending_flag, state);
}

IriType classify_iri(const SipMessage* parsed_message, bool call_ending_flag,
                     IriState& state) noexcept {
    const SipMessage* m = parsed_message;
    // What a message that cannot be parsed (a truncated copy) is: the call's next record.
    const SipMethod method = m ? m->cseq_method : SipMethod::Invite;
    const bool message_transaction = method == SipMethod::Message;
    if (state.ended || (!is_call_method(method) && !message_transaction)) return IriType::Report;
    const bool final_response = m && !m->is_request && m->status_code >= 200;
    bool ends = false;
    if (message_transaction) {
        ends = final_response;
    } else if (m && !m->is_request) {
        // BYE or CANCEL completed, or the INVITE failed (the dataplane flags final failures).
        ends = (final_response && (method == SipMethod::Bye || method == SipMethod::Cancel)) ||
               (method == SipMethod::Invite && call_ending_flag);
    }
    if (!state.begun) {
        state.begun = true;
        state.ended = ends;  // a first message that also ends: BEGIN, nothing after it
        return IriType::Begin;
    }
    if (ends) {
        state.ended = true;
        return IriType::End;
    }
    return IriType::Continue;
}

// ---------------------------------------------------------------------------------------

struct HandoverPipeline::Channel {
    v1::Destination config;
    const handover::Encoder* encoder = nullptr;
    std::string directory;
    std::string error;  // why it is not open (set once, before it is shared)
    std::unique_ptr<handover::PreparedWarrant> keepalive_context;  // ETSI keep-alives
    std::atomic<std::uint64_t> keepalive_sequence{0};
    std::atomic<std::uint64_t> spooled{0};
    std::atomic<bool> up{false};
    bool touched = false;      // link thread: records since the last end_burst
    bool flush_alarm = false;  // flusher thread
    mutable std::mutex status_mutex;
    std::string last_delivery_error;
    // Declared before the delivery, which reads it and is destroyed first.
    std::unique_ptr<handover::Spool> spool;
    std::unique_ptr<handover::Delivery> delivery;
};

HandoverPipeline::CallStream& HandoverPipeline::Call::stream(std::uint32_t warrant) {
    for (CallStream& s : streams)
        if (s.warrant == warrant) return s;
    streams.push_back({});
    streams.back().warrant = warrant;
    return streams.back();
}

HandoverPipeline::HandoverPipeline(HandoverPipelineOptions options, Store& store, EventHub* events)
    : options_(std::move(options)), store_(store), events_(events) {
    encoders_[v1::HANDOVER_FORMAT_ETSI_102232] = handover::make_etsi_102232_encoder();
    encoders_[v1::HANDOVER_FORMAT_ETSI_X2X3] = handover::make_x2x3_encoder();
    encoders_[v1::HANDOVER_FORMAT_ATIS_CALEA] = handover::make_calea_encoder();
    pdu_.resize(kMaxPdu);
}

std::unique_ptr<HandoverPipeline> HandoverPipeline::open(HandoverPipelineOptions options,
                                                         Store& store, EventHub* events,
                                                         std::string& error) {
    if (options.spool.max_record_bytes < kMaxPdu) options.spool.max_record_bytes = kMaxPdu;
    if (::mkdir(options.spool_root.c_str(), 0700) != 0 && errno != EEXIST) {
        error = options.spool_root + ": cannot create (" + std::strerror(errno) + ")";
        return nullptr;
    }
    std::unique_ptr<HandoverPipeline> p(new HandoverPipeline(std::move(options), store, events));
    // A CIN block reserved by an earlier run may have been partly used: start after it.
    if (auto resumed = store.resume_counter(kCinCounter); !resumed) {
        error = "CIN counter: " + resumed.message();
        return nullptr;
    }
    auto destinations = store.list_destinations();
    if (!destinations) {
        error = "destinations: " + destinations.message();
        return nullptr;
    }
    for (const auto& d : *destinations)
        p->destination_changed(d);
    auto warrants = store.list_warrants();
    if (!warrants) {
        error = "warrants: " + warrants.message();
        return nullptr;
    }
    for (const auto& w : *warrants)
        p->warrant_changed(w);
    p->flusher_ = std::thread([raw = p.get()] { raw->flusher(); });
    return p;
}

HandoverPipeline::~HandoverPipeline() {
    stop();
}

void HandoverPipeline::stop() {
    {
        std::lock_guard lock(flusher_mutex_);
        if (stopping_) return;
        stopping_ = true;
    }
    flusher_wake_.notify_all();
    if (flusher_.joinable()) flusher_.join();
    std::map<std::string, std::shared_ptr<Channel>> channels;
    {
        std::lock_guard lock(mutex_);
        channels = channels_;
    }
    for (auto& [id, ch] : channels) {
        if (ch->delivery) ch->delivery->stop();
        if (ch->spool) ch->spool->flush();
    }
}

void HandoverPipeline::emit(v1::EventKind kind, std::string destination_id, std::string detail) {
    if (events_ == nullptr) return;
    v1::Event e;
    e.set_kind(kind);
    e.set_destination_id(std::move(destination_id));
    e.set_detail(std::move(detail));
    events_->emit(std::move(e));
}

// ---------------------------------------------------------------------------------------
// Destinations

std::shared_ptr<HandoverPipeline::Channel> HandoverPipeline::open_channel(
    const v1::Destination& d) {
    auto ch = std::make_shared<Channel>();
    ch->config = d;
    const auto format = std::size_t(d.format());
    ch->encoder = format < std::size(encoders_) ? encoders_[format].get() : nullptr;
    ch->directory = options_.spool_root + "/" + directory_name(d.id());
    if (ch->encoder == nullptr) {
        ch->error = "unknown handover format";
        return ch;
    }
    handover::SpoolOptions so = options_.spool;
    so.directory = ch->directory;
    auto opened = handover::Spool::open(so);
    if (!opened.spool) {
        ch->error =
            std::string("spool ") + handover::to_string(opened.status) + ": " + opened.message;
        return ch;
    }
    ch->spool = std::move(opened.spool);
    for (const auto& note : ch->spool->recovery().notes) {
        std::fprintf(stderr, "tapwire-controlplane: destination %s: spool: %s\n", d.id().c_str(),
                     note.c_str());
        emit(v1::EVENT_ALARM, d.id(), "spool repaired at open: " + note);
    }
    prepare_keepalive(*ch);
    return ch;
}

void HandoverPipeline::prepare_keepalive(Channel& ch) {
    if (ch.config.format() != v1::HANDOVER_FORMAT_ETSI_102232) return;
    // Keep-alives belong to no warrant: the destination id stands in as LIID, with the
    // appliance's operator and element ids.
    handover::WarrantContext c;
    c.liid = ch.config.id().substr(0, 25);
    c.operator_identifier = options_.operator_identifier;
    c.network_element_identifier = options_.network_element_identifier;
    c.microsecond_timestamps = ch.config.microsecond_timestamps();
    std::string err;
    ch.keepalive_context = ch.encoder->prepare(c, err);
}

std::unique_ptr<handover::Delivery> HandoverPipeline::make_delivery(Channel& ch) {
    const v1::Destination& d = ch.config;
    auto failed = [&ch](std::string why) {
        std::lock_guard lock(ch.status_mutex);
        ch.last_delivery_error = std::move(why);
        return nullptr;
    };
    handover::DeliveryOptions o = options_.delivery;
    o.host = d.address();
    o.port = std::uint16_t(d.port());
    if (d.tls().enabled()) {
        handover::DeliveryTls tls;
        tls.server_name = d.tls().server_name();
        tls.pin_sha256 = d.tls().pinned_sha256();
        if (!d.tls().ca_pem().empty()) {
            // The delivery client reads its CA from a file: kept next to the spool.
            tls.ca_file = ch.directory + "/lemf-ca.pem";
            std::string err;
            if (!write_file_synced(tls.ca_file, d.tls().ca_pem(), err))
                return failed("cannot store the LEMF CA: " + err);
        }
        o.tls = tls;
    }
    handover::KeepaliveSource keepalive;
    if (d.format() == v1::HANDOVER_FORMAT_ETSI_102232 && ch.keepalive_context) {
        keepalive = [&ch] {
            std::vector<std::uint8_t> out(512);
            const auto& etsi = static_cast<const handover::Etsi102232Encoder&>(*ch.encoder);
            out.resize(etsi.encode_keepalive(*ch.keepalive_context, ch.keepalive_sequence++,
                                             unix_time_ns(), out));
            return out;
        };
    } else if (d.format() == v1::HANDOVER_FORMAT_ETSI_X2X3) {
        keepalive = [&ch] {
            std::vector<std::uint8_t> out(64);
            out.resize(handover::X2X3Encoder::encode_keepalive(
                std::uint32_t(ch.keepalive_sequence++), out));
            return out;
        };
    }
    auto on_state = [this, &ch, id = d.id(), where = d.address() + ":" + std::to_string(d.port())](
                        bool up, const std::string& why) {
        ch.up.store(up);
        if (!up) {
            std::lock_guard lock(ch.status_mutex);
            ch.last_delivery_error = why;
        }
        emit(up ? v1::EVENT_DESTINATION_UP : v1::EVENT_DESTINATION_DOWN, id,
             up ? "connected to " + where : why);
    };
    std::string err;
    auto delivery = handover::Delivery::create(o, *ch.spool, keepalive, on_state, err);
    if (!delivery) return failed("delivery: " + err);
    delivery->start();
    return delivery;
}

void HandoverPipeline::prepare_locked(WarrantHandover& w) {
    w.targets.clear();
    for (const auto& id : w.destination_ids) {
        WarrantHandover::Target t;
        t.id = id;
        if (auto it = channels_.find(id); it != channels_.end()) t.channel = it->second;
        if (t.channel && t.channel->encoder) {
            handover::WarrantContext c = w.context;
            c.microsecond_timestamps = t.channel->config.microsecond_timestamps();
            t.prepared = t.channel->encoder->prepare(c, t.error);
            if (!t.prepared) {
                std::fprintf(stderr,
                             "tapwire-controlplane: warrant %s cannot be encoded for "
                             "destination %s: %s\n",
                             w.context.xid.c_str(), id.c_str(), t.error.c_str());
            }
        }
        w.targets.push_back(std::move(t));
    }
}

void HandoverPipeline::destination_changed(const v1::Destination& d) {
    std::shared_ptr<Channel> ch;
    {
        std::lock_guard lock(mutex_);
        if (auto it = channels_.find(d.id()); it != channels_.end()) ch = it->second;
    }
    if (ch && ch->spool && ch->config.format() == d.format()) {
        // Same spool, new address, TLS or timestamps: a new delivery that resends what the
        // old connection left unacknowledged.
        std::unique_ptr<handover::Delivery> old;
        {
            std::lock_guard lock(mutex_);
            old = std::move(ch->delivery);
            ch->config = d;
        }
        old.reset();  // stops its thread: the spool has no reader now
        ch->spool->rewind_to_acked();
        prepare_keepalive(*ch);
        auto fresh = make_delivery(*ch);
        std::lock_guard lock(mutex_);
        ch->delivery = std::move(fresh);
    } else {
        if (ch) destination_removed(d.id());
        auto opened = open_channel(d);
        if (opened->spool) opened->delivery = make_delivery(*opened);
        if (!opened->error.empty()) {
            std::fprintf(stderr, "tapwire-controlplane: destination %s: %s\n", d.id().c_str(),
                         opened->error.c_str());
            emit(v1::EVENT_ALARM, d.id(), "destination not open: " + opened->error);
        }
        std::lock_guard lock(mutex_);
        channels_[d.id()] = std::move(opened);
    }
    std::lock_guard lock(mutex_);
    for (auto& [wid, w] : warrants_)
        if (std::find(w.destination_ids.begin(), w.destination_ids.end(), d.id()) !=
            w.destination_ids.end())
            prepare_locked(w);
}

void HandoverPipeline::destination_removed(const std::string& id) {
    std::shared_ptr<Channel> ch;
    {
        std::lock_guard lock(mutex_);
        auto it = channels_.find(id);
        if (it == channels_.end()) return;
        ch = std::move(it->second);
        channels_.erase(it);
        for (auto& [wid, w] : warrants_)
            for (auto& t : w.targets)
                if (t.id == id) t.channel.reset(), t.prepared.reset();
    }
    if (ch->delivery) ch->delivery->stop();
    if (ch->spool) {
        ch->spool->flush();
        // The flusher may still hold the channel: whatever it does next is harmless.
        if (ch->spool->end_index() > ch->spool->acked())
            emit(v1::EVENT_ALARM, id,
                 "destination removed with " +
                     std::to_string(ch->spool->end_index() - ch->spool->acked()) +
                     " records not delivered; they stay in " + ch->directory);
    }
}

// ---------------------------------------------------------------------------------------
// Warrants

void HandoverPipeline::warrant_changed(const StoredWarrant& stored) {
    const auto state = stored.status.state();
    std::lock_guard lock(mutex_);
    if (state != v1::WARRANT_STATE_ACTIVE && state != v1::WARRANT_STATE_PENDING) {
        warrants_.erase(stored.internal_id);  // the link refuses its hits from now on
        return;
    }
    const v1::Warrant& wr = stored.status.warrant();
    WarrantHandover& w = warrants_[stored.internal_id];
    w.context = {};
    w.context.liid = wr.liid();
    w.context.xid = wr.xid();
    w.context.authorization_country_code = wr.legal().jurisdiction();
    w.context.delivery_country_code = options_.delivery_country_code.empty()
                                          ? wr.legal().jurisdiction()
                                          : options_.delivery_country_code;
    w.context.operator_identifier = options_.operator_identifier;
    w.context.network_element_identifier = options_.network_element_identifier;
    w.context.interception_point_id = options_.interception_point_id;
    w.destination_ids.assign(wr.destination_ids().begin(), wr.destination_ids().end());
    prepare_locked(w);
}

// ---------------------------------------------------------------------------------------
// Records

bool HandoverPipeline::next_cin(std::uint32_t& cin) {
    for (;;) {
        if (cin_next_ == cin_end_) {
            auto block = store_.reserve_block(kCinCounter, options_.cin_block);
            if (!block) {
                count(HandoverCounter::drop_cin_unavailable);
                return false;
            }
            cin_next_ = block->first;
            cin_end_ = block->end;
        }
        const auto value = std::uint32_t(cin_next_++);  // modulo 2^32: ETSI's CIN is 32-bit
        if (value != 0) {
            cin = value;
            count(HandoverCounter::calls);
            return true;
        }
    }
}

HandoverPipeline::Call* HandoverPipeline::open_call(std::unordered_map<std::uint64_t, Call>& table,
                                                    std::uint64_t key) {
    auto [it, inserted] = table.try_emplace(key);
    if (inserted && !next_cin(it->second.cin)) {
        table.erase(it);
        return nullptr;
    }
    return &it->second;
}

void HandoverPipeline::append(const std::shared_ptr<Channel>& channel, ByteSpan pdu, bool iri) {
    Channel& ch = *channel;
    const handover::SpoolAppend r = ch.spool->append(pdu);
    if (r.status == handover::SpoolStatus::Ok) {
        ch.spooled.fetch_add(1, std::memory_order_relaxed);
        count(iri ? HandoverCounter::iri_records : HandoverCounter::cc_records);
        if (!ch.touched) {
            ch.touched = true;
            touched_.push_back(channel);
        }
        return;
    }
    const bool full =
        r.status == handover::SpoolStatus::Full || r.status == handover::SpoolStatus::DiskFull;
    count(full ? HandoverCounter::drop_spool_full : HandoverCounter::drop_spool_error);
    if (r.first_refusal) {
        const std::string why = std::string("spool refuses records (") +
                                handover::to_string(r.status) + "): " +
                                (full ? "the LEMF is not taking them fast enough or the disk "
                                        "is full; refused records are counted as drop_spool_full"
                                      : ch.spool->last_error());
        std::fprintf(stderr, "tapwire-controlplane: destination %s: %s\n", ch.config.id().c_str(),
                     why.c_str());
        emit(v1::EVENT_ALARM, ch.config.id(), why);
    }
}

handover::CaleaCall HandoverPipeline::spool_record(WarrantHandover& w, const CallStream& s,
                                                   const handover::IriRecord* iri,
                                                   const handover::CcRecord* cc) {
    handover::CaleaCall calea_after = s.calea;
    for (auto& t : w.targets) {
        if (!t.channel || !t.channel->spool) {
            count(HandoverCounter::drop_destination_unavailable);
            continue;
        }
        if (!t.prepared) {
            count(HandoverCounter::drop_encode_failed);
            continue;
        }
        const handover::Encoder& enc = *t.channel->encoder;
        std::size_t n = 0;
        const v1::HandoverFormat format = t.channel->config.format();
        if (iri && iri->sip_message.empty() && format == v1::HANDOVER_FORMAT_ETSI_X2X3)
            continue;  // an END without a message: X2 has no IRI types (file comment)
        if (cc && format == v1::HANDOVER_FORMAT_ATIS_CALEA && !s.calea.media_open && !s.iri.ended) {
            // Content before any CDC message opened the call's CCC: open it first.
            handover::CaleaCall state = s.calea;
            const std::size_t m = static_cast<const handover::CaleaEncoder&>(enc).encode_cc_open(
                *t.prepared, cc->header, state, pdu_);
            if (m != 0) {
                append(t.channel, ByteSpan(pdu_.data(), m), true);
                calea_after = state;
            }
            n = enc.encode_cc(*t.prepared, *cc, pdu_);
        } else if (cc) {
            n = enc.encode_cc(*t.prepared, *cc, pdu_);
        } else if (format == v1::HANDOVER_FORMAT_ATIS_CALEA) {
            // Each CALEA destination starts from the call's state before this record.
            handover::CaleaCall state = s.calea;
            n = static_cast<const handover::CaleaEncoder&>(enc).encode_iri(*t.prepared, *iri, state,
                                                                           pdu_);
            if (n) calea_after = state;
        } else {
            n = enc.encode_iri(*t.prepared, *iri, pdu_);
        }
        if (n == 0) {
            count(HandoverCounter::drop_encode_failed);
            continue;
        }
        append(t.channel, ByteSpan(pdu_.data(), n), iri != nullptr);
    }
    return calea_after;
}

void HandoverPipeline::deliver(const shm::HitMeta& meta, ByteSpan data,
                               std::span<const std::uint32_t> warrants) {
    const bool sip = meta.kind == shm::HitKind::Sip;
    handover::IriRecord iri;
    handover::CcRecord cc;
    if (sip) {
        const std::size_t offset = meta.payload_offset;
        if (offset >= data.size() || meta.payload_length == 0) {
            count(HandoverCounter::drop_malformed_hit, warrants.size());
            return;
        }
        iri.sip_message =
            data.subspan(offset, std::min<std::size_t>(meta.payload_length, data.size() - offset));
        iri.source = endpoint(meta.src_ip, meta.ip_family, meta.src_port);
        iri.destination = endpoint(meta.dst_ip, meta.ip_family, meta.dst_port);
        iri.transport = meta.l4_proto;
        iri.direction = direction_of(meta.direction);
    } else {
        PacketInfo info;
        parse_frame(data, info);  // a truncated copy still has its IP header
        if (info.ip_family == IpFamily::None || info.l3_offset >= data.size()) {
            count(HandoverCounter::drop_malformed_hit, warrants.size());
            return;
        }
        std::size_t length = data.size() - info.l3_offset;
        if (info.l3_length != 0 && info.l3_length < length) length = info.l3_length;
        cc.ip_packet = data.subspan(info.l3_offset, length);
        cc.direction = direction_of(meta.direction);
        cc.rtcp = meta.kind == shm::HitKind::Rtcp;
    }

    // The call: by correlation id; an IP-target hit belongs to its warrant's IP session; a SIP
    // hit the dataplane could not follow (no correlation id) is a communication of its own.
    Call single;
    Call* call = nullptr;
    if (meta.correlation_id != 0) {
        call = open_call(calls_, meta.correlation_id);
        if (call == nullptr) return;
    } else if (sip) {
        if (!next_cin(single.cin)) return;
        call = &single;
    }
    const auto ts = std::int64_t(meta.timestamp_ns);

    // The SIP message, parsed once for every warrant's IRI type.
    SipMessage msg;
    const SipMessage* parsed = nullptr;
    if (sip) {
        const std::string_view text(reinterpret_cast<const char*>(iri.sip_message.data()),
                                    iri.sip_message.size());
        if (parse_sip(text, msg) == SipError::Ok) parsed = &msg;
        // A new INVITE outside any dialog (To without a tag) on a Call-ID whose call ended:
        // a new communication, e.g. the retry after a redirection (RFC 3261 8.1.3.4 keeps
        // the Call-ID). It gets a new CIN and begins again; its records must not be REPORTs
        // of the ended call.
        if (parsed && meta.correlation_id != 0 && call->ended && msg.is_request &&
            msg.method == SipMethod::Invite && msg.to.tag.empty()) {
            Call fresh;
            if (!next_cin(fresh.cin)) return;
            *call = std::move(fresh);
        }
        call->sip_transport = iri.transport;  // for an END by timeout (housekeeping)
        call->sip_source = iri.source;
        call->sip_destination = iri.destination;
    }

    std::lock_guard lock(mutex_);
    for (const std::uint32_t id : warrants) {
        auto wit = warrants_.find(id);
        if (wit == warrants_.end()) {
            count(HandoverCounter::drop_destination_unavailable);
            continue;
        }
        WarrantHandover& w = wit->second;
        Call* c = call;
        if (c == nullptr && (c = open_call(ip_sessions_, id)) == nullptr) continue;
        c->last_ns = ts;
        CallStream& s = c->stream(id);
        if (sip) {
            const bool fresh = !s.iri.begun;
            iri.type = classify_iri(parsed, meta.flags & shm::kHitCallEnding, s.iri);
            if (iri.type == IriType::End) c->ended = true;
            if (fresh) {
                // Which party the target is, for CALEA: a request from the target (or a
                // response to it) means the target placed the call.
                const bool response = parsed
                                          ? !parsed->is_request
                                          : iri.sip_message.size() > 4 &&
                                                std::memcmp(iri.sip_message.data(), "SIP/", 4) == 0;
                s.calea.target_is_caller = response
                                               ? meta.direction != shm::HitDirection::FromTarget
                                               : meta.direction != shm::HitDirection::ToTarget;
            }
            iri.header = {c->cin, s.iri_sequence++, ts};
        } else {
            cc.header = {c->cin, s.cc_sequence++, ts};
        }
        s.calea = spool_record(w, s, sip ? &iri : nullptr, sip ? nullptr : &cc);
    }
}

void HandoverPipeline::end_burst() {
    if (touched_.empty()) return;
    std::lock_guard lock(mutex_);
    for (const auto& ch : touched_) {
        ch->touched = false;
        if (ch->delivery) ch->delivery->notify();
    }
    touched_.clear();
}

void HandoverPipeline::call_alive(std::uint64_t correlation_id, std::int64_t timestamp_ns) {
    auto it = calls_.find(correlation_id);
    if (it != calls_.end() && timestamp_ns > it->second.last_ns) it->second.last_ns = timestamp_ns;
}

void HandoverPipeline::end_idle_call(Call& call, std::int64_t now,
                                     const WarrantInWindow& in_window) {
    // Asked before mutex_ is taken: in_window takes the caller's own lock.
    std::vector<CallStream*> open;
    for (CallStream& s : call.streams)
        if (s.iri.begun && !s.iri.ended && in_window(s.warrant, now)) open.push_back(&s);
    if (open.empty()) return;
    handover::IriRecord iri;
    iri.type = IriType::End;
    iri.source = call.sip_source;
    iri.destination = call.sip_destination;
    iri.transport = call.sip_transport;
    std::lock_guard lock(mutex_);
    for (CallStream* s : open) {
        auto wit = warrants_.find(s->warrant);
        if (wit == warrants_.end()) continue;
        s->iri.ended = true;
        iri.header = {call.cin, s->iri_sequence++, now};
        s->calea = spool_record(wit->second, *s, &iri, nullptr);
    }
    count(HandoverCounter::calls_timed_out);
}

void HandoverPipeline::housekeeping(std::int64_t now, const WarrantInWindow& in_window) {
    if (now - last_housekeeping_ns_ < 1'000'000'000) return;
    last_housekeeping_ns_ = now;
    const std::int64_t idle_ns = std::int64_t(options_.call_idle_timeout.count()) * 1'000'000'000;
    const std::int64_t linger_ns = std::int64_t(options_.ended_call_linger.count()) * 1'000'000'000;
    for (auto it = calls_.begin(); it != calls_.end();) {
        Call& c = it->second;
        if (now - c.last_ns <= (c.ended ? linger_ns : idle_ns)) {
            ++it;
            continue;
        }
        if (!c.ended) end_idle_call(c, now, in_window);
        it = calls_.erase(it);
    }
    std::erase_if(ip_sessions_,
                  [&](const auto& entry) { return now - entry.second.last_ns > idle_ns; });
    end_burst();
}

// ---------------------------------------------------------------------------------------
// Flushing

void HandoverPipeline::flusher() {
    std::unique_lock wait_lock(flusher_mutex_);
    while (!stopping_) {
        flusher_wake_.wait_for(wait_lock, options_.flush_interval);
        if (stopping_) break;
        wait_lock.unlock();
        std::vector<std::shared_ptr<Channel>> channels;
        {
            std::lock_guard lock(mutex_);
            for (const auto& [id, ch] : channels_)
                if (ch->spool) channels.push_back(ch);
        }
        for (const auto& ch : channels) {
            const handover::SpoolStatus st = ch->spool->flush();
            const bool failed = st != handover::SpoolStatus::Ok;
            if (failed && !ch->flush_alarm)
                emit(v1::EVENT_ALARM, ch->config.id(),
                     std::string("spool flush failed (") + handover::to_string(st) +
                         "): " + ch->spool->last_error());
            ch->flush_alarm = failed;
        }
        wait_lock.lock();
    }
}

// ---------------------------------------------------------------------------------------
// The call table across a clean restart

std::string HandoverPipeline::calls_path() const {
    return options_.spool_root + "/calls";
}

void HandoverPipeline::save_calls(std::uint64_t boot_id) {
    std::ostringstream out;
    out << "tapwire-calls 2 " << boot_id << "\n";
    auto endpoint_text = [](const handover::Endpoint& e) {
        return (e.address.empty() ? std::string("-") : e.address.to_string()) + ' ' +
               std::to_string(e.port);
    };
    auto write_call = [&](const char* kind, std::uint64_t key, const Call& c) {
        out << kind << ' ' << key << ' ' << c.cin << ' ' << c.last_ns << ' ' << c.ended << ' '
            << unsigned(c.sip_transport) << ' ' << endpoint_text(c.sip_source) << ' '
            << endpoint_text(c.sip_destination) << ' ' << c.streams.size() << '\n';
        for (const CallStream& s : c.streams)
            out << s.warrant << ' ' << s.iri_sequence << ' ' << s.cc_sequence << ' ' << s.iri.begun
                << ' ' << s.iri.ended << ' ' << s.calea.target_is_caller << ' ' << s.calea.begun
                << ' ' << s.calea.answered << ' ' << s.calea.media_open << ' ' << s.calea.caller_tag
                << '\n';
    };
    for (const auto& [key, c] : calls_)
        write_call("call", key, c);
    for (const auto& [key, c] : ip_sessions_)
        write_call("ip", key, c);
    std::string error;
    if (!write_file_synced(calls_path(), out.str(), error))
        std::fprintf(stderr, "tapwire-controlplane: call table not saved: %s\n", error.c_str());
}

void HandoverPipeline::restore_calls(std::uint64_t boot_id) {
    std::ifstream in(calls_path());
    if (!in) return;
    std::string magic;
    int version = 0;
    std::uint64_t saved_boot = 0;
    in >> magic >> version >> saved_boot;
    // Consumed either way: a table must never be resumed twice (after a later crash).
    ::unlink(calls_path().c_str());
    if (magic != "tapwire-calls" || (version != 1 && version != 2) || saved_boot != boot_id) return;
    auto read_endpoint = [&in](handover::Endpoint& e) {
        std::string address;
        in >> address >> e.port;
        if (address != "-") e.address = IpAddress::parse(address).value_or(IpAddress{});
    };
    std::unordered_map<std::uint64_t, Call> calls, ip;
    std::string kind;
    while (in >> kind) {
        std::uint64_t key = 0;
        std::size_t streams = 0;
        Call c;
        in >> key >> c.cin >> c.last_ns >> c.ended;
        if (version >= 2) {  // 1: before the last SIP addresses were kept
            unsigned transport = 0;
            in >> transport;
            c.sip_transport = std::uint8_t(transport);
            read_endpoint(c.sip_source);
            read_endpoint(c.sip_destination);
        }
        in >> streams;
        for (std::size_t i = 0; in && i < streams && i < shm::kMaxWarrantsPerHit * 64; ++i) {
            CallStream s;
            in >> s.warrant >> s.iri_sequence >> s.cc_sequence >> s.iri.begun >> s.iri.ended >>
                s.calea.target_is_caller >> s.calea.begun >> s.calea.answered >>
                s.calea.media_open >> s.calea.caller_tag;
            c.streams.push_back(s);
        }
        if (!in || (kind != "call" && kind != "ip")) {
            std::fprintf(stderr, "tapwire-controlplane: saved call table unreadable: ignored\n");
            return;
        }
        (kind == "call" ? calls : ip)[key] = std::move(c);
    }
    count(HandoverCounter::calls_resumed, calls.size());
    calls_ = std::move(calls);
    ip_sessions_ = std::move(ip);
}

// ---------------------------------------------------------------------------------------
// Status

std::map<std::string, std::uint64_t> HandoverPipeline::drop_totals() const {
    std::map<std::string, std::uint64_t> drops;
    for (std::size_t c = 0; c < std::size_t(HandoverCounter::Count); ++c)
        if (std::strncmp(kCounterNames[c], "drop_", 5) == 0)
            drops[kCounterNames[c]] = counters_[c].load(std::memory_order_relaxed);
    return drops;
}

void HandoverPipeline::fill_status(v1::ApplianceStatus& status) const {
    for (std::size_t c = 0; c < std::size_t(HandoverCounter::Count); ++c)
        (*status.mutable_handover())[kCounterNames[c]] =
            counters_[c].load(std::memory_order_relaxed);
    for (const auto& [name, v] : drop_totals())
        (*status.mutable_drops())[name] = v;
    std::vector<std::pair<std::shared_ptr<Channel>, handover::DeliveryStatus>> channels;
    {
        std::lock_guard lock(mutex_);  // a destination change replaces the delivery
        for (const auto& [id, ch] : channels_)
            channels.emplace_back(
                ch, ch->delivery ? ch->delivery->status() : handover::DeliveryStatus{});
    }
    for (const auto& [ch, delivery] : channels) {
        v1::DestinationStatus* d = status.add_destinations();
        d->set_id(ch->config.id());
        d->set_format(ch->config.format());
        d->set_up(ch->up.load());
        {
            std::lock_guard lock(ch->status_mutex);
            d->set_last_error(ch->error.empty() ? ch->last_delivery_error : ch->error);
        }
        d->set_records_spooled(ch->spooled.load());
        for (std::size_t k = 0; k < handover::kDeliveryCounterCount; ++k)
            (*d->mutable_counters())[std::string("delivery_") +
                                     handover::kDeliveryCounterNames[k]] =
                delivery.counters.value[k];
        if (!ch->spool) continue;
        const handover::Spool& sp = *ch->spool;
        d->set_records_acked(sp.acked());
        d->set_records_pending(sp.end_index() - sp.acked());
        d->set_spool_bytes(sp.bytes_used());
        d->set_spool_max_bytes(sp.options().max_total_bytes);
        const handover::SpoolCounters sc = sp.counters();
        for (std::size_t k = 0; k < handover::kSpoolCounterCount; ++k)
            (*d->mutable_counters())[std::string("spool_") + handover::kSpoolCounterNames[k]] =
                sc.value[k];
    }
}

}  // namespace tapwire::controlplane
