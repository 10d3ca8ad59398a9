"""BSD-like sockets and epoll on mos's own stack, one context per worker.

A ``Context`` owns a ``Stack`` (mos.endhost._stack) and a link that moves
its frames (a port, or ``Switch`` in memory); socket calls run the context
until they can complete, as a blocking call waits on a kernel.  Python runs
per call and per readiness change; frames and segments stay in C.

>>> from mos.endhost.sockets import Switch, Context, socket, epoll, EPOLLIN
>>> net = Switch()
>>> srv = Context.on(net, "198.18.0.2/24")
>>> cli = Context.on(net, "198.18.0.1/24")
>>> ls = srv.socket(); ls.bind(("198.18.0.2", 8080)); ls.listen(16)
>>> ls.setblocking(False)
>>> c = cli.socket(); c.connect(("198.18.0.2", 8080))
>>> s, peer = ls.accept()
>>> peer[0]
'198.18.0.1'
>>> c.sendall(b"hello"); s.recv(100)
b'hello'
>>> ep = srv.epoll(); ep.register(s.fileno(), EPOLLIN)
>>> c.send(b"more"); ep.poll(1.0) == [(s.fileno(), EPOLLIN)]
4
True

Errors are the ``OSError`` subclasses Python's socket module raises
(``ConnectionRefusedError``, ``ConnectionResetError``, ``BlockingIOError``,
``TimeoutError``, ``BrokenPipeError``...), with ``errno`` set.
"""

from __future__ import annotations

import errno as _errno
import ipaddress
import os
import select
import socket as _pysocket
import struct
import time
import weakref
from typing import Optional

from ._stack import ERR, HUP, IN, OUT, RDHUP, Stack, StackError

EPOLLIN, EPOLLOUT, EPOLLERR, EPOLLHUP, EPOLLRDHUP = IN, OUT, ERR, HUP, RDHUP
EPOLLET = 1 << 31

# A socket's fileno() is FD_BASE + (its context's number << FD_CTX_SHIFT) +
# its slot in the stack: above any number a kernel hands out (fs.nr_open is
# at most 2^30 here) and different in every context, so one selector can
# hold mos sockets of several stacks beside kernel fds (mos.endhost.aio)
FD_BASE = 1 << 30
FD_CTX_SHIFT = 20
_contexts: dict = {}      # context number -> weak reference to the Context

AF_INET, AF_INET6 = _pysocket.AF_INET, _pysocket.AF_INET6
SOCK_STREAM = _pysocket.SOCK_STREAM
SHUT_RD, SHUT_WR, SHUT_RDWR = 0, 1, 2
SOL_SOCKET, IPPROTO_TCP = _pysocket.SOL_SOCKET, _pysocket.IPPROTO_TCP
SO_ERROR, SO_REUSEADDR, SO_SNDBUF, SO_RCVBUF, SO_LINGER = (
    _pysocket.SO_ERROR, _pysocket.SO_REUSEADDR, _pysocket.SO_SNDBUF, _pysocket.SO_RCVBUF,
    _pysocket.SO_LINGER)
TCP_NODELAY = _pysocket.TCP_NODELAY
FIONREAD, SIOCOUTQ = 0x541B, 0x5411   # asm-generic/ioctls.h, linux/sockios.h (TIOCOUTQ)

__all__ = ["Context", "Switch", "PortLink", "socket", "epoll", "EPOLLIN", "EPOLLOUT", "EPOLLERR",
           "EPOLLHUP", "EPOLLRDHUP", "EPOLLET", "FIONREAD", "SIOCOUTQ"]


def _oserror(code: int, what: str) -> OSError:
    """OSError picks the subclass from errno (ConnectionRefusedError, ...)."""
    return OSError(code, f"{what}: {os.strerror(code)}")


def _call(fn, *args, what=""):
    try:
        return fn(*args)
    except StackError as exc:
        raise _oserror(exc.errno, what or fn.__name__) from None


