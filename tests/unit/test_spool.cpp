// The delivery spool (handover/spool.hpp) on real files: segments, restarts, torn tails,
// redelivery after a crash, the size bound, a full disk (a 1 MiB tmpfs), concurrent
// producer/delivery threads, and the append rate.
#include "handover/spool.hpp"

#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/unit/temp_dir.hpp"

namespace fs = std::filesystem;
using namespace tapwire;
using namespace tapwire::handover;
using tapwire::test::TempDir;

namespace {

std::uint64_t splitmix(std::uint64_t& s) {
    std::uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// Record `index`'s content: its size and bytes follow from (seed, index), so a reader can
// check every byte without keeping a copy.
std::size_t size_of(std::uint64_t seed, std::uint64_t index, std::size_t lo, std::size_t hi) {
    std::uint64_t s = seed * 1000003 + index;
    return lo + static_cast<std::size_t>(splitmix(s) % (hi - lo + 1));
}

std::vector<std::uint8_t> content(std::uint64_t seed, std::uint64_t index, std::size_t size) {
    std::vector<std::uint8_t> v(size);
    std::uint64_t s = seed ^ (index << 20) ^ size;
    for (std::size_t i = 0; i < size; i += 8) {
        const std::uint64_t r = splitmix(s);
        std::memcpy(v.data() + i, &r, std::min<std::size_t>(8, size - i));
    }
    return v;
}

struct Gen {
    std::uint64_t seed;
    std::size_t lo, hi;
    std::vector<std::uint8_t> record(std::uint64_t index) const {
        return content(seed, index, size_of(seed, index, lo, hi));
    }
};

std::unique_ptr<Spool> open_ok(const SpoolOptions& o) {
    SpoolOpenResult r = Spool::open(o);
    INFO(r.message);
    REQUIRE(r.status == SpoolStatus::Ok);
    REQUIRE(r.spool);
    return std::move(r.spool);
}

SpoolOptions small_options(const std::string& dir) {
    SpoolOptions o;
    o.directory = dir;
    o.segment_bytes = 64 << 10;
    o.max_total_bytes = 64 << 20;
    o.max_record_bytes = 4096;
    o.write_buffer_bytes = 8192;
    o.read_buffer_bytes = 16384;
    return o;
}

// Segments of 8 KiB: 26 records of 300 bytes (308 framed) after the 32-byte header.
SpoolOptions eight_k_segments(const std::string& dir) {
    SpoolOptions o = small_options(dir);
    o.segment_bytes = 8192;
    o.max_record_bytes = 1024;
    o.write_buffer_bytes = 4096;
    o.read_buffer_bytes = 4096;
    return o;
}

void append_n(Spool& s, const Gen& g, std::uint64_t from, std::uint64_t n) {
    for (std::uint64_t i = from; i < from + n; ++i) {
        const auto rec = g.record(i);
        const SpoolAppend a = s.append(rec);
        REQUIRE(a.status == SpoolStatus::Ok);
        REQUIRE(a.index == i);
    }
}

// Reads everything available, checks each record against the generator and that indices
// run on from `expect_first` (gaps allowed only where `allow_skips`); returns the indices.
struct Drained {
    std::vector<std::uint64_t> indices;
    std::uint64_t skipped = 0;
    std::uint64_t maybe_duplicates = 0;
};

Drained drain(Spool& s, const Gen& g, std::uint64_t max_records = UINT64_MAX,
              std::size_t buf_bytes = 20000, std::size_t max_batch = 37) {
    Drained d;
    std::vector<std::uint8_t> buf(buf_bytes);
    std::vector<std::uint32_t> sizes(max_batch);
    while (d.indices.size() < max_records) {
        const std::size_t want = static_cast<std::size_t>(
            std::min<std::uint64_t>(max_batch, max_records - d.indices.size()));
        const SpoolBatch b = s.read_batch(buf, std::span(sizes.data(), want));
        REQUIRE(b.status == SpoolStatus::Ok);
        d.skipped += b.skipped;
        d.maybe_duplicates += b.maybe_duplicates;
        if (b.count == 0) break;
        std::size_t off = 0;
        for (std::size_t i = 0; i < b.count; ++i) {
            const std::uint64_t index = b.first + i;
            const auto expect = g.record(index);
            REQUIRE(sizes[i] == expect.size());
            REQUIRE(std::memcmp(buf.data() + off, expect.data(), expect.size()) == 0);
            off += sizes[i];
            d.indices.push_back(index);
        }
        REQUIRE(off == b.bytes);
    }
    return d;
}

std::vector<fs::path> segment_files(const std::string& dir) {
    std::vector<fs::path> v;
    for (const auto& e : fs::directory_iterator(dir))
        if (e.path().extension() == ".seg") v.push_back(e.path());
    std::sort(v.begin(), v.end());
    return v;
}

void flip_byte(const fs::path& file, std::uint64_t offset) {
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    REQUIRE(f);
    f.seekg(static_cast<std::streamoff>(offset));
    char c = 0;
    f.read(&c, 1);
    c = static_cast<char>(c ^ 0x5a);
    f.seekp(static_cast<std::streamoff>(offset));
    f.write(&c, 1);
    REQUIRE(f);
}

std::vector<char> file_bytes(const fs::path& file) {
    std::ifstream in(file, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// The record sizes of a segment file, by walking its frames (an independent reader of
// the documented format).
std::vector<std::uint32_t> frame_sizes(const fs::path& file) {
    const std::vector<char> data = file_bytes(file);
    std::vector<std::uint32_t> v;
    std::size_t off = Spool::kSegmentHeaderBytes;
    while (off + 8 <= data.size()) {
        std::uint32_t len;
        std::memcpy(&len, data.data() + off, 4);
        if (off + 8 + len > data.size()) break;
        v.push_back(len);
        off += 8 + len;
    }
    return v;
}

std::uint64_t count(const Spool& s, SpoolCounter c) {
    return s.counters()[c];
}

}  // namespace

TEST_CASE("crc32c: published check values; hardware and table agree") {
    CHECK(crc32c(as_bytes("123456789")) == 0xE3069283u);
    // RFC 3720 appendix B.4.
    std::vector<std::uint8_t> v(32, 0);
    CHECK(crc32c(v) == 0x8A9136AAu);
    std::fill(v.begin(), v.end(), 0xff);
    CHECK(crc32c(v) == 0x62A8AB43u);
    for (int i = 0; i < 32; ++i)
        v[i] = static_cast<std::uint8_t>(i);
    CHECK(crc32c(v) == 0x46DD794Eu);
    CHECK(detail::crc32c_portable(as_bytes("123456789")) == 0xE3069283u);

    std::uint64_t s = 7;
    for (int round = 0; round < 500; ++round) {
        const auto data = content(s, round, splitmix(s) % 1500);
        const std::uint32_t whole = crc32c(data);
        REQUIRE(detail::crc32c_portable(data) == whole);
        const std::size_t cut = data.empty() ? 0 : splitmix(s) % data.size();
        const ByteSpan all(data);
        REQUIRE(crc32c(all.subspan(cut), crc32c(all.first(cut))) == whole);
    }
}

TEST_CASE("spool: options are checked, one Spool per directory, record size bounds") {
    TempDir tmp("spool");
    SpoolOptions o = small_options(tmp.file("d"));
    o.segment_bytes = 1000;
    SpoolOpenResult r = Spool::open(o);
    CHECK(r.status == SpoolStatus::BadOptions);
    CHECK(r.message.find("spool.segment_bytes") == 0);
    o = small_options(tmp.file("d"));
    o.max_total_bytes = o.segment_bytes;
    r = Spool::open(o);
    CHECK(r.status == SpoolStatus::BadOptions);
    CHECK(r.message.find("spool.max_total_bytes") == 0);

    o = small_options(tmp.file("d"));
    auto s = open_ok(o);
    CHECK(s->recovery().fresh);
    r = Spool::open(o);
    CHECK(r.status == SpoolStatus::Locked);
    CHECK_FALSE(r.spool);

    CHECK(s->append({}).status == SpoolStatus::TooLarge);
    std::vector<std::uint8_t> big(o.max_record_bytes + 1, 1);
    CHECK(s->append(big).status == SpoolStatus::TooLarge);
    CHECK(count(*s, SpoolCounter::records_refused_size) == 2);
    big.pop_back();
    CHECK(s->append(big).status == SpoolStatus::Ok);
    CHECK(s->end_index() == 1);
    CHECK(to_string(SpoolStatus::DiskFull) == std::string("disk_full"));
    CHECK(std::string(kSpoolCounterNames[static_cast<int>(SpoolCounter::torn_tail_records_cut)]) ==
          "torn_tail_records_cut");
}

TEST_CASE("spool: append and read across segment boundaries with random sizes") {
    TempDir tmp("spool");
    const SpoolOptions o = small_options(tmp.file("d"));
    const Gen g{11, 1, 4096};
    auto s = open_ok(o);
    std::uint64_t rng = 99;
    std::uint64_t appended = 0;
    std::vector<std::uint64_t> got;
    std::vector<std::uint8_t> buf(8192);
    for (int round = 0; round < 300; ++round) {
        const std::uint64_t n = splitmix(rng) % 20;
        append_n(*s, g, appended, n);
        appended += n;
        CHECK(s->end_index() == appended);
        switch (splitmix(rng) % 4) {
            case 0: {
                REQUIRE(s->flush() == SpoolStatus::Ok);
                CHECK(s->durable_index() == appended);
                break;
            }
            case 1: {  // read some, partly from the write buffer; odd buffer sizes
                const std::size_t bytes = 1 + splitmix(rng) % 12000;
                const Drained d = drain(*s, g, splitmix(rng) % 30, bytes < 4096 ? 4096 : bytes,
                                        1 + splitmix(rng) % 16);
                got.insert(got.end(), d.indices.begin(), d.indices.end());
                break;
            }
            case 2: {  // random access, including unflushed records
                const std::uint64_t first = s->first_index();
                if (appended == first) break;
                const std::uint64_t i = first + splitmix(rng) % (appended - first);
                const auto expect = g.record(i);
                const SpoolRead r = s->read(i, buf);
                REQUIRE(r.status == SpoolStatus::Ok);
                REQUIRE(r.size == expect.size());
                REQUIRE(std::memcmp(buf.data(), expect.data(), r.size) == 0);
                break;
            }
            default: {  // acknowledge what was read; flush reclaims whole segments
                REQUIRE(s->ack(s->next_to_send()));
                REQUIRE(s->flush() == SpoolStatus::Ok);
                CHECK(s->stored_acked() == s->acked());
                break;
            }
        }
    }
    const Drained d = drain(*s, g);
    got.insert(got.end(), d.indices.begin(), d.indices.end());
    REQUIRE(got.size() == appended);
    for (std::uint64_t i = 0; i < appended; ++i)
        REQUIRE(got[i] == i);
    CHECK(d.maybe_duplicates == 0);
    CHECK(count(*s, SpoolCounter::segments_created) > 10);
    CHECK(count(*s, SpoolCounter::segments_deleted) > 0);
    CHECK(count(*s, SpoolCounter::appended) == appended);
    CHECK(s->segment_count() == segment_files(o.directory).size());

    // Deleted, future, and too-small buffer.
    std::vector<std::uint8_t> tiny;  // records are never empty
    CHECK(s->read(0, buf).status == SpoolStatus::NoRecord);
    CHECK(s->read(appended, buf).status == SpoolStatus::NoRecord);
    const SpoolRead small = s->read(appended - 1, tiny);
    CHECK(small.status == SpoolStatus::BufferTooSmall);
    CHECK(small.size == g.record(appended - 1).size());
    append_n(*s, g, appended, 1);
    std::uint32_t one_size[1];
    const SpoolBatch b = s->read_batch(tiny, one_size);
    CHECK(b.status == SpoolStatus::BufferTooSmall);
    CHECK(b.needed == g.record(appended).size());
    CHECK(s->next_to_send() == appended);

    // The files hold what the independent frame walker sees.
    std::size_t on_disk = 0;
    REQUIRE(s->flush() == SpoolStatus::Ok);
    for (const auto& f : segment_files(o.directory))
        on_disk += frame_sizes(f).size();
    CHECK(on_disk == s->end_index() - s->first_index());
}

TEST_CASE("spool: a restart keeps order, indices and cursors") {
    TempDir tmp("spool");
    SpoolOptions o = small_options(tmp.file("d"));
    o.send_reservation = 16;
    const Gen g{5, 1, 2000};
    std::uint64_t limit = 0;
    {
        auto s = open_ok(o);
        append_n(*s, g, 0, 500);
        REQUIRE(s->flush() == SpoolStatus::Ok);
        REQUIRE(drain(*s, g, 300).indices.size() == 300);
        CHECK(s->send_limit() >= 300);  // stored before records beyond it were handed out
        CHECK(s->send_limit() <= 316);
        REQUIRE(s->ack(200));
        CHECK_FALSE(s->ack(301));  // beyond what was sent
        CHECK_FALSE(s->ack(100));  // backwards
        REQUIRE(s->flush() == SpoolStatus::Ok);
        CHECK(s->stored_acked() == 200);
        limit = s->send_limit();  // flush() keeps it at least send_reservation / 2 ahead
        CHECK(limit >= 308);
        CHECK(limit <= 316);
    }  // destroyed: flushed and closed
    {
        auto s = open_ok(o);
        const SpoolRecovery& r = s->recovery();
        CHECK_FALSE(r.fresh);
        CHECK(r.torn_records_cut == 0);
        CHECK(r.notes.empty());
        CHECK(s->end_index() == 500);
        CHECK(s->durable_index() == 500);
        CHECK(s->acked() == 200);
        CHECK(s->next_to_send() == 200);
        CHECK(s->send_limit() == limit);
        CHECK(s->first_index() <= 200);
        CHECK(s->maybe_duplicate(200));
        CHECK(s->maybe_duplicate(limit - 1));
        CHECK_FALSE(s->maybe_duplicate(limit));
        append_n(*s, g, 500, 100);
        const Drained d = drain(*s, g);
        REQUIRE(d.indices.size() == 400);
        CHECK(d.indices.front() == 200);
        CHECK(d.indices.back() == 599);
        CHECK(d.maybe_duplicates == limit - 200);  // [stored acked, stored send_limit)
        CHECK(count(*s, SpoolCounter::redelivered) == limit - 200);
        REQUIRE(s->ack(600));
    }
    {
        auto s = open_ok(o);
        CHECK(s->acked() == 600);
        CHECK(s->end_index() == 600);
        CHECK(s->segment_count() == 1);  // every earlier segment was acknowledged
        append_n(*s, g, 600, 1);
        CHECK(drain(*s, g).indices == std::vector<std::uint64_t>{600});
    }
}

TEST_CASE("spool: a torn or corrupt tail is cut at open and counted") {
    TempDir tmp("spool");
    SpoolOptions o = small_options(tmp.file("d"));
    o.segment_bytes = 1 << 20;
    o.max_total_bytes = 16 << 20;
    const Gen g{3, 300, 300};  // 308-byte frames
    {
        auto s = open_ok(o);
        append_n(*s, g, 0, 200);
    }
    const auto files = segment_files(o.directory);
    REQUIRE(files.size() == 1);
    const fs::path seg = files.back();
    const std::uint64_t size = fs::file_size(seg);
    REQUIRE(size == Spool::kSegmentHeaderBytes + 200 * 308);

    std::uint64_t expect_end = 0, expect_cut = 0, expect_bytes = 0;
    SECTION("truncated in the middle of the last record") {
        fs::resize_file(seg, size - 100);
        expect_end = 199, expect_cut = 1, expect_bytes = 208;
    }
    SECTION("corrupt byte in the last record's payload") {
        flip_byte(seg, size - 10);
        expect_end = 199, expect_cut = 1, expect_bytes = 308;
    }
    SECTION("corrupt length of the last record") {
        flip_byte(seg, size - 308);
        expect_end = 199, expect_cut = 1, expect_bytes = 308;
    }
    SECTION("corrupt byte five records from the end") {
        flip_byte(seg, size - 4 * 308 - 10);
        expect_end = 195, expect_cut = 5, expect_bytes = 5 * 308;
    }
    SECTION("zero-filled tail (size extended, data never written)") {
        fs::resize_file(seg, size + 4096);
        expect_end = 200, expect_cut = 1, expect_bytes = 4096;
    }
    SECTION("damaged segment header") {
        flip_byte(seg, 3);
        expect_end = 0, expect_cut = 200, expect_bytes = size;
    }
    auto s = open_ok(o);
    const SpoolRecovery& r = s->recovery();
    CHECK(r.torn_records_cut == expect_cut);
    CHECK(r.torn_bytes_cut == expect_bytes);
    CHECK_FALSE(r.notes.empty());
    CHECK(count(*s, SpoolCounter::torn_tail_records_cut) == expect_cut);
    CHECK(count(*s, SpoolCounter::torn_tail_bytes_cut) == expect_bytes);
    CHECK(s->end_index() == expect_end);
    CHECK(fs::file_size(seg) == Spool::kSegmentHeaderBytes + expect_end * 308);
    // Everything before the cut is intact, and numbering continues at the cut.
    const Drained d = drain(*s, g);
    CHECK(d.indices.size() == expect_end);
    const Gen g2{4, 100, 100};
    const SpoolAppend a = s->append(g2.record(expect_end));
    CHECK(a.status == SpoolStatus::Ok);
    CHECK(a.index == expect_end);
    s.reset();
    s = open_ok(o);
    CHECK(s->recovery().torn_records_cut == 0);
    CHECK(s->end_index() == expect_end + 1);
    std::vector<std::uint8_t> buf(4096);
    REQUIRE(s->read(expect_end, buf).status == SpoolStatus::Ok);
    CHECK(std::memcmp(buf.data(), g2.record(expect_end).data(), 100) == 0);
}

TEST_CASE("spool: a segment damaged before the next one leaves an exact, skipped gap") {
    TempDir tmp("spool");
    const SpoolOptions o = eight_k_segments(tmp.file("d"));
    const Gen g{8, 300, 300};
    {
        auto s = open_ok(o);
        append_n(*s, g, 0, 200);
    }
    const auto files = segment_files(o.directory);
    REQUIRE(files.size() >= 4);
    const std::uint64_t per_segment = (8192 - 32) / 308;  // 26
    REQUIRE(frame_sizes(files[1]).size() == per_segment);
    fs::resize_file(files[1], fs::file_size(files[1]) - 500);  // the last record and a half

    auto s = open_ok(o);
    CHECK(s->recovery().torn_records_cut == 2);
    CHECK(s->end_index() == 200);
    std::vector<std::uint8_t> buf(4096);
    CHECK(s->read(2 * per_segment - 1, buf).status == SpoolStatus::Lost);
    CHECK(s->read(2 * per_segment - 3, buf).status == SpoolStatus::Ok);
    CHECK(s->read(2 * per_segment, buf).status == SpoolStatus::Ok);
    const Drained d = drain(*s, g);
    CHECK(d.indices.size() == 198);
    CHECK(d.skipped == 2);
    for (std::size_t i = 1; i < d.indices.size(); ++i)
        CHECK(d.indices[i] == d.indices[i - 1] + (d.indices[i] == 2 * per_segment ? 3 : 1));
}

TEST_CASE("spool: segment files removed behind its back are counted, numbering goes on") {
    TempDir tmp("spool");
    const SpoolOptions o = eight_k_segments(tmp.file("d"));
    const Gen g{13, 300, 300};  // 26 records per segment
    {
        auto s = open_ok(o);
        append_n(*s, g, 0, 100);
        REQUIRE(s->flush() == SpoolStatus::Ok);
        drain(*s, g, 5);
        REQUIRE(s->ack(5));
    }
    SECTION("the oldest unacknowledged segment is gone") {
        fs::remove(segment_files(o.directory).front());
        auto s = open_ok(o);
        CHECK(s->recovery().records_missing == 21);  // 5..25
        CHECK(count(*s, SpoolCounter::torn_tail_records_cut) == 21);
        CHECK(s->acked() == 26);
        CHECK(s->end_index() == 100);
        CHECK(drain(*s, g).indices.size() == 74);
    }
    SECTION("every segment is gone, after all was acknowledged") {
        {
            auto s = open_ok(o);
            drain(*s, g);
            REQUIRE(s->ack(100));
        }
        for (const auto& f : segment_files(o.directory))
            fs::remove(f);
        auto s = open_ok(o);
        CHECK(s->recovery().records_missing == 0);
        CHECK(s->end_index() == 100);  // numbering continues after what was acknowledged
        const SpoolAppend a = s->append(g.record(100));
        CHECK(a.index == 100);
        CHECK(drain(*s, g).indices == std::vector<std::uint64_t>{100});
    }
}

TEST_CASE("spool: a torn state write falls back to the other slot") {
    TempDir tmp("spool");
    const SpoolOptions o = small_options(tmp.file("d"));
    const Gen g{9, 10, 500};
    {
        auto s = open_ok(o);
        append_n(*s, g, 0, 100);
        REQUIRE(s->flush() == SpoolStatus::Ok);
        drain(*s, g);
        REQUIRE(s->ack(50));
        REQUIRE(s->flush() == SpoolStatus::Ok);
        REQUIRE(s->ack(80));
        REQUIRE(s->flush() == SpoolStatus::Ok);
    }
    // Damage the slot with the higher generation (bytes 8..15 of each 4 KiB slot).
    const fs::path state = fs::path(o.directory) / "state";
    const std::vector<char> data = file_bytes(state);
    REQUIRE(data.size() >= Spool::kStateSlotBytes + 64);
    std::uint64_t gen0, gen1;
    std::memcpy(&gen0, data.data() + 8, 8);
    std::memcpy(&gen1, data.data() + Spool::kStateSlotBytes + 8, 8);
    flip_byte(state, (gen1 > gen0 ? Spool::kStateSlotBytes : 0) + 20);

    auto s = open_ok(o);
    CHECK(s->recovery().state_recovered);
    CHECK(s->acked() == 50);  // the previous save: records 50..79 are sent again
    CHECK(drain(*s, g).indices.front() == 50);
}

TEST_CASE("spool: a reconnect redelivers exactly the unacknowledged records") {
    TempDir tmp("spool");
    const SpoolOptions o = small_options(tmp.file("d"));
    const Gen g{12, 10, 700};
    auto s = open_ok(o);
    append_n(*s, g, 0, 100);
    REQUIRE(drain(*s, g, 30).indices.size() == 30);
    REQUIRE(s->ack(10));
    CHECK(s->rewind_to_acked() == 20);
    CHECK(s->next_to_send() == 10);
    CHECK_FALSE(s->ack(11));  // nothing sent on the new connection yet
    CHECK_FALSE(s->maybe_duplicate(30));
    for (std::uint64_t i = 10; i < 30; ++i)
        CHECK(s->maybe_duplicate(i));
    const Drained d = drain(*s, g);
    REQUIRE(d.indices.size() == 90);
    CHECK(d.indices.front() == 10);
    CHECK(d.maybe_duplicates == 20);
    CHECK(count(*s, SpoolCounter::redelivered) == 20);
}

TEST_CASE("spool: a crash between send and ack redelivers exactly the unacknowledged records") {
    TempDir tmp("spool");
    SpoolOptions o = small_options(tmp.file("d"));
    o.segment_bytes = 16384;
    o.send_reservation = 1;
    const Gen g{21, 50, 400};
    fflush(nullptr);
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        // The "crashing" process: no destructor runs, no flush at exit.
        SpoolOpenResult r = Spool::open(o);
        if (!r.spool) _exit(2);
        Spool& s = *r.spool;
        for (std::uint64_t i = 0; i < 100; ++i)
            if (s.append(g.record(i)).status != SpoolStatus::Ok) _exit(3);
        if (s.flush() != SpoolStatus::Ok) _exit(4);
        std::vector<std::uint8_t> buf(1 << 16);
        std::vector<std::uint32_t> sizes(60);
        if (s.read_batch(buf, sizes).count != 60) _exit(5);        // sent 0..59
        if (!s.ack(40) || s.flush() != SpoolStatus::Ok) _exit(6);  // stored acked 40
        sizes.resize(20);
        if (s.read_batch(buf, sizes).count != 20) _exit(7);  // sent 60..79
        if (!s.ack(70)) _exit(8);                            // acknowledged, not stored
        for (std::uint64_t i = 100; i < 110; ++i)            // appended, not flushed
            if (s.append(g.record(i)).status != SpoolStatus::Ok) _exit(9);
        _exit(0);
    }
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    REQUIRE(WIFEXITED(status));
    REQUIRE(WEXITSTATUS(status) == 0);

    auto s = open_ok(o);
    CHECK(s->recovery().torn_records_cut == 0);
    // The 10 unflushed records were still in the dead process's write buffer: the window a
    // crash may lose is what was appended after the last flush.
    CHECK(s->end_index() == 100);
    CHECK(s->acked() == 40);
    CHECK(s->next_to_send() == 40);
    CHECK(s->send_limit() == 81);  // written ahead of the batch 60..79: 80 + 1
    CHECK_FALSE(s->maybe_duplicate(81));
    for (std::uint64_t i = 40; i < 81; ++i)
        CHECK(s->maybe_duplicate(i));
    const Drained d = drain(*s, g, UINT64_MAX, 1 << 16, 100);
    REQUIRE(d.indices.size() == 60);
    for (std::size_t i = 0; i < 60; ++i)
        REQUIRE(d.indices[i] == 40 + i);
    CHECK(d.maybe_duplicates == 41);  // 40..79 were sent, 80 was reserved
    CHECK(count(*s, SpoolCounter::redelivered) == 41);
}

TEST_CASE("spool: the size bound refuses and counts; acknowledging frees whole segments") {
    TempDir tmp("spool");
    SpoolOptions o = small_options(tmp.file("d"));
    o.max_total_bytes = 256 << 10;
    const Gen g{31, 1000, 1000};
    auto s = open_ok(o);
    std::uint64_t n = 0;
    SpoolAppend a;
    while ((a = s->append(g.record(n))).status == SpoolStatus::Ok)
        ++n;
    CHECK(a.status == SpoolStatus::Full);
    CHECK(a.first_refusal);
    const SpoolAppend again = s->append(g.record(n));
    CHECK(again.status == SpoolStatus::Full);
    CHECK_FALSE(again.first_refusal);
    CHECK(count(*s, SpoolCounter::records_refused_full) == 2);
    CHECK(count(*s, SpoolCounter::bytes_refused_full) == 2000);
    CHECK(s->bytes_used() <= o.max_total_bytes);
    CHECK(s->bytes_used() > o.max_total_bytes - 1008 - Spool::kSegmentHeaderBytes);
    const std::uint64_t per_segment = (65536 - 32) / 1008;  // 64
    CHECK(n == 4 * per_segment + 3);  // four full segments and 3 records in a fifth
    REQUIRE(s->flush() == SpoolStatus::Ok);

    // Acknowledging half frees the first two segments, not a byte of the third.
    REQUIRE(drain(*s, g).indices.size() == n);
    REQUIRE(s->ack(n / 2 + 10));
    CHECK(s->append(g.record(n)).status == SpoolStatus::Full);  // ack alone stores nothing
    REQUIRE(s->flush() == SpoolStatus::Ok);
    CHECK(count(*s, SpoolCounter::segments_deleted) == 2);
    CHECK(segment_files(o.directory).size() == 3);
    std::uint64_t m = n;
    while ((a = s->append(g.record(m))).status == SpoolStatus::Ok)
        ++m;
    CHECK(a.first_refusal);
    CHECK(m - n == 2 * per_segment);  // exactly the two segments freed
    const Drained d = drain(*s, g);
    REQUIRE(d.indices.size() == m - n);
    CHECK(d.indices.front() == n);
    REQUIRE(s->ack(m));
    REQUIRE(s->flush() == SpoolStatus::Ok);
    CHECK(s->segment_count() == 1);
    CHECK(s->append(g.record(m)).status == SpoolStatus::Ok);
}

TEST_CASE("spool: a limit lowered across a restart does not refuse records for good") {
    TempDir tmp("spool");
    SpoolOptions big = small_options(tmp.file("d"));
    big.segment_bytes = 1 << 20;
    big.max_total_bytes = 8 << 20;
    const Gen g{37, 1000, 1000};
    std::uint64_t n = 0;
    {
        auto s = open_ok(big);
        for (; n < 700; ++n)  // ~700 KB in the one segment
            REQUIRE(s->append(g.record(n)).status == SpoolStatus::Ok);
        REQUIRE(drain(*s, g).indices.size() == n);
        REQUIRE(s->ack(n));
        REQUIRE(s->flush() == SpoolStatus::Ok);
        CHECK(s->segment_count() == 1);
    }
    // Now at most 256 KiB: the acknowledged 700 KB segment alone is over the limit. It goes
    // at open, and numbering continues.
    SpoolOptions small = small_options(tmp.file("d"));
    small.max_total_bytes = 256 << 10;
    auto s = open_ok(small);
    CHECK(s->bytes_used() <= small.max_total_bytes);
    const SpoolAppend a = s->append(g.record(n));
    REQUIRE(a.status == SpoolStatus::Ok);
    CHECK(a.index == n);
    REQUIRE(s->flush() == SpoolStatus::Ok);
    const Drained d = drain(*s, g);
    REQUIRE(d.indices.size() == 1);
    CHECK(d.indices.front() == n);
}

namespace {

// A 1 MiB tmpfs for one test, unmounted when it ends.
struct TinyTmpfs {
    TempDir dir{"spool-tmpfs"};
    bool mounted = false;
    TinyTmpfs() {
        mounted = ::mount("tmpfs", dir.path.c_str(), "tmpfs", 0, "size=1m,mode=0700") == 0;
    }
    ~TinyTmpfs() {
        if (mounted) ::umount2(dir.path.c_str(), MNT_DETACH);
    }
};

}  // namespace

TEST_CASE("spool: a full disk (ENOSPC) refuses and counts, corrupts nothing, recovers") {
    TinyTmpfs tmpfs;
    if (!tmpfs.mounted) {
        WARN("cannot mount a tmpfs (needs root / CAP_SYS_ADMIN): ENOSPC test skipped");
        return;
    }
    for (const bool prealloc : {true, false}) {
        INFO("preallocate " << prealloc);
        SpoolOptions o = small_options(tmpfs.dir.file(prealloc ? "prealloc" : "plain"));
        o.preallocate = prealloc;
        const Gen g{41, 1000, 1000};
        std::uint64_t n = 0;
        {
            auto s = open_ok(o);
            SpoolAppend a;
            while ((a = s->append(g.record(n))).status == SpoolStatus::Ok && n < 5000)
                ++n;
            REQUIRE(a.status == SpoolStatus::DiskFull);
            CHECK(a.first_refusal);
            for (int i = 0; i < 5; ++i) {
                const SpoolAppend b = s->append(g.record(n));
                CHECK(b.status == SpoolStatus::DiskFull);
                CHECK_FALSE(b.first_refusal);
            }
            CHECK(count(*s, SpoolCounter::records_refused_full) == 6);
            CHECK(count(*s, SpoolCounter::bytes_refused_full) == 6000);
            CHECK(count(*s, SpoolCounter::disk_full_errors) >= 1);
            CHECK(s->end_index() == n);
            CHECK(n > 500);  // most of the 1 MiB
            const SpoolStatus f = s->flush();
            // With preallocation nothing accepted is waiting; without, the write buffer
            // holds accepted records that cannot be written yet.
            CHECK(f == (prealloc ? SpoolStatus::Ok : SpoolStatus::DiskFull));
            CHECK(s->health() == SpoolStatus::Ok);
            // Every accepted record reads back intact (the last ones from memory).
            REQUIRE(drain(*s, g).indices.size() == n);
            // The LEMF acknowledges: flush stores that in place and deletes segments.
            REQUIRE(s->ack(n));
            s->flush();
            CHECK(s->flush() == SpoolStatus::Ok);
            CHECK(s->durable_index() == n);
            CHECK(count(*s, SpoolCounter::segments_deleted) > 0);
            const SpoolAppend b = s->append(g.record(n));
            REQUIRE(b.status == SpoolStatus::Ok);
            CHECK(b.index == n);
            append_n(*s, g, n + 1, 49);
            REQUIRE(s->flush() == SpoolStatus::Ok);
        }
        auto s = open_ok(o);
        CHECK(s->recovery().torn_records_cut == 0);
        CHECK(s->acked() == n);
        CHECK(s->end_index() == n + 50);
        const Drained d = drain(*s, g);
        REQUIRE(d.indices.size() == 50);
        CHECK(d.indices.front() == n);
        s.reset();
        fs::remove_all(o.directory);
    }
}

TEST_CASE("spool: concurrent producer, flusher and delivery threads, with reconnects") {
    TempDir tmp("spool");
    SpoolOptions o = small_options(tmp.file("d"));
    o.segment_bytes = 256 << 10;
    o.max_total_bytes = 8 << 20;
    o.write_buffer_bytes = 32 << 10;
    o.read_buffer_bytes = 64 << 10;
    o.send_reservation = 500;
    const Gen g{51, 20, 1500};
    constexpr std::uint64_t kRecords = 100000;
    o.max_total_bytes = 1 << 20;
    auto s = open_ok(o);
    std::atomic<bool> done{false};
    std::atomic<std::uint64_t> refused{0};

    std::thread producer([&] {
        std::uint64_t i = 0;
        while (i < kRecords) {
            const SpoolAppend a = s->append(g.record(i));
            if (a.status == SpoolStatus::Ok) {
                if (a.index != i) std::abort();
                ++i;
            } else {
                ++refused;  // full: the delivery side frees space
                std::this_thread::yield();
            }
        }
    });
    std::thread flusher([&] {
        while (!done) {
            s->flush();
            std::this_thread::sleep_for(std::chrono::microseconds(300));
        }
    });

    // Delivery: receive in order; on a "reconnect" (every so often) rewind to acked. Each
    // record received twice must have been marked as a possible duplicate.
    std::vector<std::uint8_t> received(kRecords, 0);
    std::vector<std::uint8_t> buf(1 << 16);
    std::vector<std::uint32_t> sizes(64);
    std::uint64_t expect = 0, reconnects = 0, dup_marked = 0, dup_seen = 0, rng = 3;
    bool ok = true;
    // Let the producer hit the bound first, so that refusal and release are exercised.
    for (int i = 0; i < 5000 && refused == 0; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    while (expect < kRecords && ok) {
        const SpoolBatch b = s->read_batch(buf, sizes);
        if (b.status != SpoolStatus::Ok || b.skipped != 0) {
            ok = false;
            break;
        }
        if (b.count == 0) {
            s->ack(s->next_to_send());
            std::this_thread::yield();
            continue;
        }
        if (b.first != expect) ok = false;
        std::size_t off = 0;
        for (std::size_t i = 0; i < b.count && ok; ++i) {
            const std::uint64_t index = b.first + i;
            const auto rec = g.record(index);
            if (sizes[i] != rec.size() || std::memcmp(buf.data() + off, rec.data(), rec.size()))
                ok = false;
            off += sizes[i];
            if (received[index]) {
                ++dup_seen;
                if (i >= b.maybe_duplicates) ok = false;  // a duplicate nobody marked
            }
            received[index] = 1;
        }
        dup_marked += b.maybe_duplicates;
        expect = b.first + b.count;
        const std::uint64_t r = splitmix(rng) % 100;
        if (r < 60) {
            s->ack(expect - splitmix(rng) % b.count);
        } else if (r == 60) {
            expect = s->acked();
            reconnects += s->rewind_to_acked() > 0;
        }
    }
    s->ack(s->next_to_send());
    done = true;
    producer.join();
    flusher.join();
    REQUIRE(ok);
    CHECK(std::count(received.begin(), received.end(), 1) == static_cast<long>(kRecords));
    CHECK(dup_seen == dup_marked);
    CHECK(count(*s, SpoolCounter::redelivered) == dup_marked);
    CHECK(reconnects > 0);
    CHECK(refused > 0);  // the bound was hit and released again
    CHECK(count(*s, SpoolCounter::segments_deleted) > 0);
    CHECK(s->health() == SpoolStatus::Ok);
}

namespace {

// Prints append, read and open figures for spools under `root`.
void bench(const std::string& root, const char* label) {
    std::printf("\nspool performance, %s (%s):\n", label, root.c_str());
    for (const std::size_t size : {std::size_t{214}, std::size_t{1024}}) {
        const std::uint64_t n = size == 214 ? 300000 : 100000;
        const std::vector<std::uint8_t> rec(size, 0xab);
        const double mb = static_cast<double>(n * (size + 8)) / 1e6;
        auto per_record = [&](auto t0, auto t1) {
            return std::chrono::duration<double, std::nano>(t1 - t0).count() /
                   static_cast<double>(n);
        };
        SpoolOptions o;
        o.directory = root + "/a" + std::to_string(size);

        // 1. append alone (one flush at the end, not timed)
        auto s = open_ok(o);
        auto t0 = std::chrono::steady_clock::now();
        for (std::uint64_t i = 0; i < n; ++i)
            if (s->append(rec).status != SpoolStatus::Ok) FAIL("append refused");
        auto t1 = std::chrono::steady_clock::now();
        REQUIRE(s->flush() == SpoolStatus::Ok);
        const double append_ns = per_record(t0, t1);

        // 2. read_batch of everything, then reopen (the open-time scan)
        std::vector<std::uint8_t> buf(1 << 20);
        std::vector<std::uint32_t> sizes(4096);
        std::uint64_t got = 0;
        t0 = std::chrono::steady_clock::now();
        while (got < n) {
            const SpoolBatch b = s->read_batch(buf, sizes);
            REQUIRE(b.status == SpoolStatus::Ok);
            REQUIRE(b.count > 0);
            got += b.count;
        }
        t1 = std::chrono::steady_clock::now();
        const double read_ns = per_record(t0, t1);
        s.reset();
        t0 = std::chrono::steady_clock::now();
        s = open_ok(o);
        const double open_s =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        CHECK(s->end_index() == n);
        s.reset();
        fs::remove_all(o.directory);

        // 3. flush() every 1000 records, in the producer thread
        o.directory = root + "/f" + std::to_string(size);
        s = open_ok(o);
        std::chrono::nanoseconds in_flush{0};
        t0 = std::chrono::steady_clock::now();
        for (std::uint64_t i = 0; i < n; ++i) {
            if (s->append(rec).status != SpoolStatus::Ok) FAIL("append refused");
            if (i % 1000 == 999) {
                const auto f0 = std::chrono::steady_clock::now();
                s->flush();
                in_flush += std::chrono::steady_clock::now() - f0;
            }
        }
        t1 = std::chrono::steady_clock::now();
        const double flush_every_ns = per_record(t0, t1);
        const double flush_us =
            std::chrono::duration<double, std::micro>(in_flush).count() / (n / 1000);
        s.reset();
        fs::remove_all(o.directory);

        // 4. the intended deployment: a flusher thread calls flush() every millisecond
        // (group commit: one fdatasync covers whatever was appended meanwhile)
        o.directory = root + "/t" + std::to_string(size);
        s = open_ok(o);
        std::atomic<bool> stop{false};
        std::uint64_t flushes = 0;
        std::thread flusher([&] {
            while (!stop) {
                s->flush();
                ++flushes;
                std::this_thread::sleep_for(std::chrono::milliseconds(1));
            }
        });
        std::uint64_t max_lag = 0;
        t0 = std::chrono::steady_clock::now();
        for (std::uint64_t i = 0; i < n; ++i) {
            if (s->append(rec).status != SpoolStatus::Ok) FAIL("append refused");
            if (i % 4096 == 0) max_lag = std::max(max_lag, i - std::min(i, s->durable_index()));
        }
        t1 = std::chrono::steady_clock::now();
        stop = true;
        flusher.join();
        const double thread_ns = per_record(t0, t1);
        s.reset();
        fs::remove_all(o.directory);

        std::printf(
            "  %4zu B x %llu: append %.0f ns (%.2f M/s); flush() every 1000: %.0f ns "
            "(%.2f M/s, %.0f us per flush); flusher thread: %.0f ns (%.2f M/s, %llu "
            "flushes, durable lag <= %llu records); read_batch %.0f ns (%.2f M/s); "
            "open %.1f MB in %.3f s\n",
            size, static_cast<unsigned long long>(n), append_ns, 1e3 / append_ns, flush_every_ns,
            1e3 / flush_every_ns, flush_us, thread_ns, 1e3 / thread_ns,
            static_cast<unsigned long long>(flushes), static_cast<unsigned long long>(max_lag),
            read_ns, 1e3 / read_ns, mb, open_s);
    }
}

}  // namespace

TEST_CASE("spool: performance (prints figures)") {
    // The temp dir's filesystem (ext4 on the development VM), then tmpfs if there is one:
    // the latter shows the spool's own CPU cost without the disk.
    {
        TempDir tmp("spool-perf");
        bench(tmp.path.string(), "temp dir");
    }
    std::error_code ec;
    if (fs::is_directory("/dev/shm", ec)) {
        std::string pattern = "/dev/shm/spool-perf-XXXXXX";
        if (::mkdtemp(pattern.data())) {
            bench(pattern, "/dev/shm");
            fs::remove_all(pattern, ec);
        }
    }
}
