// CallAudit: one gRPC call's audit bookkeeping, shared by every service of the control
// plane (service.cpp, appliance_service.cpp): who called (from the verified client
// certificate), the role check, and the audit record written when the call ends. Header-only
// so that it needs no build registration of its own.
#pragma once

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <initializer_list>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "controlplane/audit_log.hpp"
#include "controlplane/service.hpp"

namespace tapwire::controlplane {

// One call's bookkeeping: who, what, and the audit record written when it ends.
class CallAudit {
  public:
    using Details = std::vector<std::pair<std::string, std::string>>;

    CallAudit(const ServiceContext& ctx, const grpc::ServerContext& call, AuditAction action,
              const char* method)
        : ctx_(ctx), caller_(identify_caller(call, ctx)), action_(action), method_(method) {}

    const Caller& caller() const { return caller_; }
    void subject(std::string s) { subject_ = std::move(s); }
    void detail(std::string key, std::string value) {
        details_.emplace_back(std::move(key), std::move(value));
    }

    // Refuses callers whose role is not among `allowed` (audited as permission_denied, or
    // authentication_failed when the certificate carries no usable identity).
    std::optional<grpc::Status> authorize(std::initializer_list<Role> allowed) {
        if (!caller_.authenticated) {
            action_ = AuditAction::AuthenticationFailed;
            return finish(grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                                       "no client certificate common name"));
        }
        if (std::find(allowed.begin(), allowed.end(), caller_.role) == allowed.end()) {
            action_ = AuditAction::PermissionDenied;
            return finish(grpc::Status(
                grpc::StatusCode::PERMISSION_DENIED,
                std::string("role '") + to_string(caller_.role) + "' may not call " + method_));
        }
        return std::nullopt;
    }

    // Writes the audit record, then returns what the caller gets. `change`: the durable
    // warrant change the call made, announced through ctx.warrant_changed once it may take
    // effect. A successful call whose record cannot be written is answered UNAVAILABLE:
    // nothing is acknowledged unaudited; the record is queued in ctx.unaudited and written as
    // soon as the log takes it (a read's is not: nothing was handed out).
    grpc::Status finish(grpc::Status status, AuditAction action) {
        action_ = action;
        return finish(std::move(status));
    }
    grpc::Status finish(grpc::Status status,
                        std::optional<UnauditedChanges::WarrantChange> change = std::nullopt) {
        AuditEntry e;
        e.actor = caller_.actor;
        e.role = to_string(caller_.role);
        e.action = action_;
        e.subject = subject_;
        e.result = status.ok() ? "ok" : status_code_name(status.error_code());
        e.message = status.error_message();
        e.details.emplace_back("method", method_);
        for (auto& d : details_)
            e.details.push_back(std::move(d));
        details_.clear();
        const bool read = status.ok() && is_read(action_);
        if (ctx_.unaudited->write(std::move(e), std::move(change), ctx_.audit, ctx_.warrant_changed,
                                  !read) ||
            !status.ok())
            return status;
        return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                            read ? "audit trail unavailable: nothing was read"
                                 : "audit trail unavailable: the change is stored; it takes "
                                   "effect once its audit record is written (an end of "
                                   "interception at once)");
    }

    // Calls that only read: unaudited, their answer is withheld rather than queued.
    static bool is_read(AuditAction a) noexcept {
        return a == AuditAction::WarrantGet || a == AuditAction::WarrantList ||
               a == AuditAction::DestinationList || a == AuditAction::StatusQuery ||
               a == AuditAction::EventSubscribe || a == AuditAction::AuditExport;
    }

  private:
    const ServiceContext& ctx_;
    Caller caller_;
    AuditAction action_;
    const char* method_;
    std::string subject_;
    Details details_;
};

}  // namespace tapwire::controlplane
