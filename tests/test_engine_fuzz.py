"""Bad input through the whole engine: random and mutated frames, absurd
sequence numbers and floods never crash, hang or lose count."""

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mos
from tcpconv import ALL_EVENTS, Conv, Recorder


def _base_frames():
    c = Conv()
    c.handshake()
    c.send("c", b"GET / HTTP/1.0\r\n\r\n")
    c.send("s", b"HTTP/1.0 200 OK\r\n\r\n" + b"x" * 1000)
    c.fin("c")
    c.fin("s")
    c.ack("c")
    return [f for _, f in c.frames]


BASE = _base_frames()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(BASE) - 1), st.lists(
    st.tuples(st.integers(0, 2000), st.integers(0, 255)), max_size=6),
    st.integers(0, 2000)), min_size=1, max_size=30),
    st.sampled_from([1, 101, 0, 113]),
    st.booleans())
def test_mutated_frames_never_crash_and_counters_balance(plan, linktype, midstream):
    eng = mos.Engine(mos.Config(midstream=midstream, checksum="ignore", buffer_size=4096))
    rec = Recorder(events=ALL_EVENTS)
    eng.attach(rec.mon)
    for i, (idx, flips, cut) in enumerate(plan):
        fr = bytearray(BASE[idx])
        for pos, val in flips:
            if pos < len(fr):
                fr[pos] = val
        fr = bytes(fr[:cut]) if cut < len(fr) else bytes(fr)
        if linktype != 1:
            fr = fr[14:] if linktype == 101 else fr
        eng.feed(fr, 1.0 + i * 0.01, linktype=linktype)
    eng.close()
    c = eng.counters()
    assert c["frames"] == len(plan)
    assert c["tcp"] + c["non_tcp"] + c["truncated"] + c["malformed"] + c["unsupported"] \
        + c["fragments"] >= c["frames"]
    assert c["flows_live"] == 0 and c["flows_created"] == c["flows_ended"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(min_size=0, max_size=200), min_size=1, max_size=20),
       st.sampled_from([0, 1, 101, 108, 113, 228, 229, 276, 9999]))
def test_random_bytes_as_frames(frames, linktype):
    eng = mos.Engine(mos.Config(midstream=True, checksum="ignore"))
    eng.attach(Recorder().mon)
    for i, fr in enumerate(frames):
        eng.feed(fr, float(i), linktype=linktype)
    eng.close()
    assert eng.counters()["frames"] == len(frames)


def test_absurd_sequence_jumps_do_not_blow_up_memory():
    c = Conv()
    c.handshake()
    rnd = random.Random(3)
    for _ in range(300):
        c.packet("c", 0x18, b"z" * rnd.randint(1, 1400), seq=rnd.getrandbits(32), advance=False)
    eng = mos.Engine(mos.Config(checksum="ignore", buffer_size=1 << 20))
    rec = Recorder()
    eng.attach(rec.mon)
    for ts, fr in c.frames:
        eng.feed(fr, ts)
    f = eng.live_flows()[0]
    base, head = f.buffered(mos.Side.SERVER)
    assert head - base <= 1 << 20
    assert sum(n for _, n in f.fragments(mos.Side.SERVER)) <= 1 << 20
    eng.close()


def test_syn_flood_is_bounded_by_flow_cap():
    eng = mos.Engine(mos.Config(max_flows=1000, checksum="ignore"))
    rec = Recorder(events=[(mos.Event.CONN_END, (mos.Hook.NONE,))])
    eng.attach(rec.mon)
    for i in range(20000):
        c = Conv(client=("198.18.%d.%d" % (1 + i // 250 % 250, 1 + i % 250), 1024 + i % 60000))
        c.syn()
        eng.feed(c.frames[0][1], 1.0 + i * 1e-4)
    cnt = eng.counters()
    assert cnt["flows_live"] == 1000
    assert cnt["ended"]["evict"] == 19000
    assert len(rec.log) == 2 * 19000


def test_tiny_out_of_order_segment_flood_is_bounded():
    c = Conv()
    c.handshake()
    base = c.c.nxt
    for i in range(5000):
        c.packet("c", 0x18, b"q", seq=base + 2 + 2 * i, advance=False)  # every other byte
    eng = mos.Engine(mos.Config(checksum="ignore"))
    eng.attach(Recorder().mon)
    for ts, fr in c.frames:
        eng.feed(fr, ts)
    f = eng.live_flows()[0]
    assert len(f.fragments(mos.Side.SERVER)) <= 1024
    eng.close()


def test_counters_report_nomem():
    """Out of memory is counted and survived, never abort() (issue 7): the
    counter exists and stays 0 when memory suffices."""
    eng = mos.Engine(mos.Config(checksum="ignore"))
    eng.attach(Recorder().mon)
    for i, fr in enumerate(BASE):
        eng.feed(fr, 1.0 + i * 0.01)
    eng.close()
    assert eng.counters()["nomem"] == 0
