// tapwire-ctl: the command-line client of the whole control-plane gRPC API (Warrants,
// Destinations, Appliance, Audit, and the standard health check), over mutual TLS. Output is
// aligned tables for people, or one JSON object per line (--json) for scripts.
//
// Exit status: 0 success, 1 the server refused or failed the call ("tapwire-ctl: NOT_FOUND:
// ..." on stderr), 2 usage error or unreadable local file, 3 the server could not be reached
// (connection refused, TLS handshake failure, or no connection before the deadline).
#include <fcntl.h>
#include <grpc/support/log.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <google/protobuf/descriptor.h>
#include <google/protobuf/descriptor.pb.h>
#include <google/protobuf/dynamic_message.h>
#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/text_format.h>
#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "common/files.hpp"
#include "tapwire/v1/controlplane.grpc.pb.h"

namespace {

namespace v1 = tapwire::v1;
namespace pb = google::protobuf;

constexpr int kExitOk = 0;
constexpr int kExitServerError = 1;
constexpr int kExitUsage = 2;
constexpr int kExitUnreachable = 3;

constexpr const char* kDefaultServer = "127.0.0.1:7443";
constexpr double kDefaultTimeoutSeconds = 10;

// ---------------------------------------------------------------------------------------
// Small helpers

void err(const std::string& message) {
    std::fprintf(stderr, "tapwire-ctl: %s\n", message.c_str());
}

// Collects text-format parse errors as "file:line:column: message" (1-based).
class ParseErrors : public pb::io::ErrorCollector {
  public:
    explicit ParseErrors(std::string origin) : origin_(std::move(origin)) {}
    void AddError(int line, pb::io::ColumnNumber column, const std::string& message) override {
        if (!text.empty()) text += "\n";
        text += origin_ + ":" + std::to_string(line + 1) + ":" + std::to_string(column + 1) + ": " +
                message;
    }
    std::string text;

