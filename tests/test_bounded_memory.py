"""Bounded memory (issue 8, item 5): no bytes kept for a side nobody reads,
per-flow memory freed when the flow ends, embryonic flows recycled under a
SYN flood (RFC 4987 3.4), --max-flows on every command.

Packets are built with dpkt (an implementation apart from the code under
test); addresses come from 198.18.0.0/15 only.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import threading
import time

import pytest

import mos
from middleboxes import midstat
from mos import Event, Side
from tcpconv import Conv

dpkt = pytest.importorskip("dpkt")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import gen_capture  # noqa: E402

MSS = 1460


def _frame(src, dst, sport, dport, seq, ack, flags, payload=b"", win=65535):
    tcp = dpkt.tcp.TCP(sport=sport, dport=dport, seq=seq & 0xFFFFFFFF, ack=ack & 0xFFFFFFFF,
                       flags=flags, win=win, data=payload)
    ip = dpkt.ip.IP(src=bytes(map(int, src.split("."))), dst=bytes(map(int, dst.split("."))),
                    p=dpkt.ip.IP_PROTO_TCP, ttl=64, data=tcp)
    ip.len = len(ip)  # dpkt fills the checksums when packed
    eth = dpkt.ethernet.Ethernet(src=b"\x02\0\0\0\0\x01", dst=b"\x02\0\0\0\0\x02",
                                 type=dpkt.ethernet.ETH_TYPE_IP, data=ip)
    return bytes(eth)


def clean_flow(nbytes: int, cport: int = 40000, t0: float = 1.0):
    """A clean client -> server transfer of nbytes: handshake, MSS segments each
    acknowledged by the server every second segment (never beyond the window),
    FIN both ways.  Returns ([(ts, frame)], data)."""
    c, s = "198.18.0.1", "198.19.0.1"
    data = hashlib.sha256(b"seed").digest() * (nbytes // 32 + 1)
    data = data[:nbytes]
    A, F, S, P = dpkt.tcp.TH_ACK, dpkt.tcp.TH_FIN, dpkt.tcp.TH_SYN, dpkt.tcp.TH_PUSH
    ci, si = 1000, 500000
    t = t0
    out = []

    def add(frame):
        nonlocal t
        out.append((t, frame))
        t += 1e-5

    add(_frame(c, s, cport, 80, ci, 0, S))
    add(_frame(s, c, 80, cport, si, ci + 1, S | A))
    add(_frame(c, s, cport, 80, ci + 1, si + 1, A))
    seq = ci + 1
    for k, off in enumerate(range(0, nbytes, MSS)):
        seg = data[off:off + MSS]
        add(_frame(c, s, cport, 80, seq, si + 1, A | P, seg))
        seq += len(seg)
        if k % 2 or off + MSS >= nbytes:
            add(_frame(s, c, 80, cport, si + 1, seq, A))
    add(_frame(c, s, cport, 80, seq, si + 1, F | A))
    add(_frame(s, c, 80, cport, si + 1, seq + 1, F | A))
    add(_frame(c, s, cport, 80, seq + 1, si + 2, A))
    return out, data


def test_midstat_clean_4mb_flow_keeps_no_bytes_and_reports_no_overrun():
    """A monitor with no data handler (midstat) reads no side: the engine keeps
    none of the 4 MB (DESIGN rule 2), so nothing can overrun."""
    frames, data = clean_flow(4 << 20)
    eng = mos.Engine(mos.Config(checksum="verify"))
    ms = midstat.attach(eng, out=io.StringIO())
    errors = []
    watcher = mos.Monitor(name="errors")  # reads nothing either
    watcher.on(Event.ERROR, lambda f, s, e: errors.append(f.event_info))
    eng.attach(watcher)
    held = 0
    for ts, fr in frames[:-3]:
        eng.feed(fr, ts)
        for f in eng.live_flows():
            base, head = f.buffered(Side.SERVER)
            held = max(held, head - base)
    for ts, fr in frames[-3:]:
        eng.feed(fr, ts)
    eng.close()
    c = eng.counters()
    assert c["errors"]["overrun"] == 0 and errors == []
    assert held == 0
    (row,) = ms.rows()
    assert row.stream_bytes[Side.CLIENT] == len(data)


def test_midstat_beside_reader_clean_4mb_flow_reader_gets_all_no_overrun():
    """Bytes are held for the monitors that read a side, not for midstat: the
    reader's peeks release them, so the 1 MiB buffer never overruns."""
    frames, data = clean_flow(4 << 20)
    eng = mos.Engine(mos.Config(checksum="verify"))
    midstat.attach(eng, out=io.StringIO())
    got = []
    reader = mos.Monitor(name="reader")
    reader.on(Event.CONN_NEW_DATA, lambda f, s, e: got.append(f.peek(s)), side=Side.SERVER)
    eng.attach(reader)
    for ts, fr in frames:
        eng.feed(fr, ts)
    eng.close()
    assert eng.counters()["errors"]["overrun"] == 0
    assert b"".join(got) == data


