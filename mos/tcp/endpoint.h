/* endpoint.h: one TCP endpoint, sans-I/O, for both roles.
 *
 * The monitor keeps two of these per flow as passive models (it infers
 * what each side did from the wire); the end host (next issue) keeps one
 * per connection and drives it with user actions and received segments.
 * Both go through the same transition table, mos_tcp_table, keyed by
 * (state, input) (RFC 9293 3.3.2 states, 3.10 event processing).
 *
 * Entry points, all fed by the caller, none reading a clock or a socket:
 *   mos_tcp_ep_sent()    a segment this endpoint sent (the monitor's sender model)
 *   mos_tcp_ep_input()   a segment this endpoint received
 *   mos_tcp_ep_action()  one input applied directly (a user call, or the
 *                        monitor's "this side's RST was accepted")
 * Each fills a mos_tcp_eff_t: what happened, in order, for the caller to
 * turn into events (monitor) or replies (end host).
 *
 * The hot functions are static inline: the monitor calls them for every
 * packet and they compile to what engine.c did before they moved here.
 */
#ifndef MOS_TCP_ENDPOINT_H
#define MOS_TCP_ENDPOINT_H
#include <stdint.h>
#include <string.h>

#include "options.h"
#include "rbuf.h"
#include "tcpseq.h"

/* RFC 9293 3.3.2 state names */
enum mos_tcp_state {
    MOS_TCPS_CLOSED = 0, MOS_TCPS_LISTEN, MOS_TCPS_SYN_SENT, MOS_TCPS_SYN_RCVD,
    MOS_TCPS_ESTABLISHED, MOS_TCPS_FIN_WAIT_1, MOS_TCPS_FIN_WAIT_2, MOS_TCPS_CLOSING,
    MOS_TCPS_TIME_WAIT, MOS_TCPS_CLOSE_WAIT, MOS_TCPS_LAST_ACK,
    MOS_TCPS_COUNT
};

/* Inputs of the transition table.  Received segments are classified once
 * (mos_tcp_ep_input); a segment may give two inputs, applied in this order
 * (RFC 9293 3.10.7.4: "check the ACK field" before "check the FIN bit"). */
enum mos_tcp_input {
    /* a segment received (RFC 9293 3.10.7) */
    MOS_TCP_RCV_SYN = 0,      /* SYN without ACK */
    MOS_TCP_RCV_SYNACK,       /* SYN+ACK that acknowledges our SYN */
    MOS_TCP_RCV_ACK_SYN,      /* ACK (no SYN) that acknowledges our SYN */
    MOS_TCP_RCV_ACK_FIN,      /* ACK of our FIN, no acceptable FIN */
    MOS_TCP_RCV_FIN,          /* acceptable FIN that does not acknowledge our FIN */
    MOS_TCP_RCV_FIN_ACK_FIN,  /* acceptable FIN that acknowledges our FIN too */
    MOS_TCP_RCV_RST,          /* acceptable RST (RFC 9293 3.10.7.3, RFC 5961 3.2) */
    /* actions of the local user (end host; RFC 9293 3.10.1, 3.10.4) */
    MOS_TCP_USER_ACTIVE_OPEN,
    MOS_TCP_USER_PASSIVE_OPEN,
    MOS_TCP_USER_CLOSE,
    /* actions inferred from the wire (the monitor's sender model) */
    MOS_TCP_SENT_SYN,         /* the active opener sent a SYN */
    MOS_TCP_SENT_SYNACK,      /* the passive opener sent its SYN (with or without ACK) */
    MOS_TCP_SENT_FIN,         /* a FIN acknowledging the peer's FIN, or any FIN before it */
    MOS_TCP_SENT_FIN_EARLY,   /* a FIN that does not acknowledge the peer's FIN: in
                               * CLOSE_WAIT it was sent before that FIN arrived, a
                               * simultaneous close (RFC 9293 3.6, Figure 13) */
    MOS_TCP_SENT_RST,         /* this side's RST was accepted by its peer */
    MOS_TCP_NINPUTS
};

