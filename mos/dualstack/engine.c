/* engine.c: flow table, event recording, edits and interest masks.
 *
 * A packet from A to B first updates A's model as a sender, then B's model
 * as a receiver (DESIGN 2).  The models are TCP endpoints of mos/tcp
 * (endpoint.h: transitions, RST acceptance, window checks); this file turns
 * what they report into events, and keeps the receive buffers filled.
 */
#include "engine.h"
#include "digestq.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rewrite.h"
#include "tcpseq.h"

#define CHUNK_SHIFT 10
#define LRU_GRAIN 50000000ull /* ns: LRU order is exact to 50 ms */
#define PREFETCH_AHEAD 4        /* packets between a flow entry's prefetch and its use */
#define VIEW_AHEAD 2            /* ... and a flow view's (mos_engine_set_views) */
#define CHUNK (1u << CHUNK_SHIFT)

struct mos_engine {
    mos_config_t cfg;
    mos_counters_t c;
    mos_rbuf_pool_t pool;       /* every flow's receive buffer blocks (reassembly memcap) */
    mos_interest_t interest;
    uint8_t any_interest;       /* some bit of interest is set */
    uint8_t reads;              /* 1 << side: some monitor reads that side (set_reads) */
    /* compiled stream consumers (engine.h): slots with data == NULL are free */
    mos_consumer_t cons[MOS_MAX_CONSUMERS];
    uint8_t ncons;              /* slots used so far (some may be free again) */
    uint8_t cons_sides;         /* 1 << side: some consumer reads that side */
    uint8_t pcons_sides;        /* 1 << side: some consumer sees that side's packets */
    uint32_t cons_lookback[2];  /* most lookback any consumer of the side asked for */
    uint64_t now;
    uint64_t next_id;
    uint64_t defrag_checked;
    uint32_t serial;            /* process calls: NEW_DATA at most once per side per call */
    uint32_t csum_seen, csum_bad; /* checksum AUTO sample */
    /* flow slab: chunks never move, so a slot's address is stable */
    mos_flow_t **chunks;
    uint32_t nchunks, chunkcap;
    uint32_t nslots;            /* slots handed out so far */
    uint32_t freelist;          /* free slots chained through hnext */
    /* hash table */
    uint32_t *buckets;
    uint32_t nbuckets;          /* power of two */
    /* LRU: head = least recently active */
    uint32_t lru_head, lru_tail;
    /* embryonic flows (handshake not complete), oldest first */
    uint32_t emb_head, emb_tail;
    /* flows ended and not reaped yet */
    uint32_t *dying;
    uint32_t ndying, dyingcap;
    /* events of the current burst */
    mos_event_t *ev;
    uint32_t nev, evcap;
    /* decoded packets of the current burst (decoded when the burst comes,
     * with their flow hash, so each packet's flow entry can be asked for
     * from memory a few packets before it is needed) */
    mos_pkt_t *pkts;
    int8_t prerc[MOS_BURST_MAX];     /* mos_decode's answer */
    uint32_t phash[MOS_BURST_MAX];   /* the flow hash of a TCP packet */
    /* the Python layer's objects by slot (mos_engine_set_views), asked for
     * from memory like the flow entries: a handler's first touch of its
     * flow's view was a cache miss per event */
    void *const *views;
    uint32_t nviews;
    mos_digestq_t *dq;          /* digest mode on stable frames: the hashing thread's queue */
    uint8_t stable;             /* mos_engine_set_stable_frames */
    uint8_t *verdict;
    struct pktref {             /* per packet, for edits made by handlers */
        uint32_t slot;          /* its flow's slot (MOS_NIL: none) */
        uint32_t snd_nxt;       /* the sender's SND.NXT before it */
        uint8_t side;           /* the side that sent it */
    } *pref;
    uint32_t pktcap, npkts;
    /* in-line payload edits */
    uint32_t edited_flows;
    uint32_t ip_mtu;            /* IP datagrams grown by edits are cut to fit (0: 1500) */
    uint8_t *arena;             /* rewritten frames of the current burst */
    uint32_t arena_cap, arena_used;
    uint8_t **retired;          /* arenas outgrown this burst (pointers into them live on) */
    uint32_t nretired, retiredcap;
    const mos_frame_t *frames;
    mos_defrag_t *defrag;
};

static inline mos_flow_t *slot_ptr(const mos_engine_t *e, uint32_t slot)
{
    return &e->chunks[slot >> CHUNK_SHIFT][slot & (CHUNK - 1)];
}

/* ---------------------------------------------------------------- events */

static int grow_events(mos_engine_t *e)
{
    uint32_t cap = e->evcap ? e->evcap * 2 : 1024;
    mos_event_t *n = realloc(e->ev, (size_t)cap * sizeof *n);
    if (!n) return -1;
    e->ev = n;
    e->evcap = cap;
    return 0;
}

static inline int wanted(const mos_engine_t *e, const mos_flow_t *f, int type, int hook, int side)
{
    unsigned i = MOS_EVBIT_INDEX(type, hook, side);
    uint64_t bit = 1ULL << (i & 63), w = e->interest.w[i >> 6];
    if (!f) return (w & bit) != 0;
    if (f->interest) w |= f->interest->w[i >> 6];
    if (!(w & bit)) return 0;
    if (f->flags & MOS_FF_UNMON) return 0;
    return !(f->ep[side].flags & MOS_EPF_UNMON);
}

static inline void emit(mos_engine_t *e, const mos_flow_t *f, uint32_t slot, int type, int hook,
                        int side, uint32_t pkt, int reason, uint32_t aux, uint64_t a, uint64_t b)
{
    if (!wanted(e, f, type, hook, side)) return;
    if (e->nev == e->evcap && grow_events(e) < 0) {
        e->c.nomem++; /* out of memory: this event is lost, and counted */
        return;
    }
    mos_event_t *ev = &e->ev[e->nev++];
    ev->type = (uint8_t)type;
    ev->hook = (uint8_t)hook;
    ev->side = (uint8_t)side;
    ev->reason = (uint8_t)reason;
    ev->flow = slot;
    ev->pkt = pkt;
    ev->aux = aux;
    ev->a = a;
    ev->b = b;
    e->c.events++;
}

static inline void error_ev(mos_engine_t *e, const mos_flow_t *f, uint32_t slot, int side,
                            uint32_t pkt, int reason, uint64_t a, uint64_t b)
{
    e->c.errors[reason]++;
    emit(e, f, slot, MOS_EV_ERROR, MOS_HK_RECV, side, pkt, reason, 0, a, b);
}

/* the state changes an endpoint reported, in order */
static inline void emit_trans(mos_engine_t *e, const mos_flow_t *f, uint32_t slot, int side,
                              int hook, uint32_t pkt, const mos_tcp_eff_t *eff)
{
    for (int k = 0; k < eff->ntrans; k++)
        emit(e, f, slot, MOS_EV_STATE_CHANGE, hook, side, pkt, mos_tcp_trans_to(eff->trans, k),
             (uint32_t)mos_tcp_trans_from(eff->trans, k), 0, 0);
}

/* ---------------------------------------------------------------- table */

static inline int flow_dir(const mos_flow_t *f, const mos_pkt_t *p)
{
    size_t al = p->addrlen;
    if (f->ipver != p->ipver) return -1;
    if (p->sport == f->cport && p->dport == f->sport && !memcmp(p->src, f->caddr, al) &&
        !memcmp(p->dst, f->saddr, al))
        return MOS_CLIENT;
    if (p->sport == f->sport && p->dport == f->cport && !memcmp(p->src, f->saddr, al) &&
        !memcmp(p->dst, f->caddr, al))
        return MOS_SERVER;
    return -1;
}

static mos_flow_t *lookup(mos_engine_t *e, const mos_pkt_t *p, uint32_t hash, uint32_t *slot,
                          int *dir)
{
    for (uint32_t s = e->buckets[hash & (e->nbuckets - 1)]; s != MOS_NIL;) {
        mos_flow_t *f = slot_ptr(e, s);
        if (f->hash == hash) {
            int d = flow_dir(f, p);
            if (d >= 0) {
                *slot = s;
                *dir = d;
                return f;
            }
        }
        s = f->hnext;
    }
    return NULL;
}

static void hash_insert(mos_engine_t *e, mos_flow_t *f, uint32_t slot)
{
    uint32_t *b = &e->buckets[f->hash & (e->nbuckets - 1)];
    f->hnext = *b;
    *b = slot;
}

static void hash_remove(mos_engine_t *e, mos_flow_t *f, uint32_t slot)
{
    uint32_t *pp = &e->buckets[f->hash & (e->nbuckets - 1)];
    while (*pp != MOS_NIL) {
        if (*pp == slot) {
            *pp = f->hnext;
            return;
        }
        pp = &slot_ptr(e, *pp)->hnext;
    }
}

static void hash_grow(mos_engine_t *e)
{
    uint32_t nb = e->nbuckets * 2;
    uint32_t *b = malloc((size_t)nb * sizeof *b);
    if (!b) return; /* keep the smaller table: longer chains, still correct */
    memset(b, 0xff, (size_t)nb * sizeof *b);
    free(e->buckets);
    e->buckets = b;
    e->nbuckets = nb;
    for (uint32_t s = 0; s < e->nslots; s++) {
        mos_flow_t *f = slot_ptr(e, s);
        if (f->flags & MOS_FF_LIVE) hash_insert(e, f, s);
    }
}

static void lru_unlink(mos_engine_t *e, mos_flow_t *f)
{
    if (f->lru_prev != MOS_NIL) slot_ptr(e, f->lru_prev)->lru_next = f->lru_next;
    else e->lru_head = f->lru_next;
    if (f->lru_next != MOS_NIL) slot_ptr(e, f->lru_next)->lru_prev = f->lru_prev;
    else e->lru_tail = f->lru_prev;
    f->lru_prev = f->lru_next = MOS_NIL;
}

static void lru_append(mos_engine_t *e, mos_flow_t *f, uint32_t slot)
{
    f->lru_prev = e->lru_tail;
    f->lru_next = MOS_NIL;
    if (e->lru_tail != MOS_NIL) slot_ptr(e, e->lru_tail)->lru_next = slot;
    else e->lru_head = slot;
    e->lru_tail = slot;
}

static inline void lru_touch(mos_engine_t *e, mos_flow_t *f, uint32_t slot)
{
    if (e->lru_tail == slot) return;
    lru_unlink(e, f);
    lru_append(e, f, slot);
}

