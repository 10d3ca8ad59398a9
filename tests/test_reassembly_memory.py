"""Reassembly memory (issue 13, finding 1): out-of-order bytes far ahead of
the stream cost the blocks they touch, not the distance to them; a memcap
shared by every flow of a worker refuses what would pass it, counted.

The captures are the ones the fuzzing run found: per flow a SYN (or a full
handshake with a 1 GiB window), then 1-byte segments at +8 KB, +16 KB, ...
+4 MB and +8,000,000.  Built with dpkt; addresses from 198.18.0.0/15 only.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pytest

import mos
from mos import Event, Side

dpkt = pytest.importorskip("dpkt")

from mos.settings import parse_settings  # noqa: E402
from test_bounded_memory import _frame  # noqa: E402

A, S, P = dpkt.tcp.TH_ACK, dpkt.tcp.TH_SYN, dpkt.tcp.TH_PUSH
#: offsets of the 1-byte segments, from the first byte of the stream
OFFSETS = [8192 << k for k in range(10)] + [8_000_000]
WSCALE14 = b"\x03\x03\x0e\x00"  # window scale 14 (RFC 7323 2.2), then a NOP


def _hello(i: int) -> bytes:
    return b"hello %d" % i


def _pack(src, dst, tcp):
    tcp.off = 5 + len(tcp.opts) // 4
    ip = dpkt.ip.IP(src=bytes(map(int, src.split("."))), dst=bytes(map(int, dst.split("."))),
                    p=dpkt.ip.IP_PROTO_TCP, ttl=64, data=tcp)
    ip.len = len(ip)
    return bytes(dpkt.ethernet.Ethernet(src=b"\x02\0\0\0\0\x01", dst=b"\x02\0\0\0\0\x02",
                                        type=dpkt.ethernet.ETH_TYPE_IP, data=ip))


def scatter_frames(nflows: int, handshake: bool):
    """[(ts, frame)]: per flow either only a SYN (the finding's capture) or a
    handshake whose server opens a 1 GiB window and an in-order "hello N",
    then the 1-byte segments at OFFSETS."""
    out, t = [], 1.0
    s = "198.19.0.1"
    for i in range(nflows):
        c, cp = "198.18.%d.%d" % (i >> 8, i & 255), 20000 + i
        ci, si = 1000 + i * 7919, 90000
        if handshake:
            frames = [
                _pack(c, s, dpkt.tcp.TCP(sport=cp, dport=80, seq=ci, flags=S, win=65535,
                                         opts=WSCALE14)),
                _pack(s, c, dpkt.tcp.TCP(sport=80, dport=cp, seq=si, ack=ci + 1, flags=S | A,
                                         win=65535, opts=WSCALE14)),
                _frame(c, s, cp, 80, ci + 1, si + 1, A),
                _frame(s, c, 80, cp, si + 1, ci + 1, A),  # 65535 << 14: a 1 GiB window
                _frame(c, s, cp, 80, ci + 1, si + 1, A | P, _hello(i)),
            ]
            first = len(_hello(i))
        else:
            frames = [_frame(c, s, cp, 80, ci, 0, S)]
            first = 0
        frames += [_frame(c, s, cp, 80, ci + 1 + first + off, si + 1 if handshake else 0,
                          A | P, b"x") for off in OFFSETS]
        for fr in frames:
            out.append((t, fr))
            t += 1e-4
    return out


def write_pcap(path, frames):
    with open(path, "wb") as fh:
        w = dpkt.pcap.Writer(fh)
        for ts, fr in frames:
            w.writepkt(fr, ts)


# A child process: VmHWM after a warm-up run (the baseline: the interpreter,
# mos and a first capture), then after `mos streams ARGS`.
_RSS_CHILD = r"""
import contextlib, io, json, sys
import mos, mos.cli
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) * 1024
with contextlib.redirect_stdout(io.StringIO()):
    mos.cli.main(["streams", mos.sample_capture()])
base = hwm()
out = io.StringIO()
with contextlib.redirect_stdout(out):
    rc = mos.cli.main(["streams"] + sys.argv[1:])
sys.stderr.write("\nRESULT " + json.dumps({"rc": rc, "delta": hwm() - base,
                                           "records": out.getvalue()}) + "\n")
