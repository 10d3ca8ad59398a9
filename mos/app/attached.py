"""What mos.app's parsers share: a compiled consumer attached to one engine,
kept alive by that engine (one per engine and kind), and the flow's parser
state read from the consumer's slot, or from the ended flows it keeps."""

from __future__ import annotations

import weakref

from mos.errors import FlowClosedError
from mos.events import Side


class AttachedParser:
    """A subclass sets ``parser`` (the consumer, with ``ended(flow_id)``),
    ``what`` (for messages), ``view`` (the flow view class) and a class-level
    ``registry`` (a WeakKeyDictionary: engine -> its instance; the engine
    keeps the instance alive however the app that attached it holds it, and
    the instance refers to its engine weakly, so an unused engine goes with
    its entry)."""

    registry: "weakref.WeakKeyDictionary"
    what = "this parser"
    view = None

    def __init__(self):
        self._engine = None
        self.consumer_id = None

    def attach(self, engine):
        kind = type(self).__name__
        if self._engine is not None:
            raise RuntimeError(f"this {kind} is attached to an engine already")
        if engine in self.registry:
            raise RuntimeError(f"this engine {self.what} already (one {kind} per engine)")
        self.consumer_id = engine.add_consumer(self.parser, Side.BOTH)
        self._engine = weakref.ref(engine)
        self.registry[engine] = self
        return self

    @property
    def engine(self):
        """The engine attached to (None before attach or once it is gone)."""
        return self._engine() if self._engine is not None else None

    def _state(self, flow):
        """The flow's parser state capsule: live, or kept a little after its end."""
        try:
            cap = flow.consumer_state(self.consumer_id, Side.SERVER)
        except FlowClosedError:
            cap = None
        return cap if cap is not None else self.parser.ended(flow.id)

    def of(self, flow):
        """The flow's view (``flow.http``, ``flow.tls``), or None."""
        return self.view(flow, self) if self._state(flow) is not None else None

    @classmethod
    def of_flow(cls, flow):
        """The view through the instance on the flow's engine (a flow_attribute getter)."""
        inst = cls.registry.get(flow.engine)
        return inst.of(flow) if inst is not None else None
