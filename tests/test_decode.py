"""Packet decoding and checksums (native/decode.c via mos._native)."""
import socket
import struct
from pathlib import Path

import dpkt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mos import _native as nat
from mos._native import Capture, decode, decode_ip, fix_checksums

try:
    import _netpkt as N
except ImportError:  # tests/ imported as a package
    from tests import _netpkt as N

CORPUS = Path("/work/shared/corpus")

SEG = N.tcp(sport=40000, dport=80, seq=0x01020304, ack=0x0A0B0C0D, flags=0x18, win=501,
            payload=b"GET / HTTP/1.0\r\n\r\n")
P4 = N.ip4("192.0.2.1", "198.51.100.7", 6, SEG, ttl=57)
P6 = N.ip6("2001:db8::1", "2001:db8:ffff::2", proto=6, payload=SEG, hlim=33)


def check_tcp4(d, l2len=0):
    assert d["result"] == "tcp", d
    assert d["ipver"] == 4 and d["src"] == "192.0.2.1" and d["dst"] == "198.51.100.7"
    assert (d["sport"], d["dport"], d["seq"], d["ack"], d["flags"], d["win"]) == (
        40000, 80, 0x01020304, 0x0A0B0C0D, 0x18, 501)
    assert d["payload"] == b"GET / HTTP/1.0\r\n\r\n"
    assert d["paylen"] == d["seglen"] == 18
    assert d["ttl"] == 57 and d["l3hlen"] == 20 and d["l3len"] == len(P4) and d["thlen"] == 20
    assert d["l2len"] == l2len
    assert d["ip_csum_ok"] is True and d["tcp_csum_ok"] is True


def check_tcp6(d, l2len=0):
    assert d["result"] == "tcp", d
    assert d["ipver"] == 6 and d["src"] == "2001:db8::1" and d["dst"] == "2001:db8:ffff::2"
    assert d["payload"] == b"GET / HTTP/1.0\r\n\r\n" and d["ttl"] == 33
    assert d["l2len"] == l2len
    assert d["ip_csum_ok"] is None and d["tcp_csum_ok"] is True


# ---- link types and encapsulations ----


def test_ethernet_ipv4_tcp_against_dpkt():
    frame = N.eth(P4)
    d = decode(nat.LT_ETHERNET, frame)
    check_tcp4(d, 14)
    assert d["ethertype"] == 0x0800
    e = dpkt.ethernet.Ethernet(frame)
    assert (e.data.data.seq, e.data.data.sport, bytes(e.data.data.data)) == (d["seq"], d["sport"], d["payload"])


def test_ethernet_ipv6():
    d = decode(nat.LT_ETHERNET, N.eth(P6, 0x86DD))
    check_tcp6(d, 14)
    assert d["ethertype"] == 0x86DD


@pytest.mark.parametrize("vlans,depth", [
    ([100], 1),
    ([(0x88A8, 10), (0x8100, 20)], 2),           # 802.1ad QinQ
    ([(0x9100, 1), (0x9100, 2), (0x8100, 3)], 3),  # pre-standard stacking
])
def test_vlan(vlans, depth):
    d = decode(nat.LT_ETHERNET, N.eth(P4, vlans=vlans))
    check_tcp4(d, 14 + 4 * depth)
    assert d["vlan_depth"] == depth


def test_vlan_too_deep_is_unsupported():
    assert decode(1, N.eth(P4, vlans=list(range(9))))["result"] == "unsupported"
    assert decode(1, N.eth(P4, vlans=list(range(8))))["result"] == "tcp"


@pytest.mark.parametrize("labels", [[16], [16, 17, 18], list(range(16))])
@pytest.mark.parametrize("et", [0x8847, 0x8848])
def test_mpls(labels, et):
    d = decode(1, N.mpls(P4, labels, et))
    check_tcp4(d, 14 + 4 * len(labels))
    assert d["mpls_depth"] == len(labels) and d["ethertype"] == 0x0800
    d = decode(1, N.mpls(P6, labels, et))
    check_tcp6(d, 14 + 4 * len(labels))
    assert d["ethertype"] == 0x86DD


