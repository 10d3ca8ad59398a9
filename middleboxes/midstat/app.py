"""midstat: one statistics row per flow, a table at the end, optional status lines.

    >>> import mos
    >>> from middleboxes import midstat
    >>> eng = mos.Engine(mos.Config())
    >>> ms = midstat.attach(eng)
    >>> stats = eng.run(mos.sample_capture())
    >>> len(ms.rows()) == stats.flows
    True

Per flow, while it lives, a FlowRecord sits in ``flow.uctx``:

* CONN_START: the record is created (addresses, start time).
* TCP_STATE_CHANGE (SEND and RECV hooks, so every transition): the side's
  path of states grows by the new state (``event_info.new``). The state is
  taken from the event, not from ``flow.endpoint(side).state``, because the
  live endpoint may already be further on when a batch of events is handled.
* CONN_END (fires once per side): the first call fills in final states,
  packets, bytes, duration and end reason, moves the record to
  ``MidStat.finished`` and clears ``flow.uctx``; the second call finds
  nothing to do.

``finish(engine, stats)`` prints every flow, sorted by id, and totals.
``attach(engine, interval=N)`` also prints, every N seconds of capture time,
the number of live flows and the five flows with the most bytes.
"""

from __future__ import annotations

import math
import sys
import weakref
from dataclasses import dataclass, field
from typing import Optional, TextIO

import mos
from mos import EndReason, Event, Side, TcpState

from middleboxes.midstat.table import render_status, render_table

__all__ = ["FlowRecord", "MidStat", "attach", "finish"]

TOP_N = 5

_by_engine: "weakref.WeakKeyDictionary[object, MidStat]" = weakref.WeakKeyDictionary()


@dataclass(slots=True)
class FlowRecord:
    """What midstat knows of one flow. Lists of two are indexed by Side
    (``rec.bytes[Side.CLIENT]`` is what the client sent)."""

    id: int
    client: str  #: "198.18.0.1:40000" or "[2001:db8::1]:40000"
    server: str
    ipver: int
    start: float  #: capture time of the flow's first packet, seconds
    #: states each end went through, oldest first (first entry: before the first change)
    paths: tuple[list, list] = field(default_factory=lambda: ([], []))
    packets: list = field(default_factory=lambda: [0, 0])  #: packets each side sent
    #: payload bytes each side sent, retransmissions included
    bytes: list = field(default_factory=lambda: [0, 0])
    stream_bytes: list = field(default_factory=lambda: [0, 0])  #: stream length each side sent
    duration: float = 0.0  #: first to last packet, seconds
    end_reason: Optional[EndReason] = None  #: None while the flow lives

    @property
    def client_state(self) -> Optional[TcpState]:
        return self.paths[Side.CLIENT][-1] if self.paths[Side.CLIENT] else None

    @property
    def server_state(self) -> Optional[TcpState]:
        return self.paths[Side.SERVER][-1] if self.paths[Side.SERVER] else None

    @property
    def ended(self) -> bool:
        return self.end_reason is not None

    def update_counts(self, flow) -> None:
        """Copy the counters and final states from a live (or dying) flow."""
        for side in (Side.CLIENT, Side.SERVER):
            ep = flow.endpoint(side)
            self.packets[side] = ep.packets
            self.bytes[side] = ep.bytes
            self.stream_bytes[side] = ep.stream_bytes
            path = self.paths[side]
            if not path or path[-1] != ep.state:
                path.append(ep.state)
        self.duration = flow.duration


