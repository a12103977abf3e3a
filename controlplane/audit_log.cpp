// Audit trail: canonical record encoding, hash chain, Ed25519 checkpoints, the fsynced
// writer with torn-tail recovery, export, and the verifier. See audit_log.hpp for the format.

#include "controlplane/audit_log.hpp"

#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>

namespace tapwire::controlplane {

namespace {

constexpr std::string_view kRecordDomain = "tapwire-audit-v1\n";
constexpr std::string_view kCheckpointDomain = "tapwire-audit-checkpoint-v1";
constexpr std::string_view kHashKey = ",\"hash\":\"";
// `,"hash":"` + 64 hex + `"}`: the fixed-size end of every line (before '\n').
constexpr std::size_t kSuffixBytes = kHashKey.size() + 64 + 2;
constexpr std::string_view kSystem = "system";
constexpr std::int64_t kMaxTimeUs = 253402300799999999;  // 9999-12-31T23:59:59.999999Z

// ---- small helpers ---------------------------------------------------------------------

AuditStatus fail(AuditError e, std::string message) {
    return AuditStatus{e, std::move(message)};
}

std::string errno_text(int err) {
    return std::strerror(err);
}

int hex_value(char c) noexcept {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;  // upper case is not canonical
}

bool from_hex(std::string_view hex, std::uint8_t* out, std::size_t n) noexcept {
    if (hex.size() != 2 * n) return false;
    for (std::size_t i = 0; i < n; ++i) {
        const int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) return false;
        out[i] = static_cast<std::uint8_t>(hi << 4 | lo);
    }
    return true;
}

bool is_hex(std::string_view s) noexcept {
    return std::all_of(s.begin(), s.end(), [](char c) { return hex_value(c) >= 0; });
}

Sha256 sha256_parts(std::string_view a, std::string_view b) {
    Sha256 out{};
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    unsigned int len = 0;
    const bool ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr) == 1 &&
                    EVP_DigestUpdate(ctx, a.data(), a.size()) == 1 &&
                    EVP_DigestUpdate(ctx, b.data(), b.size()) == 1 &&
                    EVP_DigestFinal_ex(ctx, out.data(), &len) == 1;
    EVP_MD_CTX_free(ctx);
    // SHA-256 does not fail short of memory exhaustion; a zero hash then breaks the chain
    // visibly rather than silently.
    if (!ok) out.fill(0);
    return out;
}

Sha256 record_hash(std::string_view body) {
    return sha256_parts(kRecordDomain, body);
}

// RFC 3629 validation: returns the length of the valid UTF-8 sequence at s[i], or 0.
std::size_t utf8_sequence(std::string_view s, std::size_t i) noexcept {
    const auto b0 = static_cast<unsigned char>(s[i]);
    if (b0 < 0x80) return 1;
    std::size_t n;
    std::uint32_t cp;
    if (b0 >= 0xC2 && b0 <= 0xDF) {
        n = 2, cp = b0 & 0x1F;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
        n = 3, cp = b0 & 0x0F;
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
        n = 4, cp = b0 & 0x07;
    } else {
        return 0;
    }
    if (i + n > s.size()) return 0;
    for (std::size_t k = 1; k < n; ++k) {
        const auto b = static_cast<unsigned char>(s[i + k]);
        if ((b & 0xC0) != 0x80) return 0;
        cp = cp << 6 | (b & 0x3F);
    }
    // Overlong forms, UTF-16 surrogates and values past U+10FFFF are not UTF-8.
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

bool utf8_valid(std::string_view s) noexcept {
    for (std::size_t i = 0; i < s.size();) {
        const std::size_t n = utf8_sequence(s, i);
        if (n == 0) return false;
        i += n;
    }
    return true;
}

// Valid UTF-8 of at most max bytes: invalid bytes become U+FFFD, an overlong value is cut
// at a character boundary and ends in "…". Idempotent, so stored values re-encode to
// themselves.
std::string sanitize(std::string_view in, std::size_t max) {
    static constexpr std::string_view kReplacement = "\xEF\xBF\xBD";
    static constexpr std::string_view kEllipsis = "\xE2\x80\xA6";
    std::string out;
    out.reserve(std::min(in.size(), max + 4));
    std::size_t cut = 0;  // last boundary at which "…" still fits
    for (std::size_t i = 0; i < in.size();) {
        const std::size_t n = utf8_sequence(in, i);
        const std::string_view piece = n ? in.substr(i, n) : kReplacement;
        i += n ? n : 1;
        if (out.size() + piece.size() <= max - kEllipsis.size()) cut = out.size() + piece.size();
        if (out.size() + piece.size() > max) {
            out.resize(cut);
            out += kEllipsis;
            return out;
        }
        out += piece;
    }
    return out;
}

void append_json_string(std::string& out, std::string_view s) {
    out += '"';
    for (const char c : s) {
        switch (c) {
            case '"':
                out += "\\\"";
                break;
            case '\\':
                out += "\\\\";
                break;
            case '\n':
                out += "\\n";
                break;
            case '\r':
                out += "\\r";
                break;
            case '\t':
                out += "\\t";
                break;
            case '\b':
                out += "\\b";
                break;
            case '\f':
                out += "\\f";
                break;
            default:
                if (static_cast<unsigned char>(c) < 0x20) {
                    char buf[8];
                    std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned char>(c));
                    out += buf;
                } else {
                    out += c;
                }
        }
    }
    out += '"';
}

// ---- time (proleptic Gregorian, UTC; H. Hinnant's days_from_civil / civil_from_days) ------

std::int64_t floor_div(std::int64_t a, std::int64_t b) noexcept {
    return a / b - ((a % b != 0) && ((a < 0) != (b < 0)));
}

