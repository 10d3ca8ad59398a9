/* options.c: TCP option parsing and writing (see options.h). */
#include "options.h"

static inline uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static inline uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline void wr16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}
static inline void wr32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* RFC 9293 3.2: kinds 0 and 1 are one byte, every other option is
 * kind, length (counting both), value. */
void mos_tcp_parse_options_slow(const uint8_t *o, uint32_t n, mos_tcp_opts_t *t)
{
    uint32_t i = 0;
    while (i < n) {
        uint8_t kind = o[i];
        if (kind == MOS_TCPOPT_EOL)
            return;
        if (kind == MOS_TCPOPT_NOP) {
            i++;
            continue;
        }
        if (i + 1 >= n)
            goto bad;
        uint32_t len = o[i + 1];
        if (len < 2 || i + len > n)
            goto bad;
        const uint8_t *v = o + i + 2;
        switch (kind) {
        case MOS_TCPOPT_MSS:
            if (len != 4)
                goto bad;
            t->mss = rd16(v);
            t->opts |= MOS_OPT_MSS;
            break;
        case MOS_TCPOPT_WSCALE:
            if (len != 3)
                goto bad;
            /* RFC 7323 2.3: a shift over 14 is used as 14 */
            t->wscale = v[0] > MOS_TCP_MAX_WSCALE ? MOS_TCP_MAX_WSCALE : v[0];
            t->opts |= MOS_OPT_WSCALE;
            break;
        case MOS_TCPOPT_SACKOK:
            if (len != 2)
                goto bad;
            t->opts |= MOS_OPT_SACKOK;
            break;
        case MOS_TCPOPT_SACK: {
            /* RFC 2018 3: 8n + 2 bytes */
            if (len < 10 || (len - 2) % 8)
                goto bad;
            uint32_t nb = (len - 2) / 8;
            if (nb > MOS_TCP_MAX_SACK) /* cannot happen in 40 option bytes; keep the array safe */
                nb = MOS_TCP_MAX_SACK;
            for (uint32_t k = 0; k < nb; k++) {
                t->sack[2 * k] = rd32(v + 8 * k);
                t->sack[2 * k + 1] = rd32(v + 8 * k + 4);
            }
            t->nsack = (uint8_t)nb;
            t->opts |= MOS_OPT_SACK;
            break;
        }
        case MOS_TCPOPT_TS: /* RFC 7323 3.2 */
            if (len != 10)
                goto bad;
            t->tsval = rd32(v);
            t->tsecr = rd32(v + 4);
            t->opts |= MOS_OPT_TS;
            break;
        default: /* unknown kinds are skipped by their length (RFC 9293 3.2) */
            break;
        }
        i += len;
    }
    return;
bad:
    t->opts |= MOS_OPT_BAD;
}

/* SACK blocks that fit after `used` bytes of other options: each block is
 * 8 bytes, plus NOP NOP kind len (RFC 2018 3). */
static inline uint32_t sack_fit(const mos_tcp_opts_t *t, uint32_t used)
{
    if (!(t->opts & MOS_OPT_SACK) || !t->nsack) return 0;
    uint32_t nb = t->nsack > MOS_TCP_MAX_SACK ? MOS_TCP_MAX_SACK : t->nsack;
    while (nb && used + 4 + 8 * nb > MOS_TCP_MAX_OPTLEN) nb--;
    return nb;
}

static uint32_t fixed_len(const mos_tcp_opts_t *t)
{
    uint32_t n = 0;
    if (t->opts & MOS_OPT_MSS) n += 4;
    if (t->opts & MOS_OPT_TS) n += 12;                       /* (NOP NOP | SACKOK) TS */
    else if (t->opts & MOS_OPT_SACKOK) n += 4;               /* NOP NOP SACKOK */
    if (t->opts & MOS_OPT_WSCALE) n += 4;                    /* NOP WS */
    return n;
}

uint32_t mos_tcp_options_len(const mos_tcp_opts_t *t)
{
    uint32_t n = fixed_len(t);
    uint32_t nb = sack_fit(t, n);
    return nb ? n + 4 + 8 * nb : n;
}

int mos_tcp_write_options(const mos_tcp_opts_t *t, uint8_t *out, uint32_t cap)
{
    uint32_t need = mos_tcp_options_len(t);
    if (need > cap) return -1;
    uint8_t *p = out;
    if (t->opts & MOS_OPT_MSS) { /* RFC 9293 3.7.1 */
        p[0] = MOS_TCPOPT_MSS;
        p[1] = 4;
        wr16(p + 2, t->mss);
        p += 4;
    }
    if (t->opts & MOS_OPT_TS) { /* RFC 7323 3.2, Appendix A layout */
        if (t->opts & MOS_OPT_SACKOK) {
            p[0] = MOS_TCPOPT_SACKOK;
            p[1] = 2;
        } else {
            p[0] = p[1] = MOS_TCPOPT_NOP;
        }
        p[2] = MOS_TCPOPT_TS;
        p[3] = 10;
        wr32(p + 4, t->tsval);
        wr32(p + 8, t->tsecr);
        p += 12;
    } else if (t->opts & MOS_OPT_SACKOK) { /* RFC 2018 2 */
        p[0] = p[1] = MOS_TCPOPT_NOP;
        p[2] = MOS_TCPOPT_SACKOK;
        p[3] = 2;
        p += 4;
    }
    if (t->opts & MOS_OPT_WSCALE) { /* RFC 7323 2.2 */
        p[0] = MOS_TCPOPT_NOP;
        p[1] = MOS_TCPOPT_WSCALE;
        p[2] = 3;
        p[3] = t->wscale > MOS_TCP_MAX_WSCALE ? MOS_TCP_MAX_WSCALE : t->wscale;
        p += 4;
    }
    uint32_t nb = sack_fit(t, (uint32_t)(p - out));
    if (nb) { /* RFC 2018 3 */
        p[0] = p[1] = MOS_TCPOPT_NOP;
        p[2] = MOS_TCPOPT_SACK;
        p[3] = (uint8_t)(2 + 8 * nb);
        p += 4;
        for (uint32_t k = 0; k < nb; k++, p += 8) {
            wr32(p, t->sack[2 * k]);
            wr32(p + 4, t->sack[2 * k + 1]);
        }
    }
    return (int)(p - out);
}
