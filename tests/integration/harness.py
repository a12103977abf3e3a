"""Shared pieces of the integration tests that drive the real control plane.

Environment(build, source) generates the Python gRPC stubs from the repository's .proto files
(python3-grpcio and grpc_python_plugin from Debian; grpc_client=False for a test that only runs
the command-line tools), makes a test PKI (tools/make_test_pki.sh: a CA, the server certificate, one
client certificate per role), an issuing authority key (tapwire-sign --gen-key) and an audit
checkpoint key, all in a fresh temporary directory.
Server starts tapwire-controlplane on 127.0.0.1 port 0 and reads the port it prints.
Checks: check(name, fn) runs one, prints PASS/FAIL and goes on; summary() exits.
"""
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

SKIP = 77
PLUGIN = "/usr/bin/grpc_python_plugin"


def skip(reason):
    print(f"SKIP: {reason}")
    sys.exit(SKIP)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def audit_records(raw):
    """The records of an audit trail (JSON lines, as bytes)."""
    return [json.loads(line) for line in raw.decode().splitlines()]


def warrant_text(xid, targets, liid="LI-0042", destination="lemf-1", start_in_s=-60,
                 duration_s=24 * 3600, content=True, kind="WARRANT_KIND_COURT_ORDER"):
    """An unsigned tapwire.v1.Warrant in protobuf text format (needs no generated code);
    targets: [(IdentityType, value)], types and kind by name or number."""
    now = int(time.time())
    lines = [f"xid: {json.dumps(xid)}", f"liid: {json.dumps(liid)}"]
    lines += [f"targets {{ type: {t} value: {json.dumps(v)} }}" for t, v in targets]
    lines += [f"delivery_type: DELIVERY_TYPE_{'IRI_AND_CC' if content else 'IRI_ONLY'}",
              f"destination_ids: {json.dumps(destination)}",
              f"valid_from {{ seconds: {now + start_in_s} }}",
              f"valid_until {{ seconds: {now + start_in_s + duration_s} }}",
              'legal { issuing_authority: "Amtsgericht Test" reference: "AZ 123/26" '
              f'jurisdiction: "DE" kind: {kind} }}']
    return "\n".join(lines) + "\n"


def hugepages_available():
    try:
        with open("/proc/sys/vm/nr_hugepages") as f:
            return int(f.read()) > 0 and os.path.ismount("/dev/hugepages")
    except OSError:
        return False


