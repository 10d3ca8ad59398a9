/* dpdk_shim.c: see dpdk_shim.h.  Built only into mos.ports._dpdk_cffi (by
 * mos/ports/dpdk_build.py, with pkg-config's libdpdk flags).  It lives in
 * native/dpdk/ so that setup.py's glob of the native .c files, which feed
 * extensions that must build without DPDK, never picks it up. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_random.h>
#include <rte_ring.h>

#include "dpdk_shim.h"

#define FORWARD_BURST 64   /* mos_dpdk_forward's rx burst */
#define POOL_CACHE 256     /* per-lcore mbuf cache (<= RTE_MEMPOOL_CACHE_MAX_SIZE) */
#define STEER_QUEUE_SLOTS 2048 /* steering: frames in flight towards one queue, all rings */
#define STEER_RING_MIN 128     /* steering: slots of one ring, at least */

struct mos_dpdk_port {
    uint16_t port_id;
    uint16_t queue_id;             /* the rx/tx queue pair this handle drives */
    uint16_t nq;                   /* how many queues the port has */
    struct mos_dpdk_port **queues; /* queue 0's handle: one handle per queue (queues[0] = itself) */
    struct rte_mempool *pool;
    uint16_t room;                 /* bytes one mbuf can carry after its headroom */
    uint16_t held;                 /* mbufs returned by the last rx, not yet freed */
    struct rte_mbuf *rx_held[MOS_DPDK_BURST_MAX];
    mos_port_stats_t st;           /* everything but rx_dropped */
    /* software steering (nq > 1 on a device without RSS): to[o] carries
     * frames this queue received for queue o, from[r] those queue r received
     * for this one; NULL on the diagonal and without steering */
    uint16_t steer;
    uint16_t next_from;            /* the ring read first next time (round robin) */
    struct rte_ring *to[MOS_DPDK_MAX_QUEUES];
    struct rte_ring *from[MOS_DPDK_MAX_QUEUES];
    mos_dpdk_steer_stats_t ss;     /* written by this queue's thread only */
};

static int eal_state;              /* 0: never, 1: initialised, 2: cleaned up */
static unsigned pool_serial;       /* pool names must be unique for the EAL's life */
static unsigned char port_open[RTE_MAX_ETHPORTS];
static unsigned char port_closed[RTE_MAX_ETHPORTS]; /* closing releases the port id */

static void shim_set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

int mos_dpdk_init(int argc, char **argv, char *err, size_t errlen)
{
    if (eal_state == 1)
        return 0;
    if (eal_state == 2) {
        shim_set_err(err, errlen, "the DPDK EAL was cleaned up and cannot start again in this process");
        return -1;
    }
    /* the EAL prints its usage text on stdout after a bad argument: send it
     * to stderr with the rest of its diagnostics, away from the program's output */
    fflush(stdout);
    int saved_stdout = dup(STDOUT_FILENO);
    if (saved_stdout >= 0)
        dup2(STDERR_FILENO, STDOUT_FILENO);
    rte_errno = 0;
    int rc = rte_eal_init(argc, argv);
    int e = rte_errno ? rte_errno : EINVAL;
    if (saved_stdout >= 0) {
        fflush(stdout);
        dup2(saved_stdout, STDOUT_FILENO);
        close(saved_stdout);
    }
    if (rc < 0) {
        shim_set_err(err, errlen, "rte_eal_init: %s (rte_errno %d)", rte_strerror(e), e);
        return -1;
    }
    eal_state = 1;
    mos_dpdk_steer_seed(rte_rand());  /* crafted flows cannot aim at one worker */
    return 0;
}

int mos_dpdk_initialized(void) { return eal_state == 1; }

unsigned mos_dpdk_port_count(void) { return eal_state == 1 ? rte_eth_dev_count_avail() : 0; }

int mos_dpdk_lcore_cpu(unsigned i)
{
    if (eal_state != 1 || i >= rte_lcore_count())
        return -1;
    unsigned lc = rte_get_main_lcore();
    for (unsigned k = 0; k < i; k++)
        lc = rte_get_next_lcore(lc, 1, 1);
    return lc < RTE_MAX_LCORE ? (int)rte_lcore_to_cpu_id((int)lc) : -1;
}

