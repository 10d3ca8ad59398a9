/* port.h: the C calling convention every packet port follows (AF_PACKET,
 * DPDK, capture files: pcapport.h), so the runtime's port loop
 * (mos/runtime/_loop.pyx) drives any of them through three function
 * pointers and an opaque handle.
 *
 *   rx:      fill frames[0..max) with received frames; returns the count
 *            (0 when nothing is waiting; never blocks longer than the
 *            port's configured poll timeout), or -1 once the port has ended
 *            for good (a capture file read to its end).  Frame memory stays
 *            valid until rx_done.
 *   rx_done: give the memory of the last rx back (ring blocks, mbufs).
 *   tx:      send copies of frames[0..n); returns how many were queued.
 *            Frames not queued are the caller's to count as dropped.
 *
 * Python objects hand these over as integers (addresses): a port class
 * has a method c_port() -> (handle, rx, rx_done, tx), or a fifth item, the
 * handle tx takes when it is not rx's (a capture read from one file and
 * written to another).
 */
#ifndef MOS_PORT_H
#define MOS_PORT_H
#include "capture.h"

typedef int (*mos_rx_fn)(void *handle, mos_frame_t *frames, int max);
typedef void (*mos_rx_done_fn)(void *handle);
typedef int (*mos_tx_fn)(void *handle, const mos_frame_t *frames, int n);

typedef struct mos_port_stats {
    uint64_t rx, rx_bytes;     /* frames / bytes received */
    uint64_t tx, tx_bytes;     /* frames / bytes queued for sending */
    uint64_t tx_dropped;       /* frames tx could not queue (ring full, error) */
    uint64_t rx_dropped;       /* drops the device or kernel reports (tp_drops, imissed) */
} mos_port_stats_t;

#endif
