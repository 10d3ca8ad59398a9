/* afpacket.c: AF_PACKET port, TPACKET_V3 receive ring, V2 transmit ring.
 *
 * Kernel interface: Documentation/networking/packet_mmap.rst and
 * include/uapi/linux/if_packet.h.  See afpacket.h for the contract.
 *
 * Receive ring bookkeeping (blocks are used in order, 0..nblocks-1, wrapping):
 *   cur   the block being read (or the next one to look at)
 *   left  frames of cur not yet handed out (0: cur not started)
 *   rel   the oldest block not yet given back; blocks rel..cur-1 (held of
 *         them) were fully handed out and go back at the next rx_done
 * A block partly handed out is never given back, so every frame stays valid
 * at least until the rx_done that follows the rx that returned it.
 *
 * With rx_version 2 (TPACKET_V2) the same three indices count fixed-size
 * frames instead of blocks: each frame reaches user space on its own, with
 * no block retire timeout (lower latency at low rates, more per-frame
 * overhead and a fixed snap length of one slot).
 */
#define _GNU_SOURCE
#include "afpacket.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef __linux__
#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>
#endif

#define AFP_BURST_MAX 256         /* sendmmsg batch */

void mos_afp_config_default(mos_afp_config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->fanout_group = -1;
    cfg->ring_bytes = 4u << 20;
    cfg->block_bytes = 0;
    cfg->poll_ms = 1;
    cfg->retire_ms = 1;
    cfg->tx_mode = MOS_AFP_TX_RING;
    cfg->tx_ring_bytes = 1u << 20;
    cfg->promisc = 1;
    cfg->rx_version = 3;
    cfg->fanout_defrag = 1;
}

#ifdef __linux__

struct mos_afp {
    /* receive */
    int fd;
    uint8_t *ring;
    size_t ring_len;
    unsigned bsize, nblocks;      /* V3: blocks; V2: frame slots */
    int v2;
    unsigned cur, rel, held, left;
    uint8_t *pkt;                 /* next tpacket3_hdr in cur when left > 0 */
    int poll_ms;
    /* VLAN fallback copies (unused for Ethernet: the ring leaves room) */
    uint8_t *scratch;
    size_t scratch_len, scratch_used;
    /* send */
    int txfd;
    int tx_mode;
    uint8_t *txring;
    size_t txring_len;
    unsigned tx_fsize, tx_nframes, tx_head;
    unsigned tx_max;              /* largest frame we queue (slot room, MTU + 18) */
    int kick_pending;
    struct mmsghdr *mm;
    struct iovec *iov;
    int ifindex, mtu;
    mos_port_stats_t st;
    mos_afp_xstats_t xs;
    uint64_t kdrops;
    char name[IFNAMSIZ];
};

static void fail(char *err, size_t errlen, const char *iface, const char *what, int e)
{
    if (!err || !errlen)
        return;
    if (e == EPERM || e == EACCES)
        snprintf(err, errlen, "afpacket: %s: AF_PACKET needs CAP_NET_RAW (run as root)", iface);
    else if (e)
        snprintf(err, errlen, "afpacket: %s: %s: %s", iface, what, strerror(e));
    else
        snprintf(err, errlen, "afpacket: %s: %s", iface, what);
}

static int is_pow2(unsigned x) { return x && !(x & (x - 1)); }

static unsigned floor_pow2(unsigned x)
{
    unsigned p = 1;
    while (p <= x / 2)
        p <<= 1;
    return p;
}

/* A TPACKET_V2 ring of fixed-size frame slots: blocks of bs bytes, as many
 * as fit in total (at least one), each cut into frames of fs bytes. */
static struct tpacket_req frame_ring_req(unsigned bs, unsigned fs, unsigned total)
{
    struct tpacket_req req;
    unsigned nb = total / bs;
    memset(&req, 0, sizeof req);
    req.tp_block_size = bs;
    req.tp_block_nr = nb ? nb : 1;
    req.tp_frame_size = fs;
    req.tp_frame_nr = (bs / fs) * req.tp_block_nr;
    return req;
}

