"""Dispatch trees: registrations compiled into what the dispatcher walks.

For every (built-in event, hook, side) bit, a monitor has at most one tree:
the handlers of the built-in event, then each user-defined event below it
whose subtree has handlers, with its filter.  Subtrees with no handler are
left out, so their filters never run (DESIGN 2: filters run only if some
handler exists below them).  Trees are rebuilt on (rare) registration
changes, never per event.
"""

from __future__ import annotations

from typing import Callable, Iterable, Optional

from mos.dualstack.calls import check_call
from mos.dualstack.names import choices
from mos.errors import RegistrationError
from mos.events import DEFAULT_HOOKS, VALID_HOOKS, AnyEvent, Event, Hook, Side, UserEvent

Handler = Callable[..., object]


def event_bit(event: Event, hook: Hook, side: int) -> int:
    """Bit number of (event, hook, side) in the core's interest masks."""
    return int(event) * 6 + int(hook) * 2 + int(side)


class Node:
    """One event in a dispatch tree: its handlers and the children worth visiting."""

    __slots__ = ("event", "handlers", "children")

    def __init__(self, event: AnyEvent):
        self.event = event
        self.handlers: tuple = ()
        # (user event, its filter or None, Node); filter None = raised explicitly
        self.children: tuple = ()

    def child(self, ude: UserEvent) -> "Node":
        for ev, _f, node in self.children:
            if ev is ude:
                return node
        node = Node(ude)
        self.children = self.children + ((ude, ude.filter, node),)
        return node

    def find(self, chain: list) -> Optional["Node"]:
        node: Optional[Node] = self
        for ev in chain[1:]:
            if node is None:
                return None
            node = next((n for e, _f, n in node.children if e is ev), None)
        return node

    def __repr__(self) -> str:
        return f"<Node {self.event!r} handlers={len(self.handlers)} children={len(self.children)}>"


class Registration:
    """One handler for one event at some hooks and sides, checked when made:
    the event, hooks and side must exist (a wrong name lists the valid
    ones), the pair must be able to fire, and the handler must accept what
    the dispatcher passes, ``handler(flow, side, event)``."""

    __slots__ = ("event", "hooks", "sides", "handler")

    def __init__(self, event: AnyEvent, handler: Handler, hook, side):
        event = _event(event)
        if not callable(handler):
            raise RegistrationError(f"handler for {_name(event)} is not callable: {handler!r}")
        root = event if isinstance(event, Event) else event.root
        valid_hooks = sorted(VALID_HOOKS[root])
        if hook is None:
            hooks = DEFAULT_HOOKS[root]
        else:
            hooks = tuple(hook) if isinstance(hook, (tuple, list, set, frozenset)) else (hook,)
            hooks = tuple(_member(Hook, h, "hook", [x.name for x in valid_hooks],
                                  f" for {_name(event)}") for h in hooks)
            for h in hooks:
                if h not in VALID_HOOKS[root]:
                    valid = ", ".join(x.name for x in valid_hooks)
                    raise RegistrationError(
                        f"{_name(event)} never fires at hook {h.name}; valid hooks: {valid}"
                    )
        side = _member(Side, side, "side", [x.name for x in Side], f" for {_name(event)}")
        check_call(handler, ("flow", "side", "event"), f"handler for {_name(event)}")
        self.event = event
        self.hooks = hooks
        self.sides = (Side.CLIENT, Side.SERVER) if side is Side.BOTH else (side,)
        self.handler = handler

    def bits(self) -> Iterable[int]:
        root = self.event if isinstance(self.event, Event) else self.event.root
        for h in self.hooks:
            for s in self.sides:
                yield event_bit(root, h, s)


def _event(event) -> AnyEvent:
    """An Event, a UserEvent, an event id or an event name ('CONN_START',
    case-insensitive); anything else is refused with the valid names."""
    if isinstance(event, (Event, UserEvent)):
        return event
    names = [e.name for e in Event]
    if isinstance(event, str):
        try:
            return Event[event.strip().upper()]
        except KeyError:
            raise RegistrationError(choices("event", event, names)) from None
    if isinstance(event, int) and not isinstance(event, bool):
        try:
            return Event(event)
        except ValueError:
            pass
    raise RegistrationError(choices("event", event, names)
                            + " (or a UserEvent from define_event / alloc_event)")


def _member(enum_type, value, kind: str, valid: list, where: str):
    """A Hook or Side from a member, its value or its name."""
    if isinstance(value, enum_type):
        return value
    try:
        if isinstance(value, str):
            return enum_type[value.strip().upper()]
        if isinstance(value, int) and not isinstance(value, bool):
            return enum_type(value)
    except (KeyError, ValueError):
        pass
    raise RegistrationError(choices(kind, value, valid) + where)


def _name(event: AnyEvent) -> str:
    return event.name if isinstance(event, (Event, UserEvent)) else repr(event)


def build_trees(regs: Iterable[Registration]) -> dict[int, Node]:
    """Compile registrations into one tree per bit."""
    trees: dict[int, Node] = {}
    for reg in regs:
        chain = reg.event.chain() if isinstance(reg.event, UserEvent) else [reg.event]
        for bit in reg.bits():
            node = trees.get(bit)
            if node is None:
                node = trees[bit] = Node(chain[0])
            for ude in chain[1:]:
                node = node.child(ude)
            node.handlers = node.handlers + (reg.handler,)
    return trees


def interest_mask(trees: dict[int, Node]) -> int:
    mask = 0
    for bit in trees:
        mask |= 1 << bit
    return mask
