#!/usr/bin/python3
"""A call whose end is never seen ends by the idle timeout, through the whole appliance: the
pktgen sends the "abandoned" scenario once over net_memif (two targeted calls, answered, with
media, and no BYE: the tap lost it), the real dataplane intercepts, the control plane runs
with --call-idle-timeout-s 10 and delivers to the demo's ETSI and CALEA reference LEMFs
(tools/demo/appliance.py, warrants provisioned with tapwire-ctl over mutual TLS).

Checks:
 1. both calls are intercepted, and no END arrives before the calls have been idle for the
    timeout;
 2. then each call gets exactly one IRI END: ETSI's carries no SIP message, the call's last
    addresses, the next sequence number (no gap at the LEMF), and a time at least the timeout
    after the call's last record; CALEA's call-data channel closes the content channel and
    releases the call; status counts calls_timed_out and no drop.

Usage: call_timeout.py BUILD_DIR SOURCE_DIR   (exit 77 = skipped: no hugepages)
"""
import json
import os
import shutil
import sys
import tempfile
import time
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

harness.live_arguments(__doc__, "the control plane attaches as a DPDK secondary")
sys.path.insert(0, os.path.join(sys.argv[2], "tools", "demo"))
from appliance import Appliance  # noqa: E402

IDLE_S = 10
TMP = tempfile.mkdtemp(prefix="tapwire-timeout-")
app = Appliance(types.SimpleNamespace(build=sys.argv[1], out=TMP, port=[], etsi_lemf=None,
                                      rate=1000))
app.traffic = ["--mix", "abandoned", "--passes", "1", "--retry"]
app.controlplane_args = ["--call-idle-timeout-s", str(IDLE_S)]
checks = harness.Checks()


def jsonl(path):
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


def etsi_iri():
    return jsonl(app.path("lemf-de", "DE-LI-0001.iri.jsonl"))


def handover(name):
    return int(app.status().get("handover", {}).get(name, 0))


def t_intercepted_no_early_end():
    app.wait_log("pktgen", "holding the port open", 30)
    traffic_done = time.time()
    harness.wait_for(lambda: len({r["cin"] for r in etsi_iri()}) >= 1, 15,
                     "the number's call at the ETSI LEMF")
    harness.wait_for(lambda: jsonl(app.path("lemf-us", "US-CASE-0001.iri.jsonl")), 15,
                     "the SIP URI's call at the CALEA LEMF")
    # Well inside the idle time: nothing has ended yet.
    time.sleep(max(0.0, traffic_done + IDLE_S / 2 - time.time()))
    harness.expect(handover("calls_timed_out") == 0, "a call timed out early")
    types_seen = [r["iri_type"] for r in etsi_iri()]
    harness.expect("end" not in types_seen, f"an END before the timeout: {types_seen}")


def t_ended_by_timeout():
    harness.wait_for(lambda: handover("calls_timed_out") >= 2, IDLE_S + 30,
                     "both calls to time out")
    harness.wait_for(lambda: any(r["iri_type"] == "end" for r in etsi_iri()), 10,
                     "the END at the ETSI LEMF")
    status = app.status()
    for name, value in status.get("drops", {}).items():
        harness.expect(int(value) == 0, f"{name} = {value}")
    app.finish()  # the LEMFs stop and write their summaries

    iri = etsi_iri()
    harness.expect(len({r["cin"] for r in iri}) == 1, f"one call expected: {iri}")
    harness.expect([r["sequence"] for r in iri] == list(range(len(iri))),
                   f"sequence numbers not contiguous: {[r['sequence'] for r in iri]}")
    kinds = [r["iri_type"] for r in iri]
    harness.expect(kinds[0] == "begin" and kinds.count("begin") == 1, f"types {kinds}")
    harness.expect(kinds[-1] == "end" and kinds.count("end") == 1, f"types {kinds}")
    end = iri[-1]
    harness.expect(end["sip"] == "", f"the END carries a message: {end['sip'][:80]!r}")
    harness.expect(end["source"] and end["destination"], f"the END has no addresses: {end}")
    harness.expect(end["timestamp_ns"] - iri[-2]["timestamp_ns"] >= IDLE_S * 10**9,
                   "the END came before the call had been idle for the timeout")
    with open(app.path("lemf-de.summary.json")) as f:
        summary = json.load(f)
    harness.expect(summary["errors"] == 0, f"decode errors: {summary}")
    for liid, s in summary["liids"].items():
        harness.expect(s["gaps"] == 0 and s["duplicates"] == 0, f"{liid}: {s}")

    cdc = [r.get("cdc_message") for r in jsonl(app.path("lemf-us", "US-CASE-0001.iri.jsonl"))]
    harness.expect(cdc[-2:] == ["ccclose", "release"], f"CALEA call-data: {cdc}")
    harness.expect(cdc.count("release") == 1, f"CALEA call-data: {cdc}")


try:
    app.prepare()
    app.start_lemfs()
    app.start_dataplane()
    app.start_controlplane()
    app.provision()
    app.start_traffic()
    checks.check_all([
        ("both calls intercepted, no END before the idle timeout", t_intercepted_no_early_end),
        ("each call ends by timeout: ETSI END without a message, CALEA CCClose and Release",
         t_ended_by_timeout),
    ])
except Exception as e:  # noqa: BLE001 - the setup failing is a failed check, with the logs
    checks.check("setup", lambda: (_ for _ in ()).throw(e))
finally:
    app.cleanup()
    if checks.failed:
        for name in ("controlplane", "dataplane", "pktgen"):
            print(f"--- {name}.log (tail)\n{app.read_log(name)[-1500:]}")
    if not checks.failed:
        shutil.rmtree(TMP, ignore_errors=True)
checks.summary()
