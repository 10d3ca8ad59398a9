"""The per-side reassembly buffer (mos/tcp/rbuf.c through _stream).

A slow pure-Python model (one dict entry per byte, one set entry per gap
byte) states the contract; hypothesis drives both with the same operations.
"""
import random
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mos.tcp._stream import MAX_GAPS, MAX_LIMIT, MAX_RUNS, StreamBuffer, bench

TOP = 2**64 - 1  # exclusive end of the offset space: byte TOP is never stored
RESULT_KEYS = ("new_inorder", "overlap", "overlap_diff", "dropped_old_from", "dropped_old_to",
               "dropped_new", "below_base", "gaps_added", "runs_dropped", "in_gap", "refused")


# ---------------------------------------------------------------- model

def intervals(offsets):
    """Sorted offsets -> maximal [(off, len)]."""
    out = []
    for o in sorted(offsets):
        if out and out[-1][0] + out[-1][1] == o:
            out[-1] = (out[-1][0], out[-1][1] + 1)
        else:
            out.append((o, 1))
    return out


class Model:
    """Obviously correct, slow.  present: offset -> byte for every byte held
    (or, with limit 0, recorded as if held); gap: every offset ever declared
    missing (the buffer may forget gaps below base)."""

    def __init__(self, limit, policy="first", start=0):
        self.limit = min(limit, MAX_LIMIT)
        self.policy = policy
        self.base = self.head = start
        self.present = {}
        self.gap = set()

    def _deliver_to(self, to):
        """Holes in [head, to) become gaps; head = to, then over present bytes."""
        holes = 0
        for o in range(self.head, to):
            if o not in self.present:
                if o == self.head or o - 1 in self.present:
                    holes += 1
                self.gap.add(o)
        self.head = max(self.head, to)
        while self.head in self.present:
            self.head += 1
        return holes

    def _forget_below(self, nb):
        for o in [o for o in self.present if o < nb]:
            del self.present[o]

    def release(self, off):
        """Forget the in-order bytes below off (at most head)."""
        off = min(off, self.head)
        if off > self.base:
            self._forget_below(off)
            self.base = off

    def insert(self, off, data, length=None):
        n = len(data) if length is None else length
        res = dict.fromkeys(RESULT_KEYS, 0)
        if n == 0:
            return res
        h0 = self.head
        end = off + n
        if end > TOP:
            res["dropped_new"] = end - TOP
            end = TOP
        old_base = self.base
        res["below_base"] = max(0, min(end, old_base) - off)
        if off >= end or end <= old_base:
            return res
        if self.limit and end - self.base > self.limit:
            nb = end - self.limit
            res["dropped_old_from"], res["dropped_old_to"] = self.base, nb
            if nb > self.head:
                res["gaps_added"] = self._deliver_to(nb)
            self.base = nb
            self._forget_below(nb)
        res["dropped_new"] += max(0, min(end, self.base) - max(off, old_base))
        if data is not None:
            for o in range(max(off, self.base), end):
                b = data[o - off]
                if o in self.gap:
                    res["in_gap"] += 1
                elif o in self.present:
                    res["overlap"] += 1
                    if self.limit and self.present[o] != b:
                        res["overlap_diff"] += 1
                        if self.policy == "last":
                            self.present[o] = b
                else:
                    assert o >= self.head, "a hole below head"
                    self.present[o] = b
            while self.head in self.present:
                self.head += 1
        res["new_inorder"] = self.head - h0
        return res

    def skip_to(self, off):
        h0 = self.head
        holes = self._deliver_to(off) if off > self.head else 0
        return holes, self.head - h0

    def flush(self):
        above = [o for o in self.present if o >= self.head]
        return self.skip_to(max(above) + 1) if above else (0, 0)

    def set_limit(self, n):
        n = min(n, MAX_LIMIT)
        if n == self.limit:
            return 0
        if self.limit == 0:  # nothing was held
            self.base = self.head
            self.present.clear()
            self.limit = n
            return 0
        if n == 0:
            self.limit = 0
            return len(self.present)
        dropped = 0
        if n < self.limit:
            hi = max(self.present) + 1 if self.present else self.base
            if hi - self.base > n:
                nb = min(hi - n, self.head)
                dropped = sum(1 for o in self.present if o < nb)
                self._forget_below(nb)
                self.base = nb
                beyond = [o for o in self.present if o >= nb + n]
                dropped += len(beyond)
                for o in beyond:
                    del self.present[o]
        self.limit = n
        return dropped

    def runs(self):
        return intervals(o for o in self.present if o >= self.head)

    def gaps(self):
        """Gaps from base on (older ones may or may not still be listed)."""
        return intervals(o for o in self.gap if o >= self.base)

    def inorder_spans(self):
        return intervals(o for o in self.present if o < self.head)

    def bytes_at(self, off, n):
        return bytes(self.present[o] for o in range(off, off + n))


