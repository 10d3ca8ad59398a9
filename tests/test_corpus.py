"""Every corpus capture against the expectation its upstream project checks.

The corpus (../shared/corpus, see its README) holds captures from
suricata-verify, Zeek's btest traces, PcapPlusPlus' reassembly tests and
peafowl, beside the upstream expectation files.  Those tools report other
things than mos does (alerts, conn.log lines, callback output), so each test
states the stream-level equivalent of the upstream check, and every
deliberate difference between mos and the upstream tool is named where it
applies (comments starting with "Difference:").

Settings follow the upstream test: Suricata's ``stream.midstream=true`` is
``midstream=True``, ``-k none`` is ``checksum="ignore"``, and Zeek's
baselines include flows whose checksums are wrong, so they were made with
checksums ignored (``-C``).
"""

from __future__ import annotations

import base64
import re

import pytest

import corpus
import mos
from corpus import corpus_path, trace
from mos import EndReason, ErrorReason, Side, TcpState

SV = "suricata-verify/"
ZK = "zeek/"
PP = "pcapplusplus/"

#: every capture of the corpus, and the tests below that check it
COVERED = {
    SV + "flowbit-oring/input.pcap": "test_flowbit_oring_*",
    SV + "alert-testmyids-midstream/input.pcap": "test_alert_testmyids_midstream_*",
    SV + "eve-overlap-payload-01/tcp-overlap.pcap": "test_eve_overlap_payload_01_*",
    SV + "eve-overlap-payload-04-partial-overlap/tcp-overlap2.pcap": "test_eve_overlap_payload_04_*",
    SV + "tcp-split-handshake-01-4whs/split-handshake-4whs.pcap": "test_tcp_split_handshake_4whs_*",
    SV + "tcp-rst-unacked-stream-01-raw/input.pcap": "test_tcp_rst_unacked_stream_*",
    SV + "http-ipv6/input.pcap": "test_http_ipv6_*",
    SV + "bug-6887-defrag-ipv4-tcp-syn/frag-ip-tcp-syn.pcap": "test_bug_6887_*",
    SV + "tcp-stream-after-swap/http-start-from-response.pcap": "test_tcp_stream_after_swap_*",
    ZK + "http-get/get.pcap": "test_zeek_conn_log[http-get], test_zeek_http_log_body_lengths",
    ZK + "missing-syn/missing-syn.pcap": "test_zeek_conn_log[missing-syn*], test_zeek_missing_syn_*",
    ZK + "wikipedia/wikipedia.pcap": "test_zeek_conn_log[wikipedia*], test_zeek_wikipedia_*",
    ZK + "vlan-mpls/mixed-vlan-mpls.pcap": "test_zeek_conn_log[vlan-mpls], test_zeek_vlan_mpls_*",
    ZK + "fin-retransmit/fin_retransmission.pcap": "test_zeek_fin_retransmit_*",
    ZK + "conn_state-RST/syn-then-stuff-then-rst.pcap": "test_zeek_conn_state_rst_*",
    PP + "one_tcp_stream/one_tcp_stream.pcap": "test_pcapplusplus_exact_bytes[one_tcp_stream], test_pcapplusplus_one_tcp_stream_*",
    PP + "three_http_streams/three_http_streams.pcap": "test_pcapplusplus_exact_bytes[three_http_streams_conn_*]",
    PP + "one_http_stream_fin/one_http_stream_fin2.pcap": "test_pcapplusplus_exact_bytes[one_http_stream_fin2]",
    PP + "one_http_stream_rst/one_http_stream_rst.pcap": "test_pcapplusplus_exact_bytes[one_http_stream_rst]",
    PP + "ipv6_http_stream/one_ipv6_http_stream.pcap": "test_pcapplusplus_exact_bytes[one_ipv6_http_stream]",
    PP + "frag_http_req/frag_http_req.pcap": "test_pcapplusplus_frag_http_req_*",
    "peafowl/http.pcap": "test_peafowl_http_*",
}


def test_every_corpus_capture_is_checked():
    """A capture added to the corpus (or a case added to its README) needs a test here."""
    found = corpus.corpus_captures()
    if not found:
        pytest.skip(corpus.MISSING)
    assert sorted(COVERED) == found
    readme = (corpus.CORPUS / "README.md").read_text()
    table = readme.split("## Cases", 1)[1]
    cases = re.findall(r"^\| ((?:suricata-verify|zeek|pcapplusplus|peafowl)/[^ |]+) \|", table, re.M)
    assert len(cases) == len(COVERED)
    for case in cases:
        assert any(rel == case or rel.startswith(case + "/") for rel in COVERED), case


def only_flow(t: corpus.Trace) -> corpus.FlowLog:
    assert len(t.flows) == 1, sorted(t.flows)
    return next(iter(t.flows.values()))


def state_path(f: corpus.FlowLog, side: Side) -> list:
    """The states one endpoint model went through, first to last."""
    out = []
    for _frame, s, old, new in f.states:
        if s == side:
            if not out:
                out.append(old)
            out.append(new)
    return out


def sent_payloads(f: corpus.FlowLog, side: Side) -> list:
    """Payload of every packet ``side`` sent (packet-level view, as tcp-pkt rules see it)."""
    return [p[3] for p in f.packets if p[1] == side and p[3]]


def reassembled_packets(path, **config) -> list:
    """(flags, ip header + tcp header + payload, captured frame) of every packet of a flow."""
    eng = mos.Engine(mos.Config(**config))
    mon = eng.attach(mos.Monitor())
    out = []

    def on_pkt(flow, side, ev):
        p = flow.packet
        out.append((p.flag_names, p.ip_header + p.tcp_header + p.payload, p.frame))

    mon.on(mos.Event.PKT_IN, on_pkt, hook=mos.Hook.SEND)
    eng.run(str(path))
    return out


