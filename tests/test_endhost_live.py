"""The end host against Linux, in the test bed (DESIGN 5): mos's stack owns
198.18.0.2 and 2001:db8::2 on the AF_PACKET port c1, whose veth peer c0
is a Linux host in the client namespace; curl there fetches files from
mos.endhost.httpd byte-identically, over IPv4 and IPv6, and ping gets
echo replies.  Only the namespaces and veths the test bed makes are used;
all of them go when the test ends, also on failure."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import threading

import pytest
from netbed import live_skip_reason, wait_serving

from mos.testing.testbed import CLIENT_IP, CLIENT_IP6, SERVER_IP, SERVER_IP6


WHY = live_skip_reason("ip", "ethtool", "curl", "ping")
pytestmark = pytest.mark.skipif(WHY is not None, reason=f"end-host live tests: {WHY}")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A test bed, a mos server on c1 in a thread, and its files."""
    from mos.endhost.httpd import Server
    from mos.endhost.sockets import AF_INET6, Context
    from mos.ports._afpacket import AfPacketPort
    from mos.testing.testbed import Testbed

    root = tmp_path_factory.mktemp("www")
    files = {}
    for name, size in (("1k", 1024), ("1m", 1 << 20), ("20m", 20 << 20)):
        data = os.urandom(size)
        (root / name).write_bytes(data)
        files[name] = hashlib.sha256(data).hexdigest()
    with Testbed() as tb:
        port = AfPacketPort(tb.c1, rx_ring="v2")
        port.poll_ms = 1
        with open(f"/sys/class/net/{tb.c1}/address") as fh:
            mac = fh.read().strip()
        ctx = Context.on_port(port, mac, f"{SERVER_IP}/24", f"{SERVER_IP6}/64")
        s4 = Server(ctx, str(root), 80)
        s6 = Server(ctx, str(root), 8080, family=AF_INET6)
        stop = threading.Event()
        errors = []

        def loop():
            try:
                while not stop.is_set():
                    s4.step(0.001)
                    s6.step(0.0)
            except Exception as exc:   # surfaced by the tests below
                errors.append(exc)
        t = threading.Thread(target=loop, daemon=True)
        t.start()
        try:
            yield tb, files, (s4, s6), ctx, errors
        finally:
            stop.set()
            t.join(10)
            port.close()


def curl(tb, url, *extra, timeout=120):
    return subprocess.run(["ip", "netns", "exec", tb.client_ns, "curl", "-sS", "-g",
                           "--max-time", str(timeout - 5), *extra, url],
                          capture_output=True, timeout=timeout)


@pytest.mark.parametrize("name", ["1k", "1m", "20m"])
@pytest.mark.parametrize("url", [f"http://{SERVER_IP}/", f"http://[{SERVER_IP6}]:8080/"],
                         ids=["ipv4", "ipv6"])
def test_curl_fetches_files_byte_identically(served, name, url):
    tb, files, _, _, errors = served
    p = curl(tb, url + name)
    assert p.returncode == 0, p.stderr.decode()
    assert hashlib.sha256(p.stdout).hexdigest() == files[name]
    assert not errors


def test_keep_alive_serves_several_requests_on_one_connection(served):
    tb, files, (s4, _), _, errors = served
    before = s4.served
    urls = [f"http://{SERVER_IP}/1k"] * 5
    p = subprocess.run(["ip", "netns", "exec", tb.client_ns, "curl", "-sS", "-v",
                        "--max-time", "30", *urls], capture_output=True, timeout=40)
    assert p.returncode == 0, p.stderr.decode()
    assert len(p.stdout) == 5 * 1024
    assert all(hashlib.sha256(p.stdout[k * 1024:(k + 1) * 1024]).hexdigest() == files["1k"]
               for k in range(5))
    assert b"Re-using existing connection" in p.stderr or b"left intact" in p.stderr
    assert s4.served - before == 5 and not errors


def test_missing_file_is_404_and_ping_is_answered(served):
    tb, _, _, ctx, errors = served
    p = curl(tb, f"http://{SERVER_IP}/nope", "-o", "/dev/null", "-w", "%{http_code}")
    assert p.stdout == b"404"
    for target in (SERVER_IP, SERVER_IP6):
        r = subprocess.run(["ip", "netns", "exec", tb.client_ns, "ping", "-c", "2", "-W", "2",
                            "-i", "0.2", target], capture_output=True, timeout=20)
        assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()
    st = ctx.stack.stats()
    assert st["echo_replies"] >= 4 and st["arp_in"] >= 1 and st["nd_in"] >= 1
    assert not errors


