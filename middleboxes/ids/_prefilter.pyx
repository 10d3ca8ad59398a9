# cython: language_level=3
"""The IDS's multi-pattern prefilter: a compiled stream consumer (mos's
Engine.add_consumer) that scans each direction's reassembled stream once,
in Hyperscan's streaming mode, across segment boundaries, and raises one
STREAM_NOTE per pattern and chunk of newly readable bytes that contains it.

Why Hyperscan: its streaming mode keeps a small fixed state per stream (no
re-scan of earlier bytes, no carry buffer) and its literal matcher scans
thousands of patterns at memory speed; pyahocorasick would need the carry
and a Python call per chunk: bench/bench_prefilter.py measured it 52x slower
on the same 189 MB of test-bed HTTP with 1,000 ET patterns (0.27 against 14.2
Gbit/s), before the carry it would still need.

No Python runs for a stream in which no pattern occurs.

With ``gates`` (rule headers as ``headers.HeaderIndex.tables`` packs them,
and per pattern the headers of its rules), a stream checks, when it opens,
which patterns have a rule whose addresses, ports and direction hold for
it: the others raise no note there, and a stream with none is not scanned
at all (Suricata's signature groups by address and port do the same).

``packet_patterns`` are scanned in each packet's payload (the engine's
per-packet consumer callback, before PKT_IN): a note with code
``len(patterns) + k`` for packet pattern k, on the packet, for rules that
inspect packets rather than the stream."""

from cpython.pycapsule cimport PyCapsule_New
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport malloc, calloc, free
from libc.string cimport memcmp, memcpy, memset

from mos.dualstack._cengine cimport mos_consumer_t, mos_cstream_t, mos_cstream_note, mos_flow_t

cdef extern from *:
    int __builtin_ctzll(unsigned long long x) nogil

cdef extern from "hs/hs.h" nogil:
    ctypedef int hs_error_t
    ctypedef struct hs_database_t:
        pass
    ctypedef struct hs_scratch_t:
        pass
    ctypedef struct hs_stream_t:
        pass
    ctypedef struct hs_compile_error_t:
        char *message
        int expression
    ctypedef int (*match_event_handler)(unsigned int id, unsigned long long frm,
                                        unsigned long long to, unsigned int flags, void *ctx)
    int HS_SUCCESS, HS_FLAG_CASELESS, HS_FLAG_SINGLEMATCH, HS_MODE_STREAM, HS_MODE_BLOCK
    int HS_SCAN_TERMINATED
    hs_error_t hs_compile_lit_multi(const char *const *expressions, const unsigned int *flags,
                                    const unsigned int *ids, const size_t *lens,
                                    unsigned int elements, unsigned int mode,
                                    const void *platform, hs_database_t **db,
                                    hs_compile_error_t **error)
    hs_error_t hs_free_compile_error(hs_compile_error_t *error)
    hs_error_t hs_free_database(hs_database_t *db)
    hs_error_t hs_alloc_scratch(const hs_database_t *db, hs_scratch_t **scratch)
    hs_error_t hs_free_scratch(hs_scratch_t *scratch)
    hs_error_t hs_open_stream(const hs_database_t *db, unsigned int flags, hs_stream_t **stream)
    hs_error_t hs_scan_stream(hs_stream_t *id, const char *data, unsigned int length,
                              unsigned int flags, hs_scratch_t *scratch,
                              match_event_handler onEvent, void *ctxt)
    hs_error_t hs_close_stream(hs_stream_t *id, hs_scratch_t *scratch,
                               match_event_handler onEvent, void *ctxt)
    hs_error_t hs_stream_size(const hs_database_t *database, size_t *stream_size)
    hs_error_t hs_scan(const hs_database_t *db, const char *data, unsigned int length,
                       unsigned int flags, hs_scratch_t *scratch, match_event_handler onEvent,
                       void *context)
    const char *hs_version()


