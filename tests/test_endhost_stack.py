"""The end host's stack core (mos/endhost/stack.c), sans-I/O: ARP and
neighbour discovery, ICMP echo, TCP demux, listeners and their queues,
resets for closed ports, TIME-WAIT bounds, two stacks wired back to back
over IPv4 and IPv6; frames built and read with dpkt."""

from __future__ import annotations

import random
import socket
import struct

import dpkt
import pytest
from hypothesis import given, settings, strategies as st

from mos.endhost._stack import IN, OUT, RDHUP, Stack, StackError, exchange

MS = 1_000_000
MAC_A, MAC_B = "02:00:00:00:00:0a", "02:00:00:00:00:0b"
PEER_MAC = bytes.fromhex("020000000099")


def pair(**kw):
    a = Stack(mac=MAC_A, addrs=["198.18.0.1/24", "2001:db8::1/64"], **kw)
    b = Stack(mac=MAC_B, addrs=["198.18.0.2/24", "2001:db8::2/64"], **kw)
    return a, b


def run(a, b, now, until=None, limit=200_000):
    """Frames back and forth and timers, until `until()` or nothing is left."""
    for _ in range(limit):
        if until is not None and until():
            return now
        moved, _ = exchange(a, b, now, rounds=1)
        if moved:
            continue
        d = [x for x in (a.deadline, b.deadline) if x is not None]
        if not d:
            return now
        now = max(now, min(d))
        a.timer(now)
        b.timer(now)
    return now


def eth(payload: bytes, ethertype: int, dst=b"\xff" * 6) -> bytes:
    return bytes(dpkt.ethernet.Ethernet(dst=dst, src=PEER_MAC, type=ethertype, data=payload))


def test_doctest():
    import doctest
    import mos.endhost._stack as m
    res = doctest.testmod(m)
    assert res.attempted and not res.failed


# ---------------------------------------------------------------- neighbours, ICMP

def test_arp_request_for_our_address_is_answered_and_others_are_not():
    s = Stack(mac=MAC_B, addrs=["198.18.0.2/24"])
    arp = dpkt.arp.ARP(op=dpkt.arp.ARP_OP_REQUEST, sha=PEER_MAC, spa=socket.inet_aton("198.18.0.9"),
                       tha=b"\0" * 6, tpa=socket.inet_aton("198.18.0.2"))
    s.input(eth(bytes(arp), 0x0806), 0)
    out = s.output(0)
    assert len(out) == 1
    rep = dpkt.ethernet.Ethernet(out[0])
    assert rep.dst == PEER_MAC and rep.type == 0x0806
    assert rep.arp.op == dpkt.arp.ARP_OP_REPLY and rep.arp.sha == bytes.fromhex("02000000000b")
    assert rep.arp.spa == socket.inet_aton("198.18.0.2") and rep.arp.tpa == arp.spa
    arp.tpa = socket.inet_aton("198.18.0.77")
    s.input(eth(bytes(arp), 0x0806), 0)
    assert s.output(0) == [] and s.stats()["arp_in"] == 2


def test_icmp_echo_is_answered_after_resolving_the_sender():
    s = Stack(mac=MAC_B, addrs=["198.18.0.2/24"])
    echo = dpkt.icmp.ICMP(type=8, data=dpkt.icmp.ICMP.Echo(id=7, seq=3, data=b"ping" * 10))
    ip = dpkt.ip.IP(src=socket.inet_aton("198.18.0.9"), dst=socket.inet_aton("198.18.0.2"),
                    p=1, data=echo)
    ip.len = len(ip)
    s.input(eth(bytes(ip), 0x0800, dst=bytes.fromhex("02000000000b")), 0)
    out = [dpkt.ethernet.Ethernet(f) for f in s.output(0)]
    assert [o.type for o in out] == [0x0806]          # who has 198.18.0.9?
    req = out[0].arp
    rep = dpkt.arp.ARP(op=dpkt.arp.ARP_OP_REPLY, sha=PEER_MAC, spa=req.tpa, tha=req.sha,
                       tpa=req.spa)
    s.input(eth(bytes(rep), 0x0806, dst=bytes.fromhex("02000000000b")), 1 * MS)
    out = [dpkt.ethernet.Ethernet(f) for f in s.output(1 * MS)]
    assert len(out) == 1 and out[0].dst == PEER_MAC
    icmp = out[0].ip.icmp
    assert icmp.type == 0 and icmp.echo.id == 7 and icmp.echo.seq == 3
    assert icmp.echo.data == b"ping" * 10
    raw = bytes(out[0].ip.data)
    assert dpkt.in_cksum(raw) == 0                      # a valid checksum
    assert s.stats()["echo_replies"] == 1


