"""A static-file HTTP/1.1 server on mos's own stack (epoll, keep-alive),
the role of mTCP's epserver and lighttpd: ``serve(ctx, root, port)``.

GET and HEAD of files under ``root``; keep-alive for HTTP/1.1 unless the
client says ``Connection: close`` (and for HTTP/1.0 with keep-alive); 404
for what is not a file under root, 400 for what does not parse, 405 for
other methods.  Requests are read up to 16 KiB of headers; a file is sent
in 256 KiB slices as the socket takes them, so one slow client never stops
the others.

>>> import os, tempfile
>>> from mos.endhost.sockets import Switch, Context
>>> root = tempfile.mkdtemp(); open(os.path.join(root, "a.txt"), "wb").write(b"hi\\n")
3
>>> sw = Switch(); srv = Context.on(sw, "198.18.0.2/24"); cli = Context.on(sw, "198.18.0.1/24")
>>> server = Server(srv, root, 80)
>>> c = cli.socket(); c.connect(("198.18.0.2", 80))
>>> c.sendall(b"GET /a.txt HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n")
>>> server.run(until=lambda: server.served == 1)
>>> reply = c.recv(4096)
>>> reply.split(b"\\r\\n")[0], reply.endswith(b"\\r\\n\\r\\nhi\\n")
(b'HTTP/1.1 200 OK', True)
"""

from __future__ import annotations

import email.utils
import mimetypes
import os
import posixpath
import time
import urllib.parse
from typing import Optional

from .sockets import EPOLLIN, EPOLLOUT, IPPROTO_TCP, TCP_NODELAY, Context

MAX_HEAD = 16 * 1024
SLICE = 256 * 1024
SMALL = 64 * 1024       # files up to this size are answered from memory

_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}


class _Conn:
    __slots__ = ("sock", "inbuf", "out", "file", "left", "close_after")

    def __init__(self, sock):
        self.sock = sock
        self.inbuf = bytearray()
        self.out = bytearray()         # headers (and small bodies) not sent yet
        self.file = None               # the file being sent
        self.left = 0                  # its bytes still to send
        self.close_after = False


