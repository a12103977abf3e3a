"""The whole appliance as separate processes on one host, for the demo (tapwire_demo.py) and
the end-to-end benchmark (tools/bench/bench_e2e.py): reference LEMFs, the dataplane (a
net_memif port fed by tapwire-pktgen, or real ports), the control plane with a PKI made on
the spot, provisioning with tapwire-ctl over mutual TLS, status, clean shutdown.
"""
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


class Appliance:
    def __init__(self, args):
        self.args = args
        self.build = os.path.abspath(args.build)
        self.out = os.path.abspath(args.out)
        self.prefix = f"tw_demo_{os.getpid()}"
        self.gen_prefix = f"tw_demo_gen_{os.getpid()}"
        self.procs = {}  # name -> Popen, in start order
        self.stopping = False
        # What a test may change before starting: the generator's traffic and the control
        # plane's further options.
        self.traffic = ["--mix", "demo"]
        self.controlplane_args = []

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
        # A fresh working folder; it may be a mount point (a container volume): emptied, kept.
        os.makedirs(self.out, exist_ok=True)
        for entry in os.listdir(self.out):
            path = os.path.join(self.out, entry)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)
        log(f"working in {self.out}")
        # A throwaway PKI: CA, server certificate, one client certificate per role.
        # In a source tree tools/make_test_pki.sh; installed (docker/), next to this folder.
        pki_script = next(p for p in (os.path.join(SOURCE, "tools", "make_test_pki.sh"),
                                      os.path.join(os.path.dirname(HERE), "make_test_pki.sh"))
                          if os.path.exists(p))
        subprocess.run(["sh", pki_script,
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
            "--operator-id", "DEMO-OP", "--network-element-id", "tapwire-demo",
            *self.controlplane_args],
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
                *self.traffic, "--rate", str(self.args.rate), "--hold"]
        self.start("pktgen", argv)
        log(f"traffic generator sending {' '.join(self.traffic)} at {self.args.rate} packets/s "
            "over the memif link")

    def finish(self):
        log("stopping the generator, letting the spools drain")
        # The generator ends its traffic but keeps the memif link until the dataplane has
        # stopped: DPDK 22.11's memif driver can crash a peer that polls while the other side
        # disconnects.
        pktgen = self.procs.get("pktgen")
        if pktgen is not None and pktgen.poll() is None:
            pktgen.send_signal(signal.SIGUSR1)
            try:
                self.wait_log("pktgen", "holding the port open", 10)
            except RuntimeError:
                pass
        deadline = time.time() + 20
        s = {}
        while time.time() < deadline:
            s = self.status()
            if s and all(int(d.get("records_pending", 0)) == 0 for d in s.get("destinations", [])):
                break
            time.sleep(0.5)
        self.final_status = s
        with open(self.path("status.json"), "w") as f:  # the last ApplianceStatus, for people
            json.dump(s, f, indent=1)
        for name in self.local_lemfs:
            self.stop(name)
        self.stop("controlplane")
        self.stop("dataplane")
        self.stop("pktgen")

    def cleanup(self):
        # The dataplane before the generator (see finish), then the rest.
        for name in ["controlplane", "dataplane"] + [n for n in reversed(list(self.procs))
                                                    if n not in ("controlplane", "dataplane")]:
            self.stop(name, timeout=5)
        for prefix in (self.prefix, self.gen_prefix):
            shutil.rmtree(f"/var/run/dpdk/{prefix}", ignore_errors=True)
            for f in os.listdir("/dev/hugepages") if os.path.isdir("/dev/hugepages") else []:
                if f.startswith(prefix):
                    try:
                        os.unlink(os.path.join("/dev/hugepages", f))
                    except OSError:
                        pass
