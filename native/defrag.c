/* defrag.c: IPv4 (RFC 791, RFC 815) and IPv6 (RFC 8200 §4.5) reassembly.
 *
 * Each incomplete datagram keeps its data as a sorted list of disjoint
 * pieces.  A new fragment only fills the bytes no earlier fragment covered
 * ("first" policy), so an overlap can never rewrite what was already seen.
 * Datagrams also sit on an age list (oldest first) used both for the
 * timeout and for eviction when the memory cap is reached.
 */
#include "defrag.h"

#include <stdlib.h>
#include <string.h>

typedef struct piece {
    struct piece *next;
    uint32_t off, len;
    uint8_t data[];
} piece_t;

typedef struct dgram {
    struct dgram *hnext, **hpprev;  /* hash chain */
    struct dgram *older, *newer;    /* age list */
    uint64_t first_ns;              /* arrival of the first fragment (the timer is not re-armed) */
    uint8_t src[16], dst[16];
    uint32_t id;
    uint8_t proto, ver;
    uint8_t have_last;
    uint8_t nh_val;                 /* IPv6: next header from the offset-0 fragment's fragment header */
    uint32_t total;                 /* data bytes, known once the last fragment arrived */
    uint32_t received;              /* data bytes stored (pieces are disjoint) */
    uint32_t hash;
    uint16_t hdrlen;                /* bytes saved in hdr: 0 until the offset-0 fragment */
    uint16_t nh_pos;                /* IPv6: offset in hdr of the byte naming the fragment header */
    uint8_t *hdr;
    piece_t *pieces;
    size_t mem;                     /* bytes charged to the cap */
} dgram_t;

typedef struct out {
    struct out *next;
    uint8_t data[];
} out_t;

struct mos_defrag {
    size_t cap;
    uint64_t timeout;
    dgram_t **buckets;
    uint32_t mask;
    dgram_t *oldest, *newest;
    out_t *outs;
    mos_defrag_stats_t st;
};

#define MAX_DATAGRAM 65535u

static inline uint64_t mum(uint64_t a, uint64_t b)
{
    unsigned __int128 r = (unsigned __int128)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
}

static uint32_t key_hash(const uint8_t *src, const uint8_t *dst, uint32_t id, uint8_t proto, uint8_t ver)
{
    uint64_t a, b, c, e;
    memcpy(&a, src, 8);
    memcpy(&b, src + 8, 8);
    memcpy(&c, dst, 8);
    memcpy(&e, dst + 8, 8);
    uint64_t h = mum(a ^ 0xa0761d6478bd642full, b ^ 0xe7037ed1a0b428dbull);
    h ^= mum(c ^ 0x8ebc6af09c88c6e3ull, e ^ ((uint64_t)id << 16) ^ ((uint64_t)proto << 8) ^ ver);
    h = mum(h, 0x589965cc75374cc3ull);
    return (uint32_t)(h ^ (h >> 32));
}

mos_defrag_t *mos_defrag_new(size_t mem_cap, uint64_t timeout_ns)
{
    mos_defrag_t *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    /* about one bucket per 4 KiB of cap: chains stay short when the cap is full */
    uint32_t nb = 256;
    while (nb < 65536 && (size_t)nb * 4096 < mem_cap)
        nb *= 2;
    d->buckets = calloc(nb, sizeof *d->buckets);
    if (!d->buckets) {
        free(d);
        return NULL;
    }
    d->mask = nb - 1;
    d->cap = mem_cap;
    d->timeout = timeout_ns;
    return d;
}

static void drop(mos_defrag_t *d, dgram_t *g)
{
    *g->hpprev = g->hnext;
    if (g->hnext)
        g->hnext->hpprev = g->hpprev;
    if (g->older)
        g->older->newer = g->newer;
    else
        d->oldest = g->newer;
    if (g->newer)
        g->newer->older = g->older;
    else
        d->newest = g->older;
    for (piece_t *p = g->pieces, *n; p; p = n) {
        n = p->next;
        free(p);
    }
    free(g->hdr);
    d->st.mem_in_use -= g->mem;
    free(g);
}

void mos_defrag_release(mos_defrag_t *d)
{
    for (out_t *o = d->outs, *n; o; o = n) {
        n = o->next;
        free(o);
    }
    d->outs = NULL;
}

void mos_defrag_free(mos_defrag_t *d)
{
    if (!d)
        return;
    while (d->oldest)
        drop(d, d->oldest);
    mos_defrag_release(d);
    free(d->buckets);
    free(d);
}

void mos_defrag_expire(mos_defrag_t *d, uint64_t now_ns)
{
    if (!d->timeout) /* 0: no timeout */
        return;
    /* the age list is in arrival order; time that runs backwards just stops the walk */
    while (d->oldest && now_ns >= d->oldest->first_ns && now_ns - d->oldest->first_ns >= d->timeout) {
        drop(d, d->oldest);
        d->st.timeouts++;
    }
}

