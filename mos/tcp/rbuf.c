/* rbuf.c: one side's receive buffer (contract in rbuf.h).
 *
 * Layout: the byte at stream offset o lives in block o >> 12, at o & 4095;
 * that block sits at slots[(o >> 12) & (nslot - 1)].  Every stored byte
 * lies in [base, base + limit), and blocks wholly below base are given back
 * as base moves, so the blocks held are always within nslot of base's
 * block and never collide in the table.  A block is taken only when a byte
 * is stored in it: a 1-byte segment 8 MB ahead costs one block and a table
 * entry per 4 KiB of distance, and growing copies no stored byte.
 *
 * Choices the header leaves open:
 *  - The last offset, UINT64_MAX, is never stored (ends are exclusive and
 *    must fit in 64 bits); bytes beyond it are counted in dropped_new.
 *  - A hole declared right where the last gap ends extends that gap, so
 *    gaps are maximal; gaps_added counts holes, not new entries.
 *  - Gaps wholly below base may be forgotten, but only when the gap array is
 *    full and needs room (or on mos_rbuf_forget_gaps): within one call the
 *    gaps it declared are the last entries, and memory stays proportional to
 *    the gaps still in the window.  The array is a deque (forgetting moves
 *    its start; it is compacted only once half of it is free), so a hole
 *    costs amortised O(1) however many gaps are listed.
 *  - At MOS_RBUF_MAX_GAPS gaps in the window the newest hole is merged into
 *    the previous gap (the present bytes between them become unreadable)
 *    and gap_overflow counts it.
 *  - New bytes landing on a declared gap are not stored (the gap stays; the
 *    reader was already told) and are counted in in_gap.
 *  - data == NULL moves the window like real data but stores nothing and
 *    counts no overlap.
 *  - A segment whose blocks the pool refuses (memcap, no memory) is not
 *    stored at all above head: it stays a hole, as if never captured, and
 *    `refused` counts it; the part below head only compares/overwrites
 *    bytes already held, which needs no block.
 *  - limit 0: base never moves, the window is unbounded for bookkeeping;
 *    overlap is counted on ranges, overlap_diff is always 0.
 *  - set_limit shrink: base moves up to what the new limit needs but never
 *    past head; runs then still beyond base + limit are cut or dropped.
 *    Growing from 0 sets base = head and forgets the runs, since their bytes
 *    were never kept.  The return value counts present bytes lost.
 */
#include "rbuf.h"

#include <stdlib.h>
#include <string.h>

#define LIKELY(x) __builtin_expect(!!(x), 1)
#define UNLIKELY(x) __builtin_expect(!!(x), 0)

#define SH MOS_RBUF_BLOCK_SHIFT
#define BLK MOS_RBUF_BLOCK
#define BMASK (MOS_RBUF_BLOCK - 1u)
#define LINEAR_RUNS 16 /* below this a linear scan beats binary search */
#define OFF_END UINT64_MAX
#define SMALL_TABLE 16 /* a table this small is kept when the last block goes */

/* Block numbers are offsets >> SH, so they wrap at 2^52 where offsets wrap at
 * 2^64: distances between them are taken modulo 2^52.  nslot divides 2^52,
 * so the slot of a block is the same on both sides of the wrap. */
#define BNM (UINT64_MAX >> SH)
static inline uint64_t bdist(uint64_t from, uint64_t to) { return (to - from) & BNM; }

static inline uint64_t span_end(const mos_span_t *s) { return s->off + s->len; }
static void orig_prune(mos_rbuf_t *rb);
static uint64_t present_below(const mos_rbuf_t *rb, uint64_t to);
static inline uint64_t min64(uint64_t a, uint64_t b) { return a < b ? a : b; }
static inline uint64_t max64(uint64_t a, uint64_t b) { return a > b ? a : b; }

static uint64_t pow2_ceil64(uint64_t x)
{
    uint64_t p = 1;
    while (p < x && p < (UINT64_C(1) << 63)) p <<= 1;
    return p;
}

/* ---- pool ---- */

void mos_rbuf_pool_init(mos_rbuf_pool_t *p, uint64_t memcap, uint64_t max_free)
{
    memset(p, 0, sizeof *p);
    p->memcap = memcap;
    p->max_free = (uint32_t)min64(max_free / BLK, UINT32_MAX);
}

void mos_rbuf_pool_drain(mos_rbuf_pool_t *p)
{
    for (uint32_t i = 0; i < p->nfree; i++) free(p->free_blk[i]);
    free(p->free_blk);
    p->free_blk = NULL;
    p->nfree = 0;
}

/* Can the pool hold `bytes` more? */
static inline int pool_room(const mos_rbuf_pool_t *p, uint64_t bytes)
{
    return !p || !p->memcap || (p->in_use <= p->memcap && bytes <= p->memcap - p->in_use);
}

static inline void pool_take(mos_rbuf_pool_t *p, uint64_t bytes)
{
    if (!p) return;
    p->in_use += bytes;
    if (p->in_use > p->peak) p->peak = p->in_use;
}

static inline void pool_give(mos_rbuf_pool_t *p, uint64_t bytes)
{
    if (p) p->in_use -= bytes;
}

static uint8_t *blk_get(mos_rbuf_t *rb)
{
    mos_rbuf_pool_t *p = rb->pool;
    uint8_t *b;
    if (p && p->nfree) {
        b = p->free_blk[--p->nfree];
    } else if (!(b = malloc(BLK))) {
        return NULL;
    }
    pool_take(p, BLK);
    rb->nblk++;
    return b;
}

