#!/usr/bin/python3
"""tapwire-controlplane over real gRPC with mutual TLS, driven by a Python client.

The client stubs are generated at test time from the same .proto files as the server (so a
non-C++ orchestrator demonstrably works). A test CA, a server certificate and one client
certificate per role are made with the openssl CLI (make_test_pki.sh); an issuing authority
key with tapwire-sign --gen-key. Then: destinations and warrants as the provisioner
(idempotent repeat, ALREADY_EXISTS), role enforcement, no or foreign client certificate,
bad signature, field-naming validation errors, kill -9 and restart, and finally the audit
trail verified with tapwire-audit-verify and checked for the activation and the refusals
(and for the absence of target identities).

Usage: controlplane_grpc.py BUILD_DIR SOURCE_DIR   (exit 77 = skipped: no python3-grpcio or
grpc_python_plugin). TAPWIRE_CONTROLPLANE overrides the server binary's path.
"""
import datetime
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid

SKIP = 77


def skip(reason):
    print(f"SKIP: {reason}")
    sys.exit(SKIP)


try:
    import grpc  # python3-grpcio (Debian)
except ImportError:
    skip("python3-grpcio is not installed")
PLUGIN = "/usr/bin/grpc_python_plugin"
if not os.access(PLUGIN, os.X_OK):
    skip("grpc_python_plugin (protobuf-compiler-grpc) is not installed")
if shutil.which("protoc") is None or shutil.which("openssl") is None:
    skip("protoc or openssl is not installed")

if len(sys.argv) != 3:
    print(__doc__)
    sys.exit(2)
BUILD = os.path.abspath(sys.argv[1])
SOURCE = os.path.abspath(sys.argv[2])
SERVER = os.environ.get("TAPWIRE_CONTROLPLANE",
                        os.path.join(BUILD, "controlplane", "tapwire-controlplane"))
SIGN = os.path.join(BUILD, "tools", "tapwire-sign")
AUDIT_VERIFY = os.path.join(BUILD, "tools", "tapwire-audit-verify")
for exe in (SERVER, SIGN, AUDIT_VERIFY):
    if not os.access(exe, os.X_OK):
        print(f"FAIL: {exe} not built")
        sys.exit(1)

TMP = tempfile.mkdtemp(prefix="tapwire-cp-")
STUBS = os.path.join(TMP, "stubs")
os.makedirs(STUBS)
proto_dir = os.path.join(SOURCE, "proto")
protos = sorted(os.path.join(proto_dir, "tapwire", "v1", f)
                for f in os.listdir(os.path.join(proto_dir, "tapwire", "v1")) if f.endswith(".proto"))
subprocess.run(["protoc", "-I", proto_dir, f"--python_out={STUBS}", f"--grpc_python_out={STUBS}",
                f"--plugin=protoc-gen-grpc_python={PLUGIN}", *protos], check=True)
sys.path.insert(0, STUBS)
from tapwire.v1 import controlplane_pb2 as pb  # noqa: E402
from tapwire.v1 import controlplane_pb2_grpc as pb_grpc  # noqa: E402
from tapwire.v1 import identity_pb2 as idpb  # noqa: E402
from google.protobuf import text_format  # noqa: E402

PKI = os.path.join(TMP, "pki")
subprocess.run(["sh", os.path.join(SOURCE, "tests", "integration", "make_test_pki.sh"), PKI],
               check=True)
KEYS = os.path.join(TMP, "authority-keys")
os.makedirs(KEYS)
AUTH_PRIV = os.path.join(TMP, "authority.key")
subprocess.run([SIGN, "--gen-key", AUTH_PRIV, os.path.join(KEYS, "court-1.pem")], check=True)
OTHER_PRIV = os.path.join(TMP, "other.key")  # a key the appliance does not trust
subprocess.run([SIGN, "--gen-key", OTHER_PRIV, os.path.join(TMP, "other.pub")], check=True)
AUDIT_KEY = os.path.join(TMP, "audit.key")
AUDIT_PUB = os.path.join(TMP, "audit.pub")
subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", AUDIT_KEY], check=True)
subprocess.run(["openssl", "pkey", "-in", AUDIT_KEY, "-pubout", "-out", AUDIT_PUB], check=True)
STATE = os.path.join(TMP, "state")
SERVER_LOG = os.path.join(TMP, "server.log")

