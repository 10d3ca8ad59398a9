"""Properties of reassembly through the whole engine (real frames, both policies).

The buffer alone is checked against a reference model in test_rbuf.py; here
the same properties hold end to end: decode, flow lookup, sequence-to-offset
mapping (with wraparound) and the receive buffer together.
"""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mos
from mos import Side
from tcpconv import Conv, run_frames


@st.composite
def segmented(draw):
    data = draw(st.binary(min_size=1, max_size=3000))
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(data) - 1)), max_size=40)))
    bounds = [0] + [c for c in cuts if c < len(data)] + [len(data)]
    segs = [(a, data[a:b]) for a, b in zip(bounds, bounds[1:]) if b > a]
    dups = draw(st.lists(st.sampled_from(segs), max_size=10))
    order = draw(st.permutations(segs + dups))
    isn = draw(st.sampled_from([1000, 0xFFFFFF00, 0x7FFFFFF0, 0xFFFFFFFF]))
    return data, order, isn


def _stream_after(order, isn, policy, config=None):
    c = Conv(cisn=isn)
    c.handshake()
    base = c.c.nxt
    for off, seg in order:
        c.packet("c", 0x18, seg, seq=(base + off) & 0xFFFFFFFF, advance=False)
    eng = run_frames(c.frames, config=config or mos.Config(checksum="verify", overlap=policy),
                     close=False)
    return eng.live_flows()[0]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(segmented())
def test_any_segmentation_order_duplication_reassembles(case):
    data, order, isn = case
    flow = _stream_after(order, isn, "first")
    assert flow.peek(Side.SERVER) == data
    assert flow.gaps(Side.SERVER) == []
    assert flow.fragments(Side.SERVER) == []


@st.composite
def overlapping(draw):
    n = draw(st.integers(1, 200))
    segs = []
    for _ in range(draw(st.integers(1, 25))):
        off = draw(st.integers(0, n - 1))
        ln = draw(st.integers(1, n - off))
        segs.append((off, draw(st.binary(min_size=ln, max_size=ln))))
    return n, segs


def _reference(segs, policy):
    have = {}
    for off, seg in segs:
        for i, b in enumerate(seg):
            if policy == "last" or off + i not in have:
                have[off + i] = b
    return have


@settings(max_examples=150, deadline=None)
@given(overlapping(), st.sampled_from(["first", "last"]))
def test_overlap_policy_matches_reference_model(case, policy):
    n, segs = case
    flow = _stream_after(segs, 5000, policy)
    have = _reference(segs, policy)
    for off in range(n):
        got = flow.ppeek(Side.SERVER, off, 1)
        if off in have:
            assert got == bytes([have[off]]), (off, policy)
        else:
            assert got == b""
