// The per-destination delivery client (issue 5, Delivery): one thread per LEMF destination
// that connects over TCP (TLS 1.3 when configured), sends the records of one Spool in
// index order, tells the spool what the LEMF has provably received, and on a connection
// loss rewinds the spool so that everything not provably received is sent again.
//
// What "provably received" means: ETSI TS 102 232-1 delivery over TCP has no application
// acknowledgement, so the only proof is TCP's: the bytes the LEMF's kernel acknowledged.
// Linux reports the bytes still unacknowledged in the send queue (ioctl SIOCOUTQ); bytes
// written to the socket minus that are acknowledged. A record is acked to the spool once
// every byte up to its end is. With TLS the byte counts are ciphertext: when SSL_write()
// returns past a record's end, the TLS record holding that end has been written whole to
// the socket, so its end is at or before the wire byte count at that moment (conservative:
// a record is acked only when the whole TLS record carrying its last byte is).
// Limit: the LEMF kernel acknowledges data on arrival in its receive buffer, before the
// LEMF application reads it. A LEMF process that dies with unread data (at most its socket
// receive buffer) loses it and the spool cannot know; a LEMF that reads what its kernel
// acknowledged before it drops the connection loses nothing.
//
// Acks vs durability: a record may be sent and acked before it is durable (flush() is not
// this client's job: the owner's flusher runs it). That is harmless: the LEMF has it, and
// the spool never stores an acked cursor beyond durable_index(), so a crash cannot make it
// skip a stored record (see handover/spool.hpp).
//
// Duplicates: after a reconnect the records in [acked, high-water) of the spool are sent
// again (spool.maybe_duplicate() says which); the LEMF dedups by (LIID, CIN, sequence).
// last_rewind in the status gives the range of the latest rewind.
//
// Thread: one per destination (start()); it blocks SIGPIPE for itself (TLS writes use
// write(2)). A host name is resolved with a blocking getaddrinfo() at each connect.
//
// Logging: none here; errors are kept as text in the status (addresses and OS/TLS errors
// only, never record content) and reported through on_state_change.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/x_list.hpp"
#include "handover/spool.hpp"