# Target identities used below: none of them may show up in the audit trail or server log.
TARGET_SIP = "sip:alice.target@example.test"
TARGET_E164 = "+4930555012345"


def read(path):
    with open(path, "rb") as f:
        return f.read()


class Server:
    def __init__(self):
        self.proc = None
        self.port = None

    def start(self):
        log = open(SERVER_LOG, "ab")
        self.proc = subprocess.Popen(
            [SERVER, "--listen", "127.0.0.1:0", "--state-dir", STATE,
             "--tls-cert", os.path.join(PKI, "server.pem"),
             "--tls-key", os.path.join(PKI, "server.key"),
             "--client-ca", os.path.join(PKI, "ca.pem"),
             "--authority-keys", KEYS, "--roles", os.path.join(PKI, "roles"),
             "--audit-key", AUDIT_KEY],
            stdout=subprocess.PIPE, stderr=log)
        deadline = time.time() + 20
        line = b""
        while time.time() < deadline and b"\n" not in line:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.5)
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    break
                line += chunk
        text = line.decode(errors="replace")
        if "(port " not in text:
            raise RuntimeError(f"server did not start: {text!r}; log: {read(SERVER_LOG)[-2000:]!r}")
        self.port = int(text.split("(port ")[1].split(",")[0])

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


def channel(server, role=None, cert=None):
    ca = read(os.path.join(PKI, "ca.pem"))
    if role is None and cert is None:
        creds = grpc.ssl_channel_credentials(root_certificates=ca)
    else:
        name = cert or role
        creds = grpc.ssl_channel_credentials(
            root_certificates=ca, private_key=read(os.path.join(PKI, f"{name}.key")),
            certificate_chain=read(os.path.join(PKI, f"{name}.pem")))
    return grpc.secure_channel(f"127.0.0.1:{server.port}", creds,
                               options=[("grpc.ssl_target_name_override", "localhost")])


def stubs(server, role=None, cert=None):
    ch = channel(server, role, cert)
    return pb_grpc.WarrantsStub(ch), pb_grpc.DestinationsStub(ch), ch


def code_of(fn, *args):
    try:
        fn(*args, timeout=10)
    except grpc.RpcError as e:
        return e.code(), e.details()
    return grpc.StatusCode.OK, ""


def warrant_text(xid, targets, destination="lemf-1", liid="LI-0042", hours=24):
    now = int(time.time())
    w = pb.Warrant(xid=xid, liid=liid, delivery_type=pb.DELIVERY_TYPE_IRI_AND_CC,
                   destination_ids=[destination])
    for t, v in targets:
        w.targets.add(type=t, value=v)
    w.valid_from.seconds = now - 60
    w.valid_until.seconds = now + hours * 3600
    w.legal.issuing_authority = "Amtsgericht Test"
    w.legal.reference = "AZ 123/26"
    w.legal.jurisdiction = "DE"
    w.legal.kind = pb.WARRANT_KIND_COURT_ORDER
    return w


def signed(w, key=AUTH_PRIV, key_id="court-1"):
    out = subprocess.run([SIGN, "--key", key, "--key-id", key_id, "-"],
                         input=text_format.MessageToString(w).encode(), capture_output=True,
                         check=True)
    return text_format.Parse(out.stdout.decode(), pb.Warrant())


passed = failed = 0


def check(name, fn):
    global passed, failed
    try:
        fn()
        passed += 1
        print(f"PASS {name}")
    except Exception as e:  # noqa: BLE001 - a failed check is reported, the rest go on
        failed += 1
        print(f"FAIL {name}: {type(e).__name__}: {e}")


def expect(cond, what):
    if not cond:
        raise AssertionError(what)


server = Server()
XID = str(uuid.uuid4())
XID2 = str(uuid.uuid4())
state = {}


