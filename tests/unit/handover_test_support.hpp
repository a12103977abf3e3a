// Test helpers shared by the handover format tests (test_etsi_102232, test_x2x3, test_calea):
// heap allocation counting, shell commands, an asn1c decoder generated at test time and a
// reader for its XER output, guard-region buffer checks, and IP packets and pcap files for
// tshark. Header-only: tests/meson.build builds each test from its one .cpp.
#pragma once

#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <new>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/bytes.hpp"
#include "common/ip_address.hpp"
#include "tests/unit/temp_dir.hpp"

namespace tapwire::test {

using Bytes = std::vector<std::uint8_t>;

inline Bytes to_bytes(std::string_view s) {
    return Bytes(s.begin(), s.end());
}

/// Lower-case hex digits, two per octet.
inline std::string hex(ByteSpan b) {
    static constexpr char kDigits[] = "0123456789abcdef";
    std::string s;
    s.reserve(2 * b.size());
    for (const std::uint8_t c : b) {
        s += kDigits[c >> 4];
        s += kDigits[c & 15];
    }
    return s;
}

inline IpAddress ip(std::string_view text) {
    const auto a = IpAddress::parse(text);
    REQUIRE(a.has_value());
    return *a;
}

// ---- heap allocation counting ---------------------------------------------------------------

/// Heap allocations through operator new (any thread) in a program that expands
/// TAPWIRE_TEST_COUNT_ALLOCATIONS().
inline std::atomic<std::size_t> g_allocations{0};

inline std::size_t allocations() noexcept {
    return g_allocations.load(std::memory_order_relaxed);
}

namespace detail {

inline void* counted_alloc(std::size_t size, std::size_t align) noexcept {
    g_allocations.fetch_add(1, std::memory_order_relaxed);
    if (size == 0) size = 1;
    if (align <= alignof(std::max_align_t)) return std::malloc(size);
    return std::aligned_alloc(align, (size + align - 1) / align * align);
}

inline void* counted_new(std::size_t size, std::size_t align) {
    if (void* p = counted_alloc(size, align)) return p;
    throw std::bad_alloc();
}

// Out of line: once inlined into a delete-expression, g++ 12 sees free() meet operator new's
// pointer and warns of a mismatch (-Wmismatched-new-delete), though both sides are replaced.
[[gnu::noinline]] inline void release(void* p) noexcept {
    std::free(p);
}

}  // namespace detail

}  // namespace tapwire::test

// Replaces the global operator new and delete with counting ones. Expand it once, at global
// scope, in the test file that counts. A macro rather than definitions in this header because
// replacement functions may not be inline ([replacement.functions]): plain definitions here
// would break the day a second file of the same program includes the header. The counting
// also works under AddressSanitizer (the program's replacement takes precedence over the
// runtime's, whose malloc and free still check every block).
#define TAPWIRE_TEST_COUNT_ALLOCATIONS()                                              \
    TAPWIRE_TEST_NEW_(, counted_new(n, 0))                                            \
    TAPWIRE_TEST_NEW_(, counted_new(n, std::size_t(a)), std::align_val_t a)           \
    TAPWIRE_TEST_NEW_(noexcept, counted_alloc(n, 0), const std::nothrow_t&)           \
    TAPWIRE_TEST_NEW_(noexcept, counted_alloc(n, std::size_t(a)), std::align_val_t a, \
                      const std::nothrow_t&)                                          \
    TAPWIRE_TEST_DELETE_()                                                            \
    TAPWIRE_TEST_DELETE_(std::size_t)                                                 \
    TAPWIRE_TEST_DELETE_(std::align_val_t)                                            \
    TAPWIRE_TEST_DELETE_(std::size_t, std::align_val_t)                               \
    TAPWIRE_TEST_DELETE_(const std::nothrow_t&)                                       \
    TAPWIRE_TEST_DELETE_(std::align_val_t, const std::nothrow_t&)                     \
    static_assert(true, "a semicolon after the macro")

// operator new and new[] taking the extra parameters after the size, returning `call` (a
// function of tapwire::test::detail).
#define TAPWIRE_TEST_NEW_(spec, call, ...)                                \
    void* operator new(std::size_t n __VA_OPT__(, ) __VA_ARGS__) spec {   \
        return tapwire::test::detail::call;                               \
    }                                                                     \
    void* operator new[](std::size_t n __VA_OPT__(, ) __VA_ARGS__) spec { \
        return tapwire::test::detail::call;                               \
    }

