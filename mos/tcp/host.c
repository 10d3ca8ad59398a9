/* host.c: the active TCP endpoint (host.h). */
#include "host.h"

#include <stdlib.h>
#include <string.h>

#define MS 1000000ull

void mos_tcp_host_cfg_default(mos_tcp_host_cfg_t *c)
{
    memset(c, 0, sizeof *c);
    c->mss = 1460;
    c->wscale = 7;
    c->sack = c->ts = 1;
    c->cubic = 1;
    c->rcvbuf = 256 * 1024;
    c->rcvbuf_max = 4 * 1024 * 1024;
    c->sndbuf = 256 * 1024;
    c->rto_init = 1000 * MS;
    c->rto_min = 200 * MS;
    c->rto_max = 60000 * MS;
    c->syn_retries = 5;
    c->retries = 12;
    c->delack = 40 * MS;
    c->time_wait = 60000 * MS;
}

static uint32_t pow2_at_least(uint32_t n)
{
    uint32_t p = 4096;
    while (p < n && p < (1u << 30)) p <<= 1;
    return p;
}

int mos_tcp_host_init(mos_tcp_host_t *h, const mos_tcp_host_cfg_t *cfg, mos_rbuf_pool_t *pool)
{
    memset(h, 0, sizeof *h);
    h->cfg = *cfg;
    if (h->cfg.mss < 64) h->cfg.mss = 64;
    if (h->cfg.wscale > 14) h->cfg.wscale = 14;
    if (h->cfg.rcvbuf < h->cfg.mss) h->cfg.rcvbuf = h->cfg.mss;
    /* the window must fit the field once shifted (RFC 7323 2.3: shift <= 14) */
    if (h->cfg.rcvbuf > (65535u << h->cfg.wscale)) h->cfg.rcvbuf = 65535u << h->cfg.wscale;
    if (h->cfg.rcvbuf_max > (65535u << h->cfg.wscale)) h->cfg.rcvbuf_max = 65535u << h->cfg.wscale;
    /* the send ring is taken with the first byte to send and given back
     * once everything sent is acknowledged: an idle connection holds none */
    h->sb_cap = pow2_at_least(cfg->sndbuf ? cfg->sndbuf : 1);
    h->sb = NULL;
    h->me.role = MOS_TCP_HOST;
    h->peer.role = MOS_TCP_MONITOR;
    if (mos_rbuf_init(&h->me.rbuf, h->cfg.rcvbuf, MOS_OVERLAP_FIRST, pool)) return -1;
    h->rto = h->cfg.rto_init;
    h->ssthresh = UINT32_MAX;
    return 0;
}

void mos_tcp_host_free(mos_tcp_host_t *h)
{
    mos_rbuf_free(&h->me.rbuf);
    free(h->sb);
    h->sb = NULL;
    free(h->segs);
    h->segs = NULL;
    h->nsegs = h->segs_cap = 0;
}

/* ---------------------------------------------------------------- helpers */

static inline uint32_t seq_of(const mos_tcp_host_t *h, uint64_t off)
{
    return h->me.iss + 1 + (uint32_t)off;
}

static inline uint64_t off_of(const mos_tcp_host_t *h, uint32_t seq)
{
    int64_t o = seq_to_off(seq, h->me.ref_seq, h->me.ref_off);
    return o < 0 ? 0 : (uint64_t)o;
}

static inline uint64_t sb_end(const mos_tcp_host_t *h) { return h->sb_off + h->sb_len; }

static inline uint32_t flight(const mos_tcp_host_t *h) { return h->me.snd_nxt - h->snd_una; }

static inline int fin_sent(const mos_tcp_host_t *h) { return (h->me.flags & MOS_EPF_FIN) != 0; }

/* Stream offset where the peer's data ends (its FIN), or -1. */
static inline int64_t peer_fin_off(const mos_tcp_host_t *h)
{
    if (!(h->me.rflags & MOS_EPR_FIN)) return -1;
    return seq_to_off(h->me.fin_rcv, h->peer.ref_seq, h->peer.ref_off);
}

/* RCV.NXT: what our ACKs say (the FIN counts once every byte before it came). */
static inline uint32_t rcv_nxt(const mos_tcp_host_t *h)
{
    uint64_t head = h->me.rbuf.head;
    uint32_t seq = h->peer.isn + 1 + (uint32_t)head;
    int64_t f = peer_fin_off(h);
    return (f >= 0 && (uint64_t)f == head) ? seq + 1 : seq;
}

static inline uint32_t ts_now(const mos_tcp_host_t *h, uint64_t now)
{
    return h->cfg.ts_base + (uint32_t)(now / MS);
}

/* The window we can offer: room left for bytes the user has not read. */
static inline uint32_t rcv_room(const mos_tcp_host_t *h)
{
    uint64_t unread = h->me.rbuf.head - h->rcv_read;
    return unread >= h->cfg.rcvbuf ? 0 : h->cfg.rcvbuf - (uint32_t)unread;
}

/* Wait before sending a window update again: long enough for the data
 * it lets go to arrive, far shorter than the peer's persist timer (an RTO
 * at least, 200 ms in Linux). */
static inline uint64_t wupd_gap(const mos_tcp_host_t *h)
{
    uint64_t rtt = h->rcv_rtt > h->srtt ? h->rcv_rtt : h->srtt;
    uint64_t g = rtt ? 2 * rtt + 1 * MS : 10 * MS;
    return g > 100 * MS ? 100 * MS : g;
}

/* The receiver's RTT from the TSecr of in-order data (RFC 7323 4.3: it
 * echoes our TSval of the ACK that let the data go), smoothed as RFC 6298
 * smooths SRTT.  The clock ticks in ms: a sample under a tick counts one. */
static void rcv_rtt_sample(mos_tcp_host_t *h, uint64_t now, uint32_t tsecr)
{
    uint32_t d = ts_now(h, now) - tsecr;
    if (d >= 60000) return; /* not one of ours, or wrapped: no sample */
    uint64_t r = (uint64_t)(d ? d : 1) * MS;
    h->rcv_rtt = h->rcv_rtt ? (7 * h->rcv_rtt + r) / 8 : r;
}

static void set_closed(mos_tcp_host_t *h, int err)
{
    h->me.state = MOS_TCPS_CLOSED;
    if (!h->err) h->err = (uint8_t)err;
    h->rto_at = h->persist_at = h->delack_at = h->tw_at = h->rack_at = h->tlp_at = 0;
    h->wupd_at = 0;
    h->syn_pending = h->ack_now = 0;
}

/* RFC 6298 2.2-2.3, with a sample of r ns */
static void rtt_sample(mos_tcp_host_t *h, uint64_t r)
{
    if (!h->srtt) {
        h->srtt = r;
        h->rttvar = r / 2;
    } else {
        uint64_t d = h->srtt > r ? h->srtt - r : r - h->srtt;
        h->rttvar = (3 * h->rttvar + d) / 4;
        h->srtt = (7 * h->srtt + r) / 8;
    }
    uint64_t var = 4 * h->rttvar;
    if (var < MS) var = MS; /* G: a 1 ms clock */
    h->rto = h->srtt + var;
    if (h->rto < h->cfg.rto_min) h->rto = h->cfg.rto_min;
    if (h->rto > h->cfg.rto_max) h->rto = h->cfg.rto_max;
}

/* Options both SYNs agreed on (RFC 7323 2.2, RFC 2018 2, RFC 9293 3.7.1). */
static void negotiate(mos_tcp_host_t *h)
{
    const mos_tcp_ep_t *p = &h->peer;
    int ws = (p->flags & MOS_EPF_WSCALE) && h->cfg.wscale != 255;
    h->snd_shift = ws ? p->wscale : 0;
    h->rcv_shift = ws ? h->cfg.wscale : 0;
    h->ts_on = h->cfg.ts && (p->flags & MOS_EPF_TS);
    h->sack_on = h->cfg.sack && (p->flags & MOS_EPF_SACKOK);
    uint32_t pm = p->mss ? p->mss : 536;
    uint32_t m = pm < h->cfg.mss ? pm : h->cfg.mss;
    if (h->ts_on) m -= 12; /* every segment carries NOP NOP TS */
    h->smss = (uint16_t)(m < 64 ? 64 : m);
    /* RFC 6928: IW = min(10*MSS, max(2*MSS, 14600)) */
    uint32_t iw = 10u * h->smss, cap = 2u * h->smss > 14600 ? 2u * h->smss : 14600;
    h->cwnd = iw < cap ? iw : cap;
    /* our window before the handshake was in whole bytes (a SYN's is unscaled) */
    if (!ws) {
        uint32_t lim = h->cfg.rcvbuf > 65535 ? 65535 : h->cfg.rcvbuf;
        h->cfg.rcvbuf = lim;
        h->cfg.rcvbuf_max = 0; /* nothing larger can be said */
        mos_rbuf_set_limit(&h->me.rbuf, lim);
    }
}

/* ---------------------------------------------------------------- scoreboard and RACK */

static inline uint32_t seg_len(const mos_tcp_host_seg_t *r) { return r->end - r->seq; }

/* RFC 6675 3 pipe: what is still in the network, sequence-wise (SACKed
 * and lost-not-yet-resent records are not). */
static inline uint32_t pipe_of(const mos_tcp_host_t *h)
{
    uint32_t f = flight(h), out = h->sacked_bytes + h->lost_bytes;
    return f > out ? f - out : 0;
}

/* A record for a segment [seq, end) sent for the first time at now, after
 * every other record.  -1: no memory (nothing is sent then). */
static int sb_record(mos_tcp_host_t *h, uint32_t seq, uint32_t end, uint64_t now)
{
    if (h->nsegs == h->segs_cap) {
        if (h->segs_cap >= MOS_HOST_MAX_SEGS) return -1; /* tiny segments: wait for ACKs */
        uint32_t cap = h->segs_cap ? 2 * h->segs_cap : 16;
        mos_tcp_host_seg_t *n = realloc(h->segs, cap * sizeof *n);
        if (!n) return -1;
        h->segs = n;
        h->segs_cap = cap;
    }
    mos_tcp_host_seg_t *r = &h->segs[h->nsegs++];
    r->seq = seq;
    r->end = end;
    r->xmit = now;
    r->flags = 0;
    return 0;
}

