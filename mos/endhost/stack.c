/* stack.c: the end host's network stack (stack.h). */
#include "stack.h"

#include <stdlib.h>
#include <string.h>

#include "decode.h"

#define TXQ 4096            /* frames waiting to leave */
#define FRAME_MAX 1536
#define NEIGH_MAX 256
#define NEIGH_PENDING 8     /* frames held per unresolved neighbour */
#define NEIGH_TRIES 3
#define MS 1000000ull
#define MAX_LISTENERS 64

enum { SK_FREE = 0, SK_LISTEN = 1, SK_CONN = 2 };

typedef struct sock {
    uint8_t kind, ver;
    uint8_t user_closed;    /* the user closed it: it goes once TCP is CLOSED */
    uint8_t in_ready;       /* on the ready list */
    uint8_t accepted;       /* a connection handed to the user */
    uint8_t in_tw;          /* counted in TIME-WAIT */
    uint8_t out_blocked;    /* its output stopped at a full transmit queue */
    uint8_t dirty;          /* on the dirty list: its output is made at the next output */
    uint8_t laddr[16], raddr[16];
    uint16_t lport, rport;
    int32_t listener;       /* its listener until accepted (-1: none) */
    int32_t hnext;          /* hash chain */
    int32_t qnext;          /* accept queue link */
    /* listener */
    uint32_t backlog, nsyn, nacc;
    int32_t acc_head, acc_tail;
    uint64_t cookies_at;    /* 1 + when it last answered a SYN with a cookie (0: never) */
    int err;                /* SO_ERROR not reported yet */
    uint32_t sndbuf, rcvbuf; /* a listener's SO_SNDBUF / SO_RCVBUF for its children (0: default) */
    uint32_t last_events;
    uint64_t deadline;      /* the deadline last pushed to the heap */
    uint64_t tw_since;
    mos_tcp_host_t *tcp;
} sock_t;

typedef struct neigh {
    uint8_t used, ver, resolved, tries;
    uint8_t ip[16];
    uint8_t mac[6];
    uint64_t asked_at;
    uint32_t npend;
    uint16_t plen[NEIGH_PENDING];
    uint8_t *pend[NEIGH_PENDING];
} neigh_t;

typedef struct tentry { uint64_t at; int32_t sock; } tentry_t;

/* The connections' loss-recovery counters, summed (stats' tcp_*). */
typedef struct tcp_sums {
    uint64_t rexmits, fast_rexmits, timeouts, probes, undos, wnd_resends, rcvbuf_grows;
} tcp_sums_t;

struct mos_stack {
    mos_stack_cfg_t cfg;
    sock_t *socks;
    uint32_t nsocks;
    int32_t freelist;
    int32_t *hash;          /* connection hash: bucket -> first socket */
    uint32_t hmask;
    neigh_t neigh[NEIGH_MAX];
    uint8_t (*txq)[FRAME_MAX];
    uint16_t *txlen;
    uint32_t txhead, txn;
    int32_t *ready;
    uint32_t nready;
    int32_t *blocked;       /* sockets waiting for room in the transmit queue */
    uint32_t nblocked;
    /* Segments that arrive only mark their connection dirty: its ACK (or
     * SYN-ACK) is made when frames are next taken out, so a reply the
     * application writes meanwhile carries it (per-burst ACKs) */
    int32_t *dirty;
    uint32_t ndirty;
    uint8_t in_input;
    int32_t listeners[MAX_LISTENERS];
    uint32_t nlisteners;
    /* TIME-WAIT entries oldest first (a ring; entries whose socket left
     * TIME-WAIT meanwhile are skipped): the bound evicts in O(1) */
    struct { int32_t sock; uint64_t since; } *tw;
    uint32_t twhead, twn, twcap;
    tentry_t *heap;
    uint32_t nheap, capheap;
    uint16_t ip_id;
    uint16_t eph_next;
    uint8_t neigh_asking;   /* some neighbour was asked and has not answered: timers look */
    tcp_sums_t gone;        /* TCP counters of freed connections (stats' tcp_* sums) */
    mos_stack_stats_t st;
    mos_rbuf_pool_t pool;
    uint64_t sipkey[2];     /* SYN cookie MAC key, from cfg.seed */
};

/* ---------------------------------------------------------------- small helpers */

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static uint32_t tuple_hash(const mos_stack_t *st, uint8_t ver, const uint8_t *la, uint16_t lp,
                           const uint8_t *ra, uint16_t rp)
{
    uint64_t h = st->cfg.seed ^ ver;
    int n = ver == 4 ? 4 : 16;
    for (int i = 0; i < n; i += 4) {
        uint32_t a, b;
        memcpy(&a, la + i, 4);
        memcpy(&b, ra + i, 4);
        h = mix64(h ^ a ^ ((uint64_t)b << 32));
    }
    return (uint32_t)mix64(h ^ lp ^ ((uint64_t)rp << 16));
}

#define ROTL(x, b) (((x) << (b)) | ((x) >> (64 - (b))))

static void sip_rounds(uint64_t v[4], int n)
{
    while (n--) {
        v[0] += v[1]; v[1] = ROTL(v[1], 13); v[1] ^= v[0]; v[0] = ROTL(v[0], 32);
        v[2] += v[3]; v[3] = ROTL(v[3], 16); v[3] ^= v[2];
        v[0] += v[3]; v[3] = ROTL(v[3], 21); v[3] ^= v[0];
        v[2] += v[1]; v[1] = ROTL(v[1], 17); v[1] ^= v[2]; v[2] = ROTL(v[2], 32);
    }
}

/* SipHash-2-4 (Aumasson and Bernstein, 2012) of n 64-bit words: a keyed
 * PRF, so a SYN cookie's MAC cannot be computed without the key, as
 * RFC 4987 3.6 asks of the secret. */
static uint64_t siphash24(const uint64_t k[2], const uint64_t *m, unsigned n)
{
    uint64_t v[4] = {k[0] ^ 0x736f6d6570736575ull, k[1] ^ 0x646f72616e646f6dull,
                     k[0] ^ 0x6c7967656e657261ull, k[1] ^ 0x7465646279746573ull};
    for (unsigned i = 0; i <= n; i++) {
        uint64_t w = i < n ? m[i] : (uint64_t)(8u * n) << 56; /* last block: the length */
        v[3] ^= w;
        sip_rounds(v, 2);
        v[0] ^= w;
    }
    v[2] ^= 0xff;
    sip_rounds(v, 4);
    return v[0] ^ v[1] ^ v[2] ^ v[3];
}

static uint16_t csum_fold(uint32_t s)
{
    while (s >> 16) s = (s & 0xFFFF) + (s >> 16);
    return (uint16_t)~s;
}

static uint32_t csum_add(uint32_t s, const uint8_t *p, uint32_t n)
{
    for (; n > 1; p += 2, n -= 2) s += (uint32_t)(p[0] << 8 | p[1]);
    if (n) s += (uint32_t)(p[0] << 8);
    return s;
}

static inline void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static inline void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}
static inline uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

static int alen(uint8_t ver) { return ver == 4 ? 4 : 16; }

/* The worker a TCP segment between these ports is steered to, before the
 * modulo (mos/endhost/steer.py's fanout program computes the same). */
static uint32_t steer_hash(uint16_t a, uint16_t b)
{
    return ((uint32_t)(a ^ b) * 0x9E3779B1u) >> 16;
}

/* Is a one of our addresses (of that version)? */
static int ours(const mos_stack_t *st, uint8_t ver, const uint8_t *a)
{
    for (unsigned i = 0; i < st->cfg.naddrs; i++)
        if (st->cfg.addrs[i].ver == ver && !memcmp(st->cfg.addrs[i].addr, a, alen(ver)))
            return 1;
    return 0;
}

/* Does address a lie in m's prefix? */
static int in_prefix(const mos_stack_addr_t *m, const uint8_t *a)
{
    unsigned bits = m->prefix, k = 0;
    for (; bits >= 8; bits -= 8, k++)
        if (m->addr[k] != a[k]) return 0;
    return !bits || !((m->addr[k] ^ a[k]) & (0xFF00 >> bits));
}

static int on_link(const mos_stack_t *st, uint8_t ver, const uint8_t *a)
{
    for (unsigned i = 0; i < st->cfg.naddrs; i++)
        if (st->cfg.addrs[i].ver == ver && in_prefix(&st->cfg.addrs[i], a)) return 1;
    return ver == 6 && a[0] == 0xfe && (a[1] & 0xc0) == 0x80; /* link-local */
}