def test_mpls_edge_cases():
    assert decode(1, N.mpls(P4, list(range(17))))["result"] == "unsupported"
    # a pseudowire control word (first nibble 0) is not decoded
    assert decode(1, N.mpls(b"\0\0\0\0" + N.eth(P4), [5]))["result"] == "unsupported"
    # VLAN then MPLS
    frame = N.eth(N.mpls(P4, [1, 2])[14:], 0x8847, vlans=[7])
    d = decode(1, frame)
    check_tcp4(d, 14 + 4 + 8)
    assert (d["vlan_depth"], d["mpls_depth"]) == (1, 2)


def test_pppoe():
    check_tcp4(decode(1, N.pppoe(P4, 0x0021)), 22)
    check_tcp6(decode(1, N.pppoe(P6, 0x0057)), 22)
    d = decode(1, N.pppoe(b"\x01\x01\x00\x04", 0xC021))  # LCP
    assert d["result"] == "other" and d["ipver"] == 0


def test_sll_and_sll2():
    check_tcp4(decode(nat.LT_SLL, N.sll(P4)), 16)
    check_tcp6(decode(nat.LT_SLL, N.sll(P6, 0x86DD)), 16)
    check_tcp4(decode(nat.LT_SLL2, N.sll2(P4)), 20)
    check_tcp6(decode(nat.LT_SLL2, N.sll2(P6, 0x86DD)), 20)
    # a VLAN tag the kernel did not strip follows the cooked header
    d = decode(nat.LT_SLL, N.sll(struct.pack("!HH", 5, 0x0800) + P4, 0x8100))
    check_tcp4(d, 20)
    assert d["vlan_depth"] == 1
    # netlink and LLC payloads are not IP
    assert decode(nat.LT_SLL, N.sll(b"\0" * 20, 0, hatype=824))["result"] == "other"
    assert decode(nat.LT_SLL2, N.sll2(b"\0" * 20, 0, hatype=824))["result"] == "other"
    assert decode(nat.LT_SLL, N.sll(b"\xaa\xaa\x03", 0x0004))["result"] == "other"


@pytest.mark.parametrize("order", ["<", ">"])
def test_null_both_byte_orders(order):
    check_tcp4(decode(nat.LT_NULL, N.null(P4, 2, order)), 4)
    for af in (24, 28, 30):
        check_tcp6(decode(nat.LT_NULL, N.null(P6, af, order)), 4)
    assert decode(nat.LT_NULL, N.null(P4, 7, order))["result"] == "unsupported"


def test_loop():
    check_tcp4(decode(nat.LT_LOOP, N.loop(P4, 2)), 4)
    check_tcp6(decode(nat.LT_LOOP, N.loop(P6, 24)), 4)
    # LOOP is network order only: a little-endian AF is not accepted
    assert decode(nat.LT_LOOP, N.null(P4, 2, "<"))["result"] == "unsupported"


@pytest.mark.parametrize("lt", [101, 12, 14])
def test_raw(lt):
    check_tcp4(decode(lt, P4))
    check_tcp6(decode(lt, P6))
    assert decode(lt, b"\x50" + P4[1:])["result"] == "malformed"
    assert decode(lt, b"")["result"] == "truncated"


def test_ipv4_ipv6_linktypes():
    check_tcp4(decode(nat.LT_IPV4, P4))
    check_tcp6(decode(nat.LT_IPV6, P6))
    assert decode(nat.LT_IPV4, P6)["result"] == "malformed"
    assert decode(nat.LT_IPV6, P4)["result"] == "malformed"
    assert decode(1, N.eth(P6, 0x0800))["result"] == "malformed"


