"""Address and port groups of Suricata rule headers, with variables.

A group is what a rule header names in its address or port fields: ``any``,
one value, a variable (``$HOME_NET``), a negation (``!x``) or a bracketed
list of any of these, nested.  Groups resolve to a set of included and
excluded ranges; a value is in the group if it is in some included range
(or the group only excludes) and in no excluded one, as Suricata reads them.

>>> v = Vars.defaults()
>>> g = parse_addresses("[$HOME_NET,!192.168.1.0/24]", v)
>>> g.contains("10.1.2.3"), g.contains("192.168.1.9"), g.contains("8.8.8.8")
(True, False, False)
>>> parse_ports("[80,8000:8080,!8008]", v).contains(8008)
False
"""

from __future__ import annotations

import bisect
import functools
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Union

Net = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


class GroupError(ValueError):
    """A malformed address or port group; the message names the bad part."""


# Suricata's shipped suricata.yaml values: rules written for it assume them.
DEFAULT_ADDRESS_VARS = {
    "HOME_NET": "[192.168.0.0/16,10.0.0.0/8,172.16.0.0/12]",
    "EXTERNAL_NET": "!$HOME_NET",
    "HTTP_SERVERS": "$HOME_NET",
    "SMTP_SERVERS": "$HOME_NET",
    "SQL_SERVERS": "$HOME_NET",
    "DNS_SERVERS": "$HOME_NET",
    "TELNET_SERVERS": "$HOME_NET",
    "AIM_SERVERS": "$EXTERNAL_NET",
    "DC_SERVERS": "$HOME_NET",
    "DNP3_SERVER": "$HOME_NET",
    "DNP3_CLIENT": "$HOME_NET",
    "MODBUS_CLIENT": "$HOME_NET",
    "MODBUS_SERVER": "$HOME_NET",
    "ENIP_CLIENT": "$HOME_NET",
    "ENIP_SERVER": "$HOME_NET",
}
DEFAULT_PORT_VARS = {
    "HTTP_PORTS": "80",
    "SHELLCODE_PORTS": "!80",
    "ORACLE_PORTS": "1521",
    "SSH_PORTS": "22",
    "DNP3_PORTS": "20000",
    "MODBUS_PORTS": "502",
    "FILE_DATA_PORTS": "[$HTTP_PORTS,110,143]",
    "FTP_PORTS": "21",
    "GENEVE_PORTS": "6081",
    "VXLAN_PORTS": "4789",
    "TEREDO_PORTS": "3544",
}


@dataclass
class Vars:
    """Address and port variables (names without the ``$``)."""
    addresses: dict = field(default_factory=dict)
    ports: dict = field(default_factory=dict)

    @classmethod
    def defaults(cls) -> Vars:
        return cls(dict(DEFAULT_ADDRESS_VARS), dict(DEFAULT_PORT_VARS))

    @classmethod
    def from_mapping(cls, doc: dict, where: str = "vars") -> Vars:
        """Suricata's layout: ``{vars: {address-groups: {...}, port-groups: {...}}}``
        (or the inner mapping).  Missing names keep their defaults."""
        v = cls.defaults()
        if "vars" in doc:
            doc = doc["vars"]
            where += ": vars"
        if not isinstance(doc, dict):
            raise GroupError(f"{where}: expected a mapping with address-groups and port-groups")
        for key, target in (("address-groups", v.addresses), ("port-groups", v.ports)):
            sub = doc.get(key) or {}
            if not isinstance(sub, dict):
                raise GroupError(f"{where}: {key} must be a mapping of NAME: value")
            for name, value in sub.items():
                if isinstance(value, int):
                    value = str(value)
                if not isinstance(value, str):
                    raise GroupError(f"{where}: {key}: {name}: {value!r} is not a string")
                target[str(name)] = value
        return v


def _split_list(text: str, what: str) -> list[str]:
    """Split the inside of [...] at top-level commas."""
    out, depth, cur = [], 0, []
    for ch in text:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise GroupError(f"unbalanced ']' in {what} {text!r}")
        if ch == "," and depth == 0:
            out.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    if depth != 0:
        raise GroupError(f"unbalanced '[' in {what} {text!r}")
    out.append("".join(cur).strip())
    if any(not part for part in out):
        raise GroupError(f"empty element in {what} [{text}]")
    return out


@dataclass(frozen=True)
class AddressGroup:
    """Included and excluded networks; ``any_`` when nothing restricts."""
    include: tuple = ()
    exclude: tuple = ()
    any_: bool = False
    text: str = "any"

    def contains(self, ip: str | ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        if self.any_ and not self.exclude:
            return True
        v, a = _ip_key(ip)
        if _in_spans(self._spans[1][v], a):
            return False
        if self.any_ or not self.include:
            return True
        return _in_spans(self._spans[0][v], a)

    @functools.cached_property
    def _spans(self) -> tuple:
        """(include, exclude), each {4: (starts, ends), 6: (...)}: merged
        integer intervals, so a lookup is one bisect however long the list
        (IP reputation rules carry hundreds of addresses)."""
        return _spans_of(self.include), _spans_of(self.exclude)


def _spans_of(nets) -> dict:
    out = {}
    for ver in (4, 6):
        iv = sorted((int(n.network_address), int(n.broadcast_address))
                    for n in nets if n.version == ver)
        merged: list = []
        for lo, hi in iv:
            if merged and lo <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], hi)
            else:
                merged.append([lo, hi])
        out[ver] = ([m[0] for m in merged], [m[1] for m in merged])
    return out


def _in_spans(spans: tuple, a: int) -> bool:
    starts, ends = spans
    i = bisect.bisect_right(starts, a) - 1
    return i >= 0 and a <= ends[i]