static int alloc_slot(mos_engine_t *e, uint32_t *slot)
{
    if (e->freelist != MOS_NIL) {
        *slot = e->freelist;
        e->freelist = slot_ptr(e, *slot)->hnext;
        return 0;
    }
    if (e->nslots == e->nchunks * CHUNK) {
        if (e->nchunks == e->chunkcap) {
            uint32_t cap = e->chunkcap ? e->chunkcap * 2 : 16;
            mos_flow_t **c = realloc(e->chunks, (size_t)cap * sizeof *c);
            if (!c) return -1;
            e->chunks = c;
            e->chunkcap = cap;
        }
        mos_flow_t *chunk = calloc(CHUNK, sizeof *chunk);
        if (!chunk) return -1;
        e->chunks[e->nchunks++] = chunk;
    }
    if (e->nslots >= e->dyingcap) {
        /* room for every slot in the dying list, so ending a flow never
         * needs memory */
        uint32_t cap = e->dyingcap ? e->dyingcap * 2 : 256;
        uint32_t *d = realloc(e->dying, (size_t)cap * sizeof *d);
        if (!d) return -1;
        e->dying = d;
        e->dyingcap = cap;
    }
    *slot = e->nslots++;
    return 0;
}

/* ---------------------------------------------------------------- endpoints */

/* Hash the in-order bytes of a side not hashed yet (digest mode). */
static void digest_upto(mos_flow_t *f, int side, uint64_t upto)
{
    mos_digest_t *d = &f->digest[side];
    const mos_rbuf_t *rb = &f->ep[side].rbuf;
    uint64_t off = d->hashed_to;
    if (off < upto) mos_digestq_wait(&d->pending); /* its queued bytes go first */
    if (upto > rb->head) upto = rb->head;
    while (off < upto) {
        uint32_t n;
        const uint8_t *ptr = mos_rbuf_ptr(rb, off, &n);
        if (n) {
            mos_sha256_update(&d->sha, ptr, n);
            d->hashed_bytes += n;
            off += n;
            continue;
        }
        const mos_span_t *g = mos_rbuf_gap_after(rb, off);
        if (g && g->off <= off) {
            off = g->off + g->len;
            continue;
        }
        /* present per head but no longer held: bytes left the ring first */
        uint64_t next = g && g->off < upto ? g->off : upto;
        if (off < rb->base && rb->base < next) next = rb->base;
        d->lost += next - off;
        off = next;
    }
    d->hashed_to = off;
}

static inline void digest_advance(mos_flow_t *f, int side)
{
    digest_upto(f, side, f->ep[side].rbuf.head);
}

/* The consumers' per-flow state, allocated with the first byte fed. */
typedef struct mos_cons_state {
    uint64_t fed[2];                      /* stream offset fed up to per side (UINT64_MAX: none) */
    void *st[MOS_MAX_CONSUMERS][2];       /* each consumer's per-stream state */
} mos_cons_state_t;

/* Someone reads `side`'s stream: a monitor said so (mos_engine_set_reads),
 * or this flow has its own CONN_NEW_DATA handler for that side. */
static inline int reads_side(const mos_engine_t *e, const mos_flow_t *f, int side)
{
    if ((e->reads >> side) & 1) return 1;
    if (!f->interest) return 0;
    unsigned i = MOS_EVBIT_INDEX(MOS_EV_NEW_DATA, MOS_HK_RECV, side);
    return (f->interest->w[i >> 6] >> (i & 63)) & 1;
}

/* In-order bytes are kept for readers, or in digest mode for a LAST
 * policy that may still rewrite them before they are hashed.  Otherwise
 * they are released as soon as they are in order, so reassembly costs no
 * memory beyond the out-of-order data (DESIGN rule 2: no copy for a side
 * nobody reads). */
static inline int retained(const mos_engine_t *e, const mos_flow_t *f, int side)
{
    return reads_side(e, f, side) ||
           (e->cfg.digest && f->ep[side].rbuf.policy == MOS_OVERLAP_LAST);
}

/* Bytes of `side` stay in the buffer after they are in order: for readers,
 * or for a consumer's lookback. */
static inline int kept(const mos_engine_t *e, const mos_flow_t *f, int side)
{
    return retained(e, f, side) || e->cons_lookback[side];
}

/* The lowest offset a consumer's lookback keeps in `side`'s buffer. */
static inline uint64_t lookback_floor(const mos_engine_t *e, const mos_rbuf_t *rb, int side)
{
    uint64_t lb = e->cons_lookback[side];
    return rb->head > lb ? rb->head - lb : 0;
}

/* digest mode: the flow's digests, allocated with its first stream bytes
 * (a flow that never carries any, e.g. a SYN of a flood, costs none) */
static inline void digest_need(mos_engine_t *e, mos_flow_t *f)
{
    if (!e->cfg.digest || f->digest) return;
    f->digest = calloc(2, sizeof *f->digest);
    if (!f->digest) {
        e->c.nomem++;
        return;
    }
    mos_sha256_init(&f->digest[0].sha);
    mos_sha256_init(&f->digest[1].sha);
}

/* Offset up to which `side` acknowledged what it received (0 if unknown). */
static inline uint64_t acked_off(const mos_flow_t *f, int side)
{
    const mos_ep_t *me = &f->ep[side], *peer = &f->ep[!side];
    if (!(me->flags & MOS_EPF_ACKED) || !(peer->flags & MOS_EPF_ISN)) return 0;
    int64_t o = seq_to_off(me->ack, peer->ref_seq, peer->ref_off);
    return o > 0 ? (uint64_t)o : 0;
}

/* ---- compiled stream consumers (engine.h) ---- */

static mos_cons_state_t *cons_need(mos_engine_t *e, mos_flow_t *f)
{
    if (f->cons) return f->cons;
    mos_cons_state_t *c = calloc(1, sizeof *c);
    if (!c) {
        e->c.nomem++;
        return NULL;
    }
    c->fed[0] = c->fed[1] = UINT64_MAX;
    f->cons = c;
    return c;
}

/* One chunk (data NULL: a gap) to every consumer of `side`, in their order. */
static void cons_call(mos_engine_t *e, mos_flow_t *f, uint32_t slot, int side, uint32_t pkt,
                      uint64_t off, const uint8_t *data, uint64_t len)
{
    mos_cstream_t cs = {e, f, slot, pkt, side, 0, NULL};
    while (len) {
        uint32_t n = len > 0x40000000u ? 0x40000000u : (uint32_t)len; /* huge gaps in pieces */
        for (int i = 0; i < e->ncons; i++) {
            const mos_consumer_t *c = &e->cons[i];
            if (!c->data || !((c->sides >> side) & 1)) continue;
            cs.id = i;
            cs.state = &f->cons->st[i][side];
            c->data(c->ctx, &cs, off, data, n);
        }
        off += n;
        len -= n;
        if (data) data += n;
    }
    f->cons->fed[side] = off;
}

/* In-order bytes [from, from + len) straight from the packet (not stored). */
static inline void cons_packet(mos_engine_t *e, mos_flow_t *f, uint32_t slot, int side,
                               uint32_t pkt, uint64_t from, const uint8_t *data, uint32_t len)
{
    if (!((e->cons_sides >> side) & 1) || !cons_need(e, f)) return;
    uint64_t fed = f->cons->fed[side];
    if (fed != UINT64_MAX && fed < from) cons_call(e, f, slot, side, pkt, fed, NULL, from - fed);
    if (fed == UINT64_MAX || fed <= from) cons_call(e, f, slot, side, pkt, from, data, len);
}

/* What became readable in `side`'s buffer since the consumers were last fed
 * (or from `from` for their first bytes): present bytes from the buffer,
 * gaps and bytes that already left it as gaps. */
static void cons_advance(mos_engine_t *e, mos_flow_t *f, uint32_t slot, int side, uint32_t pkt,
                         uint64_t from)
{
    if (!((e->cons_sides >> side) & 1) || !cons_need(e, f)) return;
    const mos_rbuf_t *rb = &f->ep[side].rbuf;
    uint64_t pos = f->cons->fed[side] == UINT64_MAX ? from : f->cons->fed[side];
    while (pos < rb->head) {
        const mos_span_t *g = mos_rbuf_gap_after(rb, pos);
        if (g && g->off <= pos) {
            uint64_t end = g->off + g->len < rb->head ? g->off + g->len : rb->head;
            cons_call(e, f, slot, side, pkt, pos, NULL, end - pos);
            pos = end;
            continue;
        }
        uint64_t stop = g && g->off < rb->head ? g->off : rb->head;
        uint32_t n;
        const uint8_t *ptr = mos_rbuf_ptr(rb, pos, &n);
        if (n) {
            if (n > stop - pos) n = (uint32_t)(stop - pos);
            cons_call(e, f, slot, side, pkt, pos, ptr, n);
            pos += n;
            continue;
        }
        /* not held any more (below base): lost for the consumers, a gap */
        if (pos < rb->base && rb->base < stop) stop = rb->base;
        cons_call(e, f, slot, side, pkt, pos, NULL, stop - pos);
        pos = stop;
    }
}

/* A packet `side` receives, to the consumers with a packet callback for it
 * (before its PKT_IN at RECV). */
static inline void cons_pkt(mos_engine_t *e, mos_flow_t *f, uint32_t slot, int side,
                            uint32_t pi, const mos_pkt_t *p)
{
    if (__builtin_expect(!((e->pcons_sides >> side) & 1), 1) || !p->paylen || !cons_need(e, f))
        return;
    mos_cstream_t cs = {e, f, slot, pi, side, 0, NULL};
    for (int i = 0; i < e->ncons; i++) {
        const mos_consumer_t *c = &e->cons[i];
        if (!c->data || !c->packet || !((c->sides >> side) & 1)) continue;
        cs.id = i;
        cs.state = &f->cons->st[i][side];
        c->packet(c->ctx, &cs, p->payload, p->paylen);
    }
}

/* The flow's streams end for the consumers: each state set gets end(). */
static void cons_end(mos_engine_t *e, mos_flow_t *f, uint32_t slot, int only)
{
    if (!f->cons) return;
    for (int i = 0; i < e->ncons; i++) {
        const mos_consumer_t *c = &e->cons[i];
        if (only >= 0 && i != only) continue;
        for (int side = 0; side < 2; side++) {
            void **st = &f->cons->st[i][side];
            if (!*st) continue;
            mos_cstream_t cs = {e, f, slot, MOS_NOPKT, side, i, st};
            if (c->end) c->end(c->ctx, &cs);
            *st = NULL; /* the consumer freed it */
        }
    }
}

/* Bytes every monitor has read and the receiver has acknowledged can no
 * longer matter: a retransmission of them is not delivered by the
 * receiver, so nothing is lost by forgetting them.  Unacknowledged bytes
 * stay, to compare against retransmissions (OVERLAP_DIFF). */