static void mark_lost(mos_tcp_host_t *h, mos_tcp_host_seg_t *r)
{
    if (r->flags & (MOS_SEG_LOST | MOS_SEG_SACKED)) return;
    r->flags |= MOS_SEG_LOST;
    h->lost_bytes += seg_len(r);
}

/* RACK_sent_after (RFC 8985 6.2): was (t1, s1) sent after (t2, s2)? */
static inline int sent_after(uint64_t t1, uint32_t s1, uint64_t t2, uint32_t s2)
{
    return t1 > t2 || (t1 == t2 && seq_gt(s1, s2));
}

/* RFC 8985 6.2 steps 2 and 3: record r was just delivered (cumulatively
 * acknowledged or SACKed) by an ACK echoing tsecr (0: none). */
static void rack_delivered(mos_tcp_host_t *h, const mos_tcp_host_seg_t *r, uint32_t tsecr,
                           uint64_t now)
{
    uint64_t rtt = now > r->xmit ? now - r->xmit : 0;
    if (r->flags & MOS_SEG_RETRANS) {
        /* step 2: an ACK sooner than the least RTT is for an earlier
         * transmission.  Its timestamp test is left out, but for
         * cumulative ACKs: for a segment above a hole the receiver echoes
         * the TSval of the last in-order one (RFC 7323 4.3), older than
         * any resend, and every SACKed resend would look ambiguous */
        if (!h->min_rtt || rtt < h->min_rtt) return;
        if (tsecr && h->ts_on && (int32_t)(tsecr - ts_now(h, r->xmit)) < 0) return;
    } else if (!h->min_rtt || rtt < h->min_rtt) {
        /* only a segment sent once times the path (Karn): an ACK for the
         * first copy of a resend would make min_RTT, and so the
         * reordering window, near zero */
        h->min_rtt = rtt ? rtt : 1;
    }
    if (sent_after(r->xmit, r->end, h->rack_xmit, h->rack_end)) {
        h->rack_rtt = rtt;
        h->rack_xmit = r->xmit;
        h->rack_end = r->end;
    }
    /* step 3: delivered below what was delivered before, never resent:
     * the network reordered it */
    if (seq_lt(r->end, h->rack_fack)) {
        if (!(r->flags & MOS_SEG_RETRANS)) h->rack_reord = 1;
    } else {
        h->rack_fack = r->end;
    }
}

/* RFC 8985 6.2 step 4: how long past RACK.rtt a segment may still come. */
static uint64_t reo_wnd(const mos_tcp_host_t *h)
{
    if (!h->rack_reord) {
        /* no reordering seen: in recovery, or once DupThresh segments are
         * SACKed, a segment sent before a delivered one is lost at once */
        if (h->in_recovery || h->sacked_bytes >= 3u * h->smss) return 0;
    }
    uint64_t w = (uint64_t)(h->reo_mult ? h->reo_mult : 1) * h->min_rtt / 4;
    return h->srtt && w > h->srtt ? h->srtt : w;
}

/* RFC 8985 6.2 step 5 (and 6.3): mark lost each record sent before the
 * most recently delivered one once RACK.rtt plus the reordering window
 * passed since it went; arm the reordering timer for the others. */
static void rack_detect(mos_tcp_host_t *h, uint64_t now)
{
    uint64_t wait = 0, win = reo_wnd(h);
    h->rack_at = 0;
    if (!h->rack_xmit) return;
    for (uint32_t i = 0; i < h->nsegs; i++) {
        mos_tcp_host_seg_t *r = &h->segs[i];
        if (r->flags & (MOS_SEG_SACKED | MOS_SEG_LOST)) continue;
        if (!sent_after(h->rack_xmit, h->rack_end, r->xmit, r->end)) continue;
        uint64_t due = r->xmit + h->rack_rtt + win;
        if (due <= now) mark_lost(h, r);
        else if (due - now > wait) wait = due - now;
    }
    if (wait) h->rack_at = now + wait;
}

/* Records below SND.UNA are delivered: gone (a record cut by a partial
 * ACK keeps its rest).  Returns an RTT sample (ns, 0: none): the time
 * since the newest of them went, if it went once (Karn) and this ACK
 * delivered it. */
static uint64_t sb_acked(mos_tcp_host_t *h, uint32_t ack, uint32_t tsecr, uint64_t now)
{
    uint32_t k = 0;
    uint64_t sent = 0;
    while (k < h->nsegs && seq_leq(h->segs[k].end, ack)) {
        mos_tcp_host_seg_t *r = &h->segs[k++];
        if (r->flags & MOS_SEG_SACKED) {
            h->sacked_bytes -= seg_len(r);
        } else {
            rack_delivered(h, r, tsecr, now);
            if (!(r->flags & MOS_SEG_RETRANS) && r->xmit > sent) sent = r->xmit;
        }
        if (r->flags & MOS_SEG_LOST) h->lost_bytes -= seg_len(r);
    }
    if (k) {
        memmove(h->segs, h->segs + k, (h->nsegs - k) * sizeof *h->segs);
        h->nsegs -= k;
    }
    if (h->nsegs && seq_lt(h->segs[0].seq, ack)) {
        mos_tcp_host_seg_t *r = &h->segs[0];
        uint32_t cut = ack - r->seq;
        if (r->flags & MOS_SEG_SACKED) h->sacked_bytes -= cut;
        if (r->flags & MOS_SEG_LOST) h->lost_bytes -= cut;
        r->seq = ack;
    }
    if (!h->nsegs && h->segs) { /* all delivered: an idle connection holds no records */
        free(h->segs);
        h->segs = NULL;
        h->segs_cap = 0;
    }
    return sent && now > sent ? now - sent : 0;
}

/* A D-SACK (RFC 2883 4: a first block below the ACK or inside the
 * second) for [l, r): the peer got those bytes twice.  If we had resent
 * them in this recovery, that resend was needless: RACK widens its
 * reordering window (RFC 8985 6.2 step 4), and once every resend of the
 * episode is D-SACKed, the window it cut comes back (RFC 3708 3's test,
 * RFC 4015's response).  Copies the network made (no resend of ours)
 * change nothing. */
static void undo_recovery(mos_tcp_host_t *h)
{
    h->undo_ok = 0;
    if (h->cwnd < h->prior_cwnd) h->cwnd = h->prior_cwnd;
    if (h->ssthresh < h->prior_ssthresh) h->ssthresh = h->prior_ssthresh;
    h->cub_wmax = h->prior_wmax;
    h->cub_epoch = 0;
    h->in_recovery = 0;
    h->undos++;
}

static void dsack(mos_tcp_host_t *h, uint32_t l, uint32_t r)
{
    if (!seq_lt(l, r)) return;
    for (unsigned i = 0; i < h->nundo; i++) {
        if (!seq_in(h->undo_seq[i], l, r)) continue;
        h->undo_seq[i] = h->undo_seq[--h->nundo];
        if (h->reo_mult < 16) h->reo_mult++;
        h->reo_persist = 16;
        if (!h->nundo && h->undo_ok) undo_recovery(h);
        return;
    }
}

/* SACK blocks of an ACK (RFC 2018 3): records they cover are delivered.
 * Blocks are checked against the window; one only partly covering a
 * record leaves it (our records are the segments the peer got). */
static void sb_sacked(mos_tcp_host_t *h, const mos_tcp_opts_t *o, uint64_t now)
{
    unsigned n = o->nsack > MOS_HOST_MAX_SACK ? MOS_HOST_MAX_SACK : o->nsack;
    if (n && (seq_leq(o->sack[1], h->snd_una) ||
              (n > 1 && seq_geq(o->sack[0], o->sack[2]) && seq_leq(o->sack[1], o->sack[3]))))
        dsack(h, o->sack[0], o->sack[1]);
    for (unsigned b = 0; b < n; b++) {
        uint32_t l = o->sack[2 * b], r = o->sack[2 * b + 1];
        if (!seq_lt(l, r) || seq_leq(r, h->snd_una) || seq_gt(r, h->me.snd_nxt)) continue;
        for (uint32_t i = 0; i < h->nsegs; i++) {
            mos_tcp_host_seg_t *s = &h->segs[i];
            if (seq_geq(s->seq, r)) break;
            if (seq_lt(s->seq, l) || seq_gt(s->end, r) || (s->flags & MOS_SEG_SACKED)) continue;
            if (s->flags & MOS_SEG_LOST) {
                s->flags &= (uint8_t)~MOS_SEG_LOST;
                h->lost_bytes -= seg_len(s);
            }
            s->flags |= MOS_SEG_SACKED;
            h->sacked_bytes += seg_len(s);
            rack_delivered(h, s, 0, now); /* no timestamp test: see rack_delivered */
            h->tlp_out = 0;
        }
    }
}

/* ---------------------------------------------------------------- congestion control */

/* CUBIC's constants (RFC 9438 4.1-4.3): C, beta_cubic, alpha_cubic =
 * 3 (1 - beta) / (1 + beta), the AIMD step that makes it as fair as Reno */
#define CUBIC_C 0.4
#define CUBIC_BETA 0.7
#define CUBIC_ALPHA (3.0 * (1.0 - CUBIC_BETA) / (1.0 + CUBIC_BETA))

static double cube_root(double x)
{
    if (x <= 0) return 0;
    double r = x < 1 ? 1 : x / 3; /* Newton's method: r <- r - (r^3 - x) / 3r^2 */
    for (int i = 0; i < 60; i++) {
        double n = r - (r * r * r - x) / (3 * r * r);
        if (n == r || (n > r ? n - r : r - n) < 1e-9 * r) return n;
        r = n;
    }
    return r;
}

