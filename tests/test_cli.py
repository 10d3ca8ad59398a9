"""The `mos` command line: output format, errors on bad input, apps."""

import hashlib
import json
import os
import subprocess
import sys

import pytest

import mos

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = mos.sample_capture()


def run(*args, timeout=120):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "mos", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)


def test_streams_prints_two_json_lines_per_flow():
    r = run("streams", SAMPLE)
    assert r.returncode == 0, r.stderr
    recs = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(recs) == 14
    assert [r["direction"] for r in recs] == ["c2s", "s2c"] * 7
    keys = {"client", "server", "direction", "bytes", "sha256", "gaps", "client_state", "server_state"}
    assert all(set(r) == keys for r in recs)
    big = [r for r in recs if r["bytes"] == 200204]
    assert big and big[0]["direction"] == "s2c" and big[0]["gaps"] == []
    v6 = [r for r in recs if r["client"].startswith("[2001:db8::1]:")]
    assert v6 and v6[0]["server"] == "[2001:db8::2]:80"
    refused = [r for r in recs if r["server"].endswith(":81")]
    assert refused[0]["client_state"] == "CLOSED" and refused[0]["bytes"] == 0


def test_streams_write_dir_files_match_digests(tmp_path):
    r = run("streams", SAMPLE, "--write-dir", str(tmp_path))
    assert r.returncode == 0, r.stderr
    recs = [json.loads(line) for line in r.stdout.splitlines()]
    digests = {hashlib.sha256(p.read_bytes()).hexdigest() for p in tmp_path.iterdir()}
    assert {x["sha256"] for x in recs if x["bytes"]} <= digests
    assert len(list(tmp_path.iterdir())) == sum(1 for x in recs if x["bytes"])