def test_unsupported_linktype():
    assert decode(9999, N.eth(P4))["result"] == "unsupported"
    assert decode(1, N.eth(P4, 0x88E7))["result"] == "unsupported"


def test_non_ip_and_non_tcp():
    arp = N.eth(bytes.fromhex("0001080006040001") + b"\0" * 20, 0x0806)
    d = decode(1, arp)
    assert d["result"] == "other" and d["ipver"] == 0 and d["ethertype"] == 0x0806
    d = decode(1, N.eth(N.ip4(proto=17, payload=N.udp(5353, 53, b"q"))))
    assert d["result"] == "other" and (d["sport"], d["dport"], d["proto"]) == (5353, 53, 17)
    assert d["payload"] == b"q"
    d = decode(1, N.eth(N.ip4(proto=1, payload=b"\x08\0\0\0\0\0\0\0")))
    assert d["result"] == "other" and d["proto"] == 1
    d = decode(1, N.eth(N.ip6(proto=58, payload=b"\x80\0\0\0"), 0x86DD))
    assert d["result"] == "other" and d["proto"] == 58
    d = decode(1, N.eth(b"\0" * 46, 0x0040))  # 802.3 length field
    assert d["result"] == "other" and d["ipver"] == 0


# ---- IPv4 ----


def test_ipv4_options():
    for olen in (4, 8, 40):
        opts = b"\x94\x04\0\0" + b"\x01" * (olen - 4)  # router alert + NOPs
        d = decode(nat.LT_IPV4, N.ip4(payload=SEG, options=opts))
        assert d["result"] == "tcp" and d["l3hlen"] == 20 + olen
        assert d["ip_csum_ok"] is True and d["tcp_csum_ok"] is True
        assert d["payload"] == SEG[20:]


def test_ipv4_malformed():
    assert decode(228, N.ip4(payload=SEG, ihl=4))["result"] == "malformed"
    assert decode(228, N.ip4(payload=SEG, tot=19))["result"] == "malformed"
    assert decode(228, N.ip4(payload=SEG, options=b"\1" * 8, tot=24))["result"] == "malformed"
    assert decode(228, N.ip4(payload=SEG, version=5))["result"] == "malformed"
    # TCP header longer than the IP datagram says
    assert decode(228, N.ip4(payload=SEG, tot=30))["result"] == "malformed"


def test_ipv4_fragments():
    body = SEG + b"z" * 30
    first = N.ip4(payload=body[:32], ident=0x4242, flags=1, frag_off=0)
    mid = N.ip4(payload=body[32:48], ident=0x4242, flags=1, frag_off=32)
    last = N.ip4(payload=body[48:], ident=0x4242, flags=2, frag_off=48)  # DF only
    for pkt, off, more, data in ((first, 0, True, body[:32]), (mid, 32, True, body[32:48]),
                                 (last, 48, False, body[48:])):
        d = decode(228, pkt)
        assert d["result"] == "fragment"
        assert (d["frag_id"], d["frag_off"], d["frag_more"], d["frag_data"]) == (0x4242, off, more, data)
        assert d["frag_len"] == len(data) and d["proto"] == 6
    # DF alone is not a fragment
    assert decode(228, N.ip4(payload=SEG, flags=2))["result"] == "tcp"


def test_ethernet_padding_trimmed():
    small = N.ip4(payload=N.tcp(flags=0x10))  # 40 bytes: Ethernet pads to 46
    frame = N.eth(small) + b"\xee" * 6
    assert len(frame) == 60
    d = decode(1, frame)
    assert d["result"] == "tcp" and d["paylen"] == 0 and d["seglen"] == 0
    assert d["payload"] == b"" and d["tcp_csum_ok"] is True
    frame = N.eth(N.ip4(payload=N.tcp(payload=b"ab"))) + b"\0" * 4
    d = decode(1, frame)
    assert d["payload"] == b"ab" and d["tcp_csum_ok"] is True


