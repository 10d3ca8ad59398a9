# Timers: user timers in capture (or wall) time, kept as deadlines in a heap
# (CoreEngine: state -> dispatch -> timers -> output -> input).

cdef class Timer:
    """A capture-time timer; cancel() stops it."""

    def cancel(self):
        self.cancelled = True

    def __lt__(self, Timer other):
        return (self.deadline, self.seq) < (other.deadline, other.seq)

    def __repr__(self):
        return f"<Timer at {self.deadline / 1e9:.6f}{' every %gs' % (self.period / 1e9) if self.period else ''}{' cancelled' if self.cancelled else ''}>"


cdef class _Timers(_Dispatch):
    """User timers: deadlines the input side honours between packets."""

    def __cinit__(self, *args, **kwargs):
        self._timers = []

    def set_timer(self, delay, callback, periodic=False):
        """Call callback(engine) after ``delay`` seconds of capture time (again
        every ``delay`` when periodic)."""
        return self._add_timer(delay, callback, None, periodic)

    def _add_timer(self, delay, callback, flow, periodic):
        if not callable(callback):
            raise TypeError(f"timer callback must be callable, not {callback!r}")
        check_call(callback, ("flow",) if flow is not None else ("engine",),
                   "timer callback")
        delay = float(delay)
        if not delay >= 0:
            raise ValueError(f"timer delay must be >= 0 seconds, not {delay!r}")
        if periodic and delay <= 0:
            raise ValueError("a periodic timer needs a delay > 0")
        cdef Timer t = Timer.__new__(Timer)
        # before the first packet there is no "now": count from the first
        # packet's time (rebased in _start)
        t.deadline = (mos_engine_now(self.e) if self._started else 0) + <uint64_t>(delay * 1e9)
        t.period = <uint64_t>(delay * 1e9) if periodic else 0
        t.callback = callback
        t.flow = flow
        t.monitor = self.cur_mon
        self._timer_seq += 1
        t.seq = self._timer_seq
        heapq.heappush(self._timers, t)
        return t

    cdef uint64_t _deadline(self):
        """Earliest of the next user timer, flow idle timeout and IP fragment
        timeout (nanoseconds; all ones when nothing is pending)."""
        cdef uint64_t t = self._next_deadline(), d = mos_engine_next_deadline(self.e)
        if not self._started:
            return 0 if t != _NO_DEADLINE else d  # timers count from the first packet
        return t if t < d else d

    def next_deadline(self):
        """When ``advance`` next has work (seconds, capture or wall time: a
        timer, a flow's idle timeout or an IP fragment's), or None: the
        runtime calls it then instead of on a fixed tick (smoltcp's poll_at)."""
        cdef uint64_t d = self._deadline()
        return None if d == _NO_DEADLINE else d / 1e9

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
            if self._disabled and _key(t.callback) in self._disabled:
                continue  # on_handler_error: disable-handler took it off
            if t.flow is not None:
                fo = t.flow
                if not fo.alive:
                    continue
                self.in_dispatch = True
                self.cur_flow = fo
                self.cur_mon = t.monitor
                # a timer's context: no packet, no event info
                self.cur.type = _EV_TIMER
                self.cur.pkt = MOS_NOPKT
                try:
                    t.callback(fo)
                except Exception as exc:
                    self._failed(t.callback, exc, "timer", fo, None)
                finally:
                    self.in_dispatch = False
                    self.cur_flow = None
                    self.cur_mon = 0
            else:
                try:
                    t.callback(self)
                except Exception as exc:
                    self._failed(t.callback, exc, "timer", None, None)
            if t.period and not t.cancelled:
                t.deadline += t.period
                if t.deadline <= now:  # a long quiet spell: coalesce the missed ticks
                    t.deadline += ((now - t.deadline) // t.period + 1) * t.period
                heapq.heappush(self._timers, t)
            self._dispatch()
            self._reap()
        return 0

    cdef _start(self, uint64_t t0):
        cdef Timer t
        self._started = True
        for t in self._timers:
            t.deadline += t0
        heapq.heapify(self._timers)
