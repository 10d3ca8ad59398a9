"""The namespace test bed (DESIGN §5): isolated until joined, bridged, always removed."""

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap

import pytest
from netbed import http_server, needs_testbed, testbed_fixture  # noqa: F401 (fixture)

from mos.testing.testbed import STATE_DIR, Testbed, TestbedError, add_testbed_parser, sweep

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CURL = ["curl", "-sS", "--noproxy", "*", "--max-time", "20", "--connect-timeout", "5"]


def our_names(prefix):
    def ip(*args):
        return subprocess.run(["ip", "-j", *args], check=False, capture_output=True, text=True,
                              timeout=10).stdout

    ns, links = ip("netns", "list"), ip("link", "show")
    names = [d["name"] for d in json.loads(ns or "[]")] + \
        [d["ifname"] for d in json.loads(links or "[]")]
    return sorted(n for n in names if n.startswith(prefix + "-"))


def test_bed_names_fit_and_middlebox_ends_have_no_addresses(testbed):
    tb = testbed
    assert tb.prefix.startswith("mos") and len(tb.prefix) == 8
    assert our_names(tb.prefix) == sorted([tb.client_ns, tb.server_ns, tb.c1, tb.s1])
    assert all(len(n) <= 15 for n in (tb.c0, tb.c1, tb.s0, tb.s1, tb.bridge_name))
    for dev in (tb.c1, tb.s1):
        info = json.loads(subprocess.run(["ip", "-j", "addr", "show", dev], check=True,
                                         capture_output=True,
                                         text=True, timeout=10).stdout)[0]
        assert info["addr_info"] == [] and info["mtu"] == 1500
        assert "PROMISC" in info["flags"] and "UP" in info["flags"]
        feats = subprocess.run(["ethtool", "-k", dev], check=True, capture_output=True, text=True,
                               timeout=10).stdout
        for f in ("tcp-segmentation-offload", "generic-segmentation-offload",
                  "generic-receive-offload", "tx-checksumming", "rx-checksumming"):
            assert f"{f}: off" in feats, f
    addrs = tb.run_in(tb.client_ns, ["ip", "-j", "addr", "show", tb.c0]).stdout
    got = {(a["local"], a["prefixlen"]) for a in json.loads(addrs)[0]["addr_info"]
           if a.get("scope") == "global"}
    assert got == {("198.18.0.1", 24), ("2001:db8::1", 64)}
    feats = tb.run_in(tb.server_ns, ["ethtool", "-k", tb.s0]).stdout
    assert "tcp-segmentation-offload: off" in feats and "tx-checksumming: off" in feats


def test_no_bridge_ping_fails(testbed):
    tb = testbed
    assert not tb.ping(tb.client_ns, tb.server_ip, wait=1)
    assert not tb.ping(tb.client_ns, tb.server_ip6, wait=1)


@pytest.mark.parametrize("tool", ["ping", "python"])
def test_bridge_ping_ipv4_and_ipv6_then_isolated_again(testbed, tool):
    if tool == "ping" and shutil.which("ping") is None:
        pytest.skip("iputils ping is not installed (the Python ping covers it)")
    tb = testbed
    with tb.bridge() as br:
        assert br == tb.bridge_name
        assert tb.ping(tb.client_ns, tb.server_ip, tool=tool)
        assert tb.ping(tb.client_ns, tb.server_ip6, tool=tool)
        assert tb.ping(tb.server_ns, tb.client_ip6, tool=tool)
    assert tb.bridge_name not in our_names(tb.prefix)
    assert not tb.ping(tb.client_ns, tb.server_ip, wait=0.5, tool=tool)


def test_bridge_curl_1mb_download_is_byte_identical(testbed, tmp_path):
    tb = testbed
    www = tmp_path / "www"
    www.mkdir()
    data = os.urandom(1 << 20)
    (www / "random.bin").write_bytes(data)
    with tb.bridge(), http_server(tb, www):
        for url, out in ((f"http://{tb.server_ip}/random.bin", tmp_path / "v4"),
                         (f"http://[{tb.server_ip6}]/random.bin", tmp_path / "v6")):
            r = tb.run_in(tb.client_ns, CURL + ["-o", str(out), url], timeout=30)
            assert r.returncode == 0, r.stderr
            assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(data).digest()


def test_http_server_unreachable_without_bridge(testbed, tmp_path):
    tb = testbed
    (tmp_path / "x").write_text("x")
    with http_server(tb, tmp_path):
        r = tb.run_in(tb.client_ns, CURL[:2] + ["--connect-timeout", "1", "-o", os.devnull,
                                                 f"http://{tb.server_ip}/x"], timeout=10)
        assert r.returncode != 0