def test_streams_cut_short_capture_names_file_and_offset(tmp_path):
    data = open(SAMPLE, "rb").read()
    bad = tmp_path / "cut.pcap"
    bad.write_bytes(data[: len(data) // 2])
    r = run("streams", str(bad))
    assert r.returncode == 2
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0] and "offset" in err[0]
    assert r.stdout.strip(), "flows read before the fault are still printed"


def test_streams_empty_file_is_zero_frames_with_a_note(tmp_path):
    empty = tmp_path / "empty.pcap"
    empty.write_bytes(b"")
    r = run("streams", str(empty))
    assert r.returncode == 0 and r.stdout == "" and "no frames" in r.stderr


@pytest.mark.parametrize("content", [b"not a capture at all, just text\n", b"\xd4\xc3\xb2"])
def test_streams_unreadable_capture_one_line_error(tmp_path, content):
    bad = tmp_path / "junk.pcap"
    bad.write_bytes(content)
    r = run("streams", str(bad))
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "junk.pcap" in r.stderr


def test_streams_missing_file():
    r = run("streams", "/nonexistent/x.pcap")
    assert r.returncode == 2 and "x.pcap" in r.stderr and "Traceback" not in r.stderr


def test_streams_snapped_frames_are_counted_and_skipped(tmp_path):
    """Frames whose headers the capture cut are counted, never a crash."""
    import dpkt
    out = tmp_path / "snap.pcap"
    with open(SAMPLE, "rb") as fh, open(out, "wb") as wh:
        w = dpkt.pcap.Writer(wh, snaplen=65535)
        for i, (ts, buf) in enumerate(dpkt.pcap.Reader(fh)):
            w.writepkt(buf[:30] if i % 10 == 5 else buf, ts)
    r = run("streams", str(out))
    assert r.returncode == 0
    assert "truncated" in r.stderr


def test_run_app_prints_summary():
    r = run("run", SAMPLE, "--app", "middleboxes.midstat", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "packets" in r.stderr and "packets/s" in r.stderr
    assert "198.18.0.1" in r.stdout


def test_run_app_from_file(tmp_path):
    app = tmp_path / "counter.py"
    app.write_text(
        "import mos\n"
        "seen = []\n"
        "def attach(engine):\n"
        "    mon = engine.attach(mos.Monitor())\n"
        "    mon.on(mos.Event.CONN_START, lambda f, s, e: seen.append(f.server_port))\n"
        "def finish(engine, stats):\n"
        "    print('starts', len(seen))\n")
    r = run("run", SAMPLE, "--app", str(app), "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "starts 7" in r.stdout


def test_run_app_not_importable():
    r = run("run", SAMPLE, "--app", "no_such_module_xyz")
    assert r.returncode == 2 and "no_such_module_xyz" in r.stderr and "Traceback" not in r.stderr


def test_bad_option_value_is_refused():
    r = run("streams", SAMPLE, "--overlap", "newest")
    assert r.returncode == 2 and "newest" in r.stderr


def test_demo_runs_on_the_shipped_capture():
    r = run("demo")
    assert r.returncode == 0, r.stderr
    assert '"direction": "c2s"' in r.stdout


def test_streams_into_a_closed_pipe_stops_writing_quietly(tmp_path):
    """`mos streams CAPTURE | head -1`: the reader goes away; no traceback, no
    handler error, exit status 0 (as tcpdump, tshark)."""
    import dpkt
    from tcpconv import Conv
    out = tmp_path / "many.pcap"
    with open(out, "wb") as wh:
        w = dpkt.pcap.Writer(wh)
        for i in range(600):  # about 250 KB of records: more than a pipe holds
            c = Conv(client=("198.18.%d.%d" % (1 + i // 250, 1 + i % 250), 1024 + i))
            c.ts = 1.0 + i * 1e-3
            c.handshake()
            c.send("c", b"hi")
            for ts, fr in c.frames:
                w.writepkt(fr, ts)
    p = subprocess.Popen([sys.executable, "-m", "mos", "streams", str(out)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = p.stdout.readline()
    p.stdout.close()
    err = p.communicate(timeout=120)[1].decode()
    assert json.loads(first)["direction"] == "c2s"
    assert p.returncode == 0, err
    assert "Traceback" not in err and "BrokenPipe" not in err and "raised" not in err


@pytest.mark.parametrize("v6", [False, True])
def test_streams_record_is_the_json_of_the_flow_accessors(v6):
    # Flow.streams_record formats `mos streams`'s lines by hand (no
    # json.dumps per flow); it must say exactly what the accessors say,
    # for a direction with a gap (a segment the receiver acknowledged past
    # never came) and for IPv6's bracketed addresses
    import hashlib

    from tcpconv import CLIENT6, SERVER6, Conv
    c = Conv(client=(CLIENT6, 40001), server=(SERVER6, 80)) if v6 else Conv()
    c.handshake()
    c.send("c", b"GET / HTTP/1.0\r\n\r\n")
    c.ack("s")
    c.send("s", b"A" * 100)
    c.send("s", b"B" * 100, advance=False)          # lost on the way to the tap
    c.s.nxt += 100
    c.send("s", b"C" * 100)
    c.ack("c")                                      # the client acknowledges past the hole
    c.fin("c")
    c.ack("s")
    c.fin("s")
    c.ack("c")
    frames = [f for i, f in enumerate(c.frames) if i != 6]   # B
    got = []

    def on_end(flow, side, event):
        want = []
        for direction, s in (("c2s", mos.Side.SERVER), ("s2c", mos.Side.CLIENT)):
            hashed, lost = flow.digest_info(s)
            rec = {"client": flow.client_addr, "server": flow.server_addr,
                   "direction": direction, "bytes": hashed, "sha256": flow.sha256(s),
                   "gaps": [[o, n] for o, n in flow.gaps(s)],
                   "client_state": flow.client.state.name,
                   "server_state": flow.server.state.name}
            if lost:
                rec["lost"] = lost
            want.append(rec)
        got.append((flow.streams_record(), want))
    mon = mos.Monitor(name="end", reads=True)
    mon.on(mos.Event.CONN_END, on_end)
    eng = mos.Engine(mos.Config(digest=True))
    eng.attach(mon)
    for ts, frame in frames:
        eng.feed(frame, ts)
    eng.close()
    assert got                                      # CONN_END, once per side
    for lines, want in got:
        assert [json.loads(x) for x in lines] == want
    s2c = want[1]
    assert s2c["gaps"] == [[100, 100]] and s2c["bytes"] == 200, s2c
    assert s2c["sha256"] == hashlib.sha256(b"A" * 100 + b"C" * 100).hexdigest()
    assert want[0]["client"].startswith("[2001:db8::1]:" if v6 else "198.18.0.1:")


def test_builtin_commands_skip_the_plugins_imports_and_help_lists_them():
    # importing the plugins (mos ids loads its rule parser) and the test
    # bed cost a tenth of a second: `mos streams` on a small capture does
    # without them; --help still lists every command
    code = ("import io, sys, contextlib\n"
            "from mos import cli\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    rc = cli.main(['streams', {SAMPLE!r}])\n"
            "print(rc, 'middleboxes.ids.rules' in sys.modules, 'mos.testing.testbed' in sys.modules)")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       cwd=ROOT, timeout=120)
    assert r.stdout.split() == ["0", "False", "False"], r.stdout + r.stderr
    h = run("--help")
    assert h.returncode == 0 and "ids" in h.stdout and "testbed" in h.stdout, h.stdout
