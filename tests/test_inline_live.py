"""`mos run -c CONFIG` as a bump in the wire between two namespaces (DESIGN 5).

Real endpoints (curl, Python's http.server, ping) talk through mos; each test
starts `mos run` on the test bed's middlebox ends, checks what crossed, then
stops it with SIGINT and checks the final JSON counters.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from netbed import http_server, interrupt, testbed_fixture  # noqa: F401  (the `testbed` fixture)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _afpacket_available():
    try:
        import mos.ports._afpacket  # noqa: F401
    except ImportError as exc:
        return f"AF_PACKET port not built: {exc}"
    return None


def _dpdk_available():
    try:
        from mos.ports import dpdk
    except ImportError as exc:
        return f"dpdk port not importable: {exc}"
    ok, why = dpdk.available()
    return None if ok else why


DRIVERS = {
    "afpacket": (_afpacket_available, textwrap.dedent("""\
        mode: inline
        ports:
          - {{name: west, driver: afpacket, iface: {c1}}}
          - {{name: east, driver: afpacket, iface: {s1}}}
        forward: [[west, east]]
        workers: {workers}
        """)),
    "dpdk": (_dpdk_available, textwrap.dedent("""\
        mode: inline
        dpdk:
          eal_args: [--no-huge, -m, "1024", --no-pci, -l, "0",
                     "--vdev=net_af_packet0,iface={c1}", "--vdev=net_af_packet1,iface={s1}"]
          idle_sleep: {idle_sleep}
        ports:
          - {{name: west, driver: dpdk, port_id: 0}}
          - {{name: east, driver: dpdk, port_id: 1}}
        forward: [[west, east]]
        workers: {workers}
        """)),
}


class Mos:
    """A `mos run -c` process on the test bed."""

    def __init__(self, tb, tmp_path, driver, app: str | None = None, workers: int = 1):
        why = DRIVERS[driver][0]()
        if why:
            pytest.skip(why)
        cfg = tmp_path / "mos.yaml"
        # DPDK workers poll without pause by default; two of them and the
        # endpoints would oversubscribe a 2-CPU machine, so they nap when idle
        idle_sleep = 50 if workers > 1 and (os.cpu_count() or 1) <= 2 * workers else 0
        cfg.write_text(DRIVERS[driver][1].format(c1=tb.c1, s1=tb.s1, workers=workers,
                                                 idle_sleep=idle_sleep))
        argv = [sys.executable, "-m", "mos", "run", "-c", str(cfg), "--no-progress"]
        if app:
            path = tmp_path / "app.py"
            path.write_text(textwrap.dedent(app))
            argv += ["--app", str(path)]
        env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=env, cwd=ROOT)
        self.tb = tb
        deadline = time.monotonic() + 30
        while not tb.ping(tb.client_ns, tb.server_ip, wait=0.5):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                out, err = self.stop()
                pytest.fail(f"mos did not start forwarding: rc={self.proc.returncode} {err[-2000:]}")

    def stop(self):
        return interrupt(self.proc)

    def counters(self):
        out, err = self.stop()
        assert self.proc.returncode == 0, err[-3000:]
        return json.loads(out.strip().splitlines()[-1])


@pytest.fixture
def www(tmp_path):
    d = tmp_path / "www"
    d.mkdir()
    files = {}
    for name, size in (("1k", 1000), ("100k", 100_000), ("5m", 5_000_000), ("50m", 50_000_000)):
        data = os.urandom(size)
        (d / name).write_bytes(data)
        files[name] = hashlib.sha256(data).hexdigest()
    return d, files


def curl(tb, url, out=None, max_time=60, ipv6=False):
    argv = ["curl", "-sS", "-o", out or "/dev/null", "--max-time", str(max_time), url]
    if ipv6:
        argv.insert(1, "-g")
    return tb.run_in(tb.client_ns, argv, timeout=max_time + 10)


def fetch_sha(tb, tmp_path, url, **kw):
    out = tmp_path / ("dl-" + hashlib.md5(url.encode()).hexdigest())
    r = curl(tb, url, str(out), **kw)
    assert r.returncode == 0, r.stderr
    return hashlib.sha256(out.read_bytes()).hexdigest()


@pytest.mark.parametrize("driver", ["afpacket", "dpdk"])
def test_downloads_ping_udp_cross_byte_identical(testbed, tmp_path, www, driver):
    tb = testbed
    root, files = www
    with http_server(tb, root):
        m = Mos(tb, tmp_path, driver)
        try:
            for name, digest in files.items():
                assert fetch_sha(tb, tmp_path, f"http://{tb.server_ip}/{name}") == digest, name
            assert fetch_sha(tb, tmp_path, f"http://[{tb.server_ip6}]/100k", ipv6=True) \
                == files["100k"]
            assert tb.ping(tb.client_ns, tb.server_ip, count=3)
            assert tb.ping(tb.client_ns, tb.server_ip6, count=3)
            srv = tb.popen_in(tb.server_ns, [sys.executable, "-c", UDP_ECHO, tb.server_ip],
                              lifetime=30)
            time.sleep(0.3)
            r = tb.run_in(tb.client_ns, [sys.executable, "-c", UDP_ASK, tb.server_ip], timeout=20)
            tb.stop(srv)
            assert r.returncode == 0 and r.stdout.strip() == "echo:mos-udp", r.stderr
        finally:
            c = m.counters()
    west, east = c["ports"]["west"], c["ports"]["east"]
    # nothing lost without being counted: what came in went out, or is counted
    assert west["rx"] == east["tx"] + east["tx_dropped"] + west["dropped"]
    assert east["rx"] == west["tx"] + west["tx_dropped"] + east["dropped"]
    assert c["flows"] >= 5 and c["non_tcp"] > 0


UDP_ECHO = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((sys.argv[1], 5353)); s.settimeout(20)
data, peer = s.recvfrom(2048); s.sendto(b"echo:" + data, peer)
"""
UDP_ASK = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5)
for _ in range(3):
    s.sendto(b"mos-udp", (sys.argv[1], 5353))
    try:
        print(s.recvfrom(2048)[0].decode()); break
    except socket.timeout:
        pass
