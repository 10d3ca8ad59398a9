/* dpdk_shim.h: a DPDK ethdev port behind the port.h calling convention.
 *
 * rte_eth_rx_burst and rte_eth_tx_burst are inline functions in DPDK's
 * headers, so Python (cffi) cannot call them directly: this shim wraps them,
 * and the EAL and port setup around them, in a few plain functions.  The
 * source is native/dpdk/dpdk_shim.c, away from the other native .c files
 * (setup.py globs those into extensions that must build without DPDK):
 * only the optional cffi module mos.ports._dpdk_cffi compiles it.
 *
 * A handle is used by one thread at a time (the forwarding loop's).
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

/* Configure port_id with one rx and one tx queue of nb_desc descriptors
 * each (adjusted to the device's limits), a private mbuf pool on the port's
 * socket, promiscuous mode on, and start it.  Returns a handle or NULL. */
mos_dpdk_port_t *mos_dpdk_port_open(uint16_t port_id, unsigned nb_desc, char *err,
                                    size_t errlen);

/* port.h functions.  rx frames point into mbuf data (first segment:
 * caplen = segment length, wirelen = packet length), ts_ns is CLOCK_REALTIME
 * read once per burst, linktype is Ethernet.  An rx call first frees what
 * the previous rx returned if rx_done was not called.  tx copies the frames
 * into fresh mbufs; frames not sent (no mbuf, too big for one mbuf, tx ring
 * full) are counted in tx_dropped. */
/* The same with nq rx/tx queue pairs (RSS with a symmetric key where the
 * device hashes; net_af_packet spreads its qpairs with a kernel fanout).
 * The handle drives queue 0; mos_dpdk_queue(h, q) gives queue q's handle,
 * for one worker thread each (rx/rx_done/tx/stats work on any of them). */
mos_dpdk_port_t *mos_dpdk_port_open_mq(uint16_t port_id, unsigned nq, unsigned nb_desc,
                                       char *err, size_t errlen);
void *mos_dpdk_queue(void *h, unsigned q);

int mos_dpdk_rx(void *h, mos_frame_t *frames, int max);
void mos_dpdk_rx_done(void *h);
int mos_dpdk_tx(void *h, const mos_frame_t *frames, int n);

/* Zero copy: one rx burst on `from`, the same mbufs sent on `to` (what `to`
 * does not take is freed and counted in to's tx_dropped).  Returns the
 * number of frames received (0 when idle). */
int mos_dpdk_forward(void *from, void *to);

/* rx/tx counters kept by the shim; rx_dropped = the device's imissed +
 * rx_nombuf.  Returns 0, or -1 when the device stats are unreadable (the
 * shim's own counters are still filled in). */
int mos_dpdk_stats(void *h, mos_port_stats_t *stats);

uint16_t mos_dpdk_port_id(void *h);

/* Stop and close the device, free the pool and the handle.  DPDK releases
 * a closed port: its id cannot be opened again in this process. */
void mos_dpdk_port_close(void *h);

/* rte_eal_cleanup (after every port is closed); 0 or a negative errno.
 * The EAL's runtime directory (/var/run/dpdk/PREFIX for root) stays: the
 * caller removes it if it chose the prefix. */
int mos_dpdk_cleanup(void);
const char *mos_dpdk_runtime_dir(void); /* "" before init */

#endif
