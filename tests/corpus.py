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

import base64
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


# ---------------------------------------------------------------- application bytes (suricata-verify-app)
#
# Just enough HTTP/1.x and TLS parsing to find, in a reassembled stream, the
# bytes an upstream rule or EVE record is about.  These parsers read what the
# engine delivered; they never decide what a stream holds.

@dataclass
class HttpMessage:
    """One HTTP/1.x message cut from a stream: start line, header lines, raw body."""
    start: bytes
    headers: list      # [(name, value)] as sent (name case kept, value stripped)
    head: bytes        # start line and header lines, up to the blank line
    body: bytes        # as on the wire (chunked framing kept)

    def header(self, name: bytes) -> list:
        return [v for n, v in self.headers if n.lower() == name.lower()]


def _split_head(data: bytes, pos: int):
    """The head starting at pos (CRLF or bare LF line ends) -> (head, end of blank line) or None."""
    m = re.compile(rb"\r?\n\r?\n").search(data, pos)
    return (data[pos:m.start()], m.end()) if m else None


def dechunk(body: bytes) -> tuple:
    """RFC 9112 7.1 chunked coding -> (data, bytes consumed); trailer fields skipped."""
    out, pos = bytearray(), 0
    while True:
        eol = body.index(b"\n", pos)
        size = int(body[pos:eol].split(b";")[0].strip(), 16)
        pos = eol + 1
        if size == 0:
            if body[pos:pos + 1] in (b"\r", b"\n"):   # no trailer section (7.1.2)
                return bytes(out), body.index(b"\n", pos) + 1
            cut = _split_head(body, pos)
            return bytes(out), cut[1] if cut else len(body)
        out += body[pos:pos + size]
        pos = body.index(b"\n", pos + size) + 1


def http_messages(data: bytes, *, response: bool) -> list:
    """Every message of one direction, in order.  A body is delimited by
    Transfer-Encoding: chunked, then Content-Length (the last value, spaces
    allowed), else it runs to the end for a response and is empty for a request
    (RFC 9112 6.3).  A head without its blank line ends the list unterminated."""
    out, pos = [], 0
    while pos < len(data):
        cut = _split_head(data, pos)
        if cut is None:
            head, end = data[pos:], len(data)
        else:
            head, end = cut
        start, *lines = re.split(rb"\r?\n", head)
        headers = [(ln.split(b":", 1)[0], ln.split(b":", 1)[1].strip()) for ln in lines if b":" in ln]
        msg = HttpMessage(start, headers, head, b"")
        out.append(msg)
        if cut is None:
            break
        te = b",".join(msg.header(b"Transfer-Encoding")).lower()
        cl = msg.header(b"Content-Length")
        if b"chunked" in te:  # overrides Content-Length (RFC 9112 6.3)
            msg.body = data[end:end + dechunk(data[end:])[1]] if end < len(data) else b""
        elif cl:
            msg.body = data[end:end + int(cl[-1])]
        elif response:
            msg.body = data[end:]
        pos = end + len(msg.body)
    return out


def strip_whitespace(b: bytes) -> bytes:
    """Suricata's strip_whitespace transform: every space, tab and line end removed."""
    return re.sub(rb"\s", b"", b)


def remove_dot_segments(path: str) -> str:
    """RFC 3986 5.2.4, as Suricata normalises http.uri."""
    out = []
    for seg in path.split("/")[1:]:
        if seg == "..":
            if out:
                out.pop()
        elif seg != ".":
            out.append(seg)
    return "/" + "/".join(out)