class Server:
    """The server's state on a Context: its listening socket, connections
    and counters (``served`` responses, ``errors``)."""

    def __init__(self, ctx: Context, root: str, port: int = 80, backlog: int = 1024,
                 family=None):
        from .sockets import AF_INET
        self.ctx = ctx
        self.root = os.path.realpath(root)
        self.ls = ctx.socket(family or AF_INET)
        self.ls.bind(("0.0.0.0", port))
        self.ls.listen(backlog)
        # a response's last partial segment must not wait for the client's
        # delayed ACK (Nagle): every server does this
        self.ls.setsockopt(IPPROTO_TCP, TCP_NODELAY, 1)
        self.ls.setblocking(False)
        self.ep = ctx.epoll()
        self.ep.register(self.ls.fileno(), EPOLLIN)
        self.conns: dict = {}
        self._stat_cache: dict = {}
        self._date_at, self._date_text = 0, ""
        self.served = 0
        self.errors = 0

    # requests ---------------------------------------------------------
    def _path(self, target: str) -> Optional[tuple]:
        """(file, size, type, bytes of a small file) for a request target,
        or None.  Answers are kept for a second, as lighttpd's stat cache
        does: a busy server resolves each name (and reads a small file)
        once a second, not once a request."""
        now = time.monotonic()
        hit = self._stat_cache.get(target)
        if hit is not None and now - hit[0] < 1.0:
            return hit[1]
        path = urllib.parse.unquote(urllib.parse.urlsplit(target).path)
        path = posixpath.normpath("/" + path.lstrip("/"))
        full = os.path.realpath(os.path.join(self.root, path.lstrip("/")))
        found = None
        if (full == self.root or full.startswith(self.root + os.sep)) and os.path.isfile(full):
            size = os.path.getsize(full)
            data = None
            if size <= SMALL:           # small files are kept with the answer
                try:
                    with open(full, "rb") as fh:
                        data = fh.read(SMALL + 1)
                except OSError:
                    return None
                size = len(data)
            found = (full, size, mimetypes.guess_type(full)[0] or "application/octet-stream",
                     data)
        if len(self._stat_cache) >= 4096:
            self._stat_cache.clear()
        self._stat_cache[target] = (now, found)
        return found

    def _date(self) -> str:
        now = int(time.time())
        if now != self._date_at:
            self._date_at = now
            self._date_text = email.utils.formatdate(now, usegmt=True)
        return self._date_text

    def _respond(self, c: _Conn, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        headers = {}
        for ln in lines[1:]:
            k, sep, v = ln.partition(":")
            if sep:
                headers[k.strip().lower()] = v.strip().lower()
        status, body, size, found = 200, b"", 0, None
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            status, c.close_after = 400, True
        elif parts[0] not in ("GET", "HEAD"):
            status = 405
        else:
            found = self._path(parts[1])
            if found is None:
                status = 404
        version = parts[2] if len(parts) == 3 else "HTTP/1.0"
        conn = headers.get("connection", "")
        if version == "HTTP/1.1":
            c.close_after = c.close_after or conn == "close"
        else:
            c.close_after = c.close_after or conn != "keep-alive"
        if status != 200:
            body = f"{status} {_REASONS[status]}\n".encode()
            size = len(body)
            self.errors += 1
        else:
            size = found[1]
        out = [f"HTTP/1.1 {status} {_REASONS[status]}", f"Date: {self._date()}", "Server: mos",
               f"Content-Length: {size}",
               "Content-Type: " + ("text/plain" if status != 200 else found[2]),
               "Connection: " + ("close" if c.close_after else "keep-alive"), "", ""]
        c.out += "\r\n".join(out).encode("latin-1")
        if parts and parts[0] == "HEAD":
            body = b""
        elif status == 200 and found[3] is not None:
            body = found[3]
        elif status == 200 and size:
            try:
                c.file = open(found[0], "rb")
                c.left = size
            except OSError:    # gone since the stat cache saw it: the length is promised
                c.close_after = True
                body = b""
        c.out += body
        self.served += 1

    # the loop ---------------------------------------------------------
    def _accept(self) -> None:
        while True:
            try:
                s, _ = self.ls.accept()
            except BlockingIOError:
                return
            s.setblocking(False)
            self.conns[s.fileno()] = _Conn(s)
            self.ep.register(s.fileno(), EPOLLIN)

    def _drop(self, c: _Conn) -> None:
        fd = c.sock.fileno()
        self.conns.pop(fd, None)
        try:
            self.ep.unregister(fd)
        except FileNotFoundError:
            pass
        if c.file:
            c.file.close()
        c.sock.close()

    def _write(self, c: _Conn) -> None:
        while True:
            if c.file and len(c.out) < SLICE:  # headers ride with the first body bytes
                chunk = c.file.read(min(SLICE - len(c.out), c.left))
                c.left -= len(chunk)
                c.out += chunk
                if not c.left or not chunk:
                    c.close_after = c.close_after or bool(c.left)  # the file shrank
                    c.file.close()
                    c.file = None
            if not c.out:
                break
            try:
                n = c.sock.send(c.out)
            except BlockingIOError:
                n = 0
            except OSError:
                self._drop(c)
                return
            del c.out[:n]
            if c.out:
                break
        fd = c.sock.fileno()
        if c.out or c.file:
            self.ep.modify(fd, EPOLLOUT)
        elif c.close_after:
            self._drop(c)
        else:
            self.ep.modify(fd, EPOLLIN)
            if b"\r\n\r\n" in c.inbuf:      # a pipelined request waits
                self._read(c, more=False)

    def _read(self, c: _Conn, more: bool = True) -> None:
        if more:
            try:
                data = c.sock.recv(65536)
            except BlockingIOError:
                return
            except OSError:
                self._drop(c)
                return
            if not data:
                self._drop(c)
                return
            c.inbuf += data
        end = c.inbuf.find(b"\r\n\r\n")
        if end < 0:
            if len(c.inbuf) > MAX_HEAD:
                self._respond(c, b"BAD")
                c.inbuf.clear()
                self._write(c)
            return
        head = bytes(c.inbuf[:end])
        del c.inbuf[:end + 4]
        self._respond(c, head)
        self._write(c)

    def step(self, timeout: float = 0.01) -> None:
        for fd, ev in self.ep.poll(timeout):
            if fd == self.ls.fileno():
                self._accept()
                continue
            c = self.conns.get(fd)
            if c is None:
                continue
            if ev & EPOLLOUT:
                self._write(c)
            elif ev:
                self._read(c)

    def run(self, until=None, seconds: Optional[float] = None) -> None:
        """Serve until ``until()`` holds or ``seconds`` pass (wall clock)."""
        end = None if seconds is None else time.monotonic() + seconds
        while not (until and until()) and (end is None or time.monotonic() < end):
            self.step()
