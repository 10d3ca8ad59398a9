/* host.h: the active TCP endpoint of an end host, sans-I/O.
 *
 * One connection: its receive side is the shared endpoint model
 * (endpoint.h: states through the same transition table, segment
 * acceptability, RST and FIN rules, the receive buffer rbuf.h), kept as in
 * the monitor's two-model view with a model of the remote sender beside
 * it; this file adds what only a sender has: the send buffer, SND.UNA and
 * the send window (RFC 9293 3.3.1), retransmission (RFC 6298 RTO with
 * exponential backoff and a retry limit), congestion control (slow start
 * from an initial window of 10 segments, RFC 6928; congestion avoidance,
 * fast retransmit and NewReno recovery, RFC 5681 and RFC 6582), SACK
 * (RFC 2018: blocks sent from the receive buffer's out-of-order runs;
 * received blocks skip what the peer holds when retransmitting), zero
 * window probes (RFC 9293 3.8.6.1), delayed ACKs (RFC 1122 4.2.3.2: at
 * least every second full segment, at most delack later), timestamps (RFC
 * 7323: RTT samples and PAWS) and TIME-WAIT.
 *
 * Nothing here reads a clock or touches a socket.  The caller feeds
 * received segments (mos_tcp_host_input) and user calls, asks what to send
 * (mos_tcp_host_output, until it returns 0) and when to come back
 * (mos_tcp_host_deadline, then mos_tcp_host_timer).  Times are ns.
 */
#ifndef MOS_TCP_HOST_H
#define MOS_TCP_HOST_H
#include <stdint.h>

#include "endpoint.h"

typedef struct mos_tcp_host_cfg {
    uint16_t mss;          /* MSS to advertise (the receive MTU's) */
    uint8_t wscale;        /* our window scale shift (RFC 7323 2.3) */
    uint8_t sack, ts;      /* offer SACK-permitted, timestamps */
    uint8_t nodelay;       /* no Nagle (TCP_NODELAY) */
    uint32_t rcvbuf;       /* receive buffer bytes (SO_RCVBUF) */
    uint32_t sndbuf;       /* send buffer bytes (SO_SNDBUF) */
    uint64_t rto_init;     /* RFC 6298 2.1: 1 s */
    uint64_t rto_min;      /* 2.4: 1 s in the RFC; 200 ms as Linux */
    uint64_t rto_max;      /* 2.5: at least 60 s */
    uint32_t syn_retries;  /* SYN / SYN-ACK retransmissions before giving up */
    uint32_t retries;      /* data retransmissions before giving up (ETIMEDOUT) */
    uint64_t delack;       /* delayed ACK bound (RFC 1122: < 500 ms) */
    uint64_t time_wait;    /* TIME-WAIT duration (2 MSL) */
    uint32_t ts_base;      /* our timestamp clock at time 0 (TSval = ts_base + now/1 ms) */
} mos_tcp_host_cfg_t;

/* Error a connection ended with (errno values, as Python's socket raises). */
enum { MOS_HOST_OK = 0, MOS_HOST_ECONNREFUSED = 111, MOS_HOST_ECONNRESET = 104,
       MOS_HOST_ETIMEDOUT = 110, MOS_HOST_ECONNABORTED = 103, MOS_HOST_ENOMEM = 12 };

/* What an input or timer call changed (bits of its return value). */
enum {
    MOS_HOST_EV_READABLE = 1,   /* new in-order bytes, or the peer's FIN (EOF) */
    MOS_HOST_EV_WRITABLE = 2,   /* send buffer room freed */
    MOS_HOST_EV_CONNECTED = 4,  /* reached ESTABLISHED */
    MOS_HOST_EV_CLOSED = 8,     /* reached CLOSED (err says why, 0 for an orderly end) */
    MOS_HOST_EV_OUTPUT = 16,    /* something to send: call mos_tcp_host_output */
};

