"""Build TCP conversations as Ethernet frames (with _netpkt), and drive an engine.

``Conv`` keeps each side's next sequence number so tests read like the
packet trace they describe::

    c = Conv()
    c.handshake()
    c.send("c", b"GET / HTTP/1.0\\r\\n\\r\\n")
    c.ack("s")
    c.fin("c"); c.ack("s"); c.fin("s"); c.ack("c")
    events = run_frames(c.frames, monitor_all_events())
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import _netpkt as N
import dpkt

import mos

CLIENT_IP = "198.18.0.1"
SERVER_IP = "198.18.0.2"
CLIENT6 = "2001:db8::1"
SERVER6 = "2001:db8::2"

F = dpkt.tcp  # flag names
MAC_SRC = bytes.fromhex("020000000001")
MAC_DST = bytes.fromhex("020000000002")


@dataclass
class End:
    ip: str
    port: int
    isn: int
    nxt: int = 0      # next sequence number to send
    rcv: int = 0      # next expected from the peer (what we ACK)
    win: int = 65535
    opts: bytes = b""


@dataclass
class Conv:
    client: tuple = (CLIENT_IP, 40000)
    server: tuple = (SERVER_IP, 80)
    cisn: int = 1000
    sisn: int = 5000
    ts: float = 1.0
    step: float = 0.001
    frames: list = field(default_factory=list)   # (ts, bytes)
    wscale: bool = False

    def __post_init__(self):
        self.c = End(self.client[0], self.client[1], self.cisn, self.cisn, 0)
        self.s = End(self.server[0], self.server[1], self.sisn, self.sisn, 0)

    def end(self, who: str) -> tuple[End, End]:
        return (self.c, self.s) if who == "c" else (self.s, self.c)

    def packet(self, who: str, flags: int, payload: bytes = b"", seq=None, ack=None, win=None,
               opts: bytes = b"", advance: bool = True) -> bytes:
        me, peer = self.end(who)
        seq = me.nxt if seq is None else seq
        if ack is None:
            ack = me.rcv if flags & F.TH_ACK else 0
        seg = N.tcp(me.port, peer.port, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, flags,
                    me.win if win is None else win, opts, payload)
        if ":" in me.ip:
            frame = N.eth(N.ip6(me.ip, peer.ip, payload=seg), 0x86DD, dst=MAC_DST, src=MAC_SRC)
        else:
            frame = N.eth(N.ip4(me.ip, peer.ip, payload=seg, ident=0), 0x0800, dst=MAC_DST,
                          src=MAC_SRC)
        if advance:
            span = len(payload) + (1 if flags & F.TH_SYN else 0) + (1 if flags & F.TH_FIN else 0)
            end = (seq + span) & 0xFFFFFFFF
            if ((end - me.nxt) & 0xFFFFFFFF) < 0x80000000:
                me.nxt = end
            peer_rcv = end
            if ((peer_rcv - peer.rcv) & 0xFFFFFFFF) < 0x80000000 or peer.rcv == 0:
                peer.rcv = peer_rcv
        self.frames.append((self.ts, frame))
        self.ts += self.step
        return frame

    # the usual segments
    def syn(self, opts=b""):
        return self.packet("c", F.TH_SYN, opts=opts)

    def synack(self, opts=b""):
        return self.packet("s", F.TH_SYN | F.TH_ACK, opts=opts)

    def handshake(self):
        ws = struct.pack("!BBB", 3, 3, 7) + b"\x01" if self.wscale else b""
        self.syn(ws)
        self.synack(ws)
        self.ack("c")

    def ack(self, who: str, **kw):
        return self.packet(who, F.TH_ACK, **kw)

    def send(self, who: str, data: bytes, **kw):
        return self.packet(who, F.TH_ACK | F.TH_PUSH, data, **kw)

    def fin(self, who: str, **kw):
        return self.packet(who, F.TH_FIN | F.TH_ACK, **kw)

    def rst(self, who: str, **kw):
        return self.packet(who, F.TH_RST | F.TH_ACK, **kw)


ALL_EVENTS = [
    (mos.Event.PKT_IN, (mos.Hook.SEND, mos.Hook.RECV)),
    (mos.Event.CONN_START, (mos.Hook.SEND, mos.Hook.RECV)),
    (mos.Event.TCP_STATE_CHANGE, (mos.Hook.SEND, mos.Hook.RECV)),
    (mos.Event.CONN_NEW_DATA, (mos.Hook.RECV,)),
    (mos.Event.REXMIT, (mos.Hook.SEND,)),
    (mos.Event.ERROR, (mos.Hook.RECV,)),
    (mos.Event.ORPHAN, (mos.Hook.NONE,)),
    (mos.Event.CONN_END, (mos.Hook.NONE,)),
    (mos.Event.TIMEOUT, (mos.Hook.NONE,)),
]


class Recorder:
    """A monitor that logs every event as a compact tuple."""

    def __init__(self, events=ALL_EVENTS, read=True):
        self.log: list = []
        self.data = {mos.Side.CLIENT: b"", mos.Side.SERVER: b""}
        self.mon = mos.Monitor(name="recorder")
        self.read = read
        for ev, hooks in events:
            for hk in hooks:
                self.mon.on(ev, self._make(hk), hook=hk)

    def _make(self, hook):
        def handler(flow, side, event):
            if event is mos.Event.ORPHAN:
                self.log.append(("ORPHAN", hook.name, None, None))
                return
            info = flow.event_info
            detail = None
            if event is mos.Event.TCP_STATE_CHANGE:
                detail = f"{info.old.name}->{info.new.name}"
            elif event is mos.Event.ERROR:
                detail = (info.reason.name, info.a, info.b)
            elif event in (mos.Event.CONN_END, mos.Event.TIMEOUT):
                detail = info.reason.name
            elif event is mos.Event.CONN_NEW_DATA and self.read:
                self.data[side] += flow.peek(side)
            self.log.append((event.name, hook.name, side.name, detail))
        return handler

    def states(self):
        return [(s, d) for e, h, s, d in self.log if e == "TCP_STATE_CHANGE"]

    def names(self, *keep):
        return [e for e, *_ in self.log if not keep or e in keep]


def run_frames(frames, *monitors, config=None, close=True):
    eng = mos.Engine(config or mos.Config(checksum="verify"))
    if not monitors:
        # someone must be listening for the engine to keep bytes once in order
        keeper = mos.Monitor(name="keeper", reads=True)
        keeper.on(mos.Event.CONN_END, lambda *a: None)
        monitors = (keeper,)
    for m in monitors:
        eng.attach(m)
    for ts, frame in frames:
        eng.feed(frame, ts)
    if close:
        eng.close()
    return eng
