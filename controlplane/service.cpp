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

#include "common/text.hpp"
#include "controlplane/call_audit.hpp"

namespace tapwire::controlplane {

namespace {

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

// Targets as "<type>:<value>" for the keyed digest (never logged themselves).
std::vector<std::string> target_strings(const v1::Warrant& w) {
    std::vector<std::string> out;
    out.reserve(std::size_t(w.targets_size()));
    for (const auto& t : w.targets())
        out.push_back(std::to_string(int(t.type())) + ":" + t.value());
    return out;
}

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

bool is_ended(v1::WarrantState s) noexcept {
    return s == v1::WARRANT_STATE_LAPSED || s == v1::WARRANT_STATE_DEACTIVATED ||
           s == v1::WARRANT_STATE_EMERGENCY_LAPSED;
}

grpc::Status failed_precondition(std::string message) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, std::move(message));
}

// A time for audit details and messages ("2026-03-01T12:00:00.123456Z").
std::string time_text(const google::protobuf::Timestamp& t) {
    return format_audit_time(to_ns(to_timestamp(t)) / 1000);
}

// What the audit record of an Activate or Modify says about the warrant (targets only as a
// count and a keyed digest).
void audit_warrant(CallAudit& audit, const v1::Warrant& w, const std::string& digest_key) {
    audit.detail("liid", w.liid());
    audit.detail("targets", std::to_string(w.targets_size()));
    audit.detail("targets_hmac", targets_digest(target_strings(w), digest_key));
}

// The authority's signature: PERMISSION_DENIED and audited as signature_rejected when it
// does not verify.
std::optional<grpc::Status> check_signature(CallAudit& audit, const v1::Warrant& w,
                                            const AuthorityKeys& keys) {
    const SignatureCheck sig = verify_warrant_signature(w, keys);
    if (!sig.ok()) {
        audit.detail("signature", to_string(sig.result));
        audit.detail("key_id", w.key_id());
        return audit.finish(grpc::Status(grpc::StatusCode::PERMISSION_DENIED, sig.message),
                            AuditAction::SignatureRejected);
    }
    audit.detail("key_id", w.key_id());
    return std::nullopt;
}

void schedule_changed(const ServiceContext& ctx) {
    if (ctx.schedule_changed) ctx.schedule_changed();
}

// The durable change a call made, for CallAudit::finish to announce; none when `made` is
// false (a repeated call).
std::optional<UnauditedChanges::WarrantChange> change_if(bool made, const StoredWarrant& w,
                                                         v1::EventKind kind) {
    if (!made) return std::nullopt;
    return UnauditedChanges::WarrantChange{w, kind};
}

// When the warrant was first accepted. Rows stored before accepted_at was kept: the start of
// the emergency deadline (the later of acceptance and valid_from), else `now`.
Timestamp accepted_at_of(const v1::WarrantStatus& s, Timestamp now) {
    if (s.has_accepted_at()) return to_timestamp(s.accepted_at());
    if (s.has_emergency_deadline())
        return to_timestamp(s.emergency_deadline()) - kDefaultConfirmWithin;
    return now;
}

// The status of `w`, a new signed version of the stored warrant, at `now` (Modify): the next
// version, its state recomputed for the new window, the original acceptance time (a new
// version does not restart an emergency warrant's confirmation period) and any confirmation
// kept.
v1::WarrantStatus modified_status(const v1::WarrantStatus& stored, const v1::Warrant& w,
                                  Timestamp now) {
    v1::WarrantStatus s;
    *s.mutable_warrant() = w;
    s.set_version(stored.version() + 1);
    const Timestamp accepted_at = accepted_at_of(stored, now);
    *s.mutable_accepted_at() = to_proto(accepted_at);

    // A confirmed emergency warrant stays confirmed: by ConfirmEmergency (the status), or by
    // the signed confirmation_reference of the stored version when the new one omits it.
    if (!stored.emergency_confirmation_reference().empty()) {
        s.set_emergency_confirmation_reference(stored.emergency_confirmation_reference());
        if (stored.has_emergency_confirmed_at()) {
            *s.mutable_emergency_confirmed_at() = stored.emergency_confirmed_at();
        }
    } else if (w.legal().confirmation_reference().empty()) {
        s.set_emergency_confirmation_reference(stored.warrant().legal().confirmation_reference());
    }

    StateInputs inputs = state_inputs(w, accepted_at);
    if (!s.emergency_confirmation_reference().empty()) inputs.emergency_deadline.reset();
    if (inputs.emergency_deadline) {
        *s.mutable_emergency_deadline() = to_proto(*inputs.emergency_deadline);
    }
    s.set_state(state_at(inputs, now));
    if (s.state() == v1::WARRANT_STATE_ACTIVE) {
        // Still effective: since when it first became so; newly effective: from now.
        const bool was_active =
            stored.state() == v1::WARRANT_STATE_ACTIVE && stored.has_activated_at();
        *s.mutable_activated_at() = was_active ? stored.activated_at() : to_proto(now);
    } else if (is_ended(s.state())) {
        // The new window (or deadline) is already over: the warrant ends now, having been
        // effective under the previous version until this moment.
        if (stored.has_activated_at()) *s.mutable_activated_at() = stored.activated_at();
        *s.mutable_ended_at() = to_proto(now);
    }
    // PENDING (the window moved into the future): not effective until its new valid_from,
    // so no activated_at.
    return s;
}

