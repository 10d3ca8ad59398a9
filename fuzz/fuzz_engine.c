/* fuzz_engine.c: the monitor engine (mos/dualstack/engine.h) fed scripted
 * frame sequences, with the handler actions the Python glue performs
 * (_flow.pxi, _packet.pxi, _output.pxi) emulated through the same C API.
 *
 * The input is a small program: a config header (buffer sizes, overlap
 * policy, midstream, checksum mode, digest, keep_read, max flows 1-4, idle
 * timeout 1-4 s, which events are of interest), then opcodes.  Each opcode
 * picks one of four conversations (addresses, ports, IPv4 or IPv6, ISNs
 * fixed per conversation) and builds a frame: SYN, SYN-ACK, ACK, data in
 * order / retransmitted / ahead, FIN, RST, window updates, sequence jumps,
 * IP fragments, snapped frames, raw or mutated bytes; or moves time, or
 * ends the burst.  After every engine call that stops on an event, each
 * event gets a handler action chosen by the input: peek, ppeek, an edit,
 * drop, reset, buffer size, stop monitoring, per-flow interest.
 *
 * Payload bytes are a function of (sender port, sequence number), so every
 * retransmission repeats them; that gives an oracle:
 *   - every byte peeked or ppeeked equals the byte sent at that sequence
 *     number (unless raw/mutated frames were sent, or the flow's ISN moved);
 *   - events name live or dying flows, valid types, hooks, sides, states;
 *   - flows_created - flows_ended == flows_live <= max_flows;
 *   - every flow ends with exactly one CONN_END per side when all events
 *     are of interest and monitoring was never stopped;
 *   - frames rewritten after edits (mos_engine_tx_frames) decode as TCP
 *     and carry valid IP and TCP checksums;
 *   - every buffer keeps rbuf.h's invariants (fz_check_rbuf). */
#include <stdbool.h>

#include "engine.h"
#include "fuzz_util.h"
#include "rewrite.h"

#define NCONV 4
#define MAXFR 16           /* frames per burst */
#define FRCAP 1600         /* bytes per frame */
#define SLOTS 64           /* flows the oracle follows (slot numbers below this) */

typedef struct conv {
    int ipver, vlan;
    uint8_t caddr[16], saddr[16];
    uint16_t cport, sport;
    uint32_t isn[2];       /* per side: 0 client, 1 server */
    uint32_t nxt[2];       /* next sequence number the generator sends */
    uint16_t ipid;
    uint8_t used;          /* sent a segment without SYN */
    uint8_t tainted;       /* a SYN after that: the monitor may renumber stored bytes */
} conv_t;

typedef struct slotinfo {  /* what the harness knows of a flow, by slot */
    uint64_t id;           /* flow id it belongs to (0: none) */
    uint32_t isn[2];       /* sender ISN seen at the last check */
    uint8_t isn_known[2];
    uint8_t tainted[2];    /* side's ISN moved after bytes were stored: no byte oracle */
    uint8_t stopped;       /* monitoring stopped on a side */
    uint8_t ends[2];       /* CONN_END events seen per side */
    uint64_t rd[2];        /* this "monitor's" read offset per side (Flow._offsets) */
} slotinfo_t;

typedef struct h {
    mos_engine_t *e;
    mos_config_t cfg;
    conv_t conv[NCONV];
    fuzz_in_t in;
    uint64_t now;
    bool oracle;           /* bytes on the wire follow pattern() */
    bool all_events;       /* interest in every event */
    slotinfo_t si[SLOTS];
    /* the burst being built */
    mos_frame_t fr[MAXFR];
    uint8_t buf[MAXFR][FRCAP];
    uint8_t valid[MAXFR];  /* built with right checksums, whole */
    int nfr;
} h_t;

static int debug = -1; /* FUZZ_DEBUG=1: print events and handler actions */

static inline uint8_t pattern(uint16_t sport, uint32_t seq)
{
    uint32_t x = seq * 0x9e3779b1u ^ (uint32_t)sport * 0x85ebca77u;
    x ^= x >> 15;
    x *= 0x2c1b3c6du;
    return (uint8_t)(x >> 24);
}

/* ---------------------------------------------------------------- handlers */

static void check_bytes(h_t *h, const mos_flow_t *f, uint32_t slot, int side, uint64_t off,
                        const uint8_t *b, uint32_t n)
{
    if (!h->oracle || !n || slot >= SLOTS || h->si[slot].tainted[side]) return;
    const mos_ep_t *S = &f->ep[!side]; /* the sender of what `side` received */
    uint16_t sport = side == MOS_SERVER ? f->cport : f->sport;
    /* a SYN after data (a new ISN, or the real one after a mid-stream guess)
     * renumbers what the monitor stored: bytes of the old numbering no
     * longer sit at isn + 1 + offset, by design */
    for (int k = 0; k < NCONV; k++) {
        const conv_t *c = &h->conv[k];
        size_t al = c->ipver == 6 ? 16 : 4;
        if (c->ipver != f->ipver) continue;
        if ((!memcmp(f->caddr, c->caddr, al) && !memcmp(f->saddr, c->saddr, al)) ||
            (!memcmp(f->caddr, c->saddr, al) && !memcmp(f->saddr, c->caddr, al))) {
            if (c->tainted) return;
        }
    }
    for (uint32_t i = 0; i < n; i++) {
        uint32_t seq = S->isn + 1 + (uint32_t)(off + i);
        FUZZ_CHECK(b[i] == pattern(sport, seq),
                   "flow %llu side %d offset %llu: read %02x, sent %02x (seq %u)",
                   (unsigned long long)f->id, side, (unsigned long long)(off + i), b[i],
                   pattern(sport, seq), seq);
    }
}