def tls_records(data: bytes) -> list:
    """(content type, version, fragment) of every whole record (RFC 8446 5.1);
    an SSLv2-format record (high bit set in its first byte) is type 'v2'."""
    out, pos = [], 0
    while pos + 5 <= len(data):
        if data[pos] & 0x80 and not out:  # SSLv2 CLIENT-HELLO framing (RFC 6101 E.1)
            n = ((data[pos] & 0x7F) << 8) | data[pos + 1]
            out.append(("v2", None, data[pos + 2:pos + 2 + n]))
            pos += 2 + n
            continue
        ctype, version, n = data[pos], int.from_bytes(data[pos + 1:pos + 3], "big"), \
            int.from_bytes(data[pos + 3:pos + 5], "big")
        if pos + 5 + n > len(data):
            break
        out.append((ctype, version, data[pos + 5:pos + 5 + n]))
        pos += 5 + n
    return out


def tls_handshake(data: bytes) -> list:
    """(msg_type, body) of the clear-text handshake messages: handshake records
    up to the first ChangeCipherSpec (after it they are encrypted), joined,
    then split (RFC 8446 4)."""
    buf = bytearray()
    for ctype, _v, frag in tls_records(data):
        if ctype == 20:
            break
        if ctype == 22:
            buf += frag
    out, pos = [], 0
    while pos + 4 <= len(buf):
        n = int.from_bytes(buf[pos + 1:pos + 4], "big")
        out.append((buf[pos], bytes(buf[pos + 4:pos + 4 + n])))
        pos += 4 + n
    return out


@dataclass
class Hello:
    """A ClientHello or ServerHello (RFC 8446 4.1.2, 4.1.3)."""
    version: int
    ciphers: list
    extensions: list   # [(type, data)] in order

    def ext(self, t: int) -> Optional[bytes]:
        return next((d for et, d in self.extensions if et == t), None)

    @property
    def sni(self) -> Optional[str]:
        d = self.ext(0)  # RFC 6066 3: server_name_list, first host_name
        return d[5:5 + int.from_bytes(d[3:5], "big")].decode() if d else None


def _u16s(b: bytes) -> list:
    return [int.from_bytes(b[i:i + 2], "big") for i in range(0, len(b), 2)]


def _extensions(b: bytes, pos: int) -> list:
    out = []
    if pos + 2 > len(b):
        return out
    end = pos + 2 + int.from_bytes(b[pos:pos + 2], "big")
    pos += 2
    while pos < end:
        t, n = int.from_bytes(b[pos:pos + 2], "big"), int.from_bytes(b[pos + 2:pos + 4], "big")
        out.append((t, b[pos + 4:pos + 4 + n]))
        pos += 4 + n
    return out


def client_hello(body: bytes) -> Hello:
    pos = 2 + 32
    pos += 1 + body[pos]                                        # session id
    n = int.from_bytes(body[pos:pos + 2], "big")
    ciphers = _u16s(body[pos + 2:pos + 2 + n])
    pos += 2 + n
    pos += 1 + body[pos]                                        # compression methods
    return Hello(int.from_bytes(body[:2], "big"), ciphers, _extensions(body, pos))


def server_hello(body: bytes) -> Hello:
    pos = 2 + 32
    pos += 1 + body[pos]
    cipher = int.from_bytes(body[pos:pos + 2], "big")
    return Hello(int.from_bytes(body[:2], "big"), [cipher], _extensions(body, pos + 3))


def _grease(v: int) -> bool:
    return v & 0x0F0F == 0x0A0A and v >> 8 == v & 0xFF  # RFC 8701 2


def ja3_string(ch: Hello) -> str:
    """JA3 (Salesforce): version, ciphers, extensions, groups, point formats; GREASE left out."""
    groups = ch.ext(10)
    pf = ch.ext(11)
    parts = [[ch.version], ch.ciphers, [t for t, _d in ch.extensions],
             _u16s(groups[2:]) if groups else [], list(pf[1:]) if pf else []]
    return ",".join("-".join(str(v) for v in p if not _grease(v)) for p in parts)


def ja3s_string(sh: Hello) -> str:
    return f"{sh.version},{sh.ciphers[0]}," + "-".join(str(t) for t, _d in sh.extensions)


