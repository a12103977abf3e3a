// Port bring-up: every configured port is looked up by name, checked against what the
// device reports (queues, RSS, descriptors), configured with a symmetric RSS key and started.
#pragma once

#include <rte_mempool.h>

#include <cstdint>
#include <string>
#include <vector>

#include "dataplane/config.hpp"

namespace tapwire::dataplane {

struct RxQueue {
    std::uint16_t port = 0;
    std::uint16_t queue = 0;
    std::uint16_t tx_port = 0;  // inline mode: the peer port this queue's packets go to
};

struct PortInfo {
    std::uint16_t id = 0;
    std::string name;
    std::string driver;
    std::uint16_t rx_queues = 0;
    std::uint16_t tx_queues = 0;
    std::uint16_t peer = 0;  // inline mode
    bool rss = false;
};

/// Looks up, checks, configures and starts the configured ports. Inline mode gives every
/// port one tx queue per worker so workers never share a tx queue. Returns an empty string,
/// or a message naming the setting and what the device reported.
std::string start_ports(const Config& config, unsigned workers, rte_mempool* rx_pool,
                        std::vector<PortInfo>& ports, std::vector<RxQueue>& queues);

/// Stops and closes the ports started by start_ports.
void stop_ports(const std::vector<PortInfo>& ports);

/// The 40-byte Toeplitz key of repeated 0x6d5a: it hashes (a, b) and (b, a) alike, so
/// both directions of a 5-tuple land on one queue (Woo and Park, "Scalable TCP Session
/// Monitoring with Symmetric Receive-side Scaling").
extern const std::uint8_t kSymmetricRssKey[40];

}  // namespace tapwire::dataplane