# ================================================================ suricata-verify

def test_flowbit_oring_http_session_bytes_for_each_rule():
    """flowbit-oring: sid 4 fires once; alert-testmyids: sid 2100498 once.

    Difference: Suricata matches HTTP-parsed buffers (http_header,
    http.stat_code) and flowbits; mos has no HTTP parser, so the test checks
    the reassembled bytes those buffers are cut from."""
    t = trace(corpus_path(SV + "flowbit-oring/input.pcap"))
    f = t.flow("10.16.1.11:54186", "82.165.177.154:80")
    assert len(t.flows) == 1
    request_line, *headers = f.c2s.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    assert request_line == b"GET / HTTP/1.1"
    # sid 1 (noalert) sets fb1: "testmyids.com" in the request headers
    assert [h for h in headers if b"testmyids.com" in h] == [b"Host: www.testmyids.com"]
    # sids 2 and 3 would set fb2/fb3 (and alert): their contents appear nowhere
    for absent in (b"something", b"wwnotginh"):
        assert absent not in f.c2s and absent not in f.s2c
    # sid 4: http.stat_code "200" with fb1 set -> one response, status 200
    assert f.s2c.startswith(b"HTTP/1.1 200 OK\r\n") and f.s2c.count(b"HTTP/1.1 ") == 1
    # alert-testmyids (sid 2100498, target:dest_ip): once, in what the client received
    assert f.s2c.count(b"uid=0(root)") == 1 and b"uid=0(root)" not in f.c2s
    # complete session: handshake, data, FIN both ways, client closed first
    assert state_path(f, Side.CLIENT)[:3] == [TcpState.CLOSED, TcpState.SYN_SENT, TcpState.ESTABLISHED]
    assert (f.final["client_state"], f.final["server_state"]) == (TcpState.TIME_WAIT, TcpState.CLOSED)
    assert f.final["reason"] == EndReason.CLOSE
    assert not f.errors and not f.rexmit


def test_alert_testmyids_midstream_picked_up_with_server_on_port_80():
    """alert-testmyids-midstream (--set stream.midstream=true): one alert with
    src_port 80, one HTTP event with dest_port 80: the flow's server is port 80."""
    t = trace(corpus_path(SV + "alert-testmyids-midstream/input.pcap"), midstream=True)
    f = t.flow("10.16.1.11:54186", "82.165.177.154:80")
    assert len(t.flows) == 1 and f.final["midstream"]
    # the capture starts with the server's response: nothing from the client
    assert f.c2s == b""
    assert f.s2c.count(b"uid=0(root)") == 1  # the alert, from src_port 80
    assert f.s2c.startswith(b"HTTP/1.1 200 OK\r\n")
    # client FIN first, then the server's FIN, then the last ACK
    assert (f.final["client_state"], f.final["server_state"]) == (TcpState.TIME_WAIT, TcpState.CLOSED)


def test_alert_testmyids_midstream_ignored_without_midstream():
    """Difference: mos's midstream is off by default (DESIGN 2), Suricata's test
    turns it on; without it no flow exists and every packet is an orphan."""
    t = trace(corpus_path(SV + "alert-testmyids-midstream/input.pcap"))
    assert t.flows == {}
    assert t.orphans == [1, 2, 3, 4, 5] and t.counters["orphans"] == 5


@pytest.mark.parametrize("policy, held", [("first", b"GOOD"), ("last", b"EVIL")])
def test_eve_overlap_payload_01_stream_keeps_policy_bytes(policy, held):
    """eve-overlap-payload-01: tcp-stream rules see GOOD (sid 2 once, sid 1
    never); tcp-pkt rules see both (sids 3 and 4 once).

    Difference: Suricata applies a target-based overlap policy (default
    'bsd'); mos offers 'first' and 'last'.  'first' gives Suricata's answer
    here (and in -04); 'last' makes the later EVIL win.  The
    whole capture goes in as one burst, as `mos streams` reads it and as
    Suricata inspects the stream at flow timeout (pkt_src "stream (flow
    timeout)": mos ends this FIN-less flow at end of capture, SHUTDOWN)."""
    t = trace(corpus_path(SV + "eve-overlap-payload-01/tcp-overlap.pcap"), per_frame=False,
              overlap=policy)
    f = t.flow("1.1.1.1:12345", "2.2.2.2:8080")
    assert f.held[Side.SERVER] == held == f.c2s
    other = b"EVIL" if held == b"GOOD" else b"GOOD"
    assert other not in f.held[Side.SERVER]
    assert f.final["reason"] == EndReason.SHUTDOWN
    # packet level: both payloads went by, once each
    assert sent_payloads(f, Side.CLIENT) == [b"GOOD", b"EVIL"]


def test_eve_overlap_payload_01_overlap_reported():
    """The second segment repeats offset 0..4 with other bytes: REXMIT at its
    sender, ERROR OVERLAP_DIFF at the receiver; the reader got GOOD first."""
    t = trace(corpus_path(SV + "eve-overlap-payload-01/tcp-overlap.pcap"))
    f = t.flow("1.1.1.1:12345", "2.2.2.2:8080")
    assert f.new_data == [(5, Side.SERVER, b"GOOD")]
    assert f.rexmit == [(6, Side.CLIENT, 0, 4)]
    assert f.errors == [(6, Side.SERVER, ErrorReason.OVERLAP_DIFF, 0, 4)]