/* Flow.peek: from this monitor's read offset, past gaps, up to n bytes */
static void peek(h_t *h, mos_flow_t *f, uint32_t slot, int side, uint32_t n)
{
    static uint8_t out[1 << 17];
    if (slot >= SLOTS) return;
    mos_rbuf_t *rb = &f->ep[side].rbuf;
    uint64_t off = h->si[slot].rd[side];
    if (off < rb->base) off = rb->base;
    const mos_span_t *g = mos_rbuf_gap_after(rb, off);
    if (g && g->off <= off) {
        off = g->off + g->len;
        g = mos_rbuf_gap_after(rb, off);
    }
    if (off < rb->head) {
        uint64_t avail = rb->head - off;
        if (g && g->off < rb->head && g->off - off < avail) avail = g->off - off;
        if (n < avail) avail = n;
        if (avail > sizeof out) avail = sizeof out;
        uint32_t got = mos_rbuf_copy(rb, off, out, (uint32_t)avail);
        check_bytes(h, f, slot, side, off, out, got);
        off += got;
    }
    h->si[slot].rd[side] = off;
    if (off != f->ep[side].consumed) mos_flow_consumed(h->e, f, side, off);
}

static void ppeek(h_t *h, mos_flow_t *f, uint32_t slot, int side, uint64_t off, uint32_t n)
{
    static uint8_t out[4096];
    if (n > sizeof out) n = sizeof out;
    uint32_t got = mos_rbuf_copy(&f->ep[side].rbuf, off, out, n);
    FUZZ_CHECK(got <= n, "copy over n");
    check_bytes(h, f, slot, side, off, out, got);
}

/* One handler call for event ev, its action chosen by the input. */
static void handle(h_t *h, const mos_event_t *ev)
{
    uint8_t a = fin_u8(&h->in);
    if (debug) fprintf(stderr, "  action %d\n", a % 11);
    if (ev->flow == MOS_NIL) return;
    mos_flow_t *f = mos_engine_flow_any(h->e, ev->flow);
    if (!f || !(f->flags & (MOS_FF_LIVE | MOS_FF_DYING))) return;
    int side = ev->side;
    uint32_t slot = ev->flow;
    switch (a % 11) {
    case 0: /* no handler for this one */
        break;
    case 1: case 2: /* the usual: read everything new */
        peek(h, f, slot, side, UINT32_MAX);
        break;
    case 3:
        peek(h, f, slot, side, fin_u8(&h->in));
        break;
    case 4: { /* ppeek near base / head; the views' other reads */
        const mos_rbuf_t *rb = &f->ep[side].rbuf;
        FUZZ_CHECK(mos_engine_flow(h->e, slot, f->gen) == f, "Flow._f() misses a live flow");
        FUZZ_CHECK(mos_engine_flow(h->e, slot, f->gen + 1) == NULL, "a stale Flow finds a flow");
        (void)mos_flow_acked(f, side);
        (void)mos_flow_wire_seq(f, side, f->ep[side].snd_nxt);
        (void)mos_engine_memory(h->e);
        (void)mos_engine_defrag_stats(h->e);
        FUZZ_CHECK(mos_engine_now(h->e) <= h->now, "engine time ahead of the frames");
        uint8_t w = fin_u8(&h->in);
        uint64_t off = (w & 1 ? rb->head : rb->base) + (int8_t)fin_u8(&h->in);
        ppeek(h, f, slot, side, off, fin_u16(&h->in) % 4096);
        break;
    }
    case 5: { /* an edit of the packet's payload (Packet.replace/insert/chomp) */
        if (ev->pkt == MOS_NOPKT) break;
        uint8_t ins[64];
        uint32_t off = fin_u8(&h->in), del = fin_u8(&h->in) % 16;
        uint32_t il = fin_u8(&h->in) % 48;
        memset(ins, 'E', il);
        char err[256];
        const mos_pkt_t *p = mos_engine_pkt(h->e, ev->pkt);
        if (p && p->paylen) off %= p->paylen + 1;
        mos_engine_edit(h->e, ev->pkt, off, del, ins, il, err, sizeof err);
        break;
    }
    case 6: /* Packet.drop */
        if (ev->pkt != MOS_NOPKT) mos_engine_verdicts(h->e)[ev->pkt] = MOS_VERDICT_DROP;
        break;
    case 7: /* Flow.reset: the packet dropped, the flow ends */
        if (ev->pkt != MOS_NOPKT) mos_engine_verdicts(h->e)[ev->pkt] = MOS_VERDICT_DROP;
        mos_engine_end_flow(h->e, slot, MOS_END_RST);
        break;
    case 8: { /* Flow.set_buffer_size */
        static const uint32_t sz[4] = {0, 64, 1000, 1u << 16};
        mos_flow_set_buffer(h->e, f, side, sz[fin_u8(&h->in) & 3]);
        break;
    }
    case 9: /* Flow.stop_monitoring */
        mos_flow_stop_side(h->e, f, side);
        if (slot < SLOTS) h->si[slot].stopped = 1;
        break;
    default: { /* per-flow handlers (Flow.on / off) change this flow's interest */
        mos_interest_t m;
        memset(&m, 0, sizeof m);
        uint8_t w = fin_u8(&h->in);
        if (w & 1) m.w[0] = (uint64_t)fin_u32(&h->in) << 32 | fin_u32(&h->in);
        FUZZ_CHECK(mos_flow_set_interest(h->e, f, (w & 1) ? &m : NULL) == 0, "set_interest");
        break;
    }
    }
}

