/* decode.c: link layer, IP and TCP headers in one pass.
 *
 * Length rule, used at every layer: a header that does not fit in the length
 * its enclosing header declares is MALFORMED; one that fits there but not in
 * the captured bytes is TRUNCATED.  Past that point every pointer in mos_pkt_t
 * has been checked against the capture.
 */
#include "decode.h"

#include "capture.h" /* MOS_LT_* */
#include "options.h" /* mos/tcp */

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define MAX_VLAN 8    /* deeper tag stacks are not traffic we expect: unsupported */
#define MAX_MPLS 16

static inline uint16_t be16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    v = __builtin_bswap16(v);
#endif
    return v;
}

static inline uint32_t be32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    v = __builtin_bswap32(v);
#endif
    return v;
}

/* Zero the packet record.  Not memset: for a 192-byte block GCC emits
 * `rep stos`, which costs ~20 ns on some CPUs/VMs; twelve vector stores
 * cost ~2. */
static inline void pkt_zero(mos_pkt_t *p)
{
    typedef uint64_t v2 __attribute__((vector_size(16), aligned(1), may_alias));
    const v2 z = {0, 0};
    v2 *q = (v2 *)p;
#pragma GCC unroll 16
    for (size_t i = 0; i < sizeof *p / 16; i++)
        q[i] = z;
    if (sizeof *p % 16)
        memset((char *)p + sizeof *p / 16 * 16, 0, sizeof *p % 16);
}

/* ---- layer 4 ---- */

/* t: transport header; len: bytes per the IP header; avail: bytes captured (<= len) */
static inline int decode_l4(const uint8_t *t, uint32_t len, uint32_t avail, mos_pkt_t *p)
{
    p->l4 = t;
    p->l4len = len;
    if (p->proto == 6) {
        if (len < 20)
            return MOS_DEC_MALFORMED;
        if (avail < 20)
            return MOS_DEC_TRUNCATED;
        uint32_t doff = (uint32_t)(t[12] >> 4) * 4;
        if (doff < 20 || doff > len) /* RFC 9293 §3.1: data offset >= 5 words */
            return MOS_DEC_MALFORMED;
        if (doff > avail)
            return MOS_DEC_TRUNCATED;
        p->sport = be16(t);
        p->dport = be16(t + 2);
        p->seq = be32(t + 4);
        p->ack = be32(t + 8);
        p->flags = t[13];
        p->win = be16(t + 14);
        p->thlen = (uint8_t)doff;
        p->payload = t + doff;
        p->seglen = len - doff;
        p->paylen = avail - doff;
        if (doff > 20)
            mos_tcp_parse_options(t + 20, doff - 20, &p->tcpopt); /* mos/tcp/options.h */
        return MOS_DEC_TCP;
    }
    if (p->proto == 17) { /* RFC 768 */
        if (len < 8)
            return MOS_DEC_MALFORMED;
        if (avail < 8)
            return MOS_DEC_TRUNCATED;
        p->sport = be16(t);
        p->dport = be16(t + 2);
        p->payload = t + 8;
        p->seglen = len - 8;
        p->paylen = avail - 8;
    }
    return MOS_DEC_OTHER;
}

/* ---- IPv4: RFC 791 ---- */

static int decode_ip4(const uint8_t *h, uint32_t cap, mos_pkt_t *p)
{
    if (cap < 20)
        return MOS_DEC_TRUNCATED;
    if ((h[0] >> 4) != 4)
        return MOS_DEC_MALFORMED;
    uint32_t hl = (uint32_t)(h[0] & 15) * 4;
    uint32_t tot = be16(h + 2);
    if (hl < 20 || tot < hl)
        return MOS_DEC_MALFORMED;
    if (hl > cap)
        return MOS_DEC_TRUNCATED;
    /* tot > cap: snapped, decode what is there; tot < cap: link padding, trim */
    uint32_t avail = tot < cap ? tot : cap;
    p->ipver = 4;
    p->addrlen = 4;
    p->ttl = h[8];
    p->proto = h[9];
    memcpy(p->src, h + 12, 4);
    memcpy(p->dst, h + 16, 4);
    p->l3 = h;
    p->l3len = tot;
    p->l3hlen = (uint16_t)hl;
    uint16_t fo = be16(h + 6);
    if (fo & 0x3fff) { /* MF set or offset != 0 */
        p->frag_more = (fo & 0x2000) != 0;
        p->frag_id = be16(h + 4);
        p->frag_off = (uint32_t)(fo & 0x1fff) * 8;
        p->frag_data = h + hl;
        p->frag_len = avail - hl;
        return MOS_DEC_FRAGMENT;
    }
    return decode_l4(h + hl, tot - hl, avail - hl, p);
}