/* Our source address for a destination: one on its link, else the first. */
static const uint8_t *src_for(const mos_stack_t *st, uint8_t ver, const uint8_t *dst)
{
    const uint8_t *first = NULL;
    for (unsigned i = 0; i < st->cfg.naddrs; i++) {
        const mos_stack_addr_t *m = &st->cfg.addrs[i];
        if (m->ver != ver) continue;
        if (!first) first = m->addr;
        if (in_prefix(m, dst)) return m->addr;
    }
    return first;
}

/* ---------------------------------------------------------------- frames out */

static void tx_push(mos_stack_t *st, const uint8_t *f, uint32_t n)
{
    if (st->txn == TXQ || n > FRAME_MAX) {
        st->st.neigh_drops++;
        return;
    }
    uint32_t k = (st->txhead + st->txn) % TXQ;
    memcpy(st->txq[k], f, n);
    st->txlen[k] = (uint16_t)n;
    st->txn++;
}

static neigh_t *neigh_find(mos_stack_t *st, uint8_t ver, const uint8_t *ip)
{
    for (int i = 0; i < NEIGH_MAX; i++)
        if (st->neigh[i].used && st->neigh[i].ver == ver && !memcmp(st->neigh[i].ip, ip, alen(ver)))
            return &st->neigh[i];
    return NULL;
}

static void neigh_drop_pending(neigh_t *n)
{
    for (uint32_t k = 0; k < n->npend; k++) free(n->pend[k]);
    n->npend = 0;
}

static neigh_t *neigh_new(mos_stack_t *st, uint8_t ver, const uint8_t *ip)
{
    neigh_t *victim = NULL;
    for (int i = 0; i < NEIGH_MAX; i++) {
        neigh_t *n = &st->neigh[i];
        if (!n->used) { victim = n; break; }
        /* one nobody answered goes first: SYN-ACKs to spoofed on-link
         * sources must not push out the hosts we talk to */
        if (!victim || (victim->resolved && !n->resolved) ||
            (victim->resolved == n->resolved && n->asked_at < victim->asked_at))
            victim = n;
    }
    neigh_drop_pending(victim);
    memset(victim, 0, sizeof *victim);
    victim->used = 1;
    victim->ver = ver;
    memcpy(victim->ip, ip, alen(ver));
    return victim;
}

/* Learn (or refresh) a neighbour's MAC; frames waiting for it leave. */
static void neigh_learn(mos_stack_t *st, uint8_t ver, const uint8_t *ip, const uint8_t *mac,
                        int create)
{
    neigh_t *n = neigh_find(st, ver, ip);
    if (!n) {
        if (!create) return;
        n = neigh_new(st, ver, ip);
    }
    memcpy(n->mac, mac, 6);
    n->resolved = 1;
    n->tries = 0;
    for (uint32_t k = 0; k < n->npend; k++) {
        memcpy(n->pend[k], mac, 6);
        tx_push(st, n->pend[k], n->plen[k]);
        free(n->pend[k]);
    }
    n->npend = 0;
}

static void solicit(mos_stack_t *st, neigh_t *n, uint64_t now);

/* A frame whose Ethernet destination is still to be filled in: to the next hop. */
static void send_ip(mos_stack_t *st, uint8_t ver, const uint8_t *dst, uint8_t *f, uint32_t len,
                    uint64_t now)
{
    const uint8_t *hop = dst;
    if (!on_link(st, ver, dst)) {
        if (ver == 4 && st->cfg.has_gw4) hop = st->cfg.gw4;
        else if (ver == 6 && st->cfg.has_gw6) hop = st->cfg.gw6;
        else {
            st->st.no_route++;
            return;
        }
    }
    neigh_t *n = neigh_find(st, ver, hop);
    if (n && n->resolved) {
        memcpy(f, n->mac, 6);
        tx_push(st, f, len);
        return;
    }
    if (!n) n = neigh_new(st, ver, hop);
    if (n->npend < NEIGH_PENDING && (n->pend[n->npend] = malloc(len))) {
        memcpy(n->pend[n->npend], f, len);
        n->plen[n->npend++] = (uint16_t)len;
    } else {
        st->st.neigh_drops++;
    }
    if (!n->asked_at || now - n->asked_at >= (uint64_t)st->cfg.neigh_timeout_ms * MS)
        solicit(st, n, now);
}

/* Ethernet + IP header for `proto` with plen bytes after it; returns the
 * offset of the layer-4 header. */
static uint32_t ip_header(mos_stack_t *st, uint8_t *f, uint8_t ver, const uint8_t *src,
                          const uint8_t *dst, uint8_t proto, uint32_t plen, uint8_t ttl)
{
    memcpy(f + 6, st->cfg.mac, 6);
    if (ver == 4) {
        put16(f + 12, 0x0800);
        uint8_t *ip = f + 14;
        ip[0] = 0x45;
        ip[1] = 0;
        put16(ip + 2, (uint16_t)(20 + plen));
        put16(ip + 4, st->ip_id++);
        put16(ip + 6, 0x4000); /* DF: path MTU discovery (RFC 1191) */
        ip[8] = ttl;
        ip[9] = proto;
        put16(ip + 10, 0);
        memcpy(ip + 12, src, 4);
        memcpy(ip + 16, dst, 4);
        put16(ip + 10, csum_fold(csum_add(0, ip, 20)));
        return 34;
    }
    put16(f + 12, 0x86DD);
    uint8_t *ip = f + 14;
    put32(ip, 0x60000000u);
    put16(ip + 4, (uint16_t)plen);
    ip[6] = proto;
    ip[7] = ttl;
    memcpy(ip + 8, src, 16);
    memcpy(ip + 24, dst, 16);
    return 54;
}

static uint32_t pseudo_sum(uint8_t ver, const uint8_t *src, const uint8_t *dst, uint8_t proto,
                           uint32_t len)
{
    uint32_t s = csum_add(0, src, (uint32_t)alen(ver));
    s = csum_add(s, dst, (uint32_t)alen(ver));
    return s + proto + (len >> 16) + (len & 0xFFFF);
}

/* A TCP segment out of connection `sk` (or a RST for no connection). */
static void send_tcp(mos_stack_t *st, uint8_t ver, const uint8_t *src, const uint8_t *dst,
                     uint16_t sport, uint16_t dport, const mos_tcp_host_out_t *o,
                     const mos_tcp_host_t *h, uint64_t now)
{
    uint8_t f[FRAME_MAX];
    uint8_t opt[40];
    int ol = mos_tcp_write_options(&o->opt, opt, sizeof opt);
    if (ol < 0) ol = 0;
    uint32_t tl = 20 + (uint32_t)ol + o->len;
    uint32_t l4 = ip_header(st, f, ver, src, dst, 6, tl, 64);
    if (l4 + tl > sizeof f) return;
    uint8_t *t = f + l4;
    put16(t, sport);
    put16(t + 2, dport);
    put32(t + 4, o->seq);
    put32(t + 8, o->ack);
    t[12] = (uint8_t)(((20 + ol) / 4) << 4);
    t[13] = o->flags;
    put16(t + 14, o->wnd);
    put16(t + 16, 0);
    put16(t + 18, 0);
    memcpy(t + 20, opt, (size_t)ol);
    if (o->len && h) mos_tcp_host_copy_tx(h, o->data_off, t + 20 + ol, o->len);
    put16(t + 16, csum_fold(csum_add(pseudo_sum(ver, src, dst, 6, tl), t, tl)));
    st->st.tcp_out++;
    send_ip(st, ver, dst, f, l4 + tl, now);
}

/* ---------------------------------------------------------------- neighbours */

/* An ARP packet (RFC 826) from us: op 1 request (eth_dst broadcast, tha
 * zero), op 2 reply. */
static void arp_out(mos_stack_t *st, uint16_t op, const uint8_t *eth_dst, const uint8_t *spa,
                    const uint8_t *tha, const uint8_t *tpa)
{
    uint8_t f[60];
    memset(f, 0, sizeof f);
    memcpy(f, eth_dst, 6);
    memcpy(f + 6, st->cfg.mac, 6);
    put16(f + 12, 0x0806);
    uint8_t *a = f + 14;
    put16(a, 1);
    put16(a + 2, 0x0800);
    a[4] = 6;
    a[5] = 4;
    put16(a + 6, op);
    memcpy(a + 8, st->cfg.mac, 6);
    memcpy(a + 14, spa, 4);
    if (tha) memcpy(a + 18, tha, 6);
    memcpy(a + 24, tpa, 4);
    tx_push(st, f, 60);
    st->st.arp_out++;
}