/* A congestion event (a recovery or an RTO) with f bytes in flight; returns
 * the new slow start threshold.  Reno halves (RFC 5681 (4)); CUBIC keeps
 * beta_cubic of it, and remembers the window it had (RFC 9438 4.6-4.7:
 * less, if the last event was at a larger one: fast convergence). */
static uint32_t cc_congestion_event(mos_tcp_host_t *h, uint32_t f)
{
    uint32_t s = f / 2;
    if (h->cfg.cubic) {
        double w = (double)h->cwnd / h->smss;
        h->cub_wmax = w < h->cub_wmax ? w * (1.0 + CUBIC_BETA) / 2.0 : w;
        h->cub_epoch = 0;
        s = (uint32_t)((double)f * CUBIC_BETA);
    }
    return s > 2u * h->smss ? s : 2u * h->smss;
}

/* Congestion avoidance on an ACK that delivered `acked` bytes.  Reno: one
 * SMSS per cwnd acknowledged, counted in bytes (RFC 5681 3.1).  CUBIC
 * (RFC 9438 4.2-4.5): the window follows W_cubic(t) = C (t - K)^3 + W_max
 * from the epoch's start, never below W_est, Reno's window over the same
 * time: on a short round trip (a LAN, a veth) W_est leads, and CUBIC is
 * AIMD with a gentler decrease. */
static void cc_avoid(mos_tcp_host_t *h, uint32_t acked, uint64_t now)
{
    if (!h->cfg.cubic) {
        h->ca_acked += acked;
        if (h->ca_acked >= h->cwnd) {
            h->ca_acked -= h->cwnd;
            h->cwnd += h->smss;
        }
        return;
    }
    double smss = h->smss, cw = (double)h->cwnd / smss, segs = (double)acked / smss;
    if (!h->cub_epoch) {
        h->cub_epoch = now ? now : 1;
        if (h->cub_wmax <= cw) {
            h->cub_k = 0;
            h->cub_wmax = cw;
        } else {
            h->cub_k = cube_root((h->cub_wmax - cw) / CUBIC_C);
        }
        h->cub_west = cw;
    }
    double t = now > h->cub_epoch ? (double)(now - h->cub_epoch) / 1e9 : 0;
    double rtt = (double)(h->srtt ? h->srtt : MS) / 1e9;
    double d = t - h->cub_k, e = t + rtt - h->cub_k;
    double wt = CUBIC_C * d * d * d + h->cub_wmax;         /* W_cubic(t) */
    double target = CUBIC_C * e * e * e + h->cub_wmax;     /* W_cubic(t + RTT), 4.2 */
    if (target < cw) target = cw;
    else if (target > 1.5 * cw) target = 1.5 * cw;
    h->cub_west += (h->cub_west >= h->cub_wmax ? 1.0 : CUBIC_ALPHA) * segs / cw;
    double next = wt < h->cub_west ? h->cub_west                 /* Reno-friendly, 4.3 */
                                   : cw + (target - cw) * segs / cw; /* concave, convex: 4.4-4.5 */
    double bytes = next * smss;
    if (bytes > (double)h->cwnd && bytes < 4e9) h->cwnd = (uint32_t)bytes;
}

/* Loss found (RACK, duplicate ACKs or an early retransmit): fast recovery
 * (RFC 5681 3.2, RFC 6582 3.2 2; with SACK, RFC 6675 5: cwnd = ssthresh
 * and the pipe governs).  Not while an RTO's resends are going out: those
 * already lowered the window (RFC 6582 4.1's reason for recover). */
static void enter_recovery(mos_tcp_host_t *h)
{
    if (h->in_recovery || h->after_rto) return;
    uint32_t f = flight(h);
    h->prior_cwnd = h->cwnd;
    h->prior_ssthresh = h->ssthresh;
    h->prior_wmax = h->cub_wmax;
    h->undo_ok = 1;
    h->nundo = 0;
    if (h->reo_persist && !--h->reo_persist) h->reo_mult = 1; /* RFC 8985 6.2 step 4 */
    h->ssthresh = cc_congestion_event(h, f);
    /* with SACK, PRR (RFC 6937) sets cwnd on each ACK from here */
    h->cwnd = h->sack_on ? h->ssthresh : h->ssthresh + 3u * h->smss;
    h->prr_delivered = h->prr_out = 0;
    h->recover_fs = f;
    h->recover = h->me.snd_nxt;
    h->in_recovery = 1;
    h->rexmit_credit = 1; /* RFC 6675 5 (4.3): the first loss goes at once, pipe or not */
    h->fast_rexmits++;
    h->rtt_start = 0;
}

/* RFC 6937 3: on each ACK in recovery, let out what this ACK delivered,
 * scaled down to ssthresh over the recovery (proportional), and once the
 * pipe is below ssthresh, grow back towards it no faster than slow start
 * (PRR-SSRB): the window ends near ssthresh, not empty. */
static void prr_ack(mos_tcp_host_t *h, uint32_t delivered)
{
    h->prr_delivered += delivered;
    uint32_t pipe = pipe_of(h);
    int64_t sndcnt;
    if (pipe > h->ssthresh) {
        uint64_t fs = h->recover_fs ? h->recover_fs : 1;
        sndcnt = (int64_t)(((uint64_t)h->prr_delivered * h->ssthresh + fs - 1) / fs) -
                 (int64_t)h->prr_out;
    } else {
        int64_t lim = (int64_t)h->prr_delivered - (int64_t)h->prr_out;
        if (lim < (int64_t)delivered) lim = delivered;
        lim += h->smss;
        sndcnt = (int64_t)(h->ssthresh - pipe);
        if (sndcnt > lim) sndcnt = lim;
    }
    if (sndcnt < 0) sndcnt = 0;
    h->cwnd = pipe + (uint32_t)sndcnt;
}

/* The probe timeout (RFC 8985 7.2): two SRTTs, at least 2 ms; with one
 * segment out the peer may delay its ACK: 10 ms more.  Both are below
 * Linux's (10 ms) and the RFC's WCDelAckT (200 ms): on the sub-millisecond
 * paths a user-level stack serves, a tail that waits that long costs more
 * than a whole flight, and a needless probe costs one segment (measured
 * through the impairment box, mos sending 20 MB: 4.8-5.5x clean with 10 ms
 * and 200 ms, 2.7-4.3x with these).  Never after the RTO.  Armed while
 * data is out, in recovery too: a lost resend that nothing sent later can
 * reveal would otherwise wait for the RTO.  A second probe follows an
 * unanswered first one after twice the PTO, before the RTO (RFC 8985 7.3
 * has the RTO next; kMaxTLPs = 2 as QUIC's recovery drafts had, whose RFC
 * 9002 6.2 keeps probing with backoff): a lone ACK per flight is common
 * from a receiver that coalesces its ACKs, and when it and one probe are
 * lost, a 200 ms RTO costs more than a whole transfer on these paths. */
static void arm_pto(mos_tcp_host_t *h, uint64_t now)
{
    h->tlp_at = 0;
    if (!h->srtt || h->tlp_out >= MOS_HOST_MAX_PROBES || h->after_rto ||
        h->snd_una == h->me.snd_nxt)
        return;
    uint64_t pto = 2 * h->srtt;
    if (pto < 2 * MS) pto = 2 * MS;
    if (flight(h) <= h->smss) pto += 10 * MS;
    pto <<= h->tlp_out;
    h->tlp_at = now + pto;
    if (h->rto_at && h->tlp_at > h->rto_at) h->tlp_at = 0;
}

/* ---------------------------------------------------------------- opening */

void mos_tcp_host_connect(mos_tcp_host_t *h, uint32_t iss, uint64_t now)
{
    mos_tcp_eff_t eff;
    h->now = now;
    mos_tcp_ep_init_isn(&h->me, iss);
    h->peer.role = MOS_TCP_MONITOR | MOS_TCP_PASSIVE;
    mos_tcp_ep_action(&h->me, MOS_TCP_USER_ACTIVE_OPEN, &eff);
    h->snd_una = iss;
    h->recover = iss;
    h->syn_pending = 1;
    h->quickack = 16;
}

int mos_tcp_host_accept(mos_tcp_host_t *h, const mos_tcp_seg_t *seg, uint32_t iss, uint64_t now)
{
    mos_tcp_eff_t eff;
    if ((seg->flags & (MOS_TH_SYN | MOS_TH_ACK | MOS_TH_RST)) != MOS_TH_SYN) return -1;
    h->now = now;
    h->me.role = MOS_TCP_HOST | MOS_TCP_PASSIVE;
    mos_tcp_ep_action(&h->me, MOS_TCP_USER_PASSIVE_OPEN, &eff);
    mos_tcp_ep_init_isn(&h->me, iss);
    mos_tcp_ep_sent(&h->peer, &h->me, seg, &eff);
    mos_tcp_ep_input(&h->me, &h->peer, seg, now, &eff); /* LISTEN -> SYN-RECEIVED */
    h->snd_una = iss;
    h->recover = iss;
    h->snd_wnd = seg->wnd; /* a SYN's window is never scaled */
    h->snd_wl1 = seg->seq;
    h->snd_wl2 = seg->ack;
    negotiate(h);
    h->syn_pending = 1;
    h->quickack = 16; /* slow start wants every ACK (Linux's quick ACK mode) */
    return 0;
}

/* ---------------------------------------------------------------- SYN cookies */

static void syn_options(const mos_tcp_host_cfg_t *cfg, uint8_t offered, uint32_t tsval,
                        uint32_t tsecr, mos_tcp_opts_t *o);