static void blk_put(mos_rbuf_t *rb, uint8_t *b)
{
    mos_rbuf_pool_t *p = rb->pool;
    rb->nblk--;
    if (p) {
        p->in_use -= BLK;
        if (p->nfree < p->max_free) {
            if (!p->free_blk && !(p->free_blk = malloc((size_t)p->max_free * sizeof(void *)))) {
                free(b);
                return;
            }
            p->free_blk[p->nfree++] = b;
            return;
        }
    }
    free(b);
}

/* ---- block table ---- */

static inline uint8_t *blk_of(const mos_rbuf_t *rb, uint64_t off)
{
    return rb->slots[(off >> SH) & (rb->nslot - 1)];
}

/* ---- lent pieces (mos_rbuf_insert_lent) ---- */

/* The piece holding off (a present byte in [base, head)), or -1. */
static inline int lent_at(const mos_rbuf_t *rb, uint64_t off)
{
    for (int k = 0; k < rb->nlent; k++)
        if ((uint32_t)off - rb->lent_off[k] < rb->lent_len[k]) return k;
    return -1;
}

/* How many of the n bytes from off (present, not lent) lie before the next
 * piece: block storage may be read that far. */
static inline uint64_t before_lent(const mos_rbuf_t *rb, uint64_t off, uint64_t n)
{
    for (int k = 0; k < rb->nlent; k++) {
        uint32_t d = rb->lent_off[k] - (uint32_t)off; /* wraps for pieces behind off */
        if (d < n) n = d;
    }
    return n;
}

/* The first k pieces leave the list. */
static void lent_shift(mos_rbuf_t *rb, int k)
{
    for (int j = k; j < rb->nlent; j++) {
        rb->lent[j - k] = rb->lent[j];
        rb->lent_off[j - k] = rb->lent_off[j];
        rb->lent_len[j - k] = rb->lent_len[j];
    }
    rb->nlent = (uint8_t)(rb->nlent - k);
}

/* base moved to nb: the pieces below it go, one straddling it is cut. */
static void lent_drop_below(mos_rbuf_t *rb, uint64_t nb)
{
    int k = 0;
    while (k < rb->nlent) {
        uint64_t s = mos_rbuf_lent_start(rb, k);
        if (s >= nb) break;
        uint64_t e = s + rb->lent_len[k];
        if (e > nb) {
            rb->lent[k] += nb - s;
            rb->lent_off[k] = (uint32_t)nb;
            rb->lent_len[k] = (uint32_t)(e - nb);
            break;
        }
        k++;
    }
    lent_shift(rb, k);
}

static void table_free(mos_rbuf_t *rb)
{
    if (!rb->slots) return;
    for (uint32_t i = 0; i < rb->nslot && rb->nblk; i++)
        if (rb->slots[i]) blk_put(rb, rb->slots[i]);
    pool_give(rb->pool, (uint64_t)rb->nslot * sizeof *rb->slots);
    free(rb->slots);
    rb->slots = NULL;
    rb->nslot = 0;
}

/* A table of n entries (power of two) keeping the held blocks numbered
 * lo .. lo + keep - 1; the others go back.  Held blocks all have numbers in
 * [base >> SH, (base >> SH) + nslot).  -1 (nothing changed) when refused. */
static int table_resize(mos_rbuf_t *rb, uint64_t n, uint64_t lo, uint64_t keep)
{
    uint64_t add = n > rb->nslot ? (n - rb->nslot) * sizeof *rb->slots : 0;
    if (!pool_room(rb->pool, add)) return -1;
    uint8_t **t = calloc(n, sizeof *t);
    if (!t) return -1;
    uint64_t b0 = rb->base >> SH;
    for (uint32_t i = 0; i < rb->nslot; i++) {
        uint8_t *b = rb->slots[i];
        if (!b) continue;
        uint64_t bn = (b0 + ((i - b0) & (rb->nslot - 1))) & BNM;
        if (bdist(lo, bn) < keep) t[bn & (n - 1)] = b;
        else blk_put(rb, b);
    }
    pool_give(rb->pool, (uint64_t)rb->nslot * sizeof *rb->slots);
    pool_take(rb->pool, n * sizeof *t);
    free(rb->slots);
    rb->slots = t;
    rb->nslot = (uint32_t)n;
    return 0;
}

/* Move base up to nb (> base): the blocks wholly below it go back. */
static void set_base(mos_rbuf_t *rb, uint64_t nb)
{
    uint64_t from = rb->base >> SH, to = nb >> SH;
    if (rb->nlent) lent_drop_below(rb, nb); /* reads base: before it moves */
    rb->base = nb;
    if (!rb->nblk || (from == to && (nb != rb->head || rb->nruns))) return;
    /* nothing held at all (the reader took every byte): the block under base
     * goes too, so an idle flow holds no storage */
    int all = nb == rb->head && !rb->nruns;
    if (all && rb->nblk == 1 && blk_of(rb, nb)) { /* a reader keeping up: the usual case */
        blk_put(rb, rb->slots[to & (rb->nslot - 1)]);
        rb->slots[to & (rb->nslot - 1)] = NULL;
    } else if (bdist(from, to) >= rb->nslot || all) {
        for (uint32_t i = 0; i < rb->nslot && rb->nblk; i++)
            if (rb->slots[i]) {
                blk_put(rb, rb->slots[i]);
                rb->slots[i] = NULL;
            }
    } else {
        for (uint64_t k = bdist(from, to), bn = from; k && rb->nblk; k--, bn++) {
            uint8_t **s = &rb->slots[bn & (rb->nslot - 1)];
            if (*s) {
                blk_put(rb, *s);
                *s = NULL;
            }
        }
    }
    if (!rb->nblk && rb->nslot > SMALL_TABLE) table_free(rb); /* a burst of reordering is over */
}

