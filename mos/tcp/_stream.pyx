# cython: language_level=3
"""The reassembly buffer (rbuf.c) on its own: tests, tools and benchmarks."""
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.stdlib cimport malloc, free
from libc.string cimport memset
from cpython.bytes cimport PyBytes_FromStringAndSize

from mos.tcp._rbuf cimport *

import time

MAX_RUNS = MOS_RBUF_MAX_RUNS
MAX_GAPS = MOS_RBUF_MAX_GAPS
MAX_LIMIT = MOS_RBUF_MAX_LIMIT
BLOCK = MOS_RBUF_BLOCK

from mos.tcp import overlap as _overlap

#: the C enum, for tests that it agrees with mos.tcp.overlap.CODES
C_POLICIES = {"first": MOS_OVERLAP_FIRST, "last": MOS_OVERLAP_LAST, "bsd": MOS_OVERLAP_BSD,
              "linux": MOS_OVERLAP_LINUX, "old-linux": MOS_OVERLAP_OLD_LINUX,
              "solaris": MOS_OVERLAP_SOLARIS}


cdef dict _result(mos_rbuf_result_t *r):
    return {
        "new_inorder": r.new_inorder,
        "overlap": r.overlap,
        "overlap_diff": r.overlap_diff,
        "dropped_old_from": r.dropped_old_from,
        "dropped_old_to": r.dropped_old_to,
        "dropped_new": r.dropped_new,
        "below_base": r.below_base,
        "gaps_added": r.gaps_added,
        "runs_dropped": r.runs_dropped,
        "in_gap": r.in_gap,
        "refused": r.refused,
    }


cdef list _spans(const mos_span_t *s, unsigned n):
    return [(s[i].off, s[i].len) for i in range(n)]


cdef class StreamBuffer:
    """One direction's receive buffer: StreamBuffer(limit, policy="first"), the
    policy one of mos.tcp.overlap.NAMES.

    start (default 0) places base and head at that stream offset, as an
    engine would for a stream it picks up mid-way.  memcap (default 0: none)
    caps the bytes its blocks may take, as an engine's reassembly memcap
    caps all its flows' buffers together.

    >>> b = StreamBuffer(1 << 20)
    >>> b.insert(900_000, b"x")["new_inorder"], b.held   # one 4 KiB block, not 900 KB
    (0, 4096)
    """
    cdef mos_rbuf_t rb
    cdef mos_rbuf_pool_t pool
    cdef list _lent  # bytes objects lent to the buffer: alive while it may point into them

    def __cinit__(self, limit, policy="first", uint64_t start=0, memcap=0):
        cdef int code = _overlap.code(policy)
        if not 0 <= limit <= MOS_RBUF_MAX_LIMIT:
            raise ValueError(f"limit {limit} is out of range 0..{MOS_RBUF_MAX_LIMIT}")
        if memcap < 0:
            raise ValueError(f"memcap {memcap} is negative")
        mos_rbuf_pool_init(&self.pool, memcap, 0)
        mos_rbuf_init(&self.rb, limit, code, &self.pool)
        self.rb.base = self.rb.head = start
        self._lent = []

    def __dealloc__(self):
        mos_rbuf_free(&self.rb)
        mos_rbuf_pool_drain(&self.pool)

    def insert(self, uint64_t offset, data, length=None, lend=False):
        """Store data (bytes-like, or None for uncaptured bytes) at offset.
        With lend=True (data must be bytes, which cannot change) in-order
        bytes may stay in ``data`` instead of being copied, as an engine
        lends the frames of a mapped capture (mos_rbuf_insert_lent)."""
        cdef const uint8_t[::1] view
        cdef const uint8_t *p = NULL
        cdef uint32_t n
        cdef mos_rbuf_result_t res
        if data is None:
            if length is None:
                raise ValueError("length is required when data is None")
            n = length
        else:
            view = data
            n = view.shape[0] if length is None else length
            if n > <uint64_t>view.shape[0]:
                raise ValueError("length exceeds the data")
            if view.shape[0]:
                p = &view[0]
            elif n:
                raise ValueError("length exceeds the data")
            else:
                p = <const uint8_t *>"" # empty but not None
        if lend and not isinstance(data, bytes):
            raise TypeError(f"lend=True needs bytes, not {type(data).__name__}")
        if lend:
            if self.rb.nlent == 0:
                self._lent.clear()  # nothing points into them any more
            self._lent.append(data)
            mos_rbuf_insert_lent(&self.rb, offset, p, n, &res)
        else:
            with nogil:
                mos_rbuf_insert(&self.rb, offset, p, n, &res)
        return _result(&res)

    def unlend(self):
        """Copy every lent byte into the buffer's own blocks; returns the
        present bytes lost because the memcap refused them."""
        cdef uint64_t lost = mos_rbuf_unlend(&self.rb)
        self._lent.clear()
        return lost

    @property
    def lent(self):
        """[(offset, length)] of the lent pieces, in order."""
        cdef int k
        return [(mos_rbuf_lent_start(&self.rb, k), self.rb.lent_len[k])
                for k in range(self.rb.nlent)]

    def skip_to(self, uint64_t off):
        """Declare everything below off delivered: (gaps_declared, advanced)."""
        cdef uint64_t adv = 0
        cdef int g = mos_rbuf_skip_to(&self.rb, off, &adv)
        return g, adv

    def flush(self):
        """Skip to the end of the last run: (gaps_declared, advanced)."""
        cdef uint64_t adv = 0
        cdef int g = mos_rbuf_flush(&self.rb, &adv)
        return g, adv

    def read(self, uint64_t off, uint32_t n):
        """Present bytes from off, at most n, stopping at the first missing one."""
        cdef uint32_t want = n if n < self.rb.limit else self.rb.limit
        if want == 0:
            return b""
        cdef uint8_t *tmp = <uint8_t *>malloc(want)
        if tmp == NULL:
            raise MemoryError()
        try:
            k = mos_rbuf_copy(&self.rb, off, tmp, want)
            return PyBytes_FromStringAndSize(<char *>tmp, k)
        finally:
            free(tmp)

    def contiguous(self, uint64_t off):
        """Zero-copy view turned into bytes: present bytes at off up to the end of its block."""
        cdef uint32_t n = 0
        cdef const uint8_t *p = mos_rbuf_ptr(&self.rb, off, &n)
        if p == NULL:
            return b""
        return PyBytes_FromStringAndSize(<const char *>p, n)

    def set_limit(self, n):
        if not 0 <= n <= MOS_RBUF_MAX_LIMIT:
            raise ValueError(f"limit {n} is out of range 0..{MOS_RBUF_MAX_LIMIT}")
        return mos_rbuf_set_limit(&self.rb, n)

    def release(self, uint64_t off):
        """Forget the in-order bytes below off (at most head)."""
        mos_rbuf_release(&self.rb, off)

    def forget_gaps(self, uint64_t off):
        """Drop the listed gaps that end at or below off (never one still
        inside the buffer: off is taken as at most base)."""
        mos_rbuf_forget_gaps(&self.rb, off)

    def gap_after(self, uint64_t off):
        cdef const mos_span_t *g = mos_rbuf_gap_after(&self.rb, off)
        return None if g == NULL else (g.off, g.len)

    @property
    def base(self):
        return self.rb.base

    @property
    def head(self):
        return self.rb.head

    @property
    def limit(self):
        return self.rb.limit

    @property
    def held(self):
        """Bytes of the blocks holding stored bytes."""
        return mos_rbuf_held(&self.rb)

    @property
    def pool(self):
        """The buffer's own pool: memcap, in_use, peak, refusals."""
        return {"memcap": self.pool.memcap, "in_use": self.pool.in_use, "peak": self.pool.peak,
                "refused_segments": self.pool.refused_segments,
                "refused_bytes": self.pool.refused_bytes}

    @property
    def policy(self):
        return _overlap.name_of(self.rb.policy)

    @policy.setter
    def policy(self, name):
        mos_rbuf_set_policy(&self.rb, _overlap.code(name))

    @property
    def runs(self):
        return _spans(self.rb.runs, self.rb.nruns)

    @property
    def gaps(self):
        return _spans(self.rb.gaps, self.rb.ngaps)

    @property
    def ooo_bytes(self):
        return mos_rbuf_ooo_bytes(&self.rb)

    @property
    def gap_overflow(self):
        return self.rb.gap_overflow

    @property
    def memory(self):
        """Bytes allocated: blocks, their table, run and gap arrays."""
        return (mos_rbuf_held(&self.rb) + self.rb.nslot * sizeof(void *) +
                (self.rb.runcap + self.rb.gapcap) * sizeof(mos_span_t))