def check_same(buf, m):
    assert buf.base == m.base
    assert buf.head == m.head
    assert buf.runs == m.runs()
    # listed gaps: exactly the model's from base on; below base, whatever is
    # still listed was declared
    listed = buf.gaps
    assert intervals(o for g, n in listed for o in range(max(g, m.base), g + n)) == m.gaps()
    assert all(o in m.gap for g, n in listed for o in range(g, g + n))
    assert all(a[0] + a[1] < b[0] for a, b in zip(listed, listed[1:]))  # sorted, maximal
    assert buf.ooo_bytes == sum(n for _, n in m.runs())
    # below head: every offset in [base, head) is present or a gap
    held = {o for o in m.present if o < m.head}
    window_gaps = {o for o in m.gap if o >= m.base}
    assert held | window_gaps == set(range(m.base, m.head))
    assert not held & window_gaps
    for off, n in m.inorder_spans() + m.runs():
        if m.limit:
            got = buf.read(off, n + 3)  # must stop at the first missing byte
            assert got == m.bytes_at(off, n)
            c = buf.contiguous(off)
            assert c and got.startswith(c)
        else:
            assert buf.read(off, n) == b"" and buf.contiguous(off) == b""
    for off, _ in m.gaps():
        assert buf.read(off, 4) == b""
    assert buf.read(m.head, 4) == b""
    if m.base:
        assert buf.read(m.base - 1, 4) == b""


# ---------------------------------------------------------------- properties

def split(data, cuts, extra):
    """Segments covering data at the cut points, plus duplicate sub-ranges."""
    pts = sorted({0, len(data), *cuts})
    segs = [(a, data[a:b]) for a, b in zip(pts, pts[1:])]
    segs += [(a, data[a:b]) for a, b in extra]
    return segs


@st.composite
def segmented(draw, max_seg=None):
    data = draw(st.binary(min_size=1, max_size=3000))
    n = len(data)
    step = max_seg or n
    cuts = draw(st.lists(st.integers(1, max(1, n - 1)), max_size=60))
    extra = []
    for a in draw(st.lists(st.integers(0, n - 1), max_size=20)):
        extra.append((a, draw(st.integers(a + 1, min(n, a + step)))))
    # no piece longer than max_seg
    segs = [piece for off, d in split(data, cuts, extra) for piece in chop(off, d, step)]
    order = draw(st.permutations(range(len(segs))))
    return data, [segs[i] for i in order]


def chop(off, d, m):
    return [(off + i, d[i:i + m]) for i in range(0, len(d), m)]


@settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(segmented(), st.sampled_from(["first", "last"]), st.integers(1, 3))
def test_any_segmentation_order_and_duplication_reassembles_to_original(case, policy, factor):
    data, segs = case
    buf = StreamBuffer(len(data) * factor, policy)
    for off, d in segs:
        buf.insert(off, d)
    buf.flush()
    assert buf.head == len(data)
    assert buf.read(0, len(data)) == data
    assert buf.gaps == [] and buf.runs == [] and buf.base == 0


@settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, 400), st.data(), st.sampled_from(["first", "last"]))
def test_small_window_with_reader_reassembles_when_segments_stay_within_limit(limit, dd, policy):
    data, segs = dd.draw(segmented(max_seg=limit))
    buf = StreamBuffer(limit, policy)
    out = bytearray()
    pending = list(segs)
    while pending:
        # the first pending segment that is not more than limit ahead of head
        i = next(i for i, (o, d) in enumerate(pending) if o + len(d) <= buf.head + limit)
        off, d = pending.pop(i)
        r = buf.insert(off, d)
        assert r["gaps_added"] == 0 and r["dropped_new"] == 0
        assert buf.base <= len(out)  # nothing unread was dropped
        chunk = buf.read(len(out), buf.head - len(out))
        assert len(chunk) == buf.head - len(out)
        out += chunk
    assert buf.head == len(data) and bytes(out) == data


LIMITS = [0, 1, 5, 16, 40, 64, 1000]


@st.composite
def op_lists(draw):
    ops = []
    for _ in range(draw(st.integers(1, 40))):
        kind = draw(st.sampled_from(["insert"] * 7 + ["skip", "flush", "set_limit"]))
        if kind == "insert":
            off = draw(st.integers(0, 299))
            n = draw(st.integers(0, 48))
            if draw(st.integers(0, 9)) == 0:
                ops.append(("insert", off, None, n))
            else:
                ops.append(("insert", off, bytes(draw(st.lists(st.sampled_from(b"abc"),
                                                                min_size=n, max_size=n))), None))
        elif kind == "skip":
            ops.append(("skip", draw(st.integers(0, 299))))
        elif kind == "flush":
            ops.append(("flush",))
        else:
            ops.append(("set_limit", draw(st.sampled_from(LIMITS))))
    return ops


@settings(deadline=None, max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(LIMITS), st.sampled_from(["first", "last"]),
       st.sampled_from([0, 70000, 2**64 - 300]), op_lists())
