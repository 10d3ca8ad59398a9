"""The YAML configuration of a middlebox: ports, forwarding, workers, engine options.

    >>> s = parse_settings('''
    ... ports:
    ...   - {name: west, driver: afpacket, iface: c1}
    ...   - {name: east, driver: afpacket, iface: s1}
    ... forward: [[west, east]]
    ... ''', name="mos.yaml")
    >>> s.mode, [p.name for p in s.ports], s.forward
    ('inline', ['west', 'east'], (('west', 'east'),))
    >>> parse_settings('''
    ... ports:
    ...   - {name: west, driver: dpdkk, port_id: 0}
    ... ''', name="mos.yaml")
    Traceback (most recent call last):
    ...
    mos.errors.ConfigError: mos.yaml:3: ports[0].driver: 'dpdkk' is not one of pcap, afpacket, dpdk

Everything is checked when the file is loaded: every error is a
`mos.errors.ConfigError` whose message is ``FILE:LINE: KEY.PATH: reason``.
What only a run can find out (no such interface, an option the driver does
not take, a missing app or capture file) is reported the same way, with the
line of the key the problem is about (`Settings.error`).
Unknown keys are errors (with the closest known key as a hint), and so are
duplicate keys. Strings are taken as written (``-m, 1024`` in ``eal_args``
gives the string ``"1024"``). Relative ``path`` and ``app`` values are taken
from the directory of the YAML file.

Top-level keys
==============

=========== =========== ==========================================================
key         default     meaning
=========== =========== ==========================================================
mode        ``inline``  ``inline``: ports are joined in pairs and forward to each
                        other (a transparent bump in the wire; handlers may drop or
                        modify); ``passive``: ports are only read, nothing is sent;
                        ``endhost``: mos's own TCP/IP stack owns the addresses of
                        the ``endhost`` section (``mos serve``)
ports       (required)  list of ports, at least one; see *Ports*
forward     ``[]``      list of pairs ``[a, b]`` of port names; each pair forwards
                        both ways. Inline mode needs at least one pair and every
                        port in exactly one pair; passive mode takes none
dpdk        (none)      ``{eal_args: [...]}``; required iff a port uses the dpdk
                        driver, an error otherwise
workers     ``1``       workers, 1..64: AF_PACKET processes in a fanout group;
                        DPDK threads, one per rx/tx queue pair (symmetric RSS,
                        or software steering on a device without RSS;
                        net_af_packet vdevs get ``qpairs=N`` added)
monitor     (defaults)  engine options of `mos.Config`; see *Monitor*
app         (none)      module name (``middleboxes.midstat``) or ``.py`` file with
                        ``attach(engine)``, as ``mos run --app``
endhost     (none)      required iff mode is ``endhost``: ``addresses``, a list of
                        ``{port: NAME, address: 198.18.77.2/24}`` (IPv4 or IPv6
                        with its prefix); optional ``gateway4``, ``gateway6``,
                        ``max_conns`` (65536), ``syncookies`` (1: SYN cookies
                        when a listener's SYN queue is full, RFC 4987 3.6; 0
                        never; 2 always) and ``tcp``: ``mss``, ``rcvbuf``,
                        ``rcvbuf_max`` (4 MiB: autotuning's bound, 0 off),
                        ``sndbuf``, ``nodelay``, ``sack``, ``timestamps``,
                        ``cubic`` (1: CUBIC, RFC 9438; 0: Reno).  In
                        inline or passive mode (both roles at once, afpacket):
                        the end host owns one port of its own (in no forward
                        pair) and ``serve: {root: DIR, port: 80}`` makes
                        ``mos run`` serve files on it
=========== =========== ==========================================================

Ports
=====

Each item of ``ports`` is a mapping:

=========== =========== ==========================================================
key         default     meaning
=========== =========== ==========================================================
name        (required)  unique, ``[A-Za-z0-9_-]+``; used by ``forward``
driver      (required)  ``pcap`` (a capture file: rx reads ``path``; in-line
                        only, all ports pcap, run at the captures' time until
                        read; ``options: {write: OUT.pcap}`` writes what
                        leaves by the port), ``afpacket`` (a Linux interface
                        through a TPACKET_V3 ring) or ``dpdk``
iface       (none)      afpacket only, required: the interface name (unique)
port_id     (none)      dpdk only, required: DPDK port number, an integer >= 0
                        (unique); vdevs are numbered in ``eal_args`` order
path        (none)      pcap only, required: the pcap or pcapng file to read
rx_ring_mb  ``8``       afpacket only: receive ring size in MiB, 1..1024
burst       ``256``     most frames taken per receive call, 1..1024 (the
                        loop takes at most 256 at a time)
options     ``{}``      driver-specific extras (a mapping of names to plain
                        values), passed to the driver, which rejects unknown ones
=========== =========== ==========================================================

DPDK
====

=========== =========== ==========================================================
key         default     meaning
=========== =========== ==========================================================
eal_args    ``[]``      arguments of ``rte_eal_init`` (after the program name),
                        e.g. ``[--no-huge, -m, "1024", --no-pci,
                        "--vdev=net_af_packet0,iface=c1"]``
idle_sleep  ``0``       microseconds a worker sleeps between empty polls, after
                        1000 of them; 0 polls without pause (DPDK's poll mode:
                        one CPU busy per worker, the lowest latency), up to
                        10000 to leave idle CPU time to other work
=========== =========== ==========================================================

Monitor
=======

The keys of `mos.Config`, checked by building one:

================= ============= ====================================================
key               default       meaning
================= ============= ====================================================
buffer_size       ``1048576``   receive buffer per side of each flow, bytes; 0 keeps
                                no payload
overlap           ``first``     which bytes win when retransmissions overlap:
                                ``first``, ``last``, or a target-based policy
                                (``bsd``, ``linux``, ``windows``, ...)
midstream         ``false``     also track flows whose handshake was not seen
checksum          ``auto``      ``verify``, ``ignore``, or ``auto`` (stop verifying
                                if >10% of the first TCP packets fail)
tcp_timeout       ``30.0``      seconds a flow may stay idle before it ends
max_flows         ``1000000``   live flows; beyond it one is evicted: the oldest
                                embryonic flow if any, else the least recently
                                active
max_embryonic     ``250000``    live flows whose handshake is not complete; beyond
                                it the oldest is recycled (SYN flood bound)
digest            ``false``     keep a SHA-256 of each direction's stream
keep_read         ``false``     keep bytes every monitor has read until the buffer
                                is full (``ppeek`` can look back)
defrag_memory     ``67108864``  bytes held for IP fragment reassembly
defrag_timeout    ``30.0``      seconds an incomplete fragmented datagram is kept
reassembly_memcap ``268435456`` bytes all receive buffers of a worker may hold
                                together (Suricata's stream.reassembly.memcap); a
                                segment beyond it is not stored, counted, and
                                raised as ERROR ``MEMCAP``; 0: no cap
================= ============= ====================================================

and what a handler's exception does (Suricata's exception policies), a
key of `mos.Config` too:

================ ========== ===================================================
key              default    meaning
================ ========== ===================================================
on_handler_error ``auto``   ``log``: count it, log one line naming the handler,
                            the event, the flow and the packet number, go on;
                            ``stop``: end the run with that line (the app's
                            ``finish`` still runs, counters are printed);
                            ``disable-handler``: log it, unregister that
                            handler, go on; ``raise``: propagate it. ``auto``
                            is ``log`` in a run (so always here)
================ ========== ===================================================
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, field, fields
from typing import Any, Mapping, NoReturn

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from mos.config import Config
from mos.errors import ConfigError

__all__ = [
    "DRIVERS",
    "MODES",
    "DpdkSpec",
    "EndhostSpec",
    "PortSpec",
    "Settings",
    "load_settings",
    "parse_settings",
]

MODES = ("inline", "passive", "endhost")
DRIVERS = ("pcap", "afpacket", "dpdk")
MAX_WORKERS = 64
_NAME_RE = re.compile(r"[A-Za-z0-9_-]+\Z")
_MODULE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\Z")
_TAG = "tag:yaml.org,2002:"
_TEXT_TAGS = {_TAG + t for t in ("str", "int", "float", "bool", "timestamp")}
# the one key each driver needs, and the driver-only keys
_NEEDS = {"afpacket": "iface", "dpdk": "port_id", "pcap": "path"}
_ONLY = {"iface": "afpacket", "port_id": "dpdk", "path": "pcap", "rx_ring_mb": "afpacket"}


@dataclass(frozen=True)
class PortSpec:
    """One port; see the *Ports* table of this module."""
    name: str
    driver: str
    iface: str | None = None
    port_id: int | None = None
    path: str | None = None
    rx_ring_mb: int = 8
    burst: int = 256
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class DpdkSpec:
    """The ``dpdk`` section."""
    eal_args: tuple[str, ...] = ()
    idle_sleep: int = 0


@dataclass(frozen=True)
class EndhostSpec:
    """The ``endhost`` section: (port name, "address/prefix") pairs and options."""
    addresses: tuple[tuple[str, str], ...]
    gateway4: str | None = None
    gateway6: str | None = None
    max_conns: int = 65536
    syncookies: int = 1
    tcp: dict = field(default_factory=dict)
    #: ``serve: {root: DIR, port: 80}``: files ``mos run`` serves on the
    #: end host's addresses while it monitors (both roles at once)
    serve_root: str | None = None
    serve_port: int = 80

    @property
    def port(self) -> str:
        """The port the end host owns (its addresses are all on one)."""
        return self.addresses[0][0]


_ENDHOST = ("addresses", "gateway4", "gateway6", "max_conns", "syncookies", "tcp", "serve")
_ENDHOST_TCP = {"mss": (536, 9000), "rcvbuf": (4096, 1 << 30), "rcvbuf_max": (0, 1 << 30),
                "sndbuf": (4096, 1 << 30), "nodelay": (0, 1), "sack": (0, 1), "timestamps": (0, 1),
                "cubic": (0, 1)}


@dataclass(frozen=True)
class Settings:
    """A checked configuration; build it with `load_settings` or `parse_settings`."""
    ports: tuple[PortSpec, ...]
    mode: str = "inline"
    forward: tuple[tuple[str, str], ...] = ()
    dpdk: DpdkSpec | None = None
    workers: int = 1
    monitor: Config = field(default_factory=Config)
    app: str | None = None
    endhost: EndhostSpec | None = None
    #: where it was read from (for messages)
    source: str = field(default="<string>", compare=False)
    #: the line of each key path read ("ports[0].iface": 5), for run-time errors
    lines: Mapping[str, int] = field(default_factory=dict, compare=False, repr=False)

    def error(self, path: str, why: str, shown: str | None = None) -> ConfigError:
        """The error for a problem a run found with the value at key `path`
        (``ports[0].iface``): ``FILE:LINE: PATH: why``, the line being that
        of the key, or of the nearest enclosing key read from the file.
        `shown` replaces PATH in the message (``ports[west].iface``)."""
        p = path
        while p and p not in self.lines:
            cut = max(p.rfind("."), p.rfind("["))
            p = p[:cut] if cut > 0 else ""
        where = f"{self.source}:{self.lines[p]}" if p else self.source
        return ConfigError(f"{where}: {shown or path}: {why}")

    def port_path(self, spec: "PortSpec") -> str:
        """The key path of a port (``ports[1]``)."""
        for i, p in enumerate(self.ports):
            if p is spec:
                return f"ports[{i}]"
        return f"ports[{self.ports.index(spec)}]"

    def port_error(self, spec: "PortSpec", key: str, why: str, shown: str | None = None
                   ) -> ConfigError:
        """`error` for key ``key`` of a port (``options.tx``), shown with the
        port's name (``ports[west].options.tx``), at the line of that key."""
        return self.error(f"{self.port_path(spec)}.{key}", why,
                          f"ports[{spec.name}].{shown or key}")

    def engine_config(self) -> Config:
        """The engine options (`mos.Config`) of the ``monitor`` section."""
        return self.monitor

    def port(self, name: str) -> PortSpec:
        for p in self.ports:
            if p.name == name:
                return p
        raise KeyError(name)

    def peer(self, name: str) -> str | None:
        """The port that `name` forwards to, or None."""
        for a, b in self.forward:
            if a == name:
                return b
            if b == name:
                return a
        return None


