/* fuzz_rbuf.c: the receive buffer (mos/tcp/rbuf.h) against a shadow copy of
 * every byte written.
 *
 * Each write stores pattern(offset, version) for one of four versions (one
 * only in exact mode); the shadow keeps, per offset, the versions written
 * with real bytes.  Invariants:
 *   - a byte read back (copy, ptr) equals pattern(offset, v) for a version v
 *     written there with data: never a byte that was not written, never a
 *     byte from a snapped write (data NULL), never from below base or
 *     inside a declared gap; in exact mode it is the byte written;
 *   - copy and ptr agree, and stop where the data stops;
 *   - the fields keep what rbuf.h says (fz_check_rbuf), an insert's result
 *     adds up (head moved by new_inorder; overlap_diff <= overlap <= len...);
 *   - ooo_bytes is the sum of the runs; gap_after returns the first gap
 *     ending after the offset.
 * Input: a config byte pair, then operations of a few bytes each. */
#include "fuzz_util.h"

#define SHADOW (1u << 18)          /* offsets exercised: OFFBASE + [0, SHADOW) */

static uint8_t mask[SHADOW];       /* versions written at each offset (bit v) */
static uint8_t tmp[1u << 17];
/* lend mode: inserts go through mos_rbuf_insert_lent with bytes that stay
 * put until the input ends, as the frames of a mapped capture do */
static uint8_t arena[1u << 22];
static size_t arena_used;

static const uint32_t LIMITS[16] = {0, 1, 7, 16, 100, 512, 1024, 4000, 4096, 8192,
                                    65535, 65536, 100000, 1u << 17, 3, 64};
static const uint64_t BASES[4] = {0, 0xfffffc00ull, 1ull << 40, 0x7ffffffffffff000ull};

static inline uint8_t pattern(uint64_t off, unsigned v)
{
    uint64_t x = off * 0x9e3779b97f4a7c15ull + v * 0x632be59bd9b4e019ull;
    return (uint8_t)(x >> 56);
}

typedef struct {
    mos_rbuf_t rb;
    uint64_t ob;   /* offset of shadow[0] */
    int exact;
    int lend;
} state_t;

static int in_gap(const mos_rbuf_t *rb, uint64_t o)
{
    const mos_span_t *g = mos_rbuf_gap_after(rb, o);
    return g && g->off <= o;
}

/* n bytes read at off: each must be one that was written there */
static void check_read(const state_t *s, uint64_t off, const uint8_t *got, uint32_t n)
{
    const mos_rbuf_t *rb = &s->rb;
    FUZZ_CHECK(n == 0 || off >= rb->base, "read at %llu below base %llu",
               (unsigned long long)off, (unsigned long long)rb->base);
    for (uint32_t i = 0; i < n; i++) {
        uint64_t o = off + i;
        FUZZ_CHECK(o >= s->ob && o - s->ob < SHADOW, "read outside the written range");
        uint8_t m = mask[o - s->ob];
        FUZZ_CHECK(m, "offset %llu returned a byte never written (base %llu head %llu)",
                   (unsigned long long)o, (unsigned long long)rb->base,
                   (unsigned long long)rb->head);
        int ok = 0;
        for (unsigned v = 0; v < 4; v++)
            if ((m >> v & 1) && got[i] == pattern(o, v)) ok = 1;
        FUZZ_CHECK(ok, "offset %llu: byte %02x is none of the versions written (mask %x)",
                   (unsigned long long)o, got[i], m);
        if (i % 64 == 0) /* a gap check per byte would be slow; the ends and every 64th */
            FUZZ_CHECK(!in_gap(rb, o), "offset %llu inside a declared gap returned data",
                       (unsigned long long)o);
    }
    if (n) FUZZ_CHECK(!in_gap(rb, off + n - 1), "last byte read lies in a gap");
}

/* an offset for an operation: absolute in the shadow, or near head or base */
static uint64_t pick_off(fuzz_in_t *in, const state_t *s)
{
    uint8_t how = fin_u8(in);
    uint64_t rel;
    switch (how & 3) {
    case 0: rel = fin_u16(in) | (uint64_t)(how >> 2) << 16; break;
    case 1: rel = s->rb.head - s->ob + (int8_t)fin_u8(in); break;
    case 2: rel = s->rb.head - s->ob + fin_u16(in); break;
    default: rel = s->rb.base - s->ob + (int8_t)fin_u8(in); break;
    }
    if ((int64_t)rel < 0) rel = 0;
    if (rel >= SHADOW) rel = SHADOW - 1;
    return s->ob + rel;
}