static void release_read(const mos_engine_t *e, mos_flow_t *f, int side)
{
    mos_rbuf_t *rb = &f->ep[side].rbuf;
    uint64_t off = f->ep[side].consumed, ack = acked_off(f, side);
    if (ack < off) off = ack;
    /* a consumer's lookback: handlers may ppeek that far behind the frontier */
    uint64_t floor = lookback_floor(e, rb, side);
    if (off > floor) off = floor;
    if (off <= rb->base) return;
    if (f->digest) digest_upto(f, side, off);
    mos_rbuf_release(rb, off); /* the blocks below go back to the pool */
}

/* The buffer of `side` moved head or declared gaps: raise what follows. */
static void after_rbuf(mos_engine_t *e, mos_flow_t *f, uint32_t slot, int side, uint32_t pkt,
                       uint64_t advanced, int gaps_added)
{
    mos_rbuf_t *rb = &f->ep[side].rbuf;
    if (gaps_added > 0) {
        /* report the part of each gap that lies in the range head just
         * crossed (a new hole may have widened a gap listed before) */
        uint64_t head0 = rb->head - advanced;
        for (const mos_span_t *g = mos_rbuf_gap_after(rb, head0); g && g->off < rb->head;
             g = mos_rbuf_gap_after(rb, g->off + g->len)) {
            uint64_t from = g->off > head0 ? g->off : head0;
            error_ev(e, f, slot, side, pkt, MOS_ERR_GAP, from, g->off + g->len - from);
        }
    }
    if (e->cons_sides && (advanced || gaps_added))
        cons_advance(e, f, slot, side, pkt, rb->head - advanced);
    if (advanced) {
        int keep = retained(e, f, side);
        if (f->digest && rb->policy != MOS_OVERLAP_LAST) digest_advance(f, side);
        if (!keep) {
            uint64_t to = lookback_floor(e, rb, side);
            /* a consumer side keeps the bytes just fed until the next ones:
             * the handlers of its notes may ppeek them */
            if (((e->cons_sides >> side) & 1) && to > rb->head - advanced) to = rb->head - advanced;
            mos_rbuf_release(rb, to);
        }
        if (f->nd_stamp[side] != e->serial) {
            f->nd_stamp[side] = e->serial;
            emit(e, f, slot, MOS_EV_NEW_DATA, MOS_HK_RECV, side, pkt, 0, 0, rb->head, advanced);
        }
    }
}

/* Stream offset of the FIN that `side` accepted from its peer (the end of
 * what it receives), or -1 if it accepted none. */
static inline int64_t fin_off(const mos_flow_t *f, int side)
{
    const mos_ep_t *me = &f->ep[side], *peer = &f->ep[!side];
    if (!(me->rflags & MOS_EPR_FIN)) return -1;
    return seq_to_off(me->fin_rcv, peer->ref_seq, peer->ref_off);
}

/* ---------------------------------------------------------------- flow life */

/* Embryonic flows (created by a SYN, handshake not complete) are listed
 * oldest first apart from the LRU: under a SYN flood the oldest half-open
 * flow is recycled first (RFC 4987 3.4), so the flood costs at most
 * max_embryonic flow entries and established flows keep their place. */
static void emb_append(mos_engine_t *e, mos_flow_t *f, uint32_t slot)
{
    f->emb_prev = e->emb_tail;
    f->emb_next = MOS_NIL;
    if (e->emb_tail != MOS_NIL) slot_ptr(e, e->emb_tail)->emb_next = slot;
    else e->emb_head = slot;
    e->emb_tail = slot;
    f->flags |= MOS_FF_EMBRYO;
    e->c.embryonic++;
}

static void emb_leave(mos_engine_t *e, mos_flow_t *f)
{
    if (f->emb_prev != MOS_NIL) slot_ptr(e, f->emb_prev)->emb_next = f->emb_next;
    else e->emb_head = f->emb_next;
    if (f->emb_next != MOS_NIL) slot_ptr(e, f->emb_next)->emb_prev = f->emb_prev;
    else e->emb_tail = f->emb_prev;
    f->emb_prev = f->emb_next = MOS_NIL;
    f->flags &= (uint16_t)~MOS_FF_EMBRYO;
    e->c.embryonic--;
}

/* the handshake is complete once the server side has taken the client's
 * ACK of its SYN-ACK (RFC 9293 3.5): it left LISTEN and SYN-RECEIVED */
__attribute__((noinline)) static void emb_check(mos_engine_t *e, mos_flow_t *f)
{
    uint8_t st = f->ep[MOS_SERVER].state;
    if (st != MOS_TCPS_LISTEN && st != MOS_TCPS_SYN_RCVD) emb_leave(e, f);
}

static void skip_settle(mos_engine_t *e, mos_flow_t *f, uint32_t slot, uint32_t pi, int force);

static void end_flow(mos_engine_t *e, mos_flow_t *f, uint32_t slot, int reason)
{
    if (!(f->flags & MOS_FF_LIVE)) return;
    if (f->skip) skip_settle(e, f, slot, MOS_NOPKT, 1); /* holes that waited: gaps now */
    /* out-of-order data left over is delivered past its holes (DESIGN 2:
     * gaps are reported when the flow ends) */
    for (int side = 0; side < 2; side++) {
        mos_ep_t *R = &f->ep[side];
        uint64_t adv = 0, a2 = 0;
        int g = 0;
        int64_t fo = fin_off(f, side);
        if (fo > 0 && (uint64_t)fo > R->rbuf.head) /* bytes missing before the FIN: a gap */
            g = mos_rbuf_skip_to(&R->rbuf, (uint64_t)fo, &adv);
        g += mos_rbuf_flush(&R->rbuf, &a2);
        adv += a2;
        if (g || adv) after_rbuf(e, f, slot, side, MOS_NOPKT, adv, g);
        if (f->digest) digest_advance(f, side);
    }
    cons_end(e, f, slot, -1); /* their notes come before CONN_END */
    hash_remove(e, f, slot);
    lru_unlink(e, f);
    if (f->flags & MOS_FF_EMBRYO) emb_leave(e, f);
    f->flags = (uint16_t)((f->flags & ~MOS_FF_LIVE) | MOS_FF_DYING);
    f->end_reason = (uint8_t)reason;
    e->c.flows_live--;
    e->c.flows_ended++;
    if (reason > 0 && reason < MOS_END_COUNT) e->c.ended[reason]++;
    if (reason == MOS_END_TIMEOUT) {
        emit(e, f, slot, MOS_EV_TIMEOUT, MOS_HK_NONE, MOS_CLIENT, MOS_NOPKT, reason, 0, 0, 0);
        emit(e, f, slot, MOS_EV_TIMEOUT, MOS_HK_NONE, MOS_SERVER, MOS_NOPKT, reason, 0, 0, 0);
    }
    emit(e, f, slot, MOS_EV_CONN_END, MOS_HK_NONE, MOS_CLIENT, MOS_NOPKT, reason, 0, 0, 0);
    emit(e, f, slot, MOS_EV_CONN_END, MOS_HK_NONE, MOS_SERVER, MOS_NOPKT, reason, 0, 0, 0);
    if (e->ndying < e->dyingcap) e->dying[e->ndying++] = slot; /* always: alloc_slot keeps room */
    else e->c.nomem++;
}

void mos_engine_end_flow(mos_engine_t *e, uint32_t slot, int reason)
{
    if (slot >= e->nslots) return;
    end_flow(e, slot_ptr(e, slot), slot, reason);
}

static void expire(mos_engine_t *e, uint64_t now)
{
    while (e->lru_head != MOS_NIL) {
        uint32_t s = e->lru_head;
        mos_flow_t *f = slot_ptr(e, s);
        if (f->lru_ts + e->cfg.tcp_timeout_ns >= now) break;
        if (f->last_ts + e->cfg.tcp_timeout_ns >= now) {
            /* active since its last move: it was not moved to spare the cache */
            f->lru_ts = f->last_ts;
            lru_touch(e, f, s);
            continue;
        }
        end_flow(e, f, s, MOS_END_TIMEOUT);
    }
}

static void evict_embryonic(mos_engine_t *e)
{
    uint32_t s = e->emb_head;
    e->c.evicted_embryonic++;
    end_flow(e, slot_ptr(e, s), s, MOS_END_EVICT);
}

/* The least recently active flow.  The LRU list is ordered by lru_ts,
 * refreshed lazily (LRU_GRAIN), so the head may have been active since its
 * last move: among the first flows (a bounded number, so creating a flow
 * stays O(1)) take the one with the oldest last_ts.  A flow whose lru_ts is
 * past the best last_ts so far was active later, and so were those after. */
static uint32_t lru_victim(mos_engine_t *e)
{
    uint32_t best = e->lru_head, s = best;
    uint64_t best_ts = slot_ptr(e, best)->last_ts;
    for (int k = 0; k < 64 && s != MOS_NIL; k++) {
        const mos_flow_t *f = slot_ptr(e, s);
        if (f->lru_ts > best_ts) break;
        if (f->last_ts < best_ts) {
            best = s;
            best_ts = f->last_ts;
        }
        s = f->lru_next;
    }
    return best;
}

