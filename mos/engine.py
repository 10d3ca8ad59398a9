"""The public Engine: the compiled core plus run statistics.

    >>> import mos
    >>> eng = mos.Engine(mos.Config())
    >>> mon = eng.attach(mos.Monitor())
    >>> starts = []
    >>> _ = mon.on(mos.Event.CONN_START, lambda flow, side, ev: starts.append(flow.server_port))
    >>> stats = eng.run(mos.sample_capture())
    >>> stats.flows > 0 and len(starts) == stats.flows
    True
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from mos.dualstack._engine import CoreEngine
from mos.events import tree as _tree

__all__ = ["Engine", "RunStats"]

# Layers: mos.engine is the public facade over the engine (mos.dualstack) and
# the runtime (mos.runtime) that feeds it; the runtime never imports it.


@dataclass
class RunStats:
    packets: int = 0
    bytes: int = 0
    flows: int = 0
    events: int = 0
    handler_calls: int = 0
    seconds: float = 0.0
    counters: dict = field(default_factory=dict)
    #: exceptions raised by handlers (on_handler_error), and per handler qualified name
    handler_errors: int = 0
    handler_errors_by_handler: dict = field(default_factory=dict)

    @property
    def pps(self) -> float:
        return self.packets / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict:
        return {"packets": self.packets, "bytes": self.bytes, "flows": self.flows,
                "events": self.events, "handler_calls": self.handler_calls,
                "handler_errors": self.handler_errors,
                "handler_errors_by_handler": self.handler_errors_by_handler,
                "seconds": round(self.seconds, 6), "packets_per_second": round(self.pps, 1),
                "counters": self.counters}


class Engine(CoreEngine):
    """A monitor engine: attach monitors, then ``run`` a capture (or ``feed`` frames)."""

    def __init__(self, config=None):
        super().__init__(config)
        self.events_layer = _tree  # UDE trees for per-flow handlers and raised events

    def run(self, source: "str | os.PathLike", progress: Optional[Callable] = None,
            limit: int = -1, close: bool = True,
            write: "str | os.PathLike | None" = None) -> RunStats:
        """Process a pcap/pcapng file and return its statistics.

        With ``checksum='auto'`` the first 1000 TCP packets of the file are
        checked first: if more than one in ten has a bad checksum (capture
        on a host with offload) checksums are ignored, else verified.

        With ``write`` the engine runs as an in-line box whose output is a
        pcap file: it holds what the box forwarded, drops, edits and
        injected frames applied (mos.runtime.capture).

        A handler's exception follows ``Config.on_handler_error`` ('auto':
        counted, logged on the ``mos.handlers`` logger, the run goes on;
        ``stop`` raises mos.errors.HandlerError)."""
        from mos.runtime.capture import run_capture

        before = self.counters()
        t0 = time.perf_counter()
        run_capture(self, source, write, progress, limit, close)
        dt = time.perf_counter() - t0
        c = self.counters()
        return RunStats(packets=c["frames"] - before["frames"], bytes=c["bytes"] - before["bytes"],
                        flows=c["flows_created"] - before["flows_created"],
                        events=c["events"] - before["events"],
                        handler_calls=c["handler_calls"] - before["handler_calls"],
                        seconds=dt, counters=c, handler_errors=c["handler_errors"],
                        handler_errors_by_handler=self.handler_errors())
