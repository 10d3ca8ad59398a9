"""Evasion resistance of the IDS: the stream a rule sees is the stream the
receiver accepts.  Each conversation is built with dpkt (addresses from
198.18.0.0/15) and run through mos.Engine with middleboxes.ids.Ids; the
signature is ``EVILSTRING`` (sid 1, a stream rule to the server)."""

from __future__ import annotations

import io
import json
import struct

import pytest

import mos
from middleboxes.ids.eve import Eve
from middleboxes.ids.ids import Ids
from middleboxes.ids.rules import load_rules_text

dpkt = pytest.importorskip("dpkt")
A, S, P, R, F = (dpkt.tcp.TH_ACK, dpkt.tcp.TH_SYN, dpkt.tcp.TH_PUSH, dpkt.tcp.TH_RST,
                 dpkt.tcp.TH_FIN)
C_IP, S_IP = "198.18.0.1", "198.19.0.1"
CPORT, SPORT = 40000, 80
CI, SI = 1000, 70000
RULES = 'alert tcp any any -> any 80 (msg:"evil"; flow:to_server; content:"EVILSTRING"; sid:1;)\n'


def seg(src, dst, sport, dport, seq, ack, flags, payload=b"", ts=None, bad_csum=False,
        win=65535, urp=0):
    opts = b""
    if ts is not None:  # NOP NOP timestamps (RFC 7323 3)
        opts = b"\x01\x01\x08\x0a" + struct.pack("!II", *ts)
    tcp = dpkt.tcp.TCP(sport=sport, dport=dport, seq=seq & 0xFFFFFFFF, ack=ack & 0xFFFFFFFF,
                       flags=flags, win=win, opts=opts, data=payload, urp=urp)
    tcp.off = 5 + len(opts) // 4
    ip = dpkt.ip.IP(src=bytes(map(int, src.split("."))), dst=bytes(map(int, dst.split("."))),
                    p=dpkt.ip.IP_PROTO_TCP, ttl=64, data=tcp)
    ip.len = len(ip)
    frame = bytes(dpkt.ethernet.Ethernet(src=b"\x02\0\0\0\0\x01", dst=b"\x02\0\0\0\0\x02",
                                         type=dpkt.ethernet.ETH_TYPE_IP, data=ip))
    if bad_csum:  # flip the TCP checksum (offset 14 + 20 + 16)
        b = bytearray(frame)
        b[50] ^= 0xFF
        frame = bytes(b)
    return frame


class Talk:
    """A client and a server; c(...) and s(...) add segments, offsets are
    stream offsets from the first payload byte of each side."""

    def __init__(self, timestamps=False):
        self.frames = []
        self.t = 1.0
        self.tsv = [100, 5000]
        self.timestamps = timestamps
        ts = (self.tsv[0], 0) if timestamps else None
        self._add(seg(C_IP, S_IP, CPORT, SPORT, CI, 0, S, ts=ts))
        ts = (self.tsv[1], self.tsv[0]) if timestamps else None
        self._add(seg(S_IP, C_IP, SPORT, CPORT, SI, CI + 1, S | A, ts=ts))
        self.c(0, b"", flags=A)

    def _add(self, fr):
        self.frames.append((self.t, fr))
        self.t += 0.001

    def _ts(self, who, tsval):
        if not self.timestamps:
            return None
        i = 0 if who == "c" else 1
        if tsval is None:
            self.tsv[i] += 1
            tsval = self.tsv[i]
        return (tsval, self.tsv[1 - i])

    def c(self, off, data, flags=A | P, ack=0, tsval=None, bad_csum=False):
        self._add(seg(C_IP, S_IP, CPORT, SPORT, CI + 1 + off, SI + 1 + ack, flags, data,
                      ts=self._ts("c", tsval), bad_csum=bad_csum))

    def s(self, off, data=b"", flags=A, ack=0, tsval=None):
        self._add(seg(S_IP, C_IP, SPORT, CPORT, SI + 1 + off, CI + 1 + ack, flags, data,
                      ts=self._ts("s", tsval)))

    def rst_from_server(self, seq_off):
        self._add(seg(S_IP, C_IP, SPORT, CPORT, SI + 1 + seq_off, 0, R))


def run_ids(rules, talk, ids_opts=None, **cfg):
    """(Ids, alert records) of `rules` over the conversation."""
    out = io.StringIO()
    ids = Ids(load_rules_text(rules), eve=Eve(out), **(ids_opts or {}))
    eng = mos.Engine(mos.Config(**{"checksum": "verify", **cfg}))
    ids.attach(eng)
    for ts, fr in talk.frames:
        eng.feed(fr, ts)
    eng.close()
    recs = [json.loads(x) for x in out.getvalue().splitlines()]
    return ids, [r for r in recs if r["event_type"] == "alert"]