def test_snapped_packet():
    frame = N.eth(P4)
    for keep in (len(frame) - 1, 54 + 5, 54):
        d = decode(1, frame[:keep])
        assert d["result"] == "tcp"
        assert d["seglen"] == 18 and d["paylen"] == keep - 54
        assert d["payload"] == SEG[20:][: keep - 54]
        assert d["tcp_csum_ok"] is None and d["ip_csum_ok"] is True
    d = decode(1, N.eth(P6, 0x86DD)[:14 + 40 + 20 + 3])
    assert d["result"] == "tcp" and (d["paylen"], d["seglen"]) == (3, 18)


# ---- IPv6 extension headers (RFC 8200 §4) ----

HBH = (0, lambda nh: N.ext(nh, b"\x05\x02\x00\x00", 0))          # router alert option
DST = (60, lambda nh: N.ext(nh, b"\x01\x0c" + b"\0" * 12, 60))   # PadN, 16 bytes total
AH = (51, lambda nh: N.ext(nh, b"\0\0" + b"\0\0\0\1" + b"\0\0\0\7" + b"\xaa" * 12, 51))
RT = (43, lambda nh: N.routing(nh, [N.a6("2001:db8::99")], segleft=0))


@pytest.mark.parametrize("exts,hlen", [
    ([HBH], 48), ([DST], 56), ([AH], 64), ([RT], 64),
    ([HBH, DST, RT, AH, DST], 40 + 8 + 16 + 24 + 24 + 16),
])
def test_ipv6_extension_headers(exts, hlen):
    pkt = N.ip6(exts=exts, payload=SEG)
    d = decode(nat.LT_IPV6, pkt)
    assert d["result"] == "tcp", d
    assert d["l3hlen"] == hlen and d["proto"] == 6
    assert d["payload"] == SEG[20:] and d["tcp_csum_ok"] is True
    # cut inside any header: truncated; extension header beyond payload length: malformed
    for cut in range(hlen + 20):
        assert decode(nat.LT_IPV6, pkt[:cut])["result"] == "truncated", cut
    pl = struct.unpack("!H", pkt[4:6])[0]
    short = pkt[:4] + struct.pack("!H", hlen - 40 - 1) + pkt[6:]
    assert decode(nat.LT_IPV6, short)["result"] == "malformed"
    assert pl == len(pkt) - 40


def test_ipv6_routing_final_destination_in_checksum():
    final = "2001:db8::99"
    pkt = N.ip6(exts=[(43, lambda nh: N.routing(nh, [N.a6("2001:db8::50"), N.a6(final)]))],
                payload=SEG, final_dst=final)
    d = decode(229, pkt)
    assert d["result"] == "tcp" and d["tcp_csum_ok"] is True
    srh = N.ip6(exts=[(43, lambda nh: N.routing(nh, [N.a6(final), N.a6("2001:db8::50")], 1, 4))],
                payload=SEG, final_dst=final)
    assert decode(229, srh)["tcp_csum_ok"] is True


def test_ipv6_esp_and_no_next_header():
    d = decode(229, N.ip6(proto=50, payload=b"\0\0\0\1\0\0\0\1" + b"x" * 16))
    assert d["result"] == "other" and d["proto"] == 50
    d = decode(229, N.ip6(exts=[HBH], proto=59, payload=b""))
    assert d["result"] == "other" and d["proto"] == 59 and d["l3hlen"] == 48


