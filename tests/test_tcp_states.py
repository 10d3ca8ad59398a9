"""The TCP endpoint module (mos/tcp/endpoint.h) per state, as smoltcp tests
its socket: an endpoint is built directly in a state, fed one segment or
one action, and its new state and effects are checked.

Both roles of the one transition table are covered:
- the monitor's passive model, whose inputs are inferred from the wire
  (a segment a side sent, then the same segment received by the other);
- the end host's active use: user calls (open, close) and segments received.

Sections cited are RFC 9293 3.10.7.x (event processing, "SEGMENT ARRIVES")
unless another RFC is named.
"""

import pytest

from mos.tcp._tcp import INPUTS, STATES, Endpoint, Segment, transition_table

C = 1000    # the client's (active opener's) ISS
S = 5000    # the server's (passive opener's) ISS
WND = 1000  # receive window used by the fixtures


def recv(ep, peer, seg, now=0):
    """peer sends seg to ep, as the monitor models it: the sender's model
    first (it maps sequence numbers to offsets), then the receiver's."""
    peer.sent(seg, ep)
    return ep.input(seg, peer, now)


# ---------------------------------------------------------------- fixtures
# each returns (ep, peer): ep is in the named state, peer in the state the
# handshake or close left it in.  ep is the client unless said otherwise.

def ep_closed(role="monitor"):
    return Endpoint("CLOSED", role=role), Endpoint("LISTEN", passive=True)


def ep_listen(role="monitor"):
    return Endpoint("LISTEN", role=role, passive=True), Endpoint("CLOSED")


def ep_syn_sent(role="monitor"):
    return Endpoint("SYN_SENT", role=role, iss=C), Endpoint("LISTEN", passive=True)


def ep_syn_rcvd(role="monitor"):
    """The server after the client's SYN and its own SYN-ACK."""
    return (Endpoint("SYN_RCVD", role=role, passive=True, iss=S, rcv_nxt=C + 1, rcv_wnd=WND),
            Endpoint("SYN_SENT", iss=C))


def ep_established(role="monitor"):
    return (Endpoint("ESTABLISHED", role=role, iss=C, rcv_nxt=S + 1, rcv_wnd=WND),
            Endpoint("ESTABLISHED", passive=True, iss=S, rcv_nxt=C + 1, rcv_wnd=WND))


def ep_fin_wait_1(role="monitor"):
    """The client sent FIN (seq C+1); the server has not acknowledged it."""
    return (Endpoint("FIN_WAIT_1", role=role, iss=C, snd_nxt=C + 2, fin_seq=C + 1,
                     rcv_nxt=S + 1, rcv_wnd=WND),
            Endpoint("ESTABLISHED", passive=True, iss=S, rcv_nxt=C + 1, rcv_wnd=WND))


def ep_fin_wait_2(role="monitor"):
    return (Endpoint("FIN_WAIT_2", role=role, iss=C, snd_nxt=C + 2, fin_seq=C + 1,
                     rcv_nxt=S + 1, rcv_wnd=WND),
            Endpoint("CLOSE_WAIT", passive=True, iss=S, rcv_nxt=C + 2, rcv_wnd=WND))


def ep_closing(role="monitor"):
    """Both sent FIN and got the other's FIN; neither FIN acknowledged."""
    return (Endpoint("CLOSING", role=role, iss=C, snd_nxt=C + 2, fin_seq=C + 1,
                     rcv_nxt=S + 2, rcv_wnd=WND),
            Endpoint("FIN_WAIT_1", passive=True, iss=S, snd_nxt=S + 2, fin_seq=S + 1,
                     rcv_nxt=C + 1, rcv_wnd=WND))


def ep_time_wait(role="monitor"):
    return (Endpoint("TIME_WAIT", role=role, iss=C, snd_nxt=C + 2, fin_seq=C + 1,
                     rcv_nxt=S + 2, rcv_wnd=WND),
            Endpoint("LAST_ACK", passive=True, iss=S, snd_nxt=S + 2, fin_seq=S + 1,
                     rcv_nxt=C + 2, rcv_wnd=WND))


def ep_close_wait(role="monitor"):
    """The client got the server's FIN (seq S+1) and acknowledged it."""
    return (Endpoint("CLOSE_WAIT", role=role, iss=C, rcv_nxt=S + 2, rcv_wnd=WND),
            Endpoint("FIN_WAIT_1", passive=True, iss=S, snd_nxt=S + 2, fin_seq=S + 1,
                     rcv_nxt=C + 1, rcv_wnd=WND))


def ep_last_ack(role="monitor"):
    return (Endpoint("LAST_ACK", role=role, iss=C, snd_nxt=C + 2, fin_seq=C + 1,
                     rcv_nxt=S + 2, rcv_wnd=WND),
            Endpoint("FIN_WAIT_2", passive=True, iss=S, snd_nxt=S + 2, fin_seq=S + 1,
                     rcv_nxt=C + 1, rcv_wnd=WND))


FIXTURES = {
    "CLOSED": ep_closed, "LISTEN": ep_listen, "SYN_SENT": ep_syn_sent, "SYN_RCVD": ep_syn_rcvd,
    "ESTABLISHED": ep_established, "FIN_WAIT_1": ep_fin_wait_1, "FIN_WAIT_2": ep_fin_wait_2,
    "CLOSING": ep_closing, "TIME_WAIT": ep_time_wait, "CLOSE_WAIT": ep_close_wait,
    "LAST_ACK": ep_last_ack,
}


def test_fixtures_build_the_state_they_name():
    for name, make in FIXTURES.items():
        for role in ("monitor", "host"):
            assert make(role)[0].state == name


# ---------------------------------------------------------------- receive rules, monitor role
# (state, segment the peer sends, expected transitions, other expected effects, RFC)
# the segment is a function of (ep, peer) so it can use their numbers

def _ack(peer):
    return peer.snd_nxt


