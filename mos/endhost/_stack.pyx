# cython: language_level=3
"""mos.endhost._stack: the end host's network stack (stack.h), sans-I/O:
Ethernet frames in and out as bytes, time passed in (ns).  The socket and
epoll layers and the ports drive the same C code.

>>> from mos.endhost._stack import Stack
>>> a = Stack(mac="02:00:00:00:00:0a", addrs=["198.18.0.1/24"])
>>> b = Stack(mac="02:00:00:00:00:0b", addrs=["198.18.0.2/24"])
>>> ls = b.listen(80)
>>> c = a.connect("198.18.0.2", 80, now=0)
>>> _ = exchange(a, b, now=0)          # ARP, then the handshake
>>> cs = b.accept(ls)
>>> a.send(c, b"GET / HTTP/1.0\\r\\n\\r\\n"), exchange(a, b, now=1_000_000)[0] > 0
(18, True)
>>> b.recv(cs)
b'GET / HTTP/1.0\\r\\n\\r\\n'
"""

import ipaddress
import os
from socket import AF_INET as _AF_INET, AF_INET6 as _AF_INET6, inet_ntop as _inet_ntop

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int32_t, uintptr_t
from cpython.mem cimport PyMem_Malloc, PyMem_Free
from libc.string cimport memset, memcpy
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize

from mos.tcp._chost cimport (mos_tcp_host_t, mos_tcp_host_cfg_t, mos_tcp_host_cfg_default,
                             mos_tcp_host_readable)

cdef extern from "stack.h" nogil:
    enum:
        MOS_STACK_MAX_ADDRS
        MOS_SK_IN, MOS_SK_OUT, MOS_SK_ERR, MOS_SK_HUP, MOS_SK_RDHUP
    ctypedef struct mos_stack_addr_t:
        uint8_t ver, prefix
        uint8_t addr[16]
    ctypedef struct mos_stack_cfg_t:
        uint8_t mac[6]
        uint8_t naddrs
        mos_stack_addr_t addrs[8]
        uint8_t has_gw4, has_gw6
        uint8_t gw4[4]
        uint8_t gw6[16]
        uint16_t mtu
        uint32_t max_conns, max_time_wait, neigh_timeout_ms
        uint16_t eph_lo, eph_hi
        mos_tcp_host_cfg_t tcp
        uint64_t seed
        uint16_t nworkers, worker
        uint8_t responder
        uint8_t syncookies
    ctypedef struct mos_stack_t:
        pass
    ctypedef struct mos_stack_stats_t:
        uint64_t frames_in, frames_out, arp_in, arp_out, nd_in, nd_out, echo_replies
        uint64_t tcp_in, tcp_out, rst_out, syn_dropped, accept_overflow, bad_checksum
        uint64_t not_ours, malformed, no_route, neigh_drops, time_wait_evicted
        uint64_t syncookies_sent, syncookies_ok, syncookies_failed
        uint64_t tcp_rexmits, tcp_fast_rexmits, tcp_timeouts, tcp_probes, tcp_undos
        uint64_t tcp_wnd_resends, tcp_rcvbuf_grows
        uint32_t conns, listeners, time_wait, neighbours
    void mos_stack_cfg_default(mos_stack_cfg_t *cfg)
    mos_stack_t *mos_stack_new(const mos_stack_cfg_t *cfg)
    void mos_stack_free(mos_stack_t *st)
    void mos_stack_input(mos_stack_t *st, const uint8_t *frame, uint32_t len, uint64_t now)
    uint32_t mos_stack_output(mos_stack_t *st, uint8_t *buf, uint32_t cap, uint64_t now)
    uint32_t mos_stack_output_queued(mos_stack_t *st, uint8_t *buf, uint32_t cap)
    void mos_stack_flush_urgent(mos_stack_t *st, uint64_t now)
    void mos_stack_timer(mos_stack_t *st, uint64_t now)
    uint64_t mos_stack_deadline(const mos_stack_t *st)
    int mos_stack_listen(mos_stack_t *st, uint8_t ver, uint16_t port, uint32_t backlog)
    int mos_stack_accept(mos_stack_t *st, int lsock)
    int mos_stack_send(mos_stack_t *st, int sock, const uint8_t *data, uint32_t n)
    int mos_stack_recv(mos_stack_t *st, int sock, uint8_t *out, uint32_t n)
    int mos_stack_shutdown(mos_stack_t *st, int sock)
    int mos_stack_close(mos_stack_t *st, int sock)
    int mos_stack_abort(mos_stack_t *st, int sock)
    uint32_t mos_stack_events(const mos_stack_t *st, int sock)
    int mos_stack_error(const mos_stack_t *st, int sock)
    mos_tcp_host_t *mos_stack_tcp(mos_stack_t *st, int sock)
    int mos_stack_set_nodelay(mos_stack_t *st, int sock, int on)
    int mos_stack_set_buffers(mos_stack_t *st, int sock, uint32_t sndbuf, uint32_t rcvbuf)
    int mos_stack_connect_bufs(mos_stack_t *st, uint8_t ver, const uint8_t *dst, uint16_t dport,
                               uint16_t sport, uint64_t now, uint32_t sndbuf, uint32_t rcvbuf)
    int mos_stack_names(const mos_stack_t *st, int sock, uint8_t *ver, uint8_t *laddr,
                        uint16_t *lport, uint8_t *raddr, uint16_t *rport)
    uint32_t mos_stack_ready(mos_stack_t *st, int32_t *socks, uint32_t maxn)
    const mos_stack_stats_t *mos_stack_stats(mos_stack_t *st)