// ConfirmEmergency's reference: legal free text like legal.reference (UTF-8, no control
// characters, at most kMaxLegalTextLength bytes), and not blank.
std::string check_court_order_reference(std::string_view ref) {
    if (ref.empty()) return "court_order_reference: missing";
    if (ref.size() > kMaxLegalTextLength) {
        return "court_order_reference: longer than " + std::to_string(kMaxLegalTextLength) +
               " bytes";
    }
    if (!is_utf8(ref)) return "court_order_reference: not valid UTF-8";
    for (std::size_t i = 0; i < ref.size(); ++i) {
        const auto c = std::uint8_t(ref[i]);
        if (c < 0x20 || c == 0x7F) {
            return "court_order_reference: control character at byte " + std::to_string(i);
        }
    }
    if (ref.find_first_not_of(' ') == std::string_view::npos) {
        return "court_order_reference: blank";
    }
    return {};
}

}  // namespace

const char* to_string(Role r) noexcept {
    static constexpr const char* kNames[] = {TAPWIRE_ROLES(TAPWIRE_X_TEXT)};
    return tapwire::name_of(r, kNames);
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
        const std::string t(trim(line));
        if (t.empty() || t[0] == '#') continue;
        const auto space = t.find_last_of(" \t");
        const std::string where = path + ":" + std::to_string(n) + ": ";
        if (space == std::string::npos) return where + "expected '<common name> <role>'";
        const std::string cn(trim(std::string_view(t).substr(0, space)));
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

std::mutex& warrant_transition_mutex() noexcept {
    static std::mutex m;
    return m;
}

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
    audit_warrant(audit, w, ctx_.targets_digest_key);
    if (auto refused = check_signature(audit, w, *ctx_.authority_keys)) return *refused;

    // The state at accept time; the Scheduler moves it on at the window's edges.
    const StateInputs inputs = state_inputs(w, now);
    v1::WarrantStatus status;
    *status.mutable_warrant() = w;
    status.set_state(state_at(inputs, now));
    status.set_version(1);
    *status.mutable_accepted_at() = to_proto(now);
    if (status.state() == v1::WARRANT_STATE_ACTIVE) *status.mutable_activated_at() = to_proto(now);
    if (inputs.emergency_deadline) {
        *status.mutable_emergency_deadline() = to_proto(*inputs.emergency_deadline);
    }

    auto put = ctx_.store->put_warrant(status, to_ns(now), 0);
    if (!put) return audit.finish(from_store(put.failure()));
    const bool repeated = put->repeated;
    if (!repeated) schedule_changed(ctx_);
    audit.detail("state", v1::WarrantState_Name(put->stored.status.state()));
    audit.detail("repeated", repeated ? "true" : "false");
    *response->mutable_status() = put->stored.status;
    return audit.finish(grpc::Status::OK,
                        change_if(!repeated, put->stored, v1::EVENT_WARRANT_ACCEPTED));
}