// operator delete and delete[] taking the extra parameters after the pointer.
#define TAPWIRE_TEST_DELETE_(...)                                         \
    void operator delete(void* p __VA_OPT__(, ) __VA_ARGS__) noexcept {   \
        tapwire::test::detail::release(p);                                \
    }                                                                     \
    void operator delete[](void* p __VA_OPT__(, ) __VA_ARGS__) noexcept { \
        tapwire::test::detail::release(p);                                \
    }

namespace tapwire::test {

// ---- files and commands ---------------------------------------------------------------------

/// Where the standards data lives (meson sets the variable for its tests).
inline std::filesystem::path shared_dir() {
    const char* env = std::getenv("TAPWIRE_SHARED_DIR");
    return env && *env ? env : "/work/shared";
}

/// The whole file; empty when it cannot be read.
inline std::string read_file(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

inline void write_file(const std::filesystem::path& path, ByteSpan bytes) {
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
    REQUIRE(out.good());
}

/// Runs `command` with /bin/sh, its standard output in `out`. Returns the exit status, or -1
/// when it could not be started or did not exit normally.
inline int run_command(const std::string& command, std::string& out) {
    out.clear();
    FILE* p = ::popen(command.c_str(), "r");
    if (p == nullptr) return -1;
    char buf[65536];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0)
        out.append(buf, n);
    const int status = ::pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

inline bool have_tool(const std::string& name) {
    std::string ignored;
    return run_command("command -v '" + name + "' >/dev/null 2>&1", ignored) == 0;
}

/// Why a tshark check must be skipped ("" when it can run): tshark absent, or without the
/// dissector named `protocol` (as `tshark -G protocols` lists it).
inline std::string tshark_missing(const std::string& protocol) {
    if (!have_tool("tshark")) return "tshark is not installed";
    std::string protocols;
    if (run_command("tshark -G protocols 2>/dev/null", protocols) != 0 ||
        protocols.find("\t" + protocol + "\n") == std::string::npos)
        return "this tshark has no " + protocol + " dissector";
    return {};
}

// ---- the asn1c decoder ----------------------------------------------------------------------

/// A BER decoder that asn1c generates from ASN.1 modules and cc compiles, in a fresh
/// temporary directory (removed with it). Build one per test program run: a function-local
/// static.
class Asn1cDecoder {
  public:
    std::string skip;   // why the tests that need it skip (asn1c or cc is not installed)
    std::string error;  // why building it failed (a test failure)

    /// `pdu`: the type to decode (asn1c -pdu); `modules`: the ASN.1 files, in order.
    Asn1cDecoder(const std::string& pdu, const std::vector<std::filesystem::path>& modules,
                 const std::string& prefix) {
        if (!have_tool("asn1c") || !have_tool("cc")) {
            skip = "asn1c or cc is not installed";
            return;
        }
        dir_.emplace(prefix);
        std::string cmd = "cd '" + dir_->path.string() + "' && asn1c -fcompound-names -pdu=" + pdu;
        for (const auto& m : modules)
            cmd += " '" + m.string() + "'";
        cmd += " >asn1c.log 2>&1 && ";
        // The build of asn1c-profiles/README.md (the generated Makefile.am.sample, in
        // parallel), or every generated file in one cc call without make.
        std::string c_name = pdu;
        std::replace(c_name.begin(), c_name.end(), '-', '_');
        cmd += have_tool("make")
                   ? "make -f Makefile.am.sample -j" +
                         std::to_string(std::max(2L, ::sysconf(_SC_NPROCESSORS_ONLN))) +
                         " CC=cc >make.log 2>&1"
                   : "cc -I. -DPDU=" + c_name + " -o progname *.c >make.log 2>&1";
        std::string out;
        if (run_command(cmd, out) != 0 || !std::filesystem::exists(dir_->path / "progname"))
            error = "building the asn1c decoder failed:\n" + read_file(dir_->path / "asn1c.log") +
                    read_file(dir_->path / "make.log");
    }

    /// True when the tests can use it; else a WARN (tool absent: the caller returns) or a
    /// failed REQUIRE (the build broke).
    bool ready() const {
        if (!skip.empty()) {
            WARN("skipped: " << skip);
            return false;
        }
        INFO(error);
        REQUIRE(error.empty());
        return true;
    }

    struct Result {
        int xer_status = -1, der_status = -1;
        std::string xer;  // the PDUs as XER, with asn1c's messages on failure
        std::string der;  // what asn1c re-encodes them to
    };

    /// Decodes `ber` (one or more PDUs back to back, written to <name>.ber in the decoder's
    /// directory) with the constraint checks on (-c) to XER, and re-encodes it as DER.
    Result decode(ByteSpan ber, const std::string& name) const {
        const std::filesystem::path file = dir_->path / (name + ".ber");
        write_file(file, ber);
        const std::string prog = "'" + (dir_->path / "progname").string() + "' ";
        Result r;
        r.xer_status = run_command(prog + "-c -iber -oxer '" + file.string() + "' 2>&1", r.xer);
        r.der_status = run_command(prog + "-iber -oder '" + file.string() + "' 2>/dev/null", r.der);
        return r;
    }

  private:
    std::optional<TempDir> dir_;
};

// ---- a minimal reader for asn1c's XER output ------------------------------------------------

struct Xml {
    std::string name;
    std::string text;  // character data directly inside, entities decoded, untrimmed
    std::vector<Xml> kids;

    const Xml* child(std::string_view n) const {
        for (const auto& k : kids)
            if (k.name == n) return &k;
        return nullptr;
    }
    /// "a/b/c" below this element (the first child of that name at each step); nullptr when
    /// any step is missing.
    const Xml* at(std::string_view path) const {
        const Xml* x = this;
        while (x && !path.empty()) {
            const auto slash = path.find('/');
            x = x->child(path.substr(0, slash));
            path = slash == std::string_view::npos ? std::string_view() : path.substr(slash + 1);
        }
        return x;
    }
    std::string trimmed() const {
        const auto b = text.find_first_not_of(" \t\r\n");
        if (b == std::string::npos) return {};
        return text.substr(b, text.find_last_not_of(" \t\r\n") - b + 1);
    }
    /// An ENUMERATED's value, which XER writes as an empty element named after it.
    std::string enumerated() const { return kids.size() == 1 ? kids[0].name : "?"; }
    /// An OCTET STRING, which asn1c's XER writes as hex pairs split by white space.
    Bytes octets() const {
        Bytes out;
        std::string digits;
        for (const char c : text)
            if (std::isxdigit(static_cast<unsigned char>(c))) digits += c;
        for (std::size_t i = 0; i + 1 < digits.size(); i += 2)
            out.push_back(std::uint8_t(std::stoul(digits.substr(i, 2), nullptr, 16)));
        return out;
    }
};

/// Elements, character data and the five predefined entities: what asn1c's XER writes.
class XmlReader {
  public:
    explicit XmlReader(std::string_view s) : s_(s) {}
    /// One element and nothing but white space around it.
    std::optional<Xml> document() {
        skip_space();
        auto x = element();
        skip_space();
        if (!x || pos_ != s_.size()) return std::nullopt;
        return x;
    }

  private:
    void skip_space() {
        while (pos_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[pos_])))
            ++pos_;
    }
    std::optional<Xml> element() {
        if (pos_ >= s_.size() || s_[pos_] != '<') return std::nullopt;
        const auto close = s_.find('>', pos_);
        if (close == std::string_view::npos) return std::nullopt;
        std::string_view tag = s_.substr(pos_ + 1, close - pos_ - 1);
        pos_ = close + 1;
        Xml x;
        const bool empty = !tag.empty() && tag.back() == '/';
        if (empty) tag.remove_suffix(1);
        x.name = std::string(tag);
        if (empty) return x;
        while (pos_ < s_.size()) {
            if (s_.compare(pos_, 2, "</") == 0) {
                const auto end = s_.find('>', pos_);
                if (end == std::string_view::npos || s_.substr(pos_ + 2, end - pos_ - 2) != x.name)
                    return std::nullopt;
                pos_ = end + 1;
                return x;
            }
            if (s_[pos_] == '<') {
                auto kid = element();
                if (!kid) return std::nullopt;
                x.kids.push_back(std::move(*kid));
                continue;
            }
            if (s_[pos_] == '&') {
                const auto semi = s_.find(';', pos_);
                if (semi == std::string_view::npos) return std::nullopt;
                const auto entity = s_.substr(pos_ + 1, semi - pos_ - 1);
                if (entity == "lt")
                    x.text += '<';
                else if (entity == "gt")
                    x.text += '>';
                else if (entity == "amp")
                    x.text += '&';
                else if (entity == "apos")
                    x.text += '\'';
                else if (entity == "quot")
                    x.text += '"';
                else
                    return std::nullopt;
                pos_ = semi + 1;
                continue;
            }
            x.text += s_[pos_++];
        }
        return std::nullopt;
    }

