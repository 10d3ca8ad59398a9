/* fuzz_seqmap.c: sequence maps and segment rewriting (mos/tcp/seqmap.h,
 * rewrite.h) against a model.
 *
 * Two maps (the sender's and its peer's) get edits from the input inside a
 * window of raw sequence numbers (which may straddle 2^32).  A model of the
 * sender's wire stream is built by walking the raw stream and applying the
 * edits in order.  Invariants:
 *   - edits stay sorted and disjoint, at most MOS_SEQMAP_MAX; add returns
 *     one of its codes, has() finds what add kept, a refused add changes
 *     nothing;
 *   - the rewrite of the whole window is the model's wire stream, numbered
 *     from out(W0); the rewrite of any segment is a slice of it, starting at
 *     the wire number it returns (out(seq) unless seq is inside a replaced
 *     range), rewrite_len agrees, and a cap one byte short is refused
 *     without writing past it (exact-size heap buffers, ASan);
 *   - out() and in() never decrease over the window, in(out(s)) == s at any
 *     raw boundary not inside a replaced range or at a pure deletion;
 *   - acked() folds only leading edits and moves nothing past them;
 *   - mos_rewrite_segment on a built frame (Ethernet or raw IP, IPv4 or
 *     IPv6, SACK blocks): fits mos_rewrite_bound, decodes as TCP with valid
 *     IP and TCP checksums (computed here, not by decode.c), its sequence
 *     number and payload are the map's rewrite, its ACK and SACK edges are
 *     the peer map's in(); a smaller cap is refused or fits;
 *   - mos_split_segment: pieces of at most max_pay bytes whose payloads
 *     concatenate to the original, numbered in order, valid checksums, FIN
 *     and PSH on the last piece only; refused when cap is short. */
#include "capture.h"
#include "decode.h"
#include "fuzz_util.h"
#include "rewrite.h"
#include "seqmap.h"
#include "tcpseq.h"

#define SPAN 4096           /* raw window the edits fall in */
#define MARGIN 64           /* untouched raw bytes around it */
#define WLEN (SPAN + 2 * MARGIN)

static inline uint8_t pattern(uint32_t seq) { return (uint8_t)((seq * 2654435761u) >> 24); }

static uint8_t rawbuf[WLEN];
static uint8_t model[WLEN + MOS_SEQMAP_MAX * 300];

static void check_sorted(const mos_seqmap_t *m)
{
    FUZZ_CHECK(m->n <= MOS_SEQMAP_MAX, "n %u", m->n);
    for (uint32_t i = 0; i < m->n; i++) {
        const mos_edit_t *e = &m->e[i];
        FUZZ_CHECK(e->del || e->ins_len, "empty edit %u", i);
        FUZZ_CHECK(!e->after || !e->del, "after with del");
        FUZZ_CHECK((e->ins_len == 0) == (e->ins == NULL), "ins pointer");
        if (i) {
            const mos_edit_t *p = &m->e[i - 1];
            uint32_t phi = p->del ? p->seq + p->del : (p->after ? p->seq : p->seq + 1);
            uint32_t lo = e->del || !e->after ? e->seq : e->seq - 1;
            FUZZ_CHECK(seq_leq(phi, lo), "edits %u and %u overlap or are out of order", i - 1, i);
        }
    }
}

/* the model: the wire form of raw [w0, w0 + WLEN) (no edit near its ends) */
static uint32_t build_model(const mos_seqmap_t *m, uint32_t w0)
{
    uint32_t o = 0, skip = 0;
    for (uint32_t k = 0; k < WLEN; k++) {
        uint32_t p = w0 + k;
        for (uint32_t i = 0; i < m->n; i++) {
            const mos_edit_t *e = &m->e[i];
            if (e->seq != p) continue;
            if (e->ins_len) memcpy(model + o, e->ins, e->ins_len);
            o += e->ins_len;
            if (e->del > skip) skip = e->del;
        }
        if (skip) {
            skip--;
            continue;
        }
        model[o++] = rawbuf[k];
    }
    return o;
}