_IP_CACHE: dict = {}


def _ip_key(ip) -> tuple:
    """(version, integer) of an address, cached for the text forms flows use."""
    got = _IP_CACHE.get(ip)
    if got is None:
        a = ipaddress.ip_address(ip)
        got = (a.version, int(a))
        if len(_IP_CACHE) >= 1 << 16:
            _IP_CACHE.clear()
        _IP_CACHE[ip] = got
    return got


def _resolve_addresses(text: str, vars_: Vars, neg: bool, depth: int,
                       inc: list, exc: list, seen: tuple) -> bool:
    """Adds networks to inc/exc; returns True if an un-negated 'any' appeared."""
    text = text.strip()
    if depth > 32:
        raise GroupError(f"address group nested too deep at {text!r}")
    if not text:
        raise GroupError("empty address")
    if text.startswith("!"):
        return _resolve_addresses(text[1:], vars_, not neg, depth + 1, inc, exc, seen)
    if text.startswith("["):
        if not text.endswith("]"):
            raise GroupError(f"unbalanced '[' in address {text!r}")
        any_seen = False
        for part in _split_list(text[1:-1], "address"):
            any_seen |= _resolve_addresses(part, vars_, neg, depth + 1, inc, exc, seen)
        return any_seen
    if text.startswith("$"):
        name = text[1:]
        if name in seen:
            raise GroupError(f"address variable ${name} refers to itself")
        if name not in vars_.addresses:
            raise GroupError(f"unknown address variable ${name}")
        return _resolve_addresses(vars_.addresses[name], vars_, neg, depth + 1, inc, exc,
                                  seen + (name,))
    if text == "any":
        if neg:
            raise GroupError("'!any' matches nothing")
        return True
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise GroupError(f"{text!r} is not an address, network, variable or 'any'") from None
    (exc if neg else inc).append(net)
    return False


def parse_addresses(text: str, vars_: Vars | None = None) -> AddressGroup:
    vars_ = vars_ or Vars.defaults()
    inc: list = []
    exc: list = []
    any_ = _resolve_addresses(text, vars_, False, 0, inc, exc, ())
    return AddressGroup(tuple(inc), tuple(exc), any_ or (not inc and not exc), text)


@dataclass(frozen=True)
class PortGroup:
    """Included and excluded inclusive port ranges."""
    include: tuple = ()
    exclude: tuple = ()
    any_: bool = False
    text: str = "any"

    def contains(self, port: int) -> bool:
        if any(lo <= port <= hi for lo, hi in self.exclude):
            return False
        if self.any_ or not self.include:
            return True
        return any(lo <= port <= hi for lo, hi in self.include)

    def ports(self, most: int = 64):
        """The ports the group holds when they are at most `most` (an index
        key), else None."""
        if self.any_ or not self.include:
            return None
        n = sum(hi - lo + 1 for lo, hi in self.include)
        if n > most:
            return None
        return [p for lo, hi in self.include for p in range(lo, hi + 1) if self.contains(p)]


def _port(text: str) -> int:
    try:
        v = int(text, 10)
    except ValueError:
        raise GroupError(f"{text!r} is not a port number") from None
    if not 0 <= v <= 65535:
        raise GroupError(f"port {v} is out of range 0-65535")
    return v


def _resolve_ports(text: str, vars_: Vars, neg: bool, depth: int, inc: list, exc: list,
                   seen: tuple) -> bool:
    text = text.strip()
    if depth > 32:
        raise GroupError(f"port group nested too deep at {text!r}")
    if not text:
        raise GroupError("empty port")
    if text.startswith("!"):
        return _resolve_ports(text[1:], vars_, not neg, depth + 1, inc, exc, seen)
    if text.startswith("["):
        if not text.endswith("]"):
            raise GroupError(f"unbalanced '[' in port {text!r}")
        any_seen = False
        for part in _split_list(text[1:-1], "port"):
            any_seen |= _resolve_ports(part, vars_, neg, depth + 1, inc, exc, seen)
        return any_seen
    if text.startswith("$"):
        name = text[1:]
        if name in seen:
            raise GroupError(f"port variable ${name} refers to itself")
        if name not in vars_.ports:
            raise GroupError(f"unknown port variable ${name}")
        return _resolve_ports(vars_.ports[name], vars_, neg, depth + 1, inc, exc, seen + (name,))
    if text == "any":
        if neg:
            raise GroupError("'!any' matches no port")
        return True
    if ":" in text:
        lo_s, hi_s = text.split(":", 1)
        lo = _port(lo_s) if lo_s else 0
        hi = _port(hi_s) if hi_s else 65535
        if lo > hi:
            raise GroupError(f"port range {text!r} is empty (low above high)")
        rng = (lo, hi)
    else:
        p = _port(text)
        rng = (p, p)
    (exc if neg else inc).append(rng)
    return False


def parse_ports(text: str, vars_: Vars | None = None) -> PortGroup:
    vars_ = vars_ or Vars.defaults()
    inc: list = []
    exc: list = []
    any_ = _resolve_ports(text, vars_, False, 0, inc, exc, ())
    return PortGroup(tuple(inc), tuple(exc), any_ or (not inc and not exc), text)


def check_vars(vars_: Vars) -> Iterable[str]:
    """Problems with the variables themselves (each a message naming one)."""
    for name, value in vars_.addresses.items():
        try:
            parse_addresses(value, vars_)
        except GroupError as exc:
            yield f"address variable ${name}: {exc}"
    for name, value in vars_.ports.items():
        try:
            parse_ports(value, vars_)
        except GroupError as exc:
            yield f"port variable ${name}: {exc}"