static unsigned pow2_minus1_at_least(unsigned n)
{
    unsigned v = 1;
    while (v - 1 < n)
        v <<= 1;
    return v - 1;  /* a ring of 2^k slots holds 2^k - 1: the cheapest pool size */
}

/* ---- software flow steering ----
 * A device without RSS (net_af_packet: a kernel fanout that rolls a flow
 * over to other queues under load) spreads frames over its queues with no
 * regard for flows.  With steering, each queue's rx hashes the frames it
 * takes from the device and hands the ones of other queues' flows over
 * through a single-producer/single-consumer ring per (from, to) pair, so
 * both directions of a flow reach one worker whatever queue they arrived on.
 * Only the headers are parsed here, within the frame's first segment. */

static uint64_t steer_seed = 0x9e3779b97f4a7c15ull;

void mos_dpdk_steer_seed(uint64_t seed) { steer_seed = seed ^ 0x9e3779b97f4a7c15ull; }

static inline uint64_t mix64(uint64_t x)  /* murmur3's finaliser */
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

static inline uint16_t rd16(const uint8_t *b) { return (uint16_t)(b[0] << 8 | b[1]); }

static inline uint64_t endpoint4(const uint8_t *a, uint16_t port)
{
    uint32_t x;
    memcpy(&x, a, 4);
    return mix64(steer_seed ^ ((uint64_t)x << 16 | port));
}

static inline uint64_t endpoint6(const uint8_t *a, uint16_t port)
{
    uint64_t w0, w1;
    memcpy(&w0, a, 8);
    memcpy(&w1, a + 8, 8);
    return mix64(mix64(mix64(steer_seed ^ w0) ^ w1) ^ port);
}

/* as deep as native/decode.c goes: the engine tracks TCP under these too */
#define STEER_VLAN_MAX 8   /* 802.1Q/802.1ad tags */
#define STEER_MPLS_MAX 16  /* MPLS labels */
#define STEER_EXT_MAX 8    /* IPv6 extension headers */

/* Offset of the IP header under Ethernet, VLAN tags, MPLS labels or a PPPoE
 * session header, and its ethertype in *et; 0 when there is none. */
static uint32_t steer_l3(const uint8_t *d, uint32_t len, uint16_t *et)
{
    if (len < 14)
        return 0;
    uint32_t off = 14, vlans = 0, labels = 0;
    uint16_t t = rd16(d + 12);
    for (;;) {
        switch (t) {
        case 0x0800:
        case 0x86dd:
            *et = t;
            return off;
        case 0x8100:
        case 0x88a8:
        case 0x9100:
            if (++vlans > STEER_VLAN_MAX || len < off + 4)
                return 0;
            t = rd16(d + off + 2);
            off += 4;
            continue;
        case 0x8847:
        case 0x8848:
            do {  /* down to the bottom of the stack */
                if (++labels > STEER_MPLS_MAX || len < off + 4)
                    return 0;
                off += 4;
            } while (!(d[off - 2] & 1));
            /* no protocol field below MPLS: the version nibble (RFC 4928) */
            if (len < off + 1)
                return 0;
            *et = d[off] >> 4 == 4 ? 0x0800 : d[off] >> 4 == 6 ? 0x86dd : 0;
            return *et ? off : 0;
        case 0x8864:  /* PPPoE session: 6 bytes, then the PPP protocol */
            if (len < off + 8)
                return 0;
            t = rd16(d + off + 6);
            *et = t == 0x0021 ? 0x0800 : t == 0x0057 ? 0x86dd : 0;
            return *et ? off + 8 : 0;
        default:
            return 0;  /* ARP, LLDP...: no flow to follow */
        }
    }
}

