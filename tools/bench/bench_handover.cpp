// Handover encoding on one core, per format: records per second for CC (a 214-byte RTP
// packet, G.711 20 ms) and IRI (a 1 KB SIP INVITE with SDP), each with the next sequence
// number and a later timestamp, into one reused buffer. The baseline in the same run copies
// the payload into the buffer: the least any encoder must do. Then the same CC records
// appended to an on-disk spool (one fdatasync per 1000 records, in the appending thread).
//
// Then delivered, per format and record kind: a producer thread encodes N records (sequence
// numbers 0..N-1) as fast as it can and appends them to a real Spool in a temporary directory,
// a flusher thread calls flush() every 5 ms, a real Delivery (plain TCP, no keep-alives) sends
// them over loopback to a receiver thread that accepts one connection and counts bytes. Per
// round: N over the time from the first append to the last byte received, and to the spool's
// acked() reaching N; the encode-only figure of the same run is the baseline. acked() moves
// when the delivery thread next looks at the send queue (SIOCOUTQ, at the latest every
// poll_interval), so it trails the last byte by up to one poll_interval. Producer, flusher,
// delivery and receiver threads (and the main thread polling acked() each ms) share the
// machine's cores (2 on the development VM): this is the rate of the whole pipeline on those
// cores, not of one thread; CPU ns per record per thread say where the time goes. The program
// fails when the bytes received differ from the sum of the encoded sizes, when acked() does
// not reach N within 60 s, or when the spool refuses a record.
// Goal (issue 5): at least 1M CC records per second per core for ETSI.
//
// Usage: tapwire-bench-handover [--rounds N] [--poll-ms MS] [--quick]
// --poll-ms sets the Delivery's poll_interval (default: DeliveryOptions', 10 ms). Once a batch
// is written and nobody calls notify(), the delivery thread waits up to that long before it
// reads the next batch, so it bounds the delivered rate after the producer is done: compare.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "handover/calea.hpp"
#include "handover/delivery.hpp"
#include "handover/etsi_102232.hpp"
#include "handover/record.hpp"
#include "handover/spool.hpp"
#include "handover/x2x3.hpp"
#include "tools/bench/bench_stats.hpp"

