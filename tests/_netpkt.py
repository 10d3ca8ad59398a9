"""Packet and capture-file builders: the one frame builder of the tests
(tcpconv.Conv builds its conversations with it).

Written with struct only (and an RFC 1071 checksum in Python), independent
of the code under test, so the tests compare two implementations.
"""
import ipaddress
import struct

# ---- checksums (RFC 1071) ----


def csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def a4(s):
    return ipaddress.IPv4Address(s).packed


def a6(s):
    return ipaddress.IPv6Address(s).packed


# ---- layer 4 ----


def tcp(sport=1234, dport=80, seq=1000, ack=0, flags=0x02, win=8192, opts=b"", payload=b"",
        doff=None, urp=0):
    """TCP header + payload with checksum 0 (fill with tcp_csum or via ip4/ip6)."""
    if len(opts) % 4:
        opts += b"\0" * (4 - len(opts) % 4)
    if doff is None:
        doff = (20 + len(opts)) // 4
    hdr = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, doff << 4, flags, win, 0, urp)
    return hdr + opts + payload


def udp(sport=53, dport=53, payload=b""):
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def l4_with_csum(l4: bytes, proto: int, src: bytes, dst: bytes, off=16) -> bytes:
    """Fill a TCP (off 16) or UDP (off 6) checksum with the pseudo-header of src/dst."""
    if len(src) == 4:
        ph = src + dst + struct.pack("!BBH", 0, proto, len(l4))
    else:
        ph = src + dst + struct.pack("!I3xB", len(l4), proto)
    l4 = l4[:off] + b"\0\0" + l4[off + 2:]
    c = csum(ph + l4)
    return l4[:off] + struct.pack("!H", c) + l4[off + 2:]


# ---- IPv4 (RFC 791) ----


