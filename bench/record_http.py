#!/usr/bin/env python3
"""Record real HTTP traffic in the test bed (DESIGN 5) for bench_ids.py:
Python's http.server in the server namespace serves files of mixed sizes
(1 KB to 2 MB, text and binary), curl in the client namespace fetches them
over many connections (parallel, keep-alive and not, IPv4 and IPv6), through
a Linux bridge between c1 and s1, and tcpdump on c1 writes the capture.

Needs root (namespaces).  Only 198.18.0.0/15 and 2001:db8::/32 addresses;
the namespaces, bridge and processes are removed at the end.

    sudo python3 bench/record_http.py                     # bench/out/testbed-http.pcap
    sudo python3 bench/record_http.py --requests 4000 --parallel 16
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))

from mos.testing.testbed import Testbed  # noqa: E402

WORDS = (b"alpha beta gamma delta select from where union insert update cookie session "
         b"login admin password user agent mozilla windows linux firefox chrome script "
         b"function return var document window location http https www example").split()


def make_site(root: str, nfiles: int, seed: int) -> list:
    rng = random.Random(seed)
    names = []
    for i in range(nfiles):
        size = int(1000 * (2 ** rng.uniform(0, 11)))       # 1 KB .. 2 MB, log-uniform
        if i % 3 == 0:  # text: HTML-ish, what content rules look at
            words = [rng.choice(WORDS) for _ in range(size // 6 + 1)]
            body = b"<html><body>" + b" ".join(words)[:size] + b"</body></html>\n"
            name = f"page{i}.html"
        else:
            body = rng.randbytes(size)
            name = f"blob{i}.bin"
        with open(os.path.join(root, name), "wb") as fh:
            fh.write(body)
        names.append(name)
    return names


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", nargs="?", default=os.path.join(HERE, "out", "testbed-http.pcap"))
    ap.add_argument("--files", type=int, default=300)
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--parallel", type=int, default=12)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds for the whole recording")
    a = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("record_http.py needs root (network namespaces)", file=sys.stderr)
        return 2
    for tool in ("tcpdump", "curl"):
        if not shutil.which(tool):
            print(f"record_http.py needs {tool}", file=sys.stderr)
            return 2
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    site = tempfile.mkdtemp(prefix="mos-site-")
    rng = random.Random(a.seed)
    try:
        names = make_site(site, a.files, a.seed)
        with Testbed() as tb, tb.bridge():
            from netbed import http_server
            with http_server(tb, site, lifetime=a.timeout + 60):
                # a 256 MiB kernel buffer: tcpdump keeps up with the veths
                dump = subprocess.Popen(["tcpdump", "-i", tb.c1, "-w", a.out + ".tmp", "-s", "0",
                                         "-B", "262144", "-U", "tcp"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(1.0)
                deadline = time.monotonic() + a.timeout
                # batches of URLs per curl: some keep-alive (several URLs on one
                # connection), some one connection per file; IPv6 for one in 8
                jobs, left = [], a.requests
                while left > 0:
                    n = min(left, rng.choice((1, 1, 2, 4, 8)))
                    host = f"[{tb.server_ip6}]" if rng.random() < 0.125 else tb.server_ip
                    urls = [f"http://{host}/{rng.choice(names)}" for _ in range(n)]
                    jobs.append(urls)
                    left -= n
                running = []
                while (jobs or running) and time.monotonic() < deadline:
                    while jobs and len(running) < a.parallel:
                        urls = jobs.pop()
                        argv_ = ["curl", "-sS", "-g", "--max-time", "60"]
                        for u in urls:
                            argv_ += ["-o", "/dev/null", u]
                        running.append(tb.popen_in(tb.client_ns, argv_, lifetime=90,
                                                   stdout=subprocess.DEVNULL,
                                                   stderr=subprocess.DEVNULL))
                    time.sleep(0.01)
                    running = [p for p in running if p.poll() is None]
                for p in running:
                    tb.stop(p)
                time.sleep(1.0)
                dump.terminate()
                dump.wait(timeout=10)
        os.replace(a.out + ".tmp", a.out)
        print(f"{a.out}: {os.path.getsize(a.out) / 1e6:.1f} MB, {a.requests} requests",
              file=sys.stderr)
        return 0
    finally:
        shutil.rmtree(site, ignore_errors=True)
        if os.path.exists(a.out + ".tmp"):
            os.unlink(a.out + ".tmp")


if __name__ == "__main__":
    sys.exit(main())
