#!/usr/bin/env python3
"""The IDS's speed with 1, 100, 1,000 and 10,000 content rules, next to the
engine with no handler on the same capture, in the same run.

Rules: real patterns.  Every ``content:"..."`` of the ET Open ruleset in
../shared/rulesets (all protocols, 4 bytes or longer, first occurrence
order, deduplicated) becomes ``alert tcp any any -> any any (content:...;)``;
the first N make the N-rule set.  Many are HTTP strings (``User-Agent|3a|``,
``GET``, ...), so the HTTP-like capture makes the prefilter hand rules to
Python often: a harder case than a quiet network.

Capture: real HTTP recorded in the test bed by bench/record_http.py
(http.server and curl in two namespaces, mixed file sizes, many connections;
made once as root, cached in bench/out), or with --synthetic bench_monitor's
generated HTTP-like capture (1M packets).  Each run is a child process
timing ``eng.run`` only; the median of --repeat runs is shown.

    sudo python3 bench/bench_ids.py                  # test bed HTTP, 1/100/1000/10000 rules
    python3 bench/bench_ids.py --synthetic           # the generated 1M-packet capture
    python3 bench/bench_ids.py --capture F.pcap --rules 1,1000 --repeat 1
    python3 bench/bench_ids.py --et                  # the whole ET Open ruleset instead

--et times the IDS with every ET Open rules file loaded as it is (the
``*.rules`` of ../shared/rulesets but the ``deleted`` ones, Suricata's
default variables) next to the engine with no handler, on the same capture
in the same run: rules loaded, alerts, Gbit/s of payload, Mpps, the ratio.

Targets (issue 10): >= 3 Gbit/s of payload with 1,000 rules; the 1-rule run
at >= 60 % of the engine's packets/s.  Issue 11: the whole ET Open ruleset at
>= 1 Gbit/s of payload on one core (--et).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
RULESET = os.path.join(os.path.dirname(REPO), "shared", "rulesets", "et-open-suricata-5.0")
sys.path.insert(0, REPO)

_CONTENT = re.compile(r'content:\s*"((?:[^"\\]|\\.)*)"')


def patterns(limit: int) -> list[str]:
    """Content strings as written in rules (with |hex| parts), ET Open order."""
    out, seen = [], set()
    for name in sorted(os.listdir(RULESET)):
        if not name.endswith(".rules"):
            continue
        with open(os.path.join(RULESET, name), encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if not line.startswith("alert"):
                    continue
                for m in _CONTENT.finditer(line):
                    text = m.group(1)
                    raw = re.sub(r"\|[^|]*\|", "xx", text)
                    if len(raw) < 4 or text in seen:
                        continue
                    seen.add(text)
                    out.append(text)
                    if len(out) >= limit:
                        return out
    return out


def write_rules(path: str, pats: list[str]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for i, p in enumerate(pats):
            fh.write(f'alert tcp any any -> any any (msg:"bench {i}"; content:"{p}"; '
                     f'sid:{1000000 + i}; rev:1;)\n')


CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
import mos
from middleboxes.ids.ids import Ids
from middleboxes.ids.rules import load_rules
cap, rules = sys.argv[2], sys.argv[3]
# as `mos ids -r` runs: Suricata's default overlap policy (bsd), IDS mode
# (a stream match is reported once acknowledged)
eng = mos.Engine(mos.Config(overlap="bsd"))
out = {}
if rules == "-":
    eng.attach(mos.Monitor())
else:
    if rules.startswith("et:"):     # a ruleset directory: its files as they are
        import glob, os
        rules = [f for f in sorted(glob.glob(os.path.join(rules[3:], "*.rules")))
                 if "deleted" not in os.path.basename(f)]
    t = time.perf_counter()
    rs = load_rules(rules)
    out["load_s"] = time.perf_counter() - t
    ids = Ids(rs, stream_inline=False)
    t = time.perf_counter()
    ids.attach(eng)
    out["attach_s"] = time.perf_counter() - t
    out["loaded"] = len(rs.rules)
t = time.perf_counter()
eng.run(cap)
out["seconds"] = time.perf_counter() - t
c = eng.counters()
out["packets"], out["payload"] = c["frames"], c["payload_bytes"]
if rules != "-":
    st = ids.stats()
    out.update(alerts=st["alerts"], candidates=st["candidates"],
               patterns=st["prefilter_patterns"], alerts_by_sid=st["alerts_by_sid"])
print(json.dumps(out))
"""


