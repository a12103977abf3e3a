#include "dataplane/config.hpp"

#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/text_format.h>

#include <fstream>
#include <set>
#include <sstream>

namespace tapwire::dataplane {

namespace {

class ErrorCollector : public google::protobuf::io::ErrorCollector {
  public:
    explicit ErrorCollector(std::string origin) : origin_(std::move(origin)) {}
    void AddError(int line, int column, const std::string& message) override {
        if (error_.empty())  // the first error is the one to fix
            error_ = origin_ + ":" + std::to_string(line + 1) + ":" + std::to_string(column + 1) +
                     ": " + message;
    }
    const std::string& error() const { return error_; }

  private:
    std::string origin_;
    std::string error_;
};

bool is_power_of_two(std::uint32_t v) {
    return v && !(v & (v - 1));
}

}  // namespace

void apply_defaults(Config& c) {
    if (c.mode() == Config::MODE_UNSPECIFIED) c.set_mode(Config::MODE_PASSIVE);
    for (auto& p : *c.mutable_ports()) {
        if (p.rx_queues() == 0) p.set_rx_queues(1);
        if (p.rx_descriptors() == 0) p.set_rx_descriptors(1024);
        if (p.tx_descriptors() == 0) p.set_tx_descriptors(1024);
    }
    if (c.burst_size() == 0) c.set_burst_size(32);
    if (c.sip_ports_size() == 0) c.add_sip_ports(5060);
    auto* t = c.mutable_tables();
    if (t->max_dialogs() == 0) t->set_max_dialogs(65536);
    if (t->max_media_flows() == 0) t->set_max_media_flows(262144);
    if (t->dialog_idle_timeout_s() == 0) t->set_dialog_idle_timeout_s(7200);
    if (t->media_idle_timeout_s() == 0) t->set_media_idle_timeout_s(300);
    if (t->dialog_linger_ms() == 0) t->set_dialog_linger_ms(32000);
    if (t->fragment_slots() == 0) t->set_fragment_slots(1024);
    if (t->fragment_timeout_ms() == 0) t->set_fragment_timeout_ms(2000);
    if (t->tcp_streams() == 0) t->set_tcp_streams(4096);
    auto* m = c.mutable_mirror();
    if (m->ring_size() == 0) m->set_ring_size(16384);
    if (m->snap_length() == 0) m->set_snap_length(65535);
    // pool_size and mbuf_pool_size depend on the worker count: sized in main once known.
}

std::string validate(const Config& c) {
    if (c.ports_size() == 0) return "ports: at least one port is needed";
    std::set<std::string> names;
    for (int i = 0; i < c.ports_size(); ++i) {
        const auto& p = c.ports(i);
        std::string where = "ports[" + std::to_string(i) + "]";
        if (p.name().empty()) return where + ".name: empty";
        if (!names.insert(p.name()).second) return where + ".name: '" + p.name() + "' listed twice";
        if (p.rx_queues() > 64) return where + ".rx_queues: at most 64";
        if (!is_power_of_two(p.rx_descriptors()))
            return where + ".rx_descriptors: " + std::to_string(p.rx_descriptors()) +
                   " is not a power of two";
        if (c.mode() == Config::MODE_PASSIVE && !p.peer().empty())
            return where + ".peer: only inline mode forwards to a peer port";
    }
    if (c.mode() == Config::MODE_INLINE) {
        for (int i = 0; i < c.ports_size(); ++i) {
            const auto& p = c.ports(i);
            std::string where = "ports[" + std::to_string(i) + "].peer";
            if (p.peer().empty()) return where + ": inline mode needs a peer for every port";
            if (p.peer() == p.name()) return where + ": a port cannot be its own peer";
            if (!names.count(p.peer())) return where + ": '" + p.peer() + "' is not a listed port";
        }
    }
    if (c.burst_size() > 256) return "burst_size: at most 256";
    for (auto port : c.sip_ports())
        if (port == 0 || port > 65535)
            return "sip_ports: " + std::to_string(port) + " is not a port number";
    if (!is_power_of_two(c.mirror().ring_size()))
        return "mirror.ring_size: " + std::to_string(c.mirror().ring_size()) +
               " is not a power of two";
    if (c.mirror().snap_length() < 64 || c.mirror().snap_length() > 65535)
        return "mirror.snap_length: between 64 and 65535";
    if (c.tables().max_dialogs() < 16) return "tables.max_dialogs: at least 16";
    if (c.tables().max_media_flows() < 16) return "tables.max_media_flows: at least 16";
    return "";
}

std::string parse_config(const std::string& text, const std::string& origin, Config& out) {
    google::protobuf::TextFormat::Parser parser;
    ErrorCollector errors(origin);
    parser.RecordErrorsTo(&errors);
    out.Clear();
    if (!parser.ParseFromString(text, &out))
        return errors.error().empty() ? origin + ": cannot parse" : errors.error();
    apply_defaults(out);
    std::string problem = validate(out);
    return problem.empty() ? "" : origin + ": " + problem;
}

std::string load_config(const std::string& path, Config& out) {
    std::ifstream in(path);
    if (!in) return path + ": cannot open";
    std::stringstream text;
    text << in.rdbuf();
    return parse_config(text.str(), path, out);
}

}  // namespace tapwire::dataplane
