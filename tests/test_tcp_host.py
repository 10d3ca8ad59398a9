"""The end host's active TCP endpoint (mos/tcp/host.c), sans-I/O: two of
them through an in-memory wire that can lose, reorder and duplicate
segments, the way h11's tests pair a client and a server.  Time is virtual
(ns), so retransmission timers run in microseconds of real time."""

from __future__ import annotations

import heapq
import random

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from mos.tcp._host import Host, Segment

MS = 1_000_000
ECONNREFUSED, ECONNRESET, ETIMEDOUT, ECONNABORTED = 111, 104, 110, 103


class Wire:
    """Two hosts and the segments between them.  ``loss``, ``dup`` and
    ``reorder`` are per-segment probabilities (a reordered segment is held
    back by up to 3 RTTs); ``rtt`` in ns."""

    def __init__(self, client: Host, server: Host, *, rtt=10 * MS, loss=0.0, dup=0.0,
                 reorder=0.0, seed=1, drop=None, mbps=0):
        self.ends = {"c": client, "s": server}
        self.rtt, self.loss, self.dup, self.reorder = rtt, loss, dup, reorder
        self.rng = random.Random(seed)
        self.q: list = []
        self.n = 0
        self.now = 0
        self.log: list = []        # (time, from, segment) as sent
        self.drop = drop           # drop(who, segment, k) -> bool: scripted losses
        self.sent = {"c": 0, "s": 0}
        self.mbps = mbps           # link rate each way (0: unlimited)
        self.free = {"c": 0, "s": 0}   # when each direction's link is free again

    def push(self, who, segs):
        for seg in segs:
            self.log.append((self.now, who, seg))
            k = self.sent[who]
            self.sent[who] += 1
            if self.drop is not None and self.drop(who, seg, k):
                continue
            if self.rng.random() < self.loss:
                continue
            copies = 2 if self.rng.random() < self.dup else 1
            depart = self.now
            if self.mbps:   # serialisation: segments queue behind each other
                depart = max(self.now, self.free[who]) + \
                    (len(seg.payload) + 66) * 8 * 1000 // self.mbps
                self.free[who] = depart
            for _ in range(copies):
                delay = depart - self.now + self.rtt // 2
                if self.rng.random() < self.reorder:
                    delay += self.rng.randrange(1, 3 * self.rtt)
                self.n += 1
                heapq.heappush(self.q, (self.now + delay, self.n, "s" if who == "c" else "c", seg))

    def flush(self):
        for who, h in self.ends.items():
            self.push(who, h.output(self.now))

    def next_time(self):
        """When the next segment arrives or timer fires (None: idle)."""
        times = [h.deadline for h in self.ends.values() if h.deadline is not None]
        if self.q:
            times.append(self.q[0][0])
        return min(times) if times else None

    def step(self):
        """Deliver the next segment or fire the next timer; False when idle."""
        deadlines = [(h.deadline, w) for w, h in self.ends.items() if h.deadline is not None]
        nxt_seg = self.q[0][0] if self.q else None
        nxt_tmr = min(deadlines)[0] if deadlines else None
        if nxt_seg is None and nxt_tmr is None:
            return False
        if nxt_tmr is not None and (nxt_seg is None or nxt_tmr < nxt_seg):
            self.now = max(self.now, nxt_tmr)
            for w, h in self.ends.items():
                if h.deadline is not None and h.deadline <= self.now:
                    h.timer(self.now)
        else:
            t, _, to, seg = heapq.heappop(self.q)
            self.now = max(self.now, t)
            self.ends[to].input(seg, self.now)
        return True


class App:
    """Writes `data` as room allows, then shuts down; reads what comes."""

    def __init__(self, host: Host, data: bytes, read=True):
        self.h, self.data, self.read = host, data, read
        self.off = 0
        self.got = bytearray()
        self.closed = False

    def pump(self):
        while self.off < len(self.data):
            n = self.h.send(self.data[self.off:self.off + 65536])
            if not n:
                break
            self.off += n
        if self.off == len(self.data) and not self.closed and self.h.state in (
                "ESTABLISHED", "CLOSE_WAIT"):
            self.h.shutdown()
            self.closed = True
        if self.read:
            while True:
                b = self.h.recv(1 << 20)
                if not b:
                    break
                self.got += b


