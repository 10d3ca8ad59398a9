"""A SYN flood against `mos serve` in the test bed (DESIGN 5): from the
client namespace, 200,000 SYNs with spoofed sources in 198.19.0.0/16 (RFC
2544's 198.18.0.0/15, never the bed's own 198.18.0.1 and .2) to
198.18.0.2:80, sent from an AF_PACKET socket on c0 in a bounded loop;
during and after it, curl from 198.18.0.1 fetches a file byte-identically
(the SYN queue is full of spoofed entries: its handshake goes through a
SYN cookie, RFC 4987 3.6).

Nothing leaves the bed: mos's SYN-ACKs to the spoofed sources go to its
gateway, the client namespace (198.18.0.1), whose kernel has no route for
them and drops them; the root namespace's kernel does not forward what
arrives on c1 (forwarding is turned off on it for the test).  The bed, mos
serve and the sender go when the test ends, also on failure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from netbed import live_skip_reason, wait_serving

from mos.testing.testbed import CLIENT_IP, SERVER_IP

HERE = os.path.dirname(os.path.abspath(__file__))
FLOOD = 200_000


# coreutils timeout bounds the sender's lifetime (Testbed.popen_in)
WHY = live_skip_reason("ip", "ethtool", "curl", "timeout")
pytestmark = pytest.mark.skipif(WHY is not None, reason=f"SYN flood live test: {WHY}")


def _curl(tb, url, timeout=60):
    return subprocess.run(["ip", "netns", "exec", tb.client_ns, "curl", "-sS",
                           "--max-time", str(timeout - 5), "-w", "\n%{time_connect}", url],
                          capture_output=True, timeout=timeout, check=False)


def _mac(tb, dev, ns=None):
    argv = ["cat", f"/sys/class/net/{dev}/address"]
    if ns:
        return tb.run_in(ns, argv).stdout.strip()
    with open(argv[1]) as fh:
        return fh.read().strip()


def test_curl_fetches_a_file_while_200k_spoofed_syns_flood_mos_serve(tmp_path, capsys):
    from mos.testing.testbed import Testbed
    root = tmp_path / "www"
    root.mkdir()
    data = os.urandom(256 * 1024)
    (root / "f").write_bytes(data)
    with Testbed(ipv6=False) as tb:
        # what arrives on c1 is mos's: the root namespace never routes it on
        with open(f"/proc/sys/net/ipv4/conf/{tb.c1}/forwarding", "w") as fh:
            fh.write("0")
        tb.run_in(tb.client_ns, ["sysctl", "-qw", "net.ipv4.ip_forward=0"])
        cfg = tmp_path / "serve.yaml"
        cfg.write_text("mode: endhost\nports:\n"
                       f"  - {{name: wire, driver: afpacket, iface: {tb.c1}}}\n"
                       "endhost:\n"
                       f"  addresses: [{{port: wire, address: {SERVER_IP}/24}}]\n"
                       f"  gateway4: {CLIENT_IP}\n  syncookies: 1\n")
        repo = os.path.dirname(HERE)
        proc = subprocess.Popen([sys.executable, "-m", "mos", "serve", "-c", str(cfg),
                                 "--root", str(root), "--port", "80", "--seconds", "150"],
                                cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        flood = None
        try:
            wait_serving(proc)
            p = _curl(tb, f"http://{SERVER_IP}/f")
            assert p.returncode == 0 and p.stdout.rsplit(b"\n", 1)[0] == data, p.stderr
            t0 = time.monotonic()
            flood = tb.popen_in(tb.client_ns, [sys.executable, os.path.join(HERE, "_synflood.py"),
                                               tb.c0, _mac(tb, tb.c1), _mac(tb, tb.c0, tb.client_ns),
                                               str(FLOOD), "60"],
                                lifetime=90, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            # curl once the queue is full of spoofed entries and SYNs still come
            cue = flood.stdout.readline()
            assert cue == b"flooding\n", cue
            during = _curl(tb, f"http://{SERVER_IP}/f")
            out, err = flood.communicate(timeout=90)
            assert flood.returncode == 0, err.decode()[-2000:]
            sent, secs = out.split()[1:3]
            after = _curl(tb, f"http://{SERVER_IP}/f")
            elapsed = time.monotonic() - t0
        finally:
            if flood is not None:
                tb.stop(flood)
            proc.terminate()
            pout, perr = proc.communicate(timeout=30)
        for name, r in (("during", during), ("after", after)):
            assert r.returncode == 0, (name, r.stderr.decode())
            body = r.stdout.rsplit(b"\n", 1)[0]
            assert body == data, name
        stats = json.loads(pout.decode().strip().splitlines()[-1])
        st = stats["stack"]
        c1, c2 = (r.stdout.rsplit(b"\n", 1)[1].decode() for r in (during, after))
        with capsys.disabled():
            print(f"\n  {int(sent):,} spoofed SYNs sent in {float(secs):.2f} s; mos serve: "
                  f"syncookies_sent {st['syncookies_sent']:,}, syncookies_ok "
                  f"{st['syncookies_ok']}, syncookies_failed {st['syncookies_failed']}, "
                  f"syn_dropped {st['syn_dropped']}, tcp_in {st['tcp_in']:,}, conns "
                  f"{st['conns']}; curl connect during {c1} s, after {c2} s; "
                  f"{elapsed:.1f} s in all")
        assert int(sent) == FLOOD
        assert stats["served"] >= 3 and stats["errors"] == 0, perr.decode()[-2000:]
        # the flood filled the queue, the rest were cookies; curl's two
        # later handshakes went through cookies and nothing forged one
        assert st["syncookies_sent"] >= 10_000 and st["syncookies_ok"] >= 2
        assert st["syncookies_failed"] == 0