static int inside_replaced(const mos_seqmap_t *m, uint32_t s)
{
    for (uint32_t i = 0; i < m->n; i++)
        if (m->e[i].del && seq_lt(m->e[i].seq, s) && seq_lt(s, m->e[i].seq + m->e[i].del)) return 1;
    return 0;
}
static int pure_deletion_at(const mos_seqmap_t *m, uint32_t s)
{
    for (uint32_t i = 0; i < m->n; i++)
        if (!m->e[i].ins_len && m->e[i].seq == s) return 1;
    return 0;
}

static void add_edits(fuzz_in_t *in, mos_seqmap_t *m, uint32_t base, int count)
{
    uint8_t ins[300];
    for (int k = 0; k < count && !fin_empty(in); k++) {
        uint32_t seq = base + MARGIN + fin_u16(in) % SPAN;
        uint8_t a = fin_u8(in);
        uint32_t del = (a & 3) == 0 ? 0 : (a & 3) == 3 ? fin_u8(in) : fin_u8(in) % 8;
        uint32_t il = (a & 4) ? fin_u8(in) : (a >> 4) % 4;
        if (seq - base + del > MARGIN + SPAN) del = MARGIN + SPAN - (seq - base);
        for (uint32_t i = 0; i < il; i++) ins[i] = (uint8_t)(0x41 + i % 26);
        int after = (a >> 3) & 1;
        uint32_t n0 = m->n;
        int rc = mos_seqmap_add(m, seq, del, ins, il, after);
        FUZZ_CHECK(rc == MOS_SEQMAP_OK || rc == MOS_SEQMAP_SAME || rc == MOS_SEQMAP_FULL ||
                   rc == MOS_SEQMAP_OVERLAP || rc == MOS_SEQMAP_EMPTY, "add returned %d", rc);
        if (rc == MOS_SEQMAP_OK || rc == MOS_SEQMAP_SAME)
            FUZZ_CHECK(mos_seqmap_has(m, seq, del, ins, il, after), "has() misses a kept edit");
        FUZZ_CHECK(m->n == n0 + (rc == MOS_SEQMAP_OK), "n %u after %d (was %u)", m->n, rc, n0);
        if (rc == MOS_SEQMAP_OK) fuzz_inject("seqmap", m->n >= 2);
        check_sorted(m);
    }
}

