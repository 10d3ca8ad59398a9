"""Event sequences of the monitor for the classic TCP conversations.

Each test drives the engine with a synthetic trace (tests/tcpconv.py) and
checks the events in order.  RFC 9293 section numbers name the transitions.
"""

import dpkt
import pytest
from tcpconv import Conv, Recorder, run_frames

import mos
from mos import Event, Hook, Side


def states(rec):
    return rec.states()


def test_clean_close_state_sequence_and_end():
    """RFC 9293 3.6 normal close: client FIN first; client ends in TIME_WAIT."""
    c = Conv()
    c.handshake()
    c.send("c", b"GET / HTTP/1.0\r\n\r\n")
    c.send("s", b"HTTP/1.0 200 OK\r\n\r\nhello")
    c.fin("c")
    c.ack("s")
    c.fin("s")
    c.ack("c")
    rec = Recorder()
    run_frames(c.frames, rec.mon)
    assert states(rec) == [
        ("CLIENT", "CLOSED->SYN_SENT"),
        ("SERVER", "LISTEN->SYN_RCVD"),
        ("CLIENT", "SYN_SENT->ESTABLISHED"),
        ("SERVER", "SYN_RCVD->ESTABLISHED"),
        ("CLIENT", "ESTABLISHED->FIN_WAIT_1"),
        ("SERVER", "ESTABLISHED->CLOSE_WAIT"),
        ("CLIENT", "FIN_WAIT_1->FIN_WAIT_2"),
        ("SERVER", "CLOSE_WAIT->LAST_ACK"),
        ("CLIENT", "FIN_WAIT_2->TIME_WAIT"),
        ("SERVER", "LAST_ACK->CLOSED"),
    ]
    ends = [(s, d) for e, h, s, d in rec.log if e == "CONN_END"]
    assert ends == [("CLIENT", "CLOSE"), ("SERVER", "CLOSE")]
    assert rec.names("CONN_START") == ["CONN_START", "CONN_START"]  # SEND and RECV hooks
    assert rec.data[Side.SERVER] == b"GET / HTTP/1.0\r\n\r\n"
    assert rec.data[Side.CLIENT] == b"HTTP/1.0 200 OK\r\n\r\nhello"
    # CONN_END is the last thing that happens to a flow
    assert rec.log[-1][0] == "CONN_END" and rec.log[-2][0] == "CONN_END"


def test_event_order_within_packet_send_hook_before_recv_hook():
    c = Conv()
    c.syn()
    rec = Recorder()
    run_frames(c.frames, rec.mon, close=False)
    assert rec.log == [
        ("CONN_START", "SEND", "CLIENT", None),
        ("TCP_STATE_CHANGE", "SEND", "CLIENT", "CLOSED->SYN_SENT"),
        ("PKT_IN", "SEND", "CLIENT", None),
        ("CONN_START", "RECV", "SERVER", None),
        ("TCP_STATE_CHANGE", "RECV", "SERVER", "LISTEN->SYN_RCVD"),
        ("PKT_IN", "RECV", "SERVER", None),
    ]


def test_established_rst_in_window_closes_both():
    """RFC 5961 3.2: an in-window RST ends the connection; its payload is not stream data."""
    c = Conv()
    c.handshake()
    c.send("c", b"hello")
    c.packet("s", 0x04 | 0x10, b"RSTDATA")
    rec = Recorder()
    run_frames(c.frames, rec.mon)
    assert states(rec)[-2:] == [("SERVER", "ESTABLISHED->CLOSED"), ("CLIENT", "ESTABLISHED->CLOSED")]
    assert [(s, d) for e, h, s, d in rec.log if e == "CONN_END"] == [("CLIENT", "RST"), ("SERVER", "RST")]
    assert rec.data[Side.CLIENT] == b""


def test_established_rst_out_of_window_keeps_flow():
    """RFC 5961 3.2: a RST outside the window is ignored (an ERROR event says so)."""
    c = Conv()
    c.handshake()
    c.packet("s", 0x04, seq=c.s.nxt + 10_000_000, advance=False)
    c.send("c", b"still here")
    rec = Recorder()
    run_frames(c.frames, rec.mon, close=False)
    errs = [d for e, h, s, d in rec.log if e == "ERROR"]
    assert errs and errs[0][0] == "RST_OUT_OF_WINDOW"
    assert "CONN_END" not in rec.names()
    assert rec.data[Side.SERVER] == b"still here"