/* ---- IPv6: RFC 8200 ---- */

static int decode_ip6(const uint8_t *h, uint32_t cap, mos_pkt_t *p)
{
    if (cap < 40)
        return MOS_DEC_TRUNCATED;
    if ((h[0] >> 4) != 6)
        return MOS_DEC_MALFORMED;
    uint8_t nh = h[6];
    uint32_t tot = 40u + be16(h + 4);
    /* RFC 2675 jumbogram: payload length 0 and a hop-by-hop header; the real
     * length is in a jumbo option, we take the captured length instead */
    if (tot == 40 && nh == 0)
        tot = cap;
    uint32_t avail = tot < cap ? tot : cap;
    p->ipver = 6;
    p->addrlen = 16;
    p->ttl = h[7];
    memcpy(p->src, h + 8, 16);
    memcpy(p->dst, h + 24, 16);
    p->l3 = h;
    p->l3len = tot;
    uint32_t off = 40;
    for (;;) {
        uint32_t len;
        switch (nh) {
        case 0:  /* hop-by-hop options */
        case 43: /* routing */
        case 60: /* destination options */
        case 51: /* AH, RFC 4302: length in 4-octet units minus 2 */
            if (off + 2 > tot)
                return MOS_DEC_MALFORMED;
            if (off + 2 > avail)
                return MOS_DEC_TRUNCATED;
            len = nh == 51 ? ((uint32_t)h[off + 1] + 2) * 4 : ((uint32_t)h[off + 1] + 1) * 8;
            if (off + len > tot)
                return MOS_DEC_MALFORMED;
            if (off + len > avail)
                return MOS_DEC_TRUNCATED;
            nh = h[off];
            off += len;
            continue;
        case 44: { /* fragment, RFC 8200 §4.5 */
            if (off + 8 > tot)
                return MOS_DEC_MALFORMED;
            if (off + 8 > avail)
                return MOS_DEC_TRUNCATED;
            uint16_t fo = be16(h + off + 2);
            uint8_t next = h[off];
            uint32_t id = be32(h + off + 4);
            off += 8;
            if (off > 0xffff)
                return MOS_DEC_MALFORMED;
            if ((fo & 0xfff9) == 0) { /* atomic fragment (RFC 6946): a whole packet */
                nh = next;
                continue;
            }
            p->proto = next;
            p->l3hlen = (uint16_t)off;
            p->frag_more = fo & 1;
            p->frag_id = id;
            p->frag_off = fo & 0xfff8;
            p->frag_data = h + off;
            p->frag_len = avail - off;
            return MOS_DEC_FRAGMENT;
        }
        default:
            break;
        }
        break;
    }
    if (off > 0xffff) /* only a jumbogram can carry this much header; l3hlen is 16 bits */
        return MOS_DEC_MALFORMED;
    p->proto = nh;
    p->l3hlen = (uint16_t)off;
    if (nh == 50 || nh == 59) /* ESP hides the rest; 59: nothing follows */
        return MOS_DEC_OTHER;
    return decode_l4(h + off, tot - off, avail - off, p);
}

static inline int decode_l3(uint16_t ethertype, const uint8_t *h, uint32_t cap, mos_pkt_t *p)
{
    return ethertype == 0x0800 ? decode_ip4(h, cap, p) : decode_ip6(h, cap, p);
}

/* BSD AF_INET6 differs per OS: 24 (NetBSD/OpenBSD), 28 (FreeBSD), 30 (macOS) */
static inline int af_inet6(uint32_t af) { return af == 24 || af == 28 || af == 30; }

