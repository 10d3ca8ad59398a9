"""Stream digests hashed on a second core (mos/dualstack/digestq.c): a
capture run hands in-order bytes to a hashing thread; the digests must be
the ones the engine makes hashing them itself, frame by frame, and no
thread may outlive the run."""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess
import sys

import dpkt
import pytest

import mos
from mos.runtime.capture import run_capture

SHARED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared")


def _captures():
    found = [mos.sample_capture()]
    # public captures with loss, reordering and retransmissions (zeek's and
    # suricata-verify's), where the out-of-order path hashes from the buffer
    for pat in ("corpus/zeek/*/*.pcap", "corpus/suricata-verify/*/*.pcap"):
        found += sorted(glob.glob(os.path.join(SHARED, pat)))[:15]
    return found


def _collect(eng):
    out = []

    def on_end(flow, side, event):
        for s in (mos.Side.CLIENT, mos.Side.SERVER):
            out.append((flow.id, int(s), flow.sha256(s), flow.digest_info(s)))
    mon = mos.Monitor(name="digests", reads=True)
    mon.on(mos.Event.CONN_END, on_end)
    eng.attach(mon)
    return out


def _threads():
    return len(os.listdir("/proc/self/task"))


@pytest.mark.parametrize("path", _captures(), ids=os.path.basename)
def test_threaded_digests_equal_the_engines_own(path):
    threaded = mos.Engine(mos.Config(digest=True, checksum="ignore", midstream=True))
    got = _collect(threaded)
    before = _threads()
    try:
        run_capture(threaded, path)
    except mos.CaptureError:
        pytest.skip("a capture the reader refuses")
    assert _threads() == before, "the hashing thread outlived the run"
    inline = mos.Engine(mos.Config(digest=True, checksum="ignore", midstream=True))
    want = _collect(inline)
    with open(path, "rb") as fh:        # frame by frame, from bytes objects: hashed at once
        try:
            rd = dpkt.pcap.Reader(fh)
        except ValueError:
            fh.seek(0)
            rd = dpkt.pcapng.Reader(fh)
        linktype = rd.datalink()
        for ts, frame in rd:
            inline.feed(frame, ts, linktype)
    inline.close()
    assert sorted(got) == sorted(want)
    assert got, "no flow: the test would prove nothing"


def test_a_handler_reading_digests_mid_run_sees_every_byte_hashed():
    # sha256() waits for the flow's queued hashing jobs
    eng = mos.Engine(mos.Config(digest=True))
    seen = []

    def on_data(flow, side, event):
        seen.append((flow.sha256(side), hashlib.sha256(bytes(acc[(flow.id, int(side))])).hexdigest()))

    acc: dict = {}

    def keep(flow, side, event):
        acc.setdefault((flow.id, int(side)), bytearray()).extend(flow.peek(side))
        on_data(flow, side, event)
    mon = mos.Monitor(name="mid", reads=True)
    mon.on(mos.Event.CONN_NEW_DATA, keep)
    eng.attach(mon)
    run_capture(eng, mos.sample_capture())
    assert seen and all(a == b for a, b in seen)


@pytest.mark.skipif(shutil.which("taskset") is None or (os.cpu_count() or 1) < 2,
                    reason="needs taskset and two CPUs")
def test_on_one_cpu_the_engine_hashes_itself_with_the_same_result():
    # pinned to one CPU the two threads would only take turns: no thread,
    # same lines
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    argv = [sys.executable, "-m", "mos", "streams", mos.sample_capture()]
    both = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
    one = subprocess.run(["taskset", "-c", "0", *argv], capture_output=True, text=True,
                         env=env, timeout=120)
    assert both.returncode == 0 and one.returncode == 0, both.stderr + one.stderr
    assert one.stdout == both.stdout and one.stdout.count("\n") == 14
