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
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.dirname(os.path.dirname(HERE))

# The demo call mix's targets (tools/traffic/call_flow.cpp, scenario "demo").
TARGET_TEL = "+4930555010"
TARGET_SIP = "sip:alice@tapwire.test"


def log(text):
    print(f"demo: {text}", flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Demo:
    def __init__(self, args):
        self.args = args
        self.build = os.path.abspath(args.build)
        self.out = os.path.abspath(args.out)
        self.prefix = f"tw_demo_{os.getpid()}"
        self.gen_prefix = f"tw_demo_gen_{os.getpid()}"
        self.procs = {}  # name -> Popen, in start order
        self.stopping = False

    # ---- paths and processes ---------------------------------------------------------------

    def exe(self, rel):
        path = os.path.join(self.build, rel)
        if not os.access(path, os.X_OK):
            sys.exit(f"demo: {path} is not built (run tools/demo.sh, which builds it)")
        return path

    def path(self, *parts):
        return os.path.join(self.out, *parts)

    def start(self, name, argv, wait_text=None, timeout=60):
        logf = open(self.path(f"{name}.log"), "wb")
        self.procs[name] = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        if wait_text:
            self.wait_log(name, wait_text, timeout)
        return self.procs[name]

    def read_log(self, name):
        try:
            with open(self.path(f"{name}.log"), "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def wait_log(self, name, text, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if text in self.read_log(name):
                return
            if self.procs[name].poll() is not None:
                break
            time.sleep(0.1)
        tail = "\n".join(self.read_log(name).splitlines()[-15:])
        raise RuntimeError(f"{name} did not start (waiting for '{text}'):\n{tail}")

    def stop(self, name, sig=signal.SIGTERM, timeout=20):
        p = self.procs.get(name)
        if p is None or p.poll() is not None:
            return
        p.send_signal(sig)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()

    def ctl(self, *args, role="provisioner", check=True):
        env = dict(os.environ, TAPWIRE_SERVER=f"127.0.0.1:{self.cp_port}",
                   TAPWIRE_CA=self.path("pki", "ca.pem"),
                   TAPWIRE_CERT=self.path("pki", f"{role}.pem"),
                   TAPWIRE_KEY=self.path("pki", f"{role}.key"),
                   TAPWIRE_SERVER_NAME="localhost")
        r = subprocess.run([self.exe("tools/tapwire-ctl"), *args], env=env,
                           capture_output=True, text=True)
        if check and r.returncode != 0:
            raise RuntimeError(f"tapwire-ctl {' '.join(args)}: {r.stderr.strip()}")
        return r

    # ---- steps -----------------------------------------------------------------------------

    def prepare(self):
        shutil.rmtree(self.out, ignore_errors=True)
        os.makedirs(self.out)
        log(f"working in {self.out}")
        # A throwaway PKI: CA, server certificate, one client certificate per role.
        subprocess.run(["sh", os.path.join(SOURCE, "tools", "make_test_pki.sh"),
                        self.path("pki")], check=True, capture_output=True)
        os.makedirs(self.path("authority-keys"))
        subprocess.run([self.exe("tools/tapwire-sign"), "--gen-key", self.path("authority.key"),
                        self.path("authority-keys", "court-1.pem")], check=True,
                       capture_output=True)
        subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out",
                        self.path("audit.key")], check=True, capture_output=True)
        subprocess.run(["openssl", "pkey", "-in", self.path("audit.key"), "-pubout", "-out",
                        self.path("audit.pub")], check=True, capture_output=True)

    def start_lemfs(self):
        self.lemf_ports = {}
        self.lemf_hosts = {"lemf-de": "127.0.0.1", "lemf-us": "127.0.0.1"}
        self.local_lemfs = ["lemf-us"]
        if self.args.etsi_lemf:
            # An external LEMF (docker compose: its own container) receives the ETSI stream.
            host, port = self.args.etsi_lemf.rsplit(":", 1)
            self.lemf_hosts["lemf-de"] = socket.gethostbyname(host)
            self.lemf_ports["lemf-de"] = int(port)
        else:
            self.local_lemfs.insert(0, "lemf-de")
        formats = {"lemf-de": "etsi-102232", "lemf-us": "calea"}
        for name in self.local_lemfs:
            fmt = formats[name]
            self.start(name, [self.exe("tools/tapwire-lemf"), "--listen", "127.0.0.1:0",
                              "--format", fmt, "--out", self.path(name), "--progress", "2",
                              "--summary-json", self.path(f"{name}.summary.json")],
                       "listening on port")
            self.lemf_ports[name] = int(self.read_log(name).split("listening on port ")[1]
                                        .split()[0])
        log(f"LEMFs listening: ETSI on {self.lemf_ports['lemf-de']}, "
            f"CALEA on {self.lemf_ports['lemf-us']}")

    def start_dataplane(self):
        eal = ["-l", "0-1", "--file-prefix", self.prefix, "--log-level=lib.eal:warning"]
        if self.args.port:
            eal += [f"--allow={p}" if ":" in p else f"--vdev={p}" for p in self.args.port]
            ports = "".join(f'ports {{ name: "{p}" }} ' for p in self.args.port)
        else:
            self.memif = self.path("memif.sock")
            eal += ["--no-pci", f"--vdev=net_memif0,role=server,socket={self.memif}"]
            ports = 'ports { name: "net_memif0" }'
        self.start("dataplane", [self.exe("dataplane/tapwire-dataplane"), *eal, "--",
                                 "--config-text", ports], "workers on")
        log("dataplane up" + (f" on {', '.join(self.args.port)}" if self.args.port
                              else " (net_memif server)"))

    def start_controlplane(self):
        pki = lambda f: self.path("pki", f)  # noqa: E731
        self.start("controlplane", [
            self.exe("controlplane/tapwire-controlplane"), "--listen", "127.0.0.1:0",
            "--state-dir", self.path("state"), "--authority-keys", self.path("authority-keys"),
            "--tls-cert", pki("server.pem"), "--tls-key", pki("server.key"),
            "--client-ca", pki("ca.pem"), "--roles", pki("roles"),
            "--audit-key", self.path("audit.key"), "--dataplane-prefix", self.prefix,
            "--operator-id", "DEMO-OP", "--network-element-id", "tapwire-demo"],
            "listening on")
        text = self.read_log("controlplane")
        self.cp_port = int(text.split("(port ")[1].split(",")[0])
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.status().get("dataplane_attached"):
                break
            time.sleep(0.2)
        else:
            raise RuntimeError("the control plane did not attach to the dataplane")
        log(f"control plane up (gRPC with mutual TLS on 127.0.0.1:{self.cp_port}), attached")

    def status(self):
        r = self.ctl("--json", "status", role="operator", check=False)
        if r.returncode != 0:
            return {}
        return json.loads(r.stdout)

    def provision(self):
        for name, fmt in (("lemf-de", "etsi-102232"), ("lemf-us", "atis-calea")):
            self.ctl("destination", "create", "--id", name, "--address", self.lemf_hosts[name],
                     "--port", str(self.lemf_ports[name]), "--format", fmt)
        now = int(time.time())
        self.warrants = {}
        for liid, target, dest, country in (
                ("DE-LI-0001", ("IDENTITY_TYPE_E164", TARGET_TEL), "lemf-de", "DE"),
                ("US-CASE-0001", ("IDENTITY_TYPE_SIP_URI", TARGET_SIP), "lemf-us", "US")):
            xid = str(uuid.uuid4())
            text = "\n".join([
                f'xid: "{xid}"', f'liid: "{liid}"',
                f'targets {{ type: {target[0]} value: "{target[1]}" }}',
                "delivery_type: DELIVERY_TYPE_IRI_AND_CC", f'destination_ids: "{dest}"',
                f"valid_from {{ seconds: {now - 60} }}",
                f"valid_until {{ seconds: {now + 24 * 3600} }}",
                f'legal {{ issuing_authority: "Demo Court" reference: "DEMO {liid}" '
                f'jurisdiction: "{country}" kind: WARRANT_KIND_COURT_ORDER }}']) + "\n"
            signed = subprocess.run([self.exe("tools/tapwire-sign"), "--key",
                                     self.path("authority.key"), "--key-id", "court-1", "-"],
                                    input=text, capture_output=True, text=True, check=True).stdout
            path = self.path(f"warrant-{liid}.textproto")
            with open(path, "w") as f:
                f.write(signed)
            self.ctl("warrant", "activate", path)
            self.warrants[liid] = xid
        log("provisioned over mutual TLS: destinations lemf-de (ETSI 102 232) and lemf-us "
            "(ATIS CALEA), warrants DE-LI-0001 (a phone number) and US-CASE-0001 (a SIP URI)")
        print(self.ctl("warrant", "list").stdout, flush=True)

    def start_traffic(self):
        if self.args.port:
            log("real ports: no generator; intercepting what the ports receive")
            return
        argv = [self.exe("tools/tapwire-pktgen"), "-l", "1", "--no-pci", "--file-prefix",
                self.gen_prefix, "--log-level=lib.eal:warning",
                f"--vdev=net_memif0,role=client,socket={self.memif}", "--",
                "--mix", "demo", "--rate", str(self.args.rate)]
        self.start("pktgen", argv)
        log(f"traffic generator sending the demo call mix at {self.args.rate} packets/s "
            "over the memif link")

    def live(self):
        log("live (every 2 s): dataplane, control plane, destinations, LEMFs. Ctrl-C ends.")
        end = time.time() + self.args.duration if self.args.duration > 0 else None
        while not self.stopping and (end is None or time.time() < end):
            time.sleep(2)
            s = self.status()
            workers = s.get("workers", [])
            pps = sum(w.get("rx_packets_per_second", 0) for w in workers)
            dests = " ".join(
                f"{d['id']}:{'up' if d.get('up') else 'DOWN'}/{d.get('recordsSpooled', 0)}"
                f"/{d.get('recordsPending', 0)}" for d in s.get("destinations", []))
            print(f"  appliance: rx {pps:,.0f} pkt/s, {s.get('activeCalls', 0)} calls followed, "
                  f"{s.get('hitsTotal', 0)} hits; destinations (spooled/pending) {dests}",
                  flush=True)
            for name in self.local_lemfs:
                lines = [ln for ln in self.read_log(name).splitlines()
                         if ln.startswith("tapwire-lemf: ") and "LIIDs" in ln]
                if lines:
                    print(f"  {name}: {lines[-1][len('tapwire-lemf: '):]}", flush=True)

    def finish(self):
        log("stopping the generator, letting the spools drain")
        self.stop("pktgen", signal.SIGINT)
        deadline = time.time() + 20
        s = {}
        while time.time() < deadline:
            s = self.status()
            if s and all(int(d.get("records_pending", 0)) == 0 for d in s.get("destinations", [])):
                break
            time.sleep(0.5)
        self.final_status = s
        for name in self.local_lemfs:
            self.stop(name)
        self.stop("controlplane")
        self.stop("dataplane")

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
        print(f"  files: IRI as JSON lines and CC as pcap per LIID under {self.path('lemf-de')} "
              f"and {self.path('lemf-us')}; logs and the audit trail under {self.out}")
        verify = subprocess.run([self.exe("tools/tapwire-audit-verify"), "--log",
                                 self.path("state", "audit.log"), "--public-key",
                                 self.path("audit.pub")], capture_output=True, text=True)
        print(f"  audit trail: {'verified' if verify.returncode == 0 else 'NOT VERIFIED'}")
        ok = ok and verify.returncode == 0
        print("  result: " + ("OK: records delivered and decoded, no gaps" if ok else
                              "PROBLEM: see above and the logs"))
        return ok

    def cleanup(self):
        for name in reversed(list(self.procs)):
            self.stop(name, timeout=5)
        for prefix in (self.prefix, self.gen_prefix):
            shutil.rmtree(f"/var/run/dpdk/{prefix}", ignore_errors=True)
            for f in os.listdir("/dev/hugepages") if os.path.isdir("/dev/hugepages") else []:
                if f.startswith(prefix):
                    try:
                        os.unlink(os.path.join("/dev/hugepages", f))
                    except OSError:
                        pass


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