_TOP = ("mode", "ports", "forward", "dpdk", "workers", "monitor", "app", "endhost")
_PORT = tuple(f.name for f in fields(PortSpec))
_MONITOR = tuple(f.name for f in fields(Config))


def load_settings(path: str | os.PathLike) -> Settings:
    """Read and check a YAML file; relative paths in it are taken from its folder."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{name}:{line}: not UTF-8 text (byte {exc.start})") from None
    return parse_settings(text, name=name, base_dir=os.path.dirname(os.path.abspath(name)))


def parse_settings(text: str, name: str = "<string>",
                   base_dir: str | None = None) -> Settings:
    """Check YAML text; `name` is used in messages, `base_dir` for relative paths."""
    if not isinstance(text, str):
        raise ConfigError(f"{name}: expected text, got {type(text).__name__}")
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        why = exc.problem or exc.context or "invalid YAML"
        if exc.context and exc.problem:
            why = f"{exc.context}: {exc.problem}"
        col = f" (column {mark.column + 1})" if mark is not None else ""
        raise ConfigError(f"{name}:{line}: YAML syntax error: {why}{col}") from None
    except yaml.reader.ReaderError as exc:
        line = text[: exc.position].count("\n") + 1
        ch = exc.character if isinstance(exc.character, int) else ord(exc.character[:1] or "\0")
        raise ConfigError(f"{name}:{line}: YAML syntax error: character U+{ch:04X} "
                          f"is not allowed") from None
    except yaml.YAMLError as exc:  # any other scanner failure, without a mark
        raise ConfigError(f"{name}:1: YAML syntax error: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{name}:1: YAML syntax error: nested too deeply") from None
    return _Reader(name, base_dir).settings(root)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class _Reader:
    """Walks the node tree: every value is checked where its line is known."""

    def __init__(self, name: str, base_dir: str | None):
        self.name = name
        self.base_dir = base_dir
        self.ctor = SafeConstructor()
        self.lines: dict[str, int] = {}  # key path -> line, for Settings.error

    def mark(self, node: Node, path: str) -> None:
        self.lines.setdefault(path, node.start_mark.line + 1)

    def fail(self, node: Node | None, path: str, why: str) -> NoReturn:
        line = node.start_mark.line + 1 if node is not None else 1
        raise ConfigError(f"{self.name}:{line}: {path}: {why}")

    # -- shapes -----------------------------------------------------------------------------

    def mapping(self, node: Node, path: str, allowed: tuple[str, ...]) -> dict:
        """{key: (key_node, value_node)}, after checking every key."""
        if not isinstance(node, MappingNode):
            self.fail(node, path or "top level", f"expected a mapping, got {_kind(node)}")
        # '<<' merge keys: flatten a copy (the node may be shared through an alias); merged
        # keys come first, so a key written here overrides a merged one
        explicit = {id(k) for k, _v in node.value if k.tag != _TAG + "merge"}
        flat = MappingNode(node.tag, list(node.value), node.start_mark, node.end_mark)
        try:
            self.ctor.flatten_mapping(flat)
        except yaml.YAMLError as exc:
            self.fail(node, path or "top level", f"bad merge: {getattr(exc, 'problem', exc)}")
        out: dict = {}
        for knode, vnode in flat.value:
            if not isinstance(knode, ScalarNode):
                self.fail(knode, path or "top level",
                          f"a key must be a plain word, got {_kind(knode)}")
            key = knode.value
            where = _join(path, key)
            if key not in allowed:
                hint = difflib.get_close_matches(key, allowed, n=1)
                why = f"unknown key (did you mean {hint[0]!r}?)" if hint else \
                    "unknown key (known: " + ", ".join(allowed) + ")"
                self.fail(knode, where, why)
            if key in out and id(out[key][0]) in explicit:
                self.fail(knode, where, f"duplicate key (first on line "
                                        f"{out[key][0].start_mark.line + 1})")
            out[key] = (knode, vnode)
            self.lines[where] = knode.start_mark.line + 1
        return out

    def seq(self, node: Node, path: str) -> list:
        if not isinstance(node, SequenceNode):
            self.fail(node, path, f"expected a list, got {_kind(node)}")
        return list(node.value)

    def text(self, node: Node, path: str) -> str:
        """A scalar, as written (so `1024` is '1024', `yes` is 'yes')."""
        if not isinstance(node, ScalarNode):
            self.fail(node, path, f"expected a string, got {_kind(node)}")
        if node.tag == _TAG + "null" or node.value == "":
            self.fail(node, path, "is empty")
        if node.tag not in _TEXT_TAGS:
            tag = "!!" + node.tag[len(_TAG):] if node.tag.startswith(_TAG) else node.tag
            self.fail(node, path, f"{node.value!r}: tag {tag} is not supported here")
        return node.value

    def choice(self, node: Node, path: str, choices: tuple[str, ...]) -> str:
        v = self.text(node, path)
        if v not in choices:
            self.fail(node, path, f"{v!r} is not one of {', '.join(choices)}")
        return v

    def value(self, node: Node, path: str) -> Any:
        """A plain value: string, integer, number, true/false."""
        if not isinstance(node, ScalarNode):
            self.fail(node, path, f"expected a plain value, got {_kind(node)}")
        try:
            return self.ctor.construct_object(node, deep=True)
        except Exception as exc:  # noqa: BLE001 - e.g. the timestamp-like 2001-13-45
            why = getattr(exc, "problem", None) or str(exc)
            self.fail(node, path, f"cannot read {node.value!r}: {why}")

    def integer(self, node: Node, path: str, lo: int, hi: int) -> int:
        if not isinstance(node, ScalarNode) or node.tag != _TAG + "int":
            shown = repr(node.value) if isinstance(node, ScalarNode) else _kind(node)
            self.fail(node, path, f"{shown} is not an integer")
        v = self.value(node, path)
        if not lo <= v <= hi:
            self.fail(node, path, f"{v} is out of range {lo}..{hi}")
        return v

    def file_path(self, node: Node, path: str) -> str:
        v = self.text(node, path)
        v = os.path.expanduser(v)
        if self.base_dir is not None and not os.path.isabs(v):
            v = os.path.join(self.base_dir, v)
        return v

    # -- sections ---------------------------------------------------------------------------

    def settings(self, root: Node | None) -> Settings:
        if root is None:
            self.fail(None, "ports", "required (the file is empty)")
        top = self.mapping(root, "", _TOP)
        mode = self.choice(top["mode"][1], "mode", MODES) if "mode" in top else "inline"
        if "ports" not in top:
            self.fail(root, "ports", "required")
        ports, port_nodes = self.ports(top["ports"][1])
        eh_port = None           # the end host's port beside a monitor: in no pair
        if mode != "endhost" and "endhost" in top:
            eh_port = self._endhost_port(top["endhost"][1])
        forward = self.forward(top.get("forward"), mode, ports, port_nodes, root, eh_port)
        dpdk = self.dpdk(top.get("dpdk"), ports, port_nodes)
        workers = self.integer(top["workers"][1], "workers", 1, MAX_WORKERS) \
            if "workers" in top else 1
        monitor = self.monitor(top["monitor"][1]) if "monitor" in top else Config()
        app = self.app(top["app"][1]) if "app" in top else None
        endhost = None
        if mode == "endhost":
            if "endhost" not in top:
                self.fail(root, "endhost", "mode endhost needs an endhost section "
                                           "(addresses: [{port: NAME, address: A/PREFIX}])")
            endhost = self.endhost(top["endhost"][1], ports)
        elif "endhost" in top:
            # both roles at once: the end host owns one port, the monitor the rest
            endhost = self.endhost(top["endhost"][1], ports)
            where = top["endhost"][0]
            own = {p for p, _ in endhost.addresses}
            if len(own) != 1:
                self.fail(where, "endhost.addresses", "beside a monitor the end host owns one "
                                                      f"port, not {', '.join(sorted(own))}")
            for i, pair in enumerate(forward):
                if endhost.port in pair:
                    self.fail(where, "endhost", f"port {endhost.port!r} is the end host's; it "
                                                f"cannot also forward (forward[{i}])")
            if len(ports) < 2:
                self.fail(where, "endhost", f"{mode} mode with an end host needs a port for "
                                            f"each: the end host has {endhost.port!r}")
            if any(p.driver != "afpacket" for p in ports):
                self.fail(where, "endhost", "both roles at once run on afpacket ports for now")
        return Settings(ports=tuple(ports), mode=mode, forward=forward, dpdk=dpdk,
                        workers=workers, monitor=monitor, app=app, endhost=endhost,
                        source=self.name, lines=self.lines)

    @staticmethod
    def _endhost_port(node: Node) -> str | None:
        """The port of the endhost section's first address, read ahead."""
        try:
            for k, v in node.value:
                if k.value == "addresses":
                    return next(val.value for kk, val in v.value[0].value if kk.value == "port")
        except (AttributeError, IndexError, StopIteration, TypeError):
            pass
        return None

    def endhost(self, node: Node, ports: list) -> EndhostSpec:
        import ipaddress
        m = self.mapping(node, "endhost", _ENDHOST)
        if "addresses" not in m:
            self.fail(node, "endhost", "addresses is required")
        items = self.seq(m["addresses"][1], "endhost.addresses")
        if not items:
            self.fail(m["addresses"][1], "endhost.addresses", "needs at least one address")
        names = [p.name for p in ports]
        addrs = []
        for i, item in enumerate(items):
            path = f"endhost.addresses[{i}]"
            self.mark(item, path)
            a = self.mapping(item, path, ("port", "address"))
            for key in ("port", "address"):
                if key not in a:
                    self.fail(item, path, f"{key} is required")
            port = self.text(a["port"][1], f"{path}.port")
            if port not in names:
                self.fail(a["port"][1], f"{path}.port",
                          f"{port!r} is not a port (ports: {', '.join(names)})")
            text = self.text(a["address"][1], f"{path}.address")
            try:
                iface = ipaddress.ip_interface(text)
            except ValueError:
                self.fail(a["address"][1], f"{path}.address",
                          f"{text!r} is not an address with a prefix (198.18.77.2/24)")
            if "/" not in text:
                self.fail(a["address"][1], f"{path}.address",
                          f"{text!r} needs its prefix length (/{iface.max_prefixlen} for one host)")
            addrs.append((port, text))
        kw: dict = {"addresses": tuple(addrs)}
        for key, ver in (("gateway4", 4), ("gateway6", 6)):
            if key in m:
                text = self.text(m[key][1], f"endhost.{key}")
                try:
                    ok = ipaddress.ip_address(text).version == ver
                except ValueError:
                    ok = False
                if not ok:
                    self.fail(m[key][1], f"endhost.{key}", f"{text!r} is not an IPv{ver} address")
                kw[key] = text
        if "max_conns" in m:
            kw["max_conns"] = self.integer(m["max_conns"][1], "endhost.max_conns", 16, 1 << 22)
        if "syncookies" in m:
            kw["syncookies"] = self.integer(m["syncookies"][1], "endhost.syncookies", 0, 2)
        if "tcp" in m:
            t = self.mapping(m["tcp"][1], "endhost.tcp", tuple(_ENDHOST_TCP))
            kw["tcp"] = {k: self.integer(v[1], f"endhost.tcp.{k}", *_ENDHOST_TCP[k])
                         for k, v in t.items()}
        if "serve" in m:
            sv = self.mapping(m["serve"][1], "endhost.serve", ("root", "port"))
            if "root" not in sv:
                self.fail(m["serve"][1], "endhost.serve", "root is required (a directory)")
            kw["serve_root"] = self.text(sv["root"][1], "endhost.serve.root")
            if "port" in sv:
                kw["serve_port"] = self.integer(sv["port"][1], "endhost.serve.port", 1, 65535)
        return EndhostSpec(**kw)

    def ports(self, node: Node) -> tuple[list, list]:
        items = self.seq(node, "ports")
        if not items:
            self.fail(node, "ports", "needs at least one port")
        ports: list[PortSpec] = []
        seen: dict = {}  # (key, value) -> index, for name, iface, port_id
        for i, item in enumerate(items):
            path = f"ports[{i}]"
            self.mark(item, path)
            m = self.mapping(item, path, _PORT)
            for key in ("name", "driver"):
                if key not in m:
                    self.fail(item, path, f"{key} is required")
            name = self.text(m["name"][1], f"{path}.name")
            if not _NAME_RE.match(name):
                self.fail(m["name"][1], f"{path}.name",
                          f"{name!r} may only contain letters, digits, '_' and '-'")
            driver = self.choice(m["driver"][1], f"{path}.driver", DRIVERS)
            need = _NEEDS[driver]
            if need not in m:
                self.fail(item, path, f"driver {driver} needs {need}")
            for key, only in _ONLY.items():
                if key in m and only != driver:
                    self.fail(m[key][0], f"{path}.{key}",
                              f"only applies to driver {only}, not {driver}")
            kw: dict = {"name": name, "driver": driver}
            if "iface" in m:
                kw["iface"] = self.text(m["iface"][1], f"{path}.iface")
                iface = kw["iface"]
                if len(iface) > 15 or "/" in iface or iface.strip() != iface:  # IFNAMSIZ 16
                    self.fail(m["iface"][1], f"{path}.iface",
                              f"{iface!r} is not a Linux interface name")
            if "port_id" in m:
                kw["port_id"] = self.integer(m["port_id"][1], f"{path}.port_id", 0, 65535)
            if "path" in m:
                kw["path"] = self.file_path(m["path"][1], f"{path}.path")
            if "rx_ring_mb" in m:
                kw["rx_ring_mb"] = self.integer(m["rx_ring_mb"][1], f"{path}.rx_ring_mb", 1, 1024)
            if "burst" in m:
                kw["burst"] = self.integer(m["burst"][1], f"{path}.burst", 1, 1024)
            if "options" in m:
                kw["options"] = self.options(m["options"][1], f"{path}.options")
            for key in ("name", "iface", "port_id"):
                if key in kw:
                    was = seen.setdefault((key, kw[key]), i)
                    if was != i:
                        self.fail(m[key][1], f"{path}.{key}", f"{kw[key]!r} is already used by "
                                                              f"ports[{was}]")
            ports.append(PortSpec(**kw))
        return ports, items

    def options(self, node: Node, path: str) -> dict:
        if not isinstance(node, MappingNode):
            self.fail(node, path, f"expected a mapping, got {_kind(node)}")
        out: dict = {}
        for knode, vnode in node.value:
            if not isinstance(knode, ScalarNode):
                self.fail(knode, path, f"a key must be a plain word, got {_kind(knode)}")
            key = knode.value
            if key in out:
                self.fail(knode, _join(path, key), "duplicate key")
            out[key] = self.value(vnode, _join(path, key))
            self.mark(knode, _join(path, key))
        return out

    def forward(self, entry, mode: str, ports: list, port_nodes: list,
                root: Node, endhost_port: str | None = None) -> tuple:
        names = [p.name for p in ports]
        if entry is None:
            pairs_nodes: list = []
            where: Node = root
        else:
            where = entry[1]
            pairs_nodes = [] if (isinstance(where, ScalarNode) and where.tag == _TAG + "null") \
                else self.seq(where, "forward")
        if mode in ("passive", "endhost"):
            if pairs_nodes:
                self.fail(entry[0], "forward", f"{mode} mode forwards nothing (remove forward "
                                               f"or use mode: inline)")
            return ()
        if not pairs_nodes:
            if len(names) < 2:
                self.fail(where, "forward", f"inline mode needs a pair of ports, and there is "
                                            f"only {names[0]!r} (use mode: passive to only watch)")
            self.fail(where, "forward", "inline mode needs at least one pair of ports, "
                                        "e.g. forward: [[" + ", ".join(names[:2]) + "]]")
        used: dict = {}
        out = []
        for i, pn in enumerate(pairs_nodes):
            path = f"forward[{i}]"
            pair = self.seq(pn, path)
            if len(pair) != 2:
                self.fail(pn, path, f"expected a pair [a, b] of port names, got {len(pair)} "
                                    f"item{'s' * (len(pair) != 1)}")
            got = []
            for j, nn in enumerate(pair):
                p = f"{path}[{j}]"
                n = self.text(nn, p)
                if n not in names:
                    hint = difflib.get_close_matches(n, names, n=1)
                    why = f"{n!r} is not a port name" + \
                        (f" (did you mean {hint[0]!r}?)" if hint else
                         " (ports: " + ", ".join(names) + ")")
                    self.fail(nn, p, why)
                if n in got:
                    self.fail(nn, p, f"a port cannot forward to itself ({n!r})")
                if n in used:
                    self.fail(nn, p, f"port {n!r} is already in forward[{used[n]}]")
                used[n] = i
                got.append(n)
            out.append((got[0], got[1]))
        for p, pnode in zip(ports, port_nodes):
            if p.name not in used and p.name != endhost_port:
                self.fail(pnode, f"ports[{names.index(p.name)}]",
                          f"port {p.name!r} is in no forward pair (in inline mode each port "
                          f"forwards to its peer; use mode: passive to only watch)")
        return tuple(out)

    def dpdk(self, entry, ports: list, port_nodes: list) -> DpdkSpec | None:
        users = [i for i, p in enumerate(ports) if p.driver == "dpdk"]
        if entry is None:
            if users:
                i = users[0]
                self.fail(port_nodes[i], "dpdk", f"required: ports[{i}] ({ports[i].name}) uses "
                                                 f"driver dpdk; add dpdk: {{eal_args: [...]}}")
            return None
        knode, vnode = entry
        if not users:
            self.fail(knode, "dpdk", "given but no port uses driver dpdk")
        m = self.mapping(vnode, "dpdk", ("eal_args", "idle_sleep"))
        args: list[str] = []
        if "eal_args" in m:
            for i, an in enumerate(self.seq(m["eal_args"][1], "dpdk.eal_args")):
                args.append(self.text(an, f"dpdk.eal_args[{i}]"))
                self.mark(an, f"dpdk.eal_args[{i}]")
        idle = self.integer(m["idle_sleep"][1], "dpdk.idle_sleep", 0, 10000) \
            if "idle_sleep" in m else 0
        return DpdkSpec(eal_args=tuple(args), idle_sleep=idle)

    def monitor(self, node: Node) -> Config:
        m = self.mapping(node, "monitor", _MONITOR)
        values = {}
        for key, (_k, vnode) in m.items():
            path = f"monitor.{key}"
            v = self.value(vnode, path)
            try:
                Config(**{key: v})
            except ConfigError as exc:
                self.fail(vnode, path, _strip_key(str(exc), key))
            values[key] = v
        try:
            return Config(**values)
        except ConfigError as exc:  # a rule across keys: point at the key it names
            msg = str(exc)
            key = msg.split(":", 1)[0]
            at = m[key][1] if key in m else node
            self.fail(at, f"monitor.{key}" if key in m else "monitor", _strip_key(msg, key))

    def app(self, node: Node) -> str:
        v = self.text(node, "app")
        if v.endswith(".py") or "/" in v:
            return self.file_path(node, "app")
        if not _MODULE_RE.match(v):
            self.fail(node, "app", f"{v!r} is neither a module name nor a .py file")
        return v


def _strip_key(msg: str, key: str) -> str:
    return msg[len(key) + 2:] if msg.startswith(key + ": ") else msg


def _kind(node: Node | None) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    if isinstance(node, ScalarNode):
        if node.tag == _TAG + "null":
            return "nothing"
        return repr(node.value)
    return "nothing"
