#!/usr/bin/env python3
"""mos in-line (`mos run -c CONFIG`) vs dpdk-testpmd vs the Linux bridge, same bed, same traffic.

One run, one test bed (`mos.testing.testbed.Testbed`, DESIGN 5):

    [ns cli] c0 198.18.0.1 ── c1 [forwarder, root ns] s1 ── s0 198.18.0.2 [ns srv]

Each round, each forwarder in turn joins c1 and s1; once a ping crosses it
(bounded wait) the same traffic goes through it, then it is stopped:

  bridge        Linux bridge (`Testbed.bridge`): the kernel baseline
  testpmd       dpdk-testpmd io mode, burst 64, on net_af_packet vdevs on c1/s1
                (forwarding lcore = --cpu)
  mos-afpacket  python3 -m mos run -c afpacket.yaml --no-progress: AF_PACKET
                ports, an app attaching one Monitor with no handlers (flows are
                tracked and reassembled), pinned to --cpu with taskset
  mos-dpdk      the same with the dpdk driver on the same vdevs as testpmd
                (EAL -l --cpu)
  mos-afpacket-edit  mos-afpacket with an app that removes the Server line
                from every HTTP response: every later frame of every flow is
                rewritten (sequence/acknowledgement translation, checksums)

Traffic, from the client namespace to a web server in the server namespace
(lighttpd when installed, else Python's http.server), files in /dev/shm:

  large   curl of a --size-mb file (200 MB; --quick 50 MB); Gbit/s = bytes
          curl received x 8 / curl's total time
  small   ab -n --ab-n -c --ab-c http://198.18.0.2/1k (a 1000-byte file,
          a new TCP connection per request): requests/s as ab reports it
  ping    ping -c 50 -i 0.01: RTT min and avg

pkt/s = frames that arrived on c1 and s1 from the hosts (kernel counters,
both directions) / the phase's time: the same meter for every forwarder.
lost % = the share of those frames that never left c1/s1 (tx counters)
during the curl phase: on this path the DPDK net_af_packet PMD loses a few
percent in the kernel behind the forwarder (testpmd and mos alike; their
own counters show no drop). The forwarders' own counters (testpmd's
accumulated statistics, mos's final JSON line) are kept per run in the JSON.

Every figure is the median over --rounds rounds (the rounds interleave the
forwarders, so drift in the machine's load hits all of them alike). Ratios:
mos / testpmd per mos driver (target >= 0.90) for Gbit/s and requests/s, of
the medians and "paired" (median of each round's mos / that round's
testpmd); latency added = forwarder RTT - bridge RTT.

Needs root, ip/ethtool, curl, ab (apache2-utils), ping, dpdk-testpmd, mos
built with its AF_PACKET and DPDK ports. A forwarder whose prerequisites
are missing is skipped with the reason. Everything started is stopped, the
bed and the files are removed at the end, also after an error or Ctrl-C;
every wait is bounded, and every child runs under coreutils `timeout`.

    python3 bench/bench_inline.py              # ~40 s: 200 MB x 3 rounds
    python3 bench/bench_inline.py --quick      # ~10 s: 50 MB, 1 round, ab -n 500
    python3 bench/bench_inline.py --rounds 5 --json-out bench/out/inline.json
    python3 bench/bench_inline.py --forwarders testpmd,mos-afpacket --afpacket-options rx_ring=v2
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)

from mos.testing.testbed import Testbed, TestbedError
from mos.testing.testbed import available as testbed_available

FORWARDERS = ("bridge", "testpmd", "mos-afpacket", "mos-dpdk", "mos-afpacket-edit")
LABELS = {
    "bridge": "bridge",
    "testpmd": "testpmd io",
    "mos-afpacket": "mos afpacket",
    "mos-dpdk": "mos dpdk",
    "mos-afpacket-edit": "mos afpacket+edit",
}
MOS_ROWS = ("mos-afpacket", "mos-dpdk", "mos-afpacket-edit")
TARGET_ROWS = ("mos-afpacket", "mos-dpdk")  # monitor on, no handlers: the 90% target
HOST_PIN: list[str] = []  # taskset prefix for the server, curl, ab and ping (--host-cpus)
TARGET = 0.90
HTTP_PORT = 80

APP = """\
import mos


def attach(engine):
    # monitor on, no handlers: every flow is tracked and both sides reassembled
    engine.attach(mos.Monitor())
"""

# Every response loses its Server header line: each flow's later frames are
# then translated (sequence and acknowledgement numbers, in C) as they leave.
# The handler runs once per flow, then stops listening to that side.
EDIT_APP = """\
import mos


