"""SYN cookies in the end host's stack (RFC 4987 3.6; Linux's
tcp_syncookies=1 as the model), sans-I/O: once a listener's SYN queue is
full a SYN is answered by a SYN-ACK whose ISN is a cookie and nothing is
kept; the ACK that returns a valid cookie makes an ESTABLISHED connection
on the accept queue.  Frames are built and read with dpkt; a flood of
200,000 spoofed SYNs (198.19.0.0/16, inside RFC 2544's 198.18.0.0/15)
goes straight into a Stack in memory."""

from __future__ import annotations

import os
import socket
import struct
import time

import dpkt
import pytest
from _synflood import syn_frames
from hypothesis import given, settings
from hypothesis import strategies as st
from mos.endhost._stack import IN, Stack, StackError, exchange

MS = 1_000_000
PERIOD = 64_000 * MS                     # the cookie counter's step (stack.c)
SERVER_MAC = bytes.fromhex("02000000000b")
PEER_MAC = bytes.fromhex("020000000099")
SERVER = {4: "198.18.0.2", 6: "2001:db8::2"}
GATEWAY = {4: "198.18.0.1", 6: "2001:db8::1"}
MSS_TABLE = {4: (64, 536, 1200, 1360, 1400, 1440, 1460, 8960),
             6: (64, 536, 1220, 1280, 1380, 1420, 1440, 8940)}
BACKLOG = 1                              # a SYN queue of backlog * 1.5 + 1 = 2 entries


def packed(addr: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6 if ":" in addr else socket.AF_INET, addr)


def options(mss=1460, wscale=None, sack=False, ts=None) -> bytes:
    o = struct.pack("!BBH", 2, 4, mss)
    if wscale is not None:
        o += bytes([1, 3, 3, wscale])
    if sack:
        o += b"\x01\x01\x04\x02"
    if ts is not None:
        o += b"\x01\x01\x08\x0a" + struct.pack("!II", *ts)
    return o


def frame(ver, src, sport, seq, ack=0, flags=dpkt.tcp.TH_SYN, opts=b"", data=b"", win=64240,
          dport=80) -> bytes:
    tcp = dpkt.tcp.TCP(sport=sport, dport=dport, seq=seq, ack=ack, flags=flags, win=win,
                       opts=opts, data=data)
    tcp.off = (20 + len(opts)) // 4
    if ver == 4:
        ip = dpkt.ip.IP(src=packed(src), dst=packed(SERVER[4]), p=6, data=tcp)
        ip.len = len(ip)
        etype = 0x0800
    else:
        ip = dpkt.ip6.IP6(src=packed(src), dst=packed(SERVER[6]), nxt=6, hlim=64, data=tcp)
        ip.plen = len(tcp)
        etype = 0x86DD
    return bytes(dpkt.ethernet.Ethernet(dst=SERVER_MAC, src=PEER_MAC, type=etype, data=ip))


def tcp_out(stack, now):
    """The TCP segments a stack sends now, as dpkt objects."""
    out = []
    for f in stack.output(now):
        e = dpkt.ethernet.Ethernet(f)
        if e.type in (0x0800, 0x86DD) and isinstance(e.data.data, dpkt.tcp.TCP):
            out.append(e.data.data)
    return out


def opts_of(seg) -> dict:
    return {k: v for k, v in dpkt.tcp.parse_opts(seg.opts)}


def server(**kw):
    """A stack at 198.18.0.2 / 2001:db8::2 whose gateway (the peer's MAC) is
    known, so what it sends leaves at once; a listener on port 80 with a
    SYN queue of two; two SYNs that nobody completes fill it."""
    b = Stack(mac="02:00:00:00:00:0b", addrs=["198.18.0.2/24", "2001:db8::2/64"],
              gateway4=GATEWAY[4], gateway6=GATEWAY[6], **kw)
    arp = dpkt.arp.ARP(op=dpkt.arp.ARP_OP_REQUEST, sha=PEER_MAC, spa=packed(GATEWAY[4]),
                       tha=b"\0" * 6, tpa=packed(SERVER[4]))
    b.input(bytes(dpkt.ethernet.Ethernet(dst=b"\xff" * 6, src=PEER_MAC, type=0x0806,
                                         data=arp)), 0)
    ns = dpkt.icmp6.ICMP6(type=135, data=b"\0\0\0\0" + packed(SERVER[6]) + b"\x01\x01" + PEER_MAC)
    ip6 = dpkt.ip6.IP6(src=packed(GATEWAY[6]), dst=packed(SERVER[6]), nxt=58, hlim=255, data=ns)
    ip6.plen = len(ns)
    b.input(bytes(dpkt.ethernet.Ethernet(dst=SERVER_MAC, src=PEER_MAC, type=0x86DD, data=ip6)), 0)
    b.output(0)
    ls = b.listen(80, backlog=BACKLOG)
    return b, ls


