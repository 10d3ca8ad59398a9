"""Capture reading: pcap, pcapng, corrupt files (native/capture.c via mos._native)."""
import os
import shutil
import struct
import subprocess
import threading
from pathlib import Path

import pytest

from mos._native import Capture
from mos.errors import CaptureError

try:
    import _netpkt as N
except ImportError:  # tests/ imported as a package
    from tests import _netpkt as N

CORPUS = Path("/work/shared/corpus")
CORPUS_FILES = sorted(p for p in CORPUS.rglob("*") if p.suffix in (".pcap", ".pcapng", ".trace"))


def frames_of(buf, name="<memory>"):
    return list(Capture.from_bytes(buf, name))


def write(tmp_path, name, data):
    p = tmp_path / name
    p.write_bytes(data)
    return p


# ---- pcap ----

RECS = [
    (1_600_000_000_123_456_000, N.simple_tcp_frame(0)),
    (1_600_000_001_000_001_000, N.simple_tcp_frame(1, b"x" * 100)),
    (1_600_000_002_999_999_000, N.simple_tcp_frame(2, b"")),
]


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("nsec", [False, True])
def test_pcap_byte_orders_and_resolution(tmp_path, order, nsec):
    recs = list(RECS)
    if nsec:
        recs.append((1_600_000_003_000_000_007, N.simple_tcp_frame(3)))
    p = write(tmp_path, "a.pcap", N.pcap(recs, linktype=1, order=order, nsec=nsec))
    with Capture(p) as c:
        assert c.linktype == 1
        assert c.size == p.stat().st_size
        assert c.offset == 24
        got = list(c)
        assert c.offset == c.size
        assert c.stats == {"frames": len(recs), "snapped": 0, "blocks_skipped": 0}
    assert got == [(ts, 1, data, len(data)) for ts, data in recs]


def test_pcap_matches_path_and_memory(tmp_path):
    buf = N.pcap(RECS)
    p = write(tmp_path, "m.pcap", buf)
    assert list(Capture(p)) == frames_of(buf)


def test_big_mapped_file_read_whole_closed_early_and_after_fork(tmp_path):
    """A mapped file of 40 MB or more gets a helper thread that fills its
    page tables ahead of the reader: the frames are the same as from memory,
    closing mid-file stops the thread, and a forked child (which has no
    such thread) can close its copy."""
    recs = [(1_600_000_000_000_000_000 + i * 1000, N.simple_tcp_frame(i, b"%08d" % i * 180))
            for i in range(30_000)]
    buf = N.pcap(recs)
    assert len(buf) > 40 << 20
    p = write(tmp_path, "big.pcap", buf)
    whole = list(Capture(p))
    assert len(whole) == len(recs) and whole == frames_of(buf)
    c = Capture(p)
    it = iter(c)
    first = [next(it) for _ in range(10)]
    assert first == whole[:10]
    pid = os.fork()
    if pid == 0:  # the child closes its copy and reads nothing more
        try:
            c.close()
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert next(it) == whole[10]  # the parent's reader goes on
    c.close()  # joins the filler in the parent


def test_empty_and_header_only(tmp_path):
    assert list(Capture(write(tmp_path, "empty.pcap", b""))) == []
    assert frames_of(b"") == []
    c = Capture(write(tmp_path, "hdr.pcap", N.pcap([], linktype=101)))
    assert c.linktype == 101
    assert list(c) == []
    assert frames_of(N.shb("<")) == []
    assert frames_of(N.shb(">") + N.idb(">", 1)) == []


def test_snapped_and_wirelen_clamp():
    data = N.simple_tcp_frame(0)
    buf = N.pcap([(0, data[:40], len(data)), (1000, data, 10)])
    c = Capture.from_bytes(buf)
    got = list(c)
    assert got[0] == (0, 1, data[:40], len(data))
    assert got[1] == (1000, 1, data, len(data))  # wirelen < caplen: raised to caplen
    assert c.stats["snapped"] == 1


def test_fcs_bits_in_linktype_field():
    buf = bytearray(N.pcap(RECS[:1], linktype=1))
    buf[20:24] = struct.pack("<I", 0x14000001)  # FCS length 4 flagged in the upper bits
    assert frames_of(bytes(buf))[0][1] == 1