/* ---------------------------------------------------------------- checks */

static void check_flows(h_t *h)
{
    const mos_counters_t *c = mos_engine_counters(h->e);
    FUZZ_CHECK(c->flows_created - c->flows_ended == c->flows_live, "created %llu ended %llu live %llu",
               (unsigned long long)c->flows_created, (unsigned long long)c->flows_ended,
               (unsigned long long)c->flows_live);
    FUZZ_CHECK(c->flows_live <= h->cfg.max_flows, "live %llu > max %u",
               (unsigned long long)c->flows_live, h->cfg.max_flows);
    uint32_t n = mos_engine_slots(h->e), live = 0;
    for (uint32_t s = 0; s < n; s++) {
        mos_flow_t *f = mos_engine_flow_any(h->e, s);
        if (!(f->flags & (MOS_FF_LIVE | MOS_FF_DYING))) continue;
        live += !!(f->flags & MOS_FF_LIVE);
        for (int side = 0; side < 2; side++) {
            FUZZ_CHECK(f->ep[side].state < MOS_TCPS_COUNT, "state %u", f->ep[side].state);
            fz_check_rbuf(&f->ep[side].rbuf);
        }
        if (s >= SLOTS) continue;
        slotinfo_t *si = &h->si[s];
        if (si->id != f->id) {
            memset(si, 0, sizeof *si);
            si->id = f->id;
        }
        /* the byte oracle holds while each sender's ISN stays what it was
         * when its bytes were stored */
        for (int side = 0; side < 2; side++) {
            const mos_ep_t *S = &f->ep[!side];
            if (!(S->flags & MOS_EPF_ISN)) continue;
            if (si->isn_known[side] && si->isn[side] != S->isn) si->tainted[side] = 1;
            si->isn[side] = S->isn;
            si->isn_known[side] = 1;
        }
    }
    FUZZ_CHECK(live == c->flows_live, "%u live flags, counter %llu", live,
               (unsigned long long)c->flows_live);
}

static void dispatch(h_t *h, int nframes)
{
    uint32_t n;
    const mos_event_t *evs = mos_engine_events(h->e, &n);
    uint32_t nslots = mos_engine_slots(h->e);
    for (uint32_t i = 0;; i++) {
        evs = mos_engine_events(h->e, &n); /* a handler may add events (reset): re-read */
        if (i >= n) break;
        const mos_event_t ev = evs[i];
        if (debug)
            fprintf(stderr, "ev type %u hook %u side %u flow %u pkt %u reason %u\n", ev.type,
                    ev.hook, ev.side, ev.flow, ev.pkt, ev.reason);
        FUZZ_CHECK(ev.type < MOS_EV_COUNT && ev.hook <= MOS_HK_NONE && ev.side <= 1,
                   "event %u/%u/%u", ev.type, ev.hook, ev.side);
        FUZZ_CHECK(ev.pkt == MOS_NOPKT || ev.pkt < (uint32_t)nframes, "event pkt %u of %d",
                   ev.pkt, nframes);
        if (ev.type == MOS_EV_ORPHAN) {
            FUZZ_CHECK(ev.flow == MOS_NIL, "orphan with a flow");
            continue;
        }
        FUZZ_CHECK(ev.flow < nslots, "event flow slot %u of %u", ev.flow, nslots);
        const mos_flow_t *f = mos_engine_flow_any(h->e, ev.flow);
        FUZZ_CHECK(f->flags & (MOS_FF_LIVE | MOS_FF_DYING), "event for a free slot");
        if (ev.type == MOS_EV_STATE_CHANGE)
            FUZZ_CHECK(ev.reason < MOS_TCPS_COUNT && ev.aux < MOS_TCPS_COUNT && ev.reason != ev.aux,
                       "state change %u -> %u", ev.aux, ev.reason);
        if (ev.type == MOS_EV_CONN_END) {
            FUZZ_CHECK(f->flags & MOS_FF_DYING, "CONN_END for a live flow");
            if (ev.flow < SLOTS && h->si[ev.flow].id == f->id) h->si[ev.flow].ends[ev.side]++;
            else if (ev.flow < SLOTS) {
                memset(&h->si[ev.flow], 0, sizeof h->si[ev.flow]);
                h->si[ev.flow].id = f->id;
                h->si[ev.flow].ends[ev.side] = 1;
            }
        }
        if (ev.type == MOS_EV_ERROR)
            FUZZ_CHECK(ev.reason > 0 && ev.reason < MOS_ERR_COUNT, "error reason %u", ev.reason);
        handle(h, &ev);
    }
    mos_engine_clear_events(h->e);
}

