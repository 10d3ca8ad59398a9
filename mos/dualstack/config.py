"""Engine options, each with a documented default, validated when built.

    >>> from mos import Config
    >>> Config(overlap="last", buffer_size=1 << 20).overlap
    'last'
    >>> Config(overlap="newest")
    Traceback (most recent call last):
    ...
    mos.errors.ConfigError: overlap: 'newest' is not one of first, last, bsd, linux, old-linux, solaris, windows, windows2k3, vista, macos, irix, hpux10, hpux11
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from mos.errors import ConfigError
from mos.tcp import overlap as overlap_names

__all__ = ["Config"]

#: largest receive buffer per side (1 GiB, the largest TCP window, RFC 7323 2.3)
MAX_BUFFER = 1 << 30
#: values of Config.on_handler_error
HANDLER_ERROR_POLICIES = ("auto", "log", "stop", "disable-handler", "raise")


@dataclass(frozen=True)
class Config:
    #: receive buffer per side of each flow, bytes; 0 keeps no payload (state tracking goes
    #: on).  Memory is taken as needed; keep it at least the receive window, or loss
    #: recovery on a fast flow outruns it (Suricata's default depth is 1 MiB too)
    buffer_size: int = 1 << 20
    #: which bytes win when a retransmission overlaps stored data: 'first', 'last', or a
    #: target-based policy ('bsd', 'linux', 'windows', ...: mos.tcp.overlap.NAMES)
    overlap: str = "first"
    #: create flows from packets seen mid-stream (no SYN); client guessed from ports
    midstream: bool = False
    #: 'verify' (drop bad checksums), 'ignore', or 'auto' (stop verifying if >10% fail)
    checksum: str = "auto"
    #: seconds a flow may stay idle (capture time) before TIMEOUT and CONN_END
    tcp_timeout: float = 30.0
    #: live flows kept; beyond it a flow is evicted (CONN_END, reason EVICT): the oldest
    #: embryonic one (handshake not complete) if any, else the least recently active
    max_flows: int = 1_000_000
    #: live embryonic flows kept (created by a SYN, handshake not complete); beyond it the
    #: oldest is recycled (RFC 4987 3.4), so a SYN flood holds at most this many flow
    #: entries (~420 bytes each) while established flows keep their place
    max_embryonic: int = 250_000
    #: keep a SHA-256 of each direction's stream (used by `mos streams`)
    digest: bool = False
    #: keep bytes that every monitor has read and the receiver acknowledged until the
    #: buffer is full (ppeek can look back); False frees them at the flow's next packet
    keep_read: bool = False
    #: bytes all flows' receive buffers may hold together (per worker; Suricata's
    #: stream.reassembly.memcap); a segment that would pass it is not stored, counted
    #: (ERROR MEMCAP, counters()["reassembly"]) and its bytes become a gap. 0: no cap
    reassembly_memcap: int = 256 << 20
    #: bytes held for IP fragment reassembly
    defrag_memory: int = 64 << 20
    #: seconds an incomplete fragmented datagram is kept
    defrag_timeout: float = 30.0
    #: what a handler's exception does (Suricata's exception policies): 'log' (count it,
    #: log one line, go on), 'stop' (end the run with one line; finish() still runs),
    #: 'disable-handler' (log once, unregister that handler, go on), 'raise' (propagate
    #: it), or 'auto': 'log' during a run (Engine.run, `mos run`, the in-line box),
    #: 'raise' when frames are fed by hand (feed, advance, close: tests see the error)
    on_handler_error: str = "auto"

    def __post_init__(self) -> None:
        def bad(key, value, why):
            raise ConfigError(f"{key}: {value!r} {why}")

        for key, lo, hi in (("buffer_size", 0, MAX_BUFFER), ("max_flows", 1, 0xFFFFFFFF),
                            ("max_embryonic", 1, 0xFFFFFFFF),
                            ("defrag_memory", 0, 1 << 40), ("reassembly_memcap", 0, 1 << 48)):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int):
                bad(key, v, "is not an integer")
            if not lo <= v <= hi:
                bad(key, v, f"is out of range {lo}..{hi}")
        if self.overlap not in overlap_names.NAMES:
            bad("overlap", self.overlap, "is not one of " + ", ".join(overlap_names.NAMES))
        if self.checksum not in ("verify", "ignore", "auto"):
            bad("checksum", self.checksum, "is not one of verify, ignore, auto")
        if self.on_handler_error not in HANDLER_ERROR_POLICIES:
            bad("on_handler_error", self.on_handler_error,
                "is not one of " + ", ".join(HANDLER_ERROR_POLICIES))
        for key in ("midstream", "digest", "keep_read"):
            if not isinstance(getattr(self, key), bool):
                bad(key, getattr(self, key), "is not true or false")
        for key in ("tcp_timeout", "defrag_timeout"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 86400 * 365:
                bad(key, v, "is not a number of seconds in (0, 31536000]")

    def replace(self, **changes) -> "Config":
        d = asdict(self)
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise ConfigError(f"unknown option {sorted(unknown)[0]!r}")
        d.update(changes)
        return Config(**d)