/* Who a table row is for: the monitor's passive model, an end host, or both.
 * The rows that differ are where the monitor must infer what it cannot
 * see (a SYN-ACK it missed, a FIN to a side it saw no SYN from). */
enum { MOS_TCP_FOR_MONITOR = 1, MOS_TCP_FOR_HOST = 2, MOS_TCP_FOR_BOTH = 3 };

typedef struct mos_tcp_cell {
    uint8_t next;   /* new state + 1; 0: the input changes nothing in this state */
    uint8_t who;    /* MOS_TCP_FOR_* */
} mos_tcp_cell_t;

extern const mos_tcp_cell_t mos_tcp_table[MOS_TCPS_COUNT][MOS_TCP_NINPUTS];
extern const char *const mos_tcp_state_names[MOS_TCPS_COUNT];
extern const char *const mos_tcp_input_names[MOS_TCP_NINPUTS];

/* endpoint flags */
enum {
    MOS_EPF_ISN = 1,        /* ISN known (SYN seen, or guessed mid-stream) */
    MOS_EPF_SENT = 2,       /* sent at least one packet */
    MOS_EPF_ACKED = 4,      /* sent at least one ACK: ack/win valid */
    MOS_EPF_FIN = 8,        /* sent a FIN: fin_seq valid */
    MOS_EPF_WSCALE = 16,    /* its SYN carried window scale */
    MOS_EPF_SACKOK = 32,
    MOS_EPF_TS = 64,
    MOS_EPF_UNMON = 128,    /* monitoring stopped for this side */
};

/* what an endpoint received (rflags) */
enum {
    MOS_EPR_FIN = 1,        /* accepted its peer's FIN: fin_rcv valid */
    MOS_EPR_TSREC = 2,      /* ts_recent valid (RFC 7323 4.3) */
};

/* role bits: exactly one of MOS_TCP_MONITOR and MOS_TCP_HOST (the same bits
 * as MOS_TCP_FOR_*, so a cell applies when cell.who & role) */
enum {
    MOS_TCP_MONITOR = MOS_TCP_FOR_MONITOR, /* the monitor's passive model: monitor rows apply */
    MOS_TCP_HOST = MOS_TCP_FOR_HOST,       /* an end host: host rows apply */
    MOS_TCP_PASSIVE = 4,    /* the passive opener (the monitor's server side) */
};

/* The endpoint variables.  Names follow RFC 9293 3.3.1 where one applies
 * (the second name of each union); the first names are the ones the
 * monitor's Python layer reads.  In the monitor's two-model view, an
 * endpoint's SND.UNA, SND.WND and IRS are its peer's rcv_nxt, rcv_wnd and
 * iss (mos_tcp_ep_snd_una() and friends). */
typedef struct mos_tcp_ep {
    uint8_t state;         /* enum mos_tcp_state */
    uint8_t flags;         /* MOS_EPF_* */
    uint8_t wscale;        /* shift this endpoint advertised in its SYN (RFC 7323 2.2) */
    uint8_t syn_seen;      /* 1: its SYN seen (not guessed) */
    uint16_t mss;          /* MSS it advertised (RFC 9293 3.7.1) */
    uint8_t role;          /* MOS_TCP_MONITOR or MOS_TCP_HOST, | MOS_TCP_PASSIVE */
    uint8_t rflags;        /* MOS_EPR_*: what it received */
    union { uint32_t isn; uint32_t iss; };      /* its initial sequence number */
    uint32_t snd_nxt;      /* SND.NXT: highest sequence number sent + 1 (SYN/FIN count) */
    union { uint32_t ack; uint32_t rcv_nxt; };  /* last acknowledgement number it sent */
    union { uint32_t win; uint32_t rcv_wnd; };  /* last window it advertised, scaled */
    uint32_t rwin_edge;    /* right edge of its receive window: max(RCV.NXT + RCV.WND) */
    uint32_t fin_seq;      /* sequence number of its FIN */
    uint32_t tsval;        /* last TSval it sent (RFC 7323 3) */
    uint32_t ref_seq;      /* seq <-> 64-bit offset reference for what it sends */
    uint32_t ts_recent;    /* TS.Recent (RFC 7323 4.3): the peer's TSval it holds for PAWS */
    uint32_t fin_rcv;      /* sequence number of the peer's FIN it accepted: its stream ends
                            * there (RFC 9293 3.10.7.4 seventh: text after it is ignored) */
    uint64_t ref_off;
    uint64_t data_end;     /* highest stream offset of its data seen + 1 */
    uint64_t pkts;         /* packets sent */
    uint64_t bytes;        /* payload bytes sent (retransmissions included) */
    uint64_t consumed;     /* lowest read offset of any monitor in this side's buffer */
    mos_rbuf_t rbuf;       /* bytes RECEIVED by this endpoint (sent by the peer) */
} mos_tcp_ep_t;