class Switch:
    """An in-memory Ethernet segment: frames go to the stack whose MAC they
    name, broadcast and multicast to every other one.  For tests and for
    examples without a NIC; ``run`` moves frames until none is left."""

    def __init__(self):
        self.stacks: list = []
        self.clock_ns = 0            # virtual time: advances only to the next timer

    def attach(self, stack: Stack, mac: bytes) -> None:
        self.stacks.append((stack, mac))

    def now(self) -> int:
        return self.clock_ns

    def run(self, max_rounds: int = 100_000, advance: bool = False) -> bool:
        """Move frames until quiet; with ``advance``, then move time to the
        next timer and fire it.  Returns False when nothing happened."""
        did = False
        for _ in range(max_rounds):
            moved = 0
            for st, mac in self.stacks:
                for f in st.output(self.clock_ns):
                    moved += 1
                    dst = f[:6]
                    for other, omac in self.stacks:
                        if other is st:
                            continue
                        if dst == omac or dst[0] & 1:
                            other.input(f, self.clock_ns)
            if moved:
                did = True
                continue
            if not advance:
                return did
            due = [d for d in (s.deadline for s, _ in self.stacks) if d is not None]
            if not due:
                return did
            self.clock_ns = max(self.clock_ns, min(due))
            for st, _ in self.stacks:
                st.timer(self.clock_ns)
            return True
        return did


class PortLink:
    """A port as a Context's link.  The stack pumps it in C through its
    ``c_port()`` (native/port.h: AF_PACKET and DPDK ports); an idle context
    sleeps in poll() on ``fileno()`` when the port has one (AF_PACKET), else
    naps briefly (DPDK has no file descriptor to wait on)."""

    def __init__(self, port, burst: int = 64):
        # several ports: a worker's TCP port and its control port
        # (mos.endhost.steer); frames leave by the first
        self.ports = list(port) if isinstance(port, (list, tuple)) else [port]
        self.port = self.ports[0]
        self.burst = burst
        self.c_ports = [tuple(p.c_port()) for p in self.ports]
        self.c_port = self.c_ports[0]
        self.poller = None
        if all(hasattr(p, "fileno") for p in self.ports):
            self.poller = select.poll()
            for p in self.ports:
                self.poller.register(p.fileno(), select.POLLIN)

    def idle(self, seconds: float) -> None:
        """Wait until a frame may be waiting, at most ``seconds``."""
        if self.poller is not None:
            self.poller.poll(max(0, int(seconds * 1000)))
        else:
            time.sleep(min(seconds, 0.00005))


