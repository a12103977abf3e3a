#!/usr/bin/python3
"""Warrant activation latency and provisioning throughput, end to end.

The real dataplane replays a call mix in a loop (net_pcap vdev, infinite_rx) and the real
control plane is attached to it; the orchestration is a Python gRPC client over mutual TLS.
For each scale, background warrants of 1,000 SIP targets each are provisioned until the
dataplane holds that many active targets; then, one at a time, a warrant naming a target that
is in the traffic is activated, and the benchmark measures from the moment the client sends
Activate (the orchestration's view) to
  - the Activate reply (durable: SQLite commit and audit record fsynced),
  - effective: the dataplane's published target set holds it (EVENT_WARRANT_EFFECTIVE), and
  - first hit: its first intercepted packet drained by the control plane (FIRST_HIT),
both stamped by the control plane's clock (the same host clock as the client's). Timing from
the request, not the reply, because the dataplane often holds the warrant before the client
has read the reply. The sample warrant is then deactivated. Printed: p50 and p99 (and max) per scale, with the gRPC round
trip of a Warrants.Get measured in the same run as the baseline. Then provisioning
throughput: single-target warrants activated back to back by 1 and by 8 concurrent clients
(each Activate is durable: SQLite commit and audit record fsynced before the reply).

Usage: bench_activation.py BUILD_DIR SOURCE_DIR [--quick] [--samples N] [--scales 1000,...]
"""
import argparse
import concurrent.futures
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "integration"))
import harness  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("build")
parser.add_argument("source")
parser.add_argument("--quick", action="store_true", help="CI smoke run: 1k targets, few samples")
parser.add_argument("--samples", type=int, default=None)
parser.add_argument("--scales", default=None, help="active targets, comma-separated")
args = parser.parse_args()
scales = [int(s) for s in (args.scales or ("1000" if args.quick else "1000,10000,100000"))
          .split(",")]
samples = args.samples or (5 if args.quick else 50)
provision = 40 if args.quick else 300

if not harness.hugepages_available():
    harness.skip("no hugepages: the control plane attaches as a DPDK secondary")
env = harness.Environment(args.build, args.source, prefix="tapwire-bench-act-")
import grpc  # noqa: E402
from tapwire.v1 import controlplane_pb2 as pb  # noqa: E402
from tapwire.v1 import controlplane_pb2_grpc as pb_grpc  # noqa: E402
from tapwire.v1 import identity_pb2 as idpb  # noqa: E402

PREFIX = f"tw_bench_act_{os.getpid()}"
gen = subprocess.run([f"{env.build}/tools/tapwire-callgen", "--scenario", "demo", "--seed", "7",
                      "--out", os.path.join(env.tmp, "demo.pcap")],
                     check=True, capture_output=True, text=True)
SIP = next(t for t in re.search(r"targets: (.*)", gen.stdout).group(1).split()
           if t.startswith("sip:"))

dp_log = open(os.path.join(env.tmp, "dataplane.log"), "wb")
dataplane = subprocess.Popen(
    [f"{env.build}/dataplane/tapwire-dataplane", "-l", "0-1", "--no-pci", "--file-prefix", PREFIX,
     "--log-level=lib.eal:warning", f"--vdev=net_pcap0,rx_pcap={env.tmp}/demo.pcap,infinite_rx=1",
     "--", "--config-text", 'ports { name: "net_pcap0" }'], stdout=dp_log, stderr=subprocess.STDOUT)
server = harness.Server(env, ["--dataplane-prefix", PREFIX])


class Events:
    def __init__(self, port):
        self.by_key = {}
        self.cond = threading.Condition()
        self.call = pb_grpc.ApplianceStub(env.channel(port, "operator")).WatchEvents(
            pb.WatchEventsRequest())
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        try:
            for e in self.call:
                with self.cond:
                    self.by_key.setdefault((e.kind, e.xid), e)
                    self.cond.notify_all()
        except grpc.RpcError:
            pass

    def wait(self, kind, xid, timeout=60):
        with self.cond:
            if not self.cond.wait_for(lambda: (kind, xid) in self.by_key, timeout):
                raise RuntimeError(f"no {pb.EventKind.Name(kind)} for {xid} in {timeout} s")
            return self.by_key[(kind, xid)]


def percentile(values, q):
    v = sorted(values)
    return v[min(len(v) - 1, int(round(q * (len(v) - 1))))]


def ms(x):
    return f"{x * 1000:8.2f}"


