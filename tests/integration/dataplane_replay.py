#!/usr/bin/python3
"""The real dataplane on a net_pcap vdev, its hits drained by a real DPDK secondary.

For each scenario the call generator writes a pcap and per-frame labels (which call, which
kind, targeted or not). tapwire-dataplane replays the pcap through net_pcap with the
scenario's targets; tapwire-hitdump attaches to its rings as a secondary process and writes
every hit. The test then checks, call by call, exactly which packets were mirrored: every
RTP/RTCP packet and every SIP message of targeted calls, nothing of the other calls, one
correlation id per call, and the counters' account of it.

Usage: dataplane_replay.py BUILD_DIR   (exit 77 = skipped: no hugepages for multi-process)
"""
import collections
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

from scapy.all import TCP, UDP, rdpcap  # python3-scapy (Debian)

FNV_OFFSET, FNV_PRIME = 1469598103934665603, 1099511628211


def fnv1a(data: bytes) -> str:
    h = FNV_OFFSET
    for b in data:
        h = ((h ^ b) * FNV_PRIME) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def l4_payload(pkt) -> bytes:
    for layer in (UDP, TCP):
        if layer in pkt:
            return bytes(pkt[layer].payload)
    return b""


def hugepages_available() -> bool:
    try:
        with open("/proc/sys/vm/nr_hugepages") as f:
            return int(f.read()) > 0 and os.path.ismount("/dev/hugepages")
    except OSError:
        return False


class Failure(Exception):
    pass


