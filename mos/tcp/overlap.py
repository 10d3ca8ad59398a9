"""Overlap policy names: which bytes a receiver keeps when a retransmission
covers bytes it holds out of order (the table is in rbuf.h).

Suricata's ``host-os-policy`` names are accepted; several operating systems
settle overlaps the same way, so they share one behaviour:

    >>> from mos.tcp import overlap
    >>> overlap.canonical("windows"), overlap.canonical("hpux11")
    ('bsd', 'solaris')
    >>> overlap.code("plan9")
    Traceback (most recent call last):
    ...
    ValueError: overlap policy 'plan9' is not one of first, last, bsd, linux, old-linux, solaris, windows, windows2k3, vista, macos, irix, hpux10, hpux11
"""

from __future__ import annotations

#: behaviour -> MOS_OVERLAP_* in rbuf.h (tests check the two agree)
CODES = {"first": 0, "last": 1, "bsd": 2, "linux": 3, "old-linux": 4, "solaris": 5}
#: operating systems whose out-of-order queue behaves as one of CODES
#: (Novak and Sturges 2007; Suricata's stream-tcp-list.c groups them alike)
ALIASES = {"windows": "bsd", "windows2k3": "bsd", "vista": "first", "macos": "bsd",
           "irix": "bsd", "hpux10": "bsd", "hpux11": "solaris"}
NAMES = tuple(CODES) + tuple(ALIASES)


def canonical(name: str) -> str:
    """The behaviour a policy name stands for."""
    if name in CODES:
        return name
    if name in ALIASES:
        return ALIASES[name]
    raise ValueError(f"overlap policy {name!r} is not one of {', '.join(NAMES)}")


def code(name: str) -> int:
    """The rbuf.h value of a policy name."""
    return CODES[canonical(name)]


def name_of(code_: int) -> str:
    """The behaviour name of an rbuf.h value."""
    for k, v in CODES.items():
        if v == code_:
            return k
    raise ValueError(f"no overlap policy has code {code_}")