int mos_decode(uint16_t linktype, const uint8_t *d, uint32_t caplen, mos_pkt_t *p)
{
    pkt_zero(p);
    p->l2 = d;
    uint32_t off;
    uint16_t et;
    switch (linktype) {
    case MOS_LT_ETHERNET:
        if (caplen < 14)
            return MOS_DEC_TRUNCATED;
        et = be16(d + 12);
        off = 14;
        break;
    case MOS_LT_RAW:
    case 12:
    case 14:
        if (caplen < 1)
            return MOS_DEC_TRUNCATED;
        if ((d[0] >> 4) == 4)
            et = 0x0800;
        else if ((d[0] >> 4) == 6)
            et = 0x86dd;
        else
            return MOS_DEC_MALFORMED;
        off = 0;
        goto ip;
    case MOS_LT_IPV4:
        et = 0x0800;
        off = 0;
        goto ip;
    case MOS_LT_IPV6:
        et = 0x86dd;
        off = 0;
        goto ip;
    case MOS_LT_NULL: {
        /* the AF value is in the byte order of the machine that captured */
        if (caplen < 4)
            return MOS_DEC_TRUNCATED;
        uint32_t af, sw;
        memcpy(&af, d, 4);
        sw = __builtin_bswap32(af);
        if (af == 2 || sw == 2)
            et = 0x0800;
        else if (af_inet6(af) || af_inet6(sw))
            et = 0x86dd;
        else
            return MOS_DEC_UNSUPPORTED;
        off = 4;
        goto ip;
    }
    case MOS_LT_LOOP: {
        if (caplen < 4)
            return MOS_DEC_TRUNCATED;
        uint32_t af = be32(d);
        if (af == 2)
            et = 0x0800;
        else if (af_inet6(af))
            et = 0x86dd;
        else
            return MOS_DEC_UNSUPPORTED;
        off = 4;
        goto ip;
    }
    case MOS_LT_SLL:
        /* type(2) ARPHRD(2) addrlen(2) addr(8) protocol(2) */
        if (caplen < 16)
            return MOS_DEC_TRUNCATED;
        et = be16(d + 14);
        off = 16;
        if (be16(d + 2) == 824) { /* ARPHRD_NETLINK: protocol is a netlink family */
            p->l2len = 16;
            return MOS_DEC_OTHER;
        }
        break;
    case MOS_LT_SLL2:
        /* protocol(2) reserved(2) ifindex(4) ARPHRD(2) type(1) addrlen(1) addr(8) */
        if (caplen < 20)
            return MOS_DEC_TRUNCATED;
        et = be16(d);
        off = 20;
        if (be16(d + 8) == 824) {
            p->l2len = 20;
            return MOS_DEC_OTHER;
        }
        break;
    default:
        return MOS_DEC_UNSUPPORTED;
    }

    /* ethertype chain: VLAN tags, MPLS labels, PPPoE, down to IP */
    for (;;) {
        switch (et) {
        case 0x0800:
        case 0x86dd:
            goto ip;
        case 0x8100: /* 802.1Q */
        case 0x88a8: /* 802.1ad service tag */
        case 0x9100: /* pre-standard QinQ */
            if (caplen - off < 4)
                return MOS_DEC_TRUNCATED;
            if (++p->vlan_depth > MAX_VLAN)
                return MOS_DEC_UNSUPPORTED;
            et = be16(d + off + 2);
            off += 4;
            continue;
        case 0x8847: /* MPLS unicast, RFC 3032 */
        case 0x8848: /* MPLS multicast */
            for (;;) {
                if (caplen - off < 4)
                    return MOS_DEC_TRUNCATED;
                if (++p->mpls_depth > MAX_MPLS)
                    return MOS_DEC_UNSUPPORTED;
                uint8_t bos = d[off + 2] & 1;
                off += 4;
                if (bos)
                    break;
            }
            /* no protocol field below MPLS: guess from the version nibble (RFC 4928) */
            if (caplen - off < 1)
                return MOS_DEC_TRUNCATED;
            if ((d[off] >> 4) == 4)
                et = 0x0800;
            else if ((d[off] >> 4) == 6)
                et = 0x86dd;
            else
                return MOS_DEC_UNSUPPORTED; /* pseudowire control word, Ethernet over MPLS... */
            goto ip;
        case 0x8864: { /* PPPoE session, RFC 2516: ver/type code session(2) length(2) then PPP */
            if (caplen - off < 8)
                return MOS_DEC_TRUNCATED;
            uint16_t ppp = be16(d + off + 6);
            if (ppp == 0x0021) {
                et = 0x0800;
            } else if (ppp == 0x0057) {
                et = 0x86dd;
            } else { /* LCP, IPCP...: not IP */
                p->ethertype = et;
                p->l2len = (uint16_t)(off + 8);
                return MOS_DEC_OTHER;
            }
            off += 8;
            goto ip;
        }
        case 0x88e7: /* 802.1ah PBB */
        case 0x88e5: /* MACsec */
        case 0x6558: /* transparent Ethernet bridging */
            p->ethertype = et;
            p->l2len = (uint16_t)off;
            return MOS_DEC_UNSUPPORTED;
        default: /* ARP, LLDP, 802.3 length field...: a valid frame that is not IP */
            p->ethertype = et;
            p->l2len = (uint16_t)off;
            return MOS_DEC_OTHER;
        }
    }
ip:
    p->ethertype = et;
    p->l2len = (uint16_t)off;
    return decode_l3(et, d + off, caplen - off, p);
}

