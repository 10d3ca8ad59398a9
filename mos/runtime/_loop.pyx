# cython: language_level=3
"""The runtime's compiled part: the port loop and capture files as ports.

The engine (mos.dualstack) is sans-I/O: it takes bursts of frames with their
timestamps and is told the time.  This module owns what it must not do:
reading the clock, polling and sleeping between empty rounds, reading and
writing capture files.  Per burst it calls the engine at C level
(_engine.pxd); per packet nothing here touches a Python object.

Where the engine's time comes from depends on the port: the frames'
timestamps for a capture, the wall clock (CLOCK_REALTIME, the clock the
kernel stamps received frames with) for live ports.
"""

from libc.stdint cimport uint8_t, uint32_t, uint64_t, uintptr_t
from libc.stdlib cimport malloc, free
from posix.unistd cimport usleep
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC, CLOCK_REALTIME

from mos._cnative cimport mos_frame_t, mos_capture_t, mos_capture_offset, mos_capture_size, \
    mos_capture_linktype
from mos.dualstack._cengine cimport mos_rx_fn, mos_rx_done_fn, mos_tx_fn, \
    mos_engine_set_stable_frames
from mos.dualstack._engine cimport CoreEngine, MAXPORTS, POLICY_LOG

cdef extern from "<poll.h>" nogil:
    struct pollfd:
        int fd
        short events
        short revents
    int poll(pollfd *fds, unsigned long nfds, int timeout)
    short POLLIN

cdef extern from "pcapport.h" nogil:
    ctypedef struct mos_pcap_reader_t:
        pass
    ctypedef struct mos_pcap_writer_t:
        pass
    mos_pcap_reader_t *mos_pcap_reader_open(const char *path, char *err, size_t errlen)
    int mos_pcap_reader_rx(void *h, mos_frame_t *frames, int max)
    void mos_pcap_reader_rx_done(void *h)
    int mos_pcap_reader_tx(void *h, const mos_frame_t *frames, int n)
    const char *mos_pcap_reader_error(const mos_pcap_reader_t *r)
    const mos_capture_t *mos_pcap_reader_capture(const mos_pcap_reader_t *r)
    void mos_pcap_reader_close(mos_pcap_reader_t *r)
    mos_pcap_writer_t *mos_pcap_writer_open(const char *path, int linktype, char *err,
                                            size_t errlen)
    int mos_pcap_writer_rx(void *h, mos_frame_t *frames, int max)
    void mos_pcap_writer_rx_done(void *h)
    int mos_pcap_writer_tx(void *h, const mos_frame_t *frames, int n)
    uint64_t mos_pcap_writer_frames(const mos_pcap_writer_t *w)
    const char *mos_pcap_writer_error(const mos_pcap_writer_t *w)
    int mos_pcap_writer_close(mos_pcap_writer_t *w, char *err, size_t errlen)
    int mos_pcap_checksum_verdict(const char *path, uint32_t sample)

from mos.errors import CaptureError, OutputError

__all__ = ["CaptureReader", "PcapWriter", "checksum_verdict", "run_capture", "run_ports",
           "wall_clock"]

DEF BURST = 256


cdef inline uint64_t _clock_ns(int which) noexcept nogil:
    cdef timespec ts
    clock_gettime(which, &ts)
    return <uint64_t>ts.tv_sec * 1000000000ULL + <uint64_t>ts.tv_nsec


def wall_clock():
    """The live ports' time, seconds since the epoch (what the engine is told)."""
    return _clock_ns(CLOCK_REALTIME) / 1e9


def checksum_verdict(path, int sample=1000):
    """1: verify checksums of this capture, 0: ignore them (more than one in
    ten of its first ``sample`` TCP packets fail, as with offload), -1: unreadable."""
    cdef bytes b = str(path).encode()
    return mos_pcap_checksum_verdict(b, sample)


