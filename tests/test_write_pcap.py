"""`mos run CAPTURE --app M --write OUT.pcap`: the capture runs through an
in-line box whose output port is a pcap writer (mos.runtime), so OUT.pcap
holds what the box forwarded: drops, overwrites and insertions applied, the
numbers of later packets translated both ways, every checksum valid (checked
by tshark, a reader nobody here wrote)."""

import os
import shutil
import subprocess
import sys
import textwrap

import dpkt
import pytest

import mos
from tcpconv import Conv

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REQ = b"GET /index.html HTTP/1.1\r\nHost: example\r\n\r\n"
HDR = b"X-Mos: inserted\r\n"
BODY = b"hello, secret=12345 bye\n"
RESP = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"

APP = textwrap.dedent('''
    """Drops the retransmitted body, overwrites its secret, inserts a header."""
    import mos
    from mos import Event, Side

    def attach(eng):
        mon = eng.attach(mos.Monitor(name="editor"))

        @mon.on(Event.PKT_IN, side=Side.SERVER)
        def edit(flow, side, event):
            pkt = flow.packet
            p = pkt.payload
            if p.startswith(b"GET "):
                pkt.insert(p.index(b"\\r\\n") + 2, b"X-Mos: inserted\\r\\n")
            elif b"secret=" in p:
                pkt.overwrite(p.index(b"secret=") + 7, b"XXXXX")

        @mon.on(Event.REXMIT)
        def drop(flow, side, event):
            flow.drop()
''')

needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")


def run(*args, timeout=120):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "mos", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)


def write_pcap(path, frames):
    with open(path, "wb") as fh:
        w = dpkt.pcap.Writer(fh, linktype=dpkt.pcap.DLT_EN10MB)
        for ts, fr in frames:
            w.writepkt(fr, ts)


def conversation():
    """An HTTP exchange whose client retransmits its body once."""
    c = Conv()
    c.handshake()
    c.send("c", REQ)
    c.ack("s")
    body_seq = c.c.nxt
    c.send("c", BODY)
    c.ack("s")
    c.send("c", BODY, seq=body_seq)          # the retransmission the app drops
    c.send("s", RESP)
    c.ack("c")
    c.fin("c")
    c.fin("s")
    c.ack("c")
    return c


def tcp_segments(path):
    """[(from_client, seq, ack, payload)] of every frame in a pcap."""
    out = []
    with open(path, "rb") as fh:
        for _, buf in dpkt.pcap.UniversalReader(fh):
            t = dpkt.ethernet.Ethernet(buf).data.data
            out.append((t.sport == 40000, t.seq, t.ack, bytes(t.data)))
    return out


