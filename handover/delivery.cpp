#include "handover/delivery.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <deque>
#include <mutex>
#include <random>
#include <thread>

namespace tapwire::handover {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

std::string errno_text(const char* what, int err) {
    return std::string(what) + ": " + std::strerror(err);
}

std::string ssl_error_text(const char* what) {
    std::string s = what;
    unsigned long e;
    char buf[256];
    bool first = true;
    while ((e = ERR_get_error()) != 0) {
        ERR_error_string_n(e, buf, sizeof buf);
        s += first ? ": " : "; ";
        s += buf;
        first = false;
    }
    return s;
}

bool parse_pin(const std::string& text, std::array<std::uint8_t, 32>& out) {
    std::size_t n = 0;
    int half = -1;
    for (char c : text) {
        if (c == ':') continue;
        int v;
        if (c >= '0' && c <= '9')
            v = c - '0';
        else if (c >= 'a' && c <= 'f')
            v = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            v = c - 'A' + 10;
        else
            return false;
        if (half < 0) {
            half = v;
        } else {
            if (n == out.size()) return false;
            out[n++] = static_cast<std::uint8_t>(half << 4 | v);
            half = -1;
        }
    }
    return n == out.size() && half < 0;
}

bool is_ip_literal(const std::string& s) {
    in6_addr a6;
    in_addr a4;
    return inet_pton(AF_INET, s.c_str(), &a4) == 1 || inet_pton(AF_INET6, s.c_str(), &a6) == 1;
}

// One established connection: the socket, plus the TLS session when configured.
struct Conn {
    int fd = -1;
    SSL* ssl = nullptr;
    std::uint64_t plain_wire = 0;  // bytes written to the socket without TLS

    ~Conn() { close_now(); }
    void close_now() {
        if (ssl) SSL_free(ssl);
        ssl = nullptr;
        if (fd >= 0) ::close(fd);
        fd = -1;
    }
    // Bytes handed to the kernel on this socket (ciphertext with TLS).
    std::uint64_t wire_written() const {
        return ssl ? BIO_number_written(SSL_get_wbio(ssl)) : plain_wire;
    }
};

enum class Io { Done, WantRead, WantWrite, Error };

}  // namespace

struct Delivery::Impl {
    DeliveryOptions options;
    Spool& spool;
    KeepaliveSource keepalive;
    DeliveryStateCallback on_state_change;
    SSL_CTX* ctx = nullptr;
    std::array<std::uint8_t, 32> pin{};
    bool has_pin = false;

    int wake_fd = -1;
    std::atomic<bool> stopping{false};
    std::atomic<bool> up{false};
    std::thread thread;
    bool started = false;

    std::atomic<std::uint64_t> counters[kDeliveryCounterCount] = {};
    mutable std::mutex mutex;  // status strings and values below
    std::string last_error;
    milliseconds backoff{0};
    std::uint64_t rewind_first = 0, rewind_end = 0;

    // Delivery thread only.
    std::mt19937_64 rng{std::random_device{}()};
    int backoff_exp = 0;
    int reported = -1;  // the state last reported to on_state_change; -1: none yet
    std::vector<std::uint8_t> batch;
    std::vector<std::uint32_t> sizes;

    Impl(const DeliveryOptions& o, Spool& s) : options(o), spool(s) {}
    ~Impl() {
        if (ctx) SSL_CTX_free(ctx);
        if (wake_fd >= 0) ::close(wake_fd);
    }

    void count(DeliveryCounter c, std::uint64_t n = 1) {
        counters[static_cast<int>(c)].fetch_add(n, std::memory_order_relaxed);
    }
    void set_error(const std::string& e) {
        std::lock_guard lock(mutex);
        last_error = e;
    }
    void set_up(bool is_up, const std::string& error) {
        if (!is_up) set_error(error);
        up = is_up;
        // The first outcome is always reported (a LEMF unreachable from the start is down).
        if (reported == static_cast<int>(is_up)) return;
        reported = is_up;
        if (on_state_change) on_state_change(is_up, error);
    }
    void drain_wake() {
        std::uint64_t v;
        [[maybe_unused]] auto r = ::read(wake_fd, &v, sizeof v);
    }