cdef hs_database_t *_compile(patterns, nocase, unsigned int mode, str who,
                             unsigned int extra=0) except NULL:
    """One Hyperscan literal database of `patterns` (bytes, none empty),
    each caseless where `nocase` says (and every one with `extra` flags);
    ValueError names a bad input."""
    pats = [bytes(p) for p in patterns]
    cdef uint32_t n = len(pats), k
    if n == 0:
        raise ValueError(f"{who} needs at least one pattern")
    flags_in = list(nocase) if nocase is not None else [False] * n
    if len(flags_in) != n:
        raise ValueError(f"{n} patterns but {len(flags_in)} nocase flags")
    for k in range(n):
        if not pats[k]:
            raise ValueError(f"pattern {k} is empty")
    cdef const char **exprs = <const char **>malloc(n * sizeof(char *))
    cdef unsigned int *flags = <unsigned int *>malloc(n * sizeof(unsigned int))
    cdef unsigned int *ids = <unsigned int *>malloc(n * sizeof(unsigned int))
    cdef size_t *lens = <size_t *>malloc(n * sizeof(size_t))
    cdef hs_compile_error_t *err = NULL
    cdef hs_database_t *db = NULL
    cdef hs_error_t rc
    try:
        if not exprs or not flags or not ids or not lens:
            raise MemoryError()
        for k in range(n):
            exprs[k] = <const char *>pats[k]
            lens[k] = len(pats[k])
            flags[k] = (HS_FLAG_CASELESS if flags_in[k] else 0) | extra
            ids[k] = k
        rc = hs_compile_lit_multi(exprs, flags, ids, lens, n, mode, NULL, &db, &err)
        if rc != HS_SUCCESS:
            msg = err.message.decode() if err != NULL else f"error {rc}"
            which = err.expression if err != NULL else -1
            if err != NULL:
                hs_free_compile_error(err)
            raise ValueError(f"hyperscan cannot compile pattern {which}: {msg}")
    finally:
        free(exprs)
        free(flags)
        free(ids)
        free(lens)
    return db


cdef struct pf_shared:
    hs_database_t *db
    hs_scratch_t *scratch
    uint32_t npat
    uint32_t serial            # chunk counter: seen[id] == serial means "in this chunk"
    uint32_t *seen
    uint32_t *slot             # pattern -> index in hits of this chunk
    uint32_t nhits, hitcap
    uint32_t *hit_id
    uint64_t *hit_first
    uint64_t *hit_last
    uint64_t scanned           # bytes scanned
    uint64_t streams           # streams opened
    uint64_t errors            # scan errors (counted, the stream is dropped)
    uint64_t nomem
    pf_gates *g                # NULL: every pattern is live everywhere
    hs_database_t *pdb         # packet patterns (block mode), or NULL
    uint32_t npkt
    uint32_t pserial
    uint32_t *pseen
    uint64_t pscanned          # packet payload bytes scanned


cdef struct pf_stream:
    hs_stream_t *hs
    uint64_t base              # stream offset of the first byte Hyperscan saw
    const uint64_t *mask       # live patterns (bit per pattern; NULL: all), checked per
                               # match when the stream scans with the whole database
    hs_database_t *sdb         # the database it scans with (its group's, or the whole one)
    hs_database_t *pdb
    uint8_t own                # mask is this stream's own (free it)
    uint8_t ready              # mask decided
    uint8_t scan               # some stream pattern is live
    uint8_t pscan              # some packet pattern is live


cdef struct pf_scan:
    pf_shared *sh
    uint64_t base
    const uint64_t *mask


DEF MAX_MASKS = 64             # distinct live-pattern masks shared by streams


cdef struct pf_gates:
    uint32_t W                 # 64-bit words per header mask
    uint32_t n4, n6, np
    uint32_t *s4               # IPv4 interval starts
    uint64_t *s6hi
    uint64_t *s6lo
    uint32_t *sp               # port interval starts
    uint64_t *m4               # per interval: W words as source, then W as destination
    uint64_t *m6
    uint64_t *mp
    uint64_t *bidir            # W
    uint64_t *dirok            # 2 * W: headers whose direction holds for receiving side s
    uint32_t *hp_off           # header -> its patterns: hp[hp_off[h]:hp_off[h + 1]]
    uint32_t *hp
    uint32_t nh
    uint32_t PW                # 64-bit words per pattern mask
    uint32_t nstream           # patterns below are stream patterns, the rest packet ones
    uint64_t *hbits            # W words: scratch
    uint64_t *pbits            # PW words: scratch
    uint32_t nmasks
    uint64_t *masks[MAX_MASKS]
    # each mask's databases of its live patterns alone (NULL: none live, or
    # no database could be made: then the whole one and the mask)
    hs_database_t *sdbs[MAX_MASKS]
    hs_database_t *pdbs[MAX_MASKS]
    uint8_t sfull[MAX_MASKS]
    uint8_t pfull[MAX_MASKS]
    uint64_t skipped           # streams with no live pattern (not scanned)
    uint64_t compiled          # group databases made
    # every pattern (stream ones, then packet ones): bytes, lengths, flags
    const char **pat
    size_t *plen
    unsigned int *pflags       # (pat points into Prefilter._pats)


