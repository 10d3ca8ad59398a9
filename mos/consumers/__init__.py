"""Compiled stream consumers shipped with mos (see ``Engine.add_consumer``).

A consumer is C code that reads each stream's in-order bytes inside the
core and raises ``Event.STREAM_NOTE`` for what it finds, so a handler runs
only when there is something to say.  ``Literal`` is the small example;
``middleboxes.ids`` builds its multi-pattern prefilter the same way.
"""

from mos.consumers._literal import Literal

__all__ = ["Literal"]
