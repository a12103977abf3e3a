// The reference LEMF (law-enforcement monitoring facility) receiver: decodes the three
// handover formats of issue 5 from TCP or TLS streams, checks sequence continuity, writes IRI
// as JSON lines and CC as a pcap per LIID, and summarises per LIID.
//
// The decoders here are a second, independent implementation: they read the wire format from
// the standards' layouts (ETSI TS 102 232-1/-5 PS-PDU in BER, ETSI TS 103 221-2 X2/X3, the
// PacketCable PCESP CdcPdu plus the CCC framing of handover/calea.hpp) and share no code with
// handover/, so that the tests cross-check the encoders against them.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace tapwire::lemf {

/// The handover formats a connection carries (one per listening port).
enum class Format : std::uint8_t { Etsi102232, X2X3, Calea };

/// "etsi-102232", "etsi-x2x3", "calea".
const char* to_string(Format f) noexcept;
/// Parses the names of to_string(Format); false for anything else.
bool parse_format(std::string_view text, Format& out) noexcept;

/// What a decoded record is.
enum class Kind : std::uint8_t { Iri, Cc, Keepalive, KeepaliveResponse };
const char* to_string(Kind k) noexcept;

/// Direction of content relative to the target, as the format says it.
enum class Direction : std::uint8_t { Unknown, FromTarget, ToTarget };
const char* to_string(Direction d) noexcept;

/// One decoded record, format-neutral.
struct Record {
    Format format = Format::Etsi102232;
    Kind kind = Kind::Iri;
    /// ETSI: the LIID; X2/X3: the XID as UUID text; CALEA: the CaseId (CC: the CaseId
    /// learned from the CDC message naming the CCCID, else "cccid-XXXXXXXX").
    std::string liid;
    /// ETSI: the CIN; X2/X3: the Correlation ID; CALEA: the CDC callId.sequencenumber (the
    /// CIN in decimal) and, for CC, the CIN learned for the CCCID.
    std::uint64_t cin = 0;
    bool has_cin = false;
    std::uint64_t sequence = 0;  // ETSI sequenceNumber, X2/X3 Sequence Number attribute
    bool has_sequence = false;   // CALEA has none
    std::uint32_t cccid = 0;     // CALEA: the call-content connection id
    bool has_cccid = false;
    /// IRI: "begin", "continue", "end", "report" (CALEA: mapped from the CDC message).
    std::string iri_type;
    std::string cdc_message;  // CALEA: the PCESP Message alternative, e.g. "answer"
    std::int64_t timestamp_ns = 0;
    bool has_timestamp = false;
    Direction direction = Direction::Unknown;
    std::string source, destination;  // IP address text where the format carries one
    std::uint16_t source_port = 0, destination_port = 0;
    /// IRI: the SIP message (empty for CALEA, which carries none); CC: the IP packet.
    std::vector<std::uint8_t> payload;
    /// A keep-alive the sender expects answered: the answer PDU, ready to send.
    std::vector<std::uint8_t> reply;
};

/// Decodes one connection's byte stream of one format. Fed arbitrary chunks; never reads out
/// of bounds; malformed input is counted in errors() and skipped (a PDU whose framing is
/// intact is skipped whole; broken framing is resynchronised byte by byte).
class StreamDecoder {
  public:
    /// PDUs longer than this are framing errors (guards the buffer against garbage lengths).
    static constexpr std::size_t kMaxPdu = 16u << 20;

    explicit StreamDecoder(Format format);
    ~StreamDecoder();
    StreamDecoder(StreamDecoder&&) noexcept;
    StreamDecoder& operator=(StreamDecoder&&) noexcept;

