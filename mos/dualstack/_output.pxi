# _Output: what leaves after a sub-burst: verdicts, modified and injected
# frames, payload edits translated in C, forwarding to the peer port
# (CoreEngine: state -> dispatch -> timers -> output -> input).

cdef class _Output(_Timers):
    """Forwarding decisions and in-line edits of each sub-burst."""

    def __cinit__(self, *args, **kwargs):
        self._txbuf = NULL
        for i in range(MAXPORTS):
            self._peer[i] = -1
        self._modified = {}
        self._injected = []
        self._output = []

    def __dealloc__(self):
        if self._txbuf != NULL:
            free(self._txbuf)
            self._txbuf = NULL

    cdef int _outputs(self, const mos_frame_t *frames, int c) except -1:
        """What leaves after a sub-burst: forwarded frames (to the peer of the
        port they came in on) and injected ones (out of the port named)."""
        cdef uint8_t *verdict = mos_engine_verdicts(self.e)
        cdef int k
        if self.nports > 0:
            self._forward(frames, c, verdict)
        if self.collect:
            for k in range(c):
                if verdict[k] == MOS_VERDICT_DROP:
                    self._output.append(("drop", frames[k].iface, None))
                    continue
                data = self._modified.get(k)
                if data is None:
                    data = PyBytes_FromStringAndSize(<const char *>frames[k].data, frames[k].caplen)
                if mos_engine_edited_flows(self.e):
                    pieces = self._edited(k, data)
                    if pieces is None:
                        self._output.append(("drop", frames[k].iface, None))
                        continue
                    for data in pieces:
                        self._output.append(("fwd", frames[k].iface, data))
                    continue
                self._output.append(("fwd", frames[k].iface, data))
            for iface, data in self._injected:
                self._output.append(("inject", iface, data))
        if self._modified:
            self._modified = {}
        if self._injected:
            self._injected = []
        return 0

    cdef bint _forwards(self, int iface):
        """Frames arriving on iface are sent on (in-line ports, or collect)."""
        if self.collect:
            return True
        return self.nports > 0 and 0 <= iface < MAXPORTS and self._peer[iface] >= 0

    cdef object _edited(self, int k, bytes data):
        """Frame k as it leaves a flow with payload edits: a list of frames
        (None: cannot, drop)."""
        cdef const uint8_t *out[64]
        cdef uint32_t lens[64]
        cdef int n = mos_engine_tx_frames(self.e, k, <const uint8_t *>PyBytes_AS_STRING(data),
                                          len(data), out, lens, 64)
        if n < 0:
            return None
        if n == 0:
            return [data]
        return [PyBytes_FromStringAndSize(<const char *>out[j], lens[j]) for j in range(n)]

    cdef int _forward(self, const mos_frame_t *frames, int c, uint8_t *verdict) except -1:
        """Per-burst transmit: no Python object per packet unless a handler
        modified or injected one."""
        cdef int k, o, sent, cnt
        cdef int counts[MAXPORTS]
        cdef mos_tx_fn txf
        cdef void *hnd
        cdef mos_frame_t *buf
        cdef mos_frame_t *slot
        cdef bint modified = len(self._modified) > 0
        cdef bint edited = mos_engine_edited_flows(self.e) > 0
        cdef const uint8_t *ed[64]
        cdef uint32_t edlen[64]
        cdef int npieces, j
        cdef bytes data
        keep = None
        memset(counts, 0, sizeof(counts))
        for k in range(c):
            if verdict[k] == MOS_VERDICT_DROP:
                self._pdrop[frames[k].iface] += 1
                continue
            o = self._peer[frames[k].iface]
            if o < 0:
                continue
            if counts[o] >= TXCAP:  # only pieces of cut segments can fill it
                self._ptxdrop[o] += 1
                continue
            slot = &self._txbuf[o * TXCAP + counts[o]]
            slot[0] = frames[k]
            if modified:
                obj = self._modified.get(k)
                if obj is not None:
                    data = obj
                    if keep is None:
                        keep = []
                    keep.append(data)
                    slot.data = <const uint8_t *>PyBytes_AS_STRING(data)
                    slot.caplen = slot.wirelen = len(data)
            if edited:
                # flows with length edits: numbers translated in C (rewrite.h),
                # a grown segment maybe cut in pieces
                npieces = mos_engine_tx_frames(self.e, k, slot.data, slot.caplen, ed, edlen,
                                               min(64, TXCAP - counts[o]))
                if npieces < 0:  # cannot be rewritten (engine counts rewrite_failed): dropped
                    self._pdrop[frames[k].iface] += 1
                    continue
                for j in range(npieces):
                    slot = &self._txbuf[o * TXCAP + counts[o] + j]
                    slot[0] = frames[k]
                    slot.data = ed[j]
                    slot.caplen = slot.wirelen = edlen[j]
                if npieces > 1:
                    counts[o] += npieces - 1
                    self._psplit[o] += npieces - 1
            counts[o] += 1
        for iface, obj in self._injected:
            o = iface
            if o < 0 or o >= self.nports or counts[o] >= TXCAP:
                continue
            data = obj
            if keep is None:
                keep = []
            keep.append(data)
            slot = &self._txbuf[o * TXCAP + counts[o]]
            memset(slot, 0, sizeof(mos_frame_t))
            slot.data = <const uint8_t *>PyBytes_AS_STRING(data)
            slot.caplen = slot.wirelen = len(data)
            slot.linktype = 1
            slot.ts_ns = mos_engine_now(self.e)  # a pcap writer stamps it with the box's time
            counts[o] += 1
            self._pinj[o] += 1
        for o in range(self.nports):
            if counts[o]:
                txf = self._tx[o]
                hnd = self._handle[o]
                buf = &self._txbuf[o * TXCAP]
                cnt = counts[o]
                with nogil:
                    sent = txf(hnd, buf, cnt)
                self._ptx[o] += sent
                self._ptxdrop[o] += counts[o] - sent
        return 0

    @property
    def mtu(self):
        """IP MTU of the in-line ports: a segment a payload edit grew past it
        (or past the receiver's MSS) is sent in pieces; header edits may not
        pass it.  1500 unless set."""
        return mos_engine_mtu(self.e)

    @mtu.setter
    def mtu(self, value):
        if not 576 <= value <= 65535:
            raise ValueError(f"mtu {value} is out of range 576..65535")
        mos_engine_set_mtu(self.e, value)

    def set_peers(self, peers):
        """peers[i]: the port frames arriving on port i leave by (-1: none, passive)."""
        if len(peers) > MAXPORTS:
            raise ValueError(f"at most {MAXPORTS} ports")
        for i in range(MAXPORTS):
            self._peer[i] = peers[i] if i < len(peers) else -1

    def peer_of(self, int iface):
        if iface < 0 or iface >= MAXPORTS:
            return -1
        return self._peer[iface]

    def port_counters(self):
        """Per in-line port: rx, tx, tx_dropped (not queued), dropped (by a
        handler, or a rewrite that failed), injected, split (extra frames: grown
        segments cut in pieces).  What left a port balances what arrived on its
        peer: tx + tx_dropped = peer rx - peer dropped + injected + split."""
        return [{"rx": self._prx[i], "tx": self._ptx[i], "tx_dropped": self._ptxdrop[i],
                 "dropped": self._pdrop[i], "injected": self._pinj[i], "split": self._psplit[i]}
                for i in range(self._nports_seen)]

    def inject(self, frame, int iface):
        """Send ``frame`` (bytes, Ethernet) out of port ``iface`` after this burst."""
        self._injected.append((iface, bytes(frame)))

    def take_output(self):
        """Outputs since the last call, with ``collect`` on: a list of
        (kind, iface, bytes), kind "fwd" (arrived on iface, goes to its peer),
        "drop" (bytes None... the original frame) or "inject" (leaves by iface)."""
        out = self._output
        self._output = []
        return out

    cdef int _attach_ports(self, int n) except -1:
        """The runtime attached n ports (their tx in _handle/_tx, peers set):
        frames are forwarded from now on."""
        if n <= 0 or n > MAXPORTS:
            raise ValueError(f"need 1..{MAXPORTS} ports, got {n}")
        if self._txbuf == NULL:
            self._txbuf = <mos_frame_t *>malloc(MAXPORTS * TXCAP * sizeof(mos_frame_t))
            if self._txbuf == NULL:
                raise MemoryError()
        self._nports_seen = n
        self.nports = n
        return 0

    cdef void _detach_ports(self):
        self.nports = 0
