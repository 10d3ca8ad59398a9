/* seqmap.c: see seqmap.h. */
#include "seqmap.h"

#include <stdlib.h>
#include <string.h>

#include "tcpseq.h"

/* The raw range whose presence in a segment makes it carry the edit: the
 * replaced bytes, or for an insertion the one byte it belongs to. */
static inline uint32_t region_lo(const mos_edit_t *e) { return e->del || !e->after ? e->seq : e->seq - 1; }
static inline uint32_t region_hi(const mos_edit_t *e) { return e->del ? e->seq + e->del : region_lo(e) + 1; }
static inline uint32_t edit_delta(const mos_edit_t *e) { return e->ins_len - e->del; }

void mos_seqmap_init(mos_seqmap_t *m) { memset(m, 0, sizeof *m); }

void mos_seqmap_clear(mos_seqmap_t *m)
{
    for (uint32_t i = 0; i < m->n; i++) free(m->e[i].ins);
    mos_seqmap_init(m);
}

static int same(const mos_edit_t *e, uint32_t seq, uint32_t del, const uint8_t *ins,
                uint32_t ins_len, int after)
{
    return e->seq == seq && e->del == del && e->ins_len == ins_len && e->after == after &&
           (!ins_len || memcmp(e->ins, ins, ins_len) == 0);
}

int mos_seqmap_has(const mos_seqmap_t *m, uint32_t seq, uint32_t del, const uint8_t *ins,
                   uint32_t ins_len, int after)
{
    after = after && !del;
    for (uint32_t i = 0; i < m->n; i++)
        if (same(&m->e[i], seq, del, ins, ins_len, after)) return 1;
    return 0;
}

int mos_seqmap_add(mos_seqmap_t *m, uint32_t seq, uint32_t del, const uint8_t *ins,
                   uint32_t ins_len, int after)
{
    if ((!del && !ins_len) || ins_len > MOS_SEQMAP_MAX_INS || del > 0x3fffffffu)
        return MOS_SEQMAP_EMPTY;
    mos_edit_t ne = {seq, del, ins_len, (uint8_t)(after && !del), NULL};
    uint32_t lo = region_lo(&ne), hi = region_hi(&ne), at = m->n;
    for (uint32_t i = 0; i < m->n; i++) {
        const mos_edit_t *e = &m->e[i];
        if (seq_lt(lo, region_hi(e)) && seq_lt(region_lo(e), hi)) {
            if (same(e, seq, del, ins, ins_len, ne.after))
                return MOS_SEQMAP_SAME; /* a handler seeing a retransmission edits again */
            return MOS_SEQMAP_OVERLAP;
        }
        if (at == m->n && seq_lt(lo, region_lo(e))) at = i;
    }
    if (m->n == MOS_SEQMAP_MAX) return MOS_SEQMAP_FULL;
    if (ins_len) {
        ne.ins = malloc(ins_len);
        if (!ne.ins) return MOS_SEQMAP_NOMEM;
        memcpy(ne.ins, ins, ins_len);
    }
    memmove(&m->e[at + 1], &m->e[at], (m->n - at) * sizeof m->e[0]);
    m->e[at] = ne;
    m->n++;
    return MOS_SEQMAP_OK;
}

void mos_seqmap_acked(mos_seqmap_t *m, uint32_t wire_ack)
{
    uint32_t k = 0;
    while (k < m->n) {
        const mos_edit_t *e = &m->e[k];
        /* wire position just past the edit's new bytes */
        uint32_t done = e->seq + m->delta + e->ins_len;
        if (!seq_geq(wire_ack, done)) break;
        m->delta += edit_delta(e);
        free(m->e[k].ins);
        k++;
    }
    if (k) {
        memmove(&m->e[0], &m->e[k], (m->n - k) * sizeof m->e[0]);
        m->n -= k;
    }
}

uint32_t mos_seqmap_out(const mos_seqmap_t *m, uint32_t seq)
{
    uint32_t cum = m->delta;
    for (uint32_t i = 0; i < m->n && seq_leq(region_hi(&m->e[i]), seq); i++)
        cum += edit_delta(&m->e[i]);
    return seq + cum;
}

uint32_t mos_seqmap_in(const mos_seqmap_t *m, uint32_t ack)
{
    uint32_t cum = m->delta;
    for (uint32_t i = 0; i < m->n; i++) {
        const mos_edit_t *e = &m->e[i];
        uint32_t start = e->seq + cum; /* wire position of the first new byte */
        if (seq_lt(ack, start)) break;
        /* inside the new bytes: the raw bytes from seq on are not all there yet */
        if (seq_lt(ack, start + e->ins_len)) return e->seq;
        cum += edit_delta(e);
    }
    return ack - cum;
}

/* One pass over the edits touching [seq, seq+len): the payload length and,
 * when out is given, the bytes. */
static uint32_t build(const mos_seqmap_t *m, uint32_t seq, const uint8_t *pay, uint32_t len,
                      uint8_t *out, uint32_t cap, uint32_t *out_seq)
{
    if (!len) { /* an empty segment covers no byte, so it carries no edit (fuzz: seqmap) */
        if (out_seq) *out_seq = mos_seqmap_out(m, seq);
        return 0;
    }
    uint32_t cum = m->delta, o = 0, i = 0;
    int64_t cur = 0; /* raw bytes of the segment consumed, relative to seq */
    /* edits wholly before the segment shift it */
    for (; i < m->n && seq_leq(region_hi(&m->e[i]), seq); i++) cum += edit_delta(&m->e[i]);
    uint32_t start = seq + cum;
    for (; i < m->n; i++) {
        const mos_edit_t *e = &m->e[i];
        int64_t lo = (int32_t)(region_lo(e) - seq), s = (int32_t)(e->seq - seq);
        if (lo >= (int64_t)len) break; /* sorted: the rest lie beyond the segment */
        if (s < 0 && cur == 0 && o == 0) start = e->seq + cum; /* starts inside a replaced range */
        if (s > cur) {
            uint32_t n = (uint32_t)(s - cur);
            if (out) {
                if (o + n > cap) return UINT32_MAX;
                memcpy(out + o, pay + cur, n);
            }
            o += n;
            cur = s;
        }
        if (out && e->ins_len) {
            if (o + e->ins_len > cap) return UINT32_MAX;
            memcpy(out + o, e->ins, e->ins_len);
        }
        o += e->ins_len;
        int64_t dend = s + (int64_t)e->del;
        if (dend > cur) cur = dend < (int64_t)len ? dend : (int64_t)len;
        cum += edit_delta(e);
    }
    if (cur < (int64_t)len) {
        uint32_t n = len - (uint32_t)cur;
        if (out) {
            if (o + n > cap) return UINT32_MAX;
            memcpy(out + o, pay + cur, n);
        }
        o += n;
    }
    if (out_seq) *out_seq = start;
    return o;
}

uint32_t mos_seqmap_rewrite(const mos_seqmap_t *m, uint32_t seq, const uint8_t *pay,
                            uint32_t len, uint8_t *out, uint32_t cap, uint32_t *out_seq)
{
    return build(m, seq, pay, len, out, cap, out_seq);
}

uint32_t mos_seqmap_rewrite_len(const mos_seqmap_t *m, uint32_t seq, uint32_t len)
{
    return build(m, seq, NULL, len, NULL, 0, NULL);
}
