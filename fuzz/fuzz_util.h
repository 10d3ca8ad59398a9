/* fuzz_util.h: what the libFuzzer harnesses share: an input reader, frame
 * building with checksums computed here (independent of native/decode.c, so
 * the harnesses can judge its rewrites), structural checks of a receive
 * buffer, and the crash injection used to prove that CI fails on a crash.
 *
 * Header only; every harness includes it once. */
#ifndef MOS_FUZZ_UTIL_H
#define MOS_FUZZ_UTIL_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rbuf.h"

/* A failed invariant: say which and abort, so libFuzzer keeps the input. */
#define FUZZ_CHECK(cond, ...)                                                        \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "fuzz invariant failed at %s:%d: %s: ", __FILE__, __LINE__, \
                    #cond);                                                          \
            fprintf(stderr, __VA_ARGS__);                                            \
            fputc('\n', stderr);                                                     \
            abort();                                                                 \
        }                                                                            \
    } while (0)

/* MOS_FUZZ_INJECT=<harness name> makes that harness abort where it calls
 * fuzz_inject(name, cond) with cond true: a crash the seed corpus reaches at
 * once, to show that `make fuzz-ci` fails and names the reproducer.  Off
 * unless the variable is set. */
static inline void fuzz_inject(const char *name, int cond)
{
    static int on = -1;
    if (on < 0) {
        const char *v = getenv("MOS_FUZZ_INJECT");
        on = v && strcmp(v, name) == 0;
    }
    if (on && cond) {
        fprintf(stderr, "MOS_FUZZ_INJECT=%s: injected crash\n", name);
        abort();
    }
}

/* ---------------------------------------------------------------- input */

typedef struct fuzz_in {
    const uint8_t *p;
    size_t n;
} fuzz_in_t;

static inline int fin_empty(const fuzz_in_t *in) { return in->n == 0; }
static inline uint8_t fin_u8(fuzz_in_t *in)
{
    if (!in->n) return 0;
    in->n--;
    return *in->p++;
}
static inline uint16_t fin_u16(fuzz_in_t *in) { return (uint16_t)(fin_u8(in) | fin_u8(in) << 8); }
static inline uint32_t fin_u32(fuzz_in_t *in)
{
    return (uint32_t)fin_u16(in) | (uint32_t)fin_u16(in) << 16;
}
/* up to n bytes taken from the input (fewer at its end); returns the count */
static inline size_t fin_bytes(fuzz_in_t *in, uint8_t *out, size_t n)
{
    if (n > in->n) n = in->n;
    memcpy(out, in->p, n);
    in->p += n;
    in->n -= n;
    return n;
}

/* ---------------------------------------------------------------- checksums */

/* RFC 1071 over bytes, big-endian 16-bit words */
static inline uint32_t fz_sum(uint32_t acc, const uint8_t *b, size_t n)
{
    for (size_t i = 0; i + 1 < n; i += 2) acc += (uint32_t)b[i] << 8 | b[i + 1];
    if (n & 1) acc += (uint32_t)b[n - 1] << 8;
    return acc;
}
static inline uint16_t fz_fold(uint32_t acc)
{
    while (acc >> 16) acc = (acc & 0xffff) + (acc >> 16);
    return (uint16_t)acc;
}
static inline uint16_t rd16(const uint8_t *b) { return (uint16_t)(b[0] << 8 | b[1]); }
static inline uint32_t rd32(const uint8_t *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}
static inline void wr16(uint8_t *b, uint16_t v)
{
    b[0] = (uint8_t)(v >> 8);
    b[1] = (uint8_t)v;
}
static inline void wr32(uint8_t *b, uint32_t v)
{
    b[0] = (uint8_t)(v >> 24);
    b[1] = (uint8_t)(v >> 16);
    b[2] = (uint8_t)(v >> 8);
    b[3] = (uint8_t)v;
}

/* Are the IP header (v4) and TCP checksums of this IP datagram right?
 * ip: its first byte; len: bytes present.  Returns 1 good, 0 bad, -1 not a
 * whole unfragmented TCP datagram (cannot tell).  Only plain IPv6 headers
 * (next header TCP) are judged. */
