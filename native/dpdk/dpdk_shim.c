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

#include "dpdk_shim.h"

#define FORWARD_BURST 64   /* mos_dpdk_forward's rx burst */
#define POOL_CACHE 256     /* per-lcore mbuf cache (<= RTE_MEMPOOL_CACHE_MAX_SIZE) */

struct mos_dpdk_port {
    uint16_t port_id;
    uint16_t queue_id;             /* the rx/tx queue pair this handle drives */
    uint16_t nq;                   /* queue 0's handle: how many queues the port has */
    struct mos_dpdk_port **queues; /* queue 0's handle: one handle per queue (queues[0] = itself) */
    struct rte_mempool *pool;
    uint16_t room;                 /* bytes one mbuf can carry after its headroom */
    uint16_t held;                 /* mbufs returned by the last rx, not yet freed */
    struct rte_mbuf *rx_held[MOS_DPDK_BURST_MAX];
    mos_port_stats_t st;           /* everything but rx_dropped */
};

static int eal_state;              /* 0: never, 1: initialised, 2: cleaned up */
static unsigned pool_serial;       /* pool names must be unique for the EAL's life */
static unsigned char port_open[RTE_MAX_ETHPORTS];
static unsigned char port_closed[RTE_MAX_ETHPORTS]; /* closing releases the port id */

static void set_err(char *err, size_t errlen, const char *fmt, ...)
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
        set_err(err, errlen, "the DPDK EAL was cleaned up and cannot start again in this process");
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
        set_err(err, errlen, "rte_eal_init: %s (rte_errno %d)", rte_strerror(e), e);
        return -1;
    }
    eal_state = 1;
    return 0;
}

int mos_dpdk_initialized(void) { return eal_state == 1; }

unsigned mos_dpdk_port_count(void) { return eal_state == 1 ? rte_eth_dev_count_avail() : 0; }

static unsigned pow2_minus1_at_least(unsigned n)
{
    unsigned v = 1;
    while (v - 1 < n)
        v <<= 1;
    return v - 1;  /* a ring of 2^k slots holds 2^k - 1: the cheapest pool size */
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
    return p && q < p->nq ? p->queues[q] : NULL;
}