cdef int _on_match(unsigned int pid, unsigned long long frm, unsigned long long to,
                   unsigned int flags, void *ctx) noexcept nogil:
    cdef pf_scan *sc = <pf_scan *>ctx
    cdef pf_shared *sh = sc.sh
    cdef uint64_t end = sc.base + to
    cdef uint32_t k
    if sc.mask != NULL and not ((sc.mask[pid >> 6] >> (pid & 63)) & 1):
        return 0               # no rule of it holds for this stream's header
    if sh.seen[pid] == sh.serial:
        sh.hit_last[sh.slot[pid]] = end
        return 0
    if sh.nhits == sh.hitcap:
        return 0               # hitcap == npat: cannot happen
    sh.seen[pid] = sh.serial
    k = sh.nhits
    sh.nhits += 1
    sh.slot[pid] = k
    sh.hit_id[k] = pid
    sh.hit_first[k] = end
    sh.hit_last[k] = end
    return 0


cdef inline void _flush(pf_shared *sh, mos_cstream_t *cs) noexcept nogil:
    cdef uint32_t k
    for k in range(sh.nhits):
        mos_cstream_note(cs, sh.hit_id[k], sh.hit_first[k], sh.hit_last[k])
    sh.nhits = 0
    sh.serial += 1
    if sh.serial == 0:         # wrapped: forget every mark
        for k in range(sh.npat):
            sh.seen[k] = 0xffffffff
        sh.serial = 1


cdef inline uint32_t _interval32(const uint32_t *starts, uint32_t n, uint32_t x) noexcept nogil:
    """Index of the last start <= x (starts[0] is 0)."""
    cdef uint32_t lo = 0, hi = n, mid
    while hi - lo > 1:
        mid = (lo + hi) >> 1
        if starts[mid] <= x:
            lo = mid
        else:
            hi = mid
    return lo


cdef inline uint32_t _interval128(const uint64_t *shi, const uint64_t *slo, uint32_t n,
                                  uint64_t hi_, uint64_t lo_) noexcept nogil:
    cdef uint32_t lo = 0, hi = n, mid
    while hi - lo > 1:
        mid = (lo + hi) >> 1
        if shi[mid] < hi_ or (shi[mid] == hi_ and slo[mid] <= lo_):
            lo = mid
        else:
            hi = mid
    return lo


cdef inline uint64_t _be64(const uint8_t *a) noexcept nogil:
    cdef uint64_t v = 0
    cdef int i
    for i in range(8):
        v = (v << 8) | a[i]
    return v


cdef hs_database_t *_compile_live(pf_shared *sh, const uint64_t *bits, uint32_t lo, uint32_t hi,
                                  unsigned int mode, uint8_t *full) noexcept nogil:
    """A database of the live patterns in [lo, hi) alone, each reporting its
    own number; NULL with *full = 0 when none is live, *full = 1 when it
    cannot be made (then the whole database and the mask serve)."""
    cdef pf_gates *g = sh.g
    cdef uint32_t k, n = 0
    cdef const char **exprs
    cdef unsigned int *flags
    cdef unsigned int *ids
    cdef size_t *lens
    cdef hs_database_t *db = NULL
    cdef hs_compile_error_t *err = NULL
    full[0] = 0
    for k in range(lo, hi):
        if (bits[k >> 6] >> (k & 63)) & 1:
            n += 1
    if n == 0:
        return NULL
    exprs = <const char **>malloc(n * sizeof(char *))
    flags = <unsigned int *>malloc(n * sizeof(unsigned int))
    ids = <unsigned int *>malloc(n * sizeof(unsigned int))
    lens = <size_t *>malloc(n * sizeof(size_t))
    if exprs != NULL and flags != NULL and ids != NULL and lens != NULL:
        n = 0
        for k in range(lo, hi):
            if (bits[k >> 6] >> (k & 63)) & 1:
                exprs[n] = g.pat[k]
                lens[n] = g.plen[k]
                flags[n] = g.pflags[k]
                ids[n] = k - lo
                n += 1
        if hs_compile_lit_multi(exprs, flags, ids, lens, n, mode, NULL, &db, &err) != HS_SUCCESS:
            db = NULL
            if err != NULL:
                hs_free_compile_error(err)
        elif hs_alloc_scratch(db, &sh.scratch) != HS_SUCCESS:
            hs_free_database(db)
            db = NULL
    free(exprs)
    free(flags)
    free(ids)
    free(lens)
    if db == NULL:
        full[0] = 1
    else:
        g.compiled += 1
    return db


