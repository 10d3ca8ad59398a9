# cython: language_level=3
"""Python face of the native layer: capture reading, decoding, defrag, SHA-256.

For tests and tools; the engine uses the C functions directly through
mos/_cnative.pxd.  Nothing here is on the per-packet hot path.
"""
import ipaddress
import os

from cpython.bytes cimport PyBytes_AsString, PyBytes_FromStringAndSize
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memset
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec

from mos._cnative cimport *
from mos.errors import CaptureError

LT_NULL = MOS_LT_NULL
LT_ETHERNET = MOS_LT_ETHERNET
LT_RAW = MOS_LT_RAW
LT_LOOP = MOS_LT_LOOP
LT_SLL = MOS_LT_SLL
LT_IPV4 = MOS_LT_IPV4
LT_IPV6 = MOS_LT_IPV6
LT_SLL2 = MOS_LT_SLL2

RESULT_NAMES = {
    MOS_DEC_TCP: "tcp",
    MOS_DEC_OTHER: "other",
    MOS_DEC_FRAGMENT: "fragment",
    MOS_DEC_TRUNCATED: "truncated",
    MOS_DEC_MALFORMED: "malformed",
    MOS_DEC_UNSUPPORTED: "unsupported",
}

cdef enum:
    ERRLEN = 1024


cdef class Capture:
    """A pcap or pcapng file.  Iterating yields (ts_ns, linktype, data, wirelen).

    A corrupt file raises CaptureError (message "PATH: offset N: reason")
    after the frames before the corruption were yielded."""

    cdef mos_capture_t *c
    cdef object keep          # the bytes object behind from_bytes()
    cdef readonly str name

    def __cinit__(self):
        self.c = NULL
        self.keep = None

    def __init__(self, path):
        cdef char err[ERRLEN]
        bpath = os.fsencode(path)
        self.name = os.fsdecode(bpath)
        cdef const char *cpath = bpath
        cdef mos_capture_t *c
        err[0] = 0
        with nogil:  # opening a FIFO blocks until its writer (maybe another thread) opens it
            c = mos_capture_open(cpath, err, ERRLEN)
        self.c = c
        if self.c == NULL:
            raise CaptureError(err.decode("utf-8", "replace"))

    @classmethod
    def from_bytes(cls, buf, name="<memory>"):
        cdef char err[ERRLEN]
        cdef Capture self = Capture.__new__(Capture)
        data = bytes(buf)
        self.keep = data
        self.name = str(name)
        bname = self.name.encode("utf-8", "replace")
        err[0] = 0
        self.c = mos_capture_open_mem(<const uint8_t *>PyBytes_AsString(data), len(data), bname,
                                      err, ERRLEN)
        if self.c == NULL:
            raise CaptureError(err.decode("utf-8", "replace"))
        return self

    def __dealloc__(self):
        if self.c != NULL:
            mos_capture_close(self.c)
            self.c = NULL

    def close(self):
        if self.c != NULL:
            mos_capture_close(self.c)
            self.c = NULL
        self.keep = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __iter__(self):
        return self

    def __next__(self):
        cdef mos_frame_t f
        cdef char err[ERRLEN]
        if self.c == NULL:
            raise StopIteration
        err[0] = 0
        # one frame per call keeps .offset exact; the cost is irrelevant here
        r = mos_capture_next(self.c, &f, 1, err, ERRLEN)
        if r < 0:
            raise CaptureError(err.decode("utf-8", "replace"))
        if r == 0:
            raise StopIteration
        return (f.ts_ns, f.linktype, PyBytes_FromStringAndSize(<const char *>f.data, f.caplen),
                f.wirelen)

    def frames(self):
        """Like iteration, but each item also carries the pcapng interface id:
        (ts_ns, linktype, data, wirelen, iface)."""
        cdef mos_frame_t f
        cdef char err[ERRLEN]
        while self.c != NULL:
            err[0] = 0
            r = mos_capture_next(self.c, &f, 1, err, ERRLEN)
            if r < 0:
                raise CaptureError(err.decode("utf-8", "replace"))
            if r == 0:
                return
            yield (f.ts_ns, f.linktype, PyBytes_FromStringAndSize(<const char *>f.data, f.caplen),
                   f.wirelen, f.iface)

    cdef _check(self):
        if self.c == NULL:
            raise ValueError("capture is closed")

    @property
    def offset(self):
        self._check()
        return mos_capture_offset(self.c)

    @property
    def size(self):
        self._check()
        return mos_capture_size(self.c)

    @property
    def linktype(self):
        """Link type of the first interface (None when the file has none)."""
        self._check()
        lt = mos_capture_linktype(self.c)
        return None if lt < 0 else lt

    @property
    def stats(self):
        self._check()
        cdef const mos_capture_stats_t *s = mos_capture_stats(self.c)
        return {"frames": s.frames, "snapped": s.snapped, "blocks_skipped": s.blocks_skipped}