  private:
    std::string origin_;
};

/// Reads a message in protobuf text format from a file ("-": stdin).
bool read_text_message(const std::string& path, pb::Message& out, std::string& error) {
    std::string text;
    if (!tapwire::read_file_or_stdin(path, text, error)) return false;
    const std::string origin = path == "-" ? "<stdin>" : path;
    ParseErrors errors(origin);
    pb::TextFormat::Parser parser;
    parser.RecordErrorsTo(&errors);
    if (!parser.ParseFromString(text, &out)) {
        error = errors.text.empty()
                    ? origin + ": not a text-format " + out.GetDescriptor()->full_name()
                    : errors.text;
        return false;
    }
    return true;
}

std::string lower(std::string s) {
    for (char& c : s)
        c = char(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

std::vector<std::string> split(const std::string& s, char sep) {
    std::vector<std::string> out;
    std::size_t start = 0;
    for (;;) {
        const std::size_t end = s.find(sep, start);
        out.push_back(s.substr(start, end - start));
        if (end == std::string::npos) return out;
        start = end + 1;
    }
}

std::string join(const std::vector<std::string>& parts, const std::string& sep) {
    std::string out;
    for (const auto& p : parts)
        out += (out.empty() ? "" : sep) + p;
    return out;
}

std::optional<double> parse_seconds(const std::string& s) {
    char* end = nullptr;
    errno = 0;
    const double v = std::strtod(s.c_str(), &end);
    if (s.empty() || *end != '\0' || errno != 0 || !std::isfinite(v) || v <= 0 || v > 1e7) {
        return std::nullopt;
    }
    return v;
}

std::optional<std::uint64_t> parse_uint(const std::string& s, std::uint64_t max) {
    if (s.empty() || s.size() > 20 || s.find_first_not_of("0123456789") != std::string::npos) {
        return std::nullopt;
    }
    errno = 0;
    const unsigned long long v = std::strtoull(s.c_str(), nullptr, 10);
    if (errno != 0 || v > max) return std::nullopt;
    return v;
}

/// "2026-01-02T10:00:00Z" (UTC, whole seconds); "-" for an unset timestamp.
std::string format_time(const pb::Timestamp& t) {
    if (t.seconds() == 0 && t.nanos() == 0) return "-";
    const std::time_t secs = std::time_t(t.seconds());
    std::tm tm{};
    if (gmtime_r(&secs, &tm) == nullptr) return std::to_string(t.seconds());
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

std::string format_double(double v, int decimals) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
    return buf;
}

/// "a=1, b=2" of a counter map, sorted by name; "-" when empty.
std::string format_counters(const pb::Map<std::string, std::uint64_t>& m,
                            const std::string& sep = ", ") {
    if (m.empty()) return "-";
    std::map<std::string, std::uint64_t> sorted(m.begin(), m.end());
    std::vector<std::string> parts;
    for (const auto& [name, n] : sorted)
        parts.push_back(name + "=" + std::to_string(n));
    return join(parts, sep);
}

// Enum values are shown and accepted without their common prefix, lower case with dashes:
// WARRANT_STATE_EMERGENCY_LAPSED <-> "emergency-lapsed", EVENT_WARRANT_ACCEPTED <->
// "warrant-accepted". The prefix is that of the zero value ("EVENT_KIND_UNSPECIFIED"),
// shortened a word at a time until the value's name starts with it.
std::string enum_label(const pb::EnumDescriptor* d, int number) {
    const pb::EnumValueDescriptor* v = d->FindValueByNumber(number);
    if (v == nullptr) return std::to_string(number);
    std::string prefix = d->value(0)->name();
    if (const auto p = prefix.rfind("UNSPECIFIED"); p != std::string::npos) prefix.resize(p);
    const std::string& name = v->name();
    while (!prefix.empty() && name.compare(0, prefix.size(), prefix) != 0) {
        const auto p = prefix.rfind('_', prefix.size() - 2);
        prefix.resize(p == std::string::npos ? 0 : p + 1);
    }
    std::string label = lower(name.substr(prefix.size()));
    std::replace(label.begin(), label.end(), '_', '-');
    return label;
}

template <class E>
std::string label(E value) {
    return enum_label(pb::GetEnumDescriptor<E>(), int(value));
}

/// Accepts a label ("etsi-102232") or the full enum name; never the zero (unspecified) value.
template <class E>
bool parse_enum(const std::string& text, E& out, std::string& error) {
    const pb::EnumDescriptor* d = pb::GetEnumDescriptor<E>();
    std::vector<std::string> valid;
    for (int i = 0; i < d->value_count(); ++i) {
        const pb::EnumValueDescriptor* v = d->value(i);
        if (v->number() == 0) continue;
        const std::string l = enum_label(d, v->number());
        if (lower(text) == l || text == v->name()) {
            out = E(v->number());
            return true;
        }
        valid.push_back(l);
    }
    error = "'" + text + "' is not one of " + join(valid, ", ");
    return false;
}

// ---------------------------------------------------------------------------------------
// Output: aligned tables, key/value blocks, JSON

/// Columns separated by two spaces, each as wide as its widest cell; the last one unpadded.
class Table {
  public:
    explicit Table(std::vector<std::string> headers) : rows_{std::move(headers)} {}
    void add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
    void print() const {
        std::vector<std::size_t> width(rows_[0].size(), 0);
        for (const auto& row : rows_)
            for (std::size_t c = 0; c < row.size() && c < width.size(); ++c)
                width[c] = std::max(width[c], row[c].size());
        for (const auto& row : rows_) {
            std::string line;
            for (std::size_t c = 0; c < row.size(); ++c) {
                line += row[c];
                if (c + 1 < row.size()) line += std::string(width[c] - row[c].size() + 2, ' ');
            }
            std::printf("%s\n", line.c_str());
        }
    }

  private:
    std::vector<std::vector<std::string>> rows_;
};

/// "key:   value" lines with the values aligned.
class Fields {
  public:
    Fields& add(std::string key, std::string value) {
        rows_.emplace_back(std::move(key), std::move(value));
        return *this;
    }
    void print() const {
        std::size_t width = 0;
        for (const auto& [k, v] : rows_)
            width = std::max(width, k.size());
        for (const auto& [k, v] : rows_)
            std::printf("%s:%s%s\n", k.c_str(), std::string(width - k.size() + 2, ' ').c_str(),
                        v.c_str());
    }

  private:
    std::vector<std::pair<std::string, std::string>> rows_;
};

/// One line of JSON: proto field names, defaults included, enums by name.
void print_json(const pb::Message& m) {
    pb::util::JsonPrintOptions options;
    options.preserve_proto_field_names = true;
    options.always_print_primitive_fields = true;
    std::string out;
    if (!pb::util::MessageToJsonString(m, &out, options).ok()) out = "{}";
    std::printf("%s\n", out.c_str());
    std::fflush(stdout);  // streams are read line by line by other programs
}

std::string window(const v1::Warrant& w) {
    return format_time(w.valid_from()) + "/" + format_time(w.valid_until());
}

// Target identities are shown only where one warrant was asked for by its XID (get); tables
// and the replies to changes carry their count.
void print_warrant_status(const v1::WarrantStatus& s, bool show_targets) {
    const v1::Warrant& w = s.warrant();
    const v1::LegalMetadata& legal = w.legal();
    Fields f;
    f.add("xid", w.xid())
        .add("liid", w.liid())
        .add("state", label(s.state()))
        .add("version", std::to_string(s.version()))
        .add("kind", label(legal.kind()))
        .add("authority", legal.issuing_authority() + " (" + legal.reference() + ", " +
                              legal.jurisdiction() + ")");
    // Confirmed by ConfirmEmergency (kept beside the signed warrant) or in the signed legal
    // metadata of a later version.
    const std::string& confirmation = s.emergency_confirmation_reference().empty()
                                          ? legal.confirmation_reference()
                                          : s.emergency_confirmation_reference();
    if (!confirmation.empty()) f.add("confirmed by", confirmation);
    if (s.has_emergency_confirmed_at())
        f.add("confirmed at", format_time(s.emergency_confirmed_at()));
    f.add("delivery", label(w.delivery_type()))
        .add("destinations",
             w.destination_ids().empty()
                 ? "-"
                 : join({w.destination_ids().begin(), w.destination_ids().end()}, ", "))
        .add("window", window(w))
        .add("accepted at", format_time(s.accepted_at()))
        .add("activated at", format_time(s.activated_at()))
        .add("ended at", format_time(s.ended_at()));
    if (s.has_emergency_deadline())
        f.add("emergency deadline", format_time(s.emergency_deadline()));
    f.add("hits", std::to_string(s.hits()))
        .add("last hit", format_time(s.last_hit()))
        .add("in dataplane", s.effective_in_dataplane() ? "yes" : "no")
        .add("signed by", w.key_id().empty() ? "-" : w.key_id())
        .add("targets", std::to_string(w.targets_size()));
    f.print();
    if (show_targets)
        for (const auto& t : w.targets())
            std::printf("  %-12s %s\n", label(t.type()).c_str(), t.value().c_str());
}

void print_warrant_table(const v1::ListWarrantsResponse& r) {
    Table t({"XID", "LIID", "STATE", "KIND", "TARGETS", "WINDOW", "HITS", "IN-DATAPLANE"});
    for (const auto& s : r.warrants()) {
        t.add({s.warrant().xid(), s.warrant().liid(), label(s.state()),
               label(s.warrant().legal().kind()), std::to_string(s.warrant().targets_size()),
               window(s.warrant()), std::to_string(s.hits()),
               s.effective_in_dataplane() ? "yes" : "no"});
    }
    t.print();
}

// "no", or "yes" with how the LEMF is verified: "yes:ca,pin,name=lemf.example" (one word,
// so that table columns split on blanks).
std::string tls_summary(const v1::TlsSettings& tls) {
    if (!tls.enabled()) return "no";
    std::vector<std::string> how;
    if (!tls.ca_pem().empty()) how.push_back("ca");
    if (!tls.pinned_sha256().empty()) how.push_back("pin");
    if (!tls.server_name().empty()) how.push_back("name=" + tls.server_name());
    return how.empty() ? "yes" : "yes:" + join(how, ",");
}

void print_destination_table(const pb::RepeatedPtrField<v1::Destination>& list) {
    Table t({"ID", "ADDRESS", "PORT", "FORMAT", "TLS", "TIMESTAMPS"});
    for (const auto& d : list) {
        t.add({d.id(), d.address(), std::to_string(d.port()), label(d.format()),
               tls_summary(d.tls()), d.microsecond_timestamps() ? "microsecond" : "generalized"});
    }
    t.print();
}

void print_appliance_status(const v1::ApplianceStatus& s) {
    Fields f;
    f.add("time", format_time(s.now()));
    if (s.dataplane_attached()) {
        f.add("dataplane", "attached (started " + format_time(s.dataplane_started()) +
                               ", heartbeat " + format_time(s.dataplane_heartbeat()) + ")");
    } else {
        f.add("dataplane", "NOT attached");
    }
    if (!s.dataplane_detail().empty()) f.add("dataplane detail", s.dataplane_detail());
    f.add("warrants", std::to_string(s.active_warrants()) + " active, " +
                          std::to_string(s.pending_warrants()) + " pending")
        .add("published targets", std::to_string(s.published_targets()) + " (generation " +
                                      std::to_string(s.target_generation()) + ")")
        .add("active calls", std::to_string(s.active_calls()))
        .add("active media flows", std::to_string(s.active_media_flows()))
        .add("hits", std::to_string(s.hits_total()) + " total, " +
                         std::to_string(s.hits_drained()) + " drained")
        .add("events dropped", std::to_string(s.events_dropped()))
        .add("drops", format_counters(s.drops()))
        .add("handover", format_counters(s.handover()))
        .add("workers", std::to_string(s.workers_size()));
    f.print();
    if (!s.workers().empty()) {
        std::printf("\n");
        Table t({"WORKER", "RX-PPS", "RX-PACKETS", "HITS", "RING-FILL", "DROPS"});
        for (const auto& w : s.workers()) {
            t.add({std::to_string(w.worker()), format_double(w.rx_packets_per_second(), 0),
                   std::to_string(w.rx_packets()), std::to_string(w.hits()),
                   format_double(w.hit_ring_fill() * 100, 1) + "%",
                   format_counters(w.drops(), ",")});
        }
        t.print();
    }
    if (!s.destinations().empty()) {
        std::printf("\n");
        Table t(
            {"DESTINATION", "FORMAT", "STATE", "SPOOLED", "PENDING", "SPOOL-USE", "LAST-ERROR"});
        for (const auto& d : s.destinations()) {
            const double use = d.spool_max_bytes()
                                   ? double(d.spool_bytes()) * 100 / double(d.spool_max_bytes())
                                   : 0;
            t.add({d.id(), label(d.format()), d.up() ? "up" : "DOWN",
                   std::to_string(d.records_spooled()), std::to_string(d.records_pending()),
                   format_double(use, 1) + "%", d.last_error()});
        }
        t.print();
    }
}

void print_event(const v1::Event& e) {
    std::string line =
        std::to_string(e.sequence()) + "  " + format_time(e.time()) + "  " + label(e.kind());
    if (!e.xid().empty()) line += "  xid=" + e.xid();
    if (!e.liid().empty()) line += "  liid=" + e.liid();
    if (!e.destination_id().empty()) line += "  destination=" + e.destination_id();
    if (!e.counters().empty()) line += "  " + format_counters(e.counters(), " ");
    if (!e.detail().empty()) line += "  " + e.detail();
    std::printf("%s\n", line.c_str());
    std::fflush(stdout);
}

// ---------------------------------------------------------------------------------------
// gRPC status and connection

/// The status code's name as gRPC spells it.
const char* code_name(grpc::StatusCode code) {
    static constexpr const char* kNames[] = {"OK",
                                             "CANCELLED",
                                             "UNKNOWN",
                                             "INVALID_ARGUMENT",
                                             "DEADLINE_EXCEEDED",
                                             "NOT_FOUND",
                                             "ALREADY_EXISTS",
                                             "PERMISSION_DENIED",
                                             "RESOURCE_EXHAUSTED",
                                             "FAILED_PRECONDITION",
                                             "ABORTED",
                                             "OUT_OF_RANGE",
                                             "UNIMPLEMENTED",
                                             "INTERNAL",
                                             "UNAVAILABLE",
                                             "DATA_LOSS",
                                             "UNAUTHENTICATED"};
    const auto i = std::size_t(code);
    return i < std::size(kNames) ? kNames[i] : "UNKNOWN";
}

struct Globals {
    std::string server = kDefaultServer;
    std::string cert, key, ca, server_name;
    double timeout = kDefaultTimeoutSeconds;
    bool json = false;
    bool insecure = false;
};

/// Parsed command arguments: positionals and --options (flags have an empty value).
struct Args {
    std::vector<std::string> positional;
    std::map<std::string, std::string> options;
    bool has(const std::string& name) const { return options.count(name) != 0; }
    std::string get(const std::string& name) const {
        const auto it = options.find(name);
        return it == options.end() ? "" : it->second;
    }
};

struct Command;

/// One invocation: the global settings, the channel and the command being run.
class Session {
  public:
    Session(Globals g, const Command& command, std::shared_ptr<grpc::Channel> channel)
        : g(std::move(g)), command(command), channel(std::move(channel)) {}

    /// Prints the message and the command's usage to stderr; returns the usage exit code.
    int usage_error(const std::string& message) const;

    /// Sets the call's deadline `seconds` from now.
    void set_deadline(grpc::ClientContext& ctx, double seconds) const {
        ctx.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::microseconds(std::int64_t(seconds * 1e6)));
    }

    /// Reports a failed call; 3 when the server was not reached, 1 otherwise.
    int failed(const grpc::Status& st) const {
        // A transport failure leaves the channel short of READY; a server that answers
        // UNAVAILABLE itself (busy) or times out after connecting is a server error.
        const bool unreachable = (st.error_code() == grpc::StatusCode::UNAVAILABLE ||
                                  st.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) &&
                                 channel->GetState(false) != GRPC_CHANNEL_READY;
        std::string message = std::string(code_name(st.error_code())) + ": ";
        if (unreachable) message += "cannot reach " + g.server + ": ";
        if (!st.error_message().empty()) {
            message += st.error_message();
        } else if (st.error_code() == grpc::StatusCode::UNIMPLEMENTED) {
            message += "the server does not offer this call";
        } else {
            message += "(the server gave no message)";
        }
        err(message);
        return unreachable ? kExitUnreachable : kExitServerError;
    }

    /// A unary call under the global deadline; on success prints the reply as JSON or
    /// through `human`.
    template <class Response, class Call, class Print>
    int unary(Call&& call, Print&& human) {
        grpc::ClientContext ctx;
        set_deadline(ctx, g.timeout);
        Response response;
        const grpc::Status st = call(&ctx, &response);
        if (!st.ok()) return failed(st);
        if (g.json) {
            print_json(response);
        } else {
            human(response);
        }
        return kExitOk;
    }

    const Globals g;
    const Command& command;
    const std::shared_ptr<grpc::Channel> channel;
};

// ---------------------------------------------------------------------------------------
// Commands

using Handler = int (*)(Session&, const Args&);

struct Command {
    const char* words;     // "warrant activate"
    const char* synopsis;  // arguments and options, for the usage text
    const char* help;
    const char* options;  // accepted options, space separated; "name=" takes a value
    std::size_t min_positional, max_positional;
    Handler run;
};

/// Prints the message and the command's usage line to stderr; returns the usage exit code.
int command_usage_error(const Command& c, const std::string& message) {
    err(std::string(c.words) + ": " + message);
    std::fprintf(stderr, "usage: tapwire-ctl [global options] %s%s%s\n", c.words,
                 *c.synopsis ? " " : "", c.synopsis);
    return kExitUsage;
}

int Session::usage_error(const std::string& message) const {
    return command_usage_error(command, message);
}

template <class Service>
auto stub(Session& s) {
    return Service::NewStub(s.channel);
}

int warrant_submit(Session& s, const Args& a, bool modify) {
    v1::Warrant warrant;
    std::string error;
    if (!read_text_message(a.positional[0], warrant, error)) {
        err(error);
        return kExitUsage;
    }
    auto warrants = stub<v1::Warrants>(s);
    const auto show = [](const auto& r) { print_warrant_status(r.status(), false); };
    if (modify) {
        v1::ModifyWarrantRequest req;
        *req.mutable_warrant() = warrant;
        return s.unary<v1::ModifyWarrantResponse>(
            [&](auto* ctx, auto* resp) { return warrants->Modify(ctx, req, resp); }, show);
    }
    v1::ActivateWarrantRequest req;
    *req.mutable_warrant() = warrant;
    return s.unary<v1::ActivateWarrantResponse>(
        [&](auto* ctx, auto* resp) { return warrants->Activate(ctx, req, resp); }, show);
}

int warrant_activate(Session& s, const Args& a) {
    return warrant_submit(s, a, false);
}

int warrant_modify(Session& s, const Args& a) {
    return warrant_submit(s, a, true);
}

int warrant_deactivate(Session& s, const Args& a) {
    if (!a.has("reason")) return s.usage_error("--reason TEXT is required");
    v1::DeactivateWarrantRequest req;
    req.set_xid(a.positional[0]);
    req.set_reason(a.get("reason"));
    auto warrants = stub<v1::Warrants>(s);
    return s.unary<v1::DeactivateWarrantResponse>(
        [&](auto* ctx, auto* resp) { return warrants->Deactivate(ctx, req, resp); },
        [](const auto& r) { print_warrant_status(r.status(), false); });
}

int warrant_confirm(Session& s, const Args& a) {
    if (!a.has("court-order")) return s.usage_error("--court-order REF is required");
    v1::ConfirmEmergencyRequest req;
    req.set_xid(a.positional[0]);
    req.set_court_order_reference(a.get("court-order"));
    auto warrants = stub<v1::Warrants>(s);
    return s.unary<v1::ConfirmEmergencyResponse>(
        [&](auto* ctx, auto* resp) { return warrants->ConfirmEmergency(ctx, req, resp); },
        [](const auto& r) { print_warrant_status(r.status(), false); });
}

int warrant_get(Session& s, const Args& a) {
    v1::GetWarrantRequest req;
    req.set_xid(a.positional[0]);
    auto warrants = stub<v1::Warrants>(s);
    return s.unary<v1::WarrantStatus>(
        [&](auto* ctx, auto* resp) { return warrants->Get(ctx, req, resp); },
        [](const auto& r) { print_warrant_status(r, true); });
}

int warrant_list(Session& s, const Args& a) {
    v1::ListWarrantsRequest req;
    if (a.has("state")) {
        for (const std::string& name : split(a.get("state"), ',')) {
            v1::WarrantState state{};
            std::string error;
            if (!parse_enum(name, state, error)) return s.usage_error("--state: " + error);
            req.add_states(state);
        }
    }
    auto warrants = stub<v1::Warrants>(s);
    return s.unary<v1::ListWarrantsResponse>(
        [&](auto* ctx, auto* resp) { return warrants->List(ctx, req, resp); }, print_warrant_table);
}

// A destination from --file (text format) or from the flags; "" or a usage message.
std::string destination_from_args(const Args& a, v1::Destination& d) {
    static constexpr const char* kFlags[] = {"id",     "address",     "port",
                                             "format", "tls",         "ca",
                                             "pin",    "server-name", "microsecond-timestamps"};
    if (a.has("file")) {
        for (const char* f : kFlags)
            if (a.has(f)) return std::string("--file and --") + f + " exclude each other";
        std::string error;
        return read_text_message(a.get("file"), d, error) ? "" : error;
    }
    for (const char* f : {"id", "address", "port", "format"})
        if (!a.has(f)) return std::string("--") + f + " is required (or --file FILE)";
    d.set_id(a.get("id"));
    d.set_address(a.get("address"));
    const auto port = parse_uint(a.get("port"), 65535);
    if (!port) return "--port: not a port number";
    d.set_port(std::uint32_t(*port));
    v1::HandoverFormat format{};
    if (std::string error; !parse_enum(a.get("format"), format, error)) return "--format: " + error;
    d.set_format(format);
    d.set_microsecond_timestamps(a.has("microsecond-timestamps"));
    if (!a.has("tls")) {
        for (const char* f : {"ca", "pin", "server-name"})
            if (a.has(f)) return std::string("--") + f + " needs --tls";
        return "";
    }
    v1::TlsSettings& tls = *d.mutable_tls();
    tls.set_enabled(true);
    if (a.has("ca")) {
        std::string error;
        if (!tapwire::read_file_or_stdin(a.get("ca"), *tls.mutable_ca_pem(), error))
            return "--ca: " + error;
    }
    tls.set_pinned_sha256(a.get("pin"));
    tls.set_server_name(a.get("server-name"));
    return "";
}

int destination_submit(Session& s, const Args& a, bool modify) {
    v1::Destination d;
    if (std::string e = destination_from_args(a, d); !e.empty()) return s.usage_error(e);
    auto destinations = stub<v1::Destinations>(s);
    const auto show = [](const v1::DestinationResponse& r) {
        pb::RepeatedPtrField<v1::Destination> one;
        *one.Add() = r.destination();
        print_destination_table(one);
    };
    if (modify) {
        v1::ModifyDestinationRequest req;
        *req.mutable_destination() = d;
        return s.unary<v1::DestinationResponse>(
            [&](auto* ctx, auto* resp) { return destinations->Modify(ctx, req, resp); }, show);
    }
    v1::CreateDestinationRequest req;
    *req.mutable_destination() = d;
    return s.unary<v1::DestinationResponse>(
        [&](auto* ctx, auto* resp) { return destinations->Create(ctx, req, resp); }, show);
}

int destination_create(Session& s, const Args& a) {
    return destination_submit(s, a, false);
}

int destination_modify(Session& s, const Args& a) {
    return destination_submit(s, a, true);
}

int destination_remove(Session& s, const Args& a) {
    v1::RemoveDestinationRequest req;
    req.set_id(a.positional[0]);
    auto destinations = stub<v1::Destinations>(s);
    return s.unary<v1::DestinationResponse>(
        [&](auto* ctx, auto* resp) { return destinations->Remove(ctx, req, resp); },
        [](const auto& r) {
            std::printf("removed destination %s\n", r.destination().id().c_str());
        });
}

int destination_list(Session& s, const Args&) {
    auto destinations = stub<v1::Destinations>(s);
    return s.unary<v1::ListDestinationsResponse>(
        [&](auto* ctx, auto* resp) {
            return destinations->List(ctx, v1::ListDestinationsRequest(), resp);
        },
        [](const auto& r) { print_destination_table(r.destinations()); });
}

int appliance_status(Session& s, const Args&) {
    auto appliance = stub<v1::Appliance>(s);
    return s.unary<v1::ApplianceStatus>(
        [&](auto* ctx, auto* resp) {
            return appliance->GetStatus(ctx, v1::GetStatusRequest(), resp);
        },
        print_appliance_status);
}

int appliance_events(Session& s, const Args& a) {
    std::uint64_t count = 0;  // 0: until the timeout or an interrupt
    if (a.has("count")) {
        const auto n = parse_uint(a.get("count"), UINT64_MAX);
        if (!n || *n == 0) return s.usage_error("--count: a positive number of events");
        count = *n;
    }
    std::optional<double> timeout;
    if (a.has("timeout")) {
        timeout = parse_seconds(a.get("timeout"));
        if (!timeout) return s.usage_error("--timeout: a positive number of seconds");
    }
    auto appliance = stub<v1::Appliance>(s);
    grpc::ClientContext ctx;
    if (timeout) s.set_deadline(ctx, *timeout);
    auto reader = appliance->WatchEvents(&ctx, v1::WatchEventsRequest());
    // The server subscribes before it sends its initial metadata: from here on no event is
    // missed, which a script that acts next needs to know.
    reader->WaitForInitialMetadata();
    if (s.channel->GetState(false) == GRPC_CHANNEL_READY)
        std::fprintf(stderr, "tapwire-ctl: event stream open on %s\n", s.g.server.c_str());
    v1::Event event;
    std::uint64_t seen = 0;
    while (reader->Read(&event)) {
        s.g.json ? print_json(event) : print_event(event);
        if (++seen == count) {
            ctx.TryCancel();  // enough: the stream itself never ends
            break;
        }
    }
    const grpc::Status st = reader->Finish();
    if (count != 0 && seen == count) return kExitOk;
    if (st.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED &&
        s.channel->GetState(false) == GRPC_CHANNEL_READY) {
        if (count == 0) return kExitOk;  // watching for a while is what was asked
        err("DEADLINE_EXCEEDED: " + std::to_string(seen) + " of " + std::to_string(count) +
            " events before the timeout");
        return kExitServerError;
    }
    if (st.ok()) {
        err("the server ended the event stream after " + std::to_string(seen) + " events");
        return kExitServerError;
    }
    return s.failed(st);
}

int audit_export(Session& s, const Args& a) {
    if (!a.has("out")) return s.usage_error("--out FILE is required ('-': stdout)");
    const std::string out = a.get("out");
    const bool to_stdout = out == "-";
    // Written beside the target and renamed when complete: a failed export leaves no
    // truncated file that could pass for the whole trail.
    const std::string partial = out + ".partial";
    int fd = STDOUT_FILENO;
    if (!to_stdout) {
        fd = ::open(partial.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0) {
            err(partial + ": cannot create (" + std::strerror(errno) + ")");
            return kExitUsage;
        }
    }
    const auto abandon = [&](int code) {
        if (!to_stdout) {
            ::close(fd);
            ::unlink(partial.c_str());
        }
        return code;
    };
    auto audit = stub<v1::Audit>(s);
    grpc::ClientContext ctx;
    s.set_deadline(ctx, s.g.timeout);
    auto reader = audit->Export(&ctx, v1::ExportAuditRequest());
    v1::AuditChunk chunk;
    std::uint64_t bytes = 0;
    std::string write_error;
    while (write_error.empty() && reader->Read(&chunk)) {
        const std::string& data = chunk.data();
        for (std::size_t done = 0; done < data.size();) {
            const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) {
                write_error = (to_stdout ? "stdout" : partial) + ": " + std::strerror(errno);
                ctx.TryCancel();
                break;
            }
            done += std::size_t(n);
        }
        bytes += data.size();
    }
    const grpc::Status st = reader->Finish();
    if (!write_error.empty()) {
        err("write failed: " + write_error);
        return abandon(kExitUsage);
    }
    if (!st.ok()) return abandon(s.failed(st));
    if (!to_stdout) {
        if (::fsync(fd) != 0 || ::close(fd) != 0 || ::rename(partial.c_str(), out.c_str()) != 0) {
            err(out + ": cannot write (" + std::strerror(errno) + ")");
            ::unlink(partial.c_str());
            return kExitUsage;
        }
    }
    // The audit trail itself may be on stdout: the summary then goes to stderr.
    FILE* summary = to_stdout ? stderr : stdout;
    if (s.g.json && !to_stdout) {
        pb::Struct result;
        (*result.mutable_fields())["out"].set_string_value(out);
        (*result.mutable_fields())["bytes"].set_number_value(double(bytes));
        print_json(result);
    } else {
        std::fprintf(summary, "wrote %llu bytes to %s\n", static_cast<unsigned long long>(bytes),
                     to_stdout ? "stdout" : out.c_str());
    }
    return kExitOk;
}

// grpc.health.v1 has no generated C++ stubs in Debian's gRPC packages: its two messages are
// described here and called through the generic stub, byte for byte what health.proto says.
constexpr const char* kHealthProto = R"pb(
    name: "grpc/health/v1/health.proto"
    package: "grpc.health.v1"
    syntax: "proto3"
    message_type {
      name: "HealthCheckRequest"
      field { name: "service" number: 1 label: LABEL_OPTIONAL type: TYPE_STRING }
    }
    message_type {
      name: "HealthCheckResponse"
      field {
        name: "status"
        number: 1
        label: LABEL_OPTIONAL
        type: TYPE_ENUM
        type_name: ".grpc.health.v1.HealthCheckResponse.ServingStatus"
      }
      enum_type {
        name: "ServingStatus"
        value { name: "UNKNOWN" number: 0 }
        value { name: "SERVING" number: 1 }
        value { name: "NOT_SERVING" number: 2 }
        value { name: "SERVICE_UNKNOWN" number: 3 }
      }
    }
)pb";

