#include "controlplane/appliance_service.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <functional>
#include <string>
#include <string_view>

#include "controlplane/call_audit.hpp"
#include "controlplane/events.hpp"

namespace tapwire::controlplane {

namespace {

Timestamp now_of(const ServiceContext& ctx) {
    if (ctx.clock) return ctx.clock();
    return std::chrono::time_point_cast<Duration>(std::chrono::system_clock::now());
}

// A listing fails only when the database does (locked by another process, or broken).
grpc::Status from_store(const StoreFailure& f) {
    return grpc::Status(
        f.code == StoreError::Busy ? grpc::StatusCode::UNAVAILABLE : grpc::StatusCode::INTERNAL,
        f.message);
}

class Fd {
  public:
    explicit Fd(int fd) : fd_(fd) {}
    ~Fd() {
        if (fd_ >= 0) ::close(fd_);
    }
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    int get() const noexcept { return fd_; }

  private:
    int fd_;
};

}  // namespace

// ---------------------------------------------------------------------------------------
// Appliance

grpc::Status ApplianceService::GetStatus(grpc::ServerContext* call, const v1::GetStatusRequest*,
                                         v1::ApplianceStatus* response) {
    CallAudit audit(ctx_, *call, AuditAction::StatusQuery, "Appliance.GetStatus");
    if (auto refused = audit.authorize({Role::Operator, Role::Provisioner})) return *refused;

    // The dataplane's part first: the figures the control plane owns below are authoritative.
    response->set_dataplane_attached(false);
    response->set_dataplane_detail("no dataplane link");
    if (ctx_.fill_appliance_status) ctx_.fill_appliance_status(*response);
    *response->mutable_now() = to_proto(now_of(ctx_));
    auto listed = ctx_.store->list_warrants({v1::WARRANT_STATE_ACTIVE, v1::WARRANT_STATE_PENDING});
    if (!listed) {
        response->Clear();
        return audit.finish(from_store(listed.failure()));
    }
    std::uint32_t active = 0, pending = 0;
    for (const auto& w : *listed) {
        if (w.status.state() == v1::WARRANT_STATE_ACTIVE) ++active;
        if (w.status.state() == v1::WARRANT_STATE_PENDING) ++pending;
    }
    response->set_active_warrants(active);
    response->set_pending_warrants(pending);
    response->set_events_dropped(ctx_.events != nullptr ? ctx_.events->dropped() : 0);
    audit.detail("dataplane_attached", response->dataplane_attached() ? "true" : "false");
    return audit.finish(grpc::Status::OK);
}

grpc::Status ApplianceService::WatchEvents(grpc::ServerContext* call, const v1::WatchEventsRequest*,
                                           grpc::ServerWriter<v1::Event>* writer) {
    CallAudit audit(ctx_, *call, AuditAction::EventSubscribe, "Appliance.WatchEvents");
    if (auto refused = audit.authorize({Role::Operator, Role::Provisioner})) return *refused;
    if (ctx_.events == nullptr) {
        return audit.finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "no event feed"));
    }
    // Subscribed before the record is written: "from now on" starts before the caller can
    // learn that the stream is open.
    EventHub::Subscription subscription = ctx_.events->subscribe();
    if (subscription.closed()) {
        return audit.finish(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                         "event feed closed: the control plane is stopping"));
    }
    // Audited when it opens (a feed may stay open for days); no event leaves unaudited.
    if (grpc::Status opened = audit.finish(grpc::Status::OK); !opened.ok()) return opened;
    writer->SendInitialMetadata();

    v1::Event event;
    while (!call->IsCancelled()) {
        if (subscription.next(event, kWatchPoll)) {
            if (!writer->Write(event)) {
                return grpc::Status(grpc::StatusCode::CANCELLED, "client went away");
            }
        } else if (subscription.closed()) {
            return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                "event feed closed: the control plane is stopping");
        }
    }
    return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled by the client");
}

// ---------------------------------------------------------------------------------------
// Audit

grpc::Status AuditService::Export(grpc::ServerContext* call, const v1::ExportAuditRequest*,
                                  grpc::ServerWriter<v1::AuditChunk>* writer) {
    CallAudit audit(ctx_, *call, AuditAction::AuditExport, "Audit.Export");
    if (auto refused = audit.authorize({Role::Auditor})) return *refused;

    // The end is the last durable record now, found by its hash: the file may already hold
    // more (appends racing with this call), including the bytes of a write that fails and
    // is cut off again, which an export must not hand out as if it had been acknowledged.
    const AuditHead head = ctx_.audit->head();
    audit.detail("last_seq", std::to_string(head.seq));
    std::uint64_t sent = 0;
    auto finish = [&](grpc::Status status) {
        audit.detail("bytes", std::to_string(sent));
        return audit.finish(std::move(status));
    };
    if (head.seq == 0) return finish(grpc::Status::OK);

    Fd fd(::open(ctx_.audit->path().c_str(), O_RDONLY | O_CLOEXEC));
    if (fd.get() < 0) {
        return finish(
            grpc::Status(grpc::StatusCode::INTERNAL,
                         std::string("cannot open the audit trail: ") + std::strerror(errno)));
    }
    // The head record's line ends with this; the hash makes it unique in the file.
    const std::string marker = ",\"hash\":\"" + to_hex(head.hash) + "\"}\n";
    const std::boyer_moore_horspool_searcher search(marker.begin(), marker.end());

    std::string buffer(kChunkBytes, '\0');
    std::string window;  // the end of the previous chunk, then this chunk: finds a split marker
    for (;;) {
        if (call->IsCancelled()) {
            return finish(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled by the client"));
        }
        const ssize_t n = ::pread(fd.get(), buffer.data(), buffer.size(), off_t(sent));
        if (n < 0) {
            if (errno == EINTR) continue;
            return finish(
                grpc::Status(grpc::StatusCode::INTERNAL,
                             std::string("cannot read the audit trail: ") + std::strerror(errno)));
        }
        if (n == 0) {
            return finish(grpc::Status(grpc::StatusCode::DATA_LOSS,
                                       "the audit trail's last record (seq " +
                                           std::to_string(head.seq) + ") is not in its file"));
        }
        const std::size_t carried = window.size();
        window.append(buffer.data(), std::size_t(n));
        const auto hit = std::search(window.begin(), window.end(), search);
        std::size_t take = std::size_t(n);
        if (hit != window.end()) {
            // The carried part is shorter than the marker, so the match ends in this chunk.
            take = std::size_t(hit - window.begin()) + marker.size() - carried;
        }
        v1::AuditChunk chunk;
        chunk.set_data(buffer.data(), take);
        if (!writer->Write(chunk)) {
            return finish(grpc::Status(grpc::StatusCode::CANCELLED, "client went away"));
        }
        sent += take;
        if (hit != window.end()) return finish(grpc::Status::OK);
        window.erase(0, window.size() - std::min(window.size(), marker.size() - 1));
    }
}

}  // namespace tapwire::controlplane