/* out of line: once per flow, and the per-packet loop stays small */
__attribute__((noinline)) static mos_flow_t *create_flow(mos_engine_t *e, const mos_pkt_t *p,
                                                         uint32_t hash, uint64_t ts, uint32_t pi,
                                                         uint32_t *slot, int *dir)
{
    uint8_t fl = p->flags;
    int src_is_client;
    int midstream = 0;
    if ((fl & MOS_TH_SYN) && !(fl & MOS_TH_ACK)) {
        src_is_client = 1;
    } else if (!e->cfg.midstream || (fl & MOS_TH_RST)) {
        return NULL;
    } else {
        midstream = 1;
        if (fl & MOS_TH_SYN) src_is_client = 0; /* SYN-ACK: its sender is the server */
        else if (p->dport != p->sport) src_is_client = p->dport < p->sport; /* lower port serves */
        else src_is_client = 1;
    }
    if (!midstream && e->c.embryonic >= e->cfg.max_embryonic && e->emb_head != MOS_NIL)
        evict_embryonic(e);
    if (e->c.flows_live >= e->cfg.max_flows) {
        /* memory pressure (DESIGN 2): a half-open flow goes first */
        if (e->emb_head != MOS_NIL) evict_embryonic(e);
        else if (e->lru_head != MOS_NIL) {
            uint32_t v = lru_victim(e);
            end_flow(e, slot_ptr(e, v), v, MOS_END_EVICT);
        }
    }
    /* grow before the new flow is marked live, or it would be inserted twice */
    if (e->c.flows_live + 1 > e->nbuckets) hash_grow(e);
    uint32_t s;
    if (alloc_slot(e, &s) < 0) {
        e->c.nomem++; /* the packet is counted as an orphan too */
        return NULL;
    }
    mos_flow_t *f = slot_ptr(e, s);
    uint32_t gen = f->gen;
    memset(f, 0, sizeof *f);
    f->gen = gen;
    f->hash = hash;
    f->ipver = p->ipver;
    if (src_is_client) {
        memcpy(f->caddr, p->src, 16);
        memcpy(f->saddr, p->dst, 16);
        f->cport = p->sport;
        f->sport = p->dport;
    } else {
        memcpy(f->caddr, p->dst, 16);
        memcpy(f->saddr, p->src, 16);
        f->cport = p->dport;
        f->sport = p->sport;
    }
    f->flags = MOS_FF_LIVE | (midstream ? MOS_FF_MIDSTREAM : 0);
    f->id = ++e->next_id;
    f->first_ts = f->last_ts = f->lru_ts = ts;
    f->nd_stamp[0] = f->nd_stamp[1] = e->serial - 1;
    for (int side = 0; side < 2; side++) {
        /* no reader and no digest: nothing will ever need this side's
         * bytes, in order or not, so it keeps none (DESIGN rule 2) */
        uint32_t lim = e->cfg.buffer_size[side];
        if (!(((e->reads | e->cons_sides) >> side) & 1) && !e->cfg.digest && lim) {
            lim = 0;
            f->flags |= (uint16_t)(MOS_FF_NOBUF << side);
        }
        mos_rbuf_init(&f->ep[side].rbuf, lim, e->cfg.overlap[side], &e->pool);
    }
    f->ep[MOS_CLIENT].role = MOS_TCP_MONITOR;
    f->ep[MOS_SERVER].role = MOS_TCP_MONITOR | MOS_TCP_PASSIVE; /* the side that answers SYNs */
    if (!midstream) {
        f->ep[MOS_CLIENT].state = MOS_TCPS_CLOSED;
        f->ep[MOS_SERVER].state = MOS_TCPS_LISTEN;
    } else if (fl & MOS_TH_SYN) {
        f->ep[MOS_CLIENT].state = MOS_TCPS_SYN_SENT;
        f->ep[MOS_SERVER].state = MOS_TCPS_LISTEN;
    } else {
        f->ep[MOS_CLIENT].state = MOS_TCPS_ESTABLISHED;
        f->ep[MOS_SERVER].state = MOS_TCPS_ESTABLISHED;
    }
    hash_insert(e, f, s);
    lru_append(e, f, s);
    f->emb_prev = f->emb_next = MOS_NIL;
    if (!midstream) emb_append(e, f, s);
    e->c.flows_created++;
    e->c.flows_live++;
    *slot = s;
    *dir = src_is_client ? MOS_CLIENT : MOS_SERVER;
    f->flags |= MOS_FF_STARTED;
    emit(e, f, s, MOS_EV_CONN_START, MOS_HK_SEND, *dir, pi, 0, 0, 0, 0);
    return f;
}

/* Everything a flow holds besides its entry: buffers, digests, handler
 * tables, edits, consumer state (their end() if not called yet), waiting holes. */
static void flow_memory_free(mos_engine_t *e, mos_flow_t *f, uint32_t slot)
{
    free(f->skip);
    f->skip = NULL;
    if (f->cons) {
        cons_end(e, f, slot, -1); /* normally done when the flow ended */
        free(f->cons);
        f->cons = NULL;
    }
    mos_rbuf_free(&f->ep[0].rbuf);
    mos_rbuf_free(&f->ep[1].rbuf);
    if (f->digest) mos_flow_digest_wait(f); /* the hashing thread may hold it */
    free(f->digest);
    f->digest = NULL;
    free(f->interest);
    f->interest = NULL;
    if (f->edits) {
        mos_seqmap_clear(&f->edits->map[0]);
        mos_seqmap_clear(&f->edits->map[1]);
        free(f->edits);
        f->edits = NULL;
        e->edited_flows--;
    }
}

static void free_flow(mos_engine_t *e, uint32_t slot)
{
    mos_flow_t *f = slot_ptr(e, slot);
    flow_memory_free(e, f, slot);
    f->flags = 0;
    f->gen++;
    f->hnext = e->freelist;
    e->freelist = slot;
}

/* ---------------------------------------------------------------- packets */

/* Do these bytes lie in frame pi while frames are stable (mos_engine_set_
 * stable_frames)?  Not those of a reassembled datagram: that buffer goes. */
static inline int in_stable_frame(const mos_engine_t *e, uint32_t pi, const uint8_t *data,
                                  uint32_t len)
{
    const mos_frame_t *fr = &e->frames[pi];
    return e->stable && data >= fr->data && data + len <= fr->data + fr->caplen;
}

/* Store the bytes the receiver `r` accepted (mos_tcp_ep_input: len bytes at
 * stream offset doff, after skip bytes of the payload) in its buffer, and
 * raise what follows.  Scalars, not the effects record: taking its address
 * would keep the record in memory on the per-packet path. */
__attribute__((noinline)) static void store_data(mos_engine_t *e, mos_flow_t *f, uint32_t slot,
                                                 int r, const mos_pkt_t *p, uint32_t pi,
                                                 uint64_t doff, uint32_t len, uint32_t skip)
{
    mos_ep_t *R = &f->ep[r];
    uint32_t have = p->paylen > skip ? p->paylen - skip : 0; /* bytes the capture holds */
    if (have > len) have = len;
    const uint8_t *data = p->payload + skip;
    if (R->flags & MOS_EPF_UNMON) return;
    digest_need(e, f);
    mos_rbuf_t *rb = &R->rbuf;
    if (!e->cfg.keep_read && R->consumed > rb->base) release_read(e, f, r);
    uint64_t head0 = rb->head;
    /* in order, nothing waiting, nobody to keep it for: no copy, unless a
     * consumer raised a note on these bytes (its handlers may ppeek them) */
    int fast = doff == head0 && have == len && rb->nruns == 0 && !kept(e, f, r), noted = 0;
    if (fast && __builtin_expect(e->cons_sides != 0, 0)) {
        uint32_t nev0 = e->nev;
        cons_packet(e, f, slot, r, pi, head0, data, len);
        noted = e->nev > nev0 && rb->limit;
    }
    if (fast && !noted) {
        if (f->digest) {
            mos_digest_t *d = &f->digest[r];
            if (d->hashed_to == head0) {
                if (!(e->dq && in_stable_frame(e, pi, data, len) &&
                      mos_digestq_push(e->dq, &d->sha, &d->pending, data, len) == 0)) {
                    mos_digestq_wait(&d->pending);
                    mos_sha256_update(&d->sha, data, len);
                }
                d->hashed_bytes += len;
                d->hashed_to = head0 + len;
            }
        }
        rb->head = head0 + len;
        mos_rbuf_release(rb, rb->head);
        after_rbuf(e, f, slot, r, pi, len, 0);
        return;
    }
    if (f->digest && rb->policy == MOS_OVERLAP_LAST && rb->limit &&
        doff + len > rb->base + rb->limit)
        digest_upto(f, r, doff + len - rb->limit); /* hash what is about to leave */
    /* offline, the capture stays mapped for the whole run: in-order bytes
     * of a frame are lent to the buffer, not copied (mos_rbuf_insert_lent) */
    int lend = in_stable_frame(e, pi, data, have);
    mos_rbuf_result_t res;
    uint64_t advanced = 0;
    int gaps = 0;
    uint64_t overlap_diff = 0, dropped_new = 0, below = 0, refused = 0;
    uint64_t lost_from = 0, lost_to = 0;
    for (int part = 0; part < 2; part++) {
        uint64_t o = doff + (part ? have : 0);
        uint32_t n = part ? len - have : have;
        if (!n) continue;
        if (!part && lend) mos_rbuf_insert_lent(rb, o, data, n, &res);
        else mos_rbuf_insert(rb, o, part ? NULL : data, n, &res);
        gaps += res.gaps_added;
        overlap_diff += res.overlap_diff;
        dropped_new += res.dropped_new;
        below += res.below_base;
        refused += res.refused;
        if (res.dropped_old_to > res.dropped_old_from) {
            if (lost_to == lost_from) lost_from = res.dropped_old_from;
            lost_to = res.dropped_old_to;
        }
    }
    if (noted && refused && rb->head == head0 && rb->nruns == 0) {
        /* no room to keep a noted chunk: the consumers saw it, so the stream
         * goes on; only a ppeek of it finds nothing (MEMCAP says why) */
        rb->head = head0 + len;
        mos_rbuf_release(rb, rb->head);
    }
    advanced = rb->head - head0;
    if (doff > head0) e->c.ooo_segments++;
    /* bytes nobody could read are not "lost unread" */
    if (lost_to > R->consumed && lost_to > lost_from && retained(e, f, r)) {
        uint64_t from = lost_from > R->consumed ? lost_from : R->consumed;
        error_ev(e, f, slot, r, pi, MOS_ERR_OVERRUN, from, lost_to);
    }
    if (overlap_diff) error_ev(e, f, slot, r, pi, MOS_ERR_OVERLAP_DIFF, doff, overlap_diff);
    if (dropped_new) error_ev(e, f, slot, r, pi, MOS_ERR_NO_ROOM, doff, dropped_new);
    if (refused) error_ev(e, f, slot, r, pi, MOS_ERR_MEMCAP, doff, refused);
    if (below) e->c.errors[MOS_ERR_BELOW_BASE]++;
    if (advanced || gaps) after_rbuf(e, f, slot, r, pi, advanced, gaps);
}

/* The sender `s` acknowledged bytes of its own receive buffer that the
 * monitor never saw: the receiver got them, so the hole is a gap. */
/* A hole its receiver acknowledged past is not declared a gap at once:
 * captures often carry the data just after the ACK that covers it (a second
 * capture point, reordering on the way to the tap).  It waits until a later
 * packet of the flow brings no progress on it, or the flow ends; bytes that
 * come meanwhile fill it.  Per flow, allocated while such a hole waits. */
struct mos_skip {
    uint64_t to[2];        /* per receiving side: skip target (0: none) */
    uint64_t at[2];        /* frame count when it was set or last progressed */
    uint64_t head[2];      /* the in-order frontier then */
};

static void skip_apply(mos_engine_t *e, mos_flow_t *f, uint32_t slot, int s, uint32_t pi,
                       uint64_t to)
{
    mos_rbuf_t *rb = &f->ep[s].rbuf;
    if (to <= rb->head) return;
    uint64_t adv = 0;
    digest_need(e, f);
    int g = mos_rbuf_skip_to(rb, to, &adv);
    if (g || adv) after_rbuf(e, f, slot, s, pi, adv, g);
}