#define MOS_HOST_MAX_SACK 4

typedef struct mos_tcp_host {
    mos_tcp_ep_t me;        /* this endpoint (role HOST): states, RCV.NXT, the receive buffer */
    mos_tcp_ep_t peer;      /* model of the remote sender: its ISN, options, seq <-> offset */
    mos_tcp_host_cfg_t cfg;
    /* send side (RFC 9293 3.3.1) */
    uint32_t snd_una;       /* oldest unacknowledged sequence number */
    uint32_t snd_wnd;       /* peer's window, scaled */
    uint32_t snd_wl1, snd_wl2;
    /* SND.NXT is me.snd_nxt, the highest sent + 1 (the endpoint model's);
     * retransmissions resend [rexmit_next, rexmit_until) first: one segment
     * after three duplicate ACKs or a partial ACK, everything after an RTO */
    uint32_t rexmit_next, rexmit_until;
    uint8_t gbn;            /* the resend after an RTO: paced by cwnd like new data */
    uint32_t credit;        /* in recovery: segments each duplicate ACK lets us resend */
    uint32_t hole_mark;     /* SND.NXT when the hole at SND.UNA was last resent */
    uint32_t hole_seq;      /* ... and that hole */
    uint64_t hole_at;       /* if the hole is still there then, it goes again (0: off) */
    uint64_t hole_wait;     /* that wait, doubled each time */
    uint64_t tlp_at;        /* tail loss probe (RFC 8985 7): the last segment again (0: off) */
    uint8_t quickack;       /* in-order segments still ACKed at once (start, after a hole) */
    uint8_t fin_held;       /* the peer's FIN came before bytes it follows: it waits */
    uint32_t fin_held_seq;  /* its sequence number */
    uint8_t *sb;            /* send buffer: a ring of sb_cap bytes (power of two) */
    uint32_t sb_cap;
    uint64_t sb_off;        /* stream offset of sb's first byte (= SND.UNA's data) */
    uint64_t sb_len;        /* bytes written by the user, not yet acknowledged */
    /* options in use */
    uint16_t smss;          /* sender MSS: min(peer's MSS, ours), less the options */
    uint8_t snd_shift, rcv_shift; /* window shifts: the peer's (applies to its windows), ours */
    uint8_t ts_on, sack_on;
    /* congestion control */
    uint32_t cwnd, ssthresh;
    uint32_t dupacks;
    uint32_t recover;       /* NewReno: snd_max when recovery began */
    uint8_t in_recovery;
    /* RTT and retransmission (RFC 6298) */
    uint64_t srtt, rttvar, rto;  /* ns; srtt 0: no sample yet */
    uint32_t rtt_seq;       /* Karn: the timed segment's end (no timestamps) */
    uint64_t rtt_start;     /* when it was sent (0: none timed) */
    uint32_t nretries;      /* consecutive RTO expirations */
    /* timers (0: off) */
    uint64_t rto_at, persist_at, delack_at, tw_at;  /* and hole_at below */
    uint32_t persist_backoff;
    /* received SACK blocks (sequence numbers), the scoreboard's last word */
    uint32_t sacked[2 * MOS_HOST_MAX_SACK];
    uint8_t nsacked;
    /* flags */
    uint8_t syn_pending;    /* our SYN (or SYN-ACK) is due */
    uint8_t ack_now;        /* an ACK is due at once (out of order, window update, ...) */
    uint8_t unacked_segs;   /* full segments received since our last ACK */
    uint8_t fin_wanted;     /* the user closed its side: FIN after the data */
    uint8_t rst_pending;    /* abort: a RST is due */
    uint8_t err;            /* MOS_HOST_E* once closed by error */
    uint8_t eof;            /* the peer's FIN reached: reads end */
    uint8_t probe_due;      /* the persist timer fired: a window probe is due */
    uint32_t rst_seq;       /* the RST's sequence number */
    uint32_t adv_wnd;       /* window we last advertised (unscaled bytes) */
    uint64_t now;           /* time of the last call */
    uint64_t rcv_read;      /* stream offset the user has read up to */
    /* counters */
    uint64_t segs_out, segs_in, rexmits, fast_rexmits, timeouts, bytes_out, bytes_in;
    uint64_t dup_in, ooo_in, paws_drops, probes;
} mos_tcp_host_t;

