// tapwire-inspect: runs Tapwire's parsing core over capture files and prints what it found,
// per packet and per packet class. Target identities are redacted unless
// --show-identities is given: the output may end up in tickets and logs.

#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "tools/inspect/inspector.hpp"

namespace {

void usage(FILE* out) {
    std::fprintf(out,
                 "usage: tapwire-inspect [options] CAPTURE...\n"
                 "Runs Tapwire's L2-L4, SIP and SDP parsers over pcap/pcapng files.\n"
                 "  --quiet              summary only, no line per packet\n"
                 "  --sip-port N         a SIP port (repeatable; default 5060)\n"
                 "  --show-identities    print normalised identities (redacted by default)\n");
}

void print_line(std::uint64_t index, tapwire::PacketClass c, const std::string& detail) {
    std::printf("%6llu  %-9s %s\n", static_cast<unsigned long long>(index), tapwire::to_string(c),
                detail.c_str());
}

}  // namespace

int main(int argc, char** argv) {
    tapwire::InspectOptions options;
    std::vector<std::string> files;
    bool quiet = false;
    bool custom_ports = false;
    for (int i = 1; i < argc; ++i) {
        std::string_view arg = argv[i];
        if (arg == "--quiet") {
            quiet = true;
        } else if (arg == "--show-identities") {
            options.show_identities = true;
        } else if (arg == "--sip-port" && i + 1 < argc) {
            long port = std::strtol(argv[++i], nullptr, 10);
            if (port <= 0 || port > 65535) {
                std::fprintf(stderr, "tapwire-inspect: --sip-port wants 1-65535, got '%s'\n",
                             argv[i]);
                return 2;
            }
            if (!custom_ports) options.sip_ports.clear(), custom_ports = true;
            options.sip_ports.push_back(static_cast<std::uint16_t>(port));
        } else if (arg == "-h" || arg == "--help") {
            usage(stdout);
            return 0;
        } else if (arg.starts_with("-")) {
            std::fprintf(stderr, "tapwire-inspect: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        } else {
            files.emplace_back(arg);
        }
    }
    if (files.empty()) {
        usage(stderr);
        return 2;
    }
    tapwire::Inspector inspector(options);
    bool ok = true;
    for (const auto& f : files) {
        if (!quiet) std::printf("== %s\n", f.c_str());
        std::string error = inspector.run_file(f, quiet ? nullptr : print_line);
        if (!error.empty()) {
            std::fprintf(stderr, "tapwire-inspect: %s\n", error.c_str());
            ok = false;
        }
    }
    inspector.print_summary();
    return ok ? 0 : 1;
}
