// The delivery client (handover/delivery.hpp) against a real receiver on 127.0.0.1 (plain
// TCP and TLS 1.3 with a certificate made by the openssl CLI at test time), reading from a
// real on-disk spool. Records are framed by the test itself so the receiver can check them:
// be32 length (8 + payload) | be64 spool index | payload derived from the index; a keep-alive
// is the same frame with index 2^64-1 and no payload.
#include "handover/delivery.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tests/unit/temp_dir.hpp"

using namespace tapwire;
using namespace tapwire::handover;
using tapwire::test::TempDir;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {

constexpr std::uint64_t kKeepaliveIndex = ~0ull;

// The test's own servers write to sockets the client may have reset (TLS alerts): the
// client blocks SIGPIPE on its thread, the test servers need it ignored.
const bool kSigpipeIgnored = [] {
    std::signal(SIGPIPE, SIG_IGN);
    return true;
}();

std::size_t payload_size(std::uint64_t index) {
    return 40 + (index * 37) % 300;
}

std::vector<std::uint8_t> make_frame(std::uint64_t index, std::size_t payload) {
    std::vector<std::uint8_t> f(12 + payload);
    const std::uint32_t len = static_cast<std::uint32_t>(8 + payload);
    for (int i = 0; i < 4; ++i)
        f[i] = static_cast<std::uint8_t>(len >> (24 - 8 * i));
    for (int i = 0; i < 8; ++i)
        f[4 + i] = static_cast<std::uint8_t>(index >> (56 - 8 * i));
    for (std::size_t k = 0; k < payload; ++k)
        f[12 + k] = static_cast<std::uint8_t>(index * 7 + k);
    return f;
}

std::vector<std::uint8_t> make_record(std::uint64_t index) {
    return make_frame(index, payload_size(index));
}

// What the receivers saw, across connections and restarts.
struct Received {
    std::mutex m;
    std::vector<std::uint64_t> indices;  // complete, verified records in arrival order
    std::vector<Clock::time_point> keepalives;
    std::uint64_t bad = 0;  // frames whose length or payload did not check
    std::uint64_t connections = 0;

    std::size_t count() {
        std::lock_guard l(m);
        return indices.size();
    }
    std::vector<std::uint64_t> snapshot() {
        std::lock_guard l(m);
        return indices;
    }
};

// Parses frames out of one connection's byte stream.
struct Parser {
    Received& out;
    std::vector<std::uint8_t> buf;
    bool feed(const std::uint8_t* p, std::size_t n) {
        buf.insert(buf.end(), p, p + n);
        std::size_t pos = 0;
        bool ok = true;
        while (buf.size() - pos >= 12) {
            const std::uint8_t* f = buf.data() + pos;
            std::uint32_t len = 0;
            for (int i = 0; i < 4; ++i)
                len = len << 8 | f[i];
            if (len < 8 || len > (1u << 20)) {
                ok = false;
                break;
            }
            if (buf.size() - pos < 4 + len) break;
            std::uint64_t idx = 0;
            for (int i = 0; i < 8; ++i)
                idx = idx << 8 | f[4 + i];
            std::lock_guard l(out.m);
            if (idx == kKeepaliveIndex && len == 8) {
                out.keepalives.push_back(Clock::now());
            } else if (len - 8 != payload_size(idx) ||
                       std::memcmp(f, make_record(idx).data(), 4 + len) != 0) {
                ++out.bad;
            } else {
                out.indices.push_back(idx);
            }
            pos += 4 + len;
        }
        buf.erase(buf.begin(), buf.begin() + static_cast<long>(pos));
        if (!ok) {
            std::lock_guard l(out.m);
            ++out.bad;
        }
        return ok;
    }
};

int listen_on(std::uint16_t port) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(::listen(fd, 8) == 0);
    return fd;
}

std::uint16_t local_port(int fd) {
    sockaddr_in a{};
    socklen_t l = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &l);
    return ntohs(a.sin_port);
}

// A port nothing listens on (bound once to pick it, then closed).
std::uint16_t free_port() {
    int fd = listen_on(0);
    std::uint16_t p = local_port(fd);
    ::close(fd);
    return p;
}

