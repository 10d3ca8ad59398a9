#!/usr/bin/env python3
"""Fast, deterministic generator of benchmark captures for the mos monitor.

Writes a classic little-endian pcap (LINKTYPE_ETHERNET, microsecond
timestamps) of many interleaved TCP flows, IPv4 and (by default 10 %) IPv6,
with valid IP and TCP checksums, plus ``OUT.expected.json`` with the expected
byte count and sha256 of every stream direction.

Two modes:

* default: ``--packets N --concurrent K``.  A pool of K active flows; each
  step picks a random flow from the pool and emits its next packet; a flow
  that finishes is replaced by a new one until the packet budget is planned.
  Every flow: 3-way handshake (Linux-like options: MSS, SACK_PERM, timestamps,
  window scale), an HTTP-like request (client->server, 200-600 bytes), a
  response of ``--segments`` full-MSS segments (1448 bytes over IPv4, 1428
  over IPv6: MTU 1500 with timestamps; the last segment is shorter) with an
  ACK from the client after every second segment, then a FIN/ACK close from
  both sides (either side first; 3- or 4-packet close).
* ``--open-flows N``: N flows that each do the handshake, send one small data
  segment each way (the client ACKs the response) and are never closed: 6
  packets per flow, for measuring memory per concurrently tracked flow.
* ``--syn-flood N`` (with the default mode): N SYNs from N distinct spoofed
  client 4-tuples (198.18/16 to 198.19.2.0/24, a server range the normal flows
  never use), never answered, spread evenly among the normal flows' packets.
  The expected JSON lists only the normal flows (``meta.syn_flood`` = N).

Addresses come only from 198.18.0.0/15 (clients 198.18/16, servers 198.19/16)
and 2001:db8::/32.  Every 5-tuple is used once per capture.  Same arguments
and seed give a byte-identical file.

Speed: no per-packet objects; every packet is one ``struct.pack`` of the
Ethernet+IP+TCP headers whose checksums are computed arithmetically (the
16-bit one's-complement sum of a byte string equals its big-endian integer
value mod 0xffff), payloads are slices of one pseudo-random pool.

Usage:
  python3 bench/gen_capture.py OUT.pcap --packets 1000000 --concurrent 10000 [--seed 1]
  python3 bench/gen_capture.py OUT.pcap --open-flows 100000
  python3 bench/gen_capture.py OUT.pcap --packets 200000 --syn-flood 1000000
"""
from __future__ import annotations

import argparse
import hashlib
import ipaddress
import json
import random
import struct
import sys
import time

# Bumped whenever the output for the same arguments changes (bench caches use it).
GEN_VERSION = 1

TS_BASE = 1_700_000_000          # pcap time of the first packet (seconds)
TICK_US = 1                      # capture time between two packets (1 us ~ 12 Gbit/s of MTU frames)
POOL_SIZE = 8 << 20              # pseudo-random payload pool
MAC_C = bytes.fromhex("020000000001")   # locally administered MACs
MAC_S = bytes.fromhex("020000000002")

# TCP flags
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10

# Ethernet + IPv4 + TCP (timestamps only, doff 8)                  14+20+32 = 66
_V4 = struct.Struct(">6s6sH" "BBHHHBBH4s4s" "HHIIBBHHH" "BBBBII")
# Ethernet + IPv4 + TCP SYN options (MSS,SACK_PERM,TS,NOP,WS; doff 10)  14+20+40 = 74
_V4S = struct.Struct(">6s6sH" "BBHHHBBH4s4s" "HHIIBBHHH" "BBHBBBBII" "BBBB")
# Ethernet + IPv6 + TCP                                             14+40+32 = 86
_V6 = struct.Struct(">6s6sH" "IHBB16s16s" "HHIIBBHHH" "BBBBII")
_V6S = struct.Struct(">6s6sH" "IHBB16s16s" "HHIIBBHHH" "BBHBBBBII" "BBBB")
_REC = struct.Struct("<IIII")
_GLOBAL = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)

# constant words of the TCP options, for the checksum
_OPT_TS_WORDS = 0x0101 + 0x080A                     # NOP NOP kind=8 len=10
_OPT_SYN_WORDS = 0x0204 + 0x0402 + 0x080A + 0x0103 + 0x0307  # + mss + ts words


def _sum16(b: bytes) -> int:
    """One's-complement-compatible sum of 16-bit big-endian words, mod 0xffff."""
    if len(b) & 1:
        return (int.from_bytes(b, "big") << 8) % 0xFFFF
    return int.from_bytes(b, "big") % 0xFFFF


