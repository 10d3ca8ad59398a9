# cython: language_level=3
"""The compiled monitor: bursts of frames in, Python handlers called per event.

Per packet everything happens in C (engine.c).  This module runs once per
burst: it walks the burst's event list and calls the handlers registered
for each (event, hook, side), through the dispatch trees of mos.events.tree.
"""

from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t
from libc.stdlib cimport malloc, free
from libc.string cimport memset

from mos._cnative cimport *
from mos.dualstack._rbuf cimport *
from mos.dualstack._cengine cimport *

import heapq
import socket
import time as _time

from mos.errors import CaptureError, FlowClosedError, RegistrationError
from mos.events import (Event, Hook, Side, TcpState, ErrorReason, EndReason, UserEvent,
                        VALID_HOOKS)
from mos.events.info import StateChange, ErrorInfo, EndInfo, NewData, Rexmit
from mos.events.tree import Registration, build_trees, interest_mask, event_bit

DEF BURST = 256
DEF NBITS = 54

cdef tuple _SIDES = (Side.CLIENT, Side.SERVER)
cdef tuple _EVENTS = tuple(Event)
cdef tuple _STATES = tuple(TcpState)
cdef uint64_t _NO_DEADLINE = 0xffffffffffffffffULL


cdef tuple _compile(node):
    """Node tree -> nested tuples (handlers, ((ude, filter, child), ...)) for fast walking."""
    return (node.handlers, tuple((ev, f, _compile(n)) for ev, f, n in node.children))


cdef str _addr(int ipver, const uint8_t *a):
    if ipver == 6:
        return socket.inet_ntop(socket.AF_INET6, PyBytes_FromStringAndSize(<const char *>a, 16))
    return socket.inet_ntop(socket.AF_INET, PyBytes_FromStringAndSize(<const char *>a, 4))


cdef str _hostport(int ipver, const uint8_t *a, uint16_t port):
    if ipver == 6:
        return f"[{_addr(ipver, a)}]:{port}"
    return f"{_addr(ipver, a)}:{port}"


cdef list _sides_of(side):
    if int(side) == 2:
        return [0, 1]
    return [_side_index(side)]


cdef inline int _side_index(side) except -1:
    cdef int s = int(side)
    if s != 0 and s != 1:
        raise ValueError(f"side must be Side.CLIENT or Side.SERVER, not {side!r}")
    return s


cdef class Timer:
    """A capture-time timer; cancel() stops it."""
    cdef public uint64_t deadline
    cdef public uint64_t period
    cdef public object callback
    cdef public object flow
    cdef public bint cancelled
    cdef public uint64_t seq

    def cancel(self):
        self.cancelled = True

    def __lt__(self, Timer other):
        return (self.deadline, self.seq) < (other.deadline, other.seq)

    def __repr__(self):
        return f"<Timer at {self.deadline / 1e9:.6f}{' every %gs' % (self.period / 1e9) if self.period else ''}{' cancelled' if self.cancelled else ''}>"