    std::string_view s_;
    std::size_t pos_ = 0;
};

// ---- buffer bounds --------------------------------------------------------------------------

struct BoundsOptions {
    /// A refused encode must leave its span untouched too (formats that check the size
    /// first; a BER writer working backwards fills part of the span before it runs out).
    bool refused_span_untouched = false;
    /// Above this many octets needed, only the first and last `sample_edge` of the smaller
    /// sizes are tried (the middle of a 70 KB PDU adds time, not cases).
    std::size_t sample_above = SIZE_MAX;
    std::size_t sample_edge = 0;
    /// Room for the reference encode.
    std::size_t capacity = 256 * 1024;
};

/// Checks an `encode(std::span<std::uint8_t>) -> std::size_t` against the Encoder contract:
/// into a span of every size below what it needs, placed between guard regions, it returns 0
/// and writes nothing outside the span; into spans of exactly that size, one more and 64 more
/// it returns the size, with the PDU of a roomy reference encode at the span's start and the
/// guards intact. Returns "" or the first thing that went wrong.
template <typename Encode>
std::string check_buffer_bounds(Encode&& encode, const BoundsOptions& o = {}) {
    constexpr std::size_t kGuard = 64;
    constexpr std::uint8_t kFill = 0xA5;
    Bytes reference(o.capacity);
    const std::size_t needed = encode(std::span<std::uint8_t>(reference));
    if (needed == 0) return "nothing encoded into " + std::to_string(o.capacity) + " octets";
    reference.resize(needed);
    Bytes buf(needed + 64 + 2 * kGuard);
    const auto filled = [&](std::size_t from, std::size_t to) {
        return std::all_of(buf.begin() + std::ptrdiff_t(from), buf.begin() + std::ptrdiff_t(to),
                           [&](std::uint8_t b) { return b == kFill; });
    };
    const auto into = [&](std::size_t n) {
        std::fill(buf.begin(), buf.begin() + std::ptrdiff_t(2 * kGuard + n), kFill);
        return encode(std::span<std::uint8_t>(buf.data() + kGuard, n));
    };
    const std::string of = " octets (" + std::to_string(needed) + " needed)";
    for (std::size_t n = 0; n < needed; ++n) {
        if (needed > o.sample_above && n >= o.sample_edge && n < needed - o.sample_edge) continue;
        if (const std::size_t got = into(n); got != 0)
            return "returned " + std::to_string(got) + " for " + std::to_string(n) + of;
        if (!filled(0, kGuard) || !filled(kGuard + n, 2 * kGuard + n))
            return "wrote outside a span of " + std::to_string(n) + of;
        if (o.refused_span_untouched && !filled(kGuard, kGuard + n))
            return "wrote into a span of " + std::to_string(n) + of + " and returned 0";
    }
    for (const std::size_t n : {needed, needed + 1, needed + 64}) {
        if (const std::size_t got = into(n); got != needed)
            return "returned " + std::to_string(got) + " for " + std::to_string(n) + of;
        if (!std::equal(reference.begin(), reference.end(), buf.begin() + kGuard))
            return "a different PDU in a span of " + std::to_string(n) + of;
        if (!filled(0, kGuard) || !filled(kGuard + n, 2 * kGuard + n))
            return "wrote outside a span of " + std::to_string(n) + of;
    }
    return {};
}