def test_ipv6_fragments():
    frag = (44, lambda nh: N.frag6(nh, 0, True, 0xDEADBEEF))
    d = decode(229, N.ip6(exts=[HBH, frag], payload=SEG[:24], fill_l4_csum=False))
    assert d["result"] == "fragment"
    assert (d["frag_id"], d["frag_off"], d["frag_more"], d["proto"]) == (0xDEADBEEF, 0, True, 6)
    assert d["frag_data"] == SEG[:24] and d["l3hlen"] == 56
    later = (44, lambda nh: N.frag6(nh, 24, False, 7))
    d = decode(229, N.ip6(exts=[later], payload=b"tail", fill_l4_csum=False))
    assert (d["result"], d["frag_off"], d["frag_more"], d["frag_data"]) == ("fragment", 24, False, b"tail")
    # RFC 6946 atomic fragment (offset 0, M=0): just a packet
    atomic = (44, lambda nh: N.frag6(nh, 0, False, 9))
    d = decode(229, N.ip6(exts=[atomic], payload=SEG))
    assert d["result"] == "tcp" and d["l3hlen"] == 48 and d["tcp_csum_ok"] is True


def test_ipv6_jumbo_length_zero():
    pkt = N.ip6(exts=[HBH], payload=SEG, plen=0)
    d = decode(229, pkt)
    assert d["result"] == "tcp" and d["payload"] == SEG[20:]


# ---- TCP ----


def opts_of(raw):
    d = decode(228, N.ip4(payload=N.tcp(opts=raw, payload=b"pp")))
    assert d["result"] == "tcp", d
    assert d["payload"] == b"pp" and d["tcp_csum_ok"] is True
    return d["options"]


def test_tcp_options_all():
    raw = (b"\x02\x04\x05\xb4" b"\x01" b"\x03\x03\x07" b"\x04\x02" b"\x08\x0a\0\0\0\x01\0\0\0\x02"
           b"\x01\x01")
    assert opts_of(raw) == {"mss": 1460, "wscale": 7, "sackok": True, "ts": (1, 2)}
    # NOP NOP TS (the decoder's fast path) and the same option laid out otherwise
    assert opts_of(b"\x01\x01\x08\x0a\xff\0\0\x01\0\0\0\x09") == {"ts": (0xFF000001, 9)}
    assert opts_of(b"\x08\x0a\xff\0\0\x01\0\0\0\x09\x01\x01") == {"ts": (0xFF000001, 9)}
    assert opts_of(b"\x03\x03\x0f") == {"wscale": 14}   # RFC 7323 §2.3 clamp
    assert opts_of(b"\x03\x03\xff") == {"wscale": 14}
    for n in range(1, 5):
        blocks = [(1000 * i, 1000 * i + 500) for i in range(1, n + 1)]
        raw = b"\x01\x01\x05" + bytes([2 + 8 * n]) + b"".join(struct.pack("!II", *b) for b in blocks)
        if n == 4:
            raw = raw[2:]  # 34 bytes: no room for the NOPs
        assert opts_of(raw) == {"sack": blocks}
    # unknown options are skipped by length
    assert opts_of(b"\x1e\x06abcd\x02\x04\x01\x00") == {"mss": 256}
    # EOL ends the list: what follows is not looked at
    assert opts_of(b"\x00\xff\xff\xff") == {}


@pytest.mark.parametrize("raw,before", [
    (b"\x02\x04\x05\xb4\x08\x00", {"mss": 1460}),        # length 0
    (b"\x02\x04\x05\xb4\x08\x01", {"mss": 1460}),        # length 1
    (b"\x02\x04\x05\xb4\x08\x0a\0\0", {"mss": 1460}),    # runs past the header
    (b"\x02\x05\x05\xb4\x00", {}),                       # MSS with length 5
    (b"\x01\x03\x02\x07", {}),                           # wscale with length 2
    (b"\x04\x03\x00\x01", {}),                           # SACK-permitted with length 3
    (b"\x05\x09" + b"\0" * 7, {}),                       # SACK length not 2+8n
    (b"\x05\x02\x01\x01", {}),                           # SACK with no block
    (b"\x08\x08" + b"\0" * 6, {}),                       # timestamps length 8
    (b"\x01\x01\x01\x1e", {}),                           # kind without a length byte
    (b"\x03\x03\x02\x1e\x00\x02\x04\x05\xb4", {"wscale": 2}),  # fault after wscale: MSS ignored
])
def test_tcp_options_malformed(raw, before):
    got = opts_of(raw)
    assert got.pop("bad") is True
    assert got == before