int mos_dpdk_steer_hash(const uint8_t *d, uint32_t len, uint32_t *hash)
{
    uint16_t et = 0;
    uint32_t off = d ? steer_l3(d, len, &et) : 0;
    if (!off)
        return MOS_DPDK_STEER_NONE;
    const uint8_t *src, *dst;
    uint32_t l4;
    uint8_t proto;
    int frag = 0, v6;
    if (et == 0x0800) {
        if (len < off + 20 || d[off] >> 4 != 4)
            return MOS_DPDK_STEER_NONE;
        uint32_t ihl = (d[off] & 15u) * 4u;
        if (ihl < 20 || len < off + ihl)
            return MOS_DPDK_STEER_NONE;
        frag = (rd16(d + off + 6) & 0x3fff) != 0;  /* MF or an offset */
        proto = d[off + 9];
        src = d + off + 12;
        dst = d + off + 16;
        l4 = off + ihl;
        v6 = 0;
    } else if (et == 0x86dd) {
        if (len < off + 40 || d[off] >> 4 != 6)
            return MOS_DPDK_STEER_NONE;
        proto = d[off + 6];
        src = d + off + 8;
        dst = d + off + 24;
        l4 = off + 40;
        v6 = 1;
        for (int i = 0; i < STEER_EXT_MAX; i++) {
            if (proto == 44) {  /* a fragment header, even offset 0 without M */
                frag = 1;
                break;
            }
            if (proto != 0 && proto != 43 && proto != 60 && proto != 51)
                break;  /* hop-by-hop, routing, destination options, AH */
            if (len < l4 + 2)
                return MOS_DPDK_STEER_NONE;
            uint32_t hl = proto == 51 ? (d[l4 + 1] + 2u) * 4u : (d[l4 + 1] + 1u) * 8u;
            proto = d[l4];
            l4 += hl;
        }
    } else {
        return MOS_DPDK_STEER_NONE;
    }
    uint16_t sport = 0, dport = 0;
    int kind = MOS_DPDK_STEER_ADDRS;
    if (!frag && (proto == 6 || proto == 17)) {
        if (len < l4 + 4)
            return MOS_DPDK_STEER_NONE;
        sport = rd16(d + l4);
        dport = rd16(d + l4 + 2);
        kind = MOS_DPDK_STEER_PORTS;
    }
    /* each endpoint hashed on its own and summed: the same both ways */
    uint64_t h = v6 ? endpoint6(src, sport) + endpoint6(dst, dport)
                    : endpoint4(src, sport) + endpoint4(dst, dport);
    h = mix64(h ^ (uint64_t)v6);
    *hash = (uint32_t)(h >> 32);
    return kind;
}

int mos_dpdk_steer_owner(const uint8_t *frame, uint32_t len, unsigned nq)
{
    uint32_t h;
    if (nq == 0 || mos_dpdk_steer_hash(frame, len, &h) == MOS_DPDK_STEER_NONE)
        return -1;
    return (int)(h % nq);
}

/* Slots of each steering ring: STEER_QUEUE_SLOTS in flight towards a queue
 * over its nq - 1 rings, a power of two, at least STEER_RING_MIN. */
static unsigned steer_ring_slots(unsigned nq)
{
    unsigned per = STEER_QUEUE_SLOTS / (nq - 1), s = STEER_RING_MIN;
    while (s * 2 <= per)
        s *= 2;
    return s;
}

/* Frames other queues handed to p, up to max, the rings in turn. */
static unsigned steer_take(mos_dpdk_port_t *p, struct rte_mbuf **m, unsigned max)
{
    unsigned n = 0, nq = p->nq;
    for (unsigned i = 0; i < nq && n < max; i++) {
        struct rte_ring *r = p->from[(p->next_from + i) % nq];
        if (r)
            n += rte_ring_sc_dequeue_burst(r, (void **)(m + n), max - n, NULL);
    }
    p->next_from = (uint16_t)((p->next_from + 1) % nq);
    p->ss.taken += n;
    return n;
}

/* Keep p's own frames of m[0..n) at the front (in order) and hand the others
 * to their queues; returns how many were kept.  A full ring drops. */
