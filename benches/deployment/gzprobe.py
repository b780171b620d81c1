#!/usr/bin/env python3
"""Does a proxy compress a stream, and does it hold events back to do it?

    gzprobe.py SUB_URL PUB_URL [EVENTS] [INTERVAL_S]

Opens SUB_URL (through the proxy) as a browser would, with
`Accept-Encoding: gzip, deflate`, then publishes EVENTS events to PUB_URL
(straight to tandem), one every INTERVAL_S seconds, each carrying the time it
was sent. It undoes the chunked framing and the compression as bytes arrive
and prints one line:

    GZPROBE content_encoding=gzip events=50 received=50 p50_ms=1.9 max_ms=4.1 wire_bytes=663

Used by benches/deployment.sh for Apache's mod_deflate (loadgen finds its
markers in raw bytes, so it cannot read a compressed stream). Standard
library only; bounded by a 30 s socket timeout.
"""
import socket
import sys
import threading
import time
import urllib.request
import zlib
from urllib.parse import urlsplit


def main():
    sub, pub = sys.argv[1], sys.argv[2]
    events = int(sys.argv[3]) if len(sys.argv) > 3 else 50
    interval = float(sys.argv[4]) if len(sys.argv) > 4 else 0.05
    u = urlsplit(sub)
    s = socket.create_connection((u.hostname, u.port), timeout=30)
    path = u.path + (("?" + u.query) if u.query else "")
    s.sendall(
        f"GET {path} HTTP/1.1\r\nHost: {u.netloc}\r\nAccept: */*\r\n"
        "Accept-Encoding: gzip, deflate\r\n\r\n".encode()
    )
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(65536)
        if not d:
            sys.exit("closed before the head")
        buf += d
    head, buf = buf.split(b"\r\n\r\n", 1)
    headers = {}
    for line in head.decode("latin1").split("\r\n")[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    chunked = "chunked" in headers.get("transfer-encoding", "")
    enc = headers.get("content-encoding", "identity")
    z = None
    if enc == "gzip":
        z = zlib.decompressobj(16 + zlib.MAX_WBITS)
    elif enc == "deflate":
        z = zlib.decompressobj()
    t0 = time.monotonic()
    sent = {}

    def publisher():
        time.sleep(0.3)
        for i in range(events):
            sent[i] = time.monotonic()
            req = urllib.request.Request(pub, data=f"@@{i}:0##".encode(), method="POST")
            req.add_header("Content-Type", "text/plain")
            urllib.request.urlopen(req, timeout=10).read()
            time.sleep(interval)

    threading.Thread(target=publisher, daemon=True).start()
    lat = {}
    wire = len(buf)
    plain = b""
    raw = buf  # undecoded chunked bytes
    body = b""
    deadline = t0 + 10 + events * interval
    while len(lat) < events and time.monotonic() < deadline:
        if chunked:
            while True:
                if b"\r\n" not in raw:
                    break
                size_line, rest = raw.split(b"\r\n", 1)
                size = int(size_line.split(b";")[0], 16)
                if len(rest) < size + 2:
                    break
                body += rest[:size]
                raw = rest[size + 2:]
        else:
            body += raw
            raw = b""
        if body:
            plain += z.decompress(body) if z else body
            body = b""
        now = time.monotonic()
        while True:
            a = plain.find(b"@@")
            if a < 0:
                break
            b = plain.find(b"##", a)
            if b < 0:
                break
            i = int(plain[a + 2 : b].split(b":")[0])
            if i in sent and i not in lat:
                lat[i] = (now - sent[i]) * 1000
            plain = plain[b + 2 :]
        if len(lat) >= events:
            break
        try:
            d = s.recv(65536)
        except socket.timeout:
            break
        if not d:
            break
        wire += len(d)
        raw += d
    ls = sorted(lat.values())
    p50 = ls[len(ls) // 2] if ls else float("nan")
    mx = ls[-1] if ls else float("nan")
    print(
        f"GZPROBE content_encoding={enc} events={events} received={len(ls)} "
        f"p50_ms={p50:.1f} max_ms={mx:.1f} wire_bytes={wire}"
    )


main()