def t_health_reflection():
    _, _, ch = stubs(server, "provisioner")
    # grpc.health.v1.Health/Check with an empty HealthCheckRequest: the reply is
    # HealthCheckResponse{status: SERVING (1)} = bytes 08 01.
    check_rpc = ch.unary_unary("/grpc.health.v1.Health/Check")
    reply = check_rpc(b"", timeout=10)
    expect(reply == b"\x08\x01", f"health reply {reply!r}")
    # Server reflection: ServerReflectionRequest{list_services: ""} (field 7).
    refl = ch.stream_stream("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo")
    replies = list(refl(iter([b"\x3a\x00"]), timeout=10))
    expect(replies and b"tapwire.v1.Warrants" in replies[0]
           and b"tapwire.v1.Destinations" in replies[0], f"reflection reply {replies!r}")


def t_destinations():
    _, dst, _ = stubs(server, "provisioner")
    d = pb.Destination(id="lemf-1", address="192.0.2.10", port=6000,
                       format=pb.HANDOVER_FORMAT_ETSI_102232)
    reply = dst.Create(pb.CreateDestinationRequest(destination=d), timeout=10)
    expect(reply.destination.id == "lemf-1", "created")
    reply = dst.Create(pb.CreateDestinationRequest(destination=d), timeout=10)  # repeat
    expect(reply.destination == d, "identical repeat")
    code, msg = code_of(dst.Create, pb.CreateDestinationRequest(
        destination=pb.Destination(id="lemf-2", address="192.0.2.11", port=0,
                                   format=pb.HANDOVER_FORMAT_ETSI_102232)))
    expect(code == grpc.StatusCode.INVALID_ARGUMENT and "destination.port" in msg, (code, msg))
    listed = dst.List(pb.ListDestinationsRequest(), timeout=10)
    expect([x.id for x in listed.destinations] == ["lemf-1"], listed)


def t_activate():
    war, _, _ = stubs(server, "provisioner")
    w = signed(warrant_text(XID, [(idpb.IDENTITY_TYPE_SIP_URI, TARGET_SIP),
                                  (idpb.IDENTITY_TYPE_E164, TARGET_E164)]))
    state["w"] = w
    reply = war.Activate(pb.ActivateWarrantRequest(warrant=w), timeout=10)
    expect(reply.status.state == pb.WARRANT_STATE_ACTIVE, reply.status)
    expect(reply.status.version == 1 and reply.status.warrant == w, reply.status)
    state["first"] = reply.status


def t_idempotent():
    war, _, _ = stubs(server, "provisioner")
    reply = war.Activate(pb.ActivateWarrantRequest(warrant=state["w"]), timeout=10)
    expect(reply.status == state["first"], f"repeat differs: {reply.status}")
    other = signed(warrant_text(XID, [(idpb.IDENTITY_TYPE_E164, TARGET_E164)]))
    code, msg = code_of(war.Activate, pb.ActivateWarrantRequest(warrant=other))
    expect(code == grpc.StatusCode.ALREADY_EXISTS, (code, msg))


def t_list_get():
    war, _, _ = stubs(server, "provisioner")
    listed = war.List(pb.ListWarrantsRequest(), timeout=10)
    expect([s.warrant.xid for s in listed.warrants] == [XID], listed)
    got = war.Get(pb.GetWarrantRequest(xid=XID), timeout=10)
    expect(got.warrant.xid == XID, got)
    code, _ = code_of(war.Get, pb.GetWarrantRequest(xid=str(uuid.uuid4())))
    expect(code == grpc.StatusCode.NOT_FOUND, code)
    # The auditor may read but not write.
    aud, aud_dst, _ = stubs(server, "auditor")
    expect(len(aud.List(pb.ListWarrantsRequest(), timeout=10).warrants) == 1, "auditor list")
    code, _ = code_of(aud.Activate, pb.ActivateWarrantRequest(warrant=state["w"]))
    expect(code == grpc.StatusCode.PERMISSION_DENIED, f"auditor activate: {code}")
    code, _ = code_of(aud_dst.Remove, pb.RemoveDestinationRequest(id="lemf-1"))
    expect(code == grpc.StatusCode.PERMISSION_DENIED, f"auditor remove: {code}")


