"""Payload edits that change lengths (insert, chomp, replace) and the sequence
translation they need, sans-I/O: the map alone (SeqMap), then the engine in
collect mode with each end answering what it received on the wire."""

import itertools
import random

import _netpkt as N
import dpkt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mos.dualstack._engine import SeqMap
from tcpconv import CLIENT6, SERVER6, Conv

import mos
from mos import Event, Side, _native

F = dpkt.tcp
CLIENT_PORT, SERVER_PORT = 0, 1
M32 = 0xFFFFFFFF


# ---------------------------------------------------------------- the map


def test_seqmap_insert_replace_chomp_examples():
    m = SeqMap()
    m.add(100, 0, b"XY")          # insert before byte 100
    m.add(200, 10, b"abc")        # 10 bytes become 3
    m.add(300, 5)                 # 5 bytes removed
    assert m.out(100) == 100 and m.out(101) == 103
    assert m.out(250) == 250 + 2 - 7
    assert m.out(400) == 400 + 2 - 7 - 5
    # a segment over all three
    raw = bytes(range(256)) * 2
    wseq, pay = m.rewrite(50, raw[:300])
    assert wseq == 50
    expect = raw[:50] + b"XY" + raw[50:150] + b"abc" + raw[160:250] + raw[255:300]
    assert pay == expect
    # a retransmission starting inside the replaced range carries all new bytes
    wseq, pay = m.rewrite(205, raw[155:165])
    assert (wseq, pay) == (202, b"abc" + raw[160:165])
    # acknowledgements back: inside new bytes -> the edit's start
    assert m.inn(101) == 100 and m.inn(102) == 100 and m.inn(103) == 101
    assert m.inn(m.out(400)) == 400


def test_seqmap_append_belongs_to_the_segment_before():
    m = SeqMap()
    m.add(110, 0, b"++", after=True)   # appended after byte 109
    assert m.rewrite(100, b"0123456789") == (100, b"0123456789++")
    assert m.rewrite(110, b"abc") == (112, b"abc")
    assert m.out(110) == 112


def test_seqmap_fold_on_ack_and_wrap():
    m = SeqMap()
    base = M32 - 5                 # edits straddle the 2^32 wrap
    m.add(base, 0, b"1234")
    m.add((base + 10) & M32, 2, b"")
    assert m.pending == 2
    assert m.out((base + 20) & M32) == (base + 20 + 4 - 2) & M32
    m.acked((base + 4 + 1) & M32)      # the insertion (and one byte) acknowledged
    assert m.pending == 1 and m.delta == 4
    m.acked((base + 4 + 12) & M32)
    assert m.pending == 0 and m.delta == 2
    assert m.out((base + 20) & M32) == (base + 22) & M32


def test_seqmap_refuses_overlap_and_accepts_the_same_edit_twice():
    m = SeqMap()
    m.add(100, 4, b"ab")
    m.add(100, 4, b"ab")  # the same again: fine
    with pytest.raises(ValueError):
        m.add(102, 1, b"x")
    with pytest.raises(ValueError):
        m.add(100, 0, b"")
    for i in range(63):
        m.add(1000 + 10 * i, 1, b"")
    with pytest.raises(ValueError):
        m.add(5000, 1, b"")


@st.composite
def edited_streams(draw):
    n = draw(st.integers(1, 400))
    raw = draw(st.binary(min_size=n, max_size=n))
    base = draw(st.sampled_from([0, 1000, M32 - 150, 0x7FFFFFF0]))
    edits, pos = [], 0
    while pos < n and len(edits) < 8:
        gap = draw(st.integers(0, 60))
        start = pos + gap
        if start >= n:
            break
        kind = draw(st.sampled_from(["ins", "after", "chomp", "replace"]))
        if kind == "after":
            if start - 1 < pos:  # its region [start-1, start) must be clear
                pos = start + 1
                continue
            edits.append((start, 0, draw(st.binary(min_size=1, max_size=20)), True))
            pos = start + 1  # its region is [start-1, start): keep the next clear of it
            continue
        dele = 0 if kind == "ins" else draw(st.integers(1, min(30, n - start)))
        ins = b"" if kind == "chomp" else draw(st.binary(min_size=1, max_size=20))
        edits.append((start, dele, ins, False))
        pos = start + max(dele, 1)
    cuts = sorted(set(draw(st.lists(st.integers(1, n - 1), max_size=12)))) if n > 1 else []
    return raw, base, edits, [0] + cuts + [n]