def tshark(*args):
    r = subprocess.run(["tshark", *args], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.fixture
def edited(tmp_path):
    """(input segments, output segments, output path) of one edited run."""
    cap, out, app = tmp_path / "in.pcap", tmp_path / "out.pcap", tmp_path / "editor.py"
    write_pcap(cap, conversation().frames)
    app.write_text(APP)
    r = run("run", str(cap), "--app", str(app), "--write", str(out), "--checksum", "verify",
            "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    return tcp_segments(cap), tcp_segments(out), out


def test_capture_write_drops_the_retransmission(edited):
    src, out, _ = edited
    assert len(out) == len(src) - 1
    bodies = [s for s in out if s[0] and s[3].startswith(b"hello")]
    assert len(bodies) == 1


def test_capture_write_overwrites_and_inserts_bytes(edited):
    _, out, _ = edited
    payload = b"".join(s[3] for s in out if s[0])
    assert payload == REQ.replace(b"\r\n", b"\r\n" + HDR, 1) + BODY.replace(b"12345", b"XXXXX")


def test_capture_write_translates_numbers_after_the_insertion_both_ways(edited):
    """Later client segments start len(HDR) further on; the server's
    acknowledgements of them come back len(HDR) lower (wire -> raw)."""
    src, out, _ = edited
    d = len(HDR)
    kept, seen_body = [], False   # the input without the retransmission the app dropped
    for seg in src:
        if seg[0] and seg[3] == BODY:
            if seen_body:
                continue
            seen_body = True
        kept.append(seg)
    assert len(kept) == len(out)
    req_end = None
    shifted = {"client": 0, "server": 0}
    for (cs, seq, ack, pay), (ocs, oseq, oack, opay) in zip(kept, out):
        assert cs == ocs
        if cs and pay.startswith(b"GET "):
            req_end = seq + len(pay)
            assert oseq == seq and len(opay) == len(pay) + d
        elif cs and req_end is not None:
            assert oseq == (seq + d) & 0xFFFFFFFF, "client numbers shift by the insertion"
            shifted["client"] += 1
        elif not cs and req_end is not None and ack > req_end:
            assert oack == (ack - d) & 0xFFFFFFFF, "server acks shift back by it"
            shifted["server"] += 1
    assert shifted["client"] >= 3 and shifted["server"] >= 3


@needs_tshark
def test_capture_write_checksums_are_valid_for_tshark(edited):
    _, _, out = edited
    text = tshark("-r", str(out), "-o", "tcp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE",
                  "-T", "fields", "-e", "ip.checksum.status", "-e", "tcp.checksum.status")
    rows = [line.split("\t") for line in text.splitlines()]
    assert rows and all(r == ["1", "1"] for r in rows), rows  # 1: good


@needs_tshark
def test_capture_write_inserted_bytes_are_in_the_followed_stream(edited):
    _, _, out = edited
    text = tshark("-r", str(out), "-q", "-z", "follow,tcp,raw,0")
    client = b"".join(bytes.fromhex(line.strip()) for line in text.splitlines()
                      if line and not line.startswith(("\t", "=", "Follow", "Filter", "Node"))
                      and all(ch in "0123456789abcdef" for ch in line.strip()))
    assert HDR in client and b"secret=XXXXX" in client and b"12345" not in client


def test_capture_without_write_edits_nothing(tmp_path):
    """Without --write nothing is forwarded, so no payload edit applies (the
    model keeps the wire's numbers) and the run ends as before."""
    cap = tmp_path / "in.pcap"
    write_pcap(cap, conversation().frames)
    eng = mos.Engine(mos.Config(checksum="verify"))
    mon = eng.attach(mos.Monitor())
    mon.on(mos.Event.PKT_IN, lambda f, s, e: f.packet.payload.startswith(b"GET ")
           and f.packet.insert(0, HDR), side=mos.Side.SERVER)
    eng.run(cap)
    c = eng.counters()
    assert c["rewritten"] == 0 and c["ended"]["close"] == 1 and eng.port_counters() == []


def test_capture_write_to_unwritable_path_is_a_clear_error(tmp_path):
    cap = tmp_path / "in.pcap"
    write_pcap(cap, conversation().frames)
    bad = tmp_path / "no" / "such" / "dir" / "out.pcap"
    r = run("run", str(cap), "--write", str(bad), "--no-progress")
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert f"mos: error: {bad}: cannot open for writing: No such file or directory" in r.stderr


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
def test_capture_write_to_a_full_disk_is_a_clear_error(tmp_path):
    cap = tmp_path / "in.pcap"
    write_pcap(cap, conversation().frames)
    r = run("run", str(cap), "--write", "/dev/full", "--no-progress")
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert "mos: error: /dev/full: write failed: No space left on device" in r.stderr


def test_engine_run_write_counts_the_writer_port(tmp_path):
    cap, out = tmp_path / "in.pcap", tmp_path / "out.pcap"
    frames = conversation().frames
    write_pcap(cap, frames)
    eng = mos.Engine(mos.Config(checksum="verify"))
    stats = eng.run(cap, write=out)
    assert stats.packets == len(frames)
    pc = eng.port_counters()
    assert pc == [{"rx": len(frames), "tx": len(frames), "tx_dropped": 0, "dropped": 0,
                   "injected": 0, "split": 0}]
    assert tcp_segments(out) == tcp_segments(cap)


def test_settings_pcap_ports_forward_between_capture_files(tmp_path):
    """`driver: pcap` is a port of the runtime: in-line pairs of captures run
    at the captures' time, each port writing what leaves by it."""
    cap, empty = tmp_path / "in.pcap", tmp_path / "empty.pcap"
    frames = conversation().frames
    write_pcap(cap, frames)
    write_pcap(empty, [])
    conf = tmp_path / "mos.yaml"
    conf.write_text(textwrap.dedent(f"""\
        mode: inline
        ports:
          - {{name: west, driver: pcap, path: {cap}, options: {{write: {tmp_path}/west.pcap}}}}
          - {{name: east, driver: pcap, path: {empty}, burst: 4,
              options: {{write: {tmp_path}/east.pcap}}}}
        forward: [[west, east]]
        """))
    r = run("run", "-c", str(conf), "--no-progress")
    assert r.returncode == 0, r.stderr
    import json
    out = json.loads(r.stdout.splitlines()[-1])
    assert out["packets"] == len(frames) and out["flows"] == 1
    assert out["ports"]["west"]["rx"] == len(frames) and out["ports"]["east"]["tx"] == len(frames)
    assert tcp_segments(tmp_path / "east.pcap") == tcp_segments(cap)
    assert tcp_segments(tmp_path / "west.pcap") == []


def test_settings_pcap_ports_cannot_mix_with_live_ports(tmp_path):
    cap = tmp_path / "in.pcap"
    write_pcap(cap, [])
    conf = tmp_path / "mos.yaml"
    conf.write_text(f"ports:\n  - {{name: a, driver: pcap, path: {cap}}}\n"
                    "  - {name: b, driver: afpacket, iface: lo}\nforward: [[a, b]]\n")
    r = run("run", "-c", str(conf), "--no-progress")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "cannot be mixed with live ports" in r.stderr


RESET_APP = textwrap.dedent('''
    import mos
    from mos import Event, Side

    def attach(eng):
        mon = eng.attach(mos.Monitor(name="resetter"))

        @mon.on(Event.PKT_IN, side=Side.CLIENT)
        def reset(flow, side, event):
            if flow.packet.payload.startswith(b"HTTP/1.1 200"):
                flow.reset()
''')


@needs_tshark
def test_capture_write_holds_injected_resets(tmp_path):
    """Injected frames (flow.reset(): a RST to each end, RFC 9293 3.10.7.4)
    go to the writer with the box's time; the packet that triggered them is
    dropped."""
    cap, out, app = tmp_path / "in.pcap", tmp_path / "out.pcap", tmp_path / "resetter.py"
    write_pcap(cap, conversation().frames)
    app.write_text(RESET_APP)
    r = run("run", str(cap), "--app", str(app), "--write", str(out), "--no-progress")
    assert r.returncode == 0, r.stderr
    segs = tcp_segments(out)
    assert not any(s[3].startswith(b"HTTP/1.1 200") for s in segs)
    text = tshark("-r", str(out), "-o", "tcp.check_checksum:TRUE", "-Y", "tcp.flags.reset==1",
                  "-T", "fields", "-e", "tcp.checksum.status", "-e", "frame.time_epoch",
                  "-e", "tcp.srcport")
    rows = [line.split("\t") for line in text.splitlines()]
    # one towards each end (craft.reset_frames may add a second guess per end)
    assert {r[2] for r in rows} == {"40000", "80"}
    assert all(r[0] == "1" and abs(float(r[1]) - 1.008) < 1e-6 for r in rows), rows


def test_settings_pcap_port_unknown_option_is_a_clear_error(tmp_path):
    cap = tmp_path / "in.pcap"
    write_pcap(cap, [])
    conf = tmp_path / "mos.yaml"
    conf.write_text(f"ports:\n  - {{name: a, driver: pcap, path: {cap}, options: {{loop: true}}}}\n"
                    f"  - {{name: b, driver: pcap, path: {cap}}}\nforward: [[a, b]]\n")
    r = run("run", "-c", str(conf), "--no-progress")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "ports[a].options: unknown pcap option 'loop' (known: write)" in r.stderr


def test_readme_inline_example_strips_the_header(tmp_path):
    """The README's "testing an in-line app on a capture" example, as written."""
    import re
    readme = open(os.path.join(ROOT, "README.md")).read()
    code = re.search(r"\(`strip.py`\):\n\n```python\n(.*?)```", readme, re.S).group(1)
    (tmp_path / "strip.py").write_text(code)
    c = Conv()
    c.handshake()
    c.send("c", b"GET / HTTP/1.1\r\nHost: a\r\nX-Debug: 1\r\n\r\n")
    c.ack("s")
    c.send("s", RESP)
    c.ack("c")
    c.fin("c")
    c.fin("s")
    c.ack("c")
    write_pcap(tmp_path / "in.pcap", c.frames)
    r = run("run", str(tmp_path / "in.pcap"), "--app", str(tmp_path / "strip.py"),
            "--write", str(tmp_path / "out.pcap"), "--checksum", "verify", "--no-progress")
    assert r.returncode == 0, r.stderr
    sent = b"".join(p for client, _, _, p in tcp_segments(tmp_path / "out.pcap") if client)
    assert sent == b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
