# SeqMap: one direction's sequence translation after payload edits, for
# tests and tools (included by _engine.pyx).

cdef class SeqMap:
    """One direction's sequence translation after payload edits (seqmap.h),
    sans-I/O: what the engine applies to a flow's frames, for tests and tools.

    >>> m = SeqMap()
    >>> m.add(1000, 0, b"abc")            # 3 bytes inserted before byte 1000
    >>> m.out(1000), m.out(1010)          # segment starts, raw -> wire
    (1000, 1013)
    >>> m.rewrite(995, b"0123456789")     # a segment touching the edit
    (995, b'01234abc56789')
    >>> m.inn(1013), m.inn(1001)          # acknowledgements, wire -> raw
    (1010, 1000)
    """

    def __cinit__(self):
        mos_seqmap_init(&self.m)

    def __dealloc__(self):
        mos_seqmap_clear(&self.m)

    def add(self, seq, Py_ssize_t dele, ins=b"", bint after=False):
        """Raw bytes [seq, seq+dele) become ``ins``; ValueError if refused."""
        cdef bytes b = bytes(ins)
        rc = mos_seqmap_add(&self.m, <uint32_t>(seq & 0xffffffff), <uint32_t>dele,
                            <const uint8_t *>PyBytes_AS_STRING(b), <uint32_t>len(b), after)
        if rc < 0:
            raise ValueError(f"edit at {seq} refused (code {rc})")

    def acked(self, wire_ack):
        mos_seqmap_acked(&self.m, <uint32_t>(wire_ack & 0xffffffff))

    def out(self, seq):
        return mos_seqmap_out(&self.m, <uint32_t>(seq & 0xffffffff))

    def inn(self, ack):
        return mos_seqmap_in(&self.m, <uint32_t>(ack & 0xffffffff))

    def rewrite(self, seq, payload):
        """(wire seq, wire payload) of the raw segment starting at ``seq``."""
        cdef bytes p = bytes(payload)
        cdef uint32_t cap = len(p) + 70000 * self.m.n, wseq = 0, n
        cdef bytearray out = bytearray(cap)
        n = mos_seqmap_rewrite(&self.m, <uint32_t>(seq & 0xffffffff),
                               <const uint8_t *>PyBytes_AS_STRING(p), len(p),
                               <uint8_t *>PyByteArray_AS_STRING(out), cap, &wseq)
        return wseq, bytes(out[:n])

    @property
    def pending(self):
        """Edits not yet acknowledged."""
        return self.m.n

    @property
    def delta(self):
        """Wire minus raw past the acknowledged edits (signed)."""
        return self.m.delta - (1 << 32) if self.m.delta >= (1 << 31) else self.m.delta

    def rewrite_frame(self, frame, SeqMap peer=None, cap=None, int linktype=1):
        """The frame as it leaves after the edits: this map translates what
        its sender sends, ``peer`` the acknowledgements of the other way
        (rewrite.h).  b"" when nothing changes; ValueError when it cannot be
        written in ``cap`` bytes (default: the bound rewrite.h computes)."""
        cdef bytes f = bytes(frame)
        cdef uint32_t c = mos_rewrite_bound(&self.m, len(f)) if cap is None else cap
        cdef bytearray out = bytearray(c + 1)  # one guard byte past cap
        out[c] = 0xA5
        n = mos_rewrite_segment(&self.m, &peer.m if peer is not None else NULL, linktype,
                                <const uint8_t *>PyBytes_AS_STRING(f), len(f),
                                <uint8_t *>PyByteArray_AS_STRING(out), c)
        if out[c] != 0xA5:
            raise AssertionError("mos_rewrite_segment wrote past its cap")
        if n == 0xffffffff:
            raise ValueError(f"the frame cannot be rewritten in {c} bytes")
        return bytes(out[:n])