    /// Decodes every complete PDU now buffered, appending its records to `out`.
    void feed(std::span<const std::uint8_t> bytes, std::vector<Record>& out);
    /// Malformed PDUs and framing errors so far.
    std::uint64_t errors() const noexcept;
    /// Complete PDUs decoded without error so far.
    std::uint64_t pdus() const noexcept;
    /// Octets buffered waiting for the rest of a PDU (at end of stream: a truncated PDU).
    std::size_t pending() const noexcept;
    Format format() const noexcept;

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

/// A run of missing sequence numbers [first, last] of one (LIID, CIN, IRI/CC).
struct Gap {
    std::uint64_t cin = 0;
    Kind kind = Kind::Iri;
    std::uint64_t first = 0, last = 0;
};

/// Per-LIID totals.
struct LiidSummary {
    std::uint64_t calls = 0;                           // distinct CINs
    std::map<std::string, std::uint64_t> iri_by_type;  // "begin" -> count, ...
    std::uint64_t iri = 0, cc_packets = 0;
    std::uint64_t gaps = 0;        // runs of missing sequence numbers
    std::uint64_t missing = 0;     // sequence numbers missing in those runs
    std::uint64_t duplicates = 0;  // records whose index was seen before (possible duplicates)
    std::vector<Gap> gap_list;
};

/// Receives decoded records from any number of connections (thread-safe): checks sequence
/// continuity per (LIID, CIN, IRI/CC), writes <out>/<liid>.iri.jsonl and <out>/<liid>.cc.pcap
/// (LINKTYPE_RAW), and summarises. Continuity is judged between the lowest and highest index
/// seen per key, whatever the arrival order: a receiver started mid-stream (after a restart)
/// cannot know about earlier records, so indexes below the first one seen are not gaps.
/// An index seen twice is counted as a possible duplicate (issue 5: redelivery at a reconnect
/// boundary may repeat records), not as an error; its record is still written, marked.
class Collector {
  public:
    /// Creates `out_dir` when missing. Empty `out_dir`: no files, counting only.
    explicit Collector(std::filesystem::path out_dir);
    ~Collector();
    Collector(const Collector&) = delete;
    Collector& operator=(const Collector&) = delete;

    void add(const Record& record);
    void add_errors(std::uint64_t n);
    /// Flushes the output files.
    void flush();

    std::map<std::string, LiidSummary> summary() const;
    std::uint64_t errors() const;
    std::uint64_t keepalives() const;
    /// How long records took from interception (their timestamp) to decoding here: the
    /// appliance's packet-in to LEMF-out latency (sender and receiver share a clock on one
    /// host). Records without a timestamp (CALEA) are not counted.
    struct Latency {
        std::uint64_t samples = 0;
        double p50_ms = 0, p99_ms = 0, max_ms = 0;
    };
    Latency latency() const;
    /// The summary as a table for people.
    std::string summary_text() const;
    /// The summary as one JSON object {"liids": {...}, "errors": n, "keepalives": n}.
    std::string summary_json() const;

    /// The file names used for a LIID (characters outside [A-Za-z0-9._-] become '_').
    static std::string file_stem(std::string_view liid);

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

/// Listener options. listen: "ADDR:PORT" ("[v6]:PORT" for IPv6; port 0 picks one).
struct ServerOptions {
    std::string listen = "127.0.0.1:0";
    Format format = Format::Etsi102232;
    std::string tls_cert, tls_key;  // both set: TLS (1.2 or 1.3) instead of plain TCP
    std::string client_ca;          // set: clients must present a certificate it verifies
};

/// Accepts connections (one thread each), decodes them into a Collector, answers keep-alives.
class Server {
  public:
    Server(ServerOptions options, Collector& collector);
    ~Server();  // stop()s
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;

    /// Binds, listens and starts accepting. False with `error` when it cannot.
    bool start(std::string& error);
    /// The bound port (after start()).
    std::uint16_t port() const noexcept;
    /// Stops accepting, closes every connection, joins the threads, counts what was left
    /// buffered (a truncated PDU) as an error.
    void stop();
    /// Connections accepted so far.
    std::uint64_t connections() const noexcept;

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace tapwire::lemf
