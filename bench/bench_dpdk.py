#!/usr/bin/env python3
"""DPDK forwarding: mos's Python-driven loop vs its zero-copy helper vs dpdk-testpmd.

One run, one test bed (tests/_vethbed.py over mos.testing.testbed: client ns -- {a} |
forwarder | {b} -- server ns), the same net_af_packet vdev options for every forwarder. Each
round, for each forwarder in turn: start it, wait until a ping crosses, let
curl in the client namespace download a file from /dev/shm (200 MB by
default) served by Python's http.server in the server namespace, stop it.

  testpmd   dpdk-testpmd -l 0,1 ... -- --forward-mode=io --burst=64 --stats-period 1
            (forwarding on lcore 1; lcore 0 only prints stats)
  copy      tests/dpdk_forwarder.py copy: a Python loop over the port.h
            functions (rx burst of 64 on one port, tx copies on the other,
            rx_done), both directions, pinned to CPU 1
  zerocopy  tests/dpdk_forwarder.py zerocopy: a Python loop over
            mos_dpdk_forward (bursts of 64, the mbufs move), pinned to CPU 1

Then the loops' own cost, without kernel or wire: the same three forwarders
between two net_null vdevs (rx makes 64-byte frames without end, tx frees
them) for --null-seconds each; pkt/s forwarded. On veth the AF_PACKET path
and the CPUs shared with curl and the server are the ceiling; here the loop is.

Gbit/s = bytes curl received x 8 / curl's total time (TCP payload, HTTP
headers aside). pkt/s = frames the forwarder received on both ports / the
same time (ARP, ND and the probe pings count too: a few dozen). The median
of --rounds rounds is shown, with every round's figure. The ratio column is
against testpmd. The last line printed is one JSON object with every number.

Needs root, mos built with libdpdk, dpdk-testpmd, curl, ping, ethtool.
Everything it creates (namespaces, veths, the file, EAL runtime folders) is
removed at the end, also after an error; every wait has a time limit.

Usage:
  python3 bench/bench_dpdk.py [--size-mb 200] [--rounds 3] [--vdev-opts framecnt=...]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests"))
sys.path.insert(0, REPO)

from _vethbed import SERVER4, VethBed

FORWARDER = os.path.join(REPO, "tests", "dpdk_forwarder.py")
HTTP_PORT = 8098
MODES = ("testpmd", "copy", "zerocopy")


def check_prerequisites() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces, AF_PACKET)"
    from mos.ports import dpdk

    ok, why = dpdk.available()
    if not ok:
        return why
    for tool in ("dpdk-testpmd", "curl", "ping", "ethtool", "ip"):
        if not shutil.which(tool):
            return f"{tool} is not installed"
    return None


def stop(proc: subprocess.Popen, sig=signal.SIGTERM, timeout: float = 20) -> tuple[str, str]:
    """Stop a child we started (bounded); its stdout and stderr."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=10)
    return out or "", err or ""


def wait_for_ping(bed: VethBed, limit: float = 15) -> bool:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        r = subprocess.run(
            bed.in_client("ping", "-c", "1", "-W", "1", SERVER4),
            check=False,
            capture_output=True,
            timeout=10,
        )
        if r.returncode == 0:
            return True
    return False


def curl(bed: VethBed, size: int, timeout: float) -> tuple[int, float]:
    r = subprocess.run(
        bed.in_client(
            "curl",
            "-sS",
            "-o",
            "/dev/null",
            "--max-time",
            str(int(timeout)),
            "-w",
            "%{size_download} %{time_total}",
            f"http://{SERVER4}:{HTTP_PORT}/big.bin",
        ),
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout + 10,
    )
    if r.returncode != 0:
        raise RuntimeError(f"curl failed ({r.returncode}): {r.stderr.strip()}")
    got, secs = r.stdout.split()
    if int(got) != size:
        raise RuntimeError(f"curl got {got} bytes of {size}")
    return int(got), float(secs)


