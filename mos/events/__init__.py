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

import enum
import itertools
from typing import Callable, Optional, Union

__all__ = [
    "Event", "Hook", "Side", "TcpState", "ErrorReason", "EndReason", "UserEvent",
    "define_event", "alloc_event", "VALID_HOOKS", "DEFAULT_HOOKS", "AnyEvent",
]


class Event(enum.IntEnum):
    """Built-in events (values match the compiled core's)."""

    PKT_IN = 0            #: every packet of a tracked flow
    CONN_START = 1        #: first SYN of a flow (or mid-stream pick-up)
    TCP_STATE_CHANGE = 2  #: a state transition of either endpoint model
    CONN_NEW_DATA = 3     #: new in-order bytes readable on a side (once per side per burst)
    REXMIT = 4            #: a segment repeating sequence space already seen
    ERROR = 5             #: see ErrorReason
    ORPHAN = 6            #: a TCP packet of no tracked flow
    CONN_END = 7          #: flow destroyed, once per side
    TIMEOUT = 8           #: flow idle too long, just before CONN_END


class Hook(enum.IntEnum):
    """Where in packet processing a handler runs."""

    SEND = 0  #: after the sending side's model was updated
    RECV = 1  #: after the receiving side's model was updated
    NONE = 2  #: not tied to a packet's passage (orphans, flow end, timeouts)


class Side(enum.IntEnum):
    CLIENT = 0
    SERVER = 1
    BOTH = 2

    @property
    def peer(self) -> "Side":
        if self is Side.BOTH:
            raise ValueError("Side.BOTH has no peer")
        return Side(1 - self)


class TcpState(enum.IntEnum):
    """RFC 9293 3.3.2 connection states."""

    CLOSED = 0
    LISTEN = 1
    SYN_SENT = 2
    SYN_RCVD = 3
    ESTABLISHED = 4
    FIN_WAIT_1 = 5
    FIN_WAIT_2 = 6
    CLOSING = 7
    TIME_WAIT = 8
    CLOSE_WAIT = 9
    LAST_ACK = 10


class ErrorReason(enum.IntEnum):
    """Why an ERROR event fired (each has a counter in the run statistics)."""

    OUT_OF_WINDOW = 1      #: data beyond the receiver's window; not stored
    OVERRUN = 2            #: buffer full: unread bytes [a, b) were dropped
    BAD_CHECKSUM = 3       #: IPv4 or TCP checksum wrong (checksum=verify); packet ignored
    GAP = 4                #: a hole at offset a, length b, will never be filled
    OVERLAP_DIFF = 5       #: a retransmission carried b bytes different from the stored ones
    RST_OUT_OF_WINDOW = 6  #: RST with an unacceptable sequence number; ignored
    NO_ROOM = 7            #: b out-of-order bytes could not be stored
    BELOW_BASE = 8         #: retransmitted bytes older than the buffer holds (counter only)


class EndReason(enum.IntEnum):
    CLOSE = 1     #: both ends closed (FIN handshake completed)
    RST = 2       #: an acceptable RST
    TIMEOUT = 3   #: idle longer than tcp_timeout
    EVICT = 4     #: flow table full; least recently active flow evicted
    SHUTDOWN = 5  #: end of input (end of the capture, or the engine stopped)
    REUSE = 6     #: a new SYN reused the 4-tuple after a close


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