    // Waits for `events` on fd (or only the wake fd when fd < 0) until `deadline`.
    // Returns the revents of fd, 0 on timeout or wake; sets `stop` when stopping.
    short wait(int fd, short events, Clock::time_point deadline) {
        pollfd p[2] = {{wake_fd, POLLIN, 0}, {fd, events, 0}};
        auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
        if (left < 0) left = 0;
        int n = ::poll(p, fd >= 0 ? 2 : 1, static_cast<int>(std::min<long long>(left, 1 << 30)));
        if (n <= 0) return 0;
        if (p[0].revents) drain_wake();
        return fd >= 0 ? p[1].revents : 0;
    }

    void run();
    bool connect(Conn& c, std::string& error, bool& tls_failed);
    bool tcp_connect(Conn& c, Clock::time_point deadline, std::string& error);
    bool tls_handshake(Conn& c, Clock::time_point deadline, std::string& error);
    std::string session(Conn& c);
    Io write_some(Conn& c, const std::uint8_t* p, std::size_t len, std::size_t& done,
                  std::string& error);
    bool read_discard(Conn& c, std::string& error, bool& want_write);
    void sleep_backoff();
};

bool Delivery::Impl::tcp_connect(Conn& c, Clock::time_point deadline, std::string& error) {
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_ADDRCONFIG;
    addrinfo* res = nullptr;
    const std::string port = std::to_string(options.port);
    // Blocking lookup (not interruptible by stop()); a literal resolves at once.
    int rc = ::getaddrinfo(options.host.c_str(), port.c_str(), &hints, &res);
    if (rc != 0) {
        error = "resolve " + options.host + ": " + gai_strerror(rc);
        return false;
    }
    error = "connect " + options.host + ": no address";
    for (addrinfo* a = res; a && !stopping; a = a->ai_next) {
        int fd =
            ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) {
            error = errno_text("socket", errno);
            continue;
        }
        int one = 1;
        ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (options.user_timeout.count() > 0) {
            unsigned ut = static_cast<unsigned>(options.user_timeout.count());
            ::setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ut, sizeof ut);
        }
        char name[INET6_ADDRSTRLEN + 8] = "?";
        void* addr =
            a->ai_family == AF_INET6
                ? static_cast<void*>(&reinterpret_cast<sockaddr_in6*>(a->ai_addr)->sin6_addr)
                : static_cast<void*>(&reinterpret_cast<sockaddr_in*>(a->ai_addr)->sin_addr);
        ::inet_ntop(a->ai_family, addr, name, sizeof name);
        const std::string where = std::string(name) + " port " + port;
        if (::connect(fd, a->ai_addr, a->ai_addrlen) != 0 && errno != EINPROGRESS) {
            error = errno_text(("connect " + where).c_str(), errno);
            ::close(fd);
            continue;
        }
        short ev = wait(fd, POLLOUT, deadline);
        int soerr = 0;
        socklen_t len = sizeof soerr;
        if (ev == 0) {
            error = stopping ? "stopped" : "connect " + where + ": timed out";
            ::close(fd);
            continue;
        }
        ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
        if (soerr != 0) {
            error = errno_text(("connect " + where).c_str(), soerr);
            ::close(fd);
            continue;
        }
        c.fd = fd;
        ::freeaddrinfo(res);
        return true;
    }
    ::freeaddrinfo(res);
    return false;
}

