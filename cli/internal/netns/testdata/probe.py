"""The Python CMD of the netns tests: the steps of testdata/probe (the Go
probe) that apply, resolved through glibc (getaddrinfo and resolv.conf)."""
import hashlib
import os
import socket
import sys
import threading
import time


def addr(s):
    host, _, port = s.rpartition(":")
    return host, int(port)


def resolve(name):
    infos = socket.getaddrinfo(name, 80, socket.AF_INET, socket.SOCK_STREAM)
    return ",".join(sorted({i[4][0] for i in infos}))


def get(a):
    with socket.create_connection(addr(a), timeout=10) as c:
        return c.makefile().readline().strip()


def echo(arg):
    a, n = arg.rsplit(":", 1)
    n = int(n)
    data = os.urandom(n)
    with socket.create_connection(addr(a), timeout=30) as c:
        def send():
            c.sendall(data)
            c.shutdown(socket.SHUT_WR)
        t = threading.Thread(target=send)
        t.start()
        h, got = hashlib.sha256(), 0
        while True:
            b = c.recv(1 << 16)
            if not b:
                break
            h.update(b)
            got += len(b)
        t.join()
    if got != n or h.digest() != hashlib.sha256(data).digest():
        raise Exception("got %d bytes back, checksum differs" % got)
    return "%d bytes sha256 %s" % (n, h.hexdigest()[:8])


def conc(arg):
    a, n = arg.rsplit(":", 1)
    n = int(n)
    conns = [None] * n
    errs = []

    def connect(i):
        try:
            conns[i] = socket.create_connection(addr(a), timeout=20)
        except Exception as e:
            errs.append(e)
    ts = [threading.Thread(target=connect, args=(i,)) for i in range(n)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    if errs:
        raise errs[0]
    for i, c in enumerate(conns):
        c.sendall(b"conn %d\n" % i)
    for i, c in enumerate(conns):
        line = c.makefile("rb").readline()
        if line != b"conn %d\n" % i:
            raise Exception("conn %d got %r" % (i, line))
        c.close()
    return "%d served" % n


def refused(a):
    start = time.monotonic()
    try:
        socket.create_connection(addr(a), timeout=20).close()
    except ConnectionRefusedError:
        return "refused after %dms" % ((time.monotonic() - start) * 1000)
    raise Exception("not refused")


def http(url):
    import urllib.request
    with urllib.request.urlopen(url, timeout=20) as r:
        return "%d %s" % (r.status, r.read().decode().strip().split("\n")[0])


def listen(a):
    with socket.create_server(addr(a)) as l:
        print("listening", flush=True)
        c, _ = l.accept()
        c.sendall(b"hello from cmd\n")
        c.close()
    return "served"


STEPS = {
    "resolve": resolve, "get": get, "echo": echo, "conc": conc,
    "refused": refused, "listen": listen, "http": http,
    "cat": lambda p: open(p).readline().strip(),
    "exit": lambda n: sys.exit(int(n)),
}

for step in sys.argv[1:]:
    op, _, arg = step.partition(":")
    try:
        detail = STEPS[op](arg)
    except SystemExit:
        raise
    except Exception as e:
        print("%s FAIL %r" % (step, e), flush=True)
        sys.exit(1)
    print("%s ok %s" % (step, detail), flush=True)
