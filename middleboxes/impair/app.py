"""impair: an in-line box that loses, duplicates and reorders TCP segments.

DESIGN §5: the kernels here have no ``tc netem``, so tests that want a bad
wire put this app between the two ports of an in-line run:

    MOS_IMPAIR="loss=0.02,dup=0.01,reorder=0.01,seed=7" \\
        mos run -c inline.yaml --app middleboxes.impair.app

Per TCP packet of a tracked flow, in both directions, one draw of a seeded
RNG decides (in this order, so the fractions are of all packets):

* ``loss``: ``flow.drop()``, it never leaves;
* ``dup``: it leaves, and a copy follows it (``engine.inject`` on the port
  it was going to);
* ``reorder``: it is held back (dropped and kept) and leaves after the next
  packet of the same direction, or after ``hold`` seconds if none comes, so
  nothing waits longer than that.  At most ``max_held`` packets wait; one
  more is forwarded in order (counted as ``held_full``).

Everything else, and every frame that is not TCP of a tracked flow (ARP,
ICMP, neighbour discovery, UDP), passes untouched: the engine forwards it
and no handler sees it.  ``handshake=0`` spares segments with SYN set
(their loss costs RFC 6298's 1 s initial RTO whatever the recovery: a test
of data recovery may want that out of its timing).  Counters are printed
on stderr at the end (``finish``), one JSON object after ``impair: ``.

Parameters come from ``attach(engine, **params)`` or, under ``mos run``,
from the environment variable ``MOS_IMPAIR`` (``key=value`` separated by
commas).  Use ``workers: 1``: each worker has its own RNG.

    >>> import mos
    >>> from middleboxes import impair
    >>> eng = mos.Engine(mos.Config())
    >>> box = impair.attach(eng, loss=0.5, seed=3)
    >>> box.params["loss"], box.params["dup"]
    (0.5, 0.01)
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
import weakref
from collections import deque

import mos
from mos import Event

__all__ = ["DEFAULTS", "Impair", "attach", "finish", "parse_params"]

#: parameter -> default (its type is the default's)
DEFAULTS = {"loss": 0.02, "dup": 0.01, "reorder": 0.01, "seed": 1, "hold": 0.005,
            "max_held": 64, "handshake": 1}
ENV = "MOS_IMPAIR"

_by_engine: weakref.WeakKeyDictionary[object, Impair] = weakref.WeakKeyDictionary()


def parse_params(text: str) -> dict:
    """``"loss=0.05,seed=3"`` -> ``{"loss": 0.05, "seed": 3}`` (checked)."""
    out = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or key not in DEFAULTS:
            raise mos.ConfigError(f"{ENV}: {item!r} is not KEY=VALUE with KEY one of "
                                  f"{', '.join(DEFAULTS)}")
        try:
            out[key] = type(DEFAULTS[key])(value.strip())
        except ValueError:
            raise mos.ConfigError(f"{ENV}: {key}={value!r} is not a "
                                  f"{type(DEFAULTS[key]).__name__}") from None
    return out


def _checked(params: dict) -> dict:
    p = dict(DEFAULTS)
    for key, value in params.items():
        if key not in DEFAULTS:
            raise mos.ConfigError(f"impair: unknown parameter {key!r}")
        p[key] = type(DEFAULTS[key])(value)
    for key in ("loss", "dup", "reorder"):
        if not 0.0 <= p[key] <= 1.0:
            raise mos.ConfigError(f"impair: {key}={p[key]!r} is not a fraction in 0..1")
    if p["loss"] + p["dup"] + p["reorder"] > 1.0:
        raise mos.ConfigError("impair: loss + dup + reorder exceed 1")
    if not (0 < p["hold"] <= 1.0):
        raise mos.ConfigError(f"impair: hold={p['hold']!r} is not in (0, 1] seconds")
    if p["max_held"] < 0:
        raise mos.ConfigError(f"impair: max_held={p['max_held']!r} is negative")
    return p


class Impair:
    """The impairment box on one engine: its monitor, RNG, held packets and counters."""

    def __init__(self, engine, **params):
        self.params = _checked(params)
        self.rng = random.Random(self.params["seed"])
        self._engine = weakref.ref(engine)  # the engine keeps us (_by_engine); no cycle
        # per direction (the port a packet arrived on): (port to leave by, frame), oldest first
        self.held: dict[int, deque] = {}
        self.nheld = 0
        self.counts = {"packets": 0, "dropped": 0, "duplicated": 0, "reordered": 0,
                       "released_by_next": 0, "released_by_timer": 0, "held_full": 0,
                       "longest_hold_ms": 0.0}
        self._timer = None
        # no stream bytes are kept: the box looks at headers only
        self.monitor = mos.Monitor(name="impair", reads=False)
        self.monitor.on(Event.PKT_IN, self.on_packet)
        engine.attach(self.monitor)

    def on_packet(self, flow, side, event):
        pkt = flow.packet
        self.counts["packets"] += 1
        arrived = pkt.iface
        # packets held in this direction go after this one (reordered by one)
        if self.held.get(arrived):
            self._release(arrived, "released_by_next")
        p = self.params
        if not p["handshake"] and pkt.flags & 0x02:  # SYN
            return
        x = self.rng.random()
        if x < p["loss"]:
            self.counts["dropped"] += 1
            pkt.drop()
            return
        eng = flow.engine
        out = eng.peer_of(arrived)
        if out < 0:  # passive port: nothing is forwarded, nothing to impair
            return
        x -= p["loss"]
        if x < p["dup"]:
            self.counts["duplicated"] += 1
            eng.inject(pkt.frame, out)  # after this burst: behind the original
            return
        x -= p["dup"]
        if x < p["reorder"]:
            if self.nheld >= p["max_held"]:
                self.counts["held_full"] += 1
                return
            self.counts["reordered"] += 1
            self.held.setdefault(arrived, deque()).append((out, pkt.frame, time.monotonic()))
            self.nheld += 1
            pkt.drop()
            if self._timer is None:
                self._timer = eng.set_timer(p["hold"], self._on_timer)

    def _release(self, arrived: int, why: str) -> None:
        eng = self._engine()
        if eng is None:  # the run is over
            return
        q = self.held[arrived]
        while q:
            out, frame, since = q.popleft()
            self.nheld -= 1
            waited = (time.monotonic() - since) * 1000
            if waited > self.counts["longest_hold_ms"]:
                self.counts["longest_hold_ms"] = round(waited, 3)
            self.counts[why] += 1
            eng.inject(frame, out)

    def _on_timer(self, engine) -> None:
        # one timer for all held packets: it lets out whatever still waits,
        # so a packet waits at most 2 * hold (held just after it was armed)
        self._timer = None
        for arrived in list(self.held):
            self._release(arrived, "released_by_timer")

    def report(self) -> dict:
        return {**self.counts, "held": self.nheld, "params": self.params}


def attach(engine, **params) -> Impair:
    """Put the box on ``engine`` (in-line ports); ``params`` override
    ``MOS_IMPAIR``, which overrides DEFAULTS."""
    merged = {**parse_params(os.environ.get(ENV, "")), **params}
    box = Impair(engine, **merged)
    _by_engine[engine] = box
    return box


def finish(engine, stats=None) -> None:
    """Print the counters on stderr (stdout carries the run's JSON line)."""
    box = _by_engine.get(engine)
    if box is not None:
        print("impair: " + json.dumps(box.report(), sort_keys=True), file=sys.stderr, flush=True)