static inline int fz_ip_tcp_csum_ok(const uint8_t *ip, size_t len)
{
    if (len < 20) return -1;
    uint32_t ph = 0;
    const uint8_t *tcp;
    size_t tlen;
    if (ip[0] >> 4 == 4) {
        size_t hl = (size_t)(ip[0] & 15) * 4, tot = rd16(ip + 2);
        if (hl < 20 || tot < hl || tot > len || ip[9] != 6) return -1;
        if (rd16(ip + 6) & 0x3fff) return -1; /* a fragment */
        if (fz_fold(fz_sum(0, ip, hl)) != 0xffff) return 0;
        ph = fz_sum(0, ip + 12, 8) + 6 + (uint32_t)(tot - hl);
        tcp = ip + hl;
        tlen = tot - hl;
    } else if (ip[0] >> 4 == 6) {
        if (len < 40 || ip[6] != 6) return -1;
        size_t pl = rd16(ip + 4);
        if (40 + pl > len) return -1;
        ph = fz_sum(0, ip + 8, 32) + 6 + (uint32_t)pl;
        tcp = ip + 40;
        tlen = pl;
    } else {
        return -1;
    }
    if (tlen < 20) return -1;
    return fz_fold(fz_sum(ph, tcp, tlen)) == 0xffff;
}

/* ---------------------------------------------------------------- frames */

/* One TCP segment to build (addresses as 16 bytes; IPv4 in the first 4). */
typedef struct fz_seg {
    int ipver;            /* 4 or 6 */
    int vlan;             /* add one 802.1Q tag */
    uint8_t src[16], dst[16];
    uint16_t sport, dport;
    uint32_t seq, ack;
    uint8_t flags;
    uint16_t win;
    const uint8_t *opt;   /* raw option bytes (padded here to 4) */
    uint32_t optlen;      /* at most 40 */
    const uint8_t *pay;
    uint32_t paylen;
    uint16_t ipid;
} fz_seg_t;

/* Ethernet frame of the segment into out (cap bytes), checksums right.
 * Returns the frame length (0: does not fit). */
static inline uint32_t fz_build(const fz_seg_t *s, uint8_t *out, uint32_t cap)
{
    uint32_t ol = s->optlen > 40 ? 40 : s->optlen;
    uint32_t olp = (ol + 3) & ~3u;
    uint32_t l2 = 14 + (s->vlan ? 4 : 0);
    uint32_t l3 = s->ipver == 6 ? 40 : 20;
    uint32_t tl = 20 + olp + s->paylen;
    uint32_t n = l2 + l3 + tl;
    if (n > cap || l3 + tl > 65535 + (s->ipver == 6 ? 40u : 0u)) return 0;
    uint8_t *b = out;
    memcpy(b, "\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01", 12);
    if (s->vlan) {
        wr16(b + 12, 0x8100);
        wr16(b + 14, 7);
    }
    wr16(b + l2 - 2, s->ipver == 6 ? 0x86dd : 0x0800);
    uint8_t *ip = b + l2, *t = ip + l3;
    uint32_t ph;
    if (s->ipver == 6) {
        memset(ip, 0, 40);
        ip[0] = 0x60;
        wr16(ip + 4, (uint16_t)tl);
        ip[6] = 6;
        ip[7] = 64;
        memcpy(ip + 8, s->src, 16);
        memcpy(ip + 24, s->dst, 16);
        ph = fz_sum(0, ip + 8, 32);
    } else {
        memset(ip, 0, 20);
        ip[0] = 0x45;
        wr16(ip + 2, (uint16_t)(20 + tl));
        wr16(ip + 4, s->ipid);
        ip[8] = 64;
        ip[9] = 6;
        memcpy(ip + 12, s->src, 4);
        memcpy(ip + 16, s->dst, 4);
        wr16(ip + 10, (uint16_t)~fz_fold(fz_sum(0, ip, 20)));
        ph = fz_sum(0, ip + 12, 8);
    }
    wr16(t, s->sport);
    wr16(t + 2, s->dport);
    wr32(t + 4, s->seq);
    wr32(t + 8, s->ack);
    t[12] = (uint8_t)(((20 + olp) / 4) << 4);
    t[13] = s->flags;
    wr16(t + 14, s->win);
    wr16(t + 16, 0);
    wr16(t + 18, 0);
    if (ol) memcpy(t + 20, s->opt, ol);
    memset(t + 20 + ol, 1, olp - ol); /* NOP padding */
    if (s->paylen) memcpy(t + 20 + olp, s->pay, s->paylen);
    wr16(t + 16, (uint16_t)~fz_fold(fz_sum(ph + 6 + tl, t, tl)));
    return n;
}

/* ---------------------------------------------------------------- rbuf */

