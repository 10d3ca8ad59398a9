"""mos.app.http: HTTP/1.x events and transactions on libhtp, driven by
conversations built with dpkt (198.18.0.0/15) and by the shipped capture
(checked against tshark)."""

from __future__ import annotations

import gzip
import shutil
import subprocess

import pytest
from hypothesis import given, settings, strategies as st

import mos
from mos.dualstack._engine import Flow
from test_ids_evasion import Talk

http = pytest.importorskip("mos.app.http")


def run(frames, record_body=True):
    """Events as (name, side, details) in the order handlers saw them."""
    eng = mos.Engine()
    h = http.Http(bodies=record_body).attach(eng)
    mon = eng.attach(mos.Monitor())
    out = []

    @mon.on(http.HTTP_REQUEST)
    def req(flow, side, ev):
        r = flow.http.request
        out.append(("request", side.name, flow.http.tx.index, r.method, r.uri, r.protocol,
                    tuple(r.headers)))

    @mon.on(http.HTTP_RESPONSE)
    def res(flow, side, ev):
        r = flow.http.response
        out.append(("response", side.name, flow.http.tx.index, r.status, r.message,
                    tuple(r.headers)))

    if record_body:
        @mon.on(http.HTTP_BODY)
        def body(flow, side, ev):
            out.append(("body", side.name, flow.http.tx.index, flow.http.body))

    @mon.on(http.HTTP_DONE)
    def done(flow, side, ev):
        out.append(("done", side.name, flow.http.tx.index))

    @mon.on(http.HTTP_ANOMALY)
    def anomaly(flow, side, ev):
        out.append(("anomaly", side.name, flow.http.anomaly))

    for ts, fr in frames:
        eng.feed(fr, ts)
    eng.close()
    return out, h


def merged(events):
    """Events with consecutive body chunks of one transaction joined (how a
    body is cut in chunks follows the segments)."""
    out = []
    for e in events:
        if e[0] == "body" and out and out[-1][0] == "body" and out[-1][1:3] == e[1:3]:
            out[-1] = out[-1][:3] + (out[-1][3] + e[3],)
        else:
            out.append(e)
    return out


def talk(client: bytes, server: bytes, cuts=(), scuts=()):
    """One connection: the client's bytes cut at `cuts`, then the server's at
    `scuts`, each acknowledged."""
    t = Talk()
    for data, send, ack in ((client, t.c, t.s), (server, t.s, t.c)):
        bounds = [0, *sorted(set(c for c in (cuts if send == t.c else scuts)
                                  if 0 < c < len(data))), len(data)]
        for a, b in zip(bounds, bounds[1:]):
            if send == t.c:
                t.c(a, data[a:b])
            else:
                t.s(a, data[a:b])
        if send == t.c:
            t.s(0, ack=len(data))
        else:
            t.c(len(client), b"", ack=len(data))
    return t


GET = b"GET /a?x=1 HTTP/1.1\r\nHost: example.test\r\nUser-Agent: t/1\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: s\r\n\r\nhello"


def test_request_response_and_body():
    ev, h = run(talk(GET, OK).frames)
    assert ev == [
        ("request", "SERVER", 0, "GET", "/a?x=1", "HTTP/1.1",
         ((b"Host", b"example.test"), (b"User-Agent", b"t/1"))),
        ("done", "SERVER", 0),
        ("response", "CLIENT", 0, 200, "OK", ((b"Content-Length", b"5"), (b"Server", b"s"))),
        ("body", "CLIENT", 0, b"hello"),
        ("done", "CLIENT", 0),
    ]
    assert h.stats()["requests"] == 1 and h.stats()["responses"] == 1