static void solicit(mos_stack_t *st, neigh_t *n, uint64_t now)
{
    uint8_t f[128];
    memset(f, 0, sizeof f);
    n->asked_at = now ? now : 1;
    n->tries++;
    st->neigh_asking = 1;
    const uint8_t *src = src_for(st, n->ver, n->ip);
    if (!src) return;
    if (n->ver == 4) {
        static const uint8_t bcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
        arp_out(st, 1, bcast, src, NULL, n->ip);
        return;
    }
    /* neighbour solicitation to the solicited-node address (RFC 4861 7.2.2) */
    uint8_t dst[16] = {0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, n->ip[13], n->ip[14], n->ip[15]};
    uint32_t l4 = ip_header(st, f, 6, src, dst, 58, 32, 255);
    f[0] = 0x33; f[1] = 0x33; memcpy(f + 2, dst + 12, 4);
    uint8_t *m = f + l4;
    m[0] = 135;
    memcpy(m + 8, n->ip, 16);
    m[24] = 1; m[25] = 1; /* source link-layer address option */
    memcpy(m + 26, st->cfg.mac, 6);
    put16(m + 2, csum_fold(csum_add(pseudo_sum(6, src, dst, 58, 32), m, 32)));
    tx_push(st, f, l4 + 32);
    st->st.nd_out++;
}

static void arp_in(mos_stack_t *st, const uint8_t *a, uint32_t n, uint64_t now)
{
    (void)now;
    if (n < 28 || get16(a) != 1 || get16(a + 2) != 0x0800 || a[4] != 6 || a[5] != 4) return;
    st->st.arp_in++;
    uint16_t op = get16(a + 6);
    const uint8_t *sha = a + 8, *spa = a + 14, *tpa = a + 24;
    int for_us = ours(st, 4, tpa);
    /* RFC 826: update an entry we have; create one if the request is for us */
    neigh_learn(st, 4, spa, sha, for_us);
    if (op == 1 && for_us && st->cfg.responder) arp_out(st, 2, sha, tpa, sha, spa);
}