static void op_insert(fuzz_in_t *in, state_t *s)
{
    uint64_t off = pick_off(in, s);
    uint8_t a = fin_u8(in);
    uint32_t len = (a & 0x80) ? fin_u16(in) % 8192 : (a & 0x3f);
    int snapped = (a & 0x40) && (a & 1);
    unsigned v = s->exact ? 0 : (fin_u8(in) & 3);
    if (off - s->ob + len > SHADOW) len = (uint32_t)(SHADOW - (off - s->ob));
    uint8_t *src = tmp;
    if (s->lend && !snapped && arena_used + len <= sizeof arena) {
        src = arena + arena_used;
        arena_used += len;
    }
    for (uint32_t i = 0; i < len; i++) src[i] = pattern(off + i, v);
    mos_rbuf_result_t res;
    uint64_t head0 = s->rb.head, base0 = s->rb.base;
    if (src != tmp) mos_rbuf_insert_lent(&s->rb, off, src, len, &res);
    else mos_rbuf_insert(&s->rb, off, snapped ? NULL : src, len, &res);
    if (!snapped)
        for (uint32_t i = 0; i < len; i++) mask[off - s->ob + i] |= (uint8_t)(1u << v);
    FUZZ_CHECK(s->rb.head - head0 == res.new_inorder, "head moved %llu, new_inorder %llu",
               (unsigned long long)(s->rb.head - head0), (unsigned long long)res.new_inorder);
    FUZZ_CHECK(s->rb.base >= base0, "base went back");
    FUZZ_CHECK(res.overlap_diff <= res.overlap && res.overlap <= len, "overlap %llu diff %llu",
               (unsigned long long)res.overlap, (unsigned long long)res.overlap_diff);
    FUZZ_CHECK(res.dropped_new <= len && res.below_base <= len && res.in_gap <= len,
               "result counts over the segment length");
    FUZZ_CHECK(!s->exact || res.overlap_diff == 0, "exact mode: identical bytes differ");
    FUZZ_CHECK(res.dropped_old_from <= res.dropped_old_to, "dropped_old range reversed");
    fuzz_inject("rbuf", s->rb.head > s->ob);
}

static void op_copy(fuzz_in_t *in, state_t *s)
{
    uint64_t off = pick_off(in, s);
    uint32_t n = fin_u16(in) % sizeof tmp;
    memset(tmp, 0xee, n);
    uint32_t got = mos_rbuf_copy(&s->rb, off, tmp, n);
    FUZZ_CHECK(got <= n, "copy returned %u of %u", got, n);
    check_read(s, off, tmp, got);
    uint32_t plen = 12345;
    const uint8_t *p = mos_rbuf_ptr(&s->rb, off, &plen);
    FUZZ_CHECK((p == NULL) == (plen == 0), "ptr %p with length %u", (const void *)p, plen);
    if (p) {
        uint32_t m = plen < got ? plen : got;
        FUZZ_CHECK(m == plen || got == n, "ptr gives %u bytes where copy stopped at %u", plen, got);
        FUZZ_CHECK(memcmp(p, tmp, m) == 0, "ptr and copy differ");
        check_read(s, off, p, plen);
    } else {
        FUZZ_CHECK(got == 0 || n == 0, "copy found %u bytes where ptr found none", got);
    }
}

