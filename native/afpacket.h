/* afpacket.h: a Linux AF_PACKET port (port.h calling convention).
 *
 * Receive: one socket with a TPACKET_V3 mmap ring (PACKET_RX_RING) bound to
 * the interface with ETH_P_ALL, promiscuous, PACKET_IGNORE_OUTGOING (frames
 * sent on the device, ours or the host's, are not received), optionally in a
 * PACKET_FANOUT_HASH group (the kernel's hash is symmetric, so both
 * directions of a flow land on the same member).  rx hands out frames that
 * point into the ring; a ring block goes back to the kernel at the first
 * rx_done after all its frames were handed out.  A V3 block reaches user
 * space when full or after retire_ms (1 ms): at low rates that is up to 1 ms
 * of added latency per port.  rx_version 2 (TPACKET_V2 slots, one frame each)
 * has no such wait.
 *
 * VLAN: the kernel strips the 802.1Q/802.1ad tag into tp_vlan_tci on receive
 * (always, for veth and NICs alike); rx puts the tag back into the frame it
 * hands out (in the ring, in front of the frame), so in-line forwarding keeps
 * tagged frames intact.
 *
 * Send: a second socket (bound with protocol 0, so it never receives) with
 * PACKET_QDISC_BYPASS and either a TPACKET_V2 PACKET_TX_RING (default: one
 * copy into the ring, one send() kick per burst) or sendmmsg() (one syscall
 * per burst).  Frames that do not fit (ring full, larger than MTU + 18) are
 * counted in tx_dropped and not queued.
 *
 * Linux only: elsewhere mos_afp_open_cfg fails with a message.
 */
#ifndef MOS_AFPACKET_H
#define MOS_AFPACKET_H
#include <stddef.h>
#include <stdint.h>

#include "capture.h"
#include "port.h"

typedef struct mos_afp mos_afp_t;

enum { MOS_AFP_TX_RING = 0, MOS_AFP_TX_SENDMMSG = 1 };

typedef struct mos_afp_config {
    int fanout_group;      /* 0..65535 joins that PACKET_FANOUT_HASH group; < 0: none */
    unsigned ring_bytes;   /* rx ring total (default 4 MiB) */
    unsigned block_bytes;  /* rx ring block (power of two, >= page; 0: ring/16, 64 KiB..1 MiB) */
    int poll_ms;           /* rx waits at most this long when nothing is ready (0: never waits) */
    int retire_ms;         /* a partly filled block goes to user space after this (default 1) */
    int tx_mode;           /* MOS_AFP_TX_RING or MOS_AFP_TX_SENDMMSG */
    unsigned tx_ring_bytes;/* tx ring total (default 1 MiB) */
    int promisc;           /* default 1 */
    int rx_version;        /* 3 (default): TPACKET_V3 blocks; 2: TPACKET_V2 frame slots,
                              no retire wait (lower latency), ring_bytes only */
    int fanout_defrag;     /* default 1: PACKET_FANOUT_FLAG_DEFRAG.  The kernel then hands
                              the socket the REASSEMBLED datagram, which an in-line port
                              cannot send on (larger than the MTU: tx_too_big); in-line
                              workers should set 0 (fragments then hash on addresses only) */
    int see_outgoing;      /* default 0: PACKET_IGNORE_OUTGOING, so frames sent on this device
                              (ours) are not received again; 1 for a passive tap, which must
                              also see what the host itself sends */
} mos_afp_config_t;

/* Counters beyond mos_port_stats_t. */
typedef struct mos_afp_xstats {
    uint64_t vlan_restored;   /* frames whose stripped 802.1Q tag rx put back */
    uint64_t vlan_lost;       /* tagged frames handed out without their tag (no room) */
    uint64_t tx_kick_errors;  /* send() kicks that failed (retried at the next tx or rx) */
    uint64_t tx_too_big;      /* frames larger than a tx slot or the MTU (in tx_dropped too) */
    uint64_t rx_blocks;       /* ring blocks consumed */
    uint64_t freeze_q;        /* tp_freeze_q_cnt: times the ring was full */
} mos_afp_xstats_t;

void mos_afp_config_default(mos_afp_config_t *cfg);

/* Open iface.  Returns NULL and a one-line reason in err on failure, e.g.
 * "afpacket: no such interface 'eth9'" or "afpacket: AF_PACKET needs
 * CAP_NET_RAW (run as root)". */
mos_afp_t *mos_afp_open_cfg(const char *iface, const mos_afp_config_t *cfg, char *err,
                            size_t errlen);
void mos_afp_close(mos_afp_t *h);

/* port.h functions; h is a mos_afp_t *. */
int mos_afp_rx(void *h, mos_frame_t *frames, int max);
void mos_afp_rx_done(void *h);
int mos_afp_tx(void *h, const mos_frame_t *frames, int n);

/* rx_dropped is read from PACKET_STATISTICS (which resets on read; the
 * handle accumulates). */
void mos_afp_stats(void *h, mos_port_stats_t *st);
void mos_afp_xstats(void *h, mos_afp_xstats_t *st);

int mos_afp_fd(const mos_afp_t *h);          /* rx socket, for poll() over several ports */
void mos_afp_set_poll_ms(mos_afp_t *h, int ms);
int mos_afp_poll_ms(const mos_afp_t *h);
unsigned mos_afp_block_bytes(const mos_afp_t *h);
unsigned mos_afp_block_count(const mos_afp_t *h);
int mos_afp_mtu(const mos_afp_t *h);

#endif