cdef str _addr(const uint8_t *a, int n):
    return str(ipaddress.ip_address(PyBytes_FromStringAndSize(<const char *>a, n)))


cdef object _verdict(int v):
    return None if v < 0 else bool(v)


cdef dict _pkt_dict(int r, mos_pkt_t *p):
    cdef int i
    d = {
        "result": RESULT_NAMES.get(r, str(r)),
        "code": r,
        "l2len": p.l2len,
        "ethertype": p.ethertype,
        "vlan_depth": p.vlan_depth,
        "mpls_depth": p.mpls_depth,
        "ipver": p.ipver,
    }
    if p.ipver:
        d.update(
            proto=p.proto, ttl=p.ttl,
            src=_addr(p.src, p.addrlen), dst=_addr(p.dst, p.addrlen),
            l3len=p.l3len, l3hlen=p.l3hlen,
            ip_csum_ok=_verdict(mos_ipv4_csum_ok(p)),
            hash=mos_flow_hash(p),
        )
    if r == MOS_DEC_FRAGMENT:
        d.update(
            frag_more=bool(p.frag_more), frag_id=p.frag_id, frag_off=p.frag_off,
            frag_len=p.frag_len,
            frag_data=PyBytes_FromStringAndSize(<const char *>p.frag_data, p.frag_len),
        )
    if p.l4 != NULL:
        d.update(l4len=p.l4len, sport=p.sport, dport=p.dport)
    if p.payload != NULL:
        d.update(
            payload=PyBytes_FromStringAndSize(<const char *>p.payload, p.paylen),
            paylen=p.paylen, seglen=p.seglen,
        )
    if r == MOS_DEC_TCP:
        opts = {}
        if p.opts & MOS_OPT_MSS:
            opts["mss"] = p.mss
        if p.opts & MOS_OPT_WSCALE:
            opts["wscale"] = p.wscale
        if p.opts & MOS_OPT_SACKOK:
            opts["sackok"] = True
        if p.opts & MOS_OPT_TS:
            opts["ts"] = (p.tsval, p.tsecr)
        if p.opts & MOS_OPT_SACK:
            opts["sack"] = [(p.sack[2 * i], p.sack[2 * i + 1]) for i in range(p.nsack)]
        if p.opts & MOS_OPT_BAD:
            opts["bad"] = True
        d.update(
            seq=p.seq, ack=p.ack, win=p.win, flags=p.flags, thlen=p.thlen,
            opts=p.opts, options=opts, mss=p.mss, wscale=p.wscale,
            tsval=p.tsval, tsecr=p.tsecr,
            sack=[(p.sack[2 * i], p.sack[2 * i + 1]) for i in range(p.nsack)],
            tcp_csum_ok=_verdict(mos_tcp_csum_ok(p)),
        )
    return d


def decode(int linktype, data):
    """Decode one frame; returns a dict whose "result" is one of
    tcp / other / fragment / truncated / malformed / unsupported."""
    cdef mos_pkt_t p
    cdef bytes b = bytes(data)
    r = mos_decode(<uint16_t>linktype, <const uint8_t *>PyBytes_AsString(b), len(b), &p)
    return _pkt_dict(r, &p)


def decode_ip(data):
    """Decode starting at an IPv4 or IPv6 header (e.g. a reassembled datagram)."""
    cdef mos_pkt_t p
    cdef bytes b = bytes(data)
    memset(&p, 0, sizeof(p))
    r = mos_decode_ip(<const uint8_t *>PyBytes_AsString(b), len(b), &p)
    return _pkt_dict(r, &p)


def fix_checksums(int linktype, data):
    """Return a copy of the frame with the IPv4 header and TCP checksums recomputed."""
    cdef mos_pkt_t p
    cdef bytearray b = bytearray(data)
    cdef uint8_t *raw
    if len(b) == 0:
        return bytes(b)
    raw = <uint8_t *>(<char *>b)
    r = mos_decode(<uint16_t>linktype, raw, len(b), &p)
    if p.l3 != NULL:
        mos_fix_checksums(&p, <uint8_t *>p.l3)
    return bytes(b)


def flow_hash_seed(uint64_t seed):
    mos_flow_hash_seed(seed)


def sha256(data):
    cdef mos_sha256_t s
    cdef uint8_t out[32]
    cdef bytes b = bytes(data)
    mos_sha256_init(&s)
    mos_sha256_update(&s, <const uint8_t *>PyBytes_AsString(b), len(b))
    mos_sha256_final(&s, out)
    return PyBytes_FromStringAndSize(<const char *>out, 32)


cdef class Sha256:
    """Incremental SHA-256 (update in pieces, then digest())."""
    cdef mos_sha256_t s

    def __cinit__(self):
        mos_sha256_init(&self.s)

    def update(self, data):
        cdef bytes b = bytes(data)
        mos_sha256_update(&self.s, <const uint8_t *>PyBytes_AsString(b), len(b))

    def digest(self):
        cdef mos_sha256_t copy = self.s
        cdef uint8_t out[32]
        mos_sha256_final(&copy, out)
        return PyBytes_FromStringAndSize(<const char *>out, 32)