@pytest.mark.parametrize("policy, held", [("first", b"GOOD"), ("last", b"GXXX")])
def test_eve_overlap_payload_04_partial_overlap(policy, held):
    """eve-overlap-payload-04: 'XXX' at offset 1 overlaps the tail of 'GOOD'.
    Stream: GOOD yes (sid 2), XXX no (sid 1); packets: both (sids 3, 4).
    Under 'last' the newer XXX wins the 3 overlapped bytes."""
    t = trace(corpus_path(SV + "eve-overlap-payload-04-partial-overlap/tcp-overlap2.pcap"),
              per_frame=False, overlap=policy)
    f = t.flow("1.1.1.1:12345", "2.2.2.2:8080")
    assert f.held[Side.SERVER] == held
    assert (b"GOOD" in held, b"XXX" in held) == ((True, False) if policy == "first" else (False, True))
    assert sent_payloads(f, Side.CLIENT) == [b"GOOD", b"XXX"]
    assert f.errors == [(None, Side.SERVER, ErrorReason.OVERLAP_DIFF, 1, 3)]


@pytest.mark.parametrize("rel, held", [
    (SV + "eve-overlap-payload-01/tcp-overlap.pcap", b"EVIL"),
    (SV + "eve-overlap-payload-04-partial-overlap/tcp-overlap2.pcap", b"GXXX"),
])
def test_eve_overlap_payload_cli_overlap_last_writes_newer_bytes(rel, held):
    """`python -m mos streams --overlap last --write-dir`: the newer bytes are written."""
    run = corpus.mos_streams(corpus_path(rel), "--overlap", "last", subprocess_=True)
    assert run.returncode == 0, run.stderr
    c2s = [d for d in run.directions if d.direction == "c2s"]
    assert [d.data for d in c2s] == [held] and c2s[0].nbytes == 4


@pytest.mark.parametrize("rel, held", [
    (SV + "eve-overlap-payload-01/tcp-overlap.pcap", b"EVIL"),
    (SV + "eve-overlap-payload-04-partial-overlap/tcp-overlap2.pcap", b"GXXX"),
])
def test_eve_overlap_payload_cli_overlap_last_digest_matches_bytes(rel, held):
    """`mos streams --overlap last`: sha256 is the digest of the bytes the stream holds."""
    run = corpus.mos_streams(corpus_path(rel), "--overlap", "last")
    c2s = [d for d in run.directions if d.direction == "c2s"]
    assert c2s[0].data == held
    assert c2s[0].sha256 == corpus.sha256(held)


def test_tcp_split_handshake_4whs_reaches_established_and_sees_evil():
    """tcp-split-handshake-01-4whs: SYN, SYN from the server, SYN-ACK from the
    client, ACK; then 'EVIL'.  Sids 1, 2, 3 (any, stream, packet) once each.

    The first SYN's sender stays the client (DESIGN 2); the server's bare
    SYN is a simultaneous open for the client's model (RFC 9293 3.5,
    figure 8), and the client's SYN-ACK repeats its SYN (a REXMIT)."""
    t = trace(corpus_path(SV + "tcp-split-handshake-01-4whs/split-handshake-4whs.pcap"))
    f = t.flow("1.1.1.1:12345", "2.2.2.2:80")
    assert len(t.flows) == 1 and f.starts == 1
    assert state_path(f, Side.CLIENT) == [TcpState.CLOSED, TcpState.SYN_SENT, TcpState.SYN_RCVD,
                                          TcpState.ESTABLISHED, TcpState.CLOSED]
    assert state_path(f, Side.SERVER) == [TcpState.LISTEN, TcpState.SYN_RCVD,
                                          TcpState.ESTABLISHED, TcpState.CLOSED]
    established = max(fr for fr, _s, _o, new in f.states if new == TcpState.ESTABLISHED)
    assert established < 5  # both established before the data (frame 5)
    assert f.new_data == [(5, Side.SERVER, b"EVIL")]          # stream rule
    assert sent_payloads(f, Side.CLIENT) == [b"EVIL"]          # packet rule
    assert f.s2c == b""
    assert f.rexmit == [(3, Side.CLIENT, 0, 0)]
    assert f.final["reason"] == EndReason.RST  # frame 7, seq 1005 = server's RCV.NXT


def test_tcp_rst_unacked_stream_data_inspected_without_gap():
    """tcp-rst-unacked-stream-01-raw: the server sends 'Please Let Me In!' in 4
    segments; the client's RST acknowledges only 'Please '.  Sid 1 ('Let Me
    In') once, no reassembly gap (sid 2210048 never, reassembly_gap 0).

    Difference: Suricata inspects the un-ACKed bytes at flow timeout; mos
    delivers in-order bytes when they arrive, ACKed or not, so they are
    there too.  The RST itself carries 13 bytes ('Access Denied'), which
    never enter a stream (DESIGN 2)."""
    t = trace(corpus_path(SV + "tcp-rst-unacked-stream-01-raw/input.pcap"))
    f = t.flow("1.1.1.1:12345", "2.2.2.2:8080")
    assert f.s2c == b"Please Let Me In!" and f.s2c.count(b"Let Me In") == 1
    assert [d for _fr, _s, d in f.new_data] == [b"Please ", b"Let ", b"Me ", b"In!"]
    assert f.final["gaps"] == {Side.CLIENT: [], Side.SERVER: []}
    assert not [e for e in f.errors if e[2] == ErrorReason.GAP]
    assert t.counters["errors"]["gap"] == 0
    rst = [p for p in f.packets if "R" in p[2]]
    assert [(p[0], p[1], p[3]) for p in rst] == [(8, Side.CLIENT, b"Access Denied")]
    assert f.c2s == b""  # RST payload excluded
    assert (f.final["client_state"], f.final["server_state"]) == (TcpState.CLOSED, TcpState.CLOSED)
    assert f.final["reason"] == EndReason.RST