RECEIVE_CASES = [
    # 3.10.7.2 LISTEN
    ("listen_syn_to_syn_rcvd", "LISTEN", lambda: Segment(C, flags="S"),
     [("LISTEN", "SYN_RCVD")], {}, "RFC 9293 3.10.7.2: a SYN in LISTEN makes SYN-RECEIVED"),
    ("listen_fin_without_ack_ignored", "LISTEN", lambda: Segment(C, flags="F"),
     [], {"fin": False}, "RFC 9293 3.10.7.4 fifth: a segment without ACK is dropped"),
    # 3.10.7.3 SYN-SENT
    ("syn_sent_synack_to_established", "SYN_SENT", lambda: Segment(S, C + 1, "SA"),
     [("SYN_SENT", "ESTABLISHED")], {}, "RFC 9293 3.10.7.3: SYN-ACK of our SYN"),
    ("syn_sent_synack_ack_of_iss_ignored", "SYN_SENT", lambda: Segment(S, C, "SA"),
     [], {}, "RFC 9293 3.10.7.3 first: SEG.ACK =< ISS is not acceptable"),
    ("syn_sent_syn_to_syn_rcvd", "SYN_SENT", lambda: Segment(S, 0, "S"),
     [("SYN_SENT", "SYN_RCVD")], {}, "RFC 9293 3.10.7.3 fourth, Figure 8: simultaneous open"),
    ("syn_sent_ack_of_syn_to_established", "SYN_SENT", lambda: Segment(S + 1, C + 1, "A"),
     [("SYN_SENT", "ESTABLISHED")], {},
     "monitor inference: the SYN-ACK was missed but its ACK of our SYN was seen"),
    ("syn_sent_finack_to_established_then_close_wait", "SYN_SENT",
     lambda: Segment(S + 1, C + 1, "FA"),
     [("SYN_SENT", "ESTABLISHED"), ("ESTABLISHED", "CLOSE_WAIT")], {"fin": True},
     "RFC 9293 3.10.7.4: the ACK is checked before the FIN"),
    ("syn_sent_fin_not_acking_syn_to_close_wait", "SYN_SENT",
     lambda: Segment(S + 1, C, "FA"),
     [("SYN_SENT", "CLOSE_WAIT")], {"fin": True},
     "monitor inference: the handshake went unseen, the peer's FIN closes its side"),
    ("syn_sent_rst_acking_syn_to_closed", "SYN_SENT", lambda: Segment(0, C + 1, "RA"),
     [("SYN_SENT", "CLOSED")], {"rst": "accept"},
     "RFC 9293 3.10.7.3 first/second: a RST is acceptable if it acknowledges our SYN"),
    ("syn_sent_rst_without_ack_rejected", "SYN_SENT", lambda: Segment(0, 0, "R"),
     [], {"rst": "reject"}, "RFC 9293 3.10.7.3 second: RST without ACK is dropped"),
    ("syn_sent_rst_wrong_ack_rejected", "SYN_SENT", lambda: Segment(0, C + 9, "RA"),
     [], {"rst": "reject"}, "RFC 9293 3.10.7.3 first: unacceptable ACK, RST dropped"),
    # 3.10.7.4 SYN-RECEIVED
    ("syn_rcvd_ack_to_established", "SYN_RCVD", lambda: Segment(C + 1, S + 1, "A"),
     [("SYN_RCVD", "ESTABLISHED")], {}, "RFC 9293 3.10.7.4 fifth: ACK of our SYN"),
    ("syn_rcvd_ack_too_low_stays", "SYN_RCVD", lambda: Segment(C + 1, S, "A"),
     [], {}, "RFC 9293 3.10.7.4 fifth: ACK not acknowledging our SYN"),
    ("syn_rcvd_finack_to_established_then_close_wait", "SYN_RCVD",
     lambda: Segment(C + 1, S + 1, "FA"),
     [("SYN_RCVD", "ESTABLISHED"), ("ESTABLISHED", "CLOSE_WAIT")], {"fin": True},
     "RFC 9293 3.10.7.4 fifth then eighth"),
    ("syn_rcvd_fin_not_acking_syn_to_close_wait", "SYN_RCVD",
     lambda: Segment(C + 1, S, "FA"),
     [("SYN_RCVD", "CLOSE_WAIT")], {"fin": True}, "RFC 9293 3.10.7.4 eighth"),
    ("syn_rcvd_rst_in_window_to_closed", "SYN_RCVD", lambda: Segment(C + 1, 0, "R"),
     [("SYN_RCVD", "CLOSED")], {"rst": "accept"}, "RFC 9293 3.10.7.4 first, RFC 5961 3.2"),
    ("syn_rcvd_rst_out_of_window_rejected", "SYN_RCVD", lambda: Segment(C + 5000, 0, "R"),
     [], {"rst": "reject"}, "RFC 5961 3.2: RST outside the window is dropped"),
    ("syn_rcvd_rst_below_rcv_nxt_rejected", "SYN_RCVD", lambda: Segment(C, 0, "R"),
     [], {"rst": "reject"}, "RFC 5961 3.2: a RST with the SYN's own number (below ISN+1) "
     "is below RCV.NXT: outside the window"),
    # ESTABLISHED
    ("established_data_in_window_accepted", "ESTABLISHED",
     lambda: Segment(S + 1, C + 1, "PA", len=100),
     [], {"data": (0, 100), "ack_needed": True, "out_of_window": None},
     "RFC 9293 3.10.7.4 first and seventh: in-window text is accepted"),
    ("established_data_past_window_clipped", "ESTABLISHED",
     lambda: Segment(S + 1 + 900, C + 1, "PA", len=200),
     [], {"data": (900, 100), "out_of_window": (1000, 100)},
     "RFC 9293 3.10.7.4 first: only the part inside RCV.WND is acceptable"),
    ("established_data_beyond_window_not_stored", "ESTABLISHED",
     lambda: Segment(S + 1 + 1000, C + 1, "PA", len=10),
     [], {"data": None, "out_of_window": (1000, 10)},
     "RFC 9293 3.10.7.4 first: a segment beyond the window is not acceptable"),
    ("established_data_before_stream_start_skipped", "ESTABLISHED",
     lambda: Segment(S - 9, C + 1, "PA", len=20),
     [], {"data": (0, 10), "skip": 10},
     "DESIGN 2: stream offsets count from ISN+1; earlier bytes are not in the stream"),
    ("established_fin_to_close_wait", "ESTABLISHED", lambda: Segment(S + 1, C + 1, "FA"),
     [("ESTABLISHED", "CLOSE_WAIT")], {"fin": True, "ack_needed": True},
     "RFC 9293 3.10.7.4 eighth: FIN in ESTABLISHED makes CLOSE-WAIT"),
    ("established_fin_without_ack_ignored", "ESTABLISHED", lambda: Segment(S + 1, 0, "F"),
     [], {"fin": False}, "RFC 9293 3.10.7.4 fifth: no ACK bit, the segment is dropped"),
    ("established_fin_before_stream_start_ignored", "ESTABLISHED",
     lambda: Segment(S - 100, C + 1, "FA"),
     [], {"fin": False}, "a FIN before the peer's ISN+1 closes nothing (evasion)"),
    ("established_syn_changes_nothing", "ESTABLISHED", lambda: Segment(S, 0, "S"),
     [], {}, "RFC 9293 3.10.7.4 fourth: SYN in a synchronized state (challenge ACK)"),
    ("established_rst_at_rcv_nxt_accepted", "ESTABLISHED", lambda: Segment(S + 1, 0, "R"),
     [("ESTABLISHED", "CLOSED")], {"rst": "accept", "challenge_ack": False},
     "RFC 5961 3.2: RST with SEG.SEQ = RCV.NXT resets"),
    ("established_rst_in_window_accepted_with_challenge_hint", "ESTABLISHED",
     lambda: Segment(S + 500, 0, "R"),
     [("ESTABLISHED", "CLOSED")], {"rst": "accept", "challenge_ack": True},
     "RFC 5961 3.2: in window but not RCV.NXT: an end host sends a challenge ACK; the "
     "monitor cannot tell which the receiver honours and accepts it"),
    ("established_rst_out_of_window_rejected", "ESTABLISHED",
     lambda: Segment(S + 1 + 100000, 0, "R"),
     [], {"rst": "reject"}, "RFC 5961 3.2: RST outside the window is dropped"),
    # FIN-WAIT-1
    ("fin_wait_1_ack_of_fin_to_fin_wait_2", "FIN_WAIT_1", lambda: Segment(S + 1, C + 2, "A"),
     [("FIN_WAIT_1", "FIN_WAIT_2")], {}, "RFC 9293 3.10.7.4 fifth: our FIN acknowledged"),
    ("fin_wait_1_ack_below_fin_stays", "FIN_WAIT_1", lambda: Segment(S + 1, C + 1, "A"),
     [], {}, "RFC 9293 3.10.7.4 fifth: the FIN is not acknowledged yet"),
    ("fin_wait_1_fin_to_closing", "FIN_WAIT_1", lambda: Segment(S + 1, C + 1, "FA"),
     [("FIN_WAIT_1", "CLOSING")], {"fin": True},
     "RFC 9293 3.10.7.4 eighth: FIN before ours is acknowledged, simultaneous close"),
    ("fin_wait_1_fin_acking_fin_to_time_wait", "FIN_WAIT_1",
     lambda: Segment(S + 1, C + 2, "FA"),
     [("FIN_WAIT_1", "TIME_WAIT")], {"fin": True},
     "RFC 9293 3.10.7.4 eighth: our FIN acknowledged 'perhaps in this segment': TIME-WAIT"),
    ("fin_wait_1_rst_in_window_to_closed", "FIN_WAIT_1", lambda: Segment(S + 1, 0, "R"),
     [("FIN_WAIT_1", "CLOSED")], {"rst": "accept"}, "RFC 9293 3.10.7.4 first"),
    # FIN-WAIT-2
    ("fin_wait_2_fin_to_time_wait", "FIN_WAIT_2", lambda: Segment(S + 1, C + 2, "FA"),
     [("FIN_WAIT_2", "TIME_WAIT")], {"fin": True}, "RFC 9293 3.10.7.4 eighth"),
    ("fin_wait_2_data_accepted", "FIN_WAIT_2", lambda: Segment(S + 1, C + 2, "PA", len=5),
     [], {"data": (0, 5)}, "RFC 9293 3.10.7.4 seventh: FIN-WAIT-2 still receives text"),
    ("fin_wait_2_rst_to_closed", "FIN_WAIT_2", lambda: Segment(S + 1, 0, "R"),
     [("FIN_WAIT_2", "CLOSED")], {"rst": "accept"}, "RFC 9293 3.10.7.4 first"),
    # CLOSING
    ("closing_ack_of_fin_to_time_wait", "CLOSING", lambda: Segment(S + 2, C + 2, "A"),
     [("CLOSING", "TIME_WAIT")], {}, "RFC 9293 3.10.7.4 fifth"),
    ("closing_ack_below_fin_stays", "CLOSING", lambda: Segment(S + 2, C + 1, "A"),
     [], {}, "RFC 9293 3.10.7.4 fifth"),
    ("closing_rst_to_closed", "CLOSING", lambda: Segment(S + 2, 0, "R"),
     [("CLOSING", "CLOSED")], {"rst": "accept"}, "RFC 9293 3.10.7.4 first"),
    # TIME-WAIT
    ("time_wait_fin_again_stays", "TIME_WAIT", lambda: Segment(S + 1, C + 2, "FA"),
     [], {}, "RFC 9293 3.10.7.4 eighth: TIME-WAIT stays (restarts the 2 MSL timeout)"),
    ("time_wait_rst_to_closed", "TIME_WAIT", lambda: Segment(S + 2, 0, "R"),
     [("TIME_WAIT", "CLOSED")], {"rst": "accept"}, "RFC 9293 3.10.7.4 first"),
    # CLOSE-WAIT
    ("close_wait_fin_again_stays", "CLOSE_WAIT", lambda: Segment(S + 1, C + 1, "FA"),
     [], {}, "RFC 9293 3.10.7.4 eighth: CLOSE-WAIT stays"),
    ("close_wait_rst_to_closed", "CLOSE_WAIT", lambda: Segment(S + 2, 0, "R"),
     [("CLOSE_WAIT", "CLOSED")], {"rst": "accept"}, "RFC 9293 3.10.7.4 first"),
    # LAST-ACK
    ("last_ack_ack_of_fin_to_closed", "LAST_ACK", lambda: Segment(S + 2, C + 2, "A"),
     [("LAST_ACK", "CLOSED")], {}, "RFC 9293 3.10.7.4 fifth: our FIN acknowledged"),
    ("last_ack_ack_below_fin_stays", "LAST_ACK", lambda: Segment(S + 2, C + 1, "A"),
     [], {}, "RFC 9293 3.10.7.4 fifth"),
    ("last_ack_rst_to_closed", "LAST_ACK", lambda: Segment(S + 2, 0, "R"),
     [("LAST_ACK", "CLOSED")], {"rst": "accept"}, "RFC 9293 3.10.7.4 first"),
]


