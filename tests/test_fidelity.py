"""Fidelity fixes of issue 8 (item 4), through the engine, packets built with dpkt.

- data sequenced after a FIN is not in the stream (RFC 9293 3.10.7.4);
- bytes missing before a FIN are a gap up to the FIN's sequence number;
- PAWS (RFC 7323 5.3) on flows that negotiated timestamps;
- a frame whose IP length claims more than the wire carried is malformed;
- a RST below ISN+1 right after a SYN is not accepted (RFC 5961 3.2).

The late hole fill finding of the same list is tested with the receive
buffer (tests/test_rbuf.py).
"""

from __future__ import annotations

import socket
import struct

import _netpkt as N
import dpkt
from tcpconv import Recorder

import mos
from mos import Side

CIP, SIP = "198.18.0.1", "198.18.0.2"
CPORT, SPORT = 40000, 80
C, S = 1000, 5000  # initial sequence numbers
F = dpkt.tcp


def ts_opt(tsval, tsecr=0):
    """NOP, NOP, Timestamps (RFC 7323 3.2)."""
    return b"\x01\x01" + struct.pack("!BBII", dpkt.tcp.TCP_OPT_TIMESTAMP, 10, tsval, tsecr)


def frame(from_client, seq, ack, flags, payload=b"", opts=b"", ip_len_extra=0):
    """One Ethernet frame built with dpkt (checksums filled by dpkt)."""
    src, dst = (CIP, SIP) if from_client else (SIP, CIP)
    sport, dport = (CPORT, SPORT) if from_client else (SPORT, CPORT)
    tcp = dpkt.tcp.TCP(sport=sport, dport=dport, seq=seq & 0xFFFFFFFF, ack=ack & 0xFFFFFFFF,
                       flags=flags, win=65535, opts=opts, data=payload)
    tcp.off = (20 + len(opts)) // 4
    ip = dpkt.ip.IP(src=socket.inet_aton(src), dst=socket.inet_aton(dst), p=dpkt.ip.IP_PROTO_TCP,
                    ttl=64, data=tcp)
    raw = bytes(ip)  # computes the IP length and both checksums
    if ip_len_extra:  # the IP header claims more than the frame carries
        tot = struct.unpack("!H", raw[2:4])[0] + ip_len_extra
        raw = raw[:2] + struct.pack("!H", tot) + raw[4:10] + b"\0\0" + raw[12:]
        raw = raw[:10] + struct.pack("!H", N.csum(raw[:20])) + raw[12:]
    eth = dpkt.ethernet.Ethernet(src=b"\x02\0\0\0\0\x01", dst=b"\x02\0\0\0\0\x02",
                                 type=dpkt.ethernet.ETH_TYPE_IP, data=raw)
    return bytes(eth)


class Trace:
    """Frames of one conversation; c/s: what each side sends (sequence numbers explicit)."""

    def __init__(self):
        self.frames = []
        self.t = 1.0

    def c(self, *a, **kw):
        self.frames.append((self.t, frame(True, *a, **kw)))
        self.t += 0.001

    def s(self, *a, **kw):
        self.frames.append((self.t, frame(False, *a, **kw)))
        self.t += 0.001

    def run(self, close=True, config=None):
        rec = Recorder()
        eng = mos.Engine(config or mos.Config(checksum="verify"))
        eng.attach(rec.mon)
        for ts, fr in self.frames:
            eng.feed(fr, ts)
        if close:
            eng.close()
        return rec, eng


def errors(rec, reason=None):
    return [d for e, h, s, d in rec.log if e == "ERROR" and (reason is None or d[0] == reason)]


def ends(rec):
    return [(s, d) for e, h, s, d in rec.log if e == "CONN_END"]


def handshake(t, copts=b"", sopts=b""):
    t.c(C, 0, F.TH_SYN, opts=copts)
    t.s(S, C + 1, F.TH_SYN | F.TH_ACK, opts=sopts)
    t.c(C + 1, S + 1, F.TH_ACK, opts=copts)


# ---------------------------------------------------------------- data after FIN

