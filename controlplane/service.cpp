#include "controlplane/service.hpp"

#include <grpc/grpc_security_constants.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <fstream>
#include <initializer_list>
#include <utility>
#include <vector>

namespace tapwire::controlplane {

namespace {

using Details = std::vector<std::pair<std::string, std::string>>;

template <class E, std::size_t N>
const char* name_of(E e, const char* const (&names)[N]) noexcept {
    const auto i = static_cast<std::size_t>(e);
    return i < N ? names[i] : "unknown";
}

std::int64_t to_ns(Timestamp t) noexcept {
    return t.time_since_epoch().count();
}

// StoreError -> gRPC code, as store.hpp specifies.
grpc::Status from_store(const StoreFailure& f) {
    grpc::StatusCode code = grpc::StatusCode::INTERNAL;
    switch (f.code) {
        case StoreError::NotFound:
            code = grpc::StatusCode::NOT_FOUND;
            break;
        case StoreError::AlreadyExists:
            code = grpc::StatusCode::ALREADY_EXISTS;
            break;
        case StoreError::FailedPrecondition:
            code = grpc::StatusCode::FAILED_PRECONDITION;
            break;
        case StoreError::InvalidArgument:
            code = grpc::StatusCode::INVALID_ARGUMENT;
            break;
        case StoreError::Busy:
            code = grpc::StatusCode::UNAVAILABLE;
            break;
        case StoreError::DiskFull:
        case StoreError::Exhausted:
            code = grpc::StatusCode::RESOURCE_EXHAUSTED;
            break;
        default:
            break;
    }
    return grpc::Status(code, f.message);
}

std::string trim(std::string_view s) {
    const auto b = s.find_first_not_of(" \t\r");
    if (b == std::string_view::npos) return {};
    const auto e = s.find_last_not_of(" \t\r");
    return std::string(s.substr(b, e - b + 1));
}

// Targets as "<type>:<value>" for the keyed digest (never logged themselves).
std::vector<std::string> target_strings(const v1::Warrant& w) {
    std::vector<std::string> out;
    out.reserve(std::size_t(w.targets_size()));
    for (const auto& t : w.targets())
        out.push_back(std::to_string(int(t.type())) + ":" + t.value());
    return out;
}

// One call's bookkeeping: who, what, and the audit record written when it ends.
class CallAudit {
  public:
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

    // Writes the audit record, then returns what the caller gets. A successful call whose
    // record cannot be written is answered UNAVAILABLE: nothing is acknowledged unaudited.
    grpc::Status finish(grpc::Status status, AuditAction action) {
        action_ = action;
        return finish(std::move(status));
    }
    grpc::Status finish(grpc::Status status) {
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
        if (ctx_.audit == nullptr) return status;
        auto appended = ctx_.audit->append(e);
        if (!appended) {
            std::fprintf(stderr, "tapwire-controlplane: audit append failed (%s): %s\n",
                         to_string(appended.status.error), appended.status.message.c_str());
            if (status.ok()) {
                return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                    "audit trail unavailable: " + appended.status.message);
            }
        }
        return status;
    }

  private:
    const ServiceContext& ctx_;
    Caller caller_;
    AuditAction action_;
    const char* method_;
    std::string subject_;
    Details details_;
};

Timestamp now_of(const ServiceContext& ctx) {
    if (ctx.clock) return ctx.clock();
    return std::chrono::time_point_cast<Duration>(std::chrono::system_clock::now());
}

ValidationContext validation_context(const ServiceContext& ctx, Timestamp now) {
    ValidationContext v;
    v.plan = ctx.plan;
    v.now = now;
    Store* store = ctx.store;
    v.destination_exists = [store](std::string_view id) { return store->get_destination(id).ok(); };
    return v;
}

bool printable_id(std::string_view s) {
    return std::all_of(s.begin(), s.end(), [](char c) { return c > 0x20 && c < 0x7F; });
}

grpc::Status invalid(std::string message) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, std::move(message));
}

// Subject of a warrant record: the XID when it is well formed (a malformed one could be
// anything the caller typed, target values included).
std::string xid_subject(const v1::Warrant& w, const ValidationError& v) {
    if (!v.ok() && v.field == "xid") return {};
    return "xid:" + w.xid();
}

