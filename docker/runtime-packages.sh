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
ldd "$dest"/usr/local/bin/* 2>/dev/null | awk '/=> \// {print $3}' | sort -u |
    while read -r lib; do owner "$lib"; done | sort -u