class Environment:
    def __init__(self, build, source, prefix="tapwire-it-", grpc_client=True,
                 required_tools=("tapwire-sign", "tapwire-audit-verify")):
        if grpc_client:
            try:
                import grpc  # noqa: F401 - python3-grpcio (Debian)
            except ImportError:
                skip("python3-grpcio is not installed")
            if not os.access(PLUGIN, os.X_OK):
                skip("grpc_python_plugin (protobuf-compiler-grpc) is not installed")
            if shutil.which("protoc") is None:
                skip("protoc is not installed")
        if shutil.which("openssl") is None:
            skip("openssl is not installed")
        self.build = os.path.abspath(build)
        self.source = os.path.abspath(source)
        self.server_bin = os.environ.get(
            "TAPWIRE_CONTROLPLANE", os.path.join(self.build, "controlplane", "tapwire-controlplane"))
        self.sign_bin = self.tool("tapwire-sign")
        self.audit_verify_bin = self.tool("tapwire-audit-verify")
        for exe in (self.server_bin, *map(self.tool, required_tools)):
            if not os.access(exe, os.X_OK):
                print(f"FAIL: {exe} not built")
                sys.exit(1)
        self.tmp = tempfile.mkdtemp(prefix=prefix)

        if grpc_client:
            self._generate_stubs()
        self.pki = os.path.join(self.tmp, "pki")
        subprocess.run(["sh", os.path.join(self.source, "tools", "make_test_pki.sh"),
                        self.pki], check=True, capture_output=True)
        self.keys = os.path.join(self.tmp, "authority-keys")
        os.makedirs(self.keys)
        self.authority_key = os.path.join(self.tmp, "authority.key")
        subprocess.run([self.sign_bin, "--gen-key", self.authority_key,
                        os.path.join(self.keys, "court-1.pem")], check=True)
        self._untrusted_key = None
        self.audit_key = os.path.join(self.tmp, "audit.key")
        self.audit_pub = os.path.join(self.tmp, "audit.pub")
        subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", self.audit_key],
                       check=True)
        subprocess.run(["openssl", "pkey", "-in", self.audit_key, "-pubout", "-out",
                        self.audit_pub], check=True)
        self.state_dir = os.path.join(self.tmp, "state")
        self.audit_log = os.path.join(self.state_dir, "audit.log")

    def _generate_stubs(self):
        stubs = os.path.join(self.tmp, "stubs")
        os.makedirs(stubs)
        proto_dir = os.path.join(self.source, "proto")
        v1 = os.path.join(proto_dir, "tapwire", "v1")
        protos = sorted(os.path.join(v1, f) for f in os.listdir(v1) if f.endswith(".proto"))
        subprocess.run(["protoc", "-I", proto_dir, f"--python_out={stubs}",
                        f"--grpc_python_out={stubs}", f"--plugin=protoc-gen-grpc_python={PLUGIN}",
                        *protos], check=True)
        sys.path.insert(0, stubs)

    def tool(self, name):
        """The path of a program built in tools/."""
        return os.path.join(self.build, "tools", name)

    def pki_file(self, name):
        return os.path.join(self.pki, name)

    def untrusted_key(self):
        """An authority key the appliance does not trust (made on first use)."""
        if self._untrusted_key is None:
            self._untrusted_key = os.path.join(self.tmp, "other.key")
            subprocess.run([self.sign_bin, "--gen-key", self._untrusted_key,
                            os.path.join(self.tmp, "other.pub")], check=True)
        return self._untrusted_key

    def cleanup(self, keep=False):
        """Removes the temporary directory, or (keep: after a failure) says where it is."""
        if keep:
            print(f"kept {self.tmp} for inspection")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def verify_audit(self, path=None):
        """tapwire-audit-verify on an audit trail (default: the server's), as text."""
        return subprocess.run([self.audit_verify_bin, "--log", path or self.audit_log,
                               "--public-key", self.audit_pub], capture_output=True, text=True)

    # ---- clients ------------------------------------------------------------------------

    def channel(self, port, role=None, cert=None):
        """A channel with the role's client certificate (cert: another one of the PKI, such as
        "rogue"); with neither, the client only authenticates the server."""
        import grpc
        ca = read(self.pki_file("ca.pem"))
        name = cert or role
        if name is None:
            creds = grpc.ssl_channel_credentials(root_certificates=ca)
        else:
            creds = grpc.ssl_channel_credentials(
                root_certificates=ca, private_key=read(self.pki_file(f"{name}.key")),
                certificate_chain=read(self.pki_file(f"{name}.pem")))
        return grpc.secure_channel(f"127.0.0.1:{port}", creds,
                                   options=[("grpc.ssl_target_name_override", "localhost")])

    def warrant(self, xid, targets, liid="LI-0042", destination="lemf-1", start_in_s=-60,
                duration_s=24 * 3600, content=True, kind=None):
        """An unsigned tapwire.v1.Warrant, as warrant_text's (kind None: a court order)."""
        from google.protobuf import text_format
        from tapwire.v1 import controlplane_pb2 as pb
        text = warrant_text(xid, targets, liid, destination, start_in_s, duration_s, content,
                            "WARRANT_KIND_COURT_ORDER" if kind is None else kind)
        return text_format.Parse(text, pb.Warrant())

    def sign_text(self, text, key=None, key_id="court-1"):
        """A warrant in text format signed by tapwire-sign (default: the trusted key)."""
        return subprocess.run([self.sign_bin, "--key", key or self.authority_key, "--key-id",
                               key_id, "-"], input=text, capture_output=True, text=True,
                              check=True).stdout

    def signed(self, w, key=None, key_id="court-1"):
        from google.protobuf import text_format
        from tapwire.v1 import controlplane_pb2 as pb
        return text_format.Parse(self.sign_text(text_format.MessageToString(w), key, key_id),
                                 pb.Warrant())