class Context:
    """One stack and what moves its frames: a ``Switch`` (in memory) or a
    port object with ``recv_frames() -> list`` and ``send_frames(list)``."""

    _macs = 0
    _count = 0

    def __init__(self, stack: Stack, link, mac: bytes):
        self.stack = stack
        self.link = link
        self.mac = mac
        self._socks: dict = {}
        self._epolls: list = []       # weak references to this context's epolls
        self.addresses: list = []     # ipaddress interfaces (Context.on, Context.on_port)
        Context._count += 1
        self.number = Context._count % 512
        while self.number in _contexts and _contexts[self.number]() is not None:
            self.number = (self.number + 1) % 512
        _contexts[self.number] = weakref.ref(self)
        self.fd_base = FD_BASE + (self.number << FD_CTX_SHIFT)

    def _changed(self) -> None:
        """Hand the sockets whose readiness may have changed (the stack's
        ready list, each once) to every epoll of this context."""
        slots = self.stack.ready()
        if not slots:
            return
        base = self.fd_base
        fds = [base + i for i in slots]
        live = []
        for ref in self._epolls:
            ep = ref()
            if ep is not None:
                ep._pending.update(fds)
                live.append(ref)
        self._epolls = live

    @classmethod
    def on(cls, switch: Switch, *addrs: str, **tcp) -> "Context":
        """A new stack with these addresses on an in-memory switch."""
        cls._macs += 1
        mac = bytes([2, 0, 0, 0, (cls._macs >> 8) & 255, cls._macs & 255])
        st = Stack(mac=":".join(f"{b:02x}" for b in mac), addrs=list(addrs), **tcp)
        switch.attach(st, mac)
        ctx = cls(st, switch, mac)
        ctx.addresses = [ipaddress.ip_interface(a) for a in addrs]
        return ctx

    @classmethod
    def on_port(cls, port, mac: str, *addrs: str, gateway4=None, gateway6=None,
                **tcp) -> "Context":
        """A new stack with these addresses on a port (AF_PACKET, DPDK), or
        on a list of ports (a worker's: mos.endhost.steer)."""
        st = Stack(mac=mac, addrs=list(addrs), gateway4=gateway4, gateway6=gateway6, **tcp)
        ctx = cls(st, PortLink(port), bytes(int(x, 16) for x in mac.split(":")))
        ctx.addresses = [ipaddress.ip_interface(a) for a in addrs]
        return ctx

    # the loop ---------------------------------------------------------
    def now(self) -> int:
        if isinstance(self.link, Switch):
            return self.link.now()
        return time.monotonic_ns()

    def step(self, wait: bool) -> bool:
        """Move frames (and, with ``wait``, time) once; False if idle."""
        if isinstance(self.link, Switch):
            return self.link.run(advance=wait)
        moved = False
        for c_port in self.link.c_ports:
            got, out = self.stack.pump(c_port, time.monotonic_ns(), self.link.burst)
            if got < 0:
                raise ConnectionAbortedError(_errno.ECONNABORTED, "the port has ended")
            moved = moved or bool(got or out)
        return moved

    def _idle(self, limit: Optional[int]) -> None:
        """Nothing moved: wait for a frame, the next timer or ``limit``."""
        now = time.monotonic_ns()
        until = now + 10_000_000           # a look at least every 10 ms
        d = self.stack.deadline
        if d is not None:
            until = min(until, d)
        if limit is not None:
            until = min(until, limit)
        if until > now:
            self.link.idle((until - now) / 1e9)

    def wait_for(self, cond, timeout: Optional[float]) -> bool:
        """Run until cond() holds (True) or timeout seconds pass (False).
        On a Switch, time is virtual: it jumps to the next timer when no
        frame moves, and a network with neither frames nor timers left
        cannot change any more (False at once, where a kernel would block)."""
        start = self.now()
        limit = None if timeout is None else start + int(timeout * 1e9)
        if limit is None and isinstance(self.link, Switch):
            limit = start + 3600 * 10**9   # an hour of virtual time: a deadlock, not a wait
        while not cond():
            if limit is not None and self.now() >= limit:
                return False
            if isinstance(self.link, Switch):
                if self.link.run(advance=False):
                    continue
                if cond():
                    return True
                if not self.link.run(advance=True):
                    return False
            elif not self.step(wait=True):
                self._idle(limit)
        return True

    def default_buffers(self) -> tuple:
        """(SO_SNDBUF, SO_RCVBUF) a new connection gets."""
        return self.stack.default_buffers()

    # factories --------------------------------------------------------
    def socket(self, family: int = AF_INET, type: int = SOCK_STREAM) -> "socket":
        if type != SOCK_STREAM:
            raise _oserror(_errno.EPROTONOSUPPORT, "socket: only SOCK_STREAM")
        return socket(self, family)

    def epoll(self) -> "epoll":
        return epoll(self)