def test_pipelined_requests_pair_with_their_responses_in_order():
    reqs = b"".join(b"GET /%d HTTP/1.1\r\nHost: h\r\n\r\n" % i for i in range(3))
    resps = b"".join(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n%02d" % i for i in range(3))
    ev, _ = run(talk(reqs, resps).frames)
    got = [(e[0], e[2], e[4] if e[0] == "request" else e[-1]) for e in ev
           if e[0] in ("request", "body")]
    assert got == [("request", 0, "/0"), ("request", 1, "/1"), ("request", 2, "/2"),
                   ("body", 0, b"00"), ("body", 1, b"01"), ("body", 2, b"02")]


def test_chunked_gzip_body_is_dechunked_and_decompressed():
    plain = b"The quick brown fox " * 500
    z = gzip.compress(plain)
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(z[i:i + 700]), z[i:i + 700])
                      for i in range(0, len(z), 700)) + b"0\r\n\r\n"
    resp = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Encoding: gzip\r\n\r\n"
            + chunks)
    ev, _ = run(talk(GET, resp, scuts=range(0, len(resp), 333)).frames)
    body = b"".join(e[3] for e in ev if e[0] == "body")
    assert body == plain
    assert ev[-1] == ("done", "CLIENT", 0)


def test_head_response_has_no_body_and_the_next_response_parses():
    reqs = b"HEAD /x HTTP/1.1\r\nHost: h\r\n\r\nGET /y HTTP/1.1\r\nHost: h\r\n\r\n"
    resps = (b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
             b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nnop")
    ev, _ = run(talk(reqs, resps).frames)
    assert [(e[2], e[3]) for e in ev if e[0] == "response"] == [(0, 200), (1, 404)]
    assert [(e[2], e[3]) for e in ev if e[0] == "body"] == [(1, b"nop")]


def test_204_and_304_have_no_body():
    reqs = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n"
    resps = (b"HTTP/1.1 204 No Content\r\n\r\n"
             b"HTTP/1.1 304 Not Modified\r\n\r\n")
    ev, _ = run(talk(reqs, resps).frames)
    assert [e[3] for e in ev if e[0] == "response"] == [204, 304]
    assert [e for e in ev if e[0] == "body"] == []


def test_100_continue_then_the_final_response():
    req = b"POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\ndata"
    resp = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"
    ev, _ = run(talk(req, resp).frames)
    assert [e[3] for e in ev if e[0] == "response"] == [201]
    assert ("body", "SERVER", 0, b"data") in ev


def test_connect_tunnel_stops_parsing_and_says_so():
    req = b"CONNECT example.test:443 HTTP/1.1\r\nHost: example.test:443\r\n\r\n\x16\x03\x01junk"
    resp = b"HTTP/1.1 200 Connection established\r\n\r\n\x16\x03\x03more"
    ev, h = run(talk(req, resp).frames)
    assert [e[3] for e in ev if e[0] == "request"] == ["CONNECT"]
    assert [e[3] for e in ev if e[0] == "response"] == [200]
    assert any(e[0] == "anomaly" and e[2] == "tunnel" for e in ev)


def test_garbage_is_given_up_with_an_anomaly_not_a_crash():
    """libhtp's IDS personality is lenient (as an IDS must be: a server may
    take odd lines): garbage lines become requests with odd methods and no
    protocol, never a crash, and nothing passes for a valid response."""
    ev, h = run(talk(b"\x00\x01\x02 not http at all\r\n\r\n" * 10, b"\xff" * 300).frames)
    reqs = [e for e in ev if e[0] == "request"]
    assert all(e[5] is None or not e[5].startswith("HTTP/1.") for e in reqs)
    assert all(e[3] is None or e[3] is None or e[3] > 999 or e[3] < 100
               for e in ev if e[0] == "response")
    # a flood of tiny segments of garbage
    ev, h = run(talk(bytes(range(256)) * 8, b"", cuts=range(0, 2048, 7)).frames)
    assert h.stats()["flows"] == 1


def test_gap_in_headers_gives_up_that_direction():
    t = Talk()
    t.c(0, b"GET /a HTTP/1.1\r\nHo")
    t.c(30, b"st: h\r\n\r\n")               # bytes 19..30 never come
    t.s(0, ack=39)                           # acknowledged past the hole: a gap
    t.s(0, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    t.c(39, b"", ack=38)
    ev, h = run(t.frames)
    assert ("anomaly", "SERVER", "gap") in ev or ("anomaly", "SERVER", "parse_error") in ev


def test_oversized_header_line_does_not_crash():
    big = b"GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n"
    ev, h = run(talk(big, OK, cuts=range(0, len(big), 1400)).frames)
    assert h.stats()["flows"] == 1


def test_flow_http_is_none_without_a_parser_and_for_non_http_engines():
    eng = mos.Engine()
    mon = eng.attach(mos.Monitor())
    seen = []

    def start(flow, side, event):
        seen.append(flow.http)
        with pytest.raises(AttributeError, match="'Flow' object has no attribute 'htpp'"):
            flow.htpp  # noqa: B018
        assert isinstance(flow, Flow) and type(flow).__name__ == "Flow"
        # no lookup hook of its own: CPython calls flow.peek(...) without
        # building a bound method per call
        assert type(flow).__getattribute__ is object.__getattribute__
        assert not hasattr(flow, "__dict__")
    mon.on(mos.Event.CONN_START, start)
    for ts, fr in talk(GET, OK).frames:
        eng.feed(fr, ts)
    eng.close()
    assert seen == [None]
    with pytest.raises(ValueError, match="already has"):
        mos.flow_attribute("peek", lambda f: None)


# ---------------------------------------------------------------- split invariance

_tokens = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.~/", min_size=1,
                  max_size=12)


@st.composite
def exchanges(draw):
    """1-4 pipelined request/response pairs with Content-Length or chunked
    bodies, and the client/server byte streams."""
    n = draw(st.integers(1, 4))
    reqs, resps = b"", b""
    pairs = []
    for i in range(n):
        method = draw(st.sampled_from(["GET", "POST", "PUT"]))
        body = draw(st.binary(max_size=40)) if method != "GET" else b""
        hdrs = b"".join(b"X-%s: %s\r\n" % (k.encode(), v.encode())
                        for k, v in draw(st.lists(st.tuples(_tokens, _tokens), max_size=3)))
        reqs += (b"%s /%s HTTP/1.1\r\nHost: h%d\r\n%sContent-Length: %d\r\n\r\n%s"
                 % (method.encode(), draw(_tokens).encode(), i, hdrs, len(body), body))
        rbody = draw(st.binary(max_size=60))
        if draw(st.booleans()):
            enc = (b"".join(b"%x\r\n%s\r\n" % (len(rbody[k:k + 9]), rbody[k:k + 9])
                            for k in range(0, len(rbody), 9)) + b"0\r\n\r\n")
            resps += b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + enc
        else:
            resps += b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(rbody), rbody)
        pairs.append((len(reqs), len(resps)))
    return reqs, resps, pairs


