"""A real meta-protocol client against memcrab: meta-memcache (PyPI).

usage: python3 scripts/meta-memcache-client.py PATH/TO/memcrab

Runs one session of the client's operations -- set/get of several types,
CAS writes that win and lose, add-refill, delete, invalidate with a stale
policy (serve stale, one client wins the recache), touch, multi-get,
counters, miss leases, long and non-ASCII keys (sent base64 with `b`) --
against memcrab and against Debian's memcached on loopback, and checks
that every call returns the same thing from both (CAS tokens compared by
their order of appearance). Exits non-zero on the first difference.
"""

import os
import shutil
import socket
import subprocess
import sys
import time

from meta_memcache import (
    CacheClient,
    Key,
    LeasePolicy,
    ServerAddress,
    SetMode,
    StalePolicy,
    connection_pool_factory_builder,
)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd):
    port = free_port()
    args = cmd + ["-p", str(port), "-U", "0", "-l", "127.0.0.1"]
    if os.geteuid() == 0 and "memcached" in os.path.basename(cmd[0]):
        args += ["-u", "root"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    sys.exit(f"{cmd[0]} did not start")


def client(port):
    return CacheClient.cache_client_from_servers(
        servers=[ServerAddress(host="127.0.0.1", port=port)],
        connection_pool_factory_fn=connection_pool_factory_builder(recv_timeout=2),
    )


class Cas:
    """Numbers CAS tokens by order of appearance (each server has its own)."""

    def __init__(self):
        self.seen = {}

    def label(self, token):
        if token is None:
            return None
        return self.seen.setdefault(token, f"cas#{len(self.seen)}")


def session(port):
    """Every call and what it returned, CAS tokens as labels."""
    c, other = client(port), client(port)
    cas = Cas()
    out = []

    def rec(name, value):
        out.append((name, value))

    rec("set str", c.set(Key("s"), "hello", ttl=100))
    rec("get str", c.get(Key("s")))
    rec("set bytes", c.set(Key("b"), b"\x00\x01raw", ttl=0))
    rec("get bytes", c.get(Key("b")))
    rec("set int", c.set(Key("i"), 42, ttl=0))
    rec("get int", c.get(Key("i")))
    rec("set dict", c.set(Key("d"), {"a": [1, 2, 3]}, ttl=0))
    rec("get dict", c.get(Key("d")))
    rec("get miss", c.get(Key("nope")))

    value, token = c.get_cas(Key("s"))
    rec("get_cas", (value, cas.label(token)))
    rec("set with the right cas", c.set(Key("s"), "v2", ttl=100, cas_token=token))
    rec("set with a stale cas", c.set(Key("s"), "v3", ttl=100, cas_token=token))
    rec("get after cas", c.get(Key("s")))
    new = c.set_cas(Key("s"), "v4", ttl=100)
    rec("set_cas", cas.label(new))

    rec("refill existing", c.refill(Key("s"), "other", ttl=100))
    rec("refill missing", c.refill(Key("r"), "filled", ttl=100))
    rec("get refilled", c.get(Key("r")))
    rec("append", c.set(Key("r"), "+tail", ttl=0, set_mode=SetMode.APPEND))
    rec("touch", c.touch(Key("r"), ttl=50))
    rec("touch miss", c.touch(Key("nope"), ttl=50))

    rec("delete", c.delete(Key("b")))
    rec("delete again", c.delete(Key("b")))
    rec("invalidate missing", c.invalidate(Key("b")))

    keys = [Key(f"m{i}") for i in range(20)]
    for i, k in enumerate(keys[::2]):
        c.set(k, f"value {i}", ttl=0)
    got = c.multi_get(keys)
    rec("multi_get", sorted((k.key, v) for k, v in got.items()))

    rec("delta miss", c.delta(Key("n"), 5))
    rec("delta_initialize", c.delta_initialize(Key("n"), 5, initial_value=10, initial_ttl=100))
    rec("delta", c.delta(Key("n"), 7))
    rec("delta_and_get", c.delta_and_get(Key("n"), 1))
    rec("delta_initialize_and_get", c.delta_initialize_and_get(Key("n2"), 1, 3, 100))

    # Serve stale: an invalidation marks the value stale; one reader wins
    # the recache (and is told it missed), the others keep the stale value.
    stale = StalePolicy(mark_stale_on_deletion_ttl=30)
    c.set(Key("page"), "v1", ttl=100)
    rec("invalidate as stale", c.invalidate(Key("page"), stale_policy=stale))
    rec("stale: winner", c.get(Key("page")))
    rec("stale: the others", other.get(Key("page")))
    rec("recache", c.set(Key("page"), "v2", ttl=100, stale_policy=stale))
    rec("after recache", other.get(Key("page")))

    # Miss leases: the first client to miss wins the right to fill.
    lease = LeasePolicy(ttl=30, miss_retries=2, miss_retry_wait=0.01)
    rec("lease: winner", c.get_or_lease(Key("hot"), lease))
    rec("lease: loser", other.get_or_lease(Key("hot"), lease))
    c.set(Key("hot"), "filled", ttl=100)
    rec("lease: filled", other.get_or_lease(Key("hot"), lease))

    # Keys the client sends base64-encoded: long and non-ASCII.
    long_key = Key("k" * 300)
    rec("long key set", c.set(long_key, "long", ttl=0))
    rec("long key get", c.get(long_key))
    uni = Key("ключ-κλειδί")
    rec("unicode key set", c.set(uni, "unicode", ttl=0))
    rec("unicode key get", c.get(uni))
    rec("unicode key delete", c.delete(uni))
    return out


def main():
    memcrab = sys.argv[1] if len(sys.argv) > 1 else "target/debug/memcrab"
    memcached = shutil.which("memcached") or "/usr/bin/memcached"
    procs = []
    try:
        results = []
        for cmd in ([memcached], [memcrab]):
            proc, port = start(cmd)
            procs.append(proc)
            results.append(session(port))
        want, got = results
        for (name, w), (_, g) in zip(want, got):
            if w != g:
                sys.exit(f"meta-memcache {name}: memcached {w!r}, memcrab {g!r}")
        print(f"meta-memcache: {len(want)} calls, memcrab answers as memcached 1.6 does")
    finally:
        for p in procs:
            p.kill()


if __name__ == "__main__":
    main()