def test_http_ipv6_one_transaction_with_checksums_ignored():
    """http-ipv6 (-k none): no anomaly, no alert, one HTTP transaction with
    hostname [::1].  Every TCP checksum in the capture is wrong.

    Difference: Suricata's http.hostname is the Host header without the
    port; the stream carries the header itself, 'Host: [::1]:8000'."""
    path = corpus_path(SV + "http-ipv6/input.pcap")
    assert not any(s.checksum_ok for s in corpus.segments(path))
    t = trace(path, checksum="ignore")
    f = t.flow("[::1]:55717", "[::1]:8000")
    assert len(t.flows) == 1
    assert f.c2s.count(b" HTTP/1.1\r\n") == 1 and f.c2s.startswith(b"GET / HTTP/1.1\r\n")
    assert b"\r\nHost: [::1]:8000\r\n" in f.c2s
    assert f.s2c.count(b"HTTP/1.0 ") == 1 and f.s2c.startswith(b"HTTP/1.0 200 OK\r\n")
    assert f.errors == []  # no anomaly
    assert (f.final["client_state"], f.final["server_state"]) == (TcpState.CLOSED, TcpState.TIME_WAIT)
    assert f.final["reason"] == EndReason.CLOSE


def test_http_ipv6_nothing_with_checksums_verified():
    """Without -k none every segment is dropped for its checksum: no flow."""
    t = trace(corpus_path(SV + "http-ipv6/input.pcap"), checksum="verify")
    assert t.flows == {}
    assert t.counters["tcp"] == t.counters["bad_checksum"] == 14
    assert t.counters["errors"]["bad_checksum"] == 14


BUG_6887_PACKET = "RQAALAABAABABnTGAQEBAQICAgIwOR+QAAAAAQAAAABgAiAAGQwAAAMDDgA="


def test_bug_6887_syn_in_three_fragments_reassembled():
    """bug-6887: a SYN split in three IPv4 fragments (link type 228, raw IPv4):
    sid 1 (tcp.flags:S) once, on the reassembled packet whose bytes the eve
    record gives.  mos: one flow started by that SYN, the same bytes."""
    path = corpus_path(SV + "bug-6887-defrag-ipv4-tcp-syn/frag-ip-tcp-syn.pcap")
    assert corpus.read_frames(path)[0] == 228
    pk = reassembled_packets(path)
    assert [(flags, data) for flags, data, _fr in pk] == [("S", base64.b64decode(BUG_6887_PACKET))]
    t = trace(path)
    f = t.flow("1.1.1.1:12345", "2.2.2.2:8080")
    assert f.starts == 1 and [p[0] for p in f.packets] == [3]  # complete with the third fragment
    assert t.counters["fragments"] == 3
    assert t.counters["defrag"]["reassembled"] == 1
    assert (f.final["client_state"], f.final["server_state"]) == (TcpState.SYN_SENT, TcpState.SYN_RCVD)


def test_tcp_stream_after_swap_direction_and_sizes():
    """tcp-stream-after-swap (-k none, stream.midstream=true): the flow is
    to_server towards port 80 with 608 bytes to the server and 1037 to the
    client; an HTTP response matches no request (UNABLE_TO_MATCH_...).

    Difference: Suricata's flow.bytes_* count whole frames; mos's streams
    count payload, so the frame sums are taken from mos's packets by side."""
    t = trace(corpus_path(SV + "tcp-stream-after-swap/http-start-from-response.pcap"),
              midstream=True, checksum="ignore")
    f = t.flow("172.16.9.181:38498", "172.16.9.189:80")
    assert len(t.flows) == 1 and f.final["midstream"]
    assert f.packets[0][1] == Side.SERVER  # first seen from the server, roles not swapped
    assert sum(p[4] for p in f.packets if p[1] == Side.CLIENT) == 608
    assert sum(p[4] for p in f.packets if p[1] == Side.SERVER) == 1037
    assert (len(f.c2s), len(f.s2c)) == (344, 773)
    # one request, two responses: the first response answers nothing in the capture
    assert f.c2s.startswith(b"GET /favicon.ico HTTP/1.1\r\n") and f.c2s.count(b" HTTP/1.1\r\n") == 1
    assert re.findall(rb"HTTP/1\.1 (\d{3}) ", f.s2c) == [b"200", b"404"]
    assert (f.final["client_state"], f.final["server_state"]) == (TcpState.TIME_WAIT, TcpState.CLOSED)


def test_tcp_stream_after_swap_needs_midstream_and_checksums_off():
    """Without midstream, no flow; with checksums verified, the server's 4
    segments (frames 1, 2, 4, 7: all it sent) are dropped."""
    path = corpus_path(SV + "tcp-stream-after-swap/http-start-from-response.pcap")
    assert trace(path, checksum="ignore").flows == {}
    bad = [s.frame_no for s in corpus.segments(path) if not s.checksum_ok]
    assert bad == [1, 2, 4, 7]
    t = trace(path, midstream=True, checksum="verify")
    f = t.flow("172.16.9.181:38498", "172.16.9.189:80")
    assert (len(f.c2s), f.s2c) == (344, b"")
    assert t.counters["bad_checksum"] == 4


@pytest.mark.parametrize("rel, config, flows", [
    pytest.param(SV + "http-ipv6/input.pcap", {}, 1, id="http-ipv6-14-of-14-bad"),
    pytest.param(ZK + "vlan-mpls/mixed-vlan-mpls.pcap", {}, 3, id="vlan-mpls-22-of-47-bad"),
    pytest.param(SV + "tcp-stream-after-swap/http-start-from-response.pcap",
                 {"midstream": True}, 1, id="after-swap-4-of-8-bad"),
])
def test_checksum_auto_ignores_checksums_when_most_fail(rel, config, flows):
    path = corpus_path(rel)
    auto = trace(path, checksum="auto", **config)
    ignore = trace(path, checksum="ignore", **config)
    assert len(ignore.flows) == flows
    assert {k: (f.c2s, f.s2c) for k, f in auto.flows.items()} == \
           {k: (f.c2s, f.s2c) for k, f in ignore.flows.items()}