static uint16_t steer_split(mos_dpdk_port_t *p, struct rte_mbuf **m, uint16_t n)
{
    struct rte_mbuf *away[MOS_DPDK_BURST_MAX], *grouped[MOS_DPDK_BURST_MAX];
    uint8_t owner[MOS_DPDK_BURST_MAX];
    uint16_t count[MOS_DPDK_MAX_QUEUES] = {0}, pos[MOS_DPDK_MAX_QUEUES];
    uint16_t keep = 0, nout = 0;
    for (uint16_t i = 0; i < n; i++) {
        struct rte_mbuf *b = m[i];
        int o = mos_dpdk_steer_owner(rte_pktmbuf_mtod(b, const uint8_t *),
                                     rte_pktmbuf_data_len(b), p->nq);
        if (o < 0 || o == p->queue_id) {
            m[keep++] = b;  /* ours, or no flow to follow: stays where it arrived */
        } else {
            owner[nout] = (uint8_t)o;
            away[nout++] = b;
            count[o]++;
        }
    }
    if (!nout)
        return keep;
    /* grouped by owner, in arrival order within each group */
    unsigned s = 0;
    for (unsigned o = 0; o < p->nq; o++) {
        pos[o] = (uint16_t)s;
        s += count[o];
    }
    for (uint16_t i = 0; i < nout; i++)
        grouped[pos[owner[i]]++] = away[i];
    s = 0;
    for (unsigned o = 0; o < p->nq; o++) {
        if (!count[o])
            continue;
        unsigned k = rte_ring_sp_enqueue_burst(p->to[o], (void **)(grouped + s), count[o], NULL);
        if (k < count[o]) {
            rte_pktmbuf_free_bulk(grouped + s + k, count[o] - k);
            p->ss.dropped += count[o] - k;
        }
        p->ss.handed += k;
        s += count[o];
    }
    return keep;
}

uint64_t mos_dpdk_steer_flush(void *h)
{
    mos_dpdk_port_t *p = h;
    if (!p || p->queue_id != 0 || !p->queues)
        return 0;
    uint64_t total = 0;
    struct rte_mbuf *m[64];
    for (unsigned q = 0; q < p->nq; q++) {
        mos_dpdk_port_t *src = p->queues[q];
        for (unsigned o = 0; o < p->nq; o++) {
            unsigned k;
            if (!src->to[o])
                continue;
            while ((k = rte_ring_dequeue_burst(src->to[o], (void **)m, 64, NULL)) > 0) {
                rte_pktmbuf_free_bulk(m, k);
                src->ss.dropped += k;  /* handed, never taken: lost after all */
                total += k;
            }
        }
    }
    return total;
}

int mos_dpdk_steer_stats(void *h, mos_dpdk_steer_stats_t *stats)
{
    mos_dpdk_port_t *p = h;
    *stats = p->ss;
    return p->steer;
}

/* Free the rings (after a flush) and the queue handles but queue 0's. */
static void free_queues(mos_dpdk_port_t *p)
{
    if (!p->queues)
        return;
    for (unsigned q = 0; q < p->nq; q++) {
        mos_dpdk_port_t *qh = p->queues[q];
        if (!qh)
            continue;
        for (unsigned o = 0; o < p->nq; o++)
            rte_ring_free(qh->to[o]);
        if (q)
            rte_free(qh);
    }
    rte_free(p->queues);
    p->queues = NULL;
}

/* The rings of every (from, to) pair; 0, or -1 with err set. */
static int steer_setup(mos_dpdk_port_t *p, unsigned serial, int socket, char *err,
                       size_t errlen)
{
    unsigned slots = steer_ring_slots(p->nq);
    for (unsigned q = 0; q < p->nq; q++) {
        p->queues[q]->steer = 1;
        for (unsigned o = 0; o < p->nq; o++) {
            if (o == q)
                continue;
            char name[RTE_RING_NAMESIZE];
            snprintf(name, sizeof name, "mos_s%u_%u_%u_%u", p->port_id, serial, q, o);
            struct rte_ring *r = rte_ring_create(name, slots, socket,
                                                 RING_F_SP_ENQ | RING_F_SC_DEQ);
            if (!r) {
                shim_set_err(err, errlen, "DPDK port %u: rte_ring_create(%s, %u slots) for flow "
                        "steering: %s (give the EAL more memory with -m)", p->port_id, name,
                        slots, rte_strerror(rte_errno));
                return -1;
            }
            p->queues[q]->to[o] = r;
            p->queues[o]->from[q] = r;
        }
    }
    return 0;
}

mos_dpdk_port_t *mos_dpdk_port_open(uint16_t port_id, unsigned nb_desc, char *err,
                                    size_t errlen)
{
    return mos_dpdk_port_open_mq(port_id, 1, nb_desc, err, errlen);
}

/* RSS key whose Toeplitz hash is the same both ways (16-bit pattern
 * 0x6d5a repeated), so the two directions of a flow reach one queue */
