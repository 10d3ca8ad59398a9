/* options.h: TCP header flags; TCP options, parsed and written (RFC 9293 3.1-3.2, RFC 7323
 * window scale and timestamps, RFC 2018 SACK).
 *
 * One representation, mos_tcp_opts_t, for both directions: the decoder
 * fills it from a header (the monitor, the end host's receive path), and
 * the end host's send path writes it out.  No allocation, no I/O.
 */
#ifndef MOS_TCP_OPTIONS_H
#define MOS_TCP_OPTIONS_H
#include <stdint.h>
#include <string.h>

/* TCP header flags (RFC 9293 3.1), as in the header byte */
enum { MOS_TH_FIN = 0x01, MOS_TH_SYN = 0x02, MOS_TH_RST = 0x04, MOS_TH_PUSH = 0x08,
       MOS_TH_ACK = 0x10, MOS_TH_URG = 0x20, MOS_TH_ECE = 0x40, MOS_TH_CWR = 0x80 };

/* bits of mos_tcp_opts_t.opts: which options are present */
enum { MOS_OPT_MSS = 1, MOS_OPT_WSCALE = 2, MOS_OPT_SACKOK = 4, MOS_OPT_TS = 8, MOS_OPT_SACK = 16,
       MOS_OPT_BAD = 128 /* option list malformed; options after the fault ignored */ };

/* option kinds (IANA "TCP Option Kind Numbers") */
enum { MOS_TCPOPT_EOL = 0, MOS_TCPOPT_NOP = 1, MOS_TCPOPT_MSS = 2, MOS_TCPOPT_WSCALE = 3,
       MOS_TCPOPT_SACKOK = 4, MOS_TCPOPT_SACK = 5, MOS_TCPOPT_TS = 8 };

#define MOS_TCP_MAX_OPTLEN 40   /* RFC 9293 3.1: data offset is at most 15 words */
#define MOS_TCP_MAX_SACK 4      /* blocks that fit in 40 bytes (RFC 2018 3) */
#define MOS_TCP_MAX_WSCALE 14   /* RFC 7323 2.3 */

/* The layout is embedded field for field in mos_pkt_t (decode.h), so the
 * decoder parses straight into the packet record. */
typedef struct mos_tcp_opts {
    uint8_t opts;             /* MOS_OPT_* */
    uint8_t wscale;           /* shift, clamped to 14 */
    uint16_t mss;
    uint32_t tsval, tsecr;
    uint8_t nsack;            /* SACK blocks (at most 4) */
    uint32_t sack[2 * MOS_TCP_MAX_SACK]; /* left, right edge pairs */
} mos_tcp_opts_t;

/* NOP NOP kind 8 length 10, as the 32-bit word memcpy reads */
static inline uint32_t mos_tcp_nop_nop_ts(void)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    return 0x0a080101u;
#else
    return 0x0101080au;
#endif
}

void mos_tcp_parse_options_slow(const uint8_t *o, uint32_t n, mos_tcp_opts_t *t);

/* Parse n option bytes (the header past its 20 fixed bytes) into t, whose
 * fields must be zero.  A malformed list sets MOS_OPT_BAD and keeps what
 * was parsed before the fault. */
static inline void mos_tcp_parse_options(const uint8_t *o, uint32_t n, mos_tcp_opts_t *t)
{
    /* fast path: NOP NOP TS, what most stacks put on every data segment */
    uint32_t head;
    if (n == 12 && (memcpy(&head, o, 4), head == mos_tcp_nop_nop_ts())) {
        uint32_t v[2];
        memcpy(v, o + 4, 8);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        v[0] = __builtin_bswap32(v[0]);
        v[1] = __builtin_bswap32(v[1]);
#endif
        t->tsval = v[0];
        t->tsecr = v[1];
        t->opts = MOS_OPT_TS;
        return;
    }
    mos_tcp_parse_options_slow(o, n, t);
}

/* Write the options t->opts asks for (MOS_OPT_BAD ignored) into out
 * (room for cap bytes), in the order Linux and the RFC examples use:
 * MSS, SACK-permitted + timestamps (or NOP NOP timestamps), NOP + window
 * scale, NOP NOP + SACK blocks, padded with NOPs to a multiple of 4 bytes
 * (RFC 9293 3.1: the header ends on a 32-bit boundary).  SACK blocks are
 * cut to what fits in 40 bytes with the other options (RFC 2018 3).
 * Returns the bytes written (0..40, a multiple of 4), or -1 if cap is too
 * small. */
int mos_tcp_write_options(const mos_tcp_opts_t *t, uint8_t *out, uint32_t cap);

/* Bytes mos_tcp_write_options would write for t. */
uint32_t mos_tcp_options_len(const mos_tcp_opts_t *t);

#endif