@pytest.mark.parametrize("rel", sorted(COVERED))
def test_bursts_do_not_change_streams_under_first(rel):
    """One frame per burst or the whole file in bursts: with overlap 'first' the
    streams, states and end reasons are the same (DESIGN 1: batching is an
    implementation detail).  Under 'last' they may differ by design: bytes a
    reader already took cannot be replaced."""
    path = corpus_path(rel)
    cfg = {"midstream": True, "checksum": "ignore"}

    def view(t):
        return {k: (f.c2s, f.s2c, f.final["client_state"], f.final["server_state"], f.final["reason"])
                for k, f in t.flows.items()}
    assert view(trace(path, **cfg)) == view(trace(path, per_frame=False, **cfg))


# ================================================================ zeek

def zeek_log(rel: str) -> list:
    """Rows of a Zeek ASCII log as dicts."""
    fields, rows = None, []
    for line in corpus_path(rel).read_text().splitlines():
        if line.startswith("#fields"):
            fields = line.split("\t")[1:]
        elif line and not line.startswith("#"):
            rows.append(dict(zip(fields, line.split("\t"))))
    return rows


def hostport(h: str, p: str) -> str:
    return f"[{h}]:{p}" if ":" in h else f"{h}:{p}"


def check_conn_state(row: dict, f: corpus.FlowLog) -> None:
    """Zeek's conn_state, in mos's terms."""
    st, fin = row["conn_state"], f.final
    if st == "SF":    # normal establishment and termination
        assert TcpState.ESTABLISHED in state_path(f, Side.CLIENT)
        assert fin["reason"] == EndReason.CLOSE
        assert {fin["client_state"], fin["server_state"]} == {TcpState.TIME_WAIT, TcpState.CLOSED}
    elif st == "S1":  # established, not terminated: mos ends it at end of capture
        assert (fin["client_state"], fin["server_state"]) == (TcpState.ESTABLISHED, TcpState.ESTABLISHED)
        assert fin["reason"] == EndReason.SHUTDOWN
    elif st == "SH":  # SYN then FIN from the originator, never an answer
        assert fin["server_packets"] == 0
        assert fin["client_state"] == TcpState.FIN_WAIT_1
    elif st == "OTH":  # no SYN seen: mos has it only as a mid-stream flow
        assert fin["midstream"]
    else:
        raise AssertionError(f"conn_state {st} not mapped")


ZEEK_CONN = [
    pytest.param(ZK + "http-get/get.pcap", ZK + "http-get/conn.log", {}, id="http-get"),
    # Difference: Zeek tracks connections without a SYN; mos with midstream on
    pytest.param(ZK + "missing-syn/missing-syn.pcap", ZK + "missing-syn/conn.log",
                 {"midstream": True}, id="missing-syn-midstream"),
    # Zeek's baseline has the 56730 flow, whose 22 checksums are all wrong: made with -C
    pytest.param(ZK + "vlan-mpls/mixed-vlan-mpls.pcap", ZK + "vlan-mpls/conn.log",
                 {"checksum": "ignore"}, id="vlan-mpls"),
    pytest.param(ZK + "wikipedia/wikipedia.pcap", ZK + "wikipedia/conn.log",
                 {"midstream": True}, id="wikipedia-midstream"),
    pytest.param(ZK + "wikipedia/wikipedia.pcap", ZK + "wikipedia/conn.log", {}, id="wikipedia"),
]


@pytest.mark.parametrize("rel, log, config", ZEEK_CONN)
def test_zeek_conn_log(rel, log, config):
    """conn.log per TCP connection: roles (orig = client), orig/resp bytes,
    packets and IP bytes, conn_state.

    Difference: Zeek counts orig_bytes/resp_bytes by sequence range, mos
    counts bytes present; they agree where missed_bytes is 0 (all rows here).
    Difference: Zeek logs UDP too; mos tracks TCP only.
    Difference: without midstream, mos skips connections whose SYN it did
    not see (history not starting with S); they become orphans."""
    t = trace(corpus_path(rel), **config)
    rows = zeek_log(log)
    tcp = [r for r in rows if r["proto"] == "tcp"]
    expected = set()
    for r in tcp:
        key = (hostport(r["id.orig_h"], r["id.orig_p"]), hostport(r["id.resp_h"], r["id.resp_p"]))
        if not config.get("midstream") and not r["history"].startswith("S"):
            assert key not in t.flows, f"{key}: no SYN seen ({r['history']}), midstream off"
            continue
        expected.add(key)
        f = t.flow(*key)
        assert r["missed_bytes"] == "0"
        if r["orig_bytes"] != "-":
            assert (len(f.c2s), len(f.s2c)) == (int(r["orig_bytes"]), int(r["resp_bytes"])), key
        else:
            assert (f.c2s, f.s2c) == (b"", b"")
        assert (f.final["client_packets"], f.final["server_packets"]) == \
               (int(r["orig_pkts"]), int(r["resp_pkts"])), key
        ip_bytes = {s: sum(p[5] for p in f.packets if p[1] == s) for s in (Side.CLIENT, Side.SERVER)}
        assert (ip_bytes[Side.CLIENT], ip_bytes[Side.SERVER]) == \
               (int(r["orig_ip_bytes"]), int(r["resp_ip_bytes"])), key
        check_conn_state(r, f)
    assert set(t.flows) == expected
    udp_hosts = {r["id.orig_h"] for r in rows if r["proto"] == "udp"} - {r["id.orig_h"] for r in tcp}
    assert not [k for k in t.flows if any(k[0].startswith(h) for h in udp_hosts)]
    if not config.get("midstream"):
        skipped = [r for r in tcp if not r["history"].startswith("S")]
        assert t.counters["orphans"] == sum(int(r["orig_pkts"]) + int(r["resp_pkts"]) for r in skipped)