def test_syn_sent_rst_acking_syn_refuses_connection():
    """RFC 9293 3.10.7.3: in SYN-SENT a RST is acceptable if it ACKs the SYN."""
    c = Conv()
    c.syn()
    c.packet("s", 0x04 | 0x10, seq=0, ack=c.cisn + 1, advance=False)
    rec = Recorder()
    run_frames(c.frames, rec.mon)
    assert [(s, d) for e, h, s, d in rec.log if e == "CONN_END"] == [("CLIENT", "RST"), ("SERVER", "RST")]


def test_syn_sent_rst_with_wrong_ack_is_ignored():
    c = Conv()
    c.syn()
    c.packet("s", 0x04 | 0x10, seq=0, ack=c.cisn + 7, advance=False)
    rec = Recorder()
    run_frames(c.frames, rec.mon, close=False)
    assert "CONN_END" not in rec.names()
    assert [d[0] for e, h, s, d in rec.log if e == "ERROR"] == ["RST_OUT_OF_WINDOW"]


def test_simultaneous_close_both_closing_then_time_wait():
    """RFC 9293 3.6 (Figure 13): both FINs cross; both ends pass CLOSING to TIME_WAIT."""
    c = Conv()
    c.handshake()
    s_rcv = c.s.rcv
    c.fin("c")                       # client FIN
    c.fin("s", ack=s_rcv)            # server FIN sent before it saw the client's FIN
    c.ack("c")                       # acks server FIN
    c.ack("s")                       # acks client FIN
    rec = Recorder()
    run_frames(c.frames, rec.mon)
    assert states(rec)[4:] == [
        ("CLIENT", "ESTABLISHED->FIN_WAIT_1"),
        ("SERVER", "ESTABLISHED->CLOSE_WAIT"),
        ("SERVER", "CLOSE_WAIT->CLOSING"),
        ("CLIENT", "FIN_WAIT_1->CLOSING"),
        ("SERVER", "CLOSING->TIME_WAIT"),
        ("CLIENT", "CLOSING->TIME_WAIT"),
    ]
    assert [(s, d) for e, h, s, d in rec.log if e == "CONN_END"] == [("CLIENT", "CLOSE"), ("SERVER", "CLOSE")]


def test_half_close_server_keeps_sending_after_client_fin():
    """RFC 9293 3.6: after a FIN one direction may still carry data."""
    c = Conv()
    c.handshake()
    c.send("c", b"request")
    c.fin("c")
    c.ack("s")
    c.send("s", b"response part 1;")
    c.send("s", b"part 2")
    c.ack("c")
    c.fin("s")
    c.ack("c")
    rec = Recorder()
    run_frames(c.frames, rec.mon)
    assert rec.data[Side.CLIENT] == b"response part 1;part 2"
    assert rec.data[Side.SERVER] == b"request"
    st = states(rec)
    assert ("CLIENT", "FIN_WAIT_1->FIN_WAIT_2") in st
    assert st[-2:] == [("CLIENT", "FIN_WAIT_2->TIME_WAIT"), ("SERVER", "LAST_ACK->CLOSED")]


def test_retransmitted_syn_raises_rexmit_not_second_conn_start():
    c = Conv()
    c.syn()
    c.packet("c", 0x02, seq=c.cisn, advance=False)
    rec = Recorder()
    run_frames(c.frames, rec.mon, close=False)
    assert rec.names("CONN_START", "REXMIT") == ["CONN_START", "CONN_START", "REXMIT"]


def test_data_retransmission_raises_rexmit_and_keeps_first_bytes():
    c = Conv()
    c.handshake()
    seq = c.c.nxt
    c.send("c", b"AAAA")
    c.send("c", b"BBBB", seq=seq, advance=False)
    rec = Recorder()
    run_frames(c.frames, rec.mon, close=False)
    assert "REXMIT" in rec.names()
    assert ("ERROR", "RECV", "SERVER", ("OVERLAP_DIFF", 0, 4)) in rec.log
    assert rec.data[Side.SERVER] == b"AAAA"