bool Delivery::Impl::tls_handshake(Conn& c, Clock::time_point deadline, std::string& error) {
    ERR_clear_error();
    c.ssl = SSL_new(ctx);
    if (!c.ssl || SSL_set_fd(c.ssl, c.fd) != 1) {
        error = ssl_error_text("TLS setup");
        return false;
    }
    SSL_set_mode(c.ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    const std::string& name =
        options.tls->server_name.empty() ? options.host : options.tls->server_name;
    if (!is_ip_literal(name)) SSL_set_tlsext_host_name(c.ssl, name.c_str());
    if (!options.tls->ca_file.empty()) {
        X509_VERIFY_PARAM* param = SSL_get0_param(c.ssl);
        int ok = is_ip_literal(name) ? X509_VERIFY_PARAM_set1_ip_asc(param, name.c_str())
                                     : X509_VERIFY_PARAM_set1_host(param, name.c_str(), 0);
        if (ok != 1) {
            error = "TLS: bad server name " + name;
            return false;
        }
        SSL_set_verify(c.ssl, SSL_VERIFY_PEER, nullptr);
    }
    for (;;) {
        int r = SSL_connect(c.ssl);
        if (r == 1) break;
        int e = SSL_get_error(c.ssl, r);
        short want = e == SSL_ERROR_WANT_READ ? POLLIN : e == SSL_ERROR_WANT_WRITE ? POLLOUT : 0;
        if (want == 0) {
            long v = SSL_get_verify_result(c.ssl);
            if (v != X509_V_OK) {
                error =
                    std::string("TLS: certificate rejected: ") + X509_verify_cert_error_string(v);
                ERR_clear_error();
            } else if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
                error = errno ? errno_text("TLS handshake", errno)
                              : std::string("TLS handshake: connection closed by peer");
            } else {
                error = ssl_error_text("TLS handshake");
            }
            return false;
        }
        if (wait(c.fd, want, deadline) == 0) {
            error = stopping ? "stopped" : "TLS handshake: timed out";
            return false;
        }
    }
    if (SSL_version(c.ssl) < TLS1_3_VERSION) {  // the context forbids it; belt and braces
        error = "TLS: negotiated version below 1.3";
        return false;
    }
    if (has_pin) {
        X509* cert = SSL_get1_peer_certificate(c.ssl);
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned md_len = 0;
        bool ok = cert && X509_digest(cert, EVP_sha256(), md, &md_len) == 1 && md_len == 32 &&
                  std::memcmp(md, pin.data(), 32) == 0;
        if (cert) X509_free(cert);
        if (!ok) {
            error = "TLS: certificate does not match the pinned SHA-256";
            return false;
        }
    }
    return true;
}

bool Delivery::Impl::connect(Conn& c, std::string& error, bool& tls_failed) {
    tls_failed = false;
    const auto deadline = Clock::now() + options.connect_timeout;
    if (!tcp_connect(c, deadline, error)) return false;
    if (options.tls && !tls_handshake(c, deadline, error)) {
        tls_failed = !stopping;
        c.close_now();
        return false;
    }
    return true;
}

Io Delivery::Impl::write_some(Conn& c, const std::uint8_t* p, std::size_t len, std::size_t& done,
                              std::string& error) {
    done = 0;
    if (!c.ssl) {
        ssize_t n = ::send(c.fd, p, len, MSG_NOSIGNAL);
        if (n >= 0) {
            done = static_cast<std::size_t>(n);
            c.plain_wire += done;
            return Io::Done;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return Io::WantWrite;
        error = errno_text("send", errno);
        return Io::Error;
    }
    ERR_clear_error();
    int n = SSL_write(c.ssl, p, static_cast<int>(std::min<std::size_t>(len, 1 << 30)));
    if (n > 0) {
        done = static_cast<std::size_t>(n);
        return Io::Done;
    }
    int e = SSL_get_error(c.ssl, n);
    if (e == SSL_ERROR_WANT_WRITE) return Io::WantWrite;
    if (e == SSL_ERROR_WANT_READ) return Io::WantRead;
    error = e == SSL_ERROR_SYSCALL && errno ? errno_text("TLS send", errno)
                                            : ssl_error_text("TLS send");
    return Io::Error;
}

// The LEMF sends nothing we need (TLS session tickets at most): read and discard, to see
// the connection end. False with `error` when it ended.
bool Delivery::Impl::read_discard(Conn& c, std::string& error, bool& want_write) {
    std::uint8_t buf[4096];
    want_write = false;
    for (;;) {
        if (!c.ssl) {
            ssize_t n = ::recv(c.fd, buf, sizeof buf, 0);
            if (n > 0) continue;
            if (n == 0) {
                error = "connection closed by LEMF";
                return false;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return true;
            error = errno_text("connection lost", errno);
            return false;
        }
        ERR_clear_error();
        int n = SSL_read(c.ssl, buf, sizeof buf);
        if (n > 0) continue;
        int e = SSL_get_error(c.ssl, n);
        if (e == SSL_ERROR_WANT_READ) return true;
        if (e == SSL_ERROR_WANT_WRITE) {
            want_write = true;
            return true;
        }
        if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && errno == 0)) {
            error = "connection closed by LEMF";
        } else if (e == SSL_ERROR_SYSCALL) {
            error = errno_text("connection lost", errno);
        } else {
            error = ssl_error_text("TLS receive");
        }
        return false;
    }
}