@pytest.mark.parametrize("state,make_seg,trans,effects,rfc",
                         [c[1:] for c in RECEIVE_CASES], ids=[c[0] for c in RECEIVE_CASES])
def test_monitor_receive(state, make_seg, trans, effects, rfc):
    """The passive model's receive rules, one segment per case (see ids and rfc)."""
    ep, peer = FIXTURES[state]()
    eff = recv(ep, peer, make_seg())
    assert eff.transitions == trans, rfc
    assert ep.state == (trans[-1][1] if trans else state), rfc
    for k, v in effects.items():
        assert getattr(eff, k) == v, f"{k}: {rfc}"


# ---------------------------------------------------------------- the sender's model (monitor)

def test_closed_sent_syn_to_syn_sent():
    """The client's SYN: CLOSED -> SYN-SENT (RFC 9293 3.10.1, as seen on the wire)."""
    ep, peer = ep_closed()
    eff = ep.sent(Segment(C, flags="S", mss=1460, wscale=7, sack_ok=True, ts=(9, 0)), peer)
    assert eff.transitions == [("CLOSED", "SYN_SENT")]
    assert (ep.iss, ep.snd_nxt, ep.mss, ep.wscale, ep.sack_ok, ep.tsval) == \
        (C, C + 1, 1460, 7, True, 9)
    assert eff.rexmit is None