/* the name the monitor has always used */
typedef mos_tcp_ep_t mos_ep_t;

/* One segment, as the endpoint needs it (no headers, no payload bytes). */
typedef struct mos_tcp_seg {
    uint32_t seq, ack;
    uint32_t len;                  /* payload bytes (SYN and FIN not counted) */
    uint16_t wnd;                  /* raw window field */
    uint8_t flags;                 /* MOS_TH_* */
    const mos_tcp_opts_t *opt;     /* parsed options (never NULL) */
} mos_tcp_seg_t;

enum { MOS_TCP_RST_NONE = 0, MOS_TCP_RST_ACCEPT = 1, MOS_TCP_RST_REJECT = 2 };
enum {
    MOS_TCP_HINT_ACK = 1,          /* an end host acknowledges this (data or FIN accepted) */
    MOS_TCP_HINT_CHALLENGE = 2,    /* RST in window but not at RCV.NXT: an end host sends a
                                    * challenge ACK instead of resetting (RFC 5961 3.2) */
};

#define MOS_TCP_MAX_TRANS 3

/* transition k of an effects record: old state in bits 8k..8k+3, new in
 * 8k+4..8k+7 (one integer, so the record can live in registers) */
static inline int mos_tcp_trans_from(uint32_t trans, int k) { return (trans >> (8 * k)) & 15; }
static inline int mos_tcp_trans_to(uint32_t trans, int k) { return (trans >> (8 * k + 4)) & 15; }

/* What one call did.  Fields past `trans` are valid only when said so
 * ("sent": set by mos_tcp_ep_sent, "input": by mos_tcp_ep_input). */
typedef struct mos_tcp_eff {
    uint8_t ntrans;                /* state transitions in trans, in order */
    uint8_t rexmit;                /* sent: repeats sequence space already sent */
    uint8_t rst;                   /* input: MOS_TCP_RST_* */
    uint8_t fin;                   /* input: FIN accepted */
    uint8_t hint;                  /* input: MOS_TCP_HINT_* */
    uint8_t _pad[3];               /* (the 8 bytes above are cleared as one) */
    uint32_t trans;                /* ntrans transitions: mos_tcp_trans_from/to(trans, k) */
    uint32_t snd_nxt0;             /* sent: SND.NXT before this segment */
    uint32_t data_len;             /* input: payload bytes accepted (after window clipping) */
    uint32_t data_skip;            /* input: leading payload bytes before the stream start */
    uint32_t oow_len;              /* input: bytes beyond the receive window (0: none) */
    uint32_t aft_len;              /* input: bytes after the FIN it accepted (0: none) */
    uint64_t rexmit_off;           /* sent, rexmit: stream offset repeated (len: seg->len) */
    uint64_t data_off;             /* input, data_len: stream offset of the accepted bytes */
    uint64_t oow_off;              /* input, oow_len: offset of the part beyond the window */
    uint64_t aft_off;              /* input, aft_len: offset of the part after the FIN */
} mos_tcp_eff_t;

/* the fields every call sets */
static inline void mos_tcp_eff_clear(mos_tcp_eff_t *eff)
{
    eff->ntrans = eff->rexmit = eff->rst = eff->fin = eff->hint = 0;
    eff->trans = 0; /* read only below ntrans, but compilers cannot tell */
}

/* ---------------------------------------------------------------- table */