def _run_whole_capture(eng, frames):
    """One capture file run: the engine takes it in bursts of up to 256 frames."""
    import os
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".pcap", delete=False) as fh:
        w = dpkt.pcap.Writer(fh)
        for ts, fr in frames:
            w.writepkt(fr, ts)
    try:
        eng.run(fh.name)
    finally:
        os.unlink(fh.name)


def test_new_data_fires_for_each_packet_that_adds_in_order_bytes():
    """Per-event semantics (issue 8): CONN_NEW_DATA fires for every packet
    that makes new in-order bytes readable, and the handler sees the flow
    right after that packet, whether the frames come in one burst (a capture
    file) or one at a time."""
    c = Conv()
    c.handshake()
    for i in range(5):
        c.send("c", bytes([65 + i]) * 10)
    seen = {}
    for mode in ("burst", "frames"):
        eng = mos.Engine(mos.Config(checksum="verify"))
        mon = eng.attach(mos.Monitor())
        calls = seen[mode] = []
        mon.on(Event.CONN_NEW_DATA, lambda f, s, e, calls=calls: calls.append(
            (f.packet.ts, f.peek(s), f.server.received, f.client.snd_nxt)))
        if mode == "burst":
            _run_whole_capture(eng, c.frames)
        else:
            for ts, fr in c.frames:
                eng.feed(fr, ts)
            eng.close()
    assert seen["burst"] == seen["frames"]
    calls = seen["burst"]
    assert [d for _, d, _, _ in calls] == [bytes([65 + i]) * 10 for i in range(5)]
    assert [r for _, _, r, _ in calls] == [10, 20, 30, 40, 50]  # state right after each packet
    assert [t for t, _, _, _ in calls] == pytest.approx([ts for ts, _ in c.frames[3:]], abs=1e-6)


def test_data_in_syn_is_stream_offset_zero():
    """RFC 7413 (TFO): data in the SYN starts at ISN+1, offset 0."""
    c = Conv()
    c.packet("c", 0x02, b"early")
    c.synack()
    c.ack("c")
    c.send("c", b" data")
    rec = Recorder()
    run_frames(c.frames, rec.mon, close=False)
    assert rec.data[Side.SERVER] == b"early data"


def test_sequence_wraparound_keeps_stream_contiguous():
    """RFC 9293 3.4: sequence numbers are compared modulo 2^32."""
    c = Conv(cisn=0xFFFFFFF0)
    c.handshake()
    chunks = [bytes([65 + i]) * 7 for i in range(6)]  # crosses 2^32 after ~15 bytes
    for ch in chunks:
        c.send("c", ch)
    rec = Recorder()
    eng = run_frames(c.frames, rec.mon, close=False)
    assert rec.data[Side.SERVER] == b"".join(chunks)
    assert not [d for e, h, s, d in rec.log if e == "ERROR"]
    flow = eng.live_flows()[0]
    assert flow.server.received == 42
    assert flow.client.snd_nxt == (0xFFFFFFF0 + 1 + 42) & 0xFFFFFFFF


def test_reordered_segments_reassemble_in_order():
    c = Conv()
    c.handshake()
    base = c.c.nxt
    c.send("c", b"CCCC", seq=base + 8, advance=False)
    c.send("c", b"AAAA", seq=base, advance=False)
    c.send("c", b"BBBB", seq=base + 4, advance=False)
    rec = Recorder()
    run_frames(c.frames, rec.mon, close=False)
    assert rec.data[Side.SERVER] == b"AAAABBBBCCCC"


def test_ack_past_hole_declares_gap_and_moves_on():
    """The receiver acknowledged bytes the monitor never saw: a gap, reported
    once, at the next packet of the flow that does not bring them."""
    c = Conv()
    c.handshake()
    c.send("c", b"1111")
    c.send("c", b"2222", advance=True)   # captured...
    c.frames.pop()                        # ...or rather lost by the capture
    c.send("c", b"3333")
    c.ack("s")                            # server acks all 12 bytes
    c.send("s", b"ok")                    # the next packet: no late bytes came
    rec = Recorder()
    eng = run_frames(c.frames, rec.mon, close=False)
    assert ("ERROR", "RECV", "SERVER", ("GAP", 4, 4)) in rec.log
    assert rec.data[Side.SERVER] == b"11113333"
    assert eng.live_flows()[0].gaps(Side.SERVER) == [(4, 4)]


