"""An HTTP load client on mos's own stack (ApacheBench's role, mTCP's
epwget): ``run(ctx, url, requests, concurrency, keepalive)``.

C connections at once, each sending GET requests one after another
(HTTP/1.1 keep-alive with ``keepalive``, else HTTP/1.0 with a new
connection per request); responses are read by Content-Length, chunked
coding, or to the close.  The result has ab's figures and the SHA-256 of
each distinct body, so a test can compare what came with the file.

>>> import os, tempfile
>>> from mos.endhost.sockets import Switch, Context
>>> from mos.endhost.httpd import Server
>>> root = tempfile.mkdtemp(); open(os.path.join(root, "f"), "wb").write(b"x" * 5000)
5000
>>> sw = Switch(); srv = Context.on(sw, "198.18.0.2/24"); cli = Context.on(sw, "198.18.0.1/24")
>>> server = Server(srv, root, 80)
>>> r = run(cli, "http://198.18.0.2/f", 20, 4, keepalive=True, pump=server.step)
>>> r.complete, r.failed, r.body_bytes, len(r.bodies)
(20, 0, 100000, 1)
"""

from __future__ import annotations

import hashlib
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Callable, Optional

from .sockets import AF_INET, AF_INET6, EPOLLIN, EPOLLOUT, SO_ERROR, SOL_SOCKET, Context


@dataclass
class Result:
    complete: int = 0
    failed: int = 0
    non2xx: int = 0
    body_bytes: int = 0
    total_bytes: int = 0
    seconds: float = 0.0
    connections: int = 0
    bodies: dict = field(default_factory=dict)   # sha256 -> count
    latencies: list = field(default_factory=list)  # seconds per request
    tcp: dict = field(default_factory=dict)        # the stack's tcp_* counters at the end

    @classmethod
    def merged(cls, parts: list) -> "Result":
        """The results of several workers run at once, as one."""
        out = cls()
        for r in parts:
            for k in ("complete", "failed", "non2xx", "body_bytes", "total_bytes",
                      "connections"):
                setattr(out, k, getattr(out, k) + getattr(r, k))
            out.seconds = max(out.seconds, r.seconds)
            out.latencies += r.latencies
            for digest, n in r.bodies.items():
                out.bodies[digest] = out.bodies.get(digest, 0) + n
            for k, v in r.tcp.items():
                out.tcp[k] = out.tcp.get(k, 0) + v
        return out

    def report(self, url: str, concurrency: int) -> str:
        """ab's layout for the figures a load test reads."""
        rps = self.complete / self.seconds if self.seconds else 0.0
        lat = sorted(self.latencies)

        def pct(p):
            return lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else 0.0
        return "\n".join([
            f"Document URL:           {url}",
            f"Concurrency Level:      {concurrency}",
            f"Time taken for tests:   {self.seconds:.3f} seconds",
            f"Complete requests:      {self.complete}",
            f"Failed requests:        {self.failed}",
            f"Non-2xx responses:      {self.non2xx}",
            f"Total transferred:      {self.total_bytes} bytes",
            f"Requests per second:    {rps:.2f} [#/sec] (mean)",
            f"Transfer rate:          {self.total_bytes / 1024 / self.seconds if self.seconds else 0:.2f} [Kbytes/sec] received",
            f"Connections opened:     {self.connections}",
            f"Latency 50% / 99%:      {pct(0.5):.1f} / {pct(0.99):.1f} ms",
        ])


class _Req:
    __slots__ = ("sock", "buf", "state", "need", "body", "chunked", "status", "started",
                 "served", "close_after", "hsize")

    def __init__(self):
        self.sock = None
        self.served = 0
        self._reset()

    def _reset(self):
        self.buf = bytearray()
        self.state = "head"
        self.need = -1
        self.body = bytearray()
        self.chunked = False
        self.status = 0
        self.started = 0.0
        self.close_after = False
        self.hsize = 0


def _parse_url(url: str):
    u = urllib.parse.urlsplit(url)
    if u.scheme != "http" or not u.hostname:
        raise ValueError(f"{url!r}: only http://HOST[:PORT]/PATH URLs")
    return u.hostname, u.port or 80, (u.path or "/") + (f"?{u.query}" if u.query else "")