std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) noexcept {
    y -= m <= 2;
    const std::int64_t era = floor_div(y, 400);
    const auto yoe = static_cast<unsigned>(y - era * 400);
    const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

void civil_from_days(std::int64_t z, std::int64_t& y, unsigned& m, unsigned& d) noexcept {
    z += 719468;
    const std::int64_t era = floor_div(z, 146097);
    const auto doe = static_cast<unsigned>(z - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    d = doy - (153 * mp + 2) / 5 + 1;
    m = mp < 10 ? mp + 3 : mp - 9;
    y = static_cast<std::int64_t>(yoe) + era * 400 + (m <= 2);
}

bool parse_digits(std::string_view s, std::size_t pos, std::size_t n, std::int64_t& out) {
    out = 0;
    for (std::size_t i = pos; i < pos + n; ++i) {
        if (s[i] < '0' || s[i] > '9') return false;
        out = out * 10 + (s[i] - '0');
    }
    return true;
}

// "YYYY-MM-DDTHH:MM:SS.ffffffZ"; canonical form is enforced by the caller's re-encoding.
bool parse_audit_time(std::string_view s, std::int64_t& time_us) {
    if (s.size() != 27 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' ||
        s[16] != ':' || s[19] != '.' || s[26] != 'Z')
        return false;
    std::int64_t y, mo, d, h, mi, se, us;
    if (!parse_digits(s, 0, 4, y) || !parse_digits(s, 5, 2, mo) || !parse_digits(s, 8, 2, d) ||
        !parse_digits(s, 11, 2, h) || !parse_digits(s, 14, 2, mi) || !parse_digits(s, 17, 2, se) ||
        !parse_digits(s, 20, 6, us))
        return false;
    if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 59)
        return false;
    const std::int64_t days =
        days_from_civil(y, static_cast<unsigned>(mo), static_cast<unsigned>(d));
    time_us = ((days * 86400 + h * 3600 + mi * 60 + se) * 1000000) + us;
    return true;
}

// ---- encoding ----------------------------------------------------------------------------

// Everything of the line before `,"hash":`. The fixed key order is the canonical form.
std::string encode_body(const AuditRecord& r) {
    std::string out;
    out.reserve(256 + r.message.size() + r.details.size() * 64);
    out += "{\"seq\":";
    out += std::to_string(r.seq);
    out += ",\"time\":";
    append_json_string(out, format_audit_time(r.time_us));
    out += ",\"actor\":";
    append_json_string(out, r.actor);
    out += ",\"role\":";
    append_json_string(out, r.role);
    out += ",\"action\":";
    append_json_string(out, to_string(r.action));
    out += ",\"subject\":";
    append_json_string(out, r.subject);
    out += ",\"result\":";
    append_json_string(out, r.result);
    out += ",\"message\":";
    append_json_string(out, r.message);
    out += ",\"details\":{";
    for (std::size_t i = 0; i < r.details.size(); ++i) {
        if (i) out += ',';
        append_json_string(out, r.details[i].first);
        out += ':';
        append_json_string(out, r.details[i].second);
    }
    out += '}';
    if (r.action == AuditAction::Checkpoint) {
        out += ",\"key\":";
        append_json_string(out, r.key_id);
        out += ",\"sig\":";
        append_json_string(out, r.signature);
    }
    out += ",\"prev\":\"";
    out += to_hex(r.prev);
    out += '"';
    return out;
}

// ---- strict parsing ----------------------------------------------------------------------

// A cursor over exactly the shape encode_body() writes. Anything else is malformed; what
// it accepts is then re-encoded and compared byte for byte.
struct Cursor {
    std::string_view s;
    std::size_t pos = 0;
    std::string error;

    bool bad(std::string what) {
        if (error.empty()) error = std::move(what) + " at column " + std::to_string(pos + 1);
        return false;
    }
    bool literal(std::string_view lit) {
        if (s.substr(pos, lit.size()) != lit) return bad("expected '" + std::string(lit) + "'");
        pos += lit.size();
        return true;
    }
    bool peek(char c) const { return pos < s.size() && s[pos] == c; }
    bool number(std::uint64_t& out) {
        const std::size_t start = pos;
        out = 0;
        while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
            const auto digit = static_cast<std::uint64_t>(s[pos] - '0');
            if (out > (UINT64_MAX - digit) / 10) return bad("number too large");
            out = out * 10 + digit;
            ++pos;
        }
        return pos > start || bad("expected a number");
    }
    bool string(std::string& out, std::size_t max, const char* field) {
        out.clear();
        if (!literal("\"")) return false;
        while (pos < s.size()) {
            const char c = s[pos++];
            if (c == '"') {
                if (!utf8_valid(out)) return bad(std::string(field) + " is not UTF-8");
                if (out.size() > max) return bad(std::string(field) + " too long");
                return true;
            }
            if (static_cast<unsigned char>(c) < 0x20) return bad("raw control character");
            if (c != '\\') {
                out += c;
                continue;
            }
            if (pos >= s.size()) break;
            switch (s[pos++]) {
                case '"':
                    out += '"';
                    break;
                case '\\':
                    out += '\\';
                    break;
                case 'n':
                    out += '\n';
                    break;
                case 'r':
                    out += '\r';
                    break;
                case 't':
                    out += '\t';
                    break;
                case 'b':
                    out += '\b';
                    break;
                case 'f':
                    out += '\f';
                    break;
                case 'u': {
                    // Only control characters are written as \u00XX.
                    std::uint8_t v = 0;
                    if (s.substr(pos, 2) != "00" || !from_hex(s.substr(pos + 2, 2), &v, 1) ||
                        v >= 0x20)
                        return bad("unexpected \\u escape");
                    out += static_cast<char>(v);
                    pos += 4;
                    break;
                }
                default:
                    return bad("unexpected escape");
            }
        }
        return bad("unterminated string");
    }
};

enum class LineCheck { Ok, Malformed, HashMismatch };

// Parses a line (without '\n') into r. HashMismatch still fills r (with the stored hash).
LineCheck check_line(std::string_view line, AuditRecord& r, std::string& why) {
    r = AuditRecord{};
    if (line.size() < kSuffixBytes + 2 || line.size() > AuditLog::kMaxRecordBytes) {
        why = "line length " + std::to_string(line.size()) + " out of range";
        return LineCheck::Malformed;
    }
    const std::string_view body = line.substr(0, line.size() - kSuffixBytes);
    const std::string_view suffix = line.substr(body.size());
    if (suffix.substr(0, kHashKey.size()) != kHashKey || suffix.substr(kSuffixBytes - 2) != "\"}" ||
        !from_hex(suffix.substr(kHashKey.size(), 64), r.hash.data(), r.hash.size())) {
        why = "no hash field at the end of the line";
        return LineCheck::Malformed;
    }
    Cursor c{body, 0, {}};
    std::string text;
    bool ok = c.literal("{\"seq\":") && c.number(r.seq) && c.literal(",\"time\":") &&
              c.string(text, 27, "time");
    if (ok && !parse_audit_time(text, r.time_us)) ok = c.bad("bad time");
    ok = ok && c.literal(",\"actor\":") && c.string(r.actor, AuditEntry::kMaxActor, "actor") &&
         c.literal(",\"role\":") && c.string(r.role, AuditEntry::kMaxRole, "role") &&
         c.literal(",\"action\":") && c.string(text, 64, "action");
    if (ok) {
        const auto action = audit_action_from_string(text);
        if (!action)
            ok = c.bad("unknown action '" + text + "'");
        else
            r.action = *action;
    }
    ok = ok && c.literal(",\"subject\":") &&
         c.string(r.subject, AuditEntry::kMaxSubject, "subject") && c.literal(",\"result\":") &&
         c.string(r.result, AuditEntry::kMaxResult, "result") && c.literal(",\"message\":") &&
         c.string(r.message, AuditEntry::kMaxMessage, "message") && c.literal(",\"details\":{");
    while (ok && !c.peek('}')) {
        if (!r.details.empty()) ok = c.literal(",");
        std::string key, value;
        ok = ok && c.string(key, AuditEntry::kMaxDetailKey, "detail key") && c.literal(":") &&
             c.string(value, AuditEntry::kMaxDetailValue, "detail value");
        if (!ok) break;
        for (const auto& d : r.details)
            if (d.first == key) ok = c.bad("duplicate detail key");
        if (r.details.size() == AuditEntry::kMaxDetails) ok = c.bad("too many details");
        r.details.emplace_back(std::move(key), std::move(value));
    }
    ok = ok && c.literal("}");
    if (ok && r.action == AuditAction::Checkpoint) {
        ok = c.literal(",\"key\":") && c.string(r.key_id, 16, "key") && c.literal(",\"sig\":") &&
             c.string(r.signature, 128, "sig");
        if (ok && (r.key_id.size() != 16 || r.signature.size() != 128 || !is_hex(r.key_id) ||
                   !is_hex(r.signature)))
            ok = c.bad("checkpoint key or signature not hex");
    }
    ok = ok && c.literal(",\"prev\":\"") && c.pos + 65 <= body.size() &&
         from_hex(body.substr(c.pos, 64), r.prev.data(), r.prev.size());
    if (ok) c.pos += 64;
    ok = ok && c.literal("\"");
    if (ok && c.pos != body.size()) ok = c.bad("unexpected data after prev");
    if (!ok) {
        why = c.error.empty() ? "bad prev field" : c.error;
        return LineCheck::Malformed;
    }
    if (encode_body(r) != body) {
        why = "not in canonical form";
        return LineCheck::Malformed;
    }
    return record_hash(body) == r.hash ? LineCheck::Ok : LineCheck::HashMismatch;
}

// The sequence number of a line too damaged to parse, so that a mangled record is reported
// once (as mangled) and not also as missing.
std::optional<std::uint64_t> lenient_seq(std::string_view line) {
    Cursor c{line, 0, {}};
    std::uint64_t seq = 0;
    if (c.literal("{\"seq\":") && c.number(seq) && seq > 0) return seq;
    return std::nullopt;
}