def test_listen_sent_synack_to_syn_rcvd():
    """The passive opener's SYN-ACK: LISTEN -> SYN-RECEIVED (RFC 9293 3.10.7.2)."""
    ep, peer = Endpoint("LISTEN", passive=True), Endpoint("SYN_SENT", iss=C)
    eff = ep.sent(Segment(S, C + 1, "SA"), peer)
    assert eff.transitions == [("LISTEN", "SYN_RCVD")]
    assert ep.iss == S


def test_closed_passive_sent_synack_to_syn_rcvd():
    """A passive side the model left CLOSED answering a SYN: SYN-RECEIVED (monitor row)."""
    ep, peer = Endpoint("CLOSED", passive=True), Endpoint("SYN_SENT", iss=C)
    assert ep.sent(Segment(S, C + 1, "SA"), peer).transitions == [("CLOSED", "SYN_RCVD")]


def test_syn_sent_sent_syn_same_isn_is_rexmit():
    """A SYN repeating the ISN is a retransmission (DESIGN 2, REXMIT)."""
    ep, peer = ep_syn_sent()
    eff = ep.sent(Segment(C, flags="S"), peer)
    assert eff.rexmit == (0, 0) and eff.transitions == []


def test_syn_sent_sent_syn_new_isn_restarts():
    """The client gave up on its first SYN and chose a new ISN: not a retransmission."""
    ep, peer = ep_syn_sent()
    eff = ep.sent(Segment(C + 77777, flags="S"), peer)
    assert eff.rexmit is None and ep.iss == C + 77777 and ep.snd_nxt == C + 77778


def test_established_sent_data_twice_is_rexmit():
    """Bytes below SND.NXT sent again are a retransmission; its stream offset is reported."""
    ep, peer = ep_established()
    assert ep.sent(Segment(C + 1, S + 1, "PA", len=100), peer).rexmit is None
    eff = ep.sent(Segment(C + 51, S + 1, "PA", len=50), peer)
    assert eff.rexmit == (50, 50)
    assert eff.snd_nxt0 == C + 101 and ep.snd_nxt == C + 101 and ep.data_end == 100


def test_established_sent_fin_to_fin_wait_1():
    """RFC 9293 3.10.4 CLOSE, as seen on the wire: FIN sent -> FIN-WAIT-1."""
    ep, peer = ep_established()
    eff = ep.sent(Segment(C + 1, S + 1, "FA"), peer)
    assert eff.transitions == [("ESTABLISHED", "FIN_WAIT_1")] and ep.fin_seq == C + 1


def test_syn_sent_sent_fin_to_fin_wait_1():
    """A FIN before the handshake completed still closes the sender's side (monitor row)."""
    ep, peer = ep_syn_sent()
    assert ep.sent(Segment(C + 1, 0, "F"), peer).transitions == [("SYN_SENT", "FIN_WAIT_1")]


def test_close_wait_sent_fin_acking_peer_fin_to_last_ack():
    """RFC 9293 3.10.4: CLOSE in CLOSE-WAIT sends FIN -> LAST-ACK."""
    ep, peer = ep_close_wait()
    eff = ep.sent(Segment(C + 1, S + 2, "FA"), peer)
    assert eff.transitions == [("CLOSE_WAIT", "LAST_ACK")]


def test_close_wait_sent_fin_not_acking_peer_fin_to_closing():
    """A FIN that does not acknowledge the peer's FIN was sent before that FIN
    arrived: simultaneous close (RFC 9293 3.6, Figure 13) -> CLOSING."""
    ep, peer = ep_close_wait()
    eff = ep.sent(Segment(C + 1, S + 1, "FA"), peer)
    assert eff.transitions == [("CLOSE_WAIT", "CLOSING")]


def test_established_sent_rst_changes_no_state():
    """A RST's sequence number is judged by the receiver (RFC 5961 3.2), not believed."""
    ep, peer = ep_established()
    eff = ep.sent(Segment(C + 999999, 0, "R"), peer)
    assert eff.transitions == [] and ep.snd_nxt == C + 1
    assert ep.action("SENT_RST").transitions == [("ESTABLISHED", "CLOSED")]


def test_established_sent_ack_scales_window_only_when_both_syns_had_wscale():
    """RFC 7323 2.2: the shift applies once both SYNs carried the option."""
    ep = Endpoint("ESTABLISHED", iss=C, wscale=2)
    peer = Endpoint("ESTABLISHED", passive=True, iss=S, wscale=3)
    ep.sent(Segment(C + 1, S + 1, "A", wnd=100), peer)
    assert (ep.rcv_nxt, ep.rcv_wnd, ep.rwin_edge) == (S + 1, 400, S + 401)
    ep2, peer2 = Endpoint("ESTABLISHED", iss=C, wscale=2), Endpoint("ESTABLISHED", iss=S)
    ep2.sent(Segment(C + 1, S + 1, "A", wnd=100), peer2)
    assert ep2.rcv_wnd == 100