void mos_rbuf_release_slow(mos_rbuf_t *rb, uint64_t off)
{
    if (off > rb->head) off = rb->head;
    if (off > rb->base) set_base(rb, off);
}

/* Blocks for [s, e) (base <= s < e <= base + limit): 0, or -1 with nothing
 * taken when the pool refuses them. */
static int reserve_slow(mos_rbuf_t *rb, uint64_t s, uint64_t e);
static inline int reserve(mos_rbuf_t *rb, uint64_t s, uint64_t e)
{
    /* most segments fit in a block already held */
    if (LIKELY(((s ^ (e - 1)) >> SH) == 0 && bdist(rb->base >> SH, s >> SH) < rb->nslot &&
               blk_of(rb, s)))
        return 0;
    return reserve_slow(rb, s, e);
}

static int reserve_slow(mos_rbuf_t *rb, uint64_t s, uint64_t e)
{
    uint64_t b0 = rb->base >> SH, bs = s >> SH, nb = bdist(bs, (e - 1) >> SH) + 1;
    uint64_t need = bdist(b0, bs) + nb;
    if (need > rb->nslot) {
        uint64_t n = pow2_ceil64(need);
        if (n < 4) n = 4;
        if (table_resize(rb, n, b0, UINT64_MAX)) return -1;
    }
    uint32_t m = rb->nslot - 1, missing = 0;
    for (uint64_t k = 0; k < nb; k++) missing += rb->slots[(bs + k) & m] == NULL;
    if (!missing) return 0;
    if (!pool_room(rb->pool, (uint64_t)missing * BLK)) return -1;
    for (uint64_t k = 0, bn = bs; k < nb; k++, bn++) {
        uint8_t **slot = &rb->slots[bn & m];
        if (!*slot && !(*slot = blk_get(rb))) return -1; /* out of memory: the blocks taken stay
                                                          * (empty, freed with the window) */
    }
    return 0;
}

static inline void ring_write(mos_rbuf_t *rb, uint64_t off, const uint8_t *src, uint64_t n)
{
    while (n) {
        uint32_t pos = (uint32_t)off & BMASK;
        uint64_t k = min64(n, BLK - pos);
        memcpy(blk_of(rb, off) + pos, src, k);
        off += k; src += k; n -= k;
    }
}

/* Where the present byte at off is held, and how many held bytes follow it
 * there (at most n): a lent piece, or a block up to its end or the next piece. */
static inline const uint8_t *held_at(const mos_rbuf_t *rb, uint64_t off, uint64_t n,
                                     uint64_t *k)
{
    if (UNLIKELY(rb->nlent)) {
        int j = lent_at(rb, off);
        if (j >= 0) {
            uint32_t d = (uint32_t)off - rb->lent_off[j];
            *k = min64(n, rb->lent_len[j] - d);
            return rb->lent[j] + d;
        }
        n = before_lent(rb, off, n);
    }
    uint32_t pos = (uint32_t)off & BMASK;
    *k = min64(n, BLK - pos);
    return blk_of(rb, off) + pos;
}

static inline void ring_read(const mos_rbuf_t *rb, uint64_t off, uint8_t *dst, uint64_t n)
{
    while (n) {
        uint64_t k;
        const uint8_t *src = held_at(rb, off, n, &k);
        memcpy(dst, src, k);
        off += k; dst += k; n -= k;
    }
}

/* ---- span arrays ---- */

static int spans_reserve(mos_span_t **arr, uint16_t *capp, unsigned need, unsigned max)
{
    if (need <= *capp) return 0;
    unsigned nc = *capp ? *capp * 2u : 4u;
    while (nc < need) nc *= 2u;
    if (nc > max) nc = max;
    mos_span_t *p = realloc(*arr, nc * sizeof *p);
    if (!p) return -1;
    *arr = p;
    *capp = (uint16_t)nc;
    return 0;
}

/* First run whose end is >= x (touching x from below counts). */
static unsigned runs_end_ge(const mos_rbuf_t *rb, uint64_t x)
{
    unsigned lo = 0, hi = rb->nruns;
    if (hi <= LINEAR_RUNS) {
        while (lo < hi && span_end(&rb->runs[lo]) < x) lo++;
        return lo;
    }
    while (lo < hi) {
        unsigned mid = lo + (hi - lo) / 2;
        if (span_end(&rb->runs[mid]) < x) lo = mid + 1; else hi = mid;
    }
    return lo;
}

/* First gap whose end is > x. */
static unsigned gaps_end_gt(const mos_rbuf_t *rb, uint64_t x)
{
    unsigned lo = 0, hi = rb->ngaps;
    while (lo < hi) {
        unsigned mid = lo + (hi - lo) / 2;
        if (span_end(&rb->gaps[mid]) <= x) lo = mid + 1; else hi = mid;
    }
    return lo;
}

