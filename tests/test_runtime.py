"""The runtime layer (mos/runtime): the engine is sans-I/O and says when it
next needs the time; the runtime owns clocks, ports and files."""

import ast
import os

import pytest

import mos
from mos.dualstack import _engine
from mos.errors import CaptureError
from mos.runtime import _loop
from tcpconv import Conv

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_idle_engine_has_no_deadline():
    assert mos.Engine().next_deadline() is None


def test_established_flow_deadline_is_its_idle_timeout():
    eng = mos.Engine(mos.Config(tcp_timeout=30.0))
    c = Conv(ts=1.0)
    c.handshake()
    for ts, fr in c.frames:
        eng.feed(fr, ts)
    last = c.frames[-1][0]
    # the LRU head's time plus tcp_timeout; that time is refreshed coarsely,
    # so the first deadline may only move it to the flow's last activity
    assert 31.0 <= eng.next_deadline() <= last + 30.0 + 1e-6
    steps = []
    while eng.next_deadline() is not None and len(steps) < 3:
        steps.append(eng.next_deadline())
        eng.advance(steps[-1])
    assert eng.counters()["ended"]["timeout"] == 1
    assert steps[-1] == pytest.approx(last + 30.0, abs=1e-6)


def test_timer_deadline_comes_before_the_idle_timeout():
    eng = mos.Engine()
    fired = []
    eng.set_timer(5.0, lambda e: fired.append(e.now))
    c = Conv(ts=10.0)
    c.syn()
    eng.feed(c.frames[0][1], 10.0)
    assert eng.next_deadline() == pytest.approx(15.0)
    eng.advance(eng.next_deadline())
    assert fired == [pytest.approx(15.0)]
    assert eng.next_deadline() == pytest.approx(40.0, abs=1e-6)


def test_engine_module_reads_no_clock_socket_or_file():
    """DESIGN 1 rule 4: the compiled engine imports neither time nor socket,
    and has no capture or port loop of its own any more."""
    names = set(vars(_engine))
    assert not names & {"time", "_time", "socket", "CaptureError"}
    assert not hasattr(_engine.CoreEngine, "run_ports")
    assert not hasattr(_engine.CoreEngine, "run_capture")


def _imports(path):
    tree = ast.parse(open(path).read())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module


def test_runtime_never_imports_the_cli_or_the_engine_facade():
    bad = []
    d = os.path.join(ROOT, "mos", "runtime")
    for name in os.listdir(d):
        if name.endswith((".py", ".pyx")):
            src = open(os.path.join(d, name)).read()
            mods = list(_imports(os.path.join(d, name))) if name.endswith(".py") else [
                line.split()[1] for line in src.splitlines()
                if line.startswith(("import ", "from "))]
            bad += [(name, m) for m in mods if m in ("mos", "mos.cli", "mos.engine")]
    assert bad == []


def test_capture_reader_port_reports_a_corrupt_file(tmp_path):
    good = mos.sample_capture()
    data = open(good, "rb").read()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[: len(data) // 2 + 7])
    eng = mos.Engine()
    with pytest.raises(CaptureError, match="cut.pcap"):
        eng.run(cut)
    assert eng.counters()["frames"] > 0  # frames before the fault were processed


def test_capture_reader_port_ends_with_minus_one():
    r = _loop.CaptureReader(mos.sample_capture())
    assert r.linktype == 1 and r.error is None and r.offset == 24
    h, rx, rx_done, tx = r.c_port()
    assert h and rx and rx_done and tx
    r.close()


def test_pcap_writer_refuses_a_directory(tmp_path):
    with pytest.raises(mos.errors.OutputError, match="cannot open for writing"):
        _loop.PcapWriter(str(tmp_path))
