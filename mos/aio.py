"""asyncio programs on mos's own TCP/IP stack, set up from a configuration
file (``mode: endhost``, the file ``mos serve`` takes).  The program is
plain asyncio; only the way its loop is made changes::

    import asyncio, mos.aio

    async def echo(reader, writer):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()

    async def main():
        server = await asyncio.start_server(echo, "198.18.77.2", 7)
        async with server:
            await server.serve_forever()

    mos.aio.run(main(), config="serve.yaml")

or, for code that takes a loop (aiohttp's ``web.run_app``)::

    web.run_app(app, host="198.18.77.2", port=8080,
                loop=mos.aio.new_event_loop("serve.yaml"))

or, leaving ``asyncio.run`` in place::

    asyncio.set_event_loop_policy(mos.aio.EventLoopPolicy("serve.yaml"))
    asyncio.run(main())

The loop is mos.endhost.aio.EventLoop: servers, connections, ``sock_*``
calls and transports (so streams, SSL and libraries built on them, such as
aiohttp's server) run on the stack; kernel file descriptors (pipes,
subprocesses, real sockets) keep working beside it.  Hosts are addresses:
the stack resolves no names.
"""

from __future__ import annotations

import asyncio
from typing import Optional

from mos.endhost import aio as _aio
from mos.endhost.contexts import endhost_context
from mos.settings import load_settings

__all__ = ["open_contexts", "new_event_loop", "run", "EventLoopPolicy"]


def open_contexts(config: str) -> tuple:
    """(contexts, ports) of a configuration file: the stack on its port."""
    ctx, ports, _ = endhost_context(load_settings(config))
    return [ctx], list(ports)


def _close(ports) -> None:
    for p in ports:
        try:
            p.close()
        except Exception:  # closing is best effort on the way out
            pass


def new_event_loop(config: str) -> _aio.EventLoop:
    """A loop on the stack ``config`` describes; closing it closes the port."""
    contexts, ports = open_contexts(config)
    return _aio.EventLoop(*contexts, ports=ports)


def run(main, config: str, debug: Optional[bool] = None):
    """``asyncio.run(main)`` on the stack ``config`` describes; the port is
    closed afterwards, however ``main`` ends."""
    contexts, ports = open_contexts(config)
    try:
        return _aio.run(main, *contexts, debug=debug)
    finally:
        _close(ports)


class EventLoopPolicy(asyncio.DefaultEventLoopPolicy):
    """Every new event loop runs on the stack of ``config`` (opened at the
    first loop, kept for the next ones, closed by ``close()``)."""

    def __init__(self, config: str):
        super().__init__()
        self._config = config
        self._opened: Optional[tuple] = None

    def new_event_loop(self):
        if self._opened is None:
            self._opened = open_contexts(self._config)
        return _aio.EventLoop(*self._opened[0])

    def close(self) -> None:
        if self._opened is not None:
            _close(self._opened[1])
            self._opened = None
