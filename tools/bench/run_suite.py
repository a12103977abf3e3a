#!/usr/bin/python3
"""The whole benchmark suite in one command, and one table of its key figures.

Runs, one after the other (each on its own: they share the machine's cores), and keeps each
program's full output under OUT (default BUILD/bench-suite/):
  dataplane   tapwire-bench-dataplane   M1, 100k targets, one worker core vs rx + recycle
  e2e         bench_e2e.py              pktgen -> memif -> dataplane -> control plane -> LEMF:
                                        highest zero-loss rate, latency at half of it
  activation  bench_activation.py       warrant effective / first hit, provisioning rate
  handover    tapwire-bench-handover    records encoded and delivered per second per format
  memory      tapwire-bench-memory      bytes per active call and per target
then prints the table with the machine and the command. Every figure comes from a program
that prints its own median and spread with a baseline from the same run; the table quotes
them. --quick is CI's smoke run: every benchmark in its short mode, and the suite fails
when a benchmark fails or a figure is missing, zero, or a baseline is not above the
pipeline it bounds; it never judges a figure against a target.

Usage: run_suite.py [--build DIR] [--out DIR] [--quick] [--only NAME,...]
"""
import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.dirname(os.path.dirname(HERE))
PY = "/usr/bin/python3"
FORMATS = ("etsi-102232", "etsi-x2x3", "calea-pcesp")


def machine():
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} CPUs, Linux {platform.release()}"


def last(pattern, text, flags=re.M):
    found = re.findall(pattern, text, flags)
    return found[-1] if found else None


def number(v):
    return float(v) if v is not None else None


