"""Alert rate control per rule: ``threshold`` (types limit, threshold, both)
and ``detection_filter``, tracked by source, destination, both or the rule,
over windows of packet time, as Suricata applies them.

- limit: alert on the first ``count`` matches of each window.
- threshold: alert on every ``count``-th match of a window.
- both: alert once per window, when the ``count``-th match comes.
- detection_filter: alert on every match once more than ``count`` matched
  in the window (the first ``count`` are silent).

>>> from middleboxes.ids.rules import Threshold
>>> t = Thresholds()
>>> lim = Threshold("limit", "by_src", 2, 60.0)
>>> [t.allow(1, lim, "198.18.0.1", "198.19.0.1", ts) for ts in (0, 1, 2, 61)]
[True, True, False, True]
"""

from __future__ import annotations


class Thresholds:
    """Counts per (sid, tracked address); windows start at a key's first match."""

    def __init__(self):
        self._state: dict = {}   # key -> [window start, matches, alerted]

    def allow(self, sid: int, t, src: str, dst: str, ts: float) -> bool:
        key = (sid, t.kind, {"by_src": src, "by_dst": dst, "by_both": (src, dst),
                             "by_rule": None}[t.track])
        st = self._state.get(key)
        if st is None or ts - st[0] >= t.seconds:
            st = self._state[key] = [ts, 0, False]
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
        return n > t.count  # detection_filter

    def __len__(self) -> int:
        return len(self._state)
