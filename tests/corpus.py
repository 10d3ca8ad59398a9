"""Helpers for the corpus tests: where the corpus is, how to run `mos streams`,
tshark and the Python API over a capture, and what a capture holds (dpkt).

The corpus (captures from public test suites, beside their upstream
expectations) lives outside the repository: CI clones the repo next to a
copy of ``shared/``, so it is ``<repo>/../shared/corpus``.  Tests skip with
a clear reason when it is missing.

Addresses are normalised to ``(ipaddress, port)`` pairs everywhere, so
"[::1]:8000" from mos, "[::1]:8000" from tshark and file names written by
``--write-dir`` compare equal whatever their spelling.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import ipaddress
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import dpkt
import pytest

import mos
import mos.cli

REPO = Path(__file__).resolve().parents[1]
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
MISSING = f"corpus not found at {CORPUS} (CI puts a copy of shared/ next to the repository)"


def corpus_path(rel: str) -> Path:
    """Absolute path of a corpus file; skips the test when the corpus or the file is absent."""
    if not CORPUS.is_dir():
        pytest.skip(MISSING)
    p = CORPUS / rel
    if not p.exists():
        pytest.skip(f"{rel} is not in the corpus at {CORPUS}")
    return p


def corpus_captures() -> list[str]:
    """Every capture in the corpus, relative to it (empty when the corpus is absent)."""
    if not CORPUS.is_dir():
        return []
    return sorted(str(p.relative_to(CORPUS)) for p in CORPUS.rglob("*")
                  if p.suffix in (".pcap", ".pcapng", ".cap") and p.is_file())


# ---------------------------------------------------------------- addresses

Addr = tuple  # (ipaddress.IPv4Address | IPv6Address, int)


def addr(text: str) -> Addr:
    """'1.2.3.4:80' or '[::1]:80' -> (ip_address, port)."""
    host, port = text.rsplit(":", 1)
    return ipaddress.ip_address(host.strip("[]")), int(port)


def addr_text(a: Addr) -> str:
    ip, port = a
    return f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"


def _file_addr(part: str) -> Addr:
    """One half of a --write-dir file name (tcpflow style: 010.000.000.001.00080)."""
    host, port = part.rsplit(".", 1)
    if len(host) == 32 and "." not in host:
        ip = ipaddress.IPv6Address(int(host, 16))
    else:
        ip = ipaddress.IPv4Address(".".join(str(int(o)) for o in host.split(".")))
    return ip, int(port)


# ---------------------------------------------------------------- mos streams (CLI)

@dataclass
class Direction:
    """One JSON line of `mos streams` plus the bytes --write-dir wrote for it."""
    client: Addr
    server: Addr
    direction: str            # "c2s" | "s2c"
    nbytes: int
    sha256: str
    gaps: list
    client_state: str
    server_state: str
    data: bytes = b""

    @property
    def src(self) -> Addr:
        return self.client if self.direction == "c2s" else self.server

    @property
    def dst(self) -> Addr:
        return self.server if self.direction == "c2s" else self.client


@dataclass
class StreamsRun:
    args: tuple
    returncode: int
    stderr: str
    directions: list

    def by_pair(self) -> dict:
        """(src, dst) -> Direction."""
        return {(d.src, d.dst): d for d in self.directions}

    def flows(self) -> set:
        return {(d.client, d.server) for d in self.directions}


_cli_lock = threading.Lock()


def mos_streams(path, *args, subprocess_: bool = False) -> StreamsRun:
    """Run ``mos streams PATH ARGS --write-dir TMP`` and read both outputs.

    By default the command runs in this process (``mos.cli.main``, output
    captured; one run at a time), which spares a Python start per capture;
    ``subprocess_=True`` runs ``python -m mos`` as a user would."""
    tmp = tempfile.mkdtemp(prefix="mos-corpus-")
    try:
        argv = ["streams", str(path), *args, "--write-dir", tmp]
        if subprocess_:
            env = dict(os.environ)
            env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
            cp = subprocess.run([sys.executable, "-m", "mos", *argv], capture_output=True,
                                text=True, env=env, timeout=120)
        else:
            out, err = io.StringIO(), io.StringIO()
            with _cli_lock, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                rc = mos.cli.main(argv)
            cp = subprocess.CompletedProcess(argv, rc, out.getvalue(), err.getvalue())
        files = {}
        for name in os.listdir(tmp):
            a, b = name.split("-")
            with open(os.path.join(tmp, name), "rb") as fh:
                files[(_file_addr(a), _file_addr(b))] = fh.read()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    dirs = []
    for line in cp.stdout.splitlines():
        r = json.loads(line)
        d = Direction(addr(r["client"]), addr(r["server"]), r["direction"], r["bytes"],
                      r["sha256"], [tuple(g) for g in r["gaps"]], r["client_state"],
                      r["server_state"])
        d.data = files.pop((d.src, d.dst), b"")
        dirs.append(d)
    assert not files, f"--write-dir wrote files for no reported direction: {sorted(files)}"
    return StreamsRun(tuple(args), cp.returncode, cp.stderr, dirs)


# ---------------------------------------------------------------- tshark

@dataclass
class TsharkStream:
    """One tshark TCP stream: nodes numbered by who sent first, bytes per direction."""
    index: int
    node0: Addr
    node1: Addr
    n0to1: bytes
    n1to0: bytes

    def data(self, src: Addr) -> bytes:
        return self.n0to1 if src == self.node0 else self.n1to0


def tshark_bin() -> Optional[str]:
    return shutil.which("tshark")


def tshark_version() -> str:
    out = subprocess.run([tshark_bin(), "--version"], capture_output=True, text=True).stdout
    m = re.search(r"TShark \(Wireshark\) (\d+\.\d+\.\d+)", out)
    return m.group(1) if m else ""


def parse_follow(text: str) -> dict:
    """Parse `tshark -q -z follow,tcp,raw,N` output (several blocks) -> {N: TsharkStream}.

    Raw mode writes one hex line per segment; lines of node 1 -> node 0
    start with a tab.  A stream number tshark does not have shows nodes
    ':0' and is left out."""
    streams = {}
    for block in text.split("=" * 67):
        m = re.search(r"Filter: tcp\.stream eq (\d+)\nNode 0: (.*)\nNode 1: (.*)\n", block)
        if not m:
            continue
        if m.group(2).strip() == ":0":
            continue
        body = block[m.end():]
        a, b = bytearray(), bytearray()
        for line in body.split("\n"):
            if not line.strip():
                continue
            (b if line.startswith("\t") else a).extend(bytes.fromhex(line.strip()))
        i = int(m.group(1))
        streams[i] = TsharkStream(i, addr(m.group(2)), addr(m.group(3)), bytes(a), bytes(b))
    return streams


def tshark_follow(path, first: int = 0, count: int = 16) -> dict:
    """Every TCP stream of a capture as tshark follows it (raw), one tshark run
    per `count` streams.  Name resolution is off; tshark's defaults otherwise
    (checksums not verified, IP fragments reassembled, first-seen bytes kept)."""
    zs = []
    for i in range(first, first + count):
        zs += ["-z", f"follow,tcp,raw,{i}"]
    cp = subprocess.run([tshark_bin(), "-n", "-r", str(path), "-q", *zs],
                        capture_output=True, text=True, timeout=120)
    if cp.returncode != 0:
        raise RuntimeError(f"tshark failed on {path}: {cp.stderr.strip()}")
    streams = parse_follow(cp.stdout)
    if first + count - 1 in streams:  # there may be more
        streams.update(tshark_follow(path, first + count, count))
    return streams


@dataclass
class RefDirection:
    """One line of corpus/tshark-follow/*.txt (tshark 4.0, precomputed)."""
    index: int
    src: Addr
    dst: Addr
    which: str       # n0to1 | n1to0
    nbytes: int
    md5: str


def tshark_reference_path(rel: str) -> Path:
    """Where the precomputed tshark output for a capture is (it may not exist)."""
    name = rel.replace("/", "_") + ".txt"
    p = CORPUS / "tshark-follow" / name
    if not p.exists():
        p = CORPUS / "tshark-follow" / REFERENCE_ALIASES.get(rel, name)
    return p


def has_tshark_reference(rel: str) -> bool:
    """Whether corpus/tshark-follow holds output for the capture (the README
    says which do not: the suricata-verify-app/ captures)."""
    return tshark_reference_path(rel).exists()


def tshark_reference(rel: str) -> list:
    """The precomputed tshark lines for a capture (file named after its corpus path)."""
    p = tshark_reference_path(rel)
    if not p.exists():
        pytest.fail(f"no precomputed tshark output for {rel} in {p.parent}")
    out = []
    pat = re.compile(r"stream (\d+): (\S+) -> (\S+) (n0to1|n1to0) (\d+) bytes md5=([0-9a-f]{32})")
    for line in p.read_text().splitlines():
        m = pat.fullmatch(line.strip())
        assert m, f"{p.name}: unexpected line {line!r}"
        out.append(RefDirection(int(m.group(1)), addr(m.group(2)), addr(m.group(3)), m.group(4),
                                int(m.group(5)), m.group(6)))
    return out


#: precomputed files whose name does not follow the corpus path: peafowl's
#: capture was stored upstream as tcp_resegment_http.pcap (same 11 frames:
#: 909 bytes to the server, 2366 to the client)
REFERENCE_ALIASES = {"peafowl/http.pcap": "peafowl_tcp_resegment_http.pcap.txt"}


# ---------------------------------------------------------------- capture contents (dpkt)

def read_frames(path) -> tuple:
    """(linktype, [(ts, frame bytes), ...])."""
    with open(path, "rb") as fh:
        r = dpkt.pcap.Reader(fh)
        return r.datalink(), [(ts, bytes(buf)) for ts, buf in r]


def write_pcap(path, linktype: int, frames) -> None:
    with open(path, "wb") as fh:
        w = dpkt.pcap.Writer(fh, linktype=linktype)
        for ts, buf in frames:
            w.writepkt(buf, ts)


def ip_layer(linktype: int, frame: bytes):
    """The IPv4/IPv6 layer of a frame (through VLAN, QinQ, MPLS, PPPoE), or None."""
    if linktype == 1:
        d = dpkt.ethernet.Ethernet(frame)
    elif linktype == 0:
        d = dpkt.loopback.Loopback(frame)
    elif linktype in (12, 14, 101, 228, 229):
        d = dpkt.ip.IP(frame) if frame[0] >> 4 == 4 else dpkt.ip6.IP6(frame)
    else:
        raise ValueError(f"link type {linktype} not handled by the test helper")
    for _ in range(6):
        if isinstance(d, (dpkt.ip.IP, dpkt.ip6.IP6)):
            return d
        d = getattr(d, "data", None)
        if not isinstance(d, dpkt.Packet):
            return None
    return None


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


@dataclass
class Segment:
    """A TCP segment of the capture, as the wire shows it (unfragmented datagrams only)."""
    frame_no: int      # 1-based, as tshark and Wireshark number frames
    src: Addr
    dst: Addr
    flags: int
    seq: int
    payload: bytes
    checksum_ok: bool
    frame_len: int


def segments(path) -> list:
    """Every TCP segment carried whole in one frame (IP fragments are skipped)."""
    lt, frames = read_frames(path)
    out = []
    for i, (_ts, buf) in enumerate(frames, 1):
        ip = ip_layer(lt, buf)
        if ip is None:
            continue
        if isinstance(ip, dpkt.ip.IP):
            if ip.p != 6 or ip.mf or ip.offset:
                continue
            raw = bytes(ip)[ip.hl * 4:ip.len]
            pseudo = ip.src + ip.dst + struct.pack("!BBH", 0, 6, len(raw))
            src, dst = ipaddress.IPv4Address(ip.src), ipaddress.IPv4Address(ip.dst)
        else:
            if ip.nxt != 6 or not isinstance(ip.data, dpkt.tcp.TCP):
                continue
            raw = bytes(ip.data)
            pseudo = ip.src + ip.dst + struct.pack("!IxxxB", len(raw), 6)
            src, dst = ipaddress.IPv6Address(ip.src), ipaddress.IPv6Address(ip.dst)
        tcp = dpkt.tcp.TCP(raw)
        ok = _csum(pseudo + raw) == 0xFFFF
        out.append(Segment(i, (src, tcp.sport), (dst, tcp.dport), tcp.flags, tcp.seq,
                           bytes(tcp.data), ok, len(buf)))
    return out


# ---------------------------------------------------------------- the Python API, traced

@dataclass
class FlowLog:
    """Everything a tracing monitor saw of one flow."""
    client: str
    server: str
    data: dict = field(default_factory=lambda: {mos.Side.CLIENT: bytearray(),
                                                mos.Side.SERVER: bytearray()})
    new_data: list = field(default_factory=list)   # (frame_no, side, bytes) in event order
    states: list = field(default_factory=list)     # (frame_no, side, old, new)
    rexmit: list = field(default_factory=list)     # (frame_no, side, offset, length)
    errors: list = field(default_factory=list)     # (frame_no, side, reason, a, b)
    packets: list = field(default_factory=list)    # (frame_no, sender side, flag_names, payload, frame_len, ip_len)
    starts: int = 0
    final: dict = field(default_factory=dict)      # at CONN_END: states, reason, counters, gaps
    held: dict = field(default_factory=dict)       # at CONN_END: ppeek(side, 0, ...) per side

    @property
    def c2s(self) -> bytes:
        return bytes(self.data[mos.Side.SERVER])

    @property
    def s2c(self) -> bytes:
        return bytes(self.data[mos.Side.CLIENT])


@dataclass
class Trace:
    flows: dict           # (client_addr, server_addr) text -> FlowLog
    counters: dict
    orphans: list         # frame numbers of ORPHAN events

    def flow(self, client: str, server: str) -> FlowLog:
        assert (client, server) in self.flows, \
            f"no flow {client} -> {server}; mos tracked {sorted(self.flows)}"
        return self.flows[client, server]


def trace(path, *, per_frame: bool = True, frames=None, **config) -> Trace:
    """Run the engine over a capture with a monitor that records every event.

    ``per_frame`` feeds one frame per burst (``Engine.feed``), so CONN_NEW_DATA
    fires per packet and frame numbers are known; otherwise ``Engine.run``
    processes the file in bursts (frame numbers are then None)."""
    config.setdefault("buffer_size", 1 << 20)
    # keep what was read, so the bytes still held at the end can be compared too
    config.setdefault("keep_read", True)
    eng = mos.Engine(mos.Config(**config))
    mon = eng.attach(mos.Monitor(name="corpus-trace"))
    flows: dict = {}
    orphans: list = []
    cur = [None]

    logs: dict = {}  # flow id -> FlowLog

    def log(flow) -> FlowLog:
        lg = logs.get(flow.id)
        if lg is None:
            lg = logs[flow.id] = FlowLog(flow.client_addr, flow.server_addr)
            key = (flow.client_addr, flow.server_addr)
            n = 1
            while key in flows:  # the same 4-tuple again (port reuse): number it
                n += 1
                key = (flow.client_addr, f"{flow.server_addr}#{n}")
            flows[key] = lg
        return lg

    def drain(flow, side, lg):
        while True:
            d = flow.peek(side)
            if not d:
                return
            lg.data[side] += d
            lg.new_data.append((cur[0], side, d))

    def on_start(flow, side, ev):
        log(flow).starts += 1

    def on_pkt(flow, side, ev):
        p = flow.packet
        ip = p.ip_header
        ip_len = int.from_bytes(ip[2:4], "big") if p.ipver == 4 else 40 + int.from_bytes(ip[4:6], "big")
        log(flow).packets.append((cur[0], side, p.flag_names, p.payload, len(p.frame), ip_len))

    def on_state(flow, side, ev):
        i = flow.event_info
        log(flow).states.append((cur[0], side, i.old, i.new))

    def on_rexmit(flow, side, ev):
        i = flow.event_info
        log(flow).rexmit.append((cur[0], side, i.offset, i.length))

    def on_error(flow, side, ev):
        i = flow.event_info
        log(flow).errors.append((cur[0], side, i.reason, i.a, i.b))

    def on_data(flow, side, ev):
        drain(flow, side, log(flow))

    def on_end(flow, side, ev):
        lg = log(flow)
        for s in (mos.Side.CLIENT, mos.Side.SERVER):
            drain(flow, s, lg)
            lg.held[s] = flow.ppeek(s, 0, 1 << 24)
        lg.final = {
            "client_state": flow.client.state, "server_state": flow.server.state,
            "reason": flow.event_info.reason,
            "client_packets": flow.client.packets, "server_packets": flow.server.packets,
            "client_bytes": flow.client.bytes, "server_bytes": flow.server.bytes,
            "gaps": {s: list(flow.gaps(s)) for s in (mos.Side.CLIENT, mos.Side.SERVER)},
            "midstream": flow.midstream,
        }

    mon.on(mos.Event.CONN_START, on_start)
    mon.on(mos.Event.PKT_IN, on_pkt, hook=mos.Hook.SEND)
    mon.on(mos.Event.TCP_STATE_CHANGE, on_state)
    mon.on(mos.Event.REXMIT, on_rexmit)
    mon.on(mos.Event.ERROR, on_error)
    mon.on(mos.Event.CONN_NEW_DATA, on_data)
    mon.on(mos.Event.CONN_END, on_end, side=mos.Side.CLIENT)
    mon.on(mos.Event.ORPHAN, lambda flow, side, ev: orphans.append(cur[0]))
    if per_frame or frames is not None:
        lt, all_frames = read_frames(path)
        for i, (ts, buf) in enumerate(all_frames if frames is None else frames, 1):
            cur[0] = i
            eng.feed(buf, ts, lt)
        cur[0] = None
        eng.close()
    else:
        eng.run(str(path))
    return Trace(flows, eng.counters(), orphans)


def sha256(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def md5(b: bytes) -> str:
    return hashlib.md5(b).hexdigest()