/* Apply one input through the table; a transition is recorded in eff.
 * Returns 1 if the state changed.  ep->role must hold MOS_TCP_MONITOR or
 * MOS_TCP_HOST, or no row applies. */
static inline int mos_tcp_ep_step(mos_tcp_ep_t *restrict ep, int input,
                                  mos_tcp_eff_t *restrict eff)
{
    mos_tcp_cell_t c = mos_tcp_table[ep->state][input];
    if (!(c.who & ep->role)) return 0; /* an empty cell has who 0 */
    uint8_t to = (uint8_t)(c.next - 1);
    if (to == ep->state) return 0;
    if (eff->ntrans < MOS_TCP_MAX_TRANS) {
        uint32_t t = (uint32_t)(ep->state | to << 4) << (8 * eff->ntrans);
        eff->trans = eff->ntrans ? eff->trans | t : t;
        eff->ntrans++;
    }
    ep->state = to;
    return 1;
}

/* A user action or an inferred one; same as mos_tcp_ep_step, eff cleared first. */
int mos_tcp_ep_action(mos_tcp_ep_t *ep, int input, mos_tcp_eff_t *eff);

/* ---------------------------------------------------------------- helpers */

static inline void mos_tcp_ep_init_isn(mos_tcp_ep_t *ep, uint32_t isn)
{
    ep->isn = isn;
    ep->snd_nxt = isn + 1;
    ep->ref_seq = isn + 1; /* stream offset 0 is ISN+1 (DESIGN 2) */
    ep->ref_off = 0;
    ep->flags |= MOS_EPF_ISN;
}

/* RFC 7323 2.2: scaling applies only when both SYNs carried the option */
static inline int mos_tcp_wscale_on(const mos_tcp_ep_t *a, const mos_tcp_ep_t *b)
{
    return (a->flags & MOS_EPF_WSCALE) && (b->flags & MOS_EPF_WSCALE);
}

/* The receiver's window is known once it has sent an ACK and both SYNs
 * were seen (a guessed ISN or scale makes the edge a guess too). */
static inline int mos_tcp_window_known(const mos_tcp_ep_t *r, const mos_tcp_ep_t *peer)
{
    return (r->flags & MOS_EPF_ACKED) && r->syn_seen && peer->syn_seen;
}

/* The monitor's view of SND.UNA / SND.WND / IRS (RFC 9293 3.3.1): the peer's. */
static inline uint32_t mos_tcp_ep_snd_una(const mos_tcp_ep_t *ep, const mos_tcp_ep_t *peer)
{
    (void)ep;
    return peer->ack;
}
static inline uint32_t mos_tcp_ep_snd_wnd(const mos_tcp_ep_t *ep, const mos_tcp_ep_t *peer)
{
    (void)ep;
    return peer->win;
}
static inline uint32_t mos_tcp_ep_irs(const mos_tcp_ep_t *ep, const mos_tcp_ep_t *peer)
{
    (void)ep;
    return peer->isn;
}

/* Is a RST that `peer` sent to `ep` acceptable?  RFC 9293 3.10.7.3
 * (SYN-SENT: only if it acknowledges our SYN) and RFC 9293 3.10.7.4 with
 * RFC 5961 3.2 (otherwise its sequence number must be in the window).
 * The monitor accepts anywhere in the window, since it cannot tell which
 * RST the receiver will honour; *exact says whether it is at RCV.NXT (an
 * end host resets only then and sends a challenge ACK otherwise). */