def test_syn_rcvd_sent_synack_window_never_scaled():
    """RFC 7323 2.2: the window field of a SYN is never scaled."""
    ep, peer = Endpoint("LISTEN", passive=True), Endpoint("SYN_SENT", iss=C, wscale=5)
    ep.sent(Segment(S, C + 1, "SA", wnd=100, wscale=5), peer)
    assert ep.rcv_wnd == 100


def test_established_mid_stream_isn_guessed():
    """Mid-stream: the first byte seen is offset 0; the receiver's ISN is
    guessed from the ACK (DESIGN 2, midstream)."""
    ep = Endpoint("ESTABLISHED", passive=True)
    peer = Endpoint("ESTABLISHED")
    eff = recv(ep, peer, Segment(777, 4242, "PA", len=10))
    assert peer.iss == 776 and ep.iss == 4241
    assert eff.data == (0, 10)
    assert not ep.syn_seen  # a guessed ISN: the window is not trusted
    assert eff.out_of_window is None


# ---------------------------------------------------------------- simultaneous open and close

def test_simultaneous_open_both_reach_established():
    """RFC 9293 3.5 Figure 8: SYNs cross; each gets the other's SYN in SYN-SENT
    (-> SYN-RECEIVED), then the SYN-ACKs establish both."""
    a = Endpoint("SYN_SENT", iss=C, role="host")
    b = Endpoint("SYN_SENT", iss=S, role="host", passive=False)
    assert a.input(Segment(S, 0, "S"), b).transitions == [("SYN_SENT", "SYN_RCVD")]
    assert b.input(Segment(C, 0, "S"), a).transitions == [("SYN_SENT", "SYN_RCVD")]
    assert a.input(Segment(S, C + 1, "SA"), b).transitions == [("SYN_RCVD", "ESTABLISHED")]
    assert b.input(Segment(C, S + 1, "SA"), a).transitions == [("SYN_RCVD", "ESTABLISHED")]


def test_simultaneous_close_both_reach_time_wait():
    """RFC 9293 3.6 Figure 13: FINs cross (FIN-WAIT-1 -> CLOSING), their ACKs
    take both to TIME-WAIT."""
    a, b = ep_established()
    fa, fb = Segment(C + 1, S + 1, "FA"), Segment(S + 1, C + 1, "FA")
    assert a.sent(fa, b).transitions == [("ESTABLISHED", "FIN_WAIT_1")]
    assert b.sent(fb, a).transitions == [("ESTABLISHED", "FIN_WAIT_1")]
    assert b.input(fa, a).transitions == [("FIN_WAIT_1", "CLOSING")]
    assert a.input(fb, b).transitions == [("FIN_WAIT_1", "CLOSING")]
    assert recv(b, a, Segment(C + 2, S + 2, "A")).transitions == [("CLOSING", "TIME_WAIT")]
    assert recv(a, b, Segment(S + 2, C + 2, "A")).transitions == [("CLOSING", "TIME_WAIT")]


# ---------------------------------------------------------------- the end host: user calls + segments

def test_host_active_open_and_close():
    """RFC 9293 3.10.1 OPEN (active), 3.10.7.3 SYN-ACK, 3.10.4 CLOSE, 3.10.7.4
    ACK of our FIN (FIN-WAIT-2) and the peer's FIN (TIME-WAIT)."""
    ep, peer = Endpoint("CLOSED", role="host"), Endpoint("LISTEN", passive=True)
    assert ep.action("USER_ACTIVE_OPEN").transitions == [("CLOSED", "SYN_SENT")]
    ep.sent(Segment(C, flags="S"), peer)
    assert recv(ep, peer, Segment(S, C + 1, "SA")).transitions == [("SYN_SENT", "ESTABLISHED")]
    assert ep.action("USER_CLOSE").transitions == [("ESTABLISHED", "FIN_WAIT_1")]
    ep.sent(Segment(C + 1, S + 1, "FA"), peer)
    assert recv(ep, peer, Segment(S + 1, C + 2, "A")).transitions == \
        [("FIN_WAIT_1", "FIN_WAIT_2")]
    eff = recv(ep, peer, Segment(S + 1, C + 2, "FA"))
    assert eff.transitions == [("FIN_WAIT_2", "TIME_WAIT")] and eff.ack_needed


def test_host_passive_open_and_close():
    """RFC 9293 3.10.1 OPEN (passive), 3.10.7.2 SYN, 3.10.7.4 ACK of our SYN,
    FIN (CLOSE-WAIT), 3.10.4 CLOSE (LAST-ACK), ACK of our FIN (CLOSED)."""
    ep, peer = Endpoint("CLOSED", role="host", passive=True), Endpoint("SYN_SENT", iss=C)
    assert ep.action("USER_PASSIVE_OPEN").transitions == [("CLOSED", "LISTEN")]
    assert ep.input(Segment(C, flags="S"), peer).transitions == [("LISTEN", "SYN_RCVD")]
    ep.sent(Segment(S, C + 1, "SA"), peer)
    assert recv(ep, peer, Segment(C + 1, S + 1, "A")).transitions == \
        [("SYN_RCVD", "ESTABLISHED")]
    assert recv(ep, peer, Segment(C + 1, S + 1, "FA")).transitions == \
        [("ESTABLISHED", "CLOSE_WAIT")]
    assert ep.action("USER_CLOSE").transitions == [("CLOSE_WAIT", "LAST_ACK")]
    ep.sent(Segment(S + 1, C + 2, "FA"), peer)
    assert recv(ep, peer, Segment(C + 2, S + 2, "A")).transitions == [("LAST_ACK", "CLOSED")]


@pytest.mark.parametrize("state", ["LISTEN", "SYN_SENT"])
def test_host_close_before_established_to_closed(state):
    """RFC 9293 3.10.4: CLOSE in LISTEN or SYN-SENT deletes the TCB."""
    ep = Endpoint(state, role="host", iss=C)
    assert ep.action("USER_CLOSE").transitions == [(state, "CLOSED")]


@pytest.mark.parametrize("state", ["SYN_RCVD", "ESTABLISHED"])
def test_host_close_synchronized_to_fin_wait_1(state):
    """RFC 9293 3.10.4: CLOSE in SYN-RECEIVED or ESTABLISHED sends FIN."""
    ep = Endpoint(state, role="host", iss=C)
    assert ep.action("USER_CLOSE").transitions == [(state, "FIN_WAIT_1")]


