"""Community ID flow hashing, version 1 (the Corelight specification that
Zeek and Suricata implement): one string per flow, the same from either
direction, to join records of different tools.

>>> community_id("198.18.0.1", 40000, "198.18.0.2", 443, 6)
'1:nzmqH0i9ojhj6zrI5caNuu9uoEk='
>>> community_id("198.18.0.2", 443, "198.18.0.1", 40000, 6)
'1:nzmqH0i9ojhj6zrI5caNuu9uoEk='
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import struct


def community_id(src: str, sport: int, dst: str, dport: int, proto: int = 6,
                 seed: int = 0) -> str:
    """The v1 string: SHA-1 over seed, both addresses and ports in a fixed
    order (the smaller endpoint first), the protocol and a pad byte; base64."""
    a = ipaddress.ip_address(src).packed
    b = ipaddress.ip_address(dst).packed
    if (b, dport) < (a, sport):
        a, sport, b, dport = b, dport, a, sport
    h = hashlib.sha1(struct.pack(">H", seed & 0xFFFF) + a + b
                     + struct.pack(">BBHH", proto, 0, sport, dport))
    return "1:" + base64.b64encode(h.digest()).decode()
