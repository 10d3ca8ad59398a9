"""mos: stateful network middleboxes in Python on a compiled dual TCP stack.

    >>> import mos
    >>> eng = mos.Engine()
    >>> mon = eng.attach(mos.Monitor())
    >>> sizes = {}
    >>> @mon.on(mos.Event.CONN_NEW_DATA)
    ... def grew(flow, side, event):
    ...     sizes[flow.id, side.name] = sizes.get((flow.id, side.name), 0) + len(flow.peek(side))
    >>> _ = eng.run(mos.sample_capture())
    >>> sum(sizes.values()) > 0
    True
"""

from __future__ import annotations

import os

from mos.config import Config
from mos.engine import Engine, RunStats
from mos.errors import (CaptureError, ConfigError, FlowClosedError, HandlerContextError,
                        HandlerError, MosError, RegistrationError)
from mos.events import (EndReason, ErrorReason, Event, Hook, Side, TcpState, UserEvent,
                        alloc_event, define_event)
from mos.monitor import Monitor
from mos.dualstack._engine import flow_attribute

__all__ = [
    "Config", "Engine", "RunStats", "Monitor", "Event", "Hook", "Side", "TcpState",
    "ErrorReason", "EndReason", "UserEvent", "define_event", "alloc_event", "MosError",
    "CaptureError", "ConfigError", "FlowClosedError", "RegistrationError", "HandlerError",
    "HandlerContextError", "sample_capture", "flow_attribute",
]

__version__ = "0.1.0"


def sample_capture() -> str:
    """Path of the capture shipped with mos (real curl/HTTP traffic, 198.18.0.0/15)."""
    return os.path.join(os.path.dirname(__file__), "data", "sample.pcap")
