"""mos.app.tls: the compiled record layer (split invariance, gaps, bad
input, preludes), the hello and certificate parsers, fingerprints checked
against tshark, and the events on real OpenSSL handshakes."""

from __future__ import annotations

import glob
import os
import shutil
import struct
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import mos
import tlsgen
from mos.app import _tls, tls
from mos.testing import tls_capture

SHARED = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__)))), "shared", "corpus")


def run_capture(path_or_frames, events=(tls.TLS_CLIENT_HELLO, tls.TLS_SERVER_HELLO,
                                        tls.TLS_CERTIFICATE, tls.TLS_HANDSHAKE_DONE,
                                        tls.TLS_ANOMALY)):
    eng = mos.Engine()
    t = tls.Tls().attach(eng)
    mon = eng.attach(mos.Monitor())
    log = []

    def handler(flow, side, event):
        f = flow.tls
        log.append({"event": event.name, "side": side.name, "flow": flow.id,
                    "ch": f.client_hello, "sh": f.server_hello, "certs": f.certificates,
                    "done": f.handshake_done, "anomaly": f.anomaly,
                    "ts": flow.packet.ts})
    for e in events:
        mon.on(e, handler)
    if isinstance(path_or_frames, str):
        eng.run(path_or_frames)
    else:
        for ts, fr in path_or_frames:
            eng.feed(fr, ts)
        eng.close()
    return log, t


# ---------------------------------------------------------------- events on real handshakes

def test_doctest():
    import doctest
    res = doctest.testmod(tls)
    assert res.attempted and not res.failed


def test_tls12_handshake_events_fields_and_certificates():
    log, t = run_capture(tls_capture())
    names = [(e["event"], e["side"]) for e in log if e["flow"] == log[0]["flow"]]
    assert names == [("TLS_CLIENT_HELLO", "SERVER"), ("TLS_SERVER_HELLO", "CLIENT"),
                     ("TLS_CERTIFICATE", "CLIENT"), ("TLS_HANDSHAKE_DONE", "CLIENT")]
    ch, sh, certs = log[1]["ch"], log[1]["sh"], log[2]["certs"]
    assert ch.sni == "www.example.org" and ch.alpn == ["h2", "http/1.1"]
    assert ch.version == 0x0303 and len(ch.random) == 32
    assert sh.selected_version == 0x0303 and sh.alpn == "h2" and sh.cipher in ch.ciphers
    assert tls.version_name(sh.selected_version) == "TLS 1.2"
    # the chain OpenSSL sent: the server's certificate, then the CA's
    assert [c.subject for c in certs] == ["C=XX, O=mos example, CN=www.example.org",
                                          "C=XX, O=mos CA, CN=mos test CA"]
    leaf = certs[0]
    assert leaf.subject == "C=XX, O=mos example, CN=www.example.org"
    assert leaf.issuer == "C=XX, O=mos CA, CN=mos test CA"
    assert leaf.serial == "08:3A:84:59:2F:77:F2:E7"
    assert leaf.sans == ["www.example.org"]
    assert str(leaf.not_before) == "2026-01-01 00:00:00"
    assert leaf.fingerprint.count(":") == 19 and leaf.error is None
    assert t.stats()["tls_flows"] == 2 and t.stats()["parse_errors"] == 0


def test_tls13_handshake_done_at_first_encrypted_record_and_no_certificate():
    log, _ = run_capture(tls_capture())
    second = [e for e in log if e["flow"] != log[0]["flow"]]
    assert [e["event"] for e in second] == ["TLS_CLIENT_HELLO", "TLS_SERVER_HELLO",
                                            "TLS_HANDSHAKE_DONE"]
    sh = second[1]["sh"]
    assert sh.version == 0x0303 and sh.selected_version == 0x0304
    assert 0x0304 in second[0]["ch"].supported_versions
    assert second[2]["certs"] == []      # encrypted in TLS 1.3


def test_ipv6_and_big_chain_split_over_segments():
    frames = tlsgen.tls_conversation("1.2", client=("2001:db8::1", 40000),
                                     server=("2001:db8::2", 443), mss=100)
    log, _ = run_capture(frames)
    assert [e["event"] for e in log] == ["TLS_CLIENT_HELLO", "TLS_SERVER_HELLO",
                                         "TLS_CERTIFICATE", "TLS_HANDSHAKE_DONE"]
    _, _, _, der, ca_der = tlsgen.chain()
    assert [c.der for c in log[2]["certs"]] == [der, ca_der]
    assert log[0]["ch"].sni == "www.example.org"


def test_http_flow_is_dropped_quietly():
    log, t = run_capture(mos.sample_capture())
    assert log == []
    st_ = t.stats()
    assert st_["tls_flows"] == 0 and st_["not_tls"] >= 1 and st_["anomalies"] == 0