// Splits a byte stream into lines. A line longer than kMaxRecordBytes is reported once as
// overlong and skipped, so memory stays bounded whatever the file holds.
class LineSplitter {
  public:
    // cb(line, offset, terminated, overlong)
    using Callback = std::function<bool(std::string_view, std::uint64_t, bool, bool)>;
    explicit LineSplitter(Callback cb) : cb_(std::move(cb)) {}

    bool feed(std::string_view chunk, std::uint64_t offset) {
        std::size_t start = 0;
        while (start < chunk.size()) {
            const void* nl = std::memchr(chunk.data() + start, '\n', chunk.size() - start);
            if (!nl) break;
            const std::size_t i =
                static_cast<std::size_t>(static_cast<const char*>(nl) - chunk.data());
            if (skipping_) {
                skipping_ = false;
            } else if (!carry_.empty()) {
                carry_.append(chunk.data() + start, i - start);
                if (!emit(carry_, carry_offset_, true)) return false;
                carry_.clear();
            } else if (!emit(chunk.substr(start, i - start), offset + start, true)) {
                return false;
            }
            start = i + 1;
        }
        if (start < chunk.size() && !skipping_) {
            if (carry_.empty()) carry_offset_ = offset + start;
            carry_.append(chunk.data() + start, chunk.size() - start);
            if (carry_.size() > AuditLog::kMaxRecordBytes) {
                if (!cb_(std::string_view(carry_).substr(0, 64), carry_offset_, true, true))
                    return false;
                carry_.clear();
                skipping_ = true;
            }
        }
        return true;
    }
    void finish() {
        if (!skipping_ && !carry_.empty()) cb_(carry_, carry_offset_, false, false);
        carry_.clear();
    }

  private:
    bool emit(std::string_view line, std::uint64_t offset, bool terminated) {
        return cb_(line, offset, terminated, line.size() > AuditLog::kMaxRecordBytes);
    }
    Callback cb_;
    std::string carry_;
    std::uint64_t carry_offset_ = 0;
    bool skipping_ = false;
};

AuditStatus read_lines(int fd, std::uint64_t end, LineSplitter& splitter) {
    std::vector<char> buf(1 << 20);
    std::uint64_t off = 0;
    while (off < end) {
        const std::size_t want =
            static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), end - off));
        const ssize_t n = ::pread(fd, buf.data(), want, static_cast<off_t>(off));
        if (n < 0) {
            if (errno == EINTR) continue;
            return fail(AuditError::Io,
                        "read at offset " + std::to_string(off) + ": " + errno_text(errno));
        }
        if (n == 0) break;
        if (!splitter.feed(std::string_view(buf.data(), static_cast<std::size_t>(n)), off)) break;
        off += static_cast<std::uint64_t>(n);
    }
    splitter.finish();
    return {};
}

class Fd {
  public:
    explicit Fd(int fd = -1) : fd_(fd) {}
    ~Fd() {
        if (fd_ >= 0) ::close(fd_);
    }
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    int get() const { return fd_; }
    int release() { return std::exchange(fd_, -1); }

  private:
    int fd_;
};

bool write_all(int fd, std::string_view bytes, int& err) {
    std::size_t done = 0;
    while (done < bytes.size()) {
        const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
        if (n < 0) {
            if (errno == EINTR) continue;
            err = errno;
            return false;
        }
        done += static_cast<std::size_t>(n);
    }
    return true;
}

AuditStatus sync_directory_of(const std::string& path) {
    const auto slash = path.rfind('/');
    const std::string dir = slash == std::string::npos ? "."
                            : slash == 0               ? "/"
                                                       : path.substr(0, slash);
    Fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (fd.get() < 0 || ::fsync(fd.get()) != 0)
        return fail(AuditError::Io, "fsync of directory " + dir + ": " + errno_text(errno));
    return {};
}

AuditError write_error_kind(int err) {
    return err == ENOSPC || err == EDQUOT || err == EFBIG ? AuditError::DiskFull : AuditError::Io;
}

std::int64_t system_clock_us() {
    return std::chrono::duration_cast<std::chrono::microseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

// Export over [0, end) of an open file.
AuditResult<std::vector<AuditRecord>> export_from(int fd, std::uint64_t end,
                                                  const AuditLog::ExportQuery& q) {
    std::vector<AuditRecord> out;
    AuditStatus problem;
    bool have_prev = false;
    AuditHead prev;
    LineSplitter splitter(
        [&](std::string_view line, std::uint64_t offset, bool terminated, bool) -> bool {
            if (!terminated) return false;  // a torn tail was never acknowledged
            AuditRecord r;
            std::string why;
            const LineCheck check = check_line(line, r, why);
            const std::string where = "at byte offset " + std::to_string(offset);
            if (check == LineCheck::Malformed)
                problem = fail(AuditError::Tampered, "line " + where + ": " + why);
            else if (check == LineCheck::HashMismatch)
                problem = fail(AuditError::Tampered,
                               "record " + std::to_string(r.seq) + " " + where + ": hash mismatch");
            else if (have_prev && (r.seq != prev.seq + 1 || r.prev != prev.hash))
                problem = fail(AuditError::Tampered, "record " + std::to_string(r.seq) + " " +
                                                         where + " does not follow record " +
                                                         std::to_string(prev.seq));
            if (!problem.ok()) return false;
            have_prev = true;
            prev = {r.seq, r.hash};
            if (r.seq > q.to_seq || out.size() >= q.limit) return false;
            if (r.seq >= q.from_seq && r.time_us >= q.from_time_us && r.time_us <= q.to_time_us)
                out.push_back(std::move(r));
            return true;
        });
    AuditStatus io = read_lines(fd, end, splitter);
    if (!io.ok()) return io;
    if (!problem.ok()) {
        problem.message += " (run tapwire-audit-verify on the file)";
        return problem;
    }
    return out;
}

}  // namespace

// ---- names -------------------------------------------------------------------------------

const char* to_string(AuditAction a) noexcept {
    static constexpr const char* kNames[] = {TAPWIRE_AUDIT_ACTIONS(TAPWIRE_X_TEXT)};
    return tapwire::name_of(a, kNames);
}

std::optional<AuditAction> audit_action_from_string(std::string_view text) noexcept {
    for (std::size_t i = 0; i < static_cast<std::size_t>(AuditAction::Count); ++i) {
        const auto a = static_cast<AuditAction>(i);
        if (text == to_string(a)) return a;
    }
    return std::nullopt;
}

const char* to_string(AuditError e) noexcept {
    static constexpr const char* kNames[] = {TAPWIRE_AUDIT_ERRORS(TAPWIRE_X_TEXT)};
    return tapwire::name_of(e, kNames);
}

const char* to_string(AuditIssueKind k) noexcept {
    static constexpr const char* kNames[] = {TAPWIRE_AUDIT_ISSUES(TAPWIRE_X_TEXT)};
    return tapwire::name_of(k, kNames);
}

// ---- records -----------------------------------------------------------------------------

std::string to_hex(std::span<const std::uint8_t> bytes) {
    static constexpr char kDigits[] = "0123456789abcdef";
    std::string out(bytes.size() * 2, '0');
    for (std::size_t i = 0; i < bytes.size(); ++i) {
        out[2 * i] = kDigits[bytes[i] >> 4];
        out[2 * i + 1] = kDigits[bytes[i] & 15];
    }
    return out;
}