def test_random_operations_match_model_after_every_step(limit, policy, start, ops):
    buf, m = StreamBuffer(limit, policy, start=start), Model(limit, policy, start=start)
    for op in ops:
        if op[0] == "insert":
            _, off, data, n = op
            assert buf.insert(start + off, data, n) == m.insert(start + off, data, n), op
        elif op[0] == "skip":
            assert buf.skip_to(start + op[1]) == m.skip_to(start + op[1])
        elif op[0] == "flush":
            assert buf.flush() == m.flush()
        else:
            assert buf.set_limit(op[1]) == m.set_limit(op[1])
        check_same(buf, m)


@st.composite
def lend_op_lists(draw):
    """op_lists with a reader releasing what it read, and lent pieces copied
    at random points (the frames going, as at the end of an offline run)."""
    ops = draw(op_lists())
    for _ in range(draw(st.integers(0, 12))):
        op = ("release", draw(st.integers(0, 299))) if draw(st.booleans()) else ("unlend",)
        ops.insert(draw(st.integers(0, len(ops))), op)
    return ops


@settings(deadline=None, max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(LIMITS), st.sampled_from(["first", "last"]),
       st.sampled_from([0, 70000, 2**32 - 100, 2**64 - 300]), lend_op_lists())
def test_lent_bytes_read_like_copied_ones_after_every_step(limit, policy, start, ops):
    """Lending in-order bytes instead of copying them (mos_rbuf_insert_lent)
    changes no result and no byte read: the model knows nothing of lending."""
    buf, m = StreamBuffer(limit, policy, start=start), Model(limit, policy, start=start)
    for op in ops:
        if op[0] == "insert":
            _, off, data, n = op
            lend = data is not None
            assert buf.insert(start + off, data, n, lend=lend) == m.insert(start + off, data, n)
        elif op[0] == "skip":
            assert buf.skip_to(start + op[1]) == m.skip_to(start + op[1])
        elif op[0] == "flush":
            assert buf.flush() == m.flush()
        elif op[0] == "release":
            buf.release(start + op[1])
            m.release(start + op[1])
        elif op[0] == "unlend":
            assert buf.unlend() == 0 and buf.lent == []
        else:
            assert buf.set_limit(op[1]) == m.set_limit(op[1])
        if policy == "last" or buf.limit == 0:
            assert buf.lent == []  # LAST writes over held bytes: nothing is lent
        assert all(buf.base <= o and o + n <= buf.head for o, n in buf.lent)
        check_same(buf, m)


@st.composite
def wide_op_lists(draw):
    """Fewer, longer segments over a wider range: the ring grows and wraps."""
    ops = []
    for _ in range(draw(st.integers(1, 14))):
        kind = draw(st.sampled_from(["insert"] * 8 + ["skip", "set_limit"]))
        if kind == "insert":
            off, n = draw(st.integers(0, 24000)), draw(st.integers(1, 3000))
            ops.append(("insert", off, draw(st.randoms()).randbytes(n), None))
        elif kind == "skip":
            ops.append(("skip", draw(st.integers(0, 24000))))
        else:
            ops.append(("set_limit", draw(st.sampled_from(WIDE_LIMITS))))
    return ops


WIDE_LIMITS = [3000, 4097, 9000, 20000]