static void reap(h_t *h)
{
    uint32_t n;
    const uint32_t *dying = mos_engine_dying(h->e, &n);
    for (uint32_t k = 0; k < n; k++) {
        uint32_t s = dying[k];
        if (s >= SLOTS) continue;
        const mos_flow_t *f = mos_engine_flow_any(h->e, s);
        slotinfo_t *si = &h->si[s];
        if (h->all_events && si->id == f->id && !si->stopped)
            FUZZ_CHECK(si->ends[0] == 1 && si->ends[1] == 1, "flow %llu: CONN_END %u/%u times",
                       (unsigned long long)f->id, si->ends[0], si->ends[1]);
        memset(si, 0, sizeof *si);
    }
    mos_engine_reap(h->e);
}

/* the burst through the engine the way CoreEngine._burst drives it */
static void run_burst(h_t *h)
{
    int n = h->nfr, i = 0, stalled = 0;
    if (!n) return;
    /* the frames stay put for this burst: in digest mode, in-order bytes
     * are hashed on the digest thread (digestq.c) until the end of it */
    mos_engine_set_stable_frames(h->e, 1);
    while (i < n) {
        uint32_t nev;
        int c = mos_engine_process(h->e, h->fr, i, n, UINT64_MAX);
        mos_engine_events(h->e, &nev);
        /* it may stop before a frame to report flows that idled out first,
         * but the next call goes on */
        stalled = c == i ? stalled + 1 : 0;
        FUZZ_CHECK(stalled == 0 || (stalled == 1 && nev > 0),
                   "process made no progress at %d of %d (%u events)", i, n, nev);
        check_flows(h);
        dispatch(h, n);
        check_flows(h);
        i = c;
    }
    /* what leaves: frames of flows with length edits are rewritten */
    if (mos_engine_edited_flows(h->e)) {
        uint8_t *verdict = mos_engine_verdicts(h->e);
        for (int k = 0; k < n; k++) {
            if (verdict[k] == MOS_VERDICT_DROP) continue;
            const uint8_t *out[64];
            uint32_t lens[64];
            int m = mos_engine_tx_frames(h->e, (uint32_t)k, h->fr[k].data, h->fr[k].caplen, out,
                                         lens, 64);
            FUZZ_CHECK(m >= -1 && m <= 64, "tx_frames %d", m);
            for (int j = 0; j < m; j++) {
                mos_pkt_t q;
                int rc = mos_decode(h->fr[k].linktype, out[j], lens[j], &q);
                FUZZ_CHECK(rc == MOS_DEC_TCP, "rewritten frame %d.%d decodes as %d", k, j, rc);
                if (h->valid[k])
                    FUZZ_CHECK(fz_ip_tcp_csum_ok(q.l3, lens[j] - (uint32_t)(q.l3 - out[j])) == 1,
                               "rewritten frame %d.%d has a bad checksum", k, j);
            }
        }
    }
    reap(h);
    mos_engine_set_stable_frames(h->e, 0); /* the frame buffers are reused */
    h->nfr = 0;
}

/* ---------------------------------------------------------------- frames */

static mos_frame_t *next_frame(h_t *h)
{
    if (h->nfr == MAXFR) run_burst(h);
    mos_frame_t *fr = &h->fr[h->nfr];
    memset(fr, 0, sizeof *fr);
    fr->data = h->buf[h->nfr];
    fr->ts_ns = h->now;
    fr->linktype = MOS_LT_ETHERNET;
    h->valid[h->nfr] = 1;
    return fr;
}

static void push(h_t *h, uint32_t len, int valid)
{
    mos_frame_t *fr = &h->fr[h->nfr];
    fr->caplen = fr->wirelen = len;
    h->valid[h->nfr] = (uint8_t)valid;
    if (len) h->nfr++;
    h->now += 1000; /* 1 us per frame */
}

/* TCP options for a segment, from one input byte */
static uint32_t options(h_t *h, uint8_t sel, int syn, uint8_t *o)
{
    uint32_t n = 0;
    if (sel & 1) { o[n++] = 2; o[n++] = 4; wr16(o + n, syn ? (uint16_t)(536 + fin_u16(&h->in) % 9000) : 1460); n += 2; }
    if (sel & 2) { o[n++] = 3; o[n++] = 3; o[n++] = fin_u8(&h->in) % 16; }
    if (sel & 4) { o[n++] = 4; o[n++] = 2; }
    if (sel & 8) { o[n++] = 8; o[n++] = 10; wr32(o + n, (uint32_t)(h->now / 1000)); wr32(o + n + 4, 0); n += 8; }
    if ((sel & 0x30) == 0x10 && n <= 20) { /* one SACK block near the flow's numbers */
        o[n++] = 5; o[n++] = 10;
        uint32_t l = fin_u32(&h->in);
        wr32(o + n, l); wr32(o + n + 4, l + fin_u8(&h->in));
        n += 8;
    }
    if ((sel & 0x30) == 0x30) { /* raw option bytes from the input */
        uint32_t k = fin_u8(&h->in) % 41;
        if (n + k > 40) k = 40 - n;
        n += (uint32_t)fin_bytes(&h->in, o + n, k);
    }
    return n;
}

