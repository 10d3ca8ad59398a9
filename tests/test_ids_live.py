"""`mos ids -c CONFIG` in-line on the test bed (both drivers): a download
whose body holds a `drop` signature never completes, a `reject` rule makes
curl see a reset, and a clean download running beside them is
byte-identical.  Traffic stays between the test bed's namespaces
(198.18.0.0/15); every process is stopped, the test bed removed."""

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
from test_inline_live import DRIVERS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

RULES = """\
drop tcp any 80 -> any any (msg:"MOS TEST drop signature in a body"; flow:to_client; content:"MOSDROPSIG"; sid:1; rev:1;)
reject tcp any any -> any 80 (msg:"MOS TEST reject a request"; flow:to_server; content:"GET /rejectme"; sid:2; rev:1;)
alert tcp any any -> any 80 (msg:"MOS TEST clean request seen"; flow:to_server; content:"GET /clean"; sid:3; rev:1;)
"""


class IdsProc:
    def __init__(self, tb, tmp_path, driver):
        why = DRIVERS[driver][0]()
        if why:
            pytest.skip(why)
        cfg = tmp_path / "mos.yaml"
        cfg.write_text(DRIVERS[driver][1].format(c1=tb.c1, s1=tb.s1, workers=1, idle_sleep=0))
        rules = tmp_path / "test.rules"
        rules.write_text(RULES)
        self.logdir = tmp_path / "log"
        argv = [sys.executable, "-m", "mos", "ids", "-c", str(cfg), "-S", str(rules),
                "-l", str(self.logdir), "--no-progress"]
        env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=env, cwd=ROOT)
        deadline = time.monotonic() + 30
        while not tb.ping(tb.client_ns, tb.server_ip, wait=0.5):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                _, err = self.stop()
                pytest.fail(f"mos ids did not start forwarding: {err[-2000:]}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.communicate()

    def alerts(self):
        path = self.logdir / "eve.json"
        recs = [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []
        return [r for r in recs if r["event_type"] == "alert"]


@pytest.mark.parametrize("driver", ["afpacket", "dpdk"])
def test_drop_and_reject_in_line_clean_download_untouched(testbed, tmp_path, driver):
    tb = testbed
    www = tmp_path / "www"
    www.mkdir()
    clean = os.urandom(5_000_000)
    (www / "clean").write_bytes(clean)
    (www / "marked").write_bytes(os.urandom(300_000) + b"MOSDROPSIG" + os.urandom(300_000))
    (www / "rejectme").write_bytes(b"never served\n")
    with http_server(tb, www):
        ids = IdsProc(tb, tmp_path, driver)
        try:
            out = tmp_path / "clean.out"
            bg = tb.popen_in(tb.client_ns, ["curl", "-sS", "--limit-rate", "2M", "-o", str(out),
                                            "--max-time", "30", f"http://{tb.server_ip}/clean"],
                             lifetime=40)
            time.sleep(0.3)
            r = tb.run_in(tb.client_ns, ["curl", "-sS", "-o", "/dev/null", "--max-time", "5",
                                         f"http://{tb.server_ip}/marked"], timeout=15)
            assert r.returncode != 0, "the download with the drop signature completed"
            r = tb.run_in(tb.client_ns, ["curl", "-sS", "-o", "/dev/null", "--max-time", "5",
                                         f"http://{tb.server_ip}/rejectme"], timeout=15)
            assert r.returncode in (52, 56), (r.returncode, r.stderr, ids.stop()[1][-3000:])
            assert "reset" in r.stderr.lower() or "empty reply" in r.stderr.lower(), r.stderr
            assert bg.wait(timeout=40) == 0
            assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(clean).digest()
        finally:
            _, err = ids.stop()
    assert ids.proc.returncode == 0, err[-3000:]
    alerts = ids.alerts()
    by_sid = {}
    for a in alerts:
        by_sid.setdefault(a["alert"]["signature_id"], []).append(a["alert"]["action"])
    assert by_sid.get(1) == ["blocked"] and by_sid.get(2) == ["blocked"], by_sid
    assert by_sid.get(3) == ["allowed"]
    assert "packets blocked" in err