cdef class CaptureReader:
    """A pcap or pcapng file as a port (native/pcapport.h): rx only.

    >>> r = CaptureReader(mos.sample_capture())          # doctest: +SKIP
    >>> handle, rx, rx_done, tx = r.c_port()             # doctest: +SKIP
    """
    cdef mos_pcap_reader_t *h
    cdef readonly str path

    def __cinit__(self, path):
        cdef char err[512]
        self.path = str(path)
        cdef bytes b = self.path.encode()
        self.h = mos_pcap_reader_open(b, err, sizeof(err))
        if self.h == NULL:
            raise CaptureError(err.decode(errors="replace"))

    def __dealloc__(self):
        self.close()

    def close(self):
        if self.h != NULL:
            mos_pcap_reader_close(self.h)
            self.h = NULL

    def c_port(self):
        return (<uintptr_t>self.h, <uintptr_t>mos_pcap_reader_rx,
                <uintptr_t>mos_pcap_reader_rx_done, <uintptr_t>mos_pcap_reader_tx)

    @property
    def linktype(self):
        """The link type of the file (its first interface's in pcapng)."""
        return mos_capture_linktype(mos_pcap_reader_capture(self.h))

    @property
    def error(self):
        """None, or why reading stopped before the end of the file."""
        cdef const char *e = mos_pcap_reader_error(self.h)
        return e.decode(errors="replace") if e[0] else None

    @property
    def offset(self):
        return mos_capture_offset(mos_pcap_reader_capture(self.h))

    @property
    def size(self):
        return mos_capture_size(mos_pcap_reader_capture(self.h))


cdef class PcapWriter:
    """A pcap file as a port: tx writes each frame as a record with its own
    timestamp; rx receives nothing.  ``close()`` raises OutputError if any
    write failed (a full disk, say)."""
    cdef mos_pcap_writer_t *h
    cdef readonly str path

    def __cinit__(self, path, int linktype=1):
        cdef char err[512]
        self.path = str(path)
        cdef bytes b = self.path.encode()
        self.h = mos_pcap_writer_open(b, linktype, err, sizeof(err))
        if self.h == NULL:
            raise OutputError(err.decode(errors="replace"))

    def __dealloc__(self):
        cdef char err[512]
        if self.h != NULL:
            mos_pcap_writer_close(self.h, err, sizeof(err))
            self.h = NULL

    def c_port(self):
        return (<uintptr_t>self.h, <uintptr_t>mos_pcap_writer_rx,
                <uintptr_t>mos_pcap_writer_rx_done, <uintptr_t>mos_pcap_writer_tx)

    @property
    def frames(self):
        return mos_pcap_writer_frames(self.h) if self.h != NULL else None

    @property
    def error(self):
        cdef const char *e
        if self.h == NULL:
            return None
        e = mos_pcap_writer_error(self.h)
        return e.decode(errors="replace") if e[0] else None

    def close(self):
        """Flush and close; OutputError naming the file if a write failed."""
        cdef char err[512]
        cdef int rc
        if self.h == NULL:
            return
        rc = mos_pcap_writer_close(self.h, err, sizeof(err))
        self.h = NULL
        if rc != 0:
            raise OutputError(err.decode(errors="replace"))


cdef int _attach(CoreEngine eng, list ports, peers) except -1:
    """Hand the engine the ports' tx ends and the forwarding pairs."""
    cdef int i, n = len(ports)
    if n == 0 or n > MAXPORTS:
        raise ValueError(f"need 1..{MAXPORTS} ports, got {n}")
    eng.set_peers(peers)
    for i in range(n):
        port = ports[i]
        if len(port) not in (4, 5):
            raise ValueError(f"port {i}: c_port() gave {len(port)} items, not "
                             "(handle, rx, rx_done, tx[, tx_handle])")
        eng._handle[i] = <void *><uintptr_t>(port[4] if len(port) == 5 else port[0])
        eng._tx[i] = <mos_tx_fn><uintptr_t>port[3]
    eng._attach_ports(n)
    return 0