void mos_tcp_host_synack(const mos_tcp_host_cfg_t *cfg, const mos_tcp_seg_t *syn, uint32_t iss,
                         uint32_t tsval, mos_tcp_host_out_t *out)
{
    const mos_tcp_opts_t *so = syn->opt;
    uint8_t offered = (uint8_t)(((so->opts & MOS_OPT_WSCALE) ? MOS_EPF_WSCALE : 0) |
                                ((so->opts & MOS_OPT_SACKOK) ? MOS_EPF_SACKOK : 0) |
                                ((so->opts & MOS_OPT_TS) ? MOS_EPF_TS : 0));
    uint32_t room = cfg->rcvbuf < cfg->mss ? cfg->mss : cfg->rcvbuf;
    /* only our TSval can carry the peer's window shift and SACK-permitted
     * back: without timestamps the SYN-ACK offers neither (as Linux) */
    if (!cfg->ts || !(offered & MOS_EPF_TS)) offered = 0;
    memset(out, 0, sizeof *out);
    out->seq = iss;
    out->ack = syn->seq + 1; /* data in the SYN is not acknowledged: no state keeps it */
    out->flags = MOS_TH_SYN | MOS_TH_ACK;
    out->wnd = (uint16_t)(room > 65535 ? 65535 : room); /* a SYN's window is unscaled */
    syn_options(cfg, offered, tsval, so->tsval, &out->opt);
}

int mos_tcp_host_accept_cookie(mos_tcp_host_t *h, const mos_tcp_seg_t *ack, const uint8_t *payload,
                               const mos_tcp_syn_opts_t *o, uint32_t iss, uint64_t now)
{
    mos_tcp_opts_t so, ao;
    mos_tcp_seg_t syn, a2;
    mos_tcp_host_out_t out;
    if ((ack->flags & (MOS_TH_SYN | MOS_TH_ACK | MOS_TH_RST)) != MOS_TH_ACK || ack->ack != iss + 1)
        return -1;
    /* the SYN as the cookie remembers it */
    memset(&so, 0, sizeof so);
    so.opts = MOS_OPT_MSS;
    so.mss = o->mss;
    if (o->wscale != MOS_TCP_NO_WSCALE) {
        so.opts |= MOS_OPT_WSCALE;
        so.wscale = o->wscale;
    }
    if (o->sack) so.opts |= MOS_OPT_SACKOK;
    if (o->ts && (ack->opt->opts & MOS_OPT_TS)) {
        so.opts |= MOS_OPT_TS;
        so.tsval = ack->opt->tsval;
    }
    syn = (mos_tcp_seg_t){ack->seq - 1, 0, 0, ack->wnd, MOS_TH_SYN, &so};
    mos_tcp_host_accept(h, &syn, iss, now);
    /* our SYN-ACK left earlier, from no state: the endpoint takes it as sent */
    mos_tcp_host_output(h, now, &out);
    h->segs_out = 0;
    /* the ACK's TSecr echoes the cookie's TSval, whose low bits are options,
     * not a send time: no RTT sample from it (RFC 7323 4.1 allows skipping) */
    ao = *ack->opt;
    ao.tsecr = 0;
    a2 = *ack;
    a2.opt = &ao;
    return mos_tcp_host_input(h, &a2, payload, now);
}

/* ---------------------------------------------------------------- input */

/* The ACK field of an acceptable segment: SND.UNA, the scoreboard, RTT,
 * loss detection, congestion control. */
static int ack_in(mos_tcp_host_t *h, const mos_tcp_seg_t *seg, uint64_t now)
{
    int ev = 0;
    uint32_t ack = seg->ack;
    const mos_tcp_opts_t *o = seg->opt;
    uint32_t tsecr = (o->opts & MOS_OPT_TS) ? o->tsecr : 0;
    int advanced = seq_gt(ack, h->snd_una) && seq_leq(ack, h->me.snd_nxt);
    uint32_t una0 = h->snd_una, sacked0 = h->sacked_bytes; /* for RFC 6937's DeliveredData */
    uint64_t rtt = advanced ? sb_acked(h, ack, tsecr, now) : 0;
    if (h->sack_on && (o->opts & MOS_OPT_SACK) && seq_geq(ack, h->snd_una))
        sb_sacked(h, o, now);
    if (advanced) {
        uint64_t to = off_of(h, ack);
        if (to > sb_end(h)) to = sb_end(h); /* the FIN's sequence number holds no byte */
        uint32_t acked = to > h->sb_off ? (uint32_t)(to - h->sb_off) : 0; /* data bytes */
        if (to > h->sb_off) {
            h->sb_len -= to - h->sb_off;
            h->sb_off = to;
            ev |= MOS_HOST_EV_WRITABLE;
            if (!h->sb_len) {
                free(h->sb);
                h->sb = NULL;
            }
        }
        h->snd_una = ack;
        h->tlp_out = 0;
        /* RTT: from the send time of the newest segment this ACK
         * delivered (ns, where a timestamp has 1 ms: a sub-millisecond
         * path needs it), else RFC 7323 4.1's timestamps (after resends),
         * else one timed segment (Karn) */
        if (rtt) {
            rtt_sample(h, rtt);
            if (h->rtt_start && seq_geq(ack, h->rtt_seq)) h->rtt_start = 0;
        } else if (h->ts_on && (o->opts & MOS_OPT_TS) && o->tsecr) {
            uint32_t d = ts_now(h, now) - o->tsecr;
            if (d < 600000) rtt_sample(h, (uint64_t)d * MS + MS / 2);
        } else if (h->rtt_start && seq_geq(ack, h->rtt_seq)) {
            rtt_sample(h, now - h->rtt_start);
            h->rtt_start = 0;
        }
        h->nretries = 0;
        if (h->after_rto && seq_geq(ack, h->recover)) h->after_rto = 0; /* all resent arrived */
        if (h->in_recovery) {
            if (seq_geq(ack, h->recover) && h->undo_ok && !h->nundo) {
                undo_recovery(h); /* nothing resent, or all D-SACKed: see below */
            } else if (seq_geq(ack, h->recover)) { /* full ACK: over (RFC 6582 3.2 3) */
                /* with SACK, PRR kept the pipe near ssthresh: cwnd = ssthresh
                 * (RFC 6937 3); else RFC 6582 3.2 3 (1), at least two
                 * segments so that a delayed ACK cannot stall the next round */
                uint32_t f = flight(h), m = (f > h->smss ? f : h->smss) + h->smss;
                h->cwnd = h->sack_on || h->ssthresh < m ? h->ssthresh : m;
                h->in_recovery = 0;
            } else if (!h->sack_on) {
                /* partial ACK without SACK: the next hole now (RFC 6582 3.2
                 * 5), deflate by what it acked */
                if (h->nsegs) mark_lost(h, &h->segs[0]);
                h->rexmit_credit = 1;
                h->cwnd = h->cwnd > acked ? h->cwnd - acked + h->smss : h->smss;
            }
        } else if (!acked) {
            /* only the SYN or the FIN: no data left the network */
        } else if (h->cwnd < h->ssthresh) {
            h->cwnd += acked < h->smss ? acked : h->smss; /* slow start (RFC 5681 3.1) */
        } else {
            cc_avoid(h, acked, now);
        }
        h->dupacks = 0;
        h->rto_at = h->snd_una == h->me.snd_nxt ? 0 : now + h->rto;
        if (h->snd_una == h->me.snd_nxt) h->persist_backoff = 0;
    } else if (ack == h->snd_una && seg->len == 0 && !(seg->flags & (MOS_TH_SYN | MOS_TH_FIN)) &&
               h->snd_una != h->me.snd_nxt &&
               ((uint32_t)seg->wnd << h->snd_shift) == h->snd_wnd &&
               (!h->sack_on || h->sacked_bytes != sacked0)) {
        /* a duplicate ACK (RFC 5681 2; with SACK, only one that SACKs new
         * data, RFC 6675 2: a repeated ACK or a D-SACK for a segment the
         * network duplicated says nothing was lost) */
        h->dupacks++;
        /* loss is declared by three duplicates, or with fewer than four
         * segments out and nothing new to send, by as many duplicates as
         * there are segments beyond the first (RFC 5827); with SACK, RACK
         * below finds it too */
        uint32_t out_segs = (flight(h) + h->smss - 1) / h->smss;
        int lost = h->dupacks >= 3 ||
                   (out_segs < 4 && off_of(h, h->me.snd_nxt) >= sb_end(h) &&
                    h->dupacks >= (out_segs > 1 ? out_segs - 1 : 1));
        if (!h->in_recovery && !h->after_rto && lost && h->nsegs) {
            /* fast retransmit (RFC 5681 3.2): the segment at SND.UNA */
            mark_lost(h, &h->segs[0]);
            enter_recovery(h);
        } else if (h->in_recovery && !h->sack_on) {
            h->cwnd += h->smss; /* each further duplicate: a segment left the network */
        }
    }
    /* time-based loss detection (RFC 8985 6.2) on what this ACK delivered */
    if (h->sack_on && h->snd_una != h->me.snd_nxt) {
        rack_detect(h, now);
        if (h->lost_bytes) enter_recovery(h);
    }
    /* every segment this recovery took for lost arrived after all, and
     * whatever it resent came back D-SACKed (or nothing went yet): the
     * network reordered, nothing was lost, and the window cut goes back
     * (RFC 3708's test by arrival, RFC 4015's response) */
    if (h->in_recovery && h->undo_ok && !h->nundo && !h->lost_bytes) undo_recovery(h);
    if (h->in_recovery && h->sack_on) {
        int64_t d = (int64_t)(uint32_t)(h->snd_una - una0) + (int64_t)h->sacked_bytes -
                    (int64_t)sacked0;
        prr_ack(h, d > 0 ? (uint32_t)d : 0);
    }
    if (h->snd_una != h->me.snd_nxt && (advanced || (o->opts & MOS_OPT_SACK))) arm_pto(h, now);
    else if (h->snd_una == h->me.snd_nxt) h->tlp_at = h->rack_at = 0;
    /* the send window (RFC 9293 3.10.7.4 fifth: SND.WL1, SND.WL2) */
    if (seq_lt(h->snd_wl1, seg->seq) ||
        (h->snd_wl1 == seg->seq && seq_leq(h->snd_wl2, ack))) {
        uint32_t w = (seg->flags & MOS_TH_SYN) ? seg->wnd : (uint32_t)seg->wnd << h->snd_shift;
        if (w > h->snd_wnd && h->snd_wnd == 0) {
            h->persist_at = 0;
            h->persist_backoff = 0;
        }
        h->snd_wnd = w;
        h->snd_wl1 = seg->seq;
        h->snd_wl2 = ack;
    }
    return ev;
}