// The LEMF stand-in: one connection at a time, plain or TLS. Behaviours: stall (stop
// reading), kill_after (after that many bytes of the first connection: stop reading, wait
// until the kernel buffer is stable, i.e. the window is closed and nothing more arrives,
// count what the kernel acknowledged as received (MSG_PEEK), then reset the connection and
// stop listening: a LEMF that read everything its kernel acknowledged, then vanished).
class Receiver {
  public:
    Receiver(Received& out, std::uint16_t port, SSL_CTX* tls = nullptr,
             std::uint64_t kill_after = 0)
        : out_(out), tls_(tls), kill_after_(kill_after) {
        listen_fd_ = listen_on(port);
        port_ = local_port(listen_fd_);
        thread_ = std::thread([this] { run(); });
    }
    ~Receiver() {
        stop_ = true;
        thread_.join();
        if (listen_fd_ >= 0) ::close(listen_fd_);
    }
    std::uint16_t port() const { return port_; }
    std::atomic<bool> stall{false};
    std::atomic<bool> killed{false};
    std::atomic<std::uint64_t> bytes{0};

  private:
    void run() {
        while (!stop_ && !killed) {
            pollfd p{listen_fd_, POLLIN, 0};
            if (::poll(&p, 1, 20) <= 0) continue;
            int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
            if (fd < 0) continue;
            {
                std::lock_guard l(out_.m);
                ++out_.connections;
            }
            timeval tv{0, 20000};
            ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
            serve(fd);
        }
        if (killed) {
            ::close(listen_fd_);
            listen_fd_ = -1;
        }
    }

    void serve(int fd) {
        SSL* ssl = nullptr;
        if (tls_) {
            ssl = SSL_new(tls_);
            SSL_set_fd(ssl, fd);
            const auto deadline = Clock::now() + 2s;
            int r;
            while ((r = SSL_accept(ssl)) != 1) {
                int e = SSL_get_error(ssl, r);
                if ((e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) || stop_ ||
                    Clock::now() > deadline) {
                    ERR_clear_error();
                    SSL_free(ssl);
                    ::close(fd);
                    return;
                }
            }
        }
        Parser parser{out_, {}};
        std::uint8_t buf[16384];
        while (!stop_) {
            if (stall) {
                std::this_thread::sleep_for(5ms);
                continue;
            }
            std::size_t want = sizeof buf;
            if (kill_after_ && !killed) {
                if (bytes >= kill_after_) {
                    kill(fd, parser);
                    return;
                }
                want = std::min<std::size_t>(want, kill_after_ - bytes);
            }
            long n;
            if (ssl) {
                n = SSL_read(ssl, buf, static_cast<int>(want));
                if (n <= 0) {
                    int e = SSL_get_error(ssl, static_cast<int>(n));
                    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) continue;
                    break;
                }
            } else {
                n = ::recv(fd, buf, want, 0);
                if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
                if (n <= 0) break;
            }
            bytes += static_cast<std::uint64_t>(n);
            if (!parser.feed(buf, static_cast<std::size_t>(n))) break;
        }
        if (ssl) {
            SSL_shutdown(ssl);
            SSL_free(ssl);
        }
        ::close(fd);
    }

    void kill(int fd, Parser& parser) {
        int last = -1, n = 0, stable = 0;
        while (stable < 4 && !stop_) {  // window closed: the queue stops growing
            std::this_thread::sleep_for(40ms);
            ::ioctl(fd, FIONREAD, &n);
            stable = n == last ? stable + 1 : 0;
            last = n;
        }
        std::vector<std::uint8_t> rest(static_cast<std::size_t>(n) + 1);
        long got = ::recv(fd, rest.data(), rest.size(), MSG_PEEK | MSG_DONTWAIT);
        if (got > 0) parser.feed(rest.data(), static_cast<std::size_t>(got));
        linger lg{1, 0};  // RST
        ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        ::close(fd);
        killed = true;
    }

    Received& out_;
    SSL_CTX* tls_;
    std::uint64_t kill_after_;
    int listen_fd_ = -1;
    std::uint16_t port_ = 0;
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

