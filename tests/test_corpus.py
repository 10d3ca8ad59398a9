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
import contextlib
import fnmatch
import gzip
import io
import ipaddress
import json
import re
import urllib.parse

import pytest

import corpus
import mos
import mos.cli
from corpus import corpus_path, trace
from mos import EndReason, ErrorReason, Side, TcpState

SV = "suricata-verify/"
ZK = "zeek/"
PP = "pcapplusplus/"
SVA = "suricata-verify-app/"

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
    # suricata-verify-app/: test_sva_flows_* are test_sva_flows_roles_sizes_and_ends[<case>]
    # and test_sva_flows_need_upstream_options[<case>] where upstream sets options
    SVA + "bug-130/input.pcap": "test_sva_flows_*, test_sva_bug_130_*",
    SVA + "bug-2430/backwards.pcap": "test_sva_flows_*, test_sva_bug_2430_*",
    SVA + "bug-2646-01/input.pcap": "test_sva_flows_*, test_sva_bug_2646_01_*",
    SVA + "bug-28/input.pcap": "test_sva_flows_*, test_sva_bug_28_*",
    SVA + "bug-3616-ips/input.pcap": "test_sva_flows_*, test_sva_bug_3616_*",
    SVA + "bug-4199-4/input.pcap": "test_sva_flows_*, test_sva_bug_4199_4_*",
    SVA + "bug-5929-01/1e3b98e5dad2954.pcap": "test_sva_flows_*, test_sva_bug_5929_*",
    SVA + "bug-814/input.pcap": "test_sva_flows_*, test_sva_bug_814_*",
    SVA + "bug-8336-01-default-track-only/input.pcap":
        "test_sva_flows_*, test_sva_bug_8336_*",
    SVA + "community-id-ipv4/input.pcap": "test_sva_flows_*, test_sva_community_id_ipv4_*",
    SVA + "detect-bsize-0/input.pcap": "test_sva_flows_*, test_sva_detect_bsize_0_*",
    SVA + "detect-content-ends-with-negated-01/input.pcap":
        "test_sva_flows_*, test_sva_detect_content_ends_with_negated",
    SVA + "detect-engine-state-01/input.pcap": "test_sva_flows_*, test_sva_detect_engine_state_01_*",
    SVA + "detect-uricontent-04/input.pcap": "test_sva_flows_*, test_sva_detect_uricontent_04_*",
    SVA + "http-chunked/input.pcap": "test_sva_flows_*, test_sva_http_chunked_*",
    SVA + "http-close-headers/input.pcap": "test_sva_flows_*, test_sva_http_close_headers_*",
    SVA + "http-evader-000/input.pcap": "test_sva_flows_*, test_sva_http_evader_*[http-evader-000*]",
    SVA + "http-evader-104/input.pcap": "test_sva_flows_*, test_sva_http_evader_*[http-evader-104*]",
    SVA + "http-missing-protocol/input.pcap": "test_sva_flows_*, test_sva_http_missing_protocol_*",
    SVA + "http-request-line/input.pcap": "test_sva_flows_*, test_sva_http_request_line_*",
    SVA + "http-response-line/input.pcap": "test_sva_flows_*, test_sva_http_response_line_*",
    SVA + "http-sticky-start/input.pcap": "test_sva_flows_*, test_sva_http_sticky_start_*",
    SVA + "sslv2-tls-upgrade-01/ssl-v2-s1.pcap": "test_sva_flows_*, test_sva_sslv2_tls_upgrade_*",
    SVA + "tls-cert-noissuer/tls.pcap": "test_sva_flows_*, test_sva_tls_cert_noissuer_*",
    SVA + "tls-certs-alert/input.pcap": "test_sva_flows_*, test_sva_tls_certs_alert_*",
    SVA + "tls-fingerprint-alert/input.pcap": "test_sva_flows_*, test_sva_tls_fingerprint_alert_*",
    SVA + "tls13-draft28/tls13_draft28.pcap": "test_sva_flows_*, test_sva_tls13_draft28_*",
}


def test_every_corpus_capture_is_checked():
    """A capture added to the corpus (or a case added to its README) needs a test here."""
    found = corpus.corpus_captures()
    if not found:
        pytest.skip(corpus.MISSING)
    assert sorted(COVERED) == found
    readme = (corpus.CORPUS / "README.md").read_text()
    # "## Cases" has two tables: the first, then the app cases under their own
    # "### suricata-verify-app/" heading; both are read
    table = readme.split("## Cases", 1)[1]
    case_re = r"^\| ((?:suricata-verify-app|suricata-verify|zeek|pcapplusplus|peafowl)/[^ |]+) \|"
    cases = re.findall(case_re, table, re.M)
    app = re.findall(case_re, table.split("### suricata-verify-app/", 1)[1], re.M)
    assert len(app) == 27 and all(c.startswith(SVA) for c in app)
    assert len(cases) == len(COVERED) and len(set(cases)) == len(cases)
    for case in cases:
        assert any(rel == case or rel.startswith(case + "/") for rel in COVERED), case