// ---- packets and pcap files -----------------------------------------------------------------

/// An RTP packet (RFC 3550): version 2, then `media` octets of filler.
inline Bytes rtp_payload(std::uint8_t payload_type, std::uint16_t seq, std::uint32_t timestamp,
                         std::uint32_t ssrc, std::size_t media) {
    Bytes p(12 + media);
    p[0] = 0x80;
    p[1] = payload_type;
    store_be16(&p[2], seq);
    store_be32(&p[4], timestamp);
    store_be32(&p[8], ssrc);
    for (std::size_t i = 0; i < media; ++i)
        p[12 + i] = static_cast<std::uint8_t>(0xD5 ^ i);
    return p;
}

/// An RTCP sender report without report blocks (RFC 3550 clause 6.4.1).
inline Bytes rtcp_sender_report(std::uint32_t ssrc) {
    Bytes p(28);
    p[0] = 0x80;
    p[1] = 200;
    store_be16(&p[2], 6);
    store_be32(&p[4], ssrc);
    store_be32(&p[8], 0xE9A1B2C3);
    store_be32(&p[16], 123456);
    store_be32(&p[20], 77);
    store_be32(&p[24], 77 * 160);
    return p;
}

/// An IPv4 (RFC 791: no options, TTL 64, header checksum set) or IPv6 packet, as the
/// addresses are, carrying `l4` as protocol `protocol`.
inline Bytes ip_packet(const IpAddress& src, const IpAddress& dst, std::uint8_t protocol,
                       ByteSpan l4, std::uint16_t id = 0) {
    REQUIRE(src.family == dst.family);
    REQUIRE(!src.empty());
    const std::size_t h = src.is_v4() ? 20 : 40;
    Bytes p(h + l4.size());
    if (src.is_v4()) {
        p[0] = 0x45;
        store_be16(&p[2], static_cast<std::uint16_t>(p.size()));
        store_be16(&p[4], id);
        p[8] = 64;
        p[9] = protocol;
        std::memcpy(&p[12], src.bytes.data(), 4);
        std::memcpy(&p[16], dst.bytes.data(), 4);
        std::uint32_t sum = 0;
        for (std::size_t i = 0; i < 20; i += 2)
            sum += load_be16(&p[i]);
        while (sum > 0xFFFF)
            sum = (sum & 0xFFFF) + (sum >> 16);
        store_be16(&p[10], static_cast<std::uint16_t>(~sum));
    } else {
        p[0] = 0x60;
        store_be16(&p[4], static_cast<std::uint16_t>(l4.size()));
        p[6] = protocol;
        p[7] = 64;
        std::memcpy(&p[8], src.bytes.data(), 16);
        std::memcpy(&p[24], dst.bytes.data(), 16);
    }
    if (!l4.empty()) std::memcpy(&p[h], l4.data(), l4.size());
    return p;
}

