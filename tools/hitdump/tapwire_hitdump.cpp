// tapwire-hitdump: a DPDK secondary process that attaches to a running dataplane through the
// shared-memory contract (common/shm_contract.hpp), drains every worker's hit ring and writes
// one JSON line per hit. It is the test and debugging consumer of the rings, and the
// reference for the control plane's drain loop.
//
//   tapwire-hitdump --proc-type=secondary --file-prefix P [EAL options] -- --out FILE
//       [--seconds S]   stop after S seconds (default: when the dataplane has exited)
//
// Each line: {"ts":ns,"worker":w,"kind":"sip|rtp|rtcp|ip","dir":"from_target|to_target|unknown",
// "cid":correlation id,"warrants":[ids],"flags":n,"family":4|6,"proto":17,"src":"ip",
// "sport":p,"dst":"ip","dport":p,"len":original length,"payload_len":n,"payload_fnv":"hex"}
// payload_fnv is FNV-1a 64 of the L4 payload, so tests can match hits to the frames sent.

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_mbuf.h>
#include <rte_memzone.h>
#include <rte_ring.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "common/ip_address.hpp"
#include "common/shm_contract.hpp"

namespace {

using namespace tapwire;

[[noreturn]] void fail(const std::string& m) {
    std::fprintf(stderr, "tapwire-hitdump: %s\n", m.c_str());
    std::exit(1);
}

const char* kind_name(shm::HitKind k) {
    switch (k) {
        case shm::HitKind::Sip:
            return "sip";
        case shm::HitKind::Rtp:
            return "rtp";
        case shm::HitKind::Rtcp:
            return "rtcp";
        case shm::HitKind::Ip:
            return "ip";
    }
    return "?";
}

const char* direction_name(shm::HitDirection d) {
    switch (d) {
        case shm::HitDirection::FromTarget:
            return "from_target";
        case shm::HitDirection::ToTarget:
            return "to_target";
        default:
            return "unknown";
    }
}

std::uint64_t fnv1a(const std::uint8_t* p, std::size_t n) {
    std::uint64_t h = 1469598103934665603ull;
    for (std::size_t i = 0; i < n; ++i)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

IpAddress address(const std::uint8_t* bytes, std::uint8_t family) {
    return family == 6 ? IpAddress::v6(bytes) : IpAddress::v4(bytes);
}

void write_hit(FILE* out, rte_mbuf* m, std::vector<std::uint8_t>& buffer) {
    const auto* meta = static_cast<const shm::HitMeta*>(rte_mbuf_to_priv(m));
    buffer.resize(rte_pktmbuf_pkt_len(m));
    const auto* data = static_cast<const std::uint8_t*>(
        rte_pktmbuf_read(m, 0, buffer.size(), buffer.data()));  // linear view of a chain
    std::size_t off = meta->payload_offset;
    std::size_t len = meta->payload_length;
    if (off > buffer.size()) off = buffer.size();
    if (len > buffer.size() - off) len = buffer.size() - off;
    std::fprintf(
        out,
        "{\"ts\":%llu,\"worker\":%u,\"kind\":\"%s\",\"dir\":\"%s\",\"cid\":%llu,\"warrants\":[",
        static_cast<unsigned long long>(meta->timestamp_ns), meta->worker, kind_name(meta->kind),
        direction_name(meta->direction), static_cast<unsigned long long>(meta->correlation_id));
    for (unsigned i = 0; i < meta->warrant_count; ++i)
        std::fprintf(out, "%s%u", i ? "," : "", meta->warrant_ids[i]);
    std::fprintf(
        out,
        "],\"flags\":%u,\"family\":%u,\"proto\":%u,\"src\":\"%s\",\"sport\":%u,"
        "\"dst\":\"%s\",\"dport\":%u,\"len\":%u,\"payload_len\":%zu,\"payload_fnv\":\"%016llx\"}\n",
        meta->flags, meta->ip_family, meta->l4_proto,
        address(meta->src_ip, meta->ip_family).to_string().c_str(), meta->src_port,
        address(meta->dst_ip, meta->ip_family).to_string().c_str(), meta->dst_port,
        meta->original_length, len, static_cast<unsigned long long>(fnv1a(data + off, len)));
}

}  // namespace

int main(int argc, char** argv) {
    int eal_args = rte_eal_init(argc, argv);
    if (eal_args < 0) fail(std::string("EAL initialisation failed: ") + rte_strerror(rte_errno));
    if (rte_eal_process_type() != RTE_PROC_SECONDARY)
        fail("run as a DPDK secondary (--proc-type=secondary) with the dataplane's --file-prefix");
    std::string out_path;
    double seconds = 0;
    for (int i = eal_args + 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--out" && i + 1 < argc)
            out_path = argv[++i];
        else if (a == "--seconds" && i + 1 < argc)
            seconds = std::atof(argv[++i]);
        else
            fail("usage: tapwire-hitdump [EAL options] -- --out FILE [--seconds S]");
    }
    if (out_path.empty()) fail("--out FILE is required");

    const rte_memzone* mz = rte_memzone_lookup(shm::kStateMemzoneName);
    if (!mz)
        fail(std::string("no dataplane state memzone '") + shm::kStateMemzoneName +
             "' in this file prefix");
    const auto* state = static_cast<const volatile shm::DataplaneState*>(mz->addr);
    // The dataplane fills the header after its ports start: wait for the magic.
    for (int i = 0; i < 5000 && state->magic != shm::kStateMagic; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    if (state->magic != shm::kStateMagic) fail("dataplane state not initialised");
    if (state->contract_version != shm::kContractVersion)
        fail("contract version " + std::to_string(state->contract_version) + ", this tool speaks " +
             std::to_string(shm::kContractVersion));
    std::vector<rte_ring*> rings;
    for (unsigned w = 0; w < state->worker_count; ++w) {
        rte_ring* r = rte_ring_lookup(shm::hit_ring_name(w).c_str());
        if (!r) fail("no hit ring " + shm::hit_ring_name(w));
        rings.push_back(r);
    }
    FILE* out = std::fopen(out_path.c_str(), "w");
    if (!out) fail("cannot write " + out_path);

    auto started = std::chrono::steady_clock::now();
    std::vector<std::uint8_t> buffer;
    rte_mbuf* burst[64];
    std::uint64_t hits = 0;
    for (;;) {
        unsigned got = 0;
        for (rte_ring* r : rings) {
            unsigned n = rte_ring_sc_dequeue_burst(r, reinterpret_cast<void**>(burst), 64, nullptr);
            for (unsigned i = 0; i < n; ++i) {
                write_hit(out, burst[i], buffer);
                rte_pktmbuf_free(burst[i]);
            }
            got += n;
        }
        hits += got;
        if (got) continue;
        double elapsed =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
        if (seconds > 0 && elapsed >= seconds) break;
        if (seconds == 0 && !rte_eal_primary_proc_alive(nullptr)) break;
        std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    std::fclose(out);
    std::printf("tapwire-hitdump: %llu hits written to %s\n", static_cast<unsigned long long>(hits),
                out_path.c_str());
    return 0;
}