static uint8_t sym_rss_key[40] = {
    0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a,
    0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a,
    0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a};

void *mos_dpdk_queue(void *h, unsigned q)
{
    mos_dpdk_port_t *p = h;
    return p && p->queues && q < p->nq ? p->queues[q] : NULL;
}

mos_dpdk_port_t *mos_dpdk_port_open_mq(uint16_t port_id, unsigned nq, unsigned nb_desc,
                                       char *err, size_t errlen)
{
    if (eal_state != 1) {
        shim_set_err(err, errlen, "the DPDK EAL is not initialised (call mos_dpdk_init first)");
        return NULL;
    }
    if (!rte_eth_dev_is_valid_port(port_id) && port_id < RTE_MAX_ETHPORTS && port_closed[port_id]) {
        shim_set_err(err, errlen, "DPDK port %u was closed in this process and cannot open again "
                "(DPDK releases a port when it closes)", port_id);
        return NULL;
    }
    if (!rte_eth_dev_is_valid_port(port_id)) {
        char ids[128] = "";
        size_t used = 0;
        unsigned n = 0;
        uint16_t pid;
        RTE_ETH_FOREACH_DEV(pid) {
            if (used < sizeof ids - 8)
                used += snprintf(ids + used, sizeof ids - used, "%s%u", n ? ", " : "", pid);
            n++;
        }
        if (n)
            shim_set_err(err, errlen, "DPDK port %u does not exist (the EAL has port%s %s)", port_id,
                    n == 1 ? "" : "s", ids);
        else
            shim_set_err(err, errlen,
                    "DPDK port %u does not exist (the EAL found no ports: add --vdev=... "
                    "or bind a NIC to a DPDK driver)", port_id);
        return NULL;
    }
    if (port_open[port_id]) {
        shim_set_err(err, errlen, "DPDK port %u is already open", port_id);
        return NULL;
    }
    if (nq == 0 || nq > MOS_DPDK_MAX_QUEUES) {
        shim_set_err(err, errlen, "%u queues is out of range (1..%u)", nq, MOS_DPDK_MAX_QUEUES);
        return NULL;
    }
    if (nb_desc == 0 || nb_desc > 32768) {
        shim_set_err(err, errlen, "nb_desc %u is out of range (1..32768)", nb_desc);
        return NULL;
    }

    struct rte_eth_dev_info info;
    int rc = rte_eth_dev_info_get(port_id, &info);
    if (rc != 0) {
        shim_set_err(err, errlen, "DPDK port %u: rte_eth_dev_info_get: %s", port_id, rte_strerror(-rc));
        return NULL;
    }
    struct rte_eth_conf conf;
    memset(&conf, 0, sizeof conf);
    if (nq > info.max_rx_queues || nq > info.max_tx_queues) {
        shim_set_err(err, errlen, "DPDK port %u (%s) has at most %u rx / %u tx queues, %u asked "
                "(for net_af_packet add qpairs=%u to its --vdev)", port_id, info.driver_name,
                info.max_rx_queues, info.max_tx_queues, nq, nq);
        return NULL;
    }
    /* net_af_packet spreads its qpairs with a kernel fanout that also rolls
     * over to another queue under load: a flow's packets would reach several
     * workers, each seeing part of it.  Without RSS, the shim steers. */
    int steer = nq > 1 && !info.flow_type_rss_offloads;
    if (nq > 1 && !steer) {
        /* spread flows over the queues, both directions of a flow alike */
        conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
        conf.rx_adv_conf.rss_conf.rss_key = sym_rss_key;
        conf.rx_adv_conf.rss_conf.rss_key_len = sizeof sym_rss_key;
        conf.rx_adv_conf.rss_conf.rss_hf = info.flow_type_rss_offloads &
            (RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP);
    }
    rc = rte_eth_dev_configure(port_id, (uint16_t)nq, (uint16_t)nq, &conf);
    if (rc != 0) {
        shim_set_err(err, errlen, "DPDK port %u (%s): rte_eth_dev_configure: %s", port_id,
                info.driver_name, rte_strerror(-rc));
        return NULL;
    }
    uint16_t nb_rxd = (uint16_t)nb_desc, nb_txd = (uint16_t)nb_desc;
    rc = rte_eth_dev_adjust_nb_rx_tx_desc(port_id, &nb_rxd, &nb_txd);
    if (rc != 0) {
        shim_set_err(err, errlen, "DPDK port %u: rte_eth_dev_adjust_nb_rx_tx_desc: %s", port_id,
                rte_strerror(-rc));
        goto close_dev;
    }

    int socket = rte_eth_dev_socket_id(port_id);
    if (socket < 0)
        socket = (int)rte_socket_id();  /* vdevs report SOCKET_ID_ANY */
    /* mbufs in flight at once: the rx ring full, our own tx ring, the peer's
     * tx ring (mos_dpdk_forward sends our mbufs there), one rx burst held by
     * the caller and one tx burst being filled, and every lcore's cache;
     * with steering, every ring full too.  Worker threads are not EAL lcores:
     * they have no cache and use the pool's ring (ring_mp_mc: thread-safe,
     * as a frame handed to another queue is freed by that queue's thread). */
    unsigned cache = POOL_CACHE < RTE_MEMPOOL_CACHE_MAX_SIZE ? POOL_CACHE
                                                             : RTE_MEMPOOL_CACHE_MAX_SIZE;
    unsigned need = nq * (nb_rxd + 2u * nb_txd + 2u * MOS_DPDK_BURST_MAX) +
                    rte_lcore_count() * cache;
    if (steer)
        need += nq * (nq - 1) * (steer_ring_slots(nq) - 1);
    unsigned nb_mbufs = pow2_minus1_at_least(need < 4096 ? 4096 : need);
    unsigned serial = pool_serial++;
    char name[RTE_MEMPOOL_NAMESIZE];
    snprintf(name, sizeof name, "mos_p%u_%u", port_id, serial);
    struct rte_mempool *pool = rte_pktmbuf_pool_create(name, nb_mbufs, cache, 0,
                                                       RTE_MBUF_DEFAULT_BUF_SIZE, socket);
    if (!pool) {
        shim_set_err(err, errlen,
                "DPDK port %u: rte_pktmbuf_pool_create(%u mbufs, socket %d): %s "
                "(give the EAL more memory with -m)", port_id, nb_mbufs, socket,
                rte_strerror(rte_errno));
        goto close_dev;
    }

    for (uint16_t q = 0; q < nq; q++) {
        rc = rte_eth_rx_queue_setup(port_id, q, nb_rxd, socket, NULL, pool);
        if (rc != 0) {
            shim_set_err(err, errlen, "DPDK port %u: rte_eth_rx_queue_setup(%u, %u): %s", port_id, q,
                    nb_rxd, rte_strerror(-rc));
            goto free_pool;
        }
        rc = rte_eth_tx_queue_setup(port_id, q, nb_txd, socket, NULL);
        if (rc != 0) {
            shim_set_err(err, errlen, "DPDK port %u: rte_eth_tx_queue_setup(%u, %u): %s", port_id, q,
                    nb_txd, rte_strerror(-rc));
            goto free_pool;
        }
    }
    rc = rte_eth_dev_start(port_id);
    if (rc != 0) {
        shim_set_err(err, errlen, "DPDK port %u: rte_eth_dev_start: %s", port_id, rte_strerror(-rc));
        goto free_pool;
    }
    /* a bump in the wire forwards every frame, whatever its destination MAC;
     * some vdevs (af_packet) are promiscuous already and return -ENOTSUP */
    rc = rte_eth_promiscuous_enable(port_id);
    if (rc != 0 && rc != -ENOTSUP) {
        shim_set_err(err, errlen, "DPDK port %u: rte_eth_promiscuous_enable: %s", port_id,
                rte_strerror(-rc));
        rte_eth_dev_stop(port_id);
        goto free_pool;
    }

    mos_dpdk_port_t *p = rte_zmalloc_socket("mos_dpdk_port", sizeof *p, RTE_CACHE_LINE_SIZE,
                                            socket);
    if (!p) {
        shim_set_err(err, errlen, "DPDK port %u: out of EAL memory for the port handle", port_id);
        rte_eth_dev_stop(port_id);
        goto free_pool;
    }
    p->port_id = port_id;
    p->pool = pool;
    p->room = rte_pktmbuf_data_room_size(pool) - RTE_PKTMBUF_HEADROOM;
    p->nq = (uint16_t)nq;
    p->queues = rte_zmalloc_socket("mos_dpdk_queues", nq * sizeof *p->queues, 0, socket);
    if (!p->queues) {
        shim_set_err(err, errlen, "DPDK port %u: out of EAL memory for queue handles", port_id);
        goto free_handles;
    }
    p->queues[0] = p;
    for (uint16_t q = 1; q < nq; q++) {
        mos_dpdk_port_t *qh = rte_zmalloc_socket("mos_dpdk_port", sizeof *qh,
                                                 RTE_CACHE_LINE_SIZE, socket);
        if (!qh) {
            shim_set_err(err, errlen, "DPDK port %u: out of EAL memory for queue %u", port_id, q);
            goto free_handles;
        }
        qh->port_id = port_id;
        qh->queue_id = q;
        qh->nq = (uint16_t)nq;
        qh->pool = pool;
        qh->room = p->room;
        p->queues[q] = qh;
    }
    if (steer && steer_setup(p, serial, socket, err, errlen) != 0)
        goto free_handles;
    port_open[port_id] = 1;
    return p;

free_handles:
    free_queues(p);
    rte_free(p);
    rte_eth_dev_stop(port_id);
free_pool:
    rte_mempool_free(pool);
close_dev:
    rte_eth_dev_close(port_id);
    return NULL;
}