def test_covered_names_tests_that_exist():
    """Each COVERED entry names tests of this module (patterns, parameters left out)."""
    names = [n for n in globals() if n.startswith("test_")]
    for rel, tests in COVERED.items():
        for pat in tests.split(", "):
            assert fnmatch.filter(names, pat.split("[")[0]), f"{rel}: no test matches {pat}"


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
    here (and in -04); 'last' makes the later EVIL win in what the stream
    holds (Suricata inspects it at flow timeout, pkt_src "stream (flow
    timeout)": mos ends this FIN-less flow at end of capture, SHUTDOWN).
    Handlers run per event, as each packet fires it, so a reader that takes
    every new byte as it arrives read GOOD before EVIL came, whichever the
    policy, fed whole or frame by frame alike."""
    for per_frame in (False, True):
        t = trace(corpus_path(SV + "eve-overlap-payload-01/tcp-overlap.pcap"),
                  per_frame=per_frame, overlap=policy)
        f = t.flow("1.1.1.1:12345", "2.2.2.2:8080")
        assert f.held[Side.SERVER] == held and f.c2s == b"GOOD"
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


# ================================================================ suricata-verify-app (HTTP/1.x, TLS)
#
# Suricata parses HTTP and TLS and matches rules on the parsed buffers; mos
# hands a monitor the reassembled bytes of each direction.  Each test below
# cuts the buffer an upstream rule or EVE field names out of those bytes (with
# the small parsers of tests/corpus.py) and checks it the way the rule does:
# the same content, in the same direction, as often as upstream alerts.  A
# stream-level match is the precondition of every such alert: Suricata's
# parsers read the same reassembled bytes.
#
# Difference (all of them): mos has no HTTP or TLS parser, no rule engine and
# no EVE output; alert counts become "the content is present in that buffer
# that many times", EVE fields become the bytes they are copied from.

def sva_checks(case: str) -> list:
    """The checks of an upstream test.yaml: [(count, {dotted key: value})]."""
    import yaml

    def flat(d, prefix=""):
        out = {}
        for k, v in d.items():
            if isinstance(v, dict):
                out.update(flat(v, f"{prefix}{k}."))
            else:
                out[prefix + k] = v
        return out
    doc = yaml.safe_load(corpus_path(SVA + case + "/test.yaml").read_text())
    return [(c["filter"]["count"], flat(c["filter"]["match"])) for c in doc["checks"]]


def sva_record(case: str, event_type: str) -> dict:
    """The first upstream check on an EVE record type (tls, http, flow...), as flat fields."""
    recs = [m for _n, m in sva_checks(case) if m.get("event_type") == event_type]
    assert recs, f"{case}: test.yaml checks no {event_type} record"
    return recs[0]


def sva_sids(case: str) -> dict:
    """sid -> expected alert count, from test.yaml."""
    return {m["alert.signature_id"]: n for n, m in sva_checks(case)
            if m.get("event_type") == "alert" and "alert.signature_id" in m}


def eve_endpoints(m: dict) -> tuple:
    """(client, server) text of an EVE record (src is the client on http/tls/flow records)."""
    return hostport(str(ipaddress.ip_address(m["src_ip"])), m["src_port"]), \
        hostport(str(ipaddress.ip_address(m["dest_ip"])), m["dest_port"])


def requests(f: corpus.FlowLog) -> list:
    return corpus.http_messages(f.c2s, response=False)


def responses(f: corpus.FlowLog) -> list:
    return corpus.http_messages(f.s2c, response=True)


def vlan_ids(path) -> set:
    """802.1Q VLAN ids of a capture's Ethernet frames."""
    lt, frames = corpus.read_frames(path)
    assert lt == 1
    return {int.from_bytes(buf[14:16], "big") & 0x0FFF for _ts, buf in frames if buf[12:14] == b"\x81\x00"}


#: per capture: options (upstream's `-k none` is checksum ignore, its
#: stream.midstream=true is midstream where there is no handshake), the flows
#: mos tracks (client, server, bytes to the server, bytes to the client, end),
#: and the packets no flow takes (orphans).  Client and server are those of
#: the upstream EVE records where test.yaml has http/tls/flow records.
SVA_FLOWS = {
    "bug-130/input.pcap": ({}, [
        ("10.100.0.8:44270", "162.2.41.200:80", 566, 1825, EndReason.CLOSE),
    ], 0),
    # Difference: the closing segments come 60 s after the last data; mos's idle
    # timeout (30 s) ends the flow first and they are orphans (see the bug-2430 test)
    "bug-2430/backwards.pcap": ({}, [
        ("10.120.128.236:53909", "10.123.173.114:8080", 1681, 4267, EndReason.TIMEOUT),
    ], 4),
    # flow.reason "shutdown": the server's FIN is never acknowledged
    "bug-2646-01/input.pcap": ({"checksum": "ignore"}, [
        ("192.168.0.253:49584", "151.101.36.133:443", 916, 4610, EndReason.SHUTDOWN),
    ], 0),
    # Difference: the 5th retransmission (frame 9) comes 48 s after the 4th: idle
    # timeout, then an orphan; Suricata keeps the flow (its timeouts are longer)
    "bug-28/input.pcap": ({}, [("192.168.2.7:1041", "208.75.250.50:80", 442, 0, EndReason.TIMEOUT)], 1),
    "bug-3616-ips/input.pcap": ({}, [
        ("192.168.0.1:12900", "173.37.145.84:80", 450, 3654, EndReason.CLOSE),
    ], 0),
    "bug-4199-4/input.pcap": ({}, [
        ("10.20.48.52:53873", "10.50.1.91:10000", 349, 698, EndReason.CLOSE),
    ], 0),
    "bug-5929-01/1e3b98e5dad2954.pcap": ({}, [
        ("192.168.226.40:23193", "172.16.94.79:80", 93, 0, EndReason.SHUTDOWN),
    ], 0),
    # flow.reason "shutdown", tcp.state close_wait: the server never closes
    "bug-814/input.pcap": ({}, [
        ("[fe80::20c:29ff:fef3:cf38]:58307", "[fe80::20c:29ff:faf2:ab42]:80", 149, 0, EndReason.SHUTDOWN),
    ], 0),
    "bug-8336-01-default-track-only/input.pcap": ({}, [
        ("10.230.69.185:59001", "104.16.253.120:443", 669, 4124, EndReason.CLOSE),
    ], 0),
    # frames 42-43 (FIN, RST) follow the RST that ended the flow (frame 41)
    "community-id-ipv4/input.pcap": ({"checksum": "ignore"}, [
        ("172.26.0.39:35958", "172.217.14.206:443", 844, 27326, EndReason.RST),
    ], 2),
    "detect-bsize-0/input.pcap": ({"checksum": "ignore"}, [
        ("127.0.0.1:51136", "127.0.0.1:8001", 44, 186, EndReason.CLOSE),
    ], 0),
    "detect-content-ends-with-negated-01/input.pcap": ({}, [
        ("192.168.229.21:47242", "172.16.155.207:80", 60, 0, EndReason.SHUTDOWN),
    ], 0),
    # upstream sets stream.midstream=true, but the capture has the handshake
    "detect-engine-state-01/input.pcap": ({"checksum": "ignore"}, [
        ("1.2.3.4:51694", "1.2.3.5:8080", 176, 0, EndReason.CLOSE),
    ], 0),
    # Difference: the lone segment goes 192.168.1.5:53 -> 192.168.1.1:80; mos
    # guesses the lower port (53) as the server (DESIGN 2), Suricata takes the
    # sender of the first packet as the client, so the request lies in mos's s2c
    "detect-uricontent-04/input.pcap": ({"midstream": True}, [
        ("192.168.1.1:80", "192.168.1.5:53", 0, 57, EndReason.SHUTDOWN),
    ], 0),
    "http-chunked/input.pcap": ({}, [
        ("192.168.21.97:33138", "172.16.220.249:80", 376, 0, EndReason.SHUTDOWN),
    ], 0),
    "http-close-headers/input.pcap": ({"checksum": "ignore"}, [
        ("100.64.0.14:52398", "100.64.0.200:80", 143, 30, EndReason.CLOSE),
    ], 0),
    "http-evader-000/input.pcap": ({}, [("1.1.1.1:5013", "8.8.8.8:80", 69, 304, EndReason.CLOSE)], 0),
    "http-evader-104/input.pcap": ({}, [("1.1.1.1:10013", "8.8.8.8:80", 79, 245, EndReason.CLOSE)], 0),
    "http-missing-protocol/input.pcap": ({}, [
        ("192.168.140.10:49160", "5.8.88.25:80", 410, 60, EndReason.CLOSE),
    ], 0),
    "http-request-line/input.pcap": ({"midstream": True}, [
        ("5.6.7.8:6666", "1.2.3.4:63", 128, 0, EndReason.SHUTDOWN),
    ], 0),
    "http-response-line/input.pcap": ({"midstream": True}, [
        ("[::ffff:5.6.7.8]:6666", "[::ffff:1.2.3.4]:63", 130, 63, EndReason.SHUTDOWN),
    ], 0),
    "http-sticky-start/input.pcap": ({}, [
        ("192.168.3.131:55954", "65.55.17.37:80", 1837, 24470, EndReason.RST),
    ], 0),
    # frames 35-36 follow the client's RST (frame 34)
    "sslv2-tls-upgrade-01/ssl-v2-s1.pcap": ({}, [
        ("10.150.98.145:1660", "10.157.4.11:443", 777, 17058, EndReason.RST),
    ], 2),
    "tls-cert-noissuer/tls.pcap": ({"checksum": "ignore"}, [
        ("192.168.116.130:54080", "54.206.116.39:443", 436, 1334, EndReason.RST),
    ], 0),
    # frames 29-32 follow the RST that ended the flow (frame 28)
    "tls-certs-alert/input.pcap": ({"checksum": "ignore"}, [
        ("[2a03:b0c0:2:d0::bd3:4001]:48106", "[2606:2800:220:1:248:1893:25c8:1946]:443", 626, 6240, EndReason.RST),
    ], 4),
    "tls-fingerprint-alert/input.pcap": ({}, [
        ("10.16.1.11:54684", "24.244.4.23:443", 566, 4009, EndReason.RST),
    ], 0),
    # 2 tls records: two flows; the second is still open when the capture ends
    "tls13-draft28/tls13_draft28.pcap": ({"checksum": "ignore"}, [
        ("[::1]:39632", "[::1]:4433", 401, 3506, EndReason.RST),
        ("[::1]:39634", "[::1]:4433", 774, 524, EndReason.SHUTDOWN),
    ], 0),
}

