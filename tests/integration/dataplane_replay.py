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
import struct
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


def write_pcap(path, frames):
    """A classic Ethernet pcap of raw frames (truncated or malformed ones included)."""
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i, frame in enumerate(frames):
            f.write(struct.pack("<IIII", 1700000000 + i // 1000, i % 1000, len(frame), len(frame)))
            f.write(frame)


def generate(build, name, seed, workdir):
    pcap = os.path.join(workdir, f"{name}.pcap")
    labels = os.path.join(workdir, f"{name}.csv")
    gen = subprocess.run([f"{build}/tools/tapwire-callgen", "--scenario", name, "--seed", str(seed),
                          "--out", pcap, "--labels", labels], check=True, capture_output=True, text=True)
    targets = re.search(r"targets: (.*)", gen.stdout).group(1).split()
    targets_path = os.path.join(workdir, f"{name}.targets")
    with open(targets_path, "w") as f:
        for i, t in enumerate(targets, start=1):
            f.write(f"{i} {t}\n")
    return pcap, labels, targets_path


def run_dataplane(build, prefix, vdevs, config, targets_path, hits_path, telemetry=None):
    """Runs tapwire-dataplane and tapwire-hitdump; returns (hits, counters, telemetry reply)."""
    eal = ["-l", "0-1", "--no-pci", "--file-prefix", prefix, "--log-level=lib.eal:warning"]
    dataplane = subprocess.Popen(
        [f"{build}/dataplane/tapwire-dataplane", *eal, *[f"--vdev={v}" for v in vdevs], "--",
         "--config-text", config, "--targets", targets_path,
         "--exit-when-idle", "1500", "--drain-timeout", "10000"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # The secondary can attach once the primary's memory is up: wait for its start line.
    started = []
    for line in dataplane.stdout:
        started.append(line)
        if "workers on" in line:
            break
    else:
        dataplane.wait()
        raise Failure(f"dataplane did not start:\n{''.join(started)}")
    reply = None
    if telemetry:
        # DPDK's own client, as an operator would use it.
        t = subprocess.run(["dpdk-telemetry.py", "-f", prefix], input=telemetry + "\n",
                           capture_output=True, text=True, timeout=30)
        reply = t.stdout
    dump = subprocess.run([f"{build}/tools/tapwire-hitdump", "-l", "1", "--no-pci", "--proc-type=secondary",
                           "--file-prefix", prefix, "--log-level=lib.eal:warning", "--",
                           "--out", hits_path], capture_output=True, text=True, timeout=180)
    rest = dataplane.communicate(timeout=180)[0]
    if dataplane.returncode != 0 or dump.returncode != 0:
        raise Failure(f"dataplane rc={dataplane.returncode}, hitdump rc={dump.returncode}\n"
                      f"{''.join(started)}{rest}\n{dump.stdout}{dump.stderr}")
    counters = {k: int(v) for k, v in re.findall(r"^\s+(\w+)\s+(\d+)", rest, re.M)}
    with open(hits_path) as f:
        hits = [json.loads(line) for line in f]
    return hits, counters, reply


PASSIVE = 'ports { name: "net_pcap0" } mirror { ring_size: 65536 }'


def run_scenario(build, name, seed, workdir, prefix):
    pcap, labels, targets_path = generate(build, name, seed, workdir)
    hits, counters, reply = run_dataplane(
        build, prefix, [f"net_pcap0,rx_pcap={pcap},infinite_rx=0"], PASSIVE, targets_path,
        os.path.join(workdir, f"{name}.hits.jsonl"), telemetry="/tapwire/totals")
    if reply is None or '"rx_packets"' not in reply or '"/tapwire/totals"' not in reply:
        raise Failure(f"{name}: dpdk-telemetry.py did not return the Tapwire counters:\n{reply}")
    return pcap, labels, hits, counters


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


def check_inline(build, workdir, prefix):
    """Inline mode: every frame leaves on the peer port byte for byte, hits as in passive."""
    pcap, labels, targets_path = generate(build, "demo", 1, workdir)
    empty = os.path.join(workdir, "empty.pcap")
    out_a, out_b = os.path.join(workdir, "out_a.pcap"), os.path.join(workdir, "out_b.pcap")
    write_pcap(empty, [])  # the rx side of a port that only transmits
    config = ('mode: MODE_INLINE ports { name: "net_pcap0" peer: "net_pcap1" } '
              'ports { name: "net_pcap1" peer: "net_pcap0" } mirror { ring_size: 65536 }')
    hits, counters, _ = run_dataplane(
        build, prefix, [f"net_pcap0,rx_pcap={pcap},tx_pcap={out_a},infinite_rx=0",
                        f"net_pcap1,rx_pcap={empty},tx_pcap={out_b},infinite_rx=0"],
        config, targets_path, os.path.join(workdir, "inline.hits.jsonl"))
    sent = [bytes(f) for f in rdpcap(pcap)]
    forwarded = [bytes(f) for f in rdpcap(out_b)]
    if forwarded != sent:
        raise Failure(f"inline: {len(forwarded)} frames forwarded, {len(sent)} received; "
                      f"first difference at {next((i for i, (a, b) in enumerate(zip(sent, forwarded)) if a != b), min(len(sent), len(forwarded)))}")
    if counters.get("tx_packets") != len(sent) or counters.get("tx_drop"):
        raise Failure(f"inline: tx_packets {counters.get('tx_packets')}, tx_drop {counters.get('tx_drop')}")
    check("inline", pcap, labels, hits, counters)


def hostile_frames():
    """Malformed and abusive traffic: truncated headers, bad lengths, garbage and giant SIP,
    an endless TCP header section, a fragment flood and an oversized fragmented datagram."""
    from scapy.all import IP, Ether, Raw, fragment
    base = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    frames = []
    good = bytes(base / IP(src="198.51.100.9", dst="203.0.113.9") / UDP(sport=5060, dport=5060) /
                 Raw(b"OPTIONS sip:x@y SIP/2.0\r\n\r\n"))
    for cut in range(1, 60, 3):  # truncated at every layer
        frames.append(good[:cut])
    ip = bytearray(good)
    ip[14] = 0x4F  # IHL 15 with no options present
    frames.append(bytes(ip))
    ip = bytearray(good)
    ip[16:18] = (4000).to_bytes(2, "big")  # total length beyond the frame
    frames.append(bytes(ip))
    for junk in (b"\x00" * 200, b"INVITE \r\n\r\n", b"SIP/2.0 999999 x\r\n", b"REGISTER sip:a SIP/2.0\r\n" + b"X: " + b"a" * 1300):
        frames.append(bytes(base / IP(src="198.51.100.9", dst="203.0.113.9") /
                            UDP(sport=5060, dport=5060) / Raw(junk)))
    # An endless header section on a SIP TCP stream.
    seq = 1000
    frames.append(bytes(base / IP(src="198.51.100.7", dst="203.0.113.7") /
                        TCP(sport=40000, dport=5060, flags="S", seq=seq - 1)))
    for _ in range(40):
        chunk = b"INVITE sip:a@b SIP/2.0\r\n" if seq == 1000 else b"X-Pad: " + b"z" * 1000 + b"\r\n"
        frames.append(bytes(base / IP(src="198.51.100.7", dst="203.0.113.7") /
                            TCP(sport=40000, dport=5060, flags="PA", seq=seq) / Raw(chunk)))
        seq += len(chunk)
    # A flood of first fragments that never complete (more than the reassembly slots).
    for i in range(3000):
        frames.append(bytes(base / IP(src="198.51.100.8", dst="203.0.113.8", id=i, flags="MF", frag=0,
                                      proto=17) / Raw(b"\x13\xc4\x13\xc4" + b"f" * 60)))
    # A fragmented 40 KB datagram: larger than reassembly accepts.
    big = IP(src="198.51.100.6", dst="203.0.113.6", id=7) / UDP(sport=5060, dport=5060) / Raw(b"M" * 40000)
    for f in fragment(big, fragsize=1400):
        frames.append(bytes(base / f))
    return frames


def check_hostile(build, workdir, prefix):
    """Hostile traffic first, then the demo calls: all of it counted, nothing crashes, and
    interception of the real calls is unaffected."""
    pcap, labels, targets_path = generate(build, "demo", 1, workdir)
    bad = hostile_frames()
    demo = rdpcap(pcap)
    mixed = os.path.join(workdir, "hostile.pcap")
    write_pcap(mixed, bad + [bytes(f) for f in demo])
    hits, counters, _ = run_dataplane(build, prefix, [f"net_pcap0,rx_pcap={mixed},infinite_rx=0"],
                                      PASSIVE, targets_path, os.path.join(workdir, "hostile.hits.jsonl"))
    problems = []
    if counters.get("rx_packets") != len(bad) + len(demo):
        problems.append(f"rx_packets {counters.get('rx_packets')} != {len(bad) + len(demo)}")
    for counter in ("malformed", "sip_invalid", "drop_fragment", "drop_tcp_stream"):
        if not counters.get(counter):
            problems.append(f"{counter} not counted")
    # 3000 never-completed first fragments against 1024 reassembly slots per worker: at least
    # the overflow is evicted and counted (the rest time out later or at exit).
    if counters.get("drop_fragment", 0) < 3000 - 1024:
        problems.append(f"drop_fragment {counters.get('drop_fragment')} < {3000 - 1024} evictions")
    if problems:
        raise Failure("hostile: " + "; ".join(problems) + f"\n{counters}")
    # The demo part must be intercepted exactly as without the hostile prefix (the hostile
    # frames are not labelled: they must yield no hit, which check() counts as extra hits).
    check("hostile+demo", pcap, labels, hits, {**counters, "rx_packets": len(demo)})
    print(f"hostile: {len(bad)} hostile frames counted: malformed {counters['malformed']}, "
          f"sip_invalid {counters['sip_invalid']}, drop_fragment {counters['drop_fragment']}, "
          f"drop_tcp_stream {counters['drop_tcp_stream']}")


def check_device_settings(build, workdir, prefix):
    """Settings that the device cannot honour stop the start with a message naming them."""
    pcap, _, targets_path = generate(build, "basic", 1, workdir)
    for config, expect in (
            ('ports { name: "net_pcap0" rx_queues: 4 }', "ports[0].rx_queues: 4 configured but net_pcap0"),
            ('ports { name: "net_pcap9" }', "ports[0].name: no DPDK device 'net_pcap9'; devices present: net_pcap0"),
            ('ports { name: "net_pcap0" } workers: 3', "workers: 3 configured but the EAL gave 1")):
        r = subprocess.run([f"{build}/dataplane/tapwire-dataplane", "-l", "0-1", "--no-pci", "--no-huge",
                            "-m", "512", "--file-prefix", prefix, "--log-level=lib.eal:error",
                            f"--vdev=net_pcap0,rx_pcap={pcap},infinite_rx=0", "--",
                            "--config-text", config, "--targets", targets_path],
                           capture_output=True, text=True, timeout=60)
        if r.returncode != 1 or expect not in r.stderr:
            raise Failure(f"config {config!r}: rc={r.returncode}, wanted '{expect}' in:\n{r.stderr}")
    print("device settings: 3 bad settings refused with their names")


def cleanup(prefix):
    shutil.rmtree(f"/var/run/dpdk/{prefix}", ignore_errors=True)
    for f in os.listdir("/dev/hugepages"):
        if f.startswith(prefix):
            os.unlink(os.path.join("/dev/hugepages", f))


def main():
    build = os.path.abspath(sys.argv[1])
    if not hugepages_available():
        print("SKIP: multi-process DPDK needs hugepages (run tools/setup.sh as root)")
        return 77
    passed = failed = 0
    cases = [(f"replay {n}", lambda w, p, n=n, seed=seed: check(n, *run_scenario(build, n, seed, w, p)))
             for n, seed in (("demo", 1), ("mix", 3))]
    cases += [("inline", lambda w, p: check_inline(build, w, p)),
              ("hostile", lambda w, p: check_hostile(build, w, p)),
              ("device settings", lambda w, p: check_device_settings(build, w, p))]
    with tempfile.TemporaryDirectory(prefix="tw-replay-") as workdir:
        for i, (label, case) in enumerate(cases):
            prefix = f"tw_it_{os.getpid()}_{i}"
            try:
                case(workdir, prefix)
                passed += 1
            except Exception as e:  # a harness error is a failure too, never a crash
                print(f"FAIL {label}: {e}")
                failed += 1
            finally:
                cleanup(prefix)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
