# cython: language_level=3
"""A compiled stream consumer that finds literal byte strings in streams,
across segment boundaries, and raises a STREAM_NOTE per match.

The smallest complete example of the consumer interface (engine.h,
``Engine.add_consumer``): C callbacks fed each side's in-order bytes inside
the core, per-stream state in ``*cs.state``, notes raised with
``mos_cstream_note``; no Python runs for a stream with no match."""

from cpython.pycapsule cimport PyCapsule_New
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.stdlib cimport malloc, free, calloc
from libc.string cimport memcpy, memcmp

from mos.dualstack._cengine cimport mos_consumer_t, mos_cstream_t, mos_cstream_note

cdef extern from "<string.h>" nogil:
    void *memmem(const void *haystack, size_t hl, const void *needle, size_t nl)

DEF MAX_PATTERNS = 64
DEF MAX_LEN = 255


cdef struct lit_set:
    int n
    uint32_t maxlen
    uint32_t len[MAX_PATTERNS]
    uint8_t pat[MAX_PATTERNS][MAX_LEN]


cdef struct lit_stream:
    uint32_t ncarry                 # last bytes of the stream (< maxlen), for matches across chunks
    uint8_t carry[MAX_LEN]


cdef void _scan(lit_set *ls, mos_cstream_t *cs, const uint8_t *buf, size_t n, size_t starts,
                uint64_t buf_off) noexcept nogil:
    """Matches in buf[0:n] that start below `starts`; buf[0] is at stream
    offset buf_off.  Notes: code = pattern index, a = offset past the match."""
    cdef int i
    cdef const uint8_t *p
    cdef const uint8_t *hit
    cdef size_t pos
    for i in range(ls.n):
        pos = 0
        while pos < starts and pos + ls.len[i] <= n:
            hit = <const uint8_t *>memmem(buf + pos, n - pos, ls.pat[i], ls.len[i])
            if hit == NULL or <size_t>(hit - buf) >= starts:
                break
            pos = <size_t>(hit - buf)
            mos_cstream_note(cs, <uint32_t>i, buf_off + pos + ls.len[i], 0)
            pos += 1


cdef void _data(void *ctx, mos_cstream_t *cs, uint64_t off, const uint8_t *data,
                uint32_t length) noexcept nogil:
    cdef lit_set *ls = <lit_set *>ctx
    cdef lit_stream *st = <lit_stream *>cs.state[0]
    cdef uint8_t edge[2 * MAX_LEN]
    cdef size_t k, keep
    if st == NULL:
        st = <lit_stream *>calloc(1, sizeof(lit_stream))
        if st == NULL:
            return
        cs.state[0] = st
    if data == NULL:             # a gap: no match spans it
        st.ncarry = 0
        return
    # matches that start in the carry and end in this chunk
    if st.ncarry:
        k = length if length < ls.maxlen - 1 else ls.maxlen - 1
        memcpy(edge, st.carry, st.ncarry)
        memcpy(edge + st.ncarry, data, k)
        _scan(ls, cs, edge, st.ncarry + k, st.ncarry, off - st.ncarry)
    # matches within the chunk
    _scan(ls, cs, data, length, length, off)
    # the new carry: the stream's last maxlen - 1 bytes
    keep = ls.maxlen - 1
    if length >= keep:
        memcpy(st.carry, data + length - keep, keep)
        st.ncarry = <uint32_t>keep
    else:
        k = st.ncarry + length
        if k > keep:
            # drop the oldest carry bytes
            memcpy(edge, st.carry + (k - keep), st.ncarry - (k - keep))
            memcpy(st.carry, edge, st.ncarry - (k - keep))
            st.ncarry -= <uint32_t>(k - keep)
        memcpy(st.carry + st.ncarry, data, length)
        st.ncarry += length


cdef void _end(void *ctx, mos_cstream_t *cs) noexcept nogil:
    free(cs.state[0])
    cs.state[0] = NULL


cdef class Literal:
    """Find literal byte strings in each stream, across segment boundaries.

    >>> import mos
    >>> from mos.consumers import Literal
    >>> eng = mos.Engine()
    >>> lit = Literal([b"GET ", b"evil"])
    >>> cid = eng.add_consumer(lit, mos.Side.SERVER)   # what clients send
    >>> mon = mos.Monitor()
    >>> mon.on(mos.Event.STREAM_NOTE, lambda f, s, e: print(lit.patterns[f.event_info.code]))
    >>> eng.attach(mon)

    Each match raises ``Event.STREAM_NOTE`` with ``event_info.code`` = the
    pattern's index and ``event_info.a`` = the stream offset just past the
    match, with the packet that completed it as ``flow.packet``.  Up to 64
    patterns of 1 to 255 bytes; overlapping matches are all reported; the
    matches one chunk of bytes completes come pattern by pattern."""

    cdef lit_set *ls
    cdef mos_consumer_t c
    cdef readonly tuple patterns
    cdef readonly object mos_consumer

    def __cinit__(self, patterns):
        pats = tuple(bytes(p) for p in patterns)
        if not pats or len(pats) > MAX_PATTERNS:
            raise ValueError(f"Literal takes 1 to {MAX_PATTERNS} patterns, not {len(pats)}")
        for p in pats:
            if not 1 <= len(p) <= MAX_LEN:
                raise ValueError(f"pattern {p!r}: length {len(p)} not in 1..{MAX_LEN}")
        self.ls = <lit_set *>calloc(1, sizeof(lit_set))
        if self.ls == NULL:
            raise MemoryError()
        cdef int i
        cdef const uint8_t *src
        for i, p in enumerate(pats):
            src = p
            memcpy(self.ls.pat[i], src, len(p))
            self.ls.len[i] = len(p)
            if <uint32_t>len(p) > self.ls.maxlen:
                self.ls.maxlen = len(p)
        self.ls.n = len(pats)
        self.patterns = pats
        self.c.data = _data
        self.c.end = _end
        self.c.ctx = self.ls
        self.c.sides = 3
        self.c.lookback = 0
        self.mos_consumer = PyCapsule_New(&self.c, b"mos.consumer", NULL)

    def __dealloc__(self):
        free(self.ls)

    def __repr__(self):
        return f"Literal({list(self.patterns)!r})"