@pytest.mark.parametrize("rel, log, config", [
    (ZK + "http-get/get.pcap", ZK + "http-get/http.log", {}),
    (ZK + "vlan-mpls/mixed-vlan-mpls.pcap", ZK + "vlan-mpls/http.log", {"checksum": "ignore"}),
])
def test_zeek_http_log_body_lengths(rel, log, config):
    """http.log response_body_len = the response stream after its header
    (the whole stream for HTTP/0.9, which has no header)."""
    t = trace(corpus_path(rel), **config)
    for r in zeek_log(log):
        f = t.flow(hostport(r["id.orig_h"], r["id.orig_p"]), hostport(r["id.resp_h"], r["id.resp_p"]))
        if r["version"] == "0.9":
            body = f.s2c
            assert f.c2s.startswith(b"GET " + r["uri"].encode() + b"\r\n")
        else:
            head, body = f.s2c.split(b"\r\n\r\n", 1)
            assert head.startswith(f"HTTP/{r['version']} {r['status_code']} {r['status_msg']}".encode())
            # (Zeek's version column is the response's: this 1.0 request got a 1.1 answer)
            assert f.c2s.startswith(f"{r['method']} {r['uri']} HTTP/".encode())
        assert len(body) == int(r["response_body_len"])


def test_zeek_missing_syn_roles_from_syn_ack():
    """missing-syn: the capture starts with the SYN-ACK; its sender is the
    server (DESIGN 2), so roles are right: 98 bytes from the client, 9417
    from the server.  Without midstream the flow is not tracked."""
    path = corpus_path(ZK + "missing-syn/missing-syn.pcap")
    t = trace(path, midstream=True)
    f = t.flow("141.42.64.125:56730", "125.190.109.199:80")
    assert f.packets[0][:3] == (1, Side.SERVER, "SA")  # Zeek's '^h': flipped, SYN-ACK first
    assert f.starts == 1 and f.final["midstream"]
    assert (len(f.c2s), len(f.s2c)) == (98, 9417)
    plain = trace(path)
    assert plain.flows == {} and plain.counters["orphans"] == 21


def test_zeek_wikipedia_lone_syn_ack_flow():
    """wikipedia, Zeek's '^h' row (173.192.163.128:80 sent one SYN-ACK): with
    midstream the SYN-ACK's receiver is the client, as in Zeek's flipped row."""
    t = trace(corpus_path(ZK + "wikipedia/wikipedia.pcap"), midstream=True)
    f = t.flow("141.142.220.235:6705", "173.192.163.128:80")
    assert [(p[1], p[2]) for p in f.packets] == [(Side.SERVER, "SA")]
    assert f.final["server_state"] == TcpState.SYN_RCVD


def test_zeek_vlan_mpls_encapsulations_and_checksums():
    """vlan-mpls: 3 connections (MPLS, untagged, 802.1Q).  With checksums
    verified the untagged one (all 22 checksums wrong) is gone."""
    path = corpus_path(ZK + "vlan-mpls/mixed-vlan-mpls.pcap")
    bad = [s for s in corpus.segments(path) if not s.checksum_ok]
    assert len(bad) == 22 and {s.src[1] for s in bad} | {s.dst[1] for s in bad} == {56730, 80}
    t = trace(path, checksum="verify")
    assert sorted(t.flows) == [("10.1.2.1:11001", "10.34.0.1:23"), ("10.20.80.1:50343", "10.0.0.15:80")]
    assert t.counters["bad_checksum"] == 22
    # Zeek's SH: the telnet flow (over MPLS) never closes; the next packet of the
    # capture comes years later, so mos ends it by idle timeout (tcp_timeout 30 s)
    assert t.flow("10.1.2.1:11001", "10.34.0.1:23").final["reason"] == EndReason.TIMEOUT


ZEEK_ENDPOINT_STATE = {5: "CLOSED", 6: "RESET"}  # Zeek's TCP_ENDPOINT_* numbering


def test_zeek_fin_retransmit_endpoint_records():
    """fin-retransmit `out`: orig [size=0, state=5 (CLOSED), num_pkts=3,
    num_bytes_ip=156]; resp [size=0, state=6 (RESET), num_pkts=2,
    num_bytes_ip=92].

    Difference: RFC 9293 has no RESET state; mos ends both models CLOSED
    and says "reset" through EndReason.RST."""
    out = corpus_path(ZK + "fin-retransmit/out").read_text()
    recs = [dict((k, int(v)) for k, v in re.findall(r"(size|state|num_pkts|num_bytes_ip)=(\d+)", line))
            for line in out.splitlines() if line.startswith("[")]
    orig, resp = recs
    t = trace(corpus_path(ZK + "fin-retransmit/fin_retransmission.pcap"))
    f = t.flow("10.1.30.117:55344", "17.167.193.62:443")
    assert (len(f.c2s), len(f.s2c)) == (orig["size"], resp["size"]) == (0, 0)
    for side, rec in ((Side.CLIENT, orig), (Side.SERVER, resp)):
        assert sum(1 for p in f.packets if p[1] == side) == rec["num_pkts"]
        assert sum(p[5] for p in f.packets if p[1] == side) == rec["num_bytes_ip"]
    assert ZEEK_ENDPOINT_STATE[orig["state"]] == "CLOSED"
    assert TcpState.FIN_WAIT_1 in state_path(f, Side.CLIENT)  # the originator closed
    assert ZEEK_ENDPOINT_STATE[resp["state"]] == "RESET"
    assert [(p[0], p[1], p[2]) for p in f.packets if "R" in p[2]] == [(5, Side.SERVER, "R")]
    assert f.final["reason"] == EndReason.RST
    assert (f.final["client_state"], f.final["server_state"]) == (TcpState.CLOSED, TcpState.CLOSED)
    # the FIN of frame 4 repeats the client's FIN of frame 2
    assert (4, Side.CLIENT, 0, 0) in f.rexmit


