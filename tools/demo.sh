#!/usr/bin/env bash
# The appliance's main job on the bundled default: installs what is missing, builds, and
# runs the parsing core over the synthetic demo capture (made at build time by
# tapwire-callgen), printing what it found per packet and per packet class.
# Usage: tools/demo.sh [CAPTURE...]   (default: the bundled demo capture)
set -euo pipefail
cd "$(dirname "$0")/.."

bash tools/setup.sh
[[ -f build/build.ninja ]] || meson setup build -Dbuildtype=release
ninja -C build

if (($#)); then
    exec build/tools/tapwire-inspect "$@"
fi
# The demo capture is synthetic (tapwire.test identities), so identities are shown; on real
# traffic tapwire-inspect redacts them unless asked.
exec build/tools/tapwire-inspect --show-identities build/tools/demo-calls.pcap
