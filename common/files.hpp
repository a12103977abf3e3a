// Whole-file reads for the command-line tools and the control plane (keys, certificates,
// warrants, role files): one place for the error text a person acts on.
#pragma once

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

namespace tapwire {

/// Reads the whole file at `path` into `out`. False with `error` set to
/// "<path>: cannot read (<reason>)" or "<path>: read error".
inline bool read_file(const std::string& path, std::string& out, std::string& error) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        error = path + ": cannot read (" + std::strerror(errno) + ")";
        return false;
    }
    std::ostringstream s;
    s << in.rdbuf();
    if (in.bad()) {
        error = path + ": read error";
        return false;
    }
    out = s.str();
    return true;
}

/// read_file, or all of standard input when `path` is "-".
inline bool read_file_or_stdin(const std::string& path, std::string& out, std::string& error) {
    if (path != "-") return read_file(path, out, error);
    std::ostringstream s;
    s << std::cin.rdbuf();
    out = s.str();
    return true;
}

}  // namespace tapwire