def test_late_segment_after_the_ack_that_covers_it_fills_its_hole():
    """Captures often carry a segment just after the ACK that covers it (two
    capture points, reordering before the tap): the hole waits for one more
    packet and the late bytes fill it; no gap (issue 8, fidelity)."""
    c = Conv()
    c.handshake()
    c.send("c", b"1111")
    late = c.send("c", b"2222")
    ts_late = c.frames.pop()
    c.send("c", b"3333")
    c.ack("s")                            # the ACK is captured before the data it covers
    c.frames.append((c.ts, late))         # ...which comes right after it
    c.ts += c.step
    c.send("c", b"4444")
    c.ack("s")
    rec = Recorder()
    run_frames(c.frames, rec.mon)
    assert not [x for x in rec.log if x[0] == "ERROR"]
    assert rec.data[Side.SERVER] == b"1111222233334444"
    assert ts_late[1] == late


def test_hole_filled_over_several_late_packets_waits_while_they_come():
    c = Conv()
    c.handshake()
    c.send("c", b"1111")
    lates = [c.send("c", b"2222"), c.send("c", b"3333")]
    del c.frames[-2:]
    c.send("c", b"4444")
    c.ack("s")
    for fr in lates:                      # two late segments, one after the other
        c.frames.append((c.ts, fr))
        c.ts += c.step
    c.ack("s")
    rec = Recorder()
    run_frames(c.frames, rec.mon)
    assert not [x for x in rec.log if x[0] == "ERROR"]
    assert rec.data[Side.SERVER] == b"1111222233334444"


def test_hole_never_filled_reported_at_flow_end():
    c = Conv()
    c.handshake()
    base = c.c.nxt
    c.send("c", b"AAAA")
    c.send("c", b"CCCC", seq=base + 8, advance=False)
    rec = Recorder()
    run_frames(c.frames, rec.mon)  # close() ends the flow: SHUTDOWN
    assert ("ERROR", "RECV", "SERVER", ("GAP", 4, 4)) in rec.log
    assert rec.data[Side.SERVER] == b"AAAACCCC"


def test_out_of_window_data_is_error_and_not_stored():
    c = Conv(wscale=False)
    c.s.win = 100          # the server offers 100 bytes from the start
    c.handshake()
    c.send("c", b"x" * 50)
    c.send("c", b"y" * 100)        # 50 bytes beyond the server's window
    rec = Recorder()
    run_frames(c.frames, rec.mon, close=False)
    errs = [d for e, h, s, d in rec.log if e == "ERROR"]
    assert ("OUT_OF_WINDOW", 100, 50) in errs
    assert rec.data[Side.SERVER] == b"x" * 50 + b"y" * 50


def test_buffer_overrun_reports_unread_bytes_lost():
    c = Conv()
    c.handshake()
    for i in range(4):
        c.send("c", bytes([48 + i]) * 1000)
    rec = Recorder(read=False)   # nobody reads
    run_frames(c.frames, rec.mon, config=mos.Config(buffer_size=2048, checksum="verify"), close=False)
    errs = [d for e, h, s, d in rec.log if e == "ERROR"]
    assert errs and all(e[0] == "OVERRUN" for e in errs)
    assert sum(b - a for _, a, b in errs) == 4000 - 2048  # all but the last 2048 bytes lost unread


def test_midstream_pickup_lower_port_is_server():
    c = Conv()
    c.handshake()
    c.frames.clear()
    c.send("s", b"response")
    c.send("c", b"more request")
    rec = Recorder()
    eng = run_frames(c.frames, rec.mon, config=mos.Config(midstream=True, checksum="verify"), close=False)
    f = eng.live_flows()[0]
    assert f.server_port == 80 and f.midstream
    assert rec.data[Side.CLIENT] == b"response"
    assert rec.data[Side.SERVER] == b"more request"


