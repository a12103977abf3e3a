#!/usr/bin/env bash
# The appliance's main job on the bundled default: installs what is missing, builds, then
#   1. runs the parsing core over the synthetic demo capture (made at build time by
#      tapwire-callgen) and prints what it found per packet class;
#   2. replays the same capture through the real dataplane (a net_pcap vdev) with the
#      demo's warrant targets, drains the intercepted hits through a second DPDK process,
#      and prints what was intercepted per call.
# Usage: tools/demo.sh [CAPTURE...]   (with captures: step 1 only, over those files)
set -euo pipefail
cd "$(dirname "$0")/.."

bash tools/setup.sh
[[ -f build/build.ninja ]] || meson setup build -Dbuildtype=release
ninja -C build

if (($#)); then
    exec build/tools/tapwire-inspect "$@"
fi

pcap=build/tools/demo-calls.pcap
echo "== 1. parsing core over $pcap"
# The demo capture is synthetic (tapwire.test identities), so identities are shown; on real
# traffic tapwire-inspect redacts them unless asked.
build/tools/tapwire-inspect --show-identities --quiet "$pcap"

echo
echo "== 2. dataplane: $pcap through net_pcap0, targets +4930555010 and sip:alice@tapwire.test"
out=tools/demo-out
mkdir -p "$out"
printf '1 +4930555010\n2 sip:alice@tapwire.test\n' >"$out/targets.txt"
prefix=tw_demo_$$
eal=(-l 0-1 --no-pci --file-prefix "$prefix" --log-level=lib.eal:warning)
hugepages=$(cat /proc/sys/vm/nr_hugepages 2>/dev/null || echo 0)
if ((hugepages == 0)); then
    # Without hugepages there is no shared memory for a second process: the dataplane runs
    # alone and reports the hits it could not hand over.
    eal+=(--no-huge -m 512)
fi
cleanup() { rm -rf "/var/run/dpdk/$prefix" /dev/hugepages/"$prefix"* 2>/dev/null || true; }
trap cleanup EXIT
build/dataplane/tapwire-dataplane "${eal[@]}" \
    --vdev "net_pcap0,rx_pcap=$pcap,infinite_rx=0" -- \
    --config-text 'ports { name: "net_pcap0" }' --targets "$out/targets.txt" \
    --exit-when-idle 1500 --drain-timeout 5000 >"$out/dataplane.log" 2>&1 &
dataplane=$!
for _ in $(seq 100); do grep -q "workers on" "$out/dataplane.log" && break; sleep 0.1; done
if ((hugepages > 0)); then
    build/tools/tapwire-hitdump -l 1 --no-pci --proc-type=secondary --file-prefix "$prefix" \
        --log-level=lib.eal:warning -- --out "$out/hits.jsonl"
fi
wait "$dataplane"
grep -v '^EAL\|^TELEMETRY' "$out/dataplane.log"
if [[ -s "$out/hits.jsonl" ]]; then
    echo
    echo "intercepted, per call (correlation id): SIP messages, RTP and RTCP packets"
    /usr/bin/python3 - "$out/hits.jsonl" <<'PY'
import collections, json, sys
calls = collections.defaultdict(collections.Counter)
for line in open(sys.argv[1]):
    h = json.loads(line)
    calls[h["cid"]][h["kind"]] += 1
    calls[h["cid"]]["warrants " + ",".join(map(str, h["warrants"]))] = 1
for cid in sorted(calls):
    c = calls[cid]
    warrants = [k for k in c if k.startswith("warrants")][0]
    print(f"  call {cid:>3}: {c['sip']:>3} SIP  {c['rtp']:>5} RTP  {c['rtcp']:>3} RTCP  ({warrants})")
print(f"  {len(calls)} calls/sessions intercepted; hits written to {sys.argv[1]}")
PY
fi