static inline int mos_tcp_rst_acceptable(const mos_tcp_ep_t *ep, const mos_tcp_ep_t *peer,
                                         const mos_tcp_seg_t *seg, int *exact)
{
    *exact = 1;
    if (ep->state == MOS_TCPS_SYN_SENT)
        return (seg->flags & MOS_TH_ACK) && (ep->flags & MOS_EPF_ISN) && seg->ack == ep->isn + 1;
    if (ep->flags & MOS_EPF_ACKED) {
        *exact = seg->seq == ep->ack;
        uint32_t wnd = ep->win ? ep->win : 1;
        if (seq_in(seg->seq, ep->ack, ep->ack + wnd)) return 1;
        /* data in flight the receiver has not acknowledged yet */
        return (peer->flags & MOS_EPF_ISN) && seq_in(seg->seq, ep->ack, peer->snd_nxt + 1);
    }
    if (peer->flags & MOS_EPF_ISN) { /* the receiver never spoke: judge by the sender's own space */
        uint32_t lo = peer->snd_nxt - 1;
        /* having seen the sender's SYN, its RCV.NXT is at least ISN+1: a RST
         * below that is outside any window it can have (RFC 5961 3.2), for
         * instance one right after the SYN with the SYN's own number */
        if (peer->syn_seen && seq_lt(lo, peer->isn + 1)) lo = peer->isn + 1;
        return seq_in(seg->seq, lo, peer->snd_nxt + 65536);
    }
    return 1;
}

/* ---------------------------------------------------------------- PAWS */

/* RFC 7323 5.3 (PAWS) for a segment `peer` sent to R, before anything else
 * of it is processed (R1 comes before the window check R2): returns 1 if R
 * must not accept it (R1).  It only reads: TS.Recent is recorded (R3, and
 * from a SYN) by mos_tcp_ep_input, once the segment is taken.  Both roles
 * call it first: the monitor before the sender's model (a segment the
 * receiver drops must not move the sender's model either: it is an old
 * duplicate, or not from the sender at all), an end host before
 * mos_tcp_ep_input.
 *
 * PAWS applies once the flow negotiated timestamps (RFC 7323 3.2: both
 * SYNs carried the option).  Until the receiver's own SYN is seen, the
 * sender's offer is enough: a receiver that got a SYN with a Timestamps
 * option holds TS.Recent from it, and a segment claiming an older TSval
 * from the same sender before the SYN-ACK (a spoofed RST or FIN racing the
 * handshake) is what PAWS is for.  A SYN-ACK without the option turns it
 * off again.
 *
 * RST segments: RFC 7323 5.3 R1 exempts them ("and if the RST bit is not
 * set"), keeping RFC 1323's advice that a RST be acceptable whatever its
 * timestamp, as old duplicate RSTs should be rare and their cleanup more
 * useful than the check.  An end host follows that.  The monitor does not:
 * a RST carrying a TSval older than TS.Recent was not sent by the sender's
 * current incarnation (stacks send RSTs without timestamps, as Linux's
 * tcp_v4_send_reset, or with the current clock), so it is most likely
 * injected, and honouring it would end inspection of a connection that
 * goes on.  The cost of the choice is a flow kept until its idle timeout
 * if a real receiver did honour such a RST.
 *
 * TS.Recent is not expired after 24 days idle (RFC 7323 5.5): the model
 * keeps no clock, and the monitor's idle timeout ends flows long before. */
static inline int mos_tcp_ep_paws(const mos_tcp_ep_t *restrict R,
                                  const mos_tcp_ep_t *restrict peer,
                                  const mos_tcp_seg_t *restrict seg)
{
    const mos_tcp_opts_t *o = seg->opt;
    /* R1 needs a Timestamps option and a valid TS.Recent; timestamps
     * compare modulo 2^32, as sequence numbers (RFC 7323 5.2) */
    if (!(o->opts & MOS_OPT_TS) || !(R->rflags & MOS_EPR_TSREC) ||
        __builtin_expect(!seq_lt(o->tsval, R->ts_recent), 1))
        return 0;
    int negotiated = (peer->flags & MOS_EPF_TS) && (!R->syn_seen || (R->flags & MOS_EPF_TS));
    return negotiated && !((seg->flags & MOS_TH_RST) && (R->role & MOS_TCP_HOST));
}

/* TS.Recent after a segment R took (RFC 7323 4.3): a SYN's TSval starts
 * it; then R3, SEG.TSval >= TS.Recent and SEG.SEQ =< Last.ACK.sent (the
 * monitor's Last.ACK.sent is the last ACK it saw R send: it lags the real
 * one, so its TS.Recent lags too and PAWS errs on the side of accepting).
 * SEG.TSval >= TS.Recent needs no test here: the segment passed
 * mos_tcp_ep_paws, and where PAWS is off TS.Recent is never used. */