int health(Session& s, const Args& a) {
    pb::FileDescriptorProto file;
    pb::DescriptorPool pool;
    if (!pb::TextFormat::ParseFromString(kHealthProto, &file) || pool.BuildFile(file) == nullptr) {
        err("internal error: the health check descriptor does not build");
        return kExitServerError;
    }
    pb::DynamicMessageFactory factory(&pool);
    const pb::Descriptor* req_type =
        pool.FindMessageTypeByName("grpc.health.v1.HealthCheckRequest");
    const pb::Descriptor* resp_type =
        pool.FindMessageTypeByName("grpc.health.v1.HealthCheckResponse");
    std::unique_ptr<pb::Message> request(factory.GetPrototype(req_type)->New());
    std::unique_ptr<pb::Message> response(factory.GetPrototype(resp_type)->New());
    const std::string service = a.positional.empty() ? "" : a.positional[0];
    request->GetReflection()->SetString(request.get(), req_type->field(0), service);

    std::string bytes = request->SerializeAsString();
    grpc::Slice slice(bytes);
    grpc::ByteBuffer request_buffer(&slice, 1), response_buffer;
    grpc::GenericStub generic(s.channel);
    grpc::CompletionQueue cq;
    grpc::ClientContext ctx;
    s.set_deadline(ctx, s.g.timeout);
    grpc::Status st;
    auto call = generic.PrepareUnaryCall(&ctx, "/grpc.health.v1.Health/Check", request_buffer, &cq);
    call->StartCall();
    call->Finish(&response_buffer, &st, &cq);
    void* tag = nullptr;
    bool ok = false;
    cq.Next(&tag, &ok);
    cq.Shutdown();
    while (cq.Next(&tag, &ok)) {
    }
    if (!st.ok()) return s.failed(st);

    std::vector<grpc::Slice> slices;
    std::string wire;
    if (response_buffer.Dump(&slices).ok())
        for (const auto& sl : slices)
            wire.append(reinterpret_cast<const char*>(sl.begin()), sl.size());
    if (!response->ParseFromString(wire)) {
        err("INTERNAL: the health reply is not a HealthCheckResponse");
        return kExitServerError;
    }
    const pb::FieldDescriptor* status_field = resp_type->field(0);
    const pb::EnumValueDescriptor* status =
        response->GetReflection()->GetEnum(*response, status_field);
    if (s.g.json) {
        print_json(*response);
    } else {
        std::printf("%s%s\n", service.empty() ? "" : (service + ": ").c_str(),
                    status->name().c_str());
    }
    if (status->name() != "SERVING") {
        err("the server is not serving (" + status->name() + ")");
        return kExitServerError;
    }
    return kExitOk;
}