def run(ctx: Context, url: str, requests: int, concurrency: int, keepalive: bool = False,
        timeout: float = 30.0, pump: Optional[Callable] = None) -> Result:
    """Send ``requests`` GETs of ``url`` over ``concurrency`` connections.
    ``pump``: called each turn (an in-process server sharing the network)."""
    host, port, path = _parse_url(url)
    family = AF_INET6 if ":" in host else AF_INET
    hosthdr = f"[{host}]" if ":" in host else host
    proto = "HTTP/1.1" if keepalive else "HTTP/1.0"
    extra = "" if keepalive else "Connection: close\r\n"
    request = (f"GET {path} {proto}\r\nHost: {hosthdr}:{port}\r\nUser-Agent: mos-load\r\n"
               f"Accept: */*\r\n{extra}\r\n").encode("latin-1")
    res = Result()
    ep = ctx.epoll()
    socks: dict = {}
    left = requests
    t0 = time.monotonic()

    def start(r: _Req) -> bool:
        nonlocal left
        if left <= 0:
            return False
        left -= 1
        r._reset()
        r.started = time.monotonic()
        if r.sock is None:
            s = ctx.socket(family)
            s.setblocking(False)
            try:
                s.connect((host, port))
            except BlockingIOError:
                pass
            except OSError:
                res.failed += 1
                return start(r)
            r.sock = s
            res.connections += 1
            socks[s.fileno()] = r
            ep.register(s.fileno(), EPOLLOUT)
            r.state = "connecting"
            return True
        r.state = "head"
        _send(r)
        return True

    def _send(r: _Req) -> None:
        try:
            r.sock.sendall(request)
        except OSError:
            _fail(r)
            return
        ep.modify(r.sock.fileno(), EPOLLIN)

    def _close(r: _Req) -> None:
        if r.sock is not None:
            socks.pop(r.sock.fileno(), None)
            try:
                ep.unregister(r.sock.fileno())
            except OSError:
                pass
            r.sock.close()
            r.sock = None

    def _fail(r: _Req) -> None:
        res.failed += 1
        _close(r)
        start(r)

    def _done(r: _Req) -> None:
        res.complete += 1
        res.latencies.append(time.monotonic() - r.started)
        res.body_bytes += len(r.body)
        res.total_bytes += r.hsize + len(r.body)
        if not 200 <= r.status < 300:
            res.non2xx += 1
        digest = hashlib.sha256(r.body).hexdigest()
        res.bodies[digest] = res.bodies.get(digest, 0) + 1
        if not keepalive or r.close_after:
            _close(r)
        if not start(r):
            _close(r)          # nothing left to ask: an idle keep-alive connection goes

    def _feed(r: _Req, data: bytes, eof: bool) -> None:
        r.buf += data
        while True:
            if r.state == "head":
                end = r.buf.find(b"\r\n\r\n")
                if end < 0:
                    if eof:
                        return _fail(r)
                    return
                head = bytes(r.buf[:end]).decode("latin-1").split("\r\n")
                r.hsize = end + 4
                del r.buf[:end + 4]
                try:
                    r.status = int(head[0].split(" ")[1])
                except (IndexError, ValueError):
                    return _fail(r)
                hdrs = {}
                for ln in head[1:]:
                    k, _, v = ln.partition(":")
                    hdrs[k.strip().lower()] = v.strip()
                r.close_after = hdrs.get("connection", "").lower() == "close" or \
                    head[0].startswith("HTTP/1.0")
                if "chunked" in hdrs.get("transfer-encoding", "").lower():
                    r.chunked, r.state = True, "chunk"
                elif "content-length" in hdrs:
                    r.need, r.state = int(hdrs["content-length"]), "body"
                else:
                    r.need, r.state = -1, "body"
                    r.close_after = True
            elif r.state == "body":
                if r.need < 0:
                    r.body += r.buf
                    r.buf.clear()
                    if eof:
                        return _done(r)
                    return
                take = min(r.need - len(r.body), len(r.buf))
                r.body += r.buf[:take]
                del r.buf[:take]
                if len(r.body) == r.need:
                    return _done(r)
                if eof:
                    return _fail(r)
                return
            elif r.state == "chunk":
                end = r.buf.find(b"\r\n")
                if end < 0:
                    return _fail(r) if eof else None
                size = int(bytes(r.buf[:end]).split(b";")[0] or b"0", 16)
                if len(r.buf) < end + 2 + size + 2:
                    return _fail(r) if eof else None
                r.body += r.buf[end + 2:end + 2 + size]
                del r.buf[:end + 2 + size + 2]
                if size == 0:
                    return _done(r)

    reqs = [_Req() for _ in range(max(1, min(concurrency, requests)))]
    for r in reqs:
        start(r)
    # each connection's requests in turn may each take up to `timeout`
    deadline = time.monotonic() + timeout * (1 + requests / max(1, len(reqs)))
    while socks and time.monotonic() < deadline:
        if pump is not None:
            pump(0.0)
        for fd, ev in ep.poll(0.01):
            r = socks.get(fd)
            if r is None:
                continue
            if r.state == "connecting":
                st = r.sock.tcp_state
                if st in ("SYN_SENT", "SYN_RCVD"):
                    continue
                if r.sock.getsockopt(SOL_SOCKET, SO_ERROR) or st in (None, "CLOSED"):
                    _fail(r)
                    continue
                r.state = "head"
                _send(r)
                continue
            try:
                data = r.sock.recv(262144)
            except BlockingIOError:
                continue
            except OSError:
                _fail(r)
                continue
            _feed(r, data, eof=not data)
    for r in reqs:             # still waiting when time ran out: failed
        if r.sock is not None:
            res.failed += 1
            _close(r)
    res.seconds = time.monotonic() - t0
    res.tcp = {k: v for k, v in ctx.stack.stats().items() if k.startswith("tcp_")}
    return res
