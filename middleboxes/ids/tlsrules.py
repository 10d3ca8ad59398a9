"""TLS for the IDS: the ``tls.*`` / ``ja3*`` buffers of one flow, rule
evaluation on mos.app.tls's handshake events, and EVE ``tls`` records.

A TLS rule runs once per flow at the first handshake message after which
every buffer it inspects exists: the ClientHello (``tls.sni``, ``ja3.*``,
``ja4.hash``; direction to_server), the ServerHello (``ja3s.*``,
``tls.version``; to_client) or the Certificate (``tls.cert_*``,
``tls.certs``, ``tls.subjectaltname``, ``tls.subject``, ...; to_client).
Fast patterns of these buffers go through Hyperscan block-mode databases,
one per buffer and transform chain, as HTTP's do.

>>> import mos
>>> from mos.testing import tls_capture
>>> from middleboxes.ids.rules import load_rules_text
>>> from middleboxes.ids.ids import Ids
>>> rs = load_rules_text('alert tls any any -> any any (msg:"sni"; tls.sni; '
...                      'content:"example.org"; endswith; sid:1;)')
>>> ids = Ids(rs)
>>> eng = mos.Engine()
>>> ids.attach(eng)
>>> _ = eng.run(tls_capture())
>>> ids.stats()["alerts_by_sid"]
{1: 2}
"""

from __future__ import annotations

from mos import Side

from . import detect
from .buffers import transform
from .eve import eve_ip, eve_time
from .rules import Rule

#: evaluation points: the handshake message after which a buffer exists
P_CH, P_SH, P_CERT = range(3)
_POINTS = 3
BUFFER_POINT = {"tls.sni": P_CH, "ja3.hash": P_CH, "ja3.string": P_CH, "ja4.hash": P_CH,
                "ja3s.hash": P_SH, "ja3s.string": P_SH, "tls.cert_subject": P_CERT,
                "tls.cert_issuer": P_CERT, "tls.cert_serial": P_CERT,
                "tls.cert_fingerprint": P_CERT, "tls.certs": P_CERT,
                "tls.subjectaltname": P_CERT}
CHECK_POINT = {"version": P_SH, "subject": P_CERT, "issuerdn": P_CERT, "fingerprint": P_CERT}
#: buffers with one entry per certificate or name
MULTI = frozenset({"tls.certs", "tls.subjectaltname"})


def rule_point(r: Rule) -> int:
    pts = [BUFFER_POINT[b.name] for b in r.buffers] + [CHECK_POINT[c.kind] for c in r.tls_checks]
    return max(pts) if pts else P_CH


class TlsBuffers:
    """The buffers of one flow's handshake (a ``mos.app.tls.TlsFlow``):
    ``get(name, transforms)`` gives bytes, a list of bytes for the
    multi-buffers, or None when the flow has no such buffer."""

    def __init__(self, tf):
        self.tf = tf
        self._cache: dict = {}

    def get(self, name: str, transforms: tuple = ()):
        key = (name, transforms)
        if key in self._cache:
            return self._cache[key]
        data = self._raw(name)
        if data is not None and transforms:
            if isinstance(data, list):
                out = []
                for d in data:
                    for t in transforms:
                        d = transform(d, t)
                    out.append(d)
                data = out
            else:
                for t in transforms:
                    data = transform(data, t)
        self._cache[key] = data
        return data

    def _raw(self, name: str):
        tf = self.tf
        if name in ("tls.sni", "ja3.hash", "ja3.string", "ja4.hash"):
            ch = tf.client_hello
            if ch is None:
                return None
            v = {"tls.sni": lambda: ch.sni, "ja3.hash": lambda: ch.ja3_hash,
                 "ja3.string": lambda: ch.ja3, "ja4.hash": lambda: ch.ja4}[name]()
            return v.encode("latin-1") if v is not None else None
        if name in ("ja3s.hash", "ja3s.string"):
            sh = tf.server_hello
            if sh is None:
                return None
            return (sh.ja3s_hash if name == "ja3s.hash" else sh.ja3s).encode()
        certs = tf.certificates
        if not certs:
            return None
        if name == "tls.certs":
            return [c.der for c in certs]
        if name == "tls.subjectaltname":
            return [n.encode("latin-1") for n in certs[0].sans] or None
        leaf = certs[0]
        v = {"tls.cert_subject": leaf.subject, "tls.cert_issuer": leaf.issuer,
             "tls.cert_serial": leaf.serial, "tls.cert_fingerprint": leaf.fingerprint}[name]
        return v.encode("utf-8") if v else None