def test_pipe_fallback(tmp_path):
    """A FIFO cannot be mapped: the reader falls back to reading into memory."""
    buf = N.pcap(RECS)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)

    def writer():
        with open(fifo, "wb") as f:
            f.write(buf)

    t = threading.Thread(target=writer)
    t.start()
    got = list(Capture(fifo))
    t.join()
    assert got == frames_of(buf)


def test_open_errors(tmp_path):
    with pytest.raises(CaptureError, match="nope.pcap"):
        Capture(tmp_path / "nope.pcap")
    with pytest.raises(CaptureError, match="directory"):
        Capture(tmp_path)


def test_close_and_context():
    c = Capture.from_bytes(N.pcap(RECS))
    next(iter(c))
    c.close()
    assert list(c) == []
    with pytest.raises(ValueError):
        c.offset
    c.close()  # twice is fine


# ---- pcapng ----


def make_pcapng():
    """Section 1 little-endian: two interfaces (Ethernet/us, raw/ns), EPBs on
    both, skipped NRB/ISB/custom blocks.  Section 2 big-endian: interface ids
    restart; 2^-20 s resolution, an SPB cut by the snap length, an obsolete PB."""
    f1, f2, f3, f4, f5 = (N.simple_tcp_frame(i, b"p%d" % i * 10) for i in range(5))
    assert len(f2) > 60 and len(f3) > 60
    raw = N.ip4(payload=N.tcp(payload=b"raw"))
    le, be = "<", ">"
    buf = N.shb(le, opts=[(4, b"mos test")])
    buf += N.idb(le, 1, 65535)                           # if 0: default tsresol 10^-6
    buf += N.idb(le, 101, 0, tsresol=9, tsoffset=10)     # if 1: ns, +10 s
    buf += N.block(le, 4, struct.pack("<HH", 0, 0))      # NRB (skipped)
    buf += N.epb(le, 0, 1_700_000_000_000_001, f1, opts=[(1, b"comment")])
    buf += N.epb(le, 1, 1_700_000_000_000_000_002, raw, wirelen=len(raw) + 100)
    buf += N.block(le, 5, struct.pack("<III", 0, 0, 0))  # ISB (skipped)
    buf += N.block(le, 0x40000BAD, b"custom!")            # custom (skipped)
    buf += N.shb(be)
    buf += N.idb(be, 1, 60, tsresol=0x80 | 20)          # 2^-20 s units, snaplen 60
    buf += N.epb(be, 0, (5 << 20) | (1 << 19), f2[:60], wirelen=len(f2))
    buf += N.spb(be, f3[:60], wirelen=len(f3))
    buf += N.pb(be, 0, 3 << 20, f4)
    buf += N.idb(be, 113, 0, tsresol=3)                 # if 1 of section 2: ms
    buf += N.epb(be, 1, 42, N.sll(f5[14:]))
    expect = [
        (1_700_000_000_000_001_000, 1, f1, len(f1), 0),
        (1_700_000_010_000_000_002, 101, raw, len(raw) + 100, 1),
        (5_500_000_000, 1, f2[:60], len(f2), 0),
        (5_500_000_000, 1, f3[:60], len(f3), 0),      # SPB: no timestamp, keeps the last one
        (3_000_000_000, 1, f4, len(f4), 0),
        (42_000_000, 113, N.sll(f5[14:]), len(N.sll(f5[14:])), 1),
    ]
    return buf, expect


def test_pcapng_sections_interfaces_blocks(tmp_path):
    buf, expect = make_pcapng()
    p = write(tmp_path, "x.pcapng", buf)
    c = Capture(p)
    assert c.linktype == 1
    assert list(c.frames()) == expect
    assert c.stats == {"frames": 6, "snapped": 3, "blocks_skipped": 3}
    assert [f[:4] for f in Capture(p)] == [e[:4] for e in expect]