// Checks an XID argument of Deactivate/Get with the same rule as validate_warrant.
std::string check_xid(std::string_view xid) {
    v1::Warrant probe;
    probe.set_xid(std::string(xid));
    const ValidationError v = validate_warrant(probe, ValidationContext{});
    if (!v.ok() && v.field == "xid") return v.message;
    return {};
}

}  // namespace

const char* to_string(Role r) noexcept {
    static constexpr const char* kNames[] = {TAPWIRE_ROLES(TAPWIRE_X_TEXT)};
    return name_of(r, kNames);
}

std::optional<Role> role_from_string(std::string_view text) noexcept {
    if (text == "provisioner") return Role::Provisioner;
    if (text == "auditor") return Role::Auditor;
    if (text == "operator") return Role::Operator;
    return std::nullopt;
}

std::string load_role_map(const std::string& path, RoleMap& out) {
    std::ifstream in(path);
    if (!in) return path + ": cannot read";
    std::string line;
    int n = 0;
    while (std::getline(in, line)) {
        ++n;
        const std::string t = trim(line);
        if (t.empty() || t[0] == '#') continue;
        const auto space = t.find_last_of(" \t");
        const std::string where = path + ":" + std::to_string(n) + ": ";
        if (space == std::string::npos) return where + "expected '<common name> <role>'";
        const std::string cn = trim(std::string_view(t).substr(0, space));
        const auto role = role_from_string(std::string_view(t).substr(space + 1));
        if (!role) return where + "role must be provisioner, auditor or operator";
        if (cn.empty()) return where + "empty common name";
        if (!out.emplace(cn, *role).second) return where + "common name listed twice";
    }
    if (out.empty()) return path + ": no roles";
    return {};
}

const char* status_code_name(grpc::StatusCode code) noexcept {
    switch (code) {
        case grpc::StatusCode::OK:
            return "OK";
        case grpc::StatusCode::CANCELLED:
            return "CANCELLED";
        case grpc::StatusCode::UNKNOWN:
            return "UNKNOWN";
        case grpc::StatusCode::INVALID_ARGUMENT:
            return "INVALID_ARGUMENT";
        case grpc::StatusCode::DEADLINE_EXCEEDED:
            return "DEADLINE_EXCEEDED";
        case grpc::StatusCode::NOT_FOUND:
            return "NOT_FOUND";
        case grpc::StatusCode::ALREADY_EXISTS:
            return "ALREADY_EXISTS";
        case grpc::StatusCode::PERMISSION_DENIED:
            return "PERMISSION_DENIED";
        case grpc::StatusCode::RESOURCE_EXHAUSTED:
            return "RESOURCE_EXHAUSTED";
        case grpc::StatusCode::FAILED_PRECONDITION:
            return "FAILED_PRECONDITION";
        case grpc::StatusCode::ABORTED:
            return "ABORTED";
        case grpc::StatusCode::OUT_OF_RANGE:
            return "OUT_OF_RANGE";
        case grpc::StatusCode::UNIMPLEMENTED:
            return "UNIMPLEMENTED";
        case grpc::StatusCode::INTERNAL:
            return "INTERNAL";
        case grpc::StatusCode::UNAVAILABLE:
            return "UNAVAILABLE";
        case grpc::StatusCode::DATA_LOSS:
            return "DATA_LOSS";
        case grpc::StatusCode::UNAUTHENTICATED:
            return "UNAUTHENTICATED";
        default:
            return "UNKNOWN";
    }
}

Caller identify_caller(const grpc::ServerContext& call, const ServiceContext& ctx) {
    Caller c;
    if (ctx.insecure_development) {
        c.actor = kInsecureDevelopmentActor;
        c.common_name = "insecure-plaintext-development";
        c.role = Role::Provisioner;
        c.authenticated = true;
        return c;
    }
    const auto auth = call.auth_context();
    // The common name specifically: gRPC's "peer identity" is the SAN list when the
    // certificate has one, and the role file is keyed by CN.
    if (auth == nullptr || !auth->IsPeerAuthenticated()) {
        c.actor = "unauthenticated";
        return c;
    }
    const auto cns = auth->FindPropertyValues(GRPC_X509_CN_PROPERTY_NAME);
    if (cns.empty()) {
        c.actor = "certificate-without-cn";
        return c;
    }
    c.common_name.assign(cns.front().data(), cns.front().size());
    c.actor = "CN=" + c.common_name;
    c.authenticated = true;
    const auto it = ctx.roles.find(c.common_name);
    c.role = it == ctx.roles.end() ? Role::None : it->second;
    return c;
}

