/* rbuf.h: one side's receive buffer, addressed by 64-bit stream offset.
 *
 * The buffer holds at most `limit` bytes: the window [base, base + limit).
 * Below `head` every offset is either present or a declared gap; above it,
 * out-of-order data is kept as sorted, disjoint runs.  The overlap policy
 * decides which bytes win when a new segment covers bytes already stored
 * (anywhere in the window, below or above head):
 *   FIRST  keep what is stored (Zeek, tshark; Windows Vista)
 *   LAST   the new bytes replace the stored ones
 * and the target-based policies, which model how an operating system's
 * out-of-order queue settles an overlap (Novak and Sturges, "Target-Based
 * TCP Stream Reassembly", 2007; Suricata's host-os-policy).  They compare
 * the new segment with the segment that stored each byte held out of order
 * (its origin), and keep the stored bytes unless:
 *   BSD        the new segment starts before the origin (also Windows,
 *              HP-UX 10, IRIX, macOS; Suricata's default)
 *   LINUX      as BSD, or it starts with the origin and ends after it
 *   OLD_LINUX  as BSD, or it starts with the origin and ends with or after it
 *   SOLARIS    it ends after the origin, or starts before it and ends with
 *              it (also HP-UX 11)
 * Below head the bytes were delivered in order: a receiver takes no second
 * copy of them, so there every policy but LAST keeps them.
 * Bytes live in blocks of MOS_RBUF_BLOCK bytes, taken only for the blocks a
 * stored byte falls in, so memory follows the bytes held, not the distance
 * to the farthest out-of-order byte, and growing never copies.  A pool
 * (shared by every buffer of an engine) caps the blocks held in total: a
 * segment that would pass the cap is refused and counted, its bytes stay a
 * hole (Suricata's stream.reassembly.memcap).  limit 0 keeps no bytes but
 * still tracks head/runs/gaps, so state tracking goes on without buffering.
 */
#ifndef MOS_RBUF_H
#define MOS_RBUF_H
#include <stddef.h>
#include <stdint.h>

enum {
    MOS_OVERLAP_FIRST = 0, MOS_OVERLAP_LAST = 1,
    MOS_OVERLAP_BSD = 2, MOS_OVERLAP_LINUX = 3, MOS_OVERLAP_OLD_LINUX = 4,
    MOS_OVERLAP_SOLARIS = 5,
    MOS_OVERLAP_COUNT
};

#define MOS_RBUF_BLOCK_SHIFT 12
#define MOS_RBUF_BLOCK (1u << MOS_RBUF_BLOCK_SHIFT)

typedef struct mos_span { uint64_t off, len; } mos_span_t;

/* Out-of-order bytes [off, end) came from the segment [so, se) (target-based
 * policies only). */
typedef struct mos_origin { uint64_t off, end, so, se; } mos_origin_t;
typedef struct mos_origins {
    uint32_t n, cap;
    mos_origin_t v[];
} mos_origins_t;

/* Blocks for a set of buffers (one engine: one thread), and their cap. */
typedef struct mos_rbuf_pool {
    uint64_t memcap;           /* most bytes held (blocks and block tables); 0 = no cap */
    uint64_t in_use;           /* bytes held now */
    uint64_t peak;             /* most bytes held at once */
    uint64_t refused_segments; /* segments (or parts) not stored: cap reached or no memory */
    uint64_t refused_bytes;
    void **free_blk;           /* released blocks kept for reuse: a stack of nfree (kept
                                * apart so giving a block back touches none of its memory) */
    uint32_t nfree, max_free;
} mos_rbuf_pool_t;

/* Most lent pieces per buffer (mos_rbuf_insert_lent): a reader that keeps
 * up holds the segments its receiver has not acknowledged yet, usually one
 * or two; a third is copied. */
#define MOS_RBUF_LENT 2
_Static_assert(MOS_RBUF_LENT == 2, "mos/tcp/_rbuf.pxd declares 2 pieces");

