#include "tools/traffic/pcap_writer.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

namespace tapwire::traffic {

namespace {

constexpr std::size_t kGlobalHeader = 24;
constexpr std::size_t kRecordHeader = 16;
constexpr std::uint32_t kPcapngMagic = 0x0a0d0d0a;
constexpr std::uint32_t kModifiedPcapMagic = 0xa1b2cd34;  // Kuznetzov's patched format
// Larger than any link type's maximum in libpcap (262144), far below anything that would
// make a corrupt length exhaust memory.
constexpr std::uint32_t kMaxRecordBytes = 16u << 20;

void put_le16(std::vector<std::uint8_t>& out, std::uint16_t v) {
    out.push_back(std::uint8_t(v));
    out.push_back(std::uint8_t(v >> 8));
}

void put_le32(std::vector<std::uint8_t>& out, std::uint32_t v) {
    for (int i = 0; i < 4; ++i)
        out.push_back(std::uint8_t(v >> (8 * i)));
}

std::uint32_t get32(const std::uint8_t* p, bool big_endian) noexcept {
    if (big_endian) return load_be32(p);
    return std::uint32_t(p[0]) | std::uint32_t(p[1]) << 8 | std::uint32_t(p[2]) << 16 |
           std::uint32_t(p[3]) << 24;
}

std::uint16_t get16(const std::uint8_t* p, bool big_endian) noexcept {
    if (big_endian) return load_be16(p);
    return std::uint16_t(p[0] | p[1] << 8);
}

std::string hex32(std::uint32_t v) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "0x%08x", v);
    return buf;
}

PcapReadResult fail(std::string message) {
    PcapReadResult r;
    r.error = std::move(message);
    return r;
}

}  // namespace

void append_pcap_header(std::vector<std::uint8_t>& out, PcapPrecision precision,
                        std::uint32_t snaplen, std::uint32_t linktype) {
    put_le32(out, precision == PcapPrecision::Nanosecond ? kPcapMagicNano : kPcapMagicMicro);
    put_le16(out, 2);  // version 2.4
    put_le16(out, 4);
    put_le32(out, 0);  // thiszone
    put_le32(out, 0);  // sigfigs
    put_le32(out, snaplen);
    put_le32(out, linktype);
}

void append_pcap_record(std::vector<std::uint8_t>& out, PcapPrecision precision,
                        std::uint64_t time_ns, ByteSpan frame, std::uint32_t snaplen) {
    std::uint64_t seconds = time_ns / 1000000000u;
    std::uint64_t fraction = time_ns % 1000000000u;
    if (precision == PcapPrecision::Microsecond) fraction /= 1000u;
    std::uint32_t caplen = std::uint32_t(std::min<std::size_t>(frame.size(), snaplen));
    put_le32(out, std::uint32_t(seconds));
    put_le32(out, std::uint32_t(fraction));
    put_le32(out, caplen);
    put_le32(out, std::uint32_t(frame.size()));
    out.insert(out.end(), frame.begin(), frame.begin() + caplen);
}

PcapReadResult parse_pcap(ByteSpan file) {
    if (file.size() < kGlobalHeader) {
        return fail("not a pcap file: " + std::to_string(file.size()) +
                    " bytes, shorter than the 24-byte global header");
    }
    std::uint32_t magic_le = get32(file.data(), false);
    PcapContents c;
    if (magic_le == kPcapMagicMicro || magic_le == kPcapMagicNano) {
        c.big_endian = false;
    } else if (__builtin_bswap32(magic_le) == kPcapMagicMicro ||
               __builtin_bswap32(magic_le) == kPcapMagicNano) {
        c.big_endian = true;
    } else if (magic_le == kPcapngMagic) {
        return fail("pcapng files are not supported; convert with: editcap -F pcap IN OUT");
    } else if (magic_le == kModifiedPcapMagic ||
               __builtin_bswap32(magic_le) == kModifiedPcapMagic) {
        return fail("modified (Kuznetzov) pcap format is not supported");
    } else {
        return fail("not a pcap file: unknown magic number " + hex32(magic_le));
    }
    std::uint32_t magic = get32(file.data(), c.big_endian);
    c.precision = magic == kPcapMagicNano ? PcapPrecision::Nanosecond : PcapPrecision::Microsecond;
    c.version_major = get16(file.data() + 4, c.big_endian);
    c.version_minor = get16(file.data() + 6, c.big_endian);
    if (c.version_major != 2) {
        return fail("unsupported pcap version " + std::to_string(c.version_major) + "." +
                    std::to_string(c.version_minor) + " (expected 2.x)");
    }
    c.snaplen = get32(file.data() + 16, c.big_endian);
    // The upper bits of the link-type field carry FCS information; the type is the low 28.
    c.linktype = get32(file.data() + 20, c.big_endian) & 0x0fffffff;

    std::size_t off = kGlobalHeader;
    const std::uint64_t scale = c.precision == PcapPrecision::Nanosecond ? 1 : 1000;
    while (off < file.size()) {
        std::size_t index = c.packets.size();
        std::string where = "record " + std::to_string(index) + " at offset " + std::to_string(off);
        if (file.size() - off < kRecordHeader) {
            return fail("truncated pcap: " + where + " has " + std::to_string(file.size() - off) +
                        " bytes, shorter than the 16-byte record header");
        }
        const std::uint8_t* h = file.data() + off;
        std::uint32_t sec = get32(h, c.big_endian);
        std::uint32_t frac = get32(h + 4, c.big_endian);
        std::uint32_t caplen = get32(h + 8, c.big_endian);
        std::uint32_t origlen = get32(h + 12, c.big_endian);
        if (caplen > kMaxRecordBytes) {
            return fail("corrupt pcap: " + where + " claims " + std::to_string(caplen) +
                        " captured bytes");
        }
        if (caplen > origlen) {
            return fail("corrupt pcap: " + where + " captured length " + std::to_string(caplen) +
                        " exceeds original length " + std::to_string(origlen));
        }
        off += kRecordHeader;
        if (file.size() - off < caplen) {
            return fail("truncated pcap: " + where + " needs " + std::to_string(caplen) +
                        " data bytes, file has " + std::to_string(file.size() - off));
        }
        PcapPacket& p = c.packets.emplace_back();
        p.time_ns = std::uint64_t(sec) * 1000000000u + std::uint64_t(frac) * scale;
        p.original_length = origlen;
        p.data.assign(file.begin() + std::ptrdiff_t(off),
                      file.begin() + std::ptrdiff_t(off + caplen));
        off += caplen;
    }
    PcapReadResult r;
    r.contents = std::move(c);
    return r;
}