/* Build and queue a segment of conversation c from `side` (0 client). */
static void segment(h_t *h, conv_t *c, int side, uint32_t seq, uint32_t ack, uint8_t flags,
                    uint32_t paylen, uint8_t optsel, uint16_t win, uint32_t snap)
{
    static uint8_t pay[FRCAP];
    uint8_t opt[48];
    fz_seg_t s;
    memset(&s, 0, sizeof s);
    s.ipver = c->ipver;
    s.vlan = c->vlan;
    memcpy(s.src, side ? c->saddr : c->caddr, 16);
    memcpy(s.dst, side ? c->caddr : c->saddr, 16);
    s.sport = side ? c->sport : c->cport;
    s.dport = side ? c->cport : c->sport;
    s.seq = seq;
    s.ack = ack;
    s.flags = flags;
    s.win = win;
    s.ipid = c->ipid++;
    if (flags & MOS_TH_SYN) c->tainted |= c->used;
    else c->used = 1;
    s.optlen = options(h, optsel, flags & MOS_TH_SYN, opt);
    s.opt = opt;
    if (paylen > 1200) paylen = 1200;
    uint32_t dseq = seq + ((flags & MOS_TH_SYN) ? 1 : 0);
    for (uint32_t i = 0; i < paylen; i++) pay[i] = pattern(s.sport, dseq + i);
    s.pay = pay;
    s.paylen = paylen;
    mos_frame_t *fr = next_frame(h);
    uint32_t len = fz_build(&s, (uint8_t *)fr->data, FRCAP);
    if (!len) return;
    push(h, len, 1);
    if (snap && snap < len) { /* the capture cut the frame short (snaplen) */
        h->fr[h->nfr - 1].caplen = len - snap % len;
        h->valid[h->nfr - 1] = 0;
    }
}

/* The same data segment as IP fragments (IPv4: 2 or 3 pieces, in an order
 * the input picks; IPv6: a fragment header in each). */
static void fragments(h_t *h, conv_t *c, int side, uint32_t paylen, uint8_t how)
{
    static uint8_t whole[FRCAP];
    static uint8_t pay[FRCAP];
    fz_seg_t s;
    memset(&s, 0, sizeof s);
    s.ipver = c->ipver;
    memcpy(s.src, side ? c->saddr : c->caddr, 16);
    memcpy(s.dst, side ? c->caddr : c->saddr, 16);
    s.sport = side ? c->sport : c->cport;
    s.dport = side ? c->cport : c->sport;
    s.seq = c->nxt[side];
    s.ack = c->nxt[!side];
    s.flags = MOS_TH_ACK | MOS_TH_PUSH;
    s.win = 65535;
    s.ipid = c->ipid++;
    c->used = 1;
    if (paylen < 16) paylen = 16;
    if (paylen > 1000) paylen = 1000;
    for (uint32_t i = 0; i < paylen; i++) pay[i] = pattern(s.sport, s.seq + i);
    s.pay = pay;
    s.paylen = paylen;
    uint32_t len = fz_build(&s, whole, sizeof whole);
    if (!len) return;
    c->nxt[side] += paylen;
    uint32_t l3 = c->ipver == 6 ? 40 : 20;
    const uint8_t *ip = whole + 14, *body = ip + l3;
    uint32_t blen = len - 14 - l3;
    /* cut points: multiples of 8 inside the body */
    uint32_t cut1 = 8 * (1 + (how & 7) % (blen / 8 - 1 > 0 ? blen / 8 - 1 : 1));
    if (cut1 >= blen) cut1 = 8;
    uint32_t pieces[3][2] = {{0, cut1}, {cut1, blen - cut1}, {0, 0}};
    int np = 2;
    if ((how & 8) && blen - cut1 > 16) { /* three pieces, the middle one overlapping when bit 4 */
        uint32_t cut2 = cut1 + 8 * (1 + ((how >> 5) % ((blen - cut1) / 8 - 1)));
        if (cut2 < blen) {
            pieces[1][1] = cut2 - cut1;
            pieces[2][0] = cut2;
            pieces[2][1] = blen - cut2;
            np = 3;
            if ((how & 16) && pieces[1][0] >= 8) pieces[1][0] -= 8, pieces[1][1] += 8;
        }
    }
    for (int k = 0; k < np; k++) {
        int idx = (how & 0x80) ? np - 1 - k : k; /* reversed order */
        uint32_t fo = pieces[idx][0], fl = pieces[idx][1];
        int more = idx < np - 1;
        mos_frame_t *fr = next_frame(h);
        uint8_t *b = (uint8_t *)fr->data;
        memcpy(b, whole, 14);
        uint8_t *q = b + 14;
        uint32_t n;
        if (c->ipver == 4) {
            memcpy(q, ip, 20);
            wr16(q + 2, (uint16_t)(20 + fl));
            wr16(q + 6, (uint16_t)((more ? 0x2000 : 0) | fo / 8));
            wr16(q + 10, 0);
            wr16(q + 10, (uint16_t)~fz_fold(fz_sum(0, q, 20)));
            memcpy(q + 20, body + fo, fl);
            n = 14 + 20 + fl;
        } else {
            memcpy(q, ip, 40);
            q[6] = 44; /* fragment header */
            wr16(q + 4, (uint16_t)(8 + fl));
            uint8_t *fh = q + 40;
            fh[0] = 6;
            fh[1] = 0;
            wr16(fh + 2, (uint16_t)(fo | (more ? 1 : 0)));
            wr32(fh + 4, 0x1000 + c->ipid);
            memcpy(fh + 8, body + fo, fl);
            n = 14 + 48 + fl;
        }
        push(h, n, 0);
    }
}