def t_operator_denied():
    war, dst, _ = stubs(server, "operator")
    for fn, req in ((war.List, pb.ListWarrantsRequest()),
                    (war.Activate, pb.ActivateWarrantRequest(warrant=state["w"])),
                    (dst.List, pb.ListDestinationsRequest())):
        code, msg = code_of(fn, req)
        expect(code == grpc.StatusCode.PERMISSION_DENIED and "operator" in msg, (code, msg))


def t_no_client_cert():
    war, _, _ = stubs(server)  # no client certificate: the handshake fails
    code, _ = code_of(war.List, pb.ListWarrantsRequest())
    expect(code == grpc.StatusCode.UNAVAILABLE, f"no cert: {code}")
    war, _, _ = stubs(server, cert="rogue")  # right CN, foreign CA
    code, _ = code_of(war.List, pb.ListWarrantsRequest())
    expect(code == grpc.StatusCode.UNAVAILABLE, f"rogue cert: {code}")


def t_bad_signature():
    war, _, _ = stubs(server, "provisioner")
    w = signed(warrant_text(XID2, [(idpb.IDENTITY_TYPE_E164, TARGET_E164)]))
    tampered = pb.Warrant()
    tampered.CopyFrom(w)
    tampered.liid = "LI-0043"  # changed after signing
    code, msg = code_of(war.Activate, pb.ActivateWarrantRequest(warrant=tampered))
    expect(code == grpc.StatusCode.PERMISSION_DENIED and msg.startswith("signature:"), (code, msg))
    foreign = signed(warrant_text(XID2, [(idpb.IDENTITY_TYPE_E164, TARGET_E164)]),
                     key=OTHER_PRIV)  # claims court-1, signed by another key
    code, msg = code_of(war.Activate, pb.ActivateWarrantRequest(warrant=foreign))
    expect(code == grpc.StatusCode.PERMISSION_DENIED and msg.startswith("signature:"), (code, msg))
    unsigned = warrant_text(XID2, [(idpb.IDENTITY_TYPE_E164, TARGET_E164)])
    code, msg = code_of(war.Activate, pb.ActivateWarrantRequest(warrant=unsigned))
    expect(code == grpc.StatusCode.PERMISSION_DENIED, (code, msg))
    code, _ = code_of(war.Get, pb.GetWarrantRequest(xid=XID2))
    expect(code == grpc.StatusCode.NOT_FOUND, "refused warrant was stored")


def t_invalid():
    war, _, _ = stubs(server, "provisioner")
    w = signed(warrant_text(XID2, [(idpb.IDENTITY_TYPE_E164, TARGET_E164),
                                   (idpb.IDENTITY_TYPE_SIP_URI, "not a uri")]))
    code, msg = code_of(war.Activate, pb.ActivateWarrantRequest(warrant=w))
    expect(code == grpc.StatusCode.INVALID_ARGUMENT and msg.startswith("targets[1]"), (code, msg))
    expect("not a uri" not in msg and TARGET_E164 not in msg, f"target value in message: {msg}")
    w = signed(warrant_text(XID2, [(idpb.IDENTITY_TYPE_E164, TARGET_E164)], destination="nowhere"))
    code, msg = code_of(war.Activate, pb.ActivateWarrantRequest(warrant=w))
    expect(code == grpc.StatusCode.FAILED_PRECONDITION and msg.startswith("destination_ids[0]"),
           (code, msg))
    code, msg = code_of(war.Deactivate, pb.DeactivateWarrantRequest(xid="x", reason="r"))
    expect(code == grpc.StatusCode.INVALID_ARGUMENT and msg.startswith("xid"), (code, msg))