std::string validate_destination(const v1::Destination& d) {
    if (d.id().empty()) return "destination.id: missing";
    if (d.id().size() > kMaxDestinationIdLength) {
        return "destination.id: longer than " + std::to_string(kMaxDestinationIdLength) + " bytes";
    }
    if (!printable_id(d.id())) return "destination.id: only printable ASCII without space";
    if (d.address().empty()) return "destination.address: missing";
    if (d.address().size() > 253 || !printable_id(d.address())) {
        return "destination.address: not an IP address or host name";
    }
    if (d.port() == 0 || d.port() > 65535) return "destination.port: must be 1..65535";
    if (d.format() == v1::HANDOVER_FORMAT_UNSPECIFIED || !v1::HandoverFormat_IsValid(d.format())) {
        return "destination.format: must be a known handover format";
    }
    if (!d.tls().enabled() && (!d.tls().ca_pem().empty() || !d.tls().pinned_sha256().empty())) {
        return "destination.tls.enabled: CA or pin given but TLS is disabled";
    }
    const auto& pin = d.tls().pinned_sha256();
    if (!pin.empty() && (pin.size() != 64 || !std::all_of(pin.begin(), pin.end(), [](char c) {
                             return std::isxdigit(static_cast<unsigned char>(c)) != 0;
                         }))) {
        return "destination.tls.pinned_sha256: must be 64 hex digits";
    }
    return {};
}

// ---------------------------------------------------------------------------------------
// Warrants

grpc::Status WarrantsService::Activate(grpc::ServerContext* call,
                                       const v1::ActivateWarrantRequest* request,
                                       v1::ActivateWarrantResponse* response) {
    CallAudit audit(ctx_, *call, AuditAction::WarrantActivate, "Warrants.Activate");
    if (auto refused = audit.authorize({Role::Provisioner})) return *refused;

    const v1::Warrant& w = request->warrant();
    const Timestamp now = now_of(ctx_);
    const ValidationError v = validate_warrant(w, validation_context(ctx_, now));
    audit.subject(xid_subject(w, v));
    if (!v.ok()) {
        return audit.finish(grpc::Status(grpc::StatusCode(grpc_status_code(v.code)), v.message));
    }
    audit.detail("liid", w.liid());
    audit.detail("targets", std::to_string(w.targets_size()));
    audit.detail("targets_hmac", targets_digest(target_strings(w), ctx_.targets_digest_key));

    const SignatureCheck sig = verify_warrant_signature(w, *ctx_.authority_keys);
    if (!sig.ok()) {
        audit.detail("signature", to_string(sig.result));
        audit.detail("key_id", w.key_id());
        return audit.finish(grpc::Status(grpc::StatusCode::PERMISSION_DENIED, sig.message),
                            AuditAction::SignatureRejected);
    }
    audit.detail("key_id", w.key_id());

    // The state at accept time; the scheduler (not yet here) moves it on at window edges.
    const StateInputs inputs = state_inputs(w, now);
    v1::WarrantStatus status;
    *status.mutable_warrant() = w;
    status.set_state(state_at(inputs, now));
    status.set_version(1);
    if (status.state() == v1::WARRANT_STATE_ACTIVE) *status.mutable_activated_at() = to_proto(now);
    if (inputs.emergency_deadline) {
        *status.mutable_emergency_deadline() = to_proto(*inputs.emergency_deadline);
    }

    auto put = ctx_.store->put_warrant(status, to_ns(now), 0);
    if (!put) return audit.finish(from_store(put.failure()));
    audit.detail("state", v1::WarrantState_Name(put->stored.status.state()));
    audit.detail("repeated", put->repeated ? "true" : "false");
    *response->mutable_status() = put->stored.status;
    return audit.finish(grpc::Status::OK);
}

grpc::Status WarrantsService::Modify(grpc::ServerContext* call, const v1::ModifyWarrantRequest*,
                                     v1::ModifyWarrantResponse*) {
    CallAudit audit(ctx_, *call, AuditAction::WarrantModify, "Warrants.Modify");
    if (auto refused = audit.authorize({Role::Provisioner})) return *refused;
    return audit.finish(
        grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "Warrants.Modify is not implemented yet"));
}