typedef struct mos_rbuf {
    uint8_t **slots;      /* block of block number b at slots[b & (nslot - 1)], or NULL */
    mos_rbuf_pool_t *pool;/* NULL: plain malloc, no cap */
    uint64_t base;        /* oldest offset still held (bytes below it are gone) */
    uint64_t head;        /* in-order frontier */
    mos_span_t *runs;     /* out-of-order data above head: sorted, disjoint, not touching */
    mos_span_t *gaps;     /* declared holes below head, in order: gaps[0..ngaps) */
    uint32_t limit;       /* most bytes held; 0 = keep none */
    uint32_t nslot;       /* power of two (0: no table) */
    uint32_t nblk;        /* blocks held */
    uint32_t g0;          /* gaps - g0 is the start of the gap array */
    uint32_t gapcap;      /* entries allocated from gaps - g0 */
    uint16_t nruns, runcap;
    uint16_t ngaps;
    uint8_t policy;       /* MOS_OVERLAP_* */
    uint8_t nlent;        /* lent pieces (mos_rbuf_insert_lent) */
    uint32_t gap_overflow; /* holes merged into the previous gap: MOS_RBUF_MAX_GAPS reached */
    mos_origins_t *orig;  /* target-based policies: origins of the bytes above head
                           * (sorted, disjoint; bytes with none count as first) */
    /* In-order bytes left where a stable frame holds them: piece k is
     * [o, o + lent_len[k]) at lent[k], o's low 32 bits in lent_off[k] (every
     * piece lies in [base, head), which spans less than 2^32).  Sorted. */
    const uint8_t *lent[MOS_RBUF_LENT];
    uint32_t lent_off[MOS_RBUF_LENT], lent_len[MOS_RBUF_LENT];
} mos_rbuf_t;

/* Stream offset of lent piece k (k < nlent). */
static inline uint64_t mos_rbuf_lent_start(const mos_rbuf_t *rb, int k)
{
    return rb->base + (uint32_t)(rb->lent_off[k] - (uint32_t)rb->base);
}

/* What one insert did (all fields zeroed by the call). */
typedef struct mos_rbuf_result {
    uint64_t new_inorder;  /* bytes by which head advanced */
    uint64_t overlap;      /* bytes of the segment that covered stored bytes */
    uint64_t overlap_diff; /* of those, bytes whose value differed */
    uint64_t dropped_old_from, dropped_old_to; /* base moved: held bytes [from,to) are gone (from==to: none) */
    uint64_t dropped_new;  /* bytes of this segment not stored: no room (beyond base+limit after making room) */
    uint64_t below_base;   /* bytes of this segment below base (already gone, ignored) */
    uint16_t gaps_added;   /* gaps declared because the window had to move past head */
    uint16_t runs_dropped; /* max runs exceeded: newest runs not kept */
    uint64_t in_gap;       /* bytes of this segment that fell on a declared gap (not stored) */
    uint64_t refused;      /* bytes of this segment not stored: the pool's memcap was
                            * reached or memory ran out (they stay a hole) */
} mos_rbuf_result_t;

/* Upper bound on out-of-order runs per buffer; beyond it segments are
 * dropped and counted (a flood of tiny out-of-order segments must not cost
 * unbounded memory or time). */
#define MOS_RBUF_MAX_RUNS 1024
/* Most origins listed per buffer; past it new bytes get none (their
 * overlaps then keep the stored bytes, as FIRST). */
#define MOS_RBUF_MAX_ORIGINS 4096
/* Most gaps listed (ngaps is 16-bit); beyond it the newest hole widens the
 * last gap (counted in gap_overflow). */
#define MOS_RBUF_MAX_GAPS 65535
/* Largest limit; mos_rbuf_init and mos_rbuf_set_limit refuse more (the
 * Python layers name the offending value before getting here). */
#define MOS_RBUF_MAX_LIMIT 0x40000000u

/* A pool with a cap (0: none); up to max_free bytes of released blocks are
 * kept for reuse.  Drain it once no buffer uses it any more. */
void mos_rbuf_pool_init(mos_rbuf_pool_t *p, uint64_t memcap, uint64_t max_free);
void mos_rbuf_pool_drain(mos_rbuf_pool_t *p);

/* Returns 0, or -1 (nothing done) if limit > MOS_RBUF_MAX_LIMIT or policy
 * is not a MOS_OVERLAP_* value.  pool may be NULL. */
int mos_rbuf_init(mos_rbuf_t *rb, uint32_t limit, int policy, mos_rbuf_pool_t *pool);
void mos_rbuf_free(mos_rbuf_t *rb);   /* frees storage, keeps offsets; init again to reuse */

/* Forget the in-order bytes below off (at most head): base moves up and
 * the blocks below it go back to the pool. */