def test_tcp_header_lengths():
    assert decode(228, N.ip4(payload=N.tcp(doff=4)))["result"] == "malformed"
    assert decode(228, N.ip4(payload=N.tcp(doff=0)))["result"] == "malformed"
    assert decode(228, N.ip4(payload=N.tcp(doff=15)))["result"] == "malformed"  # beyond segment
    d = decode(228, N.ip4(payload=N.tcp(doff=15, opts=b"\x01" * 40)))
    assert d["result"] == "tcp" and d["thlen"] == 60
    # data offset says 60 bytes, segment has them, capture does not
    assert decode(228, N.ip4(payload=N.tcp(doff=15, opts=b"\x01" * 40))[:60])["result"] == "truncated"


# ---- truncation at every cut ----

FULL_FRAMES = [
    (1, N.eth(N.ip4(payload=N.tcp(opts=b"\x02\x04\x05\xb4", payload=b"abc"), options=b"\x01" * 4))),
    (1, N.eth(N.ip4(payload=N.tcp(payload=b"abc")), vlans=[(0x88A8, 1), (0x8100, 2)])),
    (1, N.mpls(N.ip6(exts=[HBH, DST], payload=N.tcp(payload=b"abc")), [1, 2, 3])),
    (1, N.pppoe(N.ip4(payload=N.tcp(payload=b"abc")))),
    (113, N.sll(N.ip6(exts=[AH], payload=N.tcp(payload=b"abc")), 0x86DD)),
    (276, N.sll2(N.ip4(payload=N.tcp(payload=b"abc")))),
    (0, N.null(N.ip6(payload=N.tcp(payload=b"abc")), 30, ">")),
    (108, N.loop(N.ip4(payload=N.tcp(payload=b"abc")))),
    (101, N.ip6(exts=[RT], payload=N.tcp(payload=b"abc"))),
]


@pytest.mark.parametrize("lt,frame", FULL_FRAMES)
def test_every_cut_is_truncated_or_snapped(lt, frame):
    d = decode(lt, frame)
    assert d["result"] == "tcp"
    hdr_end = len(frame) - 3
    for cut in range(len(frame)):
        r = decode(lt, frame[:cut])
        if cut >= hdr_end:
            assert r["result"] == "tcp" and r["paylen"] == cut - hdr_end and r["seglen"] == 3
        else:
            assert r["result"] == "truncated", (cut, r)


# ---- checksums ----


def dpkt_frame(v6=False, payload=b"hello world!", odd=False):
    if odd:
        payload += b"!"
    t = dpkt.tcp.TCP(sport=5555, dport=443, seq=77, ack=88, flags=dpkt.tcp.TH_ACK, data=payload)
    if v6:
        ip = dpkt.ip6.IP6(src=socket.inet_pton(socket.AF_INET6, "fe80::1"),
                          dst=socket.inet_pton(socket.AF_INET6, "fe80::2"), nxt=6, hlim=64, data=t,
                          plen=len(bytes(t)))
        return bytes(dpkt.ethernet.Ethernet(src=N.MAC1, dst=N.MAC2, type=0x86DD, data=ip))
    ip = dpkt.ip.IP(src=socket.inet_aton("198.18.1.1"), dst=socket.inet_aton("198.18.2.2"), p=6, data=t)
    return bytes(dpkt.ethernet.Ethernet(src=N.MAC1, dst=N.MAC2, type=0x0800, data=ip))


