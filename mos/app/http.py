"""HTTP/1.x for apps: per-request events and transaction objects.

The parser is libhtp (Suricata 7's), run in C as a compiled stream consumer
on both streams of each flow; Python runs only for the events a handler
asked for, once per request, response or body chunk:

>>> import mos
>>> from mos.app import http
>>> eng = mos.Engine()
>>> _ = http.Http().attach(eng)
>>> mon = eng.attach(mos.Monitor())
>>> seen = []
>>> @mon.on(http.HTTP_REQUEST)
... def request(flow, side, event):
...     req = flow.http.request
...     seen.append((req.method, req.uri, req.header("host")))
>>> _ = eng.run(mos.sample_capture())
>>> seen[0]
('GET', '/index.html', '198.18.0.2')

Events (user-defined events on Event.STREAM_NOTE, so they come in packet
order with everything else, on the side that received the message):

=================== =====================================================
HTTP_REQUEST_LINE   the request line parsed, headers may follow (side
                    SERVER)
HTTP_REQUEST        request line and headers parsed (side SERVER)
HTTP_RESPONSE       status line and headers parsed (side CLIENT)
HTTP_BODY           a chunk of body, de-chunked and decompressed:
                    ``flow.http.body`` (either side); only with
                    ``Http(bodies=True)``, since it costs a Python call
                    per packet of body
HTTP_DONE           a request or a response is complete (its side)
HTTP_ANOMALY        a direction stopped being parsed or a body chunk was
                    cut: ``flow.http.anomaly`` names it
=================== =====================================================

``flow.http`` (inside any handler) is an ``HttpFlow``: ``tx`` is the
transaction the current event is about (else the newest), with
``request`` and ``response`` halves; ``transactions`` lists those still
readable (a transaction goes after both halves completed and the flow's
next packet came).
"""

from __future__ import annotations

import weakref
from typing import Optional

from mos.dualstack._engine import flow_attribute
from mos.errors import HandlerContextError
from mos.events import Event, define_event

from . import _http
from .attached import AttachedParser

MAGIC = _http.MAGIC
_K = _http.KIND

__all__ = ["Http", "HttpFlow", "Transaction", "Request", "Response", "HTTP_NOTE",
           "HTTP_REQUEST_LINE",
           "HTTP_REQUEST",
           "HTTP_RESPONSE", "HTTP_BODY", "HTTP_DONE", "HTTP_ANOMALY"]


def _kind(flow) -> int:
    code = flow.event_info.code
    return code & 0xFFFF if (code & 0xFFFF0000) == MAGIC else 0


def _is(*kinds):
    ks = frozenset(kinds)
    return lambda flow, side, event: _kind(flow) in ks


#: any note of the HTTP parser; the events below hang under it, so another
#: consumer's notes (an IDS prefilter's, many per flow) cost one filter call
HTTP_NOTE = define_event(Event.STREAM_NOTE,
                         lambda flow, side, event: _kind(flow) != 0, name="HTTP_NOTE")
HTTP_REQUEST_LINE = define_event(HTTP_NOTE, _is(_K["request_line"]), name="HTTP_REQUEST_LINE")
HTTP_REQUEST = define_event(HTTP_NOTE, _is(_K["request"]), name="HTTP_REQUEST")
HTTP_RESPONSE = define_event(HTTP_NOTE, _is(_K["response"]), name="HTTP_RESPONSE")
HTTP_BODY = define_event(HTTP_NOTE, _is(_K["request_body"], _K["response_body"]),
                         name="HTTP_BODY")
HTTP_DONE = define_event(HTTP_NOTE, _is(_K["request_done"], _K["response_done"]),
                         name="HTTP_DONE")
HTTP_ANOMALY = define_event(HTTP_NOTE, _is(_K["anomaly"]), name="HTTP_ANOMALY")


class _Message:
    __slots__ = ("headers", "line", "protocol", "body_length", "complete")

    def header(self, name: str, default=None) -> Optional[str]:
        """The first header of that name (case-insensitive), decoded as latin-1."""
        key = name.lower().encode("latin-1")
        for k, v in self.headers:
            if k.lower() == key:
                return v.decode("latin-1")
        return default

    def header_bytes(self, name: str) -> list:
        """Every value of that header, raw."""
        key = name.lower().encode("latin-1")
        return [v for k, v in self.headers if k.lower() == key]


class Request(_Message):
    """``method``, ``uri`` (str, latin-1), ``protocol``, ``headers`` (a list
    of (name, value) bytes pairs in wire order), ``host``, ``port``, ``line``
    (bytes), ``body_length`` (entity bytes so far), ``complete``."""
    __slots__ = ("method", "uri", "host", "port")

    def __init__(self, d: dict):
        s = lambda b: b.decode("latin-1") if b is not None else None  # noqa: E731
        self.method, self.uri, self.protocol = s(d["method"]), s(d["uri"]), s(d["protocol"])
        self.host, self.port, self.line = s(d["host"]), d["port"], d["line"]
        self.headers, self.body_length, self.complete = d["headers"], d["body_length"], \
            d["complete"]

    def __repr__(self):
        return f"<Request {self.method} {self.uri} {self.protocol}>"


class Response(_Message):
    """``status`` (int, None if not a number), ``message``, ``protocol``,
    ``headers``, ``line``, ``body_length``, ``complete``."""
    __slots__ = ("status", "message")

    def __init__(self, d: dict):
        s = lambda b: b.decode("latin-1") if b is not None else None  # noqa: E731
        self.status, self.message, self.protocol = d["status"], s(d["message"]), \
            s(d["protocol"])
        self.line, self.headers = d["line"], d["headers"]
        self.body_length, self.complete = d["body_length"], d["complete"]

    def __repr__(self):
        return f"<Response {self.status} {self.message}>"


