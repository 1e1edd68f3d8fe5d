#!/usr/bin/env python3
"""A client in another language: pylibmc (libmemcached) in binary mode,
the same session against memcrab and memcached (every call's result or
error must agree), then SASL PLAIN through the same library.

Usage: python3 scripts/pylibmc-binary.py [path/to/memcrab]
Needs: pip install pylibmc (with libmemcached-dev), libsasl2-modules for
the PLAIN mechanism on the client side. `bash scripts/test` runs it.
"""
import glob
import os
import subprocess
import sys
import tempfile
import time

# pylibmc's wheel carries its own libsasl2, which looks for mechanism
# plugins where its build machine kept them; point it at Debian's
# (package libsasl2-modules, for PLAIN).
if not os.environ.get("SASL_PATH"):
    found = glob.glob("/usr/lib/*/sasl2/libplain.so*") + glob.glob("/usr/lib/sasl2/libplain.so*")
    if found:
        os.environ["SASL_PATH"] = os.path.dirname(found[0])

import pylibmc  # noqa: E402

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/release/memcrab"
# The same session against memcached, when it is installed.
MEMCACHED = next((p for p in ["/usr/bin/memcached"] if os.path.exists(p)), None)


def start(cmd):
    fd, port_file = tempfile.mkstemp(suffix=".port")
    os.close(fd)
    os.unlink(port_file)
    env = dict(os.environ, MEMCACHED_PORT_FILENAME=port_file)
    p = subprocess.Popen(cmd + ["-l", "127.0.0.1", "-p", "-1", "-U", "0"], env=env)
    for _ in range(200):
        try:
            for line in open(port_file):
                if line.startswith("TCP INET: "):
                    return p, int(line.split()[-1])
        except OSError:
            pass
        if p.poll() is not None:
            sys.exit(f"{cmd[0]} exited: {p.returncode}")
        time.sleep(0.02)
    sys.exit(f"{cmd[0]} did not start")


def check(what, got, want):
    if got != want:
        sys.exit(f"FAIL {what}: got {got!r}, want {want!r}")


def outcome(f, *args):
    """What a call returned, or the pylibmc error it raised."""
    try:
        return f(*args)
    except pylibmc.Error as e:
        return type(e).__name__


def session(port):
    """A client's session in binary mode; the list of what each call gave."""
    mc = pylibmc.Client([f"127.0.0.1:{port}"], binary=True)
    check("binary mode", mc.binary, True)
    data = {f"key{i}": f"value-{i}" * (i + 1) for i in range(200)}
    big = b"\x00\xff" * 300_000
    steps = [
        ("set", mc.set, "greeting", "hello"),
        ("get", mc.get, "greeting"),
        ("get miss", mc.get, "nothing-here"),
        ("set_multi", mc.set_multi, data),
        ("get_multi", mc.get_multi, list(data) + ["absent"]),
        ("add existing", mc.add, "greeting", "x"),
        ("add new", mc.add, "fresh", "x"),
        ("replace missing", mc.replace, "missing", "x"),
        ("replace", mc.replace, "fresh", "y"),
        ("append", mc.append, "fresh", "z"),
        ("prepend", mc.prepend, "fresh", "w"),
        ("append missing", mc.append, "missing", "w"),
        ("get appended", mc.get, "fresh"),
        ("set number", mc.set, "n", 10),
        ("incr", mc.incr, "n", 5),
        ("decr", mc.decr, "n", 20),
        ("incr missing", mc.incr, "missing", 1),
        # (Not incr of a non-number: libmemcached misreads memcached's
        # error body there and marks the server down, with either server.)
        ("set big", mc.set, "big", big),
        ("get big", mc.get, "big"),
        ("set too big", mc.set, "huge", b"h" * (2 << 20)),
        ("pickled", mc.set, "obj", {"a": [1, 2, 3]}),
        ("get pickled", mc.get, "obj"),
        ("touch", mc.touch, "greeting", 100),
        ("touch missing", mc.touch, "missing", 100),
        ("delete", mc.delete, "greeting"),
        ("delete again", mc.delete, "greeting"),
        ("delete_multi", mc.delete_multi, ["key1", "key2", "absent"]),
    ]
    got = [(name, outcome(f, *args)) for name, f, *args in steps]
    mc.behaviors["cas"] = True
    value, cas = mc.gets("obj")
    got.append(("gets", value))
    got.append(("cas ok", outcome(mc.cas, "obj", "hi", cas)))
    got.append(("cas stale", outcome(mc.cas, "obj", "ho", cas)))
    got.append(("get after cas", mc.get("obj")))
    got.append(("stats version", dict(mc.get_stats()[0][1]).get("version")))
    got.append(("flush", outcome(mc.flush_all)))
    got.append(("get flushed", mc.get("fresh")))
    return got


def sasl(port):
    good = pylibmc.Client([f"127.0.0.1:{port}"], binary=True, username="alice", password="secret")
    check("sasl set", good.set("k", "v"), True)
    check("sasl get", good.get("k"), "v")
    bad = pylibmc.Client([f"127.0.0.1:{port}"], binary=True, username="alice", password="wrong")
    try:
        bad.set("k", "w")
        sys.exit("FAIL sasl: a wrong password was let in")
    except pylibmc.Error as e:
        print(f"pylibmc SASL: wrong password refused ({type(e).__name__})")
    check("value unchanged", good.get("k"), "v")
    print("pylibmc SASL PLAIN: login works")


def main():
    p, port = start([BIN])
    try:
        mine = session(port)
    finally:
        p.kill()
    if MEMCACHED:
        p, port = start([MEMCACHED, "-u", "root"])
        try:
            theirs = session(port)
        finally:
            p.kill()
        for (name, a), (_, b) in zip(mine, theirs):
            check(name, a, b)
        print(f"pylibmc binary: {len(mine)} calls, memcrab answers as memcached 1.6 does")
    with tempfile.NamedTemporaryFile("w", suffix=".users", delete=False) as f:
        f.write("alice:secret\n")
    p, port = start([BIN, "-S", "-o", f"sasl_file={f.name}"])
    try:
        sasl(port)
    finally:
        p.kill()
        os.unlink(f.name)
    print("pylibmc: all passed")


main()