/* ---------------------------------------------------------------- program */

static void setup_conv(h_t *h, int k, uint8_t b)
{
    conv_t *c = &h->conv[k];
    memset(c, 0, sizeof *c);
    c->ipver = (b & 1) ? 6 : 4;
    c->vlan = (b >> 1) & 1;
    if (c->ipver == 4) {
        memcpy(c->caddr, "\xc6\x12\x00\x01", 4);
        memcpy(c->saddr, "\xc6\x12\x00\x02", 4);
        c->caddr[3] = (uint8_t)(1 + k * 2);
    } else {
        memcpy(c->caddr, "\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x01", 16);
        memcpy(c->saddr, "\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x02", 16);
        c->caddr[15] = (uint8_t)(1 + k * 2);
    }
    /* conversations 2 and 3 share conversation 0's and 1's ports when bit 2: port reuse */
    c->cport = (uint16_t)(40000 + ((b & 4) ? k % 2 : k));
    c->sport = (b & 8) ? 40000 + 7 : 80; /* bit 3: a server port above the client's */
    static const uint32_t isns[4] = {1000, 0xfffffff0u, 0x7fffff00u, 0};
    c->isn[0] = isns[(b >> 4) & 3] + (uint32_t)k * 77777u;
    c->isn[1] = isns[(b >> 6) & 3] + 5000u + (uint32_t)k * 33333u;
    c->nxt[0] = c->isn[0] + 1;
    c->nxt[1] = c->isn[1] + 1;
}

