"""The IDS as a mos app: rules in, alerts out, through the public event API.

How a stream rule is matched:

1. At attach, each stream rule's fast pattern (the content marked
   ``fast_pattern``, else its longest positive content) goes into one
   Hyperscan database, added to the engine as a compiled stream consumer
   (``Engine.add_consumer``): each direction's reassembled stream is scanned
   once, in C, across segment boundaries.
2. When a chunk of newly readable bytes holds a fast pattern, the consumer
   raises ``Event.STREAM_NOTE``; only then does Python run: the rules behind
   that pattern are checked (header, flow, flowbits) and their whole option
   chain evaluated (``detect.inspect``) on the stream around the chunk, read
   with ``flow.ppeek`` from the bytes the consumer keeps (``lookback``).
3. When an alert is reported depends on ``stream_inline`` (Suricata's
   ``stream.inline``).  In-line (True), as soon as the bytes are readable:
   the alert carries the packet that made them readable (``flow.packet``:
   its time, addresses and ``pcap_cnt``), so drop and reject act on it.
   Otherwise (IDS mode, Suricata's default off-line), a match waits until
   the receiver has acknowledged its last byte, and is reported with the
   next packet its sender sends after that (Suricata inspects a direction's
   stream on that direction's packets, up to the peer's ACK); one still
   waiting when the flow ends is reported then, as a pseudo packet
   (``pkt_src: "stream (flow timeout)"``).  Bytes never acknowledged were
   never accepted, and an alert may name the packet that proved they were.

With a ``host_os`` table (Suricata's ``host-os-policy``) each flow's
streams get the overlap policy of their receiving host at CONN_START.

Packet rules (``tcp-pkt``, ``dsize``, ``flow:no_stream``, the ``ip``
protocol without stream content, rules with no content) are checked on each
packet's payload.  Those with a content go through the prefilter too: its
packet callback scans every payload in C and raises a note only for a
packet that holds one of their fast patterns.  Those without one (flags,
flowbits, dsize alone) run per packet, but only in flows where one of their
headers holds (decided once per flow, at CONN_START).

Headers (addresses, ports, direction) are decided once per flow direction,
not per rule: each distinct header is a bit (``headers.HeaderIndex``), and a
rule's header check is a bit test.  The prefilter does the same in C when a
stream opens, and scans it with a database of only the patterns that have a
rule whose header holds there (made once per such group; a stream with none
is not scanned at all), as Suricata's signature groups do.

HTTP rules (sticky buffers, ``http_*`` modifiers, pcre's HTTP flags) run on
mos.app.http's transactions, once per transaction, when the last buffer
they inspect is there: at HTTP_REQUEST_LINE (method, URI, protocol), at
HTTP_REQUEST (headers), at the request's HTTP_DONE (its body), at
HTTP_RESPONSE, at the response's HTTP_DONE (its body); what a transaction
never reached is inspected with what it has when its flow ends, as
Suricata does.  Stream options in an HTTP rule inspect the message as sent
(line, headers, body so far).  Each buffer a fast pattern lives in is scanned once
per transaction by a Hyperscan block-mode database; only the rules behind
the patterns found are evaluated (``buffers.TxBuffers``, ``detect``).

>>> from middleboxes.ids.rules import load_rules_text
>>> rs = load_rules_text('alert tcp any any -> any 80 (msg:"x"; content:"evil"; sid:1;)')
>>> ids = Ids(rs)
>>> ids.plan()["prefilter_patterns"]
1
"""

from __future__ import annotations

from collections import defaultdict
from typing import Optional, TextIO

import mos
from mos import Event, Side, TcpState

from . import detect
from .buffers import BODY_LIMIT, TxBuffers
from .eve import Eve, alert_record, eve_ip, eve_time, fast_line, http_record
from .headers import HeaderIndex, header_key
from .hostos import HostPolicies
from .rules import LINE_BUFFERS, Content, Rule, RuleSet
from .thresholds import Thresholds
from .tlsrules import is_tls_flow

#: when an HTTP rule is evaluated: the request line, the request headers, the
#: request body, the response headers, the response body
P_LINE, P_REQ, P_REQ_BODY, P_RES, P_RES_BODY = range(5)
_POINTS = 5
_ALL_POINTS = frozenset(range(_POINTS))

#: bytes behind each stream's in-order frontier kept for rule evaluation
#: besides the chunk a note came on (which is kept for its handlers anyway):
#: 0 copies no byte of a stream in which nothing is found; more lets rules
#: reach back past the chunk (chains, absolute offsets) at the cost of a copy
#: of every byte (--set mos.lookback=N)
DEFAULT_LOOKBACK = 0


def fast_pattern(rule: Rule) -> Optional[Content]:
    """The content a rule is prefiltered on: the one marked fast_pattern,
    else the longest positive one (Suricata's default choice, simplified)."""
    pos = [c for c in rule.contents() if not c.negated]
    if not pos:
        return None
    marked = [c for c in pos if c.fast_pattern]
    c = marked[0] if marked else max(pos, key=lambda c: len(c.pattern))
    return c


def buffer_fast_pattern(r: Rule):
    """(buffer, content) of an application-layer rule's fast pattern: the
    content marked fast_pattern, else the longest positive one; or None."""
    best = None
    for b in r.buffers:
        for m in b.matches:
            if isinstance(m, Content) and not m.negated and m.pattern:
                if m.fast_pattern:
                    return b, m
                if best is None or len(m.pattern) > len(best[1].pattern):
                    best = (b, m)
    return best