def test_closed_syn_host_stays_monitor_infers_syn_rcvd():
    """RFC 9293 3.10.7.1: an end host in CLOSED answers a SYN with RST; the
    monitor's passive side that the model left CLOSED is answering it."""
    host, peer = ep_closed("host")
    assert recv(host, peer, Segment(C, flags="S")).transitions == []
    mon, peer = ep_closed()
    assert recv(mon, peer, Segment(C, flags="S")).transitions == [("CLOSED", "SYN_RCVD")]


def test_syn_sent_bare_ack_host_ignores_monitor_establishes():
    """RFC 9293 3.10.7.3 fifth: without SYN or RST the segment is dropped at an
    end host; the monitor infers a missed SYN-ACK."""
    host, peer = ep_syn_sent("host")
    assert recv(host, peer, Segment(S + 1, C + 1, "A")).transitions == []
    mon, peer = ep_syn_sent()
    assert recv(mon, peer, Segment(S + 1, C + 1, "A")).transitions == \
        [("SYN_SENT", "ESTABLISHED")]


def test_listen_rst_host_ignores_monitor_closes():
    """RFC 9293 3.10.7.2: a RST in LISTEN is ignored by an end host; the monitor
    ends the flow on an acceptable RST."""
    host, peer = ep_listen("host")
    peer.sent(Segment(C, flags="S"), host)
    assert host.input(Segment(C + 1, 0, "R"), peer).transitions == []
    mon, peer = ep_listen()
    peer.sent(Segment(C, flags="S"), mon)
    assert mon.input(Segment(C + 1, 0, "R"), peer).transitions == [("LISTEN", "CLOSED")]


# cases whose rows are the monitor's inferences (an end host does otherwise)
MONITOR_ONLY = {"syn_sent_ack_of_syn_to_established",
                "syn_sent_finack_to_established_then_close_wait",
                "syn_rcvd_rst_in_window_to_closed", "syn_sent_fin_not_acking_syn_to_close_wait"}
SHARED = [c for c in RECEIVE_CASES if c[0] not in MONITOR_ONLY]


@pytest.mark.parametrize("state,make_seg,trans,effects,rfc", [c[1:] for c in SHARED],
                         ids=[c[0] for c in SHARED])
def test_host_receive_rules_shared_with_monitor(state, make_seg, trans, effects, rfc):
    """The receive cases whose rows are shared give the same result for an end host."""
    ep, peer = FIXTURES[state]("host")
    eff = recv(ep, peer, make_seg())
    assert eff.transitions == trans, rfc
    for k, v in effects.items():
        assert getattr(eff, k) == v, f"{k}: {rfc}"


@pytest.mark.parametrize("case", sorted(MONITOR_ONLY))
def test_host_ignores_what_only_the_monitor_infers(case):
    """RFC 9293 3.10.7.3 fifth (no SYN: drop) and 3.10.7.4 first (a passive
    opener's SYN-RECEIVED returns to LISTEN on RST, left to the end host)."""
    _, state, make_seg, trans, _, rfc = next(c for c in RECEIVE_CASES if c[0] == case)
    ep, peer = FIXTURES[state]("host")
    eff = recv(ep, peer, make_seg())
    assert eff.transitions == [] and ep.state == state


# ---------------------------------------------------------------- the table itself

def test_transition_table_renders_rows():
    """transition_table() lists (state, input, new state, who) for docs."""
    rows = transition_table()
    assert ("FIN_WAIT_1", "RCV_FIN_ACK_FIN", "TIME_WAIT", "both") in rows
    assert ("CLOSE_WAIT", "SENT_FIN_EARLY", "CLOSING", "monitor") in rows
    assert ("CLOSED", "USER_ACTIVE_OPEN", "SYN_SENT", "host") in rows
    for st, inp, nxt, who in rows:
        assert st in STATES and inp in INPUTS and nxt in STATES and who in ("both", "monitor", "host")
    assert len(set((r[0], r[1]) for r in rows)) == len(rows)  # one cell per (state, input)


@pytest.mark.parametrize("row", transition_table(), ids=lambda r: f"{r[0]}-{r[1]}")
def test_every_table_row_applies_for_its_roles_only(row):
    """Each cell moves an endpoint of the roles it names, and no other."""
    st, inp, nxt, who = row
    for role in ("monitor", "host"):
        ep = Endpoint(st, role=role, iss=C)
        eff = ep.action(inp)
        if who in ("both", role) and nxt != st:
            assert eff.transitions == [(st, nxt)] and ep.state == nxt
        else:
            assert eff.transitions == [] and ep.state == st


def test_every_monitor_receive_row_is_reached_by_a_segment():
    """Every row the monitor uses for a received segment is exercised by a
    segment in RECEIVE_CASES or the tests above (not only through action())."""
    reached = {(c[1], t) for c in RECEIVE_CASES for t in c[3]}
    extra = {("CLOSED", ("CLOSED", "SYN_RCVD")),      # test_closed_syn_host_stays_...
             ("LISTEN", ("LISTEN", "CLOSED")),        # test_listen_rst_host_ignores_...
             ("CLOSED", ("CLOSED", "CLOSE_WAIT")),    # test_closed_and_listen_fin_...
             ("LISTEN", ("LISTEN", "CLOSE_WAIT"))}
    reached |= extra
    seen_trans = {t for _, t in reached}
    needed = {(r[0], r[2]) for r in transition_table()
              if r[1].startswith("RCV_") and r[3] in ("both", "monitor")}
    missing = needed - seen_trans
    assert not missing, f"receive rows with no segment test: {sorted(missing)}"


def test_closed_and_listen_fin_to_close_wait_monitor():
    """A FIN (with ACK) to a side the model still has in CLOSED or LISTEN: the
    monitor follows the close it sees (monitor rows)."""
    for make in (ep_closed, ep_listen):
        ep, peer = make()
        peer.sent(Segment(9000, flags="S"), ep)
        eff = ep.input(Segment(9001, 1, "FA"), peer)
        assert eff.transitions[-1][1] == "CLOSE_WAIT" and ep.state == "CLOSE_WAIT" and eff.fin