static void op(h_t *h, uint8_t code)
{
    conv_t *c = &h->conv[(code >> 5) & 3];
    int side = (code >> 7) & 1;
    fuzz_in_t *in = &h->in;
    switch (code & 31) {
    case 0: case 1: /* SYN, options chosen */
        segment(h, c, 0, c->isn[0], 0, MOS_TH_SYN, 0, fin_u8(in), 65535, 0);
        break;
    case 2: /* SYN-ACK */
        segment(h, c, 1, c->isn[1], c->isn[0] + 1, MOS_TH_SYN | MOS_TH_ACK, 0, fin_u8(in), 65535, 0);
        break;
    case 3: case 4: /* pure ACK */
        segment(h, c, side, c->nxt[side], c->nxt[!side], MOS_TH_ACK, 0, fin_u8(in) & 0x38, 65535, 0);
        break;
    case 5: case 6: case 7: case 8: { /* data in order */
        uint8_t a = fin_u8(in);
        uint32_t len = (a & 0x80) ? fin_u16(in) % 1201 : a % 64 + 1;
        segment(h, c, side, c->nxt[side], c->nxt[!side], MOS_TH_ACK | MOS_TH_PUSH, len, 0, 65535, 0);
        c->nxt[side] += len;
        break;
    }
    case 9: case 10: { /* retransmission: back by some bytes, maybe longer */
        uint32_t back = fin_u16(in) % 3000, len = fin_u8(in) * 4u + 1;
        segment(h, c, side, c->nxt[side] - back, c->nxt[!side], MOS_TH_ACK, len, 0, 65535, 0);
        if (seq_gt(c->nxt[side] - back + len, c->nxt[side])) c->nxt[side] = c->nxt[side] - back + len;
        break;
    }
    case 11: case 12: { /* out of order: ahead by some bytes (a hole) */
        uint32_t ahead = fin_u16(in) % 70000 + 1, len = fin_u8(in) * 4u + 1;
        segment(h, c, side, c->nxt[side] + ahead, c->nxt[!side], MOS_TH_ACK, len, 0, 65535, 0);
        break;
    }
    case 13: /* FIN (with ACK), maybe data */
        segment(h, c, side, c->nxt[side], c->nxt[!side], MOS_TH_FIN | MOS_TH_ACK, 0, 0, 65535, 0);
        c->nxt[side] += 1;
        break;
    case 14: { /* RST: in window, at RCV.NXT, or far off */
        uint8_t a = fin_u8(in);
        uint32_t seq = a & 1 ? c->nxt[side] : a & 2 ? c->nxt[side] + fin_u16(in) : fin_u32(in);
        segment(h, c, side, seq, c->nxt[!side], MOS_TH_RST | (a & 4 ? MOS_TH_ACK : 0), a >> 7, 0, 0, 0);
        break;
    }
    case 15: /* window update: zero, small, or a big scaled one */
        segment(h, c, side, c->nxt[side], c->nxt[!side], MOS_TH_ACK, 0, 0, fin_u16(in), 0);
        break;
    case 16: /* an ACK of bytes never seen (the monitor missed them) */
        segment(h, c, side, c->nxt[side], c->nxt[!side] + fin_u16(in), MOS_TH_ACK, 0, 0, 65535, 0);
        break;
    case 17: /* the sender's numbers jump (wrap, or lost sequence space) */
        c->nxt[side] += fin_u32(in);
        break;
    case 18: /* time passes: a little, or past the idle timeout */
        run_burst(h);
        {
            /* 30 ms: inside the LRU grain; 100 ms; 5 s: past every timeout */
            static const uint64_t steps[4] = {30000000ull, 100000000ull, 5000000000ull, 1000ull};
            h->now += steps[fin_u8(in) & 3];
        }
        if (fin_u8(in) & 1) { /* a live port's tick with no packet */
            mos_engine_advance(h->e, h->now);
            check_flows(h);
            dispatch(h, 0);
            reap(h);
        }
        FUZZ_CHECK(mos_engine_next_deadline(h->e) > 0, "deadline 0");
        break;
    case 19: /* end of a burst */
        run_burst(h);
        break;
    case 20: { /* raw bytes as a frame, any link type */
        static const uint16_t lts[8] = {1, 101, 113, 276, 0, 108, 228, 229};
        uint8_t a = fin_u8(in);
        mos_frame_t *fr = next_frame(h);
        fr->linktype = lts[a & 7];
        uint32_t n = (uint32_t)fin_bytes(in, (uint8_t *)fr->data, fin_u8(in));
        push(h, n, 0);
        h->oracle = false;
        break;
    }
    case 21: { /* the last frame again with a few bytes changed */
        if (!h->nfr) break;
        const mos_frame_t *last = &h->fr[h->nfr - 1];
        uint32_t len = last->caplen;
        uint8_t tmp[FRCAP];
        memcpy(tmp, last->data, len);
        uint8_t k = fin_u8(in) % 4 + 1;
        for (int i = 0; i < k; i++) {
            uint16_t pos = fin_u16(in);
            tmp[pos % len] = fin_u8(in);
        }
        mos_frame_t *fr = next_frame(h);
        memcpy((uint8_t *)fr->data, tmp, len);
        push(h, len, 0);
        h->oracle = false;
        break;
    }
    case 22: /* the same data as IP fragments */
        fragments(h, c, side, fin_u16(in) % 1001, fin_u8(in));
        break;
    case 23: { /* data cut short by the capture */
        uint32_t len = fin_u8(in) + 1u;
        segment(h, c, side, c->nxt[side], c->nxt[!side], MOS_TH_ACK, len, 0, 65535, fin_u8(in) + 1u);
        c->nxt[side] += len;
        break;
    }
    case 24: /* SYN with data (TCP Fast Open) or a SYN with a new ISN */
        if (fin_u8(in) & 1) {
            uint32_t len = fin_u8(in) % 100 + 1;
            segment(h, c, 0, c->isn[0], 0, MOS_TH_SYN, len, 0, 65535, 0);
            if (seq_lt(c->nxt[0], c->isn[0] + 1 + len)) c->nxt[0] = c->isn[0] + 1 + len;
        } else {
            c->isn[side] += 1000000;
            c->nxt[side] = c->isn[side] + 1;
            segment(h, c, side, c->isn[side], side ? c->isn[0] + 1 : 0,
                    side ? MOS_TH_SYN | MOS_TH_ACK : MOS_TH_SYN, 0, 0, 65535, 0);
        }
        break;
    case 25: { /* data with FIN, and odd flags (URG, ECE, CWR) */
        uint8_t a = fin_u8(in);
        uint32_t len = a % 32 + 1;
        segment(h, c, side, c->nxt[side], c->nxt[!side], MOS_TH_ACK | MOS_TH_FIN | (a & 0xe0), len,
                0, 65535, 0);
        c->nxt[side] += len + 1;
        break;
    }
    case 26: /* a segment without ACK (scans, FIN evasion) */
        segment(h, c, side, c->nxt[side], 0, fin_u8(in) & (MOS_TH_FIN | MOS_TH_PUSH | MOS_TH_URG),
                fin_u8(in) % 8, 0, 65535, 0);
        break;
    case 27: /* the idle timeout of every flow, then the end of the capture */
        if (fin_u8(in) == 0x5a) {
            run_burst(h);
            mos_engine_end_all(h->e, MOS_END_SHUTDOWN);
            check_flows(h);
            dispatch(h, 0);
            reap(h);
        }
        break;
    default: { /* data with options from the input (SACK blocks, raw bytes) */
        uint8_t sel = fin_u8(in) | 0x10;
        uint32_t len = fin_u8(in) % 200;
        segment(h, c, side, c->nxt[side], c->nxt[!side], MOS_TH_ACK, len, sel, 65535, 0);
        c->nxt[side] += len;
        break;
    }
    }
}

/* A compiled stream consumer (engine.h) that checks what it is fed: each
 * stream's offsets are continuous from its first byte, every byte is
 * readable (ASan), and it raises a note now and then. */
typedef struct cons_st {
    uint64_t next;
    uint64_t sum;
    uint32_t calls;
} cons_st_t;

