/* stack.h: the end host's network stack, sans-I/O.
 *
 * Frames in (mos_stack_input), frames out (mos_stack_output), time passed
 * in; nothing here reads a clock or touches a port.  It owns a MAC address
 * and IPv4/IPv6 addresses, answers ARP (RFC 826) and IPv6 neighbour
 * solicitation (RFC 4861 7), resolves next hops through a neighbour cache
 * (and a gateway), answers ICMP echo (RFC 792) and ICMPv6 echo (RFC 4443
 * 4), and runs TCP: listeners with a bounded SYN queue and accept queue,
 * connections of mos/tcp/host.h (one TCP for the monitor and the end host),
 * SYN cookies when a SYN queue is full (RFC 4987 3.6), RST for segments
 * to no connection (RFC 9293 3.10.7.1), a bounded TIME-WAIT table.  Sockets are small integers; readiness changes are
 * listed for an epoll layer (mos_stack_ready).
 */
#ifndef MOS_STACK_H
#define MOS_STACK_H
#include <stdint.h>

#include "host.h"

#define MOS_STACK_MAX_ADDRS 8

typedef struct mos_stack_addr {
    uint8_t ver;          /* 4 or 6 */
    uint8_t prefix;       /* on-link prefix length */
    uint8_t addr[16];     /* IPv4 in addr[0..4) */
} mos_stack_addr_t;

typedef struct mos_stack_cfg {
    uint8_t mac[6];
    uint8_t naddrs;
    mos_stack_addr_t addrs[MOS_STACK_MAX_ADDRS];
    uint8_t has_gw4, has_gw6;
    uint8_t gw4[4], gw6[16];
    uint16_t mtu;               /* IP MTU (1500) */
    uint32_t max_conns;         /* sockets in all (listeners and connections) */
    uint32_t max_time_wait;     /* connections kept in TIME-WAIT at once */
    uint32_t neigh_timeout_ms;  /* an entry is asked again after this */
    uint16_t eph_lo, eph_hi;    /* ephemeral port range */
    mos_tcp_host_cfg_t tcp;     /* defaults of new connections */
    uint64_t seed;              /* ISN, ephemeral port and SYN cookie secret */
    /* Workers (one stack each) sharing a port: a steering rule sends a TCP
     * segment to worker steer_hash(sport, dport) % nworkers, so this one picks its
     * ephemeral ports where that is its own number, and only the
     * responder answers ARP, neighbour solicitations and echo requests
     * (every worker sees them and learns from them) */
    uint16_t nworkers, worker;
    uint8_t responder;
    uint8_t syncookies;         /* 0 off; 1 (default) when a SYN queue is full; 2 always */
} mos_stack_cfg_t;

/* readiness bits (the values of epoll's EPOLLIN, OUT, ERR, HUP, RDHUP) */
enum { MOS_SK_IN = 0x001, MOS_SK_OUT = 0x004, MOS_SK_ERR = 0x008, MOS_SK_HUP = 0x010,
       MOS_SK_RDHUP = 0x2000 };

/* errors returned as negative values (errno numbers) */
enum { MOS_SK_EAGAIN = 11, MOS_SK_EBADF = 9, MOS_SK_EADDRINUSE = 98, MOS_SK_EMFILE = 24,
       MOS_SK_EINVAL = 22, MOS_SK_ENOTCONN = 107, MOS_SK_EPIPE = 32, MOS_SK_ENOMEM = 12,
       MOS_SK_EADDRNOTAVAIL = 99, MOS_SK_EISCONN = 106, MOS_SK_EINPROGRESS = 115 };

typedef struct mos_stack mos_stack_t;

void mos_stack_cfg_default(mos_stack_cfg_t *cfg);
mos_stack_t *mos_stack_new(const mos_stack_cfg_t *cfg);
void mos_stack_free(mos_stack_t *st);

/* One received Ethernet frame. */
void mos_stack_input(mos_stack_t *st, const uint8_t *frame, uint32_t len, uint64_t now);

/* The next frame to send, copied into buf (cap bytes; 1514 is enough at MTU
 * 1500): its length, or 0 when nothing is due. */