def _apply(raw, edits):
    out, cur = bytearray(), 0
    for start, dele, ins, _after in edits:
        out += raw[cur:start] + ins
        cur = start + dele
    return bytes(out + raw[cur:])


def _acked_raw_end(edits, b):
    """Raw end the sender should hear when the receiver has everything up
    to a segment ending at raw b: b, moved past bytes removed right there
    (the receiver needs them no more)."""
    exp = b
    for s, d, ins, _ in edits:
        if d and (s < exp < s + d or (s == exp and not ins)):
            exp = s + d
    return exp


@settings(max_examples=300, deadline=None)
@given(edited_streams())
def test_seqmap_any_segmentation_rebuilds_the_edited_stream(case):
    """Every raw segment lands at its place in the edited stream, whatever
    the segmentation, and acknowledging a segment's wire end gives back its
    raw end (or the end of the bytes removed right there)."""
    raw, base, edits, bounds = case
    m = SeqMap()
    for start, dele, ins, after in edits:
        m.add((base + start) & M32, dele, ins, after)
    wire = _apply(raw, edits)
    covered = bytearray(len(wire))
    for a, b in itertools.pairwise(bounds):
        wseq, pay = m.rewrite((base + a) & M32, raw[a:b])
        off = (wseq - base) & M32
        assert wire[off:off + len(pay)] == pay
        covered[off:off + len(pay)] = b"\1" * len(pay)
        back = (m.inn((wseq + len(pay)) & M32) - base) & M32
        assert back == _acked_raw_end(edits, b)
    assert all(covered), "the segments cover the whole edited stream"


# ---------------------------------------------------------------- the engine


def inline_engine(*monitors, checksum="verify"):
    eng = mos.Engine(mos.Config(checksum=checksum))
    eng.collect = True
    eng.set_peers([SERVER_PORT, CLIENT_PORT])
    for m in monitors:
        eng.attach(m)
    return eng


def feed_so_far(eng, conv):
    """Feed the frames conv holds (a handshake, say) and drop their output."""
    for _, fr in conv.frames:
        from_client = dpkt.ethernet.Ethernet(fr).data.data.sport == conv.client[1]
        eng.feed(fr, 1.0, iface=CLIENT_PORT if from_client else SERVER_PORT)
    eng.take_output()


def send(eng, conv, who, flags, payload=b"", **kw):
    """Feed one segment; return what left the middlebox (parsed TCP) or None."""
    frame = conv.packet(who, flags, payload, **kw)
    eng.feed(frame, conv.ts, iface=CLIENT_PORT if who == "c" else SERVER_PORT)
    out = [(k, d) for k, _, d in eng.take_output()]
    assert len(out) == 1
    kind, data = out[0]
    if kind != "fwd":
        return None
    d = _native.decode(1, data)
    assert d["tcp_csum_ok"] in (1, True) and d["ip_csum_ok"] in (1, True, -1, None)
    return dpkt.ethernet.Ethernet(data).data.data


REQ = b"GET /index.html HTTP/1.1\r\nHost: example\r\n\r\n"
HDR = b"X-Mos: inserted\r\n"


def editing_monitor(edit):
    """(monitor, errors): edit(packet) on every packet with payload the server
    receives; the ValueErrors it raises are collected."""
    mon = mos.Monitor()
    errors = []

    @mon.on(Event.PKT_IN, side=Side.SERVER)
    def h(flow, side, event):
        if flow.packet.payload:
            try:
                edit(flow.packet)
            except ValueError as e:
                errors.append(str(e))

    return mon, errors


def header_inserter():
    def add_header(pkt):
        if pkt.payload.startswith(b"GET "):
            pkt.insert(pkt.payload.index(b"\r\n") + 2, HDR)

    return editing_monitor(add_header)


