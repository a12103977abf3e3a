#!/usr/bin/python3
"""The appliance's main job on a bundled default, in one command (tools/demo.sh runs it after
installing and building what is missing).

It starts, each as its own process like on an appliance:
  - the reference LEMFs (tapwire-lemf): one for an ETSI TS 102 232 destination (Germany), one
    for a US CALEA destination;
  - the dataplane (DPDK primary) with a net_memif port, and the traffic generator
    (tapwire-pktgen) on the other end of that memif link, sending the demo call mix at a
    chosen rate; or, with --port, real NIC ports and no generator;
  - the control plane (DPDK secondary), with its state in OUT/state and a PKI made on the spot;
then provisions the two destinations and two signed warrants with tapwire-ctl over mutual TLS,
and shows, live, the appliance status and the records arriving and decoded at each LEMF.
At the end (--duration, or Ctrl-C) it stops the generator, lets the spools drain, stops
everything cleanly and prints a summary that a person can check: calls seen, targeted calls,
records per LIID, and zero gaps. Exit status 0 when records arrived with no gap and no loss.

Usage: tapwire_demo.py [--build DIR] [--out DIR] [--duration S] [--rate PPS]
                       [--port PCI_OR_VDEV ...] [--etsi-lemf HOST:PORT]
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from appliance import SOURCE, Appliance, log  # noqa: E402


class Demo(Appliance):
    """The appliance, plus what a person watching wants: live lines and a checked summary."""

    def live(self):
        log("live (every 2 s): dataplane, control plane, destinations, LEMFs. Ctrl-C ends.")
        end = time.time() + self.args.duration if self.args.duration > 0 else None
        while not self.stopping and (end is None or time.time() < end):
            time.sleep(2)
            s = self.status()
            workers = s.get("workers", [])
            pps = sum(w.get("rx_packets_per_second", 0) for w in workers)
            dests = " ".join(
                f"{d['id']}:{'up' if d.get('up') else 'DOWN'}/{d.get('records_spooled', 0)}"
                f"/{d.get('records_pending', 0)}" for d in s.get("destinations", []))
            print(f"  appliance: rx {pps:,.0f} pkt/s, {s.get('active_calls', 0)} calls followed, "
                  f"{s.get('hits_total', 0)} hits; destinations (spooled/pending) {dests}",
                  flush=True)
            for name in self.local_lemfs:
                lines = [ln for ln in self.read_log(name).splitlines()
                         if ln.startswith("tapwire-lemf: ") and "LIIDs" in ln]
                if lines:
                    print(f"  {name}: {lines[-1][len('tapwire-lemf: '):]}", flush=True)

    def summary(self):
        s = self.final_status or {}
        counters = {}
        for w in s.get("workers", []):
            for k, v in w.get("counters", {}).items():
                counters[k] = counters.get(k, 0) + int(v)
        print()
        print("== summary")
        print(f"  dataplane: {counters.get('rx_packets', 0)} packets, "
              f"{counters.get('sip_messages', 0)} SIP messages, "
              f"{counters.get('target_matches', 0)} SIP messages matching a target, "
              f"hits: {counters.get('hits_sip', 0)} SIP, {counters.get('hits_rtp', 0)} RTP, "
              f"{counters.get('hits_rtcp', 0)} RTCP")
        drops = {k: int(v) for k, v in s.get("drops", {}).items() if int(v)}
        print(f"  drops: {drops if drops else 'none'}")
        pending = sum(int(d.get("records_pending", 0)) for d in s.get("destinations", []))
        print(f"  records not yet delivered: {pending}")
        ok = pending == 0 and not drops
        for name in self.local_lemfs:
            try:
                with open(self.path(f"{name}.summary.json")) as f:
                    lemf = json.load(f)
            except (OSError, ValueError):
                print(f"  {name}: no summary")
                ok = False
                continue
            print(f"  {name}: decode errors {lemf.get('errors', 0)}")
            liids = lemf.get("liids", {})
            if not liids:
                ok = False
            for liid, v in liids.items():
                types = ", ".join(f"{k} {n}" for k, n in sorted(v.get("iri_by_type", {}).items()))
                print(f"    {liid}: {v.get('calls', 0)} calls, {v.get('iri', 0)} IRI ({types}), "
                      f"{v.get('cc_packets', 0)} CC packets, {v.get('gaps', 0)} gaps, "
                      f"{v.get('duplicates', 0)} possible duplicates")
                ok = ok and v.get("gaps", 0) == 0 and v.get("iri", 0) > 0
            ok = ok and lemf.get("errors", 0) == 0
        folders = " and ".join(self.path(n) for n in self.local_lemfs)
        print(f"  files: IRI as JSON lines and CC as pcap per LIID under {folders}; logs and "
              f"the audit trail under {self.out}")
        verify = subprocess.run([self.exe("tools/tapwire-audit-verify"), "--log",
                                 self.path("state", "audit.log"), "--public-key",
                                 self.path("audit.pub")], capture_output=True, text=True)
        print(f"  audit trail: {'verified' if verify.returncode == 0 else 'NOT VERIFIED'}")
        ok = ok and verify.returncode == 0
        print("  result: " + ("OK: records delivered and decoded, no gaps" if ok else
                              "PROBLEM: see above and the logs"))
        return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(SOURCE, "build"))
    ap.add_argument("--out", default=os.path.join(SOURCE, "tools", "demo-out"))
    ap.add_argument("--duration", type=float, default=30,
                    help="seconds of traffic (0: until Ctrl-C); default 30")
    ap.add_argument("--rate", type=int, default=2000, help="generator packets/s; default 2000")
    ap.add_argument("--port", action="append", default=[],
                    help="a real port (PCI address) or vdev instead of the generator; repeat")
    ap.add_argument("--etsi-lemf", metavar="HOST:PORT",
                    help="an external LEMF for the ETSI destination instead of a local one")
    args = ap.parse_args()
    demo = Demo(args)

    def on_signal(signum, frame):
        demo.stopping = True
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    ok = False
    try:
        demo.prepare()
        demo.start_lemfs()
        demo.start_dataplane()
        demo.start_controlplane()
        demo.provision()
        demo.start_traffic()
        demo.live()
        demo.finish()
        ok = demo.summary()
    except RuntimeError as e:
        print(f"demo: {e}", file=sys.stderr)
    finally:
        demo.cleanup()
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