class Transaction:
    """One request and its response (either may be None while unparsed, or
    once the transaction is gone)."""
    __slots__ = ("index", "_view")

    def __init__(self, view: "HttpFlow", index: int):
        self._view = view
        self.index = index

    @property
    def request(self) -> Optional[Request]:
        cap = self._view._state()
        d = _http.request_fields(cap, self.index) if cap is not None else None
        return Request(d) if d is not None else None

    @property
    def response(self) -> Optional[Response]:
        cap = self._view._state()
        d = _http.response_fields(cap, self.index) if cap is not None else None
        return Response(d) if d is not None else None

    def body_kept(self, request: bool = True) -> bytes:
        """The first bytes of the request's (or the response's) body, as the
        parser keeps them with the transaction when asked to
        (``Http.parser.keep_bodies``, ``for_engine(keep_bodies=N)``): de-chunked
        and decompressed, no Python call per body packet; b"" if none."""
        cap = self._view._state()
        return _http.body_kept(cap, self.index, 1 if request else 0) if cap is not None else b""

    def __repr__(self):
        return f"<Transaction {self.index}>"


class HttpFlow:
    """``flow.http``: the HTTP view of one flow.  It reads the parser's state
    afresh at each access (never a pointer kept across events), so one kept
    past its flow's end reads as empty instead of stale memory."""
    __slots__ = ("_flow", "_owner")

    def __init__(self, flow, owner: "Http"):
        self._flow = flow
        self._owner = owner

    def _state(self):
        return self._owner._state(self._flow)

    def _note(self):
        """(kind, a, b) of the current event if it is one of this parser's notes."""
        try:
            info = self._flow.event_info
        except HandlerContextError:     # read outside a handler: no current event
            return None
        code = getattr(info, "code", None)
        if code is None or (code & 0xFFFF0000) != MAGIC:
            return None
        return code & 0xFFFF, info.a, info.b

    @property
    def tx(self) -> Optional[Transaction]:
        n = self._note()
        if n is not None and n[0] != _K["anomaly"]:
            return Transaction(self, n[1])
        cap = self._state()
        live = _http.live_indexes(cap) if cap is not None else []
        return Transaction(self, live[-1]) if live else None

    @property
    def request(self) -> Optional[Request]:
        t = self.tx
        return t.request if t is not None else None

    @property
    def response(self) -> Optional[Response]:
        t = self.tx
        return t.response if t is not None else None

    @property
    def transactions(self) -> list:
        cap = self._state()
        return [Transaction(self, i) for i in (_http.live_indexes(cap) if cap else [])]

    @property
    def body(self) -> bytes:
        """The body chunk of the current HTTP_BODY event (b"" otherwise)."""
        n = self._note()
        cap = self._state()
        if n is None or cap is None or n[0] not in (_K["request_body"], _K["response_body"]):
            return b""
        return _http.body_chunk(cap, n[0] == _K["request_body"], n[2])

    @property
    def anomaly(self) -> Optional[str]:
        """What the current HTTP_ANOMALY event reports (parse_error, gap,
        tunnel, held_overflow, body_truncated)."""
        n = self._note()
        if n is None or n[0] != _K["anomaly"]:
            return None
        return _http.ANOMALIES.get(n[2])

    @property
    def stopped(self) -> tuple:
        """(request side, response side): why parsing stopped, or None."""
        cap = self._state()
        return _http.direction_state(cap) if cap is not None else (None, None)


class Http(AttachedParser):
    """Parses HTTP on an engine's flows (all TCP flows; a direction that is
    not HTTP is given up at its first bytes, at the cost of one libhtp call).

    ``bodies``: raise HTTP_BODY (off by default: a request logger needs no
    Python call per packet of body); ``arena_max``: body bytes one packet
    shows to HTTP_BODY handlers per direction; ``bomb_limit``: largest
    decompressed body."""

    registry: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
    what = "parses HTTP"
    view = HttpFlow

    def __init__(self, bodies: bool = False, arena_max: int = 1 << 20,
                 bomb_limit: int = 1 << 24):
        self.parser = _http.HttpParser(arena_max, bomb_limit, bodies)
        super().__init__()

    def stats(self) -> dict:
        return self.parser.stats()


def for_engine(engine, bodies: bool = False, keep_bodies: int = 0,
               kinds: Optional[tuple] = None) -> Http:
    """The Http parsing on ``engine``, attached now if none is; ``bodies``
    turns HTTP_BODY on for it, ``keep_bodies`` keeps at least that many body
    bytes with each transaction (``Transaction.body_kept``); ``kinds`` names
    the only notes this app needs (``_http.KIND``: "request",
    "response_done", ...; None: all), so events nobody handles cost no
    Python call; apps sharing one engine share one parser, which raises
    what any of them asked for."""
    h = Http.registry.get(engine)
    if h is None:
        h = Http(bodies=bodies).attach(engine)
        h.parser.kinds = tuple(_K) if kinds is None else tuple(kinds)
    elif kinds is None:
        h.parser.kinds = tuple(_K)
    else:
        h.parser.kinds = tuple(set(h.parser.kinds) | set(kinds))
    if bodies:
        h.parser.bodies = True
        h.parser.kinds = tuple(set(h.parser.kinds) | {"request_body", "response_body"})
    if keep_bodies > h.parser.keep_bodies:
        h.parser.keep_bodies = keep_bodies
    return h


flow_attribute("http", Http.of_flow)