@pytest.mark.parametrize("ipv", [4, 6])
def test_insert_translates_both_ways_and_the_flow_closes_normally(ipv):
    mon, errors = header_inserter()
    ends = []
    mon.on(Event.CONN_END, lambda f, s, e: ends.append(f.event_info.reason), side=Side.CLIENT)
    eng = inline_engine(mon)
    c = Conv() if ipv == 4 else Conv(client=(CLIENT6, 40000), server=(SERVER6, 80))
    c.handshake()
    feed_so_far(eng, c)
    d = len(HDR)
    raw1 = c.cisn + 1
    t = send(eng, c, "c", F.TH_ACK | F.TH_PUSH, REQ)
    assert t.seq == raw1
    assert t.data == REQ.replace(b"\r\n", b"\r\n" + HDR, 1)
    # a retransmission of the request is edited the same way (the handler's
    # identical edit is no error)
    t = send(eng, c, "c", F.TH_ACK | F.TH_PUSH, REQ, seq=raw1)
    assert t.seq == raw1 and t.data == REQ.replace(b"\r\n", b"\r\n" + HDR, 1)
    # the server acknowledges what it got; the client hears its own numbers
    t = send(eng, c, "s", F.TH_ACK, ack=raw1 + len(REQ) + d)
    assert t.ack == raw1 + len(REQ)
    # a SACK block from the server (wire numbers) reaches the client raw
    sack = dpkt.tcp.TCP_OPT_SACK
    opt = bytes([1, 1, sack, 10]) + (raw1 + len(REQ) + d + 100).to_bytes(4, "big") + \
        (raw1 + len(REQ) + d + 200).to_bytes(4, "big")
    t = send(eng, c, "s", F.TH_ACK, ack=raw1 + len(REQ) + d, opts=opt)
    edges = [int.from_bytes(t.opts[4 + 4 * k: 8 + 4 * k], "big") for k in range(2)]
    assert edges == [raw1 + len(REQ) + 100, raw1 + len(REQ) + 200]
    # the client's next bytes move up by the insertion
    t = send(eng, c, "c", F.TH_ACK | F.TH_PUSH, b"more")
    assert t.seq == raw1 + len(REQ) + d and t.data == b"more"
    # once acknowledged, a stale copy lands wholly below what the server has
    t = send(eng, c, "c", F.TH_ACK | F.TH_PUSH, REQ, seq=raw1)
    assert t.seq + len(t.data) <= raw1 + len(REQ) + d
    assert errors == []
    # the server's data and acknowledgements; then both close
    t = send(eng, c, "s", F.TH_ACK | F.TH_PUSH, b"HTTP/1.1 200 OK\r\n\r\n",
             ack=raw1 + len(REQ) + d + 4)
    assert t.ack == raw1 + len(REQ) + 4
    t = send(eng, c, "c", F.TH_FIN | F.TH_ACK)
    fin_raw = raw1 + len(REQ) + 4
    assert t.seq == fin_raw + d
    t = send(eng, c, "s", F.TH_FIN | F.TH_ACK, ack=fin_raw + d + 1)
    assert t.ack == fin_raw + 1
    send(eng, c, "c", F.TH_ACK)
    assert ends == [mos.EndReason.CLOSE]
    cnt = eng.counters()
    assert cnt["rewritten"] >= 8 and cnt["rewrite_failed"] == 0


def test_chomp_shortens_the_response_and_acks_are_raised_back():
    mon = mos.Monitor()

    @mon.on(Event.PKT_IN, side=Side.CLIENT)
    def cut(flow, side, event):
        pkt = flow.packet
        i = pkt.payload.find(b"secret")
        if i >= 0:
            pkt.chomp(i, 6)

    eng = inline_engine(mon)
    c = Conv()
    c.handshake()
    feed_so_far(eng, c)
    s1 = c.sisn + 1
    body = b"HTTP/1.0 200 OK\r\n\r\nthe secret word"
    t = send(eng, c, "s", F.TH_ACK | F.TH_PUSH, body)
    assert t.data == body.replace(b"secret", b"") and t.seq == s1
    t = send(eng, c, "c", F.TH_ACK, ack=s1 + len(body) - 6)
    assert t.ack == s1 + len(body)
    t = send(eng, c, "s", F.TH_ACK | F.TH_PUSH, b"!")
    assert t.seq == s1 + len(body) - 6


