// The audit trail: records survive reopen, and the verifier names every kind of tampering
// (edit, removal, reordering, truncation, forgery, chain rewrite before and after the last
// signed checkpoint). Keys are made here with OpenSSL; none is checked in.

#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "controlplane/audit_log.hpp"
#include "tests/unit/temp_dir.hpp"

namespace {

using tapwire::test::TempDir;

using namespace tapwire::controlplane;
namespace fs = std::filesystem;

constexpr std::int64_t kStartUs = 1772366400LL * 1000000;  // 2026-03-01T12:00:00Z

// Ed25519 key pair straight from OpenSSL (EVP_PKEY_keygen), handed over as PEM text, so the
// PEM loading path of AuditKey is exercised as the appliance uses it.
struct KeyPair {
    AuditKey private_key, public_key;
};

std::string pem_of(EVP_PKEY* pkey, bool private_part) {
    BIO* bio = BIO_new(BIO_s_mem());
    const int ok = private_part
                       ? PEM_write_bio_PrivateKey(bio, pkey, nullptr, nullptr, 0, nullptr, nullptr)
                       : PEM_write_bio_PUBKEY(bio, pkey);
    REQUIRE(ok == 1);
    char* data = nullptr;
    const long n = BIO_get_mem_data(bio, &data);
    std::string out(data, static_cast<std::size_t>(n));
    BIO_free(bio);
    return out;
}

KeyPair make_keys() {
    EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, nullptr);
    EVP_PKEY* pkey = nullptr;
    REQUIRE(ctx);
    REQUIRE(EVP_PKEY_keygen_init(ctx) == 1);
    REQUIRE(EVP_PKEY_keygen(ctx, &pkey) == 1);
    EVP_PKEY_CTX_free(ctx);
    auto priv = AuditKey::from_pem(pem_of(pkey, true));
    auto pub = AuditKey::from_pem(pem_of(pkey, false));
    EVP_PKEY_free(pkey);
    REQUIRE(priv.ok());
    REQUIRE(pub.ok());
    REQUIRE(priv->has_private());
    REQUIRE_FALSE(pub->has_private());
    REQUIRE(priv->key_id() == pub->key_id());
    return {*priv, *pub};
}

struct Clock {
    std::shared_ptr<std::atomic<std::int64_t>> now =
        std::make_shared<std::atomic<std::int64_t>>(kStartUs);
    std::function<std::int64_t()> fn() const {
        auto n = now;
        return [n] { return n->load(); };
    }
    void advance_s(std::int64_t s) { *now += s * 1000000; }
};

AuditEntry entry(AuditAction action, std::string subject, std::string result = "ok") {
    AuditEntry e;
    e.actor = "CN=orchestrator,O=Carrier";
    e.role = "provisioner";
    e.action = action;
    e.subject = std::move(subject);
    e.result = std::move(result);
    e.details = {{"liid", "LI-0042"}};
    return e;
}

std::string read_all(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

void write_all(const std::string& path, const std::string& data) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << data;
}

std::vector<std::string> split_lines(const std::string& data) {
    std::vector<std::string> lines;
    std::size_t pos = 0;
    while (pos < data.size()) {
        const std::size_t nl = data.find('\n', pos);
        if (nl == std::string::npos) {
            lines.push_back(data.substr(pos));
            break;
        }
        lines.push_back(data.substr(pos, nl - pos + 1));
        pos = nl + 1;
    }
    return lines;
}

std::string join(const std::vector<std::string>& lines) {
    std::string out;
    for (const auto& l : lines)
        out += l;
    return out;
}

AuditVerifyReport verify(const std::string& data, const KeyPair* keys = nullptr,
                         std::uint64_t interval = 0, std::uint64_t expect_checkpoint = 0) {
    AuditVerifyOptions options;
    if (keys) options.public_keys.push_back(keys->public_key);
    options.checkpoint_interval = interval;
    options.expect_checkpoint = expect_checkpoint;
    return verify_audit_bytes(data, options);
}

std::string issues_text(const AuditVerifyReport& r) {
    std::string out;
    for (const auto& i : r.issues)
        out += std::string(to_string(i.kind)) + ": " + i.message + "\n";
    return out;
}