def _fp_bytes(c: Content) -> bytes:
    if c.fast_pattern_chop:
        off, n = c.fast_pattern_chop
        return c.pattern[off:off + n]
    return c.pattern


def _prefilter_decides(r: Rule, c: Content) -> bool:
    """True when the fast pattern's match is the whole payload match: one
    plain content (no position, no negation, no chop) and nothing else."""
    return (len(r.matches) == 1 and r.matches[0] is c and not c.negated
            and c.offset is None and c.depth is None and c.distance is None
            and c.within is None and not c.startswith and not c.endswith
            and not c.fast_pattern_chop)


_ESTABLISHED = frozenset({TcpState.ESTABLISHED, TcpState.FIN_WAIT_1, TcpState.FIN_WAIT_2,
                          TcpState.CLOSE_WAIT, TcpState.CLOSING, TcpState.LAST_ACK,
                          TcpState.TIME_WAIT})


def _logged_packet(p) -> bytes:
    """The packet an alert carries: the frame, or for a datagram reassembled
    from IP fragments its link header and the whole datagram (as Suricata
    logs it)."""
    if not p.reassembled:
        return p.frame
    return p.frame[:p.l2len] + p.datagram


class _Plan:
    """What a rule needs checked besides its payload, decided once."""
    __slots__ = ("header", "flow", "bits_check", "bits_apply", "exact", "silent", "size", "point",
                 "app_tls", "hid")

    def __init__(self, r: Rule):
        def anyg(g):
            return g.any_ and not g.exclude
        self.header = not all(anyg(g) for g in (r.src, r.sport, r.dst, r.dport))
        fo = r.flow
        self.flow = fo.to_server or fo.to_client or fo.established or fo.not_established
        self.bits_check = any(fb.cmd in ("isset", "isnotset") for fb in r.flowbits)
        self.bits_apply = any(fb.cmd in ("set", "unset", "toggle") for fb in r.flowbits)
        self.exact = False   # the prefilter's match decides the rule alone (set by Ids._split)
        self.point = 0       # HTTP rules: when they are evaluated (Ids._http_point)
        self.silent = r.noalert or any(fb.cmd == "noalert" for fb in r.flowbits)
        self.size = r.stream_size is not None
        # `alert tls` with raw content only: the stream of flows that speak TLS
        self.app_tls = r.proto in ("tls", "ssl") and not r.is_tls
        self.hid = 0         # its header's bit in Ids._hx (set by Ids._index_headers)


class _PatternSet:
    """Fast patterns of a prefilter (the stream's, or one HTTP buffer's):
    each distinct (bytes, nocase) once, with the rules it stands for."""
    __slots__ = ("patterns", "nocase", "rules", "_index", "_at")

    def __init__(self):
        self.patterns: list = []
        self.nocase: list = []
        self.rules: list = []            # pattern index -> [rules]
        self._index: dict = {}
        self._at = None

    def rules_at(self, point: int, plans: dict) -> list:
        """Its HTTP rules evaluated at `point` (P_*), every pattern's."""
        at = self._at
        if at is None:
            at = {}
            for lst in self.rules:
                for r in lst:
                    at.setdefault(plans[id(r)].point, []).append(r)
            self._at = at
        return at.get(point, [])

    def add(self, c: Content, r: Rule) -> None:
        key = (_fp_bytes(c).lower() if c.nocase else _fp_bytes(c), c.nocase)
        k = self._index.get(key)
        if k is None:
            k = self._index[key] = len(self.patterns)
            self.patterns.append(key[0])
            self.nocase.append(c.nocase)
            self.rules.append([])
        self.rules[k].append(r)


class _FlowState:
    __slots__ = ("bits", "inspected", "chunk_start", "thr", "passed", "alerted", "pending",
                 "http_done", "pkt_rules", "hpass", "last_pkt", "tls_done", "tls_logged")

    def __init__(self):
        self.bits: set = set()
        # per receiving side: the stream offset inspected up to, and where the
        # chunk being inspected began (several notes may come for one chunk)
        self.inspected = [0, 0]
        self.chunk_start = [0, 0]
        self.thr: dict = {}              # threshold counts tracked by_flow
        self.passed = False              # a pass rule matched: the flow is not inspected further
        self.alerted = False
        # IDS mode: per receiving side, stream matches waiting for the
        # receiver's ACK: [(stream offset past the match, rule, payload)]
        self.pending = None
        self.http_done = None            # HTTP: tx index -> evaluation points done
        # packet rules whose addresses and ports hold for this flow, per
        # direction (to the server, to the client): found once per flow
        self.pkt_rules = [None, None]
        self.hpass = None                # (src, sport, dst, dport) -> headers that hold (Ids._hx)
        self.last_pkt = None             # number of the last packet _on_packet checked
        self.tls_done = None             # TLS: evaluation points done
        self.tls_logged = False          # TLS: the EVE tls record is written

    def chunk(self, s: int, head: int) -> int:
        """Start of the chunk of new bytes that ends at head."""
        if head != self.inspected[s]:
            self.chunk_start[s] = self.inspected[s]
            self.inspected[s] = head
        return self.chunk_start[s]


