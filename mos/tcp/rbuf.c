/* rbuf.c: one side's receive buffer (contract in rbuf.h).
 *
 * Layout: the byte at stream offset o lives at data[o & (cap - 1)].  Every
 * stored byte lies in [base, base + cap), so offsets never collide in the
 * ring; when cap changes the bytes are laid out again.
 *
 * Choices the header leaves open:
 *  - limit is clamped to 2^31 so that a power-of-two ring >= limit fits cap.
 *  - The last offset, UINT64_MAX, is never stored (ends are exclusive and
 *    must fit in 64 bits); bytes beyond it are counted in dropped_new.
 *  - A hole declared right where the last gap ends extends that gap, so
 *    gaps are maximal; gaps_added counts holes, not new entries.
 *  - Gaps wholly below base may be forgotten, but only when the gap array is
 *    full and needs room (or on mos_rbuf_forget_gaps): within one call the
 *    gaps it declared are the last entries, and memory stays proportional to
 *    the gaps still in the window.
 *  - At MOS_RBUF_MAX_GAPS gaps in the window the newest hole is merged into
 *    the previous gap (the present bytes between them become unreadable)
 *    and gap_overflow counts it.
 *  - New bytes landing on a declared gap are not stored (the gap stays; the
 *    reader was already told) and are counted in in_gap.
 *  - data == NULL moves the window like real data but stores nothing and
 *    counts no overlap.
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

#define MIN_CAP 4096u
#define LINEAR_RUNS 16 /* below this a linear scan beats binary search */
#define OFF_END UINT64_MAX

static inline uint64_t span_end(const mos_span_t *s) { return s->off + s->len; }
static inline uint64_t min64(uint64_t a, uint64_t b) { return a < b ? a : b; }
static inline uint64_t max64(uint64_t a, uint64_t b) { return a > b ? a : b; }

static uint32_t pow2_ceil(uint32_t x) /* x <= 2^31 */
{
    if (x <= 1) return 1;
    x--;
    x |= x >> 1; x |= x >> 2; x |= x >> 4; x |= x >> 8; x |= x >> 16;
    return x + 1;
}

/* ---- ring access (n <= cap) ---- */

static inline void ring_write(uint8_t *ring, uint32_t cap, uint64_t off, const uint8_t *src, uint64_t n)
{
    uint32_t pos = (uint32_t)off & (cap - 1);
    uint64_t first = min64(n, cap - pos);
    memcpy(ring + pos, src, first);
    if (n > first) memcpy(ring, src + first, n - first);
}

static inline void ring_read(const uint8_t *ring, uint32_t cap, uint64_t off, uint8_t *dst, uint64_t n)
{
    uint32_t pos = (uint32_t)off & (cap - 1);
    uint64_t first = min64(n, cap - pos);
    memcpy(dst, ring + pos, first);
    if (n > first) memcpy(dst + first, ring, n - first);
}

/* Re-lay the held bytes [base, base + min(cap, nc)) into a ring of nc bytes. */
static int relayout(mos_rbuf_t *rb, uint32_t nc)
{
    uint8_t *nd = malloc(nc);
    if (!nd) return -1;
    if (rb->data) {
        uint64_t n = min64(rb->cap, nc);
        uint32_t pos = (uint32_t)rb->base & (rb->cap - 1);
        uint64_t first = min64(n, rb->cap - pos);
        ring_write(nd, nc, rb->base, rb->data + pos, first);
        if (n > first) ring_write(nd, nc, rb->base + first, rb->data, n - first);
        free(rb->data);
    }
    rb->data = nd;
    rb->cap = nc;
    return 0;
}

/* Make the ring hold [base, base + need); need <= limit. */
static int grow(mos_rbuf_t *rb, uint64_t need)
{
    uint32_t top = pow2_ceil(rb->limit);
    uint32_t nc = pow2_ceil((uint32_t)need);
    if (nc < MIN_CAP) nc = MIN_CAP;
    if (nc > top) nc = top;
    return relayout(rb, nc);
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

/* Drop the gaps that end at or below off. */
static void gaps_forget(mos_rbuf_t *rb, uint64_t off)
{
    unsigned k = gaps_end_gt(rb, off);
    if (k) {
        memmove(rb->gaps, rb->gaps + k, (rb->ngaps - k) * sizeof *rb->gaps);
        rb->ngaps -= (uint16_t)k;
    }
}

/* Declare [from, to) a gap; from >= end of the last gap. */
static void gap_add(mos_rbuf_t *rb, uint64_t from, uint64_t to)
{
    if (rb->ngaps && span_end(&rb->gaps[rb->ngaps - 1]) == from) {
        rb->gaps[rb->ngaps - 1].len += to - from;
        return;
    }
    if (rb->ngaps == rb->gapcap) {
        gaps_forget(rb, rb->base); /* make room from history first */
        if (rb->ngaps == rb->gapcap &&
            (rb->ngaps >= MOS_RBUF_MAX_GAPS ||
             spans_reserve(&rb->gaps, &rb->gapcap, rb->ngaps + 1u, MOS_RBUF_MAX_GAPS))) {
            if (rb->ngaps) {
                /* widen the last gap: the bytes in between become
                 * unreadable, never wrongly readable */
                rb->gaps[rb->ngaps - 1].len = to - rb->gaps[rb->ngaps - 1].off;
            } else if (to > rb->base) {
                rb->base = to; /* cannot record even one gap: drop all below it */
            }
            rb->gap_overflow++;
            return;
        }
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
    if (nb > rb->base) rb->base = nb; /* gap_add may already have moved it */
}

/* ---- storing ---- */

static inline void store(mos_rbuf_t *rb, uint64_t off, const uint8_t *src, uint64_t n)
{
    if (rb->data && n) ring_write(rb->data, rb->cap, off, src, n);
}

/* New bytes land on stored ones: count, compare, apply the policy. */
static void overlap_stored(mos_rbuf_t *rb, uint64_t off, const uint8_t *src, uint64_t n,
                           mos_rbuf_result_t *res)
{
    res->overlap += n;
    if (!rb->data) return; /* limit 0: ranges only */
    uint32_t mask = rb->cap - 1;
    while (n) {
        uint32_t pos = (uint32_t)off & mask;
        uint64_t k = min64(n, rb->cap - pos);
        uint8_t *p = rb->data + pos;
        if (memcmp(p, src, k)) {
            uint64_t d = 0;
            for (uint64_t i = 0; i < k; i++) d += p[i] != src[i];
            res->overlap_diff += d;
            if (rb->policy == MOS_OVERLAP_LAST) memcpy(p, src, k);
        }
        off += k; src += k; n -= k;
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
                              mos_rbuf_result_t *res)
{
    uint64_t e = s + n;
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
            pos = r->off;
        }
        if (pos < e && pos < re) {
            uint64_t oe = min64(re, e);
            overlap_stored(rb, pos, src + (pos - s), oe - pos, res);
        }
        pos = max64(pos, re);
    }
    if (pos < e) store(rb, pos, src + (pos - s), e - pos);

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
    }
}