// A closed log: audit_opened, checkpoint, `records` warrant records (checkpoint every 10),
// audit_closed, checkpoint.
std::string make_log(const TempDir& dir, const KeyPair& keys, int records,
                     const std::string& name = "audit.log") {
    AuditLogOptions o;
    o.path = dir.file(name);
    o.signing_key = keys.private_key;
    o.checkpoint_interval = 10;
    Clock clock;
    o.clock = clock.fn();
    auto log = AuditLog::open(o);
    REQUIRE(log.ok());
    for (int i = 0; i < records; ++i) {
        clock.advance_s(1);
        auto seq = (*log)->append(entry(AuditAction::WarrantActivate, "xid:" + std::to_string(i)));
        REQUIRE(seq.ok());
    }
    REQUIRE((*log)->close().ok());
    return o.path;
}

// Index of the line holding record `seq`.
std::size_t line_of(const std::vector<std::string>& lines, std::uint64_t seq) {
    for (std::size_t i = 0; i < lines.size(); ++i) {
        auto r = parse_audit_line(lines[i]);
        if (r.ok() && r->seq == seq) return i;
    }
    FAIL("record " << seq << " not found");
    return 0;
}

AuditRecord parsed(const std::string& line) {
    auto r = parse_audit_line(line);
    REQUIRE(r.ok());
    return *r;
}

// What an attacker with the source code and write access does: re-chains every record from
// line `from` on, after applying `edit`; checkpoints are re-signed with `resign` when given
// (an attacker's key), dropped when `drop_checkpoints`, or else kept with their old signature.
std::vector<std::string> rewrite_chain(std::vector<std::string> lines, std::size_t from,
                                       const std::function<void(AuditRecord&)>& edit,
                                       const AuditKey* resign = nullptr,
                                       bool drop_checkpoints = false) {
    std::vector<std::string> out(lines.begin(), lines.begin() + static_cast<long>(from));
    AuditHead head;
    if (from > 0) {
        const AuditRecord last = parsed(out.back());
        head = {last.seq, last.hash};
    }
    for (std::size_t i = from; i < lines.size(); ++i) {
        AuditRecord r = parsed(lines[i]);
        if (i == from) edit(r);
        if (r.action == AuditAction::Checkpoint && drop_checkpoints) continue;
        r.seq = head.seq + 1;
        r.prev = head.hash;
        if (r.action == AuditAction::Checkpoint && resign) {
            r.key_id = resign->key_id();
            r.signature = to_hex(resign->sign(checkpoint_message(r.seq, r.prev)));
        }
        r.hash = compute_audit_hash(r);
        head = {r.seq, r.hash};
        out.push_back(encode_audit_line(r));
    }
    return out;
}

bool has_issue(const AuditVerifyReport& r, AuditIssueKind kind, std::uint64_t seq,
               const std::string& text = "") {
    for (const auto& i : r.issues)
        if (i.kind == kind && i.seq == seq && i.message.find(text) != std::string::npos)
            return true;
    return false;
}

}  // namespace

TEST_CASE("audit record encoding is canonical and round-trips", "[audit]") {
    CHECK(format_audit_time(0) == "1970-01-01T00:00:00.000000Z");
    CHECK(format_audit_time(kStartUs + 123456) == "2026-03-01T12:00:00.123456Z");
    CHECK(format_audit_time(1709208000LL * 1000000) == "2024-02-29T12:00:00.000000Z");

    AuditRecord r;
    r.seq = 7;
    r.time_us = kStartUs + 42;
    r.actor = "CN=o\"rch\\estr\nator,O=Carrier \xC3\xA9";
    r.role = "provisioner";
    r.action = AuditAction::WarrantModify;
    r.subject = "xid:6f1c";
    r.result = "INVALID_ARGUMENT";
    r.message = std::string("field \x01 end\t", 13);
    r.details = {{"liid", "LI-7"}, {"a", ""}};
    r.prev.fill(0xab);
    r.hash = compute_audit_hash(r);
    const std::string line = encode_audit_line(r);
    CHECK(line.back() == '\n');
    CHECK(line.find("\\u0001") != std::string::npos);
    auto back = parse_audit_line(line);
    REQUIRE(back.ok());
    CHECK(back->actor == r.actor);
    CHECK(back->message == r.message);
    CHECK(back->details == r.details);
    CHECK(back->time_us == r.time_us);
    CHECK(back->prev == r.prev);
    CHECK(encode_audit_line(*back) == line);

    // Anything but the canonical bytes is refused, even when it means the same in JSON.
    auto refused = [&](std::string from, std::string to) {
        std::string edited = line;
        const auto pos = edited.find(from);
        REQUIRE(pos != std::string::npos);
        edited.replace(pos, from.size(), to);
        return !parse_audit_line(edited).ok();
    };
    CHECK(refused("{\"seq\":7,", "{\"seq\": 7,"));                   // whitespace
    CHECK(refused("{\"seq\":7,", "{\"seq\":07,"));                   // leading zero
    CHECK(refused("\"liid\":\"LI-7\"", "\"liid\":\"LI-\\u0037\""));  // alternative escape
    CHECK(refused("\"a\":\"\"", "\"liid\":\"\""));                   // duplicate key
    CHECK(refused("\"role\":\"provisioner\"", "\"role\":\"provisioner\",\"x\":\"y\""));  // extra
    CHECK(refused("12:00:00.000042Z", "12:00:00.000042+00:00"));
    CHECK(refused(to_hex(r.hash), std::string(64, 'A')));  // upper-case hex
    CHECK(refused("LI-7", "LI-8"));                        // edited: hash mismatch
}

