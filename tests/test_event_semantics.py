"""Per-event semantics, as a new user meets them (issue: exact event semantics).

Each case runs a public capture twice, as a whole (``Engine.run``: bursts of
up to 256 frames) and one frame at a time (``Engine.feed``), and checks the
answers are the packet-level truth and identical in both modes.  The truth
comes from reading the capture with dpkt, independently of mos.
"""

from __future__ import annotations

import io
import os
import tempfile

import dpkt
import pytest

import mos
from middleboxes import midstat
from mos import Event, Side
from tcpconv import Conv

CORPUS = os.environ.get("MOS_CORPUS", "/work/shared/corpus")


def corpus(path: str) -> str:
    full = os.path.join(CORPUS, path)
    if not os.path.exists(full):
        pytest.skip(f"corpus file {full} not present")
    return full


def read_frames(path: str):
    with open(path, "rb") as fh:
        rd = dpkt.pcap.Reader(fh)
        return rd.datalink(), [(ts, bytes(buf)) for ts, buf in rd]


def run_both(path: str, attach):
    """attach(engine) -> result getter; returns {"whole": r, "frames": r}."""
    out = {}
    for mode in ("whole", "frames"):
        eng = mos.Engine(mos.Config())
        get = attach(eng)
        if mode == "whole":
            eng.run(path)
        else:
            lt, frames = read_frames(path)
            for ts, buf in frames:
                eng.feed(buf, ts, lt)
            eng.close()
        out[mode] = get()
    return out


def _run_whole_capture(eng, frames):
    """A capture file run: the engine takes it in bursts of up to 256 frames."""
    with tempfile.NamedTemporaryFile(suffix=".pcap", delete=False) as fh:
        w = dpkt.pcap.Writer(fh)
        for ts, fr in frames:
            w.writepkt(fr, ts)
    try:
        eng.run(fh.name)
    finally:
        os.unlink(fh.name)


def tcp_segments(path: str):
    """[(ts, (src, sport, dst, dport), flags, seq, payload)] for every TCP frame."""
    lt, frames = read_frames(path)
    assert lt == dpkt.pcap.DLT_EN10MB
    rows = []
    for ts, buf in frames:
        ip = dpkt.ethernet.Ethernet(buf).data
        if not isinstance(ip, (dpkt.ip.IP, dpkt.ip6.IP6)) or not isinstance(ip.data, dpkt.tcp.TCP):
            continue
        tcp = ip.data
        rows.append((ts, (bytes(ip.src), tcp.sport, bytes(ip.dst), tcp.dport), tcp.flags,
                     tcp.seq, bytes(tcp.data)))
    return rows


def tcp_payloads(path: str):
    return [(ts, key, seq, data) for ts, key, _, seq, data in tcp_segments(path) if data]


def test_two_requests_nine_seconds_apart_keep_their_own_timestamps():
    """peafowl/http.pcap: two GETs 9 s apart on one connection.  Each request
    is seen with the timestamp of the frame that carried it."""
    path = corpus("peafowl/http.pcap")
    truth = [ts for ts, _, _, data in tcp_payloads(path) if data.startswith(b"GET ")]
    assert len(truth) == 2 and truth[1] - truth[0] > 9

    def attach(eng):
        seen = []
        mon = eng.attach(mos.Monitor())

        def on_data(flow, side, ev):
            data = flow.peek(side)
            if data.startswith(b"GET "):
                seen.append(round(flow.packet.ts, 6))
        mon.on(Event.CONN_NEW_DATA, on_data, side=Side.SERVER)
        return lambda: seen

    got = run_both(path, attach)
    assert got["whole"] == got["frames"]
    assert got["whole"] == pytest.approx(truth, abs=1e-6)


def test_each_response_comes_after_its_request():
    """The events of both directions come in packet order: a transcript of
    requests and responses reads as the wire does (request, response,
    request, response), never a response before its request."""
    path = corpus("peafowl/http.pcap")

    def attach(eng):
        lines = []
        mon = eng.attach(mos.Monitor())

        def on_data(flow, side, ev):
            data = flow.peek(side)
            if data.startswith((b"GET ", b"HTTP/1.")):
                lines.append((round(flow.packet.ts, 6), data.split(b"\r\n", 1)[0].decode()))
        mon.on(Event.CONN_NEW_DATA, on_data)
        return lambda: lines

    got = run_both(path, attach)
    assert got["whole"] == got["frames"]
    kinds = [line.split(" ", 1)[0] for _, line in got["whole"]]
    assert kinds == ["GET", "HTTP/1.1", "GET", "HTTP/1.1"]
    times = [ts for ts, _ in got["whole"]]
    assert times == sorted(times)