_sva_traces: dict = {}


def sva_trace(rel: str, **extra) -> corpus.Trace:
    """The traced run of an app capture with its SVA_FLOWS options (cached: several tests read it)."""
    config = {**SVA_FLOWS[rel][0], **extra}
    key = (rel, tuple(sorted(config.items())))
    if key not in _sva_traces:
        _sva_traces[key] = trace(corpus_path(SVA + rel), **config)
    return _sva_traces[key]


def sva_flow(rel: str) -> corpus.FlowLog:
    t = sva_trace(rel)
    assert len(t.flows) == 1, sorted(t.flows)
    return next(iter(t.flows.values()))


@pytest.mark.parametrize("rel", sorted(SVA_FLOWS))
def test_sva_flows_roles_sizes_and_ends(rel):
    """Every app capture: the flows mos tracks (client and server as upstream's
    EVE records have them), bytes per direction, no gap, how each ends."""
    config, flows, orphans = SVA_FLOWS[rel]
    t = sva_trace(rel)
    assert [(k[0], k[1].split("#")[0], len(f.c2s), len(f.s2c), f.final["reason"])
            for k, f in t.flows.items()] == flows
    for f in t.flows.values():
        assert f.final["gaps"] == {Side.CLIENT: [], Side.SERVER: []}
        assert f.final["midstream"] == bool(config.get("midstream"))
    assert t.counters["orphans"] == orphans
    case = rel.split("/")[0]
    eve = {eve_endpoints(m) for _n, m in sva_checks(case)
           if m.get("event_type") in ("http", "tls", "flow") and "src_ip" in m}
    assert eve <= {(c, s) for c, s, *_ in flows}


@pytest.mark.parametrize("rel", sorted(r for r, (c, _f, _o) in SVA_FLOWS.items()
                                       if c.get("checksum") or c.get("midstream")))
def test_sva_flows_need_upstream_options(rel):
    """The options upstream sets are needed: with checksums verified, a flow
    whose SYN has a wrong checksum is not tracked and other bad segments are
    dropped; without midstream a capture with no handshake gives no flow."""
    config, flows, _o = SVA_FLOWS[rel]
    path = corpus_path(SVA + rel)
    strict = trace(path, checksum="verify", midstream=False)
    segs = corpus.segments(path)
    bad = [s for s in segs if not s.checksum_ok]
    if config.get("midstream"):
        assert strict.flows == {} and strict.counters["orphans"] == len(segs)
        return
    assert bad and strict.counters["bad_checksum"] == len(bad)
    for client, server, *_ in flows:
        syn = next(s for s in segs if corpus.addr_text(s.src) == client and s.flags & 0x02)
        assert ((client, server) in strict.flows) == syn.checksum_ok


# ---------------------------------------------------------------- HTTP/1.x

def test_sva_detect_uricontent_04_request_in_the_guessed_direction():
    """detect-uricontent-04: sids 1 (http.method GET), 2 (http.host
    www.example.com), 3 (http.uri /images.gif) once; one http record.

    Difference: http.host is lower-cased and http.uri normalised by
    Suricata; the stream has the bytes as sent ('www.ExAmPlE.cOM',
    '/../../images.gif'); the test applies both normalisations to them.
    The request is in mos's s2c (port guess, see SVA_FLOWS)."""
    rel = "detect-uricontent-04/input.pcap"
    f = sva_flow(rel)
    [req] = corpus.http_messages(f.s2c, response=False)
    method, uri, version = req.start.split(b" ")
    assert (method, version) == (b"GET", b"HTTP/1.1")                           # sid 1
    assert req.header(b"Host") == [b"www.ExAmPlE.cOM"]
    assert req.header(b"Host")[0].lower() == b"www.example.com"                 # sid 2
    assert corpus.remove_dot_segments(uri.decode()) == "/images.gif"            # sid 3
    assert b"images.gif" in uri                     # sid 4 (uricontent; not checked upstream)
    assert sva_sids("detect-uricontent-04") == {1: 1, 2: 1, 3: 1}


def test_sva_http_request_line_without_blank_line():
    """http-request-line (VLAN, mid-stream, one segment): http_request_line is
    'GET /index.html HTTP/1.0', 24 bytes: bsize >10, <100 and 10<>100 hold
    (sids 1-3), >100 does not (sid 4 never); sid 5 matches it whole.  The
    head is not finished (no blank line): the request line alone is enough."""
    path = corpus_path(SVA + "http-request-line/input.pcap")
    assert vlan_ids(path)
    f = sva_flow("http-request-line/input.pcap")
    assert b"\r\n\r\n" not in f.c2s and f.c2s.endswith(b"\r\n")
    line = f.c2s.split(b"\r\n", 1)[0]
    assert line == b"GET /index.html HTTP/1.0"                                  # sid 5
    assert 10 < len(line) < 100 and not len(line) > 100                         # sids 1-3, not 4
    assert sva_sids("http-request-line") == {1: 1, 2: 1, 3: 1, 4: 0, 5: 1}


