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
import os
import queue
import subprocess
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import audit_records, code_of, expect, read  # noqa: E402

if len(sys.argv) != 3:
    print(__doc__)
    sys.exit(2)
env = harness.Environment(sys.argv[1], sys.argv[2], prefix="tapwire-cp-")

import grpc  # noqa: E402
from google.protobuf import text_format  # noqa: E402
from tapwire.v1 import controlplane_pb2 as pb  # noqa: E402
from tapwire.v1 import controlplane_pb2_grpc as pb_grpc  # noqa: E402
from tapwire.v1 import identity_pb2 as idpb  # noqa: E402

OTHER_PRIV = env.untrusted_key()  # claims to be court-1's, but the appliance does not trust it
warrant = env.warrant
signed = env.signed

# Target identities used below: none of them may show up in the audit trail or server log.
TARGET_SIP = "sip:alice.target@example.test"
TARGET_E164 = "+4930555012345"

server = harness.Server(env)
checks = harness.Checks()


def stubs(role=None, cert=None):
    ch = env.channel(server.port, role, cert)
    return pb_grpc.WarrantsStub(ch), pb_grpc.DestinationsStub(ch), ch


# Channels that later checks open: closed before the server stops, because a client
# connection left idle holds up grpc::Server::Shutdown() by seconds, stream or not.
open_channels = []


def tracked_channel(role):
    ch = env.channel(server.port, role)
    open_channels.append(ch)
    return ch


def close_channels():
    while open_channels:
        open_channels.pop().close()


def start_if_stopped():
    if server.proc is None or server.proc.poll() is not None:
        server.start()


def stopped_audit_trail():
    """Stops the server (it must exit 0) and verifies its audit trail: (bytes, records)."""
    close_channels()
    rc = server.stop()
    expect(rc == 0, f"server exit status {rc}")
    out = env.verify_audit()
    expect(out.returncode == 0, f"audit verify: {out.stdout} {out.stderr}")
    raw = read(env.audit_log)
    return raw, audit_records(raw)


def expect_no_target(raw, secrets):
    """None of the target identities in the audit trail (raw) or the server's log."""
    for secret in secrets:
        expect(secret.encode() not in raw, f"target identity in the audit trail: {secret}")
        expect(secret not in server.log(), f"target identity in the log: {secret}")


def matching(records, action, result, actor=None, subject=None, method=None):
    """The audit records of that action and result (and actor, subject, method if given)."""
    return [r for r in records if r["action"] == action and r["result"] == result
            and (actor is None or r["actor"] == actor)
            and (subject is None or r["subject"] == subject)
            and (method is None or r["details"].get("method") == method)]


XID = str(uuid.uuid4())
XID2 = str(uuid.uuid4())
state = {}


def t_health_reflection():
    _, _, ch = stubs("provisioner")
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
    _, dst, _ = stubs("provisioner")
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
    war, _, _ = stubs("provisioner")
    w = signed(warrant(XID, [(idpb.IDENTITY_TYPE_SIP_URI, TARGET_SIP),
                             (idpb.IDENTITY_TYPE_E164, TARGET_E164)]))
    state["w"] = w
    reply = war.Activate(pb.ActivateWarrantRequest(warrant=w), timeout=10)
    expect(reply.status.state == pb.WARRANT_STATE_ACTIVE, reply.status)
    expect(reply.status.version == 1 and reply.status.warrant == w, reply.status)
    state["first"] = reply.status


def t_idempotent():
    war, _, _ = stubs("provisioner")
    reply = war.Activate(pb.ActivateWarrantRequest(warrant=state["w"]), timeout=10)
    expect(reply.status == state["first"], f"repeat differs: {reply.status}")
    other = signed(warrant(XID, [(idpb.IDENTITY_TYPE_E164, TARGET_E164)]))
    code, msg = code_of(war.Activate, pb.ActivateWarrantRequest(warrant=other))
    expect(code == grpc.StatusCode.ALREADY_EXISTS, (code, msg))