constexpr const char* kDestinationFlags =
    "file= id= address= port= format= tls ca= pin= server-name= microsecond-timestamps";
constexpr const char* kDestinationSynopsis =
    "(--file FILE | --id ID --address ADDR --port PORT\n"
    "        --format etsi-102232|etsi-x2x3|atis-calea [--microsecond-timestamps]\n"
    "        [--tls [--ca PEM] [--pin SHA256] [--server-name NAME]])";

const Command kCommands[] = {
    {"warrant activate", "FILE", "activate a signed warrant (text format, '-': stdin)", "", 1, 1,
     warrant_activate},
    {"warrant modify", "FILE", "replace a warrant by a new signed version (same XID)", "", 1, 1,
     warrant_modify},
    {"warrant deactivate", "XID --reason TEXT", "end a warrant", "reason=", 1, 1,
     warrant_deactivate},
    {"warrant confirm", "XID --court-order REF", "confirm an emergency warrant", "court-order=", 1,
     1, warrant_confirm},
    {"warrant get", "XID", "one warrant, its targets included", "", 1, 1, warrant_get},
    {"warrant list", "[--state STATE,...]",
     "warrants (states: pending, active, lapsed, deactivated, emergency-lapsed)", "state=", 0, 0,
     warrant_list},
    {"destination create", kDestinationSynopsis, "add a delivery destination (LEMF)",
     kDestinationFlags, 0, 0, destination_create},
    {"destination modify", kDestinationSynopsis, "replace the destination with that id",
     kDestinationFlags, 0, 0, destination_modify},
    {"destination remove", "ID", "remove a destination no active warrant uses", "", 1, 1,
     destination_remove},
    {"destination list", "", "delivery destinations", "", 0, 0, destination_list},
    {"status", "", "appliance status: summary and per-worker table", "", 0, 0, appliance_status},
    {"events", "[--count N] [--timeout SECONDS]",
     "one line per event from now on, until N events, the timeout or an interrupt",
     "count= timeout=", 0, 0, appliance_events},
    {"audit export", "--out FILE", "the audit trail into FILE ('-': stdout)", "out=", 0, 0,
     audit_export},
    {"health", "[SERVICE]", "grpc.health.v1 check (exit 1 unless SERVING)", "", 0, 1, health},
};

