"""The IDS on TLS: tls.* / ja3* buffers and field keywords, when TLS rules
run and in which direction, the prefilter, EVE tls records and alerts'
tls objects, Community ID, on the OpenSSL-made capture shipped with mos."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import mos
from middleboxes.ids import communityid, tlsrules
from middleboxes.ids.eve import Eve
from middleboxes.ids.ids import Ids
from middleboxes.ids.rules import load_rules_text
from mos.app import tls
from mos.testing import tls_capture

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _handshakes():
    """(ClientHello, ServerHello, [Certificate]) of each flow of the capture."""
    eng = mos.Engine()
    tls.Tls().attach(eng)
    mon = eng.attach(mos.Monitor())
    out = {}
    mon.on(tls.TLS_HANDSHAKE_DONE, lambda f, s, e: out.setdefault(
        f.id, (f.tls.client_hello, f.tls.server_hello, f.tls.certificates)))
    eng.run(tls_capture())
    return list(out.values())


HS = None


@pytest.fixture(scope="module")
def hs():
    global HS
    HS = HS or _handshakes()
    return HS


def run_rules(text, capture=None, eve=None, **kw):
    rs = load_rules_text(text)
    assert not rs.refused, [str(r) for r in rs.refused]
    ids = Ids(rs, eve=eve, stream_inline=True, **kw)
    eng = mos.Engine()
    ids.attach(eng)
    eng.run(capture or tls_capture())
    return ids


def test_doctests():
    import doctest
    for m in (tlsrules, communityid):
        res = doctest.testmod(m)
        assert res.attempted and not res.failed, m


def test_each_buffer_matches_what_the_handshake_holds(hs):
    (ch12, sh12, certs), (ch13, sh13, _) = hs
    leaf = certs[0]
    rules = f"""
alert tls any any -> any any (msg:"sni"; tls.sni; content:"www.example.org"; bsize:15; sid:1;)
alert tls any any -> any any (msg:"sni dotprefix"; tls.sni; dotprefix; content:".example.org"; endswith; sid:2;)
alert tls any any -> any any (msg:"ja3 of flow 1"; ja3.hash; content:"{ch12.ja3_hash}"; sid:3;)
alert tls any any -> any any (msg:"ja3s of flow 2"; ja3s.hash; content:"{sh13.ja3s_hash}"; sid:4;)
alert tls any any -> any any (msg:"subject"; tls.cert_subject; content:"CN=www.example.org"; sid:5;)
alert tls any any -> any any (msg:"issuer"; tls.cert_issuer; content:"mos test CA"; sid:6;)
alert tls any any -> any any (msg:"serial"; tls.cert_serial; content:"{leaf.serial}"; sid:7;)
alert tls any any -> any any (msg:"fp"; tls.cert_fingerprint; content:"{leaf.fingerprint}"; sid:8;)
alert tls any any -> any any (msg:"CA in chain"; tls.certs; content:"mos test CA"; sid:9;)
alert tls any any -> any any (msg:"san"; tls.subjectaltname; content:"www.example.org"; sid:10;)
alert tls any any -> any any (msg:"1.3"; tls.version:1.3; sid:11;)
alert tls any any -> any any (msg:"not 1.3"; tls.version:!1.3; sid:12;)
alert tls any any -> any any (msg:"legacy subject"; tls.subject:"O=mos example"; sid:13;)
alert tls any any -> any any (msg:"legacy issuer"; tls.issuerdn:"CN=mos test CA"; sid:14;)
alert tls any any -> any any (msg:"legacy fp"; tls.fingerprint:"{leaf.fingerprint.upper()}"; sid:15;)
alert tls any any -> any any (msg:"ja3 string"; ja3.string; content:"771,"; startswith; sid:16;)
alert tls any any -> any any (msg:"ja4"; ja4.hash; content:"{ch13.ja4}"; sid:17;)
alert tls any any -> any any (msg:"old name"; tls_sni; content:"EXAMPLE"; nocase; sid:18;)
alert tls any any -> any any (msg:"no"; tls.sni; content:"example.com"; sid:90;)
alert tls any any -> any any (msg:"no"; tls.cert_subject; content:"CN=evil"; sid:91;)
alert tls any any -> any any (msg:"no"; tls.sni; content:"www"; bsize:>20; sid:92;)
alert tls any any -> any any (msg:"no"; tls.fingerprint:"{'00:' * 19}00"; sid:93;)
"""
    ids = run_rules(rules)
    assert ids.stats()["alerts_by_sid"] == {
        1: 2, 2: 2, 3: 1, 4: 1, 5: 1, 6: 1, 7: 1, 8: 1, 9: 1, 10: 1, 11: 1, 12: 1, 13: 1,
        14: 1, 15: 1, 16: 2, 17: 1, 18: 2}
    assert ids.plan()["tls_rules"] == 22


def test_direction_flow_keywords_and_flowbits_across_hellos(hs):
    (ch12, sh12, _), _ = hs
    rules = f"""
