#!/usr/bin/env python3
"""Memory under a SYN flood: `mos streams` with default settings on a capture
of 1M never-answered SYNs from distinct spoofed 4-tuples mixed with normal
HTTP-like flows (bench/gen_capture.py --syn-flood).

Reports the peak RSS of the `mos streams` process (VmHWM, which also counts
the pages of the memory-mapped capture, and the peak RssAnon: mos's own
memory), the flows evicted (embryonic or not) as `--stats` reports them, and
checks that every normal flow's two streams are still right (bytes and
SHA-256 against the generator's expected JSON).  Exit status 1 if the peak
RSS is over the target (600 MB, issue 8) or a normal flow is wrong.

    python3 bench/bench_synflood.py                       # 1M SYNs + 100k normal packets
    python3 bench/bench_synflood.py --syn-flood 200000    # smaller
    python3 bench/bench_synflood.py --max-flows 100000    # any extra `mos streams` option

Captures are cached in bench/out (keyed by the generator's source).  One run
of the default size takes about a minute on the 2-core dev machine.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
OUT_DIR = os.path.join(HERE, "out")
TARGET_MB = 600


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def capture(flood: int, packets: int, concurrent: int, segments: str, seed: int,
            regen: bool) -> tuple[str, dict]:
    """The flood capture and its expected JSON, generated once per generator source."""
    with open(os.path.join(HERE, "gen_capture.py"), "rb") as f:
        tag = hashlib.sha1(f.read()).hexdigest()[:8]
    os.makedirs(OUT_DIR, exist_ok=True)
    path = os.path.join(OUT_DIR, f"synflood-{flood}-p{packets}-c{concurrent}-s{segments}"
                                 f"-r{seed}-{tag}.pcap")
    exp = path + ".expected.json"
    if regen or not (os.path.exists(path) and os.path.exists(exp)):
        log(f"generating {os.path.basename(path)} ...")
        t0 = time.perf_counter()
        subprocess.run([sys.executable, os.path.join(HERE, "gen_capture.py"), path + ".tmp",
                        "--expected", exp + ".tmp", "-q", "--syn-flood", str(flood),
                        "--packets", str(packets), "--concurrent", str(concurrent),
                        "--segments", segments, "--seed", str(seed)], check=True)
        os.replace(exp + ".tmp", exp)
        os.replace(path + ".tmp", path)
        log(f"  done in {time.perf_counter() - t0:.1f} s")
    with open(exp) as f:
        return path, json.load(f)


def _status(pid: int) -> dict:
    d = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmHWM", "RssAnon", "RssFile"):
                    d[k] = int(v.split()[0]) * 1024
    except (OSError, ValueError):
        pass
    return d


def run_streams(argv: list, env: dict, wanted: set) -> dict:
    """Run `mos streams`, keep only the JSON lines of the normal flows (the
    parent stays small: ru_maxrss of a child can be its parent's peak at
    fork), poll /proc for the peaks."""
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                         stdin=subprocess.DEVNULL, text=True, bufsize=1 << 20)
    peak: dict = {}
    done = threading.Event()

    def poll():
        while not done.is_set():
            for k, v in _status(p.pid).items():
                peak[k] = max(peak.get(k, 0), v)
            time.sleep(0.002)

    err: list = []
    t = threading.Thread(target=poll, daemon=True)
    te = threading.Thread(target=lambda: err.append(p.stderr.read()), daemon=True)
    t.start()
    te.start()
    got: dict = {}
    lines = 0
    prefix = len('{"client": "')
    for line in p.stdout:
        lines += 1
        client = line[prefix:line.find('"', prefix)]
        if client in wanted:
            rec = json.loads(line)
            got[(rec["client"], rec["server"], rec["direction"])] = rec
    _pid, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    done.set()
    t.join()
    te.join()
    stats = None
    for ln in reversed(err[0].splitlines() if err else []):
        if ln.startswith("{"):
            stats = json.loads(ln)
            break
    return {"rc": os.waitstatus_to_exitcode(status), "wall": wall, "peak": peak,
            "ru_maxrss": ru.ru_maxrss * 1024, "lines": lines, "got": got, "stats": stats,
            "stderr": err[0] if err else ""}


def check(got: dict, exp: dict) -> tuple[int, list]:
    bad = []
    for f in exp["flows"]:
        for d in ("c2s", "s2c"):
            r = got.get((f["client"], f["server"], d))
            if r is None:
                bad.append(f"{f['client']} -> {f['server']} {d}: missing")
            elif r["bytes"] != f[f"{d}_bytes"] or r["sha256"] != f[f"{d}_sha256"]:
                bad.append(f"{f['client']} -> {f['server']} {d}: {r['bytes']} bytes, "
                           f"expected {f[d + '_bytes']} (sha {'ok' if r['sha256'] == f[d + '_sha256'] else 'differs'})")
    return 2 * len(exp["flows"]) - len(bad), bad


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--syn-flood", type=int, default=1_000_000, help="SYNs (default 1000000)")
    ap.add_argument("--packets", type=int, default=100_000,
                    help="packets of normal flows mixed in (default 100000)")
    ap.add_argument("--concurrent", type=int, default=500)
    ap.add_argument("--segments", default="2-8", help="response segments per normal flow")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--regen", action="store_true")
    ap.add_argument("--mos-cmd", help="how to call the CLI (default: this python -m mos)")
    ap.add_argument("--json-out", help="also write the results as JSON here")
    a, extra = ap.parse_known_args(argv)
    path, exp = capture(a.syn_flood, a.packets, a.concurrent, a.segments, a.seed, a.regen)
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    cmd = a.mos_cmd.split() if a.mos_cmd else [sys.executable, "-m", "mos"]
    argv_ = cmd + ["streams", path, "--stats"] + extra
    wanted = {f["client"] for f in exp["flows"]}
    log("running: " + " ".join(argv_))
    r = run_streams(argv_, env, wanted)
    if r["rc"] != 0 or r["stats"] is None:
        log(r["stderr"][-2000:])
        log(f"mos streams failed (exit {r['rc']})")
        return 1
    c = r["stats"]["counters"]
    ok, bad = check(r["got"], exp)
    size = os.path.getsize(path)
    hwm = max(r["peak"].get("VmHWM", 0), 0)
    anon = r["peak"].get("RssAnon", 0)
    flows = c["flows_created"]
    res = {
        "cpu": cpu_model(),
        "capture": os.path.basename(path), "capture_bytes": size,
        "packets": r["stats"]["packets"], "syn_flood": a.syn_flood,
        "normal_flows": len(exp["flows"]), "flows_created": flows,
        "evicted": c["ended"]["evict"], "evicted_embryonic": c.get("evicted_embryonic"),
        "peak_vmhwm_mb": round(hwm / 2**20, 1), "peak_rss_anon_mb": round(anon / 2**20, 1),
        "ru_maxrss_mb": round(r["ru_maxrss"] / 2**20, 1),
        "wall_s": round(r["wall"], 2), "engine_s": r["stats"]["seconds"],
        "json_lines": r["lines"], "normal_directions_ok": ok,
        "normal_directions": 2 * len(exp["flows"]), "extra_args": extra,
    }
    print(f"CPU: {res['cpu']}")
    print(f"capture: {res['capture']} ({size / 2**20:.0f} MiB, {res['packets']} packets: "
          f"{a.syn_flood} SYNs + {len(exp['flows'])} normal flows)")
    print(f"mos streams {' '.join(extra) or '(defaults)'}: {r['wall']:.1f} s wall, "
          f"{res['packets'] / r['stats']['seconds']:,.0f} packets/s in the engine")
    print(f"peak RSS (VmHWM, includes the mapped capture): {res['peak_vmhwm_mb']} MiB  "
          f"[target < {TARGET_MB} MB]")
    print(f"peak RssAnon (mos's own memory): {res['peak_rss_anon_mb']} MiB  "
          f"= {anon / max(flows, 1):.0f} B per flow created")
    print(f"flows: {flows} created, {res['evicted']} evicted "
          f"({res['evicted_embryonic']} embryonic), {r['lines']} JSON lines")
    print(f"normal flows: {ok}/{2 * len(exp['flows'])} directions right (bytes and sha256)")
    for b in bad[:10]:
        print("  " + b)
    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump(res, f, indent=1)
    over = hwm > TARGET_MB * 10**6
    if over:
        print(f"FAIL: peak RSS {hwm / 1e6:.0f} MB over {TARGET_MB} MB")
    return 1 if (over or bad) else 0


if __name__ == "__main__":
    sys.exit(main())
