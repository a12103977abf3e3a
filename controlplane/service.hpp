// The control plane's gRPC edge: the Warrants and Destinations services over the Store, with
// the caller authenticated from its verified client certificate, its role checked, every
// request validated and every call (queries and refusals included) audited.
//
// Order of work in a mutating call: authenticate -> role -> validate -> signature -> persist
// (Store, fsynced) -> audit (AuditLog, fsynced) -> reply. The reply therefore only leaves
// once both the state and its audit record are durable; a crash between the two leaves an
// unacknowledged but stored warrant, which the caller's retry (same XID) turns into an
// idempotent repeat that is audited then.
//
// Warrant state changes reach the dataplane and the event feed through
// ServiceContext::warrant_changed; the window scheduler (scheduler.hpp) moves warrants on at
// their window edges without any client call.
#pragma once

#include <grpcpp/grpcpp.h>

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "controlplane/appliance_service.hpp"
#include "controlplane/audit_log.hpp"
#include "controlplane/store.hpp"
#include "controlplane/unaudited_changes.hpp"
#include "controlplane/warrant.hpp"
#include "tapwire/v1/controlplane.grpc.pb.h"

namespace tapwire::controlplane {

#define TAPWIRE_ROLES(X)          \
    X(None, "none")               \
    X(Provisioner, "provisioner") \
    X(Auditor, "auditor")         \
    X(Operator, "operator")

/// What a client certificate may do (issue 4): provisioner: warrants and destinations;
/// auditor: read-only queries and the audit trail; operator: status and events only.
enum class Role : std::uint8_t { TAPWIRE_ROLES(TAPWIRE_X_ENUMERATOR) Count };

const char* to_string(Role r) noexcept;
/// "provisioner" -> Role::Provisioner; nullopt for anything else (None included).
std::optional<Role> role_from_string(std::string_view text) noexcept;

/// Client certificate common name -> role.
using RoleMap = std::map<std::string, Role, std::less<>>;

/// Parses a roles file: one "<common name> <role>" per line, the role being the last
/// whitespace-separated word (so a CN may contain spaces); '#' starts a comment line, blank
/// lines are ignored. Returns an empty string, or "<path>:<line>: <reason>".
std::string load_role_map(const std::string& path, RoleMap& out);

/// The name of a gRPC status code ("PERMISSION_DENIED"): the audit record's result.
const char* status_code_name(grpc::StatusCode code) noexcept;

class EventHub;

/// The services' shared collaborators. Pointers are not owned and must outlive the server.
struct ServiceContext {
    Store* store = nullptr;
    AuditLog* audit = nullptr;
    const AuthorityKeys* authority_keys = nullptr;
    RoleMap roles;
    /// Key of the targets digest in audit details (targets_digest()).
    std::string targets_digest_key;
    NumberingPlan plan{};
    /// Plaintext development mode: there is no certificate, every caller is
    /// kInsecureDevelopmentActor with the provisioner role.
    bool insecure_development = false;
    /// UTC now; defaults to the system clock (tests inject one).
    std::function<Timestamp()> clock;
    /// Told of every durable warrant state change, after it is stored and audited (see
    /// UnauditedChanges for a record that cannot be written at once), with
    /// the event kind it is (EVENT_WARRANT_ACCEPTED, _ACTIVATED, _MODIFIED, _DEACTIVATED,
    /// _LAPSED, _EMERGENCY_CONFIRMED, _EMERGENCY_LAPSED). main() wires it to the target
    /// publisher (dataplane) and the event feed. Empty: nobody listens (unit tests).
    std::function<void(const StoredWarrant&, v1::EventKind)> warrant_changed;
    /// Told of every stored destination change (created or modified) and removal; main()
    /// wires them to the handover pipeline. Empty: nobody listens.
    std::function<void(const v1::Destination&)> destination_changed;
    std::function<void(const std::string& id)> destination_removed;
    /// Called after every change that can move the next scheduled state change (Activate,
    /// Modify, ConfirmEmergency, Deactivate); main() wires it to Scheduler::wake(). Empty:
    /// no scheduler (it also re-checks on its own at least once a second).
    std::function<void()> schedule_changed;
    /// Fills the runtime part of an ApplianceStatus (dataplane figures) and of a
    /// WarrantStatus (hits, effective). Empty: no dataplane attached.
    std::function<void(v1::ApplianceStatus&)> fill_appliance_status;
    std::function<void(std::uint32_t internal_id, v1::WarrantStatus&)> fill_warrant_runtime;
    /// The event feed (Appliance.WatchEvents); may be null.
    EventHub* events = nullptr;
    /// Audit records not written yet, in order, with the changes they gate; never null.
    std::shared_ptr<UnauditedChanges> unaudited = std::make_shared<UnauditedChanges>();
};

inline constexpr const char* kInsecureDevelopmentActor = "CN=insecure-plaintext-development";

/// Who called: from the verified client certificate.
struct Caller {
    std::string actor;        // "CN=<common name>", for the audit trail
    std::string common_name;  // the key into the role map
    Role role = Role::None;
    bool authenticated = false;
};

/// The caller of a server call (peer x509 common name, mapped through ctx.roles).
Caller identify_caller(const grpc::ServerContext& call, const ServiceContext& ctx);

/// Serialises the read-decide-write steps of warrant state changes in this process: Modify
/// and ConfirmEmergency (read the row, then write a status derived from it), Deactivate, and
/// the Scheduler (re-reads a due warrant, then moves it on). The store's compare-and-set on
/// the state alone cannot stop, say, a Modify from overwriting a confirmation that landed
/// between its read and its write. Held for store calls only, never across audit or hooks.
std::mutex& warrant_transition_mutex() noexcept;

class WarrantsService final : public v1::Warrants::Service {
  public:
    explicit WarrantsService(const ServiceContext& ctx) : ctx_(ctx) {}