"""

DROP_APP = """
import mos
def attach(engine):
    mon = engine.attach(mos.Monitor())
    @mon.on(mos.Event.PKT_IN)
    def drop_marked(flow, side, event):
        if b"DROPME" in flow.packet.payload:
            flow.drop()
"""


@pytest.mark.parametrize("driver", ["afpacket", "dpdk"])
def test_handler_drop_stalls_only_the_marked_download(testbed, tmp_path, www, driver):
    tb = testbed
    root, files = www
    (root / "marked").write_bytes(os.urandom(20000) + b"DROPME" + os.urandom(20000))
    with http_server(tb, root):
        m = Mos(tb, tmp_path, driver, app=DROP_APP)
        try:
            r = curl(tb, f"http://{tb.server_ip}/marked", max_time=4)
            assert r.returncode == 28, r.stderr  # operation timed out: the download stalled
            assert fetch_sha(tb, tmp_path, f"http://{tb.server_ip}/5m") == files["5m"]
        finally:
            c = m.counters()
    assert c["ports"]["east"]["dropped"] >= 1


RESET_APP = """
import mos
def attach(engine):
    mon = engine.attach(mos.Monitor())
    @mon.on(mos.Event.CONN_NEW_DATA, side=mos.Side.SERVER)
    def kill(flow, side, event):
        if b"GET /reset" in flow.peek(side):
            flow.reset()
"""


@pytest.mark.parametrize("driver", ["afpacket", "dpdk"])
def test_handler_reset_fails_curl_while_parallel_download_completes(testbed, tmp_path, www,
                                                                    driver):
    tb = testbed
    root, files = www
    (root / "reset").write_bytes(b"x" * 1000)
    with http_server(tb, root):
        m = Mos(tb, tmp_path, driver, app=RESET_APP)
        try:
            out = tmp_path / "big"
            big = tb.popen_in(tb.client_ns, ["curl", "-sS", "--limit-rate", "10M", "-o", str(out),
                                             "--max-time", "60", f"http://{tb.server_ip}/50m"],
                              lifetime=70, stderr=subprocess.PIPE)
            time.sleep(0.5)
            r = curl(tb, f"http://{tb.server_ip}/reset", max_time=10)
            assert r.returncode in (52, 56), (r.returncode, r.stderr)  # reset by peer / empty reply
            assert big.wait(timeout=70) == 0
            assert hashlib.sha256(out.read_bytes()).hexdigest() == files["50m"]
        finally:
            m.counters()


REWRITE_APP = """
import mos
def attach(engine):
    mon = engine.attach(mos.Monitor())
    @mon.on(mos.Event.PKT_IN, side=mos.Side.CLIENT)
    def rewrite(flow, side, event):
        pkt = flow.packet
        payload = pkt.payload
        i = payload.find(b"hello-world")
        while i >= 0:
            pkt.overwrite(i, b"HELLO-MOS!!")
            i = payload.find(b"hello-world", i + 1)