static void cons_data(void *ctx, mos_cstream_t *cs, uint64_t off, const uint8_t *d, uint32_t n)
{
    (void)ctx;
    cons_st_t *st = *cs->state;
    FUZZ_CHECK(n > 0, "consumer fed 0 bytes at %llu", (unsigned long long)off);
    FUZZ_CHECK(cs->side == 0 || cs->side == 1, "consumer side %d", cs->side);
    if (!st) {
        st = calloc(1, sizeof *st);
        FUZZ_CHECK(st, "calloc");
        st->next = off;
        *cs->state = st;
    }
    FUZZ_CHECK(off == st->next, "consumer fed offset %llu, expected %llu",
               (unsigned long long)off, (unsigned long long)st->next);
    st->next = off + n;
    if (d)
        for (uint32_t i = 0; i < n; i++) st->sum += d[i];
    if (++st->calls % 4 == 1) mos_cstream_note(cs, st->calls, off + n, n);
}

static void cons_end(void *ctx, mos_cstream_t *cs)
{
    (void)ctx;
    cons_st_t *st = *cs->state;
    mos_cstream_note(cs, 0, st->next, 0);
    free(st);
    *cs->state = NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static h_t H;
    h_t *h = &H;
    if (debug < 0) debug = getenv("FUZZ_DEBUG") != NULL;
    memset(h->si, 0, sizeof h->si);
    h->in = (fuzz_in_t){data, size};
    h->nfr = 0;
    h->now = 1000000000ull;
    h->oracle = true;
    uint8_t b0 = fin_u8(&h->in), b1 = fin_u8(&h->in), b2 = fin_u8(&h->in), b3 = fin_u8(&h->in);
    static const uint32_t bufs[8] = {0, 16, 100, 1024, 4096, 65536, 1u << 20, 7};
    mos_config_t *cfg = &h->cfg;
    memset(cfg, 0, sizeof *cfg);
    cfg->buffer_size[0] = bufs[b0 & 7];
    cfg->buffer_size[1] = bufs[(b0 >> 3) & 7];
    cfg->overlap[0] = (b1 & 1) ? MOS_OVERLAP_LAST : MOS_OVERLAP_FIRST;
    cfg->overlap[1] = (b1 & 2) ? MOS_OVERLAP_LAST : MOS_OVERLAP_FIRST;
    cfg->midstream = (b1 >> 2) & 1;
    cfg->checksum = (b1 >> 3) & 1 ? MOS_CSUM_VERIFY : (b0 & 0x40 ? MOS_CSUM_AUTO : MOS_CSUM_IGNORE);
    cfg->digest = (b1 >> 4) & 1;
    cfg->keep_read = (b1 >> 5) & 1;
    cfg->max_flows = (b2 & 3) + 1;
    cfg->tcp_timeout_ns = (uint64_t)((b2 >> 2) & 3) * 1000000000ull + 1000000000ull;
    cfg->defrag_mem = (b2 & 0x10) ? 4096 : 1 << 20;
    cfg->defrag_timeout_ns = 2000000000ull;
    h->e = mos_engine_new(cfg);
    FUZZ_CHECK(h->e, "engine_new");
    mos_engine_set_mtu(h->e, (b2 & 0x20) ? 576 : 1500);
    /* interest: every event (the oracle's CONN_END count), none (bytes released
     * at once), or a subset of event types (all hooks and sides) */
    mos_interest_t m;
    memset(&m, 0, sizeof m);
    h->all_events = false;
    switch ((b1 >> 6) & 3) {
    case 0: case 1:
        memset(&m, 0xff, sizeof m);
        h->all_events = true;
        break;
    case 2:
        break;
    default:
        for (int ev = 0; ev < MOS_EV_COUNT; ev++)
            if (b3 >> (ev % 8) & 1)
                for (int k = 0; k < 6; k++) {
                    unsigned i = (unsigned)(ev * 6 + k);
                    m.w[i >> 6] |= 1ull << (i & 63);
                }
        break;
    }
    mos_engine_set_interest(h->e, &m);
    if (b3 & 0x80) { /* a compiled consumer on one side or both, with a lookback */
        static const uint32_t lookbacks[4] = {0, 1, 100, 4096};
        mos_consumer_t cons = {cons_data, cons_end, NULL, (uint8_t)(((b2 >> 7) | (b3 >> 5 & 2)) ?
                               ((b2 >> 7) | (b3 >> 5 & 2)) : 3), lookbacks[(b3 >> 4) & 3]};
        FUZZ_CHECK(mos_engine_add_consumer(h->e, &cons) == 0, "add_consumer");
    }
    for (int k = 0; k < NCONV; k++) setup_conv(h, k, fin_u8(&h->in));
    int steps = 0;
    while (!fin_empty(&h->in) && steps++ < 4000) op(h, fin_u8(&h->in));
    run_burst(h);
    const mos_counters_t *c = mos_engine_counters(h->e);
    fuzz_inject("engine", c->flows_created > 0);
    if (b2 & 0x40) { /* freed with flows live (an engine dropped mid-capture): no leak */
        mos_engine_free(h->e);
        h->e = NULL;
        return 0;
    }
    /* the end of the capture: every flow ends (CONN_END reason SHUTDOWN) */
    mos_engine_end_all(h->e, MOS_END_SHUTDOWN);
    check_flows(h);
    dispatch(h, 0);
    reap(h);
    FUZZ_CHECK(c->flows_live == 0, "flows live after end_all");
    mos_engine_free(h->e);
    h->e = NULL;
    return 0;
}