static inline void mos_tcp_ep_ts_recent(mos_tcp_ep_t *restrict R, const mos_tcp_seg_t *restrict seg)
{
    const mos_tcp_opts_t *o = seg->opt;
    if (!(o->opts & MOS_OPT_TS)) return;
    if (__builtin_expect(R->rflags & MOS_EPR_TSREC, 1)) {
        if ((R->flags & MOS_EPF_ACKED) && seq_leq(seg->seq, R->ack)) R->ts_recent = o->tsval;
    } else if (seg->flags & MOS_TH_SYN) {
        R->ts_recent = o->tsval;
        R->rflags |= MOS_EPR_TSREC;
    }
}

/* ---------------------------------------------------------------- sent */

/* The sender's model after a segment it sent (the monitor: a packet from
 * this side).  peer is the other endpoint (for window scaling and for
 * whether this FIN acknowledges the peer's).  eff: rexmit, rexmit_off,
 * snd_nxt0 and the transitions (SENT_SYN, SENT_SYNACK, SENT_FIN...).  A
 * RST changes no state here: whether it counts is the receiver's call
 * (mos_tcp_ep_input, then MOS_TCP_SENT_RST). */
static inline void mos_tcp_ep_sent(mos_tcp_ep_t *restrict S, const mos_tcp_ep_t *restrict peer,
                                   const mos_tcp_seg_t *restrict seg,
                                   mos_tcp_eff_t *restrict eff)
{
    uint8_t fl = seg->flags;
    uint32_t len = seg->len;
    mos_tcp_eff_clear(eff);
    S->pkts++;
    S->bytes += len;
    S->flags |= MOS_EPF_SENT;
    int rexmit = 0;
    int had_isn = S->flags & MOS_EPF_ISN;
    if (fl & MOS_TH_SYN) {
        if (!had_isn || !S->syn_seen) {
            mos_tcp_ep_init_isn(S, seg->seq);
            had_isn = 0;
        } else if (seg->seq == S->isn) {
            rexmit = 1;
        } else if (!(S->role & MOS_TCP_PASSIVE) && S->state == MOS_TCPS_SYN_SENT &&
                   !(fl & MOS_TH_ACK)) {
            mos_tcp_ep_init_isn(S, seg->seq); /* the client gave up on its first SYN: new ISN */
            had_isn = 0;
        }
        S->syn_seen = 1;
        const mos_tcp_opts_t *o = seg->opt;
        if (o->opts & MOS_OPT_MSS) S->mss = o->mss;
        if (o->opts & MOS_OPT_WSCALE) {
            S->flags |= MOS_EPF_WSCALE;
            S->wscale = o->wscale;
        }
        if (o->opts & MOS_OPT_SACKOK) S->flags |= MOS_EPF_SACKOK;
        if (o->opts & MOS_OPT_TS) S->flags |= MOS_EPF_TS;
    } else if (!had_isn) {
        mos_tcp_ep_init_isn(S, seg->seq - 1); /* mid-stream: this byte is offset 0 */
    }
    if (seg->opt->opts & MOS_OPT_TS) S->tsval = seg->opt->tsval;
    uint32_t syn = (fl & MOS_TH_SYN) ? 1 : 0;
    uint32_t dseq = seg->seq + syn;
    uint32_t end = dseq + len + ((fl & MOS_TH_FIN) ? 1 : 0);
    int64_t doff = seq_to_off(dseq, S->ref_seq, S->ref_off);
    if (had_isn && !syn && !(fl & MOS_TH_RST) && (len || (fl & MOS_TH_FIN)) &&
        seq_lt(dseq, S->snd_nxt))
        rexmit = 1;
    eff->snd_nxt0 = had_isn ? S->snd_nxt : dseq;
    /* a RST's sequence number is judged by the receiver, not believed */
    if (!(fl & MOS_TH_RST) && seq_gt(end, S->snd_nxt)) S->snd_nxt = end;
    if (len && !(fl & MOS_TH_RST) && doff + (int64_t)len > (int64_t)S->data_end) {
        S->data_end = (uint64_t)(doff + len);
        S->ref_seq = dseq + len;
        S->ref_off = S->data_end;
    }
    if (fl & MOS_TH_ACK) {
        if (!(S->flags & MOS_EPF_ACKED) || seq_gt(seg->ack, S->ack)) S->ack = seg->ack;
        /* RFC 7323 2.2: the window in a SYN is never scaled */
        uint32_t win = syn ? seg->wnd
                           : (uint32_t)seg->wnd << (mos_tcp_wscale_on(S, peer) ? S->wscale : 0);
        uint32_t edge = seg->ack + win;
        if (!(S->flags & MOS_EPF_ACKED) || seq_gt(edge, S->rwin_edge)) S->rwin_edge = edge;
        S->win = win;
        S->flags |= MOS_EPF_ACKED;
    }
    if (rexmit) {
        eff->rexmit = 1;
        eff->rexmit_off = doff < 0 ? 0 : (uint64_t)doff;
    }
    if (fl & MOS_TH_RST) return;
    if (syn) {
        if (S->role & MOS_TCP_PASSIVE) mos_tcp_ep_step(S, MOS_TCP_SENT_SYNACK, eff);
        else if (!(fl & MOS_TH_ACK)) mos_tcp_ep_step(S, MOS_TCP_SENT_SYN, eff);
    }
    if (fl & MOS_TH_FIN) { /* the sender's model follows what it sent, valid or not */
        /* a later FIN moves fin_seq until the receiver accepted one: then its
         * stream ended there (RFC 9293 3.10.7.4), and only an ACK of that FIN
         * acknowledges this side's FIN */
        if (!(S->flags & MOS_EPF_FIN) ||
            (seq_gt(end - 1, S->fin_seq) && !(peer->rflags & MOS_EPR_FIN)))
            S->fin_seq = end - 1;
        S->flags |= MOS_EPF_FIN;
        int acks_peer = (fl & MOS_TH_ACK) && (peer->flags & MOS_EPF_FIN) &&
                        seq_geq(seg->ack, peer->fin_seq + 1);
        mos_tcp_ep_step(S, acks_peer ? MOS_TCP_SENT_FIN : MOS_TCP_SENT_FIN_EARLY, eff);
    }
}

