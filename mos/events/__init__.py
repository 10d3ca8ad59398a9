"""Event identities: built-in events, hooks, sides and user-defined events.

Built-in events are raised by the compiled core; user-defined events (UDEs)
hang below them in a tree and fire when their base fires and their filter
says yes::

    >>> from mos.events import Event, define_event
    >>> big = define_event(Event.CONN_NEW_DATA, lambda flow, side, ev: True, name="big")
    >>> big.root is Event.CONN_NEW_DATA
    True
"""

from __future__ import annotations

import itertools
from typing import Callable, Optional, Union

from mos.dualstack.calls import check_call
from mos.dualstack.names import EndReason, ErrorReason, Event, Hook, Side, TcpState

__all__ = [
    "Event", "Hook", "Side", "TcpState", "ErrorReason", "EndReason", "UserEvent",
    "define_event", "alloc_event", "VALID_HOOKS", "DEFAULT_HOOKS", "AnyEvent",
]


#: hooks at which each built-in event can fire
VALID_HOOKS: dict[Event, frozenset[Hook]] = {
    Event.PKT_IN: frozenset({Hook.SEND, Hook.RECV}),
    Event.CONN_START: frozenset({Hook.SEND, Hook.RECV}),
    Event.TCP_STATE_CHANGE: frozenset({Hook.SEND, Hook.RECV}),
    Event.CONN_NEW_DATA: frozenset({Hook.RECV}),
    Event.REXMIT: frozenset({Hook.SEND}),
    Event.ERROR: frozenset({Hook.RECV}),
    Event.ORPHAN: frozenset({Hook.NONE}),
    Event.CONN_END: frozenset({Hook.NONE}),
    Event.TIMEOUT: frozenset({Hook.NONE}),
    Event.STREAM_NOTE: frozenset({Hook.RECV}),
}

#: hooks used when a registration names none: one call per packet for
#: PKT_IN, one per flow for CONN_START, every transition for TCP_STATE_CHANGE
DEFAULT_HOOKS: dict[Event, tuple[Hook, ...]] = {
    Event.PKT_IN: (Hook.RECV,),
    Event.CONN_START: (Hook.SEND,),
    Event.TCP_STATE_CHANGE: (Hook.SEND, Hook.RECV),
    Event.CONN_NEW_DATA: (Hook.RECV,),
    Event.REXMIT: (Hook.SEND,),
    Event.ERROR: (Hook.RECV,),
    Event.ORPHAN: (Hook.NONE,),
    Event.CONN_END: (Hook.NONE,),
    Event.TIMEOUT: (Hook.NONE,),
    Event.STREAM_NOTE: (Hook.RECV,),
}

_ids = itertools.count(1)

Filter = Callable[..., bool]


class UserEvent:
    """A user-defined event: fires when ``base`` fires and ``filter`` is true.

    Create with :func:`define_event` or :func:`alloc_event`; UDEs chain (a
    UDE can be the base of another).  ``filter(flow, side, base_event)``
    runs only when some handler is registered at or below this event.
    """

    __slots__ = ("base", "filter", "name", "uid", "root", "children", "__weakref__")

    def __init__(self, base: "AnyEvent", filter: Optional[Filter], name: Optional[str]):
        if not isinstance(base, (Event, UserEvent)):
            raise TypeError(f"base must be an Event or a UserEvent, not {base!r}")
        if filter is not None and not callable(filter):
            raise TypeError(f"filter must be callable, not {filter!r}")
        if filter is not None:
            check_call(filter, ("flow", "side", "event"), f"filter of event {name or 'ude'}")
        self.base = base
        self.filter = filter
        self.uid = next(_ids)
        self.name = name or f"ude{self.uid}"
        self.root: Event = base if isinstance(base, Event) else base.root
        self.children: list[UserEvent] = []
        if isinstance(base, UserEvent):
            base.children.append(self)

    def chain(self) -> list["AnyEvent"]:
        """Events from the root built-in event down to this one."""
        out: list[AnyEvent] = [self]
        ev: AnyEvent = self
        while isinstance(ev, UserEvent):
            ev = ev.base
            out.append(ev)
        return out[::-1]

    def __repr__(self) -> str:
        kind = "filter" if self.filter else "raised"
        return f"<UserEvent {self.name} on {getattr(self.base, 'name', self.base)} ({kind})>"


AnyEvent = Union[Event, UserEvent]


def define_event(base: AnyEvent, filter: Filter, name: Optional[str] = None) -> UserEvent:
    """A new event that fires when ``base`` fires and ``filter(flow, side, event)`` is true."""
    if filter is None:
        raise TypeError("define_event needs a filter; use alloc_event for explicitly raised events")
    return UserEvent(base, filter, name)


def alloc_event(parent: AnyEvent, name: Optional[str] = None) -> UserEvent:
    """A child event of ``parent`` with no filter: it fires only when a filter
    or handler calls ``flow.raise_event(ev, side)`` (e.g. one event per pattern
    of a multi-pattern matcher)."""
    return UserEvent(parent, None, name)