def test_neighbour_solicitation_and_icmpv6_echo():
    s = Stack(mac=MAC_B, addrs=["2001:db8::2/64"])
    src, dst = socket.inet_pton(socket.AF_INET6, "2001:db8::9"), \
        socket.inet_pton(socket.AF_INET6, "2001:db8::2")
    ns = dpkt.icmp6.ICMP6(type=135, data=b"\0\0\0\0" + dst + b"\x01\x01" + PEER_MAC)
    ip6 = dpkt.ip6.IP6(src=src, dst=b"\xff\x02" + b"\0" * 9 + b"\x01\xff" + dst[13:], nxt=58,
                       hlim=255, data=ns)
    ip6.plen = len(ns)
    s.input(eth(bytes(ip6), 0x86DD, dst=b"\x33\x33\xff" + dst[13:]), 0)
    out = [dpkt.ethernet.Ethernet(f) for f in s.output(0)]
    assert len(out) == 1 and out[0].dst == PEER_MAC
    na = out[0].ip6.data
    assert na.type == 136 and bytes(na.data)[4:20] == dst
    # the sender is now known: an echo is answered at once
    echo = dpkt.icmp6.ICMP6(type=128, data=dpkt.icmp6.ICMP6.Echo(id=1, seq=2, data=b"x" * 32))
    ip6 = dpkt.ip6.IP6(src=src, dst=dst, nxt=58, hlim=64, data=echo)
    ip6.plen = len(echo)
    s.input(eth(bytes(ip6), 0x86DD, dst=bytes.fromhex("02000000000b")), 1 * MS)
    out = [dpkt.ethernet.Ethernet(f) for f in s.output(1 * MS)]
    assert len(out) == 1 and out[0].ip6.data.type == 129
    assert out[0].ip6.data.data.data == b"x" * 32


def test_unanswered_neighbour_drops_what_waited_after_three_tries():
    a = Stack(mac=MAC_A, addrs=["198.18.0.1/24"], syn_retries=1)
    c = a.connect("198.18.0.50", 80, now=0)
    now, asked = 0, 0
    for _ in range(20):
        asked += sum(1 for f in a.output(now) if dpkt.ethernet.Ethernet(f).type == 0x0806)
        d = a.deadline
        if d is None:
            break
        now = d
        a.timer(now)
    assert asked == 3 and a.stats()["neigh_drops"] >= 1
    assert a.state(c) == "CLOSED" and a.error(c) == 110        # ETIMEDOUT


# ---------------------------------------------------------------- TCP

@pytest.mark.parametrize("family", ["198.18.0.2", "2001:db8::2"])
def test_two_stacks_move_a_megabyte_each_way_and_close(family):
    a, b = pair()
    ls = b.listen(8080)
    c = a.connect(family, 8080, now=0)
    now = run(a, b, 0, until=lambda: b.events(ls) & IN)
    s = b.accept(ls)
    assert b.names(s)[0] == (family, 8080) and a.names(c)[1] == (family, 8080)
    up = random.Random(1).randbytes(1_000_000)
    down = random.Random(2).randbytes(1_000_000)
    got_b, got_a = bytearray(), bytearray()
    sent_a = sent_b = 0
    for _ in range(100_000):
        if sent_a < len(up):
            try:
                sent_a += a.send(c, up[sent_a:sent_a + 65536])
            except StackError:
                pass
        if sent_b < len(down):
            try:
                sent_b += b.send(s, down[sent_b:sent_b + 65536])
            except StackError:
                pass
        for sock, stk, buf in ((c, a, got_a), (s, b, got_b)):
            while True:
                try:
                    data = stk.recv(sock)
                except StackError:
                    break
                if not data:
                    break
                buf += data
        if len(got_a) == len(down) and len(got_b) == len(up):
            break
        now = run(a, b, now + 1, until=None, limit=50)
    assert bytes(got_b) == up and bytes(got_a) == down
    a.close(c)
    b.close(s)
    now = run(a, b, now)
    st = a.stats()
    assert st["conns"] == 0 and b.stats()["conns"] == 0 and st["rst_out"] == 0


def test_closed_port_answers_with_rst_and_connect_is_refused():
    a, b = pair()
    c = a.connect("198.18.0.2", 9, now=0)
    run(a, b, 0)
    assert a.state(c) == "CLOSED" and a.error(c) == 111        # ECONNREFUSED
    assert b.stats()["rst_out"] == 1
    with pytest.raises(StackError) as e:
        a.recv(c)
    assert e.value.errno == 111


def test_readiness_events_and_eof():
    a, b = pair()
    ls = b.listen(80)
    c = a.connect("198.18.0.2", 80, now=0)
    now = run(a, b, 0)
    assert ls in b.ready() and b.events(ls) & IN
    s = b.accept(ls)
    assert a.events(c) & OUT and not a.events(c) & IN
    a.send(c, b"hi")
    a.shutdown(c)
    now = run(a, b, now)
    ev = b.events(s)
    assert ev & IN and ev & RDHUP
    assert b.recv(s) == b"hi" and b.recv(s) == b""            # then EOF
    assert s in b.ready()