std::string format_audit_time(std::int64_t time_us) {
    time_us = std::clamp<std::int64_t>(time_us, 0, kMaxTimeUs);
    const std::int64_t secs = time_us / 1000000, frac = time_us % 1000000;
    const std::int64_t days = secs / 86400, sod = secs % 86400;
    std::int64_t y;
    unsigned m, d;
    civil_from_days(days, y, m, d);
    char buf[40];
    std::snprintf(buf, sizeof buf,
                  "%04" PRId64 "-%02u-%02uT%02" PRId64 ":%02" PRId64 ":%02" PRId64 ".%06" PRId64
                  "Z",
                  y, m, d, sod / 3600, sod / 60 % 60, sod % 60, frac);
    return buf;
}

std::string encode_audit_line(const AuditRecord& record) {
    std::string line = encode_body(record);
    line += kHashKey;
    line += to_hex(record.hash);
    line += "\"}\n";
    return line;
}

Sha256 compute_audit_hash(const AuditRecord& record) {
    return record_hash(encode_body(record));
}

AuditResult<AuditRecord> parse_audit_line(std::string_view line) {
    if (!line.empty() && line.back() == '\n') line.remove_suffix(1);
    AuditRecord r;
    std::string why;
    switch (check_line(line, r, why)) {
        case LineCheck::Ok:
            return r;
        case LineCheck::HashMismatch:
            return fail(AuditError::Tampered,
                        "record " + std::to_string(r.seq) + ": hash mismatch (edited)");
        case LineCheck::Malformed:
            break;
    }
    return fail(AuditError::Tampered, "not a valid audit record: " + why);
}

std::string targets_digest(std::span<const std::string> targets, std::string_view key) {
    std::vector<std::string> sorted(targets.begin(), targets.end());
    std::sort(sorted.begin(), sorted.end());
    sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());
    // Length-prefixed, so that {"ab","c"} and {"a","bc"} differ.
    std::string data;
    for (const auto& t : sorted) {
        for (int shift = 56; shift >= 0; shift -= 8)
            data += static_cast<char>(static_cast<std::uint64_t>(t.size()) >> shift & 0xFF);
        data += t;
    }
    std::uint8_t md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (key.empty()) {
        const Sha256 h = sha256_parts("tapwire-targets-v1\n", data);
        return to_hex(h);
    }
    if (!HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
              reinterpret_cast<const unsigned char*>(data.data()), data.size(), md, &len))
        return {};
    return to_hex(std::span<const std::uint8_t>(md, len));
}

// ---- keys --------------------------------------------------------------------------------

namespace {

AuditResult<AuditKey> key_failure(AuditError e, const std::string& what) {
    const unsigned long code = ERR_get_error();
    std::string message = what;
    if (code) {
        char buf[256];
        ERR_error_string_n(code, buf, sizeof buf);
        message += std::string(": ") + buf;
    }
    ERR_clear_error();
    return fail(e, message);
}

std::string bio_text(BIO* bio) {
    char* data = nullptr;
    const long n = BIO_get_mem_data(bio, &data);
    return n > 0 ? std::string(data, static_cast<std::size_t>(n)) : std::string();
}

}  // namespace

struct AuditKeyAccess {
    static AuditResult<AuditKey> wrap(EVP_PKEY* pkey, bool has_private) {
        if (EVP_PKEY_get_id(pkey) != EVP_PKEY_ED25519) {
            EVP_PKEY_free(pkey);
            return fail(AuditError::BadKey, "not an Ed25519 key");
        }
        AuditKey key;
        key.pkey_ =
            std::shared_ptr<void>(pkey, [](void* p) { EVP_PKEY_free(static_cast<EVP_PKEY*>(p)); });
        key.has_private_ = has_private;
        std::uint8_t raw[32];
        std::size_t len = sizeof raw;
        if (EVP_PKEY_get_raw_public_key(pkey, raw, &len) != 1 || len != sizeof raw)
            return key_failure(AuditError::BadKey, "cannot read the public key");
        const Sha256 h = sha256_parts({}, std::string_view(reinterpret_cast<char*>(raw), len));
        key.key_id_ = to_hex(std::span<const std::uint8_t>(h.data(), 8));
        return key;
    }
};

AuditResult<AuditKey> AuditKey::generate() {
    EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, nullptr);
    EVP_PKEY* pkey = nullptr;
    const bool ok = ctx && EVP_PKEY_keygen_init(ctx) == 1 && EVP_PKEY_keygen(ctx, &pkey) == 1;
    EVP_PKEY_CTX_free(ctx);
    if (!ok) return key_failure(AuditError::Crypto, "Ed25519 key generation failed");
    return AuditKeyAccess::wrap(pkey, true);
}

AuditResult<AuditKey> AuditKey::from_pem(std::string_view pem) {
    if (pem.size() > 64 * 1024) return fail(AuditError::BadKey, "key text too long");
    // A private key first (PKCS#8), then a public one (SubjectPublicKeyInfo).
    for (const bool is_private : {true, false}) {
        BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
        if (!bio) return key_failure(AuditError::Crypto, "BIO_new_mem_buf");
        EVP_PKEY* pkey = is_private ? PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr)
                                    : PEM_read_bio_PUBKEY(bio, nullptr, nullptr, nullptr);
        BIO_free(bio);
        if (pkey) {
            ERR_clear_error();
            return AuditKeyAccess::wrap(pkey, is_private);
        }
    }
    return key_failure(AuditError::BadKey, "no PEM Ed25519 private or public key found");
}

