#!/usr/bin/env python3
"""The end host against Linux: ``mos serve`` on mos's own stack and lighttpd
on the Linux stack, each serving the same files, measured in the same run
by the same client (wrk, else ab) from the client namespace of the test bed.

    [ns cli] c0 ── c1: mos serve (AF_PACKET, owns 198.18.0.2)       run 1
    [ns cli] c0 ── c1 ═ bridge ═ s1 ── s0 [ns srv]: lighttpd        run 2

Figures, for a 64-byte file: connections/s (a new connection per request,
``Connection: close``) and requests/s (keep-alive); and bulk Gbit/s (a
20 MB file).  Both servers on one core (mos serve is one process;
lighttpd is one process by design).  Needs root, the test bed tools and
lighttpd and wrk (``make bench`` installs them).

    sudo python3 bench/bench_endhost.py [--seconds 5] [--connections 50] [--aiohttp]

With --aiohttp, also one aiohttp application (64-byte answers), run on
mos.aio's loop and on asyncio's own loop over Linux sockets.

Target (issue 9): mos at or above Linux + lighttpd in connections/s (goal 2x).
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)

from mos.testing.testbed import SERVER_IP, Testbed  # noqa: E402


def wrk(tb, url, seconds, conns, close):
    hdr = ["-H", "Connection: close"] if close else []
    p = subprocess.run(["ip", "netns", "exec", tb.client_ns, "taskset", "-c", "0", "wrk", "-t", "1",
                        "-c", str(conns),
                        "-d", f"{seconds}s", *hdr, url], capture_output=True, text=True,
                       timeout=seconds + 30)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", p.stdout)
    tr = re.search(r"Transfer/sec:\s+([\d.]+)(\w+)", p.stdout)
    errs = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", p.stdout)
    scale = {"B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9}
    return {"rps": float(rps.group(1)) if rps else 0.0,
            "gbps": float(tr.group(1)) * scale.get(tr.group(2), 1) * 8 / 1e9 if tr else 0.0,
            "errors": errs.group(0) if errs else ""}


# The same aiohttp application on both stacks: argv[1] is a mos config
# (mos.aio's loop) or "kernel" (asyncio's own loop on Linux sockets)
AIOHTTP_APP = """
import sys
from aiohttp import web
async def small(request):
    return web.Response(body=b"x" * 64)
app = web.Application()
app.router.add_get("/small", small)
loop = None
if sys.argv[1] != "kernel":
    import mos.aio
    loop = mos.aio.new_event_loop(sys.argv[1])
web.run_app(app, host=sys.argv[2], port=8080, loop=loop, print=lambda *a: print(*a, flush=True),
            access_log=None)
