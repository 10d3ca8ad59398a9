# cython: language_level=3
"""mos.tcp._host: the end host's active TCP endpoint (host.h) on its own,
sans-I/O: segments in and out as tuples, time passed in by the caller.
Tests pair two of them through an in-memory wire; the stack drives the
same C code per packet.

>>> from mos.tcp._host import Host
>>> c, s = Host(), Host()
>>> c.connect(iss=1000, now=0)
>>> syn = c.output(0)[0]
>>> syn.flags, sorted(syn.options)
('S', ['mss', 'sack_ok', 'ts', 'wscale'])
>>> s.accept(syn, iss=5000, now=0)
>>> c.input(s.output(0)[0], 1_000_000)
['CONNECTED', 'WRITABLE', 'OUTPUT']
>>> s.input(c.output(1_000_000)[0], 2_000_000)
['CONNECTED', 'WRITABLE', 'OUTPUT']
>>> c.state, s.state
('ESTABLISHED', 'ESTABLISHED')
"""

from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.string cimport memset
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize

from mos.tcp._ctcp cimport (mos_tcp_seg_t, mos_tcp_opts_t, MOS_OPT_MSS, MOS_OPT_WSCALE,
                            MOS_OPT_SACKOK, MOS_OPT_TS, MOS_OPT_SACK, mos_tcp_state_names)
from mos.tcp._chost cimport *

_FLAGS = ((0x02, "S"), (0x01, "F"), (0x04, "R"), (0x08, "P"), (0x10, "A"))
_EVENTS = ((MOS_HOST_EV_CONNECTED, "CONNECTED"), (MOS_HOST_EV_READABLE, "READABLE"),
           (MOS_HOST_EV_WRITABLE, "WRITABLE"), (MOS_HOST_EV_CLOSED, "CLOSED"),
           (MOS_HOST_EV_OUTPUT, "OUTPUT"))


def flag_bits(str text):
    cdef int b = 0
    for bit, ch in _FLAGS:
        if ch in text:
            b |= bit
    return b


def flag_text(int bits):
    return "".join(ch for bit, ch in _FLAGS if bits & bit)


class Segment:
    """One TCP segment without IP: ``flags`` as letters (S F R P A),
    ``options`` a dict (mss, wscale, sack_ok, ts: (val, ecr), sack: [(l, r)])."""
    __slots__ = ("seq", "ack", "flags", "wnd", "options", "payload")

    def __init__(self, seq, ack, flags, wnd, options=None, payload=b""):
        self.seq, self.ack, self.flags, self.wnd = seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, flags, wnd
        self.options = dict(options or {})
        self.payload = bytes(payload)

    def __repr__(self):
        return (f"<Segment {self.flags} seq={self.seq} ack={self.ack} wnd={self.wnd} "
                f"len={len(self.payload)}{' ' + repr(self.options) if self.options else ''}>")


cdef void _opts_from(dict o, mos_tcp_opts_t *t):
    memset(t, 0, sizeof(mos_tcp_opts_t))
    if "mss" in o:
        t.opts |= MOS_OPT_MSS
        t.mss = o["mss"]
    if "wscale" in o:
        t.opts |= MOS_OPT_WSCALE
        t.wscale = min(o["wscale"], 14)
    if o.get("sack_ok"):
        t.opts |= MOS_OPT_SACKOK
    if "ts" in o:
        t.opts |= MOS_OPT_TS
        t.tsval, t.tsecr = o["ts"]
    if o.get("sack"):
        t.opts |= MOS_OPT_SACK
        t.nsack = min(len(o["sack"]), 4)
        for i in range(t.nsack):
            t.sack[2 * i], t.sack[2 * i + 1] = o["sack"][i]


cdef dict _opts_to(const mos_tcp_opts_t *t):
    cdef dict o = {}
    if t.opts & MOS_OPT_MSS:
        o["mss"] = t.mss
    if t.opts & MOS_OPT_WSCALE:
        o["wscale"] = t.wscale
    if t.opts & MOS_OPT_SACKOK:
        o["sack_ok"] = True
    if t.opts & MOS_OPT_TS:
        o["ts"] = (t.tsval, t.tsecr)
    if t.opts & MOS_OPT_SACK:
        o["sack"] = [(t.sack[2 * i], t.sack[2 * i + 1]) for i in range(t.nsack)]
    return o


def _events(int ev):
    return [name for bit, name in _EVENTS if ev & bit]