def _last_byte_frame_ts(path: str, needle: bytes):
    """Capture time of the frame that made the last byte of the first match
    of needle readable in order, per direction: a small reassembly by
    sequence number from dpkt (first copy of a byte wins, out-of-order data
    waits for the hole to fill), independent of mos."""
    streams = {}
    for ts, key, flags, seq, data in tcp_segments(path):
        if flags & dpkt.tcp.TH_SYN:
            streams[key] = {"isn": seq + 1, "buf": bytearray(), "ooo": {}, "ends": []}
            continue
        s = streams.get(key)
        if s is None or not data:
            continue
        off = (seq - s["isn"]) % (1 << 32)
        s["ooo"][off] = max(s["ooo"].get(off, b""), data, key=len)
        grew = True
        while grew:
            grew = False
            for o in sorted(s["ooo"]):
                d = s["ooo"][o]
                if o <= len(s["buf"]) < o + len(d):
                    s["buf"] += d[len(s["buf"]) - o:]
                    grew = True
                if o + len(d) <= len(s["buf"]):
                    del s["ooo"][o]
        s["ends"].append((len(s["buf"]), ts))
    out = []
    for s in streams.values():
        at = bytes(s["buf"]).find(needle)
        if at >= 0:
            last = at + len(needle)   # one past the last byte
            out.append(round(next(ts for end, ts in s["ends"] if end >= last), 6))
    return sorted(out)


@pytest.mark.parametrize("path,needle", [
    ("peafowl/http.pcap", b"Unauthorized"),
    ("zeek/wikipedia/wikipedia.pcap", b"Content-Type"),
])
def test_alert_time_is_the_time_of_the_packet_with_the_last_byte_of_the_match(path, needle):
    """A content matcher that keeps the tail of the stream (so matches across
    segments are found) alerts at the capture time of the frame that carried
    the last byte of the match."""
    path = corpus(path)
    truth = _last_byte_frame_ts(path, needle)
    assert truth

    def attach(eng):
        alerts = []
        mon = eng.attach(mos.Monitor())
        tails = {}

        def on_data(flow, side, ev):
            key = (id(flow), int(side))
            if key in tails and tails[key] is None:
                return  # alerted once for this direction
            data = tails.get(key, b"") + flow.peek(side)
            if needle in data:
                alerts.append(round(flow.packet.ts, 6))
                tails[key] = None
            else:
                tails[key] = data[-(len(needle) - 1):]
        mon.on(Event.CONN_NEW_DATA, on_data)
        return lambda: sorted(alerts)

    got = run_both(path, attach)
    assert got["whole"] == got["frames"]
    assert got["whole"] == pytest.approx(truth, abs=1e-6)


def test_midstat_status_interval_is_exact():
    """midstat with interval=1.0 prints a status every 1.000 s of capture
    time (it printed every 0.92 s when handlers ran at the end of a burst),
    whole or frame by frame."""
    c = Conv(client=("198.18.0.1", 40000), server=("198.19.0.1", 80), step=0.013)
    c.ts = 1.0
    c.handshake()
    for _ in range(700):           # ~9.1 s of traffic, a frame every 13 ms
        c.send("c", b"x" * 100)
    c.fin("c")
    c.fin("s")
    heads = {}
    for mode in ("whole", "frames"):
        eng = mos.Engine(mos.Config(checksum="verify"))
        out = io.StringIO()
        midstat.attach(eng, interval=1.0, out=out)
        if mode == "whole":
            _run_whole_capture(eng, c.frames)
        else:
            for ts, fr in c.frames:
                eng.feed(fr, ts)
            eng.close()
        blocks = [b for b in out.getvalue().split("midstat +") if b]
        heads[mode] = [b.splitlines()[0].split(":")[0] for b in blocks]
    assert heads["whole"] == heads["frames"]
    assert heads["whole"][:8] == [f"{i}.000s" for i in range(1, 9)]