void print_usage(FILE* to) {
    std::fprintf(to,
                 "usage: tapwire-ctl [global options] COMMAND [arguments]\n"
                 "\n"
                 "commands:\n");
    for (const Command& c : kCommands) {
        std::fprintf(to, "  %s%s%s\n      %s\n", c.words, *c.synopsis ? " " : "", c.synopsis,
                     c.help);
    }
    std::fprintf(
        to,
        "\n"
        "global options (before the command; each also from the environment):\n"
        "  --server HOST:PORT   TAPWIRE_SERVER, default %s\n"
        "  --cert PEM           TAPWIRE_CERT   client certificate  } mutual TLS: all three\n"
        "  --key PEM            TAPWIRE_KEY    its private key     } are required\n"
        "  --ca PEM             TAPWIRE_CA     CA of the server certificate\n"
        "  --server-name NAME   TAPWIRE_SERVER_NAME  name to verify the server certificate\n"
        "                       against, when it differs from HOST\n"
        "  --timeout SECONDS    TAPWIRE_TIMEOUT, default %g (per call; events: see --timeout)\n"
        "  --json               the reply as JSON, one object per line (also after the command)\n"
        "  --insecure-plaintext-development-only\n"
        "                       no TLS: only for a development server started likewise\n"
        "\n"
        "exit status: 0 ok, 1 the server refused or failed the call, 2 usage error,\n"
        "3 the server could not be reached (connection or TLS handshake failed)\n",
        kDefaultServer, kDefaultTimeoutSeconds);
}