/* Declare the waiting holes that a packet of the flow made no progress on
 * (force: all of them, the flow ends). */
static void skip_settle(mos_engine_t *e, mos_flow_t *f, uint32_t slot, uint32_t pi, int force)
{
    struct mos_skip *k = f->skip;
    for (int s = 0; s < 2; s++) {
        uint64_t head = f->ep[s].rbuf.head;
        if (k->to[s] <= head) {
            k->to[s] = 0;
            continue;
        }
        if (!force) {
            if (k->at[s] == e->c.frames) continue;      /* set by this very packet */
            if (head != k->head[s]) {                   /* filling: wait on */
                k->head[s] = head;
                k->at[s] = e->c.frames;
                continue;
            }
        }
        uint64_t to = k->to[s];
        k->to[s] = 0;
        skip_apply(e, f, slot, s, pi, to);
    }
    if (!k->to[0] && !k->to[1]) {
        free(k);
        f->skip = NULL;
    }
}

static void skip_unseen(mos_engine_t *e, mos_flow_t *f, uint32_t slot, int s, uint32_t pi,
                        uint32_t ack)
{
    mos_ep_t *S = &f->ep[s];
    const mos_ep_t *R = &f->ep[!s];
    int64_t aoff = seq_to_off(ack, R->ref_seq, R->ref_off);
    if (aoff > 0 && (uint64_t)aoff > S->rbuf.head) { /* acknowledged past the in-order bytes */
        /* up to what the sender was seen to send; and its stream ends at
         * the FIN S accepted (bytes after it are not in it, the FIN's own
         * number is no byte): bytes before the FIN that S acknowledged and
         * the monitor never saw are a gap */
        int64_t lim = (S->rflags & MOS_EPR_FIN) ? fin_off(f, s) : (int64_t)R->data_end;
        if (aoff > lim) aoff = lim;
        if (aoff > 0 && (uint64_t)aoff > S->rbuf.head) {
            struct mos_skip *k = f->skip;
            if (!k && !(k = f->skip = calloc(1, sizeof *k))) {
                e->c.nomem++;
                skip_apply(e, f, slot, s, pi, (uint64_t)aoff); /* no memory: a gap at once */
            } else {
                if (!k->to[s]) { /* a new wait; a repeated ACK does not prolong it */
                    k->at[s] = e->c.frames;
                    k->head[s] = S->rbuf.head;
                }
                if ((uint64_t)aoff > k->to[s]) k->to[s] = (uint64_t)aoff;
            }
        }
    }
    if (!e->cfg.keep_read && S->consumed > S->rbuf.base) release_read(e, f, s);
}

/* Checksum policy (MOS_CSUM_*): 1 if the packet may go on. */
static inline int checksum_ok(mos_engine_t *e, const mos_pkt_t *p, mos_flow_t *f, uint32_t slot,
                              int s, uint32_t pi)
{
    if (e->cfg.checksum == MOS_CSUM_IGNORE) return 1;
    int bad = (p->ipver == 4 && mos_ipv4_csum_ok(p) == 0) || mos_tcp_csum_ok(p) == 0;
    if (e->cfg.checksum == MOS_CSUM_AUTO) {
        /* undecided: accept and count; decide after the sample */
        e->csum_bad += bad;
        if (++e->csum_seen >= MOS_CSUM_SAMPLE)
            e->cfg.checksum = e->csum_bad * 10 > e->csum_seen ? MOS_CSUM_IGNORE : MOS_CSUM_VERIFY;
        return 1;
    }
    if (!bad) return 1;
    e->c.bad_checksum++;
    if (f) error_ev(e, f, slot, !s, pi, MOS_ERR_BAD_CHECKSUM, 0, 0);
    else e->c.errors[MOS_ERR_BAD_CHECKSUM]++;
    return 0;
}

/* The flow of a TCP packet and the side that sent it: found, or created
 * (*created = 1), or NULL (checksum failed, or an orphan: counted). */
static inline mos_flow_t *flow_of(mos_engine_t *e, uint32_t pi, const mos_pkt_t *p, uint64_t ts,
                                  uint32_t *slot, int *s, int *created)
{
    uint32_t hash = mos_flow_hash(p);
    mos_flow_t *f = lookup(e, p, hash, slot, s);
    uint8_t fl = p->flags;
    if (!checksum_ok(e, p, f, *slot, *s, pi)) return NULL;
    *created = 0;
    if (f && (fl & MOS_TH_SYN) && !(fl & MOS_TH_ACK)) {
        /* port reuse: a new SYN after this side closed (RFC 9293 3.10.7.4 TIME-WAIT) */
        const mos_ep_t *S = &f->ep[*s];
        if ((S->flags & MOS_EPF_ISN) && p->seq != S->isn &&
            (S->flags & MOS_EPF_FIN || S->state == MOS_TCPS_CLOSED)) {
            end_flow(e, f, *slot, MOS_END_REUSE);
            f = NULL;
        }
    }
    if (!f) {
        f = create_flow(e, p, hash, ts, pi, slot, s);
        if (!f) {
            e->c.orphans++;
            emit(e, NULL, MOS_NIL, MOS_EV_ORPHAN, MOS_HK_NONE, MOS_CLIENT, pi, 0, 0, 0, 0);
            return NULL;
        }
        *created = 1;
    }
    if (ts > f->last_ts) f->last_ts = ts;
    /* the LRU list is ordered by lru_ts, refreshed at most every LRU_GRAIN:
     * moving a flow to the tail writes two other flows' cache lines, too
     * dear for every packet; expire() re-checks last_ts, eviction takes the
     * head: the least recently active flow to within LRU_GRAIN */
    if (f->last_ts - f->lru_ts > LRU_GRAIN || *created) {
        f->lru_ts = f->last_ts;
        lru_touch(e, f, *slot);
    }
    return f;
}

/* The receiver r acknowledges edited bytes in the numbers it saw: the
 * models follow the sender's own numbers (seqmap.h). */
static void edits_translate_ack(mos_flow_t *f, int r, mos_pkt_t *p)
{
    mos_seqmap_t *m = &f->edits->map[r];
    uint32_t wire = p->ack;
    p->ack = mos_seqmap_in(m, wire);
    for (int k = 0; k < 2 * p->nsack; k++) p->sack[k] = mos_seqmap_in(m, p->sack[k]);
    mos_seqmap_acked(m, wire);
}

/* A segment that fails PAWS (mos_tcp_ep_paws): neither model takes it; it
 * counts as a packet its sender sent, and says why it was ignored. */
__attribute__((noinline)) static void paws_reject(mos_engine_t *e, mos_flow_t *f, uint32_t slot,
                                                  int s, uint32_t pi, const mos_pkt_t *p)
{
    mos_ep_t *S = &f->ep[s];
    int r = !s;
    S->pkts++;
    S->bytes += p->seglen;
    e->pref[pi].snd_nxt = S->snd_nxt;
    emit(e, f, slot, MOS_EV_PKT_IN, MOS_HK_SEND, s, pi, 0, 0, 0, 0);
    error_ev(e, f, slot, r, pi, MOS_ERR_PAWS, p->tcpopt.tsval, f->ep[r].ts_recent);
    cons_pkt(e, f, slot, r, pi, p);
    emit(e, f, slot, MOS_EV_PKT_IN, MOS_HK_RECV, r, pi, 0, 0, 0, 0);
}

/* One TCP packet: the sender's model, then the receiver's (mos/tcp), and
 * the events their effects make, in this order: REXMIT, STATE_CHANGE and
 * PKT_IN at SEND; CONN_START, STATE_CHANGE, ERROR / NEW_DATA and PKT_IN at
 * RECV; CONN_END when the connection is over. */
static uint32_t tcp_packet_in(mos_engine_t *e, uint32_t pi, mos_pkt_t *p, uint64_t ts,
                              uint16_t iface)
{
    e->c.tcp++;
    uint32_t slot = MOS_NIL;
    int s = 0, created;
    mos_flow_t *f = flow_of(e, pi, p, ts, &slot, &s, &created);
    if (!f) return MOS_NIL;
    uint8_t fl = p->flags;
    f->iface[s] = iface;
    int r = !s;
    mos_ep_t *S = &f->ep[s], *R = &f->ep[r];
    e->pref[pi].slot = slot;
    e->pref[pi].side = (uint8_t)s;
    f->wire_pkts[s]++;
    f->wire_bytes[s] += e->frames[pi].wirelen;
    if (__builtin_expect(f->flags & MOS_FF_BLOCKED, 0)) { /* dropped: no endpoint sees it */
        e->verdict[pi] = MOS_VERDICT_DROP;
        e->c.blocked++;
        return slot;
    }
    if (f->edits && (fl & MOS_TH_ACK) && mos_seqmap_active(&f->edits->map[r]))
        edits_translate_ack(f, r, p);
    e->c.payload_bytes += p->seglen;
    if (p->paylen < p->seglen) e->c.snapped++;
    const mos_tcp_seg_t seg = {.seq = p->seq, .ack = p->ack, .len = p->seglen, .wnd = p->win,
                               .flags = fl, .opt = &p->tcpopt};
    mos_tcp_eff_t eff;
    if (mos_tcp_ep_paws(R, S, &seg)) { /* RFC 7323 5.3 R1: the receiver drops it */
        paws_reject(e, f, slot, s, pi, p);
        return slot;
    }

    /* ---- the sender's model ---- */
    mos_tcp_ep_sent(S, R, &seg, &eff);
    e->pref[pi].snd_nxt = eff.snd_nxt0;
    if (eff.rexmit) {
        e->c.rexmit++;
        emit(e, f, slot, MOS_EV_REXMIT, MOS_HK_SEND, s, pi, 0, 0, eff.rexmit_off, seg.len);
    }
    emit_trans(e, f, slot, s, MOS_HK_SEND, pi, &eff);
    if ((fl & (MOS_TH_ACK | MOS_TH_RST)) == MOS_TH_ACK && (R->flags & MOS_EPF_ISN) &&
        !(S->flags & MOS_EPF_UNMON))
        skip_unseen(e, f, slot, s, pi, p->ack);
    emit(e, f, slot, MOS_EV_PKT_IN, MOS_HK_SEND, s, pi, 0, 0, 0, 0);

    /* ---- the receiver's model ---- */
    if (created) emit(e, f, slot, MOS_EV_CONN_START, MOS_HK_RECV, r, pi, 0, 0, 0, 0);
    mos_tcp_ep_input(R, S, &seg, ts, &eff);
    if (eff.rst) {
        if (eff.rst == MOS_TCP_RST_ACCEPT) {
            mos_tcp_eff_t se;
            mos_tcp_ep_action(S, MOS_TCP_SENT_RST, &se);
            emit_trans(e, f, slot, s, MOS_HK_SEND, pi, &se);
            emit_trans(e, f, slot, r, MOS_HK_RECV, pi, &eff);
            cons_pkt(e, f, slot, r, pi, p);
            emit(e, f, slot, MOS_EV_PKT_IN, MOS_HK_RECV, r, pi, 0, 0, 0, 0);
            end_flow(e, f, slot, MOS_END_RST); /* RST payload never enters a stream */
        } else {
            error_ev(e, f, slot, r, pi, MOS_ERR_RST_OUT_OF_WINDOW, p->seq, 0);
            cons_pkt(e, f, slot, r, pi, p);
            emit(e, f, slot, MOS_EV_PKT_IN, MOS_HK_RECV, r, pi, 0, 0, 0, 0);
        }
        return slot;
    }
    emit_trans(e, f, slot, r, MOS_HK_RECV, pi, &eff);
    if (__builtin_expect(eff.oow_len | eff.aft_len, 0)) {
        if (eff.aft_len) error_ev(e, f, slot, r, pi, MOS_ERR_DATA_AFTER_FIN, eff.aft_off, eff.aft_len);
        if (eff.oow_len) error_ev(e, f, slot, r, pi, MOS_ERR_OUT_OF_WINDOW, eff.oow_off, eff.oow_len);
    }
    if (eff.data_len) {
        if (__builtin_expect(fl & MOS_TH_URG, 0))
            error_ev(e, f, slot, r, pi, MOS_ERR_URGENT, eff.data_off,
                     (uint32_t)p->l4[18] << 8 | p->l4[19]);
        store_data(e, f, slot, r, p, pi, eff.data_off, eff.data_len, eff.data_skip);
    }
    cons_pkt(e, f, slot, r, pi, p);
    emit(e, f, slot, MOS_EV_PKT_IN, MOS_HK_RECV, r, pi, 0, 0, 0, 0);
    if (__builtin_expect(f->flags & MOS_FF_EMBRYO, 0)) emb_check(e, f);

    /* both ends closed: the connection is over (RFC 9293 3.6) */
    uint8_t a = f->ep[0].state, b = f->ep[1].state;
    if ((a == MOS_TCPS_CLOSED || a == MOS_TCPS_TIME_WAIT) &&
        (b == MOS_TCPS_CLOSED || b == MOS_TCPS_TIME_WAIT))
        end_flow(e, f, slot, MOS_END_CLOSE);
    return slot;
}

