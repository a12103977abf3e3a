// Classic pcap files (the libpcap "tcpdump" format) without libpcap: a streaming writer
// and a whole-file reader for both timestamp precisions and both byte orders, so the
// traffic generator and its tests need no external library.
#pragma once

#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "common/bytes.hpp"

namespace tapwire::traffic {

enum class PcapPrecision : std::uint8_t { Microsecond, Nanosecond };

inline constexpr std::uint32_t kPcapMagicMicro = 0xa1b2c3d4;
inline constexpr std::uint32_t kPcapMagicNano = 0xa1b23c4d;
inline constexpr std::uint32_t kLinktypeEthernet = 1;
inline constexpr std::uint32_t kDefaultSnaplen = 262144;

/// One record as read back.
struct PcapPacket {
    std::uint64_t time_ns = 0;          // since the Unix epoch
    std::uint32_t original_length = 0;  // length on the wire (data may be shorter)
    std::vector<std::uint8_t> data;
};

/// A whole classic pcap file.
struct PcapContents {
    PcapPrecision precision = PcapPrecision::Microsecond;
    bool big_endian = false;  // the file's byte order (this writer produces little-endian)
    std::uint16_t version_major = 2;
    std::uint16_t version_minor = 4;
    std::uint32_t snaplen = kDefaultSnaplen;
    std::uint32_t linktype = kLinktypeEthernet;
    std::vector<PcapPacket> packets;
};

/// Result of reading: contents, or a message naming what is wrong and where.
struct PcapReadResult {
    std::optional<PcapContents> contents;
    std::string error;

    explicit operator bool() const noexcept { return contents.has_value(); }
};

/// Parses a classic pcap image held in memory. Rejects pcapng, unknown magics, truncated
/// headers or records, and records whose captured length exceeds the original length or
/// any sane bound.
PcapReadResult parse_pcap(ByteSpan file);

/// Reads and parses a file.
PcapReadResult read_pcap(const std::string& path);

/// Appends a little-endian global header.
void append_pcap_header(std::vector<std::uint8_t>& out, PcapPrecision precision,
                        std::uint32_t snaplen = kDefaultSnaplen,
                        std::uint32_t linktype = kLinktypeEthernet);

/// Appends one little-endian record; frames longer than snaplen are cut to snaplen with
/// their original length kept. time_ns is rounded down to the file's precision.
void append_pcap_record(std::vector<std::uint8_t>& out, PcapPrecision precision,
                        std::uint64_t time_ns, ByteSpan frame,
                        std::uint32_t snaplen = kDefaultSnaplen);

/// Streaming writer: one global header, then records as they come.
class PcapWriter {
  public:
    PcapWriter() = default;
    PcapWriter(const PcapWriter&) = delete;
    PcapWriter& operator=(const PcapWriter&) = delete;
    PcapWriter(PcapWriter&& other) noexcept;
    PcapWriter& operator=(PcapWriter&& other) noexcept;
    ~PcapWriter();

    /// Creates or truncates path and writes the global header. False with error set on
    /// failure (the message names the path and the system error).
    bool open(const std::string& path, PcapPrecision precision, std::string& error,
              std::uint32_t snaplen = kDefaultSnaplen, std::uint32_t linktype = kLinktypeEthernet);
    bool write(std::uint64_t time_ns, ByteSpan frame, std::string& error);
    /// Flushes and closes; false if a write-back failed (disk full). Safe to call twice.
    bool close(std::string& error);

    bool is_open() const noexcept { return file_ != nullptr; }
    std::uint64_t packets_written() const noexcept { return packets_; }

  private:
    std::FILE* file_ = nullptr;
    std::string path_;
    PcapPrecision precision_ = PcapPrecision::Microsecond;
    std::uint32_t snaplen_ = kDefaultSnaplen;
    std::uint64_t packets_ = 0;
    std::vector<std::uint8_t> scratch_;
};

}  // namespace tapwire::traffic