AuditResult<AuditKey> AuditKey::load_pem_file(const std::string& path) {
    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (fd.get() < 0) return fail(AuditError::BadKey, path + ": " + errno_text(errno));
    std::string text;
    char buf[4096];
    for (;;) {
        const ssize_t n = ::read(fd.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return fail(AuditError::BadKey, path + ": " + errno_text(errno));
        if (n == 0) break;
        text.append(buf, static_cast<std::size_t>(n));
        if (text.size() > 64 * 1024) return fail(AuditError::BadKey, path + ": too large");
    }
    auto key = from_pem(text);
    if (!key.ok()) key.status.message = path + ": " + key.status.message;
    return key;
}

std::string AuditKey::public_pem() const {
    if (!pkey_) return {};
    BIO* bio = BIO_new(BIO_s_mem());
    std::string out;
    if (bio && PEM_write_bio_PUBKEY(bio, static_cast<EVP_PKEY*>(pkey_.get())) == 1)
        out = bio_text(bio);
    BIO_free(bio);
    return out;
}

std::string AuditKey::private_pem() const {
    if (!pkey_ || !has_private_) return {};
    BIO* bio = BIO_new(BIO_s_mem());
    std::string out;
    if (bio && PEM_write_bio_PrivateKey(bio, static_cast<EVP_PKEY*>(pkey_.get()), nullptr, nullptr,
                                        0, nullptr, nullptr) == 1)
        out = bio_text(bio);
    BIO_free(bio);
    return out;
}

std::vector<std::uint8_t> AuditKey::sign(std::span<const std::uint8_t> msg) const {
    if (!pkey_ || !has_private_) return {};
    std::vector<std::uint8_t> sig(64);
    std::size_t len = sig.size();
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    // Ed25519 is "pure": no digest is named, the message goes in whole (RFC 8032).
    const bool ok = ctx &&
                    EVP_DigestSignInit(ctx, nullptr, nullptr, nullptr,
                                       static_cast<EVP_PKEY*>(pkey_.get())) == 1 &&
                    EVP_DigestSign(ctx, sig.data(), &len, msg.data(), msg.size()) == 1;
    EVP_MD_CTX_free(ctx);
    if (!ok || len != 64) {
        ERR_clear_error();
        return {};
    }
    return sig;
}

bool AuditKey::verify(std::span<const std::uint8_t> msg, std::span<const std::uint8_t> sig) const {
    if (!pkey_ || sig.size() != 64) return false;
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    const bool ok = ctx &&
                    EVP_DigestVerifyInit(ctx, nullptr, nullptr, nullptr,
                                         static_cast<EVP_PKEY*>(pkey_.get())) == 1 &&
                    EVP_DigestVerify(ctx, sig.data(), sig.size(), msg.data(), msg.size()) == 1;
    EVP_MD_CTX_free(ctx);
    ERR_clear_error();
    return ok;
}

std::vector<std::uint8_t> checkpoint_message(std::uint64_t checkpoint_seq, const Sha256& prev) {
    std::vector<std::uint8_t> msg(kCheckpointDomain.begin(), kCheckpointDomain.end());
    const std::uint64_t covered = checkpoint_seq - 1;
    for (int shift = 56; shift >= 0; shift -= 8)
        msg.push_back(static_cast<std::uint8_t>(covered >> shift & 0xFF));
    msg.insert(msg.end(), prev.begin(), prev.end());
    return msg;
}

// ---- writer ------------------------------------------------------------------------------

AuditLog::AuditLog(AuditLogOptions options) : options_(std::move(options)) {
    if (!options_.clock) options_.clock = system_clock_us;
}

AuditLog::~AuditLog() {
    if (!closed_) close();
}

AuditResult<std::unique_ptr<AuditLog>> AuditLog::open(AuditLogOptions options) {
    if (options.signing_key && !options.signing_key->has_private())
        return fail(AuditError::BadKey, "the audit signing key has no private part");
    std::unique_ptr<AuditLog> log(new AuditLog(std::move(options)));
    const std::string& path = log->options_.path;
    Fd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0640));
    if (fd.get() < 0) return fail(AuditError::Io, "open " + path + ": " + errno_text(errno));
    // One writer per file: a second appliance instance on the same file would fork the chain.
    if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
        const int err = errno;
        return fail(err == EWOULDBLOCK ? AuditError::Locked : AuditError::Io,
                    "lock " + path + ": " + errno_text(err));
    }
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode))
        return fail(AuditError::Io, path + ": not a regular file");
    // The file's directory entry must be durable too, or a new log can vanish on power loss.
    if (AuditStatus s = sync_directory_of(path); !s.ok()) return s;
    log->fd_ = fd.release();
    log->end_offset_ = static_cast<std::uint64_t>(st.st_size);

    std::vector<AuditEntry> opening;
    if (AuditStatus s = log->recover_tail(opening); !s.ok()) {
        log->closed_ = true;  // nothing to close politely
        ::close(log->fd_);
        log->fd_ = -1;
        return s;
    }
    AuditEntry opened;
    opened.actor = opened.role = kSystem;
    opened.action = AuditAction::AuditOpened;
    opened.details = {
        {"format", "tapwire-audit-v1"},
        {"checkpoint_interval", std::to_string(log->options_.checkpoint_interval)},
        {"signing_key",
         log->options_.signing_key ? log->options_.signing_key->key_id() : std::string("none")}};
    opening.push_back(std::move(opened));
    std::lock_guard lock(log->mutex_);
    // The checkpoint at open signs the head as found: a later rewrite of anything before it
    // is caught even if the process never reaches checkpoint_interval records.
    auto written = log->append_locked(opening, true, true);
    if (!written.ok()) {
        log->closed_ = true;
        ::close(log->fd_);
        log->fd_ = -1;
        return written.status;
    }
    return log;
}

// Reads the last kMaxWriteBytes + 2 * kMaxRecordBytes of the file: enough to hold a complete
// record before the largest write a crash can have torn. Lines are checked in order (hash and
// link to the line before); the first that fails, and everything after it, is the damaged
// tail. It was never acknowledged (fdatasync had not returned), so it is moved aside and the
// chain continues from the last good record.
AuditStatus AuditLog::recover_tail(std::vector<AuditEntry>& opening) {
    const std::uint64_t size = end_offset_;
    head_ = AuditHead{};
    if (size == 0) return {};
    const std::uint64_t window = kMaxWriteBytes + 2 * kMaxRecordBytes;
    const std::uint64_t start = size > window ? size - window : 0;
    std::string buf(static_cast<std::size_t>(size - start), '\0');
    for (std::size_t done = 0; done < buf.size();) {
        const ssize_t n =
            ::pread(fd_, buf.data() + done, buf.size() - done, static_cast<off_t>(start + done));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0)
            return fail(AuditError::Io, options_.path + ": read of tail: " + errno_text(errno));
        done += static_cast<std::size_t>(n);
    }
    std::size_t pos = 0;
    if (start > 0) {  // the window begins inside a record
        const std::size_t nl = buf.find('\n');
        if (nl == std::string::npos)
            return fail(AuditError::TailCorrupt, options_.path + ": no record in the last " +
                                                     std::to_string(window) + " bytes");
        pos = nl + 1;
    }
    bool have_good = false;
    std::uint64_t good_end = start + pos;
    std::string why = "incomplete record";
    // A crash tears a write: the end of a line is missing, or blocks read back as zeros or
    // garbage, so the line does not parse. A line that parses but fails its hash or its link
    // was written whole and changed afterwards: that is tampering, and moving it aside would
    // hide it, so open refuses and names it.
    auto tampered = [&](std::uint64_t offset, const std::string& what) {
        return fail(AuditError::TailCorrupt,
                    options_.path + ": " + what + " at byte offset " + std::to_string(offset) +
                        ": a complete record was changed, not torn by a crash; run "
                        "tapwire-audit-verify");
    };
    while (pos < buf.size()) {
        const std::size_t nl = buf.find('\n', pos);
        if (nl == std::string::npos) break;  // torn: no newline
        AuditRecord r;
        const LineCheck check = check_line(std::string_view(buf).substr(pos, nl - pos), r, why);
        if (check == LineCheck::HashMismatch)
            return tampered(start + pos, "record " + std::to_string(r.seq) + " fails its hash");
        if (check != LineCheck::Ok) break;
        if (have_good && (r.seq != head_.seq + 1 || r.prev != head_.hash))
            return tampered(start + pos, "record " + std::to_string(r.seq) +
                                             " does not follow record " +
                                             std::to_string(head_.seq));
        have_good = true;
        head_ = {r.seq, r.hash};
        last_is_checkpoint_ = r.action == AuditAction::Checkpoint;
        pos = nl + 1;
        good_end = start + pos;
    }
    if (good_end == size) return {};
    const std::uint64_t damaged = size - good_end;
    const std::string where = options_.path + ": damaged tail of " + std::to_string(damaged) +
                              " bytes at offset " + std::to_string(good_end) + " (" + why + ")";
    if (!have_good && start > 0)
        return fail(AuditError::TailCorrupt, where + "; no intact record before it in the last " +
                                                 std::to_string(window) + " bytes");
    if (damaged > kMaxWriteBytes)
        return fail(AuditError::TailCorrupt, where + "; larger than one write, not a crash");
    if (!options_.recover_torn_tail)
        return fail(AuditError::TailCorrupt, where + "; recovery disabled");

    // Keep the bytes (evidence, should they be more than a torn write) before cutting them.
    const std::string_view tail = std::string_view(buf).substr(good_end - start);
    const std::string saved = options_.path + ".torn-" + std::to_string(good_end);
    {
        Fd out(::open(saved.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640));
        int err = 0;
        if (out.get() < 0 || !write_all(out.get(), tail, err) || ::fsync(out.get()) != 0)
            return fail(AuditError::Io,
                        "save damaged tail to " + saved + ": " + errno_text(err ? err : errno));
    }
    if (AuditStatus s = sync_directory_of(saved); !s.ok()) return s;
    if (::ftruncate(fd_, static_cast<off_t>(good_end)) != 0 || ::fdatasync(fd_) != 0)
        return fail(AuditError::Io,
                    options_.path + ": truncate damaged tail: " + errno_text(errno));
    end_offset_ = good_end;
    if (!have_good) head_ = AuditHead{};

    AuditEntry recovered;
    recovered.actor = recovered.role = kSystem;
    recovered.action = AuditAction::AuditRecovered;
    recovered.message = why;
    recovered.details = {{"offset", std::to_string(good_end)},
                         {"bytes", std::to_string(damaged)},
                         {"sha256", to_hex(sha256_parts({}, tail))},
                         {"saved_as", saved.substr(saved.rfind('/') + 1)}};
    opening.push_back(std::move(recovered));
    return {};
}

