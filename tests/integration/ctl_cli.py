#!/usr/bin/python3
"""tapwire-ctl against a real tapwire-controlplane over mutual TLS.

A test CA, a server certificate and one client certificate per role come from
make_test_pki.sh; an issuing-authority key from tapwire-sign --gen-key. The server listens on
127.0.0.1 port 0 (no dataplane). Every command of tapwire-ctl is run as a separate process:
destinations (flags and --file), warrants signed with tapwire-sign (activate from a file and
from stdin, get, list as a table and as JSON, modify, confirm, deactivate), status, events,
audit export (verified with tapwire-audit-verify), health; exit codes 1 (server error, status
name on stderr), 2 (usage), 3 (nothing listens, TLS failures); the certificate paths from
TAPWIRE_* environment variables; role enforcement; no target identity in tables.

Modify, ConfirmEmergency, Appliance and Audit may still be answered UNIMPLEMENTED by the
server: that reply is accepted (and reported as NOTE) as long as tapwire-ctl reports it
correctly; a real answer is checked in full.

Usage: ctl_cli.py BUILD_DIR SOURCE_DIR   (exit 77 = skipped: openssl missing)
"""
import json
import os
import select
import socket
import subprocess
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import expect, read, warrant_text  # noqa: E402

if len(sys.argv) != 3:
    print(__doc__)
    sys.exit(2)
# Only tapwire-ctl talks to the server: no Python gRPC client, no generated code.
env = harness.Environment(sys.argv[1], sys.argv[2], prefix="tapwire-ctl-", grpc_client=False,
                          required_tools=("tapwire-sign", "tapwire-ctl"))
CTL = env.tool("tapwire-ctl")

# Target identities: shown by `warrant get` only, never in tables or replies to changes.
TARGET_SIP = "sip:bob.target@example.test"
TARGET_E164 = "+4930555098765"
XID = str(uuid.uuid4())          # court order: activate, get, list, modify, deactivate
XID_EMERGENCY = str(uuid.uuid4())  # from stdin, confirmed
XID_EVENT = str(uuid.uuid4())    # activated while `events` watches


def free_port():
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


server = harness.Server(env)
checks = harness.Checks()


def tls_args(role):
    return ["--cert", env.pki_file(f"{role}.pem"), "--key", env.pki_file(f"{role}.key"),
            "--ca", env.pki_file("ca.pem")]


def clean_env(extra=None):
    """os.environ without TAPWIRE_* (the test sets what it means to), plus extra."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("TAPWIRE_")}
    full_env.update(extra or {})
    return full_env


def ctl(*args, role="provisioner", server_addr=None, environ=None, stdin=None, globals_=()):
    """Runs tapwire-ctl with the role's certificate (role=None: no certificate options)."""
    cmd = [CTL, "--server", server_addr or f"127.0.0.1:{server.port}"]
    if role is not None:
        cmd += tls_args(role)
    cmd += [*globals_, *args]
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True,
                          env=clean_env(environ), timeout=60)


def describe(r):
    return f"rc={r.returncode} stdout={r.stdout!r} stderr={r.stderr!r}"


def expect_ok(r):
    expect(r.returncode == 0, describe(r))
    return r


def expect_refused(r, code, rc=1):
    """The call failed with `rc` and stderr names the gRPC status `code`."""
    expect(r.returncode == rc and f"tapwire-ctl: {code}: " in r.stderr, describe(r))


def unimplemented(r, what):
    """The server does not have the method yet: accepted, if tapwire-ctl reported it right."""
    if r.returncode == 1 and "tapwire-ctl: UNIMPLEMENTED: " in r.stderr:
        checks.note(f"{what}: the server answered {r.stderr.strip()!r}; not checked further")
        return True
    return False


def signed(xid, liid, targets, **kw):
    """A warrant in text format (harness.warrant_text's arguments), signed by the authority."""
    return env.sign_text(warrant_text(xid, targets, liid=liid, **kw))