def t_list_get():
    war, _, _ = stubs("provisioner")
    listed = war.List(pb.ListWarrantsRequest(), timeout=10)
    expect([s.warrant.xid for s in listed.warrants] == [XID], listed)
    got = war.Get(pb.GetWarrantRequest(xid=XID), timeout=10)
    expect(got.warrant.xid == XID, got)
    code, _ = code_of(war.Get, pb.GetWarrantRequest(xid=str(uuid.uuid4())))
    expect(code == grpc.StatusCode.NOT_FOUND, code)
    # The auditor may read but not write.
    aud, aud_dst, _ = stubs("auditor")
    expect(len(aud.List(pb.ListWarrantsRequest(), timeout=10).warrants) == 1, "auditor list")
    code, _ = code_of(aud.Activate, pb.ActivateWarrantRequest(warrant=state["w"]))
    expect(code == grpc.StatusCode.PERMISSION_DENIED, f"auditor activate: {code}")
    code, _ = code_of(aud_dst.Remove, pb.RemoveDestinationRequest(id="lemf-1"))
    expect(code == grpc.StatusCode.PERMISSION_DENIED, f"auditor remove: {code}")


def t_operator_denied():
    war, dst, _ = stubs("operator")
    for fn, req in ((war.List, pb.ListWarrantsRequest()),
                    (war.Activate, pb.ActivateWarrantRequest(warrant=state["w"])),
                    (dst.List, pb.ListDestinationsRequest())):
        code, msg = code_of(fn, req)
        expect(code == grpc.StatusCode.PERMISSION_DENIED and "operator" in msg, (code, msg))


def t_no_client_cert():
    war, _, _ = stubs()  # no client certificate: the handshake fails
    code, _ = code_of(war.List, pb.ListWarrantsRequest())
    expect(code == grpc.StatusCode.UNAVAILABLE, f"no cert: {code}")
    war, _, _ = stubs(cert="rogue")  # right CN, foreign CA
    code, _ = code_of(war.List, pb.ListWarrantsRequest())
    expect(code == grpc.StatusCode.UNAVAILABLE, f"rogue cert: {code}")


def t_bad_signature():
    war, _, _ = stubs("provisioner")
    w = signed(warrant(XID2, [(idpb.IDENTITY_TYPE_E164, TARGET_E164)]))
    tampered = pb.Warrant()
    tampered.CopyFrom(w)
    tampered.liid = "LI-0043"  # changed after signing
    code, msg = code_of(war.Activate, pb.ActivateWarrantRequest(warrant=tampered))
    expect(code == grpc.StatusCode.PERMISSION_DENIED and msg.startswith("signature:"), (code, msg))
    foreign = signed(warrant(XID2, [(idpb.IDENTITY_TYPE_E164, TARGET_E164)]),
                     key=OTHER_PRIV)  # claims court-1, signed by another key
    code, msg = code_of(war.Activate, pb.ActivateWarrantRequest(warrant=foreign))
    expect(code == grpc.StatusCode.PERMISSION_DENIED and msg.startswith("signature:"), (code, msg))
    unsigned = warrant(XID2, [(idpb.IDENTITY_TYPE_E164, TARGET_E164)])
    code, msg = code_of(war.Activate, pb.ActivateWarrantRequest(warrant=unsigned))
    expect(code == grpc.StatusCode.PERMISSION_DENIED, (code, msg))
    code, _ = code_of(war.Get, pb.GetWarrantRequest(xid=XID2))
    expect(code == grpc.StatusCode.NOT_FOUND, "refused warrant was stored")


def t_invalid():
    war, _, _ = stubs("provisioner")
    w = signed(warrant(XID2, [(idpb.IDENTITY_TYPE_E164, TARGET_E164),
                              (idpb.IDENTITY_TYPE_SIP_URI, "not a uri")]))
    code, msg = code_of(war.Activate, pb.ActivateWarrantRequest(warrant=w))
    expect(code == grpc.StatusCode.INVALID_ARGUMENT and msg.startswith("targets[1]"), (code, msg))
    expect("not a uri" not in msg and TARGET_E164 not in msg, f"target value in message: {msg}")
    w = signed(warrant(XID2, [(idpb.IDENTITY_TYPE_E164, TARGET_E164)], destination="nowhere"))
    code, msg = code_of(war.Activate, pb.ActivateWarrantRequest(warrant=w))
    expect(code == grpc.StatusCode.FAILED_PRECONDITION and msg.startswith("destination_ids[0]"),
           (code, msg))
    code, msg = code_of(war.Deactivate, pb.DeactivateWarrantRequest(xid="x", reason="r"))
    expect(code == grpc.StatusCode.INVALID_ARGUMENT and msg.startswith("xid"), (code, msg))