namespace {

using namespace tapwire;
using namespace tapwire::handover;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

std::array<std::uint8_t, 214> rtp_packet() {
    // IPv4/UDP/RTP: 20 + 8 + 12 header bytes, 174 bytes of G.711 payload.
    std::array<std::uint8_t, 214> p{};
    const std::uint8_t head[] = {0x45, 0x00, 0x00, 0xD6, 0x12, 0x34, 0x00, 0x00, 0x40, 0x11,
                                 0x00, 0x00, 10,   0,    0,    1,    10,   0,    0,    2,
                                 0x4E, 0x20, 0x4E, 0x22, 0x00, 0xC2, 0x00, 0x00, 0x80, 0x00,
                                 0x01, 0x00, 0x00, 0x00, 0xA0, 0x00, 0xDE, 0xAD, 0xBE, 0xEF};
    std::memcpy(p.data(), head, sizeof head);
    for (std::size_t i = sizeof head; i < p.size(); ++i)
        p[i] = std::uint8_t(0xD5 ^ i);
    return p;
}

std::string sip_invite_1k() {
    std::string head =
        "INVITE sip:+4930123456@ims.example.net SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK776asdhds\r\n"
        "Max-Forwards: 70\r\n"
        "To: <sip:+4930123456@ims.example.net>\r\n"
        "From: \"Alice\" <sip:+4930654321@ims.example.net>;tag=1928301774\r\n"
        "Call-ID: a84b4c76e66710@10.0.0.1\r\n"
        "CSeq: 314159 INVITE\r\n"
        "Contact: <sip:+4930654321@10.0.0.1:5060>\r\n"
        "Content-Type: application/sdp\r\n"
        "Content-Length: ";
    std::string body =
        "v=0\r\no=alice 2890844526 2890844526 IN IP4 10.0.0.1\r\ns=-\r\n"
        "c=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 20000 RTP/AVP 0 8 101\r\n"
        "a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n";
    const std::size_t fixed = head.size() + 3 + 4;  // "NNN" and the blank line
    while (fixed + body.size() < 1024)
        body += "a=x-pad:0\r\n";
    body.resize(1024 - fixed);
    return head + std::to_string(body.size()) + "\r\n\r\n" + body;
}

WarrantContext context() {
    WarrantContext c;
    c.liid = "DE-BKA-2026-000123";
    c.authorization_country_code = "DE";
    c.delivery_country_code = "DE";
    c.operator_identifier = "TAPWIRE-OP";
    c.network_element_identifier = "tw-fra-01";
    c.interception_point_id = "FRA1";
    c.xid = "2b9c4c1e-7d3a-4f0e-9a57-0c2f4d8e1b6a";
    return c;
}

void print(const bench::Row& row, std::size_t bytes, double base_ns) {
    std::printf("  %-34s %9.1f %9.1f %9.1f %9.2f %7zu  %6.1fx\n", row.name.c_str(), row.ns.median,
                row.ns.p10, row.ns.p90, 1e3 / row.ns.median, bytes, row.ns.median / base_ns);
}

// Removes the benchmark's temporary directory on every way out of main.
struct TempRoot {
    std::string path;
    ~TempRoot() {
        std::error_code ec;
        if (!path.empty()) std::filesystem::remove_all(path, ec);
    }
};

double seconds(Clock::duration d) {
    return std::chrono::duration<double>(d).count();
}

std::uint64_t thread_cpu_ns() {
    timespec ts{};
    ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return std::uint64_t(ts.tv_sec) * 1'000'000'000u + std::uint64_t(ts.tv_nsec);
}

std::uint64_t process_cpu_ns() {
    timespec ts{};
    ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return std::uint64_t(ts.tv_sec) * 1'000'000'000u + std::uint64_t(ts.tv_nsec);
}

// ---------------------------------------------------------------------------------------
// Delivered: producer -> Spool (+ flusher) -> Delivery -> loopback TCP -> receiver

enum class Kind { Cc, Iri };

// The records one delivered round encodes: record `seq` is the same in every round and in
// the untimed pass that sums the sizes, so the receiver knows the byte total in advance.
struct Source {
    const Encoder* encoder = nullptr;
    const PreparedWarrant* warrant = nullptr;
    Kind kind = Kind::Cc;
    CcRecord cc;
    IriRecord iri;

    std::size_t encode(std::uint64_t seq, std::span<std::uint8_t> out) {
        if (kind == Kind::Cc) {
            cc.header.sequence = seq;
            cc.header.timestamp_ns = 1'790'000'000'000'000'000 + std::int64_t(seq) * 20'000'000;
            return encoder->encode_cc(*warrant, cc, out);
        }
        iri.header.sequence = seq;
        iri.header.timestamp_ns = 1'790'000'000'000'000'000 + std::int64_t(seq) * 1'000'000;
        return encoder->encode_iri(*warrant, iri, out);
    }
};

struct RoundResult {
    std::string error;          // empty when the round checked out
    double append_s = 0;        // first append to the last append returned
    double last_byte_s = 0;     // first append to the last byte received
    double acked_s = 0;         // first append to acked() == records accepted
    std::uint64_t refused = 0;  // appends the spool refused (the records are then not sent)
    // CPU ns over the round per thread; "rest" is the delivery thread plus the main thread.
    double cpu_producer = 0, cpu_flusher = 0, cpu_receiver = 0, cpu_rest = 0;
};

// A listening socket on 127.0.0.1, any port.
int listen_loopback(std::uint16_t& port, std::string& error) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        error = std::string("socket: ") + std::strerror(errno);
        return -1;
    }
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd, 1) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
        error = std::string("listen: ") + std::strerror(errno);
        ::close(fd);
        return -1;
    }
    port = ntohs(a.sin_port);
    return fd;
}