int mos_tcp_host_input(mos_tcp_host_t *h, const mos_tcp_seg_t *seg, const uint8_t *payload,
                       uint64_t now)
{
    mos_tcp_eff_t se, eff;
    int ev = 0;
    uint8_t st0 = h->me.state;
    h->now = now;
    h->segs_in++;
    if (st0 == MOS_TCPS_CLOSED || st0 == MOS_TCPS_LISTEN) return 0;
    if (seg->flags & MOS_TH_RST) {
        int exact;
        if (!mos_tcp_rst_acceptable(&h->me, &h->peer, seg, &exact)) return 0;
        if (!exact && st0 != MOS_TCPS_SYN_SENT) { /* RFC 5961 3.2: a challenge ACK */
            h->ack_now = 1;
            return MOS_HOST_EV_OUTPUT;
        }
        if (st0 == MOS_TCPS_TIME_WAIT) set_closed(h, 0); /* RFC 1337 aside: the wait ends */
        else set_closed(h, st0 == MOS_TCPS_SYN_SENT ? MOS_HOST_ECONNREFUSED
                                                     : MOS_HOST_ECONNRESET);
        return MOS_HOST_EV_CLOSED | MOS_HOST_EV_READABLE | MOS_HOST_EV_WRITABLE;
    }
    if (st0 == MOS_TCPS_SYN_SENT && (seg->flags & MOS_TH_ACK) && seg->ack != h->me.iss + 1)
        return 0; /* not an ACK of our SYN (RFC 9293 3.10.7.3: a RST would answer; dropped) */
    if (st0 == MOS_TCPS_SYN_SENT && !(seg->flags & MOS_TH_SYN))
        return 0; /* 3.10.7.3: neither SYN nor RST: dropped */
    if ((seg->flags & MOS_TH_SYN) && st0 != MOS_TCPS_SYN_SENT &&
        !(st0 == MOS_TCPS_SYN_RCVD && seg->seq == h->peer.isn)) {
        /* a SYN in a synchronized state, whatever its number: a challenge
         * ACK, and nothing of it is taken (RFC 5961 4.2; RFC 9293 3.10.7.4) */
        h->ack_now = 1;
        return MOS_HOST_EV_OUTPUT;
    }
    if (mos_tcp_ep_paws(&h->me, &h->peer, seg)) { /* RFC 7323 5.3 R1: drop, ACK */
        h->paws_drops++;
        h->ack_now = 1;
        return MOS_HOST_EV_OUTPUT;
    }
    mos_tcp_ep_sent(&h->peer, &h->me, seg, &se);
    /* A FIN is processed in sequence (RFC 9293 3.10.7.4 eighth: only when
     * every byte before it came); one after a hole waits, its data is kept */
    mos_tcp_seg_t s2 = *seg;
    if ((seg->flags & MOS_TH_FIN) && !(h->me.rflags & MOS_EPR_FIN) &&
        seq_to_off(seg->seq + ((seg->flags & MOS_TH_SYN) ? 1 : 0), h->peer.ref_seq,
                   h->peer.ref_off) > (int64_t)h->me.rbuf.head) {
        s2.flags &= (uint8_t)~MOS_TH_FIN;
        h->fin_held = 1;
        h->fin_held_seq = seg->seq + ((seg->flags & MOS_TH_SYN) ? 1 : 0) + seg->len;
    }
    mos_tcp_ep_input(&h->me, &h->peer, &s2, now, &eff);
    uint8_t st = h->me.state;
    if (st0 == MOS_TCPS_SYN_SENT && st != MOS_TCPS_SYN_SENT) {
        negotiate(h);
        h->snd_wl1 = seg->seq - 1; /* the SYN-ACK's window is taken below */
        h->ack_now = 1;
        if (st == MOS_TCPS_SYN_RCVD) h->syn_pending = 1; /* simultaneous open: SYN-ACK */
    }
    if (seg->flags & MOS_TH_ACK) ev |= ack_in(h, seg, now);
    if (st != st0 && (st == MOS_TCPS_ESTABLISHED || st == MOS_TCPS_CLOSE_WAIT) &&
        st0 < MOS_TCPS_ESTABLISHED) {
        ev |= MOS_HOST_EV_CONNECTED | MOS_HOST_EV_WRITABLE;
        if (st0 == MOS_TCPS_SYN_RCVD) h->rto_at = h->snd_una == h->me.snd_nxt ? 0 : h->rto_at;
    }
    if (eff.data_len) {
        /* never more than the room we have, whatever the peer believes
         * (its view of our window, a SYN's data, an MSS it ignored) */
        uint64_t room_end = h->rcv_read + h->cfg.rcvbuf;
        if (eff.data_off >= room_end) {
            eff.data_len = 0;
        } else if (eff.data_off + eff.data_len > room_end) {
            eff.data_len = (uint32_t)(room_end - eff.data_off);
        }
        if (!eff.data_len) h->ack_now = 1;
    }
    if (eff.data_len) {
        mos_rbuf_result_t res;
        uint64_t head0 = h->me.rbuf.head;
        mos_rbuf_insert(&h->me.rbuf, eff.data_off, payload ? payload + eff.data_skip : NULL,
                        eff.data_len, &res);
        h->bytes_in += eff.data_len;
        h->wupd_at = 0; /* data flows: the peer knows the window */
        if (h->me.rbuf.head > head0) {
            ev |= MOS_HOST_EV_READABLE;
            if (h->ts_on && (seg->opt->opts & MOS_OPT_TS) && seg->opt->tsecr)
                rcv_rtt_sample(h, now, seg->opt->tsecr);
            if (h->me.rbuf.nruns || h->quickack) {       /* a hole just filled, or quick */
                h->ack_now = 1;
                if (h->me.rbuf.nruns) h->ack_urgent = 1;
                if (h->quickack) h->quickack--;
                if (++h->unacked_segs >= 2) h->ack_urgent = 1;
            } else if (++h->unacked_segs >= 2) {
                h->ack_now = h->ack_urgent = 1;              /* RFC 1122 4.2.3.2 */
            } else if (!h->delack_at) {
                h->delack_at = now + h->cfg.delack;
            }
        } else {
            if (eff.data_off >= head0) {
                h->ooo_in++;
                /* its run leads the next SACK blocks (RFC 2018 4) */
                memmove(h->sack_recent + 1, h->sack_recent, 2 * sizeof h->sack_recent[0]);
                h->sack_recent[0] = eff.data_off;
                if (h->nrecent < 3) h->nrecent++;
            } else {
                h->dup_in++;
                /* RFC 2883 4: the next ACK's first block says what came
                 * twice, so the sender can tell a needless resend */
                uint32_t nxt = rcv_nxt(h), e = seg->seq + seg->len;
                if (seq_lt(seg->seq, nxt)) {
                    h->dsack_l = seg->seq;
                    h->dsack_r = seq_lt(e, nxt) ? e : nxt;
                    h->dsack_due = seq_lt(h->dsack_l, h->dsack_r);
                }
            }
            h->ack_now = h->ack_urgent = 1; /* out of order or a duplicate: a duplicate ACK at once */
            h->quickack = 8; /* the sender is recovering: no delayed ACKs for a while (Linux) */
        }
    } else if (seg->len && !eff.data_len) {
        h->ack_now = 1; /* nothing acceptable in it: say where we are (3.10.7.4 first) */
    } else if (!seg->len && !(seg->flags & (MOS_TH_SYN | MOS_TH_FIN)) &&
               st >= MOS_TCPS_ESTABLISHED && (h->peer.flags & MOS_EPF_ISN) &&
               seq_lt(seg->seq, rcv_nxt(h))) {
        h->ack_now = 1; /* an old sequence number (a window probe, a keepalive): ACK it */
        h->wupd_at = 0; /* our ACK to it carries the window */
    }
    if (h->fin_held && !(h->me.rflags & MOS_EPR_FIN) &&
        seq_to_off(h->fin_held_seq, h->peer.ref_seq, h->peer.ref_off) ==
            (int64_t)h->me.rbuf.head) {
        /* the hole before the held FIN is filled: take the FIN now */
        mos_tcp_opts_t none;
        mos_tcp_seg_t fs;
        memset(&none, 0, sizeof none);
        fs.seq = h->fin_held_seq;
        fs.ack = h->snd_una;
        fs.len = 0;
        fs.wnd = seg->wnd;
        fs.flags = MOS_TH_FIN | MOS_TH_ACK;
        fs.opt = &none;
        h->fin_held = 0;
        mos_tcp_ep_input(&h->me, &h->peer, &fs, now, &eff);
        st = h->me.state;
    }
    if (eff.fin) h->ack_now = 1;
    int64_t f = peer_fin_off(h);
    if (f >= 0 && (uint64_t)f == h->me.rbuf.head && !h->eof) {
        h->eof = 1;
        ev |= MOS_HOST_EV_READABLE;
    }
    if (st == MOS_TCPS_TIME_WAIT) {
        h->tw_at = now + h->cfg.time_wait; /* entered, or a FIN again: the wait restarts */
        h->rto_at = h->persist_at = 0;
    }
    if (st == MOS_TCPS_CLOSED && st0 != MOS_TCPS_CLOSED) {
        set_closed(h, 0);
        ev |= MOS_HOST_EV_CLOSED;
    }
    if (h->ack_now || h->syn_pending) ev |= MOS_HOST_EV_OUTPUT;
    if ((ev & MOS_HOST_EV_WRITABLE) || (seg->flags & MOS_TH_ACK)) ev |= MOS_HOST_EV_OUTPUT;
    return ev;
}