def test_fin_retransmitted_after_trailing_data_keeps_data_out_of_stream():
    """RFC 9293 3.10.7.4 seventh: after the FIN a receiver ignores segment text.
    The client sends 'hello', its FIN, 'EVIL' sequenced after the FIN, the FIN
    again at the end of those bytes, then 'EVIL' once more with the FIN at
    the FIN's own number.  The server's stream is 'hello', no gap at the FIN,
    each later byte reported as DATA_AFTER_FIN, and the close completes."""
    t = Trace()
    handshake(t)
    t.c(C + 1, S + 1, F.TH_PUSH | F.TH_ACK, b"hello")
    t.c(C + 6, S + 1, F.TH_FIN | F.TH_ACK)                      # FIN at offset 5
    t.c(C + 7, S + 1, F.TH_PUSH | F.TH_ACK, b"EVIL")            # after the FIN
    t.c(C + 11, S + 1, F.TH_FIN | F.TH_ACK)                     # FIN "retransmitted" further on
    t.c(C + 6, S + 1, F.TH_FIN | F.TH_PUSH | F.TH_ACK, b"EVIL")  # at the FIN's number
    t.s(S + 1, C + 7, F.TH_ACK)                                 # the server acks the first FIN
    t.s(S + 1, C + 7, F.TH_FIN | F.TH_ACK)
    t.c(C + 7, S + 2, F.TH_ACK)
    rec, eng = t.run()
    assert rec.data[Side.SERVER] == b"hello"
    assert errors(rec, "DATA_AFTER_FIN") == [("DATA_AFTER_FIN", 6, 4), ("DATA_AFTER_FIN", 5, 4)]
    assert not errors(rec, "GAP")  # no one-byte gap at the FIN
    assert ends(rec) == [("CLIENT", "CLOSE"), ("SERVER", "CLOSE")]
    assert eng.counters()["errors"]["data_after_fin"] == 2


def test_data_after_fin_then_ack_past_it_declares_no_gap():
    """A receiver acknowledging past the FIN (FIN + 1) does not make the FIN's
    number a missing byte even when bytes were sent after it."""
    t = Trace()
    handshake(t)
    t.c(C + 1, S + 1, F.TH_PUSH | F.TH_ACK, b"abc")
    t.c(C + 4, S + 1, F.TH_FIN | F.TH_ACK)
    t.c(C + 5, S + 1, F.TH_PUSH | F.TH_ACK, b"later")
    t.s(S + 1, C + 5, F.TH_ACK)
    rec, _ = t.run(close=False)
    assert rec.data[Side.SERVER] == b"abc"
    assert errors(rec) == [("DATA_AFTER_FIN", 4, 5)]


# ---------------------------------------------------------------- gap before FIN

def test_bytes_missing_before_fin_are_a_gap_at_flow_end():
    """Bytes missing between the last in-order byte and the FIN's sequence
    number are reported as a GAP up to the FIN when the flow ends."""
    t = Trace()
    handshake(t)
    t.c(C + 1, S + 1, F.TH_PUSH | F.TH_ACK, b"AAAA")
    # 'BBBB' (offsets 4..8) never captured
    t.c(C + 9, S + 1, F.TH_FIN | F.TH_ACK)                      # FIN at offset 8
    rec, eng = t.run()
    assert errors(rec) == [("GAP", 4, 4)]
    assert rec.data[Side.SERVER] == b"AAAA"
    assert eng.counters()["errors"]["gap"] == 1


def test_bytes_missing_before_fin_are_a_gap_when_the_fin_is_acked():
    """The receiver acknowledged the FIN: the bytes before it reached it, the
    monitor never saw them, the gap is reported at that ACK (once)."""
    t = Trace()
    handshake(t)
    t.c(C + 1, S + 1, F.TH_PUSH | F.TH_ACK, b"AAAA")
    t.c(C + 9, S + 1, F.TH_FIN | F.TH_ACK)
    t.s(S + 1, C + 10, F.TH_ACK)
    rec, _ = t.run()
    assert errors(rec) == [("GAP", 4, 4)]
    i = next(k for k, x in enumerate(rec.log) if x[0] == "ERROR")
    assert rec.log.index(("CONN_END", "NONE", "CLIENT", "SHUTDOWN")) > i


# ---------------------------------------------------------------- PAWS

