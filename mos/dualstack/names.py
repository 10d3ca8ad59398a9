"""The names of the numbers the engine reports: built-in event ids, hooks,
sides, TCP states, ERROR and CONN_END reasons.  Their values mirror
engine.h (and the TCP module's state enum); ``mos.events`` re-exports them
as the public vocabulary of handlers."""

from __future__ import annotations

import enum

__all__ = ["Event", "Hook", "Side", "TcpState", "ErrorReason", "EndReason", "choices"]


def choices(kind: str, name: str, valid) -> str:
    """"unknown event 'CONN_STRAT' (did you mean CONN_START?); valid events: ..."."""
    import difflib  # only when a name is wrong

    valid = list(valid)
    close = difflib.get_close_matches(str(name).upper(), valid, n=2, cutoff=0.6)
    hint = f" (did you mean {' or '.join(close)}?)" if close else ""
    return f"unknown {kind} {name!r}{hint}; valid {kind}s: {', '.join(valid)}"


_KINDS = {"Event": "event", "Hook": "hook", "Side": "side", "TcpState": "TCP state",
          "ErrorReason": "error reason", "EndReason": "end reason"}


class _Names(enum.EnumType):
    """A misspelled member (``Event.CONN_STRAT``) names the valid ones."""

    def __getattr__(cls, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name.startswith("_"):
                raise
            kind = _KINDS.get(cls.__name__, cls.__name__)
            raise AttributeError(choices(kind, name, cls._member_names_)) from None


class Event(enum.IntEnum, metaclass=_Names):
    """Built-in events (values match the compiled core's)."""

    PKT_IN = 0            #: every packet of a tracked flow
    CONN_START = 1        #: first SYN of a flow (or mid-stream pick-up)
    TCP_STATE_CHANGE = 2  #: a state transition of either endpoint model
    CONN_NEW_DATA = 3     #: a packet made new in-order bytes readable on a side
    REXMIT = 4            #: a segment repeating sequence space already seen
    ERROR = 5             #: see ErrorReason
    ORPHAN = 6            #: a TCP packet of no tracked flow
    CONN_END = 7          #: flow destroyed, once per side
    TIMEOUT = 8           #: flow idle too long, just before CONN_END
    STREAM_NOTE = 9       #: a compiled stream consumer's note (Engine.add_consumer)


class Hook(enum.IntEnum, metaclass=_Names):
    """Where in packet processing a handler runs."""

    SEND = 0  #: after the sending side's model was updated
    RECV = 1  #: after the receiving side's model was updated
    NONE = 2  #: not tied to a packet's passage (orphans, flow end, timeouts)


class Side(enum.IntEnum, metaclass=_Names):
    CLIENT = 0
    SERVER = 1
    BOTH = 2

    @property
    def peer(self) -> "Side":
        if self is Side.BOTH:
            raise ValueError("Side.BOTH has no peer")
        return Side(1 - self)


class TcpState(enum.IntEnum, metaclass=_Names):
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


class ErrorReason(enum.IntEnum, metaclass=_Names):
    """Why an ERROR event fired (each has a counter in the run statistics)."""

    OUT_OF_WINDOW = 1      #: data beyond the receiver's window; not stored
    OVERRUN = 2            #: buffer full: unread bytes [a, b) were dropped
    BAD_CHECKSUM = 3       #: IPv4 or TCP checksum wrong (checksum=verify); packet ignored
    GAP = 4                #: a hole at offset a, length b, will never be filled
    OVERLAP_DIFF = 5       #: a retransmission carried b bytes different from the stored ones
    RST_OUT_OF_WINDOW = 6  #: RST with an unacceptable sequence number; ignored
    NO_ROOM = 7            #: b out-of-order bytes could not be stored
    BELOW_BASE = 8         #: retransmitted bytes older than the buffer holds (counter only)
    PAWS = 9               #: TSval a older than TS.Recent b (RFC 7323 5.3): segment ignored
    DATA_AFTER_FIN = 10    #: b bytes at offset a sequenced after the accepted FIN: not stored
    MEMCAP = 11            #: b bytes at offset a not stored: the reassembly memcap was reached
    URGENT = 12            #: a segment with URG set carries bytes at offset a; b: its urgent pointer


class EndReason(enum.IntEnum, metaclass=_Names):
    CLOSE = 1     #: both ends closed (FIN handshake completed)
    RST = 2       #: an acceptable RST
    TIMEOUT = 3   #: idle longer than tcp_timeout
    EVICT = 4     #: flow table full; least recently active flow evicted
    SHUTDOWN = 5  #: end of input (end of the capture, or the engine stopped)
    REUSE = 6     #: a new SYN reused the 4-tuple after a close
