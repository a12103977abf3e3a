"""Shared pieces of the integration tests that drive the real control plane.

Environment(build, source) generates the Python gRPC stubs from the repository's .proto files
(python3-grpcio and grpc_python_plugin from Debian), makes a test PKI (make_test_pki.sh: a CA,
the server certificate, one client certificate per role), an issuing authority key
(tapwire-sign --gen-key) and an audit checkpoint key, all in a fresh temporary directory.
Server starts tapwire-controlplane on 127.0.0.1 port 0 and reads the port it prints.
Checks: check(name, fn) runs one, prints PASS/FAIL and goes on; summary() exits.
"""
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


def hugepages_available():
    try:
        with open("/proc/sys/vm/nr_hugepages") as f:
            return int(f.read()) > 0 and os.path.ismount("/dev/hugepages")
    except OSError:
        return False


class Environment:
    def __init__(self, build, source, prefix="tapwire-it-"):
        try:
            import grpc  # noqa: F401 - python3-grpcio (Debian)
        except ImportError:
            skip("python3-grpcio is not installed")
        if not os.access(PLUGIN, os.X_OK):
            skip("grpc_python_plugin (protobuf-compiler-grpc) is not installed")
        if shutil.which("protoc") is None or shutil.which("openssl") is None:
            skip("protoc or openssl is not installed")
        self.build = os.path.abspath(build)
        self.source = os.path.abspath(source)
        self.server_bin = os.environ.get(
            "TAPWIRE_CONTROLPLANE", os.path.join(self.build, "controlplane", "tapwire-controlplane"))
        self.sign_bin = os.path.join(self.build, "tools", "tapwire-sign")
        self.audit_verify_bin = os.path.join(self.build, "tools", "tapwire-audit-verify")
        for exe in (self.server_bin, self.sign_bin, self.audit_verify_bin):
            if not os.access(exe, os.X_OK):
                print(f"FAIL: {exe} not built")
                sys.exit(1)
        self.tmp = tempfile.mkdtemp(prefix=prefix)

        stubs = os.path.join(self.tmp, "stubs")
        os.makedirs(stubs)
        proto_dir = os.path.join(self.source, "proto")
        v1 = os.path.join(proto_dir, "tapwire", "v1")
        protos = sorted(os.path.join(v1, f) for f in os.listdir(v1) if f.endswith(".proto"))
        subprocess.run(["protoc", "-I", proto_dir, f"--python_out={stubs}",
                        f"--grpc_python_out={stubs}", f"--plugin=protoc-gen-grpc_python={PLUGIN}",
                        *protos], check=True)
        sys.path.insert(0, stubs)

        self.pki = os.path.join(self.tmp, "pki")
        subprocess.run(["sh", os.path.join(self.source, "tests", "integration", "make_test_pki.sh"),
                        self.pki], check=True, capture_output=True)
        self.keys = os.path.join(self.tmp, "authority-keys")
        os.makedirs(self.keys)
        self.authority_key = os.path.join(self.tmp, "authority.key")
        subprocess.run([self.sign_bin, "--gen-key", self.authority_key,
                        os.path.join(self.keys, "court-1.pem")], check=True)
        self.audit_key = os.path.join(self.tmp, "audit.key")
        self.audit_pub = os.path.join(self.tmp, "audit.pub")
        subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", self.audit_key],
                       check=True)
        subprocess.run(["openssl", "pkey", "-in", self.audit_key, "-pubout", "-out",
                        self.audit_pub], check=True)
        self.state_dir = os.path.join(self.tmp, "state")

    def cleanup(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    # ---- clients ------------------------------------------------------------------------

    def channel(self, port, role):
        import grpc
        creds = grpc.ssl_channel_credentials(
            root_certificates=read(os.path.join(self.pki, "ca.pem")),
            private_key=read(os.path.join(self.pki, f"{role}.key")),
            certificate_chain=read(os.path.join(self.pki, f"{role}.pem")))
        return grpc.secure_channel(f"127.0.0.1:{port}", creds,
                                   options=[("grpc.ssl_target_name_override", "localhost")])

    def warrant(self, xid, targets, liid="LI-0042", destination="lemf-1", start_in_s=-60,
                duration_s=24 * 3600, content=True, kind=None):
        """An unsigned tapwire.v1.Warrant; targets: [(IdentityType, value)]."""
        from tapwire.v1 import controlplane_pb2 as pb
        now = int(time.time())
        w = pb.Warrant(xid=xid, liid=liid, destination_ids=[destination],
                       delivery_type=pb.DELIVERY_TYPE_IRI_AND_CC if content
                       else pb.DELIVERY_TYPE_IRI_ONLY)
        for t, v in targets:
            w.targets.add(type=t, value=v)
        w.valid_from.seconds = now + start_in_s
        w.valid_until.seconds = now + start_in_s + duration_s
        w.legal.issuing_authority = "Amtsgericht Test"
        w.legal.reference = "AZ 123/26"
        w.legal.jurisdiction = "DE"
        w.legal.kind = kind if kind is not None else pb.WARRANT_KIND_COURT_ORDER
        return w

    def signed(self, w, key=None, key_id="court-1"):
        from google.protobuf import text_format
        from tapwire.v1 import controlplane_pb2 as pb
        out = subprocess.run([self.sign_bin, "--key", key or self.authority_key, "--key-id",
                              key_id, "-"], input=text_format.MessageToString(w).encode(),
                             capture_output=True, check=True)
        return text_format.Parse(out.stdout.decode(), pb.Warrant())


class Server:
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
             "--tls-cert", os.path.join(env.pki, "server.pem"),
             "--tls-key", os.path.join(env.pki, "server.key"),
             "--client-ca", os.path.join(env.pki, "ca.pem"),
             "--authority-keys", env.keys, "--roles", os.path.join(env.pki, "roles"),
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

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                return self.proc.wait()
        return self.proc.returncode if self.proc else None


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

    def check(self, name, fn):
        try:
            fn()
            self.passed += 1
            print(f"PASS {name}", flush=True)
        except Exception as e:  # noqa: BLE001 - a failed check is reported, the rest go on
            self.failed += 1
            print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)

    def summary(self):
        print(f"{self.passed} passed, {self.failed} failed")
        sys.exit(1 if self.failed else 0)
