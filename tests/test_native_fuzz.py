"""Property and fuzz tests for the native layer: nothing crashes, hangs or
reads outside its input, whatever the bytes."""
import hashlib
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mos import _native as nat
from mos._native import Capture, Defrag, decode, decode_ip, fix_checksums
from mos.errors import CaptureError

try:
    import _netpkt as N
except ImportError:  # tests/ imported as a package
    from tests import _netpkt as N

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
RESULTS = {"tcp", "other", "fragment", "truncated", "malformed", "unsupported"}
LINKTYPES = [0, 1, 12, 14, 101, 108, 113, 228, 229, 276]

# ---- capture files ----

FRAMES = [N.simple_tcp_frame(i, b"q" * (i * 7)) for i in range(6)]
PCAP_LE = N.pcap([(i * 1000, f) for i, f in enumerate(FRAMES)])
PCAP_BE_NS = N.pcap([(i * 1000, f, len(f) + i) for i, f in enumerate(FRAMES)], order=">", nsec=True)
PCAPNG = (N.shb("<") + N.idb("<", 1, 64, tsresol=9) + N.epb("<", 0, 5, FRAMES[0])
          + N.block("<", 5, b"\0" * 12) + N.spb("<", FRAMES[1]) + N.idb("<", 101)
          + N.epb("<", 1, 6, FRAMES[2][14:]) + N.shb(">") + N.idb(">", 113, tsresol=0x85)
          + N.pb(">", 0, 7, N.sll(FRAMES[3][14:])) + N.epb(">", 0, 8, N.sll(FRAMES[4][14:])))
BASES = [PCAP_LE, PCAP_BE_NS, PCAPNG]
INTERESTING = [0, 1, 4, 11, 12, 13, 16, 28, 32, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0x10000000,
               0x0A0D0D0A, 0x1A2B3C4D, 0x4D3C2B1A]


def read_all(buf):
    """Frames of buf, or the CaptureError after them; checks the frames' invariants."""
    frames = []
    try:
        c = Capture.from_bytes(buf)
    except CaptureError as e:
        assert str(e)
        return frames, e
    err = None
    try:
        for ts, lt, data, wl in c:
            assert len(data) <= wl and len(data) <= len(buf)
            assert data in buf
            frames.append((ts, lt, data, wl))
            # every block is at least 12 bytes and every record 16: no endless loop
            assert len(frames) <= len(buf) // 12 + 1
    except CaptureError as e:
        assert "offset" in str(e)
        err = e
    assert c.offset <= c.size == len(buf)
    assert c.stats["frames"] == len(frames)
    return frames, err


@FUZZ
@given(st.binary(max_size=600))
def test_random_bytes(buf):
    read_all(buf)


@FUZZ
@given(st.sampled_from([b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1",
                        b"\x0a\x0d\x0d\x0a"]), st.binary(max_size=400))
def test_random_bytes_after_magic(magic, rest):
    read_all(magic + rest)


@st.composite
def mutated(draw):
    buf = bytearray(draw(st.sampled_from(BASES)))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "word", "cut", "extend", "dup"]))
        if not buf:
            break
        pos = draw(st.integers(0, len(buf) - 1))
        if kind == "flip":
            buf[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "word":
            v = draw(st.sampled_from(INTERESTING))
            buf[pos:pos + 4] = struct.pack(draw(st.sampled_from("<>")) + "I", v)
        elif kind == "cut":
            del buf[pos:]
        elif kind == "extend":
            buf += draw(st.binary(max_size=64))
        else:
            n = draw(st.integers(1, 64))
            buf[pos:pos] = buf[pos:pos + n]
    return bytes(buf)


@FUZZ
@given(mutated())
def test_mutated_files(buf):
    frames, err = read_all(buf)


def test_clean_bases_read_fully():
    for b in BASES:
        frames, err = read_all(b)
        assert err is None and len(frames) in (5, 6)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(BASES), st.data())
def test_truncation_keeps_prefix(base, data):
    """Cutting a file anywhere returns a prefix of its frames, then maybe an error."""
    full, _ = read_all(base)
    cut = data.draw(st.integers(0, len(base)))
    frames, err = read_all(base[:cut])
    assert frames == full[:len(frames)]
    if err is None and cut < len(base):
        # only a cut exactly between records/blocks is clean
        assert len(frames) < len(full) or cut == len(base)


# ---- decode ----