int usage_error(const std::string& message) {
    err(message);
    print_usage(stderr);
    return kExitUsage;
}

// "--name value" or "--name=value" at argv[i]; advances i past a separate value.
bool option_value(const std::vector<std::string>& argv, std::size_t& i, const std::string& name,
                  std::string& value) {
    const std::string& a = argv[i];
    if (a.size() > name.size() + 2 && a.compare(0, name.size() + 3, "--" + name + "=") == 0) {
        value = a.substr(name.size() + 3);
        return true;
    }
    if (i + 1 >= argv.size()) return false;
    value = argv[++i];
    return true;
}

std::string option_name(const std::string& a) {
    const auto eq = a.find('=');
    return a.substr(2, eq == std::string::npos ? std::string::npos : eq - 2);
}

// Parses the command's arguments against its option list; "" or a usage message.
std::string parse_args(const Command& c, const std::vector<std::string>& argv, std::size_t i,
                       Args& out, Globals& g) {
    std::map<std::string, bool> accepted;  // name -> takes a value
    for (const std::string& spec : split(c.options, ' ')) {
        if (spec.empty()) continue;
        const bool takes_value = spec.back() == '=';
        accepted[takes_value ? spec.substr(0, spec.size() - 1) : spec] = takes_value;
    }
    bool options_done = false;
    for (; i < argv.size(); ++i) {
        const std::string& a = argv[i];
        if (options_done || a.size() < 2 || a.compare(0, 2, "--") != 0) {
            out.positional.push_back(a);
            continue;
        }
        if (a == "--") {
            options_done = true;
            continue;
        }
        const std::string name = option_name(a);
        if (name == "json") {
            g.json = true;
            continue;
        }
        const auto it = accepted.find(name);
        if (it == accepted.end()) return "unknown option --" + name;
        std::string value;
        if (it->second) {
            if (!option_value(argv, i, name, value)) return "--" + name + " needs a value";
        } else if (a.find('=') != std::string::npos) {
            return "--" + name + " takes no value";
        }
        if (out.options.count(name) != 0) return "--" + name + " given twice";
        out.options[name] = value;
    }
    if (out.positional.size() < c.min_positional) return "missing argument";
    if (out.positional.size() > c.max_positional)
        return "unexpected argument '" + out.positional[c.max_positional] + "'";
    return "";
}

