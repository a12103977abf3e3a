// BER (ITU-T X.690) writing for the handover formats (ETSI TS 102 232, PacketCable/CALEA).
//
// The writer fills a caller-provided buffer BACKWARDS, from its end: a constructed value's
// length is then known when its header is written (everything inside is already there), so
// every length is definite and minimal (DER-style), nothing is measured twice and nothing
// allocates. Encode a SEQUENCE by writing its last component first:
//
//     BerWriter w(buffer);
//     const std::size_t end = w.size();           // mark the end of the SEQUENCE's content
//     w.octets(BerTag::context(2), payload);       // last component first
//     w.integer(BerTag::context(1), sequence);
//     w.close(BerTag::context(0, true), end);      // length and tag of the SEQUENCE
//     if (!w.ok()) ... buffer too small
//     send(w.bytes());
//
// A fixed part encoded once (a warrant's LIID and identifiers) is spliced in with raw().
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>

#include "common/bytes.hpp"

namespace tapwire::handover {

/// An identifier octet's content: class, primitive or constructed, tag number.
struct BerTag {
    enum Class : std::uint8_t { Universal = 0x00, Application = 0x40, Context = 0x80 };
    Class cls = Context;
    bool constructed = false;
    std::uint32_t number = 0;

    static constexpr BerTag context(std::uint32_t n, bool constructed = false) noexcept {
        return {Context, constructed, n};
    }
    static constexpr BerTag universal(std::uint32_t n, bool constructed = false) noexcept {
        return {Universal, constructed, n};
    }
};

namespace ber {
inline constexpr BerTag kInteger = BerTag::universal(2);
inline constexpr BerTag kOctetString = BerTag::universal(4);
inline constexpr BerTag kOid = BerTag::universal(6);
inline constexpr BerTag kEnumerated = BerTag::universal(10);
inline constexpr BerTag kUtf8String = BerTag::universal(12);
inline constexpr BerTag kSequence = BerTag::universal(16, true);
inline constexpr BerTag kPrintableString = BerTag::universal(19);
inline constexpr BerTag kGeneralizedTime = BerTag::universal(24);
}  // namespace ber

class BerWriter {
  public:
    explicit BerWriter(std::span<std::uint8_t> buffer) noexcept
        : begin_(buffer.data()),
          pos_(buffer.data() + buffer.size()),
          end_(buffer.data() + buffer.size()) {}

    /// False once anything did not fit; the content is then unusable.
    bool ok() const noexcept { return ok_; }
    /// Bytes written so far (also the mark for close()).
    std::size_t size() const noexcept { return std::size_t(end_ - pos_); }
    /// The encoding: the last size() bytes of the buffer.
    ByteSpan bytes() const noexcept { return {pos_, size()}; }

    /// Prepends bytes as they are (a pre-encoded part).
    void raw(ByteSpan b) noexcept {
        if (!room(b.size())) return;
        pos_ -= b.size();
        if (!b.empty()) std::memcpy(pos_, b.data(), b.size());
    }
    void raw(std::string_view s) noexcept {
        raw(ByteSpan(reinterpret_cast<const std::uint8_t*>(s.data()), s.size()));
    }

    /// Prepends a definite length (short form below 128, else long form).
    void length(std::size_t n) noexcept {
        if (n < 0x80) return put(std::uint8_t(n));
        unsigned count = 0;
        for (std::size_t v = n; v; v >>= 8, ++count)
            put(std::uint8_t(v));
        put(std::uint8_t(0x80 | count));
    }

    /// Prepends an identifier (low-tag-number form below 31, else high-tag-number form).
    void tag(BerTag t) noexcept {
        const std::uint8_t first = std::uint8_t(t.cls) | (t.constructed ? 0x20 : 0x00);
        if (t.number < 31) return put(std::uint8_t(first | t.number));
        put(std::uint8_t(t.number & 0x7F));
        for (std::uint32_t v = t.number >> 7; v; v >>= 7)
            put(std::uint8_t(0x80 | (v & 0x7F)));
        put(std::uint8_t(first | 0x1F));
    }

    /// Closes a constructed value whose content started at mark `end` (size() then).
    void close(BerTag t, std::size_t end) noexcept {
        length(size() - end);
        tag(t);
    }

    /// A primitive value: tag, length, content.
    void octets(BerTag t, ByteSpan content) noexcept {
        raw(content);
        length(content.size());
        tag(t);
    }
    void octets(BerTag t, std::string_view content) noexcept {
        octets(t, ByteSpan(reinterpret_cast<const std::uint8_t*>(content.data()), content.size()));
    }

    /// INTEGER (or ENUMERATED) of a non-negative value, minimal two's complement.
    void integer(BerTag t, std::uint64_t v) noexcept {
        const std::size_t end = size();
        do {
            put(std::uint8_t(v));
            v >>= 8;
        } while (v);
        if (pos_ < end_ && (*pos_ & 0x80)) put(0x00);  // keep it positive
        close(t, end);
    }

    /// BOOLEAN.
    void boolean(BerTag t, bool v) noexcept {
        put(v ? 0xFF : 0x00);
        length(1);
        tag(t);
    }

  private:
    bool room(std::size_t n) noexcept {
        if (!ok_ || std::size_t(pos_ - begin_) < n) return ok_ = false;
        return true;
    }
    void put(std::uint8_t b) noexcept {
        if (room(1)) *--pos_ = b;
    }

    std::uint8_t* begin_;
    std::uint8_t* pos_;
    std::uint8_t* end_;
    bool ok_ = true;
};

}  // namespace tapwire::handover