/* ---------------------------------------------------------------- input */

/* A segment this endpoint received from peer, after mos_tcp_ep_sent ran
 * on peer for it (the peer's model maps sequence numbers to the stream
 * offsets of what it sends, which are what this endpoint receives).
 * now: the segment's time (ns), for timers; the passive model keeps none.
 * eff: rst (then nothing else: RST payload never enters a stream), else
 * the transitions, fin, the accepted bytes and the out-of-window part. */
static inline void mos_tcp_ep_input(mos_tcp_ep_t *restrict R, const mos_tcp_ep_t *restrict peer,
                                    const mos_tcp_seg_t *restrict seg, uint64_t now,
                                    mos_tcp_eff_t *restrict eff)
{
    (void)now;
    uint8_t fl = seg->flags;
    uint32_t len = seg->len;
    mos_tcp_eff_clear(eff);
    eff->data_len = eff->data_skip = eff->oow_len = eff->aft_len = 0;
    if (fl & MOS_TH_RST) {
        int exact;
        if (mos_tcp_rst_acceptable(R, peer, seg, &exact)) {
            eff->rst = MOS_TCP_RST_ACCEPT;
            if (!exact) eff->hint = MOS_TCP_HINT_CHALLENGE;
            mos_tcp_ep_step(R, MOS_TCP_RCV_RST, eff);
        } else {
            eff->rst = MOS_TCP_RST_REJECT;
        }
        return;
    }
    mos_tcp_ep_ts_recent(R, seg);
    if ((fl & MOS_TH_ACK) && !(R->flags & MOS_EPF_ISN))
        mos_tcp_ep_init_isn(R, seg->ack - 1); /* mid-stream: its ISN guessed from the ACK */
    uint32_t syn = (fl & MOS_TH_SYN) ? 1 : 0;
    uint32_t dseq = seg->seq + syn;
    int64_t doff = seq_to_off(dseq, peer->ref_seq, peer->ref_off);
    /* the ACK of our SYN has rows only in the states before ESTABLISHED
     * (tests/test_tcp_states.py checks the table): skip it after them */
    int acks_syn = R->state < MOS_TCPS_ESTABLISHED && (fl & MOS_TH_ACK) &&
                   (R->flags & MOS_EPF_ISN) && seq_geq(seg->ack, R->isn + 1);
    int acks_fin = (fl & MOS_TH_ACK) && (R->flags & MOS_EPF_FIN) &&
                   seq_geq(seg->ack, R->fin_seq + 1);
    /* RFC 9293 3.10.7.4: a receiver drops a segment without ACK (past
     * SYN-SENT) or before the start of the stream, so such a FIN closes
     * nothing (it is how FIN-based evasion and scans look) */
    int fin = (fl & MOS_TH_FIN) && (fl & MOS_TH_ACK) && doff + (int64_t)len >= 0;
    if (__builtin_expect(R->rflags & MOS_EPR_FIN, 0)) {
        /* The first FIN accepted fixed the end of the stream (RFC 9293
         * 3.10.7.4: RCV.NXT moved over it; in CLOSE-WAIT, CLOSING, LAST-ACK
         * and TIME-WAIT segment text is ignored).  A FIN at another sequence
         * number is not a FIN any more, and the bytes sequenced after the
         * FIN are not in the stream: a receiver never accepts them. */
        if (fin && dseq + len != R->fin_rcv) fin = 0;
        int64_t foff = seq_to_off(R->fin_rcv, peer->ref_seq, peer->ref_off);
        if (doff + (int64_t)len > foff) {
            int64_t from = doff > foff ? doff : foff;
            eff->aft_off = (uint64_t)from;
            eff->aft_len = (uint32_t)(doff + (int64_t)len - from);
            len -= eff->aft_len;
        }
    } else if (fin) {
        R->rflags |= MOS_EPR_FIN;
        R->fin_rcv = dseq + len;
    }
    /* RFC 9293 3.10.7.2-3.10.7.4: SYN, then ACK, then FIN */
    if (syn && !(fl & MOS_TH_ACK)) mos_tcp_ep_step(R, MOS_TCP_RCV_SYN, eff);
    else if (acks_syn) mos_tcp_ep_step(R, syn ? MOS_TCP_RCV_SYNACK : MOS_TCP_RCV_ACK_SYN, eff);
    if (fin)
        mos_tcp_ep_step(R, acks_fin ? MOS_TCP_RCV_FIN_ACK_FIN : MOS_TCP_RCV_FIN, eff);
    else if (acks_fin)
        mos_tcp_ep_step(R, MOS_TCP_RCV_ACK_FIN, eff);
    eff->fin = (uint8_t)fin;
    if (fin) eff->hint = MOS_TCP_HINT_ACK;
    if (!len) return;
    eff->hint = MOS_TCP_HINT_ACK;
    if (doff < 0) { /* bytes before offset 0 (before ISN+1): not part of the stream */
        uint64_t skip = (uint64_t)(-doff);
        if (skip >= len) return;
        len -= (uint32_t)skip;
        dseq += (uint32_t)skip;
        eff->data_skip = (uint32_t)skip;
        doff = 0;
    }
    if (mos_tcp_window_known(R, peer)) { /* RFC 9293 3.10.7.4 first: segment acceptability */
        uint32_t edge = R->rwin_edge;
        if (!seq_lt(dseq, edge)) {
            eff->oow_off = (uint64_t)doff;
            eff->oow_len = len;
            return;
        }
        if (seq_gt(dseq + len, edge)) {
            uint32_t keep = edge - dseq;
            eff->oow_off = (uint64_t)doff + keep;
            eff->oow_len = len - keep;
            len = keep;
        }
    }
    eff->data_off = (uint64_t)doff;
    eff->data_len = len;
}

#endif