/* Everything after the ring exists: bind, promiscuous, fanout, scratch. */
static int rx_join(mos_afp_t *h, const char *iface, const mos_afp_config_t *cfg, char *err,
                   size_t errlen)
{
    int fd = h->fd;
    int one = 1;
    /* frames our tx socket sends on this device must not come back here */
    if (!cfg->see_outgoing &&
        setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one) < 0) {
        fail(err, errlen, iface, "PACKET_IGNORE_OUTGOING (Linux >= 4.20)", errno);
        return -1;
    }
    struct sockaddr_ll sll;
    memset(&sll, 0, sizeof sll);
    sll.sll_family = AF_PACKET;
    sll.sll_protocol = htons(ETH_P_ALL);
    sll.sll_ifindex = h->ifindex;
    if (bind(fd, (struct sockaddr *)&sll, sizeof sll) < 0) {
        fail(err, errlen, iface, "bind", errno);
        return -1;
    }
    if (cfg->promisc) {
        struct packet_mreq mr;
        memset(&mr, 0, sizeof mr);
        mr.mr_ifindex = h->ifindex;
        mr.mr_type = PACKET_MR_PROMISC;
        if (setsockopt(fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mr, sizeof mr) < 0) {
            fail(err, errlen, iface, "PACKET_ADD_MEMBERSHIP promiscuous", errno);
            return -1;
        }
    }
    if (cfg->fanout_group >= 0) {
        if (cfg->fanout_group > 0xffff) {
            fail(err, errlen, iface, "fanout_group must be 0..65535", 0);
            return -1;
        }
        int type = PACKET_FANOUT_HASH | (cfg->fanout_defrag ? PACKET_FANOUT_FLAG_DEFRAG : 0);
        int arg = (cfg->fanout_group & 0xffff) | (type << 16);
        if (setsockopt(fd, SOL_PACKET, PACKET_FANOUT, &arg, sizeof arg) < 0) {
            char msg[96];
            snprintf(msg, sizeof msg, "PACKET_FANOUT group %d (another socket uses it with other flags?)",
                     cfg->fanout_group);
            fail(err, errlen, iface, msg, errno);
            return -1;
        }
    }
    h->scratch_len = 64u << 10;
    h->scratch = malloc(h->scratch_len);
    if (!h->scratch) {
        fail(err, errlen, iface, "out of memory", ENOMEM);
        return -1;
    }
    return 0;
}

/* The rx socket, of TPACKET_V2 or V3 (protocol 0: nothing arrives before
 * bind); h->fd is set so that close cleans up after a later failure. */
static int rx_socket(mos_afp_t *h, const char *iface, int version, char *err, size_t errlen)
{
    int fd = socket(AF_PACKET, SOCK_RAW, 0);
    if (fd < 0) {
        fail(err, errlen, iface, "socket(AF_PACKET)", errno);
        return -1;
    }
    h->fd = fd;
    if (setsockopt(fd, SOL_PACKET, PACKET_VERSION, &version, sizeof version) < 0) {
        fail(err, errlen, iface, version == TPACKET_V2 ? "PACKET_VERSION TPACKET_V2"
                                                       : "PACKET_VERSION TPACKET_V3", errno);
        return -1;
    }
    return fd;
}

/* Map the rx ring the kernel set up (len bytes) into h->ring. */
static int rx_map(mos_afp_t *h, const char *iface, size_t len, char *err, size_t errlen)
{
    h->ring_len = len;
    void *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, h->fd, 0);
    if (m == MAP_FAILED) {
        fail(err, errlen, iface, "mmap of the rx ring", errno);
        return -1;
    }
    h->ring = m;
    return 0;
}