"""


@pytest.mark.parametrize("driver", ["afpacket", "dpdk"])
def test_handler_rewrite_same_length_reaches_curl(testbed, tmp_path, www, driver):
    tb = testbed
    root, _ = www
    # two occurrences, each well inside one segment (segments carry 1448 bytes)
    body = b"start hello-world " + b"." * 2000 + b" hello-world end\n"
    (root / "greet").write_bytes(body)
    with http_server(tb, root):
        m = Mos(tb, tmp_path, driver, app=REWRITE_APP)
        try:
            out = tmp_path / "greet.out"
            r = curl(tb, f"http://{tb.server_ip}/greet", str(out))
            assert r.returncode == 0, r.stderr
        finally:
            c = m.counters()
    got = out.read_bytes()
    assert got == body.replace(b"hello-world", b"HELLO-MOS!!")
    assert c["errors"]["bad_checksum"] == 0
    assert c["rexmit"] <= 3, "a rewritten segment must not be retransmitted again and again"


EDIT_APP = """
import re
import mos
def attach(engine):
    mon = engine.attach(mos.Monitor())
    @mon.on(mos.Event.PKT_IN, side=mos.Side.SERVER)  # what the server receives
    def request(flow, side, event):
        pkt = flow.packet
        if pkt.payload.startswith(b"GET /page "):
            pkt.insert(len(b"GET /page"), b"-v2")     # the server serves another file
            # a header longer than the MSS: the request leaves in two segments
            eol = pkt.payload.index(b"\\r\\n") + 2
            pkt.insert(eol, b"X-Pad: " + b"p" * 1500 + b"\\r\\n")
    @mon.on(mos.Event.PKT_IN, side=mos.Side.CLIENT)  # what the client receives
    def response(flow, side, event):
        pkt = flow.packet
        p = pkt.payload
        if p.startswith(b"HTTP/"):
            i = p.find(b"\\r\\nServer: ")
            if i >= 0:
                pkt.chomp(i + 2, p.index(b"\\r\\n", i + 2) - i)
            m = re.search(rb"Content-Length: (%d)\\r" % PAGE_LEN, p)
            if m:
                pkt.replace(m.start(1), len(m.group(1)), str(PAGE_LEN + 20).encode())
        i = p.find(b"hello-world")
        while i >= 0:
            pkt.replace(i, 11, b"HELLO-WIDER-MOS-WORLD")
            i = p.find(b"hello-world", i + 1)