cdef const uint64_t *_addr_masks(pf_gates *g, int ipver, const uint8_t *a) noexcept nogil:
    """The interval's masks (source words, then destination words) of an address."""
    cdef uint32_t i
    if ipver == 6:
        i = _interval128(g.s6hi, g.s6lo, g.n6, _be64(a), _be64(a + 8))
        return g.m6 + <size_t>i * 2 * g.W
    i = _interval32(g.s4, g.n4, (<uint32_t>a[0] << 24) | (<uint32_t>a[1] << 16)
                    | (<uint32_t>a[2] << 8) | a[3])
    return g.m4 + <size_t>i * 2 * g.W


cdef void _decide(pf_shared *sh, pf_stream *st, mos_cstream_t *cs) noexcept nogil:
    """Which patterns have a rule whose header holds for this stream (bytes
    the peer sends to cs.side), as a mask shared by the streams that have
    the same."""
    cdef pf_gates *g = sh.g
    cdef mos_flow_t *f = cs.f
    cdef const uint8_t *sa
    cdef const uint8_t *da
    cdef uint16_t sp, dp
    cdef const uint64_t *S
    cdef const uint64_t *D
    cdef const uint64_t *PS
    cdef const uint64_t *PD
    cdef uint32_t w, W, h, k, j
    cdef uint64_t x, any_s = 0, any_p = 0
    cdef uint64_t *m
    st.ready = 1
    st.sdb = sh.db
    st.pdb = sh.pdb
    if g == NULL:
        st.mask = NULL
        st.scan = 1
        st.pscan = 1
        return
    W = g.W
    if cs.side == 1:           # the server receives: the client sends
        sa = f.caddr
        sp = f.cport
        da = f.saddr
        dp = f.sport
    else:
        sa = f.saddr
        sp = f.sport
        da = f.caddr
        dp = f.cport
    S = _addr_masks(g, f.ipver, sa)
    D = _addr_masks(g, f.ipver, da)
    PS = g.mp + <size_t>_interval32(g.sp, g.np, sp) * 2 * W
    PD = g.mp + <size_t>_interval32(g.sp, g.np, dp) * 2 * W
    for w in range(W):
        # forward: source holds src:sport, destination holds dst:dport;
        # <>: the other way round too
        x = S[w] & PS[w] & D[W + w] & PD[W + w]
        x |= g.bidir[w] & D[w] & PD[w] & S[W + w] & PS[W + w]
        g.hbits[w] = x & g.dirok[(cs.side & 1) * W + w]
    memset(g.pbits, 0, g.PW * 8)
    for w in range(W):
        x = g.hbits[w]
        while x:
            h = w * 64 + <uint32_t>__builtin_ctzll(x)
            x &= x - 1
            for j in range(g.hp_off[h], g.hp_off[h + 1]):
                k = g.hp[j]
                g.pbits[k >> 6] |= (<uint64_t>1) << (k & 63)
    for k in range(g.PW):
        if g.pbits[k]:
            break
    else:
        st.mask = NULL
        st.scan = 0
        st.pscan = 0
        g.skipped += 1
        return
    for k in range(g.nstream):
        if (g.pbits[k >> 6] >> (k & 63)) & 1:
            any_s = 1
            break
    for k in range(g.nstream, g.nstream + sh.npkt):
        if (g.pbits[k >> 6] >> (k & 63)) & 1:
            any_p = 1
            break
    st.scan = <uint8_t>any_s
    st.pscan = <uint8_t>any_p
    if not any_s:
        g.skipped += 1
    for k in range(g.nmasks):
        if memcmp(g.masks[k], g.pbits, g.PW * 8) == 0:
            _use_group(sh, st, k)
            return
    m = <uint64_t *>malloc(g.PW * 8)
    if m == NULL:              # no memory: everything live (the handlers check headers)
        st.mask = NULL
        st.scan = st.pscan = 1
        return
    memcpy(m, g.pbits, g.PW * 8)
    if g.nmasks < MAX_MASKS:
        # a new group: databases of its live patterns alone (a handful where
        # the addresses leave few rules), made once
        k = g.nmasks
        g.masks[k] = m
        g.nmasks += 1
        g.sdbs[k] = _compile_live(sh, m, 0, g.nstream, HS_MODE_STREAM, &g.sfull[k])
        g.pdbs[k] = _compile_live(sh, m, g.nstream, g.nstream + sh.npkt, HS_MODE_BLOCK,
                                  &g.pfull[k])
        _use_group(sh, st, k)
        return
    st.own = 1
    st.mask = m