AuditResult<std::uint64_t> AuditLog::append(const AuditEntry& entry) {
    std::lock_guard lock(mutex_);
    auto seqs = append_locked(std::span<const AuditEntry>(&entry, 1), false);
    if (!seqs.ok()) return seqs.status;
    return seqs->front();
}

AuditResult<std::vector<std::uint64_t>> AuditLog::append_batch(
    std::span<const AuditEntry> entries) {
    std::lock_guard lock(mutex_);
    return append_locked(entries, false);
}

AuditStatus AuditLog::checkpoint() {
    if (!options_.signing_key) return fail(AuditError::NoSigningKey, "no audit signing key");
    std::lock_guard lock(mutex_);
    if (last_is_checkpoint_ && failed_.ok() && !closed_) return {};
    return append_locked({}, true).status;
}

AuditStatus AuditLog::close() {
    std::lock_guard lock(mutex_);
    if (closed_) return {};
    if (fd_ < 0) {  // open() failed half-way: nothing to write to
        closed_ = true;
        return fail(AuditError::Closed, "audit log was never opened");
    }
    AuditStatus status = failed_;
    if (status.ok()) {
        AuditEntry closing;
        closing.actor = closing.role = kSystem;
        closing.action = AuditAction::AuditClosed;
        status = append_locked(std::span<const AuditEntry>(&closing, 1), true).status;
    }
    closed_ = true;
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    return status;
}

AuditHead AuditLog::head() const {
    std::lock_guard lock(mutex_);
    return head_;
}

AuditResult<std::vector<std::uint64_t>> AuditLog::append_locked(std::span<const AuditEntry> entries,
                                                                bool force_checkpoint,
                                                                bool opening) {
    if (closed_) return fail(AuditError::Closed, "audit log is closed");
    if (!failed_.ok())
        return fail(AuditError::Failed, "audit log unusable since: " + failed_.message);
    const std::int64_t now = std::clamp<std::int64_t>(options_.clock(), 0, kMaxTimeUs);
    AuditHead head = head_;
    std::uint64_t since = since_checkpoint_;
    bool last_cp = last_is_checkpoint_;
    std::string bytes;
    std::vector<std::uint64_t> seqs;
    seqs.reserve(entries.size());

    auto add = [&](AuditRecord& r) {
        r.seq = head.seq + 1;
        r.time_us = now;
        r.prev = head.hash;
        const std::string body = encode_body(r);
        r.hash = record_hash(body);
        bytes += body;
        bytes += kHashKey;
        bytes += to_hex(r.hash);
        bytes += "\"}\n";
        head = {r.seq, r.hash};
    };
    auto add_checkpoint = [&]() -> AuditStatus {
        AuditRecord cp;
        cp.actor = cp.role = kSystem;
        cp.action = AuditAction::Checkpoint;
        cp.details = {{"covers", "1-" + std::to_string(head.seq)}};
        cp.key_id = options_.signing_key->key_id();
        const auto sig = options_.signing_key->sign(checkpoint_message(head.seq + 1, head.hash));
        if (sig.empty()) return fail(AuditError::Crypto, "Ed25519 signing of a checkpoint failed");
        cp.signature = to_hex(sig);
        add(cp);
        since = 0;
        last_cp = true;
        return {};
    };

    for (const AuditEntry& e : entries) {
        if (e.action == AuditAction::Checkpoint || e.action >= AuditAction::Count)
            return fail(AuditError::InvalidRecord, "action not allowed in an entry");
        AuditRecord r;
        r.actor = sanitize(e.actor, AuditEntry::kMaxActor);
        r.role = sanitize(e.role, AuditEntry::kMaxRole);
        r.action = e.action;
        r.subject = sanitize(e.subject, AuditEntry::kMaxSubject);
        r.result = sanitize(e.result, AuditEntry::kMaxResult);
        r.message = sanitize(e.message, AuditEntry::kMaxMessage);
        if (e.details.size() > AuditEntry::kMaxDetails)
            return fail(AuditError::InvalidRecord,
                        "more than " + std::to_string(AuditEntry::kMaxDetails) + " details");
        for (const auto& [k, v] : e.details) {
            std::string key = sanitize(k, AuditEntry::kMaxDetailKey);
            for (const auto& d : r.details)
                if (d.first == key)
                    return fail(AuditError::InvalidRecord, "duplicate detail key '" + key + "'");
            r.details.emplace_back(std::move(key), sanitize(v, AuditEntry::kMaxDetailValue));
        }
        add(r);
        seqs.push_back(r.seq);
        last_cp = false;
        ++since;
        if (options_.signing_key && options_.checkpoint_interval && !opening &&
            since >= options_.checkpoint_interval)
            if (AuditStatus s = add_checkpoint(); !s.ok()) return s;
    }
    if (force_checkpoint && options_.signing_key && !last_cp)
        if (AuditStatus s = add_checkpoint(); !s.ok()) return s;
    if (bytes.size() > kMaxWriteBytes)
        return fail(AuditError::InvalidRecord,
                    "batch of " + std::to_string(bytes.size()) + " bytes exceeds one write");
    if (bytes.empty()) return seqs;
    if (AuditStatus s = write_durably(bytes); !s.ok()) return s;
    head_ = head;
    since_checkpoint_ = since;
    last_is_checkpoint_ = last_cp;
    end_offset_ += bytes.size();
    return seqs;
}

AuditStatus AuditLog::write_durably(const std::string& bytes) {
    int err = 0;
    if (!write_all(fd_, bytes, err)) {
        // A short write may have left part of a record: cut the file back to the last
        // acknowledged byte so no half record stays. If even that fails, the state of the
        // file is unknown until a reopen re-checks its tail.
        if (::ftruncate(fd_, static_cast<off_t>(end_offset_)) != 0)
            failed_ = fail(AuditError::Failed, "write failed (" + errno_text(err) +
                                                   ") and truncate back failed (" +
                                                   errno_text(errno) + ")");
        return fail(write_error_kind(err), options_.path + ": write: " + errno_text(err));
    }
    if (::fdatasync(fd_) != 0) {
        // After a failed fdatasync Linux may have dropped the dirty pages and cleared the
        // error: retrying would "succeed" without the data. Refuse further appends.
        err = errno;
        (void)::ftruncate(fd_, static_cast<off_t>(end_offset_));
        failed_ = fail(AuditError::SyncFailed, "fdatasync: " + errno_text(err));
        return failed_;
    }
    return {};
}

AuditResult<std::vector<AuditRecord>> AuditLog::export_records(const ExportQuery& query) const {
    std::uint64_t end;
    {
        std::lock_guard lock(mutex_);
        end = end_offset_;
    }
    // A separate descriptor: reads do not hold the append lock.
    Fd fd(::open(options_.path.c_str(), O_RDONLY | O_CLOEXEC));
    if (fd.get() < 0)
        return fail(AuditError::Io, "open " + options_.path + ": " + errno_text(errno));
    return export_from(fd.get(), end, query);
}

AuditResult<std::vector<AuditRecord>> export_audit_records(const std::string& path,
                                                           const AuditLog::ExportQuery& query) {
    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (fd.get() < 0) return fail(AuditError::Io, "open " + path + ": " + errno_text(errno));
    return export_from(fd.get(), UINT64_MAX, query);
}