def check_ok(c, tf) -> bool:
    """A TlsCheck on a flow's handshake (a missing field never matches)."""
    if c.kind == "version":
        v = tf.version
        if v is None:
            return False
        return (v in c.value) != c.negated
    certs = tf.certificates
    if not certs:
        return False
    leaf = certs[0]
    if c.kind == "fingerprint":
        return (leaf.fingerprint == c.value) != c.negated
    field = leaf.subject if c.kind == "subject" else leaf.issuer
    return (c.value in field) != c.negated


def buffer_ok(b, bufs: TlsBuffers) -> bool:
    data = bufs.get(b.name, tuple(b.transforms))
    if data is None:
        return False
    for d in (data if isinstance(data, list) else (data,)):
        if b.size is not None and not b.size.test(len(d)):
            continue
        if not b.matches or detect.inspect(b.matches, d).matched:
            return True
    return False


def tls_record(tf) -> dict:
    """The ``tls`` object of EVE tls records and of alerts, as Suricata's
    extended TLS logging writes it (fields the handshake did not show are
    left out)."""
    from mos.app.tls import version_name
    out: dict = {}
    certs = tf.certificates
    if certs:
        leaf = certs[0]
        out.update({"subject": leaf.subject, "issuerdn": leaf.issuer,
                    "serial": leaf.serial, "fingerprint": leaf.fingerprint})
    ch, sh = tf.client_hello, tf.server_hello
    if ch is not None and ch.sni is not None:
        out["sni"] = ch.sni
    out["version"] = version_name(tf.version)
    if certs:
        nb, na = certs[0].not_before, certs[0].not_after
        if nb is not None:
            out["notbefore"] = nb.strftime("%Y-%m-%dT%H:%M:%S")
        if na is not None:
            out["notafter"] = na.strftime("%Y-%m-%dT%H:%M:%S")
    if ch is not None:
        out["ja3"] = {"hash": ch.ja3_hash, "string": ch.ja3}
        out["ja4"] = ch.ja4
        if ch.alpn:
            out["client_alpns"] = ch.alpn
    if sh is not None:
        out["ja3s"] = {"hash": sh.ja3s_hash, "string": sh.ja3s}
        if sh.alpn:
            out["server_alpns"] = [sh.alpn]
    return out


