/* fuzz_host.c: the end host's active endpoint (mos/tcp/host.h), two of them
 * through a wire the input scripts.
 *
 * The first bytes pick each side's configuration (MSS, window scale, SACK,
 * timestamps, Nagle, buffer sizes, and for the passive side whether it
 * opens through a SYN cookie: a stateless SYN-ACK, then
 * mos_tcp_host_accept_cookie on the client's ACK); then each input byte is one step:
 * deliver, drop, duplicate or hold back the next segment in flight, let time
 * pass to the next timer, have an app write or read, shut down, abort, or
 * inject a segment made of input bytes (any flags, sequence numbers,
 * options, payload) into either side.  Apps write a known byte pattern
 * (byte k of a stream is (k * 7 + side) & 255), so every byte read is
 * checked where it lies.  Invariants:
 *   - the state is valid; SND.UNA <= SND.NXT; unacknowledged bytes never
 *     pass SO_SNDBUF, readable bytes never pass SO_RCVBUF;
 *   - every byte an app reads is the byte its peer wrote at that offset
 *     (whatever the wire did, forged segments aside: a forged segment stops
 *     the check for that direction, since it may carry any bytes);
 *   - every segment output carries a valid option set that writes and
 *     parses back the same; a segment's payload lies in the send buffer;
 *   - the deadline, when armed, is not in the past after a timer call. */
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "host.h"

#define QMAX 64

typedef struct {
    mos_tcp_host_out_t out;
    uint8_t payload[2048];
    int to;
} qseg_t;

typedef struct {
    qseg_t q[QMAX];
    int n;
} wire_t;

static uint8_t pattern(uint64_t k, int side) { return (uint8_t)(k * 7 + (unsigned)side); }

/* A side's configuration; returns the spare bit of its first byte. */
static int cfg_from(fuzz_in_t *in, mos_tcp_host_cfg_t *c)
{
    mos_tcp_host_cfg_default(c);
    uint8_t a = fin_u8(in), b = fin_u8(in);
    c->mss = (uint16_t)(64 + (fin_u16(in) % 1500));
    c->wscale = (a & 15) > 14 ? 14 : (a & 15);
    c->sack = (a >> 4) & 1;
    c->ts = (a >> 5) & 1;
    c->nodelay = (a >> 6) & 1;
    c->rcvbuf = 512u << (b & 7);
    c->sndbuf = 512u << ((b >> 3) & 7);
    c->time_wait = 1000000000ull;
    return a >> 7;
}

static void push(wire_t *w, mos_tcp_host_t *from, const mos_tcp_host_out_t *o, int to)
{
    if (w->n == QMAX) memmove(&w->q[0], &w->q[1], (QMAX - 1) * sizeof w->q[0]); /* oldest lost */
    else w->n++;
    qseg_t *s = &w->q[w->n - 1];
    s->out = *o;
    s->to = to;
    uint32_t n = o->len > sizeof s->payload ? sizeof s->payload : o->len;
    s->out.len = n;
    if (n) mos_tcp_host_copy_tx(from, o->data_off, s->payload, n);
}

static void check_out(const mos_tcp_host_t *h, const mos_tcp_host_out_t *o)
{
    uint8_t buf[64];
    int k = mos_tcp_write_options(&o->opt, buf, sizeof buf);
    FUZZ_CHECK(k >= 0 && k <= 40 && k % 4 == 0, "options wrote %d bytes", k);
    mos_tcp_opts_t back;
    memset(&back, 0, sizeof back);
    mos_tcp_parse_options(buf, (uint32_t)k, &back);
    FUZZ_CHECK((back.opts & ~MOS_OPT_BAD) == o->opt.opts, "options %x parse back as %x",
               o->opt.opts, back.opts);
    if (o->len) {
        FUZZ_CHECK(o->data_off >= h->sb_off && o->data_off + o->len <= h->sb_off + h->sb_len,
                   "payload [%llu, +%u) outside the send buffer [%llu, +%llu)",
                   (unsigned long long)o->data_off, o->len, (unsigned long long)h->sb_off,
                   (unsigned long long)h->sb_len);
    }
}

static void drain(mos_tcp_host_t *h, int side, wire_t *w, uint64_t now)
{
    mos_tcp_host_out_t o;
    for (int k = 0; k < 256 && mos_tcp_host_output(h, now, &o); k++) {
        check_out(h, &o);
        push(w, h, &o, 1 - side);
    }
}

/* The passive open of side 1 on the SYN `syn`: from its SYN queue, or (RFC
 * 4987 3.6) a SYN-ACK that keeps no state, the client's ACK, and the
 * connection made from what a cookie would remember of the SYN. */
