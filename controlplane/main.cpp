// tapwire-controlplane: the gRPC management server (Warrants, Destinations, Appliance, Audit,
// health, reflection) over the SQLite state and the audit trail, and the DPDK secondary that
// publishes targets to the dataplane and drains its hits (controlplane/dataplane_link.hpp).
// Mutual TLS is the only mode for production; plaintext exists behind
// --insecure-plaintext-development-only.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>

#include "common/files.hpp"
#include "controlplane/appliance_service.hpp"
#include "controlplane/dataplane_link.hpp"
#include "controlplane/events.hpp"
#include "controlplane/handover_pipeline.hpp"
#include "controlplane/scheduler.hpp"
#include "controlplane/service.hpp"

namespace {

namespace cp = tapwire::controlplane;
using tapwire::read_file;
namespace v1 = tapwire::v1;

constexpr const char* kUsage =
    "usage: tapwire-controlplane --listen ADDR:PORT --state-dir DIR --authority-keys DIR\n"
    "         --tls-cert PEM --tls-key PEM --client-ca PEM --roles FILE --audit-key PEM\n"
    "  --listen ADDR:PORT       management listener (port 0: pick one, printed on stdout)\n"
    "  --state-dir DIR          state.db (SQLite), audit.log, targets-digest.key\n"
    "  --authority-keys DIR     issuing authorities' Ed25519 public keys, <key_id>.pem\n"
    "  --tls-cert/--tls-key     the server certificate and its key\n"
    "  --client-ca PEM          CA that client certificates must chain to\n"
    "  --roles FILE             '<client certificate CN> provisioner|auditor|operator' lines\n"
    "  --audit-key PEM          Ed25519 private key that signs audit checkpoints\n"
    "  --checkpoint-interval N  audit checkpoint every N records (default 1000)\n"
    "  --dataplane-prefix P     attach to the dataplane started with --file-prefix P\n"
    "                           (without it: no dataplane link, warrants are only stored)\n"
    "  --dataplane-lcore-id N   this process's EAL lcore id (default 127; never one the\n"
    "                           dataplane uses)\n"
    "  --operator-id ID         ETSI networkIdentifier.operatorIdentifier (default tapwire)\n"
    "  --network-element-id ID  ETSI networkElementIdentifier, CALEA element id (1..15\n"
    "                           characters; default: none, CALEA then uses the operator id)\n"
    "  --delivery-country CC    ETSI deliveryCountryCode (default: the warrant's jurisdiction)\n"
    "  --interception-point-id ID  ETSI interceptionPointID (default: none)\n"
    "  --spool-max-mb N         per-destination spool limit in MiB (default 4096); records\n"
    "                           beyond it are refused, counted and alarmed\n"
    "  --spool-segment-mb N     spool segment size in MiB (default 64; at most half the limit)\n"
    "  --call-idle-timeout-s N  a call with nothing of it seen for N s gets an IRI END\n"
    "                           (default 7260: above the dataplane's dialog_idle_timeout_s)\n"
    "  --insecure-plaintext-development-only\n"
    "                           no TLS, no client authentication: every caller is a\n"
    "                           provisioner. NEVER in production.\n";

int usage_error(const std::string& message) {
    std::fprintf(stderr, "tapwire-controlplane: %s\n%s", message.c_str(), kUsage);
    return 2;
}

int fail(const std::string& message) {
    std::fprintf(stderr, "tapwire-controlplane: %s\n", message.c_str());
    return 1;
}

// The secret that keys the target digests in audit records: made once per appliance (mode
// 0600) so that digests of the same targets compare equal across restarts.
bool digest_key(const std::string& path, std::string& key, std::string& error) {
    if (::access(path.c_str(), F_OK) == 0) return read_file(path, key, error);
    unsigned char raw[32];
    std::ifstream rnd("/dev/urandom", std::ios::binary);
    if (!rnd.read(reinterpret_cast<char*>(raw), sizeof raw)) {
        error = "/dev/urandom: cannot read";
        return false;
    }
    key = cp::to_hex(raw);
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 || ::write(fd, key.data(), key.size()) != ssize_t(key.size()) || ::fsync(fd) != 0) {
        error = path + ": cannot write (" + std::strerror(errno) + ")";
        if (fd >= 0) ::close(fd);
        return false;
    }
    ::close(fd);
    return true;
}

}  // namespace