def test_unknown_names_are_errors_naming_the_value():
    with pytest.raises(ValueError, match="'BOGUS'"):
        Endpoint("BOGUS")
    with pytest.raises(ValueError, match="'NOPE'"):
        Endpoint().action("NOPE")
    with pytest.raises(ValueError, match="'X'"):
        Segment(1, flags="SX")


def test_readme_table_matches_the_code():
    """mos/tcp/README.md shows the table as the code has it (docs cannot drift)."""
    from pathlib import Path

    from mos.tcp._tcp import table_markdown

    readme = (Path(__file__).resolve().parents[1] / "mos" / "tcp" / "README.md").read_text()
    assert table_markdown() in readme, "regenerate with mos.tcp._tcp.table_markdown()"


def test_ack_of_syn_rows_only_before_established():
    """mos_tcp_ep_input classifies the ACK of our SYN only in states before
    ESTABLISHED (a per-packet saving); the table must agree."""
    before = {"CLOSED", "LISTEN", "SYN_SENT", "SYN_RCVD"}
    for st, inp, _, _ in transition_table():
        if inp in ("RCV_SYNACK", "RCV_ACK_SYN"):
            assert st in before, (st, inp)
    assert list(STATES[:4]) == ["CLOSED", "LISTEN", "SYN_SENT", "SYN_RCVD"]


# ---------------------------------------------------------------- RST below ISN+1 (issue 8)

def test_syn_rcvd_rst_below_isn_plus_1_rejected_before_the_receiver_spoke():
    """RFC 5961 3.2, RFC 9293 3.10.7.4 first: right after the SYN the monitor's
    server has sent nothing, so its window is judged from the client's own
    sequence space; having seen the SYN, its RCV.NXT is at least ISN+1, and
    a RST below that (the SYN's own number) is outside any window it can have."""
    ep, peer = Endpoint("SYN_RCVD", passive=True), Endpoint("SYN_SENT", iss=C)
    eff = recv(ep, peer, Segment(C, 0, "R"))
    assert eff.rst == "reject" and ep.state == "SYN_RCVD"
    eff = recv(ep, peer, Segment(C + 1, 0, "R"))
    assert eff.rst == "accept" and eff.transitions == [("SYN_RCVD", "CLOSED")]


def test_syn_sent_to_established_rst_below_peer_isn_plus_1_rejected():
    """The other direction: after the SYN-ACK (server ISS S) and before the
    client's ACK, the client has sent no ACK; a RST from the server with
    sequence number S is below the RCV.NXT (S+1) the SYN-ACK gave the client."""
    ep, peer = ep_syn_sent()
    peer_syn = Segment(S, C + 1, "SA")
    assert recv(ep, peer, peer_syn).transitions == [("SYN_SENT", "ESTABLISHED")]
    assert recv(ep, peer, Segment(S, 0, "R")).rst == "reject"
    assert ep.state == "ESTABLISHED"
    assert recv(ep, peer, Segment(S + 1, 0, "R")).rst == "accept"


def test_syn_sent_rst_judged_by_its_ack_only():
    """RFC 9293 3.10.7.3 (RFC 5961 3.2 leaves SYN-SENT as it is): in SYN-SENT
    the RST's sequence number is not checked; it counts iff it acknowledges
    the SYN, for both roles."""
    for role in ("monitor", "host"):
        ep, peer = ep_syn_sent(role)
        assert recv(ep, peer, Segment(0, C, "RA")).rst == "reject"
        assert ep.state == "SYN_SENT"
        assert recv(ep, peer, Segment(0, C + 1, "RA")).rst == "accept"
        assert ep.state == "CLOSED"


# ---------------------------------------------------------------- data after FIN (issue 8)

@pytest.mark.parametrize("role", ["monitor", "host"])
def test_established_fin_then_data_after_fin_not_accepted(role):
    """RFC 9293 3.10.7.4 seventh: once the peer's FIN is accepted (CLOSE-WAIT)
    segment text is ignored; the bytes sequenced after the FIN are reported
    (after_fin), none is accepted, and no byte of the stream is left out."""
    ep, peer = ep_established(role)
    eff = recv(ep, peer, Segment(S + 1, C + 1, "PA", len=5))
    assert eff.data == (0, 5)
    eff = recv(ep, peer, Segment(S + 6, C + 1, "FA"))  # FIN at offset 5
    assert eff.fin and eff.transitions == [("ESTABLISHED", "CLOSE_WAIT")]
    assert ep.fin_rcv == S + 6
    eff = recv(ep, peer, Segment(S + 7, C + 1, "PA", len=4))  # after the FIN
    assert eff.data is None and eff.after_fin == (6, 4)
    # the FIN sent again at the end of those bytes: not a FIN, nothing changes
    eff = recv(ep, peer, Segment(S + 11, C + 1, "FA"))
    assert not eff.fin and eff.transitions == [] and ep.state == "CLOSE_WAIT"
    # the FIN retransmitted with bytes at its own sequence number
    eff = recv(ep, peer, Segment(S + 6, C + 1, "FPA", len=3))
    assert eff.data is None and eff.after_fin == (5, 3) and not eff.fin
    # the FIN itself again: still the FIN (the receiver acknowledges it)
    eff = recv(ep, peer, Segment(S + 6, C + 1, "FA"))
    assert eff.fin and eff.ack_needed and eff.after_fin is None


def test_fin_wait_2_fin_then_data_after_fin_not_accepted():
    """FIN-WAIT-2 -> TIME-WAIT on the peer's FIN (RFC 9293 3.10.7.4 eighth); bytes
    after that FIN are not accepted, bytes before it still are (a late
    retransmission of a hole)."""
    ep, peer = ep_fin_wait_2()
    eff = recv(ep, peer, Segment(S + 11, C + 2, "FA"))  # FIN at offset 10: a 10-byte hole
    assert eff.transitions == [("FIN_WAIT_2", "TIME_WAIT")]
    assert recv(ep, peer, Segment(S + 1, C + 2, "PA", len=10)).data == (0, 10)
    eff = recv(ep, peer, Segment(S + 5, C + 2, "PA", len=10))  # straddles the FIN
    assert eff.data == (4, 6) and eff.after_fin == (10, 4)