uint64_t mos_defrag_deadline(const mos_defrag_t *d)
{
    if (!d->timeout || !d->oldest) return UINT64_MAX;
    return d->oldest->first_ns + d->timeout;
}

const mos_defrag_stats_t *mos_defrag_stats(const mos_defrag_t *d) { return &d->st; }

/* Make room for `need` more bytes by dropping the oldest datagrams other than
 * `keep`.  Returns 0 when the bytes fit. */
static int make_room(mos_defrag_t *d, size_t need, const dgram_t *keep)
{
    while (d->st.mem_in_use + need > d->cap) {
        dgram_t *g = d->oldest;
        if (g && g == keep)
            g = g->newer;
        if (!g)
            return -1;
        drop(d, g);
        d->st.mem_drops++;
    }
    return 0;
}

static uint16_t ip_csum(const uint8_t *b, uint32_t n)
{
    uint32_t s = 0;
    for (uint32_t i = 0; i + 1 < n; i += 2)
        s += (uint32_t)b[i] << 8 | b[i + 1];
    if (n & 1)
        s += (uint32_t)b[n - 1] << 8;
    while (s >> 16)
        s = (s & 0xffff) + (s >> 16);
    return (uint16_t)~s;
}

/* IPv6: offset of the next-header byte that names the fragment header, found
 * by walking the unfragmentable part [0, ulen) as mos_decode did. */
static int ip6_nh_pos(const uint8_t *h, uint32_t ulen)
{
    uint32_t pos = 6, off = 40;
    uint8_t nh = h[6];
    while (off < ulen) {
        uint32_t len;
        if (off + 2 > ulen)
            return -1;
        if (nh == 0 || nh == 43 || nh == 60)
            len = ((uint32_t)h[off + 1] + 1) * 8;
        else if (nh == 51)
            len = ((uint32_t)h[off + 1] + 2) * 4;
        else if (nh == 44)
            len = 8; /* an atomic fragment header before the real one */
        else
            return -1;
        pos = off;
        nh = h[off];
        off += len;
    }
    if (off != ulen || nh != 44)
        return -1;
    return (int)pos;
}