static void op_gap_after(fuzz_in_t *in, state_t *s)
{
    uint64_t off = pick_off(in, s);
    const mos_span_t *g = mos_rbuf_gap_after(&s->rb, off);
    mos_span_t got = g ? *g : (mos_span_t){0, 0};
    /* the first gap ending after off: walk them all from 0 through the API */
    mos_span_t want = {0, 0};
    int k = 0;
    for (const mos_span_t *q = mos_rbuf_gap_after(&s->rb, 0); q && k <= MOS_RBUF_MAX_GAPS;
         q = mos_rbuf_gap_after(&s->rb, q->off + q->len), k++)
        if (q->off + q->len > off) {
            want = *q;
            break;
        }
    FUZZ_CHECK(got.off == want.off && got.len == want.len,
               "gap_after(%llu) is [%llu,+%llu), the first gap ending after it [%llu,+%llu)",
               (unsigned long long)off, (unsigned long long)got.off, (unsigned long long)got.len,
               (unsigned long long)want.off, (unsigned long long)want.len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_in_t in = {data, size};
    state_t s;
    uint8_t c0 = fin_u8(&in), c1 = fin_u8(&in);
    s.ob = BASES[c0 >> 6];
    s.exact = c1 & 1;
    s.lend = (c1 >> 4) & 1;
    arena_used = 0;
    memset(mask, 0, sizeof mask);
    /* no pool, a pool without a cap, or a memcap of a few blocks (refusals) */
    static const uint64_t MEMCAPS[4] = {0, 0, 3 * MOS_RBUF_BLOCK + 256, 64u << 10};
    mos_rbuf_pool_t pool;
    mos_rbuf_pool_init(&pool, MEMCAPS[(c1 >> 1) & 3], (c1 & 8) ? 0 : 8 * MOS_RBUF_BLOCK);
    mos_rbuf_pool_t *pp = ((c1 >> 1) & 3) ? &pool : NULL;
    mos_rbuf_init(&s.rb, LIMITS[c0 & 15], (((c0 >> 4) & 3) | ((c1 >> 2) & 4)) % MOS_OVERLAP_COUNT, pp);
    /* a buffer that starts mid-stream, as the engine's do after a skip */
    if (s.ob) {
        uint64_t adv = 0;
        mos_rbuf_skip_to(&s.rb, s.ob, &adv);
        mos_rbuf_forget_gaps(&s.rb, s.ob);
    }
    int ops = 0;
    while (!fin_empty(&in) && ops++ < 2000) {
        uint8_t op = fin_u8(&in);
        uint64_t adv = 0;
        switch (op % 12) {
        case 0: case 1: case 2: case 3: op_insert(&in, &s); break;
        case 4: case 5: op_copy(&in, &s); break;
        case 6: {
            uint64_t head0 = s.rb.head, to = pick_off(&in, &s);
            mos_rbuf_skip_to(&s.rb, to, &adv);
            FUZZ_CHECK(s.rb.head >= (to > head0 ? to : head0), "skip_to left head below %llu",
                       (unsigned long long)to);
            FUZZ_CHECK(s.rb.head - head0 == adv, "skip_to advanced %llu, said %llu",
                       (unsigned long long)(s.rb.head - head0), (unsigned long long)adv);
            break;
        }
        case 7: {
            uint64_t head0 = s.rb.head;
            mos_rbuf_flush(&s.rb, &adv);
            FUZZ_CHECK(s.rb.nruns == 0, "runs left after flush");
            FUZZ_CHECK(s.rb.head - head0 == adv, "flush advanced %llu, said %llu",
                       (unsigned long long)(s.rb.head - head0), (unsigned long long)adv);
            break;
        }
        case 8: mos_rbuf_set_limit(&s.rb, LIMITS[fin_u8(&in) & 15]); break;
        case 9: op_gap_after(&in, &s); break;
        case 10: {
            uint64_t off = pick_off(&in, &s);
            if (op & 0x80) {
                uint64_t base0 = s.rb.base;
                mos_rbuf_release(&s.rb, off);
                uint64_t want = off < s.rb.head ? off : s.rb.head;
                FUZZ_CHECK(s.rb.base == (want > base0 ? want : base0), "release to %llu left base %llu",
                           (unsigned long long)off, (unsigned long long)s.rb.base);
            } else {
                mos_rbuf_forget_gaps(&s.rb, off);
            }
            break;
        }
        default: {
            uint64_t sum = 0;
            for (int i = 0; i < s.rb.nruns; i++) sum += s.rb.runs[i].len;
            FUZZ_CHECK(mos_rbuf_ooo_bytes(&s.rb) == sum, "ooo_bytes is not the sum of the runs");
            if (op & 0x80) mos_rbuf_set_policy(&s.rb, ((op >> 4) & 7) % MOS_OVERLAP_COUNT);
            else if (op & 0x40) {
                uint64_t head0 = s.rb.head;
                mos_rbuf_unlend(&s.rb); /* may drop bytes under a memcap, never invent any */
                FUZZ_CHECK(s.rb.nlent == 0 && s.rb.head == head0, "unlend left %u pieces",
                           s.rb.nlent);
            }
            break;
        }
        }
        fz_check_rbuf(&s.rb);
        if (pp) {
            FUZZ_CHECK(pool.in_use == mos_rbuf_held(&s.rb) + (uint64_t)s.rb.nslot * sizeof(void *),
                       "pool in_use %llu, buffer holds %llu", (unsigned long long)pool.in_use,
                       (unsigned long long)(mos_rbuf_held(&s.rb) + s.rb.nslot * sizeof(void *)));
            FUZZ_CHECK(!pool.memcap || pool.in_use <= pool.memcap, "memcap %llu passed: %llu",
                       (unsigned long long)pool.memcap, (unsigned long long)pool.in_use);
        }
    }
    /* everything present must read back right, from base to the last run */
    uint64_t end = s.rb.nruns ? s.rb.runs[s.rb.nruns - 1].off + s.rb.runs[s.rb.nruns - 1].len
                              : s.rb.head;
    int misses = 0;
    for (uint64_t off = s.rb.base; off < end && off - s.ob < SHADOW && misses < 256;) {
        uint32_t got = mos_rbuf_copy(&s.rb, off, tmp, sizeof tmp);
        check_read(&s, off, tmp, got);
        if (got) {
            off += got;
            continue;
        }
        const mos_span_t *g = mos_rbuf_gap_after(&s.rb, off);
        if (g && g->off <= off) off = g->off + g->len;
        else off++, misses++;
    }
    mos_rbuf_free(&s.rb);
    FUZZ_CHECK(pool.in_use == 0, "%llu bytes still counted after free", (unsigned long long)pool.in_use);
    mos_rbuf_pool_drain(&pool);
    return 0;
}
