// tapwire-lemf: the reference LEMF receiver (issue 5). Listens on TCP or TLS, decodes one
// handover format, writes IRI as JSON lines and CC as a pcap per LIID under --out, and prints
// a per-LIID summary on exit (SIGINT, SIGTERM or --duration).
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>

#include "tools/lemf/lemf.hpp"

namespace {

volatile sig_atomic_t g_stop = 0;

void on_signal(int) {
    g_stop = 1;
}

int usage() {
    std::fprintf(stderr,
                 "usage: tapwire-lemf --listen ADDR:PORT --format etsi-102232|etsi-x2x3|calea\n"
                 "                    --out DIR [--tls-cert PEM --tls-key PEM [--client-ca PEM]]\n"
                 "                    [--duration SECONDS] [--summary-json FILE]\n"
                 "                    [--progress SECONDS]  (a running total line every N s)\n");
    return 2;
}

}  // namespace

int main(int argc, char** argv) {
    using namespace tapwire::lemf;
    ServerOptions opt;
    opt.listen.clear();
    std::string out_dir, summary_json, format_text;
    double duration = 0, progress = 0;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto value = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
        const char* v = nullptr;
        if (a == "-h" || a == "--help") return usage(), 0;
        if (!(v = value())) return usage();
        if (a == "--listen")
            opt.listen = v;
        else if (a == "--format")
            format_text = v;
        else if (a == "--out")
            out_dir = v;
        else if (a == "--tls-cert")
            opt.tls_cert = v;
        else if (a == "--tls-key")
            opt.tls_key = v;
        else if (a == "--client-ca")
            opt.client_ca = v;
        else if (a == "--duration")
            duration = std::atof(v);
        else if (a == "--summary-json")
            summary_json = v;
        else if (a == "--progress")
            progress = std::atof(v);
        else
            return usage();
    }
    if (opt.listen.empty() || out_dir.empty() || !parse_format(format_text, opt.format)) {
        if (!format_text.empty() && !parse_format(format_text, opt.format))
            std::fprintf(stderr, "tapwire-lemf: unknown format '%s'\n", format_text.c_str());
        return usage();
    }
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
    signal(SIGPIPE, SIG_IGN);

    Collector collector(out_dir);
    Server server(opt, collector);
    std::string error;
    if (!server.start(error)) {
        std::fprintf(stderr, "tapwire-lemf: %s\n", error.c_str());
        return 1;
    }
    std::printf("tapwire-lemf: listening on port %u (%s%s), writing to %s\n", server.port(),
                to_string(opt.format), opt.tls_cert.empty() ? "" : ", TLS", out_dir.c_str());
    std::fflush(stdout);
    const auto until = std::chrono::steady_clock::now() +
                       std::chrono::milliseconds(static_cast<long long>(duration * 1000));
    auto next_progress = std::chrono::steady_clock::now();
    while (!g_stop && (duration <= 0 || std::chrono::steady_clock::now() < until)) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        if (progress <= 0 || std::chrono::steady_clock::now() < next_progress) continue;
        next_progress += std::chrono::milliseconds(static_cast<long long>(progress * 1000));
        // A running total for people watching (the demo): what arrived and decoded so far.
        std::uint64_t calls = 0, iri = 0, cc = 0, missing = 0, duplicates = 0;
        const auto summary = collector.summary();
        for (const auto& [liid, s] : summary) {
            calls += s.calls;
            iri += s.iri;
            cc += s.cc_packets;
            missing += s.missing;
            duplicates += s.duplicates;
        }
        std::printf(
            "tapwire-lemf: %zu LIIDs, %llu calls, %llu IRI, %llu CC, %llu missing, "
            "%llu possible duplicates, %llu decode errors\n",
            summary.size(), static_cast<unsigned long long>(calls),
            static_cast<unsigned long long>(iri), static_cast<unsigned long long>(cc),
            static_cast<unsigned long long>(missing), static_cast<unsigned long long>(duplicates),
            static_cast<unsigned long long>(collector.errors()));
        std::fflush(stdout);
    }
    server.stop();
    collector.flush();
    std::printf("%s", collector.summary_text().c_str());
    if (!summary_json.empty()) {
        std::ofstream f(summary_json);
        f << collector.summary_json() << '\n';
        if (!f) {
            std::fprintf(stderr, "tapwire-lemf: cannot write %s\n", summary_json.c_str());
            return 1;
        }
    }
    return 0;
}