struct SpoolFixture {
    TempDir dir{"tapwire-delivery"};
    std::unique_ptr<Spool> spool;
    std::uint64_t appended = 0;
    SpoolFixture() {
        SpoolOptions o;
        o.directory = dir.file("spool");
        o.segment_bytes = 4u << 20;
        o.max_total_bytes = 64u << 20;
        auto r = Spool::open(o);
        REQUIRE(r.spool);
        spool = std::move(r.spool);
    }
    void append(std::uint64_t n) {
        for (std::uint64_t i = 0; i < n; ++i) {
            auto rec = make_record(appended);
            auto a = spool->append(ByteSpan(rec.data(), rec.size()));
            REQUIRE(a.status == SpoolStatus::Ok);
            REQUIRE(a.index == appended);
            ++appended;
        }
    }
};

DeliveryOptions options_for(std::uint16_t port) {
    DeliveryOptions o;
    o.host = "127.0.0.1";
    o.port = port;
    o.backoff_initial = 20ms;
    o.backoff_max = 200ms;
    o.backoff_jitter = 0;
    o.connect_timeout = 1000ms;
    o.poll_interval = 5ms;
    o.keepalive_interval = 0ms;
    return o;
}

std::unique_ptr<Delivery> make_delivery(const DeliveryOptions& o, Spool& spool,
                                        KeepaliveSource ka = {}, DeliveryStateCallback cb = {}) {
    std::string error;
    auto d = Delivery::create(o, spool, std::move(ka), std::move(cb), error);
    INFO(error);
    REQUIRE(d);
    return d;
}

template <class F>
bool wait_for(F cond, std::chrono::milliseconds limit) {
    const auto end = Clock::now() + limit;
    while (Clock::now() < end) {
        if (cond()) return true;
        std::this_thread::sleep_for(2ms);
    }
    return cond();
}

std::uint64_t counter(const Delivery& d, DeliveryCounter c) {
    return d.status().counters[c];
}

// Every index in [0, n) at least once, in order once repeats are removed (a repeat may only
// restart from an earlier index: the resend after a reconnect), and each repeated index in
// [dup_first, dup_end).
void check_complete(const std::vector<std::uint64_t>& got, std::uint64_t n,
                    std::uint64_t dup_first = 0, std::uint64_t dup_end = 0) {
    std::vector<int> seen(n, 0);
    std::uint64_t next = 0;  // the next index never seen before
    std::string error;
    for (std::uint64_t idx : got) {
        if (idx >= n) {
            error = "index " + std::to_string(idx) + " never appended";
        } else if (seen[idx]++ == 0) {
            if (idx != next)  // a gap, or out of order
                error = "first arrival of " + std::to_string(idx) + ", expected " +
                        std::to_string(next);
            ++next;
        } else if (idx < dup_first || idx >= dup_end) {
            error = "repeat of " + std::to_string(idx) + " outside the marked range [" +
                    std::to_string(dup_first) + ", " + std::to_string(dup_end) + ")";
        }
        if (!error.empty()) break;
    }
    INFO(error);
    REQUIRE(error.empty());
    REQUIRE(next == n);
}

std::size_t repeats(const std::vector<std::uint64_t>& got) {
    std::vector<std::uint64_t> s = got;
    std::sort(s.begin(), s.end());
    return static_cast<std::size_t>(s.end() - std::unique(s.begin(), s.end()));
}

// TLS material made at test time by the openssl CLI: a self-signed certificate for
// "lemf.test" (its own CA) and a second one for the wrong name.
struct TlsMaterial {
    TempDir dir{"tapwire-delivery-tls"};
    bool ok = false;
    std::string cert, key, other_cert, other_key;
    TlsMaterial() {
        cert = dir.file("cert.pem");
        key = dir.file("key.pem");
        other_cert = dir.file("other.pem");
        other_key = dir.file("other-key.pem");
        auto gen = [&](const std::string& c, const std::string& k, const std::string& name) {
            std::string cmd =
                "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1"
                " -nodes -days 2 -subj /CN=" +
                name + " -addext subjectAltName=DNS:" + name + " -keyout " + k + " -out " + c +
                " >/dev/null 2>&1";
            return std::system(cmd.c_str()) == 0;
        };
        ok = gen(cert, key, "lemf.test") && gen(other_cert, other_key, "other.test");
    }
    static SSL_CTX* server_ctx(const std::string& c, const std::string& k) {
        SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
        REQUIRE(ctx);
        REQUIRE(SSL_CTX_use_certificate_file(ctx, c.c_str(), SSL_FILETYPE_PEM) == 1);
        REQUIRE(SSL_CTX_use_PrivateKey_file(ctx, k.c_str(), SSL_FILETYPE_PEM) == 1);
        return ctx;
    }
    static std::string pin_of(const std::string& c) {
        FILE* f = std::fopen(c.c_str(), "r");
        REQUIRE(f);
        X509* x = PEM_read_X509(f, nullptr, nullptr, nullptr);
        std::fclose(f);
        REQUIRE(x);
        unsigned char md[32];
        unsigned len = 0;
        REQUIRE(X509_digest(x, EVP_sha256(), md, &len) == 1);
        X509_free(x);
        char hex[65];
        for (int i = 0; i < 32; ++i)
            std::snprintf(hex + 2 * i, 3, "%02x", md[i]);
        return hex;
    }
};

}  // namespace

