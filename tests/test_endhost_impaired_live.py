"""mos's end host against Linux through a bad wire (DESIGN 5): the test
bed with the impairment box (middleboxes/impair, `mos run` in-line between
c1 and s1 in the root namespace) losing 2 %, duplicating 1 % and
reordering 1 % of the TCP segments each way; mos's stack in the server
namespace on s0 (198.18.0.2, Linux's addresses there removed), Linux in
the client namespace (198.18.0.1).

Each direction moves 20 MB ten times, byte-identically, through the box
with 0 % impairment (the clean time: the box's own cost included) and
through it impaired, in two rounds of five that alternate; the median
impaired time must stay within 3x the
median clean one (issue 9):

* mos sends: curl in the client namespace fetches from `mos serve`;
* mos receives: `mos load` fetches from Python's http.server in the client
  namespace, while tcpdump on c0 records what mos sent: SACK blocks
  (RFC 2018) after the losses.

SYN segments are spared (``handshake=0``): a lost SYN costs RFC 6298's 1 s
initial RTO, whatever the loss recovery, and would measure that instead.
Every process and namespace goes when the module ends, also on failure
(the Testbed context manager; each process has a lifetime)."""

from __future__ import annotations

import hashlib
import json
import os
import select
import statistics
import subprocess
import sys
import time

import pytest
from netbed import interrupt, live_skip_reason, wait_serving

from mos.testing.testbed import CLIENT_IP, SERVER_IP

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE = 20_000_000
IMPAIRED = "loss=0.02,dup=0.01,reorder=0.01,seed=7,handshake=0"
CLEAN = "loss=0,dup=0,reorder=0,handshake=0"
TARGET = 3.0   # impaired time / clean time, at most (issue 9)
REPEAT = 5     # transfers each way per run (one 20 MB transfer takes 0.1-0.3 s
               # clean, and its time varies by 2x between runs)
ROUNDS = 2     # clean and impaired runs, alternating: the medians of their
               # pooled transfers are compared


WHY = live_skip_reason("ip", "ethtool", "curl", "ping", "ss", "tcpdump", "tshark", "timeout")
pytestmark = pytest.mark.skipif(WHY is not None, reason=f"impaired end-host live tests: {WHY}")


