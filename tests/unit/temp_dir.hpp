// A temporary directory for one test, removed with everything in it when the test ends; and
// a small filesystem that fills up (a full disk).
#pragma once

#include <stdlib.h>
#include <sys/mount.h>
#include <catch2/catch.hpp>

#include <filesystem>
#include <string>
#include <system_error>

namespace tapwire::test {

struct TempDir {
    std::filesystem::path path;

    explicit TempDir(const std::string& prefix = "tapwire-test") {
        std::string pattern =
            (std::filesystem::temp_directory_path() / (prefix + "-XXXXXX")).string();
        REQUIRE(::mkdtemp(pattern.data()) != nullptr);
        path = pattern;
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;

    std::string file(const std::string& name) const { return (path / name).string(); }
};

// A tmpfs of `size` (mount's syntax, e.g. "1m") mounted at `where` for one test (root only:
// check `mounted`), unmounted when it ends.
struct TinyDisk {
    bool mounted = false;
    std::string path;
    explicit TinyDisk(std::string where, const std::string& size = "1m") : path(std::move(where)) {
        std::filesystem::create_directories(path);
        mounted = ::mount("tmpfs", path.c_str(), "tmpfs", 0,
                          ("size=" + size + ",mode=0700").c_str()) == 0;
    }
    ~TinyDisk() {
        if (mounted) ::umount2(path.c_str(), MNT_DETACH);
    }
    TinyDisk(const TinyDisk&) = delete;
    TinyDisk& operator=(const TinyDisk&) = delete;
};

}  // namespace tapwire::test