def test_reset_after_an_edit_uses_the_receivers_numbers():
    mon, _ = header_inserter()

    @mon.on(Event.PKT_IN, side=Side.SERVER)  # packets the server receives
    def kill(flow, side, event):
        if flow.packet.payload == b"bye":
            flow.reset()

    eng = inline_engine(mon)
    c = Conv()
    c.handshake()
    feed_so_far(eng, c)
    raw1 = c.cisn + 1
    send(eng, c, "c", F.TH_ACK | F.TH_PUSH, REQ)
    send(eng, c, "s", F.TH_ACK, ack=raw1 + len(REQ) + len(HDR))
    frame = c.packet("c", F.TH_ACK | F.TH_PUSH, b"bye")
    eng.feed(frame, c.ts, iface=CLIENT_PORT)
    out = eng.take_output()
    rst_to_server = [dpkt.ethernet.Ethernet(d).data.data for k, i, d in out
                     if k == "inject" and i == SERVER_PORT]
    # the server expects the byte after the request as it received it
    assert raw1 + len(REQ) + len(HDR) in {t.seq for t in rst_to_server}


def test_a_segment_grown_past_the_mss_leaves_in_pieces():
    mon = mos.Monitor()

    @mon.on(Event.PKT_IN, side=Side.SERVER)
    def pad(flow, side, event):
        if len(flow.packet.payload) == 1400:
            flow.packet.insert(700, b"+" * 600)

    eng = inline_engine(mon)
    c = Conv()
    c.syn()
    c.synack(opts=b"\x02\x04\x05\xb4")  # the server's MSS: 1460
    c.ack("c")
    feed_so_far(eng, c)
    raw1 = c.cisn + 1
    body = bytes(range(200)) * 7
    for attempt in range(2):  # the original, then a retransmission: cut alike
        frame = c.packet("c", F.TH_ACK | F.TH_PUSH, body, seq=raw1)
        eng.feed(frame, c.ts, iface=CLIENT_PORT)
        out = eng.take_output()
        assert [k for k, _, _ in out] == ["fwd", "fwd"]
        ips = [dpkt.ethernet.Ethernet(d).data for _, _, d in out]
        assert [ip.data.seq for ip in ips] == [raw1, raw1 + 1460]
        assert b"".join(ip.data.data for ip in ips) == body[:700] + b"+" * 600 + body[700:]
        assert [len(ip) for ip in ips] == [1500, 40 + 540]
        assert [bool(ip.data.flags & F.TH_PUSH) for ip in ips] == [False, True]
        assert ips[1].id == (ips[0].id + 1) & 0xFFFF
        for _, _, d in out:
            dd = _native.decode(1, d)
            assert dd["tcp_csum_ok"] in (1, True) and dd["ip_csum_ok"] in (1, True)
    t = send(eng, c, "s", F.TH_ACK, ack=raw1 + 2000)
    assert t.ack == raw1 + 1400
    assert eng.counters()["split"] == 2


def test_mtu_is_checked():
    eng = mos.Engine()
    assert eng.mtu == 1500
    eng.mtu = 9000
    assert eng.mtu == 9000
    with pytest.raises(ValueError, match="576..65535"):
        eng.mtu = 100


def _edit_error(edit):
    mon, errors = editing_monitor(edit)
    eng = inline_engine(mon)
    c = Conv()
    c.handshake()
    c.send("c", b"x" * 1000)
    c.send("c", b"x" * 1000, seq=c.cisn + 1)  # a retransmission
    for ts, fr in c.frames:
        eng.feed(fr, ts, iface=CLIENT_PORT if dpkt.ethernet.Ethernet(fr).data.data.sport == 40000
                 else SERVER_PORT)
    return errors


def test_edits_that_cannot_work_are_refused_with_the_reason():
    errs = _edit_error(lambda p: p.insert(0, b"y" * 65000))
    assert errs and "65535" in errs[0]
    errs = _edit_error(lambda p: p.chomp(990, 20))
    assert errs and "not inside" in errs[0]
    # the retransmission cannot take an edit the original did not have
    seen = []

    def once(p):
        seen.append(1)
        p.insert(len(seen), b"z")

    errs = _edit_error(once)
    assert len(errs) == 1 and "sent before" in errs[0]
    errs = _edit_error(lambda p: (p.chomp(10, 5), p.insert(12, b"q")))
    assert errs and "overlaps" in errs[0]


