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
 * (RFC 2018: blocks sent from the receive buffer's out-of-order runs, the
 * newest first; received blocks mark a scoreboard of the segments sent,
 * RFC 6675), RACK-TLP loss detection (RFC 8985: by time, a segment sent
 * before a delivered one is lost once a reordering window passed; a
 * probe after 2 SRTTs of silence), proportional rate reduction in
 * recovery (RFC 6937), zero
 * window probes (RFC 9293 3.8.6.1), delayed ACKs (RFC 1122 4.2.3.2: at
 * least every second full segment, at most delack later), timestamps (RFC
 * 7323: RTT samples and PAWS), TIME-WAIT, receive buffer autotuning (the
 * window grows with what the reader takes per RTT) and a window update
 * that reopens a closed window sent again until data comes.
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
    uint8_t cubic;         /* congestion control: CUBIC (RFC 9438, 1) or Reno (RFC 5681, 0) */
    uint32_t rcvbuf;       /* receive buffer bytes (SO_RCVBUF) */
    uint32_t rcvbuf_max;   /* autotuning grows rcvbuf up to this (0: fixed; SO_RCVBUF fixes it) */
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
#define MOS_HOST_MAX_PROBES 2   /* tail loss probes before the RTO (arm_pto) */

/* At most this many segments in flight: the scoreboard's bound (24 bytes
 * each) when an app with TCP_NODELAY writes a byte at a time; 2048 full
 * segments are more than any send buffer holds. */
#define MOS_HOST_MAX_SEGS 2048

/* A scoreboard record: a segment as sent, [seq, end) (a FIN counts one). */
enum { MOS_SEG_SACKED = 1, MOS_SEG_LOST = 2, MOS_SEG_RETRANS = 4 };
typedef struct mos_tcp_host_seg {
    uint32_t seq, end;
    uint64_t xmit;          /* its last transmission (ns) */
    uint8_t flags;          /* MOS_SEG_* */
} mos_tcp_host_seg_t;

