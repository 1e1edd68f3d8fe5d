#!/usr/bin/env python3
"""A real client over TLS: pymemcache with an ssl.SSLContext, the same
session against memcrab and memcached (both with -Z and the same
certificate; every call's result must agree), then mutual TLS
(ssl_verify_mode=2): a client without a certificate is refused by both, one
with a certificate the CA signed is served by both.

The certificates are made here, in a temporary directory, with the openssl
command-line tool: no private key is checked in.

Usage: python3 scripts/pymemcache-tls.py [path/to/memcrab]
Needs: pip install pymemcache; openssl. `bash scripts/test` runs it.
"""
import os
import ssl
import subprocess
import sys
import tempfile
import time

from pymemcache.client.base import Client

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/release/memcrab"
MEMCACHED = next((p for p in ["/usr/bin/memcached"] if os.path.exists(p)), None)
DIR = tempfile.mkdtemp(prefix="memcrab-tls-")
# memcached, started as root, runs as nobody: it must reach the port file
# and the certificates (throwaway ones).
os.chmod(DIR, 0o777)


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=DIR)


def make_pki():
    """A CA, a server certificate for localhost and 127.0.0.1, a client
    certificate: EC P-256 keys, all signed by the CA."""
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=memcrab test CA")
    for name, ext in [("server", "subjectAltName=DNS:localhost,IP:127.0.0.1"),
                      ("client", "extendedKeyUsage=clientAuth")]:
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
        with open(os.path.join(DIR, f"{name}.ext"), "w") as f:
            f.write(ext + "\n")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", f"{name}.pem", "-days", "2",
                "-extfile", f"{name}.ext")
    for f in os.listdir(DIR):
        os.chmod(path(f), 0o644)


def path(name):
    return os.path.join(DIR, name)


def start(cmd, opts):
    port_file = path(f"port.{len(os.listdir(DIR))}")
    env = dict(os.environ, MEMCACHED_PORT_FILENAME=port_file)
    tls = ["-Z", "-o", ",".join([f"ssl_chain_cert={path('server.pem')}",
                                 f"ssl_key={path('server.key')}"] + opts)]
    p = subprocess.Popen(cmd + ["-l", "127.0.0.1", "-p", "-1", "-U", "0"] + tls, env=env)
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


def context(client_cert=False):
    ctx = ssl.create_default_context(cafile=path("ca.pem"))
    if client_cert:
        ctx.load_cert_chain(path("client.pem"), path("client.key"))
    return ctx


def client(port, ctx):
    return Client(("localhost", port), tls_context=ctx, connect_timeout=5, timeout=5)


def outcome(f, *args, **kw):
    try:
        return f(*args, **kw)
    except Exception as e:  # the error class is part of what must agree
        return f"raised {type(e).__name__}"


def session(port):
    """Every text command pymemcache has, over TLS; the results in order."""
    c = client(port, context())
    big = bytes(range(256)) * 2000  # 512,000 bytes: many TLS records
    out = [
        outcome(c.version) != "",
        outcome(c.set, "k", b"v", expire=0, noreply=False),
        outcome(c.get, "k"),
        outcome(c.add, "k", b"x", noreply=False),
        outcome(c.add, "a", b"1", noreply=False),
        outcome(c.replace, "k", b"w", noreply=False),
        outcome(c.replace, "nope", b"w", noreply=False),
        outcome(c.append, "k", b"-end", noreply=False),
        outcome(c.prepend, "k", b"start-", noreply=False),
        outcome(c.get, "k"),
        outcome(c.incr, "a", 41),
        outcome(c.decr, "a", 2),
        outcome(c.incr, "nope", 1),
        outcome(c.touch, "a", 100, noreply=False),
        outcome(c.touch, "nope", 100, noreply=False),
        outcome(c.set_many, {f"m{i}": str(i).encode() for i in range(100)}, noreply=False),
        outcome(c.get_many, [f"m{i}" for i in range(0, 120, 3)]),
        outcome(c.set, "big", big, noreply=False),
        outcome(c.get, "big") == big,
        outcome(c.delete, "m1", noreply=False),
        outcome(c.delete, "m1", noreply=False),
        outcome(c.get, "m1"),
        outcome(c.set, "bad key", b"v", noreply=False),
    ]
    value, cas = c.gets("k")
    out.append(value)
    out.append(outcome(c.cas, "k", b"new", cas, noreply=False))
    out.append(outcome(c.cas, "k", b"newer", cas, noreply=False))
    out.append(outcome(c.get, "k"))
    st = c.stats()
    out.append(st.get(b"curr_items"))
    out.append(sorted(k for k in st if k.startswith(b"ssl_")))
    out.append(outcome(c.flush_all, noreply=False))
    out.append(outcome(c.get, "k"))
    c.close()
    return out


def mutual(port):
    """ssl_verify_mode=2: refused without a client certificate, served with
    one."""
    refused = outcome(lambda: client(port, context()).set("k", b"v", noreply=False))
    served = outcome(lambda: client(port, context(True)).set("k", b"v", noreply=False))
    return [refused.startswith("raised"), served]


def main():
    make_pki()
    runs = {}
    servers = [("memcrab", [BIN])] + ([("memcached", [MEMCACHED, "-u", "nobody"])]
                                       if MEMCACHED else [])
    for name, cmd in servers:
        p, port = start(cmd, [])
        try:
            runs[name] = session(port)
        finally:
            p.terminate()
            p.wait()
        p, port = start(cmd, ["ssl_verify_mode=2", f"ssl_ca_cert={path('ca.pem')}"])
        try:
            runs[name] += mutual(port)
        finally:
            p.terminate()
            p.wait()
    got = runs["memcrab"]
    if os.environ.get("SHOW"):
        print(got)
    if not all(x is not False for x in got[:1]) or got[-2:] != [True, True]:
        sys.exit(f"FAIL memcrab over TLS: {got!r}")
    if MEMCACHED:
        want = runs["memcached"]
        for i, (g, w) in enumerate(zip(got, want)):
            if g != w:
                sys.exit(f"FAIL step {i}: memcrab {g!r}, memcached {w!r}")
        print(f"pymemcache over TLS: {len(got)} results, memcrab and memcached agree")
    else:
        print(f"pymemcache over TLS: {len(got)} results (memcached not installed: no comparison)")


if __name__ == "__main__":
    main()