/* One TCP packet; then the holes of its flow that wait to be declared. */
static void tcp_packet(mos_engine_t *e, uint32_t pi, mos_pkt_t *p, uint64_t ts, uint16_t iface)
{
    uint32_t slot = tcp_packet_in(e, pi, p, ts, iface);
    if (slot == MOS_NIL) return;
    mos_flow_t *f = slot_ptr(e, slot);
    if (__builtin_expect(f->skip != NULL, 0) && (f->flags & MOS_FF_LIVE))
        skip_settle(e, f, slot, pi, 0);
}

/* ---------------------------------------------------------------- API */

mos_engine_t *mos_engine_new(const mos_config_t *cfg)
{
    mos_engine_t *e = calloc(1, sizeof *e);
    if (!e) return NULL;
    e->cfg = *cfg;
    if (!e->cfg.max_flows) e->cfg.max_flows = 1u << 20;
    if (!e->cfg.max_embryonic || e->cfg.max_embryonic > e->cfg.max_flows)
        e->cfg.max_embryonic = e->cfg.max_flows;
    if (!e->cfg.tcp_timeout_ns) e->cfg.tcp_timeout_ns = 30ull * 1000000000ull;
    /* up to 16 MiB of released blocks are kept for the next flows */
    mos_rbuf_pool_init(&e->pool, e->cfg.reassembly_memcap, 16u << 20);
    e->freelist = MOS_NIL;
    e->lru_head = e->lru_tail = MOS_NIL;
    e->emb_head = e->emb_tail = MOS_NIL;
    e->nbuckets = 4096;
    e->buckets = malloc(e->nbuckets * sizeof *e->buckets);
    e->defrag = mos_defrag_new(cfg->defrag_mem ? cfg->defrag_mem : (64u << 20),
                               cfg->defrag_timeout_ns ? cfg->defrag_timeout_ns : 30ull * 1000000000ull);
    if (!e->buckets || !e->defrag) {
        mos_engine_free(e);
        return NULL;
    }
    memset(e->buckets, 0xff, e->nbuckets * sizeof *e->buckets);
    /* per-burst arrays, sized once: processing allocates nothing for them */
    e->pkts = malloc(MOS_BURST_MAX * sizeof *e->pkts);
    e->verdict = malloc(MOS_BURST_MAX);
    e->pref = malloc(MOS_BURST_MAX * sizeof *e->pref);
    if (!e->pkts || !e->verdict || !e->pref) {
        mos_engine_free(e);
        return NULL;
    }
    e->pktcap = MOS_BURST_MAX;
    return e;
}

void mos_engine_free(mos_engine_t *e)
{
    if (!e) return;
    mos_digestq_free(e->dq);
    e->dq = NULL;
    for (uint32_t s = 0; s < e->nslots; s++) {
        mos_flow_t *f = slot_ptr(e, s);
        if (f->flags & (MOS_FF_LIVE | MOS_FF_DYING)) flow_memory_free(e, f, s);
    }
    for (uint32_t i = 0; i < e->nchunks; i++) free(e->chunks[i]);
    free(e->chunks);
    free(e->buckets);
    free(e->dying);
    free(e->ev);
    free(e->pkts);
    free(e->verdict);
    free(e->pref);
    free(e->arena);
    for (uint32_t i = 0; i < e->nretired; i++) free(e->retired[i]);
    free(e->retired);
    if (e->defrag) mos_defrag_free(e->defrag);
    mos_rbuf_pool_drain(&e->pool);
    free(e);
}

static int interest_empty(const mos_interest_t *m)
{
    for (int i = 0; i < MOS_INTEREST_WORDS; i++)
        if (m->w[i]) return 0;
    return 1;
}

void mos_engine_set_interest(mos_engine_t *e, const mos_interest_t *m)
{
    e->interest = *m;
    e->any_interest = !interest_empty(m);
}

/* A side created without a buffer (no reader then) gets the configured
 * size back when a reader comes; bytes that went by before are not there. */
static void restore_buffer(mos_engine_t *e, mos_flow_t *f, int side)
{
    uint16_t bit = (uint16_t)(MOS_FF_NOBUF << side);
    if (!(f->flags & bit) || (!reads_side(e, f, side) && !((e->cons_sides >> side) & 1))) return;
    f->flags &= (uint16_t)~bit;
    if (!(f->ep[side].flags & MOS_EPF_UNMON))
        mos_rbuf_set_limit(&f->ep[side].rbuf, e->cfg.buffer_size[side]);
}

int mos_flow_set_interest(mos_engine_t *e, mos_flow_t *f, const mos_interest_t *m)
{
    if (!m || interest_empty(m)) {
        free(f->interest);
        f->interest = NULL;
        return 0;
    }
    if (!f->interest && !(f->interest = malloc(sizeof *f->interest))) return -1;
    *f->interest = *m;
    if (f->flags & (MOS_FF_NOBUF | MOS_FF_NOBUF << 1)) {
        restore_buffer(e, f, 0);
        restore_buffer(e, f, 1);
    }
    return 0;
}

int mos_flow_reads(const mos_engine_t *e, const mos_flow_t *f, int side)
{
    return retained(e, f, side) || ((e->cons_sides >> side) & 1);
}

static void restore_buffers(mos_engine_t *e, int gained);

void mos_engine_set_reads(mos_engine_t *e, int mask)
{
    int gained = mask & 3 & ~(e->reads | e->cons_sides);
    e->reads = (uint8_t)(mask & 3);
    restore_buffers(e, gained);
}

static void restore_buffers(mos_engine_t *e, int gained)
{
    if (!gained) return;
    /* once per change of the monitors, not per packet: walk the live flows */
    for (uint32_t s = e->lru_head; s != MOS_NIL;) {
        mos_flow_t *f = slot_ptr(e, s);
        if (gained & 1) restore_buffer(e, f, 0);
        if (gained & 2) restore_buffer(e, f, 1);
        s = f->lru_next;
    }
}
void mos_engine_set_checksum(mos_engine_t *e, int mode) { e->cfg.checksum = (uint8_t)mode; }

void mos_flow_block(mos_engine_t *e, mos_flow_t *f)
{
    (void)e;
    f->flags |= MOS_FF_BLOCKED;
}

/* The frames are about to go: every byte lent to a buffer is copied. */
static void unlend_all(mos_engine_t *e)
{
    for (uint32_t s = 0; s < e->nslots; s++) {
        mos_flow_t *f = slot_ptr(e, s); /* live or dying: both may still be read */
        for (int side = 0; side < 2; side++) {
            uint64_t lost = f->ep[side].rbuf.nlent ? mos_rbuf_unlend(&f->ep[side].rbuf) : 0;
            if (lost) e->c.errors[MOS_ERR_MEMCAP]++; /* between runs: no event, counted */
        }
    }
}

void mos_engine_set_stable_frames(mos_engine_t *e, int on)
{
    if (on && e->cfg.digest && !e->dq) e->dq = mos_digestq_new(); /* NULL: hash here */
    if (!on && e->stable) unlend_all(e);
    if (!on) { /* every job done, and no thread left idle between runs */
        mos_digestq_free(e->dq);
        e->dq = NULL;
    }
    e->stable = on != 0;
}

void mos_flow_digest_wait(const mos_flow_t *f)
{
    if (!f->digest) return;
    mos_digestq_wait(&f->digest[0].pending);
    mos_digestq_wait(&f->digest[1].pending);
}

void mos_engine_set_views(mos_engine_t *e, void *const *views, uint32_t n)
{
    e->views = views;
    e->nviews = views ? n : 0;
}