// ---- verifier ----------------------------------------------------------------------------

namespace {

class Verifier {
  public:
    explicit Verifier(const AuditVerifyOptions& options) : options_(options) {
        report_.signatures_checked = !options.public_keys.empty();
    }

    bool line(std::string_view text, std::uint64_t offset, bool terminated, bool overlong) {
        ++report_.lines;
        ++line_;
        report_.bytes = offset + text.size() + (terminated ? 1 : 0);
        const std::string at =
            "line " + std::to_string(line_) + " (byte offset " + std::to_string(offset) + ")";
        if (!terminated) {
            const auto seq = lenient_seq(text);
            issue(AuditIssueKind::TornTail, seq.value_or(0), offset,
                  "truncated: last record" + (seq ? " (" + std::to_string(*seq) + ")" : "") +
                      " incomplete at byte offset " + std::to_string(offset) + " (" +
                      std::to_string(text.size()) + " bytes, no newline)");
            return true;
        }
        AuditRecord r;
        std::string why = "longer than " + std::to_string(AuditLog::kMaxRecordBytes) + " bytes";
        const LineCheck check = overlong ? LineCheck::Malformed : check_line(text, r, why);
        if (check == LineCheck::Malformed) {
            const auto seq = lenient_seq(text);
            issue(AuditIssueKind::Malformed, seq.value_or(0), offset,
                  (seq ? "record " + std::to_string(*seq) + " at " : std::string()) + at +
                      ": not a valid record (" + why + "; edited)");
            if (seq) seqs_.push_back({*seq, line_});
            have_prev_ = false;  // its hash is unknown: do not blame the next record
            allowed_next_ = 0;
            run_ = 0;
            return true;
        }
        ++report_.records;
        if (report_.records == 1) report_.first_seq = r.seq, report_.first_time_us = r.time_us;
        report_.last_seq = r.seq;
        report_.last_time_us = r.time_us;
        seqs_.push_back({r.seq, line_});
        const std::string rec = "record " + std::to_string(r.seq);
        if (check == LineCheck::HashMismatch)
            issue(AuditIssueKind::HashMismatch, r.seq, offset,
                  rec + ": hash mismatch (edited), at " + at);

        if (r.seq == 1 && r.prev != Sha256{})
            issue(AuditIssueKind::ChainBroken, r.seq, offset,
                  rec + ": prev_hash is not the genesis value (chain rewritten), at " + at);
        if (have_prev_) {
            if (r.seq == prev_seq_ + 1) {
                if (r.prev != prev_hash_)
                    issue(AuditIssueKind::ChainBroken, r.seq, offset,
                          rec + ": prev_hash does not match the hash of record " +
                              std::to_string(prev_seq_) + " (record " + std::to_string(prev_seq_) +
                              " or " + std::to_string(r.seq) +
                              " rewritten, or a record inserted), at " + at);
            } else if (r.seq > prev_seq_ + 1) {
                jumps_.push_back({prev_seq_, r.seq, line_});
            } else if (r.seq < prev_seq_) {
                issue(AuditIssueKind::OutOfOrder, r.seq, offset,
                      "records out of order at " + at + ": record " + std::to_string(r.seq) +
                          " follows record " + std::to_string(prev_seq_));
            }  // equal: reported as a duplicate at the end
        } else if (report_.records == 1 && r.seq != 1) {
            jumps_.push_back({0, r.seq, line_});
        }
        protocol(r, offset, at);

        if (r.action == AuditAction::Checkpoint) {
            checkpoint(r, offset, at);
        } else {
            ++since_verified_;
            if (++run_ == options_.checkpoint_interval + 1 && options_.checkpoint_interval)
                issue(AuditIssueKind::CheckpointOverdue, r.seq, offset,
                      rec + ": more than " + std::to_string(options_.checkpoint_interval) +
                          " records without a checkpoint (checkpoints removed?), at " + at);
        }
        have_prev_ = true;
        prev_seq_ = r.seq;
        prev_hash_ = r.hash;
        return true;
    }

    AuditVerifyReport finish() {
        std::sort(seqs_.begin(), seqs_.end());
        std::uint64_t expected = 1;
        for (std::size_t i = 0; i < seqs_.size();) {
            const std::uint64_t seq = seqs_[i].first;
            std::size_t j = i;
            while (j < seqs_.size() && seqs_[j].first == seq)
                ++j;
            if (seq > expected) missing(expected, seq - 1);
            if (j - i > 1) {
                std::string lines;
                for (std::size_t k = i; k < j && k < i + 5; ++k)
                    lines += (k > i ? ", " : "") + std::to_string(seqs_[k].second);
                issue_at(AuditIssueKind::Duplicate, seq, seqs_[i + 1].second, 0,
                         "record " + std::to_string(seq) + " appears " + std::to_string(j - i) +
                             " times (lines " + lines + ")");
            }
            expected = seq + 1;
            i = j;
        }
        if (options_.expect_checkpoint && !expected_found_) {
            const std::uint64_t e = options_.expect_checkpoint;
            if (report_.last_seq < e)
                issue_at(AuditIssueKind::CheckpointMissing, e, 0, report_.bytes,
                         "file ends at record " + std::to_string(report_.last_seq) +
                             " but a signed checkpoint at " + std::to_string(e) +
                             " is expected (records removed from the end)");
            else
                issue_at(AuditIssueKind::CheckpointMissing, e, 0, 0,
                         "no valid checkpoint at record " + std::to_string(e) +
                             " although one is expected");
        }
        report_.unsigned_tail = report_.checkpoints_verified ? since_verified_ : report_.records;
        // In file order; issues found at the end (missing, duplicate) sit at their line.
        std::stable_sort(report_.issues.begin(), report_.issues.end(),
                         [](const AuditIssue& a, const AuditIssue& b) {
                             return (a.line ? a.line : UINT64_MAX) < (b.line ? b.line : UINT64_MAX);
                         });
        return std::move(report_);
    }

  private:
    struct Jump {
        std::uint64_t from, to, line;
    };
    static constexpr std::uint32_t bit(AuditAction a) { return 1u << static_cast<unsigned>(a); }

    void issue(AuditIssueKind kind, std::uint64_t seq, std::uint64_t offset, std::string msg) {
        issue_at(kind, seq, line_, offset, std::move(msg));
    }
    void issue_at(AuditIssueKind kind, std::uint64_t seq, std::uint64_t line, std::uint64_t offset,
                  std::string msg) {
        ++report_.issue_count;
        if (report_.issues.size() < options_.max_issues)
            report_.issues.push_back({kind, seq, line, offset, std::move(msg)});
    }

    void missing(std::uint64_t first, std::uint64_t last) {
        std::string msg = first == last ? "record " + std::to_string(first) + " missing"
                                        : "records " + std::to_string(first) + "-" +
                                              std::to_string(last) + " missing";
        std::uint64_t line = 0;
        for (const Jump& j : jumps_) {
            if (j.from == first - 1 && j.to == last + 1) {
                msg += j.from
                           ? " (sequence jumps " + std::to_string(j.from) + " -> " +
                                 std::to_string(j.to) + " at line " + std::to_string(j.line) + ")"
                           : " (the file starts at record " + std::to_string(j.to) + ")";
                line = j.line;
                break;
            }
        }
        issue_at(AuditIssueKind::Missing, first, line, 0, std::move(msg));
    }