def t_deactivate():
    war, dst, _ = stubs("provisioner")
    w = signed(warrant(XID2, [(idpb.IDENTITY_TYPE_E164, TARGET_E164)]))
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
    war, _, _ = stubs("provisioner")
    listed = war.List(pb.ListWarrantsRequest(), timeout=10)
    by_xid = {s.warrant.xid: s for s in listed.warrants}
    expect(set(by_xid) == {XID, XID2}, listed)
    expect(by_xid[XID].state == pb.WARRANT_STATE_ACTIVE and by_xid[XID].warrant == state["w"],
           by_xid[XID])
    expect(by_xid[XID2].state == pb.WARRANT_STATE_DEACTIVATED, by_xid[XID2])


def t_audit():
    raw, records = stopped_audit_trail()

    def has(action, result, actor=None, subject=None):
        return matching(records, action, result, actor, subject)

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
    expect_no_target(raw, (TARGET_SIP, TARGET_E164, "alice.target", "not a uri"))


# ---------------------------------------------------------------------------------------
# Appliance (status, event feed) and Audit (export), on a server restarted after the checks
# above: roles, warrant counts, an event for a new warrant, the exported trail verified,
# and a prompt shutdown with an event stream open. Run by appliance_audit_checks().
XID3 = str(uuid.uuid4())
TARGET_E164_3 = "+4930555077777"


def appliance_stubs(role):
    ch = tracked_channel(role)
    return pb_grpc.ApplianceStub(ch), pb_grpc.AuditStub(ch), ch


def tracked_warrants(role="provisioner"):
    return pb_grpc.WarrantsStub(tracked_channel(role))


def stream_code(call):
    """Drains a server stream; its final status code and message."""
    try:
        for _ in call:
            pass
    except grpc.RpcError as e:
        return e.code(), e.details()
    return grpc.StatusCode.OK, ""


def t_status_operator():
    app, _, _ = appliance_stubs("operator")
    st = app.GetStatus(pb.GetStatusRequest(), timeout=10)
    war = tracked_warrants()
    active = war.List(pb.ListWarrantsRequest(states=[pb.WARRANT_STATE_ACTIVE]), timeout=10)
    pending = war.List(pb.ListWarrantsRequest(states=[pb.WARRANT_STATE_PENDING]), timeout=10)
    expect(len(active.warrants) >= 1, f"no active warrant to count: {active}")
    expect(st.active_warrants == len(active.warrants), st)
    expect(st.pending_warrants == len(pending.warrants), st)
    expect(not st.dataplane_attached and st.dataplane_detail, st)
    expect(abs(st.now.seconds - time.time()) < 60, st.now)
    st = appliance_stubs("provisioner")[0].GetStatus(pb.GetStatusRequest(), timeout=10)
    expect(st.active_warrants == len(active.warrants), st)


def t_status_auditor_denied():
    app, _, _ = appliance_stubs("auditor")
    code, msg = code_of(app.GetStatus, pb.GetStatusRequest())
    expect(code == grpc.StatusCode.PERMISSION_DENIED and "auditor" in msg, (code, msg))
    code, msg = stream_code(app.WatchEvents(pb.WatchEventsRequest(), timeout=10))
    expect(code == grpc.StatusCode.PERMISSION_DENIED, (code, msg))


def t_export_denied():
    for role in ("operator", "provisioner"):
        _, aud, _ = appliance_stubs(role)
        code, msg = stream_code(aud.Export(pb.ExportAuditRequest(), timeout=10))
        expect(code == grpc.StatusCode.PERMISSION_DENIED and role in msg, (role, code, msg))