static int open_passive(mos_tcp_host_t h[2], const mos_tcp_host_out_t *syn, uint32_t iss,
                        int cookie, uint64_t now)
{
    mos_tcp_seg_t seg = {syn->seq, syn->ack, syn->len, syn->wnd, syn->flags, &syn->opt};
    if (!cookie) return mos_tcp_host_accept(&h[1], &seg, iss, now);
    mos_tcp_host_out_t sa, ack;
    mos_tcp_host_synack(&h[1].cfg, &seg, iss, iss ^ 0x5a5a5a5au, &sa);
    check_out(&h[1], &sa);
    mos_tcp_seg_t s2 = {sa.seq, sa.ack, 0, sa.wnd, sa.flags, &sa.opt};
    mos_tcp_host_input(&h[0], &s2, NULL, now);
    if (!mos_tcp_host_output(&h[0], now, &ack)) return -1;
    mos_tcp_syn_opts_t o = {(syn->opt.opts & MOS_OPT_MSS) ? syn->opt.mss : 536,
                            (sa.opt.opts & MOS_OPT_WSCALE) ? syn->opt.wscale : MOS_TCP_NO_WSCALE,
                            (sa.opt.opts & MOS_OPT_SACKOK) != 0, (sa.opt.opts & MOS_OPT_TS) != 0};
    mos_tcp_seg_t s3 = {ack.seq, ack.ack, ack.len, ack.wnd, ack.flags, &ack.opt};
    int ev = mos_tcp_host_accept_cookie(&h[1], &s3, NULL, &o, iss, now);
    FUZZ_CHECK(ev >= 0 && h[1].me.state == MOS_TCPS_ESTABLISHED, "cookie open: ev %d state %d",
               ev, h[1].me.state);
    return 0;
}