/* ICMPv6: echo, neighbour solicitation and advertisement. */
static void icmp6_in(mos_stack_t *st, const mos_pkt_t *p, const uint8_t *m, uint32_t n,
                     const uint8_t *frame, uint64_t now)
{
    if (n < 8) return;
    if (csum_fold(csum_add(pseudo_sum(6, p->src, p->dst, 58, n), m, n)) != 0) {
        st->st.bad_checksum++;
        return;
    }
    uint8_t type = m[0];
    if (type == 135 && n >= 24) { /* NS */
        st->st.nd_in++;
        const uint8_t *target = m + 8;
        if (!ours(st, 6, target)) return;
        for (uint32_t o = 24; o + 8 <= n && m[o + 1]; o += m[o + 1] * 8u)
            if (m[o] == 1) neigh_learn(st, 6, p->src, m + o + 2, 1);
        if (!st->cfg.responder) return;
        uint8_t f[128];
        memset(f, 0, sizeof f);
        const uint8_t *dst = p->src;
        uint8_t allnodes[16] = {0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
        int dad = 1;
        for (int i = 0; i < 16; i++) dad &= p->src[i] == 0; /* DAD probe: to all nodes */
        if (dad) dst = allnodes;
        uint32_t l4 = ip_header(st, f, 6, target, dst, 58, 32, 255);
        if (dad) { f[0] = 0x33; f[1] = 0x33; memcpy(f + 2, allnodes + 12, 4); }
        else memcpy(f, frame + 6, 6);
        uint8_t *a = f + l4;
        a[0] = 136;
        a[4] = dad ? 0x20 : 0x60; /* solicited, override */
        memcpy(a + 8, target, 16);
        a[24] = 2; a[25] = 1; /* target link-layer address */
        memcpy(a + 26, st->cfg.mac, 6);
        put16(a + 2, csum_fold(csum_add(pseudo_sum(6, target, dst, 58, 32), a, 32)));
        tx_push(st, f, l4 + 32);
        st->st.nd_out++;
        return;
    }
    if (type == 136 && n >= 24) { /* NA */
        st->st.nd_in++;
        for (uint32_t o = 24; o + 8 <= n && m[o + 1]; o += m[o + 1] * 8u)
            if (m[o] == 2) neigh_learn(st, 6, m + 8, m + o + 2, 0);
        return;
    }
    if (type == 128 && ours(st, 6, p->dst) && st->cfg.responder) { /* echo (RFC 4443 4.1) */
        uint8_t f[FRAME_MAX];
        if (n + 54 > sizeof f) return;
        uint32_t l4 = ip_header(st, f, 6, p->dst, p->src, 58, n, 64);
        memcpy(f + l4, m, n);
        f[l4] = 129;
        put16(f + l4 + 2, 0);
        put16(f + l4 + 2, csum_fold(csum_add(pseudo_sum(6, p->dst, p->src, 58, n), f + l4, n)));
        st->st.echo_replies++;
        send_ip(st, 6, p->src, f, l4 + n, now);
    }
}

static void icmp4_in(mos_stack_t *st, const mos_pkt_t *p, const uint8_t *m, uint32_t n,
                     uint64_t now)
{
    if (n < 8 || m[0] != 8 || !ours(st, 4, p->dst) || !st->cfg.responder) return;
    if (csum_fold(csum_add(0, m, n)) != 0) {
        st->st.bad_checksum++;
        return;
    }
    uint8_t f[FRAME_MAX];
    if (n + 34 > sizeof f) return;
    uint32_t l4 = ip_header(st, f, 4, p->dst, p->src, 1, n, 64);
    memcpy(f + l4, m, n);
    f[l4] = 0; /* echo reply (RFC 792) */
    put16(f + l4 + 2, 0);
    put16(f + l4 + 2, csum_fold(csum_add(0, f + l4, n)));
    st->st.echo_replies++;
    send_ip(st, 4, p->src, f, l4 + n, now);
}

/* ---------------------------------------------------------------- sockets */

static sock_t *sk_get(const mos_stack_t *st, int s)
{
    if (s < 0 || (uint32_t)s >= st->nsocks || st->socks[s].kind == SK_FREE) return NULL;
    return &st->socks[s];
}

static int sk_alloc(mos_stack_t *st)
{
    if (st->freelist < 0) return -MOS_SK_EMFILE;
    int s = st->freelist;
    st->freelist = st->socks[s].hnext;
    /* the list memberships of the slot's last life stay: its entries on the
     * ready, blocked and dirty lists are still there, and a second entry
     * would overrun a list sized for one per slot (found by fuzz_stack) */
    sock_t *k = &st->socks[s];
    uint8_t dirty = k->dirty, in_ready = k->in_ready, out_blocked = k->out_blocked;
    memset(k, 0, sizeof *k);
    k->dirty = dirty;
    k->in_ready = in_ready;
    k->out_blocked = out_blocked;
    st->socks[s].listener = st->socks[s].hnext = st->socks[s].qnext = -1;
    st->socks[s].acc_head = st->socks[s].acc_tail = -1;
    return s;
}

static void mark_ready(mos_stack_t *st, int s)
{
    sock_t *k = &st->socks[s];
    if (k->in_ready || !st->ready) return;
    k->in_ready = 1;
    st->ready[st->nready++] = s;
}

static void hash_link(mos_stack_t *st, int s)
{
    sock_t *k = &st->socks[s];
    uint32_t b = tuple_hash(st, k->ver, k->laddr, k->lport, k->raddr, k->rport) & st->hmask;
    k->hnext = st->hash[b];
    st->hash[b] = s;
}

static void hash_unlink(mos_stack_t *st, int s)
{
    sock_t *k = &st->socks[s];
    uint32_t b = tuple_hash(st, k->ver, k->laddr, k->lport, k->raddr, k->rport) & st->hmask;
    for (int32_t *pp = &st->hash[b]; *pp >= 0; pp = &st->socks[*pp].hnext)
        if (*pp == s) {
            *pp = k->hnext;
            return;
        }
}

static int conn_find(const mos_stack_t *st, uint8_t ver, const uint8_t *la, uint16_t lp,
                     const uint8_t *ra, uint16_t rp)
{
    uint32_t b = tuple_hash(st, ver, la, lp, ra, rp) & st->hmask;
    for (int32_t s = st->hash[b]; s >= 0; s = st->socks[s].hnext) {
        const sock_t *k = &st->socks[s];
        if (k->ver == ver && k->lport == lp && k->rport == rp &&
            !memcmp(k->laddr, la, alen(ver)) && !memcmp(k->raddr, ra, alen(ver)))
            return s;
    }
    return -1;
}

static int listener_find(const mos_stack_t *st, uint8_t ver, uint16_t port)
{
    for (uint32_t i = 0; i < st->nlisteners; i++) {
        int32_t s = st->listeners[i];
        const sock_t *k = &st->socks[s];
        if (k->lport == port && (!k->ver || k->ver == ver)) return (int)s;
    }
    return -1;
}

/* A connection socket for a 4-tuple (16-byte addresses), hashed; -1 if no
 * socket or no memory is left. */
static int conn_new(mos_stack_t *st, uint8_t ver, const uint8_t *la, uint16_t lp,
                    const uint8_t *ra, uint16_t rp)
{
    int s = sk_alloc(st);
    if (s < 0) return -1;
    sock_t *k = &st->socks[s];
    k->tcp = malloc(sizeof *k->tcp);
    if (!k->tcp || mos_tcp_host_init(k->tcp, &st->cfg.tcp, &st->pool)) {
        free(k->tcp);
        k->tcp = NULL;
        k->hnext = st->freelist;
        st->freelist = s;
        return -1;
    }
    k->kind = SK_CONN;
    k->ver = ver;
    memcpy(k->laddr, la, 16);
    memcpy(k->raddr, ra, 16);
    k->lport = lp;
    k->rport = rp;
    st->st.conns++;
    hash_link(st, s);
    return s;
}

/* A connection's loss-recovery counters added to sum (stats' tcp_*). */
static void tcp_counts(const mos_tcp_host_t *t, tcp_sums_t *sum)
{
    sum->rexmits += t->rexmits;
    sum->fast_rexmits += t->fast_rexmits;
    sum->timeouts += t->timeouts;
    sum->probes += t->probes;
    sum->undos += t->undos;
    sum->wnd_resends += t->wupd_resends;
    sum->rcvbuf_grows += t->rcvbuf_grows;
}

static void sk_free(mos_stack_t *st, int s)
{
    sock_t *k = &st->socks[s];
    if (k->kind == SK_CONN) {
        hash_unlink(st, s);
        if (k->in_tw) st->st.time_wait--;
        if (k->tcp) {
            tcp_counts(k->tcp, &st->gone);
            mos_tcp_host_free(k->tcp);
            free(k->tcp);
        }
        st->st.conns--;
    } else if (k->kind == SK_LISTEN) {
        st->st.listeners--;
        for (uint32_t i = 0; i < st->nlisteners; i++)
            if (st->listeners[i] == s) {
                st->listeners[i] = st->listeners[--st->nlisteners];
                break;
            }
    }
    k->kind = SK_FREE;
    k->tcp = NULL;
    k->hnext = st->freelist;
    st->freelist = s;
}

static void heap_push(mos_stack_t *st, uint64_t at, int32_t s)
{
    if (st->nheap == st->capheap) {
        uint32_t cap = st->capheap ? st->capheap * 2 : 1024;
        tentry_t *h = realloc(st->heap, cap * sizeof *h);
        if (!h) return;
        st->heap = h;
        st->capheap = cap;
    }
    uint32_t i = st->nheap++;
    while (i) {
        uint32_t p = (i - 1) / 2;
        if (st->heap[p].at <= at) break;
        st->heap[i] = st->heap[p];
        i = p;
    }
    st->heap[i].at = at;
    st->heap[i].sock = s;
}

static void heap_pop(mos_stack_t *st)
{
    tentry_t last = st->heap[--st->nheap];
    uint32_t i = 0;
    for (;;) {
        uint32_t c = 2 * i + 1;
        if (c >= st->nheap) break;
        if (c + 1 < st->nheap && st->heap[c + 1].at < st->heap[c].at) c++;
        if (st->heap[c].at >= last.at) break;
        st->heap[i] = st->heap[c];
        i = c;
    }
    if (st->nheap) st->heap[i] = last;
}

/* Where a listener's child goes when its handshake completed. */
static void child_established(mos_stack_t *st, int s)
{
    sock_t *k = &st->socks[s];
    sock_t *l = sk_get(st, k->listener);
    if (!l || l->kind != SK_LISTEN) return;
    l->nsyn--;
    if (l->nacc >= l->backlog) { /* the accept queue is full: the connection is refused */
        st->st.accept_overflow++;
        mos_tcp_host_abort(k->tcp);
        k->listener = -1;
        k->user_closed = 1;
        return;
    }
    l->nacc++;
    k->qnext = -1;
    if (l->acc_tail >= 0) st->socks[l->acc_tail].qnext = s;
    else l->acc_head = s;
    l->acc_tail = s;
    mark_ready(st, k->listener);
}

/* After anything happened to a connection: its output, readiness, end. */
static void settle(mos_stack_t *st, int s, int ev, uint64_t now)
{
    sock_t *k = &st->socks[s];
    mos_tcp_host_t *h = k->tcp;
    mos_tcp_host_out_t o;
    if ((ev & MOS_HOST_EV_CONNECTED) && k->listener >= 0 && !k->accepted) child_established(st, s);
    if (st->in_input && h->me.state != MOS_TCPS_CLOSED) { /* a closed one goes now: its RST first */
        if (!k->dirty) {
            k->dirty = 1;
            st->dirty[st->ndirty++] = s;
        }
    } else {
        while (st->txn < TXQ && mos_tcp_host_output(h, now, &o))
            send_tcp(st, k->ver, k->laddr, k->raddr, k->lport, k->rport, &o, h, now);
        if (st->txn == TXQ && !k->out_blocked && st->blocked) {
            /* the queue is full: this socket goes on when frames have left */
            k->out_blocked = 1;
            st->blocked[st->nblocked++] = s;
        }
    }
    if (h->err && !k->err) k->err = h->err;
    uint8_t state = h->me.state;
    if (state == MOS_TCPS_TIME_WAIT && !k->in_tw) {
        k->in_tw = 1;
        k->tw_since = now;
        st->st.time_wait++;
        while (st->st.time_wait > st->cfg.max_time_wait && st->twn) { /* bounded: the oldest goes */
            int32_t o = st->tw[st->twhead].sock;
            uint64_t since = st->tw[st->twhead].since;
            st->twhead = (st->twhead + 1) % st->twcap;
            st->twn--;
            sock_t *ok = sk_get(st, o);
            if (ok && ok->kind == SK_CONN && ok->in_tw && ok->tw_since == since && o != s) {
                st->st.time_wait_evicted++;
                sk_free(st, o);
            }
        }
        if (st->twn == st->twcap) { /* full of entries gone stale: drop the oldest */
            st->twhead = (st->twhead + 1) % st->twcap;
            st->twn--;
        }
        st->tw[(st->twhead + st->twn) % st->twcap].sock = s;
        st->tw[(st->twhead + st->twn) % st->twcap].since = now;
        st->twn++;
    }
    if (state == MOS_TCPS_CLOSED) {
        if (k->listener >= 0 && !k->accepted) { /* died in a listener's queues */
            sock_t *l = sk_get(st, k->listener);
            if (l && l->kind == SK_LISTEN) {
                /* in the accept queue: unlink; else it was a SYN queue entry */
                int32_t *pp = &l->acc_head, prev = -1, found = 0;
                for (; *pp >= 0; prev = *pp, pp = &st->socks[*pp].qnext)
                    if (*pp == s) {
                        *pp = k->qnext;
                        if (l->acc_tail == s) l->acc_tail = prev;
                        l->nacc--;
                        found = 1;
                        break;
                    }
                if (!found && !(ev & MOS_HOST_EV_CONNECTED)) l->nsyn--;
            }
            sk_free(st, s);
            return;
        }
        if (k->user_closed) {
            sk_free(st, s);
            return;
        }
    }
    uint64_t d = mos_tcp_host_deadline(h);
    if (d && d != k->deadline) heap_push(st, d, s);
    k->deadline = d;
    if (k->accepted || k->listener < 0) {
        uint32_t e = mos_stack_events(st, s);
        if (e != k->last_events) {
            k->last_events = e;
            mark_ready(st, s);
        }
    }
}

/* A reset for a segment that reached no connection (RFC 9293 3.10.7.1). */
static void reset_for(mos_stack_t *st, const mos_pkt_t *p, uint64_t now)
{
    if (p->flags & MOS_TH_RST) return;
    mos_tcp_host_out_t o;
    memset(&o, 0, sizeof o);
    if (p->flags & MOS_TH_ACK) {
        o.seq = p->ack;
        o.flags = MOS_TH_RST;
    } else {
        o.seq = 0;
        o.ack = p->seq + p->seglen + ((p->flags & MOS_TH_SYN) ? 1 : 0) +
                ((p->flags & MOS_TH_FIN) ? 1 : 0);
        o.flags = MOS_TH_RST | MOS_TH_ACK;
    }
    st->st.rst_out++;
    send_tcp(st, p->ipver, p->dst, p->src, p->dport, p->sport, &o, NULL, now);
}

static uint32_t isn_for(const mos_stack_t *st, uint8_t ver, const uint8_t *la, uint16_t lp,
                        const uint8_t *ra, uint16_t rp, uint64_t now)
{
    /* RFC 6528: a secret hash of the 4-tuple plus a 4 us clock */
    return tuple_hash(st, ver, la, lp, ra, rp) + (uint32_t)(now / 4000);
}

/* ---------------------------------------------------------------- SYN cookies
 *
 * RFC 4987 3.6: once a listener's SYN queue is full, its SYN-ACK's ISN is
 * a cookie and nothing is kept; the ACK that completes the handshake
 * brings it back (SEG.ACK - 1) and the connection is made from it.
 *
 *   bits 31-30  a 64 s counter's low bits: the cookie's age
 *   bits 29-3   MAC: SipHash-2-4 keyed from cfg.seed over the 4-tuple,
 *               the peer's ISN (SEG.SEQ - 1), the whole counter, and the
 *               option bits below and in our TSval
 *   bits 2-0    the peer's MSS as an index in a table, rounded down
 *
 * With timestamps (both sides) our TSval's low 5 bits hold the peer's
 * window shift (15: none) and SACK-permitted; its ACK's TSecr returns them
 * (Linux's idea).  Without timestamps the SYN-ACK offers neither option,
 * so the connection runs without them.
 */
#define COOKIE_PERIOD (64000ull * MS)
#define COOKIE_MAX_AGE 1        /* counter steps a cookie is taken after its own */
#define COOKIE_TS_MASK 31u
#define COOKIE_NO_WS 15u
#define COOKIE_MAC_MASK 0x7FFFFFFu

/* MSS values a cookie can name; 64 first: even the smallest MSS a host
 * takes is never exceeded */
static const uint16_t cookie_mss4[8] = {64, 536, 1200, 1360, 1400, 1440, 1460, 8960};
static const uint16_t cookie_mss6[8] = {64, 536, 1220, 1280, 1380, 1420, 1440, 8940};

/* The MAC of a cookie for the segment p's 4-tuple (a SYN or its ACK). */
static uint32_t cookie_mac(const mos_stack_t *st, const mos_pkt_t *p, uint32_t peer_isn,
                           uint64_t count, uint32_t extra)
{
    uint64_t m[6];
    unsigned n = 2;
    m[0] = (uint64_t)peer_isn << 32 | (uint32_t)p->dport << 16 | p->sport;
    m[1] = count << 16 | (uint32_t)p->ipver << 12 | extra;
    for (int i = 0; i < alen(p->ipver); i += 8) {
        uint64_t a = 0, b = 0;
        memcpy(&a, p->dst + i, p->ipver == 4 ? 4 : 8);
        memcpy(&b, p->src + i, p->ipver == 4 ? 4 : 8);
        m[n++] = p->ipver == 4 ? a << 32 | b : a;
        if (p->ipver == 6) m[n++] = b;
    }
    return (uint32_t)siphash24(st->sipkey, m, n) & COOKIE_MAC_MASK;
}

/* Our TSval carrying the option bits: below our clock, never ahead of it,
 * so later TSvals still grow (RFC 7323 5.4). */
static uint32_t cookie_tsval(const mos_stack_t *st, uint32_t bits, uint64_t now)
{
    uint32_t clock = st->cfg.tcp.ts_base + (uint32_t)(now / MS);
    uint32_t v = (clock & ~COOKIE_TS_MASK) | bits;
    return (int32_t)(v - clock) > 0 ? v - (COOKIE_TS_MASK + 1) : v;
}

/* Answer the SYN p with a cookie SYN-ACK; nothing is kept. */
static void syn_cookie(mos_stack_t *st, sock_t *lk, const mos_pkt_t *p,
                       const mos_tcp_seg_t *seg, uint64_t now)
{
    const mos_tcp_opts_t *so = &p->tcpopt;
    const uint16_t *tab = p->ipver == 4 ? cookie_mss4 : cookie_mss6;
    /* no MSS option: the default, 536 or 1220 (RFC 9293 3.7.1) */
    uint32_t mss = (so->opts & MOS_OPT_MSS) ? so->mss : p->ipver == 4 ? 536 : 1220;
    uint32_t idx = 7, extra, tsval = 0;
    while (idx && tab[idx] > mss) idx--;
    extra = idx;
    if (st->cfg.tcp.ts && (so->opts & MOS_OPT_TS)) {
        uint32_t bits = ((so->opts & MOS_OPT_WSCALE) ? so->wscale : COOKIE_NO_WS) |
                        ((st->cfg.tcp.sack && (so->opts & MOS_OPT_SACKOK)) ? 16u : 0u);
        tsval = cookie_tsval(st, bits, now);
        extra |= 8u | bits << 4;
    }
    uint64_t count = now / COOKIE_PERIOD;
    uint32_t iss = (uint32_t)(count & 3) << 30 | cookie_mac(st, p, p->seq, count, extra) << 3 | idx;
    mos_tcp_host_cfg_t cfg = st->cfg.tcp;
    if (lk->rcvbuf) cfg.rcvbuf = lk->rcvbuf; /* the window its children offer */
    mos_tcp_host_out_t o;
    mos_tcp_host_synack(&cfg, seg, iss, tsval, &o);
    lk->cookies_at = now + 1; /* 0 stays "never" */
    st->st.syncookies_sent++;
    send_tcp(st, p->ipver, p->dst, p->src, p->dport, p->sport, &o, NULL, now);
}

/* Is the ACK p's SEG.ACK - 1 a cookie we made lately?  Then o is what it
 * remembers of the SYN. */
static int cookie_valid(const mos_stack_t *st, const mos_pkt_t *p, uint64_t now,
                        mos_tcp_syn_opts_t *o)
{
    uint32_t c = p->ack - 1, idx = c & 7, extra = idx, bits = 0;
    uint64_t count = now / COOKIE_PERIOD, age = (count - (c >> 30)) & 3;
    if (age > COOKIE_MAX_AGE || age > count) return 0;
    int ts = st->cfg.tcp.ts && (p->tcpopt.opts & MOS_OPT_TS);
    if (ts) {
        bits = p->tcpopt.tsecr & COOKIE_TS_MASK;
        extra |= 8u | bits << 4;
    }
    if (cookie_mac(st, p, p->seq - 1, count - age, extra) != ((c >> 3) & COOKIE_MAC_MASK))
        return 0;
    o->mss = (p->ipver == 4 ? cookie_mss4 : cookie_mss6)[idx];
    o->ts = (uint8_t)ts;
    o->wscale = ts && (bits & 15) != COOKIE_NO_WS ? (uint8_t)(bits & 15) : MOS_TCP_NO_WSCALE;
    o->sack = ts && (bits & 16);
    return 1;
}

/* An ACK to a listener with no connection for it: a cookie coming back?
 * 1 if taken (a connection made, or dropped for a full accept queue). */
static int cookie_ack(mos_stack_t *st, int l, const mos_pkt_t *p, const mos_tcp_seg_t *seg,
                      uint64_t now)
{
    sock_t *lk = &st->socks[l];
    mos_tcp_syn_opts_t o;
    /* only while the listener sends cookies (as Linux): an ACK at other
     * times costs no hash, and guessing has no chance */
    if (!st->cfg.syncookies || !lk->cookies_at || now + 1 - lk->cookies_at > 2 * COOKIE_PERIOD)
        return 0;
    if (!cookie_valid(st, p, now, &o)) {
        st->st.syncookies_failed++;
        return 0;
    }
    if (lk->nacc >= lk->backlog) { /* dropped, as Linux: a retransmission may find room */
        st->st.accept_overflow++;
        return 1;
    }
    int c = conn_new(st, p->ipver, p->dst, p->dport, p->src, p->sport);
    if (c < 0) {
        st->st.accept_overflow++;
        return 1;
    }
    st->socks[c].listener = l;
    if (lk->sndbuf || lk->rcvbuf) /* before the handshake: the window our SYN-ACK gave */
        mos_tcp_host_set_buffers(st->socks[c].tcp, lk->sndbuf, lk->rcvbuf);
    lk->nsyn++; /* counted as a SYN queue entry until child_established moves it */
    int ev = mos_tcp_host_accept_cookie(st->socks[c].tcp, seg, p->paylen ? p->payload : NULL, &o,
                                        p->ack - 1, now);
    if (ev < 0 || !(ev & MOS_HOST_EV_CONNECTED)) { /* not a handshake after all: as forged */
        lk->nsyn--;
        sk_free(st, c);
        st->st.syncookies_failed++;
        return 0;
    }
    st->st.syncookies_ok++;
    settle(st, c, ev, now);
    return 1;
}

/* A SYN for listener l: a SYN-RECEIVED entry in its SYN queue, or a cookie
 * once that is full (RFC 4987 3.6), or nothing (the client retries). */
static void syn_in(mos_stack_t *st, int l, const mos_pkt_t *p, const mos_tcp_seg_t *seg,
                   uint64_t now)
{
    sock_t *lk = &st->socks[l];
    int full = lk->nsyn + lk->nacc >= lk->backlog + lk->backlog / 2 + 1 || st->freelist < 0;
    if (st->cfg.syncookies == 2 || (full && st->cfg.syncookies)) {
        /* a full accept queue would drop the cookie's connection: the
         * SYN goes now (as Linux) */
        if (lk->nacc >= lk->backlog) st->st.syn_dropped++;
        else syn_cookie(st, lk, p, seg, now);
        return;
    }
    int c = full ? -1 : conn_new(st, p->ipver, p->dst, p->dport, p->src, p->sport);
    if (c < 0) {
        st->st.syn_dropped++;
        return;
    }
    sock_t *k = &st->socks[c];
    k->listener = l;
    if (lk->sndbuf || lk->rcvbuf) /* the listener's buffer sizes, as Linux children inherit */
        mos_tcp_host_set_buffers(k->tcp, lk->sndbuf, lk->rcvbuf);
    lk->nsyn++;
    mos_tcp_host_accept(k->tcp, seg, isn_for(st, k->ver, k->laddr, k->lport, k->raddr,
                                             k->rport, now), now);
    settle(st, c, 0, now);
}

static void tcp_in(mos_stack_t *st, const mos_pkt_t *p, uint64_t now)
{
    st->st.tcp_in++;
    if (!ours(st, p->ipver, p->dst)) {
        st->st.not_ours++;
        return;
    }
    if (p->paylen < p->seglen) { /* cut short: nothing to trust */
        st->st.malformed++;
        return;
    }
    if (mos_tcp_csum_ok(p) == 0) {
        st->st.bad_checksum++;
        return;
    }
    mos_tcp_seg_t seg = {p->seq, p->ack, p->paylen, p->win, p->flags, &p->tcpopt};
    int s = conn_find(st, p->ipver, p->dst, p->dport, p->src, p->sport);
    if (s >= 0) {
        sock_t *k = &st->socks[s];
        if ((p->flags & MOS_TH_SYN) && !(p->flags & MOS_TH_ACK) && k->in_tw) {
            /* a new connection on a tuple in TIME-WAIT (RFC 9293 3.10.7.4,
             * RFC 6191): the old one goes, the SYN is taken as new */
            sk_free(st, s);
        } else {
            int ev = mos_tcp_host_input(k->tcp, &seg, p->paylen ? p->payload : NULL, now);
            settle(st, s, ev, now);
            return;
        }
    }
    int l = listener_find(st, p->ipver, p->dport);
    uint8_t fl = p->flags & (MOS_TH_SYN | MOS_TH_ACK | MOS_TH_RST);
    if (l >= 0 && fl == MOS_TH_ACK && cookie_ack(st, l, p, &seg, now)) return;
    if (l < 0 || fl != MOS_TH_SYN) {
        /* a forged or stale cookie too: any ACK in LISTEN draws a RST
         * <SEQ=SEG.ACK> (RFC 9293 3.10.7.2), as Linux answers one */
        reset_for(st, p, now);
        return;
    }
    syn_in(st, l, p, &seg, now);
}

/* ---------------------------------------------------------------- public */

void mos_stack_cfg_default(mos_stack_cfg_t *c)
{
    memset(c, 0, sizeof *c);
    c->mac[0] = 0x02;
    c->mtu = 1500;
    c->max_conns = 65536;
    c->max_time_wait = 16384;
    c->neigh_timeout_ms = 1000;
    c->eph_lo = 32768;
    c->eph_hi = 60999;
    c->nworkers = 1;
    c->responder = 1;
    mos_tcp_host_cfg_default(&c->tcp);
    c->tcp.mss = 1460;
    c->syncookies = 1; /* as Linux's tcp_syncookies=1: only when a SYN queue overflows */
}

mos_stack_t *mos_stack_new(const mos_stack_cfg_t *cfg)
{
    mos_stack_t *st = calloc(1, sizeof *st);
    if (!st) return NULL;
    st->cfg = *cfg;
    if (!st->cfg.max_conns) st->cfg.max_conns = 1;
    if (st->cfg.eph_hi < st->cfg.eph_lo) st->cfg.eph_hi = st->cfg.eph_lo;
    if (!st->cfg.nworkers) st->cfg.nworkers = 1;
    if (st->cfg.worker >= st->cfg.nworkers) st->cfg.worker = 0;
    uint32_t mss_max = st->cfg.mtu - 40u;
    if (st->cfg.tcp.mss > mss_max) st->cfg.tcp.mss = (uint16_t)mss_max;
    st->nsocks = st->cfg.max_conns;
    st->socks = calloc(st->nsocks, sizeof *st->socks);
    uint32_t nb = 1024;
    while (nb < 2 * st->nsocks && nb < (1u << 24)) nb <<= 1;
    st->hash = malloc(nb * sizeof *st->hash);
    st->hmask = nb - 1;
    st->txq = malloc((size_t)TXQ * FRAME_MAX);
    st->txlen = calloc(TXQ, sizeof *st->txlen);
    st->ready = malloc(st->nsocks * sizeof *st->ready);
    st->blocked = malloc(st->nsocks * sizeof *st->blocked);
    st->dirty = malloc(st->nsocks * sizeof *st->dirty);
    st->twcap = 2 * st->cfg.max_time_wait + 16;
    st->tw = malloc(st->twcap * sizeof *st->tw);
    if (!st->socks || !st->hash || !st->txq || !st->txlen || !st->ready || !st->blocked ||
        !st->dirty || !st->tw) {
        mos_stack_free(st);
        return NULL;
    }
    for (uint32_t i = 0; i < nb; i++) st->hash[i] = -1;
    for (uint32_t i = 0; i < st->nsocks; i++) st->socks[i].hnext = (int32_t)i + 1;
    st->socks[st->nsocks - 1].hnext = -1;
    st->freelist = 0;
    st->sipkey[0] = mix64(st->cfg.seed ^ 0x73796e636f6f6b31ull);
    st->sipkey[1] = mix64(st->sipkey[0] ^ st->cfg.seed ^ 0x73796e636f6f6b32ull);
    st->eph_next = (uint16_t)(st->cfg.eph_lo + mix64(st->cfg.seed) % (st->cfg.eph_hi - st->cfg.eph_lo + 1u));
    mos_rbuf_pool_init(&st->pool, 0, 4096ull * MOS_RBUF_BLOCK);
    return st;
}

void mos_stack_free(mos_stack_t *st)
{
    if (!st) return;
    for (uint32_t i = 0; st->socks && i < st->nsocks; i++)
        if (st->socks[i].kind == SK_CONN && st->socks[i].tcp) {
            mos_tcp_host_free(st->socks[i].tcp);
            free(st->socks[i].tcp);
        }
    for (int i = 0; i < NEIGH_MAX; i++) neigh_drop_pending(&st->neigh[i]);
    mos_rbuf_pool_drain(&st->pool);
    free(st->socks);
    free(st->hash);
    free(st->txq);
    free(st->txlen);
    free(st->ready);
    free(st->blocked);
    free(st->dirty);
    free(st->tw);
    free(st->heap);
    free(st);
}

void mos_stack_input(mos_stack_t *st, const uint8_t *frame, uint32_t len, uint64_t now)
{
    mos_pkt_t p;
    st->st.frames_in++;
    int rc = mos_decode(1, frame, len, &p);
    if (rc == MOS_DEC_TCP) {
        st->in_input = 1;
        tcp_in(st, &p, now);
        st->in_input = 0;
        return;
    }
    if (rc != MOS_DEC_OTHER) {
        if (rc != MOS_DEC_FRAGMENT) st->st.malformed++;
        return;
    }
    if (p.ethertype == 0x0806) {
        arp_in(st, frame + p.l2len, len - p.l2len, now);
        return;
    }
    if (!p.ipver || !p.l3) return;
    const uint8_t *m = p.l3 + p.l3hlen;
    const uint8_t *end = p.l3 + p.l3len;
    if (end > frame + len) end = frame + len;
    if (m > end) return;
    uint32_t n = (uint32_t)(end - m);
    if (p.ipver == 4 && p.proto == 1) icmp4_in(st, &p, m, n, now);
    else if (p.ipver == 6 && p.proto == 58) icmp6_in(st, &p, m, n, frame, now);
}

/* The output of connections that segments reached since the last output
 * (with urgent, only of those mos_tcp_host_out_now says cannot wait). */
static void flush_dirty(mos_stack_t *st, uint64_t now, int urgent)
{
    for (uint32_t i = 0; i < st->ndirty && st->txn < TXQ; i++) {
        int32_t s = st->dirty[i];
        sock_t *k = &st->socks[s];
        if (urgent && (k->kind != SK_CONN || !mos_tcp_host_out_now(k->tcp))) continue;
        k->dirty = 0;
        if (k->kind == SK_CONN) settle(st, s, 0, now);
    }
    uint32_t i = 0;
    while (i < st->ndirty && !st->socks[st->dirty[i]].dirty) i++;
    if (i == st->ndirty) {
        st->ndirty = 0;
    } else { /* the queue filled: the rest wait for the next output */
        uint32_t n = 0;
        for (; i < st->ndirty; i++)
            if (st->socks[st->dirty[i]].dirty) st->dirty[n++] = st->dirty[i];
        st->ndirty = n;
    }
}

void mos_stack_flush_urgent(mos_stack_t *st, uint64_t now)
{
    if (st->ndirty) flush_dirty(st, now, 1);
}

uint32_t mos_stack_output(mos_stack_t *st, uint8_t *buf, uint32_t cap, uint64_t now)
{
    if (st->ndirty) flush_dirty(st, now, 0);
    if (st->nblocked && st->txn <= TXQ / 2) {
        /* room again: the sockets that stopped at a full queue go on */
        uint32_t n = st->nblocked;
        st->nblocked = 0;
        for (uint32_t i = 0; i < n; i++) {
            int32_t s = st->blocked[i];
            st->socks[s].out_blocked = 0; /* also for a slot freed meanwhile */
            sock_t *k = sk_get(st, s);
            if (!k) continue;
            if (k->kind == SK_CONN) settle(st, s, 0, now);
        }
    }
    return mos_stack_output_queued(st, buf, cap);
}

uint32_t mos_stack_output_queued(mos_stack_t *st, uint8_t *buf, uint32_t cap)
{
    if (!st->txn) return 0;
    uint32_t k = st->txhead, n = st->txlen[k];
    st->txhead = (st->txhead + 1) % TXQ;
    st->txn--;
    if (n > cap) return 0;
    memcpy(buf, st->txq[k], n);
    st->st.frames_out++;
    return n;
}

void mos_stack_timer(mos_stack_t *st, uint64_t now)
{
    while (st->nheap && st->heap[0].at <= now) {
        int32_t s = st->heap[0].sock;
        uint64_t at = st->heap[0].at;
        heap_pop(st);
        sock_t *k = sk_get(st, s);
        if (!k || k->kind != SK_CONN || k->deadline != at) continue; /* stale entry */
        k->deadline = 0;
        int ev = mos_tcp_host_timer(k->tcp, now);
        settle(st, s, ev, now);
    }
    if (!st->neigh_asking) return;
    st->neigh_asking = 0; /* set again by solicit(), or below while one waits */
    for (int i = 0; i < NEIGH_MAX; i++) {
        neigh_t *n = &st->neigh[i];
        if (!n->used || n->resolved || !n->asked_at) continue;
        if (now - n->asked_at < (uint64_t)st->cfg.neigh_timeout_ms * MS) {
            st->neigh_asking = 1;
            continue;
        }
        if (n->tries >= NEIGH_TRIES) { /* nobody answers: what waited is dropped */
            st->st.neigh_drops += n->npend;
            neigh_drop_pending(n);
            n->used = 0;
            continue;
        }
        solicit(st, n, now);
    }
}

uint64_t mos_stack_deadline(const mos_stack_t *st)
{
    uint64_t d = st->nheap ? st->heap[0].at : 0;
    for (int i = 0; st->neigh_asking && i < NEIGH_MAX; i++) {
        const neigh_t *n = &st->neigh[i];
        if (!n->used || n->resolved || !n->asked_at) continue;
        uint64_t t = n->asked_at + (uint64_t)st->cfg.neigh_timeout_ms * MS;
        if (!d || t < d) d = t;
    }
    return d;
}

int mos_stack_listen(mos_stack_t *st, uint8_t ver, uint16_t port, uint32_t backlog)
{
    if (!port || (ver && ver != 4 && ver != 6)) return -MOS_SK_EINVAL;
    for (uint32_t i = 0; i < st->nlisteners; i++) {
        const sock_t *l = &st->socks[st->listeners[i]];
        if (l->lport == port && (!ver || !l->ver || l->ver == ver)) return -MOS_SK_EADDRINUSE;
    }
    int s = sk_alloc(st);
    if (s < 0) return s;
    sock_t *k = &st->socks[s];
    if (st->nlisteners == MAX_LISTENERS) {
        k->hnext = st->freelist;
        st->freelist = s;
        return -MOS_SK_EMFILE;
    }
    k->kind = SK_LISTEN;
    k->ver = ver;
    k->lport = port;
    k->backlog = backlog ? backlog : 1;
    st->listeners[st->nlisteners++] = s;
    st->st.listeners++;
    return s;
}

int mos_stack_accept(mos_stack_t *st, int ls)
{
    sock_t *l = sk_get(st, ls);
    if (!l || l->kind != SK_LISTEN) return -MOS_SK_EINVAL;
    if (l->acc_head < 0) return -MOS_SK_EAGAIN;
    int s = l->acc_head;
    sock_t *k = &st->socks[s];
    l->acc_head = k->qnext;
    if (l->acc_head < 0) l->acc_tail = -1;
    l->nacc--;
    k->accepted = 1;
    k->listener = -1;
    k->last_events = 0;
    mark_ready(st, s);
    return s;
}

int mos_stack_connect(mos_stack_t *st, uint8_t ver, const uint8_t *dst, uint16_t dport,
                      uint16_t sport, uint64_t now)
{
    return mos_stack_connect_bufs(st, ver, dst, dport, sport, now, 0, 0);
}

int mos_stack_connect_bufs(mos_stack_t *st, uint8_t ver, const uint8_t *dst, uint16_t dport,
                           uint16_t sport, uint64_t now, uint32_t sndbuf, uint32_t rcvbuf)
{
    if ((ver != 4 && ver != 6) || !dport) return -MOS_SK_EINVAL;
    const uint8_t *src = src_for(st, ver, dst);
    if (!src) return -MOS_SK_EADDRNOTAVAIL;
    uint8_t la[16] = {0}, ra[16] = {0};
    memcpy(la, src, alen(ver));
    memcpy(ra, dst, alen(ver));
    if (!sport) { /* an ephemeral port no connection to dst:dport uses */
        uint32_t range = st->cfg.eph_hi - st->cfg.eph_lo + 1u;
        for (uint32_t i = 0; i < range; i++) {
            uint16_t cand = (uint16_t)(st->cfg.eph_lo + (st->eph_next - st->cfg.eph_lo + i) % range);
            if (steer_hash(cand, dport) % st->cfg.nworkers != st->cfg.worker)
                continue; /* its replies would reach another worker */
            if (conn_find(st, ver, la, cand, ra, dport) < 0 && listener_find(st, ver, cand) < 0) {
                sport = cand;
                st->eph_next = (uint16_t)(cand + 1 > st->cfg.eph_hi ? st->cfg.eph_lo : cand + 1);
                break;
            }
        }
        if (!sport) return -MOS_SK_EADDRNOTAVAIL;
    } else if (conn_find(st, ver, la, sport, ra, dport) >= 0) {
        return -MOS_SK_EADDRINUSE;
    }
    if (st->freelist < 0) return -MOS_SK_EMFILE;
    int s = conn_new(st, ver, la, sport, ra, dport);
    if (s < 0) return -MOS_SK_ENOMEM;
    sock_t *k = &st->socks[s];
    k->accepted = 1;
    if (sndbuf || rcvbuf) mos_tcp_host_set_buffers(k->tcp, sndbuf, rcvbuf); /* before the SYN */
    mos_tcp_host_connect(k->tcp, isn_for(st, ver, la, sport, ra, dport, now), now);
    settle(st, s, 0, now);
    return s;
}

static sock_t *conn_of(mos_stack_t *st, int s)
{
    sock_t *k = sk_get(st, s);
    return k && k->kind == SK_CONN && k->accepted ? k : NULL;
}

int mos_stack_send(mos_stack_t *st, int s, const uint8_t *data, uint32_t n)
{
    sock_t *k = conn_of(st, s);
    if (!k) return -MOS_SK_EBADF;
    mos_tcp_host_t *h = k->tcp;
    if (h->err) return -(int)h->err;
    uint8_t stt = h->me.state;
    if (stt == MOS_TCPS_SYN_SENT || stt == MOS_TCPS_SYN_RCVD) return -MOS_SK_EAGAIN;
    if (stt != MOS_TCPS_ESTABLISHED && stt != MOS_TCPS_CLOSE_WAIT) return -MOS_SK_EPIPE;
    uint32_t took = mos_tcp_host_send(h, data, n);
    if (!took && n) return -MOS_SK_EAGAIN;
    settle(st, s, 0, h->now);
    return (int)took;
}

int mos_stack_recv(mos_stack_t *st, int s, uint8_t *out, uint32_t n)
{
    sock_t *k = conn_of(st, s);
    if (!k) return -MOS_SK_EBADF;
    mos_tcp_host_t *h = k->tcp;
    uint32_t got = mos_tcp_host_recv(h, out, n);
    if (got) {
        settle(st, s, 0, h->now);
        return (int)got;
    }
    if (h->err) return -(int)h->err;
    if (mos_tcp_host_eof(h)) return 0;
    return -MOS_SK_EAGAIN;
}

int mos_stack_shutdown(mos_stack_t *st, int s)
{
    sock_t *k = conn_of(st, s);
    if (!k) return -MOS_SK_EBADF;
    mos_tcp_host_shutdown(k->tcp);
    settle(st, s, 0, k->tcp->now);
    return 0;
}

int mos_stack_close(mos_stack_t *st, int s)
{
    sock_t *k = sk_get(st, s);
    if (!k) return -MOS_SK_EBADF;
    if (k->kind == SK_LISTEN) {
        /* its queued connections are reset, as Linux does */
        for (uint32_t i = 0; i < st->nsocks; i++) {
            sock_t *c = &st->socks[i];
            if (c->kind == SK_CONN && c->listener == s && !c->accepted) {
                mos_tcp_host_abort(c->tcp);
                c->listener = -1;
                c->user_closed = 1;
                settle(st, (int)i, 0, c->tcp->now);
            }
        }
        sk_free(st, s);
        return 0;
    }
    k->user_closed = 1;
    uint8_t stt = k->tcp->me.state;
    if (mos_tcp_host_readable(k->tcp)) { /* unread data: RST (RFC 2525 2.17, as Linux) */
        mos_tcp_host_abort(k->tcp);
    } else if (stt != MOS_TCPS_CLOSED) {
        mos_tcp_host_shutdown(k->tcp);
    }
    settle(st, s, 0, k->tcp->now);
    if (sk_get(st, s) && k->tcp && k->tcp->me.state == MOS_TCPS_CLOSED) sk_free(st, s);
    return 0;
}

int mos_stack_abort(mos_stack_t *st, int s)
{
    sock_t *k = conn_of(st, s);
    if (!k) return -MOS_SK_EBADF;
    k->user_closed = 1;
    mos_tcp_host_abort(k->tcp);
    settle(st, s, 0, k->tcp->now);
    if (sk_get(st, s)) sk_free(st, s);
    return 0;
}

uint32_t mos_stack_events(const mos_stack_t *st, int s)
{
    const sock_t *k = sk_get(st, s);
    if (!k) return MOS_SK_ERR | MOS_SK_HUP;
    if (k->kind == SK_LISTEN) return k->acc_head >= 0 ? MOS_SK_IN : 0;
    const mos_tcp_host_t *h = k->tcp;
    uint32_t e = 0;
    uint8_t stt = h->me.state;
    if (mos_tcp_host_readable(h) || h->eof) e |= MOS_SK_IN;
    if (h->eof) e |= MOS_SK_RDHUP;
    if (mos_tcp_host_writable(h)) e |= MOS_SK_OUT;
    if (h->err) e |= MOS_SK_ERR | MOS_SK_IN | MOS_SK_OUT;
    if (stt == MOS_TCPS_CLOSED || (h->eof && h->fin_wanted)) e |= MOS_SK_HUP;
    return e;
}

int mos_stack_error(const mos_stack_t *st, int s)
{
    sock_t *k = sk_get(st, s);
    if (!k) return MOS_SK_EBADF;
    int e = k->err;
    ((sock_t *)k)->err = 0;
    return e;
}

mos_tcp_host_t *mos_stack_tcp(mos_stack_t *st, int s)
{
    sock_t *k = sk_get(st, s);
    return k && k->kind == SK_CONN ? k->tcp : NULL;
}

int mos_stack_set_buffers(mos_stack_t *st, int s, uint32_t sndbuf, uint32_t rcvbuf)
{
    sock_t *k = sk_get(st, s);
    if (!k) return -MOS_SK_EBADF;
    if (k->kind == SK_LISTEN) { /* for the connections it will accept */
        if (sndbuf) k->sndbuf = sndbuf;
        if (rcvbuf) k->rcvbuf = rcvbuf;
        return 0;
    }
    if (mos_tcp_host_set_buffers(k->tcp, sndbuf, rcvbuf)) return -MOS_SK_ENOMEM;
    settle(st, s, 0, k->tcp->now); /* more room may open the window or let data go */
    return 0;
}

int mos_stack_set_nodelay(mos_stack_t *st, int s, int on)
{
    sock_t *k = sk_get(st, s);
    if (!k || k->kind != SK_CONN) return -MOS_SK_EBADF;
    k->tcp->cfg.nodelay = on ? 1 : 0;
    if (on) settle(st, s, 0, k->tcp->now); /* what Nagle held goes now */
    return 0;
}

int mos_stack_names(const mos_stack_t *st, int s, uint8_t *ver, uint8_t *laddr, uint16_t *lport,
                    uint8_t *raddr, uint16_t *rport)
{
    const sock_t *k = sk_get(st, s);
    if (!k) return -MOS_SK_EBADF;
    *ver = k->ver;
    memcpy(laddr, k->laddr, 16);
    memcpy(raddr, k->raddr, 16);
    *lport = k->lport;
    *rport = k->rport;
    return 0;
}

uint32_t mos_stack_ready(mos_stack_t *st, int32_t *socks, uint32_t max)
{
    uint32_t n = 0;
    while (n < max && st->nready) {
        int32_t s = st->ready[--st->nready];
        st->socks[s].in_ready = 0;
        socks[n++] = s;
    }
    return n;
}

const mos_stack_stats_t *mos_stack_stats(mos_stack_t *st)
{
    uint32_t nb = 0;
    for (int i = 0; i < NEIGH_MAX; i++) nb += st->neigh[i].used && st->neigh[i].resolved;
    st->st.neighbours = nb;
    tcp_sums_t sum = st->gone;
    for (uint32_t i = 0; i < st->nsocks; i++) { /* the live ones: a stats call is rare */
        const sock_t *k = &st->socks[i];
        if (k->kind == SK_CONN && k->tcp) tcp_counts(k->tcp, &sum);
    }
    st->st.tcp_rexmits = sum.rexmits;
    st->st.tcp_fast_rexmits = sum.fast_rexmits;
    st->st.tcp_timeouts = sum.timeouts;
    st->st.tcp_probes = sum.probes;
    st->st.tcp_undos = sum.undos;
    st->st.tcp_wnd_resends = sum.wnd_resends;
    st->st.tcp_rcvbuf_grows = sum.rcvbuf_grows;
    return &st->st;
}