mos_dpdk_port_t *mos_dpdk_port_open_mq(uint16_t port_id, unsigned nq, unsigned nb_desc,
                                       char *err, size_t errlen)
{
    if (eal_state != 1) {
        set_err(err, errlen, "the DPDK EAL is not initialised (call mos_dpdk_init first)");
        return NULL;
    }
    if (!rte_eth_dev_is_valid_port(port_id) && port_id < RTE_MAX_ETHPORTS && port_closed[port_id]) {
        set_err(err, errlen, "DPDK port %u was closed in this process and cannot open again "
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
            set_err(err, errlen, "DPDK port %u does not exist (the EAL has port%s %s)", port_id,
                    n == 1 ? "" : "s", ids);
        else
            set_err(err, errlen,
                    "DPDK port %u does not exist (the EAL found no ports: add --vdev=... "
                    "or bind a NIC to a DPDK driver)", port_id);
        return NULL;
    }
    if (port_open[port_id]) {
        set_err(err, errlen, "DPDK port %u is already open", port_id);
        return NULL;
    }
    if (nq == 0 || nq > MOS_DPDK_MAX_QUEUES) {
        set_err(err, errlen, "%u queues is out of range (1..%u)", nq, MOS_DPDK_MAX_QUEUES);
        return NULL;
    }
    if (nb_desc == 0 || nb_desc > 32768) {
        set_err(err, errlen, "nb_desc %u is out of range (1..32768)", nb_desc);
        return NULL;
    }

    struct rte_eth_dev_info info;
    int rc = rte_eth_dev_info_get(port_id, &info);
    if (rc != 0) {
        set_err(err, errlen, "DPDK port %u: rte_eth_dev_info_get: %s", port_id, rte_strerror(-rc));
        return NULL;
    }
    struct rte_eth_conf conf;
    memset(&conf, 0, sizeof conf);
    if (nq > info.max_rx_queues || nq > info.max_tx_queues) {
        set_err(err, errlen, "DPDK port %u (%s) has at most %u rx / %u tx queues, %u asked "
                "(for net_af_packet add qpairs=%u to its --vdev)", port_id, info.driver_name,
                info.max_rx_queues, info.max_tx_queues, nq, nq);
        return NULL;
    }
    if (nq > 1 && !info.flow_type_rss_offloads) {
        /* net_af_packet spreads its qpairs with a kernel fanout that also rolls
         * over to another queue under load: a flow's packets would reach
         * several workers, each seeing part of it */
        set_err(err, errlen, "DPDK port %u (%s) cannot hash flows to %u queues (no RSS): "
                "several workers need a device with RSS, or the afpacket driver", port_id,
                info.driver_name, nq);
        return NULL;
    }
    if (nq > 1) {
        /* spread flows over the queues, both directions of a flow alike */
        conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
        conf.rx_adv_conf.rss_conf.rss_key = sym_rss_key;
        conf.rx_adv_conf.rss_conf.rss_key_len = sizeof sym_rss_key;
        conf.rx_adv_conf.rss_conf.rss_hf = info.flow_type_rss_offloads &
            (RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP);
    }
    rc = rte_eth_dev_configure(port_id, (uint16_t)nq, (uint16_t)nq, &conf);
    if (rc != 0) {
        set_err(err, errlen, "DPDK port %u (%s): rte_eth_dev_configure: %s", port_id,
                info.driver_name, rte_strerror(-rc));
        return NULL;
    }
    uint16_t nb_rxd = (uint16_t)nb_desc, nb_txd = (uint16_t)nb_desc;
    rc = rte_eth_dev_adjust_nb_rx_tx_desc(port_id, &nb_rxd, &nb_txd);
    if (rc != 0) {
        set_err(err, errlen, "DPDK port %u: rte_eth_dev_adjust_nb_rx_tx_desc: %s", port_id,
                rte_strerror(-rc));
        goto close_dev;
    }

    int socket = rte_eth_dev_socket_id(port_id);
    if (socket < 0)
        socket = (int)rte_socket_id();  /* vdevs report SOCKET_ID_ANY */
    /* mbufs in flight at once: the rx ring full, our own tx ring, the peer's
     * tx ring (mos_dpdk_forward sends our mbufs there), one rx burst held by
     * the caller and one tx burst being filled, and every lcore's cache. */
    unsigned cache = POOL_CACHE < RTE_MEMPOOL_CACHE_MAX_SIZE ? POOL_CACHE
                                                             : RTE_MEMPOOL_CACHE_MAX_SIZE;
    unsigned need = nq * (nb_rxd + 2u * nb_txd + 2u * MOS_DPDK_BURST_MAX) +
                    rte_lcore_count() * cache;
    unsigned nb_mbufs = pow2_minus1_at_least(need < 4096 ? 4096 : need);
    char name[RTE_MEMPOOL_NAMESIZE];
    snprintf(name, sizeof name, "mos_p%u_%u", port_id, pool_serial++);
    struct rte_mempool *pool = rte_pktmbuf_pool_create(name, nb_mbufs, cache, 0,
                                                       RTE_MBUF_DEFAULT_BUF_SIZE, socket);
    if (!pool) {
        set_err(err, errlen,
                "DPDK port %u: rte_pktmbuf_pool_create(%u mbufs, socket %d): %s "
                "(give the EAL more memory with -m)", port_id, nb_mbufs, socket,
                rte_strerror(rte_errno));
        goto close_dev;
    }

    for (uint16_t q = 0; q < nq; q++) {
        rc = rte_eth_rx_queue_setup(port_id, q, nb_rxd, socket, NULL, pool);
        if (rc != 0) {
            set_err(err, errlen, "DPDK port %u: rte_eth_rx_queue_setup(%u, %u): %s", port_id, q,
                    nb_rxd, rte_strerror(-rc));
            goto free_pool;
        }
        rc = rte_eth_tx_queue_setup(port_id, q, nb_txd, socket, NULL);
        if (rc != 0) {
            set_err(err, errlen, "DPDK port %u: rte_eth_tx_queue_setup(%u, %u): %s", port_id, q,
                    nb_txd, rte_strerror(-rc));
            goto free_pool;
        }
    }
    rc = rte_eth_dev_start(port_id);
    if (rc != 0) {
        set_err(err, errlen, "DPDK port %u: rte_eth_dev_start: %s", port_id, rte_strerror(-rc));
        goto free_pool;
    }
    /* a bump in the wire forwards every frame, whatever its destination MAC;
     * some vdevs (af_packet) are promiscuous already and return -ENOTSUP */
    rc = rte_eth_promiscuous_enable(port_id);
    if (rc != 0 && rc != -ENOTSUP) {
        set_err(err, errlen, "DPDK port %u: rte_eth_promiscuous_enable: %s", port_id,
                rte_strerror(-rc));
        rte_eth_dev_stop(port_id);
        goto free_pool;
    }

    mos_dpdk_port_t *p = rte_zmalloc_socket("mos_dpdk_port", sizeof *p, RTE_CACHE_LINE_SIZE,
                                            socket);
    if (!p) {
        set_err(err, errlen, "DPDK port %u: out of EAL memory for the port handle", port_id);
        rte_eth_dev_stop(port_id);
        goto free_pool;
    }
    p->port_id = port_id;
    p->pool = pool;
    p->room = rte_pktmbuf_data_room_size(pool) - RTE_PKTMBUF_HEADROOM;
    p->nq = (uint16_t)nq;
    p->queues = rte_zmalloc_socket("mos_dpdk_queues", nq * sizeof *p->queues, 0, socket);
    if (!p->queues) {
        set_err(err, errlen, "DPDK port %u: out of EAL memory for queue handles", port_id);
        rte_free(p);
        rte_eth_dev_stop(port_id);
        goto free_pool;
    }
    p->queues[0] = p;
    for (uint16_t q = 1; q < nq; q++) {
        mos_dpdk_port_t *qh = rte_zmalloc_socket("mos_dpdk_port", sizeof *qh,
                                                 RTE_CACHE_LINE_SIZE, socket);
        if (!qh) {
            set_err(err, errlen, "DPDK port %u: out of EAL memory for queue %u", port_id, q);
            for (uint16_t k = 1; k < q; k++)
                rte_free(p->queues[k]);
            rte_free(p->queues);
            rte_free(p);
            rte_eth_dev_stop(port_id);
            goto free_pool;
        }
        qh->port_id = port_id;
        qh->queue_id = q;
        qh->pool = pool;
        qh->room = p->room;
        p->queues[q] = qh;
    }
    port_open[port_id] = 1;
    return p;

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
    uint16_t n = rte_eth_rx_burst(p->port_id, p->queue_id, p->rx_held, (uint16_t)max);
    if (!n)
        return 0;
    p->held = n;
    uint64_t ts = now_ns(), bytes = 0;
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
        bytes += f->wirelen;
    }
    p->st.rx += n;
    p->st.rx_bytes += bytes;
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
    stats->rx_dropped = 0;
    if (p->queue_id != 0)
        return 0;  /* device drops are reported once, with queue 0 */
    struct rte_eth_stats es;
    if (rte_eth_stats_get(p->port_id, &es) != 0)
        return -1;
    stats->rx_dropped = es.imissed + es.rx_nombuf;
    return 0;
}

uint16_t mos_dpdk_port_id(void *h) { return ((mos_dpdk_port_t *)h)->port_id; }

void mos_dpdk_port_close(void *h)
{
    mos_dpdk_port_t *p = h;
    if (!p)
        return;
    if (p->queue_id != 0)
        return;  /* queues close with their port (queue 0's handle) */
    for (uint16_t q = 0; q < p->nq; q++)
        mos_dpdk_rx_done(p->queues[q]);
    rte_eth_dev_stop(p->port_id);
    rte_eth_dev_close(p->port_id);
    port_open[p->port_id] = 0;
    port_closed[p->port_id] = 1;
    /* after a zero-copy forward, a peer's tx ring may still hold our mbufs:
     * free the pool only when every mbuf is back (else the EAL keeps it) */
    if (rte_mempool_full(p->pool))
        rte_mempool_free(p->pool);
    for (uint16_t q = 1; q < p->nq; q++)
        rte_free(p->queues[q]);
    rte_free(p->queues);
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