@pytest.mark.skipif(not shutil.which("tshark"), reason="tshark not installed")
def test_pcapng_generator_agrees_with_tshark(tmp_path):
    buf, expect = make_pcapng()
    p = write(tmp_path, "x.pcapng", buf)
    out = subprocess.run(["tshark", "-r", str(p), "-T", "fields", "-e", "frame.interface_id",
                          "-e", "frame.time_epoch", "-e", "frame.len", "-e", "frame.cap_len"],
                         capture_output=True, text=True, check=True).stdout
    rows = [line.split("\t") for line in out.splitlines()]
    rows = [r for r in rows if r[0]]  # tshark also lists the custom block as a "frame"
    assert len(rows) == len(expect)
    for (iface, t, wl, cl), (ts, _lt, data, wirelen, ifc) in zip(rows, expect):
        assert (int(iface), int(wl), int(cl)) == (ifc, wirelen, len(data))
        if t:  # tshark gives SPBs no time; we keep the previous frame's
            sec, frac = t.split(".")
            assert int(sec) * 10**9 + int(frac.ljust(9, "0")) == ts


@pytest.mark.parametrize("resol,units,ns", [
    (0, 7, 7_000_000_000),
    (6, 7, 7_000),
    (9, 7, 7),
    (12, 7_000_123, 7_000),             # picoseconds
    (0x80 | 0, 3, 3_000_000_000),       # 2^0
    (0x80 | 10, 1024 * 5 + 512, 5_500_000_000),
    (0x80 | 30, 1 << 30, 1_000_000_000),
])
def test_pcapng_tsresol(resol, units, ns):
    buf = N.shb("<") + N.idb("<", 1, tsresol=resol) + N.epb("<", 0, units, b"\0" * 20)
    assert frames_of(buf)[0][0] == ns


def test_pcapng_first_linktype_after_skipped_blocks():
    buf = N.shb("<") + N.block("<", 4, b"") + N.idb("<", 229)
    c = Capture.from_bytes(buf)
    assert c.linktype == 229
    assert Capture.from_bytes(N.shb("<")).linktype is None


# ---- corpus ----


def tshark_count(path):
    out = subprocess.run(["tshark", "-r", str(path), "-T", "fields", "-e", "frame.number"],
                         capture_output=True, text=True, check=True).stdout
    return len(out.splitlines())


def test_corpus_present():
    assert len(CORPUS_FILES) >= 20


@pytest.mark.skipif(not shutil.which("tshark"), reason="tshark not installed: no frame-count oracle")
@pytest.mark.parametrize("path", CORPUS_FILES, ids=[str(p.relative_to(CORPUS)) for p in CORPUS_FILES])
def test_corpus_frame_count_matches_tshark(path):
    c = Capture(path)
    n = sum(1 for _ in c)
    assert n == tshark_count(path)
    assert c.offset == c.size


# ---- corruption: error names file and offset, good frames come first ----


def assert_corrupt(buf, n_good, offset, reason, tmp_path):
    p = write(tmp_path, "bad.cap", buf)
    got = []
    with pytest.raises(CaptureError) as ei:
        for f in Capture(p):
            got.append(f)
    msg = str(ei.value)
    assert msg.startswith(f"{p}: offset {offset}: "), msg
    assert reason in msg, msg
    assert len(got) == n_good
    # the same from memory, and the error repeats
    c = Capture.from_bytes(buf, "mem")
    it = iter(c)
    assert [next(it) for _ in range(n_good)] == got
    for _ in range(2):
        with pytest.raises(CaptureError, match=f"^mem: offset {offset}: "):
            next(it)


def test_wrong_magic(tmp_path):
    p = write(tmp_path, "junk.bin", b"GIF89a" + b"\0" * 40)
    with pytest.raises(CaptureError, match=r"junk\.bin: not a pcap or pcapng file \(magic 0x"):
        Capture(p)
    with pytest.raises(CaptureError, match="too short"):
        Capture.from_bytes(b"\xd4\xc3")


def test_truncated_global_header(tmp_path):
    p = write(tmp_path, "short.pcap", N.pcap([])[:10])
    with pytest.raises(CaptureError, match=r"short\.pcap: offset 0: pcap global header cut short"):
        Capture(p)