TEST_CASE("delivery: records arrive in order, complete, and are acked", "[delivery]") {
    SpoolFixture sf;
    Received rx;
    Receiver lemf(rx, 0);
    std::atomic<int> ups{0};
    auto d = make_delivery(options_for(lemf.port()), *sf.spool, {},
                           [&](bool up, const std::string&) { ups += up; });
    sf.append(1000);
    d->start();
    sf.append(1000);  // while running
    d->notify();
    REQUIRE(wait_for([&] { return rx.count() >= 2000 && sf.spool->acked() == 2000; }, 5s));
    check_complete(rx.snapshot(), 2000);
    auto st = d->status();
    CHECK(st.up);
    CHECK(ups == 1);
    CHECK(rx.bad == 0);
    CHECK(st.counters[DeliveryCounter::connects] == 1);
    CHECK(st.counters[DeliveryCounter::records_sent] == 2000);
    CHECK(st.counters[DeliveryCounter::records_acked] == 2000);
    CHECK(st.counters[DeliveryCounter::resent_after_reconnect] == 0);
    std::uint64_t bytes = 0;
    for (std::uint64_t i = 0; i < 2000; ++i)
        bytes += 12 + payload_size(i);
    CHECK(st.counters[DeliveryCounter::bytes_sent] == bytes);
}

TEST_CASE("delivery: backs off while the LEMF is down, then delivers everything", "[delivery]") {
    SpoolFixture sf;
    const std::uint16_t port = free_port();
    auto o = options_for(port);
    o.backoff_initial = 20ms;
    o.backoff_max = 160ms;
    auto d = make_delivery(o, *sf.spool);
    sf.append(300);
    const auto t0 = Clock::now();
    d->start();
    std::vector<long long> delays;  // backoff as sampled after each failure
    std::uint64_t seen = 0;
    while (seen < 6 && Clock::now() - t0 < 5s) {
        auto st = d->status();
        if (st.counters[DeliveryCounter::connect_failures] > seen) {
            seen = st.counters[DeliveryCounter::connect_failures];
            std::this_thread::sleep_for(2ms);  // the delay is drawn right after counting
            delays.push_back(d->status().backoff.count());
        }
        std::this_thread::sleep_for(1ms);
    }
    const auto elapsed = Clock::now() - t0;
    REQUIRE(seen >= 6);
    CHECK(!d->up());
    CHECK(d->status().last_error.find("Connection refused") != std::string::npos);
    // 20, 40, 80, 160, 160 ms between attempts: at least 300 ms for 5 retries.
    CHECK(elapsed >= 300ms);
    REQUIRE(delays.size() >= 4);
    CHECK(delays.front() <= 40);
    for (std::size_t i = 1; i < delays.size(); ++i)
        CHECK(delays[i] >= delays[i - 1]);
    CHECK(delays.back() == 160);
    sf.append(300);
    Received rx;
    Receiver lemf(rx, port);
    REQUIRE(wait_for([&] { return sf.spool->acked() == 600 && rx.count() >= 600; }, 5s));
    check_complete(rx.snapshot(), 600);
    CHECK(rx.snapshot().size() == 600);
    CHECK(d->up());
}