def test_peek_on_side_nobody_reads_raises_naming_the_declaration():
    c = Conv()
    c.handshake()
    c.send("c", b"hello")
    mon = mos.Monitor()
    mon.on(Event.CONN_START, lambda *a: None)
    eng = mos.Engine(mos.Config(checksum="verify"))
    eng.attach(mon)
    for ts, fr in c.frames:
        eng.feed(fr, ts)
    (f,) = eng.live_flows()
    with pytest.raises(mos.RegistrationError, match=r"Monitor\(reads=Side.SERVER\)"):
        f.peek(Side.SERVER)
    mon2 = mos.Monitor(reads=Side.SERVER)  # a reader attached later: new bytes are kept
    eng.attach(mon2)
    c.frames.clear()
    c.send("c", b" world")
    for ts, fr in c.frames:
        eng.feed(fr, ts)
    assert f.peek(Side.SERVER, monitor=mon2) == b" world"


def test_digest_mode_syn_only_flow_has_empty_digest():
    """Digests are allocated with a flow's first stream byte; a SYN-only flow
    reports the digest of nothing."""
    c = Conv()
    c.syn()
    eng = mos.Engine(mos.Config(checksum="verify", digest=True))
    eng.attach(mos.Monitor())
    for ts, fr in c.frames:
        eng.feed(fr, ts)
    (f,) = eng.live_flows()
    assert f.sha256(Side.SERVER) == hashlib.sha256(b"").hexdigest()
    assert f.digest_info(Side.CLIENT) == (0, 0)