cdef class Packet:
    """Read-only view of the packet behind the current event.

    Valid only during the callback that received it (the burst's frames are
    reused afterwards); copy what you need to keep."""
    cdef CoreEngine eng
    cdef uint32_t idx
    cdef uint32_t serial

    cdef const mos_pkt_t *_p(self) except NULL:
        if self.serial != self.eng.serial:
            raise RuntimeError("this Packet view outlived its callback")
        return mos_engine_pkt(self.eng.e, self.idx)

    @property
    def ts(self):
        """Capture time in seconds."""
        self._p()
        return mos_engine_frame(self.eng.e, self.idx).ts_ns / 1e9

    @property
    def ts_ns(self):
        self._p()
        return mos_engine_frame(self.eng.e, self.idx).ts_ns

    @property
    def ipver(self):
        return self._p().ipver

    @property
    def src(self):
        cdef const mos_pkt_t *p = self._p()
        return _addr(p.ipver, p.src)

    @property
    def dst(self):
        cdef const mos_pkt_t *p = self._p()
        return _addr(p.ipver, p.dst)

    @property
    def sport(self):
        return self._p().sport

    @property
    def dport(self):
        return self._p().dport

    @property
    def seq(self):
        return self._p().seq

    @property
    def ack(self):
        return self._p().ack

    @property
    def flags(self):
        """TCP flags byte (FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10, URG 0x20)."""
        return self._p().flags

    @property
    def flag_names(self):
        cdef uint8_t f = self._p().flags
        return "".join(n for b, n in ((0x02, "S"), (0x10, "A"), (0x01, "F"), (0x04, "R"),
                                      (0x08, "P"), (0x20, "U"), (0x40, "E"), (0x80, "C")) if f & b)

    @property
    def window(self):
        return self._p().win

    @property
    def payload(self):
        """Captured TCP payload bytes (a copy)."""
        cdef const mos_pkt_t *p = self._p()
        return PyBytes_FromStringAndSize(<const char *>p.payload, p.paylen)

    @property
    def payload_len(self):
        """Payload length per the IP header (may exceed len(payload) in a snapped capture)."""
        return self._p().seglen

    @property
    def ip_header(self):
        cdef const mos_pkt_t *p = self._p()
        return PyBytes_FromStringAndSize(<const char *>p.l3, p.l3hlen)

    @property
    def tcp_header(self):
        cdef const mos_pkt_t *p = self._p()
        return PyBytes_FromStringAndSize(<const char *>p.l4, p.thlen)

    @property
    def frame(self):
        """The whole captured frame (a copy)."""
        self._p()
        cdef const mos_frame_t *fr = mos_engine_frame(self.eng.e, self.idx)
        return PyBytes_FromStringAndSize(<const char *>fr.data, fr.caplen)

    @property
    def options(self):
        cdef const mos_pkt_t *p = self._p()
        d = {}
        if p.opts & MOS_OPT_MSS: d["mss"] = p.mss
        if p.opts & MOS_OPT_WSCALE: d["wscale"] = p.wscale
        if p.opts & MOS_OPT_SACKOK: d["sack_permitted"] = True
        if p.opts & MOS_OPT_TS: d["timestamp"] = (p.tsval, p.tsecr)
        if p.opts & MOS_OPT_SACK: d["sack"] = [(p.sack[2 * i], p.sack[2 * i + 1]) for i in range(p.nsack)]
        return d

    def __repr__(self):
        try:
            return (f"<Packet {self.src}:{self.sport} > {self.dst}:{self.dport} "
                    f"[{self.flag_names}] seq={self.seq} ack={self.ack} len={self.payload_len}>")
        except RuntimeError:
            return "<Packet (expired)>"


cdef class Endpoint:
    """One end's TCP model as the monitor sees it (live view)."""
    cdef readonly Flow flow
    cdef readonly int side

    cdef mos_ep_t *_ep(self) except NULL:
        return &self.flow._f().ep[self.side]

    @property
    def state(self):
        return _STATES[self._ep().state]

    @property
    def isn(self):
        return self._ep().isn

    @property
    def snd_nxt(self):
        """Next sequence number after the highest one this end sent."""
        return self._ep().snd_nxt

    @property
    def ack(self):
        """Last acknowledgement number this end sent (its RCV.NXT)."""
        return self._ep().ack

    @property
    def window(self):
        """Last receive window it advertised, scaled."""
        return self._ep().win

    @property
    def mss(self):
        return self._ep().mss

    @property
    def wscale(self):
        cdef mos_ep_t *ep = self._ep()
        return ep.wscale if ep.flags & MOS_EPF_WSCALE else None

    @property
    def sack_permitted(self):
        return bool(self._ep().flags & MOS_EPF_SACKOK)

    @property
    def timestamps(self):
        return bool(self._ep().flags & MOS_EPF_TS)

    @property
    def tsval(self):
        return self._ep().tsval

    @property
    def packets(self):
        """Packets this end sent."""
        return self._ep().pkts

    @property
    def bytes(self):
        """Payload bytes this end sent, retransmissions included."""
        return self._ep().bytes

    @property
    def stream_bytes(self):
        """Length of the stream this end sent (highest offset seen)."""
        return self._ep().data_end

    @property
    def received(self):
        """In-order bytes this end received (its buffer's head offset)."""
        return self._ep().rbuf.head

    @property
    def buffer_size(self):
        return self._ep().rbuf.limit

    @property
    def monitored(self):
        return not (self._ep().flags & MOS_EPF_UNMON)

    def __repr__(self):
        return f"<Endpoint {'client' if self.side == 0 else 'server'} {self.state.name}>"