/* ---------------------------------------------------------------- output */

void mos_tcp_host_copy_tx(const mos_tcp_host_t *h, uint64_t off, uint8_t *dst, uint32_t n)
{
    uint32_t m = h->sb_cap - 1;
    while (n) {
        uint32_t pos = (uint32_t)off & m, k = h->sb_cap - pos;
        if (k > n) k = n;
        memcpy(dst, h->sb + pos, k);
        dst += k;
        off += k;
        n -= k;
    }
}

/* SACK blocks for our ACK: the receive buffer's out-of-order runs (RFC
 * 2018 4).  The first holds the segment that arrived last, then those of
 * the segments before it (so blocks the sender may have missed are
 * repeated), then the other runs from the lowest: with more runs than
 * blocks, the sender still hears of every new one. */
static void sack_blocks(mos_tcp_host_t *h, mos_tcp_opts_t *o)
{
    const mos_rbuf_t *rb = &h->me.rbuf;
    unsigned max = h->ts_on ? 3 : 4, n = 0, d = 0;
    uint16_t used[4];
    if (h->dsack_due) { /* a D-SACK first (RFC 2883 4), in this one ACK only */
        h->dsack_due = 0;
        o->sack[0] = h->dsack_l;
        o->sack[1] = h->dsack_r;
        d = 1;
    }
    uint32_t *sk = o->sack + 2 * d;
    for (unsigned pass = 0; pass < 2; pass++) {
        for (unsigned k = 0; k < (pass ? rb->nruns : h->nrecent) && n + d < max; k++) {
            unsigned i = k;
            if (!pass) { /* the run holding recent segment k, if still above head */
                for (i = 0; i < rb->nruns; i++)
                    if (rb->runs[i].off <= h->sack_recent[k] &&
                        h->sack_recent[k] < rb->runs[i].off + rb->runs[i].len)
                        break;
                if (i == rb->nruns) continue;
            }
            unsigned dup = 0;
            for (unsigned j = 0; j < n; j++) dup |= used[j] == i;
            if (dup) continue;
            used[n] = (uint16_t)i;
            sk[2 * n] = h->peer.isn + 1 + (uint32_t)rb->runs[i].off;
            sk[2 * n + 1] = h->peer.isn + 1 + (uint32_t)(rb->runs[i].off + rb->runs[i].len);
            n++;
        }
    }
    if (n + d) {
        o->nsack = (uint8_t)(n + d);
        o->opts |= MOS_OPT_SACK;
    }
}

/* The options of our SYN or SYN-ACK: MSS, and of window scale, SACK-permitted
 * and timestamps those `offered` (MOS_EPF_*) names (RFC 7323 2.2, 3.2;
 * RFC 2018 2: a SYN-ACK carries only what the SYN offered). */
static void syn_options(const mos_tcp_host_cfg_t *cfg, uint8_t offered, uint32_t tsval,
                        uint32_t tsecr, mos_tcp_opts_t *o)
{
    o->opts |= MOS_OPT_MSS;
    o->mss = cfg->mss;
    if (offered & MOS_EPF_WSCALE) {
        o->opts |= MOS_OPT_WSCALE;
        o->wscale = cfg->wscale;
    }
    if (cfg->sack && (offered & MOS_EPF_SACKOK)) o->opts |= MOS_OPT_SACKOK;
    if (cfg->ts && (offered & MOS_EPF_TS)) {
        o->opts |= MOS_OPT_TS;
        o->tsval = tsval;
        o->tsecr = tsecr;
    }
}

/* Fill the fields every segment has, and account for it. */
static void finish(mos_tcp_host_t *h, uint64_t now, mos_tcp_host_out_t *out)
{
    mos_tcp_eff_t eff;
    mos_tcp_seg_t seg;
    int syn = out->flags & MOS_TH_SYN;
    if (h->me.state != MOS_TCPS_SYN_SENT || !syn) out->flags |= MOS_TH_ACK;
    if (out->flags & MOS_TH_ACK) out->ack = rcv_nxt(h);
    uint32_t room = rcv_room(h);
    if (syn) {
        out->wnd = (uint16_t)(room > 65535 ? 65535 : room);
    } else {
        uint32_t w = room >> h->rcv_shift;
        out->wnd = (uint16_t)(w > 65535 ? 65535 : w);
    }
    uint32_t adv0 = h->adv_wnd;
    h->adv_wnd = syn ? out->wnd : (uint32_t)out->wnd << h->rcv_shift;
    if (!syn && adv0 < h->cfg.mss && h->adv_wnd >= h->cfg.mss &&
        h->me.state >= MOS_TCPS_ESTABLISHED && !(out->flags & MOS_TH_RST) &&
        !(h->me.rflags & MOS_EPR_FIN)) {
        h->wupd_at = now + wupd_gap(h);
        h->wupd_n = 0;
    }
    if (syn) {
        /* a passive open answers only the options the SYN offered */
        uint8_t offered = (h->me.role & MOS_TCP_PASSIVE)
                              ? h->peer.flags : MOS_EPF_WSCALE | MOS_EPF_SACKOK | MOS_EPF_TS;
        syn_options(&h->cfg, offered, ts_now(h, now),
                    (h->me.rflags & MOS_EPR_TSREC) ? h->me.ts_recent : 0, &out->opt);
    } else if (h->ts_on) {
        out->opt.opts |= MOS_OPT_TS;
        out->opt.tsval = ts_now(h, now);
        out->opt.tsecr = h->me.ts_recent;
    }
    if (!syn && h->sack_on && (out->flags & MOS_TH_ACK) && !(out->flags & MOS_TH_RST))
        sack_blocks(h, &out->opt);
    if (out->flags & MOS_TH_ACK) {
        h->ack_now = h->ack_urgent = 0;
        h->unacked_segs = 0;
        h->delack_at = 0;
    }
    /* our endpoint model follows what we send (ACK, window edge, SND.NXT, FIN) */
    seg.seq = out->seq;
    seg.ack = out->ack;
    seg.len = out->len;
    seg.wnd = out->wnd;
    seg.flags = out->flags;
    seg.opt = &out->opt;
    if (!(out->flags & MOS_TH_RST)) mos_tcp_ep_sent(&h->me, &h->peer, &seg, &eff);
    h->segs_out++;
    h->bytes_out += out->len;
    if (out->len || syn || (out->flags & MOS_TH_FIN)) {
        if (!h->rto_at) h->rto_at = now + h->rto;
    }
}

/* A segment of data at stream offset off, len bytes (or the FIN at sb_end). */
static void data_seg(mos_tcp_host_t *h, mos_tcp_host_out_t *out, uint64_t off, uint32_t len)
{
    out->seq = seq_of(h, off);
    out->len = len;
    out->data_off = off;
    out->flags = MOS_TH_ACK;
    if (len && off + len == sb_end(h)) out->flags |= MOS_TH_PUSH;
    /* a resend that reaches the end of the data carries the FIN again (a
     * first FIN goes alone, from mos_tcp_host_output, with the CLOSE step) */
    if (fin_sent(h) && off + len == sb_end(h) && seq_of(h, sb_end(h)) == h->me.fin_seq)
        out->flags |= MOS_TH_FIN;
}

/* A data segment or our FIN went: the timers that follow (RFC 6298 5.1,
 * RFC 8985 7.2); a probe is out if the PTO sent it. */
static void sent_data(mos_tcp_host_t *h, uint64_t now, mos_tcp_host_out_t *out)
{
    /* sending again after an idle spell: CUBIC's epoch restarts from this
     * window, or W_cubic(t) would have grown with the idle time (RFC 9438
     * 5.8: the window does not grow while the application sends nothing) */
    if (out->len && h->snd_una == h->me.snd_nxt) h->cub_epoch = 0;
    finish(h, now, out);
    if (h->in_recovery) h->prr_out += out->len + ((out->flags & MOS_TH_FIN) ? 1 : 0);
    if (h->tlp_due) {
        h->tlp_due = 0;
        h->tlp_out++;
        h->probes++;
    }
    arm_pto(h, now);
}

/* Record r goes again (its bytes, a FIN it ends with). */
static void resend(mos_tcp_host_t *h, mos_tcp_host_seg_t *r, uint64_t now,
                   mos_tcp_host_out_t *out)
{
    uint64_t off = off_of(h, r->seq), end = off_of(h, r->end);
    if (end > sb_end(h)) end = sb_end(h); /* the FIN's number holds no byte */
    data_seg(h, out, off, end > off ? (uint32_t)(end - off) : 0);
    if (r->flags & MOS_SEG_LOST) {
        r->flags &= (uint8_t)~MOS_SEG_LOST;
        h->lost_bytes -= seg_len(r);
    }
    r->flags |= MOS_SEG_RETRANS;
    r->xmit = now;
    h->rexmits++;
    if (h->in_recovery && h->undo_ok) { /* for a D-SACK to clear (dsack) */
        if (h->nundo < 8) h->undo_seq[h->nundo++] = r->seq;
        else h->undo_ok = 0;               /* too many to follow: no undo */
    }
    if (h->rtt_start && seq_geq(h->rtt_seq, out->seq)) h->rtt_start = 0; /* Karn */
    sent_data(h, now, out);
}

/* A bare ACK if one is due (1), else nothing (0). */
static int pure_ack(mos_tcp_host_t *h, uint64_t now, mos_tcp_host_out_t *out)
{
    if (!h->ack_now) return 0;
    out->seq = h->me.snd_nxt;
    out->flags = MOS_TH_ACK;
    finish(h, now, out);
    return 1;
}