def run_testpmd(bed: VethBed, vdev_opts: str, size: int, timeout: float) -> dict:
    prefix = f"mosbench{os.getpid()}"
    opts = f",{vdev_opts}" if vdev_opts else ""
    cmd = [
        "dpdk-testpmd",
        "-l",
        "0,1",
        "--no-huge",
        "-m",
        "1024",
        "--no-pci",
        "--file-prefix",
        prefix,
        f"--vdev=net_af_packet0,iface={bed.a},qpairs=1{opts}",
        f"--vdev=net_af_packet1,iface={bed.b},qpairs=1{opts}",
        "--",
        "--forward-mode=io",
        "--burst=64",
        "--stats-period",
        "1",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        if not wait_for_ping(bed):
            raise RuntimeError("no ping crossed testpmd")
        got, secs = curl(bed, size, timeout)
    finally:
        out, _ = stop(proc, signal.SIGINT)
        shutil.rmtree(f"/var/run/dpdk/{prefix}", ignore_errors=True)
    acc = out[out.find("Accumulated forward statistics") :]
    m = re.search(
        r"RX-packets:\s*(\d+).*?TX-packets:\s*(\d+)\s+TX-dropped:\s*(\d+)", acc, re.DOTALL
    )
    if not m:
        raise RuntimeError("no forward statistics in testpmd's output:\n" + out[-1500:])
    rx, tx, dropped = map(int, m.groups())
    return {"bytes": got, "seconds": secs, "rx": rx, "tx": tx, "tx_dropped": dropped}


def run_testpmd_null(seconds: float) -> float:
    """Frames/s testpmd forwards between two net_null vdevs (median of its 1 s samples)."""
    prefix = f"mosbenchnull{os.getpid()}"
    cmd = [
        "dpdk-testpmd",
        "-l",
        "0,1",
        "--no-huge",
        "-m",
        "1024",
        "--no-pci",
        "--file-prefix",
        prefix,
        "--vdev=net_null0",
        "--vdev=net_null1",
        "--",
        "--forward-mode=io",
        "--burst=64",
        "--stats-period",
        "1",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(seconds + 2)  # EAL start, then `seconds` of 1 s samples
    finally:
        out, _ = stop(proc, signal.SIGINT)
        shutil.rmtree(f"/var/run/dpdk/{prefix}", ignore_errors=True)
    per_port = [int(x) for x in re.findall(r"Rx-pps:\s*(\d+)", out)]
    sums = [per_port[i] + per_port[i + 1] for i in range(0, len(per_port) - 1, 2)]
    sums = sums[1:]  # the first sample covers the start
    if not sums:
        raise RuntimeError("no throughput samples in testpmd's output:\n" + out[-1500:])
    return statistics.median(sums)


def run_mos_null(mode: str, seconds: float) -> float:
    """Frames/s the mos loop forwards between two net_null vdevs."""
    r = subprocess.run(
        [
            sys.executable,
            FORWARDER,
            mode,
            "null",
            "null",
            "--seconds",
            str(seconds),
            "--burst",
            "64",
            "--lcore",
            "1",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=seconds + 30,
    )
    lines = r.stdout.strip().splitlines()
    if r.returncode != 0 or not lines:
        raise RuntimeError(f"{mode} forwarder on net_null failed:\n{r.stderr[-1500:]}")
    st = json.loads(lines[-1])
    return (st["a"]["rx"] + st["b"]["rx"]) / st["seconds"]


def run_mos(bed: VethBed, mode: str, vdev_opts: str, size: int, timeout: float) -> dict:
    cmd = [
        sys.executable,
        FORWARDER,
        mode,
        bed.a,
        bed.b,
        "--seconds",
        str(timeout + 30),
        "--burst",
        "64",
        "--lcore",
        "1",
    ]
    if vdev_opts:
        cmd += ["--vdev-opts", vdev_opts]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        if not ready or proc.stdout.readline().strip() != "READY":
            raise RuntimeError(f"{mode} forwarder did not start")
        if not wait_for_ping(bed):
            raise RuntimeError(f"no ping crossed the {mode} forwarder")
        got, secs = curl(bed, size, timeout)
    finally:
        out, err = stop(proc)
    lines = out.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{mode} forwarder failed ({proc.returncode}):\n{err[-1500:]}")
    st = json.loads(lines[-1])
    a, b = st["a"], st["b"]
    return {
        "bytes": got,
        "seconds": secs,
        "rx": a["rx"] + b["rx"],
        "tx": a["tx"] + b["tx"],
        "tx_dropped": a["tx_dropped"] + b["tx_dropped"],
        "rx_dropped": a["rx_dropped"] + b["rx_dropped"],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size-mb", type=int, default=200, help="file size (MB, 10^6 bytes)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds (median shown)")
    ap.add_argument(
        "--vdev-opts",
        default="",
        help="extra net_af_packet options for every forwarder, e.g. framecnt=2048",
    )
    ap.add_argument("--timeout", type=float, default=60, help="curl time limit per download (s)")
    ap.add_argument(
        "--null-seconds", type=float, default=3, help="seconds per net_null run (0: skip that part)"
    )
    o = ap.parse_args()
    if 0 < o.null_seconds < 2:
        ap.error(f"--null-seconds {o.null_seconds}: give 0 (skip) or at least 2 "
                 "(testpmd prints one throughput sample per second)")
    why = check_prerequisites()
    if why:
        print(f"bench_dpdk: skipped: {why}")
        return 0

    size = o.size_mb * 10**6
    results: dict[str, list[dict]] = {m: [] for m in MODES}
    www = tempfile.mkdtemp(prefix="mos-bench-dpdk-", dir="/dev/shm")
    try:
        with open(os.path.join(www, "big.bin"), "wb") as f:
            f.writelines(os.urandom(10**6) for _ in range(o.size_mb))
        with VethBed(f"mb{os.getpid() % 10**7}") as bed:
            srv = subprocess.Popen(
                bed.in_server(
                    sys.executable,
                    "-m",
                    "http.server",
                    "--bind",
                    SERVER4,
                    "-d",
                    www,
                    str(HTTP_PORT),
                ),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                time.sleep(0.5)
                for rnd in range(o.rounds):
                    for mode in MODES:
                        if mode == "testpmd":
                            r = run_testpmd(bed, o.vdev_opts, size, o.timeout)
                        else:
                            r = run_mos(bed, mode, o.vdev_opts, size, o.timeout)
                        r["gbps"] = r["bytes"] * 8 / r["seconds"] / 1e9
                        r["pps"] = r["rx"] / r["seconds"]
                        results[mode].append(r)
                        print(
                            f"  round {rnd + 1} {mode:9s} {r['gbps']:6.2f} Gbit/s "
                            f"{r['pps'] / 1e3:8.0f} kpkt/s  tx_dropped {r['tx_dropped']}",
                            flush=True,
                        )
            finally:
                stop(srv, timeout=10)
    finally:
        shutil.rmtree(www, ignore_errors=True)

    null_pps: dict[str, float] = {}
    if o.null_seconds > 0:
        for mode in MODES:
            null_pps[mode] = (
                run_testpmd_null(o.null_seconds)
                if mode == "testpmd"
                else run_mos_null(mode, o.null_seconds)
            )
            print(f"  net_null  {mode:9s} {null_pps[mode] / 1e6:6.2f} Mpkt/s", flush=True)

    summary = {}
    for mode in MODES:
        rs = results[mode]
        summary[mode] = {
            "gbps": statistics.median(r["gbps"] for r in rs),
            "pps": statistics.median(r["pps"] for r in rs),
            "runs_gbps": [round(r["gbps"], 3) for r in rs],
            "tx_dropped": [r["tx_dropped"] for r in rs],
        }
    base = summary["testpmd"]["gbps"]
    print(
        f"\nDPDK forwarding, curl of {o.size_mb} MB over net_af_packet on veth "
        f"(median of {o.rounds}; vdev options: {o.vdev_opts or 'defaults'})"
    )
    print(f"{'forwarder':44s} {'Gbit/s':>7s} {'kpkt/s':>8s} {'vs testpmd':>10s}  runs (Gbit/s)")
    labels = {
        "testpmd": "dpdk-testpmd io (C, lcore 1)",
        "copy": "mos Python loop over rx/tx (copy, burst 64)",
        "zerocopy": "mos Python loop over mos_dpdk_forward",
    }
    for mode in MODES:
        s = summary[mode]
        print(
            f"{labels[mode]:44s} {s['gbps']:7.2f} {s['pps'] / 1e3:8.0f} "
            f"{s['gbps'] / base:9.2f}x  {s['runs_gbps']}"
        )
    if null_pps:
        print(f"\nthe loop alone: net_null vdevs, 64-byte frames, {o.null_seconds:g} s each")
        print(f"{'forwarder':44s} {'Mpkt/s':>7s} {'vs testpmd':>10s}")
        for mode in MODES:
            print(
                f"{labels[mode]:44s} {null_pps[mode] / 1e6:7.2f} "
                f"{null_pps[mode] / null_pps['testpmd']:9.2f}x"
            )
    print(
        json.dumps(
            {
                "size_mb": o.size_mb,
                "rounds": o.rounds,
                "vdev_opts": o.vdev_opts,
                "summary": summary,
                "runs": results,
                "null_pps": null_pps,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