static inline uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void mos_dpdk_rx_done(void *h)
{
    mos_dpdk_port_t *p = h;
    if (p->held) {
        rte_pktmbuf_free_bulk(p->rx_held, p->held);
        p->held = 0;
    }
}

int mos_dpdk_rx(void *h, mos_frame_t *frames, int max)
{
    mos_dpdk_port_t *p = h;
    mos_dpdk_rx_done(p);
    if (max <= 0)
        return 0;
    if (max > MOS_DPDK_BURST_MAX)
        max = MOS_DPDK_BURST_MAX;
    uint16_t n = 0;
    /* first what other queues handed over (it reached the device before
     * what waits there now), at most half the burst: the device is read too */
    if (p->steer)
        n = (uint16_t)steer_take(p, p->rx_held, (unsigned)(max + 1) / 2);
    uint16_t got = n < max ? rte_eth_rx_burst(p->port_id, p->queue_id, p->rx_held + n,
                                              (uint16_t)(max - n))
                           : 0;
    if (got) {
        /* counted once, by the queue the device gave them to */
        uint64_t bytes = 0;
        for (uint16_t i = 0; i < got; i++)
            bytes += rte_pktmbuf_pkt_len(p->rx_held[n + i]);
        p->st.rx += got;
        p->st.rx_bytes += bytes;
        n += p->steer ? steer_split(p, p->rx_held + n, got) : got;
    }
    p->held = n;
    if (!n)
        return 0;
    uint64_t ts = now_ns();
    for (uint16_t i = 0; i < n; i++) {
        struct rte_mbuf *m = p->rx_held[i];
        mos_frame_t *f = &frames[i];
        f->data = rte_pktmbuf_mtod(m, const uint8_t *);
        f->caplen = rte_pktmbuf_data_len(m);
        f->wirelen = rte_pktmbuf_pkt_len(m);
        f->ts_ns = ts;
        f->linktype = MOS_LT_ETHERNET;
        f->iface = 0;
        f->_pad = 0;
    }
    return n;
}