typedef struct mos_tcp_host {
    mos_tcp_ep_t me;        /* this endpoint (role HOST): states, RCV.NXT, the receive buffer */
    mos_tcp_ep_t peer;      /* model of the remote sender: its ISN, options, seq <-> offset */
    mos_tcp_host_cfg_t cfg;
    /* send side (RFC 9293 3.3.1) */
    uint32_t snd_una;       /* oldest unacknowledged sequence number */
    uint32_t snd_wnd;       /* peer's window, scaled */
    uint32_t snd_wl1, snd_wl2;
    /* SND.NXT is me.snd_nxt, the highest sent + 1 (the endpoint model's).
     * The scoreboard (RFC 6675 3, RFC 8985 5.2): one record per segment
     * sent and not yet cumulatively acknowledged, in sequence order */
    mos_tcp_host_seg_t *segs;
    uint32_t nsegs, segs_cap;
    uint32_t sacked_bytes;  /* sequence space of records the peer SACKed */
    uint32_t lost_bytes;    /* ... of records marked lost and not sent again yet */
    uint8_t after_rto;      /* resending what an RTO marked lost (until SND.UNA reaches recover) */
    uint8_t rexmit_credit;  /* resends allowed whatever the pipe (RFC 6675 5 (4.3), NewReno) */
    uint8_t tlp_due;        /* the PTO fired: one probe goes (RFC 8985 7.3) */
    uint8_t tlp_out;        /* probes out since something was last delivered */
    uint8_t rack_reord;     /* RACK.reord: the peer saw reordering (RFC 8985 6.2 step 3) */
    /* RACK (RFC 8985 6.1): the most recently sent segment that was delivered */
    uint64_t rack_xmit;     /* RACK.xmit_ts */
    uint32_t rack_end;      /* RACK.end_seq */
    uint32_t rack_fack;     /* RACK.fack: the highest end of a delivered segment */
    uint64_t rack_rtt;      /* RACK.rtt */
    uint64_t min_rtt;       /* the least RACK RTT seen (0: none) */
    uint64_t rack_at;       /* reordering timer (RFC 8985 6.3, 0: off) */
    uint8_t reo_mult;       /* RACK.reo_wnd_mult: grows with each D-SACKed resend (6.2 step 4) */
    uint8_t reo_persist;    /* recoveries left before reo_mult goes back to 1 */
    /* undoing a recovery whose resends all came back D-SACKed (RFC 3708
     * detection, RFC 4015's response): the window before it, and what
     * was resent in it */
    uint8_t undo_ok;        /* this episode may still be undone */
    uint8_t nundo;          /* resends not yet D-SACKed */
    uint32_t undo_seq[8];   /* their sequence numbers */
    uint32_t prior_cwnd, prior_ssthresh;
    uint64_t tlp_at;        /* probe timeout, PTO (RFC 8985 7.2, 0: off) */
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
    uint32_t ca_acked;      /* bytes acknowledged towards the next cwnd step in congestion avoidance */
    uint32_t recover;       /* NewReno: snd_max when recovery began */
    /* CUBIC (RFC 9438 4), in segments and seconds */
    double cub_wmax;        /* W_max: the window before the last reduction */
    double cub_k;           /* K: when W_cubic climbs back to W_max, from the epoch */
    double cub_west;        /* W_est: what Reno would have by now (4.3) */
    uint64_t cub_epoch;     /* the congestion avoidance epoch's start (ns, 0: not begun) */
    double prior_wmax;      /* W_max before this recovery (undo) */
    /* proportional rate reduction in recovery (RFC 6937 3) */
    uint32_t prr_delivered, prr_out, recover_fs;
    uint8_t in_recovery;
    /* RTT and retransmission (RFC 6298) */
    uint64_t srtt, rttvar, rto;  /* ns; srtt 0: no sample yet */
    uint32_t rtt_seq;       /* Karn: the timed segment's end (no timestamps) */
    uint64_t rtt_start;     /* when it was sent (0: none timed) */
    uint32_t nretries;      /* consecutive RTO expirations */
    /* timers (0: off) */
    uint64_t rto_at, persist_at, delack_at, tw_at;  /* and rack_at, tlp_at above */
    uint32_t persist_backoff;
    /* receiver: stream offsets of the last out-of-order segments, newest
     * first; their runs lead our SACK blocks (RFC 2018 4) */
    uint64_t sack_recent[3];
    uint8_t nrecent;
    uint8_t dsack_due;      /* our next ACK reports a duplicate first (RFC 2883) */
    uint32_t dsack_l, dsack_r;
    /* flags */
    uint8_t syn_pending;    /* our SYN (or SYN-ACK) is due */
    uint8_t ack_now;        /* an ACK is due at once (out of order, window update, ...) */
    uint8_t ack_urgent;     /* ... and should not wait for a reply to carry it: out of
                             * order, a hole filled, two segments unacknowledged */
    uint8_t unacked_segs;   /* full segments received since our last ACK */
    uint8_t fin_wanted;     /* the user closed its side: FIN after the data */
    uint8_t rst_pending;    /* abort: a RST is due */
    uint8_t err;            /* MOS_HOST_E* once closed by error */
    uint8_t eof;            /* the peer's FIN reached: reads end */
    uint8_t probe_due;      /* the persist timer fired: a window probe is due */
    uint32_t rst_seq;       /* the RST's sequence number */
    uint32_t adv_wnd;       /* window we last advertised (unscaled bytes) */
    /* a window update that reopened a closed window, sent again while
     * nothing comes (its loss would leave the peer to its persist timer) */
    uint64_t wupd_at;       /* next resend (0: off) */
    uint8_t wupd_n;         /* resends so far */
    /* receive buffer autotuning (dynamic right-sizing, as Linux's
     * tcp_rcv_space_adjust): bytes the user read per receiver RTT */
    uint64_t rcv_rtt;       /* receiver's RTT estimate from the TSecr of data (ns, 0: none) */
    uint64_t drs_at;        /* when this measurement began (0: not yet) */
    uint64_t drs_read;      /* rcv_read then */
    uint64_t drs_space;     /* the most read in one RTT so far */
    uint64_t now;           /* time of the last call */
    uint64_t rcv_read;      /* stream offset the user has read up to */
    /* counters */
    uint64_t segs_out, segs_in, rexmits, fast_rexmits, timeouts, bytes_out, bytes_in;
    uint64_t dup_in, ooo_in, paws_drops, probes;
    uint64_t undos;         /* recoveries undone: their resends proved needless */
    uint64_t wupd_resends;  /* window updates sent again (wupd_at) */
    uint64_t rcvbuf_grows;  /* times autotuning grew the receive buffer */
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

/* What a SYN cookie keeps of the SYN (RFC 4987 3.6): the peer's options,
 * coarsened (MSS from a table); the rest is rebuilt from the ACK. */
#define MOS_TCP_NO_WSCALE 0xFF
typedef struct mos_tcp_syn_opts {
    uint16_t mss;          /* the peer's MSS, at most what it sent */
    uint8_t wscale;        /* its window shift, or MOS_TCP_NO_WSCALE */
    uint8_t sack, ts;      /* SACK-permitted, timestamps */
} mos_tcp_syn_opts_t;

/* The SYN-ACK a listener with these defaults answers `syn` with, without
 * keeping any state (a SYN cookie's): sequence number iss, our TSval tsval
 * (used only if both sides do timestamps). */
void mos_tcp_host_synack(const mos_tcp_host_cfg_t *cfg, const mos_tcp_seg_t *syn, uint32_t iss,
                         uint32_t tsval, mos_tcp_host_out_t *out);

/* Passive open from a SYN cookie: `ack` completes a handshake whose SYN
 * (its sequence number ack->seq - 1, options `o`) was answered statelessly
 * with iss.  The connection is ESTABLISHED as if the SYN-ACK had been sent
 * from here; ack's payload is taken.  Returns MOS_HOST_EV_* bits
 * (MOS_HOST_EV_CONNECTED), or -1 if ack does not acknowledge iss. */
int mos_tcp_host_accept_cookie(mos_tcp_host_t *h, const mos_tcp_seg_t *ack, const uint8_t *payload,
                               const mos_tcp_syn_opts_t *o, uint32_t iss, uint64_t now);

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

/* Should output run now rather than wait for the application (1): an ACK
 * the sender needs at once, a resend, a reset, or data the windows let go.
 * A lone ACK for a request is not: the reply may carry it. */
int mos_tcp_host_out_now(const mos_tcp_host_t *h);

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