@pytest.mark.parametrize("v6", [False, True])
@pytest.mark.parametrize("odd", [False, True])
def test_checksums_against_dpkt(v6, odd):
    frame = dpkt_frame(v6, odd=odd)
    d = decode(1, frame)
    assert d["tcp_csum_ok"] is True
    assert d["ip_csum_ok"] is (None if v6 else True)
    # a flipped payload bit breaks the TCP checksum, not the IP one
    bad = bytearray(frame)
    bad[-1] ^= 0x40
    d = decode(1, bytes(bad))
    assert d["tcp_csum_ok"] is False
    fixed = fix_checksums(1, bytes(bad))
    assert decode(1, fixed)["tcp_csum_ok"] is True
    # and equals what dpkt computes for the modified packet
    e = dpkt.ethernet.Ethernet(bytes(bad))
    e.data.data.sum = 0
    if not v6:
        e.data.sum = 0
    assert fixed == bytes(e)


def test_ipv4_header_checksum_fix():
    frame = bytearray(dpkt_frame())
    frame[14 + 8] = 3  # TTL changed, checksum stale
    d = decode(1, bytes(frame))
    assert d["ip_csum_ok"] is False and d["tcp_csum_ok"] is True
    fixed = fix_checksums(1, bytes(frame))
    d = decode(1, fixed)
    assert d["ip_csum_ok"] is True and d["tcp_csum_ok"] is True
    assert struct.unpack("!H", fixed[24:26])[0] == N.csum(fixed[14:24] + b"\0\0" + fixed[26:34])


def test_fix_checksums_with_options_and_ext_headers():
    p = bytearray(N.eth(N.ip4(payload=N.tcp(opts=b"\x02\x04\x05\xb4", payload=b"x" * 33),
                              options=b"\x01" * 8)))
    p[-1] ^= 1
    p[24] ^= 0xFF
    assert decode(1, fix_checksums(1, bytes(p)))["tcp_csum_ok"] is True
    final = "2001:db8::77"
    q = bytearray(N.ip6(exts=[HBH, (43, lambda nh: N.routing(nh, [N.a6(final)]))],
                        payload=N.tcp(payload=b"yy"), final_dst=final))
    assert decode(229, bytes(q))["tcp_csum_ok"] is True
    q[-1] ^= 1
    assert decode(229, bytes(q))["tcp_csum_ok"] is False
    assert decode(229, fix_checksums(229, bytes(q)))["tcp_csum_ok"] is True


def test_corpus_checksums_agree_with_tshark():
    import shutil
    import subprocess
    if not shutil.which("tshark"):
        pytest.skip("tshark not installed")
    for f in (CORPUS / "zeek/vlan-mpls/mixed-vlan-mpls.pcap",
              CORPUS / "suricata-verify/tcp-stream-after-swap/http-start-from-response.pcap",
              CORPUS / "zeek/wikipedia/wikipedia.pcap"):
        out = subprocess.run(["tshark", "-r", str(f), "-o", "tcp.check_checksum:TRUE", "-T", "fields",
                              "-e", "tcp.checksum.status"], capture_output=True, text=True).stdout
        want = [{"0": False, "1": True}.get(x.strip()) for x in out.splitlines()]
        got = []
        for ts, lt, data, wl in Capture(f):
            got.append(decode(lt, data).get("tcp_csum_ok"))
        assert got == want, f


def test_flow_hash_symmetric():
    a = decode(1, N.eth(N.ip4("198.18.0.1", "198.18.0.2", payload=N.tcp(1111, 80))))
    b = decode(1, N.eth(N.ip4("198.18.0.2", "198.18.0.1", payload=N.tcp(80, 1111))))
    c = decode(1, N.eth(N.ip4("198.18.0.1", "198.18.0.2", payload=N.tcp(1112, 80))))
    assert a["hash"] == b["hash"] != c["hash"]
    a6 = decode(229, N.ip6("::1", "::2", payload=N.tcp(1111, 80)))
    b6 = decode(229, N.ip6("::2", "::1", payload=N.tcp(80, 1111)))
    assert a6["hash"] == b6["hash"]
    hashes = {decode(228, N.ip4("198.18.0.1", "198.18.0.2", payload=N.tcp(p, 80)))["hash"] for p in range(2000)}
    assert len(hashes) > 1990


