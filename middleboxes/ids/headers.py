"""Rule headers (addresses and ports) checked for many rules at once.

A rule set has thousands of rules but far fewer distinct headers (ET Open:
17,715 rules, about 1,500 headers over 1,200 address groups and 190 port
groups).  Each distinct header gets a bit; for each address (and port) the
headers whose source (destination) part holds it form one integer mask,
so what passes for a flow direction is four lookups and a few ANDs:

    passing = S(src) & SP(sport) & D(dst) & DP(dport)
              | bidirectional & S(dst) & SP(dport) & D(src) & DP(sport)

The masks are found by a sweep over each value space (IPv4, IPv6, ports)
once: between two consecutive span boundaries of any group, every group
either holds all values or none, and since every header has one source
group and one destination group the groups' masks are disjoint, so a group
that starts or stops holding toggles its bits (XOR).  A lookup is then one
bisect.  ``tables()`` gives the same masks as arrays for compiled code
(the stream prefilter checks headers in C when a stream opens).

>>> from middleboxes.ids.rules import load_rules_text
>>> rs = load_rules_text('''
... alert tcp 198.18.0.0/16 any -> !198.18.0.0/16 80 (msg:"a"; sid:1;)
... alert tcp any any <> 198.19.128.0/17 !22 (msg:"b"; sid:2;)''')
>>> hx = HeaderIndex(rs.rules)
>>> a, b = (hx.id_of(r) for r in rs.rules)
>>> m = hx.passing("198.18.1.1", 4000, "198.19.8.8", 80)
>>> bool(m >> a & 1), bool(m >> b & 1)
(True, False)
>>> m = hx.passing("198.19.200.1", 23, "198.18.3.4", 4000)  # b: the other way round
>>> bool(m >> a & 1), bool(m >> b & 1)
(False, True)
"""

from __future__ import annotations

import bisect
from collections import defaultdict

from .netsets import _ip_key

_V4_END = 1 << 32
_V6_END = 1 << 128
_PORT_END = 1 << 16


def header_key(r) -> tuple:
    return (r.src, r.sport, r.dst, r.dport, bool(r.bidirectional))


def _merge(ranges) -> list:
    out: list = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return out


def _sweep(groups: list, end: int) -> tuple:
    """groups: (always, inc spans, exc spans, no_include, src mask, dst mask);
    a group holds x when x is in no exc span and (always or no_include or x
    in an inc span).  Returns (starts, src masks, dst masks) of the
    elementary intervals [starts[i], starts[i+1])."""
    events: dict = defaultdict(list)
    for gi, (always, inc, exc, _noinc, _sm, _dm) in enumerate(groups):
        for lo, hi in inc:
            events[lo].append((gi, 0))
            if hi + 1 < end:
                events[hi + 1].append((gi, 0))
        for lo, hi in exc:
            events[lo].append((gi, 1))
            if hi + 1 < end:
                events[hi + 1].append((gi, 1))
    n = len(groups)
    in_inc = [False] * n
    in_exc = [False] * n
    holds = [g[0] or g[3] for g in groups]
    s = d = 0
    for gi, g in enumerate(groups):
        if holds[gi]:
            s ^= g[4]
            d ^= g[5]
    starts, smasks, dmasks = [0], [s], [d]
    for pos in sorted(events):
        touched = set()
        for gi, kind in events[pos]:
            if kind:
                in_exc[gi] = not in_exc[gi]
            else:
                in_inc[gi] = not in_inc[gi]
            touched.add(gi)
        for gi in touched:
            g = groups[gi]
            h = not in_exc[gi] and (g[0] or g[3] or in_inc[gi])
            if h != holds[gi]:
                holds[gi] = h
                s ^= g[4]
                d ^= g[5]
        if pos == starts[-1]:
            smasks[-1], dmasks[-1] = s, d
        elif s != smasks[-1] or d != dmasks[-1]:
            starts.append(pos)
            smasks.append(s)
            dmasks.append(d)
    return starts, smasks, dmasks