"""


@pytest.mark.parametrize("driver", ["afpacket", "dpdk"])
def test_handler_insert_and_chomp_change_lengths_both_ways(testbed, tmp_path, www, driver):
    """Lengths change in both directions: the request gains bytes (the server
    then serves another file), a response loses its Server header and its
    body grows; each end keeps its own sequence numbers, and a 5 MB download
    on the same kind of flow stays byte-identical."""
    tb = testbed
    root, files = www
    page = b"start hello-world " + b"." * 500 + b" hello-world end\n"
    (root / "page").write_bytes(b"the wrong file\n")
    (root / "page-v2").write_bytes(page)
    app = EDIT_APP.replace("PAGE_LEN", str(len(page)))
    with http_server(tb, root):
        m = Mos(tb, tmp_path, driver, app=app)
        try:
            out, hdrs = tmp_path / "page.out", tmp_path / "page.hdr"
            r = tb.run_in(tb.client_ns, ["curl", "-sS", "-D", str(hdrs), "-o", str(out),
                                         "--max-time", "30", f"http://{tb.server_ip}/page"],
                          timeout=40)
            assert r.returncode == 0, r.stderr
            big_hdrs = tmp_path / "big.hdr"
            r = tb.run_in(tb.client_ns, ["curl", "-sS", "-D", str(big_hdrs), "-o",
                                         str(tmp_path / "big"), "--max-time", "60",
                                         f"http://{tb.server_ip}/5m"], timeout=70)
            assert r.returncode == 0, r.stderr
        finally:
            c = m.counters()
    assert out.read_bytes() == page.replace(b"hello-world", b"HELLO-WIDER-MOS-WORLD")
    assert b"Server:" not in hdrs.read_bytes() and b"Server:" not in big_hdrs.read_bytes()
    assert hashlib.sha256((tmp_path / "big").read_bytes()).hexdigest() == files["5m"]
    assert c["rewritten"] > 100 and c["rewrite_failed"] == 0, c
    assert c["split"] >= 1, "the padded request was cut to the MSS"
    west, east = c["ports"]["west"], c["ports"]["east"]  # nothing lost uncounted
    assert east["tx"] + east["tx_dropped"] == west["rx"] - west["dropped"] + east["split"]
    assert west["tx"] + west["tx_dropped"] == east["rx"] - east["dropped"] + west["split"]
    assert c["errors"]["bad_checksum"] == 0
    # a numbering fault would make an end retransmit every segment after the
    # edit, or stall; on this 2-CPU bed the veths behind mos drop a burst now
    # and then (outside mos's counters), and the server retransmits a window
    # (seen: up to 99 of 5925 packets, all of them ~70 kB behind snd_nxt)
    assert c["rexmit"] <= max(20, c["tcp"] // 30), (c["rexmit"], c["tcp"], c["ports"])
    assert c["ended"]["close"] >= 2, "both flows closed by their ends, FINs acknowledged"


def test_dpdk_workers_need_as_many_af_packet_qpairs(testbed, tmp_path):
    """mos adds qpairs=WORKERS to a net_af_packet vdev; one naming another count is refused."""
    tb = testbed
    why = _dpdk_available()
    if why:
        pytest.skip(why)
    cfg = tmp_path / "mos.yaml"
    text = DRIVERS["dpdk"][1].format(c1=tb.c1, s1=tb.s1, workers=2, idle_sleep=0)
    cfg.write_text(text.replace("iface=" + tb.s1, "iface=" + tb.s1 + ",qpairs=1"))
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-m", "mos", "run", "-c", str(cfg), "--no-progress"],
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    assert r.returncode == 2
    assert (f"eal_args[7]: '--vdev=net_af_packet1,iface={tb.s1},qpairs=1' has qpairs=1, "
            "but workers is 2") in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("driver", ["afpacket", "dpdk"])
def test_two_workers_keep_every_flow_whole(testbed, tmp_path, www, driver):
    """afpacket: a fanout group; dpdk: net_af_packet has no RSS (its kernel fanout
    rolls flows over to other queues under load), so the shim steers in software."""
    tb = testbed
    root, files = www
    with http_server(tb, root):
        m = Mos(tb, tmp_path, driver, workers=2)
        try:
            procs = []
            for i in range(6):
                out = tmp_path / f"w{i}"
                procs.append((out, tb.popen_in(tb.client_ns, [
                    "curl", "-sS", "-o", str(out), "--max-time", "60",
                    f"http://{tb.server_ip}/5m"], lifetime=70)))
            for out, p in procs:
                assert p.wait(timeout=70) == 0
                assert hashlib.sha256(out.read_bytes()).hexdigest() == files["5m"]
            # short flows too: 6 flows all hash to one worker 1 time in 32, 16 in 2**15
            for _ in range(10):
                assert fetch_sha(tb, tmp_path, f"http://{tb.server_ip}/1k") == files["1k"]
        finally:
            c = m.counters()
    assert c["workers"] == 2
    # each flow on exactly one worker: duplicated frames (every worker seeing
    # every frame) would count each flow twice, and TCP would hide the copies
    assert c["flows"] == 16
    assert min(c["worker_flows"]) > 0, c
    # and both directions of each on the same worker: every flow was seen to
    # end by its endpoints (FINs or RST), which needs both directions' FINs
    # on one worker
    assert c["ended"]["close"] + c["ended"]["rst"] == 16, c
    # a segment retransmitted after its flow closed (the veths drop frames
    # when the machine is loaded) arrives for no flow: an orphan, 1 run in 5
    # here; a flow split across workers would give many (every packet of one
    # direction) and no close above
    assert c["orphans"] <= 2, c
    west, east = c["ports"]["west"], c["ports"]["east"]
    assert west["rx"] == east["tx"] + east["tx_dropped"] + west["dropped"]
    assert east["rx"] == west["tx"] + west["tx_dropped"] + east["dropped"]
    if driver == "dpdk":
        # the kernel's fanout hash is not the shim's: about half the flows
        # arrive on the other worker's queue and are handed over
        assert west["steered"] + east["steered"] > 0, c
        # frames a full ring lost are part of the drops reported
        for port in (west, east):
            assert port["steer_dropped"] <= port["kernel_dropped"], c


def test_passive_mode_monitors_without_forwarding(testbed, tmp_path, www):
    """Passive: mos only watches (here one side of a Linux bridge); it sends nothing."""
    tb = testbed
    why = _afpacket_available()
    if why:
        pytest.skip(why)
    root, files = www
    cfg = tmp_path / "passive.yaml"
    cfg.write_text(f"mode: passive\nports:\n  - {{name: tap, driver: afpacket, iface: {tb.c1}}}\n")
    app = tmp_path / "seen.py"
    app.write_text(textwrap.dedent("""\
        import mos, sys
        def attach(engine):
            mon = engine.attach(mos.Monitor())
            mon.on(mos.Event.CONN_END, lambda f, s, e: print("flow", f.server_port,
                   f.client.bytes, f.server.bytes, file=sys.stderr, flush=True),
                   side=mos.Side.CLIENT)
        """))
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    with tb.bridge(), http_server(tb, root):
        proc = subprocess.Popen([sys.executable, "-m", "mos", "run", "-c", str(cfg), "--app",
                                 str(app), "--no-progress"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
        try:
            time.sleep(1.0)
            assert fetch_sha(tb, tmp_path, f"http://{tb.server_ip}/100k") == files["100k"]
            time.sleep(0.3)
        finally:
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    c = json.loads(out.strip().splitlines()[-1])
    assert c["ports"]["tap"]["tx"] == 0 and c["ports"]["tap"]["rx"] > 50
    assert c["flows"] >= 1
    assert "flow 80" in err
