#!/usr/bin/python3
"""The canonical encoding of a tapwire.v1.Warrant, in Python, byte for byte as
controlplane/warrant.hpp (canonical_encoding) defines it: what an issuing authority signs
with Ed25519. test_warrant compares this implementation with the C++ one.

Usage as a module:  canonical_encoding(warrant_message) -> bytes
Usage as a program: warrant_canonical.py [--stubs DIR] WARRANT.textproto
  prints the canonical encoding of a text-format Warrant to stdout. The generated Python
  stubs (tapwire/v1/controlplane_pb2.py) are imported from DIR, else from sys.path, else
  generated into a temporary directory with protoc from the repository's proto/.
"""

import atexit
import os
import shutil
import subprocess
import sys
import tempfile

_HEX = "0123456789ABCDEF"


def percent_escape(value):
    """'%' and every byte outside 0x20..0x7E become %XX (upper-case hex), per UTF-8 byte."""
    data = value.encode("utf-8") if isinstance(value, str) else bytes(value)
    out = []
    for b in data:
        if 0x20 <= b <= 0x7E and b != 0x25:
            out.append(chr(b))
        else:
            out.append("%" + _HEX[b >> 4] + _HEX[b & 0x0F])
    return "".join(out)


def _time(message, field):
    if not message.HasField(field):
        return ""
    t = getattr(message, field)
    # printf "%09d": zero-padded to 9 characters, sign included.
    return "%d.%09d" % (t.seconds, t.nanos)


def canonical_encoding(warrant):
    """The bytes the authority's Ed25519 signature covers (every field but signature)."""
    lines = ["tapwire-warrant-v1"]
    lines.append("xid=" + percent_escape(warrant.xid))
    lines.append("liid=" + percent_escape(warrant.liid))
    for target in warrant.targets:
        lines.append("target=%d:%s" % (int(target.type), percent_escape(target.value)))
    lines.append("delivery=%d" % int(warrant.delivery_type))
    for destination in warrant.destination_ids:
        lines.append("destination=" + percent_escape(destination))
    lines.append("valid_from=" + _time(warrant, "valid_from"))
    lines.append("valid_until=" + _time(warrant, "valid_until"))
    legal = warrant.legal  # the default instance when unset
    lines.append("authority=" + percent_escape(legal.issuing_authority))
    lines.append("reference=" + percent_escape(legal.reference))
    lines.append("jurisdiction=" + percent_escape(legal.jurisdiction))
    lines.append("kind=%d" % int(legal.kind))
    lines.append("confirmation=" + percent_escape(legal.confirmation_reference))
    lines.append("key_id=" + percent_escape(warrant.key_id))
    # Every character is ASCII by now.
    return ("\n".join(lines) + "\n").encode("ascii")


def _import_stubs(stubs_dir):
    if stubs_dir:
        sys.path.insert(0, stubs_dir)
    try:
        from tapwire.v1 import controlplane_pb2  # noqa: F401
        return controlplane_pb2
    except ImportError:
        if stubs_dir:
            raise
    proto_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "proto")
    out = tempfile.mkdtemp(prefix="tapwire-pb2-")
    atexit.register(shutil.rmtree, out, True)
    subprocess.run(
        ["protoc", "-I", proto_dir, "--python_out=" + out,
         os.path.join(proto_dir, "tapwire", "v1", "identity.proto"),
         os.path.join(proto_dir, "tapwire", "v1", "controlplane.proto")],
        check=True)
    sys.path.insert(0, out)
    from tapwire.v1 import controlplane_pb2
    return controlplane_pb2


def main(argv):
    stubs = None
    args = argv[1:]
    if len(args) >= 2 and args[0] == "--stubs":
        stubs, args = args[1], args[2:]
    if len(args) != 1:
        sys.stderr.write("usage: warrant_canonical.py [--stubs DIR] WARRANT.textproto\n")
        return 2
    controlplane_pb2 = _import_stubs(stubs)
    from google.protobuf import text_format

    with open(args[0], "r", encoding="utf-8") as f:
        warrant = text_format.Parse(f.read(), controlplane_pb2.Warrant())
    sys.stdout.buffer.write(canonical_encoding(warrant))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