def check_decoded(lt, frame):
    d = decode(lt, frame)
    assert d["result"] in RESULTS
    if d["result"] == "tcp":
        assert d["thlen"] >= 20 and d["paylen"] <= d["seglen"]
        assert len(d["payload"]) == d["paylen"]
        assert d["payload"] in frame
    if d["result"] == "fragment":
        assert d["frag_data"] in frame
    fixed = fix_checksums(lt, frame)
    assert len(fixed) == len(frame)
    if d["result"] == "tcp" and d["paylen"] == d["seglen"]:
        assert decode(lt, fixed)["tcp_csum_ok"] is True
    return d


@settings(max_examples=1500, deadline=None)
@given(st.sampled_from(LINKTYPES + [2, 9999]), st.binary(max_size=200))
def test_decode_random(lt, frame):
    check_decoded(lt, frame)


VALID_FRAMES = [
    (1, N.eth(N.ip4(payload=N.tcp(opts=b"\x02\x04\x05\xb4\x01\x03\x03\x07\x04\x02\x08\x0a" + b"\0" * 8,
                                   payload=b"abc"), options=b"\x01" * 4))),
    (1, N.eth(N.ip4(payload=N.tcp(payload=b"abc")), vlans=[(0x88A8, 1), (0x8100, 2)])),
    (1, N.mpls(N.ip6(exts=[(0, lambda nh: N.ext(nh, b"\0" * 6, 0)),
                           (60, lambda nh: N.ext(nh, b"\0" * 6, 60))], payload=N.tcp(payload=b"abc")),
               [1, 2, 3])),
    (1, N.pppoe(N.ip4(payload=N.tcp(payload=b"abc")))),
    (113, N.sll(N.ip6(exts=[(51, lambda nh: N.ext(nh, b"\0" * 14, 51))], payload=N.tcp(payload=b"abc")),
                0x86DD)),
    (276, N.sll2(N.ip4(payload=N.tcp(payload=b"abc")))),
    (0, N.null(N.ip6(payload=N.tcp(payload=b"abc")), 30, ">")),
    (108, N.loop(N.ip4(payload=N.tcp(payload=b"abc")))),
    (101, N.ip6(exts=[(43, lambda nh: N.routing(nh, [N.a6("::9")]))], payload=N.tcp(payload=b"abc"))),
    (228, N.ip4(payload=b"x" * 32, flags=1, frag_off=8, fill_l4_csum=False)),
    (229, N.ip6(exts=[(44, lambda nh: N.frag6(nh, 16, True, 5))], payload=b"y" * 16, fill_l4_csum=False)),
    (1, N.eth(N.ip4(proto=17, payload=N.udp(1, 2, b"dns")))),
]


@settings(max_examples=1500, deadline=None)
@given(st.sampled_from(VALID_FRAMES), st.data())
def test_decode_mutated(item, data):
    lt, frame = item
    buf = bytearray(frame)
    for _ in range(data.draw(st.integers(1, 4))):
        kind = data.draw(st.sampled_from(["flip", "byte", "cut", "extend"]))
        if not buf:
            break
        pos = data.draw(st.integers(0, len(buf) - 1))
        if kind == "flip":
            buf[pos] ^= 1 << data.draw(st.integers(0, 7))
        elif kind == "byte":
            buf[pos] = data.draw(st.sampled_from([0, 1, 2, 4, 5, 8, 0x0F, 0x40, 0x45, 0x60, 0x7F, 0x80, 0xFF]))
        elif kind == "cut":
            del buf[pos:]
        else:
            buf += data.draw(st.binary(max_size=40))
    lt = data.draw(st.sampled_from([lt, lt, data.draw(st.sampled_from(LINKTYPES))]))
    check_decoded(lt, bytes(buf))


def test_decode_ip_random_prefixes():
    for lt, frame in VALID_FRAMES:
        d = decode(lt, frame)
        if d.get("l3len"):
            ip = frame[d["l2len"]:]
            for cut in range(len(ip)):
                assert decode_ip(ip[:cut])["result"] in RESULTS


# ---- defrag ----


@st.composite
def frag_sequences(draw):
    n = draw(st.integers(1, 25))
    frags = []
    for _ in range(n):
        v6 = draw(st.booleans())
        ident = draw(st.integers(0, 3))
        off = draw(st.integers(0, 300)) * 8 if draw(st.booleans()) else draw(st.integers(0, 8191)) * 8
        ln = draw(st.sampled_from([0, 1, 7, 8, 16, 64, 128, 512, 1400, draw(st.integers(0, 2000))]))
        more = draw(st.booleans())
        if not more and off == 0:
            off = 8
        fill = bytes([draw(st.integers(0, 255))]) * ln
        if v6:
            pkt = N.ip6(exts=[(44, lambda nh: N.frag6(nh, off, more, ident))], proto=6, payload=fill,
                        fill_l4_csum=False)
        else:
            pkt = N.ip4(payload=fill, ident=ident, flags=int(more), frag_off=off, fill_l4_csum=False)
        if draw(st.integers(0, 9)) == 0:
            pkt = pkt[:draw(st.integers(0, len(pkt)))]
        t = draw(st.integers(0, 5 * 10**9))
        frags.append((pkt, t))
    return frags