def alerts(talk, ids_opts=None, **cfg):
    return run_ids(RULES, talk, ids_opts, **cfg)[1]


def sid_pkts(recs):
    return sorted((r["alert"]["signature_id"], r["pcap_cnt"]) for r in recs)


def test_signature_split_across_segments_is_found_once_with_the_completing_packet():
    t = Talk()
    t.c(0, b"GET /EVIL")
    t.c(9, b"STRING HTTP/1.0\r\n")
    t.s(0, ack=26)
    (a,) = alerts(t)
    assert a["alert"]["signature_id"] == 1 and a["pcap_cnt"] == 5  # the second data segment
    assert a["src_port"] == CPORT and a["direction"] == "to_server"


def test_signature_delivered_out_of_order_is_found_when_the_hole_fills():
    t = Talk()
    t.c(9, b"STRING")           # ahead of a hole
    t.c(0, b"GET /EVIL")        # fills it: the match completes on this packet
    t.s(0, ack=15)
    (a,) = alerts(t)
    assert a["pcap_cnt"] == 5


@pytest.mark.parametrize("policy,expect", [("first", 1), ("last", 0)])
def test_overlapping_retransmission_each_policy(policy, expect):
    """Out of order: EVILSTRING at offset 4, then GOODSTRING over the same
    bytes before the hole fills.  'first' keeps EVILSTRING, 'last' the
    retransmission: the rule sees what the policy keeps."""
    t = Talk()
    t.c(4, b"EVILSTRING")
    t.c(4, b"GOODSTRING")
    t.c(0, b"GET ")
    t.s(0, ack=14)
    assert len(alerts(t, overlap=policy)) == expect


@pytest.mark.parametrize("policy,expect", [("first", 0), ("last", 1)])
def test_overlap_hiding_the_signature_each_policy(policy, expect):
    t = Talk()
    t.c(4, b"GOODSTRING")
    t.c(4, b"EVILSTRING")
    t.c(0, b"GET ")
    t.s(0, ack=14)
    assert len(alerts(t, overlap=policy)) == expect


def test_bogus_out_of_window_rst_does_not_end_inspection():
    t = Talk()
    t.c(0, b"GET / ")
    t.rst_from_server(10_000_000)  # far outside the client's window: ignored
    t.c(6, b"EVILSTRING")
    t.s(0, ack=16)
    assert len(alerts(t)) == 1


def test_in_window_rst_ends_the_flow_and_later_bytes_are_not_inspected():
    t = Talk()
    t.c(0, b"GET / ")
    t.rst_from_server(0)
    t.c(6, b"EVILSTRING")
    assert alerts(t) == []


@pytest.mark.parametrize("checksum,expect", [("verify", 0), ("ignore", 1)])
def test_signature_with_bad_checksum_first(checksum, expect):
    """The signature comes first in a segment with a bad checksum (a receiver
    drops it), then the same bytes benign: verified, no alert; with checks
    off (-k none), the bad segment counts and the policy 'first' keeps it."""
    t = Talk()
    t.c(0, b"GET /EVILSTRING", bad_csum=True)
    t.c(0, b"GET /GOODSTRING")
    t.s(0, ack=15)
    assert len(alerts(t, checksum=checksum)) == expect


def test_signature_after_a_bad_checksum_decoy_is_still_found():
    t = Talk()
    t.c(0, b"GET /GOODSTRING", bad_csum=True)  # dropped by the receiver
    t.c(0, b"GET /EVILSTRING")
    t.s(0, ack=15)
    assert len(alerts(t, checksum="verify")) == 1


def test_paws_failing_segment_cannot_hide_the_signature():
    """A segment with an old TSval (RFC 7323 5.3) carrying benign bytes is
    dropped by the receiver; the real one with the signature is inspected."""
    t = Talk(timestamps=True)
    t.c(0, b"GET /GOODSTRING", tsval=1)   # older than TS.Recent: PAWS drops it
    t.c(0, b"GET /EVILSTRING")
    t.s(0, ack=15)
    assert len(alerts(t)) == 1


def test_paws_failing_segment_with_the_signature_is_not_inspected():
    t = Talk(timestamps=True)
    t.c(0, b"GET /EVILSTRING", tsval=1)
    t.c(0, b"GET /GOODSTRING")
    t.s(0, ack=15)
    assert alerts(t) == []


def test_out_of_window_data_is_not_inspected():
    t = Talk()
    t.c(0, b"GET / ")
    t.c(200_000, b"EVILSTRING")        # beyond the server's 65535-byte window
    t.s(0, ack=6)
    assert alerts(t) == []


def test_rst_payload_is_not_inspected():
    t = Talk()
    t.c(0, b"GET / ")
    t._add(seg(C_IP, S_IP, CPORT, SPORT, CI + 7, SI + 1, R | A, b"EVILSTRING"))
    assert alerts(t) == []