/* Drop the gaps that end at or below off: the deque's start moves. */
static void gaps_forget(mos_rbuf_t *rb, uint64_t off)
{
    unsigned k = gaps_end_gt(rb, off);
    if (k) {
        rb->gaps += k;
        rb->g0 += k;
        rb->ngaps -= (uint16_t)k;
    }
}

/* Room for one more gap at the end: 0, or -1 (MOS_RBUF_MAX_GAPS listed, or
 * no memory).  The array holds up to twice MOS_RBUF_MAX_GAPS entries and is
 * compacted only when its free start is half of it, so each forgotten gap
 * pays for at most one move. */
static int gaps_room(mos_rbuf_t *rb)
{
    if (rb->g0 + rb->ngaps < rb->gapcap && rb->ngaps < MOS_RBUF_MAX_GAPS) return 0;
    gaps_forget(rb, rb->base); /* make room from history first */
    if (rb->ngaps >= MOS_RBUF_MAX_GAPS) return -1;
    if (rb->g0 + rb->ngaps < rb->gapcap) return 0;
    mos_span_t *mem = rb->gapcap ? rb->gaps - rb->g0 : NULL;
    if (rb->g0 && rb->g0 >= rb->gapcap / 2) {
        memmove(mem, rb->gaps, rb->ngaps * sizeof *mem);
        rb->gaps = mem;
        rb->g0 = 0;
        return 0;
    }
    uint32_t nc = rb->gapcap ? rb->gapcap * 2u : 4u;
    if (nc > 2u * MOS_RBUF_MAX_GAPS) nc = 2u * MOS_RBUF_MAX_GAPS;
    if (nc <= rb->g0 + rb->ngaps) return -1;
    mos_span_t *p = realloc(rb->gapcap ? mem : NULL, nc * sizeof *p);
    if (!p) return -1;
    rb->gaps = p + rb->g0;
    rb->gapcap = nc;
    return 0;
}

/* Declare [from, to) a gap; from >= end of the last gap. */
static void gap_add(mos_rbuf_t *rb, uint64_t from, uint64_t to)
{
    if (rb->ngaps && span_end(&rb->gaps[rb->ngaps - 1]) == from) {
        rb->gaps[rb->ngaps - 1].len += to - from;
        return;
    }
    if (gaps_room(rb)) {
        if (rb->ngaps) {
            /* widen the last gap: the bytes in between become
             * unreadable, never wrongly readable */
            rb->gaps[rb->ngaps - 1].len = to - rb->gaps[rb->ngaps - 1].off;
        } else if (to > rb->base) {
            set_base(rb, to); /* cannot record even one gap: drop all below it */
        }
        rb->gap_overflow++;
        return;
    }
    rb->gaps[rb->ngaps].off = from;
    rb->gaps[rb->ngaps].len = to - from;
    rb->ngaps++;
}

/* Declare everything below `to` (> head) delivered: holes become gaps, runs
 * below it join the in-order data, then head takes a run touching it.
 * Returns the number of holes declared. */
static unsigned pass_head(mos_rbuf_t *rb, uint64_t to)
{
    uint64_t h = rb->head;
    unsigned k = 0, holes = 0;
    while (k < rb->nruns && rb->runs[k].off < to) {
        gap_add(rb, h, rb->runs[k].off); /* runs never touch head or each other */
        holes++;
        h = span_end(&rb->runs[k]);
        k++;
    }
    if (h < to) {
        gap_add(rb, h, to);
        holes++;
        h = to;
    }
    if (k < rb->nruns && rb->runs[k].off == h) h = span_end(&rb->runs[k++]);
    if (k) {
        memmove(rb->runs, rb->runs + k, (rb->nruns - k) * sizeof *rb->runs);
        rb->nruns -= (uint16_t)k;
    }
    rb->head = h;
    if (rb->orig) orig_prune(rb);
    return holes;
}

static inline void add_u16(uint16_t *c, unsigned v)
{
    unsigned s = *c + v;
    *c = s > 0xffffu ? 0xffffu : (uint16_t)s;
}

/* Move base up to nb (> base), passing head if need be. */
static void advance_base(mos_rbuf_t *rb, uint64_t nb, mos_rbuf_result_t *res)
{
    res->dropped_old_from = rb->base;
    res->dropped_old_to = nb;
    if (nb > rb->head) {
        uint64_t h0 = rb->head;
        add_u16(&res->gaps_added, pass_head(rb, nb));
        res->new_inorder += rb->head - h0;
    }
    if (nb > rb->base) set_base(rb, nb); /* gap_add may already have moved it */
}

/* ---- storing ---- */

static inline void store(mos_rbuf_t *rb, uint64_t off, const uint8_t *src, uint64_t n)
{
    if (rb->limit && n) ring_write(rb, off, src, n);
}

/* Compare n new bytes with the stored ones at off; with `replace` the new
 * bytes take their place where they differ.  Returns the bytes that differed. */
static uint64_t compare_stored(mos_rbuf_t *rb, uint64_t off, const uint8_t *src, uint64_t n,
                               int replace)
{
    uint64_t diff = 0;
    while (n) {
        uint64_t k;
        /* lent bytes are never replaced: nothing is lent under LAST */
        uint8_t *p = (uint8_t *)held_at(rb, off, n, &k);
        if (memcmp(p, src, k)) {
            for (uint64_t i = 0; i < k; i++) diff += p[i] != src[i];
            if (replace) memcpy(p, src, k);
        }
        off += k; src += k; n -= k;
    }
    return diff;
}