TEST_CASE("append sanitises fields and verify accepts the log", "[audit]") {
    TempDir dir;
    const KeyPair keys = make_keys();
    AuditLogOptions o;
    o.path = dir.file("audit.log");
    o.signing_key = keys.private_key;
    o.checkpoint_interval = 10;
    auto log = AuditLog::open(o);
    REQUIRE(log.ok());

    const std::vector<std::string> targets = {"tel:+4930123456", "sip:alice@example.com"};
    const std::vector<std::string> reversed = {targets[1], targets[0]};
    const std::string digest = targets_digest(targets, "appliance-secret");
    CHECK(digest == targets_digest(reversed, "appliance-secret"));
    CHECK(digest != targets_digest(targets, "other-secret"));
    CHECK(digest.size() == 64);

    AuditEntry e = entry(AuditAction::WarrantActivate, "xid:1");
    e.details.emplace_back("targets_hmac", digest);
    e.actor = std::string(1000, 'x') + "\xFF";  // too long, invalid UTF-8
    auto seq = (*log)->append(e);
    REQUIRE(seq.ok());
    CHECK(*seq == 3);  // after audit_opened and its checkpoint

    AuditEntry dup = entry(AuditAction::WarrantGet, "xid:1");
    dup.details.emplace_back("liid", "again");
    CHECK((*log)->append(dup).status.error == AuditError::InvalidRecord);
    AuditEntry forged = entry(AuditAction::Checkpoint, "");
    CHECK((*log)->append(forged).status.error == AuditError::InvalidRecord);

    for (int i = 0; i < 25; ++i)
        REQUIRE((*log)->append(entry(AuditAction::WarrantGet, "xid:" + std::to_string(i))).ok());
    REQUIRE((*log)->close().ok());
    CHECK((*log)->append(e).status.error == AuditError::Closed);

    const std::string data = read_all(o.path);
    CHECK(data.find("tel:+4930123456") == std::string::npos);
    CHECK(data.find("alice") == std::string::npos);
    const auto lines = split_lines(data);
    const AuditRecord third = parsed(lines[2]);
    CHECK(third.actor.size() <= AuditEntry::kMaxActor);
    CHECK(third.actor.ends_with("\xE2\x80\xA6"));  // "…"

    const AuditVerifyReport r = verify(data, &keys, 10);
    INFO(issues_text(r));
    CHECK(r.intact());
    CHECK(r.records == lines.size());
    CHECK(r.first_seq == 1);
    CHECK(r.last_seq == lines.size());
    // open + 26 entries (2 interval checkpoints) + close: 1+1 + 26+2 + 1+1.
    CHECK(r.records == 32);
    CHECK(r.checkpoints == 4);
    CHECK(r.checkpoints_verified == 4);
    CHECK(r.unsigned_tail == 0);
    CHECK(r.summary().starts_with("intact: 32 records"));

    const AuditVerifyReport unsigned_report = verify(data);
    CHECK(unsigned_report.intact());
    CHECK_FALSE(unsigned_report.signatures_checked);
    CHECK(unsigned_report.summary().find("NOT checked") != std::string::npos);
}