# ---------------------------------------------------------------- fingerprints vs tshark

def _tshark_fingerprints(path):
    out = subprocess.run(["tshark", "-o", "tcp.reassemble_out_of_order:TRUE", "-r", path, "-Y", "tls.handshake.type==1 or "
                          "tls.handshake.type==2", "-T", "fields", "-e", "tls.handshake.ja3_full",
                          "-e", "tls.handshake.ja3s_full"], capture_output=True, text=True,
                         timeout=60).stdout
    ja3, ja3s = [], []
    for line in out.splitlines():
        a, _, b = line.partition("\t")
        if a:
            ja3.append(a)
        if b:
            ja3s.append(b)
    return ja3, ja3s


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
def test_ja3_and_ja3s_equal_tsharks_on_every_tls_capture():
    caps = [tls_capture()] + sorted(
        p for p in glob.glob(os.path.join(SHARED, "suricata-verify-app", "*", "*.pcap"))
        if os.path.basename(os.path.dirname(p)).startswith(("tls", "bug-2646", "bug-8336",
                                                             "community-id")))
    checked = 0
    for cap in caps:
        log, _ = run_capture(cap, events=(tls.TLS_CLIENT_HELLO, tls.TLS_SERVER_HELLO))
        ours_ch = [e["ch"].ja3 for e in log if e["event"] == "TLS_CLIENT_HELLO"]
        ours_sh = [e["sh"].ja3s for e in log if e["event"] == "TLS_SERVER_HELLO"]
        ja3, ja3s = _tshark_fingerprints(cap)
        assert sorted(ours_ch) == sorted(ja3), cap
        assert sorted(ours_sh) == sorted(ja3s), cap
        checked += len(ja3)
    assert checked >= 4


def test_suricata_verify_expectations_ja3_hash():
    cap = os.path.join(SHARED, "suricata-verify-app", "tls13-draft28", "tls13_draft28.pcap")
    if not os.path.exists(cap):
        pytest.skip("corpus not there")
    log, _ = run_capture(cap, events=(tls.TLS_CLIENT_HELLO, tls.TLS_SERVER_HELLO))
    hashes = sorted(e["ch"].ja3_hash for e in log if e["event"] == "TLS_CLIENT_HELLO")
    assert hashes == ["43202faa1c8c1760d6f7f4bd9adde4ab", "d00857e0c8e7a7f35e446508c6233460"]
    versions = {tls.version_name(e["sh"].selected_version) for e in log if e["sh"]}
    assert versions == {"TLS 1.3 draft-28"}


# ---------------------------------------------------------------- hello parser

def _hello(version=0x0303, ciphers=(0x1301, 0x0A0A, 0xC02F), exts=(), sid=b""):
    cs = b"".join(struct.pack(">H", c) for c in ciphers)
    ext = b"".join(struct.pack(">HH", t, len(d)) + d for t, d in exts)
    return (struct.pack(">H", version) + bytes(32) + bytes([len(sid)]) + sid
            + struct.pack(">H", len(cs)) + cs + b"\x01\x00" + struct.pack(">H", len(ext)) + ext)


def _sni(name):
    n = name.encode()
    entry = b"\x00" + struct.pack(">H", len(n)) + n
    return (0, struct.pack(">H", len(entry)) + entry)


def _alpn(*protos):
    body = b"".join(bytes([len(p)]) + p.encode() for p in protos)
    return (16, struct.pack(">H", len(body)) + body)


def test_client_hello_fields_grease_and_ja4():
    ch = tls.parse_client_hello(_hello(exts=[
        (0x1A1A, b""), _sni("a.example"), _alpn("h2"), (10, b"\x00\x04\x2a\x2a\x00\x1d"),
        (11, b"\x01\x00"), (13, b"\x00\x04\x04\x03\x08\x04"), (43, b"\x04\x3a\x3a\x03\x04")]))
    assert ch.sni == "a.example" and ch.alpn == ["h2"]
    assert ch.groups == [0x2A2A, 0x1D] and ch.point_formats == [0]
    assert ch.supported_versions == [0x3A3A, 0x0304]
    # GREASE (RFC 8701) is not in JA3: not the cipher, the extension or the group
    assert ch.ja3 == "771,4865-49199,0-16-10-11-13-43,29,0"
    a, b, c = ch.ja4.split("_")
    assert a == "t13d0206h2"          # TLS 1.3, SNI, 2 ciphers and 6 extensions besides GREASE
    import hashlib
    assert b == hashlib.sha256(b"1301,c02f").hexdigest()[:12]
    assert c == hashlib.sha256(b"000a,000b,000d,002b_0403,0804").hexdigest()[:12]