static int tx_chunk(mos_dpdk_port_t *p, const mos_frame_t *frames, int n)
{
    struct rte_mbuf *m[MOS_DPDK_BURST_MAX];
    if (rte_pktmbuf_alloc_bulk(p->pool, m, (unsigned)n) != 0) {
        p->st.tx_dropped += n;
        return 0;
    }
    uint32_t lens[MOS_DPDK_BURST_MAX];
    int k = 0;
    for (int i = 0; i < n; i++) {
        uint32_t len = frames[i].caplen;
        if (len > p->room || len == 0)
            continue;  /* would need a chained mbuf: counted as dropped below */
        memcpy(rte_pktmbuf_mtod(m[k], void *), frames[i].data, len);
        m[k]->data_len = (uint16_t)len;
        m[k]->pkt_len = len;
        lens[k++] = len;
    }
    if (k < n)
        rte_pktmbuf_free_bulk(m + k, (unsigned)(n - k));
    /* the driver owns (and may already have freed) the mbufs it sent */
    uint16_t sent = k ? rte_eth_tx_burst(p->port_id, p->queue_id, m, (uint16_t)k) : 0;
    uint64_t bytes = 0;
    for (uint16_t i = 0; i < sent; i++)
        bytes += lens[i];
    if (sent < k)
        rte_pktmbuf_free_bulk(m + sent, (unsigned)(k - sent));
    p->st.tx += sent;
    p->st.tx_bytes += bytes;
    p->st.tx_dropped += (uint64_t)(n - sent);
    return sent;
}