def test_midstream_off_makes_orphans():
    c = Conv()
    c.handshake()
    c.frames.clear()
    c.send("c", b"x")
    rec = Recorder()
    eng = run_frames(c.frames, rec.mon, close=False)
    assert rec.names() == ["ORPHAN"]
    assert eng.counters()["orphans"] == 1


def test_reordered_synack_before_syn_keeps_roles():
    """A SYN-ACK captured before its SYN must not make the server the client."""
    c = Conv()
    c.syn()
    c.synack()
    c.ack("c")
    c.frames[0], c.frames[1] = c.frames[1], c.frames[0]
    rec = Recorder()
    eng = run_frames(c.frames, rec.mon, config=mos.Config(midstream=True, checksum="verify"), close=False)
    f = eng.live_flows()[0]
    assert (f.client_port, f.server_port) == (40000, 80)
    assert f.client.state == mos.TcpState.ESTABLISHED
    assert f.server.state == mos.TcpState.ESTABLISHED


def test_idle_timeout_fires_timeout_then_conn_end():
    c = Conv()
    c.handshake()
    rec = Recorder()
    eng = run_frames(c.frames, rec.mon, config=mos.Config(tcp_timeout=5.0, checksum="verify"), close=False)
    eng.advance(c.ts + 10)
    tail = [(e, s, d) for e, h, s, d in rec.log][-4:]
    assert tail == [("TIMEOUT", "CLIENT", "TIMEOUT"), ("TIMEOUT", "SERVER", "TIMEOUT"),
                    ("CONN_END", "CLIENT", "TIMEOUT"), ("CONN_END", "SERVER", "TIMEOUT")]


def test_flow_cap_evicts_least_recently_active():
    convs = [Conv(client=("198.18.0.1", 40000 + i)) for i in range(3)]
    frames = []
    for i, c in enumerate(convs):
        c.ts = 1.0 + i
        c.syn()
        frames += c.frames
    rec = Recorder()
    eng = run_frames(frames, rec.mon, config=mos.Config(max_flows=2, checksum="verify"), close=False)
    ends = [(s, d) for e, h, s, d in rec.log if e == "CONN_END"]
    assert ends == [("CLIENT", "EVICT"), ("SERVER", "EVICT")]
    assert sorted(f.client_port for f in eng.live_flows()) == [40001, 40002]
    assert eng.counters()["ended"]["evict"] == 1


def test_bad_checksum_verify_drops_packet_with_error():
    c = Conv()
    c.handshake()
    frame = bytearray(c.send("c", b"payload"))
    frame[-1] ^= 0xFF
    c.frames[-1] = (c.frames[-1][0], bytes(frame))
    rec = Recorder()
    eng = run_frames(c.frames, rec.mon, close=False)
    assert ("ERROR", "RECV", "SERVER", ("BAD_CHECKSUM", 0, 0)) in rec.log
    assert rec.data[Side.SERVER] == b""
    assert eng.counters()["bad_checksum"] == 1
    eng2 = run_frames(c.frames, Recorder().mon, config=mos.Config(checksum="ignore"), close=False)
    assert eng2.counters()["bad_checksum"] == 0


def test_port_reuse_new_syn_after_close_starts_new_flow():
    c = Conv()
    c.handshake()
    c.fin("c")
    c.fin("s")
    c.ack("c")  # server's last ACK of our FIN missing: flow not fully closed
    c2 = Conv(cisn=999999, ts=c.ts)
    c2.syn()
    rec = Recorder()
    run_frames(c.frames + c2.frames, rec.mon, close=False)
    ends = [(s, d) for e, h, s, d in rec.log if e == "CONN_END"]
    assert ends[:2] == [("CLIENT", "REUSE"), ("SERVER", "REUSE")] or ends[:2] == [("CLIENT", "CLOSE"), ("SERVER", "CLOSE")]
    assert rec.names("CONN_START").count("CONN_START") == 4


def test_ipv6_flow_tracked():
    c = Conv(client=("2001:db8::1", 40000), server=("2001:db8::2", 80))
    c.handshake()
    c.send("c", b"v6 data")
    rec = Recorder()
    eng = run_frames(c.frames, rec.mon, close=False)
    f = eng.live_flows()[0]
    assert f.client_addr == "[2001:db8::1]:40000"
    assert rec.data[Side.SERVER] == b"v6 data"