def test_two_patterns_in_one_chunk_both_alert_and_repeats_alert_again():
    """Several notes for one chunk each get their rules checked; a pattern
    that comes again in a later chunk alerts again."""
    rules = RULES + 'alert tcp any any -> any 80 (msg:"b"; content:"OTHERONE"; sid:2;)\n'
    rules += 'alert tcp any any -> any 80 (msg:"c"; content:"OTHER"; content:"ONE"; distance:0; sid:3;)\n'
    t = Talk()
    t.c(0, b"EVILSTRING OTHERONE")
    t.c(19, b" and again EVILSTRING")
    t.s(0, ack=40)
    assert sid_pkts(run_ids(rules, t)[1]) == [(1, 4), (1, 5), (2, 4), (3, 4)]


def test_stream_size_gates_a_rule():
    rules = ('alert tcp any any -> any 80 (msg:"small"; content:"EVILSTRING"; '
             'stream_size:client,<,100; sid:1;)\n'
             'alert tcp any any -> any 80 (msg:"big"; content:"EVILSTRING"; '
             'stream_size:client,>,100; sid:2;)\n')
    t = Talk()
    t.c(0, b"EVILSTRING")
    t.c(10, b"x" * 200 + b"EVILSTRING")
    t.s(0, ack=220)
    assert sid_pkts(run_ids(rules, t)[1]) == [(1, 4), (2, 5)]


def test_overlap_with_different_bytes_raises_a_stream_event_rules_can_match():
    """A retransmission with different bytes (the evasion attempt itself) is an
    event: stream-event:reassembly_overlap_different_data alerts on it, and a
    backoff threshold keeps a flood of them down (1st, 10th, 100th, ...)."""
    rules = ('alert tcp any any -> any any (msg:"overlap diff"; '
             'stream-event:reassembly_overlap_different_data; '
             'threshold:type backoff, track by_flow, count 1, multiplier 10; sid:7;)\n'
             'alert tcp any any -> any any (msg:"gap"; stream-event:reassembly_seq_gap; sid:8;)\n')
    t = Talk()
    t.c(4, b"EVILSTRING")
    for i in range(12):
        t.c(4, b"GOODSTRIN" + bytes([48 + i % 10]))
    t.c(0, b"GET ")
    t.s(0, ack=14)
    ids, recs = run_ids(rules, t)
    assert [r["alert"]["signature_id"] for r in recs] == [7, 7]  # the 1st and 10th of 12
    assert ids.stats()["suppressed"] == 10


def test_unknown_stream_event_and_bad_backoff_are_refused_with_reasons():
    rs = load_rules_text(
        'alert tcp any any -> any any (msg:"x"; stream-event:3whs_wrong_seq_wrong_ack; sid:1;)\n'
        'alert tcp any any -> any any (msg:"y"; stream-event:reassembly_seq_gap; '
        'threshold:type backoff, track by_src, count 1, multiplier 10; sid:2;)\n')
    reasons = [r.reason for r in rs.refused]
    assert "is not raised by mos" in reasons[0] and "reassembly_seq_gap" in reasons[0]
    assert "track must be by_flow" in reasons[1]


def test_one_sided_flow_is_inspected():
    """Only the client's packets were captured (asymmetric routing): the
    stream is still reassembled and inspected (Suricata's async-oneside)."""
    t = Talk()
    t.frames = [fr for fr in t.frames if fr[1][26:30] == bytes([198, 18, 0, 1])]  # client's only
    t.c(0, b"GET /EVIL")
    t.c(9, b"STRING")
    assert len(alerts(t)) == 1


def test_urgent_data_is_an_event_a_rule_can_match():
    """URG with an urgent pointer: receivers differ on keeping the urgent byte
    in the stream, so an attacker can make the IDS and the application see
    different bytes; mos raises ERROR URGENT and stream-event:urgent_data
    matches it."""
    rules = ('alert tcp any any -> any 80 (msg:"urgent"; stream-event:urgent_data; sid:9;)\n'
             + RULES)
    t = Talk()
    t.c(0, b"GET /")
    t._add(seg(C_IP, S_IP, CPORT, SPORT, CI + 6, SI + 1, A | P | dpkt.tcp.TH_URG,
               b"EVIXLSTRING", urp=4))   # the X is the urgent byte
    t.s(0, ack=16)
    ids, recs = run_ids(rules, t)
    assert [r["alert"]["signature_id"] for r in recs] == [9]