def test_ja4_without_sni_alpn_or_extensions():
    ch = tls.parse_client_hello(_hello(version=0x0301, ciphers=(0x002F,), exts=()))
    assert ch.ja4 == "t10i0100" + "00_" + \
        __import__("hashlib").sha256(b"002f").hexdigest()[:12] + "_000000000000"
    weird = tls.parse_client_hello(_hello(exts=[_alpn("\x01x")]))
    assert weird.ja4.split("_")[0].endswith("08")     # hex digits of a non-alphanumeric ALPN


def test_server_hello_and_hello_retry():
    sh = tls.parse_server_hello(struct.pack(">H", 0x0303) + tls.ServerHello.HRR_RANDOM
                                + b"\x00" + b"\x13\x01\x00"
                                + struct.pack(">H", 6) + b"\x00\x2b\x00\x02\x03\x04")
    assert sh.is_retry and sh.selected_version == 0x0304 and sh.ja3s == "771,4865,43"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_parsers_raise_only_their_error_on_garbage(data):
    for parse in (tls.parse_client_hello, tls.parse_server_hello,
                  lambda b: tls.parse_certificates(b, False),
                  lambda b: tls.parse_certificates(b, True)):
        try:
            parse(data)
        except tls.TlsParseError as exc:
            assert "needs" in str(exc) or "length" in str(exc)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 200))
def test_truncated_real_hello_names_the_field(cut):
    ch = tlsgen_client_hello()
    sid = ch[34]
    ncs = int.from_bytes(ch[35 + sid:37 + sid], "big")
    no_extensions = 37 + sid + ncs + 1 + ch[37 + sid + ncs]
    if cut >= len(ch) or cut == no_extensions:     # extensions are optional (RFC 5246 §7.4.1.2)
        return
    with pytest.raises(tls.TlsParseError) as e:
        tls.parse_client_hello(ch[:cut])
    assert "ClientHello" in str(e.value)


_CH = []


def tlsgen_client_hello():
    if not _CH:
        fr = _tls.Framer()
        data = b"".join(b for who, b in tlsgen.handshake_chunks("1.2") if who == "c")
        fr.feed(1, data)
        _CH.append(fr.message(0))
    return _CH[0]


def test_bad_certificate_is_reported_not_raised():
    c = tls.Certificate(b"\x30\x03\x02\x01\x01")
    assert c.subject == "" and c.serial == "" and c.not_after is None and c.error
    assert c.fingerprint.count(":") == 19


# ---------------------------------------------------------------- record layer

def _feed_all(chunks, cuts=None):
    """Feed ("c"|"s", bytes) chunks in order, each cut at `cuts` offsets."""
    fr = _tls.Framer()
    notes = []
    for who, data in chunks:
        d = 1 if who == "c" else 0
        pieces = [data] if cuts is None else [data[i:j] for i, j in zip([0] + cuts, cuts + [None])]
        for p in pieces:
            notes += fr.feed(d, p)
    return fr, notes


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_split_anywhere_gives_the_same_notes_and_messages(data):
    chunks = _STREAMS["1.2"]
    whole, wnotes = _feed_all(chunks)
    fr = _tls.Framer()
    notes = []
    for who, b in chunks:
        cuts = sorted(set(data.draw(st.lists(st.integers(1, max(1, len(b) - 1)), max_size=6))))
        for p in [b[i:j] for i, j in zip([0] + cuts, cuts + [None])]:
            notes += fr.feed(1 if who == "c" else 0, p)
    assert notes == wnotes
    assert [fr.message(i) for i in range(3)] == [whole.message(i) for i in range(3)]


def test_every_byte_boundary_of_the_server_flight():
    chunks = _STREAMS["1.2"]
    client = chunks[0][1]
    server = chunks[1][1]
    _, ref = _feed_all([("c", client), ("s", server)])
    assert [n[0] for n in ref] == ["client_hello", "server_hello", "certificate",
                                   "handshake_done"]
    for cut in range(1, len(server)):
        _, notes = _feed_all([("c", client), ("s", server[:cut]), ("s", server[cut:])])
        assert notes == ref, cut


_STREAMS = {"1.2": None}


@pytest.fixture(autouse=True, scope="module")
def _streams_once():
    _STREAMS["1.2"] = tlsgen.handshake_chunks("1.2")
    yield


def _record(rtype, body, version=0x0303):
    return struct.pack(">BHH", rtype, version, len(body)) + body


def _hs(mtype, body):
    return bytes([mtype]) + len(body).to_bytes(3, "big") + body