def test_established_sent_fin_again_after_peer_accepted_keeps_fin_seq():
    """The sender's model: once the receiver accepted a FIN, a later FIN does
    not move fin_seq, so the receiver's ACK of the first FIN still
    acknowledges it (RFC 9293 3.10.7.4 fifth)."""
    ep, peer = ep_established()
    recv(peer, ep, Segment(C + 1, S + 1, "FA"))
    assert ep.fin_seq == C + 1 and peer.fin_rcv == C + 1
    recv(peer, ep, Segment(C + 2, S + 1, "FPA", len=5))
    assert ep.fin_seq == C + 1
    eff = recv(ep, peer, Segment(S + 1, C + 2, "A"))
    assert eff.transitions == [("FIN_WAIT_1", "FIN_WAIT_2")]


# ---------------------------------------------------------------- PAWS (RFC 7323 5.3, issue 8)

def ep_established_ts(role="monitor", ts_recent=1000):
    """ESTABLISHED, both SYNs carried timestamps; ep holds TS.Recent."""
    return (Endpoint("ESTABLISHED", role=role, iss=C, rcv_nxt=S + 1, rcv_wnd=WND, ts_ok=True,
                     ts_recent=ts_recent),
            Endpoint("ESTABLISHED", passive=True, iss=S, rcv_nxt=C + 1, rcv_wnd=WND, ts_ok=True))


@pytest.mark.parametrize("role", ["monitor", "host"])
def test_established_data_with_old_tsval_fails_paws(role):
    """RFC 7323 5.3 R1: SEG.TSval < TS.Recent: not acceptable, nothing processed;
    R3: an in-sequence segment with a TSval at least TS.Recent is taken and
    its TSval recorded."""
    ep, peer = ep_established_ts(role)
    eff = recv(ep, peer, Segment(S + 1, C + 1, "PA", len=10, ts=(999, 0)))
    assert eff.paws and eff.data is None and ep.ts_recent == 1000
    eff = recv(ep, peer, Segment(S + 1, C + 1, "PA", len=10, ts=(1000, 0)))
    assert not eff.paws and eff.data == (0, 10)
    eff = recv(ep, peer, Segment(S + 1, C + 1, "PA", len=10, ts=(1005, 0)))
    assert not eff.paws and ep.ts_recent == 1005


@pytest.mark.parametrize("role", ["monitor", "host"])
def test_established_fin_with_old_tsval_fails_paws(role):
    """R1 covers FIN segments: the state does not change."""
    ep, peer = ep_established_ts(role)
    eff = recv(ep, peer, Segment(S + 1, C + 1, "FA", ts=(10, 0)))
    assert eff.paws and eff.transitions == [] and ep.state == "ESTABLISHED"


def test_established_rst_with_old_tsval_host_accepts_monitor_rejects():
    """RFC 7323 5.3 R1 exempts RST segments ("and if the RST bit is not set"):
    an end host resets.  The monitor rejects a RST whose TSval is older than
    TS.Recent (see mos_tcp_ep_paws: such a RST was not sent by the peer's
    current incarnation; ending inspection on it is the evasion PAWS stops)."""
    host, peer = ep_established_ts("host")
    eff = recv(host, peer, Segment(S + 1, 0, "R", ts=(10, 0)))
    assert not eff.paws and eff.rst == "accept" and host.state == "CLOSED"
    mon, peer = ep_established_ts("monitor")
    eff = recv(mon, peer, Segment(S + 1, 0, "R", ts=(10, 0)))
    assert eff.paws and eff.rst is None and mon.state == "ESTABLISHED"
    eff = recv(mon, peer, Segment(S + 1, 0, "R", ts=(1000, 0)))
    assert eff.rst == "accept" and mon.state == "CLOSED"


def test_established_tsval_wraparound_compares_modulo_2_32():
    """RFC 7323 5.2: timestamps compare as sequence numbers, modulo 2^32."""
    ep, peer = ep_established_ts(ts_recent=0xFFFFFFF0)
    eff = recv(ep, peer, Segment(S + 1, C + 1, "PA", len=1, ts=(5, 0)))
    assert not eff.paws and ep.ts_recent == 5
    eff = recv(ep, peer, Segment(S + 2, C + 1, "PA", len=1, ts=(0xFFFFFFF8, 0)))
    assert eff.paws


def test_established_out_of_order_tsval_does_not_move_ts_recent():
    """R3: only a segment at or below Last.ACK.sent records its TSval, so a
    segment that overtook an earlier one does not make the earlier one fail."""
    ep, peer = ep_established_ts()
    assert not recv(ep, peer, Segment(S + 101, C + 1, "PA", len=10, ts=(1010, 0))).paws
    assert ep.ts_recent == 1000
    assert not recv(ep, peer, Segment(S + 1, C + 1, "PA", len=100, ts=(1005, 0))).paws


def test_established_paws_off_without_negotiation():
    """PAWS applies only where both SYNs carried timestamps (RFC 7323 3.2)."""
    ep = Endpoint("ESTABLISHED", iss=C, rcv_nxt=S + 1, rcv_wnd=WND, ts_ok=True, ts_recent=1000)
    peer = Endpoint("ESTABLISHED", passive=True, iss=S, rcv_nxt=C + 1, rcv_wnd=WND)
    eff = recv(ep, peer, Segment(S + 1, C + 1, "PA", len=10, ts=(1, 0)))
    assert not eff.paws and eff.data == (0, 10)


def test_syn_rcvd_spoofed_rst_and_fin_with_old_tsval_before_synack_fail_paws():
    """Right after a SYN with timestamps the monitor's server holds TS.Recent
    from it (RFC 7323 4.3); before its SYN-ACK the client's offer counts as
    negotiated, so a RST or FIN claiming an older TSval is refused.  A
    SYN-ACK without the option turns PAWS off."""
    ep, peer = Endpoint("LISTEN", passive=True), Endpoint("CLOSED")
    syn = Segment(C, flags="S", ts=(1000, 0))
    assert not recv(ep, peer, syn).paws and ep.ts_recent == 1000 and ep.state == "SYN_RCVD"
    assert recv(ep, peer, Segment(C + 1, 0, "R", ts=(500, 0))).paws
    assert recv(ep, peer, Segment(C + 1, S + 1, "FA", ts=(500, 0))).paws
    assert ep.state == "SYN_RCVD"
    ep.sent(Segment(S, C + 1, "SA"), peer)  # the server does not do timestamps
    eff = recv(ep, peer, Segment(C + 1, 0, "R", ts=(500, 0)))
    assert not eff.paws and eff.rst == "accept"
