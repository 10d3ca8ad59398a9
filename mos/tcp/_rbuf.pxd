# Declarations of rbuf.h for Cython: `from mos.tcp._rbuf cimport *`.
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t

cdef extern from "rbuf.h" nogil:
    enum:
        MOS_OVERLAP_FIRST
        MOS_OVERLAP_LAST
        MOS_OVERLAP_BSD
        MOS_OVERLAP_LINUX
        MOS_OVERLAP_OLD_LINUX
        MOS_OVERLAP_SOLARIS
        MOS_OVERLAP_COUNT
        MOS_RBUF_MAX_RUNS
        MOS_RBUF_MAX_GAPS
    const uint32_t MOS_RBUF_MAX_LIMIT
    const uint32_t MOS_RBUF_BLOCK

    ctypedef struct mos_span_t:
        uint64_t off
        uint64_t len

    ctypedef struct mos_rbuf_pool_t:
        uint64_t memcap
        uint64_t in_use
        uint64_t peak
        uint64_t refused_segments
        uint64_t refused_bytes
        uint32_t nfree
        uint32_t max_free

    ctypedef struct mos_rbuf_t:
        mos_rbuf_pool_t *pool
        uint64_t base
        uint64_t head
        mos_span_t *runs
        mos_span_t *gaps
        uint32_t limit
        uint32_t nslot
        uint32_t nblk
        uint32_t gapcap
        uint16_t nruns
        uint16_t runcap
        uint16_t ngaps
        uint8_t policy
        uint8_t nlent
        uint32_t lent_off[2]
        uint32_t lent_len[2]
        uint32_t gap_overflow

    ctypedef struct mos_rbuf_result_t:
        uint64_t new_inorder
        uint64_t overlap
        uint64_t overlap_diff
        uint64_t dropped_old_from
        uint64_t dropped_old_to
        uint64_t dropped_new
        uint64_t below_base
        uint16_t gaps_added
        uint16_t runs_dropped
        uint64_t in_gap
        uint64_t refused

    enum:
        MOS_RBUF_LENT
    void mos_rbuf_insert_lent(mos_rbuf_t *rb, uint64_t off, const uint8_t *data, uint32_t len,
                              mos_rbuf_result_t *res)
    uint64_t mos_rbuf_unlend(mos_rbuf_t *rb)
    uint64_t mos_rbuf_lent_start(const mos_rbuf_t *rb, int k)
    void mos_rbuf_pool_init(mos_rbuf_pool_t *p, uint64_t memcap, uint64_t max_free)
    void mos_rbuf_pool_drain(mos_rbuf_pool_t *p)
    int mos_rbuf_init(mos_rbuf_t *rb, uint32_t limit, int policy, mos_rbuf_pool_t *pool)
    void mos_rbuf_release(mos_rbuf_t *rb, uint64_t off)
    uint64_t mos_rbuf_held(const mos_rbuf_t *rb)
    void mos_rbuf_free(mos_rbuf_t *rb)
    int mos_rbuf_set_policy(mos_rbuf_t *rb, int policy)
    uint64_t mos_rbuf_set_limit(mos_rbuf_t *rb, uint32_t limit)
    void mos_rbuf_insert(mos_rbuf_t *rb, uint64_t off, const uint8_t *data, uint32_t len,
                         mos_rbuf_result_t *res)
    int mos_rbuf_skip_to(mos_rbuf_t *rb, uint64_t off, uint64_t *advanced)
    int mos_rbuf_flush(mos_rbuf_t *rb, uint64_t *advanced)
    uint32_t mos_rbuf_copy(const mos_rbuf_t *rb, uint64_t off, uint8_t *out, uint32_t n)
    const uint8_t *mos_rbuf_ptr(const mos_rbuf_t *rb, uint64_t off, uint32_t *len)
    const mos_span_t *mos_rbuf_gap_after(const mos_rbuf_t *rb, uint64_t off)
    uint64_t mos_rbuf_ooo_bytes(const mos_rbuf_t *rb)
    void mos_rbuf_forget_gaps(mos_rbuf_t *rb, uint64_t off)