TEST_CASE("a reopened log continues its sequence and chain", "[audit]") {
    TempDir dir;
    const KeyPair keys = make_keys();
    const std::string path = make_log(dir, keys, 3);
    const std::size_t before = split_lines(read_all(path)).size();

    AuditLogOptions o;
    o.path = path;
    o.signing_key = keys.private_key;
    {
        auto log = AuditLog::open(o);
        REQUIRE(log.ok());
        CHECK((*log)->head().seq == before + 2);  // audit_opened, checkpoint
        auto seq = (*log)->append(entry(AuditAction::WarrantDeactivate, "xid:1"));
        REQUIRE(seq.ok());
        CHECK(*seq == before + 3);

        // A second writer on the same file would fork the chain.
        auto second = AuditLog::open(o);
        CHECK(second.status.error == AuditError::Locked);

        // A copy taken while the log is open is the file as a crash would leave it.
        fs::copy_file(path, dir.file("crashed.log"));
    }
    const std::string data = read_all(path);
    AuditVerifyReport r = verify(data, &keys, 1000);
    INFO(issues_text(r));
    CHECK(r.intact());
    CHECK(r.unsigned_tail == 0);

    o.path = dir.file("crashed.log");
    auto log = AuditLog::open(o);
    REQUIRE(log.ok());
    REQUIRE((*log)->append(entry(AuditAction::WarrantList, "")).ok());
    REQUIRE((*log)->close().ok());
    r = verify(read_all(o.path), &keys, 1000);
    INFO(issues_text(r));
    CHECK(r.intact());
}