def test_flows_without_edits_are_forwarded_byte_for_byte():
    """Another flow's edits leave this one's frames untouched."""
    mon, _ = header_inserter()
    eng = inline_engine(mon)
    rng = random.Random(7)
    frames = []
    for port, payload in ((40000, REQ), (40001, b"POST / HTTP/1.1\r\n\r\n" + bytes(rng.randbytes(300)))):
        c = Conv(client=("198.18.0.1", port))
        c.handshake()
        c.send("c", payload)
        c.ack("s")
        frames += [(fr, port) for _, fr in c.frames]
    for fr, port in frames:
        t = dpkt.ethernet.Ethernet(fr).data.data
        eng.feed(fr, 1.0, iface=CLIENT_PORT if t.sport == port else SERVER_PORT)
    out = eng.take_output()
    plain = [d for (k, _, d), (fr, port) in zip(out, frames) if port == 40001]
    assert plain == [fr for fr, port in frames if port == 40001]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 120), st.integers(0, 255), st.integers(14, 140)),
                min_size=1, max_size=6))
def test_corrupt_frames_of_an_edited_flow_never_crash(mutations):
    """Truncated or corrupted frames of a flow with edits: forwarded as they
    are, dropped or rewritten; never a crash, and every frame accounted for."""
    mon, _ = header_inserter()
    eng = inline_engine(mon, checksum="ignore")  # corrupt frames reach the flow
    c = Conv()
    c.handshake()
    feed_so_far(eng, c)
    send(eng, c, "c", F.TH_ACK | F.TH_PUSH, REQ)
    base = c.packet("c", F.TH_ACK | F.TH_PUSH, b"after the edit " * 4)
    fed = 0
    for pos, val, cut in mutations:
        fr = bytearray(base)
        fr[pos % len(fr)] = val
        eng.feed(bytes(fr[:cut]), c.ts, iface=CLIENT_PORT)
        fed += 1
    out = eng.take_output()
    assert len(out) == fed
    for kind, _, data in out:
        assert kind in ("fwd", "drop")


# ---------------------------------------------------------------- header edits


def _one_packet_edit(edit, payload=b"GET / HTTP/1.0\r\n\r\n", frame_fn=None):
    """Feed a handshake and one client data packet whose handler runs edit(pkt);
    return the frame forwarded for that packet (or the error)."""
    mon, errors = editing_monitor(edit)
    eng = inline_engine(mon)
    c = Conv()
    c.handshake()
    feed_so_far(eng, c)
    frame = c.packet("c", F.TH_ACK | F.TH_PUSH, payload)
    if frame_fn:
        frame = frame_fn(frame)
    eng.feed(frame, c.ts, iface=CLIENT_PORT)
    out = eng.take_output()
    return (out[0][2] if out else None), errors


def test_tcp_option_inserted_and_the_header_length_follows():
    def add_nops(pkt):
        pkt.insert(20, b"\x01\x01\x01\x01", where="tcp")
        pkt.overwrite(0, b"PUT", where="payload")   # lands on the moved payload

    out, errors = _one_packet_edit(add_nops)
    assert errors == []
    ip = dpkt.ethernet.Ethernet(out).data
    assert ip.data.off == 6 and ip.data.opts == b"\x01\x01\x01\x01"
    assert ip.data.data == b"PUT / HTTP/1.0\r\n\r\n" and ip.len == 20 + 24 + 18
    d = _native.decode(1, out)
    assert d["tcp_csum_ok"] in (1, True) and d["ip_csum_ok"] in (1, True)


def test_ipv4_option_insert_and_vlan_tag_chomp():
    out, errors = _one_packet_edit(lambda p: p.insert(20, b"\x01\x01\x01\x00", where="ip"))
    assert errors == []
    ip = dpkt.ethernet.Ethernet(out).data
    assert ip.hl == 6 and ip.len == 24 + 20 + 18
    assert _native.decode(1, out)["ip_csum_ok"] in (1, True)

    def tagged(frame):
        return frame[:12] + b"\x81\x00\x00\x07" + frame[12:]

    out, errors = _one_packet_edit(lambda p: p.chomp(12, 4, where="frame"), frame_fn=tagged)
    assert errors == [] and out[12:14] == b"\x08\x00"
    assert dpkt.ethernet.Ethernet(out).data.data.data == b"GET / HTTP/1.0\r\n\r\n"