def _fold(s: int) -> int:
    """Checksum field value from a word sum."""
    s %= 0xFFFF
    return 0xFFFF - s if s else 0


def fmt_endpoint(ip: bytes, port: int) -> str:
    if len(ip) == 4:
        return f"{ipaddress.IPv4Address(ip)}:{port}"
    return f"[{ipaddress.IPv6Address(ip)}]:{port}"


class _Side:
    """Constant per-direction parts of a flow's headers."""
    __slots__ = ("eth_dst", "eth_src", "src", "dst", "sport", "dport",
                 "ip_base", "tcp_base", "ip_id", "win", "ts")

    def __init__(self, v6, src, dst, sport, dport, mac_src, mac_dst, ip_id, win, ts):
        self.eth_dst, self.eth_src = mac_dst, mac_src
        self.src, self.dst, self.sport, self.dport = src, dst, sport, dport
        addr = _sum16(src) + _sum16(dst)
        if v6:
            self.ip_base = 0
            self.tcp_base = addr + 6 + sport + dport          # + tcp_len
        else:
            # version/ihl/tos + flags(DF) + ttl/proto + addresses (+ tot_len + id)
            self.ip_base = 0x4500 + 0x4000 + (64 << 8 | 6) + addr
            self.tcp_base = addr + 6 + sport + dport
        self.ip_id = ip_id
        self.win = win
        self.ts = ts


