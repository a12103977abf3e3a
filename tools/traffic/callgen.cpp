// tapwire-callgen: writes a named synthetic VoIP scenario as a pcap, with an optional CSV of
// per-frame labels (which call, what kind, whether a target is involved).

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <map>
#include <string>
#include <string_view>

#include "tools/traffic/call_flow.hpp"
#include "tools/traffic/pcap_writer.hpp"

namespace {

using namespace tapwire::traffic;

constexpr const char* kUsage =
    "usage: tapwire-callgen --scenario NAME --out FILE.pcap [--labels FILE.csv] [--seed N]\n"
    "                       [--nanosecond]\n"
    "       tapwire-callgen --list\n"
    "\n"
    "Writes the scenario's SIP/RTP/RTCP and background frames as a classic pcap\n"
    "(Ethernet, microsecond timestamps unless --nanosecond).\n"
    "  --scenario NAME   scenario to render (see --list)\n"
    "  --out FILE        pcap to write (created or truncated)\n"
    "  --labels FILE     also write a CSV: index,time_ns,call_index,kind,targeted,\n"
    "                    sip_messages,note (index is 0-based; Wireshark's frame number is\n"
    "                    index + 1; call_index -1 is background)\n"
    "  --seed N          seed for identifiers, payloads and jitter (default 1)\n"
    "  --nanosecond      write nanosecond-resolution timestamps\n"
    "  --list            list the scenarios and exit\n";

int usage_error(const std::string& message) {
    std::fprintf(stderr, "tapwire-callgen: %s\n\n%s", message.c_str(), kUsage);
    return 2;
}

std::string csv_field(const std::string& s) {
    if (s.find_first_of(",\"\n") == std::string::npos) return s;
    std::string out = "\"";
    for (char c : s) {
        if (c == '"') out += '"';
        out += c;
    }
    return out + "\"";
}

bool write_labels(const std::string& path, const std::vector<LabeledFrame>& frames,
                  std::string& error) {
    std::FILE* f = std::fopen(path.c_str(), "w");
    if (f == nullptr) {
        error = "cannot create " + path + ": " + std::strerror(errno);
        return false;
    }
    std::fprintf(f, "index,time_ns,call_index,kind,targeted,sip_messages,note\n");
    for (std::size_t i = 0; i < frames.size(); ++i) {
        const LabeledFrame& fr = frames[i];
        std::fprintf(f, "%zu,%llu,%d,%s,%d,%u,%s\n", i, static_cast<unsigned long long>(fr.time_ns),
                     fr.call_index, to_string(fr.kind), fr.targeted ? 1 : 0,
                     unsigned(fr.sip_messages), csv_field(fr.note).c_str());
    }
    bool ok = std::fflush(f) == 0 && std::ferror(f) == 0;
    int err = errno;
    ok = std::fclose(f) == 0 && ok;
    if (!ok) error = "cannot write " + path + ": " + std::strerror(err);
    return ok;
}

bool parse_seed(std::string_view text, std::uint64_t& out) {
    if (text.empty()) return false;
    std::uint64_t v = 0;
    for (char c : text) {
        if (c < '0' || c > '9') return false;
        std::uint64_t next = v * 10 + std::uint64_t(c - '0');
        if (next / 10 != v) return false;  // overflow
        v = next;
    }
    out = v;
    return true;
}

int run(int argc, char** argv) {
    std::string scenario_name;
    std::string out_path;
    std::string labels_path;
    std::uint64_t seed = 1;
    bool list = false;
    PcapPrecision precision = PcapPrecision::Microsecond;

    for (int i = 1; i < argc; ++i) {
        std::string_view arg = argv[i];
        auto value = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
        if (arg == "--help" || arg == "-h") {
            std::fputs(kUsage, stdout);
            return 0;
        } else if (arg == "--list") {
            list = true;
        } else if (arg == "--nanosecond") {
            precision = PcapPrecision::Nanosecond;
        } else if (arg == "--scenario" || arg == "--out" || arg == "--labels" || arg == "--seed") {
            const char* v = value();
            if (v == nullptr) return usage_error(std::string(arg) + " needs a value");
            if (arg == "--scenario") scenario_name = v;
            if (arg == "--out") out_path = v;
            if (arg == "--labels") labels_path = v;
            if (arg == "--seed" && !parse_seed(v, seed)) {
                return usage_error("--seed needs a non-negative integer, got '" + std::string(v) +
                                   "'");
            }
        } else {
            return usage_error("unknown argument '" + std::string(arg) + "'");
        }
    }

    if (list) {
        for (const ScenarioInfo& s : list_scenarios()) {
            std::printf("%-8.*s %.*s\n", int(s.name.size()), s.name.data(),
                        int(s.description.size()), s.description.data());
        }
        return 0;
    }
    if (scenario_name.empty()) return usage_error("--scenario is required");
    if (out_path.empty()) return usage_error("--out is required");

    std::optional<Scenario> scenario = make_scenario(scenario_name, seed);
    if (!scenario) {
        std::string names;
        for (const ScenarioInfo& s : list_scenarios()) {
            names += (names.empty() ? "" : ", ") + std::string(s.name);
        }
        return usage_error("unknown scenario '" + scenario_name + "' (known: " + names + ")");
    }

    std::vector<LabeledFrame> frames = render_scenario(*scenario, seed);

    std::string error;
    PcapWriter writer;
    if (!writer.open(out_path, precision, error)) {
        std::fprintf(stderr, "tapwire-callgen: %s\n", error.c_str());
        return 1;
    }
    for (const LabeledFrame& f : frames) {
        if (!writer.write(f.time_ns, tapwire::ByteSpan(f.bytes), error)) {
            std::fprintf(stderr, "tapwire-callgen: %s\n", error.c_str());
            return 1;
        }
    }
    if (!writer.close(error)) {
        std::fprintf(stderr, "tapwire-callgen: %s\n", error.c_str());
        return 1;
    }
    if (!labels_path.empty() && !write_labels(labels_path, frames, error)) {
        std::fprintf(stderr, "tapwire-callgen: %s\n", error.c_str());
        return 1;
    }

    std::map<FrameKind, std::size_t> by_kind;
    std::size_t targeted = 0;
    std::size_t sip_messages = 0;
    for (const LabeledFrame& f : frames) {
        ++by_kind[f.kind];
        targeted += f.targeted ? 1 : 0;
        sip_messages += f.sip_messages;
    }
    std::size_t targeted_calls = 0;
    for (const CallSpec& c : scenario->calls)
        targeted_calls += c.targeted ? 1 : 0;
    double span_s =
        frames.empty() ? 0.0 : double(frames.back().time_ns - frames.front().time_ns) / 1e9;
    std::printf("scenario %s (seed %llu): %zu dialogs (%zu targeted), %zu frames over %.3f s\n",
                scenario->name.c_str(), static_cast<unsigned long long>(seed),
                scenario->calls.size(), targeted_calls, frames.size(), span_s);
    std::printf("  sip %zu frames (%zu messages), rtp %zu, rtcp %zu, background %zu\n",
                by_kind[FrameKind::Sip], sip_messages, by_kind[FrameKind::Rtp],
                by_kind[FrameKind::Rtcp], by_kind[FrameKind::Background]);
    std::printf("  targeted frames %zu; targets:", targeted);
    for (const std::string& t : scenario->targets)
        std::printf(" %s", t.c_str());
    std::printf("\n  wrote %s%s%s\n", out_path.c_str(), labels_path.empty() ? "" : " and ",
                labels_path.c_str());
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        return run(argc, argv);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "tapwire-callgen: %s\n", e.what());
        return 1;
    }
}