cdef class Flow:
    """A tracked TCP flow: both endpoint models, both receive buffers.

    Handlers receive it as their first argument.  ``peek``/``ppeek`` read
    the bytes a side *received* (Side.SERVER: what the client sent)."""
    cdef readonly CoreEngine engine
    cdef readonly uint32_t slot
    cdef uint32_t gen
    cdef public object uctx
    cdef list _offsets          # per monitor [client_off, server_off]
    cdef dict _local            # bit -> tuple of (monitor index, compiled tree)
    cdef list _local_regs       # (monitor index, Registration)
    cdef uint64_t _adm_known, _adm_yes
    cdef int _end_reason
    cdef object _cache          # (id, ipver, caddr, saddr, cport, sport, first_ts)

    cdef mos_flow_t *_f(self) except NULL:
        cdef mos_flow_t *f = mos_engine_flow(self.engine.e, self.slot, self.gen)
        if f == NULL:
            raise FlowClosedError(f"flow {self._cache[0] if self._cache else '?'} has ended; "
                                  "its state is gone (keep what you need in CONN_END)")
        return f

    cdef _fill_cache(self):
        cdef mos_flow_t *f = self._f()
        self._cache = (f.id, f.ipver, _addr(f.ipver, f.caddr), _addr(f.ipver, f.saddr),
                       f.cport, f.sport, f.first_ts)

    @property
    def id(self):
        return self._cache[0]

    @property
    def ipver(self):
        return self._cache[1]

    @property
    def client_ip(self):
        return self._cache[2]

    @property
    def server_ip(self):
        return self._cache[3]

    @property
    def client_port(self):
        return self._cache[4]

    @property
    def server_port(self):
        return self._cache[5]

    @property
    def client_addr(self):
        return f"[{self._cache[2]}]:{self._cache[4]}" if self._cache[1] == 6 else f"{self._cache[2]}:{self._cache[4]}"

    @property
    def server_addr(self):
        return f"[{self._cache[3]}]:{self._cache[5]}" if self._cache[1] == 6 else f"{self._cache[3]}:{self._cache[5]}"

    @property
    def alive(self):
        return mos_engine_flow(self.engine.e, self.slot, self.gen) != NULL

    @property
    def client(self):
        cdef Endpoint ep = Endpoint.__new__(Endpoint)
        ep.flow = self
        ep.side = 0
        return ep

    @property
    def server(self):
        cdef Endpoint ep = Endpoint.__new__(Endpoint)
        ep.flow = self
        ep.side = 1
        return ep

    def endpoint(self, side):
        cdef Endpoint ep = Endpoint.__new__(Endpoint)
        ep.flow = self
        ep.side = _side_index(side)
        return ep

    @property
    def start_time(self):
        return self._cache[6] / 1e9

    @property
    def last_active(self):
        return self._f().last_ts / 1e9

    @property
    def duration(self):
        cdef mos_flow_t *f = self._f()
        return (f.last_ts - f.first_ts) / 1e9

    @property
    def midstream(self):
        return bool(self._f().flags & MOS_FF_MIDSTREAM)

    @property
    def end_reason(self):
        cdef mos_flow_t *f = mos_engine_flow(self.engine.e, self.slot, self.gen)
        if f != NULL and f.flags & MOS_FF_DYING:
            return EndReason(f.end_reason)
        if f == NULL and self._end_reason:
            return EndReason(self._end_reason)
        return None

    @property
    def packet(self):
        """The packet behind the event being handled (None for events with no packet)."""
        return self.engine.current_packet()

    @property
    def event_info(self):
        """Details of the event being handled: StateChange, ErrorInfo, EndInfo, NewData, Rexmit or None."""
        return self.engine.current_info()

    # ---------------------------------------------------------------- buffers

    cdef list _offs(self, int mi):
        if self._offsets is None:
            self._offsets = []
        while len(self._offsets) <= mi:
            self._offsets.append([0, 0])
        return self._offsets[mi]

    cdef void _update_consumed(self, mos_flow_t *f, int s):
        """Bytes every attached monitor has read are released (ppeek can no
        longer reach them); a monitor that never read this flow holds them."""
        cdef uint64_t lo = 0xffffffffffffffffULL
        cdef uint64_t o
        if len(self._offsets) < len(self.engine.monitors):
            lo = 0
        for offs in self._offsets:
            o = offs[s]
            if o < lo:
                lo = o
        if lo != f.ep[s].consumed:
            mos_flow_consumed(self.engine.e, f, s, lo)

    def peek(self, side, Py_ssize_t n=-1, monitor=None):
        """Read up to n new in-order bytes that ``side`` received, from this
        monitor's read offset, and advance it.  Returns b"" when nothing is
        new.  Stops at a gap; the next call resumes after it (the gap was
        reported by an ERROR event with reason GAP)."""
        cdef int s = _side_index(side)
        cdef mos_flow_t *f = self._f()
        cdef mos_rbuf_t *rb = &f.ep[s].rbuf
        cdef int mi = self.engine._monitor_index(monitor)
        cdef list offs = self._offs(mi)
        cdef uint64_t off = offs[s]
        cdef const mos_span_t *g
        cdef uint64_t avail
        if off < rb.base:
            off = rb.base  # overrun: those bytes are gone (an ERROR OVERRUN said so)
        g = mos_rbuf_gap_after(rb, off)
        if g != NULL and g.off <= off:
            off = g.off + g.len
            g = mos_rbuf_gap_after(rb, off)
        if off >= rb.head:
            offs[s] = off
            self._update_consumed(f, s)
            return b""
        avail = rb.head - off
        if g != NULL and g.off < rb.head and g.off - off < avail:
            avail = g.off - off
        if n >= 0 and <uint64_t>n < avail:
            avail = n
        if avail > 0x7fffffff:
            avail = 0x7fffffff
        out = PyBytes_FromStringAndSize(NULL, avail)
        cdef uint32_t got = mos_rbuf_copy(rb, off, <uint8_t *>PyBytes_AS_STRING(out), <uint32_t>avail)
        if got != avail:
            out = out[:got]
        offs[s] = off + got
        self._update_consumed(f, s)
        return out

    def ppeek(self, side, uint64_t offset, Py_ssize_t n):
        """Read up to n bytes at absolute stream offset ``offset`` of what
        ``side`` received (in order or out of order); moves nothing.  Returns
        fewer bytes where the data stops (hole, gap, not yet received, or
        already dropped from the buffer)."""
        cdef int s = _side_index(side)
        cdef mos_flow_t *f = self._f()
        if n <= 0:
            return b""
        if n > 0x7fffffff:
            n = 0x7fffffff
        out = PyBytes_FromStringAndSize(NULL, n)
        cdef uint32_t got = mos_rbuf_copy(&f.ep[s].rbuf, offset, <uint8_t *>PyBytes_AS_STRING(out), <uint32_t>n)
        return out[:got] if got != <uint32_t>n else out

    def read_offset(self, side, monitor=None):
        """This monitor's read offset in ``side``'s stream."""
        return self._offs(self.engine._monitor_index(monitor))[_side_index(side)]

    def fragments(self, side):
        """Out-of-order data held above the in-order frontier: [(offset, length), ...]."""
        cdef mos_rbuf_t *rb = &self._f().ep[_side_index(side)].rbuf
        return [(rb.runs[i].off, rb.runs[i].len) for i in range(rb.nruns)]

    def gaps(self, side):
        """Holes declared in ``side``'s stream: [(offset, length), ...]."""
        cdef mos_rbuf_t *rb = &self._f().ep[_side_index(side)].rbuf
        return [(rb.gaps[i].off, rb.gaps[i].len) for i in range(rb.ngaps)]

    def buffered(self, side):
        """(base, head): offsets of the oldest byte held and the in-order frontier."""
        cdef mos_rbuf_t *rb = &self._f().ep[_side_index(side)].rbuf
        return (rb.base, rb.head)

    def sha256(self, side):
        """Digest of ``side``'s received stream (engine built with digest=True)."""
        cdef mos_flow_t *f = self._f()
        cdef int s = _side_index(side)
        cdef mos_sha256_t copy
        cdef uint8_t out[32]
        if f.digest == NULL:
            raise RuntimeError("stream digests are off: Config(digest=True) turns them on")
        copy = f.digest[s].sha
        mos_sha256_final(&copy, out)
        return PyBytes_FromStringAndSize(<const char *>out, 32).hex()

    def digest_info(self, side):
        """(bytes hashed, bytes lost before hashing) in digest mode."""
        cdef mos_flow_t *f = self._f()
        cdef int s = _side_index(side)
        if f.digest == NULL:
            return None
        return (f.digest[s].hashed_bytes, f.digest[s].lost)

    # ---------------------------------------------------------------- control

    def set_buffer_size(self, side, size):
        """Receive buffer size for one side (or Side.BOTH), bytes; 0 stops buffering."""
        cdef mos_flow_t *f = self._f()
        size = int(size)
        if size < 0 or size > 0x7fffffff:
            raise ValueError(f"buffer size {size} out of range 0..{0x7fffffff}")
        for s in _sides_of(side):
            mos_flow_set_buffer(self.engine.e, f, s, size)

    def set_overlap(self, side, policy):
        """Overlap policy for one side (or Side.BOTH): 'first' or 'last'."""
        cdef mos_flow_t *f = self._f()
        if policy not in ("first", "last"):
            raise ValueError(f"overlap policy must be 'first' or 'last', not {policy!r}")
        for s in _sides_of(side):
            f.ep[s].rbuf.policy = MOS_OVERLAP_FIRST if policy == "first" else MOS_OVERLAP_LAST

    def stop_monitoring(self, side=Side.BOTH):
        """No more events or buffering for this side (or both); state tracking goes on."""
        cdef mos_flow_t *f = self._f()
        for s in _sides_of(side):
            mos_flow_stop_side(self.engine.e, f, s)

    def on(self, event, handler=None, *, hook=None, side=Side.BOTH, monitor=None):
        """Register a handler for this flow only (with the current monitor)."""
        if handler is None:
            def deco(fn):
                self.on(event, fn, hook=hook, side=side, monitor=monitor)
                return fn
            return deco
        cdef mos_flow_t *f = self._f()
        mi = self.engine._monitor_index(monitor)
        if self._local_regs is None:
            self._local_regs = []
        self._local_regs.append((mi, Registration(event, handler, hook, side)))
        self._rebuild_local(f)
        return handler

    def off(self, event, handler):
        cdef mos_flow_t *f = self._f()
        if not self._local_regs:
            return 0
        before = len(self._local_regs)
        self._local_regs = [(mi, r) for mi, r in self._local_regs
                            if not (r.event is event and r.handler == handler)]
        self._rebuild_local(f)
        return before - len(self._local_regs)

    cdef _rebuild_local(self, mos_flow_t *f):
        cdef dict local = {}
        cdef uint64_t mask = 0
        by_mon = {}
        for mi, reg in self._local_regs:
            by_mon.setdefault(mi, []).append(reg)
        for mi, regs in by_mon.items():
            trees = build_trees(regs)
            for bit, node in trees.items():
                local[bit] = local.get(bit, ()) + ((mi, _compile(node)),)
            mask |= interest_mask(trees)
        self._local = local or None
        f.interest = mask

    def raise_event(self, event, side):
        """Fire a user event now, for this flow and side, to the current
        monitor's handlers of it (used by filters that find several things,
        e.g. one child event per matched pattern)."""
        self.engine._raise(self, event, _side_index(side))

    def set_timer(self, delay, callback, periodic=False):
        """Call callback(flow) after ``delay`` seconds of capture time (again
        every ``delay`` if periodic) while the flow lives."""
        return self.engine._add_timer(delay, callback, self, periodic)

    def reset(self):
        """End the flow now as if by RST (in-line ports also send RSTs; here
        the monitor stops tracking it and CONN_END fires)."""
        cdef mos_flow_t *f = self._f()
        mos_engine_end_flow(self.engine.e, self.slot, MOS_END_RST)

    def __repr__(self):
        if self._cache is None:
            return "<Flow ?>"
        try:
            st = f"{self.client.state.name}/{self.server.state.name}"
        except FlowClosedError:
            st = "ended"
        return f"<Flow {self._cache[0]} {self.client_addr} -> {self.server_addr} {st}>"