def _syns(n, port0=1024, t0=2.0):
    out = []
    for i in range(n):
        c = Conv(client=("198.18.%d.%d" % (1 + i // 250, 1 + i % 250), port0 + i))
        c.ts = t0 + i * 1e-4
        c.syn()
        out += c.frames
    return out


def test_syn_flood_past_max_embryonic_recycles_oldest_half_open_keeps_established():
    """RFC 4987 3.4: the oldest half-open flow is recycled; established flows
    are not touched by the flood."""
    est = []
    for i in range(5):
        c = Conv(client=("198.18.200.1", 50000 + i))
        c.ts = 1.0 + i * 0.01
        c.handshake()
        est += c.frames
    eng = mos.Engine(mos.Config(checksum="verify", max_flows=100, max_embryonic=10))
    ends = []
    mon = mos.Monitor()
    mon.on(Event.CONN_END, lambda f, s, e: ends.append((f.client_port, f.event_info.reason.name)),
           side=Side.CLIENT)
    eng.attach(mon)
    for ts, fr in est + _syns(50):
        eng.feed(fr, ts)
    c = eng.counters()
    assert c["flows_live"] == 15 and c["embryonic"] == 10
    assert c["ended"]["evict"] == 40 and c["evicted_embryonic"] == 40
    assert [p for p, _ in ends] == list(range(1024, 1064))  # oldest first
    assert sorted(f.client_port for f in eng.live_flows())[-5:] == list(range(50000, 50005))


def test_flow_cap_without_embryonic_evicts_least_recent_not_stale_lru_head():
    """The LRU order is refreshed at most every 50 ms; eviction re-checks the
    head, so a flow active since its last move is not taken for the oldest."""
    a, b = Conv(client=("198.18.0.1", 40000)), Conv(client=("198.18.0.1", 40001))
    a.ts, b.ts = 1.0, 1.001
    a.handshake()
    b.handshake()
    a.ts = 1.01
    a.send("c", b"still here")
    n = Conv(client=("198.18.0.1", 40002))
    n.ts = 1.02
    n.syn()
    frames = sorted(a.frames + b.frames + n.frames, key=lambda x: x[0])
    eng = mos.Engine(mos.Config(checksum="verify", max_flows=2))
    eng.attach(mos.Monitor(reads=True))
    for ts, fr in frames:
        eng.feed(fr, ts)
    assert sorted(f.client_port for f in eng.live_flows()) == [40000, 40002]
    assert eng.counters()["ended"]["evict"] == 1


def test_cli_every_command_takes_max_flows():
    from mos.cli import build_parser
    p = build_parser()
    assert p.parse_args(["streams", "x.pcap", "--max-flows", "7"]).max_flows == 7
    assert p.parse_args(["run", "x.pcap", "--max-flows", "7"]).max_flows == 7
    assert p.parse_args(["run", "-c", "x.yaml", "--max-flows", "7"]).max_flows == 7
    with pytest.raises(SystemExit):
        p.parse_args(["streams", "x.pcap", "--max-flows", "0"])


def test_settings_monitor_max_flows_and_max_embryonic():
    from mos.settings import parse_settings
    s = parse_settings("ports:\n  - {name: a, driver: pcap, path: x.pcap}\n"
                       "  - {name: b, driver: pcap, path: y.pcap}\nforward: [[a, b]]\n"
                       "monitor: {max_flows: 1000, max_embryonic: 100}\n", name="t.yaml")
    assert (s.monitor.max_flows, s.monitor.max_embryonic) == (1000, 100)


def _anon_peak(argv, env):
    """Run argv; (stdout text, stderr text, peak RssAnon bytes polled from /proc)."""
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    peak = [0]
    done = threading.Event()

    def poll():
        while not done.is_set():
            try:
                with open(f"/proc/{p.pid}/status") as f:
                    for line in f:
                        if line.startswith("RssAnon:"):
                            peak[0] = max(peak[0], int(line.split()[1]) * 1024)
            except OSError:
                pass
            time.sleep(0.002)

    t = threading.Thread(target=poll, daemon=True)
    t.start()
    out, err = p.communicate(timeout=600)
    done.set()
    t.join()
    assert p.returncode == 0, err
    return out, err, peak[0]


def test_streams_syn_flood_50k_small_max_flows_bounded_normal_flows_right(tmp_path):
    """`mos streams --max-flows 5000` over 50k SYNs mixed with normal flows:
    evictions counted, memory bounded by the cap (not by the flows seen),
    every normal flow's streams right."""
    cap = str(tmp_path / "flood.pcap")
    gen_capture.generate(cap, packets=6000, concurrent=50, segments="2-4", seed=3,
                         syn_flood=50_000, quiet=True)
    with open(cap + ".expected.json") as f:
        exp = json.load(f)
    env = dict(os.environ, PYTHONPATH=ROOT)
    argv = [sys.executable, "-m", "mos", "streams"]
    out, err, peak = _anon_peak(argv + [cap, "--max-flows", "5000", "--stats"], env)
    _o, _e, base = _anon_peak(argv + [mos.sample_capture()], env)
    stats = json.loads(err.strip().splitlines()[-1])
    c = stats["counters"]
    assert c["flows_created"] == 50_000 + len(exp["flows"])
    assert c["ended"]["evict"] >= 50_000 - 5000 and c["evicted_embryonic"] >= 50_000 - 5000
    assert "flows evicted" in err
    # 50k live flows would hold >= 50k * 400 B = 20 MB of flow entries alone
    assert peak - base < 10 << 20, (peak, base)
    recs = {}
    lines = out.splitlines()
    assert len(lines) == 2 * c["flows_created"]
    for line in lines:
        r = json.loads(line)
        recs[(r["client"], r["server"], r["direction"])] = r
    for f in exp["flows"]:
        for d in ("c2s", "s2c"):
            r = recs[(f["client"], f["server"], d)]
            assert (r["bytes"], r["sha256"]) == (f[d + "_bytes"], f[d + "_sha256"]), (f, d)


def test_streams_records_out_of_order_spilled_come_out_in_flow_order(monkeypatch):
    """mos streams holds at most SPILL records: the rest wait in sorted temp
    files, merged at the end, so the output keeps flow id order."""
    import random

    from mos.cli import _Records
    monkeypatch.setattr(_Records, "SPILL", 7)
    out = io.StringIO()
    rec = _Records(out)
    ids = list(range(1, 201))
    random.Random(5).shuffle(ids)
    for fid in ids:
        rec.add(fid, json.dumps({"id": fid, "d": "c2s"}), json.dumps({"id": fid, "d": "s2c"}))
        assert len(rec.pending) < 7
    rec.finish()
    got = [json.loads(x) for x in out.getvalue().splitlines()]
    assert got == [{"id": i, "d": d} for i in range(1, 201) for d in ("c2s", "s2c")]
    assert rec.runs == []
