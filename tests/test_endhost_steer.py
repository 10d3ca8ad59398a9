"""Workers on one AF_PACKET port (mos.endhost.steer): the fanout program
sends both directions of a connection to one worker, and a worker's stack
picks ephemeral ports the program maps to itself.  The classic-BPF
programs run here on dpkt-built packets through a small interpreter of
the instructions they use; tests/test_endhost_live.py runs them in the
kernel."""

from __future__ import annotations

import struct

import dpkt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mos.endhost import steer
from mos.endhost._stack import Stack


def run_bpf(prog, ethertype: int, net: bytes) -> int:
    """Run a program on a packet whose network header is ``net``
    (offsets SKF_NET_OFF + k; SKF_AD_PROTOCOL gives the ethertype)."""
    a = x = 0
    mem = [0] * 16
    pc = 0

    def load(off, size):
        off -= steer.NET
        if off < 0 or off + size > len(net):
            raise IndexError
        return int.from_bytes(net[off:off + size], "big")
    while True:
        code, jt, jf, k = prog[pc]
        pc += 1
        cls = code & 0x07
        if cls == steer.LD:
            size = {steer.W: 4, steer.H: 2, steer.B: 1}[code & 0x18]
            mode = code & 0xE0
            if mode == steer.ABS and k == steer.SKF_AD_PROTOCOL:
                a = ethertype
            elif mode == steer.ABS:
                a = load(k - (1 << 32) if k & (1 << 31) else k, size)
            elif mode == steer.IND:
                a = load((k - (1 << 32) if k & (1 << 31) else k) + x, size)
            else:
                raise AssertionError(hex(code))
        elif cls == steer.LDX:
            x = k if code & 0xE0 == steer.IMM else mem[k]
        elif cls == steer.ST:
            mem[k] = a
        elif cls == steer.ALU:
            op, src = code & 0xF0, (x if code & steer.X else k)
            ops = {steer.AND: int.__and__, steer.LSH: int.__lshift__,
                   steer.RSH: int.__rshift__, steer.XOR: int.__xor__, steer.MUL: int.__mul__}
            a = ops[op](a, src) & 0xFFFFFFFF
        elif cls == steer.MISC:
            x = a
        elif cls == steer.JMP:
            pc += jt if a == k else jf
        elif cls == steer.RET:
            return a if code & steer.A else k


def tcp4(sport, dport, options=b""):
    ip = dpkt.ip.IP(src=bytes([198, 18, 0, 1]), dst=bytes([198, 18, 0, 2]), p=6,
                    opts=options, data=dpkt.tcp.TCP(sport=sport, dport=dport))
    ip.hl = (20 + len(options)) // 4
    return bytes(ip)


def tcp6(sport, dport):
    return bytes(dpkt.ip6.IP6(src=b"\x20\x01\x0d\xb8" + bytes(11) + b"\x01",
                              dst=b"\x20\x01\x0d\xb8" + bytes(11) + b"\x02", nxt=6, hlim=64,
                              data=dpkt.tcp.TCP(sport=sport, dport=dport)))


@settings(deadline=None)
@given(st.integers(1, 65535), st.integers(1, 65535))
def test_the_fanout_program_computes_steer_hash_both_ways(a, b):
    want = steer.steer_hash(a, b)
    assert want == steer.steer_hash(b, a)
    assert run_bpf(steer.FANOUT_PROGRAM, 0x0800, tcp4(a, b)) == want
    assert run_bpf(steer.FANOUT_PROGRAM, 0x0800, tcp4(b, a, b"\x01\x01\x01\x00")) == want
    assert run_bpf(steer.FANOUT_PROGRAM, 0x86DD, tcp6(a, b)) == want


def test_filters_split_tcp_from_the_rest():
    udp = bytes(dpkt.ip.IP(src=bytes(4), dst=bytes(4), p=17, data=dpkt.udp.UDP()))
    arp = bytes(28)
    for prog, tcp_ok in ((steer.TCP_ONLY, True), (steer.NOT_TCP, False)):
        assert bool(run_bpf(prog, 0x0800, tcp4(1000, 80))) is tcp_ok
        assert bool(run_bpf(prog, 0x86DD, tcp6(1000, 80))) is tcp_ok
        assert bool(run_bpf(prog, 0x0800, udp)) is not tcp_ok
        assert bool(run_bpf(prog, 0x0806, arp)) is not tcp_ok
    assert run_bpf(steer.FANOUT_PROGRAM, 0x0806, arp) == 0


@pytest.mark.parametrize("workers", [2, 3, 4])
def test_each_worker_connects_from_ports_steered_to_itself(workers):
    for w in range(workers):
        s = Stack(mac="02:00:00:00:00:01", addrs=["198.18.0.1/24"], workers=workers, worker=w,
                  responder=w == 0, seed=w)
        for dport in (80, 443, 8000):
            for _ in range(20):
                sock = s.connect("198.18.0.2", dport, now=0)
                sport = s.names(sock)[0][1]
                assert steer.steer_hash(sport, dport) % workers == w


def test_worker_numbers_are_checked():
    with pytest.raises(ValueError, match="worker 2 of 2"):
        Stack(addrs=["198.18.0.1/24"], workers=2, worker=2)


def test_only_the_responder_answers_arp_but_every_worker_learns():
    arp_req = (b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x09" + b"\x08\x06" +
               struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + b"\x02\x00\x00\x00\x00\x09" +
               bytes([198, 18, 0, 9]) + bytes(6) + bytes([198, 18, 0, 1]))
    quiet = Stack(mac="02:00:00:00:00:01", addrs=["198.18.0.1/24"], workers=2, worker=1,
                  responder=False)
    loud = Stack(mac="02:00:00:00:00:01", addrs=["198.18.0.1/24"], workers=2, worker=0)
    for s in (quiet, loud):
        s.input(arp_req, 0)
    assert quiet.output(0) == [] and len(loud.output(0)) == 1
    assert quiet.stats()["neighbours"] == 1 == loud.stats()["neighbours"]