cdef int _run_policy(CoreEngine eng):
    """on_handler_error 'auto' is 'log' for the length of a run (a handler's
    exception is counted and logged, the run goes on); returns the policy
    to restore after it."""
    cdef int old = eng._policy
    if eng._policy_auto:
        eng._policy = POLICY_LOG
    return old


def run_capture(CoreEngine eng, CaptureReader reader, PcapWriter writer=None, progress=None,
                Py_ssize_t limit=-1, bint close=True):
    """Feed a capture's frames to the engine, in bursts, at the frames' own
    time.  With ``writer`` the engine is an in-line box whose output port is
    the writer: every frame arrives on port 0 and leaves by the writer
    (drops, edits and injected frames applied).  Each frame is then its own
    burst: a capture holds the reply to a segment right behind it, where a
    box in the wire would have forwarded (and maybe edited) the segment
    before the reply could exist, and handlers judge edits on the flow's
    state at the end of the burst.  ``progress(offset, size)``
    is called now and then.  Returns the number of frames read; raises
    CaptureError for a corrupt file after processing the frames before the
    fault."""
    cdef mos_frame_t *frames = <mos_frame_t *>malloc(BURST * sizeof(mos_frame_t))
    cdef void *h = <void *>reader.h
    cdef int n, k, want, bursts = 0
    cdef Py_ssize_t done = 0
    if frames == NULL:
        raise MemoryError()
    if reader.h == NULL:
        free(frames)
        raise ValueError("the capture reader is closed")
    if eng.config.checksum == "auto":
        eng._decide_checksum(checksum_verdict(reader.path))
    cdef int policy = _run_policy(eng)
    # the reader holds the whole file until it closes: in digest mode the
    # engine may hash from the frames on another core (digestq.h); not in
    # a box, whose handlers may edit what the digests are to cover
    mos_engine_set_stable_frames(eng.e, writer is None)
    try:
        if writer is not None:
            # one box: the capture's side in, the writer out, both ways
            _attach(eng, [writer.c_port()], [0])
        while limit < 0 or done < limit:
            want = BURST if limit < 0 or limit - done > BURST else <int>(limit - done)
            n = mos_pcap_reader_rx(h, frames, want)
            if n < 0:
                break
            try:
                if writer is None:
                    eng._process(frames, n)
                else:
                    for k in range(n):
                        frames[k].iface = 0
                        eng._prx[0] += 1
                        eng._process(frames + k, 1)
            finally:
                mos_pcap_reader_rx_done(h)
            done += n
            bursts += 1
            if progress is not None and (bursts & 63) == 0:
                progress(reader.offset, reader.size)
        if progress is not None:
            progress(reader.offset, reader.size)
        if close:
            eng.close()
    finally:
        mos_engine_set_stable_frames(eng.e, 0)   # every hash done before the file goes
        eng._policy = policy
        if writer is not None:
            eng._detach_ports()
        free(frames)
    err = reader.error
    if err is not None:
        raise CaptureError(err)
    return done