def test_gap_inside_application_data_is_skipped_but_not_inside_handshake():
    fr = _tls.Framer()
    fr.feed(1, _record(22, _hs(1, _hello())))
    app = _record(23, bytes(300))
    assert fr.feed(1, app[:10]) == []
    assert fr.feed(1, None, 200) == []                    # a hole inside the record body
    assert fr.feed(1, app[210:] + _record(23, b"x")) == []
    assert fr.state()["client"][3] is None
    hs = _record(22, _hs(1, _hello()))
    fr.feed(1, hs[:8])
    assert fr.feed(1, None, 20) == [("anomaly", 1, 1, 3)]  # gap: given up
    assert fr.state()["client"][3] == "gap"


def test_not_tls_is_quiet_and_bad_record_after_start_is_an_anomaly():
    fr = _tls.Framer()
    assert fr.feed(1, b"GET / HTTP/1.1\r\n\r\n") == []
    assert fr.state()["client"][3] == "not_tls" and fr.stats()["not_tls"] == 1
    fr = _tls.Framer()
    fr.feed(1, _record(22, _hs(1, _hello())))
    assert fr.feed(1, b"\x99\x03\x03\x00\x01x") == [("anomaly", 1, 1, 2)]
    fr = _tls.Framer()
    fr.feed(1, _record(22, _hs(1, _hello())))
    assert fr.feed(1, _record(23, b"")[:3] + b"\xff\xff") == [("anomaly", 1, 1, 2)]  # > 2^14+2048


def test_oversized_handshake_message_is_skipped_and_parsing_goes_on():
    fr = _tls.Framer()
    big = (1 << 20)
    notes = fr.feed(0, _record(22, bytes([11]) + big.to_bytes(3, "big") + bytes(100)))
    assert notes == [("anomaly", 0, 0, 4)]
    left = big - 100
    while left:
        n = min(left, 16000)
        assert fr.feed(0, _record(22, bytes(n))) == []
        left -= n
    sh = struct.pack(">H", 0x0303) + bytes(32) + b"\x00\x13\x01\x00"
    assert [n[0] for n in fr.feed(0, _record(22, _hs(2, sh)))] == ["server_hello"]
    assert fr.message(1) == sh and fr.stats()["oversized"] == 1


def test_handshake_records_after_change_cipher_spec_are_not_parsed():
    fr = _tls.Framer()
    fr.feed(1, _record(22, _hs(1, _hello())))
    fr.feed(0, _record(22, _hs(2, struct.pack(">H", 0x0303) + bytes(32) + b"\x00\x13\x01\x00")))
    notes = fr.feed(1, _record(20, b"\x01") + _record(22, _hs(1, b"\xff" * 40)))
    assert notes == [("handshake_done", 1, 0, 0)]        # resumption: CCS after the ServerHello
    assert fr.message(0) == _hello()                      # the encrypted "hello" was not taken


def test_sslv2_client_hello_then_tls_server():
    v2 = b"\x01\x03\x01" + struct.pack(">HHH", 3, 0, 16) + b"\x00\x00\x04" + bytes(16)
    fr = _tls.Framer()
    assert fr.feed(1, bytes([0x80 | (len(v2) >> 8), len(v2) & 0xFF]) + v2) == []
    assert fr.state()["client"][0] and fr.state()["client"][3] is None
    sh = struct.pack(">H", 0x0301) + bytes(32) + b"\x00\x00\x04\x00"
    assert [n[0] for n in fr.feed(0, _record(22, _hs(2, sh), 0x0301))] == ["server_hello"]


def test_http_connect_prelude_then_tls():
    fr = _tls.Framer()
    ch = _record(22, _hs(1, _hello()))
    notes = fr.feed(1, b"CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\n\r\n" + ch)
    assert [n[0] for n in notes] == ["client_hello"]
    sh = _record(22, _hs(2, struct.pack(">H", 0x0303) + bytes(32) + b"\x00\x13\x01\x00"))
    notes = fr.feed(0, b"HTTP/1.1 200 Connection established\r\n\r\n")
    assert notes == [] and [n[0] for n in fr.feed(0, sh)] == ["server_hello"]
    fr = _tls.Framer()
    fr.feed(1, b"CONNECT example.org:443 HTTP/1.1\r\n\r\n")
    notes = fr.feed(0, b"HTTP/1.1 403 Forbidden\r\n\r\n")
    assert [n[3] for n in notes] == [5, 5]                 # bad_prelude, both directions
    fr = _tls.Framer()
    notes = fr.feed(1, b"CONNECT " + b"a" * 20000)
    assert notes == [("anomaly", 1, 1, 5)]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.one_of(st.none(), st.binary(max_size=200)),
                          st.integers(0, 70000)), max_size=12))
def test_record_layer_never_fails_on_garbage(steps):
    fr = _tls.Framer()
    for d, data, n in steps:
        for note in fr.feed(int(d), data, n):
            assert note[0] in _tls.KIND
    fr.state()