def attach(engine):
    mon = engine.attach(mos.Monitor())

    @mon.on(mos.Event.PKT_IN, side=mos.Side.CLIENT)
    def strip_server(flow, side, event):
        p = flow.packet.payload
        if not p:
            return
        i = p.find(b"\\r\\nServer: ") if p.startswith(b"HTTP/") else -1
        if i >= 0:
            flow.packet.chomp(i + 2, p.index(b"\\r\\n", i + 2) - i)
        flow.stop_monitoring(side)
"""


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- machine --------------------------------------------------------------------------------


def cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


def loadavg() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return -1.0


# -- prerequisites ---------------------------------------------------------------------------


def why_not(name: str) -> str | None:
    """None when forwarder `name` can run here, else why not."""
    if name == "testpmd":
        return None if shutil.which("dpdk-testpmd") else "dpdk-testpmd is not installed"
    if name in ("mos-afpacket", "mos-afpacket-edit"):
        try:
            import mos.ports._afpacket  # noqa: F401
        except ImportError as exc:
            return f"mos AF_PACKET port not built: {exc}"
        return None
    if name == "mos-dpdk":
        try:
            from mos.ports import dpdk
        except ImportError as exc:
            return f"mos dpdk port not importable: {exc}"
        ok, why = dpdk.available()
        return None if ok else why
    return None


# -- children ---------------------------------------------------------------------------------


class Child:
    """A process we started in the root namespace, in its own session, under
    coreutils `timeout` (so it dies even if this script is killed); output to files."""

    def __init__(self, argv: list[str], workdir: str, tag: str, lifetime: float, **kw):
        self.out_path = os.path.join(workdir, f"{tag}.out")
        self.err_path = os.path.join(workdir, f"{tag}.err")
        # -k: SIGKILL that long after the first signal, ours included
        guard = []
        if shutil.which("timeout"):
            guard = ["timeout", "-s", "INT", "-k", "40", f"{lifetime:g}"]
        with open(self.out_path, "w") as out, open(self.err_path, "w") as err:
            self.proc = subprocess.Popen(
                [*guard, *argv],
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                **kw,
            )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGINT (what mos and testpmd expect), then SIGKILL the group; reap."""
        for sig, wait in ((signal.SIGINT, timeout), (signal.SIGKILL, 5.0)):
            if self.proc.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if sig == signal.SIGINT:
                    self.proc.send_signal(sig)  # `timeout` passes it on to the child
                else:
                    os.killpg(self.proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(wait)
        # whatever is left in the group (a worker that outlived its parent)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        return self.proc.returncode

    def output(self) -> tuple[str, str]:
        with open(self.out_path, errors="replace") as o, open(self.err_path, errors="replace") as e:
            return o.read(), e.read()


CHILDREN: list[Child] = []


def start(argv, workdir, tag, lifetime, **kw) -> Child:
    c = Child(argv, workdir, tag, lifetime, **kw)
    CHILDREN.append(c)
    return c


def stop_all() -> None:
    for c in CHILDREN:
        c.stop(timeout=5)
    CHILDREN.clear()


# -- the web server ---------------------------------------------------------------------------


def start_server(tb: Testbed, www: str, workdir: str, lifetime: float, force_python: bool):
    """lighttpd (or http.server) in the server namespace on 198.18.0.2:80; waits until it
    listens. Returns (process, name)."""
    lighttpd = shutil.which("lighttpd")
    if lighttpd and not force_python:
        conf = os.path.join(workdir, "lighttpd.conf")
        with open(conf, "w") as f:
            f.write(
                textwrap.dedent(f"""\
                server.document-root = "{www}"
                server.bind = "{tb.server_ip}"
                server.port = {HTTP_PORT}
                server.errorlog = "{workdir}/lighttpd.err"
                server.max-connections = 1024
                server.max-keep-alive-requests = 0
                """)
            )
        argv, name = [lighttpd, "-D", "-f", conf], "lighttpd " + _lighttpd_version(lighttpd)
    else:
        argv = [
            sys.executable,
            "-m",
            "http.server",
            "--bind",
            tb.server_ip,
            "--directory",
            www,
            str(HTTP_PORT),
        ]
        name = f"Python {platform.python_version()} http.server"
    log_path = os.path.join(workdir, "server.log")
    with open(log_path, "wb") as log_f:
        p = tb.popen_in(
            tb.server_ns,
            [*HOST_PIN, *argv],
            lifetime=lifetime,
            stdout=subprocess.DEVNULL,
            stderr=log_f,
        )
    deadline = time.monotonic() + 10
    while True:
        r = tb.run_in(tb.server_ns, ["ss", "-Hltn", f"sport = :{HTTP_PORT}"], timeout=5)
        if r.stdout.strip():
            return p, name
        if p.poll() is not None or time.monotonic() > deadline:
            with open(log_path, errors="replace") as f:
                why = f.read()[-1500:]
            raise RuntimeError(f"{name} did not start (exit {p.poll()}): {why}")
        time.sleep(0.05)


def _lighttpd_version(path: str) -> str:
    r = subprocess.run([path, "-v"], capture_output=True, text=True, timeout=10, check=False)
    m = re.search(r"lighttpd/(\S+)", r.stdout + r.stderr)
    return m.group(1) if m else "?"


# -- forwarders -------------------------------------------------------------------------------


def wait_forwarding(tb: Testbed, child: Child | None, limit: float = 30.0) -> float:
    """Seconds until one ping crosses; raises after `limit` or if `child` died."""
    t0 = time.monotonic()
    while not tb.ping(tb.client_ns, tb.server_ip, wait=0.5):
        if child is not None and not child.alive():
            out, err = child.output()
            raise RuntimeError(
                f"exited ({child.proc.returncode}) before forwarding: {gist(err or out)}"
            )
        if time.monotonic() - t0 > limit:
            raise RuntimeError(f"no ping crossed in {limit:g} s")
    return time.monotonic() - t0


def gist(text: str, limit: int = 800) -> str:
    """The error lines of a child's output (mos's own, else the tail without EAL chatter)."""
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    errs = [ln for ln in lines if ln.startswith("mos: error") or "Error" in ln]
    if not errs:
        errs = [ln for ln in lines if not ln.startswith(("EAL:", "TELEMETRY:"))] or lines
    return " / ".join(errs)[-limit:]


def vdevs(tb: Testbed, opts: str) -> list[str]:
    extra = f",{opts}" if opts else ""
    return [
        f"--vdev=net_af_packet0,iface={tb.c1}{extra}",
        f"--vdev=net_af_packet1,iface={tb.s1}{extra}",
    ]


def eal_base(prefix: str) -> list[str]:
    return ["--no-huge", "-m", "1024", "--no-pci", "--file-prefix", prefix]


@contextlib.contextmanager
def forwarder(name: str, tb: Testbed, o, workdir: str, tag: str, result: dict):
    """Run forwarder `name` between c1 and s1 for the duration of the block; on leaving,
    its own counters go into result["counters"]."""
    if name == "bridge":
        with tb.bridge():
            result["ready_s"] = wait_forwarding(tb, None)
            yield
        return
    prefix = f"mosbi{os.getpid()}{tag}"
    if name == "testpmd":
        argv = [
            "dpdk-testpmd",
            "-l",
            f"{o.main_cpu},{o.cpu}",
            *eal_base(prefix),
            *vdevs(tb, o.vdev_opts),
            "--",
            "--forward-mode=io",
            "--burst=64",
            "--stats-period",
            "1",
        ]
        child = start(argv, workdir, tag, o.lifetime)
    else:
        cfg = os.path.join(workdir, f"{tag}.yaml")
        app = os.path.join(workdir, f"{name}_app.py")
        with open(app, "w") as f:
            f.write(EDIT_APP if name == "mos-afpacket-edit" else APP)
        if name in ("mos-afpacket", "mos-afpacket-edit"):
            afp_opts = ""
            if o.afpacket_options:
                afp_opts = (
                    ", options: {"
                    + ", ".join(f"{k}: {json.dumps(v)}" for k, v in o.afpacket_options.items())
                    + "}"
                )
            text = textwrap.dedent(f"""\
                mode: inline
                ports:
                  - {{name: west, driver: afpacket, iface: {tb.c1}{afp_opts}}}
                  - {{name: east, driver: afpacket, iface: {tb.s1}{afp_opts}}}
                forward: [[west, east]]
                app: {app}
                """)
            pin = ["taskset", "-c", str(o.cpu)] if shutil.which("taskset") else []
        else:
            eal = ", ".join(
                json.dumps(a)
                for a in [*eal_base(prefix), "-l", str(o.cpu), *vdevs(tb, o.vdev_opts)]
            )
            text = textwrap.dedent(f"""\
                mode: inline
                dpdk:
                  eal_args: [{eal}]
                ports:
                  - {{name: west, driver: dpdk, port_id: 0}}
                  - {{name: east, driver: dpdk, port_id: 1}}
                forward: [[west, east]]
                app: {app}
                """)
            pin = []  # the EAL pins the worker to lcore --cpu
        with open(cfg, "w") as f:
            f.write(text)
        env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
        argv = [*pin, sys.executable, "-m", "mos", "run", "-c", cfg, "--no-progress"]
        child = start(argv, workdir, tag, o.lifetime, env=env, cwd=REPO)
    try:
        result["ready_s"] = wait_forwarding(tb, child)
        yield
    finally:
        t0 = time.monotonic()
        rc = child.stop()
        result["stop_s"] = round(time.monotonic() - t0, 3)
        CHILDREN.remove(child)
        shutil.rmtree(f"/var/run/dpdk/{prefix}", ignore_errors=True)
        out, err = child.output()
        try:
            result["counters"] = (
                parse_testpmd(out) if name == "testpmd" else parse_mos(out, err, rc)
            )
        except RuntimeError as exc:
            result["counters"] = {"error": str(exc)}


def parse_testpmd(out: str) -> dict:
    acc = out[out.find("Accumulated forward statistics") :]
    m = re.search(
        r"RX-packets:\s*(\d+)\s+RX-dropped:\s*(\d+).*?"
        r"TX-packets:\s*(\d+)\s+TX-dropped:\s*(\d+)",
        acc,
        re.DOTALL,
    )
    if not m:
        raise RuntimeError("no forward statistics in testpmd's output: " + out[-800:])
    rx, rx_dropped, tx, tx_dropped = map(int, m.groups())
    return {"rx": rx, "tx": tx, "rx_dropped": rx_dropped, "tx_dropped": tx_dropped}


def parse_mos(out: str, err: str, rc: int | None) -> dict:
    lines = [ln for ln in out.strip().splitlines() if ln.startswith("{")]
    if rc != 0 or not lines:
        raise RuntimeError(f"mos run exited {rc}: {gist(err)}")
    c = json.loads(lines[-1])
    ports = c["ports"].values()
    return {
        "rx": sum(p["rx"] for p in ports),
        "tx": sum(p["tx"] for p in ports),
        "dropped": sum(p["dropped"] for p in ports),
        "tx_dropped": sum(p["tx_dropped"] for p in ports),
        "kernel_dropped": sum(p.get("kernel_dropped", 0) for p in ports),
        "flows": c.get("flows"),
        "packets": c.get("packets"),
        "tcp": c.get("tcp"),
        "non_tcp": c.get("non_tcp"),
        "errors": c.get("errors"),
    }


# -- traffic ----------------------------------------------------------------------------------


def frames(tb: Testbed) -> tuple[int, int]:
    """(frames the hosts sent into c1+s1, frames the forwarder sent out of c1+s1)."""
    rx = tx = 0
    for dev in (tb.c1, tb.s1):
        with open(f"/sys/class/net/{dev}/statistics/rx_packets") as f:
            rx += int(f.read())
        with open(f"/sys/class/net/{dev}/statistics/tx_packets") as f:
            tx += int(f.read())
    return rx, tx


def curl_large(tb: Testbed, size: int, timeout: float) -> dict:
    f0 = frames(tb)
    r = tb.run_in(
        tb.client_ns,
        [
            *HOST_PIN,
            "curl",
            "-sS",
            "-o",
            "/dev/null",
            "--max-time",
            str(int(timeout)),
            "-w",
            "%{size_download} %{time_total}",
            f"http://{tb.server_ip}/big.bin",
        ],
        timeout=timeout + 10,
    )
    f1 = frames(tb)
    if r.returncode != 0:
        raise RuntimeError(f"curl failed ({r.returncode}): {r.stderr.strip()[-300:]}")
    got, secs = r.stdout.split()
    got, secs = int(got), float(secs)
    if got != size:
        raise RuntimeError(f"curl got {got} bytes of {size}")
    return {
        "bytes": got,
        "seconds": secs,
        "gbps": got * 8 / secs / 1e9,
        "frames_in": f1[0] - f0[0],
        "frames_out": f1[1] - f0[1],
        "pps": (f1[0] - f0[0]) / secs,
    }


def ab_small(tb: Testbed, n: int, c: int, timeout: float) -> dict:
    f0 = frames(tb)
    r = tb.run_in(
        tb.client_ns,
        [
            *HOST_PIN,
            "ab",
            "-q",
            "-n",
            str(n),
            "-c",
            str(c),
            "-s",
            "10",
            f"http://{tb.server_ip}/1k",
        ],
        timeout=timeout,
    )
    f1 = frames(tb)
    out = r.stdout

    def num(pat):
        m = re.search(pat, out)
        return float(m.group(1)) if m else None

    rps = num(r"Requests per second:\s*([\d.]+)")
    secs = num(r"Time taken for tests:\s*([\d.]+)")
    done = num(r"Complete requests:\s*(\d+)")
    failed = num(r"Failed requests:\s*(\d+)")
    if r.returncode != 0 or rps is None or not secs:
        raise RuntimeError(f"ab failed ({r.returncode}): {(r.stderr or out).strip()[-300:]}")
    if failed:
        raise RuntimeError(f"ab: {failed:.0f} of {n} requests failed")
    return {
        "rps": rps,
        "seconds": secs,
        "complete": int(done or 0),
        "ms_per_request": num(r"Time per request:\s*([\d.]+) \[ms\] \(mean\)"),
        "frames_in": f1[0] - f0[0],
        "frames_out": f1[1] - f0[1],
        "pps": (f1[0] - f0[0]) / secs,
    }


def ping_rtt(tb: Testbed, count: int) -> dict:
    r = tb.run_in(
        tb.client_ns,
        [*HOST_PIN, "ping", "-n", "-q", "-c", str(count), "-i", "0.01", "-W", "1", tb.server_ip],
        timeout=count * 0.05 + 15,
    )
    m = re.search(r"= ([\d.]+)/([\d.]+)/([\d.]+)/([\d.]+) ms", r.stdout)
    loss = re.search(r"([\d.]+)% packet loss", r.stdout)
    if not m:
        raise RuntimeError(f"ping failed ({r.returncode}): {(r.stderr or r.stdout).strip()[-300:]}")
    mn, avg, mx, mdev = (float(x) * 1000 for x in m.groups())
    return {
        "min_us": mn,
        "avg_us": avg,
        "max_us": mx,
        "mdev_us": mdev,
        "loss_pct": float(loss.group(1)) if loss else None,
    }


def measure(tb: Testbed, o, size: int) -> dict:
    res: dict = {}
    for key, fn in (
        ("large", lambda: curl_large(tb, size, o.timeout)),
        ("small", lambda: ab_small(tb, o.ab_n, o.ab_c, o.timeout)),
        ("ping", lambda: ping_rtt(tb, o.ping_count)),
    ):
        try:
            res[key] = fn()
        except (RuntimeError, subprocess.SubprocessError, OSError, ValueError) as exc:
            res[key] = {"error": str(exc)}
    return res


# -- summary ----------------------------------------------------------------------------------


def med(runs: list[dict], phase: str, key: str) -> float | None:
    xs = [
        r[phase][key] for r in runs if phase in r and key in r[phase] and r[phase][key] is not None
    ]
    return statistics.median(xs) if xs else None


def summarize(results: dict[str, list[dict]]) -> dict:
    s: dict = {}
    for name, runs in results.items():
        errors = sorted(
            {
                f"{p}: {r[p]['error']}"
                for r in runs
                for p in ("large", "small", "ping")
                if isinstance(r.get(p), dict) and "error" in r[p]
            }
            | {r["error"] for r in runs if "error" in r}
        )
        for r in runs:  # frames that reached the forwarder but never left it (large transfer)
            lg = r.get("large", {})
            if lg.get("frames_in"):
                lg["lost_pct"] = 100 * (lg["frames_in"] - lg["frames_out"]) / lg["frames_in"]
        s[name] = {
            "gbps": med(runs, "large", "gbps"),
            "large_pps": med(runs, "large", "pps"),
            "large_lost_pct": med(runs, "large", "lost_pct"),
            "rps": med(runs, "small", "rps"),
            "small_pps": med(runs, "small", "pps"),
            "rtt_avg_us": med(runs, "ping", "avg_us"),
            "rtt_min_us": med(runs, "ping", "min_us"),
            "runs_gbps": [
                round(r["large"]["gbps"], 3) for r in runs if "gbps" in r.get("large", {})
            ],
            "runs_rps": [round(r["small"]["rps"]) for r in runs if "rps" in r.get("small", {})],
            "errors": errors,
        }
    return s


def ratios(s: dict, results: dict[str, list[dict]]) -> dict:
    """mos / testpmd: of the medians, and the median of per-round ratios ("paired": each
    round's mos run against the testpmd run just before it, which cancels slow drift)."""
    out: dict = {}
    base = s.get("testpmd", {})
    for name in MOS_ROWS:
        if name not in s:
            continue
        r: dict = {}
        for key in ("gbps", "rps", "large_pps", "small_pps"):
            a, b = s[name].get(key), base.get(key)
            r[key] = a / b if a is not None and b else None
        for phase, key in (("large", "gbps"), ("small", "rps")):
            per_round = {
                x["round"]: x[phase][key]
                for x in results.get("testpmd", [])
                if key in x.get(phase, {})
            }
            pairs = [
                x[phase][key] / per_round[x["round"]]
                for x in results[name]
                if key in x.get(phase, {}) and per_round.get(x["round"])
            ]
            r[f"paired_{key}"] = statistics.median(pairs) if pairs else None
            r[f"paired_{key}_runs"] = [round(v, 3) for v in pairs]
        r["meets_target"] = (
            None  # the target is for the monitor with no handlers
            if r["gbps"] is None or r["rps"] is None or name not in TARGET_ROWS
            else r["gbps"] >= TARGET and r["rps"] >= TARGET
        )
        out[name] = r
    return out


def added_latency(s: dict) -> dict:
    br = s.get("bridge", {})
    out = {}
    for name, row in s.items():
        if name == "bridge":
            continue
        out[name] = {
            k: (row[f"rtt_{k}_us"] - br[f"rtt_{k}_us"])
            if row.get(f"rtt_{k}_us") is not None and br.get(f"rtt_{k}_us") is not None
            else None
            for k in ("avg", "min")
        }
    return out


def fmt(x, spec: str, none: str = "-") -> str:
    return none if x is None else format(x, spec)


HEAD = [
    "forwarder",
    "Gbit/s",
    "kpkt/s",
    "lost%",
    "req/s",
    "kpkt/s",
    "RTTavg",
    "RTTmin",
    "+RTT",
    "Gb÷pmd",
    "rq÷pmd",
]


CAPTION = (
    "curl: Gbit/s and kpkt/s (frames into c1+s1 per second, kernel counters), lost% = of "
    "those, the share that never left c1/s1; ab: req/s, kpkt/s; ping: RTT avg/min in µs, "
    "+RTT = avg minus the bridge's; Gb÷pmd, rq÷pmd = Gbit/s and req/s over testpmd's"
)


def table_rows(s: dict, rat: dict, lat: dict) -> list[list[str]]:
    rows = []
    for name, row in s.items():
        r = rat.get(name, {})
        la = lat.get(name, {})
        one = "1.00" if name == "testpmd" else ""
        rows.append(
            [
                LABELS[name],
                fmt(row["gbps"], ".2f"),
                fmt(row["large_pps"] and row["large_pps"] / 1e3, ".0f"),
                fmt(row["large_lost_pct"] and max(0.0, row["large_lost_pct"]), ".2f"),
                fmt(row["rps"], ",.0f"),
                fmt(row["small_pps"] and row["small_pps"] / 1e3, ".1f"),
                fmt(row["rtt_avg_us"], ".0f"),
                fmt(row["rtt_min_us"], ".0f"),
                fmt(la.get("avg"), "+.0f", "" if name == "bridge" else "-"),
                fmt(r.get("gbps"), ".2f", one),
                fmt(r.get("rps"), ".2f", one),
            ]
        )
    return rows


def print_table(title: str, head, rows, notes: list[str]) -> None:
    if sys.stdout.isatty():
        try:
            from rich.console import Console
            from rich.table import Table
        except ImportError:
            pass
        else:
            t = Table(title=title, title_justify="left", caption=CAPTION, caption_justify="left")
            for i, h in enumerate(head):
                t.add_column(h, justify="left" if i == 0 else "right")
            for r in rows:
                t.add_row(*r)
            con = Console()
            con.print(t)
            for n in notes:
                con.print(n, highlight=False)
            return
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    print(title)
    print(textwrap.fill(CAPTION, 100))
    print(
        "  ".join(
            h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(head, widths))
        )
    )
    for r in rows:
        print(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))
            )
        )
    for n in notes:
        print(n)