/// A UDP datagram (checksum 0: not computed) around `payload`, in an IP packet.
inline Bytes udp_packet(const IpAddress& src, const IpAddress& dst, std::uint16_t sport,
                        std::uint16_t dport, ByteSpan payload) {
    Bytes udp(8 + payload.size());
    store_be16(&udp[0], sport);
    store_be16(&udp[2], dport);
    store_be16(&udp[4], static_cast<std::uint16_t>(udp.size()));
    if (!payload.empty()) std::memcpy(&udp[8], payload.data(), payload.size());
    return ip_packet(src, dst, 17, udp);
}

/// A TCP segment (20-octet header, PSH ACK, checksum 0) around `payload`.
inline Bytes tcp_segment(std::uint16_t sport, std::uint16_t dport, std::uint32_t seq,
                         ByteSpan payload) {
    Bytes tcp(20 + payload.size());
    store_be16(&tcp[0], sport);
    store_be16(&tcp[2], dport);
    store_be32(&tcp[4], seq);
    store_be32(&tcp[8], 1);
    tcp[12] = 5 << 4;
    tcp[13] = 0x18;
    store_be16(&tcp[14], 65535);
    if (!payload.empty()) std::memcpy(&tcp[20], payload.data(), payload.size());
    return tcp;
}

/// An Ethernet II frame around an IP packet (EtherType from its version).
inline Bytes ethernet_frame(ByteSpan ip) {
    static constexpr std::uint8_t kMacs[12] = {0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01};
    Bytes f(14 + ip.size());
    std::memcpy(f.data(), kMacs, sizeof kMacs);
    store_be16(&f[12], !ip.empty() && ip[0] >> 4 == 6 ? 0x86DD : 0x0800);
    if (!ip.empty()) std::memcpy(&f[14], ip.data(), ip.size());
    return f;
}

/// A classic pcap file (little-endian, microseconds, LINKTYPE_ETHERNET) of `frames`, one
/// second apart. Written here rather than with tools/traffic's PcapWriter, which the handover
/// tests do not link (they depend on handover_dep alone).
inline void write_pcap(const std::filesystem::path& path, const std::vector<Bytes>& frames) {
    std::ofstream out(path, std::ios::binary);
    const auto le = [&](std::uint32_t v, int octets) {
        for (int i = 0; i < octets; ++i)
            out.put(static_cast<char>(v >> (8 * i)));
    };
    le(0xA1B2C3D4, 4);  // magic: microsecond timestamps
    le(2, 2);           // version 2.4
    le(4, 2);
    le(0, 4);       // UTC
    le(0, 4);       // accuracy
    le(262144, 4);  // snaplen
    le(1, 4);       // LINKTYPE_ETHERNET
    for (std::size_t i = 0; i < frames.size(); ++i) {
        le(1704250000 + static_cast<std::uint32_t>(i), 4);
        le(0, 4);
        le(static_cast<std::uint32_t>(frames[i].size()), 4);
        le(static_cast<std::uint32_t>(frames[i].size()), 4);
        out.write(reinterpret_cast<const char*>(frames[i].data()),
                  static_cast<std::streamsize>(frames[i].size()));
    }
    REQUIRE(out.good());
}

}  // namespace tapwire::test