"""


def _aiohttp(tb, argv_prefix, cfg, host, seconds, conns):
    """req/s (keep-alive) and conn/s of the aiohttp app, started with argv_prefix."""
    app = subprocess.Popen([*argv_prefix, "taskset", "-c", "1", sys.executable, "-u", "-c",
                            AIOHTTP_APP, cfg, host], cwd=REPO, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONPATH=REPO))
    try:
        for _ in range(600):
            if b"Running on" in app.stdout.readline() or app.poll() is not None:
                break
        url = f"http://{SERVER_IP}:8080/small"
        return {"conn/s": wrk(tb, url, seconds, conns, close=True)["rps"],
                "req/s": wrk(tb, url, seconds, conns, close=False)["rps"]}
    finally:
        app.terminate()
        app.wait(30)


def measure(tb, base, seconds, conns):
    return {"conn/s": wrk(tb, base + "/small", seconds, conns, close=True)["rps"],
            "req/s": wrk(tb, base + "/small", seconds, conns, close=False)["rps"],
            "bulk Gbit/s": wrk(tb, base + "/big", seconds, 4, close=False)["gbps"]}


def table(title: str, results: dict, mos_row: str, linux_row: str) -> None:
    """The figures of each server, then mos's over Linux's."""
    cols = list(next(iter(results.values())))
    print(f"{title:20} " + " ".join(f"{c:>12}" for c in cols))
    for name, r in results.items():
        print(f"{name:20} " + " ".join(f"{r[c]:12.2f}" if "Gbit" in c else f"{r[c]:12.0f}"
                                       for c in cols))
    m, lx = results[mos_row], results[linux_row]
    print("ratio mos / Linux:   " + "  ".join(
        f"{k} {m[k] / lx[k]:.2f}" if lx[k] else f"{k} -" for k in cols))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--aiohttp", action="store_true",
                    help="also an aiohttp app on mos.aio against the same app on Linux")
    args = ap.parse_args()
    for tool in ("wrk", "lighttpd"):
        if shutil.which(tool) is None:
            print(f"bench_endhost: needs {tool} (make bench installs it)", file=sys.stderr)
            return 2
    if os.geteuid() != 0:
        print("bench_endhost: needs root (test bed)", file=sys.stderr)
        return 2
    root = tempfile.mkdtemp(prefix="mosbench")
    with open(os.path.join(root, "small"), "wb") as fh:
        fh.write(b"x" * 64)
    with open(os.path.join(root, "big"), "wb") as fh:
        fh.write(os.urandom(20 << 20))
    results = {}
    with Testbed() as tb:
        # tens of thousands of short connections a second: the client closes
        # first and keeps TIME-WAIT; let it reuse those ports (both servers
        # alike), or the second run starves for ports
        subprocess.run(["ip", "netns", "exec", tb.client_ns, "sysctl", "-q", "-w",
                        "net.ipv4.tcp_tw_reuse=1", "net.ipv4.ip_local_port_range=1024 65000"],
                       check=True)
        cfg = os.path.join(root, "serve.yaml")
        with open(cfg, "w") as fh:
            fh.write(f"mode: endhost\nports:\n  - {{name: wire, driver: afpacket, iface: {tb.c1}}}\n"
                     f"endhost:\n  addresses: [{{port: wire, address: {SERVER_IP}/24}}]\n")
        log = open(os.path.join(root, "serve.log"), "w+")
        srv = subprocess.Popen(["taskset", "-c", "1", sys.executable, "-m", "mos", "serve", "-c",
                                cfg, "--root", root], cwd=REPO, stdout=log, stderr=log)
        try:
            for _ in range(300):       # its start line says it listens
                time.sleep(0.05)
                if srv.poll() is not None or os.path.getsize(log.name):
                    break
            results["mos serve"] = measure(tb, f"http://{SERVER_IP}", args.seconds,
                                           args.connections)
        finally:
            srv.terminate()
            srv.wait(timeout=30)
            log.seek(0)
            print("mos serve: " + log.read().strip().replace("\n", "\n  "), file=sys.stderr)
        if args.aiohttp:
            aio_results = {"aiohttp on mos.aio": _aiohttp(tb, [], cfg, "0.0.0.0", args.seconds,
                                                          args.connections)}
        conf = os.path.join(root, "lighttpd.conf")
        with open(conf, "w") as fh:
            fh.write(f'server.document-root = "{root}"\nserver.port = 80\n'
                     f'server.bind = "{SERVER_IP}"\nserver.max-keep-alive-requests = 100000\n'
                     'server.max-connections = 4096\n')
        # the client still maps SERVER_IP to mos's MAC (c1): forget it
        subprocess.run(["ip", "netns", "exec", tb.client_ns, "ip", "neigh", "flush", "all"],
                       check=True)
        with tb.bridge():
            srv = subprocess.Popen(["ip", "netns", "exec", tb.server_ns, "taskset", "-c", "1",
                                    "lighttpd", "-D", "-f", conf], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
            try:
                time.sleep(1.5)
                results["Linux + lighttpd"] = measure(tb, f"http://{SERVER_IP}", args.seconds,
                                                      args.connections)
            finally:
                srv.terminate()
                srv.wait(10)
            if args.aiohttp:
                aio_results["aiohttp on Linux"] = _aiohttp(
                    tb, ["ip", "netns", "exec", tb.server_ns], "kernel", SERVER_IP, args.seconds,
                    args.connections)
    print(f"wrk, {args.connections} connections, {args.seconds} s per figure; 64 B file "
          f"(conn/s: Connection: close; req/s: keep-alive); 20 MB file for bulk")
    table("server", results, "mos serve", "Linux + lighttpd")
    if args.aiohttp:
        print()
        table("aiohttp (same app)", aio_results, "aiohttp on mos.aio", "aiohttp on Linux")
    return 0


if __name__ == "__main__":
    sys.exit(main())