@pytest.mark.parametrize("syncookies", [0, 1])
def test_syn_queue_bound_drops_extra_syns_or_answers_them_with_cookies(syncookies):
    a = Stack(mac=MAC_A, addrs=["198.18.0.1/24", "2001:db8::1/64"])
    b = Stack(mac=MAC_B, addrs=["198.18.0.2/24", "2001:db8::2/64"], syncookies=syncookies)
    b.listen(80, backlog=4)
    b.listen(81)
    a.connect("198.18.0.2", 81, now=0)    # neighbours resolved first
    exchange(a, b, 0)
    socks = [a.connect("198.18.0.2", 80, now=0) for _ in range(20)]
    syns = [f for f in a.output(0)]
    assert len(syns) == 20
    for f in syns:
        b.input(f, 0)
    # a SYN queue of backlog * 1.5 + 1 (the connections wait in SYN-RECEIVED:
    # nobody answers the SYN-ACKs here); the rest is dropped, the clients
    # retry, or with SYN cookies (RFC 4987 3.6) answered without state
    st = b.stats()
    assert st["syn_dropped"] == (20 - (4 + 2 + 1)) * (1 - syncookies)
    assert st["syncookies_sent"] == (20 - (4 + 2 + 1)) * syncookies
    assert st["conns"] == 7 + 1                      # and the one to port 81
    assert len(b.output(0)) == 7 + st["syncookies_sent"] and len(socks) == 20


def test_accept_queue_overflow_resets_the_extra_connection():
    a, b = pair()
    b.listen(80, backlog=2)
    socks = [a.connect("198.18.0.2", 80, now=0) for _ in range(3)]
    run(a, b, 0)
    assert b.stats()["accept_overflow"] == 1
    states = sorted(a.state(s) for s in socks)
    assert states == ["CLOSED", "ESTABLISHED", "ESTABLISHED"]


def test_time_wait_table_is_bounded():
    a, b = pair(max_time_wait=5)
    ls = b.listen(80, backlog=64)
    now = 0
    for k in range(12):
        c = a.connect("198.18.0.2", 80, now=now)
        now = run(a, b, now + MS, until=lambda: b.events(ls) & IN)
        s = b.accept(ls)
        a.close(c)             # the client closes first: it keeps TIME-WAIT
        now = run(a, b, now + MS, until=lambda: b.events(s) & RDHUP)
        b.close(s)
        exchange(a, b, now)
    st = a.stats()
    assert st["time_wait"] == 5 and st["time_wait_evicted"] == 7


def test_bad_checksum_and_segments_for_others_are_counted_not_answered():
    a, b = pair()
    b.listen(80)
    a.connect("198.18.0.2", 80, now=0)
    (arp,) = a.output(0)
    b.input(arp, 0)
    (reply,) = b.output(0)
    a.input(reply, 0)
    (syn,) = a.output(0)
    eth_ = dpkt.ethernet.Ethernet(syn)
    tcp = eth_.ip.data
    tcp.sum ^= 0x5555                         # a bad TCP checksum
    b.input(bytes(eth_), 0)
    assert b.stats()["bad_checksum"] == 1 and b.output(0) == []
    tcp.sum ^= 0x5555
    eth_.ip.dst = socket.inet_aton("198.18.0.3")   # not ours
    eth_.ip.sum = 0
    b.input(bytes(eth_), 0)
    assert b.stats()["not_ours"] == 1 and b.output(0) == []
    b.input(syn, 0)                           # the real one is answered
    assert len(b.output(0)) == 1


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=200), max_size=20))
def test_garbage_frames_never_crash(frames):
    a, b = pair()
    b.listen(80)
    a.connect("198.18.0.2", 80, now=0)
    for i, f in enumerate(frames):
        b.input(f, i * MS)
        a.input(f, i * MS)
        b.timer(i * MS)
    exchange(a, b, len(frames) * MS)
    b.stats()


def test_a_connect_with_so_rcvbuf_says_it_in_its_syn():
    a, b = pair()
    b.listen(80)
    a.connect("198.18.0.2", 80, now=0, rcvbuf=4096)
    syns = []
    for _ in range(10):
        for f in a.output(0):
            eth = dpkt.ethernet.Ethernet(f)
            if isinstance(eth.data, dpkt.ip.IP) and isinstance(eth.data.data, dpkt.tcp.TCP):
                syns.append(eth.data.data)
            b.input(f, 0)
        for f in b.output(0):
            a.input(f, 0)
    syn = next(t for t in syns if t.flags & dpkt.tcp.TH_SYN)
    assert syn.win == 4096