cdef inline void _use_group(pf_shared *sh, pf_stream *st, uint32_t k) noexcept nogil:
    cdef pf_gates *g = sh.g
    st.mask = g.masks[k]
    if not g.sfull[k]:
        st.sdb = g.sdbs[k]
    if not g.pfull[k]:
        st.pdb = g.pdbs[k]
    if st.sdb == NULL:
        st.scan = 0
    if st.pdb == NULL:
        st.pscan = 0


cdef pf_stream *_stream(pf_shared *sh, mos_cstream_t *cs) noexcept nogil:
    cdef pf_stream *st = <pf_stream *>cs.state[0]
    if st == NULL:
        st = <pf_stream *>calloc(1, sizeof(pf_stream))
        if st == NULL:
            sh.nomem += 1
            return NULL
        cs.state[0] = st
    if not st.ready:
        _decide(sh, st, cs)
    return st


cdef void _close(pf_shared *sh, pf_stream *st, mos_cstream_t *cs) noexcept nogil:
    cdef pf_scan sc
    sc.sh = sh
    sc.base = st.base
    sc.mask = st.mask if st.sdb == sh.db else NULL
    if st.hs == NULL:
        return
    if cs != NULL:
        hs_close_stream(st.hs, sh.scratch, _on_match, &sc)
        _flush(sh, cs)
    else:
        hs_close_stream(st.hs, sh.scratch, NULL, NULL)
    st.hs = NULL


cdef void _data(void *ctx, mos_cstream_t *cs, uint64_t off, const uint8_t *data,
                uint32_t length) noexcept nogil:
    cdef pf_shared *sh = <pf_shared *>ctx
    cdef pf_stream *st = _stream(sh, cs)
    cdef pf_scan sc
    if st == NULL or not st.scan or st.sdb == NULL:
        return
    if data == NULL:           # a gap: no match spans it; a new stream after it
        _close(sh, st, cs)
        return
    if st.hs == NULL:
        if hs_open_stream(st.sdb, 0, &st.hs) != HS_SUCCESS:
            st.hs = NULL
            sh.nomem += 1
            return
        st.base = off
        sh.streams += 1
    sc.sh = sh
    sc.base = st.base
    sc.mask = st.mask if st.sdb == sh.db else NULL
    if hs_scan_stream(st.hs, <const char *>data, length, 0, sh.scratch, _on_match, &sc) != HS_SUCCESS:
        sh.errors += 1
        hs_close_stream(st.hs, sh.scratch, NULL, NULL)
        st.hs = NULL
    sh.scanned += length
    _flush(sh, cs)


cdef void _end(void *ctx, mos_cstream_t *cs) noexcept nogil:
    cdef pf_shared *sh = <pf_shared *>ctx
    cdef pf_stream *st = <pf_stream *>cs.state[0]
    if st != NULL:
        _close(sh, st, cs)
        if st.own:
            free(<void *>st.mask)
        free(st)
        cs.state[0] = NULL


cdef struct pk_scan:
    pf_shared *sh
    mos_cstream_t *cs
    const uint64_t *mask


cdef int _on_pkt_match(unsigned int pid, unsigned long long frm, unsigned long long to,
                       unsigned int flags, void *ctx) noexcept nogil:
    cdef pk_scan *c = <pk_scan *>ctx
    cdef pf_shared *sh = c.sh
    cdef uint32_t code = sh.npat + pid
    if c.mask != NULL and not ((c.mask[code >> 6] >> (code & 63)) & 1):
        return 0
    if sh.pseen[pid] == sh.pserial:
        return 0
    sh.pseen[pid] = sh.pserial
    mos_cstream_note(c.cs, code, 0, 0)
    return 0


