"""A fixed request stream for scripts/instructions-per-request.

usage: request-stream.py PORT N DEPTH MODE

Prefills k0..k999 with 100-byte values (text, noreply, then `mn`), then
sends N requests in batches of DEPTH and reads every reply. MODE: text-get,
text-set (half gets, half sets), meta-get (`mg <key> v f t c`), bin-get
(binary GetK on a new connection, each batch closed by a NoOp). Seeded:
the same stream every time.
"""
import random
import socket
import sys

port, n, depth, mode = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
rng = random.Random(7)
value = b"x" * 100


def connect():
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_until(s, done):
    buf = b""
    while not done(buf):
        chunk = s.recv(1 << 20)
        if not chunk:
            sys.exit("server closed the connection")
        buf += chunk


s = connect()
for i in range(0, 1000, 50):
    s.sendall(b"".join(b"set k%d 0 0 100 noreply\r\n%s\r\n" % (j, value) for j in range(i, i + 50)))
s.sendall(b"mn\r\n")
read_until(s, lambda b: b.endswith(b"MN\r\n"))
if mode == "bin-get":
    s.close()
    s = connect()  # a connection's first byte chooses its protocol

noop_reply = bytes([0x81, 0x0A]) + bytes(22)
sent = 0
while sent < n:
    reqs, gets, sets = [], 0, 0
    for _ in range(depth):
        key = b"k%d" % rng.randrange(1000)
        if mode == "bin-get":
            header = bytes([0x80, 0x0C]) + len(key).to_bytes(2, "big") + bytes(4)
            reqs.append(header + len(key).to_bytes(4, "big") + bytes(12) + key)
        elif mode == "meta-get":
            reqs.append(b"mg %s v f t c\r\n" % key)
            gets += 1
        elif mode == "text-get" or rng.random() < 0.5:
            reqs.append(b"get %s\r\n" % key)
            gets += 1
        else:
            reqs.append(b"set %s 0 0 100\r\n%s\r\n" % (key, value))
            sets += 1
    if mode == "bin-get":
        reqs.append(bytes([0x80, 0x0A]) + bytes(22))
        s.sendall(b"".join(reqs))
        read_until(s, lambda b: b.endswith(noop_reply))
    elif mode == "meta-get":
        s.sendall(b"".join(reqs))
        read_until(s, lambda b: b.count(b"VA ") >= gets and b.endswith(b"\r\n"))
    else:
        s.sendall(b"".join(reqs))
        read_until(s, lambda b: b.count(b"END\r\n") >= gets and b.count(b"STORED\r\n") >= sets)
    sent += depth
s.close()
