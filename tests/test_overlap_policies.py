"""Target-based overlap policies (rbuf.h): which bytes a receiver keeps
when a segment covers bytes it holds out of order.

The expected winners below are written out by hand from the behaviour of
each operating system family as Novak and Sturges measured it (and as
Suricata's stream-tcp-list.c encodes it), not computed by the code under
test: an original segment O = [10, 20) waits above a hole, then a new
segment N starts before, with, or after O and ends before, with, or after
it."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

import mos
from mos.tcp import overlap
from mos.tcp._stream import C_POLICIES, StreamBuffer

O_START, O_END = 10, 20
STARTS = {"before": 5, "same": 10, "after": 12}
ENDS = {"before": 15, "same": 20, "after": 25}

#: (N starts, N ends) relative to O -> the behaviours in which N's bytes win
NEW_WINS = {
    ("before", "before"): {"last", "bsd", "linux", "old-linux"},
    ("before", "same"): {"last", "bsd", "linux", "old-linux", "solaris"},
    ("before", "after"): {"last", "bsd", "linux", "old-linux", "solaris"},
    ("same", "before"): {"last"},
    ("same", "same"): {"last", "old-linux", "solaris"},
    ("same", "after"): {"last", "linux", "old-linux", "solaris"},
    ("after", "before"): {"last"},
    ("after", "same"): {"last"},
    ("after", "after"): {"last", "solaris"},
}


def test_names_agree_with_the_c_enum():
    assert C_POLICIES == overlap.CODES
    for name in overlap.NAMES:
        assert StreamBuffer(1 << 16, policy=name).policy == overlap.canonical(name)


def settle(policy, s, e):
    """The stream after O, then N, then the hole before them filled."""
    b = StreamBuffer(1 << 16, policy=policy)
    b.insert(O_START, b"O" * (O_END - O_START))
    r = b.insert(s, b"N" * (e - s))
    b.insert(0, b"-" * min(s, O_START))
    return b.read(0, 64), r


@pytest.mark.parametrize("policy", sorted(overlap.CODES))
@pytest.mark.parametrize("where", sorted(NEW_WINS))
def test_each_policy_settles_each_overlap_shape(policy, where):
    s, e = STARTS[where[0]], ENDS[where[1]]
    got, r = settle(policy, s, e)
    lo, hi = max(s, O_START), min(e, O_END)
    winner = b"N" if policy in NEW_WINS[where] else b"O"
    assert got[lo:hi] == winner * (hi - lo), (policy, where, got)
    # outside the overlap each byte is whoever sent it alone
    assert got[O_START:lo] == b"O" * (lo - O_START)
    assert got[hi:O_END] == b"O" * (O_END - hi)
    assert got[s:O_START] == b"N" * max(0, O_START - s)
    assert got[O_END:e] == b"N" * max(0, e - O_END)
    assert r["overlap"] == hi - lo and r["overlap_diff"] == hi - lo


@pytest.mark.parametrize("alias,behaves", [("windows", "bsd"), ("macos", "bsd"),
                                           ("vista", "first"), ("hpux11", "solaris")])
def test_os_names_behave_as_their_family(alias, behaves):
    for where in NEW_WINS:
        s, e = STARTS[where[0]], ENDS[where[1]]
        assert settle(alias, s, e)[0] == settle(behaves, s, e)[0]


def test_in_order_bytes_are_final_for_target_policies():
    """A receiver delivered them: no second copy is taken, whatever the OS."""
    for policy in ("bsd", "linux", "old-linux", "solaris"):
        b = StreamBuffer(1 << 16, policy=policy)
        b.insert(0, b"AAAAAAAAAA")
        r = b.insert(0, b"BBBBBBBBBBBB")
        assert b.read(0, 12) == b"AAAAAAAAAABB" and r["overlap_diff"] == 10


def test_the_winner_becomes_the_origin():
    """bsd: N1 starts before O and wins; N2 then starts with N1 and ends after
    it, which bsd settles for the stored bytes (N1 is their origin now)."""
    b = StreamBuffer(1 << 16, policy="bsd")
    b.insert(10, b"O" * 10)
    b.insert(5, b"1" * 15)        # starts before O: wins [10, 20)
    b.insert(5, b"2" * 20)        # starts with N1, ends after it: N1 stays
    b.insert(0, b"-" * 5)
    assert b.read(0, 30) == b"-" * 5 + b"1" * 15 + b"2" * 5


def test_switching_policy_forgets_origins():
    b = StreamBuffer(1 << 16, policy="bsd")
    b.insert(10, b"O" * 10)
    b.policy = "linux"
    b.insert(5, b"N" * 10)        # the bytes have no origin now: kept
    b.insert(0, b"-" * 5)
    assert b.read(0, 20) == b"-" * 5 + b"N" * 5 + b"O" * 10


def test_origin_list_is_bounded():
    """6000 one-byte segments in one run above a hole: the first 4096 get an
    origin, the rest none, so an overlap there keeps the stored bytes (as
    'first') while linux settles the early ones."""
    b = StreamBuffer(1 << 24, policy="linux")
    for i in range(6000):
        b.insert(10 + i, b"a")
    b.insert(110, b"NN")      # starts with byte 110's segment, ends after it: wins
    b.insert(5010, b"NN")     # no origin recorded there: kept
    b.insert(0, b"-" * 10)
    assert b.read(110, 2) == b"NN" and b.read(5010, 2) == b"aa"


def model(policy, segments, hole):
    """A slow reference: every stored out-of-order byte remembers the segment
    it came from; each new segment is settled byte by byte against it."""
    code = overlap.canonical(policy)
    stored = {}
    for s, data in segments:
        e = s + len(data)
        for i, ch in enumerate(data):
            o = s + i
            if o < hole:
                continue   # below head: the hole is at [0, hole) ... nothing below
            if o not in stored:
                stored[o] = (ch, s, e)
                continue
            _, os_, oe = stored[o]
            if code == "last":
                win = True
            elif code == "first":
                win = False
            else:
                win = NEW_WINS[(_rel(s, os_), _rel(e, oe))].__contains__(code)
            if win:
                stored[o] = (ch, s, e)
    return stored


def _rel(x, y):
    return "before" if x < y else ("same" if x == y else "after")


@settings(max_examples=300, deadline=None)
@given(policy=st.sampled_from(sorted(overlap.CODES)),
       segs=st.lists(st.tuples(st.integers(4, 60), st.integers(1, 20)), min_size=1, max_size=8))
def test_matches_a_byte_level_model(policy, segs):
    """Out of order (all above a 4-byte hole), any sequence of overlapping
    segments: the buffer keeps what the byte-level model keeps."""
    segments = [(s, bytes([65 + k]) * n) for k, (s, n) in enumerate(segs)]
    b = StreamBuffer(1 << 16, policy=policy)
    for s, data in segments:
        b.insert(s, data)
    want = model(policy, segments, 4)
    for o, (ch, _, _) in want.items():
        assert b.read(o, 1) == bytes([ch]), (o, want)


def test_engine_takes_a_target_policy_per_flow():
    eng = mos.Engine(mos.Config(overlap="windows"))
    seen = {}

    def start(flow, side, event):
        seen["before"] = flow.overlap(mos.Side.SERVER)
        flow.set_overlap(mos.Side.SERVER, "linux")
        seen["after"] = flow.overlap(mos.Side.SERVER)
        with pytest.raises(ValueError, match="not one of"):
            flow.set_overlap(mos.Side.SERVER, "beos")

    mon = eng.attach(mos.Monitor(name="t"))
    mon.on(mos.Event.CONN_START, start)
    from test_ids_evasion import Talk
    for ts, fr in Talk().frames:
        eng.feed(fr, ts)
    eng.close()
    assert seen == {"before": "bsd", "after": "linux"}