cdef class Host:
    """One connection's TCP.  Keyword options as ``mos_tcp_host_cfg_t``:
    mss, wscale, sack, ts, nodelay, cubic, rcvbuf, rcvbuf_max, sndbuf, rto_init, rto_min,
    rto_max, syn_retries, retries, delack, time_wait (times in ns)."""
    cdef mos_tcp_host_t h

    def __cinit__(self, **cfg):
        cdef mos_tcp_host_cfg_t c
        mos_tcp_host_cfg_default(&c)
        for k, v in cfg.items():
            if k == "mss": c.mss = v
            elif k == "wscale": c.wscale = v
            elif k == "sack": c.sack = v
            elif k == "ts": c.ts = v
            elif k == "nodelay": c.nodelay = v
            elif k == "cubic": c.cubic = v
            elif k == "rcvbuf": c.rcvbuf = v
            elif k == "rcvbuf_max": c.rcvbuf_max = v
            elif k == "sndbuf": c.sndbuf = v
            elif k == "rto_init": c.rto_init = v
            elif k == "rto_min": c.rto_min = v
            elif k == "rto_max": c.rto_max = v
            elif k == "syn_retries": c.syn_retries = v
            elif k == "retries": c.retries = v
            elif k == "delack": c.delack = v
            elif k == "time_wait": c.time_wait = v
            elif k == "ts_base": c.ts_base = v
            else:
                raise TypeError(f"Host: unknown option {k!r}")
        if mos_tcp_host_init(&self.h, &c, NULL) != 0:
            raise MemoryError("Host: no memory for the send buffer")

    def __dealloc__(self):
        mos_tcp_host_free(&self.h)

    def connect(self, uint32_t iss, uint64_t now):
        mos_tcp_host_connect(&self.h, iss, now)

    def accept(self, seg, uint32_t iss, uint64_t now):
        cdef mos_tcp_opts_t o
        cdef mos_tcp_seg_t s
        _fill(seg, &s, &o)
        if mos_tcp_host_accept(&self.h, &s, iss, now) != 0:
            raise ValueError(f"accept: {seg!r} is not a SYN")

    def input(self, seg, uint64_t now):
        cdef mos_tcp_opts_t o
        cdef mos_tcp_seg_t s
        cdef bytes p = seg.payload
        _fill(seg, &s, &o)
        return _events(mos_tcp_host_input(&self.h, &s,
                                          <const uint8_t *>PyBytes_AS_STRING(p) if len(p) else NULL,
                                          now))

    def output(self, uint64_t now, int limit=1000):
        """Every segment due now (at most limit)."""
        cdef mos_tcp_host_out_t out
        cdef bytes payload
        segs = []
        while len(segs) < limit and mos_tcp_host_output(&self.h, now, &out):
            payload = PyBytes_FromStringAndSize(NULL, out.len)
            if out.len:
                mos_tcp_host_copy_tx(&self.h, out.data_off, <uint8_t *>PyBytes_AS_STRING(payload),
                                     out.len)
            segs.append(Segment(out.seq, out.ack, flag_text(out.flags), out.wnd,
                                _opts_to(&out.opt), payload))
        return segs

    def timer(self, uint64_t now):
        return _events(mos_tcp_host_timer(&self.h, now))

    @property
    def deadline(self):
        """When the earliest timer is due (ns), or None."""
        cdef uint64_t d = mos_tcp_host_deadline(&self.h)
        return d if d else None

    def send(self, data):
        cdef const uint8_t[:] v = data
        if v.shape[0] == 0:
            return 0
        return mos_tcp_host_send(&self.h, &v[0], <uint32_t>v.shape[0])

    def recv(self, uint32_t n=1 << 20):
        cdef uint32_t avail = mos_tcp_host_readable(&self.h)
        if n > avail:
            n = avail
        out = PyBytes_FromStringAndSize(NULL, n)
        cdef uint32_t got = mos_tcp_host_recv(&self.h, <uint8_t *>PyBytes_AS_STRING(out), n) if n else 0
        return out[:got]

    def set_buffers(self, uint32_t sndbuf=0, uint32_t rcvbuf=0):
        """SO_SNDBUF / SO_RCVBUF (0: unchanged); a receive size set here ends autotuning."""
        if mos_tcp_host_set_buffers(&self.h, sndbuf, rcvbuf):
            raise MemoryError("set_buffers: no memory for the send buffer")

    def shutdown(self):
        mos_tcp_host_shutdown(&self.h)

    def abort(self):
        mos_tcp_host_abort(&self.h)

    @property
    def state(self):
        return mos_tcp_state_names[self.h.me.state].decode()

    @property
    def readable(self):
        return mos_tcp_host_readable(&self.h)

    @property
    def writable(self):
        return mos_tcp_host_writable(&self.h)

    @property
    def eof(self):
        return bool(mos_tcp_host_eof(&self.h))

    @property
    def error(self):
        """errno the connection ended with (0: none)."""
        return self.h.err

    @property
    def unacked(self):
        """Bytes written and not acknowledged yet."""
        return self.h.sb_len

    def info(self):
        """Congestion and RTT state, negotiated options and counters."""
        h = self.h
        return {"state": self.state, "smss": h.smss, "snd_shift": h.snd_shift,
                "rcv_shift": h.rcv_shift, "ts": bool(h.ts_on), "sack": bool(h.sack_on),
                "cwnd": h.cwnd, "ssthresh": h.ssthresh, "snd_wnd": h.snd_wnd,
                "srtt_ns": h.srtt, "min_rtt_ns": h.min_rtt, "rto_ns": h.rto, "in_recovery": bool(h.in_recovery),
                "segs_out": h.segs_out, "segs_in": h.segs_in, "rexmits": h.rexmits,
                "fast_rexmits": h.fast_rexmits, "timeouts": h.timeouts,
                "bytes_out": h.bytes_out, "bytes_in": h.bytes_in, "dup_in": h.dup_in,
                "ooo_in": h.ooo_in, "paws_drops": h.paws_drops, "probes": h.probes,
                "undos": h.undos, "wupd_resends": h.wupd_resends,
                "rcvbuf": h.cfg.rcvbuf, "rcvbuf_grows": h.rcvbuf_grows, "rcv_rtt_ns": h.rcv_rtt}


cdef void _fill(seg, mos_tcp_seg_t *s, mos_tcp_opts_t *o):
    _opts_from(seg.options, o)
    s.seq = seg.seq
    s.ack = seg.ack
    s.len = len(seg.payload)
    s.wnd = seg.wnd
    s.flags = flag_bits(seg.flags)
    s.opt = o