std::string env_or(const char* name, const std::string& fallback) {
    const char* v = std::getenv(name);
    return v != nullptr && *v != '\0' ? v : fallback;
}

// Mutual TLS from the certificate files, or plaintext behind the development flag; nullptr
// with `error` (which names what is missing) otherwise.
std::shared_ptr<grpc::Channel> make_channel(const Globals& g, std::string& error) {
    grpc::ChannelArguments args;
    if (g.insecure) {
        std::fprintf(stderr,
                     "\n"
                     "****************************************************************\n"
                     "*  WARNING: --insecure-plaintext-development-only              *\n"
                     "*  NO TLS: the server is not authenticated and everything,     *\n"
                     "*  warrants and target identities included, travels in clear.  *\n"
                     "*  NEVER USE THIS AGAINST A PRODUCTION APPLIANCE.              *\n"
                     "****************************************************************\n\n");
        return grpc::CreateCustomChannel(g.server, grpc::InsecureChannelCredentials(), args);
    }
    std::vector<std::string> missing;
    if (g.cert.empty()) missing.push_back("--cert (TAPWIRE_CERT)");
    if (g.key.empty()) missing.push_back("--key (TAPWIRE_KEY)");
    if (g.ca.empty()) missing.push_back("--ca (TAPWIRE_CA)");
    if (!missing.empty()) {
        error = "mutual TLS needs a client certificate, its key and the server's CA; missing " +
                join(missing, ", ") +
                " (plaintext only with --insecure-plaintext-development-only)";
        return nullptr;
    }
    grpc::SslCredentialsOptions ssl;
    if (!tapwire::read_file_or_stdin(g.cert, ssl.pem_cert_chain, error) ||
        !tapwire::read_file_or_stdin(g.key, ssl.pem_private_key, error) ||
        !tapwire::read_file_or_stdin(g.ca, ssl.pem_root_certs, error)) {
        return nullptr;
    }
    if (!g.server_name.empty()) args.SetSslTargetNameOverride(g.server_name);
    return grpc::CreateCustomChannel(g.server, grpc::SslCredentials(ssl), args);
}

