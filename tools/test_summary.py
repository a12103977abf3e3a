#!/usr/bin/env python3
"""Adds up meson test logs into one closing line "N passed, N failed".

A Catch2 program counts as its test cases (read from its own summary line), a scripted
suite that prints "N passed, N failed" as those; any other test program counts as one. A
build or setup failure that left no log counts as a failure. A failed test's last lines are
printed too, so that a log that only keeps its tail still says why.
"""
import json
import re
import sys

CATCH_ALL = re.compile(r"All tests passed \(\d+ assertions? in (\d+) test cases?\)")
CATCH_MIXED = re.compile(r"test cases:\s*(\d+)\s*\|\s*(\d+) passed\s*\|\s*(\d+) failed")
PLAIN = re.compile(r"^(\d+) passed, (\d+) failed", re.M)  # our own scripted suites
TAIL_LINES = 25


def count(entry):
    out = entry.get("stdout") or ""
    ok = entry["result"] in ("OK", "EXPECTEDFAIL")
    if entry["result"] == "SKIP":
        return 0, 0, 1
    m = CATCH_MIXED.search(out)
    if m:
        passed, failed = int(m.group(2)), int(m.group(3))
        return passed, failed if failed or ok else 1, 0
    m = CATCH_ALL.search(out)
    if m and ok:
        return int(m.group(1)), 0, 0
    m = PLAIN.search(out)
    if m:
        passed, failed = int(m.group(1)), int(m.group(2))
        return passed, failed if failed or ok else 1, 0
    return (1, 0, 0) if ok else (0, 1, 0)


def main(paths):
    passed = failed = skipped = 0
    failures = []
    for path in paths:
        try:
            lines = open(path).read().splitlines()
        except OSError:
            print(f"no test log at {path} (build failed?)")
            failed += 1
            continue
        for line in lines:
            entry = json.loads(line)
            p, f, s = count(entry)
            passed, failed, skipped = passed + p, failed + f, skipped + s
            if f:
                failures.append((entry, path))
    for entry, path in failures:
        print(f"--- last lines of {entry['name']} ({entry['result']}):")
        for line in (entry.get("stdout") or "").splitlines()[-TAIL_LINES:]:
            print(f"    {line}")
    for entry, path in failures:
        print(f"FAILED: {entry['name']} ({path})")
    tail = f", {skipped} skipped" if skipped else ""
    print(f"{passed} passed, {failed} failed{tail}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