int mos_engine_process(mos_engine_t *e, const mos_frame_t *frames, int from, int n,
                       uint64_t stop_ts)
{
    if (from == 0) { /* a new burst: what the last one left behind goes */
        mos_defrag_release(e->defrag);
        e->frames = frames;
        e->npkts = 0;
        e->arena_used = 0;
        while (e->nretired) free(e->retired[--e->nretired]);
    } else if (frames != e->frames) {
        return from; /* not the burst this engine is in */
    }
    if (n > MOS_BURST_MAX) n = MOS_BURST_MAX; /* the caller cuts longer runs in bursts */
    if (from == 0) {
        /* Decoding is pure: do it for the whole burst now, and ask for each
         * TCP packet's hash bucket.  With thousands of flows, a flow entry
         * is a cache miss per packet; below, the entry of packet i + AHEAD
         * is prefetched while packet i is processed. */
        for (int k = 0; k < n; k++) {
            int rc = mos_decode(frames[k].linktype, frames[k].data, frames[k].caplen,
                                &e->pkts[k]);
            e->prerc[k] = (int8_t)rc;
            if (rc == MOS_DEC_TCP) {
                e->phash[k] = mos_flow_hash(&e->pkts[k]);
                __builtin_prefetch(&e->buckets[e->phash[k] & (e->nbuckets - 1)], 0, 1);
            }
        }
    }
    e->serial++;
    uint32_t nev0 = e->nev;
    int i;
    for (i = from; i < n; i++) {
        const mos_frame_t *fr = &frames[i];
        if (i + PREFETCH_AHEAD < n && e->prerc[i + PREFETCH_AHEAD] == MOS_DEC_TCP) {
            uint32_t s = e->buckets[e->phash[i + PREFETCH_AHEAD] & (e->nbuckets - 1)];
            if (s != MOS_NIL) {
                const uint8_t *fp = (const uint8_t *)slot_ptr(e, s);
                /* the whole entry: the sender's and the receiver's models
                 * span its last lines (bench_ab: +11 % over the first two) */
                for (unsigned l = 0; l < sizeof(mos_flow_t); l += 64) __builtin_prefetch(fp + l, 0, 1);
                if (s < e->nviews) __builtin_prefetch(&e->views[s], 0, 1);
            }
        }
        if (e->nviews && i + VIEW_AHEAD < n && e->prerc[i + VIEW_AHEAD] == MOS_DEC_TCP) {
            uint32_t s = e->buckets[e->phash[i + VIEW_AHEAD] & (e->nbuckets - 1)];
            if (s < e->nviews) {
                const char *v = (const char *)e->views[s];
                __builtin_prefetch(v, 1, 1);
                __builtin_prefetch(v + 64, 0, 1);
                __builtin_prefetch(v + 128, 0, 1);
            }
        }
        if (fr->ts_ns > stop_ts) break;
        if (fr->ts_ns > e->now) {
            e->now = fr->ts_ns;
            if (e->lru_head != MOS_NIL &&
                slot_ptr(e, e->lru_head)->lru_ts + e->cfg.tcp_timeout_ns < e->now)
                expire(e, e->now);
            if (e->now - e->defrag_checked > 1000000000ull) {
                mos_defrag_expire(e->defrag, e->now);
                e->defrag_checked = e->now;
            }
            if (e->nev > nev0) break; /* flows that idled out first: their events before this frame */
        }
        e->verdict[i] = MOS_VERDICT_FORWARD;
        e->pref[i].slot = MOS_NIL;
        e->npkts = (uint32_t)i + 1;
        e->c.frames++;
        e->c.bytes += fr->wirelen;
        mos_pkt_t *p = &e->pkts[i];
        int rc = e->prerc[i];
        if (rc == MOS_DEC_FRAGMENT) {
            if (fr->caplen >= fr->wirelen && p->l3 + p->l3len > fr->data + fr->caplen) {
                e->c.malformed++; /* as below: the fragment's IP length exceeds the wire */
                e->c.ip_len_over_wire++;
                continue;
            }
            e->c.fragments++;
            uint32_t dl = 0;
            const uint8_t *d = mos_defrag_add(e->defrag, p, e->now, &dl);
            if (!d) continue;
            rc = mos_decode_ip(d, dl, p);
        }
        switch (rc) {
        case MOS_DEC_TCP:
            if (__builtin_expect(p->paylen < p->seglen, 0) && fr->caplen >= fr->wirelen) {
                /* the IP length claims bytes the wire never carried: the
                 * capture did not cut this frame (caplen = wire length),
                 * so it is malformed, not snapped */
                e->c.malformed++;
                e->c.ip_len_over_wire++;
                break;
            }
            tcp_packet(e, (uint32_t)i, p, fr->ts_ns, fr->iface);
            break;
        case MOS_DEC_OTHER: e->c.non_tcp++; break;
        case MOS_DEC_TRUNCATED: e->c.truncated++; break;
        case MOS_DEC_MALFORMED: e->c.malformed++; break;
        case MOS_DEC_FRAGMENT: e->c.non_tcp++; break; /* a fragment inside a reassembled datagram */
        default: e->c.unsupported++; break;
        }
        if (e->nev > nev0) { /* someone handles what this packet did: hand over now */
            i++;
            break;
        }
    }
    return i;
}

void mos_engine_advance(mos_engine_t *e, uint64_t now_ns)
{
    if (now_ns > e->now) e->now = now_ns;
    expire(e, e->now);
    mos_defrag_expire(e->defrag, e->now);
}

uint64_t mos_engine_next_deadline(const mos_engine_t *e)
{
    uint64_t d = mos_defrag_deadline(e->defrag);
    /* expire() ends the head once lru_ts + timeout < now (it may only refresh
     * a head whose lru_ts lags its last_ts; the next head then follows) */
    if (e->lru_head != MOS_NIL) {
        uint64_t t = slot_ptr(e, e->lru_head)->lru_ts + e->cfg.tcp_timeout_ns + 1;
        if (t < d) d = t;
    }
    return d;
}

void mos_engine_end_all(mos_engine_t *e, int reason)
{
    mos_engine_end_some(e, reason, UINT32_MAX);
}

uint32_t mos_engine_end_some(mos_engine_t *e, int reason, uint32_t max)
{
    uint32_t n = 0;
    for (; n < max && e->lru_head != MOS_NIL; n++)
        end_flow(e, slot_ptr(e, e->lru_head), e->lru_head, reason);
    return n;
}

const mos_event_t *mos_engine_events(const mos_engine_t *e, uint32_t *n)
{
    *n = e->nev;
    return e->ev;
}

void mos_engine_clear_events(mos_engine_t *e) { e->nev = 0; }

uint32_t mos_engine_reap(mos_engine_t *e)
{
    uint32_t n = e->ndying;
    for (uint32_t i = 0; i < n; i++) free_flow(e, e->dying[i]);
    e->ndying = 0;
    return n;
}

const uint32_t *mos_engine_dying(const mos_engine_t *e, uint32_t *n)
{
    *n = e->ndying;
    return e->dying;
}

mos_flow_t *mos_engine_flow(mos_engine_t *e, uint32_t slot, uint32_t gen)
{
    if (slot >= e->nslots) return NULL;
    mos_flow_t *f = slot_ptr(e, slot);
    if (f->gen != gen || !(f->flags & (MOS_FF_LIVE | MOS_FF_DYING))) return NULL;
    return f;
}

mos_flow_t *mos_engine_flow_any(mos_engine_t *e, uint32_t slot)
{
    if (slot >= e->nslots) return NULL;
    return slot_ptr(e, slot);
}

const mos_pkt_t *mos_engine_pkt(const mos_engine_t *e, uint32_t i)
{
    return i < e->pktcap ? &e->pkts[i] : NULL;
}

const mos_frame_t *mos_engine_frame(const mos_engine_t *e, uint32_t i) { return &e->frames[i]; }
uint8_t *mos_engine_verdicts(mos_engine_t *e) { return e->verdict; }
const mos_counters_t *mos_engine_counters(const mos_engine_t *e) { return &e->c; }
const mos_defrag_stats_t *mos_engine_defrag_stats(const mos_engine_t *e) { return mos_defrag_stats(e->defrag); }
uint64_t mos_engine_now(const mos_engine_t *e) { return e->now; }
uint32_t mos_engine_slots(const mos_engine_t *e) { return e->nslots; }

const mos_rbuf_pool_t *mos_engine_pool(const mos_engine_t *e) { return &e->pool; }

uint64_t mos_engine_memory(const mos_engine_t *e)
{
    return (uint64_t)e->nchunks * CHUNK * sizeof(mos_flow_t) + (uint64_t)e->nbuckets * 4 +
           (uint64_t)e->chunkcap * sizeof(void *) + (uint64_t)e->evcap * sizeof(mos_event_t) +
           (uint64_t)e->pktcap * sizeof(mos_pkt_t);
}

void mos_flow_set_buffer(mos_engine_t *e, mos_flow_t *f, int side, uint32_t size)
{
    (void)e;
    f->flags &= (uint16_t)~(MOS_FF_NOBUF << side); /* the handler's size stands */
    mos_rbuf_set_limit(&f->ep[side].rbuf, size);
}

void mos_flow_consumed(mos_engine_t *e, mos_flow_t *f, int side, uint64_t off)
{
    (void)e;
    /* released when the flow's next packet arrives, so a handler can still
     * ppeek what it has just read */
    f->ep[side].consumed = off;
}

void mos_flow_stop_side(mos_engine_t *e, mos_flow_t *f, int side)
{
    (void)e;
    f->ep[side].flags |= MOS_EPF_UNMON;
    f->flags &= (uint16_t)~(MOS_FF_NOBUF << side);
    mos_rbuf_set_limit(&f->ep[side].rbuf, 0);
    if ((f->ep[0].flags & MOS_EPF_UNMON) && (f->ep[1].flags & MOS_EPF_UNMON)) f->flags |= MOS_FF_UNMON;
}

/* ---------------------------------------------------------------- in-line edits */

static const char *seqmap_why(int rc)
{
    switch (rc) {
    case MOS_SEQMAP_FULL: return "too many edits in flight on this side of the flow (at most 64 "
                                 "not yet acknowledged)";
    case MOS_SEQMAP_OVERLAP: return "it overlaps an earlier edit of the same bytes";
    case MOS_SEQMAP_NOMEM: return "out of memory";
    default: return "it removes nothing and inserts nothing, or inserts more than 65535 bytes";
    }
}