TEST_CASE("the verifier pinpoints each kind of tampering", "[audit]") {
    TempDir dir;
    const KeyPair keys = make_keys();
    const std::string path = make_log(dir, keys, 30);
    const std::vector<std::string> lines = split_lines(read_all(path));
    REQUIRE(verify(join(lines), &keys, 10).intact());

    SECTION("an edited field") {
        auto edited = lines;
        const std::size_t i = line_of(lines, 17);
        const auto pos = edited[i].find("xid:");
        edited[i].replace(pos, 4, "xiD:");
        const auto r = verify(join(edited), &keys, 10);
        INFO(issues_text(r));
        CHECK(r.issue_count == 1);
        CHECK(has_issue(r, AuditIssueKind::HashMismatch, 17, "record 17: hash mismatch (edited)"));
        CHECK(r.issues[0].line == i + 1);
    }
    SECTION("an edited record with its own hash recomputed") {
        auto edited = lines;
        const std::size_t i = line_of(lines, 17);
        AuditRecord rec = parsed(lines[i]);
        rec.result = "NOT_FOUND";
        rec.hash = compute_audit_hash(rec);
        edited[i] = encode_audit_line(rec);
        const auto r = verify(join(edited), &keys, 10);
        INFO(issues_text(r));
        CHECK(r.issue_count == 1);
        CHECK(has_issue(r, AuditIssueKind::ChainBroken, 18,
                        "record 18: prev_hash does not match the hash of record 17"));
    }
    SECTION("a removed record") {
        auto edited = lines;
        edited.erase(edited.begin() + static_cast<long>(line_of(lines, 18)));
        const auto r = verify(join(edited), &keys, 10);
        INFO(issues_text(r));
        CHECK(r.issue_count == 1);
        CHECK(has_issue(r, AuditIssueKind::Missing, 18,
                        "record 18 missing (sequence jumps 17 -> 19"));
    }
    SECTION("removed records at the start") {
        auto edited = lines;
        edited.erase(edited.begin(), edited.begin() + 4);
        const auto r = verify(join(edited), &keys);
        INFO(issues_text(r));
        CHECK(has_issue(r, AuditIssueKind::Missing, 1, "records 1-4 missing"));
    }
    SECTION("two records swapped") {
        auto edited = lines;
        const std::size_t i = line_of(lines, 17);
        std::swap(edited[i], edited[i + 1]);
        const auto r = verify(join(edited), &keys, 10);
        INFO(issues_text(r));
        CHECK(r.issue_count == 1);
        CHECK(has_issue(r, AuditIssueKind::OutOfOrder, 17,
                        "records out of order at line " + std::to_string(i + 2) + " (byte offset"));
        CHECK(has_issue(r, AuditIssueKind::OutOfOrder, 17, "record 17 follows record 18"));
    }
    SECTION("a duplicated record") {
        auto edited = lines;
        const std::size_t i = line_of(lines, 17);
        edited.insert(edited.begin() + static_cast<long>(i) + 1, lines[i]);
        const auto r = verify(join(edited), &keys);  // (one record more than the interval)
        INFO(issues_text(r));
        CHECK(r.issue_count == 1);
        CHECK(has_issue(r, AuditIssueKind::Duplicate, 17, "appears 2 times"));
    }
    SECTION("truncated in the middle of a record") {
        std::string data = join(lines);
        const std::size_t last_start = data.size() - lines.back().size();
        data.resize(last_start + 40);
        const auto r = verify(data, &keys, 10);
        INFO(issues_text(r));
        CHECK(r.issue_count == 1);
        REQUIRE(r.issues.size() == 1);
        CHECK(r.issues[0].kind == AuditIssueKind::TornTail);
        CHECK(r.issues[0].offset == last_start);
        CHECK(r.issues[0].message == "truncated: last record (" + std::to_string(lines.size()) +
                                         ") incomplete at byte offset " +
                                         std::to_string(last_start) + " (40 bytes, no newline)");
    }
    SECTION("truncated at a record boundary, with a checkpoint known from elsewhere") {
        auto edited = lines;
        edited.resize(edited.size() - 5);
        CHECK(verify(join(edited), &keys, 10).intact());  // undetectable alone
        const auto r = verify(join(edited), &keys, 10, lines.size());
        INFO(issues_text(r));
        CHECK(r.issue_count == 1);
        CHECK(has_issue(r, AuditIssueKind::CheckpointMissing, lines.size(),
                        "file ends at record " + std::to_string(lines.size() - 5) +
                            " but a signed checkpoint at " + std::to_string(lines.size()) +
                            " is expected"));
    }
    SECTION("a forged record appended with a naive hash") {
        auto edited = lines;
        AuditRecord rec = parsed(lines[line_of(lines, 17)]);
        rec.seq = lines.size() + 1;
        edited.push_back(encode_audit_line(rec));  // hash of record 17, prev of record 16
        const auto r = verify(join(edited), &keys, 10);
        INFO(issues_text(r));
        CHECK(has_issue(r, AuditIssueKind::HashMismatch, rec.seq));
    }
    SECTION("a well-chained forged record appended after shutdown") {
        // SHA-256 has no key: the forger can chain a record. The closing checkpoint can only
        // be followed by the writer's next audit_opened, which must be followed by a signed
        // checkpoint; the forger can produce neither.
        const AuditRecord last = parsed(lines.back());
        AuditRecord rec = parsed(lines[line_of(lines, 17)]);
        rec.action = AuditAction::WarrantDeactivate;
        rec.seq = last.seq + 1;
        rec.prev = last.hash;
        rec.hash = compute_audit_hash(rec);
        auto edited = lines;
        edited.push_back(encode_audit_line(rec));
        auto r = verify(join(edited), &keys, 10);
        INFO(issues_text(r));
        CHECK(r.issue_count == 1);
        CHECK(has_issue(r, AuditIssueKind::UnexpectedRecord, rec.seq,
                        "warrant_deactivate where the writer only ever puts"));
        CHECK(r.unsigned_tail == 1);

        // Disguised as a restart: audit_opened naming the key, but no checkpoint after it.
        AuditRecord opened = parsed(lines[0]);
        opened.seq = last.seq + 1;
        opened.prev = last.hash;
        opened.hash = compute_audit_hash(opened);
        rec.seq = opened.seq + 1;
        rec.prev = opened.hash;
        rec.hash = compute_audit_hash(rec);
        edited = lines;
        edited.push_back(encode_audit_line(opened));
        edited.push_back(encode_audit_line(rec));
        r = verify(join(edited), &keys, 10);
        INFO(issues_text(r));
        CHECK(has_issue(r, AuditIssueKind::UnexpectedRecord, rec.seq,
                        "warrant_deactivate where the writer only ever puts checkpoint"));
    }
    SECTION("the chain rewritten before the last checkpoint") {
        const std::size_t i = line_of(lines, 5);
        const auto edited = rewrite_chain(lines, i, [](AuditRecord& r) { r.result = "ok-ish"; });
        const auto r = verify(join(edited), &keys, 10);
        INFO(issues_text(r));
        // Every hash and link is consistent again; only the signatures tell.
        for (const auto& issue : r.issues)
            CHECK(issue.kind == AuditIssueKind::BadSignature);
        CHECK(r.issue_count == r.checkpoints - 1);  // all but the one at record 2
        CHECK(r.issues.at(0).message.starts_with("checkpoint at 13: bad signature"));
        CHECK(r.last_signed_seq == 1);
    }
    SECTION("the chain rewritten after the last checkpoint") {
        // Records after the last checkpoint are protected by the chain only: a rewrite of them
        // is not detectable. The report says how many such records there are.
        TempDir crash_dir;
        AuditLogOptions o;
        o.path = crash_dir.file("audit.log");
        o.signing_key = keys.private_key;
        o.checkpoint_interval = 10;
        auto log = AuditLog::open(o);
        REQUIRE(log.ok());
        for (int n = 0; n < 14; ++n)
            REQUIRE((*log)->append(entry(AuditAction::WarrantGet, std::to_string(n))).ok());
        const auto crashed = split_lines(read_all(o.path));  // 2 + 10 + 1 + 4 lines
        const std::size_t i = line_of(crashed, 15);
        const auto edited =
            rewrite_chain(crashed, i, [](AuditRecord& r) { r.subject = "xid:other"; });
        const auto r = verify(join(edited), &keys, 10);
        CHECK(r.intact());
        CHECK(r.unsigned_tail == 4);
        CHECK(r.last_signed_seq == 12);
        CHECK(r.summary().find("4 records after it are protected by the chain only") !=
              std::string::npos);
    }
    SECTION("the whole chain rewritten without checkpoints") {
        const auto edited = rewrite_chain(
            lines, 0, [](AuditRecord& r) { r.role = "x"; }, nullptr, true);
        const auto r = verify(join(edited), &keys, 10);
        INFO(issues_text(r));
        CHECK(r.checkpoints == 0);
        CHECK(has_issue(r, AuditIssueKind::CheckpointOverdue, 11, "more than 10 records"));
        CHECK(has_issue(r, AuditIssueKind::UnexpectedRecord, 2,
                        "where the writer only ever "
                        "puts checkpoint"));
        CHECK(r.unsigned_tail == r.records);
    }
    SECTION("the whole chain rewritten and re-signed with another key") {
        const KeyPair attacker = make_keys();
        const auto edited = rewrite_chain(
            lines, 0, [](AuditRecord& r) { r.role = "x"; }, &attacker.private_key);
        const auto r = verify(join(edited), &keys, 10);
        INFO(issues_text(r));
        CHECK(r.issue_count == r.checkpoints);
        CHECK(has_issue(r, AuditIssueKind::UnknownKey, 2,
                        "signed by key " + attacker.public_key.key_id()));
        CHECK(verify(join(edited), &attacker, 10).intact());  // the wrong key would accept it
    }
}