class Suite:
    def __init__(self, args):
        self.args = args
        self.build = os.path.abspath(args.build)
        self.out = os.path.abspath(args.out or os.path.join(self.build, "bench-suite"))
        os.makedirs(self.out, exist_ok=True)
        self.rows = []      # (section, figure, value, baseline)
        self.problems = []
        self.figures = {}

    def run(self, name, argv):
        quick = ["--quick"] if self.args.quick else []
        started = time.time()
        print(f"suite: {name}: {' '.join(argv + quick)}", flush=True)
        r = subprocess.run(argv + quick, capture_output=True, text=True, cwd=SOURCE)
        with open(os.path.join(self.out, f"{name}.txt"), "w") as f:
            f.write(r.stdout + r.stderr)
        print(f"suite: {name}: exit {r.returncode} after {time.time() - started:.0f} s "
              f"(output: {os.path.join(self.out, name + '.txt')})", flush=True)
        if r.returncode != 0:
            self.problems.append(f"{name} exited {r.returncode} (see its output)")
            for line in (r.stdout + r.stderr).splitlines()[-20:]:  # why, also in a clipped log
                print(f"suite: {name}:   {line}", flush=True)
        return r.stdout

    def figure(self, key, value, section, label, unit="", baseline=""):
        """Records one figure; a missing or zero one is a problem (the smoke check)."""
        self.figures[key] = value
        if value is None or value <= 0:
            self.problems.append(f"{section}: {label}: missing or zero")
            shown = "MISSING"
        else:
            shown = f"{value:,.2f}".rstrip("0").rstrip(".") + (f" {unit}" if unit else "")
        self.rows.append((section, label, shown, baseline))

    # ---- the benchmarks ------------------------------------------------------------------

    def dataplane(self):
        out = self.run("dataplane", [os.path.join(self.build, "tools/bench/tapwire-bench-dataplane")])
        base = number(last(r"baseline: rx \+ recycle\s+([\d.]+)", out))
        pipe = last(r"pipeline: Worker::run \(inline\)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)", out)
        med = number(pipe[0]) if pipe else None
        spread = f"p10-p90 {pipe[1]}-{pipe[2]}" if pipe else ""
        targets = last(r"^targets:\s+(\d+) identities", out) or "?"
        self.figure("dataplane_mpps", med, "dataplane", f"M1, {int(targets):,} targets, per worker core"
                    if targets != "?" else "M1, per worker core",
                    "Mpps", f"rx + recycle {base:,.0f} Mpps ({spread})" if base else "")
        if base is not None and med is not None and base <= med:
            self.problems.append("dataplane: the rx + recycle baseline is not above the pipeline")
        if base and med:
            self.rows.append(("dataplane", "  baseline / pipeline", f"{base / med:.0f}x", ""))

    def e2e(self):
        summary = os.path.join(self.out, "e2e.json")
        if os.path.exists(summary):
            os.unlink(summary)
        self.run("e2e", [PY, os.path.join(HERE, "bench_e2e.py"), "--build", self.build,
                         "--summary-json", summary])
        try:
            with open(summary) as f:
                s = json.load(f)
        except (OSError, ValueError):
            s = {}
        self.figure("e2e_zero_loss_pps", number(s.get("zero_loss_pps")), "end to end",
                    "highest zero-loss rate (pktgen -> memif -> LEMF)", "pkt/s",
                    f"{s.get('zero_loss_records_per_s', 0):,.0f} intercepted records/s")
        self.figure("e2e_latency_p50_ms", number(s.get("latency_half_p50_ms")), "end to end",
                    "packet-in -> LEMF-out at half that rate, p50", "ms",
                    f"at a tenth: p50 {s.get('latency_low_p50_ms', 0):.3f} ms")
        self.figure("e2e_latency_p99_ms", number(s.get("latency_half_p99_ms")), "end to end",
                    "packet-in -> LEMF-out at half that rate, p99", "ms",
                    f"at a tenth: p99 {s.get('latency_low_p99_ms', 0):.3f} ms")

    def activation(self):
        out = self.run("activation", [PY, os.path.join(HERE, "bench_activation.py"), self.build,
                                      SOURCE])
        rtt = last(r"gRPC Warrants\.Get round trip p50 ([\d.]+) ms", out)
        rows = list(re.finditer(
            r"^\s*(?P<scale>\d+)\s+\d+ \|\s+(?P<reply>[\d.]+) \|\s+(?P<eff50>[\d.]+)\s+"
            r"(?P<eff99>[\d.]+)\s+[\d.]+ \|\s+[\d.]+\s+(?P<hit99>[\d.]+)", out, re.M))
        row = rows[-1].groupdict() if rows else {}
        scale = row.get("scale", "?")
        base = f"Activate reply p50 {row.get('reply', '?')} ms, gRPC Get round trip p50 {rtt} ms"
        self.figure("activation_effective_p50_ms", number(row.get("eff50")), "activation",
                    f"effective in the dataplane at {scale} targets, p50", "ms", base)
        self.figure("activation_effective_p99_ms", number(row.get("eff99")), "activation",
                    f"effective in the dataplane at {scale} targets, p99", "ms")
        self.figure("activation_first_hit_p99_ms", number(row.get("hit99")), "activation",
                    f"first intercepted packet at {scale} targets, p99", "ms")
        for clients, rate in re.findall(r"provisioning, (\d+) client\(s\): (\d+) warrants/s", out):
            self.figure(f"provisioning_{clients}_clients", number(rate), "activation",
                        f"provisioning, {clients} client(s)", "warrants/s", "fsync-bound")

    def handover(self):
        out = self.run("handover", [os.path.join(self.build, "tools/bench/tapwire-bench-handover")])
        copy = last(r"baseline: copy 214 B packet\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+([\d.]+)", out)
        for fmt in FORMATS:
            for kind in ("CC", "IRI"):
                enc = last(rf"^\s+{fmt} {kind} \((?:RTP|SIP)[^)]*\)\s+[\d.]+\s+[\d.]+\s+[\d.]+"
                           r"\s+([\d.]+)", out)
                dlv = last(rf"^\s+{fmt} {kind} delivered\s+\d+\s+(\d+)", out)
                self.figure(f"handover_{fmt}_{kind}_encode", number(enc), "handover",
                            f"{fmt} {kind}: encoded on one core", "M records/s",
                            f"copy 214 B: {copy} M/s" if copy and kind == "CC" else "")
                self.figure(f"handover_{fmt}_{kind}_delivered",
                            number(dlv) / 1000 if dlv else None, "handover",
                            f"{fmt} {kind}: spooled and delivered over TCP", "M records/s")

    def memory(self):
        out = self.run("memory", [os.path.join(self.build, "tools/bench/tapwire-bench-memory")])
        call = last(r"bytes per call \(reserved / max_dialogs\)\s+([\d.]+)", out)
        target = last(r"marginal .*?all-in (\d+) B", out)
        self.figure("memory_per_call_bytes", number(call), "memory",
                    "per active call (dataplane flow tables)", "B")
        self.figure("memory_per_target_bytes", number(target), "memory",
                    "per target (compiled set, all-in, marginal)", "B")

    # ---- report --------------------------------------------------------------------------

    def report(self, command):
        print()
        print(f"Tapwire benchmark suite{' (quick smoke run)' if self.args.quick else ''}: "
              f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")
        print(f"machine: {machine()}")
        print(f"command: {command}")
        print()
        w1 = max(len(r[1]) for r in self.rows) if self.rows else 10
        w2 = max(len(r[2]) for r in self.rows) if self.rows else 10
        section = None
        for sec, label, value, base in self.rows:
            if sec != section:
                print(f"{sec}")
                section = sec
            print(f"  {label:<{w1}}  {value:>{w2}}   {base}")
        with open(os.path.join(self.out, "suite.json"), "w") as f:
            json.dump({"machine": machine(), "quick": self.args.quick, "figures": self.figures,
                       "problems": self.problems}, f, indent=1)
        print()
        if self.problems:
            print("PROBLEMS:")
            for p in self.problems:
                print(f"  {p}")
        else:
            print(f"all benchmarks ran; figures in {os.path.join(self.out, 'suite.json')}, "
                  f"full outputs next to it")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(SOURCE, "build"))
    ap.add_argument("--out")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", help="comma-separated: dataplane,e2e,activation,handover,memory")
    args = ap.parse_args()
    suite = Suite(args)
    names = ["dataplane", "e2e", "activation", "handover", "memory"]
    chosen = args.only.split(",") if args.only else names
    for name in chosen:
        if name not in names:
            sys.exit(f"run_suite: unknown benchmark {name} (known: {', '.join(names)})")
        getattr(suite, name)()
    suite.report("/usr/bin/python3 tools/bench/run_suite.py --build " +
                 os.path.relpath(suite.build, SOURCE) + (" --quick" if args.quick else "") +
                 (f" --only {args.only}" if args.only else ""))
    sys.exit(1 if suite.problems else 0)


if __name__ == "__main__":
    main()