static int open_rx_v2(mos_afp_t *h, const char *iface, const mos_afp_config_t *cfg,
                      unsigned total, char *err, size_t errlen)
{
    long page = sysconf(_SC_PAGESIZE);
    if (page <= 0)
        page = 4096;
    int fd = rx_socket(h, iface, TPACKET_V2, err, errlen);
    if (fd < 0)
        return -1;
    h->v2 = 1;
    /* one slot holds header, sockaddr_ll, padding and an MTU frame with a tag */
    unsigned need = TPACKET_ALIGN(TPACKET2_HDRLEN + 16) + (unsigned)h->mtu + 18;
    unsigned fs = 2048;
    while (fs < need)
        fs <<= 1;
    unsigned bs = fs > (64u << 10) ? fs : (64u << 10);
    if (bs < (unsigned)page)
        bs = (unsigned)page;
    struct tpacket_req req = frame_ring_req(bs, fs, total);
    if (setsockopt(fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof req) < 0) {
        char m[96];
        snprintf(m, sizeof m, "PACKET_RX_RING (%u frames of %u bytes)", req.tp_frame_nr, fs);
        fail(err, errlen, iface, m, errno);
        return -1;
    }
    if (rx_map(h, iface, (size_t)bs * req.tp_block_nr, err, errlen) < 0)
        return -1;
    h->bsize = fs;                 /* slots are contiguous: block size is a multiple */
    h->nblocks = req.tp_frame_nr;
    return rx_join(h, iface, cfg, err, errlen);
}

static int open_rx(mos_afp_t *h, const char *iface, const mos_afp_config_t *cfg, char *err,
                   size_t errlen)
{
    long page = sysconf(_SC_PAGESIZE);
    if (page <= 0)
        page = 4096;
    unsigned total = cfg->ring_bytes ? cfg->ring_bytes : (4u << 20);
    if (cfg->rx_version != 2 && cfg->rx_version != 3) {
        fail(err, errlen, iface, "rx_version must be 2 or 3", 0);
        return -1;
    }
    if (cfg->rx_version == 2)
        return open_rx_v2(h, iface, cfg, total, err, errlen);
    unsigned bs = cfg->block_bytes;
    if (!bs) {
        bs = floor_pow2(total / 16);
        if (bs < (64u << 10))
            bs = 64u << 10;
        if (bs > (1u << 20))
            bs = 1u << 20;
    }
    if (!is_pow2(bs) || bs < (unsigned)page) {
        char m[96];
        snprintf(m, sizeof m, "block_bytes %u must be a power of two >= the page size %ld", bs, page);
        fail(err, errlen, iface, m, 0);
        return -1;
    }
    unsigned nb = total / bs;
    if (nb < 2)
        nb = 2;

    int fd = rx_socket(h, iface, TPACKET_V3, err, errlen);
    if (fd < 0)
        return -1;
    struct tpacket_req3 req;
    memset(&req, 0, sizeof req);
    req.tp_block_size = bs;
    req.tp_block_nr = nb;
    req.tp_frame_size = 2048;                  /* V3 packs frames; only the ratio is checked */
    req.tp_frame_nr = (bs / req.tp_frame_size) * nb;
    req.tp_retire_blk_tov = cfg->retire_ms > 0 ? (unsigned)cfg->retire_ms : 1;
    req.tp_feature_req_word = 0;
    if (setsockopt(fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof req) < 0) {
        char m[96];
        snprintf(m, sizeof m, "PACKET_RX_RING (%u blocks of %u bytes)", nb, bs);
        fail(err, errlen, iface, m, errno);
        return -1;
    }
    if (rx_map(h, iface, (size_t)bs * req.tp_block_nr, err, errlen) < 0)
        return -1;
    h->bsize = bs;
    h->nblocks = nb;

    return rx_join(h, iface, cfg, err, errlen);
}