grpc::Status WarrantsService::Modify(grpc::ServerContext* call,
                                     const v1::ModifyWarrantRequest* request,
                                     v1::ModifyWarrantResponse* response) {
    CallAudit audit(ctx_, *call, AuditAction::WarrantModify, "Warrants.Modify");
    if (auto refused = audit.authorize({Role::Provisioner})) return *refused;

    const v1::Warrant& w = request->warrant();
    const Timestamp now = now_of(ctx_);
    // Unlike Activate, a window that has already ended is accepted: the authority may end a
    // running warrant by shortening it, which lapses it now.
    ValidationContext checks = validation_context(ctx_, now);
    checks.now.reset();
    const ValidationError v = validate_warrant(w, checks);
    audit.subject(xid_subject(w, v));
    if (!v.ok()) {
        return audit.finish(grpc::Status(grpc::StatusCode(grpc_status_code(v.code)), v.message));
    }
    audit_warrant(audit, w, ctx_.targets_digest_key);
    if (auto refused = check_signature(audit, w, *ctx_.authority_keys)) return *refused;

    std::optional<grpc::Status> refusal;
    PutOutcome outcome;
    v1::WarrantState previous = v1::WARRANT_STATE_UNSPECIFIED;
    {
        std::lock_guard lock(warrant_transition_mutex());
        auto found = ctx_.store->get_warrant(w.xid());
        if (found) previous = found->status.state();
        if (!found) {
            refusal = from_store(found.failure());
        } else if (found->status.warrant().SerializeAsString() == w.SerializeAsString()) {
            // This version is the stored one: a repeat (its state may have moved on since).
            outcome.stored = std::move(*found);
            outcome.repeated = true;
        } else if (is_ended(previous)) {
            refusal = failed_precondition("warrant " + w.xid() + " has ended (" +
                                          v1::WarrantState_Name(previous) +
                                          "): an ended warrant cannot be modified");
        } else if (found->status.warrant().liid() != w.liid()) {
            refusal = failed_precondition(
                "warrant.liid: differs from the stored warrant's; the LIID of a warrant never "
                "changes (deactivate it and activate a new warrant instead)");
        } else {
            auto put = ctx_.store->put_warrant(modified_status(found->status, w, now), to_ns(now),
                                               found->status.version());
            if (!put) {
                refusal = from_store(put.failure());
            } else {
                outcome = std::move(*put);
            }
        }
    }
    if (refusal) return audit.finish(*refusal);

    const v1::WarrantStatus& stored = outcome.stored.status;
    if (!outcome.repeated) schedule_changed(ctx_);
    audit.detail("version", std::to_string(stored.version()));
    audit.detail("previous_state", v1::WarrantState_Name(previous));
    audit.detail("state", v1::WarrantState_Name(stored.state()));
    if (stored.has_emergency_deadline()) {
        audit.detail("emergency_deadline", time_text(stored.emergency_deadline()));
    }
    audit.detail("repeated", outcome.repeated ? "true" : "false");
    *response->mutable_status() = stored;
    return audit.finish(grpc::Status::OK,
                        change_if(!outcome.repeated, outcome.stored, v1::EVENT_WARRANT_MODIFIED));
}

