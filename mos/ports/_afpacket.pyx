# cython: language_level=3
"""AF_PACKET port: a Linux interface through mmap rings (native/afpacket.c).

    >>> from mos.ports._afpacket import AfPacketPort
    >>> with AfPacketPort("veth1") as a, AfPacketPort("veth2") as b:  # doctest: +SKIP
    ...     handle, rx, rx_done, tx = a.c_port()        # for a C forwarding loop
    ...     frames = a.recv_burst(64)                    # slow path: [(ts_ns, bytes)]
    ...     b.send([f for _, f in frames])

Receive is a TPACKET_V3 ring (ETH_P_ALL, promiscuous, outgoing frames
ignored), optionally in a PACKET_FANOUT_HASH group shared by several worker
processes; send is a TPACKET_V2 ring kicked once per burst (or sendmmsg).
Needs CAP_NET_RAW.

Offloads: turn GRO/GSO/TSO off on the interfaces (ethtool -K IF gro off gso
off tso off); a frame above the MTU (a GRO aggregate) cannot be sent on and
is counted in tx_dropped.
"""

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, uintptr_t
from libc.stdlib cimport malloc, free
from libc.string cimport memset
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_FromStringAndSize

from mos._cnative cimport mos_frame_t

import time as _time

__all__ = ["AfPacketPort", "forward_loop", "blast"]


cdef extern from "port.h" nogil:
    ctypedef int (*mos_rx_fn)(void *handle, mos_frame_t *frames, int max)
    ctypedef void (*mos_rx_done_fn)(void *handle)
    ctypedef int (*mos_tx_fn)(void *handle, const mos_frame_t *frames, int n)

    ctypedef struct mos_port_stats_t:
        uint64_t rx, rx_bytes
        uint64_t tx, tx_bytes
        uint64_t tx_dropped
        uint64_t rx_dropped


cdef extern from "afpacket.h" nogil:
    ctypedef struct mos_afp_t:
        pass

    enum:
        MOS_AFP_TX_RING
        MOS_AFP_TX_SENDMMSG

    ctypedef struct mos_afp_config_t:
        int fanout_group
        unsigned ring_bytes
        unsigned block_bytes
        int poll_ms
        int retire_ms
        int tx_mode
        unsigned tx_ring_bytes
        int promisc
        int rx_version
        int fanout_defrag
        int see_outgoing

    ctypedef struct mos_afp_xstats_t:
        uint64_t vlan_restored
        uint64_t vlan_lost
        uint64_t tx_kick_errors
        uint64_t tx_too_big
        uint64_t rx_blocks
        uint64_t freeze_q

    void mos_afp_config_default(mos_afp_config_t *cfg)
    mos_afp_t *mos_afp_open_cfg(const char *iface, const mos_afp_config_t *cfg, char *err,
                                size_t errlen)
    void mos_afp_close(mos_afp_t *h)
    int mos_afp_rx(void *h, mos_frame_t *frames, int max)
    void mos_afp_rx_done(void *h)
    int mos_afp_tx(void *h, const mos_frame_t *frames, int n)
    void mos_afp_stats(void *h, mos_port_stats_t *st)
    void mos_afp_xstats(void *h, mos_afp_xstats_t *st)
    int mos_afp_fd(const mos_afp_t *h)
    void mos_afp_set_poll_ms(mos_afp_t *h, int ms)
    int mos_afp_poll_ms(const mos_afp_t *h)
    unsigned mos_afp_block_bytes(const mos_afp_t *h)
    unsigned mos_afp_block_count(const mos_afp_t *h)
    int mos_afp_mtu(const mos_afp_t *h)


cdef extern from "<poll.h>" nogil:
    struct pollfd:
        int fd
        short events
        short revents
    int poll(pollfd *fds, unsigned long nfds, int timeout)
    enum:
        POLLIN


cdef extern from "<time.h>" nogil:
    struct timespec:
        long tv_sec
        long tv_nsec
    int clock_gettime(int clk, timespec *ts)
    enum:
        CLOCK_MONOTONIC


cdef extern from *:
    ctypedef unsigned char volatile_uchar "volatile unsigned char"


cdef enum:
    ERRLEN = 256
    SLOW_BURST = 1024     # recv_burst / send work in chunks of this many frames


cdef inline double _now() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


_TX_MODES = {"ring": MOS_AFP_TX_RING, "sendmmsg": MOS_AFP_TX_SENDMMSG}