class Ids:
    """Signature detection on a mos engine.

    ``rules``: a RuleSet (``rules.load_rules``); ``eve``: an ``Eve`` writer
    (or None); ``fast``: a text stream for fast.log lines (or None);
    ``classes``: classification.config as ``load_classification`` returns;
    ``payload``: put the matched bytes in EVE alerts; ``stream_inline``:
    report a stream match at once (True) or once acknowledged (False, IDS
    mode); ``host_os``: a HostPolicies table of overlap policies;
    ``http_log``: EVE http records for every HTTP transaction (parses HTTP
    on every flow)."""

    def __init__(self, rules: RuleSet, *, eve: Optional[Eve] = None,
                 fast: Optional[TextIO] = None, classes: Optional[dict] = None,
                 payload: bool = True, lookback: int = DEFAULT_LOOKBACK, depth: int = 0,
                 inline: bool = False, flows: bool = True, stream_inline: bool = True,
                 host_os: Optional[HostPolicies] = None, http_log: bool = False,
                 tls_log: bool = False, community_id: Optional[int] = None):
        self.ruleset = rules
        self.eve = eve
        self.fast = fast
        self.classes = classes
        self.payload = payload
        self.lookback = lookback
        self.depth = depth               # stream.reassembly.depth: bytes inspected per direction (0: all)
        self.inline = inline             # drop and reject act (else they only alert)
        self.flows = flows               # an EVE flow record per flow at its end
        self.stream_inline = stream_inline  # report stream matches at once (else at ACK)
        self.host_os = host_os           # receiving host -> overlap policy
        self.deferred = 0                # stream matches that waited for an ACK
        self.http_log = http_log         # EVE http records (Suricata's eve-log type http)
        self.tls_log = tls_log           # EVE tls records
        self.community_id_seed = community_id   # Community ID in EVE records (its seed), or None
        self.tls_rules: list = []
        self.tlsd = None                 # TlsDetect: TLS rules and records
        self.alerts_by_sid: dict = defaultdict(int)
        self.thresholds = Thresholds()
        self.suppressed = 0              # matches a threshold or detection_filter kept silent
        self.alerts = 0
        self.candidates = 0          # rule evaluations the prefilter asked for
        self.stream_rules: list = []      # prefiltered
        self.stream_always: list = []     # stream rules with no positive content
        self.packet_rules: list = []
        self.event_rules: dict = {}       # ERROR reason name -> rules with that stream-event
        self.http_rules: list = []
        # HTTP: per evaluation point (P_*): buffer keys to scan, and rules with
        # no fast pattern
        self._http_keys: list = [set() for _ in range(_POINTS)]
        self._http_always: list = [[] for _ in range(_POINTS)]
        self._http_fp: dict = {}          # (buffer, transforms) -> _PatternSet
        self._http_sel: dict = {}         # (point, header bits) -> _http_select's answer
        self._http_scanners: dict = {}    # (buffer, transforms) -> BlockScanner
        self.http = None                  # the engine's mos.app.http parser
        self._stream_fp = _PatternSet()
        self._by_pattern = self._stream_fp.rules   # pattern index -> [rules]
        self._patterns = self._stream_fp.patterns
        self._nocase = self._stream_fp.nocase
        self.prefilter = None
        self.consumer_id = None
        self._plans: dict = {}           # id(rule) -> _Plan
        self._split()
        self._index_headers()
        if self.tls_rules or tls_log or any(p.app_tls for p in self._plans.values()):
            from .tlsrules import TlsDetect
            self.tlsd = TlsDetect(self, self.tls_rules, tls_log, _PatternSet, buffer_fast_pattern)

    # ---------------------------------------------------------------- setup

    def _split(self) -> None:
        for r in self.ruleset.rules:
            self._plans[id(r)] = _Plan(r)
            if r.is_tls:
                self.tls_rules.append(r)
                continue
            if r.is_http:
                self._http_split(r)
                continue
            if r.stream_events:
                # raised by the engine's ERROR events (stream-event:)
                for reason in r.stream_events:
                    self.event_rules.setdefault(reason, []).append(r)
                continue
            if not r.is_stream or not r.matches:
                # per packet: packet rules, and rules with no payload option
                # (flags, flow, flowbits only), as Suricata runs them
                self.packet_rules.append(r)
                continue
            c = fast_pattern(r)
            if c is None:
                self.stream_always.append(r)
                continue
            self._stream_fp.add(c, r)
            self.stream_rules.append(r)
            self._plans[id(r)].exact = _prefilter_decides(r, c)

        def order(r):  # pass rules first, then flowbit setters (Suricata's order), then sid
            return (0 if r.action == "pass" else 1,
                    0 if self._plans[id(r)].bits_apply else 1, r.sid)
        for lst in self._by_pattern:
            lst.sort(key=order)
        self.packet_rules.sort(key=order)
        self.stream_always.sort(key=order)
        for lst in self._http_always:
            lst.sort(key=order)
        self._order = order

    def _index_headers(self) -> None:
        """Rule headers as bits (headers.HeaderIndex): a flow direction finds
        the headers that hold for it once, and a rule's header check is a bit
        test.  Packet rules split: those with a content are found by the
        prefilter in each packet's payload (compiled), the rest run per
        packet only in flows where some of their headers hold."""
        self._hx = HeaderIndex(self.ruleset.rules)
        for r in self.ruleset.rules:
            self._plans[id(r)].hid = self._hx.id_of(r)
        self._pkt_fp = _PatternSet()     # packet rules' fast patterns
        self._pkt_plain: list = []       # packet rules with no positive content
        self._pkt_plain_by_hid: dict = {}
        for r in self.packet_rules:
            c = fast_pattern(r) if r.matches else None
            if c is not None:
                self._pkt_fp.add(c, r)
            else:
                self._pkt_plain.append(r)
                self._pkt_plain_by_hid.setdefault(self._plans[id(r)].hid, []).append(r)
        for lst in self._pkt_fp.rules:
            lst.sort(key=self._order)
        self._pkt_plain_mask = sum(1 << h for h in self._pkt_plain_by_hid)
        self._pkt_plain_cache: dict = {}

    def _gates(self) -> dict:
        """What the prefilter needs to check headers in C when a stream
        opens: the headers (and direction) of the stream and packet rules
        behind each pattern (headers.HeaderIndex.tables)."""
        def direction(r):
            return (1 if r.flow.to_server else 0) | (2 if r.flow.to_client else 0)
        rules = [r for lst in self._stream_fp.rules + self._pkt_fp.rules for r in lst]
        cx = HeaderIndex(rules, key=lambda r: header_key(r) + (direction(r),))
        g = cx.tables()
        ds = sum(1 << h for h, k in enumerate(cx.headers) if not k[5] & 2)
        dc = sum(1 << h for h, k in enumerate(cx.headers) if not k[5] & 1)
        g["dirok"] = (ds, dc)
        g["patterns"] = [sorted({cx.id_of(r) for r in lst})
                         for lst in self._stream_fp.rules + self._pkt_fp.rules]
        return g

    def _hbits(self, st: _FlowState, ends) -> int:
        """The headers that hold for bytes sent as `ends` says (src, sport,
        dst, dport), found once per flow direction."""
        hp = st.hpass
        if hp is None:
            hp = st.hpass = {}
        b = hp.get(ends)
        if b is None:
            b = hp[ends] = self._hx.passing(*ends)
        return b

    def _plain_packet_rules(self, st: _FlowState, ends) -> list:
        """Packet rules with no content whose header holds for `ends`, in order."""
        key = self._hbits(st, ends) & self._pkt_plain_mask
        got = self._pkt_plain_cache.get(key)
        if got is None:
            rules, k = [], key
            while k:
                low = k & -k
                rules += self._pkt_plain_by_hid[low.bit_length() - 1]
                k ^= low
            got = sorted(rules, key=self._order)
            if len(self._pkt_plain_cache) < 4096:
                self._pkt_plain_cache[key] = got
        return got

    def _on_flow_packets(self, flow, side, event) -> None:
        """A flow starts: the packet rules with no content that may hold for
        it; PKT_IN is handled for it only if there are some."""
        st = self._state(flow)
        c, s = (flow.client_ip, flow.client_port), (flow.server_ip, flow.server_port)
        st.pkt_rules = [self._plain_packet_rules(st, c + s), self._plain_packet_rules(st, s + c)]
        if st.pkt_rules[0] or st.pkt_rules[1]:
            flow.on(Event.PKT_IN, self._on_packet)
            self._on_packet(flow, side, event)   # this packet's PKT_IN went by already

    def _on_packet_note(self, flow, side, k: int) -> None:
        """Packet pattern k is in the payload of the packet `side` received:
        the packet rules behind it."""
        st = self._state(flow)
        p = flow.packet
        if st.passed or p is None:
            return
        to_server = side is Side.SERVER
        self._check_packet(flow, st, self._pkt_fp.rules[k], p, to_server,
                           self._endpoints(flow, side))

    def _check_packet(self, flow, st, rules, p, to_server: bool, ends=None) -> None:
        """Packet rules on packet p (their headers checked here unless `ends`
        is None: the caller chose rules whose headers hold)."""
        payload = p.payload
        for r in rules:
            pl = self._plans[id(r)]
            if ends is not None and pl.header and not (self._hbits(st, ends) >> pl.hid) & 1:
                continue
            if not ((not pl.flow or self._flow_ok(r, flow, to_server))
                    and (not pl.bits_check or self._flowbits_ok(r, st))
                    and (not pl.size or self._stream_size_ok(r, flow))):
                continue
            if r.dsize is not None and not r.dsize.test(len(payload)):
                continue
            if r.flags is not None and not r.flags.test(p.flags):
                continue
            if r.matches:
                if not payload:
                    continue
                self.candidates += 1
                if not detect.inspect(r.matches, payload).matched:
                    continue
            self._flowbits_apply(r, st)
            if pl.silent:
                continue
            self._alert(r, flow, Side.SERVER if to_server else Side.CLIENT,
                        payload if self.payload else None, stream=False)

    @staticmethod
    def _http_point(r: Rule) -> int:
        names = {b.name for b in r.buffers}
        response = any(b.response for b in r.buffers)
        if "http.response_body" in names or (response and r.matches):
            return P_RES_BODY          # stream options see the whole message
        if response:
            return P_RES
        if "http.request_body" in names or r.matches:
            return P_REQ_BODY
        if names - set(LINE_BUFFERS):
            return P_REQ
        return P_LINE

    def _http_split(self, r: Rule) -> None:
        """An HTTP rule: its evaluation point and its fast pattern's buffer."""
        point = self._http_point(r)
        self._plans[id(r)].point = point
        self.http_rules.append(r)
        best = buffer_fast_pattern(r)
        if best is None:
            self._http_always[point].append(r)
            return
        b, c = best
        key = (b.name, tuple(b.transforms))
        self._http_fp.setdefault(key, _PatternSet()).add(c, r)
        self._http_keys[point].add(key)

    def plan(self) -> dict:
        return {"rules": len(self.ruleset.rules), "prefilter_patterns": len(self._patterns),
                "http_rules": len(self.http_rules), "tls_rules": len(self.tls_rules),
                "stream_event_rules": sum(len(v) for v in self.event_rules.values()),
                "stream_rules": len(self.stream_rules),
                "stream_rules_without_content": len(self.stream_always),
                "packet_rules": len(self.packet_rules)}

    def attach(self, engine) -> None:
        """Add the prefilter and the handlers to ``engine`` (one engine at a
        time: each attach builds a new prefilter)."""
        # rules with no content to prefilter read the stream themselves; so
        # does an overlap stream-event with no prefilter (bytes must be kept
        # to compare a retransmission with)
        consume = not self._patterns and "OVERLAP_DIFF" in self.event_rules
        mon = mos.Monitor(name="ids",
                          reads=Side.BOTH if self.stream_always or consume else False)
        self._hx.tables()                # built now rather than at the first flow
        if self._patterns or self._pkt_fp.patterns:
            from ._prefilter import Prefilter
            self.prefilter = Prefilter(self._patterns, self._nocase, self._pkt_fp.patterns,
                                       self._pkt_fp.nocase, gates=self._gates())
            self.consumer_id = engine.add_consumer(self.prefilter, Side.BOTH,
                                                   lookback=self.lookback)
            mon.on(Event.STREAM_NOTE, self._on_note)
        if self.stream_always:
            mon.on(Event.CONN_NEW_DATA, self._on_data, side=Side.BOTH)
        elif consume:
            mon.on(Event.CONN_NEW_DATA, lambda f, s, e: f.peek(s), side=Side.BOTH)
        if self._pkt_plain:
            mon.on(Event.CONN_START, self._on_flow_packets)
        if self.event_rules:
            mon.on(Event.ERROR, self._on_error)
        if (self.flows and self.eve is not None) or not self.stream_inline or self.http_rules \
                or self.tlsd is not None:
            mon.on(Event.CONN_END, self._on_end, side=Side.CLIENT)
        if self.host_os:
            mon.on(Event.CONN_START, self._on_start, side=Side.CLIENT)
        if self.http_rules:
            self._attach_http(engine, mon)
        if self.tlsd is not None:
            self.tlsd.attach(engine, mon)
        engine.attach(mon)
        if self.http_log and self.eve is not None:
            from middleboxes.httplog.httplog import HttpLog
            HttpLog(None, "eve", emit=self.eve.write).attach(engine)
        self.monitor = mon

    # ---------------------------------------------------------------- matching

    @staticmethod
    def _state(flow) -> _FlowState:
        st = flow.uctx
        if st is None:
            st = flow.uctx = _FlowState()
        return st

    def _header_ok(self, r: Rule, src, sport, dst, dport) -> bool:
        def one(a, ap, b, bp):
            return (r.src.contains(a) and r.sport.contains(ap) and r.dst.contains(b)
                    and r.dport.contains(bp))
        if one(src, sport, dst, dport):
            return True
        return r.bidirectional and one(dst, dport, src, sport)

    @staticmethod
    def _flow_ok(r: Rule, flow, to_server: bool) -> bool:
        fo = r.flow
        if fo.to_server and not to_server:
            return False
        if fo.to_client and to_server:
            return False
        if fo.established or fo.not_established:
            est = flow.midstream or (flow.server.state in _ESTABLISHED
                                     and flow.client.state in _ESTABLISHED)
            if fo.established and not est:
                return False
            if fo.not_established and est:
                return False
        return True

    @staticmethod
    def _stream_size_ok(r: Rule, flow) -> bool:
        """stream_size: bytes each side has sent so far (its stream's length)."""
        which, cmp = r.stream_size
        c, sv = flow.client.stream_bytes, flow.server.stream_bytes
        if which == "client":
            return cmp.test(c)
        if which == "server":
            return cmp.test(sv)
        if which == "both":
            return cmp.test(c) and cmp.test(sv)
        return cmp.test(c) or cmp.test(sv)  # either

    @staticmethod
    def _flowbits_ok(r: Rule, st: _FlowState) -> bool:
        for fb in r.flowbits:
            if fb.cmd in ("isset", "isnotset"):
                want = fb.cmd == "isset"
                hit = [(n in st.bits) is want for n in fb.names]
                if not (any(hit) if fb.any_of else all(hit)):
                    return False
        return True

    @staticmethod
    def _flowbits_apply(r: Rule, st: _FlowState) -> None:
        for fb in r.flowbits:
            if fb.cmd == "set":
                st.bits.update(fb.names)
            elif fb.cmd == "unset":
                st.bits.difference_update(fb.names)
            elif fb.cmd == "toggle":
                st.bits.symmetric_difference_update(fb.names)

    def _gate(self, r: Rule, flow, st: _FlowState, ends, to_server: bool) -> bool:
        """Everything but the payload: addresses and ports, flow, flowbits,
        stream_size (each checked only where the rule has it)."""
        pl = self._plans[id(r)]
        return ((not pl.header or (self._hbits(st, ends) >> pl.hid) & 1)
                and (not pl.flow or self._flow_ok(r, flow, to_server))
                and (not pl.bits_check or self._flowbits_ok(r, st))
                and (not pl.size or self._stream_size_ok(r, flow))
                and (not pl.app_tls or is_tls_flow(flow)))

    def _endpoints(self, flow, side):
        """(src, sport, dst, dport) of bytes received by `side`."""
        if side is Side.SERVER:
            return flow.client_ip, flow.client_port, flow.server_ip, flow.server_port
        return flow.server_ip, flow.server_port, flow.client_ip, flow.client_port

    def _on_note(self, flow, side, event) -> None:
        info = flow.event_info
        if info.consumer != self.consumer_id:
            return       # another consumer's note (the HTTP parser's, an app's)
        if info.code >= len(self._patterns):
            self._on_packet_note(flow, side, info.code - len(self._patterns))
            return
        rules = self._by_pattern[info.code]
        st = self._state(flow)
        if st.passed:
            return
        s = int(side)
        head = flow.consumed_to(side)
        if self.depth:
            head = min(head, self.depth)
        start = st.chunk(s, head)
        if start >= head:
            return  # beyond stream.reassembly.depth
        self._inspect(flow, side, st, rules, start, head, note_end=info.a)

    def _on_data(self, flow, side, event) -> None:
        st = self._state(flow)
        if st.passed:
            flow.peek(side)
            return
        s = int(side)
        head = flow.buffered(side)[1]
        if self.depth:
            head = min(head, self.depth)
        start = st.chunk(s, head)
        if start < head:
            self._inspect(flow, side, st, self.stream_always, start, head)
        flow.peek(side)  # this monitor has read it: the buffer may let it go

    def _inspect(self, flow, side, st, rules, start, head, note_end=None) -> None:
        """Check `rules` on the chunk [start, head) of `side`'s stream.  Each
        rule is checked at most once per chunk (it hangs under one pattern),
        so a match is reported once."""
        to_server = side is Side.SERVER
        ends = self._endpoints(flow, side)
        lo = -1
        buf = None
        for r in rules:
            if not self._gate(r, flow, st, ends, to_server):
                continue
            pl = self._plans[id(r)]
            self.candidates += 1
            if pl.exact and note_end is not None:
                end = note_end  # the prefilter's match is the whole rule
            else:
                if buf is None:
                    # what the engine still holds: the lookback, at least this
                    # chunk; ppeek stops where the bytes stop (a gap)
                    lo = max(flow.buffered(side)[0], min(start, head - self.lookback))
                    buf = flow.ppeek(side, lo, head - lo)
                end = self._new_match(r, buf, lo, start)
                if end is None:
                    continue
            if pl.bits_apply:
                self._flowbits_apply(r, st)
            if pl.silent:
                continue
            chunk = None
            if self.payload:
                chunk = (buf[max(0, start - lo):] if buf is not None
                         else flow.ppeek(side, start, head - start))
            if self.stream_inline or r.action == "pass" or end <= flow.acked(side):
                self._alert(r, flow, side, chunk, stream=True)
            else:
                self._defer(flow, st, side, end, r, chunk)

    @staticmethod
    def _new_match(r: Rule, buf: bytes, lo: int, start: int):
        """Stream offset past a match of r that ends in the bytes not
        inspected before (above `start`), or None.  First on all the bytes
        kept (absolute offsets count from there, chains may reach back),
        then, if that match is an old one, on the new bytes and the few before
        them a pattern may straddle (a later occurrence)."""
        res = detect.inspect(r.matches, buf)
        if not res.matched:
            return None
        if lo + res.end > start:
            return lo + res.end
        longest = max((len(c.pattern) for c in r.contents()), default=1)
        k = max(0, start - lo - (longest - 1))
        if k == 0:
            return None
        res = detect.inspect(r.matches, buf[k:])
        if res.matched and lo + k + res.end > start:
            return lo + k + res.end
        return None

    # ---------------------------------------------------------------- HTTP

    def _attach_http(self, engine, mon) -> None:
        from mos.app import http
        from ._prefilter import BlockScanner
        points = {self._plans[id(r)].point for r in self.http_rules}
        bodies = bool(points & {P_REQ_BODY, P_RES_BODY}) or any(r.matches
                                                               for r in self.http_rules)
        # bodies: the parser keeps each transaction's first BODY_LIMIT bytes
        # (Suricata's request- and response-body-limit), in C, for
        # http.request_body and file_data
        self.http = http.for_engine(engine, keep_bodies=BODY_LIMIT if bodies else 0)
        self._http_scanners = {k: BlockScanner(ps.patterns, ps.nocase)
                               for k, ps in self._http_fp.items()}
        mon.on(http.HTTP_REQUEST_LINE, lambda f, s, e: self._on_http(f, P_LINE))
        mon.on(http.HTTP_REQUEST, lambda f, s, e: self._on_http(f, P_REQ))
        mon.on(http.HTTP_RESPONSE, lambda f, s, e: self._on_http(f, P_RES))
        if bodies:
            mon.on(http.HTTP_DONE, lambda f, s, e: self._on_http(
                f, P_REQ_BODY if s is Side.SERVER else P_RES_BODY))

    def _on_http(self, flow, point: int, tx=None) -> None:
        st = self._state(flow)
        if st.passed:
            return
        if tx is None:
            h = flow.http
            tx = h.tx if h is not None else None
            if tx is None:
                return
        if st.http_done is None:
            st.http_done = {}
        done = st.http_done.setdefault(tx.index, set())
        if point in done:
            return
        if point == P_RES_BODY:
            st.http_done[tx.index] = _ALL_POINTS   # over: one shared marker, no set kept
        else:
            done.add(point)
        keys, always = self._http_select(flow, st, point)
        if not keys and not always:
            return
        req = tx.request
        res = tx.response if point >= P_RES else None
        bufs = TxBuffers(req, res, lambda: tx.body_kept(True), lambda: tx.body_kept(False))
        cands = {id(r): r for r in always}     # rules are not hashable: by identity
        for key in keys:
            data = bufs.get(*key)
            if data is None:
                continue
            rules = self._http_fp[key].rules
            for k in self._http_scanners[key].scan(data):
                for r in rules[k]:
                    if self._plans[id(r)].point == point:
                        cands[id(r)] = r
        if not cands:
            return
        to_server = point < P_RES
        side = Side.SERVER if to_server else Side.CLIENT
        ends = self._endpoints(flow, side)
        for r in sorted(cands.values(), key=self._order):
            if not self._gate(r, flow, st, ends, to_server):
                continue
            self.candidates += 1
            if not all(self._buffer_ok(b, bufs) for b in r.buffers):
                continue
            if r.matches:
                raw = bufs.get("raw:req" if to_server else "raw:res")
                if raw is None or not detect.inspect(r.matches, raw).matched:
                    continue
            pl = self._plans[id(r)]
            if pl.bits_apply:
                self._flowbits_apply(r, st)
            if pl.silent:
                continue
            p = flow.packet
            self._alert(r, flow, side, p.payload if (self.payload and p is not None) else None,
                        stream=False, app={"app_proto": "http", "tx_id": tx.index,
                                           "http": http_record(req, res)})
            if st.passed:
                return

    def _http_select(self, flow, st, point: int) -> tuple:
        """The buffers worth scanning at `point` of a transaction of this
        flow, and the rules with no fast pattern to check there: only those
        with a rule whose header and direction hold for the flow (found once
        per header set and point, not per transaction)."""
        side = Side.SERVER if point < P_RES else Side.CLIENT
        hb = self._hbits(st, self._endpoints(flow, side))
        sel = self._http_sel.get((point, hb))
        if sel is None:
            to_server = point < P_RES
            ok = self._http_dir_ok

            def holds(r):
                pl = self._plans[id(r)]
                return ((not pl.header or (hb >> pl.hid) & 1)
                        and ok(r, to_server))
            keys = [k for k in self._http_keys[point]
                    if any(holds(r) for r in self._http_fp[k].rules_at(point, self._plans))]
            always = [r for r in self._http_always[point] if holds(r)]
            sel = (keys, always)
            if len(self._http_sel) < 4096:
                self._http_sel[(point, hb)] = sel
        return sel

    @staticmethod
    def _http_dir_ok(r: Rule, to_server: bool) -> bool:
        fo = r.flow
        return not ((fo.to_server and not to_server) or (fo.to_client and to_server))

    def _http_flush(self, flow, st) -> None:
        """The flow ends: what its transactions never reached (headers that
        never ended, a response that never came) is inspected with what
        they have."""
        h = flow.http
        if h is None:
            return
        for tx in h.transactions:
            req, res = tx.request, tx.response
            reached = [req is not None, req is not None, req is not None and req.complete,
                       res is not None, res is not None]
            for point in range(_POINTS):
                if reached[point]:
                    self._on_http(flow, point, tx)

    @staticmethod
    def _buffer_ok(b, bufs) -> bool:
        data = bufs.get(b.name, tuple(b.transforms))
        if data is None:
            return False
        if b.size is not None and not b.size.test(len(data)):
            return False
        return not b.matches or detect.inspect(b.matches, data).matched

    # ---------------------------------------------------------------- IDS mode

    def _defer(self, flow, st, side, end, r, chunk) -> None:
        """Keep a stream match until `side` acknowledges its last byte."""
        self.deferred += 1
        if st.pending is None:
            st.pending = [[], []]
        if not st.pending[0] and not st.pending[1]:
            flow.on(Event.PKT_IN, self._on_sender_packet)
        st.pending[int(side)].append((end, r, chunk))

    def _on_sender_packet(self, flow, side, event) -> None:
        """A packet of a flow with waiting matches: its sender's stream is
        inspected up to what the peer acknowledged."""
        p = flow.packet
        st = flow.uctx
        if p is None or st is None or st.pending is None:
            return
        s = Side.SERVER if (p.src == flow.client_ip and p.sport == flow.client_port) \
            else Side.CLIENT
        waiting = st.pending[int(s)]
        if not waiting:
            return
        acked = flow.acked(s)
        keep = []
        for end, r, chunk in waiting:
            if end <= acked:
                self._alert(r, flow, s, chunk, stream=True)
            else:
                keep.append((end, r, chunk))
        st.pending[int(s)] = keep
        if not st.pending[0] and not st.pending[1]:
            flow.off(Event.PKT_IN, self._on_sender_packet)

    def _flush_pending(self, flow, st) -> None:
        """The flow ends: what still waits is reported as Suricata does at
        flow timeout, on a pseudo packet."""
        for s in (Side.SERVER, Side.CLIENT):
            for end, r, chunk in st.pending[int(s)]:
                self._alert(r, flow, s, chunk, stream=True, pseudo=True)
        st.pending = None

    def _on_start(self, flow, side, event) -> None:
        """Each stream settles overlaps as its receiving host's OS does."""
        for s, ip in ((Side.SERVER, flow.server_ip), (Side.CLIENT, flow.client_ip)):
            policy = self.host_os.policy_for(ip)
            if policy is not None:
                flow.set_overlap(s, policy)

    def _on_packet(self, flow, side, event) -> None:
        p = flow.packet
        if p is None:
            return
        st = self._state(flow)
        if st.passed or st.last_pkt == p.number:
            return
        st.last_pkt = p.number
        ends = (p.src, p.sport, p.dst, p.dport)
        to_server = p.sport == flow.client_port and p.src == flow.client_ip
        d = 0 if to_server else 1
        rules = st.pkt_rules[d]
        if rules is None:
            # a flow's addresses and ports do not change: the header part of
            # the gate once per direction (packet rules with a content come
            # from the prefilter: _on_packet_note)
            rules = st.pkt_rules[d] = self._plain_packet_rules(st, ends)
        self._check_packet(flow, st, rules, p, to_server)

    def _on_error(self, flow, side, event) -> None:
        """stream-event rules: an ERROR of their reason on the stream `side`
        receives (GAP, OVERLAP_DIFF, PAWS, OUT_OF_WINDOW, MEMCAP)."""
        rules = self.event_rules.get(flow.event_info.reason.name)
        if not rules:
            return
        st = self._state(flow)
        if st.passed:
            return
        ends = self._endpoints(flow, side)
        p = flow.packet
        payload = p.payload if p is not None else b""
        for r in rules:
            if not self._gate(r, flow, st, ends, side is Side.SERVER):
                continue
            if r.matches and not detect.inspect(r.matches, payload).matched:
                continue
            self._flowbits_apply(r, st)
            if self._plans[id(r)].silent:
                continue
            self._alert(r, flow, side, payload if self.payload else None, stream=False)

    # ---------------------------------------------------------------- output

    def _alert(self, r: Rule, flow, side, payload, stream: bool, pseudo: bool = False,
               app: Optional[dict] = None) -> None:
        if r.action == "pass":
            self._state(flow).passed = True
            return
        p = None if pseudo else flow.packet
        to_server = side is Side.SERVER
        if p is not None:
            src, dst = (p.src, p.sport), (p.dst, p.dport)
            ts, cnt = p.ts, p.number
        else:
            a, b = (flow.client_ip, flow.client_port), (flow.server_ip, flow.server_port)
            src, dst = (a, b) if to_server else (b, a)
            ts, cnt = flow.last_active, None
        for t in (r.detection_filter, r.threshold):
            if t is not None and not self.thresholds.allow(r.sid, t, src[0], dst[0], ts,
                                                           self._state(flow).thr):
                self.suppressed += 1
                return
        self.alerts += 1
        self.alerts_by_sid[r.sid] += 1
        self._state(flow).alerted = True
        action = "allowed"
        if self.inline and r.action != "alert":
            # drop: this packet and the rest of the flow; reject: a RST to
            # each end as well (Suricata's IPS actions)
            if r.action.startswith("reject"):
                flow.reset()
            else:
                flow.block()
            action = "blocked"
        if self.eve is not None:
            self.eve.write(alert_record(
                ts=ts, rule=r, classes=self.classes, src=src, dst=dst,
                direction="to_server" if to_server else "to_client", flow_id=flow.hash,
                pcap_cnt=cnt, action=action, payload=payload, stream=stream,
                packet=_logged_packet(p) if p is not None else None,
                linktype=p.linktype if p is not None else None,
                pkt_src="wire/pcap" if p is not None else "stream (flow timeout)", app=app,
                flow=self._flow_counts(flow)))
        if self.fast is not None:
            self.fast.write(fast_line(ts=ts, rule=r, classes=self.classes, src=src, dst=dst,
                                      action=action))

    @staticmethod
    def _flow_counts(flow) -> dict:
        """The ``flow`` object of an alert: frames and wire bytes each way so
        far, and the start (Suricata's)."""
        (cp, cb), (sp, sb) = flow.wire(Side.CLIENT), flow.wire(Side.SERVER)
        return {"pkts_toserver": cp, "pkts_toclient": sp, "bytes_toserver": cb,
                "bytes_toclient": sb, "start": eve_time(flow.start_time)}

    def _on_end(self, flow, side, event) -> None:
        """Matches still waiting for an ACK, then an EVE flow record, as
        Suricata writes one when a flow ends."""
        st = flow.uctx
        if st is not None and self.http_rules:
            self._http_flush(flow, st)
        if st is not None and st.pending is not None:
            self._flush_pending(flow, st)
        if self.tlsd is not None and self.tlsd.log:
            self.tlsd.write(flow, at_end=True)
        if not self.flows or self.eve is None:
            return
        reason = flow.event_info.reason.name
        est = flow.server.state not in (TcpState.LISTEN, TcpState.SYN_RCVD, TcpState.CLOSED) \
            or flow.midstream
        state = "closed" if reason in ("CLOSE", "RST") else ("established" if est else "new")
        start, end = flow.start_time, flow.last_active
        self.eve.write({
            "timestamp": eve_time(end), "flow_id": flow.hash, "event_type": "flow",
            "src_ip": eve_ip(flow.client_ip), "src_port": flow.client_port,
            "dest_ip": eve_ip(flow.server_ip), "dest_port": flow.server_port, "proto": "TCP",
            **self._flow_app(flow),
            "flow": {**self._flow_counts(flow), "end": eve_time(end),
                     "age": int(end - start), "state": state,
                     "reason": {"TIMEOUT": "timeout", "SHUTDOWN": "shutdown"}.get(reason,
                                                                                 "forced"),
                     "alerted": bool(st is not None and st.alerted)},
            "tcp": {"state": flow.server.state.name.lower()}})

    def _flow_app(self, flow) -> dict:
        """app_proto and community_id of a flow record, when known."""
        out = {}
        if self.tlsd is not None and is_tls_flow(flow):
            out["app_proto"] = "tls"
        elif self.http is not None:
            h = flow.http
            if h is not None and h.transactions:
                out["app_proto"] = "http"
        cid = self.community_id(flow)
        if cid is not None:
            out["community_id"] = cid
        return out

    def community_id(self, flow) -> Optional[str]:
        """The flow's Community ID (v1) if asked for (``community_id`` seed)."""
        if self.community_id_seed is None:
            return None
        from .communityid import community_id
        return community_id(flow.client_ip, flow.client_port, flow.server_ip,
                            flow.server_port, 6, self.community_id_seed)

    def stats(self) -> dict:
        out = {"alerts": self.alerts, "candidates": self.candidates,
               "suppressed": self.suppressed, "deferred": self.deferred,
               "alerts_by_sid": dict(sorted(self.alerts_by_sid.items())), **self.plan()}
        if self.prefilter is not None:
            out["prefilter"] = self.prefilter.stats()
        return out