def test_spoofed_rst_with_old_tsval_does_not_close_flow_before_synack():
    """RFC 7323 5.3 R1: the client's SYN carried TSval 1000; a RST 'from the
    client' with TSval 500 races the SYN-ACK.  It fails PAWS (ERROR PAWS,
    counted), the flow stays and the real handshake completes."""
    t = Trace()
    t.c(C, 0, F.TH_SYN, opts=ts_opt(1000))
    t.c(C + 1, 0, F.TH_RST, opts=ts_opt(500))
    t.s(S, C + 1, F.TH_SYN | F.TH_ACK, opts=ts_opt(7000, 1000))
    t.c(C + 1, S + 1, F.TH_ACK, opts=ts_opt(1001, 7000))
    t.c(C + 1, S + 1, F.TH_PUSH | F.TH_ACK, b"GET /", opts=ts_opt(1002, 7000))
    rec, eng = t.run(close=False)
    assert errors(rec) == [("PAWS", 500, 1000)]
    assert not ends(rec)
    (flow,) = eng.live_flows()
    assert flow.client.state.name == flow.server.state.name == "ESTABLISHED"
    assert rec.data[Side.SERVER] == b"GET /"
    assert eng.counters()["errors"]["paws"] == 1


def test_spoofed_fin_with_old_tsval_does_not_close_flow_before_synack():
    """The same with a FIN+ACK: neither model moves (the sender's would have
    gone to FIN-WAIT-1, the receiver's to CLOSE-WAIT)."""
    t = Trace()
    t.c(C, 0, F.TH_SYN, opts=ts_opt(1000))
    t.c(C + 1, S + 1, F.TH_FIN | F.TH_ACK, opts=ts_opt(999))
    t.s(S, C + 1, F.TH_SYN | F.TH_ACK, opts=ts_opt(7000, 1000))
    t.c(C + 1, S + 1, F.TH_ACK, opts=ts_opt(1001, 7000))
    rec, eng = t.run(close=False)
    assert errors(rec) == [("PAWS", 999, 1000)]
    (flow,) = eng.live_flows()
    assert flow.client.state.name == flow.server.state.name == "ESTABLISHED"
    assert ("CLIENT", "SYN_SENT->ESTABLISHED") in rec.states()
    assert not [s for s in rec.states() if "FIN_WAIT" in s[1] or "CLOSE_WAIT" in s[1]]


def test_rst_with_current_tsval_before_synack_still_closes():
    """PAWS refuses only older timestamps: an in-window RST with TSval >=
    TS.Recent ends the flow as before."""
    t = Trace()
    t.c(C, 0, F.TH_SYN, opts=ts_opt(1000))
    t.c(C + 1, 0, F.TH_RST, opts=ts_opt(1000))
    rec, _ = t.run(close=False)
    assert not errors(rec)
    assert ends(rec) == [("CLIENT", "RST"), ("SERVER", "RST")]


def test_established_old_tsval_data_not_stored_and_wraparound_accepted():
    """An established flow with timestamps: a segment whose TSval went back
    is refused (not stored, counted); TSvals that wrapped past 2^32 are newer."""
    t = Trace()
    hi = 0xFFFFFFF0
    handshake(t, ts_opt(hi), ts_opt(7000, hi))
    t.c(C + 1, S + 1, F.TH_PUSH | F.TH_ACK, b"one ", opts=ts_opt(hi + 4))
    t.s(S + 1, C + 5, F.TH_ACK, opts=ts_opt(7001, hi + 4))
    t.c(C + 5, S + 1, F.TH_PUSH | F.TH_ACK, b"OLD!", opts=ts_opt(hi - 100))
    t.c(C + 5, S + 1, F.TH_PUSH | F.TH_ACK, b"two", opts=ts_opt((hi + 20) & 0xFFFFFFFF))
    rec, eng = t.run(close=False)
    assert errors(rec) == [("PAWS", hi - 100, hi + 4)]
    assert rec.data[Side.SERVER] == b"one two"
    assert eng.counters()["errors"]["paws"] == 1


def test_no_paws_without_timestamps_negotiated():
    """The server's SYN-ACK carries no Timestamps option: PAWS stays off."""
    t = Trace()
    handshake(t, ts_opt(1000), b"")
    t.c(C + 1, S + 1, F.TH_PUSH | F.TH_ACK, b"data", opts=ts_opt(5))
    rec, _ = t.run(close=False)
    assert not errors(rec)
    assert rec.data[Side.SERVER] == b"data"


# ---------------------------------------------------------------- IP length > wire

