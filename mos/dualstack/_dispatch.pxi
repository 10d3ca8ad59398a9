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
        self._readsb = b""
        self.cur_mon = 0
        self._herr = {}
        self._hnames = {}
        self._disabled = set()
        self._tb_shown = set()

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
                tree = _compile(node, self._disabled)
                if not tree[0] and not tree[1]:  # every handler of it disabled
                    continue
                ent = (mi, mon if mon.filter is not None else None, tree)
                table[bit] = (table[bit] or ()) + (ent,)
            mask |= mon.interest
            reads.append(_reads_of(mon))
        if self._disabled:  # bits whose every handler is disabled cost nothing again
            for bit in range(NBITS):
                if table[bit] is None:
                    mask &= ~(1 << bit)
        _interest(mask, &words)
        self._table = table
        self._reads = reads
        self._readsb = bytes(reads)
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
        fo = Flow.__new__(_AppFlow)
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
            try:
                ok = mon.admits(fo)
            except Exception as exc:  # the monitor's filter callable is user code too
                self._failed(mon.filter, exc, "monitor filter", fo, None)
                ok = False
            if ok:
                fo._adm_yes |= bit
        return (fo._adm_yes & bit) != 0

    cdef int _walk(self, tuple tree, object flow, object side, object ev) except -1:
        cdef tuple handlers = <tuple>tree[0]
        for h in handlers:
            self.handler_calls += 1
            # a handler that raises is handed to the policy (on_handler_error);
            # the walk goes on with the next (the try costs ~30 instructions)
            try:
                h(flow, side, ev)
            except Exception as exc:
                self._failed(h, exc, "handler", flow, ev)
        for child in <tuple>tree[1]:
            filt = child[1]
            if filt is None:  # raised explicitly only (flow.raise_event)
                continue
            try:
                hit = filt(flow, side, ev)
            except Exception as exc:
                self._failed(filt, exc, "filter", flow, child[0])
                continue
            if hit:
                self._walk(<tuple>child[2], flow, side, child[0])
        return 0

    # ------------------------------------------------------- handler faults

    cdef int _failed(self, object fn, object exc, object what, object flow, object ev) except -1:
        """A handler (filter, timer callback) raised ``exc``: count it and
        apply on_handler_error.  Returns to go on (log, disable-handler);
        raises to end the run (stop: HandlerError; raise: ``exc`` itself,
        with a note naming the handler, the event, the flow and the packet)."""
        if isinstance(exc, HandlerError) or getattr(exc, "_mos_counted", False):
            raise exc  # a nested walk (raise_event) already counted and judged it
        key = _key(fn)
        n = self._herr.get(key, 0) + 1
        self._herr[key] = n
        self._herr_total += 1
        name = self._hnames.get(key)
        if name is None:
            name = self._hnames[key] = _qualname(fn)
        policy = self._policy
        if self._stopped:  # finishing a stopped run: count, log, go on
            policy = POLICY_LOG
        if policy == POLICY_LOG and n > _LOG_EVERY_UP_TO and (n & (n - 1)) != 0:
            return 0  # counted; the next line comes at the next power of two
        why = str(exc).strip().splitlines()
        first = f"{type(exc).__name__}: {why[0]}" if why else type(exc).__name__
        where = self._where(flow, ev)
        if policy == POLICY_RAISE:
            try:
                exc._mos_counted = True
                exc.add_note(f"mos: raised by {what} {name} at {where}")
            except AttributeError:  # an exception type without __dict__
                pass
            raise exc
        if policy == POLICY_STOP:
            self._stopped = True
            raise HandlerError(f"{what} {name} raised {first} at {where}; run stopped "
                               f"(on_handler_error: stop)", name, where) from exc
        line = f"mos: {what} {name} raised {first} at {where}"
        if policy == POLICY_DISABLE:
            line += "; disabled (on_handler_error: disable-handler)"
            self._disable(key)
        elif n > 1:
            line += f" (error {n} of this {what})"
        tb_key = (key, type(exc))
        if tb_key in self._tb_shown:
            _logger().error(line)
        else:  # the traceback once per handler and exception type
            self._tb_shown.add(tb_key)
            _logger().error(line, exc_info=(type(exc), exc, exc.__traceback__))
        return 0

    def _where(self, flow, ev):
        """'EVENT (hook, side) flow N 5-tuple, packet P': where a handler failed."""
        cdef uint64_t frames = mos_engine_counters(self.e).frames
        if not self.in_dispatch:
            evs = "timer" if ev is None else getattr(ev, "name", repr(ev))
            ctx = evs
        elif self.cur.type == _EV_TIMER:
            ctx = "timer"
        else:
            if ev is None:
                ev = _EVENTS[self.cur.type]
            ctx = (f"event {getattr(ev, 'name', repr(ev))} "
                   f"({Hook(self.cur.hook).name}, {_SIDES[self.cur.side].name})")
        if isinstance(flow, Flow):
            try:
                tup = f"tcp {flow.client_addr} -> {flow.server_addr}"
            except FlowClosedError:
                tup = "(ended)"
            ctx += f", flow {(<Flow>flow)._id} {tup}"
        elif isinstance(flow, Packet):
            try:
                ctx += (f", no flow, tcp {flow.src}:{flow.sport} -> {flow.dst}:{flow.dport}")
            except RuntimeError:
                pass
        if self.in_dispatch and self.cur.type != _EV_TIMER and self.cur.pkt != MOS_NOPKT:
            ctx += f", packet {self._burst_base + self.cur.pkt + 1}"
        else:
            ctx += f", after packet {frames}"
        return ctx

    cdef _disable(self, key):
        """Unregister a handler (filter, timer callback) from this engine:
        every dispatch table and per-flow table it is in is rebuilt without it."""
        cdef Flow fo
        cdef mos_flow_t *f
        self._disabled.add(key)
        self._rebuild()
        for obj in self._pyflows:
            if obj is None:
                continue
            fo = obj
            if fo._local_regs:
                f = mos_engine_flow(self.e, fo.slot, fo.gen)
                if f != NULL:
                    fo._rebuild_local(f)

    @property
    def on_handler_error(self):
        """The policy in effect for handler exceptions (Config.on_handler_error;
        'auto' reads 'raise', and is 'log' while a run lasts).  Setting it
        overrides the configuration for this engine (an app may, in attach)."""
        return _POLICY_NAMES[self._policy]

    @on_handler_error.setter
    def on_handler_error(self, value):
        if value not in _POLICIES:
            raise ValueError(f"on_handler_error: {value!r} is not one of "
                             + ", ".join(_POLICIES))
        self._policy = _POLICIES[value]
        self._policy_auto = value == "auto"

    def _handler_error_total(self):
        return self._herr_total

    def handler_errors(self):
        """{handler qualified name: exceptions it raised} (filters and timer
        callbacks included); two handlers of one name are summed."""
        out = {}
        for key, n in self._herr.items():
            name = self._hnames[key]
            out[name] = out.get(name, 0) + n
        return out

    def disabled_handlers(self):
        """Qualified names of the handlers disabled by on_handler_error: disable-handler."""
        return sorted({self._hnames[k] for k in self._disabled})

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
                self._walk(_compile(target, self._disabled), flow, _SIDES[side], event)

    def current_packet(self):
        """The packet behind the event being handled (None for an event with
        no packet); HandlerContextError outside a handler."""
        if not self.in_dispatch:
            raise HandlerContextError("flow.packet exists only while a handler runs "
                                      "(copy what you need from it inside the handler)")
        return self._packet_or_none()

    cdef object _packet_or_none(self):
        cdef Packet pkt
        if not self.in_dispatch or self.cur.type == _EV_TIMER or self.cur.pkt == MOS_NOPKT:
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
            raise HandlerContextError("flow.event_info exists only while a handler runs")
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
        if t == MOS_EV_STREAM_NOTE:
            return StreamNote(self.cur.reason, self.cur.aux, self.cur.a, self.cur.b)
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
