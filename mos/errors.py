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
    """A Flow object used after its flow ended and its memory was reused."""


class OutputError(MosError):
    """An output file (a pcap writer) cannot be created or written (message names the file)."""