int mos_dpdk_tx(void *h, const mos_frame_t *frames, int n)
{
    mos_dpdk_port_t *p = h;
    int total = 0;
    while (n > 0) {
        int c = n < MOS_DPDK_BURST_MAX ? n : MOS_DPDK_BURST_MAX;
        total += tx_chunk(p, frames, c);
        frames += c;
        n -= c;
    }
    return total;
}

int mos_dpdk_forward(void *from, void *to)
{
    mos_dpdk_port_t *a = from, *b = to;
    struct rte_mbuf *m[FORWARD_BURST];
    uint16_t n = rte_eth_rx_burst(a->port_id, a->queue_id, m, FORWARD_BURST);
    if (!n)
        return 0;
    uint64_t bytes = 0;
    for (uint16_t i = 0; i < n; i++)
        bytes += rte_pktmbuf_pkt_len(m[i]);
    a->st.rx += n;
    a->st.rx_bytes += bytes;
    uint16_t sent = rte_eth_tx_burst(b->port_id, b->queue_id, m, n);
    if (sent < n) {
        for (uint16_t i = sent; i < n; i++)
            bytes -= rte_pktmbuf_pkt_len(m[i]);
        rte_pktmbuf_free_bulk(m + sent, n - sent);
        b->st.tx_dropped += n - sent;
    }
    b->st.tx += sent;
    b->st.tx_bytes += bytes;
    return n;
}

int mos_dpdk_stats(void *h, mos_port_stats_t *stats)
{
    mos_dpdk_port_t *p = h;
    *stats = p->st;
    stats->rx_dropped = p->ss.dropped;  /* received, never returned by any queue's rx */
    if (p->queue_id != 0)
        return 0;  /* device drops are reported once, with queue 0 */
    struct rte_eth_stats es;
    if (rte_eth_stats_get(p->port_id, &es) != 0)
        return -1;
    stats->rx_dropped += es.imissed + es.rx_nombuf;
    return 0;
}

uint16_t mos_dpdk_port_id(void *h) { return ((mos_dpdk_port_t *)h)->port_id; }

int mos_dpdk_mtu(void *h)
{
    uint16_t mtu = 0;
    return rte_eth_dev_get_mtu(((mos_dpdk_port_t *)h)->port_id, &mtu) == 0 ? (int)mtu : -1;
}

void mos_dpdk_port_close(void *h)
{
    mos_dpdk_port_t *p = h;
    if (!p)
        return;
    if (p->queue_id != 0)
        return;  /* queues close with their port (queue 0's handle) */
    for (uint16_t q = 0; q < p->nq; q++)
        mos_dpdk_rx_done(p->queues[q]);
    mos_dpdk_steer_flush(p);
    rte_eth_dev_stop(p->port_id);
    rte_eth_dev_close(p->port_id);
    port_open[p->port_id] = 0;
    port_closed[p->port_id] = 1;
    /* after a zero-copy forward, a peer's tx ring may still hold our mbufs:
     * free the pool only when every mbuf is back (else the EAL keeps it) */
    if (rte_mempool_full(p->pool))
        rte_mempool_free(p->pool);
    free_queues(p);
    rte_free(p);
}

int mos_dpdk_cleanup(void)
{
    if (eal_state != 1)
        return 0;
    eal_state = 2;
    return rte_eal_cleanup();
}

const char *mos_dpdk_runtime_dir(void) { return eal_state ? rte_eal_get_runtime_dir() : ""; }