grpc::Status WarrantsService::ConfirmEmergency(grpc::ServerContext* call,
                                               const v1::ConfirmEmergencyRequest*,
                                               v1::ConfirmEmergencyResponse*) {
    CallAudit audit(ctx_, *call, AuditAction::WarrantConfirm, "Warrants.ConfirmEmergency");
    if (auto refused = audit.authorize({Role::Provisioner})) return *refused;
    return audit.finish(grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                                     "Warrants.ConfirmEmergency is not implemented yet"));
}

grpc::Status WarrantsService::Deactivate(grpc::ServerContext* call,
                                         const v1::DeactivateWarrantRequest* request,
                                         v1::DeactivateWarrantResponse* response) {
    CallAudit audit(ctx_, *call, AuditAction::WarrantDeactivate, "Warrants.Deactivate");
    if (auto refused = audit.authorize({Role::Provisioner})) return *refused;
    if (auto bad = check_xid(request->xid()); !bad.empty()) return audit.finish(invalid(bad));
    audit.subject("xid:" + request->xid());
    if (request->reason().empty()) return audit.finish(invalid("reason: missing"));
    audit.detail("reason", request->reason());

    const Timestamp now = now_of(ctx_);
    StateChange change;
    change.state = v1::WARRANT_STATE_DEACTIVATED;
    change.ended_at_ns = to_ns(now);
    auto updated = ctx_.store->update_state(request->xid(), change, to_ns(now));
    if (!updated) return audit.finish(from_store(updated.failure()));
    audit.detail("liid", updated->status.warrant().liid());
    *response->mutable_status() = updated->status;
    return audit.finish(grpc::Status::OK);
}

grpc::Status WarrantsService::Get(grpc::ServerContext* call, const v1::GetWarrantRequest* request,
                                  v1::WarrantStatus* response) {
    CallAudit audit(ctx_, *call, AuditAction::WarrantGet, "Warrants.Get");
    if (auto refused = audit.authorize({Role::Provisioner, Role::Auditor})) return *refused;
    if (auto bad = check_xid(request->xid()); !bad.empty()) return audit.finish(invalid(bad));
    audit.subject("xid:" + request->xid());
    auto got = ctx_.store->get_warrant(request->xid());
    if (!got) return audit.finish(from_store(got.failure()));
    *response = got->status;
    return audit.finish(grpc::Status::OK);
}

grpc::Status WarrantsService::List(grpc::ServerContext* call,
                                   const v1::ListWarrantsRequest* request,
                                   v1::ListWarrantsResponse* response) {
    CallAudit audit(ctx_, *call, AuditAction::WarrantList, "Warrants.List");
    if (auto refused = audit.authorize({Role::Provisioner, Role::Auditor})) return *refused;
    std::vector<v1::WarrantState> states;
    std::string filter;
    for (int i = 0; i < request->states_size(); ++i) {
        const int s = request->states(i);
        if (!v1::WarrantState_IsValid(s) || s == v1::WARRANT_STATE_UNSPECIFIED) {
            return audit.finish(
                invalid("states[" + std::to_string(i) + "]: not a known warrant state"));
        }
        states.push_back(v1::WarrantState(s));
        filter += (filter.empty() ? "" : ",") + v1::WarrantState_Name(v1::WarrantState(s));
    }
    if (!filter.empty()) audit.detail("states", filter);
    auto listed = ctx_.store->list_warrants(states);
    if (!listed) return audit.finish(from_store(listed.failure()));
    for (const auto& sw : *listed)
        *response->add_warrants() = sw.status;
    audit.detail("count", std::to_string(listed->size()));
    return audit.finish(grpc::Status::OK);
}

// ---------------------------------------------------------------------------------------
// Destinations

grpc::Status DestinationsService::Create(grpc::ServerContext* call,
                                         const v1::CreateDestinationRequest* request,
                                         v1::DestinationResponse* response) {
    CallAudit audit(ctx_, *call, AuditAction::DestinationCreate, "Destinations.Create");
    if (auto refused = audit.authorize({Role::Provisioner})) return *refused;
    const auto& d = request->destination();
    if (auto bad = validate_destination(d); !bad.empty()) return audit.finish(invalid(bad));
    audit.subject("destination:" + d.id());
    auto created = ctx_.store->create_destination(d, to_ns(now_of(ctx_)));
    if (!created) return audit.finish(from_store(created.failure()));
    *response->mutable_destination() = *created;
    return audit.finish(grpc::Status::OK);
}

