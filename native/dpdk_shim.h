/* dpdk_shim.h: a DPDK ethdev port behind the port.h calling convention.
 *
 * rte_eth_rx_burst and rte_eth_tx_burst are inline functions in DPDK's
 * headers, so Python (cffi) cannot call them directly: this shim wraps them,
 * and the EAL and port setup around them, in a few plain functions.  The
 * source is native/dpdk/dpdk_shim.c, away from the other native .c files
 * (setup.py globs those into extensions that must build without DPDK):
 * only the optional cffi module mos.ports._dpdk_cffi compiles it.
 *
 * A handle is used by one thread at a time (the forwarding loop's); the
 * handles of a port's queues may be used by one thread each.
 * Errors: functions that can fail write a one-line reason into err (up to
 * errlen bytes, always NUL-terminated) and return -1 or NULL.
 */
#ifndef MOS_DPDK_SHIM_H
#define MOS_DPDK_SHIM_H
#include <stddef.h>
#include <stdint.h>
#include "port.h"

#define MOS_DPDK_BURST_MAX 512 /* rx and tx never handle more per call */
#define MOS_DPDK_MAX_QUEUES 64

typedef struct mos_dpdk_port mos_dpdk_port_t;

/* rte_eal_init(argc, argv), once per process (DPDK cannot init twice).
 * Returns 0, also when already initialised (the arguments are then ignored:
 * the caller checks that they match); -1 with err set from
 * rte_strerror(rte_errno).  argv may be permuted (getopt). */
int mos_dpdk_init(int argc, char **argv, char *err, size_t errlen);
int mos_dpdk_initialized(void);

/* Number of ethdev ports the EAL probed (physical, --vdev). */
unsigned mos_dpdk_port_count(void);

/* The CPU of the EAL's i-th lcore (0: the main lcore, then the others in
 * turn), or -1 when there are not that many. */
int mos_dpdk_lcore_cpu(unsigned i);

/* Configure port_id with one rx and one tx queue of nb_desc descriptors
 * each (adjusted to the device's limits), a private mbuf pool on the port's
 * socket, promiscuous mode on, and start it.  Returns a handle or NULL. */
mos_dpdk_port_t *mos_dpdk_port_open(uint16_t port_id, unsigned nb_desc, char *err,
                                    size_t errlen);

/* The same with nq rx/tx queue pairs, for one worker thread each.  The
 * handle drives queue 0; mos_dpdk_queue(h, q) gives queue q's handle
 * (rx/rx_done/tx/stats work on any of them).  Both directions of a flow
 * reach one queue:
 *   - a device with RSS hashes with a symmetric key;
 *   - a device without RSS (net_af_packet, whose kernel fanout rolls flows
 *     over to other queues under load) gets software steering: each queue's
 *     rx hashes the frames it takes from the device (mos_dpdk_steer_owner)
 *     and hands those of other queues to them through an SP/SC rte_ring per
 *     (from, to) pair, which the owner's next rx returns.  The pool has
 *     room for every ring full; a frame that finds its ring full is freed
 *     and counted (mos_dpdk_steer_stats, and in rx_dropped). */
mos_dpdk_port_t *mos_dpdk_port_open_mq(uint16_t port_id, unsigned nq, unsigned nb_desc,
                                       char *err, size_t errlen);
void *mos_dpdk_queue(void *h, unsigned q);

/* port.h functions.  rx frames point into mbuf data (first segment:
 * caplen = segment length, wirelen = packet length), ts_ns is CLOCK_REALTIME
 * read once per burst, linktype is Ethernet.  An rx call first frees what
 * the previous rx returned if rx_done was not called.  With steering, rx
 * first returns frames other queues handed over (up to half of max), then
 * this queue's own frames from the device; rx_done frees both.  tx copies
 * the frames into fresh mbufs; frames not sent (no mbuf, too big for one
 * mbuf, tx ring full) are counted in tx_dropped. */