// The first receiver reads 100 kB (ending mid-record), stalls until its kernel buffer is
// stable, counts what its kernel acknowledged, resets the connection and stops listening; a
// second one starts on the same port 100 ms later.
void die_mid_stream(std::chrono::milliseconds poll_interval, bool expect_repeats) {
    SpoolFixture sf;
    Received rx;
    const std::uint16_t port = free_port();
    sf.append(3000);  // ~600 KB: more than the receive window
    auto o = options_for(port);
    o.poll_interval = poll_interval;
    auto d = make_delivery(o, *sf.spool);
    {
        Receiver first(rx, port, nullptr, 100000);
        d->start();
        REQUIRE(wait_for([&] { return first.killed.load(); }, 5s));
    }
    const std::uint64_t got_first = rx.count();
    REQUIRE(got_first > 0);
    REQUIRE(got_first < 3000);
    REQUIRE(wait_for([&] { return counter(*d, DeliveryCounter::disconnects) == 1; }, 3s));
    std::this_thread::sleep_for(100ms);  // the client retries against nothing meanwhile
    Receiver second(rx, port);
    REQUIRE(wait_for([&] { return sf.spool->acked() == 3000 && rx.count() >= 3000; }, 5s));
    auto st = d->status();
    const std::size_t rep = repeats(rx.snapshot());
    INFO("rewind [" << st.last_rewind_first << ", " << st.last_rewind_end << "), first got "
                    << got_first << ", repeats " << rep);
    CHECK(st.last_rewind_end > got_first);  // records in flight were marked and resent
    CHECK(st.counters[DeliveryCounter::resent_after_reconnect] ==
          st.last_rewind_end - st.last_rewind_first);
    CHECK(st.counters[DeliveryCounter::disconnects] == 1);
    CHECK(st.counters[DeliveryCounter::connects] == 2);
    CHECK(rx.bad == 0);
    if (expect_repeats) {
        // The client had not looked at the send queue since the LEMF took the last records
        // (poll interval 1 s): they were not acked, so they are resent, inside the range
        // marked as possible duplicates (check_complete checks where each repeat lies).
        CHECK(st.last_rewind_first < got_first);
        CHECK(rep == got_first - st.last_rewind_first);
    } else {
        // Everything the LEMF kernel acknowledged was acked to the spool before the reset
        // (the stall lasted many poll intervals), record by record: the rewind starts at the
        // first record that did not arrive whole, and nothing arrives twice.
        CHECK(st.last_rewind_first == got_first);
        CHECK(rep == 0);
    }
    check_complete(rx.snapshot(), 3000, st.last_rewind_first, st.last_rewind_end);
}

TEST_CASE("delivery: the LEMF dies mid-stream; every record arrives, duplicates only marked",
          "[delivery]") {
    SECTION("acks current: exact rewind, no repeat") {
        die_mid_stream(5ms, false);
    }
    SECTION("acks stale: repeats, all in the marked range") {
        die_mid_stream(1000ms, true);
    }
}

TEST_CASE("delivery: a stalled LEMF stops the sender, the spool keeps the records", "[delivery]") {
    SpoolFixture sf;
    Received rx;
    Receiver lemf(rx, 0);
    lemf.stall = true;
    auto d = make_delivery(options_for(lemf.port()), *sf.spool);
    d->start();
    sf.append(80000);  // ~17 MB: far beyond both socket buffers (loopback autotunes to MBs)
    d->notify();
    // The client fills the socket and stops: records_sent stops moving.
    std::uint64_t sent = 0;
    REQUIRE(wait_for(
        [&] {
            std::this_thread::sleep_for(100ms);
            std::uint64_t s = counter(*d, DeliveryCounter::records_sent);
            bool stable = s == sent && s > 0;
            sent = s;
            return stable;
        },
        5s));
    CHECK(sent < 80000);
    CHECK(rx.count() == 0);
    CHECK(sf.spool->acked() < sent);  // the unread part is not acknowledged
    sf.append(5000);                  // the spool keeps accepting
    CHECK(sf.spool->end_index() == 85000);
    CHECK(sf.spool->end_index() - sf.spool->acked() > 85000 - sent);  // piled up, counted
    CHECK(counter(*d, DeliveryCounter::records_sent) == sent);
    lemf.stall = false;
    REQUIRE(wait_for([&] { return sf.spool->acked() == 85000 && rx.count() >= 85000; }, 10s));
    check_complete(rx.snapshot(), 85000);
    CHECK(rx.snapshot().size() == 85000);
    CHECK(counter(*d, DeliveryCounter::disconnects) == 0);
}