@settings(deadline=None, max_examples=40, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(WIDE_LIMITS), st.sampled_from(["first", "last"]), wide_op_lists())
def test_ring_growth_relayout_and_shrink_match_model(limit, policy, ops):
    buf, m = StreamBuffer(limit, policy), Model(limit, policy)
    for op in ops:
        if op[0] == "insert":
            assert buf.insert(op[1], op[2]) == m.insert(op[1], op[2])
        elif op[0] == "skip":
            assert buf.skip_to(op[1]) == m.skip_to(op[1])
        else:
            assert buf.set_limit(op[1]) == m.set_limit(op[1])
        # blocks only inside the window [base, base + limit)
        assert buf.held <= (buf.limit // 4096 + 2) * 4096
        check_same(buf, m)


# ---------------------------------------------------------------- unit tests

def view(buf, lo, hi):
    """One character per offset: the byte, or '.' when not present."""
    return "".join((buf.read(o, 1) or b".").decode() for o in range(lo, hi))


def test_empty_buffer_has_nothing_and_zero_length_insert_is_a_noop():
    buf = StreamBuffer(100)
    assert (buf.base, buf.head, buf.runs, buf.gaps, buf.held) == (0, 0, [], [], 0)
    assert buf.insert(0, b"") == dict.fromkeys(RESULT_KEYS, 0)
    assert buf.insert(5, b"abc", 0) == dict.fromkeys(RESULT_KEYS, 0)
    assert buf.read(0, 10) == b"" and buf.contiguous(0) == b"" and buf.held == 0


def test_inorder_appends_advance_head_and_allocate_lazily():
    buf = StreamBuffer(1 << 20)
    assert buf.insert(0, b"hello ")["new_inorder"] == 6
    assert buf.insert(6, b"world")["new_inorder"] == 5
    assert buf.head == 11 and buf.read(0, 100) == b"hello world"
    assert buf.read(3, 4) == b"lo w"
    assert buf.held == 4096  # blocks on demand, not the limit
    buf.insert(11, bytes(10000))
    assert buf.held == 3 * 4096 and buf.read(0, 11) == b"hello world"


def test_insert_ahead_of_head_keeps_a_run_and_does_not_advance():
    buf = StreamBuffer(100)
    r = buf.insert(10, b"xyz")
    assert r["new_inorder"] == 0 and buf.head == 0
    assert buf.runs == [(10, 3)] and buf.ooo_bytes == 3
    assert buf.read(10, 10) == b"xyz" and buf.read(0, 10) == b""


def test_insert_fills_hole_advances_head_over_runs():
    buf = StreamBuffer(100)
    buf.insert(0, b"01")
    buf.insert(4, b"45")
    buf.insert(8, b"89")
    buf.insert(12, b"CD")
    assert buf.runs == [(4, 2), (8, 2), (12, 2)]
    r = buf.insert(2, b"23")  # touches the first run only
    assert r["new_inorder"] == 4 and buf.head == 6 and buf.runs == [(8, 2), (12, 2)]
    r = buf.insert(5, b"567")  # overlaps byte 5, fills 6-7, touches the run at 8
    assert r["overlap"] == 1 and r["new_inorder"] == 4
    assert buf.head == 10 and buf.runs == [(12, 2)]
    r = buf.insert(10, b"AB")
    assert r["new_inorder"] == 4 and buf.head == 14 and buf.runs == []
    assert buf.read(0, 20) == b"0123456789ABCD"


def test_insert_bridging_several_runs_merges_them_into_one():
    buf = StreamBuffer(100)
    for off in (10, 14, 18):
        buf.insert(off, b"rr")
    r = buf.insert(11, b"nnnnnnnn")  # 11..19 covers the holes 12-13, 16-17
    assert buf.runs == [(10, 10)] and r["overlap"] == 4 and buf.head == 0
    assert buf.read(10, 10) == b"rrnnrrnnrr"  # first policy keeps stored bytes


# Overlap shapes, stored bytes 'a' at [10, 20); the new segment is 'b'.  The
# views cover offsets [5, 25): '.' is not present.
OVERLAP_SHAPES = [
    # name,                        off, len, overlap, first view,             last view
    ("before, touching start",     5,   5,   0,  "bbbbbaaaaaaaaaa.....", "bbbbbaaaaaaaaaa....."),
    ("before, ends inside",        5,   10,  5,  "bbbbbaaaaaaaaaa.....", "bbbbbbbbbbaaaaa....."),
    ("before, ends at end",        5,   15,  10, "bbbbbaaaaaaaaaa.....", "bbbbbbbbbbbbbbb....."),
    ("before, ends after",         5,   20,  10, "bbbbbaaaaaaaaaabbbbb", "bbbbbbbbbbbbbbbbbbbb"),
    ("at start, ends inside",      10,  5,   5,  ".....aaaaaaaaaa.....", ".....bbbbbaaaaa....."),
    ("at start, ends at end",      10,  10,  10, ".....aaaaaaaaaa.....", ".....bbbbbbbbbb....."),
    ("at start, ends after",       10,  15,  10, ".....aaaaaaaaaabbbbb", ".....bbbbbbbbbbbbbbb"),
    ("inside, ends inside",        12,  5,   5,  ".....aaaaaaaaaa.....", ".....aabbbbbaaa....."),
    ("inside, ends at end",        12,  8,   8,  ".....aaaaaaaaaa.....", ".....aabbbbbbbb....."),
    ("inside, ends after",         12,  13,  8,  ".....aaaaaaaaaabbbbb", ".....aabbbbbbbbbbbbb"),
    ("at end, touching",           20,  5,   0,  ".....aaaaaaaaaabbbbb", ".....aaaaaaaaaabbbbb"),
    ("disjoint before",            5,   3,   0,  "bbb..aaaaaaaaaa.....", "bbb..aaaaaaaaaa....."),
]


@pytest.mark.parametrize("policy", ["first", "last"])
@pytest.mark.parametrize("where", ["run", "below_head"])
@pytest.mark.parametrize("name,off,n,overlap,first,last", OVERLAP_SHAPES,
                         ids=[s[0] for s in OVERLAP_SHAPES])
def test_overlap_shape_under_policy_keeps_expected_bytes(policy, where, name, off, n, overlap,
                                                         first, last):
    buf = StreamBuffer(100, policy)
    expect = first if policy == "first" else last
    if where == "below_head":
        # [0, 10) is a declared gap and the stored bytes are in order: new
        # bytes below 10 fall on the gap and are not stored
        buf.skip_to(10)
        expect = "....." + expect[5:]
    buf.insert(10, b"a" * 10)
    r = buf.insert(off, b"b" * n)
    assert r["overlap"] == overlap
    assert r["overlap_diff"] == overlap  # 'a' vs 'b': every overlapped byte differs
    assert view(buf, 5, 25) == expect
    if where == "below_head":
        assert r["in_gap"] == max(0, min(off + n, 10) - off)


@pytest.mark.parametrize("policy", ["first", "last"])
def test_identical_retransmission_counts_overlap_but_no_difference(policy):
    buf = StreamBuffer(100, policy)
    buf.insert(0, b"abcdef")
    buf.insert(10, b"klmn")
    r = buf.insert(2, b"cdefghijkl")
    assert (r["overlap"], r["overlap_diff"]) == (6, 0)
    assert buf.read(0, 20) == b"abcdef" + b"ghij" + b"klmn"


def test_window_overflow_drops_oldest_bytes_and_reports_range():
    buf = StreamBuffer(16)
    buf.insert(0, b"0123456789abcdef")
    r = buf.insert(16, b"ghijklmn")
    assert (r["dropped_old_from"], r["dropped_old_to"]) == (0, 8)
    assert buf.base == 8 and buf.head == 24
    assert buf.read(0, 10) == b"" and buf.read(7, 1) == b""
    assert buf.read(8, 100) == b"89abcdefghijklmn"
    r = buf.insert(2, b"23456789")  # below base: ignored and counted
    assert r["below_base"] == 6 and r["overlap"] == 2 and r["dropped_old_to"] == 0


def test_block_boundary_splits_zero_copy_view_but_not_copy():
    data = bytes(i % 251 for i in range(9000))
    buf = StreamBuffer(1 << 20)
    buf.insert(0, data)
    assert buf.held == 3 * 4096
    assert buf.contiguous(4000) == data[4000:4096]  # stops at the block's end
    assert buf.contiguous(4096) == data[4096:8192]
    assert buf.read(4000, 3000) == data[4000:7000]
    small = StreamBuffer(16)
    small.insert(0, bytes(range(24)))
    assert small.base == 8 and small.read(8, 100) == bytes(range(8, 24))


def test_segment_longer_than_limit_keeps_only_its_tail():
    buf = StreamBuffer(8)
    r = buf.insert(0, b"0123456789AB")
    assert r["dropped_new"] == 4 and r["dropped_old_to"] == 4
    assert buf.base == 4 and buf.head == 12 and buf.read(4, 20) == b"456789AB"


def test_window_passing_head_turns_holes_into_gaps_and_runs_into_delivered():
    buf = StreamBuffer(16)
    buf.insert(0, b"0123")
    buf.insert(6, b"67")
    r = buf.insert(30, b"wxyz")  # new base 18 > head 4
    assert buf.base == 18 and r["gaps_added"] == 2  # [4, 6) and [8, 18)
    assert buf.head == 18 and r["new_inorder"] == 14
    assert buf.gaps == [(4, 2), (8, 10)]  # listed though below base now
    assert buf.runs == [(30, 4)] and buf.read(30, 4) == b"wxyz"
    buf.forget_gaps(6)
    assert buf.gaps == [(8, 10)]


def test_window_passing_head_inside_a_run_extends_head_to_run_end():
    buf = StreamBuffer(16)
    buf.insert(0, b"0123")
    buf.insert(10, b"ABCDEFGHIJ")  # run [10, 20)
    r = buf.insert(24, b"wxyz")  # new base 12
    assert r["gaps_added"] == 1 and buf.base == 12 and buf.head == 20
    assert buf.read(12, 100) == b"CDEFGHIJ"
    assert buf.runs == [(24, 4)]
    r = buf.insert(20, b"KLMN")
    assert r["new_inorder"] == 8 and buf.head == 28 and buf.read(12, 100) == b"CDEFGHIJKLMNwxyz"


def test_skip_to_declares_gaps_merges_runs_and_extends_over_touching_run():
    buf = StreamBuffer(100)
    buf.insert(0, b"ab")
    buf.insert(5, b"fg")
    buf.insert(10, b"kl")
    assert buf.skip_to(8) == (2, 6)  # holes [2, 5) and [7, 8)
    assert buf.head == 8 and buf.gaps == [(2, 3), (7, 1)] and buf.runs == [(10, 2)]
    assert buf.skip_to(10) == (1, 4)  # [8, 10) merges with [7, 8); run 10-12 joins
    assert buf.head == 12 and buf.gaps == [(2, 3), (7, 3)] and buf.runs == []
    assert buf.read(0, 100) == b"ab" and buf.read(5, 100) == b"fg" and buf.read(10, 9) == b"kl"
    assert buf.read(3, 1) == b"" and buf.read(8, 1) == b""
    assert buf.gap_after(0) == (2, 3) and buf.gap_after(5) == (7, 3) and buf.gap_after(10) is None
    assert buf.skip_to(4) == (0, 0) and buf.head == 12  # never backwards


def test_bytes_arriving_on_a_declared_gap_are_not_stored():
    buf = StreamBuffer(100, "last")
    buf.skip_to(5)
    r = buf.insert(0, b"0123456")
    assert r["in_gap"] == 5 and r["new_inorder"] == 2 and r["overlap"] == 0
    assert buf.gaps == [(0, 5)] and buf.read(0, 10) == b"" and buf.read(5, 10) == b"56"


def test_flush_skips_to_end_of_last_run():
    buf = StreamBuffer(100)
    buf.insert(0, b"ab")
    buf.insert(4, b"ef")
    buf.insert(9, b"j")
    assert buf.flush() == (2, 8)
    assert buf.head == 10 and buf.gaps == [(2, 2), (6, 3)] and buf.runs == []
    assert buf.flush() == (0, 0)


def test_null_data_range_stays_hole_and_becomes_gap_when_skipped():
    buf = StreamBuffer(100)
    buf.insert(0, b"ab")
    r = buf.insert(2, None, 5)  # snapped: sequence space seen, bytes not
    assert r["new_inorder"] == 0 and buf.head == 2 and buf.runs == []
    buf.insert(7, b"hi")
    assert buf.runs == [(7, 2)]
    assert buf.skip_to(7) == (1, 7)
    assert buf.gaps == [(2, 5)] and buf.head == 9


def test_null_data_moves_the_window_like_real_data():
    buf = StreamBuffer(10)
    buf.insert(0, b"0123456789")
    r = buf.insert(10, None, 4)
    assert (r["dropped_old_from"], r["dropped_old_to"]) == (0, 4) and buf.base == 4
    assert buf.head == 10 and buf.read(4, 10) == b"456789"


def test_huge_null_range_far_ahead_is_bookkept_without_memory():
    buf = StreamBuffer(1000)
    buf.insert(0, b"abc")
    r = buf.insert(1 << 40, None, 2**32 - 1)
    assert buf.base == (1 << 40) + 2**32 - 1 - 1000 and buf.head == buf.base
    assert r["gaps_added"] == 1 and r["dropped_new"] == 2**32 - 1 - 1000
    assert buf.held == 0  # the window moved past "abc": its block went back


@pytest.mark.parametrize("policy", ["first", "last"])
def test_limit_zero_keeps_bookkeeping_identical_to_unbounded_buffer(policy):
    rng = random.Random(7)
    zero, big = StreamBuffer(0, policy), StreamBuffer(1 << 20, policy)
    for _ in range(300):
        off, n = rng.randrange(0, 2000), rng.randrange(0, 60)
        d = bytes(rng.choice(b"xy") for _ in range(n))
        a, b = zero.insert(off, d), big.insert(off, d)
        b["overlap_diff"] = 0  # limit 0 cannot compare bytes
        assert a == b
        if rng.random() < 0.05:
            assert zero.skip_to(off) == big.skip_to(off)
        assert (zero.head, zero.runs, zero.gaps, zero.base) == (big.head, big.runs, big.gaps, big.base)
    assert zero.flush() == big.flush()
    assert zero.held == 0 and zero.read(0, 100) == b"" and zero.contiguous(zero.head - 1) == b""


def test_set_limit_grow_keeps_content_and_takes_blocks_on_demand():
    buf = StreamBuffer(16)
    buf.insert(0, bytes(range(40)))  # keeps [24, 40)
    assert buf.base == 24 and buf.held == 4096
    assert buf.set_limit(100000) == 0 and buf.held == 4096  # nothing copied or taken
    buf.insert(40, bytes(range(40, 200)))
    assert buf.held == 4096 and buf.base == 24
    assert buf.read(24, 1000) == bytes(range(24, 200))
    buf.insert(5000, b"z")  # a run two blocks on: one more block, not the distance
    assert buf.held == 2 * 4096


def test_set_limit_shrink_moves_base_up_to_head_and_cuts_runs_beyond():
    buf = StreamBuffer(64)
    buf.insert(0, bytes(range(40)))
    buf.insert(50, bytes(range(50, 60)))  # run [50, 60)
    dropped = buf.set_limit(16)  # base may go only to head (40): window [40, 56)
    assert buf.base == 40 and buf.head == 40 and buf.runs == [(50, 6)]
    assert dropped == 40 + 4 and buf.held == 4096
    assert buf.read(50, 100) == bytes(range(50, 56)) and buf.read(39, 1) == b""
    assert buf.set_limit(8) == 6 and buf.runs == []  # run [50, 56) lies beyond [40, 48)


def test_set_limit_shrink_with_gap_at_head_keeps_present_bytes():
    buf = StreamBuffer(1000)
    buf.insert(0, b"abcdef")
    buf.skip_to(900)
    assert buf.set_limit(10) == 0 and buf.base == 0  # only 6 bytes are really held
    assert buf.read(0, 10) == b"abcdef" and buf.gaps == [(6, 894)]
    assert buf.set_limit(4) == 2 and buf.base == 2 and buf.read(2, 10) == b"cdef"


def test_set_limit_zero_frees_and_growing_again_starts_at_head():
    buf = StreamBuffer(100)
    buf.insert(0, b"abcdef")
    buf.insert(10, b"kl")
    assert buf.set_limit(0) == 8 and buf.held == 0 and buf.read(0, 10) == b""
    buf.insert(6, b"gh")  # bookkeeping continues
    assert buf.head == 8 and buf.runs == [(10, 2)]
    assert buf.set_limit(50) == 0
    assert buf.base == 8 and buf.head == 8 and buf.runs == []  # bytes of runs were never kept
    buf.insert(8, b"ijklmn")
    assert buf.read(8, 10) == b"ijklmn"


def test_limit_above_maximum_is_refused_naming_the_value():
    assert MAX_LIMIT == 2**30
    with pytest.raises(ValueError, match=r"limit 2147483647 is out of range 0\.\.1073741824"):
        StreamBuffer(2**31 - 1)
    buf = StreamBuffer(MAX_LIMIT)
    with pytest.raises(ValueError, match="limit 4294967295"):
        buf.set_limit(2**32 - 1)
    assert buf.limit == MAX_LIMIT
    r = buf.insert(MAX_LIMIT - 1, b"x")  # the far end of a 1 GiB window: one block
    assert r["refused"] == 0 and buf.held == 4096


def test_flood_of_one_byte_out_of_order_segments_is_bounded_in_runs_memory_and_time():
    buf = StreamBuffer(1 << 20)
    n = 20000
    t = time.perf_counter()
    dropped = 0
    for i in range(n, 0, -1):  # newest lowest: every insert lands at the front
        dropped += buf.insert(2 * i, b"x")["runs_dropped"]
    for i in range(n):
        buf.insert(2 * n + 2 + 2 * i, b"y")  # and at the back
    elapsed = time.perf_counter() - t
    assert len(buf.runs) == MAX_RUNS and dropped == n - MAX_RUNS
    assert buf.held <= 20 * 4096  # blocks where bytes are: [0, 80002) spans 20
    assert buf.memory - buf.held <= MAX_RUNS * 16 + 8 * 16 + 64 * 8  # runs stop at MAX_RUNS
    assert elapsed < 2.0
    buf.insert(0, bytes(2 * n + 2))  # fills every hole: all runs join
    assert buf.runs == [] and buf.head == 2 * n + 2


def test_gaps_below_base_are_forgotten_when_the_list_needs_room():
    buf = StreamBuffer(100)
    off = 0
    for _ in range(5000):  # a lossy flow: a hole every 50 bytes
        buf.insert(off, bytes(40))
        off += 50
        buf.skip_to(off)
    assert buf.base == off - 110 and len(buf.gaps) <= 8
    # blocks for the 100-byte window, a small table, a gap list that stays short
    assert buf.held <= 2 * 4096 and buf.memory - buf.held <= 16 * 8 + 8 * 16
    in_window = [(off - 110, 10), (off - 60, 10), (off - 10, 10)]
    assert [g for g in buf.gaps if g[0] + g[1] > buf.base] == in_window
    # every listed gap reaches into the buffer (the first starts at base): its
    # bytes were never stored, so none may be forgotten (before the fix the
    # first one was, and a read at base returned bytes never written)
    buf.forget_gaps(off - 100)
    assert buf.gaps == in_window
    assert buf.read(buf.base, 10) == b""


def test_gap_list_at_maximum_widens_last_gap_instead_of_growing():
    buf = StreamBuffer(0)
    for i in range(MAX_GAPS + 10):
        buf.insert(2 * i, b"x")
        buf.skip_to(2 * i + 2)
    gaps = buf.gaps
    assert len(gaps) == MAX_GAPS and buf.gap_overflow == 10
    assert gaps[-1] == (2 * (MAX_GAPS - 1) + 1, 21)  # covers the last ten holes and bytes between
    assert buf.head == 2 * (MAX_GAPS + 10)


def test_offsets_near_end_of_space_are_clipped_not_wrapped():
    start = 2**64 - 10
    buf = StreamBuffer(100, start=start)
    r = buf.insert(start, b"0123456789ABCDEF")
    assert r["dropped_new"] == 7 and buf.head == TOP and buf.read(start, 100) == b"012345678"
    r = buf.insert(TOP, b"z")
    assert r["dropped_new"] == 1 and buf.head == TOP
    assert buf.skip_to(TOP) == (0, 0)
    r = buf.insert(0, b"abc")  # far behind base
    assert r["below_base"] == 3


def test_offsets_near_end_of_space_move_window_and_gaps():
    start = 2**64 - 2000
    buf = StreamBuffer(64, start=start)
    buf.insert(start, b"a" * 10)
    r = buf.insert(TOP - 5, b"b" * 100)
    assert r["dropped_new"] == 95 and r["gaps_added"] == 1
    assert buf.base == buf.head == TOP - 64 and buf.runs == [(TOP - 5, 5)]
    assert buf.read(TOP - 5, 10) == b"bbbbb"
    assert buf.skip_to(TOP) == (1, 64) and buf.head == TOP
    assert buf.gaps == [(start + 10, TOP - 5 - start - 10)]  # the new hole extends the old gap


def test_absurd_lengths_and_offsets_do_not_crash():
    buf = StreamBuffer(1 << 16)
    buf.insert(2**64 - 2**31, None, 2**32 - 1)
    buf.insert(0, None, 2**32 - 1)
    buf.insert(2**63, b"x" * 100)
    buf.skip_to(2**64 - 1)
    buf.flush()
    assert buf.head == 2**64 - 1 and buf.read(2**64 - 2, 10) == b""


def test_benchmark_loops_reassemble():
    for kind in ("inorder", "tail", "scatter"):
        assert bench(kind, 4096, 1460, 1 << 16) > 0


def test_forget_gaps_keeps_gaps_inside_the_buffer():
    """Regression (fuzzing issue, finding 3): forgetting gaps above base used
    to drop holes still in the buffer, after which read() returned bytes
    that were never stored (uninitialised heap)."""
    sb = StreamBuffer(1 << 16)
    sb.insert(0, b"a" * 100)
    sb.insert(1000, b"b" * 100)       # hole [100, 1000)
    sb.skip_to(1100)                  # the hole becomes a gap; head moves past it
    assert sb.gaps == [(100, 900)]
    sb.forget_gaps(10_000)            # above base: must not forget the gap
    assert sb.gaps == [(100, 900)]
    assert sb.read(0, 1100) == b"a" * 100   # stops at the gap
    assert sb.read(100, 900) == b""
    assert sb.read(1000, 100) == b"b" * 100


# ---------------------------------------------------------------- lent bytes

def test_lent_inorder_bytes_take_no_block_until_a_third_piece_is_copied():
    buf = StreamBuffer(1 << 16)
    a, b, c = b"a" * 1000, b"b" * 1000, b"c" * 1000
    assert buf.insert(0, a, lend=True)["new_inorder"] == 1000
    assert buf.insert(1000, b, lend=True)["new_inorder"] == 1000
    assert buf.held == 0 and buf.lent == [(0, 1000), (1000, 1000)]
    assert buf.insert(2000, c, lend=True)["new_inorder"] == 1000  # no free piece: copied
    assert buf.held == 4096 and buf.lent == [(0, 1000), (1000, 1000)]
    assert buf.read(0, 3000) == a + b + c
    assert buf.contiguous(0) == a and buf.contiguous(1500) == b[500:]
    assert buf.contiguous(2000) == c


def test_release_drops_lent_pieces_below_base_and_cuts_a_straddling_one():
    buf = StreamBuffer(1 << 16)
    buf.insert(0, b"0123456789", lend=True)
    buf.insert(10, b"abcdefghij", lend=True)
    buf.release(15)
    assert buf.base == 15 and buf.lent == [(15, 5)] and buf.read(15, 10) == b"fghij"
    buf.release(20)
    assert buf.lent == [] and buf.held == 0
    buf.insert(20, b"xyz", lend=True)  # a piece is free again
    assert buf.lent == [(20, 3)]


def test_retransmission_over_lent_bytes_is_compared_and_keeps_them():
    buf = StreamBuffer(1 << 16, "first")
    buf.insert(0, b"hello world", lend=True)
    r = buf.insert(6, b"WORLD")
    assert r["overlap"] == 5 and r["overlap_diff"] == 5
    assert buf.read(0, 11) == b"hello world" and buf.lent == [(0, 11)]


def test_switching_to_last_policy_copies_lent_bytes_first():
    buf = StreamBuffer(1 << 16, "first")
    buf.insert(0, b"hello world", lend=True)
    buf.policy = "last"
    assert buf.lent == [] and buf.held == 4096
    buf.insert(6, b"WORLD")  # LAST overwrites the held copy, never the lender's bytes
    assert buf.read(0, 11) == b"hello WORLD"


def test_unlend_copies_pieces_and_a_refused_one_drops_the_bytes_up_to_its_end():
    buf = StreamBuffer(1 << 16)
    data = bytes(range(256)) * 24
    buf.insert(0, data[:1000], lend=True)
    buf.insert(1000, data[1000:3000], lend=True)
    assert buf.unlend() == 0 and buf.lent == []
    assert buf.read(0, 3000) == data[:3000]
    # a memcap of one block (and its table): the second piece needs a second block
    capped = StreamBuffer(1 << 16, memcap=4200)
    capped.insert(0, data[:3000], lend=True)
    capped.insert(3000, data[3000:], lend=True)
    assert capped.unlend() == len(data)  # everything below the refused piece's end goes
    assert capped.base == capped.head == len(data) and capped.read(0, 10) == b""
    assert capped.pool["refused_bytes"] == len(data) - 3000


def test_lend_needs_immutable_bytes():
    with pytest.raises(TypeError, match="bytearray"):
        StreamBuffer(100).insert(0, bytearray(b"x"), lend=True)