// gRPC's own log lines (handshake failures, reconnect attempts) would interleave with the
// output; the status of the failed call says what matters. GRPC_VERBOSITY brings them back.
void quiet_grpc_log(gpr_log_func_args*) {}

}  // namespace

int main(int argc, char** argv) {
    if (std::getenv("GRPC_VERBOSITY") == nullptr) gpr_set_log_function(quiet_grpc_log);
    const std::vector<std::string> args(argv + 1, argv + argc);

    Globals g;
    g.server = env_or("TAPWIRE_SERVER", g.server);
    g.cert = env_or("TAPWIRE_CERT", "");
    g.key = env_or("TAPWIRE_KEY", "");
    g.ca = env_or("TAPWIRE_CA", "");
    g.server_name = env_or("TAPWIRE_SERVER_NAME", "");
    if (const std::string t = env_or("TAPWIRE_TIMEOUT", ""); !t.empty()) {
        const auto v = parse_seconds(t);
        if (!v) return usage_error("TAPWIRE_TIMEOUT: a positive number of seconds");
        g.timeout = *v;
    }

    std::size_t i = 0;
    for (; i < args.size() && args[i].size() > 1 && args[i][0] == '-'; ++i) {
        const std::string& a = args[i];
        if (a == "-h" || a == "--help") {
            print_usage(stdout);
            return kExitOk;
        }
        if (a.compare(0, 2, "--") != 0) return usage_error("unknown option " + a);
        const std::string name = option_name(a);
        std::string* target = name == "server"        ? &g.server
                              : name == "cert"        ? &g.cert
                              : name == "key"         ? &g.key
                              : name == "ca"          ? &g.ca
                              : name == "server-name" ? &g.server_name
                                                      : nullptr;
        std::string value;
        if (target != nullptr || name == "timeout") {
            if (!option_value(args, i, name, value)) return usage_error(a + " needs a value");
            if (target != nullptr) {
                *target = value;
            } else if (const auto v = parse_seconds(value)) {
                g.timeout = *v;
            } else {
                return usage_error("--timeout: a positive number of seconds");
            }
        } else if (a == "--json") {
            g.json = true;
        } else if (a == "--insecure-plaintext-development-only") {
            g.insecure = true;
        } else {
            return usage_error("unknown global option " + a);
        }
    }
    if (i == args.size()) return usage_error("no command");
    if (args[i] == "help") {
        print_usage(stdout);
        return kExitOk;
    }

    // The longest command whose words start the remaining arguments.
    const Command* command = nullptr;
    std::size_t words = 0;
    for (const Command& c : kCommands) {
        const std::vector<std::string> w = split(c.words, ' ');
        if (i + w.size() <= args.size() && w.size() > words &&
            std::equal(w.begin(), w.end(), args.begin() + std::ptrdiff_t(i))) {
            command = &c;
            words = w.size();
        }
    }
    if (command == nullptr) {
        std::string words_given = args[i];
        if (i + 1 < args.size()) words_given += " " + args[i + 1];
        return usage_error("unknown command '" + words_given + "'");
    }
    Args parsed;
    if (std::string e = parse_args(*command, args, i + words, parsed, g); !e.empty()) {
        return command_usage_error(*command, e);
    }

    std::string error;
    auto channel = make_channel(g, error);
    if (!channel) {
        err(error);
        return kExitUsage;
    }
    Session session(g, *command, std::move(channel));
    return command->run(session, parsed);
}