static int open_tx(mos_afp_t *h, const char *iface, const mos_afp_config_t *cfg, char *err,
                   size_t errlen)
{
    int fd = socket(AF_PACKET, SOCK_RAW, 0);
    if (fd < 0) {
        fail(err, errlen, iface, "socket(AF_PACKET) for tx", errno);
        return -1;
    }
    h->txfd = fd;
    int one = 1;
    if (setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof one) < 0) {
        fail(err, errlen, iface, "PACKET_QDISC_BYPASS", errno);
        return -1;
    }
    int sndbuf = 8 << 20;
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf, sizeof sndbuf) < 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    unsigned need = (unsigned)h->mtu + 18;     /* Ethernet header + one 802.1Q tag */
    h->tx_max = need;
    h->tx_mode = cfg->tx_mode;
    if (cfg->tx_mode == MOS_AFP_TX_RING) {
        int v = TPACKET_V2;
        if (setsockopt(fd, SOL_PACKET, PACKET_VERSION, &v, sizeof v) < 0) {
            fail(err, errlen, iface, "PACKET_VERSION TPACKET_V2 (tx)", errno);
            return -1;
        }
        /* malformed frames are skipped (status back to AVAILABLE), not a halt */
        if (setsockopt(fd, SOL_PACKET, PACKET_LOSS, &one, sizeof one) < 0) {
            fail(err, errlen, iface, "PACKET_LOSS", errno);
            return -1;
        }
        unsigned hdr = TPACKET_ALIGN(sizeof(struct tpacket2_hdr));
        unsigned fs = 2048;
        while (fs < hdr + need)
            fs <<= 1;
        long page = sysconf(_SC_PAGESIZE);
        unsigned bsz = fs > (unsigned)page ? fs : (unsigned)page;
        if (bsz < (64u << 10))
            bsz = 64u << 10;
        unsigned total = cfg->tx_ring_bytes ? cfg->tx_ring_bytes : (1u << 20);
        struct tpacket_req req = frame_ring_req(bsz, fs, total);
        if (setsockopt(fd, SOL_PACKET, PACKET_TX_RING, &req, sizeof req) < 0) {
            fail(err, errlen, iface, "PACKET_TX_RING", errno);
            return -1;
        }
        h->txring_len = (size_t)bsz * req.tp_block_nr;
        void *m = mmap(NULL, h->txring_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
        if (m == MAP_FAILED) {
            fail(err, errlen, iface, "mmap of the tx ring", errno);
            return -1;
        }
        h->txring = m;
        h->tx_fsize = fs;
        h->tx_nframes = req.tp_frame_nr;
        if (fs - hdr < h->tx_max)
            h->tx_max = fs - hdr;
    } else {
        h->mm = calloc(AFP_BURST_MAX, sizeof *h->mm);
        h->iov = calloc(AFP_BURST_MAX, sizeof *h->iov);
        if (!h->mm || !h->iov) {
            fail(err, errlen, iface, "out of memory", ENOMEM);
            return -1;
        }
    }
    struct sockaddr_ll sll;
    memset(&sll, 0, sizeof sll);
    sll.sll_family = AF_PACKET;
    sll.sll_protocol = 0;                      /* send only */
    sll.sll_ifindex = h->ifindex;
    if (bind(fd, (struct sockaddr *)&sll, sizeof sll) < 0) {
        fail(err, errlen, iface, "bind (tx)", errno);
        return -1;
    }
    return 0;
}