// accept() and recv() wake up this often to look at the stop flag (Linux honours
// SO_RCVTIMEO for both), so no poll() call per read.
void set_receive_timeout(int fd) {
    timeval tv{0, 20'000};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

RoundResult deliver_round(const std::string& directory, Source source, std::uint64_t records,
                          std::uint64_t total_bytes, std::size_t max_pdu,
                          std::chrono::milliseconds poll_interval) {
    RoundResult res;
    SpoolOptions so;
    so.directory = directory;
    // Room for every record of the round even if nothing were acknowledged (frame header
    // per record, one segment being filled and one being reclaimed): refusals would be a bug.
    const std::uint64_t need = records * (max_pdu + Spool::kFrameHeaderBytes) +
                               2 * so.segment_bytes + so.write_buffer_bytes;
    so.max_total_bytes = std::max(so.max_total_bytes, need);
    auto opened = Spool::open(so);
    if (!opened.spool) {
        res.error = "spool: " + opened.message;
        return res;
    }
    Spool& spool = *opened.spool;

    std::uint16_t port = 0;
    const int lfd = listen_loopback(port, res.error);
    if (lfd < 0) return res;
    set_receive_timeout(lfd);

    std::atomic<bool> stop_receiver{false}, stop_flusher{false};
    std::atomic<bool> all_received{false}, producer_done{false};
    // What the receiver must get: the sum of the encoded sizes, less any refused records.
    std::atomic<std::uint64_t> expected{total_bytes};
    std::atomic<std::uint64_t> accepted{0};
    std::uint64_t received = 0;
    Clock::time_point t_first{}, t_last_append{}, t_last_byte{};
    std::uint64_t encode_failures = 0, flush_errors = 0;
    SpoolStatus flush_status = SpoolStatus::Ok;
    std::uint64_t cpu_producer = 0, cpu_flusher = 0, cpu_receiver = 0;
    const std::uint64_t cpu0 = process_cpu_ns();

    std::thread receiver([&] {
        const std::uint64_t c0 = thread_cpu_ns();
        int fd = -1;
        while (fd < 0 && !stop_receiver.load())
            fd = ::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
        if (fd >= 0) {
            set_receive_timeout(fd);
            std::vector<std::uint8_t> buf(256u << 10);
            // Reads on after the total until the delivery closes, so that extra bytes (a
            // resend) show up as a count mismatch.
            while (true) {
                const ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
                if (n > 0) received += std::uint64_t(n);
                if (!all_received.load(std::memory_order_relaxed) && received >= expected.load()) {
                    t_last_byte = Clock::now();
                    all_received.store(true);
                }
                if (n == 0) break;  // the delivery closed the connection
                if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) break;
                if (n < 0 && stop_receiver.load()) break;
            }
            ::close(fd);
        }
        cpu_receiver = thread_cpu_ns() - c0;
    });

    std::string error;
    DeliveryOptions dopt;
    dopt.host = "127.0.0.1";
    dopt.port = port;
    dopt.poll_interval = poll_interval;
    dopt.keepalive_interval = 0ms;  // keep-alives would add bytes to the counted stream
    auto delivery = Delivery::create(dopt, spool, {}, {}, error);
    if (!delivery) {
        stop_receiver = true;
        receiver.join();
        ::close(lfd);
        res.error = "delivery: " + error;
        return res;
    }
    delivery->start();
    // Connected before the clock starts: the connect is not what is measured.
    const auto connect_deadline = Clock::now() + 10s;
    while (!delivery->up() && Clock::now() < connect_deadline)
        std::this_thread::sleep_for(1ms);
    if (!delivery->up()) {
        res.error = "delivery did not connect: " + delivery->status().last_error;
        delivery->stop();
        stop_receiver = true;
        receiver.join();
        ::close(lfd);
        return res;
    }

    std::thread flusher([&] {
        const std::uint64_t c0 = thread_cpu_ns();
        while (!stop_flusher.load()) {
            const SpoolStatus s = spool.flush();
            if (s != SpoolStatus::Ok) ++flush_errors, flush_status = s;
            std::this_thread::sleep_for(5ms);
        }
        cpu_flusher = thread_cpu_ns() - c0;
    });

    std::thread producer([&] {
        const std::uint64_t c0 = thread_cpu_ns();
        std::vector<std::uint8_t> out(max_pdu);
        std::uint64_t ok = 0;
        t_first = Clock::now();
        for (std::uint64_t i = 0; i < records; ++i) {
            const std::size_t n = source.encode(i, out);
            if (n == 0) {
                ++encode_failures;
                break;
            }
            if (spool.append(ByteSpan(out.data(), n)).status == SpoolStatus::Ok) {
                ++ok;
            } else {
                ++res.refused;
                expected.fetch_sub(n);
            }
            // Wakes an idle delivery thread sooner than its poll_interval, without an
            // eventfd write per record.
            if ((i & 1023) == 1023) delivery->notify();
        }
        delivery->notify();
        t_last_append = Clock::now();
        accepted.store(ok);
        producer_done.store(true);
        cpu_producer = thread_cpu_ns() - c0;
    });

    // Waits for acked() to reach the records accepted, and for the receiver's last byte.
    const auto deadline = Clock::now() + 60s;
    Clock::time_point t_acked{};
    bool acked_all = false;
    while (Clock::now() < deadline) {
        if (!acked_all && producer_done.load() && spool.acked() >= accepted.load()) {
            t_acked = Clock::now();
            acked_all = true;
        }
        if (acked_all && all_received.load()) break;
        std::this_thread::sleep_for(1ms);
    }
    producer.join();
    const DeliveryStatus ds = delivery->status();
    delivery->stop();  // closes the connection: the receiver sees EOF
    stop_receiver = true;
    receiver.join();
    stop_flusher = true;
    flusher.join();
    ::close(lfd);
    const std::uint64_t cpu_all = process_cpu_ns() - cpu0;

    const double n = double(records);
    res.cpu_producer = double(cpu_producer) / n;
    res.cpu_flusher = double(cpu_flusher) / n;
    res.cpu_receiver = double(cpu_receiver) / n;
    res.cpu_rest = double(cpu_all - cpu_producer - cpu_flusher - cpu_receiver) / n;
    res.append_s = seconds(t_last_append - t_first);
    res.last_byte_s = seconds(t_last_byte - t_first);
    res.acked_s = seconds(t_acked - t_first);
    char buf[512];
    if (encode_failures) {
        res.error = "an encode failed";
    } else if (!acked_all) {
        std::snprintf(buf, sizeof buf, "acked %llu of %llu records after 60 s",
                      (unsigned long long)spool.acked(), (unsigned long long)accepted.load());
        res.error = buf;
    } else if (received != expected.load()) {
        std::snprintf(buf, sizeof buf, "received %llu bytes, expected %llu",
                      (unsigned long long)received, (unsigned long long)expected.load());
        res.error = buf;
    } else if (res.refused) {
        std::snprintf(buf, sizeof buf, "spool refused %llu records",
                      (unsigned long long)res.refused);
        res.error = buf;
    } else if (flush_errors) {
        res.error = std::string("flush: ") + to_string(flush_status) + " " + spool.last_error();
    } else if (ds.counters[DeliveryCounter::connects] != 1 ||
               ds.counters[DeliveryCounter::disconnects] != 0) {
        res.error = "delivery reconnected: " + ds.last_error;
    }
    return res;
}

}  // namespace

