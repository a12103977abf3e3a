#!/usr/bin/env bash
# The appliance's main job on the bundled default, in one command: installs what is missing,
# builds, then runs the whole appliance (tools/demo/tapwire_demo.py): the traffic generator
# feeding the dataplane over a memif link, the control plane with a PKI made on the spot, two
# reference LEMFs (ETSI and US CALEA), warrants provisioned with tapwire-ctl over mutual TLS,
# live status, and a summary a person can check. Ctrl-C ends it cleanly.
# Usage: tools/demo.sh [--duration S] [--rate PPS] [--port PCI_OR_VDEV ...] [--out DIR]
#        tools/demo.sh CAPTURE...   (the parsing core over capture files, per packet class)
set -euo pipefail
cd "$(dirname "$0")/.."

bash tools/setup.sh
[[ -f build/build.ninja ]] || meson setup build -Dbuildtype=release
ninja -C build

if (($#)) && [[ $1 != -* ]]; then
    exec build/tools/tapwire-inspect "$@"
fi
exec /usr/bin/python3 tools/demo/tapwire_demo.py --build build "$@"