# -- main -------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--quick", action="store_true", help="smoke run: 50 MB, 1 round, ab -n 500, 20 pings"
    )
    ap.add_argument("--size-mb", type=int, help="large file, MB of 10^6 bytes (200; quick 50)")
    ap.add_argument("--rounds", type=int, help="rounds, medians shown (3; quick 1)")
    ap.add_argument("--ab-n", type=int, help="ab requests per run (2000; quick 500)")
    ap.add_argument("--ab-c", type=int, default=8, help="ab concurrency (8)")
    ap.add_argument("--ping-count", type=int, help="pings per run (50; quick 20)")
    ap.add_argument(
        "--forwarders",
        default=",".join(FORWARDERS),
        help=f"comma-separated subset of {','.join(FORWARDERS)}",
    )
    ap.add_argument(
        "--cpu",
        type=int,
        default=1,
        help="CPU of the forwarding loop: testpmd's forwarding lcore, mos-dpdk's "
        "lcore, mos-afpacket's taskset (1)",
    )
    ap.add_argument(
        "--host-cpus",
        default="auto",
        help="CPUs (taskset list) of the web server, curl, ab and ping; auto: every CPU "
        "but --cpu (none on a 1-CPU machine); all: no pinning",
    )
    ap.add_argument("--main-cpu", type=int, default=0, help="testpmd's main (stats) lcore (0)")
    ap.add_argument(
        "--vdev-opts",
        default="",
        help="extra net_af_packet options for testpmd and mos-dpdk, e.g. framecnt=2048",
    )
    ap.add_argument(
        "--afpacket-options",
        default="",
        metavar="K=V,...",
        help="options: of mos-afpacket's ports, e.g. rx_ring=v2 or retire_ms=1 "
        "(integers are passed as integers)",
    )
    ap.add_argument(
        "--python-server",
        action="store_true",
        help="use Python's http.server even when lighttpd is installed",
    )
    ap.add_argument("--timeout", type=float, default=60, help="limit per curl / ab run (s)")
    ap.add_argument(
        "--budget",
        type=float,
        default=420,
        help="no new round starts after this many seconds (420)",
    )
    ap.add_argument("--json-out", default="", help="also write the JSON line to this file")
    o = ap.parse_args()
    q = o.quick
    o.size_mb = o.size_mb or (50 if q else 200)
    o.rounds = o.rounds or (1 if q else 3)
    o.ab_n = o.ab_n or (500 if q else 2000)
    o.ping_count = o.ping_count or (20 if q else 50)
    o.lifetime = 3 * o.timeout + 120  # no child outlives one forwarder's turn by much
    o.afpacket_options = parse_kv(ap, o.afpacket_options)
    if o.host_cpus == "auto":
        others = sorted(os.sched_getaffinity(0) - {o.cpu})
        o.host_cpus = ",".join(map(str, others)) if others else "all"
    if o.host_cpus != "all" and shutil.which("taskset"):
        HOST_PIN[:] = ["taskset", "-c", o.host_cpus]
    names = [n.strip() for n in o.forwarders.split(",") if n.strip()]
    bad = [n for n in names if n not in FORWARDERS]
    if bad:
        ap.error(f"--forwarders: unknown {bad}; choose from {list(FORWARDERS)}")

    why = testbed_available()
    if why:
        print(f"bench_inline: skipped: {why}")
        return 0
    for tool, pkg in (
        ("curl", "curl"),
        ("ab", "apache2-utils"),
        ("ping", "iputils-ping"),
        ("ss", "iproute2"),
    ):
        if not shutil.which(tool):
            print(f"bench_inline: skipped: {tool} is not installed (apt-get install {pkg})")
            return 0
    skipped = {}
    for n in list(names):
        w = why_not(n)
        if w:
            skipped[n] = w
            names.remove(n)
            log(f"bench_inline: {n} skipped: {w}")

    t_start = time.monotonic()
    load0 = loadavg()
    if load0 > 0.5:
        log(
            f"bench_inline: load average {load0:.2f} at the start: other work on this "
            f"{os.cpu_count()}-CPU machine shows up in the figures"
        )
    size = o.size_mb * 10**6
    results: dict[str, list[dict]] = {n: [] for n in names}
    server_name = "?"
    workdir = tempfile.mkdtemp(prefix="mos-bench-inline-", dir="/dev/shm")
    www = os.path.join(workdir, "www")
    os.mkdir(www)
    old_term = signal.signal(signal.SIGTERM, _interrupt)
    rounds_done = 0
    try:
        with open(os.path.join(www, "big.bin"), "wb") as f:
            f.writelines(os.urandom(10**6) for _ in range(o.size_mb))
        with open(os.path.join(www, "1k"), "wb") as f:
            f.write(os.urandom(1000))
        with Testbed(prefix=f"mosbi{os.getpid() % 10**6}") as tb:
            srv, server_name = start_server(tb, www, workdir, o.budget + 600, o.python_server)
            log(
                f"bench_inline: bed {tb.prefix}, server {server_name}, {o.size_mb} MB file, "
                f"{o.rounds} round(s), forwarders {', '.join(names)}"
            )
            for rnd in range(o.rounds):
                if rnd and time.monotonic() - t_start > o.budget:
                    log(
                        f"bench_inline: budget of {o.budget:g} s spent: stopping after "
                        f"{rnd} round(s)"
                    )
                    break
                for name in names:
                    run: dict = {"round": rnd + 1}
                    try:
                        with forwarder(name, tb, o, workdir, f"{name}-{rnd}", run):
                            run.update(measure(tb, o, size))
                    except (RuntimeError, TestbedError, OSError, subprocess.SubprocessError) as e:
                        run["error"] = str(e)
                    results[name].append(run)
                    log(f"  round {rnd + 1} {name:13s} " + one_line(run))
                rounds_done = rnd + 1
            tb.stop(srv)
    except KeyboardInterrupt:
        log("bench_inline: interrupted: cleaning up")
        return 130
    finally:
        stop_all()
        signal.signal(signal.SIGTERM, old_term)
        shutil.rmtree(workdir, ignore_errors=True)

    s = summarize(results)
    rat = ratios(s, results)
    lat = added_latency(s)
    cpu = cpu_model()
    title = (
        f"mos in-line vs dpdk-testpmd vs Linux bridge: veth test bed, offloads off, "
        f"{os.cpu_count()} CPUs ({cpu}), kernel {platform.release()}\n"
        f"large: curl {o.size_mb} MB from {server_name}; small: ab -n {o.ab_n} -c {o.ab_c} "
        f"/1k; ping -c {o.ping_count} -i 0.01; medians of {rounds_done} round(s); "
        f"loop on CPU {o.cpu}"
        + (f"; mos-afpacket options {o.afpacket_options}" if o.afpacket_options else "")
        + (f"; vdev options {o.vdev_opts}" if o.vdev_opts else "")
    )
    head, rows = HEAD, table_rows(s, rat, lat)
    notes = []
    for name, r in rat.items():
        if r["gbps"] is None and r["rps"] is None:
            continue
        verdict = {True: "meets", False: "BELOW", None: "n/a"}[r["meets_target"]]
        notes.append(
            f"{LABELS[name]} / testpmd: Gbit/s {fmt(r['gbps'], '.2f')} "
            f"(paired by round {fmt(r['paired_gbps'], '.2f')}), req/s "
            f"{fmt(r['rps'], '.2f')} (paired {fmt(r['paired_rps'], '.2f')}) -> "
            + (f"{verdict} the {TARGET:.0%} target" if name in TARGET_ROWS
               else "a handler and edits on every flow: no target")
        )
    for name, la in lat.items():
        if la["avg"] is not None:
            notes.append(
                f"{LABELS[name]}: RTT {la['avg']:+.0f} µs avg, {la['min']:+.0f} µs min "
                f"vs the bridge"
            )
    for name, row in s.items():
        for e in row["errors"]:
            notes.append(f"{LABELS[name]}: error: {e}")
    for name, w in skipped.items():
        notes.append(f"{LABELS[name]}: skipped: {w}")
    load1 = loadavg()
    if max(load0, load1) > 0.5:
        notes.append(
            f"load average {load0:.2f} at the start, {load1:.2f} at the end: "
            f"the machine was not idle"
        )
    print()
    print_table(title, head, rows, notes)
    doc = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "loadavg_start": load0,
        "loadavg_end": load1,
        "server": server_name,
        "options": {
            "size_mb": o.size_mb,
            "rounds": o.rounds,
            "rounds_done": rounds_done,
            "ab_n": o.ab_n,
            "ab_c": o.ab_c,
            "ping_count": o.ping_count,
            "host_cpus": o.host_cpus,
            "cpu": o.cpu,
            "vdev_opts": o.vdev_opts,
            "afpacket_options": o.afpacket_options,
            "quick": q,
        },
        "summary": s,
        "ratios_vs_testpmd": rat,
        "added_latency_us_vs_bridge": lat,
        "target": TARGET,
        "skipped": skipped,
        "runs": results,
        "total_seconds": round(time.monotonic() - t_start, 1),
    }
    line = json.dumps(doc)
    if o.json_out:
        os.makedirs(os.path.dirname(os.path.abspath(o.json_out)), exist_ok=True)
        with open(o.json_out, "w") as f:
            f.write(line + "\n")
    print(line)
    return 0


