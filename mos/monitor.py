"""Monitors: a set of handlers, optionally limited to some flows.

    >>> import mos
    >>> mon = mos.Monitor(filter="port 80")
    >>> @mon.on(mos.Event.CONN_NEW_DATA, side=mos.Side.SERVER)
    ... def request_bytes(flow, side, event):
    ...     data = flow.peek(side)          # what the client sent, from this monitor's offset

Each monitor keeps its own read offset per flow and side, so two monitors
can read the same stream independently.

Bytes are kept only for a side some monitor reads (DESIGN rule 2): by
default a monitor reads the sides it has CONN_NEW_DATA handlers for (or
user events built on CONN_NEW_DATA).  A monitor that peeks from other
events says so: ``Monitor(reads=Side.BOTH)``; one with data handlers that
never peeks can say ``reads=False``.  A side nobody reads keeps no bytes
(no memory, no OVERRUN errors); state tracking goes on.
"""

from __future__ import annotations

import weakref
from typing import Callable, Optional, Union

from mos.dualstack.calls import check_call
from mos.events import AnyEvent, Event, Hook, Side
from mos.events.tree import Registration, build_trees, event_bit, interest_mask
from mos.filter import FlowFilter, compile_filter

__all__ = ["Monitor"]


class Monitor:
    """A group of event handlers over the flows its filter admits.

    ``filter`` is a flow filter expression (``"port 80 and net 198.18.0.0/15"``,
    see :mod:`mos.filter`), a callable ``f(flow) -> bool`` evaluated once per
    flow, or None for every flow.
    """

    def __init__(self, filter: Union[None, str, Callable[..., bool]] = None, name: str = "",
                 reads: Union[None, bool, Side] = None):
        self.name = name or f"monitor{id(self) & 0xffff:04x}"
        self.filter: Optional[Callable] = compile_filter(filter) if isinstance(filter, str) else filter
        if self.filter is not None and not callable(self.filter):
            raise TypeError(f"filter must be a string or a callable, not {filter!r}")
        if self.filter is not None and not isinstance(filter, str):
            check_call(self.filter, ("flow",), f"filter of monitor {self.name}")
        self.filter_text = filter if isinstance(filter, str) else None
        self._regs: list[Registration] = []
        self._trees: dict = {}
        self._mask = 0
        self._engines: "weakref.WeakSet" = weakref.WeakSet()
        if reads is None or isinstance(reads, bool):
            self._reads = reads
        elif isinstance(reads, Side):
            self._reads = {Side.CLIENT: 1, Side.SERVER: 2, Side.BOTH: 3}[reads]
        else:
            raise TypeError(f"reads must be None, True, False or a mos.Side, not {reads!r}")

    def on(self, event: AnyEvent, handler: Optional[Callable] = None, *,
           hook: Union[None, Hook, tuple] = None, side: Side = Side.BOTH):
        """Register ``handler(flow, side, event)`` for ``event``.

        ``hook`` defaults per event (mos.events.DEFAULT_HOOKS); a pair that can
        never fire (e.g. CONN_NEW_DATA at Hook.SEND) raises RegistrationError.
        Usable as a decorator when ``handler`` is omitted.
        """
        if handler is None:
            def deco(fn):
                self.on(event, fn, hook=hook, side=side)
                return fn
            return deco
        self._regs.append(Registration(event, handler, hook, side))
        self._changed()
        return handler

    def off(self, event: AnyEvent, handler: Callable) -> int:
        """Remove every registration of ``handler`` for ``event``; returns how many."""
        before = len(self._regs)
        self._regs = [r for r in self._regs if not (r.event is event and r.handler == handler)]
        if len(self._regs) != before:
            self._changed()
        return before - len(self._regs)

    def _changed(self) -> None:
        self._trees = build_trees(self._regs)
        self._mask = interest_mask(self._trees)
        for eng in list(self._engines):
            eng._rebuild()

    def admits(self, flow) -> bool:
        return self.filter is None or bool(self.filter(flow))

    # What an engine reads of its monitors (the core never touches private fields)

    @property
    def trees(self) -> dict:
        """bit -> dispatch tree of this monitor's registrations (mos.events.tree)."""
        return self._trees

    @property
    def interest(self) -> int:
        """The (event, hook, side) bits some registration needs."""
        return self._mask

    @property
    def reads(self) -> int:
        """The sides whose bytes this monitor reads: bit ``1 << side`` (0, 1, 2 or 3).
        By default the sides of its CONN_NEW_DATA registrations."""
        if self._reads is None:
            return _NEW_DATA_SIDES(self._mask)
        if isinstance(self._reads, bool):
            return 3 if self._reads else 0
        return self._reads

    def bind(self, engine) -> None:
        """``engine`` rebuilds its dispatch tables (``engine._rebuild()``)
        whenever this monitor's registrations change."""
        self._engines.add(engine)

    def __repr__(self) -> str:
        flt = f" filter={self.filter_text!r}" if self.filter_text else ""
        return f"<Monitor {self.name}{flt} registrations={len(self._regs)}>"


FlowFilter = FlowFilter


def _NEW_DATA_SIDES(mask: int) -> int:
    """Sides with a CONN_NEW_DATA bit (at the RECV hook) in an interest mask."""
    out = 0
    for side in (Side.CLIENT, Side.SERVER):
        if mask >> event_bit(Event.CONN_NEW_DATA, Hook.RECV, side) & 1:
            out |= 1 << int(side)
    return out