def t_watch_events():
    app, _, _ = appliance_stubs("operator")
    call = app.WatchEvents(pb.WatchEventsRequest(), timeout=60)
    call.initial_metadata()  # sent once the server's subscription is in place
    got = queue.Queue()

    def reader():
        try:
            for ev in call:
                got.put(ev)
        except grpc.RpcError as e:
            got.put(e)

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    war = tracked_warrants()
    w = signed(warrant(XID3, [(idpb.IDENTITY_TYPE_E164, TARGET_E164_3)], liid="LI-0077"))
    reply = war.Activate(pb.ActivateWarrantRequest(warrant=w), timeout=10)
    expect(reply.status.state == pb.WARRANT_STATE_ACTIVE, reply.status)
    seen, ended = [], None
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            ev = got.get(timeout=max(0.01, deadline - time.time()))
        except queue.Empty:
            break
        if isinstance(ev, Exception):
            ended = ev
            break
        seen.append(ev)
        if ev.kind == pb.EVENT_WARRANT_ACCEPTED and ev.xid == XID3:
            break
    call.cancel()
    t.join(5)
    expect(ended is None, f"event stream ended: {ended}")
    accepted = [e for e in seen if e.kind == pb.EVENT_WARRANT_ACCEPTED and e.xid == XID3]
    expect(accepted, f"no EVENT_WARRANT_ACCEPTED for {XID3} within 10 s; got {seen}")
    ev = accepted[0]
    expect(ev.liid == "LI-0077" and ev.sequence > 0 and ev.time.seconds > 0, ev)
    expect(TARGET_E164_3.encode() not in ev.SerializeToString(), "target identity in an event")
    seqs = [e.sequence for e in seen]
    expect(seqs == sorted(set(seqs)), f"sequence numbers not increasing: {seqs}")


def t_export():
    _, aud, _ = appliance_stubs("auditor")
    chunks = [c.data for c in aud.Export(pb.ExportAuditRequest(), timeout=30)]
    data = b"".join(chunks)
    expect(chunks and all(len(c) <= 64 * 1024 for c in chunks), [len(c) for c in chunks])
    path = os.path.join(env.tmp, "exported-audit.log")
    with open(path, "wb") as f:
        f.write(data)
    out = env.verify_audit(path)
    expect(out.returncode == 0, f"exported trail: {out.stdout} {out.stderr}")
    live = read(env.audit_log)
    expect(data.endswith(b"\n") and live.startswith(data), "export is not a prefix of the trail")
    records = audit_records(data)

    def has(action, result, actor, method=None):
        return matching(records, action, result, actor, method=method)

    expect(has("status_query", "ok", "CN=test-operator", "Appliance.GetStatus"), "status query")
    expect(has("permission_denied", "PERMISSION_DENIED", "CN=test-auditor",
               "Appliance.GetStatus"), "auditor status refused")
    expect(has("permission_denied", "PERMISSION_DENIED", "CN=test-operator", "Audit.Export"),
           "operator export refused")
    expect(has("event_subscribe", "ok", "CN=test-operator", "Appliance.WatchEvents"),
           "event subscription")
    for secret in (TARGET_SIP, TARGET_E164, TARGET_E164_3):
        expect(secret.encode() not in data, f"target identity in the audit trail: {secret}")
    # The export is audited after it (so not in it), with its size.
    after = audit_records(read(env.audit_log)[len(data):])
    expect(any(r["details"].get("bytes") == str(len(data))
               for r in matching(after, "audit_export", "ok", "CN=test-auditor")),
           f"export not audited: {after}")


def t_shutdown_with_open_stream():
    close_channels()
    ch = env.channel(server.port, "operator")
    call = pb_grpc.ApplianceStub(ch).WatchEvents(pb.WatchEventsRequest(), timeout=60)
    call.initial_metadata()
    ended = {}

    def reader():  # as a client would: the stream ends, it lets the connection go
        ended["status"] = stream_code(call)
        ch.close()

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    t0 = time.time()
    rc = server.stop()  # SIGTERM; SIGKILL after 15 s
    elapsed = time.time() - t0
    t.join(5)
    expect(rc == 0, f"server exit status {rc} (after {elapsed:.1f} s)")
    expect(elapsed < 3, f"server took {elapsed:.1f} s to stop with a WatchEvents stream open")
    expect(ended.get("status", (grpc.StatusCode.OK,))[0] == grpc.StatusCode.UNAVAILABLE,
           f"stream end: {ended}")


def appliance_audit_checks():
    checks.check("restart for the Appliance and Audit checks", start_if_stopped)
    checks.check_all((("operator gets the appliance status", t_status_operator),
                     ("auditor may not get status or events", t_status_auditor_denied),
                     ("operator and provisioner may not export", t_export_denied),
                     ("WatchEvents sees a new warrant accepted", t_watch_events),
                     ("auditor exports a verifiable trail", t_export),
                     ("prompt shutdown with a stream open", t_shutdown_with_open_stream)))