static void check_map(fuzz_in_t *in, const mos_seqmap_t *m, uint32_t w0)
{
    uint32_t mlen = build_model(m, w0);
    /* the whole window */
    uint32_t cap = mos_seqmap_rewrite_len(m, w0, WLEN);
    FUZZ_CHECK(cap == mlen, "rewrite_len %u, model %u", cap, mlen);
    uint8_t *out = malloc(cap);
    uint32_t wseq;
    uint32_t n = mos_seqmap_rewrite(m, w0, rawbuf, WLEN, out, cap, &wseq);
    FUZZ_CHECK(n == mlen && memcmp(out, model, n) == 0, "window rewrite differs from the model");
    FUZZ_CHECK(wseq == mos_seqmap_out(m, w0), "window starts at %u, out() says %u", wseq,
               mos_seqmap_out(m, w0));
    free(out);
    uint32_t wire0 = wseq;
    /* segments */
    for (int k = 0; k < 8 && !fin_empty(in); k++) {
        uint32_t s = fin_u16(in) % WLEN, l = fin_u16(in) % (WLEN - s + 1);
        uint32_t want = mos_seqmap_rewrite_len(m, w0 + s, l);
        uint8_t *o = malloc(want ? want : 1);
        uint32_t got = mos_seqmap_rewrite(m, w0 + s, rawbuf + s, l, o, want, &wseq);
        FUZZ_CHECK(got == want, "rewrite %u, rewrite_len %u", got, want);
        if (!inside_replaced(m, w0 + s))
            FUZZ_CHECK(wseq == mos_seqmap_out(m, w0 + s), "segment at %u starts at %u, out() %u",
                       w0 + s, wseq, mos_seqmap_out(m, w0 + s));
        FUZZ_CHECK(l || got == 0, "an empty segment carries %u bytes", got);
        uint32_t at = wseq - wire0;
        /* (an empty segment inside a replaced range has no place in the wire stream) */
        FUZZ_CHECK((!l && inside_replaced(m, w0 + s)) ||
                       (at <= mlen && got <= mlen - at && memcmp(o, model + at, got) == 0),
                   "segment [%u,+%u) is not the wire slice at %u", s, l, at);
        if (want) {
            uint32_t r = mos_seqmap_rewrite(m, w0 + s, rawbuf + s, l, o, want - 1, &wseq);
            FUZZ_CHECK(r == UINT32_MAX, "a cap one short was not refused (%u)", r);
        }
        free(o);
    }
    /* out / in monotone, round trip */
    uint32_t prev_out = mos_seqmap_out(m, w0), prev_in = mos_seqmap_in(m, wire0);
    for (uint32_t k = 1; k <= WLEN; k += 1 + k / 64) {
        uint32_t s = w0 + k, o = mos_seqmap_out(m, s);
        if (!inside_replaced(m, s)) { /* (a segment never starts at out() inside one) */
            FUZZ_CHECK(seq_geq(o, prev_out), "out(%u) = %u < %u", s, o, prev_out);
            prev_out = o;
            if (!pure_deletion_at(m, s))
                FUZZ_CHECK(mos_seqmap_in(m, o) == s, "in(out(%u)) = %u", s, mos_seqmap_in(m, o));
        }
        uint32_t i = mos_seqmap_in(m, wire0 + k);
        FUZZ_CHECK(seq_geq(i, prev_in), "in() decreased at wire %u", wire0 + k);
        prev_in = i;
    }
}

