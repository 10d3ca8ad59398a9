"""`mos streams` against tshark's `-z follow,tcp,raw,N` on every corpus capture.

tshark is an outside oracle with known, different semantics (DESIGN 6).
Each capture below declares, per TCP stream, where mos and tshark differ
and why; the test then asserts the documented relation between the two
outputs, never a skip:

* ``midstream``: the stream's handshake is not in the capture.  mos tracks
  such flows only with ``--midstream`` (DESIGN 2); tshark always follows
  them.  Compared with ``--midstream``: equal.  Without it: absent from mos.
* ``bad_checksum``: the stream's TCP checksums are wrong (offload on the
  capturing host).  tshark does not verify checksums by default.  Compared
  with ``--checksum ignore``: equal.  With ``--checksum verify``: mos drops
  the bad segments (no flow at all when the SYN is one of them), so
  tshark's bytes = mos's bytes + the payload of the bad segments.
* ``rst_payload``: a RST carries data.  tshark appends it to the stream;
  mos never puts RST payload in a stream (DESIGN 2), so tshark's bytes =
  mos's bytes + the RST's payload.
* ``overlap``: a later segment covers earlier bytes with other bytes.
  tshark keeps the first-seen bytes, as mos's default policy 'first' does:
  equal.  With ``--overlap last`` mos keeps the newest, so mos's bytes =
  tshark's bytes with every later overlapping segment written over them.
* ``gap_marker``: a segment is missing.  tshark writes the text
  ``[N bytes missing in capture file]`` and a NUL into the payload; mos
  reports the hole in ``gaps`` and leaves it out of ``bytes``, so tshark's
  bytes = mos's bytes with one marker inserted at each gap.

Agreements worth naming are listed as ``notes`` (first-seen overlap, IP
defragmentation, retransmissions), and asserted as plain equality.

tshark numbers a stream's nodes by who sent first, not by who is the
client: streams are matched to mos flows by their address/port pairs.

Two oracles: tshark run now (skipped when tshark is absent) and the
precomputed tshark 4.0 output in corpus/tshark-follow (count and md5 per
direction; always checked).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest

import corpus
from corpus import addr, addr_text, corpus_path

MARKER = "[{} bytes missing in capture file]\0"
SVA = "suricata-verify-app/"


@dataclass(frozen=True)
class Spec:
    #: "A <> B" (the stream's two endpoints) -> why the handshake is missing
    midstream: dict = field(default_factory=dict)
    #: "A <> B" -> which segments have wrong TCP checksums
    bad_checksum: dict = field(default_factory=dict)
    #: "SRC > DST" (one direction) -> what the RST carries
    rst_payload: dict = field(default_factory=dict)
    #: "SRC > DST" -> which segments overlap earlier ones with other bytes
    #: (equal under mos's default 'first'; differ under --overlap last)
    overlap: dict = field(default_factory=dict)
    #: "SRC > DST" -> which segment is missing
    gap_marker: dict = field(default_factory=dict)
    #: agreements worth naming (asserted as equality)
    notes: tuple = ()

    def args(self) -> tuple:
        """Options of `mos streams` under which mos and tshark follow the same packets."""
        a = ()
        if self.midstream:
            a += ("--midstream",)
        if self.bad_checksum:
            a += ("--checksum", "ignore")
        return a


def _pair(text: str) -> frozenset:
    a, b = text.split(" <> ")
    return frozenset((addr(a), addr(b)))


def _dir(text: str) -> tuple:
    a, b = text.split(" > ")
    return addr(a), addr(b)


SPECS: dict = {
    "pcapplusplus/frag_http_req/frag_http_req.pcap": Spec(
        midstream={"172.16.133.54:64415 <> 216.137.33.81:80":
                   "the capture holds a single data segment (1460 bytes in 11 IPv4 "
                   "fragments), no handshake"},
        notes=("tshark reassembles the IP fragments itself; so does mos (native/defrag.c): "
               "the 1460 bytes agree",)),
    "pcapplusplus/ipv6_http_stream/one_ipv6_http_stream.pcap": Spec(
        notes=("IPv6 on the raw-IP link type; capture ends before any FIN",)),
    "pcapplusplus/one_http_stream_fin/one_http_stream_fin2.pcap": Spec(
        notes=("the server's last data segment carries the FIN",)),
    "pcapplusplus/one_http_stream_rst/one_http_stream_rst.pcap": Spec(
        notes=("QinQ + PPPoE encapsulation; the client's RST carries no payload, so "
               "tshark's RST rule changes nothing here",)),
    "pcapplusplus/one_tcp_stream/one_tcp_stream.pcap": Spec(
        overlap={"10.0.0.1:61541 > 81.218.72.15:80":
                 "frame 17 is a keep-alive whose 1 garbage byte (0x00) covers the last "
                 "byte sent ('}')"},
        notes=("frames 7 and 24 re-send already-sent bytes, re-segmented, unchanged: "
               "equal under either policy",)),
    "pcapplusplus/three_http_streams/three_http_streams.pcap": Spec(),
    "peafowl/http.pcap": Spec(
        notes=("precomputed tshark output is stored as peafowl_tcp_resegment_http.pcap.txt",)),
    "suricata-verify/alert-testmyids-midstream/input.pcap": Spec(
        midstream={"82.165.177.154:80 <> 10.16.1.11:54186":
                   "the capture starts with the server's response (tshark's node 0 is "
                   "the server)"}),
    "suricata-verify/bug-6887-defrag-ipv4-tcp-syn/frag-ip-tcp-syn.pcap": Spec(
        notes=("a lone SYN in three IPv4 fragments on link type 228: both reassemble it "
               "and follow an empty stream",)),
    "suricata-verify/eve-overlap-payload-01/tcp-overlap.pcap": Spec(
        overlap={"1.1.1.1:12345 > 2.2.2.2:8080":
                 "'EVIL' (frame 6) at the sequence number of 'GOOD' (frame 5)"}),
    "suricata-verify/eve-overlap-payload-04-partial-overlap/tcp-overlap2.pcap": Spec(
        overlap={"1.1.1.1:12345 > 2.2.2.2:8080":
                 "'XXX' (frame 6) over the last 3 bytes of 'GOOD' (frame 5)"}),
    "suricata-verify/flowbit-oring/input.pcap": Spec(),
    "suricata-verify/http-ipv6/input.pcap": Spec(
        bad_checksum={"[::1]:55717 <> [::1]:8000":
                      "all 14 TCP checksums are wrong (loopback capture, offload)"}),
    "suricata-verify/tcp-rst-unacked-stream-01-raw/input.pcap": Spec(
        rst_payload={"1.1.1.1:12345 > 2.2.2.2:8080":
                     "the client's RST (frame 8) carries 13 bytes, 'Access Denied'"}),
    "suricata-verify/tcp-split-handshake-01-4whs/split-handshake-4whs.pcap": Spec(
        notes=("split handshake (SYN, SYN, SYN-ACK, ACK) ended by RST without payload",)),
    "suricata-verify/tcp-stream-after-swap/http-start-from-response.pcap": Spec(
        midstream={"172.16.9.189:80 <> 172.16.9.181:38498":
                   "the capture starts with the server's response (tshark's node 0 is "
                   "the server)"},
        bad_checksum={"172.16.9.189:80 <> 172.16.9.181:38498":
                      "the server's 4 segments (frames 1, 2, 4, 7) have wrong checksums"}),
    "zeek/conn_state-RST/syn-then-stuff-then-rst.pcap": Spec(),
    "zeek/fin-retransmit/fin_retransmission.pcap": Spec(),
    "zeek/http-get/get.pcap": Spec(),
    "zeek/missing-syn/missing-syn.pcap": Spec(
        midstream={"125.190.109.199:80 <> 141.42.64.125:56730":
                   "the capture starts at the SYN-ACK (tshark's node 0 is the server)"}),
    "zeek/vlan-mpls/mixed-vlan-mpls.pcap": Spec(
        bad_checksum={"141.42.64.125:56730 <> 125.190.109.199:80":
                      "all 22 segments of this (untagged) flow have wrong checksums"},
        notes=("802.1Q and MPLS encapsulation",)),
    "zeek/wikipedia/wikipedia.pcap": Spec(
        midstream={"141.142.220.118:35634 <> 208.80.152.2:80":
                   "only data and an ACK, no handshake (Zeek history DdA)",
                   "173.192.163.128:80 <> 141.142.220.235:6705":
                   "a lone SYN-ACK (Zeek history ^h)"},
        notes=("UDP (DNS, NetBIOS) and STP frames are not followed by either",)),
    # ---- suricata-verify-app/ (HTTP/1.x and TLS; no precomputed tshark output:
    # compared with the tshark run here only)
    SVA + "bug-130/input.pcap": Spec(
        notes=("GET, then a 401 whose body runs to the server's FIN (frame 12)",)),
    SVA + "bug-2430/backwards.pcap": Spec(
        notes=("the four closing segments (frames 25-28) come 60 s after the last data: "
               "mos's idle timeout (30 s) ends the flow first, and without --midstream "
               "they are orphans that add nothing to either stream",)),
    SVA + "bug-2646-01/input.pcap": Spec(
        bad_checksum={"192.168.0.253:49584 <> 151.101.36.133:443":
                      "frame 8 (2096 bytes of the server's certificate chain) has a wrong "
                      "checksum; the other 28 are right"},
        notes=("frames 21-29 re-send the server's FIN and its 31-byte alert (frame 19) "
               "nine times, unchanged: equal",)),
    SVA + "bug-28/input.pcap": Spec(
        notes=("frames 5-9 re-send the 442-byte request of frame 4 unchanged; frame 9 "
               "comes 48 s after frame 8, past mos's idle timeout, and is an orphan "
               "(same bytes either way)",)),
    SVA + "bug-3616-ips/input.pcap": Spec(),
    SVA + "bug-4199-4/input.pcap": Spec(
        notes=("the POST's headers (frame 4) and body (frame 6) are separate segments",)),
    SVA + "bug-5929-01/1e3b98e5dad2954.pcap": Spec(),
    SVA + "bug-814/input.pcap": Spec(
        notes=("IPv6 link-local addresses in 802.1Q (VLAN 1111)",)),
    SVA + "bug-8336-01-default-track-only/input.pcap": Spec(),
    SVA + "community-id-ipv4/input.pcap": Spec(
        bad_checksum={"172.26.0.39:35958 <> 172.217.14.206:443":
                      "29 of 43 checksums are wrong (23 of the client's 24 segments, the SYN "
                      "among them; 6 of the server's 19)"},
        notes=("frames 42-43 (FIN, RST) come after the RST of frame 41 ended the flow: "
               "not in either stream",)),
    SVA + "detect-bsize-0/input.pcap": Spec(
        bad_checksum={"127.0.0.1:51136 <> 127.0.0.1:8001":
                      "all 18 TCP checksums are wrong (loopback capture, DLT_NULL)"}),
    SVA + "detect-content-ends-with-negated-01/input.pcap": Spec(),
    SVA + "detect-engine-state-01/input.pcap": Spec(
        bad_checksum={"1.2.3.4:51694 <> 1.2.3.5:8080":
                      "all 20 TCP checksums are wrong (a generated capture)"},
        notes=("two pipelined requests in 7 small segments",)),
    SVA + "detect-uricontent-04/input.pcap": Spec(
        midstream={"192.168.1.5:53 <> 192.168.1.1:80":
                   "the capture is a single data segment (frame 1), no handshake; mos "
                   "guesses port 53 as the server (DESIGN 2: lower port), tshark's node 0 "
                   "is the sender"}),
    SVA + "http-chunked/input.pcap": Spec(),
    SVA + "http-close-headers/input.pcap": Spec(
        bad_checksum={"100.64.0.14:52398 <> 100.64.0.200:80":
                      "the client's 5 segments (frames 1, 3, 4, 8, 9: SYN and request among "
                      "them) have wrong checksums"}),
    SVA + "http-evader-000/input.pcap": Spec(),
    SVA + "http-evader-104/input.pcap": Spec(),
    SVA + "http-missing-protocol/input.pcap": Spec(
        notes=("the server's SYN-ACK is sent twice (frames 2 and 5)",)),
    SVA + "http-request-line/input.pcap": Spec(
        midstream={"5.6.7.8:6666 <> 1.2.3.4:63":
                   "the capture is a single data segment (frame 1, VLAN), no handshake"}),
    SVA + "http-response-line/input.pcap": Spec(
        midstream={"[::ffff:5.6.7.8]:6666 <> [::ffff:1.2.3.4]:63":
                   "two data segments (frames 1 and 2, VLAN, IPv4-mapped IPv6), no "
                   "handshake"}),
    SVA + "http-sticky-start/input.pcap": Spec(
        notes=("three keep-alive exchanges; 24470 bytes from the server in 18 segments",)),
    SVA + "sslv2-tls-upgrade-01/ssl-v2-s1.pcap": Spec(
        notes=("the ClientHello is in SSLv2 format; frames 35-36 (ACK, RST) come after "
               "the RST of frame 34 ended the flow: no payload, not in either stream",)),
    SVA + "tls-cert-noissuer/tls.pcap": Spec(
        bad_checksum={"192.168.116.130:54080 <> 54.206.116.39:443":
                      "the client's segments but its final RST (frames 1, 3, 4, 7, 8, 11, "
                      "12, 15, 16, 18) have wrong checksums"}),
    SVA + "tls-certs-alert/input.pcap": Spec(
        bad_checksum={"[2a03:b0c0:2:d0::bd3:4001]:48106 <> [2606:2800:220:1:248:1893:25c8:1946]:443":
                      "20 of 32 checksums are wrong: 18 of the client's (the SYN among them), "
                      "the server's frames 8 and 23"}),
    SVA + "tls-fingerprint-alert/input.pcap": Spec(
        notes=("the server's first segment (1448 bytes at offset 0) is missing when sent: "
               "frames 6, 8 and 10 (offsets 1448, 2048, 3496) come first, then its "
               "retransmission (frame 12) and a second one (frame 15): both reassemble "
               "the same 4009 bytes",)),
    SVA + "tls13-draft28/tls13_draft28.pcap": Spec(
        bad_checksum={"[::1]:39632 <> [::1]:4433": "all 16 TCP checksums are wrong (loopback)",
                      "[::1]:39634 <> [::1]:4433": "all 14 TCP checksums are wrong (loopback)"},
        notes=("two flows to the same server port",)),
}

#: captures with precomputed tshark output in corpus/tshark-follow, and those without
#: (compared with the tshark run here only)
WITH_REFERENCE = sorted(r for r in SPECS if corpus.has_tshark_reference(r))
WITHOUT_REFERENCE = sorted(r for r in SPECS if not corpus.has_tshark_reference(r))

#: captures derived from the corpus to exercise a documented difference the
#: corpus itself does not show: name -> (source capture, frames to drop, spec)
DERIVED: dict = {
    "one_http_stream_fin2-minus-frame7": (
        "pcapplusplus/one_http_stream_fin/one_http_stream_fin2.pcap", {7},
        Spec(gap_marker={"98.139.134.187:80 > 172.16.133.132:38630":
                         "frame 7 (1448 bytes at offset 1448) was dropped"})),
}


# ---------------------------------------------------------------- cached runs, run side by side

_pool = ThreadPoolExecutor(max_workers=max(2, (os.cpu_count() or 1) + 1))
_futures: dict = {}


def _submit(key, fn, *args):
    if key not in _futures:
        _futures[key] = _pool.submit(fn, *args)
    return _futures[key]


def _strict_needed(spec: Spec) -> bool:
    return bool(spec.midstream or spec.bad_checksum)


STRICT = ("--checksum", "verify")


@pytest.fixture(scope="module", autouse=True)
def _prefetch():
    """Start every tshark run of this module at once, in threads (they are independent)."""
    if corpus.CORPUS.is_dir():
        have_tshark = corpus.tshark_bin() is not None
        for rel, spec in SPECS.items():
            p = corpus.CORPUS / rel
            if not p.exists():
                continue
            if have_tshark:
                _submit(("tshark", str(p)), corpus.tshark_follow, p)
    yield
    _pool.shutdown(wait=False, cancel_futures=True)


def tshark_of(path) -> dict:
    if corpus.tshark_bin() is None:
        pytest.skip("tshark is not installed: the precomputed tshark 4.0 output is checked instead")
    return _submit(("tshark", str(path)), corpus.tshark_follow, path).result()


_mos_runs: dict = {}


def mos_of(path, args) -> corpus.StreamsRun:
    """`mos streams` runs in this process and this thread (its output is captured
    by swapping sys.stdout, which pytest's own capture would disturb in a thread)."""
    key = (str(path), tuple(args))
    if key not in _mos_runs:
        _mos_runs[key] = corpus.mos_streams(path, *args)
    run = _mos_runs[key]
    assert run.returncode == 0, f"mos streams {path} {' '.join(args)} failed: {run.stderr}"
    return run


# ---------------------------------------------------------------- the relations

def _endpoints_of(spec_map: dict) -> set:
    return {_pair(k) for k in spec_map}


def _segments(path):
    return corpus.segments(path)


def _rst_payload(path, src, dst) -> bytes:
    return b"".join(s.payload for s in _segments(path)
                    if s.src == src and s.dst == dst and s.flags & 0x04)


def _insert_markers(data: bytes, gaps) -> bytes:
    """mos's bytes (holes left out) with tshark's marker written at each hole."""
    out, pos, removed = bytearray(), 0, 0
    for off, n in sorted(gaps):
        cut = off - removed          # where the hole sits in the hole-less bytes
        out += data[pos:cut] + MARKER.format(n).encode()
        pos, removed = cut, removed + n
    return bytes(out + data[pos:])


def predict_tshark(path, spec: Spec, d: corpus.Direction) -> bytes:
    """What tshark should print for a direction mos reported, per the spec."""
    key = f"{addr_text(d.src)} > {addr_text(d.dst)}"
    data = d.data
    if key in spec.gap_marker:
        assert d.gaps, f"{key}: declared gap ({spec.gap_marker[key]}) but mos reports none"
        data = _insert_markers(data, d.gaps)
    else:
        assert d.gaps == [], f"{key}: mos reports gaps {d.gaps} the spec does not declare"
    if key in spec.rst_payload:
        rst = _rst_payload(path, d.src, d.dst)
        assert rst, f"{key}: declared RST payload ({spec.rst_payload[key]}) but none is in the capture"
        data += rst  # tshark: RST payload follows the stream; mos: never in a stream
    return data


def check_mos_consistent(run: corpus.StreamsRun) -> None:
    """`mos streams`' own fields agree with the bytes its --write-dir wrote."""
    for d in run.directions:
        assert d.nbytes == len(d.data), (d.src, d.dst, d.nbytes, len(d.data))
        assert d.sha256 == corpus.sha256(d.data), (d.src, d.dst)


def compare(path, spec: Spec, run: corpus.StreamsRun, oracle: dict) -> list:
    """Match every oracle direction to mos and compare; returns what was compared.

    ``oracle``: {(src, dst): bytes} (live tshark) or {(src, dst): (count, md5)}."""
    mine = run.by_pair()
    compared = []
    for (src, dst), theirs in oracle.items():
        d = mine.get((src, dst))
        assert d is not None, (f"tshark follows {addr_text(src)} > {addr_text(dst)}; mos "
                               f"{' '.join(run.args)} has no such direction: {sorted(mine)}")
        want = predict_tshark(path, spec, d)
        if isinstance(theirs, bytes):
            assert want == theirs, (f"{addr_text(src)} > {addr_text(dst)}: mos predicts "
                                    f"{len(want)} bytes, tshark has {len(theirs)}; first difference at "
                                    f"{next((i for i, (a, b) in enumerate(zip(want, theirs)) if a != b), min(len(want), len(theirs)))}")
        else:
            assert (len(want), corpus.md5(want)) == theirs, (addr_text(src), addr_text(dst))
        compared.append((src, dst))
    extra = set(mine) - set(oracle)
    assert not extra, f"mos reports directions tshark does not follow: {sorted(extra)}"
    return compared


def live_oracle(streams: dict) -> dict:
    out = {}
    for s in streams.values():
        out[(s.node0, s.node1)] = s.n0to1
        out[(s.node1, s.node0)] = s.n1to0
    return out


def reference_oracle(rel: str) -> dict:
    return {(r.src, r.dst): (r.nbytes, r.md5) for r in corpus.tshark_reference(rel)}


def strict_relation(path, spec: Spec, run: corpus.StreamsRun, oracle_sizes: dict) -> None:
    """`mos streams --checksum verify` without --midstream against tshark.

    ``oracle_sizes``: {(src, dst): byte count} from tshark."""
    mine = run.by_pair()
    segs = _segments(path)
    absent = _endpoints_of(spec.midstream)
    for pair_text in spec.bad_checksum:
        pair = _pair(pair_text)
        syn = [s for s in segs if {s.src, s.dst} == pair and s.flags & 0x02 and not s.flags & 0x10]
        if pair in absent or not syn or not syn[0].checksum_ok:
            absent.add(pair)  # no valid SYN: no flow without --midstream
    for (src, dst), n in oracle_sizes.items():
        pair = frozenset((src, dst))
        if pair in absent:
            assert (src, dst) not in mine, (
                f"{addr_text(src)} > {addr_text(dst)}: without --midstream (and with checksums "
                f"verified) mos must not track this flow")
            continue
        d = mine.get((src, dst))
        assert d is not None, f"{addr_text(src)} > {addr_text(dst)} missing from mos"
        bad = sum(len(s.payload) for s in segs if s.src == src and s.dst == dst
                  and not s.checksum_ok and not s.flags & 0x04)
        rst = len(_rst_payload(path, src, dst)) if f"{addr_text(src)} > {addr_text(dst)}" in spec.rst_payload else 0
        assert n == d.nbytes + bad + rst, (addr_text(src), addr_text(dst), n, d.nbytes, bad, rst)
    assert not set(mine) - set(oracle_sizes)
    nbad = sum(1 for s in segs if not s.checksum_ok)
    if nbad:
        assert f"{nbad} bad_checksum" in run.stderr, run.stderr


# ---------------------------------------------------------------- tests

def test_every_corpus_capture_has_a_spec():
    """A capture added to the corpus must say how it compares with tshark."""
    found = corpus.corpus_captures()
    if not found:
        pytest.skip(corpus.MISSING)
    assert sorted(SPECS) == found


def _check_declared_streams(rel: str, spec: Spec, oracle: dict) -> None:
    pairs = {frozenset(k) for k in oracle}
    for k in list(spec.midstream) + list(spec.bad_checksum):
        assert _pair(k) in pairs, f"{rel}: {k} is not a tshark stream"
    for k in list(spec.rst_payload) + list(spec.gap_marker) + list(spec.overlap):
        assert _dir(k) in oracle, f"{rel}: {k} is not a tshark direction"


def test_declared_streams_exist_in_the_reference():
    """Declared differences name streams tshark really has (no stale declarations)."""
    for rel in WITH_REFERENCE:
        corpus_path(rel)
        _check_declared_streams(rel, SPECS[rel], reference_oracle(rel))


@pytest.mark.parametrize("rel", WITHOUT_REFERENCE)
def test_declared_streams_exist_in_live_tshark(rel):
    """The same for the captures corpus/tshark-follow does not cover, against tshark run here."""
    path = corpus_path(rel)
    _check_declared_streams(rel, SPECS[rel], live_oracle(tshark_of(path)))


def test_only_the_app_captures_lack_a_precomputed_reference():
    """corpus/tshark-follow covers every capture but suricata-verify-app/ (its README
    says so); a reference missing elsewhere is an error, not a capture to skip."""
    if not corpus.CORPUS.is_dir():
        pytest.skip(corpus.MISSING)
    assert WITHOUT_REFERENCE == sorted(r for r in SPECS if r.startswith(SVA))
    assert len(WITHOUT_REFERENCE) == 27


@pytest.mark.parametrize("rel", sorted(SPECS))
def test_streams_match_live_tshark(rel):
    """`mos streams` (with the spec's options) == tshark follow, up to the declared differences."""
    path = corpus_path(rel)
    spec = SPECS[rel]
    streams = tshark_of(path)
    run = mos_of(path, spec.args())
    check_mos_consistent(run)
    compared = compare(path, spec, run, live_oracle(streams))
    assert len(compared) == 2 * len(streams)


@pytest.mark.parametrize("rel", WITH_REFERENCE)
def test_streams_match_precomputed_tshark(rel):
    """Same relation against corpus/tshark-follow (tshark 4.0: byte count and md5)."""
    path = corpus_path(rel)
    spec = SPECS[rel]
    run = mos_of(path, spec.args())
    compare(path, spec, run, reference_oracle(rel))


@pytest.mark.parametrize("rel", sorted(r for r, s in SPECS.items() if _strict_needed(s)))
def test_streams_strict_options_against_tshark(rel):
    """Without --midstream and with checksums verified, the declared streams lose
    exactly what the spec says (the whole flow, or the bad segments' bytes)."""
    path = corpus_path(rel)
    spec = SPECS[rel]
    run = mos_of(path, STRICT)
    check_mos_consistent(run)
    if corpus.tshark_bin() is not None:
        sizes = {k: len(v) for k, v in live_oracle(tshark_of(path)).items()}
    elif corpus.has_tshark_reference(rel):
        sizes = {(r.src, r.dst): r.nbytes for r in corpus.tshark_reference(rel)}
    else:
        pytest.skip(f"tshark is not installed and {rel} has no precomputed tshark output")
    strict_relation(path, spec, run, sizes)


@pytest.mark.parametrize("rel", WITH_REFERENCE)
def test_live_tshark_reproduces_precomputed_output(rel):
    """The tshark here gives what corpus/tshark-follow recorded (same tshark 4.0 semantics)."""
    path = corpus_path(rel)
    streams = tshark_of(path)
    version = corpus.tshark_version()
    if not version.startswith("4.0."):
        pytest.skip(f"precomputed output is from tshark 4.0, this is {version or 'unknown'}")
    live = {k: (len(v), corpus.md5(v)) for k, v in live_oracle(streams).items()}
    assert live == reference_oracle(rel)


def later_bytes_win(first_seen: bytes, path, src, dst) -> bytes:
    """tshark's first-seen stream with every later overlapping segment written over it."""
    segs = [x for x in _segments(path) if x.src == src and x.dst == dst]
    isn = next(x.seq for x in segs if x.flags & 0x02)
    img, covered = bytearray(first_seen), bytearray(len(first_seen))
    for x in segs:
        if x.flags & 0x04 or not x.payload:
            continue
        off = (x.seq - isn - 1) % (1 << 32)
        for i, b in enumerate(x.payload):
            if off + i < len(img):
                if covered[off + i]:
                    img[off + i] = b
                covered[off + i] = 1
    return bytes(img)


@pytest.mark.parametrize("rel", sorted(r for r, s in SPECS.items() if s.overlap))
def test_streams_overlap_last_against_live_tshark(rel):
    """`mos streams --overlap last`: tshark's first-seen bytes, overwritten by
    every later overlapping segment (the newest bytes win)."""
    path = corpus_path(rel)
    spec = SPECS[rel]
    theirs = live_oracle(tshark_of(path))
    run = mos_of(path, spec.args() + ("--overlap", "last"))
    for key in spec.overlap:
        src, dst = _dir(key)
        want = later_bytes_win(theirs[src, dst], path, src, dst)
        assert want != theirs[src, dst], f"{key}: declared overlap changes nothing"
        # the bytes --write-dir wrote; `sha256` under 'last' is test_corpus' xfail
        assert run.by_pair()[src, dst].data == want
    for (src, dst), data in theirs.items():
        if f"{addr_text(src)} > {addr_text(dst)}" not in spec.overlap:
            assert run.by_pair()[src, dst].data == data


@pytest.mark.parametrize("name", sorted(DERIVED))
def test_derived_capture_against_live_tshark(name, tmp_path):
    """Differences the corpus does not show, on a corpus capture with frames dropped."""
    rel, drop, spec = DERIVED[name]
    src = corpus_path(rel)
    if corpus.tshark_bin() is None:
        pytest.skip("tshark is not installed")
    lt, frames = corpus.read_frames(src)
    path = tmp_path / (name + ".pcap")
    corpus.write_pcap(path, lt, [f for i, f in enumerate(frames, 1) if i not in drop])
    streams = corpus.tshark_follow(path)
    run = corpus.mos_streams(path, *spec.args())
    assert run.returncode == 0, run.stderr
    check_mos_consistent(run)
    compare(path, spec, run, live_oracle(streams))
    # the relation in numbers: mos bytes == tshark bytes - marker text, per gap
    for k in spec.gap_marker:
        s, d = _dir(k)
        mine = run.by_pair()[s, d]
        theirs = live_oracle(streams)[s, d]
        markers = sum(len(MARKER.format(n)) for _o, n in mine.gaps)
        assert mine.nbytes == len(theirs) - markers
        # and mos's gap is exactly the dropped segment's place in the stream
        segs = corpus.segments(src)
        isn = next(x.seq for x in segs if x.src == s and x.flags & 0x02)
        holes = sorted(((x.seq - isn - 1) % (1 << 32), len(x.payload))
                       for x in segs if x.frame_no in drop and x.src == s and x.payload)
        assert mine.gaps == holes
