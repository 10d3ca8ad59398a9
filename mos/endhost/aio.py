"""asyncio on mos's own stack: an event loop whose sockets, servers,
connections and transports are the stack's, so asyncio code runs on it
unchanged apart from how the loop is made.

``EventLoop(*contexts)`` is asyncio's selector loop with a selector
(``StackSelector``) that holds mos sockets beside kernel file descriptors:
each ``select()`` pumps the contexts' ports in C (timers, frames out,
frames in), then reports the mos sockets that are ready and the kernel fds
that are (the loop's wake-up pipe, subprocess pipes, real sockets), and
sleeps in the kernel on the port's descriptor when nothing is.
``create_server``, ``create_connection`` (and so ``start_server``,
``open_connection``, aiohttp's sites and clients) open mos sockets;
``sock_*`` methods take them; transports, SSL and streams are asyncio's
own.  Names are not resolved (the stack has no DNS): hosts are addresses.

>>> import asyncio
>>> from mos.endhost.sockets import Switch, Context
>>> net = Switch()
>>> srv, cli = Context.on(net, "198.18.0.2/24"), Context.on(net, "198.18.0.1/24")
>>> async def echo(reader, writer):
...     writer.write(await reader.readline()); await writer.drain(); writer.close()
>>> async def main():
...     server = await asyncio.start_server(echo, "198.18.0.2", 7)
...     reader, writer = await asyncio.open_connection("198.18.0.2", 7)
...     writer.write(b"hello\\n")
...     line = await reader.readline()
...     writer.close(); server.close()
...     return line
>>> run(main(), srv, cli)
b'hello\\n'
"""

from __future__ import annotations

import asyncio
import ipaddress
import selectors
import socket as _pysocket
import time
from collections.abc import Mapping
from typing import Optional

from .sockets import (
    EPOLLERR,
    EPOLLHUP,
    EPOLLIN,
    EPOLLOUT,
    EPOLLRDHUP,
    FD_BASE,
    FD_CTX_SHIFT,
    SO_ERROR,
    SOL_SOCKET,
    Context,
    Switch,
    _contexts,
)
from .sockets import socket as mos_socket

__all__ = ["EventLoop", "EventLoopPolicy", "StackSelector", "new_event_loop", "run"]

_PORT = object()         # the data of a port's descriptor in the kernel selector


def _is_mos_fd(fd: int) -> bool:
    return fd >= FD_BASE


class _KeyMap(Mapping):
    """get_map()'s view: file objects (or fds) to keys."""

    def __init__(self, sel: "StackSelector"):
        self._sel = sel

    def __len__(self):
        return len(self._sel._keys)

    def __getitem__(self, fileobj):
        return self._sel._keys[selectors._fileobj_to_fd(fileobj)]

    def __iter__(self):
        return iter(self._sel._keys)