static void invariants(const mos_tcp_host_t *h)
{
    FUZZ_CHECK(h->me.state < MOS_TCPS_COUNT, "state %d", h->me.state);
    FUZZ_CHECK(h->sb_len <= h->cfg.sndbuf, "unacked %llu > sndbuf %u",
               (unsigned long long)h->sb_len, h->cfg.sndbuf);
    FUZZ_CHECK(mos_tcp_host_readable(h) <= h->cfg.rcvbuf + 2048u, "readable %u > rcvbuf %u",
               mos_tcp_host_readable(h), h->cfg.rcvbuf);
    if (h->me.state >= MOS_TCPS_ESTABLISHED)
        FUZZ_CHECK(seq_leq(h->snd_una, h->me.snd_nxt), "SND.UNA %u > SND.NXT %u", h->snd_una,
                   h->me.snd_nxt);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_in_t in = {data, size};
    mos_tcp_host_cfg_t cfg[2];
    cfg_from(&in, &cfg[0]);
    int cookie = cfg_from(&in, &cfg[1]);
    static mos_tcp_host_t h[2];
    static wire_t w;
    if (mos_tcp_host_init(&h[0], &cfg[0], NULL) || mos_tcp_host_init(&h[1], &cfg[1], NULL))
        return 0;
    w.n = 0;
    uint64_t now = 1000000, written[2] = {0, 0}, readoff[2] = {0, 0};
    int forged[2] = {0, 0}; /* a forged segment went to side i: its bytes are not checked */
    mos_tcp_host_connect(&h[0], fin_u32(&in), now);
    mos_tcp_host_out_t o;
    if (!mos_tcp_host_output(&h[0], now, &o)) goto out;
    if (open_passive(h, &o, fin_u32(&in), cookie, now)) goto out;
    drain(&h[1], 1, &w, now);
    uint8_t buf[4096];
    for (int steps = 0; !fin_empty(&in) && steps < 2000; steps++) {
        uint8_t op = fin_u8(&in);
        int s = op & 1;
        if (getenv("FUZZ_TRACE"))
            fprintf(stderr, "step %d op %d side %d q %d | %s %s una %u nxt %u sb %llu+%llu | %s\n",
                    steps, (op >> 1) % 10, s, w.n, mos_tcp_state_names[h[0].me.state],
                    mos_tcp_state_names[h[1].me.state], h[0].snd_una - h[0].me.iss,
                    h[0].me.snd_nxt - h[0].me.iss, (unsigned long long)h[0].sb_off,
                    (unsigned long long)h[0].sb_len, forged[1] ? "forged" : "");
        switch ((op >> 1) % 10) {
        case 0: case 1: case 2: { /* deliver the next (or a later) segment */
            if (!w.n) break;
            int k = (op >> 5) % 4 == 3 && w.n > 1 ? 1 : 0; /* sometimes out of order */
            qseg_t sg = w.q[k];
            memmove(&w.q[k], &w.q[k + 1], (size_t)(w.n - k - 1) * sizeof w.q[0]);
            w.n--;
            mos_tcp_seg_t seg = {sg.out.seq, sg.out.ack, sg.out.len, sg.out.wnd, sg.out.flags,
                                 &sg.out.opt};
            now += 1000 + fin_u8(&in) * 1000ull;
            if (getenv("FUZZ_TRACE") && sg.out.len) {
                uint32_t rel = sg.out.seq - h[1 - sg.to].me.iss - 1;
                for (uint32_t k = 0; k < sg.out.len; k++)
                    if (sg.payload[k] != pattern(rel + k, 1 - sg.to)) {
                        fprintf(stderr, "WRONG BYTES on the wire at %u (+%u) to %d\n", rel, k, sg.to);
                        break;
                    }
                fprintf(stderr, "  deliver to %d rel %u len %u flags %x | rb base %llu head %llu runs %u limit %u read %llu edge %u\n", sg.to, rel, sg.out.len, sg.out.flags,
                        (unsigned long long)h[sg.to].me.rbuf.base, (unsigned long long)h[sg.to].me.rbuf.head, h[sg.to].me.rbuf.nruns, h[sg.to].me.rbuf.limit, (unsigned long long)0, h[sg.to].me.rwin_edge - h[1-sg.to].me.iss - 1);
            }
            mos_tcp_host_input(&h[sg.to], &seg, sg.out.len ? sg.payload : NULL, now);
            if ((op >> 5) == 7 && w.n < QMAX) { /* and a duplicate later */
                w.q[w.n++] = sg;
            }
            break;
        }
        case 3: /* drop the next segment */
            if (w.n) {
                memmove(&w.q[0], &w.q[1], (size_t)(w.n - 1) * sizeof w.q[0]);
                w.n--;
            }
            break;
        case 4: { /* time passes: the earliest timer of either side */
            uint64_t d0 = mos_tcp_host_deadline(&h[0]), d1 = mos_tcp_host_deadline(&h[1]);
            uint64_t d = d0 && (!d1 || d0 < d1) ? d0 : d1;
            if (d > now) now = d;
            else now += 1000000;
            mos_tcp_host_timer(&h[0], now);
            mos_tcp_host_timer(&h[1], now);
            for (int i = 0; i < 2; i++) {
                uint64_t dd = mos_tcp_host_deadline(&h[i]);
                FUZZ_CHECK(!dd || dd > now || h[i].me.state == MOS_TCPS_CLOSED ||
                           dd == h[i].delack_at || dd == h[i].rto_at || dd == h[i].tlp_at,
                           "deadline %llu not after now %llu", (unsigned long long)dd,
                           (unsigned long long)now);
            }
            break;
        }
        case 5: { /* the app of side s writes */
            uint32_t n = fin_u16(&in) % sizeof buf;
            for (uint32_t k = 0; k < n; k++) buf[k] = pattern(written[s] + k, s);
            written[s] += mos_tcp_host_send(&h[s], buf, n);
            break;
        }
        case 6: { /* the app of side s reads; the bytes are checked */
            uint32_t n = 1 + fin_u16(&in) % sizeof buf;
            uint32_t got = mos_tcp_host_recv(&h[s], buf, n);
            for (uint32_t k = 0; k < got && !forged[s]; k++)
                FUZZ_CHECK(buf[k] == pattern(readoff[s] + k, 1 - s),
                           "side %d read byte %llu = %u, its peer wrote %u", s,
                           (unsigned long long)(readoff[s] + k), buf[k],
                           pattern(readoff[s] + k, 1 - s));
            readoff[s] += got;
            break;
        }
        case 7:
            mos_tcp_host_shutdown(&h[s]);
            break;
        case 8:
            if ((op >> 5) == 0) mos_tcp_host_abort(&h[s]);
            break;
        case 9: { /* a forged segment to side s */
            mos_tcp_opts_t opt;
            memset(&opt, 0, sizeof opt);
            uint8_t ob[40];
            uint8_t ol = fin_u8(&in) % 41;
            fin_bytes(&in, ob, ol);
            mos_tcp_parse_options(ob, ol, &opt);
            uint32_t len = fin_u8(&in);
            uint8_t pl[256];
            fin_bytes(&in, pl, len);
            uint32_t base = h[s].peer.isn + 1 + (uint32_t)h[s].me.rbuf.head;
            mos_tcp_seg_t seg = {base + (int16_t)fin_u16(&in), h[s].snd_una + (int16_t)fin_u16(&in),
                                 len, fin_u16(&in), fin_u8(&in), &opt};
            forged[s] |= len > 0;
            now += 1000;
            mos_tcp_host_input(&h[s], &seg, len ? pl : NULL, now);
            break;
        }
        }
        drain(&h[0], 0, &w, now);
        drain(&h[1], 1, &w, now);
        invariants(&h[0]);
        invariants(&h[1]);
    }
out:
    mos_tcp_host_free(&h[0]);
    mos_tcp_host_free(&h[1]);
    return 0;
}
