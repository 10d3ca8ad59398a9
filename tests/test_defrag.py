"""IP reassembly (native/defrag.c via mos._native.Defrag)."""
import random
from pathlib import Path


from mos._native import Capture, Defrag, decode_ip

try:
    import _netpkt as N
except ImportError:  # tests/ imported as a package
    from tests import _netpkt as N

CORPUS = Path("/work/shared/corpus")
SEC = 10**9


def body(n=1000, seed=1):
    r = random.Random(seed)
    return N.tcp(sport=999, dport=80, seq=5, flags=0x18, payload=bytes(r.randrange(256) for _ in range(n - 20)))


def fragments4(data, size=64, ident=0x77, options=b"", src="198.18.9.1", dst="198.18.9.2", df=False):
    """Split an L4 payload into IPv4 fragments of `size` data bytes (multiple of 8)."""
    out = []
    for off in range(0, len(data), size):
        chunk = data[off:off + size]
        more = off + size < len(data)
        flags = (1 if more else 0) | (2 if df else 0)
        out.append(N.ip4(src, dst, 6, chunk, ident=ident, flags=flags, frag_off=off,
                         options=options if off == 0 else b"", fill_l4_csum=False))
    return out


def whole4(data, ident=0x77, options=b"", src="198.18.9.1", dst="198.18.9.2", df=False):
    return N.ip4(src, dst, 6, data, ident=ident, options=options, flags=2 if df else 0,
                 fill_l4_csum=False)


def feed(df, pkts, lt=228, t0=0, step=0):
    outs = []
    for i, p in enumerate(pkts):
        r = df.add(lt, p, t0 + i * step)
        if r is not None:
            outs.append(r)
    return outs


def prepared(data):
    """The L4 bytes with a valid checksum for 198.18.9.1 -> 198.18.9.2."""
    return N.l4_with_csum(data, 6, N.a4("198.18.9.1"), N.a4("198.18.9.2"))


def test_in_order_reversed_shuffled():
    data = prepared(body())
    frags = fragments4(data)
    assert len(frags) == 16
    want = whole4(data)
    orders = [frags, frags[::-1]] + [random.Random(s).sample(frags, len(frags)) for s in range(10)]
    for order in orders:
        df = Defrag()
        out = feed(df, order)
        assert out == [want]
        st = df.stats
        assert st["reassembled"] == 1 and st["fragments"] == 16 and st["mem_in_use"] == 0
        d = decode_ip(out[0])
        assert d["result"] == "tcp" and d["ip_csum_ok"] is True and d["tcp_csum_ok"] is True


def test_first_fragment_options_and_df_kept():
    data = prepared(body(200))
    opts = b"\x94\x04\x00\x00"
    out = feed(Defrag(), fragments4(data, 48, options=opts, df=True)[::-1])
    assert out == [whole4(data, options=opts, df=True)]


def test_overlap_first_wins():
    data = prepared(body(96))
    a = data[:48]
    evil = bytes(len(data))
    frags = [
        N.ip4(payload=a, ident=5, flags=1, frag_off=0, fill_l4_csum=False),
        # overlaps [24, 72): only [48, 72) is new
        N.ip4(payload=evil[24:72], ident=5, flags=1, frag_off=24, fill_l4_csum=False),
        # a later copy of [48, 96) with the real bytes: only [72, 96) is new
        N.ip4(payload=data[48:], ident=5, flags=0, frag_off=48, fill_l4_csum=False),
    ]
    df = Defrag()
    out = feed(df, frags)
    assert len(out) == 1
    assert out[0][20:] == a + evil[48:72] + data[72:]
    assert df.stats["overlaps"] == 2


def test_overlap_fragment_spanning_holes():
    """A fragment covering two stored pieces and the holes around them."""
    data = bytes(range(256)) * 2
    df = Defrag()
    f = lambda off, n, more, fill=None: N.ip4(  # noqa: E731
        payload=(fill * n if fill else data[off:off + n]), ident=9, flags=int(more), frag_off=off,
        fill_l4_csum=False)
    assert feed(df, [f(64, 32, True), f(192, 32, True)]) == []
    assert feed(df, [f(32, 256, True, b"E")]) == []
    out = feed(df, [f(0, 32, True), f(288, len(data) - 288, False)])
    got = out[0][20:]
    exp = data[:32] + b"E" * 32 + data[64:96] + b"E" * 96 + data[192:224] + b"E" * 64 + data[288:]
    assert got == exp
    assert df.stats["overlaps"] == 1