def test_urgent_error_event_offsets():
    t = Talk()
    t.c(0, b"GET /")
    t._add(seg(C_IP, S_IP, CPORT, SPORT, CI + 6, SI + 1, A | P | dpkt.tcp.TH_URG, b"XYZ", urp=2))
    eng = mos.Engine(mos.Config(checksum="verify"))
    got = []
    mon = mos.Monitor()
    mon.on(mos.Event.ERROR, lambda f, s, e: got.append((s.name, f.event_info.reason.name,
                                                        f.event_info.a, f.event_info.b)))
    eng.attach(mon)
    for ts, fr in t.frames:
        eng.feed(fr, ts)
    assert got == [("SERVER", "URGENT", 5, 2)]
    assert eng.counters()["errors"]["urgent"] == 1


# ------------------------------------------------------------------ target-based policies

#: the segment held out of order at offset 4, the retransmission over it
#: (offset, bytes), and the policies under which its bytes win, which is
#: exactly when the stream holds EVILSTRING
SHAPES = {
    "starts-before": (b"GOODSTRING", (3, b"/EVILSTRING"),
                      {"last", "bsd", "linux", "old-linux", "solaris", "windows", "macos",
                       "hpux11"}),
    "same-start-longer": (b"GOODSTRING", (4, b"EVILSTRING!"),
                          {"last", "linux", "old-linux", "solaris", "hpux11"}),
    "same-start-same-end": (b"GOODSTRING", (4, b"EVILSTRING"),
                            {"last", "old-linux", "solaris", "hpux11"}),
    "starts-after-longer": (b"EVILxxxxxx", (8, b"STRING...."), {"last", "solaris", "hpux11"}),
    "starts-after-inside": (b"EVILxxxxxx", (8, b"STRING"), {"last"}),
}


def overlap_talk(shape):
    held, (off, data), _ = SHAPES[shape]
    t = Talk()
    t.c(4, held)                # out of order: waits above a hole
    t.c(off, data)              # the retransmission over it
    t.c(0, b"GET "[:min(off, 4)])
    t.s(0, ack=20)
    return t


@pytest.mark.parametrize("policy", ["first", "last", "bsd", "linux", "old-linux", "solaris",
                                    "windows", "vista", "macos", "hpux11"])
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_overlap_hiding_the_signature_each_target_policy(shape, policy):
    """The rule sees the bytes the receiving OS keeps, no more, no less."""
    want = 1 if policy in SHAPES[shape][2] else 0
    assert len(alerts(overlap_talk(shape), overlap=policy)) == want


def test_host_os_table_sets_each_flows_policy_by_receiving_host():
    """Engine default 'first'; the server's prefix says linux: the longer
    retransmission from the same start wins there, as Linux takes it."""
    from middleboxes.ids.hostos import HostPolicies
    t = overlap_talk("same-start-longer")
    assert alerts(t, overlap="first") == []
    table = HostPolicies.from_mapping({"windows": ["198.18.0.0/15"], "linux": [S_IP + "/32"]})
    assert len(alerts(t, {"host_os": table}, overlap="first")) == 1
    table = HostPolicies.from_mapping({"windows": ["198.18.0.0/15"]})     # bsd: kept
    assert alerts(t, {"host_os": table}, overlap="first") == []


# ------------------------------------------------------------------ IDS mode (stream.inline off)

def test_ids_mode_reports_a_match_with_the_senders_packet_after_the_ack():
    t = Talk()
    t.c(0, b"GET /EVILSTRING")   # frame 4
    t.s(0, ack=15)               # frame 5: the server acknowledges it
    t.c(15, b" HTTP/1.0")        # frame 6: the client's next packet reports it
    t.s(0, ack=24)
    (a,) = alerts(t)
    assert a["pcap_cnt"] == 4 and a["pkt_src"] == "wire/pcap"
    ids, recs = run_ids(RULES, t, {"stream_inline": False})
    (a,) = recs
    assert a["pcap_cnt"] == 6 and a["pkt_src"] == "wire/pcap"
    assert ids.stats()["deferred"] == 1


def test_ids_mode_never_acknowledged_match_comes_at_flow_end_on_a_pseudo_packet():
    t = Talk()
    t.c(0, b"GET /EVILSTRING")
    t.s(0, ack=4)                # acknowledges "GET " only
    t.c(15, b" HTTP/1.0")
    (a,) = alerts(t, {"stream_inline": False})
    assert a["pkt_src"] == "stream (flow timeout)" and "pcap_cnt" not in a
    assert "packet" not in a and a["payload_printable"].startswith("GET /EVILSTRING")


def test_ids_mode_late_data_already_acknowledged_alerts_at_once():
    """A capture can hold the ACK before the data it covers: then the bytes
    are acknowledged when they arrive."""
    t = Talk()
    t.s(0, ack=15)
    t.c(0, b"GET /EVILSTRING")   # frame 5
    (a,) = alerts(t, {"stream_inline": False})
    assert a["pcap_cnt"] == 5