TEST_CASE("a torn tail is reported, then moved aside on reopen", "[audit]") {
    TempDir dir;
    const KeyPair keys = make_keys();
    const std::string path = make_log(dir, keys, 5);
    const std::string good = read_all(path);
    const std::string torn = "{\"seq\":10,\"time\":\"2026-03-01T12:0";
    write_all(path, good + torn);

    auto report = verify_audit_log(path, {});
    REQUIRE(report.ok());
    REQUIRE(report->issues.size() == 1);
    CHECK(report->issues[0].kind == AuditIssueKind::TornTail);
    CHECK(report->issues[0].offset == good.size());

    AuditLogOptions o;
    o.path = path;
    o.signing_key = keys.private_key;
    o.recover_torn_tail = false;
    auto refused = AuditLog::open(o);
    CHECK(refused.status.error == AuditError::TailCorrupt);
    CHECK(refused.status.message.find("offset " + std::to_string(good.size())) !=
          std::string::npos);

    o.recover_torn_tail = true;
    {
        auto log = AuditLog::open(o);
        REQUIRE(log.ok());
    }
    CHECK(read_all(path + ".torn-" + std::to_string(good.size())) == torn);
    const std::string after = read_all(path);
    CHECK(after.starts_with(good));
    const AuditRecord recovered = parsed(split_lines(after.substr(good.size())).at(0));
    CHECK(recovered.action == AuditAction::AuditRecovered);
    CHECK(recovered.seq == 10);
    const auto r = verify(after, &keys, 10);
    INFO(issues_text(r));
    CHECK(r.intact());

    // A complete record changed after it was written is not a torn write: open refuses
    // rather than move the evidence out of the log.
    auto lines = split_lines(after);
    const std::size_t i = lines.size() - 3;
    lines[i].replace(lines[i].find("\"ok\""), 4, "\"no\"");
    write_all(path, join(lines));
    auto edited = AuditLog::open(o);
    CHECK(edited.status.error == AuditError::TailCorrupt);
    CHECK(edited.status.message.find("fails its hash") != std::string::npos);
    CHECK(fs::file_size(path) == join(lines).size());
}