def test_sva_http_response_line_in_the_reply_direction():
    """http-response-line (VLAN, IPv4-mapped IPv6, mid-stream): sids 1 and 2
    match 'HTTP/1.0 200 OK' / '200 OK' on the response line, once each.
    The response announces 7 bytes of body the capture does not have."""
    path = corpus_path(SVA + "http-response-line/input.pcap")
    assert vlan_ids(path)
    assert all(s.src[0].ipv4_mapped for s in corpus.segments(path))
    f = sva_flow("http-response-line/input.pcap")
    [req] = requests(f)
    [resp] = responses(f)
    assert req.start == b"GET /index.html HTTP/1.0"
    assert resp.start == b"HTTP/1.0 200 OK" and b"200 OK" in resp.start        # sids 1, 2
    assert b"HTTP/1.0 200 OK" not in f.c2s
    assert resp.header(b"Content-Length") == [b"7"] and resp.body == b""
    assert sva_sids("http-response-line") == {1: 1, 2: 1}


HTTP_CHUNKED_NAMES = [b"Host", b"Cookie", b"X-Qlik-User", b"User-Agent", b"Content-Length", b"Transfer-Encoding"]


def test_sva_http_chunked_header_names_in_request_head():
    """http-chunked: each of the six header names is found once in the raw
    to-server stream (sids 11-16) and in the request's header lines (the
    http.header / .raw / request_header sids 21-46).

    Difference: Suricata's http.header leaves Cookie out (sid 22 is not
    checked upstream); the head mos delivers has it like every other line.
    The request is a HEAD with 'Content-Length: 0' and the odd
    'Transfer-Encoding: ,<TAB>chunked,': no body follows."""
    f = sva_flow("http-chunked/input.pcap")
    [req] = requests(f)
    assert req.start.startswith(b"HEAD /resources/fonts/SourceSansPro-Regular.ttf ")
    names = [n for n, _v in req.headers]
    assert names == HTTP_CHUNKED_NAMES
    for name in HTTP_CHUNKED_NAMES:
        assert f.c2s.count(name) == 1 and len(req.header(name)) == 1
    assert req.header(b"Content-Length") == [b"0"] and req.header(b"Transfer-Encoding") == [b",\tchunked,"]
    assert f.c2s.endswith(b"\r\n\r\n") and req.body == b"" and f.s2c == b""
    sids = sva_sids("http-chunked")
    assert 22 not in sids and len(sids) == 23 and set(sids.values()) == {1}


def test_sva_bug_5929_uri_length_and_distance_within():
    """bug-5929-01: urilen <70 and http.uri bsize <70; '.php?' then '=01&'
    exactly 4 bytes after it (distance 4, within 4): sids 1-4 once."""
    f = sva_flow("bug-5929-01/1e3b98e5dad2954.pcap")
    [req] = requests(f)
    uri = req.start.split(b" ")[1]
    assert len(uri) < 70
    end = uri.index(b".php?") + len(b".php?")
    assert uri[end + 4:end + 8] == b"=01&"
    assert sva_sids("bug-5929-01") == {1: 1, 2: 1, 3: 1, 4: 1}


def test_sva_bug_4199_4_request_body_in_its_own_segment():
    """bug-4199-4: the POST's headers (frame 4) and body (frame 6) come in
    separate segments; http.request_body is 'id=cat+%2Fetc%2Fpasswd': 'id=cat'
    raw (sids 1, 2, with 'exec' in the uri), '/etc/passwd' only after
    url_decode (sids 3-5; 11 and 12 never), '/passwd/etc' in neither (13-15 never)."""
    f = sva_flow("bug-4199-4/input.pcap")
    c2s = [(fr, d) for fr, s, d in f.new_data if s == Side.SERVER]
    assert [fr for fr, _d in c2s] == [4, 6] and c2s[1][1] == b"id=cat+%2Fetc%2Fpasswd"
    [req] = requests(f)
    assert req.start == b"POST /exec_post.php HTTP/1.1" and b"exec" in req.start.split(b" ")[1]
    body = req.body
    assert body == c2s[1][1] and req.header(b"Content-Length") == [str(len(body)).encode()]
    decoded = urllib.parse.unquote_plus(body.decode()).encode()   # Suricata's url_decode
    assert b"id=cat" in body.lower()                                  # sids 1, 2
    assert b"/etc/passwd" not in body.lower()                         # sids 11, 12
    assert b"/etc/passwd" in decoded.lower()                          # sids 3, 4, 5
    assert b"/passwd/etc" not in decoded.lower()                      # sids 13, 14, 15
    # the rules' $HOME_NET: the server (10.50.1.91) is in RFC 1918 space
    assert ipaddress.ip_address(f.server.split(":")[0]).is_private
    sids = sva_sids("bug-4199-4")
    assert sids == {1: 1, 2: 1, 3: 1, 4: 1, 5: 1, 11: 0, 12: 0, 13: 0, 14: 0, 15: 0}


def test_sva_detect_bsize_0_empty_user_agent_one_line_per_segment():
    """detect-bsize-0 (DLT_NULL, bad checksums): the request's lines end in a
    bare LF and come one per segment; 'User-Agent:' has an empty value:
    bsize 0 (sid 46) and no 'u' in it (sid 47)."""
    path = corpus_path(SVA + "detect-bsize-0/input.pcap")
    assert corpus.read_frames(path)[0] == 0
    f = sva_flow("detect-bsize-0/input.pcap")
    c2s = [d for _fr, s, d in f.new_data if s == Side.SERVER]
    assert c2s == [b"GET / HTTP/1.1\n", b"Host: localhost\n", b"User-Agent:\n", b"\n"]
    [req] = requests(f)
    assert req.header(b"User-Agent") == [b""] and b"u" not in req.header(b"User-Agent")[0]
    [resp] = responses(f)
    assert resp.start == b"HTTP/1.1 307 Temporary Redirect"
    assert sva_sids("detect-bsize-0") == {46: 1, 47: 1}


