# Flow: the handler's view of a tracked flow, its buffers and per-flow
# controls (included by _engine.pyx; fields in _engine.pxd).

# SHA-256 of no bytes (FIPS 180-4): a digest-mode flow that never carried any
_SHA256_EMPTY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def flow_attribute(name, getter):
    """Add ``flow.<name>``: ``getter(flow)`` gives its value (an application
    layer's view of the flow, e.g. ``flow.http``).  A name Flow already has
    is refused."""
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"flow attribute name must be an identifier, not {name!r}")
    if hasattr(Flow, name):
        raise ValueError(f"Flow already has an attribute {name!r}")
    if not callable(getter):
        raise TypeError(f"getter for flow.{name} must be callable, not {getter!r}")
    setattr(_AppFlow, name, property(getter, doc=getattr(getter, "__doc__", None)))


cdef class Flow:
    """A tracked TCP flow: both endpoint models, both receive buffers.

    Handlers receive it as their first argument.  ``peek``/``ppeek`` read
    the bytes a side *received* (Side.SERVER: what the client sent)."""

    cdef mos_flow_t *_f(self) except NULL:
        cdef mos_flow_t *f = mos_engine_flow(self.engine.e, self.slot, self.gen)
        if f == NULL:
            raise FlowClosedError(f"flow {self._id} has ended; "
                                  "its state is gone (keep what you need in CONN_END)")
        return f

    cdef mos_flow_t *_live(self, str what) except NULL:
        """The flow, for an operation that needs it live: refused once the flow
        has ended, even in the burst it ended in (where its state is still
        readable, e.g. by CONN_END handlers)."""
        cdef mos_flow_t *f = mos_engine_flow(self.engine.e, self.slot, self.gen)
        cdef int r
        if f == NULL or f.flags & MOS_FF_DYING:
            r = f.end_reason if f != NULL else self._end_reason
            why = f" ({EndReason(r).name})" if r else ""
            raise FlowClosedError(f"flow {self._id} has ended{why}: {what} needs a live flow")
        return f

    cdef _fill_cache(self):
        cdef mos_flow_t *f = self._f()
        self._id = f.id
        self._first_ts = f.first_ts

    cdef tuple _addrs(self):
        """(ipver, client ip, server ip, client port, server port), made on first use."""
        cdef mos_flow_t *f
        if self._cache is None:
            f = self._f()
            self._cache = (f.ipver, _addr(f.ipver, f.caddr), _addr(f.ipver, f.saddr),
                           f.cport, f.sport)
        return self._cache

    @property
    def id(self):
        return self._id

    @property
    def hash(self):
        """The flow table's symmetric hash of this flow's addresses and ports,
        keyed afresh each run (the same for both directions)."""
        return self._f().hash

    @property
    def ipver(self):
        return self._addrs()[0]

    @property
    def client_ip(self):
        return self._addrs()[1]

    @property
    def server_ip(self):
        return self._addrs()[2]

    @property
    def client_port(self):
        return self._addrs()[3]

    @property
    def server_port(self):
        return self._addrs()[4]

    @property
    def client_addr(self):
        a = self._addrs()
        return f"[{a[1]}]:{a[3]}" if a[0] == 6 else f"{a[1]}:{a[3]}"

    @property
    def server_addr(self):
        a = self._addrs()
        return f"[{a[2]}]:{a[4]}" if a[0] == 6 else f"{a[2]}:{a[4]}"

    @property
    def uctx(self):
        """Free per-flow slot for the handlers of the current monitor (each
        monitor has its own, so two apps never clash); None at first."""
        cdef int mi = self.engine.cur_mon
        if self._uctx is None or mi >= len(self._uctx):
            return None
        return self._uctx[mi]

    @uctx.setter
    def uctx(self, value):
        cdef int mi = self.engine.cur_mon
        # set while the flow's state is readable (its CONN_END handlers may
        # still set it); afterwards nothing would ever read it
        if mos_engine_flow(self.engine.e, self.slot, self.gen) == NULL:
            raise FlowClosedError(f"flow {self._id} has ended: its uctx can no longer be set")
        if self._uctx is None:
            self._uctx = []
        while len(self._uctx) <= mi:
            self._uctx.append(None)
        self._uctx[mi] = value

    def uctx_of(self, monitor):
        """The user context ``monitor``'s handlers keep on this flow."""
        cdef int mi = self.engine._monitor_index(monitor)
        if self._uctx is None or mi >= len(self._uctx):
            return None
        return self._uctx[mi]

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
        return self._first_ts / 1e9

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
        """The packet behind the event being handled (None for events with no
        packet: CONN_END, TIMEOUT, timers); HandlerContextError outside a handler."""
        return self.engine.current_packet()

    @property
    def event_info(self):
        """Details of the event being handled: StateChange, ErrorInfo, EndInfo,
        NewData, Rexmit or None; HandlerContextError outside a handler."""
        return self.engine.current_info()

    # ---------------------------------------------------------------- buffers

    def __dealloc__(self):
        if self._rd != self._rd0:
            free(self._rd)

    cdef uint64_t *_offs(self, int mi) except NULL:
        """Monitor mi's two read offsets [client, server]; from this call on
        the monitor has read this flow (entries of monitors that never did
        hold _NEVER_READ)."""
        cdef uint64_t *rd
        cdef uint32_t k
        if <uint32_t>mi >= self._nrd:
            if mi == 0:         # the usual one monitor: no allocation, no cache miss more
                rd = self._rd0
            elif self._rd == self._rd0:
                rd = <uint64_t *>malloc(2 * (mi + 1) * sizeof(uint64_t))
                if rd == NULL:
                    raise MemoryError()
                for k in range(2 * self._nrd):
                    rd[k] = self._rd0[k]
            else:
                rd = <uint64_t *>realloc(self._rd, 2 * (mi + 1) * sizeof(uint64_t))
                if rd == NULL:
                    raise MemoryError()
            for k in range(2 * self._nrd, 2 * (mi + 1)):
                rd[k] = _NEVER_READ
            self._rd = rd
            self._nrd = mi + 1
        rd = self._rd + 2 * mi
        if rd[0] == _NEVER_READ:
            rd[0] = rd[1] = 0
        return rd

    cdef void _update_consumed(self, mos_flow_t *f, int s):
        """Bytes every monitor that reads side s (Monitor.reads) has read
        are released (ppeek can no longer reach them); such a monitor that
        has not read this flow yet holds them.  A monitor that reads no side
        holds nothing: its bytes would sit in the buffer until it overran.
        With no reader declared (a per-flow CONN_NEW_DATA handler), the
        monitors that have read this flow decide."""
        cdef uint64_t lo = 0xffffffffffffffffULL
        cdef uint64_t o
        cdef bytes readsb = self.engine._readsb
        cdef const unsigned char *reads = readsb
        cdef Py_ssize_t mi, nreads = len(readsb), nmon = len(self.engine.monitors)
        cdef bint declared = False
        for mi in range(nmon):
            if mi < nreads and not (reads[mi] >> s) & 1:
                continue
            declared = True
            o = self._rd[2 * mi + s] if <uint32_t>mi < self._nrd else _NEVER_READ
            if o == _NEVER_READ:
                o = 0
            if o < lo:
                lo = o
        if not declared:
            for mi in range(self._nrd):
                o = self._rd[2 * mi + s]
                if o != _NEVER_READ and o < lo:
                    lo = o
        if lo != f.ep[s].consumed:
            mos_flow_consumed(self.engine.e, f, s, lo)

    cdef int _check_read(self, mos_flow_t *f, int s, str what) except -1:
        """A side nobody reads keeps no bytes: reading it is a mistake that
        would otherwise look like an empty stream."""
        if mos_flow_reads(self.engine.e, f, s):
            return 0
        name = "CLIENT" if s == 0 else "SERVER"
        raise RegistrationError(
            f"flow.{what}(Side.{name}): no monitor reads this side, so its bytes are not "
            f"kept; give the reading monitor a CONN_NEW_DATA handler for Side.{name} or "
            f"create it with Monitor(reads=Side.{name})")

    def peek(self, side, Py_ssize_t n=-1, monitor=None):
        """Read up to n new in-order bytes that ``side`` received, from this
        monitor's read offset, and advance it.  Returns b"" when nothing is
        new.  Stops at a gap; the next call resumes after it (the gap was
        reported by an ERROR event with reason GAP)."""
        cdef int s = _side_index(side)
        cdef mos_flow_t *f = self._f()
        self._check_read(f, s, "peek")
        cdef mos_rbuf_t *rb = &f.ep[s].rbuf
        cdef int mi = self.engine.cur_mon if monitor is None else self.engine._monitor_index(monitor)
        cdef uint64_t *offs = self._offs(mi)
        cdef uint64_t off = offs[s]
        cdef const mos_span_t *g
        cdef uint64_t avail
        if off < rb.base:
            off = rb.base  # overrun: those bytes are gone (an ERROR OVERRUN said so)
        g = mos_rbuf_gap_after(rb, off) if rb.ngaps else NULL
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
        self._check_read(f, s, "ppeek")
        if n <= 0:
            return b""
        if n > 0x7fffffff:
            n = 0x7fffffff
        out = PyBytes_FromStringAndSize(NULL, n)
        cdef uint32_t got = mos_rbuf_copy(&f.ep[s].rbuf, offset, <uint8_t *>PyBytes_AS_STRING(out), <uint32_t>n)
        return out[:got] if got != <uint32_t>n else out

    def acked(self, side):
        """Stream offset up to which ``side`` has acknowledged what it
        received (0 while unknown).  Bytes below it are final: with the
        'last' overlap policy, newer bytes can replace held ones only above
        it (a receiver never takes acknowledged bytes again)."""
        return mos_flow_acked(self._f(), _side_index(side))

    def read_offset(self, side, monitor=None):
        """This monitor's read offset in ``side``'s stream."""
        cdef int s = _side_index(side)
        return self._offs(self.engine._monitor_index(monitor))[s]

    def fragments(self, side):
        """Out-of-order data held above the in-order frontier: [(offset, length), ...]."""
        cdef mos_rbuf_t *rb = &self._f().ep[_side_index(side)].rbuf
        return [(rb.runs[i].off, rb.runs[i].len) for i in range(rb.nruns)]

    def wire(self, side):
        """(frames, bytes) ``side`` sent, as seen on the wire: every frame of
        the flow counted, link header included (Suricata's pkts_toserver /
        bytes_toserver for the client)."""
        cdef mos_flow_t *f = self._f()
        cdef int s = _side_index(side)
        return (f.wire_pkts[s], f.wire_bytes[s])

    def consumed_to(self, side):
        """Stream offset up to which the compiled consumers (Engine.add_consumer)
        have been fed ``side``'s stream; -1 before their first byte."""
        return mos_flow_consumed_to(self._f(), _side_index(side))

    def consumer_state(self, int consumer, side):
        """Compiled consumer ``consumer``'s state for ``side`` of this flow, as
        a PyCapsule named "mos.cstate" (None if it set none), for that
        consumer's own compiled module to read (e.g. mos.app.http)."""
        cdef void *st = mos_flow_consumer_state(self._f(), consumer, _side_index(side))
        if st == NULL:
            return None
        return PyCapsule_New(st, b"mos.cstate", NULL)

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
            if self.engine.config.digest:  # no stream byte yet: nothing hashed
                return _SHA256_EMPTY
            raise RuntimeError("stream digests are off: Config(digest=True) turns them on")
        mos_flow_digest_wait(f)
        copy = f.digest[s].sha
        mos_sha256_final(&copy, out)
        return PyBytes_FromStringAndSize(<const char *>out, 32).hex()

    def streams_record(self):
        """The two JSON lines ``mos streams`` prints for this flow, client to
        server first: addresses, direction, bytes hashed, SHA-256, gaps,
        both endpoint states (and ``lost`` when bytes were lost before
        hashing).  Formatted here rather than with json.dumps: every string
        is ASCII with nothing to escape, and at tens of thousands of flows
        a second the per-flow Python was a tenth of the command's time."""
        cdef mos_flow_t *f = self._f()
        cdef mos_sha256_t copy
        cdef uint8_t out[32]
        cdef int s, i
        cdef mos_rbuf_t *rb
        if f.digest == NULL and not self.engine.config.digest:
            raise RuntimeError("stream digests are off: Config(digest=True) turns them on")
        a = self._addrs()
        if a[0] == 6:
            head = f'{{"client": "[{a[1]}]:{a[3]}", "server": "[{a[2]}]:{a[4]}", "direction": '
        else:
            head = f'{{"client": "{a[1]}:{a[3]}", "server": "{a[2]}:{a[4]}", "direction": '
        tail = (f', "client_state": "{_STATES[f.ep[0].state].name}", '
                f'"server_state": "{_STATES[f.ep[1].state].name}"')
        lines = []
        for s in (1, 0):  # c2s is what the server received
            rb = &f.ep[s].rbuf
            if rb.ngaps:
                gj = "[" + ", ".join([f"[{rb.gaps[i].off}, {rb.gaps[i].len}]"
                                      for i in range(rb.ngaps)]) + "]"
            else:
                gj = "[]"
            if f.digest == NULL:
                hashed, lost, sha = 0, 0, _SHA256_EMPTY
            else:
                mos_flow_digest_wait(f)
                hashed, lost = f.digest[s].hashed_bytes, f.digest[s].lost
                copy = f.digest[s].sha
                mos_sha256_final(&copy, out)
                sha = PyBytes_FromStringAndSize(<const char *>out, 32).hex()
            line = (f'{head}"{"c2s" if s == 1 else "s2c"}", "bytes": {hashed}, '
                    f'"sha256": "{sha}", "gaps": {gj}{tail}')
            lines.append(line + (f', "lost": {lost}}}' if lost else "}"))
        return lines[0], lines[1]

    def digest_info(self, side):
        """(bytes hashed, bytes lost before hashing) in digest mode."""
        cdef mos_flow_t *f = self._f()
        cdef int s = _side_index(side)
        if f.digest == NULL:
            return (0, 0) if self.engine.config.digest else None
        return (f.digest[s].hashed_bytes, f.digest[s].lost)

    # ---------------------------------------------------------------- control

    def set_buffer_size(self, side, size):
        """Receive buffer size for one side (or Side.BOTH), bytes; 0 stops buffering."""
        cdef mos_flow_t *f = self._f()
        size = int(size)
        if size < 0 or size > MAX_BUFFER:
            raise ValueError(f"buffer size {size} out of range 0..{MAX_BUFFER}")
        for s in _sides_of(side):
            mos_flow_set_buffer(self.engine.e, f, s, size)

    def set_overlap(self, side, policy):
        """Overlap policy of the stream ``side`` receives (or Side.BOTH): a
        name of mos.tcp.overlap.NAMES, e.g. per receiving host's OS."""
        cdef mos_flow_t *f = self._f()
        cdef int code = _overlap_code(policy)
        for s in _sides_of(side):
            mos_rbuf_set_policy(&f.ep[s].rbuf, code)

    def overlap(self, side):
        """The overlap policy (behaviour name) of the stream ``side`` receives."""
        return _overlap_name(self._f().ep[_side_index(side)].rbuf.policy)

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
        cdef mos_flow_t *f = self._live("on()")
        mi = self.engine._monitor_index(monitor)
        if self._local_regs is None:
            self._local_regs = []
        reg = self.engine._layer().Registration(event, handler, hook, side)
        self._local_regs.append((mi, reg))
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
        cdef mos_interest_t words
        mask = 0
        by_mon = {}
        for mi, reg in self._local_regs:
            by_mon.setdefault(mi, []).append(reg)
        for mi, regs in by_mon.items():
            trees = self.engine._layer().build_trees(regs)
            for bit, node in trees.items():
                tree = _compile(node, self.engine._disabled)
                if not tree[0] and not tree[1]:  # every handler of it disabled
                    continue
                local[bit] = local.get(bit, ()) + ((mi, tree),)
                mask |= 1 << bit
        _interest(mask, &words)
        if mos_flow_set_interest(self.engine.e, f, &words) < 0:
            raise MemoryError("no memory for this flow's own handlers")
        self._local = local or None

    def raise_event(self, event, side):
        """Fire a user event now, for this flow and side, to the current
        monitor's handlers of it (used by filters that find several things,
        e.g. one child event per matched pattern)."""
        self.engine._raise(self, event, _side_index(side))

    def set_timer(self, delay, callback, periodic=False):
        """Call callback(flow) after ``delay`` seconds of capture time (again
        every ``delay`` if periodic) while the flow lives."""
        self._live("set_timer()")
        return self.engine._add_timer(delay, callback, self, periodic)

    def drop(self):
        """Do not forward the packet behind the current event."""
        pkt = self.engine.current_packet()
        if pkt is None:
            raise RuntimeError("drop() needs an event tied to a packet")
        self._live("drop()")
        pkt.drop()

    def block(self):
        """Drop the packet behind the current event (if any) and every later
        packet of this flow (in-line; counted in counters()["blocked"]).  The
        endpoints see nothing more of it, so the flow ends by idle timeout;
        an IDS's ``drop`` action."""
        self._live("block()")
        pkt = self.engine._packet_or_none()
        if pkt is not None:
            pkt.drop()
        mos_flow_block(self.engine.e, self._f())

    def reset(self):
        """Reset the connection: a RST to each end with the sequence number it
        expects next (RFC 9293 3.10.7.4, RFC 5961 3.2), the packet behind the
        current event is dropped, and the flow ends (CONN_END, reason RST).
        In-line only for the RSTs: they need the current packet's link header."""
        self._live("reset()")
        pkt = self.engine._packet_or_none()
        if pkt is not None:
            from mos.dualstack.craft import reset_frames
            for iface, frame in reset_frames(self, pkt):
                self.engine.inject(frame, iface)
            pkt.drop()
        mos_engine_end_flow(self.engine.e, self.slot, MOS_END_RST)

    def wire_seq(self, int side, seq):
        """Sequence number ``seq`` sent by ``side`` as the other end sees it
        (differs from ``seq`` once a handler changed payload lengths)."""
        cdef mos_flow_t *f = self._f()
        return mos_flow_wire_seq(f, 1 if side else 0, <uint32_t>(seq & 0xffffffff))

    @property
    def ifaces(self):
        """(port facing the client, port facing the server)."""
        cdef mos_flow_t *f = self._f()
        return (f.iface[0], f.iface[1])

    def __repr__(self):
        try:
            st = f"{self.client.state.name}/{self.server.state.name}"
        except FlowClosedError:
            st = "ended"
        if self._cache is None and not self.alive:
            return f"<Flow {self._id} ended>"
        return f"<Flow {self._id} {self.client_addr} -> {self.server_addr} {st}>"


class _AppFlow(Flow):
    """The flows handlers get: Flow plus the attributes application layers
    add (flow_attribute), as properties of this class.  A __getattr__ on
    Flow would do the same, but a type with its own attribute lookup loses
    CPython's fast method call: every ``flow.peek(side)`` would build a
    bound method (and feed the cyclic GC)."""
    __slots__ = ()


_AppFlow.__name__ = _AppFlow.__qualname__ = "Flow"  # what users and messages see
_AppFlow.__module__ = Flow.__module__
