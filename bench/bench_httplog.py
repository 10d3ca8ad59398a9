#!/usr/bin/env python3
"""The HTTP request logger (middleboxes/httplog on mos.app.http) against the
engine with no handler, and against tshark writing the same fields, on
the same capture in the same run.

    python3 bench/bench_httplog.py [CAPTURE] [--rounds 5]

Default capture: bench/out/testbed-http.pcap (recorded in the test bed by
bench/record_http.py, as root), else the shipped sample.  Each round runs
every contender once, in turn; the table shows medians.  Target (issue 11):
the logger at >= 50 % of the engine's packet rate.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)
sys.path.insert(0, HERE)

from bench_ids import run_child  # noqa: E402

CHILD = r"""
import json, os, sys, time
sys.path.insert(0, sys.argv[1])
import mos
cap, mode = sys.argv[2], sys.argv[3]
eng = mos.Engine()
out = {}
if mode == "engine":
    eng.attach(mos.Monitor())
else:
    from middleboxes.httplog.httplog import HttpLog
    log = HttpLog(open(os.devnull, "w"), mode).attach(eng)
t = time.perf_counter()
eng.run(cap)
out["seconds"] = time.perf_counter() - t
c = eng.counters()
out["packets"], out["payload"] = c["frames"], c["payload_bytes"]
if mode != "engine":
    log.close()
    out["records"] = log.records
print(json.dumps(out))
"""


def child(cap: str, mode: str) -> dict:
    return run_child(CHILD, cap, mode)


def tshark(cap: str) -> dict:
    t = time.perf_counter()
    p = subprocess.run(["tshark", "-r", cap, "-Y", "http.request", "-T", "fields", "-e",
                        "frame.time_epoch", "-e", "ip.src", "-e", "http.request.method",
                        "-e", "http.host", "-e", "http.request.uri", "-e", "http.user_agent"],
                       capture_output=True, text=True, timeout=3600)
    secs = time.perf_counter() - t
    return {"seconds": secs, "records": len(p.stdout.splitlines())}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("capture", nargs="?")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    cap = args.capture
    if cap is None:
        cap = os.path.join(HERE, "out", "testbed-http.pcap")
        if not os.path.exists(cap):
            import mos
            cap = mos.sample_capture()
    modes = ["engine", "eve", "zeek"]
    runs: dict = {m: [] for m in modes + ["tshark"]}
    for _ in range(args.rounds):
        for m in modes:
            runs[m].append(child(cap, m))
        if shutil.which("tshark"):
            runs["tshark"].append(tshark(cap))
    base = runs["engine"][0]
    pkts, payload = base["packets"], base["payload"]
    eng_s = statistics.median(r["seconds"] for r in runs["engine"])
    print(f"capture {os.path.basename(cap)}: {pkts:,} packets, {payload / 1e6:,.0f} MB payload; "
          f"median of {args.rounds} rounds")
    print(f"{'run':<26}{'seconds':>9}{'pkt/s':>13}{'Gbit/s':>9}{'vs engine':>11}"
          f"{'records':>9}")
    for m, label in (("engine", "engine, no handler"), ("eve", "httplog, EVE http"),
                     ("zeek", "httplog, Zeek http.log"), ("tshark", "tshark -T fields")):
        if not runs[m]:
            print(f"{label:<26} (not installed)")
            continue
        s = statistics.median(r["seconds"] for r in runs[m])
        rec = runs[m][0].get("records", "-")
        print(f"{label:<26}{s:>9.3f}{pkts / s:>13,.0f}{payload * 8 / s / 1e9:>9.2f}"
              f"{eng_s / s:>11.2f}{rec:>9}")
    if runs["tshark"]:
        t = statistics.median(r["seconds"] for r in runs["tshark"])
        e = statistics.median(r["seconds"] for r in runs["eve"])
        print(f"httplog (EVE) vs tshark: {t / e:.1f}x faster")
    return 0


if __name__ == "__main__":
    sys.exit(main())