cdef class CoreEngine:
    """The compiled engine: one flow table, its monitors and timers."""
    cdef mos_engine_t *e
    cdef readonly object config
    cdef readonly list monitors
    cdef list _table
    cdef list _pyflows
    cdef list _timers
    cdef uint64_t _timer_seq
    cdef public uint64_t handler_calls
    cdef uint32_t serial
    cdef mos_event_t cur
    cdef bint in_dispatch
    cdef int cur_mon
    cdef Flow cur_flow
    cdef object _cur_packet
    cdef bint _checksum_decided
    cdef public str checksum_mode

    def __cinit__(self, config=None):
        self.e = NULL

    def __init__(self, config=None):
        from mos.config import Config
        if config is None:
            config = Config()
        elif not isinstance(config, Config):
            raise TypeError(f"config must be a mos.Config, not {type(config).__name__}")
        self.config = config
        cdef mos_config_t c
        memset(&c, 0, sizeof(c))
        c.buffer_size[0] = config.buffer_size
        c.buffer_size[1] = config.buffer_size
        c.overlap[0] = c.overlap[1] = MOS_OVERLAP_LAST if config.overlap == "last" else MOS_OVERLAP_FIRST
        c.midstream = 1 if config.midstream else 0
        c.checksum = {"ignore": MOS_CSUM_IGNORE, "verify": MOS_CSUM_VERIFY, "auto": MOS_CSUM_AUTO}[config.checksum]
        c.digest = 1 if config.digest else 0
        c.keep_read = 1 if config.keep_read else 0
        c.max_flows = config.max_flows
        c.tcp_timeout_ns = <uint64_t>(config.tcp_timeout * 1e9)
        c.defrag_mem = config.defrag_memory
        c.defrag_timeout_ns = <uint64_t>(config.defrag_timeout * 1e9)
        self.e = mos_engine_new(&c)
        if self.e == NULL:
            raise MemoryError("cannot allocate the engine")
        self.checksum_mode = config.checksum
        self.monitors = []
        self._table = [None] * NBITS
        self._pyflows = []
        self._timers = []
        self.cur_mon = 0
        self.serial = 1

    def __dealloc__(self):
        if self.e != NULL:
            mos_engine_free(self.e)
            self.e = NULL

    # ---------------------------------------------------------------- monitors

    def attach(self, monitor):
        """Add a monitor; its handlers see flows from now on."""
        if monitor in self.monitors:
            return monitor
        self.monitors.append(monitor)
        monitor._engines.add(self)
        self._rebuild()
        return monitor

    def _rebuild(self):
        cdef uint64_t mask = 0
        table = [None] * NBITS
        for mi, mon in enumerate(self.monitors):
            for bit, node in mon._trees.items():
                ent = (mi, mon if mon.filter is not None else None, _compile(node))
                table[bit] = (table[bit] or ()) + (ent,)
            mask |= mon._mask
        self._table = table
        mos_engine_set_interest(self.e, mask)

    cdef int _monitor_index(self, monitor) except -1:
        if monitor is None:
            return self.cur_mon
        try:
            return self.monitors.index(monitor)
        except ValueError:
            raise ValueError(f"{monitor!r} is not attached to this engine") from None

    # ---------------------------------------------------------------- dispatch

    cdef Flow _flow_obj(self, uint32_t slot):
        cdef Flow fo
        if slot < len(self._pyflows):
            fo = self._pyflows[slot]
            if fo is not None:
                return fo
        else:
            self._pyflows.extend([None] * (mos_engine_slots(self.e) - len(self._pyflows)))
        cdef mos_flow_t *f = mos_engine_flow_any(self.e, slot)
        fo = Flow.__new__(Flow)
        fo.engine = self
        fo.slot = slot
        fo.gen = f.gen
        fo._fill_cache()
        self._pyflows[slot] = fo
        return fo

    cdef bint _admits(self, Flow fo, int mi, object mon) except -1:
        cdef uint64_t bit = 1ULL << mi
        if not (fo._adm_known & bit):
            fo._adm_known |= bit
            if mon.admits(fo):
                fo._adm_yes |= bit
        return (fo._adm_yes & bit) != 0

    cdef int _walk(self, tuple tree, object flow, object side, object ev) except -1:
        cdef tuple handlers = <tuple>tree[0]
        for h in handlers:
            h(flow, side, ev)
        self.handler_calls += len(handlers)
        for child in <tuple>tree[1]:
            filt = child[1]
            if filt is not None and filt(flow, side, ev):
                self._walk(<tuple>child[2], flow, side, child[0])
        return 0

    cdef int _dispatch(self) except -1:
        cdef uint32_t n, i = 0
        cdef const mos_event_t *evs
        cdef int bit
        cdef object entries, side, ev, flowarg
        cdef Flow fo
        cdef tuple ent
        cdef Packet pkt
        self.in_dispatch = True
        try:
            while True:
                evs = mos_engine_events(self.e, &n)   # handlers may add events: re-read
                if i >= n:
                    break
                self.cur = evs[i]
                i += 1
                bit = self.cur.type * 6 + self.cur.hook * 2 + self.cur.side
                entries = self._table[bit]
                side = _SIDES[self.cur.side]
                ev = _EVENTS[self.cur.type]
                self._cur_packet = None
                if self.cur.type == MOS_EV_ORPHAN:
                    if entries is None:
                        continue
                    pkt = Packet.__new__(Packet)
                    pkt.eng = self
                    pkt.idx = self.cur.pkt
                    pkt.serial = self.serial
                    self.cur_flow = None
                    for ent in entries:
                        self.cur_mon = ent[0]
                        self._walk(ent[2], pkt, side, ev)
                    continue
                fo = self._flow_obj(self.cur.flow)
                self.cur_flow = fo
                if entries is not None:
                    for ent in entries:
                        if ent[1] is not None and not self._admits(fo, ent[0], ent[1]):
                            continue
                        self.cur_mon = ent[0]
                        self._walk(ent[2], fo, side, ev)
                if fo._local is not None:
                    local = fo._local.get(bit)
                    if local is not None:
                        for ent in local:
                            self.cur_mon = ent[0]
                            self._walk(ent[1], fo, side, ev)
        finally:
            self.in_dispatch = False
            self.cur_flow = None
            self._cur_packet = None
            self.cur_mon = 0
            mos_engine_clear_events(self.e)
        return 0

    cdef int _reap(self) except -1:
        cdef uint32_t n, k, slot
        cdef const uint32_t *dying = mos_engine_dying(self.e, &n)
        cdef Flow fo
        if n == 0:
            return 0
        for k in range(n):
            slot = dying[k]
            if slot < len(self._pyflows):
                fo = self._pyflows[slot]
                if fo is not None:
                    fo._end_reason = mos_engine_flow_any(self.e, slot).end_reason
                    self._pyflows[slot] = None
        mos_engine_reap(self.e, NULL, 0)
        return 0

    def _raise(self, Flow flow, event, int side):
        if not isinstance(event, UserEvent):
            raise RegistrationError(f"only user events can be raised, not {event!r}")
        if not self.in_dispatch:
            raise RuntimeError("raise_event works only inside a handler or filter")
        bit = event_bit(event.root, Hook(self.cur.hook), side)
        chain = event.chain()
        trees = []
        mon = self.monitors[self.cur_mon]
        node = mon._trees.get(bit)
        if node is not None:
            trees.append(node)
        if flow._local_regs:
            for mi, reg in flow._local_regs:
                if mi == self.cur_mon:
                    t = build_trees([reg]).get(bit)
                    if t is not None:
                        trees.append(t)
        for node in trees:
            target = node.find(chain)
            if target is not None:
                self._walk(_compile(target), flow, _SIDES[side], event)

    def current_packet(self):
        cdef Packet pkt
        if not self.in_dispatch or self.cur.pkt == MOS_NOPKT:
            return None
        if self._cur_packet is None:
            pkt = Packet.__new__(Packet)
            pkt.eng = self
            pkt.idx = self.cur.pkt
            pkt.serial = self.serial
            self._cur_packet = pkt
        return self._cur_packet

    def current_info(self):
        if not self.in_dispatch:
            return None
        t = self.cur.type
        if t == MOS_EV_STATE_CHANGE:
            return StateChange(_STATES[self.cur.aux], _STATES[self.cur.reason])
        if t == MOS_EV_ERROR:
            return ErrorInfo(ErrorReason(self.cur.reason), self.cur.a, self.cur.b)
        if t == MOS_EV_CONN_END or t == MOS_EV_TIMEOUT:
            return EndInfo(EndReason(self.cur.reason))
        if t == MOS_EV_NEW_DATA:
            return NewData(self.cur.a, self.cur.b)
        if t == MOS_EV_REXMIT:
            return Rexmit(self.cur.a, self.cur.b)
        return None

    # ---------------------------------------------------------------- timers

    def set_timer(self, delay, callback, periodic=False):
        """Call callback(engine) after ``delay`` seconds of capture time (again
        every ``delay`` when periodic)."""
        return self._add_timer(delay, callback, None, periodic)

    def _add_timer(self, delay, callback, flow, periodic):
        if not callable(callback):
            raise TypeError(f"timer callback must be callable, not {callback!r}")
        delay = float(delay)
        if not delay >= 0:
            raise ValueError(f"timer delay must be >= 0 seconds, not {delay!r}")
        if periodic and delay <= 0:
            raise ValueError("a periodic timer needs a delay > 0")
        cdef Timer t = Timer.__new__(Timer)
        t.deadline = mos_engine_now(self.e) + <uint64_t>(delay * 1e9)
        t.period = <uint64_t>(delay * 1e9) if periodic else 0
        t.callback = callback
        t.flow = flow
        self._timer_seq += 1
        t.seq = self._timer_seq
        heapq.heappush(self._timers, t)
        return t

    cdef uint64_t _next_deadline(self):
        cdef Timer t
        while self._timers:
            t = self._timers[0]
            if not t.cancelled:
                return t.deadline
            heapq.heappop(self._timers)
        return _NO_DEADLINE

    cdef int _fire_timers(self, uint64_t now) except -1:
        cdef Timer t
        cdef Flow fo
        while self._timers:
            t = self._timers[0]
            if t.deadline > now and not t.cancelled:
                break
            heapq.heappop(self._timers)
            if t.cancelled:
                continue
            mos_engine_advance(self.e, t.deadline)
            self._dispatch()
            self._reap()
            if t.flow is not None:
                fo = t.flow
                if not fo.alive:
                    continue
                self.in_dispatch = True
                self.cur_flow = fo
                try:
                    t.callback(fo)
                finally:
                    self.in_dispatch = False
                    self.cur_flow = None
            else:
                t.callback(self)
            if t.period and not t.cancelled:
                t.deadline += t.period
                heapq.heappush(self._timers, t)
            self._dispatch()
            self._reap()
        return 0

    # ---------------------------------------------------------------- input

    cdef int _process(self, const mos_frame_t *frames, int n) except -1:
        cdef int i = 0, c
        cdef uint64_t stop
        while i < n:
            stop = self._next_deadline()
            c = mos_engine_process(self.e, frames + i, n - i, stop)
            self.serial += 1
            self._dispatch()
            self._reap()
            i += c
            if i < n:
                self._fire_timers(frames[i].ts_ns)
        return 0

    def feed(self, frame, ts=0.0, int linktype=1):
        """Process one frame (bytes) captured at ``ts`` seconds; sans-I/O entry for tests and tools."""
        cdef bytes data = bytes(frame)
        cdef mos_frame_t fr
        memset(&fr, 0, sizeof(fr))
        fr.data = <const uint8_t *>PyBytes_AS_STRING(data)
        fr.caplen = fr.wirelen = len(data)
        fr.ts_ns = <uint64_t>(float(ts) * 1e9 + 0.5)
        fr.linktype = linktype
        self._process(&fr, 1)

    def advance(self, now):
        """Move time to ``now`` seconds with no packet: fires timers and idle timeouts."""
        cdef uint64_t t = <uint64_t>(float(now) * 1e9 + 0.5)
        self._fire_timers(t)
        mos_engine_advance(self.e, t)
        self._dispatch()
        self._reap()

    def close(self):
        """End every live flow (CONN_END with reason SHUTDOWN) and dispatch."""
        mos_engine_end_all(self.e, MOS_END_SHUTDOWN)
        self._dispatch()
        self._reap()

    def run_capture(self, path, progress=None, Py_ssize_t limit=-1, bint close=True):
        """Process a pcap/pcapng file.  ``progress(offset, size)`` is called now
        and then.  Raises CaptureError for a corrupt file after processing the
        frames before the fault."""
        cdef char err[512]
        cdef bytes bpath = str(path).encode()
        cdef mos_capture_t *cap = mos_capture_open(bpath, err, sizeof(err))
        cdef int verdict
        if cap == NULL:
            raise CaptureError(err.decode(errors="replace"))
        if self.config.checksum == "auto" and not self._checksum_decided:
            # decide on the file's first 1000 TCP packets before dropping any
            verdict = mos_capture_checksum_verdict(bpath, 1000)
            if verdict >= 0:
                mos_engine_set_checksum(self.e, verdict)
                self.checksum_mode = "verify" if verdict == MOS_CSUM_VERIFY else "ignore"
            self._checksum_decided = True
        cdef mos_frame_t *frames = <mos_frame_t *>malloc(BURST * sizeof(mos_frame_t))
        cdef int n, bursts = 0
        cdef Py_ssize_t done = 0
        cdef object failure = None
        cdef uint64_t size = mos_capture_size(cap)
        try:
            while limit < 0 or done < limit:
                n = mos_capture_next(cap, frames, BURST if limit < 0 or limit - done > BURST else <int>(limit - done), err, sizeof(err))
                if n < 0:
                    failure = CaptureError(err.decode(errors="replace"))
                    break
                if n == 0:
                    break
                self._process(frames, n)
                done += n
                bursts += 1
                if progress is not None and (bursts & 63) == 0:
                    progress(mos_capture_offset(cap), size)
            if progress is not None:
                progress(mos_capture_offset(cap), size)
            if close:
                self.close()
        finally:
            free(frames)
            mos_capture_close(cap)
        if failure is not None:
            raise failure
        return done

    # ---------------------------------------------------------------- info

    def live_flows(self):
        """Flow objects of every live flow."""
        out = []
        cdef uint32_t s
        cdef mos_flow_t *f
        for s in range(mos_engine_slots(self.e)):
            f = mos_engine_flow_any(self.e, s)
            if f.flags & MOS_FF_LIVE:
                out.append(self._flow_obj(s))
        return out

    @property
    def now(self):
        """Current time (seconds, capture time)."""
        return mos_engine_now(self.e) / 1e9

    @property
    def table_memory(self):
        """Bytes held by the flow table itself (not payload buffers)."""
        return mos_engine_memory(self.e)

    def counters(self):
        cdef const mos_counters_t *c = mos_engine_counters(self.e)
        cdef const mos_defrag_stats_t *d = mos_engine_defrag_stats(self.e)
        out = {
            "frames": c.frames, "bytes": c.bytes, "tcp": c.tcp, "non_tcp": c.non_tcp,
            "truncated": c.truncated, "malformed": c.malformed, "unsupported": c.unsupported,
            "bad_checksum": c.bad_checksum, "fragments": c.fragments, "orphans": c.orphans,
            "flows_created": c.flows_created, "flows_ended": c.flows_ended,
            "flows_live": c.flows_live, "events": c.events, "rexmit": c.rexmit,
            "payload_bytes": c.payload_bytes, "ooo_segments": c.ooo_segments,
            "snapped": c.snapped, "handler_calls": self.handler_calls,
            "ended": {r.name.lower(): c.ended[int(r)] for r in EndReason},
            "errors": {r.name.lower(): c.errors[int(r)] for r in ErrorReason},
            "defrag": {"fragments": d.fragments, "reassembled": d.reassembled,
                       "timeouts": d.timeouts, "mem_drops": d.mem_drops,
                       "overlaps": d.overlaps, "invalid": d.invalid},
        }
        return out