class MidStat:
    """The midstat app on one engine: its monitor, records and status timer."""

    def __init__(self, engine, interval: Optional[float] = None, filter=None,
                 out: Optional[TextIO] = None):
        if interval is not None:
            if isinstance(interval, bool) or not isinstance(interval, (int, float)):
                raise mos.ConfigError(f"midstat interval: {interval!r} is not a number of seconds")
            if not (interval > 0 and math.isfinite(interval)):
                raise mos.ConfigError(f"midstat interval: {interval!r} is not > 0 seconds")
        # weak: _by_engine maps engine -> MidStat, a strong link back would pin the engine
        self._engine = weakref.ref(engine)
        self.interval = interval
        self.out = out
        self.finished: dict[int, FlowRecord] = {}
        self.first_start: Optional[float] = None
        self.timer = None
        # counts and states only: no stream bytes are kept for midstat
        self.monitor = mos.Monitor(filter=filter, name="midstat", reads=False)
        self.monitor.on(Event.CONN_START, self.on_start)
        self.monitor.on(Event.TCP_STATE_CHANGE, self.on_state_change)
        self.monitor.on(Event.CONN_END, self.on_end)
        engine.attach(self.monitor)

    @property
    def engine(self):
        engine = self._engine()
        if engine is None:
            raise RuntimeError("midstat: its engine no longer exists")
        return engine

    # ------------------------------------------------------------ handlers

    def record(self, flow) -> FlowRecord:
        """The flow's record, created if this monitor missed its CONN_START."""
        rec = flow.uctx
        if not isinstance(rec, FlowRecord):
            rec = flow.uctx = FlowRecord(flow.id, flow.client_addr, flow.server_addr,
                                         flow.ipver, flow.start_time)
            if self.first_start is None or rec.start < self.first_start:
                self.first_start = rec.start
        return rec

    def on_start(self, flow, side, event) -> None:
        self.record(flow)
        if self.interval is not None and self.timer is None:
            self.arm_timer(flow.start_time)

    def on_state_change(self, flow, side, event) -> None:
        info = flow.event_info
        path = self.record(flow).paths[side]
        if not path:
            path.append(info.old)
        path.append(info.new)

    def on_end(self, flow, side, event) -> None:
        rec = flow.uctx
        if not isinstance(rec, FlowRecord):
            if flow.id in self.finished:
                return  # second CONN_END of this flow (the other side)
            rec = self.record(flow)
        rec.update_counts(flow)
        info = flow.event_info
        rec.end_reason = info.reason if info is not None else flow.end_reason
        self.finished[rec.id] = rec
        flow.uctx = None

    # ------------------------------------------------------------ status

    def arm_timer(self, first_start: float) -> None:
        """Start the periodic status at the first multiple of ``interval``
        after the first flow's start that is not in the past.

        Armed on the first CONN_START rather than in attach: before the
        first packet the engine's clock is 0, not capture time."""
        now = self.engine.now
        ticks = max(1, math.ceil((now - first_start) / self.interval))
        delay = max(0.0, first_start + ticks * self.interval - now)
        self.timer = self.engine.set_timer(delay, self.status, periodic=True)

    def status(self, engine) -> None:
        live = engine.live_flows()
        top = sorted(live, key=lambda f: (-(f.client.bytes + f.server.bytes), f.id))[:TOP_N]
        since = engine.now - (self.first_start if self.first_start is not None else engine.now)
        out = self.out if self.out is not None else sys.stdout
        out.write(render_status(since, len(live), [_live_row(f) for f in top]))
        out.flush()

    # ------------------------------------------------------------ results

    def rows(self) -> list[FlowRecord]:
        """Every flow seen, ended or still live, sorted by id (the ended
        ones remain available after the engine is gone)."""
        rows = dict(self.finished)
        engine = self._engine()
        for flow in engine.live_flows() if engine is not None else ():
            rec = flow.uctx_of(self.monitor)
            if isinstance(rec, FlowRecord) and rec.id not in rows:
                rec.update_counts(flow)
                rows[rec.id] = rec
        return [rows[k] for k in sorted(rows)]

    def totals(self) -> dict:
        rows = self.rows()
        reasons: dict[str, int] = {}
        for r in rows:
            key = r.end_reason.name if r.end_reason is not None else "LIVE"
            reasons[key] = reasons.get(key, 0) + 1
        return {
            "flows": len(rows),
            "end_reasons": reasons,
            "packets": [sum(r.packets[s] for r in rows) for s in (Side.CLIENT, Side.SERVER)],
            "bytes": [sum(r.bytes[s] for r in rows) for s in (Side.CLIENT, Side.SERVER)],
        }

    def report(self, out: Optional[TextIO] = None, rich: Optional[bool] = None) -> None:
        """Print the table of flows and the totals; rich when ``out`` is a terminal."""
        out = out if out is not None else (self.out if self.out is not None else sys.stdout)
        if rich is None:
            rich = _isatty(out)
        render_table(self.rows(), self.totals(), out, rich=rich)


def _live_row(flow) -> FlowRecord:
    rec = FlowRecord(flow.id, flow.client_addr, flow.server_addr, flow.ipver, flow.start_time)
    rec.update_counts(flow)
    return rec


def _isatty(out) -> bool:
    try:
        return bool(out.isatty())
    except (AttributeError, ValueError):
        return False


def attach(engine, interval: Optional[float] = None, filter=None,
           out: Optional[TextIO] = None) -> MidStat:
    """Register midstat's monitor on ``engine``; returns the MidStat.

    ``interval``: print a status line every that many seconds of capture
    time (off by default). ``filter``: a flow filter (see mos.filter).
    ``out``: where status lines and the report go (default: stdout)."""
    ms = MidStat(engine, interval=interval, filter=filter, out=out)
    _by_engine[engine] = ms
    return ms


def finish(engine, stats=None) -> None:
    """Print the flow table and totals of the midstat attached to ``engine``."""
    ms = _by_engine.get(engine)
    if ms is None:
        raise RuntimeError(f"midstat.finish: attach() was never called on {engine!r}")
    ms.report()