class StackSelector(selectors.BaseSelector):
    """A selector over the sockets of mos contexts and kernel fds.  Level-
    triggered, as asyncio expects: READ when a mos socket has data, a
    connection to accept, EOF or an error; WRITE when it takes data or
    has failed (a refused connect is seen as writable, then SO_ERROR)."""

    def __init__(self, *contexts: Context):
        self._kernel = selectors.DefaultSelector()
        self._keys: dict = {}          # fd -> SelectorKey, mos and kernel
        self._contexts: list = []
        self._epolls: dict = {}        # context number -> its mos epoll
        for ctx in contexts:
            self._attach(ctx)

    # contexts -----------------------------------------------------------
    def _attach(self, ctx: Context) -> None:
        if ctx.number in self._epolls:
            return
        self._contexts.append(ctx)
        self._epolls[ctx.number] = ctx.epoll()
        if getattr(ctx.link, "poller", None) is not None:
            for port in ctx.link.ports:
                self._kernel.register(port.fileno(), selectors.EVENT_READ, _PORT)

    def _context_of(self, fd: int) -> Context:
        ref = _contexts.get((fd - FD_BASE) >> FD_CTX_SHIFT)
        ctx = ref() if ref is not None else None
        if ctx is None:
            raise ValueError(f"fd {fd}: no mos context owns it")
        self._attach(ctx)
        return ctx

    @property
    def contexts(self) -> list:
        return list(self._contexts)

    # registration -------------------------------------------------------
    @staticmethod
    def _mask(events: int) -> int:
        m = 0
        if events & selectors.EVENT_READ:
            m |= EPOLLIN | EPOLLRDHUP
        if events & selectors.EVENT_WRITE:
            m |= EPOLLOUT
        return m

    def register(self, fileobj, events, data=None):
        if not events or events & ~(selectors.EVENT_READ | selectors.EVENT_WRITE):
            raise ValueError(f"Invalid events: {events!r}")
        fd = selectors._fileobj_to_fd(fileobj)
        if fd in self._keys:
            raise KeyError(f"{fileobj!r} (FD {fd}) is already registered")
        key = selectors.SelectorKey(fileobj, fd, events, data)
        if _is_mos_fd(fd):
            self._epolls[self._context_of(fd).number].register(fd, self._mask(events))
        else:
            self._kernel.register(fd, events, key)
        self._keys[fd] = key
        return key

    def unregister(self, fileobj):
        fd = selectors._fileobj_to_fd(fileobj)
        key = self._keys.pop(fd)
        if _is_mos_fd(fd):
            try:
                self._epolls[self._context_of(fd).number].unregister(fd)
            except (OSError, ValueError):
                pass                     # its socket went with its context
        else:
            self._kernel.unregister(fd)
        return key

    def modify(self, fileobj, events, data=None):
        fd = selectors._fileobj_to_fd(fileobj)
        old = self._keys.get(fd)
        if old is None:
            raise KeyError(f"{fileobj!r} is not registered")
        key = selectors.SelectorKey(fileobj, fd, events, data)
        if events != old.events:
            if _is_mos_fd(fd):
                self._epolls[self._context_of(fd).number].modify(fd, self._mask(events))
            else:
                self._kernel.modify(fd, events, key)
        elif not _is_mos_fd(fd):
            self._kernel.modify(fd, events, key)
        self._keys[fd] = key
        return key

    def get_key(self, fileobj):
        try:
            return self._keys[selectors._fileobj_to_fd(fileobj)]
        except KeyError:
            raise KeyError(f"{fileobj!r} is not registered") from None

    def get_map(self):
        return _KeyMap(self)

    # waiting --------------------------------------------------------------
    def _ready(self, kernel_timeout: float) -> list:
        out = []
        for ctx in self._contexts:
            for fd, ev in self._epolls[ctx.number]._collect():
                key = self._keys.get(fd)
                if key is None:
                    continue
                got = 0
                if key.events & selectors.EVENT_READ and ev & (EPOLLIN | EPOLLRDHUP | EPOLLERR |
                                                               EPOLLHUP):
                    got |= selectors.EVENT_READ
                if key.events & selectors.EVENT_WRITE and ev & (EPOLLOUT | EPOLLERR | EPOLLHUP):
                    got |= selectors.EVENT_WRITE
                if got:
                    out.append((key, got))
        if out:
            kernel_timeout = 0
        for kkey, ev in self._kernel.select(kernel_timeout):
            if kkey.data is not _PORT:
                out.append((kkey.data, ev & kkey.data.events))
        return out

    def select(self, timeout: Optional[float] = None) -> list:
        end = None if timeout is None else time.monotonic() + max(0.0, timeout)
        while True:
            moved = False
            for ctx in self._contexts:
                moved |= bool(ctx.step(wait=True))
            ready = self._ready(0)
            if ready:
                return ready
            if moved:
                continue                 # what came in may call for frames out
            now = time.monotonic()
            if end is not None and now >= end:
                return []
            wait = 0.01 if end is None else min(0.01, end - now)
            virtual = False
            now_ns = time.monotonic_ns()
            for ctx in self._contexts:
                if isinstance(ctx.link, Switch):
                    # in memory, time is virtual: the next TCP timer is now
                    virtual |= ctx.link.run(advance=True)
                    continue
                d = ctx.stack.deadline
                if d is not None:
                    wait = min(wait, max(0.0, (d - now_ns) / 1e9))
                if getattr(ctx.link, "poller", None) is None:
                    wait = min(wait, 0.00005)   # DPDK: no descriptor to sleep on
            if virtual:
                continue
            ready = self._ready(wait)
            if ready:
                return ready

    def close(self) -> None:
        self._kernel.close()
        for ep in self._epolls.values():
            ep.close()
        self._keys.clear()


