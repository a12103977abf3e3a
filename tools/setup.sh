#!/usr/bin/env bash
# Installs every Debian 12 package Tapwire needs to build, test and run, and (as root)
# reserves hugepages for DPDK. Idempotent: a second run installs nothing and changes nothing.
# Usage: tools/setup.sh [--no-hugepages]
set -euo pipefail

packages=(
    # build
    build-essential pkg-config meson ninja-build clang clang-format libclang-rt-14-dev
    # libraries (all found by meson through pkg-config)
    libdpdk-dev libhyperscan-dev libgrpc++-dev libprotobuf-dev protobuf-compiler
    protobuf-compiler-grpc libssl-dev libsqlite3-dev libpcap-dev catch2
    # DPDK tools (dpdk-testpmd, dpdk-telemetry.py) and independent peers used by tests
    dpdk dpdk-dev tshark sip-tester asn1c python3 python3-scapy python3-grpcio
    iproute2 openssl
)

want_hugepages=1
[[ "${1:-}" == "--no-hugepages" ]] && want_hugepages=0

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
    if [[ $EUID -ne 0 ]]; then
        echo "setup: missing packages: ${missing[*]}" >&2
        echo "setup: run as root (or: sudo $0) to install them" >&2
        exit 1
    fi
    echo "setup: installing ${#missing[@]} packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
else
    echo "setup: all ${#packages[@]} packages present"
fi

# DPDK wants hugepages; tests also run with --no-huge, so failure here is a warning only
# (containers often forbid changing vm.nr_hugepages).
hugepages=${TAPWIRE_HUGEPAGES:-512}  # 2 MiB pages: 1 GiB
if ((want_hugepages)) && [[ $EUID -eq 0 ]]; then
    current=$(cat /proc/sys/vm/nr_hugepages 2>/dev/null || echo 0)
    if ((current < hugepages)); then
        if sysctl -q -w vm.nr_hugepages="$hugepages" 2>/dev/null; then
            echo "setup: reserved $(cat /proc/sys/vm/nr_hugepages) hugepages of 2 MiB"
        else
            echo "setup: warning: could not reserve hugepages (tests use --no-huge)" >&2
        fi
    fi
    if ! grep -qs ' /dev/hugepages hugetlbfs ' /proc/mounts; then
        mkdir -p /dev/hugepages
        mount -t hugetlbfs nodev /dev/hugepages 2>/dev/null ||
            echo "setup: warning: could not mount hugetlbfs on /dev/hugepages" >&2
    fi
fi
