"""Write the seed corpora under fuzz/corpus/<harness>/ (committed; rerun after
changing an input format):

    .venv/bin/python fuzz/make_corpus.py

capture: the first frames of the shipped capture (mos/data/sample.pcap) as
pcap and pcapng, small conversations in every link type the decoder reads
(Ethernet with VLAN, raw IP, Linux SLL/SLL2, BSD loopback), IPv6,
fragments, a gap, snapped frames, nanosecond and big-endian files; the
other harnesses get small programs in their own input formats (see each
harness's header comment).  Everything is built here, deterministically,
with the tests' packet builders (tests/_netpkt.py, tests/tcpconv.py)."""

import os
import random
import struct
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

import _netpkt as N  # noqa: E402
import dpkt  # noqa: E402
from tcpconv import CLIENT6, SERVER6, Conv  # noqa: E402

OUT = REPO / "fuzz" / "corpus"


def put(harness, name, data: bytes):
    d = OUT / harness
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


# ---------------------------------------------------------------- capture


def recs(frames):
    return [(int(ts * 1e9), f) for ts, f in frames]


def pcapng(frames, linktype=1, order="<", tsresol=None):
    out = N.shb(order) + N.idb(order, linktype, 0, tsresol)
    unit = 10 ** (tsresol or 6)
    for ts, f in frames:
        out += N.epb(order, 0, int(ts * unit), f)
    return out


