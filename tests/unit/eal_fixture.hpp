// One DPDK EAL per test program, started on first use: no hugepages, no PCI, a file prefix
// unique to the process so concurrent tests never share runtime files.
#pragma once

#include <rte_eal.h>
#include <rte_errno.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace tapwire::test {

/// Starts the EAL once (2 lcores: the main thread and one worker) and returns true when it
/// is up. Extra arguments (for example "--vdev=net_pcap0,...") apply only to the first call.
inline bool ensure_eal(std::vector<std::string> extra = {}) {
    static bool started = [&] {
        std::vector<std::string> args = {"tapwire-test",
                                         "--no-huge",
                                         "--no-pci",
                                         "-m",
                                         "512",
                                         "-l",
                                         "0-1",
                                         "--log-level=lib.eal:error",
                                         "--file-prefix=tw_test_" + std::to_string(getpid())};
        args.insert(args.end(), extra.begin(), extra.end());
        std::vector<char*> argv;
        for (auto& a : args)
            argv.push_back(a.data());
        if (rte_eal_init(static_cast<int>(argv.size()), argv.data()) < 0) {
            std::fprintf(stderr, "EAL init failed: %s\n", rte_strerror(rte_errno));
            return false;
        }
        std::atexit([] { rte_eal_cleanup(); });
        return true;
    }();
    return started;
}

}  // namespace tapwire::test