cdef void _packet(void *ctx, mos_cstream_t *cs, const uint8_t *payload,
                  uint32_t length) noexcept nogil:
    """A packet's payload: a note per packet pattern in it (live for its stream)."""
    cdef pf_shared *sh = <pf_shared *>ctx
    cdef pf_stream *st = _stream(sh, cs)
    cdef pk_scan c
    cdef uint32_t k
    if st == NULL or not st.pscan or st.pdb == NULL:
        return
    sh.pserial += 1
    if sh.pserial == 0:
        for k in range(sh.npkt):
            sh.pseen[k] = 0
        sh.pserial = 1
    c.sh = sh
    c.cs = cs
    c.mask = st.mask if st.pdb == sh.pdb else NULL
    hs_scan(st.pdb, <const char *>payload, length, 0, sh.scratch, _on_pkt_match, &c)
    sh.pscanned += length


def hyperscan_version():
    return hs_version().decode()


cdef class Prefilter:
    """A Hyperscan literal database of ``patterns`` (bytes) with ``nocase``
    flags, as a compiled stream consumer.

    Each STREAM_NOTE it raises has ``code`` = the pattern's index, ``a`` =
    the stream offset just past its first occurrence in the chunk of bytes
    that just became readable, ``b`` = just past its last one.  One
    Prefilter serves one engine (its scratch space is not shared between
    threads)."""

    cdef pf_shared *sh
    cdef list _pats
    cdef mos_consumer_t c
    cdef readonly object mos_consumer
    cdef readonly uint32_t npatterns

    def __cinit__(self, patterns, nocase=None, packet_patterns=None, packet_nocase=None,
                  gates=None):
        cdef uint32_t k, n = len(patterns)
        self.sh = <pf_shared *>calloc(1, sizeof(pf_shared))
        if self.sh == NULL:
            raise MemoryError()
        if n or not packet_patterns:       # packet patterns alone: no stream database
            self.sh.db = _compile(patterns, nocase, HS_MODE_STREAM, "Prefilter")
            if hs_alloc_scratch(self.sh.db, &self.sh.scratch) != HS_SUCCESS:
                raise MemoryError("hyperscan scratch")
        if packet_patterns:
            # one report per pattern and packet is all a packet rule needs
            self.sh.pdb = _compile(packet_patterns, packet_nocase, HS_MODE_BLOCK, "Prefilter",
                                   HS_FLAG_SINGLEMATCH)
            if hs_alloc_scratch(self.sh.pdb, &self.sh.scratch) != HS_SUCCESS:
                raise MemoryError("hyperscan scratch")
            self.sh.npkt = len(packet_patterns)
            self.sh.pseen = <uint32_t *>calloc(self.sh.npkt, sizeof(uint32_t))
            if self.sh.pseen == NULL:
                raise MemoryError()
            self.c.packet = _packet
        if gates is not None:
            self.sh.g = _gates(gates, n + self.sh.npkt, n)
            self._pats = _keep_patterns(self.sh.g, patterns, nocase, packet_patterns or [],
                                        packet_nocase)
        self.sh.npat = n
        self.sh.hitcap = n
        self.sh.seen = <uint32_t *>malloc((n + 1) * sizeof(uint32_t))
        self.sh.slot = <uint32_t *>malloc((n + 1) * sizeof(uint32_t))
        self.sh.hit_id = <uint32_t *>malloc((n + 1) * sizeof(uint32_t))
        self.sh.hit_first = <uint64_t *>malloc((n + 1) * sizeof(uint64_t))
        self.sh.hit_last = <uint64_t *>malloc((n + 1) * sizeof(uint64_t))
        if not (self.sh.seen and self.sh.slot and self.sh.hit_id and self.sh.hit_first
                and self.sh.hit_last):
            raise MemoryError()
        for k in range(n):
            self.sh.seen[k] = 0xffffffff
        self.sh.serial = 1
        self.npatterns = n
        self.c.data = _data
        self.c.end = _end
        self.c.ctx = self.sh
        self.c.sides = 3
        self.c.lookback = 0
        self.mos_consumer = PyCapsule_New(&self.c, b"mos.consumer", NULL)

    def __dealloc__(self):
        if self.sh != NULL:
            if self.sh.scratch != NULL:
                hs_free_scratch(self.sh.scratch)
            if self.sh.db != NULL:
                hs_free_database(self.sh.db)
            if self.sh.pdb != NULL:
                hs_free_database(self.sh.pdb)
            free(self.sh.pseen)
            _free_gates(self.sh.g)
            free(self.sh.seen)
            free(self.sh.slot)
            free(self.sh.hit_id)
            free(self.sh.hit_first)
            free(self.sh.hit_last)
            free(self.sh)
            self.sh = NULL

    def stats(self):
        """Bytes scanned, streams opened, scan errors, allocation failures,
        and Hyperscan's state size per stream."""
        cdef size_t ssz = 0
        if self.sh.db != NULL:
            hs_stream_size(self.sh.db, &ssz)
        return {"scanned": self.sh.scanned, "streams": self.sh.streams,
                "errors": self.sh.errors, "nomem": self.sh.nomem, "stream_state": ssz,
                "packet_scanned": self.sh.pscanned,
                "streams_skipped": self.sh.g.skipped if self.sh.g != NULL else 0,
                "groups": self.sh.g.nmasks if self.sh.g != NULL else 0,
                "group_databases": self.sh.g.compiled if self.sh.g != NULL else 0}