TEST_CASE("delivery: TLS 1.3 with CA and name, pin; failures counted", "[delivery][tls]") {
    TlsMaterial tm;
    if (!tm.ok) {
        WARN("openssl CLI not available: TLS delivery test skipped");
        return;
    }
    SSL_CTX* good = TlsMaterial::server_ctx(tm.cert, tm.key);
    SSL_CTX* wrong = TlsMaterial::server_ctx(tm.other_cert, tm.other_key);

    auto deliver = [&](SSL_CTX* server, DeliveryTls tls) {
        SpoolFixture sf;
        Received rx;
        Receiver lemf(rx, 0, server);
        auto o = options_for(lemf.port());
        o.tls = tls;
        auto d = make_delivery(o, *sf.spool);
        sf.append(500);
        d->start();
        REQUIRE(wait_for([&] { return sf.spool->acked() == 500 && rx.count() >= 500; }, 5s));
        check_complete(rx.snapshot(), 500);
        CHECK(counter(*d, DeliveryCounter::tls_failures) == 0);
    };
    auto fail = [&](SSL_CTX* server, DeliveryTls tls, const char* expect) {
        SpoolFixture sf;
        Received rx;
        std::unique_ptr<Receiver> lemf;
        int plain_fd = -1;
        std::thread plain;
        std::atomic<bool> stop_plain{false};
        std::uint16_t port;
        if (server) {
            lemf = std::make_unique<Receiver>(rx, 0, server);
            port = lemf->port();
        } else {  // a plaintext server that answers garbage and closes
            plain_fd = listen_on(0);
            port = local_port(plain_fd);
            plain = std::thread([&] {
                while (!stop_plain) {
                    pollfd p{plain_fd, POLLIN, 0};
                    if (::poll(&p, 1, 20) <= 0) continue;
                    int fd = ::accept(plain_fd, nullptr, nullptr);
                    const char resp[] = "HTTP/1.0 400 Bad Request\r\n\r\n";
                    [[maybe_unused]] auto w = ::write(fd, resp, sizeof resp - 1);
                    ::close(fd);
                }
            });
        }
        auto o = options_for(port);
        o.tls = tls;
        std::atomic<int> downs{0};
        auto d =
            make_delivery(o, *sf.spool, {}, [&](bool up, const std::string&) { downs += !up; });
        sf.append(10);
        d->start();
        REQUIRE(wait_for([&] { return counter(*d, DeliveryCounter::tls_failures) >= 2; }, 5s));
        auto st = d->status();
        INFO(st.last_error);
        CHECK(!st.up);
        CHECK(st.last_error.find(expect) != std::string::npos);
        CHECK(st.counters[DeliveryCounter::connects] == 0);
        CHECK(st.backoff.count() > 0);
        CHECK(downs == 1);  // reported down once, not per attempt
        CHECK(rx.count() == 0);
        CHECK(sf.spool->acked() == 0);
        d->stop();
        st = d->status();  // stable now
        CHECK(st.counters[DeliveryCounter::connect_failures] ==
              st.counters[DeliveryCounter::tls_failures]);
        stop_plain = true;
        if (plain.joinable()) plain.join();
        if (plain_fd >= 0) ::close(plain_fd);
    };

    SECTION("CA and the right name") {
        deliver(good, {tm.cert, "lemf.test", ""});
    }
    SECTION("pinned certificate") {
        deliver(good, {"", "lemf.test", TlsMaterial::pin_of(tm.cert)});
    }
    SECTION("CA and pin together") {
        deliver(good, {tm.cert, "lemf.test", TlsMaterial::pin_of(tm.cert)});
    }
    SECTION("wrong pin") {
        fail(good, {"", "lemf.test", TlsMaterial::pin_of(tm.other_cert)}, "pinned");
    }
    SECTION("wrong name") {
        fail(good, {tm.cert, "nope.test", ""}, "certificate rejected");
    }
    SECTION("untrusted certificate") {
        fail(wrong, {tm.cert, "other.test", ""}, "certificate rejected");
    }
    SECTION("plaintext server") {
        fail(nullptr, {tm.cert, "lemf.test", ""}, "TLS handshake");
    }
    SECTION("TLS 1.2 server") {
        SSL_CTX* old = TlsMaterial::server_ctx(tm.cert, tm.key);
        SSL_CTX_set_max_proto_version(old, TLS1_2_VERSION);
        fail(old, {tm.cert, "lemf.test", ""}, "TLS handshake");
        SSL_CTX_free(old);
    }
    SECTION("bad options") {
        SpoolFixture sf;
        std::string error;
        auto o = options_for(1);
        o.tls = DeliveryTls{};
        CHECK(!Delivery::create(o, *sf.spool, {}, {}, error));
        CHECK(error.find("ca_file or pin_sha256") != std::string::npos);
        o.tls = DeliveryTls{"", "", "abcd"};
        CHECK(!Delivery::create(o, *sf.spool, {}, {}, error));
        CHECK(error.find("pin_sha256") != std::string::npos);
    }
    SSL_CTX_free(good);
    SSL_CTX_free(wrong);
}