/* New bytes land on stored ones: count, compare, apply FIRST or LAST (every
 * policy but LAST keeps the stored bytes here). */
static void overlap_stored(mos_rbuf_t *rb, uint64_t off, const uint8_t *src, uint64_t n,
                           mos_rbuf_result_t *res)
{
    res->overlap += n;
    if (!rb->limit) return; /* limit 0: ranges only */
    res->overlap_diff += compare_stored(rb, off, src, n, rb->policy == MOS_OVERLAP_LAST);
}

/* ---- origins: which segment stored each out-of-order byte ---- */

static inline int target_based(const mos_rbuf_t *rb) { return rb->policy >= MOS_OVERLAP_BSD; }

/* First origin whose end is > x. */
static uint32_t orig_end_gt(const mos_origins_t *o, uint64_t x)
{
    uint32_t lo = 0, hi = o->n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (o->v[mid].end <= x) lo = mid + 1; else hi = mid;
    }
    return lo;
}

/* Origins of bytes now in order are of no more use: no policy applies there. */
static void orig_prune(mos_rbuf_t *rb)
{
    mos_origins_t *o = rb->orig;
    if (!o || !o->n) return;
    uint32_t k = rb->nruns ? orig_end_gt(o, rb->head) : o->n;
    if (k) {
        memmove(o->v, o->v + k, (o->n - k) * sizeof *o->v);
        o->n -= k;
    }
}

static inline int same_origin(const mos_origin_t *x, const mos_origin_t *y)
{
    return x->so == y->so && x->se == y->se && x->end == y->off;
}

/* The bytes [a, b) now come from the segment [so, se).  When the list is
 * full (or memory runs out) part of the range may be left with no origin. */
static void orig_set(mos_rbuf_t *rb, uint64_t a, uint64_t b, uint64_t so, uint64_t se)
{
    if (a >= b) return;
    mos_origins_t *o = rb->orig;
    if (!o) {
        o = malloc(sizeof *o + 8 * sizeof(mos_origin_t));
        if (!o) return;
        o->n = 0;
        o->cap = 8;
        rb->orig = o;
    }
    uint32_t i = orig_end_gt(o, a), j = i;
    while (j < o->n && o->v[j].off < b) j++;
    mos_origin_t add[3];
    unsigned na = 0;
    if (i < j && o->v[i].off < a) { add[na] = o->v[i]; add[na++].end = a; }
    add[na++] = (mos_origin_t){a, b, so, se};
    if (i < j && o->v[j - 1].end > b) { add[na] = o->v[j - 1]; add[na++].off = b; }
    uint32_t n = o->n - (j - i) + na;
    if (n > o->cap) {
        uint32_t cap = o->cap;
        while (cap < n && cap < MOS_RBUF_MAX_ORIGINS) cap *= 2;
        if (cap > MOS_RBUF_MAX_ORIGINS) cap = MOS_RBUF_MAX_ORIGINS;
        mos_origins_t *g = cap >= n ? realloc(o, sizeof *o + cap * sizeof(mos_origin_t)) : NULL;
        if (!g) { /* full: the range keeps no origin (the left part survives) */
            uint32_t keep = (i < j && o->v[i].off < a) ? 1 : 0;
            if (keep) o->v[i].end = a;
            memmove(o->v + i + keep, o->v + j, (o->n - j) * sizeof *o->v);
            o->n -= (j - i) - keep;
            return;
        }
        o = rb->orig = g;
        o->cap = cap;
    }
    memmove(o->v + i + na, o->v + j, (o->n - j) * sizeof *o->v);
    memcpy(o->v + i, add, na * sizeof *add);
    o->n = n;
    /* one entry per run of bytes from one segment: merge the pairs (k, k+1)
     * the change touched, from the last down */
    uint32_t lo = i ? i - 1 : 0;
    for (uint32_t k = i + na; k-- > lo;) {
        if (k + 1 < o->n && same_origin(&o->v[k], &o->v[k + 1])) {
            o->v[k].end = o->v[k + 1].end;
            memmove(o->v + k + 1, o->v + k + 2, (o->n - k - 2) * sizeof *o->v);
            o->n--;
        }
    }
}

/* Does a new segment [s, e) win over the bytes its origin [os, oe) stored?
 * (the table in rbuf.h) */
static int new_wins(int policy, uint64_t s, uint64_t e, uint64_t os, uint64_t oe)
{
    if (s < os) return policy != MOS_OVERLAP_SOLARIS || e >= oe;
    if (s == os) {
        if (e < oe) return 0;
        if (e > oe) return policy != MOS_OVERLAP_BSD;
        return policy == MOS_OVERLAP_OLD_LINUX || policy == MOS_OVERLAP_SOLARIS;
    }
    return policy == MOS_OVERLAP_SOLARIS && e > oe;
}

/* Target-based overlap above head: bytes of the segment [s, e) land on
 * stored bytes [off, off + n); each part is settled against its origin. */
static void overlap_target(mos_rbuf_t *rb, uint64_t off, const uint8_t *src, uint64_t n,
                           uint64_t s, uint64_t e, mos_rbuf_result_t *res)
{
    res->overlap += n;
    if (!rb->limit) return;
    uint64_t end = off + n;
    while (off < end) {
        const mos_origins_t *o = rb->orig;
        uint32_t k = o ? orig_end_gt(o, off) : 0;
        uint64_t stop = end;
        int win = 0;
        if (o && k < o->n && o->v[k].off <= off) {
            stop = min64(stop, o->v[k].end);
            win = new_wins(rb->policy, s, e, o->v[k].so, o->v[k].se);
        } else if (o && k < o->n) {
            stop = min64(stop, o->v[k].off); /* no origin known: keep */
        }
        res->overlap_diff += compare_stored(rb, off, src, stop - off, win);
        if (win) orig_set(rb, off, stop, s, e);
        src += stop - off;
        off = stop;
    }
}