int mos_decode_ip(const uint8_t *data, uint32_t len, mos_pkt_t *p)
{
    const uint8_t *l2 = p->l2;
    uint16_t l2len = p->l2len;
    pkt_zero(p);
    p->l2 = l2;
    p->l2len = l2len;
    if (len < 1)
        return MOS_DEC_TRUNCATED;
    uint8_t v = data[0] >> 4;
    if (v != 4 && v != 6)
        return MOS_DEC_MALFORMED;
    p->ethertype = v == 4 ? 0x0800 : 0x86dd;
    return decode_l3(p->ethertype, data, len, p);
}

/* ---- checksums: RFC 1071 ---- */

/* One's-complement sum of bytes taken as 16-bit words in memory order.  The
 * sum does not depend on byte order (RFC 1071 §2(B)), so we add native 64-bit
 * words with end-around carry and never swap; a checksum computed this way is
 * stored back with memcpy and lands in network order. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define MOS_CSUM_AVX2 1
static int csum_avx2_ok; /* set once at load: the CPU has AVX2 */

/* The add-with-carry chain below is bound by the latency of the carry (8
 * bytes a cycle); four independent vector sums of 32-bit halves into 64-bit
 * lanes run several times wider.  A 64-bit word hi:lo is congruent to hi + lo
 * modulo 2^32 - 1, hence modulo 2^16 - 1 (RFC 1071 §2(C): the sum can be
 * taken in any word size and folded), and no lane can overflow: each adds at
 * most 2^32 per 64 bytes. */