def parse_kv(ap, text: str) -> dict:
    out: dict = {}
    for item in filter(None, (x.strip() for x in text.split(","))):
        k, eq, v = item.partition("=")
        if not eq or not k:
            ap.error(f"--afpacket-options: {item!r} is not KEY=VALUE")
        out[k] = int(v) if re.fullmatch(r"-?\d+", v) else v
    return out


def _interrupt(signum, frame):
    raise KeyboardInterrupt  # SIGTERM: unwind, so the bed and the children are removed


def one_line(run: dict) -> str:
    if "error" in run:
        return "error: " + run["error"][:300]
    parts = []
    lg, sm, pg = run.get("large", {}), run.get("small", {}), run.get("ping", {})
    parts.append(
        f"{lg['gbps']:5.2f} Gbit/s {lg['pps'] / 1e3:5.0f} kpkt/s"
        if "gbps" in lg
        else f"large error: {lg.get('error', '?')[:120]}"
    )
    parts.append(
        f"{sm['rps']:7.0f} req/s" if "rps" in sm else f"ab error: {sm.get('error', '?')[:120]}"
    )
    parts.append(
        f"rtt {pg['avg_us']:4.0f}/{pg['min_us']:.0f} µs"
        if "avg_us" in pg
        else f"ping error: {pg.get('error', '?')[:120]}"
    )
    if "stop_s" in run:
        parts.append(f"stop {run['stop_s']:.1f} s")
    c = run.get("counters")
    if c:
        parts.append(
            "counters: "
            + (
                c["error"][:200]
                if "error" in c
                else f"rx {c['rx']} tx {c['tx']} drops "
                f"{c.get('tx_dropped', 0) + c.get('dropped', 0) + c.get('rx_dropped', 0) + c.get('kernel_dropped', 0)}"
            )
        )
    return " | ".join(parts)


if __name__ == "__main__":
    sys.exit(main())