/* ---- public ---- */

void mos_rbuf_init(mos_rbuf_t *rb, uint32_t limit, int policy)
{
    memset(rb, 0, sizeof *rb);
    rb->limit = limit > MOS_RBUF_MAX_LIMIT ? MOS_RBUF_MAX_LIMIT : limit;
    rb->policy = policy == MOS_OVERLAP_LAST ? MOS_OVERLAP_LAST : MOS_OVERLAP_FIRST;
}

void mos_rbuf_free(mos_rbuf_t *rb)
{
    free(rb->data);
    free(rb->runs);
    free(rb->gaps);
    rb->data = NULL;
    rb->runs = rb->gaps = NULL;
    rb->cap = 0;
    rb->limit = 0; /* consistent if used again: bookkeeping only */
    rb->nruns = rb->runcap = rb->ngaps = rb->gapcap = 0;
}

void mos_rbuf_insert(mos_rbuf_t *rb, uint64_t off, const uint8_t *data, uint32_t len,
                     mos_rbuf_result_t *res)
{
    memset(res, 0, sizeof *res);
    if (UNLIKELY(len == 0)) return;

    /* Common case: in order, nothing out of order, fits the ring.  base
     * trails by at most limit - len; when it moves it stays <= head. */
    if (LIKELY(off == rb->head && rb->nruns == 0 && data != NULL && len <= rb->limit &&
               len <= OFF_END - off)) {
        uint64_t used = off - rb->base, room = rb->limit - len;
        uint64_t need = (used > room ? room : used) + len;
        if (LIKELY(need <= rb->cap)) {
            if (used > room) {
                res->dropped_old_from = rb->base;
                res->dropped_old_to = rb->base = off - room;
            }
            ring_write(rb->data, rb->cap, off, data, len);
            rb->head = off + len;
            res->new_inorder = len;
            return;
        }
    }

    uint64_t n = len;
    if (UNLIKELY(n > OFF_END - off)) { /* the offset space ends at UINT64_MAX */
        res->dropped_new = n - (OFF_END - off);
        n = OFF_END - off;
        if (!n) return;
    }
    uint64_t end = off + n;
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
    if (rb->limit && end - rb->base > rb->cap && grow(rb, end - rb->base)) {
        res->dropped_new += n; /* out of memory: as if not captured */
        return;
    }
    if (off < rb->head) {
        uint64_t k = min64(end, rb->head) - off;
        insert_below_head(rb, off, data, k, res);
        if (k == n) return;
        off += k; data += k; n -= k;
    }
    insert_above_head(rb, off, data, n, res);
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
    if (!rb->data || off < rb->base) return 0;
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
    if (k) ring_read(rb->data, rb->cap, off, out, k);
    return (uint32_t)k;
}

const uint8_t *mos_rbuf_ptr(const mos_rbuf_t *rb, uint64_t off, uint32_t *len)
{
    uint64_t k = present_at(rb, off);
    if (!k) {
        *len = 0;
        return NULL;
    }
    uint32_t pos = (uint32_t)off & (rb->cap - 1);
    *len = (uint32_t)min64(k, rb->cap - pos);
    return rb->data + pos;
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
    if (limit > MOS_RBUF_MAX_LIMIT) limit = MOS_RBUF_MAX_LIMIT;
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
        free(rb->data);
        rb->data = NULL;
        rb->cap = 0;
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
            rb->base = nb;
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
        uint32_t top = pow2_ceil(limit);
        if (rb->data && rb->cap > top) relayout(rb, top); /* on failure the big ring still works */
        return dropped;
    }
    rb->limit = limit; /* grow: the ring follows on demand */
    return 0;
}
