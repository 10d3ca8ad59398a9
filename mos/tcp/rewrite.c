/* rewrite.c: see rewrite.h. */
#include "rewrite.h"

#include <string.h>

#include "decode.h"

static inline uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline void wr32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static inline void wr16(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

/* SACK edges (RFC 2018 3) acknowledge the peer's bytes: into its raw space */
static void fix_sack(const mos_seqmap_t *peer, uint8_t *opt, uint32_t n)
{
    uint32_t i = 0;
    while (i < n) {
        uint8_t kind = opt[i];
        if (kind == 0) return;
        if (kind == 1) {
            i++;
            continue;
        }
        if (i + 1 >= n || opt[i + 1] < 2 || i + opt[i + 1] > n) return;
        uint32_t len = opt[i + 1];
        if (kind == 5 && len >= 10 && (len - 2) % 8 == 0)
            for (uint32_t k = i + 2; k + 4 <= i + len; k += 4)
                wr32(opt + k, mos_seqmap_in(peer, rd32(opt + k)));
        i += len;
    }
}

uint32_t mos_rewrite_bound(const mos_seqmap_t *own, uint32_t len)
{
    uint32_t extra = 0;
    for (uint32_t i = 0; i < own->n; i++) extra += own->e[i].ins_len;
    return len + extra;
}

uint32_t mos_rewrite_segment(const mos_seqmap_t *own, const mos_seqmap_t *peer, uint16_t linktype,
                             const uint8_t *in, uint32_t len, uint8_t *out, uint32_t cap)
{
    int own_on = own && mos_seqmap_active(own), peer_on = peer && mos_seqmap_active(peer);
    if (!own_on && !peer_on) return 0;
    mos_pkt_t p;
    if (mos_decode(linktype, in, len, &p) != MOS_DEC_TCP || p.paylen != p.seglen) return 0;
    uint32_t hdr = (uint32_t)(p.payload - in); /* link + IP + TCP headers */
    if (hdr > cap) return UINT32_MAX;
    uint32_t syn = (p.flags & MOS_TH_SYN) ? 1 : 0, seq = p.seq, paylen = p.paylen;
    if (own_on && paylen) {
        uint32_t wseq;
        paylen = mos_seqmap_rewrite(own, p.seq + syn, p.payload, p.paylen, out + hdr, cap - hdr, &wseq);
        if (paylen == UINT32_MAX) return UINT32_MAX;
        seq = wseq - syn;
    } else {
        if (own_on) seq = mos_seqmap_out(own, p.seq + syn) - syn;
        if (paylen > cap - hdr) return UINT32_MAX; /* as the header promises: refuse, never overrun */
        if (paylen) memcpy(out + hdr, p.payload, paylen);
    }
    memcpy(out, in, hdr);
    uint8_t *l3 = out + p.l2len, *th = out + (p.l4 - in);
    wr32(th + 4, seq);
    if (peer_on && (p.flags & MOS_TH_ACK)) {
        wr32(th + 8, mos_seqmap_in(peer, p.ack));
        if (p.opts & MOS_OPT_SACK) fix_sack(peer, th + 20, p.thlen - 20u);
    }
    uint32_t l4len = p.thlen + paylen;
    if (p.ipver == 4) {
        if (p.l3hlen + l4len > 0xffff) return UINT32_MAX;
        wr16(l3 + 2, p.l3hlen + l4len);
    } else {
        if (p.l3hlen - 40u + l4len > 0xffff) return UINT32_MAX;
        wr16(l3 + 4, p.l3hlen - 40u + l4len);
    }
    mos_pkt_t q;
    uint32_t n = hdr + paylen;
    if (mos_decode(linktype, out, n, &q) != MOS_DEC_TCP) return UINT32_MAX;
    mos_fix_checksums(&q, l3);
    return n;
}

uint32_t mos_split_segment(uint16_t linktype, const uint8_t *in, uint32_t len, uint32_t max_pay,
                           uint8_t *out, uint32_t cap, uint32_t *lens, uint32_t max_pieces)
{
    mos_pkt_t p;
    if (!max_pay || mos_decode(linktype, in, len, &p) != MOS_DEC_TCP || p.paylen != p.seglen ||
        (p.flags & (MOS_TH_SYN | MOS_TH_RST)))
        return 0;
    if (p.paylen <= max_pay) return 1;
    uint32_t n = (p.paylen + max_pay - 1) / max_pay;
    uint32_t hdr = (uint32_t)(p.payload - in);
    if (n > max_pieces || (uint64_t)n * hdr + p.paylen > cap) return 0;
    uint32_t l3 = p.l2len, l4 = (uint32_t)(p.l4 - in), o = 0;
    uint16_t id = p.ipver == 4 ? (uint16_t)(in[l3 + 4] << 8 | in[l3 + 5]) : 0;
    for (uint32_t k = 0; k < n; k++) {
        uint32_t off = k * max_pay, pay = p.paylen - off < max_pay ? p.paylen - off : max_pay;
        uint8_t *f = out + o;
        memcpy(f, in, hdr);
        memcpy(f + hdr, p.payload + off, pay);
        wr32(f + l4 + 4, p.seq + off);
        if (k + 1 < n) f[l4 + 13] &= (uint8_t)~(MOS_TH_FIN | MOS_TH_PUSH);
        uint32_t l4len = p.thlen + pay;
        if (p.ipver == 4) {
            wr16(f + l3 + 2, p.l3hlen + l4len);
            wr16(f + l3 + 4, (uint16_t)(id + k));
        } else {
            wr16(f + l3 + 4, p.l3hlen - 40u + l4len);
        }
        mos_pkt_t q;
        if (mos_decode(linktype, f, hdr + pay, &q) != MOS_DEC_TCP) return 0;
        mos_fix_checksums(&q, f + l3);
        lens[k] = hdr + pay;
        o += hdr + pay;
    }
    return n;
}