def test_header_edits_that_break_the_header_are_refused():
    _, errors = _one_packet_edit(lambda p: p.insert(20, b"\x01\x01", where="tcp"))
    assert errors and "multiple of 4" in errors[0]
    _, errors = _one_packet_edit(lambda p: p.insert(20, b"\x01" * 44, where="tcp"))
    assert errors and "from 20 to 60" in errors[0]
    _, errors = _one_packet_edit(lambda p: p.chomp(10, 30, where="ip"))
    assert errors and "not inside" in errors[0]
    _, errors = _one_packet_edit(lambda p: p.insert(0, b"x", where="udp"))
    assert errors and "where must be" in errors[0]


def test_path_mtu_is_the_smallest_port_mtu():
    from mos.runtime.ports import path_mtu as _path_mtu

    class P:
        def __init__(self, mtu):
            self.mtu = mtu

    assert _path_mtu([P(9000), P(1500)]) == 1500
    assert _path_mtu([P(None), P(9000)]) == 9000
    assert _path_mtu([object()]) == 1500
    assert _path_mtu([P(100)]) == 1500  # nonsense is ignored


def test_payload_edits_do_nothing_where_nothing_is_forwarded():
    """On a capture (no ports, no collect) an inserting handler changes no
    numbers: the flow is followed and closes as recorded."""
    mon, errors = header_inserter()
    ends = []
    mon.on(Event.CONN_END, lambda f, s, e: ends.append(f.event_info.reason), side=Side.CLIENT)
    eng = mos.Engine(mos.Config(checksum="verify"))
    eng.attach(mon)
    c = Conv()
    c.handshake()
    c.send("c", REQ)
    c.send("s", b"HTTP/1.1 200 OK\r\n\r\n")
    c.fin("c")
    c.fin("s")
    c.ack("c")
    for ts, fr in c.frames:
        eng.feed(fr, ts)
    assert errors == [] and ends == [mos.EndReason.CLOSE]
    assert eng.counters()["rewritten"] == 0 and eng.counters()["rexmit"] == 0


def test_rewrite_segment_refuses_a_small_buffer_when_only_the_peer_has_edits():
    """Regression (fuzzing issue, finding 3): with edits only in the other
    direction the payload was copied whole even when it did not fit in
    ``cap``; rewrite.h promises a refusal."""
    own, peer = SeqMap(), SeqMap()
    peer.add(7000, 0, b"xyz")                    # the peer's bytes grew by 3 before 7000
    seg = N.tcp(40000, 80, 1000, 7010, 0x10, 500, payload=b"p" * 100)
    frame = N.eth(N.ip4(payload=seg))
    with pytest.raises(ValueError, match="cannot be rewritten"):
        own.rewrite_frame(frame, peer, cap=len(frame) - 50)
    out = own.rewrite_frame(frame, peer)         # room enough: the ack maps back by 3
    t = dpkt.ethernet.Ethernet(out).data.data
    assert t.ack == 7007 and t.data == b"p" * 100
    assert _native.decode(1, out)["tcp_csum_ok"] is True


def test_seqmap_empty_segment_inside_a_replaced_range_carries_nothing():
    """Regression (fuzz/regressions/seqmap): the rewrite of an empty segment
    whose number lies inside a replaced range returned the edit's new bytes,
    although the segment covers no byte of it (seqmap.h: a segment carries
    the edits of the bytes it holds)."""
    m = SeqMap()
    m.add(1000, 50, b"n" * 20)                   # raw [1000, 1050) becomes 20 new bytes
    assert m.rewrite(1010, b"") == (m.out(1010), b"")
    assert m.rewrite(1000, b"") == (1000, b"")
    wseq, pay = m.rewrite(1010, b"x")            # one byte of the range: all the new bytes
    assert (wseq, pay) == (1000, b"n" * 20)