void Delivery::Impl::sleep_backoff() {
    double d = static_cast<double>(options.backoff_initial.count());
    for (int i = 0; i < backoff_exp && d < options.backoff_max.count(); ++i)
        d *= 2;
    d = std::min(d, static_cast<double>(options.backoff_max.count()));
    const double j = std::clamp(options.backoff_jitter, 0.0, 1.0);
    std::uniform_real_distribution<double> dist(d * (1 - j), d);
    const milliseconds delay{static_cast<long long>(j > 0 ? dist(rng) : d)};
    {
        std::lock_guard lock(mutex);
        backoff = delay;
    }
    if (backoff_exp < 62) ++backoff_exp;
    const auto deadline = Clock::now() + delay;
    while (!stopping && Clock::now() < deadline)
        wait(-1, 0, deadline);
}

// One connection's life: sends from the spool, acks what the kernel says the LEMF has.
// Returns the reason it ended.
std::string Delivery::Impl::session(Conn& c) {
    // Records whose last byte is at or before wire offset `wire_end`: [.., end_index).
    struct Mark {
        std::uint64_t end_index;
        std::uint64_t wire_end;
    };
    std::deque<Mark> in_flight;
    std::size_t batch_len = 0, batch_pos = 0, rec = 0, rec_end = 0;  // current batch
    std::uint64_t batch_first = 0;
    std::size_t batch_count = 0;
    std::vector<std::uint8_t> ka;  // keep-alive being written
    std::size_t ka_pos = 0;
    auto last_write = Clock::now();
    auto last_ack_check = Clock::now();
    std::string error;
    const auto ka_interval = options.keepalive_interval;

    auto check_acks = [&]() -> bool {
        last_ack_check = Clock::now();
        if (in_flight.empty()) return true;
        int outq = 0;
        if (::ioctl(c.fd, SIOCOUTQ, &outq) != 0) {
            error = errno_text("SIOCOUTQ", errno);
            return false;
        }
        const std::uint64_t acked_wire = c.wire_written() - static_cast<std::uint64_t>(outq);
        std::uint64_t upto = 0;
        while (!in_flight.empty() && in_flight.front().wire_end <= acked_wire) {
            upto = in_flight.front().end_index;
            in_flight.pop_front();
        }
        if (upto != 0) {
            const std::uint64_t before = spool.acked();
            if (spool.ack(upto)) count(DeliveryCounter::records_acked, upto - before);
        }
        return true;
    };

    while (!stopping) {
        // Refill: a new batch when the previous one is written and no keep-alive is pending.
        if (batch_pos == batch_len && ka_pos == ka.size()) {
            SpoolBatch b = spool.read_batch(batch, sizes);
            if (b.status == SpoolStatus::BufferTooSmall) {
                batch.resize(std::max(batch.size() * 2, b.needed));
                continue;
            }
            if (b.count > 0) {
                batch_first = b.first;
                batch_count = b.count;
                batch_len = b.bytes;
                batch_pos = 0;
                rec = 0;
                rec_end = sizes[0];
                if (b.maybe_duplicates)
                    count(DeliveryCounter::resent_after_reconnect, b.maybe_duplicates);
            } else {
                batch_len = batch_pos = 0;
                if (ka_interval.count() > 0 && keepalive &&
                    Clock::now() - last_write >= ka_interval) {
                    ka = keepalive();
                    ka_pos = 0;
                    if (ka.empty()) last_write = Clock::now();  // no PDU: look again later
                }
            }
        }
        // Write as much as the socket takes.
        bool want_read = false, want_write = false;
        while (!stopping) {
            const bool is_ka = ka_pos < ka.size();
            const std::uint8_t* p = is_ka ? ka.data() + ka_pos : batch.data() + batch_pos;
            std::size_t len = is_ka ? ka.size() - ka_pos : batch_len - batch_pos;
            if (len == 0) break;
            // With TLS the wire offset of a record's end is known only as "at or before the
            // byte count when SSL_write returned": one TLS record per call keeps that bound
            // within 16 KiB of the truth.
            if (c.ssl) len = std::min<std::size_t>(len, 16384);
            const std::uint64_t wire_before = c.wire_written();
            std::size_t done = 0;
            Io r = write_some(c, p, len, done, error);
            if (r == Io::Error) return error;
            if (r == Io::WantRead) want_read = true;
            if (r == Io::WantWrite) want_write = true;
            if (r != Io::Done) break;
            last_write = Clock::now();
            if (is_ka) {
                ka_pos += done;
                if (ka_pos == ka.size()) {
                    count(DeliveryCounter::keepalives_sent);
                    ka.clear();
                    ka_pos = 0;
                }
                continue;
            }
            batch_pos += done;
            count(DeliveryCounter::bytes_sent, done);
            const std::size_t pos_before = batch_pos - done;
            std::size_t completed = 0;
            while (rec < batch_count && rec_end <= batch_pos) {
                ++completed;
                // Plain TCP: the exact wire offset of this record's end.
                if (!c.ssl)
                    in_flight.push_back(
                        {batch_first + rec + 1, wire_before + (rec_end - pos_before)});
                if (++rec < batch_count) rec_end += sizes[rec];
            }
            if (completed) {
                count(DeliveryCounter::records_sent, completed);
                if (c.ssl) in_flight.push_back({batch_first + rec, c.wire_written()});
            }
        }
        if (stopping) break;
        if (!in_flight.empty() && Clock::now() - last_ack_check >= options.poll_interval &&
            !check_acks())
            return error;

        // Wait: for the socket to take more, for the LEMF to close, for new records, for
        // the next ack check or keep-alive.
        const bool pending = batch_pos < batch_len || ka_pos < ka.size();
        if (!pending && spool.next_to_send() < spool.end_index()) {
            // The batch went out whole and the spool holds more (a backlog after an outage,
            // or a burst): refill at once. Waiting here would cap delivery at one batch per
            // poll interval.
            if (Clock::now() - last_ack_check >= options.poll_interval && !check_acks())
                return error;
            continue;
        }
        auto deadline = Clock::now() + options.poll_interval;
        if (!pending && in_flight.empty() && ka_interval.count() > 0 && keepalive)
            deadline = std::min(deadline, last_write + ka_interval);
        short events = POLLIN;
        if ((pending && !want_read) || want_write) events |= POLLOUT;
        short rev = wait(c.fd, events, deadline);
        if (rev & (POLLIN | POLLERR | POLLHUP)) {
            bool ww = false;
            if (!read_discard(c, error, ww)) return error;
            if (rev & POLLERR) {
                int soerr = 0;
                socklen_t sl = sizeof soerr;
                ::getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
                if (soerr) return errno_text("connection lost", soerr);
            }
        }
        if (!check_acks()) return error;
    }
    check_acks();  // stopping: keep what the LEMF already has
    return "stopped";
}