cdef class AfPacketPort:
    """One Linux interface as a port (native/port.h).

    iface: interface name.  fanout_group: None, or 0..65535 to share the
    interface's traffic with other handles of that group by a symmetric flow
    hash (each flow's two directions reach the same handle).  fanout_defrag
    (default True, PACKET_FANOUT_FLAG_DEFRAG): the kernel reassembles IP
    fragments before hashing and hands over the reassembled datagram, which
    cannot be forwarded in-line (over the MTU, counted in tx_too_big): in-line
    workers pass False, so fragments pass intact (hashed on addresses only).
    ring_bytes:
    rx ring size (default 4 MiB), cut into blocks of block_bytes (a power of
    two; default ring/16 within 64 KiB..1 MiB).  poll_ms: rx waits at most
    this long when nothing is ready (0: never waits).  retire_ms: a partly
    filled block reaches user space after this.  rx_ring: "v3" (default) or
    "v2": TPACKET_V2 frame slots, each frame visible at once (no retire_ms
    wait; block_bytes and retire_ms then unused).  tx: "ring" (TPACKET_V2 tx
    ring, default) or "sendmmsg".  tx_ring_bytes: tx ring size (1 MiB).
    """

    cdef mos_afp_t *h
    cdef mos_frame_t *frames
    cdef readonly str iface
    cdef readonly object fanout_group
    cdef readonly str tx_mode
    cdef readonly str rx_ring

    def __cinit__(self):
        self.h = NULL
        self.frames = NULL

    def __init__(self, str iface, fanout_group=None, unsigned ring_bytes=4 << 20,
                 int poll_ms=1, *, unsigned block_bytes=0, int retire_ms=1, str tx="ring",
                 unsigned tx_ring_bytes=1 << 20, bint promisc=True, str rx_ring="v3",
                 bint fanout_defrag=True, bint see_outgoing=False):
        cdef mos_afp_config_t cfg
        cdef char err[ERRLEN]
        if rx_ring not in ("v3", "v2"):
            raise ValueError(f"rx_ring: {rx_ring!r} is not one of v3, v2")
        if tx not in _TX_MODES:
            raise ValueError(f"tx: {tx!r} is not one of {', '.join(_TX_MODES)}")
        if fanout_group is not None and not (0 <= fanout_group <= 0xFFFF):
            raise ValueError(f"fanout_group: {fanout_group!r} is not in 0..65535")
        mos_afp_config_default(&cfg)
        cfg.fanout_group = -1 if fanout_group is None else fanout_group
        cfg.ring_bytes = ring_bytes
        cfg.block_bytes = block_bytes
        cfg.poll_ms = poll_ms
        cfg.retire_ms = retire_ms
        cfg.tx_mode = _TX_MODES[tx]
        cfg.see_outgoing = see_outgoing
        cfg.tx_ring_bytes = tx_ring_bytes
        cfg.promisc = promisc
        cfg.rx_version = 3 if rx_ring == "v3" else 2
        cfg.fanout_defrag = fanout_defrag
        name = iface.encode()
        err[0] = 0
        self.h = mos_afp_open_cfg(name, &cfg, err, ERRLEN)
        if self.h == NULL:
            msg = err.decode(errors="replace") or f"afpacket: {iface}: open failed"
            if "CAP_NET_RAW" in msg:
                raise PermissionError(msg)
            if "no such interface" in msg:
                raise FileNotFoundError(msg)
            raise OSError(msg)
        self.frames = <mos_frame_t *>malloc(SLOW_BURST * sizeof(mos_frame_t))
        if self.frames == NULL:
            mos_afp_close(self.h)
            self.h = NULL
            raise MemoryError()
        self.iface = iface
        self.fanout_group = fanout_group
        self.tx_mode = tx
        self.rx_ring = rx_ring

    def __dealloc__(self):
        if self.h != NULL:
            mos_afp_close(self.h)
            self.h = NULL
        free(self.frames)
        self.frames = NULL

    cdef inline int _check(self) except -1:
        if self.h == NULL:
            raise ValueError(f"afpacket port {self.iface!r} is closed")
        return 0

    def close(self):
        """Close both sockets and unmap the rings (idempotent)."""
        if self.h != NULL:
            mos_afp_close(self.h)
            self.h = NULL

    @property
    def closed(self):
        return self.h == NULL

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __repr__(self):
        state = "closed" if self.h == NULL else f"fd {mos_afp_fd(self.h)}"
        return (f"<AfPacketPort {self.iface!r} fanout={self.fanout_group} rx={self.rx_ring} "
                f"tx={self.tx_mode} {state}>")

    def c_port(self):
        """(handle, rx, rx_done, tx) as addresses for a C forwarding loop
        (native/port.h).  Valid while the port is open."""
        self._check()
        return (<uintptr_t>self.h, <uintptr_t>&mos_afp_rx, <uintptr_t>&mos_afp_rx_done,
                <uintptr_t>&mos_afp_tx)

    def fileno(self):
        """The receive socket, readable when a ring block is ready (for poll)."""
        self._check()
        return mos_afp_fd(self.h)

    @property
    def poll_ms(self):
        self._check()
        return mos_afp_poll_ms(self.h)

    @poll_ms.setter
    def poll_ms(self, int ms):
        self._check()
        mos_afp_set_poll_ms(self.h, ms)

    @property
    def ring(self):
        """(block_bytes, block_count) of the rx ring (v2: slot size, slots)."""
        self._check()
        return (mos_afp_block_bytes(self.h), mos_afp_block_count(self.h))

    @property
    def mtu(self):
        self._check()
        return mos_afp_mtu(self.h)

    def stats(self):
        """Counters: rx, rx_bytes, tx, tx_bytes, tx_dropped, rx_dropped (kernel
        tp_drops: ring full), and vlan_restored, vlan_lost, tx_kick_errors,
        tx_too_big, rx_blocks, freeze_q."""
        cdef mos_port_stats_t st
        cdef mos_afp_xstats_t xs
        self._check()
        mos_afp_stats(self.h, &st)
        mos_afp_xstats(self.h, &xs)
        return {
            "rx": st.rx, "rx_bytes": st.rx_bytes, "tx": st.tx, "tx_bytes": st.tx_bytes,
            "tx_dropped": st.tx_dropped, "rx_dropped": st.rx_dropped,
            "vlan_restored": xs.vlan_restored, "vlan_lost": xs.vlan_lost,
            "tx_kick_errors": xs.tx_kick_errors, "tx_too_big": xs.tx_too_big,
            "rx_blocks": xs.rx_blocks, "freeze_q": xs.freeze_q,
        }

    def recv_burst(self, int max=64):
        """Up to ``max`` received frames as [(ts_ns, bytes)], copied; waits at
        most poll_ms when nothing is ready.  Slow: for tests and tools."""
        cdef int n, i
        self._check()
        if max <= 0:
            return []
        if max > SLOW_BURST:
            max = SLOW_BURST
        with nogil:
            n = mos_afp_rx(self.h, self.frames, max)
        out = []
        try:
            for i in range(n):
                out.append((self.frames[i].ts_ns,
                            PyBytes_FromStringAndSize(<const char *>self.frames[i].data,
                                                      self.frames[i].caplen)))
        finally:
            mos_afp_rx_done(self.h)
        return out

    def send(self, frames):
        """Send each bytes object in ``frames`` (whole Ethernet frames); returns
        how many were queued (the rest count in tx_dropped)."""
        cdef int k, n, sent = 0
        cdef bytes b
        self._check()
        batch = []
        for f in frames:
            batch.append(f if type(f) is bytes else bytes(f))
        k = 0
        while k < len(batch):
            n = min(SLOW_BURST, len(batch) - k)
            for i in range(n):
                b = batch[k + i]
                self.frames[i].data = <const uint8_t *>PyBytes_AS_STRING(b)
                self.frames[i].caplen = <uint32_t>PyBytes_GET_SIZE(b)
                self.frames[i].wirelen = self.frames[i].caplen
                self.frames[i].ts_ns = 0
                self.frames[i].linktype = 1
                self.frames[i].iface = 0
            with nogil:
                sent += mos_afp_tx(self.h, self.frames, n)
            k += n
        return sent