    // The writer's own protocol, which a forger appending well-chained records after an
    // orderly shutdown must also follow and cannot: the log starts with audit_opened (or
    // audit_recovered); audit_recovered is followed by audit_opened; audit_opened naming a
    // signing key is followed by a checkpoint (signed by that key); audit_closed is followed
    // by a checkpoint or the next audit_opened, and that checkpoint by the next opening.
    void protocol(const AuditRecord& r, std::uint64_t offset, const std::string& at) {
        const std::uint32_t opening =
            bit(AuditAction::AuditOpened) | bit(AuditAction::AuditRecovered);
        if (report_.records == 1) allowed_next_ = opening;
        if (allowed_next_ && !(allowed_next_ & bit(r.action)))
            issue(AuditIssueKind::UnexpectedRecord, r.seq, offset,
                  "record " + std::to_string(r.seq) + ": " + to_string(r.action) +
                      " where the writer only ever puts " + expected_text() +
                      " (forged or inserted record), at " + at);
        const bool after_close = prev_action_ == AuditAction::AuditClosed;
        allowed_next_ = 0;
        switch (r.action) {
            case AuditAction::AuditRecovered:
                allowed_next_ = bit(AuditAction::AuditOpened);
                break;
            case AuditAction::AuditClosed:
                allowed_next_ = opening | bit(AuditAction::Checkpoint);
                break;
            case AuditAction::Checkpoint:
                if (after_close) allowed_next_ = opening;
                break;
            case AuditAction::AuditOpened:
                for (const auto& [k, v] : r.details)
                    if (k == "signing_key" && v != "none")
                        allowed_next_ = bit(AuditAction::Checkpoint);
                    else if (k == "signing_key" && report_.signatures_checked)
                        issue(AuditIssueKind::UnexpectedRecord, r.seq, offset,
                              "record " + std::to_string(r.seq) +
                                  ": the log was opened without a signing key, at " + at);
                break;
            default:
                break;
        }
        prev_action_ = r.action;
    }

    std::string expected_text() const {
        std::string out;
        for (unsigned i = 0; i < static_cast<unsigned>(AuditAction::Count); ++i)
            if (allowed_next_ & (1u << i))
                out += (out.empty() ? "" : " or ") + std::string(to_string(AuditAction(i)));
        return out;
    }

    void checkpoint(const AuditRecord& r, std::uint64_t offset, const std::string& at) {
        ++report_.checkpoints;
        run_ = 0;
        const std::string cp = "checkpoint at " + std::to_string(r.seq);
        if (!report_.signatures_checked) {
            if (r.seq == options_.expect_checkpoint) expected_found_ = true;
            return;
        }
        const AuditKey* key = nullptr;
        for (const AuditKey& k : options_.public_keys)
            if (k.key_id() == r.key_id) key = &k;
        if (!key) {
            issue(AuditIssueKind::UnknownKey, r.seq, offset,
                  cp + ": signed by key " + r.key_id + ", which is not among the given public " +
                      "keys (forged, or the key is missing), at " + at);
            return;
        }
        std::uint8_t sig[64];
        from_hex(r.signature, sig, sizeof sig);
        if (!key->verify(checkpoint_message(r.seq, r.prev), sig)) {
            issue(AuditIssueKind::BadSignature, r.seq, offset,
                  cp +
                      ": bad signature (the records before it were rewritten, or the "
                      "checkpoint was forged), at " +
                      at);
            return;
        }
        ++report_.checkpoints_verified;
        report_.last_signed_seq = r.seq - 1;
        since_verified_ = 0;
        if (r.seq == options_.expect_checkpoint) expected_found_ = true;
    }

    const AuditVerifyOptions& options_;
    AuditVerifyReport report_;
    std::uint64_t line_ = 0;
    bool have_prev_ = false;
    std::uint64_t prev_seq_ = 0;
    Sha256 prev_hash_{};
    AuditAction prev_action_ = AuditAction::Count;
    std::uint32_t allowed_next_ = 0;    // bit per action; 0: anything
    std::uint64_t run_ = 0;             // records since the last checkpoint line
    std::uint64_t since_verified_ = 0;  // records since the last verified checkpoint
    bool expected_found_ = false;
    std::vector<std::pair<std::uint64_t, std::uint64_t>> seqs_;  // (seq, line)
    std::vector<Jump> jumps_;
};

void append_json_number(std::string& out, const char* key, std::uint64_t v) {
    out += '"';
    out += key;
    out += "\":";
    out += std::to_string(v);
}

}  // namespace

AuditVerifyReport verify_audit_bytes(std::string_view data, const AuditVerifyOptions& options) {
    Verifier v(options);
    LineSplitter splitter(
        [&](std::string_view line, std::uint64_t offset, bool terminated, bool overlong) {
            return v.line(line, offset, terminated, overlong);
        });
    splitter.feed(data, 0);
    splitter.finish();
    return v.finish();
}

AuditResult<AuditVerifyReport> verify_audit_log(const std::string& path,
                                                const AuditVerifyOptions& options) {
    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (fd.get() < 0) return fail(AuditError::Io, path + ": " + errno_text(errno));
    Verifier v(options);
    LineSplitter splitter(
        [&](std::string_view line, std::uint64_t offset, bool terminated, bool overlong) {
            return v.line(line, offset, terminated, overlong);
        });
    if (AuditStatus s = read_lines(fd.get(), UINT64_MAX, splitter); !s.ok()) return s;
    return v.finish();
}

std::string AuditVerifyReport::summary() const {
    std::string s = intact() ? "intact: "
                             : "TAMPERED (" + std::to_string(issue_count) + " issue" +
                                   (issue_count == 1 ? "" : "s") + "): ";
    s += std::to_string(records) + " records";
    if (records)
        s += " (" + std::to_string(first_seq) + " - " + std::to_string(last_seq) + ", " +
             format_audit_time(first_time_us) + " to " + format_audit_time(last_time_us) + ")";
    s += ", " + std::to_string(checkpoints) + " checkpoints";
    if (!signatures_checked) {
        s += "; signatures NOT checked (no public key given)";
    } else {
        s += " (" + std::to_string(checkpoints_verified) + " signatures verified)";
        if (checkpoints_verified)
            s += "; last signed checkpoint covers 1-" + std::to_string(last_signed_seq) + ", " +
                 std::to_string(unsigned_tail) +
                 " records after it are protected by the chain only";
        else
            s += "; no valid signed checkpoint: the whole file is protected by the chain only";
    }
    return s;
}

std::string AuditVerifyReport::to_json() const {
    std::string out = "{\"intact\":";
    out += intact() ? "true" : "false";
    out += ',';
    append_json_number(out, "bytes", bytes);
    out += ',';
    append_json_number(out, "records", records);
    out += ',';
    append_json_number(out, "checkpoints", checkpoints);
    out += ',';
    append_json_number(out, "checkpoints_verified", checkpoints_verified);
    out += ",\"signatures_checked\":";
    out += signatures_checked ? "true" : "false";
    out += ',';
    append_json_number(out, "first_seq", first_seq);
    out += ',';
    append_json_number(out, "last_seq", last_seq);
    out += ",\"first_time\":";
    append_json_string(out, records ? format_audit_time(first_time_us) : "");
    out += ",\"last_time\":";
    append_json_string(out, records ? format_audit_time(last_time_us) : "");
    out += ',';
    append_json_number(out, "last_signed_seq", last_signed_seq);
    out += ',';
    append_json_number(out, "unsigned_tail", unsigned_tail);
    out += ',';
    append_json_number(out, "issue_count", issue_count);
    out += ",\"issues\":[";
    for (std::size_t i = 0; i < issues.size(); ++i) {
        const AuditIssue& is = issues[i];
        out += i ? ",{\"kind\":" : "{\"kind\":";
        append_json_string(out, to_string(is.kind));
        out += ',';
        append_json_number(out, "seq", is.seq);
        out += ',';
        append_json_number(out, "line", is.line);
        out += ',';
        append_json_number(out, "offset", is.offset);
        out += ",\"message\":";
        append_json_string(out, is.message);
        out += '}';
    }
    out += "],\"summary\":";
    append_json_string(out, summary());
    out += '}';
    return out;
}

}  // namespace tapwire::controlplane