def test_sva_bug_814_ipv6_vlan_request_and_flow_counters():
    """bug-814 (IPv6 link-local, VLAN 1111): sid 1 (http_method GET,
    http_raw_uri /cgi-bin/cart32.exe) once; the http record's hostname,
    url, user agent, protocol, length 0; the flow record's packet and byte
    counters (whole frames, as Suricata counts)."""
    path = corpus_path(SVA + "bug-814/input.pcap")
    http = sva_record("bug-814", "http")
    flow = sva_record("bug-814", "flow")
    alert = sva_record("bug-814", "alert")
    assert vlan_ids(path) == {http["vlan[0]"]} == {1111}
    f = sva_flow("bug-814/input.pcap")
    assert (f.client, f.server) == eve_endpoints(http)
    [req] = requests(f)
    method, url, proto = req.start.decode().split(" ")
    assert (method, url, proto) == (http["http.http_method"], http["http.url"], http["http.protocol"])
    assert req.header(b"Host") == [http["http.hostname"].encode()]
    assert req.header(b"User-Agent") == [http["http.http_user_agent"].encode()]
    assert f.s2c == b"" and http["http.length"] == 0
    for upto, rec in ((None, flow), (alert["pcap_cnt"], alert)):
        pk = [p for p in f.packets if upto is None or p[0] <= upto]
        for side, d in ((Side.CLIENT, "toserver"), (Side.SERVER, "toclient")):
            mine = [p for p in pk if p[1] == side]
            assert (len(mine), sum(p[4] for p in mine)) == (rec[f"flow.pkts_{d}"], rec[f"flow.bytes_{d}"])
    # flow.reason shutdown, tcp.state close_wait: the client closed, the server did not
    assert (f.final["client_state"], f.final["server_state"]) == (TcpState.FIN_WAIT_2, TcpState.CLOSE_WAIT)


def test_sva_bug_28_retransmitted_request_once_in_stream():
    """bug-28: the request is sent 6 times (frames 4-9, same bytes); alerts
    and the http record are for tx 0 only: one request in the stream, with
    the EVE url, hostname and user agent; '/a/Drk.syn?' and 'adcontext' in
    the uri (uricontent, nocase) for the four sids."""
    http = sva_record("bug-28", "http")
    f = sva_flow("bug-28/input.pcap")
    assert (f.client, f.server) == eve_endpoints(http)
    [req] = requests(f)
    assert req.start == f"GET {http['http.url']} HTTP/1.1".encode()
    assert req.header(b"Host") == [http["http.hostname"].encode()]
    assert req.header(b"User-Agent") == [http["http.http_user_agent"].encode()]
    uri = req.start.split(b" ")[1].lower()
    assert b"/a/drk.syn?" in uri and b"adcontext" in uri
    assert [(fr, s) for fr, s, _o, _n in f.rexmit] == [(fr, Side.CLIENT) for fr in (5, 6, 7, 8)]
    assert sva_sids("bug-28") == {2001340: 1, 2001341: 1, 2001342: 1, 2001343: 1}


def test_sva_bug_28_longer_timeout_keeps_last_retransmission():
    """Difference (see SVA_FLOWS): with an idle timeout longer than the 48 s
    pause, frame 9 is one more retransmission of the same flow, as upstream."""
    t = trace(corpus_path(SVA + "bug-28/input.pcap"), tcp_timeout=120)
    f = only_flow(t)
    assert [fr for fr, *_ in f.rexmit] == [5, 6, 7, 8, 9] and t.counters["orphans"] == 0
    assert len(f.c2s) == 442 and f.final["reason"] == EndReason.SHUTDOWN


def test_sva_detect_content_ends_with_negated():
    """detect-content-ends-with-negated-01: GET, uri ends with '.exe', host
    does not end with '.google.com' (it contains it): sid 1 once; the
    client is in $HOME_NET."""
    f = sva_flow("detect-content-ends-with-negated-01/input.pcap")
    [req] = requests(f)
    assert req.start.split(b" ")[0] == b"GET" and req.start.split(b" ")[1].endswith(b".exe")
    [host] = req.header(b"Host")
    assert b".google.com" in host and not host.endswith(b".google.com")
    assert ipaddress.ip_address(f.client.split(":")[0]).is_private
    assert sva_sids("detect-content-ends-with-negated-01") == {1: 1}


def test_sva_http_missing_protocol_request_line_without_version():
    """http-missing-protocol: the request line has no HTTP version ('GET
    <uri>' only); http_method GET and 'User-Agent' among the header names
    (sid 10003658 once).  The server's SYN-ACK is sent twice (frames 2, 5)."""
    f = sva_flow("http-missing-protocol/input.pcap")
    [req] = requests(f)[:1]
    assert req.start.split(b" ")[0] == b"GET" and len(req.start.split(b" ")) == 2
    assert b"User-Agent" in [n for n, _v in req.headers]
    synack = [p[0] for p in f.packets if p[2] == "SA"]
    assert synack == [2, 5] and (5, Side.SERVER, 0, 0) in f.rexmit
    # $HOME_NET -> $EXTERNAL_NET
    assert ipaddress.ip_address(f.client.split(":")[0]).is_private
    assert not ipaddress.ip_address(f.server.split(":")[0]).is_private
    assert sva_sids("http-missing-protocol") == {10003658: 1}


def test_sva_detect_engine_state_01_pipelined_requests():
    """detect-engine-state-01 (bad checksums): a POST (Mozilla, cookie dummy,
    body 'Http Body!') and a GET (Firefox, cookie dummy2) pipelined in 7
    small segments; sids 1, 2 match the first transaction, sid 3 the second."""
    f = sva_flow("detect-engine-state-01/input.pcap")
    assert len([d for _fr, s, d in f.new_data if s == Side.SERVER]) == 7
    post, get = requests(f)
    assert post.start == b"POST / HTTP/1.0" and get.start == b"GET /?var=val HTTP/1.1"
    assert post.header(b"Cookie") == [b"dummy"] and b"Mozilla" in post.header(b"User-Agent")[0]
    assert b"body" in post.body.lower() and post.body == b"Http Body!"          # sids 1, 2
    assert get.header(b"Cookie") == [b"dummy2"] and b"Firefox" in get.header(b"User-Agent")[0]  # sid 3
    assert f.s2c == b""
    assert sva_sids("detect-engine-state-01") == {1: 1, 2: 1, 3: 1}


def test_sva_http_sticky_start_three_transactions_and_bodies():
    """http-sticky-start: three keep-alive GETs, each with 'Host:' after the
    method (http.start, with and without strip_whitespace: sids 1 and 2
    three times each).  The replies carry a chunked gzip body and two gzip
    bodies; each inflates whole (the CRC of gzip checks every byte)."""
    f = sva_flow("http-sticky-start/input.pcap")
    reqs = requests(f)
    assert len(reqs) == 3
    for r in reqs:
        assert r.head.startswith(b"GET") and b"Host:" in r.head                    # sid 1
        assert corpus.strip_whitespace(r.head).startswith(b"GET")                  # sid 2
    resps = responses(f)
    assert [r.start for r in resps] == [b"HTTP/1.1 200 OK"] * 3
    assert [r.header(b"Content-Encoding") for r in resps] == [[b"gzip"]] * 3
    first, _n = corpus.dechunk(resps[0].body)
    bodies = [first, resps[1].body, resps[2].body]
    assert [len(b) for b in bodies[1:]] == [382, 65]
    plain = [gzip.decompress(b) for b in bodies]
    assert plain[0].lstrip().lower().startswith(b"<!doctype html")
    assert sum(len(r.head) + 4 + len(r.body) for r in resps) == len(f.s2c)
    assert sva_sids("http-sticky-start") == {1: 3, 2: 3}