@pytest.mark.parametrize("rel, frame", [
    pytest.param(ZK + "fin-retransmit/fin_retransmission.pcap", 2, id="fin-retransmit-frame-2"),
    pytest.param(ZK + "conn_state-RST/syn-then-stuff-then-rst.pcap", 3, id="conn_state-RST-frame-3"),
])
def test_zeek_fin_without_ack_on_syn_sequence_does_not_close_receiver(rel, frame):
    """A FIN with the ACK bit off and the SYN's own sequence number, sent to a
    server that has only seen the SYN (SYN-RECEIVED): RFC 9293 3.10.7.4 drops it
    (not acceptable: SEG.SEQ < RCV.NXT; and "if the ACK bit is off drop the
    segment"), so the server model must not move to CLOSE-WAIT.  (In
    fin-retransmit the FIN of frame 4 has ACK on but the same sequence
    number: not acceptable either.)  A monitor that honours such a FIN can
    be told a connection is closing by a packet the real receiver ignores."""
    t = trace(corpus_path(rel))
    f = only_flow(t)
    fin = [p for p in f.packets if p[0] == frame]
    assert fin and fin[0][1] == Side.CLIENT and fin[0][2] == "F"  # FIN alone, no ACK
    assert TcpState.CLOSE_WAIT not in state_path(f, Side.SERVER)


def zeek_history(f: corpus.FlowLog) -> str:
    """Zeek-style history letters from mos's packet log (upper case: client)."""
    out = ""
    for _fr, side, flags, payload, _fl, _il in f.packets:
        if "R" in flags:
            c = "R"
        elif "S" in flags:
            c = "H" if "A" in flags else "S"
        elif "F" in flags:
            c = "F"
        elif payload:
            c = "D"
        else:
            c = "A"
        c = c if side == Side.CLIENT else c.lower()
        if c not in out:
            out += c
    return out


def test_zeek_conn_state_rst_history_and_oth():
    """conn_state-RST `out`, last line 'SaFR, OTH' (the other lines are other
    traces of Zeek's test): SYN, the responder's bare ACK, FIN and RST from
    the originator, all with sequence number 0; never established."""
    last = corpus_path(ZK + "conn_state-RST/out").read_text().strip().splitlines()[-1]
    history, state = [x.strip() for x in last.split(",")]
    t = trace(corpus_path(ZK + "conn_state-RST/syn-then-stuff-then-rst.pcap"))
    f = t.flow("1.1.1.1:13131", "1.1.1.2:31313")
    assert zeek_history(f) == history == "SaFR"
    assert state == "OTH"
    assert not [s for s in f.states if s[3] == TcpState.ESTABLISHED]
    assert f.final["reason"] == EndReason.RST  # seq 0 = the responder's RCV.NXT (RFC 5961 3.2)
    assert (f.c2s, f.s2c) == (b"", b"")


# ================================================================ PcapPlusPlus

def side_runs(f: corpus.FlowLog) -> dict:
    """PcapPlusPlus' numOfMessagesFromSide: how often the data switched to each side."""
    runs = {Side.SERVER: 0, Side.CLIENT: 0}
    last = None
    for _fr, side, _d in f.new_data:
        if side != last:
            runs[side] += 1
            last = side
    return runs


PCPP = [
    # (capture, expected output, client port, numOfDataPackets, messages per side, end)
    pytest.param(PP + "one_tcp_stream/one_tcp_stream.pcap", PP + "one_tcp_stream/one_tcp_stream_output.txt",
                 61541, 19, 2, EndReason.SHUTDOWN, id="one_tcp_stream"),
    # conn_N: PcapPlusPlus orders connections by flow-key hash; the files belong
    # to these client ports (their requests and sizes say so)
    pytest.param(PP + "three_http_streams/three_http_streams.pcap",
                 PP + "three_http_streams/three_http_streams_conn_1_output.txt",
                 44305, 2, 1, EndReason.CLOSE, id="three_http_streams_conn_1"),
    pytest.param(PP + "three_http_streams/three_http_streams.pcap",
                 PP + "three_http_streams/three_http_streams_conn_2_output.txt",
                 52328, 2, 1, EndReason.CLOSE, id="three_http_streams_conn_2"),
    # Difference: upstream removes conn 3's FIN packets before reassembly (and
    # checks it stays open); mos reads the whole capture, so it closes
    pytest.param(PP + "three_http_streams/three_http_streams.pcap",
                 PP + "three_http_streams/three_http_streams_conn_3_output.txt",
                 54615, 2, 1, EndReason.CLOSE, id="three_http_streams_conn_3"),
    pytest.param(PP + "one_http_stream_fin/one_http_stream_fin2.pcap",
                 PP + "one_http_stream_fin/one_http_stream_fin2_output.txt",
                 38630, 6, 1, EndReason.CLOSE, id="one_http_stream_fin2"),
    pytest.param(PP + "one_http_stream_rst/one_http_stream_rst.pcap",
                 PP + "one_http_stream_rst/one_http_stream_rst_output.txt",
                 5068, 2, 1, EndReason.RST, id="one_http_stream_rst"),
    pytest.param(PP + "ipv6_http_stream/one_ipv6_http_stream.pcap",
                 PP + "ipv6_http_stream/one_ipv6_http_stream.txt",
                 35997, 10, 3, EndReason.SHUTDOWN, id="one_ipv6_http_stream"),
]