/* frames: built, rewritten, checked against the maps */
static void check_frame(fuzz_in_t *in, mos_seqmap_t *own, mos_seqmap_t *peer, uint32_t w0,
                        uint32_t p0)
{
    uint8_t a = fin_u8(in), b = fin_u8(in);
    fz_seg_t sg;
    memset(&sg, 0, sizeof sg);
    sg.ipver = (a & 1) ? 6 : 4;
    sg.vlan = (a >> 1) & 1;
    int raw = (a >> 2) & 1 && !sg.vlan;
    memcpy(sg.src, "\xc6\x12\x00\x01", 4);
    memcpy(sg.dst, "\xc6\x12\x00\x02", 4);
    sg.sport = 40000;
    sg.dport = 80;
    uint32_t s = fin_u16(in) % WLEN, l = fin_u16(in) % 1500;
    if (s + l > WLEN) l = WLEN - s;
    sg.seq = w0 + s;
    sg.ack = p0 + fin_u16(in) % (WLEN + 200);
    sg.flags = (uint8_t)(MOS_TH_ACK | (b & (MOS_TH_FIN | MOS_TH_PUSH | MOS_TH_URG)));
    if (b & 0x40) sg.flags &= (uint8_t)~MOS_TH_ACK;
    sg.win = 1000;
    uint8_t opt[40];
    uint32_t ol = 0;
    if (b & 0x80) { /* SACK blocks near the peer's numbers */
        int nb = 1 + (b >> 1) % 3;
        opt[ol++] = 1;
        opt[ol++] = 1;
        opt[ol++] = 5;
        opt[ol++] = (uint8_t)(2 + 8 * nb);
        for (int k = 0; k < nb; k++) {
            uint32_t le = p0 + fin_u16(in) % WLEN;
            wr32(opt + ol, le);
            wr32(opt + ol + 4, le + fin_u8(in));
            ol += 8;
        }
    }
    sg.opt = opt;
    sg.optlen = ol;
    sg.pay = rawbuf + s;
    sg.paylen = l;
    static uint8_t frame[2000];
    uint32_t flen = fz_build(&sg, frame, sizeof frame);
    if (!flen) return;
    const uint8_t *fin = frame;
    uint16_t lt = MOS_LT_ETHERNET;
    if (raw) {
        fin += 14;
        flen -= 14;
        lt = MOS_LT_RAW;
    }
    uint8_t *inb = malloc(flen);
    memcpy(inb, fin, flen);
    uint32_t bound = mos_rewrite_bound(own, flen);
    uint8_t *out = malloc(bound ? bound : 1);
    uint32_t n = mos_rewrite_segment(own, peer, lt, inb, flen, out, bound);
    int active = mos_seqmap_active(own) || mos_seqmap_active(peer);
    FUZZ_CHECK(n != UINT32_MAX, "rewrite refused the bound it gave (%u bytes)", bound);
    FUZZ_CHECK(active ? n > 0 : n == 0, "rewrite returned %u with maps %s", n,
               active ? "active" : "inactive");
    if (n) {
        FUZZ_CHECK(n <= bound, "rewrite %u over bound %u", n, bound);
        mos_pkt_t q;
        FUZZ_CHECK(mos_decode(lt, out, n, &q) == MOS_DEC_TCP, "rewritten frame is not TCP");
        FUZZ_CHECK(fz_ip_tcp_csum_ok(q.l3, n - (uint32_t)(q.l3 - out)) == 1,
                   "rewritten frame has a bad checksum");
        FUZZ_CHECK(q.sport == sg.sport && q.dport == sg.dport && q.flags == sg.flags,
                   "ports or flags changed");
        uint32_t want = mos_seqmap_rewrite_len(own, sg.seq, l), wseq;
        uint8_t *pay = malloc(want ? want : 1);
        mos_seqmap_rewrite(own, sg.seq, rawbuf + s, l, pay, want, &wseq);
        if (!l) wseq = mos_seqmap_out(own, sg.seq);
        if (getenv("FUZZ_DEBUG")) {
            fprintf(stderr, "seq %u len %u flags %x syn? paylen %u want %u wseq %u qseq %u\n", sg.seq, l,
                    sg.flags, q.paylen, want, wseq, q.seq);
            for (uint32_t i = 0; i < own->n; i++)
                fprintf(stderr, "  edit seq %u del %u ins %u after %u\n", own->e[i].seq,
                        own->e[i].del, own->e[i].ins_len, own->e[i].after);
        }
        FUZZ_CHECK(q.paylen == want && memcmp(q.payload, pay, want) == 0, "payload differs");
        FUZZ_CHECK(q.seq == wseq, "seq %u, map says %u", q.seq, wseq);
        free(pay);
        if (sg.flags & MOS_TH_ACK)
            FUZZ_CHECK(q.ack == mos_seqmap_in(peer, sg.ack), "ack %u, map says %u", q.ack,
                       mos_seqmap_in(peer, sg.ack));
        if (ol && (sg.flags & MOS_TH_ACK))
            for (int k = 0; k < q.nsack * 2; k++)
                FUZZ_CHECK(q.sack[k] == mos_seqmap_in(peer, rd32(opt + 4 + 4 * k)), "sack edge %d", k);
        /* a smaller cap: refused or fits, never written past */
        uint32_t small = fin_u16(in) % (n + 1);
        uint8_t *o2 = malloc(small ? small : 1);
        uint32_t n2 = mos_rewrite_segment(own, peer, lt, inb, flen, o2, small);
        FUZZ_CHECK(n2 == UINT32_MAX || n2 <= small, "small cap %u gave %u", small, n2);
        free(o2);
        /* the rewritten segment cut to a maximum payload */
        uint32_t max_pay = 1 + fin_u16(in) % 1500, hdr = (uint32_t)(q.payload - out);
        uint32_t pieces = q.paylen <= max_pay ? 1 : (q.paylen + max_pay - 1) / max_pay;
        uint32_t scap = pieces * hdr + q.paylen, lens[64];
        int ok_syn = !(q.flags & (MOS_TH_SYN | MOS_TH_RST));
        if (pieces <= 64 && ok_syn) {
            uint8_t *cut = malloc(scap);
            uint32_t k = mos_split_segment(lt, out, n, max_pay, cut, scap, lens, 64);
            FUZZ_CHECK(k == pieces, "split into %u, expected %u", k, pieces);
            if (k > 1) {
                uint32_t at = 0, done = 0;
                for (uint32_t j = 0; j < k; j++) {
                    mos_pkt_t r;
                    FUZZ_CHECK(mos_decode(lt, cut + at, lens[j], &r) == MOS_DEC_TCP, "piece %u", j);
                    FUZZ_CHECK(fz_ip_tcp_csum_ok(r.l3, lens[j] - (uint32_t)(r.l3 - cut - at)) == 1,
                               "piece %u has a bad checksum", j);
                    FUZZ_CHECK(r.seq == q.seq + done, "piece %u seq", j);
                    FUZZ_CHECK(r.paylen <= max_pay && memcmp(r.payload, q.payload + done, r.paylen) == 0,
                               "piece %u payload", j);
                    if (j + 1 < k)
                        FUZZ_CHECK(!(r.flags & (MOS_TH_FIN | MOS_TH_PUSH)), "FIN/PSH on piece %u", j);
                    done += r.paylen;
                    at += lens[j];
                }
                FUZZ_CHECK(done == q.paylen, "pieces carry %u of %u bytes", done, q.paylen);
                FUZZ_CHECK(mos_split_segment(lt, out, n, max_pay, cut, scap - 1, lens, 64) == 0,
                           "split did not refuse a short cap");
            }
            free(cut);
        }
    }
    free(out);
    free(inb);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_in_t in = {data, size};
    static const uint32_t bases[4] = {1000, 0xffffff00u, 0x7fffff80u, 0xfffff000u};
    uint8_t c = fin_u8(&in);
    uint32_t b_own = bases[c & 3] + fin_u16(&in), b_peer = bases[(c >> 2) & 3] + fin_u16(&in);
    for (uint32_t k = 0; k < WLEN; k++) rawbuf[k] = pattern(b_own + k);
    mos_seqmap_t own, peer;
    mos_seqmap_init(&own);
    mos_seqmap_init(&peer);
    add_edits(&in, &own, b_own, fin_u8(&in) % 80);
    add_edits(&in, &peer, b_peer, fin_u8(&in) % 8);
    check_map(&in, &own, b_own);
    while (!fin_empty(&in)) {
        uint8_t op = fin_u8(&in);
        if (op % 4 == 0) {
            check_frame(&in, &own, &peer, b_own, b_peer);
        } else if (op % 4 == 1) { /* the receiver acknowledges: leading edits fold */
            uint32_t past = b_own + WLEN, before = mos_seqmap_out(&own, past), n0 = own.n;
            uint32_t wire = mos_seqmap_out(&own, b_own) + fin_u16(&in) % (WLEN + 600);
            mos_seqmap_acked(&own, wire);
            FUZZ_CHECK(own.n <= n0, "acked added edits");
            FUZZ_CHECK(mos_seqmap_out(&own, past) == before, "acked moved out() past the edits");
            check_sorted(&own);
        } else if (op % 4 == 2) {
            add_edits(&in, &own, b_own, 1 + fin_u8(&in) % 4);
            check_map(&in, &own, b_own);
        } else {
            check_map(&in, &own, b_own);
        }
    }
    mos_seqmap_clear(&own);
    mos_seqmap_clear(&peer);
    return 0;
}
