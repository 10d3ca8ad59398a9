"""Rule headers decided per flow direction (middleboxes/ids/headers.py), and
what the IDS builds on them: the prefilter's header check in C when a
stream opens (group databases, streams no rule can reach not scanned),
packet rules with a content prefiltered per payload in C (the engine's
packet callback), content-less packet rules only in flows their headers
allow, HTTP bodies kept in C with their transaction."""

from __future__ import annotations

import doctest
import random

import pytest

import mos
from middleboxes.ids import headers
from middleboxes.ids.headers import HeaderIndex
from middleboxes.ids.ids import Ids
from middleboxes.ids.rules import load_rules_text
from test_app_http import GET, OK, talk
from test_ids_http import alerts

HEADERS = [
    "any any -> any any",
    "$HOME_NET any -> $EXTERNAL_NET $HTTP_PORTS",
    "$EXTERNAL_NET any -> $HOME_NET any",
    "198.18.0.0/15 any -> any 80",
    "any any -> 198.18.0.0/15 ![80,443]",
    "[10.0.0.0/8,!10.1.0.0/16] 1024: -> any any",
    "any any <> [192.168.0.0/16,198.18.0.2] 80",
    "!198.18.0.1 any -> any :1023",
    "any [80,8080:8090] -> [2001:db8::/32,10.0.0.0/8] any",
    "[fe80::/10,2001:db8::1] any <> any !22",
    "any ![1:1000,2000] -> !$HOME_NET any",
]
IPS = ["198.18.0.1", "198.18.0.2", "198.18.0.3", "10.0.0.1", "10.1.2.3", "192.168.7.7",
       "8.8.8.8", "0.0.0.0", "255.255.255.255", "2001:db8::1", "2001:db8::2", "fe80::9",
       "::1", "2002::1"]
PORTS = [0, 1, 22, 80, 443, 999, 1000, 1001, 1023, 1024, 2000, 8080, 8085, 8091, 65535]


def test_doctests():
    assert doctest.testmod(headers).failed == 0


def test_passing_agrees_with_each_rules_own_check():
    rs = load_rules_text("\n".join(f'alert tcp {h} (msg:"{i}"; sid:{i + 1};)'
                                   for i, h in enumerate(HEADERS)))
    ids = Ids(rs)
    hx = HeaderIndex(rs.rules)
    rnd = random.Random(7)
    for _ in range(3000):
        ends = (rnd.choice(IPS), rnd.choice(PORTS), rnd.choice(IPS), rnd.choice(PORTS))
        bits = hx.passing(*ends)
        for r in rs.rules:
            assert bool(bits >> hx.id_of(r) & 1) == ids._header_ok(r, *ends), (r.raw, ends)


def run(rules, frames=None):
    ids, recs = alerts(rules, frames or talk(GET, OK).frames)
    return ids, sorted(r["alert"]["signature_id"] for r in recs)


def test_streams_no_rule_can_reach_are_not_scanned():
    # the conversation is 198.18.0.1:40000 -> 198.19.0.1:80
    ids, sids = run('alert tcp 10.0.0.0/8 any -> any any (msg:"a"; content:"GET"; sid:1;)\n'
                    'alert tcp any any -> any any (msg:"b"; content:"GET"; flow:to_client; '
                    'sid:2;)')
    st = ids.prefilter.stats()
    # the requests' stream: no rule holds there, not scanned; the responses'
    # stream: only b's pattern
    assert sids == [] and st["streams_skipped"] == 1 and st["scanned"] == len(OK)
    ids, sids = run('alert tcp 10.0.0.0/8 any -> any any (msg:"a"; content:"GET"; sid:1;)\n'
                    'alert tcp any any -> any 80 (msg:"b"; content:"GET"; flow:to_server; '
                    'sid:2;)\n'
                    'alert tcp any 80 -> any any (msg:"c"; content:"hello"; sid:3;)')
    st = ids.prefilter.stats()
    assert sids == [2, 3] and st["streams_skipped"] == 0 and st["groups"] == 2


def test_packet_rules_with_a_content_are_prefiltered_per_payload():
    ids, sids = run('alert ip any any -> any any (msg:"a"; content:"User-Agent"; sid:1;)\n'
                    'alert tcp-pkt any 80 -> any any (msg:"b"; content:"hello"; sid:2;)\n'
                    'alert ip 10.0.0.0/8 any -> any any (msg:"c"; content:"GET"; sid:3;)\n'
                    'alert tcp any any -> any any (msg:"d"; content:"200"; dsize:>10; '
                    'flow:to_server; sid:4;)')
    assert sids == [1, 2]
    st = ids.prefilter.stats()
    assert st["packet_scanned"] == len(GET) + len(OK)
    assert ids.candidates == 2         # no Python for the other packets


def test_packet_rules_without_content_only_where_their_headers_hold():
    rules = ('alert tcp any any -> any 80 (msg:"syn"; flags:S; sid:1;)\n'
             'alert tcp any 80 -> any any (msg:"synack"; flags:SA; sid:2;)\n'
             'alert tcp 10.0.0.0/8 any -> any any (msg:"no"; flags:S; sid:3;)\n')
    ids, sids = run(rules)
    assert sids == [1, 2]              # the first packet too (seen from CONN_START)
    ids, sids = run(rules.replace("any 80", "any 81"))
    assert sids == []


def test_packet_rule_handlers_per_flow():
    rs = load_rules_text('alert tcp any any -> any 81 (msg:"x"; flags:S; sid:1;)')
    ids = Ids(rs)
    eng = mos.Engine()
    ids.attach(eng)
    for ts, fr in talk(GET, OK).frames:
        eng.feed(fr, ts)
    eng.close()
    # a flow no packet rule can reach costs no PKT_IN handler call
    assert eng.counters()["handler_calls"] <= 2


def test_bodies_kept_with_the_transaction():
    http = pytest.importorskip("mos.app.http")
    eng = mos.Engine()
    h = http.for_engine(eng, keep_bodies=3)
    assert h.parser.keep_bodies == 3 and not h.parser.bodies
    mon = eng.attach(mos.Monitor())
    seen = []

    @mon.on(http.HTTP_DONE)
    def done(flow, side, ev):
        tx = flow.http.tx
        seen.append((side.name, tx.body_kept(True), tx.body_kept(False)))

    for ts, fr in talk(GET, OK).frames:
        eng.feed(fr, ts)
    eng.close()
    assert seen == [("SERVER", b"", b""), ("CLIENT", b"", b"hel")]