def certificates(body: bytes) -> list:
    """DER certificates of a TLS 1.0-1.2 Certificate message (RFC 5246 7.4.2);
    TLS 1.3 sends it encrypted."""
    end = 3 + int.from_bytes(body[:3], "big")
    pos, out = 3, []
    while pos < end:
        n = int.from_bytes(body[pos:pos + 3], "big")
        out.append(body[pos + 3:pos + 3 + n])
        pos += 3 + n
    return out


def _der(b: bytes, pos: int) -> tuple:
    """(tag, content, next pos) of the DER element at pos (X.690 8.1)."""
    tag, n = b[pos], b[pos + 1]
    pos += 2
    if n & 0x80:
        k = n & 0x7F
        n = int.from_bytes(b[pos:pos + k], "big")
        pos += k
    return tag, b[pos:pos + n], pos + n


def _der_seq(b: bytes) -> list:
    out, pos = [], 0
    while pos < len(b):
        tag, content, pos = _der(b, pos)
        out.append((tag, content))
    return out


_DN = {"550406": "C", "550408": "ST", "550407": "L", "55040a": "O", "55040b": "OU",
       "550403": "CN", "2a864886f70d010901": "Email"}


def dn_text(name: bytes) -> str:
    """An X.501 Name as Suricata writes it ('C=US, O=..., CN=...')."""
    parts = []
    for _t, rdn in _der_seq(name):
        for _t2, atv in _der_seq(rdn):
            (_o, oid), (_v, value) = _der_seq(atv)
            parts.append(f"{_DN.get(oid.hex(), oid.hex())}={value.decode('latin-1')}")
    return ", ".join(parts)


def _der_time(tag: int, v: bytes) -> str:
    s = v.decode()
    if tag == 0x17:  # UTCTime, RFC 5280 4.1.2.5.1
        s = ("19" if int(s[:2]) >= 50 else "20") + s
    return f"{s[0:4]}-{s[4:6]}-{s[6:8]}T{s[8:10]}:{s[10:12]}:{s[12:14]}"


@dataclass
class Cert:
    der: bytes
    serial: str        # upper-case hex, colon-separated (Suricata's tls.serial)
    issuer: str
    subject: str
    not_before: str
    not_after: str
    issuer_der: bytes
    subject_der: bytes

    @property
    def fingerprint(self) -> str:
        """SHA-1 of the DER bytes, lower-case hex with colons (tls.fingerprint)."""
        return ":".join(f"{x:02x}" for x in hashlib.sha1(self.der).digest())


def parse_cert(der: bytes) -> Cert:
    """The fields of an X.509 certificate EVE reports (RFC 5280 4.1)."""
    _t, cert, _p = _der(der, 0)
    _t, tbs, _p = _der(cert, 0)
    fields = _der_seq(tbs)
    if fields[0][0] == 0xA0:      # explicit version
        fields = fields[1:]
    serial, _sig, issuer, validity, subject = [c for _t, c in fields[:5]]
    (t1, nb), (t2, na) = _der_seq(validity)
    return Cert(der, ":".join(f"{x:02X}" for x in serial), dn_text(issuer), dn_text(subject),
                _der_time(t1, nb), _der_time(t2, na), issuer, subject)


def community_id(seed: int, a: Addr, b: Addr, proto: int = 6) -> str:
    """Community ID v1 of a flow (corelight/community-id-spec): the smaller
    endpoint first, SHA-1 over seed, addresses, protocol, pad, ports."""
    (ia, pa), (ib, pb) = a, b
    if (ia.packed, pa) > (ib.packed, pb):
        (ia, pa), (ib, pb) = (ib, pb), (ia, pa)
    h = hashlib.sha1(struct.pack("!H", seed) + ia.packed + ib.packed + struct.pack("!BBHH", proto, 0, pa, pb))
    return "1:" + base64.b64encode(h.digest()).decode()