TEST_CASE("a full disk fails the append and leaves the file verifiable", "[audit]") {
    TempDir dir;
    const KeyPair keys = make_keys();
    AuditLogOptions o;
    o.path = dir.file("audit.log");
    o.signing_key = keys.private_key;
    auto log = AuditLog::open(o);
    REQUIRE(log.ok());
    REQUIRE((*log)->append(entry(AuditAction::WarrantActivate, "xid:1")).ok());
    const std::uint64_t size_before = fs::file_size(o.path);
    const AuditHead head_before = (*log)->head();

    // RLIMIT_FSIZE makes the kernel accept part of the write, then refuse the rest (EFBIG),
    // like a file system filling up mid-record. Nothing in this block may write to a file.
    AuditEntry big = entry(AuditAction::WarrantModify, "xid:1", "ok");
    big.message = std::string(900, 'm');
    struct rlimit saved {};
    REQUIRE(::getrlimit(RLIMIT_FSIZE, &saved) == 0);
    auto old_handler = ::signal(SIGXFSZ, SIG_IGN);
    struct rlimit small = saved;
    small.rlim_cur = size_before + 100;
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &small) == 0);
    const auto single = (*log)->append(big);
    const std::vector<AuditEntry> batch(3, big);
    const auto batched = (*log)->append_batch(batch);
    const std::uint64_t size_during = fs::file_size(o.path);
    ::setrlimit(RLIMIT_FSIZE, &saved);
    ::signal(SIGXFSZ, old_handler);

    CHECK(single.status.error == AuditError::DiskFull);
    CHECK(batched.status.error == AuditError::DiskFull);
    CHECK(size_during == size_before);
    CHECK((*log)->head().seq == head_before.seq);
    AuditVerifyReport r = verify(read_all(o.path), &keys, 1000);
    INFO(issues_text(r));
    CHECK(r.intact());

    // Space again: the sequence continues without a gap.
    auto seq = (*log)->append(big);
    REQUIRE(seq.ok());
    CHECK(*seq == head_before.seq + 1);
    REQUIRE((*log)->close().ok());
    r = verify(read_all(o.path), &keys, 1000);
    INFO(issues_text(r));
    CHECK(r.intact());

    // A device that cannot hold a log is refused at open.
    AuditLogOptions dev;
    dev.path = "/dev/full";
    CHECK(AuditLog::open(dev).status.error == AuditError::Io);
}

TEST_CASE("appends from two threads are serialised into one chain", "[audit]") {
    TempDir dir;
    const KeyPair keys = make_keys();
    AuditLogOptions o;
    o.path = dir.file("audit.log");
    o.signing_key = keys.private_key;
    o.checkpoint_interval = 25;
    auto log = AuditLog::open(o);
    REQUIRE(log.ok());
    constexpr int kPerThread = 150;
    std::atomic<int> failures{0};
    std::vector<std::vector<std::uint64_t>> seqs(2);
    auto worker = [&](int t) {
        for (int i = 0; i < kPerThread; ++i) {
            AuditEntry e = entry(AuditAction::WarrantGet, "t" + std::to_string(t));
            if (i % 10 == 0) {
                const std::vector<AuditEntry> batch(3, e);
                auto s = (*log)->append_batch(batch);
                if (!s.ok())
                    ++failures;
                else
                    seqs[t].insert(seqs[t].end(), s->begin(), s->end());
            } else {
                auto s = (*log)->append(e);
                if (!s.ok())
                    ++failures;
                else
                    seqs[t].push_back(*s);
            }
        }
    };
    std::thread a(worker, 0), b(worker, 1);
    a.join();
    b.join();
    REQUIRE((*log)->close().ok());
    CHECK(failures == 0);
    std::vector<std::uint64_t> all = seqs[0];
    all.insert(all.end(), seqs[1].begin(), seqs[1].end());
    std::sort(all.begin(), all.end());
    CHECK(std::adjacent_find(all.begin(), all.end()) == all.end());
    CHECK(all.size() == 2 * (kPerThread + 15 * 2));
    const auto r = verify(read_all(o.path), &keys, 25);
    INFO(issues_text(r));
    CHECK(r.intact());
    CHECK(r.records == all.size() + 2 + r.checkpoints);  // + audit_opened, audit_closed
}