__attribute__((target("avx2"))) static uint64_t csum_add_avx2(uint64_t acc, const uint8_t **pb,
                                                              size_t *pn)
{
    const uint8_t *b = *pb;
    size_t n = *pn;
    const __m256i lo = _mm256_set1_epi64x(0xffffffffLL);
    __m256i s0 = _mm256_setzero_si256(), s1 = s0, s2 = s0, s3 = s0;
    while (n >= 64) {
        __m256i x = _mm256_loadu_si256((const __m256i *)b);
        __m256i y = _mm256_loadu_si256((const __m256i *)(b + 32));
        s0 = _mm256_add_epi64(s0, _mm256_and_si256(x, lo));
        s1 = _mm256_add_epi64(s1, _mm256_srli_epi64(x, 32));
        s2 = _mm256_add_epi64(s2, _mm256_and_si256(y, lo));
        s3 = _mm256_add_epi64(s3, _mm256_srli_epi64(y, 32));
        b += 64;
        n -= 64;
    }
    __m256i s = _mm256_add_epi64(_mm256_add_epi64(s0, s1), _mm256_add_epi64(s2, s3));
    __m128i h = _mm_add_epi64(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    uint64_t t = (uint64_t)_mm_cvtsi128_si64(h) + (uint64_t)_mm_extract_epi64(h, 1);
    acc += t;
    acc += acc < t;
    *pb = b;
    *pn = n;
    return acc;
}
#endif

static uint64_t csum_add(uint64_t acc, const uint8_t *b, size_t n)
{
#if defined(MOS_CSUM_AVX2)
    if (n >= 256 && csum_avx2_ok)
        acc = csum_add_avx2(acc, &b, &n);
#endif
#if defined(__x86_64__)
    /* The one's-complement sum is an add-with-carry chain: x86-64 keeps the
     * carry in the flag from one 8-byte add to the next (lea and dec leave
     * it alone), 11 instructions per 64 bytes where the C below needs 24.
     * Checksums are most of the per-packet work in verify mode. */
    if (n >= 64) {
        size_t blocks = n / 64;
        __asm__("clc\n\t"
                "1:\n\t"
                "adcq 0(%[p]), %[acc]\n\t"
                "adcq 8(%[p]), %[acc]\n\t"
                "adcq 16(%[p]), %[acc]\n\t"
                "adcq 24(%[p]), %[acc]\n\t"
                "adcq 32(%[p]), %[acc]\n\t"
                "adcq 40(%[p]), %[acc]\n\t"
                "adcq 48(%[p]), %[acc]\n\t"
                "adcq 56(%[p]), %[acc]\n\t"
                "leaq 64(%[p]), %[p]\n\t"
                "decq %[k]\n\t"
                "jnz 1b\n\t"
                "adcq $0, %[acc]"
                : [acc] "+r"(acc), [p] "+r"(b), [k] "+r"(blocks)
                :
                : "cc", "memory");
        n &= 63;
    }
#endif
    while (n >= 32) {
        uint64_t a, c, e, f;
        memcpy(&a, b, 8);
        memcpy(&c, b + 8, 8);
        memcpy(&e, b + 16, 8);
        memcpy(&f, b + 24, 8);
        acc += a;
        acc += acc < a;
        acc += c;
        acc += acc < c;
        acc += e;
        acc += acc < e;
        acc += f;
        acc += acc < f;
        b += 32;
        n -= 32;
    }
    while (n >= 8) {
        uint64_t a;
        memcpy(&a, b, 8);
        acc += a;
        acc += acc < a;
        b += 8;
        n -= 8;
    }
    if (n >= 4) {
        uint32_t a;
        memcpy(&a, b, 4);
        acc += a;
        acc += acc < a;
        b += 4;
        n -= 4;
    }
    if (n >= 2) {
        uint16_t a;
        memcpy(&a, b, 2);
        acc += a;
        acc += acc < a;
        b += 2;
        n -= 2;
    }
    if (n) { /* odd byte: padded with a zero byte after it */
        uint8_t last[2] = {b[0], 0};
        uint16_t a;
        memcpy(&a, last, 2);
        acc += a;
        acc += acc < a;
    }
    return acc;
}

static inline uint16_t csum_fold(uint64_t acc)
{
    acc = (acc & 0xffffffffu) + (acc >> 32);
    acc = (acc & 0xffffffffu) + (acc >> 32);
    acc = (acc & 0xffff) + (acc >> 16);
    acc = (acc & 0xffff) + (acc >> 16);
    acc = (acc & 0xffff) + (acc >> 16);
    return (uint16_t)acc;
}

/* RFC 8200 §8.1: with a routing header, the pseudo-header carries the final
 * destination.  h is the IPv6 header, hlen the bytes of header chain to walk. */
static const uint8_t *ip6_final_dst(const uint8_t *h, uint32_t hlen)
{
    const uint8_t *dst = h + 24;
    uint8_t nh = h[6];
    uint32_t off = 40;
    while (off + 2 <= hlen) {
        uint32_t len;
        if (nh == 0 || nh == 43 || nh == 60)
            len = ((uint32_t)h[off + 1] + 1) * 8;
        else if (nh == 51)
            len = ((uint32_t)h[off + 1] + 2) * 4;
        else
            break;
        if (off + len > hlen)
            break;
        if (nh == 43 && h[off + 3] > 0) { /* segments left */
            uint8_t type = h[off + 2];
            uint32_t naddr = h[off + 1] / 2;
            if ((type == 0) && naddr >= 1)      /* RFC 2460 type 0: last address */
                dst = h + off + 8 + 16 * (naddr - 1);
            else if ((type == 2 || type == 4) && naddr >= 1) /* RFC 6275; RFC 8754 segment[0] */
                dst = h + off + 8;
        }
        nh = h[off];
        off += len;
    }
    return dst;
}

/* Sum of the TCP pseudo-header taken from the (possibly rewritten) IP header ip. */
static uint64_t pseudo_sum(const mos_pkt_t *p, const uint8_t *ip)
{
    uint8_t ph[40];
    if (p->ipver == 4) {
        memcpy(ph, ip + 12, 8);
        ph[8] = 0;
        ph[9] = 6;
        ph[10] = (uint8_t)(p->l4len >> 8);
        ph[11] = (uint8_t)p->l4len;
        return csum_add(0, ph, 12);
    }
    memcpy(ph, ip + 8, 16);
    memcpy(ph + 16, ip6_final_dst(ip, p->l3hlen), 16);
    ph[32] = (uint8_t)(p->l4len >> 24);
    ph[33] = (uint8_t)(p->l4len >> 16);
    ph[34] = (uint8_t)(p->l4len >> 8);
    ph[35] = (uint8_t)p->l4len;
    ph[36] = ph[37] = ph[38] = 0;
    ph[39] = 6;
    return csum_add(0, ph, 40);
}

int mos_ipv4_csum_ok(const mos_pkt_t *p)
{
    if (p->ipver != 4 || !p->l3)
        return -1;
    return csum_fold(csum_add(0, p->l3, p->l3hlen)) == 0xffff;
}

int mos_tcp_csum_ok(const mos_pkt_t *p)
{
    if (p->proto != 6 || !p->l4 || !p->thlen || !p->l3)
        return -1;
    if (p->paylen < p->seglen)
        return -1;
    uint64_t acc = pseudo_sum(p, p->l3);
    uint64_t body = csum_add(0, p->l4, p->l4len);
    acc += body;
    acc += acc < body;
    return csum_fold(acc) == 0xffff;
}

void mos_fix_checksums(mos_pkt_t *p, uint8_t *l3w)
{
    if (!p->l3 || !l3w)
        return;
    if (p->ipver == 4) {
        l3w[10] = l3w[11] = 0;
        uint16_t c = (uint16_t)~csum_fold(csum_add(0, l3w, p->l3hlen));
        memcpy(l3w + 10, &c, 2);
    }
    if (p->proto == 6 && p->l4 && p->thlen && p->paylen == p->seglen) {
        uint8_t *t = l3w + (p->l4 - p->l3);
        t[16] = t[17] = 0;
        uint64_t acc = pseudo_sum(p, l3w);
        uint64_t body = csum_add(0, t, p->l4len);
        acc += body;
        acc += acc < body;
        uint16_t c = (uint16_t)~csum_fold(acc);
        memcpy(t + 16, &c, 2);
    }
}

/* ---- flow hash ---- */

static uint64_t hash_seed = 0x9e3779b97f4a7c15ull;

void mos_flow_hash_seed(uint64_t seed) { hash_seed = seed ^ 0x9e3779b97f4a7c15ull; }

/* A fresh key every run, taken when the library loads (before any flow
 * table exists): traffic crafted to collide under one key cannot pile its
 * flows into one bucket under another. */
__attribute__((constructor)) static void hash_seed_init(void)
{
#if defined(MOS_CSUM_AVX2)
    __builtin_cpu_init();
    csum_avx2_ok = __builtin_cpu_supports("avx2") && !getenv("MOS_NO_AVX2");
#endif
    uint64_t seed = 0;
    if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) != (ssize_t)sizeof seed) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        seed = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ull ^ (uint64_t)ts.tv_sec ^
               (uint64_t)getpid() << 32 ^ (uint64_t)(uintptr_t)&seed;
    }
    mos_flow_hash_seed(seed);
}