int mos_tcp_host_output(mos_tcp_host_t *h, uint64_t now, mos_tcp_host_out_t *out)
{
    mos_tcp_eff_t eff;
    uint8_t st = h->me.state;
    memset(out, 0, sizeof *out);
    h->now = now;
    if (h->rst_pending) {
        h->rst_pending = 0;
        out->seq = h->rst_seq;
        out->flags = MOS_TH_RST;
        if (h->peer.flags & MOS_EPF_ISN) {
            out->flags |= MOS_TH_ACK;
            out->ack = rcv_nxt(h);
        }
        h->segs_out++;
        return 1;
    }
    if (st == MOS_TCPS_CLOSED || st == MOS_TCPS_LISTEN) return 0;
    if (h->syn_pending && (st == MOS_TCPS_SYN_SENT || st == MOS_TCPS_SYN_RCVD)) {
        h->syn_pending = 0;
        out->seq = h->me.iss;
        out->flags = MOS_TH_SYN;
        if (seq_gt(h->me.snd_nxt, h->me.iss + 1)) h->rexmits++;
        finish(h, now, out);
        return 1;
    }
    if (st == MOS_TCPS_SYN_SENT) return 0;
    if (st == MOS_TCPS_SYN_RCVD && !h->ack_now) return 0;
    if (st == MOS_TCPS_SYN_RCVD) return pure_ack(h, now, out);
    uint32_t fl = flight(h), pipe = pipe_of(h);
    /* segments marked lost go first (RFC 6675 5 NextSeg rule 1), each
     * when the pipe has room for it (after an RTO that is slow start) */
    if (h->lost_bytes) {
        mos_tcp_host_seg_t *r = NULL;
        for (uint32_t i = 0; i < h->nsegs && !r; i++)
            if (h->segs[i].flags & MOS_SEG_LOST) r = &h->segs[i];
        if (r && (h->rexmit_credit || h->tlp_due || pipe + seg_len(r) <= h->cwnd || !pipe)) {
            resend(h, r, now, out);
            if (h->rexmit_credit) h->rexmit_credit--;
            return 1;
        }
        if (!h->tlp_due) return pure_ack(h, now, out); /* the rest waits for the pipe */
    }
    if (h->tlp_due) {
        /* The probe (RFC 8985 7.3) repeats the segment sent last that the
         * peer has not SACKed (in recovery: the last resend, whose loss
         * nothing else would show), even when new data could go, which
         * 7.3 prefers: a receiver missing nothing answers a repeated
         * segment at once (RFC 5681 4.2, with a D-SACK), a new in-order
         * one maybe only with its delayed ACK (40 ms at Linux), and a
         * lost ACK is what a probe finds most often on a short path.  A
         * FIN alone is no probe (nothing to SACK): the data before it
         * goes, and the FIN with it */
        mos_tcp_host_seg_t *r = NULL;
        for (uint32_t i = 0; i < h->nsegs; i++)
            if (!(h->segs[i].flags & MOS_SEG_SACKED) && (!r || h->segs[i].xmit >= r->xmit))
                r = &h->segs[i];
        if (r && r > h->segs && seg_len(r) == 1 && fin_sent(h) && r->seq == h->me.fin_seq &&
            !(r[-1].flags & MOS_SEG_SACKED))
            r--;
        if (r) {
            resend(h, r, now, out);
            return 1;
        }
        h->tlp_due = 0;
    }
    /* new data within min(cwnd, the peer's window) */
    uint64_t off = off_of(h, h->me.snd_nxt);
    int can_send = st == MOS_TCPS_ESTABLISHED || st == MOS_TCPS_CLOSE_WAIT;
    if (can_send && off < sb_end(h) && !fin_sent(h)) {
        uint64_t avail = sb_end(h) - off;
        uint32_t cw = h->cwnd;
        if (!h->in_recovery && h->dupacks && h->dupacks < 3)
            cw += h->dupacks * h->smss; /* limited transmit (RFC 3042) */
        uint32_t by_cwnd = cw > pipe ? cw - pipe : 0;
        uint32_t by_wnd = h->snd_wnd > fl ? h->snd_wnd - fl : 0;
        uint32_t usable = by_cwnd < by_wnd ? by_cwnd : by_wnd;
        uint32_t len = h->smss;
        if (len > avail) len = (uint32_t)avail;
        if (len > usable) len = usable;
        /* Nagle (RFC 1122 4.2.3.4): a small segment waits for the ACKs of
         * what is in flight, unless it is the last bit before our FIN */
        int small_ok = h->cfg.nodelay || fl == 0 || (h->fin_wanted && len == avail);
        /* sender SWS avoidance (RFC 1122 4.2.3.4), TCP_NODELAY or not: a
         * window with room for less than a segment while more data waits
         * sends nothing until it opens (cwnd is in bytes: PRR and byte
         * counting leave remainders that would leave as runts) */
        if (len < h->smss && len < avail && fl) small_ok = 0;
        if (len && (len == h->smss || small_ok)) {
            if (sb_record(h, seq_of(h, off), seq_of(h, off + len), now)) {
                if (!fl) set_closed(h, MOS_HOST_ENOMEM); /* nothing would ever wake us */
                return pure_ack(h, now, out);
            }
            data_seg(h, out, off, len);
            if (!h->ts_on && !h->rtt_start) {
                h->rtt_start = now;
                h->rtt_seq = out->seq + len;
            }
            sent_data(h, now, out);
            return 1;
        }
        if (h->snd_wnd == 0 && fl == 0 && !h->persist_at) /* zero window: probe later */
            h->persist_at = now + (h->rto << (h->persist_backoff < 10 ? h->persist_backoff : 10));
    }
    if (h->probe_due) { /* a window probe: an old sequence number draws an ACK (as Linux) */
        h->probe_due = 0;
        h->probes++;
        out->seq = h->snd_una - 1;
        out->flags = MOS_TH_ACK;
        finish(h, now, out);
        return 1;
    }
    /* our FIN once every byte went */
    if (h->fin_wanted && !fin_sent(h) && off == sb_end(h) && can_send) {
        uint32_t fs = seq_of(h, sb_end(h));
        if (sb_record(h, fs, fs + 1, now)) {
            if (!fl) set_closed(h, MOS_HOST_ENOMEM);
            return pure_ack(h, now, out);
        }
        mos_tcp_ep_action(&h->me, MOS_TCP_USER_CLOSE, &eff);
        out->seq = fs;
        out->flags = MOS_TH_FIN | MOS_TH_ACK;
        sent_data(h, now, out);
        return 1;
    }
    return pure_ack(h, now, out);
}

/* ---------------------------------------------------------------- timers */

int mos_tcp_host_timer(mos_tcp_host_t *h, uint64_t now)
{
    int ev = 0;
    h->now = now;
    if (h->tw_at && h->tw_at <= now) {
        set_closed(h, 0);
        return MOS_HOST_EV_CLOSED;
    }
    if (h->delack_at && h->delack_at <= now) {
        h->delack_at = 0;
        h->ack_now = 1;
        ev |= MOS_HOST_EV_OUTPUT;
    }
    if (h->rto_at && h->rto_at <= now) {
        uint8_t st = h->me.state;
        int syn = st == MOS_TCPS_SYN_SENT || st == MOS_TCPS_SYN_RCVD;
        h->nretries++;
        h->timeouts++;
        if (h->nretries > (syn ? h->cfg.syn_retries : h->cfg.retries)) {
            set_closed(h, MOS_HOST_ETIMEDOUT);
            if (!syn) { /* tell the peer (as Linux does on a write timeout) */
                h->rst_pending = 1;
                h->rst_seq = h->me.snd_nxt;
            }
            return ev | MOS_HOST_EV_CLOSED | MOS_HOST_EV_READABLE | MOS_HOST_EV_WRITABLE |
                   MOS_HOST_EV_OUTPUT;
        }
        /* RFC 6298 5.5-5.7: back off and resend from SND.UNA */
        h->rto = h->rto * 2 > h->cfg.rto_max ? h->cfg.rto_max : h->rto * 2;
        h->rto_at = now + h->rto;
        h->rtt_start = 0;
        if (syn) {
            h->syn_pending = 1;
        } else if (h->snd_una != h->me.snd_nxt) {
            uint32_t f = flight(h);
            h->ssthresh = cc_congestion_event(h, f); /* RFC 5681 (4), RFC 9438 4.8 */
            h->cwnd = h->smss;               /* loss window */
            h->in_recovery = 0;
            h->undo_ok = 0; /* an earlier recovery's D-SACKs no longer speak for cwnd */
            h->dupacks = 0;
            h->recover = h->me.snd_nxt;
            /* everything out is lost; SACKed bits go too (RFC 2018 8: the
             * receiver may have dropped what it SACKed) */
            h->sacked_bytes = 0;
            for (uint32_t i = 0; i < h->nsegs; i++) {
                h->segs[i].flags &= (uint8_t)~MOS_SEG_SACKED;
                mark_lost(h, &h->segs[i]);
            }
            h->after_rto = 1;
            h->rexmit_credit = 0;
            h->tlp_at = h->rack_at = 0;
            h->tlp_due = h->tlp_out = 0;
        } else {
            h->rto_at = 0;
        }
        ev |= MOS_HOST_EV_OUTPUT;
    }
    if (h->tlp_at && h->tlp_at <= now) {
        /* RFC 8985 7.3: a probe; its ACK (with SACK) shows what was lost
         * before it, and recovery starts without an RTO */
        h->tlp_at = 0;
        if (!h->after_rto && h->snd_una != h->me.snd_nxt) {
            h->tlp_due = 1;
            ev |= MOS_HOST_EV_OUTPUT;
        }
    }
    if (h->rack_at && h->rack_at <= now) {
        /* RFC 8985 6.3: the reordering window passed for segments sent
         * before one that was delivered */
        rack_detect(h, now);
        if (h->lost_bytes) {
            enter_recovery(h);
            ev |= MOS_HOST_EV_OUTPUT;
        }
    }
    if (h->wupd_at && h->wupd_at <= now) {
        h->wupd_at = 0;
        if (rcv_room(h) >= h->cfg.mss && !(h->me.rflags & MOS_EPR_FIN) &&
            (h->me.state == MOS_TCPS_ESTABLISHED || h->me.state == MOS_TCPS_FIN_WAIT_1 ||
             h->me.state == MOS_TCPS_FIN_WAIT_2)) {
            h->ack_now = h->ack_urgent = 1;
            h->wupd_resends++;
            if (++h->wupd_n < 3) h->wupd_at = now + (wupd_gap(h) << h->wupd_n);
            ev |= MOS_HOST_EV_OUTPUT;
        }
    }
    if (h->persist_at && h->persist_at <= now) {
        h->persist_at = 0;
        if (h->snd_wnd == 0 && off_of(h, h->me.snd_nxt) < sb_end(h)) {
            h->probe_due = 1;
            h->persist_backoff++;
            h->persist_at = now + (h->rto << (h->persist_backoff < 10 ? h->persist_backoff : 10));
            if (h->persist_at > now + h->cfg.rto_max) h->persist_at = now + h->cfg.rto_max;
            ev |= MOS_HOST_EV_OUTPUT;
        }
    }
    return ev;
}