    grpc::Status Activate(grpc::ServerContext* call, const v1::ActivateWarrantRequest* request,
                          v1::ActivateWarrantResponse* response) override;
    grpc::Status Modify(grpc::ServerContext* call, const v1::ModifyWarrantRequest* request,
                        v1::ModifyWarrantResponse* response) override;
    grpc::Status Deactivate(grpc::ServerContext* call, const v1::DeactivateWarrantRequest* request,
                            v1::DeactivateWarrantResponse* response) override;
    grpc::Status ConfirmEmergency(grpc::ServerContext* call,
                                  const v1::ConfirmEmergencyRequest* request,
                                  v1::ConfirmEmergencyResponse* response) override;
    grpc::Status Get(grpc::ServerContext* call, const v1::GetWarrantRequest* request,
                     v1::WarrantStatus* response) override;
    grpc::Status List(grpc::ServerContext* call, const v1::ListWarrantsRequest* request,
                      v1::ListWarrantsResponse* response) override;

  private:
    const ServiceContext& ctx_;
};

class DestinationsService final : public v1::Destinations::Service {
  public:
    explicit DestinationsService(const ServiceContext& ctx) : ctx_(ctx) {}

    grpc::Status Create(grpc::ServerContext* call, const v1::CreateDestinationRequest* request,
                        v1::DestinationResponse* response) override;
    grpc::Status Modify(grpc::ServerContext* call, const v1::ModifyDestinationRequest* request,
                        v1::DestinationResponse* response) override;
    grpc::Status Remove(grpc::ServerContext* call, const v1::RemoveDestinationRequest* request,
                        v1::DestinationResponse* response) override;
    grpc::Status List(grpc::ServerContext* call, const v1::ListDestinationsRequest* request,
                      v1::ListDestinationsResponse* response) override;

  private:
    const ServiceContext& ctx_;
};

/// Validates a destination at the edge; the message names the field ("destination.port: ...").
/// Empty when valid.
std::string validate_destination(const v1::Destination& d);

/// Where and how the server listens.
struct ServerOptions {
    std::string listen;                                    // "127.0.0.1:7443"
    std::string tls_cert_pem, tls_key_pem, client_ca_pem;  // PEM text
    bool insecure_development = false;
};

/// A running server with its services; Shutdown() and Wait() through server().
class ControlPlaneServer {
  public:
    /// Builds and starts the server (mutual TLS unless options.insecure_development), with the
    /// standard health service and server reflection. nullptr with `error` on failure.
    static std::unique_ptr<ControlPlaneServer> start(const ServerOptions& options,
                                                     const ServiceContext& ctx, std::string& error);

    grpc::Server& server() { return *server_; }
    int port() const noexcept { return port_; }

  private:
    ControlPlaneServer(const ServiceContext& ctx)
        : warrants_(ctx), destinations_(ctx), appliance_(ctx), audit_(ctx) {}
    WarrantsService warrants_;
    DestinationsService destinations_;
    ApplianceService appliance_;
    AuditService audit_;
    std::unique_ptr<grpc::Server> server_;
    int port_ = 0;
};

}  // namespace tapwire::controlplane