grpc::Status DestinationsService::Modify(grpc::ServerContext* call,
                                         const v1::ModifyDestinationRequest* request,
                                         v1::DestinationResponse* response) {
    CallAudit audit(ctx_, *call, AuditAction::DestinationModify, "Destinations.Modify");
    if (auto refused = audit.authorize({Role::Provisioner})) return *refused;
    const auto& d = request->destination();
    if (auto bad = validate_destination(d); !bad.empty()) return audit.finish(invalid(bad));
    audit.subject("destination:" + d.id());
    auto modified = ctx_.store->modify_destination(d, to_ns(now_of(ctx_)));
    if (!modified) return audit.finish(from_store(modified.failure()));
    *response->mutable_destination() = *modified;
    return audit.finish(grpc::Status::OK);
}

grpc::Status DestinationsService::Remove(grpc::ServerContext* call,
                                         const v1::RemoveDestinationRequest* request,
                                         v1::DestinationResponse* response) {
    CallAudit audit(ctx_, *call, AuditAction::DestinationRemove, "Destinations.Remove");
    if (auto refused = audit.authorize({Role::Provisioner})) return *refused;
    if (request->id().empty()) return audit.finish(invalid("id: missing"));
    if (!printable_id(request->id()) || request->id().size() > kMaxDestinationIdLength) {
        return audit.finish(invalid("id: not a destination id"));
    }
    audit.subject("destination:" + request->id());
    auto removed = ctx_.store->remove_destination(request->id());
    if (!removed) return audit.finish(from_store(removed.failure()));
    *response->mutable_destination() = *removed;
    return audit.finish(grpc::Status::OK);
}

grpc::Status DestinationsService::List(grpc::ServerContext* call,
                                       const v1::ListDestinationsRequest*,
                                       v1::ListDestinationsResponse* response) {
    CallAudit audit(ctx_, *call, AuditAction::DestinationList, "Destinations.List");
    if (auto refused = audit.authorize({Role::Provisioner, Role::Auditor})) return *refused;
    auto listed = ctx_.store->list_destinations();
    if (!listed) return audit.finish(from_store(listed.failure()));
    for (const auto& d : *listed)
        *response->add_destinations() = d;
    audit.detail("count", std::to_string(listed->size()));
    return audit.finish(grpc::Status::OK);
}

// ---------------------------------------------------------------------------------------
// Server

std::unique_ptr<ControlPlaneServer> ControlPlaneServer::start(const ServerOptions& options,
                                                              const ServiceContext& ctx,
                                                              std::string& error) {
    if (ctx.store == nullptr || ctx.audit == nullptr || ctx.authority_keys == nullptr) {
        error = "store, audit log and authority keys are required";
        return nullptr;
    }
    std::shared_ptr<grpc::ServerCredentials> creds;
    if (options.insecure_development) {
        creds = grpc::InsecureServerCredentials();
    } else {
        if (options.tls_cert_pem.empty() || options.tls_key_pem.empty() ||
            options.client_ca_pem.empty()) {
            error = "mutual TLS needs a server certificate, its key and the client CA";
            return nullptr;
        }
        grpc::SslServerCredentialsOptions ssl(
            GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
        ssl.pem_root_certs = options.client_ca_pem;
        ssl.pem_key_cert_pairs.push_back({options.tls_key_pem, options.tls_cert_pem});
        creds = grpc::SslServerCredentials(ssl);
    }

    // Process-wide switches, read by the next ServerBuilder.
    grpc::EnableDefaultHealthCheckService(true);
    grpc::reflection::InitProtoReflectionServerBuilderPlugin();

    std::unique_ptr<ControlPlaneServer> s(new ControlPlaneServer(ctx));
    grpc::ServerBuilder builder;
    builder.AddListeningPort(options.listen, creds, &s->port_);
    builder.RegisterService(&s->warrants_);
    builder.RegisterService(&s->destinations_);
    s->server_ = builder.BuildAndStart();
    if (!s->server_ || s->port_ == 0) {
        error = "cannot listen on " + options.listen +
                " (address in use, not an address, or bad TLS certificate or key)";
        return nullptr;
    }
    if (auto* health = s->server_->GetHealthCheckService()) {
        health->SetServingStatus(true);
    }
    return s;
}

}  // namespace tapwire::controlplane