def test_invalid_event_hook_pair_is_refused():
    mon = mos.Monitor()
    with pytest.raises(mos.RegistrationError, match="CONN_NEW_DATA never fires at hook SEND"):
        mon.on(Event.CONN_NEW_DATA, lambda *a: None, hook=Hook.SEND)
    with pytest.raises(mos.RegistrationError, match="ORPHAN never fires at hook RECV"):
        mon.on(Event.ORPHAN, lambda *a: None, hook=Hook.RECV)
    with pytest.raises(mos.RegistrationError, match="not callable"):
        mon.on(Event.PKT_IN, 42)


def test_ppeek_reads_absolute_offsets_without_moving():
    c = Conv()
    c.handshake()
    c.send("c", b"0123456789")
    eng = run_frames(c.frames, close=False)
    f = eng.live_flows()[0]
    assert f.ppeek(Side.SERVER, 3, 4) == b"3456"
    assert f.ppeek(Side.SERVER, 8, 100) == b"89"
    assert f.ppeek(Side.SERVER, 50, 4) == b""
    assert f.peek(Side.SERVER, 5) == b"01234"
    assert f.peek(Side.SERVER) == b"56789"
    assert f.peek(Side.SERVER) == b""


def test_flow_used_after_end_raises_flow_closed():
    c = Conv()
    c.handshake()
    kept = []
    mon = mos.Monitor()
    mon.on(Event.CONN_START, lambda f, s, e: kept.append(f))
    run_frames(c.frames, mon)
    with pytest.raises(mos.FlowClosedError):
        kept[0].peek(Side.SERVER)
    assert kept[0].end_reason is mos.EndReason.SHUTDOWN


def test_idle_timeout_spares_flow_active_since_its_last_lru_move():
    """The LRU list is refreshed lazily (every 50 ms of activity at most):
    a flow active just now must not time out with the idle one before it."""
    a = Conv(client=("198.18.0.1", 40001))
    b = Conv(client=("198.18.0.1", 40002))
    a.ts, b.ts = 0.000, 0.001
    a.syn()
    b.syn()
    a.ts = 0.010
    a.packet("c", 0x02, seq=a.cisn, advance=False)   # A again, within the LRU grain
    rec = Recorder()
    eng = run_frames(sorted(a.frames + b.frames), rec.mon,
                     config=mos.Config(tcp_timeout=1.0, checksum="verify"), close=False)
    eng.advance(1.005)
    assert [f.client_port for f in eng.live_flows()] == [40001]
    eng.advance(1.02)
    assert eng.live_flows() == []


def test_periodic_timer_from_conn_start_keeps_its_period_exactly():
    """A timer set in CONN_START counts from the SYN's capture time (not from
    the end of the burst) and a periodic one fires every period exactly, in
    order with the packets, whole capture or frame by frame alike."""
    c = Conv(step=0.25)
    c.handshake()                      # SYN at 1.0
    for i in range(20):                # data every 0.25 s up to t = 6.0
        c.send("c", b"x")
    fired = {}
    for mode in ("burst", "frames"):
        eng = mos.Engine(mos.Config(checksum="verify"))
        mon = eng.attach(mos.Monitor())
        ticks = fired[mode] = []

        def start(flow, side, ev, ticks=ticks, eng=eng):
            flow.set_timer(1.0, lambda fl: ticks.append((round(eng.now, 9),
                                                         fl.server.received)), periodic=True)

        mon.on(Event.CONN_START, start)
        if mode == "burst":
            _run_whole_capture(eng, c.frames)
        else:
            for ts, fr in c.frames:
                eng.feed(fr, ts)
            eng.close()
    assert fired["burst"] == fired["frames"]
    assert [t for t, _ in fired["burst"]] == [2.0, 3.0, 4.0, 5.0, 6.0]
    # the timer due at 2.0 runs after the packet stamped 2.0 and before the
    # first later one: the bytes sent at 1.75 and 2.0 are in
    assert fired["burst"][0][1] == 2
