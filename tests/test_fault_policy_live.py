"""An in-line box survives its handlers' faults (issue 8, item 6), live.

With the default on_handler_error (log), a PKT_IN handler that raises on
every packet never stops forwarding: a 20 MB download through the box, on
the AF_PACKET and the DPDK drivers, with one and two workers, arrives
byte-identical, and the final JSON counts every exception.  Test bed and
safety rules as tests/test_inline_live.py (namespaces this test creates,
198.18.0.0/15 and 2001:db8::/32 only, torn down always).
"""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from netbed import http_server, testbed_fixture  # noqa: F401  (the `testbed` fixture)
from test_inline_live import Mos, fetch_sha

RAISING_APP = """
import mos
def attach(engine):
    mon = engine.attach(mos.Monitor(name="faulty"))
    @mon.on(mos.Event.PKT_IN)
    def always_fails(flow, side, event):
        raise RuntimeError("handler bug on " + flow.client_addr)
"""

SIZE = 20_000_000


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("driver", ["afpacket", "dpdk"])
def test_inline_raising_pkt_in_handler_never_stops_forwarding(testbed, tmp_path, driver,
                                                              workers):
    tb = testbed
    root = tmp_path / "www"
    root.mkdir()
    data = os.urandom(SIZE)
    (root / "20m").write_bytes(data)
    with http_server(tb, root):
        m = Mos(tb, tmp_path, driver, app=RAISING_APP, workers=workers)
        try:
            got = fetch_sha(tb, tmp_path, f"http://{tb.server_ip}/20m", max_time=120)
        finally:
            out, err = m.stop()
    assert m.proc.returncode == 0, err[-3000:]
    assert got == hashlib.sha256(data).hexdigest()
    c = json.loads(out.strip().splitlines()[-1])
    # every call raised, every exception counted: one per packet of a tracked flow
    assert c["handler_errors"] == c["handler_calls"] >= SIZE // 1500
    # the app is app.py: its handler's qualified name
    assert c["handler_errors_by_handler"] == {"app.attach.<locals>.always_fails":
                                              c["handler_errors"]}
    # one line per error up to 10, then at powers of two: a few dozen lines, not one per
    # packet (a flood of log lines would slow forwarding, or fill the pipe and stall it)
    lines = [ln for ln in err.splitlines() if ln.startswith("mos: handler ")]
    assert 10 <= len(lines) <= 40 * workers, len(lines)
    assert "RuntimeError: handler bug on 198.18." in lines[0] and ", packet " in lines[0]
    assert 1 <= err.count("Traceback") <= workers  # once per worker that saw the flow


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("driver", ["afpacket", "dpdk"])
def test_inline_stop_policy_ends_every_worker_with_counters_and_one_error_line(
        testbed, tmp_path, driver, workers):
    """on_handler_error: stop in the box: the first exception ends the run
    (all workers), the JSON counters still come, then one error line."""
    tb = testbed
    root = tmp_path / "www"
    root.mkdir()
    (root / "1k").write_bytes(os.urandom(1000))
    # the app asks for the policy itself (as monitor.on_handler_error: stop would)
    app = RAISING_APP.replace("def attach(engine):\n",
                              "def attach(engine):\n    engine.on_handler_error = 'stop'\n")
    with http_server(tb, root):
        m = Mos(tb, tmp_path, driver, app=app, workers=workers)
        try:
            tb.run_in(tb.client_ns, ["curl", "-sS", "-o", "/dev/null", "--max-time", "5",
                                     f"http://{tb.server_ip}/1k"], timeout=15)
            m.proc.wait(timeout=30)  # the box stops by itself
        finally:
            out, err = m.stop()
    assert m.proc.returncode == 2, err[-3000:]
    c = json.loads(out.strip().splitlines()[-1])
    assert c["handler_errors"] >= 1 and c["workers"] == workers
    errs = [ln for ln in err.splitlines() if ln.startswith("mos: error:")]
    assert len(errs) == 1 and "always_fails raised RuntimeError" in errs[0], err[-3000:]
    assert "run stopped (on_handler_error: stop)" in errs[0]
