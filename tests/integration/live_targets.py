#!/usr/bin/python3
"""Warrants reach the running dataplane: the real control plane (DPDK secondary, gRPC with
mutual TLS) and the real dataplane (DPDK primary) on a net_pcap vdev that replays a call mix
in a loop, with a Python client of the .proto as the orchestration.

Checks: a warrant activated over gRPC becomes effective in the dataplane and intercepts
(events EFFECTIVE and FIRST_HIT, per-warrant hits, appliance status); an IRI-only warrant's
media is refused and counted; deactivation stops interception; a window that opens and
closes by itself (scheduler); kill -9 of the control plane mid-traffic (the dataplane goes on
intercepting with its last target set, the hits it could not hand over are counted as
ring-full drops, the restarted control plane re-attaches and resyncs); kill -9 of the
dataplane (the control plane re-executes, waits, and repopulates the new dataplane); the
audit trail verifies and no log holds a target identity.

Usage: live_targets.py BUILD_DIR SOURCE_DIR   (exit 77 = skipped: no hugepages, no grpcio)
"""
import os
import re
import subprocess
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import expect, wait_for  # noqa: E402

env = harness.live_environment(__doc__, "tapwire-live-")

from tapwire.v1 import controlplane_pb2 as pb  # noqa: E402
from tapwire.v1 import identity_pb2 as idpb  # noqa: E402

BUILD = env.build
PREFIX = f"tw_live_{os.getpid()}"
DATAPLANE_LOG = os.path.join(env.tmp, "dataplane.log")

# The demo call mix and its targets.
TEL, SIP = harness.demo_capture(env)


class Dataplane(harness.Process):
    stop_timeout = 20

    def start(self):
        # A small hit ring, so that a control plane that is away fills it quickly.
        self.proc = harness.start_replay_dataplane(env, PREFIX, DATAPLANE_LOG, 4096)


class Appliance(harness.ApplianceClient):
    def __init__(self):
        super().__init__(env)
        self.server = harness.Server(env, ["--dataplane-prefix", PREFIX])

    def start(self):
        self.server.start()
        self.connect(self.server.port)

    def get(self, xid):
        return self.warrants.Get(pb.GetWarrantRequest(xid=xid), timeout=10)


dataplane = Dataplane()
app = Appliance()
checks = harness.Checks()
W1, W2, W3 = (str(uuid.uuid4()) for _ in range(3))


def activate(xid, target, **kw):
    w = env.signed(env.warrant(xid, [target], **kw))
    return app.warrants.Activate(pb.ActivateWarrantRequest(warrant=w), timeout=10).status


def t_attach():
    dataplane.start()
    app.start()
    s = app.wait_attached()
    expect(len(s.workers) == 1 and s.published_targets == 0, s)
    app.events.wait(pb.EVENT_DATAPLANE_ATTACHED)
    app.destinations.Create(pb.CreateDestinationRequest(destination=pb.Destination(
        id="lemf-1", address="192.0.2.10", port=6000, format=pb.HANDOVER_FORMAT_ETSI_102232)),
        timeout=10)


def t_activate_intercepts():
    st = activate(W1, (idpb.IDENTITY_TYPE_SIP_URI, SIP))
    replied = time.time()
    expect(st.state == pb.WARRANT_STATE_ACTIVE, st)
    effective = app.events.wait(pb.EVENT_WARRANT_EFFECTIVE, W1)
    first = app.events.wait(pb.EVENT_WARRANT_FIRST_HIT, W1)
    lag = effective.time.ToNanoseconds() / 1e9 - replied
    print(f"  reply -> effective {lag * 1000:.1f} ms, -> first hit "
          f"{(first.time.ToNanoseconds() / 1e9 - replied) * 1000:.1f} ms")
    expect(lag < 1.0, f"effective {lag:.3f} s after the reply")
    got = wait_for(lambda: (g := app.get(W1)).hits > 10 and g, 10, "hits for W1")
    expect(got.effective_in_dataplane, got)
    s = app.status()
    expect(s.published_targets == 1 and s.hits_drained > 0 and s.active_warrants == 1, s)
    expect(s.workers[0].rx_packets > 0 and s.active_calls > 0, s)


def t_iri_only_refuses_media():
    activate(W2, (idpb.IDENTITY_TYPE_E164, TEL), content=False)
    app.events.wait(pb.EVENT_WARRANT_FIRST_HIT, W2)
    wait_for(lambda: app.status().drops["drop_hit_cc_not_authorized"] > 0, 10,
             "media of the IRI-only warrant refused and counted")
    expect(app.status().published_targets == 2, "two targets published")


def t_deactivate_stops():
    app.warrants.Deactivate(pb.DeactivateWarrantRequest(xid=W1, reason="end of order"),
                            timeout=10)
    wait_for(lambda: app.status().published_targets == 1, 5, "W1's target removed")
    time.sleep(0.5)  # hits already in the rings when it was removed
    before = app.get(W1).hits
    time.sleep(1.5)
    after = app.get(W1)
    expect(after.hits == before and not after.effective_in_dataplane,
           f"hits went on after deactivation: {before} -> {after.hits}")