"""


def _streams_rss(args):
    p = subprocess.run([sys.executable, "-c", _RSS_CHILD] + args, capture_output=True,
                       text=True, timeout=300)
    line = [ln for ln in p.stderr.splitlines() if ln.startswith("RESULT ")]
    assert p.returncode == 0 and line, p.stderr[-2000:]
    res = json.loads(line[-1][7:])
    records = [json.loads(ln) for ln in res["records"].splitlines()]
    return res, records, p.stderr


def _gap_total(rec):
    return sum(n for _, n in rec["gaps"])


@pytest.mark.parametrize("handshake", [False, True], ids=["syn-only", "handshake-1GiB-window"])
@pytest.mark.parametrize("buffer_size", [None, 16 << 20], ids=["default", "buffer-16MiB"])
@pytest.mark.parametrize("nflows", [50, 200])
def test_scattered_one_byte_segments_stay_under_64mb_and_reassemble(tmp_path, nflows,
                                                                      buffer_size, handshake):
    """Finding 1: 50 flows took 231 MB and 200 flows 847 MB.  Now each byte
    costs one 4 KiB block; the records still carry every byte and gap."""
    cap = str(tmp_path / "scatter.pcap")
    write_pcap(cap, scatter_frames(nflows, handshake))
    args = [cap, "--stats"] + (["--buffer-size", str(buffer_size)] if buffer_size else [])
    res, records, err = _streams_rss(args)
    assert res["rc"] == 0
    assert res["delta"] < 64 << 20, f"peak RSS grew {res['delta']} bytes"
    c2s = [r for r in records if r["direction"] == "c2s"]
    assert len(c2s) == nflows
    stats = json.loads([ln for ln in err.splitlines() if ln.startswith("{")][-1])
    assert stats["counters"]["reassembly"]["refused_segments"] == 0
    for r in c2s:
        i = int(r["client"].split(":")[1]) - 20000
        first = _hello(i) if handshake else b""
        assert r["bytes"] == len(first) + len(OFFSETS)
        assert r["sha256"] == hashlib.sha256(first + b"x" * len(OFFSETS)).hexdigest()
        assert len(r["gaps"]) == len(OFFSETS)
        assert r["bytes"] + _gap_total(r) == len(first) + OFFSETS[-1] + 1
        assert r["gaps"][0][0] == len(first)


def test_memcap_refusals_counted_and_in_order_bytes_still_reassembled(tmp_path):
    """`--memcap 256k` on the 200-flow capture: segments past the cap are not
    stored, counted in --stats and in a note; every byte is in a record or a
    gap, and each in-order "hello N" (read as it comes, never held) is intact."""
    cap = str(tmp_path / "scatter.pcap")
    write_pcap(cap, scatter_frames(200, True))
    res, records, err = _streams_rss([cap, "--stats", "--memcap", "256k",
                                      "--buffer-size", str(16 << 20)])
    assert res["delta"] < 64 << 20
    stats = json.loads([ln for ln in err.splitlines() if ln.startswith("{")][-1])
    ra = stats["counters"]["reassembly"]
    assert ra["memcap"] == 256 << 10 and ra["peak"] <= 256 << 10
    stored = 0
    for r in (r for r in records if r["direction"] == "c2s"):
        i = int(r["client"].split(":")[1]) - 20000
        h = _hello(i)
        xs = r["bytes"] - len(h)
        assert 0 <= xs <= len(OFFSETS)
        assert r["sha256"] == hashlib.sha256(h + b"x" * xs).hexdigest()
        assert r["bytes"] + _gap_total(r) <= len(h) + OFFSETS[-1] + 1
        stored += xs
    assert ra["refused_segments"] == 200 * len(OFFSETS) - stored > 0
    assert ra["refused_bytes"] == ra["refused_segments"]
    assert (f"reassembly memcap reached: {ra['refused_segments']} segments, "
            f"{ra['refused_bytes']} bytes not stored (memcap 262144)") in err


def test_memcap_raises_error_event_per_refused_segment_and_frees_on_flow_end():
    """The engine API: an ERROR MEMCAP event (a = stream offset, b = bytes)
    per refused segment; a reader gets the in-order bytes of each flow that
    found room, whole; the blocks go back when the flows end."""
    cap = 64 << 10
    eng = mos.Engine(mos.Config(checksum="verify", buffer_size=16 << 20,
                                reassembly_memcap=cap))
    errors, data = [], {}
    mon = mos.Monitor(name="reader", reads=Side.SERVER)
    mon.on(Event.ERROR, lambda f, s, e: errors.append(
        (f.client_port, f.event_info.reason.name, f.event_info.a, f.event_info.b)))
    mon.on(Event.CONN_NEW_DATA, lambda f, s, e: data.__setitem__(
        f.client_port, data.get(f.client_port, b"") + f.peek(s)), side=Side.SERVER)
    eng.attach(mon)
    peak = 0
    for ts, fr in scatter_frames(40, True):
        eng.feed(fr, ts)
        peak = max(peak, eng.counters()["reassembly"]["in_use"])
    ra = eng.counters()["reassembly"]
    memcap = [e for e in errors if e[1] == "MEMCAP"]
    assert ra["refused_segments"] == len(memcap) > 0
    assert peak <= cap and ra["peak"] <= cap
    refused_hello = set()
    for port, _, off, n in memcap:
        h = len(_hello(port - 20000))
        if off == 0:  # the in-order bytes too wait in a block for the reader
            assert n == h
            refused_hello.add(port)
        else:
            assert n == 1 and off - h in OFFSETS
    assert 20000 not in refused_hello  # the first flows found room
    for i in range(40):
        # stored: read whole; refused: a gap from byte 0, never readable
        assert data.get(20000 + i) == (None if 20000 + i in refused_hello else _hello(i))
    eng.close()
    assert eng.counters()["reassembly"]["in_use"] == 0


def test_idle_read_flow_holds_no_blocks():
    """Bytes read and acknowledged are released: a flow with no hole holds no
    storage between packets."""
    eng = mos.Engine(mos.Config(checksum="verify"))
    mon = mos.Monitor(reads=Side.SERVER)
    got = []
    mon.on(Event.CONN_NEW_DATA, lambda f, s, e: got.append(f.peek(s)), side=Side.SERVER)
    eng.attach(mon)
    from test_bounded_memory import clean_flow
    frames, payload = clean_flow(200_000)
    for ts, fr in frames[:-3]:
        eng.feed(fr, ts)
    assert b"".join(got) == payload
    # no 4 KiB block is held, only each side's small block table (4 pointers)
    assert eng.counters()["reassembly"]["in_use"] < 4096


def test_offline_run_lends_frame_bytes_and_copies_them_before_the_capture_goes(tmp_path):
    """Offline the capture stays mapped for the whole run, so the in-order
    bytes a reader keeps are lent by the frames, not copied: the buffers hold
    no block.  A flow still live when the run ends gets its own copy, so
    reading it later works with the file gone."""
    from test_bounded_memory import clean_flow
    frames, payload = clean_flow(60_000)
    path = tmp_path / "lend.pcap"
    write_pcap(path, frames[:-3])  # no close: the flow outlives the run
    eng = mos.Engine(mos.Config(checksum="verify", keep_read=False))
    mon = mos.Monitor(reads=Side.SERVER)
    got, in_use = [], []

    def reader(f, s, e):
        got.append(f.peek(s))
        in_use.append(eng.counters()["reassembly"]["in_use"])
    mon.on(Event.CONN_NEW_DATA, reader, side=Side.SERVER)
    eng.attach(mon)
    eng.run(str(path), close=False)
    assert b"".join(got) == payload
    assert max(in_use) < 4096  # block tables at most: every kept byte was lent
    # the same capture fed frame by frame (no stable frames) copies its bytes
    fed = mos.Engine(mos.Config(checksum="verify", keep_read=False))
    fmon = mos.Monitor(reads=Side.SERVER)
    fed_use = []
    fmon.on(Event.CONN_NEW_DATA, lambda f, s, e: (f.peek(s), fed_use.append(
        fed.counters()["reassembly"]["in_use"])), side=Side.SERVER)
    fed.attach(fmon)
    for ts, fr in frames[:-3]:
        fed.feed(fr, ts)
    assert max(fed_use) >= 4096

    # a reader keeping what it reads: two segments, both lent during the
    # run, copied when it ends, then read with the file gone
    frames, payload = clean_flow(2000)
    small = tmp_path / "keep.pcap"
    write_pcap(small, frames[:-3])
    keep = mos.Engine(mos.Config(checksum="verify"))
    kmon = mos.Monitor(reads=Side.SERVER)
    during = []
    kmon.on(Event.CONN_NEW_DATA, lambda f, s, e: during.append(
        keep.counters()["reassembly"]["in_use"]), side=Side.SERVER)
    keep.attach(kmon)
    keep.run(str(small), close=False)
    small.unlink()
    assert len(during) == 2 and max(during) < 4096
    assert keep.counters()["reassembly"]["in_use"] >= 4096  # copied when the run ended
    (flow,) = keep.live_flows()
    assert flow.ppeek(Side.SERVER, 0, 4000) == payload
    keep.close()


def test_buffer_size_bounds_are_validated_with_clear_errors(tmp_path):
    with pytest.raises(mos.ConfigError, match=r"buffer_size.*2147483647.*1073741824"):
        mos.Config(buffer_size=0x7FFFFFFF)
    with pytest.raises(mos.ConfigError, match=r"reassembly_memcap"):
        mos.Config(reassembly_memcap=-1)
    with pytest.raises(mos.ConfigError, match=r"reassembly_memcap"):
        mos.Config(reassembly_memcap="lots")
    c = _one_flow_engine()
    (f,) = c.live_flows()
    with pytest.raises(ValueError, match=r"2147483647 out of range 0\.\.1073741824"):
        f.set_buffer_size(Side.BOTH, 0x7FFFFFFF)
    f.set_buffer_size(Side.BOTH, 1 << 30)  # the bound itself is fine and allocates nothing yet
    assert c.counters()["reassembly"]["in_use"] == 0


def _one_flow_engine():
    from tcpconv import Conv
    conv = Conv()
    conv.handshake()
    eng = mos.Engine(mos.Config(checksum="verify"))
    eng.attach(mos.Monitor(reads=Side.BOTH))
    for ts, fr in conv.frames:
        eng.feed(fr, ts)
    return eng


def test_yaml_memcap_bad_value_names_file_line_and_key():
    for bad in ("-5", "lots", "1.5"):
        with pytest.raises(mos.ConfigError) as exc:
            parse_settings("mode: passive\nports: [{name: a, driver: pcap, path: /x.pcap}]\n"
                           f"monitor:\n  reassembly_memcap: {bad}\n",
                           name="mos.yaml")
        assert str(exc.value).startswith("mos.yaml:4: monitor.reassembly_memcap: "), exc.value


READER_APP = """\
import mos

