"""Immutable details of the event being handled (``flow.event_info``), as
the engine reports them; ``mos.events.info`` re-exports them."""

from __future__ import annotations

from dataclasses import dataclass

from mos.dualstack.names import EndReason, ErrorReason, TcpState

__all__ = ["StateChange", "ErrorInfo", "EndInfo", "NewData", "Rexmit", "StreamNote"]


@dataclass(frozen=True, slots=True)
class StateChange:
    old: TcpState
    new: TcpState


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """``a``/``b`` by reason: GAP (offset, length); OVERRUN (from, to) of the
    bytes dropped unread; OUT_OF_WINDOW / NO_ROOM / OVERLAP_DIFF (offset,
    length); RST_OUT_OF_WINDOW (seq, 0)."""

    reason: ErrorReason
    a: int
    b: int

    @property
    def offset(self) -> int:
        return self.a

    @property
    def length(self) -> int:
        return self.b - self.a if self.reason is ErrorReason.OVERRUN else self.b


@dataclass(frozen=True, slots=True)
class EndInfo:
    reason: EndReason


@dataclass(frozen=True, slots=True)
class NewData:
    head: int      #: in-order frontier (stream offset) when the event was raised
    advanced: int  #: bytes by which it advanced at that moment


@dataclass(frozen=True, slots=True)
class Rexmit:
    offset: int
    length: int


@dataclass(frozen=True, slots=True)
class StreamNote:
    """A compiled stream consumer's note (Event.STREAM_NOTE): ``consumer``
    is the number Engine.add_consumer returned; ``code``, ``a`` and ``b``
    are the consumer's to define (for a pattern scanner: pattern id and the
    stream offset just past the match)."""

    consumer: int
    code: int
    a: int
    b: int