def interleaved(reqs, resps, pairs, cuts):
    """Request i, its response, request i+1...: each message cut at the
    given absolute offsets (both streams)."""
    t = Talk()
    c0 = s0 = 0
    for ce, se in pairs:
        for data, lo, hi, send in ((reqs, c0, ce, "c"), (resps, s0, se, "s")):
            bounds = [lo, *sorted(set(x for x in cuts if lo < x < hi)), hi]
            for a, b in zip(bounds, bounds[1:]):
                if a < b:
                    if send == "c":
                        t.c(a, data[a:b], ack=s0)
                    else:
                        t.s(a, data[a:b], ack=ce)
            if send == "c":
                t.s(s0, ack=ce)
            else:
                t.c(ce, b"", ack=se)
        c0, s0 = ce, se
    return t


@settings(max_examples=60, deadline=None)
@given(ex=exchanges(), data=st.data())
def test_any_segmentation_parses_like_one_segment_each_way(ex, data):
    reqs, resps, pairs = ex
    whole = merged(run(talk(reqs, resps).frames)[0])
    cuts = data.draw(st.lists(st.integers(1, max(1, len(reqs) - 1)), max_size=12))
    scuts = data.draw(st.lists(st.integers(1, max(1, len(resps) - 1)), max_size=12))
    split = merged(run(talk(reqs, resps, cuts, scuts).frames)[0])
    assert split == whole
    assert sum(e[0] == "request" for e in whole) == len(pairs)
    assert sum(e[0] == "response" for e in whole) == len(pairs)
    # request, response, request...: the same transactions, in turn
    turns = merged(run(interleaved(reqs, resps, pairs, cuts + scuts).frames)[0])
    assert sorted(map(repr, turns)) == sorted(map(repr, whole))


