#!/usr/bin/env python3
"""Per-packet cost of a flow with very many holes against a clean flow
(issue 13, finding 2: once 65,535 gaps were listed, each new hole moved the
whole gap array, about 20x the normal per-packet cost).

Two captures with the same number of packets, one flow each:

* holes: the client sends 10-byte segments at a 20-byte stride, so each
  leaves a 10-byte hole; the server acknowledges each segment's end, which
  tells the monitor the hole will never be filled (a gap) and moves the
  window on.  --segments of them (default 150,000: past the 65,535 gaps a
  side lists).
* clean: the same count of contiguous 10-byte segments, each acknowledged.

mos runs both with a reader (CONN_NEW_DATA -> flow.peek), the same engine
configuration, `eng.run` timed in this process, the median of --repeat runs.
The ratio holes/clean is the figure of merit (target <= 2).  tcpflow on the
same two captures, when installed, is the outside reference.

    python3 bench/bench_gaps.py                 # 150k segments, 3 runs each
    python3 bench/bench_gaps.py --segments 400000 --repeat 5
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

CLIENT, SERVER = bytes([198, 18, 0, 1]), bytes([198, 19, 0, 1])
CPORT, SPORT = 40000, 80
CI, SI = 1000, 500000
SEG, STRIDE = 10, 20


def _frame(src, dst, sport, dport, seq, ack, flags, payload=b"", opts=b""):
    """Ethernet + IPv4 + TCP with correct checksums (built here, not by mos)."""
    off = (20 + len(opts)) // 4
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF,
                      off << 4, flags, 65535, 0, 0) + opts + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0, 64, 6, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", _csum(ip)) + ip[12:]
    pseudo = src + dst + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", _csum(pseudo + tcp)) + tcp[18:]
    return b"\x02\0\0\0\0\x02\x02\0\0\0\0\x01\x08\x00" + ip + tcp


def _csum(b: bytes) -> int:
    if len(b) & 1:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def write_capture(path: str, segments: int, stride: int) -> int:
    """A handshake with window scale 14 on both sides (a 1 GiB window, RFC 7323
    2.2), then `segments` 10-byte client segments at `stride`, each
    acknowledged by the server.  Returns the packet count."""
    S, A, P = 0x02, 0x10, 0x08
    ws = b"\x03\x03\x0e\x00"
    data = bytes(range(48, 58))
    frames = [_frame(CLIENT, SERVER, CPORT, SPORT, CI, 0, S, opts=ws),
              _frame(SERVER, CLIENT, SPORT, CPORT, SI, CI + 1, S | A, opts=ws),
              _frame(CLIENT, SERVER, CPORT, SPORT, CI + 1, SI + 1, A)]
    seq = CI + 1
    for _ in range(segments):
        frames.append(_frame(CLIENT, SERVER, CPORT, SPORT, seq, SI + 1, A | P, data))
        frames.append(_frame(SERVER, CLIENT, SPORT, CPORT, SI + 1, seq + SEG, A))
        seq += stride
    with open(path, "wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        t = 1_000_000
        for fr in frames:
            fh.write(struct.pack("<IIII", t // 1_000_000, t % 1_000_000, len(fr), len(fr)))
            fh.write(fr)
            t += 10
    return len(frames)


def run_mos(path: str, repeat: int, buffer_size: int) -> tuple[float, list, dict, int]:
    import mos
    times, last, nbytes = [], {}, 0
    for _ in range(repeat):
        got = [0]
        # keep_read: read bytes stay until the buffer is full (ppeek can look
        # back), so the window holds far more than 65,535 gaps and slides on
        eng = mos.Engine(mos.Config(buffer_size=buffer_size, keep_read=True))
        mon = mos.Monitor(name="reader")
        mon.on(mos.Event.CONN_NEW_DATA, lambda f, s, e: got.__setitem__(0, got[0] + len(f.peek(s))),
               side=mos.Side.SERVER)
        eng.attach(mon)
        t0 = time.perf_counter()
        eng.run(path)
        times.append(time.perf_counter() - t0)
        last, nbytes = eng.counters(), got[0]
    return statistics.median(times), times, last, nbytes


def run_tcpflow(path: str, repeat: int):
    exe = shutil.which("tcpflow")
    if not exe:
        return None
    times = []
    for _ in range(repeat):
        out = tempfile.mkdtemp(prefix="mos-bench-gaps-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
        try:
            t0 = time.perf_counter()
            subprocess.run([exe, "-r", path, "-o", out], check=True, capture_output=True,
                           timeout=600)
            times.append(time.perf_counter() - t0)
        finally:
            shutil.rmtree(out, ignore_errors=True)
    return statistics.median(times)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--segments", type=int, default=300_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--buffer-size", type=int, default=2 << 20,
                    help="receive buffer per side (default 2 MiB: 100k holes fit in it)")
    ap.add_argument("--target", type=float, default=2.0, help="largest holes/clean ratio")
    a = ap.parse_args(argv)
    tmp = tempfile.mkdtemp(prefix="mos-bench-gaps-")
    try:
        holes, clean = os.path.join(tmp, "holes.pcap"), os.path.join(tmp, "clean.pcap")
        n = write_capture(holes, a.segments, STRIDE)
        assert write_capture(clean, a.segments, SEG) == n
        rows = []
        for name, path in (("clean", clean), ("holes", holes)):
            t, runs, c, nbytes = run_mos(path, a.repeat, a.buffer_size)
            rows.append((name, t, runs, c, nbytes, run_tcpflow(path, a.repeat)))
        print(f"{n} packets per capture, {a.segments} data segments of {SEG} bytes; "
              f"median of {a.repeat} runs")
        print(f"{'capture':8} {'mos s':>8} {'ns/pkt':>8} {'pkt/s':>11} {'read B':>9} "
              f"{'gaps':>7} {'tcpflow s':>10} {'mos/tcpflow':>12}")
        for name, t, runs, c, nbytes, tf in rows:
            gaps = c["errors"].get("gap", 0) if isinstance(c.get("errors"), dict) else 0
            print(f"{name:8} {t:8.3f} {t / n * 1e9:8.0f} {n / t:11,.0f} {nbytes:9} {gaps:7} "
                  + (f"{tf:10.3f} {t / tf:12.2f}" if tf else f"{'-':>10} {'-':>12}"))
        ratio = rows[1][1] / rows[0][1]
        print(f"holes/clean per-packet time: {ratio:.2f}x (target <= {a.target}x)")
        assert rows[0][4] == a.segments * SEG and rows[1][4] == a.segments * SEG, \
            "the reader did not get every stored byte"
        return 0 if ratio <= a.target else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