def _pcap_run(tmp_path, records):
    path = tmp_path / "t.pcap"
    path.write_bytes(N.pcap(records))
    eng = mos.Engine(mos.Config(checksum="ignore"))
    rec = Recorder()
    eng.attach(rec.mon)
    eng.run(str(path))
    return eng, rec


def test_ip_length_beyond_wire_is_malformed_not_snapped(tmp_path):
    """A frame whose IP total length claims 100 bytes more than the frame
    carried, in a capture that did not cut it (caplen = wire length): counted
    malformed (ip_len_over_wire), never used as a snapped segment."""
    good = frame(True, C, 0, F.TH_SYN)
    bad = frame(True, C + 1, S + 1, F.TH_PUSH | F.TH_ACK, b"x" * 10, ip_len_extra=100)
    eng, rec = _pcap_run(tmp_path, [(10**9, good), (10**9 + 1000, bad)])
    c = eng.counters()
    assert (c["malformed"], c["ip_len_over_wire"], c["tcp"], c["snapped"]) == (1, 1, 1, 0)
    # the same through feed() (caplen = wire length there too)
    eng2 = mos.Engine(mos.Config(checksum="ignore"))
    eng2.feed(bad, 1.0)
    assert eng2.counters()["ip_len_over_wire"] == 1 and eng2.counters()["tcp"] == 0


def test_ip_length_beyond_capture_cut_by_snaplen_is_snapped(tmp_path):
    """The same frame cut by the capture (wire length > caplen) keeps the
    snapped behaviour: a TCP segment whose missing bytes are a hole."""
    full = frame(True, C + 1, S + 1, F.TH_PUSH | F.TH_ACK, b"x" * 110)
    cut = full[:-100]
    t = [(10**9, frame(True, C, 0, F.TH_SYN)),
         (10**9 + 1000, frame(False, S, C + 1, F.TH_SYN | F.TH_ACK)),
         (10**9 + 2000, cut, len(full))]
    eng, rec = _pcap_run(tmp_path, t)
    c = eng.counters()
    assert (c["malformed"], c["ip_len_over_wire"], c["tcp"], c["snapped"]) == (0, 0, 3, 1)


def test_ip_fragment_length_beyond_wire_is_malformed():
    """An IP fragment that claims more bytes than the wire carried is not fed
    to reassembly."""
    seg = N.tcp(CPORT, SPORT, C, 0, 0x02, payload=b"y" * 40)
    ip = N.ip4(CIP, SIP, payload=seg[:24], flags=1, tot=20 + 24 + 64)
    eng = mos.Engine(mos.Config(checksum="ignore"))
    eng.feed(N.eth(ip, 0x0800), 1.0)
    c = eng.counters()
    assert (c["malformed"], c["ip_len_over_wire"], c["fragments"]) == (1, 1, 0)


# ---------------------------------------------------------------- RST below ISN+1

def test_rst_below_isn_plus_1_after_syn_is_not_accepted():
    """RFC 5961 3.2: right after the SYN, a RST 'from the client' with the
    SYN's own sequence number (below ISN+1, the server's RCV.NXT) is outside
    the window: RST_OUT_OF_WINDOW, and the handshake goes on."""
    t = Trace()
    t.c(C, 0, F.TH_SYN)
    t.c(C, 0, F.TH_RST)
    t.s(S, C + 1, F.TH_SYN | F.TH_ACK)
    t.s(S, 0, F.TH_RST)  # below the server's ISN+1, before the client's ACK
    t.c(C + 1, S + 1, F.TH_ACK)
    rec, eng = t.run(close=False)
    assert [(s, d) for e, h, s, d in rec.log if e == "ERROR"] == \
        [("SERVER", ("RST_OUT_OF_WINDOW", C, 0)), ("CLIENT", ("RST_OUT_OF_WINDOW", S, 0))]
    assert not ends(rec)
    (flow,) = eng.live_flows()
    assert flow.client.state.name == flow.server.state.name == "ESTABLISHED"


def test_rst_at_isn_plus_1_after_syn_still_accepted():
    t = Trace()
    t.c(C, 0, F.TH_SYN)
    t.c(C + 1, 0, F.TH_RST)
    rec, _ = t.run(close=False)
    assert ends(rec) == [("CLIENT", "RST"), ("SERVER", "RST")]