# ---------------------------------------------------------------------------------------
# Warrant lifecycle: Modify, ConfirmEmergency and the window scheduler, over the same server
# (restarted: the checks above end with it stopped).

LX_MOD = str(uuid.uuid4())
LX_EMERG = str(uuid.uuid4())
LX_WINDOW = str(uuid.uuid4())
LX_TARGETS = ("+4930555077701", "+4930555077702", "+4930555077703")
COURT_ORDER_REF = "Beschluss 12 Gs 345/26"


def verify_signature(w):
    """tapwire-sign --verify against the appliance's authority keys: (exit status, output)."""
    out = subprocess.run([env.sign_bin, "--verify", env.keys, "-"],
                         input=text_format.MessageToString(w).encode(), capture_output=True)
    return out.returncode, (out.stdout + out.stderr).decode(errors="replace")


def t_modify():
    war = tracked_warrants()
    e164 = idpb.IDENTITY_TYPE_E164
    w1 = signed(warrant(LX_MOD, [(e164, LX_TARGETS[0])], liid="LI-0100"))
    r1 = war.Activate(pb.ActivateWarrantRequest(warrant=w1), timeout=10).status
    expect(r1.state == pb.WARRANT_STATE_ACTIVE and r1.version == 1, r1)
    # Version 2: one more target and a later end, signed again by the authority.
    v2 = warrant(LX_MOD, [(e164, LX_TARGETS[0]), (idpb.IDENTITY_TYPE_SIP_URI, TARGET_SIP)],
                 liid="LI-0100", duration_s=48 * 3600)
    v2.valid_from.CopyFrom(w1.valid_from)
    v2 = signed(v2)
    r2 = war.Modify(pb.ModifyWarrantRequest(warrant=v2), timeout=10).status
    expect(r2.version == 2 and r2.warrant == v2 and r2.state == pb.WARRANT_STATE_ACTIVE, r2)
    expect(r2.activated_at == r1.activated_at and r2.accepted_at == r1.accepted_at, r2)
    rc, out = verify_signature(r2.warrant)
    expect(rc == 0, f"stored version 2 does not verify: {out}")
    again = war.Modify(pb.ModifyWarrantRequest(warrant=v2), timeout=10).status
    expect(again == r2, f"identical repeat differs: {again}")
    got = war.Get(pb.GetWarrantRequest(xid=LX_MOD), timeout=10)
    expect(got.version == 2 and got.warrant == v2, got)

    # The signature is checked again: changed after signing, or signed by another key.
    tampered = pb.Warrant()
    tampered.CopyFrom(v2)
    tampered.valid_until.seconds += 3600
    code, msg = code_of(war.Modify, pb.ModifyWarrantRequest(warrant=tampered))
    expect(code == grpc.StatusCode.PERMISSION_DENIED and msg.startswith("signature:"), (code, msg))
    v3 = pb.Warrant()
    v3.CopyFrom(v2)
    v3.valid_until.seconds += 3600
    foreign = signed(v3, key=OTHER_PRIV)
    code, msg = code_of(war.Modify, pb.ModifyWarrantRequest(warrant=foreign))
    expect(code == grpc.StatusCode.PERMISSION_DENIED and msg.startswith("signature:"), (code, msg))
    # The LIID never changes; unknown and ended warrants are refused.
    other_liid = signed(warrant(LX_MOD, [(e164, LX_TARGETS[0])], liid="LI-0199"))
    code, msg = code_of(war.Modify, pb.ModifyWarrantRequest(warrant=other_liid))
    expect(code == grpc.StatusCode.FAILED_PRECONDITION and "warrant.liid" in msg, (code, msg))
    unknown = signed(warrant(str(uuid.uuid4()), [(e164, LX_TARGETS[0])]))
    code, msg = code_of(war.Modify, pb.ModifyWarrantRequest(warrant=unknown))
    expect(code == grpc.StatusCode.NOT_FOUND, (code, msg))
    # XID2 was deactivated above.
    ended = signed(warrant(XID2, [(e164, TARGET_E164)], duration_s=48 * 3600))
    code, msg = code_of(war.Modify, pb.ModifyWarrantRequest(warrant=ended))
    expect(code == grpc.StatusCode.FAILED_PRECONDITION and "has ended" in msg, (code, msg))
    code, msg = code_of(tracked_warrants("auditor").Modify, pb.ModifyWarrantRequest(warrant=v3))
    expect(code == grpc.StatusCode.PERMISSION_DENIED, (code, msg))
    got = war.Get(pb.GetWarrantRequest(xid=LX_MOD), timeout=10)
    expect(got.version == 2 and got.warrant == v2, f"a refused Modify changed it: {got}")
    for secret in LX_TARGETS + (TARGET_SIP,):
        expect(secret not in msg, "target identity in a message")