def attach(engine):
    mon = mos.Monitor(name="reader")
    mon.on(mos.Event.CONN_NEW_DATA, lambda f, s, e: f.peek(s), side=mos.Side.BOTH)
    engine.attach(mon)
"""


def test_yaml_memcap_is_the_monitor_config():
    s = parse_settings("mode: passive\nports: [{name: a, driver: pcap, path: /x.pcap}]\n"
                       "monitor:\n  reassembly_memcap: 65536\n", name="mos.yaml")
    assert s.monitor.reassembly_memcap == 65536
    assert mos.Config().reassembly_memcap == 256 << 20


def test_run_with_a_reader_app_notes_the_memcap_and_the_flag_lifts_it(tmp_path):
    cap = tmp_path / "scatter.pcap"
    write_pcap(str(cap), scatter_frames(50, True))
    app = tmp_path / "reader_app.py"
    app.write_text(READER_APP)

    def run(*extra):
        p = subprocess.run([sys.executable, "-m", "mos", "run", str(cap), "--no-progress",
                            "--app", str(app), "--buffer-size", str(16 << 20), *extra],
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr[-2000:]
        return p.stderr
    err = run("--memcap", "64k")
    assert "reassembly memcap reached" in err and "(memcap 65536)" in err
    assert "memcap reached" not in run()  # the default 256 MiB holds them all


def test_cli_memcap_argument_errors_are_clear():
    p = subprocess.run([sys.executable, "-m", "mos", "streams", mos.sample_capture(),
                        "--memcap", "12x"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    assert "--memcap: '12x' is not a byte count" in p.stderr and "Traceback" not in p.stderr
    p = subprocess.run([sys.executable, "-m", "mos", "streams", mos.sample_capture(),
                        "--buffer-size", "3000000000"], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 2
    assert "buffer_size: 3000000000 is out of range 0..1073741824" in p.stderr