int main(int argc, char** argv) {
    int rounds = 21;
    std::size_t per_round = 200'000;
    std::uint64_t delivered_cc = 1'000'000, delivered_iri = 200'000;
    std::chrono::milliseconds poll_interval = DeliveryOptions{}.poll_interval;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--quick") {
            rounds = 5, per_round = 20'000;
            delivered_cc = 20'000, delivered_iri = 5'000;
        } else if (a == "--rounds" && i + 1 < argc) {
            rounds = std::atoi(argv[++i]);
        } else if (a == "--poll-ms" && i + 1 < argc) {
            poll_interval = std::chrono::milliseconds(std::max(1, std::atoi(argv[++i])));
        } else {
            std::fprintf(stderr,
                         "usage: tapwire-bench-handover [--rounds N] [--poll-ms MS] [--quick]\n");
            return 2;
        }
    }
    const int delivered_rounds = std::max(3, rounds / 4);

    // Every spool of the run lives under one directory, removed on exit.
    TempRoot root{(std::filesystem::temp_directory_path() / "tw-bench-spool-XXXXXX").string()};
    if (::mkdtemp(root.path.data()) == nullptr) {
        std::perror("mkdtemp");
        root.path.clear();
        return 1;
    }

    const auto packet = rtp_packet();
    const std::string sip = sip_invite_1k();
    CcRecord cc;
    cc.header = {0x1234567, 0, 1'790'000'000'123'456'789};
    cc.direction = Direction::FromTarget;
    cc.ip_packet = packet;
    IriRecord iri;
    iri.header = cc.header;
    iri.type = IriType::Continue;
    iri.sip_message = ByteSpan(reinterpret_cast<const std::uint8_t*>(sip.data()), sip.size());
    iri.source = {IpAddress::v4(0x0A000001), 5060};
    iri.destination = {IpAddress::v4(0x0A000002), 5060};

    std::vector<std::uint8_t> out(4096);
    std::size_t sink = 0;
    std::printf(
        "tapwire-bench-handover: %d rounds of %zu records, one core; ns per record "
        "(median, p10, p90), M records/s, PDU bytes, ratio to the baseline\n\n",
        rounds, per_round);
    std::printf("  %-34s %9s %9s %9s %9s %7s  %7s\n", "", "median", "p10", "p90", "M/s", "bytes",
                "vs base");
    const bench::Row base_cc =
        bench::measure("baseline: copy 214 B packet", 1, per_round, rounds, [&](std::size_t) {
            std::memcpy(out.data(), packet.data(), packet.size());
            bench::keep(out[7]);
        });
    print(base_cc, packet.size(), base_cc.ns.median);
    const bench::Row base_iri =
        bench::measure("baseline: copy 1 KB SIP", 1, per_round, rounds, [&](std::size_t) {
            std::memcpy(out.data(), sip.data(), sip.size());
            bench::keep(out[7]);
        });
    print(base_iri, sip.size(), base_iri.ns.median);

    const std::unique_ptr<Encoder> encoders[] = {make_etsi_102232_encoder(), make_x2x3_encoder(),
                                                 make_calea_encoder()};
    std::unique_ptr<PreparedWarrant> warrants[std::size(encoders)];
    double encode_ns[std::size(encoders)][2] = {};  // the delivered section's baseline
    for (std::size_t e = 0; e < std::size(encoders); ++e) {
        const auto& encoder = encoders[e];
        std::string error;
        warrants[e] = encoder->prepare(context(), error);
        if (!warrants[e]) {
            std::fprintf(stderr, "%s: prepare: %s\n", encoder->name(), error.c_str());
            return 1;
        }
        const PreparedWarrant& warrant = *warrants[e];
        std::size_t cc_bytes = 0, iri_bytes = 0;
        const bench::Row row_cc = bench::measure(std::string(encoder->name()) + " CC (RTP 214 B)",
                                                 1, per_round, rounds, [&](std::size_t) {
                                                     ++cc.header.sequence;
                                                     cc.header.timestamp_ns += 20'000'000;
                                                     cc_bytes =
                                                         encoder->encode_cc(warrant, cc, out);
                                                     sink += cc_bytes;
                                                 });
        const bench::Row row_iri = bench::measure(std::string(encoder->name()) + " IRI (SIP 1 KB)",
                                                  1, per_round, rounds, [&](std::size_t) {
                                                      ++iri.header.sequence;
                                                      iri.header.timestamp_ns += 1'000'000;
                                                      iri_bytes =
                                                          encoder->encode_iri(warrant, iri, out);
                                                      sink += iri_bytes;
                                                  });
        if (cc_bytes == 0 || iri_bytes == 0) {
            std::fprintf(stderr, "%s: an encode failed\n", encoder->name());
            return 1;
        }
        print(row_cc, cc_bytes, base_cc.ns.median);
        print(row_iri, iri_bytes, base_iri.ns.median);
        encode_ns[e][0] = row_cc.ns.median;
        encode_ns[e][1] = row_iri.ns.median;
    }

    // The same ETSI CC records into a spool on disk, fdatasync every 1000 records.
    SpoolOptions options;
    options.directory = root.path + "/append";
    options.segment_bytes = 64u << 20;
    options.max_total_bytes = 1ull << 30;
    auto opened = Spool::open(options);
    if (!opened.spool) {
        std::fprintf(stderr, "spool: %s\n", opened.message.c_str());
        return 1;
    }
    const Encoder& etsi = *encoders[0];
    const PreparedWarrant& etsi_warrant = *warrants[0];
    std::size_t appended = 0;
    const bench::Row row_spool =
        bench::measure("etsi-102232 CC encode + spool append", 1, per_round / 4,
                       std::max(3, rounds / 4), [&](std::size_t) {
                           ++cc.header.sequence;
                           const std::size_t n = etsi.encode_cc(etsi_warrant, cc, out);
                           opened.spool->append(ByteSpan(out.data(), n));
                           if (++appended % 1000 == 0) opened.spool->flush();
                       });
    print(row_spool, 0, base_cc.ns.median);
    std::printf("\n  (spool in %s, one fdatasync per 1000 records in the appending thread)\n",
                options.directory.c_str());
    opened.spool.reset();

    // Delivered: encoded, spooled, sent over loopback TCP, received and acknowledged.
    std::printf(
        "\ndelivered: %d rounds of %llu CC / %llu IRI records; producer -> spool (flush every "
        "5 ms) -> Delivery -> 127.0.0.1 -> receiver, all threads on the machine's cores;\n"
        "k records/s from the first append to the last byte received (median, p10, p90) and "
        "to acked() == N (median),\nappend-only k/s (median), encode-only k/s from above as "
        "baseline, CPU ns per record (median) per thread\n\n",
        delivered_rounds, (unsigned long long)delivered_cc, (unsigned long long)delivered_iri);
    std::printf("  %-24s %6s %8s %8s %8s %8s %8s %8s %5s  %5s %5s %5s %5s\n", "", "bytes", "last B",
                "p10", "p90", "acked", "append", "encode", "refsd", "prod", "flush", "recv",
                "dlvr+");
    for (std::size_t e = 0; e < std::size(encoders); ++e) {
        for (const Kind kind : {Kind::Cc, Kind::Iri}) {
            Source source;
            source.encoder = encoders[e].get();
            source.warrant = warrants[e].get();
            source.kind = kind;
            source.cc = cc;
            source.iri = iri;
            const std::uint64_t records = kind == Kind::Cc ? delivered_cc : delivered_iri;
            // Untimed pass: the byte total the receiver must see, and the largest PDU.
            std::uint64_t total = 0;
            std::size_t max_pdu = 0;
            for (std::uint64_t i = 0; i < records; ++i) {
                const std::size_t n = source.encode(i, out);
                if (n == 0) {
                    std::fprintf(stderr, "%s: an encode failed\n", encoders[e]->name());
                    return 1;
                }
                total += n;
                max_pdu = std::max(max_pdu, n);
            }
            const std::string name = std::string(encoders[e]->name()) +
                                     (kind == Kind::Cc ? " CC" : " IRI") + " delivered";
            std::vector<double> last_byte, acked, append, prod, flush, recv, rest;
            std::uint64_t refused = 0;
            for (int r = 0; r < delivered_rounds; ++r) {
                const std::string dir = root.path + "/" + encoders[e]->name() +
                                        (kind == Kind::Cc ? "-cc-" : "-iri-") + std::to_string(r);
                const RoundResult res =
                    deliver_round(dir, source, records, total, max_pdu, poll_interval);
                refused += res.refused;
                if (!res.error.empty()) {
                    std::fflush(stdout);  // the table so far, before the reason
                    std::fprintf(stderr, "%s, round %d: %s\n", name.c_str(), r, res.error.c_str());
                    return 1;
                }
                last_byte.push_back(double(records) / res.last_byte_s / 1e3);
                acked.push_back(double(records) / res.acked_s / 1e3);
                append.push_back(double(records) / res.append_s / 1e3);
                prod.push_back(res.cpu_producer);
                flush.push_back(res.cpu_flusher);
                recv.push_back(res.cpu_receiver);
                rest.push_back(res.cpu_rest);
                // Each round's segments go now: the disk holds one round at a time.
                std::error_code ec;
                std::filesystem::remove_all(dir, ec);
            }
            const bench::Stats lb = bench::stats_of(last_byte);
            std::printf(
                "  %-24s %6.0f %8.0f %8.0f %8.0f %8.0f %8.0f %8.0f %5llu  %5.0f %5.0f %5.0f "
                "%5.0f\n",
                name.c_str(), double(total) / double(records), lb.median, lb.p10, lb.p90,
                bench::stats_of(acked).median, bench::stats_of(append).median,
                1e6 / encode_ns[e][kind == Kind::Cc ? 0 : 1], (unsigned long long)refused,
                bench::stats_of(prod).median, bench::stats_of(flush).median,
                bench::stats_of(recv).median, bench::stats_of(rest).median);
        }
    }
    std::printf(
        "\n  (spools under %s, removed at the end; CPU columns: producer (encode + append), "
        "flusher,\n  receiver, and the rest of the process: the delivery thread and the main "
        "thread polling acked())\n",
        root.path.c_str());
    bench::keep(sink);
    return 0;
}
