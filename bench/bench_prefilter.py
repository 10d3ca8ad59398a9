#!/usr/bin/env python3
"""The IDS prefilter against an alternative, same bytes, same run: 1,000 ET
Open content patterns over the TCP payload of the first --packets frames
of bench_ids.py's capture (HTTP recorded in the test bed).

* Hyperscan (middleboxes/ids/_prefilter.pyx): streaming mode, a compiled
  consumer inside the core; its time is the engine's with it minus without.
* pyahocorasick: one Python call per segment (and still no carry across
  segments, so it would miss matches split between them).

    python3 bench/bench_prefilter.py          # needs: pip install pyahocorasick
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--packets", type=int, default=200_000)
    ap.add_argument("--patterns", type=int, default=1000)
    a = ap.parse_args(argv)
    try:
        import ahocorasick
    except ImportError:
        print("pip install pyahocorasick first", file=sys.stderr)
        return 2
    import dpkt
    import mos
    from bench_ids import TESTBED_CAP, patterns, testbed_capture
    from middleboxes.ids._prefilter import Prefilter
    from middleboxes.ids.rules import parse_content
    src = testbed_capture()
    if src is None:
        print(f"no {TESTBED_CAP}: run bench/record_http.py as root first", file=sys.stderr)
        return 2
    fd, sub = tempfile.mkstemp(suffix=".pcap")
    os.close(fd)
    try:
        payloads = []
        with open(src, "rb") as fh, open(sub, "wb") as oh:
            w = dpkt.pcap.Writer(oh)
            for i, (ts, buf) in enumerate(dpkt.pcap.Reader(fh)):
                if i >= a.packets:
                    break
                w.writepkt(buf, ts)
                ip = dpkt.ethernet.Ethernet(buf).data
                if isinstance(getattr(ip, "data", None), dpkt.tcp.TCP) and ip.data.data:
                    payloads.append(bytes(ip.data.data))
        pats = [parse_content(f'"{p}"')[0] for p in patterns(a.patterns)]
        total = sum(map(len, payloads))
        ac = ahocorasick.Automaton()
        for i, p in enumerate(pats):
            ac.add_word(p.decode("latin-1"), i)
        ac.make_automaton()
        t = time.perf_counter()
        n = 0
        for pl in payloads:
            for _ in ac.iter(pl.decode("latin-1")):
                n += 1
        t_ac = time.perf_counter() - t

        def run(with_prefilter):
            eng = mos.Engine(mos.Config())
            eng.attach(mos.Monitor())
            if with_prefilter:
                eng.add_consumer(Prefilter(pats), mos.Side.BOTH)
            t0 = time.perf_counter()
            eng.run(sub)
            return time.perf_counter() - t0
        base = min(run(False) for _ in range(3))
        t_hs = max(min(run(True) for _ in range(3)) - base, 1e-9)
    finally:
        os.unlink(sub)
    print(f"{len(payloads)} segments, {total / 1e6:.0f} MB payload, {len(pats)} patterns")
    print(f"pyahocorasick, a Python call per segment: {t_ac:.3f} s, "
          f"{total * 8 / t_ac / 1e9:.2f} Gbit/s ({n} matches)")
    print(f"hyperscan stream consumer in the core:   {t_hs:.3f} s above the engine alone, "
          f"{total * 8 / t_hs / 1e9:.2f} Gbit/s")
    print(f"hyperscan / pyahocorasick speed: {t_ac / t_hs:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