class TlsDetect:
    """The TLS half of an Ids: its rules by evaluation point, their fast
    patterns, and the handlers; ``log``: an EVE tls record per TLS flow."""

    def __init__(self, ids, rules: list, log: bool, pattern_set, fast_pattern):
        """``pattern_set`` makes a fast-pattern set and ``fast_pattern`` picks
        a rule's (the Ids's own, so both prefilters choose alike)."""
        self.ids = ids
        self.rules = rules
        self.log = log
        self.always: list = [[] for _ in range(_POINTS)]
        self.keys: list = [set() for _ in range(_POINTS)]
        self.fp: dict = {}              # (buffer, transforms) -> _PatternSet
        self.scanners: dict = {}
        self.point: dict = {}           # id(rule) -> P_*
        self.records = 0
        self.tls = None
        for r in rules:
            pt = self.point[id(r)] = rule_point(r)
            best = fast_pattern(r)
            if best is None:
                self.always[pt].append(r)
                continue
            b, c = best
            key = (b.name, tuple(b.transforms))
            self.fp.setdefault(key, pattern_set()).add(c, r)
            self.keys[pt].add(key)
        for lst in self.always:
            lst.sort(key=ids._order)
        for ps in self.fp.values():
            for lst in ps.rules:
                lst.sort(key=ids._order)

    def attach(self, engine, mon) -> None:
        from mos.app import tls
        from ._prefilter import BlockScanner
        self.tls = tls.for_engine(engine)
        self.scanners = {k: BlockScanner(ps.patterns, ps.nocase) for k, ps in self.fp.items()}
        if self.rules:
            mon.on(tls.TLS_CLIENT_HELLO, lambda f, s, e: self._on(f, P_CH))
            mon.on(tls.TLS_SERVER_HELLO, lambda f, s, e: self._on(f, P_SH))
            mon.on(tls.TLS_CERTIFICATE, lambda f, s, e: self._on(f, P_CERT))
        if self.log:
            mon.on(tls.TLS_HANDSHAKE_DONE, self._on_done)

    # ---------------------------------------------------------------- rules

    def _on(self, flow, point: int) -> None:
        ids = self.ids
        st = ids._state(flow)
        if st.passed:
            return
        tf = flow.tls
        if tf is None:
            return
        if st.tls_done is None:
            st.tls_done = set()
        if point in st.tls_done:
            return
        st.tls_done.add(point)
        bufs = TlsBuffers(tf)
        cands = {id(r): r for r in self.always[point]}
        for key in self.keys[point]:
            data = bufs.get(*key)
            if data is None:
                continue
            rules = self.fp[key].rules
            scan = self.scanners[key].scan
            for d in (data if isinstance(data, list) else (data,)):
                for k in scan(d):
                    for r in rules[k]:
                        if self.point[id(r)] == point:
                            cands[id(r)] = r
        if not cands:
            return
        to_server = point == P_CH
        side = Side.SERVER if to_server else Side.CLIENT
        ends = ids._endpoints(flow, side)
        client_ends = ids._endpoints(flow, Side.SERVER)
        app = None
        for r in sorted(cands.values(), key=ids._order):
            if r.transactional:     # "=>": the header reads client -> server
                if not ids._gate(r, flow, st, client_ends, True):
                    continue
            elif not ids._gate(r, flow, st, ends, to_server):
                continue
            ids.candidates += 1
            if not all(buffer_ok(b, bufs) for b in r.buffers):
                continue
            if not all(check_ok(c, tf) for c in r.tls_checks):
                continue
            if r.matches:
                from mos.app import _tls as ctls
                cap = self.tls._state(flow)
                raw = ctls.message(cap, 0 if to_server else 2 if point == P_CERT else 1) \
                    if cap is not None else None
                if raw is None or not detect.inspect(r.matches, raw).matched:
                    continue
            pl = ids._plans[id(r)]
            if pl.bits_apply:
                ids._flowbits_apply(r, st)
            if pl.silent:
                continue
            if app is None:
                app = {"app_proto": "tls", "tls": tls_record(tf)}
            p = flow.packet
            ids._alert(r, flow, side, p.payload if (ids.payload and p is not None) else None,
                       stream=False, app=app)
            if st.passed:
                return

    # ---------------------------------------------------------------- EVE tls

    def _on_done(self, flow, side, event) -> None:
        self.write(flow)

    def write(self, flow, at_end: bool = False) -> None:
        """The flow's EVE tls record (once), when its handshake is done or,
        failing that, when it ends having shown a ClientHello."""
        st = self.ids._state(flow)
        if st.tls_logged or self.ids.eve is None:
            return
        tf = flow.tls
        if tf is None or not is_tls_flow(flow):
            return
        st.tls_logged = True
        p = None if at_end else flow.packet
        rec = {"timestamp": eve_time(p.ts if p is not None else flow.last_active),
               "flow_id": flow.hash}
        if p is not None:
            rec["pcap_cnt"] = p.number
        rec.update({"event_type": "tls", "src_ip": eve_ip(flow.client_ip),
                    "src_port": flow.client_port, "dest_ip": eve_ip(flow.server_ip),
                    "dest_port": flow.server_port, "proto": "TCP"})
        cid = self.ids.community_id(flow)
        if cid is not None:
            rec["community_id"] = cid
        rec["tls"] = tls_record(tf)
        self.records += 1
        self.ids.eve.write(rec)


def is_tls_flow(flow) -> bool:
    """The flow's client started a TLS handshake (for ``alert tls`` rules
    with raw content, and the flow record's app_proto)."""
    tf = getattr(flow, "tls", None)
    if tf is None:
        return False
    st = tf.state
    return bool(st) and st["client"][0]