/* Segment part below head: present bytes overlap, gap bytes are ignored. */
static void insert_below_head(mos_rbuf_t *rb, uint64_t off, const uint8_t *src, uint64_t n,
                              mos_rbuf_result_t *res)
{
    uint64_t end = off + n;
    unsigned g = rb->ngaps ? gaps_end_gt(rb, off) : 0;
    while (off < end) {
        uint64_t stop = end;
        if (g < rb->ngaps && rb->gaps[g].off < end) stop = max64(rb->gaps[g].off, off);
        if (stop > off) {
            overlap_stored(rb, off, src, stop - off, res);
            src += stop - off;
            off = stop;
        }
        if (off >= end) break;
        uint64_t ge = min64(span_end(&rb->gaps[g]), end); /* off is inside gap g */
        res->in_gap += ge - off;
        src += ge - off;
        off = ge;
        g++;
    }
}

/* Segment part at or above head: fill holes, overlap runs, merge. */
static void insert_above_head(mos_rbuf_t *rb, uint64_t s, const uint8_t *src, uint64_t n,
                              uint64_t seg_s, uint64_t seg_e, mos_rbuf_result_t *res)
{
    uint64_t e = s + n;
    int tb = target_based(rb) && rb->limit;
    unsigned i = runs_end_ge(rb, s), j = i;
    while (j < rb->nruns && rb->runs[j].off <= e) j++;

    if (i == j) { /* touches no run */
        if (s == rb->head) {
            store(rb, s, src, n);
            rb->head = e;
            res->new_inorder += n;
            return;
        }
        if (rb->nruns >= MOS_RBUF_MAX_RUNS ||
            spans_reserve(&rb->runs, &rb->runcap, rb->nruns + 1u, MOS_RBUF_MAX_RUNS)) {
            res->runs_dropped++;
            res->dropped_new += n;
            return;
        }
        store(rb, s, src, n);
        if (tb) orig_set(rb, s, e, seg_s, seg_e);
        memmove(rb->runs + i + 1, rb->runs + i, (rb->nruns - i) * sizeof *rb->runs);
        rb->runs[i].off = s;
        rb->runs[i].len = n;
        rb->nruns++;
        return;
    }

    uint64_t pos = s;
    for (unsigned k = i; k < j; k++) {
        const mos_span_t *r = &rb->runs[k];
        uint64_t re = span_end(r);
        if (r->off > pos) { /* hole before this run (r->off <= e) */
            store(rb, pos, src + (pos - s), r->off - pos);
            if (tb) orig_set(rb, pos, r->off, seg_s, seg_e);
            pos = r->off;
        }
        if (pos < e && pos < re) {
            uint64_t oe = min64(re, e);
            if (tb) overlap_target(rb, pos, src + (pos - s), oe - pos, seg_s, seg_e, res);
            else overlap_stored(rb, pos, src + (pos - s), oe - pos, res);
        }
        pos = max64(pos, re);
    }
    if (pos < e) {
        store(rb, pos, src + (pos - s), e - pos);
        if (tb) orig_set(rb, pos, e, seg_s, seg_e);
    }

    uint64_t ms = min64(s, rb->runs[i].off), me = max64(e, span_end(&rb->runs[j - 1]));
    rb->runs[i].off = ms;
    rb->runs[i].len = me - ms;
    if (j - i > 1) {
        memmove(rb->runs + i + 1, rb->runs + j, (rb->nruns - j) * sizeof *rb->runs);
        rb->nruns -= (uint16_t)(j - i - 1);
    }
    if (ms == rb->head) { /* filled the hole at head: i == 0 */
        rb->head = me;
        res->new_inorder += me - ms;
        memmove(rb->runs, rb->runs + 1, (rb->nruns - 1u) * sizeof *rb->runs);
        rb->nruns--;
        if (rb->orig) orig_prune(rb);
    }
}

/* ---- public ---- */

int mos_rbuf_init(mos_rbuf_t *rb, uint32_t limit, int policy, mos_rbuf_pool_t *pool)
{
    if (limit > MOS_RBUF_MAX_LIMIT) return -1;
    if (policy < 0 || policy >= MOS_OVERLAP_COUNT) return -1;
    memset(rb, 0, sizeof *rb);
    rb->limit = limit;
    rb->pool = pool;
    rb->policy = (uint8_t)policy;
    return 0;
}

int mos_rbuf_set_policy(mos_rbuf_t *rb, int policy)
{
    if (policy < 0 || policy >= MOS_OVERLAP_COUNT) return -1;
    if (rb->orig) rb->orig->n = 0; /* origins recorded under another policy may be stale */
    if (policy == MOS_OVERLAP_LAST) mos_rbuf_unlend(rb); /* LAST writes over held bytes */
    rb->policy = (uint8_t)policy;
    return 0;
}

