"""Capture files through the engine: the capture is a port (CaptureReader),
and so is the optional output (PcapWriter).

    >>> import mos
    >>> from mos.runtime.capture import run_capture
    >>> eng = mos.Engine()
    >>> run_capture(eng, mos.sample_capture()) > 0
    True
"""

from __future__ import annotations

import os
from typing import Callable, Optional

from mos.runtime._loop import CaptureReader, PcapWriter
from mos.runtime._loop import run_capture as _run

__all__ = ["run_capture"]


def run_capture(engine, path: "str | os.PathLike", write: "str | os.PathLike | None" = None,
                progress: Optional[Callable] = None, limit: int = -1, close: bool = True) -> int:
    """Feed the frames of a pcap/pcapng file to ``engine`` at their own
    timestamps; returns how many were read.

    With ``write`` the engine runs as an in-line box whose output port is a
    pcap file (the input's link type): it holds what the box forwarded, with
    drops, edits (sequence numbers translated) and injected frames applied.
    Raises CaptureError for an unreadable or corrupt input (after processing
    the frames before the fault), OutputError when the output cannot be
    created or written."""
    reader = CaptureReader(os.fspath(path))
    writer = None
    try:
        if write is not None:
            writer = PcapWriter(os.fspath(write), reader.linktype)
        try:
            return _run(engine, reader, writer, progress, limit, close)
        finally:
            if writer is not None:
                writer.close()  # a failed write surfaces here (OutputError)
    finally:
        reader.close()