cdef void *_array(object data, size_t itemsize, size_t n) except NULL:
    """A malloc'd copy of `n` items (ints, or the bytes of packed words)."""
    cdef void *p = malloc(n * itemsize if n else 1)
    cdef size_t i
    if p == NULL:
        raise MemoryError()
    if isinstance(data, bytes):
        if len(data) != n * itemsize:
            free(p)
            raise ValueError("gates: a table has the wrong size")
        memcpy(p, <const char *>data, n * itemsize)
    elif itemsize == 4:
        for i in range(n):
            (<uint32_t *>p)[i] = data[i]
    else:
        for i in range(n):
            (<uint64_t *>p)[i] = data[i]
    return p


cdef bytes _interleave(bytes src, bytes dst, size_t nb):
    """Per interval: its source words, then its destination words."""
    return b"".join(src[i:i + nb] + dst[i:i + nb] for i in range(0, len(src), nb))


cdef pf_gates *_gates(dict gates, uint32_t npat, uint32_t nstream) except NULL:
    """gates: HeaderIndex.tables() plus "dirok" (two masks: headers whose
    direction holds when the server, the client receives) and "patterns"
    (per pattern, stream ones then packet ones, its header numbers)."""
    cdef pf_gates *g = <pf_gates *>calloc(1, sizeof(pf_gates))
    cdef uint32_t W, nb, h, k
    if g == NULL:
        raise MemoryError()
    try:
        W = gates["words"]
        nb = W * 8
        g.W = W
        g.nh = gates["headers"]
        g.nstream = nstream
        g.PW = (npat + 63) // 64 if npat else 1
        s4, a4, b4 = gates["v4"]
        s6, a6, b6 = gates["v6"]
        sp, ap, bp = gates["ports"]
        g.n4, g.n6, g.np = len(s4), len(s6), len(sp)
        g.s4 = <uint32_t *>_array(s4, 4, g.n4)
        g.s6hi = <uint64_t *>_array([x >> 64 for x in s6], 8, g.n6)
        g.s6lo = <uint64_t *>_array([x & 0xFFFFFFFFFFFFFFFF for x in s6], 8, g.n6)
        g.sp = <uint32_t *>_array(sp, 4, g.np)
        g.m4 = <uint64_t *>_array(_interleave(a4, b4, nb), 8, g.n4 * 2 * W)
        g.m6 = <uint64_t *>_array(_interleave(a6, b6, nb), 8, g.n6 * 2 * W)
        g.mp = <uint64_t *>_array(_interleave(ap, bp, nb), 8, g.np * 2 * W)
        g.bidir = <uint64_t *>_array(gates["bidir"], 8, W)
        ds, dc = gates["dirok"]
        g.dirok = <uint64_t *>_array(dc.to_bytes(nb, "little") + ds.to_bytes(nb, "little"),
                                     8, 2 * W)
        pats = gates["patterns"]
        if len(pats) != npat:
            raise ValueError(f"gates: {len(pats)} pattern header lists for {npat} patterns")
        by_h = [[] for _ in range(g.nh)]
        for k, hs in enumerate(pats):
            for h in hs:
                by_h[h].append(k)
        off = [0]
        flat = []
        for lst in by_h:
            flat += lst
            off.append(len(flat))
        g.hp_off = <uint32_t *>_array(off, 4, g.nh + 1)
        g.hp = <uint32_t *>_array(flat, 4, len(flat))
        g.hbits = <uint64_t *>calloc(W, 8)
        g.pbits = <uint64_t *>calloc(g.PW, 8)
        if g.hbits == NULL or g.pbits == NULL:
            raise MemoryError()
    except BaseException:
        _free_gates(g)
        raise
    return g


