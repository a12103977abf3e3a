#include "dataplane/ports.hpp"

#include <rte_ethdev.h>

#include <algorithm>

namespace tapwire::dataplane {

const std::uint8_t kSymmetricRssKey[40] = {
    0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a,
    0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a,
    0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a,
};

namespace {

std::string known_ports() {
    std::string names;
    std::uint16_t id;
    RTE_ETH_FOREACH_DEV(id) {
        char name[RTE_ETH_NAME_MAX_LEN];
        if (rte_eth_dev_get_name_by_port(id, name) == 0)
            names += (names.empty() ? "" : ", ") + std::string(name);
    }
    return names.empty() ? "none (no NIC bound to DPDK and no --vdev given)" : names;
}

std::string configure(const Config::Port& spec, const std::string& where, unsigned workers,
                      bool inline_mode, rte_mempool* pool, PortInfo& port) {
    rte_eth_dev_info info;
    if (int rc = rte_eth_dev_info_get(port.id, &info); rc != 0)
        return where + ": cannot query device: " + rte_strerror(-rc);
    port.driver = info.driver_name ? info.driver_name : "?";

    port.rx_queues = static_cast<std::uint16_t>(spec.rx_queues());
    if (port.rx_queues > info.max_rx_queues)
        return where + ".rx_queues: " + std::to_string(port.rx_queues) + " configured but " +
               port.name + " (" + port.driver + ") supports at most " +
               std::to_string(info.max_rx_queues);
    // Passive ports still get one tx queue: several PMDs refuse to start without one.
    port.tx_queues = static_cast<std::uint16_t>(inline_mode ? workers : 1);
    if (port.tx_queues > info.max_tx_queues)
        return where + ": inline mode needs one tx queue per worker (" +
               std::to_string(port.tx_queues) + ") but " + port.name + " supports " +
               std::to_string(info.max_tx_queues);

    rte_eth_conf conf{};
    if (port.rx_queues > 1) {
        std::uint64_t wanted = RTE_ETH_RSS_IP | RTE_ETH_RSS_UDP | RTE_ETH_RSS_TCP;
        std::uint64_t hf = wanted & info.flow_type_rss_offloads;
        if (hf == 0)
            return where + ".rx_queues: " + std::to_string(port.rx_queues) +
                   " queues need RSS, and " + port.name + " (" + port.driver +
                   ") offers no IP/UDP/TCP RSS";
        if (info.hash_key_size && info.hash_key_size != sizeof kSymmetricRssKey)
            return where + ": " + port.name + " wants a " + std::to_string(info.hash_key_size) +
                   "-byte RSS key; the symmetric key has 40";
        conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
        conf.rx_adv_conf.rss_conf.rss_key = const_cast<std::uint8_t*>(kSymmetricRssKey);
        conf.rx_adv_conf.rss_conf.rss_key_len = sizeof kSymmetricRssKey;
        conf.rx_adv_conf.rss_conf.rss_hf = hf;
        port.rss = true;
    }
    if (int rc = rte_eth_dev_configure(port.id, port.rx_queues, port.tx_queues, &conf); rc != 0)
        return where + ": configure failed: " + rte_strerror(-rc);

    std::uint16_t rx_desc = static_cast<std::uint16_t>(spec.rx_descriptors());
    std::uint16_t tx_desc = static_cast<std::uint16_t>(spec.tx_descriptors());
    if (int rc = rte_eth_dev_adjust_nb_rx_tx_desc(port.id, &rx_desc, &tx_desc); rc != 0)
        return where + ": descriptor counts rejected: " + rte_strerror(-rc);
    int socket = rte_eth_dev_socket_id(port.id);
    for (std::uint16_t q = 0; q < port.rx_queues; ++q)
        if (int rc = rte_eth_rx_queue_setup(port.id, q, rx_desc, socket, nullptr, pool); rc != 0)
            return where + ": rx queue " + std::to_string(q) +
                   " setup failed: " + rte_strerror(-rc);
    for (std::uint16_t q = 0; q < port.tx_queues; ++q)
        if (int rc = rte_eth_tx_queue_setup(port.id, q, tx_desc, socket, nullptr); rc != 0)
            return where + ": tx queue " + std::to_string(q) +
                   " setup failed: " + rte_strerror(-rc);
    if (spec.promiscuous() || !inline_mode) {
        int rc = rte_eth_promiscuous_enable(port.id);
        if (rc != 0 && rc != -ENOTSUP)
            return where + ": cannot enable promiscuous mode: " + rte_strerror(-rc);
    }
    if (int rc = rte_eth_dev_start(port.id); rc != 0)
        return where + ": start failed: " + rte_strerror(-rc);
    return "";
}

}  // namespace

std::string start_ports(const Config& config, unsigned workers, rte_mempool* rx_pool,
                        std::vector<PortInfo>& ports, std::vector<RxQueue>& queues) {
    bool inline_mode = config.mode() == Config::MODE_INLINE;
    ports.clear();
    queues.clear();
    for (int i = 0; i < config.ports_size(); ++i) {
        const auto& spec = config.ports(i);
        PortInfo port;
        port.name = spec.name();
        if (rte_eth_dev_get_port_by_name(spec.name().c_str(), &port.id) != 0)
            return "ports[" + std::to_string(i) + "].name: no DPDK device '" + spec.name() +
                   "'; devices present: " + known_ports();
        ports.push_back(port);
    }
    for (int i = 0; i < config.ports_size(); ++i) {
        PortInfo& port = ports[i];
        if (inline_mode) {
            for (const auto& other : ports)
                if (other.name == config.ports(i).peer()) port.peer = other.id;
        }
        std::string error = configure(config.ports(i), "ports[" + std::to_string(i) + "]", workers,
                                      inline_mode, rx_pool, port);
        if (!error.empty()) {
            ports.resize(i);  // only those started so far are stopped by the caller
            return error;
        }
        for (std::uint16_t q = 0; q < port.rx_queues; ++q)
            queues.push_back({port.id, q, port.peer});
    }
    return "";
}

void stop_ports(const std::vector<PortInfo>& ports) {
    for (const auto& p : ports) {
        rte_eth_dev_stop(p.id);
        rte_eth_dev_close(p.id);
    }
}

}  // namespace tapwire::dataplane