@settings(max_examples=400, deadline=None)
@given(frag_sequences(), st.sampled_from([0, 300, 2000, 8000, 1 << 20]))
def test_defrag_random_sequences(frags, cap):
    df = Defrag(mem_cap=cap, timeout=1.0)
    for pkt, t in frags:
        out = df.add(101, pkt, t)
        st_ = df.stats
        assert st_["mem_in_use"] <= cap
        if out is not None:
            assert len(out) <= 65535 + 40
            assert decode_ip(out)["result"] in RESULTS
    df.expire(10**12)
    assert df.stats["mem_in_use"] == 0


@st.composite
def overlapping_datagram(draw):
    """A datagram cut into fragments that cover it, plus overlapping extras
    with other contents, in random order."""
    n8 = draw(st.integers(1, 40))
    tail = draw(st.integers(0, 7))
    total = n8 * 8 + tail
    data = bytes((i * 7 + 3) & 0xFF for i in range(total))
    cuts = sorted(set(draw(st.lists(st.integers(1, n8), max_size=8)))) if n8 > 1 else []
    bounds = [0] + [c * 8 for c in cuts if c * 8 < total] + [total]
    frags = [(bounds[i], data[bounds[i]:bounds[i + 1]]) for i in range(len(bounds) - 1)]
    for _ in range(draw(st.integers(0, 6))):
        a = draw(st.integers(0, n8 - 1)) * 8
        b = draw(st.integers(a // 8 + 1, n8)) * 8
        if draw(st.booleans()):
            b = total if b >= n8 * 8 else b
        frags.append((a, bytes([draw(st.integers(0, 255))]) * (b - a)))
    order = draw(st.permutations(frags))
    return total, data, order


def model_first_wins(total, order):
    """Reference: bytes stored first win; complete when every byte and the end are in."""
    have = [None] * total
    seen_last = False
    for off, chunk in order:
        for i, b in enumerate(chunk):
            if have[off + i] is None:
                have[off + i] = b
        if off + len(chunk) == total:
            seen_last = True
        if seen_last and all(x is not None for x in have):
            return bytes(have)
    return None


@settings(max_examples=400, deadline=None)
@given(overlapping_datagram(), st.booleans())
def test_defrag_first_wins_model(dg, v6):
    total, data, order = dg
    df = Defrag()
    outs = []
    for off, chunk in order:
        more = off + len(chunk) < total
        if v6:
            pkt = N.ip6(exts=[(44, lambda nh: N.frag6(nh, off, more, 77))], proto=17, payload=chunk,
                        fill_l4_csum=False)
        else:
            pkt = N.ip4(proto=17, payload=chunk, ident=77, flags=int(more), frag_off=off,
                        fill_l4_csum=False)
        if off == 0 and not more:  # the whole datagram in one piece is not a fragment
            continue
        r = df.add(101, pkt, 0)
        if r is not None:
            outs.append(r)
            break
    usable = [(o, c) for o, c in order if not (o == 0 and len(c) == total)]
    want = model_first_wins(total, usable)
    hl = 40 if v6 else 20
    assert [o[hl:] for o in outs] == ([want] if want is not None else [])


# ---- SHA-256 ----


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000), st.lists(st.integers(0, 3000), max_size=5))
def test_sha256_matches_hashlib(data, splits):
    assert nat.sha256(data) == hashlib.sha256(data).digest()
    h = nat.Sha256()
    prev = 0
    for s in sorted(set(min(s, len(data)) for s in splits)):
        h.update(data[prev:s])
        prev = s
    h.update(data[prev:])
    assert h.digest() == hashlib.sha256(data).digest()


def test_sha256_vectors():
    # FIPS 180-4 examples and the padding edge cases (55, 56, 63, 64 bytes)
    assert nat.sha256(b"abc").hex() == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert nat.sha256(b"").hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    for n in (55, 56, 57, 63, 64, 65, 119, 120, 128, 1000, 100000):
        assert nat.sha256(b"a" * n) == hashlib.sha256(b"a" * n).digest()