uint32_t mos_stack_output(mos_stack_t *st, uint8_t *buf, uint32_t cap, uint64_t now);
/* Right after a burst in: output of the connections that cannot wait for
 * the application (mos_tcp_host_out_now: data the ACKs let go, resends,
 * ACKs a sender needs at once); the rest wait for mos_stack_output, so a
 * reply written meanwhile carries their ACK. */
void mos_stack_flush_urgent(mos_stack_t *st, uint64_t now);
/* The next frame already made (mos_stack_output without making more). */
uint32_t mos_stack_output_queued(mos_stack_t *st, uint8_t *buf, uint32_t cap);

/* Timers due at now; the earliest deadline (0: none). */
void mos_stack_timer(mos_stack_t *st, uint64_t now);
uint64_t mos_stack_deadline(const mos_stack_t *st);

/* Sockets.  Returns >= 0 (a socket number, a byte count) or -errno. */
int mos_stack_listen(mos_stack_t *st, uint8_t ver, uint16_t port, uint32_t backlog);
int mos_stack_accept(mos_stack_t *st, int lsock);
int mos_stack_connect(mos_stack_t *st, uint8_t ver, const uint8_t *dst, uint16_t dport,
                      uint16_t sport, uint64_t now);
int mos_stack_send(mos_stack_t *st, int sock, const uint8_t *data, uint32_t n);
int mos_stack_recv(mos_stack_t *st, int sock, uint8_t *out, uint32_t n);
int mos_stack_shutdown(mos_stack_t *st, int sock);  /* SHUT_WR: FIN after the data */
int mos_stack_close(mos_stack_t *st, int sock);     /* shutdown, and the socket goes */
int mos_stack_abort(mos_stack_t *st, int sock);     /* RST, and the socket goes */
uint32_t mos_stack_events(const mos_stack_t *st, int sock);   /* MOS_SK_* now */
int mos_stack_error(const mos_stack_t *st, int sock);         /* SO_ERROR (cleared) */
mos_tcp_host_t *mos_stack_tcp(mos_stack_t *st, int sock);     /* its TCP, or NULL */
/* SO_SNDBUF / SO_RCVBUF (0: unchanged): of a connection, or of a listener
 * for the connections it accepts; a connect that takes them before its SYN */
int mos_stack_set_buffers(mos_stack_t *st, int sock, uint32_t sndbuf, uint32_t rcvbuf);
int mos_stack_connect_bufs(mos_stack_t *st, uint8_t ver, const uint8_t *dst, uint16_t dport,
                           uint16_t sport, uint64_t now, uint32_t sndbuf, uint32_t rcvbuf);
int mos_stack_set_nodelay(mos_stack_t *st, int sock, int on);  /* TCP_NODELAY */
/* local and remote (ver, address, port) of a socket; -EBADF if none */
int mos_stack_names(const mos_stack_t *st, int sock, uint8_t *ver, uint8_t *laddr,
                    uint16_t *lport, uint8_t *raddr, uint16_t *rport);

/* Sockets whose readiness may have changed since the last call (each once). */
uint32_t mos_stack_ready(mos_stack_t *st, int32_t *socks, uint32_t max);

typedef struct mos_stack_stats {
    uint64_t frames_in, frames_out, arp_in, arp_out, nd_in, nd_out, echo_replies;
    uint64_t tcp_in, tcp_out, rst_out, syn_dropped, accept_overflow, bad_checksum;
    uint64_t not_ours, malformed, no_route, neigh_drops, time_wait_evicted;
    uint64_t syncookies_sent, syncookies_ok, syncookies_failed;
    /* TCP, summed over every connection, past and present: segments resent,
     * loss recoveries begun (duplicate ACKs or RACK), retransmission
     * timeouts, tail loss and zero-window probes, and recoveries undone
     * (every resend of theirs proved needless) */
    uint64_t tcp_rexmits, tcp_fast_rexmits, tcp_timeouts, tcp_probes, tcp_undos;
    uint64_t tcp_wnd_resends, tcp_rcvbuf_grows; /* window updates sent again; autotuning steps */
    uint32_t conns, listeners, time_wait, neighbours;
} mos_stack_stats_t;
const mos_stack_stats_t *mos_stack_stats(mos_stack_t *st);

#endif