def forward_loop(port_a, port_b, double seconds, int burst=64, double idle_exit=0.0,
                 stop=None):
    """Move frames both ways between two ports for ``seconds``, all in C
    (bursts of ``burst``); the GIL is released, so run it in a thread next to
    the traffic.  Works for any port with c_port(); when both are
    AfPacketPorts their own rx wait is turned off and an idle loop polls the
    two sockets together for 1 ms instead.  With idle_exit > 0 it returns once
    frames moved and then none did for idle_exit seconds.  ``stop``: a
    bytearray; the loop returns soon after another thread sets stop[0].

    Returns {"frames_ab", "bytes_ab", "frames_ba", "bytes_ba", "dropped",
    "elapsed", "active"} where active is the time from the first to the last
    frame moved."""
    cdef void *ha
    cdef void *hb
    cdef mos_rx_fn rxa, rxb
    cdef mos_rx_done_fn rda, rdb
    cdef mos_tx_fn txa, txb
    cdef mos_frame_t *fr
    cdef pollfd pfd[2]
    cdef int usepoll = 0, na, nb, sa, sb, i
    cdef uint64_t fab = 0, fba = 0, bab = 0, bba = 0, dropped = 0, loops = 0
    cdef double t0, t, deadline, first = 0.0, last = 0.0
    cdef unsigned char[::1] stopbuf
    cdef unsigned char *stopp = NULL
    if stop is not None:
        stopbuf = stop
        if stopbuf.shape[0] < 1:
            raise ValueError("stop: needs a writable buffer of at least one byte")
        stopp = &stopbuf[0]
    if burst <= 0 or burst > 4096:
        raise ValueError(f"burst: {burst} is not in 1..4096")
    h, rx, rd, tx = port_a.c_port()
    ha = <void *><uintptr_t>h
    rxa = <mos_rx_fn><uintptr_t>rx
    rda = <mos_rx_done_fn><uintptr_t>rd
    txa = <mos_tx_fn><uintptr_t>tx
    h, rx, rd, tx = port_b.c_port()
    hb = <void *><uintptr_t>h
    rxb = <mos_rx_fn><uintptr_t>rx
    rdb = <mos_rx_done_fn><uintptr_t>rd
    txb = <mos_tx_fn><uintptr_t>tx
    saved = None
    if isinstance(port_a, AfPacketPort) and isinstance(port_b, AfPacketPort):
        saved = (port_a.poll_ms, port_b.poll_ms)
        port_a.poll_ms = 0
        port_b.poll_ms = 0
        pfd[0].fd = port_a.fileno()
        pfd[1].fd = port_b.fileno()
        pfd[0].events = pfd[1].events = POLLIN
        usepoll = 1
    fr = <mos_frame_t *>malloc(burst * sizeof(mos_frame_t))
    if fr == NULL:
        raise MemoryError()
    try:
        with nogil:
            t0 = _now()
            t = t0
            deadline = t0 + seconds
            while t < deadline:
                if stopp != NULL and (<volatile_uchar *>stopp)[0] != 0:
                    break
                na = rxa(ha, fr, burst)
                if na > 0:
                    sb = txb(hb, fr, na)
                    fab += sb
                    dropped += na - sb
                    for i in range(na):
                        bab += fr[i].caplen
                rda(ha)
                nb = rxb(hb, fr, burst)
                if nb > 0:
                    sa = txa(ha, fr, nb)
                    fba += sa
                    dropped += nb - sa
                    for i in range(nb):
                        bba += fr[i].caplen
                rdb(hb)
                loops += 1
                if na > 0 or nb > 0:
                    if (loops & 15) == 0 or first == 0.0:
                        t = _now()
                        if first == 0.0:
                            first = t
                        last = t
                    continue
                if usepoll:
                    poll(pfd, 2, 1)
                t = _now()
                if idle_exit > 0 and first != 0.0 and t - last >= idle_exit:
                    break
    finally:
        free(fr)
        if saved is not None:
            if not port_a.closed:
                port_a.poll_ms = saved[0]
            if not port_b.closed:
                port_b.poll_ms = saved[1]
    return {"frames_ab": fab, "bytes_ab": bab, "frames_ba": fba, "bytes_ba": bba,
            "dropped": dropped, "elapsed": t - t0, "active": max(last - first, 0.0)}