int main(int argc, char** argv) {
    std::string listen, state_dir, tls_cert, tls_key, client_ca, authority_dir, roles_file,
        audit_key_file, dataplane_prefix;
    unsigned dataplane_lcore_id = 127;
    cp::HandoverPipelineOptions handover_options;
    handover_options.spool.max_total_bytes = 4096ull << 20;
    std::uint32_t checkpoint_interval = 1000;
    bool insecure = false;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto value = [&](std::string& out) {
            if (i + 1 >= argc) return false;
            out = argv[++i];
            return true;
        };
        // A decimal option value in [lo, hi]; false when missing, else a usage error.
        std::optional<std::string> range_error;
        auto number = [&](unsigned long long lo, unsigned long long hi, unsigned long long& out) {
            std::string n;
            if (!value(n)) return false;
            char* end = nullptr;
            out = std::strtoull(n.c_str(), &end, 10);
            if (n.empty() || n[0] == '-' || *end != '\0' || out < lo || out > hi)
                range_error = a + ": " + std::to_string(lo) + ".." + std::to_string(hi);
            return true;
        };
        unsigned long long v = 0;
        bool ok = true;
        if (a == "--help" || a == "-h") {
            std::fputs(kUsage, stdout);
            return 0;
        } else if (a == "--listen") {
            ok = value(listen);
        } else if (a == "--state-dir") {
            ok = value(state_dir);
        } else if (a == "--tls-cert") {
            ok = value(tls_cert);
        } else if (a == "--tls-key") {
            ok = value(tls_key);
        } else if (a == "--client-ca") {
            ok = value(client_ca);
        } else if (a == "--authority-keys") {
            ok = value(authority_dir);
        } else if (a == "--roles") {
            ok = value(roles_file);
        } else if (a == "--audit-key") {
            ok = value(audit_key_file);
        } else if (a == "--checkpoint-interval") {
            if ((ok = number(0, 1000000, v))) checkpoint_interval = std::uint32_t(v);
        } else if (a == "--dataplane-prefix") {
            ok = value(dataplane_prefix);
        } else if (a == "--dataplane-lcore-id") {
            if ((ok = number(1, 127, v))) dataplane_lcore_id = unsigned(v);
        } else if (a == "--operator-id") {
            ok = value(handover_options.operator_identifier);
        } else if (a == "--network-element-id") {
            ok = value(handover_options.network_element_identifier);
        } else if (a == "--delivery-country") {
            ok = value(handover_options.delivery_country_code);
        } else if (a == "--interception-point-id") {
            ok = value(handover_options.interception_point_id);
        } else if (a == "--spool-max-mb" || a == "--spool-segment-mb") {
            if ((ok = number(1, 1ull << 24, v)))
                (a == "--spool-max-mb" ? handover_options.spool.max_total_bytes
                                       : handover_options.spool.segment_bytes) = v << 20;
        } else if (a == "--call-idle-timeout-s") {
            if ((ok = number(10, 7 * 86400, v)))
                handover_options.call_idle_timeout = std::chrono::seconds(v);
        } else if (a == "--insecure-plaintext-development-only") {
            insecure = true;
        } else {
            return usage_error("unknown argument " + a);
        }
        if (!ok) return usage_error(a + " needs a value");
        if (range_error) return usage_error(*range_error);
    }
    if (listen.empty()) return usage_error("--listen is required");
    if (state_dir.empty()) return usage_error("--state-dir is required");
    if (authority_dir.empty()) return usage_error("--authority-keys is required");
    if (!insecure) {
        if (tls_cert.empty() || tls_key.empty() || client_ca.empty()) {
            return usage_error("--tls-cert, --tls-key and --client-ca are required (mutual TLS)");
        }
        if (roles_file.empty()) return usage_error("--roles is required");
        if (audit_key_file.empty()) return usage_error("--audit-key is required");
    }

    if (insecure) {
        std::fprintf(stderr,
                     "\n"
                     "**********************************************************************\n"
                     "*  WARNING: --insecure-plaintext-development-only                     *\n"
                     "*  gRPC WITHOUT TLS AND WITHOUT CLIENT AUTHENTICATION.                *\n"
                     "*  Every caller is a provisioner. Warrants travel in clear text.      *\n"
                     "*  NEVER USE THIS ON A PRODUCTION OR NETWORK-REACHABLE LISTENER.      *\n"
                     "**********************************************************************\n\n");
    }

    if (::mkdir(state_dir.c_str(), 0700) != 0 && errno != EEXIST) {
        return fail(state_dir + ": cannot create (" + std::strerror(errno) + ")");
    }

    std::string error;
    cp::AuthorityKeys keys;
    if (auto e = keys.load_directory(authority_dir); !e.empty()) return fail(e);

    cp::ServiceContext ctx;
    if (!roles_file.empty()) {
        if (auto e = cp::load_role_map(roles_file, ctx.roles); !e.empty()) return fail(e);
    }
    if (!digest_key(state_dir + "/targets-digest.key", ctx.targets_digest_key, error)) {
        return fail(error);
    }

    auto store = cp::Store::open(state_dir + "/state.db", error);
    if (!store) return fail(error);

    cp::AuditLogOptions audit_options;
    audit_options.path = state_dir + "/audit.log";
    audit_options.checkpoint_interval = checkpoint_interval;
    if (!audit_key_file.empty()) {
        auto key = cp::AuditKey::load_pem_file(audit_key_file);
        if (!key) return fail(audit_key_file + ": " + key.status.message);
        if (!key->has_private()) return fail(audit_key_file + ": not a private key");
        audit_options.signing_key = std::move(*key);
    } else {
        std::fprintf(stderr,
                     "tapwire-controlplane: WARNING: no --audit-key, the audit trail "
                     "has no signed checkpoints\n");
    }
    auto audit = cp::AuditLog::open(std::move(audit_options));
    if (!audit) return fail("audit log: " + audit.status.message);

    ctx.store = store.get();
    ctx.audit = audit->get();
    ctx.authority_keys = &keys;
    ctx.insecure_development = insecure;

    cp::ServerOptions options;
    options.listen = listen;
    options.insecure_development = insecure;
    if (!insecure && (!read_file(tls_cert, options.tls_cert_pem, error) ||
                      !read_file(tls_key, options.tls_key_pem, error) ||
                      !read_file(client_ca, options.client_ca_pem, error))) {
        return fail(error);
    }

    // Signals are taken synchronously by this thread; every other thread inherits the mask.
    // SIGUSR1 is the dataplane link saying the dataplane went away (re-execute to re-attach).
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &stop, nullptr);

    cp::EventHub events;
    ctx.events = &events;
    ctx.unaudited->backlog_changed = [&events](std::size_t queued) {
        v1::Event e;
        e.set_kind(v1::EVENT_ALARM);
        e.set_detail(queued != 0 ? "audit trail cannot be written: records are queued; stored "
                                   "changes that start interception wait for them"
                                 : "audit trail written again: every queued record is in it");
        events.emit(std::move(e));
    };
    handover_options.spool_root = state_dir + "/spool";
    if (handover_options.spool.segment_bytes * 2 > handover_options.spool.max_total_bytes) {
        return usage_error("--spool-segment-mb must be at most half of --spool-max-mb");
    }
    auto handover = cp::HandoverPipeline::open(handover_options, *store, &events, error);
    if (!handover) return fail("handover: " + error);
    ctx.destination_changed = [&handover](const v1::Destination& d) {
        handover->destination_changed(d);
    };
    ctx.destination_removed = [&handover](const std::string& id) {
        handover->destination_removed(id);
    };
    ctx.fill_appliance_status = [&handover](v1::ApplianceStatus& s) { handover->fill_status(s); };
    std::unique_ptr<cp::DataplaneLink> link;
    if (!dataplane_prefix.empty()) {
        cp::DataplaneLinkOptions link_options;
        link_options.file_prefix = dataplane_prefix;
        link_options.lcore_id = dataplane_lcore_id;
        link = std::make_unique<cp::DataplaneLink>(link_options, *store, &events, *handover);
        link->on_lost = [] { ::kill(::getpid(), SIGUSR1); };
        ctx.fill_appliance_status = [&link, &handover](v1::ApplianceStatus& s) {
            link->fill_status(s);
            handover->fill_status(s);
        };
        ctx.fill_warrant_runtime = [&link](std::uint32_t id, v1::WarrantStatus& s) {
            link->fill_warrant_runtime(id, s);
        };
    }
    ctx.warrant_changed = [&link, &events, &handover](const cp::StoredWarrant& w,
                                                      v1::EventKind kind) {
        handover->warrant_changed(w);  // first: its hits may follow at once
        if (link) link->warrant_changed(w);
        events.emit(cp::warrant_event(w, kind));
    };
    cp::Scheduler scheduler(ctx);
    ctx.schedule_changed = [&scheduler] { scheduler.wake(); };
    scheduler.start();
    if (link) link->start();

    auto server = cp::ControlPlaneServer::start(options, ctx, error);
    if (!server) return fail(error);
    std::printf("tapwire-controlplane: listening on %s (port %d, %s), %zu authority key(s)\n",
                listen.c_str(), server->port(),
                insecure ? "PLAINTEXT DEVELOPMENT MODE" : "mutual TLS", keys.size());
    std::fflush(stdout);

    int sig = 0;
    sigwait(&stop, &sig);
    const bool reattach = sig == SIGUSR1;
    std::fprintf(stderr, "tapwire-controlplane: %s\n",
                 reattach ? "dataplane lost, restarting to re-attach" : "shutting down");
    events.shutdown();  // ends open WatchEvents streams, which Shutdown() waits for
    server->server().Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    server->server().Wait();
    scheduler.stop();
    if (link) link->stop();  // saves the call table on a clean stop
    handover->stop();        // then the deliveries, and a last flush of every spool
    if (auto st = (*audit)->close(); !st) return fail("audit log close: " + st.message);
    if (reattach) {
        // DPDK's runtime files stay locked through inherited descriptors (no O_CLOEXEC),
        // which would keep a restarted dataplane from initialising: close them all.
        ::close_range(3, ~0U, 0);
        ::execv("/proc/self/exe", argv);
        return fail(std::string("cannot re-execute: ") + std::strerror(errno));
    }
    return 0;
}