try:
    server.start()
    ch = env.channel(server.port, "provisioner")
    warrants = pb_grpc.WarrantsStub(ch)
    pb_grpc.DestinationsStub(ch).Create(pb.CreateDestinationRequest(destination=pb.Destination(
        id="lemf-1", address="192.0.2.10", port=6000, format=pb.HANDOVER_FORMAT_ETSI_102232)),
        timeout=10)
    appliance = pb_grpc.ApplianceStub(env.channel(server.port, "operator"))
    harness.wait_for(lambda: appliance.GetStatus(pb.GetStatusRequest(), timeout=10)
                     .dataplane_attached, 60, "the control plane to attach")
    events = Events(server.port)

    def activate(w):
        t0 = time.time()
        warrants.Activate(pb.ActivateWarrantRequest(warrant=w), timeout=60)
        return t0, time.time()

    # Signing is the authority's work, not the appliance's: done before any timing.
    def background(n, offset):
        out = []
        for k in range(n):
            targets = [(idpb.IDENTITY_TYPE_SIP_URI,
                        f"sip:user{(offset + k) * 1000 + j}@carrier{j % 97}.example")
                       for j in range(1000)]
            out.append(env.signed(env.warrant(str(uuid.uuid4()), targets, liid=f"BG{offset + k}")))
        return out

    # Baseline: the gRPC round trip of a read.
    probe = env.signed(env.warrant(str(uuid.uuid4()), [(idpb.IDENTITY_TYPE_SIP_URI,
                                                        "sip:probe@bench.example")]))
    warrants.Activate(pb.ActivateWarrantRequest(warrant=probe), timeout=10)
    rtts = []
    for _ in range(200):
        t0 = time.time()
        warrants.Get(pb.GetWarrantRequest(xid=probe.xid), timeout=10)
        rtts.append(time.time() - t0)
    warrants.Deactivate(pb.DeactivateWarrantRequest(xid=probe.xid, reason="bench"), timeout=10)
    print(f"baseline: gRPC Warrants.Get round trip p50 {ms(statistics.median(rtts)).strip()} ms, "
          f"p99 {ms(percentile(rtts, 0.99)).strip()} ms (mutual TLS, loopback)")
    print(f"{'active targets':>14} {'samples':>7} | {'reply p50':>9} | {'effective p50':>13} "
          f"{'p99':>8} {'max':>8} | {'first hit p50':>13} {'p99':>8} {'max':>8}   "
          f"(ms after the Activate request was sent)")

    loaded = 0
    for scale in scales:
        batch = background(scale // 1000 - loaded, loaded)
        for w in batch:
            warrants.Activate(pb.ActivateWarrantRequest(warrant=w), timeout=60)
        loaded = scale // 1000
        if batch:
            events.wait(pb.EVENT_WARRANT_EFFECTIVE, batch[-1].xid, timeout=300)
        harness.wait_for(lambda: appliance.GetStatus(pb.GetStatusRequest(), timeout=10)
                         .published_targets >= loaded * 1000, 300, "background targets published")
        time.sleep(1.0)
        reply, effective, first = [], [], []
        for i in range(samples):
            w = env.signed(env.warrant(str(uuid.uuid4()), [(idpb.IDENTITY_TYPE_SIP_URI, SIP)],
                                       liid=f"S{scale}-{i}"))
            sent, replied = activate(w)
            e = events.wait(pb.EVENT_WARRANT_EFFECTIVE, w.xid)
            f = events.wait(pb.EVENT_WARRANT_FIRST_HIT, w.xid)
            reply.append(replied - sent)
            effective.append(e.time.ToNanoseconds() / 1e9 - sent)
            first.append(f.time.ToNanoseconds() / 1e9 - sent)
            warrants.Deactivate(pb.DeactivateWarrantRequest(xid=w.xid, reason="bench"),
                                timeout=10)
        print(f"{scale:>14} {samples:>7} | {ms(statistics.median(reply)):>9} | "
              f"{ms(statistics.median(effective)):>13} "
              f"{ms(percentile(effective, 0.99))} {ms(max(effective))} | "
              f"{ms(statistics.median(first)):>13} {ms(percentile(first, 0.99))} "
              f"{ms(max(first))}", flush=True)

    # Provisioning throughput: durable activations per second.
    for clients in (1, 8):
        rates = []
        for _ in range(3):
            batch = [env.signed(env.warrant(str(uuid.uuid4()), [(
                idpb.IDENTITY_TYPE_SIP_URI, f"sip:prov{uuid.uuid4().hex[:12]}@bench.example")]))
                for _ in range(provision)]
            t0 = time.time()
            with concurrent.futures.ThreadPoolExecutor(clients) as pool:
                list(pool.map(lambda w: warrants.Activate(
                    pb.ActivateWarrantRequest(warrant=w), timeout=60), batch))
            rates.append(provision / (time.time() - t0))
        print(f"provisioning, {clients} client(s): {statistics.median(rates):.0f} warrants/s "
              f"median (min {min(rates):.0f}, max {max(rates):.0f}; {provision} per round, "
              f"3 rounds, with {loaded * 1000} targets active)", flush=True)
    events.call.cancel()
finally:
    server.stop()
    if dataplane.poll() is None:
        dataplane.send_signal(signal.SIGTERM)
        try:
            dataplane.wait(timeout=30)
        except subprocess.TimeoutExpired:
            dataplane.kill()
env.cleanup()