def run_ports(CoreEngine eng, ports, peers, should_stop, status=None, double status_every=1.0,
              double check_every=0.05, fds=None, uint64_t idle_spin=1000,
              unsigned int idle_sleep_us=50, bursts=None, bint wall_time=True):
    """Forward between live ports until ``should_stop()`` returns true.

    ``ports``: [(handle, rx, rx_done, tx[, tx_handle]), ...] addresses from
    each port's c_port(); ``peers[i]``: the port frames arriving on port i leave by (-1
    for passive); ``bursts[i]``: frames per rx call (default 256).
    ``status(engine)`` is called every ``status_every`` seconds.  An idle
    loop spins ``idle_spin`` empty rounds, then with ``fds`` (the ports' file
    descriptors; their own rx should not wait: poll_ms 0) waits on them
    (1 ms) between rounds, else sleeps ``idle_sleep_us`` between rounds (0:
    never sleeps, as a DPDK poll-mode loop).  After each round (every 64th
    when busy) the engine is told the wall-clock time if its next deadline
    has passed (timers, idle timeouts); with ``wall_time`` false (capture
    ports) the frames' timestamps are the only time.  ``should_stop`` and
    ``status`` are looked at every ``check_every`` seconds.  A port whose rx returns < 0 has
    ended; the loop ends when every port has.
    Per packet, everything stays in C."""
    cdef int n = len(ports), i, cnt, k, live
    cdef mos_frame_t *frames
    cdef uint64_t loops = 0, idle = 0, now, last_check, last_status, wall
    cdef uint64_t check_ns = <uint64_t>(check_every * 1e9)
    cdef uint64_t status_ns = <uint64_t>(status_every * 1e9)
    cdef bint got
    cdef mos_rx_fn rx[MAXPORTS]
    cdef mos_rx_done_fn rxdone[MAXPORTS]
    cdef void *hnd[MAXPORTS]
    cdef int burst[MAXPORTS]
    cdef bint ended[MAXPORTS]
    cdef pollfd pfds[MAXPORTS]
    cdef int npfd = 0
    cdef mos_rx_fn rxf
    cdef void *hd
    _attach(eng, list(ports), peers)
    for fd in (fds or ())[:MAXPORTS]:
        pfds[npfd].fd = fd
        pfds[npfd].events = POLLIN
        npfd += 1
    for i in range(n):
        h, r, rd = ports[i][:3]
        hnd[i] = <void *><uintptr_t>h
        rx[i] = <mos_rx_fn><uintptr_t>r
        rxdone[i] = <mos_rx_done_fn><uintptr_t>rd
        burst[i] = BURST
        if bursts is not None and i < len(bursts) and bursts[i]:
            burst[i] = max(1, min(BURST, int(bursts[i])))
        ended[i] = False
    live = n
    frames = <mos_frame_t *>malloc(BURST * sizeof(mos_frame_t))
    if frames == NULL:
        eng._detach_ports()
        raise MemoryError()
    last_check = last_status = _clock_ns(CLOCK_MONOTONIC)
    cdef int policy = _run_policy(eng)
    try:
        while live > 0:
            got = False
            for i in range(n):
                if ended[i]:
                    continue
                rxf = rx[i]
                hd = hnd[i]
                with nogil:
                    cnt = rxf(hd, frames, burst[i])
                if cnt > 0:
                    got = True
                    for k in range(cnt):
                        frames[k].iface = i
                    eng._prx[i] += cnt
                    try:
                        eng._process(frames, cnt)
                    finally:
                        rxdone[i](hd)
                elif cnt < 0:
                    ended[i] = True
                    live -= 1
            loops += 1
            if got:
                idle = 0
                if (loops & 63) != 0:
                    continue
            else:
                idle += 1
                if npfd > 0:
                    if idle > idle_spin:
                        with nogil:
                            poll(pfds, npfd, 1)
                elif idle > idle_spin and idle_sleep_us > 0:
                    with nogil:
                        usleep(idle_sleep_us)
            now = _clock_ns(CLOCK_MONOTONIC)
            if wall_time:
                # timers are due to the millisecond (an idle round waits at
                # most 1 ms in poll), not to the next check_every: a hold
                # timer of an in-line app must not wait 50 ms
                wall = _clock_ns(CLOCK_REALTIME)
                if wall >= eng._deadline():
                    eng._tick(wall)
            if now - last_check >= check_ns:
                last_check = now
                if should_stop():
                    break
                if status is not None and now - last_status >= status_ns:
                    last_status = now
                    status(eng)
    finally:
        eng._policy = policy
        eng._detach_ports()
        free(frames)
    return eng.port_counters()
