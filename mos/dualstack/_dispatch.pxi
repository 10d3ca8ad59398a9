# _Dispatch: monitors, their dispatch tables, and the per-event walk that
# calls handlers (CoreEngine: state -> dispatch -> timers -> output -> input).

cdef int _reads_of(mon) except -1:
    """Sides a monitor reads (1 << side): its own word (Monitor.reads), or
    the sides of its CONN_NEW_DATA registrations for a monitor-like object
    without one."""
    r = getattr(mon, "reads", None)
    if r is None:
        m = mon.interest
        r = 0
        for s in range(2):
            if m >> (MOS_EV_NEW_DATA * 6 + MOS_HK_RECV * 2 + s) & 1:
                r |= 1 << s
    return int(r) & 3


cdef class _Dispatch(_EngineState):
    """Monitors and the handlers of each (event, hook, side)."""

    def __cinit__(self, *args, **kwargs):
        self.monitors = []
        self._table = [None] * NBITS
        self._pyflows = []
        self._reads = []
        self.cur_mon = 0

    def attach(self, monitor):
        """Add a monitor; its handlers see flows from now on."""
        if monitor in self.monitors:
            return monitor
        self.monitors.append(monitor)
        try:
            self._rebuild()
        except BaseException:
            self.monitors.remove(monitor)
            self._rebuild()
            raise
        monitor.bind(self)
        return monitor

    def _rebuild(self):
        cdef mos_interest_t words
        mask = 0
        table = [None] * NBITS
        reads = []
        for mi, mon in enumerate(self.monitors):
            for bit, node in mon.trees.items():
                ent = (mi, mon if mon.filter is not None else None, _compile(node))
                table[bit] = (table[bit] or ()) + (ent,)
            mask |= mon.interest
            reads.append(_reads_of(mon))
        _interest(mask, &words)
        self._table = table
        self._reads = reads
        mos_engine_set_interest(self.e, &words)
        cdef int allreads = 0
        for r in reads:
            allreads |= r
        mos_engine_set_reads(self.e, allreads)

    def reads(self, side):
        """True if some attached monitor reads ``side``'s bytes (Monitor.reads)."""
        cdef int s = _side_index(side)
        for r in self._reads:
            if r >> s & 1:
                return True
        return False

    cdef object _layer(self):
        if self.events_layer is None:
            raise RegistrationError("per-flow handlers and raised events need mos.Engine "
                                    "(this bare core has no events layer)")
        return self.events_layer

    cdef int _monitor_index(self, monitor) except -1:
        if monitor is None:
            return self.cur_mon
        try:
            return self.monitors.index(monitor)
        except ValueError:
            raise ValueError(f"{monitor!r} is not attached to this engine") from None

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
        # inside a burst, outputs still to come name the flows of its packets
        if self._in_burst:
            return 0
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
        mos_engine_reap(self.e)
        return 0

    def _raise(self, Flow flow, event, int side):
        layer = self._layer()
        if not isinstance(event, layer.UserEvent):
            raise RegistrationError(f"only user events can be raised, not {event!r}")
        if not self.in_dispatch:
            raise RuntimeError("raise_event works only inside a handler or filter")
        bit = layer.event_bit(event.root, Hook(self.cur.hook), side)
        chain = event.chain()
        trees = []
        mon = self.monitors[self.cur_mon]
        node = mon.trees.get(bit)
        if node is not None:
            trees.append(node)
        if flow._local_regs:
            for mi, reg in flow._local_regs:
                if mi == self.cur_mon:
                    t = layer.build_trees([reg]).get(bit)
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