def t_deactivate():
    war, dst, _ = stubs(server, "provisioner")
    w = signed(warrant_text(XID2, [(idpb.IDENTITY_TYPE_E164, TARGET_E164)]))
    reply = war.Activate(pb.ActivateWarrantRequest(warrant=w), timeout=10)
    expect(reply.status.state == pb.WARRANT_STATE_ACTIVE, reply)
    code, msg = code_of(dst.Remove, pb.RemoveDestinationRequest(id="lemf-1"))
    expect(code == grpc.StatusCode.FAILED_PRECONDITION, (code, msg))
    reply = war.Deactivate(pb.DeactivateWarrantRequest(xid=XID2, reason="order revoked"),
                           timeout=10)
    expect(reply.status.state == pb.WARRANT_STATE_DEACTIVATED, reply)
    active = war.List(pb.ListWarrantsRequest(states=[pb.WARRANT_STATE_ACTIVE]), timeout=10)
    expect([s.warrant.xid for s in active.warrants] == [XID], active)


def t_restart():
    server.kill9()
    server.start()
    war, _, _ = stubs(server, "provisioner")
    listed = war.List(pb.ListWarrantsRequest(), timeout=10)
    by_xid = {s.warrant.xid: s for s in listed.warrants}
    expect(set(by_xid) == {XID, XID2}, listed)
    expect(by_xid[XID].state == pb.WARRANT_STATE_ACTIVE and by_xid[XID].warrant == state["w"],
           by_xid[XID])
    expect(by_xid[XID2].state == pb.WARRANT_STATE_DEACTIVATED, by_xid[XID2])


def t_audit():
    rc = server.stop()
    expect(rc == 0, f"server exit status {rc}")
    log = os.path.join(STATE, "audit.log")
    out = subprocess.run([AUDIT_VERIFY, "--log", log, "--public-key", AUDIT_PUB],
                         capture_output=True, text=True)
    expect(out.returncode == 0, f"audit verify: {out.stdout} {out.stderr}")
    raw = read(log)
    records = [json.loads(line) for line in raw.decode().splitlines()]

    def has(action, result, actor=None, subject=None):
        return any(r["action"] == action and r["result"] == result
                   and (actor is None or r["actor"] == actor)
                   and (subject is None or r["subject"] == subject) for r in records)

    prov = "CN=test-provisioner"
    expect(has("warrant_activate", "ok", prov, f"xid:{XID}"), "activation")
    expect(has("warrant_activate", "ALREADY_EXISTS", prov), "already exists")
    expect(has("warrant_activate", "INVALID_ARGUMENT", prov), "invalid argument")
    expect(has("warrant_activate", "FAILED_PRECONDITION", prov), "failed precondition")
    expect(has("signature_rejected", "PERMISSION_DENIED", prov, f"xid:{XID2}"), "bad signature")
    expect(has("permission_denied", "PERMISSION_DENIED", "CN=test-operator"), "operator refused")
    expect(has("permission_denied", "PERMISSION_DENIED", "CN=test-auditor"), "auditor refused")
    expect(has("warrant_list", "ok", "CN=test-auditor"), "auditor query")
    expect(has("warrant_deactivate", "ok", prov, f"xid:{XID2}"), "deactivation")
    expect(has("destination_create", "ok", prov, "destination:lemf-1"), "destination")
    expect(has("warrant_get", "NOT_FOUND", prov), "query refused")
    for secret in (TARGET_SIP, TARGET_E164, "alice.target", "not a uri"):
        expect(secret.encode() not in raw, f"target identity in the audit trail: {secret}")
        expect(secret.encode() not in read(SERVER_LOG), f"target identity in the log: {secret}")


try:
    server.start()
    for name, fn in (("health service and reflection", t_health_reflection),
                     ("destinations create/list/validate", t_destinations),
                     ("activate a signed warrant", t_activate),
                     ("idempotent repeat, ALREADY_EXISTS", t_idempotent),
                     ("list/get, auditor read-only", t_list_get),
                     ("operator PERMISSION_DENIED", t_operator_denied),
                     ("no or foreign client certificate", t_no_client_cert),
                     ("bad signature PERMISSION_DENIED", t_bad_signature),
                     ("validation names the field", t_invalid),
                     ("deactivate", t_deactivate),
                     ("kill -9 and restart", t_restart),
                     ("audit trail verified and complete", t_audit)):
        check(name, fn)
finally:
    server.stop()
    if failed == 0:
        shutil.rmtree(TMP, ignore_errors=True)
    else:
        print(f"kept {TMP} for inspection")
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