def fill_syn_queue(b, ver, now, base_port=2000):
    for k in range(BACKLOG + BACKLOG // 2 + 1):
        b.input(frame(ver, GATEWAY[ver], base_port + k, 1000 * k, opts=options()), now)
    b.output(now)


def client_addr(ver):
    return "198.19.7.9" if ver == 4 else "2001:db8:77::9"


def handshake(b, ver, now, mss=1460, wscale=None, sack=False, ts=None, sport=40000,
              isn=0x1234_5678):
    """SYN to a full queue: the cookie SYN-ACK."""
    b.input(frame(ver, client_addr(ver), sport, isn,
                  opts=options(mss, wscale, sack, None if ts is None else (ts, 0))), now)
    (synack,) = tcp_out(b, now)
    assert synack.flags == dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK and synack.ack == isn + 1
    return synack


def complete(b, ver, synack, now, sport=40000, isn=0x1234_5678, ts=None, data=b"", win=64240,
             ack_delta=0, tsecr=None):
    """The client's ACK of the SYN-ACK (its TSecr echoes the SYN-ACK's TSval)."""
    opts = b""
    o = opts_of(synack)
    if ts is not None and 8 in o:
        echo = struct.unpack("!II", o[8])[0] if tsecr is None else tsecr
        opts = b"\x01\x01\x08\x0a" + struct.pack("!II", ts, echo)
    b.input(frame(ver, client_addr(ver), sport, isn + 1, (synack.seq + 1 + ack_delta) & 0xFFFFFFFF,
                  dpkt.tcp.TH_ACK | (dpkt.tcp.TH_PUSH if data else 0), opts, data, win), now)


# ---------------------------------------------------------------- the handshake

@pytest.mark.parametrize("ver", [4, 6], ids=["ipv4", "ipv6"])
@pytest.mark.parametrize("with_ts", [True, False], ids=["timestamps", "no-timestamps"])
def test_listen_queue_full_syn_gets_cookie_and_its_ack_makes_a_connection(ver, with_ts):
    """RFC 4987 3.6: the SYN beyond the queue gets a SYN-ACK and leaves no
    state; the completing ACK (with data) makes an accepted connection that
    carries data both ways.  With timestamps the window scale and
    SACK-permitted come back in TSecr's low bits; without, the SYN-ACK
    offers neither and the connection runs without them (as Linux)."""
    b, ls = server()
    now = 5 * MS
    fill_syn_queue(b, ver, now)
    conns = b.stats()["conns"]
    ts = 777_000 if with_ts else None
    synack = handshake(b, ver, now, wscale=5, sack=True, ts=ts)
    o = opts_of(synack)
    assert b.stats()["syncookies_sent"] == 1 and b.stats()["conns"] == conns  # no state
    assert struct.unpack("!H", o[2])[0] == 1460
    if with_ts:
        assert o[3] == bytes([7]) and 4 in o and struct.unpack("!II", o[8])[1] == ts
    else:
        assert 3 not in o and 4 not in o and 8 not in o
    now += MS
    complete(b, ver, synack, now, ts=None if ts is None else ts + 1, data=b"GET / HTTP/1.0\r\n\r\n")
    assert b.events(ls) & IN and b.stats()["syncookies_ok"] == 1
    s = b.accept(ls)
    assert b.state(s) == "ESTABLISHED"
    assert b.names(s) == ((SERVER[ver], 80), (client_addr(ver), 40000))
    assert b.recv(s) == b"GET / HTTP/1.0\r\n\r\n"
    assert [o.ack for o in tcp_out(b, now)] == [0x1234_5678 + 1 + 18]     # its ACK
    b.send(s, b"HTTP/1.0 200 OK\r\n\r\nhello")
    (reply,) = tcp_out(b, now)
    assert reply.seq == synack.seq + 1 and reply.ack == 0x1234_5678 + 1 + 18
    assert reply.data == b"HTTP/1.0 200 OK\r\n\r\nhello"
    # our window: shifted by 7 once scaling is on, whole bytes (at most 65535) if not
    assert (reply.win < 4096) == with_ts
    assert (8 in opts_of(reply)) == with_ts
    # an out-of-order segment: SACK blocks only if SACK-permitted came back
    b.input(frame(ver, client_addr(ver), 40000, 0x1234_5678 + 1 + 18 + 100,
                  (synack.seq + 1 + len(reply.data)) & 0xFFFFFFFF, dpkt.tcp.TH_ACK,
                  b"" if ts is None else b"\x01\x01\x08\x0a" + struct.pack("!II", ts + 2, 0),
                  b"later", 1000), now)
    (dup,) = tcp_out(b, now)
    assert dup.ack == 0x1234_5678 + 1 + 18 and (5 in opts_of(dup)) == with_ts
    assert b.stats()["syncookies_failed"] == 0


def test_syn_with_room_in_the_queue_gets_no_cookie():
    """Cookies only when the queue overflows (Linux's tcp_syncookies=1)."""
    b, _ = server()
    b.input(frame(4, GATEWAY[4], 2000, 1, opts=options()), 0)
    assert len(tcp_out(b, 0)) == 1                   # its SYN-ACK
    assert b.stats()["syncookies_sent"] == 0 and b.stats()["conns"] == 1


def test_syncookies_always_answers_every_syn_statelessly():
    b, ls = server(syncookies=2)
    synack = handshake(b, 4, 0, ts=5)
    assert b.stats()["conns"] == 0 and b.stats()["syncookies_sent"] == 1
    complete(b, 4, synack, MS, ts=6)
    assert b.state(b.accept(ls)) == "ESTABLISHED"


def test_syncookies_off_drops_the_syn_beyond_the_queue():
    b, _ = server(syncookies=0)
    fill_syn_queue(b, 4, 0)
    b.input(frame(4, client_addr(4), 40000, 1, opts=options()), 0)
    assert tcp_out(b, 0) == [] and b.stats()["syn_dropped"] == 1


def test_stack_rejects_a_syncookies_value_it_does_not_know():
    with pytest.raises(ValueError, match="syncookies"):
        Stack(syncookies=3)


# ---------------------------------------------------------------- forged ACKs

@pytest.mark.parametrize("forgery", ["wrong-mac", "stale-counter", "random", "options-changed"])
def test_forged_cookie_ack_gets_rst_and_no_connection(forgery):
    """An ACK whose cookie does not check out makes nothing and counts
    syncookies_failed; it draws a RST <SEQ=SEG.ACK> as any ACK in LISTEN
    does (RFC 9293 3.10.7.2; Linux too: its cookie check hands the segment
    back to the listener, whose ACK answer is a reset)."""
    b, ls = server()
    now = 3 * PERIOD + 7 * MS
    fill_syn_queue(b, 4, now)
    synack = handshake(b, 4, now, wscale=7, sack=True, ts=100)
    conns = b.stats()["conns"]
    if forgery == "wrong-mac":
        complete(b, 4, synack, now + MS, ts=101, ack_delta=1 << 3)
        sent_ack = synack.seq + 1 + (1 << 3)
    elif forgery == "stale-counter":
        # two counter steps later; a fresh overflow keeps the listener in cookie mode
        later = now + 2 * PERIOD
        fill_syn_queue(b, 4, later, base_port=3000)
        b.input(frame(4, "198.19.1.1", 999, 5, opts=options()), later)
        b.output(later)
        complete(b, 4, synack, later, ts=101)
        sent_ack = synack.seq + 1
    elif forgery == "random":
        ack = 0x5EED_0001
        b.input(frame(4, "198.19.3.3", 4444, 77, ack, dpkt.tcp.TH_ACK), now + MS)
        sent_ack = ack
    else:   # the peer claims another window shift than its SYN had: the MAC covers it
        tsval = struct.unpack("!II", opts_of(synack)[8])[0]
        complete(b, 4, synack, now + MS, ts=101, tsecr=tsval ^ 0x3)
        sent_ack = synack.seq + 1
    out = tcp_out(b, now + 2 * PERIOD)
    assert [(o.flags, o.seq) for o in out] == [(dpkt.tcp.TH_RST, sent_ack & 0xFFFFFFFF)]
    st_ = b.stats()
    assert st_["syncookies_failed"] == 1 and st_["syncookies_ok"] == 0
    assert st_["conns"] == conns and not b.events(ls) & IN
    with pytest.raises(StackError):
        b.accept(ls)


def test_ack_to_a_listener_that_sent_no_cookies_lately_is_not_checked():
    """As Linux: no overflow for two counter steps, no cookie check (and no
    hash to pay); the ACK only draws the LISTEN state's RST."""
    b, _ = server()
    fill_syn_queue(b, 4, 0)
    synack = handshake(b, 4, 0)
    complete(b, 4, synack, 3 * PERIOD)
    out = tcp_out(b, 3 * PERIOD)
    assert [o.flags for o in out] == [dpkt.tcp.TH_RST]
    assert b.stats()["syncookies_failed"] == 0 and b.stats()["syncookies_ok"] == 0


def test_cookie_ack_to_a_full_accept_queue_is_dropped_and_counted():
    """As Linux: the connection is not made (no RST either); the client's
    retransmission may find room later, the cookie still being valid."""
    b, ls = server()
    fill_syn_queue(b, 4, 0)
    first = handshake(b, 4, 0, sport=40000)
    second = handshake(b, 4, 0, sport=40001)
    complete(b, 4, first, MS, sport=40000)        # the accept queue's one place
    complete(b, 4, second, MS, sport=40001)
    assert tcp_out(b, MS) == []
    assert b.stats()["accept_overflow"] == 1 and b.stats()["syncookies_ok"] == 1
    b.accept(ls)
    complete(b, 4, second, 2 * MS, sport=40001)   # its retransmission
    assert b.state(b.accept(ls)) == "ESTABLISHED"


# ---------------------------------------------------------------- properties

@settings(max_examples=200, deadline=None)
@given(ver=st.sampled_from([4, 6]), mss=st.integers(88, 9000), ts=st.booleans())
def test_cookie_mss_is_the_largest_table_value_at_most_the_clients(ver, mss, ts):
    """The MSS a cookie keeps is never above the client's (RFC 9293 3.7.1:
    the sender must not exceed it): segments sent on the connection fit.
    (From 88 up: below, the host's own 64-byte floor would decide.)"""
    b, ls = server()
    fill_syn_queue(b, ver, 0)
    synack = handshake(b, ver, 0, mss=mss, ts=1 if ts else None)
    complete(b, ver, synack, MS, ts=2 if ts else None, win=65535)
    s = b.accept(ls)
    b.send(s, bytes(20000))
    segs = [o for o in tcp_out(b, MS) if o.data]
    kept = max(t for t in MSS_TABLE[ver] if t <= mss)
    want = max(min(kept, 1460) - (12 if ts else 0), 64)
    # data and options fit the client's MSS (RFC 6691)
    assert segs and max(len(o.data) for o in segs) == want <= mss - (12 if ts else 0)


@settings(max_examples=200, deadline=None)
@given(ver=st.sampled_from([4, 6]), third=st.integers(0, 255), fourth=st.integers(1, 254),
       sport=st.integers(1, 65535), isn=st.integers(0, 2**32 - 1),
       t0=st.integers(0, 10**15), dt=st.integers(0, 4 * PERIOD),
       ws=st.one_of(st.none(), st.integers(0, 14)), sack=st.booleans(),
       mss=st.sampled_from([536, 1220, 1300, 1440, 1460, 9000]))
def test_cookie_round_trip_keeps_tuple_time_mss_and_options(ver, third, fourth, sport, isn, t0,
                                                            dt, ws, sack, mss):
    """A cookie made at t0 for any 4-tuple and client ISN is taken at t0 + dt
    iff the counter moved at most one step (RFC 4987 3.6: a bounded
    lifetime); what it kept comes back: the MSS and the window shift (seen
    in how far the server sends into a window of one segment, scaled) and
    SACK-permitted (SACK blocks on an out-of-order segment)."""
    src = f"198.19.{third}.{fourth}" if ver == 4 else f"2001:db8:{third + 1:x}::{fourth:x}"
    b, ls = server()
    fill_syn_queue(b, ver, t0)
    b.input(frame(ver, src, sport, isn, opts=options(mss, ws, sack, (9, 0))), t0)
    (synack,) = tcp_out(b, t0)
    now = t0 + dt
    b.input(frame(ver, "198.19.250.250" if ver == 4 else "2001:db8:ff::1", 9, 9,
                  opts=options()), now)           # keeps the listener sending cookies
    b.output(now)
    tsval = struct.unpack("!II", opts_of(synack)[8])[0]
    kept = max(t for t in MSS_TABLE[ver] if t <= mss)
    smss = max(min(kept, 1460) - 12, 64)          # less the timestamps; the host's floor
    b.input(frame(ver, src, sport, (isn + 1) & 0xFFFFFFFF, (synack.seq + 1) & 0xFFFFFFFF,
                  dpkt.tcp.TH_ACK, b"\x01\x01\x08\x0a" + struct.pack("!II", 10, tsval),
                  win=smss), now)
    valid = now // PERIOD - t0 // PERIOD <= 1
    st_ = b.stats()
    assert (st_["syncookies_ok"], st_["syncookies_failed"]) == ((1, 0) if valid else (0, 1))
    if not valid:
        return
    s = b.accept(ls)
    assert b.names(s)[1] == (src, sport)
    b.send(s, bytes(30000))
    sent = [len(o.data) for o in tcp_out(b, now)]
    # whole segments into smss << shift bytes, at most the initial window
    # of 10 (RFC 6928: min(10 * smss, max(2 * smss, 14600)) is 10 here)
    assert sent == [smss] * min(1 << (ws or 0), 10)
    b.input(frame(ver, src, sport, (isn + 1 + 50) & 0xFFFFFFFF, (synack.seq + 1) & 0xFFFFFFFF,
                  dpkt.tcp.TH_ACK, b"\x01\x01\x08\x0a" + struct.pack("!II", 11, tsval),
                  b"x", win=smss), now)
    (dup,) = [o for o in tcp_out(b, now) if not o.data] or [None]
    assert dup is not None and (5 in opts_of(dup)) == sack


# ---------------------------------------------------------------- a flood

def _rss_kib() -> int:
    with open(f"/proc/{os.getpid()}/statm") as fh:
        return int(fh.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)


def _flood(b, n, t0, capsys=None):
    """n spoofed SYNs into b over n * 20 us of virtual time, output drained
    and timers run as they go; (frames out, seconds)."""
    out = 0
    now = t0
    start = time.perf_counter()
    for i, f in enumerate(syn_frames(n, SERVER_MAC, PEER_MAC)):
        now = t0 + i * 20_000
        b.input(f, now)
        if not i % 1024:
            out += len(b.output(now))
            b.timer(now)
    out += len(b.output(now))
    return out, time.perf_counter() - start, now


def _connect_and_talk(a, b, ls, now):
    c = a.connect(SERVER[4], 80, now=now)
    for _ in range(50):
        exchange(a, b, now)
        if b.events(ls) & IN:
            break
        now += 10 * MS
        a.timer(now)
        b.timer(now)
    s = b.accept(ls)
    a.send(c, b"ping")
    exchange(a, b, now)
    assert b.recv(s) == b"ping"
    b.send(s, b"pong")
    exchange(a, b, now)
    assert a.recv(c) == b"pong"
    return now


def test_flood_of_200k_spoofed_syns_keeps_memory_bounded_and_a_client_still_connects(capsys):
    """200,000 SYNs from spoofed 198.19.0.0/16 sources: state stays within
    the SYN queue's bound (backlog * 1.5 + 1 SYN-RECEIVED entries), every
    other SYN is a cookie (one SYN-ACK, nothing kept), memory does not
    grow with the flood, and afterwards a real client (198.18.0.1) connects
    through a cookie and exchanges data.  Timing is printed, not asserted."""
    a = Stack(mac="02:00:00:00:00:99", addrs=["198.18.0.1/24"])
    backlog = 128
    b2 = Stack(mac="02:00:00:00:00:0b", addrs=["198.18.0.2/24"], gateway4=GATEWAY[4])
    a.connect(SERVER[4], 9, now=0)               # neighbours resolved both ways
    exchange(a, b2, 0)
    lsn = b2.listen(80, backlog=backlog)
    rss0 = _rss_kib()
    n = 200_000
    frames_out, secs, now = _flood(b2, n, MS)
    rss1 = _rss_kib()
    st_ = b2.stats()
    bound = backlog + backlog // 2 + 1
    with capsys.disabled():
        print(f"\n  {n} spoofed SYNs into a Stack: {secs:.2f} s ({n / secs:,.0f} SYN/s incl. "
              f"building frames in Python), conns {st_['conns']}, cookies "
              f"{st_['syncookies_sent']}, frames out {frames_out}, RSS +{rss1 - rss0} KiB")
    assert st_["tcp_in"] >= n and st_["conns"] <= bound
    assert st_["syncookies_sent"] == n - bound and st_["syn_dropped"] == 0
    assert st_["neighbours"] <= 2 and st_["neigh_drops"] == 0
    assert rss1 - rss0 < 32 * 1024
    # the queue is still full of spoofed entries: the client gets a cookie
    _connect_and_talk(a, b2, lsn, now + MS)
    assert b2.stats()["syncookies_ok"] == 1


def test_flood_without_syncookies_locks_a_client_out():
    """The contrast: with syncookies off, spoofed SYNs fill the queue and a
    real client's SYNs are dropped until the entries time out."""
    a = Stack(mac="02:00:00:00:00:99", addrs=["198.18.0.1/24"], syn_retries=1)
    b = Stack(mac="02:00:00:00:00:0b", addrs=["198.18.0.2/24"], gateway4=GATEWAY[4],
              syncookies=0)
    a.connect(SERVER[4], 9, now=0)
    exchange(a, b, 0)
    ls = b.listen(80, backlog=16)
    _flood(b, 1000, MS)
    c = a.connect(SERVER[4], 80, now=30 * MS)
    now = 30 * MS
    for _ in range(10):
        exchange(a, b, now)
        d = a.deadline
        if d is None:
            break
        now = d
        a.timer(now)
    assert a.state(c) == "CLOSED" and a.error(c) == 110 and not b.events(ls) & IN
    assert b.stats()["syn_dropped"] >= 1000 - 25


def test_flood_from_spoofed_on_link_sources_keeps_the_real_neighbour_resolved():
    """On a /15 the spoofed sources are on the link: each cookie SYN-ACK
    asks ARP for a host that never answers.  Those unanswered entries make
    way for one another, not for a neighbour that answered: the real
    client's SYN-ACK still leaves at once, without asking ARP again."""
    a = Stack(mac="02:00:00:00:00:99", addrs=["198.18.0.1/15"])
    b = Stack(mac="02:00:00:00:00:0b", addrs=["198.18.0.2/15"])
    a.connect(SERVER[4], 9, now=0)
    exchange(a, b, 0)
    ls = b.listen(80, backlog=8)
    _flood(b, 5000, MS)
    assert b.stats()["syncookies_sent"] == 5000 - 13 and b.stats()["neighbours"] == 1
    a.connect(SERVER[4], 80, now=200 * MS)
    for f in a.output(200 * MS):
        b.input(f, 200 * MS)
    out = [dpkt.ethernet.Ethernet(f) for f in b.output(200 * MS)]
    assert [e.type for e in out] == [0x0800] and out[0].ip.tcp.flags == 0x12
    _connect_and_talk(a, b, ls, 300 * MS)
