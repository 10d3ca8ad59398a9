#!/usr/bin/env python3
"""Two builds of mos against tcpflow, interleaved round by round.

On a shared machine one benchmark run swings by +-20% from the next, so a
"before" run and an "after" run taken minutes apart cannot say whether a
change made mos slower.  This script runs, in every round and in turn:
tcpflow, `mos streams` of build A, of build B, and the engine alone (no
handlers) of A and of B, all on the capture bench_monitor.py generates.
It prints the medians, each build's ratio against tcpflow from the same
rounds, and B over A.

    python3 bench/bench_ab.py --a /path/to/old/checkout --rounds 5

--a and --b are folders holding a built `mos` package (a checkout after
`make build`); B defaults to this checkout.  Each tool runs in its own
process with PYTHONPATH set to its folder.  The last line is JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from bench_monitor import ensure_capture

SHM = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()

ENGINE = """
import sys, time, mos
eng = mos.Engine(mos.Config())
t = time.perf_counter()
st = eng.run(sys.argv[1])
print(time.perf_counter() - t, st.packets, mos.__file__)
"""


def timed(argv, env=None, timeout=600) -> float:
    t = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                   timeout=timeout)
    return time.perf_counter() - t


def env_for(tree: str) -> dict:
    return {**os.environ, "PYTHONPATH": os.path.abspath(tree)}


def engine_seconds(tree: str, path: str) -> tuple[float, str]:
    out = subprocess.run([sys.executable, "-c", ENGINE, path], check=True, capture_output=True,
                         text=True, env=env_for(tree), cwd=tempfile.gettempdir()).stdout.split()
    return float(out[0]), out[2]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--a", required=True, help="folder with build A's mos package (before)")
    ap.add_argument("--b", default=REPO, help="folder with build B's mos package (after)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--packets", type=int, default=1_000_000)
    a = ap.parse_args()
    if not shutil.which("tcpflow"):
        print("tcpflow is not installed (apt-get install tcpflow)", file=sys.stderr)
        return 2
    path, _ = ensure_capture("closed", 600, packets=a.packets, concurrent=10_000, seed=1,
                             segments="10-30")  # bench_monitor.py's defaults
    runs = {k: [] for k in ("tcpflow", "streams_a", "streams_b", "engine_a", "engine_b")}
    files = {}
    for r in range(a.rounds):
        with tempfile.TemporaryDirectory(dir=SHM) as d:
            runs["tcpflow"].append(timed(["tcpflow", "-r", path, "-o", d]))
        for k, tree in (("a", a.a), ("b", a.b)):
            runs[f"streams_{k}"].append(
                timed([sys.executable, "-m", "mos", "streams", path], env=env_for(tree)))
            sec, files[k] = engine_seconds(tree, path)
            runs[f"engine_{k}"].append(sec)
        print(f"round {r + 1}/{a.rounds}: " + ", ".join(f"{k} {v[-1]:.3f}s" for k, v in runs.items()),
              file=sys.stderr)
    med = {k: statistics.median(v) for k, v in runs.items()}
    res = {
        "rounds": a.rounds, "capture": os.path.relpath(path, REPO), "a": files["a"],
        "b": files["b"], "median_seconds": {k: round(v, 4) for k, v in med.items()},
        "streams_vs_tcpflow": {k: round(med["tcpflow"] / med[f"streams_{k}"], 3) for k in "ab"},
        "engine_pps": {k: round(a.packets / med[f"engine_{k}"]) for k in "ab"},
        "b_over_a": {"streams": round(med["streams_a"] / med["streams_b"], 3),
                     "engine": round(med["engine_a"] / med["engine_b"], 3)},
    }
    print(f"tcpflow            {med['tcpflow']:.3f} s")
    for k in "ab":
        print(f"mos streams ({k})    {med[f'streams_{k}']:.3f} s   {res['streams_vs_tcpflow'][k]:.2f}x tcpflow")
        print(f"mos engine  ({k})    {med[f'engine_{k}']:.3f} s   {res['engine_pps'][k] / 1e6:.2f} M pkt/s")
    print(f"B over A: streams {res['b_over_a']['streams']:.3f}x, engine {res['b_over_a']['engine']:.3f}x"
          " (above 1: B is faster)")
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