def test_every_byte_boundary_of_one_exchange():
    """Each single cut point, both directions."""
    reqs = (b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
            b"GET /g HTTP/1.1\r\nHost: h\r\n\r\n")
    resps = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nxyz\r\n0\r\n\r\n"
             b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    whole = merged(run(talk(reqs, resps).frames)[0])
    assert len([e for e in whole if e[0] == "request"]) == 2
    for k in range(1, len(reqs)):
        assert merged(run(talk(reqs, resps, cuts=[k]).frames)[0]) == whole, k
    for k in range(1, len(resps)):
        assert merged(run(talk(reqs, resps, scuts=[k]).frames)[0]) == whole, k


@settings(max_examples=80, deadline=None)
@given(c=st.binary(max_size=300), s=st.binary(max_size=300),
       cuts=st.lists(st.integers(1, 299), max_size=6))
def test_random_bytes_never_crash(c, s, cuts):
    run(talk(b"GET / HTTP/1.1\r\n" + c, s, cuts, cuts).frames)


# ---------------------------------------------------------------- a real capture

@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_sample_capture_agrees_with_tshark():
    ev, _ = run(((ts, fr) for ts, fr in _frames(mos.sample_capture())), record_body=False)
    ours = sorted((e[3], e[4]) for e in ev if e[0] == "request")
    p = subprocess.run(["tshark", "-r", mos.sample_capture(), "-Y", "http.request", "-T",
                        "fields", "-e", "http.request.method", "-e", "http.request.uri"],
                       capture_output=True, text=True, timeout=120)
    theirs = sorted(tuple(line.split("\t")) for line in p.stdout.splitlines() if line)
    assert ours == theirs and ours
    codes = sorted(e[3] for e in ev if e[0] == "response")
    p = subprocess.run(["tshark", "-r", mos.sample_capture(), "-Y", "http.response", "-T",
                        "fields", "-e", "http.response.code"],
                       capture_output=True, text=True, timeout=120)
    assert codes == sorted(int(x) for x in p.stdout.split())


def _frames(path):
    import dpkt
    with open(path, "rb") as fh:
        for ts, buf in dpkt.pcap.Reader(fh):
            yield ts, buf


def test_docstring_examples():
    import doctest
    res = doctest.testmod(http)
    assert res.attempted and not res.failed


def test_kinds_keep_unwanted_notes_out_of_python_and_sharing_widens_them():
    eng = mos.Engine()
    h = http.for_engine(eng, kinds=("request",))
    assert h.parser.kinds == ["request"]
    mon = eng.attach(mos.Monitor())
    seen = []
    for ev in (http.HTTP_REQUEST, http.HTTP_RESPONSE, http.HTTP_DONE):
        mon.on(ev, lambda f, s, e: seen.append(e.name))
    eng.run(mos.sample_capture())
    assert seen and set(seen) == {"HTTP_REQUEST"}
    eng2 = mos.Engine()
    http.for_engine(eng2, kinds=("request",))
    h2 = http.for_engine(eng2)                      # a second app wants everything
    assert h2.parser.kinds == sorted(http._K)
    with pytest.raises(ValueError, match="kinds: 'nope' is not one of"):
        h2.parser.kinds = ("nope",)