const uint8_t *mos_defrag_add(mos_defrag_t *d, const mos_pkt_t *p, uint64_t now_ns, uint32_t *outlen)
{
    if (outlen)
        *outlen = 0;
    d->st.fragments++;
    mos_defrag_expire(d, now_ns);

    if (!p->frag_data || !p->l3 || (p->ipver != 4 && p->ipver != 6) || p->l3len < p->l3hlen) {
        d->st.invalid++;
        return NULL;
    }
    uint32_t len = p->l3len - p->l3hlen;
    if (p->frag_len < len) { /* snapped by the capture: the bytes are not there */
        d->st.invalid++;
        return NULL;
    }
    uint32_t off = p->frag_off, end = off + len;
    int more = p->frag_more != 0;
    /* all fragments but the last carry a multiple of 8 bytes (RFC 791 fragment
     * offsets are in 8-octet units; RFC 8200 §4.5 says discard otherwise) */
    if (more && (len == 0 || len % 8)) {
        d->st.invalid++;
        return NULL;
    }
    /* the reassembled datagram must fit a 16-bit length field */
    uint32_t hdr_extra = p->ipver == 4 ? p->l3hlen : (uint32_t)p->l3hlen - 8 - 40;
    if (p->ipver == 6 && p->l3hlen < 48) {
        d->st.invalid++;
        return NULL;
    }
    if ((uint64_t)end + hdr_extra > MAX_DATAGRAM) {
        d->st.invalid++;
        return NULL;
    }

    /* RFC 8200 §4.5: IPv6 fragments match on addresses and identification;
     * next header may differ between fragments, so it is not part of the key */
    uint8_t proto = p->ipver == 4 ? p->proto : 0;
    uint32_t h = key_hash(p->src, p->dst, p->frag_id, proto, p->ipver);
    dgram_t **bucket = &d->buckets[h & d->mask];
    dgram_t *g;
    for (g = *bucket; g; g = g->hnext)
        if (g->hash == h && g->id == p->frag_id && g->proto == proto && g->ver == p->ipver &&
            !memcmp(g->src, p->src, 16) && !memcmp(g->dst, p->dst, 16))
            break;

    if (g) {
        /* a fragment past the known end, or a second different end, is bogus */
        if (g->have_last && (end > g->total || (!more && end != g->total))) {
            d->st.invalid++;
            return NULL;
        }
        if (!more && !g->have_last) {
            piece_t *last = g->pieces;
            while (last && last->next)
                last = last->next;
            if (last && last->off + last->len > end) {
                d->st.invalid++;
                return NULL;
            }
        }
    }

    /* pass 1: which bytes are new (first fragment wins) */
    size_t need = 0;
    int overlap = 0;
    {
        uint32_t cur = off;
        for (piece_t *q = g ? g->pieces : NULL; q && cur < end && q->off < end; q = q->next) {
            uint32_t qe = q->off + q->len;
            if (qe <= cur)
                continue;
            if (q->off > cur)
                need += sizeof(piece_t) + (q->off - cur);
            overlap = 1;
            cur = qe;
        }
        if (cur < end)
            need += sizeof(piece_t) + (end - cur);
    }
    int save_hdr = off == 0 && (!g || !g->hdrlen);
    uint32_t hdrlen = p->ipver == 4 ? p->l3hlen : (uint32_t)p->l3hlen - 8;
    int nh_pos = -1;
    if (save_hdr) {
        if (p->ipver == 6 && (nh_pos = ip6_nh_pos(p->l3, hdrlen)) < 0) {
            d->st.invalid++;
            return NULL;
        }
        need += hdrlen;
    }
    if (!g)
        need += sizeof(dgram_t);
    if (overlap)
        d->st.overlaps++;

    if (make_room(d, need, g) < 0) {
        d->st.mem_drops++;
        return NULL;
    }

    if (!g) {
        g = calloc(1, sizeof *g);
        if (!g) {
            d->st.mem_drops++;
            return NULL;
        }
        memcpy(g->src, p->src, 16);
        memcpy(g->dst, p->dst, 16);
        g->id = p->frag_id;
        g->proto = proto;
        g->ver = p->ipver;
        g->hash = h;
        g->first_ns = now_ns;
        g->mem = sizeof(dgram_t);
        d->st.mem_in_use += g->mem;
        g->hnext = *bucket;
        if (*bucket)
            (*bucket)->hpprev = &g->hnext;
        g->hpprev = bucket;
        *bucket = g;
        g->older = d->newest;
        if (d->newest)
            d->newest->newer = g;
        else
            d->oldest = g;
        d->newest = g;
    }

    if (save_hdr) {
        g->hdr = malloc(hdrlen);
        if (!g->hdr) {
            d->st.mem_drops++;
            return NULL;
        }
        memcpy(g->hdr, p->l3, hdrlen);
        g->hdrlen = (uint16_t)hdrlen;
        if (p->ipver == 6) {
            g->nh_pos = (uint16_t)nh_pos;
            g->nh_val = p->proto;
        }
        g->mem += hdrlen;
        d->st.mem_in_use += hdrlen;
    }

    /* pass 2: store the new bytes, keeping the list sorted */
    {
        uint32_t cur = off;
        piece_t **link = &g->pieces;
        while (cur < end) {
            piece_t *q = *link;
            uint32_t stop = end;
            if (q && q->off + q->len <= cur) {
                link = &q->next;
                continue;
            }
            if (q && q->off <= cur) { /* cur lies inside q: skip the stored bytes */
                cur = q->off + q->len;
                link = &q->next;
                continue;
            }
            if (q && q->off < stop)
                stop = q->off;
            uint32_t n = stop - cur;
            piece_t *np = malloc(sizeof(piece_t) + n);
            if (!np) {
                d->st.mem_drops++;
                return NULL;
            }
            np->off = cur;
            np->len = n;
            memcpy(np->data, p->frag_data + (cur - off), n);
            np->next = q;
            *link = np;
            link = &np->next;
            g->received += n;
            g->mem += sizeof(piece_t) + n;
            d->st.mem_in_use += sizeof(piece_t) + n;
            cur = stop;
        }
    }
    if (!more) {
        g->have_last = 1;
        g->total = end;
    }
    if (!g->have_last || g->received != g->total || !g->hdrlen)
        return NULL;

    /* complete: first fragment's header + data, lengths and fragment fields rewritten */
    uint32_t total = g->hdrlen + g->total;
    if (g->ver == 4 ? total > MAX_DATAGRAM : total - 40 > MAX_DATAGRAM) {
        d->st.invalid++;
        drop(d, g);
        return NULL;
    }
    out_t *o = malloc(sizeof(out_t) + total);
    if (!o) {
        d->st.mem_drops++;
        drop(d, g);
        return NULL;
    }
    uint8_t *b = o->data;
    memcpy(b, g->hdr, g->hdrlen);
    uint8_t *w = b + g->hdrlen;
    for (piece_t *q = g->pieces; q; q = q->next) {
        memcpy(w, q->data, q->len);
        w += q->len;
    }
    if (g->ver == 4) {
        b[2] = (uint8_t)(total >> 8);
        b[3] = (uint8_t)total;
        b[6] &= 0x40; /* keep DF, clear MF and the offset */
        b[7] = 0;
        b[10] = b[11] = 0;
        uint16_t c = ip_csum(b, g->hdrlen);
        b[10] = (uint8_t)(c >> 8);
        b[11] = (uint8_t)c;
    } else {
        uint32_t plen = total - 40;
        b[4] = (uint8_t)(plen >> 8);
        b[5] = (uint8_t)plen;
        b[g->nh_pos] = g->nh_val; /* the fragment header is gone: point past it */
    }
    o->next = d->outs;
    d->outs = o;
    d->st.reassembled++;
    drop(d, g);
    if (outlen)
        *outlen = total;
    return o->data;
}