cdef extern from "capture.h" nogil:
    ctypedef struct mos_frame_t:
        const uint8_t *data
        uint32_t caplen, wirelen
        uint64_t ts_ns
        uint16_t linktype, iface

ctypedef int (*rx_fn)(void *h, mos_frame_t *frames, int max) noexcept nogil
ctypedef void (*rx_done_fn)(void *h) noexcept nogil
ctypedef int (*tx_fn)(void *h, const mos_frame_t *frames, int n) noexcept nogil

DEF PUMP_BURST = 64
DEF PUMP_FRAME = 2048

IN, OUT, ERR, HUP, RDHUP = MOS_SK_IN, MOS_SK_OUT, MOS_SK_ERR, MOS_SK_HUP, MOS_SK_RDHUP

_EVENT_NAMES = ((MOS_SK_IN, "IN"), (MOS_SK_OUT, "OUT"), (MOS_SK_ERR, "ERR"),
                (MOS_SK_HUP, "HUP"), (MOS_SK_RDHUP, "RDHUP"))


def event_names(int e):
    return [n for b, n in _EVENT_NAMES if e & b]


class StackError(OSError):
    """A stack call failed: ``errno`` as the socket module's errors."""


cdef int _check(int rc, str what) except -1:
    import os
    if rc < 0:
        raise StackError(-rc, f"{what}: {os.strerror(-rc)}")
    return rc


cdef bytes _mac(str text):
    parts = text.split(":")
    if len(parts) != 6:
        raise ValueError(f"mac: {text!r} is not six hex bytes separated by ':'")
    return bytes(int(p, 16) for p in parts)