int mos_engine_edit(mos_engine_t *e, uint32_t i, uint32_t off, uint32_t del, const uint8_t *ins,
                    uint32_t ins_len, char *err, size_t errlen)
{
#define FAIL(...) do { snprintf(err, errlen, __VA_ARGS__); return -1; } while (0)
    if (i >= e->npkts || e->pref[i].slot == MOS_NIL) FAIL("the packet belongs to no tracked flow");
    mos_flow_t *f = slot_ptr(e, e->pref[i].slot);
    if (!(f->flags & (MOS_FF_LIVE | MOS_FF_DYING))) FAIL("the packet's flow is gone");
    const mos_pkt_t *p = &e->pkts[i];
    const mos_frame_t *fr = &e->frames[i];
    if (p->l3 < fr->data || p->l3 >= fr->data + fr->caplen)
        FAIL("the packet was reassembled from IP fragments: its length cannot change");
    if (p->flags & (MOS_TH_RST | MOS_TH_SYN)) FAIL("SYN and RST segments cannot change length");
    if (p->paylen != p->seglen) FAIL("the packet's payload was cut short by the capture");
    if (!p->paylen) FAIL("the packet has no payload");
    if (off > p->paylen || del > p->paylen - off)
        FAIL("bytes [%u, %u) are not inside the %u-byte payload", off, off + del, p->paylen);
    uint32_t at = p->seq + off;
    int after = !del && off == p->paylen; /* an insertion at the very end belongs to the last byte */
    int s = e->pref[i].side;
    if (f->edits && mos_seqmap_has(&f->edits->map[s], at, del, ins, ins_len, after))
        return 0; /* a handler seeing a retransmission makes the same edit again */
    const mos_ep_t *R = &f->ep[!s];
    uint32_t hi = del ? at + del : (after ? at : at + 1);
    if ((R->flags & MOS_EPF_ACKED) && seq_leq(hi, R->ack))
        return 0; /* the receiver has these bytes: it drops this copy whatever it says */
    if (seq_lt(after ? at - 1 : at, e->pref[i].snd_nxt))
        FAIL("payload offset %u was sent before (this packet retransmits it, and the receiver "
             "may hold it as it was): only new bytes can change length; overwrite keeps the length",
             off);
    mos_seqmap_t *m = f->edits ? &f->edits->map[s] : NULL;
    uint32_t cur = m ? mos_seqmap_rewrite_len(m, p->seq, p->paylen) : p->paylen;
    /* past the MTU the segment is sent in pieces, but one IP datagram must
     * be able to hold it before the cut */
    uint64_t ip = (uint64_t)p->l3hlen + p->thlen + cur + ins_len - del;
    if (ip > 65535)
        FAIL("the segment would grow to a %llu-byte IP datagram, over the 65535-byte limit",
             (unsigned long long)ip);
    if (!f->edits) {
        f->edits = calloc(1, sizeof *f->edits);
        if (!f->edits) FAIL("out of memory");
        e->edited_flows++;
        m = &f->edits->map[s];
    }
    int rc = mos_seqmap_add(m, at, del, ins, ins_len, after);
    if (rc < 0) FAIL("cannot edit bytes [%u, %u) of the payload: %s", off, off + del, seqmap_why(rc));
    return 0;
#undef FAIL
}

static uint8_t *arena_alloc(mos_engine_t *e, uint32_t n)
{
    if (e->arena_used + (uint64_t)n > e->arena_cap) {
        uint32_t cap = e->arena_cap ? e->arena_cap * 2 : 256u << 10;
        while (cap < n) cap *= 2;
        uint8_t *a = malloc(cap);
        if (!a) return NULL;
        if (e->arena && e->arena_used) { /* frames already built point into it */
            if (e->nretired == e->retiredcap) {
                uint32_t rc = e->retiredcap ? e->retiredcap * 2 : 8;
                uint8_t **r = realloc(e->retired, rc * sizeof *r);
                if (!r) {
                    free(a);
                    return NULL;
                }
                e->retired = r;
                e->retiredcap = rc;
            }
            e->retired[e->nretired++] = e->arena;
        } else {
            free(e->arena);
        }
        e->arena = a;
        e->arena_cap = cap;
        e->arena_used = 0;
    }
    uint8_t *out = e->arena + e->arena_used;
    e->arena_used += n;
    return out;
}

void mos_engine_set_mtu(mos_engine_t *e, uint32_t ip_mtu) { e->ip_mtu = ip_mtu; }
uint32_t mos_engine_mtu(const mos_engine_t *e) { return e->ip_mtu ? e->ip_mtu : 1500; }

int mos_engine_tx_frames(mos_engine_t *e, uint32_t i, const uint8_t *data, uint32_t len,
                         const uint8_t **out, uint32_t *out_len, int max)
{
    if (i >= e->npkts || e->pref[i].slot == MOS_NIL || max < 1) return 0;
    mos_flow_t *f = slot_ptr(e, e->pref[i].slot);
    if (!f->edits || !(f->flags & (MOS_FF_LIVE | MOS_FF_DYING))) return 0;
    int s = e->pref[i].side;
    const mos_seqmap_t *own = &f->edits->map[s], *peer = &f->edits->map[!s];
    uint16_t lt = e->frames[i].linktype;
    uint32_t cap = mos_rewrite_bound(own, len);
    uint8_t *buf = arena_alloc(e, cap);
    uint32_t n = buf ? mos_rewrite_segment(own, peer, lt, data, len, buf, cap) : UINT32_MAX;
    if (n == UINT32_MAX) goto fail;
    e->arena_used -= cap - n; /* give back what the frame did not use */
    if (!n) return 0;
    e->c.rewritten++;
    out[0] = buf;
    out_len[0] = n;
    if (n <= len) return 1; /* not grown: no new reason to cut it */
    /* grown past what the path takes: cut to the MTU and the receiver's MSS */
    mos_pkt_t q, o;
    if (mos_decode(lt, buf, n, &q) != MOS_DEC_TCP || mos_decode(lt, data, len, &o) != MOS_DEC_TCP)
        return 1;
    uint32_t hdrs = q.l3hlen + q.thlen, mtu = mos_engine_mtu(e);
    uint32_t max_pay = mtu > hdrs + 8 ? mtu - hdrs : 8;
    const mos_ep_t *R = &f->ep[!s];
    uint32_t opts = q.thlen - 20u; /* RFC 6691: the MSS counts no TCP options */
    if (R->mss && R->mss > opts && R->mss - opts < max_pay) max_pay = R->mss - opts;
    if (max_pay < o.paylen) max_pay = o.paylen; /* never cut below what was sent */
    if (q.paylen <= max_pay) return 1;
    uint32_t pieces = (q.paylen + max_pay - 1) / max_pay;
    uint32_t hdr = (uint32_t)(q.payload - buf);
    if (pieces > (uint32_t)max) goto fail;
    uint32_t lens[64];
    if (pieces > 64) goto fail;
    uint32_t scap = pieces * hdr + q.paylen;
    uint8_t *cut = arena_alloc(e, scap);
    /* arena_alloc may have moved to a new arena: buf (in the old one) stays valid */
    if (!cut || mos_split_segment(lt, buf, n, max_pay, cut, scap, lens, pieces) != pieces)
        goto fail;
    for (uint32_t k = 0, at = 0; k < pieces; k++) {
        out[k] = cut + at;
        out_len[k] = lens[k];
        at += lens[k];
    }
    e->c.split += pieces - 1;
    return (int)pieces;
fail:
    e->c.rewrite_failed++;
    return -1;
}

uint32_t mos_engine_edited_flows(const mos_engine_t *e) { return e->edited_flows; }

uint64_t mos_flow_acked(const mos_flow_t *f, int side) { return acked_off(f, side); }

uint32_t mos_flow_wire_seq(const mos_flow_t *f, int side, uint32_t seq)
{
    return f->edits ? mos_seqmap_out(&f->edits->map[side], seq) : seq;
}

/* ---------------------------------------------------------------- consumers */

static void cons_summary(mos_engine_t *e)
{
    e->cons_sides = e->pcons_sides = 0;
    e->cons_lookback[0] = e->cons_lookback[1] = 0;
    for (int i = 0; i < e->ncons; i++) {
        const mos_consumer_t *c = &e->cons[i];
        if (!c->data) continue;
        e->cons_sides |= c->sides & 3;
        if (c->packet) e->pcons_sides |= c->sides & 3;
        for (int side = 0; side < 2; side++)
            if (((c->sides >> side) & 1) && c->lookback > e->cons_lookback[side])
                e->cons_lookback[side] = c->lookback;
    }
}

int mos_engine_add_consumer(mos_engine_t *e, const mos_consumer_t *c)
{
    if (!c || !c->data || !(c->sides & 3)) return -1;
    int id = -1;
    for (int i = 0; i < e->ncons; i++)
        if (!e->cons[i].data) {
            id = i;
            break;
        }
    if (id < 0) {
        if (e->ncons >= MOS_MAX_CONSUMERS) return -1;
        id = e->ncons++;
    }
    int gained = c->sides & 3 & ~(e->reads | e->cons_sides);
    e->cons[id] = *c;
    e->cons[id].sides &= 3;
    cons_summary(e);
    /* live flows: feed from the next readable byte, not from what went by */
    for (uint32_t s = e->lru_head; s != MOS_NIL;) {
        mos_flow_t *f = slot_ptr(e, s);
        for (int side = 0; side < 2; side++)
            if (((c->sides >> side) & 1) && f->cons && f->cons->fed[side] != UINT64_MAX &&
                f->cons->fed[side] < f->ep[side].rbuf.head)
                f->cons->fed[side] = f->ep[side].rbuf.head;
        s = f->lru_next;
    }
    restore_buffers(e, gained);
    return id;
}

void mos_engine_remove_consumer(mos_engine_t *e, int id)
{
    if (id < 0 || id >= e->ncons || !e->cons[id].data) return;
    for (uint32_t s = 0; s < e->nslots; s++) {
        mos_flow_t *f = slot_ptr(e, s);
        if ((f->flags & (MOS_FF_LIVE | MOS_FF_DYING)) && f->cons) cons_end(e, f, s, id);
    }
    memset(&e->cons[id], 0, sizeof e->cons[id]);
    while (e->ncons && !e->cons[e->ncons - 1].data) e->ncons--;
    cons_summary(e);
}

void mos_cstream_note(mos_cstream_t *cs, uint32_t code, uint64_t a, uint64_t b)
{
    emit(cs->e, cs->f, cs->slot, MOS_EV_STREAM_NOTE, MOS_HK_RECV, cs->side, cs->pkt, cs->id, code,
         a, b);
}

void **mos_cstream_peer_state(mos_cstream_t *cs)
{
    return &cs->f->cons->st[cs->id][1 - (cs->side & 1)];
}

void *mos_flow_consumer_state(const mos_flow_t *f, int id, int side)
{
    if (!f->cons || id < 0 || id >= MOS_MAX_CONSUMERS) return NULL;
    return f->cons->st[id][side & 1];
}

int64_t mos_flow_consumed_to(const mos_flow_t *f, int side)
{
    if (!f->cons || f->cons->fed[side & 1] == UINT64_MAX) return -1;
    return (int64_t)f->cons->fed[side & 1];
}