class Writer:
    """Accumulates pcap records; a global 1 us clock stamps each packet."""

    def __init__(self, f):
        self.f = f
        self.buf: list = []
        self.n = 0
        self.now_us = 0
        f.write(_GLOBAL)

    def tsval(self, side: _Side) -> int:
        return (side.ts + self.now_us // 1000) & 0xFFFFFFFF

    def emit(self, frame: bytes, payload=b"") -> None:
        ln = len(frame) + len(payload)
        t = self.now_us
        self.buf.append(_REC.pack(TS_BASE + t // 1_000_000, t % 1_000_000, ln, ln))
        self.buf.append(frame)
        if payload:
            self.buf.append(payload)
        self.n += 1
        self.now_us += TICK_US
        if len(self.buf) >= 12288:
            self.flush()

    def flush(self) -> None:
        if self.buf:
            self.f.write(b"".join(self.buf))
            self.buf.clear()


def build(v6: bool, s: _Side, flags: int, seq: int, ack: int, tsval: int, tsecr: int,
          payload=b"", psum: int = 0, mss: int = 0) -> bytes:
    """Ethernet+IP+TCP header bytes for one packet (payload appended by caller)."""
    plen = len(payload)
    if mss:                       # SYN / SYN-ACK: 20 bytes of options
        doff = 10
        tcp_len = 40 + plen
        osum = _OPT_SYN_WORDS + mss
    else:
        doff = 8
        tcp_len = 32 + plen
        osum = _OPT_TS_WORDS
    offfl = doff << 12 | flags
    win = 64240 if flags & SYN else s.win
    csum = _fold(s.tcp_base + tcp_len + (seq >> 16) + (seq & 0xFFFF) + (ack >> 16)
                 + (ack & 0xFFFF) + offfl + win + osum + (tsval >> 16) + (tsval & 0xFFFF)
                 + (tsecr >> 16) + (tsecr & 0xFFFF) + psum)
    if v6:
        if mss:
            return _V6S.pack(s.eth_dst, s.eth_src, 0x86DD, 0x60000000, tcp_len, 6, 64,
                             s.src, s.dst, s.sport, s.dport, seq, ack, doff << 4, flags,
                             win, csum, 0, 2, 4, mss, 4, 2, 8, 10, tsval, tsecr, 1, 3, 3, 7)
        return _V6.pack(s.eth_dst, s.eth_src, 0x86DD, 0x60000000, tcp_len, 6, 64,
                        s.src, s.dst, s.sport, s.dport, seq, ack, doff << 4, flags,
                        win, csum, 0, 1, 1, 8, 10, tsval, tsecr)
    tot = 20 + tcp_len
    ipid = s.ip_id
    s.ip_id = (ipid + 1) & 0xFFFF
    icsum = _fold(s.ip_base + tot + ipid)
    if mss:
        return _V4S.pack(s.eth_dst, s.eth_src, 0x0800, 0x45, 0, tot, ipid, 0x4000, 64, 6,
                         icsum, s.src, s.dst, s.sport, s.dport, seq, ack, doff << 4, flags,
                         win, csum, 0, 2, 4, mss, 4, 2, 8, 10, tsval, tsecr, 1, 3, 3, 7)
    return _V4.pack(s.eth_dst, s.eth_src, 0x0800, 0x45, 0, tot, ipid, 0x4000, 64, 6,
                    icsum, s.src, s.dst, s.sport, s.dport, seq, ack, doff << 4, flags,
                    win, csum, 0, 1, 1, 8, 10, tsval, tsecr)


class Gen:
    def __init__(self, seed: int, v6_fraction: float):
        self.rng = random.Random(seed)
        self.pool = memoryview(self.rng.randbytes(POOL_SIZE))
        self.v6_fraction = v6_fraction
        self.used: set = set()
        self.n_servers = 254

    def new_tuple(self):
        rng = self.rng
        v6 = rng.random() < self.v6_fraction
        while True:
            if v6:
                cip = b"\x20\x01\x0d\xb8\x00\x0c" + rng.randbytes(10)
                host = rng.randrange(1, self.n_servers + 1)
                sip = b"\x20\x01\x0d\xb8\x00\x05" + bytes(8) + host.to_bytes(2, "big")
            else:
                cip = bytes((198, 18)) + rng.randrange(1, 65535).to_bytes(2, "big")
                sip = bytes((198, 19, 0, rng.randrange(1, self.n_servers + 1)))
            cport = rng.randrange(32768, 61000)
            sport = 8080 if rng.random() < 0.3 else 80
            key = (cip, cport, sip, sport)
            if key not in self.used:
                self.used.add(key)
                return v6, cip, cport, sip, sport

    def request(self, fid: int, small: bool) -> bytes:
        rng = self.rng
        head = (f"GET /obj/{fid}/{rng.getrandbits(32):08x} HTTP/1.1\r\n"
                f"Host: bench{fid % 97}.example\r\nUser-Agent: mos-bench/1.0\r\nAccept: */*\r\n")
        if small:
            return (head + "\r\n").encode()
        pad = rng.randrange(60, 420)
        return (head + "X-Pad: " + "p" * pad + "\r\n\r\n").encode()


def flow_packets(g: Gen, w: Writer, fid: int, nseg: int, open_only: bool, rec: dict):
    """Generator: emits one packet of the flow per next(); fills rec (expected)."""
    rng = g.rng
    v6, cip, cport, sip, sport = g.new_tuple()
    c = _Side(v6, cip, sip, cport, sport, MAC_C, MAC_S, rng.getrandbits(16), 502,
              rng.getrandbits(32))
    s = _Side(v6, sip, cip, sport, cport, MAC_S, MAC_C, rng.getrandbits(16), 509,
              rng.getrandbits(32))
    mss = 1440 if v6 else 1460
    seg = mss - 12
    cisn = rng.getrandbits(32)
    sisn = rng.getrandbits(32)
    req = g.request(fid, open_only)
    pool = g.pool
    if open_only:
        resp_hdr = b"HTTP/1.1 204 No Content\r\nServer: mos-bench\r\n"
        body_len = rng.randrange(16, 120)
        off = rng.randrange(0, POOL_SIZE - body_len)
        resp = resp_hdr + bytes(pool[off:off + body_len]) + b"\r\n"
        segs = [resp]
    else:
        total = (nseg - 1) * seg + rng.randrange(200, seg + 1)
        resp_hdr = (b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                    b"Content-Length: %d\r\n\r\n" % 0)
        body_len = total - len(resp_hdr)
        resp_hdr = resp_hdr.replace(b": 0\r\n\r\n", b": %d\r\n\r\n" % body_len)
        body_len = total - len(resp_hdr)
        off = rng.randrange(0, POOL_SIZE - body_len)
        segs = None
    # expected
    rec["client"] = fmt_endpoint(cip, cport)
    rec["server"] = fmt_endpoint(sip, sport)
    rec["family"] = 6 if v6 else 4
    rec["c2s_bytes"] = len(req)
    rec["c2s_sha256"] = hashlib.sha256(req).hexdigest()
    if open_only:
        rec["s2c_bytes"] = len(segs[0])
        rec["s2c_sha256"] = hashlib.sha256(segs[0]).hexdigest()
    else:
        h = hashlib.sha256(resp_hdr)
        h.update(pool[off:off + body_len])
        rec["s2c_bytes"] = len(resp_hdr) + body_len
        rec["s2c_sha256"] = h.hexdigest()
    closer = None if open_only else ("client" if rng.random() < 0.5 else "server")
    four_way = rng.random() < 0.5
    rec["closer"] = closer
    rec["packets"] = 6 if open_only else 4 + nseg + nseg // 2 + (4 if four_way else 3)
    if closer is None:
        rec["client_state"] = rec["server_state"] = "ESTABLISHED"
    elif closer == "client":
        rec["client_state"], rec["server_state"] = "TIME_WAIT", "CLOSED"
    else:
        rec["client_state"], rec["server_state"] = "CLOSED", "TIME_WAIT"
    yield  # created; the first next() after this emits the SYN

    build_ = build
    emit = w.emit
    M = 0xFFFFFFFF
    # handshake
    emit(build_(v6, c, SYN, cisn, 0, w.tsval(c), 0, mss=mss))
    yield
    ts_c = w.tsval(c)
    emit(build_(v6, s, SYN | ACK, sisn, (cisn + 1) & M, w.tsval(s), ts_c, mss=mss))
    yield
    ts_s = w.tsval(s)
    cseq = (cisn + 1) & M
    sseq = (sisn + 1) & M
    emit(build_(v6, c, ACK, cseq, sseq, w.tsval(c), ts_s))
    yield
    # request
    ts_c = w.tsval(c)
    emit(build_(v6, c, PSH | ACK, cseq, sseq, ts_c, ts_s, req, _sum16(req)), req)
    cseq = (cseq + len(req)) & M
    yield
    if open_only:
        r = segs[0]
        ts_s = w.tsval(s)
        emit(build_(v6, s, PSH | ACK, sseq, cseq, ts_s, ts_c, r, _sum16(r)), r)
        sseq = (sseq + len(r)) & M
        yield
        emit(build_(v6, c, ACK, cseq, sseq, w.tsval(c), ts_s))
        return
    # response: segment i carries stream bytes [i*seg, (i+1)*seg); the stream is
    # resp_hdr followed by pool[off:end]
    end = off + body_len
    pos = off + min(seg - len(resp_hdr), body_len)
    data = resp_hdr + bytes(pool[off:pos])
    i = 0
    while True:
        last = pos >= end
        ts_s = w.tsval(s)
        fl = PSH | ACK if last or (i & 1) else ACK
        emit(build_(v6, s, fl, sseq, cseq, ts_s, ts_c, data, _sum16(data)), data)
        sseq = (sseq + len(data)) & M
        i += 1
        yield
        if i % 2 == 0:
            ts_c = w.tsval(c)
            emit(build_(v6, c, ACK, cseq, sseq, ts_c, ts_s))
            yield
        if last:
            break
        nxt = min(pos + seg, end)
        data = pool[pos:nxt]
        pos = nxt
    # close
    if closer == "client":
        a, aseq, b, bseq = c, cseq, s, sseq
    else:
        a, aseq, b, bseq = s, sseq, c, cseq
    ts_a = w.tsval(a)
    emit(build_(v6, a, FIN | ACK, aseq, bseq, ts_a, w.tsval(b)))
    aseq = (aseq + 1) & M
    yield
    if four_way:
        emit(build_(v6, b, ACK, bseq, aseq, w.tsval(b), ts_a))
        yield
    ts_b = w.tsval(b)
    emit(build_(v6, b, FIN | ACK, bseq, aseq, ts_b, ts_a))
    bseq = (bseq + 1) & M
    yield
    emit(build_(v6, a, ACK, aseq, bseq, w.tsval(a), ts_b))


def syn_flood_frame(w: Writer, i: int, isn: int) -> bytes:
    """The i-th flood SYN: client 198.18.hi.lo (k = i mod 65534 + 1), port
    1024 + i // 65534, to 198.19.2.(i mod 250 + 1):80; unique for i < 2^32."""
    k = i % 65534 + 1
    cip = bytes((198, 18, k >> 8, k & 0xFF))
    sip = bytes((198, 19, 2, i % 250 + 1))
    c = _Side(False, cip, sip, 1024 + i // 65534, 80, MAC_C, MAC_S, i & 0xFFFF, 502, isn)
    return build(False, c, SYN, isn, 0, w.tsval(c), 0, mss=1460)


def parse_segments(spec: str) -> tuple[int, int]:
    if "-" in spec:
        a, b = spec.split("-", 1)
        lo, hi = int(a), int(b)
    else:
        lo = hi = int(spec)
    if lo < 1 or hi < lo:
        raise ValueError(f"bad --segments {spec!r}")
    return lo, hi


def generate(out: str, packets: int = 1_000_000, concurrent: int = 10_000, seed: int = 1,
             segments: str = "10-30", open_flows: int = 0, v6_fraction: float = 0.1,
             expected: str | None = None, quiet: bool = False, syn_flood: int = 0) -> dict:
    """Write the capture and its expected JSON; return the JSON's meta dict."""
    t0 = time.perf_counter()
    g = Gen(seed, v6_fraction)
    rng = g.rng
    lo, hi = parse_segments(segments)
    flows: list[dict] = []
    open_only = open_flows > 0
    if syn_flood and open_only:
        raise ValueError("--syn-flood goes with the default (closed flows) mode")
    with open(out, "wb") as f:
        w = Writer(f)
        pool: list = []
        planned = 0
        fid = 0
        max_concurrent = 0

        def start():
            nonlocal planned, fid
            nseg = rng.randint(lo, hi)
            rec: dict = {}
            gen = flow_packets(g, w, fid, nseg, open_only, rec)
            next(gen)
            flows.append(rec)
            planned += rec["packets"]
            fid += 1
            return gen

        def more() -> bool:
            return fid < open_flows if open_only else planned < packets

        k = open_flows if open_only else concurrent
        while len(pool) < k and more():
            pool.append(start())
        max_concurrent = len(pool)
        rnd = rng.random
        flood_sent = 0
        acc = 0  # Bresenham: syn_flood SYNs spread over `packets` normal steps
        getbits = rng.getrandbits
        while pool:
            j = int(rnd() * len(pool))
            try:
                next(pool[j])
            except StopIteration:
                if more():
                    pool[j] = start()
                else:
                    pool[j] = pool[-1]
                    pool.pop()
            if syn_flood:
                acc += syn_flood
                while acc >= packets and flood_sent < syn_flood:
                    w.emit(syn_flood_frame(w, flood_sent, getbits(32)))
                    flood_sent += 1
                    acc -= packets
        while flood_sent < syn_flood:
            w.emit(syn_flood_frame(w, flood_sent, getbits(32)))
            flood_sent += 1
        w.flush()
        n_packets = w.n
        capture_us = w.now_us
    meta = {
        "generator_version": GEN_VERSION,
        "mode": "open" if open_only else "closed",
        "seed": seed,
        "packets": n_packets,
        "flows": len(flows),
        "directions": 2 * len(flows),
        "ipv6_flows": sum(1 for r in flows if r["family"] == 6),
        "max_concurrent": max_concurrent,
        "segments": segments,
        "payload_bytes": sum(r["c2s_bytes"] + r["s2c_bytes"] for r in flows),
        "capture_seconds": capture_us / 1e6,
        "file_bytes": 0,
    }
    if syn_flood:
        meta["syn_flood"] = syn_flood
    import os
    meta["file_bytes"] = os.path.getsize(out)
    exp_path = expected or out + ".expected.json"
    with open(exp_path, "w") as f:
        f.write(json.dumps({"meta": meta, "flows": flows}, separators=(",", ":")) + "\n")
    if not quiet:
        dt = time.perf_counter() - t0
        print(f"wrote {out}: {n_packets} packets, {len(flows)} flows "
              f"({meta['ipv6_flows']} IPv6), {meta['payload_bytes']} payload bytes, "
              f"{meta['file_bytes']} file bytes in {dt:.1f} s; expected -> {exp_path}",
              file=sys.stderr)
    return meta


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", help="output pcap path (expected JSON goes to OUT.expected.json)")
    ap.add_argument("--packets", type=int, default=1_000_000,
                    help="packet budget (flows are started until this many packets are planned)")
    ap.add_argument("--concurrent", type=int, default=10_000, help="active flows in the pool")
    ap.add_argument("--segments", default="10-30",
                    help="response segments per flow, N or MIN-MAX (default 10-30)")
    ap.add_argument("--open-flows", type=int, default=0,
                    help="instead: N flows that never close "
                         "(handshake + one data segment each way)")
    ap.add_argument("--syn-flood", type=int, default=0, metavar="N",
                    help="also N never-answered SYNs from distinct spoofed 4-tuples, spread "
                         "among the normal packets (not in the expected JSON)")
    ap.add_argument("--ipv6", type=float, default=0.1, help="fraction of IPv6 flows (default 0.1)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--expected", help="path of the expected JSON (default OUT.expected.json)")
    ap.add_argument("-q", "--quiet", action="store_true")
    a = ap.parse_args(argv)
    generate(a.out, packets=a.packets, concurrent=a.concurrent, seed=a.seed, segments=a.segments,
             open_flows=a.open_flows, v6_fraction=a.ipv6, expected=a.expected, quiet=a.quiet,
             syn_flood=a.syn_flood)
    return 0


if __name__ == "__main__":
    sys.exit(main())