uint64_t mos_tcp_host_deadline(const mos_tcp_host_t *h)
{
    uint64_t d = 0;
    const uint64_t t[7] = {h->rto_at, h->persist_at, h->delack_at, h->tw_at, h->rack_at,
                           h->tlp_at, h->wupd_at};
    for (int i = 0; i < 7; i++)
        if (t[i] && (!d || t[i] < d)) d = t[i];
    return d;
}

/* ---------------------------------------------------------------- user calls */

int mos_tcp_host_out_now(const mos_tcp_host_t *h)
{
    if (h->ack_urgent || h->rst_pending || h->lost_bytes || h->tlp_due) return 1;
    uint8_t st = h->me.state;
    if (st != MOS_TCPS_ESTABLISHED && st != MOS_TCPS_CLOSE_WAIT) return 0;
    uint64_t off = off_of(h, h->me.snd_nxt);
    if (off >= sb_end(h) || fin_sent(h)) return 0;
    uint32_t fl = flight(h), pipe = pipe_of(h);
    /* a full segment, or the rest, fits both windows */
    uint64_t want = sb_end(h) - off < h->smss ? sb_end(h) - off : h->smss;
    return pipe + want <= h->cwnd && fl + want <= h->snd_wnd;
}

uint32_t mos_tcp_host_send(mos_tcp_host_t *h, const uint8_t *data, uint32_t n)
{
    uint8_t st = h->me.state;
    if (h->fin_wanted || !(st == MOS_TCPS_ESTABLISHED || st == MOS_TCPS_CLOSE_WAIT ||
                           st == MOS_TCPS_SYN_SENT || st == MOS_TCPS_SYN_RCVD))
        return 0;
    uint64_t room = (uint64_t)h->cfg.sndbuf > h->sb_len ? h->cfg.sndbuf - h->sb_len : 0;
    if (room > h->sb_cap - h->sb_len) room = h->sb_cap - h->sb_len;
    if (n > room) n = (uint32_t)room;
    if (n && !h->sb && !(h->sb = malloc(h->sb_cap))) return 0; /* no memory: nothing taken */
    uint32_t m = h->sb_cap - 1, left = n;
    uint64_t off = sb_end(h);
    while (left) {
        uint32_t pos = (uint32_t)off & m, k = h->sb_cap - pos;
        if (k > left) k = left;
        memcpy(h->sb + pos, data, k);
        data += k;
        off += k;
        left -= k;
    }
    h->sb_len += n;
    return n;
}

/* Receive buffer autotuning (dynamic right-sizing; Linux's
 * tcp_rcv_space_adjust): once per receiver RTT, if the user read more than
 * in any RTT before, the buffer becomes twice that plus 16 segments, so
 * the window never limits a sender the reader keeps up with.  A slow
 * reader reads little per RTT and keeps its buffer. */
static void rcv_autotune(mos_tcp_host_t *h)
{
    uint64_t now = h->now;
    if (!h->drs_at) {
        h->drs_at = now;
        h->drs_read = h->rcv_read;
        return;
    }
    uint64_t rtt = h->rcv_rtt ? h->rcv_rtt : h->srtt;
    if (!rtt || now - h->drs_at < rtt) return;
    uint64_t copied = h->rcv_read - h->drs_read;
    h->drs_at = now;
    h->drs_read = h->rcv_read;
    if (copied <= h->drs_space) return;
    h->drs_space = copied;
    uint64_t want = 2 * copied + 16ull * h->cfg.mss;
    if (want > h->cfg.rcvbuf_max) want = h->cfg.rcvbuf_max;
    if (want <= h->cfg.rcvbuf) return;
    if (mos_rbuf_set_limit(&h->me.rbuf, (uint32_t)want) == UINT64_MAX) return;
    h->cfg.rcvbuf = (uint32_t)want;
    h->rcvbuf_grows++;
}

/* SO_SNDBUF and SO_RCVBUF (0: leave it).  The send limit never drops below
 * what is queued; a ring already taken grows with its bytes kept in order.
 * The receive limit is free until our SYN is out; after it, the window
 * shift is fixed and a window never retracts (RFC 9293 3.8.6), so it only
 * grows, up to what the shift can say (RFC 7323 2.3). */
int mos_tcp_host_set_buffers(mos_tcp_host_t *h, uint32_t sndbuf, uint32_t rcvbuf)
{
    if (sndbuf) {
        if (sndbuf < h->sb_len) sndbuf = (uint32_t)h->sb_len;
        uint32_t cap = pow2_at_least(sndbuf);
        if (!h->sb) {
            h->sb_cap = cap;
        } else if (cap > h->sb_cap) {
            uint8_t *ring = malloc(cap);
            if (!ring) return -1;
            uint64_t off = h->sb_off;
            uint32_t n = (uint32_t)h->sb_len, m = cap - 1;
            while (n) { /* each byte to its place under the new mask */
                uint32_t pos = (uint32_t)off & m, k = cap - pos;
                if (k > n) k = n;
                mos_tcp_host_copy_tx(h, off, ring + pos, k);
                off += k;
                n -= k;
            }
            free(h->sb);
            h->sb = ring;
            h->sb_cap = cap;
        }
        h->cfg.sndbuf = sndbuf;
    }
    if (rcvbuf) {
        int open = h->me.state != MOS_TCPS_CLOSED || h->syn_pending;
        /* the shift is known once the handshake is done; before, it is ours */
        uint32_t shift = h->me.state >= MOS_TCPS_ESTABLISHED ? h->rcv_shift : h->cfg.wscale;
        if (rcvbuf < h->cfg.mss) rcvbuf = h->cfg.mss;
        if (rcvbuf > (65535u << shift)) rcvbuf = 65535u << shift;
        if (open && rcvbuf < h->cfg.rcvbuf) rcvbuf = h->cfg.rcvbuf;
        if (mos_rbuf_set_limit(&h->me.rbuf, rcvbuf) == UINT64_MAX) return -1;
        h->cfg.rcvbuf = rcvbuf;
        h->cfg.rcvbuf_max = 0; /* the user's size: no autotuning (as Linux) */
    }
    return 0;
}

uint32_t mos_tcp_host_recv(mos_tcp_host_t *h, uint8_t *out, uint32_t n)
{
    mos_rbuf_t *rb = &h->me.rbuf;
    uint64_t avail = rb->head - h->rcv_read;
    if (n > avail) n = (uint32_t)avail;
    if (!n) return 0;
    uint32_t got = mos_rbuf_copy(rb, h->rcv_read, out, n);
    uint32_t before = rcv_room(h);
    h->rcv_read += got;
    mos_rbuf_release(rb, h->rcv_read);
    if (h->cfg.rcvbuf_max > h->cfg.rcvbuf) rcv_autotune(h);
    /* a window update once the window opened enough (RFC 1122 4.2.3.3, SWS) */
    uint32_t after = rcv_room(h), step = h->cfg.rcvbuf / 2 < 2u * h->cfg.mss
                                             ? h->cfg.rcvbuf / 2 : 2u * h->cfg.mss;
    if (after > h->adv_wnd && after - h->adv_wnd >= step && before < after &&
        h->me.state >= MOS_TCPS_ESTABLISHED)
        h->ack_now = 1;
    return got;
}

uint32_t mos_tcp_host_readable(const mos_tcp_host_t *h)
{
    return (uint32_t)(h->me.rbuf.head - h->rcv_read);
}

uint32_t mos_tcp_host_writable(const mos_tcp_host_t *h)
{
    uint8_t st = h->me.state;
    if (h->fin_wanted || !(st == MOS_TCPS_ESTABLISHED || st == MOS_TCPS_CLOSE_WAIT)) return 0;
    return h->cfg.sndbuf > h->sb_len ? h->cfg.sndbuf - (uint32_t)h->sb_len : 0;
}

int mos_tcp_host_eof(const mos_tcp_host_t *h)
{
    return (h->eof && h->rcv_read == h->me.rbuf.head) || h->me.state == MOS_TCPS_CLOSED;
}

void mos_tcp_host_shutdown(mos_tcp_host_t *h)
{
    mos_tcp_eff_t eff;
    if (h->me.state == MOS_TCPS_SYN_SENT || h->me.state == MOS_TCPS_LISTEN) {
        mos_tcp_ep_action(&h->me, MOS_TCP_USER_CLOSE, &eff);
        set_closed(h, 0);
        return;
    }
    h->fin_wanted = 1;
}

void mos_tcp_host_abort(mos_tcp_host_t *h)
{
    uint8_t st = h->me.state;
    if (st != MOS_TCPS_CLOSED && st != MOS_TCPS_LISTEN && st != MOS_TCPS_SYN_SENT &&
        st != MOS_TCPS_TIME_WAIT) {
        h->rst_pending = 1; /* RFC 9293 3.10.5: <SEQ=SND.NXT><CTL=RST> */
        h->rst_seq = h->me.snd_nxt;
    }
    set_closed(h, MOS_HOST_ECONNABORTED);
}
