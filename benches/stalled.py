#!/usr/bin/env python3
"""What subscribers that never read cost a tandem server: its RSS, and the
kernel's TCP buffer memory, as N stalled SSE subscribers sit on one channel
while a publisher floods it.

    target/release/tandem serve --listen 127.0.0.1:PORT --buffer-events 1000 &
    python3 benches/stalled.py --port PORT --pid $! --subscribers 1000 --events 20000 --size 1024

Each subscriber sends its request, then never reads (a small receive buffer,
so its TCP window closes soon). The publisher posts events on one keep-alive
connection, pipelined in batches. Figures are printed as lines
`name value`; docs/security.md ("Limits") has a run.
"""

import argparse
import socket
import time


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def tcp_mem_kib():
    # /proc/net/sockstat: "TCP: inuse N orphan N tw N alloc N mem PAGES"
    with open("/proc/net/sockstat") as f:
        for line in f:
            if line.startswith("TCP:"):
                parts = line.split()
                return int(parts[parts.index("mem") + 1]) * 4
    return -1


def read_responses(conn, n):
    """Reads n small Content-Length answers off a keep-alive connection."""
    buf = b""
    got = 0
    while got < n:
        while True:
            head_end = buf.find(b"\r\n\r\n")
            if head_end < 0:
                break
            head = buf[:head_end].decode("latin-1").lower()
            length = 0
            for line in head.split("\r\n"):
                if line.startswith("content-length:"):
                    length = int(line.split(":")[1])
            if len(buf) < head_end + 4 + length:
                break
            if not head.startswith("http/1.1 202"):
                raise RuntimeError("publish refused: " + head.splitlines()[0])
            buf = buf[head_end + 4 + length:]
            got += 1
        if got < n:
            chunk = conn.recv(65536)
            if not chunk:
                raise RuntimeError("publisher connection closed")
            buf += chunk


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--subscribers", type=int, default=1000)
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--channel", default="stalled")
    a = ap.parse_args()

    addr = ("127.0.0.1", a.port)
    print("rss_start_kib", rss_kib(a.pid))
    print("tcp_mem_start_kib", tcp_mem_kib())
    subs = []
    for _ in range(a.subscribers):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(addr)
        s.sendall(f"GET /ch/{a.channel}/sse HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        subs.append(s)
    time.sleep(2)
    rss_idle = rss_kib(a.pid)
    print("rss_subscribed_kib", rss_idle)

    pub = socket.socket()
    pub.connect(addr)
    body = b"x" * a.size
    req = (
        f"POST /ch/{a.channel} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
        f"Content-Length: {a.size}\r\n\r\n"
    ).encode() + body
    batch = 100
    t0 = time.time()
    peak = rss_idle
    for i in range(0, a.events, batch):
        n = min(batch, a.events - i)
        pub.sendall(req * n)
        read_responses(pub, n)
        if (i // batch) % 20 == 0:
            peak = max(peak, rss_kib(a.pid))
    took = time.time() - t0
    time.sleep(2)
    rss_after = rss_kib(a.pid)
    peak = max(peak, rss_after)
    print("publish_seconds", round(took, 2))
    print("rss_after_flood_kib", rss_after)
    print("rss_peak_kib", peak)
    print("tcp_mem_after_flood_kib", tcp_mem_kib())
    per_sub = (rss_after - rss_idle) / max(1, a.subscribers)
    print("rss_growth_per_stalled_subscriber_kib", round(per_sub, 1))
    # A second flood as large: a bound stays where it is.
    for i in range(0, a.events, batch):
        n = min(batch, a.events - i)
        pub.sendall(req * n)
        read_responses(pub, n)
    time.sleep(2)
    print("rss_after_second_flood_kib", rss_kib(a.pid))
    for s in subs:
        s.close()
    time.sleep(2)
    print("rss_after_close_kib", rss_kib(a.pid))
    print("tcp_mem_after_close_kib", tcp_mem_kib())


if __name__ == "__main__":
    main()