def run_child(script: str, *args: str) -> dict:
    """A measurement in a fresh interpreter (no state shared between runs):
    `script` gets the repository and `args`, and prints one JSON line last."""
    p = subprocess.run([sys.executable, "-c", script, REPO, *args], capture_output=True,
                       text=True, timeout=1800)
    if p.returncode != 0:
        raise SystemExit(f"child failed: {p.stderr[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def child(cap: str, rules: str) -> dict:
    return run_child(CHILD, cap, rules)


TESTBED_CAP = os.path.join(HERE, "out", "testbed-http.pcap")


def testbed_capture() -> str | None:
    """The HTTP traffic record_http.py records in the test bed (made once, as
    root; None where it cannot be made)."""
    if not os.path.exists(TESTBED_CAP):
        if os.geteuid() != 0:
            return None
        print("recording HTTP in the test bed (bench/record_http.py) ...", file=sys.stderr)
        r = subprocess.run([sys.executable, os.path.join(HERE, "record_http.py"), TESTBED_CAP],
                           timeout=900)
        if r.returncode != 0:
            return None
    return TESTBED_CAP


def capture(packets: int) -> str:
    """bench_monitor.py's capture of that size (generated once, cached in bench/out)."""
    sys.path.insert(0, HERE)
    import bench_monitor
    path, _ = bench_monitor.ensure_capture("closed", 1800, concurrent=10000, packets=packets,
                                           seed=1, segments="10-30")
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--rules", default="1,100,1000,10000")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json-out")
    ap.add_argument("--capture", help="a capture to use instead")
    ap.add_argument("--et", action="store_true",
                    help="the whole ET Open ruleset (its files as they are) instead of "
                         "--rules")
    ap.add_argument("--synthetic", action="store_true",
                    help="bench_monitor.py's generated capture (--packets) instead of the "
                         "HTTP recorded in the test bed")
    a = ap.parse_args(argv)
    if not os.path.isdir(RULESET):
        print(f"no ruleset at {RULESET}", file=sys.stderr)
        return 2
    cap = a.capture or (None if a.synthetic else testbed_capture())
    if cap is None:
        print("note: no test bed recording (needs root); the generated capture instead",
              file=sys.stderr)
        cap = capture(a.packets)
    counts = [] if a.et else [int(x) for x in a.rules.split(",")]
    pats = patterns(max(counts)) if counts else []
    tmp = os.path.join(HERE, "out")
    os.makedirs(tmp, exist_ok=True)
    rows = []

    def timed(rules):
        runs = [child(cap, rules) for _ in range(a.repeat)]
        med = statistics.median(r["seconds"] for r in runs)
        r = dict(runs[-1])
        r["seconds"], r["runs"] = med, [round(x["seconds"], 3) for x in runs]
        return r

    base = timed("-")
    rows.append(("engine, no handler", base))
    for n in counts:
        path = os.path.join(tmp, f"bench-ids-{n}.rules")
        write_rules(path, pats[:n])
        rows.append((f"ids, {n} rules", timed(path)))
    if a.et:
        rows.append(("ids, ET Open", timed("et:" + RULESET)))
    print(f"capture {os.path.basename(cap)}: {base['packets']} packets, "
          f"{base['payload'] / 1e6:.0f} MB payload; median of {a.repeat} runs")
    print(f"{'run':22} {'seconds':>8} {'Mpps':>7} {'Gbit/s':>7} {'vs engine':>9} "
          f"{'loaded':>7} {'patterns':>8} {'candidates':>10} {'alerts':>8}")
    for name, r in rows:
        mpps = r["packets"] / r["seconds"] / 1e6
        gbps = r["payload"] * 8 / r["seconds"] / 1e9
        print(f"{name:22} {r['seconds']:8.3f} {mpps:7.3f} {gbps:7.2f} "
              f"{base['seconds'] / r['seconds']:9.2f} {r.get('loaded', '-'):>7} "
              f"{r.get('patterns', '-'):>8} {r.get('candidates', '-'):>10} "
              f"{r.get('alerts', '-'):>8}")
        if "alerts_by_sid" in r and a.et:
            top = sorted(r["alerts_by_sid"].items(), key=lambda kv: -kv[1])[:10]
            print(f"{'':22} runs {r['runs']}; load {r['load_s']:.1f} s, attach "
                  f"{r['attach_s']:.1f} s; alerts by sid: "
                  + (", ".join(f"{k}: {v}" for k, v in top) or "none"))
    if a.json_out:
        with open(a.json_out, "w") as fh:
            json.dump({n: r for n, r in rows}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
