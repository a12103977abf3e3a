// The operator's side of the gRPC edge: Appliance (status, event feed) and Audit (the
// auditor's export of the audit trail). Callers are authenticated, authorised and audited
// like the Warrants calls (controlplane/call_audit.hpp).
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstddef>

#include "tapwire/v1/controlplane.grpc.pb.h"

namespace tapwire::controlplane {

// Declared in service.hpp, which includes this header (ControlPlaneServer holds these
// services by value).
struct ServiceContext;

/// Appliance.GetStatus and Appliance.WatchEvents, for operators and provisioners (the
/// orchestration follows warrants through the feed).
class ApplianceService final : public v1::Appliance::Service {
  public:
    /// How often an idle WatchEvents stream looks for a client cancellation.
    static constexpr std::chrono::milliseconds kWatchPoll{250};

    explicit ApplianceService(const ServiceContext& ctx) : ctx_(ctx) {}

    /// Warrant counts from the store, events_dropped from ctx.events, the rest from
    /// ctx.fill_appliance_status (without it: dataplane_attached false, "no dataplane link").
    /// Audited as status_query.
    grpc::Status GetStatus(grpc::ServerContext* call, const v1::GetStatusRequest* request,
                           v1::ApplianceStatus* response) override;

    /// Audited as event_subscribe when the subscription is in place, before the first event.
    /// The initial metadata is sent at that point too, so a client that waits for it (e.g.
    /// Python's call.initial_metadata()) receives every event emitted afterwards. The stream
    /// ends when the client cancels, a write fails, or ctx.events shuts down (UNAVAILABLE):
    /// shut the hub down before grpc::Server::Shutdown(), which waits for open streams.
    /// UNAVAILABLE at once without an event feed (ctx.events null).
    grpc::Status WatchEvents(grpc::ServerContext* call, const v1::WatchEventsRequest* request,
                             grpc::ServerWriter<v1::Event>* writer) override;

  private:
    const ServiceContext& ctx_;
};

/// Audit.Export, for auditors.
class AuditService final : public v1::Audit::Service {
  public:
    static constexpr std::size_t kChunkBytes = 64 * 1024;

    explicit AuditService(const ServiceContext& ctx) : ctx_(ctx) {}

    /// Streams ctx.audit's file from its start through the last durable record at the time
    /// of the call (AuditLog::head(): records appended meanwhile, and the bytes of a write
    /// in progress, are not included), in kChunkBytes chunks: a file that
    /// tapwire-audit-verify checks like the original. Then audits the export (audit_export,
    /// details: bytes, last_seq). DATA_LOSS when the head record is not in the file.
    grpc::Status Export(grpc::ServerContext* call, const v1::ExportAuditRequest* request,
                        grpc::ServerWriter<v1::AuditChunk>* writer) override;

  private:
    const ServiceContext& ctx_;
};

}  // namespace tapwire::controlplane