def test_decode_ip():
    d = decode_ip(P4)
    check_tcp4(d)
    check_tcp6(decode_ip(P6))
    assert decode_ip(b"")["result"] == "truncated"
    assert decode_ip(b"\x10")["result"] == "malformed"


def test_corpus_decodes():
    """Every corpus frame decodes: TCP, or fragments / DNS-and-such as 'other'."""
    seen = {}
    for f in sorted(CORPUS.rglob("*.pcap")):
        for ts, lt, data, wl in Capture(f):
            r = decode(lt, data)["result"]
            seen[r] = seen.get(r, 0) + 1
    assert set(seen) <= {"tcp", "other", "fragment"}
    assert seen["fragment"] == 14


@settings(max_examples=300, deadline=None)
@given(payload=st.binary(min_size=0, max_size=3000), v6=st.booleans(),
       ipopts=st.integers(0, 10), flip=st.integers(0, 1 << 30))
def test_checksum_of_any_length_and_alignment_matches_rfc1071(payload, v6, ipopts, flip):
    """The TCP checksum (RFC 9293 3.1, summed as RFC 1071 says) of segments of
    every length, at every 4-byte alignment of the payload, agrees with a
    plain Python sum; one changed payload byte is always caught."""
    seg = N.tcp(40000, 80, 1, 2, 0x18, 1000, payload=payload)
    if v6:
        frame = N.eth(N.ip6(payload=seg), 0x86DD)
    else:
        frame = N.eth(N.ip4(payload=seg, options=b"\x01" * (4 * ipopts)))
    d = decode(1, frame)
    assert d["tcp_csum_ok"] is True
    assert fix_checksums(1, frame) == frame
    if payload:
        bad = bytearray(frame)
        bad[len(frame) - 1 - flip % len(payload)] ^= 0x01
        assert decode(1, bytes(bad))["tcp_csum_ok"] is False


@pytest.mark.parametrize("fill", [0x00, 0xFF, 0x5A])
@pytest.mark.parametrize("n", [255, 256, 257, 1460, 8960, 65000])
def test_checksum_of_long_uniform_payloads(n, fill):
    """Payloads long enough for the vector sum (256 bytes and up), with
    every lane at its largest value (0xff) or zero, agree with Python's sum."""
    seg = N.tcp(40000, 80, 1, 2, 0x18, 1000, payload=bytes([fill]) * n)
    frame = N.eth(N.ip6(payload=seg), 0x86DD)
    assert decode(1, frame)["tcp_csum_ok"] is True
    assert fix_checksums(1, frame) == frame


def test_checksum_without_avx2_agrees():
    """MOS_NO_AVX2=1 takes the scalar sum: the same frames check the same."""
    import os
    import subprocess
    import sys
    code = ("import random, sys; sys.path.insert(0, 'tests'); import _netpkt as N;"
            "from mos._native import decode\n"
            "r = random.Random(7)\n"
            "for n in list(range(240, 300)) + [1460, 4000, 9000]:\n"
            "    p = bytes(r.getrandbits(8) for _ in range(n))\n"
            "    f = N.eth(N.ip4(payload=N.tcp(1, 2, 3, 4, 0x18, 100, payload=p)))\n"
            "    assert decode(1, f)['tcp_csum_ok'] is True, n\n"
            "    b = bytearray(f); b[-1] ^= 1\n"
            "    assert decode(1, bytes(b))['tcp_csum_ok'] is False, n\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for env in ({"MOS_NO_AVX2": "1"}, {}):
        subprocess.run([sys.executable, "-c", code], check=True, cwd=root,
                       env=dict(os.environ, **env), timeout=120)
