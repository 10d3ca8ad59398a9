"""Exceptions raised by mos.

API misuse and bad configuration raise; traffic anomalies never do (they
become ERROR events and counters)."""


class MosError(Exception):
    """Base class of every mos exception."""


class CaptureError(MosError):
    """A capture file cannot be opened or is corrupt (message names file and offset)."""


class ConfigError(MosError, ValueError):
    """An invalid option value; the message names the key (and file:line when from YAML)."""


class RegistrationError(MosError, ValueError):
    """A handler registration that cannot work, e.g. an (event, hook) pair that never fires."""


class FlowClosedError(MosError):
    """A Flow used for something that needs a live flow after the flow ended:
    its state is gone (the burst it ended in is over), or, in the burst it
    ended in, an operation that could no longer take effect (``set_timer``,
    ``reset``, ``drop``, ``on``)."""


class HandlerContextError(MosError, RuntimeError):
    """Something that exists only while a handler runs (``flow.packet``,
    ``flow.event_info``) was asked for outside one."""


class HandlerError(MosError):
    """A handler raised and ``on_handler_error`` is ``stop``: the run stops.
    The one-line message names the handler, the event, the flow and the
    packet number; the handler's own exception is ``__cause__``."""

    def __init__(self, message: str, handler: str = "", event: str = ""):
        super().__init__(message)
        self.handler = handler
        self.event = event


class OutputError(MosError):
    """An output file (a pcap writer) cannot be created or written (message names the file)."""