def test_exit_removes_namespaces_links_and_processes():
    needs_testbed()
    with Testbed() as tb, tb.bridge():
        p = tb.popen_in(tb.server_ns, ["sleep", "60"], lifetime=60)
        assert our_names(tb.prefix)
    assert our_names(tb.prefix) == []
    assert p.poll() is not None
    assert not os.path.exists(os.path.join(STATE_DIR, tb.prefix + ".json"))
    with pytest.raises(TestbedError, match="not up"):
        tb.run_in(tb.client_ns, ["true"])


def test_exit_by_exception_still_removes_everything():
    needs_testbed()
    with pytest.raises(RuntimeError, match="boom"), Testbed() as tb:
        p = tb.popen_in(tb.client_ns, ["sleep", "60"], lifetime=60)
        with tb.bridge():
            raise RuntimeError("boom")
    assert our_names(tb.prefix) == []
    assert p.poll() is not None


def test_sweep_removes_leaked_namespace_and_veth():
    needs_testbed()
    leak = "mos" + os.urandom(3).hex()[:5]
    subprocess.run(["ip", "netns", "add", f"{leak}-cli"], check=True, timeout=10)
    subprocess.run(["ip", "link", "add", f"{leak}-c1", "type", "veth", "peer", "name",
                    f"{leak}-c0", "netns", f"{leak}-cli"], check=True, timeout=10)
    try:
        assert our_names(leak) == [f"{leak}-c1", f"{leak}-cli"]
        removed = sweep()
        assert f"{leak}-cli" in removed and f"{leak}-c1" in removed
        assert our_names(leak) == []
    finally:
        sweep(leak, force=True, exact=True)


def test_sweep_keeps_beds_of_live_processes_and_removes_killed_ones():
    """A bed whose owner still runs survives sweep(); SIGKILL its owner and it goes."""
    needs_testbed()
    code = textwrap.dedent("""\
        import sys, time
        from mos.testing.testbed import Testbed
        tb = Testbed().up()
        print(tb.prefix, flush=True)
        time.sleep(60)
        """)
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                         cwd=ROOT)
    try:
        prefix = p.stdout.readline().strip()
        assert prefix.startswith("mos") and our_names(prefix)
        sweep()
        assert len(our_names(prefix)) == 4, "the owner runs: kept"
        p.kill()
        p.wait(10)
        assert len(our_names(prefix)) == 4, "SIGKILL: no teardown ran"
        sweep()
        assert our_names(prefix) == []
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(10)
        p.stdout.close()


def test_sigterm_tears_down():
    needs_testbed()
    code = textwrap.dedent("""\
        import time
        from mos.testing.testbed import Testbed
        with Testbed() as tb:
            tb.popen_in(tb.client_ns, ["sleep", "60"], lifetime=60)
            print(tb.prefix, flush=True)
            time.sleep(60)
        """)
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                         cwd=ROOT)
    try:
        prefix = p.stdout.readline().strip()
        assert len(our_names(prefix)) == 4
        p.send_signal(signal.SIGTERM)
        assert p.wait(15) == -signal.SIGTERM, "it still dies of the signal"
        assert our_names(prefix) == []
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(10)
        p.stdout.close()


def test_cli_up_leaves_it_up_until_down(capsys):
    needs_testbed()
    parser = argparse.ArgumentParser(prog="mos")
    add_testbed_parser(parser.add_subparsers(dest="cmd", required=True))
    prefix = "mostest" + os.urandom(3).hex()[:5]
    args = parser.parse_args(["testbed", "up", "--prefix", prefix])
    try:
        assert args.func(args) == 0
        names = json.loads(capsys.readouterr().out)
        assert names["c1"] == f"{prefix}-c1" and names["server_ip6"] == "2001:db8::2"
        sweep()
        assert len(our_names(prefix)) == 4, "kept by 'up': sweep leaves it"
        args = parser.parse_args(["testbed", "down", "--prefix", prefix])
        assert args.func(args) == 0
        assert set(json.loads(capsys.readouterr().out)["removed"]) == \
            {f"{prefix}-{s}" for s in ("cli", "srv", "c1", "s1")}
        assert our_names(prefix) == []
    finally:
        sweep(prefix, force=True, exact=True)


def test_bad_prefix_is_refused():
    with pytest.raises(TestbedError, match="1 to 12 letters"):
        Testbed(prefix="has-dash")
    with pytest.raises(TestbedError, match="1 to 12 letters"):
        Testbed(prefix="x" * 13)


def test_run_in_refuses_foreign_namespace(testbed):
    with pytest.raises(TestbedError, match="not a namespace of this bed"):
        testbed.run_in("some-other-ns", ["true"])