def write(name, text):
    path = os.path.join(env.tmp, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def table(stdout):
    """A tapwire-ctl table as a list of dicts keyed by the header's column names; cells are
    cut where the header's columns start (so they are aligned, or the test fails)."""
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    names = lines[0].split()
    starts = []
    for name in names:
        starts.append(lines[0].index(name, starts[-1] + 1 if starts else 0))
    rows = []
    for ln in lines[1:]:
        cells = [ln[a:b].strip() for a, b in zip(starts, starts[1:] + [len(ln)])]
        for a in starts[1:]:
            expect(a <= len(ln) and ln[a - 1] == " ", f"column not aligned at {a}: {ln!r}")
        rows.append(dict(zip(names, cells)))
    return rows


def no_targets(text, where):
    for secret in (TARGET_SIP, TARGET_E164, "bob.target"):
        expect(secret not in text, f"target identity in {where}: {text!r}")


# --- checks -------------------------------------------------------------------------------

def t_health():
    r = expect_ok(ctl("health"))
    expect(r.stdout.strip() == "SERVING", describe(r))
    r = expect_ok(ctl("--json", "health"))
    expect(json.loads(r.stdout) == {"status": "SERVING"}, describe(r))


def t_usage():
    r = ctl()
    expect(r.returncode == 2 and "no command" in r.stderr and "warrant activate" in r.stderr,
           describe(r))
    r = ctl("warrant", "launch")
    expect(r.returncode == 2 and "unknown command 'warrant launch'" in r.stderr, describe(r))
    r = ctl("warrant", "deactivate", XID)
    expect(r.returncode == 2 and "--reason" in r.stderr and "usage:" in r.stderr, describe(r))
    r = ctl("warrant", "list", "--state", "sleeping")
    expect(r.returncode == 2 and "sleeping" in r.stderr and "emergency-lapsed" in r.stderr,
           describe(r))
    r = ctl("destination", "create", "--id", "x", "--address", "192.0.2.1", "--port", "1",
            "--format", "morse")
    expect(r.returncode == 2 and "--format" in r.stderr and "atis-calea" in r.stderr, describe(r))
    r = ctl("warrant", "get")
    expect(r.returncode == 2 and "missing argument" in r.stderr, describe(r))
    r = ctl("warrant", "activate", os.path.join(env.tmp, "does-not-exist.textproto"))
    expect(r.returncode == 2 and "cannot read" in r.stderr, describe(r))
    r = ctl("--help")
    expect(r.returncode == 0 and "audit export" in r.stdout and "TAPWIRE_CERT" in r.stdout,
           describe(r))


def t_missing_tls():
    r = ctl("warrant", "list", role=None)
    expect(r.returncode == 2, describe(r))
    for what in ("--cert", "--key", "--ca", "TAPWIRE_CERT", "insecure-plaintext-development-only"):
        expect(what in r.stderr, f"{what} not named: {describe(r)}")
    r = ctl("warrant", "list", role=None, globals_=["--cert", env.pki_file("provisioner.pem")])
    expect(r.returncode == 2 and "--key" in r.stderr and "--cert " not in r.stderr, describe(r))


def t_unreachable():
    r = ctl("destination", "list", server_addr=f"127.0.0.1:{free_port()}")
    expect_refused(r, "UNAVAILABLE", rc=3)
    # Deadline before any connection: 192.0.2.0/24 (TEST-NET-1) is not routed, or refused.
    r = ctl("destination", "list", server_addr="192.0.2.1:7443", globals_=["--timeout", "1"])
    expect(r.returncode == 3, describe(r))


def t_tls_failures():
    # A client certificate from a foreign CA: the server refuses the handshake.
    r = ctl("destination", "list", role="rogue")
    expect(r.returncode == 3 and "UNAVAILABLE" in r.stderr, describe(r))
    # The server's certificate is not for the name the client expects.
    r = ctl("destination", "list", globals_=["--server-name", "not-the-server.example"])
    expect(r.returncode == 3 and "UNAVAILABLE" in r.stderr, describe(r))


def t_env():
    full_env = clean_env({"TAPWIRE_SERVER": f"127.0.0.1:{server.port}",
                          "TAPWIRE_CERT": env.pki_file("provisioner.pem"),
                          "TAPWIRE_KEY": env.pki_file("provisioner.key"),
                          "TAPWIRE_CA": env.pki_file("ca.pem")})

    def health(*options):  # tapwire-ctl with nothing but the environment (and options)
        return subprocess.run([CTL, *options, "health"], capture_output=True, text=True,
                              env=full_env, timeout=60)

    r = health()
    expect(r.returncode == 0 and r.stdout.strip() == "SERVING", describe(r))
    # TAPWIRE_SERVER_NAME is used: "localhost" is on the certificate, another name is not.
    full_env["TAPWIRE_SERVER_NAME"] = "localhost"
    r = health()
    expect(r.returncode == 0, describe(r))
    full_env["TAPWIRE_SERVER_NAME"] = "elsewhere.example"
    r = health()
    expect(r.returncode == 3, describe(r))
    # A command-line option wins over the environment.
    full_env["TAPWIRE_SERVER"] = f"127.0.0.1:{free_port()}"
    del full_env["TAPWIRE_SERVER_NAME"]
    r = health("--server", f"127.0.0.1:{server.port}")
    expect(r.returncode == 0, describe(r))


def t_destinations():
    # Loopback addresses where nothing listens: the appliance's delivery to them fails at
    # once (connection refused), so its DESTINATION_DOWN events come now, not in t_events.
    r = expect_ok(ctl("destination", "create", "--id", "lemf-1", "--address", "127.0.0.10",
                      "--port", "6000", "--format", "etsi-102232"))
    rows = table(r.stdout)
    expect(rows == [{"ID": "lemf-1", "ADDRESS": "127.0.0.10", "PORT": "6000",
                     "FORMAT": "etsi-102232", "TLS": "no", "TIMESTAMPS": "generalized"}],
           describe(r))
    # The identical repeat is accepted (idempotent).
    expect_ok(ctl("destination", "create", "--id", "lemf-1", "--address", "127.0.0.10",
                  "--port", "6000", "--format", "etsi-102232"))
    ca_text = read(env.pki_file("ca.pem")).decode()
    path = write("lemf-2.textproto",
                 'id: "lemf-2" address: "127.0.0.20" port: 6001 format: HANDOVER_FORMAT_ETSI_X2X3\n'
                 'tls { enabled: true server_name: "lemf.example" ca_pem: '
                 + json.dumps(ca_text) + " }\nmicrosecond_timestamps: true\n")
    expect_ok(ctl("destination", "create", "--file", path))
    r = expect_ok(ctl("destination", "list"))
    rows = {row["ID"]: row for row in table(r.stdout)}
    expect(set(rows) == {"lemf-1", "lemf-2"}, describe(r))
    expect(rows["lemf-2"]["FORMAT"] == "etsi-x2x3" and rows["lemf-2"]["TIMESTAMPS"] ==
           "microsecond" and rows["lemf-2"]["TLS"] == "yes:ca,name=lemf.example", rows["lemf-2"])
    r = expect_ok(ctl("--json", "destination", "list"))
    listed = json.loads(r.stdout)
    by_id = {d["id"]: d for d in listed["destinations"]}
    expect(by_id["lemf-2"]["tls"]["ca_pem"] == ca_text and by_id["lemf-2"]["port"] == 6001,
           by_id)
    expect(by_id["lemf-1"]["format"] == "HANDOVER_FORMAT_ETSI_102232", by_id)
    # Modify by flags: TLS with a CA file and a server name.
    r = expect_ok(ctl("destination", "modify", "--id", "lemf-2", "--address", "127.0.0.21",
                      "--port", "6002", "--format", "etsi-x2x3", "--tls", "--ca",
                      env.pki_file("ca.pem"), "--server-name", "lemf.example", "--json"))
    d = json.loads(r.stdout)["destination"]
    expect(d["port"] == 6002 and d["address"] == "127.0.0.21" and d["format"] ==
           "HANDOVER_FORMAT_ETSI_X2X3" and d["tls"]["enabled"] and d["tls"]["ca_pem"] == ca_text,
           d)
    # The format of a destination cannot change: its spool holds records already encoded.
    r = ctl("destination", "modify", "--id", "lemf-2", "--address", "127.0.0.21", "--port",
            "6002", "--format", "atis-calea")
    expect_refused(r, "FAILED_PRECONDITION")
    expect("destination.format" in r.stderr, describe(r))
    # Refused by the server, with the field named.
    r = ctl("destination", "create", "--id", "lemf-3", "--address", "192.0.2.30", "--port", "0",
            "--format", "etsi-102232")
    expect_refused(r, "INVALID_ARGUMENT")
    expect("destination.port" in r.stderr, describe(r))
    r = expect_ok(ctl("destination", "remove", "lemf-2"))
    expect("lemf-2" in r.stdout, describe(r))
    r = expect_ok(ctl("--json", "destination", "list"))
    expect([d["id"] for d in json.loads(r.stdout)["destinations"]] == ["lemf-1"], describe(r))
    expect_refused(ctl("destination", "remove", "lemf-2"), "NOT_FOUND")


def t_activate():
    path = write("w1.textproto", signed(XID, "LI-0042", [("IDENTITY_TYPE_SIP_URI", TARGET_SIP),
                                                         ("IDENTITY_TYPE_E164", TARGET_E164)]))
    r = expect_ok(ctl("warrant", "activate", path))
    no_targets(r.stdout + r.stderr, "the activate reply")
    expect("xid:" in r.stdout and XID in r.stdout, describe(r))
    fields = dict(ln.split(":", 1) for ln in r.stdout.splitlines() if ":" in ln)
    expect(fields["state"].strip() == "active" and fields["targets"].strip() == "2" and
           fields["version"].strip() == "1" and fields["kind"].strip() == "court-order",
           describe(r))
    # The identical repeat is answered with the original result.
    r2 = expect_ok(ctl("warrant", "activate", path))
    expect(r2.stdout == r.stdout, f"{r.stdout!r} != {r2.stdout!r}")
    # An emergency warrant from stdin.
    text = signed(XID_EMERGENCY, "LI-0099", [("IDENTITY_TYPE_E164", TARGET_E164)],
                  kind="WARRANT_KIND_EMERGENCY")
    r = expect_ok(ctl("--json", "warrant", "activate", "-", stdin=text))
    status = json.loads(r.stdout)["status"]
    expect(status["state"] == "WARRANT_STATE_ACTIVE" and status["emergency_deadline"], status)
    # A warrant the server refuses: unknown destination.
    bad = write("bad.textproto", signed(str(uuid.uuid4()), "LI-0100",
                                        [("IDENTITY_TYPE_E164", TARGET_E164)],
                                        destination="nowhere"))
    r = ctl("warrant", "activate", bad)
    expect_refused(r, "FAILED_PRECONDITION")
    expect("destination_ids[0]" in r.stderr, describe(r))
    # Not a warrant at all: a local error, named with its line.
    junk = write("junk.textproto", "xid: 12 this is not text format\n")
    r = ctl("warrant", "activate", junk)
    expect(r.returncode == 2 and "junk.textproto:1:" in r.stderr, describe(r))


def t_get():
    r = expect_ok(ctl("warrant", "get", XID))
    expect(TARGET_SIP in r.stdout and TARGET_E164 in r.stdout, describe(r))
    expect("sip-uri" in r.stdout and "e164" in r.stdout and "LI-0042" in r.stdout, describe(r))
    r = expect_ok(ctl("--json", "warrant", "get", XID))
    got = json.loads(r.stdout)
    expect(got["warrant"]["xid"] == XID and got["state"] == "WARRANT_STATE_ACTIVE" and
           len(got["warrant"]["targets"]) == 2 and got["warrant"]["key_id"] == "court-1", got)
    r = ctl("warrant", "get", str(uuid.uuid4()))
    expect_refused(r, "NOT_FOUND")
    expect(r.stdout == "", describe(r))


def t_list():
    r = expect_ok(ctl("warrant", "list"))
    no_targets(r.stdout, "the warrant table")
    header = r.stdout.splitlines()[0].split()
    expect(header[:7] == ["XID", "LIID", "STATE", "KIND", "TARGETS", "WINDOW", "HITS"], header)
    rows = {row["XID"]: row for row in table(r.stdout)}
    expect(set(rows) == {XID, XID_EMERGENCY}, describe(r))
    expect(rows[XID]["STATE"] == "active" and rows[XID]["TARGETS"] == "2" and
           rows[XID]["KIND"] == "court-order" and rows[XID]["HITS"] == "0", rows[XID])
    expect(rows[XID_EMERGENCY]["KIND"] == "emergency" and rows[XID_EMERGENCY]["TARGETS"] == "1",
           rows[XID_EMERGENCY])
    expect("/" in rows[XID]["WINDOW"] and rows[XID]["WINDOW"].endswith("Z"), rows[XID])
    r = expect_ok(ctl("warrant", "list", "--json"))
    listed = json.loads(r.stdout)
    expect({w["warrant"]["xid"] for w in listed["warrants"]} == {XID, XID_EMERGENCY}, listed)
    r = expect_ok(ctl("--json", "warrant", "list", "--state", "deactivated,lapsed"))
    expect(json.loads(r.stdout)["warrants"] == [], describe(r))
    # The auditor may read.
    r = expect_ok(ctl("--json", "warrant", "list", "--state", "active", role="auditor"))
    expect(len(json.loads(r.stdout)["warrants"]) == 2, describe(r))


def t_modify():
    path = write("w1v2.textproto", signed(XID, "LI-0042", [("IDENTITY_TYPE_SIP_URI", TARGET_SIP)],
                                          duration_s=48 * 3600))
    r = ctl("--json", "warrant", "modify", path)
    if unimplemented(r, "warrant modify"):
        return
    expect_ok(r)
    status = json.loads(r.stdout)["status"]
    expect(status["version"] == "2" and len(status["warrant"]["targets"]) == 1, status)


def t_confirm():
    r = ctl("warrant", "confirm", XID_EMERGENCY, "--court-order", "AZ 777/26")
    if unimplemented(r, "warrant confirm"):
        return
    expect_ok(r)
    no_targets(r.stdout, "the confirm reply")
    fields = {k.strip(): v.strip() for k, v in
              (ln.split(":", 1) for ln in r.stdout.splitlines() if ":" in ln)}
    expect(fields.get("confirmed by") == "AZ 777/26" and fields.get("state") == "active" and
           "emergency deadline" not in fields, describe(r))
    r = expect_ok(ctl("--json", "warrant", "get", XID_EMERGENCY))
    got = json.loads(r.stdout)
    expect(got["emergency_confirmation_reference"] == "AZ 777/26" and
           "emergency_deadline" not in got, got)
    # A court-order warrant has nothing to confirm.
    expect_refused(ctl("warrant", "confirm", XID, "--court-order", "AZ 778/26"),
                   "FAILED_PRECONDITION")


def t_roles():
    path = os.path.join(env.tmp, "w1.textproto")
    r = ctl("warrant", "activate", path, role="operator")
    expect_refused(r, "PERMISSION_DENIED")
    r = ctl("destination", "remove", "lemf-1", role="auditor")
    expect_refused(r, "PERMISSION_DENIED")


def t_status():
    r = ctl("status", role="operator")
    if unimplemented(r, "status"):
        return
    expect_ok(r)
    expect("dataplane:" in r.stdout and "NOT attached" in r.stdout, describe(r))
    warrants_line = [ln for ln in r.stdout.splitlines() if ln.startswith("warrants:")]
    expect(warrants_line and "active" in warrants_line[0], describe(r))
    r = expect_ok(ctl("--json", "status", role="operator"))
    status = json.loads(r.stdout)
    expect(status["dataplane_attached"] is False and status["active_warrants"] >= 2, status)


def watch(*args):
    """tapwire-ctl as the operator, in the background, stdout line by line."""
    return subprocess.Popen([CTL, "--server", f"127.0.0.1:{server.port}", *tls_args("operator"),
                             *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def read_until(proc, done, seconds, stream="stdout"):
    """Lines from proc's stdout (or stderr) up to and including the first one for which
    done() holds."""
    lines = []
    deadline = time.time() + seconds
    pipe = getattr(proc, stream)
    while time.time() < deadline:
        ready, _, _ = select.select([pipe], [], [], 0.2)
        if not ready:
            continue
        line = pipe.readline()
        if not line:
            raise AssertionError(f"watcher ended (rc {proc.poll()}) after {lines!r}")
        lines.append(line.rstrip("\n"))
        if done(lines[-1]):
            return lines
    raise AssertionError(f"no such event within {seconds} s: {lines!r}")


def t_events():
    # Nothing happens for a second: no output, exit 0.
    r = ctl("events", "--timeout", "1", role="operator")
    if unimplemented(r, "events"):
        return
    expect(r.returncode == 0 and r.stdout == "", describe(r))
    # --count not reached before the timeout: exit 1, said on stderr.
    r = ctl("events", "--count", "3", "--timeout", "1", role="operator")
    expect(r.returncode == 1 and "DEADLINE_EXCEEDED" in r.stderr and "0 of 3" in r.stderr,
           describe(r))
    # Two watchers, subscribed before the warrant changes (they say so on stderr once the
    # server has subscribed them): one stops after one event (--count), the other prints
    # lines until it is stopped.
    counted = watch("--json", "events", "--count", "1", "--timeout", "30")
    plain = watch("events", "--timeout", "30")
    try:
        for proc in (counted, plain):
            read_until(proc, lambda ln: "event stream open" in ln, 20, stream="stderr")
        path = write("event.textproto", signed(XID_EVENT, "LI-0200",
                                               [("IDENTITY_TYPE_E164", TARGET_E164)]))
        expect_ok(ctl("warrant", "activate", path))
        seen = read_until(plain, lambda ln: f"xid={XID_EVENT}" in ln and
                          "warrant-accepted" in ln, 20)
        expect("liid=LI-0200" in seen[-1], seen)
        expect_ok(ctl("warrant", "deactivate", XID_EVENT, "--reason", "event test done"))
        seen += read_until(plain, lambda ln: f"xid={XID_EVENT}" in ln and
                           "warrant-deactivated" in ln, 20)
        no_targets("\n".join(seen), "the event lines")
        out, errs = counted.communicate(timeout=40)
        expect(counted.returncode == 0 and len(out.splitlines()) == 1, f"{out!r} {errs!r}")
        event = json.loads(out)
        expect(int(event["sequence"]) > 0 and event["kind"].startswith("EVENT_"), event)
    finally:
        for proc in (counted, plain):
            if proc.poll() is None:
                proc.kill()
            proc.communicate()


def t_deactivate():
    r = expect_ok(ctl("warrant", "deactivate", XID, "--reason", "order revoked"))
    expect("deactivated" in r.stdout, describe(r))
    no_targets(r.stdout, "the deactivate reply")
    r = expect_ok(ctl("--json", "warrant", "list", "--state", "active"))
    active = {w["warrant"]["xid"] for w in json.loads(r.stdout)["warrants"]}
    expect(XID not in active and XID_EMERGENCY in active, active)
    r = expect_ok(ctl("--json", "warrant", "list", "--state", "deactivated"))
    expect(XID in {w["warrant"]["xid"] for w in json.loads(r.stdout)["warrants"]}, describe(r))
    # The destination is free again only once no active warrant uses it.
    expect_refused(ctl("destination", "remove", "lemf-1"), "FAILED_PRECONDITION")


def t_audit_export():
    out = os.path.join(env.tmp, "exported-audit.log")
    r = ctl("audit", "export", "--out", out, role="auditor")
    if unimplemented(r, "audit export"):
        expect(not os.path.exists(out) and not os.path.exists(out + ".partial"),
               "a failed export left a file")
        return
    expect_ok(r)
    size = os.path.getsize(out)
    expect(size > 0 and f"wrote {size} bytes to {out}" in r.stdout, describe(r))
    no_targets(read(out).decode(errors="replace"), "the exported audit trail")
    expect(read(env.audit_log).startswith(read(out)),
           "the export is not the server's audit trail")
    expect(b"warrant_activate" in read(out), "no activation in the export")
    if os.access(env.audit_verify_bin, os.X_OK):
        v = env.verify_audit(out)
        expect(v.returncode == 0, f"audit verify: {v.stdout} {v.stderr}")
    else:
        checks.note("tapwire-audit-verify not built: export not verified")
    r = expect_ok(ctl("--json", "audit", "export", "--out", out, role="auditor"))
    expect(json.loads(r.stdout)["bytes"] >= size, describe(r))
    # Only the auditor exports.
    refused = os.path.join(env.tmp, "x.log")
    expect_refused(ctl("audit", "export", "--out", refused, role="operator"), "PERMISSION_DENIED")
    expect(not os.path.exists(refused), "refused export left a file")


try:
    server.start()
    checks.check_all((("health (table and JSON)", t_health),
                     ("usage errors exit 2", t_usage),
                     ("missing TLS material named, exit 2", t_missing_tls),
                     ("nothing listens: exit 3", t_unreachable),
                     ("foreign client CA, wrong server name: exit 3", t_tls_failures),
                     ("TAPWIRE_* environment", t_env),
                     ("destination create/list/modify/remove", t_destinations),
                     ("warrant activate (file, stdin), refusals", t_activate),
                     ("warrant get, NOT_FOUND exit 1", t_get),
                     ("warrant list table and JSON", t_list),
                     ("warrant modify", t_modify),
                     ("warrant confirm", t_confirm),
                     ("roles: PERMISSION_DENIED exit 1", t_roles),
                     ("status", t_status),
                     ("events --count/--timeout", t_events),
                     ("warrant deactivate", t_deactivate),
                     ("audit export verified", t_audit_export)))
finally:
    server.stop()
    env.cleanup(keep=checks.failed > 0)
checks.summary()