alert tls any any -> any any (msg:"set"; flow:established,to_server; ja3.hash; content:"{ch12.ja3_hash}"; flowbits:set,seen; flowbits:noalert; sid:1;)
alert tls any any -> any any (msg:"isset"; flow:established,to_client; ja3s.hash; content:"{sh12.ja3s_hash}"; flowbits:isset,seen; sid:2;)
alert tls any any -> any any (msg:"sni to client never"; flow:to_client; tls.sni; content:"www"; sid:3;)
alert tls any any => any any (msg:"both hellos"; ja3.hash; content:"{ch12.ja3_hash}"; ja3s.hash; content:"{sh12.ja3s_hash}"; sid:4;)
alert tls any any -> any 443 (msg:"to server port"; tls.sni; content:"www"; sid:5;)
alert tls any 443 -> any any (msg:"from server port"; tls.cert_subject; content:"CN="; sid:6;)
alert tls any any -> any 80 (msg:"wrong port"; tls.sni; content:"www"; sid:7;)
alert tls any any => any 443 (msg:"transactional header is client to server"; ja3s.hash; content:"{sh12.ja3s_hash}"; sid:8;)
"""
    ids = run_rules(rules)
    assert ids.stats()["alerts_by_sid"] == {2: 1, 4: 1, 5: 2, 6: 1, 8: 1}


def test_raw_content_tls_rule_runs_only_on_tls_flows():
    rules = 'alert tls any any -> any any (msg:"hs"; content:"|16 03|"; depth:2; sid:1;)\n' \
            'alert tcp any any -> any any (msg:"tcp"; content:"|16 03|"; depth:2; sid:2;)\n'
    # raw stream content: depth counts from each inspected chunk, as in
    # Suricata, so every record that starts a chunk matches; the tls rule
    # exactly where the tcp one does, and never on the HTTP capture
    got = run_rules(rules).stats()["alerts_by_sid"]
    assert got[1] == got[2] >= 2
    assert 1 not in run_rules(rules, capture=mos.sample_capture()).stats()["alerts_by_sid"]


def test_prefilter_keeps_non_matching_rules_out():
    many = "".join(f'alert tls any any -> any any (msg:"n{i}"; tls.sni; content:"host{i}.test"; '
                   f'sid:{100 + i};)\n' for i in range(500))
    ids = run_rules(many + 'alert tls any any -> any any (msg:"hit"; tls.sni; '
                           'content:"example"; sid:1;)\n')
    st = ids.stats()
    assert st["alerts_by_sid"] == {1: 2}
    assert st["candidates"] == 2          # only the rule whose pattern is in the SNI


def test_alerts_and_eve_tls_records(tmp_path, hs):
    (ch12, sh12, certs), (ch13, sh13, _) = hs
    path = tmp_path / "eve.json"
    eve = Eve(str(path))
    run_rules('alert tls any any -> any any (msg:"cert"; tls.cert_subject; content:"CN="; '
              'sid:1;)\n', eve=eve, tls_log=True, community_id=0)
    eve.close()
    recs = [json.loads(x) for x in path.read_text().splitlines()]
    alert = next(r for r in recs if r["event_type"] == "alert")
    assert alert["app_proto"] == "tls" and alert["direction"] == "to_client"
    assert alert["src_port"] == 443 and alert["tls"]["subject"] == certs[0].subject
    logs = [r for r in recs if r["event_type"] == "tls"]
    assert len(logs) == 2
    first, second = sorted(logs, key=lambda r: r["src_port"])
    assert first["tls"] == {
        "subject": certs[0].subject, "issuerdn": certs[0].issuer, "serial": certs[0].serial,
        "fingerprint": certs[0].fingerprint, "sni": "www.example.org", "version": "TLS 1.2",
        "notbefore": "2026-01-01T00:00:00", "notafter": "2027-01-01T00:00:00",
        "ja3": {"hash": ch12.ja3_hash, "string": ch12.ja3}, "ja4": ch12.ja4,
        "client_alpns": ["h2", "http/1.1"],
        "ja3s": {"hash": sh12.ja3s_hash, "string": sh12.ja3s}, "server_alpns": ["h2"]}
    assert second["tls"]["version"] == "TLS 1.3" and "subject" not in second["tls"]
    assert first["src_ip"] == "198.18.0.1" and first["dest_port"] == 443
    assert "pcap_cnt" in first
    cid = communityid.community_id("198.18.0.1", 40000, "198.18.0.2", 443, 6, 0)
    assert first["community_id"] == cid
    flows = [r for r in recs if r["event_type"] == "flow"]
    assert {f["app_proto"] for f in flows} == {"tls"} and flows[0]["community_id"]


def test_flow_record_says_http_for_http_flows(tmp_path):
    path = tmp_path / "eve.json"
    eve = Eve(str(path))
    rs = load_rules_text('alert http any any -> any any (msg:"u"; http.uri; content:"/"; sid:1;)')
    ids = Ids(rs, eve=eve, tls_log=True)
    eng = mos.Engine()
    ids.attach(eng)
    eng.run(mos.sample_capture())
    eve.close()
    recs = [json.loads(x) for x in path.read_text().splitlines()]
    flows = [r for r in recs if r["event_type"] == "flow"]
    web = [f for f in flows if f["dest_port"] == 80]
    assert web and all(f.get("app_proto") == "http" for f in web)
    assert all("app_proto" not in f for f in flows if f["dest_port"] != 80)   # refused ones
    assert not [r for r in recs if r["event_type"] == "tls"]


def test_cli_writes_tls_records_and_community_ids(tmp_path):
    rules = tmp_path / "t.rules"
    rules.write_text('alert tls any any -> any any (msg:"sni"; tls.sni; content:"example"; '
                     'sid:7;)\n')
    out = tmp_path / "out"
    p = subprocess.run([sys.executable, "-m", "mos", "ids", "-r", tls_capture(), "-S",
                        str(rules), "-l", str(out), "--no-progress",
                        "--set", "mos.community-id=7"],
                       capture_output=True, text=True, cwd=REPO, timeout=120)
    assert p.returncode == 0, p.stderr
    recs = [json.loads(x) for x in (out / "eve.json").read_text().splitlines()]
    kinds = [r["event_type"] for r in recs]
    assert kinds.count("tls") == 2 and kinds.count("alert") == 2
    assert all(r["community_id"].startswith("1:") for r in recs if r["event_type"] == "tls")
    p = subprocess.run([sys.executable, "-m", "mos", "ids", "-r", tls_capture(), "-S",
                        str(rules), "-l", str(out), "--no-progress", "--no-tls-log",
                        "--set", "mos.community-id=70000"],
                       capture_output=True, text=True, cwd=REPO, timeout=120)
    assert p.returncode == 2 and "seed 0..65535" in p.stderr and "Traceback" not in p.stderr


def test_tls_buffers_on_a_flow_without_certificates(hs):
    class View:
        client_hello, server_hello, certificates, version = hs[1][0], hs[1][1], [], 0x0304
    b = tlsrules.TlsBuffers(View())
    assert b.get("tls.sni") == b"www.example.org"
    assert b.get("tls.cert_subject") is None and b.get("tls.certs") is None
    assert b.get("tls.sni", ("to_uppercase",)) == b"WWW.EXAMPLE.ORG"
    assert tlsrules.tls_record(View())["version"] == "TLS 1.3"