def run_scenario(build, name, seed, workdir, prefix):
    pcap = os.path.join(workdir, f"{name}.pcap")
    labels = os.path.join(workdir, f"{name}.csv")
    hits_path = os.path.join(workdir, f"{name}.hits.jsonl")
    gen = subprocess.run([f"{build}/tools/tapwire-callgen", "--scenario", name, "--seed", str(seed),
                          "--out", pcap, "--labels", labels], check=True, capture_output=True, text=True)
    targets = re.search(r"targets: (.*)", gen.stdout).group(1).split()
    targets_path = os.path.join(workdir, f"{name}.targets")
    with open(targets_path, "w") as f:
        for i, t in enumerate(targets, start=1):
            f.write(f"{i} {t}\n")

    eal = ["-l", "0-1", "--no-pci", "--file-prefix", prefix, "--log-level=lib.eal:warning"]
    dataplane = subprocess.Popen(
        [f"{build}/dataplane/tapwire-dataplane", *eal,
         f"--vdev=net_pcap0,rx_pcap={pcap},infinite_rx=0", "--",
         "--config-text", 'ports { name: "net_pcap0" } mirror { ring_size: 65536 }',
         "--targets", targets_path, "--exit-when-idle", "1500", "--drain-timeout", "10000"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # The secondary can attach once the primary's memory is up: wait for its start line.
    started = []
    for line in dataplane.stdout:
        started.append(line)
        if "workers on" in line:
            break
    else:
        raise Failure(f"dataplane did not start:\n{''.join(started)}")
    dump = subprocess.run([f"{build}/tools/tapwire-hitdump", "-l", "1", "--proc-type=secondary",
                           "--file-prefix", prefix, "--log-level=lib.eal:warning", "--",
                           "--out", hits_path], capture_output=True, text=True, timeout=120)
    rest = dataplane.communicate(timeout=120)[0]
    output = "".join(started) + rest
    if dataplane.returncode != 0 or dump.returncode != 0:
        raise Failure(f"dataplane rc={dataplane.returncode}, hitdump rc={dump.returncode}\n"
                      f"{output}\n{dump.stdout}{dump.stderr}")
    counters = dict(re.findall(r"^\s+(\w+)\s+(\d+)", rest, re.M))
    with open(hits_path) as f:
        hits = [json.loads(line) for line in f]
    return pcap, labels, hits, {k: int(v) for k, v in counters.items()}


def check(name, pcap, labels_path, hits, counters):
    frames = rdpcap(pcap)
    with open(labels_path) as f:
        labels = list(csv.DictReader(f))
    if len(frames) != len(labels):
        raise Failure(f"{name}: {len(frames)} frames but {len(labels)} labels")

    media_hits = collections.Counter((h["kind"], h["payload_fnv"]) for h in hits if h["kind"] in ("rtp", "rtcp"))
    hit_cid = {}
    for h in hits:
        if h["kind"] in ("rtp", "rtcp"):
            hit_cid[(h["kind"], h["payload_fnv"])] = h["cid"]
    problems = []
    expected_media = collections.Counter()
    call_cids = collections.defaultdict(set)
    expected_sip = 0
    for label, frame in zip(labels, frames):
        targeted = label["targeted"] in ("1", "true")
        kind = label["kind"]
        if kind in ("rtp", "rtcp"):
            key = (kind, fnv1a(l4_payload(frame)))
            if targeted:
                expected_media[key] += 1
                if media_hits[key] == 0:
                    problems.append(f"frame {label['index']} ({label['note']}) of targeted call "
                                    f"{label['call_index']} not mirrored")
                else:
                    call_cids[label["call_index"]].add(hit_cid[key])
            elif media_hits[key]:
                problems.append(f"frame {label['index']} ({label['note']}) of untargeted call "
                                f"{label['call_index']} was mirrored")
        elif kind == "sip" and targeted:
            expected_sip += int(label["sip_messages"] or 0)
    extra = sum((media_hits - expected_media).values())
    if extra:
        problems.append(f"{extra} media hits match no targeted frame")
    sip_hits = sum(1 for h in hits if h["kind"] == "sip")
    if sip_hits != expected_sip:
        problems.append(f"{sip_hits} SIP hits, expected {expected_sip} messages of targeted calls")
    for call, cids in call_cids.items():
        if len(cids) != 1:
            problems.append(f"call {call}: media under {len(cids)} correlation ids {sorted(cids)}")
    all_cids = [next(iter(c)) for c in call_cids.values() if len(c) == 1]
    if len(set(all_cids)) != len(all_cids):
        problems.append("two calls share a correlation id")
    if any(not h["warrants"] for h in hits):
        problems.append("a hit without warrants")
    # The counters account for every hit, and nothing was dropped.
    counted = sum(counters.get(k, 0) for k in ("hits_sip", "hits_rtp", "hits_rtcp", "hits_ip"))
    if counted != len(hits):
        problems.append(f"counters say {counted} hits, hitdump got {len(hits)}")
    for drop in ("drop_ring_full", "drop_pool_empty", "drop_dialog_table_full", "drop_media_table_full"):
        if counters.get(drop):
            problems.append(f"{drop} = {counters[drop]}")
    if counters.get("rx_packets") != len(frames):
        problems.append(f"rx_packets {counters.get('rx_packets')} != {len(frames)} frames")
    targeted_calls = len({l["call_index"] for l in labels if l["targeted"] in ("1", "true")})
    print(f"{name}: {len(frames)} frames, {targeted_calls} targeted sessions, {len(hits)} hits "
          f"({sip_hits} sip, {sum(expected_media.values())} media), {len(problems)} problems")
    if problems:
        raise Failure(f"{name}:\n  " + "\n  ".join(problems[:30]))


def main():
    build = os.path.abspath(sys.argv[1])
    if not hugepages_available():
        print("SKIP: multi-process DPDK needs hugepages (run tools/setup.sh as root)")
        return 77
    passed = failed = 0
    with tempfile.TemporaryDirectory(prefix="tw-replay-") as workdir:
        for name, seed in (("demo", 1), ("mix", 3)):
            prefix = f"tw_it_{os.getpid()}_{name}"
            try:
                check(name, *run_scenario(build, name, seed, workdir, prefix))
                passed += 1
            except (Failure, subprocess.SubprocessError) as e:
                print(f"FAIL {e}")
                failed += 1
            finally:
                shutil.rmtree(f"/var/run/dpdk/{prefix}", ignore_errors=True)
                for f in os.listdir("/dev/hugepages"):
                    if f.startswith(prefix):
                        os.unlink(os.path.join("/dev/hugepages", f))
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