def t_window_by_itself():
    st = activate(W3, (idpb.IDENTITY_TYPE_SIP_URI, SIP), start_in_s=2, duration_s=3)
    expect(st.state == pb.WARRANT_STATE_PENDING, st)
    expect(app.get(W3).hits == 0, "no hits before the window")
    app.events.wait(pb.EVENT_WARRANT_ACTIVATED, W3, timeout=6)
    app.events.wait(pb.EVENT_WARRANT_EFFECTIVE, W3)
    app.events.wait(pb.EVENT_WARRANT_FIRST_HIT, W3)
    app.events.wait(pb.EVENT_WARRANT_LAPSED, W3, timeout=8)
    g = app.get(W3)
    expect(g.state == pb.WARRANT_STATE_LAPSED and g.hits > 0, g)
    last = g.last_hit.ToNanoseconds()
    expect(g.warrant.valid_from.ToNanoseconds() <= last < g.warrant.valid_until.ToNanoseconds(),
           "a hit outside the window was accepted")
    time.sleep(1.0)
    expect(app.get(W3).hits == g.hits, "hits after the lapse")


def telemetry_totals():
    out = subprocess.run(["dpdk-telemetry.py", "-f", PREFIX], input="/tapwire/totals\n",
                         capture_output=True, text=True, timeout=30).stdout
    return {k: int(v) for k, v in re.findall(r'"(\w+)": (\d+)', out)}


def t_controlplane_killed():
    before = app.get(W2).hits
    app.events.close()
    app.server.kill9()
    # The dataplane intercepts on with its last target set; nobody drains: the ring fills
    # and every further hit is a counted drop.
    t0 = telemetry_totals()
    time.sleep(2.0)
    t1 = telemetry_totals()
    expect(t1["hits_sip"] > t0["hits_sip"], "the dataplane stopped intercepting")
    expect(t1["drop_ring_full"] > t0["drop_ring_full"], "ring-full drops not counted")
    app.start()
    app.wait_attached()
    s = wait_for(lambda: (st := app.status()).published_targets == 1 and st, 10, "W2 published")
    expect(s.drops["drop_ring_full"] >= t1["drop_ring_full"], s)
    app.events.wait(pb.EVENT_WARRANT_EFFECTIVE, W2)
    # Hits counted since this control plane started (runtime figures).
    wait_for(lambda: app.get(W2).hits > 0, 10, "W2 intercepted after the restart")
    print(f"  W2 hits before the kill {before}; ring-full drops {t1['drop_ring_full']}")


def t_dataplane_killed():
    app.events.close()
    dataplane.kill9()
    # The control plane notices, re-executes itself and waits for a dataplane.
    app.server.port = app.server.read_port(timeout=30)
    app.connect(app.server.port)
    s = wait_for(lambda: (st := app.status()) and not st.dataplane_attached and st, 10,
                 "the re-executed control plane to wait for the dataplane")
    expect("waiting for the dataplane" in s.dataplane_detail, s.dataplane_detail)
    dataplane.start()
    app.wait_attached()
    wait_for(lambda: app.status().published_targets == 1, 10, "W2 republished")
    app.events.wait(pb.EVENT_WARRANT_EFFECTIVE, W2)
    wait_for(lambda: app.get(W2).hits > 0, 10, "W2 intercepted by the new dataplane")


def t_audit_and_logs():
    app.events.close()
    app.server.stop()
    dataplane.stop()
    r = subprocess.run([env.audit_verify_bin, "--log", os.path.join(env.state_dir, "audit.log"),
                        "--public-key", env.audit_pub], capture_output=True, text=True)
    expect(r.returncode == 0, r.stdout + r.stderr)
    logs = app.server.log() + harness.read(DATAPLANE_LOG).decode(errors="replace")
    for t in (SIP, TEL, TEL[1:]):
        expect(t not in logs, "a target identity is in a log")


try:
    for name, fn in [("control plane attaches to the running dataplane", t_attach),
                     ("an activated warrant is effective and intercepts", t_activate_intercepts),
                     ("an IRI-only warrant's media is refused and counted",
                      t_iri_only_refuses_media),
                     ("deactivation stops interception", t_deactivate_stops),
                     ("a window opens and closes by itself", t_window_by_itself),
                     ("control plane killed mid-traffic: dataplane goes on, resync",
                      t_controlplane_killed),
                     ("dataplane killed mid-traffic: repopulated after restart",
                      t_dataplane_killed),
                     ("audit trail verifies, no target in any log", t_audit_and_logs)]:
        checks.check(name, fn)
        if checks.failed and name.startswith("control plane attaches"):
            break
finally:
    if app.events:
        app.events.close()
    app.server.stop()
    dataplane.stop()
    if checks.failed:
        print("--- control plane log (tail) ---\n" + app.server.log()[-3000:])
        print("--- dataplane log (tail) ---\n" +
              harness.read(DATAPLANE_LOG).decode(errors="replace")[-3000:])
    else:
        env.cleanup()
checks.summary()
