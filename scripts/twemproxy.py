#!/usr/bin/env python3
"""Scale-out as operators run it: three memcrab nodes behind twemproxy
(nutcracker, Debian's package) with ketama over fnv1a_64 and
auto_eject_hosts, and the same nodes under pylibmc's own ketama.

Through the proxy: 10,000 keys set and read back; each node holds its
share; one node killed: once ejected, only its keys miss and new sets
land on the others; brought back: it takes its share of keys again.
pylibmc with ketama: 10,000 keys spread, read back; a node killed: the
other nodes' keys still read.

Usage: scripts/twemproxy.py path/to/memcrab
"""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pylibmc
from pymemcache.client.base import Client
from pymemcache.exceptions import MemcacheError

KEYS = [f"user:{i}:profile" for i in range(10_000)]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, proc, what):
    deadline = time.time() + 10
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{what} exited early: {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"{what} did not open port {port}")


def start_node(binary, port):
    p = subprocess.Popen([binary, "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-t", "2"])
    wait_port(port, p, f"memcrab on {port}")
    return p


def node_keys(port):
    """Which of KEYS a node holds, asked of the node itself."""
    c = Client(("127.0.0.1", port), timeout=5, default_noreply=False)
    held = set()
    for i in range(0, len(KEYS), 500):
        held.update(c.get_many(KEYS[i : i + 500]).keys())
    c.close()
    return {k.decode() if isinstance(k, bytes) else k for k in held}


def check(cond, msg):
    if not cond:
        sys.exit(f"FAIL: {msg}")
    print(f"ok: {msg}")


def proxy_get_all(c):
    got = {}
    for i in range(0, len(KEYS), 200):
        got.update(c.get_many(KEYS[i : i + 200]))
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in got.items()}


def twemproxy(binary):
    ports = [free_port() for _ in range(3)]
    nodes = [start_node(binary, p) for p in ports]
    proxy_port = free_port()
    conf = tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False)
    conf.write(
        f"""memcrab:
  listen: 127.0.0.1:{proxy_port}
  hash: fnv1a_64
  distribution: ketama
  auto_eject_hosts: true
  server_retry_timeout: 2000
  server_failure_limit: 1
  timeout: 1000
  servers:
"""
        + "".join(f"   - 127.0.0.1:{p}:1 node{i}\n" for i, p in enumerate(ports))
    )
    conf.close()
    log = tempfile.NamedTemporaryFile(suffix=".log", delete=False).name
    proxy = subprocess.Popen(["nutcracker", "-c", conf.name, "-o", log, "-s", str(free_port())])
    try:
        wait_port(proxy_port, proxy, "nutcracker")
        c = Client(("127.0.0.1", proxy_port), timeout=5, default_noreply=False)
        for k in KEYS:
            c.set(k, k.encode())
        got = proxy_get_all(c)
        check(len(got) == len(KEYS) and all(got[k] == k.encode() for k in KEYS),
              "10,000 keys set and read back through nutcracker (ketama, fnv1a_64)")
        shares = [node_keys(p) for p in ports]
        sizes = [len(s) for s in shares]
        check(sum(sizes) == len(KEYS) and all(2000 < n < 5000 for n in sizes),
              f"each node holds its share, none twice: {sizes}")

        # Kill node 1: the proxy ejects it after a failure.
        victim = 1
        nodes[victim].send_signal(signal.SIGTERM)
        nodes[victim].wait(10)
        lost = shares[victim]
        deadline = time.time() + 10
        while True:
            try:
                got = proxy_get_all(c)
                break
            except (MemcacheError, OSError):
                # The request that found the node dead fails; the node is
                # ejected with it.
                c.close()
                c = Client(("127.0.0.1", proxy_port), timeout=5, default_noreply=False)
                if time.time() > deadline:
                    sys.exit("FAIL: the proxy kept failing after the node died")
                time.sleep(0.1)
        kept = set(KEYS) - lost
        check(set(got) == kept,
              f"with node{victim} down, only its {len(lost)} keys miss ({len(got)} still read)")
        for k in list(lost)[:200]:
            check_set = c.set(k, b"moved")
            if not check_set:
                sys.exit(f"FAIL: set {k} through the proxy with node{victim} down")
        moved = sum(len(node_keys(p) & set(list(lost)[:200])) for i, p in enumerate(ports) if i != victim)
        check(moved == 200, "sets of its keys land on the nodes left")

        # Bring it back: after server_retry_timeout the proxy uses it again.
        nodes[victim] = start_node(binary, ports[victim])
        deadline = time.time() + 15
        while True:
            time.sleep(0.5)
            try:
                c.set("probe", b"x")
                for k in list(lost)[:50]:
                    c.set(k, b"back")
            except (MemcacheError, OSError):
                c.close()
                c = Client(("127.0.0.1", proxy_port), timeout=5, default_noreply=False)
                continue
            if len(node_keys(ports[victim]) & set(list(lost)[:50])) == 50:
                break
            if time.time() > deadline:
                sys.exit("FAIL: the restored node got no keys back")
        check(True, f"node{victim} back: its keys go to it again")
        c.close()
    finally:
        proxy.kill()
        for n in nodes:
            n.kill()
        os.unlink(conf.name)


def pylibmc_ketama(binary):
    ports = [free_port() for _ in range(3)]
    nodes = [start_node(binary, p) for p in ports]
    try:
        mc = pylibmc.Client([f"127.0.0.1:{p}" for p in ports],
                            behaviors={"ketama": True, "remove_failed": 1, "retry_timeout": 1})
        for i in range(0, len(KEYS), 500):
            mc.set_multi({k: k for k in KEYS[i : i + 500]})
        got = {}
        for i in range(0, len(KEYS), 500):
            got.update(mc.get_multi(KEYS[i : i + 500]))
        check(len(got) == len(KEYS) and all(got[k] == k for k in KEYS),
              "pylibmc ketama: 10,000 keys set and read back")
        shares = [node_keys(p) for p in ports]
        sizes = [len(s) for s in shares]
        check(sum(sizes) == len(KEYS) and all(2000 < n < 5000 for n in sizes),
              f"pylibmc ketama: each node holds its share: {sizes}")
        nodes[2].kill()
        nodes[2].wait(10)
        kept = shares[0] | shares[1]
        got = {}
        errors = 0
        for k in sorted(kept):
            # The first requests that meet the dead node fail (libmemcached
            # then drops it: remove_failed); a key of a live node reads.
            for _ in range(3):
                try:
                    v = mc.get(k)
                    if v is not None:
                        got[k] = v
                    break
                except pylibmc.Error:
                    errors += 1
        check(kept == set(got),
              f"pylibmc ketama: a node down, the others' {len(kept)} keys still read ({errors} errors on the way)")
    finally:
        for n in nodes:
            n.kill()


if __name__ == "__main__":
    binary = os.path.abspath(sys.argv[1])
    twemproxy(binary)
    pylibmc_ketama(binary)
    print("twemproxy and ketama: all passed")