class Process:
    """A child process the test may kill -9 or stop (SIGTERM, then SIGKILL after a wait)."""

    proc = None
    stop_timeout = 15

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                return self.proc.wait()
        return self.proc.returncode if self.proc else None


class Server(Process):
    """tapwire-controlplane with the environment's PKI and keys, plus extra arguments."""

    def __init__(self, env, extra_args=(), log_name="server.log"):
        self.env = env
        self.extra_args = list(extra_args)
        self.log_path = os.path.join(env.tmp, log_name)
        self.proc = None
        self.port = None

    def start(self, timeout=20):
        env = self.env
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [env.server_bin, "--listen", "127.0.0.1:0", "--state-dir", env.state_dir,
             "--tls-cert", env.pki_file("server.pem"), "--tls-key", env.pki_file("server.key"),
             "--client-ca", env.pki_file("ca.pem"),
             "--authority-keys", env.keys, "--roles", env.pki_file("roles"),
             "--audit-key", env.audit_key, *self.extra_args],
            stdout=subprocess.PIPE, stderr=log)
        self.port = self.read_port(timeout)

    def read_port(self, timeout=20):
        """The port from the next 'listening on' line (also after a re-execution)."""
        deadline = time.time() + timeout
        text = ""
        while time.time() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.5)
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    break
                text += chunk.decode(errors="replace")
                if "(port " in text and "\n" in text.split("(port ", 1)[1]:
                    return int(text.split("(port ")[1].split(",")[0])
        raise RuntimeError(f"server did not start: {text!r}; log: {self.log()[-2000:]}")

    def log(self):
        return read(self.log_path).decode(errors="replace")

def code_of(fn, *args):
    import grpc
    try:
        fn(*args, timeout=10)
    except grpc.RpcError as e:
        return e.code(), e.details()
    return grpc.StatusCode.OK, ""


def expect(cond, what):
    if not cond:
        raise AssertionError(what)


def wait_for(predicate, timeout, what, interval=0.05):
    """Polls predicate() until it returns a true value, which is returned."""
    deadline = time.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.time() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


class Checks:
    def __init__(self):
        self.passed = self.failed = 0
        self.notes = []

    def note(self, text):
        """Something the summary reports (as NOTE) without passing or failing a check."""
        self.notes.append(text)

    def check_all(self, checks):
        """check() for each (name, fn) in order."""
        for name, fn in checks:
            self.check(name, fn)

    def check(self, name, fn):
        try:
            fn()
            self.passed += 1
            print(f"PASS {name}", flush=True)
        except Exception as e:  # noqa: BLE001 - a failed check is reported, the rest go on
            self.failed += 1
            print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)

    def summary(self):
        for note in self.notes:
            print(f"NOTE {note}")
        print(f"{self.passed} passed, {self.failed} failed")
        sys.exit(1 if self.failed else 0)