def test_record_cut_short(tmp_path):
    good = N.pcap(RECS[:2])
    rec = N.pcap(RECS[2:])[24:]
    assert_corrupt(good + rec[:-3], 2, len(good), "record cut short", tmp_path)
    assert_corrupt(good + rec[:7], 2, len(good), "record header cut short", tmp_path)


@pytest.mark.parametrize("order", ["<", ">"])
def test_absurd_caplen(tmp_path, order):
    good = N.pcap(RECS[:2], order=order)
    bad = struct.pack(order + "IIII", 0, 0, 300 << 20, 300 << 20) + b"\0" * 100
    assert_corrupt(good + bad, 2, len(good), "over 256 MiB", tmp_path)
    bad = struct.pack(order + "IIII", 0, 0, 0xFFFFFFFF, 0) + b"\0" * 100
    assert_corrupt(good + bad, 2, len(good), "over 256 MiB", tmp_path)


def ng_good():
    return N.shb("<") + N.idb("<", 1) + N.epb("<", 0, 1, N.simple_tcp_frame(0)) + N.epb("<", 0, 2, N.simple_tcp_frame(1))


def test_pcapng_block_length_below_12(tmp_path):
    g = ng_good()
    assert_corrupt(g + struct.pack("<III", 6, 8, 8), 2, len(g), "block length 8 < 12", tmp_path)


def test_pcapng_block_length_not_multiple_of_4(tmp_path):
    g = ng_good()
    assert_corrupt(g + struct.pack("<II", 6, 37) + b"\0" * 40, 2, len(g), "not a multiple of 4", tmp_path)


def test_pcapng_trailer_mismatch(tmp_path):
    g = ng_good()
    blk = bytearray(N.epb("<", 0, 3, N.simple_tcp_frame(2)))
    blk[-4:] = struct.pack("<I", len(blk) + 4)
    assert_corrupt(g + bytes(blk), 2, len(g), "trailing length", tmp_path)


def test_pcapng_block_beyond_eof(tmp_path):
    g = ng_good()
    blk = N.epb("<", 0, 3, N.simple_tcp_frame(2))
    assert_corrupt(g + blk[:-8], 2, len(g), "beyond end of file", tmp_path)
    assert_corrupt(g + blk[:6], 2, len(g), "cut short", tmp_path)


def test_pcapng_caplen_beyond_block(tmp_path):
    g = ng_good()
    blk = bytearray(N.epb("<", 0, 3, N.simple_tcp_frame(2)))
    blk[20:24] = struct.pack("<I", len(blk))
    assert_corrupt(g + bytes(blk), 2, len(g), "beyond block end", tmp_path)


def test_pcapng_unknown_interface(tmp_path):
    g = ng_good()
    assert_corrupt(g + N.epb("<", 5, 3, b"x" * 20), 2, len(g), "unknown interface id 5", tmp_path)
    # interface ids are per section
    g2 = g + N.shb("<")
    assert_corrupt(g2 + N.epb("<", 0, 3, b"x" * 20), 2, len(g2), "unknown interface id 0", tmp_path)
    assert_corrupt(g2 + N.spb("<", b"x" * 20), 2, len(g2), "before any interface", tmp_path)


def test_pcapng_bad_section_header(tmp_path):
    g = ng_good()
    shb = bytearray(N.shb("<"))
    shb[8:12] = b"\x01\x02\x03\x04"
    assert_corrupt(g + bytes(shb), 2, len(g), "byte-order magic", tmp_path)
    shb = bytearray(N.shb("<"))
    shb[12:14] = struct.pack("<H", 2)
    assert_corrupt(g + bytes(shb), 2, len(g), "unsupported pcapng version 2", tmp_path)
    with pytest.raises(CaptureError, match="offset 0: section header block length"):
        Capture.from_bytes(struct.pack("<III", 0x0A0D0D0A, 16, 0x1A2B3C4D) + b"\0" * 4)


def test_pcapng_short_packet_blocks(tmp_path):
    g = ng_good()
    assert_corrupt(g + N.block("<", 6, b"\0" * 8), 2, len(g), "packet block length 20 < 32", tmp_path)
    assert_corrupt(g + N.block("<", 1, b""), 2, len(g), "interface description block too short", tmp_path)
