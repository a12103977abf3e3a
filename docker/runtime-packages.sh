#!/bin/sh
# Prints the Debian packages that hold the shared libraries the installed Tapwire programs
# link, one per line: what a runtime image must install (docker/Dockerfile) and what CI
# checks after `meson install` (tools/install_check.sh). Usage: runtime-packages.sh DESTDIR
set -eu
dest=${1:?usage: runtime-packages.sh DESTDIR}
owner() {  # the package of a library file: dpkg knows it by one of its usrmerge names
    real=$(readlink -f "$1")
    for p in "$1" "$real" "${real#/usr}" "/usr$1"; do
        if out=$(dpkg -S "$p" 2>/dev/null); then
            echo "$out" | head -n 1 | cut -d: -f1
            return 0
        fi
    done
    echo "runtime-packages: no package holds $1" >&2
    return 1
}
# DPDK's drivers are plugins loaded at run time, not linked: the mempool handler, the buses,
# the vdevs the appliance uses (memif, pcap, ring, null, af_packet) and common NICs.
drivers="librte-mempool-ring23 librte-bus-pci23 librte-bus-vdev23 librte-net-memif23
    librte-net-pcap23 librte-net-ring23 librte-net-null23 librte-net-af-packet23
    librte-net-ixgbe23 librte-net-i40e23 librte-net-ice23 librte-net-e1000-23 librte-net-mlx5-23
    librte-net-virtio23 librte-net-vmxnet3-23"
{
    ldd "$dest"/usr/local/bin/* 2>/dev/null | awk '/=> \// {print $3}' | sort -u |
        while read -r lib; do owner "$lib"; done
    printf '%s\n' $drivers
} | sort -u