void Delivery::Impl::run() {
    // TLS writes go through write(2): a LEMF reset must not kill the process.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);

    batch.resize(std::max<std::size_t>(options.batch_bytes, spool.options().max_record_bytes));
    sizes.resize(std::max<std::size_t>(options.batch_records, 1));
    while (!stopping) {
        Conn c;
        std::string error;
        bool tls_failed = false;
        if (!connect(c, error, tls_failed)) {
            if (stopping) break;
            count(DeliveryCounter::connect_failures);
            if (tls_failed) count(DeliveryCounter::tls_failures);
            set_up(false, error);
            sleep_backoff();
            continue;
        }
        const auto since = Clock::now();
        count(DeliveryCounter::connects);
        set_up(true, {});
        error = session(c);
        c.close_now();
        if (stopping) break;
        count(DeliveryCounter::disconnects);
        // Everything not provably received is sent again on the next connection.
        const std::uint64_t first = spool.acked();
        const std::uint64_t resend = spool.rewind_to_acked();
        {
            std::lock_guard lock(mutex);
            rewind_first = first;
            rewind_end = first + resend;
        }
        set_up(false, error);
        if (Clock::now() - since >= options.backoff_reset_after) backoff_exp = 0;
        sleep_backoff();
    }
    if (up.exchange(false) && reported == 1 && on_state_change) on_state_change(false, "stopped");
}