TEST_CASE("export returns records by sequence and time, and refuses a tampered file", "[audit]") {
    TempDir dir;
    const KeyPair keys = make_keys();
    AuditLogOptions o;
    o.path = dir.file("audit.log");
    o.signing_key = keys.private_key;
    Clock clock;
    o.clock = clock.fn();
    auto log = AuditLog::open(o);  // records 1, 2 at kStartUs
    REQUIRE(log.ok());
    for (int i = 0; i < 10; ++i) {
        clock.advance_s(60);  // record 3 + i at kStartUs + (i + 1) minutes
        REQUIRE((*log)->append(entry(AuditAction::WarrantActivate, std::to_string(i))).ok());
    }

    AuditLog::ExportQuery q;
    q.from_seq = 4;
    q.to_seq = 6;
    auto by_seq = (*log)->export_records(q);
    REQUIRE(by_seq.ok());
    REQUIRE(by_seq->size() == 3);
    CHECK((*by_seq)[0].seq == 4);
    CHECK((*by_seq)[2].seq == 6);
    CHECK((*by_seq)[1].subject == "2");

    AuditLog::ExportQuery t;
    t.from_time_us = kStartUs + 3 * 60 * 1000000LL;
    t.to_time_us = kStartUs + 5 * 60 * 1000000LL;
    auto by_time = (*log)->export_records(t);
    REQUIRE(by_time.ok());
    REQUIRE(by_time->size() == 3);
    CHECK((*by_time)[0].seq == 5);

    t.limit = 2;
    CHECK((*log)->export_records(t)->size() == 2);

    // The auditor's export is itself audited by the caller.
    AuditEntry audit = entry(AuditAction::AuditExport, "seq:4-6");
    audit.role = "auditor";
    audit.details = {{"records", std::to_string(by_seq->size())}};
    REQUIRE((*log)->append(audit).ok());
    REQUIRE((*log)->close().ok());

    auto lines = split_lines(read_all(o.path));
    const auto pos = lines[4].find("\"subject\":\"2\"");
    REQUIRE(pos != std::string::npos);
    lines[4].replace(pos, 13, "\"subject\":\"9\"");
    write_all(o.path, join(lines));
    auto tampered = export_audit_records(o.path, q);
    CHECK(tampered.status.error == AuditError::Tampered);
    CHECK(tampered.status.message.find("record 5") != std::string::npos);
}

TEST_CASE("keys: public-only and non-Ed25519 keys are refused for signing", "[audit]") {
    TempDir dir;
    const KeyPair keys = make_keys();
    AuditLogOptions o;
    o.path = dir.file("audit.log");
    o.signing_key = keys.public_key;
    CHECK(AuditLog::open(o).status.error == AuditError::BadKey);

    EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_X25519, nullptr);
    EVP_PKEY* x = nullptr;
    REQUIRE(EVP_PKEY_keygen_init(ctx) == 1);
    REQUIRE(EVP_PKEY_keygen(ctx, &x) == 1);
    EVP_PKEY_CTX_free(ctx);
    CHECK(AuditKey::from_pem(pem_of(x, true)).status.error == AuditError::BadKey);
    EVP_PKEY_free(x);
    CHECK(AuditKey::from_pem("not a key").status.error == AuditError::BadKey);

    auto generated = AuditKey::generate();
    REQUIRE(generated.ok());
    auto reloaded = AuditKey::from_pem(generated->public_pem());
    REQUIRE(reloaded.ok());
    CHECK(reloaded->key_id() == generated->key_id());
    const std::vector<std::uint8_t> msg = {1, 2, 3};
    const auto sig = generated->sign(msg);
    CHECK(reloaded->verify(msg, sig));
    CHECK_FALSE(keys.public_key.verify(msg, sig));
}

TEST_CASE("tapwire-audit-verify exit status on good and tampered files", "[audit][cli]") {
    const char* cli = std::getenv("TAPWIRE_AUDIT_VERIFY");
    if (!cli || !*cli) {
        WARN("TAPWIRE_AUDIT_VERIFY not set: CLI not tested");
        return;
    }
    TempDir dir;
    const KeyPair keys = make_keys();
    const std::string path = make_log(dir, keys, 12);
    write_all(dir.file("audit.pub"), keys.public_key.public_pem());

    auto run = [&](const std::string& args, std::string& out) {
        const std::string cmd = std::string(cli) + " " + args + " 2>&1";
        FILE* p = ::popen(cmd.c_str(), "r");
        REQUIRE(p);
        char buf[4096];
        out.clear();
        while (std::size_t n = std::fread(buf, 1, sizeof buf, p))
            out.append(buf, n);
        const int status = ::pclose(p);
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    };
    const std::string key_arg = " --public-key " + dir.file("audit.pub");
    std::string out;
    CHECK(run("--log " + path + key_arg + " --checkpoint-interval 10", out) == 0);
    CHECK(out.find("intact: ") != std::string::npos);

    auto lines = split_lines(read_all(path));
    lines.erase(lines.begin() + 6);
    write_all(dir.file("tampered.log"), join(lines));
    CHECK(run("--log " + dir.file("tampered.log") + key_arg, out) == 1);
    CHECK(out.find("record 7 missing (sequence jumps 6 -> 8") != std::string::npos);
    CHECK(run("--json --log " + dir.file("tampered.log") + key_arg, out) == 1);
    CHECK(out.find("\"intact\":false") != std::string::npos);

    CHECK(run("--log " + dir.file("absent.log"), out) == 2);
    CHECK(run("--bogus", out) == 2);
}