TEST_CASE("delivery: keep-alives on an idle connection at the configured interval", "[delivery]") {
    SpoolFixture sf;
    Received rx;
    Receiver lemf(rx, 0);
    auto o = options_for(lemf.port());
    o.keepalive_interval = 100ms;
    auto d = make_delivery(o, *sf.spool, [] { return make_frame(kKeepaliveIndex, 0); });
    sf.append(5);
    d->start();
    std::this_thread::sleep_for(650ms);
    std::vector<Clock::time_point> ka;
    {
        std::lock_guard l(rx.m);
        ka = rx.keepalives;
    }
    CHECK(rx.count() == 5);
    REQUIRE(ka.size() >= 4);
    CHECK(ka.size() <= 7);
    for (std::size_t i = 1; i < ka.size(); ++i) {
        auto gap = std::chrono::duration_cast<std::chrono::milliseconds>(ka[i] - ka[i - 1]);
        INFO("gap " << gap.count() << " ms");
        CHECK(gap >= 60ms);   // sent >= 100 ms apart; seen by a receiver that may lag
        CHECK(gap <= 250ms);  // generous: CI runs tests in parallel
    }
    const auto span = std::chrono::duration_cast<std::chrono::milliseconds>(ka.back() - ka[0]);
    CHECK(span.count() / static_cast<long long>(ka.size() - 1) >= 95);
    CHECK(counter(*d, DeliveryCounter::keepalives_sent) >= ka.size());
    // Records go out between keep-alives and are not delayed by them.
    sf.append(5);
    d->notify();
    REQUIRE(wait_for([&] { return rx.count() == 10; }, 1s));
    check_complete(rx.snapshot(), 10);
}

TEST_CASE("delivery: stop() is prompt while backing off or connecting", "[delivery]") {
    SpoolFixture sf;
    SECTION("backing off") {
        auto o = options_for(free_port());
        o.backoff_initial = 10s;
        o.backoff_max = 30s;
        auto d = make_delivery(o, *sf.spool);
        d->start();
        REQUIRE(wait_for([&] { return counter(*d, DeliveryCounter::connect_failures) == 1; }, 2s));
        std::this_thread::sleep_for(20ms);
        const auto t0 = Clock::now();
        d->stop();
        CHECK(Clock::now() - t0 < 200ms);
    }
    SECTION("TLS handshake with a silent server") {
        int fd = listen_on(0);  // accepts (backlog) but never answers the ClientHello
        auto o = options_for(local_port(fd));
        o.connect_timeout = 10s;
        o.tls = DeliveryTls{"", "", std::string(64, 'a')};
        auto d = make_delivery(o, *sf.spool);
        d->start();
        std::this_thread::sleep_for(100ms);
        CHECK(counter(*d, DeliveryCounter::connect_failures) == 0);
        const auto t0 = Clock::now();
        d->stop();
        CHECK(Clock::now() - t0 < 200ms);
        CHECK(counter(*d, DeliveryCounter::tls_failures) == 0);  // stopping is no failure
        ::close(fd);
    }
}
