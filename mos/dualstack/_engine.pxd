# The typed interface of mos.dualstack._engine (uvloop's loop.pxd manner):
# every view and every link of CoreEngine with its C-level fields and
# methods, so other compiled modules (the runtime's port loop,
# mos/runtime/_loop.pyx) can cimport them.  The bodies live in _engine.pyx
# and the .pxi files it includes.
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from mos._cnative cimport mos_frame_t, mos_pkt_t
from mos.dualstack._cengine cimport *

cdef enum:
    MAXPORTS = 16   # ports of one engine (in-line pairs, a pcap writer)

# on_handler_error (Config): what a handler's exception does
cdef enum:
    POLICY_RAISE = 0
    POLICY_LOG = 1
    POLICY_STOP = 2
    POLICY_DISABLE = 3


cdef class CoreEngine


cdef class Packet:
    cdef CoreEngine eng
    cdef uint32_t idx
    cdef uint32_t serial

    cdef const mos_pkt_t *_p(self) except NULL
    cdef bytes _outgoing(self, where, mos_pkt_t *q, Py_ssize_t *base, Py_ssize_t *limit)
    cdef _edit_header(self, Py_ssize_t offset, Py_ssize_t length, bytes ins, where)


cdef class Flow:
    cdef readonly CoreEngine engine
    cdef readonly uint32_t slot
    cdef uint32_t gen
    cdef uint64_t _rd0[2]       # monitor 0's read offsets, in the object's first cache line
    cdef list _uctx             # per monitor index: that monitor's user context
    cdef uint64_t *_rd          # read offsets: [2*mi + side] for monitor index mi (_rd0
                                # while only monitor 0 has read)
    cdef uint32_t _nrd          # monitor indexes held in _rd (those that have read)
    cdef dict _local            # bit -> tuple of (monitor index, compiled tree)
    cdef list _local_regs       # (monitor index, Registration)
    cdef uint64_t _adm_known, _adm_yes
    cdef int _end_reason
    cdef object _cache          # (ipver, caddr, saddr, cport, sport) once asked for
    cdef uint64_t _id, _first_ts

    cdef mos_flow_t *_f(self) except NULL
    cdef mos_flow_t *_live(self, str what) except NULL
    cdef _fill_cache(self)
    cdef tuple _addrs(self)
    cdef uint64_t *_offs(self, int mi) except NULL
    cdef void _update_consumed(self, mos_flow_t *f, int s)
    cdef int _check_read(self, mos_flow_t *f, int s, str what) except -1
    cdef _rebuild_local(self, mos_flow_t *f)


cdef class Endpoint:
    cdef readonly Flow flow
    cdef readonly int side

    cdef mos_ep_t *_ep(self) except NULL


cdef class SeqMap:
    cdef mos_seqmap_t m


cdef class Timer:
    cdef public uint64_t deadline
    cdef public uint64_t period
    cdef public object callback
    cdef public object flow
    cdef public bint cancelled
    cdef public uint64_t seq
    cdef public int monitor


# ---- CoreEngine, link by link: state -> dispatch -> timers -> output -> input

cdef class _EngineState:
    cdef mos_engine_t *e
    cdef readonly object config
    cdef public str checksum_mode
    cdef uint32_t serial            # sub-bursts processed: Packet views of older ones expire
    cdef bint _checksum_decided
    cdef public uint64_t handler_calls
    cdef int _policy                # on_handler_error in effect: POLICY_*
    cdef bint _policy_auto          # 'auto' and not set since: a run makes it 'log'
    cdef bint _stopped              # a handler stopped the run: later errors are only logged
    cdef dict _consumers            # consumer number -> its provider (kept alive while added)

    cdef void _decide_checksum(self, int verify)


cdef class _Dispatch(_EngineState):
    cdef readonly list monitors
    cdef list _table                # bit -> ((monitor index, monitor or None, tree), ...)
    cdef list _pyflows              # slot -> Flow view
    cdef list _reads                # monitor index -> sides it reads (1 << side)
    cdef bytes _readsb              # the same as bytes (read per peek without Python ints)
    cdef mos_event_t cur            # the event being dispatched
    cdef bint in_dispatch
    cdef bint _in_burst             # flows that end stay readable until the burst ends
    cdef int cur_mon
    cdef Flow cur_flow
    cdef object _cur_packet
    # The events layer above this one (mos.events.tree), set by mos.Engine:
    # user-defined event trees for per-flow handlers and raised events.  The
    # core walks compiled trees but never imports their layer.
    cdef public object events_layer
    # Handler faults (on_handler_error): counts per handler, handlers disabled,
    # (handler, exception type) pairs whose traceback was logged, frames
    # counted before the current burst (packet numbers in messages)
    cdef dict _herr
    cdef dict _hnames
    cdef set _disabled
    cdef set _tb_shown
    cdef uint64_t _herr_total
    cdef uint64_t _burst_base

    cdef object _layer(self)
    cdef int _monitor_index(self, monitor) except -1
    cdef Flow _flow_obj(self, uint32_t slot)
    cdef bint _admits(self, Flow fo, int mi, object mon) except -1
    cdef int _walk(self, tuple tree, object flow, object side, object ev) except -1
    cdef int _failed(self, object fn, object exc, object what, object flow, object ev) except -1
    cdef object _packet_or_none(self)
    cdef _disable(self, key)
    cdef int _dispatch(self) except -1
    cdef int _reap(self) except -1


cdef class _Timers(_Dispatch):
    cdef list _timers               # heap of Timer
    cdef uint64_t _timer_seq
    cdef bint _started              # deadlines count from the first packet's time

    cdef uint64_t _next_deadline(self)
    cdef uint64_t _deadline(self)
    cdef int _fire_timers(self, uint64_t now) except -1
    cdef _start(self, uint64_t t0)


cdef class _Output(_Timers):
    cdef public dict _modified      # frame index (this sub-burst) -> bytes to forward instead
    cdef list _injected             # (iface, bytes) to send after this sub-burst
    cdef public bint collect        # keep outputs for take_output() (sans-I/O in-line use)
    cdef list _output
    cdef int nports
    cdef int _nports_seen
    # output ports the runtime attached (_attach_ports): where forwarded and
    # injected frames go, through native/port.h tx functions (_prx is
    # counted by the runtime's loop)
    cdef void *_handle[MAXPORTS]
    cdef mos_tx_fn _tx[MAXPORTS]
    cdef int _peer[MAXPORTS]
    cdef uint64_t _prx[MAXPORTS]
    cdef uint64_t _ptx[MAXPORTS]
    cdef uint64_t _ptxdrop[MAXPORTS]
    cdef uint64_t _pdrop[MAXPORTS]
    cdef uint64_t _pinj[MAXPORTS]
    cdef uint64_t _psplit[MAXPORTS]  # extra frames sent: grown segments cut in pieces
    cdef mos_frame_t *_txbuf

    cdef int _outputs(self, const mos_frame_t *frames, int c) except -1
    cdef bint _forwards(self, int iface)
    cdef object _edited(self, int k, bytes data)
    cdef int _forward(self, const mos_frame_t *frames, int c, uint8_t *verdict) except -1
    cdef int _attach_ports(self, int n) except -1
    cdef void _detach_ports(self)


cdef class CoreEngine(_Output):
    cdef int _process(self, const mos_frame_t *frames, int n) except -1
    cdef int _burst(self, const mos_frame_t *frames, int n) except -1
    cdef int _tick(self, uint64_t now) except -1