def bench(str kind, uint64_t nseg, uint32_t seglen=1460, uint32_t limit=1 << 20, uint32_t block=32):
    """ns per insert of a C loop.  kind:
    inorder  segments appended at head
    tail     per block: the first segment is late, the rest extend one run, then it fills the hole
    scatter  per block: odd segments first (block/2 runs), then the even ones fill the holes
    """
    cdef mos_rbuf_t rb
    cdef mos_rbuf_result_t res
    cdef uint8_t *seg = <uint8_t *>malloc(seglen)
    cdef uint64_t i, b, k, nblk, off
    cdef long long t0, t1
    cdef int mode = {"inorder": 0, "tail": 1, "scatter": 2}.get(kind, -1)
    if mode < 0:
        raise ValueError(kind)
    if seg == NULL:
        raise MemoryError()
    memset(seg, 0x5a, seglen)
    mos_rbuf_init(&rb, limit, MOS_OVERLAP_FIRST, NULL)
    nblk = nseg // block
    t0 = time.perf_counter_ns()
    with nogil:
        if mode == 0:
            for i in range(nseg):
                mos_rbuf_insert(&rb, i * seglen, seg, seglen, &res)
        elif mode == 1:
            for b in range(nblk):
                off = b * block * seglen
                for k in range(1, block):
                    mos_rbuf_insert(&rb, off + k * seglen, seg, seglen, &res)
                mos_rbuf_insert(&rb, off, seg, seglen, &res)
        elif mode == 2:
            for b in range(nblk):
                off = b * block * seglen
                for k in range(1, block, 2):
                    mos_rbuf_insert(&rb, off + k * seglen, seg, seglen, &res)
                for k in range(0, block, 2):
                    mos_rbuf_insert(&rb, off + k * seglen, seg, seglen, &res)
    t1 = time.perf_counter_ns()
    ok = rb.nruns == 0 and rb.head == (nseg if mode == 0 else nblk * block) * seglen
    mos_rbuf_free(&rb)
    free(seg)
    if not ok:
        raise AssertionError("benchmark stream did not reassemble")
    return (t1 - t0) / (nseg if mode == 0 else nblk * block)