/* 64x64->128 multiply folded (the "mum" mixer of wyhash) */
static inline uint64_t mum(uint64_t a, uint64_t b)
{
    unsigned __int128 r = (unsigned __int128)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
}

#define K0 0xa0761d6478bd642full
#define K1 0xe7037ed1a0b428dbull
#define K2 0x8ebc6af09c88c6e3ull
#define K3 0x589965cc75374cc3ull

/* The addresses are read with loads the size of the stores decode made
 * (4 bytes for IPv4): a wider load straddling them stalls store forwarding,
 * which cost ~10 ns per packet when hashing right after decoding. */
static inline uint64_t endpoint4(const uint8_t a[4], uint16_t port, uint64_t s)
{
    uint32_t x;
    memcpy(&x, a, 4);
    return mum(((uint64_t)x << 16 | port) ^ s ^ K0, K1 ^ (s >> 7));
}

static inline uint64_t endpoint6(const uint8_t a[16], uint16_t port, uint64_t s)
{
    uint64_t w0, w1;
    memcpy(&w0, a, 8);
    memcpy(&w1, a + 8, 8);
    return mum(mum(w0 ^ s ^ K0, w1 ^ K1) ^ port ^ K2, K3 ^ s);
}

uint32_t mos_flow_hash(const mos_pkt_t *p)
{
    /* each endpoint is hashed on its own; + is commutative, so both
     * directions of a flow get the same value */
    uint64_t s = hash_seed, h;
    if (p->addrlen == 16)
        h = endpoint6(p->src, p->sport, s) + endpoint6(p->dst, p->dport, s);
    else
        h = endpoint4(p->src, p->sport, s) + endpoint4(p->dst, p->dport, s);
    h = mum(h ^ s ^ K2, K3 ^ p->addrlen);
    return (uint32_t)(h ^ (h >> 32));
}