def test_twenty_megabytes_rate_is_reported(served, capsys):
    """Not a target yet (issue 9 has the bench): the rate curl saw, for the record."""
    tb, files, _, _, errors = served
    p = curl(tb, f"http://{SERVER_IP}/20m", "-o", "/dev/null", "-w", "%{speed_download}")
    assert p.returncode == 0, p.stderr.decode()
    rate = float(p.stdout)
    with capsys.disabled():
        print(f"\n  curl from mos.endhost.httpd over AF_PACKET: {rate * 8 / 1e6:.0f} Mbit/s")
    assert rate > 1e6 and not errors


def test_mos_serve_with_the_issue_config_serves_curl_and_ab(tmp_path, capsys):
    """`mos serve -c CONFIG` with the YAML of the issue (addresses adapted to
    the bed's subnet): curl gets a file, ab -n 5000 -c 50 has no failures."""
    import sys
    import time

    from mos.testing.testbed import Testbed
    root = tmp_path / "www"
    root.mkdir()
    data = os.urandom(64 * 1024)
    (root / "f").write_bytes(data)
    with Testbed() as tb:
        cfg = tmp_path / "serve.yaml"
        cfg.write_text("mode: endhost\nports:\n"
                       f"  - {{name: wire, driver: afpacket, iface: {tb.c1}}}\n"
                       "endhost:\n"
                       f"  addresses: [{{port: wire, address: {SERVER_IP}/24}}, "
                       f"{{port: wire, address: {SERVER_IP6}/64}}]\n")
        repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        proc = subprocess.Popen([sys.executable, "-m", "mos", "serve", "-c", str(cfg),
                                 "--root", str(root), "--port", "80", "--seconds", "120"],
                                cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            wait_serving(proc)
            p = curl(tb, f"http://{SERVER_IP}/f")
            assert p.returncode == 0 and p.stdout == data, p.stderr
            p = curl(tb, f"http://[{SERVER_IP6}]/f")
            assert p.returncode == 0 and p.stdout == data, p.stderr
            if shutil.which("ab"):
                ab = subprocess.run(["ip", "netns", "exec", tb.client_ns, "ab", "-n", "5000",
                                     "-c", "50", "-s", "20", f"http://{SERVER_IP}/f"],
                                    capture_output=True, text=True, timeout=180)
                assert ab.returncode == 0, ab.stderr[-2000:]
                assert "Failed requests:        0" in ab.stdout, ab.stdout
                assert "Complete requests:      5000" in ab.stdout, ab.stdout
                rps = [ln for ln in ab.stdout.splitlines() if ln.startswith("Requests per")]
                with capsys.disabled():
                    print(f"\n  ab -n 5000 -c 50 (64 KiB) against mos serve: {rps}")
        finally:
            proc.terminate()
            out, err = proc.communicate(timeout=30)
        last = out.decode().strip().splitlines()[-1]
        import json
        stats = json.loads(last)
        assert stats["served"] >= 2 and stats["errors"] == 0, err.decode()


@pytest.mark.parametrize("keepalive", [False, True], ids=["new-conn", "keep-alive"])
def test_mos_load_fetches_from_python_http_server_byte_identically(tmp_path, keepalive):
    """`mos load` on mos's stack (c1, 198.18.0.2) against Python's http.server
    in the client namespace (198.18.0.1): every body is the file."""
    import json
    import sys
    import time

    from mos.testing.testbed import Testbed
    www = tmp_path / "www"
    www.mkdir()
    data = os.urandom(300 * 1024)
    (www / "f.bin").write_bytes(data)
    want = hashlib.sha256(data).hexdigest()
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with Testbed() as tb:
        cfg = tmp_path / "load.yaml"
        cfg.write_text("mode: endhost\nports:\n"
                       f"  - {{name: wire, driver: afpacket, iface: {tb.c1}}}\n"
                       f"endhost:\n  addresses: [{{port: wire, address: {SERVER_IP}/24}}]\n")
        srv = subprocess.Popen(["ip", "netns", "exec", tb.client_ns, sys.executable, "-m",
                                "http.server", "8000", "--bind", CLIENT_IP, "--directory",
                                str(www)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            # the server is up once its port listens (a SYN before would be refused)
            for _ in range(100):
                ss = subprocess.run(["ip", "netns", "exec", tb.client_ns, "ss", "-Hltn",
                                     "sport = :8000"], capture_output=True, text=True)
                if ss.stdout.strip():
                    break
                time.sleep(0.1)
            args = [sys.executable, "-m", "mos", "load", "--config", str(cfg),
                    f"http://{CLIENT_IP}:8000/f.bin", "-n", "200", "-c", "10"]
            if keepalive:
                args.append("-k")
            p = subprocess.run(args, capture_output=True, text=True, cwd=repo, timeout=180)
        finally:
            srv.terminate()
            srv.wait(10)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert "Complete requests:      200" in p.stdout and "Failed requests:        0" in p.stdout
    res = json.loads(p.stdout.strip().splitlines()[-1])
    assert res["bodies"] == {want: 200} and res["non2xx"] == 0


def test_mos_serve_on_a_dpdk_port(tmp_path):
    """The same server on DPDK (a net_af_packet vdev on c1): curl over IPv4
    and IPv6, byte-identical."""
    import sys
    import time

    from mos.ports import dpdk
    ok, why = dpdk.available()
    if not ok:
        pytest.skip(f"DPDK: {why}")
    from mos.testing.testbed import Testbed
    root = tmp_path / "www"
    root.mkdir()
    data = os.urandom(3 << 20)
    (root / "f").write_bytes(data)
    with Testbed() as tb:
        cfg = tmp_path / "dpdk.yaml"
        cfg.write_text("mode: endhost\nports:\n  - {name: wire, driver: dpdk, port_id: 0}\n"
                       "dpdk:\n  eal_args: [--no-huge, -m, '512', --no-pci, -l, '0', "
                       f"--file-prefix, mos{os.getpid()}, "
                       f"'--vdev=net_af_packet0,iface={tb.c1}']\n"
                       "endhost:\n"
                       f"  addresses: [{{port: wire, address: {SERVER_IP}/24}}, "
                       f"{{port: wire, address: {SERVER_IP6}/64}}]\n")
        repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        proc = subprocess.Popen([sys.executable, "-m", "mos", "serve", "-c", str(cfg),
                                 "--root", str(root), "--seconds", "90"],
                                cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            wait_serving(proc, timeout=120)
            for url in (f"http://{SERVER_IP}/f", f"http://[{SERVER_IP6}]/f"):
                p = curl(tb, url, timeout=60)
                assert p.returncode == 0, p.stderr.decode()
                assert p.stdout == data
        finally:
            proc.terminate()
            out, err = proc.communicate(timeout=30)
        assert b'"served": 2' in out, err.decode()[-2000:]


def test_tshark_sees_scaling_timestamps_and_sack_negotiated_with_linux(served, tmp_path):
    """A capture of the link while curl fetches a file: mos's SYN-ACK carries
    window scaling, timestamps and SACK-permitted (Linux offered them), and
    every segment mos sends after it carries timestamps."""
    if shutil.which("tshark") is None or shutil.which("tcpdump") is None:
        pytest.skip("needs tshark and tcpdump")
    import time
    tb, files, _, _, errors = served
    import select
    pcap = tmp_path / "link.pcap"
    # -Z root: tcpdump would drop to its own user and then fail to write in
    # a root-only temporary directory; --immediate-mode: libpcap would hold
    # packets in its ring for up to a second, and stopping it before then
    # loses them
    dump = subprocess.Popen(["ip", "netns", "exec", tb.client_ns, "tcpdump", "-Z", "root",
                             "--immediate-mode", "-i", tb.c0, "-w", str(pcap), "-U", "-s", "128",
                             "tcp port 80"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        # capturing once it says it listens
        ready, _, _ = select.select([dump.stderr], [], [], 15)
        started = dump.stderr.readline().decode(errors="replace") if ready else ""
        assert "listening" in started, started
        p = curl(tb, f"http://{SERVER_IP}/1m")
        assert p.returncode == 0
        time.sleep(0.5)
    finally:
        dump.terminate()
        rest = dump.communicate(timeout=10)[1].decode(errors="replace")
    t = subprocess.run(["tshark", "-r", str(pcap), "-Y", f"ip.src=={SERVER_IP}", "-T",
                        "fields", "-e", "tcp.flags.syn", "-e", "tcp.options.wscale.shift",
                        "-e", "tcp.options.sack_perm", "-e", "tcp.options.timestamp.tsval"],
                       capture_output=True, text=True, timeout=60)
    out = t.stdout.splitlines()
    rows = [ln.split("\t") for ln in out if ln.strip()]
    synack = [r for r in rows if r[0] in ("1", "True")]
    assert synack, (out[:5], t.stderr[-500:], started, rest[-500:])
    assert synack[0][1] == "7" and synack[0][2] and synack[0][3]
    assert all(r[3] for r in rows), "a segment from mos without timestamps"
    assert not errors