mos_afp_t *mos_afp_open_cfg(const char *iface, const mos_afp_config_t *cfg_in, char *err,
                            size_t errlen)
{
    mos_afp_config_t cfg;
    if (cfg_in)
        cfg = *cfg_in;
    else
        mos_afp_config_default(&cfg);
    if (err && errlen)
        err[0] = 0;
    if (!iface || !*iface || strlen(iface) >= IFNAMSIZ) {
        fail(err, errlen, iface ? iface : "(null)", "bad interface name", 0);
        return NULL;
    }
    unsigned idx = if_nametoindex(iface);
    if (!idx) {
        if (err && errlen)
            snprintf(err, errlen, "afpacket: no such interface '%s'", iface);
        return NULL;
    }
    mos_afp_t *h = calloc(1, sizeof *h);
    if (!h) {
        fail(err, errlen, iface, "out of memory", ENOMEM);
        return NULL;
    }
    h->fd = h->txfd = -1;
    h->ifindex = (int)idx;
    h->poll_ms = cfg.poll_ms;
    snprintf(h->name, sizeof h->name, "%s", iface);

    h->mtu = 1500;
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    if (s >= 0) {
        struct ifreq ifr;
        memset(&ifr, 0, sizeof ifr);
        snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", iface);
        if (ioctl(s, SIOCGIFMTU, &ifr) == 0 && ifr.ifr_mtu > 0)
            h->mtu = ifr.ifr_mtu;
        close(s);
    }
    if (open_rx(h, iface, &cfg, err, errlen) < 0 || open_tx(h, iface, &cfg, err, errlen) < 0) {
        mos_afp_close(h);
        return NULL;
    }
    return h;
}

void mos_afp_close(mos_afp_t *h)
{
    if (!h)
        return;
    if (h->ring)
        munmap(h->ring, h->ring_len);
    if (h->txring)
        munmap(h->txring, h->txring_len);
    if (h->fd >= 0)
        close(h->fd);
    if (h->txfd >= 0)
        close(h->txfd);
    free(h->scratch);
    free(h->mm);
    free(h->iov);
    free(h);
}

static inline struct tpacket_block_desc *blk(mos_afp_t *h, unsigned i)
{
    return (struct tpacket_block_desc *)(h->ring + (size_t)i * h->bsize);
}

static int tx_kick(mos_afp_t *h)
{
    if (h->tx_mode != MOS_AFP_TX_RING)
        return 0;
    if (send(h->txfd, NULL, 0, MSG_DONTWAIT) < 0) {
        /* frames left in SEND_REQUEST (socket buffer full, device busy)
         * go out at the next kick: the next tx or rx makes one */
        h->kick_pending = 1;
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOBUFS)
            h->xs.tx_kick_errors++;
        return -1;
    }
    h->kick_pending = 0;
    return 0;
}

/* Put a stripped 802.1Q/802.1ad tag back in front of the EtherType.  The
 * kernel leaves the sockaddr_ll and some padding between the tpacket header
 * and tp_mac (hdr_end = aligned header + sockaddr_ll), so the 12 address
 * bytes move 4 to the left in the ring; a scratch copy is the fallback. */
static const uint8_t *vlan_restore(mos_afp_t *h, uint8_t *data, uint32_t status, uint16_t tci,
                                   uint16_t tpid, size_t mac_off, size_t hdr_end,
                                   uint32_t *caplen, uint32_t *wirelen)
{
    if (!(status & TP_STATUS_VLAN_TPID_VALID) || !tpid)
        tpid = ETH_P_8021Q;
    uint32_t cl = *caplen;
    if (cl < 12)
        return data;
    uint8_t *out;
    if (mac_off >= hdr_end + 4) {
        out = data - 4;
        memmove(out, data, 12);                /* MACs move 4 left; EtherType stays */
    } else if (h->scratch_used + cl + 4 <= h->scratch_len) {
        out = h->scratch + h->scratch_used;
        h->scratch_used += (cl + 4 + 7) & ~7u;
        memcpy(out, data, 12);
        memcpy(out + 16, data + 12, cl - 12);
    } else {
        h->xs.vlan_lost++;
        return data;
    }
    out[12] = (uint8_t)(tpid >> 8);
    out[13] = (uint8_t)tpid;
    out[14] = (uint8_t)(tci >> 8);
    out[15] = (uint8_t)tci;
    *caplen = cl + 4;
    *wirelen += 4;
    h->xs.vlan_restored++;
    return out;
}