/* One segment to send.  Payload: len bytes of the send buffer at stream
 * offset data_off (mos_tcp_host_copy_tx copies them out). */
typedef struct mos_tcp_host_out {
    uint32_t seq, ack;
    uint16_t wnd;           /* window field (already shifted) */
    uint8_t flags;          /* MOS_TH_* */
    uint32_t len;
    uint64_t data_off;
    mos_tcp_opts_t opt;     /* options to write (mos_tcp_write_options) */
} mos_tcp_host_out_t;

void mos_tcp_host_cfg_default(mos_tcp_host_cfg_t *cfg);

/* 0, or -1 (no memory for the send buffer). */
int mos_tcp_host_init(mos_tcp_host_t *h, const mos_tcp_host_cfg_t *cfg, mos_rbuf_pool_t *pool);
void mos_tcp_host_free(mos_tcp_host_t *h);

/* Active open (connect): a SYN with sequence number iss is due. */
void mos_tcp_host_connect(mos_tcp_host_t *h, uint32_t iss, uint64_t now);

/* Passive open from a listener: the SYN it received; a SYN-ACK is due.
 * -1 if seg is not a SYN without ACK. */
int mos_tcp_host_accept(mos_tcp_host_t *h, const mos_tcp_seg_t *seg, uint32_t iss, uint64_t now);

/* A segment for this connection (payload: seg->len bytes, or NULL).
 * Returns MOS_HOST_EV_* bits. */
int mos_tcp_host_input(mos_tcp_host_t *h, const mos_tcp_seg_t *seg, const uint8_t *payload,
                       uint64_t now);

/* The next segment to send, if any (1), else 0.  Call until 0. */
int mos_tcp_host_output(mos_tcp_host_t *h, uint64_t now, mos_tcp_host_out_t *out);

/* Copy n payload bytes at stream offset off out of the send buffer. */
void mos_tcp_host_copy_tx(const mos_tcp_host_t *h, uint64_t off, uint8_t *dst, uint32_t n);

/* Timers due at now: retransmission, persist, delayed ACK, TIME-WAIT.
 * Returns MOS_HOST_EV_* bits. */
int mos_tcp_host_timer(mos_tcp_host_t *h, uint64_t now);

/* The earliest armed timer (0: none). */
uint64_t mos_tcp_host_deadline(const mos_tcp_host_t *h);

/* User calls.  send: bytes taken into the send buffer (0: full, or the
 * side is closed); recv: bytes copied (0 with mos_tcp_host_eof: the end). */
uint32_t mos_tcp_host_send(mos_tcp_host_t *h, const uint8_t *data, uint32_t n);
uint32_t mos_tcp_host_recv(mos_tcp_host_t *h, uint8_t *out, uint32_t n);
/* SO_SNDBUF / SO_RCVBUF of one connection (0: unchanged); -1 without memory */
int mos_tcp_host_set_buffers(mos_tcp_host_t *h, uint32_t sndbuf, uint32_t rcvbuf);
uint32_t mos_tcp_host_readable(const mos_tcp_host_t *h);    /* FIONREAD */
uint32_t mos_tcp_host_writable(const mos_tcp_host_t *h);    /* send buffer room */
int mos_tcp_host_eof(const mos_tcp_host_t *h);
void mos_tcp_host_shutdown(mos_tcp_host_t *h);   /* no more sends: FIN after the data */
void mos_tcp_host_abort(mos_tcp_host_t *h);      /* RST now, CLOSED */

#endif