class socket:
    """A TCP socket on a Context's stack, shaped like ``socket.socket``."""

    def __init__(self, ctx: Context, family: int = AF_INET, _sock: Optional[int] = None):
        self.ctx = ctx
        self.family = family
        self.type = SOCK_STREAM
        self.proto = IPPROTO_TCP
        self._sock = _sock
        self._listening = False
        self._bound: Optional[tuple] = None
        self._timeout: Optional[float] = None
        self._nodelay = False
        self._linger = (0, 0)         # SO_LINGER (l_onoff, l_linger)
        self._bufs = [0, 0]           # SO_SNDBUF, SO_RCVBUF asked before there is a connection
        if _sock is not None:
            ctx._socks[_sock] = self

    # options ----------------------------------------------------------
    def setblocking(self, flag: bool) -> None:
        self._timeout = None if flag else 0.0

    def settimeout(self, value: Optional[float]) -> None:
        self._timeout = value

    def gettimeout(self) -> Optional[float]:
        return self._timeout

    def ioctl(self, request: int, arg=0) -> int:
        """``FIONREAD``: bytes ready to read; ``SIOCOUTQ``: bytes written and
        not acknowledged yet (what ``fcntl.ioctl`` gives for a kernel socket)."""
        if self._sock is None or self._listening:
            return 0
        if request == FIONREAD:
            return self.ctx.stack.readable(self._sock)
        if request == SIOCOUTQ:
            return self.ctx.stack.unsent(self._sock)
        raise _oserror(_errno.EINVAL, f"ioctl: request {request:#x} (FIONREAD, SIOCOUTQ)")

    @property
    def tcp_state(self) -> Optional[str]:
        """The connection's TCP state ("ESTABLISHED", ...; TCP_INFO's
        tcpi_state), None before connect or after close."""
        return None if self._sock is None or self._listening else self.ctx.stack.state(self._sock)

    def fileno(self) -> int:
        return -1 if self._sock is None else self.ctx.fd_base + self._sock

    def setsockopt(self, level: int, opt: int, value) -> None:
        if (level, opt) == (IPPROTO_TCP, TCP_NODELAY):
            self._nodelay = bool(value)
            if self._sock is not None and not self._listening:
                _call(self.ctx.stack.set_nodelay, self._sock, self._nodelay,
                      what="setsockopt TCP_NODELAY")
        elif (level, opt) in ((SOL_SOCKET, SO_SNDBUF), (SOL_SOCKET, SO_RCVBUF)):
            # taken as the byte count (Linux doubles it for its bookkeeping;
            # here the buffer holds exactly that much)
            n = int(value)
            if n <= 0:
                raise _oserror(_errno.EINVAL, f"setsockopt: buffer size {n}")
            i = 0 if opt == SO_SNDBUF else 1
            self._bufs[i] = n
            if self._sock is not None:
                _call(self.ctx.stack.set_buffers, self._sock, *(n if j == i else 0
                                                                   for j in range(2)),
                      what="setsockopt")
        elif (level, opt) == (SOL_SOCKET, SO_LINGER):
            # struct linger as the socket module packs it ("ii"); on with a
            # zero time, close() resets the connection (RST), as on Linux
            self._linger = struct.unpack("ii", bytes(value)[:8]) if not isinstance(value, int) \
                else (int(bool(value)), 0)
        # SO_REUSEADDR: ports are reusable at once here (TIME-WAIT is per tuple)

    def getsockopt(self, level: int, opt: int, buflen: int = 0):
        if (level, opt) == (SOL_SOCKET, SO_ERROR):
            return self.ctx.stack.error(self._sock) if self._sock is not None else 0
        if (level, opt) == (IPPROTO_TCP, TCP_NODELAY):
            return int(self._nodelay)
        if (level, opt) in ((SOL_SOCKET, SO_SNDBUF), (SOL_SOCKET, SO_RCVBUF)):
            got = None if self._sock is None or self._listening else \
                self.ctx.stack.buffers(self._sock)
            i = 0 if opt == SO_SNDBUF else 1
            return got[i] if got else (self._bufs[i] or self.ctx.default_buffers()[i])
        if (level, opt) == (SOL_SOCKET, SO_LINGER):
            return struct.pack("ii", *self._linger) if buflen else self._linger[0]
        return 0

    # names ------------------------------------------------------------
    def getsockname(self):
        if self._sock is None or self._listening:
            return self._bound or ("0.0.0.0", 0)
        return self.ctx.stack.names(self._sock)[0]

    def getpeername(self):
        if self._sock is None or self._listening:
            raise _oserror(_errno.ENOTCONN, "getpeername")
        return self.ctx.stack.names(self._sock)[1]

    # server side ------------------------------------------------------
    def bind(self, address) -> None:
        self._bound = (address[0], int(address[1]))

    def listen(self, backlog: int = 128) -> None:
        if self._listening:          # again: Linux takes it (a new backlog)
            return
        if self._bound is None or not self._bound[1]:
            raise _oserror(_errno.EINVAL, "listen: bind a port first")
        ver = 6 if self.family == AF_INET6 else 0
        self._sock = _call(self.ctx.stack.listen, self._bound[1], max(1, backlog), ver,
                           what=f"listen on port {self._bound[1]}")
        self._listening = True
        if any(self._bufs):        # for the connections it accepts
            self.ctx.stack.set_buffers(self._sock, *self._bufs)
        self.ctx._socks[self._sock] = self

    def accept(self):
        st = self.ctx.stack
        if not self.ctx.wait_for(lambda: st.events(self._sock) & IN, self._timeout):
            raise self._would_block("accept")
        s = _call(st.accept, self._sock, what="accept")
        peer = st.names(s)[1]
        conn = socket(self.ctx, AF_INET6 if ":" in peer[0] else AF_INET, s)
        if self._nodelay:           # inherited from the listener, as on Linux
            conn.setsockopt(IPPROTO_TCP, TCP_NODELAY, 1)
        return conn, peer

    # client side ------------------------------------------------------
    def connect(self, address) -> None:
        err = self.connect_ex(address)
        if err and err != _errno.EINPROGRESS:
            raise _oserror(err, f"connect to {address[0]} port {address[1]}")
        if err == _errno.EINPROGRESS:
            raise BlockingIOError(_errno.EINPROGRESS, "connect: in progress")

    def connect_ex(self, address) -> int:
        host, port = address[0], int(address[1])
        ipaddress.ip_address(host)
        st = self.ctx.stack
        sport = self._bound[1] if self._bound else 0
        try:
            self._sock = st.connect(host, port, self.ctx.now(), sport, *self._bufs)
        except StackError as exc:
            return exc.errno
        self.ctx._socks[self._sock] = self
        if self._nodelay:
            st.set_nodelay(self._sock, True)
        if self._timeout == 0.0:
            self.ctx.step(wait=False)
            return _errno.EINPROGRESS
        done = self.ctx.wait_for(
            lambda: st.state(self._sock) not in ("SYN_SENT", "SYN_RCVD"), self._timeout)
        if not done:
            return _errno.ETIMEDOUT
        return st.error(self._sock) or 0

    # data -------------------------------------------------------------
    def _would_block(self, what: str) -> OSError:
        if self._timeout == 0.0:
            return BlockingIOError(_errno.EAGAIN, f"{what}: would block")
        return TimeoutError(_errno.ETIMEDOUT, f"{what}: timed out")

    def send(self, data) -> int:
        st = self.ctx.stack
        data = memoryview(data).cast("B")
        if not len(data):
            return 0

        def ready():
            return st.events(self._sock) & (OUT | ERR | HUP)
        while True:
            try:
                n = st.send(self._sock, bytes(data[:1 << 20]))
                if self._timeout != 0.0:
                    # a non-blocking socket's bytes leave at its loop's next
                    # poll, with everything else written meanwhile (one
                    # burst, one kick of the port)
                    self.ctx.step(wait=False)
                return n
            except StackError as exc:
                if exc.errno != _errno.EAGAIN:
                    raise _oserror(exc.errno, "send") from None
            if not self.ctx.wait_for(ready, self._timeout):
                raise self._would_block("send")

    def sendall(self, data) -> None:
        view = memoryview(data).cast("B")
        while len(view):
            n = self.send(view)
            view = view[n:]

    def sendmsg(self, buffers, *rest) -> int:
        return self.send(b"".join(bytes(b) for b in buffers))

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        st = self.ctx.stack

        def ready():
            return st.events(self._sock) & (IN | ERR | HUP)
        while True:
            try:
                # no pump here: the ACK (or window update) this calls for
                # leaves with the reply the caller is about to write
                return st.recv(self._sock, bufsize)
            except StackError as exc:
                if exc.errno != _errno.EAGAIN:
                    raise _oserror(exc.errno, "recv") from None
            if not self.ctx.wait_for(ready, self._timeout):
                raise self._would_block("recv")

    def recv_into(self, buffer, nbytes: int = 0, flags: int = 0) -> int:
        view = memoryview(buffer).cast("B")
        data = self.recv(nbytes or len(view))
        view[:len(data)] = data
        return len(data)

    def recvmsg_into(self, buffers, *rest):
        total = 0
        for b in buffers:
            view = memoryview(b).cast("B")
            n = self.recv_into(view) if not total else self._recv_now_into(view)
            total += n
            if n < len(view):
                break
        return total, [], 0, None

    def _recv_now_into(self, view) -> int:
        try:
            data = self.ctx.stack.recv(self._sock, len(view))
        except StackError:
            return 0
        view[:len(data)] = data
        return len(data)

    # ending -----------------------------------------------------------
    def shutdown(self, how: int) -> None:
        if how in (SHUT_WR, SHUT_RDWR):
            _call(self.ctx.stack.shutdown, self._sock, what="shutdown")
            self.ctx.step(wait=False)

    def close(self) -> None:
        if self._sock is None:
            return
        if self._linger == (1, 0) and not self._listening:
            self.abort()
            return
        try:
            self.ctx.stack.close(self._sock)
        except StackError:
            pass
        self.ctx._socks.pop(self._sock, None)
        self._sock = None
        if self._timeout != 0.0:
            self.ctx.step(wait=False)

    def abort(self) -> None:
        """Reset the connection (RST), as SO_LINGER with a zero timeout does."""
        if self._sock is None:
            return
        _call(self.ctx.stack.abort, self._sock, what="abort")
        self.ctx._socks.pop(self._sock, None)
        self._sock = None
        self.ctx.step(wait=False)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"<mos socket fd={self.fileno()}>"