def ip4(src="198.18.0.1", dst="198.18.0.2", proto=6, payload=b"", *, ttl=64, ident=1, flags=0,
        frag_off=0, options=b"", tot=None, fill_l4_csum=True, ihl=None, version=4):
    s, d = a4(src), a4(dst)
    if fill_l4_csum and proto == 6 and len(payload) >= 20 and not (flags & 1 or frag_off):
        payload = l4_with_csum(payload, 6, s, d)
    if len(options) % 4:
        options += b"\0" * (4 - len(options) % 4)
    hl = 20 + len(options)
    if ihl is None:
        ihl = hl // 4
    if tot is None:
        tot = hl + len(payload)
    fo = (flags << 13) | (frag_off // 8)
    hdr = struct.pack("!BBHHHBBH4s4s", (version << 4) | ihl, 0, tot, ident, fo, ttl, proto, 0, s, d)
    hdr += options
    c = csum(hdr)
    hdr = hdr[:10] + struct.pack("!H", c) + hdr[12:]
    return hdr + payload


# ---- IPv6 (RFC 8200) ----


def ext(nh, body: bytes, kind: int) -> bytes:
    """An extension header of type `kind` whose next header is nh; body is
    everything after the first two bytes (padded as needed)."""
    if kind == 44:
        assert len(body) == 6
        return bytes([nh, 0]) + body
    if kind == 51:  # AH: length in 4-octet units minus 2, total multiple of 8 for IPv6
        total = 2 + len(body)
        total += (-total) % 8
        body = body + b"\0" * (total - 2 - len(body))
        return bytes([nh, total // 4 - 2]) + body
    total = 2 + len(body)
    total += (-total) % 8
    body = body + b"\0" * (total - 2 - len(body))  # PadN would be nicer; zeros are Pad1s
    return bytes([nh, total // 8 - 1]) + body


def frag6(nh, off, more, ident):
    return ext(nh, struct.pack("!HI", off | int(more), ident), 44)


def routing(nh, addrs, segleft=None, rtype=0):
    if segleft is None:
        segleft = len(addrs)
    body = struct.pack("!BB4x", rtype, segleft) + b"".join(addrs)
    return bytes([nh, len(addrs) * 2]) + body


def ip6(src="2001:db8::1", dst="2001:db8::2", exts=(), proto=6, payload=b"", *, hlim=64,
        plen=None, fill_l4_csum=True, final_dst=None):
    """exts: list of (kind, builder(nh) -> bytes) applied innermost first."""
    s, d = a6(src), a6(dst)
    if fill_l4_csum and proto == 6 and len(payload) >= 20:
        payload = l4_with_csum(payload, 6, s, a6(final_dst) if final_dst else d)
    chain = b""
    nh = proto
    for kind, build in reversed(list(exts)):
        chain = build(nh) + chain
        nh = kind
    body = chain + payload
    if plen is None:
        plen = len(body)
    return struct.pack("!IHBB16s16s", 6 << 28, plen, nh, hlim, s, d) + body


# ---- link layers ----

MAC1 = bytes.fromhex("020000000001")
MAC2 = bytes.fromhex("020000000002")


def eth(payload, ethertype=0x0800, vlans=(), vlan_tpid=0x8100, *, dst=MAC1, src=MAC2):
    """vlans: list of (tpid, vid) outermost first, or plain vids using vlan_tpid."""
    b = dst + src
    for v in vlans:
        tpid, vid = v if isinstance(v, tuple) else (vlan_tpid, v)
        b += struct.pack("!H", tpid) + struct.pack("!H", vid)
    return b + struct.pack("!H", ethertype) + payload


def mpls(payload, labels, ethertype=0x8847):
    b = MAC1 + MAC2 + struct.pack("!H", ethertype)
    for i, lab in enumerate(labels):
        bos = 1 if i == len(labels) - 1 else 0
        b += struct.pack("!I", (lab << 12) | (bos << 8) | 64)
    return b + payload


def pppoe(payload, ppp_proto=0x0021):
    hdr = struct.pack("!BBHH", 0x11, 0, 0x1234, len(payload) + 2) + struct.pack("!H", ppp_proto)
    return MAC1 + MAC2 + struct.pack("!H", 0x8864) + hdr + payload


def sll(payload, proto=0x0800, hatype=1):
    return struct.pack("!HHH8sH", 0, hatype, 6, MAC1 + b"\0\0", proto) + payload


def sll2(payload, proto=0x0800, hatype=1):
    return struct.pack("!HHIHBB8s", proto, 0, 3, hatype, 0, 6, MAC1 + b"\0\0") + payload


def null(payload, af=2, order="<"):
    return struct.pack(order + "I", af) + payload


def loop(payload, af=2):
    return struct.pack("!I", af) + payload


# ---- capture files ----


def pcap(records, linktype=1, order="<", nsec=False, snaplen=65535, version=(2, 4)):
    """records: iterable of (ts_ns, data) or (ts_ns, data, wirelen)."""
    magic = 0xA1B23C4D if nsec else 0xA1B2C3D4
    out = [struct.pack(order + "IHHiIII", magic, version[0], version[1], 0, 0, snaplen, linktype)]
    for r in records:
        ts, data = r[0], r[1]
        wl = r[2] if len(r) > 2 else len(data)
        sec, frac = divmod(ts, 10**9)
        if not nsec:
            frac //= 1000
        out.append(struct.pack(order + "IIII", sec, frac, len(data), wl) + data)
    return b"".join(out)


def pad4(b):
    return b + b"\0" * ((-len(b)) % 4)


def block(order, btype, body):
    body = pad4(body)
    n = 12 + len(body)
    return struct.pack(order + "II", btype, n) + body + struct.pack(order + "I", n)


def options(order, opts):
    """opts: list of (code, value bytes); adds opt_endofopt."""
    if not opts:
        return b""
    b = b""
    for code, val in opts:
        b += struct.pack(order + "HH", code, len(val)) + pad4(val)
    return b + struct.pack(order + "HH", 0, 0)


def shb(order="<", opts=()):
    return block(order, 0x0A0D0D0A,
                 struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1) + options(order, list(opts)))


def idb(order="<", linktype=1, snaplen=0, tsresol=None, tsoffset=None):
    opts = []
    if tsresol is not None:
        opts.append((9, bytes([tsresol])))
    if tsoffset is not None:
        opts.append((14, struct.pack(order + "q", tsoffset)))
    return block(order, 1, struct.pack(order + "HHI", linktype, 0, snaplen) + options(order, opts))


def epb(order, ifid, ts_units, data, wirelen=None, opts=()):
    wl = len(data) if wirelen is None else wirelen
    body = struct.pack(order + "IIIII", ifid, ts_units >> 32, ts_units & 0xFFFFFFFF, len(data), wl)
    return block(order, 6, body + pad4(data) + options(order, list(opts)))


def spb(order, data, wirelen=None):
    wl = len(data) if wirelen is None else wirelen
    return block(order, 3, struct.pack(order + "I", wl) + data)


def pb(order, ifid, ts_units, data, wirelen=None):
    wl = len(data) if wirelen is None else wirelen
    body = struct.pack(order + "HHIIII", ifid, 0, ts_units >> 32, ts_units & 0xFFFFFFFF, len(data), wl)
    return block(order, 2, body + data)


def simple_tcp_frame(i=0, payload=b"data"):
    return eth(ip4(payload=tcp(seq=1000 + i, flags=0x18, payload=payload)))