grpc::Status WarrantsService::ConfirmEmergency(grpc::ServerContext* call,
                                               const v1::ConfirmEmergencyRequest* request,
                                               v1::ConfirmEmergencyResponse* response) {
    CallAudit audit(ctx_, *call, AuditAction::WarrantConfirm, "Warrants.ConfirmEmergency");
    if (auto refused = audit.authorize({Role::Provisioner})) return *refused;
    if (auto bad = check_xid(request->xid()); !bad.empty()) return audit.finish(invalid(bad));
    audit.subject("xid:" + request->xid());
    const std::string& reference = request->court_order_reference();
    if (auto bad = check_court_order_reference(reference); !bad.empty()) {
        return audit.finish(invalid(bad));
    }
    audit.detail("court_order_reference", reference);

    const Timestamp now = now_of(ctx_);
    std::optional<grpc::Status> refusal;
    StoredWarrant confirmed;
    bool repeated = false;
    {
        std::lock_guard lock(warrant_transition_mutex());
        auto found = ctx_.store->get_warrant(request->xid());
        if (!found) {
            refusal = from_store(found.failure());
        } else {
            const v1::WarrantStatus& s = found->status;
            const std::string& xid = request->xid();
            const std::string& signed_reference = s.warrant().legal().confirmation_reference();
            audit.detail("liid", s.warrant().liid());
            if (s.warrant().legal().kind() != v1::WARRANT_KIND_EMERGENCY) {
                refusal = failed_precondition(
                    "warrant " + xid + " is not an emergency warrant (legal.kind " +
                    v1::WarrantKind_Name(s.warrant().legal().kind()) + "): nothing to confirm");
            } else if (s.emergency_confirmation_reference() == reference ||
                       signed_reference == reference) {
                confirmed = std::move(*found);  // already confirmed by this very order
                repeated = true;
            } else if (!s.emergency_confirmation_reference().empty() || !signed_reference.empty()) {
                refusal = failed_precondition("warrant " + xid +
                                              " is already confirmed by another court order "
                                              "reference");
            } else if (is_ended(s.state())) {
                refusal = failed_precondition("warrant " + xid + " has ended (" +
                                              v1::WarrantState_Name(s.state()) +
                                              "): it cannot be confirmed any more");
            } else if (!s.has_emergency_deadline()) {
                refusal = failed_precondition("warrant " + xid + " awaits no confirmation");
            } else if (now >= to_timestamp(s.emergency_deadline())) {
                // state_at: only a confirmation strictly before the deadline counts, whether
                // or not the Scheduler has lapsed the warrant yet.
                refusal = failed_precondition("warrant " + xid + ": its confirmation deadline " +
                                              time_text(s.emergency_deadline()) + " has passed");
            } else {
                audit.detail("emergency_deadline", time_text(s.emergency_deadline()));
                // Recorded in the status, not in the signed warrant: the authority's
                // signature must keep verifying. Same state (a compare-and-set on it), no
                // deadline any more.
                StateChange change;
                change.state = s.state();
                change.expected_state = s.state();
                change.clear_emergency_deadline = true;
                change.confirmation = StateChange::Confirmation{reference, to_ns(now)};
                auto updated = ctx_.store->update_state(xid, change, to_ns(now));
                if (!updated) {
                    refusal = from_store(updated.failure());
                } else {
                    confirmed = std::move(*updated);
                }
            }
        }
    }
    if (refusal) return audit.finish(*refusal);

    if (!repeated) schedule_changed(ctx_);
    audit.detail("state", v1::WarrantState_Name(confirmed.status.state()));
    audit.detail("repeated", repeated ? "true" : "false");
    *response->mutable_status() = confirmed.status;
    return audit.finish(grpc::Status::OK,
                        change_if(!repeated, confirmed, v1::EVENT_EMERGENCY_CONFIRMED));
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
    std::optional<grpc::Status> refusal;
    StoredWarrant ended;
    bool changed = false;
    {
        std::lock_guard lock(warrant_transition_mutex());
        auto found = ctx_.store->get_warrant(request->xid());
        if (!found) {
            refusal = from_store(found.failure());
        } else {
            // Deactivating a deactivated warrant again is a repeat that keeps the first end.
            changed = found->status.state() != v1::WARRANT_STATE_DEACTIVATED;
            StateChange change;
            change.state = v1::WARRANT_STATE_DEACTIVATED;
            change.ended_at_ns = to_ns(now);
            auto updated = ctx_.store->update_state(request->xid(), change, to_ns(now));
            if (!updated) {
                refusal = from_store(updated.failure());
            } else {
                ended = std::move(*updated);
            }
        }
    }
    if (refusal) return audit.finish(*refusal);
    if (changed) schedule_changed(ctx_);
    audit.detail("liid", ended.status.warrant().liid());
    audit.detail("repeated", changed ? "false" : "true");
    *response->mutable_status() = ended.status;
    return audit.finish(grpc::Status::OK, change_if(changed, ended, v1::EVENT_WARRANT_DEACTIVATED));
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
    if (ctx_.fill_warrant_runtime) ctx_.fill_warrant_runtime(got->internal_id, *response);
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
    for (const auto& sw : *listed) {
        v1::WarrantStatus* out = response->add_warrants();
        *out = sw.status;
        if (ctx_.fill_warrant_runtime) ctx_.fill_warrant_runtime(sw.internal_id, *out);
    }
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
    if (ctx_.destination_changed) ctx_.destination_changed(*created);
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
    // The spool holds records already encoded in the old format: a new format is a new
    // destination, or the LEMF would get two formats on one stream.
    if (auto current = ctx_.store->get_destination(d.id());
        current.ok() && current.value().format() != d.format()) {
        return audit.finish(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                                         "destination.format: cannot change; create a new "
                                         "destination for the new format"));
    }
    auto modified = ctx_.store->modify_destination(d, to_ns(now_of(ctx_)));
    if (!modified) return audit.finish(from_store(modified.failure()));
    *response->mutable_destination() = *modified;
    if (ctx_.destination_changed) ctx_.destination_changed(*modified);
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
    if (ctx_.destination_removed) ctx_.destination_removed(request->id());
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
    builder.RegisterService(&s->appliance_);
    builder.RegisterService(&s->audit_);
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