/* What rbuf.h promises about its fields, checked after every operation.
 * Reads base, head, limit, the block counts and the runs (as mos/dualstack/_flow.pxi
 * does); gaps only through mos_rbuf_gap_after.  When the buffer's layout
 * changes, this is what to adapt. */
static inline void fz_check_rbuf(const mos_rbuf_t *rb)
{
    FUZZ_CHECK(rb->base <= rb->head, "base %llu head %llu", (unsigned long long)rb->base,
               (unsigned long long)rb->head);
    FUZZ_CHECK(rb->limit <= MOS_RBUF_MAX_LIMIT, "limit %u", rb->limit);
    FUZZ_CHECK((rb->nslot & (rb->nslot - 1)) == 0, "block table of %u", rb->nslot);
    FUZZ_CHECK(rb->nblk <= rb->nslot, "%u blocks in a table of %u", rb->nblk, rb->nslot);
    FUZZ_CHECK(rb->limit || !rb->nblk, "%u blocks held with limit 0", rb->nblk);
    FUZZ_CHECK(rb->nruns <= MOS_RBUF_MAX_RUNS, "nruns %u", rb->nruns);
    uint64_t prev = rb->head;
    for (int i = 0; i < rb->nruns; i++) {
        const mos_span_t *r = &rb->runs[i];
        FUZZ_CHECK(r->len > 0, "run %d empty", i);
        /* sorted, disjoint and not touching (head itself would have swallowed a touching run) */
        FUZZ_CHECK(r->off > prev, "run %d at %llu not above %llu", i,
                   (unsigned long long)r->off, (unsigned long long)prev);
        FUZZ_CHECK(!rb->limit || r->off + r->len <= rb->base + rb->limit,
                   "run %d ends past base+limit", i);
        prev = r->off + r->len;
    }
    FUZZ_CHECK(rb->policy < MOS_OVERLAP_COUNT, "policy %u", rb->policy);
    /* lent pieces: sorted, disjoint, non-empty, inside [base, head); none under LAST */
    FUZZ_CHECK(rb->nlent <= MOS_RBUF_LENT, "%u lent pieces", rb->nlent);
    FUZZ_CHECK(!rb->nlent || (rb->policy != MOS_OVERLAP_LAST && rb->limit), "lent under LAST or limit 0");
    uint64_t lprev = rb->base;
    for (int i = 0; i < rb->nlent; i++) {
        uint64_t o = mos_rbuf_lent_start(rb, i);
        FUZZ_CHECK(rb->lent_len[i] > 0, "lent piece %d empty", i);
        FUZZ_CHECK(o >= lprev && o + rb->lent_len[i] <= rb->head,
                   "lent piece %d [%llu,+%u) outside [%llu, head %llu)", i, (unsigned long long)o,
                   rb->lent_len[i], (unsigned long long)lprev, (unsigned long long)rb->head);
        lprev = o + rb->lent_len[i];
    }
    /* origins: sorted, disjoint, non-empty, within the cap; each inside the
     * segment it names */
    if (rb->orig) {
        const mos_origins_t *o = rb->orig;
        FUZZ_CHECK(o->n <= o->cap && o->cap <= MOS_RBUF_MAX_ORIGINS, "origins %u of %u",
                   o->n, o->cap);
        for (uint32_t i = 0; i < o->n; i++) {
            FUZZ_CHECK(o->v[i].off < o->v[i].end, "origin %u empty", i);
            FUZZ_CHECK(i == 0 || o->v[i].off >= o->v[i - 1].end, "origin %u overlaps", i);
            FUZZ_CHECK(o->v[i].so <= o->v[i].off && o->v[i].end <= o->v[i].se,
                       "origin %u outside its segment", i);
        }
    }
    /* gaps through the API (their storage is the buffer's business) */
    uint64_t gprev = 0;
    int k = 0;
    for (const mos_span_t *g = mos_rbuf_gap_after(rb, 0); g; g = mos_rbuf_gap_after(rb, g->off + g->len)) {
        FUZZ_CHECK(g->len > 0, "gap %d empty", k);
        FUZZ_CHECK(k == 0 || g->off >= gprev, "gap %d out of order", k);
        FUZZ_CHECK(g->off + g->len <= rb->head, "gap %d [%llu,+%llu) above head %llu", k,
                   (unsigned long long)g->off, (unsigned long long)g->len,
                   (unsigned long long)rb->head);
        gprev = g->off + g->len;
        if (++k > MOS_RBUF_MAX_GAPS + 1) break;
    }
}

#endif
