/* decode.h: one pass over a frame's headers, link layer to TCP options.
 *
 * Every length is checked once here; code after a successful decode may read
 * the fields and the pointers without further checks.  No allocation.
 */
#ifndef MOS_DECODE_H
#define MOS_DECODE_H
#include <stddef.h>
#include <stdint.h>

#include "options.h" /* mos/tcp: MOS_TH_*, MOS_OPT_*, mos_tcp_opts_t */

enum mos_decode_result {
    MOS_DEC_TCP = 0,          /* a complete TCP header: all TCP fields valid */
    MOS_DEC_OTHER = 1,        /* valid frame that is not TCP (ARP, UDP, ICMP, ...): l3/proto set when IP */
    MOS_DEC_FRAGMENT = 2,     /* an IPv4 or IPv6 fragment: frag_* fields valid, feed it to defrag */
    MOS_DEC_TRUNCATED = -1,   /* headers cut short by the capture (caplen) */
    MOS_DEC_MALFORMED = -2,   /* impossible lengths or fields (bad IHL, data offset < 5, ...) */
    MOS_DEC_UNSUPPORTED = -3, /* link type or encapsulation we do not decode */
};

typedef struct mos_pkt {
    /* layer 2 */
    const uint8_t *l2;        /* frame start */
    uint16_t l2len;           /* bytes before the IP header (link header, VLAN tags, MPLS labels) */
    uint16_t ethertype;       /* final ethertype (0x0800 / 0x86dd / 0x0806 ...), 0 if none */
    uint8_t vlan_depth;       /* number of 802.1Q/802.1ad tags */
    uint8_t mpls_depth;       /* number of MPLS labels */
    /* layer 3 */
    uint8_t ipver;            /* 4 or 6; 0 when not IP */
    uint8_t proto;            /* final upper-layer protocol after IPv6 extension headers */
    uint8_t ttl;
    uint8_t addrlen;          /* 4 or 16 */
    uint8_t src[16];          /* IPv4 in src[0..4), rest zero */
    uint8_t dst[16];
    const uint8_t *l3;        /* IP header */
    uint32_t l3len;           /* IP datagram length per its header (total length / 40+payload length) */
    uint16_t l3hlen;          /* IP header bytes incl. IPv6 extension headers */
    /* fragments (result MOS_DEC_FRAGMENT) */
    uint8_t frag_more;        /* MF bit */
    uint32_t frag_id;         /* IPv4 id / IPv6 identification */
    uint32_t frag_off;        /* byte offset of this fragment's data */
    const uint8_t *frag_data; /* this fragment's data (after all IP headers) */
    uint32_t frag_len;        /* bytes of fragment data present */
    /* layer 4 */
    const uint8_t *l4;        /* TCP (or UDP...) header */
    uint32_t l4len;           /* l4 bytes per the IP header */
    uint16_t sport, dport;    /* TCP or UDP ports */
    /* TCP (result MOS_DEC_TCP) */
    uint32_t seq, ack;
    uint16_t win;             /* raw window field (unscaled) */
    uint8_t flags;            /* MOS_TH_* */
    uint8_t thlen;            /* TCP header length in bytes */
    const uint8_t *payload;
    uint32_t paylen;          /* payload bytes present in the capture */
    uint32_t seglen;          /* payload bytes per the IP header (> paylen when snapped) */
    /* TCP options, parsed by mos/tcp/options.c: the same bytes seen as one
     * mos_tcp_opts_t (tcpopt) or as fields of the packet (p->opts, ...) */
    union {
        mos_tcp_opts_t tcpopt;
        struct {
            uint8_t opts;             /* MOS_OPT_* */
            uint8_t wscale;
            uint16_t mss;
            uint32_t tsval, tsecr;
            uint8_t nsack;            /* SACK blocks parsed (at most 4) */
            uint32_t sack[8];         /* left, right edge pairs */
        };
    };
} mos_pkt_t;
/* the two views of the options must coincide field for field */
_Static_assert(offsetof(mos_pkt_t, opts) == offsetof(mos_pkt_t, tcpopt.opts) &&
               offsetof(mos_pkt_t, mss) == offsetof(mos_pkt_t, tcpopt.mss) &&
               offsetof(mos_pkt_t, tsecr) == offsetof(mos_pkt_t, tcpopt.tsecr) &&
               offsetof(mos_pkt_t, nsack) == offsetof(mos_pkt_t, tcpopt.nsack) &&
               offsetof(mos_pkt_t, sack) == offsetof(mos_pkt_t, tcpopt.sack) &&
               sizeof(((mos_pkt_t *)0)->sack) == sizeof(((mos_pkt_t *)0)->tcpopt.sack),
               "mos_pkt_t option fields and mos_tcp_opts_t differ");

/* Decode a frame of the given link type.  p is fully overwritten. */
int mos_decode(uint16_t linktype, const uint8_t *data, uint32_t caplen, mos_pkt_t *p);

/* Decode starting at an IPv4 or IPv6 header (used for reassembled datagrams).
 * l2/l2len of p are left as the caller set them. */
int mos_decode_ip(const uint8_t *data, uint32_t len, mos_pkt_t *p);

/* Checksums. Return 1 good, 0 bad, -1 cannot tell (payload snapped). */
int mos_ipv4_csum_ok(const mos_pkt_t *p);
int mos_tcp_csum_ok(const mos_pkt_t *p);
/* Recompute the IPv4 header and TCP checksums in place (for handlers that modify). */
void mos_fix_checksums(mos_pkt_t *p, uint8_t *l3_writable);

/* Symmetric 32-bit hash of (addresses, ports): equal for both directions. */
uint32_t mos_flow_hash(const mos_pkt_t *p);

/* Added: key the flow hash (e.g. with a random value at start-up, so crafted
 * traffic cannot aim for collisions).  Process-wide; call before any lookup. */
void mos_flow_hash_seed(uint64_t seed);

#endif