def t_confirm_emergency():
    war = tracked_warrants()
    w = signed(warrant(LX_EMERG, [(idpb.IDENTITY_TYPE_E164, LX_TARGETS[1])], liid="LI-0101",
                       kind=pb.WARRANT_KIND_EMERGENCY))
    r = war.Activate(pb.ActivateWarrantRequest(warrant=w), timeout=10).status
    expect(r.state == pb.WARRANT_STATE_ACTIVE and r.HasField("emergency_deadline"), r)
    expect(abs(r.emergency_deadline.seconds - (time.time() + 48 * 3600)) < 120,
           r.emergency_deadline)

    c = war.ConfirmEmergency(pb.ConfirmEmergencyRequest(
        xid=LX_EMERG, court_order_reference=COURT_ORDER_REF), timeout=10).status
    expect(c.state == pb.WARRANT_STATE_ACTIVE and not c.HasField("emergency_deadline"), c)
    expect(c.emergency_confirmation_reference == COURT_ORDER_REF, c)
    expect(c.HasField("emergency_confirmed_at") and c.version == 1, c)
    # The confirmation is outside the signed warrant: the authority's signature still holds.
    expect(c.warrant == w, f"confirmation altered the signed warrant: {c.warrant}")
    rc, out = verify_signature(c.warrant)
    expect(rc == 0, f"confirmed warrant does not verify: {out}")
    written_in = pb.Warrant()  # the control: had it been written into the signed fields
    written_in.CopyFrom(c.warrant)
    written_in.legal.confirmation_reference = COURT_ORDER_REF
    rc, out = verify_signature(written_in)
    expect(rc != 0, "tapwire-sign --verify accepted a changed warrant")

    again = war.ConfirmEmergency(pb.ConfirmEmergencyRequest(
        xid=LX_EMERG, court_order_reference=COURT_ORDER_REF), timeout=10).status
    expect(again == c, f"repeat differs: {again}")
    for xid, ref, want, text in (
            (LX_EMERG, "Beschluss 99/26", grpc.StatusCode.FAILED_PRECONDITION,
             "already confirmed"),
            (LX_EMERG, "", grpc.StatusCode.INVALID_ARGUMENT, "court_order_reference"),
            (LX_EMERG, "x" * 257, grpc.StatusCode.INVALID_ARGUMENT, "court_order_reference"),
            (LX_EMERG, "Gs\x0712", grpc.StatusCode.INVALID_ARGUMENT, "court_order_reference"),
            (XID, "Gs 1/26", grpc.StatusCode.FAILED_PRECONDITION, "not an emergency warrant"),
            (str(uuid.uuid4()), "Gs 1/26", grpc.StatusCode.NOT_FOUND, "")):
        code, msg = code_of(war.ConfirmEmergency,
                            pb.ConfirmEmergencyRequest(xid=xid, court_order_reference=ref))
        expect(code == want and text in msg, (xid, ref[:20], code, msg))

    # Durable across kill -9; a new signed version stays confirmed.
    server.kill9()
    server.start()
    war = tracked_warrants()
    got = war.Get(pb.GetWarrantRequest(xid=LX_EMERG), timeout=10)
    expect(got.emergency_confirmation_reference == COURT_ORDER_REF
           and got.emergency_confirmed_at == c.emergency_confirmed_at
           and not got.HasField("emergency_deadline"), got)
    v2 = warrant(LX_EMERG, [(idpb.IDENTITY_TYPE_E164, LX_TARGETS[1])], liid="LI-0101",
                 duration_s=72 * 3600, kind=pb.WARRANT_KIND_EMERGENCY)
    v2.valid_from.CopyFrom(w.valid_from)
    v2 = signed(v2)
    m = war.Modify(pb.ModifyWarrantRequest(warrant=v2), timeout=10).status
    expect(m.version == 2 and not m.HasField("emergency_deadline")
           and m.emergency_confirmation_reference == COURT_ORDER_REF, m)