cdef class Stack:
    """One stack: ``mac``, ``addrs`` ("198.18.0.1/24", "2001:db8::1/64"),
    optional ``gateway4`` / ``gateway6``, ``max_conns``, ``max_time_wait``,
    ``mtu``, ``seed`` (the ISN, port and SYN cookie secret; random if None),
    ``syncookies`` (0 never; 1, the default, when a listener's SYN queue is
    full; 2 always: RFC 4987 3.6, as Linux's tcp_syncookies), ``workers`` /
    ``worker`` / ``responder`` (several stacks on one port: stack.h), and TCP
    defaults as keyword options of mos.tcp._host.Host (``mss``, ``rcvbuf``,
    ``sndbuf``, ...)."""
    cdef mos_stack_t *st
    cdef mos_frame_t frames[PUMP_BURST]
    cdef uint8_t *txbuf
    cdef readonly uint64_t tx_dropped   # frames the port's tx did not take
    cdef uint32_t sndbuf_default, rcvbuf_default

    def __cinit__(self, str mac="02:00:00:00:00:01", addrs=(), gateway4=None, gateway6=None,
                  uint32_t max_conns=4096, uint32_t max_time_wait=1024, uint16_t mtu=1500,
                  seed=None, int syncookies=1, uint16_t workers=1, uint16_t worker=0,
                  bint responder=True, **tcp):
        cdef mos_stack_cfg_t c
        mos_stack_cfg_default(&c)
        m = _mac(mac)
        memcpy(c.mac, <const char *>m, 6)
        if len(addrs) > MOS_STACK_MAX_ADDRS:
            raise ValueError(f"addrs: at most {MOS_STACK_MAX_ADDRS} addresses")
        c.naddrs = 0
        for a in addrs:
            net = ipaddress.ip_interface(a)
            c.addrs[c.naddrs].ver = net.version
            c.addrs[c.naddrs].prefix = net.network.prefixlen
            memset(c.addrs[c.naddrs].addr, 0, 16)
            p = net.ip.packed
            memcpy(c.addrs[c.naddrs].addr, <const char *>p, len(p))
            c.naddrs += 1
        if gateway4 is not None:
            p = ipaddress.IPv4Address(gateway4).packed
            memcpy(c.gw4, <const char *>p, 4)
            c.has_gw4 = 1
        if gateway6 is not None:
            p = ipaddress.IPv6Address(gateway6).packed
            memcpy(c.gw6, <const char *>p, 16)
            c.has_gw6 = 1
        c.max_conns = max_conns
        c.max_time_wait = max_time_wait
        c.mtu = mtu
        # the RFC 6528 secret (ISNs) and where ephemeral ports start: random
        # unless given (a test's replay), or a restarted client would reuse
        # the tuples and sequence numbers its last run left with the peer
        c.seed = int.from_bytes(os.urandom(8), "little") if seed is None else seed
        if not workers or worker >= workers:
            raise ValueError(f"worker {worker} of {workers}: needs 0 <= worker < workers")
        c.nworkers, c.worker, c.responder = workers, worker, responder
        if syncookies not in (0, 1, 2):
            raise ValueError(f"syncookies: {syncookies!r} is not 0, 1 or 2")
        c.syncookies = syncookies
        for k, v in tcp.items():
            if k == "mss": c.tcp.mss = v
            elif k == "rcvbuf": c.tcp.rcvbuf = v
            elif k == "rcvbuf_max": c.tcp.rcvbuf_max = v
            elif k == "sndbuf": c.tcp.sndbuf = v
            elif k == "wscale": c.tcp.wscale = v
            elif k == "sack": c.tcp.sack = v
            elif k == "ts": c.tcp.ts = v
            elif k == "nodelay": c.tcp.nodelay = v
            elif k == "cubic": c.tcp.cubic = v
            elif k == "time_wait": c.tcp.time_wait = v
            elif k == "rto_min": c.tcp.rto_min = v
            elif k == "syn_retries": c.tcp.syn_retries = v
            elif k == "retries": c.tcp.retries = v
            else:
                raise TypeError(f"Stack: unknown option {k!r}")
        self.st = mos_stack_new(&c)
        self.sndbuf_default, self.rcvbuf_default = c.tcp.sndbuf, c.tcp.rcvbuf
        if self.st == NULL:
            raise MemoryError("Stack: no memory")

    def __dealloc__(self):
        if self.st != NULL:
            mos_stack_free(self.st)
            self.st = NULL
        PyMem_Free(self.txbuf)
        self.txbuf = NULL

    cdef long _out(self, void *h, tx_fn tx, uint64_t now, bint make) noexcept nogil:
        """Frames due leave by tx, in bursts (make: also those the
        connections have to make; else only the ones already made)."""
        cdef int n, sent
        cdef uint32_t flen
        cdef long nout = 0
        while True:
            n = 0
            while n < PUMP_BURST:
                if make:
                    flen = mos_stack_output(self.st, self.txbuf + n * PUMP_FRAME, PUMP_FRAME, now)
                else:
                    flen = mos_stack_output_queued(self.st, self.txbuf + n * PUMP_FRAME, PUMP_FRAME)
                if flen == 0:
                    break
                self.frames[n].data = self.txbuf + n * PUMP_FRAME
                self.frames[n].caplen = flen
                self.frames[n].wirelen = flen
                self.frames[n].ts_ns = 0
                self.frames[n].linktype = 1
                self.frames[n].iface = 0
                n += 1
            if n == 0:
                return nout
            sent = tx(h, self.frames, n)
            if sent < n:
                self.tx_dropped += n - (sent if sent > 0 else 0)
            nout += n
            if n < PUMP_BURST:
                return nout

    def pump(self, tuple port, uint64_t now, int burst=PUMP_BURST):
        """One round on a port given as its ``c_port()`` (handle, rx,
        rx_done, tx; native/port.h), all in C: timers due fire, every frame
        due leaves, then up to ``burst`` received frames go in.  Of what the
        frames in call for, data the ACKs let go, resends and the ACKs a
        sender needs at once (out of order, every second segment) leave
        before the round ends: that is ACK clocking, and a Python loop turn
        between would add to every round trip.  A lone ACK for a request
        leaves at the next pump, so a reply the application writes in
        between carries it.  Returns (frames in, frames out); frames in is
        -1 once the port has ended.

        The frames in are timed when they are read: ``now`` plus what the
        round took so far on the monotonic clock.  A burst out takes long
        enough on a veth that the first frames' ACKs are back before it
        ends, and timed at ``now`` they would give RTT samples of zero."""
        cdef void *h = <void *><uintptr_t>port[0]
        cdef rx_fn rx = <rx_fn><uintptr_t>port[1]
        cdef rx_done_fn rx_done = <rx_done_fn><uintptr_t>port[2]
        cdef tx_fn tx = <tx_fn><uintptr_t>port[3]
        cdef int i, got
        cdef long nout = 0
        cdef timespec t0, t1
        cdef uint64_t now_in
        if burst > PUMP_BURST:
            burst = PUMP_BURST
        if self.txbuf == NULL:
            self.txbuf = <uint8_t *>PyMem_Malloc(PUMP_BURST * PUMP_FRAME)
            if self.txbuf == NULL:
                raise MemoryError()
        with nogil:
            clock_gettime(CLOCK_MONOTONIC, &t0)
            mos_stack_timer(self.st, now)
            nout = self._out(h, tx, now, True)
            got = rx(h, self.frames, burst)
            if got > 0:
                clock_gettime(CLOCK_MONOTONIC, &t1)
                now_in = now + <uint64_t>((t1.tv_sec - t0.tv_sec) * 1000000000 +
                                          (t1.tv_nsec - t0.tv_nsec))
                for i in range(got):
                    mos_stack_input(self.st, self.frames[i].data, self.frames[i].caplen, now_in)
            if got >= 0:
                rx_done(h)      # self.frames point into the ring until here
            if got > 0:
                mos_stack_flush_urgent(self.st, now_in)
                nout += self._out(h, tx, now_in, False)
        return got, nout

    def input(self, frame, uint64_t now):
        cdef const uint8_t[:] v = frame
        if v.shape[0]:
            mos_stack_input(self.st, &v[0], <uint32_t>v.shape[0], now)

    def output(self, uint64_t now, int limit=100000):
        """Every frame due now."""
        cdef uint8_t buf[2048]
        cdef uint32_t n
        out = []
        while len(out) < limit:
            n = mos_stack_output(self.st, buf, sizeof(buf), now)
            if n == 0:
                break
            out.append((<char *>buf)[:n])
        return out

    def timer(self, uint64_t now):
        mos_stack_timer(self.st, now)

    @property
    def deadline(self):
        cdef uint64_t d = mos_stack_deadline(self.st)
        return d if d else None

    def listen(self, uint16_t port, uint32_t backlog=128, int version=0):
        return _check(mos_stack_listen(self.st, version, port, backlog), f"listen port {port}")

    def accept(self, int lsock):
        return _check(mos_stack_accept(self.st, lsock), "accept")

    def connect(self, str host, uint16_t port, uint64_t now, uint16_t sport=0,
                uint32_t sndbuf=0, uint32_t rcvbuf=0):
        ip = ipaddress.ip_address(host)
        p = ip.packed
        cdef uint8_t a[16]
        memset(a, 0, 16)
        memcpy(a, <const char *>p, len(p))
        return _check(mos_stack_connect_bufs(self.st, ip.version, a, port, sport, now, sndbuf,
                                             rcvbuf), f"connect {host} port {port}")

    def readable(self, int s):
        """Bytes ready to read on a connection (FIONREAD); 0 if it has none."""
        cdef mos_tcp_host_t *h = mos_stack_tcp(self.st, s)
        return mos_tcp_host_readable(h) if h != NULL else 0

    def unsent(self, int s):
        """Bytes written and not yet acknowledged (SIOCOUTQ)."""
        cdef mos_tcp_host_t *h = mos_stack_tcp(self.st, s)
        return h.sb_len if h != NULL else 0

    def default_buffers(self):
        """(sndbuf, rcvbuf) of new connections (the stack's TCP defaults)."""
        return self.sndbuf_default, self.rcvbuf_default

    def set_buffers(self, int s, uint32_t sndbuf=0, uint32_t rcvbuf=0):
        """SO_SNDBUF / SO_RCVBUF of a connection or a listener (0: unchanged)."""
        _check(mos_stack_set_buffers(self.st, s, sndbuf, rcvbuf), "setsockopt buffers")

    def buffers(self, int s):
        """(sndbuf, rcvbuf) of a connection."""
        cdef mos_tcp_host_t *h = mos_stack_tcp(self.st, s)
        if h == NULL:
            return None
        return h.cfg.sndbuf, h.cfg.rcvbuf

    def send(self, int s, data):
        cdef const uint8_t[:] v = data
        if v.shape[0] == 0:
            return 0
        return _check(mos_stack_send(self.st, s, &v[0], <uint32_t>v.shape[0]), "send")

    def recv(self, int s, uint32_t n=65536):
        out = PyBytes_FromStringAndSize(NULL, n)
        cdef int got = _check(mos_stack_recv(self.st, s, <uint8_t *>PyBytes_AS_STRING(out), n),
                              "recv")
        return out[:got]

    def shutdown(self, int s):
        _check(mos_stack_shutdown(self.st, s), "shutdown")

    def close(self, int s):
        _check(mos_stack_close(self.st, s), "close")

    def abort(self, int s):
        _check(mos_stack_abort(self.st, s), "abort")

    def set_nodelay(self, int s, bint on):
        _check(mos_stack_set_nodelay(self.st, s, on), "setsockopt TCP_NODELAY")

    def events(self, int s):
        return mos_stack_events(self.st, s)

    def error(self, int s):
        return mos_stack_error(self.st, s)

    def state(self, int s):
        cdef mos_tcp_host_t *h = mos_stack_tcp(self.st, s)
        if h == NULL:
            return None
        names = ("CLOSED", "LISTEN", "SYN_SENT", "SYN_RCVD", "ESTABLISHED", "FIN_WAIT_1",
                 "FIN_WAIT_2", "CLOSING", "TIME_WAIT", "CLOSE_WAIT", "LAST_ACK")
        return names[h.me.state]

    def names(self, int s):
        """((local address, port), (remote address, port))."""
        cdef uint8_t ver
        cdef uint8_t la[16]
        cdef uint8_t ra[16]
        cdef uint16_t lp, rp
        _check(mos_stack_names(self.st, s, &ver, la, &lp, ra, &rp), "names")
        if ver == 4:
            return ((_inet_ntop(_AF_INET, (<char *>la)[:4]), lp),
                    (_inet_ntop(_AF_INET, (<char *>ra)[:4]), rp))
        return ((_inet_ntop(_AF_INET6, (<char *>la)[:16]), lp),
                (_inet_ntop(_AF_INET6, (<char *>ra)[:16]), rp))

    def ready(self):
        cdef int32_t socks[1024]
        cdef uint32_t n
        out = []
        while True:
            n = mos_stack_ready(self.st, socks, 1024)
            out += [socks[i] for i in range(n)]
            if n < 1024:
                return out

    def stats(self):
        cdef const mos_stack_stats_t *s = mos_stack_stats(self.st)
        return {"frames_in": s.frames_in, "frames_out": s.frames_out, "arp_in": s.arp_in,
                "arp_out": s.arp_out, "nd_in": s.nd_in, "nd_out": s.nd_out,
                "echo_replies": s.echo_replies, "tcp_in": s.tcp_in, "tcp_out": s.tcp_out,
                "rst_out": s.rst_out, "syn_dropped": s.syn_dropped,
                "accept_overflow": s.accept_overflow, "bad_checksum": s.bad_checksum,
                "not_ours": s.not_ours, "malformed": s.malformed, "no_route": s.no_route,
                "neigh_drops": s.neigh_drops, "time_wait_evicted": s.time_wait_evicted,
                "syncookies_sent": s.syncookies_sent, "syncookies_ok": s.syncookies_ok,
                "syncookies_failed": s.syncookies_failed,
                "tcp_rexmits": s.tcp_rexmits, "tcp_fast_rexmits": s.tcp_fast_rexmits,
                "tcp_timeouts": s.tcp_timeouts, "tcp_probes": s.tcp_probes,
                "tcp_undos": s.tcp_undos, "tcp_wnd_resends": s.tcp_wnd_resends,
                "tcp_rcvbuf_grows": s.tcp_rcvbuf_grows,
                "conns": s.conns, "listeners": s.listeners, "time_wait": s.time_wait,
                "neighbours": s.neighbours}


def exchange(a, b, uint64_t now, int rounds=1000):
    """Move frames between two stacks wired back to back until neither has
    any (timers are the caller's); returns (frames moved, rounds)."""
    moved = 0
    for r in range(rounds):
        fa, fb = a.output(now), b.output(now)
        if not fa and not fb:
            return moved, r
        for f in fa:
            b.input(f, now)
        for f in fb:
            a.input(f, now)
        moved += len(fa) + len(fb)
    return moved, rounds