class HeaderIndex:
    """Distinct headers of ``rules`` (``key``: a rule -> its header key;
    by default addresses, ports and ``<>``), each a bit; ``passing(src,
    sport, dst, dport)`` is the mask of those that hold for bytes sent from
    src:sport to dst:dport."""

    def __init__(self, rules, key=header_key):
        self.key = key
        self.ids: dict = {}
        self.headers: list = []
        for r in rules:
            k = key(r)
            if k not in self.ids:
                self.ids[k] = len(self.headers)
                self.headers.append(k)
        self.bidir = 0
        addr: dict = {}      # group -> [src mask, dst mask]
        port: dict = {}
        for h, k in enumerate(self.headers):
            src, sport, dst, dport, bidir = k[:5]
            bit = 1 << h
            addr.setdefault(src, [0, 0])[0] |= bit
            addr.setdefault(dst, [0, 0])[1] |= bit
            port.setdefault(sport, [0, 0])[0] |= bit
            port.setdefault(dport, [0, 0])[1] |= bit
            if bidir:
                self.bidir |= bit
        self.all = (1 << len(self.headers)) - 1
        self._v4 = self._v6 = None
        self._addr_groups = addr
        self._port_groups = port
        self._addr_cache: dict = {}
        self._port_cache: dict = {}
        pg = []
        for g, (sm, dm) in port.items():
            always = g.any_ and not g.exclude
            inc = _merge(g.include)
            exc = _merge(g.exclude)
            pg.append((always, inc, exc, not g.include, sm, dm))
        self._ports = _sweep(pg, _PORT_END)

    def _addr_table(self, ver: int) -> tuple:
        t = self._v4 if ver == 4 else self._v6
        if t is None:
            gs = []
            for g, (sm, dm) in self._addr_groups.items():
                always = g.any_ and not g.exclude
                inc = [] if always else list(zip(*g._spans[0][ver]))
                exc = [] if always else list(zip(*g._spans[1][ver]))
                gs.append((always, inc, exc, g.any_ or not g.include, sm, dm))
            t = _sweep(gs, _V4_END if ver == 4 else _V6_END)
            if ver == 4:
                self._v4 = t
            else:
                self._v6 = t
        return t

    def id_of(self, r) -> int:
        return self.ids[self.key(r)]

    def addr_masks(self, ip) -> tuple:
        """(headers whose source holds ip, headers whose destination does)."""
        got = self._addr_cache.get(ip)
        if got is None:
            ver, a = _ip_key(ip)
            starts, sm, dm = self._addr_table(ver)
            i = bisect.bisect_right(starts, a) - 1
            got = (sm[i], dm[i])
            if len(self._addr_cache) >= 1 << 16:
                self._addr_cache.clear()
            self._addr_cache[ip] = got
        return got

    def port_masks(self, port: int) -> tuple:
        got = self._port_cache.get(port)
        if got is None:
            starts, sm, dm = self._ports
            i = bisect.bisect_right(starts, port) - 1
            got = self._port_cache[port] = (sm[i], dm[i])
        return got

    def passing(self, src, sport: int, dst, dport: int) -> int:
        s, d = self.addr_masks(src), self.addr_masks(dst)
        ps, pd = self.port_masks(sport), self.port_masks(dport)
        m = s[0] & ps[0] & d[1] & pd[1]
        if self.bidir:
            m |= self.bidir & d[0] & pd[0] & s[1] & ps[1]
        return m

    def tables(self) -> dict:
        """The masks as arrays for compiled code: per value space the
        interval starts and each interval's (source, destination) masks as
        little-endian words of ``words`` 64-bit words each."""
        words = max(1, (len(self.headers) + 63) // 64)
        nb = words * 8

        def pack(t):
            starts, sm, dm = t
            return (list(starts), b"".join(m.to_bytes(nb, "little") for m in sm),
                    b"".join(m.to_bytes(nb, "little") for m in dm))
        return {"words": words, "headers": len(self.headers),
                "v4": pack(self._addr_table(4)), "v6": pack(self._addr_table(6)),
                "ports": pack(self._ports), "bidir": self.bidir.to_bytes(nb, "little")}