void mos_rbuf_free(mos_rbuf_t *rb)
{
    table_free(rb);
    free(rb->runs);
    free(rb->gaps ? rb->gaps - rb->g0 : NULL);
    free(rb->orig);
    rb->orig = NULL;
    rb->runs = rb->gaps = NULL;
    rb->limit = 0; /* consistent if used again: bookkeeping only */
    rb->nruns = rb->runcap = rb->ngaps = 0;
    rb->g0 = rb->gapcap = 0;
    rb->nlent = 0;
}

/* Blocks for the part [s, e) above head refused: count it (it stays a hole). */
static inline void refuse(mos_rbuf_t *rb, uint64_t n, mos_rbuf_result_t *res)
{
    res->refused += n;
    if (rb->pool) {
        rb->pool->refused_segments++;
        rb->pool->refused_bytes += n;
    }
}

/* The common case: in order, nothing out of order, fits the window. */
static inline int inorder_fits(const mos_rbuf_t *rb, uint64_t off, const uint8_t *data,
                               uint32_t len)
{
    return off == rb->head && rb->nruns == 0 && data != NULL && len <= rb->limit &&
           len <= OFF_END - off;
}

/* Store the common case.  base trails by at most limit - len; when it
 * moves it stays <= head.  With `lend`, the bytes join the last lent piece
 * or take a free one. */
static inline void append_inorder(mos_rbuf_t *rb, uint64_t off, const uint8_t *data,
                                  uint32_t len, int lend, mos_rbuf_result_t *res)
{
    uint64_t end = off + len;
    if (end - rb->base > rb->limit) {
        res->dropped_old_from = rb->base;
        res->dropped_old_to = end - rb->limit;
        set_base(rb, end - rb->limit);
    }
    int k = rb->nlent;
    if (lend && k && rb->lent[k - 1] + rb->lent_len[k - 1] == data &&
        (uint32_t)off - rb->lent_off[k - 1] == rb->lent_len[k - 1]) {
        rb->lent_len[k - 1] += len; /* continues the last piece in memory too */
    } else if (lend && k < MOS_RBUF_LENT) {
        rb->lent[k] = data;
        rb->lent_off[k] = (uint32_t)off;
        rb->lent_len[k] = len;
        rb->nlent++;
    } else {
        if (UNLIKELY(reserve(rb, off, end))) {
            refuse(rb, len, res);
            return;
        }
        ring_write(rb, off, data, len);
    }
    rb->head = end;
    res->new_inorder = len;
}

void mos_rbuf_insert(mos_rbuf_t *rb, uint64_t off, const uint8_t *data, uint32_t len,
                     mos_rbuf_result_t *res)
{
    memset(res, 0, sizeof *res);
    if (UNLIKELY(len == 0)) return;
    if (LIKELY(inorder_fits(rb, off, data, len))) {
        append_inorder(rb, off, data, len, 0, res);
        return;
    }

    uint64_t n = len;
    if (UNLIKELY(n > OFF_END - off)) { /* the offset space ends at UINT64_MAX */
        res->dropped_new = n - (OFF_END - off);
        n = OFF_END - off;
        if (!n) return;
    }
    uint64_t end = off + n, seg_s = off;
    if (off < rb->base) {
        uint64_t b = min64(rb->base - off, n);
        res->below_base = b;
        if (b == n) return;
        off += b; n -= b;
        if (data) data += b;
    }
    if (rb->limit && end - rb->base > rb->limit) { /* make room */
        uint64_t nb = end - rb->limit;
        advance_base(rb, nb, res);
        if (off < rb->base) { /* longer than the whole window */
            uint64_t d = rb->base - off;
            res->dropped_new += d;
            off += d; n -= d;
            if (data) data += d;
        }
    }
    if (!data) return; /* uncaptured bytes: the range stays a hole */
    if (off < rb->head) {
        uint64_t k = min64(end, rb->head) - off;
        insert_below_head(rb, off, data, k, res);
        if (k == n) return;
        off += k; data += k; n -= k;
    }
    if (rb->limit && reserve(rb, off, end)) {
        refuse(rb, n, res);
        return;
    }
    insert_above_head(rb, off, data, n, seg_s, end, res);
}

void mos_rbuf_insert_lent(mos_rbuf_t *rb, uint64_t off, const uint8_t *data, uint32_t len,
                          mos_rbuf_result_t *res)
{
    if (!(len && inorder_fits(rb, off, data, len) && rb->policy != MOS_OVERLAP_LAST)) {
        mos_rbuf_insert(rb, off, data, len, res);
        return;
    }
    memset(res, 0, sizeof *res);
    append_inorder(rb, off, data, len, 1, res);
}

uint64_t mos_rbuf_unlend(mos_rbuf_t *rb)
{
    uint64_t lost = 0;
    while (rb->nlent) {
        uint64_t s = mos_rbuf_lent_start(rb, 0), n = rb->lent_len[0];
        const uint8_t *src = rb->lent[0];
        lent_shift(rb, 1); /* piece 0 leaves the list first: the blocks take its bytes */
        if (reserve(rb, s, s + n) == 0) {
            ring_write(rb, s, src, n);
        } else { /* no block for it: everything up to its end goes */
            lost += present_below(rb, s + n);
            if (rb->pool) {
                rb->pool->refused_segments++;
                rb->pool->refused_bytes += n;
            }
            set_base(rb, s + n);
        }
    }
    return lost;
}

int mos_rbuf_skip_to(mos_rbuf_t *rb, uint64_t off, uint64_t *advanced)
{
    uint64_t h0 = rb->head;
    unsigned holes = off > rb->head ? pass_head(rb, off) : 0;
    if (advanced) *advanced = rb->head - h0;
    return (int)holes;
}