static int rx_ready_v2(mos_afp_t *h, mos_frame_t *f, int max)
{
    const size_t hdr_end = TPACKET_ALIGN(sizeof(struct tpacket2_hdr)) + sizeof(struct sockaddr_ll);
    int n = 0;
    while (n < max && h->held < h->nblocks) {
        uint8_t *slot = h->ring + (size_t)h->cur * h->bsize;
        struct tpacket2_hdr *ph = (struct tpacket2_hdr *)slot;
        uint32_t status = __atomic_load_n(&ph->tp_status, __ATOMIC_ACQUIRE);
        if (!(status & TP_STATUS_USER))
            break;
        uint8_t *data = slot + ph->tp_mac;
        uint32_t caplen = ph->tp_snaplen, wirelen = ph->tp_len;
        const uint8_t *out = data;
        if (status & TP_STATUS_VLAN_VALID)
            out = vlan_restore(h, data, status, ph->tp_vlan_tci, ph->tp_vlan_tpid, ph->tp_mac,
                               hdr_end, &caplen, &wirelen);
        f[n].data = out;
        f[n].caplen = caplen;
        f[n].wirelen = wirelen;
        f[n].ts_ns = (uint64_t)ph->tp_sec * 1000000000ull + ph->tp_nsec;
        f[n].linktype = MOS_LT_ETHERNET;
        f[n].iface = 0;
        f[n]._pad = 0;
        h->st.rx++;
        h->st.rx_bytes += wirelen;
        n++;
        h->held++;
        h->cur = h->cur + 1 == h->nblocks ? 0 : h->cur + 1;
    }
    return n;
}

static int rx_ready(mos_afp_t *h, mos_frame_t *f, int max)
{
    int n = 0;
    while (n < max) {
        if (h->left == 0) {
            if (h->held == h->nblocks)
                break;                         /* every block awaits rx_done */
            struct tpacket_block_desc *bd = blk(h, h->cur);
            uint32_t status = __atomic_load_n(&bd->hdr.bh1.block_status, __ATOMIC_ACQUIRE);
            if (!(status & TP_STATUS_USER))
                break;
            h->xs.rx_blocks++;
            h->left = bd->hdr.bh1.num_pkts;
            h->pkt = (uint8_t *)bd + bd->hdr.bh1.offset_to_first_pkt;
            if (h->left == 0) {
                h->held++;
                h->cur = (h->cur + 1) % h->nblocks;
                continue;
            }
        }
        struct tpacket3_hdr *ph = (struct tpacket3_hdr *)h->pkt;
        uint8_t *data = h->pkt + ph->tp_mac;
        uint32_t caplen = ph->tp_snaplen, wirelen = ph->tp_len;
        const uint8_t *out = data;
        if (ph->tp_status & TP_STATUS_VLAN_VALID)
            out = vlan_restore(h, data, ph->tp_status, ph->hv1.tp_vlan_tci, ph->hv1.tp_vlan_tpid,
                               ph->tp_mac, TPACKET_ALIGN(sizeof(struct tpacket3_hdr)) +
                               sizeof(struct sockaddr_ll), &caplen, &wirelen);
        f[n].data = out;
        f[n].caplen = caplen;
        f[n].wirelen = wirelen;
        f[n].ts_ns = (uint64_t)ph->tp_sec * 1000000000ull + ph->tp_nsec;
        f[n].linktype = MOS_LT_ETHERNET;
        f[n].iface = 0;
        f[n]._pad = 0;
        h->st.rx++;
        h->st.rx_bytes += wirelen;
        n++;
        if (--h->left == 0) {
            h->held++;
            h->cur = (h->cur + 1) % h->nblocks;
        } else {
            h->pkt += ph->tp_next_offset;
        }
    }
    return n;
}