def blast(port, frame, double seconds, int burst=64):
    """Send ``frame`` (bytes) over and over through port.c_port()'s tx, in
    bursts, for ``seconds``; all in C with the GIL released.  A traffic
    generator for benchmarks (the kernel's pktgen is often not built).
    Returns (frames queued, seconds)."""
    cdef void *h
    cdef mos_tx_fn tx
    cdef mos_frame_t *fr
    cdef bytes b = bytes(frame)
    cdef uint64_t sent = 0
    cdef double t0, t = 0.0
    cdef int i
    if burst <= 0 or burst > 4096:
        raise ValueError(f"burst: {burst} is not in 1..4096")
    hh, _, _, txa = port.c_port()
    h = <void *><uintptr_t>hh
    tx = <mos_tx_fn><uintptr_t>txa
    fr = <mos_frame_t *>malloc(burst * sizeof(mos_frame_t))
    if fr == NULL:
        raise MemoryError()
    memset(fr, 0, burst * sizeof(mos_frame_t))
    for i in range(burst):
        fr[i].data = <const uint8_t *>PyBytes_AS_STRING(b)
        fr[i].caplen = fr[i].wirelen = <uint32_t>PyBytes_GET_SIZE(b)
        fr[i].linktype = 1
    try:
        with nogil:
            t0 = _now()
            t = t0
            while t - t0 < seconds:
                for i in range(16):
                    sent += tx(h, fr, burst)
                t = _now()
    finally:
        free(fr)
    return sent, t - t0