def test_duplicates():
    data = prepared(body(300))
    frags = fragments4(data, 40)
    df = Defrag()
    order = frags[:3] + frags[:3] + frags[3:-1] + frags[1:2] + frags[-1:]
    out = feed(df, order)
    assert out == [whole4(data)]
    assert df.stats["overlaps"] == 4
    # the datagram is complete and gone: a late duplicate starts a new one that never completes
    assert feed(df, frags[:1]) == []
    assert df.stats["reassembled"] == 1


def test_timeout_lazy_and_explicit():
    data = prepared(body(300))
    frags = fragments4(data, 80)
    df = Defrag(timeout=1.0)
    feed(df, frags[:2], t0=0)
    # the rest arrives after the timeout: the datagram was dropped, no output
    assert feed(df, frags[2:], t0=2 * SEC) == []
    assert df.stats["timeouts"] == 1
    df.expire(10 * SEC)
    assert df.stats["timeouts"] == 2 and df.stats["mem_in_use"] == 0
    # within the timeout it completes
    df = Defrag(timeout=1.0)
    assert feed(df, frags, t0=0, step=SEC // 10) == [whole4(data)]
    # time going backwards expires nothing
    df = Defrag(timeout=1.0)
    feed(df, frags[:1], t0=5 * SEC)
    df.expire(1 * SEC)
    assert df.stats["timeouts"] == 0


def test_memory_cap_drops_oldest():
    cap = 4096
    df = Defrag(mem_cap=cap)
    datas = [prepared(body(400, seed=s)) for s in range(30)]
    # 30 datagrams, each missing its last fragment: far more than the cap holds
    for i, d in enumerate(datas):
        feed(df, fragments4(d, 64, ident=i)[:-1], t0=i)
        assert df.stats["mem_in_use"] <= cap
    st = df.stats
    assert st["mem_drops"] > 0 and st["mem_in_use"] <= cap
    # the newest datagram survived and completes; the oldest was evicted
    assert feed(df, fragments4(datas[-1], 64, ident=29)[-1:], t0=100) == [whole4(datas[-1], ident=29)]
    assert feed(df, fragments4(datas[0], 64, ident=0)[-1:], t0=101) == []
    # a datagram bigger than the whole cap cannot be held
    df = Defrag(mem_cap=256)
    assert feed(df, fragments4(prepared(body(1000)), 512)) == []
    assert df.stats["mem_drops"] >= 1 and df.stats["mem_in_use"] <= 256


def test_invalid_fragments():
    df = Defrag()
    # not-last fragment whose length is not a multiple of 8 (RFC 8200 §4.5; RFC 791 units)
    feed(df, [N.ip4(payload=b"x" * 20, flags=1, frag_off=0, fill_l4_csum=False)])
    # zero-length not-last fragment
    feed(df, [N.ip4(payload=b"", flags=1, frag_off=64, fill_l4_csum=False)])
    # would exceed 65535 bytes
    feed(df, [N.ip4(payload=b"x" * 16, flags=0, frag_off=65528, fill_l4_csum=False)])
    # snapped by the capture
    feed(df, [N.ip4(payload=b"x" * 64, flags=1, frag_off=0, fill_l4_csum=False)[:60]])
    assert df.stats["invalid"] == 4 and df.stats["mem_in_use"] == 0
    # a fragment past the end already known, and a second different end
    data = bytes(64)
    feed(df, [N.ip4(payload=data[32:], ident=3, flags=0, frag_off=32, fill_l4_csum=False),
              N.ip4(payload=data, ident=3, flags=1, frag_off=64, fill_l4_csum=False),
              N.ip4(payload=data[:16], ident=3, flags=0, frag_off=8, fill_l4_csum=False)])
    assert df.stats["invalid"] == 6


def test_largest_datagram():
    data = bytes(65535 - 20)
    frags = fragments4(data, 8192)
    out = feed(Defrag(mem_cap=1 << 20), frags)
    assert len(out) == 1 and len(out[0]) == 65535


def test_keys_keep_datagrams_apart():
    d1, d2 = prepared(body(200, 1)), prepared(body(200, 2))
    f1 = fragments4(d1, 64, ident=1)
    f2 = fragments4(d2, 64, ident=1, src="198.18.9.3")  # same id, different source
    inter = [x for pair in zip(f1, f2) for x in pair]
    out = feed(Defrag(), inter)
    assert sorted(out) == sorted([whole4(d1, ident=1), whole4(d2, ident=1, src="198.18.9.3")])


def test_non_fragments_pass_through():
    df = Defrag()
    assert df.add(228, N.ip4(payload=N.tcp())) is None
    assert df.add(1, N.eth(N.ip4(payload=N.tcp()))) is None
    assert df.stats["fragments"] == 0


# ---- IPv6 (RFC 8200 §4.5) ----


def fragments6(data, size, ident, unfrag=(), proto=6):
    out = []
    for off in range(0, len(data), size):
        chunk = data[off:off + size]
        more = off + size < len(data)
        fh = (44, lambda nh, off=off, more=more: N.frag6(nh, off, more, ident))
        out.append(N.ip6(exts=list(unfrag) + [fh], proto=proto, payload=chunk, fill_l4_csum=False))
    return out


def test_ipv6_reassembly():
    dst_opts = (60, lambda nh: N.ext(nh, b"\x01\x04\0\0\0\0", 60))
    hbh = (0, lambda nh: N.ext(nh, b"\x01\x04\0\0\0\0", 0))
    for unfrag in ((), (hbh,), (hbh, dst_opts)):
        data = N.l4_with_csum(body(700, 3), 6, N.a6("2001:db8::1"), N.a6("2001:db8::2"))
        frags = fragments6(data, 96, 0xABCDEF01, unfrag)
        want = N.ip6(exts=list(unfrag), proto=6, payload=data, fill_l4_csum=False)
        for order in (frags, frags[::-1], random.Random(4).sample(frags, len(frags))):
            df = Defrag()
            out = feed(df, [N.eth(f, 0x86DD) for f in order], lt=1)
            assert out == [want]
            d = decode_ip(out[0])
            assert d["result"] == "tcp" and d["tcp_csum_ok"] is True and d["payload"] == data[20:]


def test_ipv6_next_header_from_first_fragment():
    """RFC 8200 §4.5: the key has no next header; the offset-0 fragment's one is used."""
    data = N.udp(1, 2, b"u" * 100)
    frags = fragments6(data, 64, 1, proto=17)
    frags[1] = fragments6(data, 64, 1, proto=6)[1]
    out = feed(Defrag(), frags[::-1], lt=229)
    assert len(out) == 1 and out[0][6] == 17 and out[0][40:] == data


def test_ipv6_and_ipv4_do_not_mix():
    df = Defrag()
    f4 = fragments4(bytes(128), 64, ident=1)
    f6 = fragments6(bytes(128), 64, 1)
    assert feed(df, [f4[0], f6[1]], lt=101) == []
    assert len(feed(df, [f6[0], f4[1]], lt=101)) == 2


# ---- corpus ----


def test_corpus_frag_http_req():
    """PcapPlusPlus: 11 IPv4 fragments of one HTTP request; the expected file is
    the hex of the reassembled Ethernet frame (we return the IP datagram)."""
    d = CORPUS / "pcapplusplus/frag_http_req"
    want = bytes.fromhex((d / "frag_http_req_reassembled.txt").read_text().strip())
    df = Defrag()
    outs = []
    for ts, lt, data, wl in Capture(d / "frag_http_req.pcap"):
        r = df.add(lt, data, ts)
        if r is not None:
            outs.append(r)
    assert outs == [want[14:]]
    p = decode_ip(outs[0])
    assert p["result"] == "tcp" and p["payload"].startswith(b"GET /convert_data.js?partner_id=29 ")
    assert p["ip_csum_ok"] is True


def test_corpus_frag_http_req_partial():
    """The first 5 fragments alone do not make a datagram."""
    d = CORPUS / "pcapplusplus/frag_http_req"
    df = Defrag()
    frames = list(Capture(d / "frag_http_req.pcap"))
    assert [df.add(lt, data, ts) for ts, lt, data, wl in frames[:5]] == [None] * 5


def test_corpus_suricata_bug_6887_syn_in_three_fragments():
    f = CORPUS / "suricata-verify/bug-6887-defrag-ipv4-tcp-syn/frag-ip-tcp-syn.pcap"
    df = Defrag()
    outs = [df.add(lt, data, ts) for ts, lt, data, wl in Capture(f)]
    assert outs[:2] == [None, None] and outs[2] is not None
    p = decode_ip(outs[2])
    # upstream expectation: the rule "tcp.flags:S" fires once on the reassembled SYN
    assert p["result"] == "tcp" and p["flags"] & 0x02
    assert (p["src"], p["dst"], p["sport"], p["dport"]) == ("1.1.1.1", "2.2.2.2", 12345, 8080)
    assert df.stats["reassembled"] == 1