cdef class Defrag:
    """IP reassembly.  timeout is in seconds; add() takes time in nanoseconds."""
    cdef mos_defrag_t *d
    cdef readonly size_t mem_cap

    def __cinit__(self, size_t mem_cap=4 << 20, timeout=30.0):
        self.mem_cap = mem_cap
        self.d = mos_defrag_new(mem_cap, <uint64_t>(timeout * 1e9))
        if self.d == NULL:
            raise MemoryError()

    def __dealloc__(self):
        if self.d != NULL:
            mos_defrag_free(self.d)

    cdef object _feed(self, int r, mos_pkt_t *p, uint64_t ts_ns):
        cdef uint32_t n = 0
        cdef const uint8_t *out
        if r != MOS_DEC_FRAGMENT:
            return None
        out = mos_defrag_add(self.d, p, ts_ns, &n)
        if out == NULL:
            return None
        res = PyBytes_FromStringAndSize(<const char *>out, n)
        mos_defrag_release(self.d)
        return res

    def add(self, int linktype, frame, uint64_t ts_ns=0):
        """Feed a frame; returns the reassembled IP datagram when it completes one."""
        cdef mos_pkt_t p
        cdef bytes b = bytes(frame)
        r = mos_decode(<uint16_t>linktype, <const uint8_t *>PyBytes_AsString(b), len(b), &p)
        return self._feed(r, &p, ts_ns)

    def add_ip(self, data, uint64_t ts_ns=0):
        """Feed an IP packet without link header."""
        cdef mos_pkt_t p
        cdef bytes b = bytes(data)
        memset(&p, 0, sizeof(p))
        r = mos_decode_ip(<const uint8_t *>PyBytes_AsString(b), len(b), &p)
        return self._feed(r, &p, ts_ns)

    def expire(self, uint64_t now_ns):
        mos_defrag_expire(self.d, now_ns)

    @property
    def stats(self):
        cdef const mos_defrag_stats_t *s = mos_defrag_stats(self.d)
        return {"fragments": s.fragments, "reassembled": s.reassembled, "timeouts": s.timeouts,
                "mem_drops": s.mem_drops, "overlaps": s.overlaps, "invalid": s.invalid,
                "mem_in_use": s.mem_in_use}


cdef uint64_t _now_ns() nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <uint64_t>ts.tv_sec * 1000000000 + <uint64_t>ts.tv_nsec


def bench_decode(path, int rounds=20, bint with_hash=True):
    """Time mos_decode (+ mos_flow_hash) over every frame of a capture, in C.
    Returns {"packets", "ns_per_packet", "results": {name: count}}."""
    cdef char err[ERRLEN]
    cdef mos_capture_t *c
    cdef mos_frame_t *fr = NULL
    cdef mos_frame_t *tmp
    cdef size_t n = 0, cap = 0
    cdef int r, k
    cdef mos_pkt_t p
    cdef uint64_t t0, t1, sink = 0
    cdef long counts[8]
    cdef size_t i
    bpath = os.fsencode(path)
    c = mos_capture_open(bpath, err, ERRLEN)
    if c == NULL:
        raise CaptureError(err.decode("utf-8", "replace"))
    try:
        while True:
            if n == cap:
                cap = cap * 2 if cap else 1024
                tmp = <mos_frame_t *>realloc(fr, cap * sizeof(mos_frame_t))
                if tmp == NULL:
                    raise MemoryError()
                fr = tmp
            r = mos_capture_next(c, fr + n, <int>(cap - n), err, ERRLEN)
            if r < 0:
                raise CaptureError(err.decode("utf-8", "replace"))
            if r == 0:
                break
            n += r
        for k in range(8):
            counts[k] = 0
        for i in range(n):
            r = mos_decode(fr[i].linktype, fr[i].data, fr[i].caplen, &p)
            counts[r + 3] += 1
        t0 = _now_ns()
        with nogil:
            for k in range(rounds):
                for i in range(n):
                    r = mos_decode(fr[i].linktype, fr[i].data, fr[i].caplen, &p)
                    sink += <uint64_t>r + p.seq
                    if with_hash:
                        sink += mos_flow_hash(&p)
        t1 = _now_ns()
        return {
            "packets": n,
            "ns_per_packet": (t1 - t0) / float(n * rounds) if n and rounds else 0.0,
            "results": {RESULT_NAMES[k - 3]: counts[k] for k in range(8) if k - 3 in RESULT_NAMES},
            "sink": sink,
        }
    finally:
        free(fr)
        mos_capture_close(c)


def sha256_backend():
    """'libcrypto' or 'builtin': the SHA-256 used for stream digests."""
    return mos_sha256_backend().decode()