PcapReadResult read_pcap(const std::string& path) {
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (f == nullptr) return fail("cannot open " + path + ": " + std::strerror(errno));
    std::vector<std::uint8_t> bytes;
    std::uint8_t buf[65536];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0)
        bytes.insert(bytes.end(), buf, buf + n);
    bool failed = std::ferror(f) != 0;
    int err = errno;
    std::fclose(f);
    if (failed) return fail("cannot read " + path + ": " + std::strerror(err));
    PcapReadResult r = parse_pcap(ByteSpan(bytes));
    if (!r) r.error = path + ": " + r.error;
    return r;
}

PcapWriter::PcapWriter(PcapWriter&& other) noexcept {
    *this = std::move(other);
}

PcapWriter& PcapWriter::operator=(PcapWriter&& other) noexcept {
    if (this != &other) {
        if (file_ != nullptr) std::fclose(file_);
        file_ = std::exchange(other.file_, nullptr);
        path_ = std::move(other.path_);
        precision_ = other.precision_;
        snaplen_ = other.snaplen_;
        packets_ = std::exchange(other.packets_, 0);
        scratch_ = std::move(other.scratch_);
    }
    return *this;
}

PcapWriter::~PcapWriter() {
    if (file_ != nullptr) std::fclose(file_);
}

bool PcapWriter::open(const std::string& path, PcapPrecision precision, std::string& error,
                      std::uint32_t snaplen, std::uint32_t linktype) {
    if (file_ != nullptr && !close(error)) return false;
    file_ = std::fopen(path.c_str(), "wb");
    if (file_ == nullptr) {
        error = "cannot create " + path + ": " + std::strerror(errno);
        return false;
    }
    path_ = path;
    precision_ = precision;
    snaplen_ = snaplen;
    packets_ = 0;
    scratch_.clear();
    append_pcap_header(scratch_, precision, snaplen, linktype);
    if (std::fwrite(scratch_.data(), 1, scratch_.size(), file_) != scratch_.size()) {
        error = "cannot write " + path + ": " + std::strerror(errno);
        std::fclose(file_);
        file_ = nullptr;
        return false;
    }
    return true;
}

bool PcapWriter::write(std::uint64_t time_ns, ByteSpan frame, std::string& error) {
    if (file_ == nullptr) {
        error = "pcap writer is not open";
        return false;
    }
    scratch_.clear();
    append_pcap_record(scratch_, precision_, time_ns, frame, snaplen_);
    if (std::fwrite(scratch_.data(), 1, scratch_.size(), file_) != scratch_.size()) {
        error = "cannot write " + path_ + ": " + std::strerror(errno);
        return false;
    }
    ++packets_;
    return true;
}

bool PcapWriter::close(std::string& error) {
    if (file_ == nullptr) return true;
    int err = 0;
    if (std::fflush(file_) != 0) err = errno;
    if (std::fclose(file_) != 0 && err == 0) err = errno;
    file_ = nullptr;
    if (err != 0) {
        error = "cannot write " + path_ + ": " + std::strerror(err);
        return false;
    }
    return true;
}

}  // namespace tapwire::traffic