void mos_rbuf_release_slow(mos_rbuf_t *rb, uint64_t off);
static inline void mos_rbuf_release(mos_rbuf_t *rb, uint64_t off)
{
    if (off > rb->head) off = rb->head;
    if (off <= rb->base) return;
    if (rb->nblk | rb->nlent) mos_rbuf_release_slow(rb, off);
    else rb->base = off;
}

/* Bytes of storage held (blocks only). */
static inline uint64_t mos_rbuf_held(const mos_rbuf_t *rb)
{
    return (uint64_t)rb->nblk * MOS_RBUF_BLOCK;
}

/* Change the limit at run time.  Shrinking drops the oldest bytes (reported
 * through base moving; returns the number of held bytes dropped).  0 frees
 * the storage.  A limit over MOS_RBUF_MAX_LIMIT changes nothing and returns
 * UINT64_MAX. */
uint64_t mos_rbuf_set_limit(mos_rbuf_t *rb, uint32_t limit);

/* Store a segment's bytes at stream offset off.  data may be NULL with
 * len > 0 to account for sequence space whose bytes were not captured (a
 * snapped frame): such ranges are not stored and stay holes.
 * Making room: if off+len > base+limit, base advances to off+len-limit; if
 * that passes head, the holes between head and the new base become gaps and
 * head moves to the new base (then past any run it reaches). */
void mos_rbuf_insert(mos_rbuf_t *rb, uint64_t off, const uint8_t *data, uint32_t len,
                     mos_rbuf_result_t *res);

/* As mos_rbuf_insert, but in-order bytes that would be copied may instead
 * be lent: the buffer keeps the pointer, not the bytes, so `data` must stay
 * valid and unchanged until the buffer releases them or mos_rbuf_unlend.
 * For frames of a capture mapped for the whole run: in-order bytes then cost
 * no copy and no block.  Nothing is lent under the LAST policy (it writes
 * over held bytes). */
void mos_rbuf_insert_lent(mos_rbuf_t *rb, uint64_t off, const uint8_t *data, uint32_t len,
                          mos_rbuf_result_t *res);

/* Copy every lent byte into the buffer's blocks (the frames are about to
 * go).  Bytes the pool refuses are dropped as base moves past them; returns
 * the count of present bytes so lost (0 normally). */
uint64_t mos_rbuf_unlend(mos_rbuf_t *rb);

/* Declare everything below `off` delivered: holes in [head, off) become gaps,
 * runs below off merge into the in-order data, and head = max(head, off),
 * then head extends over any run that now touches it.  Used when the
 * receiver acknowledged data the monitor never saw.  Returns the number of
 * gaps declared; *advanced gets how far head moved. */
int mos_rbuf_skip_to(mos_rbuf_t *rb, uint64_t off, uint64_t *advanced);

/* At flow end: skip to the end of the last run (if any). */
int mos_rbuf_flush(mos_rbuf_t *rb, uint64_t *advanced);

/* Copy the present bytes starting at off, up to n, stopping at the first
 * byte that is not present (a hole, a gap, head for in-order data or the end
 * of a run, or below base).  Returns the count copied (0 if off itself is
 * not present). */
uint32_t mos_rbuf_copy(const mos_rbuf_t *rb, uint64_t off, uint8_t *out, uint32_t n);

/* Zero-copy form: pointer to the contiguous present bytes at off (stops
 * also at the end of off's block); *len gets their count (0 and NULL if off
 * is not present). */
const uint8_t *mos_rbuf_ptr(const mos_rbuf_t *rb, uint64_t off, uint32_t *len);

/* The first declared gap that ends after off, or NULL. */
const mos_span_t *mos_rbuf_gap_after(const mos_rbuf_t *rb, uint64_t off);

/* Change the overlap policy (-1 if not a MOS_OVERLAP_* value).  Bytes held
 * out of order before a target-based policy was set have no origin and
 * are kept on overlap. */
int mos_rbuf_set_policy(mos_rbuf_t *rb, int policy);

/* Bytes present above head (sum of runs). */
uint64_t mos_rbuf_ooo_bytes(const mos_rbuf_t *rb);

/* Drop the listed gaps that end at or below off (e.g. every reader is past
 * them).  Only gaps wholly below base can go: off is taken as at most base,
 * since a gap inside the buffer marks bytes that were never stored.  Gaps
 * below base are also dropped on their own when the list needs room, but
 * never those declared by the current call. */
void mos_rbuf_forget_gaps(mos_rbuf_t *rb, uint64_t off);

#endif
