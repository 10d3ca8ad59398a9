"""Frames the monitor sends itself: RSTs that reset a connection in-line.

Each end gets a RST whose sequence number is the one it expects next, so
that even a receiver applying RFC 5961 3.2 (accept a RST only when its
sequence number equals RCV.NXT) takes it.  The monitor knows RCV.NXT from
the last ACK that end sent; when data is in flight past that ACK, a second
RST at the sender's SND.NXT covers the other case.
"""

from __future__ import annotations

import ipaddress
import struct

from mos._native import fix_checksums

TH_RST = 0x04
TH_ACK = 0x10


def _ip_tcp(src: str, dst: str, sport: int, dport: int, seq: int, ack: int, flags: int) -> bytes:
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF,
                      5 << 4, flags, 0, 0, 0)
    a, b = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    if a.version == 4:
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0x4000, 64, 6, 0,
                         a.packed, b.packed)
    else:
        ip = struct.pack("!IHBB16s16s", 6 << 28, len(tcp), 6, 64, a.packed, b.packed)
    return ip + tcp


def _l2(template: bytes, same_direction: bool) -> bytes:
    """The current packet's link header, MAC addresses swapped for the reverse way."""
    if same_direction or len(template) < 12:
        return template
    return template[6:12] + template[0:6] + template[12:]


def reset_frames(flow, pkt) -> list[tuple[int, bytes]]:
    """[(port to send out of, frame), ...] resetting both ends of ``flow``.

    ``pkt`` (the packet being handled) supplies the link header."""
    eng = flow.engine
    l2 = pkt.frame[: pkt.l2len]
    from_client = pkt.src == flow.client_ip and pkt.sport == flow.client_port
    here = pkt.iface
    client_port = here if from_client else eng.peer_of(here)
    server_port = eng.peer_of(here) if from_client else here
    c, s = flow.client, flow.server
    out = []
    for sender, receiver, saddr, daddr, port, same in (
            (c, s, (flow.client_ip, flow.client_port), (flow.server_ip, flow.server_port),
             server_port, from_client),
            (s, c, (flow.server_ip, flow.server_port), (flow.client_ip, flow.client_port),
             client_port, not from_client)):
        if port < 0:
            continue
        seqs = []
        if receiver.ack or receiver.packets:
            seqs.append(receiver.ack)
        if sender.snd_nxt not in seqs:
            seqs.append(sender.snd_nxt)
        for seq in seqs:
            # in the receiver's numbering, should handlers have changed lengths
            seq = flow.wire_seq(sender.side, seq)
            frame = _l2(l2, same) + _ip_tcp(saddr[0], daddr[0], saddr[1], daddr[1], seq,
                                            0, TH_RST)
            out.append((port, fix_checksums(1, frame)))
    return out