def test_sva_bug_130_www_authenticate_from_port_80():
    """bug-130: three `tcp` rules from port 80 find 'WWW-Authenticate:'
    (nocase) in the server's bytes once each; the http record: hostname,
    url, referer, user agent, status 401, content type, length 1483."""
    http = sva_record("bug-130", "http")
    f = sva_flow("bug-130/input.pcap")
    assert (f.client, f.server) == eve_endpoints(http)
    assert f.s2c.lower().count(b"www-authenticate: ") == 1                     # sids 9000000-2
    assert b"www-authenticate" not in f.c2s.lower()
    [req] = requests(f)
    [resp] = responses(f)
    assert req.start == f"{http['http.http_method']} {http['http.url']} {http['http.protocol']}".encode()
    assert req.header(b"Host") == [http["http.hostname"].encode()]
    assert req.header(b"Referer") == [http["http.http_refer"].encode()]
    assert req.header(b"User-Agent") == [http["http.http_user_agent"].encode()]
    assert resp.start.split(b" ")[1] == str(http["http.status"]).encode()
    assert resp.header(b"Content-type")[0].split(b";")[0] == http["http.http_content_type"].encode()
    assert len(resp.body) == http["http.length"] == 1483                       # body runs to the FIN
    assert sva_sids("bug-130") == {9000000: 1, 9000001: 1, 9000002: 1}


def test_sva_http_close_headers_server_closes_mid_head():
    """http-close-headers: the server sends 'HTTP/1.0 200 OK' and
    'Server:ng1nx' and closes before the blank line; sid 1 (http_header
    'ng1nx' nocase, from the server) once: the bytes are in the s2c stream,
    which ends at the server's FIN."""
    f = sva_flow("http-close-headers/input.pcap")
    [resp] = responses(f)
    assert resp.start == b"HTTP/1.0 200 OK" and resp.header(b"Server") == [b"ng1nx"]
    assert not re.search(rb"\r?\n\r?\n", f.s2c)
    assert b"ng1nx" not in f.c2s.lower()
    assert TcpState.FIN_WAIT_1 in state_path(f, Side.SERVER)   # the server closed
    assert sva_sids("http-close-headers") == {1: 1}


def test_sva_bug_3616_file_data_and_strip_whitespace():
    """bug-3616-ips: the 200 reply's body (file_data, Content-Length 3302)
    holds 'commonly-accepted commonly-used' (sids 1, 2 with stat_code 200),
    'bricks-and-clicks' and, with whitespace stripped, 'inventedtheterm'
    (sids 3, 4; the latter only after strip_whitespace)."""
    f = sva_flow("bug-3616-ips/input.pcap")
    [resp] = responses(f)
    assert resp.start.split(b" ")[1] == b"200"
    assert len(resp.body) == int(resp.header(b"Content-Length")[0]) == 3302
    assert b"commonly-accepted commonly-used" in resp.body
    assert b"bricks-and-clicks" in corpus.strip_whitespace(resp.body)
    assert b"inventedtheterm" not in resp.body and b"inventedtheterm" in corpus.strip_whitespace(resp.body)
    assert sva_sids("bug-3616-ips") == {1: 1, 2: 1, 3: 1, 4: 1}


EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