int mos_rbuf_flush(mos_rbuf_t *rb, uint64_t *advanced)
{
    if (!rb->nruns) {
        if (advanced) *advanced = 0;
        return 0;
    }
    return mos_rbuf_skip_to(rb, span_end(&rb->runs[rb->nruns - 1]), advanced);
}

/* Count of present bytes from off on (0 if off is not present). */
static uint64_t present_at(const mos_rbuf_t *rb, uint64_t off)
{
    if (!rb->limit || off < rb->base) return 0;
    if (off < rb->head) {
        uint64_t stop = rb->head;
        if (rb->ngaps) {
            unsigned g = gaps_end_gt(rb, off);
            if (g < rb->ngaps) {
                if (rb->gaps[g].off <= off) return 0;
                stop = min64(stop, rb->gaps[g].off);
            }
        }
        return stop - off;
    }
    unsigned i = runs_end_ge(rb, off);
    if (i < rb->nruns && span_end(&rb->runs[i]) == off) i++;
    if (i < rb->nruns && rb->runs[i].off <= off) return span_end(&rb->runs[i]) - off;
    return 0;
}

uint32_t mos_rbuf_copy(const mos_rbuf_t *rb, uint64_t off, uint8_t *out, uint32_t n)
{
    uint64_t k = min64(present_at(rb, off), n);
    if (k) ring_read(rb, off, out, k);
    return (uint32_t)k;
}

const uint8_t *mos_rbuf_ptr(const mos_rbuf_t *rb, uint64_t off, uint32_t *len)
{
    uint64_t k = present_at(rb, off);
    if (!k) {
        *len = 0;
        return NULL;
    }
    uint64_t n;
    const uint8_t *p = held_at(rb, off, k, &n);
    *len = (uint32_t)n;
    return p;
}

const mos_span_t *mos_rbuf_gap_after(const mos_rbuf_t *rb, uint64_t off)
{
    unsigned g = gaps_end_gt(rb, off);
    return g < rb->ngaps ? &rb->gaps[g] : NULL;
}

uint64_t mos_rbuf_ooo_bytes(const mos_rbuf_t *rb)
{
    uint64_t s = 0;
    for (unsigned i = 0; i < rb->nruns; i++) s += rb->runs[i].len;
    return s;
}

void mos_rbuf_forget_gaps(mos_rbuf_t *rb, uint64_t off)
{
    /* a gap inside the buffer marks bytes never stored: forgetting it would
     * let a copy return them, so nothing at or above base goes */
    gaps_forget(rb, off < rb->base ? off : rb->base);
}

/* Present bytes in [base, to), base <= to <= head. */
static uint64_t present_below(const mos_rbuf_t *rb, uint64_t to)
{
    uint64_t s = to - rb->base;
    for (unsigned g = gaps_end_gt(rb, rb->base); g < rb->ngaps && rb->gaps[g].off < to; g++)
        s -= min64(span_end(&rb->gaps[g]), to) - max64(rb->gaps[g].off, rb->base);
    return s;
}

uint64_t mos_rbuf_set_limit(mos_rbuf_t *rb, uint32_t limit)
{
    if (limit > MOS_RBUF_MAX_LIMIT) return UINT64_MAX;
    if (limit == rb->limit) return 0;
    uint64_t dropped = 0;
    if (rb->limit == 0) { /* nothing was held: start the window at head */
        rb->base = rb->head;
        rb->nruns = 0;
        rb->limit = limit;
        return 0;
    }
    if (limit == 0) {
        dropped = present_below(rb, rb->head) + mos_rbuf_ooo_bytes(rb);
        table_free(rb);
        rb->nlent = 0;
        free(rb->orig);
        rb->orig = NULL;
        rb->limit = 0;
        return dropped;
    }
    if (limit < rb->limit) {
        /* highest present byte + 1 */
        uint64_t hi = rb->head;
        if (rb->nruns) hi = span_end(&rb->runs[rb->nruns - 1]);
        else if (rb->ngaps && span_end(&rb->gaps[rb->ngaps - 1]) == hi) hi = rb->gaps[rb->ngaps - 1].off;
        if (hi < rb->base) hi = rb->base;
        if (hi - rb->base > limit) {
            uint64_t nb = min64(hi - limit, rb->head);
            dropped += present_below(rb, nb);
            if (nb > rb->base) set_base(rb, nb);
            /* runs still beyond the window are cut */
            while (rb->nruns && rb->runs[rb->nruns - 1].off - nb >= limit)
                dropped += rb->runs[--rb->nruns].len;
            if (rb->nruns && span_end(&rb->runs[rb->nruns - 1]) - nb > limit) {
                mos_span_t *r = &rb->runs[rb->nruns - 1];
                dropped += span_end(r) - nb - limit;
                r->len = limit - (r->off - nb);
            }
        }
        rb->limit = limit;
        /* blocks past the new window go; the table shrinks to fit it (on
         * failure the big table still works) */
        if (rb->slots) {
            uint64_t b0 = rb->base >> SH, keep = bdist(b0, (rb->base + limit - 1) >> SH) + 1;
            uint64_t n = pow2_ceil64(keep);
            if (n < 4) n = 4;
            if (n > rb->nslot) n = rb->nslot;
            table_resize(rb, n, b0, keep);
        }
        return dropped;
    }
    rb->limit = limit; /* grow: blocks follow on demand */
    return 0;
}