class EventLog:
    """Collects Appliance.WatchEvents of one control-plane run in a thread. `key` in find and
    wait matches an event's XID or destination id; `since` is a mark() taken earlier."""

    def __init__(self, env, port):
        import threading

        import grpc
        from tapwire.v1 import controlplane_pb2 as pb
        from tapwire.v1 import controlplane_pb2_grpc as pb_grpc
        self._pb = pb
        self._rpc_error = grpc.RpcError
        self.events = []
        self.lock = threading.Lock()
        ch = env.channel(port, "operator")
        self.call = pb_grpc.ApplianceStub(ch).WatchEvents(pb.WatchEventsRequest())
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            for e in self.call:
                with self.lock:
                    self.events.append(e)
        except self._rpc_error:
            pass

    def mark(self):
        with self.lock:
            return len(self.events)

    def find(self, kind, key=None, since=0):
        with self.lock:
            return [e for e in self.events[since:] if e.kind == kind and
                    (key is None or key in (e.xid, e.destination_id))]

    def wait(self, kind, key=None, since=0, timeout=10):
        return wait_for(lambda: self.find(kind, key, since), timeout,
                        f"event {self._pb.EventKind.Name(kind)} {key or ''}")[0]

    def close(self):
        self.call.cancel()


class ApplianceClient:
    """The provisioner's and the operator's stubs on one control-plane run, and its events;
    connect() again after the control plane restarted."""

    def __init__(self, env):
        self.env = env
        self.events = None

    def connect(self, port):
        from tapwire.v1 import controlplane_pb2_grpc as pb_grpc
        ch = self.env.channel(port, "provisioner")
        self.warrants = pb_grpc.WarrantsStub(ch)
        self.destinations = pb_grpc.DestinationsStub(ch)
        self.appliance = pb_grpc.ApplianceStub(self.env.channel(port, "operator"))
        self.events = EventLog(self.env, port)

    def disconnect(self):
        if self.events:
            self.events.close()

    def status(self):
        from tapwire.v1 import controlplane_pb2 as pb
        return self.appliance.GetStatus(pb.GetStatusRequest(), timeout=10)

    def wait_attached(self, timeout=30):
        return wait_for(lambda: (s := self.status()).dataplane_attached and s, timeout,
                        "the control plane to attach to the dataplane")


# ---- the real dataplane replaying the demo capture (live_targets, handover_e2e) -------------

def live_arguments(doc, why_hugepages):
    """The start of a test that runs real DPDK processes (BUILD_DIR SOURCE_DIR): usage from
    `doc` when the arguments are wrong, skip (77) without hugepages."""
    if len(sys.argv) != 3:
        print(doc)
        sys.exit(2)
    if not hugepages_available():
        skip(f"no hugepages: {why_hugepages}")


def live_environment(doc, prefix):
    """live_arguments() for a test of the dataplane and control plane, then the Environment."""
    live_arguments(doc, "the control plane attaches as a DPDK secondary")
    return Environment(sys.argv[1], sys.argv[2], prefix=prefix)


def demo_capture(env):
    """Writes the demo call mix to env.tmp/demo.pcap; returns its E.164 and SIP URI targets."""
    import re
    gen = subprocess.run([env.tool("tapwire-callgen"), "--scenario", "demo", "--seed", "7",
                          "--out", os.path.join(env.tmp, "demo.pcap")],
                         check=True, capture_output=True, text=True)
    targets = re.search(r"targets: (.*)", gen.stdout).group(1).split()
    return (next(t for t in targets if t.startswith("+")),
            next(t for t in targets if t.startswith("sip:")))


def start_replay_dataplane(env, prefix, log_path, ring_size):
    """The real dataplane replaying env.tmp/demo.pcap in a loop on net_pcap (as fast as its
    worker polls), with hit rings of `ring_size`; returns the process once it runs."""
    log = open(log_path, "ab")
    proc = subprocess.Popen(
        [os.path.join(env.build, "dataplane", "tapwire-dataplane"), "-l", "0-1", "--no-pci",
         "--file-prefix", prefix, "--log-level=lib.eal:warning",
         f"--vdev=net_pcap0,rx_pcap={env.tmp}/demo.pcap,infinite_rx=1", "--",
         "--config-text", f'ports {{ name: "net_pcap0" }} mirror {{ ring_size: {ring_size} }}'],
        stdout=log, stderr=subprocess.STDOUT)
    wait_for(lambda: "workers on" in read(log_path).decode(errors="replace")
             .split("no targets yet")[-1], 60, "the dataplane to start")
    return proc