@pytest.mark.parametrize("rel, expected, cport, ndata, nmsg, end", PCPP)
def test_pcapplusplus_exact_bytes(rel, expected, cport, ndata, nmsg, end):
    """PcapPlusPlus TcpReassembly tests: the output file is every data
    callback's bytes appended in callback order, both sides interleaved.

    Difference: mos keeps one stream per side; the test rebuilds the
    upstream view by feeding one frame per burst and appending what each
    CONN_NEW_DATA's peek returns.  Upstream's 'closed manually'
    (closeAllConnections) is mos's SHUTDOWN at end of capture."""
    t = trace(corpus_path(rel))
    [f] = [f for f in t.flows.values() if f.client.endswith(f":{cport}")]
    want = corpus_path(expected).read_bytes()
    got = b"".join(d for _fr, _s, d in f.new_data)
    assert got == want
    assert len(f.new_data) == ndata                                      # numOfDataPackets
    assert side_runs(f) == {Side.SERVER: nmsg, Side.CLIENT: nmsg}        # numOfMessagesFromSide
    assert f.final["reason"] == end
    assert f.final["gaps"] == {Side.CLIENT: [], Side.SERVER: []}


def test_pcapplusplus_one_tcp_stream_retransmissions():
    """Frames 7 and 24 re-send bytes already sent, re-segmented; frame 17 is a
    keep-alive: 1 byte (0x00) at SND.NXT-1.  All three are REXMIT; only the
    keep-alive's byte differs from what was stored (OVERLAP_DIFF)."""
    t = trace(corpus_path(PP + "one_tcp_stream/one_tcp_stream.pcap"))
    f = t.flow("10.0.0.1:61541", "81.218.72.15:80")
    assert f.rexmit == [(7, Side.CLIENT, 1451, 1420), (17, Side.CLIENT, 2870, 1),
                        (24, Side.CLIENT, 8528, 1420)]
    assert f.errors == [(17, Side.SERVER, ErrorReason.OVERLAP_DIFF, 2870, 1)]


def test_pcapplusplus_one_tcp_stream_keepalive_byte_wins_under_last():
    """Difference: PcapPlusPlus (like mos's default 'first') keeps the original
    byte; under 'last' the keep-alive's 0x00 replaces it in the stream."""
    path = corpus_path(PP + "one_tcp_stream/one_tcp_stream.pcap")
    first = trace(path, per_frame=False).flow("10.0.0.1:61541", "81.218.72.15:80").held[Side.SERVER]
    last = trace(path, per_frame=False, overlap="last").flow("10.0.0.1:61541", "81.218.72.15:80").held[Side.SERVER]
    assert len(first) == len(last) == 9948
    assert first[2870:2871] == b"}" and last[2870:2871] == b"\0"
    assert first[:2870] == last[:2870] and first[2871:] == last[2871:]


def test_pcapplusplus_frag_http_req_reassembled_frame():
    """IPFragmentation test: the 11 fragments give exactly the frame of
    frag_http_req_reassembled.txt (hex).

    Difference: PcapPlusPlus reassembles IP alone; mos hands the datagram to
    TCP, which needs midstream here (the capture has no handshake).  mos's
    view of the reassembled packet is ip_header + tcp_header + payload;
    Packet.frame stays the captured frame (the last fragment), whose
    Ethernet header is the reassembled frame's."""
    path = corpus_path(PP + "frag_http_req/frag_http_req.pcap")
    want = bytes.fromhex(corpus_path(PP + "frag_http_req/frag_http_req_reassembled.txt").read_text().strip())
    [(flags, data, frame)] = reassembled_packets(path, midstream=True)
    assert data == want[14:]
    assert frame[:14] == want[:14]
    t = trace(path, midstream=True)
    f = t.flow("172.16.133.54:64415", "216.137.33.81:80")
    assert f.c2s == want[14 + 40:] and len(f.c2s) == 1460
    assert t.counters["defrag"]["fragments"] == 11 and t.counters["defrag"]["reassembled"] == 1


def test_pcapplusplus_frag_http_req_partial_and_no_midstream():
    """TestIPFragPartialData: after the first 6 fragments, PcapPlusPlus can
    return the partial datagram (frag_http_req_partial.txt).

    Difference: mos never hands a partial datagram up; nothing reaches TCP
    until the datagram is complete.  The partial bytes upstream shows are
    a prefix of the complete payload.  Without midstream the complete
    segment is an orphan."""
    path = corpus_path(PP + "frag_http_req/frag_http_req.pcap")
    lt, frames = corpus.read_frames(path)
    part = trace(path, frames=frames[:6], midstream=True)
    assert part.flows == {} and part.counters["tcp"] == 0
    assert part.counters["fragments"] == 6 and part.counters["defrag"]["reassembled"] == 0
    partial = bytes.fromhex(corpus_path(PP + "frag_http_req/frag_http_req_partial.txt").read_text().strip())
    whole = bytes.fromhex(corpus_path(PP + "frag_http_req/frag_http_req_reassembled.txt").read_text().strip())
    assert whole.startswith(partial[:16]) and whole[14 + 40:].startswith(partial[14 + 40:])
    plain = trace(path)
    assert plain.flows == {} and plain.counters["orphans"] == 1


# ================================================================ peafowl

def test_peafowl_http_two_requests():
    """peafowl http.pcap: 909 bytes to the server, 2366 to the client: two
    requests (a digest-auth retry) and two responses (401, then 200)."""
    t = trace(corpus_path("peafowl/http.pcap"))
    f = t.flow("10.0.2.102:1093", "10.0.1.101:80")
    assert (len(f.c2s), len(f.s2c)) == (909, 2366)
    assert f.c2s.count(b"GET /Security/Digest/ HTTP/1.1\r\n") == 2
    assert re.findall(rb"HTTP/1\.1 (\d{3}) ", f.s2c) == [b"401", b"200"]
    assert f.final["reason"] == EndReason.SHUTDOWN  # no FIN in the capture