namespace tapwire::handover {

#define TAPWIRE_DELIVERY_COUNTERS(X)                                                     \
    X(connects, "connections established (TLS handshake included)")                      \
    X(connect_failures, "connection attempts that failed (TCP connect or TLS)")          \
    X(disconnects, "established connections lost or closed")                             \
    X(records_sent, "records written to the socket (resends included)")                  \
    X(bytes_sent, "record bytes written to the socket (plaintext, resends included)")    \
    X(records_acked, "records acknowledged to the spool (TCP-acknowledged by the LEMF)") \
    X(resent_after_reconnect, "records sent again that the LEMF may already have")       \
    X(keepalives_sent, "keep-alive PDUs written on idle connections")                    \
    X(tls_failures, "TLS handshakes or certificate checks that failed")

enum class DeliveryCounter : std::uint8_t { TAPWIRE_DELIVERY_COUNTERS(TAPWIRE_X_ENUMERATOR) Count };

inline constexpr std::size_t kDeliveryCounterCount =
    static_cast<std::size_t>(DeliveryCounter::Count);
/// Counter names as telemetry shows them ("connects", ...).
inline constexpr const char* kDeliveryCounterNames[] = {TAPWIRE_DELIVERY_COUNTERS(TAPWIRE_X_NAME)};
/// One-line descriptions, same order.
inline constexpr const char* kDeliveryCounterTexts[] = {TAPWIRE_DELIVERY_COUNTERS(TAPWIRE_X_TEXT)};
static_assert(std::size(kDeliveryCounterNames) == kDeliveryCounterCount);

struct DeliveryCounters {
    std::uint64_t value[kDeliveryCounterCount] = {};
    std::uint64_t& operator[](DeliveryCounter c) noexcept { return value[static_cast<int>(c)]; }
    std::uint64_t operator[](DeliveryCounter c) const noexcept {
        return value[static_cast<int>(c)];
    }
};

struct DeliveryTls {
    /// PEM file of the CA(s) that sign the LEMF certificate; empty: no chain check (then
    /// pin_sha256 is required).
    std::string ca_file;
    /// The name the LEMF certificate must carry (DNS name, or an IP literal checked against
    /// its IP SAN); empty: DeliveryOptions::host. Also sent as SNI when it is a name.
    std::string server_name;
    /// SHA-256 of the LEMF certificate (DER), 64 hex digits (':' allowed); empty: no pin.
    /// With both ca_file and a pin, both must match.
    std::string pin_sha256;
};

struct DeliveryOptions {
    std::string host;  // IPv4/IPv6 literal or host name (resolved at each connect, blocking)
    std::uint16_t port = 0;
    std::optional<DeliveryTls> tls;                   // TLS 1.3 minimum when set
    std::chrono::milliseconds connect_timeout{5000};  // TCP connect plus TLS handshake
    std::chrono::milliseconds backoff_initial{100};
    std::chrono::milliseconds backoff_max{30000};
    /// Each delay is drawn uniformly from [d * (1 - jitter), d]: spreads the reconnects of
    /// many destinations after a shared outage.
    double backoff_jitter = 0.2;
    /// A connection that lived at least this long resets the backoff to backoff_initial;
    /// a shorter one (LEMF accepting then dropping) keeps it growing.
    std::chrono::milliseconds backoff_reset_after{2000};
    /// A keep-alive goes out when nothing was written for this long (0: never).
    std::chrono::milliseconds keepalive_interval{5000};
    /// How often the send queue is checked for acknowledgements while records are in flight,
    /// and the spool for new records when there is nothing to send (notify() wakes it sooner).
    std::chrono::milliseconds poll_interval{10};
    /// TCP_USER_TIMEOUT: a connection whose sent data stays unacknowledged this long is
    /// dropped (a stalled or vanished LEMF), and its records rewound. 0: kernel default.
    std::chrono::milliseconds user_timeout{60000};
    /// Bytes read from the spool per batch (grown when one record is larger).
    std::size_t batch_bytes = 256u << 10;
    std::size_t batch_records = 4096;
};

/// Returns an encoded keep-alive PDU (e.g. Encoder::encode_keepalive), or empty for none.
using KeepaliveSource = std::function<std::vector<std::uint8_t>()>;
/// Called on the delivery thread when the destination goes up or down (the first connect
/// attempt's outcome is always reported; stop() reports down "stopped" when it was up);
/// `error` says why it is down (empty when up). Keep it short: it runs on that thread.
using DeliveryStateCallback = std::function<void(bool up, const std::string& error)>;

struct DeliveryStatus {
    bool up = false;
    std::string last_error;                // the latest failure, kept after recovery
    std::chrono::milliseconds backoff{0};  // the current (latest drawn) reconnect delay
    std::uint64_t last_rewind_first = 0;   // [first, end): the records marked as possible
    std::uint64_t last_rewind_end = 0;     // duplicates at the latest reconnect
    DeliveryCounters counters;
};

class Delivery {
  public:
    /// Does not start anything; `spool` must outlive the Delivery. Returns nullptr with
    /// `error` naming the option when the options are invalid (TLS context included).
    static std::unique_ptr<Delivery> create(const DeliveryOptions& options, Spool& spool,
                                            KeepaliveSource keepalive,
                                            DeliveryStateCallback on_state_change,
                                            std::string& error);
    ~Delivery();  // stop()
    Delivery(const Delivery&) = delete;
    Delivery& operator=(const Delivery&) = delete;

    /// Starts the delivery thread (once).
    void start();
    /// Ends the thread within about one poll round (connect, handshake and backoff waits are
    /// interruptible; a host name lookup is not). Unacknowledged records stay in the spool.
    void stop();
    /// Wakes the thread now (the producer calls it after appending; optional: the thread
    /// also looks every poll_interval).
    void notify() noexcept;

    DeliveryStatus status() const;
    bool up() const noexcept;

  private:
    struct Impl;
    explicit Delivery(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

}  // namespace tapwire::handover