cdef list _keep_patterns(pf_gates *g, patterns, nocase, packet_patterns, packet_nocase):
    """Every pattern's bytes and flags, for the group databases (the list of
    bytes returned must outlive them)."""
    pats = [bytes(p) for p in patterns] + [bytes(p) for p in packet_patterns]
    fl = ([HS_FLAG_CASELESS if c else 0 for c in (nocase or [False] * len(patterns))]
          + [(HS_FLAG_CASELESS if c else 0) | HS_FLAG_SINGLEMATCH
             for c in (packet_nocase or [False] * len(packet_patterns))])
    cdef size_t k, n = len(pats)
    g.pat = <const char **>malloc((n + 1) * sizeof(char *))
    g.plen = <size_t *>malloc((n + 1) * sizeof(size_t))
    g.pflags = <unsigned int *>malloc((n + 1) * sizeof(unsigned int))
    if g.pat == NULL or g.plen == NULL or g.pflags == NULL:
        raise MemoryError()
    for k in range(n):
        g.pat[k] = <const char *>pats[k]
        g.plen[k] = len(pats[k])
        g.pflags[k] = fl[k]
    return pats


cdef void _free_gates(pf_gates *g) noexcept:
    cdef uint32_t k
    if g == NULL:
        return
    for k in range(g.nmasks):
        free(g.masks[k])
        if g.sdbs[k] != NULL:
            hs_free_database(g.sdbs[k])
        if g.pdbs[k] != NULL:
            hs_free_database(g.pdbs[k])
    free(g.pat)
    free(g.plen)
    free(g.pflags)
    free(g.s4)
    free(g.s6hi)
    free(g.s6lo)
    free(g.sp)
    free(g.m4)
    free(g.m6)
    free(g.mp)
    free(g.bidir)
    free(g.dirok)
    free(g.hp_off)
    free(g.hp)
    free(g.hbits)
    free(g.pbits)
    free(g)


# ---------------------------------------------------------------- block mode

cdef struct blk_ctx:
    uint32_t *seen
    uint32_t serial
    uint32_t *out
    uint32_t nout


cdef int _on_block_match(unsigned int id, unsigned long long frm, unsigned long long to,
                         unsigned int flags, void *ctx) noexcept nogil:
    cdef blk_ctx *c = <blk_ctx *>ctx
    if c.seen[id] != c.serial:
        c.seen[id] = c.serial
        c.out[c.nout] = id
        c.nout += 1
    return 0


cdef class BlockScanner:
    """Literal patterns found in one whole buffer (an application-layer
    buffer: a URI, a header block, a body), by one Hyperscan block-mode scan:
    ``scan(data)`` returns the indexes of the patterns present, each once.
    The IDS's prefilter for HTTP buffers (one scanner per buffer name)."""

    cdef hs_database_t *db
    cdef hs_scratch_t *scratch
    cdef uint32_t *seen
    cdef uint32_t *out
    cdef uint32_t serial
    cdef readonly uint32_t npatterns
    cdef readonly uint64_t scanned

    def __cinit__(self, patterns, nocase=None):
        cdef uint32_t n = len(patterns)
        self.db = _compile(patterns, nocase, HS_MODE_BLOCK, "BlockScanner")
        if hs_alloc_scratch(self.db, &self.scratch) != HS_SUCCESS:
            raise MemoryError("hyperscan scratch")
        self.seen = <uint32_t *>calloc(n, sizeof(uint32_t))
        self.out = <uint32_t *>malloc(n * sizeof(uint32_t))
        if self.seen == NULL or self.out == NULL:
            raise MemoryError()
        self.npatterns = n

    def __dealloc__(self):
        if self.scratch != NULL:
            hs_free_scratch(self.scratch)
        if self.db != NULL:
            hs_free_database(self.db)
        free(self.seen)
        free(self.out)

    def scan(self, const unsigned char[:] data):
        cdef blk_ctx c
        cdef uint32_t i
        self.serial += 1
        if self.serial == 0:       # wrapped: forget every mark
            for i in range(self.npatterns):
                self.seen[i] = 0
            self.serial = 1
        c.seen = self.seen
        c.serial = self.serial
        c.out = self.out
        c.nout = 0
        if data.shape[0] == 0:
            return []
        with nogil:
            hs_scan(self.db, <const char *>&data[0], <unsigned int>data.shape[0], 0,
                    self.scratch, _on_block_match, &c)
        self.scanned += data.shape[0]
        return [c.out[i] for i in range(c.nout)]
