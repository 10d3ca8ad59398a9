"""Target-based reassembly: the overlap policy of each receiving host, from
Suricata's ``host-os-policy`` table.

An overlap is settled the way the receiver's operating system settles it
(mos.tcp.overlap), so the stream a rule sees is the one the target accepts.
The most specific prefix holding an address wins:

>>> t = HostPolicies.from_mapping({"windows": ["198.18.0.0/15"],
...                                "linux": ["198.18.7.0/24", "2001:db8::/32"]})
>>> t.policy_for("198.18.7.9"), t.policy_for("198.19.0.1"), t.policy_for("2001:db8::1")
('linux', 'windows', 'linux')
>>> t.policy_for("203.0.113.5") is None
True
>>> HostPolicies.from_mapping({"beos": ["198.18.0.0/15"]}, "ids.yaml: host-os-policy")
Traceback (most recent call last):
...
ValueError: ids.yaml: host-os-policy: beos: not an overlap policy (one of first, last, bsd, linux, old-linux, solaris, windows, windows2k3, vista, macos, irix, hpux10, hpux11)
"""

from __future__ import annotations

import ipaddress
from typing import Optional

from mos.tcp import overlap

_CACHE_MAX = 1 << 16


def split_prefixes(text: str) -> list:
    """``"[a, b]"`` or ``"a,b"`` as ["a", "b"] (YAML's flow list written as text)."""
    return [x.strip() for x in text.replace("[", "").replace("]", "").split(",") if x.strip()]


class HostPolicies:
    """Prefixes -> overlap policy name; ``policy_for(ip)`` picks the longest
    matching prefix (None: no entry, the engine's configured policy holds)."""

    def __init__(self, entries=()):
        #: (network, policy), most specific first
        self.entries = sorted(((ipaddress.ip_network(n, strict=False), p) for n, p in entries),
                              key=lambda e: -e[0].prefixlen)
        self._cache: dict = {}

    def __bool__(self) -> bool:
        return bool(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    @classmethod
    def from_mapping(cls, doc, where: str = "host-os-policy") -> HostPolicies:
        """Suricata's layout, ``{host-os-policy: {windows: [prefix, ...], ...}}``
        or the inner mapping; prefixes may also be one comma-separated string.
        Errors start with ``where``."""
        if isinstance(doc, dict) and "host-os-policy" in doc:
            doc = doc["host-os-policy"] or {}
        if not isinstance(doc, dict):
            raise ValueError(f"{where}: expected a mapping of policy: [prefixes]")
        entries = []
        for name, nets in doc.items():
            name = str(name)
            if name not in overlap.NAMES:
                raise ValueError(f"{where}: {name}: not an overlap policy (one of "
                                 f"{', '.join(overlap.NAMES)})")
            if nets is None:
                continue
            if isinstance(nets, str):
                nets = split_prefixes(nets)
            if not isinstance(nets, list):
                raise ValueError(f"{where}: {name}: expected a list of prefixes, got {nets!r}")
            for n in nets:
                n = str(n).strip().strip('"').strip("'")
                try:
                    ipaddress.ip_network(n, strict=False)
                except ValueError:
                    raise ValueError(f"{where}: {name}: {n!r} is not an address or prefix") \
                        from None
                entries.append((n, name))
        return cls(entries)

    def policy_for(self, ip: str) -> Optional[str]:
        got = self._cache.get(ip, False)
        if got is not False:
            return got
        a = ipaddress.ip_address(ip)
        got = next((p for net, p in self.entries if a.version == net.version and a in net), None)
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()
        self._cache[ip] = got
        return got