def conv_http(v6=False, wscale=False):
    c = Conv(client=(CLIENT6, 40000), server=(SERVER6, 80)) if v6 else Conv(wscale=wscale)
    c.handshake()
    c.send("c", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    c.ack("s")
    c.send("s", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
    c.ack("c")
    c.fin("c")
    c.fin("s")
    c.ack("c")
    return c.frames


def strip_eth(frames):
    return [(ts, f[14:]) for ts, f in frames]


def capture_seeds():
    # the shipped capture, first 40 frames, as pcap and pcapng
    with open(REPO / "mos" / "data" / "sample.pcap", "rb") as fh:
        rd = dpkt.pcap.Reader(fh)
        head = [(ts, bytes(buf)) for _, (ts, buf) in zip(range(40), rd)]
    put("capture", "sample-head.pcap", N.pcap(recs(head)))
    put("capture", "sample-head.pcapng", pcapng(head[:20]))
    http = conv_http()
    put("capture", "http.pcap", N.pcap(recs(http)))
    put("capture", "http-nsec-be.pcap", N.pcap(recs(http), order=">", nsec=True))
    put("capture", "http-v6.pcapng", pcapng(conv_http(v6=True), tsresol=9))
    put("capture", "http-raw.pcap", N.pcap(recs(strip_eth(http)), linktype=101))
    put("capture", "http-sll.pcap",
        N.pcap([(int(ts * 1e9), N.sll(f[14:])) for ts, f in http], linktype=113))
    put("capture", "http-sll2.pcapng",
        pcapng([(ts, N.sll2(f[14:])) for ts, f in http], linktype=276))
    put("capture", "http-null.pcap",
        N.pcap([(int(ts * 1e9), N.null(f[14:])) for ts, f in http], linktype=0))
    put("capture", "http-vlan.pcap",
        N.pcap([(int(ts * 1e9), N.eth(f[14:], 0x0800, vlans=(7,))) for ts, f in http]))
    # wscale, a hole that is never filled, a retransmission with other bytes
    c = Conv(wscale=True)
    c.handshake()
    c.send("c", b"A" * 100)
    c.send("c", b"B" * 100, seq=c.c.nxt + 50)
    c.send("c", b"C" * 20, seq=c.c.isn + 1)
    c.send("s", b"reply")
    c.rst("c")
    put("capture", "gap-overlap-rst.pcap", N.pcap(recs(c.frames)))
    # IP fragments of a data segment, out of order
    c = Conv()
    c.handshake()
    seg = N.tcp(40000, 80, c.c.nxt, c.c.rcv, 0x18, 65535, b"", b"F" * 64)
    seg = N.l4_with_csum(seg, 6, N.a4("198.18.0.1"), N.a4("198.18.0.2"))
    f1 = N.eth(N.ip4(payload=seg[:40], ident=9, flags=1, fill_l4_csum=False))
    f2 = N.eth(N.ip4(payload=seg[40:], ident=9, frag_off=40, fill_l4_csum=False))
    frames = c.frames + [(2.0, f2), (2.1, f1)]
    put("capture", "fragments.pcap", N.pcap(recs(frames)))
    # snapped frames (caplen < wirelen)
    put("capture", "snapped.pcap",
        N.pcap([(int(ts * 1e9), f[:60], len(f)) for ts, f in conv_http()], snaplen=60))
    # midstream only (no SYN), two flows interleaved, a timeout gap
    c1, c2 = Conv(), Conv(client=("198.18.0.3", 40001))
    c1.handshake()
    c2.handshake()
    frames = c1.frames[2:] + c2.frames
    c1.send("c", b"late" * 10)
    frames += [(ts + 100.0, f) for ts, f in c1.frames[-1:]]
    put("capture", "two-flows-timeout.pcap", N.pcap(recs(frames)))
    # pcapng in big-endian, with a second interface (tsoffset), simple and obsolete packet blocks
    ng = N.shb(">") + N.idb(">", 1, 0, 9) + N.idb(">", 101, 96, None, 1000)
    for i, (ts, f) in enumerate(http):
        ng += N.epb(">", i % 2, int(ts * 1e9), f if i % 2 == 0 else f[14:])
    ng += N.spb(">", http[0][1]) + N.pb(">", 0, 5, http[1][1])
    put("capture", "http-be-2if.pcapng", ng)
    # the last byte picks streams options (fuzz_capture.c): write-dir, overlap last, midstream
    put("capture", "http-options.pcap", N.pcap(recs(http)) + b"\x07")


# ---------------------------------------------------------------- engine


def engine_seeds():
    """Programs for fuzz_engine.c: header (4 bytes), 4 conversation bytes, ops."""
    SYN, SYNACK, ACK, DATA, REXMIT, AHEAD, FIN, RST, WIN, TIME, BURST, FRAG = (
        0, 2, 3, 5, 9, 11, 13, 14, 15, 18, 19, 22)

    def op(kind, conv=0, side=0):
        return bytes([kind | conv << 5 | side << 7])

    def hs(conv=0):
        return op(SYN, conv) + b"\x0f\x00\x05\x07" + op(SYNACK, conv) + b"\x0f\x00\x05\x07" + \
            op(ACK, conv) + b"\x00"

    def data(conv, side, n):
        return op(DATA, conv, side) + bytes([n - 1])

    close = op(FIN) + op(ACK, 0, 1) + b"\x00" + op(FIN, 0, 1) + op(ACK) + b"\x00"
    # interest none (b1 = 0x80): no handler bytes between ops
    quiet = bytes([0x1b, 0x80, 0x05, 0x00]) + bytes([0x00, 0x01, 0x02, 0x0c])
    put("engine", "quiet-http", quiet + hs() + data(0, 0, 40) + data(0, 1, 60) + close)
    put("engine", "quiet-ooo-gap", quiet + hs() + data(0, 0, 10) +
        op(AHEAD) + b"\x10\x00\x08" + data(0, 0, 10) + op(REXMIT) + b"\x05\x00\x03" + close)
    put("engine", "quiet-frag-v6", quiet + hs(1) + op(FRAG, 1) + b"\x00\x01\x2a" +
        op(FRAG, 1, 1) + b"\x80\x00\x99" + op(RST, 1) + b"\x01")
    put("engine", "quiet-flows-timeout", bytes([0x2d, 0x84, 0x00, 0x00, 0, 1, 2, 3]) + hs(0) +
        hs(1) + hs(2) + data(2, 0, 5) + op(TIME) + b"\x01\x01" + data(0, 0, 5) + close)
    # NEW_DATA only (b1 = 0xc0, b3 bit 3): one handler byte (1 = peek) after each data frame
    nd = bytes([0x1b, 0xc0, 0x05, 0x08]) + bytes([0x00, 0x01, 0x02, 0x0c])
    put("engine", "newdata-peek", nd + hs() + data(0, 0, 40) + b"\x01" + data(0, 1, 60) +
        b"\x01" + op(AHEAD) + b"\x10\x00\x08" + data(0, 0, 10) + b"\x05\x01\x40\x00\x05" + close)
    # every event, handler bytes appended generously; an edit (5) and a reset (7)
    allb = bytes([0x24, 0x13, 0x01, 0x00]) + bytes([0x00, 0x01, 0x02, 0x0c])
    put("engine", "all-events-edit", allb + hs() + b"\x01" * 12 + data(0, 0, 30) +
        b"\x05\x02\x03\x04" + b"\x01" * 6 + data(0, 1, 30) + b"\x07" + b"\x01" * 8)
    put("engine", "all-events-verify-digest", bytes([0x1b, 0x58, 0x03, 0x00, 0, 0, 0, 0]) + hs() +
        b"\x02" * 14 + data(0, 0, 100) + b"\x02" * 6 + close + b"\x02" * 30)


# ---------------------------------------------------------------- others


def small_seeds():
    rnd = random.Random(13)
    # endpoint: two endpoints then segments; a few states and roles
    for name, st0, st1 in (("est", 4, 4), ("synsent", 2, 1), ("finwait", 5, 9), ("host", 0, 1)):
        b = bytes([st0, 0x1a if name != "host" else 0x1b]) + struct.pack("<IH", 1000, 0) + \
            struct.pack("<IHB", 5001, 65535, 0) + bytes([st1, 0x1a]) + \
            struct.pack("<IH", 5000, 0) + struct.pack("<IHB", 1001, 65535, 0)
        ops = b""
        for k in range(12):
            ops += bytes([k % 2, 0x00, 0x10 | (0x01 if k == 11 else 0), 0, 0, 0, 10])
        put("endpoint", name, b + ops)
    put("endpoint", "options", b"\x04\x1a" + b"\x00" * 14 + b"\x06\x0c\x02\x04\x05\xb4\x04\x02"
        b"\x08\x0a\x00\x00\x00\x01\x00\x00\x00\x00" + b"\x00" * 8)
    # seqmap: base choice, edits, then frame checks
    for k in range(6):
        put("seqmap", f"seed{k}", bytes([k * 5]) + bytes(rnd.randrange(256) for _ in range(120)))
    put("seqmap", "insert-delete", bytes([0, 0, 0, 0, 0, 3, 0]) +
        struct.pack("<HB", 100, 0x04) + b"\x05" + struct.pack("<HBB", 300, 0x02, 4) +
        struct.pack("<HB", 500, 0x18) + b"\x00" + b"\x00\x05\x80" +
        struct.pack("<HHH", 90, 600, 10))
    # rbuf: config, then operations
    for k in range(6):
        put("rbuf", f"seed{k}", bytes([k * 37 % 256, k & 1]) +
            bytes(rnd.randrange(256) for _ in range(200)))
    put("rbuf", "inorder-ooo-gap", bytes([0x08, 0x01]) +
        b"\x00\x01\x00\x00\x10" + b"\x00\x01\x40\x00\x10" + b"\x06\x01\x80\x00" +
        b"\x04\x01\x00\x00\x00\x01" + b"\x07" + b"\x04\x03\x00\x00\x01")


SETTINGS = [
    """ports:
  - {name: west, driver: afpacket, iface: c1}
  - {name: east, driver: afpacket, iface: s1}
forward: [[west, east]]
""",
    """mode: inline
dpdk:
  eal_args: [--no-huge, -m, "1024", --no-pci, "--vdev=net_af_packet0,iface=c1"]
ports:
  - {name: west, driver: dpdk, port_id: 0}
  - {name: east, driver: dpdk, port_id: 1, burst: 64}
forward: [[west, east]]
workers: 2
""",
    """mode: passive
ports:
  - name: cap
    driver: pcap
    path: in.pcap
    options: {write: out.pcap}
monitor:
  buffer_size: 65536
  overlap: last
  midstream: true
  checksum: verify
  tcp_timeout: 10
  max_flows: 1000
app: middleboxes.midstat
""",
    """ports:
  - {name: a, driver: afpacket, iface: eth0, rx_ring_mb: 16}
monitor: {keep_read: true, digest: true, defrag_memory: 1048576, defrag_timeout: 5.5}
mode: passive
""",
]


def settings_seeds():
    for i, text in enumerate(SETTINGS):
        put("settings", f"text{i}", b"\x00" + text.encode())
        put("settings", f"file{i}", b"\x01" + text.encode())
    put("settings", "bad-key", b"\x00ports:\n  - {name: a, drivr: pcap}\n")
    put("settings", "anchors", b"\x00x: &a [1, 2]\ny: *a\nports: *a\n")


def main():
    capture_seeds()
    engine_seeds()
    small_seeds()
    settings_seeds()
    total = sum(f.stat().st_size for f in OUT.rglob("*") if f.is_file())
    print(f"fuzz/corpus: {sum(1 for f in OUT.rglob('*') if f.is_file())} files, {total} bytes")


if __name__ == "__main__":
    os.chdir(REPO)
    main()
