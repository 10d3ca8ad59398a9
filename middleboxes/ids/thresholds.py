"""Alert rate control per rule: ``threshold`` (types limit, threshold, both,
backoff) and ``detection_filter``, tracked by source, destination, both, the
rule or the flow, over windows of packet time, as Suricata applies them.

- limit: alert on the first ``count`` matches of each window.
- threshold: alert on every ``count``-th match of a window.
- both: alert once per window, when the ``count``-th match comes.
- detection_filter: alert on every match once more than ``count`` matched
  in the window (the first ``count`` are silent).
- backoff (track by_flow): alert on the first ``count`` matches of a flow,
  then at count * multiplier, count * multiplier^2, ... matches.

>>> from middleboxes.ids.rules import Threshold
>>> t = Thresholds()
>>> lim = Threshold("limit", "by_src", 2, 60.0)
>>> [t.allow(1, lim, "198.18.0.1", "198.19.0.1", ts) for ts in (0, 1, 2, 61)]
[True, True, False, True]
"""

from __future__ import annotations


def _decide(t, st: list) -> bool:
    """One more match on state [window start, matches, alerted, next backoff]."""
    st[1] += 1
    n = st[1]
    if t.kind == "limit":
        return n <= t.count
    if t.kind == "threshold":
        return n % t.count == 0
    if t.kind == "both":
        if n >= t.count and not st[2]:
            st[2] = True
            return True
        return False
    if t.kind == "backoff":
        if n <= t.count:
            return True
        if n >= st[3] * t.multiplier:
            st[3] *= t.multiplier
            return True
        return False
    return n > t.count  # detection_filter


class Thresholds:
    """Counts per (sid, tracked address); windows start at a key's first
    match.  Counts tracked by_flow live in a dict the flow owns."""

    def __init__(self):
        self._state: dict = {}

    def allow(self, sid: int, t, src: str, dst: str, ts: float, flow: dict = None) -> bool:
        """True if this match alerts.  ``flow``: the flow's own dict of counts,
        for track by_flow (freed with the flow)."""
        if t.track == "by_flow":
            table, key = ({} if flow is None else flow), sid
        else:
            table = self._state
            key = (sid, t.kind, {"by_src": src, "by_dst": dst, "by_both": (src, dst),
                                 "by_rule": None}[t.track])
        st = table.get(key)
        if st is None or (t.kind != "backoff" and ts - st[0] >= t.seconds):
            st = table[key] = [ts, 0, False, t.count]
        return _decide(t, st)

    def __len__(self) -> int:
        return len(self._state)
