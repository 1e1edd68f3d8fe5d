#!/usr/bin/env python3
"""500 slow readers of 2 MB multigets and a probe, against one server binary.

usage: scripts/slow-readers-probe.py BINARY PORT

Starts BINARY (memcrab or memcached flags: -m 64 -o read_buf_mem_limit=8
-c 4096), sets 100 values of 20 KB, starts a probe (a set and a get every
10 ms), opens 500 connections with 4 KB receive buffers that each send a
get of all 100 keys and never read, waits 3 s, and prints the probe's
worst round trip and the server's peak RSS (VmHWM)."""
binary=sys.argv[1]; port=int(sys.argv[2])
p=subprocess.Popen([binary,"-p",str(port),"-U","0","-m","64","-o","read_buf_mem_limit=8","-c","4096"])
time.sleep(0.5)
def conn(rcv=None):
    s=socket.socket()
    if rcv: s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcv)
    s.connect(("127.0.0.1",port)); return s
a=conn(); v=b"m"*20000
for i in range(100):
    a.sendall(b"set big:%d 0 0 20000\r\n"%i+v+b"\r\n"); r=b""
    while not r.endswith(b"STORED\r\n"): r+=a.recv(100)
get=b"get"+b"".join(b" big:%d"%i for i in range(100))+b"\r\n"
stop=False; worst=[0.0]; trips=[0]
def probe():
    c=conn(); i=0
    while not stop:
        t=time.time(); c.sendall(b"set p 0 0 1\r\nx\r\nget p\r\n"); r=b""
        while not r.endswith(b"END\r\n"): r+=c.recv(1000)
        worst[0]=max(worst[0],time.time()-t); trips[0]+=1; time.sleep(0.01)
th=threading.Thread(target=probe); th.start(); time.sleep(0.1)
cs=[]
for _ in range(500):
    c=conn(4096); c.sendall(get); cs.append(c)
time.sleep(3)
stop=True; th.join()
hwm=[l for l in open(f"/proc/{p.pid}/status") if l.startswith("VmHWM")][0].split()[1]
print(os.path.basename(binary), "worst %.0f ms"%(worst[0]*1000), "trips", trips[0], "HWM", hwm, "kB")
for c in cs: c.close()
p.kill()
