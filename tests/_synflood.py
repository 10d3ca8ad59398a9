"""SYN flood frames for the SYN cookie tests: SYNs to 198.18.0.2 from
spoofed sources in 198.19.0.0/16 (RFC 2544's 198.18.0.0/15, never the test
bed's own 198.18.0.1 and .2), random ports and ISNs, with real checksums.

Built with struct and a checksum that adds only the fields that change (a
whole RFC 1071 sum per frame would be the slow part of 200,000 of them).
Run as a script it sends them from an AF_PACKET socket, in a bounded loop,
and says "flooding" once 20,000 went:

    python _synflood.py IFACE DST_MAC SRC_MAC COUNT SECONDS
"""
from __future__ import annotations

import random
import socket
import struct
import sys
import time

DST_IP = bytes([198, 18, 0, 2])
# MSS 1460, SACK-permitted, TS, NOP, window scale 7 (what Linux offers)
SYN_OPTS = bytes.fromhex("020405b4") + b"\x04\x02\x08\x0a" + b"\0" * 8 + b"\x01\x03\x03\x07"


def _fold(s: int) -> int:
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def _sum(b: bytes) -> int:
    return sum(struct.unpack(f"!{len(b) // 2}H", b))


def spoofed_source(rng: random.Random) -> bytes:
    """An address of 198.19.0.0/16 (not .0.0 or .255.255)."""
    return bytes([198, 19]) + struct.pack("!H", rng.randrange(1, 0xFFFF))


def syn_frames(n: int, dst_mac: bytes, src_mac: bytes, seed: int = 1, dport: int = 80):
    """n Ethernet frames, each a SYN from a new spoofed (address, port, ISN)."""
    rng = random.Random(seed)
    tcp_len = 20 + len(SYN_OPTS)
    eth = dst_mac + src_mac + b"\x08\x00"
    # constant parts of the two checksums, summed once
    ip_fixed = _sum(struct.pack("!BBHHHBBH", 0x45, 0, 20 + tcp_len, 0, 0x4000, 64, 6, 0) + DST_IP)
    tcp_fixed = (_sum(DST_IP) + 6 + tcp_len + dport + ((tcp_len // 4) << 12 | 0x02) + 64240 +
                 _sum(SYN_OPTS))
    for _ in range(n):
        src = spoofed_source(rng)
        sport = rng.randrange(1024, 65536)
        seq = rng.getrandbits(32)
        s16 = (src[0] << 8 | src[1]) + (src[2] << 8 | src[3])
        ipsum = ~_fold(ip_fixed + s16) & 0xFFFF
        tsum = ~_fold(tcp_fixed + s16 + sport + (seq >> 16) + (seq & 0xFFFF)) & 0xFFFF
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + tcp_len, 0, 0x4000, 64, 6, ipsum, src,
                         DST_IP)
        tcp = struct.pack("!HHIIHHHH", sport, dport, seq, 0, (tcp_len // 4) << 12 | 0x02, 64240,
                          tsum, 0) + SYN_OPTS
        yield eth + ip + tcp


def send(iface: str, dst_mac: bytes, src_mac: bytes, count: int, seconds: float,
         mark: int = 0) -> int:
    """Send `count` SYNs on `iface`, for at most `seconds`; how many went.
    After `mark` of them, a line "flooding" on stdout (a cue for the test)."""
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((iface, 0))
    sent, end = 0, time.monotonic() + seconds
    for f in syn_frames(count, dst_mac, src_mac):
        while True:   # a full queue (ENOBUFS) waits a little: every SYN goes, or time is up
            try:
                s.send(f)
                break
            except OSError as exc:
                if exc.errno not in (11, 105) or time.monotonic() > end:
                    s.close()
                    return sent
                time.sleep(0.0002)
        sent += 1
        if sent == mark:
            print("flooding", flush=True)
        if not sent % 4096 and time.monotonic() > end:
            break
    s.close()
    return sent


if __name__ == "__main__":
    iface, dmac, smac, count, secs = sys.argv[1:6]
    t0 = time.monotonic()
    n = send(iface, bytes.fromhex(dmac.replace(":", "")), bytes.fromhex(smac.replace(":", "")),
             int(count), float(secs), mark=min(int(count), 20_000))
    print(f"sent {n} {time.monotonic() - t0:.3f}", flush=True)