def t_window():
    """A warrant whose window opens ~2 s from now and closes ~2 s later, with no client call."""
    war = tracked_warrants()
    w = warrant(LX_WINDOW, [(idpb.IDENTITY_TYPE_E164, LX_TARGETS[2])], liid="LI-0102")
    start_ns = time.time_ns() + 2_000_000_000
    end_ns = start_ns + 2_000_000_000
    w.valid_from.FromNanoseconds(start_ns)
    w.valid_until.FromNanoseconds(end_ns)
    w = signed(w)
    r = war.Activate(pb.ActivateWarrantRequest(warrant=w), timeout=10).status
    expect(r.state == pb.WARRANT_STATE_PENDING, r)
    polls = []  # (sent ns, received ns, status)
    deadline = time.time() + 15
    while time.time() < deadline:
        sent = time.time_ns()
        got = war.Get(pb.GetWarrantRequest(xid=LX_WINDOW), timeout=10)
        polls.append((sent, time.time_ns(), got))
        if got.state != pb.WARRANT_STATE_PENDING and got.state != pb.WARRANT_STATE_ACTIVE:
            break
        time.sleep(0.1)
    states = [p[2].state for p in polls]
    expect(pb.WARRANT_STATE_ACTIVE in states, f"never seen ACTIVE: {states}")
    expect(states[-1] == pb.WARRANT_STATE_LAPSED, f"not LAPSED within 15 s: {states}")
    for sent, received, got in polls:
        if received < start_ns:  # answered before the window opened
            expect(got.state == pb.WARRANT_STATE_PENDING, f"effective early: {got}")
        elif received < end_ns:
            expect(got.state != pb.WARRANT_STATE_LAPSED, f"lapsed early: {got}")
        if start_ns + 1_000_000_000 <= sent and received < end_ns:
            expect(got.state == pb.WARRANT_STATE_ACTIVE, f"not ACTIVE 1 s into its window: {got}")
    last = polls[-1][2]
    expect(last.activated_at == w.valid_from and last.ended_at == w.valid_until, last)


def t_lifecycle_audit():
    raw, records = stopped_audit_trail()

    def find(action, result, xid, actor="CN=test-provisioner"):
        return matching(records, action, result, actor, f"xid:{xid}")

    modified = find("warrant_modify", "ok", LX_MOD)
    expect(any(r["details"].get("version") == "2" and r["details"].get("liid") == "LI-0100"
               and r["details"].get("targets") == "2" and len(r["details"].get("targets_hmac", ""))
               == 64 and r["details"].get("key_id") == "court-1" for r in modified), modified)
    expect(any(r["details"].get("method") == "Warrants.Modify"
               for r in find("signature_rejected", "PERMISSION_DENIED", LX_MOD)),
           "Modify's bad signature not audited")
    expect(find("warrant_modify", "FAILED_PRECONDITION", LX_MOD), "LIID change not audited")
    expect(any(r["details"].get("court_order_reference") == COURT_ORDER_REF
               for r in find("warrant_confirm", "ok", LX_EMERG)), "confirmation not audited")
    effective = find("warrant_effective", "ok", LX_WINDOW, actor="system:scheduler")
    lapse = find("warrant_lapse", "ok", LX_WINDOW, actor="system:scheduler")
    expect(len(effective) == 1 and effective[0]["details"].get("to") == "WARRANT_STATE_ACTIVE",
           effective)
    expect(len(lapse) == 1 and lapse[0]["details"].get("to") == "WARRANT_STATE_LAPSED", lapse)
    expect_no_target(raw, LX_TARGETS)


def lifecycle_checks():
    checks.check("restart for the warrant lifecycle checks", start_if_stopped)
    checks.check_all((("Modify: new signed version, refusals", t_modify),
                     ("ConfirmEmergency keeps the signature valid", t_confirm_emergency),
                     ("a window opens and closes by itself", t_window),
                     ("lifecycle audited", t_lifecycle_audit)))


try:
    server.start()
    checks.check_all((("health service and reflection", t_health_reflection),
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
                     ("audit trail verified and complete", t_audit)))
    appliance_audit_checks()
    lifecycle_checks()
finally:
    server.stop()
    env.cleanup(keep=checks.failed > 0)
checks.summary()