class Box:
    """`mos run -c` with the impairment app between c1 and s1 (root namespace)."""

    def __init__(self, tb, tmp, params: str):
        cfg = tmp / "box.yaml"
        cfg.write_text("mode: inline\nports:\n"
                       f"  - {{name: west, driver: afpacket, iface: {tb.c1}}}\n"
                       f"  - {{name: east, driver: afpacket, iface: {tb.s1}}}\n"
                       "forward: [[west, east]]\nworkers: 1\n")
        env = dict(os.environ, MOS_IMPAIR=params,
                   PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        # coreutils timeout: gone after 10 minutes even if this process dies
        self.proc = subprocess.Popen(
            ["timeout", "--kill-after=2", "600", sys.executable, "-m", "mos", "run", "-c",
             str(cfg), "--no-progress", "--app", "middleboxes.impair.app"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
        self.counts = None

    def stop(self) -> dict:
        """Stop it; the app's counters (``impair: {...}`` on stderr)."""
        _out, err = interrupt(self.proc)
        lines = [ln for ln in err.splitlines() if ln.startswith("impair: ")]
        assert lines, f"no counters from the box (rc {self.proc.returncode}): {err[-2000:]}"
        self.counts = json.loads(lines[-1][len("impair: "):])
        return self.counts


def _endhost_yaml(tb, tmp):
    cfg = tmp / "endhost.yaml"
    cfg.write_text("mode: endhost\nports:\n"
                   f"  - {{name: wire, driver: afpacket, iface: {tb.s0}}}\n"
                   f"endhost:\n  addresses: [{{port: wire, address: {SERVER_IP}/24}}]\n")
    return cfg


def _serve(tb, cfg, root):
    """`mos serve` on s0 in the server namespace, once it says it serves."""
    proc = tb.popen_in(tb.server_ns, [sys.executable, "-m", "mos", "serve", "-c", str(cfg),
                                      "--root", str(root), "--port", "80", "--seconds", "300"],
                       lifetime=320, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_serving(proc)
    return proc


def _wait_forwarding(tb, box, limit=30.0):
    """Until mos's stack answers a ping through the box (ICMP passes untouched)."""
    deadline = time.monotonic() + limit
    while not tb.ping(tb.client_ns, SERVER_IP, wait=0.5):
        if box.proc.poll() is not None or time.monotonic() > deadline:
            box.stop()
            pytest.fail(f"the box did not forward within {limit} s")


def _curl(tb, out):
    r = tb.run_in(tb.client_ns, ["curl", "-sS", "--max-time", "110", "-o", str(out), "-w",
                                 "%{time_total}", f"http://{SERVER_IP}/big"], timeout=120)
    assert r.returncode == 0, r.stderr
    return float(r.stdout)


def _load(tb, cfg, want):
    """`mos load` fetching the file REPEAT times, one connection after the
    other in one process (a new process would reuse the last one's port
    and numbers, and meet Linux's TIME-WAIT); the median time of one."""
    r = tb.run_in(tb.server_ns, [sys.executable, "-m", "mos", "load", "--config", str(cfg),
                                 f"http://{CLIENT_IP}:8000/big", "-n", str(REPEAT), "-c", "1",
                                 "-s", "110"], timeout=60 + 60 * REPEAT, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert f"Complete requests:      {REPEAT}" in r.stdout, r.stdout
    assert "Failed requests:        0" in r.stdout, r.stdout
    last = json.loads(r.stdout.strip().splitlines()[-1])
    assert last["bodies"] == {want: REPEAT}
    # with one connection at a time, a request's latency is its transfer
    each = [round(ms / 1000, 4) for ms in last["latencies_ms"]]
    assert len(each) == REPEAT, last
    return each, last["tcp"]


def _capture(tb, pcap):
    """tcpdump on c0 (client namespace) of what mos sent, once it listens
    (mos's AF_PACKET port bypasses the qdisc, and taps on s0 with it)."""
    dump = tb.popen_in(tb.client_ns, ["tcpdump", "-Z", "root", "--immediate-mode", "-i", tb.c0,
                                      "-w", str(pcap), "-U", "-s", "96",
                                      f"tcp and src host {SERVER_IP}"],
                       lifetime=300, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ready, _, _ = select.select([dump.stderr], [], [], 15)
    started = dump.stderr.readline().decode(errors="replace") if ready else ""
    assert "listening" in started, started
    return dump


def _one_run(tb, tmp, www, want, params, capture=None):
    """Both directions through a box with `params`: times, counters, load result."""
    cfg = _endhost_yaml(tb, tmp)
    box = Box(tb, tmp, params)
    got = {}
    try:
        serve = _serve(tb, cfg, www)
        try:
            _wait_forwarding(tb, box)
            out = tmp / "curl.out"
            got["curl_all"] = []
            for _ in range(REPEAT):
                got["curl_all"].append(_curl(tb, out))
                assert hashlib.sha256(out.read_bytes()).hexdigest() == want, "curl's copy differs"
                out.unlink()
        finally:
            # mos serve's last line: its stack's counters (resends, RTOs, probes)
            serve.terminate()
            try:
                tail = serve.communicate(timeout=30)[0].decode(errors="replace").splitlines()
            except subprocess.TimeoutExpired:
                tail = []
            tb.stop(serve)
            got["serve"] = json.loads(tail[-1]) if tail and tail[-1].startswith("{") else {}
        dump = _capture(tb, capture) if capture else None
        try:
            got["load_all"], got["load_tcp"] = _load(tb, cfg, want)
        finally:
            if dump is not None:
                time.sleep(0.3)
                tb.stop(dump)
    finally:
        got["box"] = box.stop()
    got["curl_s"] = statistics.median(got["curl_all"])
    got["load_s"] = statistics.median(got["load_all"])
    return got


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """ROUNDS clean and impaired runs on one test bed (http.server in the
    client namespace throughout)."""
    from netbed import http_server

    from mos.testing.testbed import Testbed
    tmp = tmp_path_factory.mktemp("impaired")
    www = tmp / "www"
    www.mkdir()
    data = os.urandom(SIZE)
    (www / "big").write_bytes(data)
    want = hashlib.sha256(data).hexdigest()
    del data
    with Testbed(ipv6=False) as tb:
        # mos's stack owns 198.18.0.2 on s0: Linux there must not answer
        # ARP or reset mos's connections
        for argv in (["ip", "addr", "flush", "dev", tb.s0],
                     ["sysctl", "-qw", f"net.ipv6.conf.{tb.s0}.disable_ipv6=1"]):
            r = tb.run_in(tb.server_ns, argv)
            assert r.returncode == 0, r.stderr
        with http_server(tb, www, port=8000, ns=tb.client_ns, lifetime=600):
            # clean and impaired runs alternate, so that the machine's speed
            # drifting (a neighbour's load) weighs on both alike; the capture
            # runs in all of them: tcpdump waking for each packet takes CPU
            # from the box and the stacks on two cores
            got = {"clean": [], "impaired": []}
            for k in range(ROUNDS):
                got["clean"].append(_one_run(tb, tmp, www, want, CLEAN,
                                             capture=tmp / f"clean{k}.pcap"))
                got["impaired"].append(_one_run(tb, tmp, www, want, IMPAIRED,
                                                capture=tmp / f"mos{k}.pcap"))
            yield {"clean": _pooled(got["clean"]), "impaired": _pooled(got["impaired"]),
                   "pcap": tmp / f"mos{ROUNDS - 1}.pcap"}


def _pooled(rounds):
    """The transfers of several runs as one sample: their medians; the
    counters of the box and of the stacks added up."""
    out = {"curl_all": [t for r in rounds for t in r["curl_all"]],
           "load_all": [t for r in rounds for t in r["load_all"]],
           "serve": rounds[-1]["serve"], "box": dict(rounds[-1]["box"]), "load_tcp": {}}
    out["curl_s"] = statistics.median(out["curl_all"])
    out["load_s"] = statistics.median(out["load_all"])
    for key in ("dropped", "duplicated", "reordered"):
        out["box"][key] = sum(r["box"].get(key, 0) for r in rounds)
    for r in rounds:
        for k, v in r["load_tcp"].items():
            out["load_tcp"][k] = out["load_tcp"].get(k, 0) + v
    return out


def _report(capsys, what, clean, bad, key):
    with capsys.disabled():
        each = (f"clean {clean[key + '_all']} s, impaired {bad[key + '_all']} s; "
                if key + "_all" in clean else "")
        print(f"\n  {what}: {each}medians {clean[key + '_s']:.3f} / {bad[key + '_s']:.3f} s "
              f"({bad[key + '_s'] / clean[key + '_s']:.2f}x); box: {json.dumps(bad['box'])}")


def test_curl_downloads_from_mos_through_the_box_within_three_times_clean(runs, capsys):
    # 1.6-2.3x in eight runs of two alternating rounds: RTT from send
    # times, ACK clocking in the pump, undo, a second tail probe, CUBIC (README)
    clean, bad = runs["clean"], runs["impaired"]
    box = bad["box"]
    assert runs["clean"]["box"]["dropped"] == 0
    # the box did impair (2 % of ~14,000 data segments a transfer and their ACKs)
    assert box["dropped"] > 100 and box["duplicated"] > 30 and box["reordered"] > 30, box
    _report(capsys, f"curl <- mos serve, 20 MB x {REPEAT * ROUNDS}", clean, bad, "curl")
    with capsys.disabled():
        tcp = {k: v for k, v in bad.get("serve", {}).get("stack", {}).items()
               if k.startswith("tcp_")}
        print(f"  mos serve's TCP through the box: {json.dumps(tcp)}")
    assert bad["curl_s"] <= TARGET * clean["curl_s"], (clean["curl_s"], bad["curl_s"])


def test_mos_load_fetches_from_linux_through_the_box_within_three_times_clean(runs, capsys):
    # 1.2-2.1x in eight runs of two alternating rounds (1.1-6.1x before
    # receive buffer autotuning and resent window updates; README)
    clean, bad = runs["clean"], runs["impaired"]
    _report(capsys, f"mos load <- http.server, 20 MB x {REPEAT * ROUNDS}", clean, bad, "load")
    with capsys.disabled():
        print(f"  mos load's TCP through the box: {json.dumps(bad['load_tcp'])}")
    assert bad["load_s"] <= TARGET * clean["load_s"], (clean["load_s"], bad["load_s"])


def test_mos_sends_sack_blocks_after_losses(runs):
    """mos, the receiver of the load run, reports the out-of-order data
    the losses left with SACK blocks (RFC 2018 4), and the segments the box
    duplicated with D-SACK blocks (RFC 2883 4)."""
    t = subprocess.run(["tshark", "-r", str(runs["pcap"]), "-Y",
                        f"ip.src=={SERVER_IP} && tcp.options.sack_le", "-T", "fields",
                        "-e", "tcp.options.sack_le", "-e", "tcp.ack"],
                       capture_output=True, text=True, timeout=120, check=False)
    rows = [ln.split("\t") for ln in t.stdout.splitlines() if ln.strip()]
    assert rows, t.stderr[-1000:]
    # tshark's relative numbers: a block above the ACK is data held past a
    # hole, one below it a duplicate
    first = [(int(le.split(",")[0]), int(ack)) for le, ack in rows]
    assert sum(1 for le, ack in first if le > ack) > 10, rows[:20]
    assert any(le < ack for le, ack in first), rows[:20]