class epoll:
    """``select.epoll``'s shape on the stack's sockets: level-triggered by
    default, EPOLLET for edge-triggered."""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self._fds: dict = {}          # fd -> (mask, last events reported, edge)
        # Only sockets whose readiness may have changed (the stack's ready
        # list) or that were ready at the last look are examined: a poll
        # costs what is active, not what is registered
        self._pending: set = set()
        self._active: set = set()
        ctx._epolls.append(weakref.ref(self))

    def _fd(self, fd) -> int:
        fd = fd if isinstance(fd, int) else fd.fileno()
        if not 0 <= fd - self.ctx.fd_base < 1 << FD_CTX_SHIFT:
            raise OSError(_errno.EBADF, f"epoll: fd {fd} is not a socket of this context")
        return fd

    def register(self, fd, eventmask: int = EPOLLIN | EPOLLOUT) -> None:
        fd = self._fd(fd)
        if fd in self._fds:
            raise FileExistsError(_errno.EEXIST, f"epoll: fd {fd} is registered already")
        self._fds[fd] = [eventmask & ~EPOLLET, 0, bool(eventmask & EPOLLET)]
        self._pending.add(fd)

    def modify(self, fd, eventmask: int) -> None:
        fd = self._fd(fd)
        if fd not in self._fds:
            raise FileNotFoundError(_errno.ENOENT, f"epoll: fd {fd} is not registered")
        self._fds[fd] = [eventmask & ~EPOLLET, 0, bool(eventmask & EPOLLET)]
        self._pending.add(fd)

    def unregister(self, fd) -> None:
        fd = self._fd(fd)
        if self._fds.pop(fd, None) is None:
            raise FileNotFoundError(_errno.ENOENT, f"epoll: fd {fd} is not registered")

    def _collect(self) -> list:
        st = self.ctx.stack
        base = self.ctx.fd_base
        self.ctx._changed()
        look = self._active | self._pending
        self._pending = set()
        active = set()
        out = []
        for fd in sorted(look):
            ent = self._fds.get(fd)
            if ent is None:
                continue
            mask, last, edge = ent
            ev = st.events(fd - base) & (mask | ERR | HUP)
            if ev:
                active.add(fd)
            if edge:
                new = ev & ~last
                ent[1] = ev
                if new:
                    out.append((fd, new))
            elif ev:
                out.append((fd, ev))
        self._active = active
        return out

    def poll(self, timeout: float = -1, maxevents: int = -1) -> list:
        got: list = []

        def ready():
            got[:] = self._collect()
            return bool(got)
        self.ctx.wait_for(ready, None if timeout is None or timeout < 0 else timeout)
        return got if maxevents < 0 else got[:maxevents]

    def close(self) -> None:
        self._fds.clear()