int mos_afp_rx(void *hv, mos_frame_t *frames, int max)
{
    mos_afp_t *h = hv;
    if (h->kick_pending)
        tx_kick(h);
    if (max <= 0)
        return 0;
    int n = h->v2 ? rx_ready_v2(h, frames, max) : rx_ready(h, frames, max);
    if (n || h->poll_ms <= 0 || h->held == h->nblocks)
        return n;
    struct pollfd p = {.fd = h->fd, .events = POLLIN | POLLERR};
    if (poll(&p, 1, h->poll_ms) > 0)
        n = h->v2 ? rx_ready_v2(h, frames, max) : rx_ready(h, frames, max);
    return n;
}

void mos_afp_rx_done(void *hv)
{
    mos_afp_t *h = hv;
    if (h->v2) {
        for (; h->held; h->held--) {
            struct tpacket2_hdr *ph = (struct tpacket2_hdr *)(h->ring + (size_t)h->rel * h->bsize);
            __atomic_store_n(&ph->tp_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
            h->rel = h->rel + 1 == h->nblocks ? 0 : h->rel + 1;
        }
        h->scratch_used = 0;
        return;
    }
    while (h->held) {
        struct tpacket_block_desc *bd = blk(h, h->rel);
        __atomic_store_n(&bd->hdr.bh1.block_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
        h->rel = (h->rel + 1) % h->nblocks;
        h->held--;
    }
    h->scratch_used = 0;
}

static int tx_ring(mos_afp_t *h, const mos_frame_t *f, int n)
{
    const unsigned off = TPACKET_ALIGN(sizeof(struct tpacket2_hdr));
    int queued = 0, unkicked = 0;
    for (int i = 0; i < n; i++) {
        uint32_t len = f[i].caplen;
        if (len > h->tx_max || len < 14) {
            h->xs.tx_too_big += len >= 14;
            h->st.tx_dropped++;
            continue;
        }
        struct tpacket2_hdr *ph = (struct tpacket2_hdr *)(h->txring + (size_t)h->tx_head * h->tx_fsize);
        if (__atomic_load_n(&ph->tp_status, __ATOMIC_ACQUIRE) != TP_STATUS_AVAILABLE && unkicked) {
            /* a burst longer than the free ring: send what is queued, look again */
            tx_kick(h);
            unkicked = 0;
        }
        if (__atomic_load_n(&ph->tp_status, __ATOMIC_ACQUIRE) != TP_STATUS_AVAILABLE) {
            h->st.tx_dropped += (uint64_t)(n - i);  /* ring full */
            break;
        }
        memcpy((uint8_t *)ph + off, f[i].data, len);
        ph->tp_len = len;
        ph->tp_snaplen = len;
        __atomic_store_n(&ph->tp_status, TP_STATUS_SEND_REQUEST, __ATOMIC_RELEASE);
        h->tx_head = h->tx_head + 1 == h->tx_nframes ? 0 : h->tx_head + 1;
        h->st.tx++;
        h->st.tx_bytes += len;
        queued++;
        unkicked++;
    }
    if (unkicked || h->kick_pending)
        tx_kick(h);
    return queued;
}

static int tx_mmsg(mos_afp_t *h, const mos_frame_t *f, int n)
{
    int queued = 0;
    int i = 0;
    while (i < n) {
        int k = 0;
        while (i < n && k < AFP_BURST_MAX) {
            uint32_t len = f[i].caplen;
            if (len > h->tx_max || len < 14) {
                h->xs.tx_too_big += len >= 14;
                h->st.tx_dropped++;
                i++;
                continue;
            }
            h->iov[k].iov_base = (void *)f[i].data;
            h->iov[k].iov_len = len;
            memset(&h->mm[k], 0, sizeof h->mm[k]);
            h->mm[k].msg_hdr.msg_iov = &h->iov[k];
            h->mm[k].msg_hdr.msg_iovlen = 1;
            k++;
            i++;
        }
        int j = 0;
        while (j < k) {
            int r = sendmmsg(h->txfd, h->mm + j, (unsigned)(k - j), MSG_DONTWAIT);
            if (r > 0) {
                for (int q = j; q < j + r; q++) {
                    h->st.tx++;
                    h->st.tx_bytes += h->iov[q].iov_len;
                }
                queued += r;
                j += r;
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                /* socket buffer full: the rest of the burst is not queued */
                h->st.tx_dropped += (uint64_t)(k - j) + (uint64_t)(n - i);
                return queued;
            }
            h->st.tx_dropped++;                /* this frame failed (ENOBUFS, EMSGSIZE...) */
            j++;
        }
    }
    return queued;
}

int mos_afp_tx(void *hv, const mos_frame_t *frames, int n)
{
    mos_afp_t *h = hv;
    if (n <= 0) {
        if (h->kick_pending)
            tx_kick(h);
        return 0;
    }
    return h->tx_mode == MOS_AFP_TX_RING ? tx_ring(h, frames, n) : tx_mmsg(h, frames, n);
}

static void read_kstats(mos_afp_t *h)
{
    struct tpacket_stats_v3 ks;
    socklen_t len = sizeof ks;
    memset(&ks, 0, sizeof ks);
    /* PACKET_STATISTICS resets the kernel counters: accumulate */
    if (getsockopt(h->fd, SOL_PACKET, PACKET_STATISTICS, &ks, &len) == 0) {
        h->kdrops += ks.tp_drops;
        h->xs.freeze_q += ks.tp_freeze_q_cnt;
    }
}

void mos_afp_stats(void *hv, mos_port_stats_t *st)
{
    mos_afp_t *h = hv;
    read_kstats(h);
    *st = h->st;
    st->rx_dropped = h->kdrops;
}

void mos_afp_xstats(void *hv, mos_afp_xstats_t *st)
{
    mos_afp_t *h = hv;
    read_kstats(h);
    *st = h->xs;
}

int mos_afp_fd(const mos_afp_t *h) { return h->fd; }
void mos_afp_set_poll_ms(mos_afp_t *h, int ms) { h->poll_ms = ms; }
int mos_afp_poll_ms(const mos_afp_t *h) { return h->poll_ms; }
unsigned mos_afp_block_bytes(const mos_afp_t *h) { return h->bsize; }
unsigned mos_afp_block_count(const mos_afp_t *h) { return h->nblocks; }
int mos_afp_mtu(const mos_afp_t *h) { return h->mtu; }

#else /* !__linux__ */

struct mos_afp {
    int unused;
};

mos_afp_t *mos_afp_open_cfg(const char *iface, const mos_afp_config_t *cfg, char *err,
                            size_t errlen)
{
    (void)cfg;
    if (err && errlen)
        snprintf(err, errlen, "afpacket: %s: AF_PACKET exists on Linux only", iface ? iface : "");
    return NULL;
}

void mos_afp_close(mos_afp_t *h) { (void)h; }
int mos_afp_rx(void *h, mos_frame_t *frames, int max) { (void)h; (void)frames; (void)max; return 0; }
void mos_afp_rx_done(void *h) { (void)h; }
int mos_afp_tx(void *h, const mos_frame_t *frames, int n) { (void)h; (void)frames; (void)n; return 0; }
void mos_afp_stats(void *h, mos_port_stats_t *st) { (void)h; memset(st, 0, sizeof *st); }
void mos_afp_xstats(void *h, mos_afp_xstats_t *st) { (void)h; memset(st, 0, sizeof *st); }
int mos_afp_fd(const mos_afp_t *h) { (void)h; return -1; }
void mos_afp_set_poll_ms(mos_afp_t *h, int ms) { (void)h; (void)ms; }
int mos_afp_poll_ms(const mos_afp_t *h) { (void)h; return 0; }
unsigned mos_afp_block_bytes(const mos_afp_t *h) { (void)h; return 0; }
unsigned mos_afp_block_count(const mos_afp_t *h) { (void)h; return 0; }
int mos_afp_mtu(const mos_afp_t *h) { (void)h; return 0; }

#endif
