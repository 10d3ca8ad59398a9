"""Steering for end-host workers on AF_PACKET: several stacks on one
interface, each owning the TCP connections the kernel hands it.

Each worker opens two packet sockets on the interface:

* a **TCP socket** that joins a fanout group in ``PACKET_FANOUT_CBPF``
  mode, whose classic-BPF program returns a mix of ``sport ^ dport`` (the
  kernel takes it modulo the group's size): every segment of a connection, both
  ways, goes to the same member, and a worker that opens a connection
  picks an ephemeral port that maps to itself (stack.h, as mTCP's
  ``init_rss`` picks ports by the NIC's RSS hash; ``steer_hash``).  Members are numbered in
  the order they join, so the ports are opened in worker order;
* a **control socket** that sees every frame that is not TCP (ARP, IPv6
  neighbour discovery, ICMP): all workers learn neighbours from them, one
  (the responder) answers.

Socket filters keep each socket to its share, so no frame is copied to
every worker.  Loads use the network-header base (``SKF_NET_OFF``), which
holds in the fanout hook and in the socket filter alike.
"""

from __future__ import annotations

import ctypes
import socket
import struct

__all__ = ["steer_tcp", "control_only", "steer_hash", "FANOUT_PROGRAM", "TCP_ONLY", "NOT_TCP"]

# classic BPF (linux/filter.h, linux/bpf_common.h)
LD, LDX, ST, ALU, JMP, RET, MISC = 0x00, 0x01, 0x02, 0x04, 0x05, 0x06, 0x07
W, H, B = 0x00, 0x08, 0x10
IMM, ABS, IND, MEM = 0x00, 0x20, 0x40, 0x60
MUL, AND, LSH, RSH, XOR = 0x20, 0x50, 0x60, 0x70, 0xA0
JEQ = 0x10
K, X, A = 0x00, 0x08, 0x10
TAX = 0x00
SKF_AD_PROTOCOL = (-0x1000 + 0) & 0xFFFFFFFF
NET = -0x100000                      # SKF_NET_OFF: offsets from the network header

SOL_PACKET, PACKET_FANOUT, PACKET_FANOUT_DATA = 263, 18, 22
PACKET_FANOUT_CBPF = 6
SO_ATTACH_FILTER = 26


def _assemble(prog: list) -> list:
    """(code, jt, jf, k) with jump targets given as labels ("name") and
    label definitions as bare strings in the list."""
    labels, insns = {}, []
    for item in prog:
        if isinstance(item, str):
            labels[item] = len(insns)
        else:
            insns.append(item)
    out = []
    for i, (code, jt, jf, k) in enumerate(insns):
        jt = labels[jt] - i - 1 if isinstance(jt, str) else jt
        jf = labels[jf] - i - 1 if isinstance(jf, str) else jf
        out.append((code, jt, jf, k & 0xFFFFFFFF))
    return out


def _tcp_program(tcp_result: list, other_result: list) -> list:
    """IPv4 (any header length) and IPv6 (no extension header) TCP run
    ``tcp_result`` with X = the IP header length; the rest ``other_result``."""
    return _assemble([
        (LD | W | ABS, 0, 0, SKF_AD_PROTOCOL),
        (JMP | JEQ | K, "v4", 0, 0x0800),
        (JMP | JEQ | K, "v6", "other", 0x86DD),
        "v4",
        (LD | B | ABS, 0, 0, NET + 9),
        (JMP | JEQ | K, 0, "other", 6),
        (LD | B | ABS, 0, 0, NET + 0),
        (ALU | AND | K, 0, 0, 0x0F),
        (ALU | LSH | K, 0, 0, 2),
        (MISC | TAX, 0, 0, 0),
        (JMP | JEQ | K, "tcp", "tcp", 0),           # on to the TCP part either way
        "v6",
        (LD | B | ABS, 0, 0, NET + 6),
        (JMP | JEQ | K, 0, "other", 6),
        (LDX | W | IMM, 0, 0, 40),
        "tcp",
        *tcp_result,
        "other",
        *other_result,
    ])


# ((sport ^ dport) * GOLDEN) >> 16 of a TCP segment, the fanout taking it
# modulo the members (stack.c's steer_hash): mixed, because Linux gives
# connect() even ports only, so the plain XOR with port 80 would be even
# for every client.  Anything else goes to member 0 (the control sockets
# have those anyway)
GOLDEN = 0x9E3779B1
FANOUT_PROGRAM = _tcp_program(
    [(LD | H | IND, 0, 0, NET + 0), (ST, 0, 0, 0), (LD | H | IND, 0, 0, NET + 2),
     (LDX | W | MEM, 0, 0, 0), (ALU | XOR | X, 0, 0, 0), (ALU | MUL | K, 0, 0, GOLDEN),
     (ALU | RSH | K, 0, 0, 16), (RET | A, 0, 0, 0)],
    [(RET | K, 0, 0, 0)])


def steer_hash(sport: int, dport: int) -> int:
    """The fanout program's value for a segment between these ports."""
    return (((sport ^ dport) * GOLDEN) & 0xFFFFFFFF) >> 16
TCP_ONLY = _tcp_program([(RET | K, 0, 0, 0x40000)], [(RET | K, 0, 0, 0)])
NOT_TCP = _tcp_program([(RET | K, 0, 0, 0)], [(RET | K, 0, 0, 0x40000)])


class _Insn(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8),
                ("k", ctypes.c_uint32)]


def _setsockopt_prog(fd: int, level: int, opt: int, prog: list) -> None:
    insns = (_Insn * len(prog))(*[_Insn(*i) for i in prog])
    fprog = struct.pack("HxxxxxxQ", len(prog), ctypes.addressof(insns))
    s = socket.fromfd(fd, socket.AF_PACKET, socket.SOCK_RAW)
    try:
        s.setsockopt(level, opt, fprog)
    finally:
        s.close()


def steer_tcp(port, group: int) -> None:
    """Make an open AfPacketPort a TCP member of fanout ``group`` (steered by
    ``sport ^ dport``); join in worker order."""
    fd = port.fileno()
    _setsockopt_prog(fd, socket.SOL_SOCKET, SO_ATTACH_FILTER, TCP_ONLY)
    s = socket.fromfd(fd, socket.AF_PACKET, socket.SOCK_RAW)
    try:
        s.setsockopt(SOL_PACKET, PACKET_FANOUT, (group & 0xFFFF) | (PACKET_FANOUT_CBPF << 16))
    finally:
        s.close()
    _setsockopt_prog(fd, SOL_PACKET, PACKET_FANOUT_DATA, FANOUT_PROGRAM)


def control_only(port) -> None:
    """Keep an open AfPacketPort to the frames that are not TCP."""
    _setsockopt_prog(port.fileno(), socket.SOL_SOCKET, SO_ATTACH_FILTER, NOT_TCP)