class EventLoop(asyncio.SelectorEventLoop):
    """An asyncio loop on one or more mos contexts (a Context per port);
    ``ports``: objects to close with the loop (the contexts' ports)."""

    def __init__(self, *contexts: Context, ports=()):
        if not contexts:
            raise ValueError("EventLoop needs at least one mos Context")
        self.contexts = contexts
        self._mos_ports = list(ports)
        super().__init__(StackSelector(*contexts))

    def close(self) -> None:
        super().close()
        ports, self._mos_ports = self._mos_ports, []
        for p in ports:
            p.close()

    def _context_for(self, family: int, host=None, *, owns: bool) -> Context:
        """The context to use: for a server the one owning ``host``, for a
        connection one on ``host``'s subnet that does not own it; else the
        first with an address of ``family``; else the first."""
        want = 6 if family == _pysocket.AF_INET6 else 4
        ip = ipaddress.ip_address(host) if host else None
        if ip is not None:
            for ctx in self.contexts:
                mine = any(a.ip == ip for a in ctx.addresses)
                near = any(a.version == ip.version and ip in a.network for a in ctx.addresses)
                if (owns and mine) or (not owns and near and not mine):
                    return ctx
        for ctx in self.contexts:
            if any(a.version == want for a in ctx.addresses):
                return ctx
        return self.contexts[0]

    @staticmethod
    def _family_of(host, family: int) -> int:
        if host in (None, ""):
            return family
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            raise _pysocket.gaierror(
                _pysocket.EAI_NONAME,
                f"{host!r}: mos's stack resolves no names; give an IPv4 or IPv6 address") from None
        return _pysocket.AF_INET6 if ip.version == 6 else _pysocket.AF_INET

    # names ----------------------------------------------------------------
    async def getaddrinfo(self, host, port, *, family=0, type=0, proto=0, flags=0):
        fam = self._family_of(host, family) or _pysocket.AF_INET
        addr = (host or ("::" if fam == _pysocket.AF_INET6 else "0.0.0.0"), int(port or 0))
        if fam == _pysocket.AF_INET6:
            addr = addr + (0, 0)
        return [(fam, _pysocket.SOCK_STREAM, _pysocket.IPPROTO_TCP, "", addr)]

    # servers and connections ----------------------------------------------
    async def create_server(self, protocol_factory, host=None, port=None, *, family=0,
                            flags=0, sock=None, backlog=100, ssl=None, reuse_address=None,
                            reuse_port=None, **kw):
        """A server on a mos listening socket.  The stack listens per port
        on every address it owns (an IPv4 socket takes IPv6 too, an
        ``AF_INET6`` one IPv6 only): ``host`` picks the context, not one
        address."""
        if sock is None:
            hosts = host if isinstance(host, (list, tuple)) else [host]
            fams = {self._family_of(h, family) for h in hosts}
            fam = fams.pop() if len(fams) == 1 else 0
            if port is None or not int(port):
                raise ValueError(f"create_server: port {port!r}: the stack needs a port")
            bind_host = hosts[0] if fam else None
            ctx = self._context_for(fam, bind_host, owns=True)
            sock = ctx.socket(fam or _pysocket.AF_INET)
            sock.bind((bind_host or "0.0.0.0", int(port)))
            sock.listen(backlog)
        return await super().create_server(protocol_factory, sock=sock, backlog=backlog, ssl=ssl,
                                           **kw)

    async def create_connection(self, protocol_factory, host=None, port=None, *, ssl=None,
                                family=0, proto=0, flags=0, sock=None, local_addr=None,
                                server_hostname=None, **kw):
        if sock is None:
            fam = self._family_of(host, family) or _pysocket.AF_INET
            sock = self._context_for(fam, host, owns=False).socket(fam)
            sock.setblocking(False)
            if local_addr is not None:
                sock.bind(local_addr)
            try:
                await self.sock_connect(sock, (host, int(port)))
            except BaseException:
                sock.close()
                raise
            if ssl and server_hostname is None:
                server_hostname = host
        for k in ("happy_eyeballs_delay", "interleave", "all_errors"):
            kw.pop(k, None)        # one address, one attempt
        return await super().create_connection(protocol_factory, sock=sock, ssl=ssl,
                                               server_hostname=server_hostname, **kw)

    async def sock_connect(self, sock, address):
        if not isinstance(sock, mos_socket):
            return await super().sock_connect(sock, address)
        if sock.gettimeout() != 0:
            raise ValueError("sock_connect: the socket must be non-blocking")
        try:
            sock.connect(address)
            return None
        except BlockingIOError:
            pass
        fut = self.create_future()
        fd = sock.fileno()

        def connected():
            if fut.done():
                return
            err = sock.getsockopt(SOL_SOCKET, SO_ERROR)
            if err:
                fut.set_exception(OSError(err, f"Connect call failed {tuple(address)}"))
            elif sock.tcp_state not in ("SYN_SENT", "SYN_RCVD"):
                fut.set_result(None)
        self.add_writer(fd, connected)
        try:
            return await fut
        finally:
            self.remove_writer(fd)

    async def _sock_sendfile_native(self, sock, file, offset, count):
        if isinstance(sock, mos_socket):   # no kernel socket to sendfile() to: read and write
            raise asyncio.exceptions.SendfileNotAvailableError(
                "mos sockets take sendfile's fallback (read, then send)")
        return await super()._sock_sendfile_native(sock, file, offset, count)


def new_event_loop(*contexts: Context) -> EventLoop:
    return EventLoop(*contexts)


class EventLoopPolicy(asyncio.DefaultEventLoopPolicy):
    """``asyncio.set_event_loop_policy(EventLoopPolicy(ctx))``: from then on
    ``asyncio.run(main())`` runs on the stack."""

    def __init__(self, *contexts: Context):
        super().__init__()
        self._mos_contexts = contexts

    def new_event_loop(self):
        return EventLoop(*self._mos_contexts)


def run(main, *contexts: Context, debug: Optional[bool] = None):
    """``asyncio.run(main)`` on a loop over these contexts."""
    if hasattr(asyncio, "Runner"):
        with asyncio.Runner(debug=debug, loop_factory=lambda: EventLoop(*contexts)) as runner:
            return runner.run(main)
    loop = EventLoop(*contexts)          # Python 3.10
    try:
        if debug is not None:
            loop.set_debug(debug)
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(main)
    finally:
        asyncio.set_event_loop(None)
        loop.close()