def converse(cdata: bytes, sdata: bytes, *, max_time=600_000 * MS, max_steps=2_000_000,
             client_kw=None, server_kw=None, reader=None, wake=(), **wire_kw):
    """Connect, exchange both payloads, close both sides; returns the wire
    and the two apps.  `reader(now) -> bool` may hold the server's reads;
    the apps also run at the times in `wake` (when the reader changes its
    mind between two events)."""
    c, s = Host(**(client_kw or {})), Host(**(server_kw or {}))
    w = Wire(c, s, **wire_kw)
    c.connect(iss=0xFFFFF000, now=0)   # the sequence space wraps during the test
    syn = c.output(0)
    w.log += [(0, "c", x) for x in syn]
    s.accept(syn[0], iss=123456, now=w.rtt // 2)
    w.now = w.rtt // 2
    ca, sa = App(c, cdata), App(s, sdata)
    steps = 0
    wake = sorted(wake)
    while steps < max_steps and w.now < max_time:
        sa.read = reader(w.now) if reader else True
        ca.pump()
        sa.pump()
        w.flush()
        nxt = w.next_time()
        if wake and (nxt is None or wake[0] < nxt):
            w.now = max(w.now, wake.pop(0))
            continue
        if not w.step():
            break
        steps += 1
    ca.pump()
    sa.pump()
    return w, ca, sa


def done(c: Host, s: Host):
    return c.state in ("CLOSED", "TIME_WAIT") and s.state in ("CLOSED", "TIME_WAIT")


# ---------------------------------------------------------------- basics

def test_doctest():
    import doctest
    import mos.tcp._host as m
    res = doctest.testmod(m)
    assert res.attempted and not res.failed


def test_handshake_negotiates_options_and_iw10():
    w, ca, sa = converse(b"", b"")
    c, s = w.ends["c"], w.ends["s"]
    ci, si = c.info(), s.info()
    assert ci["ts"] and ci["sack"] and si["ts"] and si["sack"]
    assert ci["snd_shift"] == 7 and si["rcv_shift"] == 7
    assert ci["smss"] == 1460 - 12                  # timestamps on every segment
    syn, synack = w.log[0][2], w.log[1][2]
    assert syn.flags == "S" and synack.flags == "SA"
    assert syn.options["mss"] == 1460 and synack.options["wscale"] == 7
    assert c.state == s.state == "CLOSED"     # the wire ran through TIME-WAIT too


def test_options_off_when_the_peer_offers_none():
    w, ca, sa = converse(b"x" * 5000, b"y", client_kw={"ts": 0, "sack": 0, "wscale": 0})
    si = w.ends["s"].info()
    assert not si["ts"] and not si["sack"] and si["snd_shift"] == 0 and si["smss"] == 1460
    assert bytes(sa.got) == b"x" * 5000 and bytes(ca.got) == b"y"
    synack = w.log[1][2]
    assert "ts" not in synack.options and "sack_ok" not in synack.options


@pytest.mark.parametrize("n", [0, 1, 1447, 1448, 100_000, 3_000_000])
def test_clean_transfer_both_ways(n):
    data = bytes(random.Random(n).getrandbits(8) for _ in range(min(n, 4096))) * (n // 4096 + 1)
    data = data[:n]
    w, ca, sa = converse(data, data[::-1])
    assert bytes(sa.got) == data and bytes(ca.got) == data[::-1]
    c, s = w.ends["c"], w.ends["s"]
    assert done(c, s) and c.error == 0 and s.error == 0
    assert c.info()["rexmits"] == 0 and s.info()["timeouts"] == 0


def test_initial_window_is_ten_segments():
    c, s = Host(), Host()
    w = Wire(c, s)
    c.connect(1, 0)
    s.accept(c.output(0)[0], 9, 0)
    c.input(s.output(0)[0], 10 * MS)
    s.send(b"z" * 100_000)
    s.input(c.output(10 * MS)[0], 20 * MS)
    burst = [x for x in s.output(20 * MS) if x.payload]
    assert len(burst) == 10 and all(len(x.payload) == 1448 for x in burst)
    assert w is not None


def test_delayed_ack_every_second_segment_after_the_quick_start():
    # the first 16 segments are ACKed one by one (slow start wants every
    # ACK, Linux's quick ACK mode); then every second one (RFC 1122 4.2.3.2)
    w, ca, sa = converse(b"q" * 200_000, b"")
    acks = [seg for _, who, seg in w.log if who == "s" and not seg.payload and "S" not in
            seg.flags and "F" not in seg.flags]
    data = [seg for _, who, seg in w.log if who == "c" and seg.payload]
    assert len(data) // 2 < len(acks) <= (len(data) - 16) // 2 + 16 + 3


# ---------------------------------------------------------------- loss and recovery

def test_fast_retransmit_and_sack_after_one_loss():
    victim = {}

    def drop(who, seg, k):
        if who == "c" and seg.payload and "hit" not in victim and \
                ((seg.seq - 0xFFFFF000) & 0xFFFFFFFF) > 30_000:
            victim["hit"] = seg.seq
            return True
        return False
    data = bytes(range(256)) * 2000
    w, ca, sa = converse(data, b"", drop=drop)
    c = w.ends["c"]
    assert bytes(sa.got) == data
    assert c.info()["fast_rexmits"] == 1 and c.info()["timeouts"] == 0
    # the receiver's duplicate ACKs carried SACK blocks right of the hole
    sacks = [seg.options["sack"] for _, who, seg in w.log if who == "s" and "sack" in seg.options]
    assert sacks and all(((l - victim["hit"]) & 0xFFFFFFFF) < 1 << 30 for l, r in sacks[0])
    # and the hole went once: only one retransmission
    assert c.info()["rexmits"] == 1


def test_rto_backs_off_and_recovers_after_a_blackout():
    blackout = (40 * MS, 3_000 * MS)
    holder = {}

    def drop(who, seg, k):
        return blackout[0] <= holder["w"].now < blackout[1]
    data = b"r" * 2_000_000
    c, s = Host(), Host()
    w = Wire(c, s, drop=drop)
    holder["w"] = w
    c.connect(7, 0)
    s.accept(c.output(0)[0], 9, 0)
    ca, sa = App(c, data), App(s, b"")
    for _ in range(2_000_000):
        ca.pump()
        sa.pump()
        w.flush()
        if not w.step():
            break
    assert bytes(sa.got) == data
    ci = c.info()
    assert ci["timeouts"] >= 2 and ci["rto_ns"] >= 200 * MS


def _established(t0=1000 * MS, rtt=1 * MS, **client_kw):
    """A client and a server past the handshake at t0 + rtt (timestamps
    start after 0, so the handshake gives an RTT sample)."""
    c, s = Host(**client_kw), Host()
    c.connect(1, t0)
    s.accept(c.output(t0)[0], 9, t0 + rtt // 2)
    c.input(s.output(t0 + rtt // 2)[0], t0 + rtt)
    s.input(c.output(t0 + rtt)[0], t0 + rtt + rtt // 2)
    return c, s, t0 + 2 * rtt


def _data(segs):
    return [x for x in segs if x.payload]


def test_rack_waits_a_reordering_window_then_marks_the_hole_lost():
    # RFC 8985 6.2: segment 1 of 2 missing, the other SACKed; no reordering
    # seen and fewer than three segments SACKed: lost only after RACK.rtt
    # plus min_rtt / 4, through the reordering timer (6.3), not at once
    c, s, now = _established()
    c.send(b"a" * 2896)
    one, two = _data(c.output(now))
    s.input(two, now + 500_000)
    ack = s.output(now + 500_000)
    assert ack[0].options["sack"] == [(two.seq, two.seq + 1448)]
    assert _data(c.output(now + 1 * MS)) == [] if c.input(ack[0], now + 1 * MS) else True
    assert _data(c.output(now + 1 * MS)) == []           # not yet: it may be reordered
    at = c.deadline
    assert now + 1 * MS < at <= now + 1 * MS + 500_000    # the reordering window, not the PTO
    c.timer(at)
    again = _data(c.output(at))
    assert [x.seq for x in again] == [one.seq] and c.info()["fast_rexmits"] == 1


def test_rack_lets_a_reordered_segment_in_without_a_resend():
    c, s, now = _established()
    c.send(b"a" * 2896)
    one, two = _data(c.output(now))
    s.input(two, now + 500_000)
    c.input(s.output(now + 500_000)[0], now + 1 * MS)
    s.input(one, now + 1 * MS)                            # late, within the window
    c.input(s.output(now + 1 * MS)[0], now + 1 * MS + 100_000)
    assert c.info()["rexmits"] == 0 and c.deadline is None or c.info()["rexmits"] == 0
    assert _data(c.output(now + 5 * MS)) == []


def test_rack_finds_a_lost_resend_without_an_rto():
    # the first loss and its first resend are both dropped; segments sent
    # after the resend are SACKed, so RACK marks the resend lost too
    hits = {}

    def drop(who, seg, k):
        if who != "c" or not seg.payload:
            return False
        off = (seg.seq - 0xFFFFF000 - 1) & 0xFFFFFFFF
        if off == 100 * 1448 and hits.get(off, 0) < 2:
            hits[off] = hits.get(off, 0) + 1
            return True
        return False
    data = bytes(range(256)) * 4000
    w, ca, sa = converse(data, b"", drop=drop, rtt=1 * MS)
    ci = w.ends["c"].info()
    assert bytes(sa.got) == data and hits == {100 * 1448: 2}
    assert ci["timeouts"] == 0 and ci["rexmits"] >= 2, ci


def test_tail_loss_is_probed_and_recovered_without_an_rto():
    # the last three segments of the stream are lost the first time: the
    # probe (RFC 8985 7.3) repeats the last, its SACK lets RACK mark the
    # two before it lost
    size = 200 * 1448
    lost = {}

    def drop(who, seg, k):
        if who != "c" or not seg.payload:
            return False
        off = (seg.seq - 0xFFFFF000 - 1) & 0xFFFFFFFF
        if off >= size - 3 * 1448 and off not in lost:
            lost[off] = 1
            return True
        return False
    data = b"t" * size
    w, ca, sa = converse(data, b"", drop=drop, rtt=1 * MS)
    ci = w.ends["c"].info()
    assert bytes(sa.got) == data and len(lost) == 3
    assert ci["timeouts"] == 0 and ci["probes"] >= 1, ci
    # the probe went before the RTO would have: two SRTTs, at least 2 ms
    first_loss = min(t for t, who, seg in w.log if who == "c" and seg.payload and
                     ((seg.seq - 0xFFFFF000 - 1) & 0xFFFFFFFF) >= size - 3 * 1448)
    resent = [t for t, who, seg in w.log if who == "c" and seg.payload and t > first_loss and
              ((seg.seq - 0xFFFFF000 - 1) & 0xFFFFFFFF) >= size - 3 * 1448]
    assert resent and resent[0] - first_loss < 50 * MS


def test_the_receiver_sacks_the_latest_segment_first():
    # RFC 2018 4: the first block holds the segment that triggered the ACK,
    # then the blocks reported before it; more runs than blocks fit
    c, s, now = _established()
    c.send(b"b" * 1448 * 10)
    segs = _data(c.output(now))
    for k in (1, 3, 5, 7):                          # four runs above a hole at 0
        s.input(segs[k], now + k * 1000)
    ack = s.output(now + 10_000)[-1]
    blocks = ack.options["sack"]
    assert len(blocks) == 3                          # with timestamps: three fit
    assert blocks[0] == (segs[7].seq, segs[7].seq + 1448)
    assert blocks[1] == (segs[5].seq, segs[5].seq + 1448)
    assert blocks[2] == (segs[3].seq, segs[3].seq + 1448)


def test_the_receiver_reports_a_duplicate_with_a_dsack_block():
    # RFC 2883 4: a segment that came twice is the first block of the next
    # ACK, below its acknowledgement number; the ACK after it has none
    c, s, now = _established()
    c.send(b"d" * 1448)
    seg = _data(c.output(now))[0]
    s.input(seg, now + 1000)
    s.output(now + 1000)
    s.input(seg, now + 2000)
    ack = s.output(now + 2000)[-1]
    assert ack.options["sack"] == [(seg.seq, seg.seq + 1448)] and ack.ack == seg.seq + 1448


def _late_first_segment():
    """Five segments out, the first held back: segments 2-4 arrive and
    their SACKs put the sender in recovery (RACK: three SACKed, no
    reordering seen); returns (client, server, now, segments, cwnd before)."""
    c, s, now = _established()
    c.send(b"e" * 1448 * 5)
    segs = _data(c.output(now))
    for k in (1, 2, 3):
        s.input(segs[k], now + 300_000)
    before = c.info()["cwnd"]
    for a in s.output(now + 300_000):
        c.input(a, now + 1 * MS)
    assert c.info()["in_recovery"] and c.info()["cwnd"] < before
    return c, s, now, segs, before


def test_a_recovery_whose_resends_all_come_back_dsacked_is_undone():
    # segment 1 is only late: RACK marks it lost (three later ones SACKed,
    # no reordering seen yet), the window is cut and it is resent; the
    # original then arrives, the resend draws a D-SACK: the cut was for
    # nothing (RFC 3708), the window before it comes back (RFC 4015), and
    # RACK's reordering window grows (RFC 8985 6.2 step 4)
    c, s, now, segs, before = _late_first_segment()
    resend = [x for x in _data(c.output(now + 1 * MS)) if x.seq == segs[0].seq]
    assert resend
    s.input(segs[0], now + 1 * MS)                   # the original, late
    s.input(segs[4], now + 1 * MS)
    for a in s.output(now + 1 * MS):
        c.input(a, now + 1 * MS + 500_000)
    s.input(resend[0], now + 1 * MS + 500_000)     # the resend: a duplicate
    dsack = s.output(now + 1 * MS + 500_000)[-1]
    assert seq_lt(dsack.options["sack"][0][0], dsack.ack)
    c.input(dsack, now + 2 * MS)
    assert c.info()["cwnd"] >= before and not c.info()["in_recovery"], c.info()


def test_a_recovery_whose_lost_segment_arrives_before_its_resend_is_undone():
    # the same late segment, but its ACK comes before the resend could
    # leave (one burst of ACKs): nothing was lost, nothing needs a D-SACK,
    # the cut goes back at once and nothing is resent
    c, s, now, segs, before = _late_first_segment()
    s.input(segs[0], now + 1 * MS)                   # the original, late
    for a in s.output(now + 1 * MS):
        c.input(a, now + 1 * MS + 10_000)             # same burst: no output between
    info = c.info()
    assert not info["in_recovery"] and info["cwnd"] >= before and info["undos"] == 1, info
    assert _data(c.output(now + 1 * MS + 10_000)) == []   # no resend
    assert c.info()["rexmits"] == 0


def test_rtt_comes_from_send_times_below_the_timestamp_clock():
    # timestamps tick in ms (RFC 7323 5.4): on a 0.3 ms path they say 0 or
    # 1 ticks; the send time of each delivered segment says 0.3 ms, and
    # min_rtt (RACK's reordering window) is that, never a resend's echo
    data = bytes(200_000)
    w, _ca, sa = converse(data, b"", rtt=300_000)
    assert bytes(sa.got) == data
    info = w.ends["c"].info()
    assert 250_000 <= info["srtt_ns"] <= 450_000, info
    assert 290_000 <= info["min_rtt_ns"] <= 310_000, info


def test_a_lost_probe_is_followed_by_a_second_before_the_rto():
    # the tail segment and the first probe are lost: a second probe, after
    # twice the PTO, repairs it; no 200 ms RTO (arm_pto)
    lost = []

    def drop(who, seg, k):
        if who == "c" and seg.payload and seg.seq + len(seg.payload) == end[0] and len(lost) < 2:
            lost.append(seg.seq)
            return True
        return False
    data = bytes(1448 * 4)
    end = [None]
    c, s = Host(), Host()
    w = Wire(c, s, rtt=1 * MS, drop=drop)
    c.connect(iss=1000, now=0)
    syn = c.output(0)
    s.accept(syn[0], iss=5000, now=w.rtt // 2)
    w.now = w.rtt // 2
    ca, sa = App(c, data), App(s, b"")
    end[0] = 1001 + len(data)
    for _ in range(10_000):
        ca.pump()
        sa.pump()
        w.flush()
        if not w.step() or len(sa.got) == len(data):
            break
    info = c.info()
    assert bytes(sa.got) == data and len(lost) == 2
    assert info["probes"] == 2 and info["timeouts"] == 0, info
    assert w.now < 100 * MS, w.now


def test_tiny_writes_with_nodelay_keep_the_scoreboard_bounded():
    # a byte at a time with TCP_NODELAY: each could be a segment (cwnd is
    # in bytes), each a scoreboard record; at most MOS_HOST_MAX_SEGS wait
    c, s, now = _established(nodelay=1)
    sent = []
    for k in range(3000):
        c.send(b"%c" % (k & 0xFF))
        sent += _data(c.output(now))
    assert len(sent) <= 2048
    for x in sent:
        s.input(x, now + 1 * MS)
    for a in s.output(now + 1 * MS):
        c.input(a, now + 2 * MS)
    rest = _data(c.output(now + 2 * MS))
    assert rest and sum(len(x.payload) for x in sent + rest) == 3000
    for x in rest:
        s.input(x, now + 3 * MS)
    assert s.recv(10_000) == bytes(k & 0xFF for k in range(3000))


def seq_lt(a, b):
    return 0 < (b - a) & 0xFFFFFFFF < 1 << 31


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(loss=st.sampled_from([0.0, 0.02, 0.05]), dup=st.sampled_from([0.0, 0.01, 0.05]),
       reorder=st.sampled_from([0.0, 0.01, 0.05]), seed=st.integers(0, 10_000),
       n=st.one_of(st.integers(0, 3000), st.integers(100_000, 400_000)),
       m=st.one_of(st.integers(0, 3000), st.integers(10_000, 80_000)),
       mss=st.sampled_from([536, 1460, 9000]), rcvbuf=st.sampled_from([4096, 65536, 262144]),
       opts=st.sampled_from([{}, {"ts": 0}, {"sack": 0}, {"ts": 0, "sack": 0, "wscale": 0}]))
def test_impaired_wire_keeps_both_streams_exact(loss, dup, reorder, seed, n, m, mss, rcvbuf,
                                                opts):
    rng = random.Random(seed)
    cdata = rng.randbytes(n)
    sdata = rng.randbytes(m)
    w, ca, sa = converse(cdata, sdata, loss=loss, dup=dup, reorder=reorder, seed=seed,
                         client_kw={"mss": mss, **opts}, server_kw={"rcvbuf": rcvbuf})
    c, s = w.ends["c"], w.ends["s"]
    assert bytes(sa.got) == cdata and bytes(ca.got) == sdata, (c.info(), s.info())
    assert c.error == 0 and s.error == 0
    assert done(c, s), (c.state, s.state)


def _twenty_megabytes(seed):
    """(clean time, impaired time, info) of a 20 MB transfer on a 1 Gbit/s
    link with a 0.2 ms round trip (a veth pair's), clean and with 2 % loss,
    1 % reordering and 1 % duplication."""
    data = random.Random(5).randbytes(20_000_000)
    clean, _, sa = converse(data, b"", rtt=200_000, mbps=1000)
    assert bytes(sa.got) == data
    lossy, _, sa = converse(data, b"", rtt=200_000, mbps=1000, loss=0.02, reorder=0.01,
                            dup=0.01, seed=seed)
    assert bytes(sa.got) == data              # byte-identical whatever the wire did

    def finish_time(w):
        return max(t for t, who, seg in w.log if who == "s" and seg.ack)
    return finish_time(clean), finish_time(lossy), lossy.ends["c"].info()


def test_twenty_megabytes_through_an_impaired_wire_arrive_intact():
    clean, lossy, info = _twenty_megabytes(5)
    # RACK-TLP and SACK recovery keep retransmission timeouts rare
    assert info["fast_rexmits"] > 100 and info["timeouts"] <= 1, info


def test_twenty_megabytes_through_an_impaired_wire_within_three_times_clean():
    # issue 9: an RTO (200 ms minimum) costs more than the whole clean
    # transfer on this 0.2 ms path; RACK-TLP finds lost resends and tails
    # without one, PRR keeps the window near ssthresh through recovery
    # (seeds 1-8 measured 2.1-2.4x)
    clean, lossy, info = _twenty_megabytes(3)
    assert lossy <= 3 * clean, (clean, lossy, info)
    assert info["timeouts"] == 0, info


def test_cubic_after_an_idle_spell_does_not_jump_its_window():
    # a transfer with a loss leaves slow start; after 10 s of silence
    # W_cubic(t) would be huge: the epoch restarts instead (RFC 9438 5.8)
    c, s = Host(sndbuf=8 << 20), Host()
    w = Wire(c, s, rtt=10 * MS, drop=lambda who, seg, k: who == "c" and k == 40)
    c.connect(1, 0)
    s.accept(c.output(0)[0], 2, 0)

    def run(until):
        while w.now < until:
            w.flush()
            s.recv(1 << 20)
            if not w.step():
                break
    c.send(b"a" * 400_000)
    run(3_000 * MS)
    first = c.info()
    assert c.unacked == 0 and first["fast_rexmits"] + first["rexmits"] >= 1
    assert first["cwnd"] < first["ssthresh"] * 2          # in congestion avoidance
    w.now += 10_000 * MS
    t0 = w.now
    c.send(b"b" * 2_000_000)
    top = 0
    while w.now < t0 + 3 * w.rtt:                         # three round trips
        w.flush()
        s.recv(1 << 20)
        top = max(top, c.info()["cwnd"])
        if not w.step():
            break
    assert top <= first["cwnd"] + 8 * first["smss"], (first["cwnd"], top)


# ---------------------------------------------------------------- flow control

def test_zero_window_probes_until_the_reader_reads():
    # the server reads nothing for 5 s: the client fills its window, probes, then goes on
    data = b"w" * 300_000
    w, ca, sa = converse(data, b"", server_kw={"rcvbuf": 16384},
                         reader=lambda now: now > 5_000 * MS)
    assert bytes(sa.got) == data
    ci = w.ends["c"].info()
    assert ci["probes"] >= 2
    zero = [seg for t, who, seg in w.log if who == "s" and seg.wnd == 0]
    assert zero


def test_a_lost_window_update_is_sent_again_before_the_peers_persist_timer():
    # the server's reader sleeps 5 s: its window closes.  When it reads, the
    # one ACK that reopens the window is lost; without a second one the
    # client would wait for its persist timer (seconds of backoff by then)
    data = b"u" * 200_000
    state = {"closed": False, "dropped": None}

    def drop(who, seg, k):
        if who != "s" or seg.payload:
            return False
        if seg.wnd == 0:
            state["closed"] = True
        elif state["closed"] and state["dropped"] is None:
            state["dropped"] = seg
            return True
        return False

    w, ca, sa = converse(data, b"", server_kw={"rcvbuf": 16384, "rcvbuf_max": 0}, drop=drop,
                         reader=lambda now: now >= 5_000 * MS, wake=[5_000 * MS])
    assert bytes(sa.got) == data and state["dropped"] is not None
    t_drop = next(t for t, who, seg in w.log if seg is state["dropped"])
    t_next = next(t for t, who, seg in w.log if t > t_drop and who == "c" and seg.payload)
    si = w.ends["s"].info()
    assert si["wupd_resends"] >= 1
    # the resend went 2 RTTs + 1 ms later; the client's persist timer was
    # backed off to seconds (5 s of zero window)
    assert t_next - t_drop <= 2 * w.rtt + 1 * MS + w.rtt, (t_drop, t_next)


def test_window_update_resends_stop_once_data_flows():
    # nothing lost: the update reopens the window, data comes, no resend
    data = b"v" * 200_000
    w, ca, sa = converse(data, b"", server_kw={"rcvbuf": 16384, "rcvbuf_max": 0},
                         reader=lambda now: now >= 5_000 * MS, wake=[5_000 * MS])
    assert bytes(sa.got) == data
    assert w.ends["s"].info()["wupd_resends"] == 0


def _bulk(server_kw, *, mbps=0, n=3_000_000):
    data = bytes(range(256)) * (n // 256)
    w, ca, sa = converse(data, b"", server_kw=server_kw, client_kw={"sndbuf": 8 << 20},
                         rtt=10 * MS, mbps=mbps)
    assert bytes(sa.got) == data
    return w, w.ends["s"].info()


def test_receive_buffer_autotuning_grows_the_window_for_a_reader_that_keeps_up():
    # 256 KB per 10 ms RTT is 210 Mbit/s: on a 1 Gbit/s link the window,
    # not the link, would bound the transfer; autotuning lifts it
    w_fixed, fixed = _bulk({"rcvbuf_max": 0}, mbps=1000)
    w_auto, auto = _bulk({}, mbps=1000)
    assert fixed["rcvbuf"] == 256 * 1024 and fixed["rcvbuf_grows"] == 0
    assert auto["rcvbuf"] > 256 * 1024 and auto["rcvbuf_grows"] >= 1
    assert auto["rcvbuf"] <= 4 * 1024 * 1024
    assert 5 * MS <= auto["rcv_rtt_ns"] <= 40 * MS        # from the TSecr of the data
    # the largest window the server offered, and the time the transfer took
    big = max(seg.wnd << 7 for t, who, seg in w_auto.log if who == "s" and "S" not in seg.flags)
    assert big > 256 * 1024
    def last(w):
        return max(t for t, who, seg in w.log if who == "c" and seg.payload)
    assert last(w_auto) < 0.8 * last(w_fixed), (last(w_auto), last(w_fixed))


def test_autotuning_leaves_a_slow_reader_and_an_explicit_rcvbuf_alone():
    # the reader takes 8 KB every 5 ms (1.6 MB/s): the sender could go
    # faster, but a larger window would only hold more unread bytes
    c, s = Host(sndbuf=8 << 20), Host()
    w = Wire(c, s, rtt=10 * MS)
    c.connect(1, 0)
    s.accept(c.output(0)[0], 2, 0)
    ca = App(c, b"s" * 1_000_000, read=False)
    got = bytearray()
    tick = 0
    while w.now < 2_000 * MS:
        ca.pump()
        w.flush()
        nxt = w.next_time()
        if nxt is None or nxt > tick:
            w.now = max(w.now, tick)
            got += s.recv(8192)
            tick += 5 * MS
            continue
        w.step()
    assert len(got) > 300_000 and s.info()["rcvbuf_grows"] == 0
    assert s.info()["rcvbuf"] == 256 * 1024
    # SO_RCVBUF fixes the size, as in Linux
    h = Host()
    h.set_buffers(rcvbuf=100_000)
    assert h.info()["rcvbuf"] == 100_000


# ---------------------------------------------------------------- closing and errors

def test_simultaneous_close():
    c, s = Host(), Host()
    w = Wire(c, s)
    c.connect(100, 0)
    s.accept(c.output(0)[0], 200, 0)
    w.now = 5 * MS
    w.push("s", s.output(w.now))
    for _ in range(10):
        w.flush()
        w.step()
    assert c.state == s.state == "ESTABLISHED"
    c.shutdown()
    s.shutdown()
    w.flush()
    for _ in range(1000):
        w.flush()
        if not w.step():
            break
    states = [(t, who, seg.flags) for t, who, seg in w.log]
    assert c.state == "CLOSED" and s.state == "CLOSED"     # through CLOSING and TIME-WAIT
    assert sum(1 for _, who, f in states if "F" in f) == 2, states


def test_abort_sends_rst_and_peer_sees_reset():
    c, s = Host(), Host()
    c.connect(1, 0)
    s.accept(c.output(0)[0], 2, 0)
    c.input(s.output(0)[0], 1 * MS)
    s.input(c.output(1 * MS)[0], 2 * MS)
    c.send(b"hello")
    s.input(c.output(3 * MS)[0], 4 * MS)
    assert s.recv() == b"hello"
    s.abort()
    rst = s.output(5 * MS)
    assert [x.flags for x in rst] == ["RA"] and s.state == "CLOSED" and s.error == ECONNABORTED
    ev = c.input(rst[0], 6 * MS)
    assert "CLOSED" in ev and c.state == "CLOSED" and c.error == ECONNRESET and c.eof


def test_out_of_window_rst_is_ignored_and_in_window_gets_a_challenge_ack():
    c, s = Host(), Host()
    c.connect(1, 0)
    s.accept(c.output(0)[0], 1_000_000, 0)
    c.input(s.output(0)[0], 1 * MS)
    s.input(c.output(1 * MS)[0], 2 * MS)
    far = Segment(5, 0, "R", 0)
    assert c.input(far, 3 * MS) == [] and c.state == "ESTABLISHED"
    near = Segment(1_000_000 + 1 + 100, 0, "R", 0)     # in the window, not at RCV.NXT
    assert c.input(near, 4 * MS) == ["OUTPUT"] and c.state == "ESTABLISHED"
    ack = c.output(4 * MS)
    assert [x.flags for x in ack] == ["A"] and ack[0].ack == 1_000_001   # RFC 5961 3.2
    exact = Segment(1_000_001, 0, "R", 0)
    assert "CLOSED" in c.input(exact, 5 * MS) and c.error == ECONNRESET


def test_connect_to_a_closed_port_is_refused():
    c = Host()
    c.connect(77, 0)
    syn = c.output(0)[0]
    rst = Segment(0, syn.seq + 1, "RA", 0)
    assert "CLOSED" in c.input(rst, 1 * MS)
    assert c.error == ECONNREFUSED and c.state == "CLOSED"


def test_connect_to_a_silent_address_times_out_after_the_retries():
    c = Host(syn_retries=3, rto_init=1000 * MS)
    c.connect(77, 0)
    sent = [x for x in c.output(0)]
    now = 0
    while c.deadline is not None and now < 100_000 * MS:
        now = c.deadline
        ev = c.timer(now)
        sent += c.output(now)
        if "CLOSED" in ev:
            break
    assert c.error == ETIMEDOUT and c.state == "CLOSED"
    assert [x.flags for x in sent] == ["S"] * 4         # the first SYN and 3 retries
    assert now == (1 + 2 + 4 + 8) * 1000 * MS           # RFC 6298 5.5 doubling


def test_time_wait_ends_after_two_msl_and_repeats_its_ack_for_a_repeated_fin():
    w, ca, sa = converse(b"a", b"b", client_kw={"time_wait": 30_000 * MS})
    c = w.ends["c"]
    assert c.state == "CLOSED"           # the wire ran until the timer fired
    last_fin = max(t for t, who, seg in w.log if "F" in seg.flags)
    assert w.now >= last_fin + 30_000 * MS


def test_paws_drops_an_old_timestamp():
    c, s = Host(), Host()
    c.connect(1, 0)
    s.accept(c.output(0)[0], 2, 0)
    c.input(s.output(0)[0], 1 * MS)
    s.input(c.output(1 * MS)[0], 2 * MS)
    c.send(b"abc")
    seg = c.output(3 * MS)[0]
    s.input(seg, 4 * MS)
    old = Segment(seg.seq + 3, seg.ack, "PA", seg.wnd,
                  {"ts": ((seg.options["ts"][0] - 1000) & 0xFFFFFFFF, 0)}, b"zzz")
    assert s.input(old, 5 * MS) == ["OUTPUT"]
    assert s.recv() == b"abc" and s.info()["paws_drops"] == 1


def test_send_after_shutdown_and_buffer_limits():
    c = Host(sndbuf=10_000)
    c.connect(1, 0)
    assert c.send(b"x" * 50_000) == 10_000       # bounded by SO_SNDBUF
    c.shutdown()
    assert c.state == "CLOSED" and c.send(b"y") == 0   # close before the handshake ended


def test_a_syn_in_an_established_connection_gets_a_challenge_ack_and_changes_nothing():
    # found by fuzz/fuzz_host.c: a stray SYN used to renumber the peer model
    # (the monitor's "client gave up on its first SYN"), and the bytes after
    # it were stored at the wrong offsets (RFC 5961 4.2: challenge ACK only)
    c, s = Host(), Host()
    c.connect(1, 0)
    s.accept(c.output(0)[0], 2, 0)
    c.input(s.output(0)[0], 1 * MS)
    s.input(c.output(1 * MS)[0], 2 * MS)
    assert s.input(Segment(999_999, 0, "S", 1000), 3 * MS) == ["OUTPUT"]
    ack = s.output(3 * MS)
    assert [x.flags for x in ack] == ["A"] and ack[0].ack == 2 and s.state == "ESTABLISHED"
    c.send(b"after")
    s.input(c.output(4 * MS)[0], 5 * MS)
    assert s.recv() == b"after"