@pytest.mark.parametrize("case, coding", [("http-evader-000", "chunked"), ("http-evader-104", "gzip")])
def test_sva_http_evader_eicar_in_decoded_body(case, coding):
    """http-evader-000 / -104: file_data is the decoded body (chunks joined,
    gzip inflated); both EICAR contents match it (sids 1, 2 once), and not
    the raw body; fileinfo names eicar.txt for a GET to evader.example.com."""
    f = sva_flow(case + "/input.pcap")
    [req] = requests(f)
    [resp] = responses(f)
    fileinfo = sva_record(case, "fileinfo")
    assert req.start.split(b" ")[0] == fileinfo["http.http_method"].encode()
    assert req.header(b"Host") == [fileinfo["http.hostname"].encode()]
    assert f'filename="{fileinfo["fileinfo.filename"]}"'.encode() in resp.header(b"Content-disposition")[0]
    if coding == "chunked":
        assert resp.header(b"Transfer-Encoding") == [b"chunked"]
        data, n = corpus.dechunk(resp.body)
        assert n == len(resp.body)
    else:
        assert resp.header(b"Content-Encoding") == [b"gzip"]
        assert len(resp.body) == int(resp.header(b"Content-length")[0])
        data = gzip.decompress(resp.body)
    assert data.rstrip(b"\n") == EICAR
    for content in (b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE", b"X5O!P%@AP[4"):   # sids 1, 2
        assert content in data
    assert b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE" not in resp.body
    assert sva_sids(case) == {1: 1, 2: 1}


# ---------------------------------------------------------------- TLS

def tls_hellos(f: corpus.FlowLog, c2s_from: int = 0, s2c_from: int = 0) -> tuple:
    """(ClientHello, [server handshake messages]) of a flow's streams."""
    ch = corpus.tls_handshake(f.c2s[c2s_from:])
    assert ch and ch[0][0] == 1, f"no ClientHello at offset {c2s_from}"
    sh = corpus.tls_handshake(f.s2c[s2c_from:])
    assert sh and sh[0][0] == 2, f"no ServerHello at offset {s2c_from}"
    return corpus.client_hello(ch[0][1]), sh


def server_certs(sh: list) -> list:
    [cert_msg] = [b for t, b in sh if t == 11]
    return [corpus.parse_cert(d) for d in corpus.certificates(cert_msg)]


def check_tls_record(rec: dict, ch: corpus.Hello, sh: list) -> None:
    """An EVE tls record's fields against the handshake bytes."""
    hello = corpus.server_hello(sh[0][1])
    if "tls.sni" in rec:
        assert ch.sni == rec["tls.sni"]
    if "tls.version" in rec:
        sv = hello.ext(43)  # RFC 8446 4.2.1 supported_versions
        v = int.from_bytes(sv, "big") if sv else hello.version
        assert TLS_VERSION_NAMES[v] == rec["tls.version"]
    fields = {"tls.subject": "subject", "tls.issuerdn": "issuer", "tls.serial": "serial",
              "tls.fingerprint": "fingerprint", "tls.notbefore": "not_before", "tls.notafter": "not_after"}
    if any(k in rec for k in fields):
        leaf = server_certs(sh)[0]
        for k, attr in fields.items():
            if k in rec:
                assert getattr(leaf, attr) == rec[k], k


#: Suricata's EVE names of protocol versions (its convention, see the corpus README)
TLS_VERSION_NAMES = {0x0301: "TLSv1", 0x0302: "TLS 1.1", 0x0303: "TLS 1.2", 0x0304: "TLS 1.3",
                     0x7F1C: "TLS 1.3 draft-28"}


def test_sva_bug_2430_connect_then_tls_in_the_same_flow():
    """bug-2430: an HTTP CONNECT to the proxy on 8080, '200 Connection
    established', then TLS 1.2 in the same flow: one http record (CONNECT,
    hostname) and one tls record (subject, issuerdn), both on that flow."""
    http = sva_record("bug-2430", "http")
    tls = sva_record("bug-2430", "tls")
    f = sva_flow("bug-2430/backwards.pcap")
    assert (f.client, f.server) == eve_endpoints(http) == eve_endpoints(tls)
    connect = f.c2s.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
    [req] = corpus.http_messages(connect, response=False)
    assert req.start.split(b" ")[:2] == [http["http.http_method"].encode(),
                                         http["http.hostname"].encode() + b":443"]
    reply = f.s2c.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
    assert reply == b"HTTP/1.1 200 Connection established\r\n\r\n"
    ch, sh = tls_hellos(f, len(connect), len(reply))
    assert ch.sni == http["http.hostname"]
    check_tls_record(tls, ch, sh)


def test_sva_bug_2430_longer_timeout_closes_normally():
    """Difference (see SVA_FLOWS): with an idle timeout above the 60 s pause
    the FINs close the same flow, as in Suricata (no orphans)."""
    t = trace(corpus_path(SVA + "bug-2430/backwards.pcap"), tcp_timeout=120)
    f = only_flow(t)
    assert f.final["reason"] == EndReason.CLOSE and t.counters["orphans"] == 0
    assert (len(f.c2s), len(f.s2c)) == (1681, 4267)


def test_sva_bug_2646_01_tls_record_from_certificate_bytes():
    """bug-2646-01 (-k none; frame 8, inside the certificate chain, has a
    wrong checksum): the tls record's sni, version, subject, issuerdn,
    serial, fingerprint, validity; the flow record's packet and byte
    counters (frames, as Suricata counts)."""
    tls = sva_record("bug-2646-01", "tls")
    flow = sva_record("bug-2646-01", "flow")
    f = sva_flow("bug-2646-01/input.pcap")
    assert (f.client, f.server) == eve_endpoints(tls)
    ch, sh = tls_hellos(f)
    check_tls_record(tls, ch, sh)
    for side, d in ((Side.CLIENT, "toserver"), (Side.SERVER, "toclient")):
        mine = [p for p in f.packets if p[1] == side]
        assert (len(mine), sum(p[4] for p in mine)) == (flow[f"flow.pkts_{d}"], flow[f"flow.bytes_{d}"])


def test_sva_bug_2646_01_certificate_lost_with_checksums_verified():
    """Without -k none frame 8 is dropped: the server's stream has a
    2096-byte hole where the certificate chain was, so no certificate can
    be read (the ServerHello before it still can)."""
    t = trace(corpus_path(SVA + "bug-2646-01/input.pcap"), checksum="verify", per_frame=False)
    f = only_flow(t)
    assert t.counters["bad_checksum"] == 1
    assert f.final["gaps"][Side.CLIENT] == [(1048, 2096)]
    sh = corpus.tls_handshake(f.s2c)
    assert sh[0][0] == 2 and 11 not in [m for m, _b in sh]


def test_sva_tls_fingerprint_alert_reordered_first_segment():
    """tls-fingerprint-alert: the server's first segment (ServerHello and the
    start of the certificate, 1448 bytes at offset 0) is not in the capture
    when sent; frames 6, 8 and 10 (offsets 1448, 2048, 3496) come first, then
    its retransmission (frame 12), then a second one (frame 15).
    Reassembled, the leaf certificate's SHA-1 is the fingerprint of sids 1-4
    (any case), not the one of sid 5 (last digit changed)."""
    f = sva_flow("tls-fingerprint-alert/input.pcap")
    s2c = [(fr, len(d)) for fr, s, d in f.new_data if s == Side.CLIENT]
    # nothing readable until frame 12 fills the hole; then all four segments at once
    assert s2c[0] == (12, 1448 + 600 + 1448 + 42)
    # both are below what the server had sent (RFC 9293 3.4: SEG.SEQ < SND.NXT)
    assert f.rexmit == [(12, Side.SERVER, 0, 1448), (15, Side.SERVER, 0, 1448)]
    assert f.errors == []   # the second copy has the same bytes
    ch, sh = tls_hellos(f)
    assert ch.sni == "www.google.com"
    leaf = server_certs(sh)[0]
    rules = corpus_path(SVA + "tls-fingerprint-alert/test.rules").read_text()
    fps = dict((int(sid), fp) for fp, sid in re.findall(r'fingerprint[:;]\s*(?:content:)?"([0-9a-fA-F:]+)";\s*\\?\s*sid:(\d+)', rules))
    assert sorted(fps) == [1, 2, 3, 4, 5]
    for sid, fp in fps.items():
        assert (leaf.fingerprint == fp.lower()) == (sid != 5), sid
    assert sva_sids("tls-fingerprint-alert") == {1: 1, 2: 1, 3: 1, 4: 1, 5: 0}


def test_sva_tls_certs_alert_each_certificate_of_the_chain():
    """tls-certs-alert (IPv6, bad checksums): tls.certs is inspected per
    certificate; each rule's bytes (the header of a CN attribute of a given
    length) start the subject CN of the first, second and third certificate
    in turn (sids 1, 2, 3 once each; sid 2's bytes are also the first
    certificate's issuer CN, still one alert)."""
    f = sva_flow("tls-certs-alert/input.pcap")
    ch, sh = tls_hellos(f)
    parsed = server_certs(sh)
    certs = [c.der for c in parsed]
    assert len(certs) == 3
    rules = corpus_path(SVA + "tls-certs-alert/test.rules").read_text()
    contents = [(int(sid), bytes.fromhex(h)) for h, sid in re.findall(r'content:"\|([0-9a-f]+)\|"; sid:(\d+)', rules)]
    assert [sid for sid, _c in contents] == [1, 2, 3]
    for i, (sid, content) in enumerate(contents):
        assert content in parsed[i].subject_der, sid
        assert [content in c.subject_der for c in parsed] == [j == i for j in range(3)], sid
        assert certs[i] in f.s2c   # each DER certificate is contiguous in the stream
    assert sva_sids("tls-certs-alert") == {1: 1, 2: 1, 3: 1}


def test_sva_tls13_draft28_two_flows_sni_version_ja3():
    """tls13-draft28: 2 tls records (sni localhost, 'TLS 1.3 draft-28'); with
    JA3, one record per ja3 hash and string: the second ClientHello adds the
    pre_shared_key extension (41).

    JA3 is an optional upstream feature; the hashes are checked here all the
    same, from the ClientHello bytes (md5 of the JA3 string)."""
    t = sva_trace("tls13-draft28/tls13_draft28.pcap")
    recs = [m for n, m in sva_checks("tls13-draft28") if m.get("event_type") == "tls"]
    ja3 = {m["tls.ja3.string"]: m["tls.ja3.hash"] for m in recs if "tls.ja3.hash" in m}
    seen = []
    for f in t.flows.values():
        ch, sh = tls_hellos(f)
        check_tls_record(recs[0], ch, sh)
        s = corpus.ja3_string(ch)
        assert corpus.md5(s.encode()) == ja3[s]
        seen.append(s)
    assert len(seen) == 2 and set(seen) == set(ja3)
    assert seen[1].split(",")[2].endswith("-41") and not seen[0].split(",")[2].endswith("-41")
    assert sva_checks("tls13-draft28")[0][0] == 2


def test_sva_bug_8336_ja3_and_ja3s_hashes():
    """bug-8336-01-default-track-only: the ja3.hash of the ClientHello and the
    ja3s.hash of the ServerHello are the rules' (sids 8336001-8336004 once
    with JA3 on); the SNI is docs.suricata.io, the version TLS 1.3."""
    f = sva_flow("bug-8336-01-default-track-only/input.pcap")
    ch, sh = tls_hellos(f)
    rules = corpus_path(SVA + "bug-8336-01-default-track-only/test.rules").read_text()
    want_ja3 = set(re.findall(r'ja3\.hash; content:"([0-9a-f]{32})"', rules))
    want_ja3s = set(re.findall(r'ja3s\.hash; content:"([0-9a-f]{32})"', rules))
    assert {corpus.md5(corpus.ja3_string(ch).encode())} == want_ja3
    assert {corpus.md5(corpus.ja3s_string(corpus.server_hello(sh[0][1])).encode())} == want_ja3s
    check_tls_record({"tls.sni": "docs.suricata.io", "tls.version": "TLS 1.3"}, ch, sh)
    assert sva_sids("bug-8336-01-default-track-only") == {8336001: 1, 8336002: 1, 8336003: 1, 8336004: 1}


def test_sva_sslv2_tls_upgrade_certificate():
    """sslv2-tls-upgrade-01: the ClientHello is in SSLv2 format (RFC 6101
    E.1) offering TLS 1.0; the server answers in TLS 1.0 records.  sid 1
    (tls.cert_serial '55') once; the tls record's subject and issuer (with
    'Email='), serial, fingerprint, version TLSv1, validity."""
    tls = sva_record("sslv2-tls-upgrade-01", "tls")
    f = sva_flow("sslv2-tls-upgrade-01/ssl-v2-s1.pcap")
    v2 = corpus.tls_records(f.c2s)[0]
    assert v2[0] == "v2" and v2[2][0] == 1 and v2[2][1:3] == b"\x03\x01"    # CLIENT-HELLO, 3.1
    sh = corpus.tls_handshake(f.s2c)
    assert sh[0][0] == 2
    leaf = server_certs(sh)[0]
    assert "55" in leaf.serial                                               # sid 1
    for k, attr in (("tls.subject", "subject"), ("tls.issuerdn", "issuer"), ("tls.serial", "serial"),
                    ("tls.fingerprint", "fingerprint"), ("tls.notbefore", "not_before"),
                    ("tls.notafter", "not_after")):
        assert getattr(leaf, attr) == tls[k], k
    assert TLS_VERSION_NAMES[corpus.server_hello(sh[0][1]).version] == tls["tls.version"]
    assert sva_sids("sslv2-tls-upgrade-01") == {1: 1}


def test_sva_tls_cert_noissuer_subject_in_server_stream():
    """tls-cert-noissuer (client's checksums bad): the server's certificate
    has an empty issuer; tls.cert_subject contains 'localhost' (sid 1, to
    the client) once."""
    f = sva_flow("tls-cert-noissuer/tls.pcap")
    ch, sh = tls_hellos(f)
    leaf = server_certs(sh)[0]
    assert leaf.issuer == "" and leaf.issuer_der == b""
    assert "localhost" in leaf.subject and b"localhost" in leaf.subject_der
    assert b"localhost" not in f.c2s  # the ClientHello names no server
    assert sva_sids("tls-cert-noissuer") == {1: 1}


def test_sva_community_id_ipv4_sni_version_and_community_id():
    """community-id-ipv4 (bad checksums): the tls record's sni and version
    (TLS 1.3, from supported_versions), and the community_id (seed 7) of
    the tls and flow records, computed from mos's flow endpoints."""
    recs = [m for _n, m in sva_checks("community-id-ipv4")]
    f = sva_flow("community-id-ipv4/input.pcap")
    ch, sh = tls_hellos(f)
    check_tls_record(recs[0], ch, sh)
    seed = 7  # suricata.yaml: community-id-seed
    assert re.search(rf"community-id-seed: {seed}\b", corpus_path(SVA + "community-id-ipv4/suricata.yaml").read_text())
    cid = corpus.community_id(seed, corpus.addr(f.client), corpus.addr(f.server))
    for m in recs:
        assert (f.client, f.server) == eve_endpoints(m)
        assert m["community_id"] == cid


def test_sva_sslv2_write_dir_keeps_every_flow_of_a_recurring_4tuple(tmp_path):
    """`mos streams --midstream --timeout 2 --write-dir` on sslv2-tls-upgrade-01
    reports three flows with the same 4-tuple; every byte a record reports
    must be on disk (in one file per direction or one per flow)."""
    path = corpus_path(SVA + "sslv2-tls-upgrade-01/ssl-v2-s1.pcap")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert mos.cli.main(["streams", str(path), "--midstream", "--timeout", "2",
                             "--write-dir", str(tmp_path)]) == 0
    recs = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len({(r["client"], r["server"]) for r in recs}) == 1 and len(recs) == 6
    reported = {d: sum(r["bytes"] for r in recs if r["direction"] == d) for d in ("c2s", "s2c")}
    assert reported == {"c2s": 777, "s2c": 17058}
    client = "010.150.098.145.01660"
    on_disk = {"c2s": 0, "s2c": 0}
    for p in tmp_path.iterdir():
        on_disk["c2s" if p.name.startswith(client) else "s2c"] += p.stat().st_size
    assert on_disk == reported