std::unique_ptr<Delivery> Delivery::create(const DeliveryOptions& options, Spool& spool,
                                           KeepaliveSource keepalive,
                                           DeliveryStateCallback on_state_change,
                                           std::string& error) {
    if (options.host.empty()) {
        error = "host: empty";
        return nullptr;
    }
    if (options.port == 0) {
        error = "port: 0";
        return nullptr;
    }
    if (options.backoff_initial.count() <= 0 || options.backoff_max < options.backoff_initial) {
        error = "backoff_initial/backoff_max: need 0 < initial <= max";
        return nullptr;
    }
    if (options.poll_interval.count() <= 0 || options.connect_timeout.count() <= 0) {
        error = "poll_interval/connect_timeout: must be positive";
        return nullptr;
    }
    auto impl = std::make_unique<Impl>(options, spool);
    impl->keepalive = std::move(keepalive);
    impl->on_state_change = std::move(on_state_change);
    if (options.tls) {
        const DeliveryTls& t = *options.tls;
        if (!t.pin_sha256.empty()) {
            if (!parse_pin(t.pin_sha256, impl->pin)) {
                error = "tls.pin_sha256: not 64 hex digits";
                return nullptr;
            }
            impl->has_pin = true;
        }
        if (t.ca_file.empty() && !impl->has_pin) {
            error = "tls: needs ca_file or pin_sha256 (an unverified LEMF is not accepted)";
            return nullptr;
        }
        ERR_clear_error();
        impl->ctx = SSL_CTX_new(TLS_client_method());
        if (!impl->ctx || SSL_CTX_set_min_proto_version(impl->ctx, TLS1_3_VERSION) != 1) {
            error = ssl_error_text("tls: context");
            return nullptr;
        }
        if (!t.ca_file.empty() &&
            SSL_CTX_load_verify_locations(impl->ctx, t.ca_file.c_str(), nullptr) != 1) {
            error = ssl_error_text(("tls.ca_file: cannot load " + t.ca_file).c_str());
            return nullptr;
        }
    }
    impl->wake_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (impl->wake_fd < 0) {
        error = errno_text("eventfd", errno);
        return nullptr;
    }
    return std::unique_ptr<Delivery>(new Delivery(std::move(impl)));
}

Delivery::Delivery(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Delivery::~Delivery() {
    stop();
}

void Delivery::start() {
    if (impl_->started) return;
    impl_->started = true;
    impl_->thread = std::thread([this] { impl_->run(); });
}

void Delivery::stop() {
    impl_->stopping = true;
    notify();
    if (impl_->thread.joinable()) impl_->thread.join();
}

void Delivery::notify() noexcept {
    std::uint64_t one = 1;
    [[maybe_unused]] auto r = ::write(impl_->wake_fd, &one, sizeof one);
}

bool Delivery::up() const noexcept {
    return impl_->up.load(std::memory_order_relaxed);
}

DeliveryStatus Delivery::status() const {
    DeliveryStatus s;
    s.up = impl_->up.load();
    for (std::size_t i = 0; i < kDeliveryCounterCount; ++i)
        s.counters.value[i] = impl_->counters[i].load(std::memory_order_relaxed);
    std::lock_guard lock(impl_->mutex);
    s.last_error = impl_->last_error;
    s.backoff = impl_->backoff;
    s.last_rewind_first = impl_->rewind_first;
    s.last_rewind_end = impl_->rewind_end;
    return s;
}

}  // namespace tapwire::handover
