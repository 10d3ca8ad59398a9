"""Both roles in one `mos run` (issue 9 point 7): mos forwards and monitors
the traffic between c1 and s1 (client <-> Linux server, in-line) while its
own stack owns 198.18.9.2 on a third port and serves files there.  Only
the test bed's namespaces and veths are used; they go when the test ends."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from netbed import http_server, testbed_fixture  # noqa: F401  (the `testbed` fixture)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOST_IP = "198.18.9.2"


def test_one_run_serves_its_own_address_while_forwarding_and_monitoring(testbed, tmp_path):
    tb = testbed
    www = tmp_path / "www"
    www.mkdir()
    mine = tmp_path / "mine"
    mine.mkdir()
    far, near = os.urandom(2_000_000), os.urandom(3_000_000)
    (www / "far").write_bytes(far)
    (mine / "near").write_bytes(near)
    m1 = tb.extra_link("m", tb.client_ns, "198.18.9.1/24")
    cfg = tmp_path / "both.yaml"
    cfg.write_text(f"""mode: inline
ports:
  - {{name: west, driver: afpacket, iface: {tb.c1}}}
  - {{name: east, driver: afpacket, iface: {tb.s1}}}
  - {{name: me, driver: afpacket, iface: {m1}}}
forward: [[west, east]]
endhost:
  addresses: [{{port: me, address: {HOST_IP}/24}}]
  serve: {{root: {mine}, port: 80}}
""")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    with http_server(tb, www):
        proc = subprocess.Popen([sys.executable, "-m", "mos", "run", "-c", str(cfg),
                                 "--no-progress"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
        try:
            deadline = time.monotonic() + 30
            while not (tb.ping(tb.client_ns, tb.server_ip, wait=0.5) and
                       tb.ping(tb.client_ns, HOST_IP, wait=0.5)):
                assert proc.poll() is None and time.monotonic() < deadline, \
                    proc.stderr.read()[-2000:] if proc.poll() is not None else "not up in 30 s"
            for url, want in ((f"http://{tb.server_ip}/far", far),
                              (f"http://{HOST_IP}/near", near)):
                r = tb.run_in(tb.client_ns, ["curl", "-sS", "--max-time", "30", url],
                              text=False, timeout=40)
                assert hashlib.sha256(r.stdout).digest() == hashlib.sha256(want).digest(), \
                    (url, r.stderr)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
            try:
                out, err = proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
    assert proc.returncode == 0, err[-2000:]
    res = json.loads(out.strip().splitlines()[-1])
    assert res["flows"] >= 1 and res["ports"]["east"]["rx"] > 1000, res   # the 2 MB download
    assert "me" not in res["ports"]
    assert res["endhost"]["served"] == 1 and res["endhost"]["stack"]["echo_replies"] >= 1, res
