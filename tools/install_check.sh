#!/usr/bin/env bash
# What the Docker image's build stage does after the build, checked in CI: `meson install`
# into a scratch DESTDIR puts every program, the systemd units and the sample settings in
# place, the runtime package list (docker/runtime-packages.sh) names installed packages
# that hold every library the programs link, and systemd accepts the units.
# Usage: install_check.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1 source=$2
dest=$(mktemp -d /tmp/tapwire-install-XXXXXX)
trap 'rm -rf "$dest"' EXIT
DESTDIR=$dest meson install -C "$build" --no-rebuild --quiet >/dev/null
status=0
for f in bin/tapwire-dataplane bin/tapwire-controlplane bin/tapwire-ctl bin/tapwire-lemf \
    bin/tapwire-pktgen bin/tapwire-sign bin/tapwire-audit-verify \
    lib/systemd/system/tapwire-dataplane.service lib/systemd/system/tapwire-controlplane.service \
    lib/systemd/system/tapwire-hugepages.service share/tapwire/examples/tapwire.env \
    share/tapwire/examples/tapwire-dataplane.conf; do
    [[ -e $dest/usr/local/$f ]] || { echo "FAIL: meson install did not install $f"; status=1; }
done
packages=$(sh "$source/docker/runtime-packages.sh" "$dest")
[[ -n $packages ]] || { echo "FAIL: no runtime packages found"; status=1; }
for p in $packages; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
        { echo "FAIL: runtime package $p is not an installed package"; status=1; }
done
# Every library a program links must come from a package (nothing from the build tree).
if ldd "$dest"/usr/local/bin/* | grep -q "not found"; then
    echo "FAIL: unresolved libraries:"
    ldd "$dest"/usr/local/bin/* | grep "not found"
    status=1
fi
# The systemd units as systemd reads them (syntax, directives, executables), pointed at the
# scratch install and the sample settings.
if command -v systemd-analyze >/dev/null; then
    units=$dest/units
    mkdir -p "$units"
    for u in "$dest"/usr/local/lib/systemd/system/*.service; do
        sed -e "s|/usr/local/bin/|$dest/usr/local/bin/|g" \
            -e "s|EnvironmentFile=/etc/tapwire/tapwire.env|EnvironmentFile=$dest/usr/local/share/tapwire/examples/tapwire.env|" \
            "$u" >"$units/$(basename "$u")"
    done
    if ! out=$(SYSTEMD_LOG_LEVEL=warning systemd-analyze verify "$units"/*.service 2>&1) ||
        [[ -n $out ]]; then
        echo "FAIL: systemd-analyze verify:"
        echo "$out"
        status=1
    fi
fi
((status == 0)) && echo "install check: $(wc -w <<<"$packages") runtime packages:" $packages
exit $status
