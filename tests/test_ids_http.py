"""HTTP rules in the IDS: sticky buffers, legacy modifiers, transforms,
bsize/urilen, bodies, evaluation once per transaction, and the block-mode
prefilter, on conversations built with dpkt (198.18.0.0/15)."""

from __future__ import annotations

import gzip
import io
import json

import pytest

import mos

pytest.importorskip("mos.app.http")
from middleboxes.ids.eve import Eve  # noqa: E402
from middleboxes.ids.ids import Ids  # noqa: E402
from middleboxes.ids.rules import load_rules_text  # noqa: E402
from test_app_http import talk  # noqa: E402

REQ = (b"POST /app/../login.php?user=admin HTTP/1.1\r\nHost: Shop.Example.test:8080\r\n"
       b"User-Agent: EvilBot/1.0\r\nCookie: sid=42\r\nContent-Length: 11\r\n\r\npass=secret")
BODY = b"<html><title>Welcome admin</title></html>"
RES = (b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n"
       % len(gzip.compress(BODY))) + gzip.compress(BODY)


def alerts(rules, frames, **opts):
    out = io.StringIO()
    ids = Ids(load_rules_text(rules), eve=Eve(out), **opts)
    eng = mos.Engine()
    ids.attach(eng)
    for ts, fr in frames:
        eng.feed(fr, ts)
    eng.close()
    recs = [json.loads(x) for x in out.getvalue().splitlines()]
    return ids, [r for r in recs if r["event_type"] == "alert"]


@pytest.mark.parametrize("opts,fires", [
    ('http.method; content:"POST";', True),
    ('http.method; content:"GET";', False),
    ('http.uri; content:"/login.php?user=admin"; startswith; bsize:21;', True),  # normalised
    ('http.uri; content:"/login.php"; startswith;', True),
    ('http.uri.raw; content:"/app/../login.php";', True),
    ('content:"/app/../"; http_raw_uri;', True),
    ('content:"login.php"; http_uri; content:"user="; http_uri; distance:0;', True),
    ('uricontent:"admin";', True),
    ('http.host; content:"shop.example.test"; bsize:17;', True),
    ('http.host.raw; content:"Shop.Example.test:8080";', True),
    ('http.user_agent; content:"evilbot"; nocase;', True),
    ('content:"EvilBot"; http_user_agent; depth:7;', True),
    ('http.cookie; content:"sid=42";', True),
    ('http.header; content:"Cookie: sid=42|0d 0a|";', True),
    ('http.header; to_lowercase; content:"user-agent: evilbot";', True),
    ('http.header_names; content:"|0d 0a|Host|0d 0a|User-Agent|0d 0a|";', True),
    ('http.request_line; content:"POST /app/../login.php"; startswith;', True),
    ('http.request_body; content:"pass=secret";', True),
    ('content:"secret"; http_client_body;', True),
    ('pcre:"/^\\/login\\.php/U";', True),
    ('urilen:>10;', True),
    ('urilen:<5;', False),
    ('http.stat_code; content:"200";', True),
    ('http.server; content:"nginx"; bsize:5;', True),
    ('file_data; content:"Welcome admin";', True),      # gunzipped
    ('flow:to_client; http.header; content:"Server: nginx";', True),
    ('http.uri; to_sha256; content:"|00 00|";', False),
    ('http.method; content:"POST"; content:"secret";', False),  # both in http.method
    ('content:"POST"; http_method; content:"secret";', True),   # stream option: the message
    ('http.method; content:"POST"; pkt_data; content:"Cookie: sid";', True),
])
def test_buffers(opts, fires):
    rules = f'alert http any any -> any any (msg:"t"; {opts} sid:1;)\n'
    _, recs = alerts(rules, talk(REQ, RES).frames)
    assert len(recs) == (1 if fires else 0), opts
    if recs:
        assert recs[0]["app_proto"] == "http" and recs[0]["tx_id"] == 0
        assert recs[0]["http"]["url"] == "/app/../login.php?user=admin"


def test_each_rule_once_per_transaction_and_the_prefilter_asks_only_for_candidates():
    reqs = b"".join(b"GET /%d HTTP/1.1\r\nHost: h\r\n\r\n" % i for i in range(3))
    resps = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n" * 3
    rules = "".join(f'alert http any any -> any any (msg:"n{i}"; http.uri; content:"/x{i}"; '
                    f'sid:{i + 10};)\n' for i in range(200))
    rules += 'alert http any any -> any any (msg:"uri"; http.uri; content:"/"; sid:1;)\n'
    ids, recs = alerts(rules, talk(reqs, resps).frames)
    assert sorted(r["tx_id"] for r in recs) == [0, 1, 2]
    assert ids.candidates == 3          # only sid 1, once per transaction


def test_headers_that_never_end_are_inspected_at_flow_end():
    t = talk(b"GET /x HTTP/1.1\r\nUser-Agent: slowloris\r\n", b"")
    _, recs = alerts('alert http any any -> any any (msg:"ua"; http.user_agent; '
                     'content:"slowloris"; sid:1;)\n', t.frames)
    assert len(recs) == 1


def test_http_rules_share_the_engine_parser_with_an_app():
    from middleboxes.httplog.httplog import HttpLog
    out, log_out = io.StringIO(), io.StringIO()
    ids = Ids(load_rules_text('alert http any any -> any any (msg:"m"; http.method; '
                              'content:"POST"; sid:1;)\n'), eve=Eve(out))
    eng = mos.Engine()
    ids.attach(eng)
    HttpLog(log_out, "eve").attach(eng)
    for ts, fr in talk(REQ, RES).frames:
        eng.feed(fr, ts)
    eng.close()
    assert '"signature_id":1' in out.getvalue() and '"event_type":"http"' in log_out.getvalue()


def test_buffers_module_examples():
    import doctest
    from middleboxes.ids import buffers
    res = doctest.testmod(buffers)
    assert res.attempted and not res.failed


def test_block_scanner_finds_each_pattern_once_and_refuses_bad_input():
    from middleboxes.ids._prefilter import BlockScanner
    b = BlockScanner([b"abc", b"XYZ", b"bc"], [False, True, False])
    assert sorted(b.scan(b"xxabcxyzabc")) == [0, 1, 2]
    assert b.scan(b"") == [] and b.scan(b"bc") == [2] and b.scan(bytearray(b"ab")) == []
    for bad, msg in (([], "at least one pattern"), ([b"a", b""], "pattern 1 is empty")):
        with pytest.raises(ValueError, match=msg):
            BlockScanner(bad)
    with pytest.raises(ValueError, match="nocase flags"):
        BlockScanner([b"a"], [True, False])


def test_buffers_of_a_message_without_a_line():
    # found by fuzz/fuzz_http.py: libhtp leaves a response's line unset in
    # some 100-continue exchanges; the raw and http.start buffers must not fail
    from mos.app.http import Response
    from middleboxes.ids.buffers import TxBuffers
    res = Response({"line": None, "protocol": None, "status": None, "message": None,
                    "headers": [(b"Transfer-Encoding", b"chunked")], "body_length": 3,
                    "complete": True})
    b = TxBuffers(None, res, b"", b"xyz")
    assert b.get("raw:res") == b"\r\nTransfer-Encoding: chunked\r\n\r\nxyz"
    assert b.get("res:http.start") == b"\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert b.get("http.response_line") is None