int mos_dpdk_rx(void *h, mos_frame_t *frames, int max);
void mos_dpdk_rx_done(void *h);
int mos_dpdk_tx(void *h, const mos_frame_t *frames, int n);

/* Zero copy: one rx burst on `from`, the same mbufs sent on `to` (what `to`
 * does not take is freed and counted in to's tx_dropped).  Returns the
 * number of frames received (0 when idle).  It reads the device queue
 * directly: no steering (meant for one queue per port). */
int mos_dpdk_forward(void *from, void *to);

/* rx/tx counters kept by the shim, per queue.  rx counts a frame once, on
 * the queue the device gave it to (with steering, maybe not the queue whose
 * rx returned it).  rx_dropped = this queue's steering drops, plus on queue
 * 0 the device's imissed + rx_nombuf.  Returns 0, or -1 when the device
 * stats are unreadable (the shim's own counters are still filled in). */
int mos_dpdk_stats(void *h, mos_port_stats_t *stats);

/* ---- software steering ---- */
enum { MOS_DPDK_STEER_NONE = 0,  /* not IP, or headers cut short: stays on its queue */
       MOS_DPDK_STEER_ADDRS = 1, /* IP fragment or neither TCP nor UDP: address pair */
       MOS_DPDK_STEER_PORTS = 2  /* TCP or UDP: addresses and ports */ };

/* The symmetric flow hash of an Ethernet frame (IPv4 or IPv6 under up to 8
 * 802.1Q/802.1ad tags, 16 MPLS labels or a PPPoE session header, as deep as
 * native/decode.c goes; IPv6 hop-by-hop/routing/destination-options/AH
 * headers skipped), the same for both directions; never reads past len.
 * Returns a MOS_DPDK_STEER_* kind; *hash is set unless NONE.  Caveat: a
 * fragmented TCP or UDP datagram is hashed by its address pair (later
 * fragments carry no ports), so its fragments may reach another worker than
 * the rest of its flow, as with NIC RSS. */
int mos_dpdk_steer_hash(const uint8_t *frame, uint32_t len, uint32_t *hash);
/* The queue (0..nq-1) that owns frame's flow; -1 when NONE (kept where it arrived). */
int mos_dpdk_steer_owner(const uint8_t *frame, uint32_t len, unsigned nq);
/* Key the hash (mos_dpdk_init does, with rte_rand()). */
void mos_dpdk_steer_seed(uint64_t seed);

typedef struct mos_dpdk_steer_stats {
    uint64_t handed;   /* frames this queue received and put in another queue's ring */
    uint64_t taken;    /* frames this queue's rx took from other queues' rings */
    uint64_t dropped;  /* frames this queue received and lost: the ring was full, or
                        * they were still in a ring when the port closed */
} mos_dpdk_steer_stats_t;

/* This queue's steering counters; returns 1 when the port steers, else 0. */
int mos_dpdk_steer_stats(void *h, mos_dpdk_steer_stats_t *stats);

/* On the port's handle (queue 0), with no worker running: free the frames
 * still in the steering rings, count them as dropped by the queue that
 * handed them, return how many.  Port close does it too. */
uint64_t mos_dpdk_steer_flush(void *h);

uint16_t mos_dpdk_port_id(void *h);
/* The device's MTU (rte_eth_dev_get_mtu), or -1 when it cannot tell. */
int mos_dpdk_mtu(void *h);

/* Stop and close the device, free the pool and the handle.  DPDK releases
 * a closed port: its id cannot be opened again in this process. */
void mos_dpdk_port_close(void *h);

/* rte_eal_cleanup (after every port is closed); 0 or a negative errno.
 * The EAL's runtime directory (/var/run/dpdk/PREFIX for root) stays: the
 * caller removes it if it chose the prefix. */
int mos_dpdk_cleanup(void);
const char *mos_dpdk_runtime_dir(void); /* "" before init */

#endif
