# C-level face of the compiled engine, for the runtime's port loop
# (mos/runtime/_loop.pyx: `from mos.dualstack._engine cimport CoreEngine`).
# Cython wants every C field and cdef method of a class declared here once
# a .pxd exists, so Flow (which CoreEngine's methods take) is here too.
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from mos._cnative cimport mos_frame_t
from mos.dualstack._cengine cimport mos_engine_t, mos_event_t, mos_flow_t, mos_tx_fn

cdef enum:
    MAXPORTS = 16      # ports of one engine (in-line pairs, a pcap writer)

cdef class CoreEngine


cdef class Flow:
    cdef readonly CoreEngine engine
    cdef readonly uint32_t slot
    cdef uint32_t gen
    cdef list _uctx             # per monitor index: that monitor's user context
    cdef list _offsets          # per monitor [client_off, server_off]
    cdef dict _local            # bit -> tuple of (monitor index, compiled tree)
    cdef list _local_regs       # (monitor index, Registration)
    cdef uint64_t _adm_known, _adm_yes
    cdef int _end_reason
    cdef object _cache          # (ipver, caddr, saddr, cport, sport) once asked for
    cdef uint64_t _id, _first_ts

    cdef mos_flow_t *_f(self) except NULL
    cdef _fill_cache(self)
    cdef tuple _addrs(self)
    cdef list _offs(self, int mi)
    cdef void _update_consumed(self, mos_flow_t *f, int s)
    cdef _rebuild_local(self, mos_flow_t *f)


cdef class CoreEngine:
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
    cdef public dict _modified       # frame index (this sub-burst) -> bytes to forward instead
    cdef uint64_t _psplit[MAXPORTS]   # extra frames sent: grown segments cut in pieces
    cdef list _injected              # (iface, bytes) to send after this sub-burst
    cdef public bint collect         # keep outputs for take_output() (sans-I/O in-line use)
    cdef list _output
    # output ports the runtime attached (_attach_ports): where forwarded and
    # injected frames go, through native/port.h tx functions, and per-port
    # counters (_prx is counted by the runtime's loop)
    cdef int nports
    cdef void *_handle[MAXPORTS]
    cdef mos_tx_fn _tx[MAXPORTS]
    cdef int _peer[MAXPORTS]
    cdef uint64_t _prx[MAXPORTS]
    cdef uint64_t _ptx[MAXPORTS]
    cdef uint64_t _ptxdrop[MAXPORTS]
    cdef uint64_t _pdrop[MAXPORTS]
    cdef uint64_t _pinj[MAXPORTS]
    cdef mos_frame_t *_txbuf
    cdef int _nports_seen
    cdef bint _started
    cdef public str checksum_mode

    cdef int _monitor_index(self, monitor) except -1
    cdef Flow _flow_obj(self, uint32_t slot)
    cdef bint _admits(self, Flow fo, int mi, object mon) except -1
    cdef int _walk(self, tuple tree, object flow, object side, object ev) except -1
    cdef int _dispatch(self) except -1
    cdef int _reap(self) except -1
    cdef uint64_t _next_deadline(self)
    cdef uint64_t _deadline(self)
    cdef int _fire_timers(self, uint64_t now) except -1
    cdef _start(self, uint64_t t0)
    cdef int _process(self, const mos_frame_t *frames, int n) except -1
    cdef int _outputs(self, const mos_frame_t *frames, int c) except -1
    cdef bint _forwards(self, int iface)
    cdef object _edited(self, int k, bytes data)
    cdef int _forward(self, const mos_frame_t *frames, int c, uint8_t *verdict) except -1
    cdef int _tick(self, uint64_t now) except -1
    cdef int _attach_ports(self, int n) except -1
    cdef void _detach_ports(self)
    cdef void _decide_checksum(self, int verify)
